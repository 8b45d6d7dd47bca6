/*
 * The monotonic clock in microseconds, for the bench tools (each builds
 * alone, without the server's util.c).
 */
#ifndef SHIVNERI_BENCH_CLOCK_H
#define SHIVNERI_BENCH_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#endif
