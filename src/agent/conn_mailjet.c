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
 * The API's own parts are build_body() (the request), classify() (the
 * answer) and the probe's URL.  Answers (PROVIDERS.md): 200 with the
 * message's Status "success" is delivered, the provider id being the
 * MessageIDs of its recipients; if Mailjet lists fewer recipients than we
 * sent it is still delivered (the others cannot be resent without a
 * duplicate), the count in the detail, as sparkpost's partial rejection.
 * 401, 403 and the account codes (mj-0001, mj-0015, send-0008) are the
 * account's; other 400s (mj-0013 invalid address, send-0015 too many
 * recipients) and 413 permanent with Mailjet's message; 429 throttled;
 * 5xx, others and a 200 without "success" transient; no answer after the
 * request went out ambiguous.  The probe is GET {base_url}/v3/REST/sender.
 * The keys live in the Authorization header of each request only and are
 * never logged.
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

#define MAILJET_DEFAULT_URL "https://api.mailjet.com"
#define MAILJET_RCPT_MAX 50 /* recipients in To, Cc and Bcc together */

struct mailjet {
	char *name;   /* the provider's */
	char *url;    /* base_url/v3.1/send */
	char *sender; /* base_url/v3/REST/sender, the probe's */
	char *auth;   /* "Authorization: Basic base64(KEY:SECRET)" */
	long connect_ms, request_ms;
	struct http_multi *hm;
	connector_done_cb done;
	void *arg;
	int failures; /* consecutive transient or ambiguous ends */
	struct log_rl rl;
};

struct mailjet_send {
	struct mailjet *mj;
	struct connector_job *job; /* NULL for the probe */
	connector_probe_cb probe_cb;
	void *probe_arg;
};

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

/* One attachment in Mailjet's names; NULL on error. */
static json_t *
mj_attachment(json_t *a, const char *cid)
{
	json_t *o = json_object();

	if (o == NULL ||
	    json_object_set(o, "ContentType", json_object_get(a, "type")) !=
		0 ||
	    json_object_set(o, "Filename", json_object_get(a, "filename")) !=
		0 ||
	    json_object_set(o, "Base64Content",
			    json_object_get(a, "content")) != 0 ||
	    (cid != NULL && !mime_fields_set_str(o, "ContentID", cid))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

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
		o = mj_attachment(a, cid);
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

/* The request body of job, {"Messages": [m]}, or NULL with *why. */
static char *
build_body(const struct connector_job *job, const char **why)
{
	GMimeMessage *msg;
	json_t *root, *m;
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
	m = json_object();
	root = json_pack("{s:[O]}", "Messages", m);
	if (root == NULL)
		*why = "out of memory";
	if (*why == NULL)
		*why = set_recipients(m, msg, job);
	if (*why == NULL)
		*why = fill_message(m, msg, job);
	if (*why == NULL) {
		body = json_dumps(root, JSON_COMPACT);
		if (body == NULL)
			*why = "out of memory";
	}
	json_decref(m);
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
classify(const struct http_result *hr, json_t *ans, uint32_t *retry_ms)
{
	const char *status =
	    json_string_value(json_object_get(answer_message(ans), "Status"));
	int outcome = http_multi_classify(hr, retry_ms);

	if (outcome == OUTCOME_DELIVERED)
		/* A 200 whose message did not succeed did not send. */
		return status != NULL && strcmp(status, "success") == 0
			   ? OUTCOME_DELIVERED
			   : OUTCOME_TRANSIENT;
	if (outcome != HTTP_CLASS_CONNECTOR)
		return outcome;
	if (account_error(ans))
		return OUTCOME_ACCOUNT;
	if (hr->status == 400 || hr->status == 413)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT;
}

/* The failure's detail into detail, and it is logged. */
static void
describe(struct mailjet *mj, const char *msgid, const struct http_result *hr,
	 json_t *ans, int outcome, char *detail, size_t len)
{
	json_t *e = answer_error(ans);
	const char *why = json_string_value(json_object_get(e, "ErrorMessage"));
	const char *code = json_string_value(json_object_get(e, "ErrorCode"));
	char clean[256], ccode[48];

	if (hr->code != CURLE_OK && !hr->too_big)
		why = hr->error;
	else if (why == NULL)
		why = hr->body->p;
	log_sanitize(why, strlen(why), clean, sizeof(clean));
	if (code == NULL)
		code = "-";
	log_sanitize(code, strlen(code), ccode, sizeof(ccode));
	snprintf(detail, len, "mailjet status=%ld code=%s: %s", hr->status,
		 ccode, clean);
	log_warnx_rl(&mj->rl, 1000,
		     "%s agent send_failed provider=%s status=%ld outcome=%s "
		     "detail=\"%s\"",
		     msgid, mj->name, hr->status, outcome_name(outcome), clean);
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

static void
send_done(const struct http_result *hr, void *arg)
{
	struct mailjet_send *ms = arg;
	struct mailjet *mj = ms->mj;
	struct connector_result res;
	char detail[LINK_DETAIL_MAX + 1], pmid[LINK_PMID_MAX + 1];
	json_t *ans = answer_json(hr->body);
	size_t listed;
	bool passed;

	memset(&res, 0, sizeof(res));
	res.outcome = classify(hr, ans, &res.retry_after_ms);
	if (ms->job == NULL) {
		/* The probe: any 2xx takes the keys. */
		passed = hr->code == CURLE_OK && hr->status >= 200 &&
			 hr->status < 300;
		if (!passed)
			describe(mj, "-", hr, ans, res.outcome, detail,
				 sizeof(detail));
		ms->probe_cb(passed, passed ? NULL : detail, ms->probe_arg);
	} else if (res.outcome == OUTCOME_DELIVERED) {
		mj->failures = 0;
		/* Accepted even without ids: resending would duplicate. */
		listed = delivered_ids(ans, pmid, sizeof(pmid));
		if (pmid[0] != '\0')
			res.provider_message_id = pmid;
		if (listed < ms->job->nrcpt) {
			snprintf(detail, sizeof(detail),
				 "mailjet accepted %zu of %zu recipients",
				 listed, ms->job->nrcpt);
			res.detail = detail;
		}
		mj->done(ms->job, &res, mj->arg);
	} else {
		describe(mj, ms->job->message_id, hr, ans, res.outcome, detail,
			 sizeof(detail));
		res.detail = detail;
		if (res.outcome == OUTCOME_TRANSIENT ||
		    res.outcome == OUTCOME_AMBIGUOUS)
			mj->failures++;
		mj->done(ms->job, &res, mj->arg);
	}
	json_decref(ans);
	free(ms);
}

/* Starts one request: a POST of body to the send URL, or the probe's GET. */
static int
start(struct mailjet *mj, const char *body, struct mailjet_send *ms)
{
	struct curl_slist *h, *t;
	CURL *easy = curl_easy_init();
	int rc = -ENOMEM;

	h = curl_slist_append(NULL, mj->auth);
	t = h != NULL ? curl_slist_append(h, "Accept: application/json") : NULL;
	t = t != NULL ? curl_slist_append(h, "Content-Type: application/json")
		      : NULL;
	/* curl would wait for 100 Continue before a large body. */
	t = t != NULL ? curl_slist_append(h, "Expect:") : NULL;
	if (easy == NULL || t == NULL ||
	    curl_easy_setopt(easy, CURLOPT_URL,
			     body != NULL ? mj->url : mj->sender) != CURLE_OK ||
	    (body != NULL &&
	     (curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
			       (curl_off_t)strlen(body)) != CURLE_OK ||
	      curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body) !=
		  CURLE_OK)))
		goto fail;
	rc = http_multi_add(mj->hm, easy, h, NULL, mj->connect_ms,
			    mj->request_ms, send_done, ms);
	if (rc == 0)
		return 0;
fail:
	curl_slist_free_all(h);
	curl_easy_cleanup(easy);
	return rc;
}

static int
mailjet_send(void *state, struct connector_job *job)
{
	struct mailjet *mj = state;
	struct mailjet_send *ms;
	const char *why;
	char *body;
	int rc;

	body = build_body(job, &why);
	if (body == NULL) {
		log_warnx_rl(&mj->rl, 1000,
			     "%s agent unsendable provider=%s reason=\"%s\"",
			     job->message_id, mj->name, why);
		return -EINVAL;
	}
	ms = xcalloc(1, sizeof(*ms));
	ms->mj = mj;
	ms->job = job;
	rc = start(mj, body, ms);
	if (rc != 0)
		free(ms);
	free(body);
	return rc;
}

static int
mailjet_probe(void *state, connector_probe_cb cb, void *arg)
{
	struct mailjet *mj = state;
	struct mailjet_send *ms = xcalloc(1, sizeof(*ms));
	int rc;

	ms->mj = mj;
	ms->probe_cb = cb;
	ms->probe_arg = arg;
	rc = start(mj, NULL, ms);
	if (rc != 0)
		free(ms);
	return rc;
}

static int
mailjet_health(void *state)
{
	struct mailjet *mj = state;

	/* Never down on counts: no traffic would come to clear them. */
	return mj->failures > 0 ? LINK_HEALTH_DEGRADED : LINK_HEALTH_OK;
}

static void
mailjet_free(struct mailjet *mj)
{
	if (mj == NULL)
		return;
	http_multi_free(mj->hm);
	free(mj->name);
	free(mj->url);
	free(mj->sender);
	if (mj->auth != NULL)
		explicit_bzero(mj->auth, strlen(mj->auth));
	free(mj->auth);
	free(mj);
}

static void
mailjet_close(void *state)
{
	if (state == NULL)
		return;
	/* Transfers under way are dropped without done(). */
	mailjet_free(state);
	g_mime_shutdown();
}

/* "Authorization: Basic base64(key:secret)"; the inputs are wiped. */
static char *
basic_auth(char *key, char *secret)
{
	char *pair = xasprintf("%s:%s", key, secret), *b64, *out;

	b64 = g_base64_encode((const guchar *)pair, strlen(pair));
	out = xasprintf("Authorization: Basic %s", b64);
	explicit_bzero(pair, strlen(pair));
	explicit_bzero(b64, strlen(b64));
	explicit_bzero(key, strlen(key));
	explicit_bzero(secret, strlen(secret));
	free(pair);
	g_free(b64);
	return out;
}

/* The two keys of pc into *key and *secret; 0 or an error in err. */
static int
read_keys(const struct provider_config *pc, char **key, char **secret,
	  char *err, size_t errlen)
{
	static const char *const names[] = {"api_key_file", "secret_key_file"};
	char kerr[256], **out[] = {key, secret};
	const char *ref;
	size_t i;
	int rc;

	for (i = 0; i < 2; i++) {
		ref = provider_config_get(pc, names[i]);
		if (ref == NULL) {
			snprintf(err, errlen, "provider %s: mailjet needs '%s'",
				 pc->name, names[i]);
			return -EINVAL;
		}
		rc = config_secret_read(ref, out[i], kerr, sizeof(kerr));
		if (rc != 0) {
			snprintf(err, errlen, "provider %s: %s: %s", pc->name,
				 names[i], kerr);
			return rc;
		}
	}
	return 0;
}

static int
mailjet_open(const struct provider_config *pc, struct event_base *base,
	     connector_done_cb done, void *arg, void **state, char *err,
	     size_t errlen)
{
	const char *url = provider_config_get(pc, "base_url");
	struct mailjet *mj;
	char *key = NULL, *secret = NULL;
	int rc;

	rc = read_keys(pc, &key, &secret, err, errlen);
	if (rc != 0) {
		if (key != NULL)
			explicit_bzero(key, strlen(key));
		free(key);
		return rc;
	}
	if (url == NULL)
		url = MAILJET_DEFAULT_URL;
	mj = xcalloc(1, sizeof(*mj));
	mj->name = xstrdup(pc->name);
	mj->url = xasprintf("%s/v3.1/send", url);
	mj->sender = xasprintf("%s/v3/REST/sender", url);
	mj->auth = basic_auth(key, secret);
	free(key);
	free(secret);
	http_multi_timeouts(pc, &mj->connect_ms, &mj->request_ms);
	mj->done = done;
	mj->arg = arg;
	mj->hm = http_multi_new(base);
	rc = mj->hm == NULL ? -ENOMEM : http_multi_configure(mj->hm, pc);
	if (rc != 0) {
		snprintf(err, errlen, "provider %s: cannot start libcurl: %s",
			 pc->name, strerror(-rc));
		mailjet_free(mj);
		return rc;
	}
	/* Counted: the agent's other users of GMime, if any, keep theirs. */
	g_mime_init();
	*state = mj;
	return 0;
}

static void
mailjet_config_check(struct provider_config *pc, const struct config *cfg,
		     struct config_report *r)
{
	(void)cfg;
	http_multi_config_check(pc, r, MAILJET_DEFAULT_URL);
}

static const char *const mailjet_required[] = {"api_key_file",
					       "secret_key_file", NULL};
static const char *const mailjet_optional[] = {"base_url", "connect_timeout_ms",
					       "request_timeout_ms",
					       "tls_ca_file", NULL};
static const char *const mailjet_secret[] = {"api_key_file", "secret_key_file",
					     NULL};

static const struct config_ptype mailjet_config = {
    .name = "mailjet",
    .required = mailjet_required,
    .optional = mailjet_optional,
    .secret = mailjet_secret,
    .check = mailjet_config_check,
};

static const struct connector_ops mailjet_ops = {
    .name = "mailjet",
    .config = &mailjet_config,
    .open = mailjet_open,
    .send = mailjet_send,
    .health = mailjet_health,
    .probe = mailjet_probe,
    .close = mailjet_close,
};

CONNECTOR_REGISTER(mailjet_ops)
