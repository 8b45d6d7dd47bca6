/*
 * mime_7bit: an 8-bit message made 7-bit for a smarthost without
 * 8BITMIME.  The converted parts carry their new encoding and decode to
 * the same bytes, the rest is kept as written (headers, other parts,
 * boundaries), every line ends CRLF, and a message that is not MIME is
 * left to go as it is.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/mime_7bit.h"

#include <gmime/gmime.h>
#include <stdlib.h>
#include <string.h>

static void
convert(const char *in, uint8_t **out, size_t *n)
{
	assert_int_equal(mime_7bit((const uint8_t *)in, strlen(in), out, n), 0);
}

/* No byte over 127, and no line end but CRLF. */
static void
assert_7bit_crlf(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		assert_true(p[i] < 0x80);
		if (p[i] == '\n')
			assert_true(i > 0 && p[i - 1] == '\r');
		if (p[i] == '\r')
			assert_true(i + 1 < n && p[i + 1] == '\n');
	}
}

/* The text of the first leaf part, decoded, as GMime reads out. */
static char *
first_text(const uint8_t *p, size_t n)
{
	GMimeStream *s = g_mime_stream_mem_new_with_buffer((const char *)p, n);
	GMimeParser *parser = g_mime_parser_new_with_stream(s);
	GMimeMessage *m = g_mime_parser_construct_message(parser, NULL);
	GMimeObject *part;
	GMimeStream *mem;
	GByteArray *ba;
	char *text;

	assert_non_null(m);
	part = g_mime_message_get_mime_part(m);
	if (GMIME_IS_MULTIPART(part))
		part = g_mime_multipart_get_part(GMIME_MULTIPART(part), 0);
	mem = g_mime_stream_mem_new();
	assert_true(g_mime_data_wrapper_write_to_stream(
			g_mime_part_get_content(GMIME_PART(part)), mem) >= 0);
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	text = strndup((const char *)ba->data, ba->len);
	g_object_unref(mem);
	g_object_unref(parser);
	g_object_unref(s);
	g_object_unref(m);
	return text;
}

static void
test_single_part(void **state)
{
	static const char in[] =
	    "Received: from client\r\n  by relay; Tue, 1 Dec 2026\r\n"
	    "From: A <a@example.com>\r\nTo: b@example.net\r\n"
	    "Subject: =?utf-8?q?caf=C3=A9?=\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n"
	    "caf\xc3\xa9 au lait\r\n.a dot first\r\nthe end\r\n";
	uint8_t *out;
	size_t n;
	char *text, *s;

	(void)state;
	convert(in, &out, &n);
	assert_7bit_crlf(out, n);
	s = strndup((const char *)out, n);
	/* The headers as written, the encoding said anew. */
	assert_memory_equal(s, in, strstr(in, "Content-Transfer") - in);
	assert_non_null(strstr(s, "Content-Transfer-Encoding: "));
	assert_null(strstr(s, "8bit"));
	text = first_text(out, n);
	assert_string_equal(text, "caf\xc3\xa9 au lait\r\n.a dot first\r\n"
				  "the end\r\n");
	free(text);
	free(s);
	free(out);
}

static void
test_multipart_keeps_other_parts(void **state)
{
	static const char in[] =
	    "From: a@example.com\r\nTo: b@example.net\r\nSubject: s\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
	    "preamble\r\n--XX\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n\r\n"
	    "na\xc3\xafve\r\n--XX\r\n"
	    "Content-Type: application/octet-stream\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n"
	    "--XX--\r\nepilogue\r\n";
	uint8_t *out;
	size_t n;
	char *s, *text;

	(void)state;
	convert(in, &out, &n);
	assert_7bit_crlf(out, n);
	s = strndup((const char *)out, n);
	assert_non_null(strstr(s, "Content-Transfer-Encoding: base64\r\n\r\n"
				  "AAECAwQF\r\n--XX--\r\n"));
	assert_non_null(strstr(s, "boundary=\"XX\""));
	text = first_text(out, n);
	assert_string_equal(text, "na\xc3\xafve");
	free(text);
	free(s);
	free(out);
}

/* Not MIME: nothing to re-encode; it goes as it is (1), untouched. */
static void
test_not_mime(void **state)
{
	static const char in[] = "From: a@example.com\r\nSubject: s\r\n\r\n"
				 "caf\xc3\xa9\r\n";
	uint8_t *out = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(mime_7bit((const uint8_t *)in, strlen(in), &out, &n),
			 1);
	assert_null(out);
}

static int
setup(void **state)
{
	(void)state;
	g_mime_init();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	g_mime_shutdown();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_single_part),
	    cmocka_unit_test(test_multipart_keeps_other_parts),
	    cmocka_unit_test(test_not_mime),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
