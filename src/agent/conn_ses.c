/*
 * The ses connector: Amazon SES API v2 SendEmail with Raw content, signed
 * with AWS Signature Version 4 (sigv4.c), over libcurl's multi interface
 * on the agent's loop (http_multi.c).
 *
 * One send is one POST {base_url}/v2/email/outbound-emails whose JSON body
 * carries the envelope sender (FromEmailAddress), the envelope recipients
 * (Destination.ToAddresses: with Raw content SES delivers to these and
 * leaves the message's own headers alone) and the whole MIME message in
 * base64 (Content.Raw.Data).  The request is signed over content-type,
 * host and x-amz-date; the Host header is set here, so what is signed is
 * what is sent whatever curl would have chosen.
 *
 * Answers are classified as PROVIDERS.md describes SES: 200 with a
 * MessageId is delivered; MessageRejected, BadRequestException and other
 * refusals of the message (400) are permanent, and 413 (SES's size
 * limit, which another provider may not share) too_large; credentials,
 * signature, clock, suspension, paused sending, an unverified domain and
 * the daily quota are the account; 429 and throttling errors are
 * throttled; 5xx and any other 4xx are transient; a request that went
 * out and got no answer is ambiguous.
 * The error's type and text are from SES, so they are sanitised before
 * they reach a log line or a result.  The secret key, and the session
 * token of temporary credentials when one is configured, are read once at
 * open (file or env:) and live only in this connector's state, never
 * logged; the token goes out as X-Amz-Security-Token and is signed with
 * the other headers, as AWS requires.
 *
 * The probe, after an account fault, is GetAccount: a signed
 * GET {base_url}/v2/email/account.  It passes only on a 2xx whose
 * SendingEnabled is true and whose daily quota is not spent, so a
 * suspended or paused account stays down with SES's reason.
 */
#include "agent/conn_limits.h"
#include "agent/conn_ses.h"
#include "agent/connector.h"
#include "agent/http_multi.h"
#include "agent/sigv4.h"
#include "common/buf.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "link/link.h"

#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#define SES_PATH "/v2/email/outbound-emails"
#define SES_ACCOUNT_PATH "/v2/email/account"
/* SES refuses a request whose Raw data passes 40 MB after base64. */
#define SES_RAW_MAX CONN_LIMIT_SES_BASE64
#define SES_BODY_MAX (SES_RAW_MAX + 64 * 1024)
#define SES_WARN_MS 10000
/* STS does not bound its tokens; this is far past any seen. */
#define SES_TOKEN_MAX 16384

struct ses {
	char *name; /* the provider's */
	char *region, *access_key_id, *secret;
	char *token; /* the session token of temporary credentials, or NULL */
	char *host;  /* host[:port] of base_url, sent and signed as Host */
	char *url;   /* base_url + SES_PATH */
	char *account_url; /* base_url + SES_ACCOUNT_PATH, the probe's */
	struct event_base *base;
	struct http_multi *hm;
	connector_done_cb done;
	void *arg;
	long connect_ms, request_ms; /* 0: http_multi's defaults */
	int failures; /* consecutive sends that were not delivered */
	struct log_rl rl;
	/* Every send not yet done, to free at close (done is not called). */
	LIST_HEAD(, ses_send) sends;
};

/* One send in flight, or one refused before it went out, or the probe. */
struct ses_send {
	struct ses *s;
	struct connector_job *job;   /* NULL for the probe */
	connector_probe_cb probe_cb; /* the probe's */
	void *probe_arg;
	struct event *ev;   /* the deferred report of a refused send */
	struct buf body;    /* the request's; curl reads it in place */
	int outcome;        /* for a send refused before the request */
	const char *detail; /* static text for it */
	LIST_ENTRY(ses_send) entry;
};

/*
 * Accepts exactly scheme://host[:port] with scheme http or https (SPEC.md)
 * and gives the host[:port] part in *host (the caller frees it).
 */
static int
split_base_url(const char *url, char **host)
{
	const char *rest;

	if (strncmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		rest = url + 7;
	else
		return -EINVAL;
	if (*rest == '\0' || strpbrk(rest, "/?#@ \t\r\n") != NULL)
		return -EINVAL;
	*host = xstrdup(rest);
	return 0;
}

/*
 * The SendEmail body for job: {"FromEmailAddress": ..., "Destination":
 * {"ToAddresses": [...]}, "Content": {"Raw": {"Data": base64}}}.  An empty
 * envelope sender (a bounce) leaves FromEmailAddress out, so SES takes the
 * message's From.  0, -EMSGSIZE past SES's limit, or a buf error.
 */
static int
ses_body(const struct connector_job *job, struct buf *out)
{
	size_t b64len = 4 * ((job->mime_len + 2) / 3);
	int rc = 0;

	if (b64len > SES_RAW_MAX || job->mime_len > INT32_MAX)
		return -EMSGSIZE;
	rc = buf_appends(out, "{");
	if (rc == 0 && job->mail_from != NULL && job->mail_from[0] != '\0') {
		rc = buf_appends(out, "\"FromEmailAddress\":\"");
		if (rc == 0)
			rc = buf_append_json_str(out, job->mail_from,
						 strlen(job->mail_from));
		if (rc == 0)
			rc = buf_appends(out, "\",");
	}
	if (rc == 0)
		rc = buf_appends(out, "\"Destination\":{\"ToAddresses\":[");
	for (size_t i = 0; rc == 0 && i < job->nrcpt; i++) {
		rc = buf_appends(out, i > 0 ? ",\"" : "\"");
		if (rc == 0)
			rc = buf_append_json_str(out, job->rcpt[i],
						 strlen(job->rcpt[i]));
		if (rc == 0)
			rc = buf_appends(out, "\"");
	}
	if (rc == 0)
		rc = buf_appends(out, "]},\"Content\":{\"Raw\":{\"Data\":\"");
	if (rc == 0)
		rc = buf_reserve(out, b64len + 1);
	if (rc == 0) {
		int n = EVP_EncodeBlock((unsigned char *)out->p + out->len,
					job->mime, (int)job->mime_len);

		if (n < 0 || (size_t)n != b64len)
			return -EIO;
		buf_commit(out, (size_t)n);
		rc = buf_appends(out, "\"}}}");
	}
	return rc;
}

/* Copies the part of s after its last '#' and before any ':' into out. */
static void
error_name(const char *s, char *out, size_t outsz)
{
	const char *hash = strrchr(s, '#');
	size_t n;

	if (hash != NULL)
		s = hash + 1;
	n = strcspn(s, ":");
	log_sanitize(s, n, out, outsz);
}

/*
 * SES's error type (x-amzn-ErrorType, else the body's __type or code) and
 * text (message or Message) from an error answer, sanitised; "" when none.
 */
static void
ses_error(const struct http_result *res, char *type, size_t typesz, char *msg,
	  size_t msgsz)
{
	const char *h = http_multi_header(res, "x-amzn-ErrorType");
	json_t *root = NULL, *v;
	json_error_t jerr;

	type[0] = '\0';
	msg[0] = '\0';
	if (res->body != NULL && res->body->len > 0)
		root = json_loadb(res->body->p, res->body->len, 0, &jerr);
	if (h != NULL) {
		error_name(h, type, typesz);
	} else if (json_is_object(root)) {
		/* Borrowed references: they die with root. */
		v = json_object_get(root, "__type");
		if (!json_is_string(v))
			v = json_object_get(root, "code");
		if (json_is_string(v))
			error_name(json_string_value(v), type, typesz);
	}
	if (json_is_object(root)) {
		v = json_object_get(root, "message");
		if (!json_is_string(v))
			v = json_object_get(root, "Message");
		if (json_is_string(v))
			log_sanitize(json_string_value(v),
				     strlen(json_string_value(v)), msg, msgsz);
	}
	json_decref(root);
}

static bool
type_in(const char *type, const char *const *names)
{
	for (; *names != NULL; names++)
		if (strcmp(type, *names) == 0)
			return true;
	return false;
}

static const char *const ses_throttled[] = {"TooManyRequestsException",
					    "ThrottlingException", "Throttling",
					    "LimitExceededException", NULL};
static const char *const ses_account[] = {
    "AccountSuspendedException",
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "IncompleteSignatureException",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "AccessDenied",
    "AccessDeniedException",
    "RequestExpired",
    "ExpiredTokenException",
    "NotFoundException", /* a configuration set or identity gone */
    NULL};
static const char *const ses_transient[] = {
    "InternalFailure", "ServiceUnavailable", "InternalServerError", NULL};

/*
 * The class of an error answer from its status and SES's error type.  The
 * type decides when it is known (SES sends throttling and account errors
 * as 400s); the status otherwise.  "Daily message quota exceeded" comes as
 * a throttling error but lasts until the quota's window: the account.
 */
static int
ses_classify_error(long status, const char *type, const char *msg)
{
	if (type_in(type, ses_throttled))
		return strstr(msg, "quota") != NULL ? OUTCOME_ACCOUNT
						    : OUTCOME_THROTTLED;
	if (type_in(type, ses_account))
		return OUTCOME_ACCOUNT;
	if (type_in(type, ses_transient))
		return OUTCOME_TRANSIENT;
	if (status == 429)
		return OUTCOME_THROTTLED;
	if (status == 401 || status == 403)
		return OUTCOME_ACCOUNT;
	/*
	 * SES names the message's faults as 400s (MessageRejected,
	 * BadRequestException, ...) and a message too large as 413.  Any
	 * other 4xx whose type is not SES's own (a 404 or 405 of a proxy or
	 * a wrong endpoint, a 408 of a load balancer) says nothing of the
	 * message: permanent failed every message this provider took, while
	 * another provider was up to send it.  Transient moves it on.
	 */
	if (status == 413)
		return OUTCOME_TOO_LARGE; /* SES's limit: another may take it */
	if (status == 400)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT;
}

static void
ses_finish(struct ses_send *ss, const struct connector_result *r)
{
	struct ses *s = ss->s;

	if (r->outcome == OUTCOME_DELIVERED) {
		s->failures = 0;
	} else {
		s->failures++;
		log_warnx_rl(&s->rl, SES_WARN_MS,
			     "%s agent send-failed provider=%s outcome=%s "
			     "detail=\"%s\"",
			     ss->job->message_id, s->name,
			     outcome_name(r->outcome),
			     r->detail != NULL ? r->detail : "");
	}
	LIST_REMOVE(ss, entry);
	if (ss->ev != NULL)
		event_free(ss->ev);
	buf_cleanup(&ss->body);
	s->done(ss->job, r, s->arg);
	free(ss);
}

/* The 2xx answer: delivered with SES's MessageId, else ambiguous. */
static void
ses_answer(const struct http_result *res, struct connector_result *r, char *id,
	   size_t idsz)
{
	json_error_t jerr;
	json_t *root = NULL, *v;

	if (res->body != NULL)
		root = json_loadb(res->body->p, res->body->len, 0, &jerr);
	v = json_object_get(root, "MessageId"); /* borrowed; NULL root ok */

	if (json_is_string(v) && json_string_length(v) > 0) {
		log_sanitize(json_string_value(v), json_string_length(v), id,
			     idsz);
		r->outcome = OUTCOME_DELIVERED;
		r->provider_message_id = id;
	} else {
		/* SES took the request; whether it sent is unknown. */
		r->outcome = OUTCOME_AMBIGUOUS;
		r->detail =
		    "class=ambiguous: ses answered 2xx without a MessageId";
	}
	json_decref(root);
}

void
ses_read_answer(const struct http_result *res, struct connector_result *r,
		struct ses_words *w)
{
	int cls;

	memset(r, 0, sizeof(*r));
	cls = http_multi_classify(res, &r->retry_after_ms);
	if (res->code != CURLE_OK && !(res->too_big && res->status > 0)) {
		r->outcome = cls;
		snprintf(w->detail, sizeof(w->detail), "class=%s: %s",
			 outcome_name(r->outcome), res->error);
		r->detail = w->detail;
	} else if (cls == OUTCOME_DELIVERED) {
		ses_answer(res, r, w->id, sizeof(w->id));
	} else {
		ses_error(res, w->type, sizeof(w->type), w->msg,
			  sizeof(w->msg));
		r->outcome = ses_classify_error(res->status, w->type, w->msg);
		if (r->outcome == OUTCOME_THROTTLED && r->retry_after_ms == 0)
			r->retry_after_ms = http_multi_retry_after_ms(
			    http_multi_header(res, "Retry-After"), time(NULL));
		/* The class is named too: a server that folds classes
		 * together still records what SES said. */
		snprintf(w->detail, sizeof(w->detail),
			 "class=%s status=%ld type=%s: %s",
			 outcome_name(r->outcome), res->status,
			 w->type[0] != '\0' ? w->type : "-", w->msg);
		r->detail = w->detail;
	}
}

static void
ses_sent(const struct http_result *res, void *arg)
{
	struct connector_result r;
	struct ses_words w;

	ses_read_answer(res, &r, &w);
	ses_finish(arg, &r);
}

/* A send refused before its request, reported from the loop (never from
 * inside send(), as connector.h wants). */
static void
ses_refused(evutil_socket_t fd, short what, void *arg)
{
	struct ses_send *ss = arg;
	struct connector_result r = {.outcome = ss->outcome,
				     .detail = ss->detail};

	(void)fd;
	(void)what;
	ses_finish(ss, &r);
}

/* Appends "name: value" ("name:" with no value: curl then sends none). */
static struct curl_slist *
slist_add(struct curl_slist *l, bool *ok, const char *name, const char *v)
{
	struct curl_slist *n;
	char *line;

	if (!*ok)
		return l;
	if (v != NULL)
		line = xasprintf("%s: %s", name, v);
	else
		line = xasprintf("%s:", name);
	n = curl_slist_append(l, line); /* copies line */
	/* The line may hold the session token. */
	OPENSSL_cleanse(line, strlen(line));
	free(line);
	if (n == NULL)
		*ok = false;
	return n != NULL ? n : l;
}

/*
 * The headers to send, each of them signed, into *headers: a POST's
 * Content-Type, Host, X-Amz-Date and, with temporary credentials,
 * X-Amz-Security-Token (AWS wants it among the signed headers), then
 * Authorization.  body is NULL for a GET.
 */
static int
ses_sign(struct ses *s, const char *method, const char *path,
	 const struct buf *body, struct curl_slist **headers)
{
	char date[SIGV4_DATE_LEN + 1];
	struct sigv4_header h[4];
	struct sigv4_request req = {
	    .method = method,
	    .path = path,
	    .headers = h,
	    .body = body != NULL ? body->p : "",
	    .body_len = body != NULL ? body->len : 0,
	};
	const struct sigv4_credentials cr = {
	    .access_key_id = s->access_key_id,
	    .secret_access_key = s->secret,
	    .region = s->region,
	    .service = "ses",
	};
	struct sigv4_result res;
	struct curl_slist *l = NULL;
	bool ok = true;
	size_t n = 0, i;
	int rc;

	sigv4_amz_date(time(NULL), date);
	if (body != NULL)
		h[n++] =
		    (struct sigv4_header){"Content-Type", "application/json"};
	h[n++] = (struct sigv4_header){"Host", s->host};
	h[n++] = (struct sigv4_header){"X-Amz-Date", date};
	if (s->token != NULL)
		h[n++] =
		    (struct sigv4_header){"X-Amz-Security-Token", s->token};
	req.nheaders = n;
	sigv4_result_init(&res);
	rc = sigv4_sign(&req, &cr, date, &res);
	if (rc == 0) {
		for (i = 0; i < n; i++)
			l = slist_add(l, &ok, h[i].name, h[i].value);
		l = slist_add(l, &ok, "Authorization", res.authz.p);
		/* A large body must not wait for a 100 Continue. */
		l = slist_add(l, &ok, "Expect", NULL);
		if (!ok) {
			curl_slist_free_all(l);
			l = NULL;
			rc = -ENOMEM;
		}
	}
	sigv4_result_cleanup(&res);
	*headers = l;
	return rc;
}

static int
ses_easy(struct ses *s, const struct buf *body, CURL **out)
{
	CURL *e = curl_easy_init();
	CURLcode c;

	*out = NULL;
	if (e == NULL)
		return -ENOMEM;
	c = curl_easy_setopt(e, CURLOPT_URL, s->url);
	if (c == CURLE_OK)
		c = curl_easy_setopt(e, CURLOPT_POST, 1L);
	if (c == CURLE_OK)
		c = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
				     (curl_off_t)body->len);
	/* Not copied: body lives in the send until its completion. */
	if (c == CURLE_OK)
		c = curl_easy_setopt(e, CURLOPT_POSTFIELDS, body->p);
	if (c != CURLE_OK) {
		curl_easy_cleanup(e);
		return -ENOMEM;
	}
	*out = e;
	return 0;
}

/* Reports ss from the loop with outcome; 0 or -ENOMEM. */
static int
ses_defer(struct ses_send *ss, int outcome, const char *detail)
{
	const struct timeval now = {0, 0};

	ss->outcome = outcome;
	ss->detail = detail;
	ss->ev = evtimer_new(ss->s->base, ses_refused, ss);
	if (ss->ev == NULL || evtimer_add(ss->ev, &now) != 0)
		return -ENOMEM;
	return 0;
}

static void
ses_send_free(struct ses_send *ss)
{
	LIST_REMOVE(ss, entry);
	if (ss->ev != NULL)
		event_free(ss->ev);
	buf_cleanup(&ss->body);
	free(ss);
}

static int
ses_send(void *state, struct connector_job *job)
{
	struct ses *s = state;
	struct ses_send *ss = xcalloc(1, sizeof(*ss));
	struct curl_slist *headers = NULL;
	CURL *easy = NULL;
	int rc;

	ss->s = s;
	ss->job = job;
	LIST_INSERT_HEAD(&s->sends, ss, entry);
	buf_init(&ss->body, SES_BODY_MAX);
	rc = ses_body(job, &ss->body);
	if (rc == -EMSGSIZE) {
		/* SES would refuse it every time; a provider with a larger
		 * limit may take it. */
		rc = ses_defer(ss, OUTCOME_TOO_LARGE,
			       "larger than SES takes (40 MB after base64)");
		if (rc < 0)
			goto fail;
		return 0;
	}
	if (rc == 0)
		rc = ses_sign(s, "POST", SES_PATH, &ss->body, &headers);
	if (rc == 0)
		rc = ses_easy(s, &ss->body, &easy);
	if (rc == 0)
		rc = http_multi_add(s->hm, easy, headers, NULL, s->connect_ms,
				    s->request_ms, ses_sent, ss);
	if (rc < 0)
		goto fail;
	return 0;
fail:
	curl_easy_cleanup(easy);
	curl_slist_free_all(headers);
	ses_send_free(ss);
	return rc;
}

/*
 * Whether GetAccount's answer lets the account send: SendingEnabled true
 * and the daily quota not spent (Max24HourSend -1 is no quota).  Else
 * false, with SES's words for why in why.
 */
bool
ses_account_ok(const struct buf *body, char *why, size_t whysz)
{
	json_error_t jerr;
	json_t *root = NULL, *quota, *v;
	char status[SES_TYPE_MAX] = "-";
	double max, sent;
	bool ok = false;

	if (body != NULL && body->len > 0)
		root = json_loadb(body->p, body->len, 0, &jerr);
	/* Borrowed references below: they die with root. */
	v = json_object_get(root, "EnforcementStatus");
	if (json_is_string(v))
		log_sanitize(json_string_value(v), json_string_length(v),
			     status, sizeof(status));
	quota = json_object_get(root, "SendQuota");
	max = json_number_value(json_object_get(quota, "Max24HourSend"));
	sent = json_number_value(json_object_get(quota, "SentLast24Hours"));
	if (!json_is_object(root))
		snprintf(why, whysz, "probe: GetAccount answered no JSON");
	else if (!json_is_true(json_object_get(root, "SendingEnabled")))
		snprintf(why, whysz,
			 "probe: account: SendingEnabled is not true "
			 "(EnforcementStatus %s)",
			 status);
	else if (json_is_number(json_object_get(quota, "Max24HourSend")) &&
		 max >= 0 && sent >= max)
		snprintf(why, whysz,
			 "probe: account: daily quota spent (%.0f of %.0f)",
			 sent, max);
	else
		ok = true;
	json_decref(root);
	return ok;
}

/* The probe's end: the verdict to the agent, with SES's reason. */
static void
ses_probed(const struct http_result *res, void *arg)
{
	struct ses_send *ss = arg;
	connector_probe_cb cb = ss->probe_cb;
	void *cbarg = ss->probe_arg;
	char type[SES_TYPE_MAX], msg[SES_DETAIL_MAX];
	char detail[SES_DETAIL_MAX + SES_TYPE_MAX + 64];
	uint32_t retry_ms;
	int cls = http_multi_classify(res, &retry_ms);
	bool passed = false;

	if (res->code != CURLE_OK && !(res->too_big && res->status > 0)) {
		snprintf(detail, sizeof(detail), "probe: %s", res->error);
	} else if (cls == OUTCOME_DELIVERED) {
		passed = ses_account_ok(res->body, detail, sizeof(detail));
	} else {
		ses_error(res, type, sizeof(type), msg, sizeof(msg));
		snprintf(detail, sizeof(detail),
			 "probe: status=%ld type=%s: %s", res->status,
			 type[0] != '\0' ? type : "-", msg);
	}
	ses_send_free(ss);
	cb(passed, passed ? NULL : detail, cbarg);
}

/* GetAccount, signed: SES's cheap authenticated call. */
static int
ses_probe(void *state, connector_probe_cb cb, void *arg)
{
	struct ses *s = state;
	struct ses_send *ss = xcalloc(1, sizeof(*ss));
	struct curl_slist *headers = NULL;
	CURL *easy = curl_easy_init();
	int rc = -ENOMEM;

	ss->s = s;
	ss->probe_cb = cb;
	ss->probe_arg = arg;
	LIST_INSERT_HEAD(&s->sends, ss, entry);
	buf_init(&ss->body, 0);
	if (easy == NULL ||
	    curl_easy_setopt(easy, CURLOPT_URL, s->account_url) != CURLE_OK ||
	    curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L) != CURLE_OK)
		goto fail;
	rc = ses_sign(s, "GET", SES_ACCOUNT_PATH, NULL, &headers);
	if (rc == 0)
		rc = http_multi_add(s->hm, easy, headers, NULL, s->connect_ms,
				    s->request_ms, ses_probed, ss);
	if (rc == 0)
		return 0;
fail:
	curl_easy_cleanup(easy);
	curl_slist_free_all(headers);
	ses_send_free(ss);
	return rc;
}

static int
ses_health(void *state)
{
	struct ses *s = state;

	return s->failures > 0 ? LINK_HEALTH_DEGRADED : LINK_HEALTH_OK;
}

static void
ses_free(struct ses *s)
{
	struct ses_send *ss;

	if (s == NULL)
		return;
	/* The transfers go first: none may call back into freed sends. */
	http_multi_free(s->hm);
	while (!LIST_EMPTY(&s->sends)) {
		ss = LIST_FIRST(&s->sends);
		ses_send_free(ss);
	}
	if (s->secret != NULL)
		OPENSSL_cleanse(s->secret, strlen(s->secret));
	free(s->secret);
	if (s->token != NULL)
		OPENSSL_cleanse(s->token, strlen(s->token));
	free(s->token);
	free(s->account_url);
	free(s->name);
	free(s->region);
	free(s->access_key_id);
	free(s->host);
	free(s->url);
	free(s);
}

static void
ses_close(void *state)
{
	ses_free(state);
}

/*
 * Reads the session token (file or env:).  It goes out as a header value,
 * so it must be one: printable ASCII without spaces (STS's tokens are
 * base64), and bounded.  The error names the key, never the token.
 */
static int
ses_token_read(const struct provider_config *pc, const char *ref, char **out,
	       char *err, size_t errlen)
{
	char *t = NULL;
	size_t n, i;
	int rc = config_secret_read(ref, &t, err, errlen);

	if (rc < 0)
		return rc;
	n = strlen(t);
	for (i = 0; i < n; i++)
		if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e)
			break;
	if (n > SES_TOKEN_MAX || i < n) {
		snprintf(err, errlen,
			 "provider %s: session_token_file: not a session "
			 "token (printable ASCII, at most %d bytes)",
			 pc->name, SES_TOKEN_MAX);
		OPENSSL_cleanse(t, n);
		free(t);
		return -EINVAL;
	}
	*out = t;
	return 0;
}

static int
ses_open(const struct provider_config *pc, struct event_base *base,
	 connector_done_cb done, void *arg, void **state, char *err,
	 size_t errlen)
{
	const char *region = provider_config_get(pc, "region");
	const char *akid = provider_config_get(pc, "access_key_id");
	const char *secret = provider_config_get(pc, "secret_access_key_file");
	const char *url = provider_config_get(pc, "base_url");
	const char *token = provider_config_get(pc, "session_token_file");
	struct ses *s = NULL;
	int rc;

	if (region == NULL || akid == NULL || secret == NULL || url == NULL) {
		snprintf(err, errlen,
			 "provider %s: ses needs region, access_key_id and "
			 "secret_access_key_file",
			 pc->name);
		return -EINVAL;
	}
	s = xcalloc(1, sizeof(*s));
	LIST_INIT(&s->sends);
	s->name = xstrdup(pc->name);
	s->region = xstrdup(region);
	s->access_key_id = xstrdup(akid);
	s->base = base;
	http_multi_timeouts(pc, &s->connect_ms, &s->request_ms);
	s->done = done;
	s->arg = arg;
	rc = split_base_url(url, &s->host);
	if (rc < 0) {
		snprintf(err, errlen, "provider %s: bad base_url", pc->name);
		goto fail;
	}
	s->url = xasprintf("%s%s", url, SES_PATH);
	s->account_url = xasprintf("%s%s", url, SES_ACCOUNT_PATH);
	rc = config_secret_read(secret, &s->secret, err, errlen);
	if (rc == 0 && token != NULL)
		rc = ses_token_read(pc, token, &s->token, err, errlen);
	if (rc < 0)
		goto fail;
	s->hm = http_multi_new(base);
	if (s->hm == NULL) {
		snprintf(err, errlen, "provider %s: cannot start curl",
			 pc->name);
		rc = -ENOMEM;
		goto fail;
	}
	rc = http_multi_configure(s->hm, pc);
	if (rc < 0) {
		snprintf(err, errlen, "provider %s: tls_ca_file: %s", pc->name,
			 strerror(-rc));
		goto fail;
	}
	*state = s;
	return 0;
fail:
	ses_free(s);
	return rc;
}

/*
 * region must look like one (letters, digits, '-'), since it becomes part
 * of the default host name and of the signature's scope; base_url and the
 * timeouts are checked as for every HTTP connector.
 */
static void
ses_config_check(struct provider_config *pc, const struct config *cfg,
		 struct config_report *r)
{
	const char *region = provider_config_get(pc, "region");
	char *def;

	(void)cfg;
	if (region == NULL || region[0] == '\0' ||
	    strspn(region, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
		strlen(region)) {
		config_report_error(r, provider_config_line(pc, "region"),
				    "region: must be an AWS region such as "
				    "us-east-1");
		return;
	}
	def = xasprintf("https://email.%s.amazonaws.com", region);
	http_multi_config_check(pc, r, def);
	free(def);
}

static const char *const ses_required[] = {"region", "access_key_id",
					   "secret_access_key_file", NULL};
static const char *const ses_optional[] = {
    "base_url",           "connect_timeout_ms", "request_timeout_ms",
    "session_token_file", "tls_ca_file",        NULL};
static const char *const ses_secret[] = {"secret_access_key_file",
					 "session_token_file", NULL};

static const struct config_ptype ses_config = {
    .name = "ses",
    .required = ses_required,
    .optional = ses_optional,
    .secret = ses_secret,
    .check = ses_config_check,
    /* 40 MB after base64: three quarters of it raw (conn_limits.h). */
    .max_message_bytes = CONN_LIMIT_SES,
};

static const struct connector_ops ses_ops = {
    .name = "ses",
    .config = &ses_config,
    .open = ses_open,
    .send = ses_send,
    .health = ses_health,
    .probe = ses_probe,
    .close = ses_close,
    /* "Amazon SES does not support the SMTPUTF8 extension ... the email
     * address string must be 7-bit ASCII" (the API's Destination; a
     * non-ASCII domain must come as Punycode, which we do not make). */
    .ascii_addresses = true,
};

CONNECTOR_REGISTER(ses_ops)
