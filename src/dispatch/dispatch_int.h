/*
 * Internal to src/dispatch/: the dispatcher's containers (jobs.c: the job
 * table by id and the backoff heap), the circuit breaker (breaker.c) and
 * the limits
 * on how much a provider may take (limits.c: max_in_flight, slow start and
 * the rate_per_s token bucket).  Both work on the fields of struct provider
 * (registry.h) and know nothing of messages, the store or the event loop,
 * so the dispatcher's eligibility test can stay a pure function of the
 * provider: every change of state happens in an explicit step (a failure,
 * a success, a tick), never inside a predicate.  The dispatcher owns the
 * timers and arms them from what these functions return.
 */
#ifndef SHIVNERI_DISPATCH_INT_H
#define SHIVNERI_DISPATCH_INT_H

#include "common/log.h"
#include "dispatch/ring.h"
#include "link/link.h"
#include "store/store.h"

#include <event2/event.h>
#include <event2/util.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct event;
struct event_base;
struct provider;
struct registry;
struct scheduler;

/*
 * A message the dispatcher holds outside its queues: reserved at a
 * provider, in flight there, or waiting for a state change of it to become
 * durable.  The stages:
 */
enum job_stage {
	JOB_RESERVED, /* a slot at p is held; its `sending` write is pending;
			 no JOB has been written yet */
	JOB_SENT,     /* the JOB is written; waiting for a RESULT (in the
			 job table and the timeout list) */
	JOB_WRITING,  /* a state change (requeue, backoff, final) pending */
	JOB_RETRY,    /* that change failed; it waits in the retry list */
};

/* The state change a job carries to the store, and what follows it. */
enum job_write {
	WRITE_SENDING, /* queued -> sending; then the JOB goes out */
	WRITE_REQUEUE, /* -> queued; then the front of the window */
	WRITE_BACKOFF, /* -> queued with next_ms; then the backoff heap */
	WRITE_FINAL,   /* -> delivered or failed; then m is freed */
};

/*
 * The strings are copied in (the agent's RESULT dies when the call
 * returns) and sized by the link's caps, so that a failed write can be
 * issued again without an allocation.
 */
struct job {
	uint64_t id;
	int n;        /* attempt number */
	int stage;    /* enum job_stage */
	int write;    /* enum job_write */
	int status;   /* what the write sets (enum msg_status) */
	int from;     /* where memory counts m until the write is durable */
	bool retried; /* counted in the dispatcher's failed writes */
	int damaged;  /* tries of the write that found its row damaged */
	bool trial;   /* reserved at a half-open breaker: its failure is
			 the provider's, and free for the message */
	struct store_message *m;
	struct dispatcher *d;
	struct provider
	    *p; /* holding a slot there (RESERVED, SENT), else NULL */
	const char *pname;   /* its provider's name (providers live for ever) */
	int64_t deadline_ms; /* SENT: mono time of the job timeout */
	uint64_t bytes;      /* counted in p->bytes_in_flight while held */
	struct job *hnext;   /* job table chain */
	struct job *pprev, *pnext; /* the provider's jobs */
	struct job *tprev, *tnext; /* timeout list, or retry list (tnext) */
	/* The write. */
	bool has_attempt;
	int outcome;
	int64_t at_ms;
	/* Keep the buffers last: job_new() zeroes only what precedes pmid. */
	char pmid[LINK_PMID_MAX + 1];
	char detail[LINK_DETAIL_MAX + 1];
	char error[LINK_DETAIL_MAX + LINK_NAME_MAX + 64];
};

/* The jobs in flight (SENT), by id, for the agents' RESULTs. */
struct job_table {
	struct job **v;
	size_t n, nbuckets;
};

void jobs__insert(struct job_table *t, struct job *j);
/* NULL when no job has that id. */
struct job *jobs__find(const struct job_table *t, uint64_t id);
/* j must be in t. */
void jobs__remove(struct job_table *t, struct job *j);
void jobs__cleanup(struct job_table *t);

/* Messages backing off: a min-heap of (due, rowid). */
struct delay_item {
	int64_t due_ms;
	int64_t rowid;
};

struct delay_heap {
	struct delay_item *v;
	size_t n, cap;
};

void delay__push(struct delay_heap *h, int64_t due_ms, int64_t rowid);
/* h must not be empty. */
void delay__pop(struct delay_heap *h);
void delay__cleanup(struct delay_heap *h);

/* The longest a breaker stays open before its half-open trial. */
#define BREAKER_MAX_COOLDOWN_MS (5 * 60 * 1000)
/*
 * The longest it stays open while no provider is up (or the configured
 * first cool-down, if longer): then its wait is the whole backlog's, and a
 * provider back after a long outage must not sit out five more minutes.
 */
#define BREAKER_ALONE_COOLDOWN_MS (30 * 1000)

/* Sets the first cool-down of a provider that never had one. */
void breaker__init(struct provider *p, int cooldown_ms);
/*
 * A provider-caused failure.  True when the breaker has just opened (after
 * threshold consecutive failures, or at once while half-open, then with
 * the cool-down doubled up to BREAKER_MAX_COOLDOWN_MS): the caller takes
 * the provider down and arms the breaker timer for p->breaker_cooldown_ms.
 */
bool breaker__failure(struct provider *p, int threshold)
    __attribute__((warn_unused_result));
/* The provider worked (it delivered, or refused the message itself). */
void breaker__success(struct provider *p, int cooldown_ms);
/* The cool-down ran out: open becomes half-open.  True if it changed. */
bool breaker__half_open(struct provider *p);
/* Not open: the provider may take messages (one while half-open). */
bool breaker__allows(const struct provider *p);

/*
 * How many messages p may hold at mono time now_ms: one while the breaker
 * is half-open; during a slow-start ramp a share of max_in_flight growing
 * linearly from 1; else max_in_flight.  Pure.
 */
unsigned limits__max_in_flight(const struct provider *p, int64_t now_ms);
/* A returning provider starts its slow-start ramp (if it has one). */
void limits__ramp_start(struct provider *p, int64_t now_ms);
/*
 * Brings p's limits to mono time now_us: refills the token bucket and
 * ends a ramp that has run its course.  The one step that changes them
 * with time.
 */
void limits__tick(struct provider *p, int64_t now_us);
/*
 * p holds fewer than cap message bytes (max_in_flight_bytes), so it may
 * take one more: what the server holds for one provider stays under cap
 * plus one message, whatever the agent claims.  Pure.
 */
bool limits__bytes_ok(const struct provider *p, int64_t cap);
/* A token is there (or p has no rate limit).  Pure. */
bool limits__rate_ok(const struct provider *p);
/* Microseconds until the next token (0 when one is there).  Pure. */
int64_t limits__rate_wait_us(const struct provider *p);
/* A message was handed to p: it spends a token. */
void limits__take(struct provider *p);

#define LOAD_BATCH 256 /* rowids per store_load */

/*
 * The dispatcher's state, shared by dispatcher.c (the pump, providers,
 * results) and record.c (the writes that make each step durable).
 */
struct dispatcher {
	struct event_base *base;
	const struct config *cfg;
	struct store *st;
	struct registry *reg;
	struct events *events; /* NULL: nobody listens */
	bool webhooks;         /* final outcomes get an outbox row (record.c) */
	struct scheduler *sched;
	bool tiers;         /* the priority scheduler: overflow applies */
	struct ring ready;  /* int64_t rowids */
	struct ring loaded; /* struct store_message * */
	/*
	 * struct parked: messages no usable provider can carry (size,
	 * SMTPUTF8) while one known could; they wait, as for a provider when
	 * none is up, and go back to ready when one that fits turns usable or
	 * its limit rises (dispatch__unpark), not by a backoff's clock; or
	 * when message_ttl_s is spent (park_ev, at the earliest parked_due_ms,
	 * wall clock), to fail as expired.
	 */
	struct ring parked;
	struct event *park_ev;
	int64_t parked_due_ms;  /* what park_ev is armed for; 0: not armed */
	int64_t park_scan_mono; /* mono_ms() of park_cb's last scan, or 0 */
	uint64_t park_scans;    /* park_cb's scans of the ring (tests) */
	uint64_t park_visits;   /* entries unpark_where() looked at (tests) */
	uint64_t park_gen;      /* park() calls: provider.unparked */
	struct delay_heap heap;
	struct event *delay_ev;
	struct event *pump_ev;
	bool loading;
	int64_t load_ids[LOAD_BATCH]; /* the batch store_load is reading */
	size_t nload;
	bool paused;
	bool pumping;
	bool held_logged; /* "dispatch held" said once per episode */
	uint64_t next_job_id;
	struct job_table jobs; /* SENT jobs by id */
	size_t nheld;          /* every job alive */
	size_t nblocking;      /* providers with p->blocking */
	/* Sent jobs in order of their deadline (job_timeout_s is fixed). */
	struct job *thead, *ttail;
	struct event *timeout_ev;
	/* Writes that failed, in order; issued again by retry_ev. */
	struct job *rhead, *rtail;
	size_t nretry;            /* failed writes not yet durable */
	int write_failures;       /* in a row, for the retry backoff */
	struct log_rl damaged_rl; /* damaged_row (record.c) */
	struct log_rl late_rl;    /* late_result (dispatcher.c) */
	struct event *retry_ev;
	struct event *housekeep_ev;
	bool housekeeping;
	int64_t counts[MSG_NSTATUS];
	/* How long a too_large answer's limit holds: DISPATCH_LEARNED_LIMIT_MS
	 * (the unit tests shorten it). */
	int64_t learned_limit_ms;
	/*
	 * The start's grace (dispatch__grace_begin): while it lasts
	 * (grace_until_mono != 0), no message is judged unfit.  The
	 * providers that agents register on the fly are not known again
	 * after a restart until their agents are back, and a message only
	 * one of them can carry would otherwise fail before they are.
	 */
	int64_t grace_until_mono;
	struct event *grace_ev;
};

/* dispatcher.c */
void dispatch__schedule_pump(struct dispatcher *d);
/* event_new() for a timer; out of memory is fatal, as xmalloc. */
struct event *dispatch__xevent_new(struct event_base *base,
				   event_callback_fn cb, void *arg);
/* A provider's rate window moved: its place and the pump (rate_timer). */
void dispatch__rate_cb(evutil_socket_t fd, short what, void *arg);
/* Brings p's place in the scheduler up to date after any change. */
void dispatch__refresh(struct dispatcher *d, struct provider *p);
/* Linked, up, enabled and breaker not open (full or not). */
bool dispatch__usable(const struct provider *p);

/*
 * Routing by what a provider can carry (dispatcher.c): p's limit takes m
 * (m->mime_len at most p->max_message_bytes), and m needs no SMTPUTF8 or
 * p has not refused it lately.
 */
bool dispatch__fits(const struct provider *p, const struct store_message *m);
/*
 * Whether p's agent refuses m where SMTPUTF8 is lacking: an agent of
 * revision 5 or later (LINK_REVISION_ALABELS) sends a non-ASCII domain as
 * its A-labels, so only an address with no ASCII form (a non-ASCII local
 * part, common/envelope.h); an older one, any non-ASCII address.
 */
bool dispatch__needs_utf8(const struct provider *p,
			  const struct store_message *m);
/*
 * The parked messages p can carry go back to ready, the pump scheduled:
 * when p turns usable (dispatch__refresh) or its limit rises (a learned
 * limit or an SMTPUTF8 refusal ends).  Nothing while p is not usable.
 */
void dispatch__unpark(struct dispatcher *d, struct provider *p);
/* Why no provider known can carry a message (dispatch__unfit). */
enum unfit {
	UNFIT_NONE, /* some provider can, none is known yet, or the
		     * start's grace lasts: wait */
	UNFIT_SIZE, /* over every provider's limit (*largest: the largest) */
	UNFIT_UTF8, /* every provider it fits has refused SMTPUTF8 lately */
};
/*
 * Whether some provider known (configured or registered, in any state)
 * can carry m; *largest (when not NULL): the largest size limit.
 */
int dispatch__unfit(struct dispatcher *d, const struct store_message *m,
		    uint64_t *largest);

/* provider_state.c */
/* A provider-caused failure: the breaker may take p down. */
void dispatch__provider_failure(struct dispatcher *d, struct provider *p);
/* Throttled: p pauses (Retry-After, else doubling from 1 s to 60 s). */
#define THROTTLE_BASE_MS 1000
#define THROTTLE_MAX_MS 60000
void dispatch__provider_throttled(struct dispatcher *d, struct provider *p,
				  uint32_t retry_after_ms, const char *detail);
/* An account fault: p is down until its agent's probe passes. */
void dispatch__provider_account(struct dispatcher *d, struct provider *p,
				const char *detail);
/*
 * A too_large answer for a message of bytes: p's limit drops below that
 * size (unless it is already) for d->learned_limit_ms, then goes back to
 * p->registered_max_bytes, said once in the log; the next refusal lowers
 * it again.  An hour: one misjudged 413 (a proxy in front of the provider
 * having a bad minute) no longer shrinks a provider until its agent
 * restarts, days maybe, while a provider whose real limit is lower costs
 * at most one refused upload of each size an hour, free for the message
 * (it goes elsewhere at once, the try not counted).
 */
#define DISPATCH_LEARNED_LIMIT_MS (60 * 60 * 1000)
/*
 * How long after a start no message is judged unfit, when agents may
 * register providers on the fly (max_dynamic_providers > 0): an agent
 * retries its link at least every 5 s (agent.c), so its provider is back
 * well within this.
 */
#define DISPATCH_REGISTER_GRACE_MS (30 * 1000)
/*
 * Starts the grace for ms (dispatcher_load, with the above), or ends it
 * now when ms <= 0.  At its end the parked messages that no provider
 * known can carry go back to the pump, to fail as unfit.
 */
void dispatch__grace_begin(struct dispatcher *d, int64_t ms);
void dispatch__provider_too_large(struct dispatcher *d, struct provider *p,
				  size_t bytes);
/*
 * A needs_smtputf8 answer: messages p's agent would refuse again
 * (dispatch__needs_utf8) stay away from p for d->learned_limit_ms (the same
 * hour, for the same reasons), or until its agent registers again; said once in
 * the log each way.
 */
void dispatch__provider_no_utf8(struct dispatcher *d, struct provider *p);
/*
 * p's learned limit ends, its time over (why "expired") or its agent
 * registered again ("registered"): p's limit is registered_max_bytes
 * again, its timer stopped, said in one log line (limit_restored) and a
 * provider.limit_restored event, so that the event stream and webhooks
 * never show a lowered limit that is gone.  Nothing when no limit is
 * learned.  Neither refreshes p's routing nor pumps: the caller does.
 */
void dispatch__provider_limit_restore(struct provider *p, const char *why);

/* dispatcher.c */
void dispatch__arm_delay(struct dispatcher *d);
/* Starts (or restarts) a one-shot timer; a failure is fatal (our bug). */
void dispatch__timer_start(struct event *ev, int64_t ms);
void dispatch__timer_start_us(struct event *ev, int64_t us);

/* record.c: every step of a message made durable before it is acted on */
bool record__tried_contains(const char *tried, const char *name);
void record__count_move(struct dispatcher *d, int from, int to);
/* Fills r as a message event (events.h); the strings are borrowed. */
struct ev_rec;
void dispatch__message_rec(struct ev_rec *r, int type, const char *id,
			   const char *provider, int outcome, int attempt,
			   const char *text, const char *pmid);
/* Publishes a message event (events.h) when a hub is set. */
void dispatch__publish_message(struct dispatcher *d, int type, const char *id,
			       const char *provider, int outcome, int attempt,
			       const char *text, const char *pmid);
/* Reserves a slot at p for m (takes m) and queues the `sending` write;
 * the JOB is written when that write is durable. */
void record__send(struct dispatcher *d, struct store_message *m,
		  struct provider *p);
/* The intake's fast path (dispatcher_claim): see record.c. */
struct job *record__claim(struct dispatcher *d, struct store_message *m,
			  struct provider *p);
void record__claim_durable(struct dispatcher *d, struct job *j,
			   struct store_message *m);
void record__claim_cancel(struct dispatcher *d, struct job *j);
/* The agent's verdict on a sent job, already released. */
void record__result(struct dispatcher *d, struct job *j, struct provider *p,
		    int outcome, const char *pmid, const char *detail,
		    uint32_t retry_after_ms);
/* A sent job that will get no answer: requeued (or failed) as lost. */
void record__lost(struct dispatcher *d, struct job *j, const char *why);
/* Gives j's slot at its provider back; the caller refreshes it. */
void record__release(struct dispatcher *d, struct job *j);
void record__job_free(struct dispatcher *d, struct job *j);
/* m ends its round (takes m). */
void record__backoff(struct dispatcher *d, struct store_message *m);
/* m's TTL is spent and its round is over (takes m). */
void record__fail_expired(struct dispatcher *d, struct store_message *m);
/* No provider known can carry m (dispatch__unfit): failed at once, with
 * why in its error (takes m). */
void record__fail_unfit(struct dispatcher *d, struct store_message *m);
/* A corrupt row store_load handed back failed: failed on disk (takes m). */
void record__fail_corrupt(struct dispatcher *d, struct store_message *m);
void record__arm_timeout(struct dispatcher *d);
/* A write or load failed: the pump is held for a backoff. */
void record__hold(struct dispatcher *d);
void record__retry_cb(evutil_socket_t fd, short what, void *arg);
/* housekeep.c: the store's pruning, once at start and every 5 min. */
void dispatch__housekeep_cb(evutil_socket_t fd, short what, void *arg);

#endif
