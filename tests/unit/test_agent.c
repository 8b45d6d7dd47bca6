/*
 * The agent process end to end: agent_main runs in a forked child with a
 * real configuration file and the maildir connector, against a toy server
 * in this process built from link_conn and the codec on 127.0.0.1.
 *
 * The first connection answers with a wrong WELCOME MAC: the agent must
 * drop it and reconnect.  The second is honest: the agent registers with
 * its section's weight, priority and max_in_flight, beats, takes several
 * jobs at once and reports each one delivered, with the message in new/.
 * SIGTERM then ends it with status 0.  Configuration errors exit 2.
 *
 * A provider's own max_message_bytes is announced in HELLO and a job over
 * it answered too_large without the connector.
 *
 * A fake connector ("classy", registered here) answers every job
 * throttled with a Retry-After: to a server of revision 2 the agent
 * reports it so, to one that says no revision (revision 1) as transient
 * without retry_after_ms, which such a server understands.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/agent.h"
#include "agent/connector.h"
#include "common/config.h"
#include "common/util.h"
#include "link/link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NJOBS 3
#define SECRET "0123456789abcdef0123456789abcdef"

struct srv {
	struct event_base *base;
	int nconn;   /* connections accepted */
	int nclosed; /* of which closed by the agent */
	struct link_conn *c;
	uint8_t nonce[LINK_NONCE_LEN];
	struct link_hello hello;
	int heartbeats;
	int last_health;
	bool jobs_sent;
	int nresults;
	struct link_result results[NJOBS];
	bool protocol_error;
	uint64_t welcome_max; /* max_message_bytes in WELCOME; 0: none */
	const uint8_t *big;   /* when set, one job of big_len bytes */
	size_t big_len;
	uint32_t revision; /* in CHALLENGE; 0: not said (revision 1) */
};

static char dir[64];
/* The connector type of p1 in make_config_extra(), and more of its keys. */
static const char *ptype = "maildir";
static const char *pextra = "";
/* one_big_job(): the server's revision, and the limit the HELLO said. */
static uint32_t big_revision;
static uint64_t big_hello_max;

/* --- the "classy" connector: every job throttled, Retry-After 700 ms --- */

#define CLASSY_RETRY_MS 700

struct classy {
	struct event_base *base;
	connector_done_cb done;
	void *arg;
};

struct classy_job {
	struct classy *c;
	struct connector_job *job;
};

static const char *const classy_optional[] = {"path", NULL};
static const struct config_ptype classy_keys = {.name = "classy",
						.optional = classy_optional};

static int
classy_open(const struct provider_config *pc, struct event_base *base,
	    connector_done_cb done, void *arg, void **state, char *err,
	    size_t errlen)
{
	struct classy *c = xcalloc(1, sizeof(*c));

	c->base = base;
	c->done = done;
	c->arg = arg;
	*state = c;
	return 0;
}

static void
classy_answer(evutil_socket_t fd, short what, void *arg)
{
	struct classy_job *cj = arg;
	struct connector_result res = {.outcome = OUTCOME_THROTTLED,
				       .detail = "429 slow down",
				       .retry_after_ms = CLASSY_RETRY_MS};

	cj->c->done(cj->job, &res, cj->c->arg);
	free(cj);
}

static int
classy_send(void *state, struct connector_job *job)
{
	struct classy_job *cj = xcalloc(1, sizeof(*cj));

	cj->c = state;
	cj->job = job;
	/* Never from inside send(): on the next turn of the loop. */
	if (event_base_once(cj->c->base, -1, EV_TIMEOUT, classy_answer, cj,
			    NULL) != 0) {
		free(cj);
		return -EIO;
	}
	return 0;
}

static int
classy_health(void *state)
{
	return LINK_HEALTH_OK;
}

static void
classy_close(void *state)
{
	free(state);
}

static const struct connector_ops classy_ops = {
    .name = "classy",
    .config = &classy_keys,
    .open = classy_open,
    .send = classy_send,
    .health = classy_health,
    .close = classy_close,
};
CONNECTOR_REGISTER(classy_ops)
/* The running agent, killed by teardown if an assertion fails first. */
static pid_t agent_pid;

static const char *
body(int i)
{
	static char b[NJOBS][64];

	snprintf(b[i], sizeof(b[i]), "Subject: job %d\r\n\r\nhello %d\r\n", i,
		 i);
	return b[i];
}

static void
srv_frame(struct link_conn *c, int type, const uint8_t *p, size_t n, void *arg)
{
	struct srv *s = arg;
	struct link_challenge ch;
	struct link_auth au;
	struct link_welcome w = {0};
	struct link_heartbeat hb;
	uint8_t want[LINK_MAC_LEN];
	const char *rcpt[] = {"b@example.net"};
	char mid[32];
	int i;

	switch (type) {
	case LINK_HELLO:
		if (link_decode_hello(p, n, &s->hello) != 0)
			break;
		memset(&ch, 0, sizeof(ch));
		ch.version = LINK_VERSION;
		ch.revision = s->revision;
		memcpy(ch.nonce, s->nonce, LINK_NONCE_LEN);
		if (link_encode_challenge(link_conn_output(c), &ch) != 0)
			break;
		return;
	case LINK_AUTH:
		if (link_decode_auth(p, n, &au) != 0)
			break;
		link_mac_agent(SECRET, strlen(SECRET), s->nonce, s->hello.nonce,
			       s->hello.name, want);
		if (!link_mac_equal(want, au.mac))
			break;
		link_mac_server(SECRET, strlen(SECRET), s->hello.nonce,
				s->nonce, s->hello.name, w.mac);
		/* The first server is an impostor: its MAC is wrong. */
		if (s->nconn == 1)
			w.mac[0] ^= 1;
		w.heartbeat_interval_ms = 100;
		w.max_message_bytes = s->welcome_max;
		if (link_encode_welcome(link_conn_output(c), &w) != 0)
			break;
		return;
	case LINK_HEARTBEAT:
		if (link_decode_heartbeat(p, n, &hb) != 0)
			break;
		s->heartbeats++;
		s->last_health = hb.health;
		if (!s->jobs_sent && s->big != NULL) {
			if (link_encode_job(link_conn_output(c), 200, "BIG",
					    "a@example.com", rcpt, 1, s->big,
					    s->big_len) != 0)
				break;
			s->jobs_sent = true;
		}
		if (!s->jobs_sent) {
			/* All at once: the agent must take several. */
			for (i = 0; i < NJOBS; i++) {
				snprintf(mid, sizeof(mid), "MID%d", i);
				if (link_encode_job(link_conn_output(c),
						    (uint64_t)(100 + i), mid,
						    "a@example.com", rcpt, 1,
						    body(i),
						    strlen(body(i))) != 0)
					break;
			}
			s->jobs_sent = true;
		}
		return;
	case LINK_ERROR:
		/* The agent's farewell to the impostor. */
		if (s->nconn == 1)
			return;
		break;
	case LINK_RESULT:
		if (s->nresults >= NJOBS ||
		    link_decode_result(p, n, &s->results[s->nresults]) != 0)
			break;
		s->nresults++;
		return;
	}
	s->protocol_error = true;
}

static void
srv_close(struct link_conn *c, int err, void *arg)
{
	struct srv *s = arg;

	s->nclosed++;
	link_conn_free(c);
	if (s->c == c)
		s->c = NULL;
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
	  int salen, void *arg)
{
	struct srv *s = arg;
	struct bufferevent *bev;

	bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	s->nconn++;
	/* Only one agent at a time in this test. */
	link_conn_free(s->c);
	s->c = link_conn_new(bev, LINK_CTRL_MAX, srv_frame, srv_close, s);
	memset(s->nonce, s->nconn, sizeof(s->nonce));
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* Runs agent_main in a child; returns its pid. */
static pid_t
spawn_agent(int nargs, const char **args, int close_fd)
{
	char *argv[16];
	pid_t pid;
	int i;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (close_fd >= 0)
			close(close_fd);
		for (i = 0; i < nargs && i < 15; i++)
			argv[i] = xstrdup(args[i]); /* the child exits */
		argv[i] = NULL;
		_exit(agent_main(i, argv));
	}
	return pid;
}

/* Waits up to ms for pid; returns its exit status or -1. */
static int
wait_exit(pid_t pid, int ms)
{
	int64_t deadline = mono_ms() + ms;
	struct timespec ts = {0, 10 * 1000 * 1000};
	int st;

	while (mono_ms() < deadline) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

static char *
make_config_extra(int port, bool with_secret, const char *extra)
{
	char *cfg, *text, *secret;

	cfg = xasprintf("%s/shivneri.ini", dir);
	secret = xasprintf("%s/agent.secret", dir);
	if (with_secret) {
		write_file(secret, SECRET "\n");
		assert_int_equal(chmod(secret, 0600), 0);
	} else
		(void)unlink(secret);
	text = xasprintf("[server]\n"
			 "data_dir = %s/data\n"
			 "agent_listen = 127.0.0.1:%d\n"
			 "agent_secret_file = %s\n"
			 "%s"
			 "\n"
			 "[provider.p1]\n"
			 "type = %s\n"
			 "spawn = no\n"
			 "path = %s/md\n"
			 "weight = 3\n"
			 "priority = 7\n"
			 "max_in_flight = 5\n"
			 "%s",
			 dir, port, secret, extra, ptype, dir, pextra);
	write_file(cfg, text);
	free(text);
	free(secret);
	return cfg;
}

static char *
make_config(int port, bool with_secret)
{
	return make_config_extra(port, with_secret, "");
}

/* A listening socket on 127.0.0.1; its port in *port. */
static int
listen_local(int *port)
{
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/*
 * Runs an agent whose file says max_message_bytes = file_max against a
 * server that announces welcome_max (0: says nothing) and sends one job
 * of len bytes; returns its result's outcome (-1: none in time).
 */
static int
one_big_job(const char *file_max, uint64_t welcome_max, size_t len)
{
	struct srv s;
	struct evconnlistener *l;
	struct event *deadline;
	struct timeval tv = {60, 0};
	bool expired = false;
	char *cfg, *extra, *path;
	const char *args[5] = {"agent", "-c", NULL, "-p", "p1"};
	uint8_t *big = malloc(len);
	struct stat st;
	int fd, port, outcome = -1;

	assert_non_null(big);
	memset(big, 'x', len);
	memcpy(big, "Subject: big\r\n\r\n", 16);
	fd = listen_local(&port);
	extra = xasprintf("max_message_bytes = %s\n", file_max);
	cfg = make_config_extra(port, true, extra);
	args[2] = cfg;
	agent_pid = spawn_agent(5, args, fd);

	memset(&s, 0, sizeof(s));
	s.base = event_base_new();
	s.welcome_max = welcome_max;
	s.revision = big_revision;
	s.big = big;
	s.big_len = len;
	assert_int_equal(evutil_make_socket_nonblocking(fd), 0);
	l = evconnlistener_new(s.base, accept_cb, &s, LEV_OPT_CLOSE_ON_FREE, -1,
			       fd);
	assert_non_null(l);
	deadline = evtimer_new(s.base, deadline_cb, &expired);
	evtimer_add(deadline, &tv);
	/* A link dropped over the frame cap shows as a third connection. */
	while (s.nresults < 1 && !expired && !s.protocol_error && s.nconn < 3)
		event_base_loop(s.base, EVLOOP_ONCE);
	assert_false(s.protocol_error);
	big_hello_max = s.hello.max_message_bytes;
	if (s.nresults == 1) {
		assert_int_equal(s.results[0].job_id, 200);
		outcome = s.results[0].outcome;
	}
	if (outcome == 0) {
		path = xasprintf("%s/md/new/%s", dir,
				 s.results[0].provider_message_id);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal((size_t)st.st_size, len);
		free(path);
	}
	assert_int_equal(kill(agent_pid, SIGTERM), 0);
	assert_int_equal(wait_exit(agent_pid, 10000), 0);
	agent_pid = 0;
	link_conn_free(s.c);
	event_free(deadline);
	evconnlistener_free(l);
	event_base_free(s.base);
	free(extra);
	free(cfg);
	free(big);
	return outcome;
}

/*
 * One limit at every layer (issue 5, defect 3): a message within the
 * server's max_message_bytes travels as one JOB frame and is delivered,
 * even above the old fixed 65 MiB frame cap and even when the agent's own
 * file says less; a server that does not announce its limit leaves the
 * agent with its file's, and a bigger message is refused as permanent
 * instead of dropping the link.
 */
static void
test_agent_frame_follows_limit(void **state)
{
	const size_t big = 70u * 1024 * 1024;

	assert_int_equal(one_big_job("1024", big, big), 0);
	assert_int_equal(one_big_job("4096", 0, 4096), 0);
	assert_int_equal(one_big_job("2048", 0, 4096), 2); /* PERMANENT */
}

static void
test_agent_end_to_end(void **state)
{
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	struct srv s;
	struct evconnlistener *l;
	struct event *deadline;
	struct timeval tv = {20, 0};
	bool expired = false;
	char *cfg, *path, *data;
	const char *args[5] = {"agent", "-c", NULL, "-p", "p1"};
	size_t len;
	pid_t pid;
	int fd, i;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
	cfg = make_config(ntohs(sin.sin_port), true);
	args[2] = cfg;
	pid = spawn_agent(5, args, fd);
	agent_pid = pid;

	memset(&s, 0, sizeof(s));
	s.base = event_base_new();
	assert_int_equal(evutil_make_socket_nonblocking(fd), 0);
	l = evconnlistener_new(s.base, accept_cb, &s, LEV_OPT_CLOSE_ON_FREE, -1,
			       fd);
	assert_non_null(l);
	deadline = evtimer_new(s.base, deadline_cb, &expired);
	evtimer_add(deadline, &tv);
	while (s.nresults < NJOBS && !expired && !s.protocol_error)
		event_base_loop(s.base, EVLOOP_ONCE);

	assert_false(s.protocol_error);
	/* The impostor was dropped, and the agent came back. */
	assert_int_equal(s.nconn, 2);
	assert_int_equal(s.nclosed, 1);
	assert_string_equal(s.hello.name, "p1");
	assert_string_equal(s.hello.type, "maildir");
	assert_int_equal(s.hello.weight, 3);
	assert_int_equal(s.hello.priority, 7);
	assert_int_equal(s.hello.max_in_flight, 5);
	assert_true(s.hello.pid == pid);
	assert_true(s.heartbeats >= 1);
	assert_int_equal(s.last_health, LINK_HEALTH_OK);
	assert_int_equal(s.nresults, NJOBS);
	for (i = 0; i < NJOBS; i++) {
		struct link_result *r = &s.results[i];
		int k = (int)r->job_id - 100;
		assert_true(k >= 0 && k < NJOBS);
		assert_int_equal(r->outcome, 0); /* OUTCOME_DELIVERED */
		path = xasprintf("%s/md/new/%s", dir, r->provider_message_id);
		assert_int_equal(file_read_all(path, 4096, &data, &len), 0);
		assert_int_equal(len, strlen(body(k)));
		assert_memory_equal(data, body(k), len);
		free(data);
		free(path);
	}

	/* Heartbeats keep coming (interval 100 ms). */
	i = s.heartbeats;
	while (s.heartbeats < i + 2 && !expired)
		event_base_loop(s.base, EVLOOP_ONCE);
	assert_true(s.heartbeats >= i + 2);

	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(wait_exit(pid, 10000), 0);
	agent_pid = 0;

	link_conn_free(s.c);
	event_free(deadline);
	evconnlistener_free(l);
	event_base_free(s.base);
	free(cfg);
}

/*
 * The classy connector's three throttled answers, as a server of that
 * revision receives them (the results in s).
 */
static void
classy_results(uint32_t revision, struct srv *s)
{
	struct evconnlistener *l;
	struct event *deadline;
	struct timeval tv = {20, 0};
	bool expired = false;
	char *cfg;
	const char *args[5] = {"agent", "-c", NULL, "-p", "p1"};
	int fd, port;

	ptype = "classy";
	fd = listen_local(&port);
	cfg = make_config(port, true);
	ptype = "maildir";
	args[2] = cfg;
	agent_pid = spawn_agent(5, args, fd);
	memset(s, 0, sizeof(*s));
	s->base = event_base_new();
	s->revision = revision;
	assert_int_equal(evutil_make_socket_nonblocking(fd), 0);
	l = evconnlistener_new(s->base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE, -1,
			       fd);
	assert_non_null(l);
	deadline = evtimer_new(s->base, deadline_cb, &expired);
	evtimer_add(deadline, &tv);
	while (s->nresults < NJOBS && !expired && !s->protocol_error)
		event_base_loop(s->base, EVLOOP_ONCE);
	assert_false(s->protocol_error);
	assert_int_equal(s->nresults, NJOBS);
	assert_int_equal(kill(agent_pid, SIGTERM), 0);
	assert_int_equal(wait_exit(agent_pid, 10000), 0);
	agent_pid = 0;
	link_conn_free(s->c);
	s->c = NULL;
	event_free(deadline);
	evconnlistener_free(l);
	event_base_free(s->base);
	free(cfg);
}

static void
test_agent_classes_follow_server_revision(void **state)
{
	struct srv s;
	int i;

	classy_results(LINK_REVISION, &s);
	for (i = 0; i < NJOBS; i++) {
		assert_int_equal(s.results[i].outcome, OUTCOME_THROTTLED);
		assert_int_equal(s.results[i].retry_after_ms, CLASSY_RETRY_MS);
		assert_string_equal(s.results[i].detail, "429 slow down");
	}
	/* An older server: no revision in CHALLENGE. */
	classy_results(0, &s);
	for (i = 0; i < NJOBS; i++) {
		assert_int_equal(s.results[i].outcome, OUTCOME_TRANSIENT);
		assert_int_equal(s.results[i].retry_after_ms, 0);
		assert_string_equal(s.results[i].detail, "429 slow down");
	}
}

static void
test_agent_config_errors(void **state)
{
	char *cfg = make_config(1, true);
	const char *unknown[] = {"agent", "-c", cfg, "-p", "nope"};
	const char *noname[] = {"agent", "-c", cfg};
	const char *badopt[] = {"agent", "-c", cfg, "-p", "p1", "--bogus"};
	const char *nofile[] = {"agent", "-c", "/nonexistent/x.ini", "-p",
				"p1"};
	const char *ok[] = {"agent", "-c", cfg, "-p", "p1"};

	assert_int_equal(wait_exit(spawn_agent(5, unknown, -1), 10000), 2);
	assert_int_equal(wait_exit(spawn_agent(3, noname, -1), 10000), 2);
	assert_int_equal(wait_exit(spawn_agent(6, badopt, -1), 10000), 2);
	assert_int_equal(wait_exit(spawn_agent(5, nofile, -1), 10000), 2);
	free(make_config(1, false)); /* no secret file */
	assert_int_equal(wait_exit(spawn_agent(5, ok, -1), 10000), 2);
	free(cfg);
}

/*
 * The provider's own limit ([provider.NAME] max_message_bytes): announced
 * in HELLO, and a JOB over it is answered too_large without reaching the
 * connector (permanent to a server older than revision 3); one within it
 * is delivered.  A maildir provider without the key announces nothing.
 */
static void
test_agent_provider_limit(void **state)
{
	pextra = "max_message_bytes = 2048\n";
	big_revision = LINK_REVISION;
	assert_int_equal(one_big_job("1048576", 0, 4096), OUTCOME_TOO_LARGE);
	assert_int_equal(big_hello_max, 2048);
	big_revision = 2;
	assert_int_equal(one_big_job("1048576", 0, 4096), OUTCOME_PERMANENT);
	big_revision = LINK_REVISION;
	assert_int_equal(one_big_job("1048576", 0, 2048), OUTCOME_DELIVERED);
	pextra = "";
	assert_int_equal(one_big_job("1048576", 0, 4096), OUTCOME_DELIVERED);
	assert_int_equal(big_hello_max, 0);
}

static void
rm_rf(const char *path)
{
	char *cmd = xasprintf("rm -rf '%s'", path);

	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static int
setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/test_agent.XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int
teardown(void **state)
{
	int st;

	if (agent_pid > 0) {
		kill(agent_pid, SIGKILL);
		waitpid(agent_pid, &st, 0);
		agent_pid = 0;
	}
	rm_rf(dir);
	pextra = "";
	big_revision = 0;
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_agent_classes_follow_server_revision, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_agent_end_to_end, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_agent_config_errors, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_agent_frame_follows_limit,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_agent_provider_limit, setup,
					    teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
