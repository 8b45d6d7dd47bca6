/*
 * The one submit path: every way a message comes in (HTTP JSON today; SMTP
 * and the drop-in endpoints next) ends here, so every message gets the
 * same checks, the same durability and the same hand-off.
 *
 *   built message (message_from_json / message_from_mime)
 *     -> checked (envelope present, size within max_message_bytes)
 *     -> refused 503 while the store cannot write (store_healthy)
 *     -> store_submit (with the idempotency key, its scope and the
 *        request's digest)
 *     -> reply callback, only once the commit is on disk
 *     -> the durable message handed on (the server wires dispatcher_enqueue)
 *
 * Intake knows neither the HTTP front nor the dispatcher: the front gets a
 * reply callback with an HTTP-like status (which SMTP maps to its own
 * codes), and the durable message leaves through a callback given at
 * creation.  JSON and raw submissions are built on the loop when small
 * (about 10 us for 2 KB: cheaper than two thread hand-offs) and on builder
 * threads when large (attachments: never hold the loop for milliseconds).
 *
 * Every entry point calls its reply callback exactly once, on the loop
 * thread; a refusal may be replied before the call returns.
 */
#ifndef SHIVNERI_SUBMIT_H
#define SHIVNERI_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "intake/message.h"

struct event_base;
struct store;
struct store_message;
struct submit;

/* What the submitter is told, once. */
struct submit_reply {
	/*
	 * 202 stored (durable), 200 a duplicate of an earlier idempotency
	 * key (nothing stored), or a refusal: 400 or 413 (the message or the
	 * key), 422 `idempotency_conflict` (the key was used in its scope
	 * for a request with other contents; nothing stored), 503 (the store
	 * failed or cannot write, or the server is stopping).
	 */
	int status;
	/* 202: the new id; 200: the first message's id; else NULL. */
	const char *id;
	/* status >= 400: code ("too_large", "unavailable", ...) and why. */
	const struct message_error *err;
};

/* Valid only during the call. */
typedef void (*submit_reply_cb)(void *arg, const struct submit_reply *r);
/* Takes m: a message whose commit is on disk, after its 202 was replied. */
typedef void (*submit_durable_cb)(void *arg, struct store_message *m);

/*
 * A submit path onto st, on base's loop, with its builder threads.  durable
 * (may be NULL: the message is freed) gets every stored message.  NULL when
 * the builder threads cannot be started or OpenSSL has no SHA-256.
 */
struct submit *submit_new(struct event_base *base, struct store *st,
			  const struct message_limits *lim,
			  submit_durable_cb durable, void *durable_arg);
/*
 * Optional hooks around the store's insert (the server wires the
 * dispatcher's fast path to them, dispatcher_claim).  claim sees each
 * checked message just before the store takes it, may set it up to be
 * stored otherwise, and returns a token or NULL.  A token comes back
 * exactly once: to claimed with the durable message (instead of durable,
 * after the reply) or to unclaim when nothing was stored (the store failed
 * or refused it, or it was an idempotent duplicate).
 */
struct submit_claim {
	void *(*claim)(void *arg, struct store_message *m);
	void (*claimed)(void *arg, void *token, struct store_message *m);
	void (*unclaim)(void *arg, void *token);
	void *arg;
};
void submit_set_claim(struct submit *s, const struct submit_claim *c);

/*
 * Stops the builder threads (submissions being built are answered 503)
 * and refuses every later submission with 503.  Call before the store
 * closes.  Replies still waiting for a commit come when the store closes.
 */
void submit_stop(struct submit *s);
/* NULL is a no-op.  Stops first if submit_stop() was not called. */
void submit_free(struct submit *s);

/*
 * Messages accepted (stored: a 202, not a duplicate's 200) by the way they
 * came in, for /metrics.  Each front counts its own 202s from its reply
 * callback (on the loop thread, so a plain counter): only the front knows
 * which door a submission used, and the submit path stays one path.
 */
enum submit_intake {
	SUBMIT_INTAKE_HTTP = 0, /* POST /v1/messages */
	SUBMIT_INTAKE_SMTP,
	SUBMIT_INTAKE_SENDGRID, /* the drop-in endpoints */
	SUBMIT_INTAKE_MAILGUN,
	SUBMIT_INTAKE_N,
};
/* "http", "smtp", "sendgrid", "mailgun"; "unknown" out of range. */
const char *submit_intake_name(int intake);
/* One message stored by intake (out of range: ignored). */
void submit_count_accepted(struct submit *s, int intake);
uint64_t submit_accepted(const struct submit *s, int intake);

/*
 * Idempotency keys.  Each entry point takes idem_key (may be NULL) and the
 * scope it lives in: a key is known only to requests of the same scope, so
 * one client cannot learn or block another's message by guessing its key.
 * The scope comes from submit_scope_of_key() (copied; NULL is the
 * anonymous scope).  With a key, the request's digest is kept too, and a
 * later request with the same key and scope is a duplicate (200, the first
 * id) when its digest is the same and refused 422 when it is not.  The
 * digest is SHA-256 of what the client sent: the JSON body's bytes as
 * received (a retry must send the same bytes), the raw message with its
 * envelope, or the built message with its envelope (submit_message).
 * Without a key nothing is digested.
 */

/* "anonymous", or 32 hex digits, and the NUL. */
#define SUBMIT_SCOPE_SIZE 33
/*
 * The scope of the client that authenticated with api_key: the first 128
 * bits of SHA-256 of a fixed label and the key, in hex, so the store keeps
 * an identity that survives reloads and reordering of the keys file but
 * never a credential.  NULL (no API keys configured): the anonymous scope,
 * which every such client shares.
 */
void submit_scope_of_key(const char *api_key, char out[SUBMIT_SCOPE_SIZE]);

/*
 * A JSON submission (SPEC.md "POST /v1/messages") of len bytes, built and
 * submitted.  json must stay valid until cb runs.  idem_key may be NULL;
 * one that fails submit_idem_key_valid() is refused 400 (a front may
 * check first, to say which header was wrong).  scope: see above.
 */
void submit_json(struct submit *s, const char *json, size_t len,
		 const char *idem_key, const char *scope, submit_reply_cb cb,
		 void *arg);
/*
 * A raw RFC 5322 message with its envelope (SMTP DATA, a drop-in
 * endpoint's MIME upload), checked by message_from_mime() and submitted.
 * raw and env (with the strings it points at) must stay valid until cb
 * runs: large messages are checked on a builder thread.
 */
void submit_mime(struct submit *s, const char *raw, size_t len,
		 const struct message_envelope *env, const char *idem_key,
		 const char *scope, submit_reply_cb cb, void *arg);
/* The length of a digest of submit_json_digest(). */
#define SUBMIT_DIGEST_LEN 32
/*
 * The digest submit_json() keeps of a JSON body with an idempotency key
 * (SHA-256 of its bytes as received).  Pure and thread-safe: a front that
 * builds a request's messages on a thread of its own computes it there.
 */
void submit_json_digest(const struct submit *s, const char *json, size_t len,
			unsigned char out[SUBMIT_DIGEST_LEN]);
/*
 * A JSON submission that the caller built itself with message_from_json()
 * (takes m), stored and answered as submit_json() would: with idem_key,
 * digest must be submit_json_digest() of the same JSON, so a retry
 * through either entry point is known.  For the drop-ins, whose one
 * request may become 1,000 messages: they build on their own thread, and
 * the loop only stores.
 */
void submit_json_built(struct submit *s, struct store_message *m,
		       const unsigned char *digest, const char *idem_key,
		       const char *scope, submit_reply_cb cb, void *arg);
/* A message already built (takes m), checked and submitted. */
void submit_message(struct submit *s, struct store_message *m,
		    const char *idem_key, const char *scope, submit_reply_cb cb,
		    void *arg);

/* 1 to 255 printable ASCII characters. */
bool submit_idem_key_valid(const char *key);
/* Submissions waiting for a builder or a commit; for draining. */
unsigned submit_pending(const struct submit *s);

#endif
