/*
 * The sparkpost connector: each message goes exactly as we built it to
 * SparkPost's Transmissions API, POST {base_url}/api/v1/transmissions,
 * as {"recipients": [{"address": {"email": RCPT}}...], "content":
 * {"email_rfc822": MIME}} with the raw key as Authorization (SparkPost
 * takes no scheme word), on the agent's loop through http_multi.
 *
 * Answers (PROVIDERS.md): 200 with results.id is delivered with that id;
 * when SparkPost accepted none of the recipients it is permanent, and a
 * partial acceptance is delivered (the others cannot be resent without a
 * duplicate) with the count rejected in the detail.  400 with code 7001
 * (an unverified sending domain), 401, 403 and 420 (a sending limit of
 * the account) are the account's; 400, 413, 415 and 422 the message's;
 * 429 throttled (Retry-After, else the 2 s SparkPost advises); 5xx and
 * other statuses transient; no answer after the request went out
 * ambiguous.  The key lives in the Authorization header of each request
 * only and is never logged.
 */
#include "agent/connector.h"
#include "agent/http_multi.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "link/link.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define SPARKPOST_DEFAULT_URL "https://api.sparkpost.com"
#define SPARKPOST_THROTTLE_MS 2000

struct sparkpost {
	char *name; /* the provider's */
	char *url;  /* base_url/api/v1/transmissions */
	char *auth; /* "Authorization: KEY" */
	long connect_ms, request_ms;
	struct http_multi *hm;
	connector_done_cb done;
	void *arg;
	int failures; /* consecutive transient or ambiguous ends */
	struct log_rl rl;
};

struct sparkpost_send {
	struct sparkpost *sp;
	struct connector_job *job;
};

/* The body: the recipients and the MIME, or NULL (not UTF-8). */
static char *
build_body(const struct connector_job *job)
{
	json_t *root = json_object(), *rcpts = json_array(), *content, *r;
	char *body = NULL;
	size_t i;
	bool ok = root != NULL && rcpts != NULL;

	for (i = 0; ok && i < job->nrcpt; i++) {
		r = json_pack("{s:{s:s}}", "address", "email", job->rcpt[i]);
		ok = r != NULL && json_array_append_new(rcpts, r) == 0;
	}
	/* Our MIME is 7-bit or UTF-8; jansson refuses anything else. */
	content = ok ? json_pack("{s:s%}", "email_rfc822",
				 (const char *)job->mime, job->mime_len)
		     : NULL;
	if (ok && content != NULL &&
	    json_object_set(root, "recipients", rcpts) == 0 &&
	    json_object_set_new(root, "content", content) == 0)
		body = json_dumps(root, JSON_COMPACT);
	else
		json_decref(content);
	json_decref(rcpts);
	json_decref(root);
	return body;
}

/* What a 2xx or an error answer says: results, or errors[0]. */
struct answer {
	char id[LINK_PMID_MAX + 1];
	json_int_t accepted, rejected;
	char code[16];
	char message[256];
};

static void
parse_answer(const struct buf *body, struct answer *a)
{
	json_error_t jerr;
	json_t *root, *res, *err, *v;

	memset(a, 0, sizeof(*a));
	a->accepted = -1;
	root = body->len > 0 ? json_loadb(body->p, body->len, 0, &jerr) : NULL;
	if (root == NULL)
		return;
	res = json_object_get(root, "results"); /* borrowed, NULL-safe */
	v = json_object_get(res, "id");
	if (json_is_string(v))
		log_sanitize(json_string_value(v), json_string_length(v), a->id,
			     sizeof(a->id));
	v = json_object_get(res, "total_accepted_recipients");
	if (json_is_integer(v))
		a->accepted = json_integer_value(v);
	v = json_object_get(res, "total_rejected_recipients");
	if (json_is_integer(v))
		a->rejected = json_integer_value(v);
	err = json_array_get(json_object_get(root, "errors"), 0);
	v = json_object_get(err, "code");
	if (json_is_string(v))
		snprintf(a->code, sizeof(a->code), "%s", json_string_value(v));
	v = json_object_get(err, "message");
	if (json_is_string(v))
		log_sanitize(json_string_value(v), json_string_length(v),
			     a->message, sizeof(a->message));
	json_decref(root);
}

static int
status_class(long status, const struct answer *a)
{
	if (status == 420 || (status == 400 && strcmp(a->code, "7001") == 0))
		return OUTCOME_ACCOUNT;
	if (status == 400 || status == 413 || status == 415 || status == 422)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT;
}

static void
send_done(const struct http_result *hr, void *arg)
{
	struct sparkpost_send *ss = arg;
	struct sparkpost *sp = ss->sp;
	struct connector_result res;
	struct answer a;
	char detail[LINK_DETAIL_MAX + 1], clean[256];

	memset(&res, 0, sizeof(res));
	parse_answer(hr->body, &a);
	res.outcome = http_multi_classify(hr, &res.retry_after_ms);
	if (res.outcome == HTTP_CLASS_CONNECTOR)
		res.outcome = status_class(hr->status, &a);
	if (res.outcome == OUTCOME_THROTTLED && res.retry_after_ms == 0)
		res.retry_after_ms = SPARKPOST_THROTTLE_MS;
	if (res.outcome == OUTCOME_DELIVERED && a.id[0] == '\0')
		res.outcome = OUTCOME_TRANSIENT; /* not SparkPost's answer */
	else if (res.outcome == OUTCOME_DELIVERED && a.accepted == 0)
		res.outcome = OUTCOME_PERMANENT;
	if (res.outcome == OUTCOME_DELIVERED) {
		sp->failures = 0;
		res.provider_message_id = a.id;
		if (a.rejected > 0) {
			snprintf(detail, sizeof(detail),
				 "sparkpost rejected %lld of the recipients",
				 (long long)a.rejected);
			res.detail = detail;
		}
	} else {
		if (hr->code != CURLE_OK && !hr->too_big)
			log_sanitize(hr->error, strlen(hr->error), clean,
				     sizeof(clean));
		else if (a.message[0] != '\0')
			snprintf(clean, sizeof(clean), "%s", a.message);
		else if (hr->status >= 200 && hr->status < 300)
			snprintf(clean, sizeof(clean), "%s",
				 a.id[0] == '\0' ? "an answer without an id"
						 : "no recipient accepted");
		else
			log_sanitize(hr->body->p, hr->body->len, clean,
				     sizeof(clean));
		snprintf(detail, sizeof(detail), "sparkpost status=%ld: %s",
			 hr->status, clean);
		res.detail = detail;
		if (res.outcome == OUTCOME_TRANSIENT ||
		    res.outcome == OUTCOME_AMBIGUOUS)
			sp->failures++;
		log_warnx_rl(&sp->rl, 1000,
			     "%s agent send_failed provider=%s status=%ld "
			     "outcome=%s detail=\"%s\"",
			     ss->job->message_id, sp->name, hr->status,
			     outcome_name(res.outcome), clean);
	}
	sp->done(ss->job, &res, sp->arg);
	free(ss);
}

static int
sparkpost_send(void *state, struct connector_job *job)
{
	struct sparkpost *sp = state;
	struct sparkpost_send *ss;
	struct curl_slist *h = NULL, *t;
	char *body;
	CURL *easy;
	int rc = -ENOMEM;

	body = build_body(job);
	if (body == NULL) {
		log_warnx_rl(&sp->rl, 1000,
			     "%s agent unsendable provider=%s reason=\"not "
			     "UTF-8\"",
			     job->message_id, sp->name);
		return -EINVAL;
	}
	easy = curl_easy_init();
	if (easy == NULL)
		goto fail;
	h = curl_slist_append(NULL, sp->auth);
	t = h != NULL ? curl_slist_append(h, "Content-Type: application/json")
		      : NULL;
	/* curl would wait for 100 Continue before a large body. */
	t = t != NULL ? curl_slist_append(h, "Expect:") : NULL;
	if (t == NULL ||
	    curl_easy_setopt(easy, CURLOPT_URL, sp->url) != CURLE_OK ||
	    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
			     (curl_off_t)strlen(body)) != CURLE_OK ||
	    curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK)
		goto fail;
	ss = xcalloc(1, sizeof(*ss));
	ss->sp = sp;
	ss->job = job;
	rc = http_multi_add(sp->hm, easy, h, NULL, sp->connect_ms,
			    sp->request_ms, send_done, ss);
	if (rc != 0) {
		free(ss);
		goto fail;
	}
	free(body);
	return 0;
fail:
	curl_slist_free_all(h);
	curl_easy_cleanup(easy);
	free(body);
	return rc;
}

static int
sparkpost_health(void *state)
{
	struct sparkpost *sp = state;

	/* Never down on counts: no traffic would come to clear them. */
	if (sp->failures > 0)
		return LINK_HEALTH_DEGRADED;
	return LINK_HEALTH_OK;
}

static void
sparkpost_free(struct sparkpost *sp)
{
	if (sp == NULL)
		return;
	http_multi_free(sp->hm);
	free(sp->name);
	free(sp->url);
	if (sp->auth != NULL)
		explicit_bzero(sp->auth, strlen(sp->auth));
	free(sp->auth);
	free(sp);
}

static void
sparkpost_close(void *state)
{
	/* Transfers under way are dropped without done(). */
	sparkpost_free(state);
}

static int
sparkpost_open(const struct provider_config *pc, struct event_base *base,
	       connector_done_cb done, void *arg, void **state, char *err,
	       size_t errlen)
{
	const char *url = provider_config_get(pc, "base_url");
	const char *keyref = provider_config_get(pc, "api_key_file");
	struct sparkpost *sp;
	char kerr[256], *key = NULL;
	int rc;

	if (keyref == NULL) {
		snprintf(err, errlen,
			 "provider %s: sparkpost needs 'api_key_file'",
			 pc->name);
		return -EINVAL;
	}
	rc = config_secret_read(keyref, &key, kerr, sizeof(kerr));
	if (rc != 0) {
		snprintf(err, errlen, "provider %s: api_key_file: %s", pc->name,
			 kerr);
		return rc;
	}
	sp = xcalloc(1, sizeof(*sp));
	sp->name = xstrdup(pc->name);
	sp->url = xasprintf("%s/api/v1/transmissions",
			    url != NULL ? url : SPARKPOST_DEFAULT_URL);
	sp->auth = xasprintf("Authorization: %s", key);
	explicit_bzero(key, strlen(key));
	free(key);
	http_multi_timeouts(pc, &sp->connect_ms, &sp->request_ms);
	sp->done = done;
	sp->arg = arg;
	sp->hm = http_multi_new(base);
	if (sp->hm == NULL) {
		snprintf(err, errlen, "provider %s: cannot start libcurl",
			 pc->name);
		sparkpost_free(sp);
		return -ENOMEM;
	}
	*state = sp;
	return 0;
}

static void
sparkpost_config_check(struct provider_config *pc, const struct config *cfg,
		       struct config_report *r)
{
	http_multi_config_check(pc, r, SPARKPOST_DEFAULT_URL);
}

static const char *const sparkpost_required[] = {"api_key_file", NULL};
static const char *const sparkpost_optional[] = {
    "base_url", "connect_timeout_ms", "request_timeout_ms", NULL};
static const char *const sparkpost_secret[] = {"api_key_file", NULL};

static const struct config_ptype sparkpost_config = {
    .name = "sparkpost",
    .required = sparkpost_required,
    .optional = sparkpost_optional,
    .secret = sparkpost_secret,
    .check = sparkpost_config_check,
};

static const struct connector_ops sparkpost_ops = {
    .name = "sparkpost",
    .config = &sparkpost_config,
    .open = sparkpost_open,
    .send = sparkpost_send,
    .health = sparkpost_health,
    .close = sparkpost_close,
};

CONNECTOR_REGISTER(sparkpost_ops)
