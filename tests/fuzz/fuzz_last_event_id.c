/*
 * libFuzzer target for the Last-Event-ID parser of GET /v1/events
 * (http_events_parse_id): the input, cut at its first NUL, is the header's
 * value.  The parser must never crash or read past the end, and what it
 * takes must be exactly 1 to 20 digits whose value, printed again, is the
 * input without its leading zeros: nothing else (a sign, a space, an
 * overflow) may get through.
 */
#include "server/http_events.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	char back[32];
	const char *digits;
	uint64_t v = 0;
	size_t i, n;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	n = strlen(s);
	if (http_events_parse_id(s, &v)) {
		if (n == 0 || n > 20)
			abort();
		for (i = 0; i < n; i++)
			if (s[i] < '0' || s[i] > '9')
				abort();
		digits = s;
		while (digits[0] == '0' && digits[1] != '\0')
			digits++;
		snprintf(back, sizeof(back), "%" PRIu64, v);
		if (strcmp(back, digits) != 0)
			abort();
	}
	free(s);
	return 0;
}
