/*
 * The sendgrid connector: SendGrid's v3 Mail Send takes no raw MIME, so
 * each message is parsed with GMime and rebuilt as the JSON it wants,
 * POST {base_url}/v3/mail/send with a Bearer key, on the agent's loop
 * through http_multi (one per provider, so connections are reused).
 *
 * The envelope decides who gets the message: an envelope recipient named
 * in To goes into the personalization's "to", one named in Cc into "cc",
 * any other into "bcc" (SendGrid needs a "to": see personalizations()).  From,
 * Reply-To and Subject come from the headers, decoded; text/plain then
 * text/html form "content"; parts with a file name or an attachment disposition
 * become "attachments" (base64, with type, file name, and the content id of an
 * inline part); other headers pass in "headers" except those SendGrid
 * refuses or sets itself.  A message that cannot be carried (unparsable,
 * over SendGrid's recipient limit, not UTF-8) is refused by send(), so the
 * agent reports it transient and another provider may take it.
 *
 * Answers (PROVIDERS.md): 2xx is delivered with the X-Message-Id header
 * as the id; 400 permanent with SendGrid's first error message (413:
 * too_large, as conn_http makes every 413);
 * 401/403 account; 429 throttled, for Retry-After or else until
 * X-RateLimit-Reset; 5xx and other statuses transient; no answer after
 * the request went out ambiguous.  The probe is GET {base_url}/v3/scopes
 * with the key.  Open, send, health and close are conn_http's; the key
 * lives in the Authorization header of each request only and is never
 * logged.
 */
#include "agent/conn_http.h"
#include "agent/conn_sendgrid.h"
#include "agent/mime_fields.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "link/link.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <gmime/gmime.h>
#include <jansson.h>

#define SENDGRID_DEFAULT_URL "https://api.sendgrid.com"
#define SENDGRID_RCPT_MAX 1000

/* Headers SendGrid refuses or sets from other fields. */
static const char *const skip_headers[] = {"x-sg-id",
					   "x-sg-eid",
					   "received",
					   "dkim-signature",
					   "content-type",
					   "content-transfer-encoding",
					   "to",
					   "from",
					   "subject",
					   "reply-to",
					   "cc",
					   "bcc",
					   "mime-version",
					   "date",
					   NULL};

/* {"to": [r]} for one Bcc-only recipient, or NULL. */
static json_t *
alone(json_t *r)
{
	json_t *p = json_object(), *to = json_array();

	if (p == NULL || to == NULL || json_array_append(to, r) != 0 ||
	    json_object_set_new(p, "to", to) != 0) {
		json_decref(p);
		json_decref(to);
		return NULL;
	}
	return p;
}

/*
 * The personalizations: every envelope recipient in its place.  SendGrid
 * needs a "to" in each: with none in To, the first Cc (seen by all anyway)
 * takes it; with only Bcc recipients, each gets a personalization of its
 * own with itself as "to", so none sees another.
 */
static json_t *
personalizations(GMimeMessage *msg, const struct connector_job *job)
{
	json_t *pers = json_array(), *p = json_object(), *lists[3], *r;
	const char *names[3] = {"to", "cc", "bcc"};
	size_t i, k;
	bool ok = pers != NULL && p != NULL;

	for (k = 0; k < 3; k++)
		lists[k] = json_array();
	for (i = 0; ok && i < job->nrcpt; i++) {
		k = (size_t)mime_fields_rcpt_kind(msg, job->rcpt[i]);
		r = mime_fields_rcpt(msg, job->rcpt[i]);
		ok = r != NULL && json_array_append_new(lists[k], r) == 0;
	}
	if (ok && json_array_size(lists[0]) == 0 &&
	    json_array_size(lists[1]) > 0) {
		ok = json_array_append(lists[0], json_array_get(lists[1], 0)) ==
			 0 &&
		     json_array_remove(lists[1], 0) == 0;
	}
	if (ok && json_array_size(lists[0]) == 0) {
		for (i = 0; ok && i < json_array_size(lists[2]); i++)
			ok = json_array_append_new(
				 pers, alone(json_array_get(lists[2], i))) == 0;
	} else {
		for (k = 0; ok && k < 3; k++)
			if (json_array_size(lists[k]) > 0)
				ok =
				    json_object_set(p, names[k], lists[k]) == 0;
		ok = ok && json_array_append(pers, p) == 0;
	}
	for (k = 0; k < 3; k++)
		json_decref(lists[k]);
	json_decref(p);
	if (!ok || json_array_size(pers) == 0) {
		json_decref(pers);
		return NULL;
	}
	return pers;
}

/* {"type": type, "value": text} appended to content, unless text is NULL. */
static bool
add_content(json_t *content, const char *type, const char *text)
{
	json_t *o;

	if (text == NULL)
		return true;
	o = json_object();
	if (o == NULL || !mime_fields_set_str(o, "type", type) ||
	    !mime_fields_set_str(o, "value", text) ||
	    json_array_append_new(content, o) != 0) {
		json_decref(o);
		return false;
	}
	return true;
}

/* The top-level fields from the headers and the parts. */
static const char *
fill_body(json_t *root, GMimeMessage *msg)
{
	InternetAddress *ia;
	struct mime_body mb;
	json_t *v, *content;
	const char *why = NULL;

	v = mime_fields_mailbox(
	    mime_fields_first(g_mime_message_get_from(msg)));
	if (v == NULL || json_object_set_new(root, "from", v) != 0)
		return "no From mailbox";
	ia = mime_fields_first(g_mime_message_get_reply_to(msg));
	if (ia != NULL) {
		v = mime_fields_mailbox(ia);
		if (v == NULL || json_object_set_new(root, "reply_to", v) != 0)
			return "a Reply-To that is not a mailbox";
	}
	if (!mime_fields_set_str(root, "subject",
				 g_mime_message_get_subject(msg)))
		return "a Subject that is not UTF-8";
	why = mime_fields_body(msg, &mb);
	if (why != NULL)
		return why;
	/* Owned by root from here on: nothing to free on failure. */
	content = json_array();
	/* SendGrid wants text/plain before text/html. */
	if (content == NULL ||
	    json_object_set_new(root, "content", content) != 0 ||
	    !add_content(content, "text/plain", mb.text) ||
	    !add_content(content, "text/html", mb.html) ||
	    (json_array_size(mb.attachments) > 0 &&
	     json_object_set(root, "attachments", mb.attachments) != 0))
		why = "out of memory";
	mime_fields_body_free(&mb);
	v = why == NULL ? mime_fields_headers(msg, skip_headers) : NULL;
	if (why == NULL &&
	    (v == NULL || json_object_set_new(root, "headers", v) != 0))
		why = "a header that is not UTF-8";
	return why;
}

/* The personalizations, then the other fields. */
static const char *
fill_root(json_t *root, GMimeMessage *msg, const struct connector_job *job,
	  void *arg)
{
	json_t *pers;

	(void)arg;
	if (job->nrcpt > SENDGRID_RCPT_MAX)
		return "more recipients than SendGrid takes";
	pers = personalizations(msg, job);
	if (pers == NULL ||
	    json_object_set_new(root, "personalizations", pers) != 0)
		return "a recipient that is not UTF-8";
	return fill_body(root, msg);
}

char *
sendgrid_build_body(const struct connector_job *job, const char **why)
{
	return mime_fields_json(job, fill_root, NULL, why);
}

/* A 429 without Retry-After: wait until X-RateLimit-Reset (epoch s). */
static uint32_t
reset_ms(const struct http_result *hr)
{
	const char *v = http_multi_header(hr, "X-RateLimit-Reset");
	char *end;
	long long t, now = (long long)time(NULL);

	if (v == NULL)
		return 0;
	errno = 0;
	t = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0')
		return 0;
	if (t <= now)
		return 1000;
	if (t - now > (long long)(HTTP_RETRY_AFTER_MAX_MS / 1000))
		return HTTP_RETRY_AFTER_MAX_MS;
	return (uint32_t)(t - now) * 1000u;
}

/* 400 is the message's (413 its size: conn_http); the first error's words
 * are SendGrid's. */
static void
sendgrid_answer(void *ctx, const struct connector_job *job,
		const struct http_result *hr, json_t *ans,
		struct conn_http_answer *a)
{
	json_t *v = json_object_get(
	    json_array_get(json_object_get(ans, "errors"), 0), "message");
	const char *id;

	(void)ctx;
	(void)job;
	if (a->outcome == HTTP_CLASS_CONNECTOR)
		a->outcome =
		    hr->status == 400 ? OUTCOME_PERMANENT : OUTCOME_TRANSIENT;
	if (a->outcome == OUTCOME_THROTTLED && a->retry_after_ms == 0)
		a->retry_after_ms = reset_ms(hr);
	id = http_multi_header(hr, "X-Message-Id");
	if (a->outcome == OUTCOME_DELIVERED && id != NULL)
		snprintf(a->id, sizeof(a->id), "%s", id);
	if (json_is_string(v))
		snprintf(a->why, sizeof(a->why), "%s", json_string_value(v));
}

static const char *
sendgrid_build(void *ctx, const struct connector_job *job, CURL *easy,
	       struct conn_http_request *rq)
{
	const char *why;

	(void)ctx;
	(void)easy;
	rq->path = "/v3/mail/send";
	rq->body = sendgrid_build_body(job, &why);
	return why;
}

static const struct conn_http_api sendgrid_api = {
    .type = "sendgrid",
    .default_url = SENDGRID_DEFAULT_URL,
    .secret_key = "api_key_file",
    .auth_prefix = "Authorization: Bearer ",
    .gmime = true,
    .probe_path = "/v3/scopes",
    .build = sendgrid_build,
    .answer = sendgrid_answer,
};

static const char *const sendgrid_required[] = {"api_key_file", NULL};
static const char *const sendgrid_optional[] = {CONN_HTTP_OPTIONAL_KEYS};
static const char *const sendgrid_secret[] = {"api_key_file", NULL};

/* The limit: conn_limits.h. */
CONN_HTTP_REGISTER(sendgrid, conn_http_probe, NULL, CONN_LIMIT_SENDGRID)
