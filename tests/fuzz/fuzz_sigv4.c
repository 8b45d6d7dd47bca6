/*
 * libFuzzer target for the SigV4 signer: the input is a request written
 * as the AWS test suite writes one (a "METHOD TARGET" line, "Name:value"
 * header lines, a blank line, the body), cut into the signer's fields.
 * The signer must never crash, leak or read out of bounds, and whenever it
 * signs, the Authorization value must name the signed headers it built.
 */
#include "agent/sigv4.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_HEADERS 80 /* more than the signer takes, to reach its cap */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *
next_line(char **p)
{
	char *line = *p, *nl;

	if (line == NULL)
		return NULL;
	nl = strchr(line, '\n');
	if (nl != NULL) {
		*nl = '\0';
		*p = nl + 1;
	} else {
		*p = NULL;
	}
	return line;
}

static void
sign(char *text, size_t len)
{
	static const struct sigv4_credentials cr = {"AKID", "secret",
						    "us-east-1", "ses"};
	struct sigv4_header h[FUZZ_HEADERS];
	struct sigv4_request r = {0};
	struct sigv4_result res;
	char *p = text, *line, *sp;

	line = next_line(&p);
	sp = strchr(line, ' ');
	r.method = line;
	r.path = "/";
	if (sp != NULL) {
		*sp = '\0';
		r.path = sp + 1;
		sp = strchr(sp + 1, '?');
		if (sp != NULL) {
			*sp = '\0';
			r.query = sp + 1;
		}
	}
	while ((line = next_line(&p)) != NULL && *line != '\0' &&
	       r.nheaders < FUZZ_HEADERS) {
		sp = strchr(line, ':');
		h[r.nheaders].name = line;
		h[r.nheaders++].value = sp != NULL ? sp + 1 : "";
		if (sp != NULL)
			*sp = '\0';
	}
	r.headers = h;
	r.body = p;
	r.body_len = p != NULL ? len - (size_t)(p - text) : 0;
	sigv4_result_init(&res);
	if (sigv4_sign(&r, &cr, "20150830T123600Z", &res) == 0 &&
	    strstr(res.authz.p, "SignedHeaders=") == NULL)
		abort();
	sigv4_result_cleanup(&res);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	sign(text, size);
	free(text);
	return 0;
}
