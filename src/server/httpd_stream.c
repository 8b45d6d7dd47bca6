/*
 * Streamed answers of httpd.h (Server-Sent Events): the request's
 * connection moves to CONN_STREAM, where no deadline runs and reads stay
 * on only so that a peer that goes away is noticed at once (its bytes are
 * dropped).  The answer is close-delimited: no Content-Length, no chunked
 * coding, "Connection: close", so any HTTP/1.x client reads it to the end.
 *
 * Memory is what the owner queues, capped per stream (max_unsent: a write
 * past it is refused and the owner drops the peer), plus the kernel's send
 * buffer, which is pinned small here so that a peer that stops reading
 * cannot make the kernel hold megabytes per stream either (loopback and
 * autotuning would grow it to several MiB).  A stream ends in one of three
 * ways: its owner ends it (flushed or dropped), the peer goes away (a read
 * sees EOF or an error), or httpd_free(); the last two tell the owner
 * through on_close, exactly once.
 */
#include "server/httpd.h"
#include "server/httpd_int.h"
#include "common/log.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

/* The kernel's send buffer of a stream (Linux doubles it). */
#define STREAM_SNDBUF (32 * 1024)

int
httpd_req_stream_begin(struct httpd_req *r, int status, const char *ctype,
		       size_t max_unsent, httpd_stream_cb on_close,
		       httpd_stream_cb on_drain, void *arg)
{
	struct httpd_conn *c = r->c;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	int sndbuf = STREAM_SNDBUF;

	if (c->state != CONN_HANDLER)
		fatalx("- http stream begun in state %d", (int)c->state);
	if (c->gone)
		return -EPIPE;
	if (evbuffer_add_printf(out,
				"HTTP/1.1 %d %s\r\nDate: %s\r\n"
				"Content-Type: %s\r\n" HTTPD_NOSNIFF
				"Cache-Control: no-store\r\n%.*s"
				"Connection: close\r\n\r\n",
				status, httpd__reason(status),
				httpd__date(c->h), ctype, (int)r->extra_len,
				r->extra) < 0)
		return -ENOMEM;
	if (setsockopt(bufferevent_getfd(c->bev), SOL_SOCKET, SO_SNDBUF,
		       &sndbuf, sizeof(sndbuf)) != 0)
		log_debug("- http stream cannot pin its send buffer peer=%s",
			  c->peer);
	c->close = true;
	c->stream_max = max_unsent;
	c->stream_close = on_close;
	c->stream_drain = on_drain;
	c->stream_arg = arg;
	c->h->nstreams++;
	httpd__req_release(r);
	httpd__conn_set_state(c, CONN_STREAM, 0);
	return 0;
}

int
httpd_req_stream_write(struct httpd_req *r, const void *data, size_t len)
{
	struct httpd_conn *c = r->c;
	struct evbuffer *out;

	if (c->state != CONN_STREAM)
		return -EPIPE;
	out = bufferevent_get_output(c->bev);
	if (len > c->stream_max ||
	    evbuffer_get_length(out) > c->stream_max - len)
		return -ENOBUFS;
	if (evbuffer_add(out, data, len) != 0)
		return -ENOMEM;
	return 0;
}

size_t
httpd_req_stream_unsent(const struct httpd_req *r)
{
	return evbuffer_get_length(bufferevent_get_output(r->c->bev));
}

/* The stream is over: no callback of its owner may run after this. */
static void
stream_leave(struct httpd_conn *c)
{
	c->stream_close = NULL;
	c->stream_drain = NULL;
	c->stream_arg = NULL;
	c->h->nstreams--;
}

void
httpd_req_stream_end(struct httpd_req *r, bool flush)
{
	struct httpd_conn *c = r->c;

	/* From inside on_close: the connection is being freed already. */
	if (c->state != CONN_STREAM)
		return;
	stream_leave(c);
	if (!flush) {
		c->state = CONN_LINGER;
		httpd__conn_free(c);
		return;
	}
	/* The usual end of a closing answer: flush, shut, linger. */
	httpd__conn_set_state(c, CONN_WRITE, WRITE_TIMEOUT_S * 1000);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		httpd__conn_written(c->bev, c);
}

void
httpd__stream_lost(struct httpd_conn *c)
{
	httpd_stream_cb cb = c->stream_close;
	void *arg = c->stream_arg;

	stream_leave(c);
	c->state = CONN_LINGER;
	if (cb != NULL)
		cb(arg);
	httpd__conn_free(c);
}
