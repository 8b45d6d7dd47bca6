/*
 * The agent's health (agent_health.c) with a fake connector on a bare
 * event_base: the outcome window makes the heartbeat degraded and ok
 * again; an account outcome makes it down until a probe passes (a failed
 * probe, or one that cannot start, waits one more interval); a connector
 * without a probe comes back after one interval for a trial message; a
 * delivery ends the account fault at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/agent_health.h"
#include "common/util.h"
#include "link/link.h"

#include <event2/event.h>
#include <unistd.h>

/* The fake connector's probe: answers on the next loop turn. */
static int probe_answer; /* 1 passes, 0 fails, -1 cannot start */
static int nprobe;
static connector_probe_cb pending_cb;
static void *pending_arg;
static struct event_base *base;

static int
fake_health(void *state)
{
	return LINK_HEALTH_OK;
}

static void
answer_cb(evutil_socket_t fd, short what, void *arg)
{
	connector_probe_cb cb = pending_cb;

	pending_cb = NULL;
	cb(probe_answer == 1, probe_answer == 1 ? NULL : "401 bad key",
	   pending_arg);
}

static int
fake_probe(void *state, connector_probe_cb cb, void *arg)
{
	nprobe++;
	if (probe_answer < 0)
		return -1;
	pending_cb = cb;
	pending_arg = arg;
	assert_int_equal(
	    event_base_once(base, -1, EV_TIMEOUT, answer_cb, NULL, NULL), 0);
	return 0;
}

static const struct connector_ops with_probe = {
    .name = "fake", .health = fake_health, .probe = fake_probe};
static const struct connector_ops without_probe = {.name = "fake",
						   .health = fake_health};

/* Runs the loop until the health is not down (or 2 s). */
static void
run_until_up(struct agent_health *h)
{
	int64_t deadline = mono_ms() + 2000;

	while (agent_health_level(h) == LINK_HEALTH_DOWN) {
		assert_true(mono_ms() < deadline);
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

static void
run_ms(int ms)
{
	int64_t end = mono_ms() + ms;

	while (mono_ms() < end) {
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

static int
setup(void **state)
{
	base = event_base_new();
	nprobe = 0;
	probe_answer = 1;
	pending_cb = NULL;
	return base == NULL;
}

static int
teardown(void **state)
{
	event_base_free(base);
	return 0;
}

static void
test_window(void **state)
{
	struct agent_health h;
	int i;

	agent_health_init(&h, base, "p", &with_probe, 0);
	assert_int_equal(h.probe_interval_ms, 30000); /* the default */
	assert_int_equal(agent_health_level(&h), LINK_HEALTH_OK);
	for (i = 0; i < 10; i++)
		agent_health_record(&h, OUTCOME_DELIVERED);
	for (i = 0; i < 10; i++)
		agent_health_record(&h, OUTCOME_TRANSIENT);
	/* Half is not over half. */
	assert_int_equal(agent_health_level(&h), LINK_HEALTH_OK);
	/* Throttles are pacing: not counted. */
	for (i = 0; i < 30; i++)
		agent_health_record(&h, OUTCOME_THROTTLED);
	assert_int_equal(agent_health_level(&h), LINK_HEALTH_OK);
	agent_health_record(&h, OUTCOME_AMBIGUOUS);
	assert_int_equal(h.n, AGENT_HEALTH_WINDOW);
	assert_int_equal(h.nfailed, 11);
	assert_int_equal(agent_health_level(&h), LINK_HEALTH_DEGRADED);
	/* The window slides: twenty good answers make it ok again.  A
	 * refusal for the message's size or its need of SMTPUTF8 is the
	 * provider answering: good too. */
	for (i = 0; i < 20; i++) {
		static const int good[] = {OUTCOME_DELIVERED, OUTCOME_PERMANENT,
					   OUTCOME_TOO_LARGE,
					   OUTCOME_NEEDS_SMTPUTF8};
		agent_health_record(&h, good[i % 4]);
	}
	assert_int_equal(h.nfailed, 0);
	assert_int_equal(agent_health_level(&h), LINK_HEALTH_OK);
	agent_health_cleanup(&h);
}

static void
test_account_probe_loop(void **state)
{
	struct agent_health h;
	int64_t t0;

	agent_health_init(&h, base, "p", &with_probe, 1);
	h.probe_interval_ms = 50; /* the test's pace */
	probe_answer = 0;
	t0 = mono_ms();
	agent_health_record(&h, OUTCOME_ACCOUNT);
	assert_int_equal(agent_health_level(&h), LINK_HEALTH_DOWN);
	/* Failing probes keep it down, one per interval. */
	run_ms(180);
	assert_int_equal(agent_health_level(&h), LINK_HEALTH_DOWN);
	assert_true(nprobe >= 2 && nprobe <= 4);
	probe_answer = 1;
	run_until_up(&h);
	assert_true(mono_ms() - t0 >= 150);
	assert_false(h.account_down);
	/* The account failure is still in the window: 1 of 1. */
	assert_int_equal(agent_health_level(&h), LINK_HEALTH_DEGRADED);
	/* No more probes once it passed. */
	nprobe = 0;
	run_ms(120);
	assert_int_equal(nprobe, 0);
	agent_health_cleanup(&h);
}

static void
test_probe_cannot_start(void **state)
{
	struct agent_health h;

	agent_health_init(&h, base, "p", &with_probe, 1);
	h.probe_interval_ms = 30;
	probe_answer = -1;
	agent_health_record(&h, OUTCOME_ACCOUNT);
	run_ms(110);
	assert_true(nprobe >= 2);
	assert_int_equal(agent_health_level(&h), LINK_HEALTH_DOWN);
	/* A delivery (a job in flight before the fault) proves the account. */
	agent_health_record(&h, OUTCOME_DELIVERED);
	assert_false(h.account_down);
	assert_int_not_equal(agent_health_level(&h), LINK_HEALTH_DOWN);
	agent_health_cleanup(&h);
}

static void
test_no_probe_trial(void **state)
{
	struct agent_health h;

	agent_health_init(&h, base, "p", &without_probe, 1);
	h.probe_interval_ms = 50;
	agent_health_record(&h, OUTCOME_ACCOUNT);
	assert_int_equal(agent_health_level(&h), LINK_HEALTH_DOWN);
	run_ms(20);
	assert_int_equal(agent_health_level(&h), LINK_HEALTH_DOWN);
	run_until_up(&h);
	assert_false(h.account_down);
	agent_health_cleanup(&h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_window, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_account_probe_loop, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_probe_cannot_start, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_no_probe_trial, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
