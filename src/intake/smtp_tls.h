/*
 * The SMTP intake's TLS context: smtp_tls_cert_file (the certificate and
 * its chain, PEM) and smtp_tls_key_file, for STARTTLS and smtps_listen.
 * TLS 1.2 and later, the server's cipher order, no compression, no
 * renegotiation.  A SIGHUP reloads both files: a new context replaces the
 * old for later handshakes only when both load and match; otherwise the
 * old one stays and the error is logged once.  Sessions that took a
 * reference keep theirs (OpenSSL counts SSL_CTX references).
 */
#ifndef SHIVNERI_SMTP_TLS_H
#define SHIVNERI_SMTP_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

struct smtp_tls;

/*
 * Loads cert_file and key_file.  0 and a new context in *out, or a
 * negative errno with "PATH: why" in err (unreadable: -errno; not PEM, an
 * encrypted key, a key that does not match the certificate: -EINVAL; key
 * readable by group or others: -EPERM).
 */
int smtp_tls_new(const char *cert_file, const char *key_file,
		 struct smtp_tls **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/*
 * Rereads both files; on failure keeps the current context (see above)
 * and returns the error in err for the caller to log, once per reload.
 */
int smtp_tls_reload(struct smtp_tls *t, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/*
 * A new server-side SSL for one connection from the current context, or
 * NULL (out of memory: refuse the STARTTLS with 454).  The SSL holds its
 * own reference to that context.  smtp_tls_new, _reload and _ssl_new are
 * for the event loop's thread only (no lock).
 */
SSL *smtp_tls_ssl_new(struct smtp_tls *t);
/* NULL is a no-op; SSLs still open keep the context they were made from. */
void smtp_tls_free(struct smtp_tls *t);

#endif
