/*
 * libcurl's multi socket interface on the agent's event_base (the
 * contract is in curl_loop.h).  curl asks, through sockcb(), for one
 * persistent libevent event per socket it wants watched (kept with
 * curl_multi_assign), and through timercb() for one timer; both hand
 * control back with curl_multi_socket_action(), after which finished
 * transfers are collected from curl_multi_info_read() and given to the
 * owner.  A 0 ms timeout fires on the next turn of the loop, never inside
 * curl.
 *
 * Failures: an event that cannot be watched fails the transfers on that
 * socket (curl's rule for a socket callback returning -1); curl's own
 * bookkeeping errors of socket_action are not ours to act on, the
 * transfers report theirs.  Nothing here is fatal but out of memory.
 */
#include "agent/curl_loop.h"
#include "common/util.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include <event2/event.h>

struct curl_loop {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	curl_loop_done_cb done;
	void *arg;
	bool in_done;      /* the owner's callback is running */
	bool free_pending; /* curl_loop_free() was called from it */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void
global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void loop_free(struct curl_loop *cl);

/* Hands every finished transfer to the owner; false when cl is gone. */
static bool
check_done(struct curl_loop *cl)
{
	CURLMsg *msg;
	CURL *easy;
	CURLcode code;
	int left;

	for (;;) {
		msg = curl_multi_info_read(cl->multi, &left);
		if (msg == NULL)
			return true;
		if (msg->msg != CURLMSG_DONE)
			continue;
		/* msg dies with the next curl call on the handle. */
		easy = msg->easy_handle;
		code = msg->data.result;
		cl->in_done = true;
		cl->done(easy, code, cl->arg);
		cl->in_done = false;
		if (cl->free_pending) {
			loop_free(cl);
			return false;
		}
	}
}

static void
sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct curl_loop *cl = arg;
	int action = 0, running = 0;

	if (what & EV_READ)
		action |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	(void)curl_multi_socket_action(cl->multi, fd, action, &running);
	(void)check_done(cl);
}

/* curl: watch s for what, or stop watching it (CURL_POLL_REMOVE). */
static int
sockcb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct curl_loop *cl = userp;
	struct event *ev = socketp;
	short flags = EV_PERSIST;

	(void)easy;
	if (ev != NULL) {
		event_free(ev);
		ev = NULL;
	}
	if (what == CURL_POLL_REMOVE) {
		(void)curl_multi_assign(cl->multi, s, NULL);
		return 0;
	}
	if (what & CURL_POLL_IN)
		flags |= EV_READ;
	if (what & CURL_POLL_OUT)
		flags |= EV_WRITE;
	ev = event_new(cl->base, s, flags, sock_event_cb, cl);
	if (ev == NULL || event_add(ev, NULL) != 0) {
		if (ev != NULL)
			event_free(ev);
		(void)curl_multi_assign(cl->multi, s, NULL);
		return -1; /* curl fails the transfers on s */
	}
	(void)curl_multi_assign(cl->multi, s, ev);
	return 0;
}

static void
timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct curl_loop *cl = arg;
	int running = 0;

	(void)fd;
	(void)what;
	(void)curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0,
				       &running);
	(void)check_done(cl);
}

/* curl: call socket_action(TIMEOUT) after timeout_ms; -1 cancels. */
static int
timercb(CURLM *multi, long timeout_ms, void *userp)
{
	struct curl_loop *cl = userp;
	struct timeval tv;

	(void)multi;
	if (timeout_ms < 0)
		return event_del(cl->timer) == 0 ? 0 : -1;
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	/* 0 fires on the next turn of the loop, never from inside curl. */
	return evtimer_add(cl->timer, &tv) == 0 ? 0 : -1;
}

struct curl_loop *
curl_loop_new(struct event_base *base, curl_loop_done_cb done, void *arg)
{
	struct curl_loop *cl;

	(void)pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return NULL;
	cl = xcalloc(1, sizeof(*cl));
	cl->base = base;
	cl->done = done;
	cl->arg = arg;
	cl->multi = curl_multi_init();
	cl->timer = evtimer_new(base, timer_event_cb, cl);
	if (cl->multi == NULL || cl->timer == NULL)
		goto fail;
	if (curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, sockcb) ||
	    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl) ||
	    curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, timercb) ||
	    curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl))
		goto fail;
	return cl;
fail:
	loop_free(cl);
	return NULL;
}

static void
loop_free(struct curl_loop *cl)
{
	/* Closing the cached connections calls sockcb(REMOVE) for each. */
	if (cl->multi != NULL)
		(void)curl_multi_cleanup(cl->multi);
	if (cl->timer != NULL)
		event_free(cl->timer);
	free(cl);
}

void
curl_loop_free(struct curl_loop *cl)
{
	if (cl == NULL)
		return;
	if (cl->in_done) {
		cl->free_pending = true;
		return;
	}
	loop_free(cl);
}

CURLM *
curl_loop_multi(struct curl_loop *cl)
{
	return cl->multi;
}
