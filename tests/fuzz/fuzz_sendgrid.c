/*
 * libFuzzer target for the SendGrid translator (intake/dropin.h): any
 * bytes must give either /v1 bodies or a refusal with a status and a
 * message, never a crash or a leak; every body it gives must be valid
 * JSON that the /v1 builder either builds or refuses with a code (it
 * never sees something the translator should have caught as NUL).  Small
 * limits reach the recipient and size refusals.
 */
#include "intake/dropin.h"
#include "intake/message.h"
#include "store/store.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	static const struct message_limits lim = {
	    .max_message_bytes = 16384,
	    .max_recipients = 8,
	};
	struct dropin_batch b;
	struct message_error err;
	struct store_message *m;
	size_t i, total = 0;

	if (!inited) {
		message_init();
		inited = 1;
	}
	memset(&err, 0, sizeof(err));
	if (dropin_sendgrid((const char *)data, size, &lim, 65536, &b, &err) !=
	    0) {
		if (b.n != 0 || err.message[0] == '\0' ||
		    (err.http_status != 400 && err.http_status != 413))
			abort();
		return 0;
	}
	if (b.n == 0)
		abort();
	for (i = 0; i < b.n; i++) {
		total += b.len[i];
		if (strlen(b.json[i]) != b.len[i])
			abort();
		memset(&err, 0, sizeof(err));
		m = NULL;
		if (message_from_json(b.json[i], b.len[i], &lim, &m, &err) ==
		    0) {
			if (m == NULL || m->nrcpt == 0)
				abort();
			store_message_free(m);
		} else if (m != NULL || err.code[0] == '\0' ||
			   strcmp(err.code, "invalid_json") == 0) {
			abort(); /* the translator writes valid JSON */
		}
	}
	if (total > 65536)
		abort();
	dropin_batch_cleanup(&b);
	return 0;
}
