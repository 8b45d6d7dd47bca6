/*
 * The MIME writer of the JSON path: the header block and the body (one
 * text part, multipart/alternative, inside multipart/mixed with
 * attachments) written straight into the buffer the store keeps.  Headers
 * are folded before a space at 78 columns where they can and never past
 * 998; text that cannot fold is written as RFC 2047 B words.  Bodies are
 * 7bit, quoted-printable (GMime's encoder) or base64 (ours) as the content
 * asks; attachment names go by token, quoted string or RFC 2231.  Every
 * value was checked before it gets here, so nothing written can inject a
 * header; attachments are checked as they are written.
 */
#include "intake/message_int.h"
#include "common/log.h"
#include "common/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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
void
message__encode_b(struct buf *out, const char *s, size_t n)
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
int
message__fold_add(struct buf *out, size_t *col, const char *v, size_t n)
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
	if (message__fold_add(out, &col, v, n) != 0) {
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
void
message__hdr_add_text(struct build *b, const char *name, const char *s,
		      size_t n, bool encode_look_alike)
{
	char *enc, *copy;

	if (message__is_ascii(s, n)) {
		if ((!encode_look_alike || memmem(s, n, "=?", 2) == NULL) &&
		    hdr_add(&b->out, name, s, n) == 0)
			return;
	} else {
		copy = xstrndup(s, n);
		enc = g_mime_utils_header_encode_text(message__format_opts,
						      copy, "utf-8");
		free(copy);
		if (enc != NULL &&
		    hdr_add(&b->out, name, enc, strlen(enc)) == 0) {
			g_free(enc);
			return;
		}
		g_free(enc);
	}
	buf_reset(&b->tmp);
	message__encode_b(&b->tmp, s, n);
	if (hdr_add(&b->out, name, b->tmp.p, b->tmp.len) != 0)
		fatalx("message: B words of %zu bytes do not fold", n);
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
 * rests on that (message_json_max_bytes).  So text holding one is never
 * base64, however much of it is 8-bit: there \u0001 would be 4/3 of a
 * byte, and a body of mostly such escapes over the cap could build a
 * message that fits.  Line
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

	} else if (high * 6 > n && !ctl) {
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

/* The length of the RFC 2045 token at s (n bytes left); 0 when none. */
static size_t
token_len(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && is_token((unsigned char)s[i]); i++)
		;
	return i;
}

/* The length of the quoted string at s, quotes included; 0 when bad. */
static size_t
quoted_len(const char *s, size_t n)
{
	size_t i;

	if (n < 2 || s[0] != '"')
		return 0;
	/* No quoted-pair: a backslash reads differently from one reader
	 * to the next, and no value here needs one. */
	for (i = 1; i < n && s[i] != '"'; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e ||
		    s[i] == '\\')
			return 0;
	return i < n ? i + 1 : 0;
}

static size_t
blanks(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && (s[i] == ' ' || s[i] == '\t'); i++)
		;
	return i;
}

/*
 * The parameters after a content type's subtype (at s, n bytes): each
 * "; attribute=value", the value a token or a quoted string, blanks only
 * around the ';'.  Held to what every reader (GMime's parser, and the
 * providers') takes back as written: no RFC 2231 attribute (a '*'), no
 * attribute twice in any case, and no "name", which the relay writes from
 * the file name.
 */
static bool
params_ok(const char *s, size_t n)
{
	const char *attr[MAX_CONTENT_TYPE_LEN / 4];
	size_t alen[MAX_CONTENT_TYPE_LEN / 4], na = 0, i = 0, k, j;

	while ((i += blanks(s + i, n - i)) < n) {
		if (s[i++] != ';')
			return false;
		i += blanks(s + i, n - i);
		k = token_len(s + i, n - i);
		if (k == 0 || memchr(s + i, '*', k) != NULL ||
		    (k == 4 && strncasecmp(s + i, "name", 4) == 0) ||
		    na == ARRAY_SIZE(attr))
			return false;
		for (j = 0; j < na; j++)
			if (alen[j] == k && strncasecmp(attr[j], s + i, k) == 0)
				return false;
		attr[na] = s + i;
		alen[na++] = k;
		i += k;
		if (i == n || s[i++] != '=')
			return false;
		k = s[i] == '"' ? quoted_len(s + i, n - i)
				: token_len(s + i, n - i);
		if (k == 0)
			return false;
		i += k;
		if (i < n && s[i] != ';' && s[i] != ' ' && s[i] != '\t')
			return false;
	}
	return true;
}

/*
 * "type/subtype" of RFC 2045 tokens, never a multipart or message (a leaf
 * part with base64 can be neither), and parameters as params_ok() takes
 * them ("text/plain; charset=utf-8", as SendGrid's API takes it).  The
 * value is written into the part's header as given.
 */
bool
message__content_type_ok(const char *s, size_t n, size_t *slash)
{
	size_t t, st;

	if (n == 0 || n > MAX_CONTENT_TYPE_LEN)
		return false;
	t = token_len(s, n);
	if (t == 0 || t == n || s[t] != '/')
		return false;
	*slash = t;
	st = token_len(s + t + 1, n - t - 1);
	if (st == 0 || !params_ok(s + t + 1 + st, n - t - 1 - st))
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
 * at most 60 columns when long.  ASCII holding "=?" goes by RFC 2231 too:
 * readers (GMime, Python's email) decode an encoded-word even inside a
 * quoted parameter, so "=?utf-8?B?Li4vZXZpbC5leGU=?=" would reach them as
 * "../evil.exe", a name filename_ok() refuses; percent-encoded, it reads
 * back as written.
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
	if (message__is_ascii(v, n) && memmem(v, n, "=?", 2) == NULL) {
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

/*
 * A content_id (an inline part's Content-ID, which HTML cites as
 * "cid:ID"): 1 to 250 printable ASCII bytes, written between < and >, so
 * without space, angle brackets, quotes or backslash.
 */
static bool
content_id_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 250)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 33 || c > 126 || c == '<' || c == '>' || c == '"' ||
		    c == '\\')
			return false;
	}
	return true;
}

/* The named keys of an attachment; NULL when key is not one of them. */
static const char **
attachment_key(const char *key, const char **fname, const char **ctype,
	       const char **b64, const char **cid)
{
	if (strcmp(key, "filename") == 0)
		return fname;
	if (strcmp(key, "content_type") == 0)
		return ctype;
	if (strcmp(key, "content_base64") == 0)
		return b64;
	if (strcmp(key, "content_id") == 0)
		return cid;
	return NULL;
}

/* Checks one attachment object and appends its part to out. */
static int
attachment_add(struct build *b, size_t idx, const cJSON *a, struct buf *out)
{
	const char *key, *fname = NULL, *ctype = "application/octet-stream";
	const char *b64 = NULL, *cid = NULL, **slot;
	char field[96], kbuf[32];
	size_t fn = 0, cn = strlen(ctype), bn = 0, slash = 11, dlen = 0;
	size_t idn = 0;
	unsigned char *data;
	const cJSON *v;

	snprintf(field, sizeof(field), "attachments[%zu]", idx);
	if (!cJSON_IsObject(a))
		return message__invalid(b->err, field, "must be an object");
	for (v = a->child; v != NULL; v = v->next) {
		key = v->string;
		snprintf(
		    field, sizeof(field), "attachments[%zu].%s", idx,
		    message__safe_name(key, strlen(key), kbuf, sizeof(kbuf)));
		slot = attachment_key(key, &fname, &ctype, &b64, &cid);
		if (slot == NULL)
			return message__invalid(b->err, field, "unknown field");
		if (cJSON_IsNull(v))
			continue;
		if (!cJSON_IsString(v))
			return message__invalid(b->err, field,
						"must be a string");
		*slot = str_of(v, slot == &fname   ? &fn
				  : slot == &ctype ? &cn
				  : slot == &b64   ? &bn
						   : &idn);
	}
	snprintf(field, sizeof(field), "attachments[%zu].content_id", idx);
	if (cid != NULL &&
	    (message__has_nul(b, cid, idn) || !content_id_ok(cid, idn)))
		return message__invalid(
		    b->err, field,
		    "1 to 250 printable ASCII characters "
		    "without space, <, >, quotes or backslash");
	snprintf(field, sizeof(field), "attachments[%zu].filename", idx);
	if (fname == NULL)
		return message__fail(b->err, 400, "missing_field",
				     "%s: required", field);
	if (message__check_header_value(b, field, fname, fn,
					MAX_FILENAME_LEN) != 0)
		return -1;
	if (!filename_ok(fname, fn))
		return message__invalid(b->err, field, "not a valid file name");
	snprintf(field, sizeof(field), "attachments[%zu].content_type", idx);
	if (message__check_header_value(b, field, ctype, cn,
					MAX_CONTENT_TYPE_LEN) != 0)
		return -1;
	if (!message__content_type_ok(ctype, cn, &slash))
		return message__invalid(b->err, field,
					"not a valid content type");
	snprintf(field, sizeof(field), "attachments[%zu].content_base64", idx);
	if (b64 == NULL)
		return message__fail(b->err, 400, "missing_field",
				     "%s: required", field);
	data = b64_decode(b64, bn, &dlen);
	if (data == NULL)
		return message__invalid(b->err, field, "not valid base64");

	xbuf_adds(out, "Content-Type: ");
	xbuf_add(out, ctype, cn);
	param_add(out, "name", fname, fn);
	xbuf_adds(out, "\r\nContent-Transfer-Encoding: base64\r\n");
	if (cid != NULL) {
		/* An inline part, cited from the HTML as cid:ID. */
		xbuf_adds(out, "Content-ID: <");
		xbuf_add(out, cid, idn);
		xbuf_adds(out, ">\r\nContent-Disposition: inline");
	} else {
		xbuf_adds(out, "Content-Disposition: attachment");
	}
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
	return message__invalid(b->err, "text", "holds the MIME boundary");
}

/*
 * The body: one text part, or multipart/alternative of text and html,
 * inside multipart/mixed when there are attachments.  Each multipart gets
 * the boundary with its own suffix.
 */
int
message__add_body(struct build *b, const struct fields *f)
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

/* "Date:" in RFC 5322 form, UTC, with no dependence on the locale. */
void
message__date_add(struct buf *out, int64_t ms)
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
