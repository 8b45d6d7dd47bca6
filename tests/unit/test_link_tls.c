/*
 * The agent link's TLS (link_tls.h): the PSK is the documented HMAC, the
 * modes decide plaintext as docs/agent-protocol.md's table says, the
 * first byte tells TLS from a frame, and a TLS pair over a socketpair
 * connects with one secret and fails with two, then carries frames both
 * ways.  Every loop runs under a deadline (event_base_loopexit).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "link/link.h"
#include "common/util.h"
#include "link/link_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void
test_psk_known_answer(void **state)
{
	/* python3: hmac.new(b"key", b"shivneri-link-psk-v1", sha256) */
	static const char want[] = "6bf3b758348bcfcaac95daceff42014823b2e597"
				   "9e285655c03e23ef4fede2e8";
	uint8_t psk[LINK_TLS_PSK_LEN];
	char hex[2 * LINK_TLS_PSK_LEN + 1];
	size_t i;

	link_tls_psk("key", 3, psk);
	for (i = 0; i < sizeof(psk); i++)
		snprintf(hex + 2 * i, 3, "%02x", psk[i]);
	assert_string_equal(hex, want);
}

static void
test_modes(void **state)
{
	assert_int_equal(link_tls_mode_parse("auto"), LINK_TLS_AUTO);
	assert_int_equal(link_tls_mode_parse("required"), LINK_TLS_REQUIRED);
	assert_int_equal(link_tls_mode_parse("off"), LINK_TLS_OFF);
	assert_int_equal(link_tls_mode_parse("yes"), -1);
	assert_int_equal(link_tls_mode_parse(NULL), -1);
	assert_true(link_tls_plain_allowed(LINK_TLS_AUTO, true));
	assert_false(link_tls_plain_allowed(LINK_TLS_AUTO, false));
	assert_false(link_tls_plain_allowed(LINK_TLS_REQUIRED, true));
	assert_false(link_tls_plain_allowed(LINK_TLS_REQUIRED, false));
	assert_true(link_tls_plain_allowed(LINK_TLS_OFF, false));
}

static bool
loopback4(const char *ip)
{
	struct sockaddr_in sa;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
	return sockaddr_loopback((const struct sockaddr *)&sa);
}

static bool
loopback6(const char *ip)
{
	struct sockaddr_in6 sa;

	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, ip, &sa.sin6_addr), 1);
	return sockaddr_loopback((const struct sockaddr *)&sa);
}

static void
test_loopback(void **state)
{
	assert_true(loopback4("127.0.0.1"));
	assert_true(loopback4("127.9.8.7"));
	assert_false(loopback4("10.0.0.1"));
	assert_false(loopback4("128.0.0.1"));
	assert_false(loopback4("0.0.0.0"));
	assert_true(loopback6("::1"));
	assert_true(loopback6("::ffff:127.0.0.2"));
	assert_false(loopback6("::ffff:10.0.0.1"));
	assert_false(loopback6("::2"));
	assert_false(loopback6("fe80::1"));
}

static void
test_sniff(void **state)
{
	int sv[2];
	uint8_t b;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(link_tls_sniff(sv[0]), -EAGAIN);
	b = 0x16;
	assert_int_equal(write(sv[1], &b, 1), 1);
	assert_int_equal(link_tls_sniff(sv[0]), 1);
	/* Peeked, not taken: the same byte again. */
	assert_int_equal(link_tls_sniff(sv[0]), 1);
	assert_int_equal(read(sv[0], &b, 1), 1);
	b = 0x00;
	assert_int_equal(write(sv[1], &b, 1), 1);
	assert_int_equal(link_tls_sniff(sv[0]), 0);
	assert_int_equal(read(sv[0], &b, 1), 1);
	close(sv[1]);
	assert_int_equal(link_tls_sniff(sv[0]), -ECONNRESET);
	close(sv[0]);
}

/* One side of a TLS pair: what its bufferevent said and read. */
struct side {
	struct bufferevent *bev; /* the server's, once link_accept hands it */
	int connected, errors, accept_err;
	bool tls;
	char got[64];
	size_t ngot;
};

static void
side_event(struct bufferevent *bev, short what, void *arg)
{
	struct side *s = arg;

	if (what & BEV_EVENT_CONNECTED)
		s->connected++;
	else
		s->errors++;
}

static void
side_read(struct bufferevent *bev, void *arg)
{
	struct side *s = arg;
	size_t n = bufferevent_read(bev, s->got + s->ngot,
				    sizeof(s->got) - 1 - s->ngot);

	s->ngot += n;
	s->got[s->ngot] = '\0';
}

static void
side_accepted(struct bufferevent *bev, bool tls, int err, const char *why,
	      void *arg)
{
	struct side *s = arg;

	s->accept_err = err;
	s->tls = tls;
	if (err != 0) {
		s->errors++;
		return;
	}
	s->connected++;
	s->bev = bev;
	bufferevent_setcb(bev, side_read, NULL, side_event, s);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	/* Bytes that came with the handshake's end are read at once. */
	side_read(bev, s);
}

/*
 * A client keyed with csecret against a server keyed with ssecret over a
 * socketpair, through link_tls_connect and link_accept; the client
 * writes "ping" at once (it goes after the handshake).  Runs the loop for
 * at most 2 s.
 */
static void
pair_run(const char *csecret, const char *ssecret, struct side *c,
	 struct side *s)
{
	struct event_base *base = event_base_new();
	struct link_tls *ct, *st;
	struct bufferevent *cb;
	struct link_accept *la;
	struct timeval tv = {2, 0};
	int sv[2];

	assert_non_null(base);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(evutil_make_socket_nonblocking(sv[0]), 0);
	assert_int_equal(evutil_make_socket_nonblocking(sv[1]), 0);
	assert_int_equal(link_tls_new(false, csecret, strlen(csecret), &ct), 0);
	assert_int_equal(link_tls_new(true, ssecret, strlen(ssecret), &st), 0);
	memset(c, 0, sizeof(*c));
	memset(s, 0, sizeof(*s));
	cb = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(cb);
	cb = link_tls_connect(ct, base, cb);
	assert_non_null(cb);
	la = link_accept_new(base, sv[1], st, 4096, side_accepted, s);
	assert_non_null(la);
	bufferevent_setcb(cb, side_read, NULL, side_event, c);
	bufferevent_enable(cb, EV_READ | EV_WRITE);
	assert_int_equal(bufferevent_write(cb, "ping", 4), 0);
	assert_int_equal(event_base_loopexit(base, &tv), 0);
	/* The server answers once it has the ping. */
	while (event_base_loop(base, EVLOOP_ONCE) == 0 && s->errors == 0 &&
	       c->errors == 0 && c->ngot == 0) {
		if (s->ngot == 4 && strcmp(s->got, "ping") == 0 &&
		    evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
			assert_int_equal(bufferevent_write(s->bev, "pong", 4),
					 0);
		if (event_base_got_exit(base))
			break;
	}
	bufferevent_free(cb);
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	link_accept_free(la);
	link_tls_free(ct);
	link_tls_free(st);
	event_base_free(base);
}

static void
test_same_secret_connects(void **state)
{
	struct side c, s;

	pair_run("a secret of 16+ bytes", "a secret of 16+ bytes", &c, &s);
	assert_int_equal(c.connected, 1);
	assert_int_equal(s.connected, 1);
	assert_true(s.tls);
	assert_string_equal(s.got, "ping");
	assert_string_equal(c.got, "pong");
}

static void
test_wrong_secret_fails(void **state)
{
	struct side c, s;

	pair_run("a secret of 16+ bytes", "another secret, 16+ b", &c, &s);
	assert_int_equal(c.connected, 0);
	assert_int_equal(s.connected, 0);
	/* The binder made with another key does not verify. */
	assert_int_equal(s.accept_err, -EPROTO);
	assert_int_equal(s.ngot, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_psk_known_answer),
	    cmocka_unit_test(test_modes),
	    cmocka_unit_test(test_loopback),
	    cmocka_unit_test(test_sniff),
	    cmocka_unit_test(test_same_secret_connects),
	    cmocka_unit_test(test_wrong_secret_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
