/*
 * The supervisor: starts the agents of providers with "spawn = yes" as
 * child processes of the server, restarts one that dies (with exponential
 * backoff, reset once a child has lived long enough, throttled like
 * Postfix's master), and stops them all with the server.  An agent that
 * exits 2 (its configuration is wrong) is not restarted but held, with
 * the reason, until its configuration file changes or
 * supervisor_retry_held() (SIGHUP).  Children get
 * PR_SET_PDEATHSIG so that a server killed with -9 does not leave agents
 * behind.  SIGCHLD is watched through the event loop.
 */
#ifndef SHIVNERI_SUPERVISOR_H
#define SHIVNERI_SUPERVISOR_H

#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct supervisor;

/*
 * self_exe: the shivneri binary to run; config_path: passed as -c (NULL:
 * the agents use the embedded default too); server_addr: passed as
 * --server HOST:PORT.  All copied.
 */
struct supervisor *supervisor_new(struct event_base *base, const char *self_exe,
				  const char *config_path,
				  const char *server_addr);
/* Starts and keeps running the agent of provider name.  0 or -errno. */
int supervisor_spawn(struct supervisor *sv, const char *name)
    __attribute__((warn_unused_result));
/*
 * Why name's agent is held (it exited 2: "agent exited 2: LAST STDERR
 * LINE"), or NULL when it is not held.  The string lives until the next
 * loop turn; the HTTP API shows it as the provider's "reason".
 */
const char *supervisor_held(const struct supervisor *sv, const char *name);
/* Starts every held agent again now (the server's SIGHUP). */
void supervisor_retry_held(struct supervisor *sv);
/*
 * The mono_ms() of the last heartbeat from name's agent, 0 if none
 * (supervisor_watch()).
 */
typedef int64_t (*supervisor_beat_fn)(const char *name, void *arg);
/*
 * Watches the running agents: one that has not beaten for hang_ms (nor
 * since it started) is hung, killed with SIGKILL and, as any agent that
 * dies, started again.  Without a watch a hung agent is never restarted.
 */
void supervisor_watch(struct supervisor *sv, supervisor_beat_fn beat, void *arg,
		      int hang_ms);
/* The pid of name's running agent, or 0. */
pid_t supervisor_pid(const struct supervisor *sv, const char *name);
/*
 * SIGTERM to every child, SIGKILL to those still alive after grace_ms;
 * done(arg) runs on the loop once all have exited (at once if none).
 */
void supervisor_stop(struct supervisor *sv, int grace_ms,
		     void (*done)(void *arg), void *arg);
void supervisor_free(struct supervisor *sv);

#endif
