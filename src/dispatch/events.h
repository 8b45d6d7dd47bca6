/*
 * The event hub: what happens to messages and providers, as it happens,
 * for the live views (GET /v1/events, the console) and the webhooks.
 *
 * The dispatcher publishes an event once the change it tells of is
 * durable (a message's write is on disk) or made (a provider's state).
 * Each event gets a sequence number that only grows, across restarts too:
 * a hub starts counting at its start time in milliseconds times 1000, so
 * that a client reconnecting with the id it saw last (Last-Event-ID)
 * never mistakes a new run's events for ones it has seen.
 *
 * The hub keeps the last `history` events in a ring (bounded memory: the
 * texts of an event are capped by the link's limits) and calls each
 * subscriber synchronously from events_publish(), on the loop thread.  A
 * subscriber must not block; it may unsubscribe itself (or another) from
 * its callback.  Everything here runs on the loop thread only.
 */
#ifndef SHIVNERI_EVENTS_H
#define SHIVNERI_EVENTS_H

#include "link/link.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct events;
struct events_sub;

enum ev_type {
	EV_MSG_QUEUED = 0,    /* stored (or put back by a retry) */
	EV_MSG_ATTEMPT,       /* an attempt's outcome is durable */
	EV_MSG_DELIVERED,     /* final */
	EV_MSG_FAILED,        /* final */
	EV_PROVIDER_UP,       /* state up */
	EV_PROVIDER_DOWN,     /* state down, with the reason */
	EV_PROVIDER_PAUSED,   /* throttled, until until_ms */
	EV_PROVIDER_DISABLED, /* an operator's drain */
	EV_PROVIDER_ENABLED,  /* the drain lifted */
	/* A too_large answer lowered the limit, until until_ms (wall ms). */
	EV_PROVIDER_LIMIT_LEARNED,
	/* A learned limit's time is over: the registration's again. */
	EV_PROVIDER_LIMIT_RESTORED,
	/* A needs_smtputf8 answer: non-ASCII addresses avoid the provider
	 * until until_ms (wall ms). */
	EV_PROVIDER_SMTPUTF8_REFUSED,
	/* That time is over, or its agent registered again. */
	EV_PROVIDER_SMTPUTF8_RESTORED,
};
#define EV_NTYPES (EV_PROVIDER_SMTPUTF8_RESTORED + 1)

/* True for the message.* types, false for the provider.* ones. */
#define EV_IS_MESSAGE(t) ((t) <= EV_MSG_FAILED)

/*
 * One event.  Strings are NUL-terminated; a field that does not apply is
 * "" (or 0, -1 for outcome).  events_publish() copies it.
 */
struct ev_rec {
	uint64_t seq;  /* set by the hub */
	int64_t at_ms; /* set by the hub when 0 (wall clock) */
	int type;      /* enum ev_type */
	char id[32];   /* the message's public id; "" for provider events */
	char provider[LINK_NAME_MAX + 1];
	int outcome; /* EV_MSG_ATTEMPT: enum outcome; else -1 */
	int attempt; /* EV_MSG_ATTEMPT: its number; delivered, failed: the
			message's attempts so far; else 0 */
	/*
	 * EV_PROVIDER_PAUSED: paused until; EV_PROVIDER_LIMIT_LEARNED: the
	 * learned limit holds until; EV_PROVIDER_SMTPUTF8_REFUSED: non-ASCII
	 * addresses avoid the provider until (wall ms).
	 */
	int64_t until_ms;
	/* EV_PROVIDER_LIMIT_*: the provider's size limit after the change. */
	uint64_t max_bytes;
	/*
	 * Provider events: the state as GET /v1/providers shows it after
	 * the change ("up", "paused", "down", "disabled"); "" for messages.
	 */
	char state[16];
	/*
	 * The text: the attempt's detail, the failed message's error, the
	 * provider's reason for down or paused; NULL or "" when none.
	 */
	const char *text;
	/* EV_MSG_DELIVERED: the provider's id for the message, or NULL. */
	const char *pmid;
};

/* The default of [server] events_history. */
#define EVENTS_HISTORY_DEFAULT 10000

/* A hub keeping the last history events (at least 1). */
struct events *events_new(size_t history);
/* Subscribers still registered are dropped (their callbacks not run). */
void events_free(struct events *ev);

/* Publishes a copy of r (seq and at_ms filled in); returns its seq. */
uint64_t events_publish(struct events *ev, const struct ev_rec *r);

typedef void (*events_cb)(void *arg, const struct ev_rec *r);

/* cb gets every event published from now on, until unsubscribed. */
struct events_sub *events_subscribe(struct events *ev, events_cb cb, void *arg);
void events_unsubscribe(struct events *ev, struct events_sub *s);
size_t events_subscribers(const struct events *ev);

/*
 * Calls cb, in order, for every kept event whose seq is above after.
 * Returns false when events after `after` have already left the history
 * (the caller missed some: it should refetch the state it shows); cb is
 * then still called for all that are kept.  after == 0 means "from now":
 * nothing is replayed and true is returned.
 */
bool events_replay(const struct events *ev, uint64_t after, events_cb cb,
		   void *arg);

/*
 * The kept event right after seq `after`, or NULL when none is newer, in
 * constant time.  *gap is set when events after `after` have left the
 * history; the event returned is then the oldest kept.  The record is the
 * hub's: valid until the next publish.
 */
const struct ev_rec *events_next(const struct events *ev, uint64_t after,
				 bool *gap);

/* The newest seq published so far (the starting point before any). */
uint64_t events_last_seq(const struct events *ev);

/* "message.queued", "provider.down", ... */
const char *events_type_name(int type);

/*
 * Appends r as one line of JSON (no newline), in the shape of
 * docs/http-api.md "GET /v1/events":
 *   {"seq":N,"type":"message.attempt","at":"RFC 3339","id":"...",
 *    "provider":"...","outcome":"transient","attempt":2,"detail":"..."}
 *   {"seq":N,"type":"provider.down","at":"...","provider":"...",
 *    "state":"down","reason":"..."}
 *   {"seq":N,"type":"provider.limit_learned","at":"...","provider":"...",
 *    "state":"up","max_message_bytes":N,
 *    "max_message_bytes_learned_until":"..."}
 * 0 or -E2BIG (the buf's cap; nothing appended then).
 */
int events_format_json(const struct ev_rec *r, struct buf *out)
    __attribute__((warn_unused_result));

#endif
