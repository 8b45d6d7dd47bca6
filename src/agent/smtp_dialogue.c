/*
 * The smtp connector's reading of a transaction (contract in
 * smtp_dialogue.h).  Replies are matched to the transaction's commands
 * in their order (pipelined or not), the session's to the last command
 * sent; a non-ASCII address the smarthost cannot take is permanent; the
 * classes follow RFC 5321's codes as smarthosts use them: 2xx after
 * the data delivered (refused recipients named), 530/534/535/538 the
 * account's, 452 throttled, other 4xx transient, 5xx permanent for MAIL,
 * RCPT and the data but the smarthost's (transient) or the account's (at
 * AUTH) for the session and for every recipient refused as a relay, and the
 * whole message sent with no verdict, or a 2xx before the end of the data,
 * ambiguous.  Nothing here does I/O, so every rule is a pure function of what
 * was said.
 */
#include "agent/smtp_dialogue.h"
#include "agent/connector.h"
#include "common/envelope.h"
#include "common/log.h"
#include "common/util.h"
#include "link/link.h"

#include <openssl/crypto.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int
smtp_dialogue_code(const char *p, size_t len, bool *last)
{
	if (len < 3 || p[0] < '1' || p[0] > '5' || p[1] < '0' || p[1] > '9' ||
	    p[2] < '0' || p[2] > '9')
		return 0;
	*last = len == 3 || p[3] != '-';
	return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

/*
 * The verb of the command a final reply answers: the oldest of the
 * transaction still waiting (its answer recorded), else the last sent.
 * NULL: no verdict (QUIT's 221).
 */
static const char *
dialogue_match(struct smtp_dialogue *d, int code)
{
	if (d->mail_wait) {
		d->mail_wait = false;
		d->mail_code = code;
		return "MAIL";
	}
	if (d->nrcpt_done < d->nrcpt_sent) {
		d->rcpt_code[d->nrcpt_done++] = code;
		return "RCPT";
	}
	if (d->data_wait) {
		d->data_wait = false;
		/* Every RCPT was answered before DATA (replies keep the
		 * commands' order): the body goes only to a taken one. */
		if (code == 354 && smtp_dialogue_rcpt_taken(d, d->nrcpt_sent))
			d->data_go = true;
		else if (code == 354)
			d->data_empty = true;
		return "DATA";
	}
	/* curl says QUIT inside the failed transfer: its 221 is no verdict. */
	if (strcmp(d->cmd, "QUIT") == 0)
		return NULL;
	if (d->data_go)
		d->final_code = code;
	return d->cmd;
}

/* True when the n bytes at s hold "relay", in any case. */
static bool
says_relay(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i + 5 <= n; i++)
		if (strncasecmp(s + i, "relay", 5) == 0)
			return true;
	return false;
}

/* One final reply line of the server, matched to its command. */
static void
dialogue_reply(struct smtp_dialogue *d, int code, const char *text, size_t len)
{
	char *dst;
	const char *verb;

	/* Only the first reply after the data is its verdict; QUIT's 221
	 * comes later. */
	if (d->data_go && d->final_code != 0)
		return;
	verb = dialogue_match(d, code);
	if (verb == NULL)
		return;
	d->last_code = code;
	snprintf(d->last_cmd, sizeof(d->last_cmd), "%s", verb);
	if (code >= 500 && strcmp(verb, "RCPT") == 0 && says_relay(text, len))
		d->relay_denied = true;
	dst = d->final_code != 0 ? d->final_text : d->last_text;
	while (len > 0 && (text[len - 1] == '\r' || text[len - 1] == '\n'))
		len--;
	log_sanitize(text, len, dst, SMTP_DIALOGUE_REPLY_MAX);
}

void
smtp_dialogue_in(struct smtp_dialogue *d, const char *p, size_t len)
{
	const char *nl;
	size_t n;
	bool last;
	int code;

	while (len > 0) {
		nl = memchr(p, '\n', len);
		n = nl != NULL ? (size_t)(nl - p) + 1 : len;
		code = smtp_dialogue_code(p, n, &last);
		if (code != 0 && last)
			dialogue_reply(d, code, p, n);
		p += n;
		len -= n;
	}
}

/*
 * Only a known verb is kept: the lines after "AUTH PLAIN" or "AUTH LOGIN"
 * are credentials in base64, and they must never reach a detail.
 */
void
smtp_dialogue_out(struct smtp_dialogue *d, const char *p, size_t len)
{
	static const char *const verbs[] = {"EHLO", "HELO", "STARTTLS",
					    "AUTH", "MAIL", "RCPT",
					    "DATA", "RSET", "QUIT"};
	size_t i, n;

	for (n = 0; n < len; n++)
		if (p[n] == ' ' || p[n] == ':' || p[n] == '\r' || p[n] == '\n')
			break;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strlen(verbs[i]) != n || strncasecmp(p, verbs[i], n) != 0)
			continue;
		snprintf(d->cmd, sizeof(d->cmd), "%s", verbs[i]);
		if (strcmp(d->cmd, "MAIL") == 0)
			d->mail_wait = true;
		else if (strcmp(d->cmd, "RCPT") == 0)
			d->nrcpt_sent++;
		else if (strcmp(d->cmd, "DATA") == 0)
			d->data_wait = true;
		return;
	}
}

/*
 * A detail line: a long one is cut at LINK_DETAIL_MAX, which is what the
 * link carries anyway.
 */
static void detail_set(char *buf, size_t bufsz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
detail_set(char *buf, size_t bufsz, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(buf, bufsz, fmt, ap);
	va_end(ap);
}

static bool
code_is_auth(int code)
{
	return code == 530 || code == 534 || code == 535 || code == 538;
}

/* The class of a refusal with this SMTP code (4xx or 5xx). */
static int
code_outcome(int code)
{
	if (code_is_auth(code))
		return OUTCOME_ACCOUNT;
	if (code == 452)
		return OUTCOME_THROTTLED;
	if (code >= 500)
		return OUTCOME_PERMANENT;
	return OUTCOME_TRANSIENT;
}

/*
 * 552 at MAIL (RFC 1870's answer to SIZE=) or after the data is the
 * smarthost's size limit, which another provider may not share: too
 * large, not permanent.  At RCPT it is a full mailbox, the recipient's.
 */
static int
size_outcome(const char *cmd, int code, int outcome)
{
	if (code == 552 && (cmd == NULL || strcmp(cmd, "MAIL") == 0))
		return OUTCOME_TOO_LARGE;
	return outcome;
}

/*
 * A refusal of the session itself (greeting, EHLO, STARTTLS, AUTH) says
 * nothing about the message: 5xx there is the account's at AUTH and the
 * smarthost's elsewhere.  Only MAIL, RCPT and the data refuse a message.
 */
static int
session_outcome(const char *cmd, int code)
{
	int outcome = code_outcome(code);

	if (outcome != OUTCOME_PERMANENT || strcmp(cmd, "MAIL") == 0 ||
	    strcmp(cmd, "RCPT") == 0 || strcmp(cmd, "DATA") == 0)
		return outcome;
	return strcmp(cmd, "AUTH") == 0 ? OUTCOME_ACCOUNT : OUTCOME_TRANSIENT;
}

/* "a@x 550, b@y 451": the refused recipients, for the detail. */
static void
refused_list(const struct smtp_attempt *sj, char *buf, size_t bufsz,
	     size_t *nrefused, int *worst)
{
	char safe[128];
	size_t i, used = 0;
	int n;

	buf[0] = '\0';
	*nrefused = 0;
	*worst = 0;
	for (i = 0; i < sj->job->nrcpt; i++) {
		int c = sj->d->rcpt_code[i];

		if (c >= 200 && c < 300)
			continue;
		(*nrefused)++;
		/* A transient refusal outranks a permanent one: retrying may
		 * yet deliver to that recipient. */
		if (c == 0 || *worst == 0 || c < *worst)
			*worst = c == 0 ? 421 : c;
		log_sanitize(sj->job->rcpt[i], strlen(sj->job->rcpt[i]), safe,
			     sizeof(safe));
		n = snprintf(buf + used, bufsz - used, "%s%s %d",
			     used > 0 ? ", " : "", safe, c);
		if (n < 0 || (size_t)n >= bufsz - used)
			break;
		used += (size_t)n;
	}
}

/* "queued as ID" in the final reply: the smarthost's id, or NULL. */
static const char *
queue_id(const char *text, char *buf, size_t bufsz)
{
	const char *p = strstr(text, "queued as ");
	size_t n;

	if (p == NULL)
		return NULL;
	p += strlen("queued as ");
	n = strcspn(p, " ;,()<>");
	if (n == 0 || n >= bufsz)
		return NULL;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return buf;
}

static void
classify_ok(const struct smtp_attempt *sj, struct connector_result *res,
	    char *detail, size_t detailsz, char *idbuf, size_t idsz)
{
	char refused[LINK_DETAIL_MAX];
	size_t nrefused;
	int worst;

	res->outcome = OUTCOME_DELIVERED;
	res->provider_message_id = queue_id(sj->d->final_text, idbuf, idsz);
	refused_list(sj, refused, sizeof(refused), &nrefused, &worst);
	if (nrefused > 0) {
		detail_set(detail, detailsz, "smtp %s; refused %zu of %zu: %s",
			   sj->d->final_text, nrefused, sj->job->nrcpt,
			   refused);
		res->detail = detail;
	}
}

/*
 * Whether a reply after the data says what became of the message: 2xx
 * took it, 4xx and 5xx refused it.  0 (none came), 1xx and 3xx do not.
 */
static bool
code_is_verdict(int code)
{
	return (code >= 200 && code < 300) || code >= 400;
}

/* A failed attempt: the step it stopped at decides the class. */
static void
classify_fail(const struct smtp_attempt *sj, struct connector_result *res,
	      char *detail, size_t detailsz)
{
	const struct smtp_dialogue *d = sj->d;
	char refused[LINK_DETAIL_MAX], safe[CURL_ERROR_SIZE];
	size_t nrefused;
	int worst;

	res->detail = detail;
	if (sj->utf8_unoffered) {
		/* RFC 6531: an address with no ASCII form (a non-ASCII
		 * local part) goes only to a server that offers SMTPUTF8;
		 * another provider may (the agent says permanent to a server
		 * too old to route by it). */
		res->outcome = OUTCOME_NEEDS_SMTPUTF8;
		detail_set(detail, detailsz,
			   "smtp the smarthost does not offer SMTPUTF8, which "
			   "an address with no ASCII form needs");
		return;
	}
	if (sj->size_max > 0) {
		/* RFC 1870: its EHLO said SIZE; nothing was sent. */
		res->outcome = OUTCOME_TOO_LARGE;
		detail_set(
		    detail, detailsz,
		    "smtp the smarthost takes at most %llu bytes (SIZE), "
		    "the message has %zu",
		    (unsigned long long)sj->size_max, sj->job->mime_len);
		return;
	}
	if (d->data_go && !code_is_verdict(d->final_code)) {
		/* The smarthost may have the whole message: a retry may
		 * duplicate it.  A body cut short is discarded by it.  A
		 * reply that is no verdict (1xx, 3xx: a 354 again) leaves
		 * the message where silence does. */
		res->outcome =
		    sj->body_eof ? OUTCOME_AMBIGUOUS : OUTCOME_TRANSIENT;
		if (d->final_code != 0)
			detail_set(
			    detail, detailsz, "smtp no verdict after %s: %s",
			    sj->body_eof ? "the data" : "part of the data",
			    d->final_text);
		else
			detail_set(
			    detail, detailsz, "smtp no answer after %s: %s",
			    sj->body_eof ? "the data" : "part of the data",
			    curl_easy_strerror(sj->rc));
		return;
	}
	if (d->data_go && d->final_code >= 200 && d->final_code < 300) {
		/* A 2xx while the message was still going out (no reply may
		 * come before the end of data): the smarthost claims a message
		 * it has in part, and may deliver it; a retry may duplicate. */
		res->outcome = OUTCOME_AMBIGUOUS;
		detail_set(detail, detailsz,
			   "smtp accepted before the end of the data: %s",
			   d->final_text);
		return;
	}
	if (d->final_code >= 400) {
		res->outcome = size_outcome(NULL, d->final_code,
					    code_outcome(d->final_code));
		detail_set(detail, detailsz, "smtp data refused: %s",
			   d->final_text);
		return;
	}
	refused_list(sj, refused, sizeof(refused), &nrefused, &worst);
	if (d->mail_code >= 200 && d->mail_code < 300 && nrefused > 0 &&
	    nrefused == sj->job->nrcpt && d->relay_denied) {
		/* Not the recipients' fault: another provider may take
		 * them, and the breaker takes out a smarthost that has
		 * stopped relaying for us. */
		res->outcome = OUTCOME_TRANSIENT;
		detail_set(detail, detailsz,
			   "smtp the smarthost refuses to relay: %s (%s)",
			   refused, d->last_text);
		return;
	}
	if (d->mail_code >= 200 && d->mail_code < 300 && nrefused > 0 &&
	    nrefused == sj->job->nrcpt) {
		res->outcome = code_outcome(worst);
		detail_set(detail, detailsz, "smtp every recipient refused: %s",
			   refused);
		return;
	}
	if (d->last_code >= 400) {
		res->outcome =
		    size_outcome(d->last_cmd, d->last_code,
				 session_outcome(d->last_cmd, d->last_code));
		detail_set(detail, detailsz, "smtp %s refused: %s",
			   d->last_cmd[0] != '\0' ? d->last_cmd : "greeting",
			   d->last_text);
		return;
	}
	/* Connection refused, TLS failure, timeout before the data. */
	res->outcome =
	    sj->rc == CURLE_LOGIN_DENIED ? OUTCOME_ACCOUNT : OUTCOME_TRANSIENT;
	log_sanitize(sj->errbuf, strnlen(sj->errbuf, CURL_ERROR_SIZE), safe,
		     sizeof(safe));
	detail_set(detail, detailsz, "smtp %s: %s", curl_easy_strerror(sj->rc),
		   safe[0] != '\0' ? safe : "-");
}

void
smtp_dialogue_classify(const struct smtp_attempt *a,
		       struct connector_result *res, char *detail,
		       size_t detailsz, char *idbuf, size_t idsz)
{
	memset(res, 0, sizeof(*res));
	if (a->rc == CURLE_OK && a->d->final_code >= 200 &&
	    a->d->final_code < 300)
		classify_ok(a, res, detail, detailsz, idbuf, idsz);
	else
		classify_fail(a, res, detail, detailsz);
}

void
smtp_dialogue_stuff_init(struct smtp_stuff *st)
{
	st->off = 0;
	st->bol = 2;
	st->eob = false;
}

/* The state after span (n > 0 bytes just written): at a line's start
 * (2) after CRLF, 1 after a CR, else 0; st->bol is the state before. */
static int
stuff_bol(const struct smtp_stuff *st, const uint8_t *span, size_t n)
{
	if (span[n - 1] == '\r')
		return 1;
	if (span[n - 1] != '\n')
		return 0;
	if (n > 1)
		return span[n - 2] == '\r' ? 2 : 0;
	return st->bol == 1 ? 2 : 0;
}

size_t
smtp_dialogue_stuff(struct smtp_stuff *st, const uint8_t *msg, size_t len,
		    char *out, size_t outsz)
{
	const uint8_t *nl;
	size_t n = 0, span;

	/* A line at a time: only its first byte may need doubling. */
	while (st->off < len && n + 2 <= outsz) {
		if (st->bol == 2 && msg[st->off] == '.') {
			out[n++] = '.';
			out[n++] = '.';
			st->off++;
			st->bol = 0;
			continue;
		}
		span = len - st->off;
		if (span > outsz - n)
			span = outsz - n;
		nl = memchr(msg + st->off, '\n', span);
		if (nl != NULL)
			span = (size_t)(nl - (msg + st->off)) + 1;
		memcpy(out + n, msg + st->off, span);
		st->bol = stuff_bol(st, msg + st->off, span);
		st->off += span;
		n += span;
	}
	if (st->off == len && !st->eob && n + 5 <= outsz) {
		if (st->bol != 2) {
			memcpy(out + n, "\r\n", 2);
			n += 2;
		}
		memcpy(out + n, ".\r\n", 3);
		n += 3;
		st->eob = true;
	}
	return n;
}

unsigned
smtp_dialogue_ehlo(const char *p, size_t len)
{
	static const struct {
		const char *word;
		unsigned ext;
	} exts[] = {{"SIZE", SMTP_EXT_SIZE},
		    {"SMTPUTF8", SMTP_EXT_SMTPUTF8},
		    {"PIPELINING", SMTP_EXT_PIPELINING},
		    {"8BITMIME", SMTP_EXT_8BITMIME}};
	size_t i, n;

	if (len < 4 || smtp_dialogue_code(p, len, &(bool){false}) != 250 ||
	    (p[3] != '-' && p[3] != ' '))
		return 0;
	p += 4;
	len -= 4;
	for (n = 0; n < len; n++)
		if (p[n] == ' ' || p[n] == '\r' || p[n] == '\n')
			break;
	for (i = 0; i < sizeof(exts) / sizeof(exts[0]); i++)
		if (n == strlen(exts[i].word) &&
		    strncasecmp(p, exts[i].word, n) == 0)
			return exts[i].ext;
	return 0;
}

uint64_t
smtp_dialogue_ehlo_size(const char *p, size_t len)
{
	uint64_t v = 0;
	size_t i;

	if (smtp_dialogue_ehlo(p, len) != SMTP_EXT_SIZE)
		return 0;
	/* "250-SIZE" then one space and digits; anything else says none. */
	if (len < 10 || p[8] != ' ')
		return 0;
	for (i = 9; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10)
			return 0; /* absurd: as good as no limit */
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	return v;
}

unsigned
smtp_dialogue_mail(const struct connector_job *job, unsigned ext,
		   bool eight_bit)
{
	unsigned mail = ext & SMTP_EXT_SIZE;

	if ((ext & SMTP_EXT_8BITMIME) && eight_bit)
		mail |= SMTP_EXT_8BITMIME;
	if ((ext & SMTP_EXT_SMTPUTF8) && smtp_dialogue_utf8(job))
		mail |= SMTP_EXT_SMTPUTF8;
	return mail;
}

size_t
smtp_dialogue_cmd(const struct connector_job *job, unsigned mail, size_t size,
		  size_t i, char *dst, size_t room)
{
	char sz[32] = "";
	int n;

	if (i == 0) {
		if (mail & SMTP_EXT_SIZE)
			snprintf(sz, sizeof(sz), " SIZE=%zu", size);
		n = snprintf(dst, room, "MAIL FROM:<%s>%s%s%s\r\n",
			     job->mail_from, sz,
			     mail & SMTP_EXT_8BITMIME ? " BODY=8BITMIME" : "",
			     mail & SMTP_EXT_SMTPUTF8 ? " SMTPUTF8" : "");
	} else if (i <= job->nrcpt) {
		n = snprintf(dst, room, "RCPT TO:<%s>\r\n", job->rcpt[i - 1]);
	} else {
		n = snprintf(dst, room, "DATA\r\n");
	}
	return n < 0 || (size_t)n >= room ? 0 : (size_t)n;
}

bool
smtp_dialogue_rcpt_taken(const struct smtp_dialogue *d, size_t nrcpt)
{
	size_t i;

	for (i = 0; i < nrcpt; i++)
		if (d->rcpt_code[i] >= 200 && d->rcpt_code[i] < 300)
			return true;
	return false;
}

bool
smtp_dialogue_utf8(const struct connector_job *job)
{
	return envelope_utf8(job->mail_from, job->rcpt, job->nrcpt);
}

bool
smtp_dialogue_8bit(const struct connector_job *job)
{
	const uint8_t *p = job->mime, *end;
	uint64_t w, any = 0;

	if (job->mime_len == 0) /* and mime may be NULL */
		return false;
	end = p + job->mime_len;
	/* Eight bytes at a time: every message is looked at once. */
	for (; end - p >= 8; p += 8) {
		memcpy(&w, p, sizeof(w));
		any |= w;
	}
	for (; p < end; p++)
		any |= *p;
	return (any & UINT64_C(0x8080808080808080)) != 0;
}

size_t
smtp_dialogue_line(struct smtp_lines *l, const char *p, size_t n,
		   const char **line, size_t *len)
{
	const char *nl = memchr(p, '\n', n);
	size_t take = nl != NULL ? (size_t)(nl - p) + 1 : n;
	size_t room = sizeof(l->buf) - l->len;
	size_t k = take < room ? take : room;

	*line = NULL;
	*len = 0;
	if (!l->skipping) {
		memcpy(l->buf + l->len, p, k);
		l->len += k;
		if (k < take || (nl == NULL && l->len == sizeof(l->buf)))
			l->skipping = true;
	}
	if (nl != NULL) {
		*line = l->buf;
		*len = l->len;
		l->len = 0;
		l->skipping = false;
	}
	return take;
}

void
smtp_dialogue_scrub(char *text, const char *user, const char *password)
{
	char plain[CONNECTOR_BLOT_PLAIN_MAX];
	size_t ulen = user != NULL ? strlen(user) : 0, plen;

	if (password == NULL || text == NULL)
		return;
	connector_blot(text, password);
	plen = strlen(password);
	if (plen + ulen + 2 > sizeof(plain))
		return; /* no such AUTH line was ever sent whole to echo */
	connector_blot_base64(text, password, plen);
	plain[0] = '\0';
	memcpy(plain + 1, user != NULL ? user : "", ulen);
	plain[1 + ulen] = '\0';
	memcpy(plain + 2 + ulen, password, plen);
	connector_blot_base64(text, plain, ulen + plen + 2);
	OPENSSL_cleanse(plain, sizeof(plain));
}
