/*
 * The drop-in translators: a SendGrid v3 Mail Send body, or the fields of
 * a Mailgun form, turned into the JSON of our own POST /v1/messages, which
 * then goes through submit_json() like any other submission.  So every
 * check of the JSON path (addresses, header injection, base64, the one
 * size limit) applies unchanged, the build runs off the loop when large,
 * and an Idempotency-Key digests bytes that are the same on a retry (the
 * translation is deterministic; a built message is not: it has a fresh
 * id, Date and Message-ID).
 *
 * A translator refuses what it cannot carry, naming the field in the
 * provider's own terms: unknown fields, features this relay does not have
 * (templates, scheduling, sandbox mode, ...), wrong types.  Nothing is
 * dropped silently.  Pure apart from allocation (no I/O), so fuzzable.
 */
#ifndef SHIVNERI_DROPIN_H
#define SHIVNERI_DROPIN_H

#include <stddef.h>

#include "intake/message.h"

/* What one request becomes: n /v1 JSON bodies, each one message. */
struct dropin_batch {
	char **json; /* malloc'd, NUL-terminated */
	size_t *len;
	size_t n;
	/*
	 * SendGrid: per body, the names of its personalization's own
	 * headers as a /v1 refusal prints them (message__safe_name()), one
	 * after another each with its NUL, then an empty one; NULL (the
	 * array or an entry) when there are none.  So a refusal of a header
	 * is named where the client wrote it (dropin_sendgrid_field()).
	 */
	char **own_headers;
};

/* NULL-safe; frees every body and empties b. */
void dropin_batch_cleanup(struct dropin_batch *b);

/*
 * The header that carries SendGrid's custom_args (as compact JSON) in the
 * built message: the relay has no other place for them, and dropping
 * them silently is what a drop-in must not do.
 */
#define DROPIN_SENDGRID_ARGS_HEADER "X-Shivneri-Custom-Args"
/* Mailgun's own name for its v: variables in a delivered message. */
#define DROPIN_MAILGUN_VARS_HEADER "X-Mailgun-Variables"

/* At most this many personalizations in one SendGrid request. */
#define DROPIN_SENDGRID_MAX_PERSONALIZATIONS 1000

/*
 * Translates a SendGrid v3 /mail/send body of len bytes: one /v1 body per
 * personalization, in order.  The recipients of all personalizations
 * together are capped by lim->max_recipients, and the /v1 bodies together
 * by max_total bytes (the HTTP cap of one /v1 body: a request cannot make
 * the relay hold more than one body's worth).  Returns 0 with out filled,
 * or -1 with err filled ("FIELD: why", FIELD in SendGrid's dotted form,
 * e.g. "personalizations.0.to.1.email") and out empty.
 */
int dropin_sendgrid(const char *body, size_t len,
		    const struct message_limits *lim, size_t max_total,
		    struct dropin_batch *out, struct message_error *err)
    __attribute__((warn_unused_result));

/*
 * The SendGrid name of the field a /v1 refusal names (err->message of the
 * build of body p of batch b, "to[1]: not a valid address") into field,
 * e.g. "personalizations.0.to.1"; "" when the message names no field.  A
 * header is "personalizations.P.headers.NAME" when the personalization
 * set it (b->own_headers, names compared without case, as the merge
 * does), else "headers.NAME"; b may be NULL (every header top-level).
 */
void dropin_sendgrid_field(const struct dropin_batch *b, const char *v1_message,
			   size_t p, char *field, size_t fieldsz);

struct form;

/*
 * Mailgun's POST /v3/DOMAIN/messages: the form's fields as one /v1 body
 * (see dropin_mailgun.c for every field taken and refused).  Returns 0
 * with out->n == 1, or -1 with err filled ("FIELD: why", FIELD as the
 * form named it) and out empty.
 */
int dropin_mailgun(const struct form *fm, const struct message_limits *lim,
		   struct dropin_batch *out, struct message_error *err)
    __attribute__((warn_unused_result));

/* A /v1 refusal ("tags[0]: ...") in the form's terms ("o:tag[0]: ..."). */
void dropin_mailgun_message(const char *v1_message, char *out, size_t outsz);

/* messages.mime: the raw message (borrowed from the form) and envelope. */
struct dropin_mime {
	const char *raw;
	size_t len;
	char *mail_from; /* the From header's address */
	char **rcpt;     /* the "to" fields' addresses */
	size_t nrcpt;
};

/*
 * Mailgun's POST /v3/DOMAIN/messages.mime: "to" (repeated or
 * comma-separated) and one "message" (the raw MIME, sent as is); any
 * other field is refused.  0, or -1 with err filled and out empty.
 */
int dropin_mailgun_mime(const struct form *fm, const struct message_limits *lim,
			struct dropin_mime *out, struct message_error *err)
    __attribute__((warn_unused_result));
/* NULL-safe. */
void dropin_mime_cleanup(struct dropin_mime *dm);

/*
 * The largest Mailgun form body whose message can still fit in
 * lim->max_message_bytes: urlencoded text may spend three bytes (%XX) on
 * each byte of the message, plus what never reaches it (bcc, variables,
 * tags, the form's own framing).
 */
size_t dropin_form_max_bytes(const struct message_limits *lim);

#endif
