/*
 * The binary heap behind the keyed schedulers (see sched_heap.h).  The
 * arrays grow by doubling on insert and never shrink while the scheduler
 * lives; the provider count is small and bounded by the configuration.
 * Picking never allocates: the frontier used to walk past skipped entries
 * lives in an array allocated alongside the heap, and it can never hold
 * more indices than the heap holds entries.
 *
 * The keyed backend at the end owns its heap and counter; a key function
 * is all that tells priority from least_outstanding.
 */
#include <stdint.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/util.h"
#include "dispatch/sched_heap.h"

static bool
before(const struct sched_entry *a, const struct sched_entry *b)
{
	int64_t d = (int64_t)(a->key - b->key);

	if (d != 0)
		return d < 0;
	return a->seq < b->seq;
}

static void
place(struct sched_heap *h, size_t i, struct sched_entry *e)
{
	h->v[i] = e;
	e->idx = i;
}

static void
sift_up(struct sched_heap *h, size_t i)
{
	struct sched_entry *e = h->v[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!before(e, h->v[parent]))
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, e);
}

static void
sift_down(struct sched_heap *h, size_t i)
{
	struct sched_entry *e = h->v[i];

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && before(h->v[c + 1], h->v[c]))
			c++;
		if (!before(h->v[c], e))
			break;
		place(h, i, h->v[c]);
		i = c;
	}
	place(h, i, e);
}

void
sched__heap_init(struct sched_heap *h)
{
	h->v = NULL;
	h->frontier = NULL;
	h->n = 0;
	h->cap = 0;
}

void
sched__heap_cleanup(struct sched_heap *h)
{
	free(h->v);
	free(h->frontier);
	sched__heap_init(h);
}

void
sched__heap_insert(struct sched_heap *h, struct sched_entry *e)
{
	if (h->n == h->cap) {
		size_t cap = h->cap == 0 ? 8 : h->cap * 2;
		h->v = xreallocarray(h->v, cap, sizeof(*h->v));
		h->frontier =
		    xreallocarray(h->frontier, cap, sizeof(*h->frontier));
		h->cap = cap;
	}
	place(h, h->n, e);
	h->n++;
	sift_up(h, e->idx);
}

void
sched__heap_delete(struct sched_heap *h, struct sched_entry *e)
{
	size_t i = e->idx;
	struct sched_entry *last;

	if (i >= h->n || h->v[i] != e)
		fatalx("sched heap: %s is not held", e->name ? e->name : "?");
	last = h->v[--h->n];
	if (last == e)
		return;
	place(h, i, last);
	sched__heap_fix(h, last);
}

void
sched__heap_fix(struct sched_heap *h, struct sched_entry *e)
{
	size_t i = e->idx;

	if (i > 0 && before(e, h->v[(i - 1) / 2]))
		sift_up(h, i);
	else
		sift_down(h, i);
}

/* The frontier is itself a min-heap of slots, ordered by their entries. */
static bool
fbefore(const struct sched_heap *h, size_t a, size_t b)
{
	return before(h->v[a], h->v[b]);
}

static void
fpush(struct sched_heap *h, size_t *fn, size_t slot)
{
	size_t i = (*fn)++;

	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!fbefore(h, slot, h->frontier[parent]))
			break;
		h->frontier[i] = h->frontier[parent];
		i = parent;
	}
	h->frontier[i] = slot;
}

static size_t
fpop(struct sched_heap *h, size_t *fn)
{
	size_t top = h->frontier[0];
	size_t last = h->frontier[--(*fn)];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *fn)
			break;
		if (c + 1 < *fn &&
		    fbefore(h, h->frontier[c + 1], h->frontier[c]))
			c++;
		if (!fbefore(h, h->frontier[c], last))
			break;
		h->frontier[i] = h->frontier[c];
		i = c;
	}
	if (*fn > 0)
		h->frontier[i] = last;
	return top;
}

struct sched_entry *
sched__heap_min(struct sched_heap *h, sched_skip_fn skip, void *arg)
{
	size_t fn = 0;

	if (h->n == 0)
		return NULL;
	/*
	 * Walk best first: a slot's children enter the frontier only once
	 * the slot itself was skipped, so each skip adds at most one net
	 * index and the walk touches O(k) slots for k skips.
	 */
	fpush(h, &fn, 0);
	while (fn > 0) {
		size_t i = fpop(h, &fn);
		if (skip == NULL || !skip(h->v[i], arg))
			return h->v[i];
		if (2 * i + 1 < h->n)
			fpush(h, &fn, 2 * i + 1);
		if (2 * i + 2 < h->n)
			fpush(h, &fn, 2 * i + 2);
	}
	return NULL;
}

struct keyed_state {
	struct sched_heap heap;
	sched_key_fn key;
	uint64_t clock;
};

void *
sched__keyed_new(sched_key_fn key)
{
	struct keyed_state *st = xcalloc(1, sizeof(*st));

	sched__heap_init(&st->heap);
	st->key = key;
	return st;
}

void
sched__keyed_free(void *state)
{
	struct keyed_state *st = state;

	if (st == NULL)
		return;
	sched__heap_cleanup(&st->heap);
	free(st);
}

void
sched__keyed_add(void *state, struct sched_entry *e)
{
	struct keyed_state *st = state;

	/* A newcomer queues behind its equals, as if it had just been used. */
	e->key = st->key(e);
	e->seq = ++st->clock;
	sched__heap_insert(&st->heap, e);
}

void
sched__keyed_remove(void *state, struct sched_entry *e)
{
	struct keyed_state *st = state;

	sched__heap_delete(&st->heap, e);
}

void
sched__keyed_update(void *state, struct sched_entry *e)
{
	struct keyed_state *st = state;
	uint64_t key = st->key(e);

	if (e->key != key) {
		e->key = key;
		sched__heap_fix(&st->heap, e);
	}
}

struct sched_entry *
sched__keyed_pick(void *state, sched_skip_fn skip, void *arg)
{
	struct keyed_state *st = state;
	struct sched_entry *e = sched__heap_min(&st->heap, skip, arg);

	if (e == NULL)
		return NULL;
	e->seq = ++st->clock;
	sched__heap_fix(&st->heap, e);
	return e;
}

size_t
sched__keyed_count(void *state)
{
	const struct keyed_state *st = state;

	return st->heap.n;
}
