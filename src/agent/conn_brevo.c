/*
 * The brevo connector: Brevo's POST {base_url}/v3/smtp/email takes no raw
 * MIME, so each message is parsed with GMime (mime_fields) and sent as
 * Brevo's JSON, with the key in the api-key header, on the agent's loop
 * through http_multi.
 *
 * The envelope decides who gets the message: an envelope recipient named
 * in To goes into "to", one named in Cc into "cc", any other into "bcc"
 * (arrays of {email, name}; Brevo requires a "to", and naming a Bcc
 * recipient there would show it to the others, so a message with no
 * envelope recipient in To is refused).  "sender" and "replyTo" are
 * {email, name}; "subject", "textContent", "htmlContent", "attachment"
 * ({name, content base64}: Brevo takes the type from the name) and
 * "headers" (minus those Brevo sets itself) come from the message.  A
 * message that cannot be carried is refused by send(), so the agent
 * reports it transient and another provider may take it.
 *
 * The API's own parts are fill_root() (the request), brevo_answer() (the
 * answer) and the probe's path; open, send, health, probe and close are
 * conn_http's.  Answers (PROVIDERS.md): 2xx is delivered
 * with the "messageId"; 401, 402 (no credit), 403 and the account codes
 * (unauthorized, permission_denied, not_enough_credits,
 * account_under_validation) the account's; other 400s permanent with
 * Brevo's message; 429 throttled until Retry-After or x-sib-ratelimit-reset;
 * 5xx and others transient; no answer after the request went out
 * ambiguous.  The probe is GET {base_url}/v3/account with the key, which
 * lives in the header of each request only and is never logged.
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
#include <time.h>

#include <gmime/gmime.h>
#include <jansson.h>

#define BREVO_DEFAULT_URL "https://api.brevo.com"

/* Headers Brevo sets from other fields. */
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

/* Where Brevo takes the bodies and attachments ({name, content}). */
static const struct mime_content_names content_names = {
    .text = "textContent",
    .html = "htmlContent",
    .attachments = "attachment",
    .attach = {.filename = "name", .content = "content"},
    .cannot_attach = "an attachment Brevo cannot carry",
};

/* Brevo's error codes that are about the account, not the message. */
static const char *const account_codes[] = {"unauthorized",
					    "permission_denied",
					    "not_enough_credits",
					    "account_under_validation",
					    "reseller_permission_denied",
					    NULL};

/* "to", "cc", "bcc" as arrays of {email, name} of envelope recipients. */
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
		v = mime_fields_rcpt(msg, job->rcpt[i]);
		if (lists[k] == NULL || v == NULL ||
		    json_array_append_new(lists[k], v) != 0)
			why = "a recipient that is not UTF-8";
	}
	/* Brevo requires a to; putting a Bcc there would show it. */
	if (why == NULL && json_array_size(lists[0]) == 0)
		why = "no envelope recipient in To, which Brevo requires";
	for (k = 0; why == NULL && k < 3; k++)
		if (json_array_size(lists[k]) > 0 &&
		    json_object_set(root, keys[k], lists[k]) != 0)
			why = "out of memory";
	for (k = 0; k < 3; k++)
		json_decref(lists[k]);
	return why;
}

/* o[key] = {email, name} of the first mailbox of list; false if none. */
static bool
set_mailbox(json_t *o, const char *key, InternetAddressList *list)
{
	json_t *v = mime_fields_mailbox(mime_fields_first(list));

	return v != NULL && json_object_set_new(o, key, v) == 0;
}

/* The fields of root from the headers and parts of msg. */
static const char *
fill_body(json_t *root, GMimeMessage *msg)
{
	const char *why;
	json_t *v;

	if (!set_mailbox(root, "sender", g_mime_message_get_from(msg)))
		return "no From mailbox";
	if (mime_fields_first(g_mime_message_get_reply_to(msg)) != NULL &&
	    !set_mailbox(root, "replyTo", g_mime_message_get_reply_to(msg)))
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

static bool
account_code(const char *code)
{
	size_t i;

	for (i = 0; code != NULL && account_codes[i] != NULL; i++)
		if (strcmp(code, account_codes[i]) == 0)
			return true;
	return false;
}

/* The class of an answer, from its status and Brevo's error code. */
static int
classify(const struct http_result *hr, const char *code, int outcome,
	 uint32_t *retry_ms)
{
	if (outcome == OUTCOME_THROTTLED && *retry_ms == 0)
		/* Brevo says when its window resets, in seconds. */
		*retry_ms = http_multi_retry_after_ms(
		    http_multi_header(hr, "x-sib-ratelimit-reset"), time(NULL));
	if (outcome != HTTP_CLASS_CONNECTOR)
		return outcome;
	if (hr->status == 402 || account_code(code))
		return OUTCOME_ACCOUNT;
	/* 413 is too_large: conn_http makes every 413 so. */
	if (hr->status == 400)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT;
}

/* The class, the messageId, and Brevo's error code and message. */
static void
brevo_answer(void *ctx, const struct connector_job *job,
	     const struct http_result *hr, json_t *ans,
	     struct conn_http_answer *a)
{
	const char *id = json_string_value(json_object_get(ans, "messageId"));
	const char *msg = json_string_value(json_object_get(ans, "message"));
	const char *code = json_string_value(json_object_get(ans, "code"));

	(void)ctx;
	(void)job;
	a->outcome = classify(hr, code, a->outcome, &a->retry_after_ms);
	conn_http_answer_words(a, id, msg);
	snprintf(a->tag, sizeof(a->tag), " code=%.47s",
		 code != NULL ? code : "-");
}

static const char *
brevo_build(void *ctx, const struct connector_job *job, CURL *easy,
	    struct conn_http_request *rq)
{
	const char *why;

	(void)ctx;
	(void)easy;
	rq->path = "/v3/smtp/email";
	rq->body = mime_fields_json(job, fill_root, NULL, &why);
	return why;
}

static const struct conn_http_api brevo_api = {
    .type = "brevo",
    .default_url = BREVO_DEFAULT_URL,
    .secret_key = "api_key_file",
    .auth_prefix = "api-key: ",
    .probe_path = "/v3/account",
    .gmime = true,
    .build = brevo_build,
    .answer = brevo_answer,
};

static const char *const brevo_required[] = {"api_key_file", NULL};
static const char *const brevo_optional[] = {CONN_HTTP_OPTIONAL_KEYS};
static const char *const brevo_secret[] = {"api_key_file", NULL};

/* The limit: 20 MB (conn_limits.h). */
CONN_HTTP_REGISTER(brevo, conn_http_probe, NULL, CONN_LIMIT_BREVO)
