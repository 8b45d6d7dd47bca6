/*
 * The dispatcher's two containers that are not rings: the table of jobs
 * in flight, found by id when an agent's RESULT names one, and the
 * min-heap of messages backing off, ordered by when they are due.
 *
 * The table is a chained hash of the jobs themselves (the chain pointer
 * lives in struct job), doubled when it holds as many jobs as buckets, so
 * inserting, finding and removing cost O(1) and no allocation per job.
 * The heap stores 16 bytes a message.  Both grow by doubling and fail only
 * by running out of memory, which is fatal (xmalloc).
 */
#include "dispatch/dispatch_int.h"
#include "common/util.h"

#include <stdlib.h>

static size_t
bucket_of(const struct job_table *t, uint64_t id)
{
	return (size_t)(id * 0x9e3779b97f4a7c15ULL >> 20) & (t->nbuckets - 1);
}

static void
table_grow(struct job_table *t)
{
	size_t old = t->nbuckets, i;
	struct job **ov = t->v;

	t->nbuckets = old ? old * 2 : 256;
	t->v = xcalloc(t->nbuckets, sizeof(*t->v));
	for (i = 0; i < old; i++) {
		struct job *j = ov[i], *next;
		for (; j != NULL; j = next) {
			size_t b = bucket_of(t, j->id);
			next = j->hnext;
			j->hnext = t->v[b];
			t->v[b] = j;
		}
	}
	free(ov);
}

void
jobs__insert(struct job_table *t, struct job *j)
{
	size_t b;

	if (t->n + 1 > t->nbuckets)
		table_grow(t);
	b = bucket_of(t, j->id);
	j->hnext = t->v[b];
	t->v[b] = j;
	t->n++;
}

struct job *
jobs__find(const struct job_table *t, uint64_t id)
{
	struct job *j;

	if (t->nbuckets == 0)
		return NULL;
	for (j = t->v[bucket_of(t, id)]; j != NULL; j = j->hnext)
		if (j->id == id)
			return j;
	return NULL;
}

void
jobs__remove(struct job_table *t, struct job *j)
{
	struct job **pp = &t->v[bucket_of(t, j->id)];

	while (*pp != j)
		pp = &(*pp)->hnext;
	*pp = j->hnext;
	j->hnext = NULL;
	t->n--;
}

void
jobs__cleanup(struct job_table *t)
{
	free(t->v);
	t->v = NULL;
	t->n = t->nbuckets = 0;
}

void
delay__push(struct delay_heap *h, int64_t due_ms, int64_t rowid)
{
	size_t i;

	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 64;
		h->v = xreallocarray(h->v, h->cap, sizeof(*h->v));
	}
	i = h->n++;
	while (i > 0 && h->v[(i - 1) / 2].due_ms > due_ms) {
		h->v[i] = h->v[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->v[i].due_ms = due_ms;
	h->v[i].rowid = rowid;
}

void
delay__pop(struct delay_heap *h)
{
	struct delay_item last = h->v[--h->n];
	size_t i = 0, c;

	for (;;) {
		c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1].due_ms < h->v[c].due_ms)
			c++;
		if (h->v[c].due_ms >= last.due_ms)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n > 0)
		h->v[i] = last;
}

void
delay__cleanup(struct delay_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}
