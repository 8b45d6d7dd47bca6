/*
 * The loopback client and the loop-turning waits of the session fuzz
 * targets (session_lib.h).  Everything here aborts on failure: in a fuzz
 * run that is a finding, with the input that led to it.
 */
#include "session_lib.h"

#include "common/util.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

void
session_lib_tick_start(struct event_base *base)
{
	struct timeval tv = {0, 1000};
	struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);

	if (tick == NULL || event_add(tick, &tv) != 0)
		abort();
}

/* The client's loopback address now: 127.0.1.0 + client_n. */
static uint32_t client_n;

void
session_lib_next_client(void)
{
	client_n = (client_n + 1) % 0xfffe00u;
}

int
session_lib_client_open(int port)
{
	struct sockaddr_in sin = {0}, src = {0};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	if (fd < 0)
		abort();
	src.sin_family = AF_INET;
	src.sin_addr.s_addr = htonl(0x7f000100u + client_n);
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0)
		abort();
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 &&
	    errno != EINPROGRESS)
		abort();
	return fd;
}

size_t
session_lib_converse(struct event_base *base, int fd, const uint8_t *in,
		     size_t n, size_t chunk, char *out, size_t outsz)
{
	int64_t deadline = mono_ms() + SESSION_LIB_DEADLINE_MS;
	size_t off = 0, got = 0;
	bool shut = false;
	char sink[4096];
	ssize_t k;

	for (;;) {
		if (mono_ms() > deadline)
			abort(); /* the server never closed */
		event_base_loop(base, EVLOOP_ONCE);
		if (off < n) {
			k = send(fd, in + off,
				 n - off < chunk ? n - off : chunk,
				 MSG_NOSIGNAL);
			if (k > 0)
				off += (size_t)k;
			else if (errno == EPIPE || errno == ECONNRESET)
				off = n; /* closed on us: read what it said */
		} else if (!shut) {
			(void)shutdown(fd, SHUT_WR);
			shut = true;
		}
		k = recv(fd, sink, sizeof(sink), 0);
		if (k == 0 || (k < 0 && errno == ECONNRESET))
			return got;
		if (k > 0) {
			size_t take =
			    (size_t)k < outsz - got ? (size_t)k : outsz - got;
			memcpy(out + got, sink, take);
			got += take;
		}
	}
}

void
session_lib_wait_idle(struct event_base *base, bool (*busy)(const void *arg),
		      const void *arg)
{
	int64_t deadline = mono_ms() + SESSION_LIB_DEADLINE_MS;

	while (busy(arg)) {
		if (mono_ms() > deadline)
			abort();
		event_base_loop(base, EVLOOP_ONCE);
	}
}
