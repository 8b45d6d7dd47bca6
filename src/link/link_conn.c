/*
 * A framed connection over a bufferevent, shared by the agent and the
 * server's agent port.
 *
 * The read callback peeks at the 4-byte length of the frame at the head of
 * the input, and only when the whole frame is there pulls it up into one
 * contiguous block (never the rest of the buffer), hands it to on_frame,
 * then drains it.  The read low watermark is raised to the bytes the frame
 * still needs so that a large JOB does not wake us per segment, and the
 * high watermark is the largest frame so that a peer cannot make us buffer
 * more than one frame: the kernel's window pushes back instead.
 *
 * Callbacks may free the connection from inside (on_frame calling
 * link_conn_free or link_conn_close, on_close calling link_conn_free): a
 * depth counter defers the real free to when the outermost callback
 * returns.  A malformed frame, EOF or a socket error ends in exactly one
 * on_close; nothing here is fatal.  The bufferevent may be an OpenSSL one
 * (link_tls.h) whose handshake is done: frames are the same inside.
 */
#include "link/link.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>

#define CLOSE_LINGER_MS 1000

struct link_conn {
	struct bufferevent *bev;
	size_t max_frame;
	link_frame_cb on_frame;
	link_close_cb on_close;
	void *arg;
	struct event *linger; /* after link_conn_close */
	int depth;            /* callbacks of ours on the stack */
	bool closed;          /* on_close ran, or the owner let go */
	bool closing;         /* link_conn_close: flushing, then free */
	bool dead;            /* free once depth drops to 0 */
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

static void
destroy(struct link_conn *c)
{
	if (c->linger != NULL)
		event_free(c->linger);
	bufferevent_free(c->bev);
	free(c);
}

/*
 * Ends a callback section: the deferred free happens here.  Kept out of
 * line: inlined into conn_read_cb, GCC's -Wuse-after-free cannot see that
 * the outer section's depth keeps c alive across an inner leave().
 */
static void __attribute__((noinline)) leave(struct link_conn *c)
{
	if (--c->depth == 0 && c->dead)
		destroy(c);
}

static void
fail(struct link_conn *c, int err)
{
	if (c->closed || c->closing || c->dead)
		return;
	c->closed = true;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	c->depth++;
	c->on_close(c, err, c->arg);
	leave(c);
}

static void
set_watermarks(struct link_conn *c, size_t low)
{
	size_t high = c->max_frame + 4;

	if (low > high)
		low = high;
	bufferevent_setwatermark(c->bev, EV_READ, low, high);
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct link_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	const uint8_t *payload;
	uint8_t hdr[4];
	size_t have, plen, consumed;
	uint32_t n;
	int type, rc;

	c->depth++;
	/* Bounded: every turn consumes a frame or returns. */
	while (!c->closed && !c->closing && !c->dead) {
		have = evbuffer_get_length(in);
		if (have < 4) {
			set_watermarks(c, 4);
			break;
		}
		if (evbuffer_copyout(in, hdr, 4) != 4)
			break;
		n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
		    (uint32_t)hdr[2] << 8 | (uint32_t)hdr[3];
		if (n == 0 || n > c->max_frame) {
			fail(c, LINK_E_TOOBIG);
			break;
		}
		if (have < (size_t)n + 4) {
			set_watermarks(c, (size_t)n + 4);
			break;
		}
		rc = link_frame_split(evbuffer_pullup(in, (ssize_t)n + 4),
				      (size_t)n + 4, c->max_frame, &type,
				      &payload, &plen, &consumed);
		if (rc != 1) {
			fail(c, rc < 0 ? rc : LINK_E_SHORT);
			break;
		}
		c->on_frame(c, type, payload, plen, c->arg);
		evbuffer_drain(in, consumed);
	}
	leave(c);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct link_conn *c = arg;
	int err = 0;

	/* Over TLS, a record that fails its check (a flipped or injected
	 * byte) is OpenSSL's error, not the socket's: say so. */
	if ((what & BEV_EVENT_ERROR) && bufferevent_get_openssl_error(bev) != 0)
		err = -EPROTO;
	else if (what & BEV_EVENT_ERROR)
		err = errno != 0 ? -errno : -ECONNRESET;
	else if (what & BEV_EVENT_TIMEOUT)
		err = -ETIMEDOUT;
	else if (!(what & BEV_EVENT_EOF))
		return;
	/* A frame cut by EOF is a truncated frame, not an orderly close. */
	if (err == 0 && evbuffer_get_length(bufferevent_get_input(bev)) > 0)
		err = LINK_E_SHORT;
	fail(c, err);
}

struct link_conn *
link_conn_new(struct bufferevent *bev, size_t max_frame, link_frame_cb on_frame,
	      link_close_cb on_close, void *arg)
{
	struct link_conn *c = xcalloc(1, sizeof(*c));
	evutil_socket_t fd;
	int one = 1;

	c->bev = bev;
	c->max_frame = max_frame;
	c->on_frame = on_frame;
	c->on_close = on_close;
	c->arg = arg;
	fd = bufferevent_getfd(bev);
	/* Frames are small and answered: do not wait for Nagle. */
	if (fd >= 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
				 sizeof(one));
	bufferevent_setcb(bev, conn_read_cb, NULL, conn_event_cb, c);
	set_watermarks(c, 4);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	/* Bytes that arrived before we took over are framed at once. */
	if (evbuffer_get_length(bufferevent_get_input(bev)) >= 4)
		bufferevent_trigger(bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
	return c;
}

void
link_conn_set_max_frame(struct link_conn *c, size_t max_frame)
{
	c->max_frame = max_frame;
	set_watermarks(c, 4);
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) >= 4)
		bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
}

struct evbuffer *
link_conn_output(struct link_conn *c)
{
	return bufferevent_get_output(c->bev);
}

size_t
link_conn_pending(const struct link_conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static void
finish(struct link_conn *c)
{
	if (c->depth > 0)
		c->dead = true;
	else
		destroy(c);
}

static void
linger_cb(evutil_socket_t fd, short what, void *arg)
{
	finish(arg);
}

static void
closing_write_cb(struct bufferevent *bev, void *arg)
{
	struct link_conn *c = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		finish(c);
}

static void
closing_event_cb(struct bufferevent *bev, short what, void *arg)
{
	finish(arg);
}

void
link_conn_close(struct link_conn *c, const char *code, const char *message)
{
	struct timeval tv = {0, 0};

	if (c == NULL || c->closing || c->dead)
		return;
	c->closing = true;
	if (code != NULL)
		(void)link_encode_error(link_conn_output(c), code, message);
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setcb(c->bev, NULL, closing_write_cb, closing_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	c->linger = evtimer_new(bufferevent_get_base(c->bev), linger_cb, c);
	if (c->linger == NULL) {
		finish(c);
		return;
	}
	if (link_conn_pending(c) > 0 && !c->closed) {
		tv.tv_sec = CLOSE_LINGER_MS / 1000;
		tv.tv_usec = (CLOSE_LINGER_MS % 1000) * 1000;
		bufferevent_enable(c->bev, EV_WRITE);
	}
	/* Nothing to flush (or a dead socket): free on the next turn. */
	evtimer_add(c->linger, &tv);
}

void
link_conn_free(struct link_conn *c)
{
	if (c == NULL)
		return;
	c->closed = true;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	if (c->linger != NULL)
		event_del(c->linger);
	finish(c);
}
