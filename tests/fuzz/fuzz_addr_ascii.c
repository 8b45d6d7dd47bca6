/*
 * libFuzzer target for an address's ASCII form (common/envelope.h), which
 * the agents compute from addresses clients wrote: any bytes (cut at the
 * first NUL) give an answer without a crash.  A form, when there is one,
 * is 7-bit, at most ENVELOPE_ADDR_MAX bytes, keeps the local part byte
 * for byte, and is its own form (converting it again changes nothing);
 * the intake's form agrees with it; an envelope of that one address needs
 * SMTPUTF8 exactly when it has no form.
 */
#include "common/envelope.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
seven_bit(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *a = malloc(size + 1), *out, *again, *al;
	const char *form, *at;
	const char *const none[1] = {NULL};
	int rc;

	if (a == NULL)
		return 0;
	memcpy(a, data, size);
	a[size] = '\0';
	rc = envelope_addr_ascii(a, &out);
	if (envelope_needs_smtputf8(a, none, 0) != (rc != 0))
		abort();
	al = envelope_addr_alabels(a);
	if (rc == 0) {
		form = out != NULL ? out : a;
		if (!seven_bit(form) ||
		    (out != NULL && strlen(out) > ENVELOPE_ADDR_MAX))
			abort();
		if (out != NULL) {
			at = strrchr(a, '@');
			if (at == NULL ||
			    strncmp(out, a, (size_t)(at - a) + 1) != 0)
				abort();
		}
		if (envelope_addr_ascii(form, &again) != 0 || again != NULL)
			abort();
		if (strcmp(al, form) != 0)
			abort();
	}
	free(al);
	free(out);
	free(a);
	return 0;
}
