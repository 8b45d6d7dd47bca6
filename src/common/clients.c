/* Connections per client (clients.h). */
#include "common/clients.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

static unsigned
bucket_of(const uint8_t key[16])
{
	uint32_t h = 2166136261u; /* FNV-1a */
	size_t i;

	for (i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h % CLIENTS_BUCKETS;
}

struct client_count *
client_table_get(struct client_table *t, const uint8_t key[16])
{
	unsigned b = bucket_of(key);
	struct client_count *c;

	for (c = t->bucket[b]; c != NULL; c = c->next)
		if (memcmp(c->key, key, 16) == 0)
			return c;
	c = xcalloc(1, sizeof(*c));
	memcpy(c->key, key, 16);
	c->next = t->bucket[b];
	t->bucket[b] = c;
	return c;
}

unsigned
client_table_count(const struct client_table *t, const uint8_t key[16])
{
	const struct client_count *c;

	for (c = t->bucket[bucket_of(key)]; c != NULL; c = c->next)
		if (memcmp(c->key, key, 16) == 0)
			return c->count;
	return 0;
}

void
client_table_put(struct client_table *t, struct client_count *c)
{
	struct client_count **pp;

	if (c->count > 0 && --c->count > 0)
		return;
	for (pp = &t->bucket[bucket_of(c->key)]; *pp != NULL;
	     pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			free(c);
			return;
		}
	}
}

void
client_table_clear(struct client_table *t)
{
	struct client_count *c, *next;
	size_t i;

	for (i = 0; i < CLIENTS_BUCKETS; i++) {
		for (c = t->bucket[i]; c != NULL; c = next) {
			next = c->next;
			free(c);
		}
		t->bucket[i] = NULL;
	}
}
