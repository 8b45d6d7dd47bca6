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
 * the account) are the account's; 400, 415 and 422 the message's
 * (413, its size: too_large, as conn_http makes every 413);
 * 429 throttled (Retry-After, else the 2 s SparkPost advises); 5xx and
 * other statuses transient; no answer after the request went out
 * ambiguous.  The probe is GET {base_url}/api/v1/account with the key.
 * Open, send, health and close are conn_http's; the key lives in the
 * Authorization header of each request only and is never logged.
 */
#include "agent/conn_http.h"
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

static int
status_class(long status, const char *code)
{
	if (status == 420 || (status == 400 && strcmp(code, "7001") == 0))
		return OUTCOME_ACCOUNT;
	if (status == 400 || status == 415 || status == 422)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT;
}

/*
 * The class from results (an id, how many recipients were taken) or
 * errors[0] (code and message).
 */
static void
sparkpost_answer(void *ctx, const struct connector_job *job,
		 const struct http_result *hr, json_t *ans,
		 struct conn_http_answer *a)
{
	json_t *res = json_object_get(ans, "results"); /* borrowed */
	json_t *err = json_array_get(json_object_get(ans, "errors"), 0);
	json_t *id = json_object_get(res, "id");
	json_t *ok = json_object_get(res, "total_accepted_recipients");
	json_t *no = json_object_get(res, "total_rejected_recipients");
	const char *code = json_string_value(json_object_get(err, "code"));
	const char *msg = json_string_value(json_object_get(err, "message"));

	(void)ctx;
	(void)job;
	if (a->outcome == HTTP_CLASS_CONNECTOR)
		a->outcome = status_class(hr->status, code != NULL ? code : "");
	if (a->outcome == OUTCOME_THROTTLED && a->retry_after_ms == 0)
		a->retry_after_ms = SPARKPOST_THROTTLE_MS;
	if (msg != NULL)
		snprintf(a->why, sizeof(a->why), "%s", msg);
	if (a->outcome != OUTCOME_DELIVERED)
		return;
	if (!json_is_string(id)) {
		a->outcome = OUTCOME_TRANSIENT; /* not SparkPost's answer */
		snprintf(a->why, sizeof(a->why), "an answer without an id");
	} else if (json_is_integer(ok) && json_integer_value(ok) == 0) {
		a->outcome = OUTCOME_PERMANENT;
		snprintf(a->why, sizeof(a->why), "no recipient accepted");
	} else {
		snprintf(a->id, sizeof(a->id), "%s", json_string_value(id));
		a->why[0] = '\0';
		if (json_is_integer(no) && json_integer_value(no) > 0)
			snprintf(a->why, sizeof(a->why),
				 "rejected %lld of the recipients",
				 (long long)json_integer_value(no));
	}
}

static const char *
sparkpost_build(void *ctx, const struct connector_job *job, CURL *easy,
		struct conn_http_request *rq)
{
	(void)ctx;
	(void)easy;
	rq->path = "/api/v1/transmissions";
	rq->body = build_body(job);
	return rq->body == NULL ? "not UTF-8" : NULL;
}

static const struct conn_http_api sparkpost_api = {
    .type = "sparkpost",
    .default_url = SPARKPOST_DEFAULT_URL,
    .secret_key = "api_key_file",
    .auth_prefix = "Authorization: ", /* SparkPost takes no scheme word */
    .probe_path = "/api/v1/account",
    .build = sparkpost_build,
    .answer = sparkpost_answer,
};

static const char *const sparkpost_required[] = {"api_key_file", NULL};
static const char *const sparkpost_optional[] = {CONN_HTTP_OPTIONAL_KEYS};
static const char *const sparkpost_secret[] = {"api_key_file", NULL};

/* The limit: conn_limits.h. */
CONN_HTTP_REGISTER(sparkpost, conn_http_probe, NULL, CONN_LIMIT_SPARKPOST)
