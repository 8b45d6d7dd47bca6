/*
 * One struct agent per accepted connection, in one of three states:
 *   AGENT_HELLO  waiting for HELLO (nothing known about the peer);
 *   AGENT_AUTH   CHALLENGE sent, waiting for AUTH;
 *   AGENT_READY  authenticated and bound to a provider.
 * agent_set_state() makes every transition; agent_drop() is the one way
 * out, and unbinds the provider (which requeues its messages) first.
 *
 * The port is open to anyone who can reach it, so what an unauthenticated
 * peer may hold is bounded and can always be taken back: at most
 * MAX_UNAUTHENTICATED handshakes, MAX_UNAUTHENTICATED_PER_ADDR of them
 * from one address, each with a deadline counted from accept (bytes do not
 * extend it) and a frame cap of HANDSHAKE_FRAME_MAX.  When a limit is
 * reached the newcomer is not refused: the oldest handshake (of that
 * address, or of all) is evicted, a silent one first, then one that has
 * not sent a whole HELLO; at the global limit, from the address that holds
 * the most.  An address is counted as the SMTP intake counts it
 * (sockaddr_client_key: an IPv6 peer by its /64, the least an attacker
 * is given).  After an eviction the port accepts nothing for
 * EVICT_PACE_MS: newcomers wait in the kernel's backlog, in order, and an
 * agent's HELLO reaches its socket there, so it is not silent when it is
 * accepted.  Without the pause a flood that reconnects at once churned
 * thousands of connections a second (each a TIME_WAIT on this host), and a
 * slow agent was evicted before its HELLO came.  Whatever the limits, the
 * port accepts at most ACCEPT_BURST connections at once and ACCEPT_RATE a
 * second, the rest waiting in the backlog the same way: a handshake costs
 * CPU (a TLS one an ECDHE), and peers without the secret must not be able
 * to spend it at will.  An accept that fails (out of descriptors) stops the
 * listener and retries on a timer instead of spinning.
 * Every warning an outsider can repeat is rate-limited (one line per LOG_RL_MS
 * with the count of the rest).
 *
 * Before HELLO the first byte chooses the transport (link_tls.h): a TLS
 * ClientHello goes under an OpenSSL bufferevent, whose handshake runs
 * within the same deadline and slot; plaintext that agent_tls does not
 * allow from this peer is refused at its first frame (ERROR tls_required).
 *
 * An authenticated agent is trusted with the secret but not with its
 * numbers: a name the file does not know is registered only while fewer
 * than max_dynamic_providers such providers exist, with max_in_flight at
 * most DYNAMIC_MAX_IN_FLIGHT; its pid is kept as reported (shown, never
 * acted on); and a link that beats far faster than heartbeat_interval_ms
 * (beyond a burst of HEARTBEAT_BURST) is dropped, its name refused for
 * FLOOD_PENALTY_INTERVALS heartbeat intervals.
 */
#include "server/agent_port.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/dispatcher.h"
#include "dispatch/registry.h"
#include "link/link.h"
#include "link/link_tls.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

/* From accept to WELCOME: two round trips and one HMAC need far less. */
#define HANDSHAKE_TIMEOUT_MS 3000
/* HELLO and AUTH are a few hundred bytes; frames grow after WELCOME. */
#define HANDSHAKE_FRAME_MAX 4096
#define MAX_UNAUTHENTICATED 64
#define MAX_UNAUTHENTICATED_PER_ADDR 16
/* After an eviction the listener rests this long: at most 100 a second. */
#define EVICT_PACE_MS 10
/* Connections accepted: ACCEPT_BURST at once, then ACCEPT_RATE a second. */
#define ACCEPT_RATE 100
#define ACCEPT_BURST 64
/* A failed accept pauses the listener this long. */
#define ACCEPT_RETRY_MS 100
/* One line per interval for each warning an outsider can repeat. */
#define LOG_RL_MS 10000
/* Heartbeats allowed beyond one per interval (see heartbeat_flood()). */
#define HEARTBEAT_BURST 10
#define HEARTBEAT_OWED_MAX 100
/* A name dropped for a flood is refused for this many intervals (at
 * least FLOOD_PENALTY_MIN_MS): its reconnect loop would otherwise cost a
 * handshake and two state changes each turn. */
#define FLOOD_PENALTY_INTERVALS 10
#define FLOOD_PENALTY_MIN_MS 1000
/* The most an agent the file does not name may hold at once. */
#define DYNAMIC_MAX_IN_FLIGHT 32

enum agent_state {
	AGENT_HELLO = 0, /* waiting for HELLO */
	AGENT_AUTH = 1,  /* CHALLENGE sent, waiting for AUTH */
	AGENT_READY = 2, /* bound to a provider */
};

/* The rate-limited warnings, one limiter each so one flood hides no other. */
enum ap_rl {
	RL_AUTH,      /* wrong MAC */
	RL_TIMEOUT,   /* handshake deadline */
	RL_HANDSHAKE, /* other refused handshakes */
	RL_DROPPED,   /* connection lost during the handshake */
	RL_EVICT,     /* a handshake evicted for a newcomer */
	RL_ACCEPT,    /* accept failed: paused */
	RL_DYNAMIC,   /* max_dynamic_providers reached */
	RL_FLOOD,     /* heartbeat flood */
	RL_LINK,      /* an authenticated link's errors */
	RL_TLS,       /* TLS refused or failed */
	RL_PACE,      /* accepts over ACCEPT_RATE */
	RL_COUNT
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
	struct link_accept *acc;     /* until the transport is up (no conn) */
	bool tls;                    /* the link runs over TLS */
	bool loopback;               /* the peer's address is loopback */
	bool refuse_plain;           /* plaintext not allowed: at its frame */
	char host[INET6_ADDRSTRLEN]; /* the peer's address, for the log */
	uint8_t key[16];             /* what its limit counts (util.h) */
	char peer[64];               /* host:port, for the log */
	double hb_tokens;            /* heartbeats allowed now */
	int64_t hb_mono_ms;          /* when hb_tokens was counted; 0 never */
	LIST_ENTRY(agent) entry;     /* agent_port.agents */
	TAILQ_ENTRY(agent) hentry;   /* agent_port.handshakes, until READY */
};

struct agent_port {
	struct event_base *base;
	const struct config *cfg;
	void *secret;
	size_t secret_len;
	struct registry *reg;
	struct dispatcher *d;
	struct link_tls *tls; /* NULL: agent_tls = off */
	int tls_mode;         /* enum link_tls_mode */
	struct evconnlistener *lev;
	struct event *accept_timer; /* re-enables a paused listener */
	bool accept_paused;         /* an episode of failed accepts */
	bool accept_paused_said;    /* its line was written, not counted */
	double accept_tokens;       /* accepts allowed now (ACCEPT_RATE) */
	int64_t accept_mono_ms;     /* when accept_tokens was counted */
	int port;
	LIST_HEAD(, agent) agents;      /* every connection */
	TAILQ_HEAD(, agent) handshakes; /* in order of accept */
	unsigned unauthenticated;       /* on handshakes */
	struct log_rl rl[RL_COUNT];
};

/* Leaves the handshake list (and its count): authenticated or gone. */
static void
unauth_remove(struct agent_port *ap, struct agent *a)
{
	TAILQ_REMOVE(&ap->handshakes, a, hentry);
	ap->unauthenticated--;
}

static void
unauth_append(struct agent_port *ap, struct agent *a)
{
	TAILQ_INSERT_TAIL(&ap->handshakes, a, hentry);
	ap->unauthenticated++;
}

static void
agent_set_state(struct agent *a, int state)
{
	log_debug("- agentport state peer=%s name=%s from=%s to=%s", a->peer,
		  a->hello.name[0] ? a->hello.name : "-",
		  agent_state_names[a->state], agent_state_names[state]);
	if (a->state != AGENT_READY && state == AGENT_READY)
		unauth_remove(a->ap, a);
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

	/* On the handshake list exactly until READY (agent_set_state). */
	if (a->state != AGENT_READY) {
		unauth_remove(ap, a);
	} else if (a->p != NULL) {
		a->p->conn = NULL;
		dispatcher_provider_unlinked(ap->d, a->p,
					     message ? message : "link closed");
	}
	if (a->conn != NULL) {
		if (code != NULL)
			link_conn_close(a->conn, code, message);
		else
			link_conn_free(a->conn);
	}
	link_accept_free(a->acc);
	LIST_REMOVE(a, entry);
	event_free(a->timer);
	free(a);
}

/* A refusal an outsider can repeat: one line per LOG_RL_MS of its kind. */
static void
reject(struct agent *a, int rl, const char *code, const char *message)
{
	log_warnx_rl(&a->ap->rl[rl], LOG_RL_MS,
		     "- agentport rejected peer=%s name=%s code=%s "
		     "reason=\"%s\"",
		     a->peer, a->hello.name[0] ? a->hello.name : "-", code,
		     message);
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
		reject(a, RL_HANDSHAKE, "version",
		       "unsupported protocol version");
		return;
	}
	if (rc != 0) {
		/* The name is not checked: the log must not show it. */
		a->hello.name[0] = '\0';
		reject(a, RL_HANDSHAKE, "protocol_error", link_strerror(rc));
		return;
	}
	if (random_bytes(a->nonce, sizeof(a->nonce)) != 0) {
		reject(a, RL_HANDSHAKE, "internal", "no randomness");
		return;
	}
	memset(&ch, 0, sizeof(ch));
	ch.version = LINK_VERSION;
	ch.revision = LINK_REVISION;
	memcpy(ch.nonce, a->nonce, sizeof(ch.nonce));
	if (link_encode_challenge(link_conn_output(a->conn), &ch) != 0) {
		reject(a, RL_HANDSHAKE, "internal", "cannot encode challenge");
		return;
	}
	agent_set_state(a, AGENT_AUTH);
}

/*
 * A second agent claims pr's name.  While pr's agent beats, it keeps the
 * name (two live agents of one provider would split its jobs and state).
 * Once its link is silent (the heartbeat watchdog took pr down), the
 * newcomer takes over: that link is dropped and pr is free.  A frozen
 * agent, or one whose host went away without closing its socket, would
 * otherwise hold the name, and keep pr down, until the kernel gave up on
 * the connection, which without keepalive is never.  Its jobs were
 * requeued as lost when the watchdog fired, so nothing moves here; if it
 * wakes, its link is closed and its late results are not read.  True
 * when pr is free.
 */
static bool
take_over(struct agent *a, struct provider *pr)
{
	struct agent *old;

	if (!dispatcher_link_silent(pr))
		return false;
	LIST_FOREACH(old, &a->ap->agents, entry)
	{
		if (old != a && old->state == AGENT_READY && old->p == pr)
			break;
	}
	if (old == NULL)
		return false;
	log_warnx("- agentport replaced provider=%s peer=%s old_peer=%s "
		  "reason=\"link silent\"",
		  pr->name, a->peer, old->peer);
	agent_drop(old, "replaced",
		   "another agent of this name took over the silent link");
	return pr->conn == NULL;
}

/*
 * The provider an authenticated HELLO binds to: the file's, a dynamic one
 * seen before, or a new dynamic one while fewer than max_dynamic_providers
 * exist (its max_in_flight clamped).  NULL after a reject.
 */
static struct provider *
bind_provider(struct agent *a)
{
	struct agent_port *ap = a->ap;
	struct provider *pr = registry_find(ap->reg, a->hello.name);
	int mif = a->hello.max_in_flight;

	if (pr != NULL && pr->link_refused_until > mono_ms()) {
		reject(a, RL_FLOOD, "heartbeat_flood",
		       "dropped for a heartbeat flood: try again later");
		return NULL;
	}
	if (pr != NULL && strcmp(pr->type, a->hello.type) != 0) {
		reject(a, RL_HANDSHAKE, "type_mismatch",
		       "the server's file gives this provider another type");
		return NULL;
	}
	/* Last: only a newcomer that may have the name takes it over. */
	if (pr != NULL && pr->conn != NULL && !take_over(a, pr)) {
		reject(a, RL_HANDSHAKE, "name_in_use",
		       "an agent of that name is linked");
		return NULL;
	}
	if (pr != NULL)
		return pr;
	if (registry_dynamic_count(ap->reg) >=
	    (size_t)ap->cfg->max_dynamic_providers) {
		reject(a, RL_DYNAMIC, "too_many_providers",
		       "max_dynamic_providers reached: name the provider "
		       "in the server's file");
		return NULL;
	}
	/* The agent's claim sizes what we hold for it: bounded. */
	if (mif <= 0 || mif > DYNAMIC_MAX_IN_FLIGHT)
		mif = DYNAMIC_MAX_IN_FLIGHT;
	pr = registry_add(ap->reg, a->hello.name, a->hello.type,
			  a->hello.weight, a->hello.priority, mif);
	log_info("- registry registered provider=%s type=%s dynamic=yes "
		 "max_in_flight=%d claimed=%d",
		 pr->name, pr->type, pr->max_in_flight, a->hello.max_in_flight);
	return pr;
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
		reject(a, RL_HANDSHAKE, "protocol_error", link_strerror(rc));
		return;
	}
	link_mac_agent(ap->secret, ap->secret_len, a->nonce, a->hello.nonce,
		       a->hello.name, want);
	if (!link_mac_equal(want, auth.mac)) {
		reject(a, RL_AUTH, "auth_failed", "wrong secret");
		return;
	}
	pr = bind_provider(a);
	if (pr == NULL)
		return;
	memset(&w, 0, sizeof(w));
	link_mac_server(ap->secret, ap->secret_len, a->hello.nonce, a->nonce,
			a->hello.name, w.mac);
	w.heartbeat_interval_ms = (uint32_t)ap->cfg->heartbeat_interval_ms;
	/* The agent sizes its JOB frames by our limit, not its file's. */
	w.max_message_bytes = (uint64_t)ap->cfg->max_message_bytes;
	if (link_encode_welcome(link_conn_output(a->conn), &w) != 0) {
		reject(a, RL_HANDSHAKE, "internal", "cannot encode welcome");
		return;
	}
	evtimer_del(a->timer);
	link_conn_set_max_frame(a->conn, LINK_CTRL_MAX);
	a->p = pr;
	pr->conn = a->conn;
	/* Shown as the agent said it, never acted on (registry.h). */
	pr->agent_pid = a->hello.pid;
	pr->link_tls = a->tls;
	pr->agent_revision = a->hello.revision;
	/* Its size limit: the file's, or lower if the agent says so. */
	registry_set_announced(pr, a->hello.max_message_bytes);
	agent_set_state(a, AGENT_READY);
	log_info("- agentport linked provider=%s peer=%s tls=%s", pr->name,
		 a->peer, a->tls ? "yes" : "no");
	dispatcher_provider_linked(ap->d, pr);
}

/*
 * Heartbeats beyond one per heartbeat_interval_ms: a token bucket refilled
 * at that rate.  It holds HEARTBEAT_BURST more than the beats a quiet spell
 * can owe (heartbeat_timeout_ms worth, at most HEARTBEAT_OWED_MAX), so that
 * beats read late in one batch (our loop was busy) are no flood; a peer
 * beating faster for long is one, costs the loop (and intake) for nothing,
 * and loses its link.  True when a dropped the link.
 */
static bool
heartbeat_flood(struct agent *a)
{
	const struct config *cfg = a->ap->cfg;
	double owed = (double)cfg->heartbeat_timeout_ms /
		      cfg->heartbeat_interval_ms,
	       cap;
	int64_t now = mono_ms(), penalty;

	cap = HEARTBEAT_BURST +
	      (owed < HEARTBEAT_OWED_MAX ? owed : HEARTBEAT_OWED_MAX);
	if (a->hb_mono_ms == 0)
		a->hb_tokens = cap;
	else
		a->hb_tokens +=
		    (double)(now - a->hb_mono_ms) / cfg->heartbeat_interval_ms;
	if (a->hb_tokens > cap)
		a->hb_tokens = cap;
	a->hb_mono_ms = now;
	if (a->hb_tokens >= 1.0) {
		a->hb_tokens -= 1.0;
		return false;
	}
	log_warnx_rl(&a->ap->rl[RL_FLOOD], LOG_RL_MS,
		     "- agentport heartbeat_flood provider=%s peer=%s "
		     "interval_ms=%d",
		     a->p->name, a->peer, cfg->heartbeat_interval_ms);
	penalty = (int64_t)cfg->heartbeat_interval_ms * FLOOD_PENALTY_INTERVALS;
	a->p->link_refused_until =
	    now +
	    (penalty > FLOOD_PENALTY_MIN_MS ? penalty : FLOOD_PENALTY_MIN_MS);
	agent_drop(a, "heartbeat_flood",
		   "heartbeats far faster than heartbeat_interval_ms");
	return true;
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
		if (heartbeat_flood(a))
			return;
		dispatcher_heartbeat(a->ap->d, a->p, hb.health, hb.in_flight);
		return;
	case LINK_RESULT:
		rc = link_decode_result(p, n, &res);
		if (rc != 0)
			break;
		/* Only the dispatcher may say lost. */
		if (res.outcome == OUTCOME_LOST) {
			rc = LINK_E_FIELD;
			break;
		}
		dispatcher_result_after(
		    a->ap->d, a->p, res.job_id, res.message_id, res.outcome,
		    res.provider_message_id, res.detail, res.retry_after_ms);
		return;
	case LINK_ERROR:
		if (link_decode_error(p, n, &le) == 0)
			log_warnx_rl(&a->ap->rl[RL_LINK], LOG_RL_MS,
				     "- agentport agent_error provider=%s "
				     "code=%s message=\"%s\"",
				     a->p->name, le.code,
				     log_sanitize(le.message,
						  strlen(le.message), buf,
						  sizeof(buf)));
		agent_drop(a, NULL, "agent closed the link");
		return;
	default:
		rc = LINK_E_STATE;
		break;
	}
	reject(a, RL_LINK, "protocol_error", link_strerror(rc));
}

static void
on_frame(struct link_conn *c, int type, const uint8_t *p, size_t n, void *arg)
{
	struct agent *a = arg;

	/* Read first, so that the ERROR is not cut by a reset. */
	if (a->refuse_plain) {
		reject(a, RL_TLS, "tls_required",
		       "plaintext refused: this server wants TLS here "
		       "(agent_tls = required on the agent)");
		return;
	}
	switch (a->state) {
	case AGENT_HELLO:
		if (type != LINK_HELLO)
			reject(a, RL_HANDSHAKE, "protocol_error",
			       "expected HELLO");
		else
			on_hello(a, p, n);
		break;
	case AGENT_AUTH:
		if (type != LINK_AUTH)
			reject(a, RL_HANDSHAKE, "protocol_error",
			       "expected AUTH");
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
		log_warnx_rl(&a->ap->rl[RL_DROPPED], LOG_RL_MS,
			     "- agentport dropped peer=%s during=handshake "
			     "reason=\"%s\"",
			     a->peer, why);
	agent_drop(a, NULL, why);
}

static void
handshake_timeout(evutil_socket_t fd, short what, void *arg)
{
	reject(arg, RL_TIMEOUT, "timeout", "handshake too slow");
}

/*
 * True for a connection that has not sent a byte.  Once its transport is
 * chosen every peer has (its first frame, or a ClientHello); before,
 * bytes still in the socket count as sent.
 */
static bool
silent(const struct agent *a)
{
	return a->acc != NULL && link_accept_silent(a->acc);
}

static unsigned
handshakes_from(const struct agent_port *ap, const uint8_t *key)
{
	const struct agent *a;
	unsigned n = 0;

	TAILQ_FOREACH(a, &ap->handshakes, hentry)
	if (memcmp(a->key, key, sizeof(a->key)) == 0)
		n++;
	return n;
}

/*
 * The handshake to give up for a newcomer when key (NULL: any address)
 * holds too many: the oldest that has not sent a byte, else the oldest
 * that has not sent a whole HELLO (or is in its TLS handshake), else the
 * oldest.  Bytes still in the socket count as sent: an agent's HELLO that
 * came in the same loop turn as a burst of newer connections must not
 * lose its place to them, or a flood that reconnects at once could push
 * every agent out before its HELLO is read.
 */
static struct agent *
evict_candidate(struct agent_port *ap, const uint8_t *key)
{
	struct agent *a, *spoke = NULL, *oldest = NULL;

	TAILQ_FOREACH(a, &ap->handshakes, hentry)
	{
		if (key != NULL && memcmp(a->key, key, sizeof(a->key)) != 0)
			continue;
		if (oldest == NULL)
			oldest = a;
		if (a->state != AGENT_HELLO)
			continue;
		if (silent(a))
			return a;
		if (spoke == NULL)
			spoke = a;
	}
	return spoke != NULL ? spoke : oldest;
}

/*
 * The address to take a handshake from at the global limit: the one that
 * holds the most, so that a peer holding one is the last to lose it.
 * NULL when none holds more than one (then age and progress decide).
 */
static const uint8_t *
heaviest_key(const struct agent_port *ap)
{
	const struct agent *a;
	const uint8_t *best = NULL;
	unsigned n, most = 1;

	TAILQ_FOREACH(a, &ap->handshakes, hentry)
	{
		n = handshakes_from(ap, a->key);
		if (n > most) {
			most = n;
			best = a->key;
		}
	}
	return best;
}

/*
 * Makes room for one more handshake from key, by eviction if need be.
 * True when one was evicted: the caller paces the listener.
 */
static bool
make_room(struct agent_port *ap, const uint8_t *key, const char *newcomer)
{
	struct agent *victim = NULL;
	const char *why = NULL;

	if (handshakes_from(ap, key) >= MAX_UNAUTHENTICATED_PER_ADDR) {
		victim = evict_candidate(ap, key);
		why = "handshakes from this address";
	} else if (ap->unauthenticated >= MAX_UNAUTHENTICATED) {
		victim = evict_candidate(ap, heaviest_key(ap));
		why = "handshakes";
	}
	if (victim == NULL)
		return false;
	log_warnx_rl(&ap->rl[RL_EVICT], LOG_RL_MS,
		     "- agentport evicted peer=%s state=%s for=%s "
		     "reason=\"too many %s\"",
		     victim->peer, agent_state_names[victim->state], newcomer,
		     why);
	/* No ERROR frame: the descriptor is what the newcomer needs. */
	agent_drop(victim, NULL, NULL);
	return true;
}

/*
 * Takes the token of a connection just accepted; answers how long the
 * listener must rest before the next (0: it need not).
 */
static int
accept_token(struct agent_port *ap)
{
	int64_t now = mono_ms();

	ap->accept_tokens +=
	    (double)(now - ap->accept_mono_ms) * ACCEPT_RATE / 1000.0;
	if (ap->accept_tokens > ACCEPT_BURST)
		ap->accept_tokens = ACCEPT_BURST;
	ap->accept_mono_ms = now;
	ap->accept_tokens -= 1;
	if (ap->accept_tokens >= 1)
		return 0;
	return 1 + (int)((1 - ap->accept_tokens) * 1000.0 / ACCEPT_RATE);
}

/*
 * No accept for ms (see the top): newcomers wait in the backlog.  If the
 * listener cannot be paused it accepts on, as before; if it cannot be
 * woken it is not paused.
 */
static void
pause_accepts(struct agent_port *ap, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	if (evconnlistener_disable(ap->lev) != 0)
		return;
	if (evtimer_add(ap->accept_timer, &tv) != 0)
		(void)evconnlistener_enable(ap->lev);
}

static void
peer_address(const struct sockaddr *sa, char *host, size_t hostlen, int *port)
{
	const struct sockaddr_in *s4;
	const struct sockaddr_in6 *s6;

	*port = 0;
	if (sa->sa_family == AF_INET) {
		s4 = (const struct sockaddr_in *)(const void *)sa;
		if (inet_ntop(AF_INET, &s4->sin_addr, host,
			      (socklen_t)hostlen) == NULL)
			snprintf(host, hostlen, "?");
		*port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		s6 = (const struct sockaddr_in6 *)(const void *)sa;
		if (inet_ntop(AF_INET6, &s6->sin6_addr, host,
			      (socklen_t)hostlen) == NULL)
			snprintf(host, hostlen, "?");
		*port = ntohs(s6->sin6_port);
	} else {
		snprintf(host, hostlen, "?");
	}
}

/*
 * The transport is chosen (link_tls.h): the link takes the bufferevent,
 * and plaintext that agent_tls does not allow from this peer is refused
 * at its first frame.  A refused or failed TLS handshake is one
 * rate-limited line; a peer that left before a byte, none.
 */
static void
transport_cb(struct bufferevent *bev, bool tls, int err, const char *why,
	     void *arg)
{
	struct agent *a = arg;
	struct agent_port *ap = a->ap;

	link_accept_free(a->acc);
	a->acc = NULL;
	if (err == -EPROTONOSUPPORT)
		log_warnx_rl(&ap->rl[RL_TLS], LOG_RL_MS,
			     "- agentport rejected peer=%s code=tls_off "
			     "reason=\"TLS offered; agent_tls = off\"",
			     a->peer);
	else if (err == -EPROTO)
		log_warnx_rl(&ap->rl[RL_TLS], LOG_RL_MS,
			     "- agentport tls_failed peer=%s reason=\"%s\"",
			     a->peer, why);
	else if (err != 0 && err != -ECONNRESET)
		log_warnx_rl(&ap->rl[RL_DROPPED], LOG_RL_MS,
			     "- agentport dropped peer=%s during=handshake "
			     "reason=\"%s\"",
			     a->peer, why);
	if (err != 0) {
		agent_drop(a, NULL, NULL);
		return;
	}
	a->tls = tls;
	a->refuse_plain =
	    !tls && !link_tls_plain_allowed(ap->tls_mode, a->loopback);
	a->conn =
	    link_conn_new(bev, HANDSHAKE_FRAME_MAX, on_frame, on_close, a);
}

static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
	  int salen, void *arg)
{
	struct agent_port *ap = arg;
	struct agent *a;
	struct timeval tv = {HANDSHAKE_TIMEOUT_MS / 1000,
			     (HANDSHAKE_TIMEOUT_MS % 1000) * 1000};
	int port, rest;

	if (ap->accept_paused && ap->accept_paused_said)
		log_info("- agentport accept_resumed");
	ap->accept_paused = ap->accept_paused_said = false;
	a = xcalloc(1, sizeof(*a));
	a->ap = ap;
	a->loopback = sockaddr_loopback(sa);
	peer_address(sa, a->host, sizeof(a->host), &port);
	sockaddr_client_key(sa, a->key);
	snprintf(a->peer, sizeof(a->peer), "%s:%d", a->host, port);
	rest = accept_token(ap);
	if (rest > 0)
		log_warnx_rl(&ap->rl[RL_PACE], LOG_RL_MS,
			     "- agentport paced peer=%s reason=\"more than %d "
			     "connections a second\"",
			     a->peer, ACCEPT_RATE);
	if (make_room(ap, a->key, a->peer) && rest < EVICT_PACE_MS)
		rest = EVICT_PACE_MS;
	if (rest > 0)
		pause_accepts(ap, rest);
	/* Without its deadline a handshake could hold a slot for ever:
	 * refuse the connection rather than run it untimed. */
	a->timer = evtimer_new(ap->base, handshake_timeout, a);
	if (a->timer != NULL && evtimer_add(a->timer, &tv) == 0)
		a->acc =
		    link_accept_new(ap->base, fd, ap->tls,
				    HANDSHAKE_FRAME_MAX + 4, transport_cb, a);
	if (a->acc == NULL) {
		log_warnx_rl(&ap->rl[RL_HANDSHAKE], LOG_RL_MS,
			     "- agentport refused peer=%s reason=\"no timer\"",
			     a->peer);
		if (a->timer != NULL)
			event_free(a->timer);
		evutil_closesocket(fd);
		free(a);
		return;
	}
	LIST_INSERT_HEAD(&ap->agents, a, entry);
	unauth_append(ap, a);
	log_debug("- agentport connection peer=%s", a->peer);
}

/*
 * accept() failed with a non-retriable error (out of descriptors, out of
 * buffers): the socket stays readable, so leaving the listener on would
 * spin.  Stop it and retry on a timer; say so once per episode (the first
 * accept that works ends it), and at most once per LOG_RL_MS.
 */
static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct agent_port *ap = arg;
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval tv = {0, ACCEPT_RETRY_MS * 1000};

	if (evconnlistener_disable(lev) != 0 ||
	    evtimer_add(ap->accept_timer, &tv) != 0) {
		/* Cannot pause: accepting on is better than going deaf. */
		(void)evconnlistener_enable(lev);
		log_warnx_rl(&ap->rl[RL_ACCEPT], LOG_RL_MS,
			     "- agentport accept_failed error=\"%s\"",
			     evutil_socket_error_to_string(e));
		return;
	}
	if (ap->accept_paused)
		return;
	ap->accept_paused = true;
	/* Written (not counted): the resume line may follow it. */
	ap->accept_paused_said =
	    log_warnx_rl(&ap->rl[RL_ACCEPT], LOG_RL_MS,
			 "- agentport accept_paused error=\"%s\" retry_ms=%d",
			 evutil_socket_error_to_string(e), ACCEPT_RETRY_MS);
}

static void
accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_port *ap = arg;
	struct timeval tv = {0, ACCEPT_RETRY_MS * 1000};

	/* A failed enable is tried again: giving up would go deaf. */
	if (ap->lev != NULL && evconnlistener_enable(ap->lev) != 0 &&
	    evtimer_add(ap->accept_timer, &tv) != 0)
		log_warnx("- agentport accept_stuck reason=\"cannot re-enable "
			  "the listener\"");
}

/*
 * ADDRESS:PORT (an IPv6 address in brackets) into ss.  Port 0 is the
 * kernel's choice (agent_port_port() says which): libevent's own parser
 * refuses it, and the configuration never gives it, but tests do.
 */
static int
listen_address(const char *hostport, struct sockaddr_storage *ss, int *sslen)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)(void *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)(void *)ss;
	char *host = NULL;
	int port, rc = -1;

	if (hostport_parse_any(hostport, &host, &port) != 0)
		return -1;
	memset(ss, 0, sizeof(*ss));
	if (evutil_inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*sslen = (int)sizeof(*s4);
		rc = 0;
	} else if (evutil_inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*sslen = (int)sizeof(*s6);
		rc = 0;
	}
	free(host);
	return rc;
}

struct agent_port *
agent_port_new(struct event_base *base, const struct config *cfg,
	       const void *secret, size_t secret_len, struct registry *reg,
	       struct dispatcher *d, char *err, size_t errlen)
{
	struct agent_port *ap = xcalloc(1, sizeof(*ap));
	struct sockaddr_storage ss;
	int sslen;
	socklen_t bl = sizeof(ss);

	LIST_INIT(&ap->agents);
	TAILQ_INIT(&ap->handshakes);
	ap->base = base;
	ap->cfg = cfg;
	ap->secret = xmalloc(secret_len);
	memcpy(ap->secret, secret, secret_len);
	ap->secret_len = secret_len;
	ap->reg = reg;
	ap->d = d;
	ap->accept_tokens = ACCEPT_BURST;
	ap->accept_mono_ms = mono_ms();
	ap->tls_mode = link_tls_mode_parse(cfg->agent_tls);
	if (ap->tls_mode < 0)
		ap->tls_mode = LINK_TLS_AUTO; /* the config took only these */
	if (ap->tls_mode != LINK_TLS_OFF &&
	    link_tls_new(true, secret, secret_len, &ap->tls) != 0) {
		snprintf(err, errlen, "agent port: cannot make a TLS context");
		goto fail;
	}
	if (listen_address(cfg->agent_listen, &ss, &sslen) != 0) {
		snprintf(err, errlen,
			 "agent_listen %s: not ADDRESS:PORT (an IP address, "
			 "not a name)",
			 cfg->agent_listen);
		goto fail;
	}
	ap->accept_timer = evtimer_new(base, accept_retry_cb, ap);
	if (ap->accept_timer == NULL) {
		snprintf(err, errlen, "agent port: cannot make a timer");
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
	if (ap->accept_timer != NULL)
		event_free(ap->accept_timer);
	link_tls_free(ap->tls);
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

size_t
agent_port_connections(const struct agent_port *ap)
{
	const struct agent *a;
	size_t n = 0;

	LIST_FOREACH(a, &ap->agents, entry)
	n++;
	return n;
}

unsigned
agent_port_handshakes(const struct agent_port *ap)
{
	return ap->unauthenticated;
}

void
agent_port_stop_listening(struct agent_port *ap)
{
	evtimer_del(ap->accept_timer);
	if (ap->lev != NULL) {
		evconnlistener_free(ap->lev);
		ap->lev = NULL;
	}
}

void
agent_port_free(struct agent_port *ap)
{
	struct agent *a;

	if (ap == NULL)
		return;
	agent_port_stop_listening(ap);
	while ((a = LIST_FIRST(&ap->agents)) != NULL)
		agent_drop(a, NULL, "server stopping");
	event_free(ap->accept_timer);
	link_tls_free(ap->tls);
	explicit_bzero(ap->secret, ap->secret_len);
	free(ap->secret);
	free(ap);
}
