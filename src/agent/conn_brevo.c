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
 * The API's own parts are three functions: build_body() (the request),
 * classify() (the answer) and the probe's URL; the rest is the transfer
 * every JSON connector does.  Answers (PROVIDERS.md): 2xx is delivered
 * with the "messageId"; 401, 402 (no credit), 403 and the account codes
 * (unauthorized, permission_denied, not_enough_credits,
 * account_under_validation) the account's; other 400s permanent with
 * Brevo's message; 429 throttled until Retry-After or x-sib-ratelimit-reset;
 * 5xx and others transient; no answer after the request went out
 * ambiguous.  The probe is GET {base_url}/v3/account with the key, which
 * lives in the header of each request only and is never logged.
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
#include <time.h>

#include <gmime/gmime.h>
#include <jansson.h>

#define BREVO_DEFAULT_URL "https://api.brevo.com"

struct brevo {
	char *name;    /* the provider's */
	char *url;     /* base_url/v3/smtp/email */
	char *account; /* base_url/v3/account, the probe's */
	char *auth;    /* "api-key: KEY" */
	long connect_ms, request_ms;
	struct http_multi *hm;
	connector_done_cb done;
	void *arg;
	int failures; /* consecutive transient or ambiguous ends */
	struct log_rl rl;
};

struct brevo_send {
	struct brevo *bv;
	struct connector_job *job; /* NULL for the probe */
	connector_probe_cb probe_cb;
	void *probe_arg;
};

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

/* Attachments in Brevo's names ({name, content}), from mime_fields' ones. */
static json_t *
attachments(json_t *in)
{
	json_t *out = json_array(), *a, *o;
	size_t i;

	json_array_foreach(in, i, a)
	{
		o = json_object();
		if (out == NULL || o == NULL ||
		    json_object_set(o, "name",
				    json_object_get(a, "filename")) != 0 ||
		    json_object_set(o, "content",
				    json_object_get(a, "content")) != 0) {
			json_decref(o);
			json_decref(out);
			return NULL;
		}
		/* append_new takes o, even when it fails. */
		if (json_array_append_new(out, o) != 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
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
	struct mime_body mb;
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
	why = mime_fields_body(msg, &mb);
	if (why != NULL)
		return why;
	if ((mb.text != NULL &&
	     !mime_fields_set_str(root, "textContent", mb.text)) ||
	    (mb.html != NULL &&
	     !mime_fields_set_str(root, "htmlContent", mb.html)))
		why = "out of memory";
	v = why == NULL && json_array_size(mb.attachments) > 0
		? attachments(mb.attachments)
		: NULL;
	if (v != NULL && json_object_set_new(root, "attachment", v) != 0)
		why = "out of memory";
	else if (v == NULL && why == NULL &&
		 json_array_size(mb.attachments) > 0)
		why = "an attachment Brevo cannot carry";
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
classify(const struct http_result *hr, json_t *ans, uint32_t *retry_ms)
{
	const char *code = json_string_value(json_object_get(ans, "code"));
	int outcome = http_multi_classify(hr, retry_ms);

	if (outcome == OUTCOME_THROTTLED && *retry_ms == 0)
		/* Brevo says when its window resets, in seconds. */
		*retry_ms = http_multi_retry_after_ms(
		    http_multi_header(hr, "x-sib-ratelimit-reset"), time(NULL));
	if (outcome != HTTP_CLASS_CONNECTOR)
		return outcome;
	if (hr->status == 402 || account_code(code))
		return OUTCOME_ACCOUNT;
	if (hr->status == 400 || hr->status == 413)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT;
}

/* The failure's detail into detail, and it is logged. */
static void
describe(struct brevo *bv, const char *msgid, const struct http_result *hr,
	 json_t *ans, int outcome, char *detail, size_t len)
{
	const char *why = json_string_value(json_object_get(ans, "message"));
	const char *code = json_string_value(json_object_get(ans, "code"));
	char clean[256], ccode[48];

	if (hr->code != CURLE_OK && !hr->too_big)
		why = hr->error;
	else if (why == NULL)
		why = hr->body->p;
	log_sanitize(why, strlen(why), clean, sizeof(clean));
	if (code == NULL)
		code = "-";
	log_sanitize(code, strlen(code), ccode, sizeof(ccode));
	snprintf(detail, len, "brevo status=%ld code=%s: %s", hr->status, ccode,
		 clean);
	log_warnx_rl(&bv->rl, 1000,
		     "%s agent send_failed provider=%s status=%ld outcome=%s "
		     "detail=\"%s\"",
		     msgid, bv->name, hr->status, outcome_name(outcome), clean);
}

static void
send_done(const struct http_result *hr, void *arg)
{
	struct brevo_send *bs = arg;
	struct brevo *bv = bs->bv;
	struct connector_result res;
	char detail[LINK_DETAIL_MAX + 1], pmid[LINK_PMID_MAX + 1];
	json_t *ans = answer_json(hr->body);
	const char *id;
	bool passed;

	memset(&res, 0, sizeof(res));
	res.outcome = classify(hr, ans, &res.retry_after_ms);
	if (bs->job == NULL) {
		/* The probe: any 2xx takes the key. */
		passed = hr->code == CURLE_OK && hr->status >= 200 &&
			 hr->status < 300;
		if (!passed)
			describe(bv, "-", hr, ans, res.outcome, detail,
				 sizeof(detail));
		bs->probe_cb(passed, passed ? NULL : detail, bs->probe_arg);
	} else if (res.outcome == OUTCOME_DELIVERED) {
		bv->failures = 0;
		/* Accepted even without an id: resending would duplicate. */
		id = json_string_value(json_object_get(ans, "messageId"));
		if (id != NULL) {
			log_sanitize(id, strlen(id), pmid, sizeof(pmid));
			res.provider_message_id = pmid;
		}
		bv->done(bs->job, &res, bv->arg);
	} else {
		describe(bv, bs->job->message_id, hr, ans, res.outcome, detail,
			 sizeof(detail));
		res.detail = detail;
		if (res.outcome == OUTCOME_TRANSIENT ||
		    res.outcome == OUTCOME_AMBIGUOUS)
			bv->failures++;
		bv->done(bs->job, &res, bv->arg);
	}
	json_decref(ans);
	free(bs);
}

/* Starts one request: a POST of body to the send URL, or the probe's GET. */
static int
start(struct brevo *bv, const char *body, struct brevo_send *bs)
{
	struct curl_slist *h, *t;
	CURL *easy = curl_easy_init();
	int rc = -ENOMEM;

	h = curl_slist_append(NULL, bv->auth);
	t = h != NULL ? curl_slist_append(h, "Accept: application/json") : NULL;
	t = t != NULL ? curl_slist_append(h, "Content-Type: application/json")
		      : NULL;
	/* curl would wait for 100 Continue before a large body. */
	t = t != NULL ? curl_slist_append(h, "Expect:") : NULL;
	if (easy == NULL || t == NULL ||
	    curl_easy_setopt(easy, CURLOPT_URL,
			     body != NULL ? bv->url : bv->account) !=
		CURLE_OK ||
	    (body != NULL &&
	     (curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
			       (curl_off_t)strlen(body)) != CURLE_OK ||
	      curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body) !=
		  CURLE_OK)))
		goto fail;
	rc = http_multi_add(bv->hm, easy, h, NULL, bv->connect_ms,
			    bv->request_ms, send_done, bs);
	if (rc == 0)
		return 0;
fail:
	curl_slist_free_all(h);
	curl_easy_cleanup(easy);
	return rc;
}

static int
brevo_send(void *state, struct connector_job *job)
{
	struct brevo *bv = state;
	struct brevo_send *bs;
	const char *why;
	char *body;
	int rc;

	body = build_body(job, &why);
	if (body == NULL) {
		log_warnx_rl(&bv->rl, 1000,
			     "%s agent unsendable provider=%s reason=\"%s\"",
			     job->message_id, bv->name, why);
		return -EINVAL;
	}
	bs = xcalloc(1, sizeof(*bs));
	bs->bv = bv;
	bs->job = job;
	rc = start(bv, body, bs);
	if (rc != 0)
		free(bs);
	free(body);
	return rc;
}

static int
brevo_probe(void *state, connector_probe_cb cb, void *arg)
{
	struct brevo *bv = state;
	struct brevo_send *bs = xcalloc(1, sizeof(*bs));
	int rc;

	bs->bv = bv;
	bs->probe_cb = cb;
	bs->probe_arg = arg;
	rc = start(bv, NULL, bs);
	if (rc != 0)
		free(bs);
	return rc;
}

static int
brevo_health(void *state)
{
	struct brevo *bv = state;

	/* Never down on counts: no traffic would come to clear them. */
	return bv->failures > 0 ? LINK_HEALTH_DEGRADED : LINK_HEALTH_OK;
}

static void
brevo_free(struct brevo *bv)
{
	if (bv == NULL)
		return;
	http_multi_free(bv->hm);
	free(bv->name);
	free(bv->url);
	free(bv->account);
	if (bv->auth != NULL)
		explicit_bzero(bv->auth, strlen(bv->auth));
	free(bv->auth);
	free(bv);
}

static void
brevo_close(void *state)
{
	if (state == NULL)
		return;
	/* Transfers under way are dropped without done(). */
	brevo_free(state);
	g_mime_shutdown();
}

static int
brevo_open(const struct provider_config *pc, struct event_base *base,
	   connector_done_cb done, void *arg, void **state, char *err,
	   size_t errlen)
{
	const char *url = provider_config_get(pc, "base_url");
	const char *ref = provider_config_get(pc, "api_key_file");
	struct brevo *bv;
	char kerr[256], *key = NULL;
	int rc;

	if (ref == NULL) {
		snprintf(err, errlen, "provider %s: brevo needs 'api_key_file'",
			 pc->name);
		return -EINVAL;
	}
	rc = config_secret_read(ref, &key, kerr, sizeof(kerr));
	if (rc != 0) {
		snprintf(err, errlen, "provider %s: api_key_file: %s", pc->name,
			 kerr);
		return rc;
	}
	if (url == NULL)
		url = BREVO_DEFAULT_URL;
	bv = xcalloc(1, sizeof(*bv));
	bv->name = xstrdup(pc->name);
	bv->url = xasprintf("%s/v3/smtp/email", url);
	bv->account = xasprintf("%s/v3/account", url);
	bv->auth = xasprintf("api-key: %s", key);
	explicit_bzero(key, strlen(key));
	free(key);
	http_multi_timeouts(pc, &bv->connect_ms, &bv->request_ms);
	bv->done = done;
	bv->arg = arg;
	bv->hm = http_multi_new(base);
	rc = bv->hm == NULL ? -ENOMEM : http_multi_configure(bv->hm, pc);
	if (rc != 0) {
		snprintf(err, errlen, "provider %s: cannot start libcurl: %s",
			 pc->name, strerror(-rc));
		brevo_free(bv);
		return rc;
	}
	/* Counted: the agent's other users of GMime, if any, keep theirs. */
	g_mime_init();
	*state = bv;
	return 0;
}

static void
brevo_config_check(struct provider_config *pc, const struct config *cfg,
		   struct config_report *r)
{
	(void)cfg;
	http_multi_config_check(pc, r, BREVO_DEFAULT_URL);
}

static const char *const brevo_required[] = {"api_key_file", NULL};
static const char *const brevo_optional[] = {"base_url", "connect_timeout_ms",
					     "request_timeout_ms",
					     "tls_ca_file", NULL};
static const char *const brevo_secret[] = {"api_key_file", NULL};

static const struct config_ptype brevo_config = {
    .name = "brevo",
    .required = brevo_required,
    .optional = brevo_optional,
    .secret = brevo_secret,
    .check = brevo_config_check,
};

static const struct connector_ops brevo_ops = {
    .name = "brevo",
    .config = &brevo_config,
    .open = brevo_open,
    .send = brevo_send,
    .health = brevo_health,
    .probe = brevo_probe,
    .close = brevo_close,
};

CONNECTOR_REGISTER(brevo_ops)
