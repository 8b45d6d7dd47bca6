/*
 * libFuzzer target for SMTP AUTH's decoders, which take a client's bytes
 * before it has authenticated: the input (cut at its first NUL, as the
 * session's line reader hands over a C string) goes to both the PLAIN and
 * the LOGIN decoder.  They must never crash, leak or write past their
 * fields; when one accepts, its fields fit SMTP_AUTH_FIELD_MAX, PLAIN's
 * user and password are not empty, and a refusal leaves empty strings.
 */
#include "intake/smtp_auth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size + 1);
	char user[SMTP_AUTH_FIELD_MAX + 1], pass[SMTP_AUTH_FIELD_MAX + 1];
	char field[SMTP_AUTH_FIELD_MAX + 1];

	if (in == NULL)
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';
	if (smtp_auth_plain_decode(in, user, pass) == 0) {
		if (user[0] == '\0' || pass[0] == '\0' ||
		    strlen(user) > SMTP_AUTH_FIELD_MAX ||
		    strlen(pass) > SMTP_AUTH_FIELD_MAX)
			abort();
	} else if (user[0] != '\0' || pass[0] != '\0') {
		abort();
	}
	if (smtp_auth_login_decode(in, field) == 0) {
		if (strlen(field) > SMTP_AUTH_FIELD_MAX)
			abort();
	} else if (field[0] != '\0') {
		abort();
	}
	free(in);
	return 0;
}
