/*
 * The agent process: one provider, one connector, one link to the server.
 *
 * It is a small state machine driven by one libevent loop: IDLE (waiting
 * to reconnect) -> CONNECTING -> HELLO (HELLO sent, waiting for CHALLENGE)
 * -> AUTH (AUTH sent, waiting for WELCOME) -> READY (heartbeating, taking
 * JOBs).  Every transition goes through agent_set_state(), which logs it.
 * Any failure of the link or of the handshake (including a server that
 * cannot prove it holds the secret) drops the connection and goes back to
 * IDLE with an exponential, jittered backoff (100 ms doubling to 5 s),
 * forever: an agent outlives its server's restarts.  CONNECTING covers
 * the TLS handshake too (link_tls.h: TLS unless agent_tls says otherwise or,
 * under auto, the server is on loopback); a server without our secret
 * fails it, and the link's frames start only once it is done.
 *
 * The JOB frame cap follows max_message_bytes (link.h): the server's, from
 * WELCOME, or this file's when the server does not say; so a message the
 * server accepted always fits, and a bigger one is refused as permanent
 * rather than dropping the link for ever.
 *
 * Jobs are copied out of the JOB frame (whose buffer dies after on_frame)
 * into a table keyed by job_id with no limit of one in flight; network
 * connectors keep many sends outstanding.  A job whose link drops while its
 * connector works on it is abandoned: the server counts it lost and
 * requeues it; when its done() arrives later it is freed without a RESULT
 * (each job remembers the link generation it came on).
 *
 * Only the environment is fatal here: bad configuration exits 2 before the
 * loop starts; the server's bytes are untrusted and at worst drop the link.
 * The secret and message bodies are never logged.
 */
#include "agent/agent.h"
#include "agent/agent_health.h"
#include "agent/connector.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/log.h"
#include "common/util.h"
#include "link/link.h"
#include "link/link_tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_S 5
#define HANDSHAKE_TIMEOUT_S 10
#define JOB_BUCKETS 256

enum agent_state {
	AGENT_STATE_IDLE,       /* no link; the reconnect timer is armed */
	AGENT_STATE_CONNECTING, /* TCP connect under way */
	AGENT_STATE_HELLO,      /* HELLO sent; CHALLENGE expected */
	AGENT_STATE_AUTH,       /* AUTH sent; WELCOME expected */
	AGENT_STATE_READY,      /* registered: heartbeats and jobs */
};

static const char *const state_names[] = {"idle", "connecting", "hello", "auth",
					  "ready"};

/* One job, copied out of its frame, alive until the connector's done(). */
struct agent_job {
	LIST_ENTRY(agent_job) entry;
	struct connector_job cj;
	uint64_t gen; /* the link it came on */
	char message_id[64];
	char *mail_from;
	char **rcpt;
	size_t nrcpt;
	uint8_t *mime;
};
LIST_HEAD(agent_job_list, agent_job);

struct agent {
	struct event_base *base;
	struct evdns_base *dns; /* NULL: libevent resolves blocking */
	struct config *cfg;
	const struct provider_config *pc;
	const struct connector_ops *ops;
	void *cstate;
	char *secret;
	size_t secret_len;
	char *host;
	int port;
	struct link_tls *tls; /* NULL: agent_tls = off */
	int tls_mode;         /* enum link_tls_mode */
	bool link_tls;        /* the current link runs over TLS */

	enum agent_state state;
	struct bufferevent *connecting; /* before the link takes it over */
	struct link_conn *conn;
	uint64_t gen; /* bumped at every connect */
	uint8_t nonce[LINK_NONCE_LEN];
	uint8_t server_nonce[LINK_NONCE_LEN];
	uint32_t server_revision; /* from CHALLENGE: the outcomes it knows */
	int backoff_ms;
	uint32_t hb_interval_ms;
	uint64_t max_message_bytes; /* of this link: see handle_welcome() */
	uint64_t hb_seq;
	struct event *reconnect_ev;
	struct event *hb_ev;
	struct event *handshake_ev;
	struct event *sigterm_ev, *sigint_ev, *sighup_ev;

	/* Jobs by job_id; many in flight. */
	struct agent_job_list jobs[JOB_BUCKETS];
	uint32_t in_flight; /* jobs of the current link */
	size_t njobs;       /* all, including abandoned ones */
	/* The window and the account probe (agent_health.h). */
	struct agent_health health;
	bool health_ready; /* health initialized */
};

static void agent_connect(struct agent *a);
static void agent_drop(struct agent *a, const char *why);

static void
agent_set_state(struct agent *a, enum agent_state s, const char *why)
{
	if (a->state == s)
		return;
	log_debug("- agent state provider=%s to=%s from=%s%s%s", a->pc->name,
		  state_names[s], state_names[a->state],
		  why != NULL ? " reason=" : "", why != NULL ? why : "");
	a->state = s;
}

static struct agent_job_list *
bucket(struct agent *a, uint64_t job_id)
{
	return &a->jobs[job_id % JOB_BUCKETS];
}

static struct agent_job *
job_find(struct agent *a, uint64_t job_id)
{
	struct agent_job *j;

	LIST_FOREACH(j, bucket(a, job_id), entry)
	if (j->cj.job_id == job_id && j->gen == a->gen)
		return j;
	return NULL;
}

static void
job_free(struct agent *a, struct agent_job *j)
{
	size_t i;

	LIST_REMOVE(j, entry);
	a->njobs--;
	if (j->gen == a->gen && a->in_flight > 0)
		a->in_flight--;
	free(j->mail_from);
	for (i = 0; i < j->nrcpt; i++)
		free(j->rcpt[i]);
	free(j->rcpt);
	free(j->mime);
	free(j);
}

static uint32_t
agent_load(struct agent *a)
{
	uint64_t cap =
	    a->pc->max_in_flight > 0 ? (uint64_t)a->pc->max_in_flight : 32;
	uint64_t load = (uint64_t)a->in_flight * 100 / cap;

	return load > 100 ? 100 : (uint32_t)load;
}

static void
send_heartbeat(struct agent *a)
{
	struct link_heartbeat hb;

	memset(&hb, 0, sizeof(hb));
	hb.seq = ++a->hb_seq;
	hb.health = agent_health_level(&a->health);
	hb.in_flight = a->in_flight;
	hb.load = agent_load(a);
	if (link_encode_heartbeat(link_conn_output(a->conn), &hb) != 0)
		agent_drop(a, "cannot encode heartbeat");
}

static void
hb_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;

	if (a->state == AGENT_STATE_READY)
		send_heartbeat(a);
}

/* Copies src into dst cut at a UTF-8 boundary so that it stays valid. */
static void
copy_trunc(char *dst, size_t dstsz, const char *src)
{
	size_t n = src != NULL ? strlen(src) : 0;

	if (n >= dstsz) {
		n = dstsz - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	if (n > 0)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

static void
send_result(struct agent *a, uint64_t job_id, const char *message_id,
	    int outcome, const char *pmid, const char *detail,
	    uint32_t retry_after_ms)
{
	struct link_result r;
	char buf[LINK_PMID_MAX + 1];
	size_t i;

	memset(&r, 0, sizeof(r));
	r.job_id = job_id;
	copy_trunc(r.message_id, sizeof(r.message_id), message_id);
	/* An older server refuses outcome names it does not know. */
	r.outcome = link_outcome_for_revision(outcome, a->server_revision);
	if (r.outcome == OUTCOME_THROTTLED)
		r.retry_after_ms = retry_after_ms > LINK_RETRY_AFTER_MAX_MS
				       ? LINK_RETRY_AFTER_MAX_MS
				       : retry_after_ms;
	copy_trunc(r.provider_message_id, sizeof(r.provider_message_id), pmid);
	/* A provider's id goes into logs and APIs: no control bytes. */
	for (i = 0; r.provider_message_id[i] != '\0'; i++)
		if ((unsigned char)r.provider_message_id[i] < 0x20 ||
		    r.provider_message_id[i] == 0x7f)
			r.provider_message_id[i] = '?';
	copy_trunc(r.detail, sizeof(r.detail), detail);
	/*
	 * A delivery is the server's line (`dispatch delivered`, with the
	 * provider's id); here it is detail, written with -v.  Every
	 * delivery's line would spend the budget the server gives a spawned
	 * agent's stderr (supervisor.c), and a warning after them would be
	 * the one dropped.
	 */
	if (r.outcome != OUTCOME_DELIVERED || log_verbose() > 0)
		log_info("%s agent result job=%llu outcome=%s pmid=%s",
			 r.message_id, (unsigned long long)job_id,
			 outcome_name(r.outcome),
			 log_sanitize(r.provider_message_id,
				      strlen(r.provider_message_id), buf,
				      sizeof(buf)));
	if (link_encode_result(link_conn_output(a->conn), &r) != 0)
		agent_drop(a, "cannot encode result");
}

/* The connector's completion, on the loop. */
static void
job_done(struct connector_job *cj, const struct connector_result *res,
	 void *arg)
{
	struct agent *a = arg;
	struct agent_job *j = cj->owner;

	/* Abandoned or not, the answer says how the provider is. */
	agent_health_record(&a->health, res->outcome);
	if (j->gen == a->gen && a->state == AGENT_STATE_READY)
		send_result(a, cj->job_id, j->message_id, res->outcome,
			    res->provider_message_id, res->detail,
			    res->retry_after_ms);
	else
		log_info("%s agent abandoned job=%llu outcome=%s (link gone)",
			 j->message_id, (unsigned long long)cj->job_id,
			 outcome_name(res->outcome));
	job_free(a, j);
}

/*
 * A message over this provider's own limit (its max_message_bytes, or its
 * type's): answered too_large without a byte sent, as the provider would
 * answer it (413, 552), so the server tries one that can take it.  The
 * server routes by the limit this agent announced, so only a server that
 * did not read it (or a limit lowered since) sends one.
 */
static bool
too_large(struct agent *a, const struct link_job *lj)
{
	int64_t own = config_provider_max_bytes(a->pc);
	char detail[128];

	if (own <= 0 || lj->mime_len <= (uint64_t)own)
		return false;
	snprintf(detail, sizeof(detail),
		 "message of %zu bytes over this provider's max_message_bytes "
		 "%lld",
		 lj->mime_len, (long long)own);
	send_result(a, lj->job_id, lj->message_id, OUTCOME_TOO_LARGE, NULL,
		    detail, 0);
	return true;
}

/*
 * A provider that takes 7-bit addresses only (ops->ascii_addresses): a
 * non-ASCII domain goes as its A-labels (common/envelope.h), the same
 * address in ASCII.  An address with no ASCII form (a non-ASCII local
 * part) is answered needs_smtputf8 without a request, as the smtp
 * connector answers for a smarthost without SMTPUTF8, so the server offers
 * the message to a provider that may carry it (permanent to a server older
 * than revision 4, what the provider's refusal was).  True when answered.
 */
static bool
ascii_only(struct agent *a, struct link_job *lj)
{
	const char *const *rcpt = (const char *const *)lj->rcpt;
	char detail[160], *from, **arcpt;

	if (!a->ops->ascii_addresses ||
	    !envelope_utf8(lj->mail_from, rcpt, lj->nrcpt))
		return false;
	if (envelope_ascii(lj->mail_from, rcpt, lj->nrcpt, &from, &arcpt) ==
	    0) {
		envelope_ascii_free(lj->mail_from, lj->rcpt, lj->nrcpt);
		lj->mail_from = from;
		lj->rcpt = arcpt;
		log_info("%s agent addresses_ascii provider=%s "
			 "reason=\"IDN domains as A-labels\"",
			 lj->message_id, a->ops->name);
		return false;
	}
	snprintf(detail, sizeof(detail),
		 "%s takes 7-bit ASCII addresses only (no SMTPUTF8), and an "
		 "address of the message has no ASCII form",
		 a->ops->name);
	send_result(a, lj->job_id, lj->message_id, OUTCOME_NEEDS_SMTPUTF8, NULL,
		    detail, 0);
	return true;
}

static void
handle_job(struct agent *a, const uint8_t *p, size_t n)
{
	struct link_job lj;
	struct agent_job *j;
	int rc;

	rc = link_decode_job(p, n, &lj);
	if (rc != 0) {
		log_warnx("- agent bad JOB: %s", link_strerror(rc));
		agent_drop(a, "malformed JOB");
		return;
	}
	if (job_find(a, lj.job_id) != NULL) {
		log_warnx("%s agent duplicate job=%llu ignored", lj.message_id,
			  (unsigned long long)lj.job_id);
		goto out;
	}
	log_debug("%s agent job_received job=%llu rcpt=%zu bytes=%zu",
		  lj.message_id, (unsigned long long)lj.job_id, lj.nrcpt,
		  lj.mime_len);
	if (lj.mime_len > a->max_message_bytes) {
		send_result(a, lj.job_id, lj.message_id, OUTCOME_PERMANENT,
			    NULL, "message larger than the agent accepts", 0);
		goto out;
	}
	if (too_large(a, &lj) || ascii_only(a, &lj))
		goto out;
	j = xcalloc(1, sizeof(*j));
	j->gen = a->gen;
	memcpy(j->message_id, lj.message_id, sizeof(j->message_id));
	/* Take the decoded strings; only the mime needs a copy. */
	j->mail_from = lj.mail_from;
	j->rcpt = lj.rcpt;
	j->nrcpt = lj.nrcpt;
	lj.mail_from = NULL;
	lj.rcpt = NULL;
	lj.nrcpt = 0;
	j->mime = xmalloc(lj.mime_len > 0 ? lj.mime_len : 1);
	if (lj.mime_len > 0)
		memcpy(j->mime, lj.mime, lj.mime_len);
	j->cj.job_id = lj.job_id;
	j->cj.message_id = j->message_id;
	j->cj.mail_from = j->mail_from;
	j->cj.rcpt = (const char *const *)j->rcpt;
	j->cj.nrcpt = j->nrcpt;
	j->cj.mime = j->mime;
	j->cj.mime_len = lj.mime_len;
	j->cj.owner = j;
	LIST_INSERT_HEAD(bucket(a, lj.job_id), j, entry);
	a->njobs++;
	a->in_flight++;
	rc = a->ops->send(a->cstate, &j->cj);
	if (rc < 0) {
		send_result(a, lj.job_id, lj.message_id, OUTCOME_TRANSIENT,
			    NULL, "the connector refused the job", 0);
		job_free(a, j);
	}
out:
	link_job_cleanup(&lj);
}

static void
handle_challenge(struct agent *a, const uint8_t *p, size_t n)
{
	struct link_challenge ch;
	struct link_auth au;
	int rc;

	rc = link_decode_challenge(p, n, &ch);
	if (rc != 0) {
		log_warnx("- agent bad CHALLENGE: %s", link_strerror(rc));
		agent_drop(a, "bad challenge");
		return;
	}
	memcpy(a->server_nonce, ch.nonce, LINK_NONCE_LEN);
	a->server_revision = ch.revision;
	link_mac_agent(a->secret, a->secret_len, a->server_nonce, a->nonce,
		       a->pc->name, au.mac);
	if (link_encode_auth(link_conn_output(a->conn), &au) != 0) {
		agent_drop(a, "cannot encode AUTH");
		return;
	}
	OPENSSL_cleanse(&au, sizeof(au));
	agent_set_state(a, AGENT_STATE_AUTH, NULL);
}

static void
handle_welcome(struct agent *a, const uint8_t *p, size_t n)
{
	struct link_welcome w;
	uint8_t want[LINK_MAC_LEN];
	struct timeval tv;
	int rc;

	rc = link_decode_welcome(p, n, &w);
	if (rc != 0) {
		log_warnx("- agent bad WELCOME: %s", link_strerror(rc));
		agent_drop(a, "bad welcome");
		return;
	}
	link_mac_server(a->secret, a->secret_len, a->nonce, a->server_nonce,
			a->pc->name, want);
	if (!link_mac_equal(want, w.mac)) {
		log_warnx("- agent refused provider=%s reason=\"the server did "
			  "not prove the secret\"",
			  a->pc->name);
		link_conn_close(a->conn, "auth_failed", "bad server MAC");
		a->conn = NULL;
		agent_drop(a, "server failed authentication");
		return;
	}
	event_del(a->handshake_ev);
	a->backoff_ms = BACKOFF_MIN_MS;
	a->hb_interval_ms = w.heartbeat_interval_ms;
	/* The server's limit wins: it is the one its intake enforced. */
	a->max_message_bytes = w.max_message_bytes > 0
				   ? w.max_message_bytes
				   : (uint64_t)a->cfg->max_message_bytes;
	link_conn_set_max_frame(a->conn,
				link_job_frame_max(a->max_message_bytes));
	agent_set_state(a, AGENT_STATE_READY, NULL);
	log_info("- agent registered provider=%s heartbeat_ms=%u "
		 "max_message_bytes=%llu tls=%s",
		 a->pc->name, a->hb_interval_ms,
		 (unsigned long long)a->max_message_bytes,
		 a->link_tls ? "yes" : "no");
	tv.tv_sec = a->hb_interval_ms / 1000;
	tv.tv_usec = (a->hb_interval_ms % 1000) * 1000;
	event_add(a->hb_ev, &tv);
	send_heartbeat(a);
}

static void
on_frame(struct link_conn *c, int type, const uint8_t *p, size_t n, void *arg)
{
	struct agent *a = arg;
	struct link_error le;
	char code[LINK_CODE_MAX + 1], msg[LINK_MSG_MAX + 1];

	if (type == LINK_ERROR) {
		if (link_decode_error(p, n, &le) == 0)
			log_warnx("- agent server error code=%s message=\"%s\"",
				  log_sanitize(le.code, strlen(le.code), code,
					       sizeof(code)),
				  log_sanitize(le.message, strlen(le.message),
					       msg, sizeof(msg)));
		agent_drop(a, "server sent ERROR");
		return;
	}
	if (type == LINK_CHALLENGE && a->state == AGENT_STATE_HELLO)
		handle_challenge(a, p, n);
	else if (type == LINK_WELCOME && a->state == AGENT_STATE_AUTH)
		handle_welcome(a, p, n);
	else if (type == LINK_JOB && a->state == AGENT_STATE_READY)
		handle_job(a, p, n);
	else {
		log_warnx("- agent unexpected %s frame in state %s",
			  link_type_name(type), state_names[a->state]);
		link_conn_close(a->conn, "protocol_error",
				link_strerror(LINK_E_STATE));
		a->conn = NULL;
		agent_drop(a, "protocol error");
	}
}

static void
on_close(struct link_conn *c, int err, void *arg)
{
	struct agent *a = arg;
	char why[128];

	if (err == 0)
		snprintf(why, sizeof(why), "server closed the link");
	else if (err >= LINK_E_STATE)
		snprintf(why, sizeof(why), "%s", link_strerror(err));
	else
		snprintf(why, sizeof(why), "%s", strerror(-err));
	agent_drop(a, why);
}

/* Forgets the link and its jobs and arms the reconnect timer. */
static void
agent_drop(struct agent *a, const char *why)
{
	struct timeval tv;
	int delay;

	if (a->state == AGENT_STATE_IDLE)
		return;
	link_conn_free(a->conn);
	a->conn = NULL;
	if (a->connecting != NULL) {
		bufferevent_free(a->connecting);
		a->connecting = NULL;
	}
	event_del(a->hb_ev);
	event_del(a->handshake_ev);
	/* Jobs in the connector's hands are abandoned (gen moves on). */
	a->gen++;
	agent_set_state(a, AGENT_STATE_IDLE, why);
	/* Jitter: somewhere in [backoff/2, backoff]. */
	delay = a->backoff_ms / 2 + (int)(rand64() % (a->backoff_ms / 2 + 1));
	a->backoff_ms = a->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
							   : a->backoff_ms * 2;
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (delay % 1000) * 1000;
	log_info(
	    "- agent down provider=%s reason=\"%s\" abandoned=%u retry_ms=%d",
	    a->pc->name, why, a->in_flight, delay);
	a->in_flight = 0;
	event_add(a->reconnect_ev, &tv);
}

static void
handshake_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	agent_drop(arg, "handshake timed out");
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg);

/*
 * Connected: over TLS unless agent_tls says otherwise (link_tls.h), the
 * handshake of which calls back here once done; then the link says HELLO.
 */
static void
connect_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct agent *a = arg;
	struct link_hello h;
	struct timeval tv = {HANDSHAKE_TIMEOUT_S, 0};

	if (!(what & BEV_EVENT_CONNECTED)) {
		agent_drop(a, (what & BEV_EVENT_TIMEOUT) ? "connect timed out"
							 : "connect failed");
		return;
	}
	if (!a->link_tls && a->tls != NULL &&
	    link_tls_client_wants(a->tls_mode, bufferevent_getfd(bev))) {
		bufferevent_set_timeouts(bev, NULL, NULL);
		a->connecting = link_tls_connect(a->tls, a->base, bev);
		if (a->connecting == NULL) {
			agent_drop(a, "cannot start TLS");
			return;
		}
		a->link_tls = true;
		bufferevent_setcb(a->connecting, NULL, NULL, tls_event_cb, a);
		bufferevent_enable(a->connecting, EV_READ | EV_WRITE);
		/* The TLS handshake counts in the handshake's time. */
		event_add(a->handshake_ev, &tv);
		return;
	}
	a->connecting = NULL;
	bufferevent_set_timeouts(bev, NULL, NULL);
	a->conn = link_conn_new(bev, LINK_CTRL_MAX, on_frame, on_close, a);
	log_info("- agent connected provider=%s server=%s:%d tls=%s",
		 a->pc->name, a->host, a->port, a->link_tls ? "yes" : "no");
	memset(&h, 0, sizeof(h));
	h.version = LINK_VERSION;
	h.revision = LINK_REVISION;
	snprintf(h.name, sizeof(h.name), "%s", a->pc->name);
	snprintf(h.type, sizeof(h.type), "%s", a->pc->type);
	if (random_bytes(a->nonce, sizeof(a->nonce)) != 0) {
		agent_drop(a, "no random bytes");
		return;
	}
	memcpy(h.nonce, a->nonce, sizeof(h.nonce));
	h.pid = getpid();
	h.weight = a->pc->weight > 0 ? a->pc->weight : 0;
	h.priority = a->pc->priority >= 0 ? a->pc->priority : -1;
	h.max_in_flight = a->pc->max_in_flight;
	/* Its own limit, if any; the server caps it at its own. */
	h.max_message_bytes = (uint64_t)config_provider_max_bytes(a->pc);
	if (link_encode_hello(link_conn_output(a->conn), &h) != 0) {
		agent_drop(a, "cannot encode HELLO");
		return;
	}
	agent_set_state(a, AGENT_STATE_HELLO, NULL);
	event_add(a->handshake_ev, &tv);
}

/* The TLS handshake's end: a server without our secret fails here. */
static void
tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct agent *a = arg;
	unsigned long e;

	if (what & BEV_EVENT_CONNECTED) {
		connect_event_cb(bev, what, a);
		return;
	}
	e = bufferevent_get_openssl_error(bev);
	log_warnx("- agent tls_failed provider=%s server=%s:%d reason=\"%s\"",
		  a->pc->name, a->host, a->port,
		  e != 0 ? link_tls_reason(e)
			 : (what & BEV_EVENT_EOF ? "closed" : "reset"));
	agent_drop(a, "TLS handshake failed");
}

static void
agent_connect(struct agent *a)
{
	struct bufferevent *bev;
	struct timeval tv = {CONNECT_TIMEOUT_S, 0};

	bev = bufferevent_socket_new(a->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		fatalx("bufferevent_socket_new");
	agent_set_state(a, AGENT_STATE_CONNECTING, NULL);
	a->connecting = bev;
	a->link_tls = false;
	bufferevent_setcb(bev, NULL, NULL, connect_event_cb, a);
	bufferevent_set_timeouts(bev, NULL, &tv);
	/* On failure the event callback has run or will run. */
	if (bufferevent_socket_connect_hostname(bev, a->dns, AF_UNSPEC, a->host,
						a->port) != 0 &&
	    a->connecting == bev)
		agent_drop(a, "connect failed");
}

static void
reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
	agent_connect(arg);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct agent *a = arg;

	log_info("- agent stopping provider=%s signal=%d", a->pc->name,
		 (int)sig);
	event_base_loopbreak(a->base);
}

/*
 * SIGHUP reopens the log file, as it does in the server, and never stops
 * the agent: `pkill -HUP shivneri` or a terminal's hangup reaches the
 * agents too, and an agent that died of it would end its sends in flight
 * as ambiguous and take its provider out until it was restarted.
 */
static void
sighup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct agent *a = arg;
	int rc = log_reopen();

	(void)sig;
	(void)what;
	if (rc != 0)
		log_warnx("- agent log_reopen_failed provider=%s error=\"%s\"",
			  a->pc->name, strerror(-rc));
	else
		log_info("- agent log_reopened provider=%s signal=SIGHUP",
			 a->pc->name);
}

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: shivneri agent [-c FILE] -p NAME "
		"[--server HOST:PORT] [-v]\n"
		"  -c FILE             configuration (default: the embedded "
		"one)\n"
		"  -p NAME             the provider, section [provider.NAME]\n"
		"  --server HOST:PORT  the server's agent port (default: "
		"[server] agent_listen)\n"
		"  -v                  verbose (debug) logging\n");
}

static void
agent_cleanup(struct agent *a)
{
	struct agent_job *j;
	size_t i;

	link_conn_free(a->conn);
	if (a->connecting != NULL)
		bufferevent_free(a->connecting);
	/* The connector first: its workers may still read job memory. */
	if (a->cstate != NULL)
		a->ops->close(a->cstate);
	/* Same turn of the loop: an abandoned probe never calls back. */
	if (a->health_ready)
		agent_health_cleanup(&a->health);
	for (i = 0; i < JOB_BUCKETS; i++)
		while ((j = LIST_FIRST(&a->jobs[i])) != NULL)
			job_free(a, j);
	if (a->reconnect_ev != NULL)
		event_free(a->reconnect_ev);
	if (a->hb_ev != NULL)
		event_free(a->hb_ev);
	if (a->handshake_ev != NULL)
		event_free(a->handshake_ev);
	if (a->sigterm_ev != NULL)
		event_free(a->sigterm_ev);
	if (a->sigint_ev != NULL)
		event_free(a->sigint_ev);
	if (a->sighup_ev != NULL)
		event_free(a->sighup_ev);
	if (a->dns != NULL)
		evdns_base_free(a->dns, 0);
	link_tls_free(a->tls);
	if (a->base != NULL)
		event_base_free(a->base);
	if (a->secret != NULL) {
		OPENSSL_cleanse(a->secret, a->secret_len);
		free(a->secret);
	}
	free(a->host);
	config_free(a->cfg);
}

static void
print_errors(struct config_errors *errs)
{
	size_t i;

	for (i = 0; i < errs->n; i++)
		fprintf(stderr, "%s\n", errs->msg[i]);
	config_errors_cleanup(errs);
}

/*
 * Reads the configuration and runs the run-time checks of this agent's
 * role (the agent secret must exist; its provider's secrets must be
 * readable); 0 or an exit status.  Status 2 tells a supervising server
 * that this agent will not start until its file changes.
 */
static int
agent_load_config(struct agent *a, const char *file, const char *name)
{
	struct config_errors errs = {NULL, 0};
	const char *where = file != NULL ? file : "the embedded default";
	int rc;

	rc = file != NULL ? config_load(file, &a->cfg, &errs)
			  : config_load_default(&a->cfg);
	if (rc != 0) {
		if (errs.n == 0)
			fprintf(stderr, "shivneri agent: %s: %s\n", where,
				strerror(-rc));
		print_errors(&errs);
		return 2;
	}
	a->pc = config_provider(a->cfg, name);
	if (a->pc == NULL) {
		fprintf(stderr, "shivneri agent: %s: no [provider.%s]\n", where,
			name);
		return 2;
	}
	if (!link_name_valid(name)) {
		fprintf(stderr,
			"shivneri agent: %s: provider name '%s' is not "
			"[A-Za-z0-9._-]{1,%d}\n",
			where, name, LINK_NAME_MAX);
		return 2;
	}
	if (config_check_runtime(a->cfg, name, &errs) != 0) {
		print_errors(&errs);
		return 2;
	}
	/* The configuration accepts only the types this build registered. */
	a->ops = connector_lookup(a->pc->type);
	if (a->ops == NULL)
		fatalx("provider type %s checked yet not registered",
		       a->pc->type);
	return 0;
}

/* Reads the configuration and opens the connector; 0 or an exit status. */
static int
agent_setup(struct agent *a, const char *file, const char *name,
	    const char *server)
{
	const char *where = file != NULL ? file : "the embedded default";
	char err[512];
	int rc;

	rc = agent_load_config(a, file, name);
	if (rc != 0)
		return rc;
	rc = config_agent_secret(a->cfg, false, &a->secret, &a->secret_len);
	if (rc != 0) {
		fprintf(stderr,
			"shivneri agent: %s: cannot read the agent secret: "
			"%s\n",
			where, strerror(-rc));
		return 2;
	}
	/* The same file as the server's: one agent_tls for both ends. */
	a->tls_mode = link_tls_mode_parse(a->cfg->agent_tls);
	if (a->tls_mode != LINK_TLS_OFF &&
	    link_tls_new(false, a->secret, a->secret_len, &a->tls) != 0) {
		fprintf(stderr, "shivneri agent: cannot make a TLS context\n");
		return 2;
	}
	if (server == NULL)
		server = a->cfg->agent_listen;
	if (server == NULL || hostport_parse(server, &a->host, &a->port) != 0) {
		fprintf(stderr, "shivneri agent: bad server address '%s'\n",
			server != NULL ? server : "");
		return 2;
	}
	a->base = event_base_new();
	if (a->base == NULL)
		fatalx("event_base_new");
	a->dns = evdns_base_new(a->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	agent_health_init(&a->health, a->base, a->pc->name, a->ops,
			  a->pc->probe_interval_s);
	a->health_ready = true;
	rc = a->ops->open(a->pc, a->base, job_done, a, &a->cstate, err,
			  sizeof(err));
	if (rc != 0) {
		a->cstate = NULL;
		fprintf(stderr, "shivneri agent: %s: %s\n", where, err);
		return 2;
	}
	a->health.cstate = a->cstate;
	return 0;
}

int
agent_main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"provider", required_argument, NULL, 'p'},
	    {"server", required_argument, NULL, 's'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct agent a;
	const char *file = NULL, *name = NULL, *server = NULL;
	int ch, verbose = 0, rc;
	size_t i;

	/* Before anything is made: what a connector writes is ours alone. */
	umask(077);
	/* Until sighup_cb() is on the loop, a hangup must not end us. */
	signal(SIGHUP, SIG_IGN);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:p:s:vh", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 'p':
			name = optarg;
			break;
		case 's':
			server = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || name == NULL) {
		usage(stderr);
		return 2;
	}
	log_init("agent", verbose);
	memset(&a, 0, sizeof(a));
	for (i = 0; i < JOB_BUCKETS; i++)
		LIST_INIT(&a.jobs[i]);
	a.backoff_ms = BACKOFF_MIN_MS;
	a.state = AGENT_STATE_IDLE;
	rc = agent_setup(&a, file, name, server);
	if (rc != 0)
		goto out;
	if (a.cfg->log_file != NULL && log_open_file(a.cfg->log_file) != 0)
		log_warn("- agent cannot open log file, using stderr");
	if (log_set_format(a.cfg->log_format) != 0)
		log_warnx("- agent unknown log_format, using text");
	signal(SIGPIPE, SIG_IGN);
	a.reconnect_ev = evtimer_new(a.base, reconnect_cb, &a);
	a.hb_ev = event_new(a.base, -1, EV_PERSIST, hb_cb, &a);
	a.handshake_ev = evtimer_new(a.base, handshake_timeout_cb, &a);
	a.sigterm_ev = evsignal_new(a.base, SIGTERM, signal_cb, &a);
	a.sigint_ev = evsignal_new(a.base, SIGINT, signal_cb, &a);
	a.sighup_ev = evsignal_new(a.base, SIGHUP, sighup_cb, &a);
	if (a.reconnect_ev == NULL || a.hb_ev == NULL ||
	    a.handshake_ev == NULL || a.sigterm_ev == NULL ||
	    a.sigint_ev == NULL || a.sighup_ev == NULL ||
	    event_add(a.sigterm_ev, NULL) != 0 ||
	    event_add(a.sigint_ev, NULL) != 0 ||
	    event_add(a.sighup_ev, NULL) != 0)
		fatalx("cannot set up the agent's events");
	log_info("- agent starting provider=%s type=%s server=%s:%d",
		 a.pc->name, a.pc->type, a.host, a.port);
	agent_connect(&a);
	event_base_dispatch(a.base);
	log_info("- agent stopped provider=%s", a.pc->name);
	rc = 0;
out:
	agent_cleanup(&a);
	return rc;
}
