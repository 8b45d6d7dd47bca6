/*
 * Unit tests of the logger: every rule of the text and JSON formats of
 * log.h (JSON parsed back with jansson), the levels, the copy of start-up
 * errors on stderr, the rate-limited warning, and a reopen under a thread
 * that keeps logging (every line whole, none lost).  Each test logs into a
 * file of its own and reads it back.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/log.h"
#include "common/util.h"

#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ID "01JDQ4Z6V3ZK0W8Y9N5H2C7T1X"
/* "2026-11-29T20:44:07.123Z" */
#define STAMP_LEN 24

struct fixture {
	char dir[64];
	char *path;
};

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_log.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->path = xasprintf("%s/log", f->dir);
	log_init("test", 1);
	assert_int_equal(log_open_file(f->path), 0);
	/* Error lines stay out of the test's own stderr, but in one test. */
	log_set_started();
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	assert_int_equal(log_open_file(NULL), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f->path);
	free(f);
	return 0;
}

/*
 * Not inlined: gcc 12 at -O2 takes the pointer file_read_all() returns
 * through &s for a pointer to s itself (-Wdangling-pointer).
 */
static __attribute__((noinline)) char *
slurp(const char *path)
{
	char *s = NULL;
	size_t len;
	int rc = file_read_all(path, 64 << 20, &s, &len);

	assert_int_equal(rc, 0);
	assert_non_null(s);
	return s;
}

/* The only line of the log, without its newline (the caller frees). */
static char *
only_line(struct fixture *f)
{
	char *s = slurp(f->path), *nl = strchr(s, '\n');

	assert_non_null(nl);
	assert_string_equal(nl + 1, "");
	*nl = '\0';
	return s;
}

/* Empties the log for the next case of a test. */
static void
clear(struct fixture *f)
{
	assert_int_equal(truncate(f->path, 0), 0);
}

static bool
stamp_ok(const char *s)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
	size_t i;

	for (i = 0; i < STAMP_LEN; i++) {
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9')
				    : s[i] != shape[i])
			return false;
	}
	return true;
}

/* The line after its time stamp and the space that follows it. */
static void
expect_text(struct fixture *f, const char *want)
{
	char *line = only_line(f);

	assert_true(stamp_ok(line));
	assert_int_equal(line[STAMP_LEN], ' ');
	assert_string_equal(line + STAMP_LEN + 1, want);
	free(line);
	clear(f);
}

static void
test_text_order(void **state)
{
	struct fixture *f = *state;

	log_info("%s dispatch delivered provider=%s attempts=%d", ID, "a", 2);
	expect_text(f, "info dispatch " ID " delivered provider=a attempts=2");
	log_warnx("- store no_wal path=%s", "/x");
	expect_text(f, "warn store - no_wal path=/x");
	/* A first word that is neither "-" nor an id is the subsystem. */
	log_info("config agent_secret created file=%s", "/s");
	expect_text(f, "info config - agent_secret created file=/s");
	/* Almost an id: one character short, and a lower-case one. */
	log_info("01JDQ4Z6V3ZK0W8Y9N5H2C7T1 agent x");
	expect_text(f, "info 01JDQ4Z6V3ZK0W8Y9N5H2C7T1 - agent x");
	log_info("01jdq4z6v3zk0w8y9n5h2c7t1x agent x");
	expect_text(f, "info 01jdq4z6v3zk0w8y9n5h2c7t1x - agent x");
	/* A trailing colon leaves the subsystem. */
	log_info("supervisor: cannot set up events");
	expect_text(f, "info supervisor - cannot set up events");
}

static void
test_text_missing_parts(void **state)
{
	struct fixture *f = *state;

	log_info("- server");
	expect_text(f, "info server - -");
	log_info("- server waited_ms=%d", 5);
	expect_text(f, "info server - - waited_ms=5");
	log_info("%s", "");
	expect_text(f, "info test - -");
	log_info("-");
	expect_text(f, "info test - -");
	log_info("  - server   drained  n=1");
	expect_text(f, "info server - drained n=1");
}

static void
test_text_cleaning(void **state)
{
	struct fixture *f = *state;

	log_info("- x ev a=%s", "b\nc\td\r\x7f");
	expect_text(f, "info x - ev a=b?c?d??");
	/* UTF-8 passes; a broken sequence, an overlong form and a
	 * surrogate do not. */
	log_info("- x ev a=%s", "\xc3\xa9 \xff \xc0\xaf \xed\xa0\x80 \xe2\x82");
	expect_text(f, "info x - ev a=\xc3\xa9 ? ?? ??? ??");
	log_info("- x ev a=%s", "\xf0\x9f\x93\xa7");
	expect_text(f, "info x - ev a=\xf0\x9f\x93\xa7");
}

static void
test_levels(void **state)
{
	struct fixture *f = *state;

	log_error("- server bind_failed addr=%s", "127.0.0.1:1");
	expect_text(f, "error server - bind_failed addr=127.0.0.1:1");
	log_debug("- x dbg");
	expect_text(f, "debug x - dbg");
	errno = ENOENT;
	log_warn("- x open_failed path=%s", "/nope");
	expect_text(f, "warn x - open_failed path=/nope "
		       "syserr=\"No such file or directory\"");
	log_init("test", 0);
	log_debug("- x hidden");
	log_info("- x shown");
	expect_text(f, "info x - shown");
}

static void
test_text_long(void **state)
{
	struct fixture *f = *state;
	char *big = xmalloc(3 * LOG_TEXT_MAX);
	char *line;

	memset(big, 'v', 3 * LOG_TEXT_MAX - 1);
	big[3 * LOG_TEXT_MAX - 1] = '\0';
	log_info("- x long v=%s", big);
	line = only_line(f);
	assert_true(strlen(line) < LOG_TEXT_MAX + 64);
	assert_non_null(strstr(line, "info x - long v=vvv"));
	free(line);
	free(big);
}

/* The only line of the log as JSON (the caller decrefs). */
static json_t *
only_json(struct fixture *f)
{
	char *line = only_line(f);
	json_error_t err;
	json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &err);

	if (j == NULL)
		fprintf(stderr, "not JSON (%s): %s\n", err.text, line);
	assert_non_null(j);
	assert_true(json_is_object(j));
	free(line);
	clear(f);
	return j;
}

static void
expect_member(const json_t *j, const char *key, const char *want)
{
	const json_t *v = json_object_get(j, key);

	if (want == NULL) {
		assert_null(v);
		return;
	}
	assert_true(json_is_string(v));
	assert_string_equal(json_string_value(v), want);
}

static void
test_json(void **state)
{
	struct fixture *f = *state;
	json_t *j;

	assert_int_equal(log_set_format("json"), 0);
	log_info("%s dispatch delivered provider=%s reason=\"%s\" note "
		 "time=5 free words path=%s",
		 ID, "a", "say \"hi\"there", "C:\\dir");
	j = only_json(f);
	assert_true(stamp_ok(json_string_value(json_object_get(j, "time"))));
	assert_int_equal(strlen(json_string_value(json_object_get(j, "time"))),
			 STAMP_LEN);
	expect_member(j, "level", "info");
	expect_member(j, "subsystem", "dispatch");
	expect_member(j, "msgid", ID);
	expect_member(j, "event", "delivered");
	expect_member(j, "provider", "a");
	expect_member(j, "reason", "say \"hi\"there");
	expect_member(j, "path", "C:\\dir");
	/* A field may not overwrite the line's own members. */
	expect_member(j, "kv_time", "5");
	expect_member(j, "text", "note free words");
	assert_int_equal(json_object_size(j), 10);
	json_decref(j);

	log_warnx("- store ev a=\"x\" b=\"\" c=\"open d=e");
	j = only_json(f);
	expect_member(j, "level", "warn");
	expect_member(j, "msgid", "-");
	expect_member(j, "a", "x");
	expect_member(j, "b", "");
	expect_member(j, "c", "open d=e");
	expect_member(j, "text", NULL);
	json_decref(j);

	log_error("config k=v");
	j = only_json(f);
	expect_member(j, "level", "error");
	expect_member(j, "subsystem", "config");
	expect_member(j, "msgid", "-");
	expect_member(j, "event", "-");
	expect_member(j, "k", "v");
	json_decref(j);

	errno = EACCES;
	log_warn("- x ev u=%s ctl=%s", "\xc3\xa9\xe2\x82\xac", "a\x01z\"");
	j = only_json(f);
	expect_member(j, "u", "\xc3\xa9\xe2\x82\xac");
	expect_member(j, "ctl", "a?z\"");
	expect_member(j, "syserr", "Permission denied");
	json_decref(j);
	assert_int_equal(log_set_format("xml"), -EINVAL);
	assert_int_equal(log_set_format("text"), 0);
	log_info("- x back");
	expect_text(f, "info x - back");
}

/*
 * The worst expansion (a backslash, escaped, per short field) still gives
 * one whole object with every field.
 */
static void
test_json_long(void **state)
{
	struct fixture *f = *state;
	char *big = xmalloc(LOG_TEXT_MAX);
	char key[16];
	size_t len = 0;
	json_t *j;
	int i, n;

	for (n = 0; len + 8 < LOG_TEXT_MAX - 16; n++)
		len += (size_t)snprintf(big + len, LOG_TEXT_MAX - len,
					"a%d=\\ ", n);
	assert_int_equal(log_set_format("json"), 0);
	log_info("- x many %s", big);
	j = only_json(f);
	expect_member(j, "event", "many");
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "a%d", i);
		expect_member(j, key, "\\");
	}
	expect_member(j, "truncated", NULL);
	json_decref(j);
	free(big);
}

/* Runs fn with stderr sent to a file; returns what reached stderr. */
static char *
capture_stderr(struct fixture *f, void (*fn)(void))
{
	char *path = xasprintf("%s/stderr", f->dir), *s;
	int fd, saved;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	fn();
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	close(fd);
	s = slurp(path);
	free(path);
	return s;
}

static void
log_some(void)
{
	log_error("- server start_failed reason=%s", "boom");
	log_warnx("- server refused peer=%s", "p");
	log_info("- server listening");
}

static void
test_startup_stderr(void **state)
{
	struct fixture *f = *state;
	char *err, *file;

	log_init("test", 1); /* not started */
	err = capture_stderr(f, log_some);
	/* Before start: the error (only) on stderr as well. */
	assert_non_null(strstr(err, "error server - start_failed reason=boom"));
	assert_null(strstr(err, "refused"));
	assert_null(strstr(err, "listening"));
	free(err);
	file = slurp(f->path);
	assert_non_null(strstr(file, "start_failed"));
	assert_non_null(strstr(file, "refused"));
	assert_non_null(strstr(file, "listening"));
	free(file);
	log_set_started();
	err = capture_stderr(f, log_some);
	assert_string_equal(err, "");
	free(err);
}

static void
test_rate_limit(void **state)
{
	struct fixture *f = *state;
	struct log_rl rl = LOG_RL_INIT;
	char *line;
	json_t *j;
	int i;

	for (i = 0; i < 10; i++)
		log_warnx_rl(&rl, 60000, "- store disk_full n=%d", i);
	expect_text(f, "warn store - disk_full n=0");
	/* The interval passes: the next call writes, with the count. */
	rl.last_ms -= 60000;
	log_warnx_rl(&rl, 60000, "- store disk_full n=%d", 10);
	expect_text(f, "warn store - disk_full n=10 suppressed=9");
	log_warnx_rl(&rl, 60000, "- store disk_full n=%d", 11);
	log_warnx_rl(&rl, 60000, "- store disk_full n=%d", 12);
	line = slurp(f->path);
	assert_string_equal(line, "");
	free(line);
	assert_int_equal(rl.suppressed, 2);
	rl.last_ms -= 60000;
	assert_int_equal(log_set_format("json"), 0);
	log_warnx_rl(&rl, 60000, "- store disk_full n=%d", 13);
	j = only_json(f);
	expect_member(j, "n", "13");
	expect_member(j, "suppressed", "2");
	json_decref(j);
	assert_int_equal(log_set_format("text"), 0);
	/* Nothing suppressed in the last interval: no count. */
	rl.last_ms -= 60000;
	log_warnx_rl(&rl, 60000, "- store disk_full n=%d", 14);
	expect_text(f, "warn store - disk_full n=14");
}

#define RL_THREADS 4
#define RL_CALLS 1000

static void *
rl_thread(void *arg)
{
	struct log_rl *rl = arg;
	int i;

	for (i = 0; i < RL_CALLS; i++)
		log_warnx_rl(rl, 60000, "- x storm i=%d", i);
	return NULL;
}

static void
test_rate_limit_threads(void **state)
{
	struct fixture *f = *state;
	struct log_rl rl = LOG_RL_INIT;
	pthread_t t[RL_THREADS];
	char *line;
	int i;

	for (i = 0; i < RL_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, rl_thread, &rl),
				 0);
	for (i = 0; i < RL_THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	free(only_line(f));
	clear(f);
	rl.last_ms -= 60000;
	log_warnx_rl(&rl, 60000, "- x storm end");
	line = only_line(f);
	assert_non_null(strstr(line, "storm end suppressed=3999"));
	free(line);
}

#define WRITER_LINES 20000
/* Every this many reopens the file is renamed first, as rotation does. */
#define ROTATE_EVERY 64
#define REOPENS_MAX 100000

static atomic_bool writer_done;

static void *
writer(void *arg)
{
	char pad[1001];
	int i;

	(void)arg;
	memset(pad, 'p', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	for (i = 0; i < WRITER_LINES; i++)
		log_info("- w line i=%d pad=%s end", i, pad);
	atomic_store(&writer_done, true);
	return NULL;
}

/*
 * Counts the writer's lines in one file; fails on any line that is not
 * whole.  seen[i] counts line i.
 */
static void
check_file(const char *path, unsigned char *seen)
{
	char *s = slurp(path), *line = s, *nl;
	int i;

	for (; *line != '\0'; line = nl + 1) {
		nl = strchr(line, '\n');
		assert_non_null(nl);
		*nl = '\0';
		assert_true(stamp_ok(line));
		if (strstr(line, " w - line ") == NULL)
			continue;
		assert_int_equal(sscanf(strstr(line, "i="), "i=%d", &i), 1);
		assert_true(i >= 0 && i < WRITER_LINES);
		assert_int_equal(strlen(strstr(line, " pad=")), 5 + 1000 + 4);
		assert_string_equal(line + strlen(line) - 4, " end");
		seen[i]++;
	}
	free(s);
}

/*
 * Reopens as fast as it can while a thread logs (reopening the same file,
 * and renaming it away now and then): every line must be in one of the
 * files, once and whole.  The old close-then-open lost lines written to
 * the closed descriptor.
 */
static void
test_reopen_under_writes(void **state)
{
	struct fixture *f = *state;
	unsigned char *seen = xcalloc(WRITER_LINES, 1);
	int i, rotated = 0;
	pthread_t t;
	char *old;

	atomic_store(&writer_done, false);
	assert_int_equal(pthread_create(&t, NULL, writer, NULL), 0);
	for (i = 0; i < REOPENS_MAX && !atomic_load(&writer_done); i++) {
		if (i % ROTATE_EVERY == 0) {
			old = xasprintf("%s.%d", f->path, rotated++);
			assert_int_equal(rename(f->path, old), 0);
			free(old);
		}
		assert_int_equal(log_reopen(), 0);
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	check_file(f->path, seen);
	for (i = 0; i < rotated; i++) {
		old = xasprintf("%s.%d", f->path, i);
		check_file(old, seen);
		free(old);
	}
	for (i = 0; i < WRITER_LINES; i++)
		if (seen[i] != 1)
			fail_msg("line %d seen %d times", i, (int)seen[i]);
	free(seen);
}

#define PROCS 3
#define PROC_LINES 3000

/*
 * Processes that open the same log file (as agents given the server's
 * log_file do) and log long lines at once: every line is whole.
 */
static void
test_processes_share_file(void **state)
{
	struct fixture *f = *state;
	char pad[1901], *s, *line, *nl;
	int i, k, status, counts[PROCS] = {0};
	pid_t pids[PROCS];

	memset(pad, 'q', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	for (k = 0; k < PROCS; k++) {
		pids[k] = fork();
		assert_true(pids[k] >= 0);
		if (pids[k] != 0)
			continue;
		if (log_open_file(f->path) != 0)
			_exit(1);
		for (i = 0; i < PROC_LINES; i++)
			log_info("- p%d line i=%d pad=%s end", k, i, pad);
		_exit(0);
	}
	for (k = 0; k < PROCS; k++) {
		assert_int_equal(waitpid(pids[k], &status, 0), pids[k]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	s = slurp(f->path);
	for (line = s; *line != '\0'; line = nl + 1) {
		nl = strchr(line, '\n');
		assert_non_null(nl);
		*nl = '\0';
		assert_true(stamp_ok(line));
		assert_int_equal(
		    sscanf(line + STAMP_LEN, " info p%d - line", &k), 1);
		assert_true(k >= 0 && k < PROCS);
		assert_int_equal(strlen(strstr(line, " pad=")),
				 5 + sizeof(pad) - 1 + 4);
		assert_string_equal(line + strlen(line) - 4, " end");
		counts[k]++;
	}
	for (k = 0; k < PROCS; k++)
		assert_int_equal(counts[k], PROC_LINES);
	free(s);
}

/* A reopen that fails keeps the old file, and a later one works. */
static void
test_reopen_failure(void **state)
{
	struct fixture *f = *state;
	char *sub = xasprintf("%s/sub", f->dir);
	char *path = xasprintf("%s/log", sub);
	char *moved = xasprintf("%s/moved", f->dir);
	char *s;

	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(log_open_file(path), 0);
	log_info("- x one");
	assert_int_equal(rename(sub, moved), 0);
	assert_int_equal(log_reopen(), -ENOENT);
	log_info("- x two");
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(log_reopen(), 0);
	log_info("- x three");
	free(path);
	path = xasprintf("%s/log", moved);
	s = slurp(path);
	assert_non_null(strstr(s, "x - one"));
	assert_non_null(strstr(s, "x - two"));
	assert_null(strstr(s, "three"));
	free(s);
	free(path);
	path = xasprintf("%s/log", sub);
	s = slurp(path);
	assert_non_null(strstr(s, "x - three"));
	free(s);
	free(path);
	free(moved);
	free(sub);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_text_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_text_missing_parts, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_text_cleaning, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_text_long, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_json_long, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_startup_stderr, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rate_limit_threads, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_under_writes, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_processes_share_file, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_reopen_failure, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
