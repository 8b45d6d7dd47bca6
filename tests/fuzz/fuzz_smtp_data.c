/*
 * libFuzzer target for the SMTP DATA reader (smtp_data_feed): the first
 * two input bytes pick the cap and a packet size, the rest is the stream
 * after "354".  The same stream is fed in one piece and in packets of
 * that size; both must agree (where the end is, how many bytes were
 * taken, the message kept), because the packet boundaries are the
 * attacker's choice.  The message never passes its cap and holds no bare
 * LF; the bytes taken end with CRLF "." CRLF exactly when the end was
 * found (or the stream starts with "." CRLF).
 */
#include "intake/smtp_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t
feed(struct smtp_data *d, const char *in, size_t n, size_t packet)
{
	size_t off = 0, k, got;

	while (off < n && d->state != SMTP_DATA_DONE) {
		k = n - off < packet ? n - off : packet;
		got = smtp_data_feed(d, in + off, k);
		if (got > k || (got < k && d->state != SMTP_DATA_DONE))
			abort();
		off += got;
	}
	return off;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_data a, b;
	const char *in = (const char *)data + 2;
	size_t n, max, packet, ta, tb, i;

	if (size < 2)
		return 0;
	max = (size_t)data[0] * 8;
	packet = (size_t)data[1] % 17 + 1;
	n = size - 2;
	smtp_data_init(&a, max);
	smtp_data_init(&b, max);
	ta = feed(&a, in, n, n > 0 ? n : 1);
	tb = feed(&b, in, n, packet);
	if (ta != tb || a.state != b.state || a.over != b.over ||
	    a.len != b.len || (a.len > 0 && memcmp(a.p, b.p, a.len) != 0))
		abort();
	if (a.len > max || (a.over && a.len != 0))
		abort();
	for (i = 0; i < a.len; i++)
		if (a.p[i] == '\n' && (i == 0 || a.p[i - 1] != '\r'))
			abort();
	if (a.state == SMTP_DATA_DONE &&
	    !(ta == 3 ? memcmp(in, ".\r\n", 3) == 0
		      : ta >= 5 && memcmp(in + ta - 5, "\r\n.\r\n", 5) == 0))
		abort();
	smtp_data_cleanup(&a);
	smtp_data_cleanup(&b);
	return 0;
}
