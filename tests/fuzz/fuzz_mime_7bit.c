/*
 * libFuzzer target for mime_7bit, the smtp agent's conversion of an
 * 8-bit message for a smarthost without 8BITMIME: GMime parses the
 * client's message, re-encodes its parts and writes it back.  Any bytes
 * must give a result (converted, not MIME, or unreadable), never a crash
 * or a leak; a converted message must end every line with CRLF (a bare CR
 * or LF next to a dot is SMTP smuggling at the next hop) and be no larger
 * than a bounded multiple of the input (base64 and quoted-printable at
 * worst triple a byte, with line ends).
 */
#include "agent/mime_7bit.h"

#include <gmime/gmime.h>

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	uint8_t *out = NULL;
	size_t n = 0, i;
	int rc;

	if (!ready) {
		g_mime_init();
		ready = 1;
	}
	rc = mime_7bit(data, size, &out, &n);
	if (rc != 0) {
		if ((rc != 1 && rc != -1) || out != NULL)
			abort();
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (out[i] == '\r' && (i + 1 == n || out[i + 1] != '\n'))
			abort();
		if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
			abort();
	}
	if (n > 8 * size + 4096)
		abort();
	free(out);
	return 0;
}
