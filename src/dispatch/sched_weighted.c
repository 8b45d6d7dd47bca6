/*
 * The weighted scheduler: smooth weighted shares by stride scheduling.
 * Each entry has a pass (entry->key) and a stride of STRIDE / weight; a
 * pick takes the least pass that is not skipped (a heap, ties by
 * insertion order in entry->seq) and adds the stride to it.  Over any
 * window an entry's share converges to weight / sum(weights), and the
 * picks interleave instead of coming in runs, in O(log n) per pick and
 * per add, remove or update (plus O(k log k) for k skipped entries, which
 * keep their pass and so their place for the next message).
 *
 * The virtual time is the pass of the last entry picked.  An entry that is
 * added, or added again after being down, starts there rather than at its
 * old pass, so it neither floods the others with credit it saved while
 * away nor starves behind them.  It starts at the virtual time plus a
 * fraction of its stride taken from a golden-ratio sequence of its
 * insertion number: entries added together (at start-up, say) would
 * otherwise share one pass and take their turns back to back, which for
 * weights 5, 1, 1 gives "a a a a a b c" instead of "a b a a a c a".  The
 * offset is under one stride, so nobody waits longer than its own period.
 *
 * Passes are compared modulo 2^64 (sched_heap.h) and all live passes stay
 * within a few strides of the virtual time, so a pass may wrap.  A weight
 * below 1 is treated as 1.  STRIDE is a multiple of lcm(1..16) so that
 * small weights divide it exactly and shares over a cycle are exact.
 */
#include <stdlib.h>

#include "common/util.h"
#include "dispatch/sched_heap.h"
#include "dispatch/scheduler.h"

#define STRIDE (720720ULL << 11) /* lcm(1..16) * 2^11, below 2^31 */

struct weighted_state {
	struct sched_heap heap;
	uint64_t vtime;
	uint64_t next_seq;
};

static uint64_t
stride_of(const struct sched_entry *e)
{
	uint64_t w = e->weight < 1 ? 1 : (uint64_t)e->weight;
	uint64_t s = STRIDE / w;

	return s == 0 ? 1 : s;
}

static void *
weighted_new(uint64_t seed)
{
	struct weighted_state *st = xcalloc(1, sizeof(*st));

	sched__heap_init(&st->heap);
	return st;
}

static void
weighted_free(void *state)
{
	struct weighted_state *st = state;

	if (st == NULL)
		return;
	sched__heap_cleanup(&st->heap);
	free(st);
}

static void
weighted_add(void *state, struct sched_entry *e)
{
	struct weighted_state *st = state;
	/* The fractional part of seq * golden ratio, in 32 bits. */
	uint64_t frac = ((st->next_seq + 1) * 0x9e3779b97f4a7c15ULL) >> 32;

	e->seq = st->next_seq++;
	e->key = st->vtime + ((stride_of(e) * frac) >> 32);
	sched__heap_insert(&st->heap, e);
}

static void
weighted_remove(void *state, struct sched_entry *e)
{
	struct weighted_state *st = state;

	sched__heap_delete(&st->heap, e);
}

static void
weighted_update(void *state, struct sched_entry *e)
{
	struct weighted_state *st = state;
	uint64_t limit = st->vtime + stride_of(e);

	/*
	 * Only a weight change matters.  A pass is never more than one
	 * stride past the virtual time; when the weight grew, the old,
	 * longer stride may put it further, so pull it in to one new stride.
	 */
	if ((int64_t)(e->key - limit) > 0) {
		e->key = limit;
		sched__heap_fix(&st->heap, e);
	}
}

static struct sched_entry *
weighted_pick(void *state, sched_skip_fn skip, void *arg)
{
	struct weighted_state *st = state;
	struct sched_entry *e = sched__heap_min(&st->heap, skip, arg);

	if (e == NULL)
		return NULL;
	if ((int64_t)(e->key - st->vtime) > 0)
		st->vtime = e->key;
	e->key += stride_of(e);
	sched__heap_fix(&st->heap, e);
	return e;
}

static size_t
weighted_count(void *state)
{
	const struct weighted_state *st = state;

	return st->heap.n;
}

const struct scheduler_ops sched_weighted_ops = {
    .name = "weighted",
    .new = weighted_new,
    .free = weighted_free,
    .add = weighted_add,
    .remove = weighted_remove,
    .update = weighted_update,
    .pick = weighted_pick,
    .count = weighted_count,
};
