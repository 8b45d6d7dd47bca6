/*
 * Unit tests of smtp_dialogue, the smtp connector's reading and writing
 * of a transaction: the body dot-stuffed and ended as curl did, the same
 * bytes whatever the size of the parts; reply lines split anywhere and an
 * overlong one cut and skipped; a transaction's replies attributed to
 * their commands and classified (a delivery with a refused recipient and
 * the smarthost's id, every recipient refused, the account at AUTH, no
 * verdict after the whole body ambiguous, part of it transient); the
 * credentials after AUTH never kept; EHLO's SIZE, SMTPUTF8 and
 * PIPELINING; a pipelined group's replies matched to their commands in
 * order (a refused recipient among taken ones, every one refused with
 * DATA refused or, from a broken server, DATA's 354: the dot alone);
 * a non-ASCII address without SMTPUTF8 permanent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/connector.h"
#include "agent/smtp_dialogue.h"
#include "link/link.h"

#include "../fuzz/smtp_stuff_ref.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The whole stuffed message, produced in parts of at most part bytes. */
static size_t
stuff_all(const char *msg, size_t part, char *out, size_t outsz)
{
	struct smtp_stuff st;
	size_t n = 0, k;
	int rounds = 0;

	smtp_dialogue_stuff_init(&st);
	for (;;) {
		assert_true(n + part <= outsz);
		k = smtp_dialogue_stuff(&st, (const uint8_t *)msg, strlen(msg),
					out + n, part);
		if (k == 0)
			break;
		n += k;
		assert_true(++rounds < 10000);
	}
	out[n] = '\0';
	return n;
}

/* Random messages of dots, CRs, LFs and letters: the same bytes as the
 * reference, whatever the size of the parts. */
static void
test_stuffing_by_lines(void **state)
{
	static const char alphabet[] = ".\r\na";
	char msg[48], want[160], got[200];
	size_t len, n, i, part;
	unsigned seed = 12345;
	int round;

	(void)state;
	for (round = 0; round < 20000; round++) {
		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % sizeof(msg);
		for (i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			msg[i] = alphabet[(seed >> 16) % 4];
		}
		msg[len] = '\0';
		/* NUL-free, so stuff_all's strlen() sees it whole. */
		n = smtp_stuff_ref((const unsigned char *)msg, len,
				   (unsigned char *)want);
		part = 5 + (size_t)round % 16;
		assert_int_equal(stuff_all(msg, part, got, sizeof(got)), n);
		assert_memory_equal(got, want, n);
	}
}

static void
test_stuffing(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"a\r\n.b\r\n", "a\r\n..b\r\n.\r\n"},
	    {".x\r\n", "..x\r\n.\r\n"},
	    {"abc", "abc\r\n.\r\n"},
	    {"", ".\r\n"},
	    {"a\n.b", "a\n.b\r\n.\r\n"},
	    {"a\r\n.\r\n", "a\r\n..\r\n.\r\n"},
	    {"a\r\n..\r\nb\r\n", "a\r\n...\r\nb\r\n.\r\n"},
	    {"x\r", "x\r\r\n.\r\n"},
	    {"\r\n.\r\n.", "\r\n..\r\n..\r\n.\r\n"},
	    {"a\r\r\n.b", "a\r\r\n..b\r\n.\r\n"},
	    {"a\n\r\n.", "a\n\r\n..\r\n.\r\n"},
	};
	char out[256];
	size_t i, part;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (part = 5; part <= 64; part++) {
			stuff_all(cases[i].in, part, out, sizeof(out));
			assert_string_equal(out, cases[i].out);
		}
}

static void
test_lines(void **state)
{
	struct smtp_lines l;
	const char *line;
	char big[3000];
	size_t n, len;

	(void)state;
	memset(&l, 0, sizeof(l));
	n = smtp_dialogue_line(&l, "250-a\r\n250 b", 12, &line, &len);
	assert_int_equal(n, 7);
	assert_non_null(line);
	assert_int_equal(len, 7);
	assert_memory_equal(line, "250-a\r\n", 7);
	n = smtp_dialogue_line(&l, "250 b", 5, &line, &len);
	assert_int_equal(n, 5);
	assert_null(line);
	n = smtp_dialogue_line(&l, "\r\n", 2, &line, &len);
	assert_non_null(line);
	assert_memory_equal(line, "250 b\r\n", 7);

	/* An overlong line: its start kept, the rest skipped in step. */
	memset(big, 'x', sizeof(big));
	memcpy(big, "554 ", 4);
	big[sizeof(big) - 2] = '\r';
	big[sizeof(big) - 1] = '\n';
	n = smtp_dialogue_line(&l, big, 1000, &line, &len);
	assert_null(line);
	n = smtp_dialogue_line(&l, big + 1000, sizeof(big) - 1000, &line, &len);
	assert_int_equal(n, sizeof(big) - 1000);
	assert_non_null(line);
	assert_int_equal(len, SMTP_DIALOGUE_LINE_MAX);
	assert_memory_equal(line, "554 ", 4);
	n = smtp_dialogue_line(&l, "221 ok\r\n", 8, &line, &len);
	assert_int_equal(len, 8);
	assert_memory_equal(line, "221 ok\r\n", 8);
}

static const char *const rcpts[] = {"ann@example.net", "bob@example.net"};

struct run {
	struct connector_job job;
	struct smtp_dialogue d;
	int codes[2];
	struct connector_result res;
	char detail[LINK_DETAIL_MAX + 1], id[128];
};

static void
run_init(struct run *r)
{
	memset(r, 0, sizeof(*r));
	r->job.message_id = "m1";
	r->job.mail_from = "me@example.com";
	r->job.rcpt = rcpts;
	r->job.nrcpt = 2;
	r->d.rcpt_code = r->codes;
}

static void
out(struct run *r, const char *line)
{
	smtp_dialogue_out(&r->d, line, strlen(line));
}

static void
in(struct run *r, const char *lines)
{
	smtp_dialogue_in(&r->d, lines, strlen(lines));
}

static void
classify(struct run *r, CURLcode rc, bool body_eof)
{
	struct smtp_attempt a = {.job = &r->job,
				 .d = &r->d,
				 .rc = rc,
				 .errbuf = "",
				 .body_eof = body_eof};

	smtp_dialogue_classify(&a, &r->res, r->detail, sizeof(r->detail), r->id,
			       sizeof(r->id));
}

static void
transaction_to_data(struct run *r, const char *rcpt2)
{
	out(r, "MAIL FROM:<me@example.com>\r\n");
	in(r, "250-fine\r\n250 2.1.0 Ok\r\n");
	out(r, "RCPT TO:<ann@example.net>\r\n");
	in(r, "250 2.1.5 Ok\r\n");
	out(r, "RCPT TO:<bob@example.net>\r\n");
	in(r, rcpt2);
}

static void
test_delivered_with_a_refusal(void **state)
{
	struct run r;

	(void)state;
	run_init(&r);
	transaction_to_data(&r, "550 5.1.1 no such user\r\n");
	assert_true(smtp_dialogue_rcpt_taken(&r.d, 2));
	out(&r, "DATA\r\n");
	in(&r, "354 go ahead\r\n");
	assert_true(r.d.data_go);
	in(&r, "250 2.0.0 Ok: queued as 4XyZ1\r\n");
	in(&r, "221 bye\r\n"); /* never the verdict */
	classify(&r, CURLE_OK, true);
	assert_int_equal(r.res.outcome, OUTCOME_DELIVERED);
	assert_string_equal(r.res.provider_message_id, "4XyZ1");
	assert_non_null(r.res.detail);
	assert_non_null(strstr(r.res.detail, "refused 1 of 2"));
	assert_non_null(strstr(r.res.detail, "bob@example.net 550"));
}

static void
test_every_recipient_refused(void **state)
{
	struct run r;

	(void)state;
	run_init(&r);
	out(&r, "MAIL FROM:<me@example.com>\r\n");
	in(&r, "250 Ok\r\n");
	out(&r, "RCPT TO:<ann@example.net>\r\n");
	in(&r, "550 no\r\n");
	out(&r, "RCPT TO:<bob@example.net>\r\n");
	in(&r, "551 no\r\n");
	assert_false(smtp_dialogue_rcpt_taken(&r.d, 2));
	classify(&r, CURLE_WEIRD_SERVER_REPLY, false);
	assert_int_equal(r.res.outcome, OUTCOME_PERMANENT);
	assert_non_null(strstr(r.res.detail, "every recipient refused"));

	/* A transient refusal outranks a permanent one. */
	run_init(&r);
	transaction_to_data(&r, "450 4.2.1 try later\r\n");
	r.codes[0] = 550;
	classify(&r, CURLE_WEIRD_SERVER_REPLY, false);
	assert_int_equal(r.res.outcome, OUTCOME_TRANSIENT);
}

static void
test_auth_and_credentials(void **state)
{
	struct run r;

	(void)state;
	run_init(&r);
	in(&r, "220 hi\r\n");
	out(&r, "EHLO relay.test\r\n");
	in(&r, "250-hi\r\n250 AUTH PLAIN\r\n");
	out(&r, "AUTH PLAIN\r\n");
	in(&r, "334 \r\n");
	out(&r, "c2VjcmV0LXBhc3N3b3Jk\r\n");
	assert_string_equal(r.d.cmd, "AUTH");
	in(&r, "535 5.7.8 Authentication credentials invalid\r\n");
	classify(&r, CURLE_LOGIN_DENIED, false);
	assert_int_equal(r.res.outcome, OUTCOME_ACCOUNT);
	assert_null(strstr(r.res.detail, "c2VjcmV0"));
	assert_non_null(strstr(r.res.detail, "AUTH refused"));
}

/*
 * A password with bytes log_sanitize() cannot print (UTF-8) echoed by a
 * smarthost: its reply lines are made printable as they are read, so the
 * scrub must find the password in that form too ("?" for each such
 * byte), whole and cut short at the text's end.
 */
static void
test_scrub_non_ascii_password(void **state)
{
	static const char pw[] = "p\xc3\xa4ssw\xc3\xb6rd-9";
	struct run r;
	char line[SMTP_DIALOGUE_REPLY_MAX + 64];

	(void)state;
	run_init(&r);
	out(&r, "MAIL FROM:<me@example.com>\r\n");
	in(&r, "550 5.7.1 you sent p\xc3\xa4ssw\xc3\xb6rd-9 and "
	       "p\xc3\xa4ssw\xc3\xb6rd-9\r\n");
	assert_non_null(strstr(r.d.last_text, "p??ssw??rd-9"));
	smtp_dialogue_scrub(r.d.last_text, "relay", pw);
	assert_string_equal(r.d.last_text,
			    "550 5.7.1 you sent ************ and ************");
	/* Cut short where the reply was: the start that is left. */
	run_init(&r);
	out(&r, "MAIL FROM:<me@example.com>\r\n");
	memset(line, 'x', sizeof(line));
	memcpy(line, "550 ", 4);
	memcpy(line + SMTP_DIALOGUE_REPLY_MAX + 4 - 10, pw, sizeof(pw) - 1);
	memcpy(line + sizeof(line) - 3, "\r\n", 3);
	in(&r, line);
	assert_null(strstr(r.d.last_text, "p??ss"));
	smtp_dialogue_scrub(r.d.last_text, "relay", pw);
	assert_null(strstr(r.d.last_text, "??ss"));
	classify(&r, CURLE_WEIRD_SERVER_REPLY, false);
	assert_null(strstr(r.res.detail, "??ss"));
}

static void
test_no_verdict(void **state)
{
	struct run r;

	(void)state;
	run_init(&r);
	transaction_to_data(&r, "250 Ok\r\n");
	out(&r, "DATA\r\n");
	in(&r, "354 go\r\n");
	classify(&r, CURLE_RECV_ERROR, true);
	assert_int_equal(r.res.outcome, OUTCOME_AMBIGUOUS);
	classify(&r, CURLE_SEND_ERROR, false);
	assert_int_equal(r.res.outcome, OUTCOME_TRANSIENT);
	/* A reply after the data that is no verdict (354 again): as none. */
	in(&r, "354 more\r\n");
	classify(&r, CURLE_WEIRD_SERVER_REPLY, true);
	assert_int_equal(r.res.outcome, OUTCOME_AMBIGUOUS);
	assert_non_null(strstr(r.res.detail, "no verdict after the data"));
	classify(&r, CURLE_WEIRD_SERVER_REPLY, false);
	assert_int_equal(r.res.outcome, OUTCOME_TRANSIENT);
	r.d.final_code = 0;
	/* 552 after the data: the smarthost's size limit (too large). */
	in(&r, "552 5.3.4 too big\r\n");
	classify(&r, CURLE_WEIRD_SERVER_REPLY, true);
	assert_int_equal(r.res.outcome, OUTCOME_TOO_LARGE);
}

/*
 * The smarthost's size limit is not the message's fault (another provider
 * may take it): 552 at MAIL (RFC 1870's answer to SIZE=) and after the
 * data, or a message over the SIZE its EHLO announced (nothing sent), is
 * too_large.  552 at RCPT is a full mailbox: the recipient's, permanent.
 * Until 2026-11-30 each was permanent and failed the message for good.
 */
static void
test_too_large(void **state)
{
	struct run r;
	struct smtp_attempt a;

	(void)state;
	run_init(&r);
	out(&r, "MAIL FROM:<me@example.com> SIZE=40000\r\n");
	in(&r, "552 5.3.4 Message size exceeds fixed limit\r\n");
	classify(&r, CURLE_WEIRD_SERVER_REPLY, false);
	assert_int_equal(r.res.outcome, OUTCOME_TOO_LARGE);
	assert_non_null(strstr(r.res.detail, "MAIL"));

	run_init(&r);
	transaction_to_data(&r, "552 5.2.2 mailbox full\r\n");
	r.codes[0] = 552;
	classify(&r, CURLE_WEIRD_SERVER_REPLY, false);
	assert_int_equal(r.res.outcome, OUTCOME_PERMANENT);

	run_init(&r);
	r.job.mime_len = 40000;
	a = (struct smtp_attempt){
	    .job = &r.job, .d = &r.d, .rc = CURLE_OK, .size_max = 20000};
	smtp_dialogue_classify(&a, &r.res, r.detail, sizeof(r.detail), r.id,
			       sizeof(r.id));
	assert_int_equal(r.res.outcome, OUTCOME_TOO_LARGE);
	assert_non_null(strstr(r.res.detail, "at most 20000 bytes"));
	assert_non_null(strstr(r.res.detail, "40000"));
}

static void
test_ehlo_size(void **state)
{
	(void)state;
	assert_int_equal(smtp_dialogue_ehlo_size("250-SIZE 20000\r\n", 16),
			 20000);
	assert_int_equal(smtp_dialogue_ehlo_size("250 size 1\r\n", 12), 1);
	/* No number, RFC 1870's 0 (no limit), another line: none. */
	assert_int_equal(smtp_dialogue_ehlo_size("250-SIZE\r\n", 10), 0);
	assert_int_equal(smtp_dialogue_ehlo_size("250-SIZE 0\r\n", 12), 0);
	assert_int_equal(smtp_dialogue_ehlo_size("250-SIZEX 5\r\n", 13), 0);
	assert_int_equal(smtp_dialogue_ehlo_size("550-SIZE 5\r\n", 12), 0);
	/* Absurdly long: as good as none, never a wrapped small number. */
	assert_int_equal(
	    smtp_dialogue_ehlo_size("250-SIZE 99999999999999999999999\r\n", 34),
	    0);
}

/*
 * A smarthost that says 250 while the message is still going out (RFC
 * 5321 4.1.1.4 allows no reply before the end of data) claims a message it
 * has only in part: what it will deliver is unknown, so another provider
 * may duplicate it.  Until 2026-11-30 this was transient ("Weird server
 * reply"), and the possible duplicate was on no record.
 */
static void
test_accepted_before_the_dot(void **state)
{
	struct run r;

	(void)state;
	run_init(&r);
	transaction_to_data(&r, "250 Ok\r\n");
	out(&r, "DATA\r\n");
	in(&r, "354 go\r\n");
	in(&r, "250 2.0.0 Ok: queued as EARLY1\r\n");
	classify(&r, CURLE_WEIRD_SERVER_REPLY, false);
	assert_int_equal(r.res.outcome, OUTCOME_AMBIGUOUS);
	assert_non_null(strstr(r.res.detail, "before the end of the data"));
	assert_non_null(strstr(r.res.detail, "queued as EARLY1"));
}

static void
test_ehlo_and_utf8(void **state)
{
	static const char *const wide[] = {"z\xc3\xbc@example.net"};
	struct connector_job job = {
	    .mail_from = "a@example.com", .rcpt = rcpts, .nrcpt = 2};

	(void)state;
	assert_int_equal(smtp_dialogue_ehlo("250-SIZEX 1\r\n", 13), 0);
	assert_int_equal(smtp_dialogue_ehlo("550-SIZE 1\r\n", 12), 0);
	assert_int_equal(smtp_dialogue_ehlo("250-8BITMIME\r\n", 14),
			 SMTP_EXT_8BITMIME);
	assert_int_equal(smtp_dialogue_ehlo("250-8BITMIMEX\r\n", 15), 0);
	assert_int_equal(smtp_dialogue_ehlo("250-PIPELININGX\r\n", 17), 0);
	assert_int_equal(smtp_dialogue_ehlo("250-SIZE 35882577\r\n", 19),
			 SMTP_EXT_SIZE);
	assert_int_equal(smtp_dialogue_ehlo("250 smtputf8\r\n", 14),
			 SMTP_EXT_SMTPUTF8);
	assert_int_equal(smtp_dialogue_ehlo("250-PIPELINING\r\n", 16),
			 SMTP_EXT_PIPELINING);
	assert_int_equal(smtp_dialogue_ehlo("250 pipelining", 14),
			 SMTP_EXT_PIPELINING);
	assert_false(smtp_dialogue_utf8(&job));
	job.rcpt = wide;
	job.nrcpt = 1;
	assert_true(smtp_dialogue_utf8(&job));
}

static void
test_commands(void **state)
{
	static const char *const wide[] = {"z\xc3\xbc@example.net"};
	struct connector_job job = {.mail_from = "me@example.com",
				    .rcpt = rcpts,
				    .nrcpt = 2,
				    .mime_len = 1234};
	unsigned all = SMTP_EXT_SIZE | SMTP_EXT_SMTPUTF8 | SMTP_EXT_8BITMIME |
		       SMTP_EXT_PIPELINING;
	char buf[96];
	size_t n;

	(void)state;
	n = smtp_dialogue_cmd(&job, 0, 1234, 0, buf, sizeof(buf));
	assert_int_equal(n, strlen("MAIL FROM:<me@example.com>\r\n"));
	assert_memory_equal(buf, "MAIL FROM:<me@example.com>\r\n", n);
	/* SMTPUTF8 only for an address that needs it, BODY=8BITMIME only for
	 * an 8-bit message, each only where offered. */
	assert_int_equal(smtp_dialogue_mail(&job, all, false), SMTP_EXT_SIZE);
	assert_int_equal(smtp_dialogue_mail(&job, all, true),
			 SMTP_EXT_SIZE | SMTP_EXT_8BITMIME);
	assert_int_equal(smtp_dialogue_mail(&job, SMTP_EXT_SMTPUTF8, true), 0);
	n = smtp_dialogue_cmd(&job, smtp_dialogue_mail(&job, all, false), 1234,
			      0, buf, sizeof(buf));
	assert_memory_equal(buf, "MAIL FROM:<me@example.com> SIZE=1234\r\n", n);
	/* SIZE= says what goes after DATA (a 7-bit form may be larger). */
	n = smtp_dialogue_cmd(&job, SMTP_EXT_SIZE, 1500, 0, buf, sizeof(buf));
	assert_memory_equal(buf, "MAIL FROM:<me@example.com> SIZE=1500\r\n", n);
	n = smtp_dialogue_cmd(&job, 0, 0, 2, buf, sizeof(buf));
	assert_memory_equal(buf, "RCPT TO:<bob@example.net>\r\n", n);
	n = smtp_dialogue_cmd(&job, 0, 0, 3, buf, sizeof(buf));
	assert_memory_equal(buf, "DATA\r\n", n);
	job.rcpt = wide;
	job.nrcpt = 1;
	assert_int_equal(smtp_dialogue_mail(&job, all, true),
			 SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8);
	assert_int_equal(smtp_dialogue_mail(&job, SMTP_EXT_SIZE, true),
			 SMTP_EXT_SIZE);
	n = smtp_dialogue_cmd(&job, SMTP_EXT_SMTPUTF8, 0, 0, buf, sizeof(buf));
	assert_memory_equal(buf, "MAIL FROM:<me@example.com> SMTPUTF8\r\n", n);
	n = smtp_dialogue_cmd(&job, smtp_dialogue_mail(&job, all, true), 1234,
			      0, buf, sizeof(buf));
	assert_memory_equal(buf,
			    "MAIL FROM:<me@example.com> SIZE=1234 "
			    "BODY=8BITMIME SMTPUTF8\r\n",
			    n);
	/* One that does not fit is not cut: 0, for the next buffer. */
	assert_int_equal(smtp_dialogue_cmd(&job, 0, 0, 1, buf, 10), 0);
	assert_int_equal(smtp_dialogue_cmd(&job, 0, 0, 2, buf, 6), 0);
	assert_int_equal(smtp_dialogue_cmd(&job, 0, 0, 2, buf, 7), 6);
}

/* 8-bit bytes anywhere, at every offset of the word-wise scan. */
static void
test_8bit(void **state)
{
	uint8_t msg[40];
	struct connector_job job = {.mime = msg};
	size_t len, at;

	(void)state;
	for (len = 0; len <= sizeof(msg); len++) {
		memset(msg, 'a', sizeof(msg));
		job.mime_len = len;
		assert_false(smtp_dialogue_8bit(&job));
		for (at = 0; at < len; at++) {
			memset(msg, 0x7f, sizeof(msg));
			msg[at] = 0x80;
			assert_true(smtp_dialogue_8bit(&job));
		}
		/* A byte past the end is not the message's. */
		memset(msg, 'a', sizeof(msg));
		if (len < sizeof(msg)) {
			msg[len] = 0xff;
			assert_false(smtp_dialogue_8bit(&job));
		}
	}
}

/* MAIL, both RCPTs and DATA out before any reply, as pipelining sends. */
static void
group_out(struct run *r)
{
	out(r, "MAIL FROM:<me@example.com>\r\n");
	out(r, "RCPT TO:<ann@example.net>\r\n");
	out(r, "RCPT TO:<bob@example.net>\r\n");
	out(r, "DATA\r\n");
}

static void
test_pipelined_replies_in_order(void **state)
{
	struct run r;

	(void)state;
	run_init(&r);
	group_out(&r);
	/* All four replies in one read: each finds its command. */
	in(&r, "250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n"
	       "250-fine\r\n250 2.1.5 Ok\r\n354 go\r\n");
	assert_int_equal(r.d.mail_code, 250);
	assert_int_equal(r.codes[0], 550);
	assert_int_equal(r.codes[1], 250);
	assert_true(r.d.data_go);
	assert_false(r.d.data_empty);
	assert_string_equal(r.d.last_cmd, "DATA");
	in(&r, "250 2.0.0 Ok: queued as P1\r\n");
	classify(&r, CURLE_OK, true);
	assert_int_equal(r.res.outcome, OUTCOME_DELIVERED);
	assert_string_equal(r.res.provider_message_id, "P1");
	assert_non_null(strstr(r.res.detail, "ann@example.net 550"));

	/* A refused MAIL is MAIL's, whatever follows it. */
	run_init(&r);
	group_out(&r);
	in(&r, "553 5.7.1 sender refused\r\n");
	assert_string_equal(r.d.last_cmd, "MAIL");
	classify(&r, CURLE_WEIRD_SERVER_REPLY, false);
	assert_int_equal(r.res.outcome, OUTCOME_PERMANENT);
	assert_non_null(strstr(r.res.detail, "smtp MAIL refused: 553"));
}

static void
test_pipelined_every_recipient_refused(void **state)
{
	struct run r;

	(void)state;
	/* DATA refused too, as a server should: no body, and the outcome
	 * is the recipients' as in lock-step. */
	run_init(&r);
	group_out(&r);
	in(&r, "250 Ok\r\n550 no\r\n451 later\r\n554 no valid recipients\r\n");
	assert_false(r.d.data_go);
	assert_false(r.d.data_empty);
	assert_string_equal(r.d.last_cmd, "DATA");
	classify(&r, CURLE_WEIRD_SERVER_REPLY, false);
	assert_int_equal(r.res.outcome, OUTCOME_TRANSIENT);
	assert_non_null(strstr(r.res.detail, "every recipient refused"));

	/* A broken server's 354: the data ends with a dot alone (RFC 2920
	 * 3.1); the reply to it is no verdict on the message. */
	run_init(&r);
	group_out(&r);
	in(&r, "250 Ok\r\n550 no\r\n553 no\r\n354 go\r\n");
	assert_false(r.d.data_go);
	assert_true(r.d.data_empty);
	in(&r, "250 2.0.0 Ok: queued as EMPTY\r\n");
	assert_int_equal(r.d.final_code, 0);
	classify(&r, CURLE_WEIRD_SERVER_REPLY, false);
	assert_int_equal(r.res.outcome, OUTCOME_PERMANENT);
	assert_non_null(strstr(r.res.detail, "every recipient refused"));
	assert_null(r.res.provider_message_id);
}

/*
 * Every recipient refused because the smarthost will not relay for us is
 * the smarthost's fault: transient (another provider, the breaker), not
 * the message failed for good.  A recipient refused for itself stays
 * permanent.
 */
static void
test_relay_denied(void **state)
{
	struct run r;

	(void)state;
	run_init(&r);
	group_out(&r);
	in(&r, "250 Ok\r\n554 5.7.1 <bob@example.net>: Relay access "
	       "denied\r\n550 5.7.1 Relaying denied\r\n554 no valid "
	       "recipients\r\n");
	assert_true(r.d.relay_denied);
	classify(&r, CURLE_WEIRD_SERVER_REPLY, false);
	assert_int_equal(r.res.outcome, OUTCOME_TRANSIENT);
	assert_non_null(strstr(r.res.detail, "refuses to relay"));

	run_init(&r);
	group_out(&r);
	in(&r, "250 Ok\r\n550 5.1.1 no such user\r\n553 5.1.3 bad "
	       "address\r\n554 no valid recipients\r\n");
	assert_false(r.d.relay_denied);
	classify(&r, CURLE_WEIRD_SERVER_REPLY, false);
	assert_int_equal(r.res.outcome, OUTCOME_PERMANENT);
}

static void
test_utf8_unoffered(void **state)
{
	struct run r;
	struct smtp_attempt a;

	(void)state;
	run_init(&r);
	a = (struct smtp_attempt){.job = &r.job,
				  .d = &r.d,
				  .rc = CURLE_OK,
				  .errbuf = "",
				  .utf8_unoffered = true};
	smtp_dialogue_classify(&a, &r.res, r.detail, sizeof(r.detail), r.id,
			       sizeof(r.id));
	assert_int_equal(r.res.outcome, OUTCOME_NEEDS_SMTPUTF8);
	assert_non_null(strstr(r.res.detail, "SMTPUTF8"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stuffing),
	    cmocka_unit_test(test_lines),
	    cmocka_unit_test(test_delivered_with_a_refusal),
	    cmocka_unit_test(test_every_recipient_refused),
	    cmocka_unit_test(test_auth_and_credentials),
	    cmocka_unit_test(test_scrub_non_ascii_password),
	    cmocka_unit_test(test_no_verdict),
	    cmocka_unit_test(test_accepted_before_the_dot),
	    cmocka_unit_test(test_ehlo_and_utf8),
	    cmocka_unit_test(test_stuffing_by_lines),
	    cmocka_unit_test(test_commands),
	    cmocka_unit_test(test_pipelined_replies_in_order),
	    cmocka_unit_test(test_pipelined_every_recipient_refused),
	    cmocka_unit_test(test_relay_denied),
	    cmocka_unit_test(test_utf8_unoffered),
	    cmocka_unit_test(test_8bit),
	    cmocka_unit_test(test_too_large),
	    cmocka_unit_test(test_ehlo_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
