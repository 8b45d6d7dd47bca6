/*
 * The record: each step of a message is made durable before the
 * dispatcher acts on it, and memory follows the disk.
 *
 * A pick reserves a slot at the provider (it counts against
 * max_in_flight) and queues the `sending` write; the JOB is written into
 * the agent's link only in that write's callback, once it is on disk, and
 * only if the provider can still take it (else the message goes back to
 * queued with no attempt: it never left).  So a crash after the JOB left
 * finds the message `sending`, and store_open records the attempt as lost.
 * Requeues, backoffs and final states are writes too: the counts move and
 * the message moves on (to the window, the backoff heap, or out) in the
 * callback, when the write is durable.
 *
 * A write that fails changed nothing on disk.  A `sending` write is simply
 * dropped (the message is queued again, never sent); any other write is
 * kept in the retry list and issued again, in order, after a backoff that
 * doubles from WRITE_RETRY_BASE_MS to WRITE_RETRY_MAX_MS.  While a write
 * waits for its retry the pump hands out nothing (dispatcher.c), so no
 * later write of the same message can overtake it.  A write whose row is
 * damaged (STORE_EDAMAGED) can never succeed while running: after
 * DAMAGED_TRIES its message is let go from memory (let_go) and left for
 * the next start's repair, so one bad row no longer stops all delivery.
 * A write refused
 * because the store is closing is dropped: the disk keeps what it had,
 * and the next start repairs `sending` (store.h, store_open).
 *
 * Every write carries its context in the job (dispatch_int.h), with the
 * agent's strings copied into fixed buffers, so the hot path allocates
 * one job per message and a retry allocates nothing.
 */
#include "common/config.h"
#include "common/envelope.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/dispatch_int.h"
#include "dispatch/events.h"
#include "dispatch/outbox.h"
#include "dispatch/dispatcher.h"
#include "common/buf.h"
#include "dispatch/registry.h"
#include "link/link.h"
#include "store/store.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WRITE_RETRY_BASE_MS 100
#define WRITE_RETRY_MAX_MS 10000
/*
 * Tries of a write whose row is damaged (STORE_EDAMAGED) before its
 * message is let go (damaged_row): a few, in case SQLite's answer was
 * not the disk's last word, and few enough that the pump is held for
 * WRITE_RETRY_BASE_MS * (2^DAMAGED_TRIES - 1) at most.
 */
#define DAMAGED_TRIES 3
#define DAMAGED_LOG_MS 10000

static void write_issue(struct dispatcher *d, struct job *j);

/* --- bookkeeping ----------------------------------------------------- */

bool
record__tried_contains(const char *tried, const char *name)
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

	if (record__tried_contains(m->tried, name))
		return;
	if (m->tried == NULL || m->tried[0] == '\0')
		t = xstrdup(name);
	else
		t = xasprintf("%s,%s", m->tried, name);
	free(m->tried);
	m->tried = t;
}

void
record__count_move(struct dispatcher *d, int from, int to)
{
	if (from >= 0)
		d->counts[from]--;
	if (to >= 0)
		d->counts[to]++;
}

/* --- jobs ------------------------------------------------------------ */

static struct job *
job_new(struct dispatcher *d, struct store_message *m)
{
	struct job *j = xmalloc(sizeof(*j));

	/* The string buffers (most of the job) need only be empty. */
	memset(j, 0, offsetof(struct job, pmid));
	j->pmid[0] = j->detail[0] = j->error[0] = '\0';
	j->d = d;
	j->m = m;
	d->nheld++;
	return j;
}

void
record__job_free(struct dispatcher *d, struct job *j)
{
	d->nheld--;
	free(j);
}

/* Takes a slot at p: the job counts against p's max_in_flight and its
 * message against max_in_flight_bytes. */
static void
job_reserve(struct dispatcher *d, struct job *j, struct provider *p)
{
	j->p = p;
	j->pname = p->name;
	j->pprev = NULL;
	j->pnext = p->jobs;
	if (p->jobs != NULL)
		p->jobs->pprev = j;
	p->jobs = j;
	p->se.in_flight++;
	j->bytes = j->m->mime_len;
	p->bytes_in_flight += j->bytes;
}

static void
timeouts_remove(struct dispatcher *d, struct job *j)
{
	if (j->tprev != NULL)
		j->tprev->tnext = j->tnext;
	else
		d->thead = j->tnext;
	if (j->tnext != NULL)
		j->tnext->tprev = j->tprev;
	else
		d->ttail = j->tprev;
	j->tprev = j->tnext = NULL;
}

/*
 * Gives p's slot back and takes j out of the job table and the timeout
 * list if it was sent.  The caller refreshes p.
 */
void
record__release(struct dispatcher *d, struct job *j)
{
	struct provider *p = j->p;

	if (p == NULL)
		return;
	if (j->stage == JOB_SENT) {
		jobs__remove(&d->jobs, j);
		timeouts_remove(d, j);
	}
	if (j->pprev != NULL)
		j->pprev->pnext = j->pnext;
	else
		p->jobs = j->pnext;
	if (j->pnext != NULL)
		j->pnext->pprev = j->pprev;
	j->pprev = j->pnext = NULL;
	p->se.in_flight--;
	p->bytes_in_flight -= j->bytes;
	j->p = NULL;
}

void
record__arm_timeout(struct dispatcher *d)
{
	if (d->thead != NULL && !evtimer_pending(d->timeout_ev, NULL))
		dispatch__timer_start(d->timeout_ev,
				      d->thead->deadline_ms - mono_ms());
}

/* Sent: findable by RESULT, and on the clock. */
static void
job_sent(struct dispatcher *d, struct job *j)
{
	j->stage = JOB_SENT;
	jobs__insert(&d->jobs, j);
	j->deadline_ms = mono_ms() + (int64_t)d->cfg->job_timeout_s * 1000;
	j->tnext = NULL;
	j->tprev = d->ttail;
	if (d->ttail != NULL)
		d->ttail->tnext = j;
	else
		d->thead = j;
	d->ttail = j;
	record__arm_timeout(d);
}

/* --- writes and their results ---------------------------------------- */

static const char *
write_name(int write)
{
	switch (write) {
	case WRITE_SENDING:
		return "sending";
	case WRITE_REQUEUE:
		return "requeue";
	case WRITE_BACKOFF:
		return "backoff";
	default:
		return "final";
	}
}

/* The attempts row j's write adds; detail is copied (capped). */
static void
set_attempt(struct job *j, int outcome, const char *detail)
{
	j->has_attempt = true;
	j->outcome = outcome;
	j->at_ms = now_ms();
	snprintf(j->detail, sizeof(j->detail), "%s", detail ? detail : "");
}

/* j's next write: m goes to status, counted in from until it is durable. */
static void
job_write(struct job *j, int write, int status, int from)
{
	j->write = write;
	j->status = status;
	j->from = from;
}

/*
 * How long the pump stays held after a failed write: doubling from
 * WRITE_RETRY_BASE_MS with each failure in a row, capped.  The failed
 * writes are issued again when it runs out.
 */
void
record__hold(struct dispatcher *d)
{
	int64_t delay = WRITE_RETRY_BASE_MS;
	int i;

	for (i = 1; i < d->write_failures && delay < WRITE_RETRY_MAX_MS; i++)
		delay *= 2;
	if (delay > WRITE_RETRY_MAX_MS)
		delay = WRITE_RETRY_MAX_MS;
	if (!evtimer_pending(d->retry_ev, NULL))
		dispatch__timer_start(d->retry_ev, delay);
}

/*
 * j's write cannot succeed while running: its row is on a damaged page
 * (STORE_EDAMAGED, DAMAGED_TRIES times, or once for a `sending` write,
 * which would only come back through the pump to fail again).  Held in
 * the retry list it held the pump, and so every other message, until a
 * restart.  Its message is let go from memory: its slot and job are
 * released, it leaves the counts (as the start-up scan leaves such rows
 * out) and is counted by store_unreadable_rows; nothing is published,
 * since nothing was recorded.  The disk keeps what it had, and the next
 * start finds the row: damaged, it is moved out with its table's damage
 * (store.md, "Damaged pages"); readable (a write that failed on a
 * neighbour), it is taken up again, a `sending` one with a lost attempt.
 * A `delivered` that could not be recorded is a possible duplicate: its
 * line is never rate-limited.
 */
static void
let_go(struct dispatcher *d, struct job *j)
{
	struct provider *p = j->p;
	const struct store_message *m = j->m;
	/* An unreadable row's id may be unknown (store_load). */
	const char *id = m->id[0] != '\0' ? m->id : "-";

	if (j->retried && --d->nretry == 0)
		d->write_failures = 0;
	j->retried = false;
	record__release(d, j);
	if (p != NULL)
		dispatch__refresh(d, p);
	record__count_move(d, j->from, -1);
	store_unreadable_add(d->st);
	if (j->write == WRITE_FINAL && j->status == MSG_DELIVERED)
		log_warnx(
		    "%s dispatch damaged_row write=final status=delivered "
		    "provider=%s rowid=%" PRId64 " tries=%d "
		    "duplicate_possible=yes: delivered but not "
		    "recorded; left for the next start",
		    id, j->pname ? j->pname : "-", m->rowid, j->damaged);
	else
		log_warnx_rl(&d->damaged_rl, DAMAGED_LOG_MS,
			     "%s dispatch damaged_row write=%s status=%s "
			     "rowid=%" PRId64 " tries=%d: its row cannot be "
			     "written; left for the next start",
			     id, write_name(j->write),
			     msg_status_name(j->status), m->rowid, j->damaged);
	store_message_free(j->m);
	record__job_free(d, j);
	dispatch__schedule_pump(d);
}

/* Nothing of j's write is on disk; the store keeps what it had. */
static void
write_failed(struct dispatcher *d, struct job *j, int err)
{
	struct provider *p = j->p;

	/*
	 * A damaged row says nothing of the disk: its failures do not
	 * lengthen the backoff, which doubles per failure (the rows of a
	 * page failing at once took it to WRITE_RETRY_MAX_MS, and their
	 * three tries to half a minute).
	 */
	if (err != STORE_EDAMAGED)
		d->write_failures++;
	else if (++j->damaged >= DAMAGED_TRIES || j->write == WRITE_SENDING) {
		let_go(d, j);
		return;
	}
	log_warnx("%s dispatch store_write_failed write=%s failures=%d "
		  "err=\"%s\"",
		  j->m->id, write_name(j->write), d->write_failures,
		  store_strerror(err));
	if (j->write == WRITE_SENDING) {
		/* Still queued on disk and never sent: simply queued again. */
		record__release(d, j);
		if (p != NULL)
			dispatch__refresh(d, p);
		ring_push_front(&d->loaded, &j->m);
		record__job_free(d, j);
	} else {
		/* Must become durable, in order: the retry list. */
		if (!j->retried)
			d->nretry++;
		j->retried = true;
		j->stage = JOB_RETRY;
		j->tnext = NULL;
		if (d->rtail != NULL)
			d->rtail->tnext = j;
		else
			d->rhead = j;
		d->rtail = j;
	}
	record__hold(d);
}

void
record__retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dispatcher *d = arg;
	struct job *j = d->rhead, *next;

	d->rhead = d->rtail = NULL;
	for (; j != NULL; j = next) {
		next = j->tnext;
		j->tnext = NULL;
		log_info("%s dispatch store_write_retry write=%s", j->m->id,
			 write_name(j->write));
		write_issue(d, j);
	}
	dispatch__schedule_pump(d);
}

/* The store is closing: the disk keeps what it has (see store_open). */
static void
write_dropped(struct dispatcher *d, struct job *j)
{
	log_warnx("%s dispatch store_write_dropped write=%s: store closing",
		  j->m->id, write_name(j->write));
	if (j->retried)
		d->nretry--;
	record__release(d, j);
	store_message_free(j->m);
	record__job_free(d, j);
}

/* The `sending` write is durable, but the JOB must not go out. */
static void
unsend(struct dispatcher *d, struct job *j, const char *why)
{
	struct provider *p = j->p;

	record__release(d, j);
	if (p != NULL)
		dispatch__refresh(d, p);
	log_info("%s dispatch unsent provider=%s reason=\"%s\"", j->m->id,
		 j->pname, why);
	/* It never left: back to queued with no attempt. */
	j->has_attempt = false;
	job_write(j, WRITE_REQUEUE, MSG_QUEUED, MSG_SENDING);
	write_issue(d, j);
}

/* The attempt is on record: now, and only now, the JOB may leave. */
static void
sending_durable(struct dispatcher *d, struct job *j)
{
	struct provider *p = j->p;
	struct store_message *m = j->m;
	int rc;

	if (d->paused || p == NULL || !dispatch__usable(p) ||
	    !dispatch__fits(p, m)) {
		/* Its limit may have dropped meanwhile (a too_large), or
		 * it refused SMTPUTF8 (needs_smtputf8). */
		unsend(d, j,
		       d->paused   ? "dispatch paused"
		       : p == NULL ? "provider went down"
				   : "provider no longer takes messages");
		return;
	}
	rc = link_encode_job(link_conn_output(p->conn), j->id, m->id,
			     m->mail_from, (const char *const *)m->rcpt,
			     m->nrcpt, m->mime, m->mime_len);
	if (rc != 0) {
		/* Our own message does not fit the protocol: fail it. */
		log_warnx("%s dispatch cannot encode job: %s", m->id,
			  link_strerror(rc));
		record__release(d, j);
		dispatch__refresh(d, p);
		snprintf(j->error, sizeof(j->error),
			 "message cannot be encoded for the agent");
		job_write(j, WRITE_FINAL, MSG_FAILED, MSG_SENDING);
		write_issue(d, j);
		return;
	}
	job_sent(d, j);
	log_info("%s dispatch sending provider=%s attempt=%d job=%" PRIu64,
		 m->id, p->name, j->n, j->id);
}

/*
 * The provider's id as a quoted log field: the agent's bytes have no
 * controls (the link refuses them), and a '"' would end the quotes early.
 */
static const char *
pmid_text(const char *pmid, char *buf, size_t bufsz)
{
	char *q;

	(void)log_sanitize(pmid, strlen(pmid), buf, bufsz);
	for (q = buf; (q = strchr(q, '"')) != NULL; q++)
		*q = '\'';
	return buf;
}

static void
write_durable(struct dispatcher *d, struct job *j)
{
	struct store_message *m = j->m;
	char pmid[LINK_PMID_MAX + 4];

	switch (j->write) {
	case WRITE_SENDING:
		sending_durable(d, j);
		return;
	case WRITE_REQUEUE:
		ring_push_front(&d->loaded, &m);
		break;
	case WRITE_BACKOFF:
		delay__push(&d->heap, m->next_ms, m->rowid);
		dispatch__arm_delay(d);
		store_message_free(m);
		break;
	default:
		if (j->status == MSG_DELIVERED)
			log_info(
			    "%s dispatch delivered provider=%s attempts=%d "
			    "pmid=\"%s\"",
			    m->id, j->pname ? j->pname : "-", m->attempts,
			    pmid_text(j->pmid, pmid, sizeof(pmid)));
		else
			log_info("%s dispatch failed attempts=%d error=\"%s\"",
				 m->id, m->attempts, j->error);
		store_message_free(m);
		break;
	}
	record__job_free(d, j);
}

/* The /metrics counters of a durable write: what is on disk, no more. */
static void
count_durable(struct dispatcher *d, const struct job *j)
{
	struct provider *p;

	if (j->pname == NULL)
		return;
	p = registry_find(d->reg, j->pname);
	if (p == NULL)
		return;
	if (j->has_attempt && j->outcome >= 0 && j->outcome <= OUTCOME_MAX)
		p->attempts_by_outcome[j->outcome]++;
	if (j->write == WRITE_FINAL && j->status == MSG_DELIVERED) {
		p->msgs_delivered++;
		hist_observe(&p->delivery_hist, now_ms() - j->m->created_ms);
	} else if (j->write == WRITE_FINAL && j->status == MSG_FAILED)
		p->msgs_failed++;
}

/* The event of j's final outcome (delivered or failed), into r. */
static void
final_rec(const struct job *j, struct ev_rec *r)
{
	bool delivered = j->status == MSG_DELIVERED;

	dispatch__message_rec(r, delivered ? EV_MSG_DELIVERED : EV_MSG_FAILED,
			      j->m->id, j->pname, -1, j->m->attempts,
			      delivered ? NULL : j->error,
			      delivered ? j->pmid : NULL);
}

/* The events of a durable write: its attempt, then a final outcome. */
static void
publish_durable(struct dispatcher *d, const struct job *j)
{
	struct ev_rec r;

	if (d->events == NULL)
		return;
	if (j->has_attempt)
		dispatch__publish_message(d, EV_MSG_ATTEMPT, j->m->id, j->pname,
					  j->outcome, j->n, j->detail, NULL);
	if (j->write == WRITE_FINAL &&
	    (j->status == MSG_DELIVERED || j->status == MSG_FAILED)) {
		final_rec(j, &r);
		events_publish(d->events, &r);
	}
}

/* j's write is on disk: memory follows it, the count moves now, not
 * before, and the message goes on. */
static void
write_done(struct dispatcher *d, struct job *j)
{
	record__count_move(d, j->from, j->status);
	count_durable(d, j);
	publish_durable(d, j);
	write_durable(d, j);
	dispatch__schedule_pump(d);
}

static void
write_cb(void *arg, int err)
{
	struct job *j = arg;
	struct dispatcher *d = j->d;

	if (err == -ESHUTDOWN) {
		write_dropped(d, j);
		return;
	}
	if (err != 0) {
		write_failed(d, j, err);
		return;
	}
	if (j->retried) {
		j->retried = false;
		if (--d->nretry == 0)
			log_info("- dispatch store writes durable again");
	}
	/*
	 * The backoff falls back only once every failed write is durable: a
	 * write that keeps failing while others pass is retried less and
	 * less often, not every WRITE_RETRY_BASE_MS for ever.
	 */
	if (d->nretry == 0)
		d->write_failures = 0;
	write_done(d, j);
}

void
dispatcher_set_webhooks(struct dispatcher *d, bool on)
{
	d->webhooks = on;
}

/*
 * The webhook of a final outcome, into wh (empty when webhooks are off or
 * the body does not fit: then the outcome is written without it, logged,
 * rather than never).  A retried write makes a new one (a new
 * webhook_id): the failed write left nothing on disk.
 */
static void
final_webhook(struct dispatcher *d, const struct job *j, struct buf *wh)
{
	struct ev_rec r;

	if (!d->webhooks || j->write != WRITE_FINAL)
		return;
	final_rec(j, &r);
	r.at_ms = now_ms();
	if (outbox_body(&r, wh) != 0)
		log_warnx("%s dispatch webhook_too_big status=%s", j->m->id,
			  msg_status_name(j->status));
}

static void
write_issue(struct dispatcher *d, struct job *j)
{
	struct store_update u;
	const struct store_message *m = j->m;
	struct buf wh;

	buf_init(&wh, STORE_OUTBOX_BODY_MAX);
	final_webhook(d, j, &wh);
	memset(&u, 0, sizeof(u));
	u.rowid = m->rowid;
	u.status = j->status;
	u.next_ms = m->next_ms;
	u.attempts = m->attempts;
	u.round = m->round;
	u.tried = m->tried ? m->tried : "";
	if (j->status != MSG_QUEUED)
		u.provider = j->pname;
	if (j->status == MSG_DELIVERED && j->pmid[0] != '\0')
		u.provider_message_id = j->pmid;
	if (j->status == MSG_FAILED)
		u.error = j->error;
	if (j->has_attempt) {
		u.has_attempt = true;
		/*
		 * Numbered by the store (the next free n): a throttled try
		 * is on record but does not count in m->attempts, so j->n
		 * may repeat.
		 */
		u.attempt.n = 0;
		/* Borrowed: store_update copies the strings. */
		u.attempt.provider = (char *)(uintptr_t)j->pname;
		u.attempt.at_ms = j->at_ms;
		u.attempt.outcome = j->outcome;
		u.attempt.detail = j->detail[0] != '\0' ? j->detail : NULL;
	}
	/* Copied by store_update, like the other strings. */
	if (wh.len > 0)
		u.outbox = wh.p;
	/* A final outcome holds no slot and no client: only memory waits. */
	u.lazy = j->write == WRITE_FINAL;
	if (j->write != WRITE_SENDING)
		j->stage = JOB_WRITING;
	store_update(d->st, &u, write_cb, j);
	buf_cleanup(&wh);
}

/* --- the steps of a message ------------------------------------------ */

/* A new round after every up provider refused m: wait, then retry. */
void
record__backoff(struct dispatcher *d, struct store_message *m)
{
	struct job *j = job_new(d, m);
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
	log_info("%s dispatch backoff round=%d delay_ms=%" PRId64, m->id,
		 m->round, delay);
	job_write(j, WRITE_BACKOFF, MSG_QUEUED, MSG_QUEUED);
	write_issue(d, j);
}

void
record__fail_expired(struct dispatcher *d, struct store_message *m)
{
	struct job *j = job_new(d, m);

	snprintf(j->error, sizeof(j->error), "expired: message_ttl_s spent");
	job_write(j, WRITE_FINAL, MSG_FAILED, MSG_QUEUED);
	write_issue(d, j);
}

/* The error of a message no provider known can carry (enum unfit). */
static void
unfit_error(struct job *j, int why, uint64_t largest)
{
	if (why == UNFIT_UTF8)
		snprintf(j->error, sizeof(j->error),
			 "no provider takes its non-ASCII address: every one "
			 "it fits lacks SMTPUTF8");
	else
		snprintf(j->error, sizeof(j->error),
			 "too large for every provider: %zu bytes, largest "
			 "limit %" PRIu64,
			 j->m->mime_len, largest);
}

void
record__fail_unfit(struct dispatcher *d, struct store_message *m)
{
	struct job *j = job_new(d, m);
	uint64_t largest;
	int why = dispatch__unfit(d, m, &largest);

	unfit_error(j, why, largest);
	job_write(j, WRITE_FINAL, MSG_FAILED, MSG_QUEUED);
	write_issue(d, j);
}

/*
 * A queued row the store could not read (store_load): failed like any
 * other final outcome, by this one path, so that its status and its
 * webhook are written in one transaction and message.failed is published
 * once they are durable.  No provider is charged with it.  The update
 * writes the counters the store could read back (store.h), so they stay.
 */
void
record__fail_corrupt(struct dispatcher *d, struct store_message *m)
{
	struct job *j = job_new(d, m);

	snprintf(j->error, sizeof(j->error), "%s",
		 m->error != NULL ? m->error : "corrupt record");
	job_write(j, WRITE_FINAL, MSG_FAILED, MSG_QUEUED);
	write_issue(d, j);
}

/*
 * After a transient failure or a loss at j's provider: offered again (the
 * pump sends it elsewhere or ends the round), or failed once max_attempts
 * attempts were made.  m->attempts already counts this one.
 */
static void
retry_or_fail(struct dispatcher *d, struct job *j, int outcome,
	      const char *detail)
{
	struct store_message *m = j->m;

	set_attempt(j, outcome, detail);
	tried_add(m, j->pname);
	if (j->trial) {
		/*
		 * The breaker's trial failed: the provider is still broken,
		 * which is what the trial asked.  The try is on record, but
		 * free, as a throttled one is: while every provider is down
		 * the trials are the only attempts made, and counted they
		 * failed the few messages queued (max_attempts reached)
		 * after a few cool-downs, long before message_ttl_s.
		 */
		m->attempts = j->n - 1;
		log_info("%s dispatch trial_failed provider=%s attempt=free",
			 m->id, j->pname);
	}
	if (m->attempts >= d->cfg->max_attempts) {
		snprintf(j->error, sizeof(j->error),
			 "max_attempts reached: %s at %s: %s",
			 outcome_name(outcome), j->pname, j->detail);
		job_write(j, WRITE_FINAL, MSG_FAILED, MSG_SENDING);
	} else {
		job_write(j, WRITE_REQUEUE, MSG_QUEUED, MSG_SENDING);
	}
	write_issue(d, j);
}

/* A sent job that will not be answered: its attempt is on record as lost. */
void
record__lost(struct dispatcher *d, struct job *j, const char *why)
{
	struct provider *p = j->p;

	record__release(d, j);
	j->m->attempts = j->n;
	p->lost++;
	log_info("%s dispatch lost provider=%s attempt=%d reason=\"%s\"",
		 j->m->id, p->name, j->n, why);
	retry_or_fail(d, j, OUTCOME_LOST, why);
}

/* A job for m's next attempt at p, holding p's slot; its write: sending. */
static struct job *
job_reserved(struct dispatcher *d, struct store_message *m, struct provider *p,
	     int from)
{
	struct job *j = job_new(d, m);

	j->id = ++d->next_job_id;
	j->n = m->attempts + 1;
	j->stage = JOB_RESERVED;
	j->trial = p->breaker == BREAKER_HALF_OPEN;
	job_reserve(d, j, p);
	limits__take(p);
	job_write(j, WRITE_SENDING, MSG_SENDING, from);
	return j;
}

/* Reserves p's slot and makes the attempt durable; the JOB waits. */
void
record__send(struct dispatcher *d, struct store_message *m, struct provider *p)
{
	struct job *j = job_reserved(d, m, p, MSG_QUEUED);

	write_issue(d, j);
	dispatch__refresh(d, p);
}

/*
 * The intake's fast path: m is new and not stored yet, and p is free with
 * nothing waiting before m (dispatcher_claim checked).  The slot is
 * reserved as record__send reserves it, but the `sending` write is m's own
 * insert: m goes to the store as `sending` at p.  Until the insert's
 * callback the job does not touch m (the store has it).
 */
struct job *
record__claim(struct dispatcher *d, struct store_message *m, struct provider *p)
{
	/* Counted nowhere until the insert is durable. */
	struct job *j = job_reserved(d, m, p, -1);

	dispatch__refresh(d, p);
	m->status = MSG_SENDING;
	free(m->provider);
	m->provider = xstrdup(p->name);
	/* The store has m until the callback: nothing here may reach it. */
	j->m = NULL;
	return j;
}

/* The insert is durable: what a `sending` write's callback does. */
void
record__claim_durable(struct dispatcher *d, struct job *j,
		      struct store_message *m)
{
	j->m = m;
	write_done(d, j);
}

/* Nothing was stored (a failed insert, a duplicate): the slot goes back. */
void
record__claim_cancel(struct dispatcher *d, struct job *j)
{
	struct provider *p = j->p;

	record__release(d, j);
	if (p != NULL)
		dispatch__refresh(d, p);
	record__job_free(d, j);
	dispatch__schedule_pump(d);
}

/* A verdict from the agent on j's message; j is released. */
/*
 * Throttled: the provider asked us to slow down, the message did nothing
 * wrong.  The try is on record but free (m->attempts as before it), and
 * the message goes elsewhere at once (tried here this round).
 */
static void
requeue_throttled(struct dispatcher *d, struct job *j, const char *detail)
{
	struct store_message *m = j->m;

	m->attempts = j->n - 1;
	set_attempt(j, OUTCOME_THROTTLED, detail);
	tried_add(m, j->pname);
	job_write(j, WRITE_REQUEUE, MSG_QUEUED, MSG_SENDING);
	write_issue(d, j);
}

/*
 * After a free refusal of what p cannot carry: the message goes to a
 * provider that can; when no provider known can, it fails now, every
 * refusal on record.
 */
static void
requeue_or_fail_unfit(struct dispatcher *d, struct job *j)
{
	uint64_t largest;
	int why = dispatch__unfit(d, j->m, &largest);

	if (why == UNFIT_NONE) {
		job_write(j, WRITE_REQUEUE, MSG_QUEUED, MSG_SENDING);
	} else {
		unfit_error(j, why, largest);
		job_write(j, WRITE_FINAL, MSG_FAILED, MSG_SENDING);
	}
	write_issue(d, j);
}

/*
 * Too large: the provider's limit, not the message's fault.  The try is
 * on record but free (as a throttled one), and p's limit drops below this
 * size for an hour (dispatch__provider_too_large: so it is not offered
 * the same size again meanwhile).
 */
static void
requeue_too_large(struct dispatcher *d, struct job *j, struct provider *p)
{
	struct store_message *m = j->m;

	m->attempts = j->n - 1;
	tried_add(m, j->pname);
	dispatch__provider_too_large(d, p, m->mime_len);
	log_info("%s dispatch too_large provider=%s bytes=%zu limit=%" PRIu64
		 " detail=\"%s\"",
		 m->id, p->name, m->mime_len, p->max_message_bytes, j->detail);
	requeue_or_fail_unfit(d, j);
}

/*
 * Needs SMTPUTF8: a non-ASCII address at a smarthost that does not offer
 * it (refused before MAIL, nothing sent).  Free like too_large, and
 * messages that need SMTPUTF8 stay away from p for an hour
 * (dispatch__provider_no_utf8).  An agent that says so of an all-ASCII
 * envelope is wrong about it: that one is answered as transient.
 */
static void
requeue_no_utf8(struct dispatcher *d, struct job *j, struct provider *p)
{
	struct store_message *m = j->m;

	m->attempts = j->n - 1;
	tried_add(m, j->pname);
	dispatch__provider_no_utf8(d, p);
	log_info("%s dispatch needs_smtputf8 provider=%s detail=\"%s\"", m->id,
		 p->name, j->detail);
	requeue_or_fail_unfit(d, j);
}

void
record__result(struct dispatcher *d, struct job *j, struct provider *p,
	       int outcome, const char *pmid, const char *detail,
	       uint32_t retry_after_ms)
{
	const char *det = detail ? detail : "";

	/* Sent at deadline_ms - job_timeout: the send latency for free. */
	hist_observe(&p->send_hist,
		     mono_ms() - (j->deadline_ms -
				  (int64_t)d->cfg->job_timeout_s * 1000));
	set_attempt(j, outcome, detail);
	switch (outcome) {
	case OUTCOME_DELIVERED:
		p->delivered++;
		p->throttle_ms = 0;
		breaker__success(p, d->cfg->breaker_cooldown_ms);
		snprintf(j->pmid, sizeof(j->pmid), "%s", pmid ? pmid : "");
		job_write(j, WRITE_FINAL, MSG_DELIVERED, MSG_SENDING);
		write_issue(d, j);
		break;
	case OUTCOME_PERMANENT:
		p->failed++;
		/* The message was refused, not the provider: it works. */
		breaker__success(p, d->cfg->breaker_cooldown_ms);
		snprintf(j->error, sizeof(j->error), "%s",
			 *det ? det : "refused by the provider");
		job_write(j, WRITE_FINAL, MSG_FAILED, MSG_SENDING);
		write_issue(d, j);
		break;
	case OUTCOME_THROTTLED:
		/* Not a failure: the breaker does not count it. */
		p->throttled++;
		log_info("%s dispatch throttled provider=%s retry_after_ms=%u "
			 "detail=\"%s\"",
			 j->m->id, p->name, retry_after_ms, det);
		requeue_throttled(d, j, detail);
		dispatch__provider_throttled(d, p, retry_after_ms, det);
		break;
	case OUTCOME_TOO_LARGE:
		/* The provider answered as it should: it works. */
		breaker__success(p, d->cfg->breaker_cooldown_ms);
		requeue_too_large(d, j, p);
		break;
	case OUTCOME_ACCOUNT:
		p->failed++;
		log_info("%s dispatch account provider=%s attempt=%d "
			 "detail=\"%s\"",
			 j->m->id, p->name, j->n, det);
		retry_or_fail(d, j, OUTCOME_ACCOUNT, detail);
		dispatch__provider_account(d, p, det);
		break;
	case OUTCOME_AMBIGUOUS:
		/* Routed like transient; the attempt shows the duplicate. */
		p->failed++;
		log_info("%s dispatch ambiguous provider=%s attempt=%d "
			 "duplicate_possible=yes detail=\"%s\"",
			 j->m->id, p->name, j->n, det);
		retry_or_fail(d, j, OUTCOME_AMBIGUOUS, detail);
		dispatch__provider_failure(d, p);
		break;
	case OUTCOME_NEEDS_SMTPUTF8:
		if (dispatch__needs_utf8(p, j->m)) {
			/* As for too_large: it works. */
			breaker__success(p, d->cfg->breaker_cooldown_ms);
			requeue_no_utf8(d, j, p);
			break;
		}
		/* The agent is wrong: its failure, not the message's. */
		/* FALLTHROUGH */
	default:
		p->failed++;
		log_info("%s dispatch transient provider=%s attempt=%d "
			 "detail=\"%s\"",
			 j->m->id, p->name, j->n, det);
		retry_or_fail(d, j, OUTCOME_TRANSIENT, detail);
		dispatch__provider_failure(d, p);
		break;
	}
}
