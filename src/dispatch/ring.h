/*
 * A growable ring buffer (deque) of fixed-size elements: the dispatcher's
 * queues.  Pushing and popping at either end is O(1) amortized; the buffer
 * doubles when full and never shrinks below what it held at its peak,
 * which for a queue of rowids is 8 bytes a message.
 */
#ifndef SHIVNERI_RING_H
#define SHIVNERI_RING_H

#include <stdbool.h>
#include <stddef.h>

struct ring {
	unsigned char *v;
	size_t esz;  /* element size */
	size_t head; /* index of the first element */
	size_t len;
	size_t cap;
};

void ring_init(struct ring *r, size_t esz);
void ring_cleanup(struct ring *r);
void ring_push_back(struct ring *r, const void *e);
void ring_push_front(struct ring *r, const void *e);
/* False when empty; otherwise copies the element out (e may be NULL). */
bool ring_pop_front(struct ring *r, void *e);
/* The first element, or NULL when empty; valid until the next change. */
void *ring_front(struct ring *r);

#endif
