/*
 * libFuzzer target for a whole SMTP session: the state machine of
 * smtp_session.c, smtp_cmd.c and smtp_login.c over a real loopback
 * connection, with the submit path and a real SQLite store behind it.
 * fuzz_smtp_cmd and fuzz_smtp_data reach the parsers one line or one
 * stream at a time; only here do the pieces meet: pipelined commands,
 * a transaction across RSET and a second MAIL, AUTH exchanges, DATA
 * after a refused RCPT, bad-command and junk counting, a stream that
 * ends anywhere.
 *
 * Input: byte 0 picks the server (bit 0: one that trusts loopback, or
 * one that trusts no one so that only AUTH lets MAIL through) and how
 * many bytes go out per write (the rest of the byte); the rest is what
 * the client sends, after which it shuts its side.  The promises: every
 * reply line is "DDD" then ' ' or '-', within 512 bytes and ending in
 * CRLF; once the client is done the server closes the session, and then
 * holds no session, no message buffer (smtp_data_budget_bytes back to
 * nothing) and no message with the submit path, all within a deadline.
 *
 * The limits are small so the fuzzer reaches them (recipients, message
 * size, bad commands, the data budget); the store lives in a fresh
 * folder in /dev/shm (or /tmp), removed when the process exits.  The
 * AUTH user is "fuzz" with the password "secret".
 */
#include "common/cidr.h"
#include "common/log.h"
#include "common/util.h"
#include "intake/message.h"
#include "intake/smtp_int.h"
#include "intake/submit.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the session may take, after the client is done, to close. */
/* Generous: a loaded CI machine under ASan must not read as a hang. */
#define DEADLINE_MS 10000
#define REPLY_LINE_MAX 512

#define USER_HASH                                                              \
	"$6$fuzzsalt$iDTMfLlIWXnU0u/ucN8Rvel1jyy/OslJpB.sv1b7aqQg/"            \
	"Na4Y9B47sFqgSiQ4wv/4SbFVVCnHAGIJVpklv8Rc."

static struct {
	struct event_base *base;
	struct event *tick;
	struct store *st;
	struct submit *sub;
	struct smtp_server *srv[2];
	int port[2];
} g;

static char store_dir[128];

/* The store's folder goes with the process (its files stay open: fine). */
static void
store_dir_remove(void)
{
	DIR *d = opendir(store_dir);
	struct dirent *e;
	char path[512];

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", store_dir, e->d_name);
		(void)unlink(path);
	}
	closedir(d);
	(void)rmdir(store_dir);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

static struct smtp_users *
users_new(const char *dir)
{
	char path[256], err[256];
	struct smtp_users *u = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "%s/users", dir);
	f = fopen(path, "w");
	if (f == NULL || fprintf(f, "fuzz:%s\n", USER_HASH) < 0 ||
	    fclose(f) != 0 || chmod(path, 0600) != 0)
		abort();
	if (smtp_users_load(path, &u, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_smtp_session: %s\n", err);
		abort();
	}
	return u;
}

/*
 * A loopback port nobody holds now (smtp_listen takes no port 0): the
 * kernel picks it, and it stays free for the moment until the server binds.
 */
static int
free_port(void)
{
	struct sockaddr_in sin = {0};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
		abort();
	close(fd);
	return ntohs(sin.sin_port);
}

static void
server_start(int i, const char *dir)
{
	struct smtp_options o = {
	    .max_message_bytes = 8192,
	    .max_recipients = 4,
	    .timeout_s = 30,
	    .max_session_s = 60,
	    .max_connections = 8,
	    .max_client_connections = 8,
	    .max_bad_commands = 8,
	    .data_budget = 16384,
	    .allow_plain_auth = true,
	};
	struct cidr_list *trusted = NULL;
	char err[256], hostport[32];

	if (i == 0 &&
	    cidr_list_parse("127.0.0.0/8", &trusted, err, sizeof(err)) != 0)
		abort();
	g.srv[i] = smtp_server_new(g.base, &o, g.sub, trusted);
	smtp_server_set_users(g.srv[i], users_new(dir));
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", free_port());
	if (smtp_server_listen(g.srv[i], hostport, false, err, sizeof(err)) !=
	    0) {
		fprintf(stderr, "fuzz_smtp_session: %s\n", err);
		abort();
	}
	g.port[i] = smtp_server_port(g.srv[i], false);
	if (g.port[i] <= 0)
		abort();
}

static void
init(void)
{
	const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	struct message_limits lim = {8192, 4};
	struct timeval tv = {0, 1000};
	char *dir = store_dir;

	signal(SIGPIPE, SIG_IGN);
	log_init("fuzz", 0);
	if (log_open_file("/dev/null") != 0)
		abort();
	message_init();
	snprintf(store_dir, sizeof(store_dir), "%s/fuzz_smtp_session.XXXXXX",
		 tmp);
	if (mkdtemp(store_dir) == NULL)
		abort();
	atexit(store_dir_remove);
	g.base = event_base_new();
	if (g.base == NULL ||
	    store_open(dir, &(struct store_options){"sqlite", 1 << 20}, g.base,
		       &g.st) != 0)
		abort();
	g.sub = submit_new(g.base, g.st, &lim, NULL, NULL);
	if (g.sub == NULL)
		abort();
	server_start(0, dir);
	server_start(1, dir);
	/* The loop turns at least every millisecond while a test runs, so
	 * the client side below is polled without a thread of its own. */
	g.tick = event_new(g.base, -1, EV_PERSIST, tick_cb, NULL);
	if (g.tick == NULL || event_add(g.tick, &tv) != 0)
		abort();
}

/* Every reply line: three digits, ' ' or '-', CRLF within the cap. */
static void
check_replies(const char *out, size_t len)
{
	const char *p = out, *end = out + len, *nl;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			abort(); /* the server closed within a line */
		if (nl - p < 5 || nl - p + 1 > REPLY_LINE_MAX ||
		    nl[-1] != '\r' || p[0] < '2' || p[0] > '5' || p[1] < '0' ||
		    p[1] > '9' || p[2] < '0' || p[2] > '9' ||
		    (p[3] != ' ' && p[3] != '-'))
			abort();
		p = nl + 1;
	}
}

static int
client_open(int port)
{
	struct sockaddr_in sin = {0};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	if (fd < 0)
		abort();
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 &&
	    errno != EINPROGRESS)
		abort();
	return fd;
}

/* Sends in, reads the replies into out until the server closes. */
static size_t
converse(int fd, const uint8_t *in, size_t n, size_t chunk, char *out,
	 size_t outsz)
{
	int64_t deadline = mono_ms() + DEADLINE_MS;
	size_t off = 0, got = 0;
	bool shut = false;
	char sink[4096];
	ssize_t k;

	for (;;) {
		if (mono_ms() > deadline)
			abort(); /* the session never closed */
		event_base_loop(g.base, EVLOOP_ONCE);
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

/* The server lets go of everything the session held. */
static void
wait_idle(const struct smtp_server *s)
{
	int64_t deadline = mono_ms() + DEADLINE_MS;

	while (smtp_server_sessions(s) != 0 || s->pending != 0 ||
	       s->in_data != 0 || s->data_mem != 0) {
		if (mono_ms() > deadline)
			abort();
		event_base_loop(g.base, EVLOOP_ONCE);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[1 << 16];
	size_t got, chunk;
	int which, fd;

	if (g.base == NULL)
		init();
	if (size < 1)
		return 0;
	which = data[0] & 1;
	chunk = 1 + (size_t)(data[0] >> 1) * 64;
	fd = client_open(g.port[which]);
	got = converse(fd, data + 1, size - 1, chunk, out, sizeof(out));
	close(fd);
	/* A full buffer may end within a line: check only complete ones. */
	if (got < sizeof(out))
		check_replies(out, got);
	wait_idle(g.srv[which]);
	return 0;
}
