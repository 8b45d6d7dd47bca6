/*
 * Housekeeping: once at start and every HOUSEKEEP_EVERY_MS the store
 * prunes idempotency keys older than a day and delivered and failed
 * messages older than retention_days; the dispatcher's counts follow what
 * it pruned once that is durable.  A failed run is logged and simply
 * tried again at the next tick: nothing waits for it.  (Moved out of
 * record.c, which holds the writes of a message's steps.)
 */
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/dispatch_int.h"
#include "store/store.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdint.h>

#define HOUSEKEEP_EVERY_MS (5 * 60 * 1000)
#define IDEM_KEEP_MS (24 * 3600 * 1000LL)

static void
housekeep_done(void *arg, int err, const int64_t pruned[MSG_NSTATUS])
{
	struct dispatcher *d = arg;
	int s;

	d->housekeeping = false;
	if (err != 0 || pruned == NULL) {
		log_warnx("- dispatch housekeeping_failed err=\"%s\"",
			  store_strerror(err));
		return;
	}
	/* The counts follow the disk. */
	for (s = 0; s < MSG_NSTATUS; s++)
		d->counts[s] -= pruned[s];
	if (pruned[MSG_DELIVERED] + pruned[MSG_FAILED] > 0)
		log_info("- dispatch housekeeping pruned delivered=%" PRId64
			 " failed=%" PRId64,
			 pruned[MSG_DELIVERED], pruned[MSG_FAILED]);
}

/* Once at start, then every HOUSEKEEP_EVERY_MS. */
void
dispatch__housekeep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dispatcher *d = arg;
	int64_t now = now_ms();

	dispatch__timer_start(d->housekeep_ev, HOUSEKEEP_EVERY_MS);
	if (d->housekeeping)
		return;
	d->housekeeping = true;
	store_housekeep(d->st, now - IDEM_KEEP_MS,
			now - (int64_t)d->cfg->retention_days * 86400000,
			housekeep_done, d);
}
