/*
 * The intake's fast path (dispatcher_claim): a new message that a free
 * provider can take, with nothing waiting before it, is stored as
 * `sending` at that provider by its own insert, and its JOB leaves only
 * once that insert is durable.  Everything else takes the ordinary way.
 * Each test drives the dispatcher the way the server's submit path does
 * (fixture_dispatcher.c, submit_claim_start).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "dispatch/dispatch_int.h"
#include "dispatch/dispatcher.h"
#include "dispatch/registry.h"
#include "link/link.h"
#include "store/store.h"

#include "fixture_dispatcher.h"

#include <stdio.h>
#include <string.h>

/* a is up; one message is claimed there while the disk is held. */
static void
claim_held(struct fixture *f)
{
	agent_up(f, 0);
	db_lock(f);
	assert_true(submit_claim_start(f));
	drain_loop(f, 100);
}

/*
 * Claimed: the slot is held while the insert waits for the disk, no JOB
 * goes out before it is durable, and then the message is `sending` on
 * disk and in the counts, never `queued`, with no attempt yet.
 */
static void
test_claim_sends_once_durable(void **state)
{
	struct fixture *f = *state;
	struct get_result g;
	int one = 1;

	claim_held(f);
	assert_int_equal(f->p[0]->se.in_flight, 1);
	assert_int_equal(f->fa[0].njobs, 0);
	assert_int_equal(count(f, MSG_QUEUED), 0);
	assert_int_equal(count(f, MSG_SENDING), 0);
	assert_int_equal(dispatcher_in_flight(f->d), 1);
	db_unlock(f);
	run_until(f, submitted_at_least, &one, 3000);
	wait_jobs(f, 0, 1);
	assert_string_equal(f->fa[0].msg_ids[0], f->ids[0]);
	assert_int_equal(count(f, MSG_SENDING), 1);
	assert_int_equal(count(f, MSG_QUEUED), 0);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_SENDING);
	assert_int_equal(g.natt, 0);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "pm-1", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	assert_int_equal(count(f, MSG_SENDING), 0);
	assert_int_equal(dispatcher_in_flight(f->d), 0);
}

/* No provider up, or the dispatcher paused: the ordinary way. */
static void
test_no_claim_without_provider_or_paused(void **state)
{
	struct fixture *f = *state;
	int want = 1;

	assert_false(submit_claim_start(f));
	run_until(f, submitted_at_least, &want, 3000);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	agent_up(f, 0);
	wait_jobs(f, 0, 1);
	dispatcher_pause(f->d);
	assert_false(submit_claim_start(f));
	want = 2;
	run_until(f, submitted_at_least, &want, 3000);
	drain_loop(f, 50);
	assert_int_equal(f->fa[0].njobs, 1);
	assert_int_equal(count(f, MSG_QUEUED), 1);
}

/*
 * A message that waits for a slot is never overtaken: freeing the slot
 * and submitting in the same turn (before the pump runs) gives no claim,
 * and the waiting message gets the slot.
 */
static void
test_no_claim_ahead_of_waiting(void **state)
{
	struct fixture *f = *state;
	int want = 3;

	agent_up(f, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	submit(f);
	drain_loop(f, 50);
	assert_int_equal(f->fa[0].njobs, 1);
	/* a is full: no claim either. */
	assert_int_equal(f->p[0]->se.in_flight, 1);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, NULL, NULL);
	assert_int_equal(f->p[0]->se.in_flight, 0);
	assert_false(submit_claim_start(f));
	run_until(f, submitted_at_least, &want, 3000);
	wait_jobs(f, 0, 2);
	assert_string_equal(f->fa[0].msg_ids[1], f->ids[1]);
}

/*
 * The provider goes down while the claimed insert waits for the disk:
 * nothing is sent there, the message goes back to queued with no attempt
 * (it never left), and another provider gets it.
 */
static void
test_claim_down_before_durable(void **state)
{
	struct fixture *f = *state;
	struct get_result g;
	int one = 1;

	claim_held(f);
	unlink_agent(f, 0, "link lost");
	assert_int_equal(f->p[0]->se.in_flight, 0);
	db_unlock(f);
	run_until(f, submitted_at_least, &one, 3000);
	wait_count(f, MSG_QUEUED, 1);
	assert_int_equal(count(f, MSG_SENDING), 0);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_QUEUED);
	assert_int_equal(g.natt, 0);
	assert_int_equal(f->p[0]->lost, 0);
	assert_int_equal(f->fa[0].njobs, 0);
	agent_up(f, 1);
	wait_jobs(f, 1, 1);
	assert_string_equal(f->fa[1].msg_ids[0], f->ids[0]);
}

/*
 * The insert fails (after the message's row, so the whole transaction
 * rolls back): nothing is stored, the slot comes back, nothing is sent or
 * counted, and the next message is claimed again.
 */
static void
test_claim_insert_fails(void **state)
{
	struct fixture *f = *state;
	int want = 1;

	agent_up(f, 0);
	fault_insert_on(f);
	assert_true(submit_claim_start(f));
	run_until(f, submitted_at_least, &want, 3000);
	assert_int_not_equal(f->claim_err, 0);
	assert_int_equal(f->p[0]->se.in_flight, 0);
	assert_int_equal(dispatcher_in_flight(f->d), 0);
	drain_loop(f, 50);
	assert_int_equal(f->fa[0].njobs, 0);
	assert_int_equal(count(f, MSG_QUEUED), 0);
	assert_int_equal(count(f, MSG_SENDING), 0);
	fault_off(f);
	/* The error was the message's own: the store stays healthy. */
	want = 2;
	assert_true(submit_claim_start(f));
	run_until(f, submitted_at_least, &want, 3000);
	wait_jobs(f, 0, 1);
	assert_string_equal(f->fa[0].msg_ids[0], f->ids[1]);
	assert_int_equal(count(f, MSG_SENDING), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_claim_sends_once_durable,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_no_claim_without_provider_or_paused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_claim_ahead_of_waiting,
					    setup_one_slot, teardown),
	    cmocka_unit_test_setup_teardown(test_claim_down_before_durable,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_claim_insert_fails, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
