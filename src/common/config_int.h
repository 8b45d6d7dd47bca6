/*
 * Shared by the files of the configuration (config.c reads the text,
 * config_provider.c checks provider sections against the registered
 * types, config_check.c checks what the text points at): the collector of
 * "FILE:LINE: message" errors and the helpers more than one of them uses.
 * Nothing outside src/common/config*.c includes this.
 */
#ifndef SHIVNERI_CONFIG_INT_H
#define SHIVNERI_CONFIG_INT_H

#include "common/config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#define CONFIG_MAX_ERRORS 100

/* One error before sorting: the line orders them. */
struct config_perr {
	int line;
	char *msg;
};

struct config_report {
	const char *file; /* the name in messages */
	struct config_perr *errs;
	size_t nerrs;
	bool too_many;
};

void config__report_verror(struct config_report *r, int line, const char *fmt,
			   va_list ap) __attribute__((format(printf, 3, 0)));
/*
 * Moves the collected errors, sorted by line (stable), into errs, or frees
 * them when errs is NULL.  r is empty afterwards.
 */
void config__report_move(struct config_report *r, struct config_errors *errs);

/* Strict base-10 integer of the whole string within [min, max]. */
bool config__parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);
bool config__parse_bool(const char *s, bool *out);

/* Appends key = value at line to the section (no duplicate check). */
void config__kv_add(struct provider_config *pc, const char *key,
		    const char *value, int line);

/*
 * The [server] section (config_server.c): its keys' table, checks and
 * defaults.  config.c's reader hands it each key with its line.
 */
struct config_server_parse {
	struct config *cfg;
	struct config_report *rep;
	int server_line; /* of the [server] header; 0: none yet */
	int *key_line;   /* per key of the table, 0: not set */
};
/* A new config holding every [server] default, and p set to read into it. */
struct config *config__server_begin(struct config_server_parse *p,
				    struct config_report *rep);
/* One key = value of [server] at line; what is wrong goes to p->rep. */
void config__server_key(struct config_server_parse *p, int line,
			const char *name, const char *value);
/*
 * Once the whole file is read (always called, errors or not): the checks
 * that span keys and the defaults that follow other keys; the key lines
 * move into the config (config_line()).
 */
void config__server_finish(struct config_server_parse *p);

/* Checks every provider section once the whole file has been read. */
void config__providers_finish(struct config *cfg, struct config_report *r);

/*
 * mailgun_domains' value: each entry (separated by commas or blanks) a
 * domain the drop-in could ever be asked for (dns_name_ok(), the rule
 * front_mailgun_domain_ok() applies to a request), and at least one.  A typo
 * would name a domain no request matches, and every message to the drop-in
 * would be refused 404 with nothing in the log to say why.  0; -ENOENT for no
 * entry; -EINVAL with the first bad one, sanitized, in bad.
 */
int config__domains_check(const char *list, char *bad, size_t badlen);

/*
 * The longest line the reader takes (inih's own buffer is 200 bytes: a
 * longer key line goes through config__split_key_line()).  It holds
 * webhook_url's 2048 bytes and a PATH_MAX path with room to spare.
 */
#define CONFIG_LINE_MAX 8192

/*
 * Splits a key line of n bytes (no newline) as inih splits one: the name
 * up to the first '=' or ':', the value after it, an inline comment (';'
 * after a blank) cut off, both stripped of blanks.  0 with *name and
 * *value the caller's to free; -1 when it is not a key line.
 */
int config__split_key_line(const char *line, size_t n, char **name,
			   char **value);

/* "env:VAR" with VAR a valid environment variable name. */
bool config__env_ref_valid(const char *ref);

#endif
