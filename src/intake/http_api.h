/*
 * The HTTP API of SPEC.md on evhttp: message intake and lookup, providers
 * and their drain, stats, Prometheus metrics, health and readiness.
 *
 * A submission's JSON is checked and built into MIME on the loop when it
 * is small (about 10 us for 2 KB: cheaper than two thread hand-offs) and
 * on builder threads when it is larger than 64 KiB (attachments: never
 * hold the loop for milliseconds), then answered only from the
 * store's durability callback
 * (202 once its commit is on disk), so the request stays pending across
 * the group commit; evhttp keeps a request whose client went away until
 * we reply, and then frees it, so a late reply is always safe.
 *
 * Every error is {"error":{"code","message"}} with a fitting status.
 * With api_keys_file set, /v1/ needs "Authorization: Bearer KEY" (keys
 * compared in constant time; reloaded on SIGHUP).  Keys never reach a log.
 */
#ifndef SHIVNERI_HTTP_API_H
#define SHIVNERI_HTTP_API_H

#include <stddef.h>

struct config;
struct dispatcher;
struct event_base;
struct registry;
struct store;
struct supervisor;
struct http_api;

struct http_api *http_api_new(struct event_base *base, const struct config *cfg,
			      struct store *st, struct registry *reg,
			      struct dispatcher *d, struct supervisor *sv,
			      char *err, size_t errlen);
/* Reads api_keys_file again; 0 or -errno (the old keys stay). */
int http_api_reload_keys(struct http_api *api);
/* Stops accepting connections; requests in progress are still answered. */
void http_api_stop_accepting(struct http_api *api);
/*
 * Stops the builder threads; submissions still being built are answered
 * 503.  Call before the store closes.
 */
void http_api_stop_workers(struct http_api *api);
/* Requests waiting for a builder or the store. */
unsigned http_api_pending(const struct http_api *api);
void http_api_free(struct http_api *api);
int http_api_port(const struct http_api *api);

#endif
