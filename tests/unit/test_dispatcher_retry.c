/*
 * A retried message through the dispatcher: a message failed by its
 * provider is put back by store_retry, dispatcher_retried counts it queued
 * again and publishes message.queued, and it is sent and delivered with
 * its earlier attempt still on record; the counts in memory match the
 * store's at every step.  A backoff outlives no clock step: with the wall
 * clock gone back it is still due within retry_max_ms.
 * The fixture (a real store, fake agents on socketpairs) is
 * fixture_dispatcher.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "dispatch/dispatch_int.h"
#include "dispatch/dispatcher.h"
#include "dispatch/events.h"
#include "dispatch/registry.h"
#include "link/link.h"
#include "store/store.h"

#include "fixture_dispatcher.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct retry_wait {
	int done;
	int err;
	int64_t rowid;
};

static void
retry_cb(void *arg, int err, int64_t rowid)
{
	struct retry_wait *w = arg;

	w->done++;
	w->err = err;
	w->rowid = rowid;
}

static bool
retry_done(struct fixture *f, void *arg)
{
	(void)f;
	return ((struct retry_wait *)arg)->done == 1;
}

struct seen {
	int queued;
	char id[32];
};

static void
on_event(void *arg, const struct ev_rec *r)
{
	struct seen *s = arg;

	if (r->type != EV_MSG_QUEUED)
		return;
	s->queued++;
	snprintf(s->id, sizeof(s->id), "%s", r->id);
}

/* Counts in memory as the store has them on disk. */
static void
assert_counts_match(struct fixture *f)
{
	int64_t disk[MSG_NSTATUS];
	int s;

	drain_loop(f, 50);
	assert_int_equal(store_scan(f->st, NULL, NULL, disk), 0);
	for (s = 0; s < MSG_NSTATUS; s++)
		assert_int_equal(count(f, s), disk[s]);
}

static void
test_retried_is_sent_again(void **state)
{
	struct fixture *f = *state;
	struct events *ev = events_new(16);
	struct events_sub *sub;
	struct seen seen = {0, ""};
	struct retry_wait w = {0, 0, 0};
	struct get_result g;

	dispatcher_set_events(f->d, ev);
	agent_up(f, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_PERMANENT, NULL, "550 no such user");
	wait_count(f, MSG_FAILED, 1);
	assert_counts_match(f);

	sub = events_subscribe(ev, on_event, &seen);
	store_retry(f->st, f->ids[0], retry_cb, &w);
	run_until(f, retry_done, &w, 3000);
	assert_int_equal(w.err, 0);
	dispatcher_retried(f->d, w.rowid, f->ids[0]);
	assert_int_equal(count(f, MSG_FAILED), 0);
	assert_int_equal(seen.queued, 1);
	assert_string_equal(seen.id, f->ids[0]);

	/* Sent again, to the provider that refused it before. */
	wait_jobs(f, 0, 2);
	assert_string_equal(f->fa[0].msg_ids[1], f->ids[0]);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[1], f->ids[0],
			  OUTCOME_DELIVERED, "pm-2", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	assert_counts_match(f);
	assert_int_equal(count(f, MSG_QUEUED), 0);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_DELIVERED);
	assert_int_equal(g.natt, 2);
	assert_int_equal(g.outcomes[0], OUTCOME_PERMANENT);
	assert_int_equal(g.outcomes[1], OUTCOME_DELIVERED);
	assert_int_equal(g.attempts, 1);

	events_unsubscribe(ev, sub);
	dispatcher_set_events(f->d, NULL);
	events_free(ev);
}

static bool
heap_holds_one(struct fixture *f, void *arg)
{
	(void)arg;
	return f->d->heap.n == 1;
}

/*
 * The wall clock goes back an hour while a message backs off: it is sent
 * again within retry_max_ms (400 ms here), not an hour later.  The step
 * is played by moving its due time an hour ahead in the heap, which is
 * what a clock gone back an hour looks like from delay_cb.
 */
static void
test_clock_back_does_not_hold_backoff(void **state)
{
	struct fixture *f = *state;

	agent_up(f, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	/* The only up provider refused it: the round ends, it backs off. */
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_TRANSIENT, NULL, "451 try later");
	run_until(f, heap_holds_one, NULL, 3000);
	f->d->heap.v[0].due_ms += 3600 * 1000;
	dispatch__arm_delay(f->d);
	wait_jobs(f, 0, 2);
	assert_string_equal(f->fa[0].msg_ids[1], f->ids[0]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_retried_is_sent_again, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_clock_back_does_not_hold_backoff, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
