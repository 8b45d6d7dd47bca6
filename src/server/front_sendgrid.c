/*
 * The SendGrid drop-in route, POST /v3/mail/send: an application using
 * SendGrid's SDK moves here by changing its base URL and key.  The head is
 * checked first (key as "Authorization: Bearer KEY", content type, the
 * declared length against the cap of a /v1 body), then the body is read,
 * translated (intake/dropin.h) into one /v1 body per personalization,
 * each built by the /v1 builder and stored by the submit path
 * (submit_json_built), so every check and the durability of
 * POST /v1/messages apply.  The answer comes only once every message is
 * committed: 202 with an empty body and X-Message-Id, as SendGrid answers.
 *
 * The translation and the builds run on the translator thread, whatever
 * the body's size: 60 KiB of JSON may be 1,000 messages of 30 KiB, which
 * held the loop for a quarter of a second when a short body was worked on
 * there.  Every message is built before any is submitted, so bad input
 * stores nothing; a store that fails part-way may have stored some of
 * them, and the Idempotency-Key (per personalization: KEY, KEY#1, ...)
 * makes the retry store only the rest.  Each of those keys carries the
 * digest of the whole request, and with a key the first personalization
 * is stored before the others are submitted: a request that reuses a key
 * for another body is refused 422 on the first and stores nothing, where
 * a digest per personalization let [A, B] after [A] store B, and [A]
 * after [A, B] answer 202 for a request it never took.  Errors have SendGrid's
 * shape,
 * {"errors":[{"message","field","help"}]}, with its status codes.
 */
#include "common/util.h"
#include "intake/dropin.h"
#include "intake/submit.h"
#include "server/http_front_int.h"
#include "server/httpd.h"
#include "store/store.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Room for "#999" after a client's Idempotency-Key. */
#define SG_IDEM_MAX 250

/* One request, from its body to its answer. */
struct sg_req {
	struct http_front *f;
	struct httpd_req *req;
	char scope[API_SCOPE_LEN + 1];
	char *idem;       /* the client's key, or NULL */
	const char *body; /* the request's, until it is answered */
	size_t len;
	/* What the translation (on the loop or a thread) found. */
	int rc;
	struct message_error err;
	size_t err_p;
	bool err_built;
	struct dropin_batch batch;
	/* Each personalization's message and digest, built on the thread;
	 * a message leaves for the submit path in sg_done. */
	struct store_message **built;
	unsigned char (*digests)[SUBMIT_DIGEST_LEN];
	struct sg_part *parts;
	size_t replied;
	bool held; /* the others wait for the first's answer (with a key) */
	char first_id[ID_LEN + 1];
	/* The first refusal, by personalization: the one answered. */
	size_t fail_p;
	int fail_status;
	struct message_error fail;
};

/* One personalization's submission. */
struct sg_part {
	struct sg_req *r;
	size_t p;
	char idem[SG_IDEM_MAX + 8];
};

/* SendGrid's error shape; field may be NULL or "" (null in the JSON). */
static void
sg_error(struct httpd_req *req, int status, const char *field,
	 const char *message)
{
	json_t *fj =
	    field != NULL && *field != '\0' ? json_string(field) : json_null();

	http_front__reply_json(
	    req, status,
	    json_pack("{s:[{s:s,s:o,s:n}]}", "errors", "message", message,
		      "field", fj != NULL ? fj : json_null(), "help"));
}

/*
 * A refusal of the translator or the build (of body p of b), named in
 * SendGrid's terms.
 */
static void
sg_refusal(struct httpd_req *req, int status, const struct message_error *e,
	   const struct dropin_batch *b, size_t p, bool from_build)
{
	char field[192];
	const char *colon;

	if (from_build) {
		dropin_sendgrid_field(b, e->message, p, field, sizeof(field));
	} else {
		colon = strstr(e->message, ": ");
		snprintf(field, sizeof(field), "%.*s",
			 colon != NULL ? (int)(colon - e->message) : 0,
			 e->message);
		/* The whole body, not a field: SendGrid says null. */
		if (strcmp(field, "body") == 0 || strcmp(field, "message") == 0)
			field[0] = '\0';
	}
	sg_error(req, status, field, e->message);
}

static void
sg_req_free(struct sg_req *r)
{
	size_t p;

	for (p = 0; r->built != NULL && p < r->batch.n; p++)
		store_message_free(r->built[p]);
	free(r->built);
	free(r->digests);
	dropin_batch_cleanup(&r->batch);
	free(r->parts);
	free(r->idem);
	free(r);
}

/* Every personalization has been answered: one answer for the request. */
static void
sg_finish(struct sg_req *r)
{
	struct httpd_req *req = r->req;

	r->f->pending--;
	if (r->fail_status != 0) {
		sg_refusal(req, r->fail_status, &r->fail, &r->batch, r->fail_p,
			   true);
	} else if (!httpd_req_add_header(req, "X-Message-Id", r->first_id)) {
		http_front__reply_failed(req);
	} else {
		log_info("%s http dropin_accepted provider=sendgrid "
			 "messages=%zu",
			 r->first_id, r->batch.n);
		httpd_reply(req, 202, "text/plain; charset=utf-8", "", 0);
	}
	sg_req_free(r);
}

static void sg_reply(void *arg, const struct submit_reply *rep);

/*
 * Submits personalizations from..to-1.  A reply may come before the call
 * returns, and the last one frees r: nothing of r after the last call.
 */
static void
sg_submit(struct sg_req *r, size_t from, size_t to)
{
	struct store_message *m;
	size_t p;

	for (p = from; p < to; p++) {
		m = r->built[p];
		r->built[p] = NULL; /* the submit path takes it */
		submit_json_built(r->f->sub, m,
				  r->digests != NULL ? r->digests[p] : NULL,
				  r->idem != NULL ? r->parts[p].idem : NULL,
				  r->scope[0] != '\0' ? r->scope : NULL,
				  sg_reply, &r->parts[p]);
	}
}

/* The submit path's answer for one personalization. */
static void
sg_reply(void *arg, const struct submit_reply *rep)
{
	struct sg_part *part = arg;
	struct sg_req *r = part->r;

	if (rep->status == 202)
		submit_count_accepted(r->f->sub, SUBMIT_INTAKE_SENDGRID);
	if (rep->status >= 400) {
		if (r->fail_status == 0 || part->p < r->fail_p) {
			r->fail_status = rep->status;
			r->fail_p = part->p;
			r->fail = *rep->err;
		}
	} else if (part->p == 0) {
		snprintf(r->first_id, sizeof(r->first_id), "%s", rep->id);
	}
	if (++r->replied == r->batch.n) {
		sg_finish(r);
	} else if (part->p == 0 && r->held) {
		/* The first refused (422 for a reused key): the rest are
		 * never submitted, and the request is answered so. */
		if (r->fail_status != 0) {
			r->replied = r->batch.n;
			sg_finish(r);
		} else {
			sg_submit(r, 1, r->batch.n);
		}
	}
}

/*
 * Every personalization built (and digested, with a key) before any is
 * submitted, so a refusal of the last stores nothing of the first, and
 * all of it here, off the loop: a request of 60 KiB may be 1,000
 * messages of 30 KiB.  0, or -1 with the refusal in r.
 */
static int
sg_build(struct sg_req *r)
{
	size_t p, n = r->batch.n;

	r->built = xcalloc(n, sizeof(*r->built));
	if (r->idem != NULL)
		r->digests = xcalloc(n, sizeof(*r->digests));
	for (p = 0; p < n; p++) {
		if (message_from_json(r->batch.json[p], r->batch.len[p],
				      &r->f->lim, &r->built[p], &r->err) != 0) {
			r->err_p = p;
			r->err_built = true;
			return -1;
		}
		if (r->idem != NULL)
			submit_json_digest(r->f->sub, r->batch.json[p],
					   r->batch.len[p], r->digests[p]);
	}
	/* One digest for the request, over every personalization's, kept
	 * with each of its keys: KEY#1 of another request is not this one's. */
	if (r->idem != NULL) {
		submit_json_digest(r->f->sub, (const char *)r->digests,
				   n * sizeof(*r->digests), r->digests[0]);
		for (p = 1; p < n; p++)
			memcpy(r->digests[p], r->digests[0],
			       sizeof(r->digests[p]));
	}
	return 0;
}

/* Pure work on the body, on the translator thread: translate, build. */
static void
sg_work(void *arg)
{
	struct sg_req *r = arg;

	r->rc = dropin_sendgrid(r->body, r->len, &r->f->lim, r->f->max_body,
				&r->batch, &r->err);
	if (r->rc == 0)
		r->rc = sg_build(r);
}

/* On the loop: answer a refusal, or submit each message. */
static void
sg_done(void *arg)
{
	struct sg_req *r = arg;
	size_t p, n;

	if (r->rc != 0) {
		sg_refusal(r->req, r->err.http_status, &r->err, &r->batch,
			   r->err_p, r->err_built);
		r->f->pending--;
		sg_req_free(r);
		return;
	}
	n = r->batch.n;
	r->parts = xcalloc(n, sizeof(*r->parts));
	for (p = 0; p < n; p++) {
		r->parts[p].r = r;
		r->parts[p].p = p;
		if (r->idem != NULL && p == 0)
			snprintf(r->parts[p].idem, sizeof(r->parts[p].idem),
				 "%s", r->idem);
		else if (r->idem != NULL)
			snprintf(r->parts[p].idem, sizeof(r->parts[p].idem),
				 "%s#%zu", r->idem, p);
	}
	/* With a key, the first alone: its answer decides the others. */
	r->held = r->idem != NULL && n > 1;
	sg_submit(r, 0, r->held ? 1 : n);
}

/* The body is in: translated (off the loop when large), then submitted. */
static void
sg_body(struct httpd_req *req, void *arg)
{
	const char *idem = httpd_req_header(req, "Idempotency-Key");
	struct sg_req *r = xcalloc(1, sizeof(*r));

	r->f = arg;
	r->req = req;
	snprintf(r->scope, sizeof(r->scope), "%s", httpd_req_auth(req));
	r->idem = idem != NULL ? xstrdup(idem) : NULL;
	r->body = httpd_req_body(req, &r->len);
	/* Counted from here: the server's drain waits for the answer. */
	r->f->pending++;
	/* Always off the loop, however short the body: its messages are
	 * built in sg_work, and 60 KiB of JSON may be 1,000 of them. */
	http_front__offload(r->f, SIZE_MAX, sg_work, sg_done, r);
}

static bool
sg_json_type(const char *ctype)
{
	return ctype != NULL &&
	       strncasecmp(ctype, "application/json", 16) == 0 &&
	       (ctype[16] == '\0' || ctype[16] == ';' || ctype[16] == ' ');
}

/* The head: method, key, type, Idempotency-Key, length; then the body. */
void
front_sendgrid_route(struct http_front *f, struct httpd_req *req)
{
	const struct httpd_head *h = httpd_req_head(req);
	const char *auth = httpd_req_header(req, "Authorization");
	const char *idem = httpd_req_header(req, "Idempotency-Key");
	char scope[API_SCOPE_LEN + 1];

	if (strcmp(h->method, "POST") != 0) {
		if (!httpd_req_add_header(req, "Allow", "POST")) {
			http_front__reply_failed(req);
			return;
		}
		sg_error(req, 405, NULL, "use POST here");
		return;
	}
	if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0)
		auth += 7;
	else
		auth = NULL;
	if (!http_front__key_ok(f, req, auth, auth ? strlen(auth) : 0,
				"sendgrid", scope)) {
		sg_error(req, 401, NULL,
			 "The provided authorization grant is invalid, "
			 "expired, or revoked");
		return;
	}
	if (!sg_json_type(httpd_req_header(req, "Content-Type"))) {
		sg_error(req, 415, NULL,
			 "Content-Type should be application/json.");
		return;
	}
	if (idem != NULL &&
	    (!submit_idem_key_valid(idem) || strlen(idem) > SG_IDEM_MAX)) {
		sg_error(req, 400, "Idempotency-Key",
			 "Idempotency-Key: 1 to 250 printable ASCII "
			 "characters");
		return;
	}
	/* In SendGrid's shape, before httpd would answer it in ours. */
	if (h->has_length && h->content_length > f->max_body) {
		sg_error(req, 413, NULL,
			 "The JSON payload you have included in your request "
			 "is too large.");
		return;
	}
	httpd_req_set_auth(req, scope);
	/* A refusal here (budget: 503) is httpd's, and sg_body never runs. */
	httpd_req_read_body(req, f->max_body, sg_body, f);
}
