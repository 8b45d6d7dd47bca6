/*
 * libFuzzer target for the server's agent port (server/agent_port.c): what
 * anyone who reaches the port can do, before and after proving the secret,
 * over a real loopback connection to the real port, with a registry, a
 * dispatcher and a SQLite store behind it (an empty queue: no JOB is ever
 * due).  fuzz_link drives the frame decoders alone; here they meet
 * link_conn's framing over a socket, the transport sniff of link_tls.c,
 * the handshake states, the limits and the heartbeat bucket.
 *
 * Input:
 *   byte 0  bit 0: answer the CHALLENGE.  The stream's first frame goes
 *           out first, and when the server challenges it the target sends
 *           the right AUTH for that HELLO (the MAC covers the server's
 *           random nonce, so no input could carry it), then the rest of
 *           the stream after the WELCOME: the fuzzer mutates
 *           authenticated sessions too.
 *           bit 1: a port with agent_tls = required (plaintext refused
 *           at its first frame) rather than auto.
 *           bits 2-5 all set: a crowd, CROWD connections from the same
 *           address opened first and held silent, so that the fuzzed one
 *           is over the per-address limit and the oldest is evicted.
 *   byte 1  low four bits: k, how many split bytes follow.
 *   k bytes each the size of one write, taken in turn: (b & 0x3f) + 1;
 *           the top two bits set: the peer then rests a heartbeat
 *           interval (at most MAX_RESTS an input), so refilled tokens and
 *           timers come into play.  The loop turns between writes, so the
 *           server reads each alone: frame headers, half frames.  k = 0:
 *           one write.
 *   the rest: the stream the peer sends; then it shuts its side.
 *
 * The promises: the server closes the connection within GONE_DEADLINE_MS
 * of the peer's EOF (before the handshake deadline could do it); what it
 * wrote (unless the stream began a TLS record) is whole frames, at most a
 * CHALLENGE, then a WELCOME (only for the target's own AUTH, its MAC the
 * server's right one), then an ERROR, each decoding, the last one cut
 * only by a reset; a crowd costs exactly its oldest connection; once the
 * peer is gone the port holds no connection, no handshake and no
 * provider link (within GONE_DEADLINE_MS too), max_dynamic_providers
 * holds, and the next input's connection is accepted (a port gone deaf
 * is blamed on the input before, which is written to
 * fuzz_agent_port.previous).
 *
 * The secret is fixed, the store lives in a fresh folder in /dev/shm (or
 * /tmp) removed at exit; the file names one provider, m (maildir), and
 * allows MAX_DYNAMIC others.
 */
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/dispatcher.h"
#include "dispatch/registry.h"
#include "link/link.h"
#include "server/agent_port.h"
#include "store/store.h"

#include "session_lib.h"

#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SECRET "fuzz-agent-port-secret"
#define HEARTBEAT_INTERVAL_MS 10
#define MAX_DYNAMIC 4
#define MAX_RESTS 2
/* agent_port.c's MAX_UNAUTHENTICATED_PER_ADDR: one more evicts. */
#define CROWD 16
/* agent_port.c's HANDSHAKE_TIMEOUT_MS, less a margin: a crowd's other
 * connections are checked only in an input faster than this. */
#define CROWD_CHECK_MS 2000
#define OUT_MAX (1 << 16)
/*
 * Once the peer has shut its side, the server must close and let go
 * within this: well before agent_port.c's HANDSHAKE_TIMEOUT_MS (3 s), so
 * that a connection freed only by that deadline, not by the EOF, is a
 * finding rather than a slow input.
 */
#define GONE_DEADLINE_MS 2000
/*
 * Listeners of each agent_tls mode, one registry and dispatcher behind
 * them all.  A port accepts at most 100 connections a second (its token
 * bucket, agent_port.c's ACCEPT_RATE), and an input costs one (a crowd
 * CROWD + 1): with one port that bucket, not the code, set the pace.
 * Inputs take the ports of their mode in turn; each still meets its
 * bucket, and a crowd its pause.
 */
#define PORTS 8

static const char cfg_text[] = "[server]\n"
			       "data_dir = %s\n"
			       "http_listen =\n"
			       "smtp_listen =\n"
			       "agent_listen = 127.0.0.1:1\n"
			       "agent_tls = %s\n"
			       "heartbeat_interval_ms = %d\n"
			       "heartbeat_timeout_ms = %d\n"
			       "max_dynamic_providers = %d\n"
			       "[provider.m]\n"
			       "type = maildir\n";

static struct {
	struct event_base *base;
	struct config *cfg[2]; /* agent_tls auto, required */
	struct store *st;
	struct registry *reg;
	struct dispatcher *d;
	/* PORTS listeners of each mode, taken in turn (see PORTS). */
	struct agent_port *ap[2][PORTS];
	unsigned next[2];
	uint8_t *prev; /* the input before, for a port gone deaf */
	size_t prev_len;
} g;

static char store_dir[128];

/* The store's folder goes with the process (its files stay open: fine). */
static void
store_dir_remove(void)
{
	DIR *dir = opendir(store_dir);
	struct dirent *e;
	char path[512];

	if (dir == NULL)
		return;
	while ((e = readdir(dir)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", store_dir, e->d_name);
		(void)unlink(path);
	}
	closedir(dir);
	(void)rmdir(store_dir);
}

static struct config *
config_make(const char *tls)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	char text[1024];
	size_t i;

	snprintf(text, sizeof(text), cfg_text, store_dir, tls,
		 HEARTBEAT_INTERVAL_MS, 4 * HEARTBEAT_INTERVAL_MS, MAX_DYNAMIC);
	if (config_load_string(text, "fuzz.ini", &cfg, &errs) != 0) {
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "fuzz_agent_port: %s\n", errs.msg[i]);
		abort();
	}
	/* Port 0, which the file may not say: the kernel's choice, read
	 * back with agent_port_port(), so no other process can take it. */
	free(cfg->agent_listen);
	cfg->agent_listen = xstrdup("127.0.0.1:0");
	return cfg;
}

static void
init(void)
{
	const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	char err[256];
	int i;

	signal(SIGPIPE, SIG_IGN);
	log_init("fuzz", 0);
	if (log_open_file("/dev/null") != 0)
		abort();
	snprintf(store_dir, sizeof(store_dir), "%s/fuzz_agent_port.XXXXXX",
		 tmp);
	if (mkdtemp(store_dir) == NULL)
		abort();
	atexit(store_dir_remove);
	g.cfg[0] = config_make("auto");
	g.cfg[1] = config_make("required");
	g.base = event_base_new();
	if (g.base == NULL ||
	    store_open(store_dir, &(struct store_options){"sqlite", 1 << 20},
		       g.base, &g.st) != 0)
		abort();
	g.reg = registry_new(g.base, g.cfg[0]);
	g.d = dispatcher_new(g.base, g.cfg[0], g.st, g.reg);
	if (dispatcher_load(g.d) != 0)
		abort();
	for (i = 0; i < 2 * PORTS; i++) {
		g.ap[i / PORTS][i % PORTS] = agent_port_new(
		    g.base, g.cfg[i / PORTS], SECRET, strlen(SECRET), g.reg,
		    g.d, err, sizeof(err));
		if (g.ap[i / PORTS][i % PORTS] == NULL) {
			fprintf(stderr, "fuzz_agent_port: %s\n", err);
			abort();
		}
	}
	session_lib_tick_start(g.base);
}

/* One peer's conversation: what it sends, how, and what it reads. */
struct peer {
	struct agent_port *ap;
	int fd;
	const uint8_t *split; /* the sizes of the writes, in turn */
	size_t nsplit, si;
	int rests;
	int64_t deadline;
	bool accepted; /* the port took the connection */
	bool closed;   /* EOF or reset read */
	bool reset;
	bool gone;  /* a write found the server gone: send no more */
	size_t got; /* bytes kept in out (the rest read and dropped) */
	uint8_t out[OUT_MAX]; /* last: a new input clears what is above */
};

/* A port that neither closed nor, for a connection never accepted, took
 * it: the input before is the likelier culprit, kept for the record. */
static void __attribute__((noreturn)) timed_out(const struct peer *p)
{
	FILE *f;

	if (!p->accepted && g.prev != NULL) {
		f = fopen("fuzz_agent_port.previous", "wb");
		if (f != NULL) {
			(void)fwrite(g.prev, 1, g.prev_len, f);
			(void)fclose(f);
		}
		fprintf(stderr, "fuzz_agent_port: the port took no "
				"connection: the input before is in "
				"fuzz_agent_port.previous\n");
	} else {
		fprintf(stderr, "fuzz_agent_port: the server did not close "
				"in time\n");
	}
	abort();
}

/* One turn of the loop (blocking at most a tick unless nowait), then
 * whatever the server said. */
static void
turn(struct peer *p, bool nowait)
{
	char sink[4096];
	ssize_t k;
	size_t take;

	if (mono_ms() > p->deadline)
		timed_out(p);
	event_base_loop(g.base, nowait ? EVLOOP_NONBLOCK : EVLOOP_ONCE);
	if (agent_port_connections(p->ap) > 0)
		p->accepted = true;
	while (!p->closed) {
		k = recv(p->fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (k > 0) {
			take = (size_t)k < OUT_MAX - p->got ? (size_t)k
							    : OUT_MAX - p->got;
			memcpy(p->out + p->got, sink, take);
			p->got += take;
			continue;
		}
		if (k == 0 || errno == ECONNRESET) {
			p->closed = true;
			p->reset = k != 0;
			p->accepted = true;
		}
		break;
	}
}

/* Sends n bytes in the input's writes, the loop turning after each. */
static void
send_stream(struct peer *p, const uint8_t *in, size_t n)
{
	size_t off = 0, want, done;
	ssize_t k;
	uint8_t b;
	int64_t until;

	while (off < n && !p->gone) {
		b = p->nsplit > 0 ? p->split[p->si++ % p->nsplit] : 0;
		want = p->nsplit > 0 ? (size_t)(b & 0x3f) + 1 : n - off;
		if (want > n - off)
			want = n - off;
		done = 0;
		while (done < want && !p->gone) {
			k = send(p->fd, in + off + done, want - done,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (k > 0)
				done += (size_t)k;
			else if (k < 0 &&
				 (errno == EPIPE || errno == ECONNRESET))
				p->gone = true; /* closed on us */
			else
				turn(p, false);
		}
		off += done;
		turn(p, true);
		if ((b & 0xc0) == 0xc0 && p->nsplit > 0 &&
		    p->rests < MAX_RESTS) {
			p->rests++;
			until = mono_ms() + HEARTBEAT_INTERVAL_MS;
			while (mono_ms() < until && !p->closed)
				turn(p, false);
		}
	}
}

/* The length of the whole frame at the start of in (0: not all there). */
static size_t
whole_frame(const uint8_t *in, size_t n)
{
	uint64_t len;

	if (n < 5)
		return 0;
	len = (uint64_t)in[0] << 24 | (uint64_t)in[1] << 16 |
	      (uint64_t)in[2] << 8 | in[3];
	return len > 0 && 4 + len <= n ? (size_t)(4 + len) : 0;
}

/* The server's whole frames in p->out so far, at most max; *end: the
 * bytes they take. */
static size_t
frames_out(const struct peer *p, int *types, const uint8_t **payloads,
	   size_t *lens, size_t max, size_t *end)
{
	size_t off = 0, used, nf = 0;
	int type;

	while (nf < max &&
	       link_frame_split(p->out + off, p->got - off, LINK_CTRL_MAX,
				&type, &payloads[nf], &lens[nf], &used) == 1) {
		types[nf++] = type;
		off += used;
	}
	*end = off;
	return nf;
}

/* Turns the loop until the server has written nframes whole frames or
 * closed. */
static void
await_frames(struct peer *p, size_t nframes)
{
	int types[4];
	const uint8_t *pl[4];
	size_t lens[4], end;

	while (!p->closed && frames_out(p, types, pl, lens, 4, &end) < nframes)
		turn(p, false);
}

/*
 * The handshake by the book after the input's HELLO (hello, n bytes, a
 * whole frame): sends it, and when the server challenges, the right AUTH.
 * True when the server then proved the secret in its WELCOME, with the
 * HELLO decoded in *h.
 */
static bool
authenticate(struct peer *p, const uint8_t *hello, size_t n,
	     struct link_hello *h)
{
	int types[4];
	const uint8_t *pl[4];
	size_t lens[4], nf, end;
	struct link_challenge ch;
	struct link_auth auth;
	struct link_welcome w;
	uint8_t want[LINK_MAC_LEN];
	struct evbuffer *buf;
	bool ok = false;

	send_stream(p, hello, n);
	await_frames(p, 1);
	nf = frames_out(p, types, pl, lens, 4, &end);
	if (nf == 0 || types[0] != LINK_CHALLENGE)
		return false;
	/* Challenged: the frame was a HELLO of our version, and decodes. */
	if (hello[4] != LINK_HELLO ||
	    link_decode_hello(hello + 5, n - 5, h) != 0 ||
	    h->version != LINK_VERSION ||
	    link_decode_challenge(pl[0], lens[0], &ch) != 0)
		abort();
	link_mac_agent(SECRET, strlen(SECRET), ch.nonce, h->nonce, h->name,
		       auth.mac);
	buf = evbuffer_new();
	if (buf == NULL || link_encode_auth(buf, &auth) != 0)
		abort();
	send_stream(p, evbuffer_pullup(buf, -1), evbuffer_get_length(buf));
	evbuffer_free(buf);
	await_frames(p, 2);
	nf = frames_out(p, types, pl, lens, 4, &end);
	if (nf >= 2 && types[1] == LINK_WELCOME) {
		link_mac_server(SECRET, strlen(SECRET), h->nonce, ch.nonce,
				h->name, want);
		if (link_decode_welcome(pl[1], lens[1], &w) != 0 ||
		    !link_mac_equal(w.mac, want) ||
		    w.heartbeat_interval_ms != HEARTBEAT_INTERVAL_MS)
			abort();
		ok = true;
	}
	return ok;
}

/*
 * What the server wrote: CHALLENGE, WELCOME (only when welcomed), ERROR,
 * each at most once, in that order, each decoding; a partial frame only
 * at the end of a reset.  The ERROR's code, if any, in code.
 */
static void
check_out(const struct peer *p, bool welcomed, char *code, size_t codelen)
{
	int types[8], last = 0;
	const uint8_t *pl[8];
	size_t lens[8], nf, i, end;
	struct link_challenge ch;
	struct link_welcome w;
	struct link_error le;

	code[0] = '\0';
	nf = frames_out(p, types, pl, lens, 8, &end);
	for (i = 0; i < nf; i++) {
		if (types[i] <= last)
			abort(); /* out of order, or twice */
		last = types[i];
		switch (types[i]) {
		case LINK_CHALLENGE:
			if (link_decode_challenge(pl[i], lens[i], &ch) != 0)
				abort();
			break;
		case LINK_WELCOME:
			if (!welcomed || i != 1 ||
			    link_decode_welcome(pl[i], lens[i], &w) != 0)
				abort();
			break;
		case LINK_ERROR:
			if (link_decode_error(pl[i], lens[i], &le) != 0 ||
			    le.code[0] == '\0')
				abort();
			snprintf(code, codelen, "%s", le.code);
			break;
		default:
			abort(); /* nothing else is due to this peer */
		}
	}
	if (end != p->got && !p->reset && p->got < OUT_MAX)
		abort();
	if (welcomed && (nf < 2 || types[1] != LINK_WELCOME))
		abort();
}

/* The port still holds something of a peer, or a provider its link. */
static bool
busy(const void *arg)
{
	size_t i, n = registry_count(g.reg);

	(void)arg;
	for (i = 0; i < 2 * PORTS; i++)
		if (agent_port_connections(g.ap[i / PORTS][i % PORTS]) != 0 ||
		    agent_port_handshakes(g.ap[i / PORTS][i % PORTS]) != 0)
			return true;
	for (i = 0; i < n; i++)
		if (registry_at(g.reg, i)->conn != NULL)
			return true;
	return false;
}

/* Turns the loop until the port holds nothing of the peer; aborts when
 * that takes longer than GONE_DEADLINE_MS. */
static void
wait_idle(void)
{
	int64_t deadline = mono_ms() + GONE_DEADLINE_MS;

	while (busy(NULL)) {
		if (mono_ms() > deadline) {
			fprintf(stderr, "fuzz_agent_port: the port still "
					"holds a peer that is gone\n");
			abort();
		}
		event_base_loop(g.base, EVLOOP_ONCE);
	}
}

/* The crowd's connections are accepted. */
static bool
crowd_waits(const void *arg)
{
	return agent_port_connections(arg) < CROWD;
}

/* True when the server has closed fd (EOF or reset). */
static bool
closed_by_server(int fd)
{
	char c;
	ssize_t k = recv(fd, &c, 1, MSG_DONTWAIT);

	return k == 0 || (k < 0 && errno == ECONNRESET);
}

static void
check_registry(const struct link_hello *h, bool welcomed, const char *code)
{
	size_t i, n = registry_count(g.reg);
	const struct provider *pr;

	if (registry_dynamic_count(g.reg) > MAX_DYNAMIC)
		abort();
	for (i = 0; i < n; i++) {
		pr = registry_at(g.reg, i);
		if (!pr->configured &&
		    (pr->max_in_flight < 1 || pr->max_in_flight > 32))
			abort();
	}
	if (welcomed) {
		pr = registry_find(g.reg, h->name);
		if (pr == NULL || strcmp(pr->type, h->type) != 0)
			abort();
	}
	if (strcmp(code, "too_many_providers") == 0 &&
	    registry_find(g.reg, h->name) != NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct peer p;
	struct link_hello h;
	int crowd[CROWD];
	const uint8_t *stream;
	size_t n, k, first;
	bool welcomed = false, tls;
	int64_t start;
	char code[LINK_CODE_MAX + 1];
	int i, mode, ncrowd = 0, one = 1;

	if (g.base == NULL)
		init();
	if (size < 2)
		return 0;
	k = data[1] & 15;
	if (size < 2 + k)
		return 0;
	memset(&p, 0, offsetof(struct peer, out));
	memset(&h, 0, sizeof(h));
	mode = (data[0] >> 1) & 1;
	p.ap = g.ap[mode][g.next[mode]++ % PORTS];
	p.split = data + 2;
	p.nsplit = k;
	p.deadline = mono_ms() + SESSION_LIB_DEADLINE_MS;
	stream = data + 2 + k;
	n = size - 2 - k;
	tls = n > 0 && stream[0] == 0x16;
	start = mono_ms();
	session_lib_next_client();
	if (((data[0] >> 2) & 15) == 15) {
		for (ncrowd = 0; ncrowd < CROWD; ncrowd++)
			crowd[ncrowd] =
			    session_lib_client_open(agent_port_port(p.ap));
		session_lib_wait_idle(g.base, crowd_waits, p.ap);
	}
	p.fd = session_lib_client_open(agent_port_port(p.ap));
	/* Each write its own segment at once: with Nagle's algorithm a small
	 * one waits for the server's delayed ACK, 40 ms. */
	if (setsockopt(p.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		abort();
	first = (data[0] & 1) != 0 ? whole_frame(stream, n) : 0;
	if (first > 0) {
		welcomed = authenticate(&p, stream, first, &h);
		stream += first;
		n -= first;
	}
	send_stream(&p, stream, n);
	(void)shutdown(p.fd, SHUT_WR);
	if (p.deadline > mono_ms() + GONE_DEADLINE_MS)
		p.deadline = mono_ms() + GONE_DEADLINE_MS;
	while (!p.closed)
		turn(&p, false);
	close(p.fd);
	if (!tls)
		check_out(&p, welcomed, code, sizeof(code));
	else
		code[0] = '\0';
	/* The crowd paid its oldest for the newcomer, and no more. */
	if (ncrowd > 0) {
		if (!closed_by_server(crowd[0]))
			abort();
		for (i = 1; i < ncrowd; i++)
			if (mono_ms() - start < CROWD_CHECK_MS &&
			    closed_by_server(crowd[i]))
				abort();
		for (i = 0; i < ncrowd; i++)
			close(crowd[i]);
	}
	wait_idle();
	check_registry(&h, welcomed, code);
	free(g.prev);
	g.prev = malloc(size);
	if (g.prev != NULL)
		memcpy(g.prev, data, size);
	g.prev_len = size;
	return 0;
}
