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
 * out ambiguous.  Resend has no probe call here.  The key lives in the
 * Authorization header of each request only and is never logged.
 */
#include "agent/connector.h"
#include "agent/http_multi.h"
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

struct resend {
	char *name; /* the provider's */
	char *url;  /* base_url/emails */
	char *auth; /* "Authorization: Bearer KEY" */
	long connect_ms, request_ms;
	struct http_multi *hm;
	connector_done_cb done;
	void *arg;
	int failures; /* consecutive transient or ambiguous ends */
	struct log_rl rl;
};

struct resend_send {
	struct resend *rs;
	struct connector_job *job;
};

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

/* "Name <addr>" of a mailbox, decoded, set as o[key]. */
static bool
set_mailbox(json_t *o, const char *key, InternetAddress *ia)
{
	char *s;
	bool ok;

	if (ia == NULL || !INTERNET_ADDRESS_IS_MAILBOX(ia))
		return false;
	s = internet_address_to_string(ia, NULL, FALSE);
	ok = s != NULL && mime_fields_set_str(o, key, s);
	g_free(s);
	return ok;
}

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

/* Attachments in Resend's names, from mime_fields' ones. */
static json_t *
attachments(json_t *in)
{
	json_t *out = json_array(), *a, *o;
	size_t i;

	json_array_foreach(in, i, a)
	{
		o = json_object();
		if (out == NULL || o == NULL ||
		    json_object_set(o, "filename",
				    json_object_get(a, "filename")) != 0 ||
		    json_object_set(o, "content",
				    json_object_get(a, "content")) != 0 ||
		    json_object_set(o, "content_type",
				    json_object_get(a, "type")) != 0 ||
		    json_array_append_new(out, o) != 0) {
			json_decref(o);
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* The fields of root from the headers and parts of msg. */
static const char *
fill_body(json_t *root, GMimeMessage *msg)
{
	InternetAddress *ia;
	struct mime_body mb;
	const char *why;
	json_t *v;

	if (!set_mailbox(root, "from",
			 mime_fields_first(g_mime_message_get_from(msg))))
		return "no From mailbox";
	ia = mime_fields_first(g_mime_message_get_reply_to(msg));
	if (ia != NULL && !set_mailbox(root, "reply_to", ia))
		return "a Reply-To that is not a mailbox";
	if (!mime_fields_set_str(root, "subject",
				 g_mime_message_get_subject(msg)))
		return "a Subject that is not UTF-8";
	why = mime_fields_body(msg, &mb);
	if (why != NULL)
		return why;
	if ((mb.text != NULL && !mime_fields_set_str(root, "text", mb.text)) ||
	    (mb.html != NULL && !mime_fields_set_str(root, "html", mb.html)))
		why = "out of memory";
	v = why == NULL && json_array_size(mb.attachments) > 0
		? attachments(mb.attachments)
		: NULL;
	if (v != NULL && json_object_set_new(root, "attachments", v) != 0)
		why = "out of memory";
	else if (v == NULL && why == NULL &&
		 json_array_size(mb.attachments) > 0)
		why = "an attachment Resend cannot carry";
	mime_fields_body_free(&mb);
	v = why == NULL ? mime_fields_headers(msg, skip_headers) : NULL;
	if (why == NULL &&
	    (v == NULL || json_object_set_new(root, "headers", v) != 0))
		why = "a header that is not UTF-8";
	return why;
}

/* The request body of job, or NULL with the reason in *why. */
static char *
build_body(const struct connector_job *job, const char **why)
{
	GMimeMessage *msg;
	json_t *root;
	char *body = NULL;

	*why = NULL;
	if (job->nrcpt == 0) {
		*why = "no recipient";
		return NULL;
	}
	msg = mime_fields_parse(job);
	if (msg == NULL) {
		*why = "a message GMime cannot parse";
		return NULL;
	}
	root = json_object();
	if (root == NULL)
		*why = "out of memory";
	if (*why == NULL)
		*why = set_recipients(root, msg, job);
	if (*why == NULL)
		*why = fill_body(root, msg);
	if (*why == NULL) {
		body = json_dumps(root, JSON_COMPACT);
		if (body == NULL)
			*why = "out of memory";
	}
	json_decref(root);
	g_object_unref(msg);
	return body;
}

/* The answer's JSON object, or NULL. */
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

/* The class of an answer, from its status and Resend's error name. */
static int
classify(const struct http_result *hr, json_t *ans, uint32_t *retry_ms)
{
	const char *name = json_string_value(json_object_get(ans, "name"));
	int outcome = http_multi_classify(hr, retry_ms);

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

static void
send_done(const struct http_result *hr, void *arg)
{
	struct resend_send *ss = arg;
	struct resend *rs = ss->rs;
	struct connector_result res;
	char detail[LINK_DETAIL_MAX + 1], clean[256], pmid[LINK_PMID_MAX + 1];
	char cname[48];
	json_t *ans = answer_json(hr->body);
	const char *why, *id, *name;

	memset(&res, 0, sizeof(res));
	res.outcome = classify(hr, ans, &res.retry_after_ms);
	if (res.outcome == OUTCOME_DELIVERED) {
		rs->failures = 0;
		/* Accepted even without an id: resending would duplicate. */
		id = json_string_value(json_object_get(ans, "id"));
		if (id != NULL) {
			log_sanitize(id, strlen(id), pmid, sizeof(pmid));
			res.provider_message_id = pmid;
		}
	} else {
		why = json_string_value(json_object_get(ans, "message"));
		name = json_string_value(json_object_get(ans, "name"));
		if (hr->code != CURLE_OK && !hr->too_big)
			why = hr->error;
		else if (why == NULL)
			why = hr->body->p;
		log_sanitize(why, strlen(why), clean, sizeof(clean));
		if (name == NULL)
			name = "-";
		log_sanitize(name, strlen(name), cname, sizeof(cname));
		snprintf(detail, sizeof(detail),
			 "resend status=%ld name=%s: %s", hr->status, cname,
			 clean);
		res.detail = detail;
		if (res.outcome == OUTCOME_TRANSIENT ||
		    res.outcome == OUTCOME_AMBIGUOUS)
			rs->failures++;
		log_warnx_rl(&rs->rl, 1000,
			     "%s agent send_failed provider=%s status=%ld "
			     "outcome=%s detail=\"%s\"",
			     ss->job->message_id, rs->name, hr->status,
			     outcome_name(res.outcome), clean);
	}
	rs->done(ss->job, &res, rs->arg);
	json_decref(ans);
	free(ss);
}

/* The request's headers: the key, JSON, and the idempotency key. */
static struct curl_slist *
request_headers(const struct resend *rs, const struct connector_job *job)
{
	struct curl_slist *h, *t;
	char *idem = xasprintf("Idempotency-Key: %s", job->message_id);

	h = curl_slist_append(NULL, rs->auth);
	t = h != NULL ? curl_slist_append(h, "Content-Type: application/json")
		      : NULL;
	t = t != NULL ? curl_slist_append(h, idem) : NULL;
	/* curl would wait for 100 Continue before a large body. */
	t = t != NULL ? curl_slist_append(h, "Expect:") : NULL;
	free(idem);
	if (t == NULL) {
		curl_slist_free_all(h);
		return NULL;
	}
	return h;
}

static int
resend_send(void *state, struct connector_job *job)
{
	struct resend *rs = state;
	struct resend_send *ss;
	struct curl_slist *h = NULL;
	const char *why;
	char *body;
	CURL *easy;
	int rc = -ENOMEM;

	body = build_body(job, &why);
	if (body == NULL) {
		log_warnx_rl(&rs->rl, 1000,
			     "%s agent unsendable provider=%s reason=\"%s\"",
			     job->message_id, rs->name, why);
		return -EINVAL;
	}
	easy = curl_easy_init();
	h = request_headers(rs, job);
	if (easy == NULL || h == NULL ||
	    curl_easy_setopt(easy, CURLOPT_URL, rs->url) != CURLE_OK ||
	    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
			     (curl_off_t)strlen(body)) != CURLE_OK ||
	    curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK)
		goto fail;
	ss = xcalloc(1, sizeof(*ss));
	ss->rs = rs;
	ss->job = job;
	rc = http_multi_add(rs->hm, easy, h, NULL, rs->connect_ms,
			    rs->request_ms, send_done, ss);
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
resend_health(void *state)
{
	struct resend *rs = state;

	/* Never down on counts: no traffic would come to clear them. */
	return rs->failures > 0 ? LINK_HEALTH_DEGRADED : LINK_HEALTH_OK;
}

static void
resend_free(struct resend *rs)
{
	if (rs == NULL)
		return;
	http_multi_free(rs->hm);
	free(rs->name);
	free(rs->url);
	if (rs->auth != NULL)
		explicit_bzero(rs->auth, strlen(rs->auth));
	free(rs->auth);
	free(rs);
}

static void
resend_close(void *state)
{
	if (state == NULL)
		return;
	/* Transfers under way are dropped without done(). */
	resend_free(state);
	g_mime_shutdown();
}

static int
resend_open(const struct provider_config *pc, struct event_base *base,
	    connector_done_cb done, void *arg, void **state, char *err,
	    size_t errlen)
{
	const char *url = provider_config_get(pc, "base_url");
	const char *keyref = provider_config_get(pc, "api_key_file");
	struct resend *rs;
	char kerr[256], *key = NULL;
	int rc;

	if (keyref == NULL) {
		snprintf(err, errlen,
			 "provider %s: resend needs 'api_key_file'", pc->name);
		return -EINVAL;
	}
	rc = config_secret_read(keyref, &key, kerr, sizeof(kerr));
	if (rc != 0) {
		snprintf(err, errlen, "provider %s: api_key_file: %s", pc->name,
			 kerr);
		return rc;
	}
	rs = xcalloc(1, sizeof(*rs));
	rs->name = xstrdup(pc->name);
	rs->url =
	    xasprintf("%s/emails", url != NULL ? url : RESEND_DEFAULT_URL);
	rs->auth = xasprintf("Authorization: Bearer %s", key);
	explicit_bzero(key, strlen(key));
	free(key);
	http_multi_timeouts(pc, &rs->connect_ms, &rs->request_ms);
	rs->done = done;
	rs->arg = arg;
	rs->hm = http_multi_new(base);
	if (rs->hm == NULL) {
		snprintf(err, errlen, "provider %s: cannot start libcurl",
			 pc->name);
		resend_free(rs);
		return -ENOMEM;
	}
	/* Counted: the agent's other users of GMime, if any, keep theirs. */
	g_mime_init();
	*state = rs;
	return 0;
}

static void
resend_config_check(struct provider_config *pc, const struct config *cfg,
		    struct config_report *r)
{
	(void)cfg;
	http_multi_config_check(pc, r, RESEND_DEFAULT_URL);
}

static const char *const resend_required[] = {"api_key_file", NULL};
static const char *const resend_optional[] = {"base_url", "connect_timeout_ms",
					      "request_timeout_ms", NULL};
static const char *const resend_secret[] = {"api_key_file", NULL};

static const struct config_ptype resend_config = {
    .name = "resend",
    .required = resend_required,
    .optional = resend_optional,
    .secret = resend_secret,
    .check = resend_config_check,
};

static const struct connector_ops resend_ops = {
    .name = "resend",
    .config = &resend_config,
    .open = resend_open,
    .send = resend_send,
    .health = resend_health,
    .close = resend_close,
};

CONNECTOR_REGISTER(resend_ops)
