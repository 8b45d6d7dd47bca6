/*
 * One SMTP session: an explicit state machine on a bufferevent (every
 * transition through smtp__set_state(), which traces it and turns reads
 * on or off).  This file reads, writes and keeps the session's life; the
 * commands themselves (each a check, then a proceed, as in OpenSMTPD) are
 * smtp_cmd.c's and AUTH smtp_login.c's.
 *
 * Commands are read a line at a time from the input buffer, so a
 * pipelined batch (RFC 2920) is answered in order, and nothing is read
 * while the replies pile up unread (more than OUT_HIGH bytes): the
 * client's own flow control bounds the session's memory.  The line cap is
 * SMTP_LINE_MAX; a longer line is dropped to its end and answered 500.
 *
 * DATA goes through smtp_data_feed() straight from the input buffer's
 * chunks into the message buffer, which starts with our Received header
 * and never passes max_message_bytes.  At the end the message goes to
 * submit_mime() and reads stop until its callback: the reply comes only
 * from there, so "250 ... queued as ID" means the commit is on disk.  A
 * client that goes away meanwhile is noted; the session is freed when the
 * callback comes.  A client gone in the middle of DATA stores nothing.
 *
 * Time: the idle deadline (timeout_s) restarts when a command line is
 * complete or DATA makes progress, never on a lone byte of a command;
 * the whole session is cut at max_session_s.  Either gives 421 4.4.2.
 */
#include "intake/smtp_int.h"
#include "common/cidr.h"
#include "common/util.h"
#include "intake/message.h"
#include "intake/smtp_proto.h"
#include "intake/smtp_tls.h"
#include "intake/submit.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Replies waiting for the client beyond this: stop reading commands. */
#define OUT_HIGH (64 * 1024)
/* Bytes read ahead of the parser at most. */
#define IN_HIGH (256 * 1024)
/*
 * The same two bounds for a session that may not send (neither trusted
 * nor authenticated).  It has a few short commands to say (EHLO,
 * STARTTLS, AUTH) and nothing to gain from reading far ahead, while an
 * outsider may open smtp_max_connections of them: with the bounds above
 * 512 such sessions held 160 MiB.  Still room for a whole command line.
 */
#define OUT_HIGH_LOCKED (16 * 1024)
#define IN_HIGH_LOCKED (16 * 1024)
_Static_assert(IN_HIGH_LOCKED >= 2 * SMTP_LINE_MAX, "a line must fit");
/* After our last reply: how long the peer's bytes are read and dropped. */
#define LINGER_MS 1000
/* A last reply that the peer does not read is given up after this. */
#define CLOSE_FLUSH_MS 10000
#define DATA_VECS 16

static const char *const state_names[] = {"cmd",      "data",  "submit",
					  "starttls", "auth",  "auth_check",
					  "closing",  "linger"};

static void session_drive(struct smtp_session *ss);
static void session_free(struct smtp_session *ss);
static void session_close(struct smtp_session *ss);

/* The one place the state changes: reads and the trace follow. */
void
smtp__set_state(struct smtp_session *ss, enum smtp_state st)
{
	log_debug("- smtp state peer=%s from=%s to=%s", ss->peer,
		  state_names[ss->state], state_names[st]);
	/* The drain waits for messages in DATA (smtp_server_pending). */
	if (ss->state == SMTP_STATE_DATA)
		ss->srv->in_data--;
	if (st == SMTP_STATE_DATA)
		ss->srv->in_data++;
	ss->state = st;
	/*
	 * SUBMIT leaves reads on: session_drive() parses nothing until the
	 * reply, and the read-ahead cap (IN_HIGH) bounds what piles up, so
	 * turning them off and on would only cost two epoll_ctl a message.
	 */
	if (st == SMTP_STATE_CLOSING || st == SMTP_STATE_STARTTLS ||
	    st == SMTP_STATE_AUTH_CHECK)
		bufferevent_disable(ss->bev, EV_READ);
	else
		bufferevent_enable(ss->bev, EV_READ);
}

/*
 * Arms the timer for ms, or less when the session's end comes first.  The
 * timer says which it was armed for: libevent counts from the time its
 * loop turn began, so a timer set for the session's end may fire a few
 * milliseconds before mono_ms() reaches it, and must not then be taken
 * for an idle timeout.
 */
static void
timer_arm(struct smtp_session *ss, int64_t ms, bool cap_by_session)
{
	int64_t left = ss->session_end_ms - mono_ms();
	struct timeval tv;

	ss->timer_ends_session = cap_by_session && left <= ms;
	if (ss->timer_ends_session)
		ms = left > 0 ? left : 0;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	if (evtimer_add(ss->timer, &tv) != 0)
		log_warnx("- smtp cannot arm a session deadline");
}

void
smtp__idle_arm(struct smtp_session *ss)
{
	timer_arm(ss, (int64_t)ss->srv->opt.timeout_s * 1000, true);
}

/*
 * Where replies are queued: on a plain socket our own buffer, which
 * flush() writes straight to the socket; under TLS the bufferevent's.
 */
struct evbuffer *
smtp__outq(struct smtp_session *ss)
{
	return ss->tls ? bufferevent_get_output(ss->bev) : ss->out;
}

/* May this session send mail?  Its bounds follow (see IN_HIGH_LOCKED). */
static bool
trusted_or_authed(const struct smtp_session *ss)
{
	return ss->trusted || ss->authed;
}

/* Replies waiting beyond this: no command is read. */
static size_t
out_high(const struct smtp_session *ss)
{
	return trusted_or_authed(ss) ? OUT_HIGH : OUT_HIGH_LOCKED;
}

void
smtp__read_bounds(struct smtp_session *ss)
{
	bufferevent_setwatermark(ss->bev, EV_READ, 0,
				 trusted_or_authed(ss) ? IN_HIGH
						       : IN_HIGH_LOCKED);
}

/* Reply bytes not yet taken by the kernel. */
static size_t
unsent(struct smtp_session *ss)
{
	return evbuffer_get_length(ss->out) +
	       evbuffer_get_length(bufferevent_get_output(ss->bev));
}

/*
 * The queued replies go out now, rather than after the next turn of the
 * loop: a bufferevent writes only once epoll has reported the socket
 * writable, which costs two epoll_ctl and one more wakeup for every reply
 * of a protocol that is all round trips.  What the kernel does not take
 * goes to the bufferevent (its output must stay in order behind it), which
 * writes it when it can and calls on_write.  Never frees the session:
 * once the last reply of a closing session (or the 220 of STARTTLS) is
 * out, the next step runs from the timer.
 */
static void
flush(struct smtp_session *ss)
{
	struct evbuffer *bout = bufferevent_get_output(ss->bev);

	if (evbuffer_get_length(ss->out) > 0) {
		/* An error is left for the bufferevent's write to report. */
		if (evbuffer_get_length(bout) == 0)
			(void)evbuffer_write(ss->out,
					     bufferevent_getfd(ss->bev));
		if (evbuffer_get_length(ss->out) > 0 &&
		    bufferevent_write_buffer(ss->bev, ss->out) != 0)
			ss->gone = true;
	}
	if (unsent(ss) == 0 && (ss->state == SMTP_STATE_CLOSING ||
				ss->state == SMTP_STATE_STARTTLS))
		timer_arm(ss, 0, false);
}

void
smtp__reply(struct smtp_session *ss, int code, const char *ehn,
	    const char *text)
{
	char line[600];
	size_t n = smtp_reply_format(line, sizeof(line), code, ehn, text, true);

	if (evbuffer_add(smtp__outq(ss), line, n) != 0)
		ss->gone = true; /* out of memory: the close will follow */
}

static void
reply_r(struct smtp_session *ss, const struct smtp_reply *r)
{
	smtp__reply(ss, r->code, r->ehn, r->text);
}

/* 421 and a graceful close: the reply goes out, then the socket. */
void
smtp__reply_421(struct smtp_session *ss, const char *ehn, const char *text)
{
	smtp__reply(ss, 421, ehn, text);
	session_close(ss);
}

/*
 * A refused command: replied, and counted; past max_bad_commands the
 * session ends with 421 instead (Postfix's smtpd_hard_error_limit).
 */
void
smtp__reply_bad(struct smtp_session *ss, const struct smtp_reply *r)
{
	if (++ss->bad >= ss->srv->opt.max_bad_commands) {
		log_warnx_rl(&ss->srv->rl[SMTP_RL_BAD_COMMANDS], SMTP_RL_MS,
			     "- smtp bad_commands peer=%s bad=%d", ss->peer,
			     ss->bad);
		smtp__reply_421(ss, "4.7.0",
				"Too many errors, closing connection");
		return;
	}
	reply_r(ss, r);
}

/*
 * Counts what the message buffer holds now in the server's data_mem; past
 * smtp_data_budget_bytes, this message is dropped (452 4.3.1 at its end)
 * and its memory given back at once.  The loop runs one session at a
 * time, so the budget is passed by at most one buffer's growth.
 */
void
smtp__charge(struct smtp_session *ss)
{
	struct smtp_server *s = ss->srv;

	s->data_mem = s->data_mem - ss->charged + ss->data.alloc;
	ss->charged = ss->data.alloc;
	if (s->data_mem <= s->opt.data_budget || ss->data.over)
		return;
	log_warnx_rl(&s->rl[SMTP_RL_BUDGET], SMTP_RL_MS,
		     "- smtp data_budget_spent peer=%s held=%zu budget=%zu",
		     ss->peer, s->data_mem, s->opt.data_budget);
	ss->no_room = true;
	smtp_data_drop(&ss->data);
	s->data_mem -= ss->charged;
	ss->charged = 0;
}

void
smtp__tx_reset(struct smtp_session *ss)
{
	size_t i;

	ss->srv->data_mem -= ss->charged;
	ss->charged = 0;
	ss->no_room = false;
	ss->ours = 0;
	free(ss->mail_from);
	ss->mail_from = NULL;
	for (i = 0; i < ss->nrcpt; i++)
		free(ss->rcpt[i]);
	free(ss->rcpt);
	ss->rcpt = NULL;
	ss->nrcpt = 0;
	ss->in_tx = false;
	ss->smtputf8 = false;
	smtp_data_cleanup(&ss->data);
}

/* --- reading ----------------------------------------------------------- */

/*
 * The next command line out of the input, if a whole one is there; an
 * overlong line is dropped to its end and answered.  True when something
 * was done (more may follow).
 */
static bool
cmd_step(struct smtp_session *ss)
{
	static const struct smtp_reply too_long = {500, "5.5.2",
						   "Line too long"};
	struct evbuffer *in = bufferevent_get_input(ss->bev);
	size_t avail = evbuffer_get_length(in), n, len;
	char line[SMTP_LINE_MAX + 1];
	unsigned char *run;
	const char *p, *nl;

	if (avail == 0 || unsent(ss) > out_high(ss))
		return false;
	n = avail < SMTP_LINE_MAX ? avail : SMTP_LINE_MAX;
	if ((run = evbuffer_pullup(in, (ev_ssize_t)n)) == NULL)
		return false;
	p = (const char *)run;
	nl = memchr(p, '\n', n);
	if (ss->skipping) {
		/* An overlong line is wiped as it goes: it may be AUTH's. */
		len = nl != NULL ? (size_t)(nl - p) + 1 : n;
		explicit_bzero(run, len);
		(void)evbuffer_drain(in, len);
		if (nl == NULL)
			return true;
		ss->skipping = false;
		smtp__idle_arm(ss);
		if (ss->state == SMTP_STATE_AUTH)
			smtp__auth_too_long(ss);
		else
			smtp__reply_bad(ss, &too_long);
		return true;
	}
	if (nl == NULL) {
		if (n < SMTP_LINE_MAX)
			return false;
		ss->skipping = true;
		explicit_bzero(run, n);
		(void)evbuffer_drain(in, n);
		return true;
	}
	len = (size_t)(nl - p);
	memcpy(line, p, len);
	/*
	 * The line may carry a credential (AUTH PLAIN's response, LOGIN's
	 * lines): the input buffer's bytes go too, not only our copy below.
	 * pullup made them one run in libevent's memory, ours to write.
	 */
	explicit_bzero(run, len + 1);
	(void)evbuffer_drain(in, len + 1);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	smtp__idle_arm(ss);
	if (ss->state == SMTP_STATE_AUTH)
		smtp__auth_line(ss, line, len);
	else
		smtp__command(ss, line, len);
	/* It may have held a credential. */
	explicit_bzero(line, len);
	return true;
}

static void submitted(void *arg, const struct submit_reply *r);

/*
 * Does the client's message start with a space or a tab?  Its first line
 * would then be a continuation of our Received header, in front of it:
 * the client could append to our trace header.  message_from_mime()
 * refuses a message that starts so, but sees ours first, so the check is
 * made here, with its words.
 */
static bool
folds_into_ours(const struct smtp_session *ss)
{
	char c;

	if (ss->data.len <= ss->ours)
		return false;
	c = ss->data.p[ss->ours];
	return c == ' ' || c == '\t';
}

/* The end of DATA: refused at once, or handed to the submit path. */
static void
data_end(struct smtp_session *ss)
{
	if (ss->no_room) {
		smtp__reply(ss, 452, "4.3.1",
			    "Insufficient system storage, try again later");
		smtp__tx_reset(ss);
		smtp__set_state(ss, SMTP_STATE_CMD);
		return;
	}
	if (ss->data.over) {
		log_warnx_rl(&ss->srv->rl[SMTP_RL_TOO_LARGE], SMTP_RL_MS,
			     "- smtp too_large peer=%s bytes=%llu", ss->peer,
			     (unsigned long long)ss->data.seen);
		smtp__reply(ss, 552, "5.3.4", "Message too big for system");
		smtp__tx_reset(ss);
		smtp__set_state(ss, SMTP_STATE_CMD);
		return;
	}
	if (folds_into_ours(ss)) {
		smtp__reply(ss, 554, "5.6.0",
			    "Message refused: message: starts with a "
			    "continuation");
		smtp__tx_reset(ss);
		smtp__set_state(ss, SMTP_STATE_CMD);
		return;
	}
	ss->env.mail_from = ss->mail_from;
	ss->env.rcpt = (const char *const *)ss->rcpt;
	ss->env.nrcpt = ss->nrcpt;
	smtp__set_state(ss, SMTP_STATE_SUBMIT);
	ss->srv->pending++;
	/* The submit path may answer before it returns (a refusal). */
	submit_mime(ss->srv->sub, ss->data.p, ss->data.len, &ss->env, NULL,
		    NULL, submitted, ss);
}

/* Message bytes out of the input; true when some were taken. */
static bool
data_step(struct smtp_session *ss)
{
	struct evbuffer *in = bufferevent_get_input(ss->bev);
	struct evbuffer_iovec v[DATA_VECS];
	size_t used = 0, got;
	int n, i;

	n = evbuffer_peek(in, -1, NULL, v, DATA_VECS);
	if (n > DATA_VECS)
		n = DATA_VECS;
	for (i = 0; i < n && ss->data.state != SMTP_DATA_DONE; i++) {
		got = smtp_data_feed(&ss->data, v[i].iov_base, v[i].iov_len);
		used += got;
		smtp__charge(ss);
	}
	if (used == 0)
		return false;
	(void)evbuffer_drain(in, used);
	smtp__idle_arm(ss);
	if (ss->data.state == SMTP_DATA_DONE)
		data_end(ss);
	return true;
}

/* Lines wait in the input until the replies before them are read. */
static bool
out_paused(struct smtp_session *ss)
{
	return (ss->state == SMTP_STATE_CMD || ss->state == SMTP_STATE_AUTH) &&
	       unsent(ss) > out_high(ss);
}

/*
 * Runs the state machine over what the input holds.  Reentrant calls (a
 * submit refusal answered inside data_end) leave the looping to the outer
 * call.
 */
static void
session_drive(struct smtp_session *ss)
{
	bool more = true;

	if (ss->in_drive)
		return;
	ss->in_drive = true;
	ss->resume_pending = false;
	while (more) {
		if (ss->state == SMTP_STATE_CMD || ss->state == SMTP_STATE_AUTH)
			more = cmd_step(ss);
		else if (ss->state == SMTP_STATE_DATA)
			more = data_step(ss);
		else
			more = false;
		/*
		 * Paused for the replies: write them now.  When the kernel
		 * takes them all, the bufferevent never had any to write and
		 * will never call on_write, and no read may come either (the
		 * client waits for these very replies), so the lines left in
		 * the input would wait for the idle timeout.  They are read
		 * from a deferred read callback, after the loop's other
		 * events: one call does at most OUT_HIGH of replies.
		 */
		if (!more && !ss->gone && out_paused(ss)) {
			flush(ss);
			if (!out_paused(ss)) {
				ss->resume_pending = true;
				bufferevent_trigger(
				    ss->bev, EV_READ,
				    BEV_TRIG_IGNORE_WATERMARKS |
					BEV_TRIG_DEFER_CALLBACKS);
			}
		}
		/* A session waiting for its commit or its AUTH check is
		 * freed by that answer (session_end_gone). */
		if (ss->gone && ss->state != SMTP_STATE_SUBMIT &&
		    ss->state != SMTP_STATE_AUTH_CHECK) {
			ss->in_drive = false;
			session_free(ss);
			return;
		}
	}
	ss->in_drive = false;
	/* The client shut its side: answer what it sent, then close. */
	if (ss->eof && ss->state == SMTP_STATE_DATA) {
		log_debug("- smtp client gone in DATA peer=%s bytes=%llu",
			  ss->peer, (unsigned long long)ss->data.seen);
		session_free(ss);
		return;
	}
	if (ss->eof &&
	    (ss->state == SMTP_STATE_CMD || ss->state == SMTP_STATE_AUTH) &&
	    !ss->resume_pending && unsent(ss) <= out_high(ss)) {
		/* Not paused for the replies: every whole line was read. */
		session_close(ss);
		return;
	}
	flush(ss);
}

/* --- the submit path's answer ------------------------------------------ */

/*
 * The answer a gone client's session waited for (its message's commit,
 * its AUTH check) has come: nothing of it is out any more, and the
 * session ends.  session_free() refuses a session still waiting.
 */
static void
session_end_gone(struct smtp_session *ss)
{
	ss->state = SMTP_STATE_CLOSING;
	session_free(ss);
}

static void
submitted(void *arg, const struct submit_reply *r)
{
	struct smtp_session *ss = arg;
	char text[480], clean[400];

	ss->srv->pending--;
	/*
	 * Stored is stored, whether or not the 250 can reach the client:
	 * counted like any other, and on record, since a client that never
	 * read its 250 will likely send the message again, and this line is
	 * how the duplicate is traced.
	 */
	if (r->status == 202)
		submit_count_accepted(ss->srv->sub, SUBMIT_INTAKE_SMTP);
	if (ss->gone) {
		if (r->status == 202)
			log_info("%s smtp reply_lost peer=%s reason=\"client "
				 "gone before its 250; it may send the "
				 "message again\"",
				 r->id, ss->peer);
		session_end_gone(ss);
		return;
	}
	if (r->status == 202 || r->status == 200) {
		ss->junk = 0;
		snprintf(text, sizeof(text), "Ok: queued as %s", r->id);
		smtp__reply(ss, 250, "2.0.0", text);
		log_debug("%s smtp queued peer=%s rcpts=%zu bytes=%zu", r->id,
			  ss->peer, ss->nrcpt, ss->data.len);
	} else if (r->status == 413) {
		smtp__reply(ss, 552, "5.3.4", "Message too big for system");
	} else if (r->status == 400) {
		log_sanitize(r->err->message, strlen(r->err->message), clean,
			     sizeof(clean));
		snprintf(text, sizeof(text), "Message refused: %s", clean);
		if (strncmp(r->err->message, "envelope", 8) == 0)
			smtp__reply(ss, 550, "5.1.0", text);
		else
			smtp__reply(ss, 554, "5.6.0", text);
	} else {
		log_sanitize(r->err != NULL ? r->err->message : "",
			     r->err != NULL ? strlen(r->err->message) : 0,
			     clean, sizeof(clean));
		snprintf(text, sizeof(text),
			 "Local error, message not stored: %s", clean);
		smtp__reply(ss, 451, "4.3.0", text);
	}
	smtp__tx_reset(ss);
	smtp__resume(ss);
}

void
smtp__resume(struct smtp_session *ss)
{
	if (ss->gone) {
		session_end_gone(ss);
		return;
	}
	smtp__set_state(ss, SMTP_STATE_CMD);
	smtp__idle_arm(ss);
	session_drive(ss);
}

/* --- connection events ------------------------------------------------- */

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct smtp_session *ss = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (ss->state == SMTP_STATE_LINGER) {
		(void)evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	session_drive(ss);
}

/*
 * Our last reply is out: shut our side and drop what still comes.  Over
 * TLS the close_notify alert goes first, so that the client can tell our
 * end from a connection cut by someone else (RFC 8446 6.1); the output is
 * empty here, so the alert is the socket's next bytes.  A send buffer too
 * full to take it (the client stopped reading) leaves the FIN alone.
 */
static void
linger_start(struct smtp_session *ss)
{
	SSL *ssl =
	    ss->tls && ss->tls_up ? bufferevent_openssl_get_ssl(ss->bev) : NULL;

	if (ssl != NULL && SSL_shutdown(ssl) < 0)
		ERR_clear_error();
	if (shutdown(bufferevent_getfd(ss->bev), SHUT_WR) != 0) {
		session_free(ss);
		return;
	}
	smtp__set_state(ss, SMTP_STATE_LINGER);
	(void)evbuffer_drain(
	    bufferevent_get_input(ss->bev),
	    evbuffer_get_length(bufferevent_get_input(ss->bev)));
	timer_arm(ss, LINGER_MS, false);
}

static void on_write(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* Callbacks and the read-ahead cap on a session's (new) bufferevent. */
static void
bev_setup(struct smtp_session *ss)
{
	bufferevent_setcb(ss->bev, on_read, on_write, on_event, ss);
	smtp__read_bounds(ss);
	if (ss->tls)
		bufferevent_openssl_set_allow_dirty_shutdown(ss->bev, 1);
}

/*
 * The 220 for STARTTLS is out: the socket goes under an OpenSSL
 * bufferevent that accepts the handshake.  What the client pipelined
 * after STARTTLS in plain text goes with the old buffer, unread: a command
 * smuggled there must not run inside the TLS session (CVE-2011-0411).
 * RFC 3207 4.2: what the client said before (EHLO, a transaction) is
 * forgotten; it must EHLO again.
 */
static void
tls_start(struct smtp_session *ss)
{
	evutil_socket_t fd = bufferevent_getfd(ss->bev);
	SSL *ssl = smtp_tls_ssl_new(ss->srv->tls);

	if (ssl == NULL) {
		smtp__reply(ss, 454, "4.7.0", "TLS not available now");
		smtp__set_state(ss, SMTP_STATE_CMD);
		flush(ss);
		return;
	}
	/* The old bufferevent lets go of the socket, not closes it. */
	(void)bufferevent_setfd(ss->bev, -1);
	bufferevent_free(ss->bev);
	ss->bev = bufferevent_openssl_socket_new(ss->srv->base, fd, ssl,
						 BUFFEREVENT_SSL_ACCEPTING,
						 BEV_OPT_CLOSE_ON_FREE);
	if (ss->bev == NULL) {
		SSL_free(ssl);
		evutil_closesocket(fd);
		log_warnx_rl(&ss->srv->rl[SMTP_RL_OOM], SMTP_RL_MS,
			     "- smtp cannot start TLS: out of memory");
		session_free(ss);
		return;
	}
	ss->tls = true;
	ss->helo[0] = '\0';
	ss->esmtp = false;
	ss->authed = false;
	ss->user[0] = '\0';
	bev_setup(ss);
	smtp__tx_reset(ss);
	smtp__set_state(ss, SMTP_STATE_CMD);
	smtp__idle_arm(ss);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	struct smtp_session *ss = arg;

	if (ss->state == SMTP_STATE_CLOSING)
		linger_start(ss);
	else if (ss->state == SMTP_STATE_STARTTLS)
		tls_start(ss);
	else if (ss->state == SMTP_STATE_CMD || ss->state == SMTP_STATE_AUTH)
		session_drive(ss); /* replies drained: read on */
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *ss = arg;

	if (what & BEV_EVENT_ERROR) {
		unsigned long e =
		    ss->tls ? bufferevent_get_openssl_error(bev) : 0;
		if (e != 0)
			log_warnx_rl(&ss->srv->rl[SMTP_RL_TLS], SMTP_RL_MS,
				     "- smtp tls_error peer=%s error=\"%s\"",
				     ss->peer, ERR_reason_error_string(e));
		if (ss->state == SMTP_STATE_SUBMIT ||
		    ss->state == SMTP_STATE_AUTH_CHECK) {
			ss->gone = true;
			bufferevent_disable(bev, EV_READ | EV_WRITE);
			return;
		}
		session_free(ss);
		return;
	}
	if (what & BEV_EVENT_CONNECTED)
		ss->tls_up = true; /* the TLS handshake is done */
	if (!(what & BEV_EVENT_EOF))
		return;
	ss->eof = true;
	switch (ss->state) {
	case SMTP_STATE_CMD:
	case SMTP_STATE_DATA:
	case SMTP_STATE_AUTH:
		session_drive(ss);
		break;
	case SMTP_STATE_LINGER:
		session_free(ss);
		break;
	default:
		break; /* the submit answer or the flush comes first */
	}
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *ss = arg;
	bool session_over =
	    ss->timer_ends_session || mono_ms() >= ss->session_end_ms;

	switch (ss->state) {
	case SMTP_STATE_SUBMIT:
	case SMTP_STATE_AUTH_CHECK:
		/* The store answers every submission, the worker every
		 * check; wait for it. */
		timer_arm(ss, 1000, false);
		break;
	case SMTP_STATE_CLOSING:
		/* flush() saw the last reply out, or it never went. */
		if (unsent(ss) == 0)
			linger_start(ss);
		else
			session_free(ss);
		break;
	case SMTP_STATE_STARTTLS:
		if (unsent(ss) == 0)
			tls_start(ss);
		else
			session_free(ss);
		break;
	case SMTP_STATE_LINGER:
		session_free(ss);
		break;
	default:
		log_warnx_rl(&ss->srv->rl[SMTP_RL_TIMEOUT], SMTP_RL_MS,
			     "- smtp timeout peer=%s state=%s what=%s",
			     ss->peer, state_names[ss->state],
			     ss->tls && !ss->tls_up ? "handshake"
			     : session_over         ? "session"
						    : "idle");
		/* A TLS handshake that never finished: no reply can reach
		 * the client, so waiting CLOSE_FLUSH_MS for one to go out
		 * would only hold the connection (and its client's count)
		 * longer. */
		if (ss->tls && !ss->tls_up) {
			session_free(ss);
			break;
		}
		smtp__reply_421(ss, "4.4.2",
				session_over
				    ? "Session too long, closing connection"
				    : "Timeout exceeded, closing connection");
		break;
	}
}

/* --- life cycle -------------------------------------------------------- */

static void
session_close(struct smtp_session *ss)
{
	if (ss->state == SMTP_STATE_CLOSING || ss->state == SMTP_STATE_LINGER)
		return;
	smtp__set_state(ss, SMTP_STATE_CLOSING);
	timer_arm(ss, CLOSE_FLUSH_MS, false);
	if (!ss->in_drive)
		flush(ss);
}

void
smtp__close(struct smtp_session *ss)
{
	session_close(ss);
}

static void
session_free(struct smtp_session *ss)
{
	if (ss->state == SMTP_STATE_SUBMIT ||
	    ss->state == SMTP_STATE_AUTH_CHECK)
		fatalx("- smtp session freed while its %s is out",
		       ss->state == SMTP_STATE_SUBMIT ? "message" : "check");
	log_debug("- smtp closed peer=%s", ss->peer);
	if (ss->state == SMTP_STATE_DATA)
		ss->srv->in_data--;
	smtp__tx_reset(ss);
	LIST_REMOVE(ss, link);
	ss->srv->nsessions--;
	client_table_put(&ss->srv->clients, ss->client);
	if (ss->timer != NULL)
		event_free(ss->timer);
	if (ss->bev != NULL)
		bufferevent_free(ss->bev);
	evbuffer_free(ss->out);
	free(ss);
}

/* "[192.0.2.1]" or "[IPv6:2001:db8::1]", and "address:port" for logs. */
static void
peer_names(struct smtp_session *ss, const struct sockaddr *sa)
{
	const struct sockaddr_in6 *in6;
	char a[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in4 =
		    (const struct sockaddr_in *)(const void *)sa;
		(void)inet_ntop(AF_INET, &in4->sin_addr, a, sizeof(a));
		port = ntohs(in4->sin_port);
		snprintf(ss->addr_lit, sizeof(ss->addr_lit), "[%s]", a);
	} else if (sa->sa_family == AF_INET6) {
		in6 = (const struct sockaddr_in6 *)(const void *)sa;
		port = ntohs(in6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			(void)inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], a,
					sizeof(a));
			snprintf(ss->addr_lit, sizeof(ss->addr_lit), "[%s]", a);
		} else {
			(void)inet_ntop(AF_INET6, &in6->sin6_addr, a,
					sizeof(a));
			snprintf(ss->addr_lit, sizeof(ss->addr_lit),
				 "[IPv6:%s]", a);
		}
	} else {
		snprintf(ss->addr_lit, sizeof(ss->addr_lit), "[?]");
	}
	snprintf(ss->peer, sizeof(ss->peer), "%s:%d", a, port);
}

/*
 * The bufferevent (plain, or TLS from the first byte on an smtps_listen
 * listener) and the timer; false (fd closed) when out of memory.
 */
static bool
session_bev_new(struct smtp_session *ss, evutil_socket_t fd)
{
	struct smtp_server *s = ss->srv;
	SSL *ssl = NULL;

	ss->out = evbuffer_new();
	if (ss->out == NULL) {
		evutil_closesocket(fd);
		return false;
	}
	if (ss->lis->implicit_tls) {
		ssl = smtp_tls_ssl_new(s->tls);
		if (ssl == NULL) {
			evutil_closesocket(fd);
			return false;
		}
		ss->tls = true;
		ss->bev = bufferevent_openssl_socket_new(
		    s->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
		    BEV_OPT_CLOSE_ON_FREE);
	} else {
		ss->bev =
		    bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (ss->bev == NULL) {
		if (ssl != NULL)
			SSL_free(ssl);
		evutil_closesocket(fd);
		return false;
	}
	ss->timer = evtimer_new(s->base, on_timer, ss);
	if (ss->timer == NULL) {
		bufferevent_free(ss->bev);
		return false;
	}
	return true;
}

void
smtp__session_start(struct smtp_listener *l, evutil_socket_t fd,
		    const struct sockaddr *sa, struct client_count *cl)
{
	struct smtp_server *s = l->srv;
	struct smtp_session *ss = xcalloc(1, sizeof(*ss));
	char greet[320];

	ss->srv = s;
	ss->lis = l;
	ss->client = cl;
	peer_names(ss, sa);
	ss->trusted = s->trusted != NULL && cidr_list_match(s->trusted, sa);
	smtp_data_init(&ss->data, s->opt.max_message_bytes);
	ss->session_end_ms = mono_ms() + (int64_t)s->opt.max_session_s * 1000;
	if (!session_bev_new(ss, fd)) {
		log_warnx_rl(&s->rl[SMTP_RL_OOM], SMTP_RL_MS,
			     "- smtp cannot take a connection: out of memory");
		client_table_put(&s->clients, cl);
		if (ss->out != NULL)
			evbuffer_free(ss->out);
		free(ss);
		return;
	}
	LIST_INSERT_HEAD(&s->sessions, ss, link);
	s->nsessions++;
	log_debug("- smtp connected peer=%s trusted=%s", ss->peer,
		  ss->trusted ? "yes" : "no");
	bev_setup(ss);
	ss->state = SMTP_STATE_CMD;
	smtp__set_state(ss, SMTP_STATE_CMD);
	snprintf(greet, sizeof(greet), "%s ESMTP Shivneri", s->hostname);
	smtp__reply(ss, 220, NULL, greet);
	smtp__idle_arm(ss);
	flush(ss);
}

void
smtp__sessions_drain(struct smtp_server *s)
{
	struct smtp_session *ss, *next;

	for (ss = LIST_FIRST(&s->sessions); ss != NULL; ss = next) {
		next = LIST_NEXT(ss, link);
		/* Mid-DATA and mid-submission sessions finish first. */
		if (ss->state == SMTP_STATE_CMD && !ss->in_tx)
			smtp__reply_421(ss, "4.3.2", "Service shutting down");
	}
}

void
smtp__sessions_free(struct smtp_server *s)
{
	struct smtp_session *ss;

	while (!LIST_EMPTY(&s->sessions)) {
		ss = LIST_FIRST(&s->sessions);
		if (ss->state == SMTP_STATE_SUBMIT)
			ss->state = SMTP_STATE_CLOSING; /* cannot happen */
		session_free(ss);
	}
}
