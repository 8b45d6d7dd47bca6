/*
 * Unit tests of the CIDR network lists (common/cidr.h): parsing (spaces,
 * bare addresses, both families, the empty list) and refusal of every bad
 * item with the item named (host bits past the prefix, prefixes out of
 * range or not plain decimal, empty items, garbage, overlong items);
 * matching at the edges of a network, IPv4-mapped IPv6 peers against IPv4
 * networks, /0, and families that never match.  Also the client key the
 * per-address limits count by (common/util.h): IPv4 and its mapped form
 * alike, IPv6 by /64.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/cidr.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* A sockaddr for text (either family); the storage is the caller's. */
static const struct sockaddr *
addr_of(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(25);
	} else {
		assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr),
				 1);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(25);
	}
	return (const struct sockaddr *)ss;
}

static bool
matches(const struct cidr_list *l, const char *text)
{
	struct sockaddr_storage ss;

	return cidr_list_match(l, addr_of(text, &ss));
}

static struct cidr_list *
parse_ok(const char *text)
{
	struct cidr_list *l = NULL;
	char err[256] = "";

	assert_int_equal(cidr_list_parse(text, &l, err, sizeof(err)), 0);
	assert_non_null(l);
	assert_string_equal(err, "");
	return l;
}

static void
parse_bad(const char *text, const char *named)
{
	struct cidr_list *l = (struct cidr_list *)&l;
	char err[256] = "";

	assert_int_equal(cidr_list_parse(text, &l, err, sizeof(err)), -EINVAL);
	assert_null(l);
	if (strstr(err, named) == NULL)
		fail_msg("error for \"%s\" is \"%s\", naming not \"%s\"", text,
			 err, named);
}

static void
test_parse_forms(void **state)
{
	struct cidr_list *l;

	(void)state;
	l = parse_ok(" 127.0.0.0/8 ,::1/128,10.1.2.3,  2001:db8::/32 ");
	assert_int_equal(cidr_list_count(l), 4);
	cidr_list_free(l);

	l = parse_ok("0.0.0.0/0");
	assert_int_equal(cidr_list_count(l), 1);
	cidr_list_free(l);

	l = parse_ok("::/0");
	assert_int_equal(cidr_list_count(l), 1);
	cidr_list_free(l);

	/* A bare address is the one host; /32 is the same. */
	l = parse_ok("192.0.2.7\t,192.0.2.9/32");
	assert_int_equal(cidr_list_count(l), 2);
	cidr_list_free(l);

	cidr_list_free(NULL);
	assert_int_equal(cidr_list_count(NULL), 0);
}

static void
test_parse_empty(void **state)
{
	struct cidr_list *l;

	(void)state;
	l = parse_ok("");
	assert_int_equal(cidr_list_count(l), 0);
	assert_false(matches(l, "127.0.0.1"));
	assert_false(matches(l, "::1"));
	cidr_list_free(l);

	l = parse_ok("  \t ");
	assert_int_equal(cidr_list_count(l), 0);
	cidr_list_free(l);
}

static void
test_parse_refused(void **state)
{
	(void)state;
	/* Host bits past the prefix: a typo more often than a wish. */
	parse_bad("10.0.0.1/8", "10.0.0.1/8");
	parse_bad("127.0.0.0/8, 2001:db8::1/32", "2001:db8::1/32");
	parse_bad("192.168.1.128/24", "bits set past the prefix");
	/* Prefixes out of range or not plain decimal. */
	parse_bad("10.0.0.0/33", "10.0.0.0/33");
	parse_bad("::/129", "::/129");
	parse_bad("10.0.0.0/", "10.0.0.0/");
	parse_bad("10.0.0.0/-1", "10.0.0.0/-1");
	parse_bad("10.0.0.0/+8", "10.0.0.0/+8");
	parse_bad("10.0.0.0/08", "10.0.0.0/08");
	parse_bad("10.0.0.0/8x", "10.0.0.0/8x");
	parse_bad("10.0.0.0/ 8", "prefix");
	parse_bad("10.0.0.0/8/8", "10.0.0.0/8/8");
	parse_bad("10.0.0.0/4294967304", "prefix");
	/* Not addresses at all. */
	parse_bad("localhost", "localhost");
	parse_bad("10.0.0", "10.0.0");
	parse_bad("10.0.0.256", "10.0.0.256");
	parse_bad("fe80::1%eth0", "fe80::1%eth0");
	parse_bad("10.0.0.0 /8", "10.0.0.0 /8");
	parse_bad("127.0.0.1 10.0.0.1", "127.0.0.1 10.0.0.1");
	/* Empty items: a stray comma is a mistake worth saying. */
	parse_bad("127.0.0.1,", "empty item");
	parse_bad(",127.0.0.1", "empty item");
	parse_bad("127.0.0.1, ,::1", "empty item");
	/* Overlong items are cut in the message, never overflow. */
	char big[400];
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	parse_bad(big, "too long");
}

static void
test_match_edges(void **state)
{
	struct cidr_list *l;

	(void)state;
	l = parse_ok("10.1.0.0/16, 192.0.2.7, 172.16.0.0/12, 2001:db8:40::/42");
	assert_true(matches(l, "10.1.0.0"));
	assert_true(matches(l, "10.1.255.255"));
	assert_false(matches(l, "10.0.255.255"));
	assert_false(matches(l, "10.2.0.0"));
	assert_true(matches(l, "192.0.2.7"));
	assert_false(matches(l, "192.0.2.6"));
	assert_false(matches(l, "192.0.2.8"));
	/* /12: a prefix that ends inside a byte. */
	assert_true(matches(l, "172.16.0.0"));
	assert_true(matches(l, "172.31.255.255"));
	assert_false(matches(l, "172.32.0.0"));
	assert_false(matches(l, "172.15.255.255"));
	/* /42 in IPv6, inside the sixth byte. */
	assert_true(matches(l, "2001:db8:40::1"));
	assert_true(matches(l, "2001:db8:7f:ffff::1"));
	assert_false(matches(l, "2001:db8:80::"));
	assert_false(matches(l, "2001:db8:3f:ffff::"));
	/* An IPv4 network never matches a plain IPv6 address. */
	assert_false(matches(l, "::a01:0"));
	cidr_list_free(l);
}

static void
test_match_mapped(void **state)
{
	struct cidr_list *l;

	(void)state;
	/* What a dual-stack socket reports for an IPv4 client. */
	l = parse_ok("127.0.0.0/8");
	assert_true(matches(l, "::ffff:127.0.0.1"));
	assert_true(matches(l, "::ffff:127.255.0.9"));
	assert_false(matches(l, "::ffff:128.0.0.1"));
	assert_false(matches(l, "::1"));
	/* IPv4-compatible (deprecated, ::a.b.c.d) is not mapped. */
	assert_false(matches(l, "::127.0.0.1"));
	cidr_list_free(l);

	/* The loopback default of the configuration: both families. */
	l = parse_ok("127.0.0.0/8, ::1");
	assert_true(matches(l, "::1"));
	assert_true(matches(l, "127.0.0.1"));
	assert_false(matches(l, "::2"));
	cidr_list_free(l);

	/* An IPv6 network written for mapped addresses works as well. */
	l = parse_ok("::ffff:0:0/96");
	assert_true(matches(l, "::ffff:8.8.8.8"));
	assert_false(matches(l, "8.8.8.8"));
	cidr_list_free(l);
}

static void
test_match_all_and_other_families(void **state)
{
	struct cidr_list *l;
	struct sockaddr_un sun;

	(void)state;
	l = parse_ok("0.0.0.0/0");
	assert_true(matches(l, "1.2.3.4"));
	assert_true(matches(l, "::ffff:1.2.3.4"));
	assert_false(matches(l, "2001:db8::1"));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_false(cidr_list_match(l, (const struct sockaddr *)&sun));
	assert_false(cidr_list_match(l, NULL));
	assert_false(cidr_list_match(NULL, (const struct sockaddr *)&sun));
	cidr_list_free(l);

	l = parse_ok("::/0");
	assert_true(matches(l, "2001:db8::1"));
	assert_false(matches(l, "1.2.3.4"));
	cidr_list_free(l);
}

static bool
same_client(const char *a, const char *b)
{
	struct sockaddr_storage sa, sb;
	uint8_t ka[16], kb[16];

	sockaddr_client_key(addr_of(a, &sa), ka);
	sockaddr_client_key(addr_of(b, &sb), kb);
	return memcmp(ka, kb, sizeof(ka)) == 0;
}

static void
test_client_key(void **state)
{
	struct sockaddr_un sun;
	uint8_t k[16], zero[16] = {0};

	assert_true(same_client("1.2.3.4", "::ffff:1.2.3.4"));
	assert_false(same_client("1.2.3.4", "1.2.3.5"));
	assert_false(same_client("1.2.3.4", "::1.2.3.4"));
	/* One /64 is one client, whatever its interface identifier. */
	assert_true(same_client("2001:db8::1", "2001:db8::ffff:ffff:ffff:2"));
	assert_false(same_client("2001:db8::1", "2001:db8:0:1::1"));
	assert_false(same_client("::1", "127.0.0.1"));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memset(k, 0xaa, sizeof(k));
	sockaddr_client_key((const struct sockaddr *)&sun, k);
	assert_memory_equal(k, zero, sizeof(k));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_forms),
	    cmocka_unit_test(test_parse_empty),
	    cmocka_unit_test(test_parse_refused),
	    cmocka_unit_test(test_match_edges),
	    cmocka_unit_test(test_match_mapped),
	    cmocka_unit_test(test_match_all_and_other_families),
	    cmocka_unit_test(test_client_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
