/*
 * Connections counted per client, for the per-address limits of the SMTP
 * and HTTP listeners and of the event streams: a client is what
 * sockaddr_client_key() (util.h) makes of its address, an IPv4 address or an
 * IPv6 /64.  A hash table of counts; an entry lives while its count is above
 * zero, so the table holds at most one entry per connection open.  Not
 * thread-safe: the loop's.
 */
#ifndef SHIVNERI_CLIENTS_H
#define SHIVNERI_CLIENTS_H

#include <stdint.h>

#define CLIENTS_BUCKETS 256

struct client_count {
	uint8_t key[16];
	unsigned count; /* connections open */
	struct client_count *next;
};

struct client_table {
	struct client_count *bucket[CLIENTS_BUCKETS];
};

/* key's entry, made with count 0 when new (never NULL: xcalloc). */
struct client_count *client_table_get(struct client_table *t,
				      const uint8_t key[16]);
/* key's count, 0 when it has no entry (nothing is made). */
unsigned client_table_count(const struct client_table *t,
			    const uint8_t key[16]);
/* One connection of c's client fewer; c is freed when none is left (at
 * once if it counted none, an entry got and not taken). */
void client_table_put(struct client_table *t, struct client_count *c);
/* Frees every entry (at shutdown). */
void client_table_clear(struct client_table *t);

#endif
