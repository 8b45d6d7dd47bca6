/*
 * The smtp connector's 7-bit conversion, which runs on a worker thread,
 * against a smarthost stand-in on the same event_base (plain SMTP on
 * loopback, lock-step, no 8BITMIME, so every 8-bit message is converted).
 * The conversion is held by the test (conn_smtp__convert is replaced by
 * one that waits for the test's word, with a deadline), so each case acts
 * while a conversion is known to be under way:
 *  - the loop goes on: another message is delivered and the 8-bit one
 *    after it, converted, when its conversion ends;
 *  - close() with one conversion under way and one queued: the queued one
 *    never starts, done() is never called, nothing leaks (ASan);
 *  - the deadline passing meanwhile: no result until the conversion ends,
 *    then one, transient, with nothing sent; never a second; a conversion
 *    still queued when its deadline passes is never begun;
 *  - the smarthost closing the session meanwhile: the message goes on a
 *    new session.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/conn_smtp.h"
#include "agent/connector.h"
#include "agent/mime_7bit.h"
#include "common/config.h"
#include "common/util.h"
#include "link/link.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <gmime/gmime.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define MAX_SESS 8
#define MAX_MSGS 8

/* The conversion the test holds: shared with the worker thread. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int started;  /* conversions begun */
	bool release; /* the test's word */
	bool expired; /* one gave up waiting for it */
	int hold_ms;  /* how long one waits for it at most */
} hold = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static int
held_convert(const uint8_t *in, size_t len, uint8_t **out, size_t *outlen)
{
	struct timespec until;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += hold.hold_ms / 1000;
	until.tv_nsec += (long)(hold.hold_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&hold.lock);
	hold.started++;
	while (!hold.release && rc == 0)
		rc = pthread_cond_timedwait(&hold.cond, &hold.lock, &until);
	if (!hold.release)
		hold.expired = true;
	pthread_mutex_unlock(&hold.lock);
	return mime_7bit(in, len, out, outlen);
}

static int
hold_started(void)
{
	int n;

	pthread_mutex_lock(&hold.lock);
	n = hold.started;
	pthread_mutex_unlock(&hold.lock);
	return n;
}

static bool
hold_expired(void)
{
	bool e;

	pthread_mutex_lock(&hold.lock);
	e = hold.expired;
	pthread_mutex_unlock(&hold.lock);
	return e;
}

static void
hold_release(void)
{
	pthread_mutex_lock(&hold.lock);
	hold.release = true;
	pthread_cond_broadcast(&hold.cond);
	pthread_mutex_unlock(&hold.lock);
}

struct fixture;

/* One session of the stand-in. */
struct sess {
	struct fixture *f;
	struct bufferevent *bev;
	bool data; /* reading the message */
};

struct fixture {
	struct event_base *base;
	struct evconnlistener *lst;
	struct event *tick; /* so that a loop turn ends while we wait */
	int port;
	char portstr[16];
	struct sess *sess[MAX_SESS];
	int nconn, nmail;
	/* Each message the stand-in took, in order. */
	char *msgs[MAX_MSGS];
	size_t msglen[MAX_MSGS];
	int nmsgs;
	/* What reached done(), in order. */
	uint64_t done_ids[MAX_MSGS];
	int done_outcome[MAX_MSGS];
	int ndone;
	const struct connector_ops *ops;
	void *st;
	/* What the stand-in says after the end of data: NULL a 250, "" it
	 * closes the session without a word, else these lines. */
	const char *verdict;
};

static void
sess_free(struct sess *ss)
{
	struct fixture *f = ss->f;
	int i;

	for (i = 0; i < MAX_SESS; i++)
		if (f->sess[i] == ss)
			f->sess[i] = NULL;
	bufferevent_free(ss->bev);
	free(ss);
}

static void
say(struct sess *ss, const char *line)
{
	bufferevent_write(ss->bev, line, strlen(line));
}

/* The end of the data: the message kept, dot-stuffing left as sent.
 * False when the stand-in closed the session (ss is gone). */
static bool
sess_data(struct sess *ss)
{
	struct fixture *f = ss->f;
	struct evbuffer *in = bufferevent_get_input(ss->bev);
	struct evbuffer_ptr end;
	size_t n;

	if (evbuffer_get_length(in) >= 3 &&
	    evbuffer_search(in, ".\r\n", 3, NULL).pos == 0) {
		/* An empty message's end directly after 354. */
		end.pos = 0;
	} else {
		end = evbuffer_search(in, "\r\n.\r\n", 5, NULL);
		if (end.pos < 0)
			return true;
		end.pos += 2;
	}
	n = (size_t)end.pos;
	assert_true(f->nmsgs < MAX_MSGS);
	f->msgs[f->nmsgs] = xmalloc(n + 1);
	evbuffer_remove(in, f->msgs[f->nmsgs], n);
	f->msgs[f->nmsgs][n] = '\0';
	f->msglen[f->nmsgs++] = n;
	evbuffer_drain(in, 3);
	ss->data = false;
	if (f->verdict != NULL && f->verdict[0] == '\0') {
		sess_free(ss);
		return false;
	}
	say(ss, f->verdict != NULL ? f->verdict : "250 2.0.0 Ok: queued\r\n");
	return true;
}

static void
sess_read(struct bufferevent *bev, void *arg)
{
	struct sess *ss = arg;
	char *line;
	size_t n;

	for (;;) {
		if (ss->data) {
			if (!sess_data(ss))
				return;
			if (ss->data)
				return;
			continue;
		}
		line = evbuffer_readln(bufferevent_get_input(bev), &n,
				       EVBUFFER_EOL_CRLF);
		if (line == NULL)
			return;
		if (strncmp(line, "EHLO", 4) == 0) {
			say(ss, "250-fake\r\n250 HELP\r\n");
		} else if (strncmp(line, "MAIL", 4) == 0) {
			ss->f->nmail++;
			say(ss, "250 2.1.0 Ok\r\n");
		} else if (strncmp(line, "RCPT", 4) == 0) {
			say(ss, "250 2.1.5 Ok\r\n");
		} else if (strcmp(line, "DATA") == 0) {
			ss->data = true;
			say(ss, "354 go\r\n");
		} else if (strcmp(line, "QUIT") == 0) {
			free(line);
			sess_free(ss);
			return;
		} else {
			say(ss, "250 Ok\r\n");
		}
		free(line);
	}
}

static void
sess_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		sess_free(arg);
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
	  int salen, void *arg)
{
	struct fixture *f = arg;
	struct sess *ss = xcalloc(1, sizeof(*ss));
	int i;

	(void)l;
	(void)sa;
	(void)salen;
	ss->f = f;
	ss->bev = bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(ss->bev);
	for (i = 0; i < MAX_SESS && f->sess[i] != NULL; i++)
		;
	assert_true(i < MAX_SESS);
	f->sess[i] = ss;
	f->nconn++;
	bufferevent_setcb(ss->bev, sess_read, NULL, sess_event, ss);
	assert_int_equal(bufferevent_enable(ss->bev, EV_READ), 0);
	say(ss, "220 fake ESMTP\r\n");
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

static void
on_done(struct connector_job *job, const struct connector_result *res,
	void *arg)
{
	struct fixture *f = arg;

	assert_true(f->ndone < MAX_MSGS);
	f->done_ids[f->ndone] = job->job_id;
	f->done_outcome[f->ndone++] = res->outcome;
}

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	struct timeval ms = {0, 1000};

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->base = event_base_new();
	assert_non_null(f->base);
	f->lst = evconnlistener_new_bind(
	    f->base, on_accept, f, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
	    16, (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(f->lst);
	assert_int_equal(getsockname(evconnlistener_get_fd(f->lst),
				     (struct sockaddr *)&sin, &len),
			 0);
	f->port = ntohs(sin.sin_port);
	snprintf(f->portstr, sizeof(f->portstr), "%d", f->port);
	f->tick = event_new(f->base, -1, EV_PERSIST, on_tick, NULL);
	assert_non_null(f->tick);
	assert_int_equal(event_add(f->tick, &ms), 0);
	f->ops = connector_lookup("smtp");
	assert_non_null(f->ops);
	pthread_mutex_lock(&hold.lock);
	hold.started = 0;
	hold.release = false;
	hold.expired = false;
	hold.hold_ms = 5000;
	pthread_mutex_unlock(&hold.lock);
	conn_smtp__convert = held_convert;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	int i;

	if (f->st != NULL)
		f->ops->close(f->st);
	for (i = 0; i < MAX_SESS; i++)
		if (f->sess[i] != NULL)
			sess_free(f->sess[i]);
	for (i = 0; i < f->nmsgs; i++)
		free(f->msgs[i]);
	event_free(f->tick);
	evconnlistener_free(f->lst);
	event_base_free(f->base);
	free(f);
	conn_smtp__convert = mime_7bit;
	return 0;
}

static void
open_smtp(struct fixture *f, char *request_ms)
{
	struct config_kv kv[] = {
	    {.key = (char *)"host", .value = (char *)"127.0.0.1"},
	    {.key = (char *)"port", .value = f->portstr},
	    {.key = (char *)"tls", .value = (char *)"none"},
	    {.key = (char *)"helo", .value = (char *)"test"},
	    {.key = (char *)"request_timeout_ms", .value = request_ms},
	};
	struct provider_config pc = {.name = (char *)"p",
				     .type = (char *)"smtp",
				     .max_in_flight = 4,
				     .kv = kv,
				     .nkv = 5};
	char err[256] = "";

	assert_int_equal(
	    f->ops->open(&pc, f->base, on_done, f, &f->st, err, sizeof(err)),
	    0);
}

/* Turns of the loop until cond(f) holds, for at most 5 s. */
static void
run_while(struct fixture *f, bool (*cond)(struct fixture *))
{
	int64_t until = mono_ms() + 5000;

	while (cond(f) && mono_ms() < until)
		assert_true(event_base_loop(f->base, EVLOOP_ONCE) >= 0);
	assert_false(cond(f));
}

static int want_done, want_started;

static bool
done_short(struct fixture *f)
{
	return f->ndone < want_done;
}

static bool
started_short(struct fixture *f)
{
	(void)f;
	return hold_started() < want_started;
}

static const char *const rcpt[] = {"bob@example.com"};

static const char msg8[] = "From: ann@example.com\r\n"
			   "To: bob@example.com\r\n"
			   "Subject: coffee\r\n"
			   "MIME-Version: 1.0\r\n"
			   "Content-Type: text/plain; charset=utf-8\r\n"
			   "Content-Transfer-Encoding: 8bit\r\n"
			   "\r\n"
			   "Un caf\xc3\xa9, s'il vous pla\xc3\xaet.\r\n";

static const char msg7[] = "From: ann@example.com\r\n"
			   "To: bob@example.com\r\n"
			   "Subject: plain\r\n"
			   "\r\n"
			   "Nothing but ASCII.\r\n";

/* A job of the test's; its strings are static, so nothing to free. */
static struct connector_job *
job_make(uint64_t id, const char *mime)
{
	struct connector_job *j = xcalloc(1, sizeof(*j));

	j->job_id = id;
	j->message_id = id == 1 ? "m1" : id == 2 ? "m2" : "m3";
	j->mail_from = "ann@example.com";
	j->rcpt = rcpt;
	j->nrcpt = 1;
	j->mime = (const uint8_t *)mime;
	j->mime_len = strlen(mime);
	return j;
}

static bool
has_8bit(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			return true;
	return false;
}

static void
test_loop_runs_while_converting(void **state)
{
	struct fixture *f = *state;
	struct connector_job *a = job_make(1, msg8), *b = job_make(2, msg7);

	open_smtp(f, "30000");
	assert_int_equal(f->ops->send(f->st, a), 0);
	want_started = 1;
	run_while(f, started_short);
	/* The 8-bit one is held on the worker: the 7-bit one goes on. */
	assert_int_equal(f->ops->send(f->st, b), 0);
	want_done = 1;
	run_while(f, done_short);
	assert_int_equal(f->done_ids[0], 2);
	assert_int_equal(f->done_outcome[0], OUTCOME_DELIVERED);
	assert_int_equal(f->nmsgs, 1);
	hold_release();
	want_done = 2;
	run_while(f, done_short);
	assert_int_equal(f->done_ids[1], 1);
	assert_int_equal(f->done_outcome[1], OUTCOME_DELIVERED);
	assert_false(hold_expired());
	assert_int_equal(hold_started(), 1);
	assert_int_equal(f->nmsgs, 2);
	assert_false(has_8bit(f->msgs[1], f->msglen[1]));
	assert_null(strstr(f->msgs[1], "Transfer-Encoding: 8bit"));
	free(a);
	free(b);
}

static void
test_close_while_converting(void **state)
{
	struct fixture *f = *state;
	struct connector_job *a = job_make(1, msg8), *b = job_make(2, msg8);

	hold.hold_ms = 300; /* close() waits for the one under way */
	open_smtp(f, "30000");
	assert_int_equal(f->ops->send(f->st, a), 0);
	want_started = 1;
	run_while(f, started_short);
	/* b takes the session a let go and queues its conversion. */
	assert_int_equal(f->ops->send(f->st, b), 0);
	assert_true(event_base_loop(f->base, EVLOOP_ONCE) >= 0);
	assert_int_equal(f->nconn, 1);
	f->ops->close(f->st);
	f->st = NULL;
	assert_int_equal(f->ndone, 0);
	assert_int_equal(hold_started(), 1); /* b's never began */
	assert_int_equal(f->nmail, 0);
	/* The jobs are the agent's again: freed now, under ASan's eye. */
	free(a);
	free(b);
	assert_true(event_base_loop(f->base, EVLOOP_NONBLOCK) >= 0);
	assert_int_equal(f->ndone, 0);
}

static void
test_timeout_while_converting(void **state)
{
	struct fixture *f = *state;
	struct connector_job *a = job_make(1, msg8);
	int64_t until;

	open_smtp(f, "100");
	assert_int_equal(f->ops->send(f->st, a), 0);
	want_started = 1;
	run_while(f, started_short);
	/* Well past the deadline: no answer while the worker reads a. */
	until = mono_ms() + 300;
	while (mono_ms() < until)
		assert_true(event_base_loop(f->base, EVLOOP_ONCE) >= 0);
	assert_int_equal(f->ndone, 0);
	hold_release();
	want_done = 1;
	run_while(f, done_short);
	assert_int_equal(f->done_outcome[0], OUTCOME_TRANSIENT);
	assert_int_equal(f->nmail, 0);
	/* Never a second answer. */
	until = mono_ms() + 200;
	while (mono_ms() < until)
		assert_true(event_base_loop(f->base, EVLOOP_ONCE) >= 0);
	assert_int_equal(f->ndone, 1);
	free(a);
}

/* Two conversions, the second queued behind the first: both deadlines
 * pass; the second is never made, and each job ends once, transient. */
static void
test_timeout_while_queued(void **state)
{
	struct fixture *f = *state;
	struct connector_job *a = job_make(1, msg8), *b = job_make(2, msg8);
	int64_t until;

	open_smtp(f, "100");
	assert_int_equal(f->ops->send(f->st, a), 0);
	want_started = 1;
	run_while(f, started_short);
	assert_int_equal(f->ops->send(f->st, b), 0);
	until = mono_ms() + 300;
	while (mono_ms() < until)
		assert_true(event_base_loop(f->base, EVLOOP_ONCE) >= 0);
	assert_int_equal(f->ndone, 0);
	hold_release();
	want_done = 2;
	run_while(f, done_short);
	assert_int_equal(f->done_outcome[0], OUTCOME_TRANSIENT);
	assert_int_equal(f->done_outcome[1], OUTCOME_TRANSIENT);
	assert_int_equal(hold_started(), 1); /* b's was never made */
	assert_int_equal(f->nmail, 0);
	free(a);
	free(b);
}

static void
test_session_closed_while_converting(void **state)
{
	struct fixture *f = *state;
	struct connector_job *a = job_make(1, msg8);
	int i;

	open_smtp(f, "30000");
	assert_int_equal(f->ops->send(f->st, a), 0);
	want_started = 1;
	run_while(f, started_short);
	/*
	 * The smarthost closes the idle session.  Whether the connector
	 * reads the close before the job comes back (the session dropped) or
	 * after (its MAIL finds it dead: a stale session, replaced), the
	 * message goes on a new one.
	 */
	for (i = 0; i < MAX_SESS; i++)
		if (f->sess[i] != NULL)
			sess_free(f->sess[i]);
	hold_release();
	want_done = 1;
	run_while(f, done_short);
	assert_int_equal(f->done_outcome[0], OUTCOME_DELIVERED);
	assert_int_equal(f->nconn, 2);
	assert_int_equal(f->nmsgs, 1);
	assert_false(has_8bit(f->msgs[0], f->msglen[0]));
	free(a);
}

/*
 * The whole message and its end went out and no verdict came: the
 * smarthost may have it, so the attempt is ambiguous (a retry elsewhere
 * may duplicate it, and the record says so), never a clean transient.
 * The session closed after the dot; a reply that is no verdict (354 again,
 * a 1xx) with the session then closed.  Until 2026-12-01 such a reply
 * after the dot read as transient, a possible duplicate off the record.
 */
static void
test_no_verdict_after_the_dot(void **state)
{
	static const char *const verdicts[] = {"", "354 go on\r\n",
					       "100-hm\r\n100 what\r\n"};
	struct fixture *f = *state;
	struct connector_job *j[3];
	size_t i;

	open_smtp(f, "5000");
	for (i = 0; i < 3; i++) {
		f->verdict = verdicts[i];
		j[i] = job_make(i + 1, msg7);
		assert_int_equal(f->ops->send(f->st, j[i]), 0);
		want_done = (int)i + 1;
		run_while(f, done_short);
		assert_int_equal(f->nmsgs, (int)i + 1);
		assert_int_equal(f->done_ids[i], i + 1);
		assert_int_equal(f->done_outcome[i], OUTCOME_AMBIGUOUS);
	}
	for (i = 0; i < 3; i++)
		free(j[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_loop_runs_while_converting,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_close_while_converting, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_timeout_while_converting,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeout_while_queued, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_session_closed_while_converting, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_verdict_after_the_dot,
					    setup, teardown),
	};
	int rc;

	/* One reference held throughout: GMime cannot start again once it
	 * has shut down, and each open() and close() counts one. */
	g_mime_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	g_mime_shutdown();
	return rc;
}
