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

struct buf;

/*
 * Appends the body of r to out (all or nothing): 0, or -E2BIG when out's
 * cap cannot hold it.
 */
int outbox_body(const struct ev_rec *r, struct buf *out)
    __attribute__((warn_unused_result));

#endif
