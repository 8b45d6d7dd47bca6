/*
 * GET /v1/events (http_events.c): the event hub (dispatch/events.h) as
 * Server-Sent Events, in the shape of docs/http-api.md.  The route sits
 * behind the API key like every /v1 route (http_front.c checks it first).
 */
#ifndef SHIVNERI_HTTP_EVENTS_H
#define SHIVNERI_HTTP_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct events;
struct http_front;
struct httpd_req;
struct http_events;

struct http_events_limits {
	int max_clients;        /* open streams at most; one more: 503 */
	int max_client_streams; /* of them per client; 0: no cap */
	int ping_s;             /* ": ping" to an idle stream this often */
	size_t client_buffer;   /* bytes queued for one stream at most */
};

/*
 * The streams of one front, fed by hub (NULL: the route answers 503).
 * NULL when the ping timer cannot be made.
 */
struct http_events *http_events_new(struct event_base *base, struct events *hub,
				    const struct http_events_limits *lim);
/* Ends every stream at once (their clients see the close).  NULL: no-op. */
void http_events_free(struct http_events *he);
/* GET /v1/events, once the key is checked (the front's route_v1). */
void http_events_route(struct http_front *f, struct httpd_req *req);
/*
 * After api_keys_file was reloaded: ends every stream whose key (the
 * scope httpd_req_auth() named when it opened) known no longer takes, so
 * a removed key stops at once, streams included.  One log line when any
 * was ended.  NULL: a no-op.
 */
void http_events_revoke(struct http_events *he,
			bool (*known)(const char *scope, void *arg), void *arg);
/* Streams open now (for /metrics). */
size_t http_events_streams(const struct http_events *he);

/*
 * A Last-Event-ID header's value: 1 to 20 ASCII digits and nothing else
 * (no sign, no space), at most UINT64_MAX.  A pure function, for the
 * fuzzer.
 */
bool http_events_parse_id(const char *s, uint64_t *out);

#endif
