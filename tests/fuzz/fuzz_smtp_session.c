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
 * many bytes go out per write (the rest of the byte); when its top three
 * bits are all set (a value no seed before had), a second connection from
 * the same address is opened first and held, so that the fuzzed one is
 * over smtp_max_client_connections (1 here) and refused.  The rest is
 * what the client sends, after which it shuts its side.  The promises:
 * every reply line is "DDD" then ' ' or '-', within 512 bytes and ending
 * in CRLF (with a connection held: the refusal's 421 line and nothing
 * else); once the client is done the server closes the session, and then
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

#include "session_lib.h"

#include <dirent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REPLY_LINE_MAX 512
/* Low, so that one held connection puts the fuzzed one over it. */
#define MAX_CLIENT_CONNECTIONS 1
/* What smtp_server.c writes on a socket over the per-client cap. */
#define CLIENT_CAP_REPLY "421 4.7.0 Too many connections from your address\r\n"

/* rounds=1000, crypt(3)'s least: each AUTH reaches a check, and at the
 * default 5000 the checks took most of the target's time. */
#define USER_HASH                                                              \
	"$6$rounds=1000$fuzzsalt$VaozQpX6.rHlYgQ8XkQuQwnkNdGdaeCOvmZC4qxWkn"   \
	"Lh/eg/UKI7XrlNFcouj7rjYRe.I0VJYPdKlgC8OexQQ0"

static struct {
	struct event_base *base;
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

static void
server_start(int i, const char *dir)
{
	struct smtp_options o = {
	    .max_message_bytes = 8192,
	    .max_recipients = 4,
	    .timeout_s = 30,
	    .max_session_s = 60,
	    .max_connections = 8,
	    .max_client_connections = MAX_CLIENT_CONNECTIONS,
	    .max_bad_commands = 8,
	    .data_budget = 16384,
	    .allow_plain_auth = true,
	};
	struct cidr_list *trusted = NULL;
	char err[256];

	if (i == 0 &&
	    cidr_list_parse("127.0.0.0/8", &trusted, err, sizeof(err)) != 0)
		abort();
	g.srv[i] = smtp_server_new(g.base, &o, g.sub, trusted);
	smtp_server_set_users(g.srv[i], users_new(dir));
	/* Port 0: the server binds whatever port the kernel gives it and
	 * says which, so no other process can take it in between. */
	if (smtp_server_listen(g.srv[i], "127.0.0.1:0", false, err,
			       sizeof(err)) != 0) {
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
	session_lib_tick_start(g.base);
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

/* The held connection has no session yet. */
static bool
not_accepted(const void *arg)
{
	return smtp_server_sessions(arg) == 0;
}

/* The server still holds something of the session. */
static bool
busy(const void *arg)
{
	const struct smtp_server *s = arg;

	return smtp_server_sessions(s) != 0 || s->pending != 0 ||
	       s->in_data != 0 || s->data_mem != 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[1 << 16];
	size_t got, chunk;
	int which, fd, hold = -1;

	if (g.base == NULL)
		init();
	if (size < 1)
		return 0;
	which = data[0] & 1;
	chunk = 1 + (size_t)(data[0] >> 1) * 64;
	session_lib_next_client();
	if ((data[0] & 0xe0) == 0xe0) {
		hold = session_lib_client_open(g.port[which]);
		session_lib_wait_idle(g.base, not_accepted, g.srv[which]);
	}
	fd = session_lib_client_open(g.port[which]);
	got = session_lib_converse(g.base, fd, data + 1, size - 1, chunk, out,
				   sizeof(out));
	close(fd);
	/* A full buffer may end within a line: check only complete ones. */
	if (got < sizeof(out))
		check_replies(out, got);
	/* Refused: the one line, unless a reset ate it (nothing then). */
	if (hold >= 0) {
		if (got > 0 && (got != strlen(CLIENT_CAP_REPLY) ||
				memcmp(out, CLIENT_CAP_REPLY, got) != 0))
			abort();
		close(hold);
	}
	session_lib_wait_idle(g.base, busy, g.srv[which]);
	return 0;
}
