/*
 * The configuration reader.  inih does the INI syntax; this file reads
 * the text, its sections and their keys' lines; the [server] keys (their
 * table, types, ranges, defaults and the checks that span keys) are in
 * config_server.c, provider sections are checked against the registered
 * provider types in config_provider.c, and what the text points at (files,
 * environment) in config_check.c.  Debian's inih has no line numbers in its
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
#include "common/log.h"
#include "common/util.h"

#include <ini.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX_FILE (1024 * 1024)

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
	struct config_server_parse srv; /* [server] (config_server.c) */
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
		if (p->srv.server_line != 0) {
			perr_add(
			    p, p->line,
			    "duplicate section [server] (first at line %d)",
			    p->srv.server_line);
			return;
		}
		p->srv.server_line = p->line;
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
		config__server_key(&p->srv, p->line, name, value);
		break;
	case SECTION_PROVIDER:
		provider_key(p, name, value);
		break;
	case SECTION_IGNORED:
		break;
	}
	return 1;
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
	p.cfg = config__server_begin(&p.srv, &p.rep);
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
	config__server_finish(&p.srv);
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
	free(cfg->key_line); /* config_line() answers 0 without it */
	cfg->key_line = NULL;
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
