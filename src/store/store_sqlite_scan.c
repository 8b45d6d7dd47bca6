/*
 * The SQLite backend's start-up reads: crash recovery (messages a crash
 * left in "sending" go back to "queued" with a "lost" attempt) and the
 * start-up scan (status_counts, and every queued row's rowid and next_ms
 * handed to the dispatcher).
 *
 * Both read rows of the messages table, so both meet a damaged page (a bad
 * sector, a torn write the disk did not report) if there is one: SQLite
 * answers SQLITE_CORRUPT for any row on it.  One such page used to fail
 * the scan, and with it the server's start: a relay that cannot start
 * sends nothing, not even the thousands of messages on intact pages.  So
 * each first tries the cheap way (one statement over every row, as
 * before) and, only when that meets a damaged page, goes row by row: the
 * index messages_active names the rows (it is a b-tree of its own, so a
 * damaged table page leaves it readable), and each row is read alone by
 * its rowid.  A row that cannot be read is skipped and counted: it cannot
 * be sent (nothing of it can be read, not even its recipients), it stays
 * as it is on disk (a damaged page cannot be written either), and the
 * count reaches one log line and /metrics (store_unreadable_rows).  The
 * counts handed to the dispatcher leave such rows out, so its queue
 * empties when everything readable is sent.  What the operator does then
 * is in docs/internals/store.md.
 *
 * A damaged page of messages_active, which names the rows both walk, was
 * found and built again from the table before either runs (the open's
 * check, store_sqlite_reindex.c), so what they meet here is the table's.
 * Only when that rebuild failed (the table is damaged too) does a damaged
 * index still fail the scan, as does a damaged schema: those name every
 * row, and guessing past them could lose messages silently.  A damaged
 * status_counts is counted again (store__repair_counts).
 */
#include "store/store_sqlite.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Binds v to the parameter name if s has it. */
static int
bind_named(sqlite3_stmt *s, const char *name, int64_t v)
{
	int i = sqlite3_bind_parameter_index(s, name);

	return i > 0 ? sqlite3_bind_int64(s, i, v) : SQLITE_OK;
}

int
store__recover_step(sqlite3 *db, const char *sql, int64_t now, int64_t rowid,
		    int *changes)
{
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = bind_named(s, ":now", now);
	if (rc == SQLITE_OK)
		rc = bind_named(s, ":lost", OUTCOME_LOST);
	if (rc == SQLITE_OK)
		rc = bind_named(s, ":rowid", rowid);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		*changes = sqlite3_changes(db);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	return rc;
}

/* status_counts: n rows moved from sending to queued. */
static int
recover_counts(sqlite3 *db, int64_t n)
{
	char *sql;
	int rc;

	sql = xasprintf(
	    "UPDATE status_counts SET n = n + %" PRId64 " WHERE status = 0;"
	    "UPDATE status_counts SET n = n - %" PRId64 " WHERE status = 1;",
	    n, n);
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	free(sql);
	return rc;
}

/*
 * Every "sending" row at once: one transaction, three statements.  The
 * SQLite code (SQLITE_CORRUPT sends the caller the careful way).
 */
static int
recover_all(struct store_backend *be, int64_t now, int *n)
{
	int rc, ins = 0;

	*n = 0;
	rc = sqlite3_exec(be->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = store__recover_step(be->db, RECOVER_INSERT, now, 0, &ins);
	if (rc == SQLITE_OK)
		rc = store__recover_step(be->db, RECOVER_UPDATE, now, 0, n);
	if (rc == SQLITE_OK)
		rc = recover_counts(be->db, *n);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(be->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		store__end_txn(be->db);
	return rc;
}

/* The rowids of rows in status (from the index alone) into *out. */
static int
rowids_of(sqlite3 *db, int status, int64_t **out, size_t *n)
{
	sqlite3_stmt *s = NULL;
	size_t cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = sqlite3_prepare_v2(db,
				"SELECT rowid FROM messages WHERE status = ?1"
				" ORDER BY id",
				-1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(s, 1, status);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			*out = xreallocarray(*out, cap, sizeof(**out));
		}
		(*out)[(*n)++] = sqlite3_column_int64(s, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * Drops (rowid 0) the rows that cannot be read whole, in a read
 * transaction of their own, so that the write transaction does not meet
 * them: each it met would cost a run of it.  An SQLite code.
 */
static int
drop_unreadable(sqlite3 *db, int64_t *rows, size_t nrows, int *skipped)
{
	sqlite3_stmt *s = NULL;
	size_t i;
	int rc;

	rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(
		    db, "SELECT * FROM messages WHERE rowid = ?1", -1, &s,
		    NULL);
	for (i = 0; rc == SQLITE_OK && i < nrows; i++) {
		rc = sqlite3_bind_int64(s, 1, rows[i]);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(s);
		if (store__is_damage(rc)) {
			rows[i] = 0;
			(*skipped)++;
		}
		rc = rc == SQLITE_ROW || rc == SQLITE_DONE ||
			     store__is_damage(rc)
			 ? SQLITE_OK
			 : rc;
		(void)sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	store__end_txn(db);
	return rc;
}

/*
 * The careful way: each "sending" row moved in a statement of its own,
 * skipping the rows whose pages are damaged (drop_unreadable).  A row that
 * still fails with SQLITE_CORRUPT (its write made SQLite rebalance into a
 * damaged neighbour) is dropped from the list (rowid 0) and the
 * transaction runs again without it (a damaged page poisons the
 * transaction it was read in), so this ends after at most one run per
 * row.
 */
static int
recover_rows(struct store_backend *be, int64_t now, int *n, int *skipped)
{
	int64_t *rows = NULL;
	size_t nrows = 0, i, runs, at;
	int rc, one;

	*n = 0;
	*skipped = 0;
	rc = rowids_of(be->db, MSG_SENDING, &rows, &nrows);
	if (rc == SQLITE_OK)
		rc = drop_unreadable(be->db, rows, nrows, skipped);
	for (runs = 0; rc == SQLITE_OK && runs <= nrows; runs++) {
		*n = 0;
		at = nrows; /* no row to blame */
		rc = sqlite3_exec(be->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		for (i = 0; rc == SQLITE_OK && i < nrows; i++) {
			if (rows[i] == 0)
				continue;
			at = i;
			rc = store__recover_step(be->db, RECOVER_INSERT ONE_ROW,
						 now, rows[i], &one);
			if (rc == SQLITE_OK)
				rc = store__recover_step(be->db,
							 RECOVER_UPDATE ONE_ROW,
							 now, rows[i], &one);
			if (rc == SQLITE_OK)
				*n += one;
			at = rc == SQLITE_OK ? nrows : i;
		}
		if (rc == SQLITE_OK)
			rc = recover_counts(be->db, *n);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(be->db, "COMMIT", NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			break;
		store__end_txn(be->db);
		if (!store__is_damage(rc) || at == nrows)
			break;
		rows[at] = 0; /* the row being moved when the damage was met */
		(*skipped)++;
		rc = SQLITE_OK;
	}
	free(rows);
	return rc;
}

/*
 * Reads status_counts (one page) and, if it is damaged, makes it again
 * (store__repair_counts): recovery and every batch write it.
 */
static int
counts_check(struct store_backend *be)
{
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sqlite3_prepare_v2(be->db, "SELECT sum(n) FROM status_counts", -1,
				&s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW)
		return 0;
	if (store__is_damage(rc))
		return store__repair_counts(be);
	return store__db_fail(be->db, rc, "counts_check");
}

int
store__recover(struct store_backend *be)
{
	int64_t now = now_ms();
	int rc, n = 0, skipped = 0;

	if ((rc = counts_check(be)) != 0)
		return rc;
	rc = recover_all(be, now, &n);
	if (store__is_damage(rc)) {
		log_warnx("- store recover_damaged: recovery met a damaged "
			  "page; going row by row");
		rc = recover_rows(be, now, &n, &skipped);
	}
	if (rc != SQLITE_OK) {
		/* The transaction is over: SQLite's text of rc, not errmsg. */
		log_warnx(
		    "- store sqlite_error op=\"recover\" rc=%d msg=\"%s\"", rc,
		    sqlite3_errstr(rc));
		return store__is_damage(rc) ? STORE_EDAMAGED
					    : store__sqlite_errno(rc);
	}
	if (n > 0)
		log_info("- store recovered sending=%d status=queued", n);
	if (skipped > 0)
		log_warnx("- store recover_skipped rows=%d status=sending: "
			  "unreadable, or next to a damaged page, left as "
			  "they are",
			  skipped);
	return 0;
}

/* status_counts into counts[]. */
static int
scan_counts(sqlite3 *db, int64_t counts[MSG_NSTATUS])
{
	sqlite3_stmt *s = NULL;
	int rc, status;

	memset(counts, 0, sizeof(int64_t) * MSG_NSTATUS);
	rc = sqlite3_prepare_v2(db, "SELECT status, n FROM status_counts", -1,
				&s, NULL);
	if (rc != SQLITE_OK)
		return store__db_fail(db, rc, "scan_counts");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		status = sqlite3_column_int(s, 0);
		if (status >= 0 && status < MSG_NSTATUS)
			counts[status] = sqlite3_column_int64(s, 1);
	}
	rc = rc == SQLITE_DONE ? 0 : store__db_fail(db, rc, "scan_counts");
	sqlite3_finalize(s);
	return rc;
}

/* What a walk of the queued rows hands out, and what it met. */
struct walk {
	void (*each)(void *arg, int64_t rowid, int64_t next_ms);
	void *arg;
	char last[32];       /* the id of the last row handed out ("": none) */
	uint64_t unreadable; /* queued rows skipped as damaged */
};

/*
 * The cheap way: one statement walks the index and reads each row's
 * next_ms.  An SQLite code; SQLITE_CORRUPT when it met a damaged row,
 * with w->last saying where to go on from.
 */
static int
walk_joined(sqlite3 *db, struct walk *w)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *id;
	size_t len;
	int rc;

	rc = sqlite3_prepare_v2(db,
				"SELECT rowid, next_ms, id FROM messages"
				" WHERE status = 0 ORDER BY id",
				-1, &s, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		w->each(w->arg, sqlite3_column_int64(s, 0),
			sqlite3_column_int64(s, 1));
		/* Where to go on from if the next row is damaged. */
		id = sqlite3_column_text(s, 2);
		len = (size_t)sqlite3_column_bytes(s, 2);
		if (id != NULL && len < sizeof(w->last)) {
			memcpy(w->last, id, len);
			w->last[len] = '\0';
		}
		rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * The careful way, from after w->last: the index alone names the rows
 * (rowid and id are in it), and each row's next_ms is read by its rowid;
 * a row that cannot be read is counted and skipped.  An SQLite code.
 */
static int
walk_rows(sqlite3 *db, struct walk *w)
{
	sqlite3_stmt *ix = NULL, *row = NULL;
	int64_t rowid;
	int rc, rrc;

	rc = sqlite3_prepare_v2(db,
				"SELECT rowid FROM messages"
				" WHERE status = 0 AND id > ?1 ORDER BY id",
				-1, &ix, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(
		    db, "SELECT next_ms FROM messages WHERE rowid = ?1", -1,
		    &row, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(ix, 1, w->last, -1, SQLITE_STATIC);
	while (rc == SQLITE_OK && (rc = sqlite3_step(ix)) == SQLITE_ROW) {
		rowid = sqlite3_column_int64(ix, 0);
		rc = sqlite3_bind_int64(row, 1, rowid);
		rrc = rc == SQLITE_OK ? sqlite3_step(row) : rc;
		if (rrc == SQLITE_ROW)
			w->each(w->arg, rowid, sqlite3_column_int64(row, 0));
		else if (store__is_damage(rrc) || rrc == SQLITE_DONE)
			w->unreadable++;
		else
			rc = rrc;
		(void)sqlite3_reset(row);
	}
	sqlite3_finalize(row);
	sqlite3_finalize(ix);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The rows in status, counted in the index alone. */
static int
count_in_index(sqlite3 *db, int status, int64_t *n)
{
	sqlite3_stmt *s = NULL;
	int rc;

	*n = 0;
	rc = sqlite3_prepare_v2(
	    db, "SELECT count(*) FROM messages WHERE status = ?1", -1, &s,
	    NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(s, 1, status);
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		*n = sqlite3_column_int64(s, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	return rc;
}

/* Rowids, growing. */
struct rowids {
	int64_t *v;
	size_t n, cap;
};

static void
rowids_push(struct rowids *r, int64_t rowid)
{
	if (r->n == r->cap) {
		r->cap = r->cap == 0 ? 256 : r->cap * 2;
		r->v = xreallocarray(r->v, r->cap, sizeof(*r->v));
	}
	r->v[r->n++] = rowid;
}

/*
 * Every row of the table, named by the id's index (a b-tree of its own),
 * read whole by its rowid: those that read into keep, the others into
 * lost.  O(rows): only after damage was met.  An SQLite code.
 */
static int
classify(sqlite3 *db, struct rowids *keep, struct rowids *lost)
{
	sqlite3_stmt *ix = NULL, *row = NULL;
	int64_t rowid;
	int rc, rrc;

	rc = sqlite3_prepare_v2(db, "SELECT rowid FROM messages ORDER BY id",
				-1, &ix, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(
		    db, "SELECT * FROM messages WHERE rowid = ?1", -1, &row,
		    NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(ix)) == SQLITE_ROW) {
		rowid = sqlite3_column_int64(ix, 0);
		rc = sqlite3_bind_int64(row, 1, rowid);
		rrc = rc == SQLITE_OK ? sqlite3_step(row) : rc;
		if (rrc == SQLITE_ROW)
			rowids_push(keep, rowid);
		else if (store__is_damage(rrc) || rrc == SQLITE_DONE)
			rowids_push(lost, rowid);
		else
			rc = rrc;
		(void)sqlite3_reset(row);
	}
	sqlite3_finalize(row);
	sqlite3_finalize(ix);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * The table has damaged rows: which ones, then the repair (its own
 * connection; see store_sqlite_repair.c), then counts read again from
 * the repaired table.  Ends db's read transaction.  A repair that fails
 * leaves the table as it was: the scan has handed out what it could
 * read, and the server runs with the damage (store.md says what then).
 */
static void
repair(struct store_backend *be, sqlite3 *db, int64_t counts[MSG_NSTATUS],
       uint64_t *lost_rows, char *moved, size_t movedsz,
       struct store_dues *recovered)
{
	struct rowids keep = {0}, lost = {0};
	int rc;

	rc = classify(db, &keep, &lost);
	store__end_txn(db);
	*lost_rows = lost.n;
	if (rc != SQLITE_OK) {
		(void)store__db_fail(db, rc, "scan_classify");
		goto out;
	}
	if (store__repair(be, keep.v, keep.n, lost.v, lost.n, moved, movedsz,
			  recovered) != 0)
		goto out;
	if (counts != NULL && store__exec_sql(db, "BEGIN") == 0) {
		(void)scan_counts(db, counts);
		store__end_txn(db);
	}
out:
	free(keep.v);
	free(lost.v);
}

/*
 * Hands out every readable queued row and counts the unreadable ones
 * (and the "sending" rows recovery could not read), which are then left
 * out of counts so that counts name what the dispatcher can act on; with
 * any, the table is repaired.  Ends db's read transaction.
 */
static int
scan_queued(struct store_backend *be, sqlite3 *db, struct walk *w,
	    int64_t counts[MSG_NSTATUS])
{
	char moved[64] = "none";
	struct store_dues rec = {0};
	int64_t stuck = 0;
	uint64_t bad, lost = 0;
	size_t i;
	int rc;

	/* Counts alone (a test's look mid-run): no walk, no damage. */
	if (w->each == NULL)
		return 0;
	rc = walk_joined(db, w);
	if (store__is_damage(rc))
		rc = walk_rows(db, w);
	/*
	 * Recovery, just before, moved every readable "sending" row: those
	 * left it could not read.
	 */
	if (rc == SQLITE_OK)
		rc = count_in_index(db, MSG_SENDING, &stuck);
	if (rc != SQLITE_OK) {
		rc = store__db_fail(db, rc, "scan");
		store__end_txn(db);
		return rc;
	}
	bad = w->unreadable + (uint64_t)stuck;
	if (counts != NULL) {
		counts[MSG_QUEUED] -= (int64_t)w->unreadable;
		counts[MSG_SENDING] -= stuck;
		if (counts[MSG_QUEUED] < 0)
			counts[MSG_QUEUED] = 0;
		if (counts[MSG_SENDING] < 0)
			counts[MSG_SENDING] = 0;
	}
	if (bad > 0)
		repair(be, db, counts, &lost, moved, sizeof(moved), &rec);
	store__end_txn(db);
	/*
	 * The "sending" rows the repair moved to queued were readable after
	 * all (recovery could not write them): sendable, handed out now.
	 */
	for (i = 0; i < rec.n; i++)
		w->each(w->arg, rec.v[i].rowid, rec.v[i].next_ms);
	bad = bad > rec.n ? bad - rec.n : 0;
	stuck = stuck > (int64_t)rec.n ? stuck - (int64_t)rec.n : 0;
	free(rec.v);
	atomic_store(&be->unreadable_rows, bad);
	if (bad > 0)
		log_warnx("- store damaged_rows unreadable=%" PRIu64
			  " queued=%" PRIu64 " sending=%" PRId64
			  " all_statuses=%" PRIu64 " moved_to=%s: on damaged "
			  "pages, these messages cannot be sent; see "
			  "docs/internals/store.md, \"Damaged pages\"",
			  bad, w->unreadable, stuck, lost, moved);
	return 0;
}

int
store__db_scan(struct store_backend *be,
	       void (*each)(void *arg, int64_t rowid, int64_t next_ms),
	       void *arg, int64_t counts[MSG_NSTATUS])
{
	struct walk w = {each, arg, "", 0};
	int64_t ignored[MSG_NSTATUS];
	sqlite3 *db = NULL;
	int rc;

	rc = sqlite3_open_v2(be->path, &db,
			     SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = db != NULL ? store__db_fail(db, rc, "scan") : -ENOMEM;
		goto out;
	}
	(void)sqlite3_extended_result_codes(db, 1);
	(void)sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	/*
	 * One read transaction, so the counts and the list agree.  Read
	 * only: nothing to commit (and after a damaged read SQLite would
	 * refuse the COMMIT), so it ends with a rollback.
	 */
	if ((rc = store__exec_sql(db, "BEGIN")) != 0)
		goto out;
	rc = scan_counts(db, counts != NULL ? counts : ignored);
	if (rc == 0)
		rc = scan_queued(be, db, &w, counts);
	store__end_txn(db);
out:
	sqlite3_close(db);
	return rc;
}
