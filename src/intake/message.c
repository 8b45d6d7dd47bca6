/*
 * From a JSON submission to a stored message, built for throughput: at
 * 20,000 messages a second the builder must cost a few microseconds, so it
 * makes one pass of checks over the raw bytes, one parse into a small tree
 * and one composed output buffer, with no per-message object graph.
 *
 * JSON is parsed by cJSON, which is fast but lenient, so the strictness
 * jansson gave is restored around it: a pre-scan of the raw body refuses
 * invalid UTF-8, raw NUL and control bytes and anything non-ASCII outside
 * strings, and finds \u0000 escapes (stepping over other escapes, so
 * "\\u0000" is text); a walk of the tree refuses duplicate keys in every
 * object, NUL in keys and numbers out of range.  cJSON would cut a string
 * at a decoded NUL, so a body holding \u0000 is parsed from a copy where
 * each such escape is swapped for U+FDD0, a noncharacter no body can
 * otherwise hold then (one that does is refused), and the checks read
 * that sentinel as NUL, so the field holding the NUL is still named.
 *
 * The message is then composed by hand into one malloc'd buffer that the
 * store takes: header block, folded at spaces to 78 columns where it can
 * and never past 998, then the body or the multipart tree.  GMime is kept
 * for what is subtle: RFC 2047 words for non-ASCII header text and names,
 * quoted-printable, IDN, and parsing the rare address that is more than
 * "Name <addr>" (quotes, dots, encoded words).  Everything bound for a
 * header is refused for CR, LF, NUL and other controls before composition,
 * so no field can inject a header; Bcc goes to the envelope only.
 *
 * Thread safety: message_from_json() may run on several threads at once.
 * It has no mutable state of its own except one mutex: cJSON 1.7 writes a
 * global error position on every parse (and reads the locale's decimal
 * point), so parses are serialized; they are the short part of the work.
 * GMime's parser and format options are made once in message_init() and
 * only read; the GMime functions called here work on the caller's own
 * objects, and GMime 3.2 locks its iconv cache and charset map.
 *
 * Errors never echo body bytes, except a short sanitized excerpt of a
 * field name.  On failure nothing stays allocated.  Allocation failure is
 * fatal (the x-allocators, and GLib's, abort).  Ownership: the cJSON tree
 * is owned by message_from_json() for the call and its strings are
 * borrowed; strings from GMime are g_free()d at once; everything handed
 * to the store is malloc'd here so store_message_free() can free() it.
 */
#include "intake/message.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "store/store.h"

#include <cjson/cJSON.h>
#include <gmime/gmime.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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

/* Parser and format options; read-only after message_init(). */
static GMimeParserOptions *parser_opts;
static GMimeFormatOptions *format_opts;

/* cJSON writes a global on every parse; see the top of the file. */
static pthread_mutex_t cjson_lock = PTHREAD_MUTEX_INITIALIZER;

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

static int
bad_json(struct message_error *err, const char *why)
{
	return fail(err, 400, "invalid_json", "body: not valid JSON (%s)", why);
}

/* A field name taken from the body, made printable and short. */
static const char *
safe_name(const char *s, size_t n, char *buf, size_t bufsz)
{
	return log_sanitize(s, n, buf, bufsz);
}

/*
 * The JSON pre-scan.  Returns NULL, or why the body is not JSON we take.
 * Sets *nul when a \u0000 escape is present and *mark when U+FDD0 is (as
 * bytes or as an escape).  Inside strings, runs of plain ASCII are
 * skipped eight bytes at a time.
 */
static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f; /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f; /* up to U+10FFFF */
	} else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* True when none of the 8 bytes is '"', '\\', < 0x20 or >= 0x80. */
static bool
plain8(const unsigned char *s)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t high = 0x8080808080808080ULL;
	uint64_t w, q, bs, ctl;

	memcpy(&w, s, 8);
	q = w ^ (ones * '"');
	bs = w ^ (ones * '\\');
	ctl = w - ones * 0x20; /* borrows into the high bit below 0x20 */
	return ((w | ((q - ones) & ~q) | ((bs - ones) & ~bs) | (ctl & ~w)) &
		high) == 0;
}

static const char *
json_prescan(const char *text, size_t n, bool *nul, bool *mark)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0, k;
	bool in_str = false;
	int cp, d, j;
	unsigned char c;

	*nul = *mark = false;
	while (i < n) {
		if (in_str) {
			while (i + 8 <= n && plain8(s + i))
				i += 8;
			if (i >= n)
				break;
		}
		c = s[i];
		if (c >= 0x80) {
			if (!in_str)
				return "syntax error";
			k = utf8_seq(s + i, n - i);
			if (k == 0)
				return "invalid UTF-8";
			if (k == 3 && memcmp(s + i, NUL_MARK, 3) == 0)
				*mark = true;
			i += k;
			continue;
		}
		if (c == '\0')
			return "NUL byte";
		if (!in_str) {
			if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
				return "syntax error";
			if (c == '"')
				in_str = true;
			i++;
			continue;
		}
		if (c < 0x20)
			return "syntax error";
		if (c == '"') {
			in_str = false;
			i++;
			continue;
		}
		if (c != '\\') {
			i++;
			continue;
		}
		/* An escape: step over it whole, so "\\u0000" is text. */
		if (i + 1 >= n)
			return "truncated";
		c = s[i + 1];
		if (c != 'u') {
			if (strchr("\"\\/bfnrt", c) == NULL || c == '\0')
				return "syntax error";
			i += 2;
			continue;
		}
		if (i + 6 > n)
			return "truncated";
		for (cp = 0, j = 2; j < 6; j++) {
			d = hexval(s[i + (size_t)j]);
			if (d < 0)
				return "syntax error";
			cp = cp * 16 + d;
		}
		if (cp == 0)
			*nul = true;
		else if (cp == NUL_MARK_CP)
			*mark = true;
		i += 6;
	}
	return in_str ? "truncated" : NULL;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Duplicate keys and (with nul) NUL in keys, in one object. */
static const char *
check_keys(const cJSON *obj, bool nul)
{
	const cJSON *c, *d;
	const char **keys;
	const char *why = NULL;
	size_t n = 0, i;

	for (c = obj->child; c != NULL; c = c->next) {
		if (nul && strstr(c->string, NUL_MARK) != NULL)
			return "NUL in a key";
		n++;
	}
	if (n <= 16) {
		for (c = obj->child; c != NULL; c = c->next)
			for (d = c->next; d != NULL; d = d->next)
				if (strcmp(c->string, d->string) == 0)
					return "duplicate key";
		return NULL;
	}
	/* Large objects: sort, so an attacker's object costs n log n. */
	keys = xreallocarray(NULL, n, sizeof(*keys));
	for (i = 0, c = obj->child; c != NULL; c = c->next)
		keys[i++] = c->string;
	qsort(keys, n, sizeof(*keys), cmp_str);
	for (i = 1; i < n; i++)
		if (strcmp(keys[i - 1], keys[i]) == 0) {
			why = "duplicate key";
			break;
		}
	free(keys);
	return why;
}

/* What jansson refused while parsing and cJSON does not; depth <= 1000. */
static const char *
json_walk(const cJSON *v, bool nul)
{
	const cJSON *c;
	const char *why;

	if (cJSON_IsNumber(v) && !isfinite(v->valuedouble))
		return "number out of range";
	if (cJSON_IsObject(v) && (why = check_keys(v, nul)) != NULL)
		return why;
	for (c = v->child; c != NULL; c = c->next)
		if ((why = json_walk(c, nul)) != NULL)
			return why;
	return NULL;
}

/*
 * Parses the body into a new tree in *root, with all the strictness
 * above; sets *nul when NUL_MARK stands for NUL in the tree.
 */
static int
json_parse(const char *json, size_t len, cJSON **root, bool *nul,
	   struct message_error *err)
{
	const char *why, *end = NULL;
	char *copy = NULL;
	const char *text = json;
	bool mark;
	size_t i;

	*root = NULL;
	why = json_prescan(json, len, nul, &mark);
	if (why != NULL)
		return bad_json(err, why);
	if (*nul) {
		/* Same length: each "\u0000" becomes "\uFDD0" in a copy. */
		if (mark)
			return bad_json(err, "NUL byte");
		copy = xmalloc(len + 1);
		memcpy(copy, json, len);
		copy[len] = '\0';
		for (i = 0; i + 6 <= len; i++) {
			if (copy[i] != '\\')
				continue;
			if (memcmp(copy + i + 1, "u0000", 5) == 0)
				memcpy(copy + i + 2, "FDD0", 4);
			i++; /* step over the escaped character */
		}
		text = copy;
	}
	pthread_mutex_lock(&cjson_lock);
	*root = cJSON_ParseWithLengthOpts(text, len, &end, false);
	pthread_mutex_unlock(&cjson_lock);
	if (*root == NULL) {
		free(copy);
		return bad_json(err, "syntax error");
	}
	for (i = (size_t)(end - text); i < len; i++)
		if (!strchr(" \t\r\n", text[i]) || text[i] == '\0')
			break;
	free(copy);
	if (i < len)
		return bad_json(err, "trailing bytes after the object");
	if (!cJSON_IsObject(*root))
		return fail(err, 400, "invalid_json",
			    "body: not a JSON object");
	why = json_walk(*root, *nul);
	if (why != NULL)
		return bad_json(err, why);
	return 0;
}

/* Returns the string of v (NULL when v is not a string) and its length. */
static const char *
str_of(const cJSON *v, size_t *n)
{
	*n = 0;
	if (!cJSON_IsString(v) || v->valuestring == NULL)
		return NULL;
	*n = strlen(v->valuestring);
	return v->valuestring;
}

/* True when s holds a NUL that the parse had to stand in for. */
static bool
has_nul(const struct build *b, const char *s, size_t n)
{
	return b->nul && memmem(s, n, NUL_MARK, 3) != NULL;
}

/*
 * Checks a value bound for a header: valid UTF-8 with no NUL, CR, LF or
 * other control character, and at most max bytes.
 */
static int
check_header_value(const struct build *b, const char *field, const char *s,
		   size_t n, size_t max)
{
	size_t i;
	unsigned char c;

	if (n > max)
		return invalid(b->err, field, "too long");
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '\0' || (b->nul && c == 0xef && i + 2 < n &&
				  memcmp(s + i, NUL_MARK, 3) == 0))
			return invalid(b->err, field, "contains NUL");
		if (c == '\r' || c == '\n')
			return invalid(b->err, field, "contains CR or LF");
		if (c < 0x20 || c == 0x7f)
			return invalid(b->err, field,
				       "contains a control character");
	}
	if (!g_utf8_validate_len(s, n, NULL))
		return invalid(b->err, field, "not valid UTF-8");
	return 0;
}
static bool
is_atext(unsigned char c)
{
	if (c >= 0x80) /* UTF-8, already valid (the pre-scan checked it) */
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
 * A display name that can be written as it is: words of ASCII atext (or
 * UTF-8, for the parse) separated by single spaces, with no encoded-word
 * look-alike.  Anything else (quotes, dots, doubled spaces, "=?") goes
 * through GMime's parser, so that it is read the way a mail reader would.
 */
static bool
plain_phrase(const char *s, size_t n, bool allow_8bit)
{
	size_t i;
	unsigned char c;

	if (n == 0 || s[0] == ' ' || s[n - 1] == ' ')
		return false;
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == ' ') {
			if (s[i + 1] == ' ')
				return false;
		} else if (c >= 0x80) {
			if (!allow_8bit)
				return false;
		} else if (!is_atext(c))
			return false;
		else if (c == '=' && i + 1 < n && s[i + 1] == '?')
			return false;
	}
	return true;
}

/* The slow path: GMime's address parser, then the same checks. */
static int
parse_mailbox_gmime(const struct build *b, const char *field, const char *s,
		    size_t n, struct mbox *mb)
{
	InternetAddressList *list = NULL;
	InternetAddress *ia;
	const char *name, *addr;
	char *copy;
	size_t i;
	int rc = -1;

	/* GMime wants a C string; s is NUL-free (checked). */
	copy = xstrndup(s, n);
	list = internet_address_list_parse(parser_opts, copy);
	free(copy);
	if (list == NULL || internet_address_list_length(list) != 1) {
		invalid(b->err, field, "not a valid address");
		goto fail;
	}
	ia = internet_address_list_get_address(list, 0);
	if (!INTERNET_ADDRESS_IS_MAILBOX(ia)) {
		invalid(b->err, field, "not a valid address (a group)");
		goto fail;
	}
	addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
	if (addr == NULL || !addr_spec_ok(addr) || !given_matches(s, n, addr)) {
		invalid(b->err, field, "not a valid address");
		goto fail;
	}
	name = internet_address_get_name(ia);
	/* An encoded-word may have smuggled a control character in. */
	for (i = 0; name != NULL && name[i] != '\0'; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) {
			invalid(b->err, field, "contains a control character");
			goto fail;
		}
	if (name != NULL && !g_utf8_validate(name, -1, NULL)) {
		invalid(b->err, field, "not valid UTF-8");
		goto fail;
	}
	snprintf(mb->addr, sizeof(mb->addr), "%s", addr);
	mb->name = name != NULL && name[0] != '\0' ? xstrdup(name) : NULL;
	rc = 0;
fail:
	if (list != NULL)
		g_object_unref(list);
	return rc;
}

/*
 * Parses one address, the way the caller wrote it in field, into mb.  A
 * display name is allowed (it shows in the header; the envelope takes
 * only the addr-spec).  The common shapes, "addr" and "Plain Name
 * <addr>", are read here; the rest by GMime.
 */
static int
parse_mailbox(const struct build *b, const char *field, const cJSON *v,
	      struct mbox *mb)
{
	const char *s, *lt, *gt, *p, *e;
	size_t n;

	mb->addr[0] = '\0';
	mb->name = NULL;
	s = str_of(v, &n);
	if (s == NULL)
		return invalid(b->err, field, "must be a string");
	if (check_header_value(b, field, s, n, MAX_ADDRESS_LEN) != 0)
		return -1;
	if (!shape_ok(s, n))
		return invalid(b->err, field, "not a valid address");
	if (memchr(s, '"', n) != NULL)
		return parse_mailbox_gmime(b, field, s, n, mb);
	lt = memchr(s, '<', n);
	if (lt != NULL) {
		/* shape_ok(): one '>' after the '<', then only spaces. */
		gt = memchr(lt, '>', n - (size_t)(lt - s));
		p = s;
		e = lt;
		while (p < e && *p == ' ')
			p++;
		while (e > p && e[-1] == ' ')
			e--;
		if (p < e && !plain_phrase(p, (size_t)(e - p), true))
			return parse_mailbox_gmime(b, field, s, n, mb);
		s = lt + 1;
		n = (size_t)(gt - s);
	} else {
		p = e = NULL;
		while (n > 0 && *s == ' ') {
			s++;
			n--;
		}
		while (n > 0 && s[n - 1] == ' ')
			n--;
	}
	if (n >= sizeof(mb->addr))
		return invalid(b->err, field, "not a valid address");
	memcpy(mb->addr, s, n);
	mb->addr[n] = '\0';
	if (!addr_spec_ok(mb->addr))
		return invalid(b->err, field, "not a valid address");
	if (p < e)
		mb->name = xstrndup(p, (size_t)(e - p));
	return 0;
}

static bool
is_ascii(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return false;
	return true;
}

/*
 * The addr-spec with an internationalized domain in its ASCII (punycode)
 * form, for the envelope and the headers; malloc'd.  IDN conversion is
 * costly, so ASCII skips it.
 */
static char *
addr_ascii_domain(const struct mbox *mb)
{
	InternetAddressMailbox *ia;
	const char *at = strrchr(mb->addr, '@');
	char *out;

	if (at == NULL || is_ascii(at, strlen(at)))
		return xstrdup(mb->addr);
	ia = INTERNET_ADDRESS_MAILBOX(
	    internet_address_mailbox_new(NULL, mb->addr));
	out = xstrdup(internet_address_mailbox_get_idn_addr(ia));
	g_object_unref(ia);
	return out;
}

/* Adds an envelope recipient unless it is already there; takes addr. */
static void
rcpt_take(struct build *b, char *addr)
{
	size_t i;

	for (i = 0; i < b->nrcpt; i++)
		if (strcasecmp(b->rcpt[i], addr) == 0) {
			free(addr);
			return;
		}
	if (b->nrcpt == b->rcpt_cap) {
		b->rcpt_cap = b->rcpt_cap ? 2 * b->rcpt_cap : 4;
		b->rcpt = xreallocarray(b->rcpt, b->rcpt_cap, sizeof(*b->rcpt));
	}
	b->rcpt[b->nrcpt++] = addr;
}

/* Base64 of n bytes into out, no line breaks. */
static void
b64_add(struct buf *out, const unsigned char *d, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;
	char *o;
	uint32_t v;

	xbuf_reserve(out, (n + 2) / 3 * 4);
	o = out->p + out->len;
	for (i = 0; i + 3 <= n; i += 3) {
		v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = tab[(v >> 6) & 63];
		*o++ = tab[v & 63];
	}
	if (i < n) {
		v = (uint32_t)d[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)d[i + 1] << 8;
		*o++ = tab[v >> 18];
		*o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	out->len = (size_t)(o - out->p);
	out->p[out->len] = '\0';
}

/*
 * RFC 2047 "B" words of UTF-8 text, space separated, each at most 45
 * bytes of text (72 columns) and never splitting a character: the
 * fallback for text that cannot otherwise fit in 998-byte lines.
 */
static void
encode_b(struct buf *out, const char *s, size_t n)
{
	size_t k;

	while (n > 0) {
		k = n > 45 ? 45 : n;
		while (k < n && k > 1 && ((unsigned char)s[k] & 0xc0) == 0x80)
			k--;
		xbuf_adds(out, "=?utf-8?b?");
		b64_add(out, (const unsigned char *)s, k);
		xbuf_adds(out, "?=");
		s += k;
		n -= k;
		if (n > 0)
			xbuf_addc(out, ' ');
	}
}

/*
 * Appends v to out at column *col, folded before a space once a line
 * would pass FOLD_AT columns.  Returns -1 when a run without a space
 * would make a line longer than MAX_LINE (out is then half written).
 */
static int
fold_add(struct buf *out, size_t *col, const char *v, size_t n)
{
	size_t i = 0, j;

	while (i < n) {
		j = i + 1;
		while (j < n && v[j] != ' ')
			j++;
		/*
		 * A word starting with a space may go to a new line, unless
		 * the line so far is only white space (no blank lines).
		 */
		if (v[i] == ' ' && j - i > 1 && *col > 1 &&
		    *col + (j - i) > FOLD_AT) {
			xbuf_add(out, "\r\n", 2);
			*col = 0;
		}
		if (*col + (j - i) > MAX_LINE)
			return -1;
		xbuf_add(out, v + i, j - i);
		*col += j - i;
		i = j;
	}
	return 0;
}

/*
 * Appends "name: value" and CRLF to out, folded.  Returns -1, leaving out
 * as it was, when it cannot fold into lines of MAX_LINE.
 */
static int
hdr_add(struct buf *out, const char *name, const char *v, size_t n)
{
	size_t start = out->len, col;

	xbuf_adds(out, name);
	xbuf_add(out, ": ", 2);
	col = strlen(name) + 2;
	if (fold_add(out, &col, v, n) != 0) {
		out->len = start;
		out->p[start] = '\0';
		return -1;
	}
	xbuf_add(out, "\r\n", 2);
	return 0;
}

/*
 * Unstructured text (subject, custom header values) as a folded header:
 * as it is when ASCII, in RFC 2047 words from GMime when not, and in our
 * own B words when it still cannot fit.  encode_look_alike also encodes
 * ASCII that holds "=?", which a reader would otherwise try to decode.
 */
static void
hdr_add_text(struct build *b, const char *name, const char *s, size_t n,
	     bool encode_look_alike)
{
	char *enc, *copy;

	if (is_ascii(s, n)) {
		if ((!encode_look_alike || memmem(s, n, "=?", 2) == NULL) &&
		    hdr_add(&b->out, name, s, n) == 0)
			return;
	} else {
		copy = xstrndup(s, n);
		enc =
		    g_mime_utils_header_encode_text(format_opts, copy, "utf-8");
		free(copy);
		if (enc != NULL &&
		    hdr_add(&b->out, name, enc, strlen(enc)) == 0) {
			g_free(enc);
			return;
		}
		g_free(enc);
	}
	buf_reset(&b->tmp);
	encode_b(&b->tmp, s, n);
	if (hdr_add(&b->out, name, b->tmp.p, b->tmp.len) != 0)
		fatalx("message: B words of %zu bytes do not fold", n);
}

/*
 * One mailbox as header text into out: the bare address, "Name <addr>"
 * for a plain name, a quoted string for other ASCII, RFC 2047 words for
 * the rest and for ASCII that looks like an encoded-word (or always, with
 * force_b).
 */
static void
mailbox_format(struct buf *out, const struct mbox *mb, bool force_b)
{
	char *addr, *enc;
	size_t i, n;

	addr = addr_ascii_domain(mb);
	if (mb->name == NULL) {
		xbuf_adds(out, addr);
		free(addr);
		return;
	}
	n = strlen(mb->name);
	if (force_b)
		encode_b(out, mb->name, n);
	else if (plain_phrase(mb->name, n, false))
		xbuf_add(out, mb->name, n);
	else if (is_ascii(mb->name, n) && strstr(mb->name, "=?") != NULL)
		encode_b(out, mb->name, n); /* readers decode even in quotes */
	else if (is_ascii(mb->name, n)) {
		xbuf_addc(out, '"');
		for (i = 0; i < n; i++) {
			if (mb->name[i] == '"' || mb->name[i] == '\\')
				xbuf_addc(out, '\\');
			xbuf_addc(out, mb->name[i]);
		}
		xbuf_addc(out, '"');
	} else {
		enc = g_mime_utils_header_encode_phrase(format_opts, mb->name,
							"utf-8");
		if (enc != NULL)
			xbuf_adds(out, enc);
		else
			encode_b(out, mb->name, n);
		g_free(enc);
	}
	xbuf_add(out, " <", 2);
	xbuf_adds(out, addr);
	xbuf_addc(out, '>');
	free(addr);
}

/*
 * Writes an address header of n mailboxes, folded between mailboxes where
 * it can be, so that a display name stays on one line.
 */
static void
hdr_add_mailboxes(struct build *b, const char *name, const struct mbox *mb,
		  size_t n)
{
	size_t i, start = b->out.len, col;
	int force_b;

	for (force_b = 0; force_b < 2; force_b++) {
		xbuf_adds(&b->out, name);
		xbuf_addc(&b->out, ':');
		col = strlen(name) + 1;
		for (i = 0; i < n; i++) {
			buf_reset(&b->tmp);
			mailbox_format(&b->tmp, &mb[i], force_b);
			if (i > 0) {
				xbuf_addc(&b->out, ',');
				col++;
				if (col + 1 + b->tmp.len > FOLD_AT) {
					xbuf_add(&b->out, "\r\n", 2);
					col = 0;
				}
			}
			xbuf_addc(&b->out, ' ');
			col++;
			if (fold_add(&b->out, &col, b->tmp.p, b->tmp.len) != 0)
				break;
		}
		if (i == n) {
			xbuf_add(&b->out, "\r\n", 2);
			return;
		}
		b->out.len = start;
		b->out.p[start] = '\0';
	}
	fatalx("message: %s header does not fold", name);
}

static void
mboxes_free(struct mbox *mb, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(mb[i].name);
	free(mb);
}

/* The number of addresses in a to/cc/bcc field: a string or an array. */
static int
count_addresses(const struct build *b, const char *field, const cJSON *v,
		size_t *n)
{
	*n = 0;
	if (v == NULL)
		return 0;
	if (cJSON_IsString(v)) {
		*n = 1;
		return 0;
	}
	if (!cJSON_IsArray(v))
		return invalid(b->err, field,
			       "must be a string or an array of strings");
	*n = (size_t)cJSON_GetArraySize(v);
	return 0;
}

/*
 * Adds every address of a to/cc/bcc field to the envelope and, unless
 * hname is NULL (bcc), writes that header.
 */
static int
add_recipients(struct build *b, const char *fname, const cJSON *v,
	       const char *hname)
{
	struct mbox *mb;
	char field[64];
	size_t i, n = 0;
	const cJSON *e;
	int rc = -1;

	if (v == NULL)
		return 0;
	if (count_addresses(b, fname, v, &n) != 0)
		return -1;
	mb = xcalloc(n ? n : 1, sizeof(*mb));
	e = cJSON_IsArray(v) ? v->child : v;
	for (i = 0; i < n; i++, e = e->next) {
		if (cJSON_IsArray(v))
			snprintf(field, sizeof(field), "%s[%zu]", fname, i);
		else
			snprintf(field, sizeof(field), "%s", fname);
		if (parse_mailbox(b, field, e, &mb[i]) != 0)
			goto fail;
		rcpt_take(b, addr_ascii_domain(&mb[i]));
	}
	if (hname != NULL && n > 0)
		hdr_add_mailboxes(b, hname, mb, n);
	rc = 0;
fail:
	mboxes_free(mb, n);
	return rc;
}

static int
set_from(struct build *b, const cJSON *v)
{
	struct mbox *mb = xcalloc(1, sizeof(*mb));
	const char *at;
	char *addr;

	if (parse_mailbox(b, "from", v, mb) != 0) {
		mboxes_free(mb, 1);
		return -1;
	}
	addr = addr_ascii_domain(mb);
	at = strrchr(addr, '@');
	/* addr_spec_ok() saw an '@'; the IDN form keeps it. */
	if (at == NULL || strlen(at + 1) >= sizeof(b->domain) ||
	    !domain_ok(at + 1, strlen(at + 1))) {
		free(addr);
		mboxes_free(mb, 1);
		return invalid(b->err, "from", "not a valid address");
	}
	snprintf(b->domain, sizeof(b->domain), "%s", at + 1);
	b->mail_from = addr;
	hdr_add_mailboxes(b, "From", mb, 1);
	mboxes_free(mb, 1);
	return 0;
}

static int
set_reply_to(struct build *b, const cJSON *v)
{
	struct mbox *mb;

	if (v == NULL)
		return 0;
	mb = xcalloc(1, sizeof(*mb));
	if (parse_mailbox(b, "reply_to", v, mb) != 0) {
		mboxes_free(mb, 1);
		return -1;
	}
	hdr_add_mailboxes(b, "Reply-To", mb, 1);
	mboxes_free(mb, 1);
	return 0;
}

/* Headers the relay writes itself, compared without case. */
static bool
header_forbidden(const char *name)
{
	/* Date and Message-ID may be given (checked by user_header_ok);
	 * the relay adds them only when missing. */
	static const char *const exact[] = {
	    "from",    "to",           "cc",       "bcc",         "reply-to",
	    "subject", "mime-version", "received", "return-path", "sender",
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
check_header_name(const struct build *b, const char *field, const char *s,
		  size_t n)
{
	size_t i;

	if (n == 0 || n > MAX_HEADER_NAME_LEN)
		return invalid(b->err, field, "not a valid header name");
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 ||
		    s[i] == ':')
			return invalid(b->err, field,
				       "not a valid header name");
	if (header_forbidden(s))
		return invalid(b->err, field, "set by the relay, not allowed");
	return 0;
}

/*
 * A Message-ID given by the client: one msg-id, "<left@right>", printable
 * ASCII with no space, '<', '>' or second '@', and at most 250 bytes.
 */
static bool
msgid_valid(const char *s, size_t n)
{
	size_t i, at = 0;

	if (n < 5 || n > 250 || s[0] != '<' || s[n - 1] != '>')
		return false;
	for (i = 1; i + 1 < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 33 || c > 126 || c == '<' || c == '>')
			return false;
		if (c == '@') {
			if (at != 0 || i == 1 || i + 2 == n)
				return false;
			at = i;
		}
	}
	return at != 0;
}

/* A Date given by the client must be one GMime can read as a date. */
static bool
date_valid(const char *s)
{
	GDateTime *dt = g_mime_utils_header_decode_date(s);

	if (dt == NULL)
		return false;
	g_date_time_unref(dt);
	return true;
}

/*
 * Looks for a header among the client's, without case.  Returns it (NULL
 * when absent) or refuses a name given twice in different cases.
 */
static int
user_header(struct build *b, const cJSON *obj, const char *name,
	    const cJSON **out)
{
	const cJSON *v;
	char field[64];

	*out = NULL;
	if (obj == NULL)
		return 0;
	for (v = obj->child; v != NULL; v = v->next) {
		if (v->string == NULL || strcasecmp(v->string, name) != 0)
			continue;
		if (*out != NULL) {
			snprintf(field, sizeof(field), "headers.%s", name);
			return invalid(b->err, field, "given twice");
		}
		*out = v;
	}
	return 0;
}

/* The value checks of Date and Message-ID beyond those of any header. */
static int
user_header_ok(struct build *b, const char *field, const char *name,
	       const char *val, size_t n)
{
	if (strcasecmp(name, "message-id") == 0 && !msgid_valid(val, n))
		return invalid(b->err, field,
			       "not a Message-ID of the form <left@right>");
	/* val is NUL-terminated (cJSON) and holds no NUL (checked before). */
	if (strcasecmp(name, "date") == 0 && !date_valid(val))
		return invalid(b->err, field, "not an RFC 5322 date");
	return 0;
}

static int
add_headers(struct build *b, const cJSON *obj)
{
	const cJSON *v;
	const char *val;
	char field[96], kbuf[48];
	size_t n, count = 0;

	if (obj == NULL)
		return 0;
	for (v = obj->child; v != NULL; v = v->next)
		count++;
	if (count > MAX_HEADERS)
		return invalid(b->err, "headers", "too many headers");
	for (v = obj->child; v != NULL; v = v->next) {
		snprintf(field, sizeof(field), "headers.%s",
			 safe_name(v->string, strlen(v->string), kbuf,
				   sizeof(kbuf)));
		/* The walk refused NUL in keys, so strlen() is the length. */
		if (check_header_name(b, field, v->string, strlen(v->string)) !=
		    0)
			return -1;
		val = str_of(v, &n);
		if (val == NULL)
			return invalid(b->err, field, "must be a string");
		if (check_header_value(b, field, val, n,
				       MAX_HEADER_VALUE_LEN) != 0 ||
		    user_header_ok(b, field, v->string, val, n) != 0)
			return -1;
		hdr_add_text(b, v->string, val, n, false);
	}
	return 0;
}

static bool
is_ctl(unsigned char c)
{
	return c < 0x20 && c != '\t' && c != '\r' && c != '\n';
}

/*
 * The number of bytes of s[0..n) with the high bit set, a word at a time;
 * *ctl says whether a control character other than TAB, CR and LF is
 * there (such a byte is written quoted-printable, see text_part).
 */
static size_t
count_high(const char *s, size_t n, bool *ctl)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t mask = 0x8080808080808080ULL;
	uint64_t w;
	size_t i = 0, j, high = 0;

	*ctl = false;
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, s + i, 8);
		if (w & mask)
			high += (size_t)__builtin_popcountll(w & mask);
		/* Some byte below 0x20: look closer (line ends, mostly). */
		if (!*ctl && ((w - ones * 0x20) & ~w & mask) != 0)
			for (j = 0; j < 8; j++)
				*ctl |= is_ctl((unsigned char)s[i + j]);
	}
	for (; i < n; i++) {
		high += (unsigned char)s[i] >> 7;
		*ctl |= is_ctl((unsigned char)s[i]);
	}
	return high;
}

/* The longest line of s[0..n), split at CR or LF. */
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
 * Appends s with every line end (CRLF, bare CR, LF) made eol; the common
 * case, no CR at all, copies the runs between line feeds whole.
 */
static void
add_lines(struct buf *out, const char *s, size_t n, const char *eol)
{
	const char *p = s, *end = s + n, *nl;
	size_t i, el = strlen(eol);

	if (memchr(s, '\r', n) == NULL) {
		while (p < end) {
			nl = memchr(p, '\n', (size_t)(end - p));
			if (nl == NULL) {
				xbuf_add(out, p, (size_t)(end - p));
				break;
			}
			xbuf_add(out, p, (size_t)(nl - p));
			xbuf_add(out, eol, el);
			p = nl + 1;
		}
		return;
	}
	for (i = 0; i < n; i++) {
		if (s[i] == '\r' || s[i] == '\n') {
			if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
				i++;
			xbuf_add(out, eol, el);
		} else
			xbuf_addc(out, s[i]);
	}
}

/* Base64 in lines of 76 columns, each ending in CRLF. */
static void
b64_lines(struct buf *out, const unsigned char *d, size_t n)
{
	size_t k;

	while (n > 0) {
		k = n > 57 ? 57 : n;
		b64_add(out, d, k);
		xbuf_add(out, "\r\n", 2);
		d += k;
		n -= k;
	}
}

static void
end_with_crlf(struct buf *out)
{
	if (out->len < 2 || out->p[out->len - 1] != '\n')
		xbuf_add(out, "\r\n", 2);
}

/*
 * A text part, headers and content.  The encoding follows the content:
 * 7bit for short-lined ASCII without control characters, else
 * quoted-printable, unless more than about a sixth of the bytes are
 * 8-bit, where base64 is shorter.  Control characters go quoted-printable
 * (=01, three bytes) rather than raw so that no JSON escape (\u0001, six
 * bytes) shrinks by more than half into the message: the HTTP body cap
 * rests on that (message_json_max_bytes).  Line
 * ends become CRLF; base64 encodes the text in that canonical form, and
 * quoted-printable (GMime's encoder) is fed LF and its LFs made CRLF.
 */
static void
text_part(struct build *b, struct buf *out, const char *subtype, const char *s,
	  size_t n)
{
	GMimeEncoding enc;
	size_t high, olen;
	bool ctl;
	char *q;

	high = count_high(s, n, &ctl);
	xbuf_adds(out, "Content-Type: text/");
	xbuf_adds(out, subtype);
	xbuf_adds(out, high ? "; charset=utf-8\r\n" : "; charset=us-ascii\r\n");
	if (high == 0 && !ctl && longest_line(s, n) <= MAX_LINE) {
		xbuf_adds(out, "Content-Transfer-Encoding: 7bit\r\n\r\n");
		add_lines(out, s, n, "\r\n");

	} else if (high * 6 > n) {
		xbuf_adds(out, "Content-Transfer-Encoding: base64\r\n\r\n");
		buf_reset(&b->tmp);
		add_lines(&b->tmp, s, n, "\r\n");
		b64_lines(out, (const unsigned char *)b->tmp.p, b->tmp.len);
	} else {
		xbuf_adds(
		    out, "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
		buf_reset(&b->tmp);
		add_lines(&b->tmp, s, n, "\n");
		g_mime_encoding_init_encode(
		    &enc, GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
		q = xmalloc(g_mime_encoding_outlen(&enc, b->tmp.len) + 1);
		olen = g_mime_encoding_flush(&enc, b->tmp.p, b->tmp.len, q);
		add_lines(out, q, olen, "\r\n");
		free(q);
	}
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
 * Strict base64 (RFC 4648 alphabet) into a new malloc'd buffer of *len
 * bytes: CR and LF are skipped (wrapped input is common), padding is
 * optional but only at the end, anything else is an error.  NULL when
 * malformed.
 */
static unsigned char *
b64_decode(const char *s, size_t n, size_t *len)
{
	unsigned char *d;
	uint32_t acc = 0;
	size_t i, o = 0, k = 0, pad = 0;
	int v;

	d = xmalloc(n / 4 * 3 + 3);
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
			d[o++] = (unsigned char)(acc >> 16);
			d[o++] = (unsigned char)(acc >> 8);
			d[o++] = (unsigned char)acc;
			acc = 0;
			k = 0;
		}
	}
	/* k data characters left over: 2 -> 1 byte, 3 -> 2 bytes. */
	if (k == 1 || pad > 2 || (pad > 0 && k + pad != 4))
		goto fail;
	if (k == 2)
		d[o++] = (unsigned char)(acc >> 4);
	else if (k == 3) {
		d[o++] = (unsigned char)(acc >> 10);
		d[o++] = (unsigned char)(acc >> 2);
	}
	*len = o;
	return d;
fail:
	free(d);
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

static bool
attr_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || strchr("!#$&+-.^_`|~", c) != NULL;
}

/* The column out is at: bytes since its last line feed. */
static size_t
column(const struct buf *out)
{
	const char *nl = memrchr(out->p, '\n', out->len);

	return nl == NULL ? out->len : out->len - (size_t)(nl + 1 - out->p);
}

/* "; " and a parameter, on a new folded line when it would pass 78. */
static void
param_start(struct buf *out, size_t len)
{
	if (column(out) + 2 + len > FOLD_AT)
		xbuf_add(out, ";\r\n\t", 4);
	else
		xbuf_add(out, "; ", 2);
}

/*
 * A file name parameter: a token as it is, other ASCII as a quoted string,
 * anything else by RFC 2231 (utf-8, percent-encoded), in continuations of
 * at most 60 columns when long.
 */
static void
param_add(struct buf *out, const char *attr, const char *v, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	struct buf enc;
	size_t i, k, seg, part;
	char head[32];

	buf_init(&enc, SIZE_MAX);
	for (i = 0; i < n && is_token((unsigned char)v[i]); i++)
		;
	if (i == n) {
		param_start(out, strlen(attr) + 1 + n);
		xbuf_adds(out, attr);
		xbuf_addc(out, '=');
		xbuf_add(out, v, n);
		return;
	}
	if (is_ascii(v, n)) {
		param_start(out, strlen(attr) + 3 + n);
		xbuf_adds(out, attr);
		xbuf_add(out, "=\"", 2);
		for (i = 0; i < n; i++) {
			if (v[i] == '"' || v[i] == '\\')
				xbuf_addc(out, '\\');
			xbuf_addc(out, v[i]);
		}
		xbuf_addc(out, '"');
		return;
	}
	xbuf_adds(&enc, "utf-8''");
	for (i = 0; i < n; i++) {
		if (attr_char((unsigned char)v[i]))
			xbuf_addc(&enc, v[i]);
		else {
			xbuf_addc(&enc, '%');
			xbuf_addc(&enc, hex[(unsigned char)v[i] >> 4]);
			xbuf_addc(&enc, hex[(unsigned char)v[i] & 15]);
		}
	}
	if (enc.len <= 60) {
		param_start(out, strlen(attr) + 2 + enc.len);
		xbuf_adds(out, attr);
		xbuf_add(out, "*=", 2);
		xbuf_add(out, enc.p, enc.len);
		buf_cleanup(&enc);
		return;
	}
	for (k = 0, part = 0; k < enc.len; k += seg, part++) {
		seg = enc.len - k > 60 ? 60 : enc.len - k;
		/* Never split a %XX triple. */
		if (k + seg < enc.len && enc.p[k + seg - 1] == '%')
			seg -= 1;
		else if (k + seg < enc.len && enc.p[k + seg - 2] == '%')
			seg -= 2;
		snprintf(head, sizeof(head), "%s*%zu*=", attr, part);
		xbuf_add(out, ";\r\n\t", 4);
		xbuf_adds(out, head);
		xbuf_add(out, enc.p + k, seg);
	}
	buf_cleanup(&enc);
}

/* Checks one attachment object and appends its part to out. */
static int
attachment_add(struct build *b, size_t idx, const cJSON *a, struct buf *out)
{
	const char *key, *fname = NULL, *ctype = "application/octet-stream";
	const char *b64 = NULL;
	char field[96], kbuf[32];
	size_t fn = 0, cn = strlen(ctype), bn = 0, slash = 11, dlen = 0;
	unsigned char *data;
	const cJSON *v;

	snprintf(field, sizeof(field), "attachments[%zu]", idx);
	if (!cJSON_IsObject(a))
		return invalid(b->err, field, "must be an object");
	for (v = a->child; v != NULL; v = v->next) {
		key = v->string;
		snprintf(field, sizeof(field), "attachments[%zu].%s", idx,
			 safe_name(key, strlen(key), kbuf, sizeof(kbuf)));
		if (strcmp(key, "filename") != 0 &&
		    strcmp(key, "content_type") != 0 &&
		    strcmp(key, "content_base64") != 0)
			return invalid(b->err, field, "unknown field");
		if (cJSON_IsNull(v))
			continue;
		if (!cJSON_IsString(v))
			return invalid(b->err, field, "must be a string");
		if (strcmp(key, "filename") == 0)
			fname = str_of(v, &fn);
		else if (strcmp(key, "content_type") == 0)
			ctype = str_of(v, &cn);
		else
			b64 = str_of(v, &bn);
	}
	snprintf(field, sizeof(field), "attachments[%zu].filename", idx);
	if (fname == NULL)
		return fail(b->err, 400, "missing_field", "%s: required",
			    field);
	if (check_header_value(b, field, fname, fn, MAX_FILENAME_LEN) != 0)
		return -1;
	if (!filename_ok(fname, fn))
		return invalid(b->err, field, "not a valid file name");
	snprintf(field, sizeof(field), "attachments[%zu].content_type", idx);
	if (check_header_value(b, field, ctype, cn, MAX_CONTENT_TYPE_LEN) != 0)
		return -1;
	if (!content_type_ok(ctype, cn, &slash))
		return invalid(b->err, field, "not a valid content type");
	snprintf(field, sizeof(field), "attachments[%zu].content_base64", idx);
	if (b64 == NULL)
		return fail(b->err, 400, "missing_field", "%s: required",
			    field);
	data = b64_decode(b64, bn, &dlen);
	if (data == NULL)
		return invalid(b->err, field, "not valid base64");

	xbuf_adds(out, "Content-Type: ");
	xbuf_add(out, ctype, cn);
	param_add(out, "name", fname, fn);
	xbuf_adds(out, "\r\nContent-Transfer-Encoding: base64\r\n"
		       "Content-Disposition: attachment");
	param_add(out, "filename", fname, fn);
	xbuf_adds(out, "\r\n\r\n");
	b64_lines(out, data, dlen);
	free(data);
	return 0;
}

/*
 * A boundary no part can hold: quoted-printable and base64 never have
 * "=_", so only 7bit text could, and the message id in it is random.
 */
static int
boundary_make(struct build *b, const struct fields *f, char *out, size_t sz)
{
	const char *t[2] = {f->text ? f->text->valuestring : NULL,
			    f->html ? f->html->valuestring : NULL};
	int tries, i;
	bool clash;

	for (tries = 0; tries < 4; tries++) {
		if (tries == 0)
			snprintf(out, sz, "=_%s", b->id);
		else
			snprintf(out, sz, "=_%s_%016llx", b->id,
				 (unsigned long long)rand64());
		clash = false;
		for (i = 0; i < 2; i++)
			if (t[i] != NULL && strstr(t[i], out) != NULL)
				clash = true;
		if (!clash)
			return 0;
	}
	return invalid(b->err, "text", "holds the MIME boundary");
}

/*
 * The body: one text part, or multipart/alternative of text and html,
 * inside multipart/mixed when there are attachments.  Each multipart gets
 * the boundary with its own suffix.
 */
static int
add_body(struct build *b, const struct fields *f)
{
	struct buf *out = &b->out;
	char bnd[80];
	const cJSON *a;
	bool mixed, alt;
	size_t i, n;
	const char *s;

	mixed = f->attachments != NULL && f->attachments->child != NULL;
	alt = f->text != NULL && f->html != NULL;
	if ((mixed || alt) && boundary_make(b, f, bnd, sizeof(bnd)) != 0)
		return -1;
	xbuf_adds(out, "MIME-Version: 1.0\r\n");
	if (mixed) {
		xbuf_adds(out, "Content-Type: multipart/mixed; boundary=\"");
		xbuf_adds(out, bnd);
		xbuf_adds(out, "m\"\r\n\r\n--");
		xbuf_adds(out, bnd);
		xbuf_adds(out, "m\r\n");
	}
	if (alt) {
		xbuf_adds(out,
			  "Content-Type: multipart/alternative; boundary=\"");
		xbuf_adds(out, bnd);
		xbuf_adds(out, "a\"\r\n\r\n--");
		xbuf_adds(out, bnd);
		xbuf_adds(out, "a\r\n");
	}
	if (f->text != NULL) {
		s = str_of(f->text, &n);
		text_part(b, out, "plain", s, n);
	}
	if (alt) {
		xbuf_adds(out, "\r\n--");
		xbuf_adds(out, bnd);
		xbuf_adds(out, "a\r\n");
	}
	if (f->html != NULL) {
		s = str_of(f->html, &n);
		text_part(b, out, "html", s, n);
	}
	if (alt) {
		xbuf_adds(out, "\r\n--");
		xbuf_adds(out, bnd);
		xbuf_adds(out, "a--\r\n");
	}
	if (!mixed) {
		end_with_crlf(out);
		return 0;
	}
	for (i = 0, a = f->attachments->child; a != NULL; a = a->next, i++) {
		xbuf_adds(out, "\r\n--");
		xbuf_adds(out, bnd);
		xbuf_adds(out, "m\r\n");
		if (attachment_add(b, i, a, out) != 0)
			return -1;
	}
	xbuf_adds(out, "\r\n--");
	xbuf_adds(out, bnd);
	xbuf_adds(out, "m--\r\n");
	return 0;
}

static int
check_tags(const struct build *b, const cJSON *tags)
{
	char field[32];
	const cJSON *t;
	const char *s;
	size_t i, j, n;

	if (tags == NULL)
		return 0;
	if (cJSON_GetArraySize(tags) > MAX_TAGS)
		return invalid(b->err, "tags", "too many tags");
	for (i = 0, t = tags->child; t != NULL; t = t->next, i++) {
		snprintf(field, sizeof(field), "tags[%zu]", i);
		s = str_of(t, &n);
		if (s == NULL)
			return invalid(b->err, field, "must be a string");
		if (n == 0 || n > MAX_TAG_LEN)
			return invalid(b->err, field, "must be 1 to 128 bytes");
		for (j = 0; j < n; j++)
			if ((unsigned char)s[j] < 0x20 ||
			    (unsigned char)s[j] > 0x7e)
				return invalid(b->err, field,
					       "must be printable ASCII");
	}
	return 0;
}

/*
 * Finds every top-level field and checks its JSON type; null counts as
 * absent for the optional ones.
 */
static int
find_fields(const struct build *b, const cJSON *root, struct fields *f)
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
	cJSON *v;
	char kbuf[32];
	size_t i;

	memset(f, 0, sizeof(*f));
	for (v = root->child; v != NULL; v = v->next) {
		for (i = 0; i < ARRAY_SIZE(known); i++)
			if (strcmp(v->string, known[i].name) == 0)
				break;
		if (i == ARRAY_SIZE(known))
			return invalid(b->err,
				       safe_name(v->string, strlen(v->string),
						 kbuf, sizeof(kbuf)),
				       "unknown field");
		if (!cJSON_IsNull(v))
			*(cJSON **)((char *)f + known[i].off) = v;
	}
	if (f->from != NULL && !cJSON_IsString(f->from))
		return invalid(b->err, "from", "must be a string");
	if (f->reply_to != NULL && !cJSON_IsString(f->reply_to))
		return invalid(b->err, "reply_to", "must be a string");
	if (f->subject != NULL && !cJSON_IsString(f->subject))
		return invalid(b->err, "subject", "must be a string");
	if (f->text != NULL && !cJSON_IsString(f->text))
		return invalid(b->err, "text", "must be a string");
	if (f->html != NULL && !cJSON_IsString(f->html))
		return invalid(b->err, "html", "must be a string");
	if (f->headers != NULL && !cJSON_IsObject(f->headers))
		return invalid(b->err, "headers", "must be an object");
	if (f->attachments != NULL && !cJSON_IsArray(f->attachments))
		return invalid(b->err, "attachments", "must be an array");
	if (f->tags != NULL && !cJSON_IsArray(f->tags))
		return invalid(b->err, "tags", "must be an array");
	return 0;
}

/* The body bytes the message will carry at least (base64 is 3/4). */
static size_t
min_size(const struct fields *f)
{
	const cJSON *a, *c;
	size_t n = 0, len;

	if (f->text != NULL)
		n += strlen(f->text->valuestring);
	if (f->html != NULL)
		n += strlen(f->html->valuestring);
	for (a = f->attachments ? f->attachments->child : NULL; a != NULL;
	     a = a->next) {
		c = cJSON_GetObjectItemCaseSensitive(a, "content_base64");
		if (str_of(c, &len) != NULL)
			n += len / 4 * 3;
	}
	return n;
}

static int
check_fields(const struct build *b, const struct fields *f)
{
	size_t nto, ncc, nbcc, n;
	const char *s;

	if (f->from == NULL)
		return fail(b->err, 400, "missing_field", "from: required");
	if (count_addresses(b, "to", f->to, &nto) != 0 ||
	    count_addresses(b, "cc", f->cc, &ncc) != 0 ||
	    count_addresses(b, "bcc", f->bcc, &nbcc) != 0)
		return -1;
	if (nto + ncc + nbcc == 0)
		return fail(b->err, 400, "missing_field",
			    "to: at least one recipient is required");
	if (nto + ncc + nbcc > b->lim->max_recipients)
		return invalid(b->err, "to",
			       "too many recipients in to, cc and bcc");
	if (f->text == NULL && f->html == NULL)
		return fail(b->err, 400, "missing_field",
			    "text: text or html is required");
	s = str_of(f->text, &n);
	if (s != NULL && has_nul(b, s, n))
		return invalid(b->err, "text", "contains NUL");
	s = str_of(f->html, &n);
	if (s != NULL && has_nul(b, s, n))
		return invalid(b->err, "html", "contains NUL");
	s = str_of(f->subject, &n);
	if (s != NULL &&
	    check_header_value(b, "subject", s, n, MAX_SUBJECT_LEN) != 0)
		return -1;
	if (f->attachments != NULL &&
	    cJSON_GetArraySize(f->attachments) > MAX_ATTACHMENTS)
		return invalid(b->err, "attachments", "too many attachments");
	if (check_tags(b, f->tags) != 0)
		return -1;
	if (min_size(f) > b->lim->max_message_bytes)
		return fail(b->err, 413, "too_large",
			    "message: larger than %zu bytes",
			    b->lim->max_message_bytes);
	return 0;
}

size_t
message_json_max_bytes(const struct message_limits *lim)
{
	/*
	 * Each JSON byte of content turns into at least 4/9 of a byte of the
	 * message (docs/internals/intake.md "One limit"); bcc addresses
	 * (each at most MAX_ADDRESS_LEN bytes, every one a 6-byte escape),
	 * tags and the JSON punctuation never reach it.
	 */
	size_t m = lim->max_message_bytes;
	size_t bcc = lim->max_recipients * (6 * MAX_ADDRESS_LEN + 4);
	size_t slack = 64 * 1024;

	if (m > (SIZE_MAX - bcc - slack) / 9 * 4)
		return SIZE_MAX;
	return m / 4 * 9 + 9 + bcc + slack;
}

/* A JSON string literal of s, escaped as jansson's compact output is. */
static void
json_str_add(struct buf *out, const char *s)
{
	xbuf_addc(out, '"');
	if (buf_append_json_str(out, s, strlen(s)) != 0)
		fatalx("message: composition buffer over its cap");
	xbuf_addc(out, '"');
}

/* A compact JSON array of the strings in v (an array or one string). */
static char *
json_strings_new(const cJSON *v)
{
	struct buf out;
	const cJSON *e;

	buf_init(&out, SIZE_MAX);
	xbuf_addc(&out, '[');
	if (cJSON_IsString(v))
		json_str_add(&out, v->valuestring);
	else if (cJSON_IsArray(v))
		for (e = v->child; e != NULL; e = e->next) {
			if (e != v->child)
				xbuf_addc(&out, ',');
			json_str_add(&out, e->valuestring);
		}
	xbuf_addc(&out, ']');
	return buf_take(&out, NULL);
}

/* "Date:" in RFC 5322 form, UTC, with no dependence on the locale. */
static void
date_add(struct buf *out, int64_t ms)
{
	static const char wday[][4] = {"Sun", "Mon", "Tue", "Wed",
				       "Thu", "Fri", "Sat"};
	static const char mon[][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
				      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char line[64];
	int n;

	if (gmtime_r(&t, &tm) == NULL)
		fatalx("message: gmtime_r failed");
	n = snprintf(line, sizeof(line),
		     "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
		     wday[tm.tm_wday % 7], tm.tm_mday, mon[tm.tm_mon % 12],
		     tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	xbuf_add(out, line, (size_t)n);
}

static void
build_free(struct build *b)
{
	size_t i;

	for (i = 0; i < b->nrcpt; i++)
		free(b->rcpt[i]);
	free(b->rcpt);
	free(b->mail_from);
	buf_cleanup(&b->out);
	buf_cleanup(&b->tmp);
	memset(b, 0, sizeof(*b));
}

int
message_from_json(const char *json, size_t len,
		  const struct message_limits *lim, struct store_message **out,
		  struct message_error *err)
{
	struct build b;
	struct fields f;
	struct store_message *m;
	const cJSON *user_date, *user_mid;
	cJSON *root = NULL;
	const char *s;
	size_t n;
	int64_t now;

	*out = NULL;
	memset(&b, 0, sizeof(b));
	buf_init(&b.out, SIZE_MAX);
	buf_init(&b.tmp, SIZE_MAX);
	b.lim = lim;
	b.err = err;
	if (json_parse(json, len, &root, &b.nul, err) != 0)
		goto fail;
	if (find_fields(&b, root, &f) != 0 || check_fields(&b, &f) != 0)
		goto fail;
	xbuf_reserve(&b.out, len + 1024);
	if (set_from(&b, f.from) != 0 ||
	    add_recipients(&b, "to", f.to, "To") != 0 ||
	    add_recipients(&b, "cc", f.cc, "Cc") != 0 ||
	    add_recipients(&b, "bcc", f.bcc, NULL) != 0 ||
	    set_reply_to(&b, f.reply_to) != 0)
		goto fail;
	s = str_of(f.subject, &n);
	if (s != NULL)
		hdr_add_text(&b, "Subject", s, n, true);
	now = now_ms();
	id_new(b.id);
	if (user_header(&b, f.headers, "date", &user_date) != 0 ||
	    user_header(&b, f.headers, "message-id", &user_mid) != 0)
		goto fail;
	/* Added when missing; the client's own come with its headers. */
	if (user_date == NULL)
		date_add(&b.out, now);
	if (user_mid == NULL) {
		xbuf_adds(&b.out, "Message-Id: <");
		xbuf_adds(&b.out, b.id);
		xbuf_addc(&b.out, '@');
		xbuf_adds(&b.out, b.domain);
		xbuf_adds(&b.out, ">\r\n");
	}
	if (add_headers(&b, f.headers) != 0 || add_body(&b, &f) != 0)
		goto fail;
	if (b.out.len > lim->max_message_bytes) {
		fail(err, 413, "too_large", "message: larger than %zu bytes",
		     lim->max_message_bytes);
		goto fail;
	}

	m = xcalloc(1, sizeof(*m));
	memcpy(m->id, b.id, sizeof(b.id));
	m->status = MSG_QUEUED;
	m->mail_from = b.mail_from;
	m->rcpt = b.rcpt;
	m->nrcpt = b.nrcpt;
	m->header_from = xstrdup(f.from->valuestring);
	m->subject = xstrdup(f.subject ? f.subject->valuestring : "");
	m->to_json = json_strings_new(f.to);
	m->tags_json = f.tags != NULL && f.tags->child != NULL
			   ? json_strings_new(f.tags)
			   : NULL;
	m->mime = buf_take(&b.out, &m->mime_len);
	m->created_ms = m->updated_ms = now;
	m->tried = xstrdup("");
	buf_cleanup(&b.tmp);
	cJSON_Delete(root);
	*out = m;
	return 0;

fail:
	build_free(&b);
	cJSON_Delete(root);
	return -1;
}
