/*
 * The configuration: an INI file read with inih (or the embedded default),
 * checked key by key with file:line in every error, into one struct that
 * the server, the agents and the CLI share.  Provider sections keep every
 * key as a raw string too, so that a connector reads its own keys without
 * this file knowing them; the generic keys (type, spawn, weight, ...) are
 * parsed here.  Which keys a provider type takes is not known here
 * either: each connector declares them (struct config_ptype) and registers
 * them before main() runs; a type nobody registered is an error.  Secrets
 * are never stored here: only where to read them (a file path or
 * "env:VARIABLE"), resolved by config_secret_read().
 *
 * Loading checks the text alone.  config_check_runtime() then checks what
 * the text points at (secret and key files, environment variables, the
 * log folder, listen addresses that collide): serve, agent and
 * check-config all call it, so that a file check-config passes is a file
 * serve accepts.
 */
#ifndef SHIVNERI_CONFIG_H
#define SHIVNERI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config_kv {
	char *key;
	char *value;
	int line;
};

struct provider_config {
	char *name; /* the NAME of [provider.NAME] */
	char *type; /* maildir | smtp | mailgun | ... */
	bool spawn;
	int weight;                /* default 1 */
	int priority;              /* default 100 */
	int max_in_flight;         /* default 32 */
	int rate_per_s;            /* 0: no limit */
	int slow_start_s;          /* default 0 */
	int probe_interval_s;      /* 0: not set (the agent's default, 30) */
	int overflow;              /* 1 yes, 0 no, -1 not set (see dispatch) */
	int64_t max_message_bytes; /* 0: not set (config_provider_max_bytes) */
	int line;             /* line of the section header; 0 if embedded */
	struct config_kv *kv; /* every key of the section, in file order */
	size_t nkv;
};

struct config {
	char *path; /* NULL for the embedded default */
	char *data_dir;
	char *http_listen;  /* "" or NULL: no HTTP */
	char *smtp_listen;  /* "" or NULL: no SMTP */
	char *agent_listen; /* host:port */
	char *agent_secret_file;
	char *agent_tls;     /* "auto" | "required" | "off" (link/link_tls.h) */
	char *api_keys_file; /* NULL: no API keys */
	char *log_file;      /* NULL: stderr */
	char *scheduler;
	/* Mailgun drop-in: the DOMAINs /v3/DOMAIN/messages takes, separated
	 * by commas or spaces; NULL: any well-formed domain. */
	char *mailgun_domains;
	int heartbeat_interval_ms;
	int heartbeat_timeout_ms;
	int max_attempts;
	int retry_base_ms;
	int retry_max_ms;
	int64_t message_ttl_s;
	int64_t max_message_bytes;
	int max_dynamic_providers;   /* agents registered on the fly, at most */
	int64_t max_in_flight_bytes; /* message bytes held for one provider */
	int breaker_threshold;       /* consecutive provider-caused failures */
	int breaker_cooldown_ms;
	int job_timeout_s;        /* a job with no result by then is lost */
	int retention_days;       /* delivered and failed are pruned after */
	char *log_format;         /* "text" | "json" */
	char *store;              /* store backend by name: "sqlite" */
	int http_max_connections; /* open HTTP connections at most */
	int http_max_client_connections; /* from one client address */
	int http_header_timeout_s;       /* a request head within this */
	int64_t http_body_budget_bytes;  /* bodies in progress, all together */
	int64_t http_min_body_rate;      /* bytes/s a body must keep up */
	/* GET /v1/events (docs/configuration.md): */
	int events_max_clients;        /* open event streams at most */
	int events_max_client_streams; /* of them from one client address */
	int events_history; /* events kept for Last-Event-ID replay */
	int events_ping_s;  /* ": ping" to an idle stream this often */
	int64_t events_client_buffer_bytes; /* queued for one stream, at most */
	/* SMTP intake (docs/configuration.md): */
	char *smtps_listen;       /* "" or NULL: no implicit TLS */
	char *smtp_tls_cert_file; /* NULL: no STARTTLS */
	char *smtp_tls_key_file;
	char *smtp_users_file;       /* NULL: no AUTH */
	char *smtp_trusted_networks; /* CIDR list; "" trusts no one */
	bool smtp_allow_plain_auth;  /* AUTH without TLS on loopback */
	int smtp_max_recipients;
	int smtp_timeout_s;              /* between commands */
	int smtp_max_session_s;          /* a whole session */
	int smtp_max_connections;        /* open SMTP sessions at most */
	int smtp_max_client_connections; /* from one client address */
	int64_t smtp_data_budget_bytes;  /* message buffers, all sessions */
	int smtp_max_bad_commands;       /* then 421 and close */
	/* Webhooks (docs/webhooks.md); webhook_url NULL: none. */
	char *webhook_url;          /* http(s)://host[:port][/path][?query] */
	char *webhook_secret_file;  /* default DATA_DIR/webhook.secret */
	char *webhook_tls_ca_file;  /* NULL: the system's CAs */
	int webhook_timeout_ms;     /* one delivery's whole request */
	int webhook_max_in_flight;  /* deliveries at once */
	int webhook_retry_max_ms;   /* the longest wait between tries */
	int64_t webhook_max_outbox; /* rows kept; the oldest go beyond */
	int webhook_max_age_s;      /* an older row is dropped, not sent */
	struct provider_config *providers;
	size_t nproviders;
	int *key_line;   /* private: see config_line() */
	int server_line; /* line of [server]; 0 if none or embedded */
};

/* The largest max_message_bytes: the JOB frame (link.h) must carry it. */
#define CONFIG_MESSAGE_BYTES_MAX 1073741824
/* max_in_flight_bytes when the file does not set it (and a message fits). */
#define CONFIG_IN_FLIGHT_BYTES_DEFAULT (64 * 1024 * 1024)
/* events_max_client_streams unset: this, or events_max_clients if fewer. */
#define CONFIG_EVENTS_CLIENT_STREAMS_DEFAULT 8
/* events_history's default: EVENTS_HISTORY_DEFAULT (dispatch/events.h). */
#define CONFIG_EVENTS_HISTORY_DEFAULT 10000
/* The shortest agent secret accepted, in bytes. */
#define CONFIG_AGENT_SECRET_MIN 16

/* Collected errors, each "FILE:LINE: message". */
struct config_errors {
	char **msg;
	size_t n;
};

/*
 * Reads and checks path.  On success *out is a new config and 0 is
 * returned; on failure -EINVAL (or -errno when the file cannot be read) and
 * errs holds every error found.  errs may be NULL.
 */
int config_load(const char *path, struct config **out,
		struct config_errors *errs) __attribute__((warn_unused_result));
/* The embedded default of SPEC.md ("make run" without -c). */
int config_load_default(struct config **out)
    __attribute__((warn_unused_result));
/* Parses INI text as if it were the file named path (for tests). */
int config_load_string(const char *text, const char *path, struct config **out,
		       struct config_errors *errs)
    __attribute__((warn_unused_result));
void config_free(struct config *cfg);
void config_errors_cleanup(struct config_errors *errs);

/*
 * The line of a [server] key in the file, or 0 when it was not set (a
 * default) or the configuration is the embedded one.
 */
int config_line(const struct config *cfg, const char *key);

/*
 * The run-time checks: everything the text points at.  agent names the
 * provider whose agent is starting, or NULL for the server (serve and
 * check-config).  The server role checks the agent secret (a missing file
 * is fine when its folder can be made: serve creates it; env: must be
 * set), api_keys_file, log_file's folder, listen addresses that collide,
 * and the secrets of every provider with spawn = yes (their agents run in
 * the server's environment).  The agent role checks the agent secret (it
 * must exist), log_file and its own provider's secrets.  A secret file
 * that other users may read or write (mode & 077) is an error.  Appends
 * one "FILE:LINE: message" per problem to errs (never a secret's value)
 * and returns 0 or -EINVAL.
 */
int config_check_runtime(const struct config *cfg, const char *agent,
			 struct config_errors *errs)
    __attribute__((warn_unused_result));

/* The largest api_keys_file read, by check-config and by every reload. */
#define CONFIG_API_KEYS_MAX_FILE (1024 * 1024)

/*
 * The keys of an api_keys_file's text, the one rule of check-config, serve
 * and each SIGHUP: one key a line, blanks and a trailing CR around it
 * dropped, empty lines and lines starting with '#' skipped.  Calls fn
 * (when set) with each key, a pointer into text and its length, and puts
 * the number of keys in *count.  -EINVAL for a NUL byte (a binary or
 * half-written file: the keys after it would vanish unseen), else 0.
 */
int config_api_keys_parse(const char *text, size_t len,
			  void (*fn)(const char *key, size_t klen, void *arg),
			  void *arg, size_t *count)
    __attribute__((warn_unused_result));

/*
 * Provider types.  Each connector declares the keys its section takes
 * (NULL-terminated lists; NULL for none) and which of them hold a secret
 * reference ("env:VAR" or a file, checked by config_check_runtime()).
 * check, when set, runs after the generic checks of a section of this
 * type: it checks values and may add defaults with provider_config_default.
 */
struct config_report;
struct config_ptype {
	const char *name;
	const char *const *required;
	const char *const *optional;
	const char *const *secret; /* a subset of the two above */
	void (*check)(struct provider_config *pc, const struct config *cfg,
		      struct config_report *r);
	/* The provider's documented message limit in bytes; 0: none. */
	int64_t max_message_bytes;
};
/* Called from constructors (CONNECTOR_REGISTER); a duplicate is fatal. */
void config_ptype_register(const struct config_ptype *pt);
/* NULL when this build has no such type. */
const struct config_ptype *config_ptype_lookup(const char *name);
/* Reports an error at line (0: none) of the file being checked. */
void config_report_error(struct config_report *r, int line, const char *fmt,
			 ...) __attribute__((format(printf, 3, 4)));
/* Adds key = value unless the section has key (line: the section's). */
void provider_config_default(struct provider_config *pc, const char *key,
			     const char *value);

/*
 * pc's provider's own message limit: its max_message_bytes key, else its
 * type's documented limit (struct config_ptype), else 0: none of its own,
 * the server's max_message_bytes applies.  Callers cap it at the server's
 * (one limit at every layer: a provider never takes more than the intake).
 */
int64_t config_provider_max_bytes(const struct provider_config *pc);

/* NULL when there is no such provider. */
const struct provider_config *config_provider(const struct config *cfg,
					      const char *name);
/* The raw value of key in the provider's section, or NULL. */
const char *provider_config_get(const struct provider_config *pc,
				const char *key);
/* The line of key in the provider's section, or the section's line. */
int provider_config_line(const struct provider_config *pc, const char *key);

/*
 * Resolves a secret reference: "env:VAR" reads the environment, anything
 * else is a file path read whole with the trailing newline stripped.
 * Returns 0 and a new string in *out, or a negative errno with a message
 * (never containing the secret) in err.
 */
int config_secret_read(const char *ref, char **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * The mode check every secret file gets (config_check_runtime uses it),
 * for modules that load their own secret files (smtp_users_file,
 * smtp_tls_key_file): 0, or -EPERM with "PATH may be read or changed by
 * other users (mode NNN): chmod 600 it" in err when mode & 077.  A file
 * stat() cannot see is 0: the read that follows reports it.
 */
int config_secret_mode_check(const char *path, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * 0 when path is a regular file, or when stat() cannot see it (the read
 * that follows says why); else -EINVAL with "cannot read PATH: not a
 * regular file (...)" in err.  Every file the configuration names is read
 * whole, so a FIFO would block the reader (the server's loop, on SIGHUP) and a
 * device might never end.  config_secret_mode_check() and config_secret_read()
 * apply it.
 */
int config_regular_file_check(const char *path, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * 0 when path is a regular, readable file with at least one PEM
 * certificate (what curl's CAINFO takes); else a negative errno with why
 * in err.  A CA file of anything else would only show as every TLS send
 * failing.
 */
int config_ca_file_check(const char *path, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * The agent secret of cfg as bytes: agent_secret_file names a file, or
 * "env:VAR".  With create, a missing file is made (32 random bytes, hex,
 * mode 0600, parent folders too); an env: secret is never written
 * anywhere.  Shorter than CONFIG_AGENT_SECRET_MIN: -EINVAL.  0 or -errno.
 */
int config_agent_secret(const struct config *cfg, bool create, char **out,
			size_t *len) __attribute__((warn_unused_result));
/*
 * The same for webhook_secret_file (the key that signs webhooks), made at
 * first start like the agent's.  -EINVAL without webhook_url.
 */
int config_webhook_secret(const struct config *cfg, bool create, char **out,
			  size_t *len) __attribute__((warn_unused_result));
/*
 * True for a webhook_url the sender can use: http:// or https://, a host,
 * printable ASCII with no spaces, no user:password@ part, at most 2048
 * bytes.
 */
bool config_webhook_url_ok(const char *url);

#endif
