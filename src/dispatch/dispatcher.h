/*
 * The dispatcher: moves queued messages to providers and outcomes back
 * into the store.
 *
 * Memory is bounded whatever the queue's length: a message waiting for a
 * provider costs one rowid in a ring (or a (due, rowid) pair in the backoff
 * heap); only a bounded window of messages is held whole, loaded from the
 * store in batches as providers free up.
 *
 * Durability before action: a pick reserves the provider's slot and writes
 * `sending`; the JOB goes to the agent only once that write is on disk, so
 * after a crash every message that may have reached a provider is
 * `sending` and comes back with a "lost" attempt.  Every later change is a
 * write whose result is acted on: memory (counts, where the message is)
 * moves only when it is durable, a failed write is retried in order until
 * it is, and meanwhile, and while store_healthy() is false, no new job is
 * handed out.
 *
 * Policy (SPEC.md "Delivery, monitoring, failover"): a retry goes to a
 * provider that has not failed the message this round whenever one is up;
 * when every up provider has failed it, the round ends and the message
 * waits retry_base_ms * 2^round (capped at retry_max_ms, jittered by up to
 * a half) before a new round.  Transient failures and lost attempts alike
 * count against max_attempts; the attempt that reaches it fails the
 * message with "max_attempts reached: OUTCOME at PROVIDER: DETAIL".
 * Messages in flight at a provider that goes down, and jobs with no result
 * after job_timeout_s, are queued again at once with an attempt of outcome
 * "lost" (a timeout also counts against the provider's breaker; a late
 * RESULT is then ignored).  When no provider is up at all, messages simply
 * wait and go out the moment one comes up.
 *
 * TTL rule: a message whose message_ttl_s is spent starts no new round.
 * It is failed as expired exactly where it would otherwise back off: at
 * the pump, when no up provider (linked, up, enabled, breaker not open)
 * that it has not tried in its current round is left.  Until then it is
 * offered like any other message.  So a message whose TTL ran out while a
 * provider held it, or while nobody was up, is first offered to each up
 * provider it has not tried this round; one that waits with nobody up
 * keeps waiting.  max_attempts still bounds it.
 *
 * Priority tiers (scheduler = priority): a provider with overflow off
 * (the default there) that is up and breaker-closed but full holds the
 * messages it has not tried at its tier: no higher priority number takes
 * them until it has room, goes down, is disabled or its breaker opens.
 * With overflow = yes a full provider lets the next tier take the burst.
 */
#ifndef SHIVNERI_DISPATCHER_H
#define SHIVNERI_DISPATCHER_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct event_base;
struct events;
struct provider;
struct registry;
struct store;
struct store_message;

struct dispatcher;

struct dispatcher *dispatcher_new(struct event_base *base,
				  const struct config *cfg, struct store *st,
				  struct registry *reg);
/*
 * Start-up: loads the queue from the store (synchronous), and starts
 * housekeeping (at once, then every five minutes: idempotency keys older
 * than a day and finished messages older than retention_days are pruned,
 * and the counts follow).
 */
int dispatcher_load(struct dispatcher *d) __attribute__((warn_unused_result));
/* After store_close(): the store's last callbacks still reach d. */
void dispatcher_free(struct dispatcher *d);

/*
 * The hub the dispatcher publishes its message and provider events to
 * (events.h); NULL (the default) publishes nothing.  Not owned.
 */
void dispatcher_set_events(struct dispatcher *d, struct events *ev);
struct events *dispatcher_events(const struct dispatcher *d);

/*
 * With on, every final outcome (delivered, failed) is written with its
 * webhook (dispatch/outbox.h) into the store's outbox, in the same
 * transaction (store_update's outbox); off (the default) writes none.
 */
void dispatcher_set_webhooks(struct dispatcher *d, bool on);

/* A message the store just made durable; takes m. */
void dispatcher_enqueue(struct dispatcher *d, struct store_message *m);

/*
 * The intake's fast path.  For a message about to be stored (not yet
 * durable), when a provider can take it now and no message waits before
 * it (none loaded or to load, none in a write's retry, not paused, the
 * store healthy): reserves that provider's slot, sets m up to be stored
 * as `sending` there, and returns the claim; else NULL and m is untouched
 * (it takes the ordinary way: queued, then picked).  The insert is then
 * the message's `sending` write, one commit fewer, and the JOB leaves as
 * soon as the message is durable.  A crash in between leaves a `sending`
 * row, which the next start records as a lost attempt, as for any
 * `sending` write.  The claim ends exactly once: dispatcher_claim_durable
 * (the insert committed; takes m, instead of dispatcher_enqueue) or
 * dispatcher_claim_cancel (nothing was stored).
 */
struct job;
struct job *dispatcher_claim(struct dispatcher *d, struct store_message *m);
void dispatcher_claim_durable(struct dispatcher *d, struct job *claim,
			      struct store_message *m);
void dispatcher_claim_cancel(struct dispatcher *d, struct job *claim);
/*
 * A failed message the store just put back to queued (store_retry, once
 * durable): counted queued again, published as queued, and loaded from
 * the store in its turn.
 */
void dispatcher_retried(struct dispatcher *d, int64_t rowid, const char *id);

/* Registry events. */
void dispatcher_provider_linked(struct dispatcher *d, struct provider *p);
void dispatcher_heartbeat(struct dispatcher *d, struct provider *p, int health,
			  unsigned agent_in_flight);
/*
 * True when p's link is silent: linked, and no heartbeat came within
 * heartbeat_timeout_ms (its watchdog fired and took p down).  The agent
 * port lets a new agent of p's name replace such a link: a frozen agent,
 * or one whose host vanished without a FIN, holds its TCP connection for
 * ever, and refusing its successor kept the provider down for as long.
 */
bool dispatcher_link_silent(const struct provider *p);
/* The link is gone (p->link already NULL). */
void dispatcher_provider_unlinked(struct dispatcher *d, struct provider *p,
				  const char *why);
void dispatcher_result(struct dispatcher *d, struct provider *p,
		       uint64_t job_id, const char *message_id, int outcome,
		       const char *provider_message_id, const char *detail);
/*
 * The same with the provider's Retry-After (0: none), for a throttled
 * outcome.  The class drives the routing (docs/internals/dispatch.md):
 * throttled pauses p and does not count against max_attempts; account
 * takes p down until its agent's probe passes; ambiguous and transient
 * move the message on and count in the breaker.
 */
void dispatcher_result_after(struct dispatcher *d, struct provider *p,
			     uint64_t job_id, const char *message_id,
			     int outcome, const char *provider_message_id,
			     const char *detail, uint32_t retry_after_ms);
/* Operator's drain. */
void dispatcher_set_disabled(struct dispatcher *d, struct provider *p,
			     bool disabled);

/*
 * Stop handing out jobs (shutdown); results are still taken.  A job whose
 * `sending` write lands after this is not sent: back to queued.
 */
void dispatcher_pause(struct dispatcher *d);
/* Messages held outside the queue: reserved, in flight, or waiting for a
 * write (a failed one included) to become durable.  0 means drained. */
unsigned dispatcher_in_flight(const struct dispatcher *d);
/* Counts by status as the disk has them (store.h MSG_*). */
void dispatcher_counts(const struct dispatcher *d, int64_t counts[4]);
/* Messages waiting in memory: ready ring, loaded window, backoff heap,
 * and parked (no usable provider can carry them: dispatcher.c). */
void dispatcher_queue_sizes(const struct dispatcher *d, uint64_t *ready,
			    uint64_t *loaded, uint64_t *delayed,
			    uint64_t *parked);

#endif
