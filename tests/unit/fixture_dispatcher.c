/*
 * The dispatcher tests' shared fixture: see fixture_dispatcher.h.
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

#include "fixture_dispatcher.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

void
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

void
wait_jobs(struct fixture *f, size_t agent, size_t n)
{
	size_t want[2] = {agent, n};

	run_until(f, jobs_at_least, want, 3000);
}

void
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

void
agent_up(struct fixture *f, int i)
{
	link_agent(f, i);
	dispatcher_heartbeat(f->d, f->p[i], LINK_HEALTH_OK, 0);
}

void
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

bool
submitted_at_least(struct fixture *f, void *arg)
{
	return f->submitted >= *(int *)arg;
}

/* A message of about body_len bytes (0: a tiny one). */
/* A new message, not stored: created at created_ms, body_len x's (0: a
 * short body). */
struct store_message *
new_message(int64_t created_ms, size_t body_len)
{
	struct store_message *m = xcalloc(1, sizeof(*m));
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
	return m;
}

void
submit_msg(struct fixture *f, struct store_message *m)
{
	int want = f->submitted + 1;

	store_submit(f->st, m, NULL, submit_cb, f);
	run_until(f, submitted_at_least, &want, 3000);
}

void
submit_sized(struct fixture *f, int64_t created_ms, size_t body_len)
{
	submit_msg(f, new_message(created_ms, body_len));
}

/* As the server's submit path does with its claim hooks (serve.c). */
static void
claimed_cb(void *arg, int err, const char *id, bool duplicate,
	   struct store_message *m)
{
	struct fixture *f = arg;
	struct job *claim = f->claim;

	f->claim = NULL;
	f->claim_err = err;
	if (err != 0 || duplicate) {
		dispatcher_claim_cancel(f->d, claim);
		store_message_free(m);
		f->submitted++;
		return;
	}
	snprintf(f->ids[f->submitted], sizeof(f->ids[0]), "%s", id);
	f->submitted++;
	dispatcher_claim_durable(f->d, claim, m);
}

/*
 * Submits a message the way the server's intake does: offered to the
 * fast path first.  Returns whether it was claimed; does not wait for
 * the commit (the caller does: submitted_at_least).
 */
bool
submit_claim_start(struct fixture *f)
{
	struct store_message *m = new_message(now_ms(), 0);

	f->claim = dispatcher_claim(f->d, m);
	if (f->claim == NULL) {
		store_submit(f->st, m, NULL, submit_cb, f);
		return false;
	}
	store_submit(f->st, m, NULL, claimed_cb, f);
	return true;
}

void
submit_created(struct fixture *f, int64_t created_ms)
{
	submit_sized(f, created_ms, 0);
}

void
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
void
db_lock(struct fixture *f)
{
	f->lock = db_open(f);
	db_exec(f->lock, "BEGIN IMMEDIATE;");
}

void
db_unlock(struct fixture *f)
{
	db_exec(f->lock, "ROLLBACK;");
	sqlite3_close(f->lock);
	f->lock = NULL;
}

/* Every store write that sets a message to status fails, until cleared. */
void
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

/* Every new body fails: an insert that fails after its message's row. */
void
fault_insert_on(struct fixture *f)
{
	sqlite3 *db = db_open(f);

	db_exec(db, "CREATE TRIGGER test_fault BEFORE INSERT ON bodies"
		    " BEGIN SELECT RAISE(ABORT, 'injected fault'); END;");
	sqlite3_close(db);
}

void
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
	/* The tests run after the start's grace (a test of it restarts it). */
	dispatch__grace_begin(f->d, 0);
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
int
setup(void **state)
{
	return setup_with(state, 10000);
}

int
setup_fast_hb(void **state)
{
	return setup_with(state, 200);
}

int
setup_job_timeout(void **state)
{
	return setup_cfg(state, 10000, "job_timeout_s = 1\n", "", "");
}

int
setup_bytes(void **state)
{
	return setup_cfg(state, 10000,
			 "max_message_bytes = 1024\n"
			 "max_in_flight_bytes = 1024\n",
			 "", "");
}

/* a is the primary tier with room for one message; b the backup. */
int
setup_rate(void **state)
{
	return setup_cfg(state, 10000, "", "rate_per_s = 5\n", "");
}

/* a alone can take one message at a time. */
int
setup_one_slot(void **state)
{
	return setup_cfg(state, 10000, "", "max_in_flight = 1\n", "");
}

int
setup_priority(void **state)
{
	return setup_cfg(state, 10000, "scheduler = priority\n",
			 "priority = 1\nmax_in_flight = 1\n", "priority = 2\n");
}

int
setup_priority_overflow(void **state)
{
	return setup_cfg(state, 10000, "scheduler = priority\n",
			 "priority = 1\nmax_in_flight = 1\noverflow = yes\n",
			 "priority = 2\n");
}

/* Size routing: a (priority 1) takes at most 1,024 bytes, b (2) more. */
int
setup_size(void **state)
{
	return setup_cfg(state, 10000, "scheduler = priority\n",
			 "priority = 1\nmax_message_bytes = 1024\n",
			 "priority = 2\n");
}

int
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

void
get(struct fixture *f, const char *id, struct get_result *g)
{
	memset(g, 0, sizeof(*g));
	store_get(f->st, id, get_cb, g);
	run_until(f, get_done, g, 3000);
}

int64_t
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
void
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

void
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

void
wait_state(struct fixture *f, int i, int state, int timeout_ms)
{
	int w[2] = {i, state};

	run_until(f, is_state, w, timeout_ms);
}

void
drain_loop(struct fixture *f, int ms)
{
	int64_t end = mono_ms() + ms;

	while (mono_ms() < end) {
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		usleep(1000);
	}
}
