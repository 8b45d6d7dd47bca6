/*
 * The configuration reader.  inih does the INI syntax; everything else is
 * here: which sections and keys exist, their types and ranges, defaults,
 * and per-provider-type key sets.  Debian's inih has no line numbers in its
 * handler, so the text is fed through our own reader (ini_parse_stream)
 * that counts the lines it hands out; the handler runs right after its line
 * was handed out, so the count is the key's line.  The reader also sees the
 * section headers (inih tells the handler nothing about an empty section),
 * strips leading blanks (inih would take an indented line as the
 * continuation of the previous value) and catches syntax errors itself so
 * that all of them are reported, not only inih's first.
 *
 * Nothing here is fatal: every problem becomes a "FILE:LINE: message" in
 * the collected errors (sorted by line), and the load fails with -EINVAL
 * once the whole file has been read.  Provider sections are checked after
 * the whole file, because "type" may come after the keys it governs.
 * Secrets are only referenced here; config_secret_read() resolves them and
 * never puts a secret into an error message.
 */
#include "common/config.h"
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
#define CONFIG_MAX_ERRORS 100
#define SECRET_MAX_FILE (64 * 1024)
#define AGENT_SECRET_MIN 16
#define AGENT_SECRET_RAW 32

/* How a [server] key's value is parsed and where it goes. */
enum skey_kind {
	SKEY_STR,        /* non-empty string */
	SKEY_STR_OPT,    /* string; empty means unset (NULL) */
	SKEY_LISTEN,     /* host:port */
	SKEY_LISTEN_OPT, /* host:port or empty for none */
	SKEY_SCHED,      /* a scheduler name */
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

#define OFF(f) offsetof(struct config, f)
static const struct skey server_keys[] = {
    {"data_dir", SKEY_STR, OFF(data_dir), 0, 0, NULL},
    {"http_listen", SKEY_LISTEN_OPT, OFF(http_listen), 0, 0, NULL},
    {"smtp_listen", SKEY_LISTEN_OPT, OFF(smtp_listen), 0, 0, NULL},
    {"agent_listen", SKEY_LISTEN, OFF(agent_listen), 0, 0, NULL},
    {"agent_secret_file", SKEY_STR, OFF(agent_secret_file), 0, 0, NULL},
    {"api_keys_file", SKEY_STR_OPT, OFF(api_keys_file), 0, 0, NULL},
    {"log_file", SKEY_STR_OPT, OFF(log_file), 0, 0, NULL},
    {"scheduler", SKEY_SCHED, OFF(scheduler), 0, 0, NULL},
    {"heartbeat_interval_ms", SKEY_INT, OFF(heartbeat_interval_ms), 10, 60000,
     NULL},
    {"heartbeat_timeout_ms", SKEY_INT, OFF(heartbeat_timeout_ms), 11, INT_MAX,
     NULL},
    {"max_attempts", SKEY_INT, OFF(max_attempts), 1, 1000, NULL},
    {"retry_base_ms", SKEY_INT, OFF(retry_base_ms), 1, INT_MAX, NULL},
    {"retry_max_ms", SKEY_INT, OFF(retry_max_ms), 1, INT_MAX, NULL},
    {"message_ttl_s", SKEY_INT64, OFF(message_ttl_s), 1, 315360000, NULL},
    {"max_message_bytes", SKEY_INT64, OFF(max_message_bytes), 1024, 1073741824,
     NULL},
    {"breaker_threshold", SKEY_INT, OFF(breaker_threshold), 1, 1000000, NULL},
    {"breaker_cooldown_ms", SKEY_INT, OFF(breaker_cooldown_ms), 1, INT_MAX,
     NULL},
    {"job_timeout_s", SKEY_INT, OFF(job_timeout_s), 1, 604800, NULL},
    {"retention_days", SKEY_INT, OFF(retention_days), 1, 36500, NULL},
    {"log_format", SKEY_ENUM, OFF(log_format), 0, 0, log_formats},
    {"store", SKEY_ENUM, OFF(store), 0, 0, store_backends},
};
#undef OFF
#define NSERVER_KEYS (sizeof(server_keys) / sizeof(server_keys[0]))

static const char *const schedulers[] = {
    "random", "round_robin", "weighted", "priority", "least_outstanding",
};

/* The keys of each provider type (SPEC.md "Per type") and which are required.
 */
struct ptype {
	const char *name;
	const char *keys[8];
	const char *required[4];
};

static const struct ptype ptypes[] = {
    {"maildir", {"path"}, {NULL}},
    {"smtp",
     {"host", "port", "tls", "username", "password_file", "helo"},
     {"host"}},
    {"mailgun",
     {"api_key_file", "domain", "base_url"},
     {"api_key_file", "domain"}},
    {"sendgrid", {"api_key_file", "base_url"}, {"api_key_file"}},
    {"ses",
     {"region", "access_key_id", "secret_access_key_file", "base_url"},
     {"region", "access_key_id", "secret_access_key_file"}},
    {"postmark",
     {"server_token_file", "message_stream", "base_url"},
     {"server_token_file"}},
    {"sparkpost", {"api_key_file", "base_url"}, {"api_key_file"}},
    {"resend", {"api_key_file", "base_url"}, {"api_key_file"}},
    {"brevo", {"api_key_file", "base_url"}, {"api_key_file"}},
    {"mailjet",
     {"api_key_file", "secret_key_file", "base_url"},
     {"api_key_file", "secret_key_file"}},
};

static const char *const generic_keys[] = {
    "type",          "spawn",      "weight",       "priority",
    "max_in_flight", "rate_per_s", "slow_start_s", "overflow",
};

/* One error before sorting: the line orders them. */
struct perr {
	int line;
	char *msg;
};

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
	struct perr *errs;
	size_t nerrs;
	bool too_many;
};

static void perr_add(struct parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
perr_add(struct parse *p, int line, const char *fmt, ...)
{
	va_list ap;
	char buf[512];

	if (p->nerrs >= CONFIG_MAX_ERRORS) {
		p->too_many = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	p->errs = xreallocarray(p->errs, p->nerrs + 1, sizeof(*p->errs));
	p->errs[p->nerrs].line = line;
	if (line > 0)
		p->errs[p->nerrs].msg =
		    xasprintf("%s:%d: %s", p->file, line, buf);
	else
		p->errs[p->nerrs].msg = xasprintf("%s: %s", p->file, buf);
	p->nerrs++;
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
static bool
parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (*s == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool
parse_bool(const char *s, bool *out)
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

static const struct ptype *
ptype_lookup(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(ptypes) / sizeof(ptypes[0]); i++)
		if (strcmp(ptypes[i].name, name) == 0)
			return &ptypes[i];
	return NULL;
}

static bool
ptype_has_key(const struct ptype *pt, const char *key)
{
	size_t i;

	for (i = 0; i < sizeof(pt->keys) / sizeof(pt->keys[0]); i++)
		if (pt->keys[i] != NULL && strcmp(pt->keys[i], key) == 0)
			return true;
	return false;
}

static bool
is_generic_key(const char *key)
{
	size_t i;

	for (i = 0; i < sizeof(generic_keys) / sizeof(generic_keys[0]); i++)
		if (strcmp(generic_keys[i], key) == 0)
			return true;
	return false;
}

static void
kv_add(struct provider_config *pc, const char *key, const char *value, int line)
{
	pc->kv = xreallocarray(pc->kv, pc->nkv + 1, sizeof(*pc->kv));
	pc->kv[pc->nkv].key = xstrdup(key);
	pc->kv[pc->nkv].value = xstrdup(value);
	pc->kv[pc->nkv].line = line;
	pc->nkv++;
}

static const struct config_kv *
kv_find(const struct provider_config *pc, const char *key)
{
	size_t i;

	for (i = 0; i < pc->nkv; i++)
		if (strcmp(pc->kv[i].key, key) == 0)
			return &pc->kv[i];
	return NULL;
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
 * inih's reader: hands out one line per call, like fgets, and counts them.
 * Leading blanks are dropped so that an indented key stays a key (inih
 * would append it to the previous value).  A line longer than inih's
 * buffer is reported and handed out as a blank line, so that its tail is
 * not taken for a line of its own.
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
	if (linelen + 2 > (size_t)num) {
		perr_add(p, p->line, "line too long (at most %d characters)",
			 num - 2);
		str[0] = '\n';
		str[1] = '\0';
		return str;
	}
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

static void
server_key(struct parse *p, const char *name, const char *value)
{
	const struct skey *k;
	char **sp, *host = NULL;
	int64_t v;
	size_t idx, i;
	int port;
	bool ok;

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
	sp = (char **)(void *)((char *)p->cfg + k->off);
	switch (k->kind) {
	case SKEY_STR:
		if (*value == '\0') {
			perr_add(p, p->line, "%s: must not be empty", name);
			return;
		}
		free(*sp);
		*sp = xstrdup(value);
		break;
	case SKEY_STR_OPT:
		free(*sp);
		*sp = *value == '\0' ? NULL : xstrdup(value);
		break;
	case SKEY_LISTEN:
	case SKEY_LISTEN_OPT:
		if (*value == '\0' && k->kind == SKEY_LISTEN_OPT) {
			free(*sp);
			*sp = xstrdup("");
			break;
		}
		if (hostport_parse(value, &host, &port) != 0) {
			perr_add(
			    p, p->line,
			    "%s: must be HOST:PORT with a port in 1..65535%s",
			    name,
			    k->kind == SKEY_LISTEN_OPT ? ", or empty for none"
						       : "");
			return;
		}
		free(host);
		free(*sp);
		*sp = xstrdup(value);
		break;
	case SKEY_SCHED:
		ok = false;
		for (i = 0; i < sizeof(schedulers) / sizeof(schedulers[0]); i++)
			if (strcmp(schedulers[i], value) == 0)
				ok = true;
		if (!ok) {
			perr_add(
			    p, p->line,
			    "scheduler: must be one of random, round_robin, "
			    "weighted, priority, least_outstanding");
			return;
		}
		free(*sp);
		*sp = xstrdup(value);
		break;
	case SKEY_ENUM:
		ok = false;
		for (i = 0; k->words[i] != NULL; i++)
			if (strcmp(k->words[i], value) == 0)
				ok = true;
		if (!ok) {
			char list[128] = "";
			size_t off = 0;
			for (i = 0; k->words[i] != NULL && off < sizeof(list);
			     i++) {
				int w = snprintf(list + off, sizeof(list) - off,
						 "%s%s", i > 0 ? ", " : "",
						 k->words[i]);
				if (w < 0)
					break;
				off += (size_t)w;
			}
			perr_add(p, p->line, "%s: must be one of %s", name,
				 list);
			return;
		}
		free(*sp);
		*sp = xstrdup(value);
		break;
	case SKEY_INT:
	case SKEY_INT64:
		if (!parse_int64(value, k->min, k->max, &v)) {
			perr_add(p, p->line,
				 "%s: must be an integer between %lld and %lld",
				 name, (long long)k->min, (long long)k->max);
			return;
		}
		if (k->kind == SKEY_INT)
			*(int *)(void *)((char *)p->cfg + k->off) = (int)v;
		else
			*(int64_t *)(void *)((char *)p->cfg + k->off) = v;
		break;
	}
}

static void
provider_key(struct parse *p, const char *name, const char *value)
{
	struct provider_config *pc = &p->cfg->providers[p->cur_provider];
	const struct config_kv *kv;
	char clean[80];

	if (*name == '\0') {
		perr_add(p, p->line, "empty key name");
		return;
	}
	kv = kv_find(pc, name);
	if (kv != NULL) {
		perr_add(
		    p, p->line,
		    "duplicate key '%s' in [provider.%s] (first at line %d)",
		    log_sanitize(name, strlen(name), clean, sizeof(clean)),
		    pc->name, kv->line);
		return;
	}
	kv_add(pc, name, value, p->line);
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;

	(void)section; /* the reader tracked it, with its line */
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

static void
provider_int(struct parse *p, struct provider_config *pc,
	     const struct config_kv *kv, int64_t min, int64_t max, int *out)
{
	int64_t v;

	if (!parse_int64(kv->value, min, max, &v)) {
		perr_add(p, kv->line,
			 "%s: must be an integer between %lld and %lld",
			 kv->key, (long long)min, (long long)max);
		return;
	}
	*out = (int)v;
}

/* Checks one provider section once the whole file has been read. */
static void
provider_finish(struct parse *p, struct provider_config *pc)
{
	const struct ptype *pt = NULL;
	const struct config_kv *kv;
	const char *req;
	char clean[80];
	int64_t v;
	size_t i;

	kv = kv_find(pc, "type");
	if (kv == NULL || kv->value[0] == '\0') {
		perr_add(p, kv != NULL ? kv->line : pc->line,
			 "[provider.%s]: missing required key 'type'",
			 pc->name);
	} else {
		pt = ptype_lookup(kv->value);
		if (pt == NULL)
			perr_add(p, kv->line,
				 "type: must be one of maildir, smtp, mailgun, "
				 "sendgrid, ses, postmark, sparkpost, resend, "
				 "brevo, mailjet");
		else
			pc->type = xstrdup(pt->name);
	}
	for (i = 0; i < pc->nkv; i++) {
		kv = &pc->kv[i];
		if (strcmp(kv->key, "spawn") == 0) {
			if (!parse_bool(kv->value, &pc->spawn))
				perr_add(
				    p, kv->line,
				    "spawn: must be yes, no, true, false, 1 "
				    "or 0");
		} else if (strcmp(kv->key, "weight") == 0) {
			provider_int(p, pc, kv, 1, 1000, &pc->weight);
		} else if (strcmp(kv->key, "priority") == 0) {
			provider_int(p, pc, kv, 0, 1000000, &pc->priority);
		} else if (strcmp(kv->key, "max_in_flight") == 0) {
			provider_int(p, pc, kv, 1, 100000, &pc->max_in_flight);
		} else if (strcmp(kv->key, "rate_per_s") == 0) {
			provider_int(p, pc, kv, 0, INT_MAX, &pc->rate_per_s);
		} else if (strcmp(kv->key, "slow_start_s") == 0) {
			provider_int(p, pc, kv, 0, INT_MAX, &pc->slow_start_s);
		} else if (strcmp(kv->key, "overflow") == 0) {
			bool b;
			if (!parse_bool(kv->value, &b))
				perr_add(p, kv->line,
					 "overflow: must be yes, no, true, "
					 "false, 1 or 0");
			else
				pc->overflow = b ? 1 : 0;
		} else if (is_generic_key(kv->key)) {
			continue; /* type, done above */
		} else if (pt != NULL && !ptype_has_key(pt, kv->key)) {
			perr_add(
			    p, kv->line,
			    "unknown key '%s' for type %s in [provider.%s]",
			    log_sanitize(kv->key, strlen(kv->key), clean,
					 sizeof(clean)),
			    pt->name, pc->name);
		}
	}
	if (pt == NULL)
		return;
	for (i = 0; i < sizeof(pt->required) / sizeof(pt->required[0]); i++) {
		req = pt->required[i];
		if (req == NULL)
			break;
		kv = kv_find(pc, req);
		if (kv == NULL)
			perr_add(p, pc->line,
				 "[provider.%s]: type %s needs key '%s'",
				 pc->name, pt->name, req);
		else if (kv->value[0] == '\0')
			perr_add(p, kv->line, "%s: must not be empty", req);
	}
	if (strcmp(pt->name, "smtp") == 0) {
		kv = kv_find(pc, "port");
		if (kv != NULL && !parse_int64(kv->value, 1, 65535, &v))
			perr_add(
			    p, kv->line,
			    "port: must be an integer between 1 and 65535");
		kv = kv_find(pc, "tls");
		if (kv != NULL && strcmp(kv->value, "none") != 0 &&
		    strcmp(kv->value, "starttls") != 0 &&
		    strcmp(kv->value, "implicit") != 0)
			perr_add(p, kv->line,
				 "tls: must be none, starttls or implicit");
	}
	if (strcmp(pt->name, "maildir") == 0) {
		kv = kv_find(pc, "path");
		if (kv == NULL) {
			char *path = xasprintf("%s/maildir/%s",
					       p->cfg->data_dir, pc->name);
			kv_add(pc, "path", path, pc->line);
			free(path);
		} else if (kv->value[0] == '\0') {
			perr_add(p, kv->line, "path: must not be empty");
		}
	}
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
	if (cfg->agent_secret_file == NULL)
		cfg->agent_secret_file =
		    xasprintf("%s/agent.secret", cfg->data_dir);
}

static struct config *
config_defaults(void)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));

	cfg->data_dir = xstrdup("./shivneri-data");
	cfg->http_listen = xstrdup("127.0.0.1:8025");
	cfg->smtp_listen = xstrdup("127.0.0.1:2525");
	cfg->agent_listen = xstrdup("127.0.0.1:8026");
	cfg->scheduler = xstrdup("round_robin");
	cfg->heartbeat_interval_ms = 1000;
	cfg->heartbeat_timeout_ms = 3000;
	cfg->max_attempts = 10;
	cfg->retry_base_ms = 1000;
	cfg->retry_max_ms = 300000;
	cfg->message_ttl_s = 86400;
	cfg->max_message_bytes = 26214400;
	cfg->breaker_threshold = 5;
	cfg->breaker_cooldown_ms = 10000;
	cfg->job_timeout_s = 300;
	cfg->retention_days = 30;
	cfg->log_format = xstrdup("text");
	cfg->store = xstrdup("sqlite");
	return cfg;
}

/* Moves the collected errors, sorted by line, into errs (or frees them). */
static void
perr_move(struct parse *p, struct config_errors *errs)
{
	size_t i;

	/*
	 * qsort is not stable, and errors of one line must keep their
	 * order: an insertion sort is stable and the lists are short (at
	 * most CONFIG_MAX_ERRORS).
	 */
	for (i = 1; i < p->nerrs; i++) {
		struct perr tmp = p->errs[i];
		size_t j = i;
		while (j > 0 && p->errs[j - 1].line > tmp.line) {
			p->errs[j] = p->errs[j - 1];
			j--;
		}
		p->errs[j] = tmp;
	}
	for (i = 0; i < p->nerrs; i++) {
		if (errs == NULL) {
			free(p->errs[i].msg);
			continue;
		}
		errs->msg =
		    xreallocarray(errs->msg, errs->n + 1, sizeof(*errs->msg));
		errs->msg[errs->n++] = p->errs[i].msg;
	}
	if (p->too_many && errs != NULL) {
		errs->msg =
		    xreallocarray(errs->msg, errs->n + 1, sizeof(*errs->msg));
		errs->msg[errs->n++] =
		    xasprintf("%s: too many errors, stopped reporting after "
			      "%d",
			      p->file, CONFIG_MAX_ERRORS);
	}
	free(p->errs);
	p->errs = NULL;
	p->nerrs = 0;
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
	if (rc < 0) {
		perr_add(&p, 0, "cannot parse: out of memory");
	} else if (rc > 0) {
		/* inih saw an error we missed: report it plainly. */
		bool seen = false;
		for (i = 0; i < p.nerrs; i++)
			if (p.errs[i].line == rc)
				seen = true;
		if (!seen)
			perr_add(&p, rc, "syntax error");
	}
	server_finish(&p);
	for (i = 0; i < p.cfg->nproviders; i++)
		provider_finish(&p, &p.cfg->providers[i]);
	if (p.nerrs > 0 || p.too_many) {
		perr_move(&p, errs);
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
	free(cfg->agent_listen);
	free(cfg->agent_secret_file);
	free(cfg->api_keys_file);
	free(cfg->log_file);
	free(cfg->scheduler);
	free(cfg->log_format);
	free(cfg->store);
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

const struct provider_config *
config_provider(const struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->nproviders; i++)
		if (strcmp(cfg->providers[i].name, name) == 0)
			return &cfg->providers[i];
	return NULL;
}

const char *
provider_config_get(const struct provider_config *pc, const char *key)
{
	const struct config_kv *kv = kv_find(pc, key);

	return kv != NULL ? kv->value : NULL;
}

int
provider_config_line(const struct provider_config *pc, const char *key)
{
	const struct config_kv *kv = kv_find(pc, key);

	return kv != NULL ? kv->line : pc->line;
}

/* Strips one trailing "\n" or "\r\n". */
static void
strip_newline(char *s, size_t *len)
{
	if (*len > 0 && s[*len - 1] == '\n') {
		s[--*len] = '\0';
		if (*len > 0 && s[*len - 1] == '\r')
			s[--*len] = '\0';
	}
}

int
config_secret_read(const char *ref, char **out, char *err, size_t errlen)
{
	const char *v;
	char *buf = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (ref == NULL || *ref == '\0') {
		snprintf(err, errlen, "no secret given");
		return -EINVAL;
	}
	if (strncmp(ref, "env:", 4) == 0) {
		v = getenv(ref + 4);
		if (v == NULL) {
			snprintf(err, errlen,
				 "environment variable %s is not set", ref + 4);
			return -ENOENT;
		}
		if (*v == '\0') {
			snprintf(err, errlen,
				 "environment variable %s is empty", ref + 4);
			return -EINVAL;
		}
		*out = xstrdup(v);
		return 0;
	}
	rc = file_read_all(ref, SECRET_MAX_FILE, &buf, &len);
	if (rc != 0) {
		snprintf(err, errlen, "cannot read secret file %s: %s", ref,
			 rc == -EFBIG ? "larger than 64 KiB" : strerror(-rc));
		return rc;
	}
	strip_newline(buf, &len);
	if (len == 0) {
		snprintf(err, errlen, "secret file %s is empty", ref);
		free(buf);
		return -EINVAL;
	}
	if (strlen(buf) != len) {
		snprintf(err, errlen, "secret file %s contains a NUL byte",
			 ref);
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	return 0;
}

/* Makes a new agent secret at path; -EEXIST when another process won. */
static int
agent_secret_create(const char *path)
{
	uint8_t raw[AGENT_SECRET_RAW];
	char hexs[2 * AGENT_SECRET_RAW + 2];
	char *dir = NULL, *slash;
	size_t off = 0, n;
	ssize_t w;
	int fd = -1, rc;

	dir = xstrdup(path);
	slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		rc = mkdir_p(dir, 0700);
		if (rc != 0) {
			log_warnx("config agent_secret mkdir %s: %s", dir,
				  strerror(-rc));
			goto fail;
		}
	}
	rc = random_bytes(raw, sizeof(raw));
	if (rc != 0)
		goto fail;
	hex_encode(raw, sizeof(raw), hexs);
	n = strlen(hexs);
	hexs[n++] = '\n';
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1) {
		rc = -errno;
		goto fail;
	}
	while (off < n) {
		w = write(fd, hexs + off, n - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto fail_unlink;
		}
		off += (size_t)w;
	}
	if (fsync(fd) == -1) {
		rc = -errno;
		goto fail_unlink;
	}
	close(fd);
	fd = -1;
	/* Make the new name durable too. */
	if (slash != NULL) {
		if (slash == dir)
			dir[1] = '\0';
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (fd != -1) {
		(void)fsync(fd);
		close(fd);
	}
	explicit_bzero(raw, sizeof(raw));
	explicit_bzero(hexs, sizeof(hexs));
	free(dir);
	log_info("config agent_secret created file=%s", path);
	return 0;
fail_unlink:
	close(fd);
	fd = -1;
	(void)unlink(path);
fail:
	if (fd != -1)
		close(fd);
	explicit_bzero(raw, sizeof(raw));
	explicit_bzero(hexs, sizeof(hexs));
	free(dir);
	return rc;
}

int
config_agent_secret(const struct config *cfg, bool create, char **out,
		    size_t *len)
{
	const char *path = cfg->agent_secret_file;
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	int rc;

	*out = NULL;
	*len = 0;
	if (path == NULL)
		return -EINVAL;
	rc = file_read_all(path, SECRET_MAX_FILE, &buf, &n);
	if (rc == -ENOENT && create) {
		rc = agent_secret_create(path);
		if (rc != 0 && rc != -EEXIST) {
			log_warnx("config agent_secret cannot create %s: %s",
				  path, strerror(-rc));
			return rc;
		}
		rc = file_read_all(path, SECRET_MAX_FILE, &buf, &n);
	}
	if (rc != 0) {
		log_warnx("config agent_secret cannot read %s: %s", path,
			  rc == -EFBIG ? "too large" : strerror(-rc));
		return rc;
	}
	strip_newline(buf, &n);
	if (n < AGENT_SECRET_MIN) {
		log_warnx("config agent_secret %s is shorter than %d bytes",
			  path, AGENT_SECRET_MIN);
		explicit_bzero(buf, n);
		free(buf);
		return -EINVAL;
	}
	if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
		log_warnx("config agent_secret %s is readable by others "
			  "(mode %03o); chmod 600 it",
			  path, (unsigned)(st.st_mode & 0777));
	*out = buf;
	*len = n;
	return 0;
}
