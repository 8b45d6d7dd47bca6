/*
 * A log-linear latency histogram for the load generators: exact below
 * HIST_SUB microseconds, within 0.2 % above, up to 2^40 us.  Fixed size,
 * no allocation: one per thread, merged at the end.
 */
#ifndef SHIVNERI_BENCH_HIST_H
#define SHIVNERI_BENCH_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB 1024 /* exact buckets below this many microseconds */
#define HIST_HALF 512 /* sub-buckets per power of two above */
#define HIST_MAX_SHIFT 31
#define HIST_BUCKETS (HIST_SUB + HIST_MAX_SHIFT * HIST_HALF)

struct hist {
	uint64_t n[HIST_BUCKETS];
	uint64_t count;
	uint64_t max;
};

static inline size_t
hist_index(uint64_t v)
{
	int msb, shift;

	if (v < HIST_SUB)
		return (size_t)v;
	msb = 63 - __builtin_clzll(v);
	shift = msb - 9;
	if (shift > HIST_MAX_SHIFT)
		return HIST_BUCKETS - 1;
	return HIST_SUB + (size_t)(shift - 1) * HIST_HALF +
	       (size_t)((v >> shift) - HIST_HALF);
}

/* The largest value that falls in bucket i. */
static inline uint64_t
hist_upper(size_t i)
{
	uint64_t top;
	int shift;

	if (i < HIST_SUB)
		return i;
	shift = (int)((i - HIST_SUB) / HIST_HALF) + 1;
	top = (i - HIST_SUB) % HIST_HALF + HIST_HALF;
	return ((top + 1) << shift) - 1;
}

static inline void
hist_add(struct hist *h, uint64_t v)
{
	h->n[hist_index(v)]++;
	h->count++;
	if (v > h->max)
		h->max = v;
}

static inline void
hist_merge(struct hist *dst, const struct hist *src)
{
	size_t i;

	for (i = 0; i < HIST_BUCKETS; i++)
		dst->n[i] += src->n[i];
	dst->count += src->count;
	if (src->max > dst->max)
		dst->max = src->max;
}

/* The p-th quantile (0 < p <= 1), as the upper bound of its bucket. */
static inline uint64_t
hist_quantile(const struct hist *h, double p)
{
	uint64_t rank, seen = 0;
	size_t i;

	if (h->count == 0)
		return 0;
	rank = (uint64_t)(p * (double)h->count + 0.999999);
	if (rank < 1)
		rank = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h->n[i];
		if (seen >= rank)
			return hist_upper(i) < h->max ? hist_upper(i) : h->max;
	}
	return h->max;
}

#endif
