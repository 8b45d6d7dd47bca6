/*
 * TLS for the agent link (docs/agent-protocol.md, "Transport").  The link
 * runs over TLS 1.3 with an external pre-shared key derived from the agent
 * secret both sides already hold, so operators manage no certificates:
 *
 *   psk      = HMAC-SHA256(secret, "shivneri-link-psk-v1")
 *   identity = "shivneri-link-v1"
 *
 * with a SHA-256 suite (TLS_AES_128_GCM_SHA256 or
 * TLS_CHACHA20_POLY1305_SHA256) and the psk_dhe_ke mode only (an (EC)DHE
 * exchange under the PSK: a recorded link stays secret if the agent secret
 * leaks later).  Without the right secret the TLS handshake fails (the
 * server has no certificate to fall back to), and once it is up every
 * record is encrypted and authenticated: a flipped or injected byte ends
 * the link.  The HMAC handshake of link.h still runs inside, unchanged.
 *
 * A server tells a TLS ClientHello from a plaintext HELLO by the first
 * byte (0x16, a TLS handshake record, against 0x00, the high byte of a
 * frame length that is at most 64 KiB); link_tls_sniff() peeks at it
 * without taking it from the socket.
 */
#ifndef SHIVNERI_LINK_TLS_H
#define SHIVNERI_LINK_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#define LINK_TLS_PSK_LABEL "shivneri-link-psk-v1"
#define LINK_TLS_IDENTITY "shivneri-link-v1"
#define LINK_TLS_PSK_LEN 32
/* The first byte of a TLS handshake record (a ClientHello). */
#define LINK_TLS_RECORD_HANDSHAKE 0x16

/* [server] agent_tls (docs/configuration.md). */
enum link_tls_mode {
	LINK_TLS_AUTO = 0,     /* TLS from anyone, plaintext from loopback */
	LINK_TLS_REQUIRED = 1, /* TLS only */
	LINK_TLS_OFF = 2,      /* plaintext only (a link already protected) */
};

/* "auto" | "required" | "off" as enum link_tls_mode; -1 if unknown. */
int link_tls_mode_parse(const char *s);

/* The PSK of a secret (see above). */
void link_tls_psk(const void *secret, size_t secret_len,
		  uint8_t out[LINK_TLS_PSK_LEN]);

/*
 * A TLS context of one side (server: accepts; else connects) keyed with
 * the secret's PSK.  0 and *out, or -ENOMEM (OpenSSL could not make it).
 */
struct link_tls;
int link_tls_new(bool server, const void *secret, size_t secret_len,
		 struct link_tls **out) __attribute__((warn_unused_result));
/* A new SSL for one connection, or NULL (out of memory). */
SSL *link_tls_ssl_new(struct link_tls *t);
/* NULL is a no-op; the PSK is wiped.  SSLs made from it keep their own
 * reference to the context (OpenSSL counts them). */
void link_tls_free(struct link_tls *t);

/*
 * Peeks at the first byte the peer sent on fd (left in the socket):
 * 1 when it starts a TLS record, 0 when it is something else (a plaintext
 * frame), -EAGAIN when nothing has come yet, -ECONNRESET on EOF, or
 * another -errno.
 */
int link_tls_sniff(int fd) __attribute__((warn_unused_result));

/*
 * May a server in mode take a plaintext link from a peer (loopback or
 * not)?  auto: from loopback only; required: never; off: always.
 */
bool link_tls_plain_allowed(int mode, bool peer_loopback);

/* True when fd's peer is a loopback address (false when unknown). */
bool link_tls_peer_loopback(int fd);

/* OpenSSL's reason for err (bufferevent_get_openssl_error), or "-". */
const char *link_tls_reason(unsigned long err);

/*
 * The agent's choice: TLS to fd's peer under mode?  required: yes; off:
 * no; auto: unless the peer (the server, as connected) is loopback.
 */
bool link_tls_client_wants(int mode, int fd);

/*
 * Moves plain's connected socket under a new OpenSSL bufferevent that
 * starts the client's handshake (BEV_OPT_CLOSE_ON_FREE; a close without
 * close_notify is an EOF).  plain is freed either way; NULL (the socket
 * closed) when out of memory.  The caller sets the callbacks and enables
 * it: BEV_EVENT_CONNECTED says the handshake is done.
 */
struct bufferevent;
struct event_base;
struct bufferevent *link_tls_connect(struct link_tls *t,
				     struct event_base *base,
				     struct bufferevent *plain);

/*
 * The server's side of an accepted connection until it carries frames:
 * it waits for the first byte (link_tls_sniff), then either hands over a
 * plain bufferevent at once, or runs the TLS handshake (tls NULL: a
 * ClientHello is refused) and hands over the OpenSSL bufferevent once it
 * is done.  done runs once, from the loop, never from link_accept_new:
 *   err 0: bev (the caller's now) and whether it is TLS;
 *   err -ECONNRESET: the peer closed before a byte (nothing to log);
 *   err -EPROTO: the TLS handshake failed, why is OpenSSL's reason;
 *   err -EPROTONOSUPPORT: a ClientHello, and no TLS here;
 *   another -errno: the socket failed.
 * The caller frees the link_accept with link_accept_free() (which may be
 * called from done, and before it: then done never runs).  read_cap
 * bounds what the TLS bufferevent reads ahead before the caller takes it.
 * link_accept_new returns NULL when out of memory; fd is then still the
 * caller's to close.
 */
struct link_accept;
typedef void (*link_accept_cb)(struct bufferevent *bev, bool tls, int err,
			       const char *why, void *arg);
struct link_accept *link_accept_new(struct event_base *base, int fd,
				    struct link_tls *tls, size_t read_cap,
				    link_accept_cb done, void *arg);
/* True until the peer's first byte has come (in the socket counts). */
bool link_accept_silent(const struct link_accept *la);
/* Closes what was not handed over; NULL is a no-op. */
void link_accept_free(struct link_accept *la);

#endif
