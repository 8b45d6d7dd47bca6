/*
 * Unit tests of the event hub (dispatch/events.h): sequence numbers grow
 * and start past any earlier run's, the ring keeps the newest `history`
 * events and replay says when some are gone, events_next walks the ring
 * one event at a time across its wrap (and says when some are gone, and
 * when none is newer), a subscriber may drop
 * itself from its callback, and every event formats as valid JSON with
 * its texts escaped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/util.h"
#include "dispatch/events.h"

#include <jansson.h>
#include <string.h>

struct seen {
	uint64_t seq[16];
	size_t n;
	struct events *ev;
	struct events_sub *self;
	char text[32];
};

static void
keep_text(void *arg, const struct ev_rec *r)
{
	struct seen *s = arg;

	snprintf(s->text, sizeof(s->text), "%s", r->text ? r->text : "");
}

static void
record(void *arg, const struct ev_rec *r)
{
	struct seen *s = arg;

	if (s->n < 16)
		s->seq[s->n++] = r->seq;
}

static void
drop_self(void *arg, const struct ev_rec *r)
{
	struct seen *s = arg;

	record(arg, r);
	events_unsubscribe(s->ev, s->self);
}

static uint64_t
publish_queued(struct events *ev, const char *id)
{
	struct ev_rec r;

	memset(&r, 0, sizeof(r));
	r.type = EV_MSG_QUEUED;
	r.outcome = -1;
	snprintf(r.id, sizeof(r.id), "%s", id);
	return events_publish(ev, &r);
}

static void
test_seq_and_replay(void **state)
{
	struct events *ev = events_new(3);
	struct seen s = {0};
	uint64_t first, last = 0;
	int i;

	(void)state;
	/* Past any id of an earlier run: the start time in ms * 1000. */
	first = events_last_seq(ev);
	assert_true(first >= (uint64_t)(now_ms() - 1000) * 1000);
	for (i = 0; i < 5; i++) {
		uint64_t seq = publish_queued(ev, "01ARZ3NDEKTSV4RRFFQ69G5FAV");

		assert_true(seq > last);
		last = seq;
	}
	assert_int_equal(events_last_seq(ev), last);
	/* Kept: the last three.  From the second-last on: complete. */
	assert_true(events_replay(ev, last - 2, record, &s));
	assert_int_equal(s.n, 2);
	assert_int_equal(s.seq[0], last - 1);
	/* From the oldest kept's predecessor: still complete. */
	s.n = 0;
	assert_true(events_replay(ev, last - 3, record, &s));
	assert_int_equal(s.n, 3);
	/* Further back: a gap, and what is kept is still replayed. */
	s.n = 0;
	assert_false(events_replay(ev, first, record, &s));
	assert_int_equal(s.n, 3);
	/* Nothing newer, or "from now". */
	s.n = 0;
	assert_true(events_replay(ev, last, record, &s));
	assert_true(events_replay(ev, 0, record, &s));
	assert_int_equal(s.n, 0);
	events_free(ev);
}

static void
test_next(void **state)
{
	struct events *ev = events_new(4);
	const struct ev_rec *r;
	uint64_t start = events_last_seq(ev), after, last = 0;
	bool gap = true;
	int i;

	(void)state;
	/* Empty: nothing newer than now; an older id has a gap. */
	assert_null(events_next(ev, start, &gap));
	assert_false(gap);
	assert_null(events_next(ev, start - 1, &gap));
	assert_true(gap);
	/* Ten published into four slots: the ring wrapped twice. */
	for (i = 0; i < 10; i++)
		last = publish_queued(ev, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
	assert_int_equal(last, start + 10);
	/* From long ago: the oldest kept, with the gap said. */
	r = events_next(ev, start, &gap);
	assert_non_null(r);
	assert_true(gap);
	assert_int_equal(r->seq, last - 3);
	/* Then each in turn, no gap, to the newest, then none. */
	for (after = last - 4; after < last; after++) {
		r = events_next(ev, after, &gap);
		assert_non_null(r);
		assert_false(gap);
		assert_int_equal(r->seq, after + 1);
	}
	assert_null(events_next(ev, last, &gap));
	assert_false(gap);
	assert_null(events_next(ev, last + 5, &gap));
	assert_false(gap);
	events_free(ev);
}

static void
test_subscribers(void **state)
{
	struct events *ev = events_new(8);
	struct seen a = {0}, b = {0};
	struct events_sub *sa;

	(void)state;
	sa = events_subscribe(ev, record, &a);
	b.ev = ev;
	b.self = events_subscribe(ev, drop_self, &b);
	assert_int_equal(events_subscribers(ev), 2);
	publish_queued(ev, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
	publish_queued(ev, "01ARZ3NDEKTSV4RRFFQ69G5FAW");
	assert_int_equal(a.n, 2);
	assert_int_equal(b.n, 1); /* gone after its first */
	assert_int_equal(events_subscribers(ev), 1);
	events_unsubscribe(ev, sa);
	assert_int_equal(events_subscribers(ev), 0);
	publish_queued(ev, "01ARZ3NDEKTSV4RRFFQ69G5FAX");
	assert_int_equal(a.n, 2);
	events_free(ev);
}

static json_t *
format(const struct ev_rec *r)
{
	struct buf b;
	json_error_t jerr;
	json_t *o;

	buf_init(&b, 4096);
	assert_int_equal(events_format_json(r, &b), 0);
	o = json_loadb(b.p, b.len, 0, &jerr);
	assert_non_null(o);
	buf_cleanup(&b);
	return o;
}

static void
test_format(void **state)
{
	struct events *ev = events_new(4);
	struct seen s = {0};
	struct ev_rec r;
	json_t *o;
	struct buf small;

	(void)state;
	memset(&r, 0, sizeof(r));
	r.type = EV_MSG_ATTEMPT;
	snprintf(r.id, sizeof(r.id), "01ARZ3NDEKTSV4RRFFQ69G5FAV");
	snprintf(r.provider, sizeof(r.provider), "sandbox-a");
	r.outcome = OUTCOME_TRANSIENT;
	r.attempt = 2;
	r.text = "503 \"busy\"\r\nX-Evil: 1";
	r.at_ms = 1700000000123;
	r.seq = 42;
	o = format(&r);
	assert_string_equal(json_string_value(json_object_get(o, "type")),
			    "message.attempt");
	assert_int_equal(json_integer_value(json_object_get(o, "seq")), 42);
	assert_string_equal(json_string_value(json_object_get(o, "outcome")),
			    "transient");
	assert_string_equal(json_string_value(json_object_get(o, "detail")),
			    r.text);
	assert_int_equal(json_integer_value(json_object_get(o, "attempt")), 2);
	json_decref(o);

	memset(&r, 0, sizeof(r));
	r.type = EV_PROVIDER_PAUSED;
	r.outcome = -1;
	snprintf(r.provider, sizeof(r.provider), "sandbox-b");
	snprintf(r.state, sizeof(r.state), "paused");
	r.text = "throttled: 429";
	r.until_ms = 1700000005000;
	o = format(&r);
	assert_string_equal(json_string_value(json_object_get(o, "type")),
			    "provider.paused");
	assert_string_equal(json_string_value(json_object_get(o, "reason")),
			    "throttled: 429");
	assert_non_null(json_object_get(o, "paused_until"));
	assert_null(json_object_get(o, "id"));
	json_decref(o);

	/* A learned size limit: named as GET /v1/providers names it. */
	memset(&r, 0, sizeof(r));
	r.type = EV_PROVIDER_LIMIT_LEARNED;
	r.outcome = -1;
	snprintf(r.provider, sizeof(r.provider), "small");
	snprintf(r.state, sizeof(r.state), "up");
	r.until_ms = 1700003600000;
	r.max_bytes = 40013;
	o = format(&r);
	assert_string_equal(json_string_value(json_object_get(o, "type")),
			    "provider.limit_learned");
	assert_int_equal(
	    json_integer_value(json_object_get(o, "max_message_bytes")), 40013);
	assert_string_equal(json_string_value(json_object_get(
				o, "max_message_bytes_learned_until")),
			    "2023-11-14T23:13:20.000Z");
	assert_null(json_object_get(o, "reason"));
	json_decref(o);
	r.type = EV_PROVIDER_LIMIT_RESTORED;
	r.until_ms = 0;
	r.max_bytes = 26214400;
	o = format(&r);
	assert_string_equal(json_string_value(json_object_get(o, "type")),
			    "provider.limit_restored");
	assert_int_equal(
	    json_integer_value(json_object_get(o, "max_message_bytes")),
	    26214400);
	assert_null(json_object_get(o, "max_message_bytes_learned_until"));
	json_decref(o);

	/* SMTPUTF8 refused until, named as GET /v1/providers names it. */
	r.type = EV_PROVIDER_SMTPUTF8_REFUSED;
	r.until_ms = 1700003600000;
	o = format(&r);
	assert_string_equal(json_string_value(json_object_get(o, "type")),
			    "provider.smtputf8_refused");
	assert_string_equal(
	    json_string_value(json_object_get(o, "smtputf8_refused_until")),
	    "2023-11-14T23:13:20.000Z");
	assert_null(json_object_get(o, "max_message_bytes"));
	json_decref(o);
	r.type = EV_PROVIDER_SMTPUTF8_RESTORED;
	r.until_ms = 0;
	o = format(&r);
	assert_string_equal(json_string_value(json_object_get(o, "type")),
			    "provider.smtputf8_restored");
	assert_null(json_object_get(o, "smtputf8_refused_until"));
	json_decref(o);

	/* Too small a buffer: nothing is appended. */
	buf_init(&small, 16);
	assert_int_equal(buf_appends(&small, "abc"), 0);
	assert_int_not_equal(events_format_json(&r, &small), 0);
	assert_string_equal(small.p, "abc");
	buf_cleanup(&small);

	/* The hub copies the texts: the caller's may change or go. */
	{
		char text[32];
		uint64_t seq;

		snprintf(text, sizeof(text), "reason one");
		r.text = text;
		seq = events_publish(ev, &r);
		snprintf(text, sizeof(text), "changed");
		assert_true(events_replay(ev, seq - 1, keep_text, &s));
		assert_string_equal(s.text, "reason one");
	}
	events_free(ev);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_seq_and_replay),
	    cmocka_unit_test(test_next),
	    cmocka_unit_test(test_subscribers),
	    cmocka_unit_test(test_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
