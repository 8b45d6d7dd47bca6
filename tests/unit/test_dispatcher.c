/*
 * The dispatcher's core policy: a provider comes up at its first good
 * heartbeat, link drops and heartbeat timeouts requeue, transient results
 * retry with backoff, permanent ones fail, the breaker opens and steps
 * back, max_attempts ends a message, hostile results change nothing, and
 * a returning provider ramps up over slow_start_s.
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
#include <sys/time.h>

#include <event2/event.h>

/* Linked is not up: a provider is up at its first good heartbeat. */
static void
test_up_at_first_heartbeat(void **state)
{
	struct fixture *f = *state;

	link_agent(f, 0);
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
	submit(f);
	drain_loop(f, 50);
	assert_int_equal(f->fa[0].njobs, 0);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	assert_int_equal(f->p[0]->state, PROVIDER_UP);
	wait_jobs(f, 0, 1);
	assert_string_equal(f->fa[0].msg_ids[0], f->ids[0]);
	assert_int_equal(count(f, MSG_SENDING), 1);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "pm-1", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	assert_int_equal(f->p[0]->delivered, 1);
	assert_int_equal(f->p[0]->se.in_flight, 0);
}

/* A dropped link requeues its in-flight message at once, to the other. */
static void
test_link_drop_requeues_lost(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	agent_up(f, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	agent_up(f, 1);
	unlink_agent(f, 0, "link lost");
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
	wait_jobs(f, 1, 1);
	assert_string_equal(f->fa[1].msg_ids[0], f->ids[0]);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "pm-2", NULL);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_DELIVERED);
	assert_int_equal(g.natt, 2);
	assert_int_equal(g.outcomes[0], OUTCOME_LOST);
	assert_string_equal(g.providers[0], "a");
	assert_int_equal(g.outcomes[1], OUTCOME_DELIVERED);
	assert_string_equal(g.providers[1], "b");
	assert_int_equal(f->p[0]->lost, 1);
}

/* Silence for heartbeat_timeout_ms takes a provider down; a beat revives. */
static void
test_heartbeat_timeout(void **state)
{
	struct fixture *f = *state;
	int64_t t0;

	agent_up(f, 0);
	t0 = mono_ms();
	wait_state(f, 0, PROVIDER_DOWN, 2000);
	assert_true(mono_ms() - t0 >= 190);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	assert_int_equal(f->p[0]->state, PROVIDER_UP);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_DOWN, 0);
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
}

/* A transient failure retries elsewhere; all tried: backoff, new round. */
static bool
any_job(struct fixture *f, void *arg)
{
	return f->fa[0].njobs + f->fa[1].njobs > 0;
}

static void
test_transient_retry_and_backoff(void **state)
{
	struct fixture *f = *state;
	struct get_result g;
	int64_t t0;

	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	submit(f);
	run_until(f, submitted_at_least, &(int){1}, 1000);
	/* The job leaves once its `sending` record is on disk: wait for it
	 * (a fixed pause guessed wrong under load and waited on the other). */
	run_until(f, any_job, NULL, 3000);
	{
		int first = f->fa[0].njobs == 1 ? 0 : 1, second = 1 - first;
		wait_jobs(f, (size_t)first, 1);
		dispatcher_result(f->d, f->p[first], f->fa[first].job_ids[0],
				  f->ids[0], OUTCOME_TRANSIENT, NULL,
				  "503 busy");
		wait_jobs(f, (size_t)second, 1);
		/* Both failed it: the round ends and it waits. */
		t0 = mono_ms();
		dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
		dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
		dispatcher_result(f->d, f->p[second], f->fa[second].job_ids[0],
				  f->ids[0], OUTCOME_TRANSIENT, NULL,
				  "503 busy");
		wait_count(f, MSG_QUEUED, 1);
		while (f->fa[0].njobs + f->fa[1].njobs < 3) {
			dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
			dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
			assert_true(mono_ms() - t0 < 3000);
			drain_loop(f, 5);
		}
		/* retry_base_ms 100 with equal jitter: at least 50 ms. */
		assert_true(mono_ms() - t0 >= 45);
	}
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_SENDING);
	assert_int_equal(g.natt, 2);
	assert_int_equal(g.outcomes[0], OUTCOME_TRANSIENT);
	assert_int_equal(g.outcomes[1], OUTCOME_TRANSIENT);
	assert_string_not_equal(g.providers[0], g.providers[1]);
}

/* A permanent refusal fails the message without a retry. */
static void
test_permanent_fails(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_set_disabled(f->d, f->p[1], true);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_PERMANENT, NULL, "550 no such user");
	wait_count(f, MSG_FAILED, 1);
	drain_loop(f, 30);
	assert_int_equal(f->fa[1].njobs, 0);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_FAILED);
	assert_int_equal(g.natt, 1);
}

/* Consecutive transient failures open the breaker; a trial closes it. */
static void
test_breaker(void **state)
{
	struct fixture *f = *state;
	int i;

	agent_up(f, 0);
	for (i = 0; i < 3; i++) {
		submit(f);
		wait_jobs(f, 0, (size_t)i + 1);
	}
	for (i = 0; i < 3; i++)
		dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[i], f->ids[i],
				  OUTCOME_TRANSIENT, NULL, "500");
	assert_int_equal(f->p[0]->breaker, BREAKER_OPEN);
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
	/* Heartbeats do not bring it back while open. */
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
	wait_state(f, 0, PROVIDER_UP, 2000);
	assert_int_equal(f->p[0]->breaker, BREAKER_HALF_OPEN);
	/* Half-open: one trial only, even with three messages waiting. */
	wait_jobs(f, 0, 4);
	drain_loop(f, 30);
	assert_int_equal(f->fa[0].njobs, 4);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[3],
			  f->fa[0].msg_ids[3], OUTCOME_DELIVERED, "ok", NULL);
	assert_int_equal(f->p[0]->breaker, BREAKER_CLOSED);
	wait_jobs(f, 0, 6);
}

/*
 * Submits and answers until p[0]'s breaker opens: p[0]'s jobs fail
 * (transient), any other agent's are delivered.  answered[] counts the
 * jobs answered per agent.
 */
static void
fail_p0_until_open(struct fixture *f, size_t answered[2])
{
	int64_t t0 = mono_ms();
	int i;

	while (f->p[0]->breaker != BREAKER_OPEN) {
		assert_true(mono_ms() - t0 < 5000);
		submit(f);
		drain_loop(f, 5);
		for (i = 0; i < 2; i++) {
			while (answered[i] < f->fa[i].njobs) {
				size_t k = answered[i]++;

				dispatcher_result(f->d, f->p[i],
						  f->fa[i].job_ids[k],
						  f->fa[i].msg_ids[k],
						  i == 0 ? OUTCOME_TRANSIENT
							 : OUTCOME_DELIVERED,
						  i == 0 ? NULL : "ok",
						  i == 0 ? "500" : NULL);
			}
		}
	}
}

/*
 * What is left of a pending timer's wait, in ms (-1: not pending).
 * libevent maps its monotonic due time to the wall clock with an offset
 * it refreshes only now and then, so this is right to a few ms: the
 * checks below leave TIMER_SLACK_MS, far from the 200 s they tell apart.
 */
#define TIMER_SLACK_MS 1000
static int64_t
timer_left_ms(const struct event *ev)
{
	struct timeval due, now;

	if (!evtimer_pending(ev, &due))
		return -1;
	gettimeofday(&now, NULL);
	return (int64_t)(due.tv_sec - now.tv_sec) * 1000 +
	       (due.tv_usec - now.tv_usec) / 1000;
}

/*
 * A grown cool-down (up to five minutes) is kept while another provider
 * is up, and held to BREAKER_ALONE_COOLDOWN_MS once none is: a provider
 * back after a long total outage must not leave the backlog waiting.
 */
static void
test_breaker_alone(void **state)
{
	struct fixture *f = *state;
	size_t answered[2] = {0, 0};

	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	f->p[0]->breaker_cooldown_ms = 200000; /* grown by earlier trials */
	fail_p0_until_open(f, answered);
	assert_int_equal(f->p[1]->state, PROVIDER_UP);
	assert_true(timer_left_ms(f->p[0]->breaker_timer) > 100000);

	/* The last one up goes: the open breaker's wait is cut. */
	unlink_agent(f, 1, "gone");
	assert_true(timer_left_ms(f->p[0]->breaker_timer) <=
		    BREAKER_ALONE_COOLDOWN_MS + TIMER_SLACK_MS);
	assert_int_equal(f->p[0]->breaker, BREAKER_OPEN);
}

/* Opened while nothing else is up: armed for the cap at once. */
static void
test_breaker_alone_from_the_start(void **state)
{
	struct fixture *f = *state;
	size_t answered[2] = {0, 0};

	agent_up(f, 0);
	f->p[0]->breaker_cooldown_ms = 200000;
	fail_p0_until_open(f, answered);
	assert_true(timer_left_ms(f->p[0]->breaker_timer) <=
		    BREAKER_ALONE_COOLDOWN_MS + TIMER_SLACK_MS);
	assert_true(timer_left_ms(f->p[0]->breaker_timer) >
		    BREAKER_ALONE_COOLDOWN_MS - 5000);
}

/* max_attempts spent: failed. */
static void
test_max_attempts(void **state)
{
	struct fixture *f = *state;
	size_t n = 0;
	int64_t t0 = mono_ms();

	agent_up(f, 0);
	f->p[0]->breaker_cooldown_ms = 1; /* not under test here */
	submit(f);
	while (count(f, MSG_FAILED) == 0) {
		assert_true(mono_ms() - t0 < 5000);
		dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
		if (f->fa[0].njobs > n) {
			dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[n],
					  f->ids[0], OUTCOME_TRANSIENT, NULL,
					  "451");
			n++;
			/* Keep the breaker out of this test. */
			f->p[0]->consecutive_failures = 0;
		}
		drain_loop(f, 5);
	}
	assert_int_equal(n, 4);
}

/* Results for unknown jobs or the wrong message id change nothing. */
static void
test_hostile_results(void **state)
{
	struct fixture *f = *state;

	agent_up(f, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	dispatcher_result(f->d, f->p[0], 999999, f->ids[0], OUTCOME_DELIVERED,
			  "x", NULL);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0],
			  "01AAAAAAAAAAAAAAAAAAAAAAAA", OUTCOME_DELIVERED, "x",
			  NULL);
	assert_int_equal(count(f, MSG_SENDING), 1);
	assert_int_equal(count(f, MSG_DELIVERED), 0);
	assert_int_equal(f->p[0]->se.in_flight, 1);
}

static bool
in_flight_at_least(struct fixture *f, void *arg)
{
	const unsigned *want = arg;

	return f->p[0]->se.in_flight >= *want;
}

/*
 * slow_start_s: a returning provider's limit ramps from 1 to
 * max_in_flight; its first up is not a return.
 */

static void
test_slow_start(void **state)
{
	struct fixture *f = *state;
	unsigned want = 8;
	int i;

	/* Borrow slot 0 for provider c (max_in_flight 8, slow_start_s 1). */
	f->p[0] = registry_find(f->reg, "c");
	assert_non_null(f->p[0]);
	agent_up(f, 0);
	for (i = 0; i < 8; i++)
		submit(f);
	/* First up: the whole max_in_flight at once. */
	wait_jobs(f, 0, 8);
	assert_int_equal(f->p[0]->se.in_flight, 8);
	/* Down (all eight lost) and back: now it is a return. */
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_DOWN, 0);
	assert_int_equal(f->p[0]->se.in_flight, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	/*
	 * The eight lost ones tried c, the only provider: they back off one
	 * round (50-100 ms), then meet the ramp's small limit.  Each
	 * heartbeat re-reads the ramp: all 8 after about 1 s.
	 */
	{
		int64_t t0 = mono_ms();
		unsigned one = 1;

		while (!in_flight_at_least(f, &one)) {
			assert_true(mono_ms() - t0 < 2000);
			drain_loop(f, 5);
		}
		assert_true(f->p[0]->se.in_flight <= 2);
		while (!in_flight_at_least(f, &want)) {
			assert_true(mono_ms() - t0 < 2500);
			dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
			drain_loop(f, 20);
		}
		assert_true(mono_ms() - t0 >= 700);
	}
}

/*
 * Defect 1: the JOB leaves only once its `sending` record is durable.
 * With the store's commit held back, a pick reserves the slot but no JOB
 * byte is in the link; when the commit lands, the JOB goes out.
 */

/* The seams: limits and breaker change only in their explicit steps. */
static void
test_limits_are_pure(void **state)
{
	struct provider p;
	int64_t t = 1000000;

	memset(&p, 0, sizeof(p));
	p.name = "x";
	p.max_in_flight = 10;
	p.rate_per_s = 2;
	p.slow_start_s = 1;
	/* A bucket never ticked is empty: asking does not fill it. */
	assert_false(limits__rate_ok(&p));
	assert_false(limits__rate_ok(&p));
	limits__tick(&p, t);
	assert_true(limits__rate_ok(&p));
	limits__take(&p);
	limits__take(&p);
	assert_false(limits__rate_ok(&p));
	assert_int_equal(limits__rate_wait_us(&p), 500001);
	limits__tick(&p, t + 500001);
	assert_true(limits__rate_ok(&p));
	/* The ramp: linear from 1, ended by a tick, not by asking. */
	limits__ramp_start(&p, 1000);
	assert_int_equal(limits__max_in_flight(&p, 1000), 1);
	assert_int_equal(limits__max_in_flight(&p, 1500), 5);
	assert_int_equal(limits__max_in_flight(&p, 2500), 10);
	assert_int_equal(p.ramp_start_mono, 1000);
	limits__tick(&p, 2500 * 1000);
	assert_int_equal(p.ramp_start_mono, 0);
	p.breaker = BREAKER_HALF_OPEN;
	assert_int_equal(limits__max_in_flight(&p, 2500), 1);
	/* Bytes: below the cap takes one more (which may pass it). */
	p.bytes_in_flight = 1023;
	assert_true(limits__bytes_ok(&p, 1024));
	p.bytes_in_flight = 1024;
	assert_false(limits__bytes_ok(&p, 1024));
}

static void
test_breaker_steps(void **state)
{
	struct provider p;

	memset(&p, 0, sizeof(p));
	p.name = "x";
	breaker__init(&p, 100);
	assert_false(breaker__failure(&p, 2));
	assert_true(breaker__failure(&p, 2));
	assert_false(breaker__allows(&p));
	assert_false(breaker__failure(&p, 2)); /* already open */
	assert_true(breaker__half_open(&p));
	assert_false(breaker__half_open(&p));
	assert_true(breaker__allows(&p));
	/* A failed trial opens it again, the cool-down doubled... */
	assert_true(breaker__failure(&p, 2));
	assert_int_equal(p.breaker_cooldown_ms, 200);
	/* ...up to the cap. */
	p.breaker = BREAKER_HALF_OPEN;
	p.breaker_cooldown_ms = BREAKER_MAX_COOLDOWN_MS - 1;
	assert_true(breaker__failure(&p, 2));
	assert_int_equal(p.breaker_cooldown_ms, BREAKER_MAX_COOLDOWN_MS);
	/* A good trial closes it and resets the cool-down. */
	p.breaker = BREAKER_HALF_OPEN;
	breaker__success(&p, 100);
	assert_int_equal(p.breaker, BREAKER_CLOSED);
	assert_int_equal(p.breaker_cooldown_ms, 100);
	assert_int_equal(p.consecutive_failures, 0);
}

/* --- outcome classes (issue 7) --------------------------------------- */

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_up_at_first_heartbeat, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_link_drop_requeues_lost, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_heartbeat_timeout,
					    setup_fast_hb, teardown),
	    cmocka_unit_test_setup_teardown(test_transient_retry_and_backoff,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_permanent_fails, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_breaker, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_breaker_alone, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_breaker_alone_from_the_start,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_max_attempts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_results, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_slow_start, setup, teardown),
	    cmocka_unit_test(test_limits_are_pure),
	    cmocka_unit_test(test_breaker_steps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
