/*
 * The HTTP/1.1 server of httpd.h: a listener and one explicit state
 * machine per connection (memcached's conn states, OpenSMTPD's one
 * transition function).  A connection serves one request at a time: its
 * reads are off while the front holds the request and while the answer is
 * flushed, so pipelined requests wait in the kernel, in order, and the
 * memory of a connection is its head (64 KiB at most) plus a body the
 * budget has granted.
 *
 * Time is a deadline per state, never a timeout reset by each byte (so a
 * peer cannot hold a connection by trickling): the head within
 * header_timeout_s of the accept or of its first byte, the body within
 * that plus length / min_body_rate, an idle kept-alive connection for
 * idle_timeout_s.  A head that breaks a rule is answered (400, 408, 411,
 * 413, 431, 505, 503) and the connection closed gracefully: the write side
 * is shut and what the peer still sends is read and dropped for a moment,
 * so it reads the answer rather than a reset.  A streamed answer
 * (httpd_stream.c) leaves the connection in CONN_STREAM until its owner
 * ends it or the peer goes away.  Out of descriptors, accept
 * pauses and retries on a timer (100 ms doubling to 1 s), with one log
 * line when it starts and one when it ends.
 */
#include "server/httpd.h"
#include "server/httpd_int.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ACCEPT_RETRY_MIN_MS 100
#define ACCEPT_RETRY_MAX_MS 1000

static const char *const state_names[] = {"head", "handler", "body",  "write",
					  "idle", "linger",  "stream"};

static void conn_read(struct bufferevent *bev, void *arg);

void
httpd__conn_set_state(struct httpd_conn *c, enum conn_state st,
		      int64_t deadline_ms)
{
	struct timeval tv;

	log_debug("- http state peer=%s from=%s to=%s", c->peer,
		  state_names[c->state], state_names[st]);
	c->state = st;
	if (st == CONN_HANDLER || st == CONN_WRITE)
		bufferevent_disable(c->bev, EV_READ);
	else
		bufferevent_enable(c->bev, EV_READ);
	if (deadline_ms <= 0) {
		evtimer_del(c->timer);
		return;
	}
	tv.tv_sec = (time_t)(deadline_ms / 1000);
	tv.tv_usec = (suseconds_t)(deadline_ms % 1000) * 1000;
	if (evtimer_add(c->timer, &tv) != 0)
		log_warnx("- http cannot arm a connection deadline");
}

const char *
httpd__reason(int status)
{
	switch (status) {
	case 100:
		return "Continue";
	case 200:
		return "OK";
	case 202:
		return "Accepted";
	case 304:
		return "Not Modified";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 411:
		return "Length Required";
	case 413:
		return "Content Too Large";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 501:
		return "Not Implemented";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return status < 300 ? "OK" : status < 500 ? "Error" : "Failure";
	}
}

void
httpd__req_release(struct httpd_req *r)
{
	r->c->h->reserved -= r->reserved;
	r->reserved = 0;
	free(r->body);
	r->body = NULL;
	r->body_len = r->body_want = 0;
	r->extra_len = 0;
	r->own_cache = false;
	r->auth[0] = '\0';
	r->body_cb = NULL;
}

/* Ready for the next request on a kept-alive connection. */
static void
conn_next(struct httpd_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	c->head_len = 0;
	c->scanned = 0;
	memset(&c->req.head, 0, sizeof(c->req.head));
	c->req.body_done = false;
	httpd__conn_set_state(c, CONN_IDLE,
			      (int64_t)c->h->lim.idle_timeout_s * 1000);
	/* A pipelined request is already here: no read event will come. */
	if (evbuffer_get_length(in) > 0)
		conn_read(c->bev, c);
}

/* The answer is out: the next request, or a graceful close. */
void
httpd__conn_written(struct bufferevent *bev, void *arg)
{
	struct httpd_conn *c = arg;

	if (c->state == CONN_STREAM) {
		/* All that was queued is with the kernel: room for more. */
		if (c->stream_drain != NULL)
			c->stream_drain(c->stream_arg);
		return;
	}
	if (c->state != CONN_WRITE)
		return;
	if (!c->close) {
		conn_next(c);
		return;
	}
	/* Shut our side and drop what still comes, so the peer reads the
	 * answer rather than a reset caused by unread data. */
	if (shutdown(bufferevent_getfd(bev), SHUT_WR) != 0) {
		httpd__conn_free(c);
		return;
	}
	httpd__conn_set_state(c, CONN_LINGER, LINGER_MS);
}

/* The Date of answers, remade once a second rather than per answer. */
const char *
httpd__date(struct httpd *h)
{
	time_t now = time(NULL);
	struct tm tm;

	if (now != h->date_sec || h->date[0] == '\0') {
		h->date_sec = now;
		if (gmtime_r(&now, &tm) == NULL ||
		    strftime(h->date, sizeof(h->date),
			     "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
			h->date[0] = '\0';
	}
	return h->date;
}

void
httpd_reply(struct httpd_req *r, int status, const char *ctype,
	    const void *body, size_t len)
{
	struct httpd_conn *c = r->c;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	bool head_only =
	    (r->head.method != NULL && strcmp(r->head.method, "HEAD") == 0) ||
	    status == 304;
	char clen[48] = "";
	int rc;

	if (c->state == CONN_WRITE || c->state == CONN_IDLE ||
	    c->state == CONN_LINGER || c->state == CONN_STREAM)
		fatalx("- http reply in state %s", state_names[c->state]);
	if (c->gone) {
		c->state = CONN_LINGER;
		httpd__conn_free(c);
		return;
	}
	/* A body left unread would be taken for the next request; an
	 * HTTP/1.0 client gets no keep-alive (one request, then close). */
	if (!r->body_done || !r->head.keep_alive || r->head.method == NULL ||
	    r->head.minor == 0)
		c->close = true;
	/* A 304 has no body, and a length would be taken for the file's
	 * (RFC 9110, 8.6); the console's files set their own caching. */
	if (status != 304)
		snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", len);
	rc = evbuffer_add_printf(
	    out,
	    "HTTP/1.1 %d %s\r\nDate: %s\r\n"
	    "Content-Type: %s\r\n" HTTPD_NOSNIFF "%s%s%.*s%s\r\n",
	    status, httpd__reason(status), httpd__date(c->h), ctype, clen,
	    r->own_cache ? "" : "Cache-Control: no-store\r\n",
	    (int)r->extra_len, r->extra,
	    c->close ? "Connection: close\r\n" : "");
	if (rc < 0 || (!head_only && len > 0 && evbuffer_add(out, body, len)))
		c->close = true; /* out of memory: the peer sees a cut */
	httpd__req_release(r);
	httpd__conn_set_state(c, CONN_WRITE, WRITE_TIMEOUT_S * 1000);
}

void
httpd_reply_error(struct httpd_req *r, int status, const char *code,
		  const char *message)
{
	char body[512];
	int n;

	/* Our own codes and messages: nothing to escape. */
	n = snprintf(body, sizeof(body),
		     "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code,
		     message);
	if (n < 0 || (size_t)n >= sizeof(body))
		n = 0;
	httpd_reply(r, status, "application/json", body, (size_t)n);
}

bool
httpd_req_add_header(struct httpd_req *r, const char *name, const char *value)
{
	size_t room = sizeof(r->extra) - r->extra_len;
	int n =
	    snprintf(r->extra + r->extra_len, room, "%s: %s\r\n", name, value);

	if (n < 0 || (size_t)n >= room) {
		r->extra[r->extra_len] = '\0';
		return false;
	}
	r->extra_len += (size_t)n;
	if (strcasecmp(name, "Cache-Control") == 0)
		r->own_cache = true;
	return true;
}

const struct httpd_head *
httpd_req_head(const struct httpd_req *r)
{
	return &r->head;
}

const char *
httpd_req_header(const struct httpd_req *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->head.nheaders; i++)
		if (strcasecmp(r->head.headers[i].name, name) == 0)
			return r->head.headers[i].value;
	return NULL;
}

void
httpd_req_set_auth(struct httpd_req *r, const char *id)
{
	snprintf(r->auth, sizeof(r->auth), "%s", id);
}

const char *
httpd_req_auth(const struct httpd_req *r)
{
	return r->auth;
}

const char *
httpd_req_peer(const struct httpd_req *r)
{
	return r->c->peer;
}

const uint8_t *
httpd_req_client_key(const struct httpd_req *r)
{
	return r->c->client->key;
}

const char *
httpd_req_body(const struct httpd_req *r, size_t *len)
{
	*len = r->body != NULL ? r->body_len : 0;
	return r->body != NULL ? r->body : "";
}

/* Moves body bytes in; runs the handler's callback once all are there. */
static void
body_read(struct httpd_conn *c)
{
	struct httpd_req *r = &c->req;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t n = evbuffer_get_length(in);
	int got;

	if (n > r->body_want - r->body_len)
		n = r->body_want - r->body_len;
	if (n > 0) {
		got = evbuffer_remove(in, r->body + r->body_len, n);
		if (got < 0) {
			httpd__conn_free(c);
			return;
		}
		r->body_len += (size_t)got;
	}
	if (r->body_len < r->body_want)
		return;
	r->body[r->body_len] = '\0';
	r->body_done = true;
	httpd__conn_set_state(c, CONN_HANDLER, 0);
	r->body_cb(r, r->body_arg);
}

void
httpd_req_read_body(struct httpd_req *r, size_t max, httpd_body_cb cb,
		    void *arg)
{
	struct httpd_conn *c = r->c;
	struct httpd *h = c->h;
	uint64_t want = r->head.has_length ? r->head.content_length : 0;
	int64_t ms;

	if (want > max) {
		httpd_reply_error(r, 413, "too_large",
				  "request body too large");
		return;
	}
	if ((int64_t)want > h->lim.body_budget - h->reserved) {
		log_warnx_rl(&h->budget_rl, 10000,
			     "- http body budget spent peer=%s "
			     "length=%" PRIu64 " reserved=%" PRId64,
			     c->peer, want, h->reserved);
		(void)httpd_req_add_header(r, "Retry-After", "1");
		httpd_reply_error(r, 503, "unavailable",
				  "too many bodies in progress, retry");
		return;
	}
	r->body = malloc((size_t)want + 1);
	if (r->body == NULL) {
		(void)httpd_req_add_header(r, "Retry-After", "1");
		httpd_reply_error(r, 503, "unavailable", "out of memory");
		return;
	}
	r->reserved = (int64_t)want;
	h->reserved += r->reserved;
	r->body_want = (size_t)want;
	r->body_len = 0;
	r->body_cb = cb;
	r->body_arg = arg;
	/* Only now, with the key and the length accepted. */
	if (r->head.expect_continue && r->head.minor == 1 && want > 0 &&
	    bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25) !=
		0) {
		c->close = true;
		httpd_reply_error(r, 503, "unavailable", "out of memory");
		return;
	}
	ms = (int64_t)h->lim.header_timeout_s * 1000 +
	     (int64_t)want * 1000 / h->lim.min_body_rate;
	httpd__conn_set_state(c, CONN_BODY, ms);
	body_read(c);
}

/* Our answer to a head we refuse; the connection closes after it. */
static void
head_refuse(struct httpd_conn *c, enum httpd_head_rc rc)
{
	struct httpd_req *r = &c->req;
	size_t n = 0;
	char clean[80];

	/* The request line only: a header could carry a key. */
	while (n < c->head_len && c->head[n] != '\r' && c->head[n] != '\n')
		n++;
	log_warnx_rl(&c->h->bad_rl, 10000,
		     "- http bad request peer=%s rc=%d line=\"%s\"", c->peer,
		     (int)rc, log_sanitize(c->head, n, clean, sizeof(clean)));
	c->close = true;
	switch (rc) {
	case HTTPD_HEAD_TOO_BIG:
		httpd_reply_error(r, 431, "too_large",
				  "request head too large");
		break;
	case HTTPD_HEAD_CHUNKED:
		httpd_reply_error(r, 411, "length_required",
				  "send the body with a Content-Length");
		break;
	case HTTPD_HEAD_VERSION:
		httpd_reply_error(r, 505, "bad_request",
				  "only HTTP/1.0 and HTTP/1.1");
		break;
	default:
		httpd_reply_error(r, 400, "bad_request", "malformed request");
		break;
	}
}

/* Copies what came in into the head buffer, at most up to its cap. */
static int
head_take(struct httpd_conn *c, struct evbuffer *in)
{
	size_t n = evbuffer_get_length(in), cap;
	int got;

	if (n > HTTPD_HEAD_MAX - c->head_len)
		n = HTTPD_HEAD_MAX - c->head_len;
	if (c->head_len + n > c->head_cap) {
		cap = c->head_cap > 0 ? c->head_cap : 2048;
		while (cap < c->head_len + n)
			cap *= 2;
		if (cap > HTTPD_HEAD_MAX)
			cap = HTTPD_HEAD_MAX;
		c->head = xrealloc(c->head, cap);
		c->head_cap = cap;
	}
	got = evbuffer_remove(in, c->head + c->head_len, n);
	if (got < 0)
		return -EIO;
	c->head_len += (size_t)got;
	return 0;
}

static void
head_read(struct httpd_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct httpd_req *r = &c->req;
	enum httpd_head_rc rc;
	size_t end = 0;

	if (head_take(c, in) != 0) {
		httpd__conn_free(c);
		return;
	}
	rc = httpd_head_scan(c->head, c->head_len, &c->scanned, &end);
	if (rc == HTTPD_HEAD_MORE && c->head_len == HTTPD_HEAD_MAX)
		rc = HTTPD_HEAD_TOO_BIG;
	if (rc == HTTPD_HEAD_MORE)
		return;
	if (rc == HTTPD_HEAD_OK && end < c->head_len) {
		/* The start of the body or of the next request. */
		if (evbuffer_prepend(in, c->head + end, c->head_len - end)) {
			httpd__conn_free(c);
			return;
		}
		c->head_len = end;
	}
	if (rc == HTTPD_HEAD_OK)
		rc = httpd_head_parse(c->head, c->head_len, &r->head);
	if (rc != HTTPD_HEAD_OK) {
		/* The parse may have left a partial head: keep no method. */
		memset(&r->head, 0, sizeof(r->head));
		head_refuse(c, rc);
		return;
	}
	r->body_done = !r->head.has_length || r->head.content_length == 0;
	httpd__conn_set_state(c, CONN_HANDLER, 0);
	c->h->head_cb(r, c->h->arg);
}

static void
conn_read(struct bufferevent *bev, void *arg)
{
	struct httpd_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	switch (c->state) {
	case CONN_IDLE:
		/* The first byte starts the head's deadline. */
		httpd__conn_set_state(
		    c, CONN_HEAD, (int64_t)c->h->lim.header_timeout_s * 1000);
		head_read(c);
		break;
	case CONN_HEAD:
		head_read(c);
		break;
	case CONN_BODY:
		body_read(c);
		break;
	case CONN_LINGER:
	case CONN_STREAM:
		/* Nothing more is expected from the peer: dropped. */
		(void)evbuffer_drain(in, evbuffer_get_length(in));
		break;
	default:
		break; /* reads are off: a late event */
	}
}

static void
conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct httpd_conn *c = arg;

	/* Outside CONN_HANDLER the front holds nothing of the connection. */
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	if (c->state == CONN_HANDLER) {
		/* A "100 Continue" that could not go out: the front still
		 * owes its answer, which will free the connection. */
		c->gone = true;
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		return;
	}
	if (c->state == CONN_STREAM) {
		httpd__stream_lost(c);
		return;
	}
	httpd__conn_free(c);
}

static void
conn_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct httpd_conn *c = arg;

	switch (c->state) {
	case CONN_HEAD:
	case CONN_BODY:
		log_warnx_rl(&c->h->slow_rl, 10000,
			     "- http request too slow peer=%s state=%s",
			     c->peer, state_names[c->state]);
		if (c->state == CONN_HEAD)
			memset(&c->req.head, 0, sizeof(c->req.head));
		c->close = true;
		httpd_reply_error(&c->req, 408, "timeout",
				  "request not received in time");
		break;
	default:
		httpd__conn_free(c);
		break;
	}
}

void
httpd__conn_free(struct httpd_conn *c)
{
	if (c->state == CONN_HANDLER)
		fatalx("- http connection freed while its request is out");
	httpd__req_release(&c->req);
	LIST_REMOVE(c, link);
	c->h->nconns--;
	client_table_put(&c->h->clients, c->client);
	event_free(c->timer);
	bufferevent_free(c->bev);
	free(c->head);
	free(c);
}

static void
peer_name(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *a = NULL;
	int port = 0;

	if (sa->sa_family == AF_INET) {
		a = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		port = ntohs(
		    ((const struct sockaddr_in *)(const void *)sa)->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		port = ntohs(
		    ((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	}
	if (a == NULL ||
	    inet_ntop(sa->sa_family, a, buf, (socklen_t)len) == NULL) {
		snprintf(buf, len, "?");
		return;
	}
	snprintf(buf + strlen(buf), len - strlen(buf), ":%d", port);
}

/*
 * Over http_max_connections, or http_max_client_connections for this
 * peer's client: a short 503, and the socket closed.
 */
static void
refuse_over_cap(struct httpd *h, evutil_socket_t fd, const char *peer,
		bool client)
{
	static const char all[] = "{\"error\":{\"code\":\"unavailable\","
				  "\"message\":\"too many connections\"}}";
	static const char one[] =
	    "{\"error\":{\"code\":\"unavailable\","
	    "\"message\":\"too many connections from your address\"}}";
	const char *body = client ? one : all;
	size_t body_len = client ? sizeof(one) - 1 : sizeof(all) - 1;
	char ans[320], junk[4096];
	int n, i;

	if (client)
		log_warnx_rl(&h->client_cap_rl, 10000,
			     "- http too many connections from one client "
			     "peer=%s max=%d",
			     peer, h->lim.max_client_connections);
	else
		log_warnx_rl(&h->over_cap_rl, 10000,
			     "- http too many connections peer=%s max=%d", peer,
			     h->lim.max_connections);
	n = snprintf(ans, sizeof(ans),
		     "HTTP/1.1 503 Service Unavailable\r\n"
		     "Content-Type: application/json\r\n" HTTPD_NOSNIFF
		     "Content-Length: %zu"
		     "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
		     body_len, body);
	/* Best effort on a fresh socket: its send buffer is empty.  What
	 * the peer sent already is read first, or the close would reset the
	 * connection and the answer could be lost. */
	for (i = 0; i < 16; i++)
		if (recv(fd, junk, sizeof(junk), MSG_DONTWAIT) <= 0)
			break;
	if (n > 0 && (size_t)n < sizeof(ans))
		(void)send(fd, ans, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	evutil_closesocket(fd);
}

static void
on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
	  int salen, void *arg)
{
	struct httpd *h = arg;
	struct httpd_conn *c;
	uint8_t key[16];

	if (h->refused > 0) {
		if (h->pause_said)
			log_info("- http accepting again refused=%" PRIu64,
				 h->refused);
		h->refused = 0;
		h->retry_ms = 0;
	}
	c = xcalloc(1, sizeof(*c));
	peer_name(sa, c->peer, sizeof(c->peer));
	if (h->nconns >= (size_t)h->lim.max_connections) {
		refuse_over_cap(h, fd, c->peer, false);
		free(c);
		return;
	}
	sockaddr_client_key(sa, key);
	c->client = client_table_get(&h->clients, key);
	if (h->lim.max_client_connections > 0 &&
	    c->client->count >= (unsigned)h->lim.max_client_connections) {
		refuse_over_cap(h, fd, c->peer, true);
		free(c);
		return;
	}
	c->client->count++;
	c->h = h;
	c->bev = bufferevent_socket_new(h->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = c->bev ? evtimer_new(h->base, conn_timeout, c) : NULL;
	if (c->timer == NULL) {
		log_warnx_rl(&h->oom_rl, 10000,
			     "- http cannot take a connection: out of memory");
		if (c->bev != NULL)
			bufferevent_free(c->bev);
		else
			evutil_closesocket(fd);
		client_table_put(&h->clients, c->client);
		free(c);
		return;
	}
	c->req.c = c;
	LIST_INSERT_HEAD(&h->conns, c, link);
	h->nconns++;
	bufferevent_setcb(c->bev, conn_read, httpd__conn_written, conn_event,
			  c);
	c->state = CONN_HEAD;
	httpd__conn_set_state(c, CONN_HEAD,
			      (int64_t)h->lim.header_timeout_s * 1000);
}

static void
accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct httpd *h = arg;

	if (h->lis != NULL && evconnlistener_enable(h->lis) != 0)
		log_warnx("- http cannot resume accepting");
}

/*
 * accept(2) failed for want of a resource (EMFILE, ENFILE, ENOBUFS):
 * libevent would try again at once, for ever.  Pause, retry on a timer
 * that backs off, and say so once per episode, and of the episodes once
 * per 10 s: a peer that frees a descriptor and takes it again ends one
 * and starts the next at every retry.  The end is said only after a
 * beginning that was.
 */
static void
on_accept_error(struct evconnlistener *lis, void *arg)
{
	struct httpd *h = arg;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv;

	if (h->refused++ == 0)
		h->pause_said =
		    log_warnx_rl(&h->accept_rl, 10000,
				 "- http accept failed, pausing error=\"%s\"",
				 evutil_socket_error_to_string(err));
	h->retry_ms = h->retry_ms == 0 ? ACCEPT_RETRY_MIN_MS : h->retry_ms * 2;
	if (h->retry_ms > ACCEPT_RETRY_MAX_MS)
		h->retry_ms = ACCEPT_RETRY_MAX_MS;
	tv.tv_sec = h->retry_ms / 1000;
	tv.tv_usec = (h->retry_ms % 1000) * 1000;
	if (evconnlistener_disable(lis) != 0 || evtimer_add(h->retry, &tv))
		log_warnx("- http cannot pause accepting");
}

static int
bound_port(evutil_socket_t fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int
listen_on(struct httpd *h, const char *host, int port, char *err, size_t errlen)
{
	struct addrinfo hints, *ai = NULL;
	char service[16];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(host, service, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host,
			 gai_strerror(rc));
		return -1;
	}
	h->lis = evconnlistener_new_bind(
	    h->base, on_accept, h,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    128, ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(ai);
	if (h->lis == NULL) {
		snprintf(err, errlen, "cannot bind: %s", strerror(errno));
		return -1;
	}
	evconnlistener_set_error_cb(h->lis, on_accept_error);
	h->port = bound_port(evconnlistener_get_fd(h->lis));
	return 0;
}

struct httpd *
httpd_new(struct event_base *base, const char *host, int port,
	  const struct httpd_limits *lim, httpd_head_cb head_cb, void *arg,
	  char *err, size_t errlen)
{
	struct httpd *h = xcalloc(1, sizeof(*h));

	h->base = base;
	h->lim = *lim;
	if (h->lim.min_body_rate <= 0)
		h->lim.min_body_rate = 1;
	h->head_cb = head_cb;
	h->arg = arg;
	LIST_INIT(&h->conns);
	h->retry = evtimer_new(base, accept_retry, h);
	if (h->retry == NULL) {
		snprintf(err, errlen, "evtimer_new failed");
		goto fail;
	}
	if (listen_on(h, host, port, err, errlen) != 0)
		goto fail;
	return h;
fail:
	httpd_free(h);
	return NULL;
}

void
httpd_stop_accepting(struct httpd *h)
{
	if (h->lis != NULL) {
		evconnlistener_free(h->lis);
		h->lis = NULL;
	}
	if (h->retry != NULL)
		evtimer_del(h->retry);
}

void
httpd_free(struct httpd *h)
{
	struct httpd_conn *c;

	if (h == NULL)
		return;
	httpd_stop_accepting(h);
	while (!LIST_EMPTY(&h->conns)) {
		c = LIST_FIRST(&h->conns);
		if (c->state == CONN_STREAM) {
			/* Its owner hears of it, once, and forgets it. */
			httpd__stream_lost(c);
			continue;
		}
		c->state =
		    CONN_LINGER; /* the front is gone: drop its request */
		httpd__conn_free(c);
	}
	if (h->retry != NULL)
		event_free(h->retry);
	free(h);
}

int
httpd_port(const struct httpd *h)
{
	return h->port;
}

size_t
httpd_connections(const struct httpd *h)
{
	return h->nconns;
}

int64_t
httpd_body_reserved(const struct httpd *h)
{
	return h->reserved;
}

size_t
httpd_streams(const struct httpd *h)
{
	return h->nstreams;
}
