/*
 * What the SMTP intake's files share (smtp_server.c: listeners, accept,
 * connection counts; smtp_session.c: the per-session state machine).
 * Private to src/intake/smtp_*.c.
 */
#ifndef SHIVNERI_SMTP_INT_H
#define SHIVNERI_SMTP_INT_H

#include "common/clients.h"
#include "common/log.h"
#include "intake/message.h"
#include "intake/smtp_auth.h"
#include "intake/smtp_guard.h"
#include "intake/smtp_proto.h"
#include "intake/smtp_session.h"

#include <arpa/inet.h>
#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#define SMTP_LISTENERS_MAX 4

struct evbuffer;
struct smtp_session;
struct workq;

/*
 * What an outsider can make the intake log, each kind rate-limited on its
 * own (smtp_server's rl[]): with one limiter for all, a kind that is cheap
 * to cause (a timeout, a refused relay) would take every window's one
 * line, and AUTH guessing would never show as auth_failed.
 */
enum smtp_rl {
	SMTP_RL_CONNS,        /* refused: smtp_max_connections */
	SMTP_RL_CLIENT_CONNS, /* refused: smtp_max_client_connections */
	SMTP_RL_OOM,          /* a session that could not be made */
	SMTP_RL_BAD_COMMANDS, /* smtp_max_bad_commands reached */
	SMTP_RL_RELAY,        /* MAIL without trust or AUTH */
	SMTP_RL_AUTH,         /* a wrong user or password */
	SMTP_RL_AUTH_WAIT,    /* a client made to wait (smtp_guard.h) */
	SMTP_RL_TOO_LARGE,    /* a message over max_message_bytes */
	SMTP_RL_BUDGET,       /* smtp_data_budget_bytes spent */
	SMTP_RL_TIMEOUT,      /* idle or session limit */
	SMTP_RL_TLS,          /* a TLS error (a failed handshake) */
	SMTP_RL_ACCEPT,       /* accept failed: paused */
	SMTP_RL_N,
};
/* One line per kind per this long at most. */
#define SMTP_RL_MS 10000
/*
 * NOOP, RSET and VRFY a session may send since its last stored message
 * before each one more also counts as a refused command (Postfix's
 * smtpd_junk_command_limit): a loop of them then ends in 421 like any
 * other abuse, long before the session limit.
 */
#define SMTP_JUNK_MAX 100

struct smtp_listener {
	struct smtp_server *srv;
	struct evconnlistener *lis;
	bool implicit_tls;
	bool loopback; /* bound to a loopback address */
	int port;
};

struct smtp_server {
	struct event_base *base;
	struct submit *sub;
	struct smtp_options opt;
	size_t size_advertised; /* EHLO's SIZE: what a client may send */
	char hostname[256];
	struct cidr_list *trusted;
	struct smtp_tls *tls;
	struct smtp_users *users;
	struct smtp_listener lis[SMTP_LISTENERS_MAX];
	size_t nlis;
	struct event *retry; /* accept paused for want of descriptors */
	int retry_ms;
	uint64_t refused;  /* accepts failed in this pause */
	bool pause_logged; /* this pause was logged: log its end too */
	LIST_HEAD(, smtp_session) sessions;
	size_t nsessions;
	struct client_table clients; /* sessions per client (clients.h) */
	unsigned pending;            /* messages with the submit path */
	unsigned in_data;            /* sessions reading a message */
	size_t data_mem;       /* bytes held by message buffers, all sessions */
	struct workq *auth_wq; /* password checks, off the loop */
	struct smtp_guard *guard; /* failed checks per client */
	bool draining;
	struct log_rl rl[SMTP_RL_N]; /* see enum smtp_rl */
};

enum smtp_state {
	SMTP_STATE_CMD,      /* reading command lines */
	SMTP_STATE_DATA,     /* reading the message, after 354 */
	SMTP_STATE_SUBMIT,   /* with the submit path; read, not parsed */
	SMTP_STATE_STARTTLS, /* "220 Ready to start TLS" going out; no reads */
	SMTP_STATE_AUTH,     /* reading a line of an AUTH exchange */
	SMTP_STATE_AUTH_CHECK, /* a password is being checked; no reads */
	SMTP_STATE_CLOSING,    /* the last reply is going out; no reads */
	SMTP_STATE_LINGER,     /* our side shut; the peer's bytes are dropped */
};

struct smtp_session {
	struct smtp_server *srv;
	struct smtp_listener *lis;
	struct client_count *client;
	struct bufferevent *bev;
	struct evbuffer *out; /* replies not yet written (see flush()) */
	struct event *timer;
	enum smtp_state state;
	int64_t session_end_ms;  /* monotonic */
	bool timer_ends_session; /* the timer was armed for session_end_ms */
	char peer[INET6_ADDRSTRLEN + 8];     /* address:port, for logs */
	char addr_lit[INET6_ADDRSTRLEN + 8]; /* [a.b.c.d] or [IPv6:...] */
	char helo[SMTP_HELO_MAX + 1];
	bool esmtp;          /* EHLO, not HELO */
	bool trusted;        /* from smtp_trusted_networks */
	bool tls;            /* the session runs over TLS */
	bool tls_up;         /* its handshake is done (a reply can go out) */
	bool authed;         /* AUTH succeeded */
	bool eof;            /* the client shut its side */
	bool gone;           /* the socket failed while a submission was out */
	bool skipping;       /* dropping an overlong line up to its end */
	bool in_drive;       /* session_drive() is on the stack */
	bool resume_pending; /* a deferred read is to drive it (see there) */
	/* AUTH (smtp_login.c). */
	int auth_step;                           /* which line comes next */
	char auth_user[SMTP_AUTH_FIELD_MAX + 1]; /* LOGIN's first answer */
	char user[64]; /* who authenticated, printable, for log lines */
	int bad;       /* refused commands so far */
	int junk;      /* NOOP, RSET, VRFY since the last stored message */
	/* The transaction (MAIL to the end of DATA). */
	bool in_tx;
	bool smtputf8;
	char *mail_from;
	char **rcpt;
	size_t nrcpt;
	struct message_envelope env; /* points into the above for submit */
	struct smtp_data data;
	size_t ours;    /* data's first bytes that are ours (Received) */
	size_t charged; /* of data's memory, counted in srv->data_mem */
	bool no_room;   /* the budget ran out: this message is dropped */
	LIST_ENTRY(smtp_session) link;
};

/* Helpers of smtp_session.c that smtp_login.c uses too. */
void smtp__set_state(struct smtp_session *ss, enum smtp_state st);
void smtp__reply(struct smtp_session *ss, int code, const char *ehn,
		 const char *text);
/* A refused command, counted: past max_bad_commands, 421 and close. */
void smtp__reply_bad(struct smtp_session *ss, const struct smtp_reply *r);
/*
 * Sets the read-ahead cap, which is larger once the session may send
 * (trusted, or after AUTH): call when that changes.
 */
void smtp__read_bounds(struct smtp_session *ss);
/* Restarts the idle deadline. */
void smtp__idle_arm(struct smtp_session *ss);
/* Where replies are queued (see flush() in smtp_session.c). */
struct evbuffer *smtp__outq(struct smtp_session *ss);
/* 421 and a graceful close. */
void smtp__reply_421(struct smtp_session *ss, const char *ehn,
		     const char *text);
/* The last reply is queued: close once it is out. */
void smtp__close(struct smtp_session *ss);
/* Forgets the transaction (MAIL, RCPT, the message buffer). */
void smtp__tx_reset(struct smtp_session *ss);
/* Counts the message buffer in the server's smtp_data_budget_bytes. */
void smtp__charge(struct smtp_session *ss);
/* One command line (smtp_cmd.c), its line end cut off. */
void smtp__command(struct smtp_session *ss, char *line, size_t len);
/* Reads on (what the input holds), or frees a session that went away. */
void smtp__resume(struct smtp_session *ss);

/* AUTH (smtp_login.c): offered to this session now? */
bool smtp__auth_offered(const struct smtp_session *ss);
/* The AUTH command, checked and started. */
void smtp__auth_cmd(struct smtp_session *ss, const struct smtp_cmd *c);
/* A line of the exchange (state SMTP_STATE_AUTH), its end cut off. */
void smtp__auth_line(struct smtp_session *ss, char *line, size_t len);
/* The exchange line was too long: 500 5.5.6, exchange over. */
void smtp__auth_too_long(struct smtp_session *ss);

/*
 * A new session on fd (accepted from l); counted in cl, which it releases
 * when it ends.  Greets, or refuses with a 421 and closes.
 */
void smtp__session_start(struct smtp_listener *l, evutil_socket_t fd,
			 const struct sockaddr *sa, struct client_count *cl);
/* The server is stopping: idle sessions say 421 and close. */
void smtp__sessions_drain(struct smtp_server *s);
/* Frees every session at once (the server is going away). */
void smtp__sessions_free(struct smtp_server *s);

#endif
