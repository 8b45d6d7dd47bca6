/*
 * libFuzzer target for the JSON submission parser and MIME builder: any
 * bytes must give either a message or a refusal with a code, never a
 * crash, a leak or a header that was not asked for.  The limits are small
 * so that the fuzzer reaches the too_large and too-many-recipients paths.
 * A built message must keep the composer's promises: CRLF line ends,
 * lines of at most 998 bytes, and no Bcc header.
 */
#include "intake/message.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	static const struct message_limits lim = {
	    .max_message_bytes = 32768,
	    .max_recipients = 8,
	};
	struct store_message *m = NULL;
	struct message_error err;

	if (!inited) {
		message_init();
		inited = 1;
	}
	memset(&err, 0, sizeof(err));
	if (message_from_json((const char *)data, size, &lim, &m, &err) == 0) {
		/* A built message has an envelope and no bare line feed. */
		if (m == NULL || m->nrcpt == 0 || m->mail_from == NULL ||
		    m->mime_len > lim.max_message_bytes ||
		    strlen(m->mime) != m->mime_len)
			abort();
		size_t line = 0;
		bool in_head = true;
		for (size_t i = 0; i < m->mime_len; i++) {
			if (m->mime[i] == '\n') {
				if (i == 0 || m->mime[i - 1] != '\r')
					abort();
				if (line == 1) /* the blank line: CR only */
					in_head = false;
				line = 0;
				continue;
			}
			if (line == 0 && in_head &&
			    strncasecmp(m->mime + i, "bcc:", 4) == 0)
				abort();
			if (++line > 999) /* 998 and the CR */
				abort();
		}
		store_message_free(m);
	} else if (m != NULL || err.code[0] == '\0' ||
		   (err.http_status != 400 && err.http_status != 413)) {
		abort();
	}
	return 0;
}
