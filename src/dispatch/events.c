/*
 * The event hub (events.h): a ring of the last events, each a copy of the
 * published record with its texts on the heap, and a list of subscribers
 * called in order of subscription.  Unsubscribing from inside a callback
 * only marks the entry; the list is swept once the publish is over.
 */
#include "dispatch/events.h"

#include "common/buf.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct events_sub {
	events_cb cb;
	void *arg;
	bool dead;
	struct events_sub *next;
};

struct events {
	struct ev_rec *ring; /* history slots; texts owned */
	size_t cap;
	size_t head; /* next slot to write */
	size_t n;    /* slots in use */
	uint64_t seq;
	struct events_sub *subs;
	int publishing; /* depth: unsubscribe defers the free meanwhile */
	size_t nsubs;
};

static const char *const type_names[EV_NTYPES] = {
    [EV_MSG_QUEUED] = "message.queued",
    [EV_MSG_ATTEMPT] = "message.attempt",
    [EV_MSG_DELIVERED] = "message.delivered",
    [EV_MSG_FAILED] = "message.failed",
    [EV_PROVIDER_UP] = "provider.up",
    [EV_PROVIDER_DOWN] = "provider.down",
    [EV_PROVIDER_PAUSED] = "provider.paused",
    [EV_PROVIDER_DISABLED] = "provider.disabled",
    [EV_PROVIDER_ENABLED] = "provider.enabled",
    [EV_PROVIDER_LIMIT_LEARNED] = "provider.limit_learned",
    [EV_PROVIDER_LIMIT_RESTORED] = "provider.limit_restored",
    [EV_PROVIDER_SMTPUTF8_REFUSED] = "provider.smtputf8_refused",
    [EV_PROVIDER_SMTPUTF8_RESTORED] = "provider.smtputf8_restored",
};

const char *
events_type_name(int type)
{
	if (type < 0 || type >= EV_NTYPES)
		return "unknown";
	return type_names[type];
}

struct events *
events_new(size_t history)
{
	struct events *ev = xcalloc(1, sizeof(*ev));

	ev->cap = history > 0 ? history : 1;
	ev->ring = xcalloc(ev->cap, sizeof(*ev->ring));
	/* Ids keep growing across restarts (events.h). */
	ev->seq = (uint64_t)now_ms() * 1000;
	return ev;
}

static void
rec_clear(struct ev_rec *r)
{
	free((char *)(uintptr_t)r->text);
	free((char *)(uintptr_t)r->pmid);
	memset(r, 0, sizeof(*r));
}

static void
subs_sweep(struct events *ev)
{
	struct events_sub **pp = &ev->subs;

	while (*pp != NULL) {
		struct events_sub *s = *pp;

		if (s->dead) {
			*pp = s->next;
			free(s);
		} else
			pp = &s->next;
	}
}

void
events_free(struct events *ev)
{
	size_t i;

	if (ev == NULL)
		return;
	for (i = 0; i < ev->cap; i++)
		rec_clear(&ev->ring[i]);
	free(ev->ring);
	while (ev->subs != NULL) {
		struct events_sub *s = ev->subs;

		ev->subs = s->next;
		free(s);
	}
	free(ev);
}

static const char *
dup_text(const char *s)
{
	return s != NULL && s[0] != '\0' ? xstrdup(s) : NULL;
}

uint64_t
events_publish(struct events *ev, const struct ev_rec *r)
{
	struct ev_rec *slot = &ev->ring[ev->head];
	struct events_sub *s;

	rec_clear(slot);
	*slot = *r;
	slot->seq = ++ev->seq;
	if (slot->at_ms == 0)
		slot->at_ms = now_ms();
	slot->id[sizeof(slot->id) - 1] = '\0';
	slot->provider[sizeof(slot->provider) - 1] = '\0';
	slot->state[sizeof(slot->state) - 1] = '\0';
	slot->text = dup_text(r->text);
	slot->pmid = dup_text(r->pmid);
	ev->head = (ev->head + 1) % ev->cap;
	if (ev->n < ev->cap)
		ev->n++;

	ev->publishing++;
	for (s = ev->subs; s != NULL; s = s->next)
		if (!s->dead)
			s->cb(s->arg, slot);
	if (--ev->publishing == 0)
		subs_sweep(ev);
	return slot->seq;
}

struct events_sub *
events_subscribe(struct events *ev, events_cb cb, void *arg)
{
	struct events_sub *s = xcalloc(1, sizeof(*s));
	struct events_sub **pp = &ev->subs;

	s->cb = cb;
	s->arg = arg;
	while (*pp != NULL)
		pp = &(*pp)->next;
	*pp = s;
	ev->nsubs++;
	return s;
}

void
events_unsubscribe(struct events *ev, struct events_sub *s)
{
	if (s == NULL || s->dead)
		return;
	s->dead = true;
	ev->nsubs--;
	if (ev->publishing == 0)
		subs_sweep(ev);
}

size_t
events_subscribers(const struct events *ev)
{
	return ev->nsubs;
}

uint64_t
events_last_seq(const struct events *ev)
{
	return ev->seq;
}

/*
 * The ring's index of the first kept event after `after`, or ev->n when
 * none is; *gap when some after it are gone.  Seqs in the ring are
 * consecutive (each publish takes the next), so this is arithmetic, not a
 * scan: a client catching up share by share costs what it reads, not the
 * history's length at every share.
 */
static size_t
first_after(const struct events *ev, uint64_t after, bool *gap)
{
	uint64_t oldest;

	*gap = false;
	if (after >= ev->seq)
		return ev->n;
	if (ev->n == 0) {
		*gap = true;
		return 0;
	}
	oldest = ev->seq - ev->n + 1;
	if (after + 1 < oldest) {
		*gap = true;
		return 0;
	}
	return (size_t)(after + 1 - oldest);
}

static const struct ev_rec *
kept_at(const struct events *ev, size_t i)
{
	return &ev->ring[(ev->head + ev->cap - ev->n + i) % ev->cap];
}

bool
events_replay(const struct events *ev, uint64_t after, events_cb cb, void *arg)
{
	size_t i, n = ev->n;
	bool gap;

	if (after == 0)
		return true;
	/* n as it is now: a callback that published would not extend it. */
	for (i = first_after(ev, after, &gap); i < n; i++)
		cb(arg, kept_at(ev, i));
	return !gap;
}

const struct ev_rec *
events_next(const struct events *ev, uint64_t after, bool *gap)
{
	size_t i = first_after(ev, after, gap);

	return i < ev->n ? kept_at(ev, i) : NULL;
}

static int
add_str(struct buf *b, const char *name, const char *v)
{
	int rc;

	if ((rc = buf_appendf(b, ",\"%s\":\"", name)) != 0)
		return rc;
	if ((rc = buf_append_json_str(b, v, strlen(v))) != 0)
		return rc;
	return buf_append(b, "\"", 1);
}

static int
format_message(const struct ev_rec *r, struct buf *b)
{
	int rc = 0;

	if (r->provider[0] != '\0')
		rc = add_str(b, "provider", r->provider);
	if (rc == 0 && r->type == EV_MSG_ATTEMPT)
		rc = buf_appendf(b, ",\"outcome\":\"%s\",\"attempt\":%d",
				 outcome_name(r->outcome), r->attempt);
	if (rc == 0 &&
	    (r->type == EV_MSG_DELIVERED || r->type == EV_MSG_FAILED))
		rc = buf_appendf(b, ",\"attempts\":%d", r->attempt);
	if (rc == 0 && r->pmid != NULL && r->pmid[0] != '\0')
		rc = add_str(b, "provider_message_id", r->pmid);
	if (rc == 0 && r->text != NULL && r->text[0] != '\0')
		rc = add_str(b, r->type == EV_MSG_FAILED ? "error" : "detail",
			     r->text);
	return rc;
}

static int
format_provider(const struct ev_rec *r, struct buf *b)
{
	char ts[40];
	int rc = add_str(b, "state", r->state);

	if (rc == 0 && r->text != NULL && r->text[0] != '\0')
		rc = add_str(b, "reason", r->text);
	if (rc == 0 && r->type == EV_PROVIDER_PAUSED && r->until_ms > 0)
		rc = add_str(b, "paused_until",
			     rfc3339(r->until_ms, ts, sizeof(ts)));
	/* Named as in GET /v1/providers, so a client updates one field. */
	if (rc == 0 && (r->type == EV_PROVIDER_LIMIT_LEARNED ||
			r->type == EV_PROVIDER_LIMIT_RESTORED))
		rc = buf_appendf(b, ",\"max_message_bytes\":%" PRIu64,
				 r->max_bytes);
	if (rc == 0 && r->type == EV_PROVIDER_LIMIT_LEARNED && r->until_ms > 0)
		rc = add_str(b, "max_message_bytes_learned_until",
			     rfc3339(r->until_ms, ts, sizeof(ts)));
	if (rc == 0 && r->type == EV_PROVIDER_SMTPUTF8_REFUSED &&
	    r->until_ms > 0)
		rc = add_str(b, "smtputf8_refused_until",
			     rfc3339(r->until_ms, ts, sizeof(ts)));
	return rc;
}

int
events_format_json(const struct ev_rec *r, struct buf *out)
{
	size_t mark = out->len;
	char ts[40];
	int rc;

	rc = buf_appendf(out, "{\"seq\":%" PRIu64 ",\"type\":\"%s\"", r->seq,
			 events_type_name(r->type));
	if (rc == 0)
		rc = add_str(out, "at", rfc3339(r->at_ms, ts, sizeof(ts)));
	if (rc == 0 && EV_IS_MESSAGE(r->type)) {
		rc = add_str(out, "id", r->id);
		if (rc == 0)
			rc = format_message(r, out);
	} else if (rc == 0) {
		rc = add_str(out, "provider", r->provider);
		if (rc == 0)
			rc = format_provider(r, out);
	}
	if (rc == 0)
		rc = buf_append(out, "}", 1);
	if (rc != 0) {
		/* All or nothing, like the buf's own appends. */
		out->len = mark;
		if (out->p != NULL)
			out->p[mark] = '\0';
	}
	return rc;
}
