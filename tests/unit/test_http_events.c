/*
 * Unit tests of the Last-Event-ID parser of GET /v1/events
 * (server/http_events.h): 1 to 20 digits up to UINT64_MAX are taken,
 * leading zeros too; anything else (empty, a sign, a space, a hex or
 * decimal point, one past UINT64_MAX, 21 digits) is refused and leaves the
 * output alone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "server/http_events.h"

static void
test_parse_good(void **state)
{
	uint64_t v = 7;

	assert_true(http_events_parse_id("0", &v));
	assert_int_equal(v, 0);
	assert_true(http_events_parse_id("1796004467731002", &v));
	assert_int_equal(v, UINT64_C(1796004467731002));
	assert_true(http_events_parse_id("18446744073709551615", &v));
	assert_true(v == UINT64_MAX);
	assert_true(http_events_parse_id("00000000000000000042", &v));
	assert_int_equal(v, 42);
}

static void
test_parse_bad(void **state)
{
	static const char *const bad[] = {
	    "",
	    " 1",
	    "1 ",
	    "+1",
	    "-1",
	    "0x10",
	    "1.5",
	    "1e3",
	    "١٢",
	    "1\t",
	    "12a",
	    "a12",
	    "18446744073709551616",
	    "99999999999999999999",
	    "000000000000000000001",
	};
	uint64_t v = 7;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (http_events_parse_id(bad[i], &v))
			fail_msg("took \"%s\"", bad[i]);
		assert_int_equal(v, 7);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_good),
	    cmocka_unit_test(test_parse_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
