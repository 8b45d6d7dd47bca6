/*
 * libcurl's multi interface driven by the agent's own event_base, for the
 * HTTP connectors.  Each connector state owns one http_multi, so its
 * transfers share one connection cache: connections to the API are kept
 * alive and reused, and HTTP/2 is used where the server offers it over TLS
 * (several requests multiplexed on one connection).  There is no thread
 * and no blocking call: curl tells us which sockets to watch and when its
 * next timeout falls (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION), libevent
 * watches them, and curl_multi_socket_action() runs on the loop.
 *
 * A caller prepares an easy handle (URL, method, body, headers) and hands
 * it over with http_multi_add(), which sets what every transfer must have:
 * TLS verification on, http/https only, no redirects, the connect and
 * whole-request deadlines, a capped body buffer.  The completion callback
 * runs on the loop, once per added transfer, never from inside
 * http_multi_add(), and is told the curl result, the HTTP status, whether
 * the request went out, and the body.  http_multi_classify() maps that to
 * an outcome class the same way for every connector.
 */
#ifndef SHIVNERI_HTTP_MULTI_H
#define SHIVNERI_HTTP_MULTI_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <curl/curl.h>

#include "common/buf.h"

struct event_base;
struct http_multi;

#define HTTP_CONNECT_TIMEOUT_MS_DEFAULT 5000
#define HTTP_REQUEST_TIMEOUT_MS_DEFAULT 30000
/* Connections kept open at least; http_multi_configure() raises it to
 * the provider's max_in_flight. */
#define HTTP_MAXCONNECTS_MIN 64
/* What a response body may hold; more fails the transfer's read. */
#define HTTP_BODY_MAX (64 * 1024)
/* Retry-After longer than this is taken as this. */
#define HTTP_RETRY_AFTER_MAX_MS (3600u * 1000u)
/* http_multi_classify(): a 4xx only the connector can judge. */
#define HTTP_CLASS_CONNECTOR (-1)

struct http_result {
	CURLcode code;     /* CURLE_OK, or why the transfer failed */
	long status;       /* the HTTP status, 0 when none came */
	bool sent;         /* the request (or part of it) went out */
	bool too_big;      /* the body passed HTTP_BODY_MAX (code says so) */
	const char *error; /* curl's words for code; never NULL */
	struct buf *body;  /* the response body, NUL-terminated */
	CURL *easy;        /* the transfer's handle; dies after the cb */
	/*
	 * The response header name's value (last one wins) or NULL:
	 * http_multi_header() asks it.  http_multi's reads curl's headers of
	 * easy; a fuzz target gives its own, so the connectors' readings of
	 * a provider's headers are tested without a transfer.
	 */
	const char *(*header)(const struct http_result *res, const char *name);
	void *header_arg; /* for header(); http_multi's: unused */
};

/* Called once per added transfer, on the loop; res dies after it returns. */
typedef void (*http_multi_done_cb)(const struct http_result *res, void *arg);

/* A multi handle on base; NULL when curl cannot make one. */
struct http_multi *http_multi_new(struct event_base *base);
/*
 * Stops every transfer without calling its callback (http_multi_cancel)
 * and frees hm.  NULL is a no-op.  Not from inside a completion callback.
 */
void http_multi_free(struct http_multi *hm);
/*
 * Stops every transfer in flight; their callbacks are not called.  Not
 * from inside a completion callback (the finishing transfer is freed
 * after it returns).
 */
void http_multi_cancel(struct http_multi *hm);
/*
 * Starts the transfer of easy and takes it, with headers and mime (either
 * may be NULL), which are freed after the callback.  Timeouts of 0 take
 * the defaults above.  0, or a negative errno: then nothing is taken and
 * the callback will not be called.
 */
int http_multi_add(struct http_multi *hm, CURL *easy,
		   struct curl_slist *headers, curl_mime *mime,
		   long connect_timeout_ms, long request_timeout_ms,
		   http_multi_done_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* Transfers in flight. */
size_t http_multi_count(const struct http_multi *hm);
/* The value of the response header name (last one wins), or NULL. */
const char *http_multi_header(const struct http_result *res, const char *name);
/*
 * The outcome class (enum outcome) of a finished transfer: a transport
 * failure before the request went out is transient, after it ambiguous;
 * 2xx delivered (the connector still checks the answer); 429 throttled,
 * with *retry_after_ms from Retry-After (seconds or an HTTP-date, 0 when
 * absent or unreadable); 401/403 account; 5xx and other statuses
 * transient; other 4xx HTTP_CLASS_CONNECTOR.
 */
int http_multi_classify(const struct http_result *res,
			uint32_t *retry_after_ms);
/* Retry-After's value in ms (capped), 0 when absent or unreadable. */
uint32_t http_multi_retry_after_ms(const char *value, time_t now);

/*
 * For the config check of an HTTP connector: base_url must be
 * scheme://host[:port] with scheme http or https (default_url is added when
 * it is absent), connect_timeout_ms and request_timeout_ms whole numbers
 * of 1..CONNECTOR_TIMEOUT_MAX_MS, and tls_ca_file, when given, readable.
 * A connector that calls it lists "tls_ca_file" among its optional keys.
 * A section without max_in_flight gets HTTP_MAX_IN_FLIGHT_DEFAULT.
 */
/*
 * The default max_in_flight of an HTTP provider (other types keep 32).
 * One agent's throughput is bounded by its window: a slot waits for the
 * `sending` commit and the agent's round trip, about 7 ms on a 2-core
 * machine, so 32 slots carry ~4,300 messages/s and 128 ~6,600/s
 * (bench/RESULTS.md section 8).  An HTTP API takes many requests at once;
 * the agent keeps one connection per slot.
 */
#define HTTP_MAX_IN_FLIGHT_DEFAULT 128

struct config_report;
struct provider_config;
void http_multi_config_check(struct provider_config *pc,
			     struct config_report *r, const char *default_url);
/*
 * Applies the provider's transport keys to every later transfer of hm:
 * a connection cache of at least max_in_flight connections,
 * tls_ca_file (a CA bundle to verify the API against instead of the
 * system's, for a private endpoint or a test's stand-in; verification is
 * never turned off), and base_url's scheme: for https, when no transfer
 * is under way the next one goes first alone and those added meanwhile
 * are held until it is connected (ALPN has said whether the API takes
 * h2: they then share its connection, or open their own) or has failed
 * (they then try at once, each on its own), so a burst opens one h2
 * connection, not one each, and a hung handshake delays it by at most one
 * connect timeout.  Plain http is never held (no h2 there).  A connector
 * that skips this call gets neither.  0, or a negative errno when the
 * file cannot be read.
 */
int http_multi_configure(struct http_multi *hm,
			 const struct provider_config *pc)
    __attribute__((warn_unused_result));
/* The provider's two timeouts, the defaults when absent (checked above). */
void http_multi_timeouts(const struct provider_config *pc, long *connect_ms,
			 long *request_ms);

#endif
