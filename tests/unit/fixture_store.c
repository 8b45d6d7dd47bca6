/*
 * The store tests' shared fixture: see fixture_store.h.
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

void
noop_cb(evutil_socket_t fd, short what, void *arg)
{
}

static int
rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	return remove(path);
}

int
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

int
teardown(void **state)
{
	struct fixture *f = *state;

	store_close(f->st);
	event_base_free(f->base);
	nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

void
open_store(struct fixture *f)
{
	assert_int_equal(store_open(f->sub, NULL, f->base, &f->st), 0);
	assert_non_null(f->st);
}

struct store_message *
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

void
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

int64_t
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
	/* A message without its body (a corrupt record) has none. */
	c->mime = NULL;
	if (m->mime != NULL) {
		c->mime = xmalloc(m->mime_len + 1);
		memcpy(c->mime, m->mime, m->mime_len);
	}
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

void
get_res_cleanup(struct get_res *r)
{
	size_t i;

	store_message_free(r->m);
	for (i = 0; i < r->natt && i < 8; i++)
		store_attempt_cleanup(&r->att[i]);
	memset(r, 0, sizeof(*r));
}

void
get_wait(struct fixture *f, const char *id, struct get_res *r)
{
	memset(r, 0, sizeof(*r));
	store_get(f->st, id, get_cb, r);
	assert_int_equal(r->done, 0);
	WAIT_FOR(f->base, r->done == 1);
}

void
done_cb(void *arg, int err)
{
	struct done_res *r = arg;

	r->done++;
	r->err = err;
}

int
update_wait(struct fixture *f, const struct store_update *u)
{
	struct done_res r = {0, 0};

	store_update(f->st, u, done_cb, &r);
	assert_int_equal(r.done, 0);
	WAIT_FOR(f->base, r.done == 1);
	return r.err;
}

void
hk_cb(void *arg, int err, const int64_t pruned[MSG_NSTATUS])
{
	struct hk_res *r = arg;

	r->done++;
	r->err = err;
	memcpy(r->pruned, pruned, sizeof(r->pruned));
	if (r->sub != NULL)
		r->sub_done_before = r->sub->done;
}

void
housekeep_wait(struct fixture *f, int64_t idem_cutoff, int64_t retention,
	       struct hk_res *r)
{
	memset(r, 0, sizeof(*r));
	store_housekeep(f->st, idem_cutoff, retention, hk_cb, r);
	assert_int_equal(r->done, 0);
	WAIT_FOR(f->base, r->done == 1);
}

/* Waits until the wall clock has moved past t (a few ms at most). */
void
clock_past(int64_t t)
{
	while (now_ms() <= t)
		;
}

/* The one integer a query on the store's database returns. */
int64_t
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

void
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

void
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
