/*
 * A provider's state in the dispatcher: up, down, paused, disabled, and
 * the events that move it (a heartbeat, its silence, a link made or lost,
 * the breaker, a throttle, an account fault, the operator).  Each
 * transition moves messages, so it lives beside the dispatcher, not in
 * the registry: down requeues everything in flight as "lost", up lets the
 * pump hand out work again.  The breaker's and the limits' own arithmetic
 * is in breaker.c and limits.c; the timers they need are armed here.
 *
 * Nothing here blocks or fails; out of memory is fatal (the timers).
 */
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/dispatch_int.h"
#include "dispatch/dispatcher.h"
#include "dispatch/events.h"
#include "dispatch/registry.h"
#include "link/link.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void breakers_hurry(struct dispatcher *d);

/*
 * Every job at p goes back to the queue.  Sent ones were maybe delivered:
 * their attempt is recorded as lost.  Reserved ones never left: they give
 * their slot back now, and their `sending` write's callback puts them back
 * to queued with no attempt.
 */
static void
requeue_all(struct dispatcher *d, struct provider *p, const char *why)
{
	while (p->jobs != NULL) {
		struct job *j = p->jobs;

		if (j->stage == JOB_RESERVED)
			record__release(d, j);
		else
			record__lost(d, j, why);
	}
}

/* The part of every provider event: its type, name and state. */
static void
provider_rec(struct ev_rec *r, const struct provider *p, int type)
{
	memset(r, 0, sizeof(*r));
	r->type = type;
	r->outcome = -1;
	snprintf(r->provider, sizeof(r->provider), "%s", p->name);
	snprintf(r->state, sizeof(r->state), "%s", provider_state_name(p));
}

/* A provider's state (or drain) changed: its event, with the reason. */
static void
publish_provider(struct dispatcher *d, const struct provider *p, int type)
{
	struct ev_rec r;

	if (d->events == NULL)
		return;
	provider_rec(&r, p, type);
	r.text = p->reason;
	r.until_ms = p->paused_until_ms;
	events_publish(d->events, &r);
}

/*
 * p's size limit changed (learned from a too_large answer, or restored):
 * its event, with the limit in force and, while learned, until when.  No
 * reason: the state did not change, and a down reason would mislead.
 */
static void
publish_limit(struct dispatcher *d, const struct provider *p, int type)
{
	struct ev_rec r;

	if (d->events == NULL)
		return;
	provider_rec(&r, p, type);
	r.until_ms = p->limit_learned_until_ms;
	r.max_bytes = p->max_message_bytes;
	events_publish(d->events, &r);
}

/* p's SMTPUTF8 refusal began (until when: until_ms) or ended (0). */
static void
publish_utf8(struct dispatcher *d, const struct provider *p, int type)
{
	struct ev_rec r;

	if (d == NULL || d->events == NULL)
		return;
	provider_rec(&r, p, type);
	r.until_ms = p->utf8_refused_until_ms;
	events_publish(d->events, &r);
}

static int
state_event(int state)
{
	switch (state) {
	case PROVIDER_UP:
		return EV_PROVIDER_UP;
	case PROVIDER_PAUSED:
		return EV_PROVIDER_PAUSED;
	default:
		return EV_PROVIDER_DOWN;
	}
}

static void
provider_set_state(struct dispatcher *d, struct provider *p, int state,
		   const char *why)
{
	bool changed = p->state != state;

	if (changed)
		log_info("- registry state provider=%s from=%s to=%s "
			 "reason=\"%s\"",
			 p->name, provider_state_word(p->state),
			 provider_state_word(state), why);
	/* Kept for GET /v1/providers: why it is not up, "" while up. */
	if (state == PROVIDER_UP)
		p->reason[0] = '\0';
	else if (p->state != state || p->reason[0] == '\0')
		snprintf(p->reason, sizeof(p->reason), "%s", why);
	/* A return from down, not the first up: its share ramps up again.
	 * A pause is the provider's own pacing, not a return. */
	if (p->state == PROVIDER_DOWN && state == PROVIDER_UP) {
		if (p->ever_up)
			limits__ramp_start(p, mono_ms());
		p->ever_up = true;
	}
	if (state != PROVIDER_PAUSED) {
		p->paused_until_ms = 0;
		p->pause_end_mono = 0;
		if (p->pause_timer != NULL)
			evtimer_del(p->pause_timer);
	}
	p->state = state;
	/* Before the requeue, so that the down comes before its losses. */
	if (changed)
		publish_provider(d, p, state_event(state));
	if (state == PROVIDER_DOWN)
		requeue_all(d, p, why);
	if (changed && state == PROVIDER_DOWN && !registry_any_up(d->reg))
		breakers_hurry(d);
	dispatch__refresh(d, p);
	dispatch__schedule_pump(d);
}

/* BREAKER_ALONE_COOLDOWN_MS, or the configured first cool-down. */
static int64_t
breaker_alone_ms(const struct dispatcher *d)
{
	return d->cfg->breaker_cooldown_ms > BREAKER_ALONE_COOLDOWN_MS
		   ? d->cfg->breaker_cooldown_ms
		   : BREAKER_ALONE_COOLDOWN_MS;
}

/*
 * Arms p's open breaker for its cool-down, held to breaker_alone_ms()
 * while no provider is up: the cool-down grows so that a provider that
 * keeps failing is probed less while others carry the mail, but with none
 * up its wait is the backlog's.
 */
static void
breaker_arm(struct dispatcher *d, struct provider *p)
{
	int64_t ms = p->breaker_cooldown_ms;

	if (!registry_any_up(d->reg) && ms > breaker_alone_ms(d))
		ms = breaker_alone_ms(d);
	p->breaker_due_mono = mono_ms() + ms;
	dispatch__timer_start(p->breaker_timer, ms);
}

/* The last provider up went down: no open breaker waits past the cap. */
static void
breakers_hurry(struct dispatcher *d)
{
	size_t i, n = registry_count(d->reg);
	int64_t now = mono_ms(), cap = breaker_alone_ms(d);

	for (i = 0; i < n; i++) {
		struct provider *q = registry_at(d->reg, i);

		if (q->breaker == BREAKER_OPEN && q->breaker_timer != NULL &&
		    q->breaker_due_mono - now > cap) {
			q->breaker_due_mono = now + cap;
			dispatch__timer_start(q->breaker_timer, cap);
		}
	}
}

/* A provider-caused failure; the breaker may take p down. */
void
dispatch__provider_failure(struct dispatcher *d, struct provider *p)
{
	if (breaker__failure(p, d->cfg->breaker_threshold)) {
		/* Down first: breaker_arm() asks whether any other is up. */
		provider_set_state(d, p, PROVIDER_DOWN, "circuit breaker open");
		breaker_arm(d, p);
	}
}

/*
 * A throttled answer: p is paused for retry_after_ms when the provider
 * said how long, else for 1 s doubling up to THROTTLE_MAX_MS on throttles
 * in a row (a delivery resets it).  Throttles of jobs sent before the pause
 * began arrive while paused: they may lengthen it to a Retry-After, but do
 * not double it, so that a full window of 429s counts as one.
 */
void
dispatch__provider_throttled(struct dispatcher *d, struct provider *p,
			     uint32_t retry_after_ms, const char *detail)
{
	int64_t ms, now = mono_ms();
	char why[sizeof(p->reason)];

	if (p->state == PROVIDER_DOWN)
		return;
	if (retry_after_ms > 0) {
		ms = retry_after_ms;
	} else if (p->state == PROVIDER_PAUSED) {
		return;
	} else {
		p->throttle_ms = p->throttle_ms == 0 ? THROTTLE_BASE_MS
				 : p->throttle_ms >= THROTTLE_MAX_MS / 2
				     ? THROTTLE_MAX_MS
				     : p->throttle_ms * 2;
		ms = p->throttle_ms;
	}
	if (p->state == PROVIDER_PAUSED && now + ms <= p->pause_end_mono)
		return;
	p->pause_end_mono = now + ms;
	p->paused_until_ms = now_ms() + ms;
	dispatch__timer_start(p->pause_timer, ms);
	log_info("- registry paused provider=%s pause_ms=%" PRId64
		 " retry_after=%s",
		 p->name, ms, retry_after_ms > 0 ? "yes" : "no");
	if (p->state == PROVIDER_UP) {
		snprintf(why, sizeof(why), "throttled: %s",
			 detail != NULL && *detail != '\0' ? detail
							   : "rate limited");
		provider_set_state(d, p, PROVIDER_PAUSED, why);
	}
}

/* The pause is over: back to work, unless the agent says otherwise. */
static void
pause_cb(evutil_socket_t fd, short what, void *arg)
{
	struct provider *p = arg;

	if (p->state != PROVIDER_PAUSED)
		return;
	if (p->conn != NULL && p->health != LINK_HEALTH_DOWN)
		provider_set_state(p->dispatcher, p, PROVIDER_UP, "pause over");
	else
		provider_set_state(p->dispatcher, p, PROVIDER_DOWN,
				   "agent reports provider down");
}

/*
 * An account fault (credentials, suspension, quota): p is down with the
 * provider's reason until its agent's heartbeat stops saying down, which
 * the agent does once its probe passes.
 */
void
dispatch__provider_account(struct dispatcher *d, struct provider *p,
			   const char *detail)
{
	char why[sizeof(p->reason)];

	p->account_down = true;
	snprintf(why, sizeof(why), "account: %s",
		 detail != NULL && *detail != '\0' ? detail : "refused");
	if (p->state != PROVIDER_DOWN) {
		provider_set_state(d, p, PROVIDER_DOWN, why);
	} else {
		/* Already down: the account fault is the reason now. */
		snprintf(p->reason, sizeof(p->reason), "%s", why);
	}
}

void
dispatch__provider_limit_restore(struct provider *p, const char *why)
{
	if (p->limit_learned_until_ms == 0)
		return;
	log_info("- registry limit_restored provider=%s learned=%" PRIu64
		 " limit=%" PRIu64 " reason=%s",
		 p->name, p->max_message_bytes, p->registered_max_bytes, why);
	p->max_message_bytes = p->registered_max_bytes;
	p->limit_learned_until_ms = 0;
	if (p->limit_timer != NULL)
		evtimer_del(p->limit_timer);
	publish_limit(p->dispatcher, p, EV_PROVIDER_LIMIT_RESTORED);
	dispatch__unpark(p->dispatcher, p);
}

/* A learned limit's hour is over: the registration's limit again. */
static void
limit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct provider *p = arg;

	dispatch__provider_limit_restore(p, "expired");
	dispatch__refresh(p->dispatcher, p);
	dispatch__schedule_pump(p->dispatcher);
}

void
dispatch__provider_too_large(struct dispatcher *d, struct provider *p,
			     size_t bytes)
{
	/* Already below it: a job sent before the limit dropped. */
	if (p->max_message_bytes < (uint64_t)bytes)
		return;
	p->max_message_bytes = bytes > 0 ? bytes - 1 : 0;
	p->dispatcher = d;
	if (p->limit_timer == NULL)
		p->limit_timer = dispatch__xevent_new(d->base, limit_cb, p);
	p->limit_learned_until_ms = now_ms() + d->learned_limit_ms;
	dispatch__timer_start(p->limit_timer, d->learned_limit_ms);
	publish_limit(d, p, EV_PROVIDER_LIMIT_LEARNED);
}

/* The watchdog is re-armed by every heartbeat: firing means silence. */
static void
hb_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct provider *p = arg;

	if (p->state != PROVIDER_DOWN)
		provider_set_state(p->dispatcher, p, PROVIDER_DOWN,
				   "heartbeat timeout");
}

static void
breaker_cb(evutil_socket_t fd, short what, void *arg)
{
	struct provider *p = arg;

	if (!breaker__half_open(p))
		return;
	/* An account fault waits for its probe, not for the breaker. */
	if (p->conn != NULL && p->health != LINK_HEALTH_DOWN &&
	    p->state == PROVIDER_DOWN && !p->account_down)
		provider_set_state(p->dispatcher, p, PROVIDER_UP,
				   "breaker trial");
}

static void
ensure_timers(struct dispatcher *d, struct provider *p)
{
	p->dispatcher = d;
	if (p->hb_timer == NULL)
		p->hb_timer = dispatch__xevent_new(d->base, hb_timeout_cb, p);
	if (p->rate_timer == NULL)
		p->rate_timer =
		    dispatch__xevent_new(d->base, dispatch__rate_cb, p);
	if (p->breaker_timer == NULL)
		p->breaker_timer = dispatch__xevent_new(d->base, breaker_cb, p);
	if (p->pause_timer == NULL)
		p->pause_timer = dispatch__xevent_new(d->base, pause_cb, p);
	breaker__init(p, d->cfg->breaker_cooldown_ms);
}

/*
 * p's SMTPUTF8 refusal ends, its hour over (why "expired") or its agent
 * registered again ("registered"): one log line and the hub's event, as
 * dispatch__provider_limit_restore() for a learned limit.  Nothing when
 * none holds.
 */
static void
utf8_restore(struct provider *p, const char *why)
{
	if (p->utf8_refused_until_ms == 0)
		return;
	log_info("- registry smtputf8_restored provider=%s reason=%s", p->name,
		 why);
	p->utf8_refused_until_ms = 0;
	evtimer_del(p->utf8_timer);
	publish_utf8(p->dispatcher, p, EV_PROVIDER_SMTPUTF8_RESTORED);
	dispatch__unpark(p->dispatcher, p);
}

/* The hour without SMTPUTF8 is over: messages that need it may go to p. */
static void
utf8_cb(evutil_socket_t fd, short what, void *arg)
{
	struct provider *p = arg;

	(void)fd;
	(void)what;
	utf8_restore(p, "expired");
	dispatch__schedule_pump(p->dispatcher);
}

void
dispatch__provider_no_utf8(struct dispatcher *d, struct provider *p)
{
	bool first = p->utf8_refused_until_ms == 0;

	if (first)
		log_info(
		    "- registry smtputf8_refused provider=%s for_s=%" PRId64,
		    p->name, d->learned_limit_ms / 1000);
	p->dispatcher = d;
	if (p->utf8_timer == NULL)
		p->utf8_timer = dispatch__xevent_new(d->base, utf8_cb, p);
	p->utf8_refused_until_ms = now_ms() + d->learned_limit_ms;
	dispatch__timer_start(p->utf8_timer, d->learned_limit_ms);
	/* Told once: later refusals (jobs sent before it) only extend it. */
	if (first)
		publish_utf8(d, p, EV_PROVIDER_SMTPUTF8_REFUSED);
}

void
dispatcher_provider_linked(struct dispatcher *d, struct provider *p)
{
	ensure_timers(d, p);
	/* A new registration may be another smarthost: ask it afresh. */
	utf8_restore(p, "registered");
	p->last_heartbeat_mono = 0;
	dispatch__timer_start(p->hb_timer, d->cfg->heartbeat_timeout_ms);
	log_info("- registry linked provider=%s type=%s pid=%" PRId64
		 " max_message_bytes=%" PRIu64,
		 p->name, p->type, p->agent_pid, p->max_message_bytes);
}

void
dispatcher_heartbeat(struct dispatcher *d, struct provider *p, int health,
		     unsigned agent_in_flight)
{
	ensure_timers(d, p);
	p->last_heartbeat_mono = mono_ms();
	p->health = health;
	dispatch__timer_start(p->hb_timer, d->cfg->heartbeat_timeout_ms);
	if (health == LINK_HEALTH_DOWN) {
		if (p->state != PROVIDER_DOWN)
			provider_set_state(d, p, PROVIDER_DOWN,
					   "agent reports provider down");
		return;
	}
	if (p->state == PROVIDER_DOWN && p->account_down) {
		/* The agent's probe passed: the account works again. */
		log_info("- registry probe_passed provider=%s", p->name);
		p->account_down = false;
	}
	if (p->state == PROVIDER_DOWN && breaker__allows(p)) {
		provider_set_state(d, p, PROVIDER_UP, "heartbeat");
	} else if (p->ramp_start_mono != 0) {
		/* A ramp in progress: each beat may raise the limit. */
		dispatch__refresh(d, p);
		dispatch__schedule_pump(d);
	}
}

bool
dispatcher_link_silent(const struct provider *p)
{
	/* Armed at link and by every beat; it fires only once silent. */
	return p->conn != NULL && p->hb_timer != NULL &&
	       !evtimer_pending(p->hb_timer, NULL);
}

void
dispatcher_provider_unlinked(struct dispatcher *d, struct provider *p,
			     const char *why)
{
	if (p->hb_timer != NULL)
		evtimer_del(p->hb_timer);
	p->health = LINK_HEALTH_DOWN;
	log_info("- registry unlinked provider=%s reason=\"%s\"", p->name, why);
	provider_set_state(d, p, PROVIDER_DOWN, why);
}

void
dispatcher_set_disabled(struct dispatcher *d, struct provider *p, bool disabled)
{
	bool changed = p->disabled != disabled;

	if (changed)
		log_info("- registry %s provider=%s",
			 disabled ? "disabled" : "enabled", p->name);
	p->disabled = disabled;
	if (changed)
		publish_provider(d, p,
				 disabled ? EV_PROVIDER_DISABLED
					  : EV_PROVIDER_ENABLED);
	dispatch__refresh(d, p);
	dispatch__schedule_pump(d);
}
