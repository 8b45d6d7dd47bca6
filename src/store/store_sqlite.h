/*
 * Private to the SQLite backend: the backend's state, the queued operation,
 * and the helpers its three files share.
 *
 * store_sqlite.c owns the queue, the writer thread, completion on the loop
 * and the health flag; store_sqlite_schema.c opens the database (the data
 * folder's marker, pragmas, migrations, recovery, prepared statements) and
 * runs the start-up scan; store_sqlite_ops.c executes a batch of operations
 * inside one transaction; store_sqlite_reindex.c finds and rebuilds damaged
 * indexes.  The split follows what changes together: a new
 * column touches the schema and the statements, not the thread.
 */
#ifndef SHIVNERI_STORE_SQLITE_H
#define SHIVNERI_STORE_SQLITE_H

#include "store/store.h"
#include "store/store_int.h"
#include "common/buf.h"
#include "common/log.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define BATCH_MAX 1024
#define IDEM_TTL_MS (24LL * 3600 * 1000)
#define BUSY_TIMEOUT_MS 5000
/*
 * Room for the columns of a row besides the MIME body (recipients, To:,
 * subject, tags...).  SQLite's length limit applies to the whole row, so
 * it is set to max_message_bytes plus this.
 */
#define ROW_HEADROOM (1024 * 1024)
/* Rows deleted per batch by housekeeping, so the writer is never held. */
#define HOUSEKEEP_CHUNK 500
/*
 * While unhealthy the writer tries a small write after this long, doubling
 * the wait after each failed try up to PROBE_MAX_MS (a disk that stays full
 * should not log a line a second).
 */
#define PROBE_INTERVAL_MS 1000
#define PROBE_MAX_MS 16000
/*
 * What the probe writes: about a message's worth of pages, not a few
 * bytes, so "healthy" means a message would fit again.  The row stays in
 * meta (replaced by the next probe).
 */
#define PROBE_BYTES (64 * 1024)
/*
 * After a batch met a damaged page, the writer looks for a damaged index
 * (index_look in store_sqlite.c), at most this often: a damaged table
 * page is met again by every read of it, and a look reads every index.
 */
#define INDEX_LOOK_MS (10 * 60 * 1000)

/* Column numbers of MSG_COLUMNS (store_sqlite_ops.c). */
enum {
	C_ROWID,
	C_ID,
	C_STATUS,
	C_MAIL_FROM,
	C_RCPT,
	C_HEADER_FROM,
	C_SUBJECT,
	C_TO_JSON,
	C_TAGS_JSON,
	C_CREATED,
	C_UPDATED,
	C_NEXT,
	C_ATTEMPTS,
	C_ROUND,
	C_TRIED,
	C_PROVIDER,
	C_PMID,
	C_ERROR,
	C_MIME,
	C_BUDGET,
};

/* The statements prepared once at open (store__stmt_sql). */
enum {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_IDEM_FIND,
	ST_IDEM_PUT,
	ST_MSG_INSERT,
	ST_BODY_INSERT,
	ST_MSG_UPDATE,
	ST_ATT_INSERT,
	ST_LOAD,
	ST_GET,
	ST_ATT_LIST,
	ST_IDEM_EXPIRE,
	ST_PRUNE,
	ST_STATUS_OF,
	ST_COUNT_ADD,
	ST_PROBE,
	ST_MAX,
};

extern const char *const store__stmt_sql[ST_MAX];

enum op_kind {
	OP_SUBMIT,
	OP_UPDATE,
	OP_LOAD,
	OP_GET,
	OP_HOUSEKEEP,
	OP_EXEC,
	OP_LIST,
	OP_RETRY,
	OP_OLDEST,
	OP_OUTBOX_ADD,    /* store_sqlite_outbox.c */
	OP_OUTBOX_CLAIM,  /* store_sqlite_outbox.c */
	OP_OUTBOX_FINISH, /* store_sqlite_outbox.c */
};

/*
 * One queued operation.  The loop thread fills it in and queues it; from
 * then on only the writer touches it until the batch is posted back, and
 * then only the loop thread, which runs the callback and frees it (or, for
 * housekeeping with work left, queues it again).
 */
struct op {
	struct op *next;
	struct store_backend *be;
	enum op_kind kind;
	bool preset; /* err was set by the front: do not execute */
	bool lazy;   /* an update nobody waits on (store_update.lazy) */
	bool wrote;  /* a statement of this op changed rows in this run */
	int err;
	void *arg;
	union {
		store_submit_cb submit;
		store_done_cb done;
		store_load_cb load;
		store_get_cb get;
		store_housekeep_cb housekeep;
		store_list_cb list;
		store_retry_cb retry;
		store_oldest_cb oldest;
		store_outbox_claim_cb outbox_claim;
	} cb;
	union {
		struct {
			struct store_message *m;
			char *key;   /* in the op's tail, or NULL */
			char *scope; /* in the op's tail; with key */
			unsigned char hash[STORE_IDEM_HASH_LEN];
			bool dup;
			char dup_id[32];
		} submit;
		struct {
			struct store_update u; /* strings in the op's tail */
		} update;
		struct {
			/*
			 * In the op's tail.  A rowid made negative is a row
			 * found unreadable in an earlier run of the batch:
			 * answered as such without reading it again (see
			 * row_unreadable in store_sqlite_ops.c).
			 */
			int64_t *rowids;
			size_t n;
			struct store_message **msgs;
			size_t nmsgs;
		} load;
		struct {
			char id[32];
			struct store_message *m;
			struct store_attempt *att;
			size_t natt;
			bool unreadable; /* as a negative rowid of a load */
		} get;
		struct {
			int64_t idem_cutoff, retention_cutoff;
			bool more; /* a chunk was full: run again */
			/* Deleted by this run, then added to total if it
			 * commits. */
			int64_t chunk[MSG_NSTATUS];
			int64_t total[MSG_NSTATUS];
		} hk;
		struct {
			char *sql; /* in the op's tail */
		} exec;
		struct {
			/* provider and before in the op's tail */
			struct store_list_query q;
			struct store_message **msgs;
			size_t n;
			bool has_next;
			char next[STORE_CURSOR_MAX + 1];
		} list;
		struct {
			char id[32];
			int64_t rowid;
		} retry;
		struct {
			int64_t created_ms;
		} oldest;
		struct {
			char *body;      /* add: in the op's tail */
			int64_t seq;     /* finish */
			int64_t next_ms; /* finish: < 0 deletes; claim: now */
			int64_t lease;   /* claim: the claimed rows' next_ms */
			size_t max;      /* claim */
			int64_t expire_before; /* claim: older rows go */
			struct store_outbox_row *rows; /* claim's result */
			size_t nrows;
			int64_t depth;
		} outbox;
	} u;
};

_Static_assert(sizeof(struct op) % _Alignof(int64_t) == 0,
	       "the tail of an op must be aligned for the rowids of a load");

struct store_backend {
	char *dir;
	char *path;
	char *marker; /* DIR/shivneri.store, see store_sqlite_schema.c */
	int lock_fd;  /* DIR/shivneri.lock, flock()ed while open; or -1 */
	int64_t max_message_bytes;
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_MAX];
	struct mailbox *mb;

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct op *head, **tail; /* under lock */
	size_t queued, eager;    /* under lock: ops queued, those not lazy */
	int64_t lazy_wait_us;    /* under lock */
	bool lazy_holding;       /* under lock: in lazy_hold() */
	bool stopping;           /* under lock */

	bool closing;       /* loop thread only */
	struct event *kick; /* wakes the writer once per loop turn */
	bool kick_armed;    /* loop thread only */
	atomic_size_t pending;
	atomic_uint_fast64_t commits;
	/*
	 * NULL while writes succeed; else why the last write failed.  Always
	 * a static string (sqlite3_errstr or a literal), so the loop thread
	 * may read it at any time without a lock.
	 */
	_Atomic(const char *) unhealthy;
	int64_t probe_ms;   /* writer only: the last write tried, mono_ms */
	int64_t probe_wait; /* writer only: from probe_ms to the next try */

	struct buf json; /* writer thread only: the recipients as JSON */
	/*
	 * Rows the start-up scan could not read (damaged pages); set before
	 * the loop dispatches, read by /metrics (store_unreadable_rows).
	 */
	atomic_uint_fast64_t unreadable_rows;
	/* A read of this run of the batch hit a damaged row; writer only. */
	bool unreadable_hit;
	/* Ops of this batch failed alone on a damaged page; writer only. */
	int damaged_ops;
	/* Updates of this batch failed alone on a damaged page; writer only. */
	int damaged_updates;
	struct log_rl damaged_rl; /* damaged_page */
	/*
	 * A batch met a damaged page (writer only): after it, the writer
	 * looks for a damaged index (store__index_note), at most once a
	 * INDEX_LOOK_MS (index_look_ms, mono_ms).  damaged_indexes is what the
	 * last look found, for /metrics (store_damaged_indexes).
	 */
	bool damage_met;
	int64_t index_look_ms;
	atomic_uint_fast64_t damaged_indexes;
	/* Changes to status_counts by the open transaction; writer only. */
	int64_t count_delta[MSG_NSTATUS];

	/* The webhook outbox (store_sqlite_outbox.c). */
	atomic_int_fast64_t outbox_max;
	atomic_int_fast64_t outbox_horizon; /* 0: none (set_horizon) */
	sqlite3_stmt *outbox_stmt[8]; /* writer only, prepared on first use */
	atomic_uint_fast64_t outbox_dropped;
	/*
	 * The rows the open transaction dropped (cap, age) and the limits
	 * that dropped them; writer only.  They reach outbox_dropped and the
	 * log once it commits, so a batch rolled back and run again counts
	 * its drops once.
	 */
	struct {
		int64_t cap, age, max, max_age_ms;
	} outbox_drops;
	/*
	 * The outbox's depth, kept without a COUNT(*) per claim (writer
	 * only; the opener's before the writer starts): outbox_rows is the
	 * rows as of the last commit, -1 while unknown (counted again at the
	 * next claim); outbox_delta is the rows the open transaction added
	 * less those it deleted, added to outbox_rows when it commits and
	 * forgotten when it rolls back, like outbox_drops.
	 */
	int64_t outbox_rows;
	int64_t outbox_delta;
	atomic_uint_fast64_t outbox_counts; /* COUNT(*)s: a test hook */
	struct log_rl outbox_rl;            /* outbox_full */
	struct log_rl outbox_age_rl;        /* outbox_expired */
	/* Commit metrics: the writer adds, a scrape copies (stats_lock). */
	pthread_mutex_t stats_lock;
	struct store_commit_stats stats;
};

/* SQLite result code to negative errno (see store_strerror). */
int store__sqlite_errno(int rc);
/* Whether rc says a page read was damaged (not a failing disk). */
bool store__is_damage(int rc);
/* Ends a transaction, if SQLite has not ended it already (a rollback). */
void store__end_txn(sqlite3 *db);
/* Logs a failed SQLite call and returns store__sqlite_errno(rc). */
int store__db_fail(sqlite3 *db, int rc, const char *what);
/* sqlite3_exec of sql; 0 or a negative errno. */
int store__exec_sql(sqlite3 *db, const char *sql)
    __attribute__((warn_unused_result));

/*
 * Opens be->path (refusing a folder, or a missing or empty database where
 * the marker says a store was), sets it up, migrates, recovers, writes the
 * marker for a new store and prepares the statements.  0 or an error.
 */
int store__db_open(struct store_backend *be)
    __attribute__((warn_unused_result));
void store__db_close(struct store_backend *be);
/*
 * store_sqlite_scan.c: crash recovery (at open, before the writer
 * starts; rows on damaged pages are skipped and left as they are) and the
 * start-up scan (rows on damaged pages skipped, counted and left out of
 * counts).  0 or an error.
 */
int store__recover(struct store_backend *be)
    __attribute__((warn_unused_result));
/*
 * Recovery, one statement for every "sending" row, or for one row with
 * ONE_ROW (the careful way).  Named parameters: each statement binds those
 * it has (recover_step).
 */
#define RECOVER_INSERT                                                         \
	"INSERT INTO attempts (message_rowid, n, provider, at_ms, outcome,"    \
	" detail) SELECT rowid, MAX(attempts, COALESCE((SELECT MAX(n) FROM"    \
	" attempts a WHERE a.message_rowid = messages.rowid), 0)) + 1,"        \
	" provider, :now, :lost, 'server restarted' FROM messages"             \
	" WHERE status = 1"
#define RECOVER_UPDATE                                                         \
	"UPDATE messages SET status = 0, attempts = attempts + 1,"             \
	" updated_ms = :now, tried = CASE"                                     \
	" WHEN provider IS NULL THEN tried"                                    \
	" WHEN tried IS NULL OR tried = '' THEN provider"                      \
	" WHEN instr(',' || tried || ',', ',' || provider || ',') > 0"         \
	"  THEN tried"                                                         \
	" ELSE tried || ',' || provider END"                                   \
	" WHERE status = 1"
#define ONE_ROW " AND rowid = :rowid"
/*
 * Runs sql (prepared here) with :now, :lost and :rowid bound where it
 * has them; the rows it changed into *changes.  An SQLite code.
 */
int store__recover_step(sqlite3 *db, const char *sql, int64_t now,
			int64_t rowid, int *changes);
/* Rows the repair moved from "sending" to "queued", to hand out. */
struct store_due {
	int64_t rowid, next_ms;
};
struct store_dues {
	struct store_due *v;
	size_t n, cap;
};
/*
 * store_sqlite_repair.c: rebuilds the messages table with the rows keep
 * (readable) and without lost (on damaged pages), keeping the damaged
 * table aside under a name written into moved; the "sending" rows it
 * moved to "queued" (recovery could not: they are next to the damage) are
 * added to recovered (the caller frees recovered->v).  0 or an error
 * (then nothing changed and recovered->n is 0).
 */
int store__repair(struct store_backend *be, const int64_t *keep, size_t nkeep,
		  const int64_t *lost, size_t nlost, char *moved,
		  size_t movedsz, struct store_dues *recovered)
    __attribute__((warn_unused_result));
/* The same for a damaged status_counts (at open, on be->db). */
int store__repair_counts(struct store_backend *be)
    __attribute__((warn_unused_result));
/*
 * store_sqlite_reindex.c: damaged indexes, found and built again from
 * their tables (see the top of that file).
 */
struct store_index {
	char *name, *tbl, *sql; /* sql NULL: a constraint's index */
};
struct store_indexes {
	struct store_index *v;
	size_t n, cap;
};
void store__indexes_cleanup(struct store_indexes *x);
/*
 * Walks the index name of table tbl (sql its CREATE statement, or NULL)
 * whole: SQLITE_OK, SQLITE_CORRUPT when a page of it is damaged, or
 * another SQLite code.
 */
int store__index_probe(sqlite3 *db, const char *tbl, const char *name,
		       const char *sql);
/*
 * Probes the indexes named in only (comma-separated; NULL: every index)
 * and appends the damaged ones to out.  Inside the caller's transaction.
 * An SQLite code (a damaged index is not an error).
 */
int store__index_check(sqlite3 *db, const char *only,
		       struct store_indexes *out);
/*
 * Finds the damaged indexes among only (NULL: every index) and those a
 * previous run noted (store__index_note), and builds them again from
 * their tables in one transaction on db, logging a `reindexed` line for
 * each (reason says what met the damage).  The number rebuilt, 0 when no
 * index is damaged, or a negative errno when the check or the rebuild
 * failed (then nothing changed: the table is damaged too, say).  No
 * statement of db may be open; nobody else may write meanwhile.
 */
int store__reindex(sqlite3 *db, const char *only, const char *reason)
    __attribute__((warn_unused_result));
/*
 * While running (writer, between batches): probes every index, names
 * the damaged ones in names (comma-separated) and notes them in meta for
 * the next start to rebuild.  How many, or a negative errno.  Reads
 * every index: only after damage was met.
 */
int store__index_note(sqlite3 *db, char *names, size_t namesz)
    __attribute__((warn_unused_result));
int store__db_scan(struct store_backend *be,
		   void (*each)(void *arg, int64_t rowid, int64_t next_ms),
		   void *arg, int64_t counts[MSG_NSTATUS])
    __attribute__((warn_unused_result));

/*
 * store_sqlite_batch.c.  Runs n ops from first in one transaction (writer
 * thread).  Returns 0, or
 * the error of a write that failed the whole batch (disk full, I/O): every
 * op then carries that error and nothing of the batch is on disk.
 */
int store__run_batch(struct store_backend *be, struct op *first, size_t n);
/* One small write transaction, to learn whether writes work again. */
int store__probe(struct store_backend *be);
/*
 * After a commit failed on an I/O error: one small write (the probe's
 * row, one byte) whose frames go where the failed commit's went in the
 * WAL, so that a crash before the next commit cannot bring back what was
 * refused (see writer_main).  Health is left as it is.
 */
int store__scrub(struct store_backend *be);
/* Drops what a previous run of op produced, before running it again. */
void store__op_reset(struct op *op);

/* store_sqlite.c: a new op (see op_new there), and queueing it. */
struct op *store__op_new(struct store_backend *be, enum op_kind kind, int err,
			 void *arg, size_t extra, char **tail);
void store__enqueue(struct store_backend *be, struct op *op);
/* store_sqlite_ops.c: shared with the listing. */
char *store__col_strdup(sqlite3_stmt *s, int i);
/*
 * store_sqlite_ops.c, for the batch (store_sqlite_batch.c): one op run in
 * the open transaction; a prepared statement stepped and reset (a write
 * marks op as having written); the status tallies added; the probe's row
 * replaced by bytes of zeros in a transaction of its own (on failure the
 * caller rolls back, after reading why).
 */
int store__exec_op(struct store_backend *be, struct op *op, int64_t now);
int store__step_once(struct store_backend *be, int which, struct op *op);
int store__count_flush(struct store_backend *be);
int store__probe_write(struct store_backend *be, int64_t bytes);
/* Tallies a message moving from status from (-1: new) to to (-1: gone). */
void store__count_move(struct store_backend *be, int from, int to);

/* store_sqlite_list.c: the queue's pages and retries (store_list,
 * store_retry). */
void store__list_queue(struct store_backend *be, int err,
		       const struct store_list_query *q, store_list_cb cb,
		       void *arg);
void store__retry_queue(struct store_backend *be, int err, const char *id,
			store_retry_cb cb, void *arg);
int store__exec_list(struct store_backend *be, struct op *op);
int store__exec_retry(struct store_backend *be, struct op *op, int64_t now);
void store__oldest_queue(struct store_backend *be, store_oldest_cb cb,
			 void *arg);
int store__exec_oldest(struct store_backend *be, struct op *op);
/*
 * The SELECT of a page for q, into sql (len 512 is plenty): ?1 (and ?2)
 * the cursor when q->before, ?3 the rows to examine.  Exported for the
 * test that checks its query plan walks an index.
 */
void store__list_sql(const struct store_list_query *q, char *sql, size_t len);
/* Completion on the loop (runs the callback) and reset of those ops. */
void store__list_complete(struct op *op);
void store__list_reset(struct op *op);

/*
 * The outbox (store_sqlite_outbox.c): executes an OP_OUTBOX_* op (writer),
 * adds the row of an update's outbox body inside its transaction
 * (writer), resets and completes an outbox op (loop), and finalizes the
 * outbox's statements before the database closes.
 */
int store__outbox_exec(struct store_backend *be, struct op *op, int64_t now);
int store__outbox_insert(struct store_backend *be, struct op *op,
			 const char *body, int64_t now);
void store__outbox_reset(struct op *op);
void store__outbox_complete(struct op *op);
void store__outbox_close(struct store_backend *be);
/*
 * The claim's statement (?1 now, ?2 the lease, ?3 the most rows), for the
 * test that checks its query plan walks outbox_due and sorts nothing.
 */
const char *store__outbox_claim_sql(void);
/* The table's outbox entries (store_int.h). */
void store__sqlite_outbox_add(struct store_backend *be, int err,
			      const char *body, store_done_cb cb, void *arg);
void store__sqlite_outbox_claim(struct store_backend *be, int err,
				int64_t now_ms, int64_t lease_until_ms,
				size_t max, int64_t expire_before_ms,
				store_outbox_claim_cb cb, void *arg);
void store__sqlite_outbox_finish(struct store_backend *be, int err, int64_t seq,
				 int64_t next_ms, store_done_cb cb, void *arg);
uint64_t store__sqlite_outbox_dropped(const struct store_backend *be);
uint64_t store__sqlite_outbox_counts(const struct store_backend *be);
/*
 * The outbox's side of a transaction (writer): begin starts its tallies,
 * commit (once it committed) counts and logs its drops and applies its
 * rows to the depth; a rollback needs nothing (the next begin drops
 * them).  forget: the depth is unknown (a COMMIT or ROLLBACK that failed,
 * SQL from the test hook), counted again at the next claim.  open counts
 * the depth once, at open, before the writer starts; on failure it is
 * left unknown.
 */
void store__outbox_begin(struct store_backend *be);
void store__outbox_commit(struct store_backend *be);
void store__outbox_forget(struct store_backend *be);
void store__outbox_open(struct store_backend *be);
void store__sqlite_outbox_set_max(struct store_backend *be, int64_t max);
void store__sqlite_outbox_set_horizon(struct store_backend *be, int64_t ms);

#endif
