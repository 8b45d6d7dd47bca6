/*
 * The store's front: the names of statuses and outcomes, freeing the
 * structures the store hands out, and the public entry points, which check
 * their arguments and forward to the backend (store_int.h).
 *
 * A NULL store, message or required callback is a bug in the caller and
 * fatal.  A message or update whose fields are out of range is not: the
 * operation is still queued, in order, and its callback gets -EINVAL, so
 * callers see one way of failing.  The front owns the struct store and the
 * backend it opened.
 */
#include "store/store.h"
#include "store/store_int.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct store {
	const struct store_ops *ops;
	struct store_backend *be;
};

static const char *const status_names[MSG_NSTATUS] = {
    [MSG_QUEUED] = "queued",
    [MSG_SENDING] = "sending",
    [MSG_DELIVERED] = "delivered",
    [MSG_FAILED] = "failed",
};

const char *
msg_status_name(int status)
{
	if (status < 0 || status >= MSG_NSTATUS)
		return "unknown";
	return status_names[status];
}

int
msg_status_parse(const char *s)
{
	size_t i;

	if (s == NULL)
		return -1;
	for (i = 0; i < ARRAY_SIZE(status_names); i++)
		if (strcmp(s, status_names[i]) == 0)
			return (int)i;
	return -1;
}

void
store_message_free(struct store_message *m)
{
	size_t i;

	if (m == NULL)
		return;
	free(m->mail_from);
	for (i = 0; i < m->nrcpt; i++)
		free(m->rcpt[i]);
	free(m->rcpt);
	free(m->header_from);
	free(m->subject);
	free(m->to_json);
	free(m->tags_json);
	free(m->mime);
	free(m->tried);
	free(m->provider);
	free(m->provider_message_id);
	free(m->error);
	free(m);
}

void
store_attempt_cleanup(struct store_attempt *a)
{
	if (a == NULL)
		return;
	free(a->provider);
	free(a->detail);
	a->provider = NULL;
	a->detail = NULL;
}

const char *
store_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -ENOENT:
		return "no such message";
	case -EEXIST:
		return "message id already stored";
	case -EINVAL:
		return "invalid message or update";
	case -ESHUTDOWN:
		return "store is closing";
	case STORE_ENEWER:
		return "database was written by a newer version";
	case -ENOSPC:
		return "disk full";
	case -EIO:
		return "database error";
	default:
		return err < 0 ? strerror(-err) : "unknown error";
	}
}

int
store_open(const char *dir, struct event_base *base, struct store **out)
{
	struct store *st;
	int rc;

	if (dir == NULL || base == NULL || out == NULL)
		fatalx("store_open: NULL argument");
	*out = NULL;
	st = xcalloc(1, sizeof(*st));
	st->ops = &store_sqlite_ops;
	rc = st->ops->open(dir, base, &st->be);
	if (rc != 0)
		goto fail;
	*out = st;
	return 0;
fail:
	free(st);
	return rc;
}

void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	st->ops->close(st->be);
	free(st);
}

int
store_scan(struct store *st,
	   void (*each)(void *arg, int64_t rowid, int64_t next_ms), void *arg,
	   int64_t counts[MSG_NSTATUS])
{
	if (st == NULL)
		fatalx("store_scan: NULL store");
	return st->ops->scan(st->be, each, arg, counts);
}

static bool
message_valid(const struct store_message *m)
{
	size_t i;

	if (m->status < 0 || m->status >= MSG_NSTATUS)
		return false;
	if (m->id[0] != '\0' && memchr(m->id, '\0', sizeof(m->id)) == NULL)
		return false;
	if (m->mail_from == NULL || m->nrcpt == 0 || m->rcpt == NULL)
		return false;
	for (i = 0; i < m->nrcpt; i++)
		if (m->rcpt[i] == NULL)
			return false;
	if (m->mime == NULL && m->mime_len != 0)
		return false;
	return true;
}

void
store_submit(struct store *st, struct store_message *m, const char *idem_key,
	     store_submit_cb cb, void *arg)
{
	if (st == NULL || m == NULL || cb == NULL)
		fatalx("store_submit: NULL argument");
	st->ops->submit(st->be, message_valid(m) ? 0 : -EINVAL, m, idem_key, cb,
			arg);
}

void
store_update(struct store *st, const struct store_update *u, store_done_cb cb,
	     void *arg)
{
	int err = 0;

	if (st == NULL || u == NULL)
		fatalx("store_update: NULL argument");
	if (u->status < 0 || u->status >= MSG_NSTATUS || u->rowid <= 0)
		err = -EINVAL;
	if (u->has_attempt &&
	    (u->attempt.outcome < 0 || u->attempt.outcome > OUTCOME_LOST))
		err = -EINVAL;
	st->ops->update(st->be, err, u, cb, arg);
}

void
store_load(struct store *st, const int64_t *rowids, size_t n, store_load_cb cb,
	   void *arg)
{
	if (st == NULL || cb == NULL || (rowids == NULL && n > 0))
		fatalx("store_load: NULL argument");
	st->ops->load(st->be, 0, rowids, n, cb, arg);
}

void
store_get(struct store *st, const char *id, store_get_cb cb, void *arg)
{
	int err = 0;

	if (st == NULL || cb == NULL)
		fatalx("store_get: NULL argument");
	if (id == NULL || strlen(id) >= sizeof(((struct store_message *)0)->id))
		err = -ENOENT;
	st->ops->get(st->be, err, err == 0 ? id : "", cb, arg);
}

void
store_expire(struct store *st, int64_t ttl_cutoff_ms, int64_t idem_cutoff_ms,
	     store_expire_cb cb, void *arg)
{
	if (st == NULL)
		fatalx("store_expire: NULL argument");
	st->ops->expire(st->be, 0, ttl_cutoff_ms, idem_cutoff_ms, cb, arg);
}

/*
 * Until the backends prune by retention, housekeeping forgets idempotency
 * keys through the expire operation (with no TTL cut-off: TTL is the
 * dispatcher's policy) and reports nothing pruned.
 */
struct housekeep_ctx {
	store_housekeep_cb cb;
	void *arg;
};

static void
housekeep_done(void *arg, int err, const int64_t *rowids, size_t n)
{
	struct housekeep_ctx *c = arg;
	int64_t pruned[MSG_NSTATUS] = {0};

	if (c->cb != NULL)
		c->cb(c->arg, err, pruned);
	free(c);
}

void
store_housekeep(struct store *st, int64_t idem_cutoff_ms,
		int64_t retention_cutoff_ms, store_housekeep_cb cb, void *arg)
{
	struct housekeep_ctx *c;

	if (st == NULL)
		fatalx("store_housekeep: NULL argument");
	c = xcalloc(1, sizeof(*c));
	c->cb = cb;
	c->arg = arg;
	st->ops->expire(st->be, 0, 0, idem_cutoff_ms, housekeep_done, c);
}

bool
store_healthy(const struct store *st, const char **why)
{
	if (why != NULL)
		*why = NULL;
	if (st == NULL || st->ops->healthy == NULL)
		return true;
	return st->ops->healthy(st->be, why);
}

size_t
store_pending(const struct store *st)
{
	if (st == NULL)
		return 0;
	return st->ops->pending(st->be);
}

uint64_t
store__commits(const struct store *st)
{
	if (st == NULL || st->ops->commits == NULL)
		return 0;
	return st->ops->commits(st->be);
}
