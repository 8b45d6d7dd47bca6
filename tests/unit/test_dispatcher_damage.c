/*
 * The dispatcher against a write that can never succeed while running:
 * the message's row is on a damaged page, so every write of it fails with
 * STORE_EDAMAGED until the next start rebuilds the table.  Such a message
 * is let go after a few tries (its slot and job released, counted by
 * store_unreadable_rows, a damaged_row line) and the pump goes on; a
 * `delivered` that could not be recorded says so.  A write that fails
 * otherwise (test_dispatcher_store.c) is still retried for as long as it
 * takes.
 *
 * The damage is real, not mocked: a trigger on the messages table reads a
 * table of its own whose leaf page was overwritten in the file (after a
 * checkpoint, so the page is read from there), and so the store's UPDATE
 * of that status meets SQLITE_CORRUPT as it would on the row's own page.
 * The fixture is fixture_dispatcher.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/log.h"
#include "common/util.h"
#include "dispatch/dispatch_int.h"
#include "dispatch/dispatcher.h"
#include "dispatch/registry.h"
#include "link/link.h"
#include "store/store.h"

#include "fixture_dispatcher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#define PAGE 8192

static void
exec_sql(sqlite3 *db, const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", sql, err ? err : "?");
}

/* A leaf page of test_damaged, which holds many. */
static int64_t
leaf_of_damaged(sqlite3 *db)
{
	sqlite3_stmt *s;
	int64_t pageno;

	assert_int_equal(
	    sqlite3_prepare_v2(db,
			       "SELECT pageno FROM dbstat WHERE name ="
			       " 'test_damaged' AND pagetype = 'leaf'"
			       " ORDER BY pageno LIMIT 1 OFFSET 2",
			       -1, &s, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	pageno = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return pageno;
}

/*
 * From now on every store write that sets a message to status reads a
 * damaged page (fault_off() drops the trigger, not the damage).
 */
static void
damage_on(struct fixture *f, int status)
{
	char path[128], sql[256], page[PAGE];
	sqlite3 *db = NULL;
	int64_t pageno;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/shivneri.db", f->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	exec_sql(db,
		 "CREATE TABLE test_damaged (x);"
		 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1"
		 " FROM n WHERE i < 400)"
		 " INSERT INTO test_damaged SELECT randomblob(200) FROM n;");
	snprintf(sql, sizeof(sql),
		 "CREATE TRIGGER test_fault BEFORE UPDATE ON messages"
		 " WHEN NEW.status = %d AND (SELECT sum(length(x)) FROM"
		 " test_damaged) IS NOT NULL BEGIN SELECT 1; END;",
		 status);
	exec_sql(db, sql);
	/* Every page in the file, none in the WAL: the file is what counts. */
	assert_int_equal(sqlite3_wal_checkpoint_v2(
			     db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL),
			 SQLITE_OK);
	pageno = leaf_of_damaged(db);
	sqlite3_close(db);
	assert_true(pageno > 1);
	memset(page, 0x5a, sizeof(page));
	fp = fopen(path, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, (long)((pageno - 1) * PAGE), SEEK_SET), 0);
	assert_int_equal(fwrite(page, 1, sizeof(page), fp), sizeof(page));
	assert_int_equal(fclose(fp), 0);
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

static bool
unreadable_is(struct fixture *f, void *arg)
{
	return store_unreadable_rows(f->st) == *(uint64_t *)arg;
}

/*
 * The provider took the message, and its `delivered` cannot be written:
 * after a few tries it is let go, with a line that says it was delivered
 * and not recorded, the disk still says `sending` (the next start finds
 * it so, and records the attempt as lost), and the pump goes on: the next
 * message is sent.  Before, the write was retried for ever while the pump
 * was held, and nothing more was sent until a restart.
 */
static void
test_damaged_delivered_let_go(void **state)
{
	struct fixture *f = *state;
	struct get_result g;
	char path[128];

	snprintf(path, sizeof(path), "%s/test.log", f->dir);
	agent_up(f, 0);
	submit(f);
	wait_jobs(f, 0, 1);
	damage_on(f, MSG_DELIVERED);
	assert_int_equal(log_open_file(path), 0);
	dispatcher_result(f->d, f->p[0], f->fa[0].job_ids[0], f->ids[0],
			  OUTCOME_DELIVERED, "pm-1", NULL);
	submit(f);
	/* Held for the tries (100 + 200 ms), then not any more. */
	wait_jobs(f, 0, 2);
	assert_string_equal(f->fa[0].msg_ids[1], f->ids[1]);
	assert_int_equal(store_unreadable_rows(f->st), 1);
	assert_int_equal(log_open_file(NULL), 0);
	assert_int_equal(count_lines(path, "damaged_row write=final "
					   "status=delivered provider=a"),
			 1);
	assert_int_equal(count_lines(path, "duplicate_possible=yes"), 1);
	/* Out of memory's counts and jobs; on disk as it was. */
	assert_int_equal(count(f, MSG_DELIVERED), 0);
	assert_int_equal(count(f, MSG_SENDING), 1);
	assert_int_equal(f->d->nretry, 0);
	assert_int_equal(f->p[0]->se.in_flight, 1);
	get(f, f->ids[0], &g);
	assert_int_equal(g.status, MSG_SENDING);
	assert_int_equal(g.natt, 0);
	(void)unlink(path);
}

/*
 * The `sending` write cannot be written: nothing was sent, the message is
 * let go at once (the pump would only pick it and fail again), and the
 * next message goes out.  Before, it was queued again in memory and its
 * write failed at every pick, each failure holding the pump longer.
 */
static void
test_damaged_sending_let_go(void **state)
{
	struct fixture *f = *state;
	uint64_t one = 1;

	link_agent(f, 0);
	damage_on(f, MSG_SENDING);
	submit(f);
	dispatcher_heartbeat(f->d, f->p[0], LINK_HEALTH_OK, 0);
	run_until(f, unreadable_is, &one, 3000);
	assert_int_equal(f->fa[0].njobs, 0);
	assert_int_equal(count(f, MSG_QUEUED), 0);
	assert_int_equal(f->p[0]->se.in_flight, 0);
	fault_off(f);
	submit(f);
	wait_jobs(f, 0, 1);
	assert_string_equal(f->fa[0].msg_ids[0], f->ids[1]);
	assert_int_equal(count(f, MSG_SENDING), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_damaged_delivered_let_go,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged_sending_let_go, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
