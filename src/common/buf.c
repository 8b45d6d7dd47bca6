/*
 * The capped buffer (buf.h).  Growth doubles, so appends are amortized
 * O(1); the cap is checked before any allocation, so a hostile length
 * never makes us allocate past it.
 */
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
buf_init(struct buf *b, size_t max)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
	b->fixed = false;
}

void
buf_init_fixed(struct buf *b, char *storage, size_t size)
{
	if (storage == NULL || size == 0)
		fatalx("- buf init_fixed without storage");
	b->p = storage;
	b->p[0] = '\0';
	b->len = 0;
	b->cap = size;
	b->max = size - 1;
	b->fixed = true;
}

void
buf_cleanup(struct buf *b)
{
	if (b->fixed) {
		buf_reset(b);
		return;
	}
	free(b->p);
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

int
buf_reserve(struct buf *b, size_t more)
{
	size_t need, cap;

	if (more > b->max || b->len > b->max - more)
		return -E2BIG;
	need = b->len + more + 1;
	if (need <= b->cap)
		return 0;
	if (b->fixed)
		return -E2BIG; /* only if someone raised max past the storage */
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	b->p = xrealloc(b->p, cap);
	b->p[b->len] = '\0'; /* a first allocation holds nothing yet */
	b->cap = cap;
	return 0;
}

void
buf_commit(struct buf *b, size_t n)
{
	if (n > b->cap - b->len - 1)
		fatalx("- buf commit past the reserved room n=%zu", n);
	b->len += n;
	b->p[b->len] = '\0';
}

int
buf_append(struct buf *b, const void *data, size_t n)
{
	int rc = buf_reserve(b, n);

	if (rc != 0)
		return rc;
	if (n > 0)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int
buf_appends(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int
buf_appendf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	rc = buf_reserve(b, (size_t)n);
	if (rc != 0)
		return rc;
	va_start(ap, fmt);
	(void)vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

/* The escapes; -E2BIG may leave part of s appended. */
static int
json_str(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, run = 0;
	int rc;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7];
		size_t elen = 2;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		rc = buf_append(b, s + run, i - run);
		if (rc != 0)
			return rc;
		esc[0] = '\\';
		switch (c) {
		case '"':
		case '\\':
			esc[1] = (char)c;
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			elen = 6;
			break;
		}
		rc = buf_append(b, esc, elen);
		if (rc != 0)
			return rc;
		run = i + 1;
	}
	return buf_append(b, s + run, n - run);
}

int
buf_append_json_str(struct buf *b, const char *s, size_t n)
{
	size_t mark = b->len;
	int rc = json_str(b, s, n);

	if (rc != 0 && b->p != NULL) {
		b->len = mark;
		b->p[mark] = '\0';
	}
	return rc;
}

char *
buf_take(struct buf *b, size_t *len)
{
	char *p = b->p;

	if (len != NULL)
		*len = b->len;
	if (b->fixed) {
		p = xmalloc(b->len + 1);
		memcpy(p, b->p, b->len + 1);
		buf_reset(b);
		return p;
	}
	if (p == NULL)
		p = xstrdup("");
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}
