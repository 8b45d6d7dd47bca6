/*
 * What a path without SMTPUTF8 (RFC 6531) can carry of an envelope.
 *
 * Without SMTPUTF8 every address must be ASCII.  A domain has an ASCII
 * form of its own: its A-labels (IDNA2008, RFC 5890), "bücher.example" is
 * "xn--bcher-kva.example", the same name.  A local part has none: it is
 * the mailbox's own name, and only its owner could say what else reaches
 * it.  So an address needs SMTPUTF8 only when its local part is not ASCII
 * or its domain is no valid IDN; any other is sent with its domain as
 * A-labels where SMTPUTF8 is not offered.
 */
#ifndef SHIVNERI_ENVELOPE_H
#define SHIVNERI_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>

/* The longest address an ASCII form may have: LINK_ADDR_MAX's value. */
#define ENVELOPE_ADDR_MAX 320

/* True when an address (the sender or one of the n recipients) is not
 * all ASCII, which SMTPUTF8 would carry as it is. */
bool envelope_utf8(const char *from, const char *const *rcpt, size_t n);

/*
 * The ASCII form of addr: its domain as A-labels (UTS #46
 * nontransitional, lower case).  0 with *out set (malloc'ed) when it has
 * one, or with *out NULL when addr is ASCII already; -1 when it has none:
 * a non-ASCII local part, a domain that is no valid IDN host name, no '@'
 * at all, or a form longer than ENVELOPE_ADDR_MAX.
 */
int envelope_addr_ascii(const char *addr, char **out);

/*
 * addr with a non-ASCII domain as its A-labels and its local part as it
 * is, malloc'ed; a copy of addr when its domain is ASCII, no valid IDN
 * host name, or the result would be too long.  What the intake stores: the
 * domain in one form whatever the client wrote (a non-ASCII local part
 * still needs SMTPUTF8).
 */
char *envelope_addr_alabels(const char *addr);

/* True when an address of the envelope has no ASCII form: only an
 * SMTPUTF8 path may carry it. */
bool envelope_needs_smtputf8(const char *from, const char *const *rcpt,
			     size_t n);

/* What an envelope needs where SMTPUTF8 is lacking (0: not yet known). */
enum envelope_need {
	ENVELOPE_ASCII = 1, /* nothing: every address is ASCII */
	ENVELOPE_ALABELS,   /* its ASCII form: non-ASCII domains only */
	ENVELOPE_SMTPUTF8,  /* an address has no ASCII form */
};
enum envelope_need envelope_need(const char *from, const char *const *rcpt,
				 size_t n);

/*
 * The envelope with every address in its ASCII form, each a fresh string
 * (an ASCII one copied): 0 with *from_out and *rcpt_out set, to be freed
 * with envelope_ascii_free(); -1 when an address has none, nothing set.
 */
int envelope_ascii(const char *from, const char *const *rcpt, size_t n,
		   char **from_out, char ***rcpt_out);
void envelope_ascii_free(char *from, char **rcpt, size_t n);

#endif
