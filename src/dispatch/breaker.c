/*
 * The circuit breaker of one provider (see registry.h for the states).
 *
 * breaker_threshold consecutive provider-caused failures open it; after
 * the cool-down it is half-open and lets one trial message through; the
 * trial's success closes it, its failure opens it again with the cool-down
 * doubled (capped at five minutes), so a provider that keeps failing is
 * probed less and less often.  A permanent refusal is the provider working
 * and counts as a success.
 *
 * Only the provider's breaker fields change here.  Taking the provider
 * down and arming the timer are the dispatcher's, because they move
 * messages and touch the loop; nothing here can fail.
 */
#include "dispatch/dispatch_int.h"
#include "common/log.h"
#include "dispatch/registry.h"

void
breaker__init(struct provider *p, int cooldown_ms)
{
	if (p->breaker_cooldown_ms == 0)
		p->breaker_cooldown_ms = cooldown_ms;
}

bool
breaker__failure(struct provider *p, int threshold)
{
	p->consecutive_failures++;
	if (p->breaker == BREAKER_HALF_OPEN) {
		p->breaker_cooldown_ms *= 2;
		if (p->breaker_cooldown_ms > BREAKER_MAX_COOLDOWN_MS)
			p->breaker_cooldown_ms = BREAKER_MAX_COOLDOWN_MS;
	} else if (p->breaker != BREAKER_CLOSED ||
		   p->consecutive_failures < threshold) {
		return false;
	}
	p->breaker = BREAKER_OPEN;
	log_info("- registry breaker_open provider=%s failures=%d "
		 "cooldown_ms=%d",
		 p->name, p->consecutive_failures, p->breaker_cooldown_ms);
	return true;
}

void
breaker__success(struct provider *p, int cooldown_ms)
{
	p->consecutive_failures = 0;
	if (p->breaker == BREAKER_HALF_OPEN) {
		p->breaker = BREAKER_CLOSED;
		p->breaker_cooldown_ms = cooldown_ms;
		log_info("- registry breaker_closed provider=%s", p->name);
	}
}

bool
breaker__half_open(struct provider *p)
{
	if (p->breaker != BREAKER_OPEN)
		return false;
	p->breaker = BREAKER_HALF_OPEN;
	log_info("- registry breaker_half_open provider=%s trial=1", p->name);
	return true;
}

bool
breaker__allows(const struct provider *p)
{
	return p->breaker != BREAKER_OPEN;
}
