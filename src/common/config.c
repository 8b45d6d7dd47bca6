/*
 * The configuration reader.  inih does the INI syntax; everything else is
 * here: which sections and keys exist, their types and ranges, defaults;
 * provider sections are checked against the registered provider types in
 * config_provider.c, and what the text points at (files, environment) in
 * config_check.c.  Debian's inih has no line numbers in its
 * handler, so the text is fed through our own reader (ini_parse_stream)
 * that counts the lines it hands out; the handler runs right after its line
 * was handed out, so the count is the key's line.  The reader also sees the
 * section headers (inih tells the handler nothing about an empty section),
 * strips leading blanks (inih would take an indented line as the
 * continuation of the previous value), hands inih a line longer than its
 * buffer as a short one (config_longline.c) and catches syntax errors
 * itself so that all of them are reported, not only inih's first.
 *
 * Nothing here is fatal: every problem becomes a "FILE:LINE: message" in
 * the collected errors (sorted by line), and the load fails with -EINVAL
 * once the whole file has been read.  Provider sections are checked after
 * the whole file, because "type" may come after the keys it governs.
 * Secrets are only referenced here; config_secret_read() resolves them and
 * never puts a secret into an error message.  The line of every [server]
 * key is kept in the config (config_line()) for the run-time checks.
 */
#include "common/config_int.h"
#include "common/cidr.h"
#include "common/log.h"
#include "common/util.h"

#include <ini.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX_FILE (1024 * 1024)
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

enum section_kind {
	SECTION_NONE,     /* before the first header */
	SECTION_SERVER,   /* [server] */
	SECTION_PROVIDER, /* [provider.NAME], providers[cur_provider] */
	SECTION_IGNORED,  /* a bad header, already reported */
};

struct parse {
	const char *file; /* the name in messages */
	const char *text;
	size_t len, pos;
	int line; /* lines handed to inih so far */
	struct config *cfg;
	enum section_kind section;
	size_t cur_provider;
	int server_line;                   /* 0: no [server] yet */
	int server_key_line[NSERVER_KEYS]; /* 0: key not set */
	struct config_report rep;
	char *long_value; /* the value of the line inih has, when long */
};

static void perr_add(struct parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void
config__report_verror(struct config_report *r, int line, const char *fmt,
		      va_list ap)
{
	char buf[512];

	if (r->nerrs >= CONFIG_MAX_ERRORS) {
		r->too_many = true;
		return;
	}
	vsnprintf(buf, sizeof(buf), fmt, ap);
	r->errs = xreallocarray(r->errs, r->nerrs + 1, sizeof(*r->errs));
	r->errs[r->nerrs].line = line;
	if (line > 0)
		r->errs[r->nerrs].msg =
		    xasprintf("%s:%d: %s", r->file, line, buf);
	else
		r->errs[r->nerrs].msg = xasprintf("%s: %s", r->file, buf);
	r->nerrs++;
}

static void
perr_add(struct parse *p, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config__report_verror(&p->rep, line, fmt, ap);
	va_end(ap);
}

static bool
name_valid(const char *s)
{
	size_t n = 0;

	for (; s[n] != '\0'; n++) {
		char c = s[n];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return n >= 1 && n <= 64;
}

/*
 * Strict integer parsing: the whole string, base 10, within range.  The
 * message names the key and the range, never what was typed (a value
 * could be a pasted secret).
 */
bool
config__parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	/* strtoll would also take blanks and a '+' before the digits. */
	if (!(*s >= '0' && *s <= '9') &&
	    !(*s == '-' && s[1] >= '0' && s[1] <= '9'))
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool
config__parse_bool(const char *s, bool *out)
{
	if (strcmp(s, "yes") == 0 || strcmp(s, "true") == 0 ||
	    strcmp(s, "1") == 0) {
		*out = true;
		return true;
	}
	if (strcmp(s, "no") == 0 || strcmp(s, "false") == 0 ||
	    strcmp(s, "0") == 0) {
		*out = false;
		return true;
	}
	return false;
}

/* A section header seen by the reader, at line p->line. */
static void
section_begin(struct parse *p, const char *name)
{
	struct config *cfg = p->cfg;
	struct provider_config *pc;
	const char *pname;
	size_t i;

	p->section = SECTION_IGNORED;
	if (strcmp(name, "server") == 0) {
		if (p->server_line != 0) {
			perr_add(
			    p, p->line,
			    "duplicate section [server] (first at line %d)",
			    p->server_line);
			return;
		}
		p->server_line = p->line;
		p->section = SECTION_SERVER;
		return;
	}
	if (strncmp(name, "provider.", 9) != 0) {
		char clean[80];
		perr_add(
		    p, p->line, "unknown section [%s]",
		    log_sanitize(name, strlen(name), clean, sizeof(clean)));
		return;
	}
	pname = name + 9;
	if (!name_valid(pname)) {
		char clean[80];
		perr_add(
		    p, p->line,
		    "invalid provider name '%s' (1 to 64 of A-Z a-z 0-9 . _ -)",
		    log_sanitize(pname, strlen(pname), clean, sizeof(clean)));
		return;
	}
	for (i = 0; i < cfg->nproviders; i++) {
		if (strcmp(cfg->providers[i].name, pname) == 0) {
			perr_add(
			    p, p->line,
			    "duplicate section [provider.%s] (first at line "
			    "%d)",
			    pname, cfg->providers[i].line);
			return;
		}
	}
	cfg->providers = xreallocarray(cfg->providers, cfg->nproviders + 1,
				       sizeof(*cfg->providers));
	pc = &cfg->providers[cfg->nproviders];
	memset(pc, 0, sizeof(*pc));
	pc->name = xstrdup(pname);
	pc->line = p->line;
	pc->weight = 1;
	pc->priority = 100;
	pc->overflow = -1;
	pc->max_in_flight = 32;
	p->cur_provider = cfg->nproviders++;
	p->section = SECTION_PROVIDER;
}

/*
 * Looks at one line (without its newline) before inih does: section
 * headers and syntax errors.  Mirrors inih's own rules: ';' and '#' start
 * comments, a header is '[' up to the first ']', a key line needs '=' or
 * ':'.
 */
static void
scan_line(struct parse *p, char *s)
{
	char *close;

	if (p->line == 1 && (unsigned char)s[0] == 0xEF &&
	    (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF)
		s += 3;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0' || *s == '\r' || *s == ';' || *s == '#')
		return;
	if (*s == '[') {
		close = strchr(s, ']');
		if (close == NULL) {
			perr_add(p, p->line, "section header without ']'");
			p->section = SECTION_IGNORED;
			return;
		}
		*close = '\0';
		section_begin(p, s + 1);
		return;
	}
	if (strpbrk(s, "=:") == NULL)
		perr_add(p, p->line, "expected 'key = value' or '[section]'");
}

/*
 * A line longer than inih's buffer: a comment is handed out blank; a key
 * line as "name=" with its value kept in p->long_value for the handler,
 * which runs before the next line is read; anything else, or a line over
 * CONFIG_LINE_MAX, is reported and handed out blank, so that its tail is
 * not taken for a line of its own.
 */
static char *
long_line(struct parse *p, const char *start, size_t len, char *str, int num)
{
	char *name, *value, *scan;

	str[0] = '\n';
	str[1] = '\0';
	if (p->line == 1 && len >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
		start += 3; /* the BOM inih would skip */
		len -= 3;
	}
	if (*start == ';' || *start == '#')
		return str;
	if (len > CONFIG_LINE_MAX) {
		perr_add(p, p->line, "line too long (at most %d characters)",
			 CONFIG_LINE_MAX);
		return str;
	}
	if (*start == '[') {
		perr_add(p, p->line, "section header too long");
		return str;
	}
	if (config__split_key_line(start, len, &name, &value) != 0) {
		perr_add(p, p->line, "expected 'key = value' or '[section]'");
		return str;
	}
	if (strlen(name) + 3 > (size_t)num) {
		perr_add(p, p->line, "key name too long");
		free(name);
		free(value);
		return str;
	}
	snprintf(str, (size_t)num, "%s=\n", name);
	scan = xstrdup(str);
	scan_line(p, scan);
	free(scan);
	free(name);
	p->long_value = value;
	return str;
}

/*
 * inih's reader: hands out one line per call, like fgets, and counts them.
 * Leading blanks are dropped so that an indented key stays a key (inih
 * would append it to the previous value).  A line longer than inih's
 * buffer goes to long_line().
 */
static char *
reader(char *str, int num, void *stream)
{
	struct parse *p = stream;
	const char *start, *nl;
	size_t linelen, n;
	char *scan;

	if (p->pos >= p->len || num < 2)
		return NULL;
	start = p->text + p->pos;
	nl = memchr(start, '\n', p->len - p->pos);
	linelen = nl != NULL ? (size_t)(nl - start) : p->len - p->pos;
	p->pos += linelen + (nl != NULL ? 1 : 0);
	p->line++;
	while (linelen > 0 && (*start == ' ' || *start == '\t') &&
	       !(p->line == 1 && (unsigned char)*start == 0xEF)) {
		start++;
		linelen--;
	}
	free(p->long_value);
	p->long_value = NULL;
	if (linelen + 2 > (size_t)num)
		return long_line(p, start, linelen, str, num);
	n = linelen;
	memcpy(str, start, n);
	str[n] = '\0';
	scan = xstrdup(str);
	scan_line(p, scan);
	free(scan);
	str[n++] = '\n';
	str[n] = '\0';
	return str;
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
enum_ok(struct parse *p, const struct skey *k, const char *name,
	const char *value)
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
	perr_add(p, p->line, "%s: must be one of %s", name, list);
	return false;
}

/* A string value checked by its kind; false (reported) when refused. */
static bool
string_ok(struct parse *p, const struct skey *k, const char *name,
	  const char *value)
{
	char *host = NULL;
	int port;

	switch (k->kind) {
	case SKEY_STR:
		if (*value != '\0')
			return true;
		perr_add(p, p->line, "%s: must not be empty", name);
		return false;
	case SKEY_LISTEN:
	case SKEY_LISTEN_OPT:
		if (*value == '\0' && k->kind == SKEY_LISTEN_OPT)
			return true;
		if (hostport_parse(value, &host, &port) == 0) {
			free(host);
			return true;
		}
		perr_add(
		    p, p->line,
		    "%s: must be HOST:PORT with a port in 1..65535%s", name,
		    k->kind == SKEY_LISTEN_OPT ? ", or empty for none" : "");
		return false;
	case SKEY_ENUM:
		return enum_ok(p, k, name, value);
	default:
		return true;
	}
}

static void
server_key(struct parse *p, const char *name, const char *value)
{
	const struct skey *k;
	char **sp;
	int64_t v;
	size_t idx;

	k = skey_lookup(name, &idx);
	if (k == NULL) {
		char clean[80];
		perr_add(
		    p, p->line, "unknown key '%s' in [server]",
		    log_sanitize(name, strlen(name), clean, sizeof(clean)));
		return;
	}
	if (p->server_key_line[idx] != 0) {
		perr_add(p, p->line, "duplicate key '%s' (first at line %d)",
			 name, p->server_key_line[idx]);
		return;
	}
	p->server_key_line[idx] = p->line;
	if (k->kind == SKEY_INT || k->kind == SKEY_INT64) {
		if (!config__parse_int64(value, k->min, k->max, &v)) {
			perr_add(p, p->line,
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
			perr_add(p, p->line, "%s: must be yes or no", name);
			return;
		}
		*(bool *)(void *)((char *)p->cfg + k->off) = b;
		return;
	}
	if (!string_ok(p, k, name, value))
		return;
	sp = (char **)(void *)((char *)p->cfg + k->off);
	free(*sp);
	/* An empty optional string means unset; an empty listen, none. */
	*sp = k->kind == SKEY_STR_OPT && *value == '\0' ? NULL : xstrdup(value);
}

static void
provider_key(struct parse *p, const char *name, const char *value)
{
	struct provider_config *pc = &p->cfg->providers[p->cur_provider];
	const struct config_kv *kv;
	char clean[80];
	size_t i;

	if (*name == '\0') {
		perr_add(p, p->line, "empty key name");
		return;
	}
	for (i = 0; i < pc->nkv; i++) {
		kv = &pc->kv[i];
		if (strcmp(kv->key, name) != 0)
			continue;
		perr_add(
		    p, p->line,
		    "duplicate key '%s' in [provider.%s] (first at line %d)",
		    log_sanitize(name, strlen(name), clean, sizeof(clean)),
		    pc->name, kv->line);
		return;
	}
	config__kv_add(pc, name, value, p->line);
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;

	(void)section; /* the reader tracked it, with its line */
	if (p->long_value != NULL)
		value = p->long_value; /* long_line() kept it */
	if (value == NULL)
		value = "";
	switch (p->section) {
	case SECTION_NONE:
		perr_add(p, p->line, "key '%s' outside of any section", name);
		break;
	case SECTION_SERVER:
		server_key(p, name, value);
		break;
	case SECTION_PROVIDER:
		provider_key(p, name, value);
		break;
	case SECTION_IGNORED:
		break;
	}
	return 1;
}

/* The line of key, or of the [server] header when key was not set. */
static int
key_line(const struct parse *p, const char *key)
{
	size_t i = 0;

	if (skey_lookup(key, &i) == NULL)
		fatalx("config: no [server] key %s", key);
	return p->server_key_line[i] != 0 ? p->server_key_line[i]
					  : p->server_line;
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
limits_finish(struct parse *p)
{
	struct config *cfg = p->cfg;
	size_t bi = 0;

	(void)skey_lookup("max_in_flight_bytes", &bi);
	if (p->server_key_line[bi] == 0)
		cfg->max_in_flight_bytes =
		    cfg->max_message_bytes > CONFIG_IN_FLIGHT_BYTES_DEFAULT
			? cfg->max_message_bytes
			: CONFIG_IN_FLIGHT_BYTES_DEFAULT;
	else if (cfg->max_in_flight_bytes < cfg->max_message_bytes)
		perr_add(p, p->server_key_line[bi],
			 "max_in_flight_bytes: must be at least "
			 "max_message_bytes (%lld)",
			 (long long)cfg->max_message_bytes);

	/* One client's share of the event streams: the default follows a
	 * smaller events_max_clients down, a value set must fit in it. */
	(void)skey_lookup("events_max_client_streams", &bi);
	if (p->server_key_line[bi] == 0) {
		if (cfg->events_max_client_streams > cfg->events_max_clients)
			cfg->events_max_client_streams =
			    cfg->events_max_clients;
	} else if (cfg->events_max_client_streams > cfg->events_max_clients)
		perr_add(p, p->server_key_line[bi],
			 "events_max_client_streams: must be at most "
			 "events_max_clients (%d)",
			 cfg->events_max_clients);

	if (strcmp(cfg->store, "sqlite") == 0 &&
	    cfg->max_message_bytes > STORE_SQLITE_MESSAGE_MAX)
		perr_add(p, key_line(p, "max_message_bytes"),
			 "max_message_bytes: the sqlite store holds messages "
			 "of at most %d bytes",
			 STORE_SQLITE_MESSAGE_MAX);
}

/*
 * The SMTP keys that go together: a certificate needs its key and the
 * other way round, and implicit TLS needs both.
 */
static void
smtp_finish(struct parse *p)
{
	const struct config *cfg = p->cfg;
	bool cert = cfg->smtp_tls_cert_file != NULL,
	     key = cfg->smtp_tls_key_file != NULL;
	struct cidr_list *nets = NULL;
	char err[256];
	size_t bi = 0;

	if (cert != key)
		perr_add(p,
			 key_line(p, cert ? "smtp_tls_cert_file"
					  : "smtp_tls_key_file"),
			 "%s: needs %s too",
			 cert ? "smtp_tls_cert_file" : "smtp_tls_key_file",
			 cert ? "smtp_tls_key_file" : "smtp_tls_cert_file");
	if (cfg->smtps_listen != NULL && *cfg->smtps_listen != '\0' && !cert)
		perr_add(p, key_line(p, "smtps_listen"),
			 "smtps_listen: needs smtp_tls_cert_file and "
			 "smtp_tls_key_file");
	if (cidr_list_parse(cfg->smtp_trusted_networks, &nets, err,
			    sizeof(err)) != 0)
		perr_add(p, key_line(p, "smtp_trusted_networks"),
			 "smtp_trusted_networks: %s", err);
	cidr_list_free(nets);
	/* The budget takes at least one message (unset: grown to one). */
	(void)skey_lookup("smtp_data_budget_bytes", &bi);
	if (p->server_key_line[bi] == 0 &&
	    p->cfg->smtp_data_budget_bytes < p->cfg->max_message_bytes)
		p->cfg->smtp_data_budget_bytes = p->cfg->max_message_bytes;
	else if (p->cfg->smtp_data_budget_bytes < p->cfg->max_message_bytes)
		perr_add(p, p->server_key_line[bi],
			 "smtp_data_budget_bytes: must be at least "
			 "max_message_bytes (%lld)",
			 (long long)p->cfg->max_message_bytes);
}

/*
 * A server secret file: DATA_DIR/name when not set (made at first start),
 * else its env: reference checked.
 */
static void
secret_file_finish(struct parse *p, char **file, const char *key,
		   const char *name)
{
	if (*file == NULL)
		*file = xasprintf("%s/%s", p->cfg->data_dir, name);
	else if (strncmp(*file, "env:", 4) == 0 &&
		 !config__env_ref_valid(*file))
		perr_add(
		    p, key_line(p, key),
		    "%s: env: must name a variable ([A-Za-z_][A-Za-z0-9_]*)",
		    key);
}

/* webhook_url's form, and its secret's default beside the agent's. */
static void
webhook_finish(struct parse *p)
{
	struct config *cfg = p->cfg;

	if (cfg->webhook_url == NULL)
		return;
	/* The message never repeats the URL: it may carry a token. */
	if (!config_webhook_url_ok(cfg->webhook_url))
		perr_add(p, key_line(p, "webhook_url"),
			 "webhook_url: must be http:// or https:// and a host, "
			 "printable with no spaces and no user@ part, at most "
			 "2048 bytes");
	secret_file_finish(p, &cfg->webhook_secret_file, "webhook_secret_file",
			   "webhook.secret");
}

/* mailgun_domains: see config__domains_check(). */
static void
mailgun_finish(struct parse *p)
{
	char bad[80];
	int rc;

	if (p->cfg->mailgun_domains == NULL)
		return;
	rc = config__domains_check(p->cfg->mailgun_domains, bad, sizeof(bad));
	if (rc == -ENOENT)
		perr_add(p, key_line(p, "mailgun_domains"),
			 "mailgun_domains: names no domain (leave it out to "
			 "take any)");
	else if (rc != 0)
		perr_add(p, key_line(p, "mailgun_domains"),
			 "mailgun_domains: '%s' is not a domain (labels of "
			 "A-Z a-z 0-9 -, separated by commas or spaces)",
			 bad);
}

/* Cross-key checks and defaults that depend on other keys. */
static void
server_finish(struct parse *p)
{
	struct config *cfg = p->cfg;
	size_t ti = 0, ii = 0, bi = 0, mi = 0;
	int line;

	(void)skey_lookup("heartbeat_timeout_ms", &ti);
	(void)skey_lookup("heartbeat_interval_ms", &ii);
	(void)skey_lookup("retry_base_ms", &bi);
	(void)skey_lookup("retry_max_ms", &mi);
	if (cfg->heartbeat_timeout_ms <= cfg->heartbeat_interval_ms) {
		line = p->server_key_line[ti] ? p->server_key_line[ti]
					      : p->server_key_line[ii];
		perr_add(p, line,
			 "heartbeat_timeout_ms: must be greater than "
			 "heartbeat_interval_ms (%d)",
			 cfg->heartbeat_interval_ms);
	}
	if (cfg->retry_max_ms < cfg->retry_base_ms) {
		line = p->server_key_line[mi] ? p->server_key_line[mi]
					      : p->server_key_line[bi];
		perr_add(p, line,
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
	cfg->key_line = xcalloc(NSERVER_KEYS, sizeof(*cfg->key_line));
	memcpy(cfg->key_line, p->server_key_line, sizeof(p->server_key_line));
}

int
config_line(const struct config *cfg, const char *key)
{
	size_t i = 0;

	if (cfg->key_line == NULL || skey_lookup(key, &i) == NULL)
		return 0;
	return cfg->key_line[i];
}

static struct config *
config_defaults(void)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));

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

void
config__report_move(struct config_report *r, struct config_errors *errs)
{
	size_t i;

	/*
	 * qsort is not stable, and errors of one line must keep their
	 * order: an insertion sort is stable and the lists are short (at
	 * most CONFIG_MAX_ERRORS).
	 */
	for (i = 1; i < r->nerrs; i++) {
		struct config_perr tmp = r->errs[i];
		size_t j = i;
		while (j > 0 && r->errs[j - 1].line > tmp.line) {
			r->errs[j] = r->errs[j - 1];
			j--;
		}
		r->errs[j] = tmp;
	}
	for (i = 0; i < r->nerrs; i++) {
		if (errs == NULL) {
			free(r->errs[i].msg);
			continue;
		}
		errs->msg =
		    xreallocarray(errs->msg, errs->n + 1, sizeof(*errs->msg));
		errs->msg[errs->n++] = r->errs[i].msg;
	}
	if (r->too_many && errs != NULL) {
		errs->msg =
		    xreallocarray(errs->msg, errs->n + 1, sizeof(*errs->msg));
		errs->msg[errs->n++] =
		    xasprintf("%s: too many errors, stopped reporting after "
			      "%d",
			      r->file, CONFIG_MAX_ERRORS);
	}
	free(r->errs);
	r->errs = NULL;
	r->nerrs = 0;
	r->too_many = false;
}

/* Parses len bytes of text named file; the core of every loader. */
static int
config_parse(const char *text, size_t len, const char *file,
	     struct config **out, struct config_errors *errs)
{
	struct parse p;
	const char *nul;
	size_t i;
	int rc, line;

	*out = NULL;
	memset(&p, 0, sizeof(p));
	p.file = file;
	p.rep.file = file;
	p.text = text;
	p.len = len;
	p.cfg = config_defaults();
	p.section = SECTION_NONE;

	nul = memchr(text, '\0', len);
	if (nul != NULL) {
		line = 1;
		for (i = 0; i < (size_t)(nul - text); i++)
			if (text[i] == '\n')
				line++;
		perr_add(&p, line, "NUL byte in the file");
		p.len = (size_t)(nul - text);
	}
	rc = ini_parse_stream(reader, &p, handler, &p);
	free(p.long_value);
	p.long_value = NULL;
	if (rc < 0) {
		perr_add(&p, 0, "cannot parse: out of memory");
	} else if (rc > 0) {
		/* inih saw an error we missed: report it plainly. */
		bool seen = false;
		for (i = 0; i < p.rep.nerrs; i++)
			if (p.rep.errs[i].line == rc)
				seen = true;
		if (!seen)
			perr_add(&p, rc, "syntax error");
	}
	server_finish(&p);
	config__providers_finish(p.cfg, &p.rep);
	if (p.rep.nerrs > 0 || p.rep.too_many) {
		config__report_move(&p.rep, errs);
		config_free(p.cfg);
		return -EINVAL;
	}
	p.cfg->path = xstrdup_or_null(file);
	*out = p.cfg;
	return 0;
}

int
config_load_string(const char *text, const char *path, struct config **out,
		   struct config_errors *errs)
{
	return config_parse(text, strlen(text), path != NULL ? path : "-", out,
			    errs);
}

int
config_load(const char *path, struct config **out, struct config_errors *errs)
{
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	rc = file_read_all(path, CONFIG_MAX_FILE, &text, &len);
	if (rc != 0) {
		if (errs != NULL) {
			errs->msg = xreallocarray(errs->msg, errs->n + 1,
						  sizeof(*errs->msg));
			errs->msg[errs->n++] = xasprintf(
			    "%s: cannot read: %s", path,
			    rc == -EFBIG ? "larger than 1 MiB" : strerror(-rc));
		}
		return rc;
	}
	rc = config_parse(text, len, path, out, errs);
	free(text);
	return rc;
}

static const char embedded_default[] = "[server]\n"
				       "\n"
				       "[provider.sandbox-a]\n"
				       "type = maildir\n"
				       "spawn = yes\n"
				       "\n"
				       "[provider.sandbox-b]\n"
				       "type = maildir\n"
				       "spawn = yes\n";

int
config_load_default(struct config **out)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg;
	size_t i, j;
	int rc;

	rc = config_load_string(embedded_default, "(embedded default)", &cfg,
				&errs);
	if (rc != 0) {
		for (i = 0; i < errs.n; i++)
			log_warnx("config %s", errs.msg[i]);
		config_errors_cleanup(&errs);
		*out = NULL;
		return rc;
	}
	free(cfg->path);
	cfg->path = NULL;
	cfg->server_line = 0;
	memset(cfg->key_line, 0, NSERVER_KEYS * sizeof(*cfg->key_line));
	for (i = 0; i < cfg->nproviders; i++) {
		cfg->providers[i].line = 0;
		for (j = 0; j < cfg->providers[i].nkv; j++)
			cfg->providers[i].kv[j].line = 0;
	}
	*out = cfg;
	return 0;
}

void
config_free(struct config *cfg)
{
	size_t i, j;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->nproviders; i++) {
		struct provider_config *pc = &cfg->providers[i];
		for (j = 0; j < pc->nkv; j++) {
			free(pc->kv[j].key);
			free(pc->kv[j].value);
		}
		free(pc->kv);
		free(pc->name);
		free(pc->type);
	}
	free(cfg->providers);
	free(cfg->path);
	free(cfg->data_dir);
	free(cfg->http_listen);
	free(cfg->smtp_listen);
	free(cfg->smtps_listen);
	free(cfg->smtp_tls_cert_file);
	free(cfg->smtp_tls_key_file);
	free(cfg->smtp_users_file);
	free(cfg->smtp_trusted_networks);
	free(cfg->agent_listen);
	free(cfg->agent_secret_file);
	free(cfg->agent_tls);
	free(cfg->api_keys_file);
	free(cfg->mailgun_domains);
	free(cfg->log_file);
	free(cfg->scheduler);
	free(cfg->log_format);
	free(cfg->store);
	free(cfg->webhook_url);
	free(cfg->webhook_secret_file);
	free(cfg->webhook_tls_ca_file);
	free(cfg->key_line);
	free(cfg);
}

void
config_errors_cleanup(struct config_errors *errs)
{
	size_t i;

	if (errs == NULL)
		return;
	for (i = 0; i < errs->n; i++)
		free(errs->msg[i]);
	free(errs->msg);
	errs->msg = NULL;
	errs->n = 0;
}
