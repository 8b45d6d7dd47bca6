/*
 * The pure parts of the SMTP intake (RFC 5321), kept free of I/O so that
 * they are unit-tested and fuzzed: the command-line parser, the reply
 * formatter and the DATA reader.
 *
 * The parser takes one command line without its line end and says what
 * it is, or which reply refuses it (code, enhanced code, text): unknown
 * verbs, arguments where none are allowed, MAIL and RCPT paths and their
 * parameters (SIZE, BODY, SMTPUTF8, AUTH=).  It never looks at the
 * session: whether a command is allowed now is the session's business.
 *
 * The DATA reader turns the bytes after "354" into the message: it undoes
 * dot-stuffing and finds the end, which is only CRLF "." CRLF (the CRLF
 * that ended the DATA command counts as the first one).  A "." next to a
 * bare LF or a bare CR never ends the message, whatever the packet
 * boundaries (the SMTP smuggling class of 2023): such a dot stays in the
 * body as text.  A bare LF inside the body is normalised to CRLF (as
 * Postfix's smtpd_forbid_bare_newline = normalize does), and the line
 * after it is taken as it is, without dot-unstuffing; a bare CR is passed
 * through and the message is then refused by message_from_mime().  The
 * message is kept in a buffer that never grows past its cap: beyond it,
 * the reader drops what comes and only looks for the end, so the client
 * gets its 552 at the right place and the session stays in step.
 */
#ifndef SHIVNERI_SMTP_PROTO_H
#define SHIVNERI_SMTP_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The longest command line taken, its line end included: RFC 5321's 512
 * octets (4.5.3.1.4) plus what the extensions we offer add to it (SIZE=
 * 26, AUTH= 500, an AUTH PLAIN initial response of up to 1,024 base64
 * characters), rounded up like Postfix's line_length_limit.  A longer line
 * is answered "500 5.5.2 Line too long" once its end has come.
 */
#define SMTP_LINE_MAX 2048
/* A reverse- or forward-path, its angle brackets included (4.5.3.1.3). */
#define SMTP_PATH_MAX 256
/* An EHLO/HELO argument (a domain of 255 octets, 4.5.3.1.2). */
#define SMTP_HELO_MAX 255

enum smtp_verb {
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
};

/* A parsed command; strings point into the line given to the parser. */
struct smtp_cmd {
	enum smtp_verb verb;
	/* The argument after the verb and its spaces ("" when none). */
	const char *arg;
	/* MAIL and RCPT: the mailbox without brackets ("" for "<>"). */
	char path[SMTP_PATH_MAX + 1];
	bool path_8bit;   /* the mailbox holds non-ASCII (UTF-8) bytes */
	bool has_size;    /* MAIL SIZE= given */
	uint64_t size;    /* its value */
	bool body_8bit;   /* MAIL BODY=8BITMIME */
	bool smtputf8;    /* MAIL SMTPUTF8 */
	const char *mech; /* AUTH: the mechanism; arg is then the rest */
};

/* A reply: the code, the enhanced status code and a fixed text. */
struct smtp_reply {
	int code;
	const char *ehn;  /* "5.5.2", or NULL when none applies (220, 354) */
	const char *text; /* our own text: no CR, LF or untrusted bytes */
};

/*
 * Parses line[0..len) (the line end already cut off; len <= SMTP_LINE_MAX;
 * line is NUL-terminated at len and may be modified).  0 with c filled,
 * or -1 with the refusal in *r: 500 5.5.2 for an unknown verb, a NUL or
 * a control character; 501 for bad arguments (5.5.4; 5.1.7 or 5.1.3 for a
 * bad sender or recipient path); 555 5.5.4 for an unknown MAIL or RCPT
 * parameter; 502 5.5.1 for EXPN.
 */
int smtp_cmd_parse(char *line, size_t len, struct smtp_cmd *c,
		   struct smtp_reply *r) __attribute__((warn_unused_result));

/*
 * Writes "CODE EHN TEXT\r\n" (or "CODE TEXT\r\n" without ehn) into out of
 * size outsz; last false makes it a continuation line ("CODE-...").
 * text is cut to keep the line within 512 octets.  Returns the length.
 */
size_t smtp_reply_format(char *out, size_t outsz, int code, const char *ehn,
			 const char *text, bool last);

/* The reader's position in the stream; see smtp_data_feed(). */
enum smtp_data_state {
	SMTP_DATA_BOL,   /* at the start of a line that followed a CRLF */
	SMTP_DATA_MID,   /* inside a line (or after a bare LF) */
	SMTP_DATA_CR,    /* a CR seen, its LF not yet */
	SMTP_DATA_DOT,   /* a "." at the start of a line */
	SMTP_DATA_DOTCR, /* CRLF "." CR: one LF from the end */
	SMTP_DATA_DONE,  /* CRLF "." CRLF seen */
};

struct smtp_data {
	enum smtp_data_state state;
	char *p;       /* the message so far (NULL until something is kept) */
	size_t len;    /* bytes kept */
	size_t alloc;  /* bytes allocated, never more than max + 1 */
	size_t max;    /* the most len may reach */
	bool over;     /* the message passed max: the rest is dropped */
	uint64_t seen; /* bytes of the message the client sent (for logs) */
};

/* An empty reader whose message may hold max bytes. */
void smtp_data_init(struct smtp_data *d, size_t max);
/*
 * Puts text (a header the server adds, ahead of the client's bytes)
 * into the message; false when it does not fit under max.
 */
bool smtp_data_prepend_text(struct smtp_data *d, const char *text, size_t n);
/*
 * Reads n bytes of the stream; returns how many it consumed.  It stops
 * right after the end of the message (state SMTP_DATA_DONE), so the
 * bytes after it are the next commands.  Out of memory is fatal.
 */
size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t n);
/*
 * Gives the message's memory back and drops the rest of it, as past its
 * cap (over is set); the reader still finds the end.
 */
void smtp_data_drop(struct smtp_data *d);
/* Frees the message; the reader is empty again with the same max. */
void smtp_data_cleanup(struct smtp_data *d);

#endif
