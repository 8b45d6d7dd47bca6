/*
 * libFuzzer target for smtp_cmd_parse(), the SMTP intake's command
 * parser: the input is split into lines at LF (a CR before it dropped, as
 * the session does) and each line of at most SMTP_LINE_MAX bytes is
 * parsed.  Any bytes must give a command or a refusal with a code of the
 * 5xx family and an enhanced code, never a crash, a read past the line or
 * a path longer than SMTP_PATH_MAX.
 */
#include "intake/smtp_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
one_line(const char *p, size_t n)
{
	char line[SMTP_LINE_MAX + 1];
	struct smtp_cmd c;
	struct smtp_reply r;

	if (n > SMTP_LINE_MAX)
		return;
	memcpy(line, p, n);
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	if (smtp_cmd_parse(line, n, &c, &r) != 0) {
		if (r.code < 500 || r.code > 555 || r.ehn == NULL ||
		    r.text == NULL || r.ehn[0] != '5')
			abort();
		return;
	}
	if (c.arg == NULL || strlen(c.path) > SMTP_PATH_MAX)
		abort();
	if (c.verb == SMTP_VERB_AUTH && c.mech == NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		one_line(p, (size_t)((nl != NULL ? nl : end) - p));
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	return 0;
}
