/*
 * SMTP AUTH's users table and the PLAIN and LOGIN decoders (see
 * smtp_auth.h).  The table is loaded whole from smtp_users_file, refused
 * whole on any bad line (a half-loaded table would lock some users out
 * silently), sorted by name for lookup, and shared by reference so a
 * SIGHUP can replace it while worker threads still check passwords
 * against the old one.
 *
 * A check always runs one crypt_r(): against the user's hash, or against
 * a dummy hash of the same cost when the user is unknown, and the result
 * is compared with CRYPTO_memcmp, so the time of a refusal does not tell
 * whether the name exists.  The dummy takes the rounds= setting of the
 * table's first hash (every `openssl passwd -6` hash has the default), as
 * crypt's time is its rounds.
 *
 * The decoders take what a client sent: strict base64 only (OpenSSL's
 * EVP_DecodeBlock alone skips blanks, accepts '=' in the middle and counts
 * padding as output), fields capped at SMTP_AUTH_FIELD_MAX, and every
 * intermediate copy of a credential wiped before it is released.  They
 * do no I/O, so tests/fuzz/fuzz_smtp_auth.c drives them directly.
 */
#include "intake/smtp_auth.h"

#include "common/config.h"
#include "common/util.h"

#include <crypt.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A users file larger than this is a mistake, not a table. */
#define USERS_FILE_MAX (4 * 1024 * 1024)
/* SHA-512 crypt: the salt is at most 16 characters, the hash 86. */
#define SHA512_SALT_MAX 16
#define SHA512_HASH_LEN 86
/* The salt of the dummy hash; never a real user's (nothing is). */
#define DUMMY_SALT "shivneriNoSuchUs"

struct smtp_user {
	char *name;
	char *hash;
	int line; /* for "user named twice" */
};

struct smtp_users {
	atomic_int refs;
	size_t n;
	struct smtp_user *v; /* sorted by name */
	char *dummy;         /* same cost as the real hashes */
};

static bool
crypt_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '/';
}

/*
 * Is h a well-formed "$6$[rounds=N$]salt$hash"?  Checked whole so that a
 * truncated or hand-edited hash is refused at load, never a password that
 * nothing matches (or, worse, something crypt treats as another method).
 * *setting_len gets the length of "$6$[rounds=N$]" for the dummy.
 */
static bool
sha512_hash_valid(const char *h, size_t *setting_len)
{
	const char *p = h + 3, *salt;
	size_t n;

	if (strncmp(h, "$6$", 3) != 0)
		return false;
	if (strncmp(p, "rounds=", 7) == 0) {
		p += 7;
		n = strspn(p, "0123456789");
		if (n == 0 || n > 9 || p[n] != '$')
			return false;
		p += n + 1;
	}
	*setting_len = (size_t)(p - h);
	salt = p;
	while (*p != '\0' && *p != '$' && crypt_char(*p))
		p++;
	if (p == salt || p - salt > SHA512_SALT_MAX || *p != '$')
		return false;
	p++;
	for (n = 0; p[n] != '\0'; n++)
		if (!crypt_char(p[n]))
			return false;
	return n == SHA512_HASH_LEN;
}

static int
user_cmp(const void *a, const void *b)
{
	const struct smtp_user *x = a, *y = b;

	return strcmp(x->name, y->name);
}

/* A user name: no controls, no ':' (the separator), not empty or long. */
static const char *
user_name_problem(const char *name)
{
	size_t n = strlen(name);

	if (n == 0)
		return "empty user name";
	if (n > SMTP_AUTH_FIELD_MAX)
		return "user name longer than 255 bytes";
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return "control character in the user name";
	return NULL;
}

/*
 * One line (NUL-terminated, CR stripped) into u.  Returns 0, 1 for a line
 * that holds nothing, or -EINVAL with why.
 */
static int
line_parse(char *line, struct smtp_users *u, int lineno, size_t *cap,
	   const char **why)
{
	char *colon;
	size_t setting;

	if (line[0] == '\0' || line[0] == '#')
		return 1;
	colon = strchr(line, ':');
	if (colon == NULL) {
		*why = "no ':' between user and hash";
		return -EINVAL;
	}
	*colon = '\0';
	*why = user_name_problem(line);
	if (*why != NULL)
		return -EINVAL;
	if (!sha512_hash_valid(colon + 1, &setting)) {
		*why = "hash is not SHA-512 crypt ($6$...: openssl passwd -6)";
		return -EINVAL;
	}
	if (u->n == *cap) {
		*cap = *cap == 0 ? 16 : *cap * 2;
		u->v = xreallocarray(u->v, *cap, sizeof(*u->v));
	}
	u->v[u->n].name = xstrdup(line);
	u->v[u->n].hash = xstrdup(colon + 1);
	u->v[u->n].line = lineno;
	u->n++;
	return 0;
}

/* Parses text (the file's bytes, modified) into u; 0 or -EINVAL. */
static int
users_parse(char *text, struct smtp_users *u, const char *path, char *err,
	    size_t errlen)
{
	size_t cap = 0;
	int lineno = 0;
	char *p = text;

	while (*p != '\0') {
		char *nl = strchr(p, '\n'), *line = p;
		const char *why = NULL;
		size_t len;

		lineno++;
		if (nl != NULL)
			*nl = '\0';
		p = nl != NULL ? nl + 1 : p + strlen(p);
		len = strlen(line);
		if (len > 0 && line[len - 1] == '\r')
			line[len - 1] = '\0';
		if (line_parse(line, u, lineno, &cap, &why) < 0) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
			return -EINVAL;
		}
	}
	if (u->n > 1)
		qsort(u->v, u->n, sizeof(*u->v), user_cmp);
	for (size_t i = 1; i < u->n; i++) {
		if (strcmp(u->v[i - 1].name, u->v[i].name) == 0) {
			const struct smtp_user *a = &u->v[i - 1], *b = &u->v[i];
			snprintf(err, errlen,
				 "%s:%d: user named twice (first on line %d)",
				 path, a->line > b->line ? a->line : b->line,
				 a->line < b->line ? a->line : b->line);
			return -EINVAL;
		}
	}
	return 0;
}

/* The dummy: the first hash's setting, a fixed salt, a hash of dots. */
static char *
dummy_make(const struct smtp_users *u)
{
	size_t setting = 3;
	char hash[SHA512_HASH_LEN + 1];

	if (u->n > 0 && !sha512_hash_valid(u->v[0].hash, &setting))
		setting = 3;
	memset(hash, '.', SHA512_HASH_LEN);
	hash[SHA512_HASH_LEN] = '\0';
	return xasprintf("%.*s%s$%s", (int)setting,
			 u->n > 0 ? u->v[0].hash : "$6$", DUMMY_SALT, hash);
}

int
smtp_users_load(const char *path, struct smtp_users **out, char *err,
		size_t errlen)
{
	struct smtp_users *u = NULL;
	char *text = NULL;
	size_t len;
	int rc;

	*out = NULL;
	rc = config_secret_mode_check(path, err, errlen);
	if (rc != 0)
		return rc;
	rc = file_read_all(path, USERS_FILE_MAX, &text, &len);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", path,
			 rc == -EFBIG ? "larger than 4 MiB" : strerror(-rc));
		return rc;
	}
	if (memchr(text, '\0', len) != NULL) {
		snprintf(err, errlen, "%s: contains a NUL byte", path);
		rc = -EINVAL;
		goto fail;
	}
	u = xcalloc(1, sizeof(*u));
	atomic_init(&u->refs, 1);
	rc = users_parse(text, u, path, err, errlen);
	if (rc != 0)
		goto fail;
	if (u->n == 0) {
		/* A file caught half-written (on SIGHUP) would refuse every
		 * AUTH; without the file there is no AUTH at all. */
		snprintf(err, errlen,
			 "%s: no user in the file (without smtp_users_file "
			 "there is no AUTH)",
			 path);
		rc = -EINVAL;
		goto fail;
	}
	u->dummy = dummy_make(u);
	explicit_bzero(text, len);
	free(text);
	*out = u;
	return 0;
fail:
	explicit_bzero(text, len);
	free(text);
	smtp_users_free(u);
	return rc;
}

struct smtp_users *
smtp_users_ref(struct smtp_users *u)
{
	if (u != NULL)
		atomic_fetch_add(&u->refs, 1);
	return u;
}

void
smtp_users_free(struct smtp_users *u)
{
	if (u == NULL || atomic_fetch_sub(&u->refs, 1) != 1)
		return;
	for (size_t i = 0; i < u->n; i++) {
		free(u->v[i].name);
		explicit_bzero(u->v[i].hash, strlen(u->v[i].hash));
		free(u->v[i].hash);
	}
	free(u->v);
	free(u->dummy);
	free(u);
}

size_t
smtp_users_count(const struct smtp_users *u)
{
	return u == NULL ? 0 : u->n;
}

bool
smtp_auth_check(const struct smtp_users *u, const char *user, const char *pass)
{
	const struct smtp_user *found = NULL;
	struct smtp_user key;
	struct crypt_data *cd;
	const char *hash, *got;
	bool ok;

	if (u == NULL || user == NULL || pass == NULL)
		return false;
	/* bsearch takes a non-const key only through a const pointer. */
	key.name = (char *)(uintptr_t)user;
	if (u->n > 0)
		found = bsearch(&key, u->v, u->n, sizeof(*u->v), user_cmp);
	hash = found != NULL ? found->hash : u->dummy;
	/* About 32 KB: on the heap, as worker threads have small stacks. */
	cd = xcalloc(1, sizeof(*cd));
	got = crypt_r(pass, hash, cd);
	/* Lengths are the hash format's, never the password's: no leak. */
	ok = got != NULL && got[0] != '*' && strlen(got) == strlen(hash) &&
	     CRYPTO_memcmp(got, hash, strlen(hash)) == 0;
	ok = ok && found != NULL;
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

/* Is c in base64's alphabet (RFC 4648 section 4, not the URL one)? */
static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Strict base64 of at most max decoded bytes into out (max + 1 bytes; the
 * result is NUL-terminated and may contain NULs): the length, or -EINVAL.
 * Strict: only the alphabet, a multiple of four, '=' only as the last one
 * or two characters, and the bits padding leaves over zero, so each
 * decoded value has one spelling.  RFC 4954's "=" (an empty response) is
 * the empty string.
 */
static int
b64_decode_strict(const char *in, unsigned char *out, size_t max)
{
	size_t n = strlen(in), pad = 0, outlen;
	int last, d;

	if (strcmp(in, "=") == 0) {
		out[0] = '\0';
		return 0;
	}
	if (n % 4 != 0 || n / 4 * 3 > max + 2)
		return -EINVAL;
	if (n > 0 && in[n - 1] == '=')
		pad = in[n - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < n - pad; i++)
		if (b64_value((unsigned char)in[i]) < 0)
			return -EINVAL;
	if (pad > 0) {
		/* "YR==" decodes as "YQ==" does: refuse the second. */
		last = b64_value((unsigned char)in[n - pad - 1]);
		if ((pad == 2 && (last & 0x0f) != 0) ||
		    (pad == 1 && (last & 0x03) != 0))
			return -EINVAL;
	}
	outlen = n / 4 * 3 - pad;
	if (outlen > max)
		return -EINVAL;
	/* Now that it is strict, OpenSSL's decoder has nothing to be lax
	 * about; it writes n / 4 * 3 bytes, padding included. */
	d = n == 0 ? 0
		   : EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
	if (d < 0 || (size_t)d != n / 4 * 3)
		return -EINVAL;
	out[outlen] = '\0';
	return (int)outlen;
}

int
smtp_auth_login_decode(const char *b64, char *field)
{
	/* Room for EVP_DecodeBlock's padding bytes past the field. */
	unsigned char buf[SMTP_AUTH_FIELD_MAX + 3];
	int n = b64 == NULL ? -EINVAL
			    : b64_decode_strict(b64, buf, SMTP_AUTH_FIELD_MAX);

	field[0] = '\0';
	if (n >= 0 && memchr(buf, '\0', (size_t)n) == NULL)
		memcpy(field, buf, (size_t)n + 1);
	else
		n = -EINVAL;
	explicit_bzero(buf, sizeof(buf));
	return n < 0 ? -EINVAL : 0;
}

/* The PLAIN message's longest form: authzid, user, pass and two NULs. */
#define PLAIN_MAX (3 * SMTP_AUTH_FIELD_MAX + 2)

/*
 * Splits msg (n bytes, NUL-terminated past n) at its two NULs into user and
 * pass; 0, -EINVAL (malformed; RFC 4616: the user and the password are not
 * empty) or -EPERM (a well-formed message asking to act as another
 * identity: credentials to refuse, not a syntax error).
 */
static int
plain_split(const char *msg, size_t n, char *user, char *pass)
{
	const char *authz = msg, *u, *p;
	size_t ulen, plen;

	u = memchr(msg, '\0', n);
	if (u == NULL)
		return -EINVAL;
	u++;
	p = memchr(u, '\0', n - (size_t)(u - msg));
	if (p == NULL)
		return -EINVAL;
	p++;
	ulen = (size_t)(p - 1 - u);
	plen = n - (size_t)(p - msg);
	/* A third NUL would be a NUL inside the password. */
	if (memchr(p, '\0', plen) != NULL || ulen == 0 || plen == 0 ||
	    ulen > SMTP_AUTH_FIELD_MAX || plen > SMTP_AUTH_FIELD_MAX ||
	    strlen(authz) > SMTP_AUTH_FIELD_MAX)
		return -EINVAL;
	/* Acting as another identity is not a thing Shivneri offers. */
	if (authz[0] != '\0' && strcmp(authz, u) != 0)
		return -EPERM;
	memcpy(user, u, ulen + 1);
	memcpy(pass, p, plen + 1);
	return 0;
}

int
smtp_auth_plain_decode(const char *b64, char *user, char *pass)
{
	unsigned char buf[PLAIN_MAX + 3];
	int n = b64 == NULL ? -EINVAL : b64_decode_strict(b64, buf, PLAIN_MAX);
	int rc = n < 0 ? -EINVAL
		       : plain_split((const char *)buf, (size_t)n, user, pass);

	if (rc != 0) {
		user[0] = '\0';
		pass[0] = '\0';
	}
	explicit_bzero(buf, sizeof(buf));
	return rc;
}
