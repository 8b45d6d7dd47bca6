/*
 * The maildir connector: "delivers" each message as one file of a maildir
 * (tmp/, new/, cur/), for sandboxes and tests that need a provider with no
 * network behind it.
 *
 * A delivery follows the maildir convention so that a reader never sees a
 * half-written file: write tmp/UNIQUE, fsync it, rename it into new/, and
 * fsync new/ so that the rename itself survives a crash.  Those fsyncs
 * would stall the agent's loop, so each delivery runs on a worker thread
 * of a workq and completes on the loop, where done() is called with
 * OUTCOME_DELIVERED and the file name as the provider's message id.  Any
 * failure of the disk (ENOSPC, EIO, a vanished folder) is
 * OUTCOME_TRANSIENT with the errno text: the message is not at fault.
 * Workers only read the job (borrowed until done()) and write their own
 * record; everything else happens on the loop thread.
 */
#include "agent/connector.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "common/workq.h"
#include "link/link.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAILDIR_THREADS 2
#define MAILDIR_UNIQUE_MAX 160

struct maildir {
	char *name; /* the provider's */
	char *path;
	char *tmp, *new; /* path/tmp, path/new */
	char host[64];   /* for unique names, made safe */
	uint64_t counter;
	struct workq *wq;
	connector_done_cb done;
	void *arg;
	bool closing; /* completions now drop their job */
	int failures; /* consecutive failed deliveries */
};

/* One delivery; filled on the loop, worked on a thread, done on the loop. */
struct maildir_job {
	struct maildir *md;
	struct connector_job *job;
	char unique[MAILDIR_UNIQUE_MAX];
	const char *stage; /* the failing step, or NULL */
	int err;           /* its errno */
};

static int
write_all(int fd, const uint8_t *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n > SSIZE_MAX ? SSIZE_MAX : n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
fsync_dir(const char *path)
{
	int fd, rc, saved;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1)
		return -1;
	rc = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/* On a worker thread: no logging, no loop state, only mj. */
static void
deliver_work(void *arg)
{
	struct maildir_job *mj = arg;
	struct maildir *md = mj->md;
	char tmp[PATH_MAX], dst[PATH_MAX];
	int fd = -1;

	if (snprintf(tmp, sizeof(tmp), "%s/%s", md->tmp, mj->unique) >=
		(int)sizeof(tmp) ||
	    snprintf(dst, sizeof(dst), "%s/%s", md->new, mj->unique) >=
		(int)sizeof(dst)) {
		mj->stage = "path";
		mj->err = ENAMETOOLONG;
		return;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1) {
		mj->stage = "create in tmp/";
		goto fail;
	}
	if (write_all(fd, mj->job->mime, mj->job->mime_len) == -1) {
		mj->stage = "write";
		goto fail;
	}
	if (fsync(fd) == -1) {
		mj->stage = "fsync";
		goto fail;
	}
	if (close(fd) == -1) {
		fd = -1;
		mj->stage = "close";
		goto fail;
	}
	fd = -1;
	if (rename(tmp, dst) == -1) {
		mj->stage = "rename into new/";
		goto fail;
	}
	if (fsync_dir(md->new) == -1) {
		/* The file is in new/: a reader may see it, but it may not
		 * survive a crash, so report the failure and let it retry. */
		mj->stage = "fsync new/";
		mj->err = errno;
		return;
	}
	return;
fail:
	mj->err = errno;
	if (fd != -1)
		close(fd);
	(void)unlink(tmp);
}

/* On the loop. */
static void
deliver_done(void *arg)
{
	struct maildir_job *mj = arg;
	struct maildir *md = mj->md;
	struct connector_result res;
	char detail[LINK_DETAIL_MAX + 1];

	if (md->closing) {
		free(mj);
		return;
	}
	memset(&res, 0, sizeof(res));
	if (mj->stage == NULL) {
		md->failures = 0;
		res.outcome = OUTCOME_DELIVERED;
		res.provider_message_id = mj->unique;
	} else {
		md->failures++;
		snprintf(detail, sizeof(detail), "maildir %s: %s", mj->stage,
			 strerror(mj->err));
		res.outcome = OUTCOME_TRANSIENT;
		res.detail = detail;
	}
	md->done(mj->job, &res, md->arg);
	free(mj);
}

static int
maildir_send(void *state, struct connector_job *job)
{
	struct maildir *md = state;
	struct maildir_job *mj;
	int64_t ms = now_ms();

	if (md->closing)
		return -ESHUTDOWN;
	mj = xcalloc(1, sizeof(*mj));
	mj->md = md;
	mj->job = job;
	/* time.MusecPpidQcounter.host: unique per host without a lock. */
	snprintf(mj->unique, sizeof(mj->unique), "%lld.M%06lldP%ldQ%llu.%s",
		 (long long)(ms / 1000), (long long)(ms % 1000) * 1000,
		 (long)getpid(), (unsigned long long)++md->counter, md->host);
	workq_submit(md->wq, deliver_work, deliver_done, mj);
	return 0;
}

static int
maildir_health(void *state)
{
	struct maildir *md = state;

	if (access(md->tmp, W_OK | X_OK) != 0 ||
	    access(md->new, W_OK | X_OK) != 0)
		return LINK_HEALTH_DOWN;
	if (md->failures > 0)
		return LINK_HEALTH_DEGRADED;
	return LINK_HEALTH_OK;
}

static void
maildir_free(struct maildir *md)
{
	if (md == NULL)
		return;
	free(md->name);
	free(md->path);
	free(md->tmp);
	free(md->new);
	free(md);
}

static void
maildir_close(void *state)
{
	struct maildir *md = state;

	if (md == NULL)
		return;
	md->closing = true;
	/* Waits for the writes under way; their completions drop the job. */
	if (md->wq != NULL)
		workq_free(md->wq);
	maildir_free(md);
}

static void
host_safe(char *buf, size_t bufsz)
{
	size_t i;

	if (gethostname(buf, bufsz) != 0 || buf[0] == '\0')
		snprintf(buf, bufsz, "localhost");
	buf[bufsz - 1] = '\0';
	/* '/' and ':' have special meanings in maildir names. */
	for (i = 0; buf[i] != '\0'; i++)
		if (!((buf[i] >= 'a' && buf[i] <= 'z') ||
		      (buf[i] >= 'A' && buf[i] <= 'Z') ||
		      (buf[i] >= '0' && buf[i] <= '9') || buf[i] == '-' ||
		      buf[i] == '.'))
			buf[i] = '_';
}

static int
maildir_open(const struct provider_config *pc, struct event_base *base,
	     connector_done_cb done, void *arg, void **state, char *err,
	     size_t errlen)
{
	struct maildir *md = NULL;
	const char *path;
	char *cur = NULL;
	int rc;

	path = provider_config_get(pc, "path");
	if (path == NULL || path[0] == '\0') {
		snprintf(err, errlen,
			 "provider %s: maildir needs the key 'path' (a folder)",
			 pc->name);
		return -EINVAL;
	}
	md = xcalloc(1, sizeof(*md));
	md->name = xstrdup(pc->name);
	md->path = xstrdup(path);
	md->tmp = xasprintf("%s/tmp", path);
	md->new = xasprintf("%s/new", path);
	md->done = done;
	md->arg = arg;
	host_safe(md->host, sizeof(md->host));
	cur = xasprintf("%s/cur", path);
	rc = mkdir_p(md->tmp, 0700);
	if (rc == 0)
		rc = mkdir_p(md->new, 0700);
	if (rc == 0)
		rc = mkdir_p(cur, 0700);
	if (rc != 0) {
		snprintf(err, errlen,
			 "provider %s: cannot create maildir %s: %s", pc->name,
			 path, strerror(-rc));
		goto fail;
	}
	if (maildir_health(md) == LINK_HEALTH_DOWN) {
		snprintf(err, errlen, "provider %s: maildir %s is not writable",
			 pc->name, path);
		rc = -EACCES;
		goto fail;
	}
	md->wq = workq_new(base, MAILDIR_THREADS);
	if (md->wq == NULL) {
		snprintf(err, errlen, "provider %s: cannot start workers",
			 pc->name);
		rc = -ENOMEM;
		goto fail;
	}
	free(cur);
	*state = md;
	return 0;
fail:
	free(cur);
	maildir_free(md);
	return rc;
}

/*
 * The section's keys: "path" is optional, a folder under data_dir by
 * default (SPEC.md's embedded default), but never empty.
 */
static void
maildir_config_check(struct provider_config *pc, const struct config *cfg,
		     struct config_report *r)
{
	const char *path = provider_config_get(pc, "path");
	char *def;

	if (path != NULL && path[0] == '\0') {
		config_report_error(r, provider_config_line(pc, "path"),
				    "path: must not be empty");
		return;
	}
	if (path == NULL) {
		def = xasprintf("%s/maildir/%s", cfg->data_dir, pc->name);
		provider_config_default(pc, "path", def);
		free(def);
	}
}

static const char *const maildir_optional[] = {"path", NULL};

static const struct config_ptype maildir_config = {
    .name = "maildir",
    .optional = maildir_optional,
    .check = maildir_config_check,
};

static const struct connector_ops maildir_ops = {
    .name = "maildir",
    .config = &maildir_config,
    .open = maildir_open,
    .send = maildir_send,
    .health = maildir_health,
    .close = maildir_close,
};

CONNECTOR_REGISTER(maildir_ops)
