/*
 * The supervisor of spawned agents.  Each child is one provider's agent:
 * fork + execv of our own binary ("agent -p NAME [-c FILE] --server
 * ADDR").  A child that dies is restarted after a backoff that starts at
 * 100 ms and doubles up to 30 s, and falls back to 100 ms once a child
 * has lived 10 s: a crashing agent costs a fork every 30 s at worst, one
 * that dies now and then comes back at once (Postfix's master throttles
 * the same way).
 *
 * SIGCHLD arrives through a libevent signal event, so reaping runs on the
 * loop like everything else; it reaps with waitpid(-1, WNOHANG) until
 * nothing is left, since signals coalesce.  Children get PR_SET_PDEATHSIG
 * (SIGTERM) so that a server killed with -9 takes its agents along; the
 * check of getppid() after prctl() closes the race where the parent died
 * before prctl() ran.  A child gets a clean signal mask and default
 * dispositions, and none of the server's descriptors besides 0, 1 and 2.
 *
 * Failures: a fork that fails at a restart is retried with the backoff; an
 * execv that fails makes the child exit 127, which looks like (and is
 * throttled like) an agent that crashed.  An agent that exits 2 said its
 * configuration is wrong: starting it again cannot help, so it is held
 * (logged with its status and last stderr line, which supervisor_held()
 * exposes) until its configuration file changes (size, mtime or inode,
 * polled every second) or supervisor_retry_held() is called (SIGHUP).
 *
 * An agent can hang without dying (a library call that blocks, a
 * deadlock, SIGSTOP): its provider goes down on the heartbeat timeout and
 * its messages move on, but nothing would ever restart it.  With
 * supervisor_watch(), a child whose provider has not had a heartbeat for
 * hang_ms (counted from its start when it never beat) is killed with
 * SIGKILL, once, with one log line, and restarted like any that died.
 *
 * A child's stderr (and its stdout, where an agent writes nothing) is a
 * pipe to us: its lines are passed on to our own stderr unchanged (where
 * the agent's lines went before), and the last complete line is kept,
 * sanitized, for the reason of a hold.  What is passed on is held to
 * SV_ERR_RATE bytes a second per child (a token bucket): an agent that
 * floods its stderr, a logging loop gone wrong, would otherwise fill the
 * server's log disk at the pipe's speed (126 MB in 2 s, measured).  The
 * bucket decides per line, at its first byte, and a line goes whole or not
 * at all: cut at the budget, its rest ran into the next line the server
 * wrote, and a reader of the log saw one line that was two.  A line passed
 * on is written once its newline has come (one write(2) with the chunk's
 * other lines, as the server's own lines are), so ours never land inside
 * it; a longer one than LOG_LINE_MAX is cut there and ended, and its rest
 * dropped.  The excess is still read (so the child never blocks on its
 * stderr and its last line is still seen) but dropped, counted in one
 * line a second at most; each wakeup reads at most SV_ERR_READS chunks,
 * so the loop's other events get their turn.  The supervisor
 * owns its children's records and events; supervisor_free() kills and reaps
 * what is still running so that no zombie or event outlives it.
 */
#include "server/supervisor.h"
#include "common/log.h"
#include "common/util.h"

#include <event2/event.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SV_BACKOFF_MIN_MS 100
#define SV_BACKOFF_MAX_MS 30000
#define SV_STABLE_MS 10000
#define SV_HOLD_POLL_MS 1000
#define SV_EXIT_CONFIG 2 /* the agent's "configuration error" status */
#define SV_LINE_MAX 256
#define SV_WATCH_MS 1000  /* how often the watch looks for hung agents */
#define SV_ERR_RATE 65536 /* bytes of a child's stderr passed on a second */
#define SV_ERR_READS 16   /* 4 KiB reads of a child's stderr per wakeup */
#define SV_ERR_REAP_READS 1024 /* at its exit: its last words, bounded */
#define SV_ERR_CHUNK 4096      /* one read of a child's stderr */

/* Where the line of a child's stderr being read stands. */
enum sv_line {
	SV_LINE_START, /* at its first byte: the bucket decides */
	SV_LINE_PASS,  /* held in pass[] until its newline */
	SV_LINE_DROP,  /* dropped to its newline */
};

struct sv_child {
	struct supervisor *sv;
	char *name;
	pid_t pid;           /* 0 while not running */
	int restarts;        /* how many times it was started again */
	int backoff_ms;      /* the delay before the next restart */
	int64_t started_ms;  /* mono_ms() of the last start */
	struct event *timer; /* the next start, or the poll while held */
	/* stderr: a pipe from the child, passed on and remembered. */
	int err_fd;                /* -1: none */
	struct event *err_ev;      /* reads err_fd */
	char partial[SV_LINE_MAX]; /* the line being read */
	size_t npartial;
	char last_line[SV_LINE_MAX]; /* sanitized; "" if none */
	enum sv_line pstate;         /* the line being passed on, or not */
	char pass[LOG_LINE_MAX];     /* its bytes so far, when passed */
	size_t npass;
	size_t err_tokens;     /* bytes that may be passed on now */
	int64_t err_refill_ms; /* mono_ms() of the last refill */
	size_t err_dropped;    /* bytes dropped, not yet reported */
	int64_t err_report_ms; /* mono_ms() of the last report */
	/* Held after exit 2 until its file changes or a retry. */
	bool held;
	char reason[SV_LINE_MAX + 64]; /* "agent exited 2" + last_line */
	bool hung;        /* killed as hung; not again until it is reaped */
	int64_t alive_ms; /* its start, or the latest beat seen since */
	bool cfg_seen;    /* cfg_st is the file at the last start */
	struct stat cfg_st;
};

struct supervisor {
	struct event_base *base;
	char *self_exe;
	char *config_path; /* NULL: the agents use the embedded default */
	char *server_addr;
	struct sv_child **children;
	size_t nchildren;
	struct event *sigchld;
	bool stopping;
	struct event *kill_timer; /* SIGKILL after the grace time */
	struct event *done_ev;    /* runs done() on the loop */
	void (*done)(void *arg);
	void *done_arg;
	/* supervisor_watch(): hung agents are killed. */
	supervisor_beat_fn beat;
	void *beat_arg;
	int hang_ms;
	struct event *watch;
	int64_t watch_ms; /* mono_ms() of the watch's last turn */
};

static void
child_exec(const struct supervisor *sv, const struct sv_child *ch, pid_t parent,
	   int err_w)
{
	char *argv[10];
	sigset_t none;
	int i = 0, sig;
	long fd, maxfd;

	/*
	 * Only async-signal-safe calls from here on (the server may have
	 * threads): no malloc, no stdio, no log_*.
	 */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
		_exit(126);
	if (getppid() != parent)
		_exit(126); /* the server died before prctl() */
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	for (sig = 1; sig < NSIG; sig++)
		(void)signal(sig, SIG_DFL);
	/*
	 * dup2 clears close-on-exec on fds 1 and 2; the pipe's ends close
	 * below.  The agent writes nothing to stdout, so what comes there is
	 * garbage, held to the same bound as its stderr rather than copied
	 * to the server's stdout unchecked.
	 */
	if (err_w != -1 && (dup2(err_w, STDERR_FILENO) == -1 ||
			    dup2(err_w, STDOUT_FILENO) == -1))
		_exit(126);
	if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
		maxfd = sysconf(_SC_OPEN_MAX);
		if (maxfd < 0 || maxfd > 65536)
			maxfd = 65536;
		for (fd = 3; fd < maxfd; fd++)
			(void)close((int)fd);
	}
	argv[i++] = sv->self_exe;
	argv[i++] = (char *)(uintptr_t) "agent";
	argv[i++] = (char *)(uintptr_t) "-p";
	argv[i++] = ch->name;
	if (sv->config_path != NULL) {
		argv[i++] = (char *)(uintptr_t) "-c";
		argv[i++] = sv->config_path;
	}
	argv[i++] = (char *)(uintptr_t) "--server";
	argv[i++] = sv->server_addr;
	argv[i] = NULL;
	execv(sv->self_exe, argv);
	_exit(127);
}

/* Forks and execs ch's agent; 0 or -errno (and then ch is not running). */
/* Passes on what the child wrote and keeps its last complete line. */
static void
err_take(struct sv_child *ch, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i] != '\n') {
			if (ch->npartial + 1 < sizeof(ch->partial))
				ch->partial[ch->npartial++] = p[i];
			continue;
		}
		if (ch->npartial > 0)
			(void)log_sanitize(ch->partial, ch->npartial,
					   ch->last_line,
					   sizeof(ch->last_line));
		ch->npartial = 0;
	}
}

static void err_flush_partial(struct sv_child *ch);

static void
err_close(struct sv_child *ch)
{
	err_flush_partial(ch);
	if (ch->err_ev != NULL)
		event_free(ch->err_ev);
	ch->err_ev = NULL;
	if (ch->err_fd != -1)
		close(ch->err_fd);
	ch->err_fd = -1;
	ch->npartial = 0;
}

/* The dropped bytes in one line, at most once a second (force: now). */
static void
err_report(struct sv_child *ch, bool force)
{
	int64_t now = mono_ms();

	if (ch->err_dropped == 0 || (!force && now - ch->err_report_ms < 1000))
		return;
	log_warnx("- supervisor stderr_dropped provider=%s bytes=%zu "
		  "limit_bytes_per_s=%d",
		  ch->name, ch->err_dropped, SV_ERR_RATE);
	ch->err_dropped = 0;
	ch->err_report_ms = now;
}

static void
err_refill(struct sv_child *ch)
{
	int64_t now = mono_ms();

	if (now > ch->err_refill_ms) {
		uint64_t add =
		    (uint64_t)(now - ch->err_refill_ms) * SV_ERR_RATE / 1000;

		ch->err_tokens = add >= SV_ERR_RATE - ch->err_tokens
				     ? SV_ERR_RATE
				     : ch->err_tokens + (size_t)add;
		ch->err_refill_ms = now;
	}
}

/* The line held in pass[] is whole: onto out, paid for (a line begun
 * within the budget may overdraw it by the rest of itself). */
static void
err_line_out(struct sv_child *ch, char *out, size_t *nout)
{
	memcpy(out + *nout, ch->pass, ch->npass);
	*nout += ch->npass;
	ch->err_tokens -=
	    ch->npass < ch->err_tokens ? ch->npass : ch->err_tokens;
	ch->npass = 0;
	ch->pstate = SV_LINE_START;
}

static void
err_write(const char *out, size_t n)
{
	ssize_t w;

	if (n == 0)
		return;
	/* A lost line is no harm. */
	w = write(STDERR_FILENO, out, n);
	(void)w;
}

/* A line passed on whose newline never came (the child is gone): ended. */
static void
err_flush_partial(struct sv_child *ch)
{
	char out[LOG_LINE_MAX + 1];
	size_t nout = 0;

	if (ch->pstate == SV_LINE_PASS && ch->npass > 0) {
		ch->pass[ch->npass++] = '\n';
		err_line_out(ch, out, &nout);
		err_write(out, nout);
	}
	ch->npass = 0;
	ch->pstate = SV_LINE_START;
}

/*
 * Passes the whole lines among n bytes of the child's stderr on to ours
 * as far as its budget goes (where the agent's lines always went); the
 * rest is dropped.  n is at most SV_ERR_CHUNK.
 */
static void
err_pass(struct sv_child *ch, const char *p, size_t n)
{
	char out[SV_ERR_CHUNK + LOG_LINE_MAX + 1];
	size_t nout = 0, seg, take;
	const char *nl;

	err_refill(ch);
	while (n > 0) {
		nl = memchr(p, '\n', n);
		seg = nl != NULL ? (size_t)(nl - p) + 1 : n;
		if (ch->pstate == SV_LINE_START)
			ch->pstate =
			    ch->err_tokens > 0 ? SV_LINE_PASS : SV_LINE_DROP;
		if (ch->pstate == SV_LINE_DROP) {
			ch->err_dropped += seg;
			if (nl != NULL)
				ch->pstate = SV_LINE_START;
		} else {
			/* Room for the newline that ends a cut line. */
			take = sizeof(ch->pass) - 1 - ch->npass;
			take = seg < take ? seg : take;
			memcpy(ch->pass + ch->npass, p, take);
			ch->npass += take;
			if (take < seg) {
				ch->pass[ch->npass++] = '\n';
				ch->err_dropped += seg - take;
				err_line_out(ch, out, &nout);
				ch->pstate =
				    nl != NULL ? SV_LINE_START : SV_LINE_DROP;
			} else if (nl != NULL) {
				err_line_out(ch, out, &nout);
			}
		}
		p += seg;
		n -= seg;
	}
	err_write(out, nout);
	err_report(ch, false);
}

/* Reads at most reads chunks of what is there; closes at EOF or on an
 * error. */
static void
err_drain(struct sv_child *ch, int reads)
{
	char buf[SV_ERR_CHUNK];
	ssize_t n;

	while (ch->err_fd != -1 && reads-- > 0) {
		n = read(ch->err_fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			/* A last line without its newline counts too. */
			err_flush_partial(ch);
			err_take(ch, "\n", 1);
			err_report(ch, true);
			err_close(ch);
			return;
		}
		err_pass(ch, buf, (size_t)n);
		err_take(ch, buf, (size_t)n);
	}
}

static void
err_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	/* The pipe stays readable: the rest comes on the next turn. */
	err_drain(arg, SV_ERR_READS);
}

/* A pipe for the child's stderr; -1 in *w when none could be made. */
static void
err_open(struct sv_child *ch, int *w)
{
	int fds[2];

	*w = -1;
	err_close(ch);
	ch->last_line[0] = '\0';
	/* Each start gets a full second's budget: its first lines are
	 * what an operator needs. */
	ch->err_tokens = SV_ERR_RATE;
	ch->err_refill_ms = mono_ms();
	if (pipe2(fds, O_CLOEXEC) == -1) {
		log_warn("- supervisor pipe_failed provider=%s", ch->name);
		return;
	}
	ch->err_ev =
	    event_new(ch->sv->base, fds[0], EV_READ | EV_PERSIST, err_cb, ch);
	if (ch->err_ev == NULL || fcntl(fds[0], F_SETFL, O_NONBLOCK) == -1 ||
	    event_add(ch->err_ev, NULL) != 0) {
		log_warnx("- supervisor stderr_unwatched provider=%s",
			  ch->name);
		if (ch->err_ev != NULL)
			event_free(ch->err_ev);
		ch->err_ev = NULL;
		close(fds[0]);
		close(fds[1]);
		return;
	}
	ch->err_fd = fds[0];
	*w = fds[1];
}

/* The configuration file as it is now, to notice a change while held. */
static bool
config_stat(const struct supervisor *sv, struct stat *st)
{
	return sv->config_path != NULL && stat(sv->config_path, st) == 0;
}

static bool
config_changed(const struct sv_child *ch)
{
	struct stat st;
	bool seen = config_stat(ch->sv, &st);

	if (seen != ch->cfg_seen)
		return true;
	return seen && (st.st_size != ch->cfg_st.st_size ||
			st.st_ino != ch->cfg_st.st_ino ||
			st.st_dev != ch->cfg_st.st_dev ||
			st.st_mtim.tv_sec != ch->cfg_st.st_mtim.tv_sec ||
			st.st_mtim.tv_nsec != ch->cfg_st.st_mtim.tv_nsec);
}

static int
child_start(struct sv_child *ch)
{
	struct supervisor *sv = ch->sv;
	pid_t parent = getpid(), pid;
	int err_w;

	ch->cfg_seen = config_stat(sv, &ch->cfg_st);
	err_open(ch, &err_w);
	pid = fork();
	if (pid == -1) {
		int e = errno;
		log_warn("- supervisor fork_failed provider=%s", ch->name);
		if (err_w != -1)
			close(err_w);
		err_close(ch);
		return -e;
	}
	if (pid == 0)
		child_exec(sv, ch, parent, err_w);
	if (err_w != -1)
		close(err_w);
	ch->pid = pid;
	ch->hung = false;
	ch->started_ms = mono_ms();
	ch->alive_ms = ch->started_ms;
	log_info("- supervisor started provider=%s pid=%d restarts=%d",
		 ch->name, (int)pid, ch->restarts);
	return 0;
}

static void
schedule_start(struct sv_child *ch, int delay_ms)
{
	struct timeval tv;

	tv.tv_sec = delay_ms / 1000;
	tv.tv_usec = (delay_ms % 1000) * 1000;
	evtimer_add(ch->timer, &tv);
}

/* The delay before ch starts again, and the one after that. */
static int
next_backoff(struct sv_child *ch, int64_t lived_ms)
{
	int delay;

	if (lived_ms >= SV_STABLE_MS)
		ch->backoff_ms = SV_BACKOFF_MIN_MS;
	delay = ch->backoff_ms;
	ch->backoff_ms = ch->backoff_ms * 2 > SV_BACKOFF_MAX_MS
			     ? SV_BACKOFF_MAX_MS
			     : ch->backoff_ms * 2;
	return delay;
}

static void
restart_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sv_child *ch = arg;

	(void)fd;
	(void)what;
	if (ch->sv->stopping || ch->pid != 0)
		return;
	if (ch->held) {
		if (!config_changed(ch)) {
			schedule_start(ch, SV_HOLD_POLL_MS);
			return;
		}
		log_info("- supervisor config_changed provider=%s "
			 "action=start",
			 ch->name);
		ch->held = false;
		ch->reason[0] = '\0';
	}
	ch->restarts++;
	if (child_start(ch) != 0) {
		int delay = next_backoff(ch, 0);
		log_warnx("- supervisor restart provider=%s restart_in_ms=%d",
			  ch->name, delay);
		schedule_start(ch, delay);
	}
}

static size_t
running(const struct supervisor *sv)
{
	size_t i, n = 0;

	for (i = 0; i < sv->nchildren; i++)
		if (sv->children[i]->pid != 0)
			n++;
	return n;
}

static void
maybe_done(struct supervisor *sv)
{
	struct timeval zero = {0, 0};

	if (!sv->stopping || sv->done == NULL || running(sv) > 0)
		return;
	if (sv->kill_timer != NULL)
		evtimer_del(sv->kill_timer);
	evtimer_add(sv->done_ev, &zero);
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct supervisor *sv = arg;
	void (*done)(void *) = sv->done;

	(void)fd;
	(void)what;
	sv->done = NULL;
	if (done != NULL)
		done(sv->done_arg);
}

static struct sv_child *
child_by_pid(const struct supervisor *sv, pid_t pid)
{
	size_t i;

	for (i = 0; i < sv->nchildren; i++)
		if (sv->children[i]->pid == pid)
			return sv->children[i];
	return NULL;
}

static struct sv_child *
child_by_name(const struct supervisor *sv, const char *name)
{
	size_t i;

	for (i = 0; i < sv->nchildren; i++)
		if (strcmp(sv->children[i]->name, name) == 0)
			return sv->children[i];
	return NULL;
}

/*
 * The agent exited with its configuration error status: restarting it
 * cannot help until its file changes (polled) or someone says so (SIGHUP).
 */
static void
hold(struct sv_child *ch)
{
	ch->held = true;
	snprintf(ch->reason, sizeof(ch->reason), "agent exited 2%s%s",
		 ch->last_line[0] != '\0' ? ": " : " (configuration error)",
		 ch->last_line);
	log_error("- supervisor held provider=%s reason=\"%s\" "
		  "retry=\"when its configuration changes, or on SIGHUP\"",
		  ch->name, ch->reason);
	schedule_start(ch, SV_HOLD_POLL_MS);
}

static void
reaped(struct supervisor *sv, pid_t pid, int status)
{
	struct sv_child *ch = child_by_pid(sv, pid);
	char what[32];
	int64_t lived;
	int delay = -1;

	if (WIFEXITED(status))
		snprintf(what, sizeof(what), "exit:%d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(what, sizeof(what), "signal:%d", WTERMSIG(status));
	else
		snprintf(what, sizeof(what), "0x%x", (unsigned)status);
	if (ch == NULL) {
		log_debug("- supervisor reaped_unknown pid=%d status=%s",
			  (int)pid, what);
		return;
	}
	ch->pid = 0;
	lived = mono_ms() - ch->started_ms;
	/* Its last words are in the pipe: read them before judging. */
	err_drain(ch, SV_ERR_REAP_READS);
	err_report(ch, true);
	if (!sv->stopping && WIFEXITED(status) &&
	    WEXITSTATUS(status) == SV_EXIT_CONFIG) {
		hold(ch);
		return;
	}
	if (!sv->stopping) {
		delay = next_backoff(ch, lived);
		schedule_start(ch, delay);
	}
	log_info(
	    "- supervisor exited provider=%s status=%s pid=%d lived_ms=%lld "
	    "restart_in_ms=%d",
	    ch->name, what, (int)pid, (long long)lived, delay);
}

static void
sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
	struct supervisor *sv = arg;
	pid_t pid;
	int status;

	(void)sig;
	(void)what;
	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid == 0)
			break;
		if (pid == -1) {
			if (errno == EINTR)
				continue;
			break; /* ECHILD: nothing left */
		}
		reaped(sv, pid, status);
	}
	maybe_done(sv);
}

static void
kill_cb(evutil_socket_t fd, short what, void *arg)
{
	struct supervisor *sv = arg;
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < sv->nchildren; i++) {
		struct sv_child *ch = sv->children[i];
		if (ch->pid == 0)
			continue;
		log_warnx("- supervisor kill provider=%s pid=%d "
			  "reason=\"still alive after SIGTERM\"",
			  ch->name, (int)ch->pid);
		(void)kill(ch->pid, SIGKILL);
	}
}

/* The watch's turn: a running child silent for hang_ms is killed. */
static void
watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct supervisor *sv = arg;
	int64_t now = mono_ms(), last, stall;
	size_t i;

	(void)fd;
	(void)what;
	/*
	 * A turn late by more than its period: our loop was held (a long
	 * start, a busy store), and no agent could have beaten meanwhile.
	 * That time is not the agents' silence.
	 */
	stall = now - sv->watch_ms - SV_WATCH_MS;
	sv->watch_ms = now;
	if (sv->stopping)
		return;
	for (i = 0; i < sv->nchildren; i++) {
		struct sv_child *ch = sv->children[i];

		if (ch->pid == 0 || ch->hung)
			continue;
		if (stall > 0)
			ch->alive_ms += stall;
		/*
		 * The latest beat seen is kept: the registry forgets it when
		 * the link drops (0), and one from before this start is
		 * older than alive_ms.
		 */
		last = sv->beat(ch->name, sv->beat_arg);
		if (last > ch->alive_ms)
			ch->alive_ms = last;
		if (now - ch->alive_ms < sv->hang_ms)
			continue;
		log_warnx("- supervisor hung provider=%s pid=%d silent_ms=%lld "
			  "action=kill",
			  ch->name, (int)ch->pid,
			  (long long)(now - ch->alive_ms));
		ch->hung = true;
		(void)kill(ch->pid, SIGKILL);
	}
}

void
supervisor_watch(struct supervisor *sv, supervisor_beat_fn beat, void *arg,
		 int hang_ms)
{
	struct timeval tv = {SV_WATCH_MS / 1000, (SV_WATCH_MS % 1000) * 1000};

	sv->beat = beat;
	sv->beat_arg = arg;
	sv->hang_ms = hang_ms;
	sv->watch_ms = mono_ms();
	if (sv->watch == NULL)
		sv->watch = event_new(sv->base, -1, EV_PERSIST, watch_cb, sv);
	if (sv->watch == NULL || event_add(sv->watch, &tv) != 0)
		fatalx("supervisor: cannot set up the watch");
}

struct supervisor *
supervisor_new(struct event_base *base, const char *self_exe,
	       const char *config_path, const char *server_addr)
{
	struct supervisor *sv = xcalloc(1, sizeof(*sv));

	sv->base = base;
	sv->self_exe = xstrdup(self_exe);
	sv->config_path = xstrdup_or_null(config_path);
	sv->server_addr = xstrdup(server_addr);
	/*
	 * Watch SIGCHLD before the first fork, so that a child dying at
	 * once is not missed.
	 */
	sv->sigchld = evsignal_new(base, SIGCHLD, sigchld_cb, sv);
	sv->kill_timer = evtimer_new(base, kill_cb, sv);
	sv->done_ev = evtimer_new(base, done_cb, sv);
	if (sv->sigchld == NULL || sv->kill_timer == NULL ||
	    sv->done_ev == NULL || evsignal_add(sv->sigchld, NULL) != 0)
		fatalx("supervisor: cannot set up events");
	return sv;
}

int
supervisor_spawn(struct supervisor *sv, const char *name)
{
	struct sv_child *ch;
	int rc;

	if (sv->stopping)
		return -ESHUTDOWN;
	if (child_by_name(sv, name) != NULL)
		return -EEXIST;
	ch = xcalloc(1, sizeof(*ch));
	ch->sv = sv;
	ch->name = xstrdup(name);
	ch->backoff_ms = SV_BACKOFF_MIN_MS;
	ch->err_fd = -1;
	ch->timer = evtimer_new(sv->base, restart_cb, ch);
	if (ch->timer == NULL)
		fatalx("supervisor: cannot set up a timer");
	rc = child_start(ch);
	if (rc != 0) {
		err_close(ch);
		event_free(ch->timer);
		free(ch->name);
		free(ch);
		return rc;
	}
	sv->children = xreallocarray(sv->children, sv->nchildren + 1,
				     sizeof(*sv->children));
	sv->children[sv->nchildren++] = ch;
	return 0;
}

const char *
supervisor_held(const struct supervisor *sv, const char *name)
{
	const struct sv_child *ch = child_by_name(sv, name);

	return ch != NULL && ch->held ? ch->reason : NULL;
}

void
supervisor_retry_held(struct supervisor *sv)
{
	size_t i;

	if (sv->stopping)
		return;
	for (i = 0; i < sv->nchildren; i++) {
		struct sv_child *ch = sv->children[i];
		if (!ch->held || ch->pid != 0)
			continue;
		log_info("- supervisor retry provider=%s reason=request",
			 ch->name);
		ch->held = false;
		ch->reason[0] = '\0';
		evtimer_del(ch->timer);
		schedule_start(ch, 0);
	}
}

pid_t
supervisor_pid(const struct supervisor *sv, const char *name)
{
	const struct sv_child *ch = child_by_name(sv, name);

	return ch != NULL ? ch->pid : 0;
}

void
supervisor_stop(struct supervisor *sv, int grace_ms, void (*done)(void *arg),
		void *arg)
{
	struct timeval tv;
	size_t i;

	sv->stopping = true;
	if (sv->watch != NULL)
		(void)event_del(sv->watch);
	sv->done = done;
	sv->done_arg = arg;
	for (i = 0; i < sv->nchildren; i++) {
		struct sv_child *ch = sv->children[i];
		evtimer_del(ch->timer);
		if (ch->pid != 0) {
			log_info("- supervisor stopping provider=%s pid=%d",
				 ch->name, (int)ch->pid);
			(void)kill(ch->pid, SIGTERM);
		}
	}
	if (running(sv) > 0) {
		if (grace_ms < 0)
			grace_ms = 0;
		tv.tv_sec = grace_ms / 1000;
		tv.tv_usec = (grace_ms % 1000) * 1000;
		evtimer_add(sv->kill_timer, &tv);
	}
	maybe_done(sv);
}

void
supervisor_free(struct supervisor *sv)
{
	size_t i;
	int status;

	if (sv == NULL)
		return;
	for (i = 0; i < sv->nchildren; i++) {
		struct sv_child *ch = sv->children[i];
		if (ch->pid != 0) {
			/* Not stopped first: do not leave a zombie. */
			(void)kill(ch->pid, SIGKILL);
			while (waitpid(ch->pid, &status, 0) == -1 &&
			       errno == EINTR)
				;
		}
		err_close(ch);
		event_free(ch->timer);
		free(ch->name);
		free(ch);
	}
	free(sv->children);
	if (sv->watch != NULL)
		event_free(sv->watch);
	event_free(sv->sigchld);
	event_free(sv->kill_timer);
	event_free(sv->done_ev);
	free(sv->self_exe);
	free(sv->config_path);
	free(sv->server_addr);
	free(sv);
}
