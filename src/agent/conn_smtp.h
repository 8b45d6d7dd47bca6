/*
 * The smtp connector is two files: conn_smtp.c runs the sessions and
 * their transactions on the agent's loop; conn_smtp_config.c holds its
 * keys (the table the configuration code reads, their checks at
 * check-config, and what open() makes of them).  This header is theirs
 * alone: nothing outside the connector includes it.
 */
#ifndef SHIVNERI_CONN_SMTP_H
#define SHIVNERI_CONN_SMTP_H

#include "common/config.h"

#include <stddef.h>
#include <stdint.h>

#define SMTP_CONNECT_TIMEOUT_MS 5000
#define SMTP_REQUEST_TIMEOUT_MS 30000
/* A connection idle longer is closed rather than reused: below the idle
 * timeout of most smarthosts (RFC 5321 asks 5 min, some use less). */
#define SMTP_IDLE_TIMEOUT_MS 30000
#define SMTP_IDLE_TIMEOUT_MIN_MS 100
#define SMTP_IDLE_TIMEOUT_MAX_MS 300000

enum smtp_tls { SMTP_TLS_NONE, SMTP_TLS_STARTTLS, SMTP_TLS_IMPLICIT };

/* The keys of type = smtp, with their checks. */
extern const struct config_ptype conn_smtp__config;

/* The tls key's mode (starttls when absent). */
enum smtp_tls conn_smtp__tls(const struct provider_config *pc);
/* A number key (already checked), or def when absent. */
long conn_smtp__long(const struct provider_config *pc, const char *key,
		     long def);
/* "smtp[s]://host:port/helo", allocated (the caller frees it). */
char *conn_smtp__url(const struct provider_config *pc, enum smtp_tls tls);

/*
 * The 7-bit conversion, run on the connector's worker thread: mime_7bit()
 * (its contract).  Tests set another, before open(), to hold a conversion
 * under way while they act on the job.
 */
extern int (*conn_smtp__convert)(const uint8_t *in, size_t len, uint8_t **out,
				 size_t *outlen);

#endif
