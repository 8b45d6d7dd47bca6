/*
 * The SQLite backend's repair of a damaged messages table, run by the
 * start-up scan (store_sqlite_scan.c) when it met rows it could not read.
 *
 * Skipping the unreadable rows is not enough: a later write of a readable
 * row on a page next to the damaged one makes SQLite rebalance the pages
 * around it, reads the damaged page and fails, and the dispatcher then
 * retries that write for ever while its pump is held.  So the table is
 * rebuilt without the damaged page: in one transaction the damaged table
 * is renamed messages_damaged_MS (kept for the operator: its readable
 * parts and the damaged page are still there for sqlite3's .recover; it
 * is never read again, and cannot be dropped, since dropping reads every
 * page), a new messages table is made from the same CREATE statement,
 * every readable row is copied with its rowid (so bodies, attempts and the
 * dispatcher's rowids still match), its indexes are made again, the
 * bodies and attempts of the rows left behind move to bodies_damaged_MS
 * and attempts_damaged_MS (a new message may take their rowids), their
 * idempotency keys are forgotten (a client's retry then stores the message
 * again), the "sending" rows recovery could not move are moved now
 * (recover_left), and status_counts is counted again from the new table.
 *
 * The rename must not rewrite the REFERENCES messages(rowid) of bodies
 * and attempts: with foreign_keys off and legacy_alter_table on (this
 * connection only) SQLite leaves them naming "messages", the new table.
 * Which rows are readable was decided before, in a read transaction: a
 * damaged page read inside a write transaction makes SQLite refuse its
 * COMMIT.  Any failure rolls the whole repair back and leaves the store
 * as it was (the scan then goes on without it).
 */
#include "store/store_sqlite.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The CREATE statements of the messages table and its indexes. */
struct schema_sql {
	char *table;
	char *index[8];
	size_t nindex;
	char *index_name[8];
};

static void
schema_sql_cleanup(struct schema_sql *q)
{
	size_t i;

	free(q->table);
	for (i = 0; i < q->nindex; i++) {
		free(q->index[i]);
		free(q->index_name[i]);
	}
}

/* Reads the table's and its explicit indexes' CREATE statements. */
static int
schema_sql_read(sqlite3 *db, struct schema_sql *q)
{
	sqlite3_stmt *s = NULL;
	const char *type;
	int rc;

	rc = sqlite3_prepare_v2(
	    db,
	    "SELECT type, name, sql FROM sqlite_schema"
	    " WHERE tbl_name = 'messages' AND sql IS NOT NULL"
	    " AND type IN ('table', 'index')",
	    -1, &s, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		type = (const char *)sqlite3_column_text(s, 0);
		rc = SQLITE_OK;
		if (type != NULL && strcmp(type, "table") == 0) {
			free(q->table);
			q->table = store__col_strdup(s, 2);
		} else if (q->nindex < ARRAY_SIZE(q->index)) {
			q->index_name[q->nindex] = store__col_strdup(s, 1);
			q->index[q->nindex++] = store__col_strdup(s, 2);
		} else {
			rc = SQLITE_CORRUPT; /* more indexes than we made */
		}
	}
	sqlite3_finalize(s);
	if (rc == SQLITE_DONE && q->table == NULL)
		rc = SQLITE_CORRUPT;
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Steps sql once for each rowid in rows (bound as ?1). */
static int
each_rowid(sqlite3 *db, const char *sql, const int64_t *rows, size_t n)
{
	sqlite3_stmt *s = NULL;
	size_t i;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	for (i = 0; rc == SQLITE_OK && i < n; i++) {
		rc = sqlite3_bind_int64(s, 1, rows[i]);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(s);
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
		(void)sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	return rc;
}

static int
exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

/* Moves the bodies and attempts of the rows left behind aside. */
static int
move_orphans(sqlite3 *db, const char *sfx, const int64_t *lost, size_t nlost)
{
	char *sql;
	int rc;

	sql = xasprintf("CREATE TABLE bodies_damaged_%s AS SELECT * FROM bodies"
			" WHERE 0;"
			"CREATE TABLE attempts_damaged_%s AS SELECT * FROM"
			" attempts WHERE 0;",
			sfx, sfx);
	rc = exec(db, sql);
	free(sql);
	sql = xasprintf("INSERT INTO bodies_damaged_%s SELECT * FROM bodies"
			" WHERE rowid = ?1",
			sfx);
	if (rc == SQLITE_OK)
		rc = each_rowid(db, sql, lost, nlost);
	free(sql);
	if (rc == SQLITE_OK)
		rc = each_rowid(db, "DELETE FROM bodies WHERE rowid = ?1", lost,
				nlost);
	sql = xasprintf("INSERT INTO attempts_damaged_%s SELECT * FROM"
			" attempts WHERE message_rowid = ?1",
			sfx);
	if (rc == SQLITE_OK)
		rc = each_rowid(db, sql, lost, nlost);
	free(sql);
	if (rc == SQLITE_OK)
		rc = each_rowid(db,
				"DELETE FROM attempts WHERE message_rowid = ?1",
				lost, nlost);
	return rc;
}

/*
 * The "sending" rows copied into the new table: recovery (at open, on the
 * damaged table) could not move them, since a write of a row next to the
 * damaged page makes SQLite rebalance into it (store.md).  Copied as they
 * were they stayed "sending" until a second start, counted in flight and
 * never sent; they are rows the dispatcher let go while running, a
 * `delivered` among them that could not be recorded.  Now recovery's
 * statements run on the new table, in the repair's transaction, and the
 * rows it moved are returned for the scan to hand out.  An SQLite code.
 */
static int
recover_left(sqlite3 *db, struct store_dues *out)
{
	int64_t now = now_ms();
	sqlite3_stmt *s = NULL;
	int rc, ins = 0;

	rc = store__recover_step(db, RECOVER_INSERT, now, 0, &ins);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(
		    db, RECOVER_UPDATE " RETURNING rowid, next_ms", -1, &s,
		    NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(
		    s, sqlite3_bind_parameter_index(s, ":now"), now);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (out->n == out->cap) {
			out->cap = out->cap == 0 ? 16 : out->cap * 2;
			out->v =
			    xreallocarray(out->v, out->cap, sizeof(*out->v));
		}
		out->v[out->n].rowid = sqlite3_column_int64(s, 0);
		out->v[out->n].next_ms = sqlite3_column_int64(s, 1);
		out->n++;
		rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	if (rc == SQLITE_DONE && out->n > 0)
		log_warnx("- store recovered_in_repair sending=%zu "
			  "status=queued: next to the damaged page, recovery "
			  "could not move them before",
			  out->n);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The rebuild itself, inside the open transaction (see the top). */
static int
rebuild(sqlite3 *db, const struct schema_sql *q, const char *sfx,
	const int64_t *keep, size_t nkeep, const int64_t *lost, size_t nlost,
	struct store_dues *recovered)
{
	char *sql;
	size_t i;
	int rc = SQLITE_OK;

	for (i = 0; rc == SQLITE_OK && i < q->nindex; i++) {
		sql = xasprintf("DROP INDEX \"%s\"", q->index_name[i]);
		rc = exec(db, sql);
		free(sql);
	}
	sql = xasprintf("ALTER TABLE messages RENAME TO messages_damaged_%s",
			sfx);
	if (rc == SQLITE_OK)
		rc = exec(db, sql);
	free(sql);
	if (rc == SQLITE_OK)
		rc = exec(db, q->table);
	sql = xasprintf("INSERT INTO messages SELECT * FROM messages_damaged_%s"
			" WHERE rowid = ?1",
			sfx);
	if (rc == SQLITE_OK)
		rc = each_rowid(db, sql, keep, nkeep);
	free(sql);
	for (i = 0; rc == SQLITE_OK && i < q->nindex; i++)
		rc = exec(db, q->index[i]);
	if (rc == SQLITE_OK)
		rc = move_orphans(db, sfx, lost, nlost);
	/* Only with rows lost: else no damage stopped recovery (a test's
	 * scan of a store that has run, say, finds `sending` rows that are
	 * in flight, not left behind). */
	if (rc == SQLITE_OK && nlost > 0)
		rc = recover_left(db, recovered);
	/*
	 * The lost rows' ids are still in the damaged table's id index (its
	 * own b-tree): their idempotency keys go, so that a client's retry
	 * with the same key stores the message again instead of being told
	 * it is a duplicate of one that is gone.
	 */
	sql = xasprintf("DELETE FROM idempotency WHERE message_id IN (SELECT"
			" id FROM messages_damaged_%s WHERE id NOT IN (SELECT"
			" id FROM messages))",
			sfx);
	if (rc == SQLITE_OK)
		rc = exec(db, sql);
	free(sql);
	if (rc == SQLITE_OK)
		rc = exec(db, "UPDATE status_counts SET n = (SELECT count(*)"
			      " FROM messages m WHERE m.status ="
			      " status_counts.status)");
	return rc;
}

int
store__repair(struct store_backend *be, const int64_t *keep, size_t nkeep,
	      const int64_t *lost, size_t nlost, char *moved, size_t movedsz,
	      struct store_dues *recovered)
{
	struct schema_sql q = {0};
	sqlite3 *db = NULL;
	char sfx[24];
	int rc;

	snprintf(sfx, sizeof(sfx), "%" PRId64, now_ms());
	rc = sqlite3_open_v2(be->path, &db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK) {
		(void)sqlite3_extended_result_codes(db, 1);
		(void)sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
		rc = exec(db, "PRAGMA foreign_keys = OFF;"
			      "PRAGMA legacy_alter_table = ON;"
			      "PRAGMA synchronous = FULL;"
			      "BEGIN IMMEDIATE");
	}
	if (rc == SQLITE_OK)
		rc = schema_sql_read(db, &q);
	if (rc == SQLITE_OK)
		rc = rebuild(db, &q, sfx, keep, nkeep, lost, nlost, recovered);
	if (rc == SQLITE_OK)
		rc = exec(db, "COMMIT");
	if (rc != SQLITE_OK) {
		log_warnx("- store repair_failed rc=%d msg=\"%s\"", rc,
			  db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		if (db != NULL && !sqlite3_get_autocommit(db))
			(void)exec(db, "ROLLBACK");
		/* Rolled back: nothing was moved, nothing to hand out. */
		recovered->n = 0;
	} else {
		snprintf(moved, movedsz, "messages_damaged_%s", sfx);
	}
	schema_sql_cleanup(&q);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : store__sqlite_errno(rc);
}

/*
 * status_counts, one page rewritten by every commit, damaged: every batch
 * would fail on it (the tallies are added before each COMMIT) and the
 * scan could not start.  It holds nothing but counts, so it is made again
 * from the messages (one read of the table: only after damage), the
 * damaged one renamed status_counts_damaged_MS (dropping it would read
 * its page).  On be->db, at open, before the writer starts.  0 or an
 * error (then nothing changed).
 */
int
store__repair_counts(struct store_backend *be)
{
	char *sql;
	int rc;

	sql = xasprintf(
	    "BEGIN IMMEDIATE;"
	    "ALTER TABLE status_counts RENAME TO status_counts_damaged_%" PRId64
	    ";"
	    "CREATE TABLE status_counts ("
	    " status INTEGER PRIMARY KEY,"
	    " n INTEGER NOT NULL);"
	    "WITH v(s) AS (VALUES (0), (1), (2), (3))"
	    " INSERT INTO status_counts SELECT s, (SELECT count(*) FROM"
	    " messages m WHERE m.status = v.s) FROM v;"
	    "COMMIT",
	    now_ms());
	rc = exec(be->db, sql);
	free(sql);
	if (rc != SQLITE_OK) {
		log_warnx("- store counts_repair_failed rc=%d msg=\"%s\"", rc,
			  sqlite3_errmsg(be->db));
		if (!sqlite3_get_autocommit(be->db))
			(void)exec(be->db, "ROLLBACK");
		return store__sqlite_errno(rc);
	}
	log_warnx(
	    "- store counts_repaired: status_counts was on a damaged page; "
	    "counted again from the messages");
	return 0;
}
