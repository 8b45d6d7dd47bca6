/*
 * What an SMTP smarthost said in one transaction, and what it means for
 * the message: the smtp connector's reply bookkeeping and its outcome
 * table (docs/providers.md, smtp), apart from how the bytes travel.
 *
 * smtp_dialogue_out() is told each command line sent, smtp_dialogue_in()
 * each chunk of reply lines received (any split); they keep the verb of
 * the command each final reply answers, every recipient's RCPT answer,
 * MAIL's, whether the data went out (354) and the verdict after it, and
 * the text of the last and the final reply made printable.  Replies are
 * matched to commands in order, so a pipelined group (RFC 2920: MAIL,
 * every RCPT and DATA in one write, their replies after) reads as the
 * same transaction as a lock-step one.  Only known verbs are kept from
 * the commands, never their arguments, so the lines after AUTH
 * (credentials in base64) never reach a detail.
 * smtp_dialogue_classify() turns an ended attempt into a connector_result.
 *
 * The way out too: smtp_dialogue_cmd() writes the transaction's commands,
 * smtp_dialogue_stuff() dot-stuffs the message as RFC 5321 4.5.2 asks and
 * ends it, and smtp_dialogue_ehlo() reads the extensions we use from the
 * answer to EHLO.  No I/O here, so a fuzzer
 * can drive every reader of the smarthost's bytes.
 */
#ifndef SHIVNERI_SMTP_DIALOGUE_H
#define SHIVNERI_SMTP_DIALOGUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

struct connector_job;
struct connector_result;

#define SMTP_DIALOGUE_REPLY_MAX 200 /* bytes of a reply kept for the detail */
/* A reply line kept; RFC 5321 says 512 with the CRLF. */
#define SMTP_DIALOGUE_LINE_MAX 1024

/*
 * A final reply answers the oldest command of the transaction still
 * waiting (MAIL, then each RCPT, then DATA: RFC 2920 keeps their order),
 * else the last command sent (curl's EHLO, AUTH..., which go one by one).
 */
struct smtp_dialogue {
	char cmd[12];      /* verb of the last command sent, "RCPT" */
	char last_cmd[12]; /* verb of the command last_code answers */
	size_t nrcpt_sent; /* RCPT commands sent so far */
	size_t nrcpt_done; /* of them answered */
	bool mail_wait;    /* MAIL sent, not yet answered */
	bool data_wait;    /* DATA sent, not yet answered */
	int *rcpt_code;    /* per recipient, 0: no answer */
	int mail_code;     /* answer to MAIL FROM */
	int last_code;     /* last final reply of any command */
	bool data_go;      /* 354 and a recipient taken: the body goes out */
	/* 354 though every recipient was refused (pipelined: DATA went out
	 * before their answers): RFC 2920 3.1 ends the data with a dot
	 * alone, and the message is not sent. */
	bool data_empty;
	/* A recipient refused 5xx with "relay" in the words: the smarthost
	 * will not relay for us (RFC 5321 3.6.2's "Relay access denied"),
	 * its fault or its configuration's, not the recipient's. */
	bool relay_denied;
	int final_code; /* the reply after the body, 0: none */
	char final_text[SMTP_DIALOGUE_REPLY_MAX];
	char last_text[SMTP_DIALOGUE_REPLY_MAX];
};

/* One attempt at a message, as classify reads it. */
struct smtp_attempt {
	const struct connector_job *job;
	const struct smtp_dialogue *d;
	CURLcode rc;        /* CURLE_OK: the transaction ended with a 2xx */
	const char *errbuf; /* curl's words for rc, may be empty */
	bool body_eof;      /* the whole message and its end went out */
	/* An address is not ASCII and the smarthost does not offer SMTPUTF8:
	 * nothing of the message was sent. */
	bool utf8_unoffered;
	/* The smarthost's EHLO SIZE when the message is over it (nothing of
	 * it was sent), else 0. */
	uint64_t size_max;
};

/* "NNN-", "NNN " or "NNN" at p: the code (*last: no '-'), else 0. */
int smtp_dialogue_code(const char *p, size_t len, bool *last);
/* Reply lines received; a line cut by the chunk is not seen whole. */
void smtp_dialogue_in(struct smtp_dialogue *d, const char *p, size_t len);
/* One command line sent. */
void smtp_dialogue_out(struct smtp_dialogue *d, const char *p, size_t len);
/*
 * The outcome of a (the detail in detail, the smarthost's queue id in
 * idbuf, both pointed at by res when set).
 */
void smtp_dialogue_classify(const struct smtp_attempt *a,
			    struct connector_result *res, char *detail,
			    size_t detailsz, char *idbuf, size_t idsz);

/*
 * Blots password (NULL: nothing to do) out of text, a smarthost's words:
 * as it is, and in the base64 that AUTH LOGIN ("password") and AUTH PLAIN
 * ("\0user\0password") sent, which a hostile or broken smarthost may
 * echo in a reply that ends in a detail, an id or a log line; a copy cut
 * short at text's end too (connector_blot()).
 */
void smtp_dialogue_scrub(char *text, const char *user, const char *password);

/* True when a recipient of nrcpt was taken (2xx). */
bool smtp_dialogue_rcpt_taken(const struct smtp_dialogue *d, size_t nrcpt);
/* True when an address of job has a byte over 127 (MAIL says SMTPUTF8). */
bool smtp_dialogue_utf8(const struct connector_job *job);
/* True when the message has a byte over 127 (MAIL says BODY=8BITMIME). */
bool smtp_dialogue_8bit(const struct connector_job *job);

/* A reply line being read: the first SMTP_DIALOGUE_LINE_MAX bytes are kept, the
 * rest of an overlong line skipped (to stay in step, as Postfix does). */
struct smtp_lines {
	char buf[SMTP_DIALOGUE_LINE_MAX];
	size_t len;
	bool skipping;
};

/*
 * Takes bytes of p (n > 0) up to the end of the first line; returns how
 * many.  When that completes a line, *line and *len give it (its LF
 * included unless it was cut), valid until the next call; else *line is
 * NULL.
 */
size_t smtp_dialogue_line(struct smtp_lines *l, const char *p, size_t n,
			  const char **line, size_t *len);

/* The body's way out, resumable part after part. */
struct smtp_stuff {
	size_t off; /* next byte of the message */
	int bol;    /* 2: at a line's start (the start, or after CRLF) */
	bool eob;   /* the end of data is out */
};

void smtp_dialogue_stuff_init(struct smtp_stuff *st);
/*
 * The next part of msg into out (outsz at least 5): every "." at a line's
 * start doubled (as curl did: a line starts after CRLF), then the end of
 * data, ".\r\n", after a CRLF of its own when msg does not end with one.
 * Returns the bytes written; 0 when everything is out.  Copies line by
 * line (memchr), not byte by byte: it is on the agent's hot path.
 */
size_t smtp_dialogue_stuff(struct smtp_stuff *st, const uint8_t *msg,
			   size_t len, char *out, size_t outsz);
/* The extensions of the answer to EHLO we use. */
#define SMTP_EXT_SIZE 0x1u
#define SMTP_EXT_SMTPUTF8 0x2u
#define SMTP_EXT_PIPELINING 0x4u
#define SMTP_EXT_8BITMIME 0x8u

/* One line of the answer to EHLO ("250-SIZE 1000"): the SMTP_EXT_* it
 * offers, or 0 (any other line, extension or reply). */
unsigned smtp_dialogue_ehlo(const char *p, size_t len);
/*
 * The limit a "250-SIZE n" line of the answer to EHLO announces, or 0 (no
 * number, 0 which RFC 1870 says means none, or another line).
 */
uint64_t smtp_dialogue_ehlo_size(const char *p, size_t len);

/*
 * The command i of job's transaction with its CRLF into dst (room bytes):
 * 0 MAIL FROM with the parameters mail says (SMTP_EXT_SIZE: SIZE=size,
 * SMTP_EXT_8BITMIME: BODY=8BITMIME, SMTP_EXT_SMTPUTF8: SMTPUTF8; see
 * smtp_dialogue_mail), 1..nrcpt RCPT TO, nrcpt + 1 DATA.  Returns its
 * length, or 0 when it does not fit.
 */
size_t smtp_dialogue_cmd(const struct connector_job *job, unsigned mail,
			 size_t size, size_t i, char *dst, size_t room);
/*
 * MAIL's parameters for job on a session whose EHLO offered ext: SIZE
 * when offered; SMTPUTF8 when offered and an address needs it;
 * BODY=8BITMIME when offered and the message (eight_bit) has 8-bit bytes.
 */
unsigned smtp_dialogue_mail(const struct connector_job *job, unsigned ext,
			    bool eight_bit);

#endif
