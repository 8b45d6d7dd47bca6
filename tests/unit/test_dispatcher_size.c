/*
 * Size routing (docs/internals/dispatch.md, "Size limits"): providers have
 * different message limits, and a message over one provider's limit is
 * the provider's problem, not the message's.  The pump never offers a
 * message to a provider whose limit is below its size, whatever the
 * scheduler prefers; one no known provider can take fails at once with a
 * clear error; a too_large answer is a free attempt on record, lowers the
 * provider's limit below that size, and sends the message to a provider
 * that can take it, or fails it when none can; a learned limit holds for an
 * hour, then the registration's is back.  Until 2026-11-30 the 413
 * of a provider with a small limit failed the message for good although a
 * provider with a larger one was up.
 * SMTPUTF8 is routed the same way: a needs_smtputf8 answer (a smarthost
 * without SMTPUTF8 and a non-ASCII address) is free, keeps such messages
 * away from that provider for the same hour, and fails the message only
 * when no provider known can take it.  Until 2026-12-01 that answer failed
 * the message for good although another provider could have taken it.
 * An agent of link revision 5 sends a non-ASCII domain as its A-labels,
 * so such a refusal from it keeps away only addresses with no ASCII form
 * (a non-ASCII local part); an older agent's keeps away any non-ASCII one.
 * The fixture (a real store, fake agents on socketpairs) is
 * fixture_dispatcher.c; setup_size gives a (priority 1) a limit of 1,024
 * bytes and b (priority 2) the server's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/config.h"
#include "common/util.h"
#include "dispatch/dispatch_int.h"
#include "dispatch/dispatcher.h"
#include "dispatch/events.h"
#include "dispatch/registry.h"
#include "link/link.h"
#include "store/store.h"

#include "fixture_dispatcher.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMALL 1024
#define BIG_BODY 2000 /* a message of 2,014 bytes: over a's limit */

static void
both_up(struct fixture *f)
{
	agent_up(f, 0);
	agent_up(f, 1);
}

/*
 * The file's limit: the priority scheduler prefers a, but a message over
 * a's limit goes to b, never to a; a small one still goes to a.
 */
static void
test_routes_past_small_limit(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	assert_int_equal(f->p[0]->max_message_bytes, SMALL);
	assert_int_equal(f->p[1]->max_message_bytes,
			 (uint64_t)f->cfg->max_message_bytes);
	both_up(f);
	submit_sized(f, now_ms(), BIG_BODY);
	wait_jobs(f, 1, 1);
	submit(f);
	wait_jobs(f, 0, 1);
	drain_loop(f, 50);
	assert_int_equal(f->fa[0].njobs, 1);
	assert_string_equal(f->fa[0].msg_ids[0], f->ids[1]);
	assert_string_equal(f->fa[1].msg_ids[0], f->ids[0]);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "id-b", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.natt, 1);
	assert_string_equal(g.providers[0], "b");
}

/*
 * The first message, refused by a with outcome (a free try), goes to b,
 * which delivers it: both attempts on record (g), one counted.
 */
static void
delivered_by_b_after_a(struct fixture *f, int outcome, struct get_result *g)
{
	wait_jobs(f, 1, 1);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "id-b", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	get(f, f->ids[0], g);
	assert_int_equal(g->attempts, 1); /* the refusal was free */
	assert_int_equal(g->natt, 2);
	assert_int_equal(g->outcomes[0], outcome);
	assert_string_equal(g->providers[0], "a");
	assert_int_equal(g->outcomes[1], OUTCOME_DELIVERED);
}

/*
 * A too_large answer (a's limit was not known: say its file had none): the
 * attempt is on record and free, a stays up with its breaker untouched,
 * its limit drops below the size, the message goes to b at once, and the
 * next message of that size goes straight to b.
 */
static void
test_too_large_goes_elsewhere(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	f->p[0]->file_max_bytes = (uint64_t)f->cfg->max_message_bytes;
	registry_set_announced(f->p[0], 0);
	agent_up(f, 0);
	link_agent(f, 1); /* linked, up only once a's refusal is in */
	submit_sized(f, now_ms(), BIG_BODY);
	wait_jobs(f, 0, 1);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_TOO_LARGE, NULL, "413 Payload Too Large");
	assert_int_equal(f->p[0]->state, PROVIDER_UP);
	assert_int_equal(f->p[0]->consecutive_failures, 0);
	assert_int_equal(f->p[0]->max_message_bytes, BIG_BODY + 14 - 1);
	delivered_by_b_after_a(f, OUTCOME_TOO_LARGE, &g);
	assert_string_equal(g.details[0], "413 Payload Too Large");
	/* The same size again: never offered to a. */
	submit_sized(f, now_ms(), BIG_BODY);
	wait_jobs(f, 1, 2);
	drain_loop(f, 50);
	assert_int_equal(f->fa[0].njobs, 1);
	/* A new registration starts from the file's limit again. */
	registry_set_announced(f->p[0], 0);
	assert_int_equal(f->p[0]->max_message_bytes,
			 (uint64_t)f->cfg->max_message_bytes);
}

/* The provider events of two types seen (first, second): of each its
 * type, limit, until and state. */
struct provider_events {
	int first, second;
	struct events *ev; /* the hub, watch_start() to watch_stop() */
	struct events_sub *sub;
	int n;
	int type[4];
	uint64_t max_bytes[4];
	int64_t until_ms[4];
	char state[4][16];
};

static void
on_provider_event(void *arg, const struct ev_rec *r)
{
	struct provider_events *pe = arg;

	if (r->type != pe->first && r->type != pe->second)
		return;
	assert_string_equal(r->provider, "a");
	if (pe->n >= 4)
		fail_msg("more %s events than expected",
			 events_type_name(r->type));
	pe->type[pe->n] = r->type;
	pe->max_bytes[pe->n] = r->max_bytes;
	pe->until_ms[pe->n] = r->until_ms;
	snprintf(pe->state[pe->n], sizeof(pe->state[0]), "%s", r->state);
	pe->n++;
}

/* The dispatcher gets a hub, and pe records its events of two types. */
static void
watch_start(struct fixture *f, struct provider_events *pe)
{
	pe->ev = events_new(64);
	dispatcher_set_events(f->d, pe->ev);
	pe->sub = events_subscribe(pe->ev, on_provider_event, pe);
}

static void
watch_stop(struct fixture *f, struct provider_events *pe)
{
	events_unsubscribe(pe->ev, pe->sub);
	dispatcher_set_events(f->d, NULL);
	events_free(pe->ev);
}

static bool
limit_is(struct fixture *f, void *arg)
{
	return f->p[0]->max_message_bytes == *(const uint64_t *)arg;
}

/*
 * A learned limit heals: a too_large answer lowers a's limit for
 * learned_limit_ms (an hour, shortened here), then a's limit is its
 * registration's again (its HELLO's 5,000 here, not the file's), the
 * next message of that size is offered to a again, and a second refusal
 * lowers it again.  A new registration forgets a learned limit at once,
 * with a provider.limit_restored event as when its time is over.
 * Until 2026-11-30 a learned limit held until the agent registered again:
 * one misjudged 413 shrank a provider for days.
 */
static void
test_learned_limit_expires(void **state)
{
	struct fixture *f = *state;
	struct provider *a = f->p[0];
	uint64_t announced = 5000, learned = BIG_BODY + 14 - 1;
	int64_t before;
	struct provider_events le = {.first = EV_PROVIDER_LIMIT_LEARNED,
				     .second = EV_PROVIDER_LIMIT_RESTORED};

	watch_start(f, &le);
	f->d->learned_limit_ms = 300;
	a->file_max_bytes = (uint64_t)f->cfg->max_message_bytes;
	registry_set_announced(a, announced);
	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, a, LINK_HEALTH_OK, 0);
	submit_sized(f, now_ms(), BIG_BODY);
	wait_jobs(f, 0, 1);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	before = now_ms();
	dispatcher_result(f->d, a, f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_TOO_LARGE, NULL, "413 from a proxy");
	assert_int_equal(a->max_message_bytes, learned);
	/* Shown by GET /v1/providers: learned, until then. */
	assert_true(a->limit_learned_until_ms >= before + 300);
	assert_true(a->limit_learned_until_ms <= now_ms() + 300);
	/* And told on the hub (GET /v1/events, webhooks): how low, until. */
	assert_int_equal(le.n, 1);
	assert_int_equal(le.type[0], EV_PROVIDER_LIMIT_LEARNED);
	assert_int_equal(le.max_bytes[0], learned);
	assert_int_equal(le.until_ms[0], a->limit_learned_until_ms);
	assert_string_equal(le.state[0], "up");
	wait_jobs(f, 1, 1);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "id-b", NULL);
	wait_count(f, MSG_DELIVERED, 1);

	/* The hour is over: the registration's limit, not the file's. */
	run_until(f, limit_is, &announced, 3000);
	assert_int_equal(a->limit_learned_until_ms, 0);
	assert_int_equal(le.n, 2);
	assert_int_equal(le.type[1], EV_PROVIDER_LIMIT_RESTORED);
	assert_int_equal(le.max_bytes[1], announced);
	assert_int_equal(le.until_ms[1], 0);
	submit_sized(f, now_ms(), BIG_BODY);
	wait_jobs(f, 0, 2);
	assert_string_equal(f->fa[0].msg_ids[1], f->ids[1]);
	dispatcher_result(f->d, a, f->fa[0].job_ids[1], f->ids[1],
			  OUTCOME_TOO_LARGE, NULL, "413 again");
	assert_int_equal(a->max_message_bytes, learned);
	assert_true(a->limit_learned_until_ms > 0);
	assert_int_equal(le.n, 3);
	assert_int_equal(le.type[2], EV_PROVIDER_LIMIT_LEARNED);
	wait_jobs(f, 1, 2);

	/* A new registration forgets it at once, and its timer with it,
	 * and says so: without the event a stream or a webhook receiver
	 * would show the lowered limit for ever. */
	registry_set_announced(a, 0);
	assert_int_equal(a->max_message_bytes, a->file_max_bytes);
	assert_int_equal(a->limit_learned_until_ms, 0);
	assert_false(evtimer_pending(a->limit_timer, NULL));
	assert_int_equal(le.n, 4);
	assert_int_equal(le.type[3], EV_PROVIDER_LIMIT_RESTORED);
	assert_int_equal(le.max_bytes[3], a->file_max_bytes);
	assert_int_equal(le.until_ms[3], 0);
	/* Another registration with no learned limit: nothing to tell. */
	registry_set_announced(a, announced);
	assert_int_equal(a->max_message_bytes, announced);
	assert_int_equal(le.n, 4);

	watch_stop(f, &le);
}

/* Shrinks every provider known (c is configured, never linked). */
static void
limits(struct fixture *f, uint64_t a, uint64_t b, uint64_t c)
{
	f->p[0]->max_message_bytes = a;
	f->p[1]->max_message_bytes = b;
	registry_find(f->reg, "c")->max_message_bytes = c;
}

/*
 * Over every known provider's limit (linked or not): failed at once with
 * the sizes in its error, no attempt, no job anywhere; not at its TTL.
 */
static void
test_too_large_for_all_fails_at_once(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	limits(f, SMALL, 1500, 1200);
	both_up(f);
	submit_sized(f, now_ms(), BIG_BODY);
	wait_count(f, MSG_FAILED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.natt, 0);
	assert_string_equal(g.error, "too large for every provider: 2014 "
				     "bytes, largest limit 1500");
	/* Nobody up at all: the same, at once. */
	unlink_agent(f, 0, "test");
	unlink_agent(f, 1, "test");
	submit_sized(f, now_ms(), BIG_BODY);
	wait_count(f, MSG_FAILED, 2);
	assert_int_equal(f->fa[0].njobs + f->fa[1].njobs, 0);
}

/*
 * The first message goes to a, which answers outcome; then to b, which
 * answers the same: it fails with both refusals on record (g).
 */
static void
refused_by_a_then_b(struct fixture *f, int outcome, const char *at_a,
		    const char *at_b, struct get_result *g)
{
	wait_jobs(f, 0, 1);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  outcome, NULL, at_a);
	wait_jobs(f, 1, 1);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  outcome, NULL, at_b);
	wait_count(f, MSG_FAILED, 1);
	get(f, f->ids[0], g);
	assert_int_equal(g->natt, 2);
	assert_string_equal(g->details[0], at_a);
	assert_string_equal(g->details[1], at_b);
}

/*
 * Each provider refuses it in turn: the last refusal fails it for good,
 * with every refusal on record in its attempts.
 */
static void
test_refused_by_every_provider(void **state)
{
	struct fixture *f = *state;
	struct get_result g;
	uint64_t all = (uint64_t)f->cfg->max_message_bytes;

	limits(f, all, all, SMALL);
	both_up(f);
	submit_sized(f, now_ms(), BIG_BODY);
	refused_by_a_then_b(f, OUTCOME_TOO_LARGE, "413 at a", "552 at b", &g);
	assert_int_equal(g.outcomes[0], OUTCOME_TOO_LARGE);
	assert_int_equal(g.outcomes[1], OUTCOME_TOO_LARGE);
	assert_string_equal(g.details[1], "552 at b");
	assert_non_null(strstr(g.error, "too large for every provider: 2014 "
					"bytes, largest limit 2013"));
}

/*
 * Only b can take it and b is down: it waits like any message whose
 * providers are down (not failed, not sent to a), and b takes it once up.
 */
static void
test_waits_for_down_provider(void **state)
{
	struct fixture *f = *state;

	agent_up(f, 0);
	submit_sized(f, now_ms(), BIG_BODY);
	drain_loop(f, 150);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	assert_int_equal(f->fa[0].njobs, 0);
	agent_up(f, 1);
	wait_jobs(f, 1, 1);
	assert_string_equal(f->fa[1].msg_ids[0], f->ids[0]);
}

/*
 * A learned limit restored by a new registration: the restore itself does
 * not pump (registry_set_announced runs in on_auth, before the link, with
 * a down), but a's first heartbeat brings it up, and every state change
 * pumps (provider_set_state), so a message waiting in the window for a
 * provider that can take it goes to a at that beat.
 */
static void
test_restored_limit_sends_at_return(void **state)
{
	struct fixture *f = *state;
	struct provider *a = f->p[0];
	uint64_t announced = 5000;

	a->file_max_bytes = (uint64_t)f->cfg->max_message_bytes;
	registry_set_announced(a, announced);
	agent_up(f, 0);
	/* As a RESULT too_large of 2,014 bytes would leave it. */
	dispatch__provider_too_large(f->d, a, BIG_BODY + 14);
	unlink_agent(f, 0, "agent restarted");
	/* Only b (down) takes it now: it waits, nobody being up. */
	submit_sized(f, now_ms(), BIG_BODY);
	drain_loop(f, 50);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	assert_int_equal(f->fa[0].njobs, 0);
	/* As on_auth() does: the HELLO's limit, then linked, then a beat. */
	registry_set_announced(a, announced);
	assert_int_equal(a->max_message_bytes, announced);
	link_agent(f, 0);
	dispatcher_heartbeat(f->d, a, LINK_HEALTH_OK, 0);
	wait_jobs(f, 0, 1);
	assert_string_equal(f->fa[0].msg_ids[0], f->ids[0]);
}

/* HELLO's limit lowers the file's, never raises it; absent: the file's. */
static void
test_announced_limit(void **state)
{
	struct fixture *f = *state;

	registry_set_announced(f->p[0], 500);
	assert_int_equal(f->p[0]->max_message_bytes, 500);
	registry_set_announced(f->p[0], 1u << 30);
	assert_int_equal(f->p[0]->max_message_bytes, SMALL);
	registry_set_announced(f->p[0], 0);
	assert_int_equal(f->p[0]->max_message_bytes, SMALL);
}

/* A small message to rcpt. */
static void
submit_to(struct fixture *f, const char *rcpt)
{
	struct store_message *m = new_message(now_ms(), 0);

	free(m->rcpt[0]);
	m->rcpt[0] = xstrdup(rcpt);
	submit_msg(f, m);
}

/* A small message to a non-ASCII local part, which only SMTPUTF8 carries
 * (RFC 6531). */
static void
submit_utf8(struct fixture *f)
{
	submit_to(f, "zo\xc3\xab@example.net");
}

/* To a non-ASCII domain: "xn--bcher-kva.example" without SMTPUTF8. */
#define IDN_RCPT                                                               \
	"info@b\xc3\xbc"                                                       \
	"cher.example"

static bool
utf8_restored(struct fixture *f, void *arg)
{
	(void)arg;
	return f->p[0]->utf8_refused_until_ms == 0;
}

/*
 * a (preferred) answers needs_smtputf8: the try is free and on record, a
 * stays up with its breaker untouched, the message goes to b at once;
 * the next such message goes straight to b while an ASCII one still goes
 * to a; after the (shortened) hour a is offered one again.
 */
static void
test_needs_smtputf8_goes_elsewhere(void **state)
{
	struct fixture *f = *state;
	struct provider *a = f->p[0];
	struct get_result g;
	int64_t before;
	struct provider_events ue = {.first = EV_PROVIDER_SMTPUTF8_REFUSED,
				     .second = EV_PROVIDER_SMTPUTF8_RESTORED};

	watch_start(f, &ue);
	f->d->learned_limit_ms = 300;
	both_up(f);
	submit_utf8(f);
	wait_jobs(f, 0, 1);
	before = now_ms();
	dispatcher_result(f->d, a, f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_NEEDS_SMTPUTF8, NULL,
			  "smtp the smarthost does not offer SMTPUTF8");
	assert_int_equal(a->state, PROVIDER_UP);
	assert_int_equal(a->consecutive_failures, 0);
	assert_true(a->utf8_refused_until_ms >= before + 300);
	/* Told on the hub (GET /v1/events, webhooks), with until when. */
	assert_int_equal(ue.n, 1);
	assert_int_equal(ue.type[0], EV_PROVIDER_SMTPUTF8_REFUSED);
	assert_int_equal(ue.until_ms[0], a->utf8_refused_until_ms);
	delivered_by_b_after_a(f, OUTCOME_NEEDS_SMTPUTF8, &g);

	/* Another one goes straight to b; an ASCII one still to a. */
	submit_utf8(f);
	wait_jobs(f, 1, 2);
	submit(f);
	wait_jobs(f, 0, 2);
	assert_string_equal(f->fa[0].msg_ids[1], f->ids[2]);
	assert_string_equal(f->fa[1].msg_ids[1], f->ids[1]);

	/* The hour is over: a may take one again, and the hub says so. */
	run_until(f, utf8_restored, NULL, 3000);
	assert_int_equal(ue.n, 2);
	assert_int_equal(ue.type[1], EV_PROVIDER_SMTPUTF8_RESTORED);
	assert_int_equal(ue.until_ms[1], 0);
	submit_utf8(f);
	wait_jobs(f, 0, 3);
	assert_string_equal(f->fa[0].msg_ids[2], f->ids[3]);
	/* Refused again, then a new registration forgets it at once. */
	dispatcher_result(f->d, a, f->fa[0].job_ids[2], f->ids[3],
			  OUTCOME_NEEDS_SMTPUTF8, NULL, "again");
	assert_true(a->utf8_refused_until_ms > 0);
	wait_jobs(f, 1, 3);
	assert_int_equal(ue.n, 3);
	dispatcher_provider_linked(f->d, a);
	assert_int_equal(a->utf8_refused_until_ms, 0);
	assert_false(evtimer_pending(a->utf8_timer, NULL));
	assert_int_equal(ue.n, 4);
	assert_int_equal(ue.type[3], EV_PROVIDER_SMTPUTF8_RESTORED);

	watch_stop(f, &ue);
}

/*
 * Every provider it fits lacks SMTPUTF8: the last refusal fails it with
 * a clear error and both refusals on record; the next one fails at once,
 * without a job; an ASCII message is not held by any of it.
 */
static void
test_needs_smtputf8_everywhere_fails(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	registry_find(f->reg, "c")->max_message_bytes = 10; /* fits nothing */
	both_up(f);
	submit_utf8(f);
	refused_by_a_then_b(f, OUTCOME_NEEDS_SMTPUTF8, "no SMTPUTF8 at a",
			    "no SMTPUTF8 at b", &g);
	assert_int_equal(g.outcomes[1], OUTCOME_NEEDS_SMTPUTF8);
	assert_string_equal(g.error, "no provider takes its non-ASCII "
				     "address: every one it fits lacks "
				     "SMTPUTF8");
	submit_utf8(f);
	wait_count(f, MSG_FAILED, 2);
	submit(f);
	wait_jobs(f, 0, 2);
	assert_int_equal(f->fa[0].njobs + f->fa[1].njobs, 3);
}

/*
 * An agent that answers needs_smtputf8 for an all-ASCII envelope is
 * wrong: a transient failure of that provider (counted, retried
 * elsewhere), and nothing learned.
 */
static void
test_needs_smtputf8_for_ascii_is_transient(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	both_up(f);
	submit(f);
	wait_jobs(f, 0, 1);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_NEEDS_SMTPUTF8, NULL, "confused");
	assert_int_equal(f->p[0]->utf8_refused_until_ms, 0);
	assert_int_equal(f->p[0]->consecutive_failures, 1);
	wait_jobs(f, 1, 1);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "id-b", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.attempts, 2); /* counted */
	assert_int_equal(g.outcomes[0], OUTCOME_TRANSIENT);
}

/*
 * a's agent is of revision 5: its refusal (for a non-ASCII local part)
 * keeps such messages away, but not one whose only non-ASCII is a domain,
 * which that agent sends as A-labels; from an older agent the same
 * refusal keeps that one away too.
 */
static void
test_needs_smtputf8_spares_idn_domains(void **state)
{
	struct fixture *f = *state;
	struct provider *a = f->p[0];
	struct get_result g;

	both_up(f);
	a->agent_revision = LINK_REVISION_ALABELS;
	submit_utf8(f);
	wait_jobs(f, 0, 1);
	dispatcher_result(f->d, a, f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_NEEDS_SMTPUTF8, NULL, "no SMTPUTF8");
	assert_true(a->utf8_refused_until_ms > 0);
	delivered_by_b_after_a(f, OUTCOME_NEEDS_SMTPUTF8, &g);

	submit_to(f, IDN_RCPT); /* a can carry it: a, preferred */
	wait_jobs(f, 0, 2);
	assert_string_equal(f->fa[0].msg_ids[1], f->ids[1]);
	submit_utf8(f); /* a cannot: b */
	wait_jobs(f, 1, 2);
	assert_string_equal(f->fa[1].msg_ids[1], f->ids[2]);

	a->agent_revision = 1; /* an older agent refuses any non-ASCII */
	submit_to(f, IDN_RCPT);
	wait_jobs(f, 1, 3);
	assert_string_equal(f->fa[1].msg_ids[2], f->ids[3]);
	assert_int_equal(f->fa[0].njobs, 2);
}

/*
 * needs_smtputf8 for a message whose only non-ASCII is a domain: from an
 * agent of revision 5, which would have sent it as A-labels, a transient
 * failure and nothing learned; from an older agent, the refusal it is.
 */
static void
test_needs_smtputf8_for_idn_domain(void **state)
{
	struct fixture *f = *state;
	struct provider *a = f->p[0];
	struct get_result g;

	both_up(f);
	a->agent_revision = LINK_REVISION_ALABELS;
	submit_to(f, IDN_RCPT);
	wait_jobs(f, 0, 1);
	dispatcher_result(f->d, a, f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_NEEDS_SMTPUTF8, NULL, "confused");
	assert_int_equal(a->utf8_refused_until_ms, 0);
	assert_int_equal(a->consecutive_failures, 1);
	wait_jobs(f, 1, 1);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "id-b", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.outcomes[0], OUTCOME_TRANSIENT);

	a->agent_revision = 1;
	a->consecutive_failures = 0;
	submit_to(f, IDN_RCPT);
	wait_jobs(f, 0, 2);
	dispatcher_result(f->d, a, f->fa[0].job_ids[1], f->ids[1],
			  OUTCOME_NEEDS_SMTPUTF8, NULL, "no SMTPUTF8");
	assert_true(a->utf8_refused_until_ms > 0);
	assert_int_equal(a->consecutive_failures, 0);
}

/* A backoff the tests would notice: a message that backed off instead of
 * parking would wait longer than any wait_jobs(). */
static void
long_backoff(struct fixture *f)
{
	f->cfg->retry_base_ms = 60000;
	f->cfg->retry_max_ms = 60000;
}

/*
 * a is up but too small for it, b (which fits) is down: the message is
 * parked, not backed off (no round, no write), and goes to b the moment
 * b is up.  Until 2026-12-01 it backed off round after round while b was
 * down, and then waited out its backoff (up to retry_max_ms) after b came
 * back.
 */
static void
test_parked_until_one_fits(void **state)
{
	struct fixture *f = *state;
	uint64_t ready, loaded, delayed, parked;

	long_backoff(f);
	agent_up(f, 0);
	submit_sized(f, now_ms(), BIG_BODY);
	drain_loop(f, 150);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	assert_int_equal(f->fa[0].njobs, 0);
	dispatcher_queue_sizes(f->d, &ready, &loaded, &delayed, &parked);
	assert_int_equal(delayed, 0);
	assert_int_equal(parked, 1);
	agent_up(f, 1);
	wait_jobs(f, 1, 1);
	assert_string_equal(f->fa[1].msg_ids[0], f->ids[0]);
}

/*
 * Parked, with b down for longer than message_ttl_s: it fails as expired
 * when its TTL is spent, as one that backed off would, not never.
 */
static void
test_parked_expires(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	long_backoff(f);
	f->cfg->message_ttl_s = 1;
	agent_up(f, 0);
	submit_sized(f, now_ms(), BIG_BODY);
	drain_loop(f, 100);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	wait_count(f, MSG_FAILED, 1);
	get(f, f->ids[0], &g);
	assert_string_equal(g.error, "expired: message_ttl_s spent");
	assert_int_equal(f->fa[0].njobs + f->fa[1].njobs, 0);
}

static bool
parked_at_least(struct fixture *f, void *arg)
{
	uint64_t ready, loaded, delayed, parked;

	dispatcher_queue_sizes(f->d, &ready, &loaded, &delayed, &parked);
	return parked >= *(const uint64_t *)arg;
}

#define SPREAD_N 16 /* the fixture keeps 16 ids */

/*
 * Parked messages whose TTLs end a few milliseconds apart (as they do:
 * they arrived one after the other) are failed by a few scans of the
 * parked ring, not one scan of the whole ring per expiry: with a million
 * parked, one each millisecond held the loop.  Every one still fails as
 * expired, none is sent, and the gauge comes back to 0.
 */
static void
test_parked_expiries_coalesce(void **state)
{
	struct fixture *f = *state;
	uint64_t ready, loaded, delayed, parked;
	int64_t now = now_ms();
	int i;

	long_backoff(f);
	f->cfg->message_ttl_s = 1;
	agent_up(f, 0);
	/* Expiries 10 ms apart, from 300 ms on. */
	for (i = 0; i < SPREAD_N; i++)
		submit_sized(f, now - 700 + 10 * i, BIG_BODY);
	run_until(f, parked_at_least, &(uint64_t){SPREAD_N}, 5000);
	wait_count(f, MSG_FAILED, SPREAD_N);
	assert_true(f->d->park_scans <= 3);
	dispatcher_queue_sizes(f->d, &ready, &loaded, &delayed, &parked);
	assert_int_equal(parked, 0);
	assert_int_equal(f->fa[0].njobs + f->fa[1].njobs, 0);
}

#define FLIPS 20

/*
 * A provider whose usability flips again and again (an operator's
 * disable and enable here; a pause of a millisecond on each throttled
 * answer does the same) while messages it cannot carry are parked: each
 * return would walk the whole parked ring for nothing.  Only the first
 * walks it; one that could move nothing more (no message parked since,
 * the provider's limits as they were) is skipped.  The messages stay
 * parked and go the moment one that fits is up.
 */
static void
test_unpark_skips_what_cannot_move(void **state)
{
	struct fixture *f = *state;
	uint64_t ready, loaded, delayed, parked;
	int i;

	long_backoff(f);
	agent_up(f, 0);
	for (i = 0; i < SPREAD_N; i++)
		submit_sized(f, now_ms(), BIG_BODY);
	run_until(f, parked_at_least, &(uint64_t){SPREAD_N}, 5000);
	f->d->park_visits = 0;
	for (i = 0; i < FLIPS; i++) {
		dispatcher_set_disabled(f->d, f->p[0], true);
		dispatcher_set_disabled(f->d, f->p[0], false);
	}
	drain_loop(f, 50);
	assert_true(f->d->park_visits <= SPREAD_N);
	dispatcher_queue_sizes(f->d, &ready, &loaded, &delayed, &parked);
	assert_int_equal(parked, SPREAD_N);
	assert_int_equal(f->fa[0].njobs, 0);
	/* A limit that rises is a reason to look again. */
	f->p[0]->max_message_bytes = (uint64_t)f->cfg->max_message_bytes;
	dispatcher_set_disabled(f->d, f->p[0], true);
	dispatcher_set_disabled(f->d, f->p[0], false);
	wait_jobs(f, 0, SPREAD_N);
}

/*
 * Parked while a's learned limit (and b being down) kept it out, then
 * a's hour ends while a stays up: it goes to a at once.  The same for an
 * SMTPUTF8 refusal that ends.
 */
static void
test_parked_until_limit_rises(void **state)
{
	struct fixture *f = *state;
	struct provider *a = f->p[0];

	long_backoff(f);
	f->d->learned_limit_ms = 300;
	a->file_max_bytes = (uint64_t)f->cfg->max_message_bytes;
	a->max_message_bytes = a->registered_max_bytes = a->file_max_bytes;
	agent_up(f, 0);
	dispatch__provider_too_large(f->d, a, BIG_BODY + 14);
	submit_sized(f, now_ms(), BIG_BODY);
	drain_loop(f, 100);
	assert_int_equal(f->fa[0].njobs, 0);
	assert_true(a->limit_learned_until_ms > 0);
	wait_jobs(f, 0, 1);
	assert_string_equal(f->fa[0].msg_ids[0], f->ids[0]);

	dispatch__provider_no_utf8(f->d, a);
	submit_utf8(f);
	drain_loop(f, 100);
	assert_int_equal(f->fa[0].njobs, 1);
	wait_jobs(f, 0, 2);
	assert_string_equal(f->fa[0].msg_ids[1], f->ids[1]);
}

/*
 * The start's grace (DISPATCH_REGISTER_GRACE_MS): after a restart the
 * providers that agents register on the fly are not known until their
 * agents are back, so a message only one of them could carry was failed
 * as too large for every provider the moment a configured one was up
 * (until 2026-12-01).  Here every provider known is too small at first,
 * as when the large one is a dynamic provider not back yet: the message
 * waits parked, not failed, and goes to b once b is back with a limit
 * that takes it.
 */
static void
test_grace_waits_for_providers_to_return(void **state)
{
	struct fixture *f = *state;
	uint64_t ready, loaded, delayed, parked;

	limits(f, SMALL, 1500, 1200);
	dispatch__grace_begin(f->d, 60000);
	agent_up(f, 0);
	submit_sized(f, now_ms(), BIG_BODY);
	drain_loop(f, 150);
	assert_int_equal(count(f, MSG_FAILED), 0);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	dispatcher_queue_sizes(f->d, &ready, &loaded, &delayed, &parked);
	assert_int_equal(parked, 1);
	assert_int_equal(f->fa[0].njobs, 0);
	f->p[1]->max_message_bytes = (uint64_t)f->cfg->max_message_bytes;
	agent_up(f, 1);
	wait_jobs(f, 1, 1);
	assert_string_equal(f->fa[1].msg_ids[0], f->ids[0]);
}

/*
 * At the grace's end (its timer) what no provider known can carry fails
 * as it would have at once, with the same error; a message that a known
 * provider fits (b, down) stays parked for it.
 */
static void
test_grace_end_fails_what_none_fits(void **state)
{
	struct fixture *f = *state;
	uint64_t ready, loaded, delayed, parked;
	struct get_result g;

	limits(f, SMALL, 1500, 1200);
	dispatch__grace_begin(f->d, 60000);
	agent_up(f, 0);
	submit_sized(f, now_ms(), BIG_BODY);
	submit_sized(f, now_ms(), 1300);
	drain_loop(f, 100);
	assert_int_equal(count(f, MSG_FAILED), 0);
	dispatcher_queue_sizes(f->d, &ready, &loaded, &delayed, &parked);
	assert_int_equal(parked, 2);
	/* Cut short to 1 ms: its timer ends it, as at 30 s. */
	dispatch__grace_begin(f->d, 1);
	wait_count(f, MSG_FAILED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.natt, 0);
	assert_string_equal(g.error, "too large for every provider: 2014 "
				     "bytes, largest limit 1500");
	drain_loop(f, 100);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	dispatcher_queue_sizes(f->d, &ready, &loaded, &delayed, &parked);
	assert_int_equal(parked, 1);
	assert_int_equal(f->fa[0].njobs, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_routes_past_small_limit,
					    setup_size, teardown),
	    cmocka_unit_test_setup_teardown(test_too_large_goes_elsewhere,
					    setup_size, teardown),
	    cmocka_unit_test_setup_teardown(
		test_too_large_for_all_fails_at_once, setup_size, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_by_every_provider,
					    setup_size, teardown),
	    cmocka_unit_test_setup_teardown(test_waits_for_down_provider,
					    setup_size, teardown),
	    cmocka_unit_test_setup_teardown(test_announced_limit, setup_size,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_parked_until_one_fits,
					    setup_size, teardown),
	    cmocka_unit_test_setup_teardown(test_parked_until_limit_rises,
					    setup_size, teardown),
	    cmocka_unit_test_setup_teardown(test_parked_expires, setup_size,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_parked_expiries_coalesce,
					    setup_size, teardown),
	    cmocka_unit_test_setup_teardown(test_unpark_skips_what_cannot_move,
					    setup_size, teardown),
	    cmocka_unit_test_setup_teardown(test_restored_limit_sends_at_return,
					    setup_size, teardown),
	    cmocka_unit_test_setup_teardown(test_learned_limit_expires,
					    setup_size, teardown),
	    cmocka_unit_test_setup_teardown(test_needs_smtputf8_goes_elsewhere,
					    setup_size, teardown),
	    cmocka_unit_test_setup_teardown(
		test_needs_smtputf8_everywhere_fails, setup_size, teardown),
	    cmocka_unit_test_setup_teardown(
		test_needs_smtputf8_for_ascii_is_transient, setup_size,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_needs_smtputf8_spares_idn_domains, setup_size, teardown),
	    cmocka_unit_test_setup_teardown(test_needs_smtputf8_for_idn_domain,
					    setup_size, teardown),
	    cmocka_unit_test_setup_teardown(
		test_grace_waits_for_providers_to_return, setup_size, teardown),
	    cmocka_unit_test_setup_teardown(test_grace_end_fails_what_none_fits,
					    setup_size, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
