/*
 * The store's commits against a real SQLite file: the metrics
 * (store_commit_stats) count every commit once in both histograms, with
 * the operations it carried, and the buckets are where the bounds say; a
 * lazy update (store_update.lazy) shares the next commit someone waits on.
 * The fixture is fixture_store.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/store_int.h"
#include "common/util.h"

#include "fixture_store.h"

#include <string.h>

#define NALONE 20
#define NBURST 300

struct burst_res {
	int done;
	int failed;
};

static void
burst_cb(void *arg, int err, const char *id, bool duplicate,
	 struct store_message *m)
{
	struct burst_res *r = arg;

	(void)id;
	(void)duplicate;
	r->done++;
	if (err != 0)
		r->failed++;
	store_message_free(m);
}

static uint64_t
sum(const uint64_t *b, int n)
{
	uint64_t s = 0;
	int i;

	for (i = 0; i < n; i++)
		s += b[i];
	return s;
}

/* The invariants of any snapshot: both histograms count every commit. */
static void
check_shape(const struct store_commit_stats *s)
{
	assert_int_equal(sum(s->us_bucket, STORE_COMMIT_NBOUNDS + 1),
			 s->commits);
	assert_int_equal(sum(s->ops_bucket, STORE_BATCH_NBOUNDS + 1),
			 s->commits);
	assert_true(s->ops_sum >= s->commits);
}

static void
test_bucket_bounds(void **state)
{
	struct store_commit_stats s;

	(void)state;
	memset(&s, 0, sizeof(s));
	/* A bound belongs to its own bucket (le), one past it to the next. */
	store__commit_observe(&s, 100, 1);
	store__commit_observe(&s, 101, 2);
	store__commit_observe(&s, -5, 3);
	store__commit_observe(&s, 5000000, 5000);
	assert_int_equal(s.us_bucket[0], 2); /* 100 and -5 (as 0) */
	assert_int_equal(s.us_bucket[1], 1); /* 101 */
	assert_int_equal(s.us_bucket[STORE_COMMIT_NBOUNDS], 1);
	assert_int_equal(s.ops_bucket[0], 1); /* 1 */
	assert_int_equal(s.ops_bucket[1], 1); /* 2 */
	assert_int_equal(s.ops_bucket[2], 1); /* 3: le 4 */
	assert_int_equal(s.ops_bucket[STORE_BATCH_NBOUNDS], 1);
	assert_int_equal(s.commits, 4);
	assert_int_equal(s.us_sum, 100 + 101 + 0 + 5000000);
	assert_int_equal(s.ops_sum, 1 + 2 + 3 + 5000);
	check_shape(&s);
}

static void
test_commits_counted(void **state)
{
	struct fixture *f = *state;
	struct store_commit_stats s0, s1, s2;
	struct burst_res r = {0, 0};
	struct sub_res one;
	uint64_t c0, c1;
	int i;

	open_store(f);
	store_commit_stats(f->st, &s0);
	check_shape(&s0);
	c0 = store__commits(f->st);
	/* One at a time: a commit each, of one operation. */
	for (i = 0; i < NALONE; i++) {
		submit_wait(f, make_message(NULL, "alone"), NULL, &one);
		assert_int_equal(one.err, 0);
	}
	store_commit_stats(f->st, &s1);
	check_shape(&s1);
	c1 = store__commits(f->st);
	assert_int_equal(s1.commits - s0.commits, c1 - c0);
	assert_int_equal(s1.commits - s0.commits, NALONE);
	assert_int_equal(s1.ops_sum - s0.ops_sum, NALONE);
	assert_int_equal(s1.ops_bucket[0] - s0.ops_bucket[0], NALONE);
	assert_true(s1.us_sum > s0.us_sum);

	/* A burst queued in one turn shares commits: sizes above one. */
	for (i = 0; i < NBURST; i++)
		store_submit(f->st, make_message(NULL, "burst"), NULL, burst_cb,
			     &r);
	WAIT_FOR(f->base, r.done == NBURST);
	assert_int_equal(r.failed, 0);
	store_commit_stats(f->st, &s2);
	check_shape(&s2);
	assert_int_equal(s2.commits - s1.commits, store__commits(f->st) - c1);
	assert_int_equal(s2.ops_sum - s1.ops_sum, NBURST);
	assert_true(s2.commits - s1.commits < NBURST / 4);
	assert_int_equal(s2.ops_bucket[0], s1.ops_bucket[0]);
}

/* A delivered update of rowid, lazy (store_update.lazy). */
static void
lazy_delivered(struct fixture *f, int64_t rowid, struct done_res *d)
{
	struct store_update u;

	memset(&u, 0, sizeof(u));
	u.rowid = rowid;
	u.status = MSG_DELIVERED;
	u.attempts = 1;
	u.lazy = true;
	store_update(f->st, &u, done_cb, d);
}

/*
 * A lazy update waits for a write someone waits on and shares its commit.
 * The wait is made long, so that "one commit for both" cannot depend on
 * the machine's speed; without the hold it would commit alone.
 */
static void
test_lazy_shares_commit(void **state)
{
	struct fixture *f = *state;
	struct done_res d = {0, -1};
	struct sub_res one, two;
	uint64_t c0;
	int64_t rowid;

	open_store(f);
	rowid = submit_wait(f, make_message(NULL, "relayed"), NULL, &one);
	store__lazy_wait(f->st, 60 * 1000000);
	c0 = store__commits(f->st);
	lazy_delivered(f, rowid, &d);
	/* Queued alone, in a turn of its own: the writer holds it. */
	WAIT_FOR(f->base, store__lazy_holding(f->st));
	assert_int_equal(d.done, 0);
	submit_wait(f, make_message(NULL, "next"), NULL, &two);
	WAIT_FOR(f->base, d.done == 1);
	assert_int_equal(d.err, 0);
	assert_int_equal(two.err, 0);
	assert_int_equal(store__commits(f->st) - c0, 1);
}

/* Alone, a lazy update still commits, after its short default wait. */
static void
test_lazy_alone_commits(void **state)
{
	struct fixture *f = *state;
	struct done_res d = {0, -1};
	struct sub_res one;
	struct get_res g;
	uint64_t c0;
	int64_t rowid;

	open_store(f);
	rowid = submit_wait(f, make_message(NULL, "relayed"), NULL, &one);
	c0 = store__commits(f->st);
	lazy_delivered(f, rowid, &d);
	WAIT_FOR(f->base, d.done == 1);
	assert_int_equal(d.err, 0);
	assert_int_equal(store__commits(f->st) - c0, 1);
	get_wait(f, one.id, &g);
	assert_int_equal(g.m->status, MSG_DELIVERED);
	get_res_cleanup(&g);
}

/*
 * Closing the store ends a lazy update's wait: it is committed, its
 * callback runs, and close does not sit out the wait.
 */
static void
test_lazy_close_commits(void **state)
{
	struct fixture *f = *state;
	struct done_res d = {0, -1};
	struct sub_res one;
	struct get_res g;
	int64_t rowid, t0;

	open_store(f);
	rowid = submit_wait(f, make_message(NULL, "relayed"), NULL, &one);
	store__lazy_wait(f->st, 60 * 1000000);
	lazy_delivered(f, rowid, &d);
	WAIT_FOR(f->base, store__lazy_holding(f->st));
	t0 = mono_ms();
	store_close(f->st);
	f->st = NULL;
	assert_true(mono_ms() - t0 < 30000);
	assert_int_equal(d.done, 1);
	assert_int_equal(d.err, 0);
	open_store(f);
	get_wait(f, one.id, &g);
	assert_int_equal(g.m->status, MSG_DELIVERED);
	get_res_cleanup(&g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bucket_bounds),
	    cmocka_unit_test_setup_teardown(test_commits_counted, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_lazy_shares_commit, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_lazy_alone_commits, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_lazy_close_commits, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
