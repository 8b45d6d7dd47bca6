/*
 * SMTP AUTH for the intake: the users file and the PLAIN and LOGIN
 * exchanges (RFC 4954, RFC 4616).
 *
 * smtp_users_file holds one "user:hash" a line, the hash in crypt(3)
 * SHA-512 form ("$6$salt$..." as `openssl passwd -6` makes it); blank
 * lines and lines starting with '#' are skipped.  Any other hash form is
 * refused at load, so a typo never becomes an account without a password.
 * The file must not be readable by group or others (like every secret).
 *
 * Checking a password costs one crypt_r() whether or not the user exists
 * (an unknown user is checked against a fixed dummy hash) and the
 * comparison is constant-time, so neither the answer's time nor its text
 * tells which of user or password was wrong.  crypt_r with SHA-512 takes
 * about a millisecond and more: the session calls smtp_auth_check() on a
 * worker thread, never on the loop.  Nothing here logs a password or a
 * decoded credential.
 */
#ifndef SHIVNERI_SMTP_AUTH_H
#define SHIVNERI_SMTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct smtp_users;

/* Longest user name and password taken (RFC 4616 allows 255 octets). */
#define SMTP_AUTH_FIELD_MAX 255

/*
 * Loads path.  0 and a new table in *out, or a negative errno with
 * "PATH:LINE: why" (or "PATH: why") in err: unreadable, mode readable by
 * others, a line without ':', an empty user, a hash not "$6$", a user
 * named twice, no user at all.
 */
int smtp_users_load(const char *path, struct smtp_users **out, char *err,
		    size_t errlen) __attribute__((warn_unused_result));
void smtp_users_free(struct smtp_users *u);
size_t smtp_users_count(const struct smtp_users *u);
/*
 * True when user's password is pass.  Thread-safe (crypt_r); u must not be
 * freed during the call (the session holds a reference across the worker
 * hand-off: see smtp_users_ref).
 */
bool smtp_auth_check(const struct smtp_users *u, const char *user,
		     const char *pass);
/* Reference counting, so a SIGHUP reload can swap tables under checks. */
struct smtp_users *smtp_users_ref(struct smtp_users *u);
/* smtp_users_free is the matching unref. */

/*
 * Decoders for the client's base64 responses; out is NUL-terminated and
 * at least SMTP_AUTH_FIELD_MAX + 1 bytes.  Each returns 0, or -EINVAL for
 * bad base64, a NUL inside a field, a field over SMTP_AUTH_FIELD_MAX, or
 * (PLAIN) an empty user or password (RFC 4616); PLAIN returns -EPERM for a
 * well-formed message whose authorization identity is neither empty nor
 * the user itself: RFC 4954 makes that a refusal of the credentials (535),
 * not a syntax error (501).  Base64 is strict (RFC 4648:
 * no blanks, '=' only at the end, no stray bits), except that "=" alone is
 * the empty response (RFC 4954).  On -EINVAL the outputs are empty
 * strings.  Neither does I/O or logs.  The "*" that cancels an exchange
 * is the session's to see before calling these (it is bad base64 here).
 */
/* AUTH PLAIN: base64 of "authzid\0user\0pass". */
int smtp_auth_plain_decode(const char *b64, char *user, char *pass);
/* AUTH LOGIN: one base64 field (the user, then the password). */
int smtp_auth_login_decode(const char *b64, char *field);

#endif
