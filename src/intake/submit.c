/*
 * The submit path (submit.h): builds, checks, stores, answers after the
 * commit, hands on.
 *
 * State per submission is one struct ticket, from the call to the reply:
 * it carries the reply callback across the builder thread and the store's
 * writer thread, and holds the message_error a refusal points at.  The
 * pending count covers every ticket, so the server's drain waits for the
 * last reply.
 *
 * Idempotency keys travel with their scope and the request's SHA-256,
 * computed where the body is read anyway: on the builder thread for large
 * bodies, never for a submission without a key.
 *
 * Failures: a refusal of the message (400/413) or of a reused key (422) is
 * the client's; a store that cannot write or fails the commit is answered
 * 503 `unavailable`, logged, and nothing is handed on, so memory never
 * holds a message the disk does not.  Allocation failure, and a digest
 * that OpenSSL cannot compute (our library is broken), are fatal.
 */
#include "intake/submit.h"
#include "common/log.h"
#include "common/util.h"
#include "common/workq.h"
#include "store/store.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUILDER_THREADS 2
/* JSON bodies up to this are built on the loop (see submit.h). */
#define INLINE_BUILD_MAX (64 * 1024)
#define IDEM_KEY_MAX 255

struct submit {
	struct store *st;
	struct message_limits lim;
	submit_durable_cb durable;
	void *durable_arg;
	struct submit_claim claim; /* all NULL: no claims */
	struct workq *builders;    /* message_from_json off the loop */
	EVP_MD *sha256;            /* fetched once; shared by the threads */
	unsigned pending;
	bool stopped; /* submit_stop(): everything new is answered 503 */
	uint64_t accepted[SUBMIT_INTAKE_N]; /* loop thread only */
};

/* One submission from the call to its reply. */
struct ticket {
	struct submit *s;
	submit_reply_cb cb;
	void *arg;
	/* With idem: its scope and the request's digest (see submit.h). */
	char *idem;
	char *scope;
	unsigned char hash[STORE_IDEM_HASH_LEN];
	/* While being built: the JSON, or the raw message and its envelope. */
	const char *body;
	size_t len;
	const struct message_envelope *env; /* NULL: body is JSON */
	struct store_message *m;
	void *claim; /* the claim hook's token while the store has m */
	int rc;
	struct message_error err;
};

static struct ticket *
ticket_new(struct submit *s, const char *idem, const char *scope,
	   submit_reply_cb cb, void *arg)
{
	struct ticket *t = xcalloc(1, sizeof(*t));

	t->s = s;
	t->cb = cb;
	t->arg = arg;
	if (idem != NULL) {
		t->idem = xstrdup(idem);
		t->scope =
		    xstrdup(scope != NULL ? scope : STORE_IDEM_SCOPE_ANONYMOUS);
	}
	s->pending++;
	return t;
}

/* The one way out of a ticket: reply, uncount, free. */
static void
ticket_reply(struct ticket *t, int status, const char *id)
{
	struct submit_reply r = {.status = status, .id = id};

	if (status >= 400)
		r.err = &t->err;
	t->s->pending--;
	t->cb(t->arg, &r);
	store_message_free(t->m);
	free(t->idem);
	free(t->scope);
	free(t);
}

static void refuse(struct ticket *t, int status, const char *code,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
refuse(struct ticket *t, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	t->err.http_status = status;
	snprintf(t->err.code, sizeof(t->err.code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(t->err.message, sizeof(t->err.message), fmt, ap);
	va_end(ap);
	ticket_reply(t, status, NULL);
}

static void
stored(void *arg, int err, const char *id, bool duplicate,
       struct store_message *m)
{
	struct ticket *t = arg;
	struct submit *s = t->s;
	void *claim = t->claim;

	t->claim = NULL;
	/* Nothing stored: a claim ends here (see submit_set_claim). */
	if (claim != NULL && (err != 0 || duplicate))
		s->claim.unclaim(s->claim.arg, claim);
	if (err == STORE_ECONFLICT) {
		store_message_free(m);
		refuse(t, 422, "idempotency_conflict",
		       "Idempotency-Key: already used with another request "
		       "body");
		return;
	}
	if (err != 0) {
		log_warnx("- intake submit failed: %s", store_strerror(err));
		store_message_free(m);
		refuse(t, 503, "unavailable", "the store failed: %s",
		       store_strerror(err));
		return;
	}
	if (duplicate) {
		store_message_free(m);
		ticket_reply(t, 200, id);
		return;
	}
	/* Reply first: the 202 is the hot path, the hand-off can wait. */
	ticket_reply(t, 202, id);
	if (claim != NULL)
		s->claim.claimed(s->claim.arg, claim, m);
	else if (s->durable != NULL)
		s->durable(s->durable_arg, m);
	else
		store_message_free(m);
}

/* Checks t->m and hands it to the store; the ticket replies either way. */
static void
ticket_store(struct ticket *t)
{
	struct submit *s = t->s;
	struct store_message *m = t->m;
	struct store_idem idem;
	const char *why = NULL;

	if (s->stopped) {
		refuse(t, 503, "unavailable", "the server is stopping");
		return;
	}
	if (t->idem != NULL && !submit_idem_key_valid(t->idem)) {
		refuse(t, 400, "invalid_field",
		       "Idempotency-Key: 1 to 255 printable ASCII characters");
		return;
	}
	if (m->mail_from == NULL || m->nrcpt == 0 || m->mime == NULL) {
		refuse(t, 400, "invalid_field",
		       "message: no envelope or no content");
		return;
	}
	/* The same limit the builders apply, for messages built elsewhere. */
	if (m->mime_len > s->lim.max_message_bytes) {
		refuse(t, 413, "too_large", "message: larger than %zu bytes",
		       s->lim.max_message_bytes);
		return;
	}
	if (!store_healthy(s->st, &why)) {
		refuse(t, 503, "unavailable", "the store cannot write: %s",
		       why != NULL ? why : "unknown");
		return;
	}
	t->m = NULL; /* the store takes it */
	if (s->claim.claim != NULL)
		t->claim = s->claim.claim(s->claim.arg, m);
	if (t->idem == NULL) {
		store_submit(s->st, m, NULL, stored, t);
		return;
	}
	idem.key = t->idem;
	idem.scope = t->scope;
	memcpy(idem.body_hash, t->hash, sizeof(idem.body_hash));
	store_submit(s->st, m, &idem, stored, t);
}

/*
 * SHA-256 of a body and, when mail_from is not NULL, of an envelope: the
 * body's length comes first and each address ends with its NUL, so no two
 * different requests digest the same bytes.
 */
static void
digest(const struct submit *s, const char *body, size_t len,
       const char *mail_from, const char *const *rcpt, size_t nrcpt,
       unsigned char out[STORE_IDEM_HASH_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char n[8];
	unsigned int outlen = 0;
	size_t i;
	int ok;

	if (ctx == NULL)
		fatalx("submit: EVP_MD_CTX_new failed");
	ok = EVP_DigestInit_ex(ctx, s->sha256, NULL);
	if (ok && mail_from != NULL) {
		for (i = 0; i < sizeof(n); i++)
			n[i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
		ok = EVP_DigestUpdate(ctx, n, sizeof(n));
	}
	if (ok && len > 0)
		ok = EVP_DigestUpdate(ctx, body, len);
	if (ok && mail_from != NULL)
		ok = EVP_DigestUpdate(ctx, mail_from, strlen(mail_from) + 1);
	/* A NULL recipient is refused later (store_submit: -EINVAL). */
	for (i = 0; ok && mail_from != NULL && i < nrcpt; i++)
		if (rcpt[i] != NULL)
			ok =
			    EVP_DigestUpdate(ctx, rcpt[i], strlen(rcpt[i]) + 1);
	if (ok)
		ok = EVP_DigestFinal_ex(ctx, out, &outlen);
	EVP_MD_CTX_free(ctx);
	if (!ok || outlen != STORE_IDEM_HASH_LEN)
		fatalx("submit: SHA-256 failed"); /* our OpenSSL is broken */
}

_Static_assert(SUBMIT_DIGEST_LEN == STORE_IDEM_HASH_LEN,
	       "a digest of submit.h is the store's");

void
submit_json_digest(const struct submit *s, const char *json, size_t len,
		   unsigned char out[SUBMIT_DIGEST_LEN])
{
	digest(s, json, len, NULL, NULL, 0, out);
}

void
submit_json_built(struct submit *s, struct store_message *m,
		  const unsigned char *dig, const char *idem_key,
		  const char *scope, submit_reply_cb cb, void *arg)
{
	struct ticket *t = ticket_new(s, idem_key, scope, cb, arg);

	t->m = m;
	if (t->idem != NULL && dig != NULL)
		memcpy(t->hash, dig, sizeof(t->hash));
	ticket_store(t);
}

void
submit_message(struct submit *s, struct store_message *m, const char *idem_key,
	       const char *scope, submit_reply_cb cb, void *arg)
{
	struct ticket *t = ticket_new(s, idem_key, scope, cb, arg);

	t->m = m;
	/* A message without an envelope is refused by ticket_store(). */
	if (t->idem != NULL && m->mail_from != NULL && m->rcpt != NULL)
		digest(s, m->mime, m->mime_len, m->mail_from,
		       (const char *const *)m->rcpt, m->nrcpt, t->hash);
	ticket_store(t);
}

/* On a builder thread (or the loop, when small): pure work on the body. */
static void
build_work(void *arg)
{
	struct ticket *t = arg;

	/* What the client sent, before it is built into something else. */
	if (t->idem != NULL && t->env == NULL)
		digest(t->s, t->body, t->len, NULL, NULL, 0, t->hash);
	else if (t->idem != NULL)
		digest(t->s, t->body, t->len, t->env->mail_from, t->env->rcpt,
		       t->env->nrcpt, t->hash);
	if (t->env == NULL)
		t->rc = message_from_json(t->body, t->len, &t->s->lim, &t->m,
					  &t->err);
	else
		t->rc = message_from_mime(t->body, t->len, t->env, &t->s->lim,
					  &t->m, &t->err);
}

/* On the loop: answer a refusal, or go on to the store. */
static void
build_done(void *arg)
{
	struct ticket *t = arg;

	if (t->rc != 0) {
		ticket_reply(t, t->err.http_status, NULL);
		return;
	}
	ticket_store(t);
}

/* Builds t's body on the loop when small, else on a builder thread. */
static void
ticket_build(struct ticket *t, const char *body, size_t len)
{
	struct submit *s = t->s;

	if (s->stopped) {
		refuse(t, 503, "unavailable", "the server is stopping");
		return;
	}
	t->body = body;
	t->len = len;
	if (len <= INLINE_BUILD_MAX || s->builders == NULL) {
		build_work(t);
		build_done(t);
		return;
	}
	workq_submit(s->builders, build_work, build_done, t);
}

void
submit_json(struct submit *s, const char *json, size_t len,
	    const char *idem_key, const char *scope, submit_reply_cb cb,
	    void *arg)
{
	ticket_build(ticket_new(s, idem_key, scope, cb, arg), json, len);
}

void
submit_mime(struct submit *s, const char *raw, size_t len,
	    const struct message_envelope *env, const char *idem_key,
	    const char *scope, submit_reply_cb cb, void *arg)
{
	struct ticket *t = ticket_new(s, idem_key, scope, cb, arg);

	t->env = env;
	ticket_build(t, raw, len);
}

bool
submit_idem_key_valid(const char *k)
{
	size_t i, n = strlen(k);

	if (n == 0 || n > IDEM_KEY_MAX)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
			return false;
	return true;
}

void
submit_scope_of_key(const char *api_key, char out[SUBMIT_SCOPE_SIZE])
{
	/* A label of its own, so the digest is of use for nothing else. */
	static const char label[] = "shivneri idempotency scope v1";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx;
	int ok;

	if (api_key == NULL) {
		snprintf(out, SUBMIT_SCOPE_SIZE, "%s",
			 STORE_IDEM_SCOPE_ANONYMOUS);
		return;
	}
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		fatalx("submit: EVP_MD_CTX_new failed");
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	     EVP_DigestUpdate(ctx, label, sizeof(label)) &&
	     EVP_DigestUpdate(ctx, api_key, strlen(api_key)) &&
	     EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	if (!ok || mdlen < (SUBMIT_SCOPE_SIZE - 1) / 2)
		fatalx("submit: SHA-256 failed"); /* our OpenSSL is broken */
	hex_encode(md, (SUBMIT_SCOPE_SIZE - 1) / 2, out);
	OPENSSL_cleanse(md, sizeof(md));
}

unsigned
submit_pending(const struct submit *s)
{
	return s->pending;
}

struct submit *
submit_new(struct event_base *base, struct store *st,
	   const struct message_limits *lim, submit_durable_cb durable,
	   void *durable_arg)
{
	struct submit *s = xcalloc(1, sizeof(*s));

	s->st = st;
	s->lim = *lim;
	s->durable = durable;
	s->durable_arg = durable_arg;
	s->sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
	if (s->sha256 == NULL) {
		log_warnx("- intake cannot fetch SHA-256 from OpenSSL");
		free(s);
		return NULL;
	}
	s->builders = workq_new(base, BUILDER_THREADS);
	if (s->builders == NULL) {
		EVP_MD_free(s->sha256);
		free(s);
		return NULL;
	}
	return s;
}

void
submit_set_claim(struct submit *s, const struct submit_claim *c)
{
	if (c == NULL || c->claim == NULL || c->claimed == NULL ||
	    c->unclaim == NULL)
		fatalx("submit_set_claim: a hook is missing");
	s->claim = *c;
}

void
submit_stop(struct submit *s)
{
	if (s == NULL || s->stopped)
		return;
	/* Set first: the builds finishing inside workq_free() see it. */
	s->stopped = true;
	workq_free(s->builders);
	s->builders = NULL;
}

void
submit_free(struct submit *s)
{
	if (s == NULL)
		return;
	submit_stop(s);
	EVP_MD_free(s->sha256);
	free(s);
}

/* --- /metrics -------------------------------------------------------- */

const char *
submit_intake_name(int intake)
{
	static const char *const names[SUBMIT_INTAKE_N] = {
	    "http", "smtp", "sendgrid", "mailgun"};

	if (intake < 0 || intake >= SUBMIT_INTAKE_N)
		return "unknown";
	return names[intake];
}

void
submit_count_accepted(struct submit *s, int intake)
{
	if (intake >= 0 && intake < SUBMIT_INTAKE_N)
		s->accepted[intake]++;
}

uint64_t
submit_accepted(const struct submit *s, int intake)
{
	if (intake < 0 || intake >= SUBMIT_INTAKE_N)
		return 0;
	return s->accepted[intake];
}
