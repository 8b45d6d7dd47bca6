/*
 * Checked number arguments for the bench tools (each builds alone,
 * without the server's util.c): the whole string, base 10, within
 * [min, max], or -1.  atoi and a bare strtod take "12x" or "" for a number.
 */
#ifndef SHIVNERI_BENCH_ARGS_H
#define SHIVNERI_BENCH_ARGS_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

static inline int
parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *ep;

	if (s == NULL || *s == '\0' || *s == '-')
		return -1;
	errno = 0;
	v = strtoull(s, &ep, 10);
	if (errno != 0 || *ep != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static inline int
parse_double(const char *s, double min, double max, double *out)
{
	double v;
	char *ep;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtod(s, &ep);
	if (errno != 0 || *ep != '\0' || !(v >= min) || !(v <= max))
		return -1;
	*out = v;
	return 0;
}

#endif
