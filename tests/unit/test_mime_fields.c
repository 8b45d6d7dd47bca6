/*
 * Unit tests of mime_fields, the GMime side of the JSON-API connectors:
 * envelope recipients placed by the To and Cc headers with the names they
 * give; the first text/plain and text/html parts as the bodies, a second
 * text part and a file as attachments (base64 of the decoded bytes, the
 * content id of an inline part); headers passed decoded minus the skipped
 * ones; a message with no text or HTML part refused; mime_fields_json()
 * dumps what its fill set, or passes on its reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/mime_fields.h"

#include <stdlib.h>
#include <string.h>

#define MSG                                                                    \
	"From: =?UTF-8?Q?Zo=C3=AB?= <zoe@example.com>\r\n"                     \
	"To: Bob <bob@example.net>\r\n"                                        \
	"Cc: cc@example.net\r\n"                                               \
	"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"                             \
	"X-Campaign: c1\r\n"                                                   \
	"MIME-Version: 1.0\r\n"                                                \
	"Content-Type: multipart/mixed; boundary=b\r\n"                        \
	"\r\n"                                                                 \
	"--b\r\n"                                                              \
	"Content-Type: text/plain; charset=utf-8\r\n"                          \
	"\r\n"                                                                 \
	"hello\r\n"                                                            \
	"--b\r\n"                                                              \
	"Content-Type: text/html; charset=utf-8\r\n"                           \
	"\r\n"                                                                 \
	"<p>hi</p>\r\n"                                                        \
	"--b\r\n"                                                              \
	"Content-Type: image/png\r\n"                                          \
	"Content-Disposition: inline\r\n"                                      \
	"Content-Id: <logo@x>\r\n"                                             \
	"Content-Transfer-Encoding: base64\r\n"                                \
	"\r\n"                                                                 \
	"AAEC\r\n"                                                             \
	"--b\r\n"                                                              \
	"Content-Type: text/plain\r\n"                                         \
	"\r\n"                                                                 \
	"second\r\n"                                                           \
	"--b--\r\n"

static const char *const rcpts[] = {"bob@example.net", "CC@example.net",
				    "hidden@example.net"};
static const char *const skip[] = {
    "to", "from", "cc", "subject", "mime-version", "content-type", NULL};

static GMimeMessage *
parse(const char *text)
{
	struct connector_job job = {.message_id = "m1",
				    .rcpt = rcpts,
				    .nrcpt = 3,
				    .mime = (const uint8_t *)text,
				    .mime_len = strlen(text)};

	return mime_fields_parse(&job);
}

static void
test_recipients(void **state)
{
	GMimeMessage *msg = parse(MSG);
	json_t *r;

	(void)state;
	assert_non_null(msg);
	assert_int_equal(mime_fields_rcpt_kind(msg, rcpts[0]), MIME_RCPT_TO);
	assert_int_equal(mime_fields_rcpt_kind(msg, rcpts[1]), MIME_RCPT_CC);
	assert_int_equal(mime_fields_rcpt_kind(msg, rcpts[2]), MIME_RCPT_BCC);
	r = mime_fields_rcpt(msg, rcpts[0]);
	assert_string_equal(json_string_value(json_object_get(r, "name")),
			    "Bob");
	json_decref(r);
	r = mime_fields_rcpt(msg, rcpts[2]);
	assert_null(json_object_get(r, "name"));
	assert_string_equal(json_string_value(json_object_get(r, "email")),
			    "hidden@example.net");
	json_decref(r);
	r = mime_fields_mailbox(
	    mime_fields_first(g_mime_message_get_from(msg)));
	assert_string_equal(json_string_value(json_object_get(r, "name")),
			    "Zo\xc3\xab");
	json_decref(r);
	g_object_unref(msg);
}

static void
test_body_and_headers(void **state)
{
	GMimeMessage *msg = parse(MSG);
	struct mime_body mb;
	json_t *a, *h;

	(void)state;
	assert_non_null(msg);
	assert_null(mime_fields_body(msg, &mb));
	assert_string_equal(mb.text, "hello");
	assert_string_equal(mb.html, "<p>hi</p>");
	assert_int_equal(json_array_size(mb.attachments), 2);
	a = json_array_get(mb.attachments, 0);
	assert_string_equal(json_string_value(json_object_get(a, "content")),
			    "AAEC");
	assert_string_equal(
	    json_string_value(json_object_get(a, "disposition")), "inline");
	assert_string_equal(json_string_value(json_object_get(a, "content_id")),
			    "logo@x");
	a = json_array_get(mb.attachments, 1);
	assert_string_equal(json_string_value(json_object_get(a, "type")),
			    "text/plain");
	assert_null(json_object_get(a, "content_id"));
	mime_fields_body_free(&mb);
	h = mime_fields_headers(msg, skip);
	assert_non_null(h);
	assert_string_equal(json_string_value(json_object_get(h, "X-Campaign")),
			    "c1");
	assert_null(json_object_get(h, "Subject"));
	assert_null(json_object_get(h, "To"));
	json_decref(h);
	g_object_unref(msg);
}

/* Where one API wants the content, the way conn_postmark.c names it. */
static const struct mime_content_names names = {
    .text = "T",
    .html = "H",
    .attachments = "A",
    .attach = {.filename = "N", .content = "C", .content_id = "I"},
    .cannot_attach = "cannot",
};

/*
 * mime_fields_content(): the bodies and the attachments under the API's
 * keys, only the keys it names, the content id only on the inline part.
 */
static void
test_content_in_api_keys(void **state)
{
	GMimeMessage *msg = parse(MSG);
	json_t *o = json_object(), *a;

	(void)state;
	assert_non_null(msg);
	assert_null(mime_fields_content(o, msg, &names));
	assert_string_equal(json_string_value(json_object_get(o, "T")),
			    "hello");
	assert_string_equal(json_string_value(json_object_get(o, "H")),
			    "<p>hi</p>");
	assert_int_equal(json_array_size(json_object_get(o, "A")), 2);
	a = json_array_get(json_object_get(o, "A"), 0);
	assert_int_equal(json_object_size(a), 3); /* N, C, I: no type */
	assert_string_equal(json_string_value(json_object_get(a, "C")), "AAEC");
	assert_string_equal(json_string_value(json_object_get(a, "I")),
			    "logo@x");
	assert_string_equal(json_string_value(json_object_get(a, "N")),
			    "attachment");
	a = json_array_get(json_object_get(o, "A"), 1);
	assert_int_equal(json_object_size(a), 2); /* not inline: no I */
	assert_null(json_object_get(a, "I"));
	json_decref(o);
	g_object_unref(msg);
}

static void
test_no_text_refused(void **state)
{
	GMimeMessage *msg =
	    parse("From: a@example.com\r\nTo: b@example.net\r\n"
		  "Content-Type: application/pdf\r\n\r\n%PDF\r\n");
	struct mime_body mb;

	(void)state;
	assert_non_null(msg);
	assert_string_equal(mime_fields_body(msg, &mb), "no text or HTML part");
	assert_null(mb.attachments); /* freed on refusal */
	g_object_unref(msg);
}

/* A fill that names the subject, or refuses when arg says so. */
static const char *
fill_subject(json_t *root, GMimeMessage *msg, const struct connector_job *job,
	     void *arg)
{
	assert_int_equal(job->nrcpt, 3);
	if (arg != NULL)
		return arg;
	return mime_fields_set_str(root, "subject",
				   g_mime_message_get_subject(msg))
		   ? NULL
		   : "not UTF-8";
}

static void
test_json(void **state)
{
	struct connector_job job = {.message_id = "m1",
				    .rcpt = rcpts,
				    .nrcpt = 3,
				    .mime = (const uint8_t *)MSG,
				    .mime_len = strlen(MSG)};
	const char *why = "unset";
	char *body;

	(void)state;
	body = mime_fields_json(&job, fill_subject, NULL, &why);
	assert_null(why);
	assert_string_equal(body, "{\"subject\":\"Grüße\"}");
	free(body);
	body = mime_fields_json(&job, fill_subject, (void *)"refused", &why);
	assert_null(body);
	assert_string_equal(why, "refused");
	job.nrcpt = 0;
	assert_null(mime_fields_json(&job, fill_subject, NULL, &why));
	assert_string_equal(why, "no recipient");
}

/* mime_fields_dump() writes what json_dumps(JSON_COMPACT) writes. */
static void
test_dump(void **state)
{
	static const char *const texts[] = {
	    "{}",
	    "[]",
	    "{\"a\":\"plain\",\"b\":[1,-2,true,false,null],\"c\":{}}",
	    "{\"q\":\"say \\\"hi\\\" \\\\ / \u00e9t\u00e9 \u2603\"}",
	    "{\"ctl\":\"a\\nb\\r\\tc\\u0001\\u001f\\u0000d\"}",
	    "{\"k\\\"ey\":[{\"x\":[[\"deep\"]]}],\"z\":9007199254740993}",
	};
	json_t *v, *back;
	char *ours, *theirs;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		v = json_loads(texts[i], JSON_ALLOW_NUL, NULL);
		assert_non_null(v);
		ours = mime_fields_dump(v);
		theirs = json_dumps(v, JSON_COMPACT);
		assert_non_null(ours);
		assert_non_null(theirs);
		back = json_loads(ours, JSON_ALLOW_NUL, NULL);
		assert_non_null(back);
		assert_true(json_equal(v, back));
		/* Byte for byte where the two escapers agree (no control
		 * characters: jansson writes those in upper-case hex). */
		if (strstr(texts[i], "ctl") == NULL)
			assert_string_equal(ours, theirs);
		json_decref(back);
		free(ours);
		free(theirs);
		json_decref(v);
	}
	/* Reals and trees deeper than any body are refused. */
	v = json_pack("{s:f}", "r", 1.5);
	assert_null(mime_fields_dump(v));
	json_decref(v);
	v = json_string("leaf");
	for (i = 0; i < 20; i++)
		v = json_pack("[o]", v);
	assert_null(mime_fields_dump(v));
	json_decref(v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_recipients),
	    cmocka_unit_test(test_body_and_headers),
	    cmocka_unit_test(test_content_in_api_keys),
	    cmocka_unit_test(test_no_text_refused),
	    cmocka_unit_test(test_json),
	    cmocka_unit_test(test_dump),
	};
	int rc;

	g_mime_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	g_mime_shutdown();
	return rc;
}
