/*
 * The postmark connector: Postmark's POST {base_url}/email takes no raw
 * MIME, so each message is parsed with GMime (mime_fields) and sent as
 * Postmark's JSON, with the server token in X-Postmark-Server-Token, on
 * the agent's loop through http_multi.
 *
 * The envelope decides who gets the message: an envelope recipient named
 * in To goes into "To", one named in Cc into "Cc", any other into "Bcc"
 * (comma-separated, at most 50 each, as Postmark wants; Postmark requires
 * a To, so a message with no envelope recipient in To is refused).  From and
 * Reply-To are "Name <addr>" strings; TextBody, HtmlBody, Attachments
 * (Name, Content base64, ContentType, ContentID of inline parts) and
 * Headers ([{Name, Value}], minus those Postmark sets itself) come from
 * the parts and headers; MessageStream from `message_stream`.  A message
 * that cannot be carried is refused by send(), so the agent reports it
 * transient and another provider may take it.
 *
 * Answers (PROVIDERS.md): 200 with ErrorCode 0 is delivered with the
 * MessageID; 401 and ErrorCode 10 (bad token), and the sender-signature
 * and account ErrorCodes (400, 401, 405, 412, 413) are the account's;
 * other 422s are permanent with Postmark's Message (an HTTP 413:
 * too_large, as conn_http makes every 413); 429
 * throttled; 5xx, others and a 403 (a network-layer block, HTML)
 * transient; no answer after the request went out ambiguous.  The probe
 * is GET {base_url}/server with the token.  Open, send, health and close
 * are conn_http's; the token lives in the header of each request only
 * and is never logged.
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

#define POSTMARK_DEFAULT_URL "https://api.postmarkapp.com"
#define POSTMARK_LIST_MAX 50 /* recipients in each of To, Cc, Bcc */

/* Headers Postmark sets from other fields. */
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

/* Where Postmark takes the bodies and attachments. */
static const struct mime_content_names content_names = {
    .text = "TextBody",
    .html = "HtmlBody",
    .attachments = "Attachments",
    .attach = {.filename = "Name",
	       .content = "Content",
	       .type = "ContentType",
	       .content_id = "ContentID"},
    .cannot_attach = "an attachment Postmark cannot carry",
};

/* Postmark's ErrorCodes that are about the account, not the message. */
static const long account_codes[] = {10, 400, 401, 405, 412, 413};

/* "To", "Cc", "Bcc" as comma-separated envelope recipients. */
static const char *
set_recipients(json_t *root, GMimeMessage *msg, const struct connector_job *job)
{
	static const char *const keys[] = {"To", "Cc", "Bcc"};
	GString *lists[3];
	size_t i, k, n[3] = {0, 0, 0};
	const char *why = NULL;

	for (k = 0; k < 3; k++)
		lists[k] = g_string_new(NULL);
	for (i = 0; i < job->nrcpt; i++) {
		k = (size_t)mime_fields_rcpt_kind(msg, job->rcpt[i]);
		/* Commas or quotes would split or break Postmark's list. */
		if (strpbrk(job->rcpt[i], ",\"<>") != NULL)
			why = "a recipient Postmark cannot list";
		if (n[k]++ > 0)
			g_string_append(lists[k], ", ");
		g_string_append(lists[k], job->rcpt[i]);
	}
	/* Postmark requires a To; putting a Bcc there would show it. */
	if (why == NULL && n[0] == 0)
		why = "no envelope recipient in To, which Postmark requires";
	for (k = 0; why == NULL && k < 3; k++) {
		if (n[k] > POSTMARK_LIST_MAX)
			why = "more recipients than Postmark takes";
		else if (n[k] > 0 &&
			 !mime_fields_set_str(root, keys[k], lists[k]->str))
			why = "a recipient that is not UTF-8";
	}
	for (k = 0; k < 3; k++)
		g_string_free(lists[k], TRUE);
	return why;
}

/* Headers as [{Name, Value}]. */
static json_t *
headers(GMimeMessage *msg)
{
	json_t *in = mime_fields_headers(msg, skip_headers), *out, *v, *o;
	const char *k;

	out = in != NULL ? json_array() : NULL;
	json_object_foreach(in, k, v)
	{
		o = json_object();
		if (out == NULL || o == NULL ||
		    !mime_fields_set_str(o, "Name", k) ||
		    json_object_set(o, "Value", v) != 0 ||
		    json_array_append_new(out, o) != 0) {
			json_decref(o);
			json_decref(out);
			out = NULL;
			break;
		}
	}
	json_decref(in);
	return out;
}

/* The fields of root from the headers and parts of msg. */
static const char *
fill_body(json_t *root, GMimeMessage *msg, const char *stream)
{
	InternetAddress *ia;
	const char *why;
	json_t *v;

	if (!mime_fields_set_mailbox(
		root, "From", mime_fields_first(g_mime_message_get_from(msg))))
		return "no From mailbox";
	ia = mime_fields_first(g_mime_message_get_reply_to(msg));
	if (ia != NULL && !mime_fields_set_mailbox(root, "ReplyTo", ia))
		return "a Reply-To that is not a mailbox";
	if (!mime_fields_set_str(root, "Subject",
				 g_mime_message_get_subject(msg)))
		return "a Subject that is not UTF-8";
	if (stream != NULL &&
	    !mime_fields_set_str(root, "MessageStream", stream))
		return "out of memory";
	why = mime_fields_content(root, msg, &content_names);
	v = why == NULL ? headers(msg) : NULL;
	if (why == NULL &&
	    (v == NULL || json_object_set_new(root, "Headers", v) != 0))
		why = "a header that is not UTF-8";
	return why;
}

/* The recipients, then the other fields; arg is the message stream. */
static const char *
fill_root(json_t *root, GMimeMessage *msg, const struct connector_job *job,
	  void *arg)
{
	const char *why = set_recipients(root, msg, job);

	return why != NULL ? why : fill_body(root, msg, arg);
}

static bool
account_code(long code)
{
	size_t i;

	for (i = 0; i < sizeof(account_codes) / sizeof(account_codes[0]); i++)
		if (code == account_codes[i])
			return true;
	return false;
}

/* The class of an answer, from its status and Postmark's ErrorCode. */
static int
classify(const struct http_result *hr, json_t *ans, int outcome)
{
	json_t *ec = json_object_get(ans, "ErrorCode"); /* NULL-safe */
	long code = json_is_integer(ec) ? (long)json_integer_value(ec) : -1;

	if (outcome == OUTCOME_DELIVERED)
		/* A 200 that is not ErrorCode 0 did not send. */
		return code == 0            ? OUTCOME_DELIVERED
		       : account_code(code) ? OUTCOME_ACCOUNT
					    : OUTCOME_TRANSIENT;
	if (hr->status == 403)
		return OUTCOME_TRANSIENT; /* a network-layer block, HTML */
	if (outcome != HTTP_CLASS_CONNECTOR)
		return outcome;
	if (account_code(code))
		return OUTCOME_ACCOUNT;
	if (hr->status == 422)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT;
}

/* The class, the MessageID, and Postmark's ErrorCode and Message. */
static void
postmark_answer(void *ctx, const struct connector_job *job,
		const struct http_result *hr, json_t *ans,
		struct conn_http_answer *a)
{
	json_t *ec = json_object_get(ans, "ErrorCode"); /* NULL-safe */
	const char *id = json_string_value(json_object_get(ans, "MessageID"));
	const char *msg = json_string_value(json_object_get(ans, "Message"));

	(void)ctx;
	(void)job;
	a->outcome = classify(hr, ans, a->outcome);
	conn_http_answer_words(a, id, msg);
	snprintf(a->tag, sizeof(a->tag), " code=%lld",
		 json_is_integer(ec) ? (long long)json_integer_value(ec)
				     : -1LL);
}

static const char *
postmark_build(void *ctx, const struct connector_job *job, CURL *easy,
	       struct conn_http_request *rq)
{
	const char *why;

	(void)easy;
	rq->path = "/email";
	rq->body = mime_fields_json(job, fill_root, ctx, &why);
	return why;
}

/* The message_stream, or no context for Postmark's default. */
static int
postmark_open_stream(const struct provider_config *pc, void **ctx, char *err,
		     size_t errlen)
{
	(void)err;
	(void)errlen;
	*ctx = xstrdup_or_null(provider_config_get(pc, "message_stream"));
	return 0;
}

static const struct conn_http_api postmark_api = {
    .type = "postmark",
    .default_url = POSTMARK_DEFAULT_URL,
    .secret_key = "server_token_file",
    .auth_prefix = "X-Postmark-Server-Token: ",
    .probe_path = "/server",
    .gmime = true,
    .open = postmark_open_stream,
    .free = free,
    .build = postmark_build,
    .answer = postmark_answer,
};

static const char *const postmark_required[] = {"server_token_file", NULL};
static const char *const postmark_optional[] = {"message_stream",
						CONN_HTTP_OPTIONAL_KEYS};
static const char *const postmark_secret[] = {"server_token_file", NULL};

/* The limit: 10 MB after base64 (conn_limits.h). */
CONN_HTTP_REGISTER(postmark, conn_http_probe, NULL, CONN_LIMIT_POSTMARK)
