/*
 * The store's backend interface, private to src/store/ and its tests.
 *
 * store.c is the thin front every caller goes through: it checks
 * arguments (a NULL store or message is our bug and fatal; bad field
 * values are reported through the callback) and then calls one backend
 * through this table.  A backend keeps its functions static and exports
 * one const table; store_lookup() finds it by name in store.c's list
 * (store_sqlite.c is the only one today).
 *
 * A backend given a non-zero preset err for an operation must not execute
 * it but still complete it, in order, through the callback with that err,
 * so that no callback ever runs before its submitting call returns.
 */
#ifndef SHIVNERI_STORE_INT_H
#define SHIVNERI_STORE_INT_H

#include "store/store.h"

struct store_backend;

struct store_ops {
	const char *name;
	/* The largest max_message_bytes the backend can hold. */
	int64_t max_message_bytes;
	/* opts is complete (the front fills in the defaults). */
	int (*open)(const char *dir, const struct store_options *opts,
		    struct event_base *base, struct store_backend **out);
	void (*close)(struct store_backend *be);
	int (*scan)(struct store_backend *be,
		    void (*each)(void *arg, int64_t rowid, int64_t next_ms),
		    void *arg, int64_t counts[MSG_NSTATUS]);
	/* Takes m; idem (may be NULL) has a key and a scope. */
	void (*submit)(struct store_backend *be, int err,
		       struct store_message *m, const struct store_idem *idem,
		       store_submit_cb cb, void *arg);
	void (*update)(struct store_backend *be, int err,
		       const struct store_update *u, store_done_cb cb,
		       void *arg);
	void (*load)(struct store_backend *be, int err, const int64_t *rowids,
		     size_t n, store_load_cb cb, void *arg);
	void (*get)(struct store_backend *be, int err, const char *id,
		    store_get_cb cb, void *arg);
	void (*housekeep)(struct store_backend *be, int err,
			  int64_t idem_cutoff_ms, int64_t retention_cutoff_ms,
			  store_housekeep_cb cb, void *arg);
	size_t (*pending)(const struct store_backend *be);
	/* See store_healthy(); NULL: always healthy. */
	bool (*healthy)(const struct store_backend *be, const char **why);
	/* Transactions committed so far; a test hook for group commit. */
	uint64_t (*commits)(const struct store_backend *be);
	/* Test hook: runs backend-specific text (SQL) in the queue's order. */
	void (*exec)(struct store_backend *be, const char *text,
		     store_done_cb cb, void *arg);
	/* q is checked (store_list); its strings are copied. */
	void (*list)(struct store_backend *be, int err,
		     const struct store_list_query *q, store_list_cb cb,
		     void *arg);
	void (*retry)(struct store_backend *be, int err, const char *id,
		      store_retry_cb cb, void *arg);
	void (*oldest)(struct store_backend *be, store_oldest_cb cb, void *arg);
	/* The webhook outbox (store.h); err as for the others. */
	void (*outbox_add)(struct store_backend *be, int err, const char *body,
			   store_done_cb cb, void *arg);
	void (*outbox_claim)(struct store_backend *be, int err, int64_t now_ms,
			     int64_t lease_until_ms, size_t max,
			     int64_t expire_before_ms, store_outbox_claim_cb cb,
			     void *arg);
	void (*outbox_finish)(struct store_backend *be, int err, int64_t seq,
			      int64_t next_ms, store_done_cb cb, void *arg);
	uint64_t (*outbox_dropped)(const struct store_backend *be);
	void (*outbox_set_max)(struct store_backend *be, int64_t max);
	void (*outbox_set_horizon)(struct store_backend *be, int64_t ms);
	/* Test hook: store__outbox_counts; NULL: none. */
	uint64_t (*outbox_counts)(const struct store_backend *be);
	/* Test hooks: store__lazy_wait, store__lazy_holding. */
	void (*lazy_wait)(struct store_backend *be, int64_t us);
	bool (*lazy_holding)(struct store_backend *be);
	/* See store_unreadable_rows(); NULL: none. */
	uint64_t (*unreadable_rows)(const struct store_backend *be);
	/* See store_damaged_indexes(); NULL: none. */
	uint64_t (*damaged_indexes)(const struct store_backend *be);
	/* See store_commit_stats(); NULL: no commits counted. */
	void (*commit_stats)(struct store_backend *be,
			     struct store_commit_stats *out);
};

extern const struct store_ops store_sqlite_ops;

/* Test hook: transactions the backend has committed since open. */
uint64_t store__commits(const struct store *st);
/*
 * Test hook: the times the backend counted the outbox's rows since open
 * (once at open, again only after an outcome it cannot know; never per
 * claim, which answers a depth kept without counting).
 */
uint64_t store__outbox_counts(const struct store *st);

/*
 * Test hook: runs text (SQL for the sqlite backend) on the writer's
 * connection, in order with the other operations, outside any batch
 * transaction; cb gets 0 or an error.  For fault injection such as
 * "PRAGMA max_page_count = N" (a per-connection setting).
 */
void store__exec(struct store *st, const char *text, store_done_cb cb,
		 void *arg);

/*
 * Test hook: lazy updates wait up to us microseconds for company instead of
 * STORE_LAZY_WAIT_US (a long wait makes "they share a commit" certain).
 */
void store__lazy_wait(struct store *st, int64_t us);
/* Test hook: the writer is holding lazy updates for company right now. */
bool store__lazy_holding(struct store *st);

/*
 * Adds one commit of us microseconds carrying ops operations to s (the
 * caller holds whatever lock guards s).
 */
void store__commit_observe(struct store_commit_stats *s, int64_t us,
			   uint64_t ops);

/* The schema version this build writes (PRAGMA user_version). */
#define STORE_SCHEMA_VERSION 6

#endif
