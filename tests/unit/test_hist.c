/*
 * Unit tests of the fixed-bucket histogram (common/hist.h): a value on a
 * bound falls in that bound's bucket (le is "less or equal"), one past it
 * in the next, past the last bound in +Inf, a negative value counts as 0,
 * and count and sum follow every observation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/hist.h"

#include <string.h>

static void
test_bounds(void **state)
{
	struct hist h;
	int i;

	(void)state;
	memset(&h, 0, sizeof(h));
	for (i = 0; i < HIST_NBOUNDS; i++) {
		uint64_t at = h.bucket[i], next = h.bucket[i + 1];

		hist_observe(&h, hist_bounds_ms[i]);
		assert_int_equal(h.bucket[i], at + 1);
		hist_observe(&h, hist_bounds_ms[i] + 1);
		assert_int_equal(h.bucket[i + 1], next + 1);
	}
	assert_int_equal(h.bucket[HIST_NBOUNDS], 1);
	assert_int_equal(h.count, 2 * HIST_NBOUNDS);
}

static void
test_negative_and_sum(void **state)
{
	struct hist h;

	(void)state;
	memset(&h, 0, sizeof(h));
	hist_observe(&h, -5);
	hist_observe(&h, 7);
	hist_observe(&h, 3600000);
	assert_int_equal(h.bucket[0], 1);
	assert_int_equal(h.bucket[1], 1);
	assert_int_equal(h.bucket[HIST_NBOUNDS], 1);
	assert_int_equal(h.count, 3);
	assert_int_equal(h.sum_ms, 3600007);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bounds),
	    cmocka_unit_test(test_negative_and_sum),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
