/*
 * The random scheduler: each pick is uniform among the held entries that
 * are not skipped.  Entries live in an array (entry->idx is the slot) so
 * that add and remove are O(1), remove by swapping the last slot in.
 *
 * Exclusions cost O(k) for k skipped entries without retry limits or a
 * fallback scan: a pick is a partial Fisher-Yates shuffle.  It draws a slot
 * uniformly from the first m slots; if that entry is skipped it swaps it to
 * slot m - 1 and draws again from the first m - 1, so every draw is uniform
 * over the entries not yet rejected and each rejection is drawn at most
 * once.  The shuffle only reorders the array, and order carries no meaning
 * here, so skipped entries lose nothing.
 *
 * The generator is splitmix64 from the caller's seed: deterministic for
 * tests, and not for anything that needs to be unpredictable.
 */
#include <stdlib.h>

#include "common/util.h"
#include "dispatch/scheduler.h"

struct random_state {
	struct sched_entry **v;
	size_t n, cap;
	uint64_t rng;
};

static uint64_t
next64(struct random_state *st)
{
	uint64_t z = (st->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, m), m > 0: rejects the low values that would bias r % m. */
static size_t
below(struct random_state *st, size_t m)
{
	uint64_t bound = (uint64_t)m;
	uint64_t threshold = -bound % bound;
	uint64_t r;

	do
		r = next64(st);
	while (r < threshold);
	return (size_t)(r % bound);
}

static void
put(struct random_state *st, size_t i, struct sched_entry *e)
{
	st->v[i] = e;
	e->idx = i;
}

static void *
random_new(uint64_t seed)
{
	struct random_state *st = xcalloc(1, sizeof(*st));

	st->rng = seed;
	return st;
}

static void
random_free(void *state)
{
	struct random_state *st = state;

	if (st == NULL)
		return;
	free(st->v);
	free(st);
}

static void
random_add(void *state, struct sched_entry *e)
{
	struct random_state *st = state;

	if (st->n == st->cap) {
		st->cap = st->cap == 0 ? 8 : st->cap * 2;
		st->v = xreallocarray(st->v, st->cap, sizeof(*st->v));
	}
	put(st, st->n++, e);
}

static void
random_remove(void *state, struct sched_entry *e)
{
	struct random_state *st = state;
	struct sched_entry *last = st->v[--st->n];

	if (last != e)
		put(st, e->idx, last);
}

static void
random_update(void *state, struct sched_entry *e)
{
	/* Weights, priorities and load do not matter to a uniform draw. */
}

static struct sched_entry *
random_pick(void *state, sched_skip_fn skip, void *arg)
{
	struct random_state *st = state;
	size_t m = st->n;

	while (m > 0) {
		size_t i = below(st, m);
		struct sched_entry *e = st->v[i];
		if (skip == NULL || !skip(e, arg))
			return e;
		m--;
		if (i != m) {
			put(st, i, st->v[m]);
			put(st, m, e);
		}
	}
	return NULL;
}

static size_t
random_count(void *state)
{
	const struct random_state *st = state;

	return st->n;
}

const struct scheduler_ops sched_random_ops = {
    .name = "random",
    .new = random_new,
    .free = random_free,
    .add = random_add,
    .remove = random_remove,
    .update = random_update,
    .pick = random_pick,
    .count = random_count,
};
