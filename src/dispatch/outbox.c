/*
 * Webhook bodies (outbox.h): the hub's JSON of an event, its "seq" field
 * replaced by a fresh webhook_id.  events_format_json() is the one place
 * that knows the fields of an event; this file only swaps the key.  And
 * the outbox's clock, which times retries and leases without the wall
 * clock's steps (outbox.h says why).
 */
#include "dispatch/outbox.h"
#include "common/buf.h"
#include "common/util.h"

#include <errno.h>
#include <string.h>

/* The hub's event JSON, at most: its texts are capped by the link. */
#define EVENT_JSON_MAX (16 * 1024)

int
outbox_body(const struct ev_rec *r, struct buf *out)
{
	struct buf ev;
	char id[ID_LEN + 1];
	const char *rest;
	size_t mark = out->len;
	int rc;

	buf_init(&ev, EVENT_JSON_MAX);
	rc = events_format_json(r, &ev);
	/* {"seq":N,"type":... : everything after the first comma stays. */
	rest = rc == 0 ? strchr(ev.p, ',') : NULL;
	if (rest == NULL) {
		buf_cleanup(&ev);
		return -E2BIG;
	}
	id_new(id);
	rc = buf_appendf(out, "{\"webhook_id\":\"%s\"", id);
	if (rc == 0)
		rc = buf_appends(out, rest);
	if (rc != 0) {
		out->len = mark;
		if (out->p != NULL)
			out->p[mark] = '\0';
	}
	buf_cleanup(&ev);
	return rc;
}

void
outbox_clock_init(struct outbox_clock *c, int64_t (*wall)(void),
		  int64_t (*mono)(void))
{
	c->wall = wall != NULL ? wall : now_ms;
	c->mono = mono != NULL ? mono : mono_ms;
	c->wall0 = c->wall();
	c->mono0 = c->mono();
}

int64_t
outbox_clock_now(const struct outbox_clock *c)
{
	return c->wall0 + (c->mono() - c->mono0);
}

int64_t
outbox_clock_expire_before(const struct outbox_clock *c, int64_t max_age_ms)
{
	int64_t cut = c->wall() - max_age_ms, now = outbox_clock_now(c);

	return cut < now ? cut : now;
}
