/*
 * Unit tests of SMTP AUTH (intake/smtp_auth.h): the users file (comments,
 * CRLF, every refusal with its line, the secret-file mode check), password
 * checks (right, wrong, unknown user, a colon and UTF-8 in the password),
 * that an unknown user costs a crypt_r of the same rounds as a known one
 * (timed, min of several runs so a loaded machine only makes both slower),
 * references, and the strict PLAIN and LOGIN decoders.  The hashes were
 * made with `openssl passwd -6` (and Python's crypt for the rounds= one)
 * and are fixed here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "intake/smtp_auth.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* "correct horse" */
#define HASH_ALICE                                                             \
	"$6$abcdefgh$yIZAF3gQPvtKZO/9qOJKffAKKbtS3ef3qmwyugk4uWVjX8YZf/"       \
	"GV3A8SkFxEPY0T56CcilGrHKLffBsp6dLMG."
/* "pässwörd:with colon" */
#define HASH_BOB                                                               \
	"$6$QxZ7uL0p$vvL5.1SO69x/YU0yk11l6ZE1e9KJSmXVLI1gGRrwPyKkOctOveQ/"     \
	"r87zBNGjgWwY8guApaliYnbWIgqe5aH440"
/* "slow one", 20000 rounds */
#define HASH_SLOW                                                              \
	"$6$rounds=20000$pepperpepper$fdT6wsom/C3vVyxKRB4BZ3.DII/"             \
	"7lz7uzeOF0iF.Mo6pBX90cGA/elH5zKzSIdcoxVFr6RtxmYJHUrJW7X21b0"

struct fixture {
	char dir[64];
	char path[128];
};

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/test_smtp_auth.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/users", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static struct smtp_users *
load_ok(struct fixture *f, const char *text)
{
	struct smtp_users *u = NULL;
	char err[512] = "";

	write_file(f->path, text, 0600);
	if (smtp_users_load(f->path, &u, err, sizeof(err)) != 0)
		fail_msg("load refused: %s", err);
	assert_non_null(u);
	return u;
}

/* Loading text is refused with -want and err containing both parts. */
static void
load_bad(struct fixture *f, const char *text, mode_t mode, int want,
	 const char *where, const char *why)
{
	struct smtp_users *u = (struct smtp_users *)f;
	char err[512] = "";

	write_file(f->path, text, mode);
	assert_int_equal(smtp_users_load(f->path, &u, err, sizeof(err)), want);
	assert_null(u);
	if (strstr(err, where) == NULL || strstr(err, why) == NULL)
		fail_msg("error \"%s\" lacks \"%s\" or \"%s\"", err, where,
			 why);
}

static void
test_load_and_check(void **state)
{
	struct fixture *f = *state;
	struct smtp_users *u;

	u = load_ok(f, "# the relay's users\r\n"
		       "\n"
		       "alice:" HASH_ALICE "\r\n"
		       "bob@example.com:" HASH_BOB "\n"
		       "#carol:" HASH_ALICE);
	assert_int_equal(smtp_users_count(u), 2);
	assert_true(smtp_auth_check(u, "alice", "correct horse"));
	assert_false(smtp_auth_check(u, "alice", "correct horse "));
	assert_false(smtp_auth_check(u, "alice", "Correct horse"));
	assert_false(smtp_auth_check(u, "alice", ""));
	assert_false(smtp_auth_check(u, "Alice", "correct horse"));
	assert_true(
	    smtp_auth_check(u, "bob@example.com", "pässwörd:with colon"));
	assert_false(smtp_auth_check(u, "bob@example.com", "correct horse"));
	/* Another user's password is not this user's. */
	assert_false(smtp_auth_check(u, "bob@example.com", "correct horse"));
	assert_false(smtp_auth_check(u, "carol", "correct horse"));
	assert_false(smtp_auth_check(u, "#carol", "correct horse"));
	assert_false(smtp_auth_check(u, "", ""));
	assert_false(smtp_auth_check(u, NULL, "x"));
	assert_false(smtp_auth_check(u, "alice", NULL));
	assert_false(smtp_auth_check(NULL, "alice", "correct horse"));
	smtp_users_free(u);
	smtp_users_free(NULL);

	/* A file with no user is refused: caught half-written on a
	 * reload, it would refuse every AUTH. */
	load_bad(f, "# nobody yet\n", 0600, -EINVAL, f->path,
		 "no user in the file");
}

static void
test_load_refused(void **state)
{
	struct fixture *f = *state;
	struct smtp_users *u = NULL;
	char err[512] = "";

	load_bad(f, "alice:" HASH_ALICE "\n", 0640, -EPERM, f->path,
		 "chmod 600");
	load_bad(f, "alice:" HASH_ALICE "\n", 0604, -EPERM, f->path,
		 "mode 604");
	load_bad(f, "# x\nalice " HASH_ALICE "\n", 0600, -EINVAL,
		 ":2:", "no ':'");
	load_bad(f, ":" HASH_ALICE "\n", 0600, -EINVAL,
		 ":1:", "empty user name");
	load_bad(f, "al\tice:" HASH_ALICE "\n", 0600, -EINVAL,
		 ":1:", "control character");
	/* Other hash forms, and $6$ ones cut or edited by hand. */
	load_bad(f, "alice:x\n", 0600, -EINVAL, ":1:", "SHA-512");
	load_bad(f, "alice:\n", 0600, -EINVAL, ":1:", "SHA-512");
	load_bad(f, "alice:$6$\n", 0600, -EINVAL, ":1:", "SHA-512");
	load_bad(f, "alice:$5$abc$xyz\n", 0600, -EINVAL, ":1:", "SHA-512");
	load_bad(f, "alice:$1$abcdefgh$Wc0gBuyEsPhT6x/Bhp8fH1\n", 0600, -EINVAL,
		 ":1:", "SHA-512");
	load_bad(f, "alice:" HASH_ALICE "x\n", 0600, -EINVAL, ":1:", "SHA-512");
	load_bad(f, "alice:$6$abcdefgh$short\n", 0600, -EINVAL,
		 ":1:", "SHA-512");
	load_bad(f, "alice:" HASH_ALICE " \n", 0600, -EINVAL, ":1:", "SHA-512");
	load_bad(f, "alice:$6$rounds=$abc$x\n", 0600, -EINVAL,
		 ":1:", "SHA-512");
	load_bad(f,
		 "alice:$6$0123456789abcdefg$yIZAF3gQPvtKZO/"
		 "9qOJKffAKKbtS3ef3qmwyugk4uWVjX8YZf/"
		 "GV3A8SkFxEPY0T56CcilGrHKLffBsp6dLMG.\n",
		 0600, -EINVAL, ":1:", "SHA-512");
	load_bad(f, "alice:" HASH_ALICE "\n\nalice:" HASH_BOB "\n", 0600,
		 -EINVAL, ":3:", "named twice (first on line 1)");
	/* A bad line anywhere refuses the whole file. */
	load_bad(f, "alice:" HASH_ALICE "\nbob\n", 0600, -EINVAL,
		 ":2:", "no ':'");

	unlink(f->path);
	assert_int_equal(smtp_users_load(f->path, &u, err, sizeof(err)),
			 -ENOENT);
	assert_null(u);
	assert_non_null(strstr(err, f->path));
}

/* One check of user/pass, in microseconds. */
static int64_t
check_time(const struct smtp_users *u, const char *user, const char *pass)
{
	int64_t t0 = mono_us();
	bool ok = smtp_auth_check(u, user, pass);

	assert_false(ok);
	return mono_us() - t0;
}

static void
test_unknown_user_costs_the_same(void **state)
{
	struct fixture *f = *state;
	struct smtp_users *u;
	int64_t known = INT64_MAX, unknown = INT64_MAX, dt;

	/*
	 * rounds=20000: four times the default, so a dummy of the default
	 * cost would show as a quarter of the time.  The two are measured
	 * in turns and the least of each kept, so a burst of load on a
	 * shared machine slows both alike or neither; the bound (half)
	 * leaves room for noise and still catches the quarter.  On a
	 * machine loaded for long (a parallel test run) nine turns may not
	 * catch a quiet moment for both: more are taken, up to 40, until
	 * the least of each is within the bound.  A dummy of the wrong cost
	 * stays a quarter in every quiet turn and never gets there.
	 */
	u = load_ok(f, "slow:" HASH_SLOW "\n");
	assert_true(smtp_auth_check(u, "slow", "slow one"));
	for (int i = 0; i < 40; i++) {
		dt = check_time(u, "slow", "wrong");
		known = dt < known ? dt : known;
		dt = check_time(u, "nobody", "wrong");
		unknown = dt < unknown ? dt : unknown;
		if (i >= 8 && unknown * 2 >= known && known * 2 >= unknown)
			break;
	}
	print_message("known user %lld us, unknown user %lld us\n",
		      (long long)known, (long long)unknown);
	assert_true(unknown * 2 >= known);
	assert_true(known * 2 >= unknown);
	smtp_users_free(u);
}

static void
test_refcount(void **state)
{
	struct fixture *f = *state;
	struct smtp_users *u, *r;

	u = load_ok(f, "alice:" HASH_ALICE "\n");
	r = smtp_users_ref(u);
	assert_ptr_equal(r, u);
	/* The reloader drops its reference; the session's still works. */
	smtp_users_free(u);
	assert_true(smtp_auth_check(r, "alice", "correct horse"));
	smtp_users_free(r);
	assert_null(smtp_users_ref(NULL));
}

static void
plain_ok(const char *b64, const char *user, const char *pass)
{
	char u[SMTP_AUTH_FIELD_MAX + 1], p[SMTP_AUTH_FIELD_MAX + 1];

	if (smtp_auth_plain_decode(b64, u, p) != 0)
		fail_msg("PLAIN \"%s\" refused", b64);
	assert_string_equal(u, user);
	assert_string_equal(p, pass);
}

static void
plain_bad(const char *b64)
{
	char u[SMTP_AUTH_FIELD_MAX + 1] = "x", p[SMTP_AUTH_FIELD_MAX + 1] = "y";

	if (smtp_auth_plain_decode(b64, u, p) != -EINVAL)
		fail_msg("PLAIN \"%s\" taken", b64 ? b64 : "(null)");
	assert_string_equal(u, "");
	assert_string_equal(p, "");
}

/* Base64 of n bytes at raw, into a new string (the tests' encoder). */
static char *
b64(const void *raw, size_t n)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *s = raw;
	char *out = xmalloc((n + 2) / 3 * 4 + 1), *o = out;

	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)s[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		*o++ = abc[v >> 18 & 63];
		*o++ = abc[v >> 12 & 63];
		*o++ = i + 1 < n ? abc[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? abc[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static void
test_plain(void **state)
{
	char raw[3 * SMTP_AUTH_FIELD_MAX + 8], *e;
	size_t n;

	(void)state;
	/* "\0alice\0correct horse", as swaks and Python send it. */
	plain_ok("AGFsaWNlAGNvcnJlY3QgaG9yc2U=", "alice", "correct horse");
	/* "alice\0alice\0pw": the authzid may name the user itself. */
	plain_ok("YWxpY2UAYWxpY2UAcHc=", "alice", "pw");
	/* "bob\0alice\0pw": acting as bob is refused as credentials. */
	{
		char u[SMTP_AUTH_FIELD_MAX + 1] = "x";
		char p[SMTP_AUTH_FIELD_MAX + 1] = "y";

		assert_int_equal(
		    smtp_auth_plain_decode("Ym9iAGFsaWNlAHB3", u, p), -EPERM);
		assert_string_equal(u, "");
		assert_string_equal(p, "");
	}
	plain_bad("AGFsaWNl");         /* "\0alice": no password */
	plain_bad("AGFsaWNlAA==");     /* "\0alice\0": empty password */
	plain_bad("AABwdw==");         /* "\0\0pw": empty user */
	plain_bad("AGFsaWNlAHB3AHg="); /* "\0alice\0pw\0x" */
	plain_bad("YWxpY2U=");         /* "alice" */
	plain_bad("");
	plain_bad("=");
	plain_bad("*");
	plain_bad(NULL);
	/* Lax base64 that OpenSSL's decoder alone would take. */
	plain_bad(" AGFsaWNlAGNvcnJlY3QgaG9yc2U=");
	plain_bad("AGFsaWNlAGNvcnJlY3QgaG9yc2U=\r\n");
	plain_bad("AGFsaWNlAGNv cnJlY3QgaG9yc2U=");
	plain_bad("AGFsaWNlAGNvcnJlY3QgaG9yc2U");
	plain_bad("AGFs=aWNlAGNvcnJlY3QgaG9yc2U=");
	plain_bad("AGFsaWNlAGNvcnJlY3QgaG9yc2V="); /* stray bits */
	plain_bad("AGFsaWNlAGNvcnJlY3QgaG9yc2U===");
	plain_bad("AGFsaWNlAGNvcnJlY3QgaG9yc2U-");

	/* Fields of exactly the limit pass; one more byte does not. */
	memset(raw, 'u', sizeof(raw));
	raw[0] = '\0';
	raw[1 + SMTP_AUTH_FIELD_MAX] = '\0';
	n = 1 + SMTP_AUTH_FIELD_MAX + 1 + SMTP_AUTH_FIELD_MAX;
	e = b64(raw, n);
	char u[SMTP_AUTH_FIELD_MAX + 1], p[SMTP_AUTH_FIELD_MAX + 1];
	assert_int_equal(smtp_auth_plain_decode(e, u, p), 0);
	assert_int_equal(strlen(u), SMTP_AUTH_FIELD_MAX);
	assert_int_equal(strlen(p), SMTP_AUTH_FIELD_MAX);
	free(e);
	e = b64(raw, n + 1);
	plain_bad(e);
	free(e);
	/* Authzid, user and password all at the limit: the longest. */
	memset(raw, 'u', sizeof(raw));
	raw[SMTP_AUTH_FIELD_MAX] = '\0';
	raw[2 * SMTP_AUTH_FIELD_MAX + 1] = '\0';
	e = b64(raw, 3 * SMTP_AUTH_FIELD_MAX + 2);
	assert_int_equal(smtp_auth_plain_decode(e, u, p), 0);
	free(e);
	e = b64(raw, 3 * SMTP_AUTH_FIELD_MAX + 3);
	plain_bad(e);
	free(e);
}

static void
login_ok(const char *in, const char *want)
{
	char field[SMTP_AUTH_FIELD_MAX + 1];

	if (smtp_auth_login_decode(in, field) != 0)
		fail_msg("LOGIN \"%s\" refused", in);
	assert_string_equal(field, want);
}

static void
login_bad(const char *in)
{
	char field[SMTP_AUTH_FIELD_MAX + 1] = "x";

	if (smtp_auth_login_decode(in, field) != -EINVAL)
		fail_msg("LOGIN \"%s\" taken", in ? in : "(null)");
	assert_string_equal(field, "");
}

static void
test_login(void **state)
{
	char raw[SMTP_AUTH_FIELD_MAX + 2], *e;

	(void)state;
	login_ok("YWxpY2U=", "alice");
	login_ok("YQ==", "a");
	login_ok("YWI=", "ab");
	login_ok("YWJj", "abc");
	login_ok("cMOkc3N3w7ZyZDp3aXRoIGNvbG9u", "pässwörd:with colon");
	/* RFC 4954's empty response, and the empty string. */
	login_ok("=", "");
	login_ok("", "");
	login_bad("YQ");
	login_bad("YR==");
	login_bad("YWJ=");
	login_bad("YW=j");
	login_bad("YQ==YQ==");
	login_bad("  YWJj  ");
	login_bad("YWJj\n");
	login_bad("==");
	login_bad("====");
	login_bad("*");
	login_bad("YQ\x80=");
	login_bad("YQBi"); /* "a\0b" */
	login_bad(NULL);

	memset(raw, 'p', sizeof(raw));
	e = b64(raw, SMTP_AUTH_FIELD_MAX);
	char field[SMTP_AUTH_FIELD_MAX + 1];
	assert_int_equal(smtp_auth_login_decode(e, field), 0);
	assert_int_equal(strlen(field), SMTP_AUTH_FIELD_MAX);
	free(e);
	e = b64(raw, SMTP_AUTH_FIELD_MAX + 1);
	login_bad(e);
	free(e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_load_and_check, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_load_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_user_costs_the_same,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refcount, setup, teardown),
	    cmocka_unit_test(test_plain),
	    cmocka_unit_test(test_login),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
