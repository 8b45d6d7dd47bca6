/*
 * libFuzzer target for the HTTP server's connections (httpd.c and
 * httpd_stream.c) over a real loopback connection: what fuzz_httpd cannot
 * reach with the head alone.  Requests pipelined on one connection, a
 * body read against the budget, "100 Continue", an answer given later
 * from the loop, a streamed answer left open, a client that stops
 * anywhere.  The handler routes by path: /body reads the body (at most
 * 2048 bytes) and answers its length, /later answers from the next turn
 * of the loop, /stream opens a stream and writes one event, anything else
 * is answered at once.
 *
 * Input: byte 0 picks how many bytes go out per write (1 + 64 * n), and
 * when its low three bits are all set, a second connection from the same
 * address is opened first and held idle, so that the fuzzed one is over
 * http_max_client_connections (1 here) and refused; the rest is what the
 * client sends, after which it shuts its side.  The promises: the answer
 * starts with "HTTP/1.1 " (with a connection held: "HTTP/1.1 503 ");
 * once the client is done the server closes the connection, and then
 * holds no connection, no stream and no byte of the body budget, all
 * within a deadline.
 */
#include "server/httpd.h"

#include "session_lib.h"

#include <event2/event.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
	struct event_base *base;
	struct httpd *h;
} g;

static void
later_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	httpd_reply(arg, 200, "text/plain", "later", 5);
}

static void
body_cb(struct httpd_req *r, void *arg)
{
	const struct httpd_head *h = httpd_req_head(r);
	size_t len;
	const char *body = httpd_req_body(r, &len);
	char text[32];
	int n;

	(void)arg;
	/* The body is what the head announced (none: empty), NUL-terminated. */
	if (len != (h->has_length ? h->content_length : 0) || body[len] != '\0')
		abort();
	n = snprintf(text, sizeof(text), "%zu", len);
	httpd_reply(r, 200, "text/plain", text, (size_t)n);
}

static void
stream_closed(void *arg)
{
	(void)arg;
}

static void
on_head(struct httpd_req *r, void *arg)
{
	const char *path = httpd_req_head(r)->path;
	const char *method = httpd_req_head(r)->method;

	(void)arg;
	if (strcmp(path, "/body") == 0) {
		httpd_req_read_body(r, 2048, body_cb, NULL);
	} else if (strcmp(path, "/later") == 0) {
		if (event_base_once(g.base, -1, EV_TIMEOUT, later_cb, r,
				    &(struct timeval){0, 0}) != 0)
			abort();
	} else if (strcmp(path, "/stream") == 0 &&
		   strcmp(method, "HEAD") != 0) {
		if (httpd_req_stream_begin(r, 200, "text/event-stream", 4096,
					   stream_closed, NULL, NULL) != 0) {
			httpd_reply(r, 503, "text/plain", "", 0);
			return;
		}
		if (httpd_req_stream_write(r, "data: x\n\n", 9) != 0)
			httpd_req_stream_end(r, false);
	} else {
		httpd_reply(r, 200, "text/plain", path, strlen(path));
	}
}

static void
init(void)
{
	struct httpd_limits lim = {
	    .max_connections = 8,
	    .max_client_connections = 1,
	    .header_timeout_s = 30,
	    .body_budget = 4096,
	    .min_body_rate = 1,
	    .idle_timeout_s = 30,
	};
	char err[128];

	signal(SIGPIPE, SIG_IGN);
	g.base = event_base_new();
	if (g.base == NULL)
		abort();
	g.h = httpd_new(g.base, "127.0.0.1", 0, &lim, on_head, NULL, err,
			sizeof(err));
	if (g.h == NULL) {
		fprintf(stderr, "fuzz_httpd_session: %s\n", err);
		abort();
	}
	session_lib_tick_start(g.base);
}

/* The server still holds something of the connection. */
static bool
busy(const void *arg)
{
	const struct httpd *h = arg;

	return httpd_connections(h) != 0 || httpd_streams(h) != 0 ||
	       httpd_body_reserved(h) != 0;
}

/* The held connection is not accepted yet. */
static bool
not_accepted(const void *arg)
{
	return httpd_connections(arg) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[1 << 16];
	size_t got;
	int fd, hold = -1;

	if (g.base == NULL)
		init();
	if (size < 1)
		return 0;
	session_lib_next_client();
	if ((data[0] & 7) == 7) {
		hold = session_lib_client_open(httpd_port(g.h));
		session_lib_wait_idle(g.base, not_accepted, g.h);
	}
	fd = session_lib_client_open(httpd_port(g.h));
	got = session_lib_converse(g.base, fd, data + 1, size - 1,
				   1 + (size_t)data[0] * 64, out, sizeof(out));
	close(fd);
	if (got > 0 && (got < 9 || memcmp(out, "HTTP/1.1 ", 9) != 0))
		abort();
	if (hold >= 0) {
		if (got > 0 &&
		    (got < 13 || memcmp(out, "HTTP/1.1 503 ", 13) != 0))
			abort();
		close(hold);
	}
	session_lib_wait_idle(g.base, busy, g.h);
	return 0;
}
