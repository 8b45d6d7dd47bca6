/*
 * The fixture the dispatcher's unit tests share (test_dispatcher*.c): a
 * real store in a temporary directory, a registry with providers a, b and
 * c from a small configuration, and fake agents at the other end of
 * socketpairs that collect the JOB frames the dispatcher writes.
 * Heartbeats, link drops and results are injected by calling the
 * dispatcher the way the agent port does.
 *
 * Store trouble is real, not mocked: db_lock() holds the database's write
 * lock from a second connection (the store's commit waits, so what the
 * dispatcher does before a write is durable can be seen), and fault_on()
 * adds a trigger that makes the store's UPDATE to one status fail inside
 * its transaction (a failed write, as a full disk would give).
 */
#ifndef SHIVNERI_FIXTURE_DISPATCHER_H
#define SHIVNERI_FIXTURE_DISPATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

struct config;
struct dispatcher;
struct event_base;
struct link_conn;
struct provider;
struct registry;
struct store;
struct store_attempt;
struct store_message;

#define MAX_JOBS 64

struct job;

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
	struct job *claim; /* submit_claim_start: while the insert runs */
	int claim_err;     /* that insert's error */
};

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

void run_until(struct fixture *f, bool (*cond)(struct fixture *, void *),
	       void *arg, int timeout_ms);
void wait_jobs(struct fixture *f, size_t agent, size_t n);
void link_agent(struct fixture *f, int i);
/* Links agent i and has it report healthy: its provider is up. */
void agent_up(struct fixture *f, int i);
void unlink_agent(struct fixture *f, int i, const char *why);
bool submitted_at_least(struct fixture *f, void *arg);
/* Submits m (taken) and waits until the store has it. */
void submit_msg(struct fixture *f, struct store_message *m);
void submit_sized(struct fixture *f, int64_t created_ms, size_t body_len);
void submit_created(struct fixture *f, int64_t created_ms);
void submit(struct fixture *f);
struct store_message *new_message(int64_t created_ms, size_t body_len);
bool submit_claim_start(struct fixture *f);
void db_lock(struct fixture *f);
void db_unlock(struct fixture *f);
void fault_on(struct fixture *f, int status);
void fault_insert_on(struct fixture *f);
void fault_off(struct fixture *f);
int setup(void **state);
int setup_fast_hb(void **state);
int setup_job_timeout(void **state);
int setup_bytes(void **state);
int setup_rate(void **state);
int setup_one_slot(void **state);
int setup_priority(void **state);
int setup_priority_overflow(void **state);
int setup_size(void **state);
int teardown(void **state);
void get(struct fixture *f, const char *id, struct get_result *g);
int64_t count(struct fixture *f, int status);
void wait_count(struct fixture *f, int status, int64_t n);
void wait_in_flight(struct fixture *f, unsigned n);
void wait_state(struct fixture *f, int i, int state, int timeout_ms);
void drain_loop(struct fixture *f, int ms);

#endif
