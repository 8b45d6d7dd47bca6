/*
 * Unit tests of the per-client connection counts (common/clients.h): one
 * entry per key however often it is got, freed when its last connection
 * goes (or at once if it counted none), keys that share a bucket kept
 * apart.  LeakSanitizer checks that nothing is left.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/clients.h"

#include <string.h>

static void
key_of(unsigned n, uint8_t key[16])
{
	memset(key, 0, 16);
	key[10] = key[11] = 0xff;
	key[12] = (uint8_t)(n >> 24);
	key[13] = (uint8_t)(n >> 16);
	key[14] = (uint8_t)(n >> 8);
	key[15] = (uint8_t)n;
}

static size_t
entries(const struct client_table *t)
{
	const struct client_count *c;
	size_t i, n = 0;

	for (i = 0; i < CLIENTS_BUCKETS; i++)
		for (c = t->bucket[i]; c != NULL; c = c->next)
			n++;
	return n;
}

static void
test_count_and_free(void **state)
{
	struct client_table t;
	struct client_count *a, *b;
	uint8_t k1[16], k2[16], k3[16];

	memset(&t, 0, sizeof(t));
	key_of(1, k1);
	key_of(2, k2);
	a = client_table_get(&t, k1);
	assert_int_equal(a->count, 0);
	a->count++;
	assert_ptr_equal(client_table_get(&t, k1), a);
	a->count++;
	b = client_table_get(&t, k2);
	assert_ptr_not_equal(a, b);
	b->count++;
	assert_int_equal(entries(&t), 2);
	/* Counting looks and makes nothing. */
	assert_int_equal(client_table_count(&t, k1), 2);
	key_of(3, k3);
	assert_int_equal(client_table_count(&t, k3), 0);
	assert_int_equal(entries(&t), 2);
	client_table_put(&t, a);
	assert_int_equal(a->count, 1);
	assert_int_equal(entries(&t), 2);
	client_table_put(&t, a);
	assert_int_equal(entries(&t), 1);
	client_table_put(&t, b);
	assert_int_equal(entries(&t), 0);
	/* Got and never counted: put frees it, and does not wrap. */
	a = client_table_get(&t, k1);
	client_table_put(&t, a);
	assert_int_equal(entries(&t), 0);
}

static void
test_many_keys(void **state)
{
	struct client_table t;
	struct client_count *c[2000];
	uint8_t k[16];
	unsigned i;

	memset(&t, 0, sizeof(t));
	for (i = 0; i < 2000; i++) {
		key_of(i, k);
		c[i] = client_table_get(&t, k);
		c[i]->count++;
	}
	assert_int_equal(entries(&t), 2000);
	for (i = 0; i < 2000; i++) {
		key_of(i, k);
		assert_ptr_equal(client_table_get(&t, k), c[i]);
	}
	for (i = 0; i < 2000; i += 2)
		client_table_put(&t, c[i]);
	assert_int_equal(entries(&t), 1000);
	client_table_clear(&t);
	assert_int_equal(entries(&t), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_count_and_free),
	    cmocka_unit_test(test_many_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
