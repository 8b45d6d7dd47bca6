/*
 * A raw RFC 5322 message in (SMTP DATA, a drop-in endpoint's MIME upload),
 * a checked store_message out: message_from_mime() (message.h).
 *
 * The client's bytes are the message: nothing is re-encoded or re-folded,
 * so a signature (DKIM) over them still holds.  Three changes are made:
 * the line ends of a message that has no CR at all (a file written on
 * Unix) become CRLF, the form the store and every provider expect; Date
 * and Message-Id go in front when the client gave none; and Bcc and
 * Resent-Bcc fields are taken out, as Postfix's cleanup does
 * (message_drop_headers).  A client that writes its blind copies into the
 * header (some libraries do) relies on the relay to remove them (RFC 5322
 * section 3.6.3); a provider given raw MIME would otherwise show every
 * recipient who got a blind copy.  The envelope still reaches them.
 *
 * Checks, cheapest first, all before anything is allocated beyond the
 * parse: the size cap (max_message_bytes, on the result too), one pass
 * over the bytes (no NUL, CRLF or LF-only line ends, lines of at most 998
 * bytes), the header block read by hand (every line an RFC 5322 field or
 * a continuation, valid UTF-8, no control character but TAB), its fields
 * found by hand and the values read decoded by GMime's RFC 2047 decoder
 * (the body is never parsed: the MIME tree is the provider's business),
 * one From, at most one Date (which must read as a date) and one
 * Message-ID, and the envelope (a valid or null sender, 1 to
 * max_recipients valid recipients, duplicates dropped without regard to
 * case).  Refusals fill message_error: 413 too_large, or 400
 * invalid_field naming "message", "envelope" or the header.  Never fatal
 * on input; pure, so it is fuzzed (tests/fuzz/fuzz_mime.c, and against
 * GMime's parser in fuzz_mime_head.c).
 */
#include "intake/message.h"
#include "intake/message_int.h"
#include "common/buf.h"
#include "common/util.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What the byte scan found. */
struct scan {
	bool lf_only;    /* no CR anywhere: every LF becomes CRLF */
	size_t nlines;   /* line ends, for the size after conversion */
	size_t head_len; /* the header block, its final line end included */
	bool has_body;   /* an empty line ends the header block */
};

/*
 * One pass over the bytes: NUL, line ends, line lengths, and where the
 * header block ends (the first empty line).
 */
static int
scan_bytes(const char *s, size_t n, struct scan *sc, struct message_error *err)
{
	const char *p = s, *end = s + n, *nl;
	size_t line;

	memset(sc, 0, sizeof(*sc));
	if (n == 0)
		return message__fail(err, 400, "invalid_field",
				     "message: empty");
	if (memchr(s, '\0', n) != NULL)
		return message__fail(err, 400, "invalid_field",
				     "message: contains NUL");
	sc->lf_only = memchr(s, '\r', n) == NULL;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		line = (size_t)((nl != NULL ? nl : end) - p);
		if (nl != NULL && !sc->lf_only) {
			if (line == 0 || p[line - 1] != '\r')
				goto bare;
			line--;
		}
		if (memchr(p, '\r', line) != NULL)
			goto bare;
		if (line > 998)
			return message__fail(
			    err, 400, "invalid_field",
			    "message: a line is longer than 998 bytes");
		if (line == 0 && nl != NULL && !sc->has_body) {
			sc->has_body = true;
			sc->head_len = (size_t)(p - s);
		}
		if (nl == NULL)
			break;
		sc->nlines++;
		p = nl + 1;
	}
	if (!sc->has_body)
		sc->head_len = n;
	return 0;
bare:
	return message__fail(err, 400, "invalid_field",
			     "message: a bare CR or LF (line ends must be "
			     "CRLF throughout, or LF throughout)");
}

/* A field the stored message goes without (see the top). */
static bool
dropped_name(const char *p, size_t n)
{
	return (n == 3 && g_ascii_strncasecmp(p, "Bcc", 3) == 0) ||
	       (n == 10 && g_ascii_strncasecmp(p, "Resent-Bcc", 10) == 0);
}

static bool
field_name_char(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

/*
 * The header block by hand: every line "name:" or a continuation (not
 * first), valid UTF-8, no control character but TAB.  This is what makes
 * the block RFC 5322, and what message__head_fields() relies on.
 */
static int
check_head(const char *h, size_t n, struct message_error *err)
{
	const char *p = h, *end = h + n, *nl;
	size_t i, len;

	if (!g_utf8_validate_len(h, n, NULL))
		return message__fail(err, 400, "invalid_field",
				     "message: header block not valid UTF-8");
	for (i = 0; i < n; i++)
		if ((unsigned char)h[i] < 0x20 && h[i] != '\t' &&
		    h[i] != '\r' && h[i] != '\n')
			return message__fail(err, 400, "invalid_field",
					     "message: a control character in "
					     "the header block");
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = (size_t)((nl != NULL ? nl : end) - p);
		if (*p == ' ' || *p == '\t') {
			if (p == h)
				return message__fail(
				    err, 400, "invalid_field",
				    "message: starts with a continuation");
		} else {
			for (i = 0;
			     i < len && field_name_char((unsigned char)p[i]);
			     i++)
				;
			if (i == 0 || i == len || p[i] != ':')
				return message__fail(
				    err, 400, "invalid_field",
				    "message: a header line that is not "
				    "\"Name: value\"");
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return 0;
}

/*
 * The fields message_from_mime() reads, found by hand in a header block
 * that check_head() passed (so every line is "name:" or a continuation).
 * This is what GMime's parser made of such a block, without its objects
 * (a third of the loop's time per SMTP message): the fields in order,
 * each name the bytes before its colon, each raw value the rest of the
 * field.  A value is then what g_mime_header_get_value() returns: the raw
 * value unfolded and RFC 2047 decoded with the same parser options.
 * tests/unit/test_mime_head.c checks the two agree.
 */
int
message__head_fields(const char *h, size_t n, struct message_head *hf)
{
	static const char *const names[MESSAGE_HEAD_NFIELDS] = {
	    "From", "Date", "Message-ID", "Subject", "To"};
	const char *p = h, *end = h + n, *colon, *nl;
	struct message_head_field *f = NULL;
	size_t i;

	memset(hf, 0, sizeof(*hf));
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (*p != ' ' && *p != '\t') {
			colon = memchr(p, ':',
				       (size_t)((nl != NULL ? nl : end) - p));
			if (colon == NULL)
				return -1; /* check_head() lets none through */
			if (dropped_name(p, (size_t)(colon - p)))
				hf->dropped++;
			f = NULL;
			for (i = 0; i < MESSAGE_HEAD_NFIELDS; i++)
				if (strlen(names[i]) == (size_t)(colon - p) &&
				    g_ascii_strncasecmp(
					p, names[i], (size_t)(colon - p)) == 0)
					break;
			if (i < MESSAGE_HEAD_NFIELDS && hf->f[i].count++ == 0) {
				f = &hf->f[i];
				f->raw = colon + 1;
			}
		}
		/* A continuation belongs to the field its first line named. */
		if (f != NULL)
			f->raw_len =
			    (size_t)((nl != NULL ? nl + 1 : end) - f->raw);
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return 0;
}

/* A field's first value as GMime gives it (g_free()), or NULL if none. */
char *
message__head_value(const struct message_head *hf, enum message_head_id id)
{
	const struct message_head_field *f = &hf->f[id];
	char *raw, *unfolded, *v;

	if (f->count == 0)
		return NULL;
	raw = g_strndup(f->raw, f->raw_len);
	unfolded = g_mime_utils_header_unfold(raw);
	v = g_mime_utils_header_decode_text(message__parser_opts, unfolded);
	g_free(unfolded);
	g_free(raw);
	return v;
}

/* The fields a message must have once, and a Date that reads. */
static int
check_fields(const struct message_head *hf, const char *from, bool *has_date,
	     bool *has_mid, struct message_error *err)
{
	char *date;
	int n = hf->f[MESSAGE_HEAD_FROM].count;
	bool ok;

	if (n != 1 || from == NULL || *from == '\0')
		return message__fail(err, 400, "invalid_field",
				     n == 0 ? "From: required"
					    : "From: exactly one, not empty");
	n = hf->f[MESSAGE_HEAD_DATE].count;
	if (n > 1)
		return message__invalid(err, "Date", "given twice");
	if (n == 1) {
		date = message__head_value(hf, MESSAGE_HEAD_DATE);
		ok = date != NULL && message__date_valid(date);
		g_free(date);
		if (!ok)
			return message__invalid(err, "Date",
						"not an RFC 5322 date");
	}
	*has_date = n == 1;
	n = hf->f[MESSAGE_HEAD_MID].count;
	if (n > 1)
		return message__invalid(err, "Message-ID", "given twice");
	*has_mid = n == 1;
	return 0;
}

static bool
addr_ok(const char *a)
{
	return a != NULL && message__addr_spec_ok(a);
}

/* The envelope, checked and copied into m (recipients deduplicated). */
static int
take_envelope(const struct message_envelope *env,
	      const struct message_limits *lim, struct store_message *m,
	      struct message_error *err)
{
	size_t i, j;

	if (env->mail_from == NULL ||
	    (*env->mail_from != '\0' && !addr_ok(env->mail_from)))
		return message__invalid(err, "envelope.mail_from",
					"not a valid address");
	if (env->nrcpt == 0 || env->rcpt == NULL)
		return message__fail(err, 400, "missing_field",
				     "envelope.rcpt: at least one recipient "
				     "is required");
	if (env->nrcpt > lim->max_recipients)
		return message__invalid(err, "envelope.rcpt",
					"too many recipients");
	for (i = 0; i < env->nrcpt; i++)
		if (!addr_ok(env->rcpt[i]))
			return message__invalid(err, "envelope.rcpt",
						"not a valid address");
	m->mail_from = xstrdup(env->mail_from);
	m->rcpt = xcalloc(env->nrcpt, sizeof(*m->rcpt));
	for (i = 0; i < env->nrcpt; i++) {
		for (j = 0; j < m->nrcpt; j++)
			if (strcasecmp(m->rcpt[j], env->rcpt[i]) == 0)
				break;
		if (j == m->nrcpt)
			m->rcpt[m->nrcpt++] = xstrdup(env->rcpt[i]);
	}
	return 0;
}

/*
 * The domain for a Message-Id we add: the envelope sender's, else the
 * From address's, else "localhost".
 */
static void
msgid_domain(const char *mail_from, const char *from, char *out, size_t sz)
{
	const char *at = strrchr(mail_from, '@'), *e;

	if (at != NULL) {
		snprintf(out, sz, "%s", at + 1);
		return;
	}
	snprintf(out, sz, "localhost");
	at = from != NULL ? strrchr(from, '@') : NULL;
	if (at == NULL)
		return;
	for (e = at + 1; *e != '\0' && *e != '>' && *e != ' '; e++)
		;
	if (message__domain_ok(at + 1, (size_t)(e - at - 1)) &&
	    (size_t)(e - at - 1) < sz)
		snprintf(out, sz, "%.*s", (int)(e - at - 1), at + 1);
}

/*
 * A JSON array of the To header's entries as written: split at commas
 * outside quotes, angle brackets and comments; "[]" when there is none.
 * Held to what /v1 lets a to_json be, at most max entries (the recipient
 * cap) of at most MAX_ADDRESS_LEN bytes each (cut at a character): it is
 * for display, and a listing (which shows 10 entries of a message) reads
 * it whole, so a To header of 20 MB of folded names made a page of one
 * message 20 MB.  The message itself keeps its header whole.
 */
static char *
to_json(const char *to, size_t max)
{
	struct buf b;
	const char *p = to, *start;
	size_t n = 0;
	int depth = 0;
	bool quoted = false;

	buf_init(&b, SIZE_MAX);
	xbuf_addc(&b, '[');
	for (start = p; to != NULL; p++) {
		if (*p == '\\' && quoted && p[1] != '\0')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && (*p == '<' || *p == '('))
			depth++;
		else if (!quoted && (*p == '>' || *p == ')') && depth > 0)
			depth--;
		else if (*p == '\0' || (*p == ',' && !quoted && depth == 0)) {
			const char *e = p;
			while (start < e && (*start == ' ' || *start == '\t'))
				start++;
			while (e > start && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			if (e - start > MAX_ADDRESS_LEN) {
				e = start + MAX_ADDRESS_LEN;
				while (e > start &&
				       ((unsigned char)*e & 0xc0) == 0x80)
					e--;
			}
			if (e > start && n == max)
				break;
			if (e > start) {
				if (n++ > 0)
					xbuf_addc(&b, ',');
				xbuf_addc(&b, '"');
				if (buf_append_json_str(
					&b, start, (size_t)(e - start)) != 0)
					fatalx("mime: buffer over its cap");
				xbuf_addc(&b, '"');
			}
			if (*p == '\0')
				break;
			start = p + 1;
		}
	}
	xbuf_addc(&b, ']');
	return buf_take(&b, NULL);
}

/*
 * A header value for display: GMime's unfolded, decoded text, made valid
 * UTF-8 (an encoded word may claim a charset its bytes are not in), and
 * cut at a character to the MAX_SUBJECT_LEN bytes /v1 allows: a folded
 * header may be megabytes, which every GET of the message would send.
 */
static char *
display_dup(const char *v)
{
	char *g, *out;
	size_t n;

	if (v == NULL)
		return xstrdup("");
	g = g_utf8_validate(v, -1, NULL) ? NULL : g_utf8_make_valid(v, -1);
	out = xstrdup(g != NULL ? g : v);
	g_free(g);
	n = strlen(out);
	if (n > MAX_SUBJECT_LEN) {
		n = MAX_SUBJECT_LEN;
		while (n > 0 && ((unsigned char)out[n] & 0xc0) == 0x80)
			n--;
		out[n] = '\0';
	}
	return out;
}

/* The display fields, from the header block (from: the From value). */
static void
take_display(const struct message_head *hf, const char *from,
	     const struct message_limits *lim, struct store_message *m)
{
	char *v;

	m->header_from = display_dup(from);
	v = message__head_value(hf, MESSAGE_HEAD_SUBJECT);
	m->subject = display_dup(v);
	g_free(v);
	v = message__head_value(hf, MESSAGE_HEAD_TO);
	m->to_json = to_json(v, lim->max_recipients);
	g_free(v);
}

/*
 * Appends the lines from p to end: with CRLF line ends when lf_only, and
 * without the fields dropped_name() names when drop (p..end being a header
 * block that check_head() passed).
 */
static void
add_lines(struct buf *b, const char *p, const char *end, bool lf_only,
	  bool drop)
{
	const char *nl, *eol, *colon;
	bool skip = false;

	if (!lf_only && !drop) {
		xbuf_add(b, p, (size_t)(end - p));
		return;
	}
	for (; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		eol = nl != NULL ? nl : end;
		/* A continuation goes with the field its first line named. */
		if (drop && *p != ' ' && *p != '\t') {
			colon = memchr(p, ':', (size_t)(eol - p));
			skip = colon != NULL &&
			       dropped_name(p, (size_t)(colon - p));
		}
		if (!skip && !lf_only)
			xbuf_add(b, p,
				 (size_t)((nl != NULL ? nl + 1 : end) - p));
		else if (!skip) {
			xbuf_add(b, p, (size_t)(eol - p));
			if (nl != NULL)
				xbuf_add(b, "\r\n", 2);
		}
		if (nl == NULL)
			break;
	}
}

/*
 * The stored bytes: the added headers, then the client's message (with
 * CRLF line ends when it had LF only, and without its Bcc fields).  Over
 * the cap (counted before the Bcc fields go): 413.
 */
static int
take_mime(const char *raw, size_t len, const struct scan *sc,
	  const struct message_head *hf, bool has_date, bool has_mid,
	  const struct message_limits *lim, struct store_message *m,
	  struct message_error *err)
{
	struct buf b;
	char domain[256];
	size_t need = len + (sc->lf_only ? sc->nlines : 0);

	buf_init(&b, SIZE_MAX);
	if (!has_date)
		message__date_add(&b, m->created_ms);
	if (!has_mid) {
		msgid_domain(m->mail_from, m->header_from, domain,
			     sizeof(domain));
		xbuf_adds(&b, "Message-Id: <");
		xbuf_adds(&b, m->id);
		xbuf_addc(&b, '@');
		xbuf_adds(&b, domain);
		xbuf_adds(&b, ">\r\n");
	}
	if (b.len + need > lim->max_message_bytes) {
		buf_cleanup(&b);
		return message__fail(err, 413, "too_large",
				     "message: larger than %zu bytes",
				     lim->max_message_bytes);
	}
	xbuf_reserve(&b, need);
	add_lines(&b, raw, raw + sc->head_len, sc->lf_only, hf->dropped > 0);
	add_lines(&b, raw + sc->head_len, raw + len, sc->lf_only, false);
	m->mime = buf_take(&b, &m->mime_len);
	return 0;
}

int
message_from_mime(const char *raw, size_t len,
		  const struct message_envelope *env,
		  const struct message_limits *lim, struct store_message **out,
		  struct message_error *err)
{
	struct store_message *m = NULL;
	struct message_head hf;
	struct scan sc;
	char *from = NULL;
	bool has_date = false, has_mid = false;
	int rc = -1;

	*out = NULL;
	if (len > lim->max_message_bytes)
		return message__fail(err, 413, "too_large",
				     "message: larger than %zu bytes",
				     lim->max_message_bytes);
	if (scan_bytes(raw, len, &sc, err) != 0 ||
	    check_head(raw, sc.head_len, err) != 0)
		return -1;
	if (message__head_fields(raw, sc.head_len, &hf) != 0)
		return message__fail(err, 400, "invalid_field",
				     "message: cannot read the headers");
	from = message__head_value(&hf, MESSAGE_HEAD_FROM);
	if (check_fields(&hf, from, &has_date, &has_mid, err) != 0)
		goto out;
	m = xcalloc(1, sizeof(*m));
	if (take_envelope(env, lim, m, err) != 0)
		goto out;
	id_new(m->id);
	m->status = MSG_QUEUED;
	m->created_ms = m->updated_ms = now_ms();
	m->tried = xstrdup("");
	take_display(&hf, from, lim, m);
	if (take_mime(raw, len, &sc, &hf, has_date, has_mid, lim, m, err) != 0)
		goto out;
	*out = m;
	m = NULL;
	rc = 0;
out:
	store_message_free(m);
	g_free(from);
	return rc;
}
