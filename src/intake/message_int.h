/*
 * What the files of the JSON message builder share (message.c,
 * message_json.c, message_addr.c, message_compose.c) and mime.c borrows:
 * the field caps, the build state, the composition buffer helpers and the
 * cross-file functions (message__ names).  Private to src/intake/.
 */
#ifndef SHIVNERI_MESSAGE_INT_H
#define SHIVNERI_MESSAGE_INT_H

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "intake/message.h"

#include <cjson/cJSON.h>
#include <gmime/gmime.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Caps on single fields; the whole message is capped by the limits. */
#define MAX_ADDRESS_LEN 998 /* one address as given */
#define MAX_ADDR_SPEC_LEN 254
#define MAX_LOCAL_LEN 64
#define MAX_SUBJECT_LEN 998
#define MAX_HEADERS 64
#define MAX_HEADER_NAME_LEN 76
#define MAX_HEADER_VALUE_LEN 998
#define MAX_ATTACHMENTS 100
#define MAX_FILENAME_LEN 255
#define MAX_CONTENT_TYPE_LEN 127
#define MAX_TAGS 10
#define MAX_TAG_LEN 128
#define MAX_LINE 998 /* RFC 5322 line limit, CRLF excluded */
#define FOLD_AT 78   /* preferred line length */

/* U+FDD0 in UTF-8: stands for a NUL escape inside the parsed tree. */
#define NUL_MARK "\xef\xb7\x90"
#define NUL_MARK_CP 0xfdd0

/* The top-level fields, borrowed from the parsed root. */
struct fields {
	cJSON *from;
	cJSON *to;
	cJSON *cc;
	cJSON *bcc;
	cJSON *reply_to;
	cJSON *subject;
	cJSON *text;
	cJSON *html;
	cJSON *headers;
	cJSON *attachments;
	cJSON *tags;
};

/* One parsed address: the addr-spec and the decoded display name. */
struct mbox {
	char addr[MAX_ADDR_SPEC_LEN + 1];
	char *name; /* malloc'd UTF-8, or NULL when there is none */
};

/* What is built before it is handed to the store_message. */
struct build {
	const struct message_limits *lim;
	struct message_error *err;
	bool nul;       /* NUL_MARK in a string means a NUL was escaped there */
	struct buf out; /* the message, headers first */
	struct buf tmp;
	char *mail_from;
	char **rcpt;
	size_t nrcpt;
	size_t rcpt_cap;
	char domain[256]; /* the From domain, for the Message-ID */
	char id[ID_LEN + 1];
};

/* Parser and format options; read-only after message_init(). */
extern GMimeParserOptions *message__parser_opts;
extern GMimeFormatOptions *message__format_opts;

/*
 * Appends to a composition buffer (common/buf.h, capped at SIZE_MAX): they
 * cannot fail short of memory exhaustion, because what is composed is
 * bounded before composing starts (check_fields: every field's cap and
 * min_size() against max_message_bytes; the encodings at most triple it)
 * and the result is checked against max_message_bytes at the end.  The
 * fast paths stay inline, as they were before common/buf.c: composition
 * appends a few bytes at a time.
 */
static inline void
xbuf_reserve(struct buf *b, size_t more)
{
	if (more < b->cap - b->len)
		return;
	if (buf_reserve(b, more) != 0)
		fatalx("message: composition buffer over its cap");
}

static inline void
xbuf_add(struct buf *b, const void *s, size_t n)
{
	xbuf_reserve(b, n);
	if (n > 0)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static inline void
xbuf_adds(struct buf *b, const char *s)
{
	xbuf_add(b, s, strlen(s));
}

static inline void
xbuf_addc(struct buf *b, char c)
{
	xbuf_reserve(b, 1);
	b->p[b->len++] = c;
	b->p[b->len] = '\0';
}

/* Returns the string of v (NULL when v is not a string) and its length. */
static inline const char *
str_of(const cJSON *v, size_t *n)
{
	*n = 0;
	if (!cJSON_IsString(v) || v->valuestring == NULL)
		return NULL;
	*n = strlen(v->valuestring);
	return v->valuestring;
}

/* Fills err (may be NULL) and returns -1: every refusal is one return. */
int message__fail(struct message_error *err, int status, const char *code,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* 400 invalid_field, "field: why". */
int message__invalid(struct message_error *err, const char *field,
		     const char *why);
/* A name taken from the body, made printable and short, into buf. */
const char *message__safe_name(const char *s, size_t n, char *buf,
			       size_t bufsz);
/*
 * Whether s (n bytes of UTF-8, or not) holds a C1 control (U+0080 to
 * U+009F) or U+2028/U+2029: encoded into a header they decode to what
 * readers take as a line end (Python's email splits on them).
 */
bool message__has_c1_or_separator(const char *s, size_t n);

/*
 * obj as compact JSON for a header's value (the drop-ins' variables), with
 * C1 controls and U+2028/U+2029 written as \uXXXX escapes so that the
 * header may carry them; a new string for free().  Exits on no memory.
 */
char *message__json_header_value(const cJSON *obj);

/*
 * A value bound for a header: at most max bytes of valid UTF-8 with no
 * NUL (nor NUL_MARK when b->nul), CR, LF or other control (C1 included),
 * nor U+2028/U+2029; 0 or -1.
 */
int message__check_header_value(const struct build *b, const char *field,
				const char *s, size_t n, size_t max);
/* True when s holds a NUL that the parse had to stand in for. */
bool message__has_nul(const struct build *b, const char *s, size_t n);
/*
 * The bytes n characters of base64 at s decode to when valid: 3/4 of its
 * characters other than the CR and LF the decoder skips and the '='
 * padding, so that a content wrapped with any number of line breaks is
 * counted as what it will be.  One pass, no decode and no allocation.
 */
size_t message__b64_decoded_len(const char *s, size_t n);

/* message_json.c: the strict parse into a new tree in *root; 0 or -1. */
int message__json_parse(const char *json, size_t len, cJSON **root, bool *nul,
			struct message_error *err);

/* message_addr.c */
/* A host name of letters, digits, hyphens or UTF-8 labels. */
bool message__domain_ok(const char *s, size_t n);
/* A dot-atom local part at a host name, at most 254 bytes. */
bool message__addr_spec_ok(const char *a);
/*
 * The lexical screen of one mailbox ("addr" or "Name <addr>") that keeps
 * other shapes from GMime's address parser, whose error paths leak in
 * GMime 3.2.13: call it before internet_address_list_parse() on
 * untrusted text.
 */
bool message__addr_shape_ok(const char *s, size_t n);
/* One address, as the caller wrote it in field, into mb; 0 or -1. */
int message__parse_mailbox(const struct build *b, const char *field,
			   const cJSON *v, struct mbox *mb);
bool message__is_ascii(const char *s, size_t n);
/*
 * An attachment's content_type as /v1 takes it: "type/subtype" of RFC
 * 2045 tokens, not multipart or message, with parameters that readers
 * agree on; *slash is the '/''s offset.
 */
bool message__content_type_ok(const char *s, size_t n, size_t *slash);
/* The addr-spec with an IDN domain in punycode; malloc'd. */
char *message__addr_ascii_domain(const struct mbox *mb);
/* "Name: a, b, ..." folded between mailboxes, into b->out. */
void message__hdr_add_mailboxes(struct build *b, const char *name,
				const struct mbox *mb, size_t n);
void message__mboxes_free(struct mbox *mb, size_t n);

/* message_compose.c */
/* RFC 2047 B words of UTF-8 text, space separated. */
void message__encode_b(struct buf *out, const char *s, size_t n);
/* v at column *col, folded before spaces; -1 past 998 columns. */
int message__fold_add(struct buf *out, size_t *col, const char *v, size_t n);
/* An unstructured header (subject, custom), encoded as it needs. */
void message__hdr_add_text(struct build *b, const char *name, const char *s,
			   size_t n, bool encode_look_alike);
/* MIME-Version and the body; 0 or -1 (an attachment refused). */
int message__add_body(struct build *b, const struct fields *f);
/* "Date: ..." for ms, UTC, in RFC 5322 form, with its CRLF. */
void message__date_add(struct buf *out, int64_t ms);
/* A Date a client gives: one GMime reads as a date. */
bool message__date_valid(const char *s);
/* One msg-id "<left@right>" of printable ASCII, at most 250 bytes. */
bool message__msgid_valid(const char *s, size_t n);

/* mime.c: the fields of a raw header block that message_from_mime() reads. */
enum message_head_id {
	MESSAGE_HEAD_FROM,
	MESSAGE_HEAD_DATE,
	MESSAGE_HEAD_MID, /* Message-ID */
	MESSAGE_HEAD_SUBJECT,
	MESSAGE_HEAD_TO,
	MESSAGE_HEAD_NFIELDS
};
struct message_head_field {
	int count;       /* fields of this name, without case */
	const char *raw; /* the first one's value: after its colon */
	size_t raw_len;  /* to the end of its last line */
};
struct message_head {
	struct message_head_field f[MESSAGE_HEAD_NFIELDS];
	int dropped; /* Bcc and Resent-Bcc fields: not stored (mime.c) */
};
/* The fields of a block of "name:" lines and continuations; 0 or -1. */
int message__head_fields(const char *h, size_t n, struct message_head *hf);
/* The first field's value, unfolded and decoded as GMime's
 * g_mime_header_get_value() gives it (g_free()), or NULL. */
char *message__head_value(const struct message_head *hf,
			  enum message_head_id id);

#endif
