/*
 * The priority scheduler: the lowest priority number that is held and not
 * skipped wins, and entries of equal priority take turns.  A heap keyed by
 * (priority, seq), where seq is a counter stamped on an entry when it is
 * picked or added, gives both: among equals the least recently used comes
 * first.  A pick, add, remove or update is O(log n); k skipped entries add
 * O(k log k) and keep their stamp, so they are first among their equals
 * for the next message.
 *
 * Because the scheduler holds only eligible providers, a lower group that
 * goes down or fills up simply leaves the heap and the next group takes
 * over; when it returns it is preferred again at once.
 */
#include <stdlib.h>

#include "common/util.h"
#include "dispatch/sched_heap.h"
#include "dispatch/scheduler.h"

struct priority_state {
	struct sched_heap heap;
	uint64_t clock;
};

/* Signed priorities order correctly under the heap's signed difference. */
static uint64_t
key_of(const struct sched_entry *e)
{
	return (uint64_t)(int64_t)e->priority;
}

static void *
priority_new(uint64_t seed)
{
	struct priority_state *st = xcalloc(1, sizeof(*st));

	sched__heap_init(&st->heap);
	return st;
}

static void
priority_free(void *state)
{
	struct priority_state *st = state;

	if (st == NULL)
		return;
	sched__heap_cleanup(&st->heap);
	free(st);
}

static void
priority_add(void *state, struct sched_entry *e)
{
	struct priority_state *st = state;

	/* A newcomer queues behind its equals, as if it had just been used. */
	e->key = key_of(e);
	e->seq = ++st->clock;
	sched__heap_insert(&st->heap, e);
}

static void
priority_remove(void *state, struct sched_entry *e)
{
	struct priority_state *st = state;

	sched__heap_delete(&st->heap, e);
}

static void
priority_update(void *state, struct sched_entry *e)
{
	struct priority_state *st = state;

	if (e->key != key_of(e)) {
		e->key = key_of(e);
		sched__heap_fix(&st->heap, e);
	}
}

static struct sched_entry *
priority_pick(void *state, sched_skip_fn skip, void *arg)
{
	struct priority_state *st = state;
	struct sched_entry *e = sched__heap_min(&st->heap, skip, arg);

	if (e == NULL)
		return NULL;
	e->seq = ++st->clock;
	sched__heap_fix(&st->heap, e);
	return e;
}

static size_t
priority_count(void *state)
{
	const struct priority_state *st = state;

	return st->heap.n;
}

const struct scheduler_ops sched_priority_ops = {
    .name = "priority",
    .new = priority_new,
    .free = priority_free,
    .add = priority_add,
    .remove = priority_remove,
    .update = priority_update,
    .pick = priority_pick,
    .count = priority_count,
};
