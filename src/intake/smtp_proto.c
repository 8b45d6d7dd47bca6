/*
 * The SMTP intake's pure parts (smtp_proto.h): the command-line parser,
 * the reply formatter and the DATA reader.  No I/O and no session state,
 * so the unit tests and the fuzzers drive them byte by byte.
 *
 * The parser is strict where strictness protects the relay (no control
 * characters, paths in angle brackets, addresses that the store will take
 * later: a recipient refused at RCPT is better than a message refused
 * after DATA) and lenient where clients commonly differ and nothing is at
 * stake (the case of verbs and keywords, spaces after "FROM:", trailing
 * spaces, source routes, which RFC 5321 says to accept and ignore).
 *
 * The DATA reader is one state machine over bytes; runs of ordinary bytes
 * are copied in one go, so a 2 KB message costs a couple of microseconds.
 * Its buffer grows by doubling up to max + 1 and never past it.
 */
#include "intake/smtp_proto.h"
#include "intake/message_int.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
	const char *name;
	enum smtp_verb verb;
} verbs[] = {
    {"HELO", SMTP_VERB_HELO}, {"EHLO", SMTP_VERB_EHLO},
    {"MAIL", SMTP_VERB_MAIL}, {"RCPT", SMTP_VERB_RCPT},
    {"DATA", SMTP_VERB_DATA}, {"RSET", SMTP_VERB_RSET},
    {"NOOP", SMTP_VERB_NOOP}, {"QUIT", SMTP_VERB_QUIT},
    {"VRFY", SMTP_VERB_VRFY}, {"EXPN", SMTP_VERB_EXPN},
    {"HELP", SMTP_VERB_HELP}, {"STARTTLS", SMTP_VERB_STARTTLS},
    {"AUTH", SMTP_VERB_AUTH},
};

static int
refuse(struct smtp_reply *r, int code, const char *ehn, const char *text)
{
	r->code = code;
	r->ehn = ehn;
	r->text = text;
	return -1;
}

static bool
visible_ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 33 || (unsigned char)*s > 126)
			return false;
	return true;
}

/* HELO and EHLO take one domain or address literal, visible ASCII. */
static int
parse_helo(struct smtp_cmd *c, struct smtp_reply *r)
{
	if (*c->arg == '\0')
		return refuse(r, 501, "5.5.4",
			      c->verb == SMTP_VERB_EHLO
				  ? "Syntax: EHLO hostname"
				  : "Syntax: HELO hostname");
	if (strlen(c->arg) > SMTP_HELO_MAX || !visible_ascii(c->arg))
		return refuse(r, 501, "5.5.4", "Invalid hostname");
	return 0;
}

/*
 * The end of a path that starts at p ('<'): the matching '>' outside a
 * quoted string, or NULL.
 */
static char *
path_end(char *p)
{
	bool quoted = false;

	for (p++; *p != '\0'; p++) {
		if (quoted && *p == '\\' && p[1] != '\0')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && *p == '>')
			return p;
	}
	return NULL;
}

/* The path "<...>" at *pp into c->path; *pp is left after the '>'. */
static int
parse_path(char **pp, bool sender, struct smtp_cmd *c, struct smtp_reply *r)
{
	const char *ehn = sender ? "5.1.7" : "5.1.3";
	const char *bad = sender ? "Bad sender address syntax"
				 : "Bad recipient address syntax";
	char *p = *pp, *gt, *box;
	size_t n, i;

	if (*p != '<')
		return refuse(r, 501, "5.5.4",
			      sender ? "Syntax: MAIL FROM:<address>"
				     : "Syntax: RCPT TO:<address>");
	gt = path_end(p);
	if (gt == NULL)
		return refuse(r, 501, "5.5.4",
			      sender ? "Syntax: MAIL FROM:<address>"
				     : "Syntax: RCPT TO:<address>");
	if ((size_t)(gt - p) + 1 > SMTP_PATH_MAX)
		return refuse(r, 501, ehn, "Path too long");
	*gt = '\0';
	box = p + 1;
	/* A source route (<@a,@b:user@c>): accepted and ignored (4.1.2). */
	if (*box == '@') {
		box = strchr(box, ':');
		if (box == NULL)
			return refuse(r, 501, ehn, bad);
		box++;
	}
	n = strlen(box);
	memcpy(c->path, box, n + 1);
	*pp = gt + 1;
	c->path_8bit = false;
	for (i = 0; i < n; i++)
		if ((unsigned char)box[i] >= 0x80)
			c->path_8bit = true;
	if (n == 0)
		return sender ? 0 : refuse(r, 501, ehn, bad);
	if (c->path_8bit && !g_utf8_validate_len(box, n, NULL))
		return refuse(r, 501, ehn, bad);
	if (!message__addr_spec_ok(c->path))
		return refuse(r, 501, ehn, bad);
	return 0;
}

/* SIZE=digits; a value past 2^64 reads as the largest. */
static bool
parse_size(const char *v, uint64_t *out)
{
	uint64_t n = 0;

	if (*v == '\0' || strlen(v) > 20)
		return false;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9')
			return false;
		n = n > (UINT64_MAX - 9) / 10 ? UINT64_MAX
					      : n * 10 + (uint64_t)(*v - '0');
	}
	*out = n;
	return true;
}

/* One MAIL parameter (keyword and value split at '='). */
static int
mail_param(char *kw, struct smtp_cmd *c, unsigned *seen, struct smtp_reply *r)
{
	char *eq = strchr(kw, '=');
	const char *v = eq != NULL ? eq + 1 : NULL;
	unsigned bit;

	if (eq != NULL)
		*eq = '\0';
	if (strcasecmp(kw, "SIZE") == 0 && v != NULL) {
		bit = 1;
		if (!parse_size(v, &c->size))
			return refuse(r, 501, "5.5.4", "Bad SIZE parameter");
		c->has_size = true;
	} else if (strcasecmp(kw, "BODY") == 0 && v != NULL) {
		bit = 2;
		if (strcasecmp(v, "8BITMIME") == 0)
			c->body_8bit = true;
		else if (strcasecmp(v, "7BIT") != 0)
			return refuse(r, 501, "5.5.4", "Unsupported BODY type");
	} else if (strcasecmp(kw, "SMTPUTF8") == 0 && v == NULL) {
		bit = 4;
		c->smtputf8 = true;
	} else if (strcasecmp(kw, "AUTH") == 0 && v != NULL) {
		bit = 8; /* RFC 4954's AUTH=: taken and ignored */
	} else {
		return refuse(r, 555, "5.5.4", "Unsupported parameter");
	}
	if (*seen & bit)
		return refuse(r, 501, "5.5.4", "Parameter given twice");
	*seen |= bit;
	return 0;
}

/* MAIL FROM:<path> [params] and RCPT TO:<path> (no parameters). */
static int
parse_mail_rcpt(char *arg, struct smtp_cmd *c, struct smtp_reply *r)
{
	bool sender = c->verb == SMTP_VERB_MAIL;
	const char *kw = sender ? "FROM:" : "TO:";
	size_t kwlen = strlen(kw);
	unsigned seen = 0;
	char *p = arg, *w;

	if (strncasecmp(p, kw, kwlen) != 0)
		return refuse(r, 501, "5.5.4",
			      sender ? "Syntax: MAIL FROM:<address>"
				     : "Syntax: RCPT TO:<address>");
	p += kwlen;
	while (*p == ' ')
		p++;
	if (parse_path(&p, sender, c, r) != 0)
		return -1;
	if (*p != '\0' && *p != ' ')
		return refuse(r, 501, "5.5.4",
			      sender ? "Syntax: MAIL FROM:<address>"
				     : "Syntax: RCPT TO:<address>");
	while (*p != '\0') {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		w = p;
		while (*p != '\0' && *p != ' ')
			p++;
		if (*p == ' ')
			*p++ = '\0';
		if (!sender)
			return refuse(r, 555, "5.5.4", "Unsupported parameter");
		if (mail_param(w, c, &seen, r) != 0)
			return -1;
	}
	return 0;
}

/* AUTH mechanism [initial-response]. */
static int
parse_auth(char *arg, struct smtp_cmd *c, struct smtp_reply *r)
{
	char *sp;

	if (*arg == '\0')
		return refuse(r, 501, "5.5.4", "Syntax: AUTH mechanism");
	c->mech = arg;
	sp = strchr(arg, ' ');
	if (sp == NULL) {
		c->arg = "";
		return 0;
	}
	*sp++ = '\0';
	while (*sp == ' ')
		sp++;
	c->arg = sp;
	return 0;
}

/* What each verb takes after it. */
static int
parse_args(char *arg, struct smtp_cmd *c, struct smtp_reply *r)
{
	switch (c->verb) {
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		return parse_helo(c, r);
	case SMTP_VERB_MAIL:
	case SMTP_VERB_RCPT:
		return parse_mail_rcpt(arg, c, r);
	case SMTP_VERB_DATA:
	case SMTP_VERB_RSET:
	case SMTP_VERB_QUIT:
	case SMTP_VERB_STARTTLS:
		if (*arg != '\0')
			return refuse(r, 501, "5.5.4",
				      "Syntax: no parameters allowed");
		return 0;
	case SMTP_VERB_VRFY:
		if (*arg == '\0')
			return refuse(r, 501, "5.5.4", "Syntax: VRFY address");
		return 0;
	case SMTP_VERB_EXPN:
		return refuse(r, 502, "5.5.1", "EXPN not supported");
	case SMTP_VERB_AUTH:
		return parse_auth(arg, c, r);
	case SMTP_VERB_NOOP:
	case SMTP_VERB_HELP:
		return 0;
	}
	return refuse(r, 500, "5.5.2", "Command unrecognized");
}

int
smtp_cmd_parse(char *line, size_t len, struct smtp_cmd *c, struct smtp_reply *r)
{
	size_t i, vlen;
	char *arg, *end;

	memset(c, 0, sizeof(*c));
	c->arg = "";
	for (i = 0; i < len; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			return refuse(r, 500, "5.5.2",
				      "Syntax error: control character");
	line[len] = '\0';
	/* Trailing spaces are a common client habit; nothing hangs on them. */
	for (end = line + len; end > line && end[-1] == ' ';)
		*--end = '\0';
	for (vlen = 0; line[vlen] != '\0' && line[vlen] != ' '; vlen++)
		;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strlen(verbs[i].name) == vlen &&
		    strncasecmp(line, verbs[i].name, vlen) == 0)
			break;
	if (i == sizeof(verbs) / sizeof(verbs[0]))
		return refuse(r, 500, "5.5.2", "Command unrecognized");
	c->verb = verbs[i].verb;
	arg = line + vlen;
	while (*arg == ' ')
		arg++;
	c->arg = arg;
	return parse_args(arg, c, r);
}

size_t
smtp_reply_format(char *out, size_t outsz, int code, const char *ehn,
		  const char *text, bool last)
{
	/* 512 octets a reply line (4.5.3.1.5): "CODE-" "X.Y.Z " text CRLF. */
	int n =
	    snprintf(out, outsz, "%03d%c%s%s%.*s\r\n", code, last ? ' ' : '-',
		     ehn != NULL ? ehn : "", ehn != NULL ? " " : "", 480, text);

	if (n < 0)
		return 0;
	return (size_t)n < outsz ? (size_t)n : outsz - 1;
}

void
smtp_data_init(struct smtp_data *d, size_t max)
{
	memset(d, 0, sizeof(*d));
	d->state = SMTP_DATA_BOL;
	d->max = max;
}

void
smtp_data_cleanup(struct smtp_data *d)
{
	size_t max = d->max;

	free(d->p);
	smtp_data_init(d, max);
}

/* Keeps n bytes of the message; past max, drops everything from then on. */
static void
keep(struct smtp_data *d, const char *s, size_t n)
{
	size_t want;

	if (d->over || n == 0)
		return;
	if (n > d->max - d->len) {
		/* Nothing of it will be stored: give the memory back now. */
		smtp_data_drop(d);
		return;
	}
	if (d->len + n + 1 > d->alloc) {
		want = d->alloc > 0 ? d->alloc : 4096;
		while (want < d->len + n + 1)
			want = want > SIZE_MAX / 2 ? SIZE_MAX : want * 2;
		if (want > d->max + 1)
			want = d->max + 1;
		d->p = xrealloc(d->p, want);
		d->alloc = want;
	}
	memcpy(d->p + d->len, s, n);
	d->len += n;
	d->p[d->len] = '\0';
}

void
smtp_data_drop(struct smtp_data *d)
{
	d->over = true;
	free(d->p);
	d->p = NULL;
	d->len = d->alloc = 0;
}

bool
smtp_data_prepend_text(struct smtp_data *d, const char *text, size_t n)
{
	if (d->len != 0 || d->over || n > d->max)
		return false;
	keep(d, text, n);
	return true;
}

/* A run of bytes that are neither CR nor LF, from in[i]. */
static size_t
plain_run(const char *in, size_t i, size_t n)
{
	size_t j = i;

	while (j < n && in[j] != '\r' && in[j] != '\n')
		j++;
	return j - i;
}

/*
 * One function of a little over 80 lines on purpose: the state machine
 * reads as one table (every state, every byte class), which is what a
 * reviewer checks the smuggling rules against.
 */
size_t
smtp_data_feed(struct smtp_data *d, const char *in, size_t n)
{
	size_t i = 0, run;
	char ch;

	while (i < n && d->state != SMTP_DATA_DONE) {
		if (d->state == SMTP_DATA_MID) {
			run = plain_run(in, i, n);
			keep(d, in + i, run);
			i += run;
			if (i == n)
				break;
		}
		ch = in[i++];
		switch (d->state) {
		case SMTP_DATA_BOL:
			if (ch == '.') {
				d->state = SMTP_DATA_DOT;
				break;
			}
			/* FALLTHROUGH */
		case SMTP_DATA_MID:
			if (ch == '\r') {
				d->state = SMTP_DATA_CR;
			} else if (ch == '\n') {
				/* A bare LF: a line end, normalised; the
				 * next line is not a CRLF line, so a dot
				 * there is text. */
				keep(d, "\r\n", 2);
				d->state = SMTP_DATA_MID;
			} else {
				keep(d, &ch, 1);
				d->state = SMTP_DATA_MID;
			}
			break;
		case SMTP_DATA_CR:
			if (ch == '\n') {
				keep(d, "\r\n", 2);
				d->state = SMTP_DATA_BOL;
			} else if (ch == '\r') {
				keep(d, "\r", 1); /* the first was bare */
			} else {
				keep(d, "\r", 1);
				keep(d, &ch, 1);
				d->state = SMTP_DATA_MID;
			}
			break;
		case SMTP_DATA_DOT:
			if (ch == '\r') {
				d->state = SMTP_DATA_DOTCR;
			} else if (ch == '\n') {
				/* CRLF "." LF: not the end; the dot is
				 * text, the LF a normalised line end. */
				keep(d, ".\r\n", 3);
				d->state = SMTP_DATA_MID;
			} else {
				/* Dot-unstuffing: the first dot goes. */
				keep(d, &ch, 1);
				d->state = SMTP_DATA_MID;
			}
			break;
		case SMTP_DATA_DOTCR:
			if (ch == '\n') {
				d->state = SMTP_DATA_DONE;
				break;
			}
			/* CRLF "." CR and more: not the end.  The line
			 * starts with a dot followed by other octets, so
			 * the dot goes; the bare CR stays (and the
			 * message will be refused for it). */
			keep(d, "\r", 1);
			if (ch == '\r') {
				d->state = SMTP_DATA_CR;
			} else {
				keep(d, &ch, 1);
				d->state = SMTP_DATA_MID;
			}
			break;
		case SMTP_DATA_DONE:
			break;
		}
	}
	d->seen += i;
	return i;
}
