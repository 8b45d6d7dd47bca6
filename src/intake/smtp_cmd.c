/*
 * The SMTP commands of a session (smtp_int.h): each a check, whose
 * refusal is a reply, then a proceed, as OpenSMTPD splits them.  HELO and
 * EHLO (the extensions offered), MAIL (the relay check: trusted network
 * or AUTH; SIZE= against the limit), RCPT (the recipient cap), DATA (the
 * message buffer started with our Received header), RSET, NOOP, QUIT,
 * VRFY, HELP, STARTTLS; AUTH is smtp_login.c's.  Reading, DATA's bytes,
 * the submit path's answer and the connection's life are
 * smtp_session.c's.  Nothing here is fatal on input.
 */
#include "intake/smtp_int.h"
#include "common/util.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * The HELO/EHLO argument as our Received header carries it.  It is
 * visible ASCII already (smtp_cmd_parse), but readers parse that header
 * by RFC 5322, where some of those characters have a meaning: a "(" opens
 * a comment that swallows "by HOST ... with ...", a quote or a backslash
 * swallows the rest, a ";" ends the tokens before our date, and
 * "x([192.0.2.9])" puts a forged address ahead of the real one.  Those
 * become '?' (as Postfix neuters its HELO name), and so do brackets except
 * around a whole address literal, which is kept as written.
 */
static void
helo_keep(char *out, size_t sz, const char *arg)
{
	size_t i, n = strlen(arg);
	bool literal;

	if (n >= sz)
		n = sz - 1;
	literal = n >= 2 && arg[0] == '[' && arg[n - 1] == ']' &&
		  memchr(arg + 1, '[', n - 1) == NULL &&
		  memchr(arg, ']', n - 1) == NULL;
	for (i = 0; i < n; i++) {
		out[i] = arg[i];
		if (strchr("()<>;\"\\", arg[i]) != NULL ||
		    (!literal && (arg[i] == '[' || arg[i] == ']')))
			out[i] = '?';
	}
	out[n] = '\0';
}

static void
cmd_helo(struct smtp_session *ss, const struct smtp_cmd *c)
{
	const struct smtp_server *s = ss->srv;
	char line[600];
	struct evbuffer *out = smtp__outq(ss);
	const char *ext[8];
	size_t n = 0, i, len;
	char size[48];
	bool ok;

	smtp__tx_reset(ss);
	helo_keep(ss->helo, sizeof(ss->helo), c->arg);
	ss->esmtp = c->verb == SMTP_VERB_EHLO;
	if (!ss->esmtp) {
		smtp__reply(ss, 250, NULL, s->hostname);
		return;
	}
	snprintf(size, sizeof(size), "SIZE %zu", s->size_advertised);
	ext[n++] = "PIPELINING";
	ext[n++] = size;
	ext[n++] = "8BITMIME";
	ext[n++] = "ENHANCEDSTATUSCODES";
	ext[n++] = "SMTPUTF8";
	if (s->tls != NULL && !ss->tls)
		ext[n++] = "STARTTLS";
	if (smtp__auth_offered(ss))
		ext[n++] = "AUTH PLAIN LOGIN";
	len = smtp_reply_format(line, sizeof(line), 250, NULL, s->hostname,
				false);
	ok = evbuffer_add(out, line, len) == 0;
	for (i = 0; i < n && ok; i++) {
		len = smtp_reply_format(line, sizeof(line), 250, NULL, ext[i],
					i + 1 == n);
		ok = evbuffer_add(out, line, len) == 0;
	}
	/* Out of memory, as smtp__reply: a half reply must not stand. */
	if (!ok)
		ss->gone = true;
}

/* May this session send at all?  Trusted network or AUTH. */
static bool
may_send(struct smtp_session *ss)
{
	static const struct smtp_reply need_auth = {530, "5.7.0",
						    "Authentication required"};
	static const struct smtp_reply denied = {
	    554, "5.7.1", "Relay access denied: not a trusted network"};

	if (ss->trusted || ss->authed)
		return true;
	log_warnx_rl(&ss->srv->rl[SMTP_RL_RELAY], SMTP_RL_MS,
		     "- smtp relay_refused peer=%s", ss->peer);
	smtp__reply_bad(ss, ss->srv->users != NULL ? &need_auth : &denied);
	return false;
}

static void
cmd_mail(struct smtp_session *ss, const struct smtp_cmd *c)
{
	static const struct smtp_reply no_helo = {503, "5.5.1",
						  "Send EHLO or HELO first"};
	static const struct smtp_reply nested = {503, "5.5.1",
						 "Nested MAIL command"};
	static const struct smtp_reply utf8 = {
	    553, "5.6.7", "Non-ASCII address needs SMTPUTF8"};

	if (ss->helo[0] == '\0') {
		smtp__reply_bad(ss, &no_helo);
		return;
	}
	if (ss->in_tx) {
		smtp__reply_bad(ss, &nested);
		return;
	}
	if (!may_send(ss))
		return;
	if (c->path_8bit && !c->smtputf8) {
		smtp__reply_bad(ss, &utf8);
		return;
	}
	if (c->has_size && c->size > ss->srv->size_advertised) {
		smtp__reply(ss, 552, "5.3.4",
			    "Message size exceeds fixed maximum message size");
		return;
	}
	ss->mail_from = xstrdup(c->path);
	ss->smtputf8 = c->smtputf8;
	ss->in_tx = true;
	smtp__reply(ss, 250, "2.1.0", "Ok");
}

static void
cmd_rcpt(struct smtp_session *ss, const struct smtp_cmd *c)
{
	static const struct smtp_reply no_mail = {503, "5.5.1",
						  "Need MAIL command"};
	static const struct smtp_reply utf8 = {
	    553, "5.6.7", "Non-ASCII address needs SMTPUTF8"};

	if (!ss->in_tx) {
		smtp__reply_bad(ss, &no_mail);
		return;
	}
	if (c->path_8bit && !ss->smtputf8) {
		smtp__reply_bad(ss, &utf8);
		return;
	}
	if (ss->nrcpt >= ss->srv->opt.max_recipients) {
		smtp__reply(ss, 452, "4.5.3", "Too many recipients");
		return;
	}
	ss->rcpt = xreallocarray(ss->rcpt, ss->nrcpt + 1, sizeof(*ss->rcpt));
	ss->rcpt[ss->nrcpt++] = xstrdup(c->path);
	smtp__reply(ss, 250, "2.1.5", "Ok");
}

/* The Received header (RFC 5321 4.4), first line of the message. */
static size_t
received_header(struct smtp_session *ss, char *out, size_t sz)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	int n;

	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm) ==
		0)
		snprintf(date, sizeof(date), "Thu, 01 Jan 1970 00:00:00 +0000");
	/* RFC 3848's protocol names; RFC 6531's for SMTPUTF8. */
	n = snprintf(out, sz,
		     "Received: from %s (%s)\r\n\tby %s (Shivneri) with "
		     "%s%s%s;\r\n\t%s\r\n",
		     ss->helo, ss->addr_lit, ss->srv->hostname,
		     ss->smtputf8 ? "UTF8SMTP"
		     : ss->esmtp  ? "ESMTP"
				  : "SMTP",
		     ss->tls ? "S" : "", ss->authed ? "A" : "", date);
	if (n < 0 || (size_t)n >= sz)
		return 0;
	return (size_t)n;
}

static void
cmd_data(struct smtp_session *ss)
{
	static const struct smtp_reply no_mail = {503, "5.5.1",
						  "Need MAIL command"};
	static const struct smtp_reply no_rcpt = {554, "5.5.1",
						  "No valid recipients"};
	char recv[SMTP_HELO_MAX + 512];
	size_t n;

	if (!ss->in_tx) {
		smtp__reply_bad(ss, &no_mail);
		return;
	}
	if (ss->nrcpt == 0) {
		smtp__reply_bad(ss, &no_rcpt);
		return;
	}
	smtp_data_init(&ss->data, ss->srv->opt.max_message_bytes);
	n = received_header(ss, recv, sizeof(recv));
	if (n == 0 || !smtp_data_prepend_text(&ss->data, recv, n)) {
		smtp__charge(ss);
		smtp__reply(ss, 451, "4.3.0",
			    "Local error: cannot start a message");
		smtp__tx_reset(ss);
		return;
	}
	smtp__charge(ss);
	ss->ours = n;
	smtp__reply(ss, 354, NULL, "End data with <CR><LF>.<CR><LF>");
	smtp__set_state(ss, SMTP_STATE_DATA);
}

/*
 * STARTTLS (RFC 3207): "220", then reads stay off until it is out, and
 * tls_start() puts TLS under the session (on_write).
 */
static void
cmd_starttls(struct smtp_session *ss)
{
	static const struct smtp_reply not_offered = {502, "5.5.1",
						      "STARTTLS not available"};
	static const struct smtp_reply again = {503, "5.5.1",
						"TLS already active"};

	if (ss->srv->tls == NULL) {
		smtp__reply_bad(ss, &not_offered);
		return;
	}
	if (ss->tls) {
		smtp__reply_bad(ss, &again);
		return;
	}
	smtp__reply(ss, 220, "2.0.0", "Ready to start TLS");
	smtp__set_state(ss, SMTP_STATE_STARTTLS);
}

static void
cmd_help(struct smtp_session *ss)
{
	char text[160];

	snprintf(text, sizeof(text),
		 "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY "
		 "HELP%s%s",
		 ss->srv->tls != NULL && !ss->tls ? " STARTTLS" : "",
		 smtp__auth_offered(ss) ? " AUTH" : "");
	smtp__reply(ss, 214, "2.0.0", text);
}

/* A junk command's answer: past SMTP_JUNK_MAX it counts as refused too. */
static void
junk_reply(struct smtp_session *ss, const struct smtp_reply *r)
{
	if (++ss->junk > SMTP_JUNK_MAX)
		smtp__reply_bad(ss, r);
	else
		smtp__reply(ss, r->code, r->ehn, r->text);
}

static void
cmd_dispatch(struct smtp_session *ss, const struct smtp_cmd *c)
{
	static const struct smtp_reply not_impl = {502, "5.5.1",
						   "Command not implemented"};
	static const struct smtp_reply ok = {250, "2.0.0", "Ok"};
	static const struct smtp_reply vrfy = {
	    252, "2.5.0",
	    "Cannot VRFY user, but will accept message and attempt delivery"};

	switch (c->verb) {
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		cmd_helo(ss, c);
		break;
	case SMTP_VERB_MAIL:
		cmd_mail(ss, c);
		break;
	case SMTP_VERB_RCPT:
		cmd_rcpt(ss, c);
		break;
	case SMTP_VERB_DATA:
		cmd_data(ss);
		break;
	case SMTP_VERB_RSET:
		smtp__tx_reset(ss);
		junk_reply(ss, &ok);
		break;
	case SMTP_VERB_NOOP:
		junk_reply(ss, &ok);
		break;
	case SMTP_VERB_QUIT:
		smtp__reply(ss, 221, "2.0.0", "Bye");
		smtp__close(ss);
		break;
	case SMTP_VERB_VRFY:
		junk_reply(ss, &vrfy);
		break;
	case SMTP_VERB_HELP:
		cmd_help(ss);
		break;
	case SMTP_VERB_STARTTLS:
		cmd_starttls(ss);
		break;
	case SMTP_VERB_AUTH:
		smtp__auth_cmd(ss, c);
		break;
	case SMTP_VERB_EXPN:
		smtp__reply_bad(ss, &not_impl);
		break;
	}
}

void
smtp__command(struct smtp_session *ss, char *line, size_t len)
{
	struct smtp_cmd c;
	struct smtp_reply r;

	if (smtp_cmd_parse(line, len, &c, &r) != 0) {
		smtp__reply_bad(ss, &r);
		return;
	}
	if (ss->srv->draining && c.verb != SMTP_VERB_QUIT) {
		smtp__reply_421(ss, "4.3.2", "Service shutting down");
		return;
	}
	cmd_dispatch(ss, &c);
}
