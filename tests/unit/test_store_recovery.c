/*
 * The store when things go wrong or change: a crash after durability,
 * a newer schema, housekeeping, corrupt rows, values over the caps, a full
 * disk, a database file that is empty, gone, a folder or foreign, schema
 * migrations, file modes and options.
 * The fixture (WAIT_FOR, setup, submit/get/update helpers) is
 * fixture_store.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/store_int.h"
#include "common/util.h"

#include "fixture_store.h"

#include <errno.h>
#include <event2/event.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NCRASH 200

struct child_res {
	int done;
	int failed;
};

static void
child_cb(void *arg, int err, const char *id, bool duplicate,
	 struct store_message *m)
{
	struct child_res *r = arg;

	r->done++;
	if (err != 0)
		r->failed++;
	store_message_free(m);
}

static void
child_done(void *arg, int err)
{
	struct child_res *r = arg;

	r->done++;
	if (err != 0)
		r->failed++;
}

/* The child: no cmocka asserts here, only an exit code. */
static void
crash_child(const char *dir)
{
	struct event_base *base = event_base_new();
	struct child_res r = {0, 0}, ru = {0, 0};
	struct store_update u;
	struct store *st;
	struct timeval tv = {0, 50 * 1000};
	struct event *t;
	int64_t dl = mono_ms() + DEADLINE_MS;
	char id[32];
	int i;

	if (base == NULL || store_open(dir, NULL, base, &st) != 0)
		_exit(2);
	t = event_new(base, -1, EV_PERSIST, noop_cb, NULL);
	event_add(t, &tv);
	for (i = 0; i < NCRASH; i++) {
		snprintf(id, sizeof(id), "01CRASH%019d", i);
		store_submit(st, make_message(id, "crash"), NULL, child_cb, &r);
	}
	while (r.done < NCRASH && mono_ms() < dl)
		event_base_loop(base, EVLOOP_ONCE);
	if (r.done != NCRASH || r.failed != 0)
		_exit(3);
	/* Message 0 was handed to provider p1 when the server died. */
	memset(&u, 0, sizeof(u));
	u.rowid = 1;
	u.status = MSG_SENDING;
	u.provider = "p1";
	u.tried = "p0";
	store_update(st, &u, child_done, &ru);
	while (ru.done < 1 && mono_ms() < dl)
		event_base_loop(base, EVLOOP_ONCE);
	if (ru.done != 1 || ru.failed != 0)
		_exit(4);
	/* More work in flight that nobody acknowledged. */
	for (i = 0; i < 20; i++)
		store_submit(st, make_message(NULL, "unacked"), NULL, child_cb,
			     &r);
	_exit(0);
}

struct found_res {
	int done;
	int found;
};

static void
found_cb(void *arg, int err, const struct store_message *m,
	 const struct store_attempt *att, size_t natt)
{
	struct found_res *r = arg;

	r->done++;
	if (err == 0 && m != NULL && strcmp(m->subject, "crash") == 0)
		r->found++;
}

static void
test_crash_recovery(void **state)
{
	struct fixture *f = *state;
	struct found_res fr = {0, 0};
	struct get_res g;
	int64_t counts[MSG_NSTATUS];
	char id[32];
	pid_t pid;
	int i, status;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		crash_child(f->sub);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	open_store(f);
	assert_int_equal(store_scan(f->st, NULL, NULL, counts), 0);
	assert_int_equal(counts[MSG_SENDING], 0);
	assert_true(counts[MSG_QUEUED] >= NCRASH);
	/* Exact: the unacknowledged ones count if and only if they landed. */
	check_counts(f, counts[MSG_QUEUED], 0, 0, 0);
	for (i = 0; i < NCRASH; i++) {
		snprintf(id, sizeof(id), "01CRASH%019d", i);
		store_get(f->st, id, found_cb, &fr);
	}
	WAIT_FOR(f->base, fr.done == NCRASH);
	assert_int_equal(fr.found, NCRASH);

	snprintf(id, sizeof(id), "01CRASH%019d", 0);
	get_wait(f, id, &g);
	assert_int_equal(g.err, 0);
	assert_int_equal(g.m->status, MSG_QUEUED);
	assert_int_equal(g.m->attempts, 1);
	assert_string_equal(g.m->tried, "p0,p1");
	assert_int_equal(g.natt, 1);
	assert_int_equal(g.att[0].n, 1);
	assert_int_equal(g.att[0].outcome, OUTCOME_LOST);
	assert_string_equal(g.att[0].provider, "p1");
	assert_string_equal(g.att[0].detail, "server restarted");
	get_res_cleanup(&g);

	/* A second restart finds nothing more to recover. */
	store_close(f->st);
	open_store(f);
	get_wait(f, id, &g);
	assert_int_equal(g.m->attempts, 1);
	assert_int_equal(g.natt, 1);
	get_res_cleanup(&g);
}

static void
test_newer_schema(void **state)
{
	struct fixture *f = *state;
	struct store *st = NULL;
	sqlite3 *db;
	char path[192];

	open_store(f);
	store_close(f->st);
	f->st = NULL;
	snprintf(path, sizeof(path), "%s/shivneri.db", f->sub);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);

	assert_int_equal(store_open(f->sub, NULL, f->base, &st), STORE_ENEWER);
	assert_null(st);
	assert_non_null(strstr(store_strerror(STORE_ENEWER), "newer"));
}

/*
 * Housekeeping forgets old idempotency keys and deletes finished messages
 * (and their attempts) last updated before the cut-off, in chunks that let
 * other operations through, and keeps status_counts exact.
 */
#define NHK 1100 /* more than two chunks of HOUSEKEEP_CHUNK */

static void
test_housekeep(void **state)
{
	struct fixture *f = *state;
	struct group_res g = {0, 0};
	struct done_res d = {0, 0};
	struct sub_res r1, r2, late;
	struct store_update u;
	struct hk_res h;
	int64_t cutoff, first, before;
	int i;

	open_store(f);
	submit_wait(f, make_message(NULL, "keyed"), IDEM("old-key"), &r1);
	for (i = 0; i < NHK; i++)
		store_submit(f->st, make_message(NULL, "hk"), NULL, group_cb,
			     &g);
	WAIT_FOR(f->base, g.done == NHK);
	assert_int_equal(g.failed, 0);
	first = r1.rowid + 1;
	/* Old: NHK - 100 delivered with an attempt, 100 failed. */
	for (i = 0; i < NHK; i++) {
		memset(&u, 0, sizeof(u));
		u.rowid = first + i;
		u.status = i < NHK - 100 ? MSG_DELIVERED : MSG_FAILED;
		u.has_attempt = i < NHK - 100;
		u.attempt.outcome = OUTCOME_DELIVERED;
		store_update(f->st, &u, i == NHK - 1 ? done_cb : NULL, &d);
	}
	WAIT_FOR(f->base, d.done == 1);
	assert_int_equal(d.err, 0);
	clock_past(now_ms());
	cutoff = now_ms();
	clock_past(cutoff);
	/* Recent: r2 delivered after the cut-off stays. */
	submit_wait(f, make_message(NULL, "recent"), NULL, &r2);
	memset(&u, 0, sizeof(u));
	u.rowid = r2.rowid;
	u.status = MSG_DELIVERED;
	assert_int_equal(update_wait(f, &u), 0);
	check_counts(f, 1, 0, NHK - 100 + 1, 100);

	before = store__commits(f->st);
	memset(&h, 0, sizeof(h));
	memset(&late, 0, sizeof(late));
	h.sub = &late;
	store_housekeep(f->st, now_ms() + 1000, cutoff, hk_cb, &h);
	/* Queued after housekeeping began, done before it ends. */
	store_submit(f->st, make_message(NULL, "late"), NULL, submit_cb, &late);
	WAIT_FOR(f->base, h.done == 1 && late.done == 1);
	assert_int_equal(h.err, 0);
	assert_int_equal(late.err, 0);
	assert_int_equal(h.sub_done_before, 1);
	assert_int_equal(h.pruned[MSG_DELIVERED], NHK - 100);
	assert_int_equal(h.pruned[MSG_FAILED], 100);
	assert_int_equal(h.pruned[MSG_QUEUED], 0);
	assert_int_equal(h.pruned[MSG_SENDING], 0);
	/* Chunks: three for NHK rows, each its own commit. */
	assert_true(store__commits(f->st) - before >= (NHK + 499) / 500);
	check_counts(f, 2, 0, 1, 0);
	assert_int_equal(db_int(f, "SELECT count(*) FROM attempts"), 0);
	assert_int_equal(db_int(f, "SELECT count(*) FROM idempotency"), 0);

	/* The key was forgotten, so it stores a new message. */
	submit_wait(f, make_message(NULL, "again"), IDEM("old-key"), &r1);
	assert_int_equal(r1.err, 0);
	assert_false(r1.dup);

	/* Nothing left to do: one pass, nothing pruned. */
	housekeep_wait(f, 0, cutoff, &h);
	assert_int_equal(h.err, 0);
	for (i = 0; i < MSG_NSTATUS; i++)
		assert_int_equal(h.pruned[i], 0);
}

/* Runs sql on the store's database with the store closed. */
static void
db_exec(struct fixture *f, const char *sql)
{
	sqlite3 *db;
	char path[192];

	snprintf(path, sizeof(path), "%s/shivneri.db", f->sub);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

struct corrupt_res {
	int done;
	int err;
	size_t n;
	struct store_message *m[8];
};

static void
corrupt_cb(void *arg, int err, struct store_message **msgs, size_t n)
{
	struct corrupt_res *r = arg;
	size_t i;

	r->done++;
	r->err = err;
	r->n = n;
	for (i = 0; i < n; i++) {
		if (i < 8)
			r->m[i] = msgs[i];
		else
			store_message_free(msgs[i]);
	}
	free(msgs);
}

static void
corrupt_res_cleanup(struct corrupt_res *r)
{
	size_t i;

	for (i = 0; i < r->n && i < 8; i++)
		store_message_free(r->m[i]);
	memset(r, 0, sizeof(*r));
}

/*
 * A queued row that cannot be decoded is not skipped (it would stay
 * queued for ever): the load hands it back failed, with the counters it
 * could read, and writes nothing; the caller fails it with an update (the
 * dispatcher's record, with its webhook), after which loads skip it.
 */

static void
test_load_corrupt(void **state)
{
	struct fixture *f = *state;
	struct sub_res r[4];
	struct corrupt_res c;
	struct store_update u;
	char *sql;
	int64_t ids[4];
	int i, pass;

	open_store(f);
	for (i = 0; i < 4; i++) {
		submit_wait(f, make_message(NULL, "c"), NULL, &r[i]);
		ids[i] = r[i].rowid;
	}
	store_close(f->st);
	f->st = NULL;
	sql = xasprintf(
	    "UPDATE messages SET rcpt = 'not json', attempts = 2, round = 1,"
	    " tried = 'a' WHERE rowid = %lld; UPDATE messages SET next_ms ="
	    " 'soon' WHERE rowid = %lld; DELETE FROM bodies WHERE"
	    " rowid = %lld;",
	    (long long)ids[1], (long long)ids[2], (long long)ids[3]);
	db_exec(f, sql);
	free(sql);
	open_store(f);

	/* Twice: the load writes nothing, the rows stay queued. */
	for (pass = 0; pass < 2; pass++) {
		memset(&c, 0, sizeof(c));
		store_load(f->st, ids, 4, corrupt_cb, &c);
		WAIT_FOR(f->base, c.done == 1);
		assert_int_equal(c.err, 0);
		assert_int_equal(c.n, 4);
		assert_int_equal(c.m[0]->status, MSG_QUEUED);
		assert_null(c.m[0]->error);
		assert_non_null(c.m[0]->mime);
		for (i = 1; i < 4; i++) {
			assert_int_equal(c.m[i]->rowid, ids[i]);
			assert_string_equal(c.m[i]->id, r[i].id);
			assert_int_equal(c.m[i]->status, MSG_FAILED);
			assert_null(c.m[i]->mime);
			assert_non_null(c.m[i]->error);
		}
		assert_string_equal(c.m[1]->error, "corrupt record: bad rcpt");
		assert_string_equal(c.m[2]->error,
				    "corrupt record: bad next_ms");
		assert_string_equal(c.m[3]->error, "corrupt record: bad mime");
		/* What could be read of the first is kept. */
		assert_int_equal(c.m[1]->attempts, 2);
		assert_int_equal(c.m[1]->round, 1);
		assert_string_equal(c.m[1]->tried, "a");
		assert_int_equal(c.m[2]->next_ms, 0);
		if (pass == 0)
			corrupt_res_cleanup(&c);
		check_counts(f, 4, 0, 0, 0);
	}

	/* Failed as the record does it: the row keeps its counters. */
	for (i = 1; i < 4; i++) {
		memset(&u, 0, sizeof(u));
		u.rowid = c.m[i]->rowid;
		u.status = MSG_FAILED;
		u.next_ms = c.m[i]->next_ms;
		u.attempts = c.m[i]->attempts;
		u.round = c.m[i]->round;
		u.tried = c.m[i]->tried != NULL ? c.m[i]->tried : "";
		u.error = c.m[i]->error;
		assert_int_equal(update_wait(f, &u), 0);
	}
	corrupt_res_cleanup(&c);
	check_counts(f, 1, 0, 0, 3);
	assert_int_equal(db_int(f, "SELECT count(*) FROM messages WHERE"
				   " status = 3 AND error LIKE 'corrupt%'"),
			 3);
	sql = xasprintf("SELECT attempts * 10 + round FROM messages"
			" WHERE rowid = %lld",
			(long long)ids[1]);
	assert_int_equal(db_int(f, sql), 21);
	free(sql);

	/* A load from then on finds only the good one. */
	store_load(f->st, ids, 4, corrupt_cb, &c);
	WAIT_FOR(f->base, c.done == 1);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.m[0]->rowid, ids[0]);
	corrupt_res_cleanup(&c);
}

static void
open_store_capped(struct fixture *f, int64_t max)
{
	struct store_options o = {"sqlite", max};

	assert_int_equal(store_open(f->sub, &o, f->base, &f->st), 0);
}

/*
 * A value SQLite refuses (over its length limit) fails that submit with an
 * error and stores nothing, instead of storing NULL and answering 202; its
 * neighbours (usually in the same batch) are stored.
 */

static void
test_bind_too_big(void **state)
{
	struct fixture *f = *state;
	struct sub_res r[5];
	struct store_message *m;
	struct get_res g;
	const char *why;
	size_t big = 2 * 1024 * 1024;
	int i;

	open_store_capped(f, 4096);
	/* Over the configured cap: refused by the front. */
	m = make_message(NULL, "too big");
	free(m->mime);
	m->mime_len = 4097;
	m->mime = xcalloc(1, m->mime_len);
	submit_wait(f, m, NULL, &r[0]);
	assert_int_equal(r[0].err, -EFBIG);

	memset(r, 0, sizeof(r));
	store_submit(f->st, make_message(NULL, "good"), NULL, submit_cb, &r[0]);
	/* Within the cap, but its subject is over SQLite's limit. */
	m = make_message(NULL, "x");
	free(m->subject);
	m->subject = xmalloc(big + 1);
	memset(m->subject, 's', big);
	m->subject[big] = '\0';
	store_submit(f->st, m, IDEM("big-key"), submit_cb, &r[1]);
	/* Recipients whose JSON is over the row's headroom. */
	m = make_message(NULL, "rcpt");
	free(m->rcpt[0]);
	m->rcpt[0] = xmalloc(big + 1);
	memset(m->rcpt[0], 'r', big);
	m->rcpt[0][big] = '\0';
	store_submit(f->st, m, NULL, submit_cb, &r[2]);
	store_submit(f->st, make_message(NULL, "good"), NULL, submit_cb, &r[3]);
	WAIT_FOR(f->base, r[0].done && r[1].done && r[2].done && r[3].done);
	assert_int_equal(r[0].err, 0);
	assert_int_equal(r[1].err, -EFBIG);
	assert_int_equal(r[2].err, -EFBIG);
	assert_int_equal(r[3].err, 0);
	assert_true(store_healthy(f->st, &why));
	check_counts(f, 2, 0, 0, 0);
	for (i = 1; i < 3; i++) {
		get_wait(f, r[i].id, &g);
		assert_int_equal(g.err, -ENOENT);
	}
	assert_int_equal(db_int(f, "SELECT count(*) FROM idempotency"), 0);
}

static void
exec_wait(struct fixture *f, const char *sql)
{
	struct done_res d = {0, 0};

	store__exec(f->st, sql, done_cb, &d);
	WAIT_FOR(f->base, d.done == 1);
	assert_int_equal(d.err, 0);
}

/* Submits n messages of 64 KiB and an update together; returns errors. */
static int
full_batch(struct fixture *f, int64_t rowid, int n, int *updated)
{
	struct sub_res r[4];
	struct done_res d = {0, 0};
	struct store_update u;
	struct store_message *m;
	int i, failed = 0;

	memset(r, 0, sizeof(r));
	memset(&u, 0, sizeof(u));
	u.rowid = rowid;
	u.status = MSG_QUEUED;
	u.attempts = 1;
	store_update(f->st, &u, done_cb, &d);
	for (i = 0; i < n; i++) {
		m = make_message(NULL, "full");
		free(m->mime);
		m->mime_len = 64 * 1024;
		m->mime = xcalloc(1, m->mime_len);
		store_submit(f->st, m, NULL, submit_cb, &r[i]);
	}
	WAIT_FOR(f->base, d.done == 1 && r[0].done && r[n - 1].done);
	for (i = 0; i < n; i++)
		if (r[i].err != 0) {
			assert_int_equal(r[i].err, -ENOSPC);
			failed++;
		}
	*updated = d.err;
	return failed;
}

/*
 * A write the disk refuses (SQLITE_FULL, from PRAGMA max_page_count on the
 * writer's connection) fails every op of its batch, rolls back cleanly,
 * makes the store unhealthy with a reason, and the next batch works once
 * there is room: health comes back by a write or by the idle probe.
 */

static void
test_disk_full(void **state)
{
	struct fixture *f = *state;
	struct sub_res r;
	const char *why = "unset";
	char *sql;
	int updated;

	open_store(f);
	assert_true(store_healthy(f->st, &why));
	assert_null(why);
	submit_wait(f, make_message(NULL, "before"), NULL, &r);
	assert_int_equal(r.err, 0);

	sql = xasprintf("PRAGMA max_page_count = %lld",
			(long long)db_int(f, "PRAGMA page_count"));
	exec_wait(f, sql);
	assert_int_equal(full_batch(f, r.rowid, 3, &updated), 3);
	/*
	 * The innocent update shares the batch (unless the writer happened
	 * to take it alone) and gets the error; either way what its callback
	 * said is what the disk holds.
	 */
	assert_true(updated == -ENOSPC || updated == 0);
	assert_int_equal(db_int(f, "SELECT attempts FROM messages"),
			 updated == 0 ? 1 : 0);
	assert_false(store_healthy(f->st, &why));
	assert_string_equal(why, "disk full");
	check_counts(f, 1, 0, 0, 0);

	/* Room again: the next write succeeds and health follows it. */
	exec_wait(f, "PRAGMA max_page_count = 1000000");
	assert_int_equal(full_batch(f, r.rowid, 2, &updated), 0);
	assert_int_equal(updated, 0);
	assert_true(store_healthy(f->st, &why));
	check_counts(f, 3, 0, 0, 0);

	/* Full again, then room with no traffic: the probe notices. */
	free(sql);
	sql = xasprintf("PRAGMA max_page_count = %lld",
			(long long)db_int(f, "PRAGMA page_count"));
	exec_wait(f, sql);
	free(sql);
	assert_int_equal(full_batch(f, r.rowid, 1, &updated), 1);
	assert_false(store_healthy(f->st, NULL));
	exec_wait(f, "PRAGMA max_page_count = 1000000");
	WAIT_FOR(f->base, store_healthy(f->st, NULL));
	check_counts(f, 3, 0, 0, 0);
}

static int
open_status(struct fixture *f)
{
	struct store *st = NULL;
	int rc = store_open(f->sub, NULL, f->base, &st);

	if (rc == 0)
		store_close(st);
	else
		assert_null(st);
	return rc;
}

/* A store with one message, closed, and the path of its database. */
/* SQL that takes a store of today's schema back to version 5's shape. */
#define UNDO_V6                                                                \
	"ALTER TABLE messages ADD COLUMN mime BLOB;"                           \
	" UPDATE messages SET mime = (SELECT mime FROM bodies"                 \
	" WHERE bodies.rowid = messages.rowid);"                               \
	" DROP TABLE bodies;"

static void
make_store(struct fixture *f, char *path, size_t pathsz)
{
	struct sub_res r;

	open_store(f);
	submit_wait(f, make_message(NULL, "kept"), NULL, &r);
	assert_int_equal(r.err, 0);
	store_close(f->st);
	f->st = NULL;
	snprintf(path, pathsz, "%s/shivneri.db", f->sub);
}

/* Truncated to zero bytes: refused, not started as an empty store. */
static void
test_db_zero_bytes(void **state)
{
	struct fixture *f = *state;
	char path[192];

	make_store(f, path, sizeof(path));
	assert_int_equal(truncate(path, 0), 0);
	assert_int_equal(open_status(f), STORE_EMISSING);
	assert_non_null(
	    strstr(store_strerror(STORE_EMISSING), "shivneri.store"));
	/* And it stays refused: the refusal wrote nothing. */
	assert_int_equal(open_status(f), STORE_EMISSING);
}

static void
test_db_deleted(void **state)
{
	struct fixture *f = *state;
	char path[192], marker[192];

	make_store(f, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(open_status(f), STORE_EMISSING);
	assert_int_equal(access(path, F_OK), -1); /* not created */
	/* Removing the marker is the operator's way to start empty. */
	snprintf(marker, sizeof(marker), "%s/shivneri.store", f->sub);
	assert_int_equal(unlink(marker), 0);
	assert_int_equal(open_status(f), 0);
}

static void
test_db_is_folder(void **state)
{
	struct fixture *f = *state;
	char path[192];

	snprintf(path, sizeof(path), "%s/shivneri.db", f->sub);
	assert_int_equal(mkdir_p(path, 0700), 0);
	assert_int_equal(open_status(f), -EISDIR);
	assert_non_null(strstr(store_strerror(-EISDIR), "folder"));
}

/* Another store's database in this folder is refused by its identity. */
static void
test_db_foreign(void **state)
{
	struct fixture *f = *state;
	char path[192], other[128], cmd[512];

	make_store(f, path, sizeof(path));
	snprintf(other, sizeof(other), "%s", f->sub);
	snprintf(f->sub, sizeof(f->sub), "%s/other", f->dir);
	make_store(f, path, sizeof(path));
	snprintf(cmd, sizeof(cmd), "cp %s/shivneri.db %s/shivneri.db", f->sub,
		 other);
	assert_int_equal(system(cmd), 0);
	snprintf(f->sub, sizeof(f->sub), "%s", other);
	assert_int_equal(open_status(f), STORE_EFOREIGN);
}

/* A new folder starts, writes its marker, and starts again. */
static void
test_fresh_folder(void **state)
{
	struct fixture *f = *state;
	char marker[192], path[192];
	int64_t counts[MSG_NSTATUS];

	snprintf(marker, sizeof(marker), "%s/shivneri.store", f->sub);
	make_store(f, path, sizeof(path));
	assert_int_equal(access(marker, R_OK), 0);
	open_store(f);
	assert_int_equal(store_scan(f->st, NULL, NULL, counts), 0);
	assert_int_equal(counts[MSG_QUEUED], 1);
	store_close(f->st);
	f->st = NULL;
	/* A store from before the marker gets one at its next open. */
	assert_int_equal(unlink(marker), 0);
	assert_int_equal(open_status(f), 0);
	assert_int_equal(access(marker, R_OK), 0);
	assert_int_equal(open_status(f), 0);
}

/*
 * A store from schema version 1 (before the marker) migrates: its messages
 * stay, it gets an identity and a marker, and it is protected from then on.
 */

static void
test_migrate_v1(void **state)
{
	struct fixture *f = *state;
	char path[192], marker[192];
	int64_t counts[MSG_NSTATUS];

	make_store(f, path, sizeof(path));
	snprintf(marker, sizeof(marker), "%s/shivneri.store", f->sub);
	db_exec(f, UNDO_V6 " DROP INDEX messages_done; DROP TABLE meta;"
			   " ALTER TABLE messages DROP COLUMN budget_ms;"
			   " DROP TABLE outbox; PRAGMA user_version = 1;");
	assert_int_equal(unlink(marker), 0);
	open_store(f);
	assert_int_equal(db_int(f, "PRAGMA user_version"),
			 STORE_SCHEMA_VERSION);
	assert_int_equal(store_scan(f->st, NULL, NULL, counts), 0);
	assert_int_equal(counts[MSG_QUEUED], 1);
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(access(marker, R_OK), 0);
	assert_int_equal(truncate(path, 0), 0);
	assert_int_equal(open_status(f), STORE_EMISSING);
}

/*
 * Keys from schema 2 had no scope and no hash: they move to the anonymous
 * scope, where a retry still gets its first id whatever its body, and no
 * other scope sees them.
 */

static void
test_migrate_v2(void **state)
{
	struct fixture *f = *state;
	struct store_idem anon = {.key = "old",
				  .scope = STORE_IDEM_SCOPE_ANONYMOUS};
	struct store_idem other = {.key = "old", .scope = "scope-x"};
	char path[192], *sql;
	struct sub_res r;

	make_store(f, path, sizeof(path));
	sql = xasprintf(
	    UNDO_V6
	    "DROP TABLE idempotency;"
	    "CREATE TABLE idempotency (key TEXT PRIMARY KEY,"
	    " message_id TEXT NOT NULL, created_ms INTEGER NOT NULL);"
	    "CREATE INDEX idempotency_created ON idempotency(created_ms);"
	    "INSERT INTO idempotency VALUES ('old', 'OLD-ID', %lld);"
	    "ALTER TABLE messages DROP COLUMN budget_ms; DROP TABLE outbox;"
	    "PRAGMA user_version = 2;",
	    (long long)now_ms());
	db_exec(f, sql);
	free(sql);
	open_store(f);
	assert_int_equal(db_int(f, "PRAGMA user_version"),
			 STORE_SCHEMA_VERSION);
	memset(anon.body_hash, 7, sizeof(anon.body_hash));
	submit_wait(f, make_message(NULL, "retry"), &anon, &r);
	assert_int_equal(r.err, 0);
	assert_true(r.dup);
	assert_string_equal(r.id, "OLD-ID");
	submit_wait(f, make_message(NULL, "other"), &other, &r);
	assert_int_equal(r.err, 0);
	assert_false(r.dup);
}

/*
 * A store from schema 4 (the outbox without its index) migrates to 5: it
 * gets outbox_due, and its outbox rows stay claimable.
 */

static void
test_migrate_v4(void **state)
{
	struct fixture *f = *state;
	char path[192];

	make_store(f, path, sizeof(path));
	db_exec(f, UNDO_V6
		" DROP INDEX outbox_due;"
		" INSERT INTO outbox (created_ms, next_ms, attempts, body)"
		" VALUES (1, 0, 0, '{\"v\":4}');"
		" PRAGMA user_version = 4;");
	open_store(f);
	assert_int_equal(db_int(f, "PRAGMA user_version"),
			 STORE_SCHEMA_VERSION);
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM sqlite_schema WHERE"
				   " type = 'index' AND name = 'outbox_due'"
				   " AND tbl_name = 'outbox'"),
			 1);
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM outbox"
				   " INDEXED BY outbox_due WHERE next_ms <= 0"),
			 1);
}

/*
 * A store from schema 5 (the body in the message's row) migrates to 6:
 * each body moves to bodies whole, the column goes, and the message loads
 * with its body; one whose body was NULL still loads as a corrupt record.
 */

static void
test_migrate_v5(void **state)
{
	struct fixture *f = *state;
	struct sub_res r;
	struct get_res g;
	static const char want[] = "From: a@example.org\r\n\r\nhi\0there\r\n";
	char path[192], id[2][sizeof(r.id)];
	int i;

	open_store(f);
	for (i = 0; i < 2; i++) {
		submit_wait(f, make_message(NULL, "v5"), NULL, &r);
		assert_int_equal(r.err, 0);
		memcpy(id[i], r.id, sizeof(r.id));
	}
	store_close(f->st);
	f->st = NULL;
	snprintf(path, sizeof(path), "%s/shivneri.db", f->sub);
	db_exec(f, UNDO_V6 " PRAGMA user_version = 5;");
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM messages"
				   " WHERE length(mime) > 0"),
			 2);
	db_exec(f, "UPDATE messages SET mime = NULL WHERE rowid ="
		   " (SELECT MAX(rowid) FROM messages);");
	open_store(f);
	assert_int_equal(db_int(f, "PRAGMA user_version"), 6);
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM pragma_table_info("
				   "'messages') WHERE name = 'mime'"),
			 0);
	assert_int_equal(db_int(f, "SELECT COUNT(*) FROM bodies"), 1);
	get_wait(f, id[0], &g);
	assert_int_equal(g.err, 0);
	/* Byte for byte, the NUL in it too (fixture_store.c's body). */
	assert_non_null(g.m->mime);
	assert_int_equal(g.m->mime_len, sizeof(want) - 1);
	assert_memory_equal(g.m->mime, want, sizeof(want) - 1);
	get_res_cleanup(&g);
	get_wait(f, id[1], &g);
	assert_int_equal(g.err, 0);
	assert_null(g.m->mime);
	get_res_cleanup(&g);
}

/* The mode of a file, or -1. */
static int
file_mode(const char *dir, const char *name)
{
	char path[256];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &sb) == 0 ? (int)(sb.st_mode & 0777) : -1;
}

/*
 * The store's files are the owner's alone whatever the umask: the
 * database and its -wal and -shm (which SQLite makes with the database's
 * mode), and the marker.  Files an older version left 0644 are narrowed.
 */

static void
test_file_modes(void **state)
{
	static const char *const names[] = {"shivneri.db", "shivneri.db-wal",
					    "shivneri.db-shm",
					    "shivneri.store"};
	struct fixture *f = *state;
	mode_t old = umask(022);
	struct sub_res r;
	char path[256];
	size_t i;

	open_store(f);
	submit_wait(f, make_message(NULL, "private"), NULL, &r);
	assert_int_equal(r.err, 0);
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		print_message("%s\n", names[i]);
		assert_int_equal(file_mode(f->sub, names[i]), 0600);
	}
	store_close(f->st);
	f->st = NULL;
	for (i = 0; i < ARRAY_SIZE(names); i++) {
		snprintf(path, sizeof(path), "%s/%s", f->sub, names[i]);
		if (access(path, F_OK) == 0)
			assert_int_equal(chmod(path, 0644), 0);
	}
	open_store(f);
	submit_wait(f, make_message(NULL, "private"), NULL, &r);
	assert_int_equal(r.err, 0);
	for (i = 0; i < ARRAY_SIZE(names); i++)
		assert_int_equal(file_mode(f->sub, names[i]), 0600);
	umask(old);
}

static void
test_options(void **state)
{
	struct fixture *f = *state;
	struct store_options o = {"sqlite", 0};
	struct store *st = NULL;

	assert_non_null(store_lookup("sqlite"));
	assert_ptr_equal(store_lookup(NULL), store_lookup("sqlite"));
	assert_null(store_lookup("nope"));
	assert_true(store_max_message_bytes("sqlite") >= 64 * 1024 * 1024);
	assert_int_equal(store_max_message_bytes("nope"), -1);
	o.backend = "nope";
	assert_int_equal(store_open(f->sub, &o, f->base, &st),
			 STORE_ENOBACKEND);
	assert_null(st);
	o.backend = "sqlite";
	o.max_message_bytes = store_max_message_bytes("sqlite") + 1;
	assert_int_equal(store_open(f->sub, &o, f->base, &st), -EOVERFLOW);
	o.max_message_bytes = store_max_message_bytes("sqlite");
	assert_int_equal(store_open(f->sub, &o, f->base, &st), 0);
	store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_migrate_v2, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrate_v4, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrate_v5, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_modes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_housekeep, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load_corrupt, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bind_too_big, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_db_zero_bytes, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_db_deleted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_db_is_folder, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_db_foreign, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fresh_folder, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrate_v1, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_options, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_recovery, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_newer_schema, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
