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
 * Mailgun answers "Mailgun Magnificent API": transient); 400 is the
 * message's fault (permanent), 413 its size over Mailgun's limit
 * (too_large, set by conn_http for every API); 401/403 the account's; 429
 * throttled; 404, other statuses and failures before the request went out are
 * transient; no answer after it went out is ambiguous.  No probe (see
 * mailgun_api).  Open, send, health and close are conn_http's; the key is
 * read once at open, given to curl only as the password and never logged.
 */
#include "agent/conn_http.h"
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

static int
status_class(long status)
{
	if (status == 400)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT; /* 404 wrong domain/region, 408, ... */
}

/* Delivered needs an "id"; Mailgun's "message" says why not. */
static void
mailgun_answer(void *ctx, const struct connector_job *job,
	       const struct http_result *hr, json_t *ans,
	       struct conn_http_answer *a)
{
	const char *id = json_string_value(json_object_get(ans, "id"));
	const char *msg = json_string_value(json_object_get(ans, "message"));

	(void)ctx;
	(void)job;
	if (a->outcome == HTTP_CLASS_CONNECTOR)
		a->outcome = status_class(hr->status);
	if (a->outcome == OUTCOME_DELIVERED && id == NULL) {
		a->outcome = OUTCOME_TRANSIENT;
		snprintf(a->why, sizeof(a->why),
			 "an answer without an id (is base_url right?)");
	} else if (a->outcome == OUTCOME_DELIVERED) {
		snprintf(a->id, sizeof(a->id), "%s", id);
	} else if (msg != NULL) {
		snprintf(a->why, sizeof(a->why), "%s", msg);
	}
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

/* ctx is the path, /v3/DOMAIN/messages.mime. */
static const char *
mailgun_build(void *ctx, const struct connector_job *job, CURL *easy,
	      struct conn_http_request *rq)
{
	rq->path = ctx;
	rq->form = build_form(easy, job);
	return rq->form == NULL ? "out of memory" : NULL;
}

static int
mailgun_open_domain(const struct provider_config *pc, void **ctx, char *err,
		    size_t errlen)
{
	const char *domain = provider_config_get(pc, "domain");

	if (domain == NULL) {
		snprintf(err, errlen, "provider %s: mailgun needs 'domain'",
			 pc->name);
		return -EINVAL;
	}
	*ctx = xasprintf("/v3/%s/messages.mime", domain);
	return 0;
}

/*
 * No probe: Mailgun's one cheap authenticated call, GET /v4/domains, wants
 * an account key, and a relay holds a domain sending key, which it
 * refuses; a provider down for its account comes back by one trial
 * message per probe_interval_s.
 */
static const struct conn_http_api mailgun_api = {
    .type = "mailgun",
    .default_url = MAILGUN_DEFAULT_URL,
    .secret_key = "api_key_file",
    .basic_user = "api",
    .open = mailgun_open_domain,
    .free = free,
    .build = mailgun_build,
    .answer = mailgun_answer,
};

/* The domain goes into the URL path: a host name, nothing more. */
static void
mailgun_domain_check(struct provider_config *pc, const struct config *cfg,
		     struct config_report *r)
{
	const char *domain = provider_config_get(pc, "domain");
	size_t i;

	(void)cfg;
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
static const char *const mailgun_optional[] = {CONN_HTTP_OPTIONAL_KEYS};
static const char *const mailgun_secret[] = {"api_key_file", NULL};

/* The limit: conn_limits.h. */
CONN_HTTP_REGISTER(mailgun, NULL, mailgun_domain_check, CONN_LIMIT_MAILGUN)
