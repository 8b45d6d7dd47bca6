/*
 * The dispatcher (see dispatcher.h for the policy).
 *
 * Where a message is, at any moment, exactly one of:
 *   ready    rowid in a FIFO ring: queued, body on disk only;
 *   delayed  (due, rowid) in a min-heap: backing off between rounds;
 *   loaded   whole message in a bounded FIFO window, waiting for a pick;
 *   in flight  a job at one provider, whole message held for a retry.
 * The pump moves messages from loaded to providers while the scheduler
 * holds an eligible provider, and refills the window from the ready ring
 * through store_load().  Pumping is deferred to an event so that a burst
 * of results or submissions is handled in one pass.
 *
 * Provider state transitions live here too (provider_set_state), since
 * each one moves messages: down requeues everything in flight as "lost".
 *
 * Nothing here blocks: store writes are queued (store.h orders them), and
 * jobs are written into the agent's link buffer.  Untrusted input is the
 * agent's RESULT: a job id that is not in flight at that provider, or
 * whose message id does not match, is ignored (and logged).
 */
#include "dispatch/dispatcher.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/registry.h"
#include "dispatch/ring.h"
#include "dispatch/scheduler.h"
#include "link/link.h"
#include "store/store.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define LOADED_MAX 1024 /* whole messages held waiting for a pick */
#define LOAD_BATCH 256  /* rowids per store_load */
#define BREAKER_MAX_COOLDOWN_MS (5 * 60 * 1000)

struct job {
	uint64_t id;
	int n; /* attempt number */
	struct store_message *m;
	struct provider *p;
	struct job *hnext;         /* hash chain */
	struct job *pprev, *pnext; /* the provider's list */
};

struct delayed {
	int64_t due_ms;
	int64_t rowid;
};

struct dispatcher {
	struct event_base *base;
	const struct config *cfg;
	struct store *st;
	struct registry *reg;
	struct scheduler *sched;
	struct ring ready;  /* int64_t rowids */
	struct ring loaded; /* struct store_message * */
	struct delayed *heap;
	size_t nheap, capheap;
	struct event *delay_ev;
	struct event *pump_ev;
	bool loading;
	bool paused;
	bool pumping;
	uint64_t next_job_id;
	struct job **jobs; /* hash by id */
	size_t njobs, nbuckets;
	int64_t counts[MSG_NSTATUS];
};

static void provider_set_state(struct dispatcher *d, struct provider *p,
			       int state, const char *why);
static void refresh(struct dispatcher *d, struct provider *p);

static struct provider *
entry_provider(struct sched_entry *e)
{
	return (struct provider *)((char *)e - offsetof(struct provider, se));
}

static void
schedule_pump(struct dispatcher *d)
{
	event_active(d->pump_ev, EV_TIMEOUT, 0);
}

/* --- jobs ------------------------------------------------------------ */

static size_t
job_bucket(const struct dispatcher *d, uint64_t id)
{
	return (size_t)(id * 0x9e3779b97f4a7c15ULL >> 20) & (d->nbuckets - 1);
}

static void
jobs_grow(struct dispatcher *d)
{
	size_t old = d->nbuckets, i;
	struct job **ov = d->jobs;

	d->nbuckets = old ? old * 2 : 256;
	d->jobs = xcalloc(d->nbuckets, sizeof(*d->jobs));
	for (i = 0; i < old; i++) {
		struct job *j = ov[i], *next;
		for (; j != NULL; j = next) {
			size_t b = job_bucket(d, j->id);
			next = j->hnext;
			j->hnext = d->jobs[b];
			d->jobs[b] = j;
		}
	}
	free(ov);
}

static void
job_attach(struct dispatcher *d, struct job *j)
{
	size_t b;

	if (d->njobs + 1 > d->nbuckets)
		jobs_grow(d);
	b = job_bucket(d, j->id);
	j->hnext = d->jobs[b];
	d->jobs[b] = j;
	d->njobs++;
	j->pprev = NULL;
	j->pnext = j->p->jobs;
	if (j->p->jobs != NULL)
		j->p->jobs->pprev = j;
	j->p->jobs = j;
	j->p->se.in_flight++;
}

static struct job *
job_find(struct dispatcher *d, uint64_t id)
{
	struct job *j;

	if (d->nbuckets == 0)
		return NULL;
	for (j = d->jobs[job_bucket(d, id)]; j != NULL; j = j->hnext)
		if (j->id == id)
			return j;
	return NULL;
}

static void
job_detach(struct dispatcher *d, struct job *j)
{
	struct job **pp = &d->jobs[job_bucket(d, j->id)];

	while (*pp != j)
		pp = &(*pp)->hnext;
	*pp = j->hnext;
	d->njobs--;
	if (j->pprev != NULL)
		j->pprev->pnext = j->pnext;
	else
		j->p->jobs = j->pnext;
	if (j->pnext != NULL)
		j->pnext->pprev = j->pprev;
	j->p->se.in_flight--;
}

/* --- the backoff heap ------------------------------------------------ */

static void
heap_push(struct dispatcher *d, int64_t due_ms, int64_t rowid)
{
	size_t i;

	if (d->nheap == d->capheap) {
		d->capheap = d->capheap ? d->capheap * 2 : 64;
		d->heap = xreallocarray(d->heap, d->capheap, sizeof(*d->heap));
	}
	i = d->nheap++;
	while (i > 0 && d->heap[(i - 1) / 2].due_ms > due_ms) {
		d->heap[i] = d->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	d->heap[i].due_ms = due_ms;
	d->heap[i].rowid = rowid;
}

static void
heap_pop(struct dispatcher *d)
{
	struct delayed last = d->heap[--d->nheap];
	size_t i = 0, c;

	for (;;) {
		c = 2 * i + 1;
		if (c >= d->nheap)
			break;
		if (c + 1 < d->nheap &&
		    d->heap[c + 1].due_ms < d->heap[c].due_ms)
			c++;
		if (d->heap[c].due_ms >= last.due_ms)
			break;
		d->heap[i] = d->heap[c];
		i = c;
	}
	if (d->nheap > 0)
		d->heap[i] = last;
}

static void
arm_delay(struct dispatcher *d)
{
	struct timeval tv;
	int64_t wait;

	if (d->nheap == 0) {
		event_del(d->delay_ev);
		return;
	}
	wait = d->heap[0].due_ms - now_ms();
	if (wait < 0)
		wait = 0;
	tv.tv_sec = (time_t)(wait / 1000);
	tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
	event_add(d->delay_ev, &tv);
}

static void
delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dispatcher *d = arg;
	int64_t now = now_ms();

	while (d->nheap > 0 && d->heap[0].due_ms <= now) {
		ring_push_back(&d->ready, &d->heap[0].rowid);
		heap_pop(d);
	}
	arm_delay(d);
	schedule_pump(d);
}

/* --- message bookkeeping --------------------------------------------- */

static bool
tried_contains(const char *tried, const char *name)
{
	size_t n = strlen(name);
	const char *s = tried;

	if (s == NULL)
		return false;
	while (*s != '\0') {
		const char *comma = strchr(s, ',');
		size_t len = comma ? (size_t)(comma - s) : strlen(s);
		if (len == n && memcmp(s, name, n) == 0)
			return true;
		if (comma == NULL)
			break;
		s = comma + 1;
	}
	return false;
}

static void
tried_add(struct store_message *m, const char *name)
{
	char *t;

	if (tried_contains(m->tried, name))
		return;
	if (m->tried == NULL || m->tried[0] == '\0')
		t = xstrdup(name);
	else
		t = xasprintf("%s,%s", m->tried, name);
	free(m->tried);
	m->tried = t;
}

static void
count_move(struct dispatcher *d, int from, int to)
{
	if (from >= 0)
		d->counts[from]--;
	if (to >= 0)
		d->counts[to]++;
}

static void
update_init(struct store_update *u, const struct store_message *m, int status)
{
	memset(u, 0, sizeof(*u));
	u->rowid = m->rowid;
	u->status = status;
	u->next_ms = m->next_ms;
	u->attempts = m->attempts;
	u->round = m->round;
	u->tried = m->tried ? m->tried : "";
}

/* An attempts row; the strings are borrowed (store_update copies them). */
static struct store_attempt
attempt_of(int n, const char *provider, int outcome, const char *detail)
{
	struct store_attempt a;

	memset(&a, 0, sizeof(a));
	a.n = n;
	a.provider = (char *)(uintptr_t)provider;
	a.at_ms = now_ms();
	a.outcome = outcome;
	a.detail = (char *)(uintptr_t)detail;
	return a;
}

/* A final state: delivered or failed.  Frees m. */
static void
finish(struct dispatcher *d, struct store_message *m, int status,
       const char *provider, const char *pmid, const char *error,
       const struct store_attempt *att, int from)
{
	struct store_update u;

	update_init(&u, m, status);
	if (att != NULL) {
		u.has_attempt = true;
		u.attempt = *att;
	}
	u.provider = provider;
	u.provider_message_id = pmid;
	u.error = error;
	store_update(d->st, &u, NULL, NULL);
	count_move(d, from, status);
	if (status == MSG_DELIVERED)
		log_info("%s dispatch delivered provider=%s attempts=%d", m->id,
			 provider ? provider : "-", m->attempts);
	else
		log_info("%s dispatch failed attempts=%d error=\"%s\"", m->id,
			 m->attempts, error ? error : "");
	store_message_free(m);
}

static bool
expired(const struct dispatcher *d, const struct store_message *m)
{
	return now_ms() - m->created_ms > d->cfg->message_ttl_s * 1000;
}

/* Ends the round: wait, then try every provider again. Frees m. */
static void
backoff(struct dispatcher *d, struct store_message *m)
{
	struct store_update u;
	int64_t delay = d->cfg->retry_base_ms;
	int i;

	m->round++;
	for (i = 1; i < m->round && delay < d->cfg->retry_max_ms; i++)
		delay *= 2;
	if (delay > d->cfg->retry_max_ms)
		delay = d->cfg->retry_max_ms;
	/* Equal jitter: half fixed, half random, so rounds stay spread. */
	delay = delay / 2 + (int64_t)(rand64() % (uint64_t)(delay / 2 + 1));
	m->next_ms = now_ms() + delay;
	free(m->tried);
	m->tried = xstrdup("");
	update_init(&u, m, MSG_QUEUED);
	store_update(d->st, &u, NULL, NULL);
	log_info("%s dispatch backoff round=%d delay_ms=%" PRId64, m->id,
		 m->round, delay);
	heap_push(d, m->next_ms, m->rowid);
	arm_delay(d);
	store_message_free(m);
}

/* --- eligibility ----------------------------------------------------- */

static void
rate_cb(evutil_socket_t fd, short what, void *arg)
{
	struct provider *p = arg;

	refresh(p->dispatcher, p);
	schedule_pump(p->dispatcher);
}

static bool
rate_ok(struct dispatcher *d, struct provider *p)
{
	int64_t now;
	double burst;

	if (p->rate_per_s <= 0)
		return true;
	now = mono_us();
	burst = p->rate_per_s;
	if (p->tokens_mono_us == 0)
		p->tokens = burst;
	else
		p->tokens +=
		    (double)(now - p->tokens_mono_us) * p->rate_per_s / 1e6;
	if (p->tokens > burst)
		p->tokens = burst;
	p->tokens_mono_us = now;
	if (p->tokens >= 1.0)
		return true;
	if (!evtimer_pending(p->rate_timer, NULL)) {
		double wait_us = (1.0 - p->tokens) * 1e6 / p->rate_per_s;
		struct timeval tv = {(time_t)(wait_us / 1e6),
				     (suseconds_t)((int64_t)wait_us % 1000000) +
					 1};
		evtimer_add(p->rate_timer, &tv);
	}
	return false;
}

/*
 * How many messages p may hold now: one while its breaker is half-open;
 * while a returning provider ramps up (slow_start_s), a share of
 * max_in_flight growing linearly from 1.  The ramp needs no timer of its
 * own: each result and each heartbeat of a ramping provider recomputes
 * the limit.
 */
static unsigned
limit(struct provider *p)
{
	int64_t elapsed, window;
	unsigned n;

	if (p->breaker == BREAKER_HALF_OPEN)
		return 1;
	if (p->ramp_start_mono == 0)
		return (unsigned)p->max_in_flight;
	elapsed = mono_ms() - p->ramp_start_mono;
	window = (int64_t)p->slow_start_s * 1000;
	if (elapsed >= window) {
		p->ramp_start_mono = 0;
		return (unsigned)p->max_in_flight;
	}
	n = (unsigned)((int64_t)p->max_in_flight * elapsed / window);
	return n > 0 ? n : 1;
}

static bool
eligible(struct dispatcher *d, struct provider *p)
{
	return p->conn != NULL && p->state == PROVIDER_UP && !p->disabled &&
	       p->breaker != BREAKER_OPEN && p->se.in_flight < limit(p) &&
	       rate_ok(d, p);
}

static void
refresh(struct dispatcher *d, struct provider *p)
{
	bool e = eligible(d, p);
	bool held = scheduler_holds(d->sched, &p->se);

	if (e && !held)
		scheduler_add(d->sched, &p->se);
	else if (!e && held)
		scheduler_remove(d->sched, &p->se);
	else if (e)
		scheduler_update(d->sched, &p->se);
}

/* Up, enabled, breaker not open, and not yet tried for m this round. */
static bool
untried_up(struct dispatcher *d, const struct store_message *m)
{
	size_t i, n = registry_count(d->reg);

	for (i = 0; i < n; i++) {
		struct provider *p = registry_at(d->reg, i);
		if (p->conn != NULL && p->state == PROVIDER_UP &&
		    !p->disabled && p->breaker != BREAKER_OPEN &&
		    !tried_contains(m->tried, p->name))
			return true;
	}
	return false;
}

static bool
skip_tried(const struct sched_entry *e, void *arg)
{
	const struct store_message *m = arg;

	return tried_contains(m->tried, e->name);
}

/* --- sending --------------------------------------------------------- */

static void
send_job(struct dispatcher *d, struct store_message *m, struct provider *p)
{
	struct store_update u;
	struct job *j = xcalloc(1, sizeof(*j));
	int rc;

	j->id = ++d->next_job_id;
	j->n = m->attempts + 1;
	j->m = m;
	j->p = p;
	rc = link_encode_job(link_conn_output(p->conn), j->id, m->id,
			     m->mail_from, (const char *const *)m->rcpt,
			     m->nrcpt, m->mime, m->mime_len);
	if (rc != 0) {
		/* Our own message does not fit the protocol: fail it. */
		log_warnx("%s dispatch cannot encode job: %s", m->id,
			  link_strerror(rc));
		free(j);
		finish(d, m, MSG_FAILED, NULL, NULL,
		       "message cannot be encoded for the agent", NULL,
		       MSG_QUEUED);
		return;
	}
	job_attach(d, j);
	if (p->rate_per_s > 0)
		p->tokens -= 1.0;
	free(m->provider);
	m->provider = xstrdup(p->name);
	update_init(&u, m, MSG_SENDING);
	u.provider = p->name;
	store_update(d->st, &u, NULL, NULL);
	count_move(d, MSG_QUEUED, MSG_SENDING);
	log_info("%s dispatch sending provider=%s attempt=%d job=%" PRIu64,
		 m->id, p->name, j->n, j->id);
	refresh(d, p);
}

static void load_cb(void *arg, int err, struct store_message **msgs, size_t n);

static void
refill(struct dispatcher *d)
{
	int64_t ids[LOAD_BATCH];
	size_t n = 0;

	if (d->loading || d->paused || d->loaded.len >= LOADED_MAX / 2 ||
	    d->ready.len == 0 || scheduler_count(d->sched) == 0)
		return;
	while (n < LOAD_BATCH && ring_pop_front(&d->ready, &ids[n]))
		n++;
	d->loading = true;
	store_load(d->st, ids, n, load_cb, d);
}

static void
load_cb(void *arg, int err, struct store_message **msgs, size_t n)
{
	struct dispatcher *d = arg;
	size_t i;

	d->loading = false;
	if (err != 0)
		log_warnx("- dispatch store load failed: %s",
			  store_strerror(err));
	for (i = 0; i < n; i++)
		ring_push_back(&d->loaded, &msgs[i]);
	free(msgs);
	schedule_pump(d);
}

static void
pump(struct dispatcher *d)
{
	struct store_message *m;
	size_t spins = 0;

	if (d->paused || d->pumping)
		return;
	d->pumping = true;
	while (d->loaded.len > 0 && scheduler_count(d->sched) > 0 &&
	       spins <= d->loaded.len) {
		struct sched_entry *e;

		ring_pop_front(&d->loaded, &m);
		if (expired(d, m)) {
			finish(d, m, MSG_FAILED, NULL, NULL,
			       "expired: message_ttl_s spent", NULL,
			       MSG_QUEUED);
			continue;
		}
		e = scheduler_pick(d->sched, skip_tried, m);
		if (e != NULL) {
			send_job(d, m, entry_provider(e));
			spins = 0;
			continue;
		}
		if (untried_up(d, m)) {
			/* An untried provider is up but full: wait for it. */
			ring_push_back(&d->loaded, &m);
			spins++;
			continue;
		}
		backoff(d, m);
	}
	refill(d);
	d->pumping = false;
}

static void
pump_cb(evutil_socket_t fd, short what, void *arg)
{
	pump(arg);
}

/* --- provider state -------------------------------------------------- */

/* Every job in flight at p goes back to the front of the window, lost. */
static void
requeue_all(struct dispatcher *d, struct provider *p, const char *why)
{
	while (p->jobs != NULL) {
		struct job *j = p->jobs;
		struct store_message *m = j->m;
		struct store_update u;

		job_detach(d, j);
		m->attempts = j->n;
		tried_add(m, p->name);
		p->lost++;
		update_init(&u, m, MSG_QUEUED);
		u.has_attempt = true;
		u.attempt = attempt_of(j->n, p->name, OUTCOME_LOST, why);
		store_update(d->st, &u, NULL, NULL);
		count_move(d, MSG_SENDING, MSG_QUEUED);
		log_info(
		    "%s dispatch lost provider=%s attempt=%d reason=\"%s\"",
		    m->id, p->name, j->n, why);
		ring_push_front(&d->loaded, &m);
		free(j);
	}
}

static void
provider_set_state(struct dispatcher *d, struct provider *p, int state,
		   const char *why)
{
	if (p->state != state)
		log_info("- registry provider %s %s -> %s reason=\"%s\"",
			 p->name, p->state == PROVIDER_UP ? "up" : "down",
			 state == PROVIDER_UP ? "up" : "down", why);
	if (p->state != state && state == PROVIDER_UP) {
		/* A return, not the first up: its share ramps up again. */
		if (p->ever_up && p->slow_start_s > 0)
			p->ramp_start_mono = mono_ms();
		p->ever_up = true;
	}
	p->state = state;
	if (state == PROVIDER_DOWN)
		requeue_all(d, p, why);
	refresh(d, p);
	schedule_pump(d);
}

/* The watchdog is re-armed by every heartbeat: firing means silence. */
static void
hb_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct provider *p = arg;

	if (p->state == PROVIDER_UP)
		provider_set_state(p->dispatcher, p, PROVIDER_DOWN,
				   "heartbeat timeout");
}

static void
breaker_cb(evutil_socket_t fd, short what, void *arg)
{
	struct provider *p = arg;
	struct dispatcher *d = p->dispatcher;

	if (p->breaker != BREAKER_OPEN)
		return;
	p->breaker = BREAKER_HALF_OPEN;
	log_info("- registry provider %s breaker half-open: one trial message",
		 p->name);
	if (p->conn != NULL && p->health != LINK_HEALTH_DOWN)
		provider_set_state(d, p, PROVIDER_UP, "breaker trial");
}

static void
ensure_timers(struct dispatcher *d, struct provider *p)
{
	p->dispatcher = d;
	if (p->hb_timer == NULL)
		p->hb_timer = evtimer_new(d->base, hb_timeout_cb, p);
	if (p->rate_timer == NULL)
		p->rate_timer = evtimer_new(d->base, rate_cb, p);
	if (p->breaker_timer == NULL)
		p->breaker_timer = evtimer_new(d->base, breaker_cb, p);
	if (p->breaker_cooldown_ms == 0)
		p->breaker_cooldown_ms = d->cfg->breaker_cooldown_ms;
}

static void
breaker_failure(struct dispatcher *d, struct provider *p)
{
	struct timeval tv;

	p->consecutive_failures++;
	if (p->breaker == BREAKER_HALF_OPEN) {
		p->breaker_cooldown_ms *= 2;
		if (p->breaker_cooldown_ms > BREAKER_MAX_COOLDOWN_MS)
			p->breaker_cooldown_ms = BREAKER_MAX_COOLDOWN_MS;
	} else if (p->breaker != BREAKER_CLOSED ||
		   p->consecutive_failures < d->cfg->breaker_threshold) {
		return;
	}
	p->breaker = BREAKER_OPEN;
	log_info("- registry provider %s breaker open failures=%d "
		 "cooldown_ms=%d",
		 p->name, p->consecutive_failures, p->breaker_cooldown_ms);
	tv.tv_sec = p->breaker_cooldown_ms / 1000;
	tv.tv_usec = (p->breaker_cooldown_ms % 1000) * 1000;
	evtimer_add(p->breaker_timer, &tv);
	provider_set_state(d, p, PROVIDER_DOWN, "circuit breaker open");
}

static void
breaker_success(struct dispatcher *d, struct provider *p)
{
	p->consecutive_failures = 0;
	if (p->breaker == BREAKER_HALF_OPEN) {
		p->breaker = BREAKER_CLOSED;
		p->breaker_cooldown_ms = d->cfg->breaker_cooldown_ms;
		log_info("- registry provider %s breaker closed", p->name);
	}
}

void
dispatcher_provider_linked(struct dispatcher *d, struct provider *p)
{
	struct timeval tv;

	ensure_timers(d, p);
	p->last_heartbeat_mono = 0;
	tv.tv_sec = d->cfg->heartbeat_timeout_ms / 1000;
	tv.tv_usec = (d->cfg->heartbeat_timeout_ms % 1000) * 1000;
	evtimer_add(p->hb_timer, &tv);
	log_info("- registry provider %s linked type=%s pid=%" PRId64, p->name,
		 p->type, p->agent_pid);
}

void
dispatcher_heartbeat(struct dispatcher *d, struct provider *p, int health,
		     unsigned agent_in_flight)
{
	struct timeval tv;

	ensure_timers(d, p);
	p->last_heartbeat_mono = mono_ms();
	p->health = health;
	tv.tv_sec = d->cfg->heartbeat_timeout_ms / 1000;
	tv.tv_usec = (d->cfg->heartbeat_timeout_ms % 1000) * 1000;
	evtimer_add(p->hb_timer, &tv);
	if (health == LINK_HEALTH_DOWN) {
		if (p->state == PROVIDER_UP)
			provider_set_state(d, p, PROVIDER_DOWN,
					   "agent reports provider down");
		return;
	}
	if (p->state == PROVIDER_DOWN && p->breaker != BREAKER_OPEN) {
		provider_set_state(d, p, PROVIDER_UP, "heartbeat");
	} else if (p->ramp_start_mono != 0) {
		/* A ramp in progress: each beat may raise the limit. */
		refresh(d, p);
		schedule_pump(d);
	}
}

void
dispatcher_provider_unlinked(struct dispatcher *d, struct provider *p,
			     const char *why)
{
	if (p->hb_timer != NULL)
		evtimer_del(p->hb_timer);
	p->health = LINK_HEALTH_DOWN;
	log_info("- registry provider %s unlinked reason=\"%s\"", p->name, why);
	provider_set_state(d, p, PROVIDER_DOWN, why);
}

void
dispatcher_set_disabled(struct dispatcher *d, struct provider *p, bool disabled)
{
	if (p->disabled != disabled)
		log_info("- registry provider %s %s", p->name,
			 disabled ? "disabled" : "enabled");
	p->disabled = disabled;
	refresh(d, p);
	schedule_pump(d);
}

void
dispatcher_result(struct dispatcher *d, struct provider *p, uint64_t job_id,
		  const char *message_id, int outcome, const char *pmid,
		  const char *detail)
{
	struct job *j = job_find(d, job_id);
	struct store_message *m;
	struct store_attempt att;
	struct store_update u;
	int n;

	if (j == NULL || j->p != p) {
		/* Late result of a job already requeued (the agent was
		 * declared down), or a confused agent: nothing to do. */
		log_debug("- dispatch result for unknown job=%" PRIu64
			  " provider=%s",
			  job_id, p->name);
		return;
	}
	m = j->m;
	if (strcmp(m->id, message_id) != 0) {
		log_warnx("%s dispatch agent %s answered job=%" PRIu64
			  " with another message id",
			  m->id, p->name, job_id);
		return;
	}
	n = j->n;
	job_detach(d, j);
	free(j);
	m->attempts = n;
	/* Anything but a verdict on the message counts as provider-caused. */
	if (outcome != OUTCOME_DELIVERED && outcome != OUTCOME_PERMANENT)
		outcome = OUTCOME_TRANSIENT;
	att = attempt_of(n, p->name, outcome, detail);
	switch (outcome) {
	case OUTCOME_DELIVERED:
		p->delivered++;
		breaker_success(d, p);
		finish(d, m, MSG_DELIVERED, p->name, pmid, NULL, &att,
		       MSG_SENDING);
		break;
	case OUTCOME_PERMANENT:
		p->failed++;
		/* The message was refused, not the provider: it works. */
		breaker_success(d, p);
		finish(d, m, MSG_FAILED, p->name, NULL,
		       detail && *detail ? detail : "refused by the provider",
		       &att, MSG_SENDING);
		break;
	default:
		p->failed++;
		tried_add(m, p->name);
		if (m->attempts >= d->cfg->max_attempts) {
			char *why = xasprintf("max_attempts reached: %s",
					      detail ? detail : "");
			finish(d, m, MSG_FAILED, p->name, NULL, why, &att,
			       MSG_SENDING);
			free(why);
		} else if (expired(d, m)) {
			finish(d, m, MSG_FAILED, p->name, NULL,
			       "expired: message_ttl_s spent", &att,
			       MSG_SENDING);
		} else {
			/* After tried_add: the update carries the new set. */
			update_init(&u, m, MSG_QUEUED);
			u.has_attempt = true;
			u.attempt = att;
			store_update(d->st, &u, NULL, NULL);
			count_move(d, MSG_SENDING, MSG_QUEUED);
			log_info("%s dispatch transient provider=%s attempt=%d "
				 "detail=\"%s\"",
				 m->id, p->name, n, detail ? detail : "");
			ring_push_front(&d->loaded, &m);
		}
		breaker_failure(d, p);
		break;
	}
	refresh(d, p);
	schedule_pump(d);
}

/* --- life cycle ------------------------------------------------------ */

struct dispatcher *
dispatcher_new(struct event_base *base, const struct config *cfg,
	       struct store *st, struct registry *reg)
{
	struct dispatcher *d = xcalloc(1, sizeof(*d));
	const struct scheduler_ops *ops = scheduler_lookup(cfg->scheduler);

	if (ops == NULL)
		fatalx("unknown scheduler %s", cfg->scheduler);
	d->base = base;
	d->cfg = cfg;
	d->st = st;
	d->reg = reg;
	d->sched = scheduler_new(ops, rand64());
	ring_init(&d->ready, sizeof(int64_t));
	ring_init(&d->loaded, sizeof(struct store_message *));
	d->delay_ev = evtimer_new(base, delay_cb, d);
	d->pump_ev = event_new(base, -1, 0, pump_cb, d);
	return d;
}

static void
scan_each(void *arg, int64_t rowid, int64_t next_ms)
{
	struct dispatcher *d = arg;

	if (next_ms > now_ms())
		heap_push(d, next_ms, rowid);
	else
		ring_push_back(&d->ready, &rowid);
}

int
dispatcher_load(struct dispatcher *d)
{
	int rc = store_scan(d->st, scan_each, d, d->counts);

	if (rc != 0)
		return rc;
	arm_delay(d);
	log_info("- dispatch loaded queued=%" PRId64 " delayed=%zu "
		 "delivered=%" PRId64 " failed=%" PRId64,
		 d->counts[MSG_QUEUED], d->nheap, d->counts[MSG_DELIVERED],
		 d->counts[MSG_FAILED]);
	return 0;
}

void
dispatcher_free(struct dispatcher *d)
{
	struct store_message *m;
	size_t i, n;

	if (d == NULL)
		return;
	n = registry_count(d->reg);
	for (i = 0; i < n; i++) {
		struct provider *p = registry_at(d->reg, i);
		while (p->jobs != NULL) {
			struct job *j = p->jobs;
			job_detach(d, j);
			store_message_free(j->m);
			free(j);
		}
	}
	while (ring_pop_front(&d->loaded, &m))
		store_message_free(m);
	ring_cleanup(&d->loaded);
	ring_cleanup(&d->ready);
	free(d->heap);
	free(d->jobs);
	event_free(d->delay_ev);
	event_free(d->pump_ev);
	scheduler_free(d->sched);
	free(d);
}

void
dispatcher_enqueue(struct dispatcher *d, struct store_message *m)
{
	d->counts[MSG_QUEUED]++;
	log_info("%s intake queued bytes=%zu rcpt=%zu", m->id, m->mime_len,
		 m->nrcpt);
	if (d->loaded.len < LOADED_MAX && d->ready.len == 0) {
		ring_push_back(&d->loaded, &m);
	} else {
		ring_push_back(&d->ready, &m->rowid);
		store_message_free(m);
	}
	schedule_pump(d);
}

void
dispatcher_pause(struct dispatcher *d)
{
	d->paused = true;
}

unsigned
dispatcher_in_flight(const struct dispatcher *d)
{
	return (unsigned)d->njobs;
}

void
dispatcher_counts(const struct dispatcher *d, int64_t counts[4])
{
	memcpy(counts, d->counts, sizeof(d->counts));
}

void
dispatcher_queue_sizes(const struct dispatcher *d, uint64_t *ready,
		       uint64_t *loaded, uint64_t *delayed)
{
	*ready = d->ready.len;
	*loaded = d->loaded.len;
	*delayed = d->nheap;
}
