/*
 * What the SMTP intake's files share (smtp_server.c: listeners, accept,
 * connection counts; smtp_session.c: the per-session state machine).
 * Private to src/intake/smtp_*.c.
 */
#ifndef SHIVNERI_SMTP_INT_H
#define SHIVNERI_SMTP_INT_H

#include "common/log.h"
#include "intake/smtp_session.h"

#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#define SMTP_CLIENT_BUCKETS 256
#define SMTP_LISTENERS_MAX 4

struct smtp_session;

/* Sessions of one client address (IPv4, or an IPv6 /64). */
struct smtp_client {
	uint8_t key[16];
	unsigned count;
	struct smtp_client *next;
};

struct smtp_listener {
	struct smtp_server *srv;
	struct evconnlistener *lis;
	bool implicit_tls;
	bool loopback; /* bound to a loopback address */
	int port;
};

struct smtp_server {
	struct event_base *base;
	struct submit *sub;
	struct smtp_options opt;
	size_t size_advertised; /* EHLO's SIZE: what a client may send */
	char hostname[256];
	struct cidr_list *trusted;
	struct smtp_tls *tls;
	struct smtp_users *users;
	struct smtp_listener lis[SMTP_LISTENERS_MAX];
	size_t nlis;
	struct event *retry; /* accept paused for want of descriptors */
	int retry_ms;
	uint64_t refused;
	LIST_HEAD(, smtp_session) sessions;
	size_t nsessions;
	struct smtp_client *clients[SMTP_CLIENT_BUCKETS];
	unsigned pending;
	bool draining;
	struct log_rl conn_rl; /* connection refusals */
	struct log_rl bad_rl;  /* what a client did wrong */
};

/*
 * A new session on fd (accepted from l); counted in cl, which it releases
 * when it ends.  Greets, or refuses with a 421 and closes.
 */
void smtp__session_start(struct smtp_listener *l, evutil_socket_t fd,
			 const struct sockaddr *sa, struct smtp_client *cl);
/* The server is stopping: idle sessions say 421 and close. */
void smtp__sessions_drain(struct smtp_server *s);
/* Frees every session at once (the server is going away). */
void smtp__sessions_free(struct smtp_server *s);
/* One session of cl ended. */
void smtp__client_put(struct smtp_server *s, struct smtp_client *cl);

#endif
