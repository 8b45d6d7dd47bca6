/*
 * The fixture the store's unit tests share (test_store*.c): a real SQLite
 * file in a temporary folder and a real event_base.  Every asynchronous
 * result is awaited by running the loop until a flag is set, with a
 * deadline (WAIT_FOR), so a lost callback fails the test instead of
 * hanging it.
 */
#ifndef SHIVNERI_FIXTURE_STORE_H
#define SHIVNERI_FIXTURE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "store/store.h"

#define DEADLINE_MS 20000

struct fixture {
	char dir[64];
	char sub[128]; /* the store's folder, created by store_open */
	struct event_base *base;
	struct store *st;
};

/* Runs the loop until cond holds or the deadline passes. */
#define WAIT_FOR(base, cond)                                                   \
	do {                                                                   \
		int64_t dl_ = mono_ms() + DEADLINE_MS;                         \
		struct timeval tv_ = {0, 50 * 1000};                           \
		struct event *t_ =                                             \
		    event_new((base), -1, EV_PERSIST, noop_cb, NULL);          \
		event_add(t_, &tv_);                                           \
		while (!(cond) && mono_ms() < dl_)                             \
			event_base_loop((base), EVLOOP_ONCE);                  \
		event_free(t_);                                                \
		assert_true(cond);                                             \
	} while (0)

struct sub_res {
	int done;
	int err;
	char id[32];
	bool dup;
	int64_t rowid;
};

#define IDEM(k)                                                                \
	((k) != NULL                                                           \
	     ? &(struct store_idem){.key = (k),                                \
				    .scope = STORE_IDEM_SCOPE_ANONYMOUS}       \
	     : NULL)

struct get_res {
	int done;
	int err;
	struct store_message *m;
	struct store_attempt att[8];
	size_t natt;
};

struct done_res {
	int done;
	int err;
};

void noop_cb(evutil_socket_t fd, short what, void *arg);
int setup(void **state);
int teardown(void **state);
void open_store(struct fixture *f);
struct store_message *make_message(const char *id, const char *subject);
void submit_cb(void *arg, int err, const char *id, bool duplicate,
	       struct store_message *m);
int64_t submit_wait(struct fixture *f, struct store_message *m,
		    const struct store_idem *idem, struct sub_res *r);
void get_res_cleanup(struct get_res *r);
void get_wait(struct fixture *f, const char *id, struct get_res *r);
void done_cb(void *arg, int err);
int update_wait(struct fixture *f, const struct store_update *u);

struct hk_res {
	int done;
	int err;
	int64_t pruned[MSG_NSTATUS];
	int sub_done_before; /* submits done when housekeeping ended */
	struct sub_res *sub;
};

struct group_res {
	int done;
	int failed;
};

void hk_cb(void *arg, int err, const int64_t pruned[MSG_NSTATUS]);
void housekeep_wait(struct fixture *f, int64_t idem_cutoff, int64_t retention,
		    struct hk_res *r);
void clock_past(int64_t t);
int64_t db_int(struct fixture *f, const char *sql);
void check_counts(struct fixture *f, int64_t queued, int64_t sending,
		  int64_t delivered, int64_t failed);
void group_cb(void *arg, int err, const char *id, bool duplicate,
	      struct store_message *m);

#endif
