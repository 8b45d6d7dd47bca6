/*
 * sqlite_commit: what SQLite itself allows on the data directory's disk in
 * the mode the store uses (journal_mode=WAL, synchronous=FULL): first one
 * row per transaction for --seconds (commits/s, each commit an fsync of the
 * WAL), then --batch rows per transaction for --seconds (rows/s).  The gap
 * between the two numbers is what group commit in the store can win; the
 * first number is the ceiling of an intake that commits per message.
 *
 * The table is shaped like a message row (a text id, a --size byte blob).
 * The scratch database and its -wal and -shm files are removed on exit;
 * any SQLite error ends the run with status 1 and the library's message.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "sorted.h"

#define MAX_SAMPLES (20u << 20)
#define MAX_SIZE (1u << 20)
#define MAX_BATCH 100000

struct phase {
	uint64_t commits;
	uint64_t rows;
	double elapsed;
	uint32_t *lat; /* per commit, microseconds */
	size_t n, cap;
};

static int
exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
		fprintf(stderr, "sqlite_commit: %s: %s\n", sql,
			err != NULL ? err : sqlite3_errmsg(db));
		sqlite3_free(err);
		return -1;
	}
	return 0;
}

static int
sample_add(struct phase *ph, uint64_t us)
{
	if (ph->n == ph->cap) {
		size_t ncap = ph->cap == 0 ? 65536 : ph->cap * 2;
		uint32_t *nl;

		if (ncap > MAX_SAMPLES)
			return 0; /* enough samples: keep counting only */
		nl = realloc(ph->lat, ncap * sizeof(*nl));
		if (nl == NULL)
			return -1;
		ph->lat = nl;
		ph->cap = ncap;
	}
	ph->lat[ph->n++] = (uint32_t)(us > UINT32_MAX ? UINT32_MAX : us);
	return 0;
}

/*
 * Runs transactions of batch rows each for seconds.  *next numbers the
 * rows across phases so that ids stay unique.  0 or -1.
 */
static int
run_phase(sqlite3 *db, sqlite3_stmt *ins, const void *body, int size, int batch,
	  double seconds, uint64_t *next, struct phase *ph)
{
	char id[32];
	uint64_t start, end, t0, t1;
	int i;

	start = mono_us();
	end = start + (uint64_t)(seconds * 1e6);
	for (t1 = start; t1 < end;) {
		t0 = mono_us();
		if (exec(db, "BEGIN IMMEDIATE") < 0)
			return -1;
		for (i = 0; i < batch; i++) {
			snprintf(id, sizeof(id), "m%016" PRIx64, (*next)++);
			if (sqlite3_bind_text(ins, 1, id, -1,
					      SQLITE_TRANSIENT) != SQLITE_OK ||
			    sqlite3_bind_blob(ins, 2, body, size,
					      SQLITE_STATIC) != SQLITE_OK ||
			    sqlite3_step(ins) != SQLITE_DONE) {
				fprintf(stderr, "sqlite_commit: insert: %s\n",
					sqlite3_errmsg(db));
				return -1;
			}
			sqlite3_reset(ins);
		}
		if (exec(db, "COMMIT") < 0)
			return -1;
		t1 = mono_us();
		ph->commits++;
		ph->rows += (uint64_t)batch;
		if (sample_add(ph, t1 - t0) < 0)
			return -1;
	}
	ph->elapsed = (double)(t1 - start) / 1e6;
	qsort(ph->lat, ph->n, sizeof(*ph->lat), cmp_u32);
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: sqlite_commit --dir DIR [--seconds 5] [--batch 100] "
		   "[--size 2048] [--json]\n");
}

static int
parse_long(const char *s, long min, long max, long *out)
{
	char *ep;
	long v;

	errno = 0;
	v = strtol(s, &ep, 10);
	if (errno != 0 || *ep != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"seconds", required_argument, NULL, 's'},
	    {"batch", required_argument, NULL, 'B'},
	    {"size", required_argument, NULL, 'b'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *dir = NULL;
	double seconds = 5;
	long size = 2048, batch = 100;
	bool json = false;
	char path[4096], side[4200], *body = NULL, *ep;
	struct phase one = {0}, many = {0};
	sqlite3 *db = NULL;
	sqlite3_stmt *ins = NULL;
	uint64_t next = 0;
	int ch, rc = 1;

	while ((ch = getopt_long(argc, argv, "d:s:B:b:jh", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'd':
			dir = optarg;
			break;
		case 's':
			errno = 0;
			seconds = strtod(optarg, &ep);
			if (errno != 0 || *ep != '\0' || !(seconds > 0) ||
			    seconds > 3600) {
				usage(stderr);
				return 2;
			}
			break;
		case 'B':
			if (parse_long(optarg, 1, MAX_BATCH, &batch) < 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 'b':
			if (parse_long(optarg, 1, MAX_SIZE, &size) < 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (dir == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (snprintf(path, sizeof(path), "%s/sqlite_commit.%ld.db", dir,
		     (long)getpid()) >= (int)sizeof(path)) {
		fprintf(stderr, "sqlite_commit: --dir too long\n");
		return 2;
	}
	body = malloc((size_t)size);
	if (body == NULL)
		goto fail;
	memset(body, 'm', (size_t)size);
	if (sqlite3_open(path, &db) != SQLITE_OK) {
		fprintf(stderr, "sqlite_commit: %s: %s\n", path,
			db != NULL ? sqlite3_errmsg(db) : "out of memory");
		goto fail;
	}
	if (exec(db, "PRAGMA journal_mode=WAL") < 0 ||
	    exec(db, "PRAGMA synchronous=FULL") < 0 ||
	    exec(db, "CREATE TABLE messages(id TEXT PRIMARY KEY, "
		     "body BLOB NOT NULL)") < 0)
		goto fail;
	if (sqlite3_prepare_v2(db,
			       "INSERT INTO messages(id, body) VALUES (?, ?)",
			       -1, &ins, NULL) != SQLITE_OK) {
		fprintf(stderr, "sqlite_commit: prepare: %s\n",
			sqlite3_errmsg(db));
		goto fail;
	}
	if (run_phase(db, ins, body, (int)size, 1, seconds, &next, &one) < 0 ||
	    run_phase(db, ins, body, (int)size, (int)batch, seconds, &next,
		      &many) < 0)
		goto fail;

	if (json)
		printf("{\"single_commits\":%" PRIu64
		       ",\"single_commits_per_s\""
		       ":%.1f,\"single_p50_us\":%" PRIu32
		       ",\"single_p99_us\":%" PRIu32 ",\"batch\":%ld,"
		       "\"batch_rows\":%" PRIu64 ",\"batch_rows_per_s\":%.1f,"
		       "\"batch_commit_p50_us\":%" PRIu32 ",\"size\":%ld,"
		       "\"sqlite\":\"%s\"}\n",
		       one.commits,
		       one.elapsed > 0 ? (double)one.commits / one.elapsed : 0,
		       quantile(one.lat, one.n, 0.5),
		       quantile(one.lat, one.n, 0.99), batch, many.rows,
		       many.elapsed > 0 ? (double)many.rows / many.elapsed : 0,
		       quantile(many.lat, many.n, 0.5), size,
		       sqlite3_libversion());
	else {
		printf("one row per commit:   %" PRIu64 " commits in %.3f s: "
		       "%.1f commits/s, p50 %" PRIu32 " us, p99 %" PRIu32
		       " us\n",
		       one.commits, one.elapsed,
		       one.elapsed > 0 ? (double)one.commits / one.elapsed : 0,
		       quantile(one.lat, one.n, 0.5),
		       quantile(one.lat, one.n, 0.99));
		printf("%ld rows per commit: %" PRIu64 " rows in %.3f s: "
		       "%.1f rows/s, commit p50 %" PRIu32 " us\n",
		       batch, many.rows, many.elapsed,
		       many.elapsed > 0 ? (double)many.rows / many.elapsed : 0,
		       quantile(many.lat, many.n, 0.5));
		printf("SQLite %s, WAL, synchronous=FULL, %ld-byte rows\n",
		       sqlite3_libversion(), size);
	}
	rc = 0;
fail:
	sqlite3_finalize(ins);
	sqlite3_close(db);
	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
	free(one.lat);
	free(many.lat);
	free(body);
	return rc;
}
