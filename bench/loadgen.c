/*
 * loadgen: a closed-loop HTTP/1.1 load generator for POST /v1/messages.
 *
 * It keeps --connections persistent keep-alive connections to 127.0.0.1,
 * each with exactly one request outstanding: a response (or an error) is
 * what allows the next request on that connection.  The request bytes are
 * built once per connection and only a fixed-width sequence number inside
 * the subject is patched before each send, so the generator spends its time
 * in the kernel rather than in formatting.  Responses are framed by hand
 * (status line and Content-Length only; chunked answers are counted as
 * protocol errors) because evhttp's client would cost more than the server
 * under test.  With --threads T the connections are spread over T threads,
 * each with its own event_base and nothing shared but an atomic ticket
 * counter, so that on a two-core machine the generator can use one core.
 *
 * Everything is bounded: --duration caps the run even with --requests, a
 * connection that does not answer within --timeout-ms is closed and
 * counted, a connection that fails to connect CONNECT_RETRIES times in a
 * row is given up, and a hard stop fires --timeout-ms after the deadline.
 * Latency (monotonic clock, microseconds) of 2xx answers goes into a
 * log-linear histogram: exact below 1024 us, within 0.2% above.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "args.h"
#include "clock.h"
#include "hist.h"

#define HEAD_MAX 65536        /* cap on a response's status + headers */
#define BODY_MAX (16u << 20)  /* cap on a response's body */
#define SEQ_WIDTH 16          /* digits of the per-request sequence */
#define CONNECT_RETRIES 5     /* consecutive failures before giving up */
#define RETRY_DELAY_US 100000 /* between connect attempts */
#define DEFAULT_CAP_S 600.0   /* --duration when only --requests is set */
#define MAX_CONNECTIONS 10000
#define MAX_THREADS 64
#define MAX_SIZE (16u << 20)

enum err_kind {
	ERR_CONNECT, /* connect(2) failed or timed out */
	ERR_TIMEOUT, /* no complete answer within --timeout-ms */
	ERR_CLOSED,  /* the server closed or reset with a request pending */
	ERR_PROTO,   /* an answer we cannot frame */
	ERR_NKINDS
};

static const char *const err_names[ERR_NKINDS] = {"connect", "timeout",
						  "closed", "proto"};

enum conn_state {
	CONN_IDLE, /* no socket: before the first connect or between retries */
	CONN_CONNECTING, /* connect(2) in progress */
	CONN_WAITING,    /* one request written or queued, answer pending */
	CONN_DONE        /* no more requests for this connection */
};

struct worker;

struct conn {
	struct worker *w;
	int idx;
	enum conn_state state;
	struct bufferevent *bev;
	struct event *retry_ev;
	char *req; /* the prebuilt request; the sequence digits are patched */
	size_t reqlen;
	size_t seq_off; /* offset of the SEQ_WIDTH digits in req */
	uint64_t seq;
	uint64_t sent_us;
	int connect_failures;
	/* Framing of the answer being read. */
	bool have_head;
	int status;
	size_t body_left;
	bool close_after;
};

struct worker {
	int id;
	pthread_t thread;
	struct event_base *base;
	struct conn **conns;
	int nconns;
	int live; /* connections not yet CONN_DONE */
	bool stopping;
	struct event *stop_ev;
	struct event *hard_ev;
	uint64_t last_done_us;
	uint64_t ok;
	uint64_t unfinished; /* requests cut short by the hard stop */
	uint64_t errs[ERR_NKINDS];
	uint64_t status_count[600];
	struct hist hist;
};

static struct {
	const char *host;
	int port;
	const char *path;
	int conns;
	uint64_t requests; /* 0: run for the duration */
	double duration;
	size_t size;
	int threads;
	bool json;
	int timeout_ms;
	const char *api_key;
	const char *from;
	const char *to;
} opt = {
    .host = "127.0.0.1",
    .path = "/v1/messages",
    .conns = 64,
    .size = 2048,
    .threads = 1,
    .timeout_ms = 10000,
    .from = "Loadgen <loadgen@example.com>",
    .to = "sink@example.net",
};

static struct sockaddr_in server_addr;
static char *body_text; /* the JSON-escaped text, shared read-only */
static _Atomic uint64_t tickets;
static uint64_t start_us;
static uint64_t deadline_us;

static void conn_connect(struct conn *c);
static void conn_next(struct conn *c);

/*
 * Appends s to the JSON text being built at buf (capacity cap, used *len),
 * escaping what JSON requires.  Returns -1 when it does not fit.
 */
static int
json_put(char *buf, size_t cap, size_t *len, const char *s)
{
	static const char hexd[] = "0123456789abcdef";
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*len + 6 >= cap)
			return -1;
		if (*p == '"' || *p == '\\') {
			buf[(*len)++] = '\\';
			buf[(*len)++] = (char)*p;
		} else if (*p < 0x20) {
			buf[(*len)++] = '\\';
			buf[(*len)++] = 'u';
			buf[(*len)++] = '0';
			buf[(*len)++] = '0';
			buf[(*len)++] = hexd[*p >> 4];
			buf[(*len)++] = hexd[*p & 0xf];
		} else
			buf[(*len)++] = (char)*p;
	}
	buf[*len] = '\0';
	return 0;
}

/*
 * The text of every message: opt.size bytes of words once decoded, a line
 * break ("\n" in JSON) every 72 characters so that no line needs folding.
 */
static char *
text_build(size_t size)
{
	static const char words[] = "the quick brown fox jumps over the "
				    "lazy dog while shivneri keeps mail ";
	size_t i, col = 0, len = 0, cap = size * 2 + 1;
	char *t;

	t = malloc(cap);
	if (t == NULL)
		return NULL;
	for (i = 0; i < size; i++) {
		if (col == 71 && i + 1 < size) {
			t[len++] = '\\';
			t[len++] = 'n';
			col = 0;
			continue;
		}
		t[len++] = words[i % (sizeof(words) - 1)];
		col++;
	}
	t[len] = '\0';
	return t;
}

/* Builds c's request with the sequence digits zeroed.  0 or -1. */
static int
conn_build_request(struct conn *c)
{
	char head[1024], pre[1024], post[64];
	size_t prelen = 0, bodylen, cap;
	int hn, n;

	/* The fixed parts are written as is; the addresses are escaped. */
	n = snprintf(pre, sizeof(pre), "{\"from\":\"");
	if (n < 0)
		return -1;
	prelen = (size_t)n;
	if (json_put(pre, sizeof(pre), &prelen, opt.from) < 0)
		return -1;
	n = snprintf(pre + prelen, sizeof(pre) - prelen, "\",\"to\":[\"");
	if (n < 0 || (size_t)n >= sizeof(pre) - prelen)
		return -1;
	prelen += (size_t)n;
	if (json_put(pre, sizeof(pre), &prelen, opt.to) < 0)
		return -1;
	n = snprintf(pre + prelen, sizeof(pre) - prelen,
		     "\"],\"subject\":\"loadgen %ld-%d-%d-", (long)getpid(),
		     c->w->id, c->idx);
	if (n < 0 || (size_t)n >= sizeof(pre) - prelen)
		return -1;
	prelen += (size_t)n;
	n = snprintf(post, sizeof(post), "\",\"text\":\"");
	if (n < 0)
		return -1;
	bodylen = prelen + SEQ_WIDTH + (size_t)n + strlen(body_text) + 2;

	hn =
	    snprintf(head, sizeof(head),
		     "POST %s HTTP/1.1\r\nHost: %s:%d\r\n"
		     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
		     "%s%s%s\r\n",
		     opt.path, opt.host, opt.port, bodylen,
		     opt.api_key != NULL ? "Authorization: Bearer " : "",
		     opt.api_key != NULL ? opt.api_key : "",
		     opt.api_key != NULL ? "\r\n" : "");
	if (hn < 0 || (size_t)hn >= sizeof(head))
		return -1;

	cap = (size_t)hn + bodylen + 1;
	c->req = malloc(cap);
	if (c->req == NULL)
		return -1;
	memcpy(c->req, head, (size_t)hn);
	memcpy(c->req + hn, pre, prelen);
	c->seq_off = (size_t)hn + prelen;
	memset(c->req + c->seq_off, '0', SEQ_WIDTH);
	c->reqlen = c->seq_off + SEQ_WIDTH;
	memcpy(c->req + c->reqlen, post, (size_t)n);
	c->reqlen += (size_t)n;
	memcpy(c->req + c->reqlen, body_text, strlen(body_text));
	c->reqlen += strlen(body_text);
	memcpy(c->req + c->reqlen, "\"}", 2);
	c->reqlen += 2;
	if (c->reqlen != (size_t)hn + bodylen)
		return -1;
	return 0;
}

static void
seq_patch(char *p, uint64_t seq)
{
	int i;

	for (i = SEQ_WIDTH - 1; i >= 0; i--) {
		p[i] = (char)('0' + seq % 10);
		seq /= 10;
	}
}

/* Whether one more request may be sent; takes a ticket if so. */
static bool
may_issue(struct worker *w)
{
	if (w->stopping)
		return false;
	if (mono_us() >= deadline_us) {
		w->stopping = true;
		return false;
	}
	if (opt.requests == 0)
		return true;
	return atomic_fetch_add(&tickets, 1) < opt.requests;
}

static void
conn_drop_socket(struct conn *c)
{
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	c->have_head = false;
	c->body_left = 0;
}

static void
conn_finish(struct conn *c)
{
	if (c->state == CONN_DONE)
		return;
	conn_drop_socket(c);
	c->state = CONN_DONE;
	if (--c->w->live == 0)
		event_base_loopexit(c->w->base, NULL);
}

static void
conn_error(struct conn *c, enum err_kind kind)
{
	struct worker *w = c->w;
	struct timeval tv = {0, RETRY_DELAY_US};

	if (c->state == CONN_CONNECTING) {
		w->errs[ERR_CONNECT]++;
		conn_drop_socket(c);
		c->state = CONN_IDLE;
		if (++c->connect_failures >= CONNECT_RETRIES || w->stopping) {
			conn_finish(c);
			return;
		}
		evtimer_add(c->retry_ev, &tv);
		return;
	}
	/* The pending request used its ticket: count it as failed. */
	w->errs[kind]++;
	w->last_done_us = mono_us();
	conn_drop_socket(c);
	c->state = CONN_IDLE;
	if (w->stopping || mono_us() >= deadline_us) {
		conn_finish(c);
		return;
	}
	conn_connect(c);
}

/*
 * Parses the status line and headers in p[0..len).  Sets status, the body
 * length and whether the server will close.  0, or -1 on what we cannot
 * frame.
 */
static int
parse_head(const char *p, size_t len, int *status, size_t *clen,
	   bool *close_after)
{
	const char *line, *end = p + len, *eol, *v;
	bool have_len = false;
	char num[32];
	size_t vlen;
	unsigned long long n;
	char *ep;

	if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' ||
	    p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' ||
	    p[11] < '0' || p[11] > '9')
		return -1;
	*status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	*close_after = p[7] == '0';
	*clen = 0;
	line = memchr(p, '\n', len);
	if (line == NULL)
		return -1;
	for (line++; line < end; line = eol + 1) {
		eol = memchr(line, '\n', (size_t)(end - line));
		if (eol == NULL)
			break;
		if (eol - line <= 1)
			break; /* the empty line */
		v = memchr(line, ':', (size_t)(eol - line));
		if (v == NULL)
			return -1;
		for (v++; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		vlen = (size_t)(eol - v);
		while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == ' '))
			vlen--;
		if (strncasecmp(line, "content-length:", 15) == 0) {
			if (vlen == 0 || vlen >= sizeof(num))
				return -1;
			memcpy(num, v, vlen);
			num[vlen] = '\0';
			errno = 0;
			n = strtoull(num, &ep, 10);
			if (errno != 0 || *ep != '\0' || n > BODY_MAX)
				return -1;
			*clen = (size_t)n;
			have_len = true;
		} else if (strncasecmp(line, "transfer-encoding:", 18) == 0) {
			return -1;
		} else if (strncasecmp(line, "connection:", 11) == 0) {
			if (vlen >= 5 && strncasecmp(v, "close", 5) == 0)
				*close_after = true;
			else if (vlen >= 10 &&
				 strncasecmp(v, "keep-alive", 10) == 0)
				*close_after = false;
		}
	}
	if (!have_len && *status >= 200 && *status != 204 && *status != 304)
		return -1;
	return 0;
}

static void
response_done(struct conn *c)
{
	struct worker *w = c->w;
	uint64_t now = mono_us();

	w->last_done_us = now;
	w->status_count[c->status]++;
	if (c->status >= 200 && c->status < 300) {
		w->ok++;
		hist_add(&w->hist, now - c->sent_us);
	}
	if (c->close_after) {
		conn_drop_socket(c);
		c->state = CONN_IDLE;
		if (w->stopping || now >= deadline_us)
			conn_finish(c);
		else
			conn_connect(c);
		return;
	}
	conn_next(c);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr pos;
	size_t avail, hlen;
	unsigned char *head;
	int guard;

	/* Each turn consumes one header block or all that is buffered. */
	for (guard = 0; guard < 64; guard++) {
		if (c->state != CONN_WAITING) {
			if (evbuffer_get_length(in) > 0)
				conn_error(c, ERR_PROTO);
			return;
		}
		if (!c->have_head) {
			pos = evbuffer_search(in, "\r\n\r\n", 4, NULL);
			if (pos.pos < 0) {
				if (evbuffer_get_length(in) > HEAD_MAX)
					conn_error(c, ERR_PROTO);
				return;
			}
			hlen = (size_t)pos.pos + 4;
			if (hlen > HEAD_MAX) {
				conn_error(c, ERR_PROTO);
				return;
			}
			head = evbuffer_pullup(in, (ev_ssize_t)hlen);
			if (head == NULL ||
			    parse_head((const char *)head, hlen, &c->status,
				       &c->body_left, &c->close_after) < 0) {
				conn_error(c, ERR_PROTO);
				return;
			}
			evbuffer_drain(in, hlen);
			if (c->status < 200)
				continue; /* an interim answer: wait on */
			c->have_head = true;
		}
		avail = evbuffer_get_length(in);
		if (avail < c->body_left) {
			evbuffer_drain(in, avail);
			c->body_left -= avail;
			return;
		}
		evbuffer_drain(in, c->body_left);
		c->body_left = 0;
		c->have_head = false;
		response_done(c);
		if (c->bev != bev)
			return; /* closed or reconnecting: bev is gone */
		if (evbuffer_get_length(in) == 0)
			return;
	}
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	int one = 1;

	if (what & BEV_EVENT_CONNECTED) {
		c->connect_failures = 0;
		(void)setsockopt(bufferevent_getfd(bev), IPPROTO_TCP,
				 TCP_NODELAY, &one, sizeof(one));
		conn_next(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		conn_error(c, ERR_TIMEOUT);
	else
		conn_error(c, ERR_CLOSED);
}

static void
conn_connect(struct conn *c)
{
	struct timeval tv;

	c->bev = bufferevent_socket_new(c->w->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		c->state = CONN_CONNECTING;
		conn_error(c, ERR_CONNECT);
		return;
	}
	bufferevent_setcb(c->bev, conn_read_cb, NULL, conn_event_cb, c);
	tv.tv_sec = opt.timeout_ms / 1000;
	tv.tv_usec = (opt.timeout_ms % 1000) * 1000;
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	c->state = CONN_CONNECTING;
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&server_addr,
				       sizeof(server_addr)) < 0) {
		conn_error(c, ERR_CONNECT);
		return;
	}
	if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) < 0)
		conn_error(c, ERR_CONNECT);
}

/* Sends the next request on a connected c, or finishes c. */
static void
conn_next(struct conn *c)
{
	if (!may_issue(c->w)) {
		conn_finish(c);
		return;
	}
	seq_patch(c->req + c->seq_off, c->seq++);
	c->state = CONN_WAITING;
	c->sent_us = mono_us();
	if (bufferevent_write(c->bev, c->req, c->reqlen) < 0)
		conn_error(c, ERR_CLOSED);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	if (c->w->stopping || mono_us() >= deadline_us)
		conn_finish(c);
	else
		conn_connect(c);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	w->stopping = true;
}

static void
hard_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	int i;

	for (i = 0; i < w->nconns; i++)
		if (w->conns[i]->state == CONN_WAITING)
			w->unfinished++;
	event_base_loopbreak(w->base);
}

static struct timeval
tv_from_us(uint64_t us)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(us / 1000000u);
	tv.tv_usec = (suseconds_t)(us % 1000000u);
	return tv;
}

static void *
worker_run(void *arg)
{
	struct worker *w = arg;
	struct timeval tv;
	uint64_t now = mono_us();
	int i;

	tv = tv_from_us(deadline_us > now ? deadline_us - now : 0);
	evtimer_add(w->stop_ev, &tv);
	tv = tv_from_us((deadline_us > now ? deadline_us - now : 0) +
			(uint64_t)opt.timeout_ms * 1000u + 100000u);
	evtimer_add(w->hard_ev, &tv);
	for (i = 0; i < w->nconns; i++)
		conn_connect(w->conns[i]);
	if (w->live > 0)
		event_base_dispatch(w->base);
	return NULL;
}

static int
worker_init(struct worker *w, int id, int nconns, int stride)
{
	int i;

	w->id = id;
	w->base = event_base_new();
	if (w->base == NULL)
		return -1;
	w->stop_ev = evtimer_new(w->base, stop_cb, w);
	w->hard_ev = evtimer_new(w->base, hard_stop_cb, w);
	w->conns = calloc((size_t)nconns, sizeof(*w->conns));
	if (w->stop_ev == NULL || w->hard_ev == NULL || w->conns == NULL)
		return -1;
	for (i = 0; i < nconns; i++) {
		struct conn *c = calloc(1, sizeof(*c));

		if (c == NULL)
			return -1;
		w->conns[i] = c;
		w->nconns++;
		c->w = w;
		c->idx = id + i * stride;
		c->retry_ev = evtimer_new(w->base, retry_cb, c);
		if (c->retry_ev == NULL || conn_build_request(c) < 0)
			return -1;
	}
	w->live = w->nconns;
	return 0;
}

static void
worker_cleanup(struct worker *w)
{
	int i;

	for (i = 0; i < w->nconns; i++) {
		struct conn *c = w->conns[i];

		conn_drop_socket(c);
		if (c->retry_ev != NULL)
			event_free(c->retry_ev);
		free(c->req);
		free(c);
	}
	free(w->conns);
	if (w->stop_ev != NULL)
		event_free(w->stop_ev);
	if (w->hard_ev != NULL)
		event_free(w->hard_ev);
	if (w->base != NULL)
		event_base_free(w->base);
}

static void
usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: loadgen --port PORT [--host 127.0.0.1] [--path "
	    "/v1/messages]\n"
	    "               [--connections 64] [--requests N] [--duration S]\n"
	    "               [--size 2048] [--threads 1] [--timeout-ms 10000]\n"
	    "               [--api-key KEY] [--from ADDR] [--to ADDR] "
	    "[--json]\n"
	    "With --requests, --duration is a cap (default %.0f s); without "
	    "either, 10 s.\n",
	    DEFAULT_CAP_S);
}

static int
parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"host", required_argument, NULL, 'H'},
	    {"port", required_argument, NULL, 'p'},
	    {"path", required_argument, NULL, 'P'},
	    {"connections", required_argument, NULL, 'c'},
	    {"requests", required_argument, NULL, 'n'},
	    {"duration", required_argument, NULL, 'd'},
	    {"size", required_argument, NULL, 's'},
	    {"threads", required_argument, NULL, 't'},
	    {"timeout-ms", required_argument, NULL, 'T'},
	    {"api-key", required_argument, NULL, 'k'},
	    {"from", required_argument, NULL, 'f'},
	    {"to", required_argument, NULL, 'r'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t v;
	int ch;

	while ((ch = getopt_long(argc, argv, "H:p:P:c:n:d:s:t:T:k:f:r:jh",
				 longopts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			opt.host = optarg;
			break;
		case 'p':
			if (parse_u64(optarg, 1, 65535, &v) < 0)
				return -1;
			opt.port = (int)v;
			break;
		case 'P':
			opt.path = optarg;
			break;
		case 'c':
			if (parse_u64(optarg, 1, MAX_CONNECTIONS, &v) < 0)
				return -1;
			opt.conns = (int)v;
			break;
		case 'n':
			if (parse_u64(optarg, 1, UINT64_MAX / 2, &v) < 0)
				return -1;
			opt.requests = v;
			break;
		case 'd':
			if (parse_double(optarg, 0, 86400, &opt.duration) < 0 ||
			    opt.duration == 0)
				return -1;
			break;
		case 's':
			if (parse_u64(optarg, 1, MAX_SIZE, &v) < 0)
				return -1;
			opt.size = (size_t)v;
			break;
		case 't':
			if (parse_u64(optarg, 1, MAX_THREADS, &v) < 0)
				return -1;
			opt.threads = (int)v;
			break;
		case 'T':
			if (parse_u64(optarg, 1, 3600000, &v) < 0)
				return -1;
			opt.timeout_ms = (int)v;
			break;
		case 'k':
			opt.api_key = optarg;
			break;
		case 'f':
			opt.from = optarg;
			break;
		case 'r':
			opt.to = optarg;
			break;
		case 'j':
			opt.json = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -1;
		}
	}
	if (optind != argc || opt.port == 0)
		return -1;
	if (opt.threads > opt.conns)
		opt.threads = opt.conns;
	if (opt.duration == 0)
		opt.duration = opt.requests > 0 ? DEFAULT_CAP_S : 10.0;
	if (strpbrk(opt.path, " \r\n") != NULL ||
	    strpbrk(opt.host, " \r\n") != NULL ||
	    (opt.api_key != NULL && strpbrk(opt.api_key, "\r\n") != NULL))
		return -1;
	return 0;
}

static void
report(struct worker *ws, uint64_t end_us)
{
	static struct hist h;
	uint64_t status[600] = {0}, errs[ERR_NKINDS] = {0};
	uint64_t ok = 0, unfinished = 0, nerr = 0, last = 0;
	double elapsed, rps;
	bool first = true;
	int i, j;

	for (i = 0; i < opt.threads; i++) {
		hist_merge(&h, &ws[i].hist);
		ok += ws[i].ok;
		unfinished += ws[i].unfinished;
		if (ws[i].last_done_us > last)
			last = ws[i].last_done_us;
		for (j = 0; j < 600; j++)
			status[j] += ws[i].status_count[j];
		for (j = 0; j < ERR_NKINDS; j++)
			errs[j] += ws[i].errs[j];
	}
	for (j = 0; j < 600; j++)
		if (j < 200 || j >= 300)
			nerr += status[j];
	for (j = 0; j < ERR_NKINDS; j++)
		if (j != ERR_CONNECT)
			nerr += errs[j];
	if (last == 0)
		last = end_us;
	elapsed = (double)(last - start_us) / 1e6;
	rps = elapsed > 0 ? (double)ok / elapsed : 0;

	if (opt.json) {
		printf("{\"ok\":%" PRIu64 ",\"errors\":%" PRIu64
		       ",\"unfinished\":%" PRIu64 ",\"by_error\":{",
		       ok, nerr, unfinished);
		for (j = 0; j < 600; j++) {
			if (status[j] == 0 || (j >= 200 && j < 300))
				continue;
			printf("%s\"%d\":%" PRIu64, first ? "" : ",", j,
			       status[j]);
			first = false;
		}
		for (j = 0; j < ERR_NKINDS; j++) {
			if (errs[j] == 0)
				continue;
			printf("%s\"%s\":%" PRIu64, first ? "" : ",",
			       err_names[j], errs[j]);
			first = false;
		}
		printf("},\"elapsed_s\":%.3f,\"rps\":%.1f,\"p50_us\":%" PRIu64
		       ",\"p90_us\":%" PRIu64 ",\"p99_us\":%" PRIu64
		       ",\"max_us\":%" PRIu64
		       ",\"connections\":%d,\"threads\":%d,\"size\":%zu}\n",
		       elapsed, rps, hist_quantile(&h, 0.50),
		       hist_quantile(&h, 0.90), hist_quantile(&h, 0.99), h.max,
		       opt.conns, opt.threads, opt.size);
		return;
	}
	printf("requests ok (2xx): %" PRIu64 "\n", ok);
	printf("requests failed:   %" PRIu64, nerr);
	for (j = 0; j < 600; j++)
		if (status[j] != 0 && (j < 200 || j >= 300))
			printf("  status %d: %" PRIu64, j, status[j]);
	for (j = 0; j < ERR_NKINDS; j++)
		if (errs[j] != 0 && j != ERR_CONNECT)
			printf("  %s: %" PRIu64, err_names[j], errs[j]);
	printf("\n");
	if (errs[ERR_CONNECT] != 0)
		printf("connect failures:  %" PRIu64 "\n", errs[ERR_CONNECT]);
	if (unfinished > 0)
		printf("unfinished:        %" PRIu64
		       " (cut by the hard stop)\n",
		       unfinished);
	printf("elapsed:           %.3f s\n", elapsed);
	printf("throughput:        %.1f req/s\n", rps);
	printf("latency (us):      p50 %" PRIu64 "  p90 %" PRIu64
	       "  p99 %" PRIu64 "  max %" PRIu64 "\n",
	       hist_quantile(&h, 0.50), hist_quantile(&h, 0.90),
	       hist_quantile(&h, 0.99), h.max);
	printf("connections %d, threads %d, text %zu bytes\n", opt.conns,
	       opt.threads, opt.size);
}

int
main(int argc, char **argv)
{
	struct worker *ws = NULL;
	uint64_t ok = 0;
	int i, started = 0, rc = 1;

	if (parse_args(argc, argv) < 0) {
		usage(stderr);
		return 2;
	}
	memset(&server_addr, 0, sizeof(server_addr));
	server_addr.sin_family = AF_INET;
	server_addr.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &server_addr.sin_addr) != 1) {
		fprintf(stderr, "loadgen: --host must be an IPv4 address\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	body_text = text_build(opt.size);
	ws = calloc((size_t)opt.threads, sizeof(*ws));
	if (body_text == NULL || ws == NULL)
		goto fail;
	for (i = 0; i < opt.threads; i++) {
		int n = opt.conns / opt.threads +
			(i < opt.conns % opt.threads ? 1 : 0);

		if (worker_init(&ws[i], i, n, opt.threads) < 0) {
			fprintf(stderr, "loadgen: out of memory\n");
			goto fail;
		}
	}
	start_us = mono_us();
	deadline_us = start_us + (uint64_t)(opt.duration * 1e6);
	for (i = 1; i < opt.threads; i++) {
		if (pthread_create(&ws[i].thread, NULL, worker_run, &ws[i]) !=
		    0) {
			fprintf(stderr, "loadgen: cannot start a thread\n");
			/* The others stop by their deadline; wait for them. */
			break;
		}
		started++;
	}
	worker_run(&ws[0]);
	for (i = 1; i <= started; i++)
		pthread_join(ws[i].thread, NULL);
	report(ws, mono_us());
	for (i = 0; i < opt.threads; i++)
		ok += ws[i].ok;
	rc = ok > 0 ? 0 : 1;
fail:
	if (ws != NULL)
		for (i = 0; i < opt.threads; i++)
			worker_cleanup(&ws[i]);
	free(ws);
	free(body_text);
	return rc;
}
