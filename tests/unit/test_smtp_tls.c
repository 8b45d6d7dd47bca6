/*
 * Unit tests of the SMTP intake's TLS context (intake/smtp_tls.h).  Keys
 * (EC P-256, fast) and self-signed certificates are made here with OpenSSL
 * into a temporary folder.  Each good context is proved by a real
 * handshake over an in-memory BIO pair with an OpenSSL client, which also
 * shows which certificate the server presented (its CN) and that TLS 1.1
 * is refused.  Refusals: a missing file, a file that is not PEM, a key of
 * another certificate, an encrypted key (refused without prompting), a
 * key readable by group or others.  Reload: a failed one keeps the old
 * context, a good one switches new connections, and an SSL made before
 * the reload finishes its handshake with the old certificate.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "intake/smtp_tls.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

struct fixture {
	char dir[64];
	char cert[128], key[128];
	char cert2[128], key2[128];
};

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_smtp_tls.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->cert, sizeof(f->cert), "%s/cert.pem", f->dir);
	snprintf(f->key, sizeof(f->key), "%s/key.pem", f->dir);
	snprintf(f->cert2, sizeof(f->cert2), "%s/cert2.pem", f->dir);
	snprintf(f->key2, sizeof(f->key2), "%s/key2.pem", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->cert);
	unlink(f->key);
	unlink(f->cert2);
	unlink(f->key2);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* A self-signed certificate for key with CN=cn. */
static X509 *
cert_make(EVP_PKEY *key, const char *cn)
{
	X509 *x = X509_new();
	X509_NAME *name;

	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_int_equal(X509_set_pubkey(x, key), 1);
	name = X509_get_subject_name(x);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
						    (const unsigned char *)cn,
						    -1, -1, 0),
			 1);
	assert_int_equal(X509_set_issuer_name(x, name), 1);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	return x;
}

/*
 * Writes a new key and a certificate for it (CN=cn) to the two paths, the
 * key with mode key_mode, encrypted with passphrase "x" when encrypt.
 */
static void
pair_write(const char *cert_path, const char *key_path, const char *cn,
	   mode_t key_mode, bool encrypt)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x;
	FILE *fp;

	assert_non_null(key);
	x = cert_make(key, cn);
	fp = fopen(cert_path, "w");
	assert_non_null(fp);
	assert_int_equal(PEM_write_X509(fp, x), 1);
	assert_int_equal(fclose(fp), 0);
	fp = fopen(key_path, "w");
	assert_non_null(fp);
	assert_int_equal(fchmod(fileno(fp), key_mode), 0);
	assert_int_equal(
	    PEM_write_PrivateKey(fp, key, encrypt ? EVP_aes_256_cbc() : NULL,
				 encrypt ? (unsigned char *)"x" : NULL,
				 encrypt ? 1 : 0, NULL, NULL),
	    1);
	assert_int_equal(fclose(fp), 0);
	X509_free(x);
	EVP_PKEY_free(key);
}

static void
write_text(const char *path, const char *text, mode_t mode)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fchmod(fileno(fp), mode), 0);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

/*
 * Runs a handshake between server and a new client (no verification: the
 * test reads the presented certificate itself) with max_version as the
 * client's highest.  True when it completed; the server's CN into cn.
 * Frees server.
 */
static bool
handshake(SSL *server, int max_version, char *cn, size_t cnlen)
{
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *client;
	BIO *sb, *cb;
	bool s_done = false, c_done = false, failed = false;

	assert_non_null(cctx);
	assert_int_equal(SSL_CTX_set_max_proto_version(cctx, max_version), 1);
	/* OpenSSL 3 clients offer TLS 1.1 only at security level 0: with
	 * it, a refused 1.1 handshake is the server's refusal. */
	SSL_CTX_set_security_level(cctx, 0);
	assert_int_equal(SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION), 1);
	client = SSL_new(cctx);
	assert_non_null(client);
	assert_int_equal(BIO_new_bio_pair(&sb, 0, &cb, 0), 1);
	SSL_set_bio(server, sb, sb);
	SSL_set_bio(client, cb, cb);
	SSL_set_accept_state(server);
	SSL_set_connect_state(client);
	/* Each round moves the handshake on by at least one flight. */
	for (int i = 0; i < 50 && !(s_done && c_done) && !failed; i++) {
		int r;

		if (!c_done) {
			r = SSL_do_handshake(client);
			c_done = r == 1;
			failed = r <= 0 && SSL_get_error(client, r) !=
					       SSL_ERROR_WANT_READ;
		}
		if (!s_done && !failed) {
			r = SSL_do_handshake(server);
			s_done = r == 1;
			failed = r <= 0 && SSL_get_error(server, r) !=
					       SSL_ERROR_WANT_READ;
		}
	}
	cn[0] = '\0';
	if (s_done && c_done) {
		X509 *peer = SSL_get1_peer_certificate(client);
		assert_non_null(peer);
		X509_NAME_get_text_by_NID(X509_get_subject_name(peer),
					  NID_commonName, cn, (int)cnlen);
		X509_free(peer);
	}
	ERR_clear_error();
	SSL_free(client);
	SSL_free(server);
	SSL_CTX_free(cctx);
	return s_done && c_done;
}

/* A handshake on a new SSL of t presents the certificate named cn. */
static void
presents(struct smtp_tls *t, const char *want)
{
	char cn[64];
	SSL *ssl = smtp_tls_ssl_new(t);

	assert_non_null(ssl);
	assert_true(handshake(ssl, TLS1_3_VERSION, cn, sizeof(cn)));
	assert_string_equal(cn, want);
}

static void
test_load_and_handshake(void **state)
{
	struct fixture *f = *state;
	struct smtp_tls *t = NULL;
	char err[512] = "", cn[64];

	pair_write(f->cert, f->key, "one", 0600, false);
	assert_int_equal(smtp_tls_new(f->cert, f->key, &t, err, sizeof(err)),
			 0);
	assert_non_null(t);
	presents(t, "one");
	/* TLS 1.2 is taken; 1.1 is not. */
	assert_true(
	    handshake(smtp_tls_ssl_new(t), TLS1_2_VERSION, cn, sizeof(cn)));
	assert_false(
	    handshake(smtp_tls_ssl_new(t), TLS1_1_VERSION, cn, sizeof(cn)));
	smtp_tls_free(t);
	smtp_tls_free(NULL);

	/* One PEM file with both the key and the certificate works too. */
	pair_write(f->cert2, f->key, "both", 0600, false);
	FILE *in = fopen(f->cert2, "r"), *out = fopen(f->key, "a");
	char buf[4096];
	size_t n;
	assert_non_null(in);
	assert_non_null(out);
	n = fread(buf, 1, sizeof(buf), in);
	assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
	assert_int_equal(smtp_tls_new(f->key, f->key, &t, err, sizeof(err)), 0);
	presents(t, "both");
	smtp_tls_free(t);
}

/* smtp_tls_new(cert, key) fails with want, err naming path and why. */
static void
new_bad(const char *cert, const char *key, int want, const char *path,
	const char *why)
{
	struct smtp_tls *t = (struct smtp_tls *)&t;
	char err[512] = "";

	int rc = smtp_tls_new(cert, key, &t, err, sizeof(err));

	if (rc != want)
		fail_msg("%s, %s: %d (%s), not %d", cert, key, rc, err, want);
	assert_null(t);
	if (strstr(err, path) == NULL || strstr(err, why) == NULL)
		fail_msg("error \"%s\" lacks \"%s\" or \"%s\"", err, path, why);
	assert_int_equal(ERR_peek_error(), 0);
}

static void
test_refused(void **state)
{
	struct fixture *f = *state;

	pair_write(f->cert, f->key, "one", 0600, false);
	pair_write(f->cert2, f->key2, "two", 0600, false);
	new_bad(f->cert, f->key2, -EINVAL, f->key2, "does not match");
	new_bad(f->dir, f->key, -EINVAL, f->dir, "not a PEM certificate");
	new_bad("/nonexistent/cert.pem", f->key, -ENOENT,
		"/nonexistent/cert.pem", "No such file");
	new_bad(f->cert, "/nonexistent/key.pem", -ENOENT,
		"/nonexistent/key.pem", "No such file");
	new_bad("", f->key, -EINVAL, "smtp_tls_cert_file", "needed");
	new_bad(f->cert, NULL, -EINVAL, "smtp_tls_key_file", "needed");
	/* The key is a secret like any other. */
	assert_int_equal(chmod(f->key, 0640), 0);
	new_bad(f->cert, f->key, -EPERM, f->key, "chmod 600");
	assert_int_equal(chmod(f->key, 0604), 0);
	new_bad(f->cert, f->key, -EPERM, f->key, "mode 604");
	assert_int_equal(chmod(f->key, 0600), 0);
	/* Files that are not what they should be. */
	write_text(f->cert2, "not a certificate\n", 0644);
	new_bad(f->cert2, f->key, -EINVAL, f->cert2, "not a PEM certificate");
	write_text(f->key2,
		   "-----BEGIN PRIVATE KEY-----\nAAAA\n"
		   "-----END PRIVATE KEY-----\n",
		   0600);
	new_bad(f->cert, f->key2, -EINVAL, f->key2, "private key");
	/* The two swapped (both owner-only, so the mode passes). */
	assert_int_equal(chmod(f->cert, 0600), 0);
	new_bad(f->key, f->cert, -EINVAL, f->key, "not a PEM certificate");
	/*
	 * An encrypted key: refused at once, never a passphrase prompt.
	 * The passphrase waits on stdin, where OpenSSL's own prompt reads it
	 * when there is no terminal: only a load that never asks refuses.
	 */
	pair_write(f->cert2, f->key2, "enc", 0600, true);
	int fds[2], saved = dup(0);
	assert_true(saved >= 0);
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write(fds[1], "x\nx\n", 4), 4);
	assert_int_equal(close(fds[1]), 0);
	assert_int_equal(dup2(fds[0], 0), 0);
	new_bad(f->cert2, f->key2, -EINVAL, f->key2, "private key");
	assert_int_equal(dup2(saved, 0), 0);
	close(fds[0]);
	close(saved);
}

static void
test_reload(void **state)
{
	struct fixture *f = *state;
	struct smtp_tls *t = NULL;
	char err[512] = "", cn[64];
	SSL *before;

	pair_write(f->cert, f->key, "old", 0600, false);
	assert_int_equal(smtp_tls_new(f->cert, f->key, &t, err, sizeof(err)),
			 0);
	before = smtp_tls_ssl_new(t);
	assert_non_null(before);

	/* A certificate of another key: refused, the old context stays. */
	pair_write(f->cert, f->key2, "mismatch", 0600, false);
	assert_int_equal(smtp_tls_reload(t, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "does not match"));
	presents(t, "old");
	/* The key readable by others: refused, the old context stays. */
	pair_write(f->cert, f->key, "open", 0644, false);
	assert_int_equal(smtp_tls_reload(t, err, sizeof(err)), -EPERM);
	presents(t, "old");
	/* Gone: refused, the old context stays. */
	assert_int_equal(unlink(f->cert), 0);
	assert_int_equal(smtp_tls_reload(t, err, sizeof(err)), -ENOENT);
	presents(t, "old");

	/* A good pair: new connections get it at once. */
	pair_write(f->cert, f->key, "new", 0600, false);
	err[0] = '\0';
	assert_int_equal(smtp_tls_reload(t, err, sizeof(err)), 0);
	presents(t, "new");
	/* The connection made before keeps its own context. */
	assert_true(handshake(before, TLS1_3_VERSION, cn, sizeof(cn)));
	assert_string_equal(cn, "old");
	/* Freed while an SSL still holds the context: the SSL lives on. */
	before = smtp_tls_ssl_new(t);
	smtp_tls_free(t);
	assert_true(handshake(before, TLS1_3_VERSION, cn, sizeof(cn)));
	assert_string_equal(cn, "new");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_load_and_handshake, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
