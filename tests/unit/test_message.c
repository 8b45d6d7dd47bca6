/*
 * Unit tests for the JSON-to-MIME builder: round trips parsed back with
 * GMime's parser (the proof that the hand-composed MIME is valid), then
 * one refusal per rule with its code and the field it names, and a run on
 * several threads at once.  The JSON strictness and the size limit are
 * in test_message_json.c.
 * Leaks on the refusal paths are caught by the ASan build.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "intake/message.h"
#include "store/store.h"
#include "common/buf.h"
#include "common/util.h"
#include "message_fixture.h"

#include <gmime/gmime.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every line of the message ends in CRLF and none is over 998 bytes. */
static void
assert_crlf(const struct store_message *m)
{
	size_t i, line = 0;

	assert_int_equal(strlen(m->mime), m->mime_len);
	for (i = 0; i < m->mime_len; i++) {
		if (m->mime[i] == '\n') {
			assert_true(i > 0 && m->mime[i - 1] == '\r');
			line = 0;
		} else if (m->mime[i] == '\r') {
			assert_true(i + 1 < m->mime_len &&
				    m->mime[i + 1] == '\n');
		} else
			assert_true(++line <= 998);
	}
}

/*
 * The body of test_round_trip's message: alternative text and html, then
 * the attachment, each read back.
 */
static void
check_round_trip_body(GMimeMessage *msg)
{
	GMimeObject *body, *alt, *att;
	GMimeDataWrapper *w;
	GMimeStream *out;
	GByteArray *bytes;
	char *t;

	body = g_mime_message_get_mime_part(msg);
	assert_true(GMIME_IS_MULTIPART(body));
	assert_int_equal(g_mime_multipart_get_count(GMIME_MULTIPART(body)), 2);
	alt = g_mime_multipart_get_part(GMIME_MULTIPART(body), 0);
	assert_true(GMIME_IS_MULTIPART(alt));
	assert_string_equal(g_mime_content_type_get_media_subtype(
				g_mime_object_get_content_type(alt)),
			    "alternative");
	t = part_text(g_mime_multipart_get_part(GMIME_MULTIPART(alt), 0));
	assert_non_null(strstr(t, "caf\xc3\xa9 at 5?"));
	g_free(t);
	t = part_text(g_mime_multipart_get_part(GMIME_MULTIPART(alt), 1));
	assert_non_null(strstr(t, "<p>Hi Bob</p>"));
	g_free(t);

	att = g_mime_multipart_get_part(GMIME_MULTIPART(body), 1);
	assert_true(GMIME_IS_PART(att));
	assert_string_equal(g_mime_part_get_filename(GMIME_PART(att)), "a.pdf");
	assert_int_equal(g_mime_part_get_content_encoding(GMIME_PART(att)),
			 GMIME_CONTENT_ENCODING_BASE64);
	w = g_mime_part_get_content(GMIME_PART(att));
	out = g_mime_stream_mem_new();
	g_mime_data_wrapper_write_to_stream(w, out);
	bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
	assert_int_equal(bytes->len, 12);
	assert_memory_equal(bytes->data, "%PDF-1.4\n\0\x01\xff", 12);
	g_object_unref(out);
}

/*
 * Internationalized domains go into the envelope and the headers as their
 * A-labels (common/envelope.h, the agents' conversion too), mapped as
 * UTS #46 maps them (upper case folded); a non-ASCII local part stays as
 * written (only SMTPUTF8 carries it).
 */
static void
test_idn_addresses(void **state)
{
	static const char json[] =
	    "{\"from\": \"Ann <ann@m\\u00fcnchen.example>\","
	    " \"to\": [\"zo\\u00eb@B\\u00dcCHER.example\", "
	    "\"bob@example.net\"],"
	    " \"subject\": \"idn\", \"text\": \"hi\"}";
	struct store_message *m = build_ok(json);

	(void)state;
	assert_string_equal(m->mail_from, "ann@xn--mnchen-3ya.example");
	assert_int_equal(m->nrcpt, 2);
	assert_string_equal(m->rcpt[0], "zo\xc3\xab@xn--bcher-kva.example");
	assert_string_equal(m->rcpt[1], "bob@example.net");
	assert_non_null(strstr(m->mime, "ann@xn--mnchen-3ya.example"));
	assert_non_null(strstr(m->mime, "@xn--bcher-kva.example"));
	store_message_free(m);
}

static void
test_round_trip(void **state)
{
	static const char json[] =
	    "{\"from\": \"J\\u00fcrgen <ann@example.com>\","
	    " \"to\": [\"bob@example.net\", \"Carol <carol@example.org>\"],"
	    " \"cc\": [\"dan@example.net\", \"BOB@example.net\"],"
	    " \"bcc\": [\"secret@hidden.example\"],"
	    " \"reply_to\": \"help@example.com\","
	    " \"subject\": \"H\\u00e9llo \\u65e5\\u672c\","
	    " \"text\": \"Hi Bob,\\ncaf\\u00e9 at 5?\\n\","
	    " \"html\": \"<p>Hi Bob</p>\","
	    " \"headers\": {\"X-Campaign\": \"c1\"},"
	    " \"attachments\": [{\"filename\": \"a.pdf\","
	    "   \"content_type\": \"application/pdf\","
	    "   \"content_base64\": \"JVBERi0xLjQKAAH/\"}],"
	    " \"tags\": [\"welcome\", \"q4\"]}";
	struct store_message *m = build_ok(json);
	GMimeMessage *msg;
	InternetAddressList *l;
	const char *s;
	char want_id[64];

	assert_true(id_valid(m->id));
	assert_int_equal(m->status, MSG_QUEUED);
	assert_string_equal(m->mail_from, "ann@example.com");
	/* BOB@ is the same mailbox as bob@: one envelope recipient. */
	assert_int_equal(m->nrcpt, 4);
	assert_string_equal(m->rcpt[0], "bob@example.net");
	assert_string_equal(m->rcpt[1], "carol@example.org");
	assert_string_equal(m->rcpt[2], "dan@example.net");
	assert_string_equal(m->rcpt[3], "secret@hidden.example");
	assert_string_equal(m->header_from, "J\xc3\xbcrgen <ann@example.com>");
	assert_string_equal(m->subject,
			    "H\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac");
	assert_string_equal(
	    m->to_json, "[\"bob@example.net\",\"Carol <carol@example.org>\"]");
	assert_string_equal(m->tags_json, "[\"welcome\",\"q4\"]");
	assert_true(m->created_ms > 0);
	assert_int_equal(m->created_ms, m->updated_ms);
	assert_crlf(m);
	assert_null(strstr(m->mime, "secret"));
	assert_null(strstr(m->mime, "hidden.example"));

	msg = parse_mime(m);
	l = g_mime_message_get_from(msg);
	assert_int_equal(internet_address_list_length(l), 1);
	assert_string_equal(
	    internet_address_get_name(internet_address_list_get_address(l, 0)),
	    "J\xc3\xbcrgen");
	l = g_mime_message_get_to(msg);
	assert_int_equal(internet_address_list_length(l), 2);
	assert_string_equal(
	    internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(
		internet_address_list_get_address(l, 1))),
	    "carol@example.org");
	assert_int_equal(
	    internet_address_list_length(g_mime_message_get_cc(msg)), 2);
	assert_int_equal(
	    internet_address_list_length(g_mime_message_get_bcc(msg)), 0);
	assert_int_equal(
	    internet_address_list_length(g_mime_message_get_reply_to(msg)), 1);
	assert_string_equal(g_mime_message_get_subject(msg),
			    "H\xc3\xa9llo \xe6\x97\xa5\xe6\x9c\xac");
	snprintf(want_id, sizeof(want_id), "%s@example.com", m->id);
	assert_string_equal(g_mime_message_get_message_id(msg), want_id);
	assert_non_null(g_mime_message_get_date(msg));
	s = g_mime_object_get_header(GMIME_OBJECT(msg), "X-Campaign");
	assert_non_null(s);
	assert_string_equal(s, "c1");

	check_round_trip_body(msg);
	g_object_unref(msg);
	store_message_free(m);
}

static void
test_to_string_text_only(void **state)
{
	struct store_message *m = build_ok(
	    "{\"from\": \"ann@example.com\", \"to\": \"bob@example.net\","
	    " \"text\": \"line one\\r\\nline two\\rthree\"}");
	GMimeMessage *msg;
	GMimeObject *body;
	char *t;

	assert_int_equal(m->nrcpt, 1);
	assert_string_equal(m->rcpt[0], "bob@example.net");
	assert_string_equal(m->to_json, "[\"bob@example.net\"]");
	assert_null(m->tags_json);
	assert_string_equal(m->subject, "");
	assert_crlf(m);
	msg = parse_mime(m);
	body = g_mime_message_get_mime_part(msg);
	t = part_text(body);
	/* Line ends are CRLF, and the last line gets one. */
	assert_string_equal(t, "line one\r\nline two\r\nthree\r\n");
	g_free(t);
	g_object_unref(msg);
	store_message_free(m);
}

static void
test_html_only_bcc_only(void **state)
{
	struct store_message *m = build_ok(
	    "{\"from\": \"ann@example.com\", \"bcc\": [\"x@example.net\"],"
	    " \"html\": \"<b>hi</b>\", \"cc\": null, \"tags\": []}");
	GMimeMessage *msg;

	assert_int_equal(m->nrcpt, 1);
	assert_string_equal(m->to_json, "[]");
	assert_null(m->tags_json);
	assert_null(strstr(m->mime, "x@example.net"));
	msg = parse_mime(m);
	assert_string_equal(g_mime_content_type_get_media_subtype(
				g_mime_object_get_content_type(
				    g_mime_message_get_mime_part(msg))),
			    "html");
	g_object_unref(msg);
	store_message_free(m);
}

/* Non-ASCII heavy text goes base64 and still decodes to the same text. */
static void
test_cjk_text(void **state)
{
	struct store_message *m = build_ok(
	    "{\"from\": \"ann@example.com\", \"to\": \"bob@example.net\","
	    " \"text\": \"\\u65e5\\u672c\\u8a9e\\n\\u65e5\\u672c\"}");
	GMimeMessage *msg;
	char *t;

	assert_non_null(strstr(m->mime, "base64"));
	msg = parse_mime(m);
	t = part_text(g_mime_message_get_mime_part(msg));
	assert_string_equal(
	    t,
	    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\r\n\xe6\x97\xa5\xe6\x9c\xac");
	g_free(t);
	g_object_unref(msg);
	store_message_free(m);
}

/*
 * Text holding a control byte is quoted-printable even when most of it is
 * 8-bit: in base64 each \u0001 escape (six bytes of JSON) would be 4/3 of
 * a byte of message, and the HTTP body cap (message_json_max_bytes) rests
 * on no escape shrinking by more than half.  Here: one "\u00e9" and nine
 * "\u0001" escapes a unit, 2 of 11 bytes 8-bit.
 */
static void
test_controls_never_base64(void **state)
{
	static const char unit[] = "\\u00e9\\u0001\\u0001\\u0001\\u0001"
				   "\\u0001\\u0001\\u0001\\u0001\\u0001";
	struct buf json;
	struct store_message *m;
	GMimeMessage *msg;
	char *t;
	size_t i, n = 200;

	(void)state;
	buf_init(&json, SIZE_MAX);
	assert_int_equal(buf_appends(&json, "{" BASE ", \"text\": \""), 0);
	for (i = 0; i < n; i++)
		assert_int_equal(buf_appends(&json, unit), 0);
	assert_int_equal(buf_appends(&json, "\"}"), 0);
	m = build_ok(json.p);
	assert_crlf(m);
	assert_null(strstr(m->mime, "base64"));
	assert_non_null(strstr(m->mime, "quoted-printable"));
	/* The escapes' share of the body: at least half of it arrives. */
	assert_true(m->mime_len * 2 >= n * (sizeof(unit) - 1));
	msg = parse_mime(m);
	t = part_text(g_mime_message_get_mime_part(msg));
	/* Read back whole (GMime may end it with a line break). */
	assert_true(strlen(t) >= n * 11);
	for (i = 0; i < n; i++)
		assert_memory_equal(t + i * 11,
				    "\xc3\xa9\x01\x01\x01\x01\x01\x01\x01"
				    "\x01\x01",
				    11);
	g_free(t);
	g_object_unref(msg);
	store_message_free(m);
	buf_cleanup(&json);
}

/* A 3000-byte ASCII line is wrapped by quoted-printable, not cut. */
static void
test_long_line(void **state)
{
	char json[4096], line[3001];
	struct store_message *m;
	GMimeMessage *msg;
	char *t;

	memset(line, 'z', 3000);
	line[3000] = '\0';
	snprintf(json, sizeof(json), "{" BASE ", \"text\": \"%s\"}", line);
	m = build_ok(json);
	assert_crlf(m);
	assert_non_null(strstr(m->mime, "quoted-printable"));
	msg = parse_mime(m);
	t = part_text(g_mime_message_get_mime_part(msg));
	assert_int_equal(strncmp(t, line, 3000), 0);
	g_free(t);
	g_object_unref(msg);
	store_message_free(m);
}

static void
test_missing(void **state)
{
	expect_err("{\"to\": \"bob@example.net\", \"text\": \"t\"}", 400,
		   "missing_field", "from");
	expect_err("{\"from\": \"ann@example.com\", \"text\": \"t\"}", 400,
		   "missing_field", "to");
	expect_err("{\"from\": \"ann@example.com\", \"to\": [], \"cc\": [],"
		   " \"text\": \"t\"}",
		   400, "missing_field", "to");
	expect_err("{" BASE "}", 400, "missing_field", "text");
	expect_err("{" BASE ", \"text\": null}", 400, "missing_field", "text");
	expect_err("{" BASE ", \"text\": \"t\", \"attachments\": [{"
		   "\"content_base64\": \"\"}]}",
		   400, "missing_field", "attachments[0].filename");
	expect_err("{" BASE ", \"text\": \"t\", \"attachments\": [{"
		   "\"filename\": \"a\"}]}",
		   400, "missing_field", "attachments[0].content_base64");
}

static void
test_wrong_types(void **state)
{
	expect_err("{\"from\": 1, \"to\": \"b@x.com\", \"text\": \"t\"}", 400,
		   "invalid_field", "from");
	expect_err("{\"from\": \"a@x.com\", \"to\": 1, \"text\": \"t\"}", 400,
		   "invalid_field", "to");
	expect_err("{\"from\": \"a@x.com\", \"to\": {}, \"text\": \"t\"}", 400,
		   "invalid_field", "to");
	expect_err("{\"from\": \"a@x.com\", \"to\": [1], \"text\": \"t\"}", 400,
		   "invalid_field", "to[0]");
	expect_err("{" BASE ", \"cc\": true, \"text\": \"t\"}", 400,
		   "invalid_field", "cc");
	expect_err("{" BASE ", \"cc\": [\"c@x.com\", []], \"text\": \"t\"}",
		   400, "invalid_field", "cc[1]");
	expect_err("{" BASE ", \"bcc\": 2.5, \"text\": \"t\"}", 400,
		   "invalid_field", "bcc");
	expect_err("{" BASE ", \"reply_to\": 5, \"text\": \"t\"}", 400,
		   "invalid_field", "reply_to");
	expect_err("{" BASE ", \"subject\": 5, \"text\": \"t\"}", 400,
		   "invalid_field", "subject");
	expect_err("{" BASE ", \"text\": [\"t\"]}", 400, "invalid_field",
		   "text");
	expect_err("{" BASE ", \"html\": {}}", 400, "invalid_field", "html");
	expect_err("{" BASE ", \"text\": \"t\", \"headers\": []}", 400,
		   "invalid_field", "headers");
	expect_err("{" BASE ", \"text\": \"t\", \"headers\": {\"X-A\": 1}}",
		   400, "invalid_field", "headers.X-A");
	expect_err("{" BASE ", \"text\": \"t\", \"attachments\": {}}", 400,
		   "invalid_field", "attachments");
	expect_err("{" BASE ", \"text\": \"t\", \"attachments\": [\"x\"]}", 400,
		   "invalid_field", "attachments[0]");
	expect_err("{" BASE ", \"text\": \"t\", \"attachments\": [{"
		   "\"filename\": 1, \"content_base64\": \"\"}]}",
		   400, "invalid_field", "attachments[0].filename");
	expect_err("{" BASE ", \"text\": \"t\", \"attachments\": [{"
		   "\"filename\": \"a\", \"content_type\": false,"
		   " \"content_base64\": \"\"}]}",
		   400, "invalid_field", "attachments[0].content_type");
	expect_err("{" BASE ", \"text\": \"t\", \"attachments\": [{"
		   "\"filename\": \"a\", \"content_base64\": 7}]}",
		   400, "invalid_field", "attachments[0].content_base64");
	expect_err("{" BASE ", \"text\": \"t\", \"tags\": \"x\"}", 400,
		   "invalid_field", "tags");
	expect_err("{" BASE ", \"text\": \"t\", \"tags\": [1]}", 400,
		   "invalid_field", "tags[0]");
}

static void
test_unknown_keys(void **state)
{
	expect_err("{" BASE ", \"text\": \"t\", \"priority\": 1}", 400,
		   "invalid_field", "priority");
	expect_err("{" BASE ", \"text\": \"t\", \"attachments\": [{"
		   "\"filename\": \"a\", \"content_base64\": \"\","
		   " \"inline\": true}]}",
		   400, "invalid_field", "attachments[0].inline");
}

static void
test_bad_addresses(void **state)
{
	static const char *const bad[] = {
	    "bob",
	    "bob@",
	    "@example.net",
	    "bob@example.net, eve@example.net",
	    "friends: bob@example.net;",
	    "bob@@example.net",
	    "a@b@example.net",
	    "bob@example..net",
	    "bob@-example.net",
	    "bob@[192.0.2.1]",
	    "\\\"b b\\\"@example.net",
	    "bob@example.net (comment)",
	    "bob @example.net",
	    ".bob@example.net",
	    "Bob <bob@example.net> trailing",
	    /* Shapes that reach leaking error paths inside GMime 3.2.13. */
	    "Ann <ann@exa>ple.com>",
	    "Ann x@example.org y <ann@example.com>",
	    "Doe, John <j@example.net>",
	    "<@route:bob@example.net>",
	    "\\\"Ann <bob@example.net>",
	    /* GMime splits these at the quoted ',' and leaks (found by
	     * fuzz_multipart): no angle bracket after a quoted comma. */
	    "Ann \\\"b,e>\\\"",
	    "Ann \\\"b,a@b <c\\\"",
	    "Ann \\\"b,e\\\\>\\\" <ann@example.com>",
	    "<>",
	    "",
	};
	char json[256];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		snprintf(
		    json, sizeof(json),
		    "{\"from\": \"ann@example.com\", \"to\": [\"ok@x.com\","
		    " \"%s\"], \"text\": \"t\"}",
		    bad[i]);
		expect_err(json, 400, "invalid_field", "to[1]: not a valid");
	}
	expect_err("{\"from\": \"ann\", \"to\": \"b@x.com\", \"text\": \"t\"}",
		   400, "invalid_field", "from");
	expect_err("{" BASE ", \"reply_to\": \"nope\", \"text\": \"t\"}", 400,
		   "invalid_field", "reply_to");
	expect_err("{" BASE ", \"bcc\": [\"x@y.com\", \"nope\"],"
		   " \"text\": \"t\"}",
		   400, "invalid_field", "bcc[1]");
	expect_err("{" BASE ", \"cc\": \"grp:;\", \"text\": \"t\"}", 400,
		   "invalid_field", "cc");
}

static void
test_too_many_recipients(void **state)
{
	expect_err("{\"from\": \"a@x.com\", \"to\": [\"b@x.com\", \"c@x.com\","
		   " \"d@x.com\"], \"cc\": [\"e@x.com\", \"f@x.com\"],"
		   " \"bcc\": \"g@x.com\", \"text\": \"t\"}",
		   400, "invalid_field", "to");
}

/* CR, LF and NUL in every header-bound field, refused by name. */
static void
test_injection(void **state)
{
	static const char *const breaks[] = {
	    "\\u0085", "\\u0080", "\\u009f", "\\u2028", "\\u2029", "\xc2\x85",
	};
	char json[512];
	struct store_message *m;
	size_t i;

	expect_err("{" BASE ", \"subject\": \"Hi\\r\\nBcc: eve@evil.com\","
		   " \"text\": \"t\"}",
		   400, "invalid_field", "subject: contains CR or LF");
	expect_err("{" BASE ", \"subject\": \"Hi\\nX: y\", \"text\": \"t\"}",
		   400, "invalid_field", "subject: contains CR or LF");
	expect_err("{" BASE ", \"subject\": \"Hi\\u0000\", \"text\": \"t\"}",
		   400, "invalid_field", "subject: contains NUL");
	expect_err("{" BASE ", \"subject\": \"Hi\\u001b\", \"text\": \"t\"}",
		   400, "invalid_field", "subject: contains a control");
	expect_err("{\"from\": \"Ann\\r\\nBcc: e@evil.com <ann@example.com>\","
		   " \"to\": \"b@x.com\", \"text\": \"t\"}",
		   400, "invalid_field", "from: contains CR or LF");
	expect_err("{\"from\": \"Ann\\u0000 <ann@example.com>\","
		   " \"to\": \"b@x.com\", \"text\": \"t\"}",
		   400, "invalid_field", "from: contains NUL");
	/* An encoded-word that decodes to CR LF in the display name. */
	expect_err(
	    "{\"from\": \"=?utf-8?q?A=0D=0AX-Evil=3A_1?="
	    " <ann@example.com>\", \"to\": \"b@x.com\", \"text\": \"t\"}",
	    400, "invalid_field", "from: contains a control");
	expect_err("{" BASE ", \"cc\": [\"c@x.com\\r\\n\"], \"text\": \"t\"}",
		   400, "invalid_field", "cc[0]: contains CR or LF");
	expect_err("{" BASE ", \"reply_to\": \"r@x.com\\nBcc: e@evil.com\","
		   " \"text\": \"t\"}",
		   400, "invalid_field", "reply_to: contains CR or LF");
	expect_err("{" BASE ", \"text\": \"t\","
		   " \"headers\": {\"X-Foo\": \"a\\r\\nBcc: e@evil.com\"}}",
		   400, "invalid_field", "headers.X-Foo: contains CR or LF");
	expect_err("{" BASE ", \"text\": \"t\","
		   " \"headers\": {\"X-Foo\": \"a\\u0000b\"}}",
		   400, "invalid_field", "headers.X-Foo: contains NUL");
	expect_err("{" BASE ", \"text\": \"t\","
		   " \"headers\": {\"X-Foo\\r\\nBcc\": \"e@evil.com\"}}",
		   400, "invalid_field",
		   "headers.X-Foo??Bcc: not a valid header");
	expect_err("{" BASE ", \"text\": \"t\", \"attachments\": [{"
		   "\"filename\": \"a.txt\\r\\nX: y\","
		   " \"content_base64\": \"\"}]}",
		   400, "invalid_field",
		   "attachments[0].filename: contains CR or LF");
	expect_err(
	    "{" BASE ", \"text\": \"t\", \"attachments\": [{"
	    "\"filename\": \"a\", \"content_type\": \"text/plain\\r\\n\","
	    " \"content_base64\": \"\"}]}",
	    400, "invalid_field",
	    "attachments[0].content_type: contains CR or LF");
	/*
	 * C1 controls and U+2028/U+2029 travel RFC 2047-encoded, and a
	 * reader decoding them sees a line end (Python's email splits on
	 * NEL and the separators, and will not write such a value back).
	 */
	for (i = 0; i < ARRAY_SIZE(breaks); i++) {
		snprintf(json, sizeof(json),
			 "{" BASE ", \"text\": \"t\", \"subject\": \"a%sb\"}",
			 breaks[i]);
		expect_err(json, 400, "invalid_field",
			   "subject: contains a control character or a line");
		snprintf(json, sizeof(json),
			 "{" BASE ", \"text\": \"t\","
			 " \"headers\": {\"X-Foo\": \"a%sBcc: e@evil.com\"}}",
			 breaks[i]);
		expect_err(json, 400, "invalid_field",
			   "headers.X-Foo: contains a control character or a");
		snprintf(json, sizeof(json),
			 "{\"from\": \"A%sB <ann@example.com>\","
			 " \"to\": \"bob@example.net\", \"text\": \"t\"}",
			 breaks[i]);
		expect_err(json, 400, "invalid_field",
			   "from: contains a control character or a line");
		snprintf(
		    json, sizeof(json),
		    "{" BASE ", \"text\": \"t\", \"attachments\": [{"
		    "\"filename\": \"a%s.txt\", \"content_base64\": \"\"}]}",
		    breaks[i]);
		expect_err(json, 400, "invalid_field",
			   "attachments[0].filename: contains a control");
	}
	/* A header value's own encoded-words are read as readers read
	 * them: CR LF, a control or a separator inside is refused. */
	expect_err("{" BASE ", \"text\": \"t\", \"headers\":"
		   " {\"X-A\": \"=?utf-8?B?DQpCY2M6IHZAeC55?=\"}}",
		   400, "invalid_field",
		   "headers.X-A: an encoded-word in it decodes");
	expect_err("{" BASE ", \"text\": \"t\", \"headers\":"
		   " {\"X-A\": \"x=?utf-8?Q?=0D=0A?=y\"}}",
		   400, "invalid_field",
		   "headers.X-A: an encoded-word in it decodes");
	expect_err("{" BASE ", \"text\": \"t\", \"headers\":"
		   " {\"X-A\": \"=?utf-8?Q?a=E2=80=A8b?=\"}}",
		   400, "invalid_field",
		   "headers.X-A: an encoded-word in it decodes");
	m = build_ok("{" BASE ", \"text\": \"t\", \"headers\":"
		     " {\"X-A\": \"=?utf-8?Q?caf=C3=A9?= =?x\"}}");
	store_message_free(m);
	/* The same smuggled in by an encoded-word in a display name. */
	expect_err("{\"from\": \"=?utf-8?B?QcKFQg==?= <ann@example.com>\","
		   " \"to\": \"bob@example.net\", \"text\": \"t\"}",
		   400, "invalid_field",
		   "from: contains a control character or a line");
	/* In a body they are text. */
	m = build_ok("{" BASE ", \"text\": \"a\\u0085b\\u2028c\"}");
	store_message_free(m);
	/* NUL in a body is refused too, naming the body field. */
	expect_err("{" BASE ", \"text\": \"a\\u0000b\"}", 400, "invalid_field",
		   "text: contains NUL");
	expect_err("{" BASE ", \"html\": \"a\\u0000b\"}", 400, "invalid_field",
		   "html: contains NUL");
}

static void
test_headers(void **state)
{
	static const char *const forbidden[] = {
	    "From",         "to",           "CC",
	    "Bcc",          "Reply-To",     "subject",
	    "MIME-Version", "Content-Type", "content-transfer-encoding",
	    "Received",     "Return-Path",  "Sender",
	    "Resent-Bcc",
	};
	char json[256], field[64];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(forbidden); i++) {
		snprintf(json, sizeof(json),
			 "{" BASE
			 ", \"text\": \"t\", \"headers\": {\"%s\": \"v\"}}",
			 forbidden[i]);
		snprintf(field, sizeof(field), "headers.%s: set by the relay",
			 forbidden[i]);
		expect_err(json, 400, "invalid_field", field);
	}
	expect_err("{" BASE ", \"text\": \"t\", \"headers\": {\"X:A\": \"v\"}}",
		   400, "invalid_field",
		   "headers.X:A: not a valid header name");
	expect_err("{" BASE ", \"text\": \"t\", \"headers\": {\"X A\": \"v\"}}",
		   400, "invalid_field",
		   "headers.X A: not a valid header name");
	expect_err("{" BASE ", \"text\": \"t\", \"headers\": {\"\": \"v\"}}",
		   400, "invalid_field", "headers.: not a valid header name");
	expect_err("{" BASE ", \"text\": \"t\","
		   " \"headers\": {\"X-\\u00e9\": \"v\"}}",
		   400, "invalid_field",
		   "headers.X-??: not a valid header name");
}

/* Date and Message-ID are the client's when given, added when missing. */
static void
test_user_date_and_message_id(void **state)
{
	struct store_message *m;
	GMimeMessage *msg;
	GDateTime *dt;
	char want[64];

	m = build_ok("{" BASE ", \"text\": \"t\", \"headers\": {"
		     "\"Message-ID\": \"<order-42@shop.example.com>\","
		     " \"Date\": \"Tue, 01 Dec 2026 10:00:00 +0100\"}}");
	assert_crlf(m);
	/* Exactly one of each: the relay's own are not added. */
	assert_null(strstr(m->mime, "Message-Id:"));
	assert_non_null(
	    strstr(m->mime, "Message-ID: <order-42@shop.example.com>"));
	assert_ptr_equal(
	    strstr(m->mime, "Date:"),
	    strstr(m->mime, "Date: Tue, 01 Dec 2026 10:00:00 +0100"));
	assert_null(strstr(strstr(m->mime, "Date:") + 1, "\nDate:"));
	msg = parse_mime(m);
	assert_string_equal(g_mime_message_get_message_id(msg),
			    "order-42@shop.example.com");
	dt = g_mime_message_get_date(msg);
	assert_non_null(dt);
	assert_int_equal(g_date_time_get_day_of_month(dt), 1);
	g_object_unref(msg);
	store_message_free(m);

	/* Missing: added, with the relay's id. */
	m = build_ok("{" BASE ", \"text\": \"t\"}");
	snprintf(want, sizeof(want), "Message-Id: <%s@example.com>", m->id);
	assert_non_null(strstr(m->mime, want));
	assert_non_null(strstr(m->mime, "\r\nDate: "));
	store_message_free(m);

	static const char *const bad_ids[] = {
	    "x@y",     "<x@y",    "<xy>",    "<@y>",        "<x@>",
	    "<x y@z>", "<x@y@z>", "<<x@y>>", "<x@y> <a@b>",
	};
	char json[256];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad_ids); i++) {
		snprintf(json, sizeof(json),
			 "{" BASE ", \"text\": \"t\", \"headers\":"
			 " {\"Message-ID\": \"%s\"}}",
			 bad_ids[i]);
		expect_err(json, 400, "invalid_field",
			   "headers.Message-ID: not a Message-ID");
	}
	expect_err("{" BASE ", \"text\": \"t\", \"headers\":"
		   " {\"Date\": \"yesterday\"}}",
		   400, "invalid_field", "headers.Date: not an RFC 5322 date");
	expect_err("{" BASE ", \"text\": \"t\", \"headers\":"
		   " {\"Message-ID\": \"<a@b>\", \"message-id\": \"<c@d>\"}}",
		   400, "invalid_field", "headers.message-id: given twice");
	/* Any header: names differing only in case are one field. */
	expect_err("{" BASE ", \"text\": \"t\", \"headers\":"
		   " {\"In-Reply-To\": \"<a@b>\", \"X-A\": \"1\","
		   " \"in-reply-to\": \"<c@d>\"}}",
		   400, "invalid_field", "headers.in-reply-to: given twice");
	expect_err("{" BASE ", \"text\": \"t\", \"headers\":"
		   " {\"X-Tag\": \"a\", \"x-TAG\": \"b\"}}",
		   400, "invalid_field", "headers.x-TAG: given twice");
	expect_err("{" BASE ", \"text\": \"t\", \"headers\":"
		   " {\"Message-ID\": \"<a@b>\\r\\nBcc: x@y>\"}}",
		   400, "invalid_field",
		   "headers.Message-ID: contains CR or LF");
}

static void
test_attachments(void **state)
{
	static const char *const bad64[] = {
	    "abc!", "a", "ab=c", "abc==", "ab===", "====", "ab cd",
	};
	static const char *const badtype[] = {
	    "pdf",
	    "/pdf",
	    "application/",
	    "multipart/mixed",
	    "message/rfc822",
	    "text/plain;",
	    "text/plain; name=x",
	    "text/plain; a=\\\"b\\\\\\\"\\\"",
	    "a b/c",
	};
	char json[256];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad64); i++) {
		snprintf(json, sizeof(json),
			 "{" BASE ", \"text\": \"t\", \"attachments\": [{"
			 "\"filename\": \"a\", \"content_base64\": \"%s\"}]}",
			 bad64[i]);
		expect_err(json, 400, "invalid_field",
			   "attachments[0].content_base64: not valid base64");
	}
	for (i = 0; i < ARRAY_SIZE(badtype); i++) {
		snprintf(json, sizeof(json),
			 "{" BASE ", \"text\": \"t\", \"attachments\": [{"
			 "\"filename\": \"a\", \"content_type\": \"%s\","
			 " \"content_base64\": \"\"}]}",
			 badtype[i]);
		expect_err(json, 400, "invalid_field",
			   "attachments[0].content_type: not a valid");
	}
	expect_err(
	    "{" BASE ", \"text\": \"t\", \"attachments\": [{"
	    "\"filename\": \"../etc/passwd\", \"content_base64\": \"\"}]}",
	    400, "invalid_field", "attachments[0].filename: not a valid");
	expect_err("{" BASE ", \"text\": \"t\", \"attachments\": [{"
		   "\"filename\": \"\", \"content_base64\": \"\"}]}",
		   400, "invalid_field",
		   "attachments[0].filename: not a valid");
	/* The second one is wrong: the first one's part must not leak. */
	expect_err("{" BASE ", \"text\": \"t\", \"attachments\": ["
		   "{\"filename\": \"a\", \"content_base64\": \"QUJD\"},"
		   "{\"filename\": \"b\", \"content_base64\": \"Q\"}]}",
		   400, "invalid_field", "attachments[1].content_base64");
}

/* Accepted base64 shapes decode to the right bytes. */
static void
test_base64_forms(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} ok[] = {
	    {"", ""},
	    {"QQ==", "A"},
	    {"QQ", "A"},
	    {"QUI=", "AB"},
	    {"QUI", "AB"},
	    {"QUJD", "ABC"},
	    {"QUJD\\r\\nREVG", "ABCDEF"},
	};
	char json[256];
	struct store_message *m;
	GMimeMessage *msg;
	GMimeObject *att;
	GMimeStream *out;
	GByteArray *bytes;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ok); i++) {
		snprintf(json, sizeof(json),
			 "{" BASE ", \"text\": \"t\", \"attachments\": [{"
			 "\"filename\": \"r\\u00e9sum\\u00e9.txt\","
			 " \"content_type\": \"text/plain\","
			 " \"content_base64\": \"%s\"}]}",
			 ok[i].in);
		m = build_ok(json);
		msg = parse_mime(m);
		att = g_mime_multipart_get_part(
		    GMIME_MULTIPART(g_mime_message_get_mime_part(msg)), 1);
		assert_string_equal(g_mime_part_get_filename(GMIME_PART(att)),
				    "r\xc3\xa9sum\xc3\xa9.txt");
		out = g_mime_stream_mem_new();
		g_mime_data_wrapper_write_to_stream(
		    g_mime_part_get_content(GMIME_PART(att)), out);
		bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
		assert_int_equal(bytes->len, strlen(ok[i].out));
		assert_memory_equal(bytes->data, ok[i].out, bytes->len);
		g_object_unref(out);
		g_object_unref(msg);
		store_message_free(m);
	}
}

static void
test_tags(void **state)
{
	char json[512], tag[130];

	expect_err("{" BASE ", \"text\": \"t\", \"tags\": [\"a\", \"b\","
		   " \"c\", \"d\", \"e\", \"f\", \"g\", \"h\", \"i\", \"j\","
		   " \"k\"]}",
		   400, "invalid_field", "tags");
	expect_err("{" BASE ", \"text\": \"t\", \"tags\": [\"ok\", \"\"]}", 400,
		   "invalid_field", "tags[1]");
	expect_err("{" BASE ", \"text\": \"t\", \"tags\": [\"a\\nb\"]}", 400,
		   "invalid_field", "tags[0]");
	memset(tag, 'x', 129);
	tag[129] = '\0';
	snprintf(json, sizeof(json),
		 "{" BASE ", \"text\": \"t\", \"tags\": [\"%s\"]}", tag);
	expect_err(json, 400, "invalid_field", "tags[0]");
}

/* The one address of an address header, parsed back. */
static InternetAddress *
only_address(InternetAddressList *l)
{
	assert_int_equal(internet_address_list_length(l), 1);
	return internet_address_list_get_address(l, 0);
}

/* Display names that need quoting or encoding come back as they were. */
static void
test_display_names(void **state)
{
	static const struct {
		const char *json; /* as written in JSON */
		const char *name; /* decoded, UTF-8 */
	} names[] = {
	    {"Doe, John", "Doe, John"},
	    {"J. \\\\\\\"Q\\\\\\\" Public", "J. \"Q\" Public"},
	    {"Zo\\u00eb \\u00c7a", "Zo\xc3\xab \xc3\x87"
				   "a"},
	    {"\\u65e5\\u672c \\u8a9e", "\xe6\x97\xa5\xe6\x9c\xac \xe8\xaa\x9e"},
	    {"Plain Name", "Plain Name"},
	    {"a\\\\\\\\b", "a\\b"},
	    {"=?x?= lookalike", "=?x?= lookalike"},
	    /* Brackets with no quoted comma before them: taken (the
	     * console test shows such a name as text). */
	    {"<i>x</i>", "<i>x</i>"},
	    {"Sales <desk>", "Sales <desk>"},
	};
	char json[512], *q;
	struct store_message *m;
	GMimeMessage *msg;
	InternetAddress *a;
	json_t *to;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(names); i++) {
		snprintf(json, sizeof(json),
			 "{\"from\": \"\\\"%s\\\" <ann@example.com>\","
			 " \"to\": [\"\\\"%s\\\" <bob@example.net>\","
			 " \"c@example.org\"], \"text\": \"t\"}",
			 names[i].json, names[i].json);
		m = build_ok(json);
		assert_crlf(m);
		assert_string_equal(m->mail_from, "ann@example.com");
		msg = parse_mime(m);
		a = only_address(g_mime_message_get_from(msg));
		assert_string_equal(internet_address_get_name(a),
				    names[i].name);
		a = internet_address_list_get_address(
		    g_mime_message_get_to(msg), 0);
		assert_string_equal(internet_address_get_name(a),
				    names[i].name);
		assert_string_equal(internet_address_mailbox_get_addr(
					INTERNET_ADDRESS_MAILBOX(a)),
				    "bob@example.net");
		/* to_json is valid JSON holding the entries as given. */
		to = json_loads(m->to_json, 0, NULL);
		assert_non_null(to);
		assert_int_equal(json_array_size(to), 2);
		q = xasprintf("\"%s\" <bob@example.net>", names[i].name);
		if (strchr(names[i].json, '\\') == NULL)
			assert_string_equal(
			    json_string_value(json_array_get(to, 0)), q);
		free(q);
		json_decref(to);
		g_object_unref(msg);
		store_message_free(m);
	}
}

/* A long subject is folded to 78 columns and reads back whole. */
static void
test_long_subject(void **state)
{
	char json[4096], subj[1000];
	struct store_message *m;
	GMimeMessage *msg;
	const char *p, *e;
	size_t i;

	for (i = 0; i < 899; i++)
		subj[i] = (i % 9 == 8) ? ' ' : (char)('a' + i % 26);
	subj[899] = '\0';
	snprintf(json, sizeof(json),
		 "{" BASE ", \"subject\": \"%s\", \"text\": \"t\"}", subj);
	m = build_ok(json);
	assert_crlf(m);
	p = strstr(m->mime, "Subject: ");
	assert_non_null(p);
	/* Every line of the header is at most 78 columns. */
	do {
		e = strstr(p, "\r\n");
		assert_true(e - p <= 78);
		p = e + 2;
	} while (*p == ' ' || *p == '\t');
	msg = parse_mime(m);
	assert_string_equal(g_mime_message_get_subject(msg), subj);
	g_object_unref(msg);
	store_message_free(m);

	/* One 990-byte word cannot fold: encoded, still under 998. */
	memset(subj, 'w', 990);
	subj[990] = '\0';
	snprintf(json, sizeof(json),
		 "{" BASE ", \"subject\": \"%s\", \"text\": \"t\","
		 " \"headers\": {\"X-Long\": \"%s\"}}",
		 subj, subj);
	m = build_ok(json);
	assert_crlf(m);
	msg = parse_mime(m);
	assert_string_equal(g_mime_message_get_subject(msg), subj);
	g_object_unref(msg);
	store_message_free(m);

	/*
	 * Non-ASCII, long: RFC 2047 words on folded lines of at most 78
	 * columns.  (GMime 3.2.13 reads back only the first word of this
	 * one, from the old builder too, so the words are checked here.)
	 */
	for (i = 0; i < 60; i++)
		memcpy(subj + 10 * i, "caf\\u00e9 ", 10);
	subj[600] = '\0';
	snprintf(json, sizeof(json),
		 "{" BASE ", \"subject\": \"%s\", \"text\": \"t\"}", subj);
	m = build_ok(json);
	assert_crlf(m);
	p = strstr(m->mime, "Subject: =?");
	assert_non_null(p);
	for (i = 0;; i++) {
		e = strstr(p, "\r\n");
		assert_true(e - p <= 78);
		p = e + 2;
		if (*p != ' ')
			break;
		assert_memory_equal(p, " =?", 3);
	}
	assert_true(i >= 5);
	msg = parse_mime(m);
	assert_memory_equal(g_mime_message_get_subject(msg),
			    "caf\xc3\xa9 caf\xc3\xa9", 11);
	g_object_unref(msg);
	store_message_free(m);
}

/* Non-ASCII file names, short and long (RFC 2231 continuations). */
static void
test_attachment_names(void **state)
{
	char json[4096], fname[2048], want[1024], *type;
	struct store_message *m;
	GMimeMessage *msg;
	GMimeObject *body, *att;
	size_t i;

	for (i = 0; i < 30; i++) {
		memcpy(fname + 6 * i, "\\u65e5", 6);
		memcpy(want + 3 * i, "\xe6\x97\xa5", 3);
	}
	snprintf(fname + 180, sizeof(fname) - 180, " a\\\"b.txt");
	snprintf(want + 90, sizeof(want) - 90, " a\"b.txt");
	snprintf(
	    json, sizeof(json),
	    "{" BASE ", \"text\": \"hello\", \"html\": \"<b>hi</b>\","
	    " \"attachments\": [{\"filename\": \"%s\","
	    " \"content_base64\": \"QUJD\"}, {\"filename\": \"a b.txt\","
	    " \"content_type\": \"text/plain\", \"content_base64\": \"\"}]}",
	    fname);
	m = build_ok(json);
	assert_crlf(m);
	msg = parse_mime(m);
	body = g_mime_message_get_mime_part(msg);
	assert_true(GMIME_IS_MULTIPART(body));
	assert_int_equal(g_mime_multipart_get_count(GMIME_MULTIPART(body)), 3);
	assert_true(GMIME_IS_MULTIPART(
	    g_mime_multipart_get_part(GMIME_MULTIPART(body), 0)));
	att = g_mime_multipart_get_part(GMIME_MULTIPART(body), 1);
	assert_string_equal(g_mime_part_get_filename(GMIME_PART(att)), want);
	att = g_mime_multipart_get_part(GMIME_MULTIPART(body), 2);
	assert_string_equal(g_mime_part_get_filename(GMIME_PART(att)),
			    "a b.txt");
	type = g_mime_content_type_get_mime_type(
	    g_mime_object_get_content_type(att));
	assert_string_equal(type, "text/plain");
	g_free(type);
	g_object_unref(msg);
	store_message_free(m);
}

/*
 * A file name that looks like an encoded-word reads back as written.
 * Readers decode "=?...?=" even inside a quoted parameter, so written as
 * a quoted string it reached them as what it encodes: "../evil.exe", or
 * a name with CR LF, both refused when given plainly.
 */
static void
test_attachment_name_encoded_word(void **state)
{
	static const char *const names[] = {
	    "=?utf-8?B?Li4vZXZpbC5leGU=?=",
	    "=?utf-8?Q?a=0D=0Ab.txt?=",
	    "x =?us-ascii?Q?=2E=2E=5Cy?= z",
	};
	char json[512];
	struct store_message *m;
	GMimeMessage *msg;
	GMimeObject *att;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		snprintf(
		    json, sizeof(json),
		    "{" BASE ", \"text\": \"t\", \"attachments\": [{"
		    "\"filename\": \"%s\", \"content_base64\": \"QUJD\"}]}",
		    names[i]);
		m = build_ok(json);
		msg = parse_mime(m);
		att = g_mime_multipart_get_part(
		    GMIME_MULTIPART(g_mime_message_get_mime_part(msg)), 1);
		assert_string_equal(
		    g_mime_object_get_content_disposition_parameter(att,
								    "filename"),
		    names[i]);
		assert_string_equal(
		    g_mime_object_get_content_type_parameter(att, "name"),
		    names[i]);
		g_object_unref(msg);
		store_message_free(m);
	}
}

/* A text with no trailing newline, and one with, keep exactly that. */
static void
test_text_html_exact(void **state)
{
	struct store_message *m = build_ok(
	    "{" BASE ", \"text\": \"a\\nb\", \"html\": \"<p>x</p>\\n\"}");
	GMimeMessage *msg;
	GMimeObject *alt;
	char *t;

	assert_crlf(m);
	msg = parse_mime(m);
	alt = g_mime_message_get_mime_part(msg);
	t = part_text(g_mime_multipart_get_part(GMIME_MULTIPART(alt), 0));
	assert_string_equal(t, "a\r\nb");
	g_free(t);
	t = part_text(g_mime_multipart_get_part(GMIME_MULTIPART(alt), 1));
	assert_string_equal(t, "<p>x</p>\r\n");
	g_free(t);
	g_object_unref(msg);
	store_message_free(m);
}

#define NTHREADS 4
#define NROUNDS 200

static const char *const thread_inputs[] = {
    "{" BASE ", \"subject\": \"H\\u00e9llo\", \"text\": \"caf\\u00e9\"}",
    ("{\"from\": \"Zo\\u00eb <z@example.com>\", \"to\": [\"\\\"a, b\\\" "
     "<b@example.net>\"], \"text\": \"\\u65e5\\u672c\", \"attachments\": "
     "[{\"filename\": \"r\\u00e9sum\\u00e9\", \"content_base64\": \"QUJD\"}]}"),
    "{" BASE ", \"text\": \"t\", \"subject\": \"\\u0000\"}",
    "{" BASE ", \"text\": \"t\", \"x\": 1}",
    ("{\"from\": \"=?utf-8?q?A=C3=A9?= <ann@example.com>\", \"to\": "
     "\"bob@b\\u00fccher.de\", \"html\": \"<b>x</b>\"}"),
};

/* Every input's outcome, with the parts that vary per call removed. */
static char *
outcome(const char *json)
{
	struct store_message *m = NULL;
	struct message_error err;
	char *s, *p;

	memset(&err, 0, sizeof(err));
	if (message_from_json(json, strlen(json), &lim, &m, &err) != 0)
		return xasprintf("%d %s %s", err.http_status, err.code,
				 err.message);
	/* Everything up to the Date header is fixed for one input. */
	p = strstr(m->mime, "Date: ");
	assert_non_null(p);
	s = xasprintf("%s|%zu|%s|%.*s", m->mail_from, m->nrcpt, m->to_json,
		      (int)(p - m->mime), m->mime);
	store_message_free(m);
	return s;
}

static void *
thread_main(void *arg)
{
	char **want = arg;
	size_t i, k;
	char *got;
	long bad = 0;

	for (k = 0; k < NROUNDS; k++)
		for (i = 0; i < ARRAY_SIZE(thread_inputs); i++) {
			got = outcome(thread_inputs[i]);
			if (strcmp(got, want[i]) != 0)
				bad++;
			free(got);
		}
	return (void *)bad;
}

/* Builds on several threads at once give what one thread gives. */
static void
test_threads(void **state)
{
	char *want[ARRAY_SIZE(thread_inputs)];
	pthread_t th[NTHREADS];
	void *bad;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(thread_inputs); i++)
		want[i] = outcome(thread_inputs[i]);
	for (i = 0; i < NTHREADS; i++)
		assert_int_equal(
		    pthread_create(&th[i], NULL, thread_main, want), 0);
	for (i = 0; i < NTHREADS; i++) {
		assert_int_equal(pthread_join(th[i], &bad), 0);
		assert_int_equal((long)bad, 0);
	}
	for (i = 0; i < ARRAY_SIZE(thread_inputs); i++)
		free(want[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip),
	    cmocka_unit_test(test_idn_addresses),
	    cmocka_unit_test(test_to_string_text_only),
	    cmocka_unit_test(test_html_only_bcc_only),
	    cmocka_unit_test(test_cjk_text),
	    cmocka_unit_test(test_controls_never_base64),
	    cmocka_unit_test(test_long_line),
	    cmocka_unit_test(test_missing),
	    cmocka_unit_test(test_wrong_types),
	    cmocka_unit_test(test_unknown_keys),
	    cmocka_unit_test(test_bad_addresses),
	    cmocka_unit_test(test_too_many_recipients),
	    cmocka_unit_test(test_injection),
	    cmocka_unit_test(test_headers),
	    cmocka_unit_test(test_user_date_and_message_id),
	    cmocka_unit_test(test_attachments),
	    cmocka_unit_test(test_base64_forms),
	    cmocka_unit_test(test_tags),
	    cmocka_unit_test(test_display_names),
	    cmocka_unit_test(test_long_subject),
	    cmocka_unit_test(test_attachment_names),
	    cmocka_unit_test(test_attachment_name_encoded_word),
	    cmocka_unit_test(test_text_html_exact),
	    cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
