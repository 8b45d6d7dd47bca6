/*
 * The registry: every provider the server knows, from its configuration
 * or registered on the fly by an agent that proved the secret, with the
 * state the dispatcher schedules by.  The registry is the container; the
 * dispatcher drives the transitions, because each one moves messages.
 *
 * State machine (one function, provider_set_state in dispatcher.c, makes
 * every transition and logs it):
 *
 *   DOWN --first good heartbeat of a linked agent--> UP
 *   UP --link dropped | heartbeat timeout | agent reports down
 *        | circuit breaker opens | an `account` outcome--> DOWN
 *   UP --a `throttled` outcome--> PAUSED --the pause ends--> UP
 *   PAUSED --link dropped | heartbeat timeout | agent reports down--> DOWN
 *
 * A provider down for an account fault (account_down) comes back only on
 * a heartbeat that does not say `down`: its agent reports `down` until its
 * probe passes (docs/internals/dispatch.md).  A paused provider keeps its
 * jobs in flight and takes no new ones until paused_until.
 *
 * "disabled" (an operator's drain) is a flag beside the state: a disabled
 * provider keeps its link and heartbeats but gets no new messages.  The
 * circuit breaker opens after breaker_threshold consecutive provider-caused
 * failures; after breaker_cooldown_ms it lets one trial message through
 * (half-open), and closes on its success or opens again on its failure.
 *
 * The registry owns the providers; each holds a non-owning pointer to its
 * agent's link (owned by the agent port).  Providers are never removed:
 * one that registered on the fly stays listed (down) after its agent goes.
 */
#ifndef SHIVNERI_REGISTRY_H
#define SHIVNERI_REGISTRY_H

#include "common/hist.h"
#include "dispatch/scheduler.h"
#include "link/link.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct config;
struct event_base;
struct link_conn;
struct job;
struct dispatcher;

enum provider_state {
	PROVIDER_DOWN = 0,
	PROVIDER_UP = 1,
	PROVIDER_PAUSED = 2, /* throttled: back by itself at paused_until */
};

enum breaker_state {
	BREAKER_CLOSED = 0,
	BREAKER_OPEN = 1,
	BREAKER_HALF_OPEN = 2,
};

struct provider {
	struct sched_entry se; /* se.name == name */
	char *name;
	char *type;
	bool configured;  /* named in the server's file */
	bool spawn;       /* supervised by this server */
	bool disabled;    /* operator's drain */
	int state;        /* enum provider_state */
	char reason[128]; /* why it went down; "" while up */
	int health;       /* last reported, enum link_health */
	int max_in_flight;
	int rate_per_s;
	int slow_start_s;        /* a returning provider's ramp */
	bool overflow;           /* a lower tier may take its burst */
	bool blocking;           /* full, no overflow: holds lower tiers */
	bool ever_up;            /* the first up is not a return */
	int64_t ramp_start_mono; /* 0: no ramp under way */
	/*
	 * As the agent said in HELLO (0: unknown): shown, never acted on.  A
	 * remote agent's pid names a process on its host, or nothing at all.
	 */
	int64_t agent_pid;
	bool link_tls; /* the link it came on runs over TLS (link_tls.h) */
	/* Its agent's link revision, from HELLO (1: older than 5): what it
	 * answers needs_smtputf8 for (dispatch__needs_utf8). */
	uint32_t agent_revision;
	/*
	 * Size routing (dispatcher.c, docs/internals/dispatch.md): the
	 * largest message this provider is offered, the limit in force.
	 * file_max_bytes is what each registration starts from (its
	 * [provider.NAME] max_message_bytes or its type's limit, else the
	 * server's); the agent's HELLO may lower it, which gives
	 * registered_max_bytes.  A too_large answer lowers the limit in force
	 * below the refused size for DISPATCH_LEARNED_LIMIT_MS (a learned
	 * limit: limit_learned_until_ms, wall clock for the API, and
	 * limit_timer); then, or at the next registration, it is
	 * registered_max_bytes again.  Never above the server's
	 * max_message_bytes.
	 */
	uint64_t max_message_bytes;
	uint64_t file_max_bytes;
	uint64_t registered_max_bytes;
	int64_t limit_learned_until_ms; /* 0: the registration's in force */
	struct event *limit_timer;
	/*
	 * SMTPUTF8 routing, learned the same way: a needs_smtputf8 answer (a
	 * smarthost without SMTPUTF8 refused a non-ASCII address) keeps
	 * messages with one away from p until this time (wall clock, for the
	 * API; 0: none) or its next registration, by utf8_timer.
	 */
	int64_t utf8_refused_until_ms;
	struct event *utf8_timer;
	/* dispatch__usable() when dispatch__refresh() last looked: its
	 * turn to true sends the parked messages p fits back. */
	bool was_usable;
	/*
	 * What p could carry when it last walked the parked ring, and the
	 * dispatcher's count of parks then (park_gen; 0: never walked).
	 * While both are the same, no parked message fits p (those that did
	 * went back then), so dispatch__unpark() skips the walk.
	 */
	struct {
		uint64_t park_gen;
		uint64_t max_bytes;
		uint32_t revision;
		bool utf8_refused;
	} unparked;
	struct link_conn *conn;      /* the agent's link, NULL when none */
	int64_t link_refused_until;  /* mono ms: a flooding agent's penalty */
	int64_t last_heartbeat_mono; /* 0: never */
	uint64_t delivered, failed, lost;
	/*
	 * For /metrics, counted once the store write is durable: attempts
	 * by enum outcome, and messages that ended here delivered or failed.
	 */
	uint64_t attempts_by_outcome[OUTCOME_MAX + 1];
	uint64_t msgs_delivered, msgs_failed;
	struct hist send_hist;     /* JOB sent -> RESULT */
	struct hist delivery_hist; /* stored -> delivery durable */
	/* breaker */
	int breaker;
	int consecutive_failures;
	int breaker_cooldown_ms;
	int64_t breaker_due_mono; /* when the armed breaker timer fires */
	struct event *breaker_timer;
	/* rate limit: a token bucket refilled at rate_per_s */
	double tokens;
	int64_t tokens_mono_us;
	struct event *rate_timer;
	/* heartbeat watchdog */
	struct event *hb_timer;
	/* throttled: the pause and its length for the next doubling */
	struct event *pause_timer;
	int64_t paused_until_ms; /* wall clock, for the API; 0: none */
	int64_t pause_end_mono;  /* mono ms */
	int throttle_ms;         /* last pause without Retry-After; 0: none */
	bool account_down;       /* down for an account fault until a probe */
	uint64_t throttled;
	/* jobs in flight at this provider (the dispatcher's) */
	struct job *jobs;
	/* Sum of the message sizes of those jobs: what the server holds for
	 * it, capped by max_in_flight_bytes (limits.c). */
	uint64_t bytes_in_flight;
	struct dispatcher *dispatcher; /* for its timers' callbacks */
};

struct registry;

struct registry *registry_new(struct event_base *base,
			      const struct config *cfg);
void registry_free(struct registry *r);
size_t registry_count(const struct registry *r);
struct provider *registry_at(struct registry *r, size_t i);
struct provider *registry_find(struct registry *r, const char *name);
/*
 * Adds a provider registered on the fly (weight 1, priority 100 unless
 * the agent said other; overflow as the scheduler's default).
 */
struct provider *registry_add(struct registry *r, const char *name,
			      const char *type, int weight, int priority,
			      int max_in_flight);
/*
 * An agent of p registered: p's limit starts again from file_max_bytes,
 * lowered to what the agent announced (announced 0: it said nothing); a
 * learned limit (a too_large answer's) is forgotten, with its
 * provider.limit_restored event (dispatch__provider_limit_restore).
 */
void registry_set_announced(struct provider *p, uint64_t announced);
/* Providers registered on the fly (not named in the file). */
size_t registry_dynamic_count(const struct registry *r);
/*
 * The default of a provider's overflow under a scheduler: no under
 * "priority" (a burst waits for the tier it was meant for), yes elsewhere.
 */
bool registry_default_overflow(const char *scheduler);
/* "up" | "paused" | "down" for an enum provider_state. */
const char *provider_state_word(int state);
/* As the API shows it: the state, or "disabled" for a drained one. */
const char *provider_state_name(const struct provider *p);
const char *provider_health_name(const struct provider *p);
/* Up (not counting disabled), for /readyz. */
bool registry_any_up(const struct registry *r);

#endif
