/*
 * Unit tests of the supervisor, with shell scripts standing in for the
 * agent binary: each start appends its arguments to a log file, then the
 * script sleeps, ignores SIGTERM, or exits at once, as the test needs.
 * Everything waits on a condition with a deadline while running the loop;
 * nothing sleeps and hopes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/log.h"
#include "common/util.h"
#include "server/supervisor.h"

#include <event2/event.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_MS 10000

struct fixture {
	char *dir;
	char *log; /* one line of arguments per start */
	struct event_base *base;
	struct event *tick;
};

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Writes an executable script that logs its arguments, then runs body. */
static char *
script(struct fixture *f, const char *name, const char *body)
{
	char *path = xasprintf("%s/%s", f->dir, name);
	char *text =
	    xasprintf("#!/bin/sh\necho \"$@\" >> '%s'\n%s\n", f->log, body);
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0700);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	free(text);
	return path;
}

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char tmpl[] = "/tmp/shivneri-test-sv-XXXXXX";
	struct timeval tv = {0, 20000};

	assert_non_null(mkdtemp(tmpl));
	f->dir = xstrdup(tmpl);
	f->log = xasprintf("%s/starts.log", f->dir);
	f->base = event_base_new();
	assert_non_null(f->base);
	/* A ticking timer bounds each EVLOOP_ONCE so deadlines are checked. */
	f->tick = event_new(f->base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(f->tick, &tv);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char *cmd = xasprintf("rm -rf '%s'", f->dir);

	event_free(f->tick);
	event_base_free(f->base);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(f->log);
	free(f->dir);
	free(f);
	return 0;
}

static int
count_starts(const struct fixture *f)
{
	char *text = NULL;
	size_t len = 0, i;
	int n = 0;

	if (file_read_all(f->log, 1 << 20, &text, &len) != 0)
		return 0;
	for (i = 0; i < len; i++)
		if (text[i] == '\n')
			n++;
	free(text);
	return n;
}

/* Dead means gone or a zombie (reaped by nobody yet in a container). */
static bool
dead(pid_t pid)
{
	char path[64], *text = NULL, *p;
	size_t len;
	bool z;

	if (kill(pid, 0) == -1 && errno == ESRCH)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (file_read_all(path, 4096, &text, &len) != 0)
		return true;
	p = strrchr(text, ')');
	z = p != NULL && (p[2] == 'Z' || p[2] == 'X');
	free(text);
	return z;
}

struct wait_ctx {
	struct supervisor *sv;
	const char *name;
	pid_t old;
	int starts;
	const struct fixture *f;
};

static bool
new_pid(void *arg)
{
	struct wait_ctx *w = arg;
	pid_t p = supervisor_pid(w->sv, w->name);

	return p > 0 && p != w->old;
}

static bool
starts_at_least(void *arg)
{
	struct wait_ctx *w = arg;

	return count_starts(w->f) >= w->starts;
}

static bool
flag_set(void *arg)
{
	return *(bool *)arg;
}

/* Runs the loop until cond holds; false at the deadline. */
static bool
run_until(struct fixture *f, bool (*cond)(void *), void *arg, int ms)
{
	int64_t end = mono_ms() + ms;

	while (!cond(arg)) {
		if (mono_ms() > end)
			return false;
		event_base_loop(f->base, EVLOOP_ONCE);
	}
	return true;
}

static void
done_cb(void *arg)
{
	*(bool *)arg = true;
}

static void
test_restart_and_stop(void **state)
{
	struct fixture *f = *state;
	char *exe = script(f, "agent.sh", "exec sleep 30");
	struct supervisor *sv;
	struct wait_ctx w;
	pid_t p1, p2;
	bool done = false;
	char *text = NULL;
	size_t len;
	int status;

	sv = supervisor_new(f->base, exe, "/etc/x.ini", "127.0.0.1:9");
	assert_int_equal(supervisor_spawn(sv, "prov-a"), 0);
	assert_int_equal(supervisor_spawn(sv, "prov-a"), -EEXIST);
	assert_int_equal(supervisor_pid(sv, "nobody"), 0);
	p1 = supervisor_pid(sv, "prov-a");
	assert_true(p1 > 0);
	assert_int_equal(kill(p1, 0), 0);

	/* The agent got the arguments of the contract. */
	memset(&w, 0, sizeof(w));
	w.f = f;
	w.starts = 1;
	assert_true(run_until(f, starts_at_least, &w, DEADLINE_MS));
	assert_int_equal(file_read_all(f->log, 4096, &text, &len), 0);
	assert_string_equal(
	    text, "agent -p prov-a -c /etc/x.ini --server 127.0.0.1:9\n");
	free(text);

	/* Killed: reaped and started again with a new pid. */
	assert_int_equal(kill(p1, SIGKILL), 0);
	w.sv = sv;
	w.name = "prov-a";
	w.old = p1;
	assert_true(run_until(f, new_pid, &w, DEADLINE_MS));
	p2 = supervisor_pid(sv, "prov-a");
	assert_int_not_equal(p2, p1);
	assert_int_equal(kill(p2, 0), 0);
	/* The supervisor reaped the first one: it is not our child now. */
	assert_int_equal(waitpid(p1, &status, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);

	/* Let the new one log its start before it is told to stop. */
	w.starts = 2;
	assert_true(run_until(f, starts_at_least, &w, DEADLINE_MS));

	supervisor_stop(sv, 5000, done_cb, &done);
	assert_int_equal(supervisor_spawn(sv, "prov-b"), -ESHUTDOWN);
	assert_true(run_until(f, flag_set, &done, DEADLINE_MS));
	assert_int_equal(supervisor_pid(sv, "prov-a"), 0);
	assert_true(dead(p2));
	assert_int_equal(waitpid(p2, &status, WNOHANG), -1);
	/* Stopped for good: no restart. */
	assert_int_equal(count_starts(f), 2);
	supervisor_free(sv);
	free(exe);
}

static void
test_sigkill_after_grace(void **state)
{
	struct fixture *f = *state;
	/* SIG_IGN survives exec: sleep then ignores SIGTERM. */
	char *body = xasprintf("trap '' TERM\necho ready >> '%s'\n"
			       "exec sleep 30",
			       f->log);
	char *exe = script(f, "stubborn.sh", body);
	struct supervisor *sv;
	struct wait_ctx w;
	bool done = false;
	int64_t t0;
	pid_t p;

	sv = supervisor_new(f->base, exe, NULL, "127.0.0.1:9");
	assert_int_equal(supervisor_spawn(sv, "x"), 0);
	p = supervisor_pid(sv, "x");
	assert_true(p > 0);
	/* Wait until the trap is set: "ready" is logged after it. */
	memset(&w, 0, sizeof(w));
	w.f = f;
	w.starts = 2;
	assert_true(run_until(f, starts_at_least, &w, DEADLINE_MS));
	t0 = mono_ms();
	supervisor_stop(sv, 300, done_cb, &done);
	assert_true(run_until(f, flag_set, &done, DEADLINE_MS));
	assert_true(mono_ms() - t0 >= 250);
	assert_true(dead(p));
	assert_int_equal(supervisor_pid(sv, "x"), 0);
	supervisor_free(sv);
	free(body);
	free(exe);
}

static void
test_backoff(void **state)
{
	struct fixture *f = *state;
	char *exe = script(f, "crash.sh", "exit 3");
	struct supervisor *sv;
	struct wait_ctx w;
	bool done = false;
	int64_t t0;
	int n;

	sv = supervisor_new(f->base, exe, NULL, "127.0.0.1:9");
	t0 = mono_ms();
	assert_int_equal(supervisor_spawn(sv, "c"), 0);
	memset(&w, 0, sizeof(w));
	w.f = f;
	w.starts = 4;
	assert_true(run_until(f, starts_at_least, &w, DEADLINE_MS));
	/* Three restarts waited 100 + 200 + 400 ms at least. */
	assert_true(mono_ms() - t0 >= 700);
	supervisor_stop(sv, 1000, done_cb, &done);
	assert_true(run_until(f, flag_set, &done, DEADLINE_MS));
	n = count_starts(f);
	assert_true(n >= 4 && n <= 5);
	supervisor_free(sv);
	free(exe);
}

static void
test_stop_empty(void **state)
{
	struct fixture *f = *state;
	struct supervisor *sv;
	bool done = false;

	sv = supervisor_new(f->base, "/nonexistent", NULL, "127.0.0.1:9");
	supervisor_stop(sv, 100, done_cb, &done);
	/* Never from inside supervisor_stop: on the loop. */
	assert_false(done);
	assert_true(run_until(f, flag_set, &done, DEADLINE_MS));
	supervisor_free(sv);
}

static void
test_free_kills(void **state)
{
	struct fixture *f = *state;
	char *exe = script(f, "agent.sh", "exec sleep 30");
	struct supervisor *sv;
	int status;
	pid_t p;

	sv = supervisor_new(f->base, exe, NULL, "127.0.0.1:9");
	assert_int_equal(supervisor_spawn(sv, "a"), 0);
	p = supervisor_pid(sv, "a");
	assert_true(p > 0);
	supervisor_free(sv);
	/* Killed and reaped. */
	assert_int_equal(waitpid(p, &status, WNOHANG), -1);
	assert_true(dead(p));
	free(exe);
}

/* The agent goes when the server is killed (PR_SET_PDEATHSIG). */
static void
test_parent_death(void **state)
{
	struct fixture *f = *state;
	char *exe = script(f, "agent.sh", "exec sleep 30");
	int fds[2], status;
	pid_t mid, agent = 0;
	int64_t end;

	assert_int_equal(pipe(fds), 0);
	mid = fork();
	assert_true(mid >= 0);
	if (mid == 0) {
		struct event_base *base = event_base_new();
		struct supervisor *sv;
		pid_t p;

		sv = supervisor_new(base, exe, NULL, "127.0.0.1:9");
		if (supervisor_spawn(sv, "a") != 0)
			_exit(1);
		p = supervisor_pid(sv, "a");
		if (write(fds[1], &p, sizeof(p)) != sizeof(p))
			_exit(1);
		/* The server killed with -9: nothing cleaned up. */
		(void)raise(SIGKILL);
		_exit(1);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &agent, sizeof(agent)),
			 (ssize_t)sizeof(agent));
	close(fds[0]);
	assert_int_equal(waitpid(mid, &status, 0), mid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_true(agent > 0);
	end = mono_ms() + DEADLINE_MS;
	while (!dead(agent) && mono_ms() < end)
		event_base_loop(f->base, EVLOOP_ONCE);
	assert_true(dead(agent));
	free(exe);
}

static bool
is_held(void *arg)
{
	struct wait_ctx *w = arg;

	return supervisor_held(w->sv, w->name) != NULL;
}

/* Runs the loop for ms whatever happens. */
static void
run_for(struct fixture *f, int ms)
{
	int64_t end = mono_ms() + ms;

	while (mono_ms() < end)
		event_base_loop(f->base, EVLOOP_ONCE);
}

/* Our stderr and stdout, made a pipe that a thread drains and counts. */
struct err_sink {
	int saved;     /* the real stderr, restored at the end */
	int saved_out; /* and stdout */
	int rd;
	pthread_t th;
	size_t bytes;
	char keep[1 << 20]; /* the first bytes, for tests that read them */
	size_t nkeep;
	pthread_mutex_t mu;
};

static void *
sink_run(void *arg)
{
	struct err_sink *k = arg;
	char buf[65536];
	ssize_t n;

	while ((n = read(k->rd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		pthread_mutex_lock(&k->mu);
		k->bytes += (size_t)n;
		if ((size_t)n > sizeof(k->keep) - k->nkeep)
			n = (ssize_t)(sizeof(k->keep) - k->nkeep);
		memcpy(k->keep + k->nkeep, buf, (size_t)n);
		k->nkeep += (size_t)n;
		pthread_mutex_unlock(&k->mu);
	}
	return NULL;
}

static void
sink_open(struct err_sink *k)
{
	int fds[2];

	memset(k, 0, sizeof(*k));
	assert_int_equal(pthread_mutex_init(&k->mu, NULL), 0);
	assert_int_equal(pipe(fds), 0);
	fflush(stdout);
	k->saved = dup(STDERR_FILENO);
	k->saved_out = dup(STDOUT_FILENO);
	assert_true(k->saved >= 0 && k->saved_out >= 0);
	assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
	assert_true(dup2(fds[1], STDOUT_FILENO) >= 0);
	close(fds[1]);
	k->rd = fds[0];
	assert_int_equal(pthread_create(&k->th, NULL, sink_run, k), 0);
}

static size_t
sink_bytes(struct err_sink *k)
{
	size_t n;

	pthread_mutex_lock(&k->mu);
	n = k->bytes;
	pthread_mutex_unlock(&k->mu);
	return n;
}

static void
sink_close(struct err_sink *k)
{
	/* The pipe's last writers are our fds 1 and 2: the thread sees EOF
	 * (a flooder that outlived the test may hold it a moment longer). */
	fflush(stdout);
	assert_true(dup2(k->saved, STDERR_FILENO) >= 0);
	assert_true(dup2(k->saved_out, STDOUT_FILENO) >= 0);
	close(k->saved);
	close(k->saved_out);
	assert_int_equal(pthread_join(k->th, NULL), 0);
	close(k->rd);
	pthread_mutex_destroy(&k->mu);
}

/*
 * Runs one child, name (its script name.sh), whose script runs body, with
 * our stderr and stdout in a sink; during (NULL: the loop runs for ms)
 * runs the loop while the child writes.  The child is then stopped and
 * the sink closed, its kept bytes left to read.  The caller frees it.
 */
static struct err_sink *
stderr_collect(struct fixture *f, const char *name, const char *body, int ms,
	       void (*during)(struct fixture *, struct err_sink *, void *),
	       void *arg)
{
	char *script_name = xasprintf("%s.sh", name);
	char *exe = script(f, script_name, body);
	struct err_sink *k = xcalloc(1, sizeof(*k));
	struct supervisor *sv;
	bool done = false;

	sink_open(k);
	sv = supervisor_new(f->base, exe, NULL, "127.0.0.1:9");
	assert_int_equal(supervisor_spawn(sv, name), 0);
	if (during != NULL)
		during(f, k, arg);
	else
		run_for(f, ms);
	supervisor_stop(sv, 1000, done_cb, &done);
	assert_true(run_until(f, flag_set, &done, DEADLINE_MS));
	supervisor_free(sv);
	sink_close(k);
	free(exe);
	free(script_name);
	return k;
}

struct late {
	int64_t fired_ms; /* 0: not yet */
};

static void
late_cb(evutil_socket_t fd, short what, void *arg)
{
	struct late *l = arg;

	(void)fd;
	(void)what;
	l->fired_ms = mono_ms();
}

static bool
late_fired(void *arg)
{
	return ((struct late *)arg)->fired_ms != 0;
}

/* What the flood test measures while the child writes. */
struct flood {
	struct late l;
	int64_t t0;    /* when the timer was armed */
	size_t passed; /* bytes passed on by the end of the flood */
};

static void
flood_during(struct fixture *f, struct err_sink *k, void *arg)
{
	struct flood *fl = arg;
	struct timeval tv = {0, 100000};
	struct event *t;

	/* Give the flood time to start before the timer is armed. */
	run_for(f, 300);
	t = evtimer_new(f->base, late_cb, &fl->l);
	fl->t0 = mono_ms();
	evtimer_add(t, &tv);
	assert_true(run_until(f, late_fired, &fl->l, DEADLINE_MS));
	/* Then through the rest of the flood and past it. */
	run_for(f, 2200);
	fl->passed = sink_bytes(k);
	event_free(t);
}

/*
 * An agent that floods its stderr (a logging loop gone wrong, or garbage)
 * must not be copied to the server's stderr without bound, nor stall the
 * server's loop.  Until 2026-11-30 every byte was passed on: 126 MB in the
 * 2 s of this flood.  The loop was not stalled here (the sink drains faster
 * than the writer fills), but a reader that went on until the pipe was
 * empty could be held for as long as the writer kept ahead of it, so the
 * timer is checked as well.
 */
static void
test_stderr_flood(void **state)
{
	struct flood fl = {{0}, 0, 0};

	free(stderr_collect(*state, "flood",
			    "timeout 2 yes 'garbage garbage garbage garbage "
			    "garbage garbage garbage' >&2 &\n"
			    "timeout 2 yes 'stdout garbage too'\nexec sleep 30",
			    0, flood_during, &fl));
	print_message("timer late by %lld ms, %zu bytes passed on\n",
		      (long long)(fl.l.fired_ms - fl.t0 - 100), fl.passed);
	assert_true(fl.l.fired_ms - fl.t0 < 600);
	/* 64 KiB at the start, 64 KiB a second of the 2 s flood, and a few
	 * lines of our own. */
	assert_true(fl.passed < 5 * 65536);
}

/* Each line the sink kept, in turn; false after the last. */
static bool
sink_line(const struct err_sink *k, size_t *off, const char **line, size_t *len)
{
	const char *nl;

	if (*off >= k->nkeep)
		return false;
	*line = k->keep + *off;
	nl = memchr(*line, '\n', k->nkeep - *off);
	assert_non_null(nl); /* every line passed on is ended */
	*len = (size_t)(nl - *line);
	*off += *len + 1;
	return true;
}

/* One of the supervisor's own log lines ("TIME LEVEL supervisor ..."). */
static bool
own_line(const char *line, size_t len)
{
	return len > 30 && memcmp(line, "20", 2) == 0 &&
	       memmem(line, len, " supervisor ", 12) != NULL;
}

#define PATTERN "L0123456789abcdefghijklmnopqrstuvwxyz-end"

/*
 * Under the budget a line goes whole or not at all.  Until 2026-11-30 the
 * bucket cut a line at its last token and the rest of it ran into the next
 * line the server wrote ("...0123456789abc2026-11-30T18:49:45.109Z warn
 * supervisor - stderr_dropped ..."): one line that was two, in the log.
 */
static void
test_stderr_lines_whole(void **state)
{
	struct err_sink *k = stderr_collect(
	    *state, "lines", "timeout 1.5 yes '" PATTERN "' >&2\nexec sleep 30",
	    2000, NULL, NULL);
	size_t off = 0, len, ours = 0, theirs = 0;
	const char *line;

	while (sink_line(k, &off, &line, &len)) {
		if (len == strlen(PATTERN) && memcmp(line, PATTERN, len) == 0)
			theirs++;
		else if (own_line(line, len))
			ours++;
		else
			fail_msg("a line cut or run together: \"%.*s\"",
				 (int)(len > 200 ? 200 : len), line);
	}
	print_message("%zu of the agent's lines, %zu of ours\n", theirs, ours);
	assert_true(theirs > 1000);
	assert_true(ours >= 1); /* the drops were reported */
	free(k);
}

/*
 * A line longer than a log line is cut there and ended; a last line
 * without its newline is ended when the child is gone, not left for the
 * server's next line to finish.
 */
static void
test_stderr_long_and_last_line(void **state)
{
	struct err_sink *k =
	    stderr_collect(*state, "long",
			   "head -c 20000 /dev/zero | tr '\\0' x >&2\n"
			   "echo >&2\nprintf 'the end' >&2\nexec sleep 30",
			   500, NULL, NULL);
	size_t off = 0, len, i;
	const char *line;

	/* Our own lines ("started") may come first and between. */
	while (sink_line(k, &off, &line, &len) && own_line(line, len))
		;
	assert_int_equal(len, LOG_LINE_MAX - 1);
	for (i = 0; i < len; i++)
		assert_int_equal(line[i], 'x');
	/* Then the end, ended. */
	while (sink_line(k, &off, &line, &len) && own_line(line, len))
		;
	assert_int_equal(len, 7);
	assert_memory_equal(line, "the end", 7);
	free(k);
}

/* The beat the watch reads: now while beating, else the last one. */
struct beats {
	bool beating;
	int64_t last;
};

static int64_t
beat_of(const char *name, void *arg)
{
	struct beats *b = arg;

	(void)name;
	if (b->beating)
		b->last = mono_ms();
	return b->last;
}

/*
 * An agent that hangs (alive, no heartbeats) is killed once it has been
 * silent for hang_ms, and restarted; one that beats is left alone, a
 * beat forgotten (0: its link dropped) does not count as silence since
 * the start, and neither does a time our own loop was held.  Until 2026-11-30 a
 * hung agent was never restarted.
 */
static void
test_hung_killed(void **state)
{
	struct fixture *f = *state;
	char *exe = script(f, "hang.sh", "exec sleep 30");
	struct beats b = {false, 0};
	struct timespec ts = {2, 0};
	struct supervisor *sv;
	struct wait_ctx w;
	bool done = false;
	pid_t first;

	sv = supervisor_new(f->base, exe, NULL, "127.0.0.1:9");
	supervisor_watch(sv, beat_of, &b, 2000);
	assert_int_equal(supervisor_spawn(sv, "h"), 0);
	first = supervisor_pid(sv, "h");
	/* Our loop held for 2 s (a long start): no agent could beat. */
	nanosleep(&ts, NULL);
	run_for(f, 700);
	assert_int_equal(supervisor_pid(sv, "h"), first);
	b.beating = true;
	run_for(f, 2500);
	assert_int_equal(supervisor_pid(sv, "h"), first);
	/* Its link drops: the registry says 0, the last beat still holds. */
	b.beating = false;
	b.last = 0;
	run_for(f, 700);
	assert_int_equal(supervisor_pid(sv, "h"), first);
	memset(&w, 0, sizeof(w));
	w.sv = sv;
	w.name = "h";
	w.old = first;
	assert_true(run_until(f, new_pid, &w, DEADLINE_MS));
	assert_true(dead(first));
	supervisor_stop(sv, 1000, done_cb, &done);
	assert_true(run_until(f, flag_set, &done, DEADLINE_MS));
	supervisor_free(sv);
	free(exe);
}

/*
 * Issue 5, defect 9: an agent that exits 2 (configuration error) is not
 * restarted for ever.  It is held with its status and last stderr line
 * as the reason, and started again when its configuration file changes
 * or on supervisor_retry_held() (the server's SIGHUP).
 */
static void
test_config_error_held(void **state)
{
	struct fixture *f = *state;
	char *exe = script(f, "agent.sh",
			   "echo 'x.ini:3: agent_secret_file: nope' >&2\n"
			   "exit 2");
	char *ini = xasprintf("%s/x.ini", f->dir);
	struct supervisor *sv;
	struct wait_ctx w;
	const char *why;
	FILE *fp;

	fp = fopen(ini, "w");
	assert_non_null(fp);
	fputs("[server]\n", fp);
	assert_int_equal(fclose(fp), 0);
	sv = supervisor_new(f->base, exe, ini, "127.0.0.1:9");
	assert_int_equal(supervisor_spawn(sv, "prov-a"), 0);
	memset(&w, 0, sizeof(w));
	w.f = f;
	w.sv = sv;
	w.name = "prov-a";
	assert_true(run_until(f, is_held, &w, DEADLINE_MS));
	why = supervisor_held(sv, "prov-a");
	assert_non_null(strstr(why, "exited 2"));
	assert_non_null(strstr(why, "x.ini:3: agent_secret_file: nope"));
	assert_null(supervisor_held(sv, "nobody"));
	/* The backoff would have restarted it within 100 ms; it waits. */
	run_for(f, 700);
	assert_int_equal(count_starts(f), 1);
	assert_int_equal(supervisor_pid(sv, "prov-a"), 0);

	/* SIGHUP: tried again at once, and held again. */
	supervisor_retry_held(sv);
	assert_null(supervisor_held(sv, "prov-a"));
	w.starts = 2;
	assert_true(run_until(f, starts_at_least, &w, DEADLINE_MS));
	assert_true(run_until(f, is_held, &w, DEADLINE_MS));

	/* Its file changes: tried again. */
	fp = fopen(ini, "a");
	assert_non_null(fp);
	fputs("data_dir = /tmp/elsewhere\n", fp);
	assert_int_equal(fclose(fp), 0);
	w.starts = 3;
	assert_true(run_until(f, starts_at_least, &w, DEADLINE_MS));
	assert_true(run_until(f, is_held, &w, DEADLINE_MS));
	run_for(f, 300);
	assert_int_equal(count_starts(f), 3);

	supervisor_free(sv);
	free(ini);
	free(exe);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_config_error_held, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_restart_and_stop, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_sigkill_after_grace, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_backoff, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_empty, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_kills, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_parent_death, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stderr_flood, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stderr_lines_whole, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_stderr_long_and_last_line,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hung_killed, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
