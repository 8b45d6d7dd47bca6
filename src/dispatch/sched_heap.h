/*
 * A binary min-heap of scheduler entries, shared by the backends that pick
 * by a key (weighted, priority, least_outstanding).  Entries are ordered by
 * (key, seq): key is the backend's measure (pass, priority, in_flight) and
 * seq breaks ties, so the order is total and does not depend on the heap's
 * shape.  Keys compare modulo 2^64 (as a signed difference) so that a
 * stride pass may wrap; every backend keeps its live keys within 2^63 of
 * one another.  An entry's idx is its slot.
 *
 * Below the heap sits the keyed backend that priority and least_outstanding
 * share: the same heap with a key taken from the entry by a function and a
 * seq stamped from a counter, so that equal keys take turns.
 *
 * Internal to src/dispatch/sched_*.c (hence the double underscore).
 */
#ifndef SHIVNERI_SCHED_HEAP_H
#define SHIVNERI_SCHED_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "dispatch/scheduler.h"

struct sched_heap {
	struct sched_entry **v;
	size_t *frontier; /* scratch for sched__heap_min; same capacity */
	size_t n, cap;
};

void sched__heap_init(struct sched_heap *h);
/* Frees the arrays, not the entries (the registry owns those). */
void sched__heap_cleanup(struct sched_heap *h);
/* Inserts e with its current key and seq; may grow the arrays. */
void sched__heap_insert(struct sched_heap *h, struct sched_entry *e);
/* e must be in h. */
void sched__heap_delete(struct sched_heap *h, struct sched_entry *e);
/* Restores the order after e's key or seq changed; e must be in h. */
void sched__heap_fix(struct sched_heap *h, struct sched_entry *e);
/*
 * The least entry that skip (may be NULL) does not reject, or NULL.  A
 * best-first walk from the root: O(1) when the root is taken, otherwise
 * O(k log k) for k skipped entries.  Never allocates and does not change
 * the heap.
 */
struct sched_entry *sched__heap_min(struct sched_heap *h, sched_skip_fn skip,
				    void *arg);

/*
 * The keyed backend: entries ordered by (key(e), seq), where seq is a
 * counter stamped on an entry when it is added or picked, so that among
 * equal keys the least recently used comes first (round robin).  A pick,
 * add, remove or update is O(log n), plus O(k log k) for k skipped
 * entries, which keep their stamp and so their place among equals.  A
 * backend keeps its key function and its ops table and fills every other
 * slot with these; its new() passes the key function to
 * sched__keyed_new().
 */
typedef uint64_t (*sched_key_fn)(const struct sched_entry *e);

void *sched__keyed_new(sched_key_fn key);
void sched__keyed_free(void *state);
void sched__keyed_add(void *state, struct sched_entry *e);
void sched__keyed_remove(void *state, struct sched_entry *e);
/* Re-sifts e only when its key changed. */
void sched__keyed_update(void *state, struct sched_entry *e);
struct sched_entry *sched__keyed_pick(void *state, sched_skip_fn skip,
				      void *arg);
size_t sched__keyed_count(void *state);

#endif
