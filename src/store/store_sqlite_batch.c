/*
 * The SQLite backend's batch: the writer's queued operations run in one
 * transaction (store_sqlite_ops.c says what each does), and what happens
 * when one fails.  An error of an operation's own data, raised before it
 * wrote, fails that operation alone and the batch goes on; a damaged row
 * (SQLite then refuses the rest of the transaction) fails its operation
 * and the batch runs again without it (a load's or get's row is answered
 * as unreadable, an update fails alone with STORE_EDAMAGED, any other op
 * with -EIO); an operation's own error
 * after it wrote sends each operation to a transaction of its own; anything
 * else (disk full, I/O) fails the whole batch and marks the store unhealthy
 * until a write commits again: the probe (a row of zeros, once a second
 * while unhealthy) and the scrub after a failed flush (store_sqlite.c).
 */
#include "store/store_sqlite.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <string.h>

/* run_batch_once: roll back and run the batch again (not an errno). */
#define BATCH_RERUN 1
/*
 * Operations of one batch that may fail alone on a damaged page (see
 * op_damaged); past it the damage is taken for the database's, and the
 * batch fails whole, as for an I/O error.  Reads that walk many pages (a
 * listing, housekeeping, the oldest queued) get DAMAGED_OPS_MAX; updates,
 * each of one row, get DAMAGED_UPDATES_MAX: the rows of a damaged leaf
 * page (up to about a hundred) are answered unreadable by one load, and
 * the dispatcher fails each of them in one batch (record.c), so at 8 the
 * batch failed whole, the store went unhealthy and every innocent write
 * of it failed too.  One more run of the batch per damaged update, as a
 * load costs one per damaged row.
 */
#define DAMAGED_OPS_MAX 8
#define DAMAGED_UPDATES_MAX 256

/* Errors that belong to one operation's data, not to the database. */
static bool
err_local(int err)
{
	return err == -EEXIST || err == -EINVAL || err == -EFBIG;
}

/*
 * Whether op's error leaves the batch usable: an error of its own data,
 * raised before it wrote anything, with the transaction still open (SQLite
 * undid the failed statement, nothing else of the op is there to undo).
 */
static bool
op_local(struct store_backend *be, const struct op *op, int err)
{
	return err_local(err) && !op->wrote && !sqlite3_get_autocommit(be->db);
}

static void
rollback(struct store_backend *be)
{
	/* Some errors (disk full, I/O) have rolled back already. */
	if (!sqlite3_get_autocommit(be->db) &&
	    store__step_once(be, ST_ROLLBACK, NULL) != 0)
		store__outbox_forget(be); /* what stays is unknown */
}

/*
 * Why the store is unhealthy after err: a static text, never anything from
 * a message.  NULL for an error that says nothing about the disk.
 */
static const char *
err_reason(struct store_backend *be, int err)
{
	if (err_local(err))
		return NULL;
	if (err == -ENOSPC)
		return "disk full";
	return sqlite3_errstr(sqlite3_extended_errcode(be->db));
}

/* Runs ops alone, each in its own transaction (see store__run_batch). */
static void
run_alone(struct store_backend *be, struct op *first, size_t n)
{
	struct op *op;
	size_t i;

	for (i = 0, op = first; i < n; i++, op = op->next)
		(void)store__run_batch(be, op, 1);
}

/* Every live op of the batch fails with err. */
static void
fail_all(struct op *first, size_t n, int err)
{
	struct op *op;
	size_t i;

	for (i = 0, op = first; i < n; i++, op = op->next) {
		if (op->preset)
			continue;
		store__op_reset(op);
		op->err = err;
	}
}

static size_t
live_ops(const struct op *first, size_t n)
{
	const struct op *op;
	size_t i, live = 0;

	for (i = 0, op = first; i < n; i++, op = op->next)
		if (!op->preset)
			live++;
	return live;
}

/* The op's kind, for a log line. */
static const char *
op_kind_name(enum op_kind k)
{
	switch (k) {
	case OP_SUBMIT:
		return "submit";
	case OP_UPDATE:
		return "update";
	case OP_LOAD:
		return "load";
	case OP_GET:
		return "get";
	case OP_HOUSEKEEP:
		return "housekeep";
	case OP_EXEC:
		return "exec";
	case OP_LIST:
		return "list";
	case OP_RETRY:
		return "retry";
	case OP_OLDEST:
		return "oldest";
	case OP_OUTBOX_ADD:
	case OP_OUTBOX_CLAIM:
	case OP_OUTBOX_FINISH:
		return "outbox";
	}
	return "?";
}

/*
 * Whether op's error was a read of a damaged page (SQLITE_CORRUPT) that
 * no load or get took as its row's (row_unreadable): a listing, a
 * housekeeping chunk, the oldest queued message, an update of a row next
 * to the page.  That is a fault of the rows op reads, not of the disk:
 * op fails alone with -EIO and the batch runs again without it (SQLite
 * refuses the COMMIT of a transaction that read a damaged page), so the
 * others commit and the store stays healthy.  Before, one /metrics scrape
 * whose oldest queued message was on a damaged page failed every
 * submission of its batch and marked the store unhealthy.  At most
 * DAMAGED_OPS_MAX such ops per batch (be->damaged_ops).
 */
static bool
op_damaged(struct store_backend *be, struct op *op)
{
	bool update = op != NULL && op->kind == OP_UPDATE;

	if (op == NULL || be->unreadable_hit ||
	    (sqlite3_extended_errcode(be->db) & 0xff) != SQLITE_CORRUPT)
		return false;
	if (update ? be->damaged_updates >= DAMAGED_UPDATES_MAX
		   : be->damaged_ops >= DAMAGED_OPS_MAX)
		return false;
	if (update)
		be->damaged_updates++;
	else
		be->damaged_ops++;
	log_warnx_rl(&be->damaged_rl, 10000,
		     "- store damaged_page op=%s: it meets a damaged page and "
		     "fails alone",
		     op_kind_name(op->kind));
	store__op_reset(op);
	/*
	 * An update that cannot read its row's page will fail the same way
	 * until the next start rebuilds the table: its caller must tell
	 * that from a disk that failed the whole batch (-EIO, -ENOSPC), which
	 * may work again (store.h, store_update).
	 */
	op->err = update ? STORE_EDAMAGED : -EIO;
	op->preset = true;
	return true;
}

/* One run of a batch; see store__run_batch. */
static int
run_batch_once(struct store_backend *be, struct op *first, size_t n)
{
	const char *why;
	struct op *op, *culprit = NULL;
	int64_t now = now_ms();
	size_t i, live = live_ops(first, n);
	bool wrote = false;
	int rc;

	if (live == 0)
		return 0;
	/* The test hook comes alone (writer_main) and outside a batch. */
	if (first->kind == OP_EXEC) {
		first->err = store__exec_op(be, first, now);
		/* Its SQL may have added or deleted outbox rows. */
		store__outbox_forget(be);
		return first->err;
	}
	/* BEGIN IMMEDIATE waits out the busy timeout: fail all at once. */
	if ((rc = store__step_once(be, ST_BEGIN, NULL)) != 0)
		goto fail;
	memset(be->count_delta, 0, sizeof(be->count_delta));
	store__outbox_begin(be);
	for (i = 0, op = first; i < n; i++, op = op->next) {
		if (op->preset)
			continue;
		store__op_reset(op);
		rc = store__exec_op(be, op, now);
		wrote = wrote || op->wrote;
		if (rc == 0)
			continue;
		if (!op_local(be, op, rc)) {
			culprit = op;
			goto fail;
		}
		store__op_reset(op);
		op->err = rc;
	}
	if ((rc = store__count_flush(be)) != 0)
		goto fail;
	if ((rc = store__step_once(be, ST_COMMIT, NULL)) != 0) {
		/* Whether any of it reached the disk is not ours to know. */
		store__outbox_forget(be);
		goto fail;
	}
	atomic_fetch_add(&be->commits, 1);
	store__outbox_commit(be);
	/* Only a write proves that writes work again. */
	if (wrote && atomic_load(&be->unhealthy) != NULL) {
		log_info("- store healthy after=write");
		atomic_store(&be->unhealthy, NULL);
	}
	return 0;
fail:
	if (be->unreadable_hit) {
		/* A damaged row poisoned the transaction: run it again. */
		rollback(be);
		return BATCH_RERUN;
	}
	if (op_damaged(be, culprit)) {
		rollback(be);
		return BATCH_RERUN;
	}
	why = err_reason(be, rc);
	rollback(be);
	if (why == NULL && live > 1) {
		/*
		 * An op's own error after it wrote (rare: the cheap ordering in
		 * exec_* makes the usual ones come first): only running each
		 * op alone tells the guilty from the innocent.
		 */
		log_warnx("- store batch_failed ops=%zu err=%d retry=alone", n,
			  rc);
		run_alone(be, first, n);
		return 0;
	}
	fail_all(first, n, rc);
	if (why != NULL) {
		log_warnx("- store unhealthy ops=%zu err=%d why=\"%s\"", n, rc,
			  why);
		atomic_store(&be->unhealthy, why);
	}
	return rc;
}

int
store__run_batch(struct store_backend *be, struct op *first, size_t n)
{
	int rc;

	be->damaged_ops = 0;
	be->damaged_updates = 0;
	do {
		be->unreadable_hit = false;
		rc = run_batch_once(be, first, n);
		/* Only damage makes a run again: is it an index's? */
		if (rc == BATCH_RERUN)
			be->damage_met = true;
	} while (rc == BATCH_RERUN);
	return rc;
}

int
store__probe(struct store_backend *be)
{
	const char *why;
	int rc = store__probe_write(be, PROBE_BYTES);

	if (rc == 0) {
		atomic_store(&be->unhealthy, NULL);
		log_info("- store healthy probe=ok");
		return 0;
	}
	why = err_reason(be, rc);
	rollback(be);
	if (why != NULL)
		atomic_store(&be->unhealthy, why);
	return rc;
}

int
store__scrub(struct store_backend *be)
{
	int rc = store__probe_write(be, 1);

	if (rc != 0)
		rollback(be);
	return rc;
}
