/*
 * The webhook sender (docs/webhooks.md): POSTs the rows of the store's
 * outbox to [server] webhook_url, signed, and deletes each once the
 * receiver answered 2xx.
 *
 * Where rows come from: a message's final outcome is written into the
 * outbox by the record in the outcome's own transaction
 * (dispatcher_set_webhooks); a provider's state change is added here, from
 * the event hub.  Both are durable before anything is sent, so a crash
 * loses none: a restart resumes from the outbox (at least once; receivers
 * dedupe by the Shivneri-Webhook-Id header, the body's webhook_id).
 *
 * How it sends: on the server's loop, with libcurl's multi interface
 * (agent/http_multi.h), at most webhook_max_in_flight at once.  Rows are
 * claimed from the store in small batches with a lease (store.h
 * store_outbox_claim), so a row in flight is not claimed twice and a row
 * whose sender died is sent again once its lease ran out.  A try that
 * fails (transport error, timeout, any status but 2xx) is retried after an
 * exponential backoff with jitter, from 1 s up to webhook_retry_max_ms.
 * Nothing here waits on the dispatcher or it on us: a dead or hanging
 * receiver holds webhook slots and outbox rows, never mail.
 *
 * The secret signs; it is never logged, nor is the URL (it may carry a
 * token): log lines name the receiver's host only.
 */
#ifndef SHIVNERI_WEBHOOK_H
#define SHIVNERI_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct event_base;
struct events;
struct store;
struct webhook;

/*
 * Starts sending cfg's webhook_url (which must be set) from st's outbox
 * and subscribes to ev for provider state changes.  secret is copied.
 * NULL with a reason in err when curl cannot be set up.
 */
struct webhook *webhook_new(struct event_base *base, const struct config *cfg,
			    struct store *st, struct events *ev,
			    const char *secret, size_t secret_len, char *err,
			    size_t errlen);
/*
 * Stops sending: transfers in flight are dropped (their rows stay in the
 * outbox and go again after their lease), the hub is left, and later store
 * callbacks do nothing.  Call before store_close(); NULL is a no-op.
 */
void webhook_stop(struct webhook *wh);
/* After store_close(). NULL is a no-op. */
void webhook_free(struct webhook *wh);

/* For /metrics. */
struct webhook_stats {
	uint64_t sent;       /* deliveries the receiver took (2xx) */
	uint64_t failed;     /* tries that failed */
	uint64_t dropped;    /* unsent: the cap, the age, failed adds */
	int64_t outbox_rows; /* rows in the outbox at the last claim */
	unsigned in_flight;  /* deliveries under way */
};
void webhook_stats(const struct webhook *wh, struct webhook_stats *out);

/*
 * The Shivneri-Signature value of body at unix time t:
 * "t=T,v1=HEX(HMAC-SHA256(secret, "T." + body))", into out (at least
 * WEBHOOK_SIG_MAX bytes).  0, or -EINVAL when the HMAC fails.
 */
#define WEBHOOK_SIG_MAX 96
int webhook_sign(const void *secret, size_t secret_len, int64_t t,
		 const char *body, size_t body_len, char *out, size_t outsz)
    __attribute__((warn_unused_result));

/*
 * The wait before try attempts + 1 after attempts failed ones: 1 s
 * doubled per failure, capped at max_ms, then jittered down by up to a
 * half (so receivers coming back are not hit by every sender at once).
 */
int64_t webhook_backoff_ms(int attempts, int64_t max_ms);

#endif
