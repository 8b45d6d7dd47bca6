/*
 * mime_fields: what the JSON-API connectors (sendgrid, postmark, resend,
 * ...) need from our MIME.  Their APIs take no raw message, so each message is
 * parsed once with GMime and its parts handed out as JSON pieces: mailboxes
 * as {"email", "name"}, the text and HTML bodies decoded, the attachments
 * with their bytes base64, and the headers the API lets a sender set.  The
 * caller owns GMime's init/shutdown (g_mime_init() in its open()).
 */
#ifndef SHIVNERI_AGENT_MIME_FIELDS_H
#define SHIVNERI_AGENT_MIME_FIELDS_H

#include "agent/connector.h"

#include <stdbool.h>

#include <gmime/gmime.h>
#include <jansson.h>

/* Where an envelope recipient is named in the headers. */
enum mime_rcpt_kind { MIME_RCPT_TO, MIME_RCPT_CC, MIME_RCPT_BCC };

/*
 * The parts of a message body.  text and html (g_malloc'd, NULL when
 * absent) are the first text/plain and text/html parts that are not
 * attachments; attachments is an array of {"content" (base64), "type",
 * "filename", "disposition" ("inline" or "attachment") and, inline only,
 * "content_id"}.
 */
struct mime_body {
	char *text, *html;
	json_t *attachments;
};

/* The message of job, or NULL when GMime cannot parse it. */
GMimeMessage *mime_fields_parse(const struct connector_job *job);
/* Sets o[key] to s (NULL: ""); false when not UTF-8 or out of memory. */
bool mime_fields_set_str(json_t *o, const char *key, const char *s);
/*
 * Sets o[key] to the mailbox ia as "Name <addr>", the name decoded; false
 * when ia is NULL or a group, not UTF-8, or out of memory.
 */
bool mime_fields_set_mailbox(json_t *o, const char *key, InternetAddress *ia);
/* {"email": ..., "name": ...} (name only when set) of a mailbox, or NULL. */
json_t *mime_fields_mailbox(InternetAddress *ia);
/* The first mailbox of list, or NULL. */
InternetAddress *mime_fields_first(InternetAddressList *list);
/* Whether the envelope recipient addr is in To, in Cc, or neither. */
enum mime_rcpt_kind mime_fields_rcpt_kind(GMimeMessage *msg, const char *addr);
/* {"email": addr} with the name To or Cc gives it, if any; NULL on error. */
json_t *mime_fields_rcpt(GMimeMessage *msg, const char *addr);
/* Fills b; NULL, or why the body cannot be carried (b freed then). */
const char *mime_fields_body(GMimeMessage *msg, struct mime_body *b);
void mime_fields_body_free(struct mime_body *b);
/* {name: decoded value} of the headers not in skip (NULL-ended), or NULL. */
json_t *mime_fields_headers(GMimeMessage *msg, const char *const *skip);

/*
 * The keys an API gives an attachment's fields; NULL where it takes none.
 * content_id is set only for an inline part that has one.
 */
struct mime_attach_names {
	const char *filename, *content, *type, *content_id;
};
/* One of mime_body's attachments in an API's keys; NULL on error. */
json_t *mime_fields_attachment(json_t *a, const struct mime_attach_names *n);

/* Where an API takes a message's content (mime_fields_content()). */
struct mime_content_names {
	const char *text, *html; /* the decoded bodies */
	const char *attachments; /* an array, set only when there is one */
	struct mime_attach_names attach;
	const char *cannot_attach; /* the reason when one cannot go */
};
/*
 * Sets o's text and HTML bodies and its attachments from msg, under n's
 * keys; NULL, or why the API cannot carry them (static text).
 */
const char *mime_fields_content(json_t *o, GMimeMessage *msg,
				const struct mime_content_names *n);

/*
 * Sets root's fields from msg, the parsed message of job; NULL, or why the
 * API cannot carry it (static text).
 */
typedef const char *(*mime_fields_fill_fn)(json_t *root, GMimeMessage *msg,
					   const struct connector_job *job,
					   void *arg);
/*
 * root written as compact JSON (to free()), as json_dumps(JSON_COMPACT)
 * would, a faster way; NULL for a tree with a real number or nested
 * deeper than the fills go.
 */
char *mime_fields_dump(json_t *root);
/*
 * The JSON body of job as an API that takes the message apart wants it:
 * job's MIME parsed, an object filled by fill, dumped compact (to free()).
 * NULL with the reason in *why: no recipient, a message GMime cannot
 * parse, or fill's reason.
 */
char *mime_fields_json(const struct connector_job *job,
		       mime_fields_fill_fn fill, void *arg, const char **why);

#endif
