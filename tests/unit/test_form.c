/*
 * Unit tests of the form parser (intake/form.h) and the Mailgun
 * translator over it (intake/dropin.h): multipart with files and a
 * preamble, quoted names, urlencoded decoding; one refusal per rule (no
 * closing boundary, huge part headers, too many parts, a part without a
 * name, folded or bare-LF part headers, bad %-escapes, a foreign content
 * type); then what dropin_mailgun() makes of a form and what it refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "intake/dropin.h"
#include "intake/form.h"
#include "intake/message.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MP "multipart/form-data; boundary=\"b-1\""

static const struct message_limits lim = {
    .max_message_bytes = 8192,
    .max_recipients = 4,
};

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

static void
parse_ok(const char *ctype, const char *body, size_t len, struct form *fm)
{
	char why[128] = "";

	if (form_parse(ctype, body, len, fm, why, sizeof(why)) != 0)
		fail_msg("refused: %s", why);
}

static void
test_multipart(void **state)
{
	static const char body[] =
	    "preamble\r\n--b-1\r\n"
	    "Content-Disposition: form-data; name=\"from\"\r\n\r\n"
	    "a@example.com\r\n--b-1  \r\n"
	    "content-disposition: form-data; filename=\"x;\\\"y.bin\"; "
	    "name=attachment\r\nContent-Type: application/pdf\r\n\r\n"
	    "\0\r\n--b-\r\n\r\n--b-1\r\n"
	    "Content-Disposition: form-data; name=\"empty\"\r\n\r\n"
	    "\r\n--b-1--\r\nepilogue";
	struct form fm;

	(void)state;
	parse_ok(MP, body, sizeof(body) - 1, &fm);
	assert_int_equal(fm.n, 3);
	assert_string_equal(fm.f[0].name, "from");
	assert_null(fm.f[0].filename);
	assert_int_equal(fm.f[0].len, 13);
	assert_memory_equal(fm.f[0].value, "a@example.com", 13);
	assert_string_equal(fm.f[1].name, "attachment");
	assert_string_equal(fm.f[1].filename, "x;\"y.bin");
	assert_string_equal(fm.f[1].ctype, "application/pdf");
	assert_int_equal(fm.f[1].len, 9);
	assert_memory_equal(fm.f[1].value, "\0\r\n--b-\r\n", 9);
	assert_int_equal(fm.f[2].len, 0);
	form_cleanup(&fm);
}

static void
test_urlencoded(void **state)
{
	static const char body[] = "a=1+2%3D3&&b=%c3%bc&c&d=";
	struct form fm;

	(void)state;
	parse_ok("application/x-www-form-urlencoded; charset=utf-8", body,
		 sizeof(body) - 1, &fm);
	assert_int_equal(fm.n, 4);
	assert_string_equal(fm.f[0].name, "a");
	assert_memory_equal(fm.f[0].value, "1 2=3", 5);
	assert_memory_equal(fm.f[1].value, "\xc3\xbc", 2);
	assert_string_equal(fm.f[2].name, "c");
	assert_int_equal(fm.f[2].len, 0);
	assert_int_equal(fm.f[3].len, 0);
	form_cleanup(&fm);
}

static void
refused(const char *ctype, const char *body, size_t len, const char *needle)
{
	struct form fm;
	char why[128] = "";

	assert_int_equal(form_parse(ctype, body, len, &fm, why, sizeof(why)),
			 -1);
	assert_int_equal(fm.n, 0);
	assert_null(fm.f);
	if (strstr(why, needle) == NULL)
		fail_msg("refused as \"%s\", not for %s", why, needle);
}

#define PART(n, v)                                                             \
	"--b-1\r\nContent-Disposition: form-data; name=\"" n "\"\r\n\r\n" v    \
	"\r\n"

static void
test_refusals(void **state)
{
	const char *b;
	char *big;
	size_t i, n;
	struct form fm;
	char why[64];

	(void)state;
	b = PART("a", "1");
	refused(MP, b, strlen(b), "ends before");
	b = PART("a", "1") "--b-1";
	refused(MP, b, strlen(b), "CRLF");
	refused(MP, "no delimiter", 12, "no boundary");
	refused("multipart/form-data", b, strlen(b), "no boundary");
	refused("multipart/form-data; boundary=\"\"", b, strlen(b), "1 to 70");
	b = "--b-1\r\nContent-Type: text/plain\r\n\r\nx\r\n--b-1--";
	refused(MP, b, strlen(b), "Content-Disposition");
	b = "--b-1\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nx\r\n"
	    "--b-1--";
	refused(MP, b, strlen(b), "name");
	b = "--b-1\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\n"
	    "x\r\n--b-1--";
	refused(MP, b, strlen(b), "folded");
	b = "--b-1\r\nContent-Disposition: form-data; name=\"a\"\nX: y\r\n\r\n"
	    "x\r\n--b-1--";
	refused(MP, b, strlen(b), "control");
	b = "--b-1\r\nContent-Disposition: form-data; name=\"a\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\nx\r\n--b-1--";
	refused(MP, b, strlen(b), "transfer encoding");
	b = "--b-1\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\n"
	    "x\r\n--b-1--";
	refused(MP, b, strlen(b), "form-data");
	refused("application/x-www-form-urlencoded", "a=%zz", 5, "escape");
	refused("application/x-www-form-urlencoded", "a=%4", 4, "escape");
	refused("application/x-www-form-urlencoded", "=1", 2, "name");
	refused("application/x-www-form-urlencoded", "%00=1", 5, "name");
	assert_int_equal(
	    form_parse("application/json", "{}", 2, &fm, why, sizeof(why)), -2);

	/* A part header block over 8 KiB. */
	n = 20000;
	big = malloc(n);
	assert_non_null(big);
	i = (size_t)snprintf(big, n,
			     "--b-1\r\nContent-Disposition: form-data; "
			     "name=\"a\"\r\nX: ");
	memset(big + i, 'a', 9000);
	i += 9000;
	i += (size_t)snprintf(big + i, n - i, "\r\n\r\nx\r\n--b-1--");
	refused(MP, big, i, "8 KiB");
	free(big);

	/* 1,001 parts. */
	static const char part[] = "--b-1\r\nContent-Disposition: form-data; "
				   "name=\"abcdefghij\"\r\n\r\n\r\n";
	const size_t pn = sizeof(part) - 1;
	n = 1001 * pn + 16;
	big = malloc(n);
	assert_non_null(big);
	for (i = 0; i < 1001 * pn; i += pn)
		memcpy(big + i, part, pn);
	memcpy(big + i, "--b-1--", 7);
	refused(MP, big, i + 7, "1000");
	/* And 1,000 are taken. */
	memcpy(big + 1000 * pn, "--b-1--", 7);
	parse_ok(MP, big, 1000 * pn + 7, &fm);
	assert_int_equal(fm.n, 1000);
	form_cleanup(&fm);
	free(big);
}

/* dropin_mailgun over a urlencoded body; returns its /v1 JSON (new). */
static int
mailgun(const char *body, char **json, struct message_error *e)
{
	struct form fm;
	struct dropin_batch b;
	int rc;

	parse_ok("application/x-www-form-urlencoded", body, strlen(body), &fm);
	memset(e, 0, sizeof(*e));
	rc = dropin_mailgun(&fm, &lim, &b, e);
	form_cleanup(&fm);
	*json = NULL;
	if (rc == 0) {
		assert_int_equal(b.n, 1);
		*json = strdup(b.json[0]);
		dropin_batch_cleanup(&b);
	}
	return rc;
}

static void
test_mailgun(void **state)
{
	struct store_message *m = NULL;
	struct message_error e;
	char *j;

	(void)state;
	assert_int_equal(
	    mailgun("from=F+%3Cf%40example.com%3E&to=a%40example.com%2C+%22B%2C"
		    "+C%22+%3Cb%40example.com%3E&to=d%40example.com"
		    "&subject=S&text=t&h%3AX-A=1&v%3Ak=v&o%3Atag=t1"
		    "&h%3AReply-To=r%40example.com",
		    &j, &e),
	    0);
	assert_int_equal(message_from_json(j, strlen(j), &lim, &m, &e), 0);
	free(j);
	assert_int_equal(m->nrcpt, 3);
	assert_non_null(strstr(m->mime, "To: a@example.com, \"B, C\" "
					"<b@example.com>, d@example.com\r\n"));
	assert_non_null(strstr(m->mime, "X-A: 1\r\n"));
	assert_non_null(strstr(m->mime, "X-Mailgun-Variables: {\"k\":\"v\"}"));
	assert_non_null(strstr(m->mime, "Reply-To: r@example.com\r\n"));
	assert_string_equal(m->tags_json, "[\"t1\"]");
	store_message_free(m);

	assert_int_equal(mailgun("to=a%40b.c&text=x", &j, &e), -1);
	assert_string_equal(e.message, "from: required");
	assert_int_equal(mailgun("from=a%40b.c&from=c%40d.e", &j, &e), -1);
	assert_non_null(strstr(e.message, "from: given twice"));
	assert_int_equal(mailgun("from=a%40b.c&o%3Atestmode=yes", &j, &e), -1);
	assert_non_null(strstr(e.message, "o:testmode: not supported"));
	assert_int_equal(mailgun("from=a%40b.c&subject=a%00b", &j, &e), -1);
	assert_non_null(strstr(e.message, "subject: contains NUL"));
	assert_int_equal(mailgun("from=a%40b.c&to=1%40b.c,2%40b.c,3%40b.c,"
				 "4%40b.c,5%40b.c",
				 &j, &e),
			 -1);
	assert_non_null(strstr(e.message, "to: too many recipients"));
	assert_int_equal(mailgun("from=a%40b.c&attachment=x", &j, &e), -1);
	assert_non_null(strstr(e.message, "attachment: must be a file"));
	assert_int_equal(
	    mailgun("from=a%40b.c&v%3Ak=1&h%3AX-Mailgun-Variables=2", &j, &e),
	    -1);
	assert_non_null(strstr(e.message, "use one or the other"));
}

#define LONG50 "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"
#define LONG500                                                                \
	LONG50 LONG50 LONG50 LONG50 LONG50 LONG50 LONG50 LONG50 LONG50 LONG50

/* "from=a@b.c&NAME=" and n times unit, %-encoded by the caller. */
static int
mailgun_big(const char *name, const char *unit, size_t n,
	    struct message_error *e)
{
	size_t i, u = strlen(unit), k = strlen(name);
	char *body = malloc(32 + k + n * u), *j;
	int rc;

	assert_non_null(body);
	memcpy(body, "from=a%40b.c&to=t%40b.c&", 24);
	memcpy(body + 24, name, k);
	body[24 + k] = '=';
	for (i = 0; i < n; i++)
		memcpy(body + 25 + k + i * u, unit, u);
	body[25 + k + n * u] = '\0';
	rc = mailgun(body, &j, e);
	free(j);
	free(body);
	return rc;
}

/*
 * What cannot fit is refused before it is copied: text over the limit
 * (413), text whose JSON is over twice the limit (control bytes are six
 * bytes of JSON each: 413), a header-bound value over 998 bytes, one
 * address over 998 bytes.  Just under, the translation goes on.
 */
static void
test_mailgun_too_large(void **state)
{
	struct message_error e;

	(void)state;
	assert_int_equal(mailgun_big("text", "a", 8193, &e), -1);
	assert_int_equal(e.http_status, 413);
	assert_string_equal(e.message, "message: larger than 8192 bytes");
	assert_int_equal(mailgun_big("html", "a", 8192, &e), 0);
	/* 2,800 bytes as sent, 16,800 of JSON. */
	assert_int_equal(mailgun_big("text", "%01", 2800, &e), -1);
	assert_int_equal(e.http_status, 413);
	assert_int_equal(mailgun_big("text", "%01", 2730, &e), 0);
	assert_int_equal(mailgun_big("subject", "s", 999, &e), -1);
	assert_string_equal(e.message, "subject: too long");
	assert_int_equal(mailgun_big("h%3AX-A", "%01", 999, &e), -1);
	assert_string_equal(e.message, "h:X-A: too long");
	assert_int_equal(mailgun_big("v%3Ak", "v", 999, &e), -1);
	assert_string_equal(e.message, "v:k: too long");
	assert_int_equal(mailgun_big("cc", "c", 999, &e), -1);
	assert_string_equal(e.message, "cc: too long");
	/* v: fields together past their header: named as sent. */
	assert_int_equal(
	    mailgun_big("v%3Aa=" LONG500 "&v%3Ab", LONG500 "x", 1, &e), -1);
	assert_non_null(strstr(e.message, "v:: the variables together"));
}

/* messages.mime: a raw message over the limit is 413, not a 400. */
static void
test_mailgun_mime_too_large(void **state)
{
	static const char head[] =
	    PART("to", "a@example.com") "--b-1\r\nContent-Disposition: "
					"form-data; name=\"message\"\r\n\r\n";
	size_t hn = sizeof(head) - 1, n = hn + 8193 + 9;
	char *body = malloc(n);
	struct form fm;
	struct dropin_mime dm;
	struct message_error e;

	(void)state;
	assert_non_null(body);
	memcpy(body, head, hn);
	memset(body + hn, 'x', 8193);
	memcpy(body + hn + 8193, "\r\n--b-1--", 9);
	parse_ok(MP, body, n, &fm);
	memset(&e, 0, sizeof(e));
	assert_int_equal(dropin_mailgun_mime(&fm, &lim, &dm, &e), -1);
	assert_int_equal(e.http_status, 413);
	form_cleanup(&fm);
	free(body);
}

/* A part whose name (or file name) is given twice is refused. */
static void
test_parameter_twice(void **state)
{
	static const char twice[] =
	    "--b-1\r\nContent-Disposition: form-data; name=\"from\"; "
	    "name=\"bcc\"\r\n\r\nx\r\n--b-1--";
	static const char files[] =
	    "--b-1\r\nContent-Disposition: form-data; name=\"attachment\"; "
	    "filename=\"a\"; FILENAME=b\r\n\r\nx\r\n--b-1--";
	static const char quoted[] =
	    "--b-1\r\nContent-Disposition: form-data; filename=\"n;name=x\"; "
	    "name=\"attachment\"\r\n\r\nx\r\n--b-1--";
	struct form fm;

	(void)state;
	refused(MP, twice, sizeof(twice) - 1, "valid name");
	refused(MP, files, sizeof(files) - 1, "valid name");
	refused(MP "; boundary=b-1", quoted, sizeof(quoted) - 1, "boundary");
	/* A name inside a quoted value is no parameter. */
	parse_ok(MP, quoted, sizeof(quoted) - 1, &fm);
	assert_int_equal(fm.n, 1);
	assert_string_equal(fm.f[0].name, "attachment");
	assert_string_equal(fm.f[0].filename, "n;name=x");
	form_cleanup(&fm);
}

#define RAW                                                                    \
	"From: \"S, T\"\r\n <s@example.com>\r\nSubject: x\r\n\r\n"             \
	"From: not@this.one\r\n"

/* messages.mime "to" entries read as /v1 reads addresses. */
static void
mime_to(const char *to, int want)
{
	char body[512];
	struct form fm;
	struct dropin_mime dm;
	struct message_error e;
	int n =
	    snprintf(body, sizeof(body),
		     "--b-1\r\nContent-Disposition: form-data; "
		     "name=\"to\"\r\n\r\n%s\r\n" PART("message", RAW) "--b-1--",
		     to);

	assert_true(n > 0 && (size_t)n < sizeof(body));
	parse_ok(MP, body, (size_t)n, &fm);
	memset(&e, 0, sizeof(e));
	if (dropin_mailgun_mime(&fm, &lim, &dm, &e) != want)
		fail_msg("to=%s: not %s (%s)", to, want ? "refused" : "taken",
			 e.message);
	if (want != 0)
		assert_string_equal(e.message, "to: not a valid address");
	dropin_mime_cleanup(&dm);
	form_cleanup(&fm);
}

static void
test_mailgun_mime_rcpt(void **state)
{
	(void)state;
	/* The address is what the entry says, never what a name quotes. */
	mime_to("\"x <y@example.org>\" w@example.net", -1);
	mime_to("<a@example.net> junk", -1);
	mime_to("junk <a@example.net> more", -1);
	mime_to("@x <a@example.net>", -1);
	mime_to("a@example.net (c)", -1);
	mime_to("Bob <b@example.net", -1);
	mime_to("a@example.net, \"q, r\" <c@example.net>, <d@example.net>", 0);
}

static void
test_mailgun_mime(void **state)
{
	static const char body[] =
	    PART("to", "A <a@example.com>, b@example.com")
		PART("message", RAW) "--b-1--";
	struct form fm;
	struct dropin_mime dm;
	struct message_error e;

	(void)state;
	parse_ok(MP, body, sizeof(body) - 1, &fm);
	memset(&e, 0, sizeof(e));
	assert_int_equal(dropin_mailgun_mime(&fm, &lim, &dm, &e), 0);
	assert_string_equal(dm.mail_from, "s@example.com");
	assert_int_equal(dm.nrcpt, 2);
	assert_string_equal(dm.rcpt[0], "a@example.com");
	assert_string_equal(dm.rcpt[1], "b@example.com");
	assert_int_equal(dm.len, strlen(RAW));
	assert_memory_equal(dm.raw, RAW, dm.len);
	dropin_mime_cleanup(&dm);
	form_cleanup(&fm);
}

static void
test_message_names(void **state)
{
	char out[128];

	(void)state;
	dropin_mailgun_message("tags[0]: must be printable ASCII", out,
			       sizeof(out));
	assert_string_equal(out, "o:tag[0]: must be printable ASCII");
	dropin_mailgun_message("headers.X-A: contains CR or LF", out,
			       sizeof(out));
	assert_string_equal(out, "h:X-A: contains CR or LF");
	dropin_mailgun_message("to[1]: not a valid address", out, sizeof(out));
	assert_string_equal(out, "to[1]: not a valid address");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_multipart),
	    cmocka_unit_test(test_urlencoded),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_mailgun),
	    cmocka_unit_test(test_mailgun_too_large),
	    cmocka_unit_test(test_parameter_twice),
	    cmocka_unit_test(test_mailgun_mime_too_large),
	    cmocka_unit_test(test_mailgun_mime_rcpt),
	    cmocka_unit_test(test_mailgun_mime),
	    cmocka_unit_test(test_message_names),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
