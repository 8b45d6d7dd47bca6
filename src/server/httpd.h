/*
 * A lean, strict HTTP/1.1 server on libevent bufferevents (httpd.c), made
 * for the API of http_front.c: one request at a time per connection, its
 * head checked byte by byte and parsed by nodejs http-parser, handed to
 * the front as soon as it is complete, before any of its body is read.
 * The front routes and checks the API key at that point and then either
 * answers at once or asks for the body with a cap (httpd_req_read_body),
 * which reserves the declared length from a server-wide memory budget.
 *
 * Every answer comes from the front (JSON) or from here with the same
 * {"error":{"code","message"}} shape; a malformed head is a 400 and the
 * connection is closed.  Bodies must be framed by one Content-Length:
 * chunked is refused with 411 (curl and the usual clients send a length).
 * Limits: http_max_connections, http_max_client_connections (from one
 * IPv4 address or IPv6 /64, as the SMTP intake counts them; common/
 * clients.h), http_header_timeout_s for the whole head,
 * a body deadline of that plus length / http_min_body_rate, and
 * http_body_budget_bytes.  An accept that fails (out of descriptors)
 * pauses accepting and retries on a timer.  A route may answer with a
 * stream instead (Server-Sent Events): close-delimited, without deadlines,
 * its queue capped (httpd_req_stream_begin below).
 */
#ifndef SHIVNERI_HTTPD_H
#define SHIVNERI_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct httpd;
struct httpd_req;

/* Caps of a request head (HTTPD_HEAD_* are answered 431). */
#define HTTPD_HEAD_MAX (64 * 1024)
#define HTTPD_LINE_MAX (8 * 1024)
#define HTTPD_HEADERS_MAX 100

struct httpd_limits {
	int max_connections;
	int max_client_connections; /* from one client (clients.h); 0: none */
	int header_timeout_s;
	int64_t body_budget;   /* bytes of bodies in progress, all requests */
	int64_t min_body_rate; /* bytes per second */
	int idle_timeout_s;    /* between requests of a kept-alive connection */
};

/*
 * Called once a request head is complete and valid, before its body is
 * read.  The handler must eventually call httpd_reply() (now or from a
 * later callback), possibly after httpd_req_read_body().  The request stays
 * valid until then, even if its client goes away.
 */
typedef void (*httpd_head_cb)(struct httpd_req *r, void *arg);
/* The body is in (httpd_req_body); the handler owes a reply. */
typedef void (*httpd_body_cb)(struct httpd_req *r, void *arg);

/* One header, pointers into the request's head (NUL-terminated). */
struct httpd_header {
	const char *name;
	const char *value;
};

/* A parsed request head: everything points into the buffer given. */
struct httpd_head {
	const char *method; /* http-parser's name: "GET", "POST", ... */
	const char *target; /* the raw origin-form target */
	char path[1024];    /* target up to '?', NUL-terminated */
	int minor;          /* HTTP/1.minor */
	bool keep_alive;
	bool has_length;
	uint64_t content_length;
	bool expect_continue;
	struct httpd_header headers[HTTPD_HEADERS_MAX];
	size_t nheaders;
};

/* The result of httpd_head_scan / httpd_head_parse. */
enum httpd_head_rc {
	HTTPD_HEAD_OK = 0,
	HTTPD_HEAD_MORE = 1,     /* scan: no end of head yet */
	HTTPD_HEAD_BAD = -1,     /* 400 */
	HTTPD_HEAD_TOO_BIG = -2, /* 431: line, head or header count */
	HTTPD_HEAD_CHUNKED = -3, /* 411: Transfer-Encoding: chunked */
	HTTPD_HEAD_VERSION = -4, /* 505 */
};

/*
 * Checks the raw bytes buf[0..len) of a head in progress, from *scanned
 * (the bytes before it were checked already; updated): every line ends in
 * CRLF (no bare CR or LF), no line is longer than HTTPD_LINE_MAX, no
 * header line starts with a space (obs-fold), no NUL.  HTTPD_HEAD_OK with
 * *end the length of the head (its empty line included), MORE, or an
 * error.  A pure function, for the fuzzer.
 */
enum httpd_head_rc httpd_head_scan(const char *buf, size_t len, size_t *scanned,
				   size_t *end);
/*
 * Parses a whole head (as httpd_head_scan found it) in place: buf is
 * modified (NULs end names and values) and h points into it.  Refuses what
 * the scan let through but HTTP forbids or we do not take: an invalid
 * method, target or version, a space before a colon, two Content-Length
 * headers, a length that is not plain digits, any Transfer-Encoding.  A
 * pure function, for the fuzzer.
 */
enum httpd_head_rc httpd_head_parse(char *buf, size_t len,
				    struct httpd_head *h);

/*
 * Listens on host:port; NULL with err filled on failure.  head_cb gets
 * every request.
 */
struct httpd *httpd_new(struct event_base *base, const char *host, int port,
			const struct httpd_limits *lim, httpd_head_cb head_cb,
			void *arg, char *err, size_t errlen);
/* Closes every connection; requests still in a handler are dropped. */
void httpd_free(struct httpd *h);
int httpd_port(const struct httpd *h);
/* Stops accepting; requests in progress are still answered. */
void httpd_stop_accepting(struct httpd *h);
/* Open connections, and bytes of bodies reserved (for tests, metrics). */
size_t httpd_connections(const struct httpd *h);
int64_t httpd_body_reserved(const struct httpd *h);

const struct httpd_head *httpd_req_head(const struct httpd_req *r);
/* The value of the first header of that name (any case), or NULL. */
const char *httpd_req_header(const struct httpd_req *r, const char *name);
/* The peer's address as text, for log lines. */
const char *httpd_req_peer(const struct httpd_req *r);
/* The peer as a client of the per-client limits (sockaddr_client_key,
 * clients.h): 16 bytes, valid while the request's connection is open. */
const uint8_t *httpd_req_client_key(const struct httpd_req *r);
/*
 * Who the front authenticated (an opaque name of at most 31 bytes, cut if
 * longer), kept with the request until it is answered; "" by default.
 */
void httpd_req_set_auth(struct httpd_req *r, const char *id);
const char *httpd_req_auth(const struct httpd_req *r);
/* The body read by httpd_req_read_body, NUL-terminated; "" before. */
const char *httpd_req_body(const struct httpd_req *r, size_t *len);

/*
 * Reads the declared body, up to max bytes: a larger declared length is
 * answered 413 here; a length the budget cannot hold now is answered 503
 * with Retry-After.  Either way cb is not called (the request is
 * answered).  Otherwise "100 Continue" goes out if the client asked, and
 * cb runs once the body is in.
 */
void httpd_req_read_body(struct httpd_req *r, size_t max, httpd_body_cb cb,
			 void *arg);
/*
 * Adds a header line to the answer to come (name and value trusted, no
 * CR or LF); false when the room for them (512 bytes) is spent.
 */
bool httpd_req_add_header(struct httpd_req *r, const char *name,
			  const char *value);
/*
 * Answers the request and ends it: r is invalid afterwards.  A client
 * that went away is not written to.  HEAD requests get no body.
 */
void httpd_reply(struct httpd_req *r, int status, const char *ctype,
		 const void *body, size_t len);
/* An error answer in our JSON shape (code and message trusted text). */
void httpd_reply_error(struct httpd_req *r, int status, const char *code,
		       const char *message);

/*
 * Streamed answers (httpd_stream.c), for Server-Sent Events: a head with
 * no Content-Length and "Connection: close", then bytes as the owner
 * writes them, until either side ends it; the connection closes with it.
 * No header, idle or body deadline applies to an open stream; what the
 * peer sends meanwhile is read (to see it go away) and dropped.
 */
typedef void (*httpd_stream_cb)(void *arg);

/*
 * Answers r with status and ctype (and the headers added before) and
 * leaves it open for httpd_req_stream_write().  max_unsent caps the bytes
 * queued for the peer: a write past it is refused.  on_close (required)
 * runs once if the stream ends without httpd_req_stream_end(): the peer
 * went away or failed, or httpd_free(); r is invalid once it returns, and
 * it must not call the stream functions.  on_drain (or NULL) runs each
 * time everything queued has gone to the kernel: the moment to write more
 * of a backlog.  0, or -EPIPE (the peer went away while the front held
 * the request) or -ENOMEM: then nothing was sent, no callback will run,
 * and the caller still owes an answer (httpd_reply, which frees a
 * connection whose peer is gone).  Not for HEAD requests (reply instead).
 */
int httpd_req_stream_begin(struct httpd_req *r, int status, const char *ctype,
			   size_t max_unsent, httpd_stream_cb on_close,
			   httpd_stream_cb on_drain, void *arg)
    __attribute__((warn_unused_result));
/*
 * Queues len bytes for the peer: 0; -ENOBUFS when they would take the
 * queue past max_unsent (a peer that does not read: nothing was queued,
 * and the owner should end the stream), -ENOMEM, or -EPIPE once the
 * stream is over.  Never calls the callbacks.
 */
int httpd_req_stream_write(struct httpd_req *r, const void *data, size_t len)
    __attribute__((warn_unused_result));
/* Bytes queued and not yet handed to the kernel. */
size_t httpd_req_stream_unsent(const struct httpd_req *r);
/*
 * Ends the stream: with flush, what is queued still goes out (within the
 * write deadline) before the close; without, it is dropped and the
 * connection closed at once (a peer too slow to keep).  r is invalid
 * afterwards; on_close does not run.
 */
void httpd_req_stream_end(struct httpd_req *r, bool flush);
/* Streams open now (for metrics and tests). */
size_t httpd_streams(const struct httpd *h);

#endif
