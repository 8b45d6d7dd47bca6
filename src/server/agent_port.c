/*
 * One struct agent per accepted connection, in one of three states:
 *   AGENT_HELLO  waiting for HELLO (nothing known about the peer);
 *   AGENT_AUTH   CHALLENGE sent, waiting for AUTH;
 *   AGENT_READY  authenticated and bound to a provider.
 * agent_set_state() makes every transition; agent_drop() is the one way
 * out, and unbinds the provider (which requeues its messages) first.
 */
#include "server/agent_port.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/dispatcher.h"
#include "dispatch/registry.h"
#include "link/link.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define HANDSHAKE_TIMEOUT_MS 5000
#define MAX_UNAUTHENTICATED 64

enum agent_state {
	AGENT_HELLO = 0, /* waiting for HELLO */
	AGENT_AUTH = 1,  /* CHALLENGE sent, waiting for AUTH */
	AGENT_READY = 2, /* bound to a provider */
};

static const char *const agent_state_names[] = {"hello", "auth", "ready"};

struct agent {
	struct agent_port *ap;
	struct link_conn *conn;
	int state;
	struct link_hello hello;
	uint8_t nonce[LINK_NONCE_LEN];
	struct provider *p;
	struct event *timer;
	char peer[64];
	struct agent *prev, *next;
};

struct agent_port {
	struct event_base *base;
	const struct config *cfg;
	void *secret;
	size_t secret_len;
	struct registry *reg;
	struct dispatcher *d;
	struct evconnlistener *lev;
	int port;
	struct agent *agents;
	unsigned unauthenticated;
};

static void
agent_set_state(struct agent *a, int state)
{
	log_debug("- agentport peer=%s name=%s %s -> %s", a->peer,
		  a->hello.name[0] ? a->hello.name : "-",
		  agent_state_names[a->state], agent_state_names[state]);
	if (a->state != AGENT_READY && state == AGENT_READY)
		a->ap->unauthenticated--;
	a->state = state;
}

/*
 * The one way out.  With code, an ERROR frame goes first and the link is
 * flushed and closed by link_conn_close; without, it is freed at once.
 */
static void
agent_drop(struct agent *a, const char *code, const char *message)
{
	struct agent_port *ap = a->ap;

	if (a->state == AGENT_READY && a->p != NULL) {
		a->p->conn = NULL;
		dispatcher_provider_unlinked(ap->d, a->p,
					     message ? message : "link closed");
	} else {
		ap->unauthenticated--;
	}
	if (a->conn != NULL) {
		if (code != NULL)
			link_conn_close(a->conn, code, message);
		else
			link_conn_free(a->conn);
	}
	if (a->prev != NULL)
		a->prev->next = a->next;
	else
		ap->agents = a->next;
	if (a->next != NULL)
		a->next->prev = a->prev;
	event_free(a->timer);
	free(a);
}

static void
reject(struct agent *a, const char *code, const char *message)
{
	log_warnx("- agentport rejected peer=%s name=%s code=%s: %s", a->peer,
		  a->hello.name[0] ? a->hello.name : "-", code, message);
	agent_drop(a, code, message);
}

static void
on_hello(struct agent *a, const uint8_t *p, size_t n)
{
	struct link_challenge ch;
	int rc;

	rc = link_decode_hello(p, n, &a->hello);
	if (rc == LINK_E_VERSION ||
	    (rc == 0 && a->hello.version != LINK_VERSION)) {
		reject(a, "version", "unsupported protocol version");
		return;
	}
	if (rc != 0) {
		reject(a, "protocol_error", link_strerror(rc));
		return;
	}
	if (random_bytes(a->nonce, sizeof(a->nonce)) != 0) {
		reject(a, "internal", "no randomness");
		return;
	}
	memset(&ch, 0, sizeof(ch));
	ch.version = LINK_VERSION;
	memcpy(ch.nonce, a->nonce, sizeof(ch.nonce));
	if (link_encode_challenge(link_conn_output(a->conn), &ch) != 0) {
		reject(a, "internal", "cannot encode challenge");
		return;
	}
	agent_set_state(a, AGENT_AUTH);
}

static void
on_auth(struct agent *a, const uint8_t *p, size_t n)
{
	struct agent_port *ap = a->ap;
	struct link_auth auth;
	struct link_welcome w;
	uint8_t want[LINK_MAC_LEN];
	struct provider *pr;
	int rc;

	rc = link_decode_auth(p, n, &auth);
	if (rc != 0) {
		reject(a, "protocol_error", link_strerror(rc));
		return;
	}
	link_mac_agent(ap->secret, ap->secret_len, a->nonce, a->hello.nonce,
		       a->hello.name, want);
	if (!link_mac_equal(want, auth.mac)) {
		reject(a, "auth_failed", "wrong secret");
		return;
	}
	pr = registry_find(ap->reg, a->hello.name);
	if (pr != NULL && pr->conn != NULL) {
		reject(a, "name_in_use", "an agent of that name is linked");
		return;
	}
	if (pr != NULL && strcmp(pr->type, a->hello.type) != 0) {
		reject(a, "type_mismatch",
		       "the server's file gives this provider another type");
		return;
	}
	if (pr == NULL) {
		pr = registry_add(ap->reg, a->hello.name, a->hello.type,
				  a->hello.weight, a->hello.priority,
				  a->hello.max_in_flight);
		log_info("- registry registered provider=%s type=%s "
			 "dynamic=yes",
			 pr->name, pr->type);
	}
	memset(&w, 0, sizeof(w));
	link_mac_server(ap->secret, ap->secret_len, a->hello.nonce, a->nonce,
			a->hello.name, w.mac);
	w.heartbeat_interval_ms = (uint32_t)ap->cfg->heartbeat_interval_ms;
	/* The agent sizes its JOB frames by our limit, not its file's. */
	w.max_message_bytes = (uint64_t)ap->cfg->max_message_bytes;
	if (link_encode_welcome(link_conn_output(a->conn), &w) != 0) {
		reject(a, "internal", "cannot encode welcome");
		return;
	}
	evtimer_del(a->timer);
	a->p = pr;
	pr->conn = a->conn;
	pr->agent_pid = a->hello.pid;
	agent_set_state(a, AGENT_READY);
	dispatcher_provider_linked(ap->d, pr);
}

static void
on_ready(struct agent *a, int type, const uint8_t *p, size_t n)
{
	struct link_heartbeat hb;
	struct link_result res;
	struct link_error le;
	char buf[LINK_MSG_MAX + 1];
	int rc;

	switch (type) {
	case LINK_HEARTBEAT:
		rc = link_decode_heartbeat(p, n, &hb);
		if (rc != 0)
			break;
		dispatcher_heartbeat(a->ap->d, a->p, hb.health, hb.in_flight);
		return;
	case LINK_RESULT:
		rc = link_decode_result(p, n, &res);
		if (rc != 0)
			break;
		if (res.outcome != OUTCOME_DELIVERED &&
		    res.outcome != OUTCOME_TRANSIENT &&
		    res.outcome != OUTCOME_PERMANENT) {
			rc = LINK_E_FIELD;
			break;
		}
		dispatcher_result(a->ap->d, a->p, res.job_id, res.message_id,
				  res.outcome, res.provider_message_id,
				  res.detail);
		return;
	case LINK_ERROR:
		if (link_decode_error(p, n, &le) == 0)
			log_warnx("- agentport agent_error provider=%s code=%s "
				  "message=\"%s\"",
				  a->p->name, le.code,
				  log_sanitize(le.message, strlen(le.message),
					       buf, sizeof(buf)));
		agent_drop(a, NULL, "agent closed the link");
		return;
	default:
		rc = LINK_E_STATE;
		break;
	}
	reject(a, "protocol_error", link_strerror(rc));
}

static void
on_frame(struct link_conn *c, int type, const uint8_t *p, size_t n, void *arg)
{
	struct agent *a = arg;

	switch (a->state) {
	case AGENT_HELLO:
		if (type != LINK_HELLO)
			reject(a, "protocol_error", "expected HELLO");
		else
			on_hello(a, p, n);
		break;
	case AGENT_AUTH:
		if (type != LINK_AUTH)
			reject(a, "protocol_error", "expected AUTH");
		else
			on_auth(a, p, n);
		break;
	default:
		on_ready(a, type, p, n);
		break;
	}
}

static void
on_close(struct link_conn *c, int err, void *arg)
{
	struct agent *a = arg;
	char why[128];

	if (err == 0)
		snprintf(why, sizeof(why), "link closed by agent");
	else
		snprintf(why, sizeof(why), "link lost: %s",
			 err < 0 && err >= LINK_E_STATE ? link_strerror(err)
							: strerror(-err));
	if (a->state != AGENT_READY && err != 0)
		log_warnx("- agentport peer=%s dropped during handshake: %s",
			  a->peer, why);
	agent_drop(a, NULL, why);
}

static void
handshake_timeout(evutil_socket_t fd, short what, void *arg)
{
	reject(arg, "timeout", "handshake too slow");
}

static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
	  int salen, void *arg)
{
	struct agent_port *ap = arg;
	struct bufferevent *bev;
	struct agent *a;
	struct timeval tv = {HANDSHAKE_TIMEOUT_MS / 1000,
			     (HANDSHAKE_TIMEOUT_MS % 1000) * 1000};
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
	}
	if (ap->unauthenticated >= MAX_UNAUTHENTICATED) {
		log_warnx("- agentport too many handshakes, refusing %s:%d",
			  host, port);
		evutil_closesocket(fd);
		return;
	}
	bev = bufferevent_socket_new(ap->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		evutil_closesocket(fd);
		return;
	}
	a = xcalloc(1, sizeof(*a));
	a->ap = ap;
	snprintf(a->peer, sizeof(a->peer), "%s:%d", host, port);
	/* Without its deadline a handshake could hold a slot for ever:
	 * refuse the connection rather than run it untimed. */
	a->timer = evtimer_new(ap->base, handshake_timeout, a);
	if (a->timer == NULL || evtimer_add(a->timer, &tv) != 0) {
		log_warnx("- agentport refused peer=%s reason=\"no timer\"",
			  a->peer);
		if (a->timer != NULL)
			event_free(a->timer);
		bufferevent_free(bev);
		free(a);
		return;
	}
	a->conn = link_conn_new(bev, LINK_CTRL_MAX, on_frame, on_close, a);
	a->next = ap->agents;
	if (ap->agents != NULL)
		ap->agents->prev = a;
	ap->agents = a;
	ap->unauthenticated++;
	log_debug("- agentport connection from %s", a->peer);
}

static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();

	/* Out of descriptors and the like: pause rather than spin. */
	log_warnx("- agentport accept: %s", evutil_socket_error_to_string(e));
}

struct agent_port *
agent_port_new(struct event_base *base, const struct config *cfg,
	       const void *secret, size_t secret_len, struct registry *reg,
	       struct dispatcher *d, char *err, size_t errlen)
{
	struct agent_port *ap = xcalloc(1, sizeof(*ap));
	struct sockaddr_storage ss;
	int sslen = sizeof(ss);
	socklen_t bl = sizeof(ss);

	ap->base = base;
	ap->cfg = cfg;
	ap->secret = xmalloc(secret_len);
	memcpy(ap->secret, secret, secret_len);
	ap->secret_len = secret_len;
	ap->reg = reg;
	ap->d = d;
	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(cfg->agent_listen,
				       (struct sockaddr *)&ss, &sslen) != 0) {
		snprintf(err, errlen, "agent_listen %s: not host:port",
			 cfg->agent_listen);
		goto fail;
	}
	ap->lev = evconnlistener_new_bind(
	    base, accept_cb, ap,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    128, (struct sockaddr *)&ss, sslen);
	if (ap->lev == NULL) {
		snprintf(err, errlen, "agent_listen %s: %s", cfg->agent_listen,
			 strerror(errno));
		goto fail;
	}
	evconnlistener_set_error_cb(ap->lev, accept_error_cb);
	if (getsockname(evconnlistener_get_fd(ap->lev), (struct sockaddr *)&ss,
			&bl) == 0)
		ap->port = ntohs(ss.ss_family == AF_INET6
				     ? ((struct sockaddr_in6 *)&ss)->sin6_port
				     : ((struct sockaddr_in *)&ss)->sin_port);
	return ap;
fail:
	explicit_bzero(ap->secret, ap->secret_len);
	free(ap->secret);
	free(ap);
	return NULL;
}

int
agent_port_port(const struct agent_port *ap)
{
	return ap->port;
}

void
agent_port_stop_listening(struct agent_port *ap)
{
	if (ap->lev != NULL) {
		evconnlistener_free(ap->lev);
		ap->lev = NULL;
	}
}

void
agent_port_free(struct agent_port *ap)
{
	if (ap == NULL)
		return;
	agent_port_stop_listening(ap);
	while (ap->agents != NULL)
		agent_drop(ap->agents, NULL, "server stopping");
	explicit_bzero(ap->secret, ap->secret_len);
	free(ap->secret);
	free(ap);
}
