/*
 * The smtp connector: hands each message to a smarthost (smtp:// with
 * STARTTLS required, smtps:// for implicit TLS, or plain smtp:// when tls
 * = none), the MIME sent byte for byte (dot-stuffed).  Certificates are
 * always verified, against tls_ca_file when given.
 *
 * Everything runs on the agent's event loop but the 7-bit conversion
 * (below), which has one worker thread.  libcurl opens
 * each session (TCP, TLS, greeting, EHLO, STARTTLS, AUTH) non-blocking on
 * a curl_loop, with CURLOPT_CONNECT_ONLY; the transaction (MAIL, RCPT,
 * DATA, the body, the end of data) is ours, over curl_easy_send() and
 * curl_easy_recv() with libevent watching the socket.  When the
 * smarthost's EHLO answer offers PIPELINING (RFC 2920), MAIL, every RCPT
 * and DATA go out in one write and their replies are read in order; else
 * each command waits for its reply.  curl's own SMTP
 * transfer cannot run on the loop: after the data and at QUIT it waits for
 * the reply inside the multi interface (docs/internals/agent.md), which
 * held every other transfer, the link and the timers.  A connect-only
 * connection is closed without QUIT (curl treats it as dead), so closing
 * never waits either.  Each session has its own curl_loop: curl sees a
 * connect-only connection as idle, and another transfer's connect in the
 * same multi could prune it as dead while a reply sits unread on it.
 *
 * The dialogue is watched (commands out, replies in, never credentials)
 * by smtp_dialogue, which records each recipient's RCPT answer, the DATA
 * answer and the final reply and classifies the outcome from them
 * (docs/providers.md has the table).  A refused recipient does not stop
 * the others (what CURLOPT_MAIL_RCPT_ALLOWFAILS did); the body goes out
 * when at least one was accepted and DATA got 354 (lock-step, DATA is not
 * sent without one; pipelined, a 354 with none ends the data with a dot
 * alone, RFC 2920 3.1).  On a smarthost that does not offer SMTPUTF8 a
 * non-ASCII domain goes as its A-labels (common/envelope.h), and a message
 * with an address of no ASCII form is refused before MAIL (needs_smtputf8:
 * the server offers it to another provider).
 *
 * A message with 8-bit bytes for a smarthost without 8BITMIME is made
 * 7-bit first, once per job, off the loop (GMime takes about 0.5 s for a
 * 25 MiB message): the job lets its session go idle meanwhile and starts
 * again when the form is made.  A job is never ended or freed while its
 * conversion runs, since the worker reads the agent's message: a deadline
 * passing meanwhile ends it when the conversion does, and close() waits
 * for the conversion under way (queued ones are skipped).
 *
 * Sessions are kept between messages: the next message on an idle session
 * starts at MAIL FROM.  As many sessions run at once as messages are in
 * flight (the server grants at most max_in_flight); at most max_in_flight
 * idle ones are kept, each closed by its timer once idle idle_timeout_ms,
 * and one the smarthost speaks on or closes while idle is dropped.  A failed
 * transaction's session is dropped.  A reused session that fails at MAIL
 * (no reply, or 421) before anything of the message was accepted is
 * replaced: the message is tried once more on a fresh session, so a stale
 * connection never becomes an outcome.  close() drops every session and
 * every job under way without calling done().
 *
 * Bounds: a reply line is read up to SMTP_DIALOGUE_LINE_MAX bytes (the rest of
 * an overlong line is skipped), the whole send (session and transaction) to
 * request_timeout_ms, the session's connect to connect_timeout_ms.  The
 * keys and their checks are in conn_smtp_config.c; the commands, the
 * reading of the replies and the stuffing, which do no I/O, in
 * smtp_dialogue.c.
 */
#include "agent/conn_smtp.h"
#include "agent/connector.h"
#include "agent/curl_loop.h"
#include "agent/mime_7bit.h"
#include "agent/smtp_dialogue.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/log.h"
#include "common/util.h"
#include "common/workq.h"
#include "link/link.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <gmime/gmime.h>

/* The output buffer: commands, or a part of the body. */
#define SMTP_OUT_MAX 16384

/* Every command of a transaction fits an empty buffer. */
_Static_assert(LINK_ADDR_MAX + 96 < SMTP_OUT_MAX, "SMTP_OUT_MAX too small");

struct smtp_conn;

struct smtp {
	char *name; /* the provider's */
	char *url;  /* smtp[s]://host:port/helo */
	char *username, *password, *ca_file;
	enum smtp_tls tls;
	long connect_ms, request_ms;
	struct timeval idle_tv; /* idle_timeout_ms */
	size_t max_idle;        /* idle sessions kept: max_in_flight */
	struct event_base *base;
	connector_done_cb done;
	void *arg;
	bool closing;
	int failures;                 /* consecutive failed sends */
	LIST_HEAD(, smtp_conn) conns; /* every session, idle ones first */
	size_t nidle;
	LIST_HEAD(, smtp_job) jobs; /* every job from send() to done() */
	struct workq *wq;           /* the 7-bit conversions, off the loop */
};

/*
 * One thread: a conversion is CPU work (about 0.5 s for a 25 MiB message,
 * bench/RESULTS.md section 9), and one is enough to keep the loop free
 * without letting one agent's conversions take every core.
 */
#define SMTP_CONVERT_THREADS 1

int (*conn_smtp__convert)(const uint8_t *in, size_t len, uint8_t **out,
			  size_t *outlen) = mime_7bit;

/* Where a job's 7-bit form is. */
enum smtp_conv {
	CONV_NONE,    /* not needed so far */
	CONV_PENDING, /* on the worker, which reads job->mime, writes body7 */
	CONV_DONE,    /* made (body7), or the message goes as it is */
};

/* Where a session is; each change goes through conn_step(). */
enum smtp_step {
	STEP_CONNECT, /* curl: TCP, TLS, greeting, EHLO, STARTTLS, AUTH */
	STEP_IDLE,    /* no message; watched for the smarthost closing it */
	STEP_MAIL,    /* MAIL FROM sent, its reply awaited */
	STEP_RCPT,    /* RCPT TO for recipient rcpt_i sent, its reply awaited */
	STEP_DATA,    /* DATA sent, 354 awaited */
	STEP_BODY,    /* the message going out, then the end of data */
	STEP_DOT,     /* all sent, the verdict awaited */
};

/* One message; lives from send() to done() (or close()). */
struct smtp_job {
	struct smtp *s;
	struct connector_job *job;
	struct smtp_conn *c;    /* the session carrying it, or NULL */
	struct event *kick;     /* starts it on the loop's next turn */
	struct event *deadline; /* request_timeout_ms from send() */
	bool retried;           /* once on a fresh session after a stale one */
	bool body_eof;          /* the whole message and its end went out */
	bool utf8_unoffered;    /* needs SMTPUTF8, which is not offered */
	/*
	 * The envelope the commands say: the job's, or on a session without
	 * SMTPUTF8 ajob, the job with its ASCII form (afrom, arcpt: IDN
	 * domains as A-labels), made once per job.
	 */
	const struct connector_job *env;
	struct connector_job ajob;
	char *afrom;
	char **arcpt;
	bool ascii_made;
	uint64_t size_max; /* over the session's SIZE: nothing sent */
	/*
	 * What goes after DATA: the job's message, or body7, its 7-bit form
	 * for a session without 8BITMIME (mime_7bit), made once per job.
	 * mail: MAIL's parameters on the session (smtp_dialogue_mail).
	 */
	const uint8_t *body;
	size_t body_len;
	uint8_t *body7;
	size_t body7_len;
	int eight_bit; /* -1: not looked yet, else whether it has 8-bit */
	/*
	 * The conversion runs on s->wq with the job detached from every
	 * session; while it is PENDING the job is neither ended nor freed
	 * (the worker reads job->mime, which done() lets the agent free):
	 * a deadline passing meanwhile is kept in timed_out and acted on when
	 * it completes.  conv_rc is the worker's answer; conv_cancel tells a
	 * queued conversion that close() wants it skipped.
	 */
	enum smtp_conv conv;
	int conv_rc;
	atomic_bool conv_cancel;
	bool timed_out;
	unsigned mail;
	char errbuf[CURL_ERROR_SIZE];
	struct smtp_dialogue d;
	LIST_ENTRY(smtp_job) entry; /* smtp.jobs */
};

/* One session with the smarthost. */
struct smtp_conn {
	struct smtp *s;
	struct curl_loop *cl;
	CURL *easy;            /* CONNECT_ONLY: owns the connection */
	struct event *rd, *wr; /* fd, for our part of the dialogue */
	struct event *idle;    /* closes the session idle too long */
	enum smtp_step step;
	struct smtp_job *sj; /* the message under way, or NULL */
	bool reused;         /* taken idle: the smarthost may have closed it */
	int64_t idle_since;  /* mono_ms() */
	unsigned ext;        /* SMTP_EXT_* the EHLO answer offered */
	uint64_t size_max;   /* its SIZE limit (RFC 1870), 0: none said */
	char errbuf[CURL_ERROR_SIZE];
	size_t rcpt_i; /* the recipient whose RCPT answer is awaited */
	/* Pipelining: the next command of the group (0 MAIL, 1..nrcpt RCPT,
	 * nrcpt + 1 DATA) to put into out; group is false once all are. */
	size_t group_i;
	bool group;
	struct smtp_stuff body;
	char out[SMTP_OUT_MAX];
	size_t outlen, outoff;
	struct smtp_lines lines;     /* the reply line coming in */
	LIST_ENTRY(smtp_conn) entry; /* smtp.conns */
};

static int conn_open(struct smtp_job *sj);
static void conn_idle_end(evutil_socket_t fd, short what, void *arg);
static void job_end(struct smtp_job *sj, CURLcode rc);
static void job_rewind(struct smtp_job *sj);

static const char *const step_names[] = {"connect", "idle", "mail", "rcpt",
					 "data",    "body", "dot"};

static void
conn_step(struct smtp_conn *c, enum smtp_step step)
{
	log_debug("%s agent smtp_step provider=%s from=%s to=%s",
		  c->sj != NULL ? c->sj->job->message_id : "-", c->s->name,
		  step_names[c->step], step_names[step]);
	c->step = step;
}

/* At the head of the list: the idle session taken next is the newest. */
static void
conn_link(struct smtp_conn *c)
{
	LIST_INSERT_HEAD(&c->s->conns, c, entry);
}

static void
conn_unlink(struct smtp_conn *c)
{
	LIST_REMOVE(c, entry);
}

/*
 * Closes the session, and frees c.  curl closes a connect-only
 * connection as dead, without QUIT, so this never waits.  The caller has
 * detached the job, if any.  From inside c's curl_loop callback too: the
 * loop itself is freed once the callback returns.
 */
static void
conn_drop(struct smtp_conn *c)
{
	if (c->step == STEP_IDLE)
		c->s->nidle--;
	conn_unlink(c);
	/* Our events go before curl closes the descriptor. */
	if (c->rd != NULL)
		event_free(c->rd);
	if (c->wr != NULL)
		event_free(c->wr);
	if (c->idle != NULL)
		event_free(c->idle);
	if (c->easy != NULL) {
		/* A handle never added is no error for curl to remove. */
		if (c->cl != NULL)
			(void)curl_multi_remove_handle(curl_loop_multi(c->cl),
						       c->easy);
		curl_easy_cleanup(c->easy);
	}
	curl_loop_free(c->cl);
	free(c);
}

/* An idle session's polite end: QUIT without waiting for its 221. */
static void
conn_quit(struct smtp_conn *c)
{
	size_t n = 0;

	/* Best effort: the connection closes right after either way. */
	(void)curl_easy_send(c->easy, "QUIT\r\n", 6, &n);
}

/*
 * The job's session failed with rc: the session is dropped, and the job
 * ends, or, on a reused session that failed at MAIL with no reply or 421
 * (the smarthost had closed it), nothing of the message was accepted, so
 * it goes once more on a fresh session.  A timeout is not retried: it
 * would double the time request_timeout_ms promises.
 */
static void
conn_fail(struct smtp_conn *c, CURLcode rc)
{
	struct smtp_job *sj = c->sj;
	const struct smtp_dialogue *d;
	bool stale;

	if (sj == NULL) {
		conn_drop(c);
		return;
	}
	d = &sj->d;
	c->sj = NULL;
	sj->c = NULL;
	memcpy(sj->errbuf, c->errbuf, sizeof(sj->errbuf));
	stale = c->reused && !sj->retried && !sj->s->closing &&
		rc != CURLE_OPERATION_TIMEDOUT && !d->data_go &&
		(d->last_code == 0 || d->last_code == 421);
	conn_drop(c);
	if (stale) {
		job_rewind(sj);
		sj->retried = true;
		if (conn_open(sj) == 0)
			return;
		rc = CURLE_OUT_OF_MEMORY;
	}
	job_end(sj, rc);
}

/*
 * Pipelining: as many commands of the group as out holds, each told to
 * the dialogue as it goes in, so that every reply finds its command
 * there.  False when the group is all out.
 */
static bool
group_fill(struct smtp_conn *c)
{
	size_t n, last = c->sj->job->nrcpt + 1;

	c->outoff = c->outlen = 0;
	while (c->group && c->outlen < SMTP_OUT_MAX) {
		n = smtp_dialogue_cmd(c->sj->env, c->sj->mail, c->sj->body_len,
				      c->group_i, c->out + c->outlen,
				      SMTP_OUT_MAX - c->outlen);
		if (n == 0)
			break; /* the rest on the next fill */
		smtp_dialogue_out(&c->sj->d, c->out + c->outlen, n);
		c->outlen += n;
		c->group = c->group_i++ < last;
	}
	return c->outlen > 0;
}

/* The next bytes into out (the group's commands, or the next part of the
 * message); false when there are none. */
static bool
out_fill(struct smtp_conn *c)
{
	if (c->group)
		return group_fill(c);
	if (c->step != STEP_BODY)
		return false;
	c->outoff = 0;
	c->outlen = smtp_dialogue_stuff(&c->body, c->sj->body, c->sj->body_len,
					c->out, sizeof(c->out));
	return c->outlen > 0;
}

/*
 * Sends what out holds, and what out_fill() gives after it; when the
 * socket is full, waits for EV_WRITE.  False when c is gone (failed).
 */
static bool
conn_flush(struct smtp_conn *c)
{
	CURLcode rc;
	size_t n;

	for (;;) {
		if (c->outoff == c->outlen && !out_fill(c))
			break;
		n = 0;
		rc = curl_easy_send(c->easy, c->out + c->outoff,
				    c->outlen - c->outoff, &n);
		if (rc == CURLE_AGAIN) {
			if (event_add(c->wr, NULL) != 0) {
				conn_fail(c, CURLE_OUT_OF_MEMORY);
				return false;
			}
			return true;
		}
		if (rc != CURLE_OK) {
			conn_fail(c, CURLE_SEND_ERROR);
			return false;
		}
		c->outoff += n;
	}
	(void)event_del(c->wr); /* not pending is no error */
	if (c->step == STEP_BODY) {
		c->sj->body_eof = true;
		conn_step(c, STEP_DOT);
	}
	return true;
}

/* Lock-step: the command i of the transaction out, told to the
 * dialogue.  False when c is gone. */
static bool
conn_cmd(struct smtp_conn *c, size_t i)
{
	c->outoff = 0;
	c->outlen = smtp_dialogue_cmd(c->sj->env, c->sj->mail, c->sj->body_len,
				      i, c->out, SMTP_OUT_MAX);
	if (c->outlen == 0) { /* the _Static_assert says never */
		conn_fail(c, CURLE_FAILED_INIT);
		return false;
	}
	smtp_dialogue_out(&c->sj->d, c->out, c->outlen);
	return conn_flush(c);
}

/* The job leaves the session, which waits for the next one (or closes
 * when enough wait); returns the job. */
static struct smtp_job *
conn_release(struct smtp_conn *c)
{
	struct smtp_job *sj = c->sj;
	struct smtp *s = c->s;

	c->sj = NULL;
	sj->c = NULL;
	if (s->nidle >= s->max_idle ||
	    (c->idle == NULL &&
	     (c->idle = evtimer_new(s->base, conn_idle_end, c)) == NULL) ||
	    evtimer_add(c->idle, &s->idle_tv) != 0) {
		conn_quit(c);
		conn_drop(c);
		return sj;
	}
	conn_step(c, STEP_IDLE);
	c->idle_since = mono_ms();
	s->nidle++;
	conn_unlink(c);
	conn_link(c);
	return sj;
}

/* On the worker: job->mime and body7 are the worker's until conv_done. */
static void
conv_work(void *arg)
{
	struct smtp_job *sj = arg;

	if (atomic_load(&sj->conv_cancel)) {
		sj->conv_rc = -1;
		return;
	}
	sj->conv_rc = conn_smtp__convert(sj->job->mime, sj->job->mime_len,
					 &sj->body7, &sj->body7_len);
}

static void job_kick(evutil_socket_t fd, short what, void *arg);

/*
 * On the loop: the conversion is over.  The job goes on as it began (a
 * session taken or opened, xact_begin() finds the form made), or ends if
 * its deadline passed meanwhile.  Inside close() (workq_free runs the
 * completions) nothing more happens: close() frees the job after.
 */
static void
conv_done(void *arg)
{
	struct smtp_job *sj = arg;
	int rc = sj->conv_rc;

	sj->conv = CONV_DONE;
	if (sj->s->closing)
		return;
	log_info("%s agent smtp_7bit provider=%s %s", sj->job->message_id,
		 sj->s->name,
		 rc == 0   ? "converted"
		 : rc == 1 ? "sent_as_is reason=\"not MIME\""
			   : "sent_as_is reason=\"unreadable\"");
	/* What the first session said is no part of what comes next. */
	job_rewind(sj);
	if (sj->timed_out)
		job_end(sj, CURLE_OPERATION_TIMEDOUT);
	else
		job_kick(-1, 0, sj);
}

/*
 * What this session gets after DATA, and MAIL's parameters: the message
 * as the client wrote it, said BODY=8BITMIME where it has 8-bit bytes and
 * the smarthost offers 8BITMIME; where it does not, the message made
 * 7-bit (RFC 6152 section 3).  A message that is not MIME, or that GMime
 * cannot read, goes as it is, as before.  The conversion is made once per
 * job, on the worker: false when it has just been queued (the caller lets
 * the session go; conv_done() brings the job back).
 */
static bool
body_choose(struct smtp_conn *c, struct smtp_job *sj)
{
	const struct connector_job *job = sj->job;

	if (sj->eight_bit < 0)
		sj->eight_bit = smtp_dialogue_8bit(job);
	sj->body = job->mime;
	sj->body_len = job->mime_len;
	if (sj->eight_bit && !(c->ext & SMTP_EXT_8BITMIME)) {
		if (sj->conv == CONV_NONE) {
			sj->conv = CONV_PENDING;
			workq_submit(sj->s->wq, conv_work, conv_done, sj);
			return false;
		}
		if (sj->body7 != NULL) {
			sj->body = sj->body7;
			sj->body_len = sj->body7_len;
		}
	}
	sj->mail = smtp_dialogue_mail(sj->env, c->ext,
				      sj->eight_bit && sj->body == job->mime);
	return true;
}

/*
 * The envelope for this session: the job's, or where SMTPUTF8 is not
 * offered and an address is not ASCII, its ASCII form, made once per job.
 * False when an address has none: the smarthost cannot take it.
 */
static bool
envelope_choose(struct smtp_conn *c, struct smtp_job *sj)
{
	const struct connector_job *job = sj->job;

	sj->env = job;
	if ((c->ext & SMTP_EXT_SMTPUTF8) || !smtp_dialogue_utf8(job))
		return true;
	if (!sj->ascii_made) {
		if (envelope_ascii(job->mail_from, job->rcpt, job->nrcpt,
				   &sj->afrom, &sj->arcpt) != 0)
			return false;
		sj->ascii_made = true;
		sj->ajob = *job;
		sj->ajob.mail_from = sj->afrom;
		sj->ajob.rcpt = (const char *const *)sj->arcpt;
		log_info("%s agent smtp_ascii_envelope provider=%s "
			 "reason=\"IDN domains as A-labels\"",
			 job->message_id, sj->s->name);
	}
	sj->env = &sj->ajob;
	return true;
}

/* The session is up and c->sj set: the transaction begins, pipelined
 * when the smarthost offers it. */
static void
xact_begin(struct smtp_conn *c)
{
	struct smtp_job *sj = c->sj;

	if (!envelope_choose(c, sj)) {
		/* Nothing was said: the session serves the next message. */
		sj->utf8_unoffered = true;
		job_end(conn_release(c), CURLE_OK);
		return;
	}
	/* After that refusal, which needs no 7-bit form; before SIZE's,
	 * which is the form's that would go.  While the form is made, off
	 * the loop, the session is idle and may serve other messages (a
	 * smarthost that closes it meanwhile costs the job nothing). */
	if (!body_choose(c, sj)) {
		(void)conn_release(c);
		return;
	}
	if (c->size_max > 0 && sj->body_len > c->size_max) {
		/* It would say 552: too large here, and nothing is sent. */
		sj->size_max = c->size_max;
		job_end(conn_release(c), CURLE_OK);
		return;
	}
	c->rcpt_i = 0;
	smtp_dialogue_stuff_init(&c->body);
	memset(&c->lines, 0, sizeof(c->lines));
	conn_step(c, STEP_MAIL);
	if (c->ext & SMTP_EXT_PIPELINING) {
		c->group = true;
		c->group_i = 0;
		c->outoff = c->outlen = 0;
		(void)conn_flush(c);
	} else {
		(void)conn_cmd(c, 0);
	}
}

/*
 * The reply to the command before was good: lock-step, the next command
 * (i) goes out; pipelined, it is out already and its reply is read next.
 * False when c may be gone.
 */
static bool
xact_next(struct smtp_conn *c, size_t i)
{
	if (c->ext & SMTP_EXT_PIPELINING)
		return true;
	(void)conn_cmd(c, i);
	return false;
}

/* DATA's 354: the message, or (no recipient taken, only pipelined) the
 * end of data alone as RFC 2920 3.1 asks, whose reply then ends the
 * attempt with the recipients' refusals.  False when c may be gone. */
static bool
xact_data(struct smtp_conn *c)
{
	/* A 354 before DATA was even out is no answer to it. */
	if (c->group || c->outoff != c->outlen) {
		conn_fail(c, CURLE_WEIRD_SERVER_REPLY);
		return false;
	}
	if (c->sj->d.data_go) {
		conn_step(c, STEP_BODY);
	} else {
		conn_step(c, STEP_DOT);
		memcpy(c->out, ".\r\n", 3);
		c->outoff = 0;
		c->outlen = 3;
	}
	(void)conn_flush(c);
	return false;
}

/*
 * A final reply to the command awaited (the dialogue has recorded it).
 * Returns false when c may be gone, so the caller reads no more for it.
 */
static bool
conn_reply(struct smtp_conn *c, int code)
{
	struct smtp_job *sj = c->sj;
	size_t nrcpt;

	if (sj == NULL) {
		/* Idle: a smarthost says 421 as it closes. */
		conn_drop(c);
		return false;
	}
	nrcpt = sj->job->nrcpt;
	switch (c->step) {
	case STEP_MAIL:
		if (code < 200 || code >= 300)
			break;
		conn_step(c, STEP_RCPT);
		return xact_next(c, 1);
	case STEP_RCPT:
		/* 421 closes the channel (RFC 5321 3.8); any other refusal
		 * does not stop the others. */
		if (code == 421)
			break;
		if (++c->rcpt_i < nrcpt)
			return xact_next(c, 1 + c->rcpt_i);
		/* Pipelined, DATA is out already and its reply decides. */
		if (!(c->ext & SMTP_EXT_PIPELINING) &&
		    !smtp_dialogue_rcpt_taken(&sj->d, nrcpt))
			break;
		conn_step(c, STEP_DATA);
		return xact_next(c, nrcpt + 1);
	case STEP_DATA:
		if (code != 354)
			break;
		return xact_data(c);
	case STEP_DOT:
		/* After a dot alone, any reply: the recipients' refusals. */
		if (!sj->d.data_go || code < 200 || code >= 300)
			break;
		job_end(conn_release(c), CURLE_OK);
		return false;
	default: /* during the body: the smarthost gave up on it */
		break;
	}
	conn_fail(c, CURLE_WEIRD_SERVER_REPLY);
	return false;
}

/* One reply line (its LF included, an overlong one cut); false when c
 * may be gone. */
static bool
conn_line(struct smtp_conn *c, const char *line, size_t len)
{
	bool last = false;
	int code = smtp_dialogue_code(line, len, &last);

	if (c->sj != NULL)
		smtp_dialogue_in(&c->sj->d, line, len);
	if (code == 0) {
		conn_fail(c, CURLE_WEIRD_SERVER_REPLY);
		return false;
	}
	return last ? conn_reply(c, code) : true;
}

/* Bytes in, line after line; false when c may be gone. */
static bool
conn_input(struct smtp_conn *c, const char *p, size_t n)
{
	const char *line;
	size_t take, len;

	while (n > 0) {
		take = smtp_dialogue_line(&c->lines, p, n, &line, &len);
		p += take;
		n -= take;
		if (line != NULL && !conn_line(c, line, len))
			return false;
	}
	return true;
}

static void
conn_readable(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_conn *c = arg;
	char buf[4096];
	CURLcode rc;
	size_t n;
	int i;

	(void)fd;
	(void)what;
	/*
	 * TLS may hold decrypted bytes the socket no longer shows, so read
	 * until curl says AGAIN; after 16 reads, the rest on the next turn.
	 */
	for (i = 0; i < 16; i++) {
		n = 0;
		rc = curl_easy_recv(c->easy, buf, sizeof(buf), &n);
		if (rc == CURLE_AGAIN)
			return;
		if (rc != CURLE_OK || n == 0) {
			conn_fail(c, CURLE_RECV_ERROR);
			return;
		}
		if (!conn_input(c, buf, n))
			return;
	}
	event_active(c->rd, EV_READ, 0);
}

static void
conn_writable(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)conn_flush(arg);
}

/* curl's dialogue while it opens the session; ours is told directly. */
static int
debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *arg)
{
	struct smtp_conn *c = arg;
	struct smtp_job *sj = c->sj;

	(void)h;
	if (sj == NULL || c->step != STEP_CONNECT)
		return 0;
	/* curl hands the reply a line at a time: only flags are kept. */
	if (type == CURLINFO_HEADER_IN) {
		smtp_dialogue_in(&sj->d, data, size);
		if (strcmp(sj->d.cmd, "EHLO") == 0) {
			c->ext |= smtp_dialogue_ehlo(data, size);
			if (smtp_dialogue_ehlo(data, size) == SMTP_EXT_SIZE)
				c->size_max =
				    smtp_dialogue_ehlo_size(data, size);
		}
	} else if (type == CURLINFO_HEADER_OUT) {
		smtp_dialogue_out(&sj->d, data, size);
		/*
		 * The EHLO after STARTTLS says it all again.  HELO follows a
		 * refused EHLO, whose "250-" lines may have listed extensions
		 * before its last line refused (the code changing inside the
		 * reply): after HELO there are none (curl forgets its own).
		 */
		if (strcmp(sj->d.cmd, "EHLO") == 0 ||
		    strcmp(sj->d.cmd, "HELO") == 0) {
			c->ext = 0;
			c->size_max = 0;
		}
	}
	return 0;
}

/* curl_loop: the session is open (or failed to open). */
static void
connect_done(CURL *easy, CURLcode code, void *arg)
{
	struct smtp_conn *c = arg;
	struct event_base *base = c->s->base;
	curl_socket_t fd = CURL_SOCKET_BAD;

	(void)easy;
	if (code == CURLE_OK &&
	    (curl_easy_getinfo(c->easy, CURLINFO_ACTIVESOCKET, &fd) !=
		 CURLE_OK ||
	     fd == CURL_SOCKET_BAD))
		code = CURLE_COULDNT_CONNECT;
	if (code == CURLE_OK) {
		c->rd =
		    event_new(base, fd, EV_READ | EV_PERSIST, conn_readable, c);
		c->wr = event_new(base, fd, EV_WRITE | EV_PERSIST,
				  conn_writable, c);
		if (c->rd == NULL || c->wr == NULL ||
		    event_add(c->rd, NULL) != 0)
			code = CURLE_OUT_OF_MEMORY;
		/* Each curl_easy_recv() would say "reached" through it. */
		else if (curl_easy_setopt(c->easy, CURLOPT_VERBOSE, 0L) !=
			 CURLE_OK)
			code = CURLE_FAILED_INIT;
	}
	if (code != CURLE_OK) {
		conn_fail(c, code);
		return;
	}
	xact_begin(c);
}

/* Every option of a session; false when curl refuses one. */
static bool
session_setopts(struct smtp_conn *c)
{
	struct smtp *s = c->s;
	CURL *h = c->easy;
	bool ok = true;

	ok &= curl_easy_setopt(h, CURLOPT_URL, s->url) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps") ==
	      CURLE_OK;
	if (s->tls == SMTP_TLS_STARTTLS)
		ok &= curl_easy_setopt(h, CURLOPT_USE_SSL,
				       (long)CURLUSESSL_ALL) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
	if (s->ca_file != NULL)
		ok &=
		    curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file) == CURLE_OK;
	if (s->username != NULL) {
		ok &= curl_easy_setopt(h, CURLOPT_USERNAME, s->username) ==
		      CURLE_OK;
		ok &= curl_easy_setopt(h, CURLOPT_PASSWORD, s->password) ==
		      CURLE_OK;
	}
	ok &= curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, s->connect_ms) ==
	      CURLE_OK;
	ok &=
	    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, s->request_ms) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_VERBOSE, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, debug_cb) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_DEBUGDATA, c) == CURLE_OK;
	return ok;
}

/* A new session for sj, which it carries once open.  0, or a negative
 * errno: then sj is untouched. */
static int
conn_open(struct smtp_job *sj)
{
	struct smtp_conn *c = xcalloc(1, sizeof(*c));

	c->s = sj->s;
	c->step = STEP_CONNECT;
	conn_link(c);
	c->cl = curl_loop_new(c->s->base, connect_done, c);
	if (c->cl != NULL)
		c->easy = curl_easy_init();
	if (c->easy == NULL || !session_setopts(c) ||
	    curl_multi_add_handle(curl_loop_multi(c->cl), c->easy) !=
		CURLM_OK) {
		conn_drop(c);
		return -ENOMEM;
	}
	c->sj = sj;
	sj->c = c;
	return 0;
}

/* Back to the state before the first try. */
static void
job_rewind(struct smtp_job *sj)
{
	int *codes = sj->d.rcpt_code;

	memset(codes, 0, sj->job->nrcpt * sizeof(*codes));
	memset(&sj->d, 0, sizeof(sj->d));
	sj->d.rcpt_code = codes;
	sj->body_eof = false;
	sj->errbuf[0] = '\0';
}

static void
job_free(struct smtp_job *sj)
{
	/* The worker would write into freed memory. */
	if (sj->conv == CONV_PENDING)
		fatalx("%s agent smtp job freed while converting",
		       sj->job->message_id);
	LIST_REMOVE(sj, entry);
	if (sj->kick != NULL)
		event_free(sj->kick);
	if (sj->deadline != NULL)
		event_free(sj->deadline);
	free(sj->d.rcpt_code);
	free(sj->body7);
	if (sj->ascii_made)
		envelope_ascii_free(sj->afrom, sj->arcpt, sj->ajob.nrcpt);
	free(sj);
}

/* The job is over (its session detached): classified, reported, freed. */
static void
job_end(struct smtp_job *sj, CURLcode rc)
{
	struct smtp *s = sj->s;
	struct smtp_attempt a = {.job = sj->job,
				 .d = &sj->d,
				 .rc = rc,
				 .errbuf = sj->errbuf,
				 .body_eof = sj->body_eof,
				 .utf8_unoffered = sj->utf8_unoffered,
				 .size_max = sj->size_max};
	struct connector_result res;
	char detail[LINK_DETAIL_MAX + 1], idbuf[128];

	/* Before classify: a copy cut short at a text's end is found there. */
	smtp_dialogue_scrub(sj->d.final_text, s->username, s->password);
	smtp_dialogue_scrub(sj->d.last_text, s->username, s->password);
	smtp_dialogue_classify(&a, &res, detail, sizeof(detail), idbuf,
			       sizeof(idbuf));
	if (res.detail == detail)
		smtp_dialogue_scrub(detail, s->username, s->password);
	if (res.provider_message_id == idbuf)
		smtp_dialogue_scrub(idbuf, s->username, s->password);
	if (res.outcome == OUTCOME_DELIVERED ||
	    res.outcome == OUTCOME_PERMANENT ||
	    res.outcome == OUTCOME_TOO_LARGE ||
	    res.outcome == OUTCOME_NEEDS_SMTPUTF8)
		s->failures = 0;
	else
		s->failures++;
	if (res.detail != NULL)
		log_info("%s agent smtp_answer provider=%s outcome=%s "
			 "detail=\"%s\"",
			 sj->job->message_id, s->name,
			 outcome_name(res.outcome), res.detail);
	s->done(sj->job, &res, s->arg);
	job_free(sj);
}

/* The session's idle time is up (its timer): closed, politely. */
static void
conn_idle_end(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_conn *c = arg;

	(void)fd;
	(void)what;
	log_debug("- agent smtp_idle_close provider=%s after_ms=%lld",
		  c->s->name, (long long)(mono_ms() - c->idle_since));
	conn_quit(c);
	conn_drop(c);
}

/*
 * An idle session not too old, or NULL.  Its timer closes each on time;
 * one whose timer is late (a busy loop) is closed here too.
 */
static struct smtp_conn *
conn_take_idle(struct smtp *s)
{
	struct smtp_conn *c, *next;
	int64_t now = mono_ms(),
		max = s->idle_tv.tv_sec * 1000 + s->idle_tv.tv_usec / 1000;

	for (c = LIST_FIRST(&s->conns); c != NULL; c = next) {
		next = LIST_NEXT(c, entry);
		if (c->step != STEP_IDLE)
			continue;
		if (now - c->idle_since >= max) {
			conn_quit(c);
			conn_drop(c);
			continue;
		}
		(void)evtimer_del(c->idle); /* pending: no error */
		s->nidle--;
		return c;
	}
	return NULL;
}

/* On the loop's turn after send(): done() never runs inside send(). */
static void
job_kick(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_job *sj = arg;
	struct smtp_conn *c = conn_take_idle(sj->s);

	(void)fd;
	(void)what;
	if (c != NULL) {
		c->reused = true;
		c->sj = sj;
		sj->c = c;
		xact_begin(c);
		return;
	}
	if (conn_open(sj) != 0)
		job_end(sj, CURLE_OUT_OF_MEMORY);
}

static void
job_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_job *sj = arg;

	(void)fd;
	(void)what;
	if (sj->conv == CONV_PENDING) {
		/* Ended by conv_done(); a conversion not yet begun is not
		 * made for nothing (a queue of large ones would otherwise
		 * time out one behind the other). */
		sj->timed_out = true;
		atomic_store(&sj->conv_cancel, true);
	} else if (sj->c != NULL)
		conn_fail(sj->c, CURLE_OPERATION_TIMEDOUT);
	else
		job_end(sj, CURLE_OPERATION_TIMEDOUT);
}

static int
smtp_send(void *state, struct connector_job *job)
{
	struct smtp *s = state;
	struct smtp_job *sj;
	struct timeval now = {0, 0}, tv;

	if (s->closing)
		return -ESHUTDOWN;
	if (job->nrcpt == 0)
		return -EINVAL;
	sj = xcalloc(1, sizeof(*sj));
	sj->eight_bit = -1;
	sj->s = s;
	sj->job = job;
	sj->env = job;
	sj->d.rcpt_code = xcalloc(job->nrcpt, sizeof(*sj->d.rcpt_code));
	LIST_INSERT_HEAD(&s->jobs, sj, entry);
	tv.tv_sec = s->request_ms / 1000;
	tv.tv_usec = (s->request_ms % 1000) * 1000;
	sj->kick = evtimer_new(s->base, job_kick, sj);
	sj->deadline = evtimer_new(s->base, job_timeout, sj);
	if (sj->kick == NULL || sj->deadline == NULL ||
	    evtimer_add(sj->kick, &now) != 0 ||
	    evtimer_add(sj->deadline, &tv) != 0) {
		job_free(sj);
		return -ENOMEM;
	}
	return 0;
}

static int
smtp_health(void *state)
{
	struct smtp *s = state;

	return s->failures > 0 ? LINK_HEALTH_DEGRADED : LINK_HEALTH_OK;
}

static void
smtp_free(struct smtp *s)
{
	if (s == NULL)
		return;
	if (s->password != NULL) {
		explicit_bzero(s->password, strlen(s->password));
		free(s->password);
	}
	free(s->name);
	free(s->url);
	free(s->username);
	free(s->ca_file);
	free(s);
}

/* Every session closed, every job dropped without done(). */
static void
smtp_close(void *state)
{
	struct smtp *s = state;
	struct smtp_conn *c;
	struct smtp_job *sj;

	if (s == NULL)
		return;
	s->closing = true;
	/*
	 * The conversions first: a queued one is skipped, the one under way
	 * (GMime cannot be interrupted) is waited for, at most about 0.5 s at
	 * the largest size; their completions run here and do nothing.
	 */
	LIST_FOREACH(sj, &s->jobs, entry)
	{
		atomic_store(&sj->conv_cancel, true);
	}
	workq_free(s->wq);
	s->wq = NULL;
	while ((c = LIST_FIRST(&s->conns)) != NULL) {
		if (c->sj != NULL) {
			c->sj->c = NULL;
			c->sj = NULL;
		} else if (c->step == STEP_IDLE) {
			conn_quit(c);
		}
		conn_drop(c);
	}
	while ((sj = LIST_FIRST(&s->jobs)) != NULL)
		job_free(sj);
	smtp_free(s);
	g_mime_shutdown(); /* counted: see smtp_open */
}

static int
smtp_open(const struct provider_config *pc, struct event_base *base,
	  connector_done_cb done, void *arg, void **state, char *err,
	  size_t errlen)
{
	struct smtp *s = NULL;
	struct curl_loop *cl;
	const char *pw = provider_config_get(pc, "password_file");
	char serr[256];
	long idle_ms;
	int rc = -EINVAL;

	if (provider_config_get(pc, "host") == NULL) {
		snprintf(err, errlen, "provider %s: smtp needs the key 'host'",
			 pc->name);
		return -EINVAL;
	}
	s = xcalloc(1, sizeof(*s));
	LIST_INIT(&s->conns);
	LIST_INIT(&s->jobs);
	s->name = xstrdup(pc->name);
	s->tls = conn_smtp__tls(pc);
	s->url = conn_smtp__url(pc, s->tls);
	s->username = xstrdup_or_null(provider_config_get(pc, "username"));
	s->ca_file = xstrdup_or_null(provider_config_get(pc, "tls_ca_file"));
	s->connect_ms =
	    conn_smtp__long(pc, "connect_timeout_ms", SMTP_CONNECT_TIMEOUT_MS);
	s->request_ms =
	    conn_smtp__long(pc, "request_timeout_ms", SMTP_REQUEST_TIMEOUT_MS);
	idle_ms = conn_smtp__long(pc, "idle_timeout_ms", SMTP_IDLE_TIMEOUT_MS);
	s->idle_tv.tv_sec = idle_ms / 1000;
	s->idle_tv.tv_usec = (idle_ms % 1000) * 1000;
	s->max_idle = pc->max_in_flight > 0 ? (size_t)pc->max_in_flight : 1;
	s->base = base;
	s->done = done;
	s->arg = arg;
	if (pw != NULL) {
		rc = config_secret_read(pw, &s->password, serr, sizeof(serr));
		if (rc != 0) {
			snprintf(err, errlen, "provider %s: password_file: %s",
				 pc->name, serr);
			goto fail;
		}
	}
	/* libcurl starts (once per process) now, not at the first send. */
	cl = curl_loop_new(base, NULL, NULL);
	if (cl == NULL) {
		snprintf(err, errlen, "provider %s: libcurl will not start",
			 pc->name);
		rc = -ENOMEM;
		goto fail;
	}
	curl_loop_free(cl);
	s->wq = workq_new(base, SMTP_CONVERT_THREADS);
	if (s->wq == NULL) {
		snprintf(err, errlen, "provider %s: cannot start its worker",
			 pc->name);
		rc = -ENOMEM;
		goto fail;
	}
	/* For mime_7bit; counted, so the agent's other users keep theirs. */
	g_mime_init();
	*state = s;
	return 0;
fail:
	smtp_free(s);
	return rc;
}

static const struct connector_ops smtp_ops = {
    .name = "smtp",
    .config = &conn_smtp__config,
    .open = smtp_open,
    .send = smtp_send,
    .health = smtp_health,
    .close = smtp_close,
};

CONNECTOR_REGISTER(smtp_ops)
