/*
 * A fixed-bucket latency histogram for /metrics: a few counters in the
 * struct that owns it, no allocation, one array walk per observation, so
 * the hot path pays almost nothing and memory is bounded by the number of
 * owners (providers, which max_dynamic_providers caps).  Buckets are kept
 * per bucket (not cumulative) and summed when written out.
 */
#ifndef SHIVNERI_HIST_H
#define SHIVNERI_HIST_H

#include <stdint.h>

/* Upper bounds in milliseconds; one more bucket is +Inf. */
#define HIST_NBOUNDS 13
extern const int64_t hist_bounds_ms[HIST_NBOUNDS];

struct hist {
	uint64_t bucket[HIST_NBOUNDS + 1]; /* the last: above every bound */
	uint64_t count;
	int64_t sum_ms;
};

/* One observation of ms milliseconds (negative: counted as 0). */
void hist_observe(struct hist *h, int64_t ms);

#endif
