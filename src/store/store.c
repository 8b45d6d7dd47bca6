/*
 * The store's front: the names of statuses and outcomes, freeing the
 * structures the store hands out, the table of backends looked up by name,
 * and the public entry points, which check their arguments and forward to
 * the backend (store_int.h).
 *
 * A NULL store, message or required callback is a bug in the caller and
 * fatal.  A message or update whose fields are out of range is not: the
 * operation is still queued, in order, and its callback gets -EINVAL (or
 * -EFBIG for a body over the configured cap), so callers see one way of
 * failing.  The front owns the struct store and the backend it opened.
 */
#include "store/store.h"
#include "store/store_int.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The default cap, as the configuration's default max_message_bytes. */
#define DEFAULT_MAX_MESSAGE_BYTES (25LL * 1024 * 1024)

struct store {
	const struct store_ops *ops;
	struct store_backend *be;
	int64_t max_message_bytes;
	/* Messages let go while running (store_unreadable_add); loop only. */
	uint64_t unwritable;
};

/* Every backend of this build; the first is the default. */
static const struct store_ops *const backends[] = {
    &store_sqlite_ops,
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
	case -EFBIG:
		return "message too big to store";
	case STORE_ENEWER:
		return "database was written by a newer version";
	case STORE_ENOBACKEND:
		return "no store backend by that name";
	case STORE_EMISSING:
		return "this folder held a store but its database is missing "
		       "or "
		       "empty: restore shivneri.db, or remove shivneri.store "
		       "to "
		       "start an empty store";
	case STORE_EFOREIGN:
		return "the database is not the one this folder's "
		       "shivneri.store names: restore the right one, or remove "
		       "shivneri.store to adopt it";
	case STORE_EINUSE:
		return "another server has this store open (shivneri.lock "
		       "is locked): one data folder serves one server";
	case STORE_EDAMAGED:
		return "a page of the database is damaged (SQLite finds it "
		       "malformed): the rows on it fail alone until the next "
		       "start rebuilds the table without them; a start that "
		       "refuses needs shivneri.db restored from a backup, or "
		       "rebuilt with sqlite3's .recover (see "
		       "docs/internals/store.md, \"Damaged pages\")";
	case -EISDIR:
		return "the database path is a folder";
	case STORE_ECONFLICT:
		return "idempotency key already used for another request";
	case -EOVERFLOW:
		return "max_message_bytes is more than the store can hold";
	case -ENOSPC:
		return "disk full";
	case -EIO:
		return "database error";
	case STORE_ENOTFAILED:
		return "message is not failed";
	default:
		return err < 0 ? strerror(-err) : "unknown error";
	}
}

const struct store_ops *
store_lookup(const char *name)
{
	size_t i;

	if (name == NULL)
		return backends[0];
	for (i = 0; i < ARRAY_SIZE(backends); i++)
		if (strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

int64_t
store_max_message_bytes(const char *backend)
{
	const struct store_ops *ops = store_lookup(backend);

	return ops != NULL ? ops->max_message_bytes : -1;
}

int
store_open(const char *dir, const struct store_options *opts,
	   struct event_base *base, struct store **out)
{
	struct store_options o = {NULL, 0};
	struct store *st;
	int rc;

	if (dir == NULL || base == NULL || out == NULL)
		fatalx("store_open: NULL argument");
	*out = NULL;
	if (opts != NULL)
		o = *opts;
	if (o.backend == NULL)
		o.backend = backends[0]->name;
	if (o.max_message_bytes == 0)
		o.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES;
	st = xcalloc(1, sizeof(*st));
	st->ops = store_lookup(o.backend);
	if (st->ops == NULL) {
		log_warnx("- store unknown_backend name=%s", o.backend);
		rc = STORE_ENOBACKEND;
		goto fail;
	}
	if (o.max_message_bytes < 0 ||
	    o.max_message_bytes > st->ops->max_message_bytes) {
		log_warnx(
		    "- store cap_too_big backend=%s max_message_bytes=%lld "
		    "limit=%lld",
		    o.backend, (long long)o.max_message_bytes,
		    (long long)st->ops->max_message_bytes);
		rc = -EOVERFLOW;
		goto fail;
	}
	st->max_message_bytes = o.max_message_bytes;
	rc = st->ops->open(dir, &o, base, &st->be);
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

uint64_t
store_unreadable_rows(const struct store *st)
{
	if (st == NULL)
		return 0;
	if (st->ops->unreadable_rows == NULL)
		return st->unwritable;
	return st->ops->unreadable_rows(st->be) + st->unwritable;
}

uint64_t
store_damaged_indexes(const struct store *st)
{
	if (st == NULL || st->ops->damaged_indexes == NULL)
		return 0;
	return st->ops->damaged_indexes(st->be);
}

void
store_unreadable_add(struct store *st)
{
	if (st != NULL)
		st->unwritable++;
}

/* 0, -EINVAL for a field out of range, -EFBIG for a body over the cap. */
static int
message_check(const struct store *st, const struct store_message *m)
{
	size_t i;

	if (m->status < 0 || m->status >= MSG_NSTATUS)
		return -EINVAL;
	if (m->id[0] != '\0' && memchr(m->id, '\0', sizeof(m->id)) == NULL)
		return -EINVAL;
	if (m->mail_from == NULL || m->nrcpt == 0 || m->rcpt == NULL)
		return -EINVAL;
	for (i = 0; i < m->nrcpt; i++)
		if (m->rcpt[i] == NULL)
			return -EINVAL;
	if (m->mime == NULL && m->mime_len != 0)
		return -EINVAL;
	if (m->mime_len > (uint64_t)st->max_message_bytes)
		return -EFBIG;
	return 0;
}

void
store_submit(struct store *st, struct store_message *m,
	     const struct store_idem *idem, store_submit_cb cb, void *arg)
{
	int err;

	if (st == NULL || m == NULL || cb == NULL)
		fatalx("store_submit: NULL argument");
	err = message_check(st, m);
	if (err == 0 && idem != NULL &&
	    (idem->key == NULL || idem->scope == NULL))
		err = -EINVAL;
	st->ops->submit(st->be, err, m, err == 0 ? idem : NULL, cb, arg);
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
	    (u->attempt.outcome < 0 || u->attempt.outcome > OUTCOME_MAX))
		err = -EINVAL;
	if (err == 0 && u->outbox != NULL &&
	    strlen(u->outbox) > STORE_OUTBOX_BODY_MAX)
		err = -EFBIG;
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
store_housekeep(struct store *st, int64_t idem_cutoff_ms,
		int64_t retention_cutoff_ms, store_housekeep_cb cb, void *arg)
{
	if (st == NULL)
		fatalx("store_housekeep: NULL argument");
	st->ops->housekeep(st->be, 0, idem_cutoff_ms, retention_cutoff_ms, cb,
			   arg);
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

uint64_t
store__outbox_counts(const struct store *st)
{
	if (st == NULL || st->ops->outbox_counts == NULL)
		return 0;
	return st->ops->outbox_counts(st->be);
}

void
store__lazy_wait(struct store *st, int64_t us)
{
	if (st == NULL || st->ops->lazy_wait == NULL)
		fatalx("store__lazy_wait: no such hook");
	st->ops->lazy_wait(st->be, us);
}

bool
store__lazy_holding(struct store *st)
{
	if (st == NULL || st->ops->lazy_holding == NULL)
		fatalx("store__lazy_holding: no such hook");
	return st->ops->lazy_holding(st->be);
}

void
store__exec(struct store *st, const char *text, store_done_cb cb, void *arg)
{
	if (st == NULL || text == NULL || st->ops->exec == NULL)
		fatalx("store__exec: no such hook");
	st->ops->exec(st->be, text, cb, arg);
}

void
store_list(struct store *st, const struct store_list_query *q, store_list_cb cb,
	   void *arg)
{
	int err = 0;

	if (st == NULL || q == NULL || cb == NULL)
		fatalx("store_list: NULL argument");
	if (q->status < -1 || q->status >= MSG_NSTATUS || q->limit < 1 ||
	    q->limit > STORE_LIST_MAX || q->scan_max < 0)
		err = -EINVAL;
	if (q->provider != NULL &&
	    (q->provider[0] == '\0' ||
	     strlen(q->provider) > STORE_LIST_PROVIDER_MAX))
		err = -EINVAL;
	if (q->before != NULL &&
	    (q->before[0] == '\0' || strlen(q->before) > STORE_CURSOR_MAX))
		err = -EINVAL;
	st->ops->list(st->be, err, q, cb, arg);
}

void
store_retry(struct store *st, const char *id, store_retry_cb cb, void *arg)
{
	int err = 0;

	if (st == NULL || cb == NULL)
		fatalx("store_retry: NULL argument");
	if (id == NULL || strlen(id) >= sizeof(((struct store_message *)0)->id))
		err = -ENOENT;
	st->ops->retry(st->be, err, err == 0 ? id : "", cb, arg);
}

void
store_oldest_queued(struct store *st, store_oldest_cb cb, void *arg)
{
	if (st == NULL || cb == NULL)
		fatalx("store_oldest_queued: NULL argument");
	st->ops->oldest(st->be, cb, arg);
}

void
store_outbox_add(struct store *st, const char *body, store_done_cb cb,
		 void *arg)
{
	int err = 0;

	if (st == NULL)
		fatalx("store_outbox_add: NULL store");
	if (body == NULL || *body == '\0')
		err = -EINVAL;
	else if (strlen(body) > STORE_OUTBOX_BODY_MAX)
		err = -EFBIG;
	st->ops->outbox_add(st->be, err, err == 0 ? body : "", cb, arg);
}

void
store_outbox_claim(struct store *st, int64_t now_ms, int64_t lease_until_ms,
		   size_t max, int64_t expire_before_ms,
		   store_outbox_claim_cb cb, void *arg)
{
	int err = 0;

	if (st == NULL || cb == NULL)
		fatalx("store_outbox_claim: NULL argument");
	if (max == 0 || max > 1000 || lease_until_ms < now_ms ||
	    expire_before_ms > now_ms)
		err = -EINVAL;
	st->ops->outbox_claim(st->be, err, now_ms, lease_until_ms, max,
			      expire_before_ms, cb, arg);
}

void
store_outbox_rows_free(struct store_outbox_row *rows, size_t n)
{
	size_t i;

	if (rows == NULL)
		return;
	for (i = 0; i < n; i++)
		free(rows[i].body);
	free(rows);
}

void
store_outbox_finish(struct store *st, int64_t seq, int64_t next_ms,
		    store_done_cb cb, void *arg)
{
	if (st == NULL)
		fatalx("store_outbox_finish: NULL store");
	st->ops->outbox_finish(st->be, seq <= 0 ? -EINVAL : 0, seq, next_ms, cb,
			       arg);
}

void
store_outbox_set_max(struct store *st, int64_t max)
{
	if (st == NULL || max <= 0)
		fatalx("store_outbox_set_max: bad argument");
	if (st->ops->outbox_set_max != NULL)
		st->ops->outbox_set_max(st->be, max);
}

void
store_outbox_set_horizon(struct store *st, int64_t ms)
{
	if (st == NULL || ms < 0)
		fatalx("store_outbox_set_horizon: bad argument");
	if (st->ops->outbox_set_horizon != NULL)
		st->ops->outbox_set_horizon(st->be, ms);
}

uint64_t
store_outbox_dropped(const struct store *st)
{
	if (st == NULL || st->ops->outbox_dropped == NULL)
		return 0;
	return st->ops->outbox_dropped(st->be);
}

/*
 * Roughly 1-2.5-5 steps from 100 us (a commit on a fast disk) to 1 s (a
 * disk in trouble); batch sizes in powers of two up to BATCH_MAX.
 */
const int64_t store_commit_bounds_us[STORE_COMMIT_NBOUNDS] = {
    100,   250,   500,   1000,   2500,   5000,
    10000, 25000, 50000, 100000, 250000, 1000000};
const int64_t store_batch_bounds[STORE_BATCH_NBOUNDS] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

void
store__commit_observe(struct store_commit_stats *s, int64_t us, uint64_t ops)
{
	int i;

	if (us < 0)
		us = 0;
	for (i = 0; i < STORE_COMMIT_NBOUNDS && us > store_commit_bounds_us[i];
	     i++)
		;
	s->us_bucket[i]++;
	for (i = 0;
	     i < STORE_BATCH_NBOUNDS && (int64_t)ops > store_batch_bounds[i];
	     i++)
		;
	s->ops_bucket[i]++;
	s->commits++;
	s->us_sum += (uint64_t)us;
	s->ops_sum += ops;
}

void
store_commit_stats(const struct store *st, struct store_commit_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (st != NULL && st->ops->commit_stats != NULL)
		st->ops->commit_stats(st->be, out);
}
