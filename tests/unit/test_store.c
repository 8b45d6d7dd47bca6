/*
 * The store's operations against a real SQLite file: submit and get,
 * idempotency keys and their scopes, updates, load, scan, counts, group
 * commit, refused input, and a close that drains.
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_names),
	    cmocka_unit_test_setup_teardown(test_submit_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_idem_scopes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_update, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
