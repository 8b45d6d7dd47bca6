/*
 * The maildir connector on a real event_base and a temporary folder: N
 * sends complete with N done() callbacks on the loop, N files in new/ with
 * the exact bytes and none left in tmp/; a vanished tmp/ gives TRANSIENT
 * and health DOWN; a missing path fails open; close with sends under way
 * calls no done().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/connector.h"
#include "common/config.h"
#include "common/util.h"
#include "link/link.h"
#include "store/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NJOBS 20

struct fixture {
	char dir[64];
	char *mdir;
	struct event_base *base;
	struct provider_config pc;
	struct config_kv kv;
	const struct connector_ops *ops;
	void *state;
	int ndone;
	int outcomes[NJOBS];
	char pmid[NJOBS][128];
	char detail[NJOBS][256];
};

static void
on_done(struct connector_job *job, const struct connector_result *res,
	void *arg)
{
	struct fixture *f = arg;
	size_t i = (size_t)job->job_id;

	assert_true(i < NJOBS);
	f->outcomes[i] = res->outcome;
	snprintf(f->pmid[i], sizeof(f->pmid[i]), "%s",
		 res->provider_message_id != NULL ? res->provider_message_id
						  : "");
	snprintf(f->detail[i], sizeof(f->detail[i]), "%s",
		 res->detail != NULL ? res->detail : "");
	f->ndone++;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_maildir.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->mdir = xasprintf("%s/box/p1", f->dir);
	f->base = event_base_new();
	f->kv.key = (char *)"path";
	f->kv.value = f->mdir;
	f->pc.name = (char *)"p1";
	f->pc.type = (char *)"maildir";
	f->pc.kv = &f->kv;
	f->pc.nkv = 1;
	f->ops = connector_lookup("maildir");
	assert_non_null(f->ops);
	*state = f;
	return 0;
}

static void
rm_rf(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char *sub;

	if (d == NULL) {
		(void)unlink(path);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		sub = xasprintf("%s/%s", path, de->d_name);
		rm_rf(sub);
		free(sub);
	}
	closedir(d);
	(void)rmdir(path);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	if (f->state != NULL)
		f->ops->close(f->state);
	event_base_free(f->base);
	rm_rf(f->dir);
	free(f->mdir);
	free(f);
	return 0;
}

static int
count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs the loop until want done() calls or a 10 s deadline. */
static void
wait_done(struct fixture *f, int want)
{
	struct timeval tv = {10, 0};
	struct event *ev;
	bool expired = false;

	ev = evtimer_new(f->base, deadline_cb, &expired);
	evtimer_add(ev, &tv);
	while (f->ndone < want && !expired)
		event_base_loop(f->base, EVLOOP_ONCE);
	event_free(ev);
	assert_int_equal(f->ndone, want);
}

static void
test_open_creates(void **state)
{
	struct fixture *f = *state;
	char err[256] = "", *p;
	struct stat st;
	const char *sub[] = {"tmp", "new", "cur"};
	size_t i;

	assert_int_equal(f->ops->open(&f->pc, f->base, on_done, f, &f->state,
				      err, sizeof(err)),
			 0);
	for (i = 0; i < 3; i++) {
		p = xasprintf("%s/%s", f->mdir, sub[i]);
		assert_int_equal(stat(p, &st), 0);
		assert_true(S_ISDIR(st.st_mode));
		assert_int_equal(st.st_mode & 0777, 0700);
		free(p);
	}
	assert_int_equal(f->ops->health(f->state), LINK_HEALTH_OK);
}

static void
test_open_needs_path(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	void *st = NULL;

	f->pc.nkv = 0;
	assert_true(f->ops->open(&f->pc, f->base, on_done, f, &st, err,
				 sizeof(err)) < 0);
	assert_null(st);
	assert_non_null(strstr(err, "path"));
	f->pc.nkv = 1;
}

static void
test_send_many(void **state)
{
	struct fixture *f = *state;
	struct connector_job jobs[NJOBS];
	char bodies[NJOBS][64], err[256], *newdir, *tmpdir, *path, *data;
	const char *rcpt[] = {"b@example.net"};
	size_t len;
	int i;

	assert_int_equal(f->ops->open(&f->pc, f->base, on_done, f, &f->state,
				      err, sizeof(err)),
			 0);
	for (i = 0; i < NJOBS; i++) {
		/* Binary bytes too: the connector must not care. */
		snprintf(bodies[i], sizeof(bodies[i]),
			 "Subject: %d\r\n\r\nbody %d\x01\xff", i, i);
		memset(&jobs[i], 0, sizeof(jobs[i]));
		jobs[i].job_id = (uint64_t)i;
		jobs[i].message_id = "MID";
		jobs[i].mail_from = "a@example.com";
		jobs[i].rcpt = rcpt;
		jobs[i].nrcpt = 1;
		jobs[i].mime = (const uint8_t *)bodies[i];
		jobs[i].mime_len = strlen(bodies[i]);
		assert_int_equal(f->ops->send(f->state, &jobs[i]), 0);
	}
	/* Never from inside send(). */
	assert_int_equal(f->ndone, 0);
	wait_done(f, NJOBS);

	newdir = xasprintf("%s/new", f->mdir);
	tmpdir = xasprintf("%s/tmp", f->mdir);
	assert_int_equal(count_files(newdir), NJOBS);
	assert_int_equal(count_files(tmpdir), 0);
	for (i = 0; i < NJOBS; i++) {
		assert_int_equal(f->outcomes[i], OUTCOME_DELIVERED);
		assert_true(strlen(f->pmid[i]) > 0);
		assert_null(strchr(f->pmid[i], '/'));
		path = xasprintf("%s/%s", newdir, f->pmid[i]);
		assert_int_equal(file_read_all(path, 1024, &data, &len), 0);
		assert_int_equal(len, strlen(bodies[i]));
		assert_memory_equal(data, bodies[i], len);
		free(data);
		free(path);
	}
	free(newdir);
	free(tmpdir);
}

static void
test_failure_transient(void **state)
{
	struct fixture *f = *state;
	struct connector_job job;
	const char *rcpt[] = {"b@example.net"};
	char err[256], *tmpdir;

	assert_int_equal(f->ops->open(&f->pc, f->base, on_done, f, &f->state,
				      err, sizeof(err)),
			 0);
	/* tmp/ vanishes (works even as root, unlike chmod). */
	tmpdir = xasprintf("%s/tmp", f->mdir);
	assert_int_equal(rmdir(tmpdir), 0);
	assert_int_equal(f->ops->health(f->state), LINK_HEALTH_DOWN);
	memset(&job, 0, sizeof(job));
	job.job_id = 3;
	job.message_id = "MID";
	job.mail_from = "";
	job.rcpt = rcpt;
	job.nrcpt = 1;
	job.mime = (const uint8_t *)"x";
	job.mime_len = 1;
	assert_int_equal(f->ops->send(f->state, &job), 0);
	wait_done(f, 1);
	assert_int_equal(f->outcomes[3], OUTCOME_TRANSIENT);
	assert_non_null(strstr(f->detail[3], "No such file"));
	/* It comes back when the folder does. */
	assert_int_equal(mkdir(tmpdir, 0700), 0);
	assert_int_not_equal(f->ops->health(f->state), LINK_HEALTH_DOWN);
	free(tmpdir);
}

static void
test_open_unwritable(void **state)
{
	struct fixture *f = *state;
	char err[256] = "", *file;
	void *st = NULL;

	/* path is a regular file: cannot be made a maildir. */
	file = xasprintf("%s/plain", f->dir);
	assert_int_equal(close(open(file, O_CREAT | O_WRONLY, 0600)), 0);
	f->kv.value = file;
	assert_true(f->ops->open(&f->pc, f->base, on_done, f, &st, err,
				 sizeof(err)) < 0);
	assert_null(st);
	assert_non_null(strstr(err, "p1"));
	f->kv.value = f->mdir;
	free(file);
}

static void
test_close_in_flight(void **state)
{
	struct fixture *f = *state;
	struct connector_job job;
	const char *rcpt[] = {"b@example.net"};
	char err[256];

	assert_int_equal(f->ops->open(&f->pc, f->base, on_done, f, &f->state,
				      err, sizeof(err)),
			 0);
	memset(&job, 0, sizeof(job));
	job.job_id = 1;
	job.message_id = "MID";
	job.mail_from = "";
	job.rcpt = rcpt;
	job.nrcpt = 1;
	job.mime = (const uint8_t *)"x";
	job.mime_len = 1;
	assert_int_equal(f->ops->send(f->state, &job), 0);
	f->ops->close(f->state);
	f->state = NULL;
	assert_int_equal(f->ndone, 0);
}

static void
test_registry(void **state)
{
	const char *const *names;
	size_t n, i;
	bool found = false;

	names = connector_names(&n);
	for (i = 0; i < n; i++)
		if (strcmp(names[i], "maildir") == 0)
			found = true;
	assert_true(found);
	assert_null(connector_lookup("no-such-type"));
	assert_null(connector_lookup(NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_creates, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_needs_path, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_send_many, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failure_transient, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_open_unwritable, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_close_in_flight, setup,
					    teardown),
	    cmocka_unit_test(test_registry),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
