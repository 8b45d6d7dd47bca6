/*
 * The connector interface: what an agent uses to hand one message to one
 * provider.  Each provider type is one file, conn_TYPE.c, that keeps its
 * functions static and registers one const table with CONNECTOR_REGISTER;
 * nothing else in the tree changes when a type is added.
 *
 * A connector also declares the keys of its [provider.NAME] section
 * (struct config_ptype: required, optional, secret, and a check of their
 * values); registering the connector registers them with the
 * configuration, which thus accepts exactly the types this build runs.
 *
 * Sends are asynchronous with many in flight: send() starts the work and
 * returns; the connector calls done() later, on the agent's loop thread,
 * exactly once per accepted job, never from inside send().  A connector
 * whose work blocks (maildir's fsync) does it on a worker thread
 * (common/workq.h); network connectors drive libcurl's multi interface
 * from the same event_base.
 *
 * Outcome classes (link.h): OUTCOME_DELIVERED with the provider's message
 * id; OUTCOME_PERMANENT for message-caused refusals (a recipient or content
 * refused for good); OUTCOME_THROTTLED for 429 and rate errors (with
 * retry_after_ms when the API says how long); OUTCOME_ACCOUNT for bad
 * credentials, suspension, quota; OUTCOME_TRANSIENT for other
 * provider-caused failures (5xx, resets, timeouts before the request went
 * out); OUTCOME_AMBIGUOUS when the request went out and no answer came.
 */
#ifndef SHIVNERI_CONNECTOR_H
#define SHIVNERI_CONNECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The longest connect_timeout_ms or request_timeout_ms any connector
 * takes: 10 minutes moves max_message_bytes over a slow link, and a
 * longer wait only hides a dead provider.
 */
#define CONNECTOR_TIMEOUT_MAX_MS 600000

struct config_ptype;
struct event_base;
struct provider_config;

/* One message to send; everything is borrowed until done() is called. */
struct connector_job {
	uint64_t job_id;
	const char *message_id;
	const char *mail_from;
	const char *const *rcpt;
	size_t nrcpt;
	const uint8_t *mime;
	size_t mime_len;
	void *owner; /* the agent's; connectors leave it alone */
};

struct connector_result {
	int outcome;                     /* enum outcome */
	const char *provider_message_id; /* may be NULL */
	const char *detail;              /* may be NULL; no secrets */
	uint32_t retry_after_ms;         /* THROTTLED: how long, 0 unknown */
};

/*
 * A probe's answer: passed is true when the provider took our credentials
 * (its cheap authenticated call answered 2xx); detail (may be NULL, no
 * secrets) says why not.  Called on the loop, never from inside probe().
 */
typedef void (*connector_probe_cb)(bool passed, const char *detail, void *arg);

/* Called once per accepted job; res and its strings die after it returns. */
typedef void (*connector_done_cb)(struct connector_job *job,
				  const struct connector_result *res,
				  void *arg);

struct connector_ops {
	const char *name; /* the provider type, "maildir" */
	/* Its section's keys; config->name must equal name. */
	const struct config_ptype *config;
	/*
	 * Reads the provider's keys from pc (provider_config_get), checks
	 * them and prepares.  0, or a negative error with a message in err.
	 */
	int (*open)(const struct provider_config *pc, struct event_base *base,
		    connector_done_cb done, void *arg, void **state, char *err,
		    size_t errlen);
	/* Starts one send.  0: done() will be called later; <0: refused. */
	int (*send)(void *state, struct connector_job *job);
	/* LINK_HEALTH_OK | _DEGRADED | _DOWN, for heartbeats. */
	int (*health)(void *state);
	/*
	 * Optional (NULL: the API has no cheap authenticated call).  Starts
	 * one check of the account after an OUTCOME_ACCOUNT, asynchronous
	 * like send: 0 and cb is called later, exactly once; <0 and cb is
	 * never called (the agent counts it as failed).  The agent runs at
	 * most one at a time, every probe_interval_s until one passes.
	 */
	int (*probe)(void *state, connector_probe_cb cb, void *arg);
	/*
	 * Stops: jobs still in flight are abandoned without done() (the
	 * server counts them lost when the link drops), and so is a probe
	 * under way (no cb).  Frees state.
	 */
	void (*close)(void *state);
	/*
	 * What the type is built from, for its tests and fuzz targets: the
	 * struct conn_http_api of an HTTP API connector, else NULL.
	 */
	const void *impl;
	/*
	 * The provider takes 7-bit ASCII addresses only, as its documentation
	 * says (no SMTPUTF8, RFC 6531): the agent gives send() the envelope
	 * with its domains as A-labels (common/envelope.h), and answers
	 * needs_smtputf8 without calling send() for an address with no ASCII
	 * form, so the server offers the message to a provider that may carry
	 * it.  false: unknown or
	 * able, the provider answers for itself (smtp asks its smarthost).
	 */
	bool ascii_addresses;
};

/* NULL when no connector has that type name. */
const struct connector_ops *connector_lookup(const char *type);
/*
 * Called by CONNECTOR_REGISTER at load time; registers ops->config with
 * the configuration too.  A duplicate or a table without keys is fatal.
 */
void connector_register(const struct connector_ops *ops);
/* The registered type names, for messages; n set to how many. */
const char *const *connector_names(size_t *n);
/*
 * Overwrites with '*' every copy of secret (a C string, 4 bytes or more)
 * in text, and a start of it (4 bytes or more) that ends text, or comes
 * right before a final "..." (log_sanitize's mark): a copy cut short where
 * the provider's words were truncated.  A copy counts raw or as
 * log_sanitize() leaves it (each byte it cannot print, as in a UTF-8
 * password, a '?'), so text escaped before it got here is blotted too.
 * Any provider's words go through this before a detail, an id or a log
 * line: an answer may echo what the request carried.
 */
void connector_blot(char *text, const char *secret);
/*
 * connector_blot() of secret as a JSON string would carry it when it
 * holds anything JSON escapes (quotes, backslashes, controls, non-ASCII
 * as \uXXXX in either case of hex): a provider's raw JSON body that
 * echoes it.  Nothing for a printable ASCII secret (its JSON form is
 * itself, save for quotes and backslashes, whose escapes are blotted).
 */
void connector_blot_json(char *text, const char *secret);
/* What connector_blot_base64() encodes at most (longer: nothing done). */
#define CONNECTOR_BLOT_PLAIN_MAX 1024
/*
 * connector_blot() of the base64 of the n bytes at plain (credentials as a
 * request carried them: Basic's "user:key", AUTH's lines); the encoding is
 * wiped afterwards.
 */
void connector_blot_base64(char *text, const void *plain, size_t n);

#define CONNECTOR_REGISTER(ops)                                                \
	__attribute__((constructor)) static void connector_register_##ops(     \
	    void)                                                              \
	{                                                                      \
		connector_register(&(ops));                                    \
	}

#endif
