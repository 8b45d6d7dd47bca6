/*
 * The [server] section: which keys exist, their kinds, ranges and
 * defaults (one table, server_keys), each key = value checked as config.c's
 * reader hands it over, and, once the whole file is read, the checks that
 * span keys (one limit at every layer, the SMTP keys that go together, the
 * secrets' default files) and the defaults that follow other keys.  The
 * line of every key is kept in the config (config_line()) for the
 * run-time checks.
 */
#include "common/config_int.h"
#include "common/cidr.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * SQLite's default SQLITE_MAX_LENGTH bounds one row, and a message's row
 * holds its envelope (up to 1000 recipients) and a few short columns
 * beside the message itself: keep 2 MiB for them.
 */
#define STORE_SQLITE_ROW_MAX 1000000000
#define STORE_SQLITE_MESSAGE_MAX (STORE_SQLITE_ROW_MAX - 2 * 1024 * 1024)

/* How a [server] key's value is parsed and where it goes. */
enum skey_kind {
	SKEY_STR,        /* non-empty string */
	SKEY_STR_OPT,    /* string; empty means unset (NULL) */
	SKEY_STR_ANY,    /* string; empty is a value of its own */
	SKEY_BOOL,       /* yes | no (true/false, 1/0) */
	SKEY_LISTEN,     /* host:port */
	SKEY_LISTEN_OPT, /* host:port or empty for none */
	SKEY_ENUM,       /* one of the words in skey.words */
	SKEY_INT,        /* int within [min, max] */
	SKEY_INT64,      /* int64_t within [min, max] */
};

struct skey {
	const char *name;
	enum skey_kind kind;
	size_t off;
	int64_t min, max;
	const char *const *words; /* SKEY_ENUM: NULL-terminated */
};

static const char *const log_formats[] = {"text", "json", NULL};
static const char *const store_backends[] = {"sqlite", NULL};
/* link_tls_mode_parse() (link/link_tls.h) reads these. */
static const char *const agent_tls_modes[] = {"auto", "required", "off", NULL};
static const char *const schedulers[] = {
    "random", "round_robin", "weighted", "priority", "least_outstanding", NULL,
};

#define OFF(f) offsetof(struct config, f)
static const struct skey server_keys[] = {
    {"data_dir", SKEY_STR, OFF(data_dir), 0, 0, NULL},
    {"http_listen", SKEY_LISTEN_OPT, OFF(http_listen), 0, 0, NULL},
    {"smtp_listen", SKEY_LISTEN_OPT, OFF(smtp_listen), 0, 0, NULL},
    {"agent_listen", SKEY_LISTEN, OFF(agent_listen), 0, 0, NULL},
    {"agent_secret_file", SKEY_STR, OFF(agent_secret_file), 0, 0, NULL},
    {"agent_tls", SKEY_ENUM, OFF(agent_tls), 0, 0, agent_tls_modes},
    {"api_keys_file", SKEY_STR_OPT, OFF(api_keys_file), 0, 0, NULL},
    {"mailgun_domains", SKEY_STR_OPT, OFF(mailgun_domains), 0, 0, NULL},
    {"log_file", SKEY_STR_OPT, OFF(log_file), 0, 0, NULL},
    {"scheduler", SKEY_ENUM, OFF(scheduler), 0, 0, schedulers},
    {"heartbeat_interval_ms", SKEY_INT, OFF(heartbeat_interval_ms), 10, 60000,
     NULL},
    {"heartbeat_timeout_ms", SKEY_INT, OFF(heartbeat_timeout_ms), 11, INT_MAX,
     NULL},
    {"max_attempts", SKEY_INT, OFF(max_attempts), 1, 1000, NULL},
    {"retry_base_ms", SKEY_INT, OFF(retry_base_ms), 1, INT_MAX, NULL},
    {"retry_max_ms", SKEY_INT, OFF(retry_max_ms), 1, INT_MAX, NULL},
    {"message_ttl_s", SKEY_INT64, OFF(message_ttl_s), 1, 315360000, NULL},
    {"max_message_bytes", SKEY_INT64, OFF(max_message_bytes), 1024,
     CONFIG_MESSAGE_BYTES_MAX, NULL},
    {"max_dynamic_providers", SKEY_INT, OFF(max_dynamic_providers), 0, 10000,
     NULL},
    {"max_in_flight_bytes", SKEY_INT64, OFF(max_in_flight_bytes), 1024,
     INT64_MAX / 2, NULL},
    {"breaker_threshold", SKEY_INT, OFF(breaker_threshold), 1, 1000000, NULL},
    /* The breaker doubles it after a failed trial up to 5 minutes
     * (BREAKER_MAX_COOLDOWN_MS, dispatch_int.h): one more would be cut
     * back at the second open, and past 2^30 its doubling overflows. */
    {"breaker_cooldown_ms", SKEY_INT, OFF(breaker_cooldown_ms), 1, 300000,
     NULL},
    {"job_timeout_s", SKEY_INT, OFF(job_timeout_s), 1, 604800, NULL},
    {"retention_days", SKEY_INT, OFF(retention_days), 1, 36500, NULL},
    {"log_format", SKEY_ENUM, OFF(log_format), 0, 0, log_formats},
    {"store", SKEY_ENUM, OFF(store), 0, 0, store_backends},
    {"http_max_connections", SKEY_INT, OFF(http_max_connections), 1, 1000000,
     NULL},
    {"http_max_client_connections", SKEY_INT, OFF(http_max_client_connections),
     1, 1000000, NULL},
    {"http_header_timeout_s", SKEY_INT, OFF(http_header_timeout_s), 1, 3600,
     NULL},
    {"http_body_budget_bytes", SKEY_INT64, OFF(http_body_budget_bytes), 1048576,
     INT64_C(1) << 40, NULL},
    {"http_min_body_rate", SKEY_INT64, OFF(http_min_body_rate), 1,
     INT64_C(1) << 40, NULL},
    {"events_max_clients", SKEY_INT, OFF(events_max_clients), 1, 100000, NULL},
    /* At most events_max_clients (limits_finish). */
    {"events_max_client_streams", SKEY_INT, OFF(events_max_client_streams), 1,
     100000, NULL},
    {"events_history", SKEY_INT, OFF(events_history), 1, 100000, NULL},
    {"events_ping_s", SKEY_INT, OFF(events_ping_s), 1, 3600, NULL},
    {"events_client_buffer_bytes", SKEY_INT64, OFF(events_client_buffer_bytes),
     16384, INT64_C(1) << 30, NULL},
    {"smtps_listen", SKEY_LISTEN_OPT, OFF(smtps_listen), 0, 0, NULL},
    {"smtp_tls_cert_file", SKEY_STR_OPT, OFF(smtp_tls_cert_file), 0, 0, NULL},
    {"smtp_tls_key_file", SKEY_STR_OPT, OFF(smtp_tls_key_file), 0, 0, NULL},
    {"smtp_users_file", SKEY_STR_OPT, OFF(smtp_users_file), 0, 0, NULL},
    {"smtp_trusted_networks", SKEY_STR_ANY, OFF(smtp_trusted_networks), 0, 0,
     NULL},
    {"smtp_allow_plain_auth", SKEY_BOOL, OFF(smtp_allow_plain_auth), 0, 0,
     NULL},
    /* At most MESSAGE_MAX_RECIPIENTS (intake/message.h), which the raw
     * message check applies too. */
    {"smtp_max_recipients", SKEY_INT, OFF(smtp_max_recipients), 1, 1000, NULL},
    {"smtp_timeout_s", SKEY_INT, OFF(smtp_timeout_s), 1, 3600, NULL},
    {"smtp_max_session_s", SKEY_INT, OFF(smtp_max_session_s), 1, 86400, NULL},
    {"smtp_max_connections", SKEY_INT, OFF(smtp_max_connections), 1, 1000000,
     NULL},
    {"smtp_max_client_connections", SKEY_INT, OFF(smtp_max_client_connections),
     1, 1000000, NULL},
    {"smtp_max_bad_commands", SKEY_INT, OFF(smtp_max_bad_commands), 1, 1000,
     NULL},
    {"smtp_data_budget_bytes", SKEY_INT64, OFF(smtp_data_budget_bytes), 1024,
     INT64_C(1) << 40, NULL},
    {"webhook_url", SKEY_STR_OPT, OFF(webhook_url), 0, 0, NULL},
    {"webhook_secret_file", SKEY_STR_OPT, OFF(webhook_secret_file), 0, 0, NULL},
    {"webhook_tls_ca_file", SKEY_STR_OPT, OFF(webhook_tls_ca_file), 0, 0, NULL},
    {"webhook_timeout_ms", SKEY_INT, OFF(webhook_timeout_ms), 100, 300000,
     NULL},
    {"webhook_max_in_flight", SKEY_INT, OFF(webhook_max_in_flight), 1, 256,
     NULL},
    {"webhook_retry_max_ms", SKEY_INT, OFF(webhook_retry_max_ms), 100, 86400000,
     NULL},
    {"webhook_max_outbox", SKEY_INT64, OFF(webhook_max_outbox), 10, 100000000,
     NULL},
    {"webhook_max_age_s", SKEY_INT, OFF(webhook_max_age_s), 60, 31536000, NULL},
};
#undef OFF
#define NSERVER_KEYS (sizeof(server_keys) / sizeof(server_keys[0]))

static void serr(struct config_server_parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
serr(struct config_server_parse *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config__report_verror(p->rep, line, fmt, ap);
	va_end(ap);
}

static const struct skey *
skey_lookup(const char *name, size_t *idx)
{
	size_t i;

	for (i = 0; i < NSERVER_KEYS; i++) {
		if (strcmp(server_keys[i].name, name) == 0) {
			*idx = i;
			return &server_keys[i];
		}
	}
	return NULL;
}

/* One of k->words, else reported with the list; false when refused. */
static bool
enum_ok(struct config_server_parse *p, int line, const struct skey *k,
	const char *name, const char *value)
{
	char list[160] = "";
	size_t i, off = 0;
	int w;

	for (i = 0; k->words[i] != NULL; i++)
		if (strcmp(k->words[i], value) == 0)
			return true;
	for (i = 0; k->words[i] != NULL && off < sizeof(list); i++) {
		w = snprintf(list + off, sizeof(list) - off, "%s%s",
			     i > 0 ? ", " : "", k->words[i]);
		if (w < 0)
			break;
		off += (size_t)w;
	}
	serr(p, line, "%s: must be one of %s", name, list);
	return false;
}

/* A string value checked by its kind; false (reported) when refused. */
static bool
string_ok(struct config_server_parse *p, int line, const struct skey *k,
	  const char *name, const char *value)
{
	char *host = NULL;
	int port;

	switch (k->kind) {
	case SKEY_STR:
		if (*value != '\0')
			return true;
		serr(p, line, "%s: must not be empty", name);
		return false;
	case SKEY_LISTEN:
	case SKEY_LISTEN_OPT:
		if (*value == '\0' && k->kind == SKEY_LISTEN_OPT)
			return true;
		if (hostport_parse(value, &host, &port) == 0) {
			free(host);
			return true;
		}
		serr(p, line, "%s: must be HOST:PORT with a port in 1..65535%s",
		     name,
		     k->kind == SKEY_LISTEN_OPT ? ", or empty for none" : "");
		return false;
	case SKEY_ENUM:
		return enum_ok(p, line, k, name, value);
	default:
		return true;
	}
}

void
config__server_key(struct config_server_parse *p, int line, const char *name,
		   const char *value)
{
	const struct skey *k;
	char **sp;
	int64_t v;
	size_t idx;

	k = skey_lookup(name, &idx);
	if (k == NULL) {
		char clean[80];
		serr(p, line, "unknown key '%s' in [server]",
		     log_sanitize(name, strlen(name), clean, sizeof(clean)));
		return;
	}
	if (p->key_line[idx] != 0) {
		serr(p, line, "duplicate key '%s' (first at line %d)", name,
		     p->key_line[idx]);
		return;
	}
	p->key_line[idx] = line;
	if (k->kind == SKEY_INT || k->kind == SKEY_INT64) {
		if (!config__parse_int64(value, k->min, k->max, &v)) {
			serr(p, line,
			     "%s: must be an integer between %lld and %lld",
			     name, (long long)k->min, (long long)k->max);
			return;
		}
		if (k->kind == SKEY_INT)
			*(int *)(void *)((char *)p->cfg + k->off) = (int)v;
		else
			*(int64_t *)(void *)((char *)p->cfg + k->off) = v;
		return;
	}
	if (k->kind == SKEY_BOOL) {
		bool b;
		if (!config__parse_bool(value, &b)) {
			serr(p, line, "%s: must be yes or no", name);
			return;
		}
		*(bool *)(void *)((char *)p->cfg + k->off) = b;
		return;
	}
	if (!string_ok(p, line, k, name, value))
		return;
	sp = (char **)(void *)((char *)p->cfg + k->off);
	free(*sp);
	/* An empty optional string means unset; an empty listen, none. */
	*sp = k->kind == SKEY_STR_OPT && *value == '\0' ? NULL : xstrdup(value);
}

/* The line of key, or of the [server] header when key was not set. */
static int
key_line(const struct config_server_parse *p, const char *key)
{
	size_t i = 0;

	if (skey_lookup(key, &i) == NULL)
		fatalx("config: no [server] key %s", key);
	return p->key_line[i] != 0 ? p->key_line[i] : p->server_line;
}

/*
 * One limit at every layer: a message of max_message_bytes must fit the
 * store's row, and a provider's max_in_flight_bytes must take at least one
 * such message (unset, it is CONFIG_IN_FLIGHT_BYTES_DEFAULT or one
 * message, whichever is larger).  Likewise one client's event streams fit
 * in all of them.  (The JOB frame of link.h carries
 * CONFIG_MESSAGE_BYTES_MAX by construction; link_codec.c asserts it at
 * compile time.)
 */
static void
limits_finish(struct config_server_parse *p)
{
	struct config *cfg = p->cfg;
	size_t bi = 0;

	(void)skey_lookup("max_in_flight_bytes", &bi);
	if (p->key_line[bi] == 0)
		cfg->max_in_flight_bytes =
		    cfg->max_message_bytes > CONFIG_IN_FLIGHT_BYTES_DEFAULT
			? cfg->max_message_bytes
			: CONFIG_IN_FLIGHT_BYTES_DEFAULT;
	else if (cfg->max_in_flight_bytes < cfg->max_message_bytes)
		serr(p, p->key_line[bi],
		     "max_in_flight_bytes: must be at least "
		     "max_message_bytes (%lld)",
		     (long long)cfg->max_message_bytes);

	/* One client's share of the event streams: the default follows a
	 * smaller events_max_clients down, a value set must fit in it. */
	(void)skey_lookup("events_max_client_streams", &bi);
	if (p->key_line[bi] == 0) {
		if (cfg->events_max_client_streams > cfg->events_max_clients)
			cfg->events_max_client_streams =
			    cfg->events_max_clients;
	} else if (cfg->events_max_client_streams > cfg->events_max_clients)
		serr(p, p->key_line[bi],
		     "events_max_client_streams: must be at most "
		     "events_max_clients (%d)",
		     cfg->events_max_clients);

	if (strcmp(cfg->store, "sqlite") == 0 &&
	    cfg->max_message_bytes > STORE_SQLITE_MESSAGE_MAX)
		serr(p, key_line(p, "max_message_bytes"),
		     "max_message_bytes: the sqlite store holds messages "
		     "of at most %d bytes",
		     STORE_SQLITE_MESSAGE_MAX);
}

/*
 * The SMTP keys that go together: a certificate needs its key and the
 * other way round, and implicit TLS needs both.
 */
static void
smtp_finish(struct config_server_parse *p)
{
	const struct config *cfg = p->cfg;
	bool cert = cfg->smtp_tls_cert_file != NULL,
	     key = cfg->smtp_tls_key_file != NULL;
	struct cidr_list *nets = NULL;
	char err[256];
	size_t bi = 0;

	if (cert != key)
		serr(p,
		     key_line(p, cert ? "smtp_tls_cert_file"
				      : "smtp_tls_key_file"),
		     "%s: needs %s too",
		     cert ? "smtp_tls_cert_file" : "smtp_tls_key_file",
		     cert ? "smtp_tls_key_file" : "smtp_tls_cert_file");
	if (cfg->smtps_listen != NULL && *cfg->smtps_listen != '\0' && !cert)
		serr(p, key_line(p, "smtps_listen"),
		     "smtps_listen: needs smtp_tls_cert_file and "
		     "smtp_tls_key_file");
	if (cidr_list_parse(cfg->smtp_trusted_networks, &nets, err,
			    sizeof(err)) != 0)
		serr(p, key_line(p, "smtp_trusted_networks"),
		     "smtp_trusted_networks: %s", err);
	cidr_list_free(nets);
	/* The budget takes at least one message (unset: grown to one). */
	(void)skey_lookup("smtp_data_budget_bytes", &bi);
	if (p->key_line[bi] == 0 &&
	    p->cfg->smtp_data_budget_bytes < p->cfg->max_message_bytes)
		p->cfg->smtp_data_budget_bytes = p->cfg->max_message_bytes;
	else if (p->cfg->smtp_data_budget_bytes < p->cfg->max_message_bytes)
		serr(p, p->key_line[bi],
		     "smtp_data_budget_bytes: must be at least "
		     "max_message_bytes (%lld)",
		     (long long)p->cfg->max_message_bytes);
}

/*
 * A server secret file: DATA_DIR/name when not set (made at first start),
 * else its env: reference checked.
 */
static void
secret_file_finish(struct config_server_parse *p, char **file, const char *key,
		   const char *name)
{
	if (*file == NULL)
		*file = xasprintf("%s/%s", p->cfg->data_dir, name);
	else if (strncmp(*file, "env:", 4) == 0 &&
		 !config__env_ref_valid(*file))
		serr(p, key_line(p, key),
		     "%s: env: must name a variable ([A-Za-z_][A-Za-z0-9_]*)",
		     key);
}

/* webhook_url's form, and its secret's default beside the agent's. */
static void
webhook_finish(struct config_server_parse *p)
{
	struct config *cfg = p->cfg;

	if (cfg->webhook_url == NULL)
		return;
	/* The message never repeats the URL: it may carry a token. */
	if (!config_webhook_url_ok(cfg->webhook_url))
		serr(p, key_line(p, "webhook_url"),
		     "webhook_url: must be http:// or https:// and a host, "
		     "printable with no spaces and no user@ part, at most "
		     "2048 bytes");
	secret_file_finish(p, &cfg->webhook_secret_file, "webhook_secret_file",
			   "webhook.secret");
}

/* mailgun_domains: see config__domains_check(). */
static void
mailgun_finish(struct config_server_parse *p)
{
	char bad[80];
	int rc;

	if (p->cfg->mailgun_domains == NULL)
		return;
	rc = config__domains_check(p->cfg->mailgun_domains, bad, sizeof(bad));
	if (rc == -ENOENT)
		serr(p, key_line(p, "mailgun_domains"),
		     "mailgun_domains: names no domain (leave it out to "
		     "take any)");
	else if (rc != 0)
		serr(p, key_line(p, "mailgun_domains"),
		     "mailgun_domains: '%s' is not a domain (labels of "
		     "A-Z a-z 0-9 -, separated by commas or spaces)",
		     bad);
}

/* Cross-key checks and defaults that depend on other keys. */
void
config__server_finish(struct config_server_parse *p)
{
	struct config *cfg = p->cfg;
	size_t ti = 0, ii = 0, bi = 0, mi = 0;
	int line;

	(void)skey_lookup("heartbeat_timeout_ms", &ti);
	(void)skey_lookup("heartbeat_interval_ms", &ii);
	(void)skey_lookup("retry_base_ms", &bi);
	(void)skey_lookup("retry_max_ms", &mi);
	if (cfg->heartbeat_timeout_ms <= cfg->heartbeat_interval_ms) {
		line = p->key_line[ti] ? p->key_line[ti] : p->key_line[ii];
		serr(p, line,
		     "heartbeat_timeout_ms: must be greater than "
		     "heartbeat_interval_ms (%d)",
		     cfg->heartbeat_interval_ms);
	}
	if (cfg->retry_max_ms < cfg->retry_base_ms) {
		line = p->key_line[mi] ? p->key_line[mi] : p->key_line[bi];
		serr(p, line,
		     "retry_max_ms: must be at least retry_base_ms (%d)",
		     cfg->retry_base_ms);
	}
	secret_file_finish(p, &cfg->agent_secret_file, "agent_secret_file",
			   "agent.secret");
	limits_finish(p);
	smtp_finish(p);
	webhook_finish(p);
	mailgun_finish(p);
	/* Kept for the run-time checks' FILE:LINE. */
	cfg->server_line = p->server_line;
	cfg->key_line = p->key_line;
	p->key_line = NULL;
}

int
config_line(const struct config *cfg, const char *key)
{
	size_t i = 0;

	if (cfg->key_line == NULL || skey_lookup(key, &i) == NULL)
		return 0;
	return cfg->key_line[i];
}

struct config *
config__server_begin(struct config_server_parse *p, struct config_report *rep)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));

	memset(p, 0, sizeof(*p));
	p->cfg = cfg;
	p->rep = rep;
	p->key_line = xcalloc(NSERVER_KEYS, sizeof(*p->key_line));

	cfg->data_dir = xstrdup("./shivneri-data");
	cfg->http_listen = xstrdup("127.0.0.1:8025");
	cfg->smtp_listen = xstrdup("127.0.0.1:2525");
	cfg->agent_listen = xstrdup("127.0.0.1:8026");
	cfg->agent_tls = xstrdup("auto");
	cfg->scheduler = xstrdup("round_robin");
	cfg->heartbeat_interval_ms = 1000;
	cfg->heartbeat_timeout_ms = 3000;
	cfg->max_attempts = 10;
	cfg->retry_base_ms = 1000;
	cfg->retry_max_ms = 300000;
	cfg->message_ttl_s = 86400;
	cfg->max_message_bytes = 26214400;
	cfg->max_dynamic_providers = 32;
	cfg->max_in_flight_bytes = CONFIG_IN_FLIGHT_BYTES_DEFAULT;
	cfg->breaker_threshold = 5;
	cfg->breaker_cooldown_ms = 10000;
	cfg->job_timeout_s = 300;
	cfg->retention_days = 30;
	cfg->log_format = xstrdup("text");
	cfg->store = xstrdup("sqlite");
	cfg->http_max_connections = 1024;
	cfg->http_max_client_connections = 256;
	cfg->http_header_timeout_s = 10;
	cfg->http_body_budget_bytes = INT64_C(268435456);
	cfg->http_min_body_rate = 65536;
	cfg->events_max_clients = 64;
	cfg->events_max_client_streams = CONFIG_EVENTS_CLIENT_STREAMS_DEFAULT;
	cfg->events_history = CONFIG_EVENTS_HISTORY_DEFAULT;
	cfg->events_ping_s = 15;
	cfg->events_client_buffer_bytes = 1048576;
	cfg->smtp_trusted_networks = xstrdup("127.0.0.0/8, ::1");
	cfg->smtp_max_recipients = 1000;
	cfg->smtp_timeout_s = 300;
	cfg->smtp_max_session_s = 3600;
	cfg->smtp_max_connections = 512;
	cfg->smtp_max_client_connections = 32;
	cfg->smtp_max_bad_commands = 20;
	cfg->smtp_data_budget_bytes = INT64_C(268435456);
	cfg->webhook_timeout_ms = 10000;
	cfg->webhook_max_in_flight = 8;
	cfg->webhook_retry_max_ms = 3600000;
	cfg->webhook_max_outbox = 100000;
	cfg->webhook_max_age_s = 259200; /* 3 days */
	return cfg;
}
