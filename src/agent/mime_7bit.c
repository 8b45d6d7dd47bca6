/*
 * mime_7bit: see mime_7bit.h.  GMime writes the message back with DOS
 * line ends; what it writes of its own (a line end after an epilogue)
 * may still be a bare LF, so the result passes through one last pass
 * that makes every line end CRLF, as the DATA stuffer expects and as the
 * store holds every message: a bare CR or LF next to a dot is how SMTP
 * smuggling starts at the next hop.
 */
#include "agent/mime_7bit.h"

#include "common/util.h"

#include <gmime/gmime.h>
#include <string.h>

/* src with every bare LF and bare CR made CRLF, into a new buffer. */
static uint8_t *
crlf(const uint8_t *src, size_t n, size_t *outlen)
{
	size_t i, k = 0;
	uint8_t *dst = xmalloc(2 * n + 1); /* each byte at most doubles */

	for (i = 0; i < n; i++) {
		if (src[i] == '\r') {
			dst[k++] = '\r';
			dst[k++] = '\n';
			if (i + 1 < n && src[i + 1] == '\n')
				i++;
		} else if (src[i] == '\n') {
			dst[k++] = '\r';
			dst[k++] = '\n';
		} else {
			dst[k++] = src[i];
		}
	}
	*outlen = k;
	return dst;
}

int
mime_7bit(const uint8_t *in, size_t len, uint8_t **out, size_t *outlen)
{
	GMimeStream *stream, *mem;
	GMimeParser *parser;
	GMimeMessage *msg;
	GMimeFormatOptions *fo;
	GByteArray *ba;
	int rc = -1;

	stream = g_mime_stream_mem_new_with_buffer((const char *)in, len);
	parser = g_mime_parser_new_with_stream(stream);
	msg = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	g_object_unref(stream);
	if (msg == NULL)
		return -1;
	if (g_mime_object_get_header(GMIME_OBJECT(msg), "MIME-Version") ==
	    NULL) {
		g_object_unref(msg);
		return 1;
	}
	g_mime_object_encode(GMIME_OBJECT(msg), GMIME_ENCODING_CONSTRAINT_7BIT);
	fo = g_mime_format_options_clone(NULL);
	g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
	mem = g_mime_stream_mem_new();
	if (g_mime_object_write_to_stream(GMIME_OBJECT(msg), fo, mem) >= 0) {
		ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
		*out = crlf(ba->data, ba->len, outlen);
		rc = 0;
	}
	g_object_unref(mem);
	g_mime_format_options_free(fo);
	g_object_unref(msg);
	return rc;
}
