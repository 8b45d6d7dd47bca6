/*
 * Unit tests of the durable store against a real SQLite file in a
 * temporary folder and a real event_base: every asynchronous result is
 * awaited by running the loop until a flag is set, with a deadline, so a
 * lost callback fails the test instead of hanging it.  The crash test forks
 * a child that submits, waits for durability and _exit()s without closing;
 * the parent then reopens the same folder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/store_int.h"
#include "common/util.h"

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

#define DEADLINE_MS 20000

struct fixture {
	char dir[64];
	char sub[128]; /* the store's folder, created by store_open */
	struct event_base *base;
	struct store *st;
};

static void
noop_cb(evutil_socket_t fd, short what, void *arg)
{
}

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

static int
rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	return remove(path);
}

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/shivneri-store-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	/* A folder that does not exist yet: open must create it. */
	snprintf(f->sub, sizeof(f->sub), "%s/data/q", f->dir);
	f->base = event_base_new();
	if (f->base == NULL)
		return -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	store_close(f->st);
	event_base_free(f->base);
	nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void
open_store(struct fixture *f)
{
	assert_int_equal(store_open(f->sub, NULL, f->base, &f->st), 0);
	assert_non_null(f->st);
}

static struct store_message *
make_message(const char *id, const char *subject)
{
	struct store_message *m = xcalloc(1, sizeof(*m));
	static const char mime[] = "From: a@example.org\r\n\r\nhi\0there\r\n";

	if (id != NULL)
		snprintf(m->id, sizeof(m->id), "%s", id);
	else
		id_new(m->id);
	m->status = MSG_QUEUED;
	m->mail_from = xstrdup("a@example.org");
	m->nrcpt = 2;
	m->rcpt = xcalloc(2, sizeof(char *));
	m->rcpt[0] = xstrdup("b@example.org");
	m->rcpt[1] = xstrdup("\"odd\\\" q\"@example.org");
	m->header_from = xstrdup("A <a@example.org>");
	m->subject = xstrdup(subject);
	m->to_json = xstrdup("[\"b@example.org\"]");
	m->tags_json = xstrdup("[\"t1\"]");
	m->mime_len = sizeof(mime) - 1;
	m->mime = xmalloc(m->mime_len);
	memcpy(m->mime, mime, m->mime_len);
	return m;
}

struct sub_res {
	int done;
	int err;
	char id[32];
	bool dup;
	int64_t rowid;
};

static void
submit_cb(void *arg, int err, const char *id, bool duplicate,
	  struct store_message *m)
{
	struct sub_res *r = arg;

	r->done++;
	r->err = err;
	snprintf(r->id, sizeof(r->id), "%s", id != NULL ? id : "");
	r->dup = duplicate;
	r->rowid = m != NULL ? m->rowid : 0;
	store_message_free(m);
}

/*
 * An idempotency key in the anonymous scope with an all-zero body hash
 * (NULL: no key), as a compound literal living in the caller's block.
 */
#define IDEM(k)                                                                \
	((k) != NULL                                                           \
	     ? &(struct store_idem){.key = (k),                                \
				    .scope = STORE_IDEM_SCOPE_ANONYMOUS}       \
	     : NULL)

static int64_t
submit_wait(struct fixture *f, struct store_message *m,
	    const struct store_idem *idem, struct sub_res *r)
{
	memset(r, 0, sizeof(*r));
	store_submit(f->st, m, idem, submit_cb, r);
	assert_int_equal(r->done, 0); /* never before returning */
	WAIT_FOR(f->base, r->done == 1);
	return r->rowid;
}

/* A deep copy of what store_get reported, which belongs to the store. */
struct get_res {
	int done;
	int err;
	struct store_message *m;
	struct store_attempt att[8];
	size_t natt;
};

static void
get_cb(void *arg, int err, const struct store_message *m,
       const struct store_attempt *att, size_t natt)
{
	struct get_res *r = arg;
	struct store_message *c;
	size_t i;

	r->done++;
	r->err = err;
	if (m == NULL)
		return;
	c = xcalloc(1, sizeof(*c));
	*c = *m;
	c->mail_from = xstrdup_or_null(m->mail_from);
	c->rcpt = xcalloc(m->nrcpt + 1, sizeof(char *));
	for (i = 0; i < m->nrcpt; i++)
		c->rcpt[i] = xstrdup(m->rcpt[i]);
	c->header_from = xstrdup_or_null(m->header_from);
	c->subject = xstrdup_or_null(m->subject);
	c->to_json = xstrdup_or_null(m->to_json);
	c->tags_json = xstrdup_or_null(m->tags_json);
	c->mime = xmalloc(m->mime_len + 1);
	memcpy(c->mime, m->mime, m->mime_len);
	c->tried = xstrdup_or_null(m->tried);
	c->provider = xstrdup_or_null(m->provider);
	c->provider_message_id = xstrdup_or_null(m->provider_message_id);
	c->error = xstrdup_or_null(m->error);
	r->m = c;
	r->natt = natt;
	for (i = 0; i < natt && i < 8; i++) {
		r->att[i] = att[i];
		r->att[i].provider = xstrdup_or_null(att[i].provider);
		r->att[i].detail = xstrdup_or_null(att[i].detail);
	}
}

static void
get_res_cleanup(struct get_res *r)
{
	size_t i;

	store_message_free(r->m);
	for (i = 0; i < r->natt && i < 8; i++)
		store_attempt_cleanup(&r->att[i]);
	memset(r, 0, sizeof(*r));
}

static void
get_wait(struct fixture *f, const char *id, struct get_res *r)
{
	memset(r, 0, sizeof(*r));
	store_get(f->st, id, get_cb, r);
	assert_int_equal(r->done, 0);
	WAIT_FOR(f->base, r->done == 1);
}

struct done_res {
	int done;
	int err;
};

static void
done_cb(void *arg, int err)
{
	struct done_res *r = arg;

	r->done++;
	r->err = err;
}

static int
update_wait(struct fixture *f, const struct store_update *u)
{
	struct done_res r = {0, 0};

	store_update(f->st, u, done_cb, &r);
	assert_int_equal(r.done, 0);
	WAIT_FOR(f->base, r.done == 1);
	return r.err;
}

static void
test_names(void **state)
{
	int i;

	for (i = 0; i < MSG_NSTATUS; i++)
		assert_int_equal(msg_status_parse(msg_status_name(i)), i);
	for (i = OUTCOME_DELIVERED; i <= OUTCOME_LOST; i++)
		assert_int_equal(outcome_parse(outcome_name(i)), i);
	assert_string_equal(msg_status_name(MSG_SENDING), "sending");
	assert_string_equal(outcome_name(OUTCOME_LOST), "lost");
	assert_int_equal(msg_status_parse("bogus"), -1);
	assert_int_equal(outcome_parse(NULL), -1);
	assert_string_equal(msg_status_name(42), "unknown");
	assert_non_null(store_strerror(-ENOENT));
	store_message_free(NULL);
	store_attempt_cleanup(NULL);
}

static void
test_submit_get(void **state)
{
	struct fixture *f = *state;
	struct store_message *m = make_message(NULL, "h\xc3\xa9llo");
	struct sub_res r;
	struct get_res g;
	char id[32];
	size_t len = m->mime_len;

	open_store(f);
	snprintf(id, sizeof(id), "%s", m->id);
	assert_true(submit_wait(f, m, NULL, &r) > 0);
	assert_int_equal(r.err, 0);
	assert_false(r.dup);
	assert_string_equal(r.id, id);
	assert_int_equal(store_pending(f->st), 0);

	get_wait(f, id, &g);
	assert_int_equal(g.err, 0);
	assert_non_null(g.m);
	assert_int_equal(g.m->rowid, r.rowid);
	assert_string_equal(g.m->id, id);
	assert_int_equal(g.m->status, MSG_QUEUED);
	assert_string_equal(g.m->mail_from, "a@example.org");
	assert_int_equal(g.m->nrcpt, 2);
	assert_string_equal(g.m->rcpt[0], "b@example.org");
	assert_string_equal(g.m->rcpt[1], "\"odd\\\" q\"@example.org");
	assert_string_equal(g.m->header_from, "A <a@example.org>");
	assert_string_equal(g.m->subject, "h\xc3\xa9llo");
	assert_string_equal(g.m->to_json, "[\"b@example.org\"]");
	assert_string_equal(g.m->tags_json, "[\"t1\"]");
	assert_int_equal(g.m->mime_len, len);
	assert_memory_equal(g.m->mime,
			    "From: a@example.org\r\n\r\nhi\0there\r\n", len);
	assert_true(g.m->created_ms > 0);
	assert_int_equal(g.m->attempts, 0);
	assert_null(g.m->provider);
	assert_null(g.m->error);
	assert_int_equal(g.natt, 0);
	get_res_cleanup(&g);
}

static void
test_idempotency(void **state)
{
	struct fixture *f = *state;
	struct sub_res r1, r2, r3, r4, r5;
	struct get_res g;
	int64_t counts[MSG_NSTATUS];

	open_store(f);
	submit_wait(f, make_message(NULL, "one"), IDEM("key-1"), &r1);
	assert_int_equal(r1.err, 0);
	assert_false(r1.dup);

	submit_wait(f, make_message(NULL, "two"), IDEM("key-1"), &r2);
	assert_int_equal(r2.err, 0);
	assert_true(r2.dup);
	assert_string_equal(r2.id, r1.id);
	assert_int_equal(r2.rowid, 0);

	submit_wait(f, make_message(NULL, "three"), IDEM("key-2"), &r3);
	assert_int_equal(r3.err, 0);
	assert_false(r3.dup);
	assert_string_not_equal(r3.id, r1.id);

	/* The same new key twice, queued together: one message. */
	memset(&r4, 0, sizeof(r4));
	memset(&r5, 0, sizeof(r5));
	store_submit(f->st, make_message(NULL, "four"), IDEM("key-3"),
		     submit_cb, &r4);
	store_submit(f->st, make_message(NULL, "five"), IDEM("key-3"),
		     submit_cb, &r5);
	WAIT_FOR(f->base, r4.done == 1 && r5.done == 1);
	assert_int_equal(r4.err, 0);
	assert_int_equal(r5.err, 0);
	assert_false(r4.dup);
	assert_true(r5.dup);
	assert_string_equal(r5.id, r4.id);

	assert_int_equal(store_scan(f->st, NULL, NULL, counts), 0);
	assert_int_equal(counts[MSG_QUEUED], 3);

	get_wait(f, r4.id, &g);
	assert_int_equal(g.err, 0);
	assert_string_equal(g.m->subject, "four");
	get_res_cleanup(&g);
}

static void
test_update(void **state)
{
	struct fixture *f = *state;
	struct store_update u;
	struct sub_res r;
	struct get_res g;

	open_store(f);
	submit_wait(f, make_message(NULL, "u"), NULL, &r);
	assert_int_equal(r.err, 0);

	memset(&u, 0, sizeof(u));
	u.rowid = r.rowid;
	u.status = MSG_SENDING;
	u.provider = "p1";
	assert_int_equal(update_wait(f, &u), 0);

	memset(&u, 0, sizeof(u));
	u.rowid = r.rowid;
	u.status = MSG_QUEUED;
	u.attempts = 1;
	u.next_ms = 12345;
	u.tried = "p1";
	u.has_attempt = true;
	u.attempt.n = 1;
	u.attempt.provider = "p1";
	u.attempt.at_ms = 1000;
	u.attempt.outcome = OUTCOME_TRANSIENT;
	u.attempt.detail = "503 busy";
	assert_int_equal(update_wait(f, &u), 0);

	memset(&u, 0, sizeof(u));
	u.rowid = r.rowid;
	u.status = MSG_DELIVERED;
	u.attempts = 2;
	u.provider = "p2";
	u.provider_message_id = "pm-7";
	u.has_attempt = true;
	u.attempt.n = 0; /* the store numbers it */
	u.attempt.provider = "p2";
	u.attempt.outcome = OUTCOME_DELIVERED;
	assert_int_equal(update_wait(f, &u), 0);

	get_wait(f, r.id, &g);
	assert_int_equal(g.err, 0);
	assert_int_equal(g.m->status, MSG_DELIVERED);
	assert_int_equal(g.m->attempts, 2);
	assert_int_equal(g.m->next_ms, 0);
	assert_string_equal(g.m->tried, "p1");
	assert_string_equal(g.m->provider, "p2");
	assert_string_equal(g.m->provider_message_id, "pm-7");
	assert_null(g.m->error);
	assert_int_equal(g.natt, 2);
	assert_int_equal(g.att[0].n, 1);
	assert_string_equal(g.att[0].provider, "p1");
	assert_int_equal(g.att[0].at_ms, 1000);
	assert_int_equal(g.att[0].outcome, OUTCOME_TRANSIENT);
	assert_string_equal(g.att[0].detail, "503 busy");
	assert_int_equal(g.att[1].n, 2);
	assert_int_equal(g.att[1].outcome, OUTCOME_DELIVERED);
	assert_true(g.att[1].at_ms > 1000);
	assert_null(g.att[1].detail);
	get_res_cleanup(&g);

	/* Errors: an unknown rowid, a bad status, a repeated attempt. */
	memset(&u, 0, sizeof(u));
	u.rowid = r.rowid + 1000;
	u.status = MSG_QUEUED;
	assert_int_equal(update_wait(f, &u), -ENOENT);
	u.rowid = r.rowid;
	u.status = 9;
	assert_int_equal(update_wait(f, &u), -EINVAL);
	u.status = MSG_FAILED;
	u.error = "should not stick";
	u.has_attempt = true;
	u.attempt.n = 1;
	u.attempt.outcome = OUTCOME_PERMANENT;
	assert_int_equal(update_wait(f, &u), -EEXIST);
	get_wait(f, r.id, &g);
	assert_int_equal(g.m->status, MSG_DELIVERED); /* rolled back */
	assert_null(g.m->error);
	get_res_cleanup(&g);

	/* No callback is fine too. */
	memset(&u, 0, sizeof(u));
	u.rowid = r.rowid;
	u.status = MSG_DELIVERED;
	u.attempts = 2;
	store_update(f->st, &u, NULL, NULL);
	WAIT_FOR(f->base, store_pending(f->st) == 0);
}

struct load_res {
	int done;
	int err;
	size_t n;
	int64_t rowids[8];
	size_t mime_len;
};

static void
load_cb(void *arg, int err, struct store_message **msgs, size_t n)
{
	struct load_res *r = arg;
	size_t i;

	r->done++;
	r->err = err;
	r->n = n;
	for (i = 0; i < n; i++) {
		if (i < 8)
			r->rowids[i] = msgs[i]->rowid;
		r->mime_len = msgs[i]->mime_len;
		store_message_free(msgs[i]);
	}
	free(msgs);
}

static void
test_load(void **state)
{
	struct fixture *f = *state;
	struct sub_res r1, r2, r3;
	struct store_update u;
	struct load_res l;
	int64_t ids[4];

	open_store(f);
	submit_wait(f, make_message(NULL, "1"), NULL, &r1);
	submit_wait(f, make_message(NULL, "2"), NULL, &r2);
	submit_wait(f, make_message(NULL, "3"), NULL, &r3);
	memset(&u, 0, sizeof(u));
	u.rowid = r2.rowid;
	u.status = MSG_SENDING;
	assert_int_equal(update_wait(f, &u), 0);

	ids[0] = r1.rowid;
	ids[1] = r2.rowid;
	ids[2] = r3.rowid;
	ids[3] = 424242;
	memset(&l, 0, sizeof(l));
	store_load(f->st, ids, 4, load_cb, &l);
	WAIT_FOR(f->base, l.done == 1);
	assert_int_equal(l.err, 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.rowids[0], r1.rowid);
	assert_int_equal(l.rowids[1], r3.rowid);
	assert_true(l.mime_len > 0);

	memset(&l, 0, sizeof(l));
	store_load(f->st, NULL, 0, load_cb, &l);
	WAIT_FOR(f->base, l.done == 1);
	assert_int_equal(l.err, 0);
	assert_int_equal(l.n, 0);
}

struct hk_res {
	int done;
	int err;
	int64_t pruned[MSG_NSTATUS];
	int sub_done_before; /* submits done when housekeeping ended */
	struct sub_res *sub;
};

static void
hk_cb(void *arg, int err, const int64_t pruned[MSG_NSTATUS])
{
	struct hk_res *r = arg;

	r->done++;
	r->err = err;
	memcpy(r->pruned, pruned, sizeof(r->pruned));
	if (r->sub != NULL)
		r->sub_done_before = r->sub->done;
}

static void
housekeep_wait(struct fixture *f, int64_t idem_cutoff, int64_t retention,
	       struct hk_res *r)
{
	memset(r, 0, sizeof(*r));
	store_housekeep(f->st, idem_cutoff, retention, hk_cb, r);
	assert_int_equal(r->done, 0);
	WAIT_FOR(f->base, r->done == 1);
}

/* Waits until the wall clock has moved past t (a few ms at most). */
static void
clock_past(int64_t t)
{
	while (now_ms() <= t)
		;
}

struct scan_res {
	size_t n;
	int64_t rowids[8];
};

static void
scan_each(void *arg, int64_t rowid, int64_t next_ms)
{
	struct scan_res *r = arg;

	if (r->n < 8)
		r->rowids[r->n] = rowid;
	r->n++;
}

static void
test_scan(void **state)
{
	struct fixture *f = *state;
	struct sub_res r[5];
	struct store_update u;
	struct scan_res s;
	int64_t counts[MSG_NSTATUS];
	static const int to[5] = {-1, MSG_DELIVERED, MSG_FAILED, MSG_SENDING,
				  -1};
	char id[32];
	int i;

	open_store(f);
	/* Submitted in reverse id order: the scan must sort by id. */
	for (i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "01SCAN00000000000000000%03d", 9 - i);
		submit_wait(f, make_message(id, "s"), NULL, &r[i]);
		assert_int_equal(r[i].err, 0);
	}
	for (i = 0; i < 5; i++) {
		if (to[i] < 0)
			continue;
		memset(&u, 0, sizeof(u));
		u.rowid = r[i].rowid;
		u.status = to[i];
		assert_int_equal(update_wait(f, &u), 0);
	}
	memset(&s, 0, sizeof(s));
	assert_int_equal(store_scan(f->st, scan_each, &s, counts), 0);
	assert_int_equal(counts[MSG_QUEUED], 2);
	assert_int_equal(counts[MSG_SENDING], 1);
	assert_int_equal(counts[MSG_DELIVERED], 1);
	assert_int_equal(counts[MSG_FAILED], 1);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.rowids[0], r[4].rowid);
	assert_int_equal(s.rowids[1], r[0].rowid);
}

/* The one integer a query on the store's database returns. */
static int64_t
db_int(struct fixture *f, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	char path[192];
	int64_t v;

	snprintf(path, sizeof(path), "%s/shivneri.db", f->sub);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

/*
 * Checks that store_scan's counts (status_counts, kept by the writer) equal
 * both the expected ones and a GROUP BY over the messages themselves.
 */
static void
check_counts(struct fixture *f, int64_t queued, int64_t sending,
	     int64_t delivered, int64_t failed)
{
	int64_t counts[MSG_NSTATUS], truth[MSG_NSTATUS] = {0, 0, 0, 0};
	sqlite3 *db;
	sqlite3_stmt *s;
	char path[192];
	int i, status;

	assert_int_equal(store_scan(f->st, NULL, NULL, counts), 0);
	snprintf(path, sizeof(path), "%s/shivneri.db", f->sub);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT status, count(*) FROM"
					    " messages GROUP BY status",
					    -1, &s, NULL),
			 SQLITE_OK);
	while (sqlite3_step(s) == SQLITE_ROW) {
		status = sqlite3_column_int(s, 0);
		assert_true(status >= 0 && status < MSG_NSTATUS);
		truth[status] = sqlite3_column_int64(s, 1);
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	for (i = 0; i < MSG_NSTATUS; i++)
		assert_int_equal(counts[i], truth[i]);
	assert_int_equal(counts[MSG_QUEUED], queued);
	assert_int_equal(counts[MSG_SENDING], sending);
	assert_int_equal(counts[MSG_DELIVERED], delivered);
	assert_int_equal(counts[MSG_FAILED], failed);
}

/*
 * The counts stay exact through batches that mix new messages, duplicates,
 * failures that roll back and are retried alone, several changes to one
 * message, changes to the same status, unknown rowids and expiry.
 */
static void
test_counts(void **state)
{
	struct fixture *f = *state;
	struct sub_res r[6];
	struct done_res d[7];
	struct store_update u[7];
	struct hk_res h;
	struct store_message *m;
	char id[32];
	int i;

	open_store(f);
	check_counts(f, 0, 0, 0, 0);
	assert_int_equal(db_int(f, "PRAGMA page_size"), 8192);

	/* One batch: 4 new, a duplicate key, a repeated id. */
	memset(r, 0, sizeof(r));
	for (i = 0; i < 4; i++) {
		m = make_message(NULL, "c");
		if (i == 0)
			snprintf(id, sizeof(id), "%s", m->id);
		if (i == 3)
			m->created_ms = now_ms() - 10 * 86400000LL;
		store_submit(f->st, m, IDEM(i == 1 ? "ckey" : NULL), submit_cb,
			     &r[i]);
	}
	store_submit(f->st, make_message(NULL, "c"), IDEM("ckey"), submit_cb,
		     &r[4]);
	store_submit(f->st, make_message(id, "c"), NULL, submit_cb, &r[5]);
	WAIT_FOR(f->base, r[0].done && r[1].done && r[2].done && r[3].done &&
			      r[4].done && r[5].done);
	for (i = 0; i < 4; i++)
		assert_int_equal(r[i].err, 0);
	assert_true(r[4].dup);
	assert_int_equal(r[5].err, -EEXIST);
	check_counts(f, 4, 0, 0, 0);

	/*
	 * One batch of updates: 0 goes queued -> sending -> delivered, 1 to
	 * sending, 2 stays queued, an unknown rowid, and 1 again with a
	 * repeated attempt number, which fails alone and must not count.
	 */
	memset(u, 0, sizeof(u));
	memset(d, 0, sizeof(d));
	u[0].rowid = r[0].rowid;
	u[0].status = MSG_SENDING;
	u[1].rowid = r[0].rowid;
	u[1].status = MSG_DELIVERED;
	u[1].has_attempt = true;
	u[1].attempt.n = 1;
	u[1].attempt.outcome = OUTCOME_DELIVERED;
	u[2].rowid = r[1].rowid;
	u[2].status = MSG_SENDING;
	u[3].rowid = r[2].rowid;
	u[3].status = MSG_QUEUED;
	u[4].rowid = r[3].rowid + 1000;
	u[4].status = MSG_FAILED;
	u[5].rowid = r[0].rowid;
	u[5].status = MSG_FAILED;
	u[5].has_attempt = true;
	u[5].attempt.n = 1;
	u[5].attempt.outcome = OUTCOME_PERMANENT;
	for (i = 0; i < 6; i++)
		store_update(f->st, &u[i], done_cb, &d[i]);
	WAIT_FOR(f->base, d[0].done && d[1].done && d[2].done && d[3].done &&
			      d[4].done && d[5].done);
	assert_int_equal(d[0].err, 0);
	assert_int_equal(d[1].err, 0);
	assert_int_equal(d[2].err, 0);
	assert_int_equal(d[3].err, 0);
	assert_int_equal(d[4].err, -ENOENT);
	assert_int_equal(d[5].err, -EEXIST);
	check_counts(f, 2, 1, 1, 0);

	/* The dispatcher fails the old queued one (3). */
	memset(&u[6], 0, sizeof(u[6]));
	u[6].rowid = r[3].rowid;
	u[6].status = MSG_FAILED;
	u[6].error = "expired";
	assert_int_equal(update_wait(f, &u[6]), 0);
	check_counts(f, 1, 1, 1, 1);

	/* Across a restart, recovery moves the sending one back. */
	store_close(f->st);
	f->st = NULL;
	open_store(f);
	check_counts(f, 2, 0, 1, 1);
	memset(&d[6], 0, sizeof(d[6]));
	u[6] = u[2];
	u[6].status = MSG_DELIVERED;
	store_update(f->st, &u[6], done_cb, &d[6]);
	WAIT_FOR(f->base, d[6].done == 1);
	assert_int_equal(d[6].err, 0);
	check_counts(f, 1, 0, 2, 1);

	/* Retention deletes the finished ones and keeps the counts. */
	clock_past(now_ms());
	housekeep_wait(f, 0, now_ms(), &h);
	assert_int_equal(h.err, 0);
	assert_int_equal(h.pruned[MSG_DELIVERED], 2);
	assert_int_equal(h.pruned[MSG_FAILED], 1);
	assert_int_equal(h.pruned[MSG_QUEUED], 0);
	check_counts(f, 1, 0, 0, 0);
	assert_int_equal(db_int(f, "SELECT count(*) FROM attempts"), 0);
}

#define NGROUP 500

struct group_res {
	int done;
	int failed;
};

static void
group_cb(void *arg, int err, const char *id, bool duplicate,
	 struct store_message *m)
{
	struct group_res *r = arg;

	r->done++;
	if (err != 0 || m == NULL || m->rowid <= 0)
		r->failed++;
	store_message_free(m);
}

/*
 * Idempotency keys are per scope: the same key from two scopes is two
 * messages; a retry in the same scope with the same body hash is a
 * duplicate; with another hash a conflict that stores nothing and fails
 * alone, also inside one batch.
 */
static void
test_idem_scopes(void **state)
{
	struct fixture *f = *state;
	struct store_idem a = {.key = "k", .scope = "scope-a"};
	struct store_idem b = {.key = "k", .scope = "scope-b"};
	struct store_idem a2 = a;
	struct sub_res r1, r2, r3, r4, r[3];
	const char *why = NULL;

	memset(a.body_hash, 1, sizeof(a.body_hash));
	memset(b.body_hash, 2, sizeof(b.body_hash));
	memset(a2.body_hash, 3, sizeof(a2.body_hash));
	open_store(f);
	submit_wait(f, make_message(NULL, "from a"), &a, &r1);
	assert_int_equal(r1.err, 0);
	assert_false(r1.dup);
	/* Another scope's key of the same name: its own message. */
	submit_wait(f, make_message(NULL, "from b"), &b, &r2);
	assert_int_equal(r2.err, 0);
	assert_false(r2.dup);
	assert_string_not_equal(r2.id, r1.id);
	/* A retry in a's scope: the first id. */
	submit_wait(f, make_message(NULL, "a again"), &a, &r3);
	assert_int_equal(r3.err, 0);
	assert_true(r3.dup);
	assert_string_equal(r3.id, r1.id);
	/* a's key with another body: refused, nothing stored. */
	submit_wait(f, make_message(NULL, "a other"), &a2, &r4);
	assert_int_equal(r4.err, STORE_ECONFLICT);
	assert_false(r4.dup);
	assert_int_equal(r4.rowid, 0);
	assert_non_null(strstr(store_strerror(STORE_ECONFLICT), "idempotency"));
	/* A conflict is the client's: the store stays healthy. */
	assert_true(store_healthy(f->st, &why));
	check_counts(f, 2, 0, 0, 0);

	/* One batch: a new key, a conflict on it, a retry of it. */
	a.key = a2.key = "k2";
	memset(r, 0, sizeof(r));
	store_submit(f->st, make_message(NULL, "n"), &a, submit_cb, &r[0]);
	store_submit(f->st, make_message(NULL, "n"), &a2, submit_cb, &r[1]);
	store_submit(f->st, make_message(NULL, "n"), &a, submit_cb, &r[2]);
	WAIT_FOR(f->base, r[0].done && r[1].done && r[2].done);
	assert_int_equal(r[0].err, 0);
	assert_int_equal(r[1].err, STORE_ECONFLICT);
	assert_int_equal(r[2].err, 0);
	assert_true(r[2].dup);
	assert_string_equal(r[2].id, r[0].id);
	check_counts(f, 3, 0, 0, 0);

	/* A key without a scope is the caller's bug, reported as such. */
	b.scope = NULL;
	submit_wait(f, make_message(NULL, "no scope"), &b, &r1);
	assert_int_equal(r1.err, -EINVAL);
	/* The database keeps no key but the client's, and no scope but ours. */
	assert_int_equal(db_int(f, "SELECT count(*) FROM idempotency"
				   " WHERE length(body_hash) = 32"),
			 3);
}

static void
test_group_commit(void **state)
{
	struct fixture *f = *state;
	struct group_res r = {0, 0};
	uint64_t before;
	int i;

	open_store(f);
	before = store__commits(f->st);
	for (i = 0; i < NGROUP; i++)
		store_submit(f->st, make_message(NULL, "g"), NULL, group_cb,
			     &r);
	assert_true(store_pending(f->st) > 0);
	WAIT_FOR(f->base, r.done == NGROUP);
	assert_int_equal(r.failed, 0);
	assert_int_equal(store_pending(f->st), 0);
	/* Queued while a commit was in flight, they shared commits. */
	assert_true(store__commits(f->st) - before < NGROUP / 4);
	assert_true(store__commits(f->st) - before >= 1);
}

static void
test_errors(void **state)
{
	struct fixture *f = *state;
	struct store_message *m;
	struct sub_res r1, r2, r3, r4;
	struct get_res g;
	int64_t counts[MSG_NSTATUS];
	char id[32];

	open_store(f);
	get_wait(f, "01NOSUCHMESSAGE00000000000", &g);
	assert_int_equal(g.err, -ENOENT);
	assert_null(g.m);
	get_wait(f, "this id is far too long to be an id at all", &g);
	assert_int_equal(g.err, -ENOENT);

	/* A message without recipients is refused, asynchronously. */
	m = make_message(NULL, "bad");
	free(m->rcpt[0]);
	free(m->rcpt[1]);
	m->nrcpt = 0;
	submit_wait(f, m, NULL, &r1);
	assert_int_equal(r1.err, -EINVAL);

	/* A repeated id fails only itself, not its batch. */
	memset(&r2, 0, sizeof(r2));
	memset(&r3, 0, sizeof(r3));
	memset(&r4, 0, sizeof(r4));
	m = make_message(NULL, "first");
	snprintf(id, sizeof(id), "%s", m->id);
	store_submit(f->st, m, NULL, submit_cb, &r2);
	store_submit(f->st, make_message(id, "again"), NULL, submit_cb, &r3);
	store_submit(f->st, make_message(NULL, "other"), NULL, submit_cb, &r4);
	WAIT_FOR(f->base, r2.done && r3.done && r4.done);
	assert_int_equal(r2.err, 0);
	assert_int_equal(r3.err, -EEXIST);
	assert_int_equal(r4.err, 0);
	assert_int_equal(store_scan(f->st, NULL, NULL, counts), 0);
	assert_int_equal(counts[MSG_QUEUED], 2);
}

struct close_res {
	struct store *st;
	int done;
	int shutdown;
};

static void
close_cb(void *arg, int err, const char *id, bool duplicate,
	 struct store_message *m)
{
	struct close_res *r = arg;

	store_message_free(m);
	if (err == -ESHUTDOWN) {
		r->shutdown++;
		return;
	}
	/* The first completion tries to queue more while closing. */
	if (r->done++ == 0)
		store_submit(r->st, make_message(NULL, "late"), NULL, close_cb,
			     r);
}

static void
test_close_drains(void **state)
{
	struct fixture *f = *state;
	struct close_res r = {NULL, 0, 0};
	int i;

	open_store(f);
	r.st = f->st;
	for (i = 0; i < 50; i++)
		store_submit(f->st, make_message(NULL, "c"), NULL, close_cb,
			     &r);
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(r.done, 50);
	assert_int_equal(r.shutdown, 1);

	/* Everything acknowledged is there after reopening. */
	int64_t counts[MSG_NSTATUS];
	open_store(f);
	assert_int_equal(store_scan(f->st, NULL, NULL, counts), 0);
	assert_int_equal(counts[MSG_QUEUED], 50);
}

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
 * queued for ever): the load fails it on disk and hands it back failed.
 */
static void
test_load_corrupt(void **state)
{
	struct fixture *f = *state;
	struct sub_res r[4];
	struct corrupt_res c;
	char *sql;
	int64_t ids[4];
	int i;

	open_store(f);
	for (i = 0; i < 4; i++) {
		submit_wait(f, make_message(NULL, "c"), NULL, &r[i]);
		ids[i] = r[i].rowid;
	}
	store_close(f->st);
	f->st = NULL;
	sql =
	    xasprintf("UPDATE messages SET rcpt = 'not json' WHERE rowid = "
		      "%lld; UPDATE messages SET next_ms = 'soon' WHERE "
		      "rowid = %lld; UPDATE messages SET mime = NULL WHERE "
		      "rowid = %lld;",
		      (long long)ids[1], (long long)ids[2], (long long)ids[3]);
	db_exec(f, sql);
	free(sql);
	open_store(f);

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
		assert_non_null(strstr(c.m[i]->error, "corrupt record: "));
	}
	assert_string_equal(c.m[1]->error, "corrupt record: bad rcpt");
	assert_string_equal(c.m[2]->error, "corrupt record: bad next_ms");
	assert_string_equal(c.m[3]->error, "corrupt record: bad mime");
	corrupt_res_cleanup(&c);
	/* Failed on disk too, with the counts following. */
	check_counts(f, 1, 0, 0, 3);
	assert_int_equal(db_int(f, "SELECT count(*) FROM messages WHERE"
				   " status = 3 AND error LIKE 'corrupt%'"),
			 3);

	/* A second load finds only the good one. */
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
	db_exec(f, "DROP INDEX messages_done; DROP TABLE meta;"
		   " PRAGMA user_version = 1;");
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
	    "DROP TABLE idempotency;"
	    "CREATE TABLE idempotency (key TEXT PRIMARY KEY,"
	    " message_id TEXT NOT NULL, created_ms INTEGER NOT NULL);"
	    "CREATE INDEX idempotency_created ON idempotency(created_ms);"
	    "INSERT INTO idempotency VALUES ('old', 'OLD-ID', %lld);"
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
	    cmocka_unit_test(test_names),
	    cmocka_unit_test_setup_teardown(test_submit_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_idem_scopes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrate_v2, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_modes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_update, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load, setup, teardown),
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
	    cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_crash_recovery, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_newer_schema, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
