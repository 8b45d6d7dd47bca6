/*
 * libFuzzer target for the cross-site and rebinding check of the HTTP
 * front (http_origin_check): the input's first byte says whether API keys
 * are set, the rest is cut at NULs into method, path, Host, Origin and
 * Sec-Fetch-Site (a field past the input's end is a header absent).  The
 * check must never crash or read past a value, and its verdicts must keep
 * the rules it promises: a request without browser headers, or a GET of
 * anything but the data routes, always goes on; a request it lets through
 * with Sec-Fetch-Site said same-origin or none; with keys, a same-origin
 * request always goes on.
 */
#include "server/http_origin.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *f[5] = {NULL, NULL, NULL, NULL, NULL};
	struct http_origin_req r;
	const char *why;
	char *s;
	size_t i, at = 1;

	if (size < 1)
		return 0;
	s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	for (i = 0; i < 5 && at < size; i++) {
		f[i] = s + at;
		at += strlen(s + at) + 1;
	}
	memset(&r, 0, sizeof(r));
	r.method = f[0] != NULL ? f[0] : "GET";
	r.path = f[1] != NULL ? f[1] : "/";
	r.host = f[2];
	r.origin = f[3];
	r.fetch_site = f[4];
	r.keyed = (data[0] & 1) != 0;
	why = http_origin_check(&r);
	if (why != NULL && r.origin == NULL && r.fetch_site == NULL)
		abort();
	if (why != NULL && strcmp(r.method, "GET") == 0 &&
	    strncmp(r.path, "/v1/", 4) != 0 && strncmp(r.path, "/v3/", 4) != 0)
		abort();
	if (why == NULL && r.fetch_site != NULL &&
	    strncmp(r.path, "/v1/", 4) == 0 &&
	    strcasecmp(r.fetch_site, "same-origin") != 0 &&
	    strcasecmp(r.fetch_site, "none") != 0)
		abort();
	if (why != NULL && r.keyed && r.fetch_site != NULL &&
	    strcasecmp(r.fetch_site, "same-origin") == 0)
		abort();
	free(s);
	return 0;
}
