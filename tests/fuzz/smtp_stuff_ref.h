/*
 * The reference dot-stuffing that smtp_dialogue_stuff() is held to, by
 * its unit test and its fuzz target: byte by byte, as curl did and as
 * smtp_dialogue_stuff() did before it went by lines.  Every "." at a
 * line's start (after CRLF) doubled, then the end of data, ".\r\n", after
 * a CRLF of its own when msg does not end with one.  out needs room for
 * 2 * len + 5 bytes; returns the bytes written.
 */
#ifndef SHIVNERI_SMTP_STUFF_REF_H
#define SHIVNERI_SMTP_STUFF_REF_H

#include <stddef.h>
#include <string.h>

static inline size_t
smtp_stuff_ref(const unsigned char *msg, size_t len, unsigned char *out)
{
	size_t i, n = 0;
	int bol = 2;

	for (i = 0; i < len; i++) {
		if (msg[i] == '.' && bol == 2)
			out[n++] = '.';
		out[n++] = msg[i];
		bol = msg[i] == '\r' ? 1 : msg[i] == '\n' && bol == 1 ? 2 : 0;
	}
	if (bol != 2) {
		memcpy(out + n, "\r\n", 2);
		n += 2;
	}
	memcpy(out + n, ".\r\n", 3);
	return n + 3;
}

#endif
