/*
 * http_multi against servers on the same event_base (single thread, no
 * sleeps): an evhttp server answers /ok, /status/N and never answers
 * /hang; a raw listener resets every connection once the request is in.
 * Many concurrent transfers all complete; a second batch reuses the first
 * batch's connections (counted by the server); a hung request ends by its
 * request timeout as ambiguous; a reset after the request is ambiguous and
 * a refused connection transient; a TLS handshake that fails (https to
 * the plain server) is transient, as is every TLS error before the
 * request went out; statuses classify as documented; cancel calls no
 * callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/http_multi.h"
#include "common/config.h"
#include "link/link.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define NMAX 192
#define NHOLD 96

struct fixture {
	struct event_base *base;
	struct evhttp *http;
	int port;
	int nconn; /* connections the evhttp server accepted */
	int nhung; /* /hang requests held */
	struct evhttp_request *held[NHOLD]; /* /hold: answered together */
	int nheld;
	struct evconnlistener *rst;
	int rst_port;
	int nrst;       /* connections the reset listener accepted */
	int nrst_first; /* ... when the first transfer was done */
	struct http_multi *hm;
	int ndone;
	long status[NMAX];
	int outcome[NMAX];
	uint32_t retry[NMAX];
	bool sent[NMAX];
	CURLcode code[NMAX];
	char body[NMAX][32];
	long nconnects; /* new connections curl reports */
};

static struct bufferevent *
on_bev(struct event_base *base, void *arg)
{
	struct fixture *f = arg;

	f->nconn++;
	return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct fixture *f = arg;
	const char *uri = evhttp_request_get_uri(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evbuffer_new();
	int code = 200;

	assert_non_null(out);
	if (strcmp(uri, "/hang") == 0) {
		f->nhung++;
		evbuffer_free(out);
		return; /* never answered; evhttp_free reaps it */
	}
	if (strcmp(uri, "/hold") == 0) {
		/* Held until NHOLD are in: each needs its own connection. */
		assert_true(f->nheld < NHOLD);
		f->held[f->nheld++] = req;
		evbuffer_free(out);
		if (f->nheld == NHOLD) {
			for (int i = 0; i < NHOLD; i++)
				evhttp_send_reply(f->held[i], 200, "OK", NULL);
			f->nheld = 0;
		}
		return;
	}
	if (strncmp(uri, "/status/", 8) == 0)
		code = (int)strtol(uri + 8, NULL, 10);
	if (code == 429)
		assert_int_equal(evhttp_add_header(h, "Retry-After", "7"), 0);
	assert_int_equal(evhttp_add_header(h, "X-Message-Id", "abc.1"), 0);
	assert_int_equal(evbuffer_add_printf(out, "hello %d", code) > 0, 1);
	evhttp_send_reply(req, code, "X", out);
	evbuffer_free(out);
}

static void
rst_read(struct bufferevent *bev, void *arg)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	int fd = (int)bufferevent_getfd(bev);

	/* The request is in: close with RST so no answer can come. */
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)),
			 0);
	bufferevent_free(bev);
}

static void
rst_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
	   int salen, void *arg)
{
	struct fixture *f = arg;
	struct bufferevent *bev;

	f->nrst++;
	bev = bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	bufferevent_setcb(bev, rst_read, NULL, NULL, f);
	assert_int_equal(bufferevent_enable(bev, EV_READ), 0);
}

static int
fd_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct evhttp_bound_socket *bs;
	struct sockaddr_in sin;

	assert_non_null(f);
	f->base = event_base_new();
	assert_non_null(f->base);
	f->http = evhttp_new(f->base);
	assert_non_null(f->http);
	evhttp_set_bevcb(f->http, on_bev, f);
	evhttp_set_gencb(f->http, on_request, f);
	bs = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
	assert_non_null(bs);
	f->port = fd_port((int)evhttp_bound_socket_get_fd(bs));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->rst = evconnlistener_new_bind(
	    f->base, rst_accept, f, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
	    16, (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(f->rst);
	f->rst_port = fd_port((int)evconnlistener_get_fd(f->rst));
	f->hm = http_multi_new(f->base);
	assert_non_null(f->hm);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	http_multi_free(f->hm);
	evconnlistener_free(f->rst);
	evhttp_free(f->http);
	event_base_free(f->base);
	free(f);
	return 0;
}

/* Each transfer's index rides in a slot of this array of back pointers. */
struct slot {
	struct fixture *f;
	int i;
};
static struct slot slots[NMAX];

static void
on_slot_done(const struct http_result *res, void *arg)
{
	struct slot *s = arg;
	struct fixture *f = s->f;
	long n = 0;

	f->status[s->i] = res->status;
	f->code[s->i] = res->code;
	f->sent[s->i] = res->sent;
	f->outcome[s->i] = http_multi_classify(res, &f->retry[s->i]);
	snprintf(f->body[s->i], sizeof(f->body[s->i]), "%s", res->body->p);
	if (curl_easy_getinfo(res->easy, CURLINFO_NUM_CONNECTS, &n) == CURLE_OK)
		f->nconnects += n;
	if (f->ndone == 0)
		f->nrst_first = f->nrst;
	f->ndone++;
}

static void
start(struct fixture *f, int i, int port, const char *path, long req_ms)
{
	char url[128];
	CURL *e = curl_easy_init();

	assert_non_null(e);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	assert_int_equal(curl_easy_setopt(e, CURLOPT_URL, url), CURLE_OK);
	slots[i].f = f;
	slots[i].i = i;
	assert_int_equal(http_multi_add(f->hm, e, NULL, NULL, 0, req_ms,
					on_slot_done, &slots[i]),
			 0);
}

/* Runs the loop until n transfers are done; fails after secs. */
static void
run_until_s(struct fixture *f, int n, long secs)
{
	struct timeval t0, now;

	gettimeofday(&t0, NULL);
	while (f->ndone < n) {
		assert_true(event_base_loop(f->base, EVLOOP_ONCE) >= 0);
		gettimeofday(&now, NULL);
		assert_true(now.tv_sec - t0.tv_sec < secs);
	}
}

static void
run_until(struct fixture *f, int n)
{
	run_until_s(f, n, 10);
}

static void
test_many_and_reuse(void **state)
{
	struct fixture *f = *state;
	int i;

	for (i = 0; i < 8; i++)
		start(f, i, f->port, "/ok", 0);
	assert_int_equal(http_multi_count(f->hm), 8);
	run_until(f, 8);
	for (i = 0; i < 8; i++) {
		assert_int_equal(f->code[i], CURLE_OK);
		assert_int_equal(f->status[i], 200);
		assert_int_equal(f->outcome[i], OUTCOME_DELIVERED);
		assert_string_equal(f->body[i], "hello 200");
	}
	assert_true(f->nconn >= 1 && f->nconn <= 8);
	/* A second batch of the same size opens nothing new. */
	int first = f->nconn;
	for (i = 8; i < 16; i++)
		start(f, i, f->port, "/ok", 0);
	run_until(f, 16);
	for (i = 8; i < 16; i++)
		assert_int_equal(f->status[i], 200);
	assert_int_equal(f->nconn, first);
	assert_int_equal(f->nconnects, first);
	/* Many at once: all complete. */
	for (i = 16; i < NMAX; i++)
		start(f, i, f->port, "/ok", 0);
	run_until(f, NMAX);
	for (i = 16; i < NMAX; i++)
		assert_string_equal(f->body[i], "hello 200");
	assert_int_equal(http_multi_count(f->hm), 0);
}

/*
 * The connection cache holds max_in_flight connections: NHOLD (more than
 * the 64 kept by default) requests held by the server until all are in
 * need NHOLD connections, and a second such burst reuses every one.
 */
static void
test_cache_holds_max_in_flight(void **state)
{
	struct fixture *f = *state;
	struct provider_config pc = {
	    .name = "t", .type = "ses", .max_in_flight = NHOLD};
	int i;

	assert_int_equal(http_multi_configure(f->hm, &pc), 0);
	for (i = 0; i < NHOLD; i++)
		start(f, i, f->port, "/hold", 0);
	run_until(f, NHOLD);
	assert_int_equal(f->nconn, NHOLD);
	for (i = NHOLD; i < 2 * NHOLD; i++)
		start(f, i, f->port, "/hold", 0);
	run_until(f, 2 * NHOLD);
	for (i = 0; i < 2 * NHOLD; i++)
		assert_int_equal(f->status[i], 200);
	assert_int_equal(f->nconn, NHOLD);
}

/*
 * Without http_multi_configure (the connectors that do not call it) the
 * cache grows with the sends that run at once: NHOLD held requests, then
 * a second burst, still NHOLD connections in all.
 */
static void
test_cache_grows_with_sends(void **state)
{
	struct fixture *f = *state;
	int i;

	for (i = 0; i < NHOLD; i++)
		start(f, i, f->port, "/hold", 0);
	run_until(f, NHOLD);
	assert_int_equal(f->nconn, NHOLD);
	for (i = NHOLD; i < 2 * NHOLD; i++)
		start(f, i, f->port, "/hold", 0);
	run_until(f, 2 * NHOLD);
	for (i = 0; i < 2 * NHOLD; i++)
		assert_int_equal(f->status[i], 200);
	assert_int_equal(f->nconn, NHOLD);
}

static void
test_timeout_ambiguous(void **state)
{
	struct fixture *f = *state;
	struct timeval t0, t1;
	long ms;

	gettimeofday(&t0, NULL);
	start(f, 0, f->port, "/hang", 300);
	run_until(f, 1);
	gettimeofday(&t1, NULL);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_usec - t0.tv_usec) / 1000;
	assert_int_equal(f->nhung, 1);
	assert_int_equal(f->code[0], CURLE_OPERATION_TIMEDOUT);
	assert_true(f->sent[0]);
	assert_int_equal(f->outcome[0], OUTCOME_AMBIGUOUS);
	assert_true(ms >= 250 && ms < 5000);
}

static void
test_reset_and_refused(void **state)
{
	struct fixture *f = *state;
	int fd, port;

	start(f, 0, f->rst_port, "/ok", 0);
	/* A port nobody listens on: bound, then closed. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	{
		struct sockaddr_in sin;
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)),
				 0);
	}
	port = fd_port(fd);
	close(fd);
	start(f, 1, port, "/ok", 0);
	run_until(f, 2);
	assert_int_not_equal(f->code[0], CURLE_OK);
	assert_true(f->sent[0]);
	assert_int_equal(f->outcome[0], OUTCOME_AMBIGUOUS);
	assert_int_equal(f->code[1], CURLE_COULDNT_CONNECT);
	assert_false(f->sent[1]);
	assert_int_equal(f->outcome[1], OUTCOME_TRANSIENT);
}

static void
test_classify(void **state)
{
	struct fixture *f = *state;

	start(f, 0, f->port, "/status/429", 0);
	start(f, 1, f->port, "/status/401", 0);
	start(f, 2, f->port, "/status/403", 0);
	start(f, 3, f->port, "/status/503", 0);
	start(f, 4, f->port, "/status/400", 0);
	start(f, 5, f->port, "/status/202", 0);
	run_until(f, 6);
	assert_int_equal(f->outcome[0], OUTCOME_THROTTLED);
	assert_int_equal(f->retry[0], 7000);
	assert_int_equal(f->outcome[1], OUTCOME_ACCOUNT);
	assert_int_equal(f->outcome[2], OUTCOME_ACCOUNT);
	assert_int_equal(f->outcome[3], OUTCOME_TRANSIENT);
	assert_int_equal(f->outcome[4], HTTP_CLASS_CONNECTOR);
	assert_int_equal(f->outcome[5], OUTCOME_DELIVERED);
	assert_string_equal(f->body[4], "hello 400");
}

/*
 * A CA certificate whose key was thrown away when it was made (openssl
 * req -x509, EC P-256): it signs nothing, so verification against it
 * fails like against any unknown CA, and loading it is cheap, where the
 * system's bundle takes seconds per connection under valgrind.
 */
static const char small_ca_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBtDCCAVmgAwIBAgIUEZG8XA2FRxOoxPG6myEYfh47z48wCgYIKoZIzj0EAwIw\n"
    "LjEsMCoGA1UEAwwjc2hpdm5lcmkgdW5pdCB0ZXN0IENBIChubyBrZXkga2VwdCkw\n"
    "IBcNMjYxMTI5MjM0NDI5WhgPMjEyNjExMDUyMzQ0MjlaMC4xLDAqBgNVBAMMI3No\n"
    "aXZuZXJpIHVuaXQgdGVzdCBDQSAobm8ga2V5IGtlcHQpMFkwEwYHKoZIzj0CAQYI\n"
    "KoZIzj0DAQcDQgAEUIf2E2egFgaIdqfbFNdbMaNIP3aW/a1ajzkqzJfnhVJwZqxe\n"
    "b4VnRKwKvKQew5a4CTPPIX5jd6H7TA0HG57qb6NTMFEwHQYDVR0OBBYEFBlT/zJl\n"
    "PV5Nr4IlUUGFQGrIQSPLMB8GA1UdIwQYMBaAFBlT/zJlPV5Nr4IlUUGFQGrIQSPL\n"
    "MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAITFuoM6FEaX5mBC\n"
    "gS+zk+CLlb4lvQx3ZPBgcT4M1yObAiEAi7YvCErgkz5go6DNdwQJBWTm2rvC2yQH\n"
    "Yv0fF+hdU7U=\n"
    "-----END CERTIFICATE-----\n";

static void
small_ca(CURL *e)
{
	struct curl_blob blob = {(void *)(uintptr_t)small_ca_pem,
				 sizeof(small_ca_pem) - 1, CURL_BLOB_COPY};

	assert_int_equal(curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob),
			 CURLE_OK);
}

/*
 * A TLS failure in the handshake: nothing of the request went out, so it
 * is transient, whatever the TLS error; the real case is https to the
 * plain server (its answer to our ClientHello is no TLS record).
 */
static void
test_tls_failure_transient(void **state)
{
	struct fixture *f = *state;
	static const CURLcode tls_codes[] = {
	    CURLE_SSL_CONNECT_ERROR,        CURLE_PEER_FAILED_VERIFICATION,
	    CURLE_SSL_CERTPROBLEM,          CURLE_SSL_CIPHER,
	    CURLE_SSL_CACERT_BADFILE,       CURLE_SSL_ISSUER_ERROR,
	    CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS,
	    CURLE_SSL_CRL_BADFILE,          CURLE_SSL_ENGINE_INITFAILED,
	};
	char url[128];
	CURL *e = curl_easy_init();
	struct http_result r;
	uint32_t retry = 1;
	size_t i;

	assert_non_null(e);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/ok", f->port);
	assert_int_equal(curl_easy_setopt(e, CURLOPT_URL, url), CURLE_OK);
	small_ca(e);
	slots[0].f = f;
	slots[0].i = 0;
	/* OpenSSL's first use takes a while under valgrind. */
	assert_int_equal(http_multi_add(f->hm, e, NULL, NULL, 60000, 60000,
					on_slot_done, &slots[0]),
			 0);
	run_until_s(f, 1, 60);
	assert_int_equal(f->code[0], CURLE_SSL_CONNECT_ERROR);
	assert_false(f->sent[0]);
	assert_int_equal(f->status[0], 0);
	assert_int_equal(f->outcome[0], OUTCOME_TRANSIENT);

	/* Every TLS code before the request: transient; after: ambiguous. */
	memset(&r, 0, sizeof(r));
	r.error = "x";
	for (i = 0; i < sizeof(tls_codes) / sizeof(tls_codes[0]); i++) {
		r.code = tls_codes[i];
		r.sent = false;
		assert_int_equal(http_multi_classify(&r, &retry),
				 OUTCOME_TRANSIENT);
		assert_int_equal(retry, 0);
		r.sent = true;
		assert_int_equal(http_multi_classify(&r, &retry),
				 OUTCOME_AMBIGUOUS);
	}
}

/* Turns on the gate of an https provider for f->hm. */
static void
gate_on(struct fixture *f)
{
	struct config_kv kv = {"base_url", "https://127.0.0.1", 1};
	struct provider_config pc = {
	    .name = "t", .type = "ses", .kv = &kv, .nkv = 1};

	assert_int_equal(http_multi_configure(f->hm, &pc), 0);
}

/*
 * The https gate: a burst goes to curl one transfer first.  Against a
 * server that resets every handshake, the first transfer ends before any
 * other has connected (the others were held), then the rest try at once,
 * each failing transient on its own; against a plain HTTP/1.1 server
 * (the gate only looks at base_url) a burst and a second one complete.
 */
static void
test_gate(void **state)
{
	struct fixture *f = *state;
	char url[128];
	int i;

	gate_on(f);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/ok", f->rst_port);
	for (i = 0; i < 6; i++) {
		CURL *e = curl_easy_init();

		assert_non_null(e);
		assert_int_equal(curl_easy_setopt(e, CURLOPT_URL, url),
				 CURLE_OK);
		small_ca(e);
		slots[i].f = f;
		slots[i].i = i;
		/* TLS is slow under valgrind. */
		assert_int_equal(http_multi_add(f->hm, e, NULL, NULL, 60000,
						60000, on_slot_done, &slots[i]),
				 0);
	}
	assert_int_equal(http_multi_count(f->hm), 6);
	run_until_s(f, 6, 60);
	assert_int_equal(f->nrst_first, 1);
	assert_int_equal(f->nrst, 6);
	for (i = 0; i < 6; i++) {
		assert_false(f->sent[i]);
		assert_int_equal(f->outcome[i], OUTCOME_TRANSIENT);
	}
	/* Plain HTTP/1.1 behind the gate: two bursts, all answered. */
	for (i = 0; i < 16; i++)
		start(f, i, f->port, "/ok", 0);
	run_until(f, 6 + 16);
	for (i = 16; i < 32; i++)
		start(f, i, f->port, "/ok", 0);
	run_until(f, 6 + 32);
	for (i = 0; i < 32; i++)
		assert_string_equal(f->body[i], "hello 200");
	assert_int_equal(http_multi_count(f->hm), 0);
}

static void
test_retry_after(void **state)
{
	time_t now = curl_getdate("Sun, 06 Nov 1994 08:49:37 GMT", NULL);

	(void)state;
	assert_int_equal(http_multi_retry_after_ms("12", now), 12000);
	assert_int_equal(http_multi_retry_after_ms("0", now), 0);
	assert_int_equal(http_multi_retry_after_ms(NULL, now), 0);
	assert_int_equal(http_multi_retry_after_ms("soon", now), 0);
	assert_int_equal(http_multi_retry_after_ms("99999999999", now),
			 HTTP_RETRY_AFTER_MAX_MS);
	assert_int_equal(
	    http_multi_retry_after_ms("Sun, 06 Nov 1994 08:50:07 GMT", now),
	    30000);
	assert_int_equal(
	    http_multi_retry_after_ms("Sun, 06 Nov 1994 08:00:00 GMT", now),
	    1000);
}

static void
test_cancel(void **state)
{
	struct fixture *f = *state;
	int i;

	struct timeval t0, now;

	for (i = 0; i < 4; i++)
		start(f, i, f->port, "/hang", 0);
	gettimeofday(&t0, NULL);
	while (f->nhung < 4) {
		assert_true(event_base_loop(f->base, EVLOOP_ONCE) >= 0);
		gettimeofday(&now, NULL);
		assert_true(now.tv_sec - t0.tv_sec < 10);
	}
	http_multi_cancel(f->hm);
	assert_int_equal(http_multi_count(f->hm), 0);
	assert_int_equal(f->ndone, 0);
	/* Usable again after a cancel. */
	start(f, 0, f->port, "/ok", 0);
	run_until(f, 1);
	assert_int_equal(f->status[0], 200);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_many_and_reuse, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_cache_holds_max_in_flight,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cache_grows_with_sends, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_timeout_ambiguous, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_reset_and_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_classify, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tls_failure_transient, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_gate, setup, teardown),
	    cmocka_unit_test(test_retry_after),
	    cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
