/*
 * Unit tests of the SMTP intake's pure parts (intake/smtp_proto.h): the
 * command parser (every verb, paths, MAIL parameters, each refusal with
 * its code and enhanced code), the reply formatter, and the DATA reader:
 * dot-unstuffing, the end found only at CRLF "." CRLF under every split of
 * the stream into two packets and byte by byte, the smuggling variants
 * (LF.LF, CR.CR, LF.CRLF, CRLF.LF, CR.CRLF, CRLF.CR, ...) that must never
 * end a message, bare LF normalised, the cap, and the bytes after the end
 * left for the next command.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "intake/smtp_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses text; returns the parser's result with c and r filled. */
static int
parse(const char *text, struct smtp_cmd *c, struct smtp_reply *r)
{
	static char line[SMTP_LINE_MAX + 1];
	size_t n = strlen(text);

	assert_true(n <= SMTP_LINE_MAX);
	memcpy(line, text, n + 1);
	memset(r, 0, sizeof(*r));
	return smtp_cmd_parse(line, n, c, r);
}

static void
refused(const char *text, int code, const char *ehn)
{
	struct smtp_cmd c;
	struct smtp_reply r;

	if (parse(text, &c, &r) != -1)
		fail_msg("\"%s\" was taken", text);
	if (r.code != code || strcmp(r.ehn, ehn) != 0)
		fail_msg("\"%s\": %d %s %s, wanted %d %s", text, r.code, r.ehn,
			 r.text, code, ehn);
}

static void
test_verbs(void **state)
{
	struct smtp_cmd c;
	struct smtp_reply r;

	(void)state;
	assert_int_equal(parse("ehlo client.example", &c, &r), 0);
	assert_int_equal(c.verb, SMTP_VERB_EHLO);
	assert_string_equal(c.arg, "client.example");
	assert_int_equal(parse("HELO [192.0.2.1]", &c, &r), 0);
	assert_int_equal(c.verb, SMTP_VERB_HELO);
	assert_int_equal(parse("Data", &c, &r), 0);
	assert_int_equal(c.verb, SMTP_VERB_DATA);
	assert_int_equal(parse("QUIT  ", &c, &r), 0); /* trailing spaces */
	assert_int_equal(c.verb, SMTP_VERB_QUIT);
	assert_int_equal(parse("NOOP anything at all", &c, &r), 0);
	assert_int_equal(parse("HELP", &c, &r), 0);
	assert_int_equal(parse("RSET", &c, &r), 0);
	assert_int_equal(parse("STARTTLS", &c, &r), 0);
	assert_int_equal(c.verb, SMTP_VERB_STARTTLS);
	assert_int_equal(parse("VRFY bob", &c, &r), 0);
	assert_int_equal(c.verb, SMTP_VERB_VRFY);
	assert_int_equal(parse("AUTH PLAIN AGJvYgBzZWNyZXQ=", &c, &r), 0);
	assert_int_equal(c.verb, SMTP_VERB_AUTH);
	assert_string_equal(c.mech, "PLAIN");
	assert_string_equal(c.arg, "AGJvYgBzZWNyZXQ=");
	assert_int_equal(parse("AUTH LOGIN", &c, &r), 0);
	assert_string_equal(c.mech, "LOGIN");
	assert_string_equal(c.arg, "");

	refused("", 500, "5.5.2");
	refused("MAILX FROM:<a@b.c>", 500, "5.5.2");
	refused("BDAT 10 LAST", 500, "5.5.2");
	refused("EHLO a\tb", 500, "5.5.2"); /* control character */
	refused("NOOP \x7f", 500, "5.5.2");
	refused("EHLO", 501, "5.5.4");
	refused("HELO two words", 501, "5.5.4");
	refused("EHLO h\xc3\xa9", 501, "5.5.4");
	refused("DATA now", 501, "5.5.4");
	refused("RSET x", 501, "5.5.4");
	refused("QUIT x", 501, "5.5.4");
	refused("STARTTLS x", 501, "5.5.4");
	refused("VRFY", 501, "5.5.4");
	refused("AUTH", 501, "5.5.4");
	refused("EXPN list", 502, "5.5.1");
}

static void
test_nul_in_line(void **state)
{
	char line[32] = "NOOP a\0b";
	struct smtp_cmd c;
	struct smtp_reply r;

	(void)state;
	assert_int_equal(smtp_cmd_parse(line, 8, &c, &r), -1);
	assert_int_equal(r.code, 500);
	memcpy(line, "NOOP a\rb", 8); /* a bare CR inside a command */
	assert_int_equal(smtp_cmd_parse(line, 8, &c, &r), -1);
	assert_int_equal(r.code, 500);
}

static void
test_mail(void **state)
{
	struct smtp_cmd c;
	struct smtp_reply r;
	char big[400];

	(void)state;
	assert_int_equal(parse("MAIL FROM:<ann@example.com>", &c, &r), 0);
	assert_int_equal(c.verb, SMTP_VERB_MAIL);
	assert_string_equal(c.path, "ann@example.com");
	assert_false(c.has_size);
	assert_int_equal(parse("mail from: <ann@example.com>", &c, &r), 0);
	assert_string_equal(c.path, "ann@example.com");
	assert_int_equal(parse("MAIL FROM:<>", &c, &r), 0);
	assert_string_equal(c.path, "");
	assert_int_equal(parse("MAIL FROM:<ann@example.com> SIZE=1234 "
			       "BODY=8BITMIME SMTPUTF8 AUTH=<>",
			       &c, &r),
			 0);
	assert_true(c.has_size);
	assert_int_equal(c.size, 1234);
	assert_true(c.body_8bit);
	assert_true(c.smtputf8);
	assert_int_equal(
	    parse("MAIL FROM:<a@b.example> size=99999999999999999999", &c, &r),
	    0);
	assert_true(c.size == UINT64_MAX);
	assert_int_equal(parse("MAIL FROM:<a@b.example> BODY=7bit", &c, &r), 0);
	assert_false(c.body_8bit);
	/* A source route is accepted and ignored. */
	assert_int_equal(
	    parse("MAIL FROM:<@relay.example,@r2.example:a@b.example>", &c, &r),
	    0);
	assert_string_equal(c.path, "a@b.example");
	assert_int_equal(
	    parse("MAIL FROM:<j\xc3\xb6rg@b.example> SMTPUTF8", &c, &r), 0);
	assert_true(c.path_8bit);

	refused("MAIL", 501, "5.5.4");
	refused("MAIL TO:<a@b.example>", 501, "5.5.4");
	refused("MAIL FROM:a@b.example", 501, "5.5.4");
	refused("MAIL FROM:<a@b.example", 501, "5.5.4");
	refused("MAIL FROM:<a@b.example>x", 501, "5.5.4");
	refused("MAIL FROM:<not an address>", 501, "5.1.7");
	refused("MAIL FROM:<a@b@c.example>", 501, "5.1.7");
	refused("MAIL FROM:<\"q u\"@b.example>", 501, "5.1.7");
	refused("MAIL FROM:<@relay.example>", 501, "5.1.7");
	refused("MAIL FROM:<j\xc3\x28@b.example> SMTPUTF8", 501, "5.1.7");
	refused("MAIL FROM:<a@b.example> SIZE=", 501, "5.5.4");
	refused("MAIL FROM:<a@b.example> SIZE=12x", 501, "5.5.4");
	refused("MAIL FROM:<a@b.example> SIZE=1 SIZE=2", 501, "5.5.4");
	refused("MAIL FROM:<a@b.example> BODY=BINARYMIME", 501, "5.5.4");
	refused("MAIL FROM:<a@b.example> RET=FULL", 555, "5.5.4");
	refused("MAIL FROM:<a@b.example> SMTPUTF8=yes", 555, "5.5.4");
	memset(big, 'a', sizeof(big));
	memcpy(big, "MAIL FROM:<", 11);
	memcpy(big + 300, "@b.example>", 12);
	refused(big, 501, "5.1.7");
}

static void
test_rcpt(void **state)
{
	struct smtp_cmd c;
	struct smtp_reply r;

	(void)state;
	assert_int_equal(parse("RCPT TO:<bob@example.net>", &c, &r), 0);
	assert_int_equal(c.verb, SMTP_VERB_RCPT);
	assert_string_equal(c.path, "bob@example.net");
	assert_false(c.path_8bit);
	assert_int_equal(parse("rcpt to: <bob@example.net>  ", &c, &r), 0);
	refused("RCPT TO:<>", 501, "5.1.3");
	refused("RCPT TO:<bob>", 501, "5.1.3");
	refused("RCPT TO:bob@example.net", 501, "5.5.4");
	refused("RCPT FROM:<bob@example.net>", 501, "5.5.4");
	refused("RCPT TO:<bob@example.net> NOTIFY=NEVER", 555, "5.5.4");
	refused("RCPT TO:<bob@[192.0.2.1]>", 501, "5.1.3");
}

static void
test_reply_format(void **state)
{
	char out[600], text[1000];
	size_t n;

	(void)state;
	n = smtp_reply_format(out, sizeof(out), 250, "2.1.0", "Ok", true);
	assert_string_equal(out, "250 2.1.0 Ok\r\n");
	assert_int_equal(n, 14);
	n = smtp_reply_format(out, sizeof(out), 250, NULL, "PIPELINING", false);
	assert_string_equal(out, "250-PIPELINING\r\n");
	memset(text, 'x', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	n = smtp_reply_format(out, sizeof(out), 554, "5.6.0", text, true);
	assert_true(n <= 512);
	assert_memory_equal(out + n - 2, "\r\n", 2);
}

/* --- the DATA reader --------------------------------------------------- */

struct fed {
	char *msg; /* what was kept, NUL-terminated */
	size_t len;
	size_t consumed; /* bytes of the input taken */
	bool done;
	bool over;
};

/* Feeds in[0..n) in pieces cut at the given points (ascending). */
static struct fed
feed_cuts(const char *in, size_t n, size_t max, const size_t *cuts,
	  size_t ncuts)
{
	struct smtp_data d;
	struct fed f = {0};
	size_t start = 0, end, i, got;

	smtp_data_init(&d, max);
	for (i = 0; i <= ncuts && !f.done; i++) {
		end = i < ncuts ? cuts[i] : n;
		got = smtp_data_feed(&d, in + start, end - start);
		f.consumed += got;
		f.done = d.state == SMTP_DATA_DONE;
		if (!f.done)
			assert_int_equal(got, end - start);
		start = end;
	}
	f.over = d.over;
	f.len = d.len;
	f.msg = malloc(d.len + 1);
	assert_non_null(f.msg);
	if (d.len > 0)
		memcpy(f.msg, d.p, d.len);
	f.msg[d.len] = '\0';
	smtp_data_cleanup(&d);
	return f;
}

static struct fed
feed_once(const char *in, size_t max)
{
	return feed_cuts(in, strlen(in), max, NULL, 0);
}

/* Fed in one packet, byte by byte and split at every point: the same. */
static void
expect_everywhere(const char *in, bool done, const char *msg, size_t consumed)
{
	size_t n = strlen(in), i, j, *cuts;
	struct fed f;

	cuts = calloc(n + 1, sizeof(*cuts));
	assert_non_null(cuts);
	for (i = 0; i < n; i++)
		cuts[i] = i + 1;
	for (j = 0; j < n + 2; j++) {
		if (j == 0)
			f = feed_once(in, 1 << 20);
		else if (j == 1)
			f = feed_cuts(in, n, 1 << 20, cuts, n);
		else
			f = feed_cuts(in, n, 1 << 20, (size_t[]){j - 2}, 1);
		if (f.done != done || (msg != NULL && strcmp(f.msg, msg)) ||
		    (done && f.consumed != consumed))
			fail_msg("input \"%s\" (pass %zu): done=%d msg=\"%s\" "
				 "consumed=%zu",
				 in, j, f.done, f.msg, f.consumed);
		free(f.msg);
	}
	free(cuts);
}

static void
test_data_end(void **state)
{
	(void)state;
	expect_everywhere("Subject: a\r\n\r\nhello\r\n.\r\nQUIT\r\n", true,
			  "Subject: a\r\n\r\nhello\r\n", 24);
	/* The DATA command's CRLF is the first of the end: empty. */
	expect_everywhere(".\r\nNOOP\r\n", true, "", 3);
	/* Dot-unstuffing. */
	expect_everywhere("..x\r\n..\r\n...\r\n.\r\n", true,
			  ".x\r\n.\r\n..\r\n", 17);
	/* Not the end: the message goes on. */
	expect_everywhere("a\r\n.x\r\n", false, "a\r\nx\r\n", 0);
}

/*
 * The smuggling class: a dot next to a bare LF or CR never ends the
 * message, so whatever follows (a second MAIL FROM) is text of the same
 * message, in one packet or split anywhere.
 */
static void
test_data_smuggling(void **state)
{
	static const char *const ends[] = {
	    "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n",     "\r.\r\n", "\r\n.\r",
	    "\n.\r", "\r.\n", "\n..\n",  "\r\n.\r\r\n", "\n\r.\n", "\r\r\n.\n",
	};
	const char *tail = "MAIL FROM:<evil@example.com>\r\n";
	char in[256], *p;
	size_t i, n;
	struct fed f;

	(void)state;
	for (i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
		snprintf(in, sizeof(in), "x%s%sy\r\n.\r\n", ends[i], tail);
		n = strlen(in);
		/* Not done before the real end, whatever the split. */
		f = feed_once(in, 1 << 20);
		assert_true(f.done);
		assert_int_equal(f.consumed, n);
		assert_non_null(strstr(f.msg, tail));
		/* No bare LF is left: every LF follows a CR. */
		for (p = f.msg; (p = strchr(p, '\n')) != NULL; p++)
			assert_true(p > f.msg && p[-1] == '\r');
		free(f.msg);
		in[n - 5] = '\0'; /* without the real end */
		expect_everywhere(in, false, NULL, 0);
	}
}

static void
test_data_bare_lf(void **state)
{
	struct fed f;

	(void)state;
	/* Bare LF becomes CRLF; the line after it keeps its dots. */
	f = feed_once("a\nb\n..c\r\n.\r\n", 1 << 20);
	assert_true(f.done);
	assert_string_equal(f.msg, "a\r\nb\r\n..c\r\n");
	free(f.msg);
	/* A bare CR stays (message_from_mime refuses it). */
	f = feed_once("a\rb\r\n.\r\n", 1 << 20);
	assert_true(f.done);
	assert_string_equal(f.msg, "a\rb\r\n");
	free(f.msg);
}

/* What a dot next to a bare LF leaves: text, normalised. */
static void
test_data_not_done_keeps_text(void **state)
{
	struct fed f;

	(void)state;
	f = feed_once("x\n.\nMAIL FROM:<e@x.example>\r\n", 1 << 20);
	assert_false(f.done);
	assert_string_equal(f.msg, "x\r\n.\r\nMAIL FROM:<e@x.example>\r\n");
	free(f.msg);
}

static void
test_data_cap(void **state)
{
	char in[300];
	struct fed f;
	struct smtp_data d;

	(void)state;
	memset(in, 'a', 200);
	memcpy(in + 200, "\r\n.\r\nNEXT", 10);
	f = feed_once(in, 100);
	assert_true(f.done);
	assert_true(f.over);
	assert_int_equal(f.len, 0); /* the memory went back at once */
	assert_int_equal(f.consumed, 205);
	free(f.msg);
	/* Exactly at the cap is taken. */
	f = feed_once("0123456789\r\n.\r\n", 12);
	assert_true(f.done);
	assert_false(f.over);
	assert_string_equal(f.msg, "0123456789\r\n");
	free(f.msg);
	f = feed_once("0123456789\r\n.\r\n", 11);
	assert_true(f.over);
	free(f.msg);
	/* A prepended header counts. */
	smtp_data_init(&d, 20);
	assert_true(smtp_data_prepend_text(&d, "Received: x\r\n", 13));
	assert_int_equal(smtp_data_feed(&d, "abcdefgh\r\n.\r\n", 13), 13);
	assert_true(d.over);
	smtp_data_cleanup(&d);
	smtp_data_init(&d, 5);
	assert_false(smtp_data_prepend_text(&d, "Received: x\r\n", 13));
	smtp_data_cleanup(&d);
	/* Dropped (the server's budget spent): memory back, end still found. */
	smtp_data_init(&d, 1000);
	assert_int_equal(smtp_data_feed(&d, "abc\r\n", 5), 5);
	assert_true(d.alloc > 0);
	smtp_data_drop(&d);
	assert_true(d.over);
	assert_int_equal(d.alloc, 0);
	assert_int_equal(smtp_data_feed(&d, "def\r\n.\r\nQUIT", 8), 8);
	assert_int_equal(d.state, SMTP_DATA_DONE);
	assert_int_equal(d.len, 0);
	smtp_data_cleanup(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verbs),
	    cmocka_unit_test(test_nul_in_line),
	    cmocka_unit_test(test_mail),
	    cmocka_unit_test(test_rcpt),
	    cmocka_unit_test(test_reply_format),
	    cmocka_unit_test(test_data_end),
	    cmocka_unit_test(test_data_smuggling),
	    cmocka_unit_test(test_data_bare_lf),
	    cmocka_unit_test(test_data_not_done_keeps_text),
	    cmocka_unit_test(test_data_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
