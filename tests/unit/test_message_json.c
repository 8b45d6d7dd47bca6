/*
 * Unit tests of the JSON side of the builder: the strictness kept around
 * cJSON (message_json.c), the JSON kept for display, and the one limit
 * (max_message_bytes on the built message; message_json_max_bytes, the
 * HTTP body cap derived from it, checked against the escapes that shrink
 * most into the message).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "intake/message.h"
#include "store/store.h"
#include "message_fixture.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
test_bad_json(void **state)
{
	expect_err("", 400, "invalid_json", "body");
	expect_err("{", 400, "invalid_json", "body");
	expect_err("[1]", 400, "invalid_json", "body");
	expect_err("\"x\"", 400, "invalid_json", "body");
	expect_err("{\"from\": \"a@b.c\"} x", 400, "invalid_json", "body");
	expect_err("{\"from\": \"a@b.c\", \"from\": \"a@b.c\"}", 400,
		   "invalid_json", "body");
	/* Invalid UTF-8 in a value. */
	expect_err("{\"from\": \"ann@example.com\", \"to\": \"b@x.com\","
		   " \"subject\": \"\xc3\x28\", \"text\": \"t\"}",
		   400, "invalid_json", "body");
	expect_err("{\"text\": \"\xff\"}", 400, "invalid_json", "body");
	/* A NUL in a key is refused by jansson itself, never truncated. */
	expect_err("{\"from\\u0000x\": \"a@b.c\"}", 400, "invalid_json",
		   "body");
	/* A raw NUL byte inside the body. */
	expect_err_len("{\"text\": \"a\0b\"}", 15, 400, "invalid_json", "body");
}

static void
test_too_large(void **state)
{
	size_t n = lim.max_message_bytes + 16, i;
	char *json = malloc(n + 128);
	int off;

	assert_non_null(json);
	/* The body alone is over the limit: refused before building. */
	off = snprintf(json, 128, "{" BASE ", \"text\": \"");
	for (i = 0; i < n; i++)
		json[off + i] = (i % 70 == 69) ? ' ' : 'a';
	memcpy(json + off + n, "\"}", 3);
	expect_err(json, 413, "too_large", "message");

	/*
	 * Just under the limit as raw text, over it once encoded: refused
	 * after building (quoted-printable grows 8-bit text).
	 */
	off = snprintf(json, 128, "{" BASE ", \"text\": \"");
	for (i = 0; i + 2 < lim.max_message_bytes - 64; i += 2) {
		json[off + i] = '\xc3';
		json[off + i + 1] = (i % 140 == 138) ? '\xa9' : '\xa8';
	}
	memcpy(json + off + i, "\"}", 3);
	expect_err(json, 413, "too_large", "message");
	free(json);
}

/* {BASE, "bcc": [bcc], "text": unit * k} into out; returns its length. */
static int
sprintf_text(char *out, const char *unit, size_t k, const char *bcc)
{
	size_t ulen = strlen(unit), i;
	int off;

	off = snprintf(out, strlen(bcc) + 200, "{" BASE ", %s%s%s\"text\": \"",
		       *bcc ? "\"bcc\": [" : "", bcc, *bcc ? "], " : "");
	for (i = 0; i < k; i++)
		memcpy(out + off + i * ulen, unit, ulen);
	memcpy(out + off + k * ulen, "\"}", 3);
	return off + (int)(k * ulen) + 2;
}

/*
 * Builds {BASE, "text": unit * k, "bcc": [...]} with the largest k whose
 * message fits in lim2 and returns that JSON's length; fails the test when
 * even k = 1 is refused.
 */
static size_t
largest_fitting(const struct message_limits *lim2, const char *unit,
		const char *bcc)
{
	size_t lo = 1, hi = 1, k, len = 0, ulen = strlen(unit);
	struct store_message *m;
	struct message_error err;
	char *json;

	for (;;) {
		/* Double until refused, then bisect on [lo, hi). */
		k = hi;
		json = malloc(ulen * k + strlen(bcc) + 256);
		assert_non_null(json);
		len = (size_t)sprintf_text(json, unit, k, bcc);
		m = NULL;
		if (message_from_json(json, len, lim2, &m, &err) != 0) {
			if (hi == 1)
				fail_msg("%.80s: %s %s", json, err.code,
					 err.message);
			free(json);
			break;
		}
		store_message_free(m);
		free(json);
		lo = hi;
		hi *= 2;
	}
	assert_true(hi > 1);
	while (hi - lo > 1) {
		k = lo + (hi - lo) / 2;
		json = malloc(ulen * k + strlen(bcc) + 256);
		assert_non_null(json);
		len = (size_t)sprintf_text(json, unit, k, bcc);
		m = NULL;
		if (message_from_json(json, len, lim2, &m, &err) == 0) {
			assert_true(m->mime_len <= lim2->max_message_bytes);
			store_message_free(m);
			lo = k;
		} else {
			assert_string_equal(err.code, "too_large");
			hi = k;
		}
		free(json);
	}
	json = malloc(ulen * lo + strlen(bcc) + 256);
	assert_non_null(json);
	len = (size_t)sprintf_text(json, unit, lo, bcc);
	free(json);
	return len;
}

/*
 * Defect 3, the JSON side of the one limit: for the escapes that shrink
 * most into the message (a control character as \u0001, a two-byte
 * character as \u00e9, a surrogate pair, a tab, a quote) and for bcc
 * addresses, which never reach it, the largest body whose message fits is
 * within message_json_max_bytes(), the HTTP body cap.  Before control
 * characters went quoted-printable, \u0001 lines shrank six to one.
 */
static void
test_json_cap_bound(void **state)
{
	static const char *const units[] = {
	    "\\u0001\\u0001\\u0001\\u0001\\n",
	    "\\u00e9",
	    "\\ud83d\\ude00",
	    "\\t\\t\\t\\n",
	    "\\\"\\\\\\/",
	};
	const struct message_limits lim2 = {.max_message_bytes = 256 * 1024,
					    .max_recipients = 5};
	size_t i, cap = message_json_max_bytes(&lim2), len;
	char bcc[6 * 1024];

	for (i = 0; i < ARRAY_SIZE(units); i++) {
		len = largest_fitting(&lim2, units[i], "");
		if (len > cap)
			fail_msg("unit %s: a %zu-byte body fits, cap %zu",
				 units[i], len, cap);
	}
	/* With to, the most recipients: bcc entries of 900 escaped bytes. */
	bcc[0] = '\0';
	for (i = 0; i + 1 < lim2.max_recipients; i++) {
		size_t j, o = strlen(bcc);
		o += (size_t)snprintf(bcc + o, sizeof(bcc) - o, "%s\"",
				      i ? "," : "");
		for (j = 0; j < 150; j++)
			o += (size_t)snprintf(bcc + o, sizeof(bcc) - o,
					      "\\u00e9");
		snprintf(bcc + o, sizeof(bcc) - o, " <u%zu@example.org>\"", i);
	}
	len = largest_fitting(&lim2, "\\u00e9", bcc);
	assert_true(len <= cap);
}

/* Control characters in a body go quoted-printable, never raw. */
static void
test_control_chars_qp(void **state)
{
	struct store_message *m =
	    build_ok("{" BASE ", \"text\": \"a\\u0001b\\tc\\n\"}");

	assert_non_null(strstr(m->mime, "quoted-printable"));
	assert_non_null(strstr(m->mime, "a=01b\tc\r\n"));
	assert_null(memchr(m->mime, '\x01', m->mime_len));
	store_message_free(m);
	/* Tabs and line ends alone stay 7bit. */
	m = build_ok("{" BASE ", \"text\": \"a\\tb\\r\\nc\\n\"}");
	assert_non_null(strstr(m->mime, "7bit"));
	store_message_free(m);
}

/* What jansson refused and cJSON alone would not. */
static void
test_json_strictness(void **state)
{
	struct store_message *m;
	GMimeMessage *msg;
	char *t;

	/* Duplicates at every level. */
	expect_err("{" BASE ", \"text\": \"t\", \"headers\": {\"X-A\": \"1\","
		   " \"X-A\": \"2\"}}",
		   400, "invalid_json", "body: not valid JSON (duplicate key)");
	expect_err("{" BASE ", \"text\": \"t\", \"attachments\": [{"
		   "\"filename\": \"a\", \"filename\": \"b\","
		   " \"content_base64\": \"\"}]}",
		   400, "invalid_json", "body: not valid JSON (duplicate key)");
	expect_err("{" BASE ", \"text\": \"t\", \"x\": {\"a\": 1, \"a\": 2}}",
		   400, "invalid_json", "body: not valid JSON (duplicate key)");
	/* Raw control characters in a string, a BOM, bad escapes. */
	expect_err("{" BASE ", \"text\": \"a\x01"
		   "b\"}",
		   400, "invalid_json", "body");
	expect_err("{" BASE ", \"text\": \"a\nb\"}", 400, "invalid_json",
		   "body");
	expect_err("\xef\xbb\xbf{" BASE ", \"text\": \"t\"}", 400,
		   "invalid_json", "body");
	expect_err("{" BASE ", \"text\": \"\\x41\"}", 400, "invalid_json",
		   "body");
	expect_err("{" BASE ", \"text\": \"\\u12\"}", 400, "invalid_json",
		   "body");
	expect_err("{" BASE ",\x0b \"text\": \"t\"}", 400, "invalid_json",
		   "body");
	/* Lone surrogates never reach a header as invalid UTF-8. */
	expect_err("{" BASE ", \"subject\": \"\\ud800\", \"text\": \"t\"}", 400,
		   "invalid_json", "body");
	expect_err("{" BASE ", \"subject\": \"\\udc00x\", \"text\": \"t\"}",
		   400, "invalid_json", "body");
	/* Overlong and surrogate UTF-8 as raw bytes. */
	expect_err("{" BASE ", \"text\": \"\xc0\xaf\"}", 400, "invalid_json",
		   "body");
	expect_err("{" BASE ", \"text\": \"\xed\xa0\x80\"}", 400,
		   "invalid_json", "body");
	expect_err("{" BASE ", \"text\": \"t\", \"n\": 1e999}", 400,
		   "invalid_json",
		   "body: not valid JSON (number out of range)");
	/* NUL in a key at any depth; the NUL stand-in with a real NUL. */
	expect_err("{" BASE
		   ", \"text\": \"t\", \"headers\": {\"X\\u0000\": \"v\"}}",
		   400, "invalid_json", "body: not valid JSON (NUL in a key)");
	expect_err("{" BASE
		   ", \"text\": \"\\u0000\", \"subject\": \"\\ufdd0\"}",
		   400, "invalid_json", "body");
	expect_err("{" BASE ", \"text\": \"\\u0000\xef\xb7\x90\"}", 400,
		   "invalid_json", "body");
	/* Trailing white space is fine, a second value is not. */
	m = build_ok("{" BASE ", \"text\": \"t\"} \r\n\t ");
	store_message_free(m);
	expect_err("{" BASE ", \"text\": \"t\"} {}", 400, "invalid_json",
		   "body: not valid JSON (trailing bytes");

	/* An escaped backslash then "u0000" is text, not a NUL. */
	m = build_ok("{" BASE ", \"subject\": \"a\\\\u0000b\","
		     " \"text\": \"x\\\\u0000y\"}");
	assert_string_equal(m->subject, "a\\u0000b");
	msg = parse_mime(m);
	assert_string_equal(g_mime_message_get_subject(msg), "a\\u0000b");
	t = part_text(g_mime_message_get_mime_part(msg));
	assert_string_equal(t, "x\\u0000y\r\n");
	g_free(t);
	g_object_unref(msg);
	store_message_free(m);
	/* U+FDD0 on its own is ordinary text. */
	m = build_ok("{" BASE ", \"subject\": \"\\ufdd0\", \"text\": \"t\"}");
	assert_string_equal(m->subject, "\xef\xb7\x90");
	store_message_free(m);
	/* A NUL after the stand-in's escape form is still a NUL. */
	expect_err("{" BASE ", \"subject\": \"a\\\\\\u0000\", \"text\": \"t\"}",
		   400, "invalid_field", "subject: contains NUL");
}

/* to_json and tags_json are JSON that reads back to what was given. */
static void
test_json_outputs(void **state)
{
	struct store_message *m = build_ok(
	    "{\"from\": \"ann@example.com\", \"to\": \"\\\"Q \\\\\\\" R\\\" "
	    "<q@example.net>\", \"text\": \"t\", \"tags\": [\"a\\\"b\", "
	    "\"c\\\\d\", \"x/y\"]}");
	json_t *v;

	v = json_loads(m->to_json, 0, NULL);
	assert_non_null(v);
	assert_string_equal(json_string_value(json_array_get(v, 0)),
			    "\"Q \\\" R\" <q@example.net>");
	json_decref(v);
	v = json_loads(m->tags_json, 0, NULL);
	assert_non_null(v);
	assert_int_equal(json_array_size(v), 3);
	assert_string_equal(json_string_value(json_array_get(v, 0)), "a\"b");
	assert_string_equal(json_string_value(json_array_get(v, 1)), "c\\d");
	assert_string_equal(json_string_value(json_array_get(v, 2)), "x/y");
	json_decref(v);
	store_message_free(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_json),
	    cmocka_unit_test(test_too_large),
	    cmocka_unit_test(test_json_cap_bound),
	    cmocka_unit_test(test_control_chars_qp),
	    cmocka_unit_test(test_json_strictness),
	    cmocka_unit_test(test_json_outputs),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
