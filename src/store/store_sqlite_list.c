/*
 * The SQLite backend's view of the queue: pages of messages (store_list),
 * the retry of a failed one (store_retry), and the oldest queued message
 * for /metrics (store_oldest_queued).
 *
 * Both run on the writer thread in its batch transaction like every other
 * operation, so a page sees every write submitted before it, and two
 * retries of one message are serialized: the first moves it out of
 * `failed`, the second finds it elsewhere and changes nothing.
 *
 * A page walks an existing index, never a sort of the table: queued and
 * sending by messages_active (status, id), delivered and failed by
 * messages_done (updated_ms, which holds both), any status by the id's
 * own index.  The statement selects every row of the walk, limited to
 * scan_max, and the status (on messages_done) and provider filters are
 * checked here on each row, so a page costs at most scan_max rows however
 * rare what it looks for; when the cap stops a page short, next points
 * after the last row examined and the client goes on from there.  The cursor is
 * the key of the order: an id, or "UPDATED_MS.ROWID" for the finished lists (an
 * id would not do there: a message's updated_ms moves when it is retried, and
 * the page after it with it).
 *
 * The statements are prepared per operation: both are rare (an operator,
 * a console), and their SQL depends on the query (the status is written
 * into it so that SQLite sees which partial index it may use).
 */
#include "store/store_sqlite.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Column numbers of LIST_COLUMNS. */
enum {
	L_ROWID,
	L_ID,
	L_STATUS,
	L_HEADER_FROM,
	L_SUBJECT,
	L_TO_JSON,
	L_CREATED,
	L_UPDATED,
	L_ATTEMPTS,
	L_PROVIDER,
	L_ERROR,
	L_BUDGET,
};

#define LIST_COLUMNS                                                           \
	"rowid, id, status, header_from, subject, to_json, created_ms, "       \
	"updated_ms, attempts, provider, error, budget_ms"

/* Delivered and failed are listed by when they finished. */
static bool
done_order(int status)
{
	return status == MSG_DELIVERED || status == MSG_FAILED;
}

/*
 * A finished list's cursor, "UPDATED_MS.ROWID" in decimal: both parts
 * plain digits without a sign, so that one cursor has one spelling.
 */
static bool
cursor_parse_done(const char *s, int64_t *updated, int64_t *rowid)
{
	const char *dot = strchr(s, '.');
	char *end;
	size_t i;

	if (dot == NULL || dot == s || dot[1] == '\0')
		return false;
	for (i = 0; s[i] != '\0'; i++)
		if (s + i != dot && (s[i] < '0' || s[i] > '9'))
			return false;
	if (dot - s > 18 || strlen(dot + 1) > 18)
		return false;
	*updated = strtoll(s, &end, 10);
	if (end != dot)
		return false;
	*rowid = strtoll(dot + 1, &end, 10);
	return *end == '\0';
}

void
store__list_sql(const struct store_list_query *q, char *sql, size_t len)
{
	const char *order, *after;
	char where[64] = "";

	/*
	 * Delivered and failed share messages_done: the SQL walks it whole
	 * (its own WHERE, so every row walked is a row examined and counted
	 * against the cap) and row_matches picks the status.
	 */
	if (done_order(q->status))
		snprintf(where, sizeof(where), "(status = 2 OR status = 3)");
	else if (q->status >= 0)
		snprintf(where, sizeof(where), "status = %d", q->status);
	if (done_order(q->status)) {
		after = q->before ? " AND (updated_ms, rowid) < (?1, ?2)" : "";
		order = "updated_ms DESC, rowid DESC";
	} else {
		after = q->before == NULL ? ""
			: q->status >= 0  ? " AND id < ?1"
					  : "id < ?1";
		order = "id DESC";
	}
	snprintf(sql, len,
		 "SELECT " LIST_COLUMNS " FROM messages%s%s%s ORDER BY %s"
		 " LIMIT ?3",
		 where[0] != '\0' || after[0] != '\0' ? " WHERE " : "", where,
		 after, order);
}

/* Binds the cursor and the cap; -EINVAL when before is no cursor here. */
static int
list_bind(sqlite3_stmt *s, const struct store_list_query *q)
{
	int64_t updated, rowid;
	int rc = SQLITE_OK;

	if (q->before != NULL && done_order(q->status)) {
		if (!cursor_parse_done(q->before, &updated, &rowid))
			return -EINVAL;
		rc = sqlite3_bind_int64(s, 1, updated);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int64(s, 2, rowid);
	} else if (q->before != NULL) {
		if (!id_valid(q->before))
			return -EINVAL;
		rc = sqlite3_bind_text(s, 1, q->before, -1, SQLITE_STATIC);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(
		    s, 3, q->scan_max > 0 ? q->scan_max : STORE_LIST_SCAN_MAX);
	return rc == SQLITE_OK ? 0 : store__sqlite_errno(rc);
}

/* The row's place in the order, as a cursor, into buf. */
static void
row_cursor(sqlite3_stmt *s, int status, char *buf, size_t len)
{
	const unsigned char *id;

	if (done_order(status)) {
		snprintf(buf, len, "%" PRId64 ".%" PRId64,
			 (int64_t)sqlite3_column_int64(s, L_UPDATED),
			 (int64_t)sqlite3_column_int64(s, L_ROWID));
		return;
	}
	id = sqlite3_column_text(s, L_ID);
	snprintf(buf, len, "%s", id != NULL ? (const char *)id : "");
}

static bool
row_matches(sqlite3_stmt *s, const struct store_list_query *q)
{
	const unsigned char *p;

	if (q->status >= 0 && sqlite3_column_int(s, L_STATUS) != q->status)
		return false;
	if (q->provider == NULL)
		return true;
	p = sqlite3_column_text(s, L_PROVIDER);
	return p != NULL && strcmp((const char *)p, q->provider) == 0;
}

/*
 * Column i's text cut to at most max bytes, at a UTF-8 character's
 * start: a page's memory stays bounded whatever a client sent.
 */
static char *
col_capped(sqlite3_stmt *s, int i, size_t max)
{
	char *t = store__col_strdup(s, i);
	size_t n;

	if (t == NULL || strlen(t) <= max)
		return t;
	n = max;
	while (n > 0 && ((unsigned char)t[n] & 0xc0) == 0x80)
		n--;
	t[n] = '\0';
	return t;
}

/*
 * The To: of a listing: at most STORE_LIST_TO_MAX addresses.  Short
 * arrays are kept as they are (no parse); a long one is cut.  A row that
 * is not a JSON array shows none.
 */
static char *
col_to(sqlite3_stmt *s, int i)
{
	const char *t = (const char *)sqlite3_column_text(s, i);
	json_t *all, *cut; /* new references */
	char *out = NULL;
	size_t k;

	if (t == NULL || (size_t)sqlite3_column_bytes(s, i) <= 1024)
		return store__col_strdup(s, i);
	all = json_loads(t, 0, NULL);
	cut = json_array();
	for (k = 0; json_is_array(all) && cut != NULL &&
		    k < json_array_size(all) && k < STORE_LIST_TO_MAX;
	     k++)
		if (json_array_append(cut, json_array_get(all, k)) != 0)
			break;
	if (cut != NULL)
		out = json_dumps(cut, JSON_COMPACT);
	json_decref(cut);
	json_decref(all);
	return out;
}

/* What a listing shows of a row; no body, no envelope, bounded text. */
static struct store_message *
row_summary(sqlite3_stmt *s)
{
	struct store_message *m = xcalloc(1, sizeof(*m));
	const unsigned char *id = sqlite3_column_text(s, L_ID);

	m->rowid = sqlite3_column_int64(s, L_ROWID);
	snprintf(m->id, sizeof(m->id), "%s",
		 id != NULL ? (const char *)id : "");
	m->status = sqlite3_column_int(s, L_STATUS);
	m->header_from = col_capped(s, L_HEADER_FROM, STORE_LIST_TEXT_MAX);
	m->subject = col_capped(s, L_SUBJECT, STORE_LIST_TEXT_MAX);
	m->to_json = col_to(s, L_TO_JSON);
	m->created_ms = sqlite3_column_int64(s, L_CREATED);
	m->updated_ms = sqlite3_column_int64(s, L_UPDATED);
	m->attempts = sqlite3_column_int(s, L_ATTEMPTS);
	m->provider = store__col_strdup(s, L_PROVIDER);
	m->error = col_capped(s, L_ERROR, STORE_LIST_TEXT_MAX);
	m->budget_ms = sqlite3_column_int64(s, L_BUDGET);
	return m;
}

/*
 * Steps the page's rows: up to limit matches go in; the next match after
 * them proves there is more; a cap reached first stops the page short.
 * Either way next is the last row examined before stopping.
 */
static int
list_rows(struct store_backend *be, struct op *op, sqlite3_stmt *s)
{
	const struct store_list_query *q = &op->u.list.q;
	int scan_max = q->scan_max > 0 ? q->scan_max : STORE_LIST_SCAN_MAX;
	int rc, examined = 0;

	op->u.list.msgs = xcalloc((size_t)q->limit, sizeof(*op->u.list.msgs));
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		examined++;
		if (row_matches(s, q)) {
			if (op->u.list.n == (size_t)q->limit) {
				op->u.list.has_next = true;
				return 0;
			}
			op->u.list.msgs[op->u.list.n++] = row_summary(s);
		}
		/*
		 * The last row examined, matched or not: the next page
		 * starts after it (no row is read twice).
		 */
		row_cursor(s, q->status, op->u.list.next,
			   sizeof(op->u.list.next));
		if (examined == scan_max) {
			op->u.list.has_next = true;
			return 0;
		}
	}
	if (rc != SQLITE_DONE)
		return store__db_fail(be->db, rc, "list");
	return 0;
}

int
store__exec_list(struct store_backend *be, struct op *op)
{
	char sql[512];
	sqlite3_stmt *s = NULL;
	int rc;

	store__list_sql(&op->u.list.q, sql, sizeof(sql));
	rc = sqlite3_prepare_v2(be->db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return store__db_fail(be->db, rc, "list_prepare");
	rc = list_bind(s, &op->u.list.q);
	if (rc == -EINVAL) {
		/* The client's cursor, not the database: a result. */
		op->err = rc;
		rc = 0;
	} else if (rc == 0) {
		rc = list_rows(be, op, s);
	}
	(void)sqlite3_finalize(s);
	if (op->err != 0 || rc != 0)
		store__list_reset(op);
	/*
	 * When the page is full, next is the last row examined before the
	 * match that proved more: the page's last message, or a row after it
	 * that did not match (no need to read it again).
	 */
	if (!op->u.list.has_next)
		op->u.list.next[0] = '\0';
	return rc;
}

/*
 * The retry itself is one UPDATE guarded by status = failed; the status
 * read before it tells an unknown id from one that is not failed.
 */
static const char *const retry_sql =
    "UPDATE messages SET status = 0, attempts = 0, round = 0, tried = '',"
    " error = NULL, next_ms = 0, budget_ms = ?2, updated_ms = ?2"
    " WHERE id = ?1 AND status = 3 RETURNING rowid";
static const char *const status_sql =
    "SELECT status FROM messages WHERE id = ?1";

/* The message's status into op->err: -ENOENT, STORE_ENOTFAILED, or 0. */
static int
retry_check(struct store_backend *be, struct op *op)
{
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sqlite3_prepare_v2(be->db, status_sql, -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 1, op->u.retry.id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_DONE)
			op->err = -ENOENT;
		else if (rc == SQLITE_ROW &&
			 sqlite3_column_int(s, 0) != MSG_FAILED)
			op->err = STORE_ENOTFAILED;
		if (rc == SQLITE_DONE || rc == SQLITE_ROW)
			rc = SQLITE_OK;
	}
	(void)sqlite3_finalize(s);
	return rc == SQLITE_OK ? 0 : store__db_fail(be->db, rc, "retry_check");
}

int
store__exec_retry(struct store_backend *be, struct op *op, int64_t now)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if ((rc = retry_check(be, op)) != 0 || op->err != 0)
		return rc;
	rc = sqlite3_prepare_v2(be->db, retry_sql, -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 1, op->u.retry.id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 2, now);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		op->u.retry.rowid = sqlite3_column_int64(s, 0);
		op->wrote = true;
		/* Drain the RETURNING statement so the update completes. */
		rc = sqlite3_step(s);
	}
	(void)sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return store__db_fail(be->db, rc, "retry");
	if (op->u.retry.rowid == 0) {
		/* retry_check saw it failed in this transaction: our bug. */
		op->err = STORE_ENOTFAILED;
		return 0;
	}
	store__count_move(be, MSG_FAILED, MSG_QUEUED);
	log_info("%s store retried rowid=%" PRId64, op->u.retry.id,
		 op->u.retry.rowid);
	return 0;
}

/* The first queued id is the oldest accepted: messages_active's seek. */
static const char *const oldest_sql =
    "SELECT created_ms FROM messages WHERE status = 0 ORDER BY id LIMIT 1";

int
store__exec_oldest(struct store_backend *be, struct op *op)
{
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sqlite3_prepare_v2(be->db, oldest_sql, -1, &s, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW)
			op->u.oldest.created_ms = sqlite3_column_int64(s, 0);
	}
	(void)sqlite3_finalize(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store__db_fail(be->db, rc, "oldest");
	return 0;
}

void
store__oldest_queue(struct store_backend *be, store_oldest_cb cb, void *arg)
{
	struct op *op;

	op = store__op_new(be, OP_OLDEST, 0, arg, 0, NULL);
	op->cb.oldest = cb;
	store__enqueue(be, op);
}

void
store__list_reset(struct op *op)
{
	size_t i;

	if (op->kind == OP_RETRY) {
		op->u.retry.rowid = 0;
		return;
	}
	if (op->kind == OP_OLDEST) {
		op->u.oldest.created_ms = 0;
		return;
	}
	for (i = 0; i < op->u.list.n; i++)
		store_message_free(op->u.list.msgs[i]);
	free(op->u.list.msgs);
	op->u.list.msgs = NULL;
	op->u.list.n = 0;
	op->u.list.has_next = false;
	op->u.list.next[0] = '\0';
}

void
store__list_complete(struct op *op)
{
	if (op->kind == OP_RETRY) {
		op->cb.retry(op->arg, op->err,
			     op->err == 0 ? op->u.retry.rowid : 0);
		return;
	}
	if (op->kind == OP_OLDEST) {
		op->cb.oldest(op->arg, op->err,
			      op->err == 0 ? op->u.oldest.created_ms : 0);
		return;
	}
	if (op->err != 0)
		store__list_reset(op);
	op->cb.list(op->arg, op->err, op->u.list.msgs, op->u.list.n,
		    op->u.list.has_next ? op->u.list.next : NULL);
	store__list_reset(op);
}

void
store__list_queue(struct store_backend *be, int err,
		  const struct store_list_query *q, store_list_cb cb, void *arg)
{
	struct op *op;
	char *tail;
	size_t np = q->provider ? strlen(q->provider) + 1 : 0;
	size_t nb = q->before ? strlen(q->before) + 1 : 0;

	op = store__op_new(be, OP_LIST, err, arg, np + nb, &tail);
	op->cb.list = cb;
	op->u.list.q = *q;
	if (q->provider != NULL) {
		memcpy(tail, q->provider, np);
		op->u.list.q.provider = tail;
		tail += np;
	}
	if (q->before != NULL) {
		memcpy(tail, q->before, nb);
		op->u.list.q.before = tail;
	}
	store__enqueue(be, op);
}

void
store__retry_queue(struct store_backend *be, int err, const char *id,
		   store_retry_cb cb, void *arg)
{
	struct op *op;

	op = store__op_new(be, OP_RETRY, err, arg, 0, NULL);
	op->cb.retry = cb;
	snprintf(op->u.retry.id, sizeof(op->u.retry.id), "%s", id);
	store__enqueue(be, op);
}
