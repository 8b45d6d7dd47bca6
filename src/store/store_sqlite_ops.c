/*
 * The SQLite backend's statements: what each queued operation does inside
 * the writer's batch transaction (the batch itself, its failures and the
 * probe are store_sqlite_batch.c's).
 *
 * Per operation the writer does no more than bind and step statements
 * prepared once at open; the recipients are turned into JSON by hand into
 * a reused, capped buffer.  Every bind and every step is checked: a value
 * SQLite refuses (a string over its length limit, SQLITE_TOOBIG) fails the
 * operation with an error instead of being stored as NULL.
 *
 * Failure inside a batch: each operation runs the statements that can fail
 * because of the operation itself (binds, a repeated id or attempt number)
 * before its first write, and SQLite undoes a failed statement on its own.
 * So such an error fails only that operation and the batch goes on with no
 * savepoint and no extra statement per operation.  Any other error (disk
 * full, I/O, busy, or one that came after a write) rolls the whole batch
 * back and every operation in it gets the error: the callers retry updates
 * and answer 503 to submits, and the writer marks the store unhealthy
 * until a later write commits.  Logical results (an unknown id, a
 * duplicate idempotency key) are not errors of the transaction.
 */
#include "store/store_sqlite.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A message is its row and its body (schema 6); a missing body is NULL. */
#define MSG_COLUMNS                                                            \
	"m.rowid, m.id, m.status, m.mail_from, m.rcpt, m.header_from, "        \
	"m.subject, m.to_json, m.tags_json, m.created_ms, m.updated_ms, "      \
	"m.next_ms, m.attempts, m.round, m.tried, m.provider, "                \
	"m.provider_message_id, m.error, b.mime, m.budget_ms"
#define MSG_FROM "messages m LEFT JOIN bodies b ON b.rowid = m.rowid"

/* Both retention queries say this exactly, to match messages_done. */
#define DONE_WHERE "(status = 2 OR status = 3)"

const char *const store__stmt_sql[ST_MAX] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_IDEM_FIND] = "SELECT message_id, body_hash FROM idempotency"
		     " WHERE scope = ?1 AND key = ?2 AND created_ms >= ?3",
    [ST_IDEM_PUT] = "INSERT OR REPLACE INTO idempotency"
		    " (scope, key, message_id, created_ms, body_hash)"
		    " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_MSG_INSERT] = "INSERT INTO messages (id, status, mail_from, rcpt,"
		      " header_from, subject, to_json, tags_json, created_ms,"
		      " updated_ms, next_ms, attempts, round, tried, provider,"
		      " provider_message_id, error) VALUES (?1, ?2, ?3,"
		      " ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
		      " ?16, ?17)",
    [ST_BODY_INSERT] = "INSERT INTO bodies (rowid, mime) VALUES (?1, ?2)",
    [ST_MSG_UPDATE] =
	"UPDATE messages SET status = ?2, next_ms = ?3,"
	" attempts = ?4, round = ?5, tried = COALESCE(?6, tried),"
	" provider = COALESCE(?7, provider),"
	" provider_message_id = COALESCE(?8, provider_message_id),"
	" error = COALESCE(?9, error), updated_ms = ?10"
	" WHERE rowid = ?1",
    [ST_ATT_INSERT] =
	"INSERT INTO attempts (message_rowid, n, provider,"
	" at_ms, outcome, detail) VALUES (?1, CASE WHEN ?2 > 0"
	" THEN ?2 ELSE (SELECT COALESCE(MAX(n), 0) + 1 FROM"
	" attempts WHERE message_rowid = ?1) END, ?3, ?4, ?5, ?6)",
    [ST_LOAD] = "SELECT " MSG_COLUMNS " FROM " MSG_FROM
		" WHERE m.rowid = ?1 AND m.status = 0",
    [ST_GET] = "SELECT " MSG_COLUMNS " FROM " MSG_FROM " WHERE m.id = ?1",
    [ST_ATT_LIST] = "SELECT n, provider, at_ms, outcome, detail FROM attempts"
		    " WHERE message_rowid = ?1 ORDER BY n",
    [ST_IDEM_EXPIRE] = "DELETE FROM idempotency WHERE rowid IN"
		       " (SELECT rowid FROM idempotency WHERE created_ms < ?1"
		       " ORDER BY created_ms LIMIT ?2)",
    [ST_PRUNE] = "DELETE FROM messages WHERE rowid IN (SELECT rowid FROM"
		 " messages WHERE " DONE_WHERE " AND updated_ms < ?1"
		 " ORDER BY updated_ms LIMIT ?2) RETURNING status",
    [ST_STATUS_OF] = "SELECT status FROM messages WHERE rowid = ?1",
    [ST_COUNT_ADD] = "UPDATE status_counts SET n = n + ?2 WHERE status = ?1",
    [ST_PROBE] = "INSERT OR REPLACE INTO meta (key, value)"
		 " VALUES ('probe', zeroblob(?1))",
};

/* Short names of the statements, for log lines. */
static const char *const stmt_name[ST_MAX] = {
    [ST_BEGIN] = "begin",
    [ST_COMMIT] = "commit",
    [ST_ROLLBACK] = "rollback",
    [ST_IDEM_FIND] = "idem_find",
    [ST_IDEM_PUT] = "idem_put",
    [ST_MSG_INSERT] = "msg_insert",
    [ST_BODY_INSERT] = "body_insert",
    [ST_MSG_UPDATE] = "msg_update",
    [ST_ATT_INSERT] = "att_insert",
    [ST_LOAD] = "load",
    [ST_GET] = "get",
    [ST_ATT_LIST] = "att_list",
    [ST_IDEM_EXPIRE] = "idem_expire",
    [ST_PRUNE] = "prune",
    [ST_STATUS_OF] = "status_of",
    [ST_COUNT_ADD] = "count_add",
    [ST_PROBE] = "probe",
};

/*
 * Binds to one statement, keeping the first failure and skipping the rest,
 * so a run of binds is checked once at its end (bind_end).
 */
struct binder {
	sqlite3_stmt *s;
	int rc;
};

static void
bind_text(struct binder *b, int i, const char *t)
{
	if (b->rc != SQLITE_OK)
		return;
	if (t == NULL)
		b->rc = sqlite3_bind_null(b->s, i);
	else
		b->rc = sqlite3_bind_text(b->s, i, t, -1, SQLITE_STATIC);
}

static void
bind_int64(struct binder *b, int i, int64_t v)
{
	if (b->rc == SQLITE_OK)
		b->rc = sqlite3_bind_int64(b->s, i, v);
}

static void
bind_blob(struct binder *b, int i, const void *p, size_t n)
{
	if (b->rc != SQLITE_OK)
		return;
	if (p == NULL)
		b->rc = sqlite3_bind_null(b->s, i);
	else
		b->rc = sqlite3_bind_blob64(b->s, i, p, n, SQLITE_STATIC);
}

/* 0, or the error of the first failed bind (the statement is not run). */
static int
bind_end(struct store_backend *be, struct binder *b, const char *what)
{
	if (b->rc == SQLITE_OK)
		return 0;
	/* No pointer of this op may stay bound to a statement we keep. */
	(void)sqlite3_clear_bindings(b->s);
	return store__db_fail(be->db, b->rc, what);
}

/*
 * Runs a prepared statement that returns no rows we need, then resets it.
 * A write marks op as having written (see op_local).
 */
int
store__step_once(struct store_backend *be, int which, struct op *op)
{
	sqlite3_stmt *s = be->stmt[which];
	int rc;

	rc = sqlite3_step(s);
	/* reset returns the step's error again: already in rc. */
	(void)sqlite3_reset(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return store__db_fail(be->db, rc, stmt_name[which]);
	if (op != NULL && sqlite3_changes(be->db) > 0)
		op->wrote = true;
	return 0;
}

/* The rest of the text of column i, copied: the pointer dies at step. */
char *
store__col_strdup(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	if (t == NULL)
		return NULL;
	return xstrndup((const char *)t, (size_t)sqlite3_column_bytes(s, i));
}

/*
 * The recipients as a JSON array of strings, in the writer's capped
 * scratch buffer (valid until the next call); -EFBIG past its cap.  Written
 * by hand because it is on the hot path.
 */
static int
rcpt_json(struct store_backend *be, char *const *rcpt, size_t n,
	  const char **out)
{
	struct buf *b = &be->json;
	size_t i;
	int rc;

	buf_reset(b);
	rc = buf_append(b, "[", 1);
	for (i = 0; i < n && rc == 0; i++) {
		rc = buf_append(b, i > 0 ? ",\"" : "\"", i > 0 ? 2 : 1);
		if (rc == 0)
			rc = buf_append_json_str(b, rcpt[i], strlen(rcpt[i]));
		if (rc == 0)
			rc = buf_append(b, "\"", 1);
	}
	if (rc == 0)
		rc = buf_append(b, "]", 1);
	if (rc != 0) {
		log_warnx("- store rcpt_too_big n=%zu max=%zu", n, b->max);
		return -EFBIG;
	}
	*out = b->p;
	return 0;
}

/* Parses a JSON array of strings (at least one) into m->rcpt. */
static bool
rcpt_parse(const char *text, struct store_message *m)
{
	json_t *arr, *v; /* arr is a new reference, v borrowed */
	json_error_t jerr;
	size_t i, n;
	bool ok = false;

	arr = json_loads(text, 0, &jerr);
	if (arr == NULL || !json_is_array(arr) || json_array_size(arr) == 0)
		goto out;
	n = json_array_size(arr);
	m->rcpt = xcalloc(n, sizeof(*m->rcpt));
	for (i = 0; i < n; i++) {
		v = json_array_get(arr, i);
		if (!json_is_string(v))
			goto out;
		m->rcpt[i] = xstrdup(json_string_value(v));
		m->nrcpt = i + 1;
	}
	ok = true;
out:
	json_decref(arr);
	return ok;
}

/* The type each column must have; NULL allowed where null_ok. */
static const struct {
	int col;
	int type;
	bool null_ok;
	const char *name;
} row_types[] = {
    {C_ROWID, SQLITE_INTEGER, false, "rowid"},
    {C_ID, SQLITE_TEXT, false, "id"},
    {C_STATUS, SQLITE_INTEGER, false, "status"},
    {C_MAIL_FROM, SQLITE_TEXT, false, "mail_from"},
    {C_RCPT, SQLITE_TEXT, false, "rcpt"},
    {C_HEADER_FROM, SQLITE_TEXT, true, "header_from"},
    {C_SUBJECT, SQLITE_TEXT, true, "subject"},
    {C_TO_JSON, SQLITE_TEXT, true, "to_json"},
    {C_TAGS_JSON, SQLITE_TEXT, true, "tags_json"},
    {C_CREATED, SQLITE_INTEGER, false, "created_ms"},
    {C_UPDATED, SQLITE_INTEGER, false, "updated_ms"},
    {C_NEXT, SQLITE_INTEGER, false, "next_ms"},
    {C_ATTEMPTS, SQLITE_INTEGER, false, "attempts"},
    {C_ROUND, SQLITE_INTEGER, false, "round"},
    {C_TRIED, SQLITE_TEXT, true, "tried"},
    {C_PROVIDER, SQLITE_TEXT, true, "provider"},
    {C_PMID, SQLITE_TEXT, true, "provider_message_id"},
    {C_ERROR, SQLITE_TEXT, true, "error"},
    {C_MIME, SQLITE_BLOB, true, "mime"},
    {C_BUDGET, SQLITE_INTEGER, true, "budget_ms"},
};

/* The name of the first column of the row with a wrong type, or NULL. */
static const char *
row_bad_column(sqlite3_stmt *s)
{
	size_t i;
	int t;

	for (i = 0; i < ARRAY_SIZE(row_types); i++) {
		t = sqlite3_column_type(s, row_types[i].col);
		if (t == SQLITE_NULL && row_types[i].null_ok)
			continue;
		if (t != row_types[i].type)
			return row_types[i].name;
	}
	if (sqlite3_column_bytes(s, C_ID) >=
	    (int)sizeof(((struct store_message *)0)->id))
		return "id";
	return NULL;
}

/*
 * What a row that cannot be a message still tells: the counters, when
 * their columns have their types, so that failing it (an update that
 * writes them) does not reset them; the id only when it is one.
 */
static void
row_shell(sqlite3_stmt *s, struct store_message *m, const char *why)
{
	if (strcmp(why, "id") == 0)
		m->id[0] = '\0';
	if (sqlite3_column_type(s, C_NEXT) == SQLITE_INTEGER)
		m->next_ms = sqlite3_column_int64(s, C_NEXT);
	if (sqlite3_column_type(s, C_ATTEMPTS) == SQLITE_INTEGER)
		m->attempts = sqlite3_column_int(s, C_ATTEMPTS);
	if (sqlite3_column_type(s, C_ROUND) == SQLITE_INTEGER)
		m->round = sqlite3_column_int(s, C_ROUND);
	if (sqlite3_column_type(s, C_TRIED) == SQLITE_TEXT)
		m->tried = store__col_strdup(s, C_TRIED);
}

/*
 * Builds a message from a row of MSG_COLUMNS.  A row that cannot be one
 * gives -EIO, *why naming the bad column, and in *out a message with what
 * was readable: rowid, id when it is text, the counters (row_shell), no
 * body.
 */
static int
row_message(sqlite3_stmt *s, struct store_message **out, const char **why)
{
	struct store_message *m = xcalloc(1, sizeof(*m));
	const unsigned char *t;
	size_t len;

	*out = m;
	m->rowid = sqlite3_column_int64(s, C_ROWID);
	t = sqlite3_column_text(s, C_ID);
	if (sqlite3_column_type(s, C_ID) == SQLITE_TEXT && t != NULL)
		snprintf(m->id, sizeof(m->id), "%s", (const char *)t);
	*why = row_bad_column(s);
	if (*why == NULL &&
	    !rcpt_parse((const char *)sqlite3_column_text(s, C_RCPT), m))
		*why = "rcpt";
	if (*why != NULL) {
		row_shell(s, m, *why);
		return -EIO;
	}
	m->status = sqlite3_column_int(s, C_STATUS);
	m->mail_from = store__col_strdup(s, C_MAIL_FROM);
	m->header_from = store__col_strdup(s, C_HEADER_FROM);
	m->subject = store__col_strdup(s, C_SUBJECT);
	m->to_json = store__col_strdup(s, C_TO_JSON);
	m->tags_json = store__col_strdup(s, C_TAGS_JSON);
	m->created_ms = sqlite3_column_int64(s, C_CREATED);
	m->updated_ms = sqlite3_column_int64(s, C_UPDATED);
	m->next_ms = sqlite3_column_int64(s, C_NEXT);
	m->attempts = sqlite3_column_int(s, C_ATTEMPTS);
	m->round = sqlite3_column_int(s, C_ROUND);
	m->tried = store__col_strdup(s, C_TRIED);
	m->provider = store__col_strdup(s, C_PROVIDER);
	m->provider_message_id = store__col_strdup(s, C_PMID);
	m->error = store__col_strdup(s, C_ERROR);
	m->budget_ms = sqlite3_column_int64(s, C_BUDGET); /* NULL: 0 */
	if (sqlite3_column_type(s, C_MIME) == SQLITE_BLOB) {
		len = (size_t)sqlite3_column_bytes(s, C_MIME);
		m->mime = xmalloc(len + 1);
		if (len > 0)
			memcpy(m->mime, sqlite3_column_blob(s, C_MIME), len);
		m->mime[len] = '\0';
		m->mime_len = len;
	}
	return 0;
}

void
store__op_reset(struct op *op)
{
	size_t i;

	switch (op->kind) {
	case OP_SUBMIT:
		op->u.submit.dup = false;
		op->u.submit.m->rowid = 0;
		break;
	case OP_UPDATE:
	case OP_EXEC:
		break;
	case OP_OUTBOX_ADD:
	case OP_OUTBOX_CLAIM:
	case OP_OUTBOX_FINISH:
		store__outbox_reset(op);
		break;
	case OP_LOAD:
		for (i = 0; i < op->u.load.nmsgs; i++)
			store_message_free(op->u.load.msgs[i]);
		free(op->u.load.msgs);
		op->u.load.msgs = NULL;
		op->u.load.nmsgs = 0;
		break;
	case OP_GET:
		store_message_free(op->u.get.m);
		for (i = 0; i < op->u.get.natt; i++)
			store_attempt_cleanup(&op->u.get.att[i]);
		free(op->u.get.att);
		op->u.get.m = NULL;
		op->u.get.att = NULL;
		op->u.get.natt = 0;
		break;
	case OP_HOUSEKEEP:
		memset(op->u.hk.chunk, 0, sizeof(op->u.hk.chunk));
		op->u.hk.more = false;
		break;
	case OP_LIST:
	case OP_RETRY:
	case OP_OLDEST:
		store__list_reset(op);
		break;
	}
	op->wrote = false;
	if (!op->preset)
		op->err = 0;
}

void
store__count_move(struct store_backend *be, int from, int to)
{
	if (from == to)
		return;
	if (from >= 0 && from < MSG_NSTATUS)
		be->count_delta[from]--;
	if (to >= 0 && to < MSG_NSTATUS)
		be->count_delta[to]++;
}

int
store__count_flush(struct store_backend *be)
{
	struct binder b = {be->stmt[ST_COUNT_ADD], SQLITE_OK};
	int i, rc;

	for (i = 0; i < MSG_NSTATUS; i++) {
		if (be->count_delta[i] == 0)
			continue;
		bind_int64(&b, 1, i);
		bind_int64(&b, 2, be->count_delta[i]);
		if ((rc = bind_end(be, &b, "count_add")) != 0)
			return rc;
		if ((rc = store__step_once(be, ST_COUNT_ADD, NULL)) != 0)
			return rc;
		be->count_delta[i] = 0;
	}
	return 0;
}

/*
 * Whether the hash kept with a key (column col of the statement's row)
 * matches the op's.  A key kept without one, from before hashes were
 * (schema 2), matches any request: it answers as it did then.
 */
static bool
idem_hash_matches(sqlite3_stmt *s, int col, const struct op *op)
{
	const void *h;

	if (sqlite3_column_type(s, col) == SQLITE_NULL)
		return true;
	/* The blob first, then its length (SQLite's order). */
	h = sqlite3_column_blob(s, col);
	return h != NULL &&
	       sqlite3_column_bytes(s, col) == STORE_IDEM_HASH_LEN &&
	       memcmp(h, op->u.submit.hash, STORE_IDEM_HASH_LEN) == 0;
}

/*
 * Looks the idempotency key up in its scope: known with the same request,
 * sets dup and dup_id; known with another, fails the op alone with
 * STORE_ECONFLICT (a result, not an error of the transaction).
 */
static int
idem_find(struct store_backend *be, struct op *op, int64_t now)
{
	struct binder b = {be->stmt[ST_IDEM_FIND], SQLITE_OK};
	const unsigned char *t;
	int rc;

	bind_text(&b, 1, op->u.submit.scope);
	bind_text(&b, 2, op->u.submit.key);
	bind_int64(&b, 3, now - IDEM_TTL_MS);
	if ((rc = bind_end(be, &b, "idem_find")) != 0)
		return rc;
	rc = sqlite3_step(b.s);
	if (rc == SQLITE_ROW && !idem_hash_matches(b.s, 1, op)) {
		op->err = STORE_ECONFLICT;
	} else if (rc == SQLITE_ROW) {
		t = sqlite3_column_text(b.s, 0);
		snprintf(op->u.submit.dup_id, sizeof(op->u.submit.dup_id), "%s",
			 t != NULL ? (const char *)t : "");
		op->u.submit.dup = true;
	}
	(void)sqlite3_reset(b.s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store__db_fail(be->db, rc, "idem_find");
	return 0;
}

static int
msg_insert(struct store_backend *be, struct op *op)
{
	struct store_message *m = op->u.submit.m;
	struct binder b = {be->stmt[ST_MSG_INSERT], SQLITE_OK};
	struct binder body = {NULL, SQLITE_OK};
	const char *rcpt;
	int rc;

	if ((rc = rcpt_json(be, m->rcpt, m->nrcpt, &rcpt)) != 0)
		return rc;
	bind_text(&b, 1, m->id);
	bind_int64(&b, 2, m->status);
	bind_text(&b, 3, m->mail_from);
	bind_text(&b, 4, rcpt);
	bind_text(&b, 5, m->header_from);
	bind_text(&b, 6, m->subject);
	bind_text(&b, 7, m->to_json);
	bind_text(&b, 8, m->tags_json);
	bind_int64(&b, 9, m->created_ms);
	bind_int64(&b, 10, m->updated_ms);
	bind_int64(&b, 11, m->next_ms);
	bind_int64(&b, 12, m->attempts);
	bind_int64(&b, 13, m->round);
	bind_text(&b, 14, m->tried);
	bind_text(&b, 15, m->provider);
	bind_text(&b, 16, m->provider_message_id);
	bind_text(&b, 17, m->error);
	if ((rc = bind_end(be, &b, "msg_insert")) != 0)
		return rc;
	/*
	 * The body is bound first: a value SQLite refuses fails the op
	 * before its first write, so the batch goes on (see the top).
	 */
	if (m->mime != NULL) {
		body.s = be->stmt[ST_BODY_INSERT];
		bind_blob(&body, 2, m->mime, m->mime_len);
		if ((rc = bind_end(be, &body, "body_insert")) != 0)
			return rc;
	}
	if ((rc = store__step_once(be, ST_MSG_INSERT, op)) != 0) {
		(void)sqlite3_clear_bindings(be->stmt[ST_BODY_INSERT]);
		return rc;
	}
	m->rowid = sqlite3_last_insert_rowid(be->db);
	store__count_move(be, -1, m->status);
	/* A NULL body stays absent (a NULL mime at load); an empty one is
	 * an empty blob. */
	if (m->mime == NULL)
		return 0;
	bind_int64(&body, 1, m->rowid);
	if ((rc = bind_end(be, &body, "body_insert")) != 0)
		return rc;
	rc = store__step_once(be, ST_BODY_INSERT, op);
	(void)sqlite3_clear_bindings(be->stmt[ST_BODY_INSERT]);
	return rc;
}

static int
exec_submit(struct store_backend *be, struct op *op, int64_t now)
{
	const char *key = op->u.submit.key;
	struct binder b = {be->stmt[ST_IDEM_PUT], SQLITE_OK};
	int rc;

	if (key != NULL) {
		if ((rc = idem_find(be, op, now)) != 0)
			return rc;
		if (op->u.submit.dup || op->err != 0)
			return 0;
	}
	if ((rc = msg_insert(be, op)) != 0)
		return rc;
	if (key == NULL)
		return 0;
	bind_text(&b, 1, op->u.submit.scope);
	bind_text(&b, 2, key);
	bind_text(&b, 3, op->u.submit.m->id);
	bind_int64(&b, 4, now);
	bind_blob(&b, 5, op->u.submit.hash, sizeof(op->u.submit.hash));
	if ((rc = bind_end(be, &b, "idem_put")) != 0)
		return rc;
	return store__step_once(be, ST_IDEM_PUT, op);
}

/* The attempts row of an update; before the update, see exec_update. */
static int
attempt_insert(struct store_backend *be, struct op *op, int64_t now)
{
	const struct store_update *u = &op->u.update.u;
	struct binder b = {be->stmt[ST_ATT_INSERT], SQLITE_OK};
	int rc;

	bind_int64(&b, 1, u->rowid);
	bind_int64(&b, 2, u->attempt.n);
	bind_text(&b, 3, u->attempt.provider);
	bind_int64(&b, 4, u->attempt.at_ms != 0 ? u->attempt.at_ms : now);
	bind_int64(&b, 5, u->attempt.outcome);
	bind_text(&b, 6, u->attempt.detail);
	if ((rc = bind_end(be, &b, "att_insert")) != 0)
		return rc;
	return store__step_once(be, ST_ATT_INSERT, op);
}

/*
 * The attempt goes in before the message's row changes: a repeated
 * attempt number then fails the update before it wrote anything, so it
 * fails alone (see op_local).
 */
static int
exec_update(struct store_backend *be, struct op *op, int64_t now)
{
	const struct store_update *u = &op->u.update.u;
	struct binder b = {be->stmt[ST_STATUS_OF], SQLITE_OK};
	int rc, old;

	/* The old status, for status_counts. */
	bind_int64(&b, 1, u->rowid);
	if ((rc = bind_end(be, &b, "status_of")) != 0)
		return rc;
	rc = sqlite3_step(b.s);
	old = rc == SQLITE_ROW ? sqlite3_column_int(b.s, 0) : -1;
	(void)sqlite3_reset(b.s);
	if (rc == SQLITE_DONE) {
		op->err = -ENOENT;
		return 0;
	}
	if (rc != SQLITE_ROW)
		return store__db_fail(be->db, rc, "status_of");
	if (u->has_attempt && (rc = attempt_insert(be, op, now)) != 0)
		return rc;

	b.s = be->stmt[ST_MSG_UPDATE];
	bind_int64(&b, 1, u->rowid);
	bind_int64(&b, 2, u->status);
	bind_int64(&b, 3, u->next_ms);
	bind_int64(&b, 4, u->attempts);
	bind_int64(&b, 5, u->round);
	bind_text(&b, 6, u->tried);
	bind_text(&b, 7, u->provider);
	bind_text(&b, 8, u->provider_message_id);
	bind_text(&b, 9, u->error);
	bind_int64(&b, 10, now);
	if ((rc = bind_end(be, &b, "msg_update")) != 0)
		return rc;
	if ((rc = store__step_once(be, ST_MSG_UPDATE, op)) != 0)
		return rc;
	store__count_move(be, old, u->status);
	/* Its webhook, in the same transaction (store.h). */
	if (u->outbox != NULL)
		return store__outbox_insert(be, op, u->outbox, now);
	return 0;
}

/*
 * A queued row that cannot be decoded would be skipped by every load and
 * stay queued for ever: it is handed to the caller as failed, for the
 * caller to fail it on disk like any final outcome, with its webhook and
 * its event (store.h).  Nothing is written here: until that update
 * commits the row stays queued, and the next start finds it again.
 */
static void
mark_corrupt(struct store_message *m, const char *why)
{
	log_warnx("%s store corrupt_record rowid=%lld column=%s",
		  m->id[0] != '\0' ? m->id : "-", (long long)m->rowid, why);
	free(m->error);
	m->error = xasprintf("corrupt record: bad %s", why);
	m->status = MSG_FAILED;
	free(m->mime);
	m->mime = NULL;
	m->mime_len = 0;
}

/*
 * Whether rc, of a read of one row, says that row's pages are damaged
 * (SQLITE_CORRUPT).  That is a fault of the row, not of the disk: a load
 * used to fail whole (-EIO), the dispatcher put its rowids back and asked
 * again, so one damaged page stopped the whole queue for good, and each
 * try failed its batch's other operations and marked the store unhealthy.
 * Now the row is remembered in its op (a negative rowid, get.unreadable)
 * and answered as unreadable.  SQLite fails every later statement of a
 * transaction that read a damaged page, COMMIT included, so the batch is
 * then rolled back and run again (store__run_batch), this time without
 * reading that row: at most one more run per damaged row.  Only the first
 * such error of a run is the row's own: after it, any statement may fail
 * because of the poisoned transaction, and fails the run, which is run
 * again anyway.
 */
static bool
row_unreadable(struct store_backend *be, int rc)
{
	if ((rc & 0xff) != SQLITE_CORRUPT || be->unreadable_hit)
		return false;
	be->unreadable_hit = true;
	return true;
}

/* A message for a row nothing of which could be read but its rowid. */
static struct store_message *
unreadable_shell(int64_t rowid)
{
	struct store_message *m = xcalloc(1, sizeof(*m));

	m->rowid = rowid;
	m->tried = xstrdup("");
	return m;
}

static int
exec_load(struct store_backend *be, struct op *op)
{
	struct binder b = {be->stmt[ST_LOAD], SQLITE_OK};
	struct store_message *m;
	const char *why;
	size_t i;
	int rc;

	op->u.load.msgs = xcalloc(op->u.load.n == 0 ? 1 : op->u.load.n,
				  sizeof(*op->u.load.msgs));
	for (i = 0; i < op->u.load.n; i++) {
		if (op->u.load.rowids[i] < 0) {
			m = unreadable_shell(-op->u.load.rowids[i]);
			op->u.load.msgs[op->u.load.nmsgs++] = m;
			mark_corrupt(m, "page");
			continue;
		}
		bind_int64(&b, 1, op->u.load.rowids[i]);
		if ((rc = bind_end(be, &b, "load")) != 0)
			return rc;
		rc = sqlite3_step(b.s);
		m = NULL;
		why = NULL;
		if (rc == SQLITE_ROW && row_message(b.s, &m, &why) == 0 &&
		    m->mime == NULL)
			why = "mime"; /* nothing to send */
		(void)sqlite3_reset(b.s);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
			if (!row_unreadable(be, rc))
				return store__db_fail(be->db, rc, "load");
			op->u.load.rowids[i] = -op->u.load.rowids[i];
			m = unreadable_shell(-op->u.load.rowids[i]);
			why = "page";
		}
		if (m == NULL)
			continue;
		op->u.load.msgs[op->u.load.nmsgs++] = m;
		if (why != NULL)
			mark_corrupt(m, why);
	}
	return 0;
}

static int
exec_get(struct store_backend *be, struct op *op)
{
	struct binder b = {be->stmt[ST_GET], SQLITE_OK};
	struct store_attempt *a;
	const char *why = NULL;
	size_t cap = 0;
	int rc, err = 0;

	if (op->u.get.unreadable) {
		op->err = -EIO;
		return 0;
	}
	bind_text(&b, 1, op->u.get.id);
	if ((rc = bind_end(be, &b, "get")) != 0)
		return rc;
	rc = sqlite3_step(b.s);
	if (rc == SQLITE_ROW)
		err = row_message(b.s, &op->u.get.m, &why);
	(void)sqlite3_reset(b.s);
	if (rc == SQLITE_DONE) {
		op->err = -ENOENT;
		return 0;
	}
	if (rc != SQLITE_ROW && row_unreadable(be, rc)) {
		err = -EIO; /* that row's answer, as for a corrupt column */
		why = "page";
		op->u.get.unreadable = true;
	} else if (rc != SQLITE_ROW)
		return store__db_fail(be->db, rc, "get");
	if (err != 0) {
		log_warnx("%s store corrupt_record column=%s", op->u.get.id,
			  why);
		store__op_reset(op);
		op->err = err;
		return 0;
	}

	b.s = be->stmt[ST_ATT_LIST];
	bind_int64(&b, 1, op->u.get.m->rowid);
	if ((rc = bind_end(be, &b, "attempts")) != 0)
		return rc;
	while ((rc = sqlite3_step(b.s)) == SQLITE_ROW) {
		if (op->u.get.natt == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			op->u.get.att =
			    xreallocarray(op->u.get.att, cap, sizeof(*a));
		}
		a = &op->u.get.att[op->u.get.natt++];
		a->n = sqlite3_column_int(b.s, 0);
		a->provider = store__col_strdup(b.s, 1);
		a->at_ms = sqlite3_column_int64(b.s, 2);
		a->outcome = sqlite3_column_int(b.s, 3);
		a->detail = store__col_strdup(b.s, 4);
	}
	(void)sqlite3_reset(b.s);
	if (rc != SQLITE_DONE)
		return store__db_fail(be->db, rc, "attempts");
	return 0;
}

/*
 * One chunk of housekeeping: at most HOUSEKEEP_CHUNK idempotency keys and
 * as many finished messages (their attempts go by ON DELETE CASCADE).
 * more is set when either chunk was full: the loop queues the op again.
 */
static int
exec_housekeep(struct store_backend *be, struct op *op)
{
	struct binder b = {be->stmt[ST_IDEM_EXPIRE], SQLITE_OK};
	int64_t pruned = 0;
	int rc, status;

	bind_int64(&b, 1, op->u.hk.idem_cutoff);
	bind_int64(&b, 2, HOUSEKEEP_CHUNK);
	if ((rc = bind_end(be, &b, "idem_expire")) != 0)
		return rc;
	if ((rc = store__step_once(be, ST_IDEM_EXPIRE, op)) != 0)
		return rc;
	if (sqlite3_changes(be->db) >= HOUSEKEEP_CHUNK)
		op->u.hk.more = true;

	b.s = be->stmt[ST_PRUNE];
	bind_int64(&b, 1, op->u.hk.retention_cutoff);
	bind_int64(&b, 2, HOUSEKEEP_CHUNK);
	if ((rc = bind_end(be, &b, "prune")) != 0)
		return rc;
	while ((rc = sqlite3_step(b.s)) == SQLITE_ROW) {
		status = sqlite3_column_int(b.s, 0);
		if (status >= 0 && status < MSG_NSTATUS)
			op->u.hk.chunk[status]++;
		store__count_move(be, status, -1);
		op->wrote = true;
		pruned++;
	}
	(void)sqlite3_reset(b.s);
	if (rc != SQLITE_DONE)
		return store__db_fail(be->db, rc, "prune");
	if (pruned >= HOUSEKEEP_CHUNK)
		op->u.hk.more = true;
	return 0;
}

/* The test hook: text run as it is, between batches. */
static int
exec_text(struct store_backend *be, struct op *op)
{
	return store__exec_sql(be->db, op->u.exec.sql);
}

int
store__exec_op(struct store_backend *be, struct op *op, int64_t now)
{
	switch (op->kind) {
	case OP_SUBMIT:
		return exec_submit(be, op, now);
	case OP_UPDATE:
		return exec_update(be, op, now);
	case OP_LOAD:
		return exec_load(be, op);
	case OP_GET:
		return exec_get(be, op);
	case OP_HOUSEKEEP:
		return exec_housekeep(be, op);
	case OP_EXEC:
		return exec_text(be, op);
	case OP_LIST:
		return store__exec_list(be, op);
	case OP_RETRY:
		return store__exec_retry(be, op, now);
	case OP_OLDEST:
		return store__exec_oldest(be, op);
	case OP_OUTBOX_ADD:
	case OP_OUTBOX_CLAIM:
	case OP_OUTBOX_FINISH:
		return store__outbox_exec(be, op, now);
	}
	fatalx("store: unknown op kind %d", (int)op->kind);
}

int
store__probe_write(struct store_backend *be, int64_t bytes)
{
	struct binder b = {be->stmt[ST_PROBE], SQLITE_OK};
	int rc;

	if ((rc = store__step_once(be, ST_BEGIN, NULL)) != 0)
		return rc;
	bind_int64(&b, 1, bytes);
	if ((rc = bind_end(be, &b, "probe")) != 0 ||
	    (rc = store__step_once(be, ST_PROBE, NULL)) != 0)
		return rc;
	return store__step_once(be, ST_COMMIT, NULL);
}
