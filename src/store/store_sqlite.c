/*
 * The SQLite backend of the store, and its writer thread.
 *
 * One connection, owned by one writer thread, does all the work.  The loop
 * thread queues operations (a mutex and a condition variable guard a FIFO);
 * the writer takes everything queued (at most BATCH_MAX at a time), runs it
 * inside one BEGIN IMMEDIATE ... COMMIT with statements prepared once at
 * open, and then posts the whole batch to the loop through one mailbox
 * closure, which runs the callbacks in submission order.  Operations that
 * arrive while a commit is being flushed share the next commit: that is
 * group commit, and it is what lets one fsync carry hundreds of messages.
 * Reads travel the same queue, so they see every write submitted before
 * them.
 *
 * Failure: when a statement or the commit fails, the batch is rolled back
 * and each of its operations is run again alone in its own transaction, so
 * that one bad operation (say a duplicate id) fails only itself while a
 * real disk error still fails them all.  Logical results (an unknown id, a
 * duplicate idempotency key) are not errors of the transaction.  Opening
 * fails cleanly on a database from a newer schema (STORE_ENEWER).  Out of
 * memory is fatal, as everywhere (xmalloc).
 *
 * The database is DIR/shivneri.db in WAL mode with synchronous=FULL, so a
 * COMMIT that returned is on disk.  Recovery at open puts messages a crash
 * left in "sending" back to "queued" with a "lost" attempt.  Start-up scans
 * use a separate read-only connection and a partial index on the queued
 * and sending messages, plus a status_counts table, so that millions of
 * delivered rows cost nothing at start-up and no message is held in memory
 * by the store.  The writer keeps status_counts itself: it tallies the
 * status changes of a batch and adds them with one UPDATE per status just
 * before the COMMIT, which is cheaper than a trigger firing per row and as
 * exact, being in the same transaction.
 */
#include "store/store.h"
#include "store/store_int.h"
#include "common/log.h"
#include "common/util.h"
#include "common/workq.h"

#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_MAX 1024
#define IDEM_TTL_MS (24LL * 3600 * 1000)
#define BUSY_TIMEOUT_MS 5000
#define PAGE_SIZE_STR "8192" /* for new databases; see db_setup() */
/* Rounds of draining at close before giving up on callbacks that resubmit. */
#define CLOSE_DRAIN_ROUNDS 1000

/*
 * The schema, one migration per version: migrations[i] takes a database
 * from user_version i to i + 1.  Append, never edit a released one.
 */
static const char *const migrations[] = {
    /* 1: the initial schema. */
    "CREATE TABLE messages ("
    " rowid INTEGER PRIMARY KEY,"
    " id TEXT UNIQUE NOT NULL,"
    " status INTEGER NOT NULL,"
    " mail_from TEXT NOT NULL,"
    " rcpt TEXT NOT NULL,"
    " header_from TEXT,"
    " subject TEXT,"
    " to_json TEXT,"
    " tags_json TEXT,"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " next_ms INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " round INTEGER NOT NULL DEFAULT 0,"
    " tried TEXT,"
    " provider TEXT,"
    " provider_message_id TEXT,"
    " error TEXT,"
    /* Last, so that scans of the small columns never touch it. */
    " mime BLOB);"
    /* Written as an OR so that "status = 0" queries can prove it. */
    "CREATE INDEX messages_active ON messages(status, id)"
    " WHERE status = 0 OR status = 1;"
    "CREATE TABLE attempts ("
    " message_rowid INTEGER NOT NULL"
    "  REFERENCES messages(rowid) ON DELETE CASCADE,"
    " n INTEGER NOT NULL,"
    " provider TEXT,"
    " at_ms INTEGER NOT NULL,"
    " outcome INTEGER NOT NULL,"
    " detail TEXT,"
    " PRIMARY KEY (message_rowid, n)) WITHOUT ROWID;"
    "CREATE TABLE idempotency ("
    " key TEXT PRIMARY KEY,"
    " message_id TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL);"
    "CREATE INDEX idempotency_created ON idempotency(created_ms);"
    "CREATE TABLE status_counts ("
    " status INTEGER PRIMARY KEY,"
    " n INTEGER NOT NULL);"
    /*
     * Kept by the writer, not by triggers: it tallies each batch's changes
     * and adds them in one UPDATE per status touched before its COMMIT.
     * Whatever changes a status outside a batch (recovery) adjusts the
     * counts in the same transaction.
     */
    "INSERT INTO status_counts VALUES (0, 0), (1, 0), (2, 0), (3, 0);",
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) ==
		   STORE_SCHEMA_VERSION,
	       "STORE_SCHEMA_VERSION must count the migrations");

#define MSG_COLUMNS                                                            \
	"rowid, id, status, mail_from, rcpt, header_from, subject, to_json, "  \
	"tags_json, created_ms, updated_ms, next_ms, attempts, round, "        \
	"tried, provider, provider_message_id, error, mime"

/* Column numbers of MSG_COLUMNS. */
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
};

enum {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_IDEM_FIND,
	ST_IDEM_PUT,
	ST_MSG_INSERT,
	ST_MSG_UPDATE,
	ST_ATT_INSERT,
	ST_LOAD,
	ST_GET,
	ST_ATT_LIST,
	ST_EXPIRE,
	ST_IDEM_EXPIRE,
	ST_STATUS_OF,
	ST_COUNT_ADD,
	ST_MAX,
};

static const char *const stmt_sql[ST_MAX] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_IDEM_FIND] = "SELECT message_id FROM idempotency"
		     " WHERE key = ?1 AND created_ms >= ?2",
    [ST_IDEM_PUT] = "INSERT OR REPLACE INTO idempotency"
		    " (key, message_id, created_ms) VALUES (?1, ?2, ?3)",
    [ST_MSG_INSERT] = "INSERT INTO messages (id, status, mail_from, rcpt,"
		      " header_from, subject, to_json, tags_json, created_ms,"
		      " updated_ms, next_ms, attempts, round, tried, provider,"
		      " provider_message_id, error, mime) VALUES (?1, ?2, ?3,"
		      " ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
		      " ?16, ?17, ?18)",
    [ST_MSG_UPDATE] =
	"UPDATE messages SET status = ?2, next_ms = ?3,"
	" attempts = ?4, round = ?5, tried = COALESCE(?6, tried),"
	" provider = COALESCE(?7, provider),"
	" provider_message_id = COALESCE(?8, provider_message_id),"
	" error = COALESCE(?9, error), updated_ms = ?10"
	" WHERE rowid = ?1",
    [ST_ATT_INSERT] =
	"INSERT INTO attempts (message_rowid, n, provider,"
	" at_ms, outcome, detail) VALUES (?1, CASE WHEN ?2 > 0"
	" THEN ?2 ELSE (SELECT COALESCE(MAX(n), 0) + 1 FROM"
	" attempts WHERE message_rowid = ?1) END, ?3, ?4, ?5, ?6)",
    [ST_LOAD] = "SELECT " MSG_COLUMNS " FROM messages"
		" WHERE rowid = ?1 AND status = 0",
    [ST_GET] = "SELECT " MSG_COLUMNS " FROM messages WHERE id = ?1",
    [ST_ATT_LIST] = "SELECT n, provider, at_ms, outcome, detail FROM attempts"
		    " WHERE message_rowid = ?1 ORDER BY n",
    [ST_EXPIRE] = "UPDATE messages SET status = 3, error = 'expired',"
		  " updated_ms = ?2 WHERE status = 0 AND created_ms < ?1"
		  " RETURNING rowid",
    [ST_IDEM_EXPIRE] = "DELETE FROM idempotency WHERE created_ms < ?1",
    [ST_STATUS_OF] = "SELECT status FROM messages WHERE rowid = ?1",
    [ST_COUNT_ADD] = "UPDATE status_counts SET n = n + ?2 WHERE status = ?1",
};

enum op_kind {
	OP_SUBMIT,
	OP_UPDATE,
	OP_LOAD,
	OP_GET,
	OP_EXPIRE,
};

/*
 * One queued operation.  The loop thread fills it in and queues it; from
 * then on only the writer touches it until the batch is posted back, and
 * then only the loop thread, which runs the callback and frees it.
 */
struct op {
	struct op *next;
	struct store_backend *be;
	enum op_kind kind;
	bool preset; /* err was set by the front: do not execute */
	int err;
	void *arg;
	union {
		store_submit_cb submit;
		store_done_cb done;
		store_load_cb load;
		store_get_cb get;
		store_expire_cb expire;
	} cb;
	union {
		struct {
			struct store_message *m;
			char *key; /* in the op's tail, or NULL */
			bool dup;
			char dup_id[32];
		} submit;
		struct {
			struct store_update u; /* strings in the op's tail */
		} update;
		struct {
			int64_t *rowids; /* in the op's tail */
			size_t n;
			struct store_message **msgs;
			size_t nmsgs;
		} load;
		struct {
			char id[32];
			struct store_message *m;
			struct store_attempt *att;
			size_t natt;
		} get;
		struct {
			int64_t ttl_cutoff, idem_cutoff;
			int64_t *rowids;
			size_t n;
		} expire;
	} u;
};

_Static_assert(sizeof(struct op) % _Alignof(int64_t) == 0,
	       "the tail of an op must be aligned for the rowids of a load");

/* A growable scratch buffer of the writer thread, reused across ops. */
struct sbuf {
	char *p;
	size_t len, cap;
};

struct store_backend {
	char *path;
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_MAX];
	struct mailbox *mb;

	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct op *head, **tail; /* under lock */
	bool stopping;           /* under lock */

	bool closing;       /* loop thread only */
	struct event *kick; /* wakes the writer once per loop turn */
	bool kick_armed;    /* loop thread only */
	atomic_size_t pending;
	atomic_uint_fast64_t commits;

	struct sbuf json; /* writer thread only */
	/* Changes to status_counts by the open transaction; writer only. */
	int64_t count_delta[MSG_NSTATUS];
};

static int
sqlite_errno(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return -EEXIST;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_CANTOPEN:
		return -EACCES;
	}
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_CONSTRAINT:
		return -EINVAL;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EACCES;
	default:
		return -EIO;
	}
}

static int
db_fail(sqlite3 *db, int rc, const char *what)
{
	log_warnx("- store sqlite_error op=%s rc=%d msg=\"%s\"", what, rc,
		  sqlite3_errmsg(db));
	return sqlite_errno(rc);
}

/* Runs a prepared statement that returns no rows we need, then resets it. */
static int
step_once(struct store_backend *be, int which)
{
	sqlite3_stmt *s = be->stmt[which];
	int rc;

	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	return db_fail(be->db, rc, stmt_sql[which]);
}

static int
exec_sql(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc;

	rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		log_warnx("- store sqlite_error rc=%d msg=\"%s\"", rc,
			  msg != NULL ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return sqlite_errno(rc);
	}
	return 0;
}

/* The rest of the text of column i, copied: the pointer dies at step. */
static char *
col_strdup(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	if (t == NULL)
		return NULL;
	return xstrndup((const char *)t, (size_t)sqlite3_column_bytes(s, i));
}

static void
sbuf_reserve(struct sbuf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return;
	b->cap = b->cap == 0 ? 256 : b->cap;
	while (b->len + more > b->cap)
		b->cap *= 2;
	b->p = xrealloc(b->p, b->cap);
}

static void
sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	sbuf_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/*
 * The recipients as a JSON array of strings, in the writer's scratch
 * buffer (valid until the next call).  Written by hand because it is on
 * the hot path and the strings need nothing but escaping.
 */
static const char *
rcpt_json(struct store_backend *be, char *const *rcpt, size_t n)
{
	struct sbuf *b = &be->json;
	const char *s;
	char esc[8];
	size_t i;

	b->len = 0;
	sbuf_add(b, "[", 1);
	for (i = 0; i < n; i++) {
		if (i > 0)
			sbuf_add(b, ",", 1);
		sbuf_add(b, "\"", 1);
		for (s = rcpt[i]; *s != '\0'; s++) {
			unsigned char c = (unsigned char)*s;

			if (c == '"' || c == '\\') {
				esc[0] = '\\';
				esc[1] = (char)c;
				sbuf_add(b, esc, 2);
			} else if (c < 0x20) {
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				sbuf_add(b, esc, 6);
			} else
				sbuf_add(b, s, 1);
		}
		sbuf_add(b, "\"", 1);
	}
	sbuf_add(b, "]", 2);
	return b->p;
}

/* Parses a JSON array of strings into m->rcpt.  0 or -EIO. */
static int
rcpt_parse(const char *text, struct store_message *m)
{
	json_t *arr, *v; /* arr is a new reference, v borrowed */
	json_error_t jerr;
	size_t i, n;
	int rc = -EIO;

	arr = json_loads(text, 0, &jerr);
	if (arr == NULL || !json_is_array(arr))
		goto fail;
	n = json_array_size(arr);
	m->rcpt = xcalloc(n == 0 ? 1 : n, sizeof(*m->rcpt));
	for (i = 0; i < n; i++) {
		v = json_array_get(arr, i);
		if (!json_is_string(v))
			goto fail;
		m->rcpt[i] = xstrdup(json_string_value(v));
		m->nrcpt = i + 1;
	}
	rc = 0;
fail:
	json_decref(arr);
	return rc;
}

/* Builds a message from a row of MSG_COLUMNS.  0 or -EIO. */
static int
row_message(sqlite3_stmt *s, struct store_message **out)
{
	struct store_message *m = xcalloc(1, sizeof(*m));
	const unsigned char *t;
	const void *blob;
	size_t len;

	m->rowid = sqlite3_column_int64(s, C_ROWID);
	t = sqlite3_column_text(s, C_ID);
	if (t != NULL)
		snprintf(m->id, sizeof(m->id), "%s", (const char *)t);
	m->status = sqlite3_column_int(s, C_STATUS);
	m->mail_from = col_strdup(s, C_MAIL_FROM);
	t = sqlite3_column_text(s, C_RCPT);
	if (t == NULL || rcpt_parse((const char *)t, m) != 0) {
		log_warnx("%s store corrupt_rcpt rowid=%lld", m->id,
			  (long long)m->rowid);
		store_message_free(m);
		return -EIO;
	}
	m->header_from = col_strdup(s, C_HEADER_FROM);
	m->subject = col_strdup(s, C_SUBJECT);
	m->to_json = col_strdup(s, C_TO_JSON);
	m->tags_json = col_strdup(s, C_TAGS_JSON);
	m->created_ms = sqlite3_column_int64(s, C_CREATED);
	m->updated_ms = sqlite3_column_int64(s, C_UPDATED);
	m->next_ms = sqlite3_column_int64(s, C_NEXT);
	m->attempts = sqlite3_column_int(s, C_ATTEMPTS);
	m->round = sqlite3_column_int(s, C_ROUND);
	m->tried = col_strdup(s, C_TRIED);
	m->provider = col_strdup(s, C_PROVIDER);
	m->provider_message_id = col_strdup(s, C_PMID);
	m->error = col_strdup(s, C_ERROR);
	blob = sqlite3_column_blob(s, C_MIME);
	len = (size_t)sqlite3_column_bytes(s, C_MIME);
	if (blob != NULL || len > 0) {
		m->mime = xmalloc(len + 1);
		if (len > 0)
			memcpy(m->mime, blob, len);
		m->mime[len] = '\0';
		m->mime_len = len;
	}
	*out = m;
	return 0;
}

/* Drops what a previous run of op produced, before running it again. */
static void
op_reset(struct op *op)
{
	size_t i;

	switch (op->kind) {
	case OP_SUBMIT:
		op->u.submit.dup = false;
		op->u.submit.m->rowid = 0;
		break;
	case OP_UPDATE:
		break;
	case OP_LOAD:
		for (i = 0; i < op->u.load.nmsgs; i++)
			store_message_free(op->u.load.msgs[i]);
		free(op->u.load.msgs);
		op->u.load.msgs = NULL;
		op->u.load.nmsgs = 0;
		break;
	case OP_GET:
		store_message_free(op->u.get.m);
		for (i = 0; i < op->u.get.natt; i++)
			store_attempt_cleanup(&op->u.get.att[i]);
		free(op->u.get.att);
		op->u.get.m = NULL;
		op->u.get.att = NULL;
		op->u.get.natt = 0;
		break;
	case OP_EXPIRE:
		free(op->u.expire.rowids);
		op->u.expire.rowids = NULL;
		op->u.expire.n = 0;
		break;
	}
	if (!op->preset)
		op->err = 0;
}

/* Tallies a message moving from status from (-1: new) to status to. */
static void
count_move(struct store_backend *be, int from, int to)
{
	if (from == to)
		return;
	if (from >= 0 && from < MSG_NSTATUS)
		be->count_delta[from]--;
	if (to >= 0 && to < MSG_NSTATUS)
		be->count_delta[to]++;
}

/* Adds the tallies of the open transaction to status_counts. */
static int
count_flush(struct store_backend *be)
{
	sqlite3_stmt *s = be->stmt[ST_COUNT_ADD];
	int i, rc;

	for (i = 0; i < MSG_NSTATUS; i++) {
		if (be->count_delta[i] == 0)
			continue;
		sqlite3_bind_int(s, 1, i);
		sqlite3_bind_int64(s, 2, be->count_delta[i]);
		if ((rc = step_once(be, ST_COUNT_ADD)) != 0)
			return rc;
		be->count_delta[i] = 0;
	}
	return 0;
}

static int
exec_submit(struct store_backend *be, struct op *op, int64_t now)
{
	struct store_message *m = op->u.submit.m;
	sqlite3_stmt *s;
	const char *key = op->u.submit.key;
	const unsigned char *t;
	int rc;

	if (key != NULL) {
		s = be->stmt[ST_IDEM_FIND];
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, now - IDEM_TTL_MS);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			t = sqlite3_column_text(s, 0);
			snprintf(op->u.submit.dup_id,
				 sizeof(op->u.submit.dup_id), "%s",
				 t != NULL ? (const char *)t : "");
			op->u.submit.dup = true;
		}
		sqlite3_reset(s);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return db_fail(be->db, rc, "idem_find");
		if (op->u.submit.dup)
			return 0;
	}

	s = be->stmt[ST_MSG_INSERT];
	sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, m->status);
	sqlite3_bind_text(s, 3, m->mail_from, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, rcpt_json(be, m->rcpt, m->nrcpt), -1,
			  SQLITE_STATIC);
	sqlite3_bind_text(s, 5, m->header_from, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, m->subject, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, m->to_json, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, m->tags_json, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 9, m->created_ms);
	sqlite3_bind_int64(s, 10, m->updated_ms);
	sqlite3_bind_int64(s, 11, m->next_ms);
	sqlite3_bind_int(s, 12, m->attempts);
	sqlite3_bind_int(s, 13, m->round);
	sqlite3_bind_text(s, 14, m->tried, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 15, m->provider, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 16, m->provider_message_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 17, m->error, -1, SQLITE_STATIC);
	if (m->mime != NULL)
		sqlite3_bind_blob64(s, 18, m->mime, m->mime_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 18);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return db_fail(be->db, rc, "msg_insert");
	m->rowid = sqlite3_last_insert_rowid(be->db);
	count_move(be, -1, m->status);

	if (key != NULL) {
		s = be->stmt[ST_IDEM_PUT];
		sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, m->id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, now);
		if ((rc = step_once(be, ST_IDEM_PUT)) != 0)
			return rc;
	}
	return 0;
}

static int
exec_update(struct store_backend *be, struct op *op, int64_t now)
{
	const struct store_update *u = &op->u.update.u;
	sqlite3_stmt *s = be->stmt[ST_STATUS_OF];
	int rc, old;

	/* The old status, for status_counts. */
	sqlite3_bind_int64(s, 1, u->rowid);
	rc = sqlite3_step(s);
	old = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
	sqlite3_reset(s);
	if (rc == SQLITE_DONE) {
		op->err = -ENOENT;
		return 0;
	}
	if (rc != SQLITE_ROW)
		return db_fail(be->db, rc, "status_of");

	s = be->stmt[ST_MSG_UPDATE];
	sqlite3_bind_int64(s, 1, u->rowid);
	sqlite3_bind_int(s, 2, u->status);
	sqlite3_bind_int64(s, 3, u->next_ms);
	sqlite3_bind_int(s, 4, u->attempts);
	sqlite3_bind_int(s, 5, u->round);
	sqlite3_bind_text(s, 6, u->tried, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 7, u->provider, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, u->provider_message_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 9, u->error, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 10, now);
	if ((rc = step_once(be, ST_MSG_UPDATE)) != 0)
		return rc;
	if (sqlite3_changes(be->db) == 0) {
		op->err = -ENOENT;
		return 0;
	}
	count_move(be, old, u->status);
	if (!u->has_attempt)
		return 0;
	s = be->stmt[ST_ATT_INSERT];
	sqlite3_bind_int64(s, 1, u->rowid);
	sqlite3_bind_int(s, 2, u->attempt.n);
	sqlite3_bind_text(s, 3, u->attempt.provider, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4,
			   u->attempt.at_ms != 0 ? u->attempt.at_ms : now);
	sqlite3_bind_int(s, 5, u->attempt.outcome);
	sqlite3_bind_text(s, 6, u->attempt.detail, -1, SQLITE_STATIC);
	return step_once(be, ST_ATT_INSERT);
}

static int
exec_load(struct store_backend *be, struct op *op)
{
	sqlite3_stmt *s = be->stmt[ST_LOAD];
	struct store_message *m;
	size_t i;
	int rc;

	op->u.load.msgs = xcalloc(op->u.load.n == 0 ? 1 : op->u.load.n,
				  sizeof(*op->u.load.msgs));
	for (i = 0; i < op->u.load.n; i++) {
		sqlite3_bind_int64(s, 1, op->u.load.rowids[i]);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			if (row_message(s, &m) == 0)
				op->u.load.msgs[op->u.load.nmsgs++] = m;
		}
		sqlite3_reset(s);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return db_fail(be->db, rc, "load");
	}
	return 0;
}

static int
exec_get(struct store_backend *be, struct op *op)
{
	sqlite3_stmt *s = be->stmt[ST_GET];
	struct store_attempt *a;
	size_t cap = 0;
	int rc, err = 0;

	sqlite3_bind_text(s, 1, op->u.get.id, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		err = row_message(s, &op->u.get.m);
	sqlite3_reset(s);
	if (rc == SQLITE_DONE) {
		op->err = -ENOENT;
		return 0;
	}
	if (rc != SQLITE_ROW)
		return db_fail(be->db, rc, "get");
	if (err != 0) {
		op->err = err;
		return 0;
	}

	s = be->stmt[ST_ATT_LIST];
	sqlite3_bind_int64(s, 1, op->u.get.m->rowid);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (op->u.get.natt == cap) {
			cap = cap == 0 ? 4 : cap * 2;
			op->u.get.att =
			    xreallocarray(op->u.get.att, cap, sizeof(*a));
		}
		a = &op->u.get.att[op->u.get.natt++];
		a->n = sqlite3_column_int(s, 0);
		a->provider = col_strdup(s, 1);
		a->at_ms = sqlite3_column_int64(s, 2);
		a->outcome = sqlite3_column_int(s, 3);
		a->detail = col_strdup(s, 4);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return db_fail(be->db, rc, "attempts");
	return 0;
}

static int
exec_expire(struct store_backend *be, struct op *op, int64_t now)
{
	sqlite3_stmt *s = be->stmt[ST_EXPIRE];
	size_t cap = 0;
	int rc;

	sqlite3_bind_int64(s, 1, op->u.expire.ttl_cutoff);
	sqlite3_bind_int64(s, 2, now);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (op->u.expire.n == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			op->u.expire.rowids = xreallocarray(
			    op->u.expire.rowids, cap, sizeof(int64_t));
		}
		op->u.expire.rowids[op->u.expire.n++] =
		    sqlite3_column_int64(s, 0);
		count_move(be, MSG_QUEUED, MSG_FAILED);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return db_fail(be->db, rc, "expire");
	sqlite3_bind_int64(be->stmt[ST_IDEM_EXPIRE], 1,
			   op->u.expire.idem_cutoff);
	return step_once(be, ST_IDEM_EXPIRE);
}

static int
exec_op(struct store_backend *be, struct op *op, int64_t now)
{
	switch (op->kind) {
	case OP_SUBMIT:
		return exec_submit(be, op, now);
	case OP_UPDATE:
		return exec_update(be, op, now);
	case OP_LOAD:
		return exec_load(be, op);
	case OP_GET:
		return exec_get(be, op);
	case OP_EXPIRE:
		return exec_expire(be, op, now);
	}
	fatalx("store: unknown op kind %d", (int)op->kind);
}

static void
rollback(struct store_backend *be)
{
	/* Some errors (disk full, I/O) have rolled back already. */
	if (!sqlite3_get_autocommit(be->db))
		(void)step_once(be, ST_ROLLBACK);
}

/*
 * Runs n ops from first in one transaction.  On failure the transaction is
 * rolled back and, for a batch of several, each op runs again alone, so
 * the error lands on the op that caused it (or on all, if the disk fails).
 */
static void
run_batch(struct store_backend *be, struct op *first, size_t n)
{
	struct op *op;
	int64_t now = now_ms();
	size_t i, live = 0;
	bool retry;
	int rc;

	for (i = 0, op = first; i < n; i++, op = op->next)
		if (!op->preset)
			live++;
	if (live == 0)
		return;
	retry = live > 1;
	if ((rc = step_once(be, ST_BEGIN)) != 0) {
		/*
		 * Nothing ran, and running each alone would only wait out the
		 * busy timeout again per op: fail them all now.
		 */
		retry = false;
		goto fail;
	}
	memset(be->count_delta, 0, sizeof(be->count_delta));
	for (i = 0, op = first; i < n; i++, op = op->next) {
		if (op->preset)
			continue;
		op_reset(op);
		if ((rc = exec_op(be, op, now)) != 0)
			goto fail;
	}
	if ((rc = count_flush(be)) != 0)
		goto fail;
	if ((rc = step_once(be, ST_COMMIT)) != 0)
		goto fail;
	atomic_fetch_add(&be->commits, 1);
	return;
fail:
	rollback(be);
	if (!retry) {
		/* Alone, or nothing ran: the error is each op's own. */
		for (i = 0, op = first; i < n; i++, op = op->next) {
			if (op->preset)
				continue;
			op_reset(op);
			op->err = rc;
		}
		return;
	}
	log_warnx("- store batch_failed ops=%zu err=%d retry=alone", live, rc);
	for (i = 0, op = first; i < n; i++, op = op->next)
		run_batch(be, op, 1);
}

/* On the loop: runs the callbacks of a batch in order and frees it. */
static void
complete_batch(void *arg)
{
	struct op *op = arg, *next;
	struct store_message *m;
	struct store_backend *be;

	for (; op != NULL; op = next) {
		next = op->next;
		switch (op->kind) {
		case OP_SUBMIT:
			m = op->u.submit.m;
			if (op->err != 0) {
				op->cb.submit(op->arg, op->err, m->id, false,
					      NULL);
				store_message_free(m);
			} else if (op->u.submit.dup) {
				op->cb.submit(op->arg, 0, op->u.submit.dup_id,
					      true, NULL);
				store_message_free(m);
			} else
				op->cb.submit(op->arg, 0, m->id, false, m);
			break;
		case OP_UPDATE:
			if (op->cb.done != NULL)
				op->cb.done(op->arg, op->err);
			break;
		case OP_LOAD:
			if (op->err != 0)
				op_reset(op);
			op->cb.load(op->arg, op->err, op->u.load.msgs,
				    op->u.load.nmsgs);
			op->u.load.msgs = NULL; /* the callback took them */
			op->u.load.nmsgs = 0;
			break;
		case OP_GET:
			op->cb.get(op->arg, op->err, op->u.get.m, op->u.get.att,
				   op->u.get.natt);
			op_reset(op);
			break;
		case OP_EXPIRE:
			if (op->cb.expire != NULL)
				op->cb.expire(op->arg, op->err,
					      op->u.expire.rowids,
					      op->u.expire.n);
			op_reset(op);
			break;
		}
		be = op->be;
		atomic_fetch_sub(&be->pending, 1);
		free(op);
	}
}

static void *
writer_main(void *arg)
{
	struct store_backend *be = arg;
	struct op *first, *last;
	size_t n;

	for (;;) {
		pthread_mutex_lock(&be->lock);
		while (be->head == NULL && !be->stopping)
			pthread_cond_wait(&be->cond, &be->lock);
		first = be->head;
		if (first == NULL) {
			pthread_mutex_unlock(&be->lock);
			break;
		}
		for (last = first, n = 1; last->next != NULL && n < BATCH_MAX;
		     n++)
			last = last->next;
		be->head = last->next;
		if (be->head == NULL)
			be->tail = &be->head;
		last->next = NULL;
		pthread_mutex_unlock(&be->lock);

		run_batch(be, first, n);
		mailbox_post(be->mb, complete_batch, first);
	}
	return NULL;
}

/*
 * A new op with extra bytes after it for copies of its strings and arrays
 * (one allocation per op; sizeof(struct op) keeps the tail 8-aligned).
 */
static struct op *
op_new(struct store_backend *be, enum op_kind kind, int err, void *arg,
       size_t extra, char **tail)
{
	struct op *op;

	op = xcalloc(1, sizeof(*op) + extra);
	op->be = be;
	op->kind = kind;
	op->err = err;
	op->preset = err != 0;
	op->arg = arg;
	if (tail != NULL)
		*tail = (char *)(op + 1);
	return op;
}

/*
 * Runs on the loop after the callbacks active in this turn: everything they
 * queued goes to the writer together, so a burst of submissions (say, the
 * clients a batch of completions just answered) shares one commit instead
 * of the first one waking the writer alone.
 */
static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_backend *be = arg;

	be->kick_armed = false;
	pthread_mutex_lock(&be->lock);
	pthread_cond_signal(&be->cond);
	pthread_mutex_unlock(&be->lock);
}

static void
enqueue(struct store_backend *be, struct op *op)
{
	atomic_fetch_add(&be->pending, 1);
	if (be->closing) {
		/* Too late for the writer: fail it, still asynchronously. */
		if (!op->preset) {
			op->err = -ESHUTDOWN;
			op->preset = true;
		}
		mailbox_post(be->mb, complete_batch, op);
		return;
	}
	pthread_mutex_lock(&be->lock);
	*be->tail = op;
	be->tail = &op->next;
	pthread_mutex_unlock(&be->lock);
	if (!be->kick_armed) {
		be->kick_armed = true;
		event_active(be->kick, EV_TIMEOUT, 1);
	}
}

/* Copies s into *tail and advances it; NULL stays NULL. */
static char *
tail_copy(char **tail, const char *s)
{
	char *p = *tail;
	size_t n;

	if (s == NULL)
		return NULL;
	n = strlen(s) + 1;
	memcpy(p, s, n);
	*tail += n;
	return p;
}

static size_t
strsize(const char *s)
{
	return s == NULL ? 0 : strlen(s) + 1;
}

static void
sqlite_submit(struct store_backend *be, int err, struct store_message *m,
	      const char *idem_key, store_submit_cb cb, void *arg)
{
	struct op *op;
	char *tail;
	int64_t now = now_ms();

	op = op_new(be, OP_SUBMIT, err, arg, strsize(idem_key), &tail);
	op->cb.submit = cb;
	op->u.submit.m = m;
	op->u.submit.key = tail_copy(&tail, idem_key);
	/* The callback gets m->id even when the front rejected m. */
	m->id[sizeof(m->id) - 1] = '\0';
	if (m->id[0] == '\0')
		id_new(m->id);
	if (m->created_ms == 0)
		m->created_ms = now;
	if (m->updated_ms == 0)
		m->updated_ms = m->created_ms;
	enqueue(be, op);
}

static void
sqlite_update(struct store_backend *be, int err, const struct store_update *u,
	      store_done_cb cb, void *arg)
{
	struct store_update *c;
	struct op *op;
	char *tail;
	size_t extra;

	extra = strsize(u->tried) + strsize(u->provider) +
		strsize(u->provider_message_id) + strsize(u->error);
	if (u->has_attempt)
		extra +=
		    strsize(u->attempt.provider) + strsize(u->attempt.detail);
	op = op_new(be, OP_UPDATE, err, arg, extra, &tail);
	op->cb.done = cb;
	c = &op->u.update.u;
	*c = *u;
	c->tried = tail_copy(&tail, u->tried);
	c->provider = tail_copy(&tail, u->provider);
	c->provider_message_id = tail_copy(&tail, u->provider_message_id);
	c->error = tail_copy(&tail, u->error);
	if (u->has_attempt) {
		/* In the op's tail: never store_attempt_cleanup() these. */
		c->attempt.provider = tail_copy(&tail, u->attempt.provider);
		c->attempt.detail = tail_copy(&tail, u->attempt.detail);
	} else {
		c->attempt.provider = NULL;
		c->attempt.detail = NULL;
	}
	enqueue(be, op);
}

static void
sqlite_load(struct store_backend *be, int err, const int64_t *rowids, size_t n,
	    store_load_cb cb, void *arg)
{
	struct op *op;
	char *tail;

	op = op_new(be, OP_LOAD, err, arg, n * sizeof(int64_t), &tail);
	op->cb.load = cb;
	op->u.load.rowids = (int64_t *)(void *)tail;
	if (n > 0)
		memcpy(op->u.load.rowids, rowids, n * sizeof(int64_t));
	op->u.load.n = n;
	enqueue(be, op);
}

static void
sqlite_get(struct store_backend *be, int err, const char *id, store_get_cb cb,
	   void *arg)
{
	struct op *op;

	op = op_new(be, OP_GET, err, arg, 0, NULL);
	op->cb.get = cb;
	snprintf(op->u.get.id, sizeof(op->u.get.id), "%s", id);
	enqueue(be, op);
}

static void
sqlite_expire(struct store_backend *be, int err, int64_t ttl_cutoff_ms,
	      int64_t idem_cutoff_ms, store_expire_cb cb, void *arg)
{
	struct op *op;

	op = op_new(be, OP_EXPIRE, err, arg, 0, NULL);
	op->cb.expire = cb;
	op->u.expire.ttl_cutoff = ttl_cutoff_ms;
	op->u.expire.idem_cutoff = idem_cutoff_ms;
	enqueue(be, op);
}

static size_t
sqlite_pending(const struct store_backend *be)
{
	return atomic_load(&be->pending);
}

static uint64_t
sqlite_commits(const struct store_backend *be)
{
	return atomic_load(&be->commits);
}

/* Migrates forward in one transaction; refuses a newer schema. */
static int
migrate(struct store_backend *be)
{
	sqlite3_stmt *s = NULL;
	char *sql = NULL;
	int rc, version = 0;
	size_t i;

	if ((rc = exec_sql(be->db, "BEGIN IMMEDIATE")) != 0)
		return rc;
	rc = sqlite3_prepare_v2(be->db, "PRAGMA user_version", -1, &s, NULL);
	if (rc != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW) {
		rc = db_fail(be->db, rc, "user_version");
		goto fail;
	}
	version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	s = NULL;
	if (version < 0 || version > STORE_SCHEMA_VERSION) {
		log_warnx("- store schema_too_new path=%s version=%d known=%d: "
			  "refusing a database written by a newer shivneri",
			  be->path, version, STORE_SCHEMA_VERSION);
		rc = STORE_ENEWER;
		goto fail;
	}
	for (i = (size_t)version; i < ARRAY_SIZE(migrations); i++) {
		if ((rc = exec_sql(be->db, migrations[i])) != 0)
			goto fail;
		log_info("- store migrated path=%s version=%zu", be->path,
			 i + 1);
	}
	sql = xasprintf("PRAGMA user_version = %d", STORE_SCHEMA_VERSION);
	if ((rc = exec_sql(be->db, sql)) != 0)
		goto fail;
	free(sql);
	sql = NULL;
	return exec_sql(be->db, "COMMIT");
fail:
	free(sql);
	sqlite3_finalize(s);
	(void)exec_sql(be->db, "ROLLBACK");
	return rc;
}

/*
 * A crash left these in "sending": nobody knows whether the provider took
 * them, so they are queued again (at least once) with a "lost" attempt,
 * and their provider counts as tried this round.
 */
static int
recover(struct store_backend *be)
{
	char *sql;
	int rc, n;

	sql = xasprintf(
	    "BEGIN IMMEDIATE;"
	    "UPDATE status_counts SET n = n + (SELECT count(*) FROM messages"
	    " WHERE status = 1) WHERE status = 0;"
	    "UPDATE status_counts SET n = n - (SELECT count(*) FROM messages"
	    " WHERE status = 1) WHERE status = 1;"
	    "INSERT INTO attempts (message_rowid, n, provider, at_ms, outcome,"
	    " detail) SELECT rowid, MAX(attempts, COALESCE((SELECT MAX(n) FROM"
	    " attempts a WHERE a.message_rowid = messages.rowid), 0)) + 1,"
	    " provider, %lld, %d, 'server restarted' FROM messages"
	    " WHERE status = 1;"
	    "UPDATE messages SET status = 0, attempts = attempts + 1,"
	    " updated_ms = %lld, tried = CASE"
	    " WHEN provider IS NULL THEN tried"
	    " WHEN tried IS NULL OR tried = '' THEN provider"
	    " WHEN instr(',' || tried || ',', ',' || provider || ',') > 0"
	    "  THEN tried"
	    " ELSE tried || ',' || provider END"
	    " WHERE status = 1;",
	    (long long)now_ms(), OUTCOME_LOST, (long long)now_ms());
	rc = exec_sql(be->db, sql);
	free(sql);
	if (rc != 0) {
		(void)exec_sql(be->db, "ROLLBACK");
		return rc;
	}
	n = sqlite3_changes(be->db);
	if ((rc = exec_sql(be->db, "COMMIT")) != 0) {
		(void)exec_sql(be->db, "ROLLBACK");
		return rc;
	}
	if (n > 0)
		log_info("- store recovered sending=%d status=queued", n);
	return 0;
}

static int
db_setup(struct store_backend *be)
{
	sqlite3_stmt *s = NULL;
	const unsigned char *mode;
	int rc, i;

	rc = sqlite3_open_v2(be->path, &be->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				 SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		if (be->db == NULL)
			return -ENOMEM;
		return db_fail(be->db, rc, "open");
	}
	sqlite3_extended_result_codes(be->db, 1);
	sqlite3_busy_timeout(be->db, BUSY_TIMEOUT_MS);
	/*
	 * Before the first table exists (later it is a no-op): a 2-3 KB
	 * message, the common size, fills a third of an 8 KiB page but needs a
	 * 4 KiB page of its own, so 8 KiB pages write about a third fewer
	 * bytes and half the WAL frames per message, in the WAL and again at
	 * checkpoint.  16 KiB costs more than it saves: the pages every
	 * commit rewrites (index and interior pages) grow with it.
	 */
	if ((rc = exec_sql(be->db, "PRAGMA page_size = " PAGE_SIZE_STR)) != 0)
		goto fail;
	rc = sqlite3_prepare_v2(be->db, "PRAGMA journal_mode = WAL", -1, &s,
				NULL);
	if (rc != SQLITE_OK || (rc = sqlite3_step(s)) != SQLITE_ROW) {
		rc = db_fail(be->db, rc, "journal_mode");
		goto fail;
	}
	mode = sqlite3_column_text(s, 0);
	if (mode == NULL || strcmp((const char *)mode, "wal") != 0) {
		log_warnx("- store no_wal path=%s", be->path);
		rc = -EIO;
		goto fail;
	}
	sqlite3_finalize(s);
	s = NULL;
	/* The WAL shrinks back to 64 MiB after a burst is checkpointed. */
	rc = exec_sql(be->db, "PRAGMA synchronous = FULL;"
			      "PRAGMA journal_size_limit = 67108864;"
			      /* Checkpoints run inside a commit: small ones
			       * (2 MiB of 8 KiB pages) keep the tail of
			       * acknowledgement latency short. */
			      "PRAGMA wal_autocheckpoint = 250;"
			      "PRAGMA foreign_keys = ON;");
	if (rc != 0)
		goto fail;
	if ((rc = migrate(be)) != 0)
		goto fail;
	if ((rc = recover(be)) != 0)
		goto fail;
	for (i = 0; i < ST_MAX; i++) {
		rc = sqlite3_prepare_v3(be->db, stmt_sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &be->stmt[i],
					NULL);
		if (rc != SQLITE_OK) {
			rc = db_fail(be->db, rc, stmt_sql[i]);
			goto fail;
		}
	}
	return 0;
fail:
	sqlite3_finalize(s);
	return rc;
}

static void
db_teardown(struct store_backend *be)
{
	int i;

	for (i = 0; i < ST_MAX; i++) {
		sqlite3_finalize(be->stmt[i]);
		be->stmt[i] = NULL;
	}
	if (be->db != NULL && sqlite3_close(be->db) != SQLITE_OK)
		log_warnx("- store close_failed msg=\"%s\"",
			  sqlite3_errmsg(be->db));
	be->db = NULL;
}

static void
backend_free(struct store_backend *be)
{
	db_teardown(be);
	if (be->kick != NULL)
		event_free(be->kick);
	mailbox_free(be->mb);
	pthread_mutex_destroy(&be->lock);
	pthread_cond_destroy(&be->cond);
	free(be->json.p);
	free(be->path);
	free(be);
}

static int
sqlite_open(const char *dir, struct event_base *base,
	    struct store_backend **out)
{
	struct store_backend *be;
	sigset_t all, old;
	int rc;

	*out = NULL;
	if ((rc = mkdir_p(dir, 0700)) != 0) {
		log_warnx("- store mkdir_failed dir=%s err=%s", dir,
			  strerror(-rc));
		return rc;
	}
	be = xcalloc(1, sizeof(*be));
	pthread_mutex_init(&be->lock, NULL);
	pthread_cond_init(&be->cond, NULL);
	be->tail = &be->head;
	atomic_init(&be->pending, 0);
	atomic_init(&be->commits, 0);
	be->path = xasprintf("%s/shivneri.db", dir);
	if ((rc = db_setup(be)) != 0)
		goto fail;
	be->kick = event_new(base, -1, 0, kick_cb, be);
	be->mb = mailbox_new(base);
	if (be->kick == NULL || be->mb == NULL) {
		rc = -EMFILE;
		goto fail;
	}
	/* Signals are the loop's business: the writer blocks them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&be->thread, NULL, writer_main, be);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	be->thread_started = true;
	log_info("- store open path=%s version=%d", be->path,
		 STORE_SCHEMA_VERSION);
	*out = be;
	return 0;
fail:
	backend_free(be);
	return rc;
}

static void
sqlite_close(struct store_backend *be)
{
	int rounds;

	if (be == NULL)
		return;
	be->closing = true;
	pthread_mutex_lock(&be->lock);
	be->stopping = true;
	pthread_cond_signal(&be->cond);
	pthread_mutex_unlock(&be->lock);
	if (be->thread_started)
		pthread_join(be->thread, NULL);
	/* Callbacks may queue more; those fail with -ESHUTDOWN. */
	for (rounds = 0;
	     atomic_load(&be->pending) > 0 && rounds < CLOSE_DRAIN_ROUNDS;
	     rounds++)
		mailbox_drain(be->mb);
	if (atomic_load(&be->pending) > 0)
		log_warnx("- store close_leaked pending=%zu",
			  atomic_load(&be->pending));
	backend_free(be);
}

static int
sqlite_scan(struct store_backend *be,
	    void (*each)(void *arg, int64_t rowid, int64_t next_ms), void *arg,
	    int64_t counts[MSG_NSTATUS])
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int rc, status;

	rc = sqlite3_open_v2(be->path, &db,
			     SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	/* One read transaction, so the counts and the list agree. */
	if ((rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL)) != SQLITE_OK)
		goto fail;
	if (counts != NULL) {
		memset(counts, 0, sizeof(int64_t) * MSG_NSTATUS);
		rc = sqlite3_prepare_v2(
		    db, "SELECT status, n FROM status_counts", -1, &s, NULL);
		if (rc != SQLITE_OK)
			goto fail;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			status = sqlite3_column_int(s, 0);
			if (status >= 0 && status < MSG_NSTATUS)
				counts[status] = sqlite3_column_int64(s, 1);
		}
		if (rc != SQLITE_DONE)
			goto fail;
		sqlite3_finalize(s);
		s = NULL;
	}
	if (each != NULL) {
		rc = sqlite3_prepare_v2(
		    db,
		    "SELECT rowid, next_ms FROM messages WHERE status = 0"
		    " ORDER BY id",
		    -1, &s, NULL);
		if (rc != SQLITE_OK)
			goto fail;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW)
			each(arg, sqlite3_column_int64(s, 0),
			     sqlite3_column_int64(s, 1));
		if (rc != SQLITE_DONE)
			goto fail;
		sqlite3_finalize(s);
		s = NULL;
	}
	(void)sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	return 0;
fail:
	rc = db != NULL ? db_fail(db, rc, "scan") : -ENOMEM;
	sqlite3_finalize(s);
	sqlite3_close(db);
	return rc;
}

const struct store_ops store_sqlite_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .scan = sqlite_scan,
    .submit = sqlite_submit,
    .update = sqlite_update,
    .load = sqlite_load,
    .get = sqlite_get,
    .expire = sqlite_expire,
    .pending = sqlite_pending,
    .commits = sqlite_commits,
};
