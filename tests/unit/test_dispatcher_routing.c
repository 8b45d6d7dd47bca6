/*
 * Where the dispatcher sends a message: the message TTL, the priority
 * scheduler with and without overflow, rate_per_s, max_in_flight_bytes,
 * and the outcome classes (throttled pauses a provider and frees the
 * attempt, account takes it down until its probe passes, ambiguous is
 * routed elsewhere).
 * The fixture (a real store, fake agents on socketpairs, injected store
 * faults) is fixture_dispatcher.c.
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
#include <stdlib.h>
#include <string.h>

static void
test_ttl_offers_untried_before_expiry(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	link_agent(f, 0);
	link_agent(f, 1);
	submit_created(f, now_ms() - 2 * 86400 * 1000LL);
	drain_loop(f, 50);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	assert_int_equal(count(f, MSG_FAILED), 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	wait_jobs(f, 0, 1);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_TRANSIENT, NULL, "451");
	wait_jobs(f, 1, 1);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_TRANSIENT, NULL, "451");
	wait_count(f, MSG_FAILED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_FAILED);
	assert_int_equal(g.natt, 2);
	assert_non_null(strstr(g.error, "expired"));
}

/*
 * Defect 10: under `priority` a full primary without overflow holds the
 * burst; the backup takes it only once the primary is down.
 */

static void
test_priority_no_overflow(void **state)
{
	struct fixture *f = *state;

	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	submit(f);
	submit(f);
	wait_jobs(f, 0, 1);
	drain_loop(f, 100);
	assert_int_equal(f->fa[0].njobs, 1);
	assert_int_equal(f->fa[1].njobs, 0);
	/* Room again at the primary: the second goes there. */
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0],
			  f->fa[0].msg_ids[0], OUTCOME_DELIVERED, "ok", NULL);
	wait_jobs(f, 0, 2);
	assert_int_equal(f->fa[1].njobs, 0);
	/* Primary down: its message falls to the backup. */
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_DOWN, 0);
	wait_jobs(f, 1, 1);
	assert_string_equal(f->fa[1].msg_ids[0], f->fa[0].msg_ids[1]);
}

/* overflow = yes: a full primary spills onto the next tier. */
static void
test_priority_overflow(void **state)
{
	struct fixture *f = *state;

	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	submit(f);
	submit(f);
	wait_jobs(f, 0, 1);
	wait_jobs(f, 1, 1);
}

/*
 * rate_per_s: a burst of one second's tokens, then one job per token as
 * the timer refills the bucket (the check itself takes no token).
 */

static void
test_rate_limit(void **state)
{
	struct fixture *f = *state;
	int64_t t0;
	int i;

	for (i = 0; i < 8; i++)
		submit(f);
	link_agent(f, 0);
	t0 = mono_ms();
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	wait_jobs(f, 0, 5);
	drain_loop(f, 100);
	assert_int_equal(f->fa[0].njobs, 5);
	wait_jobs(f, 0, 8);
	/* Three more tokens at 5/s: at least ~600 ms after the burst. */
	assert_true(mono_ms() - t0 >= 550);
}

/*
 * max_in_flight_bytes: a provider that holds that many message bytes takes
 * no more, whatever its max_in_flight, until a result frees some.
 */

static void
test_bytes_cap(void **state)
{
	struct fixture *f = *state;
	int i;

	for (i = 0; i < 5; i++)
		submit_sized(f, now_ms(), 400);
	agent_up(f, 0);
	/* 2 x 414 < 1024 takes a third; 3 x 414 is over: no fourth. */
	wait_jobs(f, 0, 3);
	drain_loop(f, 100);
	assert_int_equal(f->fa[0].njobs, 3);
	assert_int_equal(f->p[0]->bytes_in_flight, 3 * 414);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0],
			  f->fa[0].msg_ids[0], OUTCOME_DELIVERED, "pm", "");
	wait_jobs(f, 0, 4);
	drain_loop(f, 50);
	assert_int_equal(f->fa[0].njobs, 4);
	assert_int_equal(f->p[0]->bytes_in_flight, 3 * 414);
	unlink_agent(f, 0, "test over");
	assert_int_equal(f->p[0]->bytes_in_flight, 0);
}

/* a takes the first message; b is up but drained until it should help. */
static void
first_at_a(struct fixture *f, int nmsg)
{
	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_set_disabled(f->d, f->p[1], true);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	while (nmsg-- > 0)
		submit(f);
	wait_jobs(f, 0, (size_t)f->submitted);
	dispatcher_set_disabled(f->d, f->p[1], false);
}

/*
 * throttled with Retry-After: a is paused for that long (not eligible,
 * shown as paused with the reason), the message goes to b at once, the
 * try is recorded but not counted, the breaker does not count it, and a
 * comes back by itself when the pause ends.
 */

static void
test_throttled_pauses_frees_attempt(void **state)
{
	struct fixture *f = *state;
	struct get_result g;
	int64_t t0 = mono_ms();

	first_at_a(f, 1);
	dispatcher_result_after(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
				OUTCOME_THROTTLED, NULL, "429 slow down", 1000);
	assert_int_equal(f->p[0]->state, PROVIDER_PAUSED);
	assert_string_equal(provider_state_name(f->p[0]), "paused");
	assert_string_equal(f->p[0]->reason, "throttled: 429 slow down");
	assert_true(f->p[0]->paused_until_ms > now_ms() + 900);
	assert_int_equal(f->p[0]->consecutive_failures, 0);
	assert_int_equal(f->p[0]->throttle_ms, 0); /* Retry-After said it */
	wait_jobs(f, 1, 1);
	/* At once: b has it while a is still paused. */
	assert_int_equal(f->p[0]->state, PROVIDER_PAUSED);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "id-b", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.attempts, 1); /* the throttled try was free */
	assert_int_equal(g.natt, 2);
	assert_int_equal(g.outcomes[0], OUTCOME_THROTTLED);
	assert_string_equal(g.providers[0], "a");
	assert_int_equal(g.outcomes[1], OUTCOME_DELIVERED);
	/* Not eligible while paused: a new message goes to b. */
	submit(f);
	wait_jobs(f, 1, 2);
	assert_int_equal(f->fa[0].njobs, 1);
	/* The pause ends by itself, honouring Retry-After. */
	wait_state(f, 0, PROVIDER_UP, 2000);
	assert_true(mono_ms() - t0 >= 990);
	assert_int_equal(f->p[0]->paused_until_ms, 0);
	assert_string_equal(f->p[0]->reason, "");
}

/*
 * throttled without Retry-After: 1 s, doubled by the next throttle after
 * the pause (not by throttles of jobs sent before it), reset by a delivery.
 */

static void
test_throttled_doubling(void **state)
{
	struct fixture *f = *state;
	int64_t left;

	agent_up(f, 0);
	submit(f);
	submit(f);
	wait_jobs(f, 0, 2);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0],
			  f->fa[0].msg_ids[0], OUTCOME_THROTTLED, NULL, "429");
	assert_int_equal(f->p[0]->state, PROVIDER_PAUSED);
	assert_int_equal(f->p[0]->throttle_ms, 1000);
	left = f->p[0]->pause_end_mono - mono_ms();
	assert_true(left > 900 && left <= 1000);
	/* The second job was sent before the pause: no doubling. */
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[1],
			  f->fa[0].msg_ids[1], OUTCOME_THROTTLED, NULL, "429");
	assert_int_equal(f->p[0]->throttle_ms, 1000);
	wait_state(f, 0, PROVIDER_UP, 2000);
	/* Both come back to a (the only provider) after their round. */
	wait_jobs(f, 0, 4);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[2],
			  f->fa[0].msg_ids[2], OUTCOME_THROTTLED, NULL, "429");
	assert_int_equal(f->p[0]->throttle_ms, 2000);
	left = f->p[0]->pause_end_mono - mono_ms();
	assert_true(left > 1900 && left <= 2000);
	/* A delivery resets the doubling. */
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[3],
			  f->fa[0].msg_ids[3], OUTCOME_DELIVERED, "x", NULL);
	assert_int_equal(f->p[0]->throttle_ms, 0);
	wait_count(f, MSG_DELIVERED, 1);
}

/*
 * account: a is down with the provider's reason, the message moves on at
 * once and the attempt counts; heartbeats saying down keep it down (the
 * breaker's cool-down does not bring it back); the first heartbeat that
 * does not (the agent's probe passed) brings it back with its slow start.
 */

static void
test_account_down_until_probe(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	/* Slot 0 is provider c: slow_start_s = 1. */
	f->p[0] = registry_find(f->reg, "c");
	first_at_a(f, 1);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_ACCOUNT, NULL, "401 bad key");
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
	assert_true(f->p[0]->account_down);
	assert_string_equal(f->p[0]->reason, "account: 401 bad key");
	wait_jobs(f, 1, 1);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "id-b", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.attempts, 2);
	assert_int_equal(g.outcomes[0], OUTCOME_ACCOUNT);
	assert_string_equal(g.details[0], "401 bad key");
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_DOWN, 0);
	drain_loop(f, 200); /* past breaker_cooldown_ms */
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
	assert_string_equal(f->p[0]->reason, "account: 401 bad key");
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	assert_int_equal(f->p[0]->state, PROVIDER_UP);
	assert_false(f->p[0]->account_down);
	assert_true(f->p[0]->ramp_start_mono != 0);
	assert_int_equal(limits__max_in_flight(f->p[0], mono_ms()), 1);
}

/* ambiguous: routed like transient, counted, shown on the attempt. */
static void
test_ambiguous_routed_elsewhere(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	first_at_a(f, 1);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_AMBIGUOUS, NULL, "timeout after send");
	assert_int_equal(f->p[0]->state, PROVIDER_UP);
	assert_int_equal(f->p[0]->consecutive_failures, 1);
	wait_jobs(f, 1, 1);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "id-b", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.attempts, 2);
	assert_int_equal(g.natt, 2);
	assert_int_equal(g.outcomes[0], OUTCOME_AMBIGUOUS);
	assert_string_equal(g.providers[1], "b");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_ttl_offers_untried_before_expiry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_priority_no_overflow,
					    setup_priority, teardown),
	    cmocka_unit_test_setup_teardown(test_priority_overflow,
					    setup_priority_overflow, teardown),
	    cmocka_unit_test_setup_teardown(test_rate_limit, setup_rate,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bytes_cap, setup_bytes,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_throttled_pauses_frees_attempt,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_throttled_doubling, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_account_down_until_probe,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ambiguous_routed_elsewhere,
					    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
