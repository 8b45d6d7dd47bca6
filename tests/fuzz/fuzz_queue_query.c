/*
 * libFuzzer target for front_queue_parse(), the query string of
 * GET /v1/messages (server/front_queue.c): any bytes give either
 * parameters or a reason, never a crash, a leak or a read past the input.
 * The promises hold: on success the status is -1 or a status, the limit
 * 1 to STORE_LIST_MAX, provider and before NUL-terminated printable
 * ASCII within their caps; on failure the reason is a non-empty string
 * and the parameters are zeroed.
 */
#include "server/http_front_int.h"
#include "store/store.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_text(const char *s, size_t cap)
{
	size_t i, n = strnlen(s, cap + 1);

	if (n > cap)
		abort();
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct front_queue_params p, zero;
	char why[160];
	char *copy;

	/* Not NUL-terminated, as the parser is promised it need not be. */
	copy = malloc(size > 0 ? size : 1);
	if (copy == NULL)
		return 0;
	if (size > 0)
		memcpy(copy, data, size);
	why[0] = '\0';
	if (front_queue_parse(copy, size, &p, why, sizeof(why)) != 0) {
		memset(&zero, 0, sizeof(zero));
		if (why[0] == '\0' || memcmp(&p, &zero, sizeof(p)) != 0)
			abort();
	} else {
		if (p.status < -1 || p.status >= MSG_NSTATUS)
			abort();
		if (p.limit < 1 || p.limit > STORE_LIST_MAX)
			abort();
		check_text(p.provider, STORE_LIST_PROVIDER_MAX);
		check_text(p.before, STORE_CURSOR_MAX);
	}
	free(copy);
	return 0;
}
