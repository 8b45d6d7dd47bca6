/*
 * The request head of httpd.h, as two pure functions over bytes (no I/O,
 * so tests/fuzz/fuzz_httpd.c can feed them anything).  httpd_head_scan
 * checks the framing of the raw bytes as they arrive, which http-parser
 * (without its compile-time strict mode, as Debian builds it) does not:
 * every line ends in CRLF, no bare CR or LF, no control byte, no obs-fold,
 * no overlong line.  httpd_head_parse then runs http-parser over the whole
 * head for the method, the target, the version and the header tokens, and
 * adds the rules that make request smuggling impossible: one
 * Content-Length of plain digits, no Transfer-Encoding at all (chunked is
 * refused with 411, anything else with 400).  Both refuse rather than
 * repair: a peer that sends an ambiguous head gets a 400 and is closed.
 */
#include "server/httpd.h"

#include <http_parser.h>
#include <string.h>
#include <strings.h>

static bool
bad_byte(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

enum httpd_head_rc
httpd_head_scan(const char *buf, size_t len, size_t *scanned, size_t *end)
{
	size_t pos = *scanned, j;

	/* *scanned is always the start of a line not yet whole. */
	for (;;) {
		for (j = pos; j < len; j++) {
			unsigned char c = (unsigned char)buf[j];

			if (c == '\r')
				break;
			if (bad_byte(c))
				return HTTPD_HEAD_BAD; /* LF alone, NUL, ... */
		}
		if (j - pos > HTTPD_LINE_MAX)
			return HTTPD_HEAD_TOO_BIG;
		if (j + 1 >= len)
			return HTTPD_HEAD_MORE; /* no CR yet, or CR last */
		if (buf[j + 1] != '\n')
			return HTTPD_HEAD_BAD; /* CR alone */
		if (j == pos) {
			/* An empty line: the end, or junk before a request. */
			if (pos == 0)
				return HTTPD_HEAD_BAD;
			*end = j + 2;
			*scanned = j + 2;
			return HTTPD_HEAD_OK;
		}
		if (pos > 0 && (buf[pos] == ' ' || buf[pos] == '\t'))
			return HTTPD_HEAD_BAD; /* obs-fold */
		pos = j + 2;
		*scanned = pos;
	}
}

/* What http-parser's callbacks collect. */
struct collect {
	struct httpd_head *h;
	const char *url;
	size_t url_len;
	const char *name[HTTPD_HEADERS_MAX];
	size_t name_len[HTTPD_HEADERS_MAX];
	const char *value[HTTPD_HEADERS_MAX];
	size_t value_len[HTTPD_HEADERS_MAX];
	size_t n;
	bool too_many;
	bool complete;
};

static int
on_url(http_parser *p, const char *at, size_t len)
{
	struct collect *c = p->data;

	/* One contiguous buffer: a second call continues the first. */
	if (c->url == NULL)
		c->url = at;
	c->url_len = (size_t)(at + len - c->url);
	return 0;
}

static int
on_field(http_parser *p, const char *at, size_t len)
{
	struct collect *c = p->data;

	if (c->n > 0 && c->value[c->n - 1] == NULL &&
	    c->name[c->n - 1] + c->name_len[c->n - 1] == at) {
		c->name_len[c->n - 1] += len;
		return 0;
	}
	if (c->n == HTTPD_HEADERS_MAX) {
		c->too_many = true;
		return 1;
	}
	c->name[c->n] = at;
	c->name_len[c->n] = len;
	c->value[c->n] = NULL;
	c->value_len[c->n] = 0;
	c->n++;
	return 0;
}

static int
on_value(http_parser *p, const char *at, size_t len)
{
	struct collect *c = p->data;

	if (c->n == 0)
		return 1;
	/* An empty value is reported as 0 bytes at the next line's start:
	 * it must not point there (the name that follows would be cut). */
	if (len == 0)
		return 0;
	if (c->value[c->n - 1] == NULL)
		c->value[c->n - 1] = at;
	c->value_len[c->n - 1] = (size_t)(at + len - c->value[c->n - 1]);
	return 0;
}

static int
on_headers_complete(http_parser *p)
{
	struct collect *c = p->data;

	c->complete = true;
	/* Read here: the flags reset when a next message would start. */
	c->h->keep_alive = http_should_keep_alive(p) != 0;
	return 0;
}

/* NUL-terminates names and values in place (the byte after each is ':',
 * a space or CR, which the scan and http-parser vouch for). */
static void
terminate(struct collect *c, char *buf)
{
	size_t i, vl;
	char *v;

	for (i = 0; i < c->n; i++) {
		buf[c->name[i] - buf + (ptrdiff_t)c->name_len[i]] = '\0';
		c->h->headers[i].name = c->name[i];
		if (c->value[i] == NULL) {
			c->h->headers[i].value = "";
			continue;
		}
		v = buf + (c->value[i] - buf);
		vl = c->value_len[i];
		while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			vl--;
		v[vl] = '\0';
		c->h->headers[i].value = v;
	}
	c->h->nheaders = c->n;
}

/* RFC 9110 tchar: http-parser, not built strict, lets a space through. */
static bool
token_valid(const char *s)
{
	static const char extra[] = "!#$%&'*+-.^_`|~";

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr(extra, *s) != NULL))
			return false;
	return true;
}

/* Strict: 1 to 18 digits, nothing else (no sign, no space, no list). */
static bool
parse_length(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i == 18)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return i > 0;
}

/* The framing rules of the file comment, over the terminated headers. */
static enum httpd_head_rc
check_framing(struct httpd_head *h)
{
	size_t i, ncl = 0, nte = 0;
	bool chunked = false;

	for (i = 0; i < h->nheaders; i++) {
		const char *n = h->headers[i].name, *v = h->headers[i].value;

		if (!token_valid(n))
			return HTTPD_HEAD_BAD; /* "Transfer-Encoding : x" */
		if (strcasecmp(n, "Content-Length") == 0) {
			if (++ncl > 1 || !parse_length(v, &h->content_length))
				return HTTPD_HEAD_BAD;
			h->has_length = true;
		} else if (strcasecmp(n, "Transfer-Encoding") == 0) {
			nte++;
			chunked = strcasecmp(v, "chunked") == 0;
		} else if (strcasecmp(n, "Expect") == 0 &&
			   strcasecmp(v, "100-continue") == 0) {
			h->expect_continue = true;
		}
	}
	if (nte > 1 || (nte == 1 && (ncl > 0 || !chunked)))
		return HTTPD_HEAD_BAD;
	return nte == 1 ? HTTPD_HEAD_CHUNKED : HTTPD_HEAD_OK;
}

/* The target: origin-form only, its path copied out for routing. */
static enum httpd_head_rc
set_target(struct collect *c, char *buf)
{
	struct httpd_head *h = c->h;
	size_t n;

	if (c->url == NULL || c->url_len == 0 || c->url[0] != '/')
		return HTTPD_HEAD_BAD;
	buf[c->url - buf + (ptrdiff_t)c->url_len] = '\0';
	h->target = c->url;
	n = strcspn(h->target, "?#");
	if (n >= sizeof(h->path))
		return HTTPD_HEAD_TOO_BIG;
	memcpy(h->path, h->target, n);
	h->path[n] = '\0';
	return HTTPD_HEAD_OK;
}

enum httpd_head_rc
httpd_head_parse(char *buf, size_t len, struct httpd_head *h)
{
	http_parser_settings s;
	http_parser p;
	struct collect c;
	enum httpd_head_rc rc;
	size_t n;

	memset(h, 0, sizeof(*h));
	memset(&c, 0, sizeof(c));
	memset(&s, 0, sizeof(s));
	c.h = h;
	s.on_url = on_url;
	s.on_header_field = on_field;
	s.on_header_value = on_value;
	s.on_headers_complete = on_headers_complete;
	http_parser_init(&p, HTTP_REQUEST);
	p.data = &c;
	n = http_parser_execute(&p, &s, buf, len);
	if (c.too_many)
		return HTTPD_HEAD_TOO_BIG;
	if (HTTP_PARSER_ERRNO(&p) != HPE_OK || n != len || !c.complete)
		return HTTPD_HEAD_BAD;
	if (p.http_major != 1 || p.http_minor > 1)
		return HTTPD_HEAD_VERSION;
	h->method = http_method_str((enum http_method)p.method);
	h->minor = p.http_minor;
	terminate(&c, buf);
	rc = set_target(&c, buf);
	if (rc != HTTPD_HEAD_OK)
		return rc;
	return check_framing(h);
}
