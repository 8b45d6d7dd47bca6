/*
 * fsync_ceiling: how many durable appends per second the data directory's
 * filesystem allows when every message pays for its own flush.  It appends
 * --size bytes (default 2048, one message) to a scratch file in --dir and
 * calls fdatasync(2) after each write, for --seconds, and reports ops/s and
 * the latency distribution of write+fdatasync.  An intake that commits one
 * message per flush can never beat this number; one that groups commits
 * can, which is what the intake benchmark compares against it in the same
 * run.  Appending (rather than rewriting one block) makes each flush carry
 * the size change too, as a log or a WAL does; the file wraps to offset 0
 * at 256 MB so that a fast disk does not fill up.
 *
 * --overwrite measures the other bound: the file is first written to
 * OVERWRITE_BYTES and flushed, and the timed writes then cycle through that
 * region, so a flush carries neither a size change nor a new block, only
 * the data and the disk's cache flush.  That is the least a durable write
 * of a message can cost on this filesystem, whatever the store's layout.
 *
 * --threads N runs N such loops at once, each on its own file: whether the
 * disk serves flushes side by side (the total grows with N) or one after
 * the other, which says whether a store with more than one log could
 * commit more often than one with a single WAL.
 *
 * The scratch files are removed on exit; any I/O error ends the run with
 * status 1.  Latencies are kept in arrays capped at MAX_SAMPLES in all.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "sorted.h"

#define WRAP_BYTES (256u << 20)
#define OVERWRITE_BYTES (16u << 20)
#define MAX_SAMPLES (20u << 20)
#define MAX_SIZE (1u << 20)
#define MAX_THREADS 16

struct flusher {
	pthread_t tid;
	char path[4096];
	const char *buf;
	unsigned long size;
	bool overwrite;
	pthread_barrier_t *ready; /* all prefilled: the clock starts */
	const uint64_t *end;      /* mono_us() to stop at, set at ready */
	size_t max;               /* this loop's share of MAX_SAMPLES */
	uint32_t *lat;            /* write+fdatasync times, us */
	size_t n, cap;
	uint64_t last;    /* mono_us() of the last op's end */
	const char *what; /* the failed call, NULL when all went well */
	int err;
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: fsync_ceiling --dir DIR [--seconds 5] [--size 2048] "
		   "[--overwrite] [--threads 1] [--json]\n");
}

static int
fail(struct flusher *fl, const char *what, int err)
{
	fl->what = what;
	fl->err = err;
	return -1;
}

/* Writes --overwrite's region once and flushes it, before the clock. */
static int
prefill(struct flusher *fl, int fd)
{
	uint64_t off;

	for (off = 0; off + fl->size <= OVERWRITE_BYTES; off += fl->size)
		if (pwrite(fd, fl->buf, fl->size, (off_t)off) !=
		    (ssize_t)fl->size)
			return fail(fl, "write", errno);
	return fsync(fd) < 0 ? fail(fl, "fsync", errno) : 0;
}

static int
flush_loop(struct flusher *fl, int fd)
{
	uint64_t wrap = fl->overwrite ? OVERWRITE_BYTES : WRAP_BYTES;
	uint64_t t0, off = 0;
	ssize_t w;

	for (fl->last = mono_us(); fl->last < *fl->end && fl->n < fl->max;) {
		if (fl->n == fl->cap) {
			size_t ncap = fl->cap == 0 ? 65536 : fl->cap * 2;
			uint32_t *nl = realloc(fl->lat, ncap * sizeof(*nl));

			if (nl == NULL)
				return fail(fl, "realloc", ENOMEM);
			fl->lat = nl;
			fl->cap = ncap;
		}
		if (off + fl->size > wrap)
			off = 0;
		t0 = mono_us();
		w = pwrite(fd, fl->buf, fl->size, (off_t)off);
		if (w != (ssize_t)fl->size)
			return fail(fl, "write", w < 0 ? errno : EIO);
		if (fdatasync(fd) < 0)
			return fail(fl, "fdatasync", errno);
		fl->last = mono_us();
		off += fl->size;
		fl->lat[fl->n++] =
		    (uint32_t)(fl->last - t0 > UINT32_MAX ? UINT32_MAX
							  : fl->last - t0);
	}
	return 0;
}

static void *
flusher_main(void *arg)
{
	struct flusher *fl = arg;
	int fd, ok;

	fd = open(fl->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		ok = fail(fl, "open", errno);
	else
		ok = fl->overwrite ? prefill(fl, fd) : 0;
	/* Twice: main sets the end between the two. */
	pthread_barrier_wait(fl->ready);
	pthread_barrier_wait(fl->ready);
	if (ok == 0)
		(void)flush_loop(fl, fd);
	if (fd >= 0) {
		close(fd);
		unlink(fl->path);
	}
	return NULL;
}

/* Merges the loops' samples into one sorted array and prints the figures. */
static int
report(struct flusher *fls, int threads, uint64_t start, bool json)
{
	uint32_t *all;
	size_t n = 0, i;
	uint64_t last = start;
	double el, ops;
	int t;

	for (t = 0; t < threads; t++) {
		n += fls[t].n;
		if (fls[t].last > last)
			last = fls[t].last;
	}
	all = malloc((n ? n : 1) * sizeof(*all));
	if (all == NULL)
		return -1;
	for (t = 0, i = 0; t < threads; t++) {
		memcpy(all + i, fls[t].lat, fls[t].n * sizeof(*all));
		i += fls[t].n;
	}
	qsort(all, n, sizeof(*all), cmp_u32);
	el = (double)(last - start) / 1e6;
	ops = el > 0 ? (double)n / el : 0;
	if (json)
		printf("{\"ops\":%zu,\"elapsed_s\":%.3f,\"ops_per_s\":%.1f,"
		       "\"p50_us\":%" PRIu32 ",\"p99_us\":%" PRIu32
		       ",\"max_us\":%" PRIu32 ",\"size\":%lu,\"overwrite\":%s,"
		       "\"threads\":%d}\n",
		       n, el, ops, quantile(all, n, 0.5),
		       quantile(all, n, 0.99), n ? all[n - 1] : 0, fls[0].size,
		       fls[0].overwrite ? "true" : "false", threads);
	else
		printf("%s(%lu)+fdatasync x%d: %zu ops in %.3f s: %.1f ops/s, "
		       "p50 %" PRIu32 " us, p99 %" PRIu32 " us, max %" PRIu32
		       " us\n",
		       fls[0].overwrite ? "overwrite" : "write", fls[0].size,
		       threads, n, el, ops, quantile(all, n, 0.5),
		       quantile(all, n, 0.99), n ? all[n - 1] : 0);
	free(all);
	return 0;
}

static int
parse_num(const char *s, double lo, double hi, double *out)
{
	char *ep;

	errno = 0;
	*out = strtod(s, &ep);
	return errno == 0 && *ep == '\0' && *out >= lo && *out <= hi ? 0 : -1;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"seconds", required_argument, NULL, 's'},
	    {"size", required_argument, NULL, 'b'},
	    {"threads", required_argument, NULL, 't'},
	    {"json", no_argument, NULL, 'j'},
	    {"overwrite", no_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct flusher fls[MAX_THREADS];
	pthread_barrier_t ready;
	uint64_t end = 0;
	const char *dir = NULL;
	double seconds = 5, size = 2048, threads = 1;
	bool json = false, overwrite = false;
	char *buf = NULL;
	uint64_t start;
	int ch, t, started = 0, rc = 1;

	while ((ch = getopt_long(argc, argv, "d:s:b:t:joh", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'd':
			dir = optarg;
			break;
		case 's':
			if (parse_num(optarg, 0.001, 3600, &seconds) < 0)
				goto usage;
			break;
		case 'b':
			if (parse_num(optarg, 1, MAX_SIZE, &size) < 0 ||
			    size != (unsigned long)size)
				goto usage;
			break;
		case 't':
			if (parse_num(optarg, 1, MAX_THREADS, &threads) < 0 ||
			    threads != (int)threads)
				goto usage;
			break;
		case 'j':
			json = true;
			break;
		case 'o':
			overwrite = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			goto usage;
		}
	}
	if (dir == NULL || optind != argc)
		goto usage;
	buf = malloc((size_t)size);
	if (buf == NULL)
		return 1;
	memset(buf, 'm', (size_t)size);
	memset(fls, 0, sizeof(fls));
	for (t = 0; t < (int)threads; t++) {
		struct flusher *fl = &fls[t];

		if (snprintf(fl->path, sizeof(fl->path),
			     "%s/fsync_ceiling.%ld.%d.tmp", dir, (long)getpid(),
			     t) >= (int)sizeof(fl->path)) {
			fprintf(stderr, "fsync_ceiling: --dir too long\n");
			goto out;
		}
		fl->buf = buf;
		fl->size = (unsigned long)size;
		fl->overwrite = overwrite;
		fl->max = MAX_SAMPLES / (size_t)threads;
	}
	if (pthread_barrier_init(&ready, NULL, (unsigned)threads + 1) != 0)
		goto out;
	for (t = 0; t < (int)threads; t++) {
		fls[t].ready = &ready;
		fls[t].end = &end;
		if (pthread_create(&fls[t].tid, NULL, flusher_main, &fls[t]) !=
		    0) {
			/* The barrier counts every thread: none can go on. */
			fprintf(stderr,
				"fsync_ceiling: pthread_create failed\n");
			exit(1);
		}
		started++;
	}
	/* The prefill of --overwrite is not timed: the clock starts after. */
	pthread_barrier_wait(&ready);
	start = mono_us();
	end = start + (uint64_t)(seconds * 1e6);
	pthread_barrier_wait(&ready);
	for (t = 0; t < started; t++)
		pthread_join(fls[t].tid, NULL);
	pthread_barrier_destroy(&ready);
	for (t = 0; t < started; t++)
		if (fls[t].what != NULL) {
			fprintf(stderr, "fsync_ceiling: %s: %s: %s\n",
				fls[t].path, fls[t].what, strerror(fls[t].err));
			goto out;
		}
	if (report(fls, started, start, json) == 0)
		rc = 0;
out:
	for (t = 0; t < (int)threads; t++)
		free(fls[t].lat);
	free(buf);
	return rc;
usage:
	usage(stderr);
	return 2;
}
