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
 * The scratch file is removed on exit; any I/O error ends the run with
 * status 1.  Latencies are kept in an array capped at MAX_SAMPLES.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WRAP_BYTES (256u << 20)
#define MAX_SAMPLES (20u << 20)
#define MAX_SIZE (1u << 20)
#define OVERWRITE_BYTES (16u << 20)

static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static uint32_t
quantile(const uint32_t *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: fsync_ceiling --dir DIR [--seconds 5] [--size 2048] "
		   "[--overwrite] [--json]\n");
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"dir", required_argument, NULL, 'd'},
	    {"seconds", required_argument, NULL, 's'},
	    {"size", required_argument, NULL, 'b'},
	    {"json", no_argument, NULL, 'j'},
	    {"overwrite", no_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *dir = NULL;
	double seconds = 5;
	unsigned long size = 2048;
	bool json = false, overwrite = false;
	uint64_t wrap = WRAP_BYTES;
	char path[4096], *buf = NULL, *ep;
	uint32_t *lat = NULL;
	size_t n = 0, cap = 0;
	uint64_t start, end, t0, t1, off = 0;
	int ch, fd = -1, rc = 1;
	ssize_t w;

	while ((ch = getopt_long(argc, argv, "d:s:b:joh", longopts, NULL)) !=
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
		case 'b':
			errno = 0;
			size = strtoul(optarg, &ep, 10);
			if (errno != 0 || *ep != '\0' || size == 0 ||
			    size > MAX_SIZE) {
				usage(stderr);
				return 2;
			}
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
			usage(stderr);
			return 2;
		}
	}
	if (dir == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (snprintf(path, sizeof(path), "%s/fsync_ceiling.%ld.tmp", dir,
		     (long)getpid()) >= (int)sizeof(path)) {
		fprintf(stderr, "fsync_ceiling: --dir too long\n");
		return 2;
	}
	buf = malloc(size);
	if (buf == NULL)
		goto fail;
	memset(buf, 'm', size);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "fsync_ceiling: %s: %s\n", path,
			strerror(errno));
		goto fail;
	}
	if (overwrite) {
		wrap = OVERWRITE_BYTES;
		for (off = 0; off + size <= wrap; off += size)
			if (pwrite(fd, buf, size, (off_t)off) != (ssize_t)size) {
				fprintf(stderr, "fsync_ceiling: write: %s\n",
					strerror(errno));
				goto fail;
			}
		if (fsync(fd) < 0) {
			fprintf(stderr, "fsync_ceiling: fsync: %s\n",
				strerror(errno));
			goto fail;
		}
		off = 0;
	}
	start = mono_us();
	end = start + (uint64_t)(seconds * 1e6);
	for (t1 = start; t1 < end && n < MAX_SAMPLES;) {
		if (n == cap) {
			size_t ncap = cap == 0 ? 65536 : cap * 2;
			uint32_t *nl = realloc(lat, ncap * sizeof(*lat));

			if (nl == NULL)
				goto fail;
			lat = nl;
			cap = ncap;
		}
		if (off + size > wrap)
			off = 0;
		t0 = mono_us();
		w = pwrite(fd, buf, size, (off_t)off);
		if (w != (ssize_t)size) {
			fprintf(stderr, "fsync_ceiling: write: %s\n",
				w < 0 ? strerror(errno) : "short write");
			goto fail;
		}
		if (fdatasync(fd) < 0) {
			fprintf(stderr, "fsync_ceiling: fdatasync: %s\n",
				strerror(errno));
			goto fail;
		}
		t1 = mono_us();
		off += size;
		lat[n++] =
		    (uint32_t)(t1 - t0 > UINT32_MAX ? UINT32_MAX : t1 - t0);
	}
	qsort(lat, n, sizeof(*lat), cmp_u32);
	{
		double el = (double)(t1 - start) / 1e6;
		double ops = el > 0 ? (double)n / el : 0;

		if (json)
			printf("{\"ops\":%zu,\"elapsed_s\":%.3f,"
			       "\"ops_per_s\":%.1f,\"p50_us\":%" PRIu32
			       ",\"p99_us\":%" PRIu32 ",\"max_us\":%" PRIu32
			       ",\"size\":%lu,\"overwrite\":%s}\n",
			       n, el, ops, quantile(lat, n, 0.5),
			       quantile(lat, n, 0.99), n ? lat[n - 1] : 0,
			       size, overwrite ? "true" : "false");
		else
			printf("%s(%lu)+fdatasync: %zu ops in %.3f s: "
			       "%.1f ops/s, p50 %" PRIu32 " us, p99 %" PRIu32
			       " us, max %" PRIu32 " us\n",
			       overwrite ? "overwrite" : "write", size, n,
			       el, ops, quantile(lat, n, 0.5),
			       quantile(lat, n, 0.99), n ? lat[n - 1] : 0);
	}
	rc = 0;
fail:
	if (fd >= 0) {
		close(fd);
		unlink(path);
	}
	free(lat);
	free(buf);
	return rc;
}
