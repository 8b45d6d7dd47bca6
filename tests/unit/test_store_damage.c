/*
 * The store's start-up against a damaged messages table: one leaf page of
 * the table overwritten while the store was closed (a bad sector).  The
 * open and the start-up scan go on past it: every readable queued row is
 * handed out, the unreadable ones are counted (store_unreadable_rows) and
 * left out of the counts, "sending" rows on the page do not stop
 * recovery, and the table is rebuilt without the page, so that writes of
 * the rows next to it (which make SQLite rebalance the pages around them)
 * succeed.  While running, an operation that reads a damaged page fails
 * alone (an update with STORE_EDAMAGED).  A damaged status_counts is counted
 * again.  A damaged index is built again from its table at open (found
 * while running, it is named, counted and rebuilt by the next start),
 * unless its table is damaged too.  A damaged schema page still refuses
 * the open.  The page is found with
 * SQLite's dbstat table.  The fixture is fixture_store.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "store/store_int.h"
#include "common/log.h"
#include "common/util.h"

#include "fixture_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#define NMSG 400

/*
 * Submits NMSG messages in one burst and waits for them.  Their ids sort
 * as their rowids do (ULIDs made within one millisecond need not), so
 * the oldest queued message is on the table's first leaf.
 */
static void
fill(struct fixture *f)
{
	struct group_res g = {0, 0};
	char id[32];
	int i;

	for (i = 0; i < NMSG; i++) {
		snprintf(id, sizeof(id), "01DAMAGETEST%014d", i);
		/* The id as its idempotency key too. */
		store_submit(f->st, make_message(id, "a subject"), IDEM(id),
			     group_cb, &g);
	}
	WAIT_FOR(f->base, g.done == NMSG);
	assert_int_equal(g.failed, 0);
}

/*
 * Overwrites a leaf page of table (the store closed): the first in the
 * b-tree's order (dbstat's path: the lowest rowids) when first, else the
 * one in the middle; returns how many rows the page held.
 */
static int
damage_leaf_at(struct fixture *f, const char *table, bool first)
{
	char path[192], page[8192];
	sqlite3 *db;
	sqlite3_stmt *s;
	int64_t pageno = 0, size;
	int n = 0, ncell = 0;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/shivneri.db", f->sub);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT count(*) FROM dbstat WHERE"
					    " name = ?1 AND pagetype = 'leaf'",
					    -1, &s, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	n = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	assert_true(n >= (first ? 2 : 3));
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT pageno, ncell FROM dbstat"
					    " WHERE name = ?1 AND pagetype ="
					    " 'leaf' ORDER BY path LIMIT 1"
					    " OFFSET ?2",
					    -1, &s, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, first ? 0 : n / 2);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	pageno = sqlite3_column_int64(s, 0);
	ncell = sqlite3_column_int(s, 1);
	sqlite3_finalize(s);
	assert_int_equal(
	    sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &s, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	size = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	assert_int_equal(size, (int64_t)sizeof(page));
	assert_true(pageno > 1 && ncell > 0);
	memset(page, 0x5a, sizeof(page));
	fp = fopen(path, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, (long)((pageno - 1) * size), SEEK_SET), 0);
	assert_int_equal(fwrite(page, 1, sizeof(page), fp), sizeof(page));
	assert_int_equal(fclose(fp), 0);
	return ncell;
}

/* Overwrites the root page of table (the store closed). */
static void
damage_root(struct fixture *f, const char *table)
{
	char path[192], page[8192], sql[128];
	int64_t pageno;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/shivneri.db", f->sub);
	snprintf(sql, sizeof(sql),
		 "SELECT rootpage FROM sqlite_schema WHERE name = '%s'", table);
	pageno = db_int(f, sql);
	assert_true(pageno > 1);
	memset(page, 0x5a, sizeof(page));
	fp = fopen(path, "r+b");
	assert_non_null(fp);
	assert_int_equal(
	    fseek(fp, (long)((pageno - 1) * (int64_t)sizeof(page)), SEEK_SET),
	    0);
	assert_int_equal(fwrite(page, 1, sizeof(page), fp), sizeof(page));
	assert_int_equal(fclose(fp), 0);
}

static int
damage_leaf(struct fixture *f, const char *table)
{
	return damage_leaf_at(f, table, false);
}

struct scanned {
	int64_t rowids[NMSG];
	size_t n;
};

static void
scan_each(void *arg, int64_t rowid, int64_t next_ms)
{
	struct scanned *sc = arg;

	(void)next_ms;
	assert_true(sc->n < NMSG);
	sc->rowids[sc->n++] = rowid;
}

static void
close_store(struct fixture *f)
{
	store_close(f->st);
	f->st = NULL;
}

/*
 * Scans, then writes every handed-out row (delivered): all succeed, the
 * store stays healthy; a second start finds no damage and the counts.
 */
static void
scan_and_deliver(struct fixture *f, int lost)
{
	static struct scanned sc;
	int64_t counts[MSG_NSTATUS];
	const char *why = NULL;
	size_t i;

	memset(&sc, 0, sizeof(sc));
	open_store(f);
	assert_int_equal(store_scan(f->st, scan_each, &sc, counts), 0);
	assert_int_equal(sc.n, NMSG - lost);
	assert_int_equal(counts[MSG_QUEUED], NMSG - lost);
	assert_int_equal(counts[MSG_SENDING], 0);
	assert_int_equal(store_unreadable_rows(f->st), (uint64_t)lost);
	/* The lost messages' keys are forgotten: a retry stores anew. */
	assert_int_equal(db_int(f, "SELECT count(*) FROM idempotency"),
			 NMSG - lost);
	for (i = 0; i < sc.n; i++)
		assert_int_equal(
		    update_wait(
			f,
			&(struct store_update){
			    .rowid = sc.rowids[i],
			    .status = MSG_DELIVERED,
			    .provider = "a provider name",
			    .provider_message_id = "a long provider message id",
			}),
		    0);
	assert_true(store_healthy(f->st, &why));
	close_store(f);
	open_store(f);
	memset(&sc, 0, sizeof(sc));
	assert_int_equal(store_scan(f->st, scan_each, &sc, counts), 0);
	assert_int_equal(sc.n, 0);
	assert_int_equal(store_unreadable_rows(f->st), 0);
	check_counts(f, 0, 0, NMSG - lost, 0);
}

/*
 * Queued rows on the damaged page: the scan hands out the others, counts
 * those, and the rows around the page can be written.  Before, the scan
 * failed on the page (and serve exited).
 */
static void
test_scan_past_damaged_page(void **state)
{
	struct fixture *f = *state;
	int lost;

	open_store(f);
	fill(f);
	close_store(f);
	lost = damage_leaf(f, "messages");
	scan_and_deliver(f, lost);
}

/*
 * "sending" rows on the damaged page (the server died while providers
 * had them): recovery moves the others back to queued and leaves those.
 * Before, recovery failed and with it the open.
 */
static void
test_recover_past_damaged_page(void **state)
{
	struct fixture *f = *state;
	struct done_res d = {0, 0};
	int lost;

	open_store(f);
	fill(f);
	store__exec(f->st,
		    "UPDATE messages SET status = 1, provider = 'p';"
		    "UPDATE status_counts SET n = CASE status WHEN 1 THEN "
		    "(SELECT count(*) FROM messages) ELSE 0 END",
		    done_cb, &d);
	WAIT_FOR(f->base, d.done);
	assert_int_equal(d.err, 0);
	close_store(f);
	lost = damage_leaf(f, "messages");
	scan_and_deliver(f, lost);
	assert_int_equal(db_int(f, "SELECT count(*) FROM attempts"),
			 NMSG - lost);
}

/*
 * As above, with rows that recovery makes much longer (a long provider
 * name appended to tried): moving a row next to the damaged page then
 * makes SQLite rebalance into it, so recovery cannot write those readable
 * rows and leaves them.  The repair copies them and moves them to queued
 * in its transaction (a lost attempt each), and the scan hands them out.
 * Before, they were copied as "sending", counted in flight and never sent
 * until a second start.
 */
static void
test_recover_next_to_damaged_page(void **state)
{
	struct fixture *f = *state;
	struct done_res d = {0, 0};
	int lost;

	open_store(f);
	fill(f);
	store__exec(f->st,
		    "UPDATE messages SET status = 1, provider ="
		    " printf('%.*c', 300, 'p');"
		    "UPDATE status_counts SET n = CASE status WHEN 1 THEN "
		    "(SELECT count(*) FROM messages) ELSE 0 END",
		    done_cb, &d);
	WAIT_FOR(f->base, d.done);
	assert_int_equal(d.err, 0);
	close_store(f);
	lost = damage_leaf(f, "messages");
	scan_and_deliver(f, lost);
	assert_int_equal(db_int(f, "SELECT count(*) FROM attempts"),
			 NMSG - lost);
}

struct oldest_res {
	int done;
	int err;
};

static void
oldest_cb(void *arg, int err, int64_t created_ms)
{
	struct oldest_res *r = arg;

	(void)created_ms;
	r->done++;
	r->err = err;
}

/* Lines of the file at path that contain needle. */
static int
count_lines(const char *path, const char *needle)
{
	char line[1024];
	FILE *fp = fopen(path, "r");
	int n = 0;

	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strstr(line, needle) != NULL)
			n++;
	fclose(fp);
	return n;
}

/*
 * Twenty more asks for the damaged oldest message (a scraper of
 * /metrics, which takes no key, asks once a scrape): at most a line each
 * in 10 s, not a line per ask.
 */
static void
scrapes_log_little(struct fixture *f)
{
	struct oldest_res o;
	char path[192];
	int i;

	snprintf(path, sizeof(path), "%s/test.log", f->dir);
	assert_int_equal(log_open_file(path), 0);
	for (i = 0; i < 20; i++) {
		memset(&o, 0, sizeof(o));
		store_oldest_queued(f->st, oldest_cb, &o);
		WAIT_FOR(f->base, o.done);
		assert_int_equal(o.err, -EIO);
	}
	assert_int_equal(log_open_file(NULL), 0);
	assert_true(count_lines(path, "sqlite_error op=\"oldest\"") <= 1);
	assert_true(count_lines(path, "damaged_page") <= 1);
	(void)unlink(path);
}

/*
 * While running (the start-up scan, which would repair the table, not
 * run): the oldest queued message is on a damaged page, as a /metrics
 * scrape asks for it.  That query fails alone, the store stays healthy,
 * and a submission in the same batch commits.  Before, the store was
 * marked unhealthy (intake refused every message until a write
 * succeeded) and the whole batch failed with -EIO.
 */
static void
test_damaged_read_fails_alone(void **state)
{
	struct fixture *f = *state;
	struct oldest_res o = {0, 0};
	struct sub_res sub;
	const char *why = NULL;

	open_store(f);
	fill(f);
	close_store(f);
	(void)damage_leaf_at(f, "messages", true);
	open_store(f);
	memset(&sub, 0, sizeof(sub));
	store_oldest_queued(f->st, oldest_cb, &o);
	WAIT_FOR(f->base, o.done);
	assert_int_equal(o.err, -EIO);
	/* Before any write (which would make it healthy again anyway). */
	assert_true(store_healthy(f->st, &why));
	/* With others in its batch, it fails alone. */
	memset(&o, 0, sizeof(o));
	store_oldest_queued(f->st, oldest_cb, &o);
	store_submit(f->st, make_message(NULL, "same batch"), NULL, submit_cb,
		     &sub);
	WAIT_FOR(f->base, o.done && sub.done);
	assert_int_equal(o.err, -EIO);
	assert_int_equal(sub.err, 0);
	assert_true(store_healthy(f->st, &why));
	scrapes_log_little(f);
}

struct upd_res {
	int done;
	int err[NMSG + 1];
};

static struct upd_res *upd_target;

static void
upd_cb(void *arg, int err)
{
	int64_t rowid = (int64_t)(intptr_t)arg;

	upd_target->done++;
	upd_target->err[rowid] = err;
}

/*
 * While running (no start-up scan, so no repair): the rows of a damaged
 * leaf written in one batch, with a row on an intact page and a new
 * message.  Each damaged row's update fails alone with STORE_EDAMAGED (its
 * caller can tell it from a failing disk, whose -EIO may pass later), the
 * others commit and the store stays healthy.  Before, those updates got
 * -EIO, like a disk error, and past the eighth the whole batch failed:
 * the innocent update and the submission too, and the store was marked
 * unhealthy.
 */
static void
test_damaged_update_fails_alone(void **state)
{
	struct fixture *f = *state;
	static struct upd_res r;
	struct store_update u = {.status = MSG_DELIVERED,
				 .provider = "a provider name",
				 .provider_message_id = "a provider's id"};
	struct sub_res sub;
	const char *why = NULL;
	int64_t i;
	int lost;

	open_store(f);
	fill(f);
	close_store(f);
	/* Rowids 1 to lost: the first leaf. */
	lost = damage_leaf_at(f, "messages", true);
	assert_true(lost > 8 && lost < NMSG / 2);
	open_store(f);
	memset(&r, 0, sizeof(r));
	memset(&sub, 0, sizeof(sub));
	upd_target = &r;
	for (i = 1; i <= lost; i++) {
		u.rowid = i;
		store_update(f->st, &u, upd_cb, (void *)(intptr_t)i);
	}
	u.rowid = NMSG;
	store_update(f->st, &u, upd_cb, (void *)(intptr_t)NMSG);
	store_submit(f->st, make_message(NULL, "same batch"), NULL, submit_cb,
		     &sub);
	WAIT_FOR(f->base, r.done == lost + 1 && sub.done);
	for (i = 1; i <= lost; i++)
		assert_int_equal(r.err[i], STORE_EDAMAGED);
	assert_int_equal(r.err[NMSG], 0);
	assert_int_equal(sub.err, 0);
	assert_true(store_healthy(f->st, &why));
	assert_int_equal(
	    db_int(f, "SELECT status FROM messages WHERE rowid = 400"),
	    MSG_DELIVERED);
	/* What the dispatcher counts when it lets such a message go. */
	assert_int_equal(store_unreadable_rows(f->st), 0);
	store_unreadable_add(f->st);
	assert_int_equal(store_unreadable_rows(f->st), 1);
}

/*
 * status_counts (one page, rewritten by every commit) damaged: it is made
 * again from the messages at open, the scan gives the right counts, and
 * writes (which add to it before each commit) go through.  Before, the
 * scan failed (and serve exited).
 */
static void
test_damaged_counts_made_again(void **state)
{
	struct fixture *f = *state;
	static struct scanned sc;
	int64_t counts[MSG_NSTATUS];
	const char *why = NULL;

	open_store(f);
	fill(f);
	close_store(f);
	damage_root(f, "status_counts");
	memset(&sc, 0, sizeof(sc));
	open_store(f);
	assert_int_equal(store_scan(f->st, scan_each, &sc, counts), 0);
	assert_int_equal(sc.n, NMSG);
	assert_int_equal(counts[MSG_QUEUED], NMSG);
	assert_int_equal(update_wait(f,
				     &(struct store_update){
					 .rowid = sc.rowids[0],
					 .status = MSG_DELIVERED,
				     }),
			 0);
	assert_true(store_healthy(f->st, &why));
	check_counts(f, NMSG - 1, 0, 1, 0);
}

/*
 * After a rebuild and writes through the rebuilt index: SQLite's full
 * check finds every index agreeing with its table, and nothing wrong but
 * the old index's pages, which nothing uses any more (VACUUM frees them).
 */
static void
only_unused_pages(struct fixture *f)
{
	assert_int_equal(db_int(f, "SELECT count(*) FROM"
				   " pragma_integrity_check WHERE"
				   " integrity_check NOT LIKE"
				   " '%is never used'"),
			 0);
}

/*
 * A leaf of messages_active (the index the scan walks) overwritten, every
 * row intact: the open rebuilds the index from the table, logs it, and the
 * scan hands out every queued row, each of which can be written; the next
 * start finds nothing to rebuild.  Before, the scan failed on the index
 * (and serve exited).
 */
static void
test_damaged_index_rebuilt_at_start(void **state)
{
	struct fixture *f = *state;
	char path[192];

	open_store(f);
	fill(f);
	close_store(f);
	(void)damage_leaf_at(f, "messages_active", true);
	snprintf(path, sizeof(path), "%s/test.log", f->dir);
	assert_int_equal(log_open_file(path), 0);
	scan_and_deliver(f, 0);
	assert_int_equal(log_open_file(NULL), 0);
	assert_int_equal(count_lines(path, "reindexed index=messages_active"),
			 1);
	assert_int_equal(count_lines(path, "reindexed index="), 1);
	assert_int_equal(db_int(f, "SELECT count(*) FROM messages WHERE"
				   " status = 2"),
			 NMSG);
	only_unused_pages(f);
	(void)unlink(path);
}

/*
 * The index of meta (one page: the store's identity, which the open reads
 * to check the folder's marker) damaged: the open's read fails on it, the
 * damaged index is found among all and built again, and the open reads
 * once more.  Before, the open was refused (STORE_EDAMAGED).
 */
static void
test_damaged_meta_index_rebuilt(void **state)
{
	struct fixture *f = *state;
	char path[192];

	open_store(f);
	fill(f);
	close_store(f);
	damage_root(f, "sqlite_autoindex_meta_1");
	snprintf(path, sizeof(path), "%s/test.log", f->dir);
	assert_int_equal(log_open_file(path), 0);
	scan_and_deliver(f, 0);
	assert_int_equal(log_open_file(NULL), 0);
	assert_int_equal(count_lines(path, "reindexed index="
					   "sqlite_autoindex_meta_1 table=meta "
					   "reason=start_damaged"),
			 1);
	only_unused_pages(f);
	(void)unlink(path);
}

/*
 * The index and a page of its table both damaged: the rebuild reads the
 * table and fails, nothing of it is kept, and the start goes on as before
 * (the scan, which cannot name the rows without the index, refuses): no
 * row is made up or dropped silently.
 */
static void
test_damaged_index_and_table_refused(void **state)
{
	struct fixture *f = *state;
	static struct scanned sc;
	int64_t counts[MSG_NSTATUS];
	struct store *st = NULL;
	int rc;

	open_store(f);
	fill(f);
	close_store(f);
	(void)damage_leaf_at(f, "messages_active", true);
	(void)damage_leaf(f, "messages");
	memset(&sc, 0, sizeof(sc));
	rc = store_open(f->sub, NULL, f->base, &st);
	if (rc == 0) {
		rc = store_scan(st, scan_each, &sc, counts);
		store_close(st);
	}
	assert_int_not_equal(rc, 0);
	assert_true(sc.n < NMSG);
}

struct get_one {
	int done;
	int err;
};

static void
get_one_cb(void *arg, int err, const struct store_message *m,
	   const struct store_attempt *att, size_t natt)
{
	struct get_one *r = arg;

	(void)m;
	(void)att;
	(void)natt;
	r->done++;
	r->err = err;
}

/* Gets every message by id; how many failed. */
static int
get_all(struct fixture *f)
{
	struct get_one r;
	char id[32];
	int i, failed = 0;

	for (i = 0; i < NMSG; i++) {
		snprintf(id, sizeof(id), "01DAMAGETEST%014d", i);
		memset(&r, 0, sizeof(r));
		store_get(f->st, id, get_one_cb, &r);
		WAIT_FOR(f->base, r.done);
		if (r.err != 0)
			failed++;
	}
	return failed;
}

/*
 * The id's index (which the start does not read) damaged while the
 * server runs: the gets through it fail, the store finds which index and
 * says so (log, store_damaged_indexes for /metrics), stays healthy, and
 * the next start rebuilds it: every get then succeeds.
 */
static void
test_damaged_index_found_while_running(void **state)
{
	struct fixture *f = *state;
	const char *why = NULL;
	struct sub_res r;
	char path[192];

	open_store(f);
	fill(f);
	close_store(f);
	(void)damage_leaf_at(f, "sqlite_autoindex_messages_1", true);
	snprintf(path, sizeof(path), "%s/test.log", f->dir);
	assert_int_equal(log_open_file(path), 0);
	open_store(f);
	assert_int_equal(store_damaged_indexes(f->st), 0);
	assert_true(get_all(f) > 0);
	WAIT_FOR(f->base, store_damaged_indexes(f->st) == 1);
	assert_true(store_healthy(f->st, &why));
	close_store(f);
	open_store(f);
	assert_int_equal(get_all(f), 0);
	assert_int_equal(store_damaged_indexes(f->st), 0);
	/* The rebuilt index still keeps ids unique. */
	(void)submit_wait(f, make_message("01DAMAGETEST00000000000007", "s"),
			  NULL, &r);
	assert_int_equal(r.err, -EEXIST);
	close_store(f);
	only_unused_pages(f);
	assert_int_equal(log_open_file(NULL), 0);
	assert_int_equal(count_lines(path, "index_damaged index="
					   "sqlite_autoindex_messages_1"),
			 1);
	assert_int_equal(count_lines(path, "reindexed index="
					   "sqlite_autoindex_messages_1"),
			 1);
	(void)unlink(path);
}

/* The schema's page damaged: the open is refused, with a clear error. */
static void
test_damaged_schema_refused(void **state)
{
	struct fixture *f = *state;
	struct store *st = NULL;
	char path[192], junk[1024];
	FILE *fp;
	int rc;

	open_store(f);
	fill(f);
	close_store(f);
	snprintf(path, sizeof(path), "%s/shivneri.db", f->sub);
	memset(junk, 0x5a, sizeof(junk));
	fp = fopen(path, "r+b");
	assert_non_null(fp);
	/* Past the file's 100-byte header: page 1's b-tree, the schema. */
	assert_int_equal(fseek(fp, 100, SEEK_SET), 0);
	assert_int_equal(fwrite(junk, 1, sizeof(junk), fp), sizeof(junk));
	assert_int_equal(fclose(fp), 0);
	rc = store_open(f->sub, NULL, f->base, &st);
	assert_null(st);
	assert_int_equal(rc, STORE_EDAMAGED);
	assert_non_null(strstr(store_strerror(rc), "damaged"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_scan_past_damaged_page, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_recover_past_damaged_page,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_recover_next_to_damaged_page,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_read_fails_alone,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_update_fails_alone,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_counts_made_again,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_index_rebuilt_at_start,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_meta_index_rebuilt,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_damaged_index_and_table_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_damaged_index_found_while_running, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_schema_refused, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
