/*
 * The mailgun connector: each message goes, exactly as we built it, to
 * Mailgun's raw-MIME endpoint, POST {base_url}/v3/{domain}/messages.mime,
 * as multipart/form-data with one "to" field per envelope recipient and
 * the MIME text as the file part "message", with Basic auth "api:KEY".
 * Transfers run on the agent's loop through http_multi (one per provider,
 * so connections are reused).
 *
 * Answers map to classes as PROVIDERS.md reads: 200 with an "id" is
 * delivered with that id (a 200 without one is a wrong base_url, which
 * Mailgun answers "Mailgun Magnificent API": transient); 400 and 413 are
 * the message's fault (permanent); 401/403 the account's; 429 throttled;
 * 404, other statuses and failures before the request went out are
 * transient; no answer after it went out is ambiguous.  The key is read
 * once at open, given to curl only as the password and never logged; the
 * detail passed on carries the status and Mailgun's own message, made
 * printable.
 */
#include "agent/connector.h"
#include "agent/http_multi.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "link/link.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define MAILGUN_DEFAULT_URL "https://api.mailgun.net"

struct mailgun {
	char *name; /* the provider's */
	char *url;  /* base_url/v3/domain/messages.mime */
	char *key;  /* the secret */
	long connect_ms, request_ms;
	struct http_multi *hm;
	connector_done_cb done;
	void *arg;
	int failures; /* consecutive transient or ambiguous ends */
	struct log_rl rl;
};

struct mailgun_send {
	struct mailgun *mg;
	struct connector_job *job;
};

/* The "message" or "id" string of a JSON answer, or NULL. */
static char *
answer_field(const struct buf *body, const char *field)
{
	json_error_t jerr;
	json_t *root, *v;
	char *s = NULL;

	if (body->len == 0)
		return NULL;
	root = json_loadb(body->p, body->len, 0, &jerr);
	if (root == NULL)
		return NULL;
	v = json_object_get(root, field); /* borrowed */
	if (json_is_string(v))
		s = xstrdup(json_string_value(v));
	json_decref(root);
	return s;
}

static int
status_class(long status)
{
	if (status == 400 || status == 413)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT; /* 404 wrong domain/region, 408, ... */
}

static void
send_done(const struct http_result *hr, void *arg)
{
	struct mailgun_send *ms = arg;
	struct mailgun *mg = ms->mg;
	struct connector_result res;
	char detail[LINK_DETAIL_MAX + 1], clean[256];
	char *id = NULL, *msg = NULL;
	const char *why;

	memset(&res, 0, sizeof(res));
	res.outcome = http_multi_classify(hr, &res.retry_after_ms);
	if (res.outcome == HTTP_CLASS_CONNECTOR)
		res.outcome = status_class(hr->status);
	if (res.outcome == OUTCOME_DELIVERED) {
		id = answer_field(hr->body, "id");
		if (id == NULL)
			res.outcome = OUTCOME_TRANSIENT;
	}
	if (res.outcome == OUTCOME_DELIVERED) {
		mg->failures = 0;
		res.provider_message_id = id;
	} else {
		if (hr->code != CURLE_OK && !hr->too_big)
			why = hr->error;
		else if (hr->status >= 200 && hr->status < 300)
			why = "an answer without an id (is base_url right?)";
		else {
			msg = answer_field(hr->body, "message");
			why = msg != NULL ? msg : hr->body->p;
		}
		log_sanitize(why, strlen(why), clean, sizeof(clean));
		snprintf(detail, sizeof(detail), "mailgun status=%ld: %s",
			 hr->status, clean);
		res.detail = detail;
		if (res.outcome == OUTCOME_TRANSIENT ||
		    res.outcome == OUTCOME_AMBIGUOUS)
			mg->failures++;
		log_warnx_rl(&mg->rl, 1000,
			     "%s agent send_failed provider=%s status=%ld "
			     "outcome=%s detail=\"%s\"",
			     ms->job->message_id, mg->name, hr->status,
			     outcome_name(res.outcome), clean);
	}
	mg->done(ms->job, &res, mg->arg);
	free(id);
	free(msg);
	free(ms);
}

/* The form: one "to" per recipient, then the message as a file part. */
static curl_mime *
build_form(CURL *easy, const struct connector_job *job)
{
	curl_mime *mime = curl_mime_init(easy);
	curl_mimepart *part;
	size_t i;

	if (mime == NULL)
		return NULL;
	for (i = 0; i < job->nrcpt; i++) {
		part = curl_mime_addpart(mime);
		if (part == NULL || curl_mime_name(part, "to") != CURLE_OK ||
		    curl_mime_data(part, job->rcpt[i], CURL_ZERO_TERMINATED) !=
			CURLE_OK)
			goto fail;
	}
	part = curl_mime_addpart(mime);
	if (part == NULL || curl_mime_name(part, "message") != CURLE_OK ||
	    curl_mime_filename(part, "message.mime") != CURLE_OK ||
	    curl_mime_type(part, "application/octet-stream") != CURLE_OK ||
	    curl_mime_data(part, (const char *)job->mime, job->mime_len) !=
		CURLE_OK)
		goto fail;
	return mime;
fail:
	curl_mime_free(mime);
	return NULL;
}

static int
mailgun_send(void *state, struct connector_job *job)
{
	struct mailgun *mg = state;
	struct mailgun_send *ms;
	struct curl_slist *h, *more = NULL;
	curl_mime *form = NULL;
	CURL *easy;
	int rc;

	easy = curl_easy_init();
	if (easy == NULL)
		return -ENOMEM;
	form = build_form(easy, job);
	/* curl would wait for 100 Continue before a large body. */
	h = curl_slist_append(NULL, "Expect:");
	if (h != NULL)
		more = curl_slist_append(h, "Accept: application/json");
	if (form == NULL || h == NULL || more == NULL ||
	    curl_easy_setopt(easy, CURLOPT_URL, mg->url) != CURLE_OK ||
	    curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC) !=
		CURLE_OK ||
	    curl_easy_setopt(easy, CURLOPT_USERNAME, "api") != CURLE_OK ||
	    curl_easy_setopt(easy, CURLOPT_PASSWORD, mg->key) != CURLE_OK) {
		rc = -ENOMEM;
		goto fail;
	}
	ms = xcalloc(1, sizeof(*ms));
	ms->mg = mg;
	ms->job = job;
	rc = http_multi_add(mg->hm, easy, h, form, mg->connect_ms,
			    mg->request_ms, send_done, ms);
	if (rc != 0) {
		free(ms);
		goto fail;
	}
	return 0;
fail:
	curl_slist_free_all(h);
	curl_mime_free(form);
	curl_easy_cleanup(easy);
	return rc;
}

static int
mailgun_health(void *state)
{
	struct mailgun *mg = state;

	/* Never down on counts: no traffic would come to clear them. */
	if (mg->failures > 0)
		return LINK_HEALTH_DEGRADED;
	return LINK_HEALTH_OK;
}

static void
mailgun_free(struct mailgun *mg)
{
	if (mg == NULL)
		return;
	http_multi_free(mg->hm);
	free(mg->name);
	free(mg->url);
	if (mg->key != NULL)
		explicit_bzero(mg->key, strlen(mg->key));
	free(mg->key);
	free(mg);
}

static void
mailgun_close(void *state)
{
	/* Transfers under way are dropped without done(). */
	mailgun_free(state);
}

static int
mailgun_open(const struct provider_config *pc, struct event_base *base,
	     connector_done_cb done, void *arg, void **state, char *err,
	     size_t errlen)
{
	const char *domain = provider_config_get(pc, "domain");
	const char *url = provider_config_get(pc, "base_url");
	const char *keyref = provider_config_get(pc, "api_key_file");
	struct mailgun *mg;
	char kerr[256];
	int rc;

	if (domain == NULL || keyref == NULL) {
		snprintf(err, errlen,
			 "provider %s: mailgun needs 'domain' and "
			 "'api_key_file'",
			 pc->name);
		return -EINVAL;
	}
	mg = xcalloc(1, sizeof(*mg));
	mg->name = xstrdup(pc->name);
	mg->url = xasprintf("%s/v3/%s/messages.mime",
			    url != NULL ? url : MAILGUN_DEFAULT_URL, domain);
	http_multi_timeouts(pc, &mg->connect_ms, &mg->request_ms);
	mg->done = done;
	mg->arg = arg;
	rc = config_secret_read(keyref, &mg->key, kerr, sizeof(kerr));
	if (rc != 0) {
		snprintf(err, errlen, "provider %s: api_key_file: %s", pc->name,
			 kerr);
		goto fail;
	}
	mg->hm = http_multi_new(base);
	if (mg->hm == NULL) {
		snprintf(err, errlen, "provider %s: cannot start libcurl",
			 pc->name);
		rc = -ENOMEM;
		goto fail;
	}
	*state = mg;
	return 0;
fail:
	mailgun_free(mg);
	return rc;
}

/* A domain is one DNS name: it goes into the URL's path as it is. */
static void
mailgun_config_check(struct provider_config *pc, const struct config *cfg,
		     struct config_report *r)
{
	const char *domain = provider_config_get(pc, "domain");
	size_t i;

	http_multi_config_check(pc, r, MAILGUN_DEFAULT_URL);
	if (domain == NULL)
		return;
	for (i = 0; domain[i] != '\0'; i++)
		if (!((domain[i] >= 'a' && domain[i] <= 'z') ||
		      (domain[i] >= 'A' && domain[i] <= 'Z') ||
		      (domain[i] >= '0' && domain[i] <= '9') ||
		      domain[i] == '-' || domain[i] == '.'))
			break;
	if (i == 0 || domain[i] != '\0')
		config_report_error(r, provider_config_line(pc, "domain"),
				    "domain: must be a domain name");
}

static const char *const mailgun_required[] = {"api_key_file", "domain", NULL};
static const char *const mailgun_optional[] = {"base_url", "connect_timeout_ms",
					       "request_timeout_ms", NULL};
static const char *const mailgun_secret[] = {"api_key_file", NULL};

static const struct config_ptype mailgun_config = {
    .name = "mailgun",
    .required = mailgun_required,
    .optional = mailgun_optional,
    .secret = mailgun_secret,
    .check = mailgun_config_check,
};

static const struct connector_ops mailgun_ops = {
    .name = "mailgun",
    .config = &mailgun_config,
    .open = mailgun_open,
    .send = mailgun_send,
    .health = mailgun_health,
    .close = mailgun_close,
};

CONNECTOR_REGISTER(mailgun_ops)
