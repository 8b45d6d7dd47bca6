/*
 * The resend connector: Resend's POST {base_url}/emails takes no raw
 * MIME, so each message is parsed with GMime (mime_fields) and sent as
 * Resend's JSON with a Bearer key, on the agent's loop through
 * http_multi.  Our message id goes as the Idempotency-Key, so a resend
 * after an ambiguous end (no answer) is not sent twice by Resend.
 *
 * The envelope decides who gets the message: an envelope recipient named
 * in To goes into "to", one named in Cc into "cc", any other into "bcc"
 * (arrays of bare addresses, at most 50 each; Resend requires a "to", so
 * a message with no envelope recipient in To is refused).  "from" and
 * "reply_to" are "Name <addr>" strings; "subject", "text", "html",
 * "attachments" ({content base64, filename, content_type}) and "headers"
 * (minus those Resend sets itself) come from the message.  A message that
 * cannot be carried is refused by send(), so the agent reports it
 * transient and another provider may take it.
 *
 * Answers (PROVIDERS.md): 2xx is delivered with the "id"; 400 and 422
 * permanent with Resend's message; 401 and 403 the account's, and so is a
 * 429 named daily_quota_exceeded or monthly_quota_exceeded; any other 429
 * throttled; 5xx and others transient; no answer after the request went
 * out ambiguous.  No probe (see resend_api): a provider down for its
 * account comes back by one trial message per probe_interval_s.  Open,
 * send, health and close are conn_http's; the key lives in the
 * Authorization header of each request only and is never logged.
 */
#include "agent/conn_http.h"
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

#include <gmime/gmime.h>
#include <jansson.h>

#define RESEND_DEFAULT_URL "https://api.resend.com"
#define RESEND_LIST_MAX 50 /* recipients in each of to, cc, bcc */

/* Headers Resend sets from other fields. */
static const char *const skip_headers[] = {"received",
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

/* Where Resend takes the bodies and attachments. */
static const struct mime_content_names content_names = {
    .text = "text",
    .html = "html",
    .attachments = "attachments",
    .attach = {.filename = "filename",
	       .content = "content",
	       .type = "content_type"},
    .cannot_attach = "an attachment Resend cannot carry",
};

/* "to", "cc", "bcc" as arrays of envelope recipients. */
static const char *
set_recipients(json_t *root, GMimeMessage *msg, const struct connector_job *job)
{
	static const char *const keys[] = {"to", "cc", "bcc"};
	json_t *lists[3], *v;
	size_t i, k;
	const char *why = NULL;

	for (k = 0; k < 3; k++)
		lists[k] = json_array();
	for (i = 0; why == NULL && i < job->nrcpt; i++) {
		k = (size_t)mime_fields_rcpt_kind(msg, job->rcpt[i]);
		v = json_string(job->rcpt[i]);
		if (lists[k] == NULL || v == NULL ||
		    json_array_append_new(lists[k], v) != 0)
			why = "a recipient that is not UTF-8";
	}
	/* Resend requires a to; putting a Bcc there would show it. */
	if (why == NULL && json_array_size(lists[0]) == 0)
		why = "no envelope recipient in To, which Resend requires";
	for (k = 0; why == NULL && k < 3; k++) {
		if (json_array_size(lists[k]) > RESEND_LIST_MAX)
			why = "more recipients than Resend takes";
		else if (json_array_size(lists[k]) > 0 &&
			 json_object_set(root, keys[k], lists[k]) != 0)
			why = "out of memory";
	}
	for (k = 0; k < 3; k++)
		json_decref(lists[k]);
	return why;
}

/* The fields of root from the headers and parts of msg. */
static const char *
fill_body(json_t *root, GMimeMessage *msg)
{
	InternetAddress *ia;
	const char *why;
	json_t *v;

	if (!mime_fields_set_mailbox(
		root, "from", mime_fields_first(g_mime_message_get_from(msg))))
		return "no From mailbox";
	ia = mime_fields_first(g_mime_message_get_reply_to(msg));
	if (ia != NULL && !mime_fields_set_mailbox(root, "reply_to", ia))
		return "a Reply-To that is not a mailbox";
	if (!mime_fields_set_str(root, "subject",
				 g_mime_message_get_subject(msg)))
		return "a Subject that is not UTF-8";
	why = mime_fields_content(root, msg, &content_names);
	v = why == NULL ? mime_fields_headers(msg, skip_headers) : NULL;
	if (why == NULL &&
	    (v == NULL || json_object_set_new(root, "headers", v) != 0))
		why = "a header that is not UTF-8";
	return why;
}

/* The recipients, then the other fields. */
static const char *
fill_root(json_t *root, GMimeMessage *msg, const struct connector_job *job,
	  void *arg)
{
	const char *why = set_recipients(root, msg, job);

	(void)arg;
	return why != NULL ? why : fill_body(root, msg);
}

/* The class of an answer, from its status and Resend's error name. */
static int
classify(const struct http_result *hr, const char *name, int outcome,
	 uint32_t *retry_ms)
{
	if (outcome == OUTCOME_THROTTLED && name != NULL &&
	    (strcmp(name, "daily_quota_exceeded") == 0 ||
	     strcmp(name, "monthly_quota_exceeded") == 0)) {
		*retry_ms = 0;
		return OUTCOME_ACCOUNT;
	}
	if (outcome != HTTP_CLASS_CONNECTOR)
		return outcome;
	if (hr->status == 400 || hr->status == 422)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT;
}

/* The class, the id, and Resend's error name and message. */
static void
resend_answer(void *ctx, const struct connector_job *job,
	      const struct http_result *hr, json_t *ans,
	      struct conn_http_answer *a)
{
	const char *id = json_string_value(json_object_get(ans, "id"));
	const char *msg = json_string_value(json_object_get(ans, "message"));
	const char *name = json_string_value(json_object_get(ans, "name"));

	(void)ctx;
	(void)job;
	a->outcome = classify(hr, name, a->outcome, &a->retry_after_ms);
	conn_http_answer_words(a, id, msg);
	snprintf(a->tag, sizeof(a->tag), " name=%.47s",
		 name != NULL ? name : "-");
}

/* The body, and our message id as the Idempotency-Key. */
static const char *
resend_build(void *ctx, const struct connector_job *job, CURL *easy,
	     struct conn_http_request *rq)
{
	const char *why;
	char *idem;

	(void)ctx;
	(void)easy;
	rq->path = "/emails";
	rq->body = mime_fields_json(job, fill_root, NULL, &why);
	if (rq->body == NULL)
		return why;
	idem = xasprintf("Idempotency-Key: %s", job->message_id);
	rq->headers = curl_slist_append(NULL, idem);
	free(idem);
	return rq->headers == NULL ? "out of memory" : NULL;
}

/*
 * No probe: a sending-only key (the kind a relay should hold) is refused
 * by every call but POST /emails, so a probe would keep it down for good.
 */
static const struct conn_http_api resend_api = {
    .type = "resend",
    .default_url = RESEND_DEFAULT_URL,
    .secret_key = "api_key_file",
    .auth_prefix = "Authorization: Bearer ",
    .gmime = true,
    .build = resend_build,
    .answer = resend_answer,
};

static const char *const resend_required[] = {"api_key_file", NULL};
static const char *const resend_optional[] = {CONN_HTTP_OPTIONAL_KEYS};
static const char *const resend_secret[] = {"api_key_file", NULL};

/* The limit: 40 MB after base64 (conn_limits.h). */
CONN_HTTP_REGISTER(resend, NULL, NULL, CONN_LIMIT_RESEND)
