/*
 * Unit tests of the capped buffer (common/buf.h): the cap holds at every
 * entry point (exactly at it succeeds, one past fails and leaves the
 * buffer as it was, nothing is allocated for a hostile length), the JSON
 * escaper (every control byte, quotes, backslashes, UTF-8 untouched,
 * checked by parsing the result back with jansson), take and the fixed
 * buffer over caller storage.  Also file_read_all's limit, built on it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/util.h"

#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
test_append_at_cap(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 10);
	assert_int_equal(buf_append(&b, "0123456789", 10), 0);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.p, "0123456789");
	assert_int_equal(buf_append(&b, "x", 1), -E2BIG);
	assert_int_equal(buf_appends(&b, "x"), -E2BIG);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.p, "0123456789");
	/* Nothing more always fits. */
	assert_int_equal(buf_append(&b, "", 0), 0);
	buf_cleanup(&b);
	assert_null(b.p);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.max, 10);
	buf_cleanup(&b);
}

static void
test_append_one_over(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 10);
	/* Refused before any allocation. */
	assert_int_equal(buf_append(&b, "0123456789x", 11), -E2BIG);
	assert_null(b.p);
	assert_int_equal(buf_reserve(&b, SIZE_MAX), -E2BIG);
	assert_null(b.p);
	assert_int_equal(buf_append(&b, "01234", 5), 0);
	assert_int_equal(buf_append(&b, "567890", 6), -E2BIG);
	assert_int_equal(b.len, 5);
	assert_string_equal(b.p, "01234");
	assert_int_equal(buf_reserve(&b, 6), -E2BIG);
	assert_int_equal(buf_reserve(&b, 5), 0);
	buf_cleanup(&b);
}

static void
test_appendf(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 10);
	assert_int_equal(buf_appendf(&b, "%s-%d", "ab", 42), 0);
	assert_string_equal(b.p, "ab-42");
	/* Exactly to the cap, then one past it. */
	assert_int_equal(buf_appendf(&b, "%05d", 7), 0);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.p, "ab-4200007");
	assert_int_equal(buf_appendf(&b, "%c", 'z'), -E2BIG);
	assert_string_equal(b.p, "ab-4200007");
	buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.p, "");
	assert_int_equal(buf_appendf(&b, "%011d", 1), -E2BIG);
	assert_int_equal(b.len, 0);
	assert_int_equal(buf_appendf(&b, "%s", ""), 0);
	assert_string_equal(b.p, "");
	buf_cleanup(&b);
}

/* Growth across many appends keeps every byte, NUL-terminated. */
static void
test_growth(void **state)
{
	struct buf b;
	size_t i;

	(void)state;
	buf_init(&b, 100000);
	for (i = 0; i < 100000; i++)
		assert_int_equal(buf_append(&b, &"abcdefghij"[i % 10], 1), 0);
	assert_int_equal(buf_append(&b, "x", 1), -E2BIG);
	for (i = 0; i < 100000; i++)
		assert_int_equal(b.p[i], "abcdefghij"[i % 10]);
	assert_int_equal(b.p[b.len], '\0');
	buf_cleanup(&b);
}

/* The escaped text of s[0..n) as a C string (the caller frees). */
static char *
escape(const char *s, size_t n)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	assert_int_equal(buf_append_json_str(&b, s, n), 0);
	return buf_take(&b, NULL);
}

static void
test_json_controls(void **state)
{
	static const char *const named[] = {
	    ['\b'] = "\\b", ['\t'] = "\\t", ['\n'] = "\\n",
	    ['\f'] = "\\f", ['\r'] = "\\r",
	};
	char want[8], in[1], *got;
	unsigned c;

	(void)state;
	for (c = 0; c < 0x20; c++) {
		in[0] = (char)c;
		got = escape(in, 1);
		if (c < sizeof(named) / sizeof(named[0]) && named[c] != NULL)
			snprintf(want, sizeof(want), "%s", named[c]);
		else
			snprintf(want, sizeof(want), "\\u%04x", c);
		assert_string_equal(got, want);
		free(got);
	}
	/* DEL and the rest of ASCII pass. */
	got = escape("\x7f~ ", 3);
	assert_string_equal(got, "\x7f~ ");
	free(got);
}

static void
test_json_round_trip(void **state)
{
	char all[0x80 + 16];
	struct buf b;
	json_error_t err;
	json_t *j;
	size_t i, n = 0;

	(void)state;
	for (i = 0; i < 0x80; i++)
		all[n++] = (char)i;
	/* UTF-8: é, €, an emoji. */
	memcpy(all + n, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x93\xa7", 9);
	n += 9;
	buf_init(&b, 4096);
	assert_int_equal(buf_appends(&b, "\""), 0);
	assert_int_equal(buf_append_json_str(&b, all, n), 0);
	assert_int_equal(buf_appends(&b, "\""), 0);
	j = json_loadb(b.p, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (j == NULL)
		fail_msg("not JSON: %s", err.text);
	assert_true(json_is_string(j));
	assert_int_equal(json_string_length(j), n);
	assert_memory_equal(json_string_value(j), all, n);
	/* The UTF-8 went through byte for byte. */
	assert_non_null(strstr(b.p, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x93\xa7\""));
	json_decref(j);
	buf_cleanup(&b);
}

static void
test_json_quotes_backslashes(void **state)
{
	char *got;

	(void)state;
	got = escape("a\"b\\c\\\\\"", 8);
	assert_string_equal(got, "a\\\"b\\\\c\\\\\\\\\\\"");
	free(got);
	got = escape("", 0);
	assert_string_equal(got, "");
	free(got);
}

/* An escape that would pass the cap appends nothing at all. */
static void
test_json_cap(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 8);
	assert_int_equal(buf_appends(&b, "ab"), 0);
	/* "x\n" escapes to 3 bytes: 5 in all, fits; then \u0001 (6) not. */
	assert_int_equal(buf_append_json_str(&b, "x\n", 2), 0);
	assert_string_equal(b.p, "abx\\n");
	assert_int_equal(buf_append_json_str(&b, "y\x01", 2), -E2BIG);
	assert_string_equal(b.p, "abx\\n");
	assert_int_equal(b.len, 5);
	/* Exactly to the cap. */
	assert_int_equal(buf_append_json_str(&b, "\"z", 2), 0);
	assert_string_equal(b.p, "abx\\n\\\"z");
	assert_int_equal(b.len, 8);
	buf_cleanup(&b);
}

static void
test_take(void **state)
{
	struct buf b;
	size_t len = 99;
	char *s;

	(void)state;
	buf_init(&b, 16);
	s = buf_take(&b, &len);
	assert_non_null(s);
	assert_string_equal(s, "");
	assert_int_equal(len, 0);
	free(s);
	/* Emptied after a reset too. */
	assert_int_equal(buf_appends(&b, "abc"), 0);
	buf_reset(&b);
	s = buf_take(&b, &len);
	assert_string_equal(s, "");
	assert_int_equal(len, 0);
	free(s);
	assert_int_equal(buf_append(&b, "a\0b", 3), 0);
	s = buf_take(&b, &len);
	assert_int_equal(len, 3);
	assert_memory_equal(s, "a\0b", 4);
	free(s);
	assert_null(b.p);
	assert_int_equal(b.len, 0);
	/* The buffer is usable again, with its cap. */
	assert_int_equal(buf_append(&b, "0123456789abcdef", 16), 0);
	assert_int_equal(buf_append(&b, "!", 1), -E2BIG);
	s = buf_take(&b, NULL);
	assert_string_equal(s, "0123456789abcdef");
	free(s);
}

static void
test_fixed(void **state)
{
	char mem[8];
	struct buf b;
	char *s;

	(void)state;
	buf_init_fixed(&b, mem, sizeof(mem));
	assert_string_equal(b.p, "");
	assert_int_equal(buf_appends(&b, "0123456"), 0);
	assert_ptr_equal(b.p, mem);
	assert_int_equal(buf_appends(&b, "7"), -E2BIG);
	assert_string_equal(mem, "0123456");
	s = buf_take(&b, NULL);
	assert_true(s != mem);
	assert_string_equal(s, "0123456");
	free(s);
	assert_int_equal(b.len, 0);
	assert_ptr_equal(b.p, mem);
	assert_int_equal(buf_appendf(&b, "%d", 42), 0);
	buf_cleanup(&b);
	assert_ptr_equal(b.p, mem);
	assert_int_equal(b.len, 0);
}

static void
test_commit(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 8);
	assert_int_equal(buf_reserve(&b, 4), 0);
	memcpy(b.p + b.len, "abcd", 4);
	buf_commit(&b, 4);
	assert_int_equal(b.len, 4);
	assert_string_equal(b.p, "abcd");
	buf_cleanup(&b);
}

/* file_read_all: a file of exactly max bytes reads, one more does not. */
static void
test_file_read_all_cap(void **state)
{
	char path[] = "/tmp/test_buf.XXXXXX";
	char *s = NULL, data[10000];
	size_t len = 0;
	int fd;

	(void)state;
	memset(data, 'd', sizeof(data));
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	close(fd);
	assert_int_equal(file_read_all(path, sizeof(data), &s, &len), 0);
	assert_int_equal(len, sizeof(data));
	assert_memory_equal(s, data, sizeof(data));
	assert_int_equal(s[len], '\0');
	free(s);
	s = NULL;
	assert_int_equal(file_read_all(path, sizeof(data) - 1, &s, &len),
			 -EFBIG);
	assert_null(s);
	assert_int_equal(file_read_all(path, SIZE_MAX, &s, NULL), 0);
	free(s);
	assert_int_equal(truncate(path, 0), 0);
	assert_int_equal(file_read_all(path, 0, &s, &len), 0);
	assert_int_equal(len, 0);
	assert_string_equal(s, "");
	free(s);
	unlink(path);
	assert_int_equal(file_read_all(path, 10, &s, &len), -ENOENT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_append_at_cap),
	    cmocka_unit_test(test_append_one_over),
	    cmocka_unit_test(test_appendf),
	    cmocka_unit_test(test_growth),
	    cmocka_unit_test(test_json_controls),
	    cmocka_unit_test(test_json_round_trip),
	    cmocka_unit_test(test_json_quotes_backslashes),
	    cmocka_unit_test(test_json_cap),
	    cmocka_unit_test(test_take),
	    cmocka_unit_test(test_fixed),
	    cmocka_unit_test(test_commit),
	    cmocka_unit_test(test_file_read_all_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
