/*
 * The durable message store.
 *
 * Every operation is asynchronous: it is queued from the loop thread and
 * runs on the store's own writer thread, which executes everything queued
 * so far inside one SQLite transaction and commits it once (group commit;
 * WAL mode, synchronous=FULL, so the commit is on disk when it returns).
 * Only then are the callbacks posted back to the loop, in submission order.
 * So a submit callback with err == 0 means the message is durable, and no
 * disk flush ever runs on the loop.  Because reads go through the same
 * queue they see every write submitted before them.
 *
 * Ownership: structures passed in are copied or taken as each function
 * says; structures handed to callbacks belong to the store and die when
 * the callback returns unless the callback says it takes them.
 *
 * Failure: an operation that is wrong on its own (a repeated id, a field
 * too big) fails alone; a write the disk refuses (full, I/O error) fails
 * the operations of that batch (their callbacks get a negative error), the
 * transaction is rolled back, and store_healthy() is false until a later
 * write succeeds; the store stays usable.  The schema carries its version
 * (PRAGMA user_version) and is migrated forward at open; a database from a
 * newer version is refused.
 */
#ifndef SHIVNERI_STORE_H
#define SHIVNERI_STORE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "link/link.h" /* enum outcome */

struct event_base;
struct store;
struct store_ops; /* a backend, see store_int.h */

enum msg_status {
	MSG_QUEUED = 0,
	MSG_SENDING = 1,
	MSG_DELIVERED = 2,
	MSG_FAILED = 3,
};
#define MSG_NSTATUS 4

const char *msg_status_name(int status); /* "queued", ... */
int msg_status_parse(const char *s);     /* -1 if unknown */

/* A whole message, as built at intake and as loaded for dispatch. */
struct store_message {
	int64_t rowid;   /* set by the store */
	char id[32];     /* public id (ULID), set by intake */
	int status;      /* enum msg_status */
	char *mail_from; /* envelope sender, addr-spec */
	char **rcpt;     /* envelope recipients, addr-spec */
	size_t nrcpt;
	char *header_from; /* the From: as given, for display */
	char *subject;     /* UTF-8, for display */
	char *to_json;     /* JSON array of the To: addresses, for display */
	char *tags_json;   /* JSON array of tags, or NULL */
	char *mime;        /* the RFC 5322 message, CRLF line ends */
	size_t mime_len;
	int64_t created_ms;
	int64_t updated_ms;
	int64_t next_ms; /* not before (backoff); 0: now */
	int attempts;    /* attempts made so far */
	int round;       /* rounds of backoff so far */
	char *tried;     /* providers that failed it this round, "a,b" */
	char *provider;  /* last provider, or NULL */
	char *provider_message_id;
	char *error; /* why it failed, or NULL */
	/*
	 * When its attempt budget started (message_ttl_s counts from it):
	 * set by a retry (store_retry); 0: created_ms.  Filled by store_load
	 * and the list; store_submit ignores it.
	 */
	int64_t budget_ms;
	/*
	 * The dispatcher's memo of enum envelope_need (common/envelope.h),
	 * set as the message reaches it so that routing by SMTPUTF8 never
	 * converts a domain twice; 0: not known.  Never stored.
	 */
	int envelope_need;
};

struct store_attempt {
	int n; /* 1, 2, ... */
	char *provider;
	int64_t at_ms;
	int outcome;  /* enum outcome */
	char *detail; /* may be NULL */
};

/* A state change of one message (see store_update). */
struct store_update {
	int64_t rowid;
	int status;
	int64_t next_ms;
	int attempts;
	int round;
	const char *tried;               /* NULL: unchanged */
	const char *provider;            /* NULL: unchanged */
	const char *provider_message_id; /* NULL: unchanged */
	const char *error;               /* NULL: unchanged */
	/* With has_attempt, an attempts row is added too. */
	bool has_attempt;
	struct store_attempt attempt;
	/*
	 * With outbox non-NULL, a webhook outbox row with this body (JSON
	 * text) is added in the update's own transaction, so the change and
	 * its webhook are durable together or not at all (store_outbox_add).
	 */
	const char *outbox;
	/*
	 * Nothing waits on this write but its own callback (a final outcome:
	 * the provider's slot is already free): the store may hold it up to
	 * STORE_LAZY_WAIT_US for a write someone does wait on, so that both
	 * share one flush instead of taking one each.
	 */
	bool lazy;
};

/* The longest a lazy update waits for company (store_update.lazy). */
#define STORE_LAZY_WAIT_US 1000

void store_message_free(struct store_message *m);
void store_attempt_cleanup(struct store_attempt *a);

/*
 * How to open a store.  backend is a name (the configuration's "store";
 * NULL: "sqlite"); max_message_bytes is the largest mime_len a submit may
 * carry (the configuration's max_message_bytes; 0: 25 MiB).
 */
struct store_options {
	const char *backend;
	int64_t max_message_bytes;
};

/* The backend named name, or NULL if this build has none by that name. */
const struct store_ops *store_lookup(const char *name);
/*
 * The largest max_message_bytes the named backend can hold, or -1 for an
 * unknown name: configuration checks refuse a larger cap with it.
 */
int64_t store_max_message_bytes(const char *backend);

/*
 * Errors of store_open besides I/O (each has a store_strerror text):
 * STORE_ENOBACKEND: no backend by that name in this build.
 * STORE_ENEWER: the database was written by a newer version.
 * STORE_EMISSING: the folder has held a store (its marker file is there)
 *   but the database is missing or empty: restore it, or remove the
 *   marker to start an empty store on purpose.
 * STORE_EFOREIGN: the database is not the one the marker names.
 * STORE_EINUSE: another process (a server) has the store open.
 * STORE_EDAMAGED: the database is damaged where the open needs it (its
 *   header, the schema): restore it, or rebuild it with sqlite3's .recover.
 *   Of store_update too: that row is damaged (see there).
 * -EISDIR: the database path is a folder.
 * -EOVERFLOW: max_message_bytes is more than the backend can hold.
 */
#define STORE_ENOBACKEND (-ENOPROTOOPT)
#define STORE_ENEWER (-EPROTO)
#define STORE_EMISSING (-ENODATA)
#define STORE_EFOREIGN (-ESTALE)
#define STORE_EINUSE (-EUSERS)
#define STORE_EDAMAGED (-EBADMSG)
/*
 * Of store_submit: the idempotency key was used in its scope for a request
 * with other contents (not an error of the store: nothing is wrong with
 * it, the client reused a key).
 */
#define STORE_ECONFLICT (-EKEYREJECTED)

/*
 * Opens (creating, migrating) DIR/shivneri.db with the backend that opts
 * names (opts may be NULL: the defaults) and starts the writer thread;
 * callbacks run on base's loop.  Messages left in "sending" by a crash are
 * put back to "queued" with an attempt of outcome "lost" before this
 * returns.  0 or a negative error (see above); *out is NULL on error.
 */
int store_open(const char *dir, const struct store_options *opts,
	       struct event_base *base, struct store **out)
    __attribute__((warn_unused_result));
/*
 * Finishes every queued operation (their callbacks run), stops the thread
 * and closes the database.  Must be called from the loop thread while the
 * loop is not needed any more (the remaining callbacks run inside).
 */
void store_close(struct store *st);
const char *store_strerror(int err);

/*
 * Synchronous, for start-up only (before the loop dispatches anything):
 * calls each() for every message still queued, in id order, and fills
 * counts[MSG_NSTATUS] with the number of messages in each status.
 *
 * A queued or sending row on a damaged page (SQLite finds the page
 * malformed) cannot be read, so it cannot be sent: it is skipped, left
 * out of counts, logged (one line with how many) and counted by
 * store_unreadable_rows(); the scan goes on with the rows after it.  A
 * damaged page of an index was built again from its table by store_open
 * (a `reindexed` line); one that could not be (its table is damaged too)
 * still fails the scan.
 */
int store_scan(struct store *st,
	       void (*each)(void *arg, int64_t rowid, int64_t next_ms),
	       void *arg, int64_t counts[MSG_NSTATUS])
    __attribute__((warn_unused_result));

/*
 * An idempotency key as the store keeps it.  Keys are per scope, so two
 * clients (two API keys) never see each other's; and the request's digest
 * is kept with the key, so a reused key with other contents is told apart
 * from a retry.  The strings are copied.
 */
#define STORE_IDEM_HASH_LEN 32
struct store_idem {
	const char *key; /* the client's key (Idempotency-Key) */
	/*
	 * Who sent it: an identity of the credential, never the credential
	 * (intake: submit_scope_of_key()); STORE_IDEM_SCOPE_ANONYMOUS when
	 * the client is not known.
	 */
	const char *scope;
	/* What was sent (intake: SHA-256 of the request's body). */
	unsigned char body_hash[STORE_IDEM_HASH_LEN];
};
/* The scope of clients that are not told apart (no API keys). */
#define STORE_IDEM_SCOPE_ANONYMOUS "anonymous"

/*
 * Stores a new message.  Takes m.  With idem non-NULL, a key seen in the
 * same scope in the last 24 hours stores nothing: with the same body_hash
 * (or a key kept without one, from before hashes were kept) it reports
 * duplicate with the first message's id; with another body_hash it fails
 * with STORE_ECONFLICT.  A message whose mime_len is over
 * max_message_bytes (or whose other fields do not fit a row) fails with
 * -EFBIG and stores nothing; one with fields out of range (or an idem
 * without a key or scope) with -EINVAL.  cb gets err (0 when durable), the
 * id, duplicate, and m back (NULL when duplicate or err); the callback
 * takes m (it must free it with store_message_free or keep it).
 */
typedef void (*store_submit_cb)(void *arg, int err, const char *id,
				bool duplicate, struct store_message *m);
void store_submit(struct store *st, struct store_message *m,
		  const struct store_idem *idem, store_submit_cb cb, void *arg);

/*
 * Applies a state change.  The strings are copied.  cb may be NULL; it gets
 * err once the change is durable.  STORE_EDAMAGED: the message's row (or a
 * page its write must read) is on a damaged page; nothing changed, and
 * the write will fail the same way until the next start rebuilds the table
 * (docs/internals/store.md, "Damaged pages").  Any other error (-EIO,
 * -ENOSPC) says the disk failed the batch and may work again.
 */
typedef void (*store_done_cb)(void *arg, int err);
void store_update(struct store *st, const struct store_update *u,
		  store_done_cb cb, void *arg);

/*
 * Loads the messages with the given rowids that are still queued (others
 * are skipped).  The callback takes the array and each message in it.
 *
 * A queued row that cannot be decoded (a NULL or wrong-typed column,
 * recipients that are not a JSON array of strings...) is returned in msgs
 * like the others but with status MSG_FAILED, error "corrupt record: WHY",
 * mime NULL, and only rowid, id (empty if unreadable) and the counters
 * that could be read (next_ms, attempts, round, tried) filled in.  It is
 * left queued on disk: the caller fails it with store_update like any
 * final outcome (the dispatcher's record, so that its webhook is written
 * in that update's transaction and its event published once it is
 * durable); until then every load returns it so again.
 */
typedef void (*store_load_cb)(void *arg, int err, struct store_message **msgs,
			      size_t n);
void store_load(struct store *st, const int64_t *rowids, size_t n,
		store_load_cb cb, void *arg);

/*
 * Looks a message up by public id with its attempts, oldest first.
 * err is -ENOENT when unknown.  m and att belong to the store.
 */
typedef void (*store_get_cb)(void *arg, int err, const struct store_message *m,
			     const struct store_attempt *att, size_t natt);
void store_get(struct store *st, const char *id, store_get_cb cb, void *arg);

/*
 * Housekeeping, run by the server every few minutes: forgets idempotency
 * keys older than idem_cutoff_ms, and deletes delivered and failed
 * messages (with their attempts) last updated before retention_cutoff_ms.
 * cb (may be NULL) gets pruned[MSG_NSTATUS], the messages deleted in each
 * status, so that counts kept in memory follow the disk.  The work is
 * done in chunks of a few hundred rows, each its own transaction between
 * other operations, so it never holds the writer for long; cb runs once
 * at the end (on error, with what was pruned before it).
 */
typedef void (*store_housekeep_cb)(void *arg, int err,
				   const int64_t pruned[MSG_NSTATUS]);
void store_housekeep(struct store *st, int64_t idem_cutoff_ms,
		     int64_t retention_cutoff_ms, store_housekeep_cb cb,
		     void *arg);

/*
 * False while the store cannot write (disk full, I/O error, a write that
 * keeps failing), from the failed write until a later one succeeds (the
 * store tries a small write every 1 to 16 s meanwhile); *why (may be NULL)
 * then points at a short static reason ("disk full", the database's error
 * text; never message contents).  /readyz answers 503 with it and intake
 * refuses new messages while it is false.  Cheap: an atomic load.
 */
bool store_healthy(const struct store *st, const char **why);

/*
 * Queued or sending messages the start-up scan (store_scan) found on
 * damaged pages and could not read, plus those let go while running
 * (store_unreadable_add): they cannot be sent until the database is
 * repaired (docs/internals/store.md).  For /metrics.
 */
uint64_t store_unreadable_rows(const struct store *st);
/*
 * Indexes the running store met damaged (a page of the index unreadable;
 * the rows are intact): reads through them fail until the next start,
 * which builds them again from their tables.  For /metrics.  Cheap.
 */
uint64_t store_damaged_indexes(const struct store *st);
/*
 * Loop thread: the caller let go of a message whose write keeps failing
 * with STORE_EDAMAGED (the dispatcher, record.c); counted by
 * store_unreadable_rows() until the next start, which finds the row
 * damaged (and counts it there) or readable (and takes it up again).
 */
void store_unreadable_add(struct store *st);

/* Operations queued and not yet completed; for /metrics and draining. */
size_t store_pending(const struct store *st);

/*
 * A page of the queue (GET /v1/messages).  Newest first: queued, sending
 * and any status by id (acceptance time); delivered and failed by when
 * they were finished (updated_ms), which their index keeps in order.
 * Each page examines at most scan_max rows (0: STORE_LIST_SCAN_MAX): a
 * provider filter is checked on the rows the index walks, so a page may
 * come back short, even empty, with a next cursor to go on from.  The
 * strings are copied.
 */
#define STORE_LIST_MAX 200         /* messages per page */
#define STORE_LIST_SCAN_MAX 5000   /* rows examined per page */
#define STORE_LIST_PROVIDER_MAX 64 /* bytes of a provider filter */
#define STORE_CURSOR_MAX 48        /* bytes of a cursor (next, before) */
/* A page's texts are cut so its memory is bounded whatever was sent: */
#define STORE_LIST_TEXT_MAX 998 /* bytes of from, subject, error */
#define STORE_LIST_TO_MAX 10    /* addresses of To: */
struct store_list_query {
	int status;           /* enum msg_status, or -1: any */
	const char *provider; /* the last provider; NULL: any */
	int limit;            /* 1 to STORE_LIST_MAX */
	/* A page's next, to go on after it; NULL: from the newest. */
	const char *before;
	int scan_max; /* 0: STORE_LIST_SCAN_MAX; smaller for tests */
};

/*
 * cb gets err (-EINVAL for a query out of range or a before that is not
 * a cursor of this listing), the page's messages (no body, no envelope
 * recipients: what a listing shows, its texts cut as said above), and next: the
 * cursor of the next page, or NULL when none is left.  msgs and next belong to
 * the store.
 */
typedef void (*store_list_cb)(void *arg, int err,
			      struct store_message *const *msgs, size_t n,
			      const char *next);
void store_list(struct store *st, const struct store_list_query *q,
		store_list_cb cb, void *arg);

/*
 * Of store_retry: the message is not failed (queued, sending or
 * delivered): nothing changed.
 */
#define STORE_ENOTFAILED (-EALREADY)

/*
 * Puts a failed message back to queued with a fresh budget, in one
 * transaction: attempts and round 0, tried "", error NULL, next_ms 0 and
 * budget_ms now; its attempts stay on record and status counts follow.
 * cb gets err (0 once durable; -ENOENT for an unknown id;
 * STORE_ENOTFAILED) and the message's rowid, for the dispatcher.  Two
 * retries of one message: the first wins, the second gets
 * STORE_ENOTFAILED.
 */
typedef void (*store_retry_cb)(void *arg, int err, int64_t rowid);
void store_retry(struct store *st, const char *id, store_retry_cb cb,
		 void *arg);

/*
 * The acceptance time (created_ms) of the oldest queued message, for
 * /metrics: the first queued id (ids sort by acceptance), one index seek
 * whatever the queue's length.  cb gets err and created_ms (0 when
 * nothing is queued).  A retried message counts from its acceptance.
 */
typedef void (*store_oldest_cb)(void *arg, int err, int64_t created_ms);
void store_oldest_queued(struct store *st, store_oldest_cb cb, void *arg);

/*
 * The webhook outbox (src/server/webhook.c sends it): rows of JSON bodies
 * in insertion order (seq), each deleted once its receiver took it.
 *
 * The outbox holds at most store_outbox_set_max() rows: a row added
 * beyond it drops the oldest rows in the same transaction, counted by
 * store_outbox_dropped() and logged (rate-limited), so a receiver down for
 * days costs a bounded disk, never a silent one.
 */
struct store_outbox_row {
	int64_t seq;        /* the row's key, for store_outbox_finish */
	int64_t created_ms; /* when the row was written */
	int attempts;       /* claims so far, this one included */
	char *body;         /* NUL-terminated JSON */
};

/*
 * Adds a row with body (copied; at most STORE_OUTBOX_BODY_MAX bytes, else
 * -EFBIG and nothing added).  cb (may be NULL) gets err once durable.
 */
#define STORE_OUTBOX_BODY_MAX (64 * 1024)
void store_outbox_add(struct store *st, const char *body, store_done_cb cb,
		      void *arg);

/*
 * Claims up to max rows due at now_ms (next_ms <= now_ms), those due the
 * longest first (rows never tried, in the order they were added, before
 * rows waiting for a retry):
 * in one transaction their next_ms becomes lease_until_ms and their
 * attempts grow by one, so a row being sent is not claimed again until its
 * lease runs out (after a crash, it is then sent again: at least once).
 * A due row created before expire_before_ms (0: none; at most now_ms) is
 * deleted instead, in the same transaction, and counted by
 * store_outbox_dropped() like the cap's drops, logged (rate-limited):
 * the sender's webhook_max_age_s.  Its slot goes to the next due row.
 * cb gets the rows (it takes the array and every body: free them with
 * store_outbox_rows_free) and depth, the rows in the outbox.
 */
typedef void (*store_outbox_claim_cb)(void *arg, int err,
				      struct store_outbox_row *rows, size_t n,
				      int64_t depth);
void store_outbox_claim(struct store *st, int64_t now_ms,
			int64_t lease_until_ms, size_t max,
			int64_t expire_before_ms, store_outbox_claim_cb cb,
			void *arg);
void store_outbox_rows_free(struct store_outbox_row *rows, size_t n);

/*
 * The end of a claimed row's try: next_ms < 0 deletes it (the receiver
 * took it), else it is due again at next_ms.  A row already gone (dropped
 * by the cap) is no error.  cb may be NULL.
 */
void store_outbox_finish(struct store *st, int64_t seq, int64_t next_ms,
			 store_done_cb cb, void *arg);

/*
 * The most rows the outbox keeps (STORE_OUTBOX_MAX_DEFAULT until set);
 * call it before the loop runs (the writer reads it in later batches).
 */
#define STORE_OUTBOX_MAX_DEFAULT 100000
void store_outbox_set_max(struct store *st, int64_t max);

/*
 * The longest a row can legitimately wait (the sender's longest backoff
 * or lease; 0, the default: no limit).  A claim at now_ms takes a row due
 * after now_ms + ms as due now: its time was written under a clock that
 * has since gone back (the server's wall clock stepped back between two
 * runs), and would otherwise hold it for as long as the clock moved.
 * Call it before the loop runs, as store_outbox_set_max.
 */
void store_outbox_set_horizon(struct store *st, int64_t ms);

/*
 * Rows dropped unsent since the store opened: by the cap, and past their
 * age at a claim.
 */
uint64_t store_outbox_dropped(const struct store *st);

/*
 * The store's commits, for /metrics: every write transaction committed so
 * far, how long it took (from BEGIN to the end of COMMIT, the flush to disk
 * included: what an acknowledgement waits for besides the queue) and how
 * many operations it carried (group commit at work).  Buckets are kept per
 * bucket, not cumulative; the bounds are fixed, microseconds for the
 * duration (a commit is a fraction of a millisecond to tens of them) and
 * operations for the size (a batch holds at most 1024); one more bucket of
 * each is +Inf.  Both histograms count every commit once.
 */
#define STORE_COMMIT_NBOUNDS 12
#define STORE_BATCH_NBOUNDS 11
extern const int64_t store_commit_bounds_us[STORE_COMMIT_NBOUNDS];
extern const int64_t store_batch_bounds[STORE_BATCH_NBOUNDS];
struct store_commit_stats {
	uint64_t commits; /* the _count of both histograms */
	uint64_t us_bucket[STORE_COMMIT_NBOUNDS + 1];
	uint64_t us_sum; /* microseconds, summed over the commits */
	uint64_t ops_bucket[STORE_BATCH_NBOUNDS + 1];
	uint64_t ops_sum; /* operations committed */
};

/*
 * Copies the commit counters into *out (zeros for a backend that keeps
 * none).  Any thread; a short lock shared with the writer once per commit.
 */
void store_commit_stats(const struct store *st, struct store_commit_stats *out);

#endif
