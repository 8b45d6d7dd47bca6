/*
 * The store against what a dying process or a second one does to its
 * folder: one store has one server (the folder lock, STORE_EINUSE), the
 * lock goes with the store's close and with its process, and a refused
 * open changes nothing on disk.  The fixture is fixture_store.c.
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
