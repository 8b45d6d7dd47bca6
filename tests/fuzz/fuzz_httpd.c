/*
 * libFuzzer target for the HTTP request head (server/httpd.h): any bytes,
 * fed to httpd_head_scan in two pieces (the first byte of the input picks
 * the cut, as the network would split them), then to httpd_head_parse
 * when a head is found.  Never a crash, a leak or a read past the input;
 * the promises hold: the end of a head lies within the bytes given and
 * ends in an empty line, every header name and value is a NUL-terminated
 * string inside the buffer, a length is set only when announced, and a
 * good head's path starts with '/'.
 */
#include "server/httpd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_head(const char *buf, size_t len, const struct httpd_head *h)
{
	size_t i;

	if (h->method == NULL || h->path[0] != '/' || h->target < buf ||
	    h->target >= buf + len || h->nheaders > HTTPD_HEADERS_MAX)
		abort();
	for (i = 0; i < h->nheaders; i++) {
		const char *n = h->headers[i].name, *v = h->headers[i].value;

		if (n < buf || n + strlen(n) >= buf + len || *n == '\0')
			abort();
		if (*v != '\0' && (v < buf || v + strlen(v) >= buf + len))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct httpd_head h;
	size_t cut, scanned = 0, end = 0;
	enum httpd_head_rc rc;
	char *buf;

	if (size < 1 || size > HTTPD_HEAD_MAX + 1)
		return 0;
	cut = data[0] % size;
	data++;
	size--;
	buf = malloc(size > 0 ? size : 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	rc = httpd_head_scan(buf, cut, &scanned, &end);
	if (rc == HTTPD_HEAD_MORE)
		rc = httpd_head_scan(buf, size, &scanned, &end);
	if (rc == HTTPD_HEAD_OK) {
		if (end < 4 || end > size ||
		    memcmp(buf + end - 4, "\r\n\r\n", 4))
			abort();
		rc = httpd_head_parse(buf, end, &h);
		if (rc == HTTPD_HEAD_OK)
			check_head(buf, end, &h);
		else if (rc != HTTPD_HEAD_BAD && rc != HTTPD_HEAD_TOO_BIG &&
			 rc != HTTPD_HEAD_CHUNKED && rc != HTTPD_HEAD_VERSION)
			abort();
	}
	free(buf);
	return 0;
}
