/*
 * The body of a webhook (docs/webhooks.md): one event of the hub, as
 * GET /v1/events shows it, with a webhook_id in place of the hub's seq,
 * so that the record (a message's final outcome, written into the outbox
 * in the same transaction as the outcome) and the webhook sender (provider
 * state changes, from the hub) write one shape:
 *
 *   {"webhook_id":"01J...","type":"message.delivered","at":"...",
 *    "id":"01J...","provider":"a","attempts":1,"provider_message_id":"x"}
 *
 * webhook_id is a new ULID per webhook (never the hub's seq: a message's
 * outcome is written before the hub numbers it), unique across restarts:
 * receivers dedupe by it.
 */
#ifndef SHIVNERI_OUTBOX_H
#define SHIVNERI_OUTBOX_H

#include "dispatch/events.h"

#include <stdint.h>

struct buf;

/*
 * The outbox's clock: what the sender writes into a row's next_ms (a
 * retry's time, a claim's lease) and claims due rows against.  It is the
 * wall clock read once, at init, plus the monotonic time since: the times
 * must mean something after a restart (so not the monotonic clock alone),
 * but within a process they must never step.  With the wall clock, one
 * stepped back held every retry for the length of the step, and one
 * stepped forward made every retry and every lease due at once, so
 * webhooks in flight were claimed and sent a second time.  A step between
 * two runs is the store's business (store_outbox_set_horizon).  wall and
 * mono are the sources, injectable for tests (NULL: now_ms, mono_ms).
 */
struct outbox_clock {
	int64_t (*wall)(void);
	int64_t (*mono)(void);
	int64_t wall0, mono0;
};

void outbox_clock_init(struct outbox_clock *c, int64_t (*wall)(void),
		       int64_t (*mono)(void));
/* Milliseconds since the epoch, as the wall clock said at init. */
int64_t outbox_clock_now(const struct outbox_clock *c);
/*
 * A claim's age cut-off (rows created before it are dropped): on the wall
 * clock, as the store writes a row's created_ms, max_age_ms ago, but never
 * after outbox_clock_now(c), the claim's now, which the store requires of
 * it (store_outbox_claim).  A wall clock stepped forward past max_age_ms
 * would otherwise have every claim refused for the rest of the process.
 */
int64_t outbox_clock_expire_before(const struct outbox_clock *c,
				   int64_t max_age_ms);

/*
 * Appends the body of r to out (all or nothing): 0, or -E2BIG when out's
 * cap cannot hold it.
 */
int outbox_body(const struct ev_rec *r, struct buf *out)
    __attribute__((warn_unused_result));

#endif
