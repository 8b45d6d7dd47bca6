/*
 * The one submit path: every way a message comes in (HTTP JSON today; SMTP
 * and the drop-in endpoints next) ends here, so every message gets the
 * same checks, the same durability and the same hand-off.
 *
 *   built message (message_from_json / message_from_mime)
 *     -> checked (envelope present, size within max_message_bytes)
 *     -> refused 503 while the store cannot write (store_healthy)
 *     -> store_submit (with the idempotency key)
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
	 * key), 503 (the store failed or cannot write, or the server is
	 * stopping).
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
 * the builder threads cannot be started.
 */
struct submit *submit_new(struct event_base *base, struct store *st,
			  const struct message_limits *lim,
			  submit_durable_cb durable, void *durable_arg);
/*
 * Stops the builder threads (submissions being built are answered 503)
 * and refuses every later submission with 503.  Call before the store
 * closes.  Replies still waiting for a commit come when the store closes.
 */
void submit_stop(struct submit *s);
/* NULL is a no-op.  Stops first if submit_stop() was not called. */
void submit_free(struct submit *s);

/*
 * A JSON submission (SPEC.md "POST /v1/messages") of len bytes, built and
 * submitted.  json must stay valid until cb runs.  idem_key may be NULL;
 * one that fails submit_idem_key_valid() is refused 400 (a front may
 * check first, to say which header was wrong).
 */
void submit_json(struct submit *s, const char *json, size_t len,
		 const char *idem_key, submit_reply_cb cb, void *arg);
/*
 * A raw RFC 5322 message with its envelope (SMTP DATA, a drop-in
 * endpoint's MIME upload), checked by message_from_mime() and submitted.
 * raw and env (with the strings it points at) must stay valid until cb
 * runs: large messages are checked on a builder thread.
 */
void submit_mime(struct submit *s, const char *raw, size_t len,
		 const struct message_envelope *env, const char *idem_key,
		 submit_reply_cb cb, void *arg);
/* A message already built (takes m), checked and submitted. */
void submit_message(struct submit *s, struct store_message *m,
		    const char *idem_key, submit_reply_cb cb, void *arg);

/* 1 to 255 printable ASCII characters. */
bool submit_idem_key_valid(const char *key);
/* Submissions waiting for a builder or a commit; for draining. */
unsigned submit_pending(const struct submit *s);

#endif
