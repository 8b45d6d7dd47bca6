/*
 * The webhook outbox of the store (store.h "The webhook outbox"): rows
 * added alone and with an update (in its transaction: an update that
 * fails, on its own or with its batch, leaves no row), claimed oldest
 * first with a lease through the outbox_due index, finished by delete or
 * reschedule, capped with a count of the rows dropped (when their
 * transaction commits), dropped at a claim
 * past their age, refused when malformed, and kept across a close and
 * open; the depth a claim answers is kept without counting and stays the
 * table's COUNT(*).  The fixture is fixture_store.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/store_int.h"
#include "store/store_sqlite.h"
#include "common/util.h"

#include "fixture_store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct claim_res {
	int done;
	int err;
	struct store_outbox_row *rows;
	size_t n;
	int64_t depth;
};

static void
claim_cb(void *arg, int err, struct store_outbox_row *rows, size_t n,
	 int64_t depth)
{
	struct claim_res *r = arg;

	r->done++;
	r->err = err;
	r->rows = rows;
	r->n = n;
	r->depth = depth;
}

/* A claim of rows whatever their age (expire_before 0: none). */
static void
claim_aged(struct fixture *f, int64_t now, int64_t lease, size_t max,
	   int64_t expire_before, struct claim_res *r)
{
	store_outbox_rows_free(r->rows, r->n);
	memset(r, 0, sizeof(*r));
	store_outbox_claim(f->st, now, lease, max, expire_before, claim_cb, r);
	assert_int_equal(r->done, 0); /* never from inside the call */
	WAIT_FOR(f->base, r->done == 1);
}

static void
claim_wait(struct fixture *f, int64_t now, int64_t lease, size_t max,
	   struct claim_res *r)
{
	claim_aged(f, now, lease, max, 0, r);
}

static int
add_wait(struct fixture *f, const char *body)
{
	struct done_res r = {0, 0};

	store_outbox_add(f->st, body, done_cb, &r);
	WAIT_FOR(f->base, r.done == 1);
	return r.err;
}

static int
finish_wait(struct fixture *f, int64_t seq, int64_t next_ms)
{
	struct done_res r = {0, 0};

	store_outbox_finish(f->st, seq, next_ms, done_cb, &r);
	WAIT_FOR(f->base, r.done == 1);
	return r.err;
}

static void
exec_wait(struct fixture *f, const char *sql)
{
	struct done_res r = {0, 0};

	store__exec(f->st, sql, done_cb, &r);
	WAIT_FOR(f->base, r.done == 1);
	assert_int_equal(r.err, 0);
}

/* Oldest first, a lease that hides claimed rows, delete and reschedule. */
static void
test_claim_lease_finish(void **state)
{
	struct fixture *f = *state;
	struct claim_res c = {0};
	int64_t s1, s2, s3;

	open_store(f);
	assert_int_equal(add_wait(f, "{\"n\":1}"), 0);
	assert_int_equal(add_wait(f, "{\"n\":2}"), 0);
	assert_int_equal(add_wait(f, "{\"n\":3}"), 0);

	claim_wait(f, 1000, 5000, 2, &c);
	assert_int_equal(c.err, 0);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.depth, 3);
	/* RETURNING's order is SQLite's: sort the two by seq. */
	s1 = c.rows[0].seq < c.rows[1].seq ? c.rows[0].seq : c.rows[1].seq;
	s2 = c.rows[0].seq < c.rows[1].seq ? c.rows[1].seq : c.rows[0].seq;
	assert_string_equal(
	    c.rows[0].seq == s1 ? c.rows[0].body : c.rows[1].body, "{\"n\":1}");
	assert_int_equal(c.rows[0].attempts, 1);
	assert_true(c.rows[0].created_ms > 0);

	/* Leased: only the third is due. */
	claim_wait(f, 1000, 5000, 10, &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.rows[0].body, "{\"n\":3}");
	s3 = c.rows[0].seq;

	/* Taken: gone.  Failed: due again at 100000, not before. */
	assert_int_equal(finish_wait(f, s1, -1), 0);
	assert_int_equal(finish_wait(f, s2, 100000), 0);
	claim_wait(f, 6000, 300000, 10, &c);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.rows[0].seq, s3); /* its lease ran out */
	assert_int_equal(c.rows[0].attempts, 2);
	assert_int_equal(c.depth, 2);
	claim_wait(f, 100000, 200000, 10, &c);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.rows[0].seq, s2);
	assert_int_equal(c.rows[0].attempts, 2);

	/* A row already gone is no error. */
	assert_int_equal(finish_wait(f, s1, -1), 0);
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM outbox"), 2);
	store_outbox_rows_free(c.rows, c.n);
}

/*
 * An update's outbox row is in the update's transaction: an update of an
 * unknown message adds none, one that the disk refuses (with its batch)
 * adds none, and one that commits adds exactly one.
 */
static void
test_update_atomic(void **state)
{
	struct fixture *f = *state;
	struct store_update u;
	struct sub_res r;
	char *sql, *big;

	open_store(f);
	submit_wait(f, make_message(NULL, "o"), NULL, &r);
	assert_int_equal(r.err, 0);

	memset(&u, 0, sizeof(u));
	u.rowid = r.rowid + 1000;
	u.status = MSG_DELIVERED;
	u.outbox = "{\"gone\":true}";
	assert_int_equal(update_wait(f, &u), -ENOENT);
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM outbox"), 0);

	sql = xasprintf("PRAGMA max_page_count = %lld",
			(long long)db_int(f, "PRAGMA page_count"));
	exec_wait(f, sql);
	free(sql);
	/* A body that needs pages the disk no longer has. */
	big = xmalloc(STORE_OUTBOX_BODY_MAX);
	memset(big, 'x', STORE_OUTBOX_BODY_MAX - 1);
	big[STORE_OUTBOX_BODY_MAX - 1] = '\0';
	u.rowid = r.rowid;
	u.error = "failed";
	u.status = MSG_FAILED;
	u.outbox = big;
	assert_int_equal(update_wait(f, &u), -ENOSPC);
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM outbox"), 0);
	assert_int_equal(db_int(f, "SELECT status FROM messages"), MSG_QUEUED);

	exec_wait(f, "PRAGMA max_page_count = 1000000");
	free(big);
	u.outbox = "{\"full\":true}";
	assert_int_equal(update_wait(f, &u), 0);
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM outbox"), 1);
	assert_int_equal(db_int(f, "SELECT status FROM messages"), MSG_FAILED);
	assert_int_equal(
	    db_int(f, "SELECT body = '{\"full\":true}' FROM outbox"), 1);

	/* Without an outbox body an update adds no row. */
	u.outbox = NULL;
	u.status = MSG_DELIVERED;
	assert_int_equal(update_wait(f, &u), 0);
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM outbox"), 1);
}

/* Past the cap the oldest rows go, counted; the newest stay. */
static void
test_cap_drops_oldest(void **state)
{
	struct fixture *f = *state;
	struct claim_res c = {0};
	char body[32];
	int i;

	open_store(f);
	store_outbox_set_max(f->st, 10);
	for (i = 1; i <= 25; i++) {
		snprintf(body, sizeof(body), "{\"n\":%d}", i);
		assert_int_equal(add_wait(f, body), 0);
	}
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM outbox"), 10);
	assert_int_equal(store_outbox_dropped(f->st), 15);
	assert_int_equal(db_int(f, "SELECT MIN(seq) FROM outbox"), 16);
	claim_wait(f, 1, 2, 1, &c);
	assert_int_equal(c.depth, 10);
	assert_string_equal(c.rows[0].body, "{\"n\":16}");
	store_outbox_rows_free(c.rows, c.n);
}

/*
 * Rows a webhook's insert drops past the cap are counted when its
 * transaction commits: a batch the disk refuses after the drop counts
 * none, and the same update committed later counts its one.  The batch is
 * made certain with lazy updates (held until a write someone waits on
 * joins them): the first drops a row, the second needs pages the disk no
 * longer has, and the whole batch rolls back.
 */
static void
test_drops_counted_at_commit(void **state)
{
	struct fixture *f = *state;
	struct done_res d[3] = {{0, 0}, {0, 0}, {0, 0}};
	struct store_update u[2];
	struct sub_res r[2];
	char body[32], *sql, *big;
	int i;

	open_store(f);
	store_outbox_set_max(f->st, 5);
	for (i = 1; i <= 5; i++) {
		snprintf(body, sizeof(body), "{\"n\":%d}", i);
		assert_int_equal(add_wait(f, body), 0);
	}
	memset(u, 0, sizeof(u));
	for (i = 0; i < 2; i++) {
		u[i].rowid =
		    submit_wait(f, make_message(NULL, "s"), NULL, &r[i]);
		u[i].status = MSG_DELIVERED;
		u[i].lazy = true;
	}
	u[0].outbox = "{\"n\":6}";
	big = xmalloc(STORE_OUTBOX_BODY_MAX);
	memset(big, 'x', STORE_OUTBOX_BODY_MAX - 1);
	big[STORE_OUTBOX_BODY_MAX - 1] = '\0';
	u[1].outbox = big;
	/* Room for the small row, not for the big one. */
	sql = xasprintf("PRAGMA max_page_count = %lld",
			(long long)db_int(f, "PRAGMA page_count") + 2);
	exec_wait(f, sql);
	free(sql);

	store__lazy_wait(f->st, 60 * 1000000);
	store_update(f->st, &u[0], done_cb, &d[0]);
	store_update(f->st, &u[1], done_cb, &d[1]);
	WAIT_FOR(f->base, store__lazy_holding(f->st));
	store_outbox_finish(f->st, 999, -1, done_cb, &d[2]);
	WAIT_FOR(f->base, d[0].done && d[1].done && d[2].done);
	assert_int_equal(d[1].err, -ENOSPC);
	assert_int_equal(d[0].err, -ENOSPC);
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM outbox"), 5);
	assert_int_equal(db_int(f, "SELECT MIN(seq) FROM outbox"), 1);
	assert_int_equal(store_outbox_dropped(f->st), 0);

	exec_wait(f, "PRAGMA max_page_count = 1000000");
	free(big);
	u[0].lazy = false;
	assert_int_equal(update_wait(f, &u[0]), 0);
	assert_int_equal(db_int(f, "SELECT MIN(seq) FROM outbox"), 2);
	assert_int_equal(store_outbox_dropped(f->st), 1);
}

/*
 * Rows older than the claim's expire_before are deleted, not handed out,
 * counted with the cap's drops; their slots go to younger due rows, round
 * after round; rows not yet due wait (and go when due).  A cut-off after
 * now is refused.
 */
static void
test_claim_drops_expired(void **state)
{
	struct fixture *f = *state;
	struct claim_res c = {0};
	char body[32];
	int i;

	open_store(f);
	/* seq 1..30: 1..25 written at 100, 26..30 at 5000. */
	for (i = 1; i <= 30; i++) {
		snprintf(body, sizeof(body), "{\"n\":%d}", i);
		assert_int_equal(add_wait(f, body), 0);
	}
	exec_wait(f, "UPDATE outbox SET created_ms = CASE WHEN seq <= 25"
		     " THEN 100 ELSE 5000 END");
	/* seq 3 is old but waits for a retry until 20000. */
	exec_wait(f, "UPDATE outbox SET next_ms = 20000 WHERE seq = 3");

	claim_aged(f, 10000, 50000, 4, 1000, &c);
	assert_int_equal(c.err, 0);
	assert_int_equal(c.n, 4);
	for (i = 0; i < 4; i++) {
		assert_true(c.rows[i].seq > 25);
		assert_int_equal(c.rows[i].created_ms, 5000);
	}
	assert_int_equal(store_outbox_dropped(f->st), 24);
	assert_int_equal(c.depth, 6);
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM outbox"
				   " WHERE created_ms = 100"),
			 1);
	/* The last young one; then the old one, due at 20000, goes too. */
	claim_aged(f, 10000, 50000, 4, 1000, &c);
	assert_int_equal(c.n, 1);
	claim_aged(f, 20000, 30000, 4, 1000, &c);
	assert_int_equal(c.n, 0);
	assert_int_equal(store_outbox_dropped(f->st), 25);
	assert_int_equal(c.depth, 5);
	/* Without a cut-off nothing is dropped for its age. */
	exec_wait(f, "UPDATE outbox SET next_ms = 0");
	claim_aged(f, 40000, 50000, 10, 0, &c);
	assert_int_equal(c.n, 5);
	assert_int_equal(store_outbox_dropped(f->st), 25);
	claim_aged(f, 100, 200, 1, 101, &c);
	assert_int_equal(c.err, -EINVAL);
	store_outbox_rows_free(c.rows, c.n);
}

/*
 * The depth a claim answers, from a claim that takes nothing and writes
 * nothing: no row is due before 0, and no horizon is set.
 */
static int64_t
depth_of(struct fixture *f)
{
	struct claim_res c = {0};

	claim_aged(f, -1, -1, 1, -1, &c);
	store_outbox_rows_free(c.rows, c.n);
	assert_int_equal(c.err, 0);
	assert_int_equal(c.n, 0);
	return c.depth;
}

/* The depth the store keeps is the rows in the database file. */
#define ASSERT_DEPTH(f, n)                                                     \
	do {                                                                   \
		assert_int_equal(db_int((f), "SELECT COUNT(*) FROM outbox"),   \
				 (n));                                         \
		assert_int_equal(depth_of(f), (n));                            \
	} while (0)

static int
add_n(struct fixture *f, int from, int n)
{
	char body[32];
	int i;

	for (i = from; i < from + n; i++) {
		snprintf(body, sizeof(body), "{\"n\":%d}", i);
		if (add_wait(f, body) != 0)
			return -1;
	}
	return 0;
}

/*
 * The depth is kept in memory, not counted per claim, and stays the
 * table's COUNT(*) through adds (alone and with an update), finishes
 * (a delete, a reschedule, a row already gone), the cap's trim, expiries
 * at a claim, and a close and open (counted there).  Nothing here runs
 * the test hook's SQL, which makes the store count again.
 */
static void
test_depth_exact(void **state)
{
	struct fixture *f = *state;
	struct claim_res c = {0};
	struct store_update u;
	struct sub_res r;
	int64_t t, seq[4];
	size_t i;

	open_store(f);
	ASSERT_DEPTH(f, 0);
	assert_int_equal(add_n(f, 1, 12), 0);
	ASSERT_DEPTH(f, 12);

	claim_wait(f, 1000, 5000, 4, &c);
	assert_int_equal(c.n, 4);
	for (i = 0; i < 4; i++)
		seq[i] = c.rows[i].seq;
	assert_int_equal(finish_wait(f, seq[0], -1), 0);
	assert_int_equal(finish_wait(f, seq[1], -1), 0);
	assert_int_equal(finish_wait(f, seq[2], 9000), 0);
	assert_int_equal(finish_wait(f, seq[0], -1), 0); /* gone already */
	ASSERT_DEPTH(f, 10);

	/* The cap: seq 13 drops 3 to 7 (1 and 2 are gone), seq 14 drops 8. */
	store_outbox_set_max(f->st, 6);
	assert_int_equal(add_n(f, 13, 1), 0);
	ASSERT_DEPTH(f, 6);
	/* An update's row, with its trim, in the update's transaction. */
	memset(&u, 0, sizeof(u));
	u.rowid = submit_wait(f, make_message(NULL, "d"), NULL, &r);
	u.status = MSG_DELIVERED;
	u.outbox = "{\"n\":14}";
	assert_int_equal(update_wait(f, &u), 0);
	ASSERT_DEPTH(f, 6);
	store_outbox_set_max(f->st, 1000);

	/* Expired at a claim: the 6 rows so far, not the 3 added after t. */
	t = now_ms() + 1;
	clock_past(t);
	assert_int_equal(add_n(f, 15, 3), 0);
	ASSERT_DEPTH(f, 9);
	claim_aged(f, t + 1, t + 1000, 2, t, &c);
	assert_int_equal(c.err, 0);
	assert_int_equal(c.n, 2);
	assert_int_equal(store_outbox_dropped(f->st), 6 + 6);
	assert_int_equal(c.depth, 3);
	ASSERT_DEPTH(f, 3);

	store_close(f->st);
	f->st = NULL;
	open_store(f);
	ASSERT_DEPTH(f, 3);
	store_outbox_rows_free(c.rows, c.n);
}

/*
 * No claim counts the outbox: COUNT(*) reads every row, and two million
 * rows waiting made each claim hold the writer, and every submission
 * behind it, for 15 ms.  The store counts once at open.
 */
static void
test_claim_counts_nothing(void **state)
{
	struct fixture *f = *state;
	struct claim_res c = {0};
	int i;

	open_store(f);
	assert_int_equal(store__outbox_counts(f->st), 1);
	assert_int_equal(add_n(f, 1, 3), 0);
	for (i = 0; i < 3; i++) {
		claim_wait(f, 1000 * i, 1000 * i + 500, 1, &c);
		assert_int_equal(c.n, 1);
		assert_int_equal(c.depth, 3 - i);
		assert_int_equal(finish_wait(f, c.rows[0].seq, -1), 0);
	}
	ASSERT_DEPTH(f, 0);
	assert_int_equal(store__outbox_counts(f->st), 1);
	store_outbox_rows_free(c.rows, c.n);
}

/*
 * A batch rolled back counts none of its rows: its update's row is added
 * when the same update commits later, once.  SQL from the test hook (the
 * fault injection here) leaves the depth unknown: the next claim counts.
 */
static void
test_depth_rollback(void **state)
{
	struct fixture *f = *state;
	struct done_res d[3] = {{0, 0}, {0, 0}, {0, 0}};
	struct store_update u[2];
	struct sub_res r[2];
	char *sql, *big;
	int i;

	open_store(f);
	assert_int_equal(add_n(f, 1, 5), 0);
	memset(u, 0, sizeof(u));
	for (i = 0; i < 2; i++) {
		u[i].rowid =
		    submit_wait(f, make_message(NULL, "s"), NULL, &r[i]);
		u[i].status = MSG_DELIVERED;
		u[i].lazy = true;
	}
	u[0].outbox = "{\"n\":6}";
	big = xmalloc(STORE_OUTBOX_BODY_MAX);
	memset(big, 'x', STORE_OUTBOX_BODY_MAX - 1);
	big[STORE_OUTBOX_BODY_MAX - 1] = '\0';
	u[1].outbox = big;
	/* Room for the small row, not for the big one. */
	sql = xasprintf("PRAGMA max_page_count = %lld",
			(long long)db_int(f, "PRAGMA page_count") + 2);
	exec_wait(f, sql);
	free(sql);
	ASSERT_DEPTH(f, 5); /* counted again after the hook */

	/* One batch: u[0] adds its row, u[1] fails, both roll back. */
	store__lazy_wait(f->st, 60 * 1000000);
	store_update(f->st, &u[0], done_cb, &d[0]);
	store_update(f->st, &u[1], done_cb, &d[1]);
	WAIT_FOR(f->base, store__lazy_holding(f->st));
	store_outbox_finish(f->st, 999, -1, done_cb, &d[2]);
	WAIT_FOR(f->base, d[0].done && d[1].done && d[2].done);
	assert_int_equal(d[0].err, -ENOSPC);
	assert_int_equal(d[1].err, -ENOSPC);
	ASSERT_DEPTH(f, 5);

	exec_wait(f, "PRAGMA max_page_count = 1000000");
	free(big);
	ASSERT_DEPTH(f, 5);
	u[0].lazy = false;
	assert_int_equal(update_wait(f, &u[0]), 0);
	ASSERT_DEPTH(f, 6);

	/* Rows the hook's SQL deletes are counted again, not guessed. */
	exec_wait(f, "DELETE FROM outbox WHERE seq <= 2");
	ASSERT_DEPTH(f, 4);
}

/*
 * The claim's search of due rows is a range of outbox_due (schema 5) that
 * sorts nothing, not a scan of every row not yet due.
 */
static void
test_claim_plan(void **state)
{
	struct fixture *f = *state;
	char sql[1024], plan[1024], path[192];
	sqlite3_stmt *s;
	sqlite3 *db;
	size_t used = 0;

	open_store(f);
	snprintf(path, sizeof(path), "%s/shivneri.db", f->sub);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s",
		 store__outbox_claim_sql());
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	plan[0] = '\0';
	while (sqlite3_step(s) == SQLITE_ROW && used < sizeof(plan))
		used += (size_t)snprintf(plan + used, sizeof(plan) - used,
					 "%s;", sqlite3_column_text(s, 3));
	sqlite3_finalize(s);
	sqlite3_close(db);
	assert_non_null(strstr(plan, "USING COVERING INDEX outbox_due"));
	assert_null(strstr(plan, "TEMP B-TREE"));
	assert_null(strstr(plan, "SCAN outbox"));
}

/* Malformed requests fail alone and add nothing. */
static void
test_refused(void **state)
{
	struct fixture *f = *state;
	struct claim_res c = {0};
	char *big = xmalloc(STORE_OUTBOX_BODY_MAX + 2);

	open_store(f);
	memset(big, 'x', STORE_OUTBOX_BODY_MAX + 1);
	big[STORE_OUTBOX_BODY_MAX + 1] = '\0';
	assert_int_equal(add_wait(f, ""), -EINVAL);
	assert_int_equal(add_wait(f, NULL), -EINVAL);
	assert_int_equal(add_wait(f, big), -EFBIG);
	free(big);
	claim_wait(f, 10, 5, 1, &c); /* a lease before now */
	assert_int_equal(c.err, -EINVAL);
	claim_wait(f, 10, 20, 0, &c);
	assert_int_equal(c.err, -EINVAL);
	assert_int_equal(finish_wait(f, 0, -1), -EINVAL);
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM outbox"), 0);
}

/* A restart finds the rows, leases and attempts as they were. */
static void
test_survives_reopen(void **state)
{
	struct fixture *f = *state;
	struct claim_res c = {0};

	open_store(f);
	assert_int_equal(add_wait(f, "{\"a\":1}"), 0);
	assert_int_equal(add_wait(f, "{\"a\":2}"), 0);
	claim_wait(f, 100, 1000, 1, &c);
	assert_int_equal(c.n, 1);
	store_outbox_rows_free(c.rows, c.n);
	c.rows = NULL;
	c.n = 0;
	store_close(f->st);
	f->st = NULL;
	open_store(f);
	claim_wait(f, 100, 5000, 10, &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.rows[0].body, "{\"a\":2}");
	claim_wait(f, 1000, 2000, 10, &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.rows[0].body, "{\"a\":1}");
	assert_int_equal(c.rows[0].attempts, 2);
	store_outbox_rows_free(c.rows, c.n);
}

/*
 * A clock stepped back: a row due an hour from now (its retry was timed
 * by a clock an hour ahead, before a restart) is due now when no wait is
 * longer than the horizon; a row due within the horizon (a real backoff)
 * still waits, as does everything without a horizon.  Before, the hour
 * was waited out.
 */
static void
test_clock_back_horizon(void **state)
{
	struct fixture *f = *state;
	struct claim_res c = {0};
	int64_t now = 10000000, far, near;

	open_store(f);
	assert_int_equal(add_wait(f, "{\"n\":1}"), 0);
	assert_int_equal(add_wait(f, "{\"n\":2}"), 0);
	claim_wait(f, now, now + 5000, 2, &c);
	assert_int_equal(c.n, 2);
	far = c.rows[0].seq;
	near = c.rows[1].seq;
	assert_int_equal(finish_wait(f, far, now + 3600 * 1000), 0);
	assert_int_equal(finish_wait(f, near, now + 1000), 0);
	/* No horizon: both wait for their time. */
	claim_wait(f, now, now + 5000, 2, &c);
	assert_int_equal(c.n, 0);
	/* The longest wait: a lease here (5 s), more than any backoff. */
	store_outbox_set_horizon(f->st, 6000);
	claim_wait(f, now, now + 5000, 2, &c);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.rows[0].seq, far);
	/* Its lease (within the horizon) hides it; the near one comes due. */
	claim_wait(f, now + 1000, now + 6000, 2, &c);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.rows[0].seq, near);
	store_outbox_rows_free(c.rows, c.n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_claim_lease_finish, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_update_atomic, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cap_drops_oldest, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_drops_counted_at_commit, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_claim_plan, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_clock_back_horizon, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_claim_drops_expired, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_survives_reopen, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_depth_exact, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_claim_counts_nothing, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_depth_rollback, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
