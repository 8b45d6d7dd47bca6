/*
 * Unit tests of the Last-Event-ID parser of GET /v1/events
 * (server/http_events.h): 1 to 20 digits up to UINT64_MAX are taken,
 * leading zeros too; anything else (empty, a sign, a space, a hex or
 * decimal point, one past UINT64_MAX, 21 digits) is refused and leaves the
 * output alone.  Then the route on a real httpd and hub, driven by hand:
 * live events in SSE form, a replay after an id, a reset for an id gone
 * from the history, the cap on clients, and streams still open when everything
 * is freed (valgrind checks nothing leaks).  And a catch-up's cost: a client
 * that asks for the last few events of a long history costs what it reads,
 * not the history's length (measured as the CPU time of the route, against
 * the same clients on a short history).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "server/http_events.h"
#include "server/http_front_int.h"
#include "dispatch/events.h"
#include "server/httpd.h"

#include "fixture_httpd.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void
test_parse_good(void **state)
{
	uint64_t v = 7;

	assert_true(http_events_parse_id("0", &v));
	assert_int_equal(v, 0);
	assert_true(http_events_parse_id("1796004467731002", &v));
	assert_int_equal(v, UINT64_C(1796004467731002));
	assert_true(http_events_parse_id("18446744073709551615", &v));
	assert_true(v == UINT64_MAX);
	assert_true(http_events_parse_id("00000000000000000042", &v));
	assert_int_equal(v, 42);
}

static void
test_parse_bad(void **state)
{
	static const char *const bad[] = {
	    "",
	    " 1",
	    "1 ",
	    "+1",
	    "-1",
	    "0x10",
	    "1.5",
	    "1e3",
	    "١٢",
	    "1\t",
	    "12a",
	    "a12",
	    "18446744073709551616",
	    "99999999999999999999",
	    "000000000000000000001",
	};
	uint64_t v = 7;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (http_events_parse_id(bad[i], &v))
			fail_msg("took \"%s\"", bad[i]);
		assert_int_equal(v, 7);
	}
}

/* The front as far as the route needs it: its events. */
static struct http_front front;

/* CPU seconds spent in the route (its catch-up's first share included). */
static double route_cpu;

static double
cpu_now(void)
{
	struct timespec ts;

	assert_int_equal(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts), 0);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
on_head(struct httpd_req *r, void *arg)
{
	double t0 = cpu_now();

	http_events_route(&front, r);
	route_cpu += cpu_now() - t0;
}

struct reader {
	int fd;
	char buf[16384];
	size_t n;
	bool closed;
};

/* Turns the loop until want is in r's text (true) or ms pass. */
static bool
until(struct event_base *base, struct reader *r, const char *want, int ms)
{
	ssize_t k;
	int i;

	for (i = 0; i < ms; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		k = recv(r->fd, r->buf + r->n, sizeof(r->buf) - 1 - r->n,
			 MSG_DONTWAIT);
		if (k > 0)
			r->n += (size_t)k;
		else if (k == 0 || errno != EAGAIN)
			r->closed = true;
		r->buf[r->n] = '\0';
		if (want != NULL && strstr(r->buf, want) != NULL)
			return true;
		if (r->closed)
			return false;
		if (k <= 0)
			usleep(1000);
	}
	return false;
}

static uint64_t
publish(struct events *hub, int type, const char *id)
{
	struct ev_rec r;

	memset(&r, 0, sizeof(r));
	r.type = type;
	r.outcome = -1;
	snprintf(r.id, sizeof(r.id), "%s", id);
	return events_publish(hub, &r);
}

static void
test_route(void **state)
{
	struct event_base *base = event_base_new();
	struct events *hub = events_new(3);
	struct http_events_limits el = {
	    .max_clients = 3, .ping_s = 60, .client_buffer = 16384};
	struct httpd_limits lim = {
	    .max_connections = 10,
	    .header_timeout_s = 5,
	    .body_budget = 1000,
	    .min_body_rate = 1000,
	    .idle_timeout_s = 5,
	};
	struct reader a = {0}, b = {0}, c = {0}, d = {0};
	char err[128], want[128], hdr[128];
	struct httpd *h;
	uint64_t s1, s2;

	front.events = http_events_new(base, hub, &el);
	assert_non_null(front.events);
	h = httpd_new(base, "127.0.0.1", 0, &lim, on_head, NULL, err,
		      sizeof(err));
	assert_non_null(h);
	/* Live: the head, the retry hint, then each event as it comes. */
	a.fd = fixture_client(h, "GET /v1/events HTTP/1.1\r\n\r\n");
	assert_true(until(base, &a, "retry: 2000\n\n", 2000));
	assert_non_null(strstr(a.buf, "Content-Type: text/event-stream"));
	assert_int_equal(http_events_streams(front.events), 1);
	s1 = publish(hub, EV_MSG_QUEUED, "M1");
	snprintf(want, sizeof(want),
		 "id: %llu\nevent: message.queued\ndata: "
		 "{\"seq\":%llu,",
		 (unsigned long long)s1, (unsigned long long)s1);
	assert_true(until(base, &a, want, 2000));
	assert_true(until(base, &a, "\"id\":\"M1\"}\n\n", 2000));
	/* After s1: exactly what followed it. */
	s2 = publish(hub, EV_MSG_DELIVERED, "M2");
	snprintf(hdr, sizeof(hdr),
		 "GET /v1/events HTTP/1.1\r\nLast-Event-ID: %llu\r\n\r\n",
		 (unsigned long long)s1);
	b.fd = fixture_client(h, hdr);
	snprintf(want, sizeof(want), "id: %llu\n", (unsigned long long)s2);
	assert_true(until(base, &b, want, 2000));
	assert_null(strstr(b.buf, "\"M1\""));
	assert_null(strstr(b.buf, "reset"));
	/* Past the history of 3: a reset, then the 3 kept. */
	(void)publish(hub, EV_MSG_QUEUED, "M3");
	(void)publish(hub, EV_MSG_QUEUED, "M4");
	(void)publish(hub, EV_MSG_QUEUED, "M5");
	c.fd = fixture_client(h, hdr);
	assert_true(until(base, &c, "\"M5\"", 2000));
	assert_non_null(strstr(c.buf, "event: reset\n"));
	assert_null(strstr(c.buf, "\"M2\""));
	assert_true(strstr(c.buf, "event: reset") < strstr(c.buf, "\"M3\""));
	assert_true(strstr(c.buf, "\"M3\"") < strstr(c.buf, "\"M4\""));
	/* A fourth client: 503; then a bad id: 400. */
	d.fd = fixture_client(h, "GET /v1/events HTTP/1.1\r\n\r\n");
	assert_true(until(base, &d, "\r\n\r\n{", 2000));
	assert_non_null(strstr(d.buf, "HTTP/1.1 503 "));
	close(d.fd);
	close(a.fd);
	assert_false(until(base, &b, "never", 200));
	assert_int_equal(http_events_streams(front.events), 2);
	memset(&d, 0, sizeof(d));
	d.fd = fixture_client(
	    h, "GET /v1/events HTTP/1.1\r\nLast-Event-ID: x\r\n\r\n");
	assert_true(until(base, &d, "invalid_field", 2000));
	assert_non_null(strstr(d.buf, "HTTP/1.1 400 "));
	close(d.fd);
	/* Freed with two streams open: they end, nothing leaks. */
	http_events_free(front.events);
	front.events = NULL;
	assert_int_equal(httpd_streams(h), 0);
	assert_false(until(base, &b, "never", 1000));
	assert_true(b.closed);
	httpd_free(h);
	events_free(hub);
	close(b.fd);
	close(c.fd);
	event_base_free(base);
}

/*
 * CPU time of the route for `clients` clients, one after the other, each
 * asking for the last 5 events of a hub holding `history`.
 */
static double
catch_up_cpu(size_t history, int clients)
{
	struct event_base *base = event_base_new();
	struct events *hub = events_new(history);
	struct http_events_limits el = {
	    .max_clients = 4, .ping_s = 60, .client_buffer = 1 << 20};
	struct httpd_limits lim = {
	    .max_connections = 10,
	    .header_timeout_s = 5,
	    .body_budget = 1000,
	    .min_body_rate = 1000,
	    .idle_timeout_s = 5,
	};
	char err[128], req[128], want[64];
	uint64_t last = 0;
	struct httpd *h;
	size_t i;
	int k;

	for (i = 0; i < history; i++)
		last = publish(hub, EV_MSG_QUEUED, "M");
	front.events = http_events_new(base, hub, &el);
	assert_non_null(front.events);
	h = httpd_new(base, "127.0.0.1", 0, &lim, on_head, NULL, err,
		      sizeof(err));
	assert_non_null(h);
	snprintf(req, sizeof(req),
		 "GET /v1/events HTTP/1.1\r\nLast-Event-ID: %llu\r\n\r\n",
		 (unsigned long long)(last - 5));
	snprintf(want, sizeof(want), "id: %llu\n", (unsigned long long)last);
	route_cpu = 0;
	for (k = 0; k < clients; k++) {
		struct reader r = {0};

		r.fd = fixture_client(h, req);
		assert_true(until(base, &r, want, 5000));
		assert_null(strstr(r.buf, "reset"));
		close(r.fd);
		/* Gone before the next: its slot is free again. */
		for (i = 0; i < 2000 && http_events_streams(front.events) > 0;
		     i++) {
			event_base_loop(base, EVLOOP_NONBLOCK);
			usleep(1000);
		}
		assert_int_equal(http_events_streams(front.events), 0);
	}
	http_events_free(front.events);
	front.events = NULL;
	httpd_free(h);
	events_free(hub);
	event_base_free(base);
	return route_cpu;
}

static void
test_catch_up_cost(void **state)
{
	double few = catch_up_cpu(100, 40), many = catch_up_cpu(50000, 40);

	/* A scan of the history per share made `many` some 50 times `few`. */
	print_message("catch-up cpu: history 100 %.6f s, 50000 %.6f s\n", few,
		      many);
	if (many > few * 8 + 0.002)
		fail_msg("catch-up of 5 events: %.6f s with a history of "
			 "50000, %.6f s with 100",
			 many, few);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_good),
	    cmocka_unit_test(test_parse_bad),
	    cmocka_unit_test(test_route),
	    cmocka_unit_test(test_catch_up_cost),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
