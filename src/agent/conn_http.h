/*
 * The base of the connectors that speak an HTTP API through http_multi
 * (mailgun, sendgrid, sparkpost, postmark, resend, ...).  They differ only
 * in what their API wants: the request a job becomes (path, body or form,
 * headers beyond the key), how an answer reads as a class, an id and the
 * provider's words, and which cheap authenticated call probes the account.
 * Everything else is the same for all of them and lives here once: open
 * (base_url, the secret read with config_secret_read and kept only in the
 * request's auth header or curl's password, the timeouts, one http_multi
 * per provider configured with tls_ca_file), the send and done plumbing
 * (job -> easy handle -> http_multi_add -> answer -> connector_result ->
 * done), the detail and the rate-limited log line of a failure, health
 * from consecutive failures, the probe, and close.
 *
 * A connector file describes its API with one const struct conn_http_api,
 * writes a three-line open that calls conn_http_open() with it, and
 * points its connector_ops at conn_http_send/_health/_probe/_close.
 */
#ifndef SHIVNERI_CONN_HTTP_H
#define SHIVNERI_CONN_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "agent/conn_limits.h"
#include "agent/connector.h"
#include "agent/http_multi.h"
#include "link/link.h"

/* What a connector builds from one job; the base frees what is set. */
struct conn_http_request {
	const char *path;           /* after base_url, "/v3/mail/send" */
	char *body;                 /* a JSON body, taken; or NULL */
	curl_mime *form;            /* or a form made on the easy handle */
	struct curl_slist *headers; /* headers beyond key, Accept, JSON */
};

/* What a connector reads from one answer (or a probe's). */
struct conn_http_answer {
	/* In: http_multi_classify()'s; out: a class of enum outcome. */
	int outcome;
	uint32_t retry_after_ms;    /* THROTTLED: how long, 0 unknown */
	char id[LINK_PMID_MAX + 1]; /* delivered: the provider's id, or "" */
	/*
	 * The provider's words: on a failure the detail's reason (else the
	 * body is), on a delivery an optional note ("rejected 1 of the
	 * recipients").  Raw: the base makes it printable.
	 */
	char why[256];
	char tag[64]; /* more of the detail after the status, " code=406" */
};

struct conn_http_api {
	const char *type;        /* the provider type, in details */
	const char *default_url; /* base_url when the section has none */
	const char *secret_key;  /* the key naming the secret, required */
	/*
	 * How the secret goes with each request: as the header
	 * auth_prefix + secret ("Authorization: Bearer "), or, when
	 * auth_prefix is NULL, as the password of Basic auth with user
	 * basic_user, or the secret named by basic_user_key.
	 */
	const char *auth_prefix;
	const char *basic_user;
	const char *basic_user_key;
	const char *probe_path; /* the cheap authenticated GET, or NULL */
	bool gmime;             /* the API's builder parses with GMime */
	/*
	 * Optional: reads the type's own keys into *ctx, handed to build
	 * and answer.  0, or a negative errno with a message in err.
	 */
	int (*open)(const struct provider_config *pc, void **ctx, char *err,
		    size_t errlen);
	void (*free)(void *ctx);
	/*
	 * The request of job (a form is made on easy).  NULL, or why the
	 * message cannot be carried by this API: send() then refuses it and
	 * the agent reports it transient, so another provider may take it.
	 */
	const char *(*build)(void *ctx, const struct connector_job *job,
			     CURL *easy, struct conn_http_request *rq);
	/*
	 * Reads an answer: a->outcome comes in as http_multi_classify() made
	 * it and must leave as a class (HTTP_CLASS_CONNECTOR is the
	 * connector's to judge).  ans is the body when it is a JSON object,
	 * else NULL (borrowed).  job is the one sent, or NULL for a failed
	 * probe's answer.
	 */
	void (*answer)(void *ctx, const struct connector_job *job,
		       const struct http_result *hr, json_t *ans,
		       struct conn_http_answer *a);
};

/*
 * connector_ops.open of an HTTP API: reads the keys api names, opens
 * api's own, starts an http_multi on base.  0, or a negative error with a
 * message in err.
 */
int conn_http_open(const struct conn_http_api *api,
		   const struct provider_config *pc, struct event_base *base,
		   connector_done_cb done, void *arg, void **state, char *err,
		   size_t errlen);
/* connector_ops.send, .health, .probe (for an api with probe_path), .close */
int conn_http_send(void *state, struct connector_job *job);
int conn_http_health(void *state);
int conn_http_probe(void *state, connector_probe_cb cb, void *arg);
void conn_http_close(void *state);
/*
 * For answer(): once a->outcome is a class, keeps id (may be NULL) as the
 * provider's id of a delivery, or why (may be NULL) as the reason of a
 * failure.
 */
void conn_http_answer_words(struct conn_http_answer *a, const char *id,
			    const char *why);

/*
 * How an answer reads for api: hr classified (http_multi_classify), its
 * body parsed as JSON when it is an object, then api's answer() (ctx its
 * open()'s, job NULL for a probe) makes a->outcome a class of enum
 * outcome and may set the id and the provider's words.
 */
void conn_http_read_answer(const struct conn_http_api *api, void *ctx,
			   const struct connector_job *job,
			   const struct http_result *hr,
			   struct conn_http_answer *a);

/* The optional keys every HTTP connector takes, to end its list. */
#define CONN_HTTP_OPTIONAL_KEYS                                                \
	"base_url", "connect_timeout_ms", "request_timeout_ms", "tls_ca_file", \
	    NULL

/*
 * Defines and registers the connector NAME over the struct conn_http_api
 * NAME##_api, with the keys of the arrays NAME##_required, NAME##_optional
 * (ending in CONN_HTTP_OPTIONAL_KEYS) and NAME##_secret the file defines:
 * its open (conn_http_open), its config check (http_multi_config_check
 * with the API's default_url, then EXTRA_CHECK when not NULL, for the
 * type's own keys) and its ops on conn_http_*.  PROBE is conn_http_probe
 * when the API has a cheap authenticated call (api.probe_path), else NULL:
 * the agent then lets one trial message through per probe_interval_s.
 * MAX_BYTES is the API's documented message limit (CONN_LIMIT_*, the one
 * table in conn_limits.h), the provider's max_message_bytes unless its
 * section says other; 0: none.
 */
#define CONN_HTTP_REGISTER(NAME, PROBE, EXTRA_CHECK, MAX_BYTES)                \
	static int NAME##_open(const struct provider_config *pc,               \
			       struct event_base *base,                        \
			       connector_done_cb done, void *arg,              \
			       void **state, char *err, size_t errlen)         \
	{                                                                      \
		return conn_http_open(&NAME##_api, pc, base, done, arg, state, \
				      err, errlen);                            \
	}                                                                      \
	static void NAME##_config_check(struct provider_config *pc,            \
					const struct config *cfg,              \
					struct config_report *r)               \
	{                                                                      \
		void (*extra)(struct provider_config *, const struct config *, \
			      struct config_report *) = EXTRA_CHECK;           \
                                                                               \
		http_multi_config_check(pc, r, NAME##_api.default_url);        \
		if (extra != NULL)                                             \
			extra(pc, cfg, r);                                     \
	}                                                                      \
	static const struct config_ptype NAME##_config = {                     \
	    .name = #NAME,                                                     \
	    .required = NAME##_required,                                       \
	    .optional = NAME##_optional,                                       \
	    .secret = NAME##_secret,                                           \
	    .check = NAME##_config_check,                                      \
	    .max_message_bytes = MAX_BYTES,                                    \
	};                                                                     \
	static const struct connector_ops NAME##_ops = {                       \
	    .name = #NAME,                                                     \
	    .config = &NAME##_config,                                          \
	    .open = NAME##_open,                                               \
	    .send = conn_http_send,                                            \
	    .health = conn_http_health,                                        \
	    .probe = PROBE,                                                    \
	    .close = conn_http_close,                                          \
	    .impl = &NAME##_api,                                               \
	};                                                                     \
	CONNECTOR_REGISTER(NAME##_ops)

#endif
