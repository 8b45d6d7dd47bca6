/*
 * The SQLite backend of the store: its queue, its writer thread, and the
 * completion of operations on the loop.
 *
 * One connection, owned by one writer thread, does all the work.  The loop
 * thread queues operations (a mutex and a condition variable guard a FIFO);
 * the writer takes everything queued (at most BATCH_MAX at a time), runs it
 * inside one BEGIN IMMEDIATE ... COMMIT (store_sqlite_ops.c) and then posts
 * the whole batch to the loop through one mailbox closure, which runs the
 * callbacks in submission order.  Operations that arrive while a commit is
 * being flushed share the next commit: that is group commit, and it is
 * what lets one fsync carry hundreds of messages.  Reads travel the same
 * queue, so they see every write submitted before them.
 *
 * Health: a batch the disk refused (full, I/O error) makes the store
 * unhealthy, with a static reason, until a later write commits; while
 * unhealthy the writer also tries one small write a second (idle or not),
 * so the flag clears when space comes back even if nothing else writes.
 *
 * Metrics: the writer times each batch (BEGIN to the end of COMMIT) and
 * counts its operations into the commit histograms (store_commit_stats).
 *
 * Opening, the schema and recovery are in store_sqlite_schema.c.  Out of
 * memory is fatal, as everywhere (xmalloc).
 */
#include "store/store_sqlite.h"
#include "common/log.h"
#include "common/util.h"
#include "common/workq.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Rounds of draining at close before giving up on callbacks that resubmit. */
#define CLOSE_DRAIN_ROUNDS 1000
/* SQLite's own ceiling on a string or row (SQLITE_MAX_LENGTH's default). */
#define SQLITE_LENGTH_CEILING 1000000000LL

/* Appends op to the writer's queue and wakes it at the end of the turn. */
static void
queue_op(struct store_backend *be, struct op *op)
{
	op->next = NULL;
	pthread_mutex_lock(&be->lock);
	*be->tail = op;
	be->tail = &op->next;
	be->queued++;
	if (!op->lazy)
		be->eager++;
	pthread_mutex_unlock(&be->lock);
	if (!be->kick_armed) {
		be->kick_armed = true;
		event_active(be->kick, EV_TIMEOUT, 1);
	}
}

/*
 * Housekeeping's end of a run: a chunk committed and more is left, so it
 * goes back to the queue behind what came meanwhile (false); or it is done
 * (or failed) and its callback gets the total.
 */
static bool
housekeep_complete(struct store_backend *be, struct op *op)
{
	int i;

	if (op->err == 0)
		for (i = 0; i < MSG_NSTATUS; i++)
			op->u.hk.total[i] += op->u.hk.chunk[i];
	if (op->err == 0 && op->u.hk.more) {
		if (!be->closing) {
			queue_op(be, op);
			return false;
		}
		op->err = -ESHUTDOWN;
	}
	if (op->cb.housekeep != NULL)
		op->cb.housekeep(op->arg, op->err, op->u.hk.total);
	return true;
}

/* Runs one op's callback; false when op went back to the queue instead. */
static bool
complete_op(struct store_backend *be, struct op *op)
{
	struct store_message *m;

	switch (op->kind) {
	case OP_SUBMIT:
		m = op->u.submit.m;
		if (op->err != 0) {
			op->cb.submit(op->arg, op->err, m->id, false, NULL);
			store_message_free(m);
		} else if (op->u.submit.dup) {
			op->cb.submit(op->arg, 0, op->u.submit.dup_id, true,
				      NULL);
			store_message_free(m);
		} else
			op->cb.submit(op->arg, 0, m->id, false, m);
		break;
	case OP_UPDATE:
	case OP_EXEC:
		if (op->cb.done != NULL)
			op->cb.done(op->arg, op->err);
		break;
	case OP_LOAD:
		if (op->err != 0) {
			/* Drop what was loaded, but keep the error: the
			 * caller must learn that its rowids were not read. */
			int err = op->err;
			store__op_reset(op);
			op->err = err;
		}
		op->cb.load(op->arg, op->err, op->u.load.msgs,
			    op->u.load.nmsgs);
		op->u.load.msgs = NULL; /* the callback took them */
		op->u.load.nmsgs = 0;
		break;
	case OP_GET:
		op->cb.get(op->arg, op->err, op->u.get.m, op->u.get.att,
			   op->u.get.natt);
		store__op_reset(op);
		break;
	case OP_HOUSEKEEP:
		return housekeep_complete(be, op);
	case OP_LIST:
	case OP_RETRY:
	case OP_OLDEST:
		store__list_complete(op);
		break;
	case OP_OUTBOX_ADD:
	case OP_OUTBOX_CLAIM:
	case OP_OUTBOX_FINISH:
		store__outbox_complete(op);
		break;
	}
	return true;
}

/* On the loop: runs the callbacks of a batch in order and frees it. */
static void
complete_batch(void *arg)
{
	struct op *op = arg, *next;
	struct store_backend *be;

	for (; op != NULL; op = next) {
		next = op->next;
		be = op->be;
		if (!complete_op(be, op))
			continue;
		atomic_fetch_sub(&be->pending, 1);
		free(op);
	}
}

static bool
probe_due(const struct store_backend *be)
{
	return atomic_load(&be->unhealthy) != NULL &&
	       mono_ms() >= be->probe_ms + be->probe_wait;
}

/* Tries a small write; the wait before the next try doubles on failure. */
static void
probe_run(struct store_backend *be)
{
	(void)store__probe(be);
	be->probe_ms = mono_ms();
	if (atomic_load(&be->unhealthy) == NULL)
		be->probe_wait = PROBE_INTERVAL_MS;
	else if (be->probe_wait < PROBE_MAX_MS)
		be->probe_wait = be->probe_wait * 2 > PROBE_MAX_MS
				     ? PROBE_MAX_MS
				     : be->probe_wait * 2;
}

/* ts = now + us on the condition variable's clock (CLOCK_MONOTONIC). */
static void
deadline_in(struct timespec *ts, int64_t us)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += us / 1000000;
	ts->tv_nsec += (us % 1000000) * 1000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

/*
 * Waits for work.  While unhealthy it wakes when a probe is due (see
 * probe_run), so health comes back without traffic.  Called and returns
 * with be->lock held.
 */
static void
wait_for_work(struct store_backend *be)
{
	struct timespec ts;
	int64_t left;

	while (be->head == NULL && !be->stopping) {
		if (atomic_load(&be->unhealthy) == NULL) {
			pthread_cond_wait(&be->cond, &be->lock);
			continue;
		}
		if (probe_due(be)) {
			pthread_mutex_unlock(&be->lock);
			probe_run(be);
			pthread_mutex_lock(&be->lock);
			continue;
		}
		left = be->probe_ms + be->probe_wait - mono_ms();
		deadline_in(&ts, left < 0 ? 0 : left * 1000);
		(void)pthread_cond_timedwait(&be->cond, &be->lock, &ts);
	}
}

/*
 * With be->lock held and something queued: when every queued op is lazy
 * (final outcomes that nobody waits on: store_update.lazy), waits up to
 * lazy_wait_us for one that someone does wait on, a submission say, so
 * that both share one flush.  At one or a few SMTP sessions a relayed
 * message's "delivered" otherwise takes a flush of its own, and the next
 * message's insert queues behind it.  Never while unhealthy (the probe's
 * schedule rules then), never past BATCH_MAX, never once stopping.
 */
static void
lazy_hold(struct store_backend *be)
{
	struct timespec ts;

	if (be->eager > 0 || be->queued >= BATCH_MAX || be->stopping ||
	    atomic_load(&be->unhealthy) != NULL)
		return;
	deadline_in(&ts, be->lazy_wait_us);
	be->lazy_holding = true;
	while (be->eager == 0 && be->queued < BATCH_MAX && !be->stopping)
		if (pthread_cond_timedwait(&be->cond, &be->lock, &ts) != 0)
			break;
	be->lazy_holding = false;
}

/*
 * Takes the next batch off the queue: up to BATCH_MAX ops, except that a
 * test-hook op always goes alone (it runs outside any transaction).
 */
static size_t
take_batch(struct store_backend *be, struct op **first)
{
	struct op *last;
	size_t n, eager;

	*first = be->head;
	last = be->head;
	n = 1;
	eager = !last->lazy;
	if (last->kind != OP_EXEC)
		for (; last->next != NULL && last->next->kind != OP_EXEC &&
		       n < BATCH_MAX;
		     n++) {
			last = last->next;
			eager += !last->lazy;
		}
	be->head = last->next;
	if (be->head == NULL)
		be->tail = &be->head;
	last->next = NULL;
	be->queued -= n;
	be->eager -= eager;
	return n;
}

/*
 * Adds what one run of a batch committed to the metrics: usually one
 * commit of its live ops; when the batch was split (each op alone after
 * an op failed late, store__run_batch), its commits share the time and
 * the ops evenly, a rare path where a finer split would cost a clock read
 * per op.
 */
static void
stats_add(struct store_backend *be, const struct op *first, size_t n,
	  uint64_t commits, int64_t us)
{
	const struct op *op;
	uint64_t live = 0, i;

	if (commits == 0)
		return;
	for (i = 0, op = first; i < n; i++, op = op->next)
		if (!op->preset)
			live++;
	pthread_mutex_lock(&be->stats_lock);
	for (i = 0; i < commits; i++)
		store__commit_observe(&be->stats, us / (int64_t)commits,
				      live / commits);
	pthread_mutex_unlock(&be->stats_lock);
}

/*
 * A batch met a damaged page: if it is an index's, say so (a line, and
 * store_damaged_indexes for /metrics) and note it for the next start,
 * which builds it again.  Not rebuilt here: that writes a whole index
 * while every commit waits behind it (see store.md, "Damaged pages").
 * The look reads every index once, on the writer, after the batch's
 * callbacks were posted; at most every INDEX_LOOK_MS, since a damaged
 * table page is met again by each read of it.
 */
static void
index_look(struct store_backend *be)
{
	char names[512];
	int64_t now = mono_ms();
	int n;

	be->damage_met = false;
	if (be->index_look_ms != 0 && now - be->index_look_ms < INDEX_LOOK_MS)
		return;
	be->index_look_ms = now;
	n = store__index_note(be->db, names, sizeof(names));
	if (n < 0) {
		log_warnx("- store index_look_failed err=%d", n);
		return;
	}
	atomic_store(&be->damaged_indexes, (uint64_t)n);
	if (n > 0)
		log_warnx("- store index_damaged index=%s: reads through it "
			  "fail; rows are intact; the next start builds it "
			  "again from its table (store reindexed)",
			  names);
}

static void *
writer_main(void *arg)
{
	struct store_backend *be = arg;
	struct op *first;
	uint64_t commits;
	bool was_healthy;
	int64_t t0;
	size_t n;
	int rc;

	for (;;) {
		pthread_mutex_lock(&be->lock);
		wait_for_work(be);
		if (be->head == NULL) {
			pthread_mutex_unlock(&be->lock);
			break;
		}
		lazy_hold(be);
		n = take_batch(be, &first);
		pthread_mutex_unlock(&be->lock);

		/* A stream of reads proves nothing: probe on schedule. */
		if (probe_due(be))
			probe_run(be);
		was_healthy = atomic_load(&be->unhealthy) == NULL;
		commits = atomic_load(&be->commits);
		t0 = mono_us();
		rc = store__run_batch(be, first, n);
		if (rc != 0) {
			/* A new bout of failures starts with a short wait. */
			if (was_healthy)
				be->probe_wait = PROBE_INTERVAL_MS;
			/*
			 * A COMMIT whose flush failed (fdatasync EIO) has
			 * written its frames to the WAL all the same, with a
			 * valid checksum chain: a crash before the next commit
			 * and the restart's WAL recovery brought the refused
			 * batch back (a submission answered 503, then queued
			 * and sent; its client's retry sent twice with
			 * nothing on record).  A write now puts its frames
			 * over them, before anyone hears of the refusal;
			 * even if its own flush fails too, a process that
			 * dies leaves its frames in the page cache, not the
			 * refused ones.  Only on an I/O error: a full disk
			 * or a busy lock wrote no commit frame.
			 */
			if (rc == -EIO)
				(void)store__scrub(be);
			be->probe_ms = mono_ms();
		}
		stats_add(be, first, n, atomic_load(&be->commits) - commits,
			  mono_us() - t0);
		mailbox_post(be->mb, complete_batch, first);
		if (be->damage_met)
			index_look(be);
	}
	return NULL;
}

/*
 * A new op with extra bytes after it for copies of its strings and arrays
 * (one allocation per op; sizeof(struct op) keeps the tail 8-aligned).
 */
static struct op *
op_new(struct store_backend *be, enum op_kind kind, int err, void *arg,
       size_t extra, char **tail)
{
	struct op *op;

	op = xcalloc(1, sizeof(*op) + extra);
	op->be = be;
	op->kind = kind;
	op->err = err;
	op->preset = err != 0;
	op->arg = arg;
	if (tail != NULL)
		*tail = (char *)(op + 1);
	return op;
}

/*
 * Runs on the loop after the callbacks active in this turn: everything they
 * queued goes to the writer together, so a burst of submissions (say, the
 * clients a batch of completions just answered) shares one commit instead
 * of the first one waking the writer alone.
 */
static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_backend *be = arg;

	be->kick_armed = false;
	pthread_mutex_lock(&be->lock);
	pthread_cond_signal(&be->cond);
	pthread_mutex_unlock(&be->lock);
}

static void
enqueue(struct store_backend *be, struct op *op)
{
	atomic_fetch_add(&be->pending, 1);
	if (be->closing) {
		/* Too late for the writer: fail it, still asynchronously. */
		if (!op->preset) {
			op->err = -ESHUTDOWN;
			op->preset = true;
		}
		mailbox_post(be->mb, complete_batch, op);
		return;
	}
	queue_op(be, op);
}

/* Copies s into *tail and advances it; NULL stays NULL. */
static char *
tail_copy(char **tail, const char *s)
{
	char *p = *tail;
	size_t n;

	if (s == NULL)
		return NULL;
	n = strlen(s) + 1;
	memcpy(p, s, n);
	*tail += n;
	return p;
}

static size_t
strsize(const char *s)
{
	return s == NULL ? 0 : strlen(s) + 1;
}

static void
sqlite_submit(struct store_backend *be, int err, struct store_message *m,
	      const struct store_idem *idem, store_submit_cb cb, void *arg)
{
	struct op *op;
	char *tail;
	int64_t now = now_ms();
	size_t extra = 0;

	if (idem != NULL)
		extra = strsize(idem->key) + strsize(idem->scope);
	op = op_new(be, OP_SUBMIT, err, arg, extra, &tail);
	op->cb.submit = cb;
	op->u.submit.m = m;
	if (idem != NULL) {
		op->u.submit.key = tail_copy(&tail, idem->key);
		op->u.submit.scope = tail_copy(&tail, idem->scope);
		memcpy(op->u.submit.hash, idem->body_hash,
		       sizeof(op->u.submit.hash));
	}
	/* The callback gets m->id even when the front rejected m. */
	m->id[sizeof(m->id) - 1] = '\0';
	if (m->id[0] == '\0')
		id_new(m->id);
	if (m->created_ms == 0)
		m->created_ms = now;
	if (m->updated_ms == 0)
		m->updated_ms = m->created_ms;
	enqueue(be, op);
}

static void
sqlite_update(struct store_backend *be, int err, const struct store_update *u,
	      store_done_cb cb, void *arg)
{
	struct store_update *c;
	struct op *op;
	char *tail;
	size_t extra;

	extra = strsize(u->tried) + strsize(u->provider) +
		strsize(u->provider_message_id) + strsize(u->error) +
		strsize(u->outbox);
	if (u->has_attempt)
		extra +=
		    strsize(u->attempt.provider) + strsize(u->attempt.detail);
	op = op_new(be, OP_UPDATE, err, arg, extra, &tail);
	op->cb.done = cb;
	op->lazy = u->lazy;
	c = &op->u.update.u;
	*c = *u;
	c->tried = tail_copy(&tail, u->tried);
	c->provider = tail_copy(&tail, u->provider);
	c->provider_message_id = tail_copy(&tail, u->provider_message_id);
	c->error = tail_copy(&tail, u->error);
	c->outbox = tail_copy(&tail, u->outbox);
	if (u->has_attempt) {
		/* In the op's tail: never store_attempt_cleanup() these. */
		c->attempt.provider = tail_copy(&tail, u->attempt.provider);
		c->attempt.detail = tail_copy(&tail, u->attempt.detail);
	} else {
		c->attempt.provider = NULL;
		c->attempt.detail = NULL;
	}
	enqueue(be, op);
}

static void
sqlite_load(struct store_backend *be, int err, const int64_t *rowids, size_t n,
	    store_load_cb cb, void *arg)
{
	struct op *op;
	char *tail;

	op = op_new(be, OP_LOAD, err, arg, n * sizeof(int64_t), &tail);
	op->cb.load = cb;
	op->u.load.rowids = (int64_t *)(void *)tail;
	if (n > 0)
		memcpy(op->u.load.rowids, rowids, n * sizeof(int64_t));
	op->u.load.n = n;
	enqueue(be, op);
}

static void
sqlite_get(struct store_backend *be, int err, const char *id, store_get_cb cb,
	   void *arg)
{
	struct op *op;

	op = op_new(be, OP_GET, err, arg, 0, NULL);
	op->cb.get = cb;
	snprintf(op->u.get.id, sizeof(op->u.get.id), "%s", id);
	enqueue(be, op);
}

static void
sqlite_housekeep(struct store_backend *be, int err, int64_t idem_cutoff_ms,
		 int64_t retention_cutoff_ms, store_housekeep_cb cb, void *arg)
{
	struct op *op;

	op = op_new(be, OP_HOUSEKEEP, err, arg, 0, NULL);
	op->cb.housekeep = cb;
	op->u.hk.idem_cutoff = idem_cutoff_ms;
	op->u.hk.retention_cutoff = retention_cutoff_ms;
	enqueue(be, op);
}

static void
sqlite_exec(struct store_backend *be, const char *text, store_done_cb cb,
	    void *arg)
{
	struct op *op;
	char *tail;

	op = op_new(be, OP_EXEC, 0, arg, strsize(text), &tail);
	op->cb.done = cb;
	op->u.exec.sql = tail_copy(&tail, text);
	enqueue(be, op);
}

struct op *
store__op_new(struct store_backend *be, enum op_kind kind, int err, void *arg,
	      size_t extra, char **tail)
{
	return op_new(be, kind, err, arg, extra, tail);
}

void
store__enqueue(struct store_backend *be, struct op *op)
{
	enqueue(be, op);
}

static size_t
sqlite_pending(const struct store_backend *be)
{
	return atomic_load(&be->pending);
}

static uint64_t
sqlite_commits(const struct store_backend *be)
{
	return atomic_load(&be->commits);
}

static void
sqlite_lazy_wait(struct store_backend *be, int64_t us)
{
	pthread_mutex_lock(&be->lock);
	be->lazy_wait_us = us;
	pthread_mutex_unlock(&be->lock);
}

static bool
sqlite_lazy_holding(struct store_backend *be)
{
	bool on;

	pthread_mutex_lock(&be->lock);
	on = be->lazy_holding;
	pthread_mutex_unlock(&be->lock);
	return on;
}

static void
sqlite_commit_stats(struct store_backend *be, struct store_commit_stats *out)
{
	pthread_mutex_lock(&be->stats_lock);
	*out = be->stats;
	pthread_mutex_unlock(&be->stats_lock);
}

static uint64_t
sqlite_unreadable_rows(const struct store_backend *be)
{
	return atomic_load(&be->unreadable_rows);
}

static uint64_t
sqlite_damaged_indexes(const struct store_backend *be)
{
	return atomic_load(&be->damaged_indexes);
}

static bool
sqlite_healthy(const struct store_backend *be, const char **why)
{
	const char *w = atomic_load(&be->unhealthy);

	if (why != NULL)
		*why = w;
	return w == NULL;
}

static void
backend_free(struct store_backend *be)
{
	store__db_close(be);
	if (be->kick != NULL)
		event_free(be->kick);
	mailbox_free(be->mb);
	pthread_mutex_destroy(&be->lock);
	pthread_cond_destroy(&be->cond);
	pthread_mutex_destroy(&be->stats_lock);
	buf_cleanup(&be->json);
	free(be->marker);
	free(be->path);
	free(be->dir);
	free(be);
}

static struct store_backend *
backend_new(const char *dir, const struct store_options *opts)
{
	struct store_backend *be = xcalloc(1, sizeof(*be));
	pthread_condattr_t ca;

	pthread_mutex_init(&be->lock, NULL);
	pthread_mutex_init(&be->stats_lock, NULL);
	/* Monotonic, so the probe's timed wait ignores clock changes. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&be->cond, &ca);
	pthread_condattr_destroy(&ca);
	be->tail = &be->head;
	be->lazy_wait_us = STORE_LAZY_WAIT_US;
	atomic_init(&be->pending, 0);
	atomic_init(&be->commits, 0);
	atomic_init(&be->unhealthy, NULL);
	atomic_init(&be->unreadable_rows, 0);
	atomic_init(&be->damaged_indexes, 0);
	be->probe_wait = PROBE_INTERVAL_MS;
	be->max_message_bytes = opts->max_message_bytes;
	atomic_init(&be->outbox_max, STORE_OUTBOX_MAX_DEFAULT);
	atomic_init(&be->outbox_horizon, 0);
	atomic_init(&be->outbox_dropped, 0);
	atomic_init(&be->outbox_counts, 0);
	be->outbox_rows = -1;
	buf_init(&be->json, ROW_HEADROOM);
	be->dir = xstrdup(dir);
	be->path = xasprintf("%s/shivneri.db", dir);
	be->marker = xasprintf("%s/shivneri.store", dir);
	be->lock_fd = -1;
	return be;
}

static int
sqlite_open(const char *dir, const struct store_options *opts,
	    struct event_base *base, struct store_backend **out)
{
	struct store_backend *be;
	sigset_t all, old;
	int rc;

	*out = NULL;
	if ((rc = mkdir_p(dir, 0700)) != 0) {
		log_warnx("- store mkdir_failed dir=%s err=%s", dir,
			  strerror(-rc));
		return rc;
	}
	be = backend_new(dir, opts);
	if ((rc = store__db_open(be)) != 0)
		goto fail;
	store__outbox_open(be);
	be->kick = event_new(base, -1, 0, kick_cb, be);
	be->mb = mailbox_new(base);
	if (be->kick == NULL || be->mb == NULL) {
		rc = -EMFILE;
		goto fail;
	}
	/* Signals are the loop's business: the writer blocks them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&be->thread, NULL, writer_main, be);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	be->thread_started = true;
	log_info("- store open path=%s version=%d max_message_bytes=%lld",
		 be->path, STORE_SCHEMA_VERSION,
		 (long long)be->max_message_bytes);
	*out = be;
	return 0;
fail:
	backend_free(be);
	return rc;
}

static void
sqlite_close(struct store_backend *be)
{
	int rounds;

	if (be == NULL)
		return;
	be->closing = true;
	pthread_mutex_lock(&be->lock);
	be->stopping = true;
	pthread_cond_signal(&be->cond);
	pthread_mutex_unlock(&be->lock);
	if (be->thread_started)
		pthread_join(be->thread, NULL);
	/* Callbacks may queue more; those fail with -ESHUTDOWN. */
	for (rounds = 0;
	     atomic_load(&be->pending) > 0 && rounds < CLOSE_DRAIN_ROUNDS;
	     rounds++)
		mailbox_drain(be->mb);
	if (atomic_load(&be->pending) > 0)
		log_warnx("- store close_leaked pending=%zu",
			  atomic_load(&be->pending));
	backend_free(be);
}

static int
sqlite_scan(struct store_backend *be,
	    void (*each)(void *arg, int64_t rowid, int64_t next_ms), void *arg,
	    int64_t counts[MSG_NSTATUS])
{
	return store__db_scan(be, each, arg, counts);
}

const struct store_ops store_sqlite_ops = {
    .name = "sqlite",
    .max_message_bytes = SQLITE_LENGTH_CEILING - ROW_HEADROOM,
    .open = sqlite_open,
    .close = sqlite_close,
    .scan = sqlite_scan,
    .submit = sqlite_submit,
    .update = sqlite_update,
    .load = sqlite_load,
    .get = sqlite_get,
    .housekeep = sqlite_housekeep,
    .pending = sqlite_pending,
    .healthy = sqlite_healthy,
    .commits = sqlite_commits,
    .exec = sqlite_exec,
    .list = store__list_queue,
    .retry = store__retry_queue,
    .oldest = store__oldest_queue,
    .outbox_add = store__sqlite_outbox_add,
    .outbox_claim = store__sqlite_outbox_claim,
    .outbox_finish = store__sqlite_outbox_finish,
    .outbox_dropped = store__sqlite_outbox_dropped,
    .outbox_set_max = store__sqlite_outbox_set_max,
    .outbox_set_horizon = store__sqlite_outbox_set_horizon,
    .outbox_counts = store__sqlite_outbox_counts,
    .lazy_wait = sqlite_lazy_wait,
    .lazy_holding = sqlite_lazy_holding,
    .commit_stats = sqlite_commit_stats,
    .unreadable_rows = sqlite_unreadable_rows,
    .damaged_indexes = sqlite_damaged_indexes,
};
