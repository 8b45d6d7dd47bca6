/*
 * The round robin scheduler: strict rotation over the held entries.  They
 * sit on a circular list (prev/next) with a cursor at the one whose turn
 * it is; a pick takes the cursor and moves it on, so add, remove and an
 * unskipped pick are O(1).
 *
 * A skipped entry keeps its turn.  When the cursor's entry (and maybe a
 * few after it) is skipped and a later one, w, is taken, w is moved to
 * just before the cursor, which is the end of the rotation, while the
 * cursor stays put: the skipped entries are first in line for the next
 * message and w waits a full round, exactly as if it had been taken in its
 * place in the rotation.  That costs O(k) for k skipped entries.
 *
 * A new entry joins at the end of the rotation (just before the cursor):
 * it waits for the entries already queued, but no more than one round.
 */
#include <stdlib.h>

#include "common/util.h"
#include "dispatch/scheduler.h"

struct rr_state {
	struct sched_entry *cursor; /* whose turn it is; NULL when empty */
	size_t n;
};

/* Links e in just before pos on the circle. */
static void
link_before(struct sched_entry *pos, struct sched_entry *e)
{
	e->next = pos;
	e->prev = pos->prev;
	pos->prev->next = e;
	pos->prev = e;
}

static void
unlink_entry(struct sched_entry *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->prev = e->next = NULL;
}

static void *
rr_new(uint64_t seed)
{
	return xcalloc(1, sizeof(struct rr_state));
}

static void
rr_free(void *state)
{
	/* The entries belong to the registry; only unlinking would remain. */
	free(state);
}

static void
rr_add(void *state, struct sched_entry *e)
{
	struct rr_state *st = state;

	if (st->cursor == NULL) {
		e->prev = e->next = e;
		st->cursor = e;
	} else
		link_before(st->cursor, e);
	st->n++;
}

static void
rr_remove(void *state, struct sched_entry *e)
{
	struct rr_state *st = state;

	if (--st->n == 0) {
		e->prev = e->next = NULL;
		st->cursor = NULL;
		return;
	}
	if (st->cursor == e)
		st->cursor = e->next;
	unlink_entry(e);
}

static void
rr_update(void *state, struct sched_entry *e)
{
	/* Rotation ignores weight, priority and load. */
}

static struct sched_entry *
rr_pick(void *state, sched_skip_fn skip, void *arg)
{
	struct rr_state *st = state;
	struct sched_entry *e = st->cursor;
	size_t i;

	for (i = 0; i < st->n; i++, e = e->next) {
		if (skip != NULL && skip(e, arg))
			continue;
		if (e == st->cursor)
			st->cursor = e->next;
		else {
			/* Send e to the back; the skipped keep their turn. */
			unlink_entry(e);
			link_before(st->cursor, e);
		}
		return e;
	}
	return NULL;
}

static size_t
rr_count(void *state)
{
	const struct rr_state *st = state;

	return st->n;
}

const struct scheduler_ops sched_round_robin_ops = {
    .name = "round_robin",
    .new = rr_new,
    .free = rr_free,
    .add = rr_add,
    .remove = rr_remove,
    .update = rr_update,
    .pick = rr_pick,
    .count = rr_count,
};
