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
 * other 422s and a 413 are permanent with Postmark's Message; 429
 * throttled; 5xx, others and a 403 (a network-layer block, HTML)
 * transient; no answer after the request went out ambiguous.  The probe
 * is GET {base_url}/server with the token.  The token lives in the
 * header of each request only and is never logged.
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

#define POSTMARK_DEFAULT_URL "https://api.postmarkapp.com"
#define POSTMARK_LIST_MAX 50 /* recipients in each of To, Cc, Bcc */

struct postmark {
	char *name;   /* the provider's */
	char *url;    /* base_url/email */
	char *server; /* base_url/server, the probe's */
	char *auth;   /* "X-Postmark-Server-Token: TOKEN" */
	char *stream; /* message_stream, or NULL for Postmark's default */
	long connect_ms, request_ms;
	struct http_multi *hm;
	connector_done_cb done;
	void *arg;
	int failures; /* consecutive transient or ambiguous ends */
	struct log_rl rl;
};

struct postmark_send {
	struct postmark *pm;
	struct connector_job *job; /* NULL for the probe */
	connector_probe_cb probe_cb;
	void *probe_arg;
};

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

/* Postmark's ErrorCodes that are about the account, not the message. */
static const long account_codes[] = {10, 400, 401, 405, 412, 413};

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

/* Attachments in Postmark's names, from mime_fields' ones. */
static json_t *
attachments(json_t *in)
{
	json_t *out = json_array(), *a, *o;
	const char *cid;
	size_t i;

	json_array_foreach(in, i, a)
	{
		o = json_object();
		cid = json_string_value(json_object_get(a, "content_id"));
		if (out == NULL || o == NULL ||
		    json_object_set(o, "Name",
				    json_object_get(a, "filename")) != 0 ||
		    json_object_set(o, "Content",
				    json_object_get(a, "content")) != 0 ||
		    json_object_set(o, "ContentType",
				    json_object_get(a, "type")) != 0 ||
		    (cid != NULL &&
		     !mime_fields_set_str(o, "ContentID", cid)) ||
		    json_array_append_new(out, o) != 0) {
			json_decref(o);
			json_decref(out);
			return NULL;
		}
	}
	return out;
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
fill_body(json_t *root, GMimeMessage *msg, const struct postmark *pm)
{
	InternetAddress *ia;
	struct mime_body mb;
	const char *why;
	json_t *v;

	if (!set_mailbox(root, "From",
			 mime_fields_first(g_mime_message_get_from(msg))))
		return "no From mailbox";
	ia = mime_fields_first(g_mime_message_get_reply_to(msg));
	if (ia != NULL && !set_mailbox(root, "ReplyTo", ia))
		return "a Reply-To that is not a mailbox";
	if (!mime_fields_set_str(root, "Subject",
				 g_mime_message_get_subject(msg)))
		return "a Subject that is not UTF-8";
	if (pm->stream != NULL &&
	    !mime_fields_set_str(root, "MessageStream", pm->stream))
		return "out of memory";
	why = mime_fields_body(msg, &mb);
	if (why != NULL)
		return why;
	if ((mb.text != NULL &&
	     !mime_fields_set_str(root, "TextBody", mb.text)) ||
	    (mb.html != NULL &&
	     !mime_fields_set_str(root, "HtmlBody", mb.html)))
		why = "out of memory";
	v = why == NULL && json_array_size(mb.attachments) > 0
		? attachments(mb.attachments)
		: NULL;
	if (v != NULL && json_object_set_new(root, "Attachments", v) != 0)
		why = "out of memory";
	else if (v == NULL && why == NULL &&
		 json_array_size(mb.attachments) > 0)
		why = "an attachment Postmark cannot carry";
	mime_fields_body_free(&mb);
	v = why == NULL ? headers(msg) : NULL;
	if (why == NULL &&
	    (v == NULL || json_object_set_new(root, "Headers", v) != 0))
		why = "a header that is not UTF-8";
	return why;
}

/* The request body of job, or NULL with the reason in *why. */
static char *
build_body(const struct postmark *pm, const struct connector_job *job,
	   const char **why)
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
		*why = fill_body(root, msg, pm);
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
classify(const struct http_result *hr, json_t *ans, uint32_t *retry_ms)
{
	json_t *ec = json_object_get(ans, "ErrorCode"); /* NULL-safe */
	long code = json_is_integer(ec) ? (long)json_integer_value(ec) : -1;
	int outcome = http_multi_classify(hr, retry_ms);

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
	if (hr->status == 422 || hr->status == 413)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT;
}

/* The failure's detail into detail, and it is logged. */
static void
describe(struct postmark *pm, const char *msgid, const struct http_result *hr,
	 json_t *ans, int outcome, char *detail, size_t len)
{
	const char *why = json_string_value(json_object_get(ans, "Message"));
	json_t *ec = json_object_get(ans, "ErrorCode");
	char clean[256];

	if (hr->code != CURLE_OK && !hr->too_big)
		why = hr->error;
	else if (why == NULL)
		why = hr->body->p;
	log_sanitize(why, strlen(why), clean, sizeof(clean));
	snprintf(detail, len, "postmark status=%ld code=%lld: %s", hr->status,
		 json_is_integer(ec) ? (long long)json_integer_value(ec) : -1LL,
		 clean);
	log_warnx_rl(&pm->rl, 1000,
		     "%s agent send_failed provider=%s status=%ld outcome=%s "
		     "detail=\"%s\"",
		     msgid, pm->name, hr->status, outcome_name(outcome), clean);
}

static void
send_done(const struct http_result *hr, void *arg)
{
	struct postmark_send *ps = arg;
	struct postmark *pm = ps->pm;
	struct connector_result res;
	char detail[LINK_DETAIL_MAX + 1], pmid[LINK_PMID_MAX + 1];
	json_t *ans = answer_json(hr->body);
	const char *id;
	bool passed;

	memset(&res, 0, sizeof(res));
	res.outcome = classify(hr, ans, &res.retry_after_ms);
	if (ps->job == NULL) {
		/* The probe: any 2xx (no ErrorCode in it) takes the token. */
		passed = hr->code == CURLE_OK && hr->status >= 200 &&
			 hr->status < 300;
		if (!passed)
			describe(pm, "-", hr, ans, res.outcome, detail,
				 sizeof(detail));
		ps->probe_cb(passed, passed ? NULL : detail, ps->probe_arg);
	} else if (res.outcome == OUTCOME_DELIVERED) {
		pm->failures = 0;
		/* Accepted even without an id: resending would duplicate. */
		id = json_string_value(json_object_get(ans, "MessageID"));
		if (id != NULL) {
			log_sanitize(id, strlen(id), pmid, sizeof(pmid));
			res.provider_message_id = pmid;
		}
		pm->done(ps->job, &res, pm->arg);
	} else {
		describe(pm, ps->job->message_id, hr, ans, res.outcome, detail,
			 sizeof(detail));
		res.detail = detail;
		if (res.outcome == OUTCOME_TRANSIENT ||
		    res.outcome == OUTCOME_AMBIGUOUS)
			pm->failures++;
		pm->done(ps->job, &res, pm->arg);
	}
	json_decref(ans);
	free(ps);
}

/* Starts one request: a POST of body to the send URL, or the probe's GET. */
static int
start(struct postmark *pm, const char *body, struct postmark_send *ps)
{
	struct curl_slist *h, *t;
	CURL *easy = curl_easy_init();
	int rc = -ENOMEM;

	h = curl_slist_append(NULL, pm->auth);
	t = h != NULL ? curl_slist_append(h, "Accept: application/json") : NULL;
	t = t != NULL ? curl_slist_append(h, "Content-Type: application/json")
		      : NULL;
	/* curl would wait for 100 Continue before a large body. */
	t = t != NULL ? curl_slist_append(h, "Expect:") : NULL;
	if (easy == NULL || t == NULL ||
	    curl_easy_setopt(easy, CURLOPT_URL,
			     body != NULL ? pm->url : pm->server) != CURLE_OK ||
	    (body != NULL &&
	     (curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
			       (curl_off_t)strlen(body)) != CURLE_OK ||
	      curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body) !=
		  CURLE_OK)))
		goto fail;
	rc = http_multi_add(pm->hm, easy, h, NULL, pm->connect_ms,
			    pm->request_ms, send_done, ps);
	if (rc == 0)
		return 0;
fail:
	curl_slist_free_all(h);
	curl_easy_cleanup(easy);
	return rc;
}

static int
postmark_send(void *state, struct connector_job *job)
{
	struct postmark *pm = state;
	struct postmark_send *ps;
	const char *why;
	char *body;
	int rc;

	body = build_body(pm, job, &why);
	if (body == NULL) {
		log_warnx_rl(&pm->rl, 1000,
			     "%s agent unsendable provider=%s reason=\"%s\"",
			     job->message_id, pm->name, why);
		return -EINVAL;
	}
	ps = xcalloc(1, sizeof(*ps));
	ps->pm = pm;
	ps->job = job;
	rc = start(pm, body, ps);
	if (rc != 0)
		free(ps);
	free(body);
	return rc;
}

static int
postmark_probe(void *state, connector_probe_cb cb, void *arg)
{
	struct postmark *pm = state;
	struct postmark_send *ps = xcalloc(1, sizeof(*ps));
	int rc;

	ps->pm = pm;
	ps->probe_cb = cb;
	ps->probe_arg = arg;
	rc = start(pm, NULL, ps);
	if (rc != 0)
		free(ps);
	return rc;
}

static int
postmark_health(void *state)
{
	struct postmark *pm = state;

	/* Never down on counts: no traffic would come to clear them. */
	return pm->failures > 0 ? LINK_HEALTH_DEGRADED : LINK_HEALTH_OK;
}

static void
postmark_free(struct postmark *pm)
{
	if (pm == NULL)
		return;
	http_multi_free(pm->hm);
	free(pm->name);
	free(pm->url);
	free(pm->server);
	free(pm->stream);
	if (pm->auth != NULL)
		explicit_bzero(pm->auth, strlen(pm->auth));
	free(pm->auth);
	free(pm);
}

static void
postmark_close(void *state)
{
	if (state == NULL)
		return;
	/* Transfers under way are dropped without done(). */
	postmark_free(state);
	g_mime_shutdown();
}

static int
postmark_open(const struct provider_config *pc, struct event_base *base,
	      connector_done_cb done, void *arg, void **state, char *err,
	      size_t errlen)
{
	const char *url = provider_config_get(pc, "base_url");
	const char *ref = provider_config_get(pc, "server_token_file");
	const char *stream = provider_config_get(pc, "message_stream");
	struct postmark *pm;
	char kerr[256], *token = NULL;
	int rc;

	if (ref == NULL) {
		snprintf(err, errlen,
			 "provider %s: postmark needs 'server_token_file'",
			 pc->name);
		return -EINVAL;
	}
	rc = config_secret_read(ref, &token, kerr, sizeof(kerr));
	if (rc != 0) {
		snprintf(err, errlen, "provider %s: server_token_file: %s",
			 pc->name, kerr);
		return rc;
	}
	if (url == NULL)
		url = POSTMARK_DEFAULT_URL;
	pm = xcalloc(1, sizeof(*pm));
	pm->name = xstrdup(pc->name);
	pm->url = xasprintf("%s/email", url);
	pm->server = xasprintf("%s/server", url);
	pm->stream = stream != NULL ? xstrdup(stream) : NULL;
	pm->auth = xasprintf("X-Postmark-Server-Token: %s", token);
	explicit_bzero(token, strlen(token));
	free(token);
	http_multi_timeouts(pc, &pm->connect_ms, &pm->request_ms);
	pm->done = done;
	pm->arg = arg;
	pm->hm = http_multi_new(base);
	if (pm->hm == NULL) {
		snprintf(err, errlen, "provider %s: cannot start libcurl",
			 pc->name);
		postmark_free(pm);
		return -ENOMEM;
	}
	/* Counted: the agent's other users of GMime, if any, keep theirs. */
	g_mime_init();
	*state = pm;
	return 0;
}

static void
postmark_config_check(struct provider_config *pc, const struct config *cfg,
		      struct config_report *r)
{
	(void)cfg;
	http_multi_config_check(pc, r, POSTMARK_DEFAULT_URL);
}

static const char *const postmark_required[] = {"server_token_file", NULL};
static const char *const postmark_optional[] = {"base_url", "message_stream",
						"connect_timeout_ms",
						"request_timeout_ms", NULL};
static const char *const postmark_secret[] = {"server_token_file", NULL};

static const struct config_ptype postmark_config = {
    .name = "postmark",
    .required = postmark_required,
    .optional = postmark_optional,
    .secret = postmark_secret,
    .check = postmark_config_check,
};

static const struct connector_ops postmark_ops = {
    .name = "postmark",
    .config = &postmark_config,
    .open = postmark_open,
    .send = postmark_send,
    .health = postmark_health,
    .probe = postmark_probe,
    .close = postmark_close,
};

CONNECTOR_REGISTER(postmark_ops)
