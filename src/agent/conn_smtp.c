/*
 * The smtp connector: hands each message to a smarthost through libcurl's
 * SMTP client (smtp:// with STARTTLS required, smtps:// for implicit TLS,
 * or plain smtp:// when tls = none), the MIME uploaded byte for byte.
 * Certificates are always verified, against tls_ca_file when given.
 *
 * libcurl reports a transfer as one result, but SMTP answers per command.
 * So the transfer's debug callback watches the dialogue (commands out,
 * replies in, never their arguments when they are credentials) and records
 * each recipient's RCPT answer, the DATA answer and the final reply; the
 * outcome is classified from them (docs/providers-smtp.md has the table):
 * 2xx after the data is OUTCOME_DELIVERED (some recipients refused are
 * named in the detail), 530/534/535/538 OUTCOME_ACCOUNT, 452
 * OUTCOME_THROTTLED, other 4xx and failures before MAIL OUTCOME_TRANSIENT,
 * 5xx OUTCOME_PERMANENT, and the whole message sent with no final reply
 * OUTCOME_AMBIGUOUS.  CURLOPT_MAIL_RCPT_ALLOWFAILS keeps one refused
 * recipient from stopping the others.
 *
 * Each transfer is one blocking curl_easy_perform() on a worker thread of
 * a workq, not on the agent's libcurl multi driver: libcurl's SMTP client
 * (7.88, and still in curl's tree) waits inside the multi interface for
 * the answer to the data and to QUIT, so on the loop one slow smarthost
 * would stop every transfer, the link and the timers in turn
 * (docs/internals/agent.md has the measurement).  There are as many
 * workers as the provider's max_in_flight, up to SMTP_THREADS_MAX, so the
 * window the server grants is the window that runs.  The loop never waits
 * on the network; the result is classified and done() called on the loop.
 * Workers touch only their own record, the job (borrowed until done())
 * and the handle pool.  close() stops the transfers under way (their
 * progress callback sees the flag) and waits for them.
 *
 * A relay keeps its smarthost connection open between messages: a worker
 * takes an easy handle from a pool of one per worker, whose connection cache
 * keeps the session (TCP, TLS, EHLO, AUTH) for the next message, and gives
 * it back reset (curl_easy_reset keeps the connection, drops every option
 * that points at the finished job).  A failed transfer's handle is thrown
 * away with its connection.  A reused connection the smarthost has closed
 * meanwhile fails at MAIL before anything of the message was accepted:
 * that transfer is tried once more on a fresh connection, so a stale
 * connection never becomes an outcome.
 */
#include "agent/connector.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "common/workq.h"
#include "link/link.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Transfers at once: the provider's max_in_flight, up to this many
 * worker threads (each blocked in one transfer); jobs beyond it queue. */
#define SMTP_THREADS_MAX 64
#define SMTP_REPLY_MAX 200 /* bytes of a reply kept for the detail */
#define SMTP_CONNECT_TIMEOUT_MS 5000
#define SMTP_REQUEST_TIMEOUT_MS 30000
/* A connection idle longer is closed rather than reused: below the idle
 * timeout of most smarthosts (RFC 5321 asks 5 min, some use less). */
#define SMTP_IDLE_MAX_S 30L

/* libcurl before 8.2 spells the option with three Ls. */
#ifndef CURLOPT_MAIL_RCPT_ALLOWFAILS
#define CURLOPT_MAIL_RCPT_ALLOWFAILS CURLOPT_MAIL_RCPT_ALLLOWFAILS
#endif

enum smtp_tls { SMTP_TLS_NONE, SMTP_TLS_STARTTLS, SMTP_TLS_IMPLICIT };

struct smtp {
	char *name; /* the provider's */
	char *url;  /* smtp[s]://host:port/helo */
	char *username, *password, *ca_file;
	enum smtp_tls tls;
	long connect_ms, request_ms;
	struct workq *wq;
	int nthreads; /* workers, and room in the pool */
	connector_done_cb done;
	void *arg;
	/* Set on the loop, read by the workers: their transfers stop. */
	atomic_bool closing;
	int failures;     /* consecutive failed sends */
	bool curl_inited; /* curl_global_init succeeded */
	bool pool_inited; /* pool_lock initialised */
	/* Idle easy handles with their open connections; workers take and
	 * give back under pool_lock. */
	pthread_mutex_t pool_lock;
	CURL **pool; /* nthreads slots */
	int npool;
};

/* What the dialogue of one transfer said, filled by the debug callback. */
struct smtp_dialogue {
	char cmd[12];      /* verb of the last command sent, "RCPT" */
	char last_cmd[12]; /* verb of the command last_code answers */
	size_t nrcpt_sent; /* RCPT commands sent so far */
	int *rcpt_code;    /* per recipient, 0: no answer */
	int mail_code;     /* answer to MAIL FROM */
	int last_code;     /* last final reply of any command */
	bool data_go;      /* 354 received: the body is going out */
	int final_code;    /* the reply after the body, 0: none */
	char final_text[SMTP_REPLY_MAX];
	char last_text[SMTP_REPLY_MAX];
};

/* One send; filled on the loop, worked on a thread, done on the loop. */
struct smtp_job {
	struct smtp *s;
	struct connector_job *job;
	size_t off;    /* upload position in job->mime */
	bool body_eof; /* the read callback gave curl the last byte */
	CURLcode rc;
	char errbuf[CURL_ERROR_SIZE];
	struct smtp_dialogue d;
};

static size_t
upload_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct smtp_job *sj = arg;
	size_t room = size * nitems, left = sj->job->mime_len - sj->off;
	size_t n = left < room ? left : room;

	memcpy(buf, sj->job->mime + sj->off, n);
	sj->off += n;
	/* curl knows the size and stops asking at the last byte. */
	if (sj->off == sj->job->mime_len)
		sj->body_eof = true;
	return n;
}

/* "NNN-" or "NNN " or "NNN" at p: the code, else 0. */
static int
reply_code(const char *p, size_t len, bool *last)
{
	if (len < 3 || p[0] < '1' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
	    p[2] < '0' || p[2] > '9')
		return 0;
	*last = len == 3 || p[3] != '-';
	return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

/* One final reply line of the server, attributed to the last command. */
static void
dialogue_reply(struct smtp_dialogue *d, int code, const char *text, size_t len)
{
	char *dst = d->last_text;

	/* Only the first reply after the data is its verdict; QUIT's 221
	 * comes later. */
	if (d->data_go && d->final_code != 0)
		return;
	/* curl says QUIT inside the failed transfer: its 221 is no verdict. */
	if (strcmp(d->cmd, "QUIT") == 0)
		return;
	d->last_code = code;
	memcpy(d->last_cmd, d->cmd, sizeof(d->last_cmd));
	if (d->data_go) {
		d->final_code = code;
		dst = d->final_text;
	} else if (strcmp(d->cmd, "RCPT") == 0 && d->nrcpt_sent > 0) {
		d->rcpt_code[d->nrcpt_sent - 1] = code;
	} else if (strcmp(d->cmd, "MAIL") == 0) {
		d->mail_code = code;
	} else if (strcmp(d->cmd, "DATA") == 0 && code == 354) {
		d->data_go = true;
	}
	while (len > 0 && (text[len - 1] == '\r' || text[len - 1] == '\n'))
		len--;
	log_sanitize(text, len, dst, SMTP_REPLY_MAX);
}

static void
dialogue_in(struct smtp_dialogue *d, const char *p, size_t len)
{
	const char *nl;
	size_t n;
	bool last;
	int code;

	while (len > 0) {
		nl = memchr(p, '\n', len);
		n = nl != NULL ? (size_t)(nl - p) + 1 : len;
		code = reply_code(p, n, &last);
		if (code != 0 && last)
			dialogue_reply(d, code, p, n);
		p += n;
		len -= n;
	}
}

/*
 * Only a known verb is kept: the lines after "AUTH PLAIN" or "AUTH LOGIN"
 * are credentials in base64, and they must never reach a detail.
 */
static void
dialogue_out(struct smtp_dialogue *d, const char *p, size_t len)
{
	static const char *const verbs[] = {"EHLO", "HELO", "STARTTLS",
					    "AUTH", "MAIL", "RCPT",
					    "DATA", "RSET", "QUIT"};
	size_t i, n;

	for (n = 0; n < len; n++)
		if (p[n] == ' ' || p[n] == ':' || p[n] == '\r' || p[n] == '\n')
			break;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strlen(verbs[i]) != n || strncasecmp(p, verbs[i], n) != 0)
			continue;
		snprintf(d->cmd, sizeof(d->cmd), "%s", verbs[i]);
		if (strcmp(d->cmd, "RCPT") == 0)
			d->nrcpt_sent++;
		return;
	}
}

/* Ends a transfer at once when the connector closes. */
static int
progress_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
	    curl_off_t ulnow)
{
	const struct smtp_job *sj = arg;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return atomic_load(&sj->s->closing) ? 1 : 0;
}

static int
debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *arg)
{
	struct smtp_job *sj = arg;

	(void)h;
	if (type == CURLINFO_HEADER_IN)
		dialogue_in(&sj->d, data, size);
	else if (type == CURLINFO_HEADER_OUT && !sj->d.data_go)
		dialogue_out(&sj->d, data, size);
	if (sj->d.nrcpt_sent > sj->job->nrcpt)
		sj->d.nrcpt_sent = sj->job->nrcpt; /* never past the array */
	return 0;
}

/* Sets every option of one transfer; false when curl refuses one. */
static bool
transfer_setup(CURL *h, struct smtp_job *sj, struct curl_slist *rcpt)
{
	struct smtp *s = sj->s;
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
	ok &= curl_easy_setopt(h, CURLOPT_MAIL_FROM, sj->job->mail_from) ==
	      CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_MAIL_RCPT_ALLOWFAILS, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_UPLOAD, 1L) == CURLE_OK;
	ok &=
	    curl_easy_setopt(h, CURLOPT_READFUNCTION, upload_read) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_READDATA, sj) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
			       (curl_off_t)sj->job->mime_len) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, s->connect_ms) ==
	      CURLE_OK;
	ok &=
	    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, s->request_ms) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_MAXAGE_CONN, SMTP_IDLE_MAX_S) ==
	      CURLE_OK;
	/* The wait for the reply after the data is a blocking step of
	 * curl's that CURLOPT_TIMEOUT_MS does not bound (7.88). */
	ok &= curl_easy_setopt(h, CURLOPT_SERVER_RESPONSE_TIMEOUT,
			       (s->request_ms + 999) / 1000) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_ERRORBUFFER, sj->errbuf) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb) ==
	      CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_XFERINFODATA, sj) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_VERBOSE, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, debug_cb) == CURLE_OK;
	ok &= curl_easy_setopt(h, CURLOPT_DEBUGDATA, sj) == CURLE_OK;
	return ok;
}

/*
 * After a failure the connection is of no use, and curl would say QUIT on
 * it at clean-up and wait for the reply (up to the response timeout, with
 * no progress callback to end it): shutting it down first makes that fail
 * at once.
 */
static void
drop_connection(CURL *h)
{
	curl_socket_t fd = CURL_SOCKET_BAD;

	if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &fd) == CURLE_OK &&
	    fd != CURL_SOCKET_BAD)
		(void)shutdown(fd, SHUT_RDWR);
}

/* An idle handle of the pool, or a new one; NULL when out of memory. */
static CURL *
pool_take(struct smtp *s)
{
	CURL *h = NULL;

	pthread_mutex_lock(&s->pool_lock);
	if (s->npool > 0)
		h = s->pool[--s->npool];
	pthread_mutex_unlock(&s->pool_lock);
	return h != NULL ? h : curl_easy_init();
}

/*
 * After a success the handle goes back with its connection; the reset
 * drops every option pointing at this job (recipients, read state, error
 * buffer, callbacks' data) and curl's copy of the password.  After a
 * failure the connection is of no use: dropped, and the handle with it.
 */
static void
pool_give(struct smtp *s, CURL *h, bool ok)
{
	if (h == NULL)
		return;
	if (ok && !atomic_load(&s->closing)) {
		curl_easy_reset(h);
		pthread_mutex_lock(&s->pool_lock);
		if (s->npool < s->nthreads) {
			s->pool[s->npool++] = h;
			h = NULL;
		}
		pthread_mutex_unlock(&s->pool_lock);
	} else {
		drop_connection(h);
	}
	curl_easy_cleanup(h);
}

/*
 * A reused connection that failed before any reply to MAIL, or with 421
 * (the smarthost closing the session, as at its idle timeout), and before
 * the data: nothing of the message was accepted, so one more try on a
 * fresh connection is safe.  A timeout is not retried: it would double
 * the time request_timeout_ms promises.
 */
static bool
stale_connection(CURL *h, const struct smtp_job *sj)
{
	long nconn = -1;
	const struct smtp_dialogue *d = &sj->d;

	if (sj->rc == CURLE_OK || sj->rc == CURLE_OPERATION_TIMEDOUT ||
	    sj->rc == CURLE_ABORTED_BY_CALLBACK || d->data_go ||
	    (d->last_code != 0 && d->last_code != 421) ||
	    atomic_load(&sj->s->closing))
		return false;
	/* No new connection for this transfer: it ran on a cached one. */
	return curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &nconn) ==
		   CURLE_OK &&
	       nconn == 0;
}

/* Back to the state before the first try. */
static void
job_rewind(struct smtp_job *sj)
{
	int *codes = sj->d.rcpt_code;

	memset(codes, 0, sj->job->nrcpt * sizeof(*codes));
	memset(&sj->d, 0, sizeof(sj->d));
	sj->d.rcpt_code = codes;
	sj->off = 0;
	sj->body_eof = false;
	sj->errbuf[0] = '\0';
}

/* One transfer on h; false when curl refused an option. */
static bool
transfer_run(CURL *h, struct smtp_job *sj, struct curl_slist *rcpt)
{
	if (!transfer_setup(h, sj, rcpt)) {
		sj->rc = CURLE_FAILED_INIT;
		return false;
	}
	sj->rc = curl_easy_perform(h);
	return true;
}

/* On a worker thread: no logging, no loop state, only sj and the pool. */
static void
send_work(void *arg)
{
	struct smtp_job *sj = arg;
	struct curl_slist *rcpt = NULL, *tmp;
	CURL *h = NULL;
	size_t i;

	sj->rc = CURLE_OUT_OF_MEMORY;
	for (i = 0; i < sj->job->nrcpt; i++) {
		tmp = curl_slist_append(rcpt, sj->job->rcpt[i]);
		if (tmp == NULL)
			goto out;
		rcpt = tmp;
	}
	h = pool_take(sj->s);
	if (h == NULL || !transfer_run(h, sj, rcpt))
		goto out;
	if (stale_connection(h, sj)) {
		pool_give(sj->s, h, false);
		job_rewind(sj);
		sj->rc = CURLE_OUT_OF_MEMORY;
		h = curl_easy_init();
		if (h == NULL || !transfer_run(h, sj, rcpt))
			goto out;
	}
out:
	pool_give(sj->s, h, sj->rc == CURLE_OK);
	curl_slist_free_all(rcpt);
}

/*
 * A detail line: a long one is cut at LINK_DETAIL_MAX, which is what the
 * link carries anyway.
 */
static void detail_set(char *buf, size_t bufsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
detail_set(char *buf, size_t bufsz, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(buf, bufsz, fmt, ap);
	va_end(ap);
}

static bool
code_is_auth(int code)
{
	return code == 530 || code == 534 || code == 535 || code == 538;
}

/* The class of a refusal with this SMTP code (4xx or 5xx). */
static int
code_outcome(int code)
{
	if (code_is_auth(code))
		return OUTCOME_ACCOUNT;
	if (code == 452)
		return OUTCOME_THROTTLED;
	if (code >= 500)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT;
}

/*
 * A refusal of the session itself (greeting, EHLO, STARTTLS, AUTH) says
 * nothing about the message: 5xx there is the account's at AUTH and the
 * smarthost's elsewhere.  Only MAIL, RCPT and the data refuse a message.
 */
static int
session_outcome(const char *cmd, int code)
{
	int outcome = code_outcome(code);

	if (outcome != OUTCOME_PERMANENT || strcmp(cmd, "MAIL") == 0 ||
	    strcmp(cmd, "RCPT") == 0 || strcmp(cmd, "DATA") == 0)
		return outcome;
	return strcmp(cmd, "AUTH") == 0 ? OUTCOME_ACCOUNT : OUTCOME_TRANSIENT;
}

/* "a@x 550, b@y 451": the refused recipients, for the detail. */
static void
refused_list(const struct smtp_job *sj, char *buf, size_t bufsz,
	     size_t *nrefused, int *worst)
{
	char safe[128];
	size_t i, used = 0;
	int n;

	buf[0] = '\0';
	*nrefused = 0;
	*worst = 0;
	for (i = 0; i < sj->job->nrcpt; i++) {
		int c = sj->d.rcpt_code[i];

		if (c >= 200 && c < 300)
			continue;
		(*nrefused)++;
		/* A transient refusal outranks a permanent one: retrying may
		 * yet deliver to that recipient. */
		if (c == 0 || *worst == 0 || c < *worst)
			*worst = c == 0 ? 421 : c;
		log_sanitize(sj->job->rcpt[i], strlen(sj->job->rcpt[i]), safe,
			     sizeof(safe));
		n = snprintf(buf + used, bufsz - used, "%s%s %d",
			     used > 0 ? ", " : "", safe, c);
		if (n < 0 || (size_t)n >= bufsz - used)
			break;
		used += (size_t)n;
	}
}

/* "queued as ID" in the final reply: the smarthost's id, or NULL. */
static const char *
queue_id(const char *text, char *buf, size_t bufsz)
{
	const char *p = strstr(text, "queued as ");
	size_t n;

	if (p == NULL)
		return NULL;
	p += strlen("queued as ");
	n = strcspn(p, " ;,()<>");
	if (n == 0 || n >= bufsz)
		return NULL;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return buf;
}

static void
classify_ok(const struct smtp_job *sj, struct connector_result *res,
	    char *detail, size_t detailsz, char *idbuf, size_t idsz)
{
	char refused[LINK_DETAIL_MAX];
	size_t nrefused;
	int worst;

	res->outcome = OUTCOME_DELIVERED;
	res->provider_message_id = queue_id(sj->d.final_text, idbuf, idsz);
	refused_list(sj, refused, sizeof(refused), &nrefused, &worst);
	if (nrefused > 0) {
		detail_set(detail, detailsz, "smtp %s; refused %zu of %zu: %s",
			   sj->d.final_text, nrefused, sj->job->nrcpt, refused);
		res->detail = detail;
	}
}

/* A failed transfer: the step it stopped at decides the class. */
static void
classify_fail(const struct smtp_job *sj, struct connector_result *res,
	      char *detail, size_t detailsz)
{
	const struct smtp_dialogue *d = &sj->d;
	char refused[LINK_DETAIL_MAX], safe[CURL_ERROR_SIZE];
	size_t nrefused;
	int worst;

	res->detail = detail;
	if (d->data_go && d->final_code == 0) {
		/* The smarthost may have the whole message: a retry may
		 * duplicate it.  A body cut short is discarded by it. */
		res->outcome =
		    sj->body_eof ? OUTCOME_AMBIGUOUS : OUTCOME_TRANSIENT;
		detail_set(detail, detailsz, "smtp no answer after %s: %s",
			   sj->body_eof ? "the data" : "part of the data",
			   curl_easy_strerror(sj->rc));
		return;
	}
	if (d->final_code >= 400) {
		res->outcome = code_outcome(d->final_code);
		detail_set(detail, detailsz, "smtp data refused: %s",
			   d->final_text);
		return;
	}
	refused_list(sj, refused, sizeof(refused), &nrefused, &worst);
	if (d->mail_code >= 200 && d->mail_code < 300 && nrefused > 0 &&
	    nrefused == sj->job->nrcpt) {
		res->outcome = code_outcome(worst);
		detail_set(detail, detailsz, "smtp every recipient refused: %s",
			   refused);
		return;
	}
	if (d->last_code >= 400) {
		res->outcome = session_outcome(d->last_cmd, d->last_code);
		detail_set(detail, detailsz, "smtp %s refused: %s",
			   d->last_cmd[0] != '\0' ? d->last_cmd : "greeting",
			   d->last_text);
		return;
	}
	/* Connection refused, TLS failure, timeout before the data. */
	res->outcome =
	    sj->rc == CURLE_LOGIN_DENIED ? OUTCOME_ACCOUNT : OUTCOME_TRANSIENT;
	log_sanitize(sj->errbuf, strnlen(sj->errbuf, sizeof(sj->errbuf)), safe,
		     sizeof(safe));
	detail_set(detail, detailsz, "smtp %s: %s", curl_easy_strerror(sj->rc),
		   safe[0] != '\0' ? safe : "-");
}

/* On the loop. */
static void
send_done(void *arg)
{
	struct smtp_job *sj = arg;
	struct smtp *s = sj->s;
	struct connector_result res;
	char detail[LINK_DETAIL_MAX + 1], idbuf[128];

	if (atomic_load(&s->closing))
		goto out;
	memset(&res, 0, sizeof(res));
	if (sj->rc == CURLE_OK && sj->d.final_code >= 200 &&
	    sj->d.final_code < 300)
		classify_ok(sj, &res, detail, sizeof(detail), idbuf,
			    sizeof(idbuf));
	else
		classify_fail(sj, &res, detail, sizeof(detail));
	if (res.outcome == OUTCOME_DELIVERED ||
	    res.outcome == OUTCOME_PERMANENT)
		s->failures = 0;
	else
		s->failures++;
	if (res.detail != NULL)
		log_info("%s agent smtp_answer provider=%s outcome=%s "
			 "detail=\"%s\"",
			 sj->job->message_id, s->name,
			 outcome_name(res.outcome), res.detail);
	s->done(sj->job, &res, s->arg);
out:
	free(sj->d.rcpt_code);
	free(sj);
}

static int
smtp_send(void *state, struct connector_job *job)
{
	struct smtp *s = state;
	struct smtp_job *sj;

	if (atomic_load(&s->closing))
		return -ESHUTDOWN;
	if (job->nrcpt == 0)
		return -EINVAL;
	sj = xcalloc(1, sizeof(*sj));
	sj->s = s;
	sj->job = job;
	sj->d.rcpt_code = xcalloc(job->nrcpt, sizeof(*sj->d.rcpt_code));
	workq_submit(s->wq, send_work, send_done, sj);
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
	/* The workers are gone: each idle connection says QUIT, its wait
	 * bounded by the last transfer's response timeout. */
	while (s->npool > 0)
		curl_easy_cleanup(s->pool[--s->npool]);
	free(s->pool);
	if (s->pool_inited)
		pthread_mutex_destroy(&s->pool_lock);
	if (s->curl_inited)
		curl_global_cleanup();
	free(s);
}

static void
smtp_close(void *state)
{
	struct smtp *s = state;

	if (s == NULL)
		return;
	atomic_store(&s->closing, true);
	/* Waits for the transfers under way, which stop at their next
	 * progress call (about once a second at most); their completions
	 * drop them. */
	if (s->wq != NULL)
		workq_free(s->wq);
	smtp_free(s);
}

static enum smtp_tls
tls_mode(const char *word)
{
	if (word == NULL || strcmp(word, "starttls") == 0)
		return SMTP_TLS_STARTTLS;
	if (strcmp(word, "implicit") == 0)
		return SMTP_TLS_IMPLICIT;
	return SMTP_TLS_NONE;
}

/* A number key already checked by smtp_config_check, or def. */
static long
key_long(const struct provider_config *pc, const char *key, long def)
{
	const char *v = provider_config_get(pc, key);
	char *end;
	long n;

	if (v == NULL)
		return def;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0')
		return def;
	return n;
}

static char *
make_url(const struct provider_config *pc, enum smtp_tls tls)
{
	const char *host = provider_config_get(pc, "host");
	const char *helo = provider_config_get(pc, "helo");
	long port = key_long(pc, "port",
			     tls == SMTP_TLS_IMPLICIT   ? 465
			     : tls == SMTP_TLS_STARTTLS ? 587
							: 25);
	char name[256];
	bool v6 = strchr(host, ':') != NULL;

	if (helo == NULL) {
		/* curl greets with the URL's path: our host name. */
		if (gethostname(name, sizeof(name)) != 0 || name[0] == '\0')
			snprintf(name, sizeof(name), "localhost");
		name[sizeof(name) - 1] = '\0';
		helo = name;
	}
	return xasprintf("%s://%s%s%s:%ld/%s",
			 tls == SMTP_TLS_IMPLICIT ? "smtps" : "smtp",
			 v6 ? "[" : "", host, v6 ? "]" : "", port, helo);
}

static int
smtp_open(const struct provider_config *pc, struct event_base *base,
	  connector_done_cb done, void *arg, void **state, char *err,
	  size_t errlen)
{
	struct smtp *s = NULL;
	const char *pw = provider_config_get(pc, "password_file");
	char serr[256];
	int rc = -EINVAL;

	if (provider_config_get(pc, "host") == NULL) {
		snprintf(err, errlen, "provider %s: smtp needs the key 'host'",
			 pc->name);
		return -EINVAL;
	}
	s = xcalloc(1, sizeof(*s));
	s->name = xstrdup(pc->name);
	s->tls = tls_mode(provider_config_get(pc, "tls"));
	s->url = make_url(pc, s->tls);
	s->username = xstrdup_or_null(provider_config_get(pc, "username"));
	s->ca_file = xstrdup_or_null(provider_config_get(pc, "tls_ca_file"));
	s->connect_ms =
	    key_long(pc, "connect_timeout_ms", SMTP_CONNECT_TIMEOUT_MS);
	s->request_ms =
	    key_long(pc, "request_timeout_ms", SMTP_REQUEST_TIMEOUT_MS);
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
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "provider %s: libcurl will not start",
			 pc->name);
		rc = -ENOMEM;
		goto fail;
	}
	s->curl_inited = true;
	if (pthread_mutex_init(&s->pool_lock, NULL) != 0) {
		snprintf(err, errlen, "provider %s: cannot start workers",
			 pc->name);
		rc = -ENOMEM;
		goto fail;
	}
	s->pool_inited = true;
	s->nthreads = pc->max_in_flight < 1 ? 1
		      : pc->max_in_flight > SMTP_THREADS_MAX
			  ? SMTP_THREADS_MAX
			  : pc->max_in_flight;
	s->pool = xcalloc((size_t)s->nthreads, sizeof(*s->pool));
	s->wq = workq_new(base, s->nthreads);
	if (s->wq == NULL) {
		snprintf(err, errlen, "provider %s: cannot start workers",
			 pc->name);
		rc = -ENOMEM;
		goto fail;
	}
	*state = s;
	return 0;
fail:
	smtp_free(s);
	return rc;
}

static void
check_range(struct provider_config *pc, struct config_report *r,
	    const char *key, long lo, long hi)
{
	const char *v = provider_config_get(pc, key);
	char *end;
	long n;

	if (v == NULL)
		return;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi)
		config_report_error(r, provider_config_line(pc, key),
				    "%s: must be a whole number from %ld to "
				    "%ld",
				    key, lo, hi);
}

static void
smtp_config_check(struct provider_config *pc, const struct config *cfg,
		  struct config_report *r)
{
	const char *tls = provider_config_get(pc, "tls");
	const char *host = provider_config_get(pc, "host");
	const char *ca = provider_config_get(pc, "tls_ca_file");
	bool user = provider_config_get(pc, "username") != NULL;
	bool pw = provider_config_get(pc, "password_file") != NULL;

	(void)cfg;
	if (host != NULL && (host[0] == '\0' || strpbrk(host, "/@ ") != NULL))
		config_report_error(r, provider_config_line(pc, "host"),
				    "host: must be a host name or address");
	if (tls != NULL && strcmp(tls, "none") != 0 &&
	    strcmp(tls, "starttls") != 0 && strcmp(tls, "implicit") != 0)
		config_report_error(r, provider_config_line(pc, "tls"),
				    "tls: must be none, starttls or implicit");
	check_range(pc, r, "port", 1, 65535);
	check_range(pc, r, "connect_timeout_ms", 1, CONNECTOR_TIMEOUT_MAX_MS);
	check_range(pc, r, "request_timeout_ms", 1, CONNECTOR_TIMEOUT_MAX_MS);
	if (user != pw)
		config_report_error(r, provider_config_line(pc, "username"),
				    "username and password_file go together");
	/* A password never crosses the network in clear. */
	if (user && tls != NULL && strcmp(tls, "none") == 0)
		config_report_error(
		    r, provider_config_line(pc, "username"),
		    "username needs tls = starttls or implicit");
	if (ca != NULL && access(ca, R_OK) != 0)
		config_report_error(r, provider_config_line(pc, "tls_ca_file"),
				    "tls_ca_file: cannot read %s: %s", ca,
				    strerror(errno));
}

static const char *const smtp_required[] = {"host", NULL};
static const char *const smtp_optional[] = {
    "port", "tls",         "username",           "password_file",
    "helo", "tls_ca_file", "connect_timeout_ms", "request_timeout_ms",
    NULL};
static const char *const smtp_secret[] = {"password_file", NULL};

static const struct config_ptype smtp_config = {
    .name = "smtp",
    .required = smtp_required,
    .optional = smtp_optional,
    .secret = smtp_secret,
    .check = smtp_config_check,
};

static const struct connector_ops smtp_ops = {
    .name = "smtp",
    .config = &smtp_config,
    .open = smtp_open,
    .send = smtp_send,
    .health = smtp_health,
    .close = smtp_close,
};

CONNECTOR_REGISTER(smtp_ops)
