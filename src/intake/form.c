/*
 * The form parser (form.h).  Multipart is read in one forward pass with
 * memmem for each delimiter ("\r\n--BOUNDARY"), so the work is linear in
 * the body and the number of parts is capped before any is kept; a part's
 * header block is searched only within FORM_MAX_PART_HEAD bytes, so huge
 * part headers cost a bounded scan.  Values are not copied: a file of
 * megabytes stays where httpd read it.  Urlencoded bodies are decoded
 * into one copy owned by the form.  Everything refused says why in a
 * short phrase that never quotes the body.
 */
#include "intake/form.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int
fail(char *why, size_t whysz, const char *s)
{
	snprintf(why, whysz, "%s", s);
	return -1;
}

static bool
type_is(const char *ctype, const char *want)
{
	size_t n = strlen(want);

	while (*ctype == ' ' || *ctype == '\t')
		ctype++;
	return strncasecmp(ctype, want, n) == 0 &&
	       (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ' ||
		ctype[n] == '\t');
}

bool
form_is_multipart(const char *ctype)
{
	return ctype != NULL && type_is(ctype, "multipart/form-data");
}

bool
form_is_urlencoded(const char *ctype)
{
	return ctype != NULL &&
	       type_is(ctype, "application/x-www-form-urlencoded");
}

static bool
is_tspecial(unsigned char c)
{
	return c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

/* Steps p over one parameter's value, quoted or not, to its ';' or end. */
static const char *
param_skip(const char *p)
{
	bool q = false;

	for (; *p != '\0' && (q || *p != ';'); p++) {
		if (*p == '\\' && q && p[1] != '\0')
			p++;
		else if (*p == '"')
			q = !q;
	}
	return p;
}

/* The value at p (quoted or a token), unquoted, into a new string. */
static char *
param_value(const char *p, bool *bad)
{
	char *out = xmalloc(strlen(p) + 1);
	size_t i = 0;

	if (*p == '"') {
		for (p++; *p != '"'; p++) {
			if (*p == '\0') {
				free(out);
				*bad = true;
				return NULL;
			}
			if (*p == '\\' && p[1] != '\0')
				p++;
			out[i++] = *p;
		}
	} else {
		for (; *p != '\0' && !is_tspecial((unsigned char)*p); p++)
			out[i++] = *p;
	}
	out[i] = '\0';
	return out;
}

/*
 * The value of parameter name in a header value's "; a=b; c=\"d\"" list,
 * unquoted, into a new string; NULL when absent or malformed (*bad set).
 * A parameter given twice is malformed: readers disagree on which one
 * counts (the first here, the last elsewhere), so a part that one of
 * them reads as "from" must not be "bcc" to another.
 */
static char *
param_get(const char *v, const char *name, bool *bad)
{
	size_t n = strlen(name);
	const char *p = strchr(v, ';');
	char *out = NULL;

	while (p != NULL) {
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, name, n) == 0 && p[n] == '=') {
			if (out != NULL) {
				free(out);
				*bad = true;
				return NULL;
			}
			out = param_value(p + n + 1, bad);
			if (out == NULL)
				return NULL;
		}
		p = param_skip(p);
		p = *p == ';' ? p : NULL;
	}
	return out;
}

static void
field_free(struct form_field *f)
{
	free(f->name);
	free(f->filename);
	free(f->ctype);
	free(f->owned);
}

void
form_cleanup(struct form *fm)
{
	size_t i;

	if (fm == NULL)
		return;
	for (i = 0; i < fm->n; i++)
		field_free(&fm->f[i]);
	free(fm->f);
	fm->f = NULL;
	fm->n = 0;
}

static struct form_field *
field_add(struct form *fm)
{
	fm->f = xreallocarray(fm->f, fm->n + 1, sizeof(*fm->f));
	memset(&fm->f[fm->n], 0, sizeof(*fm->f));
	return &fm->f[fm->n++];
}

/* One header line of a part (no CRLF), applied to f; 0 or -1. */
static int
part_header(struct form_field *f, char *line, char *why, size_t whysz)
{
	char *colon = strchr(line, ':'), *v;
	bool bad = false;

	if (colon == NULL || colon == line)
		return fail(why, whysz, "a part header is not NAME: VALUE");
	*colon = '\0';
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
		;
	if (strcasecmp(line, "Content-Disposition") == 0) {
		if (!type_is(v, "form-data") || f->name != NULL)
			return fail(why, whysz,
				    "a part's Content-Disposition is not "
				    "form-data, or is given twice");
		f->name = param_get(v, "name", &bad);
		f->filename = param_get(v, "filename", &bad);
		if (bad || f->name == NULL || f->name[0] == '\0' ||
		    strlen(f->name) > FORM_MAX_NAME)
			return fail(why, whysz, "a part without a valid name");
	} else if (strcasecmp(line, "Content-Type") == 0) {
		if (f->ctype != NULL)
			return fail(why, whysz, "a part's Content-Type twice");
		f->ctype = xstrdup(v);
	} else if (strcasecmp(line, "Content-Transfer-Encoding") == 0) {
		if (strcasecmp(v, "binary") != 0 &&
		    strcasecmp(v, "8bit") != 0 && strcasecmp(v, "7bit") != 0)
			return fail(why, whysz,
				    "a part's transfer encoding is not "
				    "binary");
	}
	return 0;
}

/* The header block of a part (head, n bytes, no final CRLF CRLF). */
static int
part_headers(struct form_field *f, const char *head, size_t n, char *why,
	     size_t whysz)
{
	char line[FORM_MAX_PART_HEAD + 1];
	size_t i = 0, j;

	/* The whole block first, so a fold is named as one. */
	for (j = 0; j < n; j++) {
		unsigned char c = (unsigned char)head[j];
		if (c == '\r' && j + 1 < n && head[j + 1] == '\n') {
			j++;
			if (j + 1 < n &&
			    (head[j + 1] == ' ' || head[j + 1] == '\t'))
				return fail(why, whysz,
					    "a part header is folded");
		} else if (c == '\0' || c == '\r' || c == '\n') {
			return fail(why, whysz,
				    "a part header holds a control byte");
		}
	}
	if (n > 0 && (head[0] == ' ' || head[0] == '\t'))
		return fail(why, whysz, "a part header is folded");
	while (i < n) {
		const char *eol = memmem(head + i, n - i, "\r\n", 2);
		size_t ln = eol != NULL ? (size_t)(eol - head) - i : n - i;

		memcpy(line, head + i, ln);
		line[ln] = '\0';
		if (part_header(f, line, why, whysz) != 0)
			return -1;
		i += ln + 2;
	}
	if (f->name == NULL)
		return fail(why, whysz, "a part without Content-Disposition");
	return 0;
}

/* The boundary parameter of a multipart Content-Type, checked. */
static char *
boundary_of(const char *ctype, char *why, size_t whysz)
{
	bool bad = false;
	char *b = param_get(ctype, "boundary", &bad);
	size_t i, n;

	if (b == NULL || bad) {
		fail(why, whysz, "no boundary in the Content-Type");
		free(b);
		return NULL;
	}
	n = strlen(b);
	for (i = 0; i < n; i++)
		if ((unsigned char)b[i] < 32 || (unsigned char)b[i] > 126)
			break;
	if (n == 0 || n > FORM_BOUNDARY_MAX || i < n) {
		fail(why, whysz, "the boundary is not 1 to 70 characters");
		free(b);
		return NULL;
	}
	return b;
}

/*
 * After a delimiter at *pos: "--" ends the body (returns 1), else
 * transport padding and CRLF start a part (returns 0); -1 refuses.
 */
static int
after_delim(const char *body, size_t len, size_t *pos, char *why, size_t whysz)
{
	size_t p = *pos;

	if (len - p >= 2 && body[p] == '-' && body[p + 1] == '-')
		return 1;
	while (p < len && (body[p] == ' ' || body[p] == '\t'))
		p++;
	if (len - p < 2 || body[p] != '\r' || body[p + 1] != '\n')
		return fail(why, whysz, "a boundary line is not ended by CRLF");
	*pos = p + 2;
	return 0;
}

static int
parse_multipart(const char *ctype, const char *body, size_t len,
		struct form *out, char *why, size_t whysz)
{
	char *b = boundary_of(ctype, why, whysz), delim[FORM_BOUNDARY_MAX + 5];
	size_t dn, pos, hn;
	const char *hit;
	int rc = -1, r;

	if (b == NULL)
		return -1;
	dn = (size_t)snprintf(delim, sizeof(delim), "\r\n--%s", b);
	free(b);
	/* The first delimiter may open the body, without its CRLF. */
	if (len >= dn - 2 && memcmp(body, delim + 2, dn - 2) == 0) {
		pos = dn - 2;
	} else {
		hit = memmem(body, len, delim, dn);
		if (hit == NULL) {
			fail(why, whysz, "no boundary in the body");
			goto out;
		}
		pos = (size_t)(hit - body) + dn;
	}
	for (;;) {
		struct form_field *f;

		r = after_delim(body, len, &pos, why, whysz);
		if (r < 0)
			goto out;
		if (r == 1)
			break;
		if (out->n == FORM_MAX_PARTS) {
			fail(why, whysz, "more than 1000 parts");
			goto out;
		}
		f = field_add(out);
		hn = len - pos < FORM_MAX_PART_HEAD + 2
			 ? len - pos
			 : FORM_MAX_PART_HEAD + 2;
		if (hn >= 2 && body[pos] == '\r' && body[pos + 1] == '\n')
			hit = body + pos;
		else
			hit = memmem(body + pos, hn, "\r\n\r\n", 4);
		if (hit == NULL) {
			fail(why, whysz,
			     "a part's headers are over 8 KiB or not ended");
			goto out;
		}
		if (part_headers(f, body + pos, (size_t)(hit - body) - pos, why,
				 whysz) != 0)
			goto out;
		pos = (size_t)(hit - body) + (hit == body + pos ? 2 : 4);
		hit = memmem(body + pos, len - pos, delim, dn);
		if (hit == NULL) {
			fail(why, whysz, "the body ends before its boundary");
			goto out;
		}
		f->value = body + pos;
		f->len = (size_t)(hit - body) - pos;
		pos = (size_t)(hit - body) + dn;
	}
	rc = 0;
out:
	if (rc != 0)
		form_cleanup(out);
	return rc;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes s (n bytes) in place; returns the new length or -1. */
static ssize_t
url_decode(char *s, size_t n)
{
	size_t i, o = 0;
	int hi, lo;

	for (i = 0; i < n; i++) {
		if (s[i] == '+') {
			s[o++] = ' ';
		} else if (s[i] == '%') {
			if (n - i < 3)
				return -1;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			s[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			s[o++] = s[i];
		}
	}
	return (ssize_t)o;
}

static int
parse_urlencoded(const char *body, size_t len, struct form *out, char *why,
		 size_t whysz)
{
	size_t i = 0, end, eq;
	ssize_t nn, vn;

	while (i < len) {
		struct form_field *f;
		const char *amp = memchr(body + i, '&', len - i);

		end = amp != NULL ? (size_t)(amp - body) : len;
		if (end == i) {
			i++;
			continue;
		}
		if (out->n == FORM_MAX_PARTS) {
			form_cleanup(out);
			return fail(why, whysz, "more than 1000 fields");
		}
		f = field_add(out);
		const char *e = memchr(body + i, '=', end - i);
		eq = e != NULL ? (size_t)(e - body) : end;
		f->name = xmalloc(eq - i + 1);
		memcpy(f->name, body + i, eq - i);
		nn = url_decode(f->name, eq - i);
		vn = 0;
		f->owned = xmalloc(end - eq + 1);
		if (eq < end) {
			memcpy(f->owned, body + eq + 1, end - eq - 1);
			vn = url_decode(f->owned, end - eq - 1);
		}
		if (nn < 0 || vn < 0) {
			form_cleanup(out);
			return fail(why, whysz, "a bad %-escape");
		}
		f->name[nn] = '\0';
		f->owned[vn] = '\0';
		f->value = f->owned;
		f->len = (size_t)vn;
		if (nn == 0 || (size_t)nn > FORM_MAX_NAME ||
		    memchr(f->name, '\0', (size_t)nn) != NULL) {
			form_cleanup(out);
			return fail(why, whysz, "a field without a valid name");
		}
		i = end + 1;
	}
	return 0;
}

int
form_parse(const char *ctype, const char *body, size_t len, struct form *out,
	   char *why, size_t whysz)
{
	memset(out, 0, sizeof(*out));
	if (ctype == NULL)
		return -2;
	if (form_is_multipart(ctype))
		return parse_multipart(ctype, body, len, out, why, whysz);
	if (type_is(ctype, "application/x-www-form-urlencoded"))
		return parse_urlencoded(body, len, out, why, whysz);
	return -2;
}
