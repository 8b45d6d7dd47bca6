/*
 * mailbox: a mutex-protected singly linked FIFO plus an eventfd whose
 * readability wakes the loop; the loop swaps the whole list out under the
 * lock and runs it without the lock held, so a posting thread never waits
 * on a callback.  workq: worker threads pulling from a FIFO under a
 * condition variable, completing through a mailbox.
 */
#include "common/workq.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct mb_item {
	struct mb_item *next;
	mailbox_fn fn;
	void *arg;
};

struct mailbox {
	pthread_mutex_t lock;
	struct mb_item *head, **tail;
	int efd;
	struct event *ev;
};

void
mailbox_drain(struct mailbox *mb)
{
	struct mb_item *it, *next;
	uint64_t v;

	(void)!read(mb->efd, &v, sizeof(v));
	pthread_mutex_lock(&mb->lock);
	it = mb->head;
	mb->head = NULL;
	mb->tail = &mb->head;
	pthread_mutex_unlock(&mb->lock);
	for (; it != NULL; it = next) {
		next = it->next;
		it->fn(it->arg);
		free(it);
	}
}

static void
mailbox_cb(evutil_socket_t fd, short what, void *arg)
{
	mailbox_drain(arg);
}

struct mailbox *
mailbox_new(struct event_base *base)
{
	struct mailbox *mb = xcalloc(1, sizeof(*mb));

	pthread_mutex_init(&mb->lock, NULL);
	mb->tail = &mb->head;
	mb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (mb->efd == -1)
		goto fail;
	mb->ev = event_new(base, mb->efd, EV_READ | EV_PERSIST, mailbox_cb, mb);
	if (mb->ev == NULL || event_add(mb->ev, NULL) != 0)
		goto fail;
	return mb;
fail:
	if (mb->ev != NULL)
		event_free(mb->ev);
	if (mb->efd != -1)
		close(mb->efd);
	pthread_mutex_destroy(&mb->lock);
	free(mb);
	return NULL;
}

void
mailbox_free(struct mailbox *mb)
{
	if (mb == NULL)
		return;
	mailbox_drain(mb);
	event_free(mb->ev);
	close(mb->efd);
	pthread_mutex_destroy(&mb->lock);
	free(mb);
}

void
mailbox_post(struct mailbox *mb, mailbox_fn fn, void *arg)
{
	struct mb_item *it = xmalloc(sizeof(*it));
	uint64_t one = 1;
	bool wake;

	it->next = NULL;
	it->fn = fn;
	it->arg = arg;
	pthread_mutex_lock(&mb->lock);
	wake = mb->head == NULL;
	*mb->tail = it;
	mb->tail = &it->next;
	pthread_mutex_unlock(&mb->lock);
	if (wake)
		(void)!write(mb->efd, &one, sizeof(one));
}

struct wq_item {
	struct wq_item *next;
	workq_fn work, done;
	void *arg;
};

struct workq {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct wq_item *head, **tail;
	bool stopping;
	int nthreads;
	pthread_t *threads;
	struct mailbox *mb;
};

static void
wq_done(void *arg)
{
	struct wq_item *it = arg;

	it->done(it->arg);
	free(it);
}

static void *
wq_main(void *arg)
{
	struct workq *wq = arg;
	struct wq_item *it;

	for (;;) {
		pthread_mutex_lock(&wq->lock);
		while (wq->head == NULL && !wq->stopping)
			pthread_cond_wait(&wq->cond, &wq->lock);
		it = wq->head;
		if (it == NULL) {
			pthread_mutex_unlock(&wq->lock);
			return NULL;
		}
		wq->head = it->next;
		if (wq->head == NULL)
			wq->tail = &wq->head;
		pthread_mutex_unlock(&wq->lock);
		it->work(it->arg);
		mailbox_post(wq->mb, wq_done, it);
	}
}

struct workq *
workq_new(struct event_base *base, int nthreads)
{
	struct workq *wq = xcalloc(1, sizeof(*wq));
	int i;

	pthread_mutex_init(&wq->lock, NULL);
	pthread_cond_init(&wq->cond, NULL);
	wq->tail = &wq->head;
	wq->mb = mailbox_new(base);
	if (wq->mb == NULL)
		fatalx("workq: cannot create mailbox");
	wq->threads = xcalloc((size_t)nthreads, sizeof(pthread_t));
	for (i = 0; i < nthreads; i++) {
		if (pthread_create(&wq->threads[i], NULL, wq_main, wq) != 0)
			fatalx("workq: pthread_create failed");
		wq->nthreads++;
	}
	return wq;
}

void
workq_submit(struct workq *wq, workq_fn work, workq_fn done, void *arg)
{
	struct wq_item *it = xmalloc(sizeof(*it));

	it->next = NULL;
	it->work = work;
	it->done = done;
	it->arg = arg;
	pthread_mutex_lock(&wq->lock);
	*wq->tail = it;
	wq->tail = &it->next;
	pthread_cond_signal(&wq->cond);
	pthread_mutex_unlock(&wq->lock);
}

void
workq_free(struct workq *wq)
{
	int i;

	if (wq == NULL)
		return;
	pthread_mutex_lock(&wq->lock);
	wq->stopping = true;
	pthread_cond_broadcast(&wq->cond);
	pthread_mutex_unlock(&wq->lock);
	for (i = 0; i < wq->nthreads; i++)
		pthread_join(wq->threads[i], NULL);
	mailbox_free(wq->mb);
	free(wq->threads);
	pthread_mutex_destroy(&wq->lock);
	pthread_cond_destroy(&wq->cond);
	free(wq);
}
