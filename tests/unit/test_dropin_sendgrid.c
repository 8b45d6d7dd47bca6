/*
 * Unit tests of the SendGrid translator (intake/dropin.h): a request
 * becomes one /v1 body per personalization that message_from_json()
 * builds into the message the request asked for; every refusal names the
 * field in SendGrid's dotted form; a /v1 refusal is renamed the same way;
 * the bounds (personalizations, recipients in all, bytes in all) hold.
 * The ASan build catches leaks on the refusal paths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "intake/dropin.h"
#include "intake/message.h"
#include "intake/message_int.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

static const struct message_limits lim = {
    .max_message_bytes = 8192,
    .max_recipients = 4,
};

#define FROM "\"from\":{\"email\":\"f@example.com\",\"name\":\"Eff\"}"
#define CONTENT "\"content\":[{\"type\":\"text/plain\",\"value\":\"hi\"}]"
#define ONE_TO "\"personalizations\":[{\"to\":[{\"email\":\"t@example.com\"}]}]"

static int
setup(void **state)
{
	(void)state;
	message_init();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	message_shutdown();
	return 0;
}

/* Translates s; asserts the result (0 or -1). */
static void
translate(const char *s, int want, struct dropin_batch *b,
	  struct message_error *e)
{
	memset(e, 0, sizeof(*e));
	if (dropin_sendgrid(s, strlen(s), &lim, 1 << 20, b, e) != want)
		fail_msg("%s: not %s", s, want == 0 ? "taken" : "refused");
	if (want != 0)
		assert_int_equal(b->n, 0);
}

/* The message of body i, built as /v1 builds it. */
static struct store_message *
build(const struct dropin_batch *b, size_t i)
{
	struct store_message *m = NULL;
	struct message_error e;

	memset(&e, 0, sizeof(e));
	if (message_from_json(b->json[i], b->len[i], &lim, &m, &e) != 0)
		fail_msg("build refused: %s (%s)", e.message, b->json[i]);
	return m;
}

static void
test_minimal(void **state)
{
	struct dropin_batch b;
	struct message_error e;
	struct store_message *m;

	(void)state;
	translate("{" ONE_TO "," FROM ",\"subject\":\"S\"," CONTENT "}", 0, &b,
		  &e);
	assert_int_equal(b.n, 1);
	m = build(&b, 0);
	assert_string_equal(m->mail_from, "f@example.com");
	assert_int_equal(m->nrcpt, 1);
	assert_string_equal(m->rcpt[0], "t@example.com");
	assert_string_equal(m->subject, "S");
	assert_non_null(strstr(m->mime, "From: Eff <f@example.com>\r\n"));
	store_message_free(m);
	dropin_batch_cleanup(&b);
}

static void
test_personalizations(void **state)
{
	struct dropin_batch b;
	struct message_error e;
	struct store_message *m;

	(void)state;
	translate("{\"personalizations\":["
		  "{\"to\":[{\"email\":\"a@example.com\",\"name\":\"A, B\"}],"
		  "\"bcc\":[{\"email\":\"z@example.com\"}],"
		  "\"headers\":{\"x-tier\":\"gold\"},"
		  "\"custom_args\":{\"k\":\"p\"}},"
		  "{\"to\":[{\"email\":\"b@example.com\"}],\"subject\":\"Two\"}"
		  "]," FROM ",\"subject\":\"One\"," CONTENT
		  ",\"headers\":{\"X-Tier\":\"silver\",\"X-C\":\"c\"},"
		  "\"custom_args\":{\"k\":\"top\",\"j\":\"1\"},"
		  "\"categories\":[\"t1\"],"
		  "\"reply_to_list\":[{\"email\":\"r@example.com\"},"
		  "{\"email\":\"s@example.com\"}]}",
		  0, &b, &e);
	assert_int_equal(b.n, 2);
	m = build(&b, 0);
	assert_int_equal(m->nrcpt, 2); /* to and bcc */
	assert_string_equal(m->subject, "One");
	assert_non_null(strstr(m->mime, "To: \"A, B\" <a@example.com>\r\n"));
	assert_null(strstr(m->mime, "Bcc:"));
	assert_non_null(strstr(m->mime, "x-tier: gold\r\n"));
	assert_null(strstr(m->mime, "silver"));
	assert_non_null(strstr(m->mime, "X-C: c\r\n"));
	assert_non_null(strstr(m->mime, "X-Shivneri-Custom-Args: "
					"{\"j\":\"1\",\"k\":\"p\"}\r\n"));
	assert_non_null(
	    strstr(m->mime, "Reply-To: r@example.com, s@example.com\r\n"));
	assert_string_equal(m->tags_json, "[\"t1\"]");
	store_message_free(m);
	m = build(&b, 1);
	assert_string_equal(m->subject, "Two");
	assert_non_null(strstr(m->mime, "X-Tier: silver\r\n"));
	assert_non_null(strstr(m->mime, "X-Shivneri-Custom-Args: "
					"{\"k\":\"top\",\"j\":\"1\"}\r\n"));
	store_message_free(m);
	dropin_batch_cleanup(&b);
}

static void
test_inline_attachment(void **state)
{
	struct dropin_batch b;
	struct message_error e;
	struct store_message *m;

	(void)state;
	translate(
	    "{" ONE_TO "," FROM ",\"subject\":\"S\","
	    "\"content\":[{\"type\":\"text/plain\",\"value\":\"a\"},"
	    "{\"type\":\"text/html\",\"value\":\"<img src=cid:c1>\"}],"
	    "\"attachments\":[{\"content\":\"QUJD\",\"filename\":\"l.png\","
	    "\"type\":\"image/png\",\"disposition\":\"inline\","
	    "\"content_id\":\"c1\"},{\"content\":\"QUJD\","
	    "\"filename\":\"a.txt\"}]}",
	    0, &b, &e);
	m = build(&b, 0);
	assert_non_null(strstr(m->mime, "Content-ID: <c1>\r\n"
					"Content-Disposition: inline; "
					"filename=l.png\r\n"));
	assert_non_null(strstr(m->mime, "Content-Disposition: attachment; "
					"filename=a.txt\r\n"));
	assert_non_null(strstr(m->mime, "multipart/alternative"));
	store_message_free(m);
	dropin_batch_cleanup(&b);
}

/* A message with one attachment of type t (a JSON string's content). */
static void
typed_body(char *out, size_t outsz, const char *t)
{
	int n = snprintf(out, outsz,
			 "{" ONE_TO "," FROM ",\"subject\":\"S\"," CONTENT
			 ",\"attachments\":[{\"content\":\"QUJD\","
			 "\"filename\":\"a.txt\",\"type\":\"%s\"}]}",
			 t);

	assert_true(n > 0 && (size_t)n < outsz);
}

/*
 * SendGrid takes an attachment type with parameters; so does the
 * builder, which writes it as given: GMime reads back the type, the
 * subtype and each parameter as written, and the header's value starts
 * with the type verbatim (the relay's name= follows).
 */
static void
test_attachment_type_parameters(void **state)
{
	static const struct {
		const char *json, *raw, *mime, *attr, *val;
	} good[] = {
	    {"text/plain; charset=utf-8", "text/plain; charset=utf-8",
	     "text/plain", "charset", "utf-8"},
	    {"text/csv;charset=\\\"ISO-8859-1\\\"; header=present",
	     "text/csv;charset=\"ISO-8859-1\"; header=present", "text/csv",
	     "header", "present"},
	    {"application/pdf ; x-t=\\\"a b\\\"",
	     "application/pdf ; x-t=\"a b\"", "application/pdf", "x-t", "a b"},
	};
	/* CR, LF, controls, 8-bit; what readers differ on: RFC 2231, a
	 * name twice, a quoted-pair; the relay's own name=. */
	static const char *const bad_types[] = {
	    "text/plain; charset=utf-8\\r\\nBcc: x@example.com",
	    "text/plain; charset=\\u0001",
	    "text/plain; charset=\\u00e9",
	    "text/plain; a=\\\"\\u007f\\\"",
	    "text/plain; charset=a; CHARSET=b",
	    "text/plain; title*=utf-8''x",
	    "text/plain; a=\\\"b\\\\\\\"c\\\"",
	    "text/plain; name=x",
	    "text/plain; a=b c",
	    "text/plain; a",
	    "text/plain;; a=b",
	    "multipart/mixed; boundary=x",
	};
	char body[1024], *type;
	struct dropin_batch b;
	struct message_error e;
	struct store_message *m;
	GMimeStream *st;
	GMimeParser *ps;
	GMimeMessage *msg;
	GMimeObject *att;
	GMimeContentType *ct;
	const char *hv;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_SIZE(good); i++) {
		typed_body(body, sizeof(body), good[i].json);
		translate(body, 0, &b, &e);
		m = build(&b, 0);
		st = g_mime_stream_mem_new_with_buffer(m->mime, m->mime_len);
		ps = g_mime_parser_new_with_stream(st);
		msg = g_mime_parser_construct_message(ps, NULL);
		assert_non_null(msg);
		att = g_mime_multipart_get_part(
		    GMIME_MULTIPART(g_mime_message_get_mime_part(msg)), 1);
		ct = g_mime_object_get_content_type(att);
		type = g_mime_content_type_get_mime_type(ct);
		assert_string_equal(type, good[i].mime);
		g_free(type);
		assert_string_equal(
		    g_mime_content_type_get_parameter(ct, good[i].attr),
		    good[i].val);
		assert_string_equal(
		    g_mime_content_type_get_parameter(ct, "name"), "a.txt");
		hv = g_mime_object_get_header(att, "Content-Type");
		assert_non_null(hv);
		if (strncmp(hv, good[i].raw, strlen(good[i].raw)) != 0)
			fail_msg("written as \"%s\", not \"%s\"", hv,
				 good[i].raw);
		g_object_unref(msg);
		g_object_unref(ps);
		g_object_unref(st);
		store_message_free(m);
		dropin_batch_cleanup(&b);
	}
	for (i = 0; i < ARRAY_SIZE(bad_types); i++) {
		typed_body(body, sizeof(body), bad_types[i]);
		translate(body, 0, &b, &e);
		memset(&e, 0, sizeof(e));
		m = NULL;
		if (message_from_json(b.json[0], b.len[0], &lim, &m, &e) == 0)
			fail_msg("type \"%s\" taken", bad_types[i]);
		assert_non_null(
		    strstr(e.message, "attachments[0].content_type: "));
		dropin_batch_cleanup(&b);
	}
}

/* One refusal: the status and the field the message starts with. */
static void
refused(const char *body, int status, const char *field)
{
	struct dropin_batch b;
	struct message_error e;
	size_t n = strlen(field);

	translate(body, -1, &b, &e);
	assert_int_equal(e.http_status, status);
	if (strncmp(e.message, field, n) != 0 || e.message[n] != ':')
		fail_msg("%s: refused as \"%s\", not %s", body, e.message,
			 field);
}

static void
test_refusals(void **state)
{
	(void)state;
	refused("{", 400, "body");
	refused("{}", 400, "personalizations");
	refused("{\"personalizations\":[]," FROM "," CONTENT "}", 400,
		"personalizations");
	refused("{" ONE_TO "," CONTENT ",\"subject\":\"s\"}", 400, "from");
	refused("{" ONE_TO "," FROM "," CONTENT "}", 400, "subject");
	refused("{" ONE_TO "," FROM ",\"subject\":\"s\"}", 400, "content");
	refused("{" ONE_TO "," FROM ",\"subject\":\"s\"," CONTENT
		",\"template_id\":\"d-1\"}",
		400, "template_id");
	refused("{" ONE_TO "," FROM ",\"subject\":\"s\"," CONTENT
		",\"mail_settings\":{\"sandbox_mode\":{\"enable\":true}}}",
		400, "mail_settings.sandbox_mode");
	refused("{\"personalizations\":[{\"to\":[{\"email\":\"a@b.c\"}],"
		"\"substitutions\":{}}]," FROM ",\"subject\":\"s\"," CONTENT
		"}",
		400, "personalizations.0.substitutions");
	refused("{\"personalizations\":[{\"to\":[{\"email\":1}]}]," FROM
		",\"subject\":\"s\"," CONTENT "}",
		400, "personalizations.0.to.0.email");
	refused("{\"personalizations\":[{\"to\":[{\"mail\":\"x\"}]}]," FROM
		",\"subject\":\"s\"," CONTENT "}",
		400, "personalizations.0.to.0.mail");
	refused("{\"personalizations\":[{\"cc\":[{\"email\":\"a@b.c\"}]}]," FROM
		",\"subject\":\"s\"," CONTENT "}",
		400, "personalizations.0.to");
	refused("{" ONE_TO "," FROM ",\"subject\":\"s\","
		"\"content\":[{\"type\":\"text/plain\",\"value\":\"a\"},"
		"{\"type\":\"text/plain\",\"value\":\"b\"}]}",
		400, "content.1.type");
	refused("{" ONE_TO "," FROM ",\"subject\":\"s\"," CONTENT
		",\"attachments\":[{\"content\":\"QQ==\",\"filename\":\"a\","
		"\"content_id\":\"x\"}]}",
		400, "attachments.0.content_id");
	refused("{" ONE_TO "," FROM ",\"subject\":\"s\"," CONTENT
		",\"headers\":{\"X-A\":1}}",
		400, "headers.X-A");
	refused("{" ONE_TO "," FROM ",\"subject\":\"s\"," CONTENT
		",\"custom_args\":{\"a\":\"b\"},\"headers\":"
		"{\"x-shivneri-custom-args\":\"c\"}}",
		400, "headers.X-Shivneri-Custom-Args");
	refused("{\"personalizations\":[{\"to\":[{\"email\":\"t@b.c\"}],"
		"\"headers\":{\"x-shivneri-custom-args\":\"c\"}}]," FROM
		",\"subject\":\"s\"," CONTENT ",\"custom_args\":{\"a\":\"b\"}}",
		400, "personalizations.0.headers.X-Shivneri-Custom-Args");
	refused("{" ONE_TO "," FROM ",\"subject\":\"s\\u0000\"," CONTENT "}",
		400, "body");
	/* Five recipients over two personalizations, four allowed. */
	refused(
	    "{\"personalizations\":[{\"to\":[{\"email\":\"a@b.c\"},"
	    "{\"email\":\"b@b.c\"},{\"email\":\"c@b.c\"}]},"
	    "{\"to\":[{\"email\":\"d@b.c\"}],\"cc\":[{\"email\":\"e@b.c\"}]}"
	    "]," FROM ",\"subject\":\"s\"," CONTENT "}",
	    400, "personalizations");
}

/* A JSON object of n members "PREFIXi":"" into b. */
static void
members(struct buf *b, const char *prefix, int n)
{
	int i;

	assert_int_equal(buf_appends(b, "{"), 0);
	for (i = 0; i < n; i++)
		assert_int_equal(
		    buf_appendf(b, "%s\"%s%d\":\"\"", i ? "," : "", prefix, i),
		    0);
	assert_int_equal(buf_appends(b, "}"), 0);
}

/* A request with the given top-level and personalization maps. */
static void
maps_body(struct buf *b, const char *key, int top, int mine)
{
	buf_init(b, SIZE_MAX);
	assert_int_equal(
	    buf_appendf(b,
			"{\"personalizations\":[{\"to\":[{\"email\":"
			"\"t@example.com\"}],\"%s\":",
			key),
	    0);
	members(b, "p", mine);
	assert_int_equal(
	    buf_appendf(
		b, "}]," FROM ",\"subject\":\"s\"," CONTENT ",\"%s\":", key),
	    0);
	members(b, "t", top);
	assert_int_equal(buf_appends(b, "}"), 0);
}

/*
 * headers and custom_args maps are capped before they are merged (the
 * merge compares every pair): 64 headers (the builder's cap), 166
 * custom_args (more cannot fit in the header that carries them).  The
 * refusal names the map, the personalization's one included.
 */
static void
test_map_caps(void **state)
{
	struct buf b;

	(void)state;
	maps_body(&b, "headers", 65, 0);
	refused(b.p, 400, "headers");
	buf_cleanup(&b);
	maps_body(&b, "headers", 1, 65);
	refused(b.p, 400, "personalizations.0.headers");
	buf_cleanup(&b);
	maps_body(&b, "custom_args", 167, 1);
	refused(b.p, 400, "custom_args");
	buf_cleanup(&b);
	maps_body(&b, "custom_args", 0, 167);
	refused(b.p, 400, "personalizations.0.custom_args");
	buf_cleanup(&b);
	/* Within the cap but over the header's 998 bytes: named as sent. */
	maps_body(&b, "custom_args", 150, 0);
	refused(b.p, 400, "custom_args");
	buf_cleanup(&b);
	maps_body(&b, "custom_args", 10, 150);
	refused(b.p, 400, "personalizations.0.custom_args");
	buf_cleanup(&b);
	/* Huge maps cost one count, not their product. */
	maps_body(&b, "headers", 50000, 50000);
	refused(b.p, 400, "headers");
	buf_cleanup(&b);
	/* At the caps the translation goes on (the builder judges). */
	maps_body(&b, "headers", 64, 64);
	{
		struct dropin_batch out;
		struct message_error e;

		translate(b.p, 0, &out, &e);
		dropin_batch_cleanup(&out);
	}
	buf_cleanup(&b);
}

/*
 * Content the builder would refuse for its size (text as is, base64 as
 * 3/4 of it, over max_message_bytes) is refused 413 before any
 * personalization is printed.
 */
static void
test_content_too_large(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, SIZE_MAX);
	assert_int_equal(buf_appendf(&b,
				     "{" ONE_TO "," FROM ",\"subject\":\"s\","
				     "\"content\":[{\"type\":\"text/plain\","
				     "\"value\":\"%08193d\"}]}",
				     0),
			 0);
	refused(b.p, 413, "message");
	buf_cleanup(&b);
	buf_init(&b, SIZE_MAX);
	assert_int_equal(buf_appendf(&b,
				     "{" ONE_TO "," FROM
				     ",\"subject\":\"s\"," CONTENT
				     ",\"attachments\":[{\"filename\":"
				     "\"a\",\"content\":\"%010924d\"}]}",
				     0),
			 0);
	refused(b.p, 413, "message");
	buf_cleanup(&b);
}

/* Base64 of n bytes with CR LF after every character, into b. */
static void
wrapped_b64(struct buf *b, size_t n)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i, k;
	unsigned v;

	for (i = 0; i < n; i += 3) {
		v = (unsigned)(i % 251) << 16;
		if (i + 1 < n)
			v |= (unsigned)((i + 1) % 251) << 8;
		if (i + 2 < n)
			v |= (unsigned)((i + 2) % 251);
		for (k = 0; k < 4; k++) {
			if (k >= 2 && i + k - 1 >= n)
				assert_int_equal(buf_appends(b, "="), 0);
			else
				assert_int_equal(
				    buf_appendf(b, "%c",
						abc[v >> (18 - 6 * k) & 63]),
				    0);
			assert_int_equal(buf_appends(b, "\\r\\n"), 0);
		}
	}
}

/*
 * Base64 padded with line breaks is counted as what it decodes to, by
 * the translator and by the builder: 4,000 bytes with CR LF after every
 * character (48 KB of JSON, which 3/4 of its length took for 9,000 bytes
 * of message) translate and build into a message under the 8,192 limit;
 * 8,193 bytes so wrapped are refused 413 before any build.
 */
static void
test_wrapped_base64_counts_as_decoded(void **state)
{
	struct dropin_batch b;
	struct message_error e;
	struct store_message *m;
	struct buf body;

	(void)state;
	assert_int_equal(message__b64_decoded_len("QUJD\r\nRA==", 10), 4);
	assert_int_equal(message__b64_decoded_len("QUJDRA", 6), 4);
	assert_int_equal(message__b64_decoded_len("Q\nU\nJ\nD\n", 8), 3);
	assert_int_equal(message__b64_decoded_len("\r\n\r\n", 4), 0);
	buf_init(&body, SIZE_MAX);
	assert_int_equal(buf_appends(&body, "{" ONE_TO "," FROM
					    ",\"subject\":\"s\"," CONTENT
					    ",\"attachments\":[{\"filename\":"
					    "\"a.bin\",\"content\":\""),
			 0);
	wrapped_b64(&body, 4000);
	assert_int_equal(buf_appends(&body, "\"}]}"), 0);
	translate(body.p, 0, &b, &e);
	m = build(&b, 0);
	assert_true(m->mime_len <= lim.max_message_bytes);
	store_message_free(m);
	dropin_batch_cleanup(&b);
	buf_cleanup(&body);

	buf_init(&body, SIZE_MAX);
	assert_int_equal(buf_appends(&body, "{" ONE_TO "," FROM
					    ",\"subject\":\"s\"," CONTENT
					    ",\"attachments\":[{\"filename\":"
					    "\"a.bin\",\"content\":\""),
			 0);
	wrapped_b64(&body, 8193);
	assert_int_equal(buf_appends(&body, "\"}]}"), 0);
	refused(body.p, 413, "message");
	buf_cleanup(&body);
}

static void
test_total_bytes(void **state)
{
	struct dropin_batch b;
	struct message_error e;
	char body[4096];
	int n;

	(void)state;
	n = snprintf(body, sizeof(body),
		     "{\"personalizations\":[{\"to\":[{\"email\":\"a@b.c\"}]},"
		     "{\"to\":[{\"email\":\"b@b.c\"}]}]," FROM
		     ",\"subject\":\"s\",\"content\":[{\"type\":\"text/plain\","
		     "\"value\":\"%0600d\"}]}",
		     0);
	assert_true(n > 0 && (size_t)n < sizeof(body));
	memset(&e, 0, sizeof(e));
	/* Two copies of 600 bytes do not fit in 1,000. */
	assert_int_equal(dropin_sendgrid(body, (size_t)n, &lim, 1000, &b, &e),
			 -1);
	assert_int_equal(e.http_status, 413);
	assert_int_equal(dropin_sendgrid(body, (size_t)n, &lim, 4000, &b, &e),
			 0);
	assert_int_equal(b.n, 2);
	dropin_batch_cleanup(&b);
}

static void
test_field_names(void **state)
{
	char f[128];

	(void)state;
	dropin_sendgrid_field(NULL, "to[1]: not a valid address", 3, f,
			      sizeof(f));
	assert_string_equal(f, "personalizations.3.to.1");
	dropin_sendgrid_field(NULL, "bcc: must be", 0, f, sizeof(f));
	assert_string_equal(f, "personalizations.0.bcc");
	dropin_sendgrid_field(NULL,
			      "attachments[2].content_base64: not valid base64",
			      0, f, sizeof(f));
	assert_string_equal(f, "attachments.2.content_base64");
	dropin_sendgrid_field(NULL, "headers.X-A: contains CR or LF", 0, f,
			      sizeof(f));
	assert_string_equal(f, "headers.X-A");
	/* A header name keeps its brackets. */
	dropin_sendgrid_field(NULL, "headers.X[1]: contains CR or LF", 0, f,
			      sizeof(f));
	assert_string_equal(f, "headers.X[1]");
	dropin_sendgrid_field(NULL, "tags[0]: must be printable ASCII", 0, f,
			      sizeof(f));
	assert_string_equal(f, "categories.0");
	dropin_sendgrid_field(NULL, "text: holds the MIME boundary", 0, f,
			      sizeof(f));
	assert_string_equal(f, "content");
	dropin_sendgrid_field(NULL, "message: larger than 5 bytes", 0, f,
			      sizeof(f));
	assert_string_equal(f, "");
	dropin_sendgrid_field(NULL, "no colon here", 0, f, sizeof(f));
	assert_string_equal(f, "");
}

/*
 * The field a build refusal of personalization p's body names, through
 * the batch as the front does.
 */
static void
built_field(const char *body, size_t p, const char *want)
{
	struct dropin_batch b;
	struct message_error e;
	struct store_message *m = NULL;
	char f[192];

	translate(body, 0, &b, &e);
	assert_true(p < b.n);
	memset(&e, 0, sizeof(e));
	if (message_from_json(b.json[p], b.len[p], &lim, &m, &e) == 0)
		fail_msg("built: %s", b.json[p]);
	dropin_sendgrid_field(&b, e.message, p, f, sizeof(f));
	if (strcmp(f, want) != 0)
		fail_msg("\"%s\" named \"%s\", not \"%s\"", e.message, f, want);
	dropin_batch_cleanup(&b);
}

#define TWO_PERS(h0, h1)                                                       \
	"{\"personalizations\":[{\"to\":[{\"email\":\"a@b.c\"}]" h0 "},"       \
	"{\"to\":[{\"email\":\"b@b.c\"}]" h1 "}]," FROM                        \
	",\"subject\":\"s\"," CONTENT

/*
 * A header a personalization set is named under it
 * (personalizations.N.headers.X), one of the top-level map as
 * headers.X, whatever the case, a name cut short in the refusal, or a
 * bad name holding ": ".
 */
static void
test_header_field_names(void **state)
{
	/* 60 bytes: the refusal prints 47 of them. */
	static const char long_name[] =
	    "X-Very-Long-Header-Name-That-The-Refusal-Cuts-Short-123456";

	(void)state;
	built_field(
	    TWO_PERS("", ",\"headers\":{\"X-A\":\"1\\r\\nBcc: x@y.z\"}") "}", 1,
	    "personalizations.1.headers.X-A");
	built_field(TWO_PERS("", "") ",\"headers\":{\"X-A\":\"1\\nB\"}}", 1,
		    "headers.X-A");
	built_field(TWO_PERS("", "") ",\"headers\":{\"Bcc\":\"x@y.z\"}}", 0,
		    "headers.Bcc");
	/* The personalization's x-a overrides the top-level X-A. */
	built_field(TWO_PERS(",\"headers\":{\"x-a\":\"\\u0001\"}",
			     "") ",\"headers\":{\"X-A\":\"ok\"}}",
		    0, "personalizations.0.headers.x-a");
	built_field(TWO_PERS(",\"headers\":{\"Bcc\":\"x@y.z\"}",
			     "") ",\"headers\":{\"X-B\":\"ok\"}}",
		    0, "personalizations.0.headers.Bcc");
	built_field(TWO_PERS(",\"headers\":{\"A: b\":\"x\"}", "") "}", 0,
		    "personalizations.0.headers.A: b");
	built_field(
	    TWO_PERS(",\"headers\":{\"Date\":\"1\",\"date\":\"2\"}", "") "}", 0,
	    "personalizations.0.headers.date");
	{
		char body[1024];

		snprintf(body, sizeof(body),
			 TWO_PERS(",\"headers\":{\"%s\":\"\\u0001\"}", "") "}",
			 long_name);
		built_field(body, 0,
			    "personalizations.0.headers.X-Very-Long-Header-"
			    "Name-That-The-Refusal-Cut...");
		snprintf(body, sizeof(body),
			 TWO_PERS("", "") ",\"headers\":{\"%s\":\"\\u0001\"}}",
			 long_name);
		built_field(body, 0,
			    "headers.X-Very-Long-Header-Name-That-The-"
			    "Refusal-Cut...");
	}
}

/* What /v1 gained for the drop-ins: reply_to arrays, content_id. */
static void
test_v1_seam(void **state)
{
	static const char ok[] =
	    "{\"from\":\"f@example.com\",\"to\":\"t@example.com\","
	    "\"text\":\"x\",\"reply_to\":[\"a@example.com\",\"B "
	    "<b@example.com>\"],\"attachments\":[{\"filename\":\"l.png\","
	    "\"content_base64\":\"QUJD\",\"content_id\":\"l@x\"}]}";
	static const char *const bad[] = {
	    "\"content_id\":\"a b\"", "\"content_id\":\"<a>\"",
	    "\"content_id\":\"\"", "\"content_id\":5",
	    "\"content_id\":\"a\\u0000\""};
	struct store_message *m = NULL;
	struct message_error e;
	char body[512];
	size_t i;

	(void)state;
	memset(&e, 0, sizeof(e));
	assert_int_equal(message_from_json(ok, strlen(ok), &lim, &m, &e), 0);
	assert_non_null(
	    strstr(m->mime, "Reply-To: a@example.com, B <b@example.com>\r\n"));
	assert_non_null(strstr(m->mime, "Content-ID: <l@x>\r\n"));
	assert_int_equal(m->nrcpt, 1); /* reply_to is no recipient */
	store_message_free(m);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(body, sizeof(body),
			 "{\"from\":\"f@example.com\",\"to\":\"t@example.com\","
			 "\"text\":\"x\",\"attachments\":[{\"filename\":\"a\","
			 "\"content_base64\":\"QUJD\",%s}]}",
			 bad[i]);
		m = NULL;
		assert_int_equal(
		    message_from_json(body, strlen(body), &lim, &m, &e), -1);
		assert_null(m);
		assert_non_null(
		    strstr(e.message, "attachments[0].content_id: "));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_minimal),
	    cmocka_unit_test(test_personalizations),
	    cmocka_unit_test(test_inline_attachment),
	    cmocka_unit_test(test_attachment_type_parameters),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_map_caps),
	    cmocka_unit_test(test_content_too_large),
	    cmocka_unit_test(test_wrapped_base64_counts_as_decoded),
	    cmocka_unit_test(test_total_bytes),
	    cmocka_unit_test(test_field_names),
	    cmocka_unit_test(test_header_field_names),
	    cmocka_unit_test(test_v1_seam),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
