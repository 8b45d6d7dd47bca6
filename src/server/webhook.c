/*
 * The webhook sender (webhook.h): claims due outbox rows, POSTs each,
 * and deletes it on 2xx or reschedules it with backoff.
 *
 * One pass (poll) claims as many rows as there are free slots.  A pass
 * runs when rows may have come (a final outcome was published: its row
 * was durable before the event; a provider row was added), when a slot
 * frees up, and once a second for rows whose backoff ran out.  At most one
 * claim is outstanding, so passes never race for rows.
 *
 * Every delivery owns a struct delivery (its row's body and seq), kept on
 * a list so that webhook_stop() can free those curl will no longer
 * report.  Failures never go beyond this file: the store retries nothing
 * for us, a claim or finish that fails is logged and the row simply comes
 * back after its lease.  A provider's webhook is the exception: it has
 * no row until its own add commits, so an add that fails (a full or
 * failing disk) keeps its body here, up to ADD_RETRY_MAX of them, and is
 * added again at every tick; past that the oldest is dropped, counted
 * with the outbox's drops and logged at most once a minute.
 */
#include "server/webhook.h"
#include "agent/http_multi.h"
#include "common/buf.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/events.h"
#include "dispatch/outbox.h"
#include "store/store.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

/* Passes for rows whose backoff ran out, at least this often. */
#define POLL_MS 1000
/* The first retry's wait; doubled per failure up to webhook_retry_max_ms. */
#define BACKOFF_BASE_MS 1000
/* A claimed row comes back this long after its request's deadline. */
#define LEASE_SLACK_MS 2000
#define CONNECT_TIMEOUT_MS 5000
#define LOG_EVERY_MS 10000
/* The retry pass's step while short backoffs are pending. */
#define RETRY_STEP_MS 100
#define HOST_LOG_MAX 128
/* Provider webhooks whose add failed, kept to be added again. */
#define ADD_RETRY_MAX 1024
#define DROP_LOG_EVERY_MS 60000

struct delivery {
	LIST_ENTRY(delivery) entry; /* webhook.deliveries */
	struct webhook *wh;
	int64_t seq;
	int attempts;
	char *body;
};

/* A provider's webhook on its way into the outbox. */
struct add_req {
	STAILQ_ENTRY(add_req) entry; /* webhook.adds, while it waits */
	struct webhook *wh;
	char *body;
};

struct webhook {
	struct event_base *base;
	const struct config *cfg;
	struct store *st;
	struct events *ev;
	struct events_sub *sub;
	struct http_multi *hm;
	struct event *tick; /* every POLL_MS */
	/*
	 * A pass at the end of this loop turn.  Not the tick made active:
	 * libevent then moves a persistent timer's next run one period past
	 * its scheduled one, so a busy stream of kicks would starve it.
	 */
	struct event *kick;
	/*
	 * A retry due before the next tick (webhook_retry_max_ms under
	 * POLL_MS): a one-shot pass at retry_at (mono ms; 0: not armed).
	 */
	struct event *retry;
	int64_t retry_at;
	int64_t retry_until; /* mono ms when the last such row is due */
	unsigned char *secret;
	size_t secret_len;
	char host[HOST_LOG_MAX];          /* the receiver, for log lines */
	LIST_HEAD(, delivery) deliveries; /* in flight */
	unsigned in_flight;
	bool claiming; /* a claim is outstanding */
	bool again;    /* a pass was asked for while claiming */
	bool stopped;
	/*
	 * Outstanding store callbacks: after webhook_stop() they arrive
	 * with stopped set and touch nothing but this count.
	 */
	unsigned store_ops;
	uint64_t sent, failed;
	int64_t outbox_rows;
	/* Adds that failed, oldest first, to be issued again at a tick. */
	STAILQ_HEAD(, add_req) adds;
	unsigned nadds;
	uint64_t add_dropped; /* adds given up: ADD_RETRY_MAX, or a stop */
	struct log_rl fail_rl, store_rl, drop_rl;
	/* Times retries and leases: never steps (dispatch/outbox.h). */
	struct outbox_clock clock;
};

static void poll_outbox(struct webhook *wh);

/* HMAC-SHA256 of a then b, without joining them: 0 or -EINVAL. */
static int
hmac2(const void *key, size_t klen, const void *a, size_t alen, const void *b,
      size_t blen, unsigned char mac[32])
{
	OSSL_PARAM p[] = {
	    OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
	    OSSL_PARAM_construct_end()};
	EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *c = m != NULL ? EVP_MAC_CTX_new(m) : NULL;
	size_t len = 0;
	bool ok;

	ok = c != NULL && EVP_MAC_init(c, key, klen, p) == 1 &&
	     EVP_MAC_update(c, a, alen) == 1 &&
	     EVP_MAC_update(c, b, blen) == 1 &&
	     EVP_MAC_final(c, mac, &len, 32) == 1 && len == 32;
	EVP_MAC_CTX_free(c);
	EVP_MAC_free(m);
	return ok ? 0 : -EINVAL;
}

int
webhook_sign(const void *secret, size_t secret_len, int64_t t, const char *body,
	     size_t body_len, char *out, size_t outsz)
{
	unsigned char mac[32];
	char ts[24], hexs[2 * sizeof(mac) + 1];
	int n;

	n = snprintf(ts, sizeof(ts), "%" PRId64 ".", t);
	if (n < 0 || (size_t)n >= sizeof(ts) || outsz < WEBHOOK_SIG_MAX)
		return -EINVAL;
	if (hmac2(secret, secret_len, ts, (size_t)n, body, body_len, mac) != 0)
		return -EINVAL;
	hex_encode(mac, sizeof(mac), hexs);
	explicit_bzero(mac, sizeof(mac));
	n = snprintf(out, outsz, "t=%" PRId64 ",v1=%s", t, hexs);
	return n > 0 && (size_t)n < outsz ? 0 : -EINVAL;
}

int64_t
webhook_backoff_ms(int attempts, int64_t max_ms)
{
	int64_t wait = BACKOFF_BASE_MS;
	int i;

	if (max_ms < 1)
		max_ms = 1;
	for (i = 1; i < attempts && wait < max_ms; i++)
		wait *= 2;
	if (wait > max_ms)
		wait = max_ms;
	/* Between a half and the whole of it. */
	return wait - (int64_t)(rand64() % (uint64_t)(wait / 2 + 1));
}

/* The body's webhook_id, for the header; "" when it has none. */
static void
body_id(const char *body, char *id, size_t idsz)
{
	json_t *o = json_loads(body, 0, NULL); /* new reference */
	const char *v = json_string_value(json_object_get(o, "webhook_id"));

	snprintf(id, idsz, "%s", v != NULL && id_valid(v) ? v : "");
	json_decref(o);
}

static void
store_done(struct webhook *wh, int err, const char *what)
{
	wh->store_ops--;
	if (err != 0 && !wh->stopped)
		log_warnx_rl(&wh->store_rl, LOG_EVERY_MS,
			     "- webhook store_failed op=%s err=%s", what,
			     store_strerror(err));
}

static void
finish_cb(void *arg, int err)
{
	store_done(arg, err, "finish");
}

static void
delivery_free(struct delivery *dl)
{
	struct webhook *wh = dl->wh;

	LIST_REMOVE(dl, entry);
	wh->in_flight--;
	free(dl->body);
	free(dl);
}

/* Arms the retry pass in ms (at least 1) unless one comes sooner. */
static void
retry_arm(struct webhook *wh, int64_t ms)
{
	struct timeval tv;
	int64_t at;

	if (ms < 1)
		ms = 1;
	at = mono_ms() + ms;
	if (wh->retry_at != 0 && wh->retry_at <= at)
		return;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	if (event_add(wh->retry, &tv) == 0)
		wh->retry_at = at;
}

/*
 * A pass for rows whose short backoff ran out; again every RETRY_STEP_MS
 * while more such rows are pending (retry_until), so each goes within
 * that of its time, not at the next tick.
 */
static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct webhook *wh = arg;
	int64_t left = wh->retry_until - mono_ms();

	wh->retry_at = 0;
	poll_outbox(wh);
	if (left > 0)
		retry_arm(wh, left < RETRY_STEP_MS ? left + 1 : RETRY_STEP_MS);
}

/* A row failed and is due again in wait_ms: a pass then, if before a tick. */
static void
retry_soon(struct webhook *wh, int64_t wait_ms)
{
	int64_t at = mono_ms() + wait_ms + 1;

	if (wait_ms >= POLL_MS)
		return;
	if (at > wh->retry_until)
		wh->retry_until = at;
	retry_arm(wh, wait_ms + 1);
}

/* The try of dl ended: took (2xx) or why not; frees dl, starts a pass. */
static void
delivery_end(struct delivery *dl, bool took, long status, const char *why)
{
	struct webhook *wh = dl->wh;
	int64_t next = -1, wait = 0;

	if (took) {
		wh->sent++;
	} else {
		wh->failed++;
		wait = webhook_backoff_ms(dl->attempts,
					  wh->cfg->webhook_retry_max_ms);
		next = outbox_clock_now(&wh->clock) + wait;
		log_warnx_rl(
		    &wh->fail_rl, LOG_EVERY_MS,
		    "- webhook failed host=%s seq=%" PRId64
		    " attempts=%d status=%ld err=\"%s\" retry_in_ms=%" PRId64,
		    wh->host, dl->seq, dl->attempts, status, why, wait);
	}
	wh->store_ops++;
	store_outbox_finish(wh->st, dl->seq, next, finish_cb, wh);
	if (!took)
		retry_soon(wh, wait);
	delivery_free(dl);
	poll_outbox(wh);
}

/*
 * The receiver took the webhook when its status line said 2xx, whatever
 * came after it: an answer's body is no business of ours, so one over
 * http_multi's cap (curl's write error), cut short or trickled past the
 * timeout still counts.  Judging by curl's code instead sent a receiver
 * that answers 200 with a large page the same webhook again and again
 * until webhook_max_age_s.
 */
static void
sent_cb(const struct http_result *res, void *arg)
{
	struct delivery *dl = arg;
	char why[128];
	bool took = res->status >= 200 && res->status < 300;

	if (res->code != CURLE_OK && !took)
		log_sanitize(res->error, strlen(res->error), why, sizeof(why));
	else
		snprintf(why, sizeof(why), "http status");
	delivery_end(dl, took, res->status, took ? "" : why);
}

/* The request of dl, handed to curl; -errno when it could not start. */
static int
delivery_start(struct webhook *wh, struct delivery *dl)
{
	struct curl_slist *h = NULL, *h2;
	char sig[WEBHOOK_SIG_MAX], line[160], id[ID_LEN + 1];
	size_t len = strlen(dl->body);
	/* Apart, so that no compiler takes it for a missing comma. */
	static const char ua[] = "User-Agent: shivneri/" SHIVNERI_VERSION;
	const char *fixed[] = {"Content-Type: application/json", "Expect:", ua};
	CURL *e;
	size_t i;
	int rc;

	if (webhook_sign(wh->secret, wh->secret_len, now_ms() / 1000, dl->body,
			 len, sig, sizeof(sig)) != 0)
		return -EINVAL;
	body_id(dl->body, id, sizeof(id));
	e = curl_easy_init();
	if (e == NULL)
		return -ENOMEM;
	for (i = 0; i < ARRAY_SIZE(fixed) + 2; i++) {
		if (i < ARRAY_SIZE(fixed))
			snprintf(line, sizeof(line), "%s", fixed[i]);
		else if (i == ARRAY_SIZE(fixed))
			snprintf(line, sizeof(line), "Shivneri-Signature: %s",
				 sig);
		else
			snprintf(line, sizeof(line), "Shivneri-Webhook-Id: %s",
				 id);
		h2 = curl_slist_append(h, line);
		if (h2 == NULL)
			goto nomem;
		h = h2;
	}
	/* The body stays in dl until the callback: no copy. */
	if (curl_easy_setopt(e, CURLOPT_URL, wh->cfg->webhook_url) ||
	    curl_easy_setopt(e, CURLOPT_POSTFIELDS, dl->body) ||
	    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len))
		goto nomem;
	rc = http_multi_add(wh->hm, e, h, NULL, CONNECT_TIMEOUT_MS,
			    wh->cfg->webhook_timeout_ms, sent_cb, dl);
	if (rc == 0)
		return 0;
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	return rc;
nomem:
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	return -ENOMEM;
}

static void
claim_cb(void *arg, int err, struct store_outbox_row *rows, size_t n,
	 int64_t depth)
{
	struct webhook *wh = arg;
	struct delivery *dl;
	size_t i;

	wh->store_ops--;
	wh->claiming = false;
	if (wh->stopped || err != 0) {
		if (err != 0 && !wh->stopped)
			log_warnx_rl(&wh->store_rl, LOG_EVERY_MS,
				     "- webhook store_failed op=claim err=%s",
				     store_strerror(err));
		store_outbox_rows_free(rows, n);
		return;
	}
	wh->outbox_rows = depth;
	for (i = 0; i < n; i++) {
		dl = xcalloc(1, sizeof(*dl));
		dl->wh = wh;
		dl->seq = rows[i].seq;
		dl->attempts = rows[i].attempts;
		dl->body = rows[i].body; /* taken */
		rows[i].body = NULL;
		LIST_INSERT_HEAD(&wh->deliveries, dl, entry);
		wh->in_flight++;
		if (delivery_start(wh, dl) != 0)
			delivery_end(dl, false, 0, "cannot start the request");
	}
	store_outbox_rows_free(rows, n);
	if (wh->again) {
		wh->again = false;
		poll_outbox(wh);
	}
}

/* How long a claimed row is held for its try. */
static int64_t
lease_ms(const struct webhook *wh)
{
	return (int64_t)wh->cfg->webhook_timeout_ms + CONNECT_TIMEOUT_MS +
	       LEASE_SLACK_MS;
}

/* A pass: claims what the free slots can take. */
static void
poll_outbox(struct webhook *wh)
{
	unsigned max = (unsigned)wh->cfg->webhook_max_in_flight;
	int64_t now = outbox_clock_now(&wh->clock);

	if (wh->stopped)
		return;
	if (wh->claiming) {
		wh->again = true;
		return;
	}
	if (wh->in_flight >= max)
		return;
	wh->claiming = true;
	wh->store_ops++;
	/*
	 * Rows older than webhook_max_age_s are dropped, not sent again.
	 * Their age is on the wall clock: the store wrote created_ms with it.
	 */
	store_outbox_claim(
	    wh->st, now, now + lease_ms(wh), max - wh->in_flight,
	    outbox_clock_expire_before(
		&wh->clock, (int64_t)wh->cfg->webhook_max_age_s * 1000),
	    claim_cb, wh);
}

static void
add_req_free(struct add_req *a)
{
	free(a->body);
	free(a);
}

static void added_cb(void *arg, int err);

/* a into the outbox; added_cb owns it from here. */
static void
add_issue(struct webhook *wh, struct add_req *a)
{
	wh->store_ops++;
	store_outbox_add(wh->st, a->body, added_cb, a);
}

/* An add failed: a waits for the next tick, the oldest goes if full. */
static void
add_keep(struct webhook *wh, struct add_req *a)
{
	struct add_req *old;

	if (wh->nadds >= ADD_RETRY_MAX) {
		old = STAILQ_FIRST(&wh->adds);
		STAILQ_REMOVE_HEAD(&wh->adds, entry);
		wh->nadds--;
		add_req_free(old);
		wh->add_dropped++;
		log_warnx_rl(&wh->drop_rl, DROP_LOG_EVERY_MS,
			     "- webhook dropped reason=store_failed "
			     "total=%" PRIu64 " waiting=%u",
			     wh->add_dropped, wh->nadds);
	}
	STAILQ_INSERT_TAIL(&wh->adds, a, entry);
	wh->nadds++;
}

/* Every add that failed, issued again (one that fails comes back). */
static void
adds_retry(struct webhook *wh)
{
	STAILQ_HEAD(, add_req) now = STAILQ_HEAD_INITIALIZER(now);
	struct add_req *a;

	STAILQ_CONCAT(&now, &wh->adds);
	wh->nadds = 0;
	while ((a = STAILQ_FIRST(&now)) != NULL) {
		STAILQ_REMOVE_HEAD(&now, entry);
		add_issue(wh, a);
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct webhook *wh = arg;

	adds_retry(wh);
	poll_outbox(wh);
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	poll_outbox(arg);
}

static void
kick(struct webhook *wh)
{
	/* Once for a burst: an active event is not activated again. */
	event_active(wh->kick, EV_TIMEOUT, 1);
}

static void
added_cb(void *arg, int err)
{
	struct add_req *a = arg;
	struct webhook *wh = a->wh;

	store_done(wh, err, "add");
	/* A body the store refuses as such fails the same way every time. */
	if (wh->stopped || err == -EINVAL || err == -EFBIG) {
		if (err != 0)
			wh->add_dropped++;
		add_req_free(a);
	} else if (err != 0) {
		add_keep(wh, a);
	} else {
		add_req_free(a);
		kick(wh);
	}
}

/* The hub: outcomes are in the outbox already; provider rows go in now. */
static void
event_cb(void *arg, const struct ev_rec *r)
{
	struct webhook *wh = arg;
	struct add_req *a;
	struct buf body;

	if (r->type == EV_MSG_DELIVERED || r->type == EV_MSG_FAILED) {
		kick(wh);
		return;
	}
	if (EV_IS_MESSAGE(r->type))
		return;
	buf_init(&body, STORE_OUTBOX_BODY_MAX);
	if (outbox_body(r, &body) != 0) {
		log_warnx("- webhook body_too_big type=%s provider=%s",
			  events_type_name(r->type), r->provider);
	} else {
		a = xcalloc(1, sizeof(*a));
		a->wh = wh;
		a->body = buf_take(&body, NULL);
		add_issue(wh, a);
	}
	buf_cleanup(&body);
}

/* scheme://host[:port] of the URL, for log lines (never path or query). */
static void
url_host(const char *url, char *out, size_t outsz)
{
	const char *h = strstr(url, "://");
	size_t n;

	h = h != NULL ? h + 3 : url;
	n = strcspn(h, "/?#");
	log_sanitize(h, n, out, outsz);
}

/* curl's side: the multi handle, the CA file, a cache for the slots. */
static int
webhook_curl(struct webhook *wh)
{
	struct config_kv kv = {"tls_ca_file", wh->cfg->webhook_tls_ca_file, 0};
	struct provider_config pc = {
	    .name = "webhook",
	    .type = "webhook",
	    .max_in_flight = wh->cfg->webhook_max_in_flight,
	    .kv = &kv,
	    .nkv = wh->cfg->webhook_tls_ca_file != NULL ? 1 : 0,
	};

	wh->hm = http_multi_new(wh->base);
	if (wh->hm == NULL)
		return -ENOMEM;
	return http_multi_configure(wh->hm, &pc);
}

struct webhook *
webhook_new(struct event_base *base, const struct config *cfg, struct store *st,
	    struct events *ev, const char *secret, size_t secret_len, char *err,
	    size_t errlen)
{
	struct webhook *wh = xcalloc(1, sizeof(*wh));
	struct timeval tv = {POLL_MS / 1000, (POLL_MS % 1000) * 1000};
	int rc;

	if (cfg->webhook_url == NULL)
		fatalx("webhook_new: no webhook_url");
	LIST_INIT(&wh->deliveries);
	STAILQ_INIT(&wh->adds);
	wh->base = base;
	wh->cfg = cfg;
	wh->st = st;
	wh->ev = ev;
	wh->secret = xmalloc(secret_len);
	memcpy(wh->secret, secret, secret_len);
	wh->secret_len = secret_len;
	url_host(cfg->webhook_url, wh->host, sizeof(wh->host));
	store_outbox_set_max(st, cfg->webhook_max_outbox);
	outbox_clock_init(&wh->clock, NULL, NULL);
	/* No row waits longer than a backoff or a lease (see the store). */
	store_outbox_set_horizon(st, lease_ms(wh) > cfg->webhook_retry_max_ms
					 ? lease_ms(wh)
					 : cfg->webhook_retry_max_ms);
	rc = webhook_curl(wh);
	if (rc != 0) {
		snprintf(err, errlen, "webhook: cannot set up curl: %s",
			 strerror(-rc));
		goto fail;
	}
	wh->tick = event_new(base, -1, EV_PERSIST, tick_cb, wh);
	wh->retry = evtimer_new(base, retry_cb, wh);
	wh->kick = event_new(base, -1, 0, kick_cb, wh);
	if (wh->tick == NULL || wh->retry == NULL || wh->kick == NULL ||
	    event_add(wh->tick, &tv) != 0) {
		snprintf(err, errlen, "webhook: cannot arm its timer");
		goto fail;
	}
	if (ev != NULL)
		wh->sub = events_subscribe(ev, event_cb, wh);
	log_info("- webhook on host=%s max_in_flight=%d timeout_ms=%d "
		 "max_outbox=%" PRId64 " max_age_s=%d",
		 wh->host, cfg->webhook_max_in_flight, cfg->webhook_timeout_ms,
		 cfg->webhook_max_outbox, cfg->webhook_max_age_s);
	/* Whatever a previous run left is due now. */
	kick(wh);
	return wh;
fail:
	webhook_stop(wh);
	webhook_free(wh);
	return NULL;
}

void
webhook_stop(struct webhook *wh)
{
	struct delivery *dl;
	struct add_req *a;

	if (wh == NULL || wh->stopped)
		return;
	wh->stopped = true;
	if (wh->sub != NULL)
		events_unsubscribe(wh->ev, wh->sub);
	wh->sub = NULL;
	if (wh->tick != NULL)
		event_del(wh->tick);
	if (wh->retry != NULL)
		event_del(wh->retry);
	if (wh->kick != NULL)
		event_del(wh->kick);
	/* No callback comes for these: their rows wait for their lease. */
	if (wh->hm != NULL)
		http_multi_cancel(wh->hm);
	while ((dl = LIST_FIRST(&wh->deliveries)) != NULL)
		delivery_free(dl);
	/* Provider webhooks never written: gone with the process. */
	while ((a = STAILQ_FIRST(&wh->adds)) != NULL) {
		STAILQ_REMOVE_HEAD(&wh->adds, entry);
		wh->nadds--;
		wh->add_dropped++;
		add_req_free(a);
	}
}

void
webhook_free(struct webhook *wh)
{
	if (wh == NULL)
		return;
	webhook_stop(wh);
	if (wh->store_ops != 0)
		log_warnx("- webhook free_with_store_ops n=%u", wh->store_ops);
	http_multi_free(wh->hm);
	if (wh->tick != NULL)
		event_free(wh->tick);
	if (wh->retry != NULL)
		event_free(wh->retry);
	if (wh->kick != NULL)
		event_free(wh->kick);
	explicit_bzero(wh->secret, wh->secret_len);
	free(wh->secret);
	free(wh);
}

void
webhook_stats(const struct webhook *wh, struct webhook_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (wh == NULL)
		return;
	out->sent = wh->sent;
	out->failed = wh->failed;
	out->dropped = store_outbox_dropped(wh->st) + wh->add_dropped;
	out->outbox_rows = wh->outbox_rows;
	out->in_flight = wh->in_flight;
}
