/*
 * TLS contexts of the agent link (see link_tls.h): TLS 1.3 only, keyed by
 * an external PSK derived from the agent secret, one fixed identity, no
 * certificates, no session tickets, no compression.
 *
 * OpenSSL asks for the PSK through its TLS 1.3 session callbacks (the
 * client's use_session, the server's find_session); each call builds a
 * fresh SSL_SESSION holding the key, whose ownership passes to OpenSSL.
 * The older psk_client/server callbacks would work too (TLS 1.3 takes them
 * with SHA-256), but they are the TLS 1.2 interface and would let a
 * misconfigured context fall back to TLS 1.2 PSK suites.  A server given
 * another identity, or a client asked for a digest other than SHA-256,
 * offers no PSK, and with no certificate on either side the handshake
 * fails: a peer without the secret never gets a TLS session.
 *
 * link_accept is the server's side before the frames: one EV_READ event
 * peeks at the first byte, then a plain or an OpenSSL bufferevent takes
 * the socket (the byte still in it); the caller gets it only once TLS is
 * up, so a failed TLS handshake is told apart from a link error and its
 * OpenSSL reason kept.
 *
 * Nothing here is fatal: a context that cannot be made is -ENOMEM for the
 * caller to report.  The PSK is wiped when the context goes.
 */
#include "link/link_tls.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

struct link_tls {
	SSL_CTX *ctx;
	uint8_t psk[LINK_TLS_PSK_LEN];
};

struct link_accept {
	struct event_base *base;
	int fd;                  /* ours until a bufferevent takes it */
	struct event *sniff;     /* until the first byte */
	struct bufferevent *bev; /* the TLS handshake under way */
	struct link_tls *tls;    /* NULL: no TLS here */
	size_t read_cap;
	link_accept_cb done;
	void *arg;
};

/* Both SHA-256 suites: the PSK's digest must be the suite's. */
static const char LINK_TLS_SUITES[] =
    "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";
/* TLS_AES_128_GCM_SHA256, the suite the PSK's session names. */
static const unsigned char PSK_SUITE[2] = {0x13, 0x01};

int
link_tls_mode_parse(const char *s)
{
	if (s == NULL)
		return -1;
	if (strcmp(s, "auto") == 0)
		return LINK_TLS_AUTO;
	if (strcmp(s, "required") == 0)
		return LINK_TLS_REQUIRED;
	if (strcmp(s, "off") == 0)
		return LINK_TLS_OFF;
	return -1;
}

void
link_tls_psk(const void *secret, size_t secret_len,
	     uint8_t out[LINK_TLS_PSK_LEN])
{
	unsigned int outlen = LINK_TLS_PSK_LEN;

	if (HMAC(EVP_sha256(), secret, (int)secret_len,
		 (const unsigned char *)LINK_TLS_PSK_LABEL,
		 strlen(LINK_TLS_PSK_LABEL), out, &outlen) == NULL)
		fatalx("link: HMAC-SHA256 failed"); /* our OpenSSL is broken */
}

/* A session that carries the PSK; NULL when OpenSSL cannot make one. */
static SSL_SESSION *
psk_session(SSL *ssl)
{
	struct link_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, PSK_SUITE);
	SSL_SESSION *s = SSL_SESSION_new();

	if (t == NULL || cipher == NULL || s == NULL ||
	    SSL_SESSION_set1_master_key(s, t->psk, sizeof(t->psk)) != 1 ||
	    SSL_SESSION_set_cipher(s, cipher) != 1 ||
	    SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION) != 1) {
		SSL_SESSION_free(s);
		return NULL;
	}
	return s;
}

static int
psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
	   SSL_SESSION **sess)
{
	*sess = NULL;
	/* A server that picked another digest gets no PSK, and fails. */
	if (md != NULL && EVP_MD_get_type(md) != NID_sha256)
		return 1;
	*sess = psk_session(ssl);
	if (*sess == NULL)
		return 0;
	*id = (const unsigned char *)LINK_TLS_IDENTITY;
	*idlen = strlen(LINK_TLS_IDENTITY);
	return 1;
}

static int
psk_find_cb(SSL *ssl, const unsigned char *identity, size_t identity_len,
	    SSL_SESSION **sess)
{
	*sess = NULL;
	/* Another identity: no PSK, and without a certificate, no TLS. */
	if (identity_len != strlen(LINK_TLS_IDENTITY) ||
	    memcmp(identity, LINK_TLS_IDENTITY, identity_len) != 0)
		return 1;
	*sess = psk_session(ssl);
	return *sess != NULL;
}

static SSL_CTX *
ctx_new(bool server)
{
	SSL_CTX *ctx =
	    SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());

	if (ctx == NULL)
		return NULL;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, LINK_TLS_SUITES) != 1 ||
	    SSL_CTX_set_num_tickets(ctx, 0) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* No resumption: every link proves the PSK afresh, and no ticket
	 * follows the handshake on the wire. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* A peer that closes without close_notify (killed, or a link cut
	 * on the way) is an EOF, as it is without TLS: OpenSSL 3 would make
	 * it an error that libevent 2.1 does not know.  A frame cut short
	 * is still caught by the framing (LINK_E_SHORT). */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET |
				     SSL_OP_NO_RENEGOTIATION |
				     SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* An idle link (most of them, between jobs) gives its buffers
	 * back. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (server)
		SSL_CTX_set_psk_find_session_callback(ctx, psk_find_cb);
	else
		SSL_CTX_set_psk_use_session_callback(ctx, psk_use_cb);
	return ctx;
}

int
link_tls_new(bool server, const void *secret, size_t secret_len,
	     struct link_tls **out)
{
	struct link_tls *t;

	*out = NULL;
	t = xcalloc(1, sizeof(*t));
	t->ctx = ctx_new(server);
	if (t->ctx == NULL) {
		ERR_clear_error();
		free(t);
		return -ENOMEM;
	}
	link_tls_psk(secret, secret_len, t->psk);
	SSL_CTX_set_app_data(t->ctx, t);
	*out = t;
	return 0;
}

SSL *
link_tls_ssl_new(struct link_tls *t)
{
	SSL *ssl = SSL_new(t->ctx);

	if (ssl == NULL)
		ERR_clear_error();
	return ssl;
}

void
link_tls_free(struct link_tls *t)
{
	if (t == NULL)
		return;
	/* SSLs still open keep the context, not our PSK: they took their
	 * keys at their handshake. */
	SSL_CTX_set_app_data(t->ctx, NULL);
	SSL_CTX_free(t->ctx);
	OPENSSL_cleanse(t->psk, sizeof(t->psk));
	free(t);
}

int
link_tls_sniff(int fd)
{
	unsigned char b;
	ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n == 1)
		return b == LINK_TLS_RECORD_HANDSHAKE;
	if (n == 0)
		return -ECONNRESET;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return -EAGAIN;
	return -errno;
}

bool
link_tls_plain_allowed(int mode, bool peer_loopback)
{
	if (mode == LINK_TLS_OFF)
		return true;
	return mode == LINK_TLS_AUTO && peer_loopback;
}

bool
link_tls_peer_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return false;
	return sockaddr_loopback((const struct sockaddr *)&ss);
}

const char *
link_tls_reason(unsigned long err)
{
	const char *r = err != 0 ? ERR_reason_error_string(err) : NULL;

	return r != NULL ? r : "-";
}

bool
link_tls_client_wants(int mode, int fd)
{
	if (mode == LINK_TLS_OFF)
		return false;
	return mode == LINK_TLS_REQUIRED || !link_tls_peer_loopback(fd);
}

/* An OpenSSL bufferevent on fd, or NULL (then fd is still open). */
static struct bufferevent *
ssl_bev(struct link_tls *t, struct event_base *base, int fd,
	enum bufferevent_ssl_state state)
{
	SSL *ssl = link_tls_ssl_new(t);
	struct bufferevent *bev;

	if (ssl == NULL)
		return NULL;
	bev = bufferevent_openssl_socket_new(base, fd, ssl, state,
					     BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	/* With SSL_OP_IGNORE_UNEXPECTED_EOF: a plain close is an EOF. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

struct bufferevent *
link_tls_connect(struct link_tls *t, struct event_base *base,
		 struct bufferevent *plain)
{
	int fd = bufferevent_getfd(plain);
	struct bufferevent *bev;

	/* The plain bufferevent lets go of the socket, not closes it. */
	(void)bufferevent_setfd(plain, -1);
	bufferevent_free(plain);
	bev = ssl_bev(t, base, fd, BUFFEREVENT_SSL_CONNECTING);
	if (bev == NULL)
		evutil_closesocket(fd);
	return bev;
}

/* Hands over (err 0) or gives up; the caller may free la in done. */
static void
accept_done(struct link_accept *la, struct bufferevent *bev, bool tls, int err,
	    const char *why)
{
	la->done(bev, tls, err, why, la->arg);
}

static void
accept_tls_cb(struct bufferevent *bev, short what, void *arg)
{
	struct link_accept *la = arg;
	unsigned long e;

	if (what & BEV_EVENT_CONNECTED) {
		la->bev = NULL;
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
		accept_done(la, bev, true, 0, NULL);
		return;
	}
	/* A wrong secret ends here: OpenSSL says why, never the key. */
	bufferevent_disable(bev, EV_READ | EV_WRITE); /* done runs once */
	e = bufferevent_get_openssl_error(bev);
	ERR_clear_error();
	accept_done(la, NULL, true, -EPROTO,
		    e != 0 ? link_tls_reason(e)
			   : (what & BEV_EVENT_EOF ? "closed" : "reset"));
}

static void
accept_tls(struct link_accept *la)
{
	struct bufferevent *bev;

	if (la->tls == NULL) {
		accept_done(la, NULL, true, -EPROTONOSUPPORT, "no TLS here");
		return;
	}
	bev = ssl_bev(la->tls, la->base, la->fd, BUFFEREVENT_SSL_ACCEPTING);
	if (bev == NULL) {
		accept_done(la, NULL, true, -ENOMEM, "out of memory");
		return;
	}
	la->fd = -1;
	la->bev = bev;
	/* What follows the handshake at once waits for the caller's cap. */
	bufferevent_setwatermark(bev, EV_READ, 0, la->read_cap);
	bufferevent_setcb(bev, NULL, NULL, accept_tls_cb, la);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void
accept_sniff_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link_accept *la = arg;
	struct bufferevent *bev;
	int rc = link_tls_sniff(fd);

	if (rc == -EAGAIN)
		return;
	if (rc < 0) {
		event_del(la->sniff); /* done runs once */
		accept_done(la, NULL, false, rc, strerror(-rc));
		return;
	}
	event_free(la->sniff);
	la->sniff = NULL;
	if (rc == 1) {
		accept_tls(la);
		return;
	}
	bev = bufferevent_socket_new(la->base, la->fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		accept_done(la, NULL, false, -ENOMEM, "out of memory");
		return;
	}
	la->fd = -1;
	accept_done(la, bev, false, 0, NULL);
}

struct link_accept *
link_accept_new(struct event_base *base, int fd, struct link_tls *tls,
		size_t read_cap, link_accept_cb done, void *arg)
{
	struct link_accept *la = xcalloc(1, sizeof(*la));

	la->base = base;
	la->fd = fd;
	la->tls = tls;
	la->read_cap = read_cap;
	la->done = done;
	la->arg = arg;
	la->sniff =
	    event_new(base, fd, EV_READ | EV_PERSIST, accept_sniff_cb, la);
	if (la->sniff == NULL || event_add(la->sniff, NULL) != 0) {
		if (la->sniff != NULL)
			event_free(la->sniff);
		free(la);
		return NULL;
	}
	return la;
}

bool
link_accept_silent(const struct link_accept *la)
{
	int n = 0;

	if (la->sniff == NULL)
		return false;
	return !(ioctl(la->fd, FIONREAD, &n) == 0 && n > 0);
}

void
link_accept_free(struct link_accept *la)
{
	if (la == NULL)
		return;
	if (la->sniff != NULL)
		event_free(la->sniff);
	if (la->bev != NULL)
		bufferevent_free(la->bev);
	else if (la->fd >= 0)
		evutil_closesocket(la->fd);
	free(la);
}
