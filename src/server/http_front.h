/*
 * The server's HTTP front, on httpd.h: the routes of SPEC.md "HTTP API".
 * Message intake (POST /v1/messages goes to the submit path, intake/
 * submit.h, and is answered from its callback: 202 only once the commit is
 * on disk), message lookup, providers and their drain, stats, Prometheus
 * metrics, health and readiness (/readyz says why it is not ready: the
 * store cannot write, or no provider is up).
 *
 * Every error is {"error":{"code","message"}} with a fitting status.
 * With api_keys_file set, /v1/ needs "Authorization: Bearer KEY" (keys
 * compared in constant time; reloaded on SIGHUP).  Keys never reach a log.
 * The request body cap is derived from max_message_bytes
 * (message_json_max_bytes), so the one limit holds here too.
 */
#ifndef SHIVNERI_HTTP_FRONT_H
#define SHIVNERI_HTTP_FRONT_H

#include <stddef.h>

struct config;
struct dispatcher;
struct event_base;
struct registry;
struct store;
struct submit;
struct supervisor;
struct http_front;

/*
 * Listens on cfg->http_listen.  sub is the submit path (borrowed; it must
 * outlive the front's requests).  NULL with err filled on failure (keys
 * file, address, resolution, bind).
 */
struct http_front *http_front_new(struct event_base *base,
				  const struct config *cfg, struct store *st,
				  struct registry *reg, struct dispatcher *d,
				  struct supervisor *sv, struct submit *sub,
				  char *err, size_t errlen);
/* Reads api_keys_file again; 0 or -errno (the old keys stay). */
int http_front_reload_keys(struct http_front *f);
/* Stops accepting connections; requests in progress are still answered. */
void http_front_stop_accepting(struct http_front *f);
/* Requests waiting for the submit path or the store. */
unsigned http_front_pending(const struct http_front *f);
/* NULL is a no-op. */
void http_front_free(struct http_front *f);
int http_front_port(const struct http_front *f);
/* The request body cap, for tests and the log. */
size_t http_front_max_body(const struct http_front *f);
/* The webhook sender whose counters /metrics shows (NULL: none). */
struct webhook;
void http_front_set_webhook(struct http_front *f, struct webhook *wh);

#endif
