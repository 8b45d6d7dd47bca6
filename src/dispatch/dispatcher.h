/*
 * The dispatcher: moves queued messages to providers and outcomes back
 * into the store.
 *
 * Memory is bounded whatever the queue's length: a message waiting for a
 * provider costs one rowid in a ring (or a (due, rowid) pair in the backoff
 * heap); only a bounded window of messages is held whole, loaded from the
 * store in batches as providers free up.  Every state change goes to the
 * store (asynchronously; the store orders it before any later read).
 *
 * Policy (SPEC.md "Delivery, monitoring, failover"): a retry goes to a
 * provider that has not failed the message this round whenever one is up;
 * when every up provider has failed it, the round ends and the message
 * waits retry_base_ms * 2^round (capped at retry_max_ms, jittered by up to
 * a half) before a new round; max_attempts and message_ttl_s bound it.
 * Messages in flight at a provider that goes down are queued again at once
 * with an attempt of outcome "lost".  When no provider is up at all,
 * messages simply wait and go out the moment one comes up.
 */
#ifndef SHIVNERI_DISPATCHER_H
#define SHIVNERI_DISPATCHER_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct event_base;
struct provider;
struct registry;
struct store;
struct store_message;

struct dispatcher;

struct dispatcher *dispatcher_new(struct event_base *base,
				  const struct config *cfg, struct store *st,
				  struct registry *reg);
/* Start-up: loads the queue from the store (synchronous). */
int dispatcher_load(struct dispatcher *d) __attribute__((warn_unused_result));
void dispatcher_free(struct dispatcher *d);

/* A message the store just made durable; takes m. */
void dispatcher_enqueue(struct dispatcher *d, struct store_message *m);

/* Registry events. */
void dispatcher_provider_linked(struct dispatcher *d, struct provider *p);
void dispatcher_heartbeat(struct dispatcher *d, struct provider *p, int health,
			  unsigned agent_in_flight);
/* The link is gone (p->link already NULL). */
void dispatcher_provider_unlinked(struct dispatcher *d, struct provider *p,
				  const char *why);
void dispatcher_result(struct dispatcher *d, struct provider *p,
		       uint64_t job_id, const char *message_id, int outcome,
		       const char *provider_message_id, const char *detail);
/* Operator's drain. */
void dispatcher_set_disabled(struct dispatcher *d, struct provider *p,
			     bool disabled);

/* Stop handing out jobs (shutdown); results are still taken. */
void dispatcher_pause(struct dispatcher *d);
unsigned dispatcher_in_flight(const struct dispatcher *d);
/* Counts by status, kept in memory (store.h MSG_*). */
void dispatcher_counts(const struct dispatcher *d, int64_t counts[4]);
/* Messages waiting in memory: ready ring, loaded window, backoff heap. */
void dispatcher_queue_sizes(const struct dispatcher *d, uint64_t *ready,
			    uint64_t *loaded, uint64_t *delayed);

#endif
