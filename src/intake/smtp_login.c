/*
 * The session's side of SMTP AUTH (RFC 4954): PLAIN (RFC 4616) and LOGIN,
 * against the users of smtp_users_file (smtp_auth.h decodes the responses
 * and checks the password).
 *
 * AUTH is offered after STARTTLS (or on smtps_listen), or without TLS only
 * on a listener bound to loopback with smtp_allow_plain_auth = yes, so a
 * password never crosses a network in clear.  Asked for anyway: 538
 * 5.7.11.  The check (crypt_r SHA-512, a millisecond or more) runs on the
 * server's one AUTH worker thread, never on the loop; reads are off until
 * its answer, and a client gone meanwhile is freed when it comes.  A
 * failure is 535 5.7.8 and counts as a bad command, so guessing ends the
 * session after smtp_max_bad_commands; the one worker also serialises
 * guesses from every session.  Across sessions a client's failures earn it
 * waits (smtp_guard.h): past SMTP_GUARD_FREE, an AUTH in its wait gets
 * 454 4.7.0 without a check (so without the worker's time) and counts as
 * a bad command.  A PLAIN authorization identity other than
 * the user is such a failure too (RFC 4954 section 6: credentials the
 * server will not take), sent down the same path without a password
 * check.  AUTH is an ESMTP extension: after HELO it is 503 5.5.1, as
 * before any greeting.  Neither the password nor the user name of
 * a failure is logged; decoded credentials are wiped after use.
 */
#include "intake/smtp_int.h"
#include "common/util.h"
#include "common/workq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum auth_step {
	AUTH_NONE,
	AUTH_PLAIN,      /* the PLAIN response after an empty "334 " */
	AUTH_LOGIN_USER, /* after "334 VXNlcm5hbWU6" (Username:) */
	AUTH_LOGIN_PASS, /* after "334 UGFzc3dvcmQ6" (Password:) */
};

/* One check on the worker. */
struct auth_job {
	struct smtp_session *ss;
	struct smtp_users *users; /* a reference of its own */
	char user[SMTP_AUTH_FIELD_MAX + 1];
	char pass[SMTP_AUTH_FIELD_MAX + 1];
	uint8_t client[16]; /* its client's key, for the guard */
	bool deny;          /* refused before any check (another authzid) */
	bool ok;
};

bool
smtp__auth_offered(const struct smtp_session *ss)
{
	const struct smtp_server *s = ss->srv;

	return s->users != NULL &&
	       (ss->tls || (s->opt.allow_plain_auth && ss->lis->loopback));
}

static void
auth_work(void *arg)
{
	struct auth_job *j = arg;

	j->ok = !j->deny && smtp_auth_check(j->users, j->user, j->pass);
	explicit_bzero(j->pass, sizeof(j->pass));
}

/* On the loop: the worker's answer. */
static void
auth_done(void *arg)
{
	static const struct smtp_reply failed = {
	    535, "5.7.8", "Authentication credentials invalid"};
	struct auth_job *j = arg;
	struct smtp_session *ss = j->ss;
	int64_t wait = 0;
	size_t i;

	smtp_users_free(j->users);
	if (j->ok)
		smtp_guard_succeeded(ss->srv->guard, j->client);
	else if (!j->deny)
		wait = smtp_guard_failed(ss->srv->guard, j->client, mono_ms());
	if (wait > 0)
		log_warnx_rl(&ss->srv->rl[SMTP_RL_AUTH_WAIT], SMTP_RL_MS,
			     "- smtp auth_penalty peer=%s wait_ms=%lld "
			     "reason=\"too many failed AUTH from this client\"",
			     ss->peer, (long long)wait);
	if (!ss->gone) {
		if (j->ok) {
			ss->authed = true;
			smtp__read_bounds(ss);
			for (i = 0;
			     j->user[i] != '\0' && i + 1 < sizeof(ss->user);
			     i++)
				ss->user[i] =
				    (unsigned char)j->user[i] > ' ' &&
					    (unsigned char)j->user[i] < 0x7f
					? j->user[i]
					: '?';
			ss->user[i] = '\0';
			log_debug("- smtp auth peer=%s user=%s", ss->peer,
				  ss->user);
			smtp__reply(ss, 235, "2.7.0",
				    "Authentication successful");
		} else {
			log_warnx_rl(&ss->srv->rl[SMTP_RL_AUTH], SMTP_RL_MS,
				     "- smtp auth_failed peer=%s", ss->peer);
		}
	}
	explicit_bzero(j, sizeof(*j));
	free(j);
	/* A failure counts (and may end the session) once reads are on. */
	if (!ss->gone && !ss->authed) {
		smtp__set_state(ss, SMTP_STATE_CMD);
		smtp__reply_bad(ss, &failed);
		if (ss->state != SMTP_STATE_CMD)
			return;
	}
	smtp__resume(ss);
}

/*
 * Credentials decoded: to the worker; reads stay off until it answers.
 * deny refuses them there without a check, so a refusal of another kind
 * takes the wrong password's way: the same reply, log line (rate-limited)
 * and bad-command count.
 */
static void
auth_check(struct smtp_session *ss, const char *user, const char *pass,
	   bool deny)
{
	static const struct smtp_reply later = {
	    454, "4.7.0", "Temporary authentication failure, try later"};
	struct auth_job *j;
	int64_t wait;

	wait = smtp_guard_wait(ss->srv->guard, ss->client->key, mono_ms());
	if (wait > 0) {
		/* No check: the client's failures earned it a wait. */
		log_warnx_rl(&ss->srv->rl[SMTP_RL_AUTH_WAIT], SMTP_RL_MS,
			     "- smtp auth_refused peer=%s wait_ms=%lld "
			     "reason=\"too many failed AUTH from this client\"",
			     ss->peer, (long long)wait);
		ss->auth_step = AUTH_NONE;
		if (ss->state == SMTP_STATE_AUTH)
			smtp__set_state(ss, SMTP_STATE_CMD);
		smtp__reply_bad(ss, &later);
		return;
	}
	j = xcalloc(1, sizeof(*j));
	j->ss = ss;
	memcpy(j->client, ss->client->key, sizeof(j->client));
	j->deny = deny;
	j->users = smtp_users_ref(ss->srv->users);
	snprintf(j->user, sizeof(j->user), "%s", user);
	snprintf(j->pass, sizeof(j->pass), "%s", pass);
	ss->auth_step = AUTH_NONE;
	smtp__set_state(ss, SMTP_STATE_AUTH_CHECK);
	workq_submit(ss->srv->auth_wq, auth_work, auth_done, j);
}

/* The exchange ends without a check (a refusal already replied). */
static void
auth_end(struct smtp_session *ss)
{
	ss->auth_step = AUTH_NONE;
	explicit_bzero(ss->auth_user, sizeof(ss->auth_user));
	if (ss->state == SMTP_STATE_AUTH)
		smtp__set_state(ss, SMTP_STATE_CMD);
}

static void
bad_base64(struct smtp_session *ss)
{
	static const struct smtp_reply r = {501, "5.5.2",
					    "Cannot decode response"};

	auth_end(ss);
	smtp__reply_bad(ss, &r);
}

/* A PLAIN response (initial or after "334 "). */
static void
plain(struct smtp_session *ss, const char *b64)
{
	char user[SMTP_AUTH_FIELD_MAX + 1], pass[SMTP_AUTH_FIELD_MAX + 1];
	int rc = smtp_auth_plain_decode(b64, user, pass);

	if (rc == -EPERM)
		auth_check(ss, "", "", true);
	else if (rc != 0)
		bad_base64(ss);
	else
		auth_check(ss, user, pass, false);
	explicit_bzero(pass, sizeof(pass));
}

/* LOGIN's user name: then ask for the password. */
static void
login_user(struct smtp_session *ss, const char *b64)
{
	if (smtp_auth_login_decode(b64, ss->auth_user) != 0) {
		bad_base64(ss);
		return;
	}
	ss->auth_step = AUTH_LOGIN_PASS;
	if (ss->state != SMTP_STATE_AUTH)
		smtp__set_state(ss, SMTP_STATE_AUTH);
	smtp__reply(ss, 334, NULL, "UGFzc3dvcmQ6");
}

static void
login_pass(struct smtp_session *ss, const char *b64)
{
	char pass[SMTP_AUTH_FIELD_MAX + 1];

	if (smtp_auth_login_decode(b64, pass) != 0) {
		bad_base64(ss);
	} else {
		auth_check(ss, ss->auth_user, pass, false);
		explicit_bzero(ss->auth_user, sizeof(ss->auth_user));
	}
	explicit_bzero(pass, sizeof(pass));
}

/* What must hold before an exchange starts; false when refused. */
static bool
auth_allowed(struct smtp_session *ss)
{
	static const struct smtp_reply none = {502, "5.5.1",
					       "AUTH not available"};
	static const struct smtp_reply tls = {
	    538, "5.7.11",
	    "Encryption required for requested authentication mechanism"};
	static const struct smtp_reply again = {503, "5.5.1",
						"Already authenticated"};
	static const struct smtp_reply in_tx = {
	    503, "5.5.1", "AUTH not permitted during a mail transaction"};
	static const struct smtp_reply no_helo = {503, "5.5.1",
						  "Send EHLO first"};
	const struct smtp_reply *r = NULL;

	if (ss->srv->users == NULL)
		r = &none;
	else if (!smtp__auth_offered(ss))
		r = &tls;
	else if (ss->authed)
		r = &again;
	else if (ss->in_tx)
		r = &in_tx;
	else if (ss->helo[0] == '\0' || !ss->esmtp)
		r = &no_helo; /* an ESMTP extension: not after HELO */
	if (r != NULL)
		smtp__reply_bad(ss, r);
	return r == NULL;
}

void
smtp__auth_cmd(struct smtp_session *ss, const struct smtp_cmd *c)
{
	static const struct smtp_reply mech = {
	    504, "5.5.4", "Unrecognized authentication type"};
	bool initial = c->arg[0] != '\0';

	if (!auth_allowed(ss))
		return;
	if (strcasecmp(c->mech, "PLAIN") == 0) {
		if (initial) {
			/* "=" is an empty initial response (RFC 4954). */
			plain(ss, strcmp(c->arg, "=") == 0 ? "" : c->arg);
			return;
		}
		ss->auth_step = AUTH_PLAIN;
		smtp__set_state(ss, SMTP_STATE_AUTH);
		smtp__reply(ss, 334, NULL, "");
	} else if (strcasecmp(c->mech, "LOGIN") == 0) {
		if (initial) {
			login_user(ss, c->arg);
			return;
		}
		ss->auth_step = AUTH_LOGIN_USER;
		smtp__set_state(ss, SMTP_STATE_AUTH);
		smtp__reply(ss, 334, NULL, "VXNlcm5hbWU6");
	} else {
		smtp__reply_bad(ss, &mech);
	}
}

void
smtp__auth_line(struct smtp_session *ss, char *line, size_t len)
{
	static const struct smtp_reply cancelled = {501, "5.0.0",
						    "Authentication cancelled"};

	if (len == 1 && line[0] == '*') {
		auth_end(ss);
		smtp__reply_bad(ss, &cancelled);
		return;
	}
	if (memchr(line, '\0', len) != NULL) {
		bad_base64(ss);
		return;
	}
	switch (ss->auth_step) {
	case AUTH_PLAIN:
		plain(ss, line);
		break;
	case AUTH_LOGIN_USER:
		login_user(ss, line);
		break;
	case AUTH_LOGIN_PASS:
		login_pass(ss, line);
		break;
	default:
		auth_end(ss);
		break;
	}
}

void
smtp__auth_too_long(struct smtp_session *ss)
{
	static const struct smtp_reply r = {
	    500, "5.5.6", "Authentication Exchange line is too long"};

	auth_end(ss);
	smtp__reply_bad(ss, &r);
}
