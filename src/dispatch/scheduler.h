/*
 * Schedulers: which eligible provider takes the next message.
 *
 * The dispatcher keeps in a scheduler exactly the providers that may take
 * a message now (up, enabled, under max_in_flight and rate_per_s): it adds
 * a provider when it becomes eligible, removes it when it stops being so,
 * and calls update when its in_flight changes.  pick() then never has to
 * scan ineligible providers, and each backend picks in O(1) or O(log n)
 * (plus the providers it skips for the message at hand: at most the
 * number already tried, which max_attempts bounds).
 *
 * Backends, one file each, looked up by name: random, round_robin,
 * weighted (smooth, by stride scheduling), priority (lowest number first,
 * round robin among equals), least_outstanding (fewest in flight, round
 * robin among equals).
 */
#ifndef SHIVNERI_SCHEDULER_H
#define SHIVNERI_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A provider as schedulers see it; embedded in the registry's provider.
 * The fields after "scheduler-private" belong to the backend holding it.
 */
struct sched_entry {
	const char *name;
	int weight;         /* >= 1 */
	int priority;       /* lower first */
	unsigned in_flight; /* maintained by the dispatcher */
	/* scheduler-private */
	bool in_sched;
	size_t idx;
	uint64_t key;
	uint64_t seq;
	struct sched_entry *prev, *next;
};

/* Return true to skip e for this pick (it already failed the message). */
typedef bool (*sched_skip_fn)(const struct sched_entry *e, void *arg);

struct scheduler_ops {
	const char *name;
	void *(*new)(uint64_t seed);
	void (*free)(void *state);
	void (*add)(void *state, struct sched_entry *e);
	void (*remove)(void *state, struct sched_entry *e);
	/* e->in_flight (or weight/priority) changed while e is held. */
	void (*update)(void *state, struct sched_entry *e);
	/*
	 * The next entry not skipped, advancing the backend's fairness state
	 * as if it were used; NULL when every held entry is skipped or none
	 * is held.  skip may be NULL.
	 */
	struct sched_entry *(*pick)(void *state, sched_skip_fn skip, void *arg);
	size_t (*count)(void *state);
};

extern const struct scheduler_ops sched_random_ops;
extern const struct scheduler_ops sched_round_robin_ops;
extern const struct scheduler_ops sched_weighted_ops;
extern const struct scheduler_ops sched_priority_ops;
extern const struct scheduler_ops sched_least_outstanding_ops;

/* NULL when no backend has that name. */
const struct scheduler_ops *scheduler_lookup(const char *name);

/* The front the dispatcher calls; it checks arguments and owns state. */
struct scheduler;
struct scheduler *scheduler_new(const struct scheduler_ops *ops, uint64_t seed);
void scheduler_free(struct scheduler *s);
const char *scheduler_name(const struct scheduler *s);
/* Adding a held entry or removing one not held is a no-op. */
void scheduler_add(struct scheduler *s, struct sched_entry *e);
void scheduler_remove(struct scheduler *s, struct sched_entry *e);
void scheduler_update(struct scheduler *s, struct sched_entry *e);
bool scheduler_holds(const struct scheduler *s, const struct sched_entry *e);
struct sched_entry *scheduler_pick(struct scheduler *s, sched_skip_fn skip,
				   void *arg);
size_t scheduler_count(const struct scheduler *s);

#endif
