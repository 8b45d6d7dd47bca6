/*
 * The queue's store operations against a real SQLite file: store_list
 * (order, paging with no message twice or missed while others arrive,
 * filters, the cap on rows examined, bad cursors, a query plan that walks
 * an index) and store_retry (failed only, the fresh budget, counts, two
 * retries of one message in one batch, budget_ms seen by store_load).
 * The fixture is fixture_store.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/store_int.h"
#include "store/store_sqlite.h"
#include "common/buf.h"
#include "common/util.h"

#include "fixture_store.h"

#include <errno.h>
#include <event2/event.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXN 64

struct list_res {
	int done;
	int err;
	size_t n;
	char ids[MAXN][32];
	char provider[MAXN][16];
	int status[MAXN];
	int attempts[MAXN];
	bool has_error[MAXN];
	size_t subject_len[MAXN];
	size_t to_count[MAXN];
	bool has_next;
	char next[STORE_CURSOR_MAX + 1];
};

static void
list_cb(void *arg, int err, struct store_message *const *msgs, size_t n,
	const char *next)
{
	struct list_res *r = arg;
	json_t *to;
	size_t i;

	r->done++;
	r->err = err;
	r->n = n;
	for (i = 0; i < n && i < MAXN; i++) {
		snprintf(r->ids[i], sizeof(r->ids[i]), "%s", msgs[i]->id);
		snprintf(r->provider[i], sizeof(r->provider[i]), "%s",
			 msgs[i]->provider ? msgs[i]->provider : "");
		r->status[i] = msgs[i]->status;
		r->attempts[i] = msgs[i]->attempts;
		r->has_error[i] = msgs[i]->error != NULL;
		r->subject_len[i] = strlen(msgs[i]->subject);
		to = json_loads(msgs[i]->to_json, 0, NULL);
		assert_true(json_is_array(to));
		r->to_count[i] = json_array_size(to);
		json_decref(to);
		/* A listing carries no body. */
		assert_null(msgs[i]->mime);
		assert_non_null(msgs[i]->subject);
	}
	r->has_next = next != NULL;
	snprintf(r->next, sizeof(r->next), "%s", next ? next : "");
}

static void
list_wait(struct fixture *f, const struct store_list_query *q,
	  struct list_res *r)
{
	memset(r, 0, sizeof(*r));
	store_list(f->st, q, list_cb, r);
	assert_int_equal(r->done, 0);
	WAIT_FOR(f->base, r->done == 1);
}

struct retry_res {
	int done;
	int err;
	int64_t rowid;
};

static void
retry_cb(void *arg, int err, int64_t rowid)
{
	struct retry_res *r = arg;

	r->done++;
	r->err = err;
	r->rowid = rowid;
}

static int
retry_wait(struct fixture *f, const char *id, int64_t *rowid)
{
	struct retry_res r = {0, 0, 0};

	store_retry(f->st, id, retry_cb, &r);
	assert_int_equal(r.done, 0);
	WAIT_FOR(f->base, r.done == 1);
	if (rowid != NULL)
		*rowid = r.rowid;
	return r.err;
}

/* Moves a message to status, with provider and an attempt when given. */
static void
set_status(struct fixture *f, int64_t rowid, int status, const char *provider)
{
	struct store_update u;

	memset(&u, 0, sizeof(u));
	u.rowid = rowid;
	u.status = status;
	u.attempts = status == MSG_QUEUED ? 0 : 1;
	u.round = 1;
	u.tried = provider;
	u.provider = provider;
	u.error = status == MSG_FAILED ? "refused" : NULL;
	if (provider != NULL) {
		u.has_attempt = true;
		u.attempt.provider = (char *)(uintptr_t)provider;
		u.attempt.outcome = status == MSG_DELIVERED ? OUTCOME_DELIVERED
							    : OUTCOME_PERMANENT;
	}
	assert_int_equal(update_wait(f, &u), 0);
}

/* Every page of q: the ids in order (at most MAXN), the pages. */
static size_t
walk(struct fixture *f, struct store_list_query q, char out[][32], int *pages)
{
	struct list_res r;
	char before[STORE_CURSOR_MAX + 1];
	size_t n = 0, i;

	*pages = 0;
	for (;;) {
		list_wait(f, &q, &r);
		assert_int_equal(r.err, 0);
		for (i = 0; i < r.n; i++) {
			assert_true(n < MAXN);
			snprintf(out[n++], 32, "%s", r.ids[i]);
		}
		(*pages)++;
		assert_true(*pages < 100);
		if (!r.has_next)
			return n;
		snprintf(before, sizeof(before), "%s", r.next);
		q.before = before;
	}
}

static void
assert_unique(char ids[][32], size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			assert_string_not_equal(ids[i], ids[j]);
}

static size_t
count_in(char ids[][32], size_t n, const char *id)
{
	size_t i, c = 0;

	for (i = 0; i < n; i++)
		c += strcmp(ids[i], id) == 0;
	return c;
}

static void
test_list_order_and_paging(void **state)
{
	struct fixture *f = *state;
	struct store_list_query q = {.status = -1, .limit = 3};
	struct sub_res r;
	struct list_res lr;
	char ids[10][32], got[MAXN][32], before[STORE_CURSOR_MAX + 1];
	size_t i, n = 0;
	int pages;

	open_store(f);
	for (i = 0; i < 10; i++) {
		submit_wait(f, make_message(NULL, "m"), NULL, &r);
		snprintf(ids[i], sizeof(ids[i]), "%s", r.id);
	}
	/* Page by page, with a new message arriving after each page. */
	list_wait(f, &q, &lr);
	for (pages = 0;; pages++) {
		assert_int_equal(lr.err, 0);
		assert_true(lr.n <= 3);
		for (i = 0; i < lr.n; i++)
			snprintf(got[n++], 32, "%s", lr.ids[i]);
		submit_wait(f, make_message(NULL, "late"), NULL, &r);
		if (!lr.has_next)
			break;
		snprintf(before, sizeof(before), "%s", lr.next);
		q.before = before;
		list_wait(f, &q, &lr);
	}
	/*
	 * Each of the first ten once, newest first (ids order by their
	 * millisecond, so only a late one made in the cursor's millisecond
	 * could show among them).
	 */
	assert_unique(got, n);
	for (i = 0; i < 10; i++)
		assert_int_equal(count_in(got, n, ids[i]), 1);
	for (i = 1; i < n; i++)
		assert_true(strcmp(got[i - 1], got[i]) > 0);
	assert_true(n >= 10 && n <= 14);
	assert_true(pages >= 3);

	q.before = NULL;
	q.status = MSG_QUEUED;
	q.limit = STORE_LIST_MAX;
	n = walk(f, q, got, &pages);
	assert_int_equal(n, 14);
	assert_int_equal(pages, 1);
	assert_unique(got, n);
	q.status = MSG_SENDING;
	assert_int_equal(walk(f, q, got, &pages), 0);
}

static void
test_list_done_filters(void **state)
{
	struct fixture *f = *state;
	struct store_list_query q = {.status = MSG_DELIVERED, .limit = 2};
	struct sub_res r;
	struct list_res lr;
	int64_t rowid[12];
	char got[MAXN][32];
	size_t i, n;
	int pages;

	open_store(f);
	for (i = 0; i < 12; i++) {
		rowid[i] = submit_wait(f, make_message(NULL, "m"), NULL, &r);
		/* Same millisecond or not, rowid breaks the ties. */
		if (i < 8)
			set_status(f, rowid[i], MSG_DELIVERED,
				   i % 2 ? "a" : "b");
		else if (i < 10)
			set_status(f, rowid[i], MSG_FAILED, "a");
	}
	n = walk(f, q, got, &pages);
	assert_int_equal(n, 8);
	assert_unique(got, n);
	q.provider = "a";
	n = walk(f, q, got, &pages);
	assert_int_equal(n, 4);
	assert_unique(got, n);
	q.status = MSG_FAILED;
	q.provider = NULL;
	list_wait(f, &q, &lr);
	assert_int_equal(lr.n, 2);
	assert_false(lr.has_next);
	assert_int_equal(lr.status[0], MSG_FAILED);
	assert_true(lr.has_error[0]);
	assert_string_equal(lr.provider[0], "a");
	/* Finished last, listed first. */
	q.status = MSG_DELIVERED;
	q.limit = 1;
	list_wait(f, &q, &lr);
	assert_int_equal(lr.n, 1);
	assert_true(lr.has_next);
	q.status = -1;
	q.provider = "b";
	q.limit = 50;
	assert_int_equal(walk(f, q, got, &pages), 4);
	q.provider = "nobody";
	assert_int_equal(walk(f, q, got, &pages), 0);
}

/* A rare provider: pages stop at scan_max rows, and next goes on. */
static void
test_list_scan_cap(void **state)
{
	struct fixture *f = *state;
	struct store_list_query q = {.status = MSG_DELIVERED,
				     .limit = 50,
				     .provider = "rare",
				     .scan_max = 4};
	struct sub_res r;
	struct list_res lr;
	char got[MAXN][32];
	size_t i;
	int pages;

	open_store(f);
	for (i = 0; i < 20; i++)
		set_status(f, submit_wait(f, make_message(NULL, "m"), NULL, &r),
			   MSG_DELIVERED,
			   i == 3 || i == 15 ? "rare" : "common");
	list_wait(f, &q, &lr);
	assert_int_equal(lr.err, 0);
	assert_int_equal(lr.n, 0); /* rows 19..16: none is rare */
	assert_true(lr.has_next);
	assert_int_equal(walk(f, q, got, &pages), 2);
	/*
	 * 20 rows, 4 a page: the fifth page stops at the cap on the last
	 * row, so a sixth, empty one proves the end.
	 */
	assert_int_equal(pages, 6);
	q.status = -1;
	assert_int_equal(walk(f, q, got, &pages), 2);
	/*
	 * Delivered and failed share an index: a rare status is bounded the
	 * same way (16 rows finished since the two failed ones).
	 */
	set_status(f, 4, MSG_FAILED, "common");
	set_status(f, 2, MSG_FAILED, "common");
	for (i = 5; i <= 20; i++)
		set_status(f, (int64_t)i, MSG_DELIVERED, "common");
	q.status = MSG_FAILED;
	q.provider = NULL;
	list_wait(f, &q, &lr);
	assert_int_equal(lr.err, 0);
	assert_true(lr.has_next);
	assert_int_equal(lr.n, 0);
	assert_int_equal(walk(f, q, got, &pages), 2);
	assert_true(pages >= 2);
}

static void
test_list_refused(void **state)
{
	struct fixture *f = *state;
	struct store_list_query q = {.status = MSG_DELIVERED, .limit = 5};
	struct sub_res r;
	struct list_res lr;
	char longp[STORE_LIST_PROVIDER_MAX + 2];
	static const char *const bad_done[] = {"01ARZ3NDEKTSV4RRFFQ69G5FAV",
					       "12",
					       "12.",
					       ".3",
					       "-1.2",
					       "1.-2",
					       "1.2.3",
					       "+1.2",
					       "1234567890123456789.1",
					       "a.b"};
	size_t i;

	open_store(f);
	submit_wait(f, make_message(NULL, "m"), NULL, &r);
	for (i = 0; i < ARRAY_SIZE(bad_done); i++) {
		q.before = bad_done[i];
		list_wait(f, &q, &lr);
		assert_int_equal(lr.err, -EINVAL);
		assert_int_equal(lr.n, 0);
	}
	q.status = MSG_QUEUED;
	q.before = "12.34";
	list_wait(f, &q, &lr);
	assert_int_equal(lr.err, -EINVAL);
	q.before = "";
	list_wait(f, &q, &lr);
	assert_int_equal(lr.err, -EINVAL);
	q.before = NULL;
	q.limit = 0;
	list_wait(f, &q, &lr);
	assert_int_equal(lr.err, -EINVAL);
	q.limit = STORE_LIST_MAX + 1;
	list_wait(f, &q, &lr);
	assert_int_equal(lr.err, -EINVAL);
	q.limit = 5;
	q.status = MSG_NSTATUS;
	list_wait(f, &q, &lr);
	assert_int_equal(lr.err, -EINVAL);
	q.status = -1;
	memset(longp, 'p', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	q.provider = longp;
	list_wait(f, &q, &lr);
	assert_int_equal(lr.err, -EINVAL);
	/* The store is still fine. */
	q.provider = NULL;
	list_wait(f, &q, &lr);
	assert_int_equal(lr.err, 0);
	assert_int_equal(lr.n, 1);
}

/* A page's texts are cut: at a character's start, To: to a few. */
static void
test_list_bounded(void **state)
{
	struct fixture *f = *state;
	struct store_list_query q = {.status = -1, .limit = 5};
	struct store_message *m;
	struct list_res lr;
	struct sub_res r;
	struct buf b;
	char id[2][ID_LEN + 1], t[ID_LEN + 1];
	int i;

	/* Ids made in the same ms sort at random: order them here. */
	id_new(id[0]);
	id_new(id[1]);
	if (strcmp(id[0], id[1]) > 0) {
		memcpy(t, id[0], sizeof(t));
		memcpy(id[0], id[1], sizeof(t));
		memcpy(id[1], t, sizeof(t));
	}
	open_store(f);
	m = make_message(id[0], "short");
	free(m->subject);
	buf_init(&b, 1 << 20);
	for (i = 0; i < 1500; i++)
		assert_int_equal(buf_appends(&b, "\xc3\xa9"), 0);
	m->subject = xstrndup(b.p, b.len);
	buf_reset(&b);
	assert_int_equal(buf_appends(&b, "["), 0);
	for (i = 0; i < 50; i++)
		assert_int_equal(buf_appendf(&b,
					     "%s\"someone%02d@example.org\"",
					     i ? "," : "", i),
				 0);
	assert_int_equal(buf_appends(&b, "]"), 0);
	free(m->to_json);
	m->to_json = xstrndup(b.p, b.len);
	buf_cleanup(&b);
	submit_wait(f, m, NULL, &r);
	submit_wait(f, make_message(id[1], "plain"), NULL, &r);
	list_wait(f, &q, &lr);
	assert_int_equal(lr.n, 2);
	assert_int_equal(lr.subject_len[0], 5);
	assert_int_equal(lr.to_count[0], 1);
	/* 998 bytes of two-byte characters: 499 of them, none cut. */
	assert_int_equal(lr.subject_len[1], 998);
	assert_int_equal(lr.to_count[1], STORE_LIST_TO_MAX);
}

/* The plan of every kind of page walks an index and sorts nothing. */
static void
test_list_plans(void **state)
{
	struct fixture *f = *state;
	struct store_list_query q = {.limit = 10};
	char sql[512], plan[1024], path[192];
	sqlite3_stmt *s;
	sqlite3 *db;
	size_t used;
	int st, cur;

	open_store(f);
	snprintf(path, sizeof(path), "%s/shivneri.db", f->sub);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	for (st = -1; st < MSG_NSTATUS; st++)
		for (cur = 0; cur < 2; cur++) {
			q.status = st;
			q.before = cur ? "x" : NULL;
			store__list_sql(&q, sql, sizeof(sql));
			snprintf(plan, sizeof(plan), "EXPLAIN QUERY PLAN %s",
				 sql);
			assert_int_equal(
			    sqlite3_prepare_v2(db, plan, -1, &s, NULL),
			    SQLITE_OK);
			used = 0;
			plan[0] = '\0';
			while (sqlite3_step(s) == SQLITE_ROW)
				used += (size_t)snprintf(
				    plan + used, sizeof(plan) - used, "%s;",
				    sqlite3_column_text(s, 3));
			sqlite3_finalize(s);
			assert_non_null(strstr(plan, "INDEX"));
			assert_null(strstr(plan, "TEMP B-TREE"));
			if (st == MSG_QUEUED || st == MSG_SENDING)
				assert_non_null(
				    strstr(plan, "messages_active"));
			if (st == MSG_DELIVERED || st == MSG_FAILED)
				assert_non_null(strstr(plan, "messages_done"));
		}
	sqlite3_close(db);
}

struct budget_res {
	int done;
	int64_t budget_ms;
};

static void
budget_cb(void *arg, int err, struct store_message **msgs, size_t n)
{
	struct budget_res *r = arg;
	size_t i;

	r->done++;
	assert_int_equal(err, 0);
	assert_int_equal(n, 1);
	for (i = 0; i < n; i++) {
		r->budget_ms = msgs[i]->budget_ms;
		store_message_free(msgs[i]);
	}
	free(msgs);
}

static void
test_retry(void **state)
{
	struct fixture *f = *state;
	struct sub_res r1, r2;
	struct retry_res a = {0, 0, 0}, b = {0, 0, 0};
	struct budget_res l = {0, 0};
	struct get_res g;
	int64_t rowid, before;

	open_store(f);
	rowid = submit_wait(f, make_message(NULL, "1"), NULL, &r1);
	submit_wait(f, make_message(NULL, "2"), NULL, &r2);
	assert_int_equal(retry_wait(f, r1.id, NULL), STORE_ENOTFAILED);
	assert_int_equal(retry_wait(f, "01ARZ3NDEKTSV4RRFFQ69G5FAV", NULL),
			 -ENOENT);
	assert_int_equal(retry_wait(f, "", NULL), -ENOENT);
	set_status(f, rowid, MSG_FAILED, "a");
	set_status(f, r2.rowid, MSG_DELIVERED, "a");
	assert_int_equal(retry_wait(f, r2.id, NULL), STORE_ENOTFAILED);
	check_counts(f, 0, 0, 1, 1);

	before = now_ms();
	/* Two at once, in one batch: the first wins. */
	store_retry(f->st, r1.id, retry_cb, &a);
	store_retry(f->st, r1.id, retry_cb, &b);
	WAIT_FOR(f->base, a.done == 1 && b.done == 1);
	assert_int_equal(a.err, 0);
	assert_int_equal(a.rowid, rowid);
	assert_int_equal(b.err, STORE_ENOTFAILED);
	check_counts(f, 1, 0, 1, 0);

	get_wait(f, r1.id, &g);
	assert_int_equal(g.err, 0);
	assert_int_equal(g.m->status, MSG_QUEUED);
	assert_int_equal(g.m->attempts, 0);
	assert_int_equal(g.m->round, 0);
	assert_string_equal(g.m->tried, "");
	assert_null(g.m->error);
	assert_int_equal(g.m->next_ms, 0);
	assert_true(g.m->budget_ms >= before);
	assert_true(g.m->updated_ms >= before);
	/* Its attempts stay on record. */
	assert_int_equal(g.natt, 1);
	get_res_cleanup(&g);
	assert_int_equal(
	    db_int(f, "SELECT count(*) FROM messages WHERE budget_ms IS NULL"),
	    1);
	/* The dispatcher loads it with its budget. */
	store_load(f->st, &rowid, 1, budget_cb, &l);
	WAIT_FOR(f->base, l.done == 1);
	assert_true(l.budget_ms >= before);
	/* Queued again, it is not retried again. */
	assert_int_equal(retry_wait(f, r1.id, NULL), STORE_ENOTFAILED);
	check_counts(f, 1, 0, 1, 0);
}

struct oldest_res {
	int done;
	int err;
	int64_t created_ms;
};

static void
oldest_cb(void *arg, int err, int64_t created_ms)
{
	struct oldest_res *r = arg;

	r->done++;
	r->err = err;
	r->created_ms = created_ms;
}

static int64_t
oldest_wait(struct fixture *f)
{
	struct oldest_res r = {0, 0, 0};

	store_oldest_queued(f->st, oldest_cb, &r);
	assert_int_equal(r.done, 0);
	WAIT_FOR(f->base, r.done == 1);
	assert_int_equal(r.err, 0);
	return r.created_ms;
}

/* The oldest queued message's acceptance; sending or finished ones not. */
static void
test_oldest_queued(void **state)
{
	struct fixture *f = *state;
	struct store_message *m;
	struct sub_res r1, r2, r3;

	open_store(f);
	assert_int_equal(oldest_wait(f), 0);
	m = make_message(NULL, "1");
	m->created_ms = 1000;
	submit_wait(f, m, NULL, &r1);
	clock_past(now_ms() + 2);
	m = make_message(NULL, "2");
	m->created_ms = 2000;
	submit_wait(f, m, NULL, &r2);
	clock_past(now_ms() + 2);
	m = make_message(NULL, "3");
	m->created_ms = 3000;
	submit_wait(f, m, NULL, &r3);
	assert_int_equal(oldest_wait(f), 1000);
	set_status(f, r1.rowid, MSG_SENDING, "a");
	assert_int_equal(oldest_wait(f), 2000);
	set_status(f, r2.rowid, MSG_DELIVERED, "a");
	assert_int_equal(oldest_wait(f), 3000);
	set_status(f, r3.rowid, MSG_FAILED, "a");
	assert_int_equal(oldest_wait(f), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_list_order_and_paging, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_list_done_filters, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_list_scan_cap, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_list_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_plans, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_list_bounded, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_retry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oldest_queued, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
