/*
 * What an agent's heartbeats say about its provider (docs/internals/
 * agent.md): a sliding window of the last AGENT_HEALTH_WINDOW outcomes,
 * and the account state with its probe loop.
 *
 * The window: over half of the outcomes in it failed for the provider's
 * sake (transient, ambiguous, account) makes the health `degraded`;
 * delivered and permanent (the provider worked, it refused a message)
 * count as good; throttled is the provider's pacing and is not counted.
 *
 * An account outcome makes the health `down` (the server stops sending)
 * and starts the probe loop: every probe_interval_s the connector's probe
 * (connector.h) checks the account, and the first that passes makes the
 * health follow the window again, so the server brings the provider back
 * with its slow start.  A connector without a probe has no cheap check:
 * after one interval the agent reports its provider up again and the
 * server's slow start lets a trial of one message through; another
 * account answer takes it down again.  A delivery also proves the account
 * works and ends the loop.
 *
 * Owns one timer on the agent's event_base; a failure to create it is
 * fatal (out of memory).
 */
#ifndef SHIVNERI_AGENT_HEALTH_H
#define SHIVNERI_AGENT_HEALTH_H

#include "agent/connector.h"

#include <stdbool.h>
#include <stdint.h>

#define AGENT_HEALTH_WINDOW 20
#define AGENT_PROBE_INTERVAL_S 30 /* probe_interval_s when not set */

struct event;
struct event_base;

struct agent_health {
	const char *name; /* the provider's, for logs (borrowed) */
	const struct connector_ops *ops;
	void *cstate;
	int64_t probe_interval_ms;
	uint8_t ring[AGENT_HEALTH_WINDOW]; /* 1: a provider-caused failure */
	unsigned n, next, nfailed;
	bool account_down; /* down until a probe passes */
	bool probing;      /* a probe is under way */
	uint64_t probes;   /* started, for logs and tests */
	struct event *probe_ev;
};

/* cstate may be set later (the connector opens after); name borrowed. */
void agent_health_init(struct agent_health *h, struct event_base *base,
		       const char *name, const struct connector_ops *ops,
		       int probe_interval_s);
/*
 * With the connector's close(), in the same turn of the loop (a probe
 * under way is abandoned without its cb).
 */
void agent_health_cleanup(struct agent_health *h);
/* One job's outcome (enum outcome), as the connector reported it. */
void agent_health_record(struct agent_health *h, int outcome);
/* The heartbeat's health: enum link_health. */
int agent_health_level(const struct agent_health *h);

#endif
