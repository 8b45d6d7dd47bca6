/*
 * The Mailgun drop-in routes: POST /v3/DOMAIN/messages (a form of fields
 * and files, multipart/form-data or urlencoded) and POST
 * /v3/DOMAIN/messages.mime (a raw message and its recipients), so an
 * application using Mailgun's SDK moves here by changing its base URL and
 * key.  The head is checked first: the key as HTTP Basic "api:KEY", the
 * DOMAIN (well-formed, and one of mailgun_domains when that is set), the
 * content type, the declared length against the form cap
 * (dropin_form_max_bytes).  Then the body is parsed (intake/form.h),
 * translated (intake/dropin.h) and handed to submit_json() (messages) or
 * submit_mime() (messages.mime, the bytes kept as sent); the answer comes
 * only after the commit: 200 {"id":"<ID@DOMAIN>","message":"Queued.
 * Thank you."}, Mailgun's shape, whose ID is ours (GET /v1/messages/ takes
 * it with or without the brackets).  Errors are {"message":"..."} with
 * Mailgun's statuses; a wrong key is 401 with the plain text "Forbidden",
 * as Mailgun answers.
 */
#include "common/config.h"
#include "common/util.h"
#include "intake/dropin.h"
#include "intake/form.h"
#include "intake/submit.h"
#include "server/front_mailgun.h"
#include "server/http_front_int.h"
#include "server/httpd.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MG_DOMAIN_MAX 253

/* One request, from its body to its answer. */
struct mg_req {
	struct http_front *f;
	struct httpd_req *req;
	char domain[MG_DOMAIN_MAX + 1];
	bool mime;
	const char *ctype, *body; /* the request's, until answered */
	size_t len;
	int rc; /* what the work on the body found; err says why */
	struct message_error err;
	struct form form;
	struct dropin_batch batch;
	struct dropin_mime dm;
	struct message_envelope env;
};

static void
mg_error(struct httpd_req *req, int status, const char *message)
{
	char clean[320];

	http_front__reply_json(req, status,
			       json_pack("{s:s}", "message",
					 log_sanitize(message, strlen(message),
						      clean, sizeof(clean))));
}

static void
mg_req_free(struct mg_req *r)
{
	dropin_batch_cleanup(&r->batch);
	dropin_mime_cleanup(&r->dm);
	form_cleanup(&r->form);
	free(r);
}

/* The submit path's answer, after the commit (or a refusal). */
static void
mg_reply(void *arg, const struct submit_reply *rep)
{
	struct mg_req *r = arg;
	char id[ID_LEN + MG_DOMAIN_MAX + 4], msg[320];

	r->f->pending--;
	if (rep->status >= 400) {
		dropin_mailgun_message(rep->err->message, msg, sizeof(msg));
		mg_error(r->req, rep->status, msg);
	} else {
		if (rep->status == 202)
			submit_count_accepted(r->f->sub, SUBMIT_INTAKE_MAILGUN);
		snprintf(id, sizeof(id), "<%s@%s>", rep->id, r->domain);
		log_info("%s http dropin_accepted provider=mailgun%s", rep->id,
			 r->mime ? " mime=1" : "");
		http_front__reply_json(r->req, 200,
				       json_pack("{s:s,s:s}", "id", id,
						 "message",
						 "Queued. Thank you."));
	}
	mg_req_free(r);
}

/* Pure work on the body (a thread's, when large): parse, translate. */
static void
mg_work(void *arg)
{
	struct mg_req *r = arg;
	char why[128];

	r->rc =
	    form_parse(r->ctype, r->body, r->len, &r->form, why, sizeof(why));
	if (r->rc != 0) {
		r->err.http_status = 400;
		snprintf(r->err.message, sizeof(r->err.message), "body: %s",
			 why);
		return;
	}
	if (!r->mime)
		r->rc =
		    dropin_mailgun(&r->form, &r->f->lim, &r->batch, &r->err);
	else
		r->rc =
		    dropin_mailgun_mime(&r->form, &r->f->lim, &r->dm, &r->err);
}

/* On the loop: answer a refusal, or submit. */
static void
mg_done(void *arg)
{
	struct mg_req *r = arg;
	const char *idem = httpd_req_header(r->req, "Idempotency-Key");
	const char *scope = httpd_req_auth(r->req);

	if (r->rc != 0) {
		/* 400, or 413 for a form too large to be a message. */
		mg_error(r->req, r->err.http_status, r->err.message);
		r->f->pending--;
		mg_req_free(r);
		return;
	}
	if (scope[0] == '\0')
		scope = NULL;
	if (!r->mime) {
		submit_json(r->f->sub, r->batch.json[0], r->batch.len[0], idem,
			    scope, mg_reply, r);
		return;
	}
	r->env.mail_from = r->dm.mail_from;
	r->env.rcpt = (const char *const *)r->dm.rcpt;
	r->env.nrcpt = r->dm.nrcpt;
	submit_mime(r->f->sub, r->dm.raw, r->dm.len, &r->env, idem, scope,
		    mg_reply, r);
}

/* The body is in: worked on (off the loop when large), then submitted. */
static void
mg_body(struct httpd_req *req, void *arg)
{
	/* The head was checked: "/v3/DOMAIN/messages[.mime]". */
	const char *path = httpd_req_head(req)->path + 4;
	size_t dn = strcspn(path, "/");
	struct mg_req *r = xcalloc(1, sizeof(*r));

	r->f = arg;
	r->req = req;
	r->mime = strcmp(path + dn, "/messages.mime") == 0;
	memcpy(r->domain, path, dn);
	r->domain[dn] = '\0';
	r->ctype = httpd_req_header(req, "Content-Type");
	r->body = httpd_req_body(req, &r->len);
	/* Counted from here: the server's drain waits for the answer. */
	r->f->pending++;
	http_front__offload(r->f, r->len, mg_work, mg_done, r);
}

bool
front_mailgun_basic_key(const char *h, char *out, size_t outsz, size_t *len)
{
	unsigned char dec[512];
	size_t n, pad = 0;
	int d;

	if (h == NULL || strncasecmp(h, "Basic ", 6) != 0)
		return false;
	h += 6;
	n = strlen(h);
	if (n == 0 || n % 4 != 0 || n / 4 * 3 > sizeof(dec))
		return false;
	d = EVP_DecodeBlock(dec, (const unsigned char *)h, (int)n);
	if (h[n - 1] == '=')
		pad++;
	if (h[n - 2] == '=')
		pad++;
	/* EVP_DecodeBlock decodes the padding as zero bits (counted off
	 * below); a text of padding alone would wrap n round, so it is
	 * checked rather than assumed away. */
	if (d < 0 || (size_t)d < pad) {
		explicit_bzero(dec, sizeof(dec));
		return false;
	}
	n = (size_t)d - pad;
	if (n < 4 || memcmp(dec, "api:", 4) != 0 || n - 4 >= outsz ||
	    memchr(dec, '\0', n) != NULL) {
		explicit_bzero(dec, sizeof(dec));
		return false;
	}
	memcpy(out, dec + 4, n - 4);
	out[n - 4] = '\0';
	*len = n - 4;
	explicit_bzero(dec, sizeof(dec));
	return true;
}

bool
front_mailgun_domain_ok(const char *s, size_t n)
{
	return n <= MG_DOMAIN_MAX && dns_name_ok(s, n);
}

/* Whether mailgun_domains (when set) lists domain, without case. */
static bool
domain_listed(const struct config *cfg, const char *domain)
{
	const char *p = cfg->mailgun_domains;
	size_t n, dn = strlen(domain);

	if (p == NULL)
		return true;
	while (*p != '\0') {
		p += strspn(p, ", \t");
		n = strcspn(p, ", \t");
		if (n == dn && strncasecmp(p, domain, n) == 0)
			return true;
		p += n;
	}
	return false;
}

/* Route and head checks, in order; true when the body may be read. */
static bool
mg_head(struct http_front *f, struct httpd_req *req, const char *path)
{
	const char *slash = strchr(path, '/');
	const char *idem = httpd_req_header(req, "Idempotency-Key");
	const struct httpd_head *h = httpd_req_head(req);
	char key[400], scope[API_SCOPE_LEN + 1];
	char domain[MG_DOMAIN_MAX + 1];
	size_t dn, klen = 0;
	bool have, mime;

	if (slash == NULL || (strcmp(slash, "/messages") != 0 &&
			      strcmp(slash, "/messages.mime") != 0)) {
		http_front__reply_json(
		    req, 404, json_pack("{s:s}", "message", "no such route"));
		return false;
	}
	mime = strcmp(slash, "/messages.mime") == 0;
	dn = (size_t)(slash - path);
	if (strcmp(h->method, "POST") != 0) {
		if (!httpd_req_add_header(req, "Allow", "POST"))
			http_front__reply_failed(req);
		else
			mg_error(req, 405, "use POST here");
		return false;
	}
	have = front_mailgun_basic_key(httpd_req_header(req, "Authorization"),
				       key, sizeof(key), &klen);
	if (!http_front__key_ok(f, req, have ? key : NULL, klen, "mailgun",
				scope)) {
		explicit_bzero(key, sizeof(key));
		httpd_reply(req, 401, "text/plain; charset=utf-8", "Forbidden",
			    9);
		return false;
	}
	explicit_bzero(key, sizeof(key));
	if (!front_mailgun_domain_ok(path, dn)) {
		mg_error(req, 404, "Domain not found");
		return false;
	}
	memcpy(domain, path, dn);
	domain[dn] = '\0';
	if (!domain_listed(f->cfg, domain)) {
		char msg[300];
		snprintf(msg, sizeof(msg), "Domain not found: %s", domain);
		mg_error(req, 404, msg);
		return false;
	}
	if (!form_is_multipart(httpd_req_header(req, "Content-Type")) &&
	    (mime ||
	     !form_is_urlencoded(httpd_req_header(req, "Content-Type")))) {
		mg_error(req, 415,
			 mime ? "Content-Type must be multipart/form-data"
			      : "Content-Type must be multipart/form-data "
				"or application/x-www-form-urlencoded");
		return false;
	}
	if (idem != NULL && !submit_idem_key_valid(idem)) {
		mg_error(req, 400,
			 "Idempotency-Key: 1 to 255 printable ASCII "
			 "characters");
		return false;
	}
	if (h->has_length && h->content_length > f->max_form) {
		mg_error(req, 413, "the request body is too large");
		return false;
	}
	httpd_req_set_auth(req, scope);
	return true;
}

void
front_mailgun_route(struct http_front *f, struct httpd_req *req,
		    const char *path)
{
	if (!mg_head(f, req, path))
		return;
	/* A refusal here (budget: 503) is httpd's, and mg_body never runs. */
	httpd_req_read_body(req, f->max_form, mg_body, f);
}
