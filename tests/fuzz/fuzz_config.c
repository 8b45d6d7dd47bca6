/*
 * libFuzzer target for the configuration reader (config_load_string, the
 * INI text through our line reader and inih) and the api_keys_file rule
 * (config_api_keys_parse).  A file may be half-written, binary, or made
 * by a hand that means harm: the reader must never crash, leak or read
 * past the text, and what it accepts or refuses must agree with itself:
 * success leaves no error, failure leaves at least one, each naming the
 * file.  The input is split at its first byte 0x01: before it the INI
 * text (cut at a NUL, as a C string), after it a keys file (NULs kept).
 */
#include "common/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
key_seen(const char *key, size_t klen, void *arg)
{
	size_t *total = arg;

	/* A key is never empty and never starts or ends with a blank. */
	if (klen == 0 || key[0] == ' ' || key[0] == '\t' ||
	    key[klen - 1] == ' ' || key[klen - 1] == '\r' || key[0] == '#' ||
	    memchr(key, '\n', klen) != NULL)
		abort();
	*total += klen;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	const uint8_t *split = memchr(data, 0x01, size);
	size_t ini_len = split != NULL ? (size_t)(split - data) : size;
	size_t n = 0, total = 0, i;
	char *text = malloc(ini_len + 1);
	int rc;

	if (text == NULL)
		return 0;
	memcpy(text, data, ini_len);
	text[ini_len] = '\0';
	rc = config_load_string(text, "fuzz.ini", &cfg, &errs);
	if ((rc == 0) != (errs.n == 0) || (rc == 0) != (cfg != NULL))
		abort();
	for (i = 0; i < errs.n; i++)
		if (strncmp(errs.msg[i], "fuzz.ini", 8) != 0)
			abort();
	config_free(cfg);
	config_errors_cleanup(&errs);
	free(text);
	if (split != NULL) {
		const char *keys = (const char *)split + 1;
		size_t klen = size - ini_len - 1;

		rc = config_api_keys_parse(keys, klen, key_seen, &total, &n);
		if (rc != 0 &&
		    (rc != -EINVAL || memchr(keys, '\0', klen) == NULL))
			abort();
		if (total > klen)
			abort();
	}
	return 0;
}
