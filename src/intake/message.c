/*
 * From a JSON submission to a stored message.  The work is in two halves:
 * first every field is found, typed and checked against the limits with
 * nothing built (so most refusals cost a parse and no GMime objects), then
 * the RFC 5322 message is built with GMime and serialized once, with CRLF
 * line ends, then copied into the buffer the store keeps.
 *
 * Header injection is refused rather than repaired: a CR, LF, NUL or other
 * control character in any value that ends up in a header (addresses,
 * subject, custom headers, file names, content types) is an invalid_field
 * error naming the field.  Addresses go through GMime's parser and are
 * then checked again by hand, because GMime is lenient by design: it
 * accepts "bob" with no domain and quietly drops text it cannot place, so
 * the addr-spec it returns must be exactly the one the caller wrote.
 * Display names and the subject may be any UTF-8; GMime encodes them
 * (RFC 2047) when it writes the headers.
 *
 * Errors never echo body bytes, except a short sanitized excerpt of a
 * field name.  On failure nothing stays allocated.  Allocation failure is
 * fatal (the x-allocators, and GLib's, abort).
 *
 * Ownership: jansson values are borrowed from the root, which this file
 * owns for the call.  GMime objects are reference counted; a container
 * takes its own reference, so each local reference is dropped right after
 * the object is added.  The strings handed to the store are malloc'd here
 * (json_dumps uses malloc, as jansson's default allocator), so that
 * store_message_free() can free() them.
 */
#include "intake/message.h"
#include "common/log.h"
#include "common/util.h"
#include "store/store.h"

#include <gmime/gmime.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* Parser options shared by every call; read-only after message_init(). */
static GMimeParserOptions *parser_opts;
static GMimeFormatOptions *format_opts;

/* The top-level fields, borrowed from the parsed root. */
struct fields {
	json_t *from;
	json_t *to;
	json_t *cc;
	json_t *bcc;
	json_t *reply_to;
	json_t *subject;
	json_t *text;
	json_t *html;
	json_t *headers;
	json_t *attachments;
	json_t *tags;
};

/* What is built before it is handed to the store_message. */
struct build {
	const struct message_limits *lim;
	struct message_error *err;
	GMimeMessage *msg;
	char *mail_from;
	char **rcpt;
	size_t nrcpt;
	size_t rcpt_cap;
	char domain[256]; /* the From domain, for the Message-ID */
};

void
message_init(void)
{
	g_mime_init();
	parser_opts = g_mime_parser_options_new();
	g_mime_parser_options_set_address_compliance_mode(
	    parser_opts, GMIME_RFC_COMPLIANCE_STRICT);
	g_mime_parser_options_set_rfc2047_compliance_mode(
	    parser_opts, GMIME_RFC_COMPLIANCE_STRICT);
	format_opts = g_mime_format_options_new();
	g_mime_format_options_set_newline_format(format_opts,
						 GMIME_NEWLINE_FORMAT_DOS);
}

void
message_shutdown(void)
{
	if (format_opts != NULL)
		g_mime_format_options_free(format_opts);
	if (parser_opts != NULL)
		g_mime_parser_options_free(parser_opts);
	format_opts = NULL;
	parser_opts = NULL;
	g_mime_shutdown();
}

static int fail(struct message_error *err, int status, const char *code,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Fills err and returns -1, so that every refusal is one return. */
static int
fail(struct message_error *err, int status, const char *code, const char *fmt,
     ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	err->http_status = status;
	snprintf(err->code, sizeof(err->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

static int
invalid(struct message_error *err, const char *field, const char *why)
{
	return fail(err, 400, "invalid_field", "%s: %s", field, why);
}

/* A field name taken from the body, made printable and short. */
static const char *
safe_name(const char *s, size_t n, char *buf, size_t bufsz)
{
	return log_sanitize(s, n, buf, bufsz);
}

/*
 * Checks a value bound for a header: no NUL, CR, LF or other control
 * character, and at most max bytes.
 */
static int
check_header_value(const char *field, const char *s, size_t n, size_t max,
		   struct message_error *err)
{
	size_t i;
	unsigned char c;

	if (n > max)
		return invalid(err, field, "too long");
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '\0')
			return invalid(err, field, "contains NUL");
		if (c == '\r' || c == '\n')
			return invalid(err, field, "contains CR or LF");
		if (c < 0x20 || c == 0x7f)
			return invalid(err, field,
				       "contains a control character");
	}
	return 0;
}

/* Returns the string of v (NULL when v is not a string) and its length. */
static const char *
str_of(const json_t *v, size_t *n)
{
	*n = 0;
	if (!json_is_string(v))
		return NULL;
	*n = json_string_length(v);
	return json_string_value(v);
}

static bool
is_atext(unsigned char c)
{
	if (c >= 0x80) /* UTF-8, already valid (jansson checked it) */
		return true;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* A dot-atom local part: atext runs separated by single dots. */
static bool
local_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > MAX_LOCAL_LEN || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!is_atext((unsigned char)s[i]))
			return false;
	}
	return true;
}

/*
 * A host name: labels of letters, digits, hyphens (or UTF-8 for IDN) of
 * 1..63 bytes, not starting or ending with a hyphen.  Domain literals are
 * refused: nobody sends application mail to [192.0.2.1].
 */
static bool
domain_ok(const char *s, size_t n)
{
	size_t i, label = 0;
	unsigned char c;

	if (n == 0 || n > 253)
		return false;
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!(c >= 0x80 || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
		if (label == 0 && c == '-')
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && s[n - 1] != '-';
}

static bool
addr_spec_ok(const char *a)
{
	const char *at = strrchr(a, '@');
	size_t n = strlen(a);

	if (at == NULL || n > MAX_ADDR_SPEC_LEN)
		return false;
	return local_ok(a, (size_t)(at - a)) &&
	       domain_ok(at + 1, n - (size_t)(at - a) - 1);
}

/*
 * The part of what was given that must be the addr-spec: between the last
 * '<' and its '>' (with nothing but spaces after), or the whole trimmed
 * string when there is no angle bracket.
 */
static bool
given_matches(const char *s, size_t n, const char *addr)
{
	const char *lt, *gt, *b, *e;

	lt = memrchr(s, '<', n);
	if (lt != NULL) {
		gt = memchr(lt, '>', n - (size_t)(lt - s));
		if (gt == NULL)
			return false;
		for (e = gt + 1; e < s + n; e++)
			if (*e != ' ')
				return false;
		b = lt + 1;
		e = gt;
	} else {
		b = s;
		e = s + n;
		while (b < e && *b == ' ')
			b++;
		while (e > b && e[-1] == ' ')
			e--;
	}
	return (size_t)(e - b) == strlen(addr) &&
	       memcmp(b, addr, (size_t)(e - b)) == 0;
}

/*
 * A lexical screen run before GMime sees the address: outside quoted
 * strings at most one '<' followed by one '>' with only spaces after it,
 * no '@' before the '<', and none of the characters that make lists,
 * groups, routes, comments or domain literals (",;:()[]\\").  Those shapes
 * are refused anyway, and keeping them from the parser also keeps them
 * from its error paths, some of which leak in GMime 3.2.13 (found by
 * fuzzing: "a <b@c>d>", "a@b c <d@e>").
 */
static bool
shape_ok(const char *s, size_t n)
{
	size_t i, lt = 0, gt = 0;
	bool quoted = false;

	for (i = 0; i < n; i++) {
		if (quoted) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '"')
				quoted = false;
			continue;
		}
		if (gt > 0 && s[i] != ' ')
			return false;
		switch (s[i]) {
		case '"':
			if (lt > 0)
				return false;
			quoted = true;
			break;
		case '<':
			if (lt++ > 0)
				return false;
			break;
		case '>':
			if (lt == 0 || gt++ > 0)
				return false;
			break;
		case '@':
			/* Only in the addr-spec, never in a bare phrase. */
			if (i < n && memchr(s + i, '<', n - i) != NULL)
				return false;
			break;
		case ',':
		case ';':
		case ':':
		case '(':
		case ')':
		case '[':
		case ']':
		case '\\':
			return false;
		}
	}
	return !quoted && lt == gt;
}

/*
 * Parses one address, the way the caller wrote it in field, into a new
 * mailbox reference in *out.  A display name is allowed (it shows in the
 * header; the envelope takes only the addr-spec).
 */
static int
parse_mailbox(const char *field, const json_t *v, InternetAddressMailbox **out,
	      struct message_error *err)
{
	InternetAddressList *list = NULL;
	InternetAddress *ia;
	const char *s, *name, *addr;
	size_t n, i;
	int rc = -1;

	*out = NULL;
	s = str_of(v, &n);
	if (s == NULL)
		return invalid(err, field, "must be a string");
	if (check_header_value(field, s, n, MAX_ADDRESS_LEN, err) != 0)
		return -1;
	if (!shape_ok(s, n))
		return invalid(err, field, "not a valid address");
	list = internet_address_list_parse(parser_opts, s);
	if (list == NULL || internet_address_list_length(list) != 1) {
		invalid(err, field, "not a valid address");
		goto fail;
	}
	ia = internet_address_list_get_address(list, 0);
	if (!INTERNET_ADDRESS_IS_MAILBOX(ia)) {
		invalid(err, field, "not a valid address (a group)");
		goto fail;
	}
	addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
	if (addr == NULL || !addr_spec_ok(addr) || !given_matches(s, n, addr)) {
		invalid(err, field, "not a valid address");
		goto fail;
	}
	name = internet_address_get_name(ia);
	/* An encoded-word may have smuggled a control character in. */
	for (i = 0; name != NULL && name[i] != '\0'; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) {
			invalid(err, field, "contains a control character");
			goto fail;
		}
	*out = INTERNET_ADDRESS_MAILBOX(g_object_ref(ia));
	rc = 0;
fail:
	if (list != NULL)
		g_object_unref(list);
	return rc;
}

/*
 * The addr-spec for the envelope: an internationalized domain in its ASCII
 * (punycode) form.  IDN conversion is costly, so ASCII skips it.
 */
static const char *
envelope_addr(InternetAddressMailbox *mb)
{
	const char *a = internet_address_mailbox_get_addr(mb);
	size_t i;

	for (i = 0; a[i] != '\0'; i++)
		if ((unsigned char)a[i] >= 0x80)
			return internet_address_mailbox_get_idn_addr(mb);
	return a;
}

/* Adds an envelope recipient unless it is already there. */
static void
rcpt_add(struct build *b, const char *addr)
{
	size_t i;

	for (i = 0; i < b->nrcpt; i++)
		if (strcasecmp(b->rcpt[i], addr) == 0)
			return;
	if (b->nrcpt == b->rcpt_cap) {
		b->rcpt_cap = b->rcpt_cap ? 2 * b->rcpt_cap : 4;
		b->rcpt = xreallocarray(b->rcpt, b->rcpt_cap, sizeof(*b->rcpt));
	}
	b->rcpt[b->nrcpt++] = xstrdup(addr);
}

/* The number of addresses in a to/cc/bcc field: a string or an array. */
static int
count_addresses(const char *field, const json_t *v, size_t *n,
		struct message_error *err)
{
	*n = 0;
	if (v == NULL)
		return 0;
	if (json_is_string(v)) {
		*n = 1;
		return 0;
	}
	if (!json_is_array(v))
		return invalid(err, field,
			       "must be a string or an array of strings");
	*n = json_array_size(v);
	return 0;
}

/*
 * Adds every address of a to/cc/bcc field to the envelope and, unless
 * type is -1 (bcc), to that header of the message.
 */
static int
add_recipients(struct build *b, const char *fname, const json_t *v, int type)
{
	InternetAddressMailbox *mb;
	InternetAddressList *hdr = NULL;
	char field[64];
	size_t i, n;
	const json_t *e;

	if (v == NULL)
		return 0;
	if (type >= 0)
		hdr = g_mime_message_get_addresses(b->msg, type);
	n = json_is_array(v) ? json_array_size(v) : 1;
	for (i = 0; i < n; i++) {
		e = json_is_array(v) ? json_array_get(v, i) : v;
		if (json_is_array(v))
			snprintf(field, sizeof(field), "%s[%zu]", fname, i);
		else
			snprintf(field, sizeof(field), "%s", fname);
		if (parse_mailbox(field, e, &mb, b->err) != 0)
			return -1;
		rcpt_add(b, envelope_addr(mb));
		if (hdr != NULL)
			internet_address_list_add(hdr, INTERNET_ADDRESS(mb));
		g_object_unref(mb);
	}
	return 0;
}

static int
set_from(struct build *b, const json_t *v)
{
	InternetAddressMailbox *mb;
	const char *idn, *at;

	if (parse_mailbox("from", v, &mb, b->err) != 0)
		return -1;
	idn = envelope_addr(mb);
	at = strrchr(idn, '@');
	/* addr_spec_ok() saw an '@'; the IDN form keeps it. */
	if (at == NULL || strlen(at + 1) >= sizeof(b->domain) ||
	    !domain_ok(at + 1, strlen(at + 1))) {
		g_object_unref(mb);
		return invalid(b->err, "from", "not a valid address");
	}
	snprintf(b->domain, sizeof(b->domain), "%s", at + 1);
	b->mail_from = xstrdup(idn);
	internet_address_list_add(g_mime_message_get_from(b->msg),
				  INTERNET_ADDRESS(mb));
	g_object_unref(mb);
	return 0;
}

static int
set_reply_to(struct build *b, const json_t *v)
{
	InternetAddressMailbox *mb;

	if (v == NULL)
		return 0;
	if (parse_mailbox("reply_to", v, &mb, b->err) != 0)
		return -1;
	internet_address_list_add(g_mime_message_get_reply_to(b->msg),
				  INTERNET_ADDRESS(mb));
	g_object_unref(mb);
	return 0;
}

/* Headers the relay writes itself, compared without case. */
static bool
header_forbidden(const char *name)
{
	static const char *const exact[] = {
	    "from",         "to",       "cc",          "bcc",
	    "reply-to",     "subject",  "date",        "message-id",
	    "mime-version", "received", "return-path", "sender",
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(exact); i++)
		if (strcasecmp(name, exact[i]) == 0)
			return true;
	/*
	 * Content-* belongs to the MIME structure; Resent-* headers are
	 * addresses too (Resent-Bcc would leak its recipients).
	 */
	return strncasecmp(name, "content-", 8) == 0 ||
	       strncasecmp(name, "resent-", 7) == 0;
}

static int
check_header_name(const char *field, const char *s, size_t n,
		  struct message_error *err)
{
	size_t i;

	if (n == 0 || n > MAX_HEADER_NAME_LEN)
		return invalid(err, field, "not a valid header name");
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 ||
		    s[i] == ':')
			return invalid(err, field, "not a valid header name");
	if (header_forbidden(s))
		return invalid(err, field, "set by the relay, not allowed");
	return 0;
}

static int
add_headers(struct build *b, json_t *obj)
{
	const char *key, *val;
	json_t *v;
	char field[96], kbuf[48];
	size_t n;

	if (obj == NULL)
		return 0;
	if (json_object_size(obj) > MAX_HEADERS)
		return invalid(b->err, "headers", "too many headers");
	json_object_foreach(obj, key, v)
	{
		snprintf(field, sizeof(field), "headers.%s",
			 safe_name(key, strlen(key), kbuf, sizeof(kbuf)));
		/* jansson refuses NUL in keys, so strlen() is the length. */
		if (check_header_name(field, key, strlen(key), b->err) != 0)
			return -1;
		val = str_of(v, &n);
		if (val == NULL)
			return invalid(b->err, field, "must be a string");
		if (check_header_value(field, val, n, MAX_HEADER_VALUE_LEN,
				       b->err) != 0)
			return -1;
		g_mime_object_append_header(GMIME_OBJECT(b->msg), key, val,
					    "utf-8");
	}
	return 0;
}

/* The number of bytes of s[0..n) with the high bit set, a word at a time. */
static size_t
count_high(const char *s, size_t n)
{
	const uint64_t mask = 0x8080808080808080ULL;
	uint64_t w;
	size_t i = 0, high = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&w, s + i, 8);
		if (w & mask)
			high += (size_t)__builtin_popcountll(w & mask);
	}
	for (; i < n; i++)
		high += (unsigned char)s[i] >> 7;
	return high;
}

/* The longest line of s[0..n) split at LF only. */
static size_t
longest_line(const char *s, size_t n)
{
	const char *p = s, *end = s + n, *nl;
	size_t max = 0;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		if ((size_t)(nl - p) > max)
			max = (size_t)(nl - p);
		p = nl + 1;
	}
	return max;
}

/*
 * Copies s with every line end (CRLF, bare CR, LF) made LF, or CRLF with
 * crlf set, into a new byte array.
 */
static GByteArray *
normalize_newlines(const char *s, size_t n, bool crlf)
{
	GByteArray *arr;
	guint8 *d;
	size_t i, o = 0;

	/* At most two bytes out per byte in (a bare LF becomes CRLF). */
	arr = g_byte_array_sized_new((guint)(crlf ? 2 * n + 1 : n + 1));
	d = arr->data;
	for (i = 0; i < n; i++) {
		if (s[i] == '\r' || s[i] == '\n') {
			if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
				i++;
			if (crlf)
				d[o++] = '\r';
			d[o++] = '\n';
		} else
			d[o++] = (guint8)s[i];
	}
	g_byte_array_set_size(arr, (guint)o);
	return arr;
}

/*
 * A text part holding s.  Line ends are LF for 7bit and quoted-printable
 * (GMime writes them as CRLF) and CRLF for base64, which encodes text in
 * its canonical form.  The encoding follows the content: 7bit for
 * short-lined ASCII, else quoted-printable, unless more than about a sixth
 * of the bytes are 8-bit, where base64 is shorter.  The common case (LF
 * line ends, not base64) costs two scans and one copy.
 */
static GMimeObject *
text_part_new(const char *subtype, const char *s, size_t n)
{
	GMimeTextPart *tp;
	GMimeStream *stream;
	GMimeDataWrapper *w;
	GMimeContentEncoding enc;
	size_t high;
	bool has_cr;

	high = count_high(s, n);
	has_cr = memchr(s, '\r', n) != NULL;
	if (high == 0 && longest_line(s, n) <= MAX_LINE)
		enc = GMIME_CONTENT_ENCODING_7BIT;
	else if (high * 6 > n)
		enc = GMIME_CONTENT_ENCODING_BASE64;
	else
		enc = GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
	if (has_cr || enc == GMIME_CONTENT_ENCODING_BASE64)
		stream =
		    g_mime_stream_mem_new_with_byte_array(normalize_newlines(
			s, n, enc == GMIME_CONTENT_ENCODING_BASE64));
	else
		stream = g_mime_stream_mem_new_with_buffer(s, n);

	tp = g_mime_text_part_new_with_subtype(subtype);
	g_mime_text_part_set_charset(tp, high ? "utf-8" : "us-ascii");
	w = g_mime_data_wrapper_new_with_stream(stream,
						GMIME_CONTENT_ENCODING_DEFAULT);
	g_object_unref(stream);
	g_mime_part_set_content(GMIME_PART(tp), w);
	g_object_unref(w);
	g_mime_part_set_content_encoding(GMIME_PART(tp), enc);
	return GMIME_OBJECT(tp);
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Strict base64 (RFC 4648 alphabet) into a new byte array: CR and LF are
 * skipped (wrapped input is common), padding is optional but only at the
 * end, anything else is an error.  NULL when malformed.
 */
static GByteArray *
b64_decode(const char *s, size_t n)
{
	GByteArray *arr;
	guint8 *d;
	uint32_t acc = 0;
	size_t i, o = 0, k = 0, pad = 0;
	int v;

	arr = g_byte_array_sized_new((guint)(n / 4 * 3 + 3));
	d = arr->data;
	for (i = 0; i < n; i++) {
		if (s[i] == '\r' || s[i] == '\n')
			continue;
		if (s[i] == '=') {
			pad++;
			continue;
		}
		v = b64_value((unsigned char)s[i]);
		if (v < 0 || pad > 0)
			goto fail;
		acc = (acc << 6) | (uint32_t)v;
		if (++k == 4) {
			d[o++] = (guint8)(acc >> 16);
			d[o++] = (guint8)(acc >> 8);
			d[o++] = (guint8)acc;
			acc = 0;
			k = 0;
		}
	}
	/* k data characters left over: 2 -> 1 byte, 3 -> 2 bytes. */
	if (k == 1 || pad > 2 || (pad > 0 && k + pad != 4))
		goto fail;
	if (k == 2)
		d[o++] = (guint8)(acc >> 4);
	else if (k == 3) {
		d[o++] = (guint8)(acc >> 10);
		d[o++] = (guint8)(acc >> 2);
	}
	g_byte_array_set_size(arr, (guint)o);
	return arr;
fail:
	g_byte_array_unref(arr);
	return NULL;
}

static bool
is_token(unsigned char c)
{
	return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* "type/subtype" of RFC 2045 tokens; never a multipart or message. */
static bool
content_type_ok(const char *s, size_t n, size_t *slash)
{
	const char *p;
	size_t i;

	if (n == 0 || n > MAX_CONTENT_TYPE_LEN)
		return false;
	p = memchr(s, '/', n);
	if (p == NULL || p == s || p == s + n - 1)
		return false;
	*slash = (size_t)(p - s);
	for (i = 0; i < n; i++)
		if (i != *slash && !is_token((unsigned char)s[i]))
			return false;
	return strncasecmp(s, "multipart/", 10) != 0 &&
	       strncasecmp(s, "message/", 8) != 0;
}

static bool
filename_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > MAX_FILENAME_LEN || strcmp(s, ".") == 0 ||
	    strcmp(s, "..") == 0)
		return false;
	for (i = 0; i < n; i++)
		if (s[i] == '/' || s[i] == '\\')
			return false;
	return true;
}

/* Checks one attachment object and builds its part into *out. */
static int
attachment_new(size_t idx, json_t *a, GMimeObject **out,
	       struct message_error *err)
{
	const char *key, *fname = NULL, *ctype = "application/octet-stream";
	const char *b64 = NULL;
	char field[96], kbuf[32], type[MAX_CONTENT_TYPE_LEN + 1];
	size_t fn = 0, cn = strlen(ctype), bn = 0, slash = 11;
	GByteArray *arr;
	GMimeStream *stream;
	GMimeDataWrapper *w;
	GMimePart *part;
	json_t *v;

	*out = NULL;
	snprintf(field, sizeof(field), "attachments[%zu]", idx);
	if (!json_is_object(a))
		return invalid(err, field, "must be an object");
	json_object_foreach(a, key, v)
	{
		snprintf(field, sizeof(field), "attachments[%zu].%s", idx,
			 safe_name(key, strlen(key), kbuf, sizeof(kbuf)));
		if (strcmp(key, "filename") != 0 &&
		    strcmp(key, "content_type") != 0 &&
		    strcmp(key, "content_base64") != 0)
			return invalid(err, field, "unknown field");
		if (json_is_null(v))
			continue;
		if (!json_is_string(v))
			return invalid(err, field, "must be a string");
		if (strcmp(key, "filename") == 0)
			fname = str_of(v, &fn);
		else if (strcmp(key, "content_type") == 0)
			ctype = str_of(v, &cn);
		else
			b64 = str_of(v, &bn);
	}
	snprintf(field, sizeof(field), "attachments[%zu].filename", idx);
	if (fname == NULL)
		return fail(err, 400, "missing_field", "%s: required", field);
	if (check_header_value(field, fname, fn, MAX_FILENAME_LEN, err) != 0)
		return -1;
	if (!filename_ok(fname, fn))
		return invalid(err, field, "not a valid file name");
	snprintf(field, sizeof(field), "attachments[%zu].content_type", idx);
	if (check_header_value(field, ctype, cn, MAX_CONTENT_TYPE_LEN, err) !=
	    0)
		return -1;
	if (!content_type_ok(ctype, cn, &slash))
		return invalid(err, field, "not a valid content type");
	snprintf(field, sizeof(field), "attachments[%zu].content_base64", idx);
	if (b64 == NULL)
		return fail(err, 400, "missing_field", "%s: required", field);
	arr = b64_decode(b64, bn);
	if (arr == NULL)
		return invalid(err, field, "not valid base64");

	memcpy(type, ctype, cn);
	type[cn] = '\0';
	type[slash] = '\0';
	part = g_mime_part_new_with_type(type, type + slash + 1);
	stream = g_mime_stream_mem_new_with_byte_array(arr);
	w = g_mime_data_wrapper_new_with_stream(stream,
						GMIME_CONTENT_ENCODING_DEFAULT);
	g_object_unref(stream);
	g_mime_part_set_content(part, w);
	g_object_unref(w);
	g_mime_part_set_content_encoding(part, GMIME_CONTENT_ENCODING_BASE64);
	g_mime_part_set_filename(part, fname);
	*out = GMIME_OBJECT(part);
	return 0;
}

/*
 * The body: one text part, or multipart/alternative of text and html,
 * inside multipart/mixed when there are attachments.
 */
static int
set_body(struct build *b, const struct fields *f)
{
	GMimeObject *body = NULL, *text = NULL, *html = NULL, *att;
	GMimeMultipart *mp;
	const char *s;
	size_t n, i;

	if (f->text != NULL) {
		s = str_of(f->text, &n);
		text = text_part_new("plain", s, n);
	}
	if (f->html != NULL) {
		s = str_of(f->html, &n);
		html = text_part_new("html", s, n);
	}
	if (text != NULL && html != NULL) {
		mp = g_mime_multipart_new_with_subtype("alternative");
		g_mime_multipart_add(mp, text);
		g_mime_multipart_add(mp, html);
		g_object_unref(text);
		g_object_unref(html);
		body = GMIME_OBJECT(mp);
	} else
		body = text != NULL ? text : html;

	if (f->attachments != NULL && json_array_size(f->attachments) > 0) {
		mp = g_mime_multipart_new_with_subtype("mixed");
		g_mime_multipart_add(mp, body);
		g_object_unref(body);
		body = GMIME_OBJECT(mp);
		for (i = 0; i < json_array_size(f->attachments); i++) {
			if (attachment_new(i, json_array_get(f->attachments, i),
					   &att, b->err) != 0) {
				g_object_unref(body);
				return -1;
			}
			g_mime_multipart_add(mp, att);
			g_object_unref(att);
		}
	}
	g_mime_message_set_mime_part(b->msg, body);
	g_object_unref(body);
	return 0;
}

static int
check_tags(const json_t *tags, struct message_error *err)
{
	char field[32];
	const char *s;
	size_t i, j, n;

	if (tags == NULL)
		return 0;
	if (json_array_size(tags) > MAX_TAGS)
		return invalid(err, "tags", "too many tags");
	for (i = 0; i < json_array_size(tags); i++) {
		snprintf(field, sizeof(field), "tags[%zu]", i);
		s = str_of(json_array_get(tags, i), &n);
		if (s == NULL)
			return invalid(err, field, "must be a string");
		if (n == 0 || n > MAX_TAG_LEN)
			return invalid(err, field, "must be 1 to 128 bytes");
		for (j = 0; j < n; j++)
			if ((unsigned char)s[j] < 0x20 ||
			    (unsigned char)s[j] > 0x7e)
				return invalid(err, field,
					       "must be printable ASCII");
	}
	return 0;
}

/*
 * Finds every top-level field and checks its JSON type; null counts as
 * absent for the optional ones.
 */
static int
find_fields(json_t *root, struct fields *f, struct message_error *err)
{
	static const struct {
		const char *name;
		size_t off;
	} known[] = {
	    {"from", offsetof(struct fields, from)},
	    {"to", offsetof(struct fields, to)},
	    {"cc", offsetof(struct fields, cc)},
	    {"bcc", offsetof(struct fields, bcc)},
	    {"reply_to", offsetof(struct fields, reply_to)},
	    {"subject", offsetof(struct fields, subject)},
	    {"text", offsetof(struct fields, text)},
	    {"html", offsetof(struct fields, html)},
	    {"headers", offsetof(struct fields, headers)},
	    {"attachments", offsetof(struct fields, attachments)},
	    {"tags", offsetof(struct fields, tags)},
	};
	const char *key;
	json_t *v;
	char kbuf[32];
	size_t i;

	memset(f, 0, sizeof(*f));
	json_object_foreach(root, key, v)
	{
		for (i = 0; i < ARRAY_SIZE(known); i++)
			if (strcmp(key, known[i].name) == 0)
				break;
		if (i == ARRAY_SIZE(known))
			return invalid(
			    err,
			    safe_name(key, strlen(key), kbuf, sizeof(kbuf)),
			    "unknown field");
		if (!json_is_null(v))
			*(json_t **)((char *)f + known[i].off) = v;
	}
	if (f->from != NULL && !json_is_string(f->from))
		return invalid(err, "from", "must be a string");
	if (f->reply_to != NULL && !json_is_string(f->reply_to))
		return invalid(err, "reply_to", "must be a string");
	if (f->subject != NULL && !json_is_string(f->subject))
		return invalid(err, "subject", "must be a string");
	if (f->text != NULL && !json_is_string(f->text))
		return invalid(err, "text", "must be a string");
	if (f->html != NULL && !json_is_string(f->html))
		return invalid(err, "html", "must be a string");
	if (f->headers != NULL && !json_is_object(f->headers))
		return invalid(err, "headers", "must be an object");
	if (f->attachments != NULL && !json_is_array(f->attachments))
		return invalid(err, "attachments", "must be an array");
	if (f->tags != NULL && !json_is_array(f->tags))
		return invalid(err, "tags", "must be an array");
	return 0;
}

/* The body bytes the message will carry at least (base64 is 3/4). */
static size_t
min_size(const struct fields *f)
{
	size_t n = 0, i;
	json_t *a, *c;

	if (f->text != NULL)
		n += json_string_length(f->text);
	if (f->html != NULL)
		n += json_string_length(f->html);
	for (i = 0; i < json_array_size(f->attachments); i++) {
		a = json_array_get(f->attachments, i);
		c = json_object_get(a, "content_base64");
		if (json_is_string(c))
			n += json_string_length(c) / 4 * 3;
	}
	return n;
}

static int
check_fields(const struct fields *f, const struct message_limits *lim,
	     struct message_error *err)
{
	size_t nto, ncc, nbcc, n;
	const char *s;

	if (f->from == NULL)
		return fail(err, 400, "missing_field", "from: required");
	if (count_addresses("to", f->to, &nto, err) != 0 ||
	    count_addresses("cc", f->cc, &ncc, err) != 0 ||
	    count_addresses("bcc", f->bcc, &nbcc, err) != 0)
		return -1;
	if (nto + ncc + nbcc == 0)
		return fail(err, 400, "missing_field",
			    "to: at least one recipient is required");
	if (nto + ncc + nbcc > lim->max_recipients)
		return invalid(err, "to",
			       "too many recipients in to, cc and bcc");
	if (f->text == NULL && f->html == NULL)
		return fail(err, 400, "missing_field",
			    "text: text or html is required");
	if (f->text != NULL &&
	    strlen(json_string_value(f->text)) != json_string_length(f->text))
		return invalid(err, "text", "contains NUL");
	if (f->html != NULL &&
	    strlen(json_string_value(f->html)) != json_string_length(f->html))
		return invalid(err, "html", "contains NUL");
	if (f->subject != NULL) {
		s = str_of(f->subject, &n);
		if (check_header_value("subject", s, n, MAX_SUBJECT_LEN, err) !=
		    0)
			return -1;
	}
	if (f->attachments != NULL &&
	    json_array_size(f->attachments) > MAX_ATTACHMENTS)
		return invalid(err, "attachments", "too many attachments");
	if (check_tags(f->tags, err) != 0)
		return -1;
	if (min_size(f) > lim->max_message_bytes)
		return fail(err, 413, "too_large",
			    "message: larger than %zu bytes",
			    lim->max_message_bytes);
	return 0;
}

static const char *
json_error_why(const json_error_t *je)
{
	switch (json_error_code(je)) {
	case json_error_invalid_utf8:
		return "invalid UTF-8";
	case json_error_duplicate_key:
		return "duplicate key";
	case json_error_premature_end_of_input:
		return "truncated";
	case json_error_end_of_input_expected:
		return "trailing bytes after the object";
	case json_error_null_character:
		return "NUL byte";
	case json_error_null_byte_in_key:
		return "NUL in a key";
	case json_error_numeric_overflow:
		return "number out of range";
	case json_error_invalid_format:
		return "not an object";
	default:
		return "syntax error";
	}
}

/* JSON text of the To: addresses as given; "[]" when there is none. */
static char *
to_json_new(json_t *to)
{
	json_t *arr;
	char *s;

	if (json_is_array(to))
		return json_dumps(to, JSON_COMPACT);
	arr = json_array();
	if (to != NULL)
		json_array_append(arr, to);
	s = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return s;
}

/* Serializes into a malloc'd buffer the store owns; NUL-terminated. */
static char *
serialize(GMimeMessage *msg, size_t *len)
{
	GMimeStream *stream;
	GByteArray *arr;
	char *out;

	arr = g_byte_array_sized_new(4096);
	stream = g_mime_stream_mem_new_with_byte_array(arr);
	g_mime_object_write_to_stream(GMIME_OBJECT(msg), format_opts, stream);
	/*
	 * GLib allocates with g_malloc, which the store cannot free(); one
	 * copy into our own allocation keeps the ownership rule simple.
	 */
	*len = arr->len;
	out = xmalloc(arr->len + 1);
	memcpy(out, arr->data, arr->len);
	out[arr->len] = '\0';
	g_object_unref(stream);
	return out;
}

int
message_from_json(const char *json, size_t len,
		  const struct message_limits *lim, struct store_message **out,
		  struct message_error *err)
{
	struct build b;
	struct fields f;
	struct store_message *m = NULL;
	json_t *root = NULL;
	json_error_t je;
	GDateTime *date;
	char id[ID_LEN + 1], *msgid, *mime = NULL, *to_json = NULL;
	char *tags_json = NULL;
	size_t mime_len = 0, i;
	int64_t now;

	*out = NULL;
	memset(&b, 0, sizeof(b));
	b.lim = lim;
	b.err = err;

	/* NULs are let through so that the field holding one is named. */
	root =
	    json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	if (root == NULL)
		return fail(err, 400, "invalid_json",
			    "body: not valid JSON (%s)", json_error_why(&je));
	if (!json_is_object(root)) {
		fail(err, 400, "invalid_json", "body: not a JSON object");
		goto fail;
	}
	if (find_fields(root, &f, err) != 0 || check_fields(&f, lim, err) != 0)
		goto fail;

	b.msg = g_mime_message_new(FALSE);
	if (set_from(&b, f.from) != 0 ||
	    add_recipients(&b, "to", f.to, GMIME_ADDRESS_TYPE_TO) != 0 ||
	    add_recipients(&b, "cc", f.cc, GMIME_ADDRESS_TYPE_CC) != 0 ||
	    add_recipients(&b, "bcc", f.bcc, -1) != 0 ||
	    set_reply_to(&b, f.reply_to) != 0)
		goto fail;
	if (f.subject != NULL)
		g_mime_message_set_subject(b.msg, json_string_value(f.subject),
					   "utf-8");
	now = now_ms();
	date = g_date_time_new_from_unix_utc(now / 1000);
	g_mime_message_set_date(b.msg, date);
	g_date_time_unref(date);
	id_new(id);
	msgid = xasprintf("%s@%s", id, b.domain);
	g_mime_message_set_message_id(b.msg, msgid);
	free(msgid);
	if (add_headers(&b, f.headers) != 0 || set_body(&b, &f) != 0)
		goto fail;

	mime = serialize(b.msg, &mime_len);
	if (mime_len > lim->max_message_bytes) {
		fail(err, 413, "too_large", "message: larger than %zu bytes",
		     lim->max_message_bytes);
		goto fail;
	}
	to_json = to_json_new(f.to);
	if (f.tags != NULL && json_array_size(f.tags) > 0)
		tags_json = json_dumps(f.tags, JSON_COMPACT);
	if (to_json == NULL || (f.tags != NULL && json_array_size(f.tags) > 0 &&
				tags_json == NULL))
		fatalx("json_dumps: out of memory");

	m = xcalloc(1, sizeof(*m));
	memcpy(m->id, id, sizeof(id));
	m->status = MSG_QUEUED;
	m->mail_from = b.mail_from;
	m->rcpt = b.rcpt;
	m->nrcpt = b.nrcpt;
	m->header_from = xstrdup(json_string_value(f.from));
	m->subject = xstrdup(f.subject ? json_string_value(f.subject) : "");
	m->to_json = to_json;
	m->tags_json = tags_json;
	m->mime = mime;
	m->mime_len = mime_len;
	m->created_ms = m->updated_ms = now;
	m->tried = xstrdup("");
	g_object_unref(b.msg);
	json_decref(root);
	*out = m;
	return 0;

fail:
	free(mime);
	free(to_json);
	free(tags_json);
	for (i = 0; i < b.nrcpt; i++)
		free(b.rcpt[i]);
	free(b.rcpt);
	free(b.mail_from);
	if (b.msg != NULL)
		g_object_unref(b.msg);
	json_decref(root);
	return -1;
}
