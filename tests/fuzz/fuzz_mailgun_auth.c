/*
 * libFuzzer target for the Mailgun drop-in's reading of its head: the
 * Authorization value (HTTP Basic "api:KEY", base64 through OpenSSL's
 * EVP_DecodeBlock) and the DOMAIN of the path.  Any bytes (cut at the
 * first NUL, as a header value is) must give a refusal, or a key that is
 * NUL-free, shorter than its buffer and what the base64 says after
 * "api:"; a domain taken must be 1 to 253 bytes of letters, digits,
 * hyphens and dots with no empty label.
 */
#include "server/front_mailgun.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_domain(const char *s, size_t n)
{
	size_t i;

	if (!front_mailgun_domain_ok(s, n))
		return;
	if (n == 0 || n > 253 || s[0] == '.' || s[n - 1] == '.' ||
	    strstr(s, "..") != NULL)
		abort();
	for (i = 0; i < n; i++)
		if (strchr("abcdefghijklmnopqrstuvwxyz"
			   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.",
			   s[i]) == NULL)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *v = malloc(size + 1), key[64];
	size_t len = 0;

	if (v == NULL)
		return 0;
	memcpy(v, data, size);
	v[size] = '\0';
	memset(key, 0x5a, sizeof(key));
	if (front_mailgun_basic_key(v, key, sizeof(key), &len)) {
		if (len >= sizeof(key) || strlen(key) != len ||
		    strncasecmp(v, "Basic ", 6) != 0)
			abort();
	}
	check_domain(v, strlen(v));
	free(v);
	return 0;
}
