/*
 * The smtp connector's keys (docs/providers.md, smtp): the table the
 * configuration code reads (required, optional, secret), their checks at
 * check-config and start (each error names its line; a password never
 * goes with tls = none), and what open() makes of the checked values:
 * the TLS mode, numbers, and the URL curl opens the session with.  No
 * state, no I/O but gethostname() for the default EHLO name and access()
 * for tls_ca_file.  Apart from conn_smtp.c so that the session engine
 * reads on its own.
 */
#include "agent/conn_smtp.h"
#include "agent/connector.h"
#include "common/config.h"
#include "common/util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum smtp_tls
conn_smtp__tls(const struct provider_config *pc)
{
	const char *word = provider_config_get(pc, "tls");

	if (word == NULL || strcmp(word, "starttls") == 0)
		return SMTP_TLS_STARTTLS;
	if (strcmp(word, "implicit") == 0)
		return SMTP_TLS_IMPLICIT;
	return SMTP_TLS_NONE;
}

long
conn_smtp__long(const struct provider_config *pc, const char *key, long def)
{
	const char *v = provider_config_get(pc, key);
	char *end;
	long n;

	if (v == NULL)
		return def;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0')
		return def;
	return n;
}

char *
conn_smtp__url(const struct provider_config *pc, enum smtp_tls tls)
{
	const char *host = provider_config_get(pc, "host");
	const char *helo = provider_config_get(pc, "helo");
	long port = conn_smtp__long(pc, "port",
				    tls == SMTP_TLS_IMPLICIT   ? 465
				    : tls == SMTP_TLS_STARTTLS ? 587
							       : 25);
	char name[256];
	bool v6 = strchr(host, ':') != NULL;

	if (helo == NULL) {
		/* curl greets with the URL's path: our host name. */
		if (gethostname(name, sizeof(name)) != 0 || name[0] == '\0')
			snprintf(name, sizeof(name), "localhost");
		name[sizeof(name) - 1] = '\0';
		helo = name;
	}
	return xasprintf("%s://%s%s%s:%ld/%s",
			 tls == SMTP_TLS_IMPLICIT ? "smtps" : "smtp",
			 v6 ? "[" : "", host, v6 ? "]" : "", port, helo);
}

static void
check_range(struct provider_config *pc, struct config_report *r,
	    const char *key, long lo, long hi)
{
	const char *v = provider_config_get(pc, key);
	char *end;
	long n;

	if (v == NULL)
		return;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < lo || n > hi)
		config_report_error(r, provider_config_line(pc, key),
				    "%s: must be a whole number from %ld to "
				    "%ld",
				    key, lo, hi);
}

static void
smtp_config_check(struct provider_config *pc, const struct config *cfg,
		  struct config_report *r)
{
	const char *tls = provider_config_get(pc, "tls");
	const char *host = provider_config_get(pc, "host");
	const char *ca = provider_config_get(pc, "tls_ca_file");
	bool user = provider_config_get(pc, "username") != NULL;
	bool pw = provider_config_get(pc, "password_file") != NULL;

	(void)cfg;
	if (host != NULL && (host[0] == '\0' || strpbrk(host, "/@ ") != NULL))
		config_report_error(r, provider_config_line(pc, "host"),
				    "host: must be a host name or address");
	if (tls != NULL && strcmp(tls, "none") != 0 &&
	    strcmp(tls, "starttls") != 0 && strcmp(tls, "implicit") != 0)
		config_report_error(r, provider_config_line(pc, "tls"),
				    "tls: must be none, starttls or implicit");
	check_range(pc, r, "port", 1, 65535);
	check_range(pc, r, "connect_timeout_ms", 1, CONNECTOR_TIMEOUT_MAX_MS);
	check_range(pc, r, "request_timeout_ms", 1, CONNECTOR_TIMEOUT_MAX_MS);
	check_range(pc, r, "idle_timeout_ms", SMTP_IDLE_TIMEOUT_MIN_MS,
		    SMTP_IDLE_TIMEOUT_MAX_MS);
	if (user != pw)
		config_report_error(r, provider_config_line(pc, "username"),
				    "username and password_file go together");
	/* A password never crosses the network in clear. */
	if (user && tls != NULL && strcmp(tls, "none") == 0)
		config_report_error(
		    r, provider_config_line(pc, "username"),
		    "username needs tls = starttls or implicit");
	if (ca != NULL && access(ca, R_OK) != 0)
		config_report_error(r, provider_config_line(pc, "tls_ca_file"),
				    "tls_ca_file: cannot read %s: %s", ca,
				    strerror(errno));
}

static const char *const smtp_required[] = {"host", NULL};
static const char *const smtp_optional[] = {"port",
					    "tls",
					    "username",
					    "password_file",
					    "helo",
					    "tls_ca_file",
					    "connect_timeout_ms",
					    "request_timeout_ms",
					    "idle_timeout_ms",
					    NULL};
static const char *const smtp_secret[] = {"password_file", NULL};

const struct config_ptype conn_smtp__config = {
    .name = "smtp",
    .required = smtp_required,
    .optional = smtp_optional,
    .secret = smtp_secret,
    .check = smtp_config_check,
};
