/*
 * The registry's state machine and the dispatcher's policy, driven
 * through the real store and real link connections over socketpairs: each
 * fake agent is the other end of a socketpair that collects the JOB frames
 * the dispatcher writes.  Heartbeats, link drops and results are injected
 * by calling the dispatcher the way the agent port does.
 *
 * Store trouble is real, not mocked: the test opens the same database
 * beside the store and either holds its write lock (the store's commit
 * waits, so what the dispatcher does before a write is durable can be
 * seen) or adds a trigger that makes the store's UPDATE to one status fail
 * inside its transaction (a failed write, as a full disk would give).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/config.h"
#include "common/util.h"
#include "dispatch/dispatch_int.h"
#include "dispatch/dispatcher.h"
#include "dispatch/registry.h"
#include "link/link.h"
#include "store/store.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_JOBS 64

struct fake_agent {
	struct link_conn *server_side; /* handed to the dispatcher */
	struct link_conn *agent_side;  /* collects jobs */
	uint64_t job_ids[MAX_JOBS];
	char msg_ids[MAX_JOBS][64];
	size_t njobs;
};

struct fixture {
	char dir[64];
	sqlite3 *lock; /* holds the database's write lock while set */
	struct event_base *base;
	struct config *cfg;
	struct store *st;
	struct registry *reg;
	struct dispatcher *d;
	struct fake_agent fa[2];
	struct provider *p[2];
	int submitted;
	char ids[16][32];
};

static void
agent_frame(struct link_conn *c, int type, const uint8_t *payload, size_t len,
	    void *arg)
{
	struct fake_agent *fa = arg;
	struct link_job job;

	if (type != LINK_JOB)
		return;
	assert_int_equal(link_decode_job(payload, len, &job), 0);
	assert_true(fa->njobs < MAX_JOBS);
	fa->job_ids[fa->njobs] = job.job_id;
	snprintf(fa->msg_ids[fa->njobs], sizeof(fa->msg_ids[0]), "%s",
		 job.message_id);
	fa->njobs++;
	link_job_cleanup(&job);
}

static void
ignore_frame(struct link_conn *c, int type, const uint8_t *payload, size_t len,
	     void *arg)
{
}

static void
ignore_close(struct link_conn *c, int err, void *arg)
{
}

static void
run_until(struct fixture *f, bool (*cond)(struct fixture *, void *), void *arg,
	  int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;

	while (!cond(f, arg)) {
		assert_true(mono_ms() < deadline);
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

static bool
jobs_at_least(struct fixture *f, void *arg)
{
	const size_t *want = arg;

	return f->fa[want[0]].njobs >= want[1];
}

static void
wait_jobs(struct fixture *f, size_t agent, size_t n)
{
	size_t want[2] = {agent, n};

	run_until(f, jobs_at_least, want, 3000);
}

static void
link_agent(struct fixture *f, int i)
{
	int sv[2];
	struct bufferevent *a, *b;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	a = bufferevent_socket_new(f->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	b = bufferevent_socket_new(f->base, sv[1], BEV_OPT_CLOSE_ON_FREE);
	f->fa[i].server_side =
	    link_conn_new(a, LINK_CTRL_MAX, ignore_frame, ignore_close, NULL);
	f->fa[i].agent_side =
	    link_conn_new(b, 64 << 20, agent_frame, ignore_close, &f->fa[i]);
	f->p[i]->conn = f->fa[i].server_side;
	dispatcher_provider_linked(f->d, f->p[i]);
}

static void
unlink_agent(struct fixture *f, int i, const char *why)
{
	f->p[i]->conn = NULL;
	dispatcher_provider_unlinked(f->d, f->p[i], why);
	link_conn_free(f->fa[i].server_side);
	link_conn_free(f->fa[i].agent_side);
	f->fa[i].server_side = f->fa[i].agent_side = NULL;
}

static void
submit_cb(void *arg, int err, const char *id, bool duplicate,
	  struct store_message *m)
{
	struct fixture *f = arg;

	assert_int_equal(err, 0);
	snprintf(f->ids[f->submitted], sizeof(f->ids[0]), "%s", id);
	f->submitted++;
	dispatcher_enqueue(f->d, m);
}

static bool
submitted_at_least(struct fixture *f, void *arg)
{
	return f->submitted >= *(int *)arg;
}

/* A message of about body_len bytes (0: a tiny one). */
static void
submit_sized(struct fixture *f, int64_t created_ms, size_t body_len)
{
	struct store_message *m = xcalloc(1, sizeof(*m));
	int want = f->submitted + 1;
	static const char head[] = "Subject: s\r\n\r\n";

	id_new(m->id);
	m->status = MSG_QUEUED;
	m->mail_from = xstrdup("a@example.com");
	m->rcpt = xcalloc(1, sizeof(char *));
	m->rcpt[0] = xstrdup("b@example.net");
	m->nrcpt = 1;
	m->header_from = xstrdup("a@example.com");
	m->subject = xstrdup("s");
	m->to_json = xstrdup("[\"b@example.net\"]");
	if (body_len == 0) {
		m->mime = xstrdup("Subject: s\r\n\r\nbody\r\n");
	} else {
		m->mime = xmalloc(sizeof(head) + body_len);
		memcpy(m->mime, head, sizeof(head) - 1);
		memset(m->mime + sizeof(head) - 1, 'x', body_len);
		m->mime[sizeof(head) - 1 + body_len] = '\0';
	}
	m->mime_len = strlen(m->mime);
	m->created_ms = m->updated_ms = created_ms;
	m->tried = xstrdup("");
	store_submit(f->st, m, NULL, submit_cb, f);
	run_until(f, submitted_at_least, &want, 3000);
}

static void
submit_created(struct fixture *f, int64_t created_ms)
{
	submit_sized(f, created_ms, 0);
}

static void
submit(struct fixture *f)
{
	submit_created(f, now_ms());
}

/* --- the database beside the store ---------------------------------- */

static sqlite3 *
db_open(struct fixture *f)
{
	char path[128];
	sqlite3 *db = NULL;

	snprintf(path, sizeof(path), "%s/shivneri.db", f->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static void
db_exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err ? err : "?");
}

/* The store's next commit waits (its busy timeout is 5 s) until unlock. */
static void
db_lock(struct fixture *f)
{
	f->lock = db_open(f);
	db_exec(f->lock, "BEGIN IMMEDIATE;");
}

static void
db_unlock(struct fixture *f)
{
	db_exec(f->lock, "ROLLBACK;");
	sqlite3_close(f->lock);
	f->lock = NULL;
}

/* Every store write that sets a message to status fails, until cleared. */
static void
fault_on(struct fixture *f, int status)
{
	sqlite3 *db = db_open(f);
	char sql[256];

	snprintf(sql, sizeof(sql),
		 "CREATE TRIGGER test_fault BEFORE UPDATE ON messages"
		 " WHEN NEW.status = %d"
		 " BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
		 status);
	db_exec(db, sql);
	sqlite3_close(db);
}

static void
fault_off(struct fixture *f)
{
	sqlite3 *db = db_open(f);

	db_exec(db, "DROP TRIGGER test_fault;");
	sqlite3_close(db);
}

static const char cfg_text[] = "[server]\n"
			       "data_dir = %s\n"
			       "http_listen =\n"
			       "smtp_listen =\n"
			       "heartbeat_interval_ms = 50\n"
			       "heartbeat_timeout_ms = %d\n"
			       "retry_base_ms = 100\n"
			       "retry_max_ms = 400\n"
			       "max_attempts = 4\n"
			       "breaker_threshold = 3\n"
			       "breaker_cooldown_ms = 150\n"
			       "%s"
			       "[provider.a]\ntype = maildir\n%s"
			       "[provider.b]\ntype = maildir\n%s"
			       "[provider.c]\ntype = maildir\n"
			       "max_in_flight = 8\nslow_start_s = 1\n";

/* extra: more [server] keys; pa, pb: more keys of providers a and b. */
static int
setup_cfg(void **state, int hb_timeout_ms, const char *extra, const char *pa,
	  const char *pb)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char text[2048];

	snprintf(f->dir, sizeof(f->dir), "/tmp/shivneri-disp-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(text, sizeof(text), cfg_text, f->dir, hb_timeout_ms, extra, pa,
		 pb);
	assert_int_equal(config_load_string(text, "test.ini", &f->cfg, NULL),
			 0);
	f->base = event_base_new();
	assert_int_equal(store_open(f->dir, NULL, f->base, &f->st), 0);
	f->reg = registry_new(f->base, f->cfg);
	f->d = dispatcher_new(f->base, f->cfg, f->st, f->reg);
	assert_int_equal(dispatcher_load(f->d), 0);
	f->p[0] = registry_find(f->reg, "a");
	f->p[1] = registry_find(f->reg, "b");
	assert_non_null(f->p[0]);
	assert_non_null(f->p[1]);
	*state = f;
	return 0;
}

static int
setup_with(void **state, int hb_timeout_ms)
{
	return setup_cfg(state, hb_timeout_ms, "", "", "");
}

/* Heartbeats are injected by hand: a long timeout keeps them optional. */
static int
setup(void **state)
{
	return setup_with(state, 10000);
}

static int
setup_fast_hb(void **state)
{
	return setup_with(state, 200);
}

static int
setup_job_timeout(void **state)
{
	return setup_cfg(state, 10000, "job_timeout_s = 1\n", "", "");
}

static int
setup_bytes(void **state)
{
	return setup_cfg(state, 10000,
			 "max_message_bytes = 1024\n"
			 "max_in_flight_bytes = 1024\n",
			 "", "");
}

/* a is the primary tier with room for one message; b the backup. */
static int
setup_rate(void **state)
{
	return setup_cfg(state, 10000, "", "rate_per_s = 5\n", "");
}

static int
setup_priority(void **state)
{
	return setup_cfg(state, 10000, "scheduler = priority\n",
			 "priority = 1\nmax_in_flight = 1\n", "priority = 2\n");
}

static int
setup_priority_overflow(void **state)
{
	return setup_cfg(state, 10000, "scheduler = priority\n",
			 "priority = 1\nmax_in_flight = 1\noverflow = yes\n",
			 "priority = 2\n");
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	int i;

	if (f->lock != NULL)
		sqlite3_close(f->lock);
	for (i = 0; i < 2; i++)
		if (f->fa[i].server_side != NULL)
			unlink_agent(f, i, "teardown");
	store_close(f->st);
	dispatcher_free(f->d);
	registry_free(f->reg);
	event_base_free(f->base);
	config_free(f->cfg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

struct get_result {
	bool done;
	int status;
	int attempts;
	int natt;
	int outcomes[8];
	char providers[8][16];
	char details[8][64];
	char error[256];
};

static void
get_cb(void *arg, int err, const struct store_message *m,
       const struct store_attempt *att, size_t natt)
{
	struct get_result *g = arg;
	size_t i;

	assert_int_equal(err, 0);
	g->status = m->status;
	g->attempts = m->attempts;
	g->natt = (int)natt;
	snprintf(g->error, sizeof(g->error), "%s", m->error ? m->error : "");
	for (i = 0; i < natt && i < 8; i++) {
		g->outcomes[i] = att[i].outcome;
		snprintf(g->providers[i], sizeof(g->providers[0]), "%s",
			 att[i].provider);
		snprintf(g->details[i], sizeof(g->details[0]), "%s",
			 att[i].detail ? att[i].detail : "");
	}
	g->done = true;
}

static bool
get_done(struct fixture *f, void *arg)
{
	return ((struct get_result *)arg)->done;
}

static void
get(struct fixture *f, const char *id, struct get_result *g)
{
	memset(g, 0, sizeof(*g));
	store_get(f->st, id, get_cb, g);
	run_until(f, get_done, g, 3000);
}

static int64_t
count(struct fixture *f, int status)
{
	int64_t c[MSG_NSTATUS];

	dispatcher_counts(f->d, c);
	return c[status];
}

static bool
count_is(struct fixture *f, void *arg)
{
	const int64_t *w = arg;

	return count(f, (int)w[0]) == w[1];
}

/* Counts move when the store says a write is durable: wait for it. */
static void
wait_count(struct fixture *f, int status, int64_t n)
{
	int64_t w[2] = {status, n};

	run_until(f, count_is, w, 3000);
}

static bool
in_flight_is(struct fixture *f, void *arg)
{
	return dispatcher_in_flight(f->d) == *(unsigned *)arg;
}

static void
wait_in_flight(struct fixture *f, unsigned n)
{
	run_until(f, in_flight_is, &n, 3000);
}

static bool
is_state(struct fixture *f, void *arg)
{
	const int *w = arg;

	return f->p[w[0]]->state == w[1];
}

static void
wait_state(struct fixture *f, int i, int state, int timeout_ms)
{
	int w[2] = {i, state};

	run_until(f, is_state, w, timeout_ms);
}

static void
drain_loop(struct fixture *f, int ms)
{
	int64_t end = mono_ms() + ms;

	while (mono_ms() < end) {
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

/* Linked is not up: a provider is up at its first good heartbeat. */
static void
test_up_at_first_heartbeat(void **state)
{
	struct fixture *f = *state;

	link_agent(f, 0);
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
	submit(f);
	drain_loop(f, 50);
	assert_int_equal(f->fa[0].njobs, 0);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	assert_int_equal(f->p[0]->state, PROVIDER_UP);
	wait_jobs(f, 0, 1);
	assert_string_equal(f->fa[0].msg_ids[0], f->ids[0]);
	assert_int_equal(count(f, MSG_SENDING), 1);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "pm-1", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	assert_int_equal(f->p[0]->delivered, 1);
	assert_int_equal(f->p[0]->se.in_flight, 0);
}

/* A dropped link requeues its in-flight message at once, to the other. */
static void
test_link_drop_requeues_lost(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	link_agent(f, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	unlink_agent(f, 0, "link lost");
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
	wait_jobs(f, 1, 1);
	assert_string_equal(f->fa[1].msg_ids[0], f->ids[0]);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "pm-2", NULL);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_DELIVERED);
	assert_int_equal(g.natt, 2);
	assert_int_equal(g.outcomes[0], OUTCOME_LOST);
	assert_string_equal(g.providers[0], "a");
	assert_int_equal(g.outcomes[1], OUTCOME_DELIVERED);
	assert_string_equal(g.providers[1], "b");
	assert_int_equal(f->p[0]->lost, 1);
}

/* Silence for heartbeat_timeout_ms takes a provider down; a beat revives. */
static void
test_heartbeat_timeout(void **state)
{
	struct fixture *f = *state;
	int64_t t0;

	link_agent(f, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	t0 = mono_ms();
	wait_state(f, 0, PROVIDER_DOWN, 2000);
	assert_true(mono_ms() - t0 >= 190);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	assert_int_equal(f->p[0]->state, PROVIDER_UP);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_DOWN, 0);
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
}

/* A transient failure retries elsewhere; all tried: backoff, new round. */
static void
test_transient_retry_and_backoff(void **state)
{
	struct fixture *f = *state;
	struct get_result g;
	int64_t t0;

	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	submit(f);
	run_until(f, submitted_at_least, &(int){1}, 1000);
	drain_loop(f, 20);
	{
		int first = f->fa[0].njobs == 1 ? 0 : 1, second = 1 - first;
		wait_jobs(f, (size_t)first, 1);
		dispatcher_result(f->d, f->p[first], f->fa[first].job_ids[0],
				  f->ids[0], OUTCOME_TRANSIENT, NULL,
				  "503 busy");
		wait_jobs(f, (size_t)second, 1);
		/* Both failed it: the round ends and it waits. */
		t0 = mono_ms();
		dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
		dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
		dispatcher_result(f->d, f->p[second], f->fa[second].job_ids[0],
				  f->ids[0], OUTCOME_TRANSIENT, NULL,
				  "503 busy");
		wait_count(f, MSG_QUEUED, 1);
		while (f->fa[0].njobs + f->fa[1].njobs < 3) {
			dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
			dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
			assert_true(mono_ms() - t0 < 3000);
			drain_loop(f, 5);
		}
		/* retry_base_ms 100 with equal jitter: at least 50 ms. */
		assert_true(mono_ms() - t0 >= 45);
	}
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_SENDING);
	assert_int_equal(g.natt, 2);
	assert_int_equal(g.outcomes[0], OUTCOME_TRANSIENT);
	assert_int_equal(g.outcomes[1], OUTCOME_TRANSIENT);
	assert_string_not_equal(g.providers[0], g.providers[1]);
}

/* A permanent refusal fails the message without a retry. */
static void
test_permanent_fails(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_set_disabled(f->d, f->p[1], true);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_PERMANENT, NULL, "550 no such user");
	wait_count(f, MSG_FAILED, 1);
	drain_loop(f, 30);
	assert_int_equal(f->fa[1].njobs, 0);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_FAILED);
	assert_int_equal(g.natt, 1);
}

/* Consecutive transient failures open the breaker; a trial closes it. */
static void
test_breaker(void **state)
{
	struct fixture *f = *state;
	int i;

	link_agent(f, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	for (i = 0; i < 3; i++) {
		submit(f);
		wait_jobs(f, 0, (size_t)i + 1);
	}
	for (i = 0; i < 3; i++)
		dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[i], f->ids[i],
				  OUTCOME_TRANSIENT, NULL, "500");
	assert_int_equal(f->p[0]->breaker, BREAKER_OPEN);
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
	/* Heartbeats do not bring it back while open. */
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
	wait_state(f, 0, PROVIDER_UP, 2000);
	assert_int_equal(f->p[0]->breaker, BREAKER_HALF_OPEN);
	/* Half-open: one trial only, even with three messages waiting. */
	wait_jobs(f, 0, 4);
	drain_loop(f, 30);
	assert_int_equal(f->fa[0].njobs, 4);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[3],
			  f->fa[0].msg_ids[3], OUTCOME_DELIVERED, "ok", NULL);
	assert_int_equal(f->p[0]->breaker, BREAKER_CLOSED);
	wait_jobs(f, 0, 6);
}

/* max_attempts spent: failed. */
static void
test_max_attempts(void **state)
{
	struct fixture *f = *state;
	size_t n = 0;
	int64_t t0 = mono_ms();

	link_agent(f, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	f->p[0]->breaker_cooldown_ms = 1; /* not under test here */
	submit(f);
	while (count(f, MSG_FAILED) == 0) {
		assert_true(mono_ms() - t0 < 5000);
		dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
		if (f->fa[0].njobs > n) {
			dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[n],
					  f->ids[0], OUTCOME_TRANSIENT, NULL,
					  "451");
			n++;
			/* Keep the breaker out of this test. */
			f->p[0]->consecutive_failures = 0;
		}
		drain_loop(f, 5);
	}
	assert_int_equal(n, 4);
}

/* Results for unknown jobs or the wrong message id change nothing. */
static void
test_hostile_results(void **state)
{
	struct fixture *f = *state;

	link_agent(f, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	dispatcher_result(f->d, f->p[0], 999999, f->ids[0], OUTCOME_DELIVERED,
			  "x", NULL);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0],
			  "01AAAAAAAAAAAAAAAAAAAAAAAA", OUTCOME_DELIVERED, "x",
			  NULL);
	assert_int_equal(count(f, MSG_SENDING), 1);
	assert_int_equal(count(f, MSG_DELIVERED), 0);
	assert_int_equal(f->p[0]->se.in_flight, 1);
}

static bool
in_flight_at_least(struct fixture *f, void *arg)
{
	const unsigned *want = arg;

	return f->p[0]->se.in_flight >= *want;
}

/*
 * slow_start_s: a returning provider's limit ramps from 1 to
 * max_in_flight; its first up is not a return.
 */
static void
test_slow_start(void **state)
{
	struct fixture *f = *state;
	unsigned want = 8;
	int i;

	/* Borrow slot 0 for provider c (max_in_flight 8, slow_start_s 1). */
	f->p[0] = registry_find(f->reg, "c");
	assert_non_null(f->p[0]);
	link_agent(f, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	for (i = 0; i < 8; i++)
		submit(f);
	/* First up: the whole max_in_flight at once. */
	wait_jobs(f, 0, 8);
	assert_int_equal(f->p[0]->se.in_flight, 8);
	/* Down (all eight lost) and back: now it is a return. */
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_DOWN, 0);
	assert_int_equal(f->p[0]->se.in_flight, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	/*
	 * The eight lost ones tried c, the only provider: they back off one
	 * round (50-100 ms), then meet the ramp's small limit.  Each
	 * heartbeat re-reads the ramp: all 8 after about 1 s.
	 */
	{
		int64_t t0 = mono_ms();
		unsigned one = 1;

		while (!in_flight_at_least(f, &one)) {
			assert_true(mono_ms() - t0 < 2000);
			drain_loop(f, 5);
		}
		assert_true(f->p[0]->se.in_flight <= 2);
		while (!in_flight_at_least(f, &want)) {
			assert_true(mono_ms() - t0 < 2500);
			dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
			drain_loop(f, 20);
		}
		assert_true(mono_ms() - t0 >= 700);
	}
}

/*
 * Defect 1: the JOB leaves only once its `sending` record is durable.
 * With the store's commit held back, a pick reserves the slot but no JOB
 * byte is in the link; when the commit lands, the JOB goes out.
 */
static void
test_job_waits_for_sending_record(void **state)
{
	struct fixture *f = *state;

	link_agent(f, 0);
	submit(f);
	db_lock(f);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	drain_loop(f, 100);
	assert_int_equal(f->p[0]->se.in_flight, 1);
	assert_int_equal(link_conn_pending(f->fa[0].server_side), 0);
	assert_int_equal(f->fa[0].njobs, 0);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	db_unlock(f);
	wait_jobs(f, 0, 1);
	assert_int_equal(count(f, MSG_SENDING), 1);
}

/*
 * A provider that goes down while its job's record is being written gets
 * nothing: the message goes back to queued with no attempt (it never
 * left), and is sent when a provider is up again.
 */
static void
test_unsent_when_down_before_record(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	link_agent(f, 0);
	submit(f);
	db_lock(f);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	drain_loop(f, 50);
	assert_int_equal(f->p[0]->se.in_flight, 1);
	unlink_agent(f, 0, "link lost");
	db_unlock(f);
	wait_in_flight(f, 0);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	assert_int_equal(count(f, MSG_SENDING), 0);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_QUEUED);
	assert_int_equal(g.natt, 0);
	assert_int_equal(f->p[0]->lost, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	wait_jobs(f, 1, 1);
	assert_string_equal(f->fa[1].msg_ids[0], f->ids[0]);
}

/* Defect 2: a `sending` write that fails sends nothing; later it goes. */
static void
test_sending_write_fails_nothing_sent(void **state)
{
	struct fixture *f = *state;

	link_agent(f, 0);
	submit(f);
	fault_on(f, MSG_SENDING);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	drain_loop(f, 150);
	assert_int_equal(f->fa[0].njobs, 0);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	assert_int_equal(count(f, MSG_SENDING), 0);
	fault_off(f);
	wait_jobs(f, 0, 1);
	assert_string_equal(f->fa[0].msg_ids[0], f->ids[0]);
	assert_int_equal(count(f, MSG_SENDING), 1);
}

/*
 * Defect 2: a `delivered` record that fails is retried until durable;
 * meanwhile memory says what the disk says (sending), the message is not
 * sent again, and no new job is handed out.
 */
static void
test_delivered_write_retried(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	link_agent(f, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	fault_on(f, MSG_DELIVERED);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "pm-1", NULL);
	submit(f);
	drain_loop(f, 300);
	assert_int_equal(count(f, MSG_DELIVERED), 0);
	assert_int_equal(count(f, MSG_SENDING), 1);
	assert_int_equal(f->fa[0].njobs, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_SENDING);
	fault_off(f);
	wait_count(f, MSG_DELIVERED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_DELIVERED);
	assert_int_equal(g.natt, 1);
	/* Dispatch resumes: the second message, not the first again. */
	wait_jobs(f, 0, 2);
	assert_string_equal(f->fa[0].msg_ids[1], f->ids[1]);
}

/* Defect 2: a failed requeue is retried too; the retry keeps the order. */
static void
test_requeue_write_retried(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_set_disabled(f->d, f->p[1], true);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	fault_on(f, MSG_QUEUED);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_TRANSIENT, NULL, "451 later");
	dispatcher_set_disabled(f->d, f->p[1], false);
	drain_loop(f, 300);
	assert_int_equal(f->fa[1].njobs, 0);
	assert_int_equal(count(f, MSG_SENDING), 1);
	fault_off(f);
	wait_jobs(f, 1, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_SENDING);
	assert_int_equal(g.natt, 1);
	assert_int_equal(g.outcomes[0], OUTCOME_TRANSIENT);
}

/*
 * Defect 5: lost attempts count against max_attempts (4 here) and back
 * off; a message lost on provider after provider fails, saying so.
 */
static void
test_lost_counts_against_max_attempts(void **state)
{
	struct fixture *f = *state;
	struct get_result g;
	size_t seen[2] = {0, 0};
	int64_t t0 = mono_ms();
	int i;

	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	submit(f);
	while (count(f, MSG_FAILED) == 0) {
		assert_true(mono_ms() - t0 < 5000);
		for (i = 0; i < 2; i++) {
			if (f->fa[i].njobs == seen[i])
				continue;
			seen[i] = f->fa[i].njobs;
			/* Its agent reports the provider down: lost. */
			dispatcher_heartbeat(f->d, f->p[i], LINK_HEALTH_DOWN,
					     0);
			dispatcher_heartbeat(f->d, f->p[i], LINK_HEALTH_OK, 0);
		}
		drain_loop(f, 5);
	}
	assert_int_equal(seen[0] + seen[1], 4);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_FAILED);
	assert_int_equal(g.natt, 4);
	for (i = 0; i < 4; i++)
		assert_int_equal(g.outcomes[i], OUTCOME_LOST);
	assert_non_null(strstr(g.error, "max_attempts"));
	assert_non_null(strstr(g.error, "lost"));
}

/*
 * Defect 6: a job with no result after job_timeout_s is requeued as lost
 * ("no result"), counts against its provider's breaker, goes to another
 * provider, and a late RESULT for it is ignored.
 */
static void
test_job_timeout(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	link_agent(f, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	drain_loop(f, 100);
	assert_int_equal(f->fa[1].njobs, 0);
	wait_jobs(f, 1, 1);
	assert_string_equal(f->fa[1].msg_ids[0], f->ids[0]);
	assert_int_equal(f->p[0]->consecutive_failures, 1);
	assert_int_equal(f->p[0]->lost, 1);
	assert_int_equal(f->p[0]->se.in_flight, 0);
	/* The late answer changes nothing. */
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "late", NULL);
	drain_loop(f, 30);
	assert_int_equal(count(f, MSG_DELIVERED), 0);
	assert_int_equal(count(f, MSG_SENDING), 1);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "pm-b", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.natt, 2);
	assert_int_equal(g.outcomes[0], OUTCOME_LOST);
	assert_string_equal(g.providers[0], "a");
	assert_string_equal(g.details[0], "no result");
	assert_int_equal(g.outcomes[1], OUTCOME_DELIVERED);
}

/*
 * Defect 6, the TTL rule (dispatcher.h): a message whose TTL is spent
 * while nobody is up waits; it is then offered to each up provider it has
 * not tried this round, and fails as expired only when none is left.
 */
static void
test_ttl_offers_untried_before_expiry(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	link_agent(f, 0);
	link_agent(f, 1);
	submit_created(f, now_ms() - 2 * 86400 * 1000LL);
	drain_loop(f, 50);
	assert_int_equal(count(f, MSG_QUEUED), 1);
	assert_int_equal(count(f, MSG_FAILED), 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	wait_jobs(f, 0, 1);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_TRANSIENT, NULL, "451");
	wait_jobs(f, 1, 1);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_TRANSIENT, NULL, "451");
	wait_count(f, MSG_FAILED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_FAILED);
	assert_int_equal(g.natt, 2);
	assert_non_null(strstr(g.error, "expired"));
}

/*
 * Defect 10: under `priority` a full primary without overflow holds the
 * burst; the backup takes it only once the primary is down.
 */
static void
test_priority_no_overflow(void **state)
{
	struct fixture *f = *state;

	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	submit(f);
	submit(f);
	wait_jobs(f, 0, 1);
	drain_loop(f, 100);
	assert_int_equal(f->fa[0].njobs, 1);
	assert_int_equal(f->fa[1].njobs, 0);
	/* Room again at the primary: the second goes there. */
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0],
			  f->fa[0].msg_ids[0], OUTCOME_DELIVERED, "ok", NULL);
	wait_jobs(f, 0, 2);
	assert_int_equal(f->fa[1].njobs, 0);
	/* Primary down: its message falls to the backup. */
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_DOWN, 0);
	wait_jobs(f, 1, 1);
	assert_string_equal(f->fa[1].msg_ids[0], f->fa[0].msg_ids[1]);
}

/* overflow = yes: a full primary spills onto the next tier. */
static void
test_priority_overflow(void **state)
{
	struct fixture *f = *state;

	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	submit(f);
	submit(f);
	wait_jobs(f, 0, 1);
	wait_jobs(f, 1, 1);
}

/*
 * rate_per_s: a burst of one second's tokens, then one job per token as
 * the timer refills the bucket (the check itself takes no token).
 */
static void
test_rate_limit(void **state)
{
	struct fixture *f = *state;
	int64_t t0;
	int i;

	for (i = 0; i < 8; i++)
		submit(f);
	link_agent(f, 0);
	t0 = mono_ms();
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	wait_jobs(f, 0, 5);
	drain_loop(f, 100);
	assert_int_equal(f->fa[0].njobs, 5);
	wait_jobs(f, 0, 8);
	/* Three more tokens at 5/s: at least ~600 ms after the burst. */
	assert_true(mono_ms() - t0 >= 550);
}

/*
 * max_in_flight_bytes: a provider that holds that many message bytes takes
 * no more, whatever its max_in_flight, until a result frees some.
 */
static void
test_bytes_cap(void **state)
{
	struct fixture *f = *state;
	int i;

	for (i = 0; i < 5; i++)
		submit_sized(f, now_ms(), 400);
	link_agent(f, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	/* 2 x 414 < 1024 takes a third; 3 x 414 is over: no fourth. */
	wait_jobs(f, 0, 3);
	drain_loop(f, 100);
	assert_int_equal(f->fa[0].njobs, 3);
	assert_int_equal(f->p[0]->bytes_in_flight, 3 * 414);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0],
			  f->fa[0].msg_ids[0], OUTCOME_DELIVERED, "pm", "");
	wait_jobs(f, 0, 4);
	drain_loop(f, 50);
	assert_int_equal(f->fa[0].njobs, 4);
	assert_int_equal(f->p[0]->bytes_in_flight, 3 * 414);
	unlink_agent(f, 0, "test over");
	assert_int_equal(f->p[0]->bytes_in_flight, 0);
}

/* Shutdown: a job whose record lands after the pause is not sent. */
static void
test_pause_before_record_unsent(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	link_agent(f, 0);
	submit(f);
	db_lock(f);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	drain_loop(f, 50);
	assert_int_equal(dispatcher_in_flight(f->d), 1);
	dispatcher_pause(f->d);
	db_unlock(f);
	wait_in_flight(f, 0);
	drain_loop(f, 30);
	assert_int_equal(f->fa[0].njobs, 0);
	assert_int_equal(link_conn_pending(f->fa[0].server_side), 0);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_QUEUED);
	assert_int_equal(g.natt, 0);
}

static bool
delayed_is(struct fixture *f, void *arg)
{
	uint64_t ready, loaded, delayed;

	dispatcher_queue_sizes(f->d, &ready, &loaded, &delayed);
	return delayed == *(uint64_t *)arg;
}

/*
 * A store_load that fails (here: the write lock held past the store's
 * 5 s busy timeout) puts its rowids back; the message is loaded later and
 * sent, not forgotten.
 * (The store once zeroed a failed load's error before its callback, so
 * the dispatcher saw "every rowid skipped"; this test caught it.)
 */
static void
test_load_failure_keeps_rowids(void **state)
{
	struct fixture *f = *state;
	uint64_t one = 1;
	int64_t t0;

	link_agent(f, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	/* Refused by the only provider: it backs off, leaving memory. */
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_TRANSIENT, NULL, "451");
	run_until(f, delayed_is, &one, 3000);
	drain_loop(f, 20);
	db_lock(f);
	t0 = mono_ms();
	while (mono_ms() - t0 < 5600) {
		/* Keep it up; the reload waits for the lock, then fails. */
		dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
		drain_loop(f, 50);
	}
	assert_int_equal(f->fa[0].njobs, 1);
	db_unlock(f);
	wait_jobs(f, 0, 2);
	assert_string_equal(f->fa[0].msg_ids[1], f->ids[0]);
}

/* The seams: limits and breaker change only in their explicit steps. */
static void
test_limits_are_pure(void **state)
{
	struct provider p;
	int64_t t = 1000000;

	memset(&p, 0, sizeof(p));
	p.name = "x";
	p.max_in_flight = 10;
	p.rate_per_s = 2;
	p.slow_start_s = 1;
	/* A bucket never ticked is empty: asking does not fill it. */
	assert_false(limits__rate_ok(&p));
	assert_false(limits__rate_ok(&p));
	limits__tick(&p, t);
	assert_true(limits__rate_ok(&p));
	limits__take(&p);
	limits__take(&p);
	assert_false(limits__rate_ok(&p));
	assert_int_equal(limits__rate_wait_us(&p), 500001);
	limits__tick(&p, t + 500001);
	assert_true(limits__rate_ok(&p));
	/* The ramp: linear from 1, ended by a tick, not by asking. */
	limits__ramp_start(&p, 1000);
	assert_int_equal(limits__max_in_flight(&p, 1000), 1);
	assert_int_equal(limits__max_in_flight(&p, 1500), 5);
	assert_int_equal(limits__max_in_flight(&p, 2500), 10);
	assert_int_equal(p.ramp_start_mono, 1000);
	limits__tick(&p, 2500 * 1000);
	assert_int_equal(p.ramp_start_mono, 0);
	p.breaker = BREAKER_HALF_OPEN;
	assert_int_equal(limits__max_in_flight(&p, 2500), 1);
	/* Bytes: below the cap takes one more (which may pass it). */
	p.bytes_in_flight = 1023;
	assert_true(limits__bytes_ok(&p, 1024));
	p.bytes_in_flight = 1024;
	assert_false(limits__bytes_ok(&p, 1024));
}

static void
test_breaker_steps(void **state)
{
	struct provider p;

	memset(&p, 0, sizeof(p));
	p.name = "x";
	breaker__init(&p, 100);
	assert_false(breaker__failure(&p, 2));
	assert_true(breaker__failure(&p, 2));
	assert_false(breaker__allows(&p));
	assert_false(breaker__failure(&p, 2)); /* already open */
	assert_true(breaker__half_open(&p));
	assert_false(breaker__half_open(&p));
	assert_true(breaker__allows(&p));
	/* A failed trial opens it again, the cool-down doubled... */
	assert_true(breaker__failure(&p, 2));
	assert_int_equal(p.breaker_cooldown_ms, 200);
	/* ...up to the cap. */
	p.breaker = BREAKER_HALF_OPEN;
	p.breaker_cooldown_ms = BREAKER_MAX_COOLDOWN_MS - 1;
	assert_true(breaker__failure(&p, 2));
	assert_int_equal(p.breaker_cooldown_ms, BREAKER_MAX_COOLDOWN_MS);
	/* A good trial closes it and resets the cool-down. */
	p.breaker = BREAKER_HALF_OPEN;
	breaker__success(&p, 100);
	assert_int_equal(p.breaker, BREAKER_CLOSED);
	assert_int_equal(p.breaker_cooldown_ms, 100);
	assert_int_equal(p.consecutive_failures, 0);
}

/* --- outcome classes (issue 7) --------------------------------------- */

/* a takes the first message; b is up but drained until it should help. */
static void
first_at_a(struct fixture *f, int nmsg)
{
	link_agent(f, 0);
	link_agent(f, 1);
	dispatcher_set_disabled(f->d, f->p[1], true);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	dispatcher_heartbeat(f->d, f->p[1], LINK_HEALTH_OK, 0);
	while (nmsg-- > 0)
		submit(f);
	wait_jobs(f, 0, (size_t)f->submitted);
	dispatcher_set_disabled(f->d, f->p[1], false);
}

/*
 * throttled with Retry-After: a is paused for that long (not eligible,
 * shown as paused with the reason), the message goes to b at once, the
 * try is recorded but not counted, the breaker does not count it, and a
 * comes back by itself when the pause ends.
 */
static void
test_throttled_pauses_frees_attempt(void **state)
{
	struct fixture *f = *state;
	struct get_result g;
	int64_t t0 = mono_ms();

	first_at_a(f, 1);
	dispatcher_result_after(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
				OUTCOME_THROTTLED, NULL, "429 slow down", 1000);
	assert_int_equal(f->p[0]->state, PROVIDER_PAUSED);
	assert_string_equal(provider_state_name(f->p[0]), "paused");
	assert_string_equal(f->p[0]->reason, "throttled: 429 slow down");
	assert_true(f->p[0]->paused_until_ms > now_ms() + 900);
	assert_int_equal(f->p[0]->consecutive_failures, 0);
	assert_int_equal(f->p[0]->throttle_ms, 0); /* Retry-After said it */
	wait_jobs(f, 1, 1);
	/* At once: b has it while a is still paused. */
	assert_int_equal(f->p[0]->state, PROVIDER_PAUSED);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "id-b", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.attempts, 1); /* the throttled try was free */
	assert_int_equal(g.natt, 2);
	assert_int_equal(g.outcomes[0], OUTCOME_THROTTLED);
	assert_string_equal(g.providers[0], "a");
	assert_int_equal(g.outcomes[1], OUTCOME_DELIVERED);
	/* Not eligible while paused: a new message goes to b. */
	submit(f);
	wait_jobs(f, 1, 2);
	assert_int_equal(f->fa[0].njobs, 1);
	/* The pause ends by itself, honouring Retry-After. */
	wait_state(f, 0, PROVIDER_UP, 2000);
	assert_true(mono_ms() - t0 >= 990);
	assert_int_equal(f->p[0]->paused_until_ms, 0);
	assert_string_equal(f->p[0]->reason, "");
}

/*
 * throttled without Retry-After: 1 s, doubled by the next throttle after
 * the pause (not by throttles of jobs sent before it), reset by a delivery.
 */
static void
test_throttled_doubling(void **state)
{
	struct fixture *f = *state;
	int64_t left;

	link_agent(f, 0);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	submit(f);
	submit(f);
	wait_jobs(f, 0, 2);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0],
			  f->fa[0].msg_ids[0], OUTCOME_THROTTLED, NULL, "429");
	assert_int_equal(f->p[0]->state, PROVIDER_PAUSED);
	assert_int_equal(f->p[0]->throttle_ms, 1000);
	left = f->p[0]->pause_end_mono - mono_ms();
	assert_true(left > 900 && left <= 1000);
	/* The second job was sent before the pause: no doubling. */
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[1],
			  f->fa[0].msg_ids[1], OUTCOME_THROTTLED, NULL, "429");
	assert_int_equal(f->p[0]->throttle_ms, 1000);
	wait_state(f, 0, PROVIDER_UP, 2000);
	/* Both come back to a (the only provider) after their round. */
	wait_jobs(f, 0, 4);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[2],
			  f->fa[0].msg_ids[2], OUTCOME_THROTTLED, NULL, "429");
	assert_int_equal(f->p[0]->throttle_ms, 2000);
	left = f->p[0]->pause_end_mono - mono_ms();
	assert_true(left > 1900 && left <= 2000);
	/* A delivery resets the doubling. */
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[3],
			  f->fa[0].msg_ids[3], OUTCOME_DELIVERED, "x", NULL);
	assert_int_equal(f->p[0]->throttle_ms, 0);
	wait_count(f, MSG_DELIVERED, 1);
}

/*
 * account: a is down with the provider's reason, the message moves on at
 * once and the attempt counts; heartbeats saying down keep it down (the
 * breaker's cool-down does not bring it back); the first heartbeat that
 * does not (the agent's probe passed) brings it back with its slow start.
 */
static void
test_account_down_until_probe(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	/* Slot 0 is provider c: slow_start_s = 1. */
	f->p[0] = registry_find(f->reg, "c");
	first_at_a(f, 1);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_ACCOUNT, NULL, "401 bad key");
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
	assert_true(f->p[0]->account_down);
	assert_string_equal(f->p[0]->reason, "account: 401 bad key");
	wait_jobs(f, 1, 1);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "id-b", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.attempts, 2);
	assert_int_equal(g.outcomes[0], OUTCOME_ACCOUNT);
	assert_string_equal(g.details[0], "401 bad key");
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_DOWN, 0);
	drain_loop(f, 200); /* past breaker_cooldown_ms */
	assert_int_equal(f->p[0]->state, PROVIDER_DOWN);
	assert_string_equal(f->p[0]->reason, "account: 401 bad key");
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	assert_int_equal(f->p[0]->state, PROVIDER_UP);
	assert_false(f->p[0]->account_down);
	assert_true(f->p[0]->ramp_start_mono != 0);
	assert_int_equal(limits__max_in_flight(f->p[0], mono_ms()), 1);
}

/* ambiguous: routed like transient, counted, shown on the attempt. */
static void
test_ambiguous_routed_elsewhere(void **state)
{
	struct fixture *f = *state;
	struct get_result g;

	first_at_a(f, 1);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_AMBIGUOUS, NULL, "timeout after send");
	assert_int_equal(f->p[0]->state, PROVIDER_UP);
	assert_int_equal(f->p[0]->consecutive_failures, 1);
	wait_jobs(f, 1, 1);
	dispatcher_result(f->d, f->p[1], f->fa[1].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "id-b", NULL);
	wait_count(f, MSG_DELIVERED, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.attempts, 2);
	assert_int_equal(g.natt, 2);
	assert_int_equal(g.outcomes[0], OUTCOME_AMBIGUOUS);
	assert_string_equal(g.providers[1], "b");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_limits_are_pure),
	    cmocka_unit_test(test_breaker_steps),
	    cmocka_unit_test_setup_teardown(test_up_at_first_heartbeat, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_link_drop_requeues_lost, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_heartbeat_timeout,
					    setup_fast_hb, teardown),
	    cmocka_unit_test_setup_teardown(test_transient_retry_and_backoff,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_permanent_fails, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_breaker, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_max_attempts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_results, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_slow_start, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_job_waits_for_sending_record,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unsent_when_down_before_record,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_sending_write_fails_nothing_sent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_delivered_write_retried, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_requeue_write_retried, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_lost_counts_against_max_attempts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_job_timeout, setup_job_timeout,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_ttl_offers_untried_before_expiry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pause_before_record_unsent,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load_failure_keeps_rowids,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rate_limit, setup_rate,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_bytes_cap, setup_bytes,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_priority_no_overflow,
					    setup_priority, teardown),
	    cmocka_unit_test_setup_teardown(test_priority_overflow,
					    setup_priority_overflow, teardown),
	    cmocka_unit_test_setup_teardown(test_throttled_pauses_frees_attempt,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_throttled_doubling, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_account_down_until_probe,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ambiguous_routed_elsewhere,
					    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
