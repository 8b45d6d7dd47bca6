/*
 * The sendgrid connector: SendGrid's v3 Mail Send takes no raw MIME, so
 * each message is parsed with GMime and rebuilt as the JSON it wants,
 * POST {base_url}/v3/mail/send with a Bearer key, on the agent's loop
 * through http_multi (one per provider, so connections are reused).
 *
 * The envelope decides who gets the message: an envelope recipient named
 * in To goes into the personalization's "to", one named in Cc into "cc",
 * any other into "bcc" (SendGrid needs a "to": see personalizations()).  From,
 * Reply-To and Subject come from the headers, decoded; text/plain then
 * text/html form "content"; parts with a file name or an attachment disposition
 * become "attachments" (base64, with type, file name, and the content id of an
 * inline part); other headers pass in "headers" except those SendGrid
 * refuses or sets itself.  A message that cannot be carried (unparsable,
 * over SendGrid's recipient limit, not UTF-8) is refused by send(), so the
 * agent reports it transient and another provider may take it.
 *
 * Answers (PROVIDERS.md): 2xx is delivered with the X-Message-Id header
 * as the id; 400 and 413 permanent with SendGrid's first error message;
 * 401/403 account; 429 throttled, for Retry-After or else until
 * X-RateLimit-Reset; 5xx and other statuses transient; no answer after
 * the request went out ambiguous.  The key lives in the Authorization
 * header of each request only and is never logged.
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
#include <strings.h>
#include <time.h>

#include <gmime/gmime.h>
#include <jansson.h>

#define SENDGRID_DEFAULT_URL "https://api.sendgrid.com"
#define SENDGRID_RCPT_MAX 1000

struct sendgrid {
	char *name; /* the provider's */
	char *url;  /* base_url/v3/mail/send */
	char *auth; /* "Authorization: Bearer KEY" */
	long connect_ms, request_ms;
	struct http_multi *hm;
	connector_done_cb done;
	void *arg;
	int failures; /* consecutive transient or ambiguous ends */
	struct log_rl rl;
};

struct sendgrid_send {
	struct sendgrid *sg;
	struct connector_job *job;
};

/* What walking the parts gathers. */
struct walk {
	json_t *text, *html; /* content objects, or NULL */
	json_t *attachments;
	const char *why; /* the first reason the message cannot go */
};

/* Headers SendGrid refuses or sets from other fields. */
static const char *const skip_headers[] = {"x-sg-id",
					   "x-sg-eid",
					   "received",
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

static bool
set_str(json_t *o, const char *key, const char *s)
{
	json_t *v = json_string(s != NULL ? s : ""); /* NULL: not UTF-8 */

	return v != NULL && json_object_set_new(o, key, v) == 0;
}

/* {"email": ..., "name": ...} of a mailbox, or NULL. */
static json_t *
mailbox_json(InternetAddress *ia)
{
	const char *name;
	json_t *o;

	if (!INTERNET_ADDRESS_IS_MAILBOX(ia))
		return NULL;
	o = json_object();
	name = internet_address_get_name(ia);
	if (o == NULL ||
	    !set_str(o, "email",
		     internet_address_mailbox_get_addr(
			 INTERNET_ADDRESS_MAILBOX(ia))) ||
	    (name != NULL && name[0] != '\0' && !set_str(o, "name", name))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* The mailbox of list whose address is addr, or NULL. */
static InternetAddress *
find_mailbox(InternetAddressList *list, const char *addr)
{
	InternetAddress *ia;
	int i, n = list != NULL ? internet_address_list_length(list) : 0;

	for (i = 0; i < n; i++) {
		ia = internet_address_list_get_address(list, i);
		if (INTERNET_ADDRESS_IS_MAILBOX(ia) &&
		    strcasecmp(internet_address_mailbox_get_addr(
				   INTERNET_ADDRESS_MAILBOX(ia)),
			       addr) == 0)
			return ia;
	}
	return NULL;
}

/* {"email": addr} with the name the headers give it, if any. */
static json_t *
rcpt_json(GMimeMessage *msg, const char *addr)
{
	InternetAddress *ia;
	json_t *o;

	ia = find_mailbox(
	    g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_TO), addr);
	if (ia == NULL)
		ia = find_mailbox(
		    g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_CC),
		    addr);
	if (ia != NULL)
		return mailbox_json(ia);
	o = json_object();
	if (o != NULL && !set_str(o, "email", addr)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* {"to": [r]} for one Bcc-only recipient, or NULL. */
static json_t *
alone(json_t *r)
{
	json_t *p = json_object(), *to = json_array();

	if (p == NULL || to == NULL || json_array_append(to, r) != 0 ||
	    json_object_set_new(p, "to", to) != 0) {
		json_decref(p);
		json_decref(to);
		return NULL;
	}
	return p;
}

/*
 * The personalizations: every envelope recipient in its place.  SendGrid
 * needs a "to" in each: with none in To, the first Cc (seen by all anyway)
 * takes it; with only Bcc recipients, each gets a personalization of its
 * own with itself as "to", so none sees another.
 */
static json_t *
personalizations(GMimeMessage *msg, const struct connector_job *job)
{
	InternetAddressList *to, *cc;
	json_t *pers = json_array(), *p = json_object(), *lists[3], *r;
	const char *names[3] = {"to", "cc", "bcc"};
	size_t i, k;
	bool ok = pers != NULL && p != NULL;

	to = g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_TO);
	cc = g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_CC);
	for (k = 0; k < 3; k++)
		lists[k] = json_array();
	for (i = 0; ok && i < job->nrcpt; i++) {
		if (find_mailbox(to, job->rcpt[i]) != NULL)
			k = 0;
		else if (find_mailbox(cc, job->rcpt[i]) != NULL)
			k = 1;
		else
			k = 2;
		r = rcpt_json(msg, job->rcpt[i]);
		ok = r != NULL && json_array_append_new(lists[k], r) == 0;
	}
	if (ok && json_array_size(lists[0]) == 0 &&
	    json_array_size(lists[1]) > 0) {
		ok = json_array_append(lists[0], json_array_get(lists[1], 0)) ==
			 0 &&
		     json_array_remove(lists[1], 0) == 0;
	}
	if (ok && json_array_size(lists[0]) == 0) {
		for (i = 0; ok && i < json_array_size(lists[2]); i++)
			ok = json_array_append_new(
				 pers, alone(json_array_get(lists[2], i))) == 0;
	} else {
		for (k = 0; ok && k < 3; k++)
			if (json_array_size(lists[k]) > 0)
				ok =
				    json_object_set(p, names[k], lists[k]) == 0;
		ok = ok && json_array_append(pers, p) == 0;
	}
	for (k = 0; k < 3; k++)
		json_decref(lists[k]);
	json_decref(p);
	if (!ok || json_array_size(pers) == 0) {
		json_decref(pers);
		return NULL;
	}
	return pers;
}

/* The decoded bytes of a part, base64. */
static char *
part_base64(GMimePart *part)
{
	GMimeDataWrapper *dw = g_mime_part_get_content(part);
	GMimeStream *mem;
	GByteArray *ba;
	char *b64, *out;

	if (dw == NULL)
		return xstrdup("");
	mem = g_mime_stream_mem_new();
	if (g_mime_data_wrapper_write_to_stream(dw, mem) < 0) {
		g_object_unref(mem);
		return NULL;
	}
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	b64 = g_base64_encode(ba->data, ba->len);
	g_object_unref(mem);
	out = xstrdup(b64);
	g_free(b64);
	return out;
}

static void
add_attachment(struct walk *w, GMimePart *part, const char *filename)
{
	GMimeObject *obj = GMIME_OBJECT(part);
	const char *cid = g_mime_object_get_content_id(obj);
	const char *disp = g_mime_object_get_disposition(obj);
	bool inl =
	    cid != NULL && disp != NULL && strcasecmp(disp, "inline") == 0;
	char *type = g_mime_content_type_get_mime_type(
	    g_mime_object_get_content_type(obj));
	char *b64 = part_base64(part);
	json_t *a = json_object();

	if (b64 == NULL || a == NULL || !set_str(a, "content", b64) ||
	    !set_str(a, "type", type) ||
	    !set_str(a, "filename",
		     filename != NULL ? filename : "attachment") ||
	    !set_str(a, "disposition", inl ? "inline" : "attachment") ||
	    (inl && !set_str(a, "content_id", cid)) ||
	    json_array_append(w->attachments, a) != 0)
		w->why = "an attachment SendGrid cannot carry";
	json_decref(a);
	g_free(type);
	free(b64);
}

static void
walk_part(GMimeObject *parent, GMimeObject *obj, gpointer data)
{
	struct walk *w = data;
	GMimePart *part;
	const char *filename, *disp;
	json_t **slot = NULL;
	char *text;

	if (!GMIME_IS_PART(obj) || w->why != NULL)
		return;
	part = GMIME_PART(obj);
	filename = g_mime_part_get_filename(part);
	disp = g_mime_object_get_disposition(obj);
	if (filename == NULL &&
	    (disp == NULL || strcasecmp(disp, "attachment") != 0) &&
	    GMIME_IS_TEXT_PART(obj)) {
		if (g_mime_content_type_is_type(
			g_mime_object_get_content_type(obj), "text", "plain"))
			slot = &w->text;
		else if (g_mime_content_type_is_type(
			     g_mime_object_get_content_type(obj), "text",
			     "html"))
			slot = &w->html;
	}
	if (slot == NULL || *slot != NULL) {
		add_attachment(w, part, filename);
		return;
	}
	text = g_mime_text_part_get_text(GMIME_TEXT_PART(obj));
	*slot = json_object();
	if (text == NULL ||
	    !set_str(*slot, "type",
		     slot == &w->text ? "text/plain" : "text/html") ||
	    !set_str(*slot, "value", text))
		w->why = "a text part that is not UTF-8";
	g_free(text);
}

static bool
header_skipped(const char *name)
{
	size_t i;

	for (i = 0; skip_headers[i] != NULL; i++)
		if (strcasecmp(name, skip_headers[i]) == 0)
			return true;
	return false;
}

/* The headers SendGrid lets us set, decoded. */
static json_t *
custom_headers(GMimeMessage *msg)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(msg));
	GMimeHeader *hdr;
	json_t *o = json_object();
	int i, n = g_mime_header_list_get_count(hl);

	for (i = 0; o != NULL && i < n; i++) {
		hdr = g_mime_header_list_get_header_at(hl, i);
		if (header_skipped(g_mime_header_get_name(hdr)))
			continue;
		if (!set_str(o, g_mime_header_get_name(hdr),
			     g_mime_header_get_value(hdr))) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

/* The top-level fields from the headers and the parts. */
static const char *
fill_body(json_t *root, GMimeMessage *msg, const struct connector_job *job)
{
	InternetAddressList *l;
	struct walk w = {.attachments = json_array()};
	json_t *v, *content = json_array();
	const char *why = NULL;

	l = g_mime_message_get_from(msg);
	v = l != NULL && internet_address_list_length(l) > 0
		? mailbox_json(internet_address_list_get_address(l, 0))
		: NULL;
	if (v == NULL || json_object_set_new(root, "from", v) != 0)
		why = "no From mailbox";
	l = g_mime_message_get_reply_to(msg);
	if (why == NULL && l != NULL && internet_address_list_length(l) > 0) {
		v = mailbox_json(internet_address_list_get_address(l, 0));
		if (v == NULL || json_object_set_new(root, "reply_to", v) != 0)
			why = "a Reply-To that is not a mailbox";
	}
	if (why == NULL &&
	    !set_str(root, "subject", g_mime_message_get_subject(msg)))
		why = "a Subject that is not UTF-8";
	if (why == NULL)
		g_mime_message_foreach(msg, walk_part, &w);
	if (why == NULL && w.why != NULL)
		why = w.why;
	if (why == NULL && w.text == NULL && w.html == NULL)
		why = "no text or HTML part";
	/* SendGrid wants text/plain before text/html. */
	if (why == NULL &&
	    ((w.text != NULL && json_array_append(content, w.text) != 0) ||
	     (w.html != NULL && json_array_append(content, w.html) != 0) ||
	     json_object_set(root, "content", content) != 0))
		why = "out of memory";
	if (why == NULL && json_array_size(w.attachments) > 0 &&
	    json_object_set(root, "attachments", w.attachments) != 0)
		why = "out of memory";
	v = why == NULL ? custom_headers(msg) : NULL;
	if (why == NULL &&
	    (v == NULL || json_object_set_new(root, "headers", v) != 0))
		why = "a header that is not UTF-8";
	json_decref(w.text);
	json_decref(w.html);
	json_decref(w.attachments);
	json_decref(content);
	return why;
}

/* The request body of job, or NULL with the reason in *why. */
static char *
build_body(const struct connector_job *job, const char **why)
{
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *msg;
	json_t *root = NULL, *pers = NULL;
	char *body = NULL;

	*why = NULL;
	if (job->nrcpt == 0 || job->nrcpt > SENDGRID_RCPT_MAX) {
		*why = "no recipient, or more than SendGrid takes";
		return NULL;
	}
	stream = g_mime_stream_mem_new_with_buffer((const char *)job->mime,
						   job->mime_len);
	parser = g_mime_parser_new_with_stream(stream);
	msg = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	g_object_unref(stream);
	if (msg == NULL) {
		*why = "a message GMime cannot parse";
		return NULL;
	}
	root = json_object();
	pers = personalizations(msg, job);
	if (root == NULL || pers == NULL ||
	    json_object_set(root, "personalizations", pers) != 0)
		*why = "a recipient that is not UTF-8";
	if (*why == NULL)
		*why = fill_body(root, msg, job);
	if (*why == NULL) {
		body = json_dumps(root, JSON_COMPACT);
		if (body == NULL)
			*why = "out of memory";
	}
	json_decref(pers);
	json_decref(root);
	g_object_unref(msg);
	return body;
}

/* The first error message of a SendGrid error answer, or NULL. */
static char *
answer_error(const struct buf *body)
{
	json_error_t jerr;
	json_t *root, *v;
	char *s = NULL;

	if (body->len == 0)
		return NULL;
	root = json_loadb(body->p, body->len, 0, &jerr);
	if (root == NULL)
		return NULL;
	v = json_object_get(json_array_get(json_object_get(root, "errors"), 0),
			    "message"); /* borrowed, NULL-safe */
	if (json_is_string(v))
		s = xstrdup(json_string_value(v));
	json_decref(root);
	return s;
}

/* A 429 without Retry-After: wait until X-RateLimit-Reset (epoch s). */
static uint32_t
reset_ms(const struct http_result *hr)
{
	const char *v = http_multi_header(hr, "X-RateLimit-Reset");
	char *end;
	long long t, now = (long long)time(NULL);

	if (v == NULL)
		return 0;
	errno = 0;
	t = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0')
		return 0;
	if (t <= now)
		return 1000;
	if (t - now > (long long)(HTTP_RETRY_AFTER_MAX_MS / 1000))
		return HTTP_RETRY_AFTER_MAX_MS;
	return (uint32_t)(t - now) * 1000u;
}

static void
send_done(const struct http_result *hr, void *arg)
{
	struct sendgrid_send *ss = arg;
	struct sendgrid *sg = ss->sg;
	struct connector_result res;
	char detail[LINK_DETAIL_MAX + 1], clean[256], pmid[LINK_PMID_MAX + 1];
	char *msg = NULL;
	const char *why, *id;

	memset(&res, 0, sizeof(res));
	res.outcome = http_multi_classify(hr, &res.retry_after_ms);
	if (res.outcome == HTTP_CLASS_CONNECTOR)
		res.outcome = (hr->status == 400 || hr->status == 413)
				  ? OUTCOME_PERMANENT
				  : OUTCOME_TRANSIENT;
	if (res.outcome == OUTCOME_THROTTLED && res.retry_after_ms == 0)
		res.retry_after_ms = reset_ms(hr);
	if (res.outcome == OUTCOME_DELIVERED) {
		sg->failures = 0;
		/* Accepted even without an id: resending would duplicate. */
		id = http_multi_header(hr, "X-Message-Id");
		if (id != NULL) {
			log_sanitize(id, strlen(id), pmid, sizeof(pmid));
			res.provider_message_id = pmid;
		}
	} else {
		if (hr->code != CURLE_OK && !hr->too_big)
			why = hr->error;
		else {
			msg = answer_error(hr->body);
			why = msg != NULL ? msg : hr->body->p;
		}
		log_sanitize(why, strlen(why), clean, sizeof(clean));
		snprintf(detail, sizeof(detail), "sendgrid status=%ld: %s",
			 hr->status, clean);
		res.detail = detail;
		if (res.outcome == OUTCOME_TRANSIENT ||
		    res.outcome == OUTCOME_AMBIGUOUS)
			sg->failures++;
		log_warnx_rl(&sg->rl, 1000,
			     "%s agent send_failed provider=%s status=%ld "
			     "outcome=%s detail=\"%s\"",
			     ss->job->message_id, sg->name, hr->status,
			     outcome_name(res.outcome), clean);
	}
	sg->done(ss->job, &res, sg->arg);
	free(msg);
	free(ss);
}

static int
sendgrid_send(void *state, struct connector_job *job)
{
	struct sendgrid *sg = state;
	struct sendgrid_send *ss;
	struct curl_slist *h = NULL, *t;
	const char *why;
	char *body;
	CURL *easy;
	int rc = -ENOMEM;

	body = build_body(job, &why);
	if (body == NULL) {
		log_warnx_rl(&sg->rl, 1000,
			     "%s agent unsendable provider=%s reason=\"%s\"",
			     job->message_id, sg->name, why);
		return -EINVAL;
	}
	easy = curl_easy_init();
	if (easy == NULL)
		goto fail;
	h = curl_slist_append(NULL, sg->auth);
	t = h != NULL ? curl_slist_append(h, "Content-Type: application/json")
		      : NULL;
	/* curl would wait for 100 Continue before a large body. */
	t = t != NULL ? curl_slist_append(h, "Expect:") : NULL;
	if (t == NULL ||
	    curl_easy_setopt(easy, CURLOPT_URL, sg->url) != CURLE_OK ||
	    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
			     (curl_off_t)strlen(body)) != CURLE_OK ||
	    curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK)
		goto fail;
	ss = xcalloc(1, sizeof(*ss));
	ss->sg = sg;
	ss->job = job;
	rc = http_multi_add(sg->hm, easy, h, NULL, sg->connect_ms,
			    sg->request_ms, send_done, ss);
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
sendgrid_health(void *state)
{
	struct sendgrid *sg = state;

	/* Never down on counts: no traffic would come to clear them. */
	if (sg->failures > 0)
		return LINK_HEALTH_DEGRADED;
	return LINK_HEALTH_OK;
}

static void
sendgrid_free(struct sendgrid *sg)
{
	if (sg == NULL)
		return;
	http_multi_free(sg->hm);
	free(sg->name);
	free(sg->url);
	if (sg->auth != NULL)
		explicit_bzero(sg->auth, strlen(sg->auth));
	free(sg->auth);
	free(sg);
}

static void
sendgrid_close(void *state)
{
	if (state == NULL)
		return;
	/* Transfers under way are dropped without done(). */
	sendgrid_free(state);
	g_mime_shutdown();
}

static int
sendgrid_open(const struct provider_config *pc, struct event_base *base,
	      connector_done_cb done, void *arg, void **state, char *err,
	      size_t errlen)
{
	const char *url = provider_config_get(pc, "base_url");
	const char *keyref = provider_config_get(pc, "api_key_file");
	struct sendgrid *sg;
	char kerr[256], *key = NULL;
	int rc;

	if (keyref == NULL) {
		snprintf(err, errlen,
			 "provider %s: sendgrid needs 'api_key_file'",
			 pc->name);
		return -EINVAL;
	}
	rc = config_secret_read(keyref, &key, kerr, sizeof(kerr));
	if (rc != 0) {
		snprintf(err, errlen, "provider %s: api_key_file: %s", pc->name,
			 kerr);
		return rc;
	}
	sg = xcalloc(1, sizeof(*sg));
	sg->name = xstrdup(pc->name);
	sg->url = xasprintf("%s/v3/mail/send",
			    url != NULL ? url : SENDGRID_DEFAULT_URL);
	sg->auth = xasprintf("Authorization: Bearer %s", key);
	explicit_bzero(key, strlen(key));
	free(key);
	http_multi_timeouts(pc, &sg->connect_ms, &sg->request_ms);
	sg->done = done;
	sg->arg = arg;
	sg->hm = http_multi_new(base);
	if (sg->hm == NULL) {
		snprintf(err, errlen, "provider %s: cannot start libcurl",
			 pc->name);
		sendgrid_free(sg);
		return -ENOMEM;
	}
	/* Counted: the agent's other users of GMime, if any, keep theirs. */
	g_mime_init();
	*state = sg;
	return 0;
}

static void
sendgrid_config_check(struct provider_config *pc, const struct config *cfg,
		      struct config_report *r)
{
	http_multi_config_check(pc, r, SENDGRID_DEFAULT_URL);
}

static const char *const sendgrid_required[] = {"api_key_file", NULL};
static const char *const sendgrid_optional[] = {
    "base_url", "connect_timeout_ms", "request_timeout_ms", NULL};
static const char *const sendgrid_secret[] = {"api_key_file", NULL};

static const struct config_ptype sendgrid_config = {
    .name = "sendgrid",
    .required = sendgrid_required,
    .optional = sendgrid_optional,
    .secret = sendgrid_secret,
    .check = sendgrid_config_check,
};

static const struct connector_ops sendgrid_ops = {
    .name = "sendgrid",
    .config = &sendgrid_config,
    .open = sendgrid_open,
    .send = sendgrid_send,
    .health = sendgrid_health,
    .close = sendgrid_close,
};

CONNECTOR_REGISTER(sendgrid_ops)
