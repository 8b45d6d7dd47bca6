/*
 * The store against what a dying process or a second one does to its
 * folder: one store has one server (the folder lock, STORE_EINUSE), the
 * lock goes with the store's close and with its process, and a refused
 * open changes nothing on disk.  A disk whose flush fails (fdatasync
 * returning EIO, injected by a small SQLite VFS that wraps the default one
 * and fails xSync while asked to) acknowledges nothing of the batch it
 * failed, and the store comes back by itself once flushes work again;
 * a crash right after such a refusal does not bring the refused batch
 * back from the WAL.  A damaged page fails the rows on it, not the batch
 * that read them nor the store.
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
#include <stdlib.h>
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

/* A message whose body is "MARK-<tag>" and 5,000 more bytes: a page. */
static struct store_message *
marked_message(const char *tag)
{
	struct store_message *m = make_message(NULL, tag);
	size_t n = 5000;

	free(m->mime);
	m->mime_len = n;
	m->mime = xmalloc(n);
	memset(m->mime, 'z', n);
	memcpy(m->mime, "MARK-", 5);
	memcpy(m->mime + 5, tag, strlen(tag));
	return m;
}

/* Overwrites the database page that holds needle with other bytes. */
static void
damage_page_of(struct fixture *f, const char *needle)
{
	char path[192], *buf;
	size_t len = strlen(needle);
	long size, at = -1, i;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/shivneri.db", f->sub);
	fp = fopen(path, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	size = ftell(fp);
	assert_true(size > 0);
	buf = xmalloc((size_t)size);
	rewind(fp);
	assert_int_equal(fread(buf, 1, (size_t)size, fp), (size_t)size);
	for (i = 0; i + (long)len <= size && at < 0; i++)
		if (memcmp(buf + i, needle, len) == 0)
			at = i;
	assert_true(at > 0);
	at -= at % 8192;
	memset(buf, 0x5a, 8192);
	assert_int_equal(fseek(fp, at, SEEK_SET), 0);
	assert_int_equal(fwrite(buf, 1, 8192, fp), 8192);
	assert_int_equal(fclose(fp), 0);
	free(buf);
}

struct load_res {
	int done;
	int err;
	size_t n, failed;
	char error[64];
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
		if (msgs[i]->status == MSG_FAILED) {
			r->failed++;
			snprintf(r->error, sizeof(r->error), "%s",
				 msgs[i]->error != NULL ? msgs[i]->error : "");
		}
		store_message_free(msgs[i]);
	}
	free(msgs);
}

struct done_get {
	int done;
	int err;
};

static void
done_get_cb(void *arg, int err, const struct store_message *m,
	    const struct store_attempt *att, size_t natt)
{
	struct done_get *r = arg;

	(void)m;
	(void)att;
	(void)natt;
	r->done++;
	r->err = err;
}

/*
 * A damaged page under one message's body: a load of it and its
 * neighbours answers the others whole and that one as a corrupt record;
 * a submission and a get of another message in the same batch go
 * through, and the store stays healthy (a damaged row is not a failing
 * disk).  Before, the load failed whole with -EIO, with the batch.
 */
static void
test_damaged_row_fails_alone(void **state)
{
	struct fixture *f = *state;
	struct sub_res r[3], sub;
	struct load_res lr = {0};
	struct done_get dg = {0, 0};
	struct get_res g;
	int64_t rowids[3];
	const char *why = NULL;
	int i;

	open_store(f);
	for (i = 0; i < 3; i++) {
		char tag[8];

		snprintf(tag, sizeof(tag), "%d", i);
		rowids[i] = submit_wait(f, marked_message(tag), NULL, &r[i]);
		assert_int_equal(r[i].err, 0);
	}
	store_close(f->st);
	f->st = NULL;
	damage_page_of(f, "MARK-1");
	open_store(f);
	memset(&sub, 0, sizeof(sub));
	store_load(f->st, rowids, 3, load_cb, &lr);
	store_submit(f->st, make_message(NULL, "same batch"), NULL, submit_cb,
		     &sub);
	store_get(f->st, r[2].id, done_get_cb, &dg);
	WAIT_FOR(f->base, lr.done && sub.done && dg.done);
	assert_int_equal(lr.err, 0);
	assert_int_equal(lr.n, 3);
	assert_int_equal(lr.failed, 1);
	assert_string_equal(lr.error, "corrupt record: bad page");
	assert_int_equal(sub.err, 0);
	assert_int_equal(dg.err, 0);
	assert_true(store_healthy(f->st, &why));
	/* A get of the damaged one answers for itself only. */
	get_wait(f, r[1].id, &g);
	assert_int_equal(g.err, -EIO);
	get_res_cleanup(&g);
	assert_true(store_healthy(f->st, &why));
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
	    cmocka_unit_test_setup_teardown(test_damaged_row_fails_alone, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_fsync_eio_then_crash_stays_refused, fault_setup,
		fault_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
