/*
 * GET /metrics: the Prometheus text exposition (format 0.0.4) of the
 * store's counts, the dispatcher's queues, the oldest queued message's
 * age, and every provider's state, in-flight jobs, heartbeat age, size
 * limit, link (TLS or not) and counters.  The oldest queued message is the one
 * thing asked of the store (one index seek, store_oldest_queued); the answer is
 * built in its callback, where everything else is read on the loop thread from
 * plain fields the dispatcher and registry already keep (the attempt and
 * message counters move in record.c once a store write is durable), so a
 * scrape takes no lock and the hot path pays one increment per durable
 * write.  Series exist per provider the registry
 * holds, which max_dynamic_providers bounds.  docs/http-api.md lists
 * every family.
 */

#include "server/http_front_int.h"
#include "common/hist.h"
#include "common/util.h"
#include "dispatch/dispatcher.h"
#include "dispatch/registry.h"
#include "intake/submit.h"
#include "link/link.h"
#include "server/http_events.h"
#include "server/httpd.h"
#include "server/webhook.h"
#include "store/store.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void metrics_printf(bool *bad, struct evbuffer *out, const char *fmt,
			   ...) __attribute__((format(printf, 3, 4)));

/* evbuffer_add_printf, with a failure (out of memory) remembered in *bad. */
static void
metrics_printf(bool *bad, struct evbuffer *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(out, fmt, ap) < 0)
		*bad = true;
	va_end(ap);
}

static void
metrics_queue(struct http_front *f, struct evbuffer *out, bool *bad)
{
	int64_t c[MSG_NSTATUS];
	uint64_t ready, loaded, delayed, parked;
	int s;

	dispatcher_counts(f->d, c);
	dispatcher_queue_sizes(f->d, &ready, &loaded, &delayed, &parked);
	metrics_printf(
	    bad, out,
	    "# HELP shivneri_messages Messages in the store by status.\n"
	    "# TYPE shivneri_messages gauge\n");
	for (s = 0; s < MSG_NSTATUS; s++)
		metrics_printf(bad, out,
			       "shivneri_messages{status=\"%s\"} %" PRId64 "\n",
			       msg_status_name(s), c[s]);
	metrics_printf(
	    bad, out,
	    "# HELP shivneri_queue_messages Queued messages held in memory "
	    "(a count, not bytes), by where.\n"
	    "# TYPE shivneri_queue_messages gauge\n"
	    "shivneri_queue_messages{where=\"ready\"} %" PRIu64 "\n"
	    "shivneri_queue_messages{where=\"loaded\"} %" PRIu64 "\n"
	    "shivneri_queue_messages{where=\"delayed\"} %" PRIu64 "\n"
	    "shivneri_queue_messages{where=\"parked\"} %" PRIu64 "\n"
	    "# HELP shivneri_store_pending Store operations not yet done.\n"
	    "# TYPE shivneri_store_pending gauge\n"
	    "shivneri_store_pending %zu\n"
	    "# HELP shivneri_store_unreadable_rows Queued or sending messages "
	    "on damaged database pages, found at start-up: they cannot be "
	    "sent until the database is repaired.\n"
	    "# TYPE shivneri_store_unreadable_rows gauge\n"
	    "shivneri_store_unreadable_rows %" PRIu64 "\n"
	    "# HELP shivneri_store_damaged_indexes Indexes of the store found "
	    "damaged while running (the rows are intact): reads through "
	    "them fail until a restart builds them again.\n"
	    "# TYPE shivneri_store_damaged_indexes gauge\n"
	    "shivneri_store_damaged_indexes %" PRIu64 "\n",
	    ready, loaded, delayed, parked, store_pending(f->st),
	    store_unreadable_rows(f->st), store_damaged_indexes(f->st));
}

/*
 * A provider's name as a label value, escaped as the text format wants
 * (backslash, quote, newline): names come from config and HELLO.
 */
static void
metrics_label(bool *bad, struct evbuffer *out, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			metrics_printf(bad, out, "\\%c", *v);
		else if (*v == '\n')
			metrics_printf(bad, out, "\\n");
		else
			metrics_printf(bad, out, "%c", *v);
	}
}

/* One sample: NAME{provider="P"EXTRA} VALUE, EXTRA being ",k=\"v\"" or "". */
static void
metrics_sample(bool *bad, struct evbuffer *out, const char *name,
	       const struct provider *p, const char *extra, uint64_t v)
{
	metrics_printf(bad, out, "%s{provider=\"", name);
	metrics_label(bad, out, p->name);
	metrics_printf(bad, out, "\"%s} %" PRIu64 "\n", extra, v);
}

static void
metrics_head(bool *bad, struct evbuffer *out, const char *name,
	     const char *type, const char *help)
{
	metrics_printf(bad, out, "# HELP %s %s\n# TYPE %s %s\n", name, help,
		       name, type);
}

/* Every state word of provider_state_name(): exactly one of them is 1. */
static const char *const metrics_states[] = {"up", "down", "paused",
					     "disabled"};
static const char *const metrics_breakers[] = {"closed", "open", "half_open"};

static void
metrics_state(struct http_front *f, struct evbuffer *out, bool *bad)
{
	size_t i, k, n = registry_count(f->reg);
	char extra[64];
	struct provider *p;

	metrics_head(bad, out, "shivneri_provider_state", "gauge",
		     "1 for the provider's state (up, down, paused, "
		     "disabled), 0 for the others.");
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		for (k = 0;
		     k < sizeof(metrics_states) / sizeof(*metrics_states);
		     k++) {
			snprintf(extra, sizeof(extra), ",state=\"%s\"",
				 metrics_states[k]);
			metrics_sample(bad, out, "shivneri_provider_state", p,
				       extra,
				       strcmp(provider_state_name(p),
					      metrics_states[k]) == 0);
		}
	}
	metrics_head(bad, out, "shivneri_provider_breaker", "gauge",
		     "1 for the state of the provider's circuit breaker, 0 "
		     "for the others.");
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		for (k = 0; k < 3; k++) {
			snprintf(extra, sizeof(extra), ",state=\"%s\"",
				 metrics_breakers[k]);
			metrics_sample(bad, out, "shivneri_provider_breaker", p,
				       extra, p->breaker == (int)k);
		}
	}
}

static void
metrics_counters(struct http_front *f, struct evbuffer *out, bool *bad)
{
	size_t i, n = registry_count(f->reg);
	char extra[64];
	struct provider *p;
	int o;

	metrics_head(bad, out, "shivneri_attempts_total", "counter",
		     "Attempts on record (durable), by provider and outcome.");
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		for (o = 0; o <= OUTCOME_MAX; o++) {
			snprintf(extra, sizeof(extra), ",outcome=\"%s\"",
				 outcome_name(o));
			metrics_sample(bad, out, "shivneri_attempts_total", p,
				       extra, p->attempts_by_outcome[o]);
		}
	}
	metrics_head(bad, out, "shivneri_messages_delivered_total", "counter",
		     "Messages durably delivered, by the provider that "
		     "took them.");
	for (i = 0; i < n; i++)
		metrics_sample(bad, out, "shivneri_messages_delivered_total",
			       registry_at(f->reg, i), "",
			       registry_at(f->reg, i)->msgs_delivered);
	metrics_head(bad, out, "shivneri_messages_failed_total", "counter",
		     "Messages durably failed, by the provider of their last "
		     "attempt.");
	for (i = 0; i < n; i++)
		metrics_sample(bad, out, "shivneri_messages_failed_total",
			       registry_at(f->reg, i), "",
			       registry_at(f->reg, i)->msgs_failed);
}

/* One provider's histogram h as NAME_bucket (cumulative), _sum, _count. */
static void
metrics_hist_one(bool *bad, struct evbuffer *out, const char *name,
		 const struct provider *p, const struct hist *h)
{
	char bname[96], extra[48];
	uint64_t cum = 0;
	int i;

	snprintf(bname, sizeof(bname), "%s_bucket", name);
	for (i = 0; i <= HIST_NBOUNDS; i++) {
		cum += h->bucket[i];
		if (i < HIST_NBOUNDS)
			snprintf(extra, sizeof(extra), ",le=\"%g\"",
				 (double)hist_bounds_ms[i] / 1000.0);
		else
			snprintf(extra, sizeof(extra), ",le=\"+Inf\"");
		metrics_sample(bad, out, bname, p, extra, cum);
	}
	metrics_printf(bad, out, "%s_sum{provider=\"", name);
	metrics_label(bad, out, p->name);
	metrics_printf(bad, out, "\"} %.3f\n", (double)h->sum_ms / 1000.0);
	snprintf(bname, sizeof(bname), "%s_count", name);
	metrics_sample(bad, out, bname, p, "", h->count);
}

static void
metrics_hists(struct http_front *f, struct evbuffer *out, bool *bad)
{
	size_t i, n = registry_count(f->reg);
	struct provider *p;

	metrics_head(bad, out, "shivneri_send_duration_seconds", "histogram",
		     "From a job sent to the provider's agent to its result.");
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		metrics_hist_one(bad, out, "shivneri_send_duration_seconds", p,
				 &p->send_hist);
	}
	metrics_head(bad, out, "shivneri_delivery_duration_seconds",
		     "histogram",
		     "From a message stored to its delivery durable, by the "
		     "provider that delivered it.");
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		metrics_hist_one(bad, out, "shivneri_delivery_duration_seconds",
				 p, &p->delivery_hist);
	}
}

static int64_t
limit_learned_until(const struct provider *p)
{
	return p->limit_learned_until_ms;
}

static int64_t
utf8_refused_until(const struct provider *p)
{
	return p->utf8_refused_until_ms;
}

/*
 * A gauge per provider of a wall-clock time in ms (until(p); 0: none),
 * as Unix seconds rounded up, 0 while none.
 */
static void
metrics_until(struct http_front *f, struct evbuffer *out, bool *bad,
	      const char *name, const char *help,
	      int64_t (*until)(const struct provider *))
{
	size_t i, n = registry_count(f->reg);
	const struct provider *p;
	int64_t ms;

	metrics_head(bad, out, name, "gauge", help);
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		ms = until(p);
		metrics_sample(bad, out, name, p, "",
			       ms > 0 ? (uint64_t)(ms + 999) / 1000 : 0);
	}
}

/*
 * What GET /v1/providers says of a provider's size limit and link:
 * max_message_bytes, max_message_bytes_learned_until (as a Unix time, 0
 * while none is learned) and link_tls (no sample while no agent is
 * linked, as the API's null).
 */
static void
metrics_limits(struct http_front *f, struct evbuffer *out, bool *bad)
{
	size_t i, n = registry_count(f->reg);
	struct provider *p;

	metrics_head(bad, out, "shivneri_provider_max_message_bytes", "gauge",
		     "The largest message (bytes) the provider is offered "
		     "now: its registration's limit, or lower while one "
		     "learned from a too_large answer holds.");
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		metrics_sample(bad, out, "shivneri_provider_max_message_bytes",
			       p, "", p->max_message_bytes);
	}
	metrics_until(f, out, bad,
		      "shivneri_provider_limit_learned_until_timestamp_seconds",
		      "Unix time until which a size limit learned from a "
		      "too_large answer holds; 0 while none does.",
		      limit_learned_until);
	metrics_until(
	    f, out, bad,
	    "shivneri_provider_smtputf8_refused_until_timestamp_seconds",
	    "Unix time until which messages with a non-ASCII address avoid "
	    "the provider (a needs_smtputf8 answer); 0 while none do.",
	    utf8_refused_until);
	metrics_head(bad, out, "shivneri_provider_link_tls", "gauge",
		     "1 when the agent's link runs over TLS, 0 when not "
		     "(providers without a linked agent are left out).");
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		if (p->conn == NULL)
			continue;
		metrics_sample(bad, out, "shivneri_provider_link_tls", p, "",
			       p->link_tls ? 1 : 0);
	}
}

static void
metrics_providers(struct http_front *f, struct evbuffer *out, bool *bad)
{
	size_t i, n = registry_count(f->reg);
	int64_t now = mono_ms();
	struct provider *p;

	metrics_state(f, out, bad);
	metrics_head(bad, out, "shivneri_provider_in_flight", "gauge",
		     "Messages at the provider's agent.");
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		metrics_sample(bad, out, "shivneri_provider_in_flight", p, "",
			       p->se.in_flight);
	}
	metrics_head(bad, out, "shivneri_provider_heartbeat_age_seconds",
		     "gauge",
		     "Seconds since the agent's last heartbeat (providers "
		     "never heard from are left out).");
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		if (p->last_heartbeat_mono == 0)
			continue;
		metrics_printf(bad, out,
			       "shivneri_provider_heartbeat_age_seconds{"
			       "provider=\"");
		metrics_label(bad, out, p->name);
		metrics_printf(bad, out, "\"} %.3f\n",
			       (double)(now - p->last_heartbeat_mono) / 1000.0);
	}
	metrics_limits(f, out, bad);
	metrics_counters(f, out, bad);
	metrics_hists(f, out, bad);
	metrics_printf(bad, out,
		       "# HELP shivneri_build_info The server's version.\n"
		       "# TYPE shivneri_build_info gauge\n"
		       "shivneri_build_info{version=\"%s\"} 1\n",
		       SHIVNERI_VERSION);
}

/*
 * One of the store's histograms: buckets kept per bucket by the store,
 * written cumulative; a bound is divided by scale (microseconds to
 * seconds, or 1 for a count).
 */
static void
metrics_store_hist(bool *bad, struct evbuffer *out, const char *name,
		   const int64_t *bounds, int nbounds, const uint64_t *bucket,
		   double scale)
{
	uint64_t cum = 0;
	int i;

	for (i = 0; i <= nbounds; i++) {
		cum += bucket[i];
		if (i < nbounds)
			metrics_printf(bad, out,
				       "%s_bucket{le=\"%g\"} %" PRIu64 "\n",
				       name, (double)bounds[i] / scale, cum);
		else
			metrics_printf(bad, out,
				       "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n",
				       name, cum);
	}
}

/* The store's commits: how long each took, how many operations each held. */
static void
metrics_store_commits(struct http_front *f, struct evbuffer *out, bool *bad)
{
	struct store_commit_stats cs;

	store_commit_stats(f->st, &cs);
	metrics_head(bad, out, "shivneri_store_commit_seconds", "histogram",
		     "Store write transactions, BEGIN to durable COMMIT.");
	metrics_store_hist(bad, out, "shivneri_store_commit_seconds",
			   store_commit_bounds_us, STORE_COMMIT_NBOUNDS,
			   cs.us_bucket, 1e6);
	metrics_printf(bad, out,
		       "shivneri_store_commit_seconds_sum %.6f\n"
		       "shivneri_store_commit_seconds_count %" PRIu64 "\n",
		       (double)cs.us_sum / 1e6, cs.commits);
	metrics_head(bad, out, "shivneri_store_commit_batch_size", "histogram",
		     "Store operations carried by each commit.");
	metrics_store_hist(bad, out, "shivneri_store_commit_batch_size",
			   store_batch_bounds, STORE_BATCH_NBOUNDS,
			   cs.ops_bucket, 1);
	metrics_printf(bad, out,
		       "shivneri_store_commit_batch_size_sum %" PRIu64 "\n"
		       "shivneri_store_commit_batch_size_count %" PRIu64 "\n",
		       cs.ops_sum, cs.commits);
}

static void
metrics_accepted(struct http_front *f, struct evbuffer *out, bool *bad)
{
	int i;

	metrics_head(bad, out, "shivneri_messages_accepted_total", "counter",
		     "Messages stored (answered 202 or 250; a duplicate's 200 "
		     "is not counted), by the way they came in.");
	for (i = 0; i < SUBMIT_INTAKE_N; i++)
		metrics_printf(
		    bad, out,
		    "shivneri_messages_accepted_total{intake=\"%s\"} "
		    "%" PRIu64 "\n",
		    submit_intake_name(i), submit_accepted(f->sub, i));
}

/*
 * The oldest queued message's age: the store's answer of this scrape
 * (created_ms, 0 when nothing is queued).  A store that failed to answer
 * leaves the family without a sample rather than with a wrong one.
 */
static void
metrics_oldest(struct evbuffer *out, bool *bad, int err, int64_t created_ms)
{
	int64_t age = now_ms() - created_ms;

	metrics_head(bad, out, "shivneri_queue_oldest_age_seconds", "gauge",
		     "Seconds since the oldest queued message was accepted "
		     "(0 when none is queued).");
	if (err != 0)
		return;
	metrics_printf(bad, out, "shivneri_queue_oldest_age_seconds %.3f\n",
		       created_ms > 0 && age > 0 ? (double)age / 1000.0 : 0.0);
}

/* The webhook sender's counters; nothing without webhook_url. */
static void
metrics_webhooks(struct http_front *f, struct evbuffer *out, bool *bad)
{
	struct webhook_stats ws;

	if (f->wh == NULL)
		return;
	webhook_stats(f->wh, &ws);
	metrics_printf(
	    bad, out,
	    "# HELP shivneri_webhooks_sent_total Webhooks the receiver took "
	    "(2xx).\n"
	    "# TYPE shivneri_webhooks_sent_total counter\n"
	    "shivneri_webhooks_sent_total %" PRIu64 "\n"
	    "# HELP shivneri_webhook_failures_total Webhook tries that failed "
	    "(retried later).\n"
	    "# TYPE shivneri_webhook_failures_total counter\n"
	    "shivneri_webhook_failures_total %" PRIu64 "\n"
	    "# HELP shivneri_webhook_outbox_dropped_total Webhooks dropped "
	    "unsent by the outbox cap (webhook_max_outbox), past "
	    "webhook_max_age_s, or when a failing disk kept too many "
	    "provider webhooks from the outbox.\n"
	    "# TYPE shivneri_webhook_outbox_dropped_total counter\n"
	    "shivneri_webhook_outbox_dropped_total %" PRIu64 "\n"
	    "# HELP shivneri_webhook_outbox Webhooks waiting in the outbox "
	    "(as of the sender's last look, at most a second old).\n"
	    "# TYPE shivneri_webhook_outbox gauge\n"
	    "shivneri_webhook_outbox %" PRId64 "\n"
	    "# HELP shivneri_webhooks_in_flight Webhook requests under way.\n"
	    "# TYPE shivneri_webhooks_in_flight gauge\n"
	    "shivneri_webhooks_in_flight %u\n",
	    ws.sent, ws.failed, ws.dropped, ws.outbox_rows, ws.in_flight);
}

/* A scrape waiting for the store's oldest queued message. */
struct metrics_req {
	struct httpd_req *req;
	struct metrics_req *next; /* http_front.metrics_wait */
};

/* The text of a scrape into out; false when it could not be built. */
static bool
metrics_text(struct http_front *f, struct evbuffer *out, int err,
	     int64_t oldest_ms)
{
	bool bad = false;

	metrics_accepted(f, out, &bad);
	metrics_queue(f, out, &bad);
	metrics_oldest(out, &bad, err, oldest_ms);
	metrics_store_commits(f, out, &bad);
	metrics_providers(f, out, &bad);
	metrics_printf(&bad, out,
		       "# HELP shivneri_event_streams Open GET /v1/events "
		       "streams.\n# TYPE shivneri_event_streams gauge\n"
		       "shivneri_event_streams %zu\n",
		       http_events_streams(f->events));
	metrics_webhooks(f, out, &bad);
	return !bad;
}

/* The store answered: every scrape that waited gets the same text. */
static void
metrics_reply(void *arg, int err, int64_t oldest_ms)
{
	struct http_front *f = arg;
	struct metrics_req *mr = f->metrics_wait, *next;
	struct evbuffer *out = evbuffer_new();
	const unsigned char *text = NULL;
	size_t len = 0;
	bool ok = out != NULL && metrics_text(f, out, err, oldest_ms);

	f->metrics_wait = NULL;
	if (ok) {
		len = evbuffer_get_length(out);
		text = evbuffer_pullup(out, -1);
		ok = text != NULL || len == 0;
	}
	for (; mr != NULL; mr = next) {
		next = mr->next;
		f->pending--;
		if (ok)
			httpd_reply(mr->req, 200, "text/plain; version=0.0.4",
				    text, len);
		else
			http_front__reply_failed(mr->req);
		free(mr);
	}
	if (out != NULL)
		evbuffer_free(out);
}

/*
 * Asks the store for the oldest queued message (one index seek, in order
 * with the other operations) and answers from its callback; everything
 * else is read then, on the loop.  Scrapes that come while a query is out
 * wait for its answer: however fast an outsider scrapes (the route takes
 * no key), the store sees one query at a time.
 */
void
http_front__metrics(struct http_front *f, struct httpd_req *req)
{
	struct metrics_req *mr = xcalloc(1, sizeof(*mr));
	bool asked = f->metrics_wait != NULL;

	mr->req = req;
	mr->next = f->metrics_wait;
	f->metrics_wait = mr;
	f->pending++;
	if (!asked)
		store_oldest_queued(f->st, metrics_reply, f);
}
