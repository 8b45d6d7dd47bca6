/*
 * What the HTTP front's files share (http_front.c: the /v1 routes and
 * health; http_metrics.c: /metrics; front_sendgrid.c and front_mailgun.c: the
 * drop-in routes of SendGrid and Mailgun): the front's state, the API key check
 * and the reply helpers.  Private to src/server/.
 */
#ifndef SHIVNERI_HTTP_FRONT_INT_H
#define SHIVNERI_HTTP_FRONT_INT_H

#include "common/log.h"
#include "common/workq.h"
#include "intake/submit.h"
#include "store/store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct config;
struct dispatcher;
struct http_events;
struct httpd;
struct httpd_req;
struct registry;
struct store;
struct submit;
struct supervisor;

/* An API key's identity: see submit_scope_of_key(). */
#define API_SCOPE_LEN (SUBMIT_SCOPE_SIZE - 1)
#define API_KEY_DIGEST_LEN 32 /* SHA-256 */

struct http_front {
	const struct config *cfg;
	struct store *st;
	struct registry *reg;
	struct dispatcher *d;
	struct supervisor *sv;
	struct submit *sub;
	struct httpd *httpd;
	/*
	 * The API keys' SHA-256 digests, not the keys: a request's key is
	 * digested and compared with each in constant time, so neither its
	 * bytes nor its length show in the time of a refusal.
	 */
	unsigned char (*key_digests)[API_KEY_DIGEST_LEN];
	char (*scopes)[API_SCOPE_LEN + 1]; /* one per key, see key_scope() */
	size_t nkeys;
	struct log_rl auth_rl;
	struct log_rl origin_rl; /* http_origin.h's refusals */
	unsigned pending; /* requests waiting for the submit path or store */
	size_t max_body;  /* of a /v1 (and SendGrid) JSON body */
	size_t max_form;  /* of a Mailgun form body */
	struct message_limits lim;
	struct workq *translators; /* drop-in bodies over 64 KiB */

	/* GET /v1/events (http_events.c). */
	struct http_events *events;
	struct webhook *wh; /* NULL: no webhooks (metrics) */
	/* Scrapes waiting for the one store query out (http_metrics.c). */
	struct metrics_req *metrics_wait;
};

/* Drop-in bodies up to this are translated on the loop (microseconds). */
#define HTTP_FRONT_INLINE_MAX (64 * 1024)

/* Out of memory while answering: a short 503 of fixed text. */
void http_front__reply_failed(struct httpd_req *req);
/* Steals obj; NULL (a json_pack that failed) is answered 503. */
void http_front__reply_json(struct httpd_req *req, int status, json_t *obj);
/* RFC 3339 text of a time in ms, or null when it is not set (<= 0). */
json_t *http_front__time_json(int64_t ms);
/* A stored text as a JSON string ("?" if it is not UTF-8), null for NULL. */
json_t *http_front__text_json(const char *s);
/*
 * Whether key (len bytes, as presented; NULL: none) is one of the API
 * keys, compared in constant time; scope names it.  True with scope ""
 * when api_keys_file is not set (every client is the anonymous one, as
 * on /v1).  A refusal is logged, rate limited, with the peer and route;
 * the caller answers it in its own shape.
 */
bool http_front__key_ok(struct http_front *f, struct httpd_req *req,
			const char *key, size_t len, const char *route,
			char scope[API_SCOPE_LEN + 1]);
/*
 * Runs work(arg) and then done(arg) on the loop: at once when len is
 * small, else work on the translator thread, so that parsing a body of
 * megabytes never holds the loop.  work must touch no loop state.
 */
void http_front__offload(struct http_front *f, size_t len, workq_fn work,
			 workq_fn done, void *arg);
/* The path of GET /v1/messages/ID for a drop-in's id: our id inside. */
bool http_front__id_from_dropin(const char *in, char *id, size_t idsz);

/* GET /metrics (http_metrics.c). */
void http_front__metrics(struct http_front *f, struct httpd_req *req);

/* front_sendgrid.c: POST /v3/mail/send. */
void front_sendgrid_route(struct http_front *f, struct httpd_req *req);
/* front_mailgun.c: POST /v3/DOMAIN/messages and .../messages.mime. */
void front_mailgun_route(struct http_front *f, struct httpd_req *req,
			 const char *path);

/*
 * front_queue.c: GET /v1/messages (and 405 for its other methods but
 * POST) and POST /v1/messages/ID/retry.  True when the request was
 * taken (answered or under way); false for any other route, POST
 * /v1/messages included.
 */
bool front_queue_route(struct http_front *f, struct httpd_req *req,
		       const char *path);

/* The query string of GET /v1/messages, checked. */
#define FRONT_QUEUE_QUERY_MAX 1024
#define FRONT_QUEUE_LIMIT_DEFAULT 50
struct front_queue_params {
	int status; /* enum msg_status, or -1: any */
	int limit;
	char provider[STORE_LIST_PROVIDER_MAX + 1]; /* "": any */
	char before[STORE_CURSOR_MAX + 1];          /* "": from the newest */
};
/*
 * Parses query (len bytes, after the '?', not NUL-terminated) into p.
 * 0, or -1 with why naming the parameter at fault (no bytes of it); then
 * p is zeroed.  No I/O: fuzzed.
 */
int front_queue_parse(const char *query, size_t len,
		      struct front_queue_params *p, char *why, size_t whysz)
    __attribute__((warn_unused_result));

#endif
