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
 * The work is split by role: message_json.c (the strict parse),
 * message_addr.c (address grammar and formatting), message_compose.c (the
 * MIME writer) and this file (the fields, their checks and the result);
 * message_int.h is what they share.  mime.c takes raw RFC 5322 instead.
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
#include "intake/message_int.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "store/store.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Parser and format options; read-only after message_init(). */
GMimeParserOptions *message__parser_opts;
GMimeFormatOptions *message__format_opts;

void
message_init(void)
{
	g_mime_init();
	message__parser_opts = g_mime_parser_options_new();
	g_mime_parser_options_set_address_compliance_mode(
	    message__parser_opts, GMIME_RFC_COMPLIANCE_STRICT);
	g_mime_parser_options_set_rfc2047_compliance_mode(
	    message__parser_opts, GMIME_RFC_COMPLIANCE_STRICT);
	message__format_opts = g_mime_format_options_new();
	g_mime_format_options_set_newline_format(message__format_opts,
						 GMIME_NEWLINE_FORMAT_DOS);
}

void
message_shutdown(void)
{
	if (message__format_opts != NULL)
		g_mime_format_options_free(message__format_opts);
	if (message__parser_opts != NULL)
		g_mime_parser_options_free(message__parser_opts);
	message__format_opts = NULL;
	message__parser_opts = NULL;
	g_mime_shutdown();
}

/* Fills err and returns -1, so that every refusal is one return. */
int
message__fail(struct message_error *err, int status, const char *code,
	      const char *fmt, ...)
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

int
message__invalid(struct message_error *err, const char *field, const char *why)
{
	return message__fail(err, 400, "invalid_field", "%s: %s", field, why);
}

/* A field name taken from the body, made printable and short. */
const char *
message__safe_name(const char *s, size_t n, char *buf, size_t bufsz)
{
	return log_sanitize(s, n, buf, bufsz);
}

/* True when s holds a NUL that the parse had to stand in for. */
bool
message__has_nul(const struct build *b, const char *s, size_t n)
{
	return b->nul && memmem(s, n, NUL_MARK, 3) != NULL;
}

/*
 * The code point of a C1 control (U+0080..U+009F) or of U+2028/U+2029
 * whose UTF-8 starts at u[i], or 0: the characters a reader may take for
 * a line end.
 */
static unsigned
c1_or_separator_at(const unsigned char *u, size_t i, size_t n)
{
	if (u[i] == 0xc2 && i + 1 < n && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f)
		return u[i + 1];
	if (u[i] == 0xe2 && i + 2 < n && u[i + 1] == 0x80 &&
	    (u[i + 2] == 0xa8 || u[i + 2] == 0xa9))
		return 0x2000 | (u[i + 2] & 0x3f);
	return 0;
}

bool
message__has_c1_or_separator(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i;

	for (i = 0; i < n; i++)
		if (c1_or_separator_at(u, i, n) != 0)
			return true;
	return false;
}

char *
message__json_header_value(const cJSON *obj)
{
	static const char hex[] = "0123456789abcdef";
	char *s = cJSON_PrintUnformatted(obj), *out;
	const unsigned char *u;
	size_t i, n, o = 0;
	unsigned cp;

	if (s == NULL)
		fatalx("message: out of memory");
	u = (const unsigned char *)s;
	n = strlen(s);
	/* Each escape is 6 bytes for at least 2: three times is room. */
	out = xmalloc(3 * n + 1);
	for (i = 0; i < n; i++) {
		if ((cp = c1_or_separator_at(u, i, n)) == 0) {
			out[o++] = s[i];
			continue;
		}
		/* Only ever inside a string: JSON has no such byte outside. */
		out[o++] = '\\';
		out[o++] = 'u';
		out[o++] = hex[(cp >> 12) & 15];
		out[o++] = hex[(cp >> 8) & 15];
		out[o++] = hex[(cp >> 4) & 15];
		out[o++] = hex[cp & 15];
		i += cp > 0xff ? 2 : 1;
	}
	out[o] = '\0';
	cJSON_free(s);
	return out;
}

/*
 * Checks a value bound for a header: valid UTF-8 with no NUL, CR, LF or
 * other control character, and at most max bytes.  C1 controls and
 * U+2028/U+2029 are refused too: RFC 2047 carries them, and a reader that
 * decodes them sees a line end (NEL, the line and paragraph separators).
 */
int
message__check_header_value(const struct build *b, const char *field,
			    const char *s, size_t n, size_t max)
{
	size_t i;
	unsigned char c;

	if (n > max)
		return message__invalid(b->err, field, "too long");
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '\0' || (b->nul && c == 0xef && i + 2 < n &&
				  memcmp(s + i, NUL_MARK, 3) == 0))
			return message__invalid(b->err, field, "contains NUL");
		if (c == '\r' || c == '\n')
			return message__invalid(b->err, field,
						"contains CR or LF");
		if (c < 0x20 || c == 0x7f)
			return message__invalid(b->err, field,
						"contains a control character");
	}
	if (!g_utf8_validate_len(s, n, NULL))
		return message__invalid(b->err, field, "not valid UTF-8");
	if (message__has_c1_or_separator(s, n))
		return message__invalid(b->err, field,
					"contains a control character or a "
					"line separator (U+0080..U+009F, "
					"U+2028, U+2029)");
	return 0;
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
		return message__invalid(
		    b->err, field, "must be a string or an array of strings");
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
		if (message__parse_mailbox(b, field, e, &mb[i]) != 0)
			goto fail;
		rcpt_take(b, message__addr_ascii_domain(&mb[i]));
	}
	if (hname != NULL && n > 0)
		message__hdr_add_mailboxes(b, hname, mb, n);
	rc = 0;
fail:
	message__mboxes_free(mb, n);
	return rc;
}

static int
set_from(struct build *b, const cJSON *v)
{
	struct mbox *mb = xcalloc(1, sizeof(*mb));
	const char *at;
	char *addr;

	if (message__parse_mailbox(b, "from", v, mb) != 0) {
		message__mboxes_free(mb, 1);
		return -1;
	}
	addr = message__addr_ascii_domain(mb);
	at = strrchr(addr, '@');
	/* message__addr_spec_ok() saw an '@'; the IDN form keeps it. */
	if (at == NULL || strlen(at + 1) >= sizeof(b->domain) ||
	    !message__domain_ok(at + 1, strlen(at + 1))) {
		free(addr);
		message__mboxes_free(mb, 1);
		return message__invalid(b->err, "from", "not a valid address");
	}
	snprintf(b->domain, sizeof(b->domain), "%s", at + 1);
	b->mail_from = addr;
	message__hdr_add_mailboxes(b, "From", mb, 1);
	message__mboxes_free(mb, 1);
	return 0;
}

/*
 * Reply-To: one address, or an array of them (the drop-in endpoints'
 * reply_to_list); the count was capped by check_fields().
 */
static int
set_reply_to(struct build *b, const cJSON *v)
{
	struct mbox *mb;
	const cJSON *e;
	char field[64];
	size_t i, n = 0;
	int rc = -1;

	if (v == NULL)
		return 0;
	if (count_addresses(b, "reply_to", v, &n) != 0)
		return -1;
	if (n == 0)
		return 0;
	mb = xcalloc(n, sizeof(*mb));
	e = cJSON_IsArray(v) ? v->child : v;
	for (i = 0; i < n; i++, e = e->next) {
		if (cJSON_IsArray(v))
			snprintf(field, sizeof(field), "reply_to[%zu]", i);
		else
			snprintf(field, sizeof(field), "reply_to");
		if (message__parse_mailbox(b, field, e, &mb[i]) != 0)
			goto fail;
	}
	message__hdr_add_mailboxes(b, "Reply-To", mb, n);
	rc = 0;
fail:
	message__mboxes_free(mb, n);
	return rc;
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
		return message__invalid(b->err, field,
					"not a valid header name");
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 ||
		    s[i] == ':')
			return message__invalid(b->err, field,
						"not a valid header name");
	if (header_forbidden(s))
		return message__invalid(b->err, field,
					"set by the relay, not allowed");
	return 0;
}

/*
 * A Message-ID given by the client: one msg-id, "<left@right>", printable
 * ASCII with no space, '<', '>' or second '@', and at most 250 bytes.
 */
bool
message__msgid_valid(const char *s, size_t n)
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
bool
message__date_valid(const char *s)
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
			return message__invalid(b->err, field, "given twice");
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
	if (strcasecmp(name, "message-id") == 0 &&
	    !message__msgid_valid(val, n))
		return message__invalid(
		    b->err, field, "not a Message-ID of the form <left@right>");
	/* val is NUL-terminated (cJSON) and holds no NUL (checked before). */
	if (strcasecmp(name, "date") == 0 && !message__date_valid(val))
		return message__invalid(b->err, field, "not an RFC 5322 date");
	return 0;
}

/*
 * An ASCII value is written as it is (a client may send encoded-words of
 * its own), so what its encoded-words decode to is checked as the value
 * itself: readers decode them, even inside a word ("x=?utf-8?Q?=0D=0A?=y"
 * is "x", CR LF, "y" to Python's email), and a CR LF or a control refused
 * when given plainly must not reach them so.  Decoded as loosely as
 * readers do (GMime's default options, not the builder's strict ones).
 */
static int
check_encoded_words(const struct build *b, const char *field, const char *val,
		    size_t n)
{
	char *dec;
	size_t i;
	int rc = 0;

	if (memmem(val, n, "=?", 2) == NULL)
		return 0;
	dec = g_mime_utils_header_decode_text(NULL, val);
	for (i = 0; dec != NULL && dec[i] != '\0'; i++)
		if ((unsigned char)dec[i] < 0x20 || dec[i] == 0x7f)
			break;
	if (dec != NULL &&
	    (dec[i] != '\0' || message__has_c1_or_separator(dec, strlen(dec))))
		rc = message__invalid(b->err, field,
				      "an encoded-word in it decodes to a "
				      "control character or a line end");
	g_free(dec);
	return rc;
}

static int
add_headers(struct build *b, const cJSON *obj)
{
	const cJSON *v, *w;
	const char *val;
	char field[96], kbuf[48];
	size_t n, count = 0;

	if (obj == NULL)
		return 0;
	for (v = obj->child; v != NULL; v = v->next)
		count++;
	if (count > MAX_HEADERS)
		return message__invalid(b->err, "headers", "too many headers");
	for (v = obj->child; v != NULL; v = v->next) {
		snprintf(field, sizeof(field), "headers.%s",
			 message__safe_name(v->string, strlen(v->string), kbuf,
					    sizeof(kbuf)));
		/* The walk refused NUL in keys, so strlen() is the length. */
		if (check_header_name(b, field, v->string, strlen(v->string)) !=
		    0)
			return -1;
		/*
		 * "In-Reply-To" and "in-reply-to" are one field: sent both,
		 * readers differ on which they read (the walk refused only
		 * keys spelled alike).  At most MAX_HEADERS, so pairwise.
		 */
		for (w = obj->child; w != v; w = w->next)
			if (strcasecmp(w->string, v->string) == 0)
				return message__invalid(
				    b->err, field,
				    "given twice (header names are compared "
				    "without case)");
		val = str_of(v, &n);
		if (val == NULL)
			return message__invalid(b->err, field,
						"must be a string");
		if (message__check_header_value(b, field, val, n,
						MAX_HEADER_VALUE_LEN) != 0 ||
		    user_header_ok(b, field, v->string, val, n) != 0 ||
		    check_encoded_words(b, field, val, n) != 0)
			return -1;
		message__hdr_add_text(b, v->string, val, n, false);
	}
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
		return message__invalid(b->err, "tags", "too many tags");
	for (i = 0, t = tags->child; t != NULL; t = t->next, i++) {
		snprintf(field, sizeof(field), "tags[%zu]", i);
		s = str_of(t, &n);
		if (s == NULL)
			return message__invalid(b->err, field,
						"must be a string");
		if (n == 0 || n > MAX_TAG_LEN)
			return message__invalid(b->err, field,
						"must be 1 to 128 bytes");
		for (j = 0; j < n; j++)
			if ((unsigned char)s[j] < 0x20 ||
			    (unsigned char)s[j] > 0x7e)
				return message__invalid(
				    b->err, field, "must be printable ASCII");
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
			return message__invalid(
			    b->err,
			    message__safe_name(v->string, strlen(v->string),
					       kbuf, sizeof(kbuf)),
			    "unknown field");
		if (!cJSON_IsNull(v))
			*(cJSON **)((char *)f + known[i].off) = v;
	}
	if (f->from != NULL && !cJSON_IsString(f->from))
		return message__invalid(b->err, "from", "must be a string");
	if (f->reply_to != NULL && !cJSON_IsString(f->reply_to) &&
	    !cJSON_IsArray(f->reply_to))
		return message__invalid(
		    b->err, "reply_to",
		    "must be a string or an array of strings");
	if (f->subject != NULL && !cJSON_IsString(f->subject))
		return message__invalid(b->err, "subject", "must be a string");
	if (f->text != NULL && !cJSON_IsString(f->text))
		return message__invalid(b->err, "text", "must be a string");
	if (f->html != NULL && !cJSON_IsString(f->html))
		return message__invalid(b->err, "html", "must be a string");
	if (f->headers != NULL && !cJSON_IsObject(f->headers))
		return message__invalid(b->err, "headers", "must be an object");
	if (f->attachments != NULL && !cJSON_IsArray(f->attachments))
		return message__invalid(b->err, "attachments",
					"must be an array");
	if (f->tags != NULL && !cJSON_IsArray(f->tags))
		return message__invalid(b->err, "tags", "must be an array");
	return 0;
}

size_t
message__b64_decoded_len(const char *s, size_t n)
{
	size_t i, skip = 0;

	/* Branch-free so that the compiler can run it over many bytes at
	 * once: a body of megabytes costs a few of its lengths in time. */
	for (i = 0; i < n; i++)
		skip += (size_t)(s[i] == '\r') + (size_t)(s[i] == '\n') +
			(size_t)(s[i] == '=');
	n -= skip;
	return n / 4 * 3 + n % 4 * 3 / 4;
}

/*
 * Whether the body bytes the message will carry at least are over max:
 * text and html as they are, each attachment as the bytes its base64
 * decodes to (message__b64_decoded_len()).  Counting those takes a pass
 * over the base64, so it is done only when 3/4 of its length as given
 * (what it would decode to without a line break, never less) would be
 * over: the common case costs nothing.  Until
 * 2026-11-30 that 3/4 was the bound, and base64 padded with line breaks
 * was refused 413 although its message fitted.
 */
static bool
min_size_over(const struct fields *f, size_t max)
{
	const cJSON *a, *c;
	const char *s;
	size_t n = 0, len;
	int pass;

	for (pass = 0; pass < 2; pass++) {
		n = 0;
		if (f->text != NULL)
			n += strlen(f->text->valuestring);
		if (f->html != NULL)
			n += strlen(f->html->valuestring);
		for (a = f->attachments ? f->attachments->child : NULL;
		     a != NULL; a = a->next) {
			c = cJSON_GetObjectItemCaseSensitive(a,
							     "content_base64");
			s = str_of(c, &len);
			if (s != NULL)
				n += pass == 0
					 ? len / 4 * 3 + len % 4 * 3 / 4
					 : message__b64_decoded_len(s, len);
		}
		if (n <= max)
			return false;
	}
	return true;
}

static int
check_fields(const struct build *b, const struct fields *f)
{
	size_t nto, ncc, nbcc, n;
	const char *s;

	if (f->from == NULL)
		return message__fail(b->err, 400, "missing_field",
				     "from: required");
	if (count_addresses(b, "to", f->to, &nto) != 0 ||
	    count_addresses(b, "cc", f->cc, &ncc) != 0 ||
	    count_addresses(b, "bcc", f->bcc, &nbcc) != 0)
		return -1;
	if (nto + ncc + nbcc == 0)
		return message__fail(b->err, 400, "missing_field",
				     "to: at least one recipient is required");
	if (nto + ncc + nbcc > b->lim->max_recipients)
		return message__invalid(
		    b->err, "to", "too many recipients in to, cc and bcc");
	if (f->reply_to != NULL && cJSON_IsArray(f->reply_to) &&
	    (size_t)cJSON_GetArraySize(f->reply_to) > b->lim->max_recipients)
		return message__invalid(b->err, "reply_to",
					"too many addresses");
	if (f->text == NULL && f->html == NULL)
		return message__fail(b->err, 400, "missing_field",
				     "text: text or html is required");
	s = str_of(f->text, &n);
	if (s != NULL && message__has_nul(b, s, n))
		return message__invalid(b->err, "text", "contains NUL");
	s = str_of(f->html, &n);
	if (s != NULL && message__has_nul(b, s, n))
		return message__invalid(b->err, "html", "contains NUL");
	s = str_of(f->subject, &n);
	if (s != NULL && message__check_header_value(b, "subject", s, n,
						     MAX_SUBJECT_LEN) != 0)
		return -1;
	if (f->attachments != NULL &&
	    cJSON_GetArraySize(f->attachments) > MAX_ATTACHMENTS)
		return message__invalid(b->err, "attachments",
					"too many attachments");
	if (check_tags(b, f->tags) != 0)
		return -1;
	if (min_size_over(f, b->lim->max_message_bytes))
		return message__fail(b->err, 413, "too_large",
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

/* The header block, in order, with Date and Message-Id when missing. */
static int
compose_headers(struct build *b, const struct fields *f, int64_t now)
{
	const cJSON *user_date, *user_mid;
	const char *s;
	size_t n;

	if (set_from(b, f->from) != 0 ||
	    add_recipients(b, "to", f->to, "To") != 0 ||
	    add_recipients(b, "cc", f->cc, "Cc") != 0 ||
	    add_recipients(b, "bcc", f->bcc, NULL) != 0 ||
	    set_reply_to(b, f->reply_to) != 0)
		return -1;
	s = str_of(f->subject, &n);
	if (s != NULL)
		message__hdr_add_text(b, "Subject", s, n, true);
	if (user_header(b, f->headers, "date", &user_date) != 0 ||
	    user_header(b, f->headers, "message-id", &user_mid) != 0)
		return -1;
	/* Added when missing; the client's own come with its headers. */
	if (user_date == NULL)
		message__date_add(&b->out, now);
	if (user_mid == NULL) {
		xbuf_adds(&b->out, "Message-Id: <");
		xbuf_adds(&b->out, b->id);
		xbuf_addc(&b->out, '@');
		xbuf_adds(&b->out, b->domain);
		xbuf_adds(&b->out, ">\r\n");
	}
	return add_headers(b, f->headers);
}

/* The store_message of a finished build; takes the envelope and buffer. */
static struct store_message *
message_take(struct build *b, const struct fields *f, int64_t now)
{
	struct store_message *m = xcalloc(1, sizeof(*m));

	memcpy(m->id, b->id, sizeof(b->id));
	m->status = MSG_QUEUED;
	m->mail_from = b->mail_from;
	m->rcpt = b->rcpt;
	m->nrcpt = b->nrcpt;
	b->mail_from = NULL;
	b->rcpt = NULL;
	b->nrcpt = 0;
	m->header_from = xstrdup(f->from->valuestring);
	m->subject = xstrdup(f->subject ? f->subject->valuestring : "");
	m->to_json = json_strings_new(f->to);
	m->tags_json = f->tags != NULL && f->tags->child != NULL
			   ? json_strings_new(f->tags)
			   : NULL;
	m->mime = buf_take(&b->out, &m->mime_len);
	m->created_ms = m->updated_ms = now;
	m->tried = xstrdup("");
	return m;
}

int
message_from_json(const char *json, size_t len,
		  const struct message_limits *lim, struct store_message **out,
		  struct message_error *err)
{
	struct build b;
	struct fields f;
	cJSON *root = NULL;
	int64_t now = now_ms();
	int rc = -1;

	*out = NULL;
	memset(&b, 0, sizeof(b));
	buf_init(&b.out, SIZE_MAX);
	buf_init(&b.tmp, SIZE_MAX);
	b.lim = lim;
	b.err = err;
	if (message__json_parse(json, len, &root, &b.nul, err) != 0)
		goto out;
	if (find_fields(&b, root, &f) != 0 || check_fields(&b, &f) != 0)
		goto out;
	xbuf_reserve(&b.out, len + 1024);
	id_new(b.id);
	if (compose_headers(&b, &f, now) != 0 || message__add_body(&b, &f) != 0)
		goto out;
	if (b.out.len > lim->max_message_bytes) {
		message__fail(err, 413, "too_large",
			      "message: larger than %zu bytes",
			      lim->max_message_bytes);
		goto out;
	}
	*out = message_take(&b, &f, now);
	rc = 0;
out:
	build_free(&b);
	cJSON_Delete(root);
	return rc;
}
