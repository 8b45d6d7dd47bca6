/*
 * GET /v1/events: each client is a streamed answer of httpd (httpd.h)
 * subscribed to the event hub, which writes one SSE event per hub event:
 *
 *   id: SEQ \n event: TYPE \n data: JSON \n \n
 *
 * A client that sends Last-Event-ID: N is first caught up from the hub's
 * history, paced by its own reading: a share (REPLAY_SHARE bytes) is
 * queued, and the next one only once httpd says all of it went out, so a
 * replay of the whole history never holds more than a share per client.
 * While it catches up, live events are not written (they are in the
 * history already, in order); once it has caught up it gets them as they
 * come.  When events it asked for are gone from the history (or N is no id
 * of ours) it gets `event: reset` first, its cue to refetch what it shows;
 * the same happens if the history runs past a client still catching up.
 *
 * Bounds: events_max_clients streams (one more: 503), of them
 * events_max_client_streams from one client, an IPv4 address or an IPv6
 * /64 as the listener counts connections (one more: 503, so that one
 * address cannot take every stream from the console), and per stream
 * events_client_buffer_bytes queued; a live event that would pass it, or a
 * queue that has not emptied for STALL_TICKS ping periods, drops the client
 * (logged, rate limited): it reconnects and replays from its last id.  An
 * idle stream gets ": ping" every events_ping_s, from one timer for all.
 * Everything runs on the loop thread; the hub calls us synchronously.
 */
#include "server/http_events.h"
#include "server/http_front_int.h"
#include "common/buf.h"
#include "common/clients.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/events.h"
#include "server/httpd.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

/*
 * Bytes of history queued for a catching-up client at a time, at most half
 * its cap (events_client_buffer_bytes), so a share never hits the cap.
 */
#define REPLAY_SHARE (64 * 1024)
/* Ping periods a client's queue may stay non-empty before it is dropped. */
#define STALL_TICKS 4
/* One formatted event: texts are capped by the link (LINK_DETAIL_MAX). */
#define LINE_MAX (64 * 1024)

struct ev_stream {
	struct http_events *he;
	struct httpd_req *req;
	struct events_sub *sub;
	uint64_t last;    /* seq of the last event written, or the start */
	bool catching_up; /* replaying the history as the queue drains */
	bool wrote;       /* since the last ping tick */
	bool drained;     /* the queue emptied since the last tick */
	int stalled;      /* ticks in a row with bytes queued, none drained */
	/* The key's scope, kept here: httpd forgets it once the head is
	 * answered, and http_events_revoke() needs it for the stream's life. */
	char scope[API_SCOPE_LEN + 1];
	struct client_count *client; /* its client's count of streams */
	LIST_ENTRY(ev_stream) link;
};

struct http_events {
	struct events *hub;
	struct event *ping;
	struct http_events_limits lim;
	size_t share; /* REPLAY_SHARE, or half the cap when that is less */
	LIST_HEAD(, ev_stream) streams;
	size_t n;
	struct client_table clients; /* streams per client */
	struct log_rl full_rl;       /* over events_max_clients */
	struct log_rl client_rl;     /* over events_max_client_streams */
	struct log_rl slow_rl;       /* clients dropped for not reading */
	struct buf line;   /* the last event formatted, shared by all */
	uint64_t line_seq; /* its seq; 0: none */
};

bool
http_events_parse_id(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		unsigned d = (unsigned)(unsigned char)s[i] - '0';

		if (d > 9 || i >= 20 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (i == 0)
		return false;
	*out = v;
	return true;
}

size_t
http_events_streams(const struct http_events *he)
{
	return he != NULL ? he->n : 0;
}

/* Forgets s; ends its HTTP stream unless httpd ended it (on_close). */
static void
stream_free(struct ev_stream *s, bool end_http)
{
	struct http_events *he = s->he;

	events_unsubscribe(he->hub, s->sub);
	LIST_REMOVE(s, link);
	he->n--;
	client_table_put(&he->clients, s->client);
	if (end_http)
		httpd_req_stream_end(s->req, false);
	free(s);
}

static void
stream_drop(struct ev_stream *s, const char *why)
{
	log_warnx_rl(&s->he->slow_rl, 10000,
		     "- http events client dropped peer=%s reason=%s "
		     "unsent=%zu last=%" PRIu64,
		     httpd_req_peer(s->req), why,
		     httpd_req_stream_unsent(s->req), s->last);
	stream_free(s, true);
}

/* 0, or the write's error: the caller drops the client. */
static int
stream_write(struct ev_stream *s, const char *text, size_t len)
{
	int rc = httpd_req_stream_write(s->req, text, len);

	if (rc == 0)
		s->wrote = true;
	return rc;
}

/* The SSE text of r, formatted once for all the clients. */
static int
format_event(struct http_events *he, const struct ev_rec *r)
{
	int rc;

	if (he->line_seq == r->seq && he->line.len > 0)
		return 0;
	buf_reset(&he->line);
	he->line_seq = 0;
	rc =
	    buf_appendf(&he->line, "id: %" PRIu64 "\nevent: %s\ndata: ", r->seq,
			events_type_name(r->type));
	if (rc == 0)
		rc = events_format_json(r, &he->line);
	if (rc == 0)
		rc = buf_append(&he->line, "\n\n", 2);
	if (rc != 0) {
		buf_reset(&he->line);
		return rc;
	}
	he->line_seq = r->seq;
	return 0;
}

static int
write_event(struct ev_stream *s, const struct ev_rec *r)
{
	struct http_events *he = s->he;
	int rc = format_event(he, r);

	if (rc != 0) {
		/* Cannot happen with the link's caps; never a silent gap. */
		log_warnx("- http events cannot format seq=%" PRIu64, r->seq);
		return rc;
	}
	rc = stream_write(s, he->line.p, he->line.len);
	if (rc == 0)
		s->last = r->seq;
	return rc;
}

static const char reset_text[] = "event: reset\ndata: {\"type\":\"reset\"}\n\n";

/*
 * Queues the next share of the history after s->last, with a reset first
 * when some of it is gone.  Each event is found in constant time
 * (events_next), so a share costs what it holds whatever the history's
 * length.  Caught up once no event is left: on the loop thread nothing can
 * be published in between.
 */
static void
stream_pump(struct ev_stream *s)
{
	struct events *hub = s->he->hub;
	const struct ev_rec *r;
	bool gap;

	r = events_next(hub, s->last, &gap);
	if (gap && stream_write(s, reset_text, sizeof(reset_text) - 1) != 0) {
		stream_drop(s, "slow");
		return;
	}
	/* At least one event a share, so that even a tiny cap moves on. */
	while (r != NULL) {
		if (write_event(s, r) != 0) {
			stream_drop(s, "slow");
			return;
		}
		/* r is kept: no gap can open between it and the next. */
		r = events_next(hub, s->last, &gap);
		if (httpd_req_stream_unsent(s->req) >= s->he->share)
			break;
	}
	if (r == NULL)
		s->catching_up = false;
}

/* The hub's callback: a live event for a client that has caught up. */
static void
on_event(void *arg, const struct ev_rec *r)
{
	struct ev_stream *s = arg;

	/* Still catching up: the pump finds it in the history. */
	if (s->catching_up || r->seq <= s->last)
		return;
	if (write_event(s, r) != 0)
		stream_drop(s, "slow");
}

static void
on_close(void *arg)
{
	struct ev_stream *s = arg;

	log_debug("- http events closed peer=%s last=%" PRIu64,
		  httpd_req_peer(s->req), s->last);
	stream_free(s, false);
}

static void
on_drain(void *arg)
{
	struct ev_stream *s = arg;

	s->drained = true;
	if (s->catching_up)
		stream_pump(s);
}

/* Every events_ping_s: a ping to idle clients, and stalled ones dropped. */
static void
ping_tick(evutil_socket_t fd, short what, void *arg)
{
	static const char ping[] = ": ping\n\n";
	struct http_events *he = arg;
	struct ev_stream *s, *next;

	for (s = LIST_FIRST(&he->streams); s != NULL; s = next) {
		next = LIST_NEXT(s, link);
		if (httpd_req_stream_unsent(s->req) > 0 && !s->drained)
			s->stalled++;
		else
			s->stalled = 0;
		s->drained = false;
		if (s->stalled >= STALL_TICKS) {
			stream_drop(s, "stalled");
			continue;
		}
		if (!s->wrote && stream_write(s, ping, sizeof(ping) - 1) != 0) {
			stream_drop(s, "slow");
			continue;
		}
		s->wrote = false;
	}
}

/* The stream is open: where it starts, and its first bytes. */
static void
stream_start(struct ev_stream *s, bool has_id, uint64_t after)
{
	static const char hello[] = "retry: 2000\n\n";
	struct events *hub = s->he->hub;

	if (stream_write(s, hello, sizeof(hello) - 1) != 0) {
		stream_drop(s, "slow");
		return;
	}
	s->last = events_last_seq(hub);
	if (!has_id)
		return;
	/* An id beyond the newest is none of ours (another server). */
	if (after > s->last) {
		if (stream_write(s, reset_text, sizeof(reset_text) - 1) != 0)
			stream_drop(s, "slow");
		return;
	}
	/* 0 is no id of ours either (they start at the hub's start time
	 * times 1000), and to the hub it would mean "from now": as 1, it
	 * gets the reset and every event kept. */
	s->last = after > 0 ? after : 1;
	s->catching_up = true;
	stream_pump(s);
}

/* Refusals on the head; true when the request was answered. */
static bool
refused(struct http_front *f, struct httpd_req *req, const char *lei)
{
	struct http_events *he = f->events;
	uint64_t id;

	if (lei != NULL && !http_events_parse_id(lei, &id)) {
		httpd_reply_error(req, 400, "invalid_field",
				  "Last-Event-ID: the decimal id of an event");
		return true;
	}
	if (he == NULL || he->hub == NULL) {
		httpd_reply_error(req, 503, "unavailable", "no event hub");
		return true;
	}
	if (he->n >= (size_t)he->lim.max_clients) {
		log_warnx_rl(&he->full_rl, 10000,
			     "- http events too many streams peer=%s max=%d",
			     httpd_req_peer(req), he->lim.max_clients);
		(void)httpd_req_add_header(req, "Retry-After", "5");
		httpd_reply_error(req, 503, "unavailable",
				  "too many event streams, retry");
		return true;
	}
	if (he->lim.max_client_streams > 0 &&
	    client_table_count(&he->clients, httpd_req_client_key(req)) >=
		(unsigned)he->lim.max_client_streams) {
		log_warnx_rl(&he->client_rl, 10000,
			     "- http events too many streams from one client "
			     "peer=%s max=%d",
			     httpd_req_peer(req), he->lim.max_client_streams);
		(void)httpd_req_add_header(req, "Retry-After", "5");
		httpd_reply_error(req, 503, "unavailable",
				  "too many event streams from this address, "
				  "close one first");
		return true;
	}
	return false;
}

void
http_events_route(struct http_front *f, struct httpd_req *req)
{
	struct http_events *he = f->events;
	const char *lei = httpd_req_header(req, "Last-Event-ID");
	struct ev_stream *s;
	uint64_t after = 0;
	int rc;

	if (refused(f, req, lei))
		return;
	if (lei != NULL)
		(void)http_events_parse_id(lei, &after);
	if (strcmp(httpd_req_head(req)->method, "HEAD") == 0) {
		httpd_reply(req, 200, "text/event-stream", NULL, 0);
		return;
	}
	/* A proxy (nginx) must not hold the stream back. */
	if (!httpd_req_add_header(req, "X-Accel-Buffering", "no")) {
		http_front__reply_failed(req);
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->he = he;
	s->req = req;
	snprintf(s->scope, sizeof(s->scope), "%s", httpd_req_auth(req));
	rc = httpd_req_stream_begin(req, 200, "text/event-stream",
				    he->lim.client_buffer, on_close, on_drain,
				    s);
	if (rc != 0) {
		free(s);
		httpd_reply_error(req, 503, "unavailable", "cannot stream");
		return;
	}
	LIST_INSERT_HEAD(&he->streams, s, link);
	he->n++;
	s->client = client_table_get(&he->clients, httpd_req_client_key(req));
	s->client->count++;
	s->sub = events_subscribe(he->hub, on_event, s);
	log_debug("- http events open peer=%s streams=%zu", httpd_req_peer(req),
		  he->n);
	stream_start(s, lei != NULL, after);
}

void
http_events_revoke(struct http_events *he,
		   bool (*known)(const char *scope, void *arg), void *arg)
{
	struct ev_stream *s, *next;
	size_t n = 0;

	if (he == NULL)
		return;
	for (s = LIST_FIRST(&he->streams); s != NULL; s = next) {
		next = LIST_NEXT(s, link);
		if (known(s->scope, arg))
			continue;
		stream_free(s, true);
		n++;
	}
	if (n > 0)
		log_info("- http events streams_closed count=%zu "
			 "reason=key_removed streams=%zu",
			 n, he->n);
}

struct http_events *
http_events_new(struct event_base *base, struct events *hub,
		const struct http_events_limits *lim)
{
	struct http_events *he = xcalloc(1, sizeof(*he));
	struct timeval tv = {lim->ping_s > 0 ? lim->ping_s : 15, 0};

	he->hub = hub;
	he->lim = *lim;
	he->share = lim->client_buffer / 2 < REPLAY_SHARE
			? lim->client_buffer / 2
			: REPLAY_SHARE;
	LIST_INIT(&he->streams);
	buf_init(&he->line, LINE_MAX);
	he->ping = event_new(base, -1, EV_PERSIST, ping_tick, he);
	if (he->ping == NULL || event_add(he->ping, &tv) != 0) {
		http_events_free(he);
		return NULL;
	}
	return he;
}

void
http_events_free(struct http_events *he)
{
	if (he == NULL)
		return;
	while (!LIST_EMPTY(&he->streams))
		stream_free(LIST_FIRST(&he->streams), true);
	client_table_clear(&he->clients);
	if (he->ping != NULL)
		event_free(he->ping);
	buf_cleanup(&he->line);
	free(he);
}
