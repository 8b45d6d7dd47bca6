/*
 * The agent's view of its provider's health: the outcome window and the
 * account probe loop (agent_health.h says what each means).  Kept apart
 * from agent.c so that the policy can be tested with a fake connector and
 * a bare event_base, without a server or a forked agent.
 *
 * The probe loop runs only while account_down: one timer, at most one
 * probe under way; a probe that cannot start counts as failed and waits
 * for the next interval.  Nothing here is fatal but the timer's creation.
 */
#include "agent/agent_health.h"
#include "common/log.h"
#include "common/util.h"
#include "link/link.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

static void
probe_arm(struct agent_health *h)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(h->probe_interval_ms / 1000);
	tv.tv_usec = (suseconds_t)((h->probe_interval_ms % 1000) * 1000);
	if (evtimer_add(h->probe_ev, &tv) != 0)
		fatalx("agent: cannot arm the probe timer");
}

static void
account_back(struct agent_health *h, const char *how)
{
	h->account_down = false;
	if (h->probe_ev != NULL)
		evtimer_del(h->probe_ev);
	log_info("- agent account_ok provider=%s by=%s", h->name, how);
}

static void
probe_done(bool passed, const char *detail, void *arg)
{
	struct agent_health *h = arg;
	char clean[LINK_DETAIL_MAX + 1];

	h->probing = false;
	if (!h->account_down)
		return; /* a delivery ended it meanwhile */
	if (passed) {
		account_back(h, "probe");
		return;
	}
	detail = detail != NULL ? detail : "";
	log_info("- agent probe_failed provider=%s detail=\"%s\"", h->name,
		 log_sanitize(detail, strlen(detail), clean, sizeof(clean)));
	probe_arm(h);
}

static void
probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_health *h = arg;

	if (!h->account_down || h->probing)
		return;
	if (h->ops->probe == NULL) {
		/* No cheap check: a trial message under slow start is one. */
		account_back(h, "trial");
		return;
	}
	h->probes++;
	h->probing = true;
	if (h->ops->probe(h->cstate, probe_done, h) < 0) {
		h->probing = false;
		log_info("- agent probe_failed provider=%s detail=\"cannot "
			 "start\"",
			 h->name);
		probe_arm(h);
	}
}

void
agent_health_init(struct agent_health *h, struct event_base *base,
		  const char *name, const struct connector_ops *ops,
		  int probe_interval_s)
{
	memset(h, 0, sizeof(*h));
	h->name = name;
	h->ops = ops;
	h->probe_interval_ms =
	    (int64_t)(probe_interval_s > 0 ? probe_interval_s
					   : AGENT_PROBE_INTERVAL_S) *
	    1000;
	h->probe_ev = evtimer_new(base, probe_cb, h);
	if (h->probe_ev == NULL)
		fatalx("agent: cannot create the probe timer");
}

void
agent_health_cleanup(struct agent_health *h)
{
	if (h->probe_ev != NULL)
		event_free(h->probe_ev);
	h->probe_ev = NULL;
}

void
agent_health_record(struct agent_health *h, int outcome)
{
	uint8_t failed;

	switch (outcome) {
	case OUTCOME_DELIVERED:
	case OUTCOME_PERMANENT:
	case OUTCOME_TOO_LARGE:      /* the provider answered: it works */
	case OUTCOME_NEEDS_SMTPUTF8: /* as too_large: the message's need */
		failed = 0;
		break;
	case OUTCOME_THROTTLED:
		return; /* pacing, not failure */
	default:
		failed = 1;
		break;
	}
	if (h->n == AGENT_HEALTH_WINDOW)
		h->nfailed -= h->ring[h->next];
	else
		h->n++;
	h->ring[h->next] = failed;
	h->nfailed += failed;
	h->next = (h->next + 1) % AGENT_HEALTH_WINDOW;
	if (outcome == OUTCOME_DELIVERED && h->account_down)
		account_back(h, "delivery");
	if (outcome == OUTCOME_ACCOUNT && !h->account_down) {
		h->account_down = true;
		log_info("- agent account_down provider=%s probe_in_ms=%lld",
			 h->name, (long long)h->probe_interval_ms);
		if (!h->probing)
			probe_arm(h);
	}
}

int
agent_health_level(const struct agent_health *h)
{
	int c = h->ops->health(h->cstate);

	if (c < LINK_HEALTH_OK || c > LINK_HEALTH_DOWN || h->account_down)
		return LINK_HEALTH_DOWN;
	if (c == LINK_HEALTH_OK && 2 * h->nfailed > h->n)
		return LINK_HEALTH_DEGRADED;
	return c;
}
