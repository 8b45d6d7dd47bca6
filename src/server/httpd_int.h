/*
 * What httpd.c (the connections and plain answers) and httpd_stream.c
 * (streamed answers) share: the connection, request and server structs and
 * the few transitions both make.  Private to httpd: the front sees only
 * httpd.h.
 */
#ifndef SHIVNERI_HTTPD_INT_H
#define SHIVNERI_HTTPD_INT_H

#include "server/httpd.h"
#include "common/clients.h"
#include "common/log.h"

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <time.h>

#define LINGER_MS 1000
/*
 * On every answer: no browser may take a JSON answer (which may quote a
 * client's words) for a page or a script because its bytes look like one.
 */
#define HTTPD_NOSNIFF "X-Content-Type-Options: nosniff\r\n"
#define WRITE_TIMEOUT_S 30
#define EXTRA_MAX 512

enum conn_state {
	CONN_HEAD,    /* reading a head: deadline from accept or first byte */
	CONN_HANDLER, /* the front has the request; reads off, no deadline */
	CONN_BODY,    /* reading a granted body: deadline by length */
	CONN_WRITE,   /* flushing an answer; reads off */
	CONN_IDLE,    /* kept alive, no byte of the next request yet */
	CONN_LINGER,  /* answered, write side shut, dropping input */
	/*
	 * A streamed answer in progress (httpd_stream.c): no deadline (the
	 * stream's owner decides when it ends), reads on only to see the
	 * peer go away, what it sends dropped.
	 */
	CONN_STREAM,
};

struct httpd_req {
	struct httpd_conn *c;
	struct httpd_head head;
	char *body; /* NULL until read_body grants one */
	size_t body_len, body_want;
	int64_t reserved; /* of the budget, released when answered */
	httpd_body_cb body_cb;
	void *body_arg;
	char extra[EXTRA_MAX]; /* header lines of the answer */
	char auth[64];         /* httpd_req_set_auth */
	size_t extra_len;
	bool body_done; /* the declared body was read (or there was none) */
	bool own_cache; /* the front set Cache-Control: no default */
};

struct httpd_conn {
	struct httpd *h;
	struct bufferevent *bev;
	struct event *timer;
	enum conn_state state;
	bool close; /* after this answer */
	bool gone;  /* the socket failed while the front held the request */
	char *head;
	size_t head_len, head_cap, scanned;
	struct httpd_req req;
	char peer[INET6_ADDRSTRLEN + 8];
	struct client_count *client; /* its client's count */
	/* CONN_STREAM only (httpd_req_stream_begin). */
	size_t stream_max;
	httpd_stream_cb stream_close;
	httpd_stream_cb stream_drain;
	void *stream_arg;
	LIST_ENTRY(httpd_conn) link;
};

struct httpd {
	struct event_base *base;
	struct evconnlistener *lis;
	struct event *retry;
	struct httpd_limits lim;
	httpd_head_cb head_cb;
	void *arg;
	LIST_HEAD(, httpd_conn) conns;
	size_t nconns;
	struct client_table clients; /* connections per client */
	size_t nstreams;             /* connections in CONN_STREAM */
	int64_t reserved;
	int port;
	int retry_ms;     /* 0: accepting */
	uint64_t refused; /* accept failures this episode */
	bool pause_said;  /* this episode's pause was logged, not counted */
	/* One limit per kind of line an outsider can make us write. */
	struct log_rl over_cap_rl;   /* too many connections */
	struct log_rl client_cap_rl; /* too many from one client */
	struct log_rl oom_rl;        /* a connection we cannot take */
	struct log_rl budget_rl;     /* the body budget spent */
	struct log_rl bad_rl;        /* a request we cannot read */
	struct log_rl slow_rl;       /* a request not in on time */
	struct log_rl accept_rl;     /* accept failed: paused */
	time_t date_sec;             /* the second date[] was made for */
	char date[40];               /* the Date header's value, IMF-fixdate */
};

/* The one place a connection changes state: reads and deadline follow. */
void httpd__conn_set_state(struct httpd_conn *c, enum conn_state st,
			   int64_t deadline_ms);
/* Closes and frees c (never while the front holds its request). */
void httpd__conn_free(struct httpd_conn *c);
/* The bufferevent's write callback: an answer, or a stream, drained. */
void httpd__conn_written(struct bufferevent *bev, void *arg);
/* Releases what the request held (body, reservation, extra headers). */
void httpd__req_release(struct httpd_req *r);
/* The Date header's value now, and the reason phrase of a status. */
const char *httpd__date(struct httpd *h);
const char *httpd__reason(int status);
/*
 * A streamed answer ends without its owner asking (the peer went away,
 * httpd_free): its close callback, once, then the connection is freed.
 */
void httpd__stream_lost(struct httpd_conn *c);

#endif
