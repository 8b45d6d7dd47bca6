/*
 * The registry's container: a growable array of providers, in the order
 * the configuration names them and then in order of registration.  The
 * number of providers is small (tens), so lookups by name are linear.
 */
#include "dispatch/registry.h"
#include "common/config.h"
#include "common/util.h"
#include "dispatch/dispatch_int.h"
#include "link/link.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

struct registry {
	struct event_base *base;
	struct provider **v;
	size_t n, cap;
	bool default_overflow;
	uint64_t server_max; /* the server's max_message_bytes */
};

static struct provider *
provider_new(const char *name, const char *type)
{
	struct provider *p = xcalloc(1, sizeof(*p));

	p->name = xstrdup(name);
	p->type = xstrdup(type);
	p->se.name = p->name;
	p->se.weight = 1;
	p->se.priority = 100;
	p->max_in_flight = 32;
	p->state = PROVIDER_DOWN;
	p->health = LINK_HEALTH_DOWN;
	return p;
}

static void
provider_free(struct provider *p)
{
	if (p->breaker_timer != NULL)
		event_free(p->breaker_timer);
	if (p->pause_timer != NULL)
		event_free(p->pause_timer);
	if (p->rate_timer != NULL)
		event_free(p->rate_timer);
	if (p->limit_timer != NULL)
		event_free(p->limit_timer);
	if (p->utf8_timer != NULL)
		event_free(p->utf8_timer);
	if (p->hb_timer != NULL)
		event_free(p->hb_timer);
	free(p->name);
	free(p->type);
	free(p);
}

static void
registry_append(struct registry *r, struct provider *p)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 8;
		r->v = xreallocarray(r->v, r->cap, sizeof(*r->v));
	}
	r->v[r->n++] = p;
}

struct registry *
registry_new(struct event_base *base, const struct config *cfg)
{
	struct registry *r = xcalloc(1, sizeof(*r));
	size_t i;

	r->base = base;
	r->default_overflow = registry_default_overflow(cfg->scheduler);
	r->server_max = (uint64_t)cfg->max_message_bytes;
	for (i = 0; i < cfg->nproviders; i++) {
		const struct provider_config *pc = &cfg->providers[i];
		struct provider *p = provider_new(pc->name, pc->type);
		int64_t own = config_provider_max_bytes(pc);

		p->configured = true;
		p->spawn = pc->spawn;
		p->se.weight = pc->weight;
		p->se.priority = pc->priority;
		p->max_in_flight = pc->max_in_flight;
		p->rate_per_s = pc->rate_per_s;
		p->slow_start_s = pc->slow_start_s;
		p->overflow =
		    pc->overflow < 0 ? r->default_overflow : pc->overflow != 0;
		p->file_max_bytes = own > 0 && (uint64_t)own < r->server_max
					? (uint64_t)own
					: r->server_max;
		p->max_message_bytes = p->registered_max_bytes =
		    p->file_max_bytes;
		registry_append(r, p);
	}
	return r;
}

void
registry_free(struct registry *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n; i++)
		provider_free(r->v[i]);
	free(r->v);
	free(r);
}

size_t
registry_count(const struct registry *r)
{
	return r->n;
}

struct provider *
registry_at(struct registry *r, size_t i)
{
	return i < r->n ? r->v[i] : NULL;
}

struct provider *
registry_find(struct registry *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		if (strcmp(r->v[i]->name, name) == 0)
			return r->v[i];
	return NULL;
}

struct provider *
registry_add(struct registry *r, const char *name, const char *type, int weight,
	     int priority, int max_in_flight)
{
	struct provider *p = provider_new(name, type);

	if (weight > 0)
		p->se.weight = weight;
	if (priority >= 0)
		p->se.priority = priority;
	if (max_in_flight > 0)
		p->max_in_flight = max_in_flight;
	p->overflow = r->default_overflow;
	p->file_max_bytes = p->registered_max_bytes = p->max_message_bytes =
	    r->server_max;
	registry_append(r, p);
	return p;
}

void
registry_set_announced(struct provider *p, uint64_t announced)
{
	p->registered_max_bytes = announced > 0 && announced < p->file_max_bytes
				      ? announced
				      : p->file_max_bytes;
	/* A learned limit is told to end (its event); none: just set. */
	if (p->limit_learned_until_ms != 0)
		dispatch__provider_limit_restore(p, "registered");
	else
		p->max_message_bytes = p->registered_max_bytes;
}

size_t
registry_dynamic_count(const struct registry *r)
{
	size_t i, n = 0;

	for (i = 0; i < r->n; i++)
		if (!r->v[i]->configured)
			n++;
	return n;
}

bool
registry_default_overflow(const char *scheduler)
{
	return scheduler == NULL || strcmp(scheduler, "priority") != 0;
}

const char *
provider_state_word(int state)
{
	switch (state) {
	case PROVIDER_UP:
		return "up";
	case PROVIDER_PAUSED:
		return "paused";
	default:
		return "down";
	}
}

const char *
provider_state_name(const struct provider *p)
{
	return p->disabled ? "disabled" : provider_state_word(p->state);
}

const char *
provider_health_name(const struct provider *p)
{
	if (p->conn == NULL)
		return "down";
	return link_health_name(p->health);
}

bool
registry_any_up(const struct registry *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		if (r->v[i]->state == PROVIDER_UP && !r->v[i]->disabled)
			return true;
	return false;
}
