/*
 * Turning an HTTP submission (JSON, SPEC.md "POST /v1/messages") into a
 * stored message: every field checked, then the RFC 5322 / MIME message
 * built with GMime (Message-ID and Date added), with the envelope (sender
 * and every to/cc/bcc recipient) beside it.  Bcc never appears in the
 * headers.  No field can inject a header: CR, LF and NUL are refused in
 * every header-bound value, header names must be RFC 5322 field names,
 * and a header that the relay sets itself cannot be overridden.
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

struct message_limits {
	size_t max_message_bytes; /* of the built MIME message */
	size_t max_recipients;    /* to + cc + bcc */
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

#endif
