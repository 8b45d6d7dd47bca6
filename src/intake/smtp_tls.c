/*
 * The SMTP intake's TLS server context (see smtp_tls.h).  A context is
 * built whole from the two files and only then put in place, so a reload
 * with a broken certificate, a mismatched or encrypted key, or a key file
 * others may read leaves the running context untouched.  Connections hold
 * their own reference through SSL_new (OpenSSL counts SSL_CTX
 * references), so replacing the context never pulls it from under a
 * handshake.  Loads, reloads and SSL_new all run on the event loop's
 * thread, which is why there is no lock.
 *
 * Errors are returned as "PATH: why" with OpenSSL's reason where it has
 * one, never key material; the caller logs them.  A passphrase callback
 * that refuses is installed first: OpenSSL's default one would prompt on
 * the terminal, blocking a daemon's SIGHUP on a key nobody can unlock.
 */
#include "intake/smtp_tls.h"

#include "common/config.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct smtp_tls {
	char *cert_file;
	char *key_file;
	SSL_CTX *ctx;
};

/* The session cache's context id: any constant of ours will do. */
static const unsigned char SESSION_ID_CONTEXT[] = "shivneri-smtp";

/* Encrypted keys are refused: no one is there to type a passphrase. */
static int
no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)userdata;
	return 0;
}

/* Can path be opened for reading?  0 or -errno with "PATH: why". */
static int
readable(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	close(fd);
	return 0;
}

/* "PATH: what (OpenSSL's reason)", and OpenSSL's error queue emptied. */
static int
ssl_fail(const char *path, const char *what, char *err, size_t errlen)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;

	snprintf(err, errlen, "%s: %s%s%s%s", path, what,
		 reason != NULL ? " (" : "", reason != NULL ? reason : "",
		 reason != NULL ? ")" : "");
	ERR_clear_error();
	return -EINVAL;
}

/*
 * Why SSL_CTX_use_PrivateKey_file failed, in words: OpenSSL compares the
 * key with the certificate already loaded, so a mismatch shows up here.
 */
static const char *
key_problem(void)
{
	if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
		return "key does not match the certificate";
	return "not an unencrypted PEM private key";
}

/* A context with the settings of smtp_tls.h, before any file. */
static SSL_CTX *
ctx_base(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL)
		return NULL;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_session_id_context(
		ctx, SESSION_ID_CONTEXT, sizeof(SESSION_ID_CONTEXT) - 1) != 1) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
				     SSL_OP_CIPHER_SERVER_PREFERENCE |
				     SSL_OP_NO_RENEGOTIATION);
	/* Idle sessions give their buffers back: memory per connection
	 * stays small while a client thinks. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
	return ctx;
}

/* Builds a context from the two files; 0 and *out, or -errno and err. */
static int
ctx_load(const char *cert_file, const char *key_file, SSL_CTX **out, char *err,
	 size_t errlen)
{
	SSL_CTX *ctx = NULL;
	int rc;

	*out = NULL;
	ERR_clear_error();
	rc = readable(cert_file, err, errlen);
	if (rc == 0)
		rc = readable(key_file, err, errlen);
	if (rc == 0)
		rc = config_secret_mode_check(key_file, err, errlen);
	if (rc != 0)
		return rc;
	ctx = ctx_base();
	if (ctx == NULL)
		return ssl_fail(cert_file, "cannot make a TLS context", err,
				errlen);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
		rc = ssl_fail(cert_file, "not a PEM certificate chain", err,
			      errlen);
	else if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) !=
		 1)
		rc = ssl_fail(key_file, key_problem(), err, errlen);
	else if (SSL_CTX_check_private_key(ctx) != 1)
		rc = ssl_fail(key_file, "key does not match the certificate",
			      err, errlen);
	if (rc != 0) {
		SSL_CTX_free(ctx);
		return rc;
	}
	*out = ctx;
	return 0;
}

int
smtp_tls_new(const char *cert_file, const char *key_file, struct smtp_tls **out,
	     char *err, size_t errlen)
{
	struct smtp_tls *t;
	SSL_CTX *ctx;
	int rc;

	*out = NULL;
	if (cert_file == NULL || key_file == NULL || cert_file[0] == '\0' ||
	    key_file[0] == '\0') {
		snprintf(err, errlen,
			 "smtp_tls_cert_file and smtp_tls_key_file are both "
			 "needed");
		return -EINVAL;
	}
	rc = ctx_load(cert_file, key_file, &ctx, err, errlen);
	if (rc != 0)
		return rc;
	t = xcalloc(1, sizeof(*t));
	t->cert_file = xstrdup(cert_file);
	t->key_file = xstrdup(key_file);
	t->ctx = ctx;
	*out = t;
	return 0;
}

int
smtp_tls_reload(struct smtp_tls *t, char *err, size_t errlen)
{
	SSL_CTX *ctx;
	int rc;

	rc = ctx_load(t->cert_file, t->key_file, &ctx, err, errlen);
	if (rc != 0)
		return rc;
	/* SSLs made from the old context hold their own references. */
	SSL_CTX_free(t->ctx);
	t->ctx = ctx;
	return 0;
}

SSL *
smtp_tls_ssl_new(struct smtp_tls *t)
{
	SSL *ssl = SSL_new(t->ctx);

	if (ssl == NULL)
		ERR_clear_error();
	return ssl;
}

void
smtp_tls_free(struct smtp_tls *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	free(t->cert_file);
	free(t->key_file);
	free(t);
}
