/*
 * The mailjet connector: Mailjet's Send API v3.1, POST
 * {base_url}/v3.1/send, takes no raw MIME, so each message is parsed with
 * GMime (mime_fields) and sent as one entry of "Messages", with Basic auth
 * API key:secret key, on the agent's loop through http_multi.
 *
 * The envelope decides who gets the message: an envelope recipient named
 * in To goes into "To", one named in Cc into "Cc", any other into "Bcc"
 * (arrays of {Email, Name}, at most 50 in all; a message with no envelope
 * recipient in To is refused: naming a Bcc recipient there would show it).
 * "From" and "ReplyTo" are {Email, Name}; "Subject", "TextPart",
 * "HTMLPart", "Attachments" ({ContentType, Filename, Base64Content}),
 * "InlinedAttachments" (the same with ContentID) and "Headers" (minus
 * those Mailjet sets itself) come from the message, and "CustomID" is our
 * message id, so Mailjet's events name it.  A message that cannot be
 * carried is refused by send(), so the agent reports it transient and
 * another provider may take it.
 *
 * The API's own parts are fill_root() (the request), mailjet_answer()
 * (the answer) and the probe's path; open, send, health, probe and close
 * are conn_http's.  Answers (PROVIDERS.md): 200 with the
 * message's Status "success" is delivered, the provider id being the
 * MessageIDs of its recipients; if Mailjet lists fewer recipients than we
 * sent it is still delivered (the others cannot be resent without a
 * duplicate), the count in the detail, as sparkpost's partial rejection.
 * 401, 403 and the account codes (mj-0001, mj-0015, send-0008) are the
 * account's; other 400s (mj-0013 invalid address, send-0015 too many
 * recipients) permanent with Mailjet's message (413: too_large, as
 * conn_http makes every 413); 429 throttled;
 * 5xx, others and a 200 without "success" transient; no answer after the
 * request went out ambiguous.  The probe is GET {base_url}/v3/REST/sender.
 * The keys are given to curl only as Basic auth's user and password and
 * are never logged.
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

#define MAILJET_DEFAULT_URL "https://api.mailjet.com"
#define MAILJET_RCPT_MAX 50 /* recipients in To, Cc and Bcc together */

/* Headers Mailjet sets from other fields. */
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

/* Mailjet's error codes that are about the account, not the message. */
static const char *const account_codes[] = {"mj-0001", "mj-0015", "send-0008",
					    NULL};

/* {Email, Name} of mime_fields' {email, name}; consumes in. */
static json_t *
mj_address(json_t *in)
{
	json_t *o = in != NULL ? json_object() : NULL;
	json_t *name = json_object_get(in, "name");

	if (o == NULL ||
	    json_object_set(o, "Email", json_object_get(in, "email")) != 0 ||
	    (name != NULL && json_object_set(o, "Name", name) != 0)) {
		json_decref(o);
		o = NULL;
	}
	json_decref(in);
	return o;
}

/* "To", "Cc", "Bcc" as arrays of {Email, Name} of envelope recipients. */
static const char *
set_recipients(json_t *m, GMimeMessage *msg, const struct connector_job *job)
{
	static const char *const keys[] = {"To", "Cc", "Bcc"};
	json_t *lists[3], *v;
	size_t i, k;
	const char *why = NULL;

	if (job->nrcpt > MAILJET_RCPT_MAX)
		return "more recipients than Mailjet takes";
	for (k = 0; k < 3; k++)
		lists[k] = json_array();
	for (i = 0; why == NULL && i < job->nrcpt; i++) {
		k = (size_t)mime_fields_rcpt_kind(msg, job->rcpt[i]);
		v = mj_address(mime_fields_rcpt(msg, job->rcpt[i]));
		if (lists[k] == NULL || v == NULL ||
		    json_array_append_new(lists[k], v) != 0)
			why = "a recipient that is not UTF-8";
	}
	/* Putting a Bcc recipient in To would show it to the others. */
	if (why == NULL && json_array_size(lists[0]) == 0)
		why = "no envelope recipient in To";
	for (k = 0; why == NULL && k < 3; k++)
		if (json_array_size(lists[k]) > 0 &&
		    json_object_set(m, keys[k], lists[k]) != 0)
			why = "out of memory";
	for (k = 0; k < 3; k++)
		json_decref(lists[k]);
	return why;
}

/* An attachment in Mailjet's names. */
static const struct mime_attach_names attach_names = {
    .filename = "Filename",
    .content = "Base64Content",
    .type = "ContentType",
    .content_id = "ContentID",
};

/* Sets m's Attachments and InlinedAttachments from mime_fields' ones. */
static bool
set_attachments(json_t *m, json_t *in)
{
	json_t *att = json_array(), *inl = json_array(), *a, *o;
	const char *cid;
	bool ok = att != NULL && inl != NULL;
	size_t i;

	json_array_foreach(in, i, a)
	{
		if (!ok)
			break;
		/* Inline parts with a Content-ID are what HTML refers to. */
		cid = json_string_value(json_object_get(a, "content_id"));
		o = mime_fields_attachment(a, &attach_names);
		/* append_new takes o, even when it fails. */
		ok = o != NULL &&
		     json_array_append_new(cid != NULL ? inl : att, o) == 0;
	}
	ok = ok &&
	     (json_array_size(att) == 0 ||
	      json_object_set(m, "Attachments", att) == 0) &&
	     (json_array_size(inl) == 0 ||
	      json_object_set(m, "InlinedAttachments", inl) == 0);
	json_decref(att);
	json_decref(inl);
	return ok;
}

/* The fields of m from the headers and parts of msg. */
static const char *
fill_message(json_t *m, GMimeMessage *msg, const struct connector_job *job)
{
	InternetAddress *ia;
	struct mime_body mb;
	const char *why = NULL;
	json_t *v;

	v = mj_address(mime_fields_mailbox(
	    mime_fields_first(g_mime_message_get_from(msg))));
	if (v == NULL || json_object_set_new(m, "From", v) != 0)
		return "no From mailbox";
	ia = mime_fields_first(g_mime_message_get_reply_to(msg));
	v = ia != NULL ? mj_address(mime_fields_mailbox(ia)) : NULL;
	if (ia != NULL &&
	    (v == NULL || json_object_set_new(m, "ReplyTo", v) != 0))
		return "a Reply-To that is not a mailbox";
	if (!mime_fields_set_str(m, "Subject",
				 g_mime_message_get_subject(msg)) ||
	    !mime_fields_set_str(m, "CustomID", job->message_id))
		return "a Subject that is not UTF-8";
	why = mime_fields_body(msg, &mb);
	if (why != NULL)
		return why;
	if ((mb.text != NULL && !mime_fields_set_str(m, "TextPart", mb.text)) ||
	    (mb.html != NULL && !mime_fields_set_str(m, "HTMLPart", mb.html)))
		why = "out of memory";
	else if (!set_attachments(m, mb.attachments))
		why = "an attachment Mailjet cannot carry";
	mime_fields_body_free(&mb);
	v = why == NULL ? mime_fields_headers(msg, skip_headers) : NULL;
	if (why == NULL &&
	    (v == NULL || json_object_set_new(m, "Headers", v) != 0))
		why = "a header that is not UTF-8";
	return why;
}

/* root is {"Messages": [m]}: m's recipients, then its other fields. */
static const char *
fill_root(json_t *root, GMimeMessage *msg, const struct connector_job *job,
	  void *arg)
{
	json_t *m = json_object();
	const char *why;

	(void)arg;
	/* set_new takes the array, even when it fails. */
	if (m == NULL ||
	    json_object_set_new(root, "Messages", json_pack("[O]", m)) != 0) {
		json_decref(m);
		return "out of memory";
	}
	why = set_recipients(m, msg, job);
	if (why == NULL)
		why = fill_message(m, msg, job);
	json_decref(m);
	return why;
}

/* Our one message's entry of the answer's "Messages", or NULL. */
static json_t *
answer_message(json_t *ans)
{
	return json_array_get(json_object_get(ans, "Messages"), 0);
}

/*
 * The first error of the answer: the message's Errors[0], else the
 * request-level error (the answer itself), or NULL.
 */
static json_t *
answer_error(json_t *ans)
{
	json_t *e =
	    json_array_get(json_object_get(answer_message(ans), "Errors"), 0);

	if (e != NULL)
		return e;
	return json_object_get(ans, "ErrorCode") != NULL ? ans : NULL;
}

/*
 * Whether any error of the answer is about the account: an account code,
 * or an error whose own StatusCode is 401 or 403.
 */
static bool
account_error(json_t *ans)
{
	json_t *errs = json_object_get(answer_message(ans), "Errors"), *e;
	const char *code;
	json_int_t sc;
	size_t i, k, n = json_array_size(errs);

	for (i = 0; i <= n; i++) {
		e = i < n ? json_array_get(errs, i) : ans;
		code = json_string_value(json_object_get(e, "ErrorCode"));
		sc = json_integer_value(json_object_get(e, "StatusCode"));
		/* A 400 may carry a message refused for the account's sake. */
		if (sc == 401 || sc == 403)
			return true;
		for (k = 0; code != NULL && account_codes[k] != NULL; k++)
			if (strcmp(code, account_codes[k]) == 0)
				return true;
	}
	return false;
}

/* The class of an answer, from its status and Mailjet's error codes. */
static int
classify(const struct http_result *hr, json_t *ans, int outcome)
{
	const char *status =
	    json_string_value(json_object_get(answer_message(ans), "Status"));

	if (outcome == OUTCOME_DELIVERED)
		/* A 200 whose message did not succeed did not send. */
		return status != NULL && strcmp(status, "success") == 0
			   ? OUTCOME_DELIVERED
			   : OUTCOME_TRANSIENT;
	if (outcome != HTTP_CLASS_CONNECTOR)
		return outcome;
	if (account_error(ans))
		return OUTCOME_ACCOUNT;
	if (hr->status == 400)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT;
}

/*
 * The MessageIDs of the recipients Mailjet listed, comma-separated, as many
 * whole ones as fit in pmid; returns how many recipients it listed.
 */
static size_t
delivered_ids(json_t *ans, char *pmid, size_t len)
{
	static const char *const keys[] = {"To", "Cc", "Bcc"};
	json_t *m = answer_message(ans), *r, *id;
	size_t k, i, n = 0, used = 0;
	char one[32];
	int w;

	pmid[0] = '\0';
	for (k = 0; k < 3; k++)
		json_array_foreach(json_object_get(m, keys[k]), i, r)
		{
			n++;
			id = json_object_get(r, "MessageID");
			if (!json_is_integer(id))
				continue;
			w = snprintf(one, sizeof(one), "%s%lld",
				     used > 0 ? "," : "",
				     (long long)json_integer_value(id));
			if (w > 0 && used + (size_t)w < len) {
				memcpy(pmid + used, one, (size_t)w + 1);
				used += (size_t)w;
			}
		}
	return n;
}

/*
 * The class; delivered: the recipients' MessageIDs, and how many Mailjet
 * listed when fewer than we sent; else Mailjet's first error.
 */
static void
mailjet_answer(void *ctx, const struct connector_job *job,
	       const struct http_result *hr, json_t *ans,
	       struct conn_http_answer *a)
{
	json_t *e = answer_error(ans);
	const char *why = json_string_value(json_object_get(e, "ErrorMessage"));
	const char *code = json_string_value(json_object_get(e, "ErrorCode"));
	size_t listed;

	(void)ctx;
	a->outcome = classify(hr, ans, a->outcome);
	if (a->outcome == OUTCOME_DELIVERED && job != NULL) {
		/* Accepted even without ids: resending would duplicate. */
		listed = delivered_ids(ans, a->id, sizeof(a->id));
		if (listed < job->nrcpt)
			snprintf(a->why, sizeof(a->why),
				 "accepted %zu of %zu recipients", listed,
				 job->nrcpt);
		return;
	}
	if (why != NULL)
		snprintf(a->why, sizeof(a->why), "%s", why);
	snprintf(a->tag, sizeof(a->tag), " code=%.47s",
		 code != NULL ? code : "-");
}

static const char *
mailjet_build(void *ctx, const struct connector_job *job, CURL *easy,
	      struct conn_http_request *rq)
{
	const char *why;

	(void)ctx;
	(void)easy;
	rq->path = "/v3.1/send";
	rq->body = mime_fields_json(job, fill_root, NULL, &why);
	return why;
}

/* Basic auth, the API key as the user and the secret key as password. */
static const struct conn_http_api mailjet_api = {
    .type = "mailjet",
    .default_url = MAILJET_DEFAULT_URL,
    .secret_key = "secret_key_file",
    .basic_user_key = "api_key_file",
    .probe_path = "/v3/REST/sender",
    .gmime = true,
    .build = mailjet_build,
    .answer = mailjet_answer,
};

static const char *const mailjet_required[] = {"api_key_file",
					       "secret_key_file", NULL};
static const char *const mailjet_optional[] = {CONN_HTTP_OPTIONAL_KEYS};
static const char *const mailjet_secret[] = {"api_key_file", "secret_key_file",
					     NULL};

/* The limit: conn_limits.h. */
CONN_HTTP_REGISTER(mailjet, conn_http_probe, NULL, CONN_LIMIT_MAILJET)
