/*
 * The least outstanding scheduler: the held entry with the fewest messages
 * in flight that is not skipped wins, and ties go round robin.  It is the
 * keyed backend of sched_heap.c with in_flight as the key: among equally
 * loaded entries the least recently used comes first.  The dispatcher
 * calls update whenever an in_flight changes, which re-sifts that entry in
 * O(log n); pick, add and remove are O(log n) too, plus O(k log k) for k
 * skipped entries, which keep their stamp and so their place among equals
 * for the next message.
 *
 * A pick does not count the message itself: the dispatcher raises
 * in_flight and calls update.  Until it does, the fresh stamp alone sends
 * the next pick among equals to another entry.
 */
#include "dispatch/sched_heap.h"
#include "dispatch/scheduler.h"

static uint64_t
key_of(const struct sched_entry *e)
{
	return e->in_flight;
}

static void *
lo_new(uint64_t seed)
{
	return sched__keyed_new(key_of);
}

const struct scheduler_ops sched_least_outstanding_ops = {
    .name = "least_outstanding",
    .new = lo_new,
    .free = sched__keyed_free,
    .add = sched__keyed_add,
    .remove = sched__keyed_remove,
    .update = sched__keyed_update,
    .pick = sched__keyed_pick,
    .count = sched__keyed_count,
};
