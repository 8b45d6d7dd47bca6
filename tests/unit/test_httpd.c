/*
 * Unit tests of the request head of server/httpd.h (httpd_head.c): the
 * byte scan finds the end of a head fed in any split and refuses bare CR,
 * bare LF, NUL, obs-fold and overlong lines; the parse refuses every
 * ambiguous framing (two Content-Lengths, a signed or listed length,
 * Transfer-Encoding, a space before a colon), bad methods, targets and
 * versions, and fills the head for a good request.  Then the server on a
 * real loopback socket, driven by hand (the client is non-blocking and the
 * loop is turned between its reads): pipelined requests answered in order,
 * a body read to its length, the body budget and cap refusing on the head,
 * the head deadline, and a free with a request still held by the handler
 * (valgrind checks nothing leaks).  Streamed answers: a close-delimited
 * head, writes that arrive, no deadline closing an open stream, the cap on
 * unsent bytes, on_drain, a flushed and a dropped end, and on_close exactly
 * once when the client leaves or the server is freed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "server/httpd.h"

#include "fixture_httpd.h"

#include <errno.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Scans then parses a head given as text; the rc of whichever failed. */
static enum httpd_head_rc
run(const char *text, struct httpd_head *h)
{
	static char buf[HTTPD_HEAD_MAX];
	size_t len = strlen(text), scanned = 0, end = 0;
	enum httpd_head_rc rc;

	memcpy(buf, text, len);
	rc = httpd_head_scan(buf, len, &scanned, &end);
	if (rc != HTTPD_HEAD_OK)
		return rc;
	assert_int_equal(end, len);
	return httpd_head_parse(buf, end, h);
}

static void
test_good_post(void **state)
{
	struct httpd_head h;

	assert_int_equal(
	    run("POST /v1/messages?x=1 HTTP/1.1\r\nHost: a\r\n"
		"Content-Type: application/json\r\nContent-Length: 42\r\n"
		"Expect: 100-continue\r\nX-Empty:\r\nX-Pad:  v \t\r\n\r\n",
		&h),
	    HTTPD_HEAD_OK);
	assert_string_equal(h.method, "POST");
	assert_string_equal(h.path, "/v1/messages");
	assert_string_equal(h.target, "/v1/messages?x=1");
	assert_int_equal(h.minor, 1);
	assert_true(h.keep_alive);
	assert_true(h.has_length);
	assert_int_equal(h.content_length, 42);
	assert_true(h.expect_continue);
	assert_int_equal(h.nheaders, 6);
	assert_string_equal(h.headers[1].name, "Content-Type");
	assert_string_equal(h.headers[1].value, "application/json");
	assert_string_equal(h.headers[4].value, "");
	assert_string_equal(h.headers[5].value, "v");
}

static void
test_keep_alive_rules(void **state)
{
	struct httpd_head h;

	assert_int_equal(run("GET / HTTP/1.0\r\n\r\n", &h), HTTPD_HEAD_OK);
	assert_false(h.keep_alive);
	assert_int_equal(run("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &h),
			 HTTPD_HEAD_OK);
	assert_false(h.keep_alive);
	assert_int_equal(run("HEAD /healthz HTTP/1.1\r\n\r\n", &h),
			 HTTPD_HEAD_OK);
	assert_string_equal(h.method, "HEAD");
}

static void
test_scan_in_pieces(void **state)
{
	static const char text[] =
	    "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nNEXT";
	size_t cut, scanned, end;
	enum httpd_head_rc rc;

	/* Fed a byte more at a time, the end is found at the same place. */
	for (cut = 1; cut <= sizeof(text) - 1; cut++) {
		scanned = end = 0;
		rc = httpd_head_scan(text, cut, &scanned, &end);
		if (cut < sizeof(text) - 1 - 4) {
			assert_int_equal(rc, HTTPD_HEAD_MORE);
			continue;
		}
		assert_int_equal(rc, HTTPD_HEAD_OK);
		assert_int_equal(end, sizeof(text) - 1 - 4);
	}
	/* And incrementally, carrying scanned along. */
	scanned = end = 0;
	for (cut = 1; cut <= sizeof(text) - 1; cut++) {
		rc = httpd_head_scan(text, cut, &scanned, &end);
		if (rc == HTTPD_HEAD_OK)
			break;
		assert_int_equal(rc, HTTPD_HEAD_MORE);
	}
	assert_int_equal(rc, HTTPD_HEAD_OK);
	assert_int_equal(end, sizeof(text) - 1 - 4);
}

static void
test_scan_refusals(void **state)
{
	static const char *const bad[] = {
	    "GET / HTTP/1.1\nHost: a\r\n\r\n",         /* bare LF */
	    "GET / HTTP/1.1\r\nHost: a\n\n",           /* LF ends */
	    "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", /* bare CR */
	    "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",    /* obs-fold */
	    "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n",   /* obs-fold, tab */
	    "\r\nGET / HTTP/1.1\r\n\r\n",              /* empty line first */
	    "GET / HTTP/1.1\r\nX: \x01\r\n\r\n",       /* control byte */
	};
	char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
	size_t i, scanned, end;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		scanned = end = 0;
		assert_int_equal(
		    httpd_head_scan(bad[i], strlen(bad[i]), &scanned, &end),
		    HTTPD_HEAD_BAD);
	}
	scanned = end = 0;
	assert_int_equal(httpd_head_scan(nul, sizeof(nul) - 1, &scanned, &end),
			 HTTPD_HEAD_BAD);
}

static void
test_scan_long_line(void **state)
{
	char *buf = malloc(HTTPD_LINE_MAX + 64);
	size_t scanned = 0, end = 0, n;

	assert_non_null(buf);
	n = (size_t)snprintf(buf, 64, "GET / HTTP/1.1\r\nX: ");
	memset(buf + n, 'a', HTTPD_LINE_MAX);
	/* No CR yet: refused as soon as the line is too long. */
	assert_int_equal(
	    httpd_head_scan(buf, n + HTTPD_LINE_MAX, &scanned, &end),
	    HTTPD_HEAD_TOO_BIG);
	free(buf);
}

static void
test_parse_refusals(void **state)
{
	static const struct {
		const char *text;
		enum httpd_head_rc rc;
	} cases[] = {
	    {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: "
	     "6\r\n\r\n",
	     HTTPD_HEAD_BAD},
	    {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: "
	     "5\r\n\r\n",
	     HTTPD_HEAD_BAD},
	    {"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", HTTPD_HEAD_BAD},
	    {"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", HTTPD_HEAD_BAD},
	    {"POST / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",
	     HTTPD_HEAD_BAD},
	    {"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", HTTPD_HEAD_BAD},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
	     HTTPD_HEAD_BAD},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
	     "Content-Length: 5\r\n\r\n",
	     HTTPD_HEAD_BAD},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	     HTTPD_HEAD_BAD},
	    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
	     HTTPD_HEAD_CHUNKED},
	    {"FROB / HTTP/1.1\r\n\r\n", HTTPD_HEAD_BAD},
	    {"get / HTTP/1.1\r\n\r\n", HTTPD_HEAD_BAD},
	    {"GET http://a/ HTTP/1.1\r\n\r\n", HTTPD_HEAD_BAD},
	    {"OPTIONS * HTTP/1.1\r\n\r\n", HTTPD_HEAD_BAD},
	    {"CONNECT a:443 HTTP/1.1\r\n\r\n", HTTPD_HEAD_BAD},
	    {"GET / HTTP/2.0\r\n\r\n", HTTPD_HEAD_VERSION},
	    {"GET / HTTP/1.1\r\nX A: b\r\n\r\n", HTTPD_HEAD_BAD},
	    {"GET / HTTP/1.1\r\n: b\r\n\r\n", HTTPD_HEAD_BAD},
	    {"GET /a b HTTP/1.1\r\n\r\n", HTTPD_HEAD_BAD},
	};
	struct httpd_head h;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum httpd_head_rc rc = run(cases[i].text, &h);

		if (rc != cases[i].rc)
			fail_msg("case %zu (%s): rc %d, want %d", i,
				 cases[i].text, (int)rc, (int)cases[i].rc);
	}
}

static void
test_parse_too_many_headers(void **state)
{
	static char text[HTTPD_HEAD_MAX];
	struct httpd_head h;
	size_t n = 0, i;

	n += (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\n");
	for (i = 0; i < HTTPD_HEADERS_MAX; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "X-%zu: v\r\n", i);
	snprintf(text + n, sizeof(text) - n, "\r\n");
	assert_int_equal(run(text, &h), HTTPD_HEAD_OK);
	assert_int_equal(h.nheaders, HTTPD_HEADERS_MAX);
	snprintf(text + n, sizeof(text) - n, "X-last: v\r\n\r\n");
	assert_int_equal(run(text, &h), HTTPD_HEAD_TOO_BIG);
}

/* --- the server over loopback -------------------------------------- */

static struct httpd_req *held;     /* a request "/hold" left unanswered */
static struct httpd_req *streamed; /* "/stream": an open stream */
static int stream_closes, stream_drains;

#define STREAM_MAX 100

static void
on_stream_close(void *arg)
{
	assert_ptr_equal(arg, &stream_closes);
	stream_closes++;
	streamed = NULL;
}

static void
on_stream_drain(void *arg)
{
	stream_drains++;
}

static void
echo_body(struct httpd_req *r, void *arg)
{
	size_t len;
	const char *b = httpd_req_body(r, &len);

	httpd_reply(r, 200, "text/plain", b, len);
}

static void
on_head(struct httpd_req *r, void *arg)
{
	const char *path = httpd_req_head(r)->path;

	if (strcmp(path, "/echo") == 0)
		httpd_req_read_body(r, 1000, echo_body, NULL);
	else if (strcmp(path, "/hold") == 0)
		held = r;
	else if (strcmp(path, "/stream") == 0) {
		assert_true(httpd_req_add_header(r, "X-Stream", "yes"));
		assert_int_equal(
		    httpd_req_stream_begin(r, 200, "text/x-test", STREAM_MAX,
					   on_stream_close, on_stream_drain,
					   &stream_closes),
		    0);
		streamed = r;
	} else
		httpd_reply(r, 200, "text/plain", path, strlen(path));
}

static struct httpd *
server(struct event_base *base, int timeout_s)
{
	struct httpd_limits lim = {
	    .max_connections = 4,
	    .header_timeout_s = timeout_s,
	    .body_budget = 500,
	    .min_body_rate = 1000,
	    .idle_timeout_s = 5,
	};
	char err[128];
	struct httpd *h = httpd_new(base, "127.0.0.1", 0, &lim, on_head, NULL,
				    err, sizeof(err));

	if (h == NULL)
		fail_msg("httpd_new: %s", err);
	return h;
}

/* Sends req and turns the loop until the server closes or ms pass;
 * returns what came back (static, NUL-terminated). */
static const char *
exchange(struct event_base *base, struct httpd *h, const char *req, int ms)
{
	static char got[8192];
	size_t n = 0;
	ssize_t k;
	int fd = fixture_client(h, req), i;

	for (i = 0; i < ms; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		k = recv(fd, got + n, sizeof(got) - 1 - n, MSG_DONTWAIT);
		if (k == 0)
			break;
		if (k > 0)
			n += (size_t)k;
		else if (errno != EAGAIN)
			break;
		else
			usleep(1000);
	}
	close(fd);
	got[n] = '\0';
	return got;
}

static void
test_server_pipelined(void **state)
{
	struct event_base *base = event_base_new();
	struct httpd *h = server(base, 5);
	const char *got =
	    exchange(base, h,
		     "GET /one HTTP/1.1\r\n\r\n"
		     "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
		     "GET /two HTTP/1.1\r\nConnection: close\r\n\r\n",
		     2000);
	const char *a = strstr(got, "\r\n\r\n/one");
	const char *b = strstr(got, "\r\n\r\nhello");
	const char *c = strstr(got, "\r\n\r\n/two");

	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_true(a < b && b < c);
	assert_int_equal(httpd_body_reserved(h), 0);
	httpd_free(h);
	event_base_free(base);
}

static void
test_server_refusals(void **state)
{
	struct event_base *base = event_base_new();
	struct httpd *h = server(base, 5);
	const char *got;

	/* Over the route's cap, then over the budget: on the head. */
	got = exchange(base, h,
		       "POST /echo HTTP/1.1\r\nContent-Length: 1001\r\n\r\n",
		       2000);
	assert_non_null(strstr(got, "HTTP/1.1 413 "));
	assert_non_null(strstr(got, "Connection: close"));
	/* 501 > 500 left of the budget (the cap of 1000 lets it by). */
	got = exchange(base, h,
		       "POST /echo HTTP/1.0\r\nContent-Length: 501\r\n\r\n",
		       2000);
	assert_non_null(strstr(got, "HTTP/1.1 503 "));
	assert_non_null(strstr(got, "Retry-After: 1"));
	got = exchange(base, h, "GET / HTTP/1.1\nHost: a\n\n", 2000);
	assert_non_null(strstr(got, "HTTP/1.1 400 "));
	assert_non_null(strstr(got, "\"bad_request\""));
	assert_int_equal(httpd_body_reserved(h), 0);
	httpd_free(h);
	event_base_free(base);
}

static void
test_server_head_deadline(void **state)
{
	struct event_base *base = event_base_new();
	struct httpd *h = server(base, 1);
	const char *got = exchange(base, h, "GET / HTTP/1.1\r\nX-A: b", 3000);

	assert_non_null(strstr(got, "HTTP/1.1 408 "));
	httpd_free(h);
	event_base_free(base);
}

static void
test_server_free_while_held(void **state)
{
	struct event_base *base = event_base_new();
	struct httpd *h = server(base, 5);

	held = NULL;
	(void)exchange(base, h, "GET /hold HTTP/1.1\r\n\r\n", 200);
	assert_non_null(held);
	assert_int_equal(httpd_connections(h), 1);
	httpd_free(h);
	event_base_free(base);
	held = NULL;
}

/*
 * Turns the loop for ms, reading what fd gets into got (static); true
 * when the server closed.  Stops early once want (if any) has arrived.
 */
static bool
turn(struct event_base *base, int fd, int ms, const char *want,
     const char **got)
{
	static char buf[8192];
	static size_t n;
	ssize_t k;
	int i;

	if (got == NULL) {
		n = 0;
		return false;
	}
	for (i = 0; i < ms; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		k = recv(fd, buf + n, sizeof(buf) - 1 - n, MSG_DONTWAIT);
		buf[k > 0 ? n + (size_t)k : n] = '\0';
		*got = buf;
		if (k == 0)
			return true;
		if (k > 0)
			n += (size_t)k;
		else if (errno != EAGAIN)
			return true;
		if (want != NULL && strstr(buf, want) != NULL)
			return false;
		if (k < 0)
			usleep(1000);
	}
	return false;
}

/*
 * Opens a stream on h (a pending accept turned first) and turns the loop
 * until its head came back into *got; the client's fd.
 */
static int
open_stream(struct event_base *base, struct httpd *h, const char **got)
{
	int fd;

	(void)turn(base, -1, 0, NULL, NULL);
	fd = fixture_client(h, "GET /stream HTTP/1.1\r\n\r\n");
	assert_false(turn(base, fd, 2000, "\r\n\r\n", got));
	assert_non_null(streamed);
	return fd;
}

static void
test_stream_writes_and_deadlines(void **state)
{
	struct event_base *base = event_base_new();
	struct httpd *h = server(base, 1); /* head deadline 1 s */
	const char *got = NULL;
	int fd;

	streamed = NULL;
	stream_closes = stream_drains = 0;
	fd = open_stream(base, h, &got);
	assert_non_null(strstr(got, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(got, "Content-Type: text/x-test\r\n"));
	assert_non_null(strstr(got, "X-Stream: yes\r\n"));
	assert_non_null(strstr(got, "Connection: close\r\n"));
	assert_null(strstr(got, "Content-Length"));
	assert_int_equal(httpd_streams(h), 1);
	assert_int_equal(httpd_req_stream_write(streamed, "one\n", 4), 0);
	assert_false(turn(base, fd, 2000, "one\n", &got));
	assert_true(stream_drains > 0);
	/* Past the head deadline (1 s) and what the client sends meanwhile
	 * (dropped): the stream stays open. */
	assert_int_equal(send(fd, "junk", 4, 0), 4);
	assert_false(turn(base, fd, 1500, NULL, &got));
	assert_non_null(streamed);
	/* The cap: one write past it is refused, nothing of it queued. */
	assert_int_equal(httpd_req_stream_write(streamed, "0123456789", 10), 0);
	assert_int_equal(httpd_req_stream_unsent(streamed), 10);
	assert_int_equal(httpd_req_stream_write(streamed, got, STREAM_MAX - 9),
			 -ENOBUFS);
	assert_int_equal(httpd_req_stream_unsent(streamed), 10);
	/* A flushed end: what was queued arrives, then the close. */
	assert_int_equal(httpd_req_stream_write(streamed, "two\n", 4), 0);
	httpd_req_stream_end(streamed, true);
	streamed = NULL;
	assert_true(turn(base, fd, 3000, NULL, &got));
	assert_non_null(strstr(got, "one\n0123456789two\n"));
	assert_int_equal(stream_closes, 0);
	assert_int_equal(httpd_streams(h), 0);
	close(fd);
	httpd_free(h);
	event_base_free(base);
}

static void
test_stream_client_leaves(void **state)
{
	struct event_base *base = event_base_new();
	struct httpd *h = server(base, 5);
	const char *got = NULL;
	int fd, i;

	streamed = NULL;
	stream_closes = 0;
	fd = open_stream(base, h, &got);
	close(fd);
	for (i = 0; i < 2000 && stream_closes == 0; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	assert_int_equal(stream_closes, 1);
	assert_null(streamed);
	assert_int_equal(httpd_streams(h), 0);
	assert_int_equal(httpd_connections(h), 0);
	httpd_free(h);
	event_base_free(base);
	assert_int_equal(stream_closes, 1);
}

static void
test_stream_dropped_and_freed(void **state)
{
	struct event_base *base = event_base_new();
	struct httpd *h = server(base, 5);
	const char *got = NULL;
	int fd, fd2;

	streamed = NULL;
	stream_closes = 0;
	/* Dropped by its owner: closed at once, what was queued lost. */
	fd = open_stream(base, h, &got);
	assert_int_equal(httpd_req_stream_write(streamed, "lost", 4), 0);
	httpd_req_stream_end(streamed, false);
	streamed = NULL;
	assert_int_equal(httpd_connections(h), 0);
	assert_true(turn(base, fd, 2000, NULL, &got));
	assert_null(strstr(got, "lost"));
	close(fd);
	/* Open when the server is freed: on_close once, nothing leaks. */
	fd2 = open_stream(base, h, &got);
	assert_int_equal(httpd_req_stream_write(streamed, "queued", 6), 0);
	httpd_free(h);
	assert_int_equal(stream_closes, 1);
	assert_null(streamed);
	close(fd2);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_good_post),
	    cmocka_unit_test(test_keep_alive_rules),
	    cmocka_unit_test(test_scan_in_pieces),
	    cmocka_unit_test(test_scan_refusals),
	    cmocka_unit_test(test_scan_long_line),
	    cmocka_unit_test(test_parse_refusals),
	    cmocka_unit_test(test_parse_too_many_headers),
	    cmocka_unit_test(test_server_pipelined),
	    cmocka_unit_test(test_server_refusals),
	    cmocka_unit_test(test_server_head_deadline),
	    cmocka_unit_test(test_server_free_while_held),
	    cmocka_unit_test(test_stream_writes_and_deadlines),
	    cmocka_unit_test(test_stream_client_leaves),
	    cmocka_unit_test(test_stream_dropped_and_freed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
