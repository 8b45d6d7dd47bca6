/*
 * The least outstanding scheduler: the held entry with the fewest messages
 * in flight that is not skipped wins, and ties go round robin.  A heap
 * keyed by (in_flight, seq), where seq is stamped on an entry when it is
 * picked or added, gives both: among equally loaded entries the least
 * recently used comes first.  The dispatcher calls update whenever an
 * in_flight changes, which re-sifts that entry in O(log n); pick, add and
 * remove are O(log n) too, plus O(k log k) for k skipped entries, which
 * keep their stamp and so their place among equals for the next message.
 *
 * A pick does not count the message itself: the dispatcher raises
 * in_flight and calls update.  Until it does, the fresh stamp alone sends
 * the next pick among equals to another entry.
 */
#include <stdlib.h>

#include "common/util.h"
#include "dispatch/sched_heap.h"
#include "dispatch/scheduler.h"

struct lo_state {
	struct sched_heap heap;
	uint64_t clock;
};

static void *
lo_new(uint64_t seed)
{
	struct lo_state *st = xcalloc(1, sizeof(*st));

	sched__heap_init(&st->heap);
	return st;
}

static void
lo_free(void *state)
{
	struct lo_state *st = state;

	if (st == NULL)
		return;
	sched__heap_cleanup(&st->heap);
	free(st);
}

static void
lo_add(void *state, struct sched_entry *e)
{
	struct lo_state *st = state;

	e->key = e->in_flight;
	e->seq = ++st->clock;
	sched__heap_insert(&st->heap, e);
}

static void
lo_remove(void *state, struct sched_entry *e)
{
	struct lo_state *st = state;

	sched__heap_delete(&st->heap, e);
}

static void
lo_update(void *state, struct sched_entry *e)
{
	struct lo_state *st = state;

	if (e->key != e->in_flight) {
		e->key = e->in_flight;
		sched__heap_fix(&st->heap, e);
	}
}

static struct sched_entry *
lo_pick(void *state, sched_skip_fn skip, void *arg)
{
	struct lo_state *st = state;
	struct sched_entry *e = sched__heap_min(&st->heap, skip, arg);

	if (e == NULL)
		return NULL;
	e->seq = ++st->clock;
	sched__heap_fix(&st->heap, e);
	return e;
}

static size_t
lo_count(void *state)
{
	const struct lo_state *st = state;

	return st->heap.n;
}

const struct scheduler_ops sched_least_outstanding_ops = {
    .name = "least_outstanding",
    .new = lo_new,
    .free = lo_free,
    .add = lo_add,
    .remove = lo_remove,
    .update = lo_update,
    .pick = lo_pick,
    .count = lo_count,
};
