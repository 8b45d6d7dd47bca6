/*
 * smtpload: an SMTP load generator that times every message, closed loop
 * or at a fixed offered rate.
 *
 * It keeps --sessions SMTP sessions to 127.0.0.1:--port, each sending one
 * message at a time the way Postfix's smtp-source does (EHLO once, then
 * MAIL, RCPT, DATA and the message, each after the previous reply: no
 * pipelining), and times each message from MAIL to the reply after its
 * final dot.
 *
 * With --rate R the messages are offered on a fixed schedule: message k is
 * due at start + k / R seconds, and an idle session takes the next message
 * due.  Its latency is counted from the time it was due, not from when a
 * session was free to send it, so a server that falls behind shows the
 * wait of every message it left queued (no coordinated omission): this is
 * the latency an application offering R messages a second would see.
 * With --rate 0 (the default) each session sends its next message as
 * soon as the last one is answered, and latency counts from MAIL.
 *
 * Everything is bounded: --messages and --duration (the schedule stops
 * at whichever comes first), a session whose server does not answer within
 * --timeout-ms is counted as an error and closed, and a hard stop fires
 * --timeout-ms after the deadline.  Any reply other than the expected one
 * is an error: the session stops, and the exit status is 1.
 *
 * Output, one line of key=value: sessions, rate (offered, 0 for closed
 * loop), ok, errors (sessions stopped by one), unanswered (messages begun
 * and not answered 250), secs (to the last 250), achieved (ok / secs), and
 * p50_us,
 * p90_us, p99_us, p999_us, max_us of the latencies of ok messages.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "args.h"
#include "clock.h"
#include "hist.h"

#define MAX_SESSIONS 10000
#define MAX_SIZE (16u << 20)
#define REPLY_LINE_MAX 1024 /* a longer reply line is a protocol error */
#define DEFAULT_CAP_S 600.0 /* --duration when only --messages is set */

enum step {
	ST_CONNECT, /* connect(2) in progress */
	ST_GREETING,
	ST_EHLO,
	ST_WAIT, /* idle until its next message is due */
	ST_MAIL,
	ST_RCPT,
	ST_DATA,
	ST_DOT, /* the message and its dot written, reply pending */
	ST_QUIT,
	ST_DONE
};

/* The reply each step waits for. */
static const int step_code[] = {
    [ST_GREETING] = 220, [ST_EHLO] = 250, [ST_MAIL] = 250, [ST_RCPT] = 250,
    [ST_DATA] = 354,     [ST_DOT] = 250,  [ST_QUIT] = 221,
};

struct session {
	int idx;
	enum step step;
	struct bufferevent *bev;
	struct event *due_ev;
	uint64_t due_us; /* when the message in progress was due */
};

static struct {
	int port;
	int sessions;
	double rate; /* messages a second offered; 0: closed loop */
	uint64_t messages;
	double duration;
	size_t size;
	int timeout_ms;
	const char *from;
	const char *to;
} opt = {
    .sessions = 64,
    .size = 2048,
    .timeout_ms = 10000,
    .from = "load@bench.test",
    .to = "sink@bench.test",
};

static struct event_base *base;
static struct sockaddr_in server_addr;
static char *message; /* header, body and the final dot, built once */
static size_t message_len;
static struct hist hist;
static uint64_t start_us, deadline_us, last_us;
static uint64_t issued, ok, errors, live;
static bool reported_error;

/* About opt.size bytes of 78-byte lines, none starting with a dot. */
static int
message_build(void)
{
	static const char head[] = "From: <%s>\r\nTo: <%s>\r\n"
				   "Subject: smtpload\r\n\r\n";
	size_t cap = opt.size + 1024, len;
	int n;

	message = malloc(cap);
	if (message == NULL)
		return -1;
	n = snprintf(message, cap, head, opt.from, opt.to);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	for (len = (size_t)n; len + 78 <= opt.size; len += 78) {
		memset(message + len, 'x', 76);
		memcpy(message + len + 76, "\r\n", 2);
	}
	memcpy(message + len, ".\r\n", 3);
	message_len = len + 3;
	return 0;
}

static void
session_close(struct session *s)
{
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	if (s->step != ST_DONE) {
		s->step = ST_DONE;
		if (--live == 0)
			event_base_loopexit(base, NULL);
	}
}

static void
session_error(struct session *s, const char *what, const char *line)
{
	errors++;
	if (!reported_error) {
		reported_error = true;
		fprintf(stderr, "smtpload: session %d: %s%s%.*s\n", s->idx,
			what, line != NULL ? ": " : "", 200,
			line != NULL ? line : "");
	}
	session_close(s);
}

/* Writes VERB, or VERB:<ADDR>, and waits in next for its reply. */
static void
session_cmd(struct session *s, enum step next, const char *verb,
	    const char *addr)
{
	struct timeval tmo = {.tv_sec = opt.timeout_ms / 1000,
			      .tv_usec = (opt.timeout_ms % 1000) * 1000};
	int r;

	s->step = next;
	bufferevent_set_timeouts(s->bev, &tmo, &tmo);
	if (addr != NULL)
		r = evbuffer_add_printf(bufferevent_get_output(s->bev),
					"%s:<%s>\r\n", verb, addr);
	else
		r = evbuffer_add_printf(bufferevent_get_output(s->bev),
					"%s\r\n", verb);
	if (r < 0)
		session_error(s, "out of memory", NULL);
}

/* Arms s's timer for its due time, or returns false when it is past. */
static bool
wait_due(struct session *s)
{
	uint64_t now = mono_us(), left;
	struct timeval tv;

	if (s->due_us <= now)
		return false;
	left = s->due_us - now;
	tv.tv_sec = (time_t)(left / 1000000);
	tv.tv_usec = (suseconds_t)(left % 1000000);
	event_add(s->due_ev, &tv);
	return true;
}

static void
due_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	/* The loop's cached clock can fire a timer a little early. */
	if (!wait_due(s))
		session_cmd(s, ST_MAIL, "MAIL FROM", opt.from);
}

/* The next message for an idle session, now or when it is due; or QUIT. */
static void
session_next(struct session *s)
{
	uint64_t now = mono_us(), due;

	if ((opt.messages > 0 && issued >= opt.messages) ||
	    now >= deadline_us) {
		session_cmd(s, ST_QUIT, "QUIT", NULL);
		return;
	}
	due = opt.rate > 0
		  ? start_us + (uint64_t)((double)issued * 1e6 / opt.rate)
		  : now;
	issued++;
	s->due_us = due;
	if (due > now) {
		/* Nothing is owed while waiting: no reply timeout. */
		s->step = ST_WAIT;
		bufferevent_set_timeouts(s->bev, NULL, NULL);
		if (wait_due(s))
			return;
	}
	session_cmd(s, ST_MAIL, "MAIL FROM", opt.from);
}

/* A reply line's three digits (read_cb checked what follows), else -1. */
static int
reply_code(const char *line)
{
	int i, code = 0;

	for (i = 0; i < 3; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -1;
		code = code * 10 + (line[i] - '0');
	}
	return code;
}

/* One complete reply (its last line) for the step s waits on. */
static void
session_reply(struct session *s, const char *line)
{
	int code = reply_code(line);
	uint64_t now;

	if (code != step_code[s->step]) {
		session_error(s, "unexpected reply", line);
		return;
	}
	switch (s->step) {
	case ST_GREETING:
		session_cmd(s, ST_EHLO, "EHLO smtpload.bench", NULL);
		break;
	case ST_EHLO:
		session_next(s);
		break;
	case ST_MAIL:
		session_cmd(s, ST_RCPT, "RCPT TO", opt.to);
		break;
	case ST_RCPT:
		session_cmd(s, ST_DATA, "DATA", NULL);
		break;
	case ST_DATA:
		s->step = ST_DOT;
		if (evbuffer_add(bufferevent_get_output(s->bev), message,
				 message_len) != 0)
			session_error(s, "out of memory", NULL);
		break;
	case ST_DOT:
		now = mono_us();
		hist_add(&hist, now - s->due_us);
		ok++;
		last_us = now;
		session_next(s);
		break;
	case ST_QUIT:
		session_close(s);
		break;
	default:
		session_error(s, "reply out of turn", line);
		break;
	}
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	char *line;

	while (s->step != ST_DONE &&
	       (line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF_STRICT)) !=
		   NULL) {
		if (n < 3 || n > REPLY_LINE_MAX ||
		    (n > 3 && line[3] != ' ' && line[3] != '-')) {
			session_error(s, "malformed reply", line);
		} else if (s->step == ST_WAIT || s->step == ST_CONNECT) {
			session_error(s, "reply out of turn", line);
		} else if (n == 3 || line[3] == ' ') {
			session_reply(s, line);
		}
		free(line);
	}
	if (s->step != ST_DONE && evbuffer_get_length(in) > REPLY_LINE_MAX)
		session_error(s, "reply line too long", NULL);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		s->step = ST_GREETING;
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		session_error(s, "no reply in time", NULL);
	else if (what & BEV_EVENT_EOF)
		session_error(s, "connection closed by the server", NULL);
	else
		session_error(s, "connection error", strerror(errno));
}

static void
hard_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_base_loopbreak(base);
}

static int
session_start(struct session *s)
{
	struct timeval tmo = {.tv_sec = opt.timeout_ms / 1000,
			      .tv_usec = (opt.timeout_ms % 1000) * 1000};

	s->due_ev = evtimer_new(base, due_cb, s);
	s->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (s->due_ev == NULL || s->bev == NULL)
		return -1;
	bufferevent_setcb(s->bev, read_cb, NULL, event_cb, s);
	bufferevent_set_timeouts(s->bev, &tmo, &tmo);
	if (bufferevent_enable(s->bev, EV_READ | EV_WRITE) != 0)
		return -1;
	s->step = ST_CONNECT;
	live++;
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&server_addr,
				       sizeof(server_addr)) != 0) {
		session_error(s, "connect failed", strerror(errno));
		return 0;
	}
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: smtpload --port P [--sessions N] [--rate R] "
		"[--messages M] [--duration S]\n"
		"                [--size BYTES] [--timeout-ms MS] [--from A] "
		"[--to A]\n"
		"  sends to 127.0.0.1:P; --rate 0 (default) is closed loop\n");
}

static int
parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"sessions", required_argument, NULL, 's'},
	    {"rate", required_argument, NULL, 'r'},
	    {"messages", required_argument, NULL, 'm'},
	    {"duration", required_argument, NULL, 'd'},
	    {"size", required_argument, NULL, 'l'},
	    {"timeout-ms", required_argument, NULL, 't'},
	    {"from", required_argument, NULL, 'f'},
	    {"to", required_argument, NULL, 'T'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	uint64_t v;
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (parse_u64(optarg, 1, 65535, &v) < 0)
				goto bad;
			opt.port = (int)v;
			break;
		case 's':
			if (parse_u64(optarg, 1, MAX_SESSIONS, &v) < 0)
				goto bad;
			opt.sessions = (int)v;
			break;
		case 'r':
			if (parse_double(optarg, 0, 1e7, &opt.rate) < 0)
				goto bad;
			break;
		case 'm':
			if (parse_u64(optarg, 0, UINT64_MAX / 2,
				      &opt.messages) < 0)
				goto bad;
			break;
		case 'd':
			if (parse_double(optarg, 0, 86400, &opt.duration) < 0)
				goto bad;
			break;
		case 'l':
			if (parse_u64(optarg, 256, MAX_SIZE, &v) < 0)
				goto bad;
			opt.size = (size_t)v;
			break;
		case 't':
			if (parse_u64(optarg, 1, 3600000, &v) < 0)
				goto bad;
			opt.timeout_ms = (int)v;
			break;
		case 'f':
			opt.from = optarg;
			break;
		case 'T':
			opt.to = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			goto bad;
		}
	}
	/* The numbers were checked as they came; port has no default. */
	if (optind != argc || opt.port == 0 ||
	    (opt.messages == 0 && opt.duration == 0) ||
	    strpbrk(opt.from, "<>\r\n") != NULL ||
	    strpbrk(opt.to, "<>\r\n") != NULL)
		goto bad;
	if (opt.duration == 0)
		opt.duration = DEFAULT_CAP_S;
	return 0;
bad:
	usage(stderr);
	return -1;
}

int
main(int argc, char **argv)
{
	struct event_config *cfg = NULL;
	struct session *ss;
	struct event *hard;
	struct timeval hard_tv;
	double secs;
	int i;

	if (parse_args(argc, argv) != 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	if (message_build() != 0 || (cfg = event_config_new()) == NULL ||
	    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) != 0 ||
	    (base = event_base_new_with_config(cfg)) == NULL) {
		fprintf(stderr, "smtpload: out of memory\n");
		return 2;
	}
	event_config_free(cfg);
	memset(&server_addr, 0, sizeof(server_addr));
	server_addr.sin_family = AF_INET;
	server_addr.sin_port = htons((uint16_t)opt.port);
	server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

	ss = calloc((size_t)opt.sessions, sizeof(*ss));
	if (ss == NULL)
		return 2;
	start_us = mono_us();
	deadline_us = start_us + (uint64_t)(opt.duration * 1e6);
	hard_tv.tv_sec = (time_t)opt.duration + opt.timeout_ms / 1000 + 1;
	hard_tv.tv_usec = 0;
	hard = evtimer_new(base, hard_stop_cb, NULL);
	if (hard == NULL || event_add(hard, &hard_tv) != 0)
		return 2;
	for (i = 0; i < opt.sessions; i++) {
		ss[i].idx = i;
		if (session_start(&ss[i]) != 0) {
			fprintf(stderr, "smtpload: out of memory\n");
			return 2;
		}
	}
	if (live > 0)
		event_base_dispatch(base);

	secs = (double)((last_us > start_us ? last_us : mono_us()) - start_us) /
	       1e6;
	printf("sessions=%d rate=%.0f ok=%" PRIu64 " errors=%" PRIu64
	       " unanswered=%" PRIu64 " secs=%.3f achieved=%.0f p50_us=%" PRIu64
	       " p90_us=%" PRIu64 " p99_us=%" PRIu64 " p999_us=%" PRIu64
	       " max_us=%" PRIu64 "\n",
	       opt.sessions, opt.rate, ok, errors, issued - ok, secs,
	       secs > 0 ? (double)ok / secs : 0.0, hist_quantile(&hist, 0.50),
	       hist_quantile(&hist, 0.90), hist_quantile(&hist, 0.99),
	       hist_quantile(&hist, 0.999), hist.max);
	for (i = 0; i < opt.sessions; i++) {
		if (ss[i].bev != NULL)
			bufferevent_free(ss[i].bev);
		if (ss[i].due_ev != NULL)
			event_free(ss[i].due_ev);
	}
	event_free(hard);
	event_base_free(base);
	free(ss);
	free(message);
	return errors > 0 || issued != ok ? 1 : 0;
}
