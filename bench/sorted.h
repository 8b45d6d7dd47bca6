/*
 * Quantiles of latency samples the bench tools sort whole (fsync_ceiling,
 * sqlite_commit): qsort with cmp_u32, then quantile(v, n, 0.99).  Each
 * tool builds alone, without the server's util.c.
 */
#ifndef SHIVNERI_BENCH_SORTED_H
#define SHIVNERI_BENCH_SORTED_H

#include <stddef.h>
#include <stdint.h>

static inline int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The p-quantile of v[0..n) sorted ascending, nearest rank; 0 if empty. */
static inline uint32_t
quantile(const uint32_t *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

#endif
