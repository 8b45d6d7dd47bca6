/*
 * The SMTP intake (RFC 5321 submission to a relay), on the server's
 * libevent loop: listeners (smtp_listen, and smtps_listen with implicit
 * TLS), one explicit state machine per session, and the hand-off of each
 * message to the submit path (intake/submit.h), answered "250 2.0.0 Ok:
 * queued as ID" only from the submit path's callback, once the commit is
 * on disk.  The design is in docs/internals/smtp.md.
 *
 * No open relay: a client may send (MAIL) only from smtp_trusted_networks
 * or after AUTH.  Limits, each with its reply: the command line
 * (SMTP_LINE_MAX, 500 5.5.2), recipients (452 4.5.3), the message (SIZE=
 * and DATA, 552 5.3.4), the idle and session timeouts (421 4.4.2),
 * connections in all and per client address (421 at the greeting), bad
 * commands per session (421 4.7.0).  Every close after a 421 is graceful
 * (our side shut, the peer's bytes read and dropped for a moment) so the
 * client reads the reply.  Nothing here is fatal on input.
 */
#ifndef SHIVNERI_SMTP_SESSION_H
#define SHIVNERI_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>

struct cidr_list;
struct event_base;
struct smtp_server;
struct smtp_tls;
struct smtp_users;
struct submit;

struct smtp_options {
	size_t max_message_bytes;   /* the stored message, Received included */
	size_t max_recipients;      /* per message */
	int timeout_s;              /* between commands, and DATA progress */
	int max_session_s;          /* a whole session */
	int max_connections;        /* sessions at once, all listeners */
	int max_client_connections; /* from one IPv4 address or IPv6 /64 */
	int max_bad_commands;       /* refused commands before 421 */
	size_t data_budget;         /* message buffers of all sessions */
	bool allow_plain_auth; /* AUTH without TLS on a loopback listener */
};

/*
 * A server for sub (borrowed: it must outlive every session's submission)
 * with no listener yet.  trusted (taken; NULL: no one) is who may send
 * without AUTH.
 */
struct smtp_server *smtp_server_new(struct event_base *base,
				    const struct smtp_options *o,
				    struct submit *sub,
				    struct cidr_list *trusted);
/*
 * Listens on host:port, with TLS from the first byte when implicit_tls
 * (smtp_server_set_tls first).  Port 0: the kernel picks a free one,
 * which smtp_server_port reads back.  0, or -1 with err filled.
 */
int smtp_server_listen(struct smtp_server *s, const char *hostport,
		       bool implicit_tls, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/*
 * STARTTLS and implicit TLS from t (borrowed; it must outlive s).  Without
 * it, STARTTLS is not offered.
 */
void smtp_server_set_tls(struct smtp_server *s, struct smtp_tls *t);
/*
 * The AUTH users (taken: s holds the reference and gives it back when
 * replaced or freed; sessions checking a password hold their own).
 * NULL: no AUTH.  Called again on SIGHUP with the reloaded table.
 */
void smtp_server_set_users(struct smtp_server *s, struct smtp_users *u);
/*
 * Stops accepting; idle sessions get "421 4.3.2" and close, the others
 * at their next command (QUIT excepted).  A message in DATA is still read
 * and submitted, and every submission answered.
 */
void smtp_server_stop_accepting(struct smtp_server *s);
/*
 * Messages being read (DATA) or waiting for the submit path: the drain
 * waits for them (up to its limit), so a message begun before SIGTERM is
 * still answered.
 */
unsigned smtp_server_pending(const struct smtp_server *s);
/* Open sessions. */
size_t smtp_server_sessions(const struct smtp_server *s);
/* The bound port of the first listener of that kind, or 0. */
int smtp_server_port(const struct smtp_server *s, bool implicit_tls);
/*
 * Closes every session.  Call after the store has closed (its last
 * callbacks answer sessions).  NULL is a no-op.
 */
void smtp_server_free(struct smtp_server *s);

#endif
