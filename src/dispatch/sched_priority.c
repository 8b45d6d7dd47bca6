/*
 * The priority scheduler: the lowest priority number that is held and not
 * skipped wins, and entries of equal priority take turns.  It is the keyed
 * backend of sched_heap.c with the priority as the key: among equals the
 * least recently used comes first.  A pick, add, remove or update is
 * O(log n); k skipped entries add O(k log k) and keep their stamp, so they
 * are first among their equals for the next message.
 *
 * Because the scheduler holds only eligible providers, a lower group that
 * goes down or fills up simply leaves the heap and the next group takes
 * over; when it returns it is preferred again at once.
 */
#include "dispatch/sched_heap.h"
#include "dispatch/scheduler.h"

/* Signed priorities order correctly under the heap's signed difference. */
static uint64_t
key_of(const struct sched_entry *e)
{
	return (uint64_t)(int64_t)e->priority;
}

static void *
priority_new(uint64_t seed)
{
	return sched__keyed_new(key_of);
}

const struct scheduler_ops sched_priority_ops = {
    .name = "priority",
    .new = priority_new,
    .free = sched__keyed_free,
    .add = sched__keyed_add,
    .remove = sched__keyed_remove,
    .update = sched__keyed_update,
    .pick = sched__keyed_pick,
    .count = sched__keyed_count,
};
