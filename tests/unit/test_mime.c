/*
 * Unit tests of message_from_mime(): a raw message is kept byte for byte
 * (Date and Message-Id put in front only when missing, LF-only line ends
 * made CRLF), its display fields read from the headers, its envelope
 * checked and deduplicated; and one refusal per rule, with its status,
 * code and the field it names.  Leaks on the refusal paths are caught by
 * the ASan build.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/util.h"
#include "intake/message.h"
#include "store/store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct message_limits lim = {
    .max_message_bytes = 4096,
    .max_recipients = 3,
};

static const char *const one_rcpt[] = {"bob@example.net"};
static const struct message_envelope env = {
    .mail_from = "ann@example.com",
    .rcpt = one_rcpt,
    .nrcpt = 1,
};

#define HEAD                                                                   \
	"From: Ann <ann@example.com>\r\n"                                      \
	"To: bob@example.net\r\n"                                              \
	"Subject: Hi\r\n"
#define DATED                                                                  \
	"Date: Tue, 01 Dec 2026 10:00:00 +0100\r\n"                            \
	"Message-ID: <order-5@shop.example.com>\r\n"

static int
setup(void **state)
{
	message_init();
	return 0;
}

static int
teardown(void **state)
{
	message_shutdown();
	return 0;
}

static struct store_message *
build_ok(const char *raw, size_t len, const struct message_envelope *e)
{
	struct store_message *m = NULL;
	struct message_error err;

	memset(&err, 0, sizeof(err));
	if (message_from_mime(raw, len, e, &lim, &m, &err) != 0)
		fail_msg("refused: %d %s %s", err.http_status, err.code,
			 err.message);
	assert_non_null(m);
	assert_int_equal(strlen(m->mime), m->mime_len);
	return m;
}

static void
expect_err_env(const char *raw, size_t len, const struct message_envelope *e,
	       int status, const char *code, const char *field)
{
	struct store_message *m = (struct store_message *)(uintptr_t)1;
	struct message_error err;

	memset(&err, 0, sizeof(err));
	assert_int_equal(message_from_mime(raw, len, e, &lim, &m, &err), -1);
	assert_null(m);
	if (strcmp(err.code, code) != 0 || err.http_status != status ||
	    strncmp(err.message, field, strlen(field)) != 0)
		fail_msg("got %d %s \"%s\", want %d %s \"%s...\"",
			 err.http_status, err.code, err.message, status, code,
			 field);
}

static void
expect_err(const char *raw, int status, const char *code, const char *field)
{
	expect_err_env(raw, strlen(raw), &env, status, code, field);
}

/* The client's Date and Message-ID: the bytes stored are the bytes sent. */
static void
test_kept_exactly(void **state)
{
	static const char raw[] = DATED HEAD "X-Odd:  two  spaces\r\n"
					     "\r\n"
					     "Body line\r\n"
					     "=?not-a-header?=\r\n";
	struct store_message *m = build_ok(raw, strlen(raw), &env);

	assert_int_equal(m->mime_len, strlen(raw));
	assert_memory_equal(m->mime, raw, m->mime_len);
	assert_true(id_valid(m->id));
	assert_int_equal(m->status, MSG_QUEUED);
	assert_string_equal(m->mail_from, "ann@example.com");
	assert_int_equal(m->nrcpt, 1);
	assert_string_equal(m->rcpt[0], "bob@example.net");
	assert_string_equal(m->header_from, "Ann <ann@example.com>");
	assert_string_equal(m->subject, "Hi");
	assert_string_equal(m->to_json, "[\"bob@example.net\"]");
	assert_null(m->tags_json);
	assert_true(m->created_ms > 0);
	store_message_free(m);
}

/* Date and Message-Id added in front when missing; the rest as sent. */
static void
test_added_when_missing(void **state)
{
	static const char raw[] = HEAD "\r\nhello\r\n";
	struct store_message *m = build_ok(raw, strlen(raw), &env);
	char want[64];
	const char *tail;

	assert_true(m->mime_len > strlen(raw));
	tail = m->mime + m->mime_len - strlen(raw);
	assert_memory_equal(tail, raw, strlen(raw));
	assert_memory_equal(m->mime, "Date: ", 6);
	snprintf(want, sizeof(want), "\r\nMessage-Id: <%s@example.com>\r\n",
		 m->id);
	assert_non_null(strstr(m->mime, want));
	store_message_free(m);

	/* Only the Message-Id is missing: only it is added. */
	m = build_ok(
	    "Date: Tue, 01 Dec 2026 10:00:00 +0100\r\n" HEAD "\r\nx",
	    strlen("Date: Tue, 01 Dec 2026 10:00:00 +0100\r\n" HEAD "\r\nx"),
	    &env);
	assert_memory_equal(m->mime, "Message-Id: <", 13);
	assert_null(strstr(m->mime + 1, "\nDate: Sun"));
	store_message_free(m);
}

/* A message with LF line ends only is stored with CRLF. */
static void
test_lf_only(void **state)
{
	static const char raw[] = "Date: Tue, 01 Dec 2026 10:00:00 +0100\n"
				  "Message-ID: <a@b.example>\n"
				  "From: ann@example.com\n"
				  "\n"
				  "one\n"
				  "two";
	static const char want[] = "Date: Tue, 01 Dec 2026 10:00:00 +0100\r\n"
				   "Message-ID: <a@b.example>\r\n"
				   "From: ann@example.com\r\n"
				   "\r\n"
				   "one\r\n"
				   "two";
	struct store_message *m = build_ok(raw, strlen(raw), &env);

	assert_string_equal(m->mime, want);
	store_message_free(m);
}

/*
 * Bcc and Resent-Bcc fields, folded or not, in any case, are not stored;
 * the envelope's recipients are; everything else stays byte for byte.
 */
static void
test_bcc_dropped(void **state)
{
	static const char raw[] =
	    DATED "bcc: eve@example.org,\r\n"
		  "\tmallory@example.org\r\n" HEAD "X-Bcc-Note: kept\r\n"
		  "Resent-Bcc: trent@example.org\r\n"
		  "BCC:\r\n"
		  "\r\n"
		  "Bcc: in the body stays\r\n";
	static const char want[] = DATED HEAD "X-Bcc-Note: kept\r\n"
					      "\r\n"
					      "Bcc: in the body stays\r\n";
	static const char lf[] = "Date: Tue, 01 Dec 2026 10:00:00 +0100\n"
				 "Message-ID: <a@b.example>\n"
				 "Bcc: eve@example.org\n"
				 " \n"
				 "From: ann@example.com\n"
				 "Bcc: last@example.org";
	static const char lf_want[] =
	    "Date: Tue, 01 Dec 2026 10:00:00 +0100\r\n"
	    "Message-ID: <a@b.example>\r\n"
	    "From: ann@example.com\r\n";
	const char *rcpt[] = {"bob@example.net", "eve@example.org"};
	struct message_envelope e = {"ann@example.com", rcpt, 2};
	struct store_message *m = build_ok(raw, strlen(raw), &e);

	assert_string_equal(m->mime, want);
	assert_int_equal(m->nrcpt, 2);
	assert_string_equal(m->rcpt[1], "eve@example.org");
	store_message_free(m);

	m = build_ok(lf, strlen(lf), &env);
	assert_string_equal(m->mime, lf_want);
	store_message_free(m);
}

/* Encoded words and folding are undone for display only. */
static void
test_display_fields(void **state)
{
	static const char raw[] =
	    DATED "From: =?utf-8?q?J=C3=BCrgen?= <j@example.com>\r\n"
		  "To: \"Doe, J\" <j@example.org>,\r\n"
		  " b@example.net, (a, comment) c@example.net\r\n"
		  "Subject: caf =?utf-8?q?=C3=A9?=\r\n"
		  "\r\n";
	struct store_message *m = build_ok(raw, strlen(raw), &env);

	assert_memory_equal(m->mime, raw, strlen(raw));
	assert_string_equal(m->header_from, "J\xc3\xbcrgen <j@example.com>");
	assert_string_equal(m->subject, "caf \xc3\xa9");
	assert_string_equal(m->to_json, "[\"\\\"Doe, J\\\" <j@example.org>\","
					"\"b@example.net\","
					"\"(a, comment) c@example.net\"]");
	store_message_free(m);
}

/* The envelope: null sender allowed, recipients deduplicated. */
/*
 * to_json is held to /v1's bounds whatever the To header holds: at most
 * max_recipients entries, each at most 998 bytes, cut at a character (a
 * listing reads it whole); the message keeps its header as sent.
 */
static void
test_display_to_bounded(void **state)
{
	static const char fold[] = "\r\n ";
	struct buf raw;
	struct store_message *m;
	json_t *to;

	(void)state;
	buf_init(&raw, SIZE_MAX);
	/* A name of 2,800 bytes in three folded lines; unfolded, bytes 997
	 * and 998 of the entry are one "\xc3\xa9" (its quote is byte 0). */
	assert_int_equal(buf_appends(&raw, "From: ann@example.com\r\nTo: \""),
			 0);
	assert_int_equal(
	    buf_appendf(&raw, "%0990d\xc3\xa9%s000\xc3\xa9%0900d%s%0900d", 0,
			fold, 0, fold, 0),
	    0);
	assert_int_equal(buf_appends(&raw, "\" <bob@example.net>,\r\n a@b.c, "
					   "d@e.f,\r\n g@h.i\r\n\r\nbody\r\n"),
			 0);
	m = build_ok(raw.p, raw.len, &env);
	to = json_loads(m->to_json, 0, NULL);
	assert_non_null(to);
	/* The recipient cap is 3 here: the fourth entry is not shown. */
	assert_int_equal(json_array_size(to), 3);
	/* Cut before the character that byte 998 would split. */
	assert_int_equal(strlen(json_string_value(json_array_get(to, 0))), 997);
	assert_string_equal(json_string_value(json_array_get(to, 2)), "d@e.f");
	assert_non_null(memmem(m->mime, m->mime_len, "g@h.i", 5));
	json_decref(to);
	store_message_free(m);
	buf_cleanup(&raw);

	/* A subject of 1,900 bytes in two folded lines: 998 shown. */
	buf_init(&raw, SIZE_MAX);
	assert_int_equal(buf_appendf(&raw,
				     "From: ann@example.com\r\nSubject: "
				     "%0950d%s%0950d\r\n\r\nbody\r\n",
				     0, fold, 0),
			 0);
	m = build_ok(raw.p, raw.len, &env);
	assert_int_equal(strlen(m->subject), 998);
	store_message_free(m);
	buf_cleanup(&raw);
}

static void
test_envelope(void **state)
{
	static const char raw[] = DATED HEAD "\r\n";
	static const char *const rcpt[] = {"bob@example.net", "BOB@example.net",
					   "carol@example.org"};
	struct message_envelope e = {.mail_from = "", .rcpt = rcpt, .nrcpt = 3};
	static const char *const four[] = {"a@example.org", "b@example.org",
					   "c@example.org", "d@example.org"};
	static const char *const bad[] = {"not an address"};
	struct store_message *m = build_ok(raw, strlen(raw), &e);

	assert_string_equal(m->mail_from, "");
	assert_int_equal(m->nrcpt, 2);
	assert_string_equal(m->rcpt[1], "carol@example.org");
	store_message_free(m);

	e.nrcpt = 0;
	expect_err_env(raw, strlen(raw), &e, 400, "missing_field",
		       "envelope.rcpt");
	e.rcpt = four;
	e.nrcpt = 4;
	expect_err_env(raw, strlen(raw), &e, 400, "invalid_field",
		       "envelope.rcpt");
	e.rcpt = bad;
	e.nrcpt = 1;
	expect_err_env(raw, strlen(raw), &e, 400, "invalid_field",
		       "envelope.rcpt");
	e.rcpt = one_rcpt;
	e.mail_from = "nope@";
	expect_err_env(raw, strlen(raw), &e, 400, "invalid_field",
		       "envelope.mail_from");
	e.mail_from = NULL;
	expect_err_env(raw, strlen(raw), &e, 400, "invalid_field",
		       "envelope.mail_from");
}

static void
test_refusals(void **state)
{
	char line[1200];

	expect_err("", 400, "invalid_field", "message: empty");
	expect_err_env(HEAD "\r\na\0b", strlen(HEAD) + 5, &env, 400,
		       "invalid_field", "message: contains NUL");
	expect_err(HEAD "\r\nbare\rCR\r\n", 400, "invalid_field",
		   "message: a bare CR");
	expect_err(HEAD "\r\nbare LF\n", 400, "invalid_field",
		   "message: a bare CR");
	expect_err(HEAD "\r\nends in CR\r", 400, "invalid_field",
		   "message: a bare CR");
	expect_err("Not a header\r\n" HEAD "\r\n", 400, "invalid_field",
		   "message: a header line");
	expect_err(": no name\r\n" HEAD "\r\n", 400, "invalid_field",
		   "message: a header line");
	expect_err(" From: folded first\r\n" HEAD "\r\n", 400, "invalid_field",
		   "message: starts with a continuation");
	expect_err(HEAD "X-Ctl: a\x01"
			"b\r\n\r\n",
		   400, "invalid_field", "message: a control character");
	expect_err(HEAD "X-Bad: caf\xc3(\r\n\r\n", 400, "invalid_field",
		   "message: header block not valid UTF-8");
	expect_err("To: bob@example.net\r\n\r\nno from\r\n", 400,
		   "invalid_field", "From: required");
	expect_err(HEAD "From: other@example.com\r\n\r\n", 400, "invalid_field",
		   "From: exactly one");
	expect_err(HEAD "Date: yesterday\r\n\r\n", 400, "invalid_field",
		   "Date: not an RFC 5322 date");
	expect_err(DATED DATED HEAD "\r\n", 400, "invalid_field",
		   "Date: given twice");
	/* A long line, in the body (headers and body are alike here). */
	memset(line, 'x', sizeof(line));
	memcpy(line, HEAD "\r\n", strlen(HEAD) + 2);
	line[sizeof(line) - 1] = '\0';
	expect_err(line, 400, "invalid_field", "message: a line is longer");
}

/* A message of exactly n bytes: head, then 70-byte lines, then 'y's. */
static char *
message_of(const char *head, size_t n)
{
	char *raw = malloc(n + 1);
	size_t i = strlen(head);

	assert_non_null(raw);
	assert_true(n > i + 80);
	memcpy(raw, head, i);
	for (; i + 70 + 8 <= n; i += 70) {
		memset(raw + i, 'y', 68);
		memcpy(raw + i + 68, "\r\n", 2);
	}
	memset(raw + i, 'y', n - i);
	raw[n] = '\0';
	return raw;
}

/* One limit: over max_message_bytes as sent, or once Date is added. */
static void
test_too_large(void **state)
{
	size_t n = lim.max_message_bytes;
	char *raw = message_of(DATED HEAD "\r\n", n + 1);
	struct store_message *m;

	expect_err_env(raw, n + 1, &env, 413, "too_large", "message");
	/* Exactly at the cap, with its own Date and Message-ID: taken. */
	m = build_ok(raw, n, &env);
	assert_int_equal(m->mime_len, n);
	store_message_free(m);
	/* At the cap without a Date: the one we add makes it too large. */
	memcpy(raw, "X-No", 4);
	expect_err_env(raw, n, &env, 413, "too_large", "message");
	free(raw);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kept_exactly),
	    cmocka_unit_test(test_added_when_missing),
	    cmocka_unit_test(test_lf_only),
	    cmocka_unit_test(test_bcc_dropped),
	    cmocka_unit_test(test_display_fields),
	    cmocka_unit_test(test_display_to_bounded),
	    cmocka_unit_test(test_envelope),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_too_large),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
