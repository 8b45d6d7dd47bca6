/*
 * The SQLite backend's webhook outbox (store.h "The webhook outbox"): the
 * rows of table outbox (schema 4), added by an update's transaction or on
 * their own, claimed in small batches by the sender with a lease, and
 * deleted or rescheduled once a try ended.
 *
 * Every statement goes by the primary key (seq) or, for the claim's
 * search of due rows, by the index outbox_due (next_ms, seq), so no
 * operation here costs more than its rows.  The depth each claim answers
 * (the sender's shivneri_webhook_outbox_rows) is not counted there: a
 * COUNT(*) reads every row, and with two million rows waiting it held the
 * writer, and every submission behind it, for 15 ms a claim.  It is kept
 * exact instead: counted once at open, then each insert adds one and each
 * delete (a finish, the cap's trim, an expiry) takes away the rows it
 * deleted (sqlite3_changes), tallied per transaction in outbox_delta and
 * added to the depth only when that transaction commits, so a batch
 * rolled back and run again counts once.  A statement that fails changes
 * nothing (SQLite undoes it, or the whole transaction), so the tally stays
 * exact through errors; only an outcome the writer cannot know (a COMMIT
 * or ROLLBACK that failed, the test hook's own SQL) forgets the depth, and
 * the next claim counts again.  Reusing an old count instead, for a time
 * after a slow one, answered a depth from before the last changes.
 *
 * The cap: seq only grows while the table holds rows (the newest row is
 * never dropped), so after inserting seq N, deleting every row with seq
 * at most N - max leaves at most max rows, by the primary
 * key, in the same transaction.  Rows so dropped are counted and logged
 * (at most once a minute) when that transaction commits, so a batch
 * rolled back and run again counts them once.  The age limit: a claimed
 * row older than the claim's cut-off is deleted in the claim's
 * transaction instead of handed out, counted and logged the same way.
 *
 * The statements are prepared on first use by the writer thread, which
 * alone touches them, and finalized before the database closes.
 */
#include "store/store_sqlite.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Expired rows one claim deletes at most (see exec_claim). */
#define CLAIM_EXPIRE_MAX 1000

enum {
	OB_INSERT,
	OB_TRIM,
	OB_CLAIM,
	OB_COUNT,
	OB_DELETE,
	OB_RETRY,
	OB_PULL_IN,
	OB_MAX,
};

_Static_assert(OB_MAX <= sizeof(((struct store_backend *)0)->outbox_stmt) /
			     sizeof(sqlite3_stmt *),
	       "outbox_stmt must hold every outbox statement");

static const char *const ob_sql[OB_MAX] = {
    [OB_INSERT] = "INSERT INTO outbox (created_ms, next_ms, attempts, body)"
		  " VALUES (?1, 0, 0, ?2)",
    [OB_TRIM] = "DELETE FROM outbox WHERE seq <= ?1",
    /*
     * The due rows in the order of outbox_due (schema 5), so the search
     * is a range of that index and stops after ?3 rows, sorting nothing:
     * the rows due the longest first, those never tried (next_ms 0) in
     * seq order before them all.
     */
    [OB_CLAIM] = "UPDATE outbox SET next_ms = ?2, attempts = attempts + 1"
		 " WHERE seq IN (SELECT seq FROM outbox WHERE next_ms <= ?1"
		 " ORDER BY next_ms, seq LIMIT ?3)"
		 " RETURNING seq, created_ms, attempts, body",
    [OB_COUNT] = "SELECT COUNT(*) FROM outbox",
    [OB_DELETE] = "DELETE FROM outbox WHERE seq = ?1",
    [OB_RETRY] = "UPDATE outbox SET next_ms = ?2 WHERE seq = ?1",
    /* Rows due beyond the horizon are due now (exec_claim). */
    [OB_PULL_IN] = "UPDATE outbox SET next_ms = ?1 WHERE next_ms > ?2",
};

static const char *const ob_name[OB_MAX] = {
    [OB_INSERT] = "outbox_insert",   [OB_TRIM] = "outbox_trim",
    [OB_CLAIM] = "outbox_claim",     [OB_COUNT] = "outbox_count",
    [OB_DELETE] = "outbox_delete",   [OB_RETRY] = "outbox_retry",
    [OB_PULL_IN] = "outbox_pull_in",
};

const char *
store__outbox_claim_sql(void)
{
	return ob_sql[OB_CLAIM];
}

/* The statement, prepared on first use; NULL with *rc set on failure. */
static sqlite3_stmt *
ob_stmt(struct store_backend *be, int which, int *rc)
{
	int r;

	if (be->outbox_stmt[which] != NULL)
		return be->outbox_stmt[which];
	r = sqlite3_prepare_v3(be->db, ob_sql[which], -1,
			       SQLITE_PREPARE_PERSISTENT,
			       &be->outbox_stmt[which], NULL);
	if (r != SQLITE_OK) {
		be->outbox_stmt[which] = NULL;
		*rc = store__db_fail(be->db, r, ob_name[which]);
		return NULL;
	}
	return be->outbox_stmt[which];
}

/*
 * Binds up to two integers (n of them) to the statement, steps it once to
 * its end and resets it.  0 or the error; a change marks op as written.
 * *changed: the rows it changed (0 on error), if not NULL.
 */
static int
ob_run(struct store_backend *be, struct op *op, int which, int n, int64_t a,
       int64_t b, int64_t *changed)
{
	sqlite3_stmt *s;
	int64_t ch;
	int rc = 0;

	if (changed != NULL)
		*changed = 0;

	if ((s = ob_stmt(be, which, &rc)) == NULL)
		return rc;
	rc = sqlite3_bind_int64(s, 1, a);
	if (rc == SQLITE_OK && n > 1)
		rc = sqlite3_bind_int64(s, 2, b);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	(void)sqlite3_reset(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return store__db_fail(be->db, rc, ob_name[which]);
	ch = sqlite3_changes64(be->db);
	if (ch > 0)
		op->wrote = true;
	if (changed != NULL)
		*changed = ch;
	return 0;
}

/* Rows the open transaction deleted: the depth is less when it commits. */
static int
ob_delete(struct store_backend *be, struct op *op, int which, int64_t a,
	  int64_t *deleted)
{
	int64_t n;
	int rc = ob_run(be, op, which, 1, a, 0, &n);

	be->outbox_delta -= n;
	if (deleted != NULL)
		*deleted = n;
	return rc;
}

int
store__outbox_insert(struct store_backend *be, struct op *op, const char *body,
		     int64_t now)
{
	sqlite3_stmt *s;
	int64_t seq, dropped, max;
	int rc = 0;

	if ((s = ob_stmt(be, OB_INSERT, &rc)) == NULL)
		return rc;
	rc = sqlite3_bind_int64(s, 1, now);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(s, 2, body, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	/* No pointer of this op may stay bound to a statement we keep. */
	(void)sqlite3_reset(s);
	(void)sqlite3_clear_bindings(s);
	if (rc != SQLITE_DONE)
		return store__db_fail(be->db, rc, ob_name[OB_INSERT]);
	op->wrote = true;
	be->outbox_delta++;
	seq = sqlite3_last_insert_rowid(be->db);
	max = atomic_load(&be->outbox_max);
	if (seq <= max)
		return 0;
	if ((rc = ob_delete(be, op, OB_TRIM, seq - max, &dropped)) != 0)
		return rc;
	if (dropped > 0) {
		be->outbox_drops.cap += dropped;
		be->outbox_drops.max = max;
	}
	return 0;
}

void
store__outbox_begin(struct store_backend *be)
{
	memset(&be->outbox_drops, 0, sizeof(be->outbox_drops));
	be->outbox_delta = 0;
}

void
store__outbox_forget(struct store_backend *be)
{
	be->outbox_rows = -1;
}

/*
 * The rows in the outbox, counted (COUNT(*) reads every row: only where
 * the depth is unknown).  0 or the error.
 */
static int
count_rows(struct store_backend *be, sqlite3_stmt *s, int64_t *rows)
{
	int rc = sqlite3_step(s);

	atomic_fetch_add(&be->outbox_counts, 1);
	if (rc == SQLITE_ROW)
		*rows = sqlite3_column_int64(s, 0);
	(void)sqlite3_reset(s);
	if (rc != SQLITE_ROW)
		return store__db_fail(be->db, rc, ob_name[OB_COUNT]);
	return 0;
}

void
store__outbox_open(struct store_backend *be)
{
	sqlite3_stmt *s;
	int64_t rows;
	int rc;

	be->outbox_rows = -1;
	be->outbox_delta = 0;
	/* Not ob_stmt: the writer alone keeps those, and it has not started. */
	rc = sqlite3_prepare_v2(be->db, ob_sql[OB_COUNT], -1, &s, NULL);
	if (rc != SQLITE_OK) {
		(void)store__db_fail(be->db, rc, ob_name[OB_COUNT]);
		return;
	}
	if (count_rows(be, s, &rows) == 0)
		be->outbox_rows = rows;
	sqlite3_finalize(s);
	/* In autocommit mode the read's transaction ended with the reset. */
}

void
store__outbox_commit(struct store_backend *be)
{
	int64_t cap = be->outbox_drops.cap, age = be->outbox_drops.age;

	if (be->outbox_rows >= 0)
		be->outbox_rows += be->outbox_delta;
	be->outbox_delta = 0;
	if (cap + age == 0)
		return;
	atomic_fetch_add(&be->outbox_dropped, (uint64_t)(cap + age));
	if (cap > 0)
		log_warnx_rl(
		    &be->outbox_rl, 60000,
		    "- store outbox_full dropped=%lld total=%llu max=%lld",
		    (long long)cap,
		    (unsigned long long)atomic_load(&be->outbox_dropped),
		    (long long)be->outbox_drops.max);
	if (age > 0)
		log_warnx_rl(
		    &be->outbox_age_rl, 60000,
		    "- store outbox_expired dropped=%lld total=%llu "
		    "max_age_ms=%lld",
		    (long long)age,
		    (unsigned long long)atomic_load(&be->outbox_dropped),
		    (long long)be->outbox_drops.max_age_ms);
}

/*
 * One round of a claim: up to limit due rows are leased (the statement's
 * RETURNING), those created before expire_before are set aside in
 * expired[] (their seq) to be deleted, the rest appended to the op's rows.
 */
static int
claim_round(struct store_backend *be, struct op *op, size_t limit,
	    int64_t *expired, size_t *nexpired, size_t *nclaimed)
{
	struct store_outbox_row *r;
	sqlite3_stmt *s;
	size_t len;
	int rc = 0;

	if ((s = ob_stmt(be, OB_CLAIM, &rc)) == NULL)
		return rc;
	rc = sqlite3_bind_int64(s, 1, op->u.outbox.next_ms);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 2, op->u.outbox.lease);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(s, 3, (int64_t)limit);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		op->wrote = true;
		rc = SQLITE_OK;
		/*
		 * LIMIT bounds it (and so the rows: nrows + limit is max);
		 * the check keeps a surprise in bounds.
		 */
		if (*nclaimed == limit ||
		    sqlite3_column_type(s, 3) != SQLITE_TEXT)
			continue;
		(*nclaimed)++;
		if (sqlite3_column_int64(s, 1) < op->u.outbox.expire_before) {
			expired[(*nexpired)++] = sqlite3_column_int64(s, 0);
			continue;
		}
		r = &op->u.outbox.rows[op->u.outbox.nrows++];
		r->seq = sqlite3_column_int64(s, 0);
		r->created_ms = sqlite3_column_int64(s, 1);
		r->attempts = sqlite3_column_int(s, 2);
		/* The text dies at the next step: copied. */
		len = (size_t)sqlite3_column_bytes(s, 3);
		r->body =
		    xstrndup((const char *)sqlite3_column_text(s, 3), len);
	}
	(void)sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store__db_fail(be->db, rc, ob_name[OB_CLAIM]);
	return 0;
}

/*
 * Claims due rows.  Rows past their age (created before expire_before:
 * webhook_max_age_s) are deleted instead of handed out, in the claim's
 * transaction, and counted with the cap's drops; their slots are claimed
 * again, round after round, until the claim is full, nothing due is
 * left, or CLAIM_EXPIRE_MAX rows were dropped (the rest go at the next
 * claim), so a backlog of expired rows drains fast but never holds the
 * writer long.
 */
/*
 * No row waits longer than the sender's horizon (its longest backoff or
 * lease, store_outbox_set_horizon), so a row due further away than that
 * was timed by a clock that has since gone back (before a restart: the
 * sender's own clock never steps): it is due now, not in as long as the
 * clock moved.  Without this a clock stepped back an hour held every
 * webhook retry an hour longer.  A range of outbox_due, empty unless the
 * clock moved, before the claim's search.
 */
static int
pull_in(struct store_backend *be, struct op *op)
{
	int64_t horizon = atomic_load(&be->outbox_horizon);
	int64_t now = op->u.outbox.next_ms, n;
	int rc;

	if (horizon <= 0 || now > INT64_MAX - horizon)
		return 0;
	rc = ob_run(be, op, OB_PULL_IN, 2, now, now + horizon, &n);
	if (n > 0)
		log_info(
		    "- store outbox_pulled_in rows=%" PRId64
		    " horizon_ms=%" PRId64
		    ": due later than any wait, timed by a clock that went "
		    "back; due now",
		    n, horizon);
	return rc;
}

static int
exec_claim(struct store_backend *be, struct op *op)
{
	sqlite3_stmt *s;
	int64_t *expired, dropped = 0, rows;
	size_t i, limit, nexpired, nclaimed;
	int rc = 0;

	if ((rc = pull_in(be, op)) != 0)
		return rc;
	op->u.outbox.rows =
	    xcalloc(op->u.outbox.max, sizeof(struct store_outbox_row));
	expired = xcalloc(op->u.outbox.max, sizeof(*expired));
	do {
		limit = op->u.outbox.max - op->u.outbox.nrows;
		nexpired = nclaimed = 0;
		rc = claim_round(be, op, limit, expired, &nexpired, &nclaimed);
		for (i = 0; rc == 0 && i < nexpired; i++)
			rc = ob_delete(be, op, OB_DELETE, expired[i], NULL);
		dropped += (int64_t)nexpired;
	} while (rc == 0 && nexpired > 0 && nclaimed == limit &&
		 dropped < CLAIM_EXPIRE_MAX);
	free(expired);
	if (rc != 0)
		return rc;
	if (dropped > 0) {
		be->outbox_drops.age += dropped;
		/*
		 * For the log: the sender's claim times are on its own clock
		 * and its age cut-off on the wall clock (created_ms's), so
		 * their difference is the age limit give or take the few
		 * milliseconds between the two: whole seconds, as configured.
		 */
		be->outbox_drops.max_age_ms =
		    (op->u.outbox.next_ms - op->u.outbox.expire_before + 500) /
		    1000 * 1000;
	}

	if (be->outbox_rows < 0) {
		/*
		 * Unknown (store__outbox_forget): counted again.  The count
		 * sees this transaction's own changes, so the depth as of
		 * the last commit is the count less them.
		 */
		if ((s = ob_stmt(be, OB_COUNT, &rc)) == NULL)
			return rc;
		if ((rc = count_rows(be, s, &rows)) != 0)
			return rc;
		be->outbox_rows = rows - be->outbox_delta;
	}
	op->u.outbox.depth = be->outbox_rows + be->outbox_delta;
	return 0;
}

int
store__outbox_exec(struct store_backend *be, struct op *op, int64_t now)
{
	switch (op->kind) {
	case OP_OUTBOX_ADD:
		return store__outbox_insert(be, op, op->u.outbox.body, now);
	case OP_OUTBOX_CLAIM:
		return exec_claim(be, op);
	case OP_OUTBOX_FINISH:
		if (op->u.outbox.next_ms < 0)
			return ob_delete(be, op, OB_DELETE, op->u.outbox.seq,
					 NULL);
		return ob_run(be, op, OB_RETRY, 2, op->u.outbox.seq,
			      op->u.outbox.next_ms, NULL);
	default:
		fatalx("store__outbox_exec: op kind %d", (int)op->kind);
	}
}

void
store__outbox_reset(struct op *op)
{
	if (op->kind != OP_OUTBOX_CLAIM)
		return;
	store_outbox_rows_free(op->u.outbox.rows, op->u.outbox.nrows);
	op->u.outbox.rows = NULL;
	op->u.outbox.nrows = 0;
	op->u.outbox.depth = 0;
}

void
store__outbox_complete(struct op *op)
{
	int err;

	if (op->kind != OP_OUTBOX_CLAIM) {
		if (op->cb.done != NULL)
			op->cb.done(op->arg, op->err);
		return;
	}
	if (op->err != 0) {
		/* Nothing claimed is on disk: drop the rows, keep the error. */
		err = op->err;
		store__outbox_reset(op);
		op->err = err;
	}
	op->cb.outbox_claim(op->arg, op->err, op->u.outbox.rows,
			    op->u.outbox.nrows, op->u.outbox.depth);
	op->u.outbox.rows = NULL; /* the callback took them */
	op->u.outbox.nrows = 0;
}

void
store__outbox_close(struct store_backend *be)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(be->outbox_stmt); i++) {
		sqlite3_finalize(be->outbox_stmt[i]);
		be->outbox_stmt[i] = NULL;
	}
}

void
store__sqlite_outbox_add(struct store_backend *be, int err, const char *body,
			 store_done_cb cb, void *arg)
{
	struct op *op;
	char *tail;
	size_t n = strlen(body) + 1;

	op = store__op_new(be, OP_OUTBOX_ADD, err, arg, n, &tail);
	op->cb.done = cb;
	memcpy(tail, body, n);
	op->u.outbox.body = tail;
	store__enqueue(be, op);
}

void
store__sqlite_outbox_claim(struct store_backend *be, int err, int64_t now_ms,
			   int64_t lease_until_ms, size_t max,
			   int64_t expire_before_ms, store_outbox_claim_cb cb,
			   void *arg)
{
	struct op *op;

	op = store__op_new(be, OP_OUTBOX_CLAIM, err, arg, 0, NULL);
	op->cb.outbox_claim = cb;
	op->u.outbox.next_ms = now_ms;
	op->u.outbox.lease = lease_until_ms;
	op->u.outbox.max = max;
	op->u.outbox.expire_before = expire_before_ms;
	store__enqueue(be, op);
}

void
store__sqlite_outbox_finish(struct store_backend *be, int err, int64_t seq,
			    int64_t next_ms, store_done_cb cb, void *arg)
{
	struct op *op;

	op = store__op_new(be, OP_OUTBOX_FINISH, err, arg, 0, NULL);
	op->cb.done = cb;
	op->u.outbox.seq = seq;
	op->u.outbox.next_ms = next_ms;
	store__enqueue(be, op);
}

uint64_t
store__sqlite_outbox_dropped(const struct store_backend *be)
{
	return atomic_load(&be->outbox_dropped);
}

uint64_t
store__sqlite_outbox_counts(const struct store_backend *be)
{
	return atomic_load(&be->outbox_counts);
}

void
store__sqlite_outbox_set_max(struct store_backend *be, int64_t max)
{
	atomic_store(&be->outbox_max, max);
}

void
store__sqlite_outbox_set_horizon(struct store_backend *be, int64_t ms)
{
	atomic_store(&be->outbox_horizon, ms);
}
