/* Failed AUTH checks per client and their wait (smtp_guard.h). */
#include "intake/smtp_guard.h"
#include "common/util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct guard_slot {
	uint8_t key[16];
	uint32_t failures;  /* within SMTP_GUARD_FORGET_MS of each other */
	int64_t last_ms;    /* the last failure; 0: the slot is free */
	int64_t blocked_ms; /* no check before this */
};

struct smtp_guard {
	struct guard_slot slot[SMTP_GUARD_SLOTS];
};

struct smtp_guard *
smtp_guard_new(void)
{
	return xcalloc(1, sizeof(struct smtp_guard));
}

void
smtp_guard_free(struct smtp_guard *g)
{
	free(g);
}

/* key's slot, or NULL; a slot long without a failure is forgotten. */
static struct guard_slot *
find(struct smtp_guard *g, const uint8_t key[16], int64_t now)
{
	struct guard_slot *s;
	size_t i;

	for (i = 0; i < SMTP_GUARD_SLOTS; i++) {
		s = &g->slot[i];
		if (s->last_ms == 0 || memcmp(s->key, key, 16) != 0)
			continue;
		if (now - s->last_ms >= SMTP_GUARD_FORGET_MS) {
			memset(s, 0, sizeof(*s));
			return NULL;
		}
		return s;
	}
	return NULL;
}

int64_t
smtp_guard_wait(struct smtp_guard *g, const uint8_t key[16], int64_t now)
{
	struct guard_slot *s = find(g, key, now);

	return s != NULL && s->blocked_ms > now ? s->blocked_ms - now : 0;
}

int64_t
smtp_guard_failed(struct smtp_guard *g, const uint8_t key[16], int64_t now)
{
	struct guard_slot *s = find(g, key, now), *old = NULL;
	int64_t wait;
	uint32_t over;
	size_t i;

	if (s == NULL) {
		/* A free slot, else the least recently failed. */
		for (i = 0; i < SMTP_GUARD_SLOTS; i++) {
			s = &g->slot[i];
			if (s->last_ms == 0)
				break;
			if (old == NULL || s->last_ms < old->last_ms)
				old = s;
		}
		if (i == SMTP_GUARD_SLOTS)
			s = old;
		memset(s, 0, sizeof(*s));
		memcpy(s->key, key, 16);
	}
	s->last_ms = now > 0 ? now : 1;
	if (s->failures < UINT32_MAX)
		s->failures++;
	if (s->failures <= SMTP_GUARD_FREE)
		return 0;
	over = s->failures - SMTP_GUARD_FREE;
	wait = SMTP_GUARD_FIRST_MS;
	while (--over > 0 && wait < SMTP_GUARD_MAX_MS)
		wait *= 2;
	if (wait > SMTP_GUARD_MAX_MS)
		wait = SMTP_GUARD_MAX_MS;
	s->blocked_ms = now + wait;
	return wait;
}

void
smtp_guard_succeeded(struct smtp_guard *g, const uint8_t key[16])
{
	size_t i;

	for (i = 0; i < SMTP_GUARD_SLOTS; i++)
		if (g->slot[i].last_ms != 0 &&
		    memcmp(g->slot[i].key, key, 16) == 0)
			memset(&g->slot[i], 0, sizeof(g->slot[i]));
}
