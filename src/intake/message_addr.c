/*
 * Addresses of a JSON submission: reading one as the caller wrote it
 * ("addr", "Plain Name <addr>" by hand; anything else through GMime's
 * parser after a lexical screen), checking the addr-spec (dot-atom local
 * part at a host name), its IDN form for the envelope, and writing a list
 * of them as a folded address header (plain, quoted or RFC 2047 names).
 * Refusals name the field; nothing here is fatal but memory exhaustion.
 */
#include "intake/message_int.h"
#include "common/envelope.h"
#include "common/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
bool
message__domain_ok(const char *s, size_t n)
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

bool
message__addr_spec_ok(const char *a)
{
	const char *at = strrchr(a, '@');
	size_t n = strlen(a);

	if (at == NULL || n > MAX_ADDR_SPEC_LEN)
		return false;
	return local_ok(a, (size_t)(at - a)) &&
	       message__domain_ok(at + 1, n - (size_t)(at - a) - 1);
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
 * groups, routes, comments or domain literals (",;:()[]\\"), and inside a
 * quoted string no angle bracket after a comma.  Those shapes are refused
 * anyway (but the last, a rare display name), and keeping them from the
 * parser also keeps them from its error paths, some of which leak in GMime
 * 3.2.13 (found by fuzzing: "a <b@c>d>", "a@b c <d@e>", "a \"b,c>\"").
 * A bracket in a display name without a comma before it ("<i>x</i>"
 * <x@y>) is taken: no form of it leaked, and the console shows it as text.
 */
bool
message__addr_shape_ok(const char *s, size_t n)
{
	size_t i, lt = 0, gt = 0;
	bool quoted = false, comma = false;

	for (i = 0; i < n; i++) {
		if (quoted) {
			if (s[i] == '\\' && i + 1 < n)
				i++; /* the escaped byte is screened too */
			else if (s[i] == '"')
				quoted = false;
			/* GMime's recovery from a failed mailbox splits at a
			 * ',' inside quotes (escaped or not), and an angle
			 * bracket in what it then reads leaks ("a \"b,c>\"",
			 * "a \"b\\,c>\""): none after one, in this quoted
			 * string or a later one. */
			if (s[i] == ',')
				comma = true;
			else if (comma && (s[i] == '<' || s[i] == '>'))
				return false;
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
	list = internet_address_list_parse(message__parser_opts, copy);
	free(copy);
	if (list == NULL || internet_address_list_length(list) != 1) {
		message__invalid(b->err, field, "not a valid address");
		goto fail;
	}
	ia = internet_address_list_get_address(list, 0);
	if (!INTERNET_ADDRESS_IS_MAILBOX(ia)) {
		message__invalid(b->err, field,
				 "not a valid address (a group)");
		goto fail;
	}
	addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
	if (addr == NULL || !message__addr_spec_ok(addr) ||
	    !given_matches(s, n, addr)) {
		message__invalid(b->err, field, "not a valid address");
		goto fail;
	}
	name = internet_address_get_name(ia);
	/* An encoded-word may have smuggled a control character in. */
	for (i = 0; name != NULL && name[i] != '\0'; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) {
			message__invalid(b->err, field,
					 "contains a control character");
			goto fail;
		}
	if (name != NULL && !g_utf8_validate(name, -1, NULL)) {
		message__invalid(b->err, field, "not valid UTF-8");
		goto fail;
	}
	if (name != NULL && message__has_c1_or_separator(name, strlen(name))) {
		message__invalid(b->err, field,
				 "contains a control character or a line "
				 "separator (U+0080..U+009F, U+2028, U+2029)");
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
int
message__parse_mailbox(const struct build *b, const char *field, const cJSON *v,
		       struct mbox *mb)
{
	const char *s, *lt, *gt, *p, *e;
	size_t n;

	mb->addr[0] = '\0';
	mb->name = NULL;
	s = str_of(v, &n);
	if (s == NULL)
		return message__invalid(b->err, field, "must be a string");
	if (message__check_header_value(b, field, s, n, MAX_ADDRESS_LEN) != 0)
		return -1;
	if (!message__addr_shape_ok(s, n))
		return message__invalid(b->err, field, "not a valid address");
	if (memchr(s, '"', n) != NULL)
		return parse_mailbox_gmime(b, field, s, n, mb);
	lt = memchr(s, '<', n);
	if (lt != NULL) {
		/* message__addr_shape_ok(): one '>' after the '<', then only
		 * spaces. */
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
		return message__invalid(b->err, field, "not a valid address");
	memcpy(mb->addr, s, n);
	mb->addr[n] = '\0';
	if (!message__addr_spec_ok(mb->addr))
		return message__invalid(b->err, field, "not a valid address");
	if (p < e)
		mb->name = xstrndup(p, (size_t)(e - p));
	return 0;
}

bool
message__is_ascii(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return false;
	return true;
}

/*
 * The addr-spec with an internationalized domain in its ASCII (A-label)
 * form, for the envelope and the headers; malloc'd (envelope.h: one
 * conversion for the intake and the agents).
 */
char *
message__addr_ascii_domain(const struct mbox *mb)
{
	return envelope_addr_alabels(mb->addr);
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

	addr = message__addr_ascii_domain(mb);
	if (mb->name == NULL) {
		xbuf_adds(out, addr);
		free(addr);
		return;
	}
	n = strlen(mb->name);
	if (force_b)
		message__encode_b(out, mb->name, n);
	else if (plain_phrase(mb->name, n, false))
		xbuf_add(out, mb->name, n);
	else if (message__is_ascii(mb->name, n) &&
		 strstr(mb->name, "=?") != NULL)
		message__encode_b(out, mb->name,
				  n); /* readers decode even in quotes */
	else if (message__is_ascii(mb->name, n)) {
		xbuf_addc(out, '"');
		for (i = 0; i < n; i++) {
			if (mb->name[i] == '"' || mb->name[i] == '\\')
				xbuf_addc(out, '\\');
			xbuf_addc(out, mb->name[i]);
		}
		xbuf_addc(out, '"');
	} else {
		enc = g_mime_utils_header_encode_phrase(message__format_opts,
							mb->name, "utf-8");
		if (enc != NULL)
			xbuf_adds(out, enc);
		else
			message__encode_b(out, mb->name, n);
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
void
message__hdr_add_mailboxes(struct build *b, const char *name,
			   const struct mbox *mb, size_t n)
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
			if (message__fold_add(&b->out, &col, b->tmp.p,
					      b->tmp.len) != 0)
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

void
message__mboxes_free(struct mbox *mb, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(mb[i].name);
	free(mb);
}
