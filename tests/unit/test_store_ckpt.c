/*
 * The checkpointer's bound on the WAL (store_sqlite_ckpt.c).  A passive
 * checkpoint cannot copy frames past a reader's snapshot, and the WAL
 * starts over only when every frame was copied; so a reader held open
 * while messages flow makes the WAL grow past the writer's mark (4000
 * frames), where the checkpointer stands back.  Once the reader is gone
 * the writer must checkpoint by itself, so that the WAL starts over: if
 * neither side did, it would grow for ever.  The fixture is
 * fixture_store.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "common/util.h"

#include "fixture_store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The writer's mark, and the bytes of a WAL frame of an 8 KiB page. */
#define HARD_FRAMES 4000
#define FRAME_BYTES (8192 + 24)
/* Enough lone 16 KiB messages to pass the mark (about 4 frames each). */
#define MAX_MESSAGES 3000
#define BODY_BYTES (16 * 1024)

static struct store_message *
big_message(void)
{
	struct store_message *m = make_message(NULL, "big");

	free(m->mime);
	m->mime_len = BODY_BYTES;
	m->mime = xmalloc(m->mime_len);
	memset(m->mime, 'x', m->mime_len);
	return m;
}

static int64_t
file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/*
 * The WAL's length in frames now (a passive checkpoint reports it; busy
 * while the checkpointer holds the checkpoint lock: a few tries).
 */
static int
wal_frames(const char *db_path)
{
	sqlite3 *db = NULL;
	int log = -1, done = -1, rc = SQLITE_BUSY, tries;

	assert_int_equal(
	    sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL),
	    SQLITE_OK);
	/* A first read makes the connection see that the file is in WAL. */
	assert_int_equal(
	    sqlite3_exec(db, "SELECT count(*) FROM meta", NULL, NULL, NULL),
	    SQLITE_OK);
	for (tries = 0; rc == SQLITE_BUSY && tries < 100; tries++) {
		rc = sqlite3_wal_checkpoint_v2(
		    db, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done);
		if (rc == SQLITE_BUSY)
			sqlite3_sleep(20);
	}
	assert_int_equal(rc, SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return log;
}

static void
test_wal_bounded_past_a_reader(void **state)
{
	struct fixture *f = *state;
	char db_path[192], wal_path[200];
	sqlite3 *reader = NULL;
	struct sub_res r;
	int i, frames;

	open_store(f);
	snprintf(db_path, sizeof(db_path), "%s/shivneri.db", f->sub);
	snprintf(wal_path, sizeof(wal_path), "%s-wal", db_path);
	submit_wait(f, big_message(), NULL, &r);
	assert_int_equal(r.err, 0);

	/* A reader holds a snapshot: no checkpoint may pass it. */
	assert_int_equal(
	    sqlite3_open_v2(db_path, &reader, SQLITE_OPEN_READONLY, NULL),
	    SQLITE_OK);
	assert_int_equal(sqlite3_exec(reader,
				      "BEGIN; SELECT count(*) FROM messages;",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	for (i = 0; i < MAX_MESSAGES &&
		    file_size(wal_path) <= (int64_t)HARD_FRAMES * FRAME_BYTES;
	     i++) {
		submit_wait(f, big_message(), NULL, &r);
		assert_int_equal(r.err, 0);
	}
	assert_true(file_size(wal_path) > (int64_t)HARD_FRAMES * FRAME_BYTES);
	assert_int_equal(sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_close(reader), SQLITE_OK);

	/* The next commit checkpoints everything, the one after starts the
	 * WAL over. */
	submit_wait(f, big_message(), NULL, &r);
	assert_int_equal(r.err, 0);
	submit_wait(f, big_message(), NULL, &r);
	assert_int_equal(r.err, 0);
	frames = wal_frames(db_path);
	assert_true(frames >= 0);
	assert_true(frames < 250);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_wal_bounded_past_a_reader,
					    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
