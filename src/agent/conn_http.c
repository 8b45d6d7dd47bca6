/*
 * The shared half of every HTTP API connector (conn_http.h): open, send,
 * the answer's way back to the agent, health, probe and close, so that a
 * conn_TYPE.c holds only its API's request and answer.
 *
 * A send builds the request with the API's build(), adds what every
 * request carries (the key, Accept and Content-Type JSON, no 100-continue
 * wait) and hands the easy handle to http_multi; its completion classifies
 * the answer with http_multi_classify(), lets the API's answer() refine
 * it, and calls done() once.  A message the API cannot carry is refused
 * by send() with a log line, never failed as the provider's fault.
 * Failures are logged rate-limited with the provider's words made
 * printable and the key blotted out of them (an answer may echo it);
 * the secret is read once at open, lives only in the auth header (or
 * curl's Basic password) and is wiped at close.  It owns each transfer's
 * record (struct conn_http_xfer) until its completion, or until close,
 * which drops the transfers under way without done() and frees them.
 */
#include "agent/conn_http.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <gmime/gmime.h>
#include <openssl/crypto.h>

struct conn_http {
	const struct conn_http_api *api;
	void *ctx;    /* the API's own, from api->open */
	char *name;   /* the provider's */
	char *url;    /* base_url, without a trailing path */
	char *auth;   /* the auth header, or NULL for Basic */
	char *user;   /* Basic: the user */
	char *secret; /* Basic: the password */
	long connect_ms, request_ms;
	struct http_multi *hm;
	connector_done_cb done;
	void *arg;
	int failures; /* consecutive transient or ambiguous ends */
	struct log_rl rl;
	/* Under way: http_multi drops them at close without a callback. */
	LIST_HEAD(, conn_http_xfer) xfers;
};

/* One transfer under way: a job's send, or the probe (job NULL). */
struct conn_http_xfer {
	struct conn_http *ch;
	struct connector_job *job;
	connector_probe_cb probe_cb;
	void *probe_arg;
	LIST_ENTRY(conn_http_xfer) entry; /* in ch->xfers */
};

/* The body as a JSON object, or NULL. */
static json_t *
answer_json(const struct buf *body)
{
	json_error_t jerr;
	json_t *root;

	if (body->len == 0)
		return NULL;
	root = json_loadb(body->p, body->len, 0, &jerr);
	if (root != NULL && !json_is_object(root)) {
		json_decref(root);
		return NULL;
	}
	return root;
}

/*
 * Blots the key out of an answer's text: a provider (or a proxy before
 * it) that echoes the request's Authorization would otherwise put it into
 * the detail that the server logs, stores, publishes to events and
 * webhooks and shows in the console.  Blotted: the key itself, as the
 * auth header carries it and as Basic's password, raw, as log_sanitize()
 * prints it (an API may have sanitized its words) and JSON-escaped (the
 * raw body), and Basic's base64 of "user:key".  Only failures come here, so the
 * base64 is made each time rather than kept as one more copy of the key.
 */
static void
scrub(const struct conn_http *ch, char *text)
{
	const char *key = ch->auth != NULL
			      ? ch->auth + strlen(ch->api->auth_prefix)
			      : ch->secret;
	char plain[CONNECTOR_BLOT_PLAIN_MAX + 1];
	int n;

	if (key == NULL)
		return;
	connector_blot(text, key);
	/* A raw JSON body (the words when the API read none) carries the
	 * key escaped where it is not plain ASCII. */
	connector_blot_json(text, key);
	if (ch->auth != NULL || ch->user == NULL)
		return;
	/* A user read from a secret file is a key too (Mailjet's). */
	if (ch->api->basic_user_key != NULL) {
		connector_blot(text, ch->user);
		connector_blot_json(text, ch->user);
	}
	n = snprintf(plain, sizeof(plain), "%s:%s", ch->user, key);
	if (n > 0 && (size_t)n < sizeof(plain))
		connector_blot_base64(text, plain, (size_t)n);
	OPENSSL_cleanse(plain, sizeof(plain));
}

/*
 * A provider's words (their first 1023 bytes) into out as they may be
 * shown: the key blotted out, then made printable and cut to outsz.
 */
static void
words_clean(const struct conn_http *ch, const char *words, char *out,
	    size_t outsz)
{
	char raw[1024];

	snprintf(raw, sizeof(raw), "%s", words);
	scrub(ch, raw);
	log_sanitize(raw, strlen(raw), out, outsz);
}

/* The failure's detail into detail, and it is logged. */
static void
describe(struct conn_http *ch, const char *msgid, const struct http_result *hr,
	 const struct conn_http_answer *a, char *detail, size_t len)
{
	const char *why = a->why;
	char clean[256], tag[sizeof(a->tag)];

	if (hr->code != CURLE_OK && !hr->too_big)
		why = hr->error;
	else if (why[0] == '\0')
		why = hr->body->p;
	words_clean(ch, why, clean, sizeof(clean));
	log_sanitize(a->tag, strlen(a->tag), tag, sizeof(tag));
	snprintf(detail, len, "%s status=%ld%s: %s", ch->api->type, hr->status,
		 tag, clean);
	log_warnx_rl(&ch->rl, 1000,
		     "%s agent send_failed provider=%s status=%ld outcome=%s "
		     "detail=\"%s\"",
		     msgid, ch->name, hr->status, outcome_name(a->outcome),
		     clean);
}

/* A job's answer, as a class, an id and a detail, to done(). */
static void
job_done(struct conn_http *ch, struct connector_job *job,
	 const struct http_result *hr, const struct conn_http_answer *a)
{
	struct connector_result res;
	char detail[LINK_DETAIL_MAX + 1], pmid[LINK_PMID_MAX + 1];
	char note[256];

	memset(&res, 0, sizeof(res));
	res.outcome = a->outcome;
	res.retry_after_ms = a->retry_after_ms;
	if (a->outcome == OUTCOME_DELIVERED) {
		ch->failures = 0;
		/*
		 * Accepted even without an id: resending would duplicate.
		 * The id and the note are the provider's words too, and go
		 * to the same places as a failure's detail: the key is
		 * blotted out of them as well.
		 */
		if (a->id[0] != '\0') {
			words_clean(ch, a->id, pmid, sizeof(pmid));
			res.provider_message_id = pmid;
		}
		if (a->why[0] != '\0') {
			words_clean(ch, a->why, note, sizeof(note));
			snprintf(detail, sizeof(detail), "%s %s", ch->api->type,
				 note);
			res.detail = detail;
		}
	} else {
		describe(ch, job->message_id, hr, a, detail, sizeof(detail));
		res.detail = detail;
		if (a->outcome == OUTCOME_TRANSIENT ||
		    a->outcome == OUTCOME_AMBIGUOUS)
			ch->failures++;
	}
	ch->done(job, &res, ch->arg);
}

void
conn_http_read_answer(const struct conn_http_api *api, void *ctx,
		      const struct connector_job *job,
		      const struct http_result *hr, struct conn_http_answer *a)
{
	json_t *ans = answer_json(hr->body);

	memset(a, 0, sizeof(*a));
	a->outcome = http_multi_classify(hr, &a->retry_after_ms);
	api->answer(ctx, job, hr, ans, a);
	/*
	 * 413 is this provider's size limit, whatever the API calls it: not
	 * the message's fault, since another provider may take it (the
	 * server routes it by size, docs/internals/dispatch.md).
	 */
	if (hr->status == 413 && a->outcome != OUTCOME_DELIVERED)
		a->outcome = OUTCOME_TOO_LARGE;
	json_decref(ans);
}

static void
xfer_done(const struct http_result *hr, void *arg)
{
	struct conn_http_xfer *x = arg;
	struct conn_http *ch = x->ch;
	struct conn_http_answer a;
	char detail[LINK_DETAIL_MAX + 1];
	bool passed;

	if (x->job != NULL) {
		conn_http_read_answer(ch->api, ch->ctx, x->job, hr, &a);
		job_done(ch, x->job, hr, &a);
	} else {
		/* The probe: any 2xx takes the key. */
		passed = hr->code == CURLE_OK && hr->status >= 200 &&
			 hr->status < 300;
		if (!passed) {
			conn_http_read_answer(ch->api, ch->ctx, NULL, hr, &a);
			describe(ch, "-", hr, &a, detail, sizeof(detail));
		}
		x->probe_cb(passed, passed ? NULL : detail, x->probe_arg);
	}
	LIST_REMOVE(x, entry);
	free(x);
}

/* rq's headers with what every request carries; false when out of memory. */
static bool
add_headers(const struct conn_http *ch, struct conn_http_request *rq)
{
	static const char *const common[] = {
	    "Accept: application/json",
	    /* curl would wait for 100 Continue before a large body. */
	    "Expect:", NULL};
	struct curl_slist *t;
	size_t i;

	if (ch->auth != NULL) {
		t = curl_slist_append(rq->headers, ch->auth);
		if (t == NULL)
			return false;
		rq->headers = t;
	}
	for (i = 0; common[i] != NULL; i++) {
		t = curl_slist_append(rq->headers, common[i]);
		if (t == NULL)
			return false;
		rq->headers = t;
	}
	if (rq->body == NULL)
		return true;
	t = curl_slist_append(rq->headers, "Content-Type: application/json");
	if (t != NULL)
		rq->headers = t;
	return t != NULL;
}

/* Sets easy's URL, auth and body from rq; false on failure. */
static bool
set_request(const struct conn_http *ch, CURL *easy,
	    const struct conn_http_request *rq)
{
	char *url = xasprintf("%s%s", ch->url, rq->path);
	bool ok = curl_easy_setopt(easy, CURLOPT_URL, url) == CURLE_OK;

	free(url);
	if (ok && ch->auth == NULL)
		ok = curl_easy_setopt(easy, CURLOPT_HTTPAUTH,
				      (long)CURLAUTH_BASIC) == CURLE_OK &&
		     curl_easy_setopt(easy, CURLOPT_USERNAME, ch->user) ==
			 CURLE_OK &&
		     curl_easy_setopt(easy, CURLOPT_PASSWORD, ch->secret) ==
			 CURLE_OK;
	if (ok && rq->body != NULL)
		ok = curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
				      (curl_off_t)strlen(rq->body)) ==
			 CURLE_OK &&
		     curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, rq->body) ==
			 CURLE_OK;
	return ok;
}

/* Starts the transfer of rq on easy; both are taken either way. */
static int
start(struct conn_http *ch, CURL *easy, struct conn_http_request *rq,
      struct conn_http_xfer *x)
{
	int rc = -ENOMEM;

	if (add_headers(ch, rq) && set_request(ch, easy, rq)) {
		rc = http_multi_add(ch->hm, easy, rq->headers, rq->form,
				    ch->connect_ms, ch->request_ms, xfer_done,
				    x);
		if (rc == 0) {
			LIST_INSERT_HEAD(&ch->xfers, x, entry);
			free(rq->body);
			return 0;
		}
	}
	curl_slist_free_all(rq->headers);
	curl_mime_free(rq->form);
	curl_easy_cleanup(easy);
	free(rq->body);
	free(x);
	return rc;
}

int
conn_http_send(void *state, struct connector_job *job)
{
	struct conn_http *ch = state;
	struct conn_http_request rq;
	struct conn_http_xfer *x;
	CURL *easy = curl_easy_init();
	const char *why;

	if (easy == NULL)
		return -ENOMEM;
	memset(&rq, 0, sizeof(rq));
	why = ch->api->build(ch->ctx, job, easy, &rq);
	if (why != NULL) {
		log_warnx_rl(&ch->rl, 1000,
			     "%s agent unsendable provider=%s reason=\"%s\"",
			     job->message_id, ch->name, why);
		curl_slist_free_all(rq.headers);
		curl_mime_free(rq.form);
		curl_easy_cleanup(easy);
		free(rq.body);
		return -EINVAL;
	}
	x = xcalloc(1, sizeof(*x));
	x->ch = ch;
	x->job = job;
	return start(ch, easy, &rq, x);
}

int
conn_http_probe(void *state, connector_probe_cb cb, void *arg)
{
	struct conn_http *ch = state;
	struct conn_http_request rq;
	struct conn_http_xfer *x;
	CURL *easy;

	if (ch->api->probe_path == NULL)
		return -ENOTSUP;
	easy = curl_easy_init();
	if (easy == NULL)
		return -ENOMEM;
	memset(&rq, 0, sizeof(rq));
	rq.path = ch->api->probe_path;
	x = xcalloc(1, sizeof(*x));
	x->ch = ch;
	x->probe_cb = cb;
	x->probe_arg = arg;
	return start(ch, easy, &rq, x);
}

int
conn_http_health(void *state)
{
	struct conn_http *ch = state;

	/* Never down on counts: no traffic would come to clear them. */
	return ch->failures > 0 ? LINK_HEALTH_DEGRADED : LINK_HEALTH_OK;
}

static void
wipe(char *s)
{
	if (s != NULL)
		explicit_bzero(s, strlen(s));
	free(s);
}

static void
conn_http_free(struct conn_http *ch)
{
	struct conn_http_xfer *x;

	if (ch == NULL)
		return;
	/* Transfers under way are dropped without done(); their records
	 * are ours to free (before, each leaked at every stop). */
	http_multi_free(ch->hm);
	while ((x = LIST_FIRST(&ch->xfers)) != NULL) {
		LIST_REMOVE(x, entry);
		free(x);
	}
	if (ch->ctx != NULL)
		ch->api->free(ch->ctx);
	free(ch->name);
	free(ch->url);
	wipe(ch->auth);
	wipe(ch->user);
	wipe(ch->secret);
	free(ch);
}

void
conn_http_close(void *state)
{
	struct conn_http *ch = state;
	bool gmime;

	if (ch == NULL)
		return;
	gmime = ch->api->gmime;
	conn_http_free(ch);
	if (gmime)
		g_mime_shutdown();
}

/* The secret named by key into *out; 0 or a negative errno, with err. */
static int
read_secret(const struct conn_http_api *api, const struct provider_config *pc,
	    const char *key, char **out, char *err, size_t errlen)
{
	const char *ref = provider_config_get(pc, key);
	char kerr[256];
	int rc;

	if (ref == NULL) {
		snprintf(err, errlen, "provider %s: %s needs '%s'", pc->name,
			 api->type, key);
		return -EINVAL;
	}
	rc = config_secret_read(ref, out, kerr, sizeof(kerr));
	if (rc != 0)
		snprintf(err, errlen, "provider %s: %s: %s", pc->name, key,
			 kerr);
	return rc;
}

/* The key and the user into ch as the API sends them. */
static int
open_auth(struct conn_http *ch, const struct provider_config *pc, char *err,
	  size_t errlen)
{
	const struct conn_http_api *api = ch->api;
	int rc;

	if (api->auth_prefix == NULL && api->basic_user_key != NULL) {
		rc = read_secret(api, pc, api->basic_user_key, &ch->user, err,
				 errlen);
		if (rc != 0)
			return rc;
	} else if (api->auth_prefix == NULL) {
		ch->user = xstrdup(api->basic_user);
	}
	rc = read_secret(api, pc, api->secret_key, &ch->secret, err, errlen);
	if (rc != 0 || api->auth_prefix == NULL)
		return rc;
	ch->auth = xasprintf("%s%s", api->auth_prefix, ch->secret);
	wipe(ch->secret);
	ch->secret = NULL;
	return 0;
}

int
conn_http_open(const struct conn_http_api *api,
	       const struct provider_config *pc, struct event_base *base,
	       connector_done_cb done, void *arg, void **state, char *err,
	       size_t errlen)
{
	const char *url = provider_config_get(pc, "base_url");
	struct conn_http *ch = xcalloc(1, sizeof(*ch));
	int rc;

	ch->api = api;
	LIST_INIT(&ch->xfers);
	ch->name = xstrdup(pc->name);
	ch->url = xstrdup(url != NULL ? url : api->default_url);
	http_multi_timeouts(pc, &ch->connect_ms, &ch->request_ms);
	ch->done = done;
	ch->arg = arg;
	rc = open_auth(ch, pc, err, errlen);
	if (rc == 0 && api->open != NULL)
		rc = api->open(pc, &ch->ctx, err, errlen);
	if (rc != 0)
		goto fail;
	ch->hm = http_multi_new(base);
	if (ch->hm == NULL) {
		snprintf(err, errlen, "provider %s: cannot start libcurl",
			 pc->name);
		rc = -ENOMEM;
		goto fail;
	}
	rc = http_multi_configure(ch->hm, pc);
	if (rc != 0) {
		snprintf(err, errlen, "provider %s: tls_ca_file: %s", pc->name,
			 strerror(-rc));
		goto fail;
	}
	/* Counted: the agent's other users of GMime, if any, keep theirs. */
	if (api->gmime)
		g_mime_init();
	*state = ch;
	return 0;
fail:
	conn_http_free(ch);
	return rc;
}

void
conn_http_answer_words(struct conn_http_answer *a, const char *id,
		       const char *why)
{
	if (a->outcome == OUTCOME_DELIVERED && id != NULL)
		snprintf(a->id, sizeof(a->id), "%s", id);
	if (a->outcome != OUTCOME_DELIVERED && why != NULL)
		snprintf(a->why, sizeof(a->why), "%s", why);
}
