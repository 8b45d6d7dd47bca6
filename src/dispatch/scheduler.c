/*
 * The scheduler front: looks a backend up by name and stands between the
 * dispatcher and the backend, checking arguments so that no backend has
 * to.  It owns the backend's state and each entry's in_sched flag, which
 * is what makes adding a held entry, or removing or updating one that is
 * not held, a harmless no-op rather than a corrupted list or heap.
 *
 * A NULL scheduler, ops table or entry is our own bug and fatal; so is a
 * backend returning an entry it does not hold, which costs one load to
 * check on every pick.  (Whether it honoured skip is left to the tests:
 * asking skip again would double the dispatcher's cost per pick.)
 */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "dispatch/scheduler.h"

struct scheduler {
	const struct scheduler_ops *ops;
	void *state;
};

static const struct scheduler_ops *const backends[] = {
    &sched_random_ops,   &sched_round_robin_ops,       &sched_weighted_ops,
    &sched_priority_ops, &sched_least_outstanding_ops,
};

const struct scheduler_ops *
scheduler_lookup(const char *name)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < ARRAY_SIZE(backends); i++)
		if (strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

struct scheduler *
scheduler_new(const struct scheduler_ops *ops, uint64_t seed)
{
	struct scheduler *s;

	if (ops == NULL || ops->new == NULL || ops->free == NULL ||
	    ops->add == NULL || ops->remove == NULL || ops->update == NULL ||
	    ops->pick == NULL || ops->count == NULL)
		fatalx("scheduler_new: incomplete backend %s",
		       ops != NULL && ops->name != NULL ? ops->name : "(null)");
	s = xcalloc(1, sizeof(*s));
	s->ops = ops;
	s->state = ops->new (seed);
	return s;
}

void
scheduler_free(struct scheduler *s)
{
	if (s == NULL)
		return;
	s->ops->free(s->state);
	free(s);
}

const char *
scheduler_name(const struct scheduler *s)
{
	if (s == NULL)
		fatalx("scheduler_name: NULL scheduler");
	return s->ops->name;
}

static void
check(const struct scheduler *s, const struct sched_entry *e, const char *what)
{
	if (s == NULL || e == NULL)
		fatalx("scheduler_%s: NULL %s", what,
		       s == NULL ? "scheduler" : "entry");
}

void
scheduler_add(struct scheduler *s, struct sched_entry *e)
{
	check(s, e, "add");
	if (e->in_sched)
		return;
	s->ops->add(s->state, e);
	e->in_sched = true;
}

void
scheduler_remove(struct scheduler *s, struct sched_entry *e)
{
	check(s, e, "remove");
	if (!e->in_sched)
		return;
	s->ops->remove(s->state, e);
	e->in_sched = false;
}

void
scheduler_update(struct scheduler *s, struct sched_entry *e)
{
	check(s, e, "update");
	if (!e->in_sched)
		return;
	s->ops->update(s->state, e);
}

bool
scheduler_holds(const struct scheduler *s, const struct sched_entry *e)
{
	check(s, e, "holds");
	return e->in_sched;
}

struct sched_entry *
scheduler_pick(struct scheduler *s, sched_skip_fn skip, void *arg)
{
	struct sched_entry *e;

	if (s == NULL)
		fatalx("scheduler_pick: NULL scheduler");
	e = s->ops->pick(s->state, skip, arg);
	if (e != NULL && !e->in_sched)
		fatalx("scheduler %s picked %s, which it may not", s->ops->name,
		       e->name != NULL ? e->name : "?");
	return e;
}

size_t
scheduler_count(const struct scheduler *s)
{
	if (s == NULL)
		fatalx("scheduler_count: NULL scheduler");
	return s->ops->count(s->state);
}
