/*
 * What of the ses connector (conn_ses.c) is read from SES's answers, for
 * its fuzz target: the answer to a send as a result, and GetAccount's
 * answer as the probe's verdict.  The connector itself registers through
 * connector.h like every other.
 */
#ifndef SHIVNERI_CONN_SES_H
#define SHIVNERI_CONN_SES_H

#include "agent/connector.h"
#include "agent/http_multi.h"
#include "common/buf.h"

#include <stdbool.h>
#include <stddef.h>

#define SES_DETAIL_MAX 200
#define SES_TYPE_MAX 96

/* The words a result points into: it lives as long as they do. */
struct ses_words {
	char type[SES_TYPE_MAX];
	char msg[SES_DETAIL_MAX];
	char id[SES_DETAIL_MAX];
	char detail[SES_DETAIL_MAX + SES_TYPE_MAX + 64];
};

/*
 * res, the answer to a SendEmail, as a result: its class, SES's
 * MessageId, the pause of a throttling, the detail (SES's words,
 * sanitised, in w).
 */
void ses_read_answer(const struct http_result *res, struct connector_result *r,
		     struct ses_words *w);
/*
 * Whether GetAccount's answer (body) lets the account send; else false,
 * with SES's words for why in why.
 */
bool ses_account_ok(const struct buf *body, char *why, size_t whysz);

#endif
