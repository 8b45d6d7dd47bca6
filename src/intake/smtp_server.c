/*
 * The SMTP intake's listeners and the counts that bound who may connect
 * (smtp_session.h): every listener feeds one server, so the caps on
 * sessions in all and per client address hold across smtp_listen and
 * smtps_listen.  A client address is an IPv4 address (an IPv4-mapped IPv6
 * one counts as IPv4) or an IPv6 /64, the block one subscriber usually
 * holds, so a peer cannot dodge its cap by hopping addresses in its /64.
 *
 * A refused connection gets a one-line 421 written on the fresh socket
 * (its send buffer is empty) and is closed; one rate-limited log line
 * says so.  Out of descriptors, accept pauses and retries on a timer
 * (100 ms doubling to 1 s) rather than spinning, as the HTTP server does;
 * a pause is logged once per SMTP_RL_MS at most, however often a peer
 * churning connections ends one and starts the next.
 */
#include "intake/smtp_int.h"
#include "common/cidr.h"
#include "common/util.h"
#include "common/workq.h"
#include "intake/smtp_auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACCEPT_RETRY_MIN_MS 100
#define ACCEPT_RETRY_MAX_MS 1000
/* Room kept for what the server adds: Received, Date, Message-Id. */
#define SMTP_ADDED_MAX 1024

static void
peer_text(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *a = NULL;

	if (sa->sa_family == AF_INET)
		a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6)
		a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	if (a == NULL ||
	    inet_ntop(sa->sa_family, a, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
}

/* A short 421 on a socket we will not serve, then close. */
static void
refuse_fd(evutil_socket_t fd, const char *line)
{
	char junk[4096];
	int i;

	/* What the peer sent already is read first, or the close would
	 * reset the connection and the reply could be lost. */
	for (i = 0; i < 4; i++)
		if (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) <= 0)
			break;
	(void)send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);
	evutil_closesocket(fd);
}

static void
on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
	  int salen, void *arg)
{
	struct smtp_listener *l = arg;
	struct smtp_server *s = l->srv;
	struct client_count *cl;
	uint8_t key[16];
	char peer[INET6_ADDRSTRLEN];
	int one = 1;

	if (s->refused > 0) {
		if (s->pause_logged)
			log_info("- smtp accepting again refused=%llu",
				 (unsigned long long)s->refused);
		s->refused = 0;
		s->retry_ms = 0;
	}
	if (s->draining) {
		refuse_fd(fd, "421 4.3.2 Service shutting down\r\n");
		return;
	}
	if (s->nsessions >= (size_t)s->opt.max_connections) {
		peer_text(sa, peer, sizeof(peer));
		log_warnx_rl(
		    &s->rl[SMTP_RL_CONNS], SMTP_RL_MS,
		    "- smtp refused peer=%s reason=max_connections max=%d",
		    peer, s->opt.max_connections);
		refuse_fd(fd, "421 4.3.2 Too many connections, try again "
			      "later\r\n");
		return;
	}
	sockaddr_client_key(sa, key);
	cl = client_table_get(&s->clients, key);
	if (cl->count >= (unsigned)s->opt.max_client_connections) {
		peer_text(sa, peer, sizeof(peer));
		log_warnx_rl(&s->rl[SMTP_RL_CLIENT_CONNS], SMTP_RL_MS,
			     "- smtp refused peer=%s "
			     "reason=max_client_connections max=%d",
			     peer, s->opt.max_client_connections);
		refuse_fd(fd, "421 4.7.0 Too many connections from your "
			      "address\r\n");
		return;
	}
	cl->count++;
	/* Replies are small and each answers a command the client waits
	 * on: Nagle's algorithm against the client's delayed ACK would hold
	 * some of them for 40 ms. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	smtp__session_start(l, fd, sa, cl);
}

static void
accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_server *s = arg;
	size_t i;

	for (i = 0; i < s->nlis; i++)
		if (s->lis[i].lis != NULL &&
		    evconnlistener_enable(s->lis[i].lis) != 0)
			log_warnx("- smtp cannot resume accepting");
}

/*
 * A pause begins: logged, with its end, once per SMTP_RL_MS at most (as
 * the HTTP front and the agent port do).  A peer that frees a descriptor
 * and takes it again ends a pause and starts the next at every retry
 * (100 ms), two lines each time without this.
 */
static void
pause_log(struct smtp_server *s, int err)
{
	/* Written, not counted: its end may be said too. */
	s->pause_logged =
	    log_warnx_rl(&s->rl[SMTP_RL_ACCEPT], SMTP_RL_MS,
			 "- smtp accept failed, pausing error=\"%s\"",
			 evutil_socket_error_to_string(err));
}

/* accept(2) failed for want of a resource: pause every listener. */
static void
on_accept_error(struct evconnlistener *lis, void *arg)
{
	struct smtp_listener *l = arg;
	struct smtp_server *s = l->srv;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv;
	size_t i;

	if (s->refused++ == 0)
		pause_log(s, err);
	s->retry_ms = s->retry_ms == 0 ? ACCEPT_RETRY_MIN_MS : s->retry_ms * 2;
	if (s->retry_ms > ACCEPT_RETRY_MAX_MS)
		s->retry_ms = ACCEPT_RETRY_MAX_MS;
	tv.tv_sec = s->retry_ms / 1000;
	tv.tv_usec = (s->retry_ms % 1000) * 1000;
	for (i = 0; i < s->nlis; i++)
		if (s->lis[i].lis != NULL)
			(void)evconnlistener_disable(s->lis[i].lis);
	if (evtimer_add(s->retry, &tv) != 0)
		log_warnx("- smtp cannot pause accepting");
}

static int
bound_port(evutil_socket_t fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int
smtp_server_listen(struct smtp_server *s, const char *hostport,
		   bool implicit_tls, char *err, size_t errlen)
{
	struct smtp_listener *l;
	struct addrinfo hints, *ai = NULL;
	char service[16], *host = NULL;
	int port, rc;

	if (s->nlis == SMTP_LISTENERS_MAX ||
	    hostport_parse_any(hostport, &host, &port) != 0) {
		snprintf(err, errlen, "bad listen address %s", hostport);
		free(host);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(host, service, &hints, &ai);
	free(host);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", hostport,
			 gai_strerror(rc));
		return -1;
	}
	l = &s->lis[s->nlis];
	l->srv = s;
	l->implicit_tls = implicit_tls;
	l->loopback = sockaddr_loopback(ai->ai_addr);
	l->lis = evconnlistener_new_bind(
	    s->base, on_accept, l,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    128, ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(ai);
	if (l->lis == NULL) {
		snprintf(err, errlen, "cannot bind %s: %s", hostport,
			 strerror(errno));
		return -1;
	}
	evconnlistener_set_error_cb(l->lis, on_accept_error);
	l->port = bound_port(evconnlistener_get_fd(l->lis));
	s->nlis++;
	return 0;
}

static void
local_hostname(char *out, size_t sz)
{
	size_t i;

	if (gethostname(out, sz) != 0 || out[0] == '\0') {
		snprintf(out, sz, "localhost");
		return;
	}
	out[sz - 1] = '\0';
	/* It goes into replies and the Received header: visible ASCII. */
	for (i = 0; out[i] != '\0'; i++)
		if ((unsigned char)out[i] <= ' ' || (unsigned char)out[i] > '~')
			out[i] = '-';
}

struct smtp_server *
smtp_server_new(struct event_base *base, const struct smtp_options *o,
		struct submit *sub, struct cidr_list *trusted)
{
	struct smtp_server *s = xcalloc(1, sizeof(*s));
	size_t reserve;

	s->base = base;
	s->sub = sub;
	s->opt = *o;
	s->trusted = trusted;
	reserve = o->max_message_bytes / 2 < SMTP_ADDED_MAX
		      ? o->max_message_bytes / 2
		      : SMTP_ADDED_MAX;
	s->size_advertised = o->max_message_bytes - reserve;
	local_hostname(s->hostname, sizeof(s->hostname));
	LIST_INIT(&s->sessions);
	s->retry = evtimer_new(base, accept_retry, s);
	if (s->retry == NULL)
		fatalx("- smtp evtimer_new failed");
	return s;
}

void
smtp_server_set_tls(struct smtp_server *s, struct smtp_tls *t)
{
	s->tls = t;
}

void
smtp_server_set_users(struct smtp_server *s, struct smtp_users *u)
{
	smtp_users_free(s->users);
	s->users = u;
	/* One worker: checks are serialised, so guessing is slow too. */
	if (u != NULL && s->auth_wq == NULL) {
		s->auth_wq = workq_new(s->base, 1);
		if (s->auth_wq == NULL)
			fatalx("- smtp cannot start the AUTH worker");
		s->guard = smtp_guard_new();
	}
}

void
smtp_server_stop_accepting(struct smtp_server *s)
{
	size_t i;

	s->draining = true;
	for (i = 0; i < s->nlis; i++) {
		if (s->lis[i].lis != NULL)
			evconnlistener_free(s->lis[i].lis);
		s->lis[i].lis = NULL;
	}
	evtimer_del(s->retry);
	smtp__sessions_drain(s);
}

unsigned
smtp_server_pending(const struct smtp_server *s)
{
	return s->pending + s->in_data;
}

size_t
smtp_server_sessions(const struct smtp_server *s)
{
	return s->nsessions;
}

int
smtp_server_port(const struct smtp_server *s, bool implicit_tls)
{
	size_t i;

	for (i = 0; i < s->nlis; i++)
		if (s->lis[i].implicit_tls == implicit_tls)
			return s->lis[i].port;
	return 0;
}

void
smtp_server_free(struct smtp_server *s)
{
	size_t i;

	if (s == NULL)
		return;
	if (s->pending > 0)
		fatalx("- smtp server freed with %u submissions out",
		       s->pending);
	for (i = 0; i < s->nlis; i++)
		if (s->lis[i].lis != NULL)
			evconnlistener_free(s->lis[i].lis);
	/* Checks still out answer their sessions first. */
	if (s->auth_wq != NULL)
		workq_free(s->auth_wq);
	smtp__sessions_free(s);
	if (s->retry != NULL)
		event_free(s->retry);
	smtp_users_free(s->users);
	smtp_guard_free(s->guard);
	cidr_list_free(s->trusted);
	free(s);
}
