/*
 * libFuzzer target holding mime.c's hand header reader
 * (message__head_fields() and message__head_value()) to GMime's parser,
 * which message_from_mime() used before: for any header block that
 * check_head() would let through (every line "name:" with a name of
 * printable ASCII, or a continuation after the first, valid UTF-8, no
 * control character but TAB, CRLF throughout or LF throughout, no empty
 * line), both must find the same number of From, Date, Message-ID,
 * Subject and To fields and the same first value of each.  Other inputs
 * are skipped: message_from_mime() refuses them before reading fields.
 */
#include "gmime_head_oracle.h"
#include "intake/message_int.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const field_names[MESSAGE_HEAD_NFIELDS] = {
    "From", "Date", "Message-ID", "Subject", "To"};

/* One line: a field's first line, or a continuation when not first. */
static bool
line_ok(const char *p, size_t len, bool first)
{
	size_t i;

	if (len == 0)
		return false;
	if (p[0] == ' ' || p[0] == '\t')
		return !first;
	for (i = 0; i < len && p[i] >= 33 && p[i] <= 126 && p[i] != ':'; i++)
		;
	return i > 0 && i < len && p[i] == ':';
}

/* What check_head() and scan_bytes() let through as a header block. */
static bool
block_ok(const char *h, size_t n, bool *lf_only)
{
	const char *p = h, *end = h + n, *nl;
	size_t i, len;

	if (memchr(h, '\0', n) != NULL || !g_utf8_validate_len(h, n, NULL))
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)h[i] < 0x20 && h[i] != '\t' &&
		    h[i] != '\r' && h[i] != '\n')
			return false;
	*lf_only = memchr(h, '\r', n) == NULL;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = (size_t)((nl != NULL ? nl : end) - p);
		if (nl != NULL && !*lf_only) {
			if (len == 0 || p[len - 1] != '\r')
				return false;
			len--;
		}
		if (memchr(p, '\r', len) != NULL || len > 998 ||
		    !line_ok(p, len, p == h))
			return false;
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool inited;
	const char *h = (const char *)data;
	struct message_head hf;
	GMimeObject *o;
	const char *want;
	char *got;
	bool lf_only = false, same;
	int i, count;

	if (!inited) {
		message_init();
		inited = true;
	}
	if (!block_ok(h, size, &lf_only))
		return 0;
	o = oracle_parse(h, size, lf_only);
	if (o == NULL || message__head_fields(h, size, &hf) != 0)
		abort(); /* GMime or the reader refused a valid block */
	for (i = 0; i < MESSAGE_HEAD_NFIELDS; i++) {
		count = oracle_count(o, field_names[i], &want);
		got = message__head_value(&hf, (enum message_head_id)i);
		same = hf.f[i].count == count &&
		       (want == NULL) == (got == NULL) &&
		       (want == NULL || strcmp(want, got) == 0);
		if (!same) {
			fprintf(stderr, "%s: %d/%d \"%s\"/\"%s\"\n",
				field_names[i], hf.f[i].count, count,
				got != NULL ? got : "-",
				want != NULL ? want : "-");
			abort();
		}
		g_free(got);
	}
	g_object_unref(o);
	return 0;
}
