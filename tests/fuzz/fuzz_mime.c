/*
 * libFuzzer target for message_from_mime(), the raw RFC 5322 intake: any
 * bytes must give either a message or a refusal with a code, never a
 * crash or a leak.  The first line of the input, when it starts with
 * "env:", is the envelope ("env: SENDER RCPT RCPT...", "<>" for the
 * null sender), so the fuzzer
 * reaches the envelope checks too; otherwise a fixed one is used.  The
 * limits are small so that the too_large paths are reached.  A stored
 * message keeps the promises of the function: CRLF line ends, lines of at
 * most 998 bytes, within the cap, a Date and a Message-Id header, and the
 * client's bytes at its end, less its Bcc and Resent-Bcc fields (which
 * strip_bcc() takes out its own way, line by line).
 */
#include "fuzz_envelope.h"
#include "intake/message.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Is the line at p (n bytes with its line end) a Bcc field's first? */
static bool
bcc_line(const char *p, size_t n)
{
	return (n >= 4 && strncasecmp(p, "bcc:", 4) == 0) ||
	       (n >= 11 && strncasecmp(p, "resent-bcc:", 11) == 0);
}

/*
 * The CRLF message raw without the Bcc and Resent-Bcc fields of its header
 * block (up to the first empty line), with their continuations; malloc'd,
 * its length in *out_len.
 */
static char *
strip_bcc(const char *raw, size_t len, size_t *out_len)
{
	char *out = malloc(len + 1);
	const char *p = raw, *end = raw + len, *nl;
	size_t o = 0, n;
	bool skip = false, head = true;

	if (out == NULL)
		abort();
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = (size_t)((nl != NULL ? nl + 1 : end) - p);
		if (head && n == 2 && p[0] == '\r' && nl != NULL)
			head = false; /* the empty line: the body follows */
		if (!head)
			skip = false;
		else if (*p != ' ' && *p != '\t')
			skip = bcc_line(p, n);
		if (!skip) {
			memcpy(out + o, p, n);
			o += n;
		}
		p += n;
	}
	*out_len = o;
	return out;
}

/* A line that starts "Date:" in any case (GMime reads "DAte:" too). */
static bool
has_date(const char *p)
{
	for (;;) {
		if (strncasecmp(p, "date:", 5) == 0)
			return true;
		if ((p = strchr(p, '\n')) == NULL)
			return false;
		p++;
	}
}

static void
check_message(const struct store_message *m, const char *raw, size_t len,
	      size_t max)
{
	size_t i, line = 0;

	char *want;
	size_t want_len;

	if (m == NULL || m->mail_from == NULL || m->nrcpt == 0 ||
	    m->mime_len > max || strlen(m->mime) != m->mime_len)
		abort();
	for (i = 0; i < m->mime_len; i++) {
		if (m->mime[i] == '\n') {
			if (i == 0 || m->mime[i - 1] != '\r')
				abort();
			line = 0;
		} else if (++line > 999) /* 998 and the CR */
			abort();
	}
	/* CRLF input is kept exactly, at the end, but for its Bcc fields. */
	if (memchr(raw, '\r', len) != NULL) {
		want = strip_bcc(raw, len, &want_len);
		if (m->mime_len < want_len ||
		    memcmp(m->mime + m->mime_len - want_len, want, want_len) !=
			0)
			abort();
		free(want);
	}
	/* to_json is held to /v1's bounds: max_recipients entries of 998
	 * bytes, each at most six bytes of JSON a byte, quoted, with a comma.
	 */
	if (m->to_json == NULL ||
	    strlen(m->to_json) > 2 + FUZZ_ENV_MAX_RCPT * (6 * 998 + 3))
		abort();
	if (!has_date(m->mime))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	static const struct message_limits lim = {
	    .max_message_bytes = 16384,
	    .max_recipients = FUZZ_ENV_MAX_RCPT,
	};
	struct store_message *m = NULL;
	struct message_envelope env;
	struct fuzz_envelope fe;
	struct message_error err;
	char *copy;
	size_t off;

	if (!inited) {
		message_init();
		inited = 1;
	}
	if ((copy = fuzz_copy(data, size)) == NULL)
		return 0;
	memset(&env, 0, sizeof(env));
	off = fuzz_take_envelope(copy, size, &fe);
	env.mail_from = fe.mail_from;
	env.rcpt = fe.rcpt;
	env.nrcpt = fe.nrcpt;
	memset(&err, 0, sizeof(err));
	if (message_from_mime(copy + off, size - off, &env, &lim, &m, &err) ==
	    0) {
		check_message(m, copy + off, size - off, lim.max_message_bytes);
		store_message_free(m);
	} else if (m != NULL || err.code[0] == '\0' ||
		   (err.http_status != 400 && err.http_status != 413)) {
		abort();
	}
	free(copy);
	return 0;
}
