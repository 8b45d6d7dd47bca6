/*
 * Unit tests of an envelope's ASCII form (common/envelope.h): a non-ASCII
 * domain becomes its A-labels (lower case, the local part kept byte for
 * byte, split at the last '@'); a non-ASCII local part, a bare non-ASCII
 * name, bytes that are not UTF-8, a domain that is no valid IDN and a
 * form over the length bound have none (and the intake's form keeps such
 * an address as it is); an envelope is converted whole
 * or not at all, with nothing leaked either way (ASan).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUECHER                                                                \
	"b\xc3\xbc"                                                            \
	"cher" /* "bücher", UTF-8 */

static void
expect_form(const char *addr, const char *want)
{
	char *out = (char *)1;

	assert_int_equal(envelope_addr_ascii(addr, &out), 0);
	if (want == NULL) {
		assert_null(out);
		return;
	}
	assert_non_null(out);
	assert_string_equal(out, want);
	free(out);
}

static void
expect_none(const char *addr)
{
	char *out = (char *)1;

	assert_int_equal(envelope_addr_ascii(addr, &out), -1);
	assert_null(out);
}

static void
test_ascii_form(void **state)
{
	(void)state;
	expect_form("info@example.com", NULL); /* ASCII: use it as it is */
	expect_form("", NULL);                 /* the null sender */
	expect_form("info@" BUECHER ".example", "info@xn--bcher-kva.example");
	/* UTS #46 maps case; the local part keeps its own. */
	expect_form("Info@B\xc3\x9c"
		    "CHER.Example",
		    "Info@xn--bcher-kva.example");
	/* A quoted local part may hold '@'; the domain never does. */
	expect_form("\"a@b\"@" BUECHER ".example",
		    "\"a@b\"@xn--bcher-kva.example");
	expect_form("x@m\xc3\xbcnchen." BUECHER ".example",
		    "x@xn--mnchen-3ya.xn--bcher-kva.example");
}

static void
test_no_ascii_form(void **state)
{
	char label[200], addr[260];
	size_t i;

	(void)state;
	expect_none("zo\xc3\xab@example.net");         /* local part */
	expect_none("zo\xc3\xab@" BUECHER ".example"); /* both */
	expect_none("postm\xc3\xa4stare");             /* no '@' */
	expect_none("a@b\xff"
		    "c.example");              /* not UTF-8 */
	expect_none("a@\xcc\x81x.example");    /* leading mark */
	expect_none("a@" BUECHER "..example"); /* empty label */
	/* 60 "ü" are one U-label of 120 bytes; its A-label is over 63. */
	for (i = 0; i < 60; i++)
		memcpy(label + 2 * i, "\xc3\xbc", 2);
	label[120] = '\0';
	snprintf(addr, sizeof(addr), "a@%s.example", label);
	expect_none(addr);
}

/* The intake's form: the domain as A-labels whatever the local part;
 * the address as it is when the domain has none. */
static void
test_alabels(void **state)
{
	const struct {
		const char *in, *out;
	} c[] = {
	    {"zo\xc3\xab@" BUECHER ".example",
	     "zo\xc3\xab@xn--bcher-kva.example"},
	    {"ann@M\xc3\x9cNCHEN.example", "ann@xn--mnchen-3ya.example"},
	    {"bob@example.net", "bob@example.net"},
	    {"zo\xc3\xab@example.net", "zo\xc3\xab@example.net"},
	    {"a@b\xff"
	     "c.example",
	     "a@b\xff"
	     "c.example"},
	    {"a@" BUECHER "..example", "a@" BUECHER "..example"},
	    {"postm\xc3\xa4stare", "postm\xc3\xa4stare"},
	};
	size_t i;
	char *out;

	(void)state;
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		out = envelope_addr_alabels(c[i].in);
		assert_string_equal(out, c[i].out);
		free(out);
	}
}

/* A form over ENVELOPE_ADDR_MAX bytes has none, one at it has. */
static void
test_length_bound(void **state)
{
	char addr[ENVELOPE_ADDR_MAX + 16], *out;
	const char *dom = "@" BUECHER ".example"; /* 22 bytes as A-labels */
	size_t local = ENVELOPE_ADDR_MAX - 22;

	(void)state;
	memset(addr, 'l', local);
	strcpy(addr + local, dom);
	assert_int_equal(envelope_addr_ascii(addr, &out), 0);
	assert_int_equal(strlen(out), ENVELOPE_ADDR_MAX);
	free(out);
	memset(addr, 'l', local + 1);
	strcpy(addr + local + 1, dom);
	expect_none(addr);
}

static void
test_envelope(void **state)
{
	const char *idn[] = {"a@example.com", "b@" BUECHER ".example"};
	const char *mixed[] = {"a@" BUECHER ".example", "zo\xc3\xab@x.example"};
	char *from = NULL, **rcpt = NULL;

	(void)state;
	assert_false(envelope_utf8("s@example.com", idn, 1));
	assert_true(envelope_utf8("s@example.com", idn, 2));
	assert_true(envelope_utf8("s@" BUECHER ".example", idn, 1));
	assert_false(envelope_utf8(NULL, idn, 1));

	assert_false(envelope_needs_smtputf8("s@example.com", idn, 2));
	assert_false(envelope_needs_smtputf8("s@" BUECHER ".de", idn, 2));
	assert_true(envelope_needs_smtputf8("s@example.com", mixed, 2));
	assert_true(envelope_needs_smtputf8("\xc3\xa9@example.com", idn, 1));
	assert_false(envelope_needs_smtputf8(NULL, idn, 2));

	assert_int_equal(envelope_need("s@example.com", idn, 1),
			 ENVELOPE_ASCII);
	assert_int_equal(envelope_need("s@example.com", idn, 2),
			 ENVELOPE_ALABELS);
	assert_int_equal(envelope_need("s@example.com", mixed, 2),
			 ENVELOPE_SMTPUTF8);

	assert_int_equal(
	    envelope_ascii("s@" BUECHER ".de", idn, 2, &from, &rcpt), 0);
	assert_string_equal(from, "s@xn--bcher-kva.de");
	assert_string_equal(rcpt[0], "a@example.com");
	assert_string_equal(rcpt[1], "b@xn--bcher-kva.example");
	envelope_ascii_free(from, rcpt, 2);

	/* Whole or nothing: the second recipient has no ASCII form. */
	from = (char *)1;
	rcpt = (char **)1;
	assert_int_equal(
	    envelope_ascii("s@" BUECHER ".de", mixed, 2, &from, &rcpt), -1);
	assert_ptr_equal(from, (char *)1);
	assert_ptr_equal(rcpt, (char **)1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ascii_form),
	    cmocka_unit_test(test_no_ascii_form),
	    cmocka_unit_test(test_alabels),
	    cmocka_unit_test(test_length_bound),
	    cmocka_unit_test(test_envelope),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
