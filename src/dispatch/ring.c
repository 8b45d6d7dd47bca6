/*
 * The ring's storage is one array; growth copies the live elements to the
 * front of a new array twice the size, so indexes stay simple modulo cap.
 */
#include "dispatch/ring.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

void
ring_init(struct ring *r, size_t esz)
{
	memset(r, 0, sizeof(*r));
	r->esz = esz;
}

void
ring_cleanup(struct ring *r)
{
	free(r->v);
	r->v = NULL;
	r->head = r->len = r->cap = 0;
}

static void
ring_grow(struct ring *r)
{
	size_t ncap = r->cap ? r->cap * 2 : 64;
	unsigned char *nv = xreallocarray(NULL, ncap, r->esz);
	size_t first = r->cap - r->head;

	if (r->len > 0) {
		if (first >= r->len) {
			memcpy(nv, r->v + r->head * r->esz, r->len * r->esz);
		} else {
			memcpy(nv, r->v + r->head * r->esz, first * r->esz);
			memcpy(nv + first * r->esz, r->v,
			       (r->len - first) * r->esz);
		}
	}
	free(r->v);
	r->v = nv;
	r->cap = ncap;
	r->head = 0;
}

void
ring_push_back(struct ring *r, const void *e)
{
	if (r->len == r->cap)
		ring_grow(r);
	memcpy(r->v + ((r->head + r->len) % r->cap) * r->esz, e, r->esz);
	r->len++;
}

void
ring_push_front(struct ring *r, const void *e)
{
	if (r->len == r->cap)
		ring_grow(r);
	r->head = (r->head + r->cap - 1) % r->cap;
	memcpy(r->v + r->head * r->esz, e, r->esz);
	r->len++;
}

bool
ring_pop_front(struct ring *r, void *e)
{
	if (r->len == 0)
		return false;
	if (e != NULL)
		memcpy(e, r->v + r->head * r->esz, r->esz);
	r->head = (r->head + 1) % r->cap;
	r->len--;
	return true;
}

void *
ring_front(struct ring *r)
{
	return r->len == 0 ? NULL : r->v + r->head * r->esz;
}
