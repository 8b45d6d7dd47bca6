/*
 * How much a provider may take: max_in_flight, the slow-start ramp of a
 * provider that comes back (slow_start_s), the rate_per_s token bucket
 * (burst of one second's worth), and max_in_flight_bytes (the message
 * bytes the server holds for it, whatever its agent claims).
 *
 * The predicates are pure, so the dispatcher's eligibility test has no
 * side effects; time moves the limits only in limits__tick(), which the
 * dispatcher calls before it asks.  The ramp needs no timer of its own:
 * each result and heartbeat of a ramping provider ticks it.  The bucket
 * does need one when it is empty; the dispatcher arms it for
 * limits__rate_wait_us().
 */
#include "dispatch/dispatch_int.h"
#include "dispatch/registry.h"

unsigned
limits__max_in_flight(const struct provider *p, int64_t now_ms)
{
	int64_t elapsed, window;
	unsigned n;

	if (p->breaker == BREAKER_HALF_OPEN)
		return 1;
	if (p->ramp_start_mono == 0)
		return (unsigned)p->max_in_flight;
	elapsed = now_ms - p->ramp_start_mono;
	window = (int64_t)p->slow_start_s * 1000;
	if (elapsed >= window)
		return (unsigned)p->max_in_flight;
	n = (unsigned)((int64_t)p->max_in_flight * elapsed / window);
	return n > 0 ? n : 1;
}

void
limits__ramp_start(struct provider *p, int64_t now_ms)
{
	/* 0 means "no ramp", so a clock reading of 0 becomes 1. */
	if (p->slow_start_s > 0)
		p->ramp_start_mono = now_ms > 0 ? now_ms : 1;
}

void
limits__tick(struct provider *p, int64_t now_us)
{
	double burst = p->rate_per_s;

	if (p->ramp_start_mono != 0 && now_us / 1000 - p->ramp_start_mono >=
					   (int64_t)p->slow_start_s * 1000)
		p->ramp_start_mono = 0;
	if (p->rate_per_s <= 0)
		return;
	if (p->tokens_mono_us == 0)
		p->tokens = burst;
	else
		p->tokens +=
		    (double)(now_us - p->tokens_mono_us) * p->rate_per_s / 1e6;
	if (p->tokens > burst)
		p->tokens = burst;
	p->tokens_mono_us = now_us;
}

bool
limits__bytes_ok(const struct provider *p, int64_t cap)
{
	return cap <= 0 || p->bytes_in_flight < (uint64_t)cap;
}

bool
limits__rate_ok(const struct provider *p)
{
	return p->rate_per_s <= 0 || p->tokens >= 1.0;
}

int64_t
limits__rate_wait_us(const struct provider *p)
{
	if (limits__rate_ok(p))
		return 0;
	/* One microsecond more, so the timer never fires a hair early. */
	return (int64_t)((1.0 - p->tokens) * 1e6 / p->rate_per_s) + 1;
}

void
limits__take(struct provider *p)
{
	if (p->rate_per_s > 0)
		p->tokens -= 1.0;
}
