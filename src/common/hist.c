/*
 * Fixed-bucket histograms (hist.h): from 5 ms (a local agent's answer) to
 * 10 minutes (a message that waited out a provider's outage), roughly
 * 1-2.5-5 steps, the same for every histogram so dashboards can compare.
 */

#include "common/hist.h"

const int64_t hist_bounds_ms[HIST_NBOUNDS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 60000, 600000};

void
hist_observe(struct hist *h, int64_t ms)
{
	int i;

	if (ms < 0)
		ms = 0;
	for (i = 0; i < HIST_NBOUNDS && ms > hist_bounds_ms[i]; i++)
		;
	h->bucket[i]++;
	h->count++;
	h->sum_ms += ms;
}
