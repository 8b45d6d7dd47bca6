/*
 * libFuzzer target for http_console_etag_match(), the web console's
 * reading of a client's If-None-Match header: any bytes (cut at the first
 * NUL, as a header value is) must give an answer without a crash or a read
 * past the value, and a value that does not hold the tag's bytes (nor a
 * '*') never matches.
 */
#include "server/http_console.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *tag = "\"0123456789abcdef0123456789abcdef\"";
	char *v = malloc(size + 1);

	if (v == NULL)
		return 0;
	memcpy(v, data, size);
	v[size] = '\0';
	if (http_console_etag_match(v, tag) && strchr(v, '*') == NULL &&
	    strstr(v, tag) == NULL)
		abort();
	free(v);
	return 0;
}
