/*
 * Turning what a client sends into a checked store_message, ready for
 * submit_message(): a JSON submission (SPEC.md "POST /v1/messages", built
 * into RFC 5322 / MIME here, message.c) or a raw RFC 5322 message with an
 * SMTP-style envelope (checked and kept as sent, mime.c).
 *
 * From JSON: every field checked, then the message composed (Message-ID
 * and Date added when missing), with the envelope (sender and every
 * to/cc/bcc recipient) beside it.  Bcc never appears in the headers.  No field
 * can inject a header: CR, LF and NUL are refused in every header-bound value,
 * header names must be RFC 5322 field names, and a header that the relay sets
 * itself cannot be overridden.
 *
 * Pure apart from allocation: no I/O, so it can be fuzzed.
 */
#ifndef SHIVNERI_MESSAGE_H
#define SHIVNERI_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

struct store_message;

struct message_error {
	int http_status; /* 400, 413, 415 */
	char code[48];   /* "invalid_json", "invalid_field", "too_large", ... */
	char message[256]; /* says which field and why; no body bytes */
};

/* The recipients (to + cc + bcc) one message may have. */
#define MESSAGE_MAX_RECIPIENTS 1000

struct message_limits {
	size_t max_message_bytes; /* of the built MIME message */
	size_t max_recipients;    /* to + cc + bcc */
};

/* The SMTP-style envelope of a raw message; borrowed for the call. */
struct message_envelope {
	const char *mail_from;   /* addr-spec, or "" for the null sender */
	const char *const *rcpt; /* addr-specs */
	size_t nrcpt;
};

/* Once per process, before any other call (g_mime_init). */
void message_init(void);
void message_shutdown(void);

/*
 * Parses and checks a JSON submission of len bytes and builds the message.
 * On success returns 0 and a new store_message in *out with id, envelope,
 * display fields, tags and mime set (status queued, created_ms now).  On
 * failure returns -1 and fills err; nothing is allocated.
 */
int message_from_json(const char *json, size_t len,
		      const struct message_limits *lim,
		      struct store_message **out, struct message_error *err)
    __attribute__((warn_unused_result));

/*
 * The largest JSON body whose built message can still fit in
 * lim->max_message_bytes, for the HTTP layer's body cap: 9/4 of the
 * message (the most a JSON escape or base64 can shrink into the built
 * message, see docs/internals/intake.md "One limit") plus what never
 * reaches the message (bcc addresses, tags, JSON punctuation).
 */
size_t message_json_max_bytes(const struct message_limits *lim);

/*
 * Checks a raw RFC 5322 message of len bytes (SMTP DATA after
 * dot-unstuffing, a drop-in endpoint's MIME upload) with its envelope, and
 * makes it a store_message.  Refused: over max_message_bytes (413), a NUL
 * byte, a line over 998 bytes, a bare CR, a header block that is not
 * RFC 5322 fields (or that GMime cannot parse), no From, an unreadable
 * Date, an envelope without recipients or with a malformed address (400).
 * A message whose lines all end in a bare LF is taken with CRLF line ends;
 * otherwise the bytes are kept exactly, with Date and Message-ID put in
 * front only when missing.  Display fields (from, to, subject) come from
 * the headers.  Returns 0 and a new message in *out, or -1 with err filled
 * and nothing allocated.  Pure apart from allocation, like the JSON path.
 */
int message_from_mime(const char *raw, size_t len,
		      const struct message_envelope *env,
		      const struct message_limits *lim,
		      struct store_message **out, struct message_error *err)
    __attribute__((warn_unused_result));

#endif
