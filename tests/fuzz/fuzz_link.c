/*
 * libFuzzer target for the agent protocol's decoders: the input is split
 * into frames as a link_conn would, and every frame's payload is handed to
 * every decoder (not only the one its type byte names), so that each
 * decoder sees arbitrary bytes.  Decoders must never crash, leak or read
 * out of bounds; a decoded job must point inside the input.
 */
#include "link/link.h"

#include <stdint.h>
#include <stdlib.h>

static void
decode_all(const uint8_t *p, size_t n)
{
	struct link_hello h;
	struct link_challenge c;
	struct link_auth a;
	struct link_welcome w;
	struct link_error e;
	struct link_heartbeat hb;
	struct link_job j;
	struct link_result r;

	(void)link_decode_hello(p, n, &h);
	(void)link_decode_challenge(p, n, &c);
	(void)link_decode_auth(p, n, &a);
	(void)link_decode_welcome(p, n, &w);
	(void)link_decode_error(p, n, &e);
	(void)link_decode_heartbeat(p, n, &hb);
	(void)link_decode_result(p, n, &r);
	if (link_decode_job(p, n, &j) == 0) {
		if (j.mime < p || j.mime + j.mime_len != p + n)
			abort();
		link_job_cleanup(&j);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *payload;
	size_t plen, consumed, off = 0;
	int type, rc;

	/* The whole input as one payload, then as a stream of frames. */
	decode_all(data, size);
	while (off < size) {
		rc = link_frame_split(data + off, size - off, LINK_CTRL_MAX,
				      &type, &payload, &plen, &consumed);
		if (rc != 1)
			break;
		if (consumed > size - off ||
		    payload + plen != data + off + consumed)
			abort();
		decode_all(payload, plen);
		off += consumed;
	}
	return 0;
}
