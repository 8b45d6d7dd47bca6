/*
 * The documented message limits of the provider types, in one table: each
 * is its type's default [provider.NAME] max_message_bytes (struct
 * config_ptype, registered by the type's conn_TYPE.c), which the server
 * caps at its own max_message_bytes.  docs/providers.md ("Size limits")
 * shows the same table to operators; a figure changes here and there.
 *
 * Our size is the stored MIME's (mime_len).  The MIME already carries an
 * attachment base64-encoded (in 76-column lines, a little over 4/3 of its
 * raw size), which is about what a JSON API that takes the attachment
 * base64 inside the JSON sees: a limit the provider counts after base64
 * is therefore taken as it stands, and one it counts on the decoded bytes
 * too (the MIME is larger: the reading errs on the safe side).  SES is the
 * exception: it gets the whole MIME base64-encoded once more (Raw.Data),
 * so only three quarters of its figure are ours.  Where a provider writes
 * "MB" without saying which, 10^6 bytes, the smaller reading.  A type
 * absent here (smtp, maildir) has no limit of its own: the smarthost
 * announces its SIZE in EHLO, and a directory has none.
 *
 * The figures are the providers' documents (PROVIDERS.md and below), never
 * checked against the live services.  A provider whose real limit is lower
 * answers 413 (too_large) and the server learns the lower one for a while
 * (docs/internals/dispatch.md, "Size limits").
 */
#ifndef SHIVNERI_CONN_LIMITS_H
#define SHIVNERI_CONN_LIMITS_H

/* Mailgun: 25 MB per message, counted after decompression (PROVIDERS.md). */
#define CONN_LIMIT_MAILGUN 25000000

/* SendGrid v3 Mail Send: under 30 MB in all, the JSON payload
 * (PROVIDERS.md): attachments counted base64. */
#define CONN_LIMIT_SENDGRID 29999999

/* SES API v2: 40 MB of Raw.Data after base64 (PROVIDERS.md), taken as
 * 40 MiB; the whole MIME is encoded again, so three quarters of it. */
#define CONN_LIMIT_SES_BASE64 (40u * 1024 * 1024)
#define CONN_LIMIT_SES (CONN_LIMIT_SES_BASE64 / 4 * 3)

/* SparkPost Transmissions: content up to 20 MB (PROVIDERS.md). */
#define CONN_LIMIT_SPARKPOST 20000000

/* Mailjet Send API v3.1: attachments up to 15 MB (PROVIDERS.md). */
#define CONN_LIMIT_MAILJET 15000000

/*
 * Postmark: 10 MB in all, content, headers and attachments, counted after
 * base64.  Postmark Support Center, "What are the Attachment and Email
 * Size Limits?" (postmarkapp.com/support/article/1056-what-are-the-
 * attachment-and-email-size-limits): "Total message size, including
 * attachments, can be 10 MB ... We calculate the size of the email after
 * it has been base64 encoded"; also the developer overview
 * (postmarkapp.com/developer, "Maximum email size is 10 MB").  Each of
 * TextBody and HtmlBody is held to 5 MB besides: not a size we route by.
 */
#define CONN_LIMIT_POSTMARK 10000000

/*
 * Resend: 40 MB per email, attachments counted after base64.  Resend
 * docs, "Attachments", section "Attachment Limitations"
 * (resend.com/docs/dashboard/emails/attachments): "Emails can be no
 * larger than 40MB (including attachments after Base64 encoding)".  Above
 * the server's default max_message_bytes (25 MiB), so it binds only where
 * the server's is raised.
 */
#define CONN_LIMIT_RESEND 40000000

/*
 * Brevo: 20 MB for a transactional email, content and attachments.  Brevo
 * Help Center, "Add an attachment to a transactional email"
 * (help.brevo.com/hc/en-us/articles/4402811730962): "The size limit for
 * transactional emails is 20MB, including attachments and email content".
 * Whether encoded or decoded bytes count is not said; either way the MIME
 * is the larger (above).  The API reference (POST /v3/smtp/email) gives
 * no figure.
 */
#define CONN_LIMIT_BREVO 20000000

#endif
