/*
 * What the configuration points at, checked before anything runs:
 * secrets (a file, or "env:VARIABLE"), the API keys file, the log
 * file's folder, CA files, and listen addresses that would collide.  The
 * text was checked by config_load(); this file looks at the machine, so that
 * check-config, serve and agent give one verdict on one file in one
 * environment (config_check_runtime()).  It also reads secrets for real
 * (config_secret_read(), config_agent_secret()), and makes the agent
 * secret on first start.
 *
 * Nothing is fatal here.  A problem becomes a "FILE:LINE: key: message"
 * error naming the file or variable, never the secret's value.  The checks
 * only read: a missing agent secret file is fine for the server when its
 * folder can be made (serve makes it), and a log file is not created.  A
 * secret file (the agent secret, the API keys, a provider's *_file) that
 * other users may read or write is an error, not a warning: whoever reads
 * it can act as an agent or a client, whoever writes it chooses the secret.
 */
#include "common/config_int.h"
#include "common/log.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#define SECRET_MAX_FILE (64 * 1024)
#define AGENT_SECRET_RAW 32

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
config__domains_check(const char *list, char *bad, size_t badlen)
{
	size_t n, count = 0;

	while (*list != '\0') {
		list += strspn(list, ", \t");
		n = strcspn(list, ", \t");
		if (n == 0)
			break;
		if (!dns_name_ok(list, n)) {
			log_sanitize(list, n, bad, badlen);
			return -EINVAL;
		}
		count++;
		list += n;
	}
	return count > 0 ? 0 : -ENOENT;
}

int
config_ca_file_check(const char *path, char *err, size_t errlen)
{
	X509_STORE *st;
	int ok;

	if (config_regular_file_check(path, err, errlen) != 0)
		return -EINVAL;
	if (access(path, R_OK) != 0) {
		snprintf(err, errlen, "cannot read %s: %s", path,
			 strerror(errno));
		return -errno;
	}
	st = X509_STORE_new();
	if (st == NULL) {
		snprintf(err, errlen, "cannot check %s: out of memory", path);
		return -ENOMEM;
	}
	ok = X509_STORE_load_file(st, path);
	X509_STORE_free(st);
	ERR_clear_error();
	if (ok != 1) {
		snprintf(err, errlen, "%s: no PEM certificate in the file",
			 path);
		return -EINVAL;
	}
	return 0;
}

int
config_regular_file_check(const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) != 0 || S_ISREG(st.st_mode))
		return 0;
	snprintf(err, errlen, "cannot read %s: not a regular file (%s)", path,
		 S_ISDIR(st.st_mode) ? "a folder"
				     : "a FIFO or device would block");
	return -EINVAL;
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
	rc = config_regular_file_check(ref, err, errlen);
	if (rc != 0)
		return rc;
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

/*
 * A secret file must be a regular file (else -EINVAL) and the owner's
 * alone: 0, or -EPERM with a message in err.  An env: secret has no mode; a
 * file stat() cannot see is left to the read that fails on it.
 */
static int
secret_mode_check(const char *ref, char *err, size_t errlen)
{
	struct stat st;

	if (strncmp(ref, "env:", 4) == 0)
		return 0;
	if (config_regular_file_check(ref, err, errlen) != 0)
		return -EINVAL;
	if (stat(ref, &st) != 0 || (st.st_mode & 077) == 0)
		return 0;
	snprintf(err, errlen,
		 "%s may be read or changed by other users (mode %03o): "
		 "chmod 600 it",
		 ref, (unsigned)(st.st_mode & 0777));
	return -EPERM;
}

int
config_secret_mode_check(const char *path, char *err, size_t errlen)
{
	return secret_mode_check(path, err, errlen);
}

/*
 * Makes a new secret at path (the agent's or the webhooks'; what names it
 * in log lines); -EEXIST when another process won.
 */
static int
agent_secret_create(const char *path, const char *what)
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
			log_warnx("config %s mkdir %s: %s", what, dir,
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
	log_info("config %s created file=%s", what, path);
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

bool
config__env_ref_valid(const char *ref)
{
	const char *v;

	if (strncmp(ref, "env:", 4) != 0)
		return false;
	v = ref + 4;
	if (!((*v >= 'A' && *v <= 'Z') || (*v >= 'a' && *v <= 'z') ||
	      *v == '_'))
		return false;
	for (v++; *v != '\0'; v++)
		if (!((*v >= 'A' && *v <= 'Z') || (*v >= 'a' && *v <= 'z') ||
		      (*v >= '0' && *v <= '9') || *v == '_'))
			return false;
	return true;
}

/*
 * Reads the agent secret named by ref (a file or env:VAR) without making
 * it: 0 with a new buffer, or -errno with a message in err (never the
 * secret).  A secret shorter than CONFIG_AGENT_SECRET_MIN is -EINVAL.
 */
static int
agent_secret_load(const char *ref, char **out, size_t *len, char *err,
		  size_t errlen)
{
	char *buf = NULL;
	size_t n = 0;
	int rc;

	*out = NULL;
	*len = 0;
	if (strncmp(ref, "env:", 4) == 0) {
		rc = config_secret_read(ref, &buf, err, errlen);
		if (rc != 0)
			return rc;
		n = strlen(buf);
	} else {
		rc = config_regular_file_check(ref, err, errlen);
		if (rc != 0)
			return rc;
		rc = file_read_all(ref, SECRET_MAX_FILE, &buf, &n);
		if (rc != 0) {
			snprintf(err, errlen, "cannot read %s: %s", ref,
				 rc == -EFBIG ? "larger than 64 KiB"
					      : strerror(-rc));
			return rc;
		}
		strip_newline(buf, &n);
	}
	if (n < CONFIG_AGENT_SECRET_MIN) {
		snprintf(err, errlen,
			 "the secret in %s is shorter than %d bytes", ref,
			 CONFIG_AGENT_SECRET_MIN);
		explicit_bzero(buf, n);
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* The secret named by ref, made first when missing and create allows. */
static int
secret_get(const char *ref, const char *what, bool create, char **out,
	   size_t *len)
{
	char err[512];
	int rc;

	*out = NULL;
	*len = 0;
	if (ref == NULL)
		return -EINVAL;
	rc = agent_secret_load(ref, out, len, err, sizeof(err));
	/* An env: secret is never written anywhere. */
	if (rc == -ENOENT && create && strncmp(ref, "env:", 4) != 0) {
		rc = agent_secret_create(ref, what);
		if (rc != 0 && rc != -EEXIST) {
			log_warnx("config %s cannot create %s: %s", what, ref,
				  strerror(-rc));
			return rc;
		}
		rc = agent_secret_load(ref, out, len, err, sizeof(err));
	}
	if (rc != 0) {
		log_warnx("config %s_file: %s", what, err);
		return rc;
	}
	/* Its mode was checked by config_check_runtime(), the one place. */
	return 0;
}

int
config_agent_secret(const struct config *cfg, bool create, char **out,
		    size_t *len)
{
	return secret_get(cfg->agent_secret_file, "agent_secret", create, out,
			  len);
}

int
config_webhook_secret(const struct config *cfg, bool create, char **out,
		      size_t *len)
{
	return secret_get(cfg->webhook_secret_file, "webhook_secret", create,
			  out, len);
}

/* --- run-time checks ---------------------------------------------------- */

/* The line of key, else of fallback (may be NULL), else 0. */
static int
line_of(const struct config *cfg, const char *key, const char *fallback)
{
	int line = config_line(cfg, key);

	if (line == 0 && fallback != NULL)
		line = config_line(cfg, fallback);
	return line != 0 ? line : cfg->server_line;
}

/*
 * True when path could be created: its nearest existing ancestor is a
 * folder we may write into (mkdir -p makes the rest).  *where is set to
 * that ancestor (or the blocking path) for the message.
 */
static bool
creatable(const char *path, char *where, size_t wherelen)
{
	char *dir = xstrdup(path), *slash;
	struct stat st;
	bool ok = false;

	for (;;) {
		slash = strrchr(dir, '/');
		if (slash == NULL) {
			snprintf(dir, strlen(dir) + 1, ".");
		} else if (slash == dir) {
			dir[1] = '\0';
		} else {
			*slash = '\0';
		}
		if (stat(dir, &st) == 0) {
			ok = S_ISDIR(st.st_mode) &&
			     access(dir, W_OK | X_OK) == 0;
			break;
		}
		if (errno != ENOENT || strcmp(dir, ".") == 0 ||
		    strcmp(dir, "/") == 0)
			break;
	}
	snprintf(where, wherelen, "%s", dir);
	free(dir);
	return ok;
}

/*
 * The agent secret: an env: one must be set; a file must be readable, or
 * (server only) missing with a folder we can make it in.
 */
static void
check_secret_file(const struct config *cfg, const char *key, const char *ref,
		  bool server, struct config_report *r)
{
	int line = line_of(cfg, key, "data_dir");
	char err[512], where[256], *buf = NULL;
	size_t len = 0;
	int rc;

	rc = agent_secret_load(ref, &buf, &len, err, sizeof(err));
	if (rc == 0) {
		explicit_bzero(buf, len);
		free(buf);
		if (secret_mode_check(ref, err, sizeof(err)) != 0)
			config_report_error(r, line, "%s: %s", key, err);
		return;
	}
	if (rc == -ENOENT && server && strncmp(ref, "env:", 4) != 0) {
		if (creatable(ref, where, sizeof(where)))
			return; /* serve makes it */
		config_report_error(r, line,
				    "%s: %s does not exist and cannot be made "
				    "(%s is not a writable folder)",
				    key, ref, where);
		return;
	}
	config_report_error(r, line, "%s: %s", key, err);
}

bool
config_webhook_url_ok(const char *url)
{
	const char *host, *end;
	size_t i;

	if (strncmp(url, "https://", 8) == 0)
		host = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		host = url + 7;
	else
		return false;
	if (strlen(url) > 2048)
		return false;
	for (i = 0; url[i] != '\0'; i++)
		if ((unsigned char)url[i] < 0x21 ||
		    (unsigned char)url[i] > 0x7e || url[i] == '\\')
			return false;
	end = host + strcspn(host, "/?#");
	/* A host, and no user:password@ (it would end up in logs). */
	if (end == host || *host == ':' || memchr(host, '@', end - host))
		return false;
	return true;
}

/* With webhook_url: its secret, as the agent's, and its CA file. */
static void
check_webhook(const struct config *cfg, struct config_report *r)
{
	const char *ca = cfg->webhook_tls_ca_file;
	char err[512];

	if (cfg->webhook_url == NULL)
		return;
	check_secret_file(cfg, "webhook_secret_file", cfg->webhook_secret_file,
			  true, r);
	if (ca != NULL && config_ca_file_check(ca, err, sizeof(err)) != 0)
		config_report_error(r,
				    line_of(cfg, "webhook_tls_ca_file", NULL),
				    "webhook_tls_ca_file: %s", err);
}

static void
check_data_dir(const struct config *cfg, struct config_report *r)
{
	char where[256];
	struct stat st;

	if (stat(cfg->data_dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			config_report_error(r, line_of(cfg, "data_dir", NULL),
					    "data_dir: %s is not a folder",
					    cfg->data_dir);
		return;
	}
	if (!creatable(cfg->data_dir, where, sizeof(where)))
		config_report_error(r, line_of(cfg, "data_dir", NULL),
				    "data_dir: %s cannot be made (%s is not a "
				    "writable folder)",
				    cfg->data_dir, where);
}

int
config_api_keys_parse(const char *text, size_t len,
		      void (*fn)(const char *key, size_t klen, void *arg),
		      void *arg, size_t *count)
{
	const char *p = text, *end = text + len, *nl, *s, *e;

	*count = 0;
	if (memchr(text, '\0', len) != NULL)
		return -EINVAL;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		s = p;
		e = nl != NULL ? nl : end;
		p = nl != NULL ? nl + 1 : end;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s &&
		       (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (s == e || *s == '#')
			continue;
		if (fn != NULL)
			fn(s, (size_t)(e - s), arg);
		(*count)++;
	}
	return 0;
}

/*
 * Readable, the owner's alone, and holding at least one key: a file with
 * none would refuse every client, which is never what an operator means
 * (without api_keys_file no key is asked for).
 */
static void
check_api_keys(const struct config *cfg, struct config_report *r)
{
	const char *path = cfg->api_keys_file;
	int line = line_of(cfg, "api_keys_file", NULL);
	char *text = NULL, err[512];
	size_t len = 0, n = 0;
	int rc;

	if (path == NULL || *path == '\0')
		return;
	if (strncmp(path, "env:", 4) == 0) {
		config_report_error(
		    r, line,
		    "api_keys_file: must be a file of keys, one "
		    "per line (env: is for single secrets)");
		return;
	}
	if (config_regular_file_check(path, err, sizeof(err)) != 0) {
		config_report_error(r, line, "api_keys_file: %s", err);
		return;
	}
	rc = file_read_all(path, CONFIG_API_KEYS_MAX_FILE, &text, &len);
	if (rc != 0) {
		config_report_error(
		    r, line, "api_keys_file: cannot read %s: %s", path,
		    rc == -EFBIG ? "larger than 1 MiB" : strerror(-rc));
		return;
	}
	rc = config_api_keys_parse(text, len, NULL, NULL, &n);
	explicit_bzero(text, len);
	free(text);
	if (rc != 0)
		config_report_error(r, line, "api_keys_file: %s has a NUL byte",
				    path);
	else if (n == 0)
		config_report_error(r, line,
				    "api_keys_file: %s holds no key (one a "
				    "line; without api_keys_file no key is "
				    "asked for)",
				    path);
	if (secret_mode_check(path, err, sizeof(err)) != 0)
		config_report_error(r, line, "api_keys_file: %s", err);
}

/*
 * The SMTP intake's files: readable, and the two that hold secrets (the
 * users file's hashes, the TLS key) not open to other users.  What they
 * hold is checked when serve loads them (smtp_users_load, smtp_tls_new).
 */
static void
check_smtp_files(const struct config *cfg, struct config_report *r)
{
	const char *keys[] = {"smtp_users_file", "smtp_tls_key_file",
			      "smtp_tls_cert_file"};
	const char *paths[] = {cfg->smtp_users_file, cfg->smtp_tls_key_file,
			       cfg->smtp_tls_cert_file};
	char err[512];
	size_t i;

	if (cfg->smtp_listen == NULL || *cfg->smtp_listen == '\0')
		if (cfg->smtps_listen == NULL || *cfg->smtps_listen == '\0')
			return;
	for (i = 0; i < 3; i++) {
		if (paths[i] == NULL)
			continue;
		if (config_regular_file_check(paths[i], err, sizeof(err)) !=
		    0) {
			config_report_error(r, line_of(cfg, keys[i], NULL),
					    "%s: %s", keys[i], err);
			continue;
		}
		if (access(paths[i], R_OK) != 0) {
			config_report_error(r, line_of(cfg, keys[i], NULL),
					    "%s: cannot read %s: %s", keys[i],
					    paths[i], strerror(errno));
			continue;
		}
		if (i < 2 && secret_mode_check(paths[i], err, sizeof(err)) != 0)
			config_report_error(r, line_of(cfg, keys[i], NULL),
					    "%s: %s", keys[i], err);
	}
}

/* The log file is opened for appending and made if missing, not its folder. */
static void
check_log_file(const struct config *cfg, struct config_report *r)
{
	const char *path = cfg->log_file;
	int line = line_of(cfg, "log_file", NULL);
	char *dir, *slash;
	struct stat st;

	if (path == NULL || *path == '\0')
		return;
	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			config_report_error(r, line, "log_file: %s is a folder",
					    path);
		else if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))
			/* Its open would wait for a reader (log.c). */
			config_report_error(r, line,
					    "log_file: %s is not a regular "
					    "file (a FIFO or socket)",
					    path);
		else if (access(path, W_OK) != 0)
			config_report_error(r, line,
					    "log_file: cannot write %s: %s",
					    path, strerror(errno));
		return;
	}
	dir = xstrdup(path);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		snprintf(dir, strlen(dir) + 1, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		config_report_error(
		    r, line, "log_file: the folder %s does not exist", dir);
	else if (access(dir, W_OK | X_OK) != 0)
		config_report_error(r, line,
				    "log_file: cannot make %s: %s is not "
				    "writable",
				    path, dir);
	free(dir);
}

/*
 * host:port into a comparable form: the address in binary when numeric
 * ("localhost" counts as 127.0.0.1), else the lowercased name.  A
 * wildcard (0.0.0.0, ::) collides with any host on its port.
 */
struct endpoint {
	int port;
	bool wildcard;
	int family; /* AF_INET, AF_INET6, or 0 for a name */
	unsigned char addr[16];
	char name[256];
};

static bool
endpoint_parse(const char *s, struct endpoint *e)
{
	char *host = NULL;
	size_t i;

	memset(e, 0, sizeof(*e));
	if (s == NULL || *s == '\0' || hostport_parse(s, &host, &e->port) != 0)
		return false;
	if (strcasecmp(host, "localhost") == 0) {
		free(host);
		host = xstrdup("127.0.0.1");
	}
	if (inet_pton(AF_INET, host, e->addr) == 1) {
		e->family = AF_INET;
		e->wildcard = memcmp(e->addr, "\0\0\0\0", 4) == 0;
	} else if (inet_pton(AF_INET6, host, e->addr) == 1) {
		static const unsigned char any[16];
		e->family = AF_INET6;
		e->wildcard = memcmp(e->addr, any, 16) == 0;
	} else {
		for (i = 0; host[i] != '\0' && i + 1 < sizeof(e->name); i++)
			e->name[i] = (char)tolower((unsigned char)host[i]);
	}
	free(host);
	return true;
}

static bool
endpoint_clash(const struct endpoint *a, const struct endpoint *b)
{
	if (a->port != b->port)
		return false;
	if (a->wildcard || b->wildcard)
		return true;
	if (a->family != b->family)
		return false;
	if (a->family == 0)
		return strcmp(a->name, b->name) == 0;
	return memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

static void
check_listens(const struct config *cfg, struct config_report *r)
{
	const char *keys[] = {"http_listen", "agent_listen", "smtp_listen",
			      "smtps_listen"};
	const char *vals[] = {cfg->http_listen, cfg->agent_listen,
			      cfg->smtp_listen, cfg->smtps_listen};
	struct endpoint e[4];
	bool ok[4];
	size_t i, j, later;

	for (i = 0; i < 4; i++)
		ok[i] = endpoint_parse(vals[i], &e[i]);
	for (i = 0; i < 4; i++) {
		for (j = i + 1; j < 4; j++) {
			if (!ok[i] || !ok[j] || !endpoint_clash(&e[i], &e[j]))
				continue;
			/* Report at the key set last in the file. */
			later = config_line(cfg, keys[j]) >=
					config_line(cfg, keys[i])
				    ? j
				    : i;
			config_report_error(r, line_of(cfg, keys[later], NULL),
					    "%s: %s is the address of %s too",
					    keys[later], vals[later],
					    keys[later == j ? i : j]);
		}
	}
}

/*
 * What serve does with each listen address, done here so that check-config
 * gives serve's verdict: agent_listen is taken as a numeric address only
 * (agent_port.c parses it without resolving; "localhost" would pass the
 * text check and then stop serve), the others are resolved (getaddrinfo,
 * as their listeners do), so a name that does not resolve is an error now
 * and not at serve's start.
 */
static void
check_listen_hosts(const struct config *cfg, struct config_report *r)
{
	const char *keys[] = {"http_listen", "agent_listen", "smtp_listen",
			      "smtps_listen"};
	const char *vals[] = {cfg->http_listen, cfg->agent_listen,
			      cfg->smtp_listen, cfg->smtps_listen};
	struct addrinfo hints, *res = NULL;
	unsigned char bin[16];
	char *host = NULL;
	int port, rc;
	size_t i;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	for (i = 0; i < 4; i++) {
		if (vals[i] == NULL || *vals[i] == '\0' ||
		    hostport_parse(vals[i], &host, &port) != 0)
			continue;
		if (inet_pton(AF_INET, host, bin) == 1 ||
		    inet_pton(AF_INET6, host, bin) == 1) {
			free(host);
			continue;
		}
		if (i == 1) {
			config_report_error(r, line_of(cfg, keys[i], NULL),
					    "agent_listen: %s: must be an IP "
					    "address (IPv4, or IPv6 in "
					    "brackets), not a name",
					    host);
		} else {
			rc = getaddrinfo(host, NULL, &hints, &res);
			if (rc != 0)
				config_report_error(
				    r, line_of(cfg, keys[i], NULL),
				    "%s: cannot resolve %s: %s", keys[i], host,
				    gai_strerror(rc));
			else
				freeaddrinfo(res);
			res = NULL;
		}
		free(host);
	}
}

/* Every secret key of the provider's type that the section sets. */
static void
check_provider_secrets(const struct provider_config *pc,
		       struct config_report *r)
{
	const struct config_ptype *pt = config_ptype_lookup(pc->type);
	const char *ref;
	char err[512], *v = NULL;
	size_t i;

	for (i = 0; pt != NULL && pt->secret != NULL && pt->secret[i] != NULL;
	     i++) {
		ref = provider_config_get(pc, pt->secret[i]);
		if (ref == NULL)
			continue;
		if (config_secret_read(ref, &v, err, sizeof(err)) != 0) {
			config_report_error(
			    r, provider_config_line(pc, pt->secret[i]),
			    "%s: %s", pt->secret[i], err);
			continue;
		}
		explicit_bzero(v, strlen(v));
		free(v);
		if (secret_mode_check(ref, err, sizeof(err)) != 0)
			config_report_error(
			    r, provider_config_line(pc, pt->secret[i]),
			    "%s: %s", pt->secret[i], err);
	}
}

/*
 * The section's tls_ca_file holds a certificate: a file of anything else
 * would only show as every TLS send failing, a provider down for good.
 */
static void
check_provider_files(const struct provider_config *pc, struct config_report *r)
{
	const char *ca = provider_config_get(pc, "tls_ca_file");
	char err[512];

	if (ca != NULL && config_ca_file_check(ca, err, sizeof(err)) != 0)
		config_report_error(r, provider_config_line(pc, "tls_ca_file"),
				    "tls_ca_file: %s", err);
}

int
config_check_runtime(const struct config *cfg, const char *agent,
		     struct config_errors *errs)
{
	struct config_report r;
	const struct provider_config *pc;
	size_t i;
	int rc;

	memset(&r, 0, sizeof(r));
	r.file = cfg->path != NULL ? cfg->path : "(embedded default)";
	check_secret_file(cfg, "agent_secret_file", cfg->agent_secret_file,
			  agent == NULL, &r);
	check_log_file(cfg, &r);
	if (agent == NULL) {
		check_data_dir(cfg, &r);
		check_api_keys(cfg, &r);
		check_listens(cfg, &r);
		check_listen_hosts(cfg, &r);
		check_smtp_files(cfg, &r);
		check_webhook(cfg, &r);
		for (i = 0; i < cfg->nproviders; i++) {
			if (!cfg->providers[i].spawn)
				continue;
			check_provider_secrets(&cfg->providers[i], &r);
			check_provider_files(&cfg->providers[i], &r);
		}
	} else {
		pc = config_provider(cfg, agent);
		if (pc != NULL) {
			check_provider_secrets(pc, &r);
			check_provider_files(pc, &r);
		}
	}
	rc = r.nerrs > 0 || r.too_many ? -EINVAL : 0;
	config__report_move(&r, errs);
	return rc;
}
