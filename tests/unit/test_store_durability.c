/*
 * The store against what a dying process or a second one does to its
 * folder: one store has one server (the folder lock, STORE_EINUSE), the
 * lock goes with the store's close and with its process, and a refused
 * open changes nothing on disk.  A disk whose flush fails (fdatasync
 * returning EIO, injected by a small SQLite VFS that wraps the default one
 * and fails xSync while asked to) acknowledges nothing of the batch it
 * failed, and the store comes back by itself once flushes work again;
 * a crash right after such a refusal does not bring the refused batch
 * back from the WAL.
 * The fixture is fixture_store.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store/store.h"
#include "common/util.h"

#include "fixture_store.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>
#include <stdatomic.h>

/*
 * The fault VFS: the default VFS with its xOpen wrapped so that every file
 * it opens gets a copy of its methods whose xSync fails with
 * SQLITE_IOERR_FSYNC while fail_sync is set.  Registered as the default
 * VFS, so the store uses it without knowing.  The unix VFS gives the
 * database and its WAL different method tables; each gets its own copy.
 */
#define FAULT_TABLES 4

static sqlite3_vfs fault_vfs;
static sqlite3_vfs *real_vfs;
static struct {
	const sqlite3_io_methods *real;
	sqlite3_io_methods copy;
} fault_tables[FAULT_TABLES];
static atomic_int fail_sync;
static atomic_int syncs_failed;

static int
fault_sync(sqlite3_file *file, int flags)
{
	size_t i;

	if (atomic_load(&fail_sync)) {
		atomic_fetch_add(&syncs_failed, 1);
		return SQLITE_IOERR_FSYNC;
	}
	for (i = 0; i < FAULT_TABLES; i++)
		if (file->pMethods == &fault_tables[i].copy)
			return fault_tables[i].real->xSync(file, flags);
	return SQLITE_IOERR_FSYNC;
}

static int
fault_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
	   int *out_flags)
{
	size_t i;
	int rc;

	(void)vfs;
	rc = real_vfs->xOpen(real_vfs, name, file, flags, out_flags);
	if (rc != SQLITE_OK || file->pMethods == NULL)
		return rc;
	for (i = 0; i < FAULT_TABLES; i++) {
		if (fault_tables[i].real == NULL) {
			fault_tables[i].real = file->pMethods;
			fault_tables[i].copy = *file->pMethods;
			fault_tables[i].copy.xSync = fault_sync;
		}
		if (fault_tables[i].real == file->pMethods) {
			file->pMethods = &fault_tables[i].copy;
			return rc;
		}
	}
	fail(); /* more method tables than this shim expects */
	return rc;
}

static int
fault_setup(void **state)
{
	real_vfs = sqlite3_vfs_find(NULL);
	if (real_vfs == NULL)
		return -1;
	fault_vfs = *real_vfs;
	fault_vfs.zName = "shivneri-fault";
	fault_vfs.xOpen = fault_open;
	if (sqlite3_vfs_register(&fault_vfs, 1) != SQLITE_OK)
		return -1;
	atomic_store(&fail_sync, 0);
	atomic_store(&syncs_failed, 0);
	return setup(state);
}

static int
fault_teardown(void **state)
{
	int rc = teardown(state);

	atomic_store(&fail_sync, 0);
	(void)sqlite3_vfs_unregister(&fault_vfs);
	return rc;
}

static bool
store_ok(struct fixture *f)
{
	const char *why = NULL;

	return store_healthy(f->st, &why);
}

/*
 * fdatasync fails (EIO) under a batch of submissions: every one of them is
 * refused (none is acknowledged without being on disk), the store says it
 * is unhealthy, and once flushes work again its probe brings it back with
 * no write from us; what was acknowledged before and after is there, what
 * was refused is not.
 */
static void
test_fsync_eio_refuses_batch(void **state)
{
	struct fixture *f = *state;
	struct sub_res before, after, r[3];
	const char *why = NULL;
	int i;

	open_store(f);
	submit_wait(f, make_message(NULL, "before"), NULL, &before);
	assert_int_equal(before.err, 0);
	atomic_store(&fail_sync, 1);
	memset(r, 0, sizeof(r));
	for (i = 0; i < 3; i++)
		store_submit(f->st, make_message(NULL, "refused"), NULL,
			     submit_cb, &r[i]);
	WAIT_FOR(f->base, r[0].done && r[1].done && r[2].done);
	for (i = 0; i < 3; i++)
		assert_int_equal(r[i].err, -EIO);
	assert_true(atomic_load(&syncs_failed) > 0);
	assert_false(store_healthy(f->st, &why));
	assert_non_null(why);
	atomic_store(&fail_sync, 0);
	WAIT_FOR(f->base, store_ok(f));
	submit_wait(f, make_message(NULL, "after"), NULL, &after);
	assert_int_equal(after.err, 0);
	check_counts(f, 2, 0, 0, 0);
	/* And so after a restart. */
	store_close(f->st);
	f->st = NULL;
	open_store(f);
	check_counts(f, 2, 0, 0, 0);
}

/*
 * A submission whose commit failed at the flush (answered with -EIO, so
 * its client was told it is not stored) stays refused after a crash: the
 * restart's WAL recovery does not bring it back.  The child crashes
 * (_exit, no close) with the flush still failing.
 */
static void
test_fsync_eio_then_crash_stays_refused(void **state)
{
	struct fixture *f = *state;
	struct sub_res r;
	int status;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		open_store(f);
		submit_wait(f, make_message(NULL, "kept"), NULL, &r);
		if (r.err != 0)
			_exit(2);
		atomic_store(&fail_sync, 1);
		submit_wait(f, make_message(NULL, "refused"), NULL, &r);
		_exit(r.err == -EIO ? 0 : 3);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	open_store(f);
	assert_int_equal(
	    db_int(f, "SELECT count(*) FROM messages WHERE subject = 'kept'"),
	    1);
	assert_int_equal(db_int(f, "SELECT count(*) FROM messages WHERE "
				   "subject = 'refused'"),
			 0);
	check_counts(f, 1, 0, 0, 0);
}

static int
open_status(struct fixture *f, struct store **out)
{
	struct store *st = NULL;
	int rc = store_open(f->sub, NULL, f->base, &st);

	if (rc != 0)
		assert_null(st);
	*out = st;
	return rc;
}

/* A second open of an open store is refused; it opens once closed. */
static void
test_second_open_refused(void **state)
{
	struct fixture *f = *state;
	struct store *other = NULL;
	struct sub_res r;

	open_store(f);
	submit_wait(f, make_message(NULL, "held"), NULL, &r);
	assert_int_equal(r.err, 0);
	assert_int_equal(open_status(f, &other), STORE_EINUSE);
	assert_non_null(strstr(store_strerror(STORE_EINUSE), "another server"));
	/* The refusal recovered nothing and wrote nothing: still there. */
	check_counts(f, 1, 0, 0, 0);
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(open_status(f, &other), 0);
	store_close(other);
}

/*
 * A process that holds the store and dies without closing it (kill -9)
 * leaves no stale lock: the kernel drops it with the process.
 */
static void
test_lock_dies_with_process(void **state)
{
	struct fixture *f = *state;
	struct store *st = NULL;
	int pipefd[2], status;
	char c = 0;
	pid_t pid;

	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct event_base *base = event_base_new();

		(void)close(pipefd[0]);
		if (base == NULL || store_open(f->sub, NULL, base, &st) != 0)
			_exit(2);
		if (write(pipefd[1], "x", 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	(void)close(pipefd[1]);
	assert_int_equal(read(pipefd[0], &c, 1), 1);
	(void)close(pipefd[0]);
	assert_int_equal(open_status(f, &st), STORE_EINUSE);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(open_status(f, &st), 0);
	store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_second_open_refused, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_lock_dies_with_process, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_fsync_eio_refuses_batch,
					    fault_setup, fault_teardown),
	    cmocka_unit_test_setup_teardown(
		test_fsync_eio_then_crash_stays_refused, fault_setup,
		fault_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
