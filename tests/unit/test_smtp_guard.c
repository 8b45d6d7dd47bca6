/*
 * Unit tests of the AUTH failure guard (intake/smtp_guard.h): the free
 * failures, the doubling wait and its cap, a success or a quiet spell
 * forgiving, clients kept apart, and the bounded table giving up its least
 * recently failed client for a new one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "intake/smtp_guard.h"

#include <string.h>

static void
key_of(unsigned n, uint8_t key[16])
{
	memset(key, 0, 16);
	key[10] = key[11] = 0xff;
	memcpy(key + 12, &n, 4);
}

/* Fails key SMTP_GUARD_FREE times at now: none of them earns a wait. */
static void
use_the_free(struct smtp_guard *g, const uint8_t key[16], int64_t now)
{
	int i;

	for (i = 0; i < SMTP_GUARD_FREE; i++) {
		assert_int_equal(smtp_guard_wait(g, key, now), 0);
		assert_int_equal(smtp_guard_failed(g, key, now), 0);
	}
}

static void
test_wait_doubles_to_its_cap(void **state)
{
	struct smtp_guard *g = smtp_guard_new();
	uint8_t k[16], other[16];
	int64_t now = 1000, want = SMTP_GUARD_FIRST_MS;
	int i;

	key_of(1, k);
	key_of(2, other);
	use_the_free(g, k, now);
	assert_int_equal(smtp_guard_failed(g, k, now), SMTP_GUARD_FIRST_MS);
	assert_int_equal(smtp_guard_wait(g, k, now), SMTP_GUARD_FIRST_MS);
	assert_int_equal(smtp_guard_wait(g, k, now + 500),
			 SMTP_GUARD_FIRST_MS - 500);
	/* Another client is not held for it. */
	assert_int_equal(smtp_guard_wait(g, other, now), 0);
	for (i = 0; i < 12; i++) {
		now += want;
		assert_int_equal(smtp_guard_wait(g, k, now), 0);
		want =
		    want * 2 > SMTP_GUARD_MAX_MS ? SMTP_GUARD_MAX_MS : want * 2;
		assert_int_equal(smtp_guard_failed(g, k, now), want);
	}
	assert_int_equal(want, SMTP_GUARD_MAX_MS);
	smtp_guard_free(g);
}

static void
test_success_and_time_forgive(void **state)
{
	struct smtp_guard *g = smtp_guard_new();
	uint8_t k[16];
	int64_t now = 5000;

	key_of(7, k);
	use_the_free(g, k, now);
	assert_true(smtp_guard_failed(g, k, now) > 0);
	smtp_guard_succeeded(g, k);
	assert_int_equal(smtp_guard_wait(g, k, now), 0);
	use_the_free(g, k, now);
	assert_true(smtp_guard_failed(g, k, now) > 0);
	/* Quiet for the forget period: the free failures again. */
	now += SMTP_GUARD_FORGET_MS;
	assert_int_equal(smtp_guard_wait(g, k, now), 0);
	use_the_free(g, k, now);
	assert_int_equal(smtp_guard_failed(g, k, now), SMTP_GUARD_FIRST_MS);
	smtp_guard_free(g);
}

static void
test_full_table_gives_up_the_least_recent(void **state)
{
	struct smtp_guard *g = smtp_guard_new();
	uint8_t k[16];
	unsigned i;

	/* Client 0 fails first and earns a wait; then the table fills. */
	key_of(0, k);
	use_the_free(g, k, 1);
	assert_true(smtp_guard_failed(g, k, 1) > 0);
	for (i = 1; i < SMTP_GUARD_SLOTS; i++) {
		key_of(i, k);
		assert_int_equal(smtp_guard_failed(g, k, 10 + i), 0);
	}
	key_of(0, k);
	assert_true(smtp_guard_wait(g, k, 2) > 0);
	/* One more client: client 0's slot, the least recently failed. */
	key_of(SMTP_GUARD_SLOTS, k);
	assert_int_equal(smtp_guard_failed(g, k, 100000), 0);
	key_of(0, k);
	assert_int_equal(smtp_guard_wait(g, k, 100000), 0);
	/* The others are still counted: client 1 has one failure left. */
	key_of(1, k);
	for (i = 0; i + 1 < SMTP_GUARD_FREE; i++)
		assert_int_equal(smtp_guard_failed(g, k, 100001), 0);
	assert_int_equal(smtp_guard_failed(g, k, 100001), SMTP_GUARD_FIRST_MS);
	smtp_guard_free(g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wait_doubles_to_its_cap),
	    cmocka_unit_test(test_success_and_time_forgive),
	    cmocka_unit_test(test_full_table_gives_up_the_least_recent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
