/*
 * The query string of GET /v1/messages (front_queue_parse): every
 * parameter decoded exactly (%-escapes, '+'), defaults when absent, and
 * each kind of bad input refused with a reason naming the parameter and
 * no parameters left behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/http_front_int.h"
#include "store/store.h"

#include <stdio.h>
#include <string.h>

static int
parse(const char *q, struct front_queue_params *p, char *why, size_t whysz)
{
	why[0] = '\0';
	return front_queue_parse(q, strlen(q), p, why, whysz);
}

static void
test_good(void **state)
{
	struct front_queue_params p;
	char why[160];

	(void)state;
	assert_int_equal(parse("", &p, why, sizeof(why)), 0);
	assert_int_equal(p.status, -1);
	assert_int_equal(p.limit, FRONT_QUEUE_LIMIT_DEFAULT);
	assert_string_equal(p.provider, "");
	assert_string_equal(p.before, "");

	assert_int_equal(parse("status=failed&provider=sandbox%2Da&limit=200"
			       "&before=12.34&",
			       &p, why, sizeof(why)),
			 0);
	assert_int_equal(p.status, MSG_FAILED);
	assert_string_equal(p.provider, "sandbox-a");
	assert_int_equal(p.limit, 200);
	assert_string_equal(p.before, "12.34");

	assert_int_equal(
	    parse("&&limit=1&status=%71ueued", &p, why, sizeof(why)), 0);
	assert_int_equal(p.limit, 1);
	assert_int_equal(p.status, MSG_QUEUED);
}

static void
test_bad(void **state)
{
	static const struct {
		const char *q, *named;
	} bad[] = {
	    {"status=bogus", "status"},
	    {"status=", "status"},
	    {"status=queued%00", "status"},
	    {"status=queued&status=failed", "status"},
	    {"limit=0", "limit"},
	    {"limit=201", "limit"},
	    {"limit=0050", "limit"},
	    {"limit=-1", "limit"},
	    {"limit=%2B5", "limit"},
	    {"limit=5%20", "limit"},
	    {"provider=a+b", "provider"},
	    {"provider=a%0Ab", "provider"},
	    {"provider=%C3%A9", "provider"},
	    {"provider=", "provider"},
	    {"before=", "before"},
	    {"x=1", "unknown"},
	    {"=1", "name"},
	    {"provider=%zz", "escape"},
	    {"provider=%4", "escape"},
	};
	struct front_queue_params p, zero;
	char why[160], longq[FRONT_QUEUE_QUERY_MAX + 16];
	size_t i;

	(void)state;
	memset(&zero, 0, sizeof(zero));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i].q, &p, why, sizeof(why)), -1);
		assert_non_null(strstr(why, bad[i].named));
		assert_memory_equal(&p, &zero, sizeof(p));
	}
	/* A provider one byte over the cap; a query over its own. */
	snprintf(longq, sizeof(longq), "provider=%0*d",
		 STORE_LIST_PROVIDER_MAX + 1, 0);
	assert_int_equal(parse(longq, &p, why, sizeof(why)), -1);
	snprintf(longq, sizeof(longq), "provider=%0*d", STORE_LIST_PROVIDER_MAX,
		 0);
	assert_int_equal(parse(longq, &p, why, sizeof(why)), 0);
	memset(longq, 'a', FRONT_QUEUE_QUERY_MAX + 1);
	longq[FRONT_QUEUE_QUERY_MAX + 1] = '\0';
	assert_int_equal(parse(longq, &p, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "query"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good),
	    cmocka_unit_test(test_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
