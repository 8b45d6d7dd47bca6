/*
 * Unit tests of the web console's file table and If-None-Match matching
 * (server/http_console.h): the four files are compiled in with their
 * Content-Type and a strong ETag of 32 hex digits, the icon also at
 * /favicon.ico; the page links the other three and has no inline script
 * or style (the CSP forbids them);
 * an entity tag matches alone, in a list, weak or as "*", and nothing
 * else matches (a prefix, a longer tag, an empty or unterminated list).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "server/http_console.h"

#include <string.h>

static void
test_files(void **state)
{
	const char *paths[] = {"/", "/app.js", "/app.css", "/favicon.svg",
			       "/favicon.ico"};
	const char *types[] = {"text/html;", "text/javascript;", "text/css;",
			       "image/svg+xml;", "image/svg+xml;"};
	size_t i, j;

	(void)state;
	assert_int_equal(console_nfiles, 5);
	for (i = 0; i < 5; i++) {
		const struct console_file *cf = http_console_find(paths[i]);

		assert_non_null(cf);
		assert_int_equal(strncmp(cf->ctype, types[i], strlen(types[i])),
				 0);
		assert_true(cf->len > 100);
		assert_int_equal(cf->data[cf->len], '\0');
		assert_int_equal(strlen(cf->etag), 34);
		assert_int_equal(cf->etag[0], '"');
		assert_int_equal(cf->etag[33], '"');
		for (j = 1; j < 33; j++)
			assert_non_null(
			    strchr("0123456789abcdef", cf->etag[j]));
	}
	/* Distinct files, distinct tags. */
	assert_string_not_equal(http_console_find("/")->etag,
				http_console_find("/app.js")->etag);
	/* The icon the browser asks for by itself is the page's icon. */
	assert_ptr_equal(http_console_find("/favicon.ico")->data,
			 http_console_find("/favicon.svg")->data);
	assert_string_equal(http_console_find("/favicon.ico")->etag,
			    http_console_find("/favicon.svg")->etag);
	assert_non_null(strstr(
	    (const char *)http_console_find("/favicon.svg")->data, "<svg "));
	assert_null(http_console_find("/index.html"));
	assert_null(http_console_find("/app.js/"));
	assert_null(http_console_find(""));
	assert_null(http_console_find("/v1/providers"));
}

static void
test_page(void **state)
{
	const struct console_file *cf = http_console_find("/");
	const char *html = (const char *)cf->data;

	(void)state;
	assert_non_null(strstr(html, "<script type=\"module\" src=\"/app.js\">"
				     "</script>"));
	assert_non_null(strstr(html, "href=\"/app.css\""));
	assert_non_null(
	    strstr(html, "<link rel=\"icon\" href=\"/favicon.svg\""));
	/* The CSP allows no inline script or style: none may be written. */
	assert_null(strstr(html, "<script>"));
	assert_null(strstr(html, "<style"));
	assert_null(strstr(html, " style="));
	assert_null(strstr(html, " onclick="));
	assert_null(strstr(html, "http://"));
	assert_null(strstr(html, "https://"));
}

static void
test_etag_match(void **state)
{
	const char *tag = "\"0123456789abcdef0123456789abcdef\"";

	(void)state;
	assert_true(http_console_etag_match(tag, tag));
	assert_true(http_console_etag_match(
	    "\"x\", \"0123456789abcdef0123456789abcdef\"", tag));
	assert_true(http_console_etag_match(
	    "\"x\",W/\"0123456789abcdef0123456789abcdef\"  ", tag));
	assert_true(http_console_etag_match("*", tag));
	assert_true(http_console_etag_match(" , *", tag));

	assert_false(http_console_etag_match(NULL, tag));
	assert_false(http_console_etag_match("", tag));
	assert_false(http_console_etag_match(",,, ", tag));
	assert_false(http_console_etag_match("\"x\"", tag));
	assert_false(http_console_etag_match(
	    "\"0123456789abcdef0123456789abcde\"", tag));
	assert_false(http_console_etag_match(
	    "\"0123456789abcdef0123456789abcdef0\"", tag));
	assert_false(
	    http_console_etag_match("0123456789abcdef0123456789abcdef", tag));
	assert_false(http_console_etag_match("\"x\" *", tag));
	assert_false(http_console_etag_match("W/", tag));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_files),
	    cmocka_unit_test(test_page),
	    cmocka_unit_test(test_etag_match),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
