/*
 * The store's commit metrics (store_commit_stats) against a real SQLite
 * file: every commit is counted once in both histograms, with the
 * operations it carried, and the buckets are where the bounds say.
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bucket_bounds),
	    cmocka_unit_test_setup_teardown(test_commits_counted, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
