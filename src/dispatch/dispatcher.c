/*
 * The dispatcher (see dispatcher.h for the policy).
 *
 * Where a message is, at any moment, exactly one of:
 *   ready    rowid in a FIFO ring: queued, body on disk only;
 *   delayed  (due, rowid) in a min-heap: backing off between rounds;
 *   loaded   whole message in a bounded FIFO window, waiting for a pick;
 *   parked   (rowid, size, envelope need) in a ring: no usable provider
 *            can carry it (size, SMTPUTF8) while a known one could; back
 *            to ready when one that fits turns usable (dispatch__unpark);
 *   held     in a job (dispatch_int.h): reserved or in flight at one
 *            provider, or waiting for a state change to become durable.
 * The pump moves messages from loaded to providers while the scheduler
 * holds an eligible provider, and refills the window from the ready ring
 * through store_load().  Pumping is deferred to an event so that a burst
 * of results or submissions is handled in one pass.
 *
 * Durability comes first (record.c): the JOB leaves only once its
 * `sending` write is on disk, and every later step moves memory only when
 * its write is durable.  While a failed write waits for its retry, or
 * store_healthy() is false, the pump hands out nothing, so nothing new can
 * overtake it; results and provider changes are still taken.
 *
 * Provider state transitions are in provider_state.c (each one moves
 * messages: down requeues everything in flight as "lost"); the breaker
 * and the limits are in breaker.c and limits.c.
 *
 * Nothing here blocks.  Untrusted input is the agent's RESULT: a job id
 * that is not in flight at that provider, or whose message id does not
 * match, is ignored (and logged).  Out of memory is fatal (xmalloc and
 * the event constructors below).
 */
#include "dispatch/dispatcher.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/dispatch_int.h"
#include "dispatch/events.h"
#include "dispatch/registry.h"
#include "dispatch/ring.h"
#include "dispatch/scheduler.h"
#include "link/link.h"
#include "store/store.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOADED_MAX 1024     /* whole messages held waiting for a pick */
#define HEALTH_POLL_MS 1000 /* while the store says it cannot write */

static struct provider *
entry_provider(struct sched_entry *e)
{
	return (struct provider *)((char *)e - offsetof(struct provider, se));
}

void
dispatch__schedule_pump(struct dispatcher *d)
{
	event_active(d->pump_ev, EV_TIMEOUT, 0);
}

/* Allocation failure in libevent is out of memory: fatal, as xmalloc. */
struct event *
dispatch__xevent_new(struct event_base *base, event_callback_fn cb, void *arg)
{
	struct event *ev = event_new(base, -1, 0, cb, arg);

	if (ev == NULL)
		fatalx("dispatch: event_new: out of memory");
	return ev;
}

void
dispatch__timer_start_us(struct event *ev, int64_t us)
{
	struct timeval tv;

	if (us < 0)
		us = 0;
	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	/* Fails only on a bad event or out of memory: our bug. */
	if (event_add(ev, &tv) != 0)
		fatalx("dispatch: event_add failed");
}

void
dispatch__timer_start(struct event *ev, int64_t ms)
{
	dispatch__timer_start_us(ev, ms * 1000);
}

/* --- message bookkeeping --------------------------------------------- */

/* message_ttl_s counts from the budget's start: a retry starts it again. */
static bool
expired(const struct dispatcher *d, const struct store_message *m)
{
	int64_t start = m->budget_ms > 0 ? m->budget_ms : m->created_ms;

	return now_ms() - start > d->cfg->message_ttl_s * 1000;
}

/* --- the backoff heap ------------------------------------------------ */

/*
 * Whether a backoff due at due_ms is due at now.  No backoff is longer
 * than retry_max_ms (record__backoff), so one due further away than that
 * was set before the wall clock went back (or under a larger retry_max_ms
 * before a restart): it is due now.  Without this a clock stepped back an
 * hour held every backed-off message, in memory and after a restart, an
 * hour longer.
 */
static bool
due_now(const struct dispatcher *d, int64_t due_ms, int64_t now)
{
	return due_ms <= now || due_ms - now > d->cfg->retry_max_ms;
}

void
dispatch__arm_delay(struct dispatcher *d)
{
	int64_t wait;

	if (d->heap.n == 0) {
		event_del(d->delay_ev);
		return;
	}
	/* Capped, so that a clock gone back is noticed by delay_cb. */
	wait = d->heap.v[0].due_ms - now_ms();
	if (wait > d->cfg->retry_max_ms)
		wait = d->cfg->retry_max_ms;
	dispatch__timer_start(d->delay_ev, wait);
}

static void
delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dispatcher *d = arg;
	int64_t now = now_ms();

	while (d->heap.n > 0 && due_now(d, d->heap.v[0].due_ms, now)) {
		ring_push_back(&d->ready, &d->heap.v[0].rowid);
		delay__pop(&d->heap);
	}
	dispatch__arm_delay(d);
	dispatch__schedule_pump(d);
}

/* --- eligibility ----------------------------------------------------- */

bool
dispatch__usable(const struct provider *p)
{
	return p->conn != NULL && p->state == PROVIDER_UP && !p->disabled &&
	       breaker__allows(p);
}

void
dispatch__rate_cb(evutil_socket_t fd, short what, void *arg)
{
	struct provider *p = arg;

	dispatch__refresh(p->dispatcher, p);
	dispatch__schedule_pump(p->dispatcher);
}

/* May p take a message now?  Pure: dispatch__refresh() ticked the limits. */
static bool
eligible(const struct dispatcher *d, const struct provider *p,
	 int64_t mono_now_ms)
{
	return dispatch__usable(p) &&
	       p->se.in_flight < limits__max_in_flight(p, mono_now_ms) &&
	       limits__bytes_ok(p, d->cfg->max_in_flight_bytes) &&
	       limits__rate_ok(p);
}

/*
 * Brings p's place in the scheduler up to date after any change: the one
 * step with effects (limits tick, rate timer, the blocking flag of tiers).
 */
void
dispatch__refresh(struct dispatcher *d, struct provider *p)
{
	int64_t now_us = mono_us(), now = now_us / 1000;
	bool e, held, room, blocking;

	limits__tick(p, now_us);
	if (dispatch__usable(p) != p->was_usable) {
		p->was_usable = !p->was_usable;
		if (p->was_usable)
			dispatch__unpark(d, p);
	}
	e = eligible(d, p, now);
	held = scheduler_holds(d->sched, &p->se);
	if (e && !held)
		scheduler_add(d->sched, &p->se);
	else if (!e && held)
		scheduler_remove(d->sched, &p->se);
	else if (e)
		scheduler_update(d->sched, &p->se);
	room = p->se.in_flight < limits__max_in_flight(p, now) &&
	       limits__bytes_ok(p, d->cfg->max_in_flight_bytes);
	/* Only an empty bucket keeps it out: wake when a token is due. */
	if (!e && dispatch__usable(p) && room && p->rate_timer != NULL &&
	    !evtimer_pending(p->rate_timer, NULL))
		dispatch__timer_start_us(p->rate_timer,
					 limits__rate_wait_us(p));
	/*
	 * Full (or out of tokens) at its tier, and lower tiers must wait.
	 * Not while its slow-start ramp runs: the ramp holds a returning
	 * provider below its max_in_flight so that it takes a growing share,
	 * and the rest must go somewhere.  Blocking then held the backup
	 * tier, which had carried all of it, to the ramp's 1, 2, 3 ...
	 * messages at a time: the primary's return slowed everyone.
	 */
	blocking = d->tiers && !p->overflow && !e && dispatch__usable(p) &&
		   p->breaker == BREAKER_CLOSED && p->ramp_start_mono == 0;
	if (blocking != p->blocking) {
		p->blocking = blocking;
		if (blocking)
			d->nblocking++;
		else
			d->nblocking--;
	}
}

/* --- routing by what a provider can carry --------------------------- */

/* Its memo (store.h), made as a message reaches the dispatcher: up to
 * smtp_max_recipients domain conversions, once. */
static void
need_note(struct store_message *m)
{
	if (m->envelope_need == 0)
		m->envelope_need = envelope_need(
		    m->mail_from, (const char *const *)m->rcpt, m->nrcpt);
}

/* Whether p's agent refuses an envelope of that need without SMTPUTF8. */
static bool
refuses(const struct provider *p, int need)
{
	if (need == ENVELOPE_ASCII)
		return false;
	return need == ENVELOPE_SMTPUTF8 ||
	       p->agent_revision < LINK_REVISION_ALABELS;
}

/* m's envelope_need: its memo, or worked out for one not through the
 * dispatcher's door. */
static int
need_of(const struct store_message *m)
{
	if (m->envelope_need != 0)
		return m->envelope_need;
	return envelope_need(m->mail_from, (const char *const *)m->rcpt,
			     m->nrcpt);
}

bool
dispatch__needs_utf8(const struct provider *p, const struct store_message *m)
{
	return refuses(p, need_of(m));
}

/* What p can carry, by a message's size and envelope_need. */
static bool
fits_by(const struct provider *p, uint64_t bytes, int need)
{
	if (bytes > p->max_message_bytes)
		return false;
	return p->utf8_refused_until_ms == 0 || !refuses(p, need);
}

bool
dispatch__fits(const struct provider *p, const struct store_message *m)
{
	/* The envelope is looked at only for a provider that refused
	 * SMTPUTF8 lately. */
	return fits_by(p, m->mime_len,
		       p->utf8_refused_until_ms == 0 ? ENVELOPE_ASCII
						     : need_of(m));
}

/* A message parked: what routing needs of it, not the message. */
struct parked {
	int64_t rowid;
	uint64_t bytes;
	int64_t expires_ms; /* message_ttl_s spent then (wall clock) */
	int need;           /* enum envelope_need */
};

/* Its clock is re-read at least this often, so a stepped clock is seen. */
#define PARK_CHECK_MAX_MS 3600000
/*
 * And at most this often: each scan walks the whole ring, and messages
 * that parked one after the other expire one after the other.  Armed for
 * each expiry, a million parked cost a million-entry walk a millisecond.
 * A TTL is counted in seconds, so its end is noticed up to a second late.
 */
#define PARK_CHECK_MIN_MS 1000

static void
park_arm(struct dispatcher *d, int64_t due)
{
	int64_t wait = due - now_ms(), rest;

	if (d->parked_due_ms != 0 && d->parked_due_ms <= due)
		return;
	d->parked_due_ms = due;
	rest = d->park_scan_mono + PARK_CHECK_MIN_MS - mono_ms();
	if (d->park_scan_mono != 0 && wait < rest)
		wait = rest;
	if (wait < 0)
		wait = 0;
	dispatch__timer_start(
	    d->park_ev, wait < PARK_CHECK_MAX_MS ? wait : PARK_CHECK_MAX_MS);
}

/*
 * The parked messages go(e, arg) picks go back to the ready ring, the
 * others stay in order; one log line (why: "provider=P", "reason=...")
 * and a pump when any went.
 */
static void
unpark_where(struct dispatcher *d, bool (*go)(const struct parked *, void *),
	     void *arg, const char *why)
{
	size_t i, n = d->parked.len, back = 0;
	struct parked e;

	d->park_visits += n;
	for (i = 0; i < n; i++) {
		ring_pop_front(&d->parked, &e);
		if (go(&e, arg)) {
			ring_push_back(&d->ready, &e.rowid);
			back++;
		} else {
			ring_push_back(&d->parked, &e);
		}
	}
	if (back > 0) {
		log_info("- dispatch unparked %s messages=%zu still_parked=%zu",
			 why, back, d->parked.len);
		dispatch__schedule_pump(d);
	}
}

/* For park_cb: now, and the earliest expiry of those that stay. */
struct expiry {
	int64_t now, next;
};

static bool
expired_entry(const struct parked *e, void *arg)
{
	struct expiry *x = arg;

	if (e->expires_ms <= x->now)
		return true;
	if (x->next == 0 || e->expires_ms < x->next)
		x->next = e->expires_ms;
	return false;
}

/* Parked messages whose TTL is spent go back, to fail as expired. */
static void
park_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dispatcher *d = arg;
	struct expiry x = {.now = now_ms()};

	(void)fd;
	(void)what;
	d->parked_due_ms = 0;
	d->park_scan_mono = mono_ms();
	d->park_scans++;
	unpark_where(d, expired_entry, &x, "reason=expired");
	if (x.next != 0)
		park_arm(d, x.next);
}

/* Up and usable, and able to carry m (tried this round or not). */
static bool
usable_fits(struct dispatcher *d, const struct store_message *m)
{
	size_t i, n = registry_count(d->reg);

	for (i = 0; i < n; i++) {
		const struct provider *p = registry_at(d->reg, i);
		if (dispatch__usable(p) && dispatch__fits(p, m))
			return true;
	}
	return false;
}

/* m waits for a provider that can carry it; the store has all of it. */
static void
park(struct dispatcher *d, struct store_message *m)
{
	int64_t start = m->budget_ms > 0 ? m->budget_ms : m->created_ms;
	struct parked e = {.rowid = m->rowid,
			   .bytes = m->mime_len,
			   .expires_ms = start + d->cfg->message_ttl_s * 1000,
			   .need = need_of(m)};

	log_debug("%s dispatch parked bytes=%zu", m->id, m->mime_len);
	d->park_gen++;
	ring_push_back(&d->parked, &e);
	park_arm(d, e.expires_ms + 1);
	store_message_free(m);
}

static bool
fits_entry(const struct parked *e, void *arg)
{
	return fits_by(arg, e->bytes, e->need);
}

/*
 * A walk of the whole ring per return of p costs what the ring holds (a
 * million entries: 10 ms), and p's usability may flip at every answer (a
 * pause of a millisecond per throttled one): a walk that can move nothing
 * is skipped.  fits_by() reads only these fields of p.
 */
void
dispatch__unpark(struct dispatcher *d, struct provider *p)
{
	char why[LINK_NAME_MAX + 16];
	bool utf8_refused = p->utf8_refused_until_ms != 0;

	if (d->parked.len == 0 || !dispatch__usable(p))
		return;
	if (p->unparked.park_gen == d->park_gen &&
	    p->unparked.max_bytes == p->max_message_bytes &&
	    p->unparked.revision == p->agent_revision &&
	    p->unparked.utf8_refused == utf8_refused)
		return;
	p->unparked.park_gen = d->park_gen;
	p->unparked.max_bytes = p->max_message_bytes;
	p->unparked.revision = p->agent_revision;
	p->unparked.utf8_refused = utf8_refused;
	snprintf(why, sizeof(why), "provider=%s", p->name);
	unpark_where(d, fits_entry, p, why);
}

int
dispatch__unfit(struct dispatcher *d, const struct store_message *m,
		uint64_t *largest)
{
	size_t i, n = registry_count(d->reg);
	bool sized = false;
	uint64_t big = 0;

	for (i = 0; i < n; i++) {
		const struct provider *p = registry_at(d->reg, i);
		if (p->max_message_bytes > big)
			big = p->max_message_bytes;
		if (!sized && (uint64_t)m->mime_len <= p->max_message_bytes)
			sized = true;
		if (dispatch__fits(p, m))
			return UNFIT_NONE;
	}
	if (largest != NULL)
		*largest = big;
	/* Nobody known yet, or maybe not yet again after a start (agents
	 * that register on the fly): wait. */
	if (n == 0 || d->grace_until_mono != 0)
		return UNFIT_NONE;
	return sized ? UNFIT_UTF8 : UNFIT_SIZE;
}

/* For grace_cb: no provider known can carry e. */
static bool
unfit_entry(const struct parked *e, void *arg)
{
	struct dispatcher *d = arg;
	size_t i, n = registry_count(d->reg);

	for (i = 0; i < n; i++)
		if (fits_by(registry_at(d->reg, i), e->bytes, e->need))
			return false;
	return n > 0;
}

/*
 * The grace is over: what parked meanwhile for a provider that never
 * came back, and that no provider known can carry, goes back to the pump
 * to be judged (offer: failed as unfit).  What a known provider fits
 * stays, as any message waiting for a provider that is down.
 */
static void
grace_end(struct dispatcher *d)
{
	d->grace_until_mono = 0;
	unpark_where(d, unfit_entry, d, "reason=grace_over");
}

static void
grace_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	grace_end(arg);
}

void
dispatch__grace_begin(struct dispatcher *d, int64_t ms)
{
	if (ms <= 0) {
		event_del(d->grace_ev);
		grace_end(d);
		return;
	}
	d->grace_until_mono = mono_ms() + ms;
	dispatch__timer_start(d->grace_ev, ms);
}

/* Up, enabled, breaker not open, able to take m's size, and not yet tried
 * for m this round. */
static bool
untried_up(struct dispatcher *d, const struct store_message *m)
{
	size_t i, n = registry_count(d->reg);

	for (i = 0; i < n; i++) {
		struct provider *p = registry_at(d->reg, i);
		if (dispatch__usable(p) && dispatch__fits(p, m) &&
		    !record__tried_contains(m->tried, p->name))
			return true;
	}
	return false;
}

struct pick_ctx {
	const struct store_message *m;
	bool capped;
	int cap; /* with capped: no entry of a higher number may take m */
};

static bool
skip_entry(const struct sched_entry *e, void *arg)
{
	const struct pick_ctx *c = arg;

	if (c->capped && e->priority > c->cap)
		return true;
	/* Never offered to a provider whose limit is below its size. */
	if (!dispatch__fits(
		(const struct provider *)((const char *)e -
					  offsetof(struct provider, se)),
		c->m))
		return true;
	return record__tried_contains(c->m->tried, e->name);
}

/*
 * Overflow (priority scheduler): a provider that is up but full, does not
 * overflow, and has not tried m holds m at its tier: no provider of a
 * higher priority number may take it meanwhile.  Scans the providers only
 * while one is blocking.
 */
static void
tier_cap(struct dispatcher *d, struct pick_ctx *c)
{
	size_t i, n = registry_count(d->reg);

	c->capped = false;
	if (d->nblocking == 0)
		return;
	for (i = 0; i < n; i++) {
		struct provider *p = registry_at(d->reg, i);
		if (!p->blocking || !dispatch__fits(p, c->m) ||
		    record__tried_contains(c->m->tried, p->name))
			continue;
		if (!c->capped || p->se.priority < c->cap)
			c->cap = p->se.priority;
		c->capped = true;
	}
}

/* --- sending --------------------------------------------------------- */

static void load_cb(void *arg, int err, struct store_message **msgs, size_t n);

static void
refill(struct dispatcher *d)
{
	if (d->loading || d->paused || d->loaded.len >= LOADED_MAX / 2 ||
	    d->ready.len == 0 || scheduler_count(d->sched) == 0)
		return;
	d->nload = 0;
	while (d->nload < LOAD_BATCH &&
	       ring_pop_front(&d->ready, &d->load_ids[d->nload]))
		d->nload++;
	d->loading = true;
	store_load(d->st, d->load_ids, d->nload, load_cb, d);
}

static void
load_cb(void *arg, int err, struct store_message **msgs, size_t n)
{
	struct dispatcher *d = arg;
	size_t i;

	d->loading = false;
	if (err != 0) {
		log_warnx("- dispatch store_load_failed rowids=%zu err=\"%s\"",
			  d->nload, store_strerror(err));
		/* The rowids are all memory has of them: back, in order. */
		for (i = d->nload; i > 0; i--)
			ring_push_front(&d->ready, &d->load_ids[i - 1]);
		d->write_failures++;
		record__hold(d);
	}
	d->nload = 0;
	for (i = 0; i < n; i++) {
		struct store_message *m = msgs[i];

		if (err != 0) {
			store_message_free(m);
		} else if (m->status == MSG_FAILED) {
			/* A corrupt row the store could not read. */
			record__fail_corrupt(d, m);
		} else {
			need_note(m);
			ring_push_back(&d->loaded, &m);
		}
	}
	free(msgs);
	dispatch__schedule_pump(d);
}

enum { HOLD_NONE, HOLD_WRITES, HOLD_STORE };

/*
 * Whether writes must wait, and why: a failed write waits for its retry
 * (a new one could overtake it), or the store says it cannot write.  No
 * side effect: the pump (dispatch_held) and the fast path
 * (dispatcher_claim) both ask.
 */
static int
hold_state(struct dispatcher *d, const char **why)
{
	*why = NULL;
	if (d->nretry > 0 || evtimer_pending(d->retry_ev, NULL)) {
		*why = "store writes failing";
		return HOLD_WRITES;
	}
	return store_healthy(d->st, why) ? HOLD_NONE : HOLD_STORE;
}

/*
 * True while the pump must hand out nothing: a failed write waits for its
 * retry (a new job could overtake it), or the store says it cannot write.
 * Logs each episode once; polls the store's health while it is down.
 */
static bool
dispatch_held(struct dispatcher *d)
{
	const char *why;
	int hold = hold_state(d, &why);
	bool held = hold != HOLD_NONE;

	if (hold == HOLD_STORE)
		dispatch__timer_start(d->retry_ev, HEALTH_POLL_MS);
	if (held && !d->held_logged)
		log_warnx("- dispatch held reason=\"%s\"",
			  why ? why : "store not healthy");
	else if (!held && d->held_logged)
		log_info("- dispatch resumed");
	d->held_logged = held;
	return held;
}

enum offer_result {
	OFFER_GONE,   /* sent, backed off or failed: it left the window */
	OFFER_ROTATE, /* an untried provider is up but full: to the back */
	OFFER_HOLD,   /* a full higher tier holds it: the window waits */
};

/*
 * One message at the head of the window: sent; left to wait for a full
 * provider it has not tried; or, at the end of its round, backed off (or
 * failed once its TTL is spent: see dispatcher.h).
 */
static int
offer(struct dispatcher *d, struct store_message *m)
{
	struct pick_ctx c = {.m = m};
	struct sched_entry *e;

	tier_cap(d, &c);
	e = scheduler_pick(d->sched, skip_entry, &c);
	if (e != NULL) {
		record__send(d, m, entry_provider(e));
		return OFFER_GONE;
	}
	if (dispatch__unfit(d, m, NULL) != UNFIT_NONE) {
		record__fail_unfit(d, m);
		return OFFER_GONE;
	}
	if (c.capped) {
		/*
		 * The tier it waits for holds the messages behind it as well
		 * (they are newer and mostly untried there): stop here rather
		 * than rotate the whole window at every pump.
		 */
		ring_push_front(&d->loaded, &m);
		return OFFER_HOLD;
	}
	if (untried_up(d, m)) {
		ring_push_back(&d->loaded, &m);
		return OFFER_ROTATE;
	}
	if (expired(d, m))
		record__fail_expired(d, m);
	else if (!usable_fits(d, m))
		park(d, m); /* nobody up can carry it: no round, it waits */
	else
		record__backoff(d, m);
	return OFFER_GONE;
}

static void
pump(struct dispatcher *d)
{
	size_t spins = 0;
	int r = OFFER_GONE;

	if (d->paused || d->pumping || dispatch_held(d))
		return;
	d->pumping = true;
	while (d->loaded.len > 0 && scheduler_count(d->sched) > 0 &&
	       spins <= d->loaded.len && r != OFFER_HOLD) {
		struct store_message *m;

		ring_pop_front(&d->loaded, &m);
		r = offer(d, m);
		spins = r == OFFER_GONE ? 0 : spins + 1;
	}
	refill(d);
	d->pumping = false;
}

static void
pump_cb(evutil_socket_t fd, short what, void *arg)
{
	pump(arg);
}

/* --- events ---------------------------------------------------------- */

void
dispatcher_set_events(struct dispatcher *d, struct events *ev)
{
	d->events = ev;
}

struct events *
dispatcher_events(const struct dispatcher *d)
{
	return d->events;
}

void
dispatch__message_rec(struct ev_rec *r, int type, const char *id,
		      const char *provider, int outcome, int attempt,
		      const char *text, const char *pmid)
{
	memset(r, 0, sizeof(*r));
	r->type = type;
	snprintf(r->id, sizeof(r->id), "%s", id);
	snprintf(r->provider, sizeof(r->provider), "%s",
		 provider != NULL ? provider : "");
	r->outcome = outcome;
	r->attempt = attempt;
	r->text = text;
	r->pmid = pmid;
}

void
dispatch__publish_message(struct dispatcher *d, int type, const char *id,
			  const char *provider, int outcome, int attempt,
			  const char *text, const char *pmid)
{
	struct ev_rec r;

	if (d->events == NULL)
		return;
	dispatch__message_rec(&r, type, id, provider, outcome, attempt, text,
			      pmid);
	events_publish(d->events, &r);
}

/* --- results and timeouts -------------------------------------------- */

void
dispatcher_result_after(struct dispatcher *d, struct provider *p,
			uint64_t job_id, const char *message_id, int outcome,
			const char *pmid, const char *detail,
			uint32_t retry_after_ms)
{
	struct job *j = jobs__find(&d->jobs, job_id);

	if (j == NULL || j->p != p) {
		/*
		 * Late result of a job already requeued (the agent was
		 * declared down, or the job timed out), or a confused agent.
		 * The `lost` attempt already records the possible duplicate;
		 * this line says whether the provider did send it, under the
		 * message's id.  Rate-limited: an agent may send any number.
		 */
		(void)log_warnx_rl(
		    &d->late_rl, 100,
		    "%s dispatch late_result provider=%s job=%" PRIu64
		    " outcome=%s duplicate_possible=%s",
		    id_valid(message_id) ? message_id : "-", p->name, job_id,
		    outcome_name(outcome),
		    outcome == OUTCOME_DELIVERED ? "yes" : "no");
		return;
	}
	if (strcmp(j->m->id, message_id) != 0) {
		log_warnx("%s dispatch agent %s answered job=%" PRIu64
			  " with another message id",
			  j->m->id, p->name, job_id);
		return;
	}
	record__release(d, j);
	j->m->attempts = j->n;
	/* An outcome no agent may report (lost) is provider-caused. */
	if (outcome < 0 || outcome > OUTCOME_MAX || outcome == OUTCOME_LOST)
		outcome = OUTCOME_TRANSIENT;
	record__result(d, j, p, outcome, pmid, detail, retry_after_ms);
	dispatch__refresh(d, p);
	dispatch__schedule_pump(d);
}

void
dispatcher_result(struct dispatcher *d, struct provider *p, uint64_t job_id,
		  const char *message_id, int outcome, const char *pmid,
		  const char *detail)
{
	dispatcher_result_after(d, p, job_id, message_id, outcome, pmid, detail,
				0);
}

/*
 * job_timeout_s: the sent jobs are in order of their deadline, so one
 * timer for the first one serves them all.
 */
static void
timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dispatcher *d = arg;
	int64_t now = mono_ms();

	while (d->thead != NULL && d->thead->deadline_ms <= now) {
		struct job *j = d->thead;
		struct provider *p = j->p;

		log_warnx("%s dispatch job_timeout provider=%s job=%" PRIu64
			  " after_s=%d",
			  j->m->id, p->name, j->id, d->cfg->job_timeout_s);
		record__lost(d, j, "no result");
		dispatch__provider_failure(d, p);
		dispatch__refresh(d, p);
	}
	record__arm_timeout(d);
	dispatch__schedule_pump(d);
}

/* --- life cycle ------------------------------------------------------ */

struct dispatcher *
dispatcher_new(struct event_base *base, const struct config *cfg,
	       struct store *st, struct registry *reg)
{
	struct dispatcher *d = xcalloc(1, sizeof(*d));
	const struct scheduler_ops *ops = scheduler_lookup(cfg->scheduler);

	if (ops == NULL)
		fatalx("unknown scheduler %s", cfg->scheduler);
	d->base = base;
	d->cfg = cfg;
	d->learned_limit_ms = DISPATCH_LEARNED_LIMIT_MS;
	d->st = st;
	d->reg = reg;
	d->sched = scheduler_new(ops, rand64());
	d->tiers = strcmp(ops->name, "priority") == 0;
	ring_init(&d->ready, sizeof(int64_t));
	ring_init(&d->loaded, sizeof(struct store_message *));
	ring_init(&d->parked, sizeof(struct parked));
	d->delay_ev = dispatch__xevent_new(base, delay_cb, d);
	d->park_ev = dispatch__xevent_new(base, park_cb, d);
	d->pump_ev = dispatch__xevent_new(base, pump_cb, d);
	d->timeout_ev = dispatch__xevent_new(base, timeout_cb, d);
	d->retry_ev = dispatch__xevent_new(base, record__retry_cb, d);
	d->housekeep_ev = dispatch__xevent_new(base, dispatch__housekeep_cb, d);
	d->grace_ev = dispatch__xevent_new(base, grace_cb, d);
	return d;
}

static void
scan_each(void *arg, int64_t rowid, int64_t next_ms)
{
	struct dispatcher *d = arg;

	if (!due_now(d, next_ms, now_ms()))
		delay__push(&d->heap, next_ms, rowid);
	else
		ring_push_back(&d->ready, &rowid);
}

int
dispatcher_load(struct dispatcher *d)
{
	int rc = store_scan(d->st, scan_each, d, d->counts);

	if (rc != 0)
		return rc;
	dispatch__arm_delay(d);
	dispatch__timer_start(d->housekeep_ev, 0);
	if (d->cfg->max_dynamic_providers > 0)
		dispatch__grace_begin(d, DISPATCH_REGISTER_GRACE_MS);
	log_info("- dispatch loaded queued=%" PRId64 " delayed=%zu "
		 "delivered=%" PRId64 " failed=%" PRId64,
		 d->counts[MSG_QUEUED], d->heap.n, d->counts[MSG_DELIVERED],
		 d->counts[MSG_FAILED]);
	return 0;
}

void
dispatcher_free(struct dispatcher *d)
{
	struct store_message *m;
	struct job *j;
	size_t i, n;

	if (d == NULL)
		return;
	n = registry_count(d->reg);
	for (i = 0; i < n; i++) {
		struct provider *p = registry_at(d->reg, i);
		while (p->jobs != NULL) {
			j = p->jobs;
			record__release(d, j);
			store_message_free(j->m);
			record__job_free(d, j);
		}
	}
	while ((j = d->rhead) != NULL) {
		d->rhead = j->tnext;
		store_message_free(j->m);
		record__job_free(d, j);
	}
	while (ring_pop_front(&d->loaded, &m))
		store_message_free(m);
	ring_cleanup(&d->loaded);
	ring_cleanup(&d->ready);
	ring_cleanup(&d->parked);
	delay__cleanup(&d->heap);
	jobs__cleanup(&d->jobs);
	event_free(d->delay_ev);
	event_free(d->park_ev);
	event_free(d->pump_ev);
	event_free(d->timeout_ev);
	event_free(d->retry_ev);
	event_free(d->housekeep_ev);
	event_free(d->grace_ev);
	scheduler_free(d->sched);
	free(d);
}

/* A new message is durable: its log line and its event. */
static void
stored_note(struct dispatcher *d, const struct store_message *m)
{
	log_info("%s intake queued bytes=%zu rcpt=%zu", m->id, m->mime_len,
		 m->nrcpt);
	dispatch__publish_message(d, EV_MSG_QUEUED, m->id, NULL, -1, 0, NULL,
				  NULL);
}

/*
 * Before a new message waits for a provider: one that no provider known
 * (configured or registered, in any state) can carry fails at once rather
 * than at its TTL.  Not while writes are held: the store is not asked for
 * more then, and the pump's offer() says the same once it runs.
 */
static bool
fail_if_unfit(struct dispatcher *d, struct store_message *m)
{
	const char *why;

	if (d->paused || hold_state(d, &why) != HOLD_NONE ||
	    dispatch__unfit(d, m, NULL) == UNFIT_NONE)
		return false;
	record__fail_unfit(d, m);
	return true;
}

void
dispatcher_enqueue(struct dispatcher *d, struct store_message *m)
{
	d->counts[MSG_QUEUED]++;
	stored_note(d, m);
	need_note(m);
	if (fail_if_unfit(d, m)) {
		dispatch__schedule_pump(d);
		return;
	}
	if (d->loaded.len < LOADED_MAX && d->ready.len == 0) {
		ring_push_back(&d->loaded, &m);
	} else {
		ring_push_back(&d->ready, &m->rowid);
		store_message_free(m);
	}
	dispatch__schedule_pump(d);
}

struct job *
dispatcher_claim(struct dispatcher *d, struct store_message *m)
{
	struct pick_ctx c = {.m = m};
	struct sched_entry *e;
	const char *why;

	/* Never ahead of a message that waits, nor while writes wait. */
	if (d->paused || d->loaded.len > 0 || d->ready.len > 0 || d->loading ||
	    hold_state(d, &why) != HOLD_NONE || scheduler_count(d->sched) == 0)
		return NULL;
	need_note(m);
	tier_cap(d, &c);
	e = scheduler_pick(d->sched, skip_entry, &c);
	if (e == NULL)
		return NULL;
	return record__claim(d, m, entry_provider(e));
}

void
dispatcher_claim_durable(struct dispatcher *d, struct job *claim,
			 struct store_message *m)
{
	/* Queued and sending at once: its queued note, then the JOB. */
	stored_note(d, m);
	record__claim_durable(d, claim, m);
}

void
dispatcher_claim_cancel(struct dispatcher *d, struct job *claim)
{
	record__claim_cancel(d, claim);
}

void
dispatcher_retried(struct dispatcher *d, int64_t rowid, const char *id)
{
	/* The store moved it failed -> queued durably: memory follows. */
	record__count_move(d, MSG_FAILED, MSG_QUEUED);
	log_info("%s dispatch retried", id);
	dispatch__publish_message(d, EV_MSG_QUEUED, id, NULL, -1, 0, NULL,
				  NULL);
	/* Loaded like any queued message when its turn comes. */
	ring_push_back(&d->ready, &rowid);
	dispatch__schedule_pump(d);
}

void
dispatcher_pause(struct dispatcher *d)
{
	d->paused = true;
}

unsigned
dispatcher_in_flight(const struct dispatcher *d)
{
	return (unsigned)d->nheld;
}

void
dispatcher_counts(const struct dispatcher *d, int64_t counts[4])
{
	memcpy(counts, d->counts, sizeof(d->counts));
}

void
dispatcher_queue_sizes(const struct dispatcher *d, uint64_t *ready,
		       uint64_t *loaded, uint64_t *delayed, uint64_t *parked)
{
	*ready = d->ready.len;
	*parked = d->parked.len;
	*loaded = d->loaded.len;
	*delayed = d->heap.n;
}
