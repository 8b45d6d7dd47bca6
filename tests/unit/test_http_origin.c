/*
 * Unit tests of the cross-site and rebinding refusals (server/http_origin.h):
 * a client that is not a browser (no Origin, no Sec-Fetch-Site) is never
 * refused; a browser's request from another site is refused on the data
 * routes and on every unsafe method, by Sec-Fetch-Site when it is sent and
 * by Origin against Host when not (default ports, case, "null", other
 * schemes, garbage); the console's pages and /metrics stay reachable by a
 * link; and without api_keys_file a browser must name an IP address or
 * localhost in Host, whatever site it says it is.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "server/http_origin.h"

#include <string.h>

static const char *
check(const char *method, const char *path, const char *host,
      const char *origin, const char *site, bool keyed)
{
	const struct http_origin_req r = {
	    .method = method,
	    .path = path,
	    .host = host,
	    .origin = origin,
	    .fetch_site = site,
	    .keyed = keyed,
	};

	return http_origin_check(&r);
}

static void
test_not_a_browser(void **state)
{
	(void)state;
	/* curl, SDKs, the CLI, the tests: any Host, keys or not. */
	assert_null(check("POST", "/v1/messages", "relay.example.com", NULL,
			  NULL, false));
	assert_null(
	    check("POST", "/v1/providers/a/disable", NULL, NULL, NULL, false));
	assert_null(check("GET", "/v1/events", "t", NULL, NULL, true));
	assert_null(
	    check("POST", "/v3/mg.example/messages", "x", NULL, NULL, false));
}

static void
test_fetch_site(void **state)
{
	static const char *const bad[] = {"cross-site", "same-site",
					  "CROSS-SITE", "", "garbage"};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		assert_non_null(check("POST", "/v1/providers/a/disable",
				      "127.0.0.1:8025", NULL, bad[i], true));
		assert_non_null(check("GET", "/v1/messages", "127.0.0.1:8025",
				      NULL, bad[i], true));
		assert_non_null(check("POST", "/v3/mg.example/messages",
				      "127.0.0.1:8025", NULL, bad[i], false));
		/* A link to the console or /metrics from anywhere works. */
		assert_null(
		    check("GET", "/", "127.0.0.1:8025", NULL, bad[i], false));
		assert_null(check("GET", "/metrics", "127.0.0.1:8025", NULL,
				  bad[i], false));
		/* Unsafe methods are guarded everywhere. */
		assert_non_null(
		    check("POST", "/", "127.0.0.1:8025", NULL, bad[i], true));
	}
	/* The console itself, and an address typed by hand. */
	assert_null(check("POST", "/v1/providers/a/disable", "127.0.0.1:8025",
			  "http://127.0.0.1:8025", "same-origin", false));
	assert_null(check("GET", "/v1/messages", "localhost:8025", NULL, "none",
			  false));
	/* Sec-Fetch-Site wins over an Origin that would pass. */
	assert_non_null(check("POST", "/v1/messages/X/retry", "127.0.0.1:8025",
			      "http://127.0.0.1:8025", "cross-site", true));
}

static void
test_origin(void **state)
{
	(void)state;
	assert_null(check("POST", "/v1/messages", "relay.example.com",
			  "https://relay.example.com", NULL, true));
	assert_null(check("POST", "/v1/messages", "Relay.Example.COM:443",
			  "https://relay.example.com", NULL, true));
	assert_null(check("POST", "/v1/messages", "relay.example.com:8025",
			  "http://relay.example.com:8025", NULL, true));
	assert_null(check("POST", "/v1/messages", "127.0.0.1:80",
			  "http://127.0.0.1", NULL, false));
	assert_null(check("POST", "/v1/messages", "[::1]:8025",
			  "http://[::1]:8025", NULL, false));
	/* Another host, another port. */
	assert_non_null(check("POST", "/v1/messages", "relay.example.com",
			      "https://evil.example", NULL, true));
	assert_non_null(check("POST", "/v1/messages", "127.0.0.1:8025",
			      "http://127.0.0.1:8026", NULL, false));
	/* A sandboxed frame, a file, garbage, no Host to compare with. */
	static const char *const bad[] = {"null",
					  "file://",
					  "ftp://127.0.0.1:8025",
					  "http://",
					  "http://127.0.0.1:8025/",
					  "http://user@127.0.0.1:8025",
					  "http://127.0.0.1:8025 ",
					  "127.0.0.1:8025",
					  ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		assert_non_null(check("POST", "/v1/messages", "127.0.0.1:8025",
				      bad[i], NULL, false));
	assert_non_null(check("POST", "/v1/messages", NULL,
			      "http://127.0.0.1:8025", NULL, true));
	/* An Origin on a link's GET of the console is no matter. */
	assert_null(check("GET", "/app.js", "127.0.0.1", "https://evil.example",
			  NULL, false));
}

static void
test_rebinding(void **state)
{
	static const char *const ok[] = {
	    "127.0.0.1:8025", "127.0.0.1", "10.1.2.3:80", "[::1]:8025",
	    "[::1]",          "localhost", "LOCALHOST:1", "a.localhost:8025",
	    "localhost.:8025"};
	static const char *const bad[] = {"evil.example:8025",
					  "evil.example",
					  "127.0.0.1.evil.example:8025",
					  "localhost.evil.example",
					  "xlocalhost",
					  "[::1",
					  "[::1]x",
					  "[evil]:8025",
					  "127.1:8025",
					  ":8025",
					  ""};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(*ok); i++)
		assert_null(check("GET", "/v1/messages", ok[i], NULL,
				  "same-origin", false));
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		/* A same-origin page by a name: refused without keys... */
		assert_non_null(check("GET", "/v1/messages", bad[i], NULL,
				      "same-origin", false));
		/* ...which would have kept the attacker out anyway. */
		assert_null(check("GET", "/v1/messages", bad[i], NULL,
				  "same-origin", true));
	}
	assert_non_null(
	    check("GET", "/v1/messages", NULL, NULL, "same-origin", false));
	/* An old browser: its same-origin Origin is the rebound name. */
	assert_non_null(check("POST", "/v1/providers/a/disable",
			      "evil.example:8025", "http://evil.example:8025",
			      NULL, false));
	/* The console's page itself is served by any name. */
	assert_null(
	    check("GET", "/", "evil.example:8025", NULL, "none", false));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_not_a_browser),
	    cmocka_unit_test(test_fetch_site),
	    cmocka_unit_test(test_origin),
	    cmocka_unit_test(test_rebinding),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
