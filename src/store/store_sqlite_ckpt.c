/*
 * The SQLite backend's checkpointer: WAL checkpoints off the writer's
 * critical path.
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that crosses the
 * threshold, on the writer thread: that commit, and every operation queued
 * behind it, waits while the checkpoint copies pages into the database and
 * flushes it (about a fifth of the writer's time under load, and the long
 * tail of acknowledgement latency).  Here the writer's connection has no
 * automatic checkpoint; a hook it runs after each commit (sqlite3_wal_hook,
 * which replaces the automatic one) only compares the WAL's length with two
 * marks:
 *
 * - past CKPT_SOFT_FRAMES it wakes this thread, which runs a PASSIVE
 *   checkpoint on its own connection.  PASSIVE takes no lock that the
 *   writer waits for: the writer goes on committing to the WAL meanwhile.
 * - past CKPT_HARD_FRAMES (the checkpointer has not caught up: a PASSIVE
 *   checkpoint copies only the frames committed when it began, and SQLite
 *   starts the WAL over only when every frame is copied before the next
 *   write begins, which a busy writer never allows), the writer checkpoints
 *   itself, as the automatic checkpoint did; the checkpointer stands back
 *   above that mark so the writer finds the checkpoint lock free.  The WAL
 *   so stays bounded by about CKPT_HARD_FRAMES pages plus one batch.
 *
 * Durability is SQLite's: a checkpoint copies only committed frames, and a
 * crash in the middle of one is repaired from the WAL at the next open;
 * commits stay WAL + synchronous=FULL.  A checkpoint that fails (I/O) is
 * logged, rate-limited, and tried again at the next wake-up; it loses
 * nothing, the WAL only grows until the writer's own checkpoint.
 */
#include "store/store_sqlite.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/*
 * WAL frames (8 KiB pages) before the checkpointer is woken: 2 MiB, what
 * the automatic checkpoint used; small checkpoints copy few pages each.
 */
#define CKPT_SOFT_FRAMES 250
/* WAL frames past which the writer checkpoints itself (32 MiB). */
#define CKPT_HARD_FRAMES 4000

struct store_ckpt {
	sqlite3 *db; /* the checkpointer's own connection */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool wanted;   /* under lock: a checkpoint is due */
	bool stopping; /* under lock */
	/* The WAL's length at the writer's last commit (frames). */
	atomic_int frames;
	/* Counters for the design note's figures and the tests. */
	atomic_uint_fast64_t runs, writer_runs;
	struct log_rl rl;
};

/* A checkpoint on db; 0, or SQLite's code when it failed other than busy. */
static int
ckpt_run(struct store_ckpt *ck, sqlite3 *db, const char *who)
{
	int rc, log_frames = 0, done = 0;

	rc = sqlite3_wal_checkpoint_v2(db, "main", SQLITE_CHECKPOINT_PASSIVE,
				       &log_frames, &done);
	/* Busy: the other side holds the checkpoint lock; it will do. */
	if (rc == SQLITE_OK || rc == SQLITE_BUSY)
		return 0;
	log_warnx_rl(&ck->rl, 10000,
		     "- store checkpoint_failed by=%s err=\"%s\" wal_frames=%d",
		     who, sqlite3_errstr(rc), log_frames);
	return rc;
}

/*
 * On the writer thread, inside the COMMIT that made the WAL nframes long
 * (SQLite's wal hook; returning anything but SQLITE_OK would fail that
 * COMMIT's caller, so errors stay here).
 */
static int
wal_hook(void *arg, sqlite3 *db, const char *name, int nframes)
{
	struct store_ckpt *ck = arg;

	(void)name;
	atomic_store(&ck->frames, nframes);
	if (nframes >= CKPT_HARD_FRAMES) {
		atomic_fetch_add(&ck->writer_runs, 1);
		(void)ckpt_run(ck, db, "writer");
		return SQLITE_OK;
	}
	if (nframes < CKPT_SOFT_FRAMES)
		return SQLITE_OK;
	pthread_mutex_lock(&ck->lock);
	if (!ck->wanted) {
		ck->wanted = true;
		pthread_cond_signal(&ck->cond);
	}
	pthread_mutex_unlock(&ck->lock);
	return SQLITE_OK;
}

static void *
ckpt_main(void *arg)
{
	struct store_ckpt *ck = arg;
	int frames;

	for (;;) {
		pthread_mutex_lock(&ck->lock);
		while (!ck->wanted && !ck->stopping)
			pthread_cond_wait(&ck->cond, &ck->lock);
		ck->wanted = false;
		if (ck->stopping) {
			pthread_mutex_unlock(&ck->lock);
			break;
		}
		pthread_mutex_unlock(&ck->lock);
		/* Above the hard mark the writer checkpoints: stand back. */
		frames = atomic_load(&ck->frames);
		if (frames >= CKPT_HARD_FRAMES)
			continue;
		atomic_fetch_add(&ck->runs, 1);
		(void)ckpt_run(ck, ck->db, "checkpointer");
	}
	return NULL;
}

/* The checkpointer's connection: the same file, in WAL mode already. */
static int
ckpt_db_open(struct store_backend *be, struct store_ckpt *ck)
{
	int rc;

	rc = sqlite3_open_v2(be->path, &ck->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		if (ck->db == NULL)
			return -ENOMEM;
		return store__db_fail(ck->db, rc, "checkpointer_open");
	}
	if (sqlite3_extended_result_codes(ck->db, 1) != SQLITE_OK)
		return store__db_fail(ck->db, sqlite3_errcode(ck->db),
				      "checkpointer_open");
	/*
	 * Its checkpoints flush the WAL before copying and the database
	 * after, as the writer's did.  It never writes, and it closes before
	 * the writer's connection, so the checkpoint SQLite makes when the
	 * last connection closes stays the writer's.
	 */
	return store__exec_sql(ck->db, "PRAGMA synchronous = FULL;");
}

static void
ckpt_free(struct store_ckpt *ck)
{
	if (ck == NULL)
		return;
	if (ck->db != NULL && sqlite3_close(ck->db) != SQLITE_OK)
		log_warnx("- store checkpointer_close_failed err=\"%s\"",
			  sqlite3_errmsg(ck->db));
	pthread_mutex_destroy(&ck->lock);
	pthread_cond_destroy(&ck->cond);
	free(ck);
}

int
store__ckpt_start(struct store_backend *be)
{
	struct store_ckpt *ck = xcalloc(1, sizeof(*ck));
	sigset_t all, old;
	int rc;

	pthread_mutex_init(&ck->lock, NULL);
	pthread_cond_init(&ck->cond, NULL);
	atomic_init(&ck->frames, 0);
	atomic_init(&ck->runs, 0);
	atomic_init(&ck->writer_runs, 0);
	if ((rc = ckpt_db_open(be, ck)) != 0)
		goto fail;
	/* Signals are the loop's business. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&ck->thread, NULL, ckpt_main, ck);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	/* Replaces the automatic checkpoint of the writer's connection. */
	(void)sqlite3_wal_hook(be->db, wal_hook, ck);
	be->ckpt = ck;
	return 0;
fail:
	ckpt_free(ck);
	return rc;
}

void
store__ckpt_stop(struct store_backend *be)
{
	struct store_ckpt *ck = be->ckpt;

	if (ck == NULL)
		return;
	/* No more wake-ups: the writer is stopped or never started. */
	if (be->db != NULL)
		(void)sqlite3_wal_hook(be->db, NULL, NULL);
	pthread_mutex_lock(&ck->lock);
	ck->stopping = true;
	pthread_cond_signal(&ck->cond);
	pthread_mutex_unlock(&ck->lock);
	pthread_join(ck->thread, NULL);
	log_debug("- store checkpointer_stop runs=%" PRIuFAST64
		  " writer_runs=%" PRIuFAST64,
		  atomic_load(&ck->runs), atomic_load(&ck->writer_runs));
	ckpt_free(ck);
	be->ckpt = NULL;
}
