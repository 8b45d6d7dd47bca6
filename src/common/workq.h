/*
 * Moving work off the event loop and results back onto it.
 *
 * A mailbox carries closures from any thread to the thread running an
 * event_base: mailbox_post() is thread-safe and wakes the loop through an
 * eventfd; the callbacks run on the loop in the order posted.  A workq is a
 * small pool of threads that run blocking work (fsync, a SQLite commit) and
 * post each completion through a mailbox, so the loop itself never blocks
 * on the disk.
 */
#ifndef SHIVNERI_WORKQ_H
#define SHIVNERI_WORKQ_H

#include <stddef.h>

struct event_base;
struct mailbox;
struct workq;

typedef void (*mailbox_fn)(void *arg);

/* Returns NULL on failure (no eventfd). */
struct mailbox *mailbox_new(struct event_base *base);
/* Runs what is still posted, then frees.  NULL is a no-op. */
void mailbox_free(struct mailbox *mb);
/* Thread-safe.  fn(arg) will run on the loop thread. */
void mailbox_post(struct mailbox *mb, mailbox_fn fn, void *arg);
/* Runs everything posted so far, now, on the calling (loop) thread. */
void mailbox_drain(struct mailbox *mb);

typedef void (*workq_fn)(void *arg);

/* nthreads workers; completions run on base's loop. NULL on failure. */
struct workq *workq_new(struct event_base *base, int nthreads);
/*
 * Queues work(arg) on a worker, then done(arg) on the loop.  Never calls
 * either before returning.
 */
void workq_submit(struct workq *wq, workq_fn work, workq_fn done, void *arg);
/* Waits for queued work to finish, runs the completions, joins, frees. */
void workq_free(struct workq *wq);

#endif
