/*
 * Unit tests of the configuration reader: defaults, the embedded default,
 * every kind of error with its line, all errors collected in one pass,
 * and secrets (env:, files, the agent secret made on first use).  Fixtures
 * live in tests/unit/data/config/ (found through $SHIVNERI_SRC); scratch
 * files go to a fresh folder under /tmp removed at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/config.h"
#include "common/config_int.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *
fixture(const char *name)
{
	const char *src = getenv("SHIVNERI_SRC");

	return xasprintf("%s/tests/unit/data/config/%s",
			 src != NULL ? src : ".", name);
}

/* True when some error is at line (":LINE: ") and contains text. */
static bool
has_error(const struct config_errors *errs, int line, const char *text)
{
	char tag[32];
	size_t i;

	snprintf(tag, sizeof(tag), ":%d: ", line);
	for (i = 0; i < errs->n; i++)
		if (strstr(errs->msg[i], tag) != NULL &&
		    strstr(errs->msg[i], text) != NULL)
			return true;
	return false;
}

/* The LINE of "LINE: message". */
static int
atoi_line(const char *s)
{
	return (int)strtol(s, NULL, 10);
}

static void
print_errors(const struct config_errors *errs)
{
	size_t i;

	for (i = 0; i < errs->n; i++)
		fprintf(stderr, "  %s\n", errs->msg[i]);
}

static void
test_defaults(void **state)
{
	struct config *cfg = NULL;
	char *path = fixture("minimal.ini");

	assert_int_equal(config_load(path, &cfg, NULL), 0);
	assert_non_null(cfg);
	assert_string_equal(cfg->path, path);
	assert_string_equal(cfg->data_dir, "./shivneri-data");
	assert_string_equal(cfg->http_listen, "127.0.0.1:8025");
	assert_string_equal(cfg->smtp_listen, "127.0.0.1:2525");
	assert_string_equal(cfg->agent_listen, "127.0.0.1:8026");
	assert_string_equal(cfg->agent_secret_file,
			    "./shivneri-data/agent.secret");
	assert_null(cfg->api_keys_file);
	assert_null(cfg->log_file);
	assert_string_equal(cfg->scheduler, "round_robin");
	assert_int_equal(cfg->heartbeat_interval_ms, 1000);
	assert_int_equal(cfg->heartbeat_timeout_ms, 3000);
	assert_int_equal(cfg->max_attempts, 10);
	assert_int_equal(cfg->retry_base_ms, 1000);
	assert_int_equal(cfg->retry_max_ms, 300000);
	assert_int_equal(cfg->message_ttl_s, 86400);
	assert_int_equal(cfg->max_message_bytes, 26214400);
	assert_int_equal(cfg->breaker_threshold, 5);
	assert_int_equal(cfg->breaker_cooldown_ms, 10000);
	assert_int_equal(cfg->events_max_clients, 64);
	assert_int_equal(cfg->events_max_client_streams, 8);
	assert_int_equal(cfg->nproviders, 0);
	config_free(cfg);
	free(path);
}

static void
test_full(void **state)
{
	struct config_errors errs = {NULL, 0};
	const struct provider_config *pc;
	struct config *cfg = NULL;
	char *path = fixture("full.ini");
	int rc;

	rc = config_load(path, &cfg, &errs);
	if (rc != 0)
		print_errors(&errs);
	assert_int_equal(rc, 0);
	assert_int_equal(errs.n, 0);
	assert_string_equal(cfg->data_dir, "/var/lib/shivneri");
	assert_string_equal(cfg->http_listen, "127.0.0.1:18025");
	assert_string_equal(cfg->smtp_listen, "");
	assert_string_equal(cfg->agent_listen, "[::1]:18026");
	assert_string_equal(cfg->agent_secret_file,
			    "/etc/shivneri/agent.secret");
	assert_string_equal(cfg->api_keys_file, "/etc/shivneri/api-keys");
	assert_string_equal(cfg->log_file, "/var/log/shivneri.log");
	assert_string_equal(cfg->scheduler, "weighted");
	assert_int_equal(cfg->heartbeat_interval_ms, 500);
	assert_int_equal(cfg->heartbeat_timeout_ms, 1500);
	assert_int_equal(cfg->max_attempts, 7);
	assert_int_equal(cfg->retry_base_ms, 200);
	assert_int_equal(cfg->retry_max_ms, 60000);
	assert_int_equal(cfg->message_ttl_s, 3600);
	assert_int_equal(cfg->max_message_bytes, 1048576);
	assert_int_equal(cfg->breaker_threshold, 3);
	assert_int_equal(cfg->breaker_cooldown_ms, 5000);
	assert_int_equal(cfg->job_timeout_s, 60);
	assert_int_equal(cfg->retention_days, 7);
	assert_string_equal(cfg->log_format, "json");
	assert_string_equal(cfg->store, "sqlite");
	assert_int_equal(cfg->nproviders, 3);
	/* Every [server] key keeps its line for the run-time checks. */
	assert_int_equal(config_line(cfg, "data_dir"), 3);
	assert_int_equal(config_line(cfg, "store"), 23);
	assert_int_equal(config_line(cfg, "nope"), 0);

	pc = config_provider(cfg, "sandbox-eu");
	assert_non_null(pc);
	assert_string_equal(pc->type, "maildir");
	assert_true(pc->spawn);
	assert_int_equal(pc->weight, 3);
	assert_int_equal(pc->priority, 1);
	assert_int_equal(pc->max_in_flight, 16);
	assert_int_equal(pc->rate_per_s, 50);
	assert_int_equal(pc->slow_start_s, 10);
	assert_int_equal(pc->overflow, 1);
	assert_int_equal(pc->line, 25);
	assert_string_equal(provider_config_get(pc, "path"), "/srv/mail/eu");
	/* Generic keys are in kv[] too, with their lines. */
	assert_string_equal(provider_config_get(pc, "weight"), "3");
	assert_int_equal(provider_config_line(pc, "path"), 34);
	assert_int_equal(provider_config_line(pc, "nope"), 25);
	assert_null(provider_config_get(pc, "nope"));

	/* Indented keys are keys, not continuations of the previous value. */
	pc = config_provider(cfg, "relay");
	assert_non_null(pc);
	assert_string_equal(pc->type, "maildir");
	assert_false(pc->spawn);
	assert_int_equal(pc->weight, 1);
	assert_int_equal(pc->priority, 100);
	assert_int_equal(pc->max_in_flight, 32);
	assert_int_equal(pc->overflow, 0);
	assert_string_equal(provider_config_get(pc, "path"), "/srv/mail/relay");
	assert_int_equal(provider_config_line(pc, "overflow"), 43);
	assert_int_equal(pc->nkv, 7);

	/* The connector's check gave maildir its default path. */
	pc = config_provider(cfg, "box");
	assert_non_null(pc);
	assert_int_equal(pc->overflow, -1);
	assert_string_equal(provider_config_get(pc, "path"),
			    "/var/lib/shivneri/maildir/box");
	assert_int_equal(provider_config_line(pc, "path"), 45);
	assert_null(config_provider(cfg, "mailgun"));
	config_free(cfg);
	free(path);
}

static void
test_embedded_default(void **state)
{
	const struct provider_config *pc;
	struct config *cfg = NULL;
	const char *names[] = {"sandbox-a", "sandbox-b"};
	char want[64];
	size_t i;

	assert_int_equal(config_load_default(&cfg), 0);
	assert_null(cfg->path);
	assert_string_equal(cfg->data_dir, "./shivneri-data");
	assert_string_equal(cfg->http_listen, "127.0.0.1:8025");
	assert_string_equal(cfg->smtp_listen, "127.0.0.1:2525");
	assert_string_equal(cfg->agent_listen, "127.0.0.1:8026");
	assert_string_equal(cfg->scheduler, "round_robin");
	assert_string_equal(cfg->agent_secret_file,
			    "./shivneri-data/agent.secret");
	assert_int_equal(cfg->nproviders, 2);
	for (i = 0; i < 2; i++) {
		pc = config_provider(cfg, names[i]);
		assert_non_null(pc);
		assert_string_equal(pc->type, "maildir");
		assert_true(pc->spawn);
		assert_int_equal(pc->line, 0);
		snprintf(want, sizeof(want), "./shivneri-data/maildir/%s",
			 names[i]);
		assert_string_equal(provider_config_get(pc, "path"), want);
	}
	config_free(cfg);
}

static void
test_all_errors(void **state)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = (struct config *)1;
	char *path = fixture("errors.ini");
	size_t i;

	assert_int_equal(config_load(path, &cfg, &errs), -EINVAL);
	assert_null(cfg);
	print_errors(&errs);
	assert_true(has_error(
	    &errs, 2,
	    "heartbeat_interval_ms: must be an integer between 10 and 60000"));
	assert_true(has_error(&errs, 3, "unknown key 'bogus' in [server]"));
	assert_true(has_error(&errs, 4, "scheduler: must be one of"));
	assert_true(has_error(&errs, 5, "http_listen: must be HOST:PORT"));
	assert_true(has_error(&errs, 6, "max_attempts: must be an integer"));
	assert_true(has_error(&errs, 7, "duplicate key 'max_attempts'"));
	assert_true(has_error(&errs, 8, "expected 'key = value'"));
	assert_true(has_error(&errs, 10, "unknown section [weird]"));
	assert_true(has_error(&errs, 13, "invalid provider name 'bad name'"));
	assert_true(has_error(
	    &errs, 18, "unknown key 'host' for type maildir in [provider.a]"));
	assert_true(has_error(&errs, 19, "weight: must be an integer"));
	assert_true(has_error(&errs, 20, "spawn: must be"));
	assert_true(has_error(
	    &errs, 22, "duplicate section [provider.a] (first at line 16)"));
	assert_true(has_error(&errs, 26,
			      "type: 'carrier-pigeon' is not a provider type "
			      "of this build (known: brevo, maildir"));
	assert_true(has_error(&errs, 28, "missing required key 'type'"));
	assert_int_equal(errs.n, 15);
	/* Every message starts with the file name and they are in order. */
	for (i = 0; i < errs.n; i++)
		assert_int_equal(strncmp(errs.msg[i], path, strlen(path)), 0);
	for (i = 1; i < errs.n; i++) {
		int a = atoi_line(errs.msg[i - 1] + strlen(path) + 1);
		int b = atoi_line(errs.msg[i] + strlen(path) + 1);
		assert_true(a <= b);
	}
	config_errors_cleanup(&errs);
	assert_int_equal(errs.n, 0);
	free(path);
}

static void
test_cross_key(void **state)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	char *path = fixture("timeout.ini");

	assert_int_equal(config_load(path, &cfg, &errs), -EINVAL);
	assert_int_equal(errs.n, 2);
	assert_true(
	    has_error(&errs, 3, "heartbeat_timeout_ms: must be greater than"));
	assert_true(has_error(
	    &errs, 5, "retry_max_ms: must be at least retry_base_ms (5000)"));
	config_errors_cleanup(&errs);
	free(path);
}

static void
test_strings(void **state)
{
	static const struct {
		const char *text;
		int line;
		const char *msg;
	} cases[] = {
	    {"a = b\n", 1, "outside of any section"},
	    {"[server]\nmax_message_bytes = 1023\n", 2,
	     "max_message_bytes: must be an integer between 1024 and "
	     "1073741824"},
	    {"[server]\nmax_attempts = \n", 2, "max_attempts: must be"},
	    {"[server]\nmax_attempts = 0x10\n", 2, "max_attempts: must be"},
	    {"[server]\nmax_attempts = 99999999999999999999\n", 2,
	     "max_attempts: must be"},
	    {"[server]\ndata_dir =\n", 2, "data_dir: must not be empty"},
	    {"[server]\nagent_listen =\n", 2, "agent_listen: must be"},
	    {"[server]\nagent_listen = 127.0.0.1:0\n", 2,
	     "agent_listen: must be"},
	    {"\n\n[server\n", 3, "section header without ']'"},
	    {"[server]\n[server]\n", 2, "duplicate section [server]"},
	    {"[provider.]\ntype = maildir\n", 1, "invalid provider name"},
	    /* Only the types this build runs; the others are refused. */
	    {"[provider.x]\ntype = pigeon\n", 2,
	     "type: 'pigeon' is not a provider type of this build (known: "},
	    {"[provider.x]\ntype = pigeon\n", 2, "known: brevo, maildir"},
	    {"[provider.x]\ntype = maildir\npath =\n", 3,
	     "path: must not be empty"},
	    {"[provider.x]\ntype = maildir\napi_key_file = f\n", 3,
	     "unknown key 'api_key_file' for type maildir"},
	    {"[provider.x]\ntype = maildir\noverflow = maybe\n", 3,
	     "overflow: must be yes, no"},
	    {"[server]\nagent_secret_file = env:1BAD\n", 2,
	     "agent_secret_file: env: must name a variable"},
	    {"[server]\nstore = sqlite\nmax_message_bytes = 1073741824\n", 3,
	     "max_message_bytes: the sqlite store holds messages of at most"},
	    {"[server]\nevents_max_clients = 4\nevents_max_client_streams = "
	     "5\n",
	     3,
	     "events_max_client_streams: must be at most events_max_clients "
	     "(4)"},
	    {"[server]\nevents_max_client_streams = 0\n", 2,
	     "events_max_client_streams: must be an integer between 1 and"},
	    {"[provider.x]\ntype = maildir\npriority = -1\n", 3,
	     "priority: must be an integer between 0 and 1000000"},
	    {"[provider.x]\ntype = maildir\nmax_in_flight = 100001\n", 3,
	     "max_in_flight: must be"},
	    {"[provider.x]\ntype = maildir\nrate_per_s = -5\n", 3,
	     "rate_per_s: must be"},
	    {"[provider.x]\ntype = maildir\nx = 1\nx = 2\n", 4,
	     "duplicate key 'x'"},
	};
	struct config_errors errs = {NULL, 0};
	struct config *cfg;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cfg = NULL;
		if (config_load_string(cases[i].text, "t.ini", &cfg, &errs) !=
		    -EINVAL) {
			fprintf(stderr, "case %zu loaded\n", i);
			fail();
		}
		if (!has_error(&errs, cases[i].line, cases[i].msg)) {
			fprintf(stderr, "case %zu: want %d: %s, got:\n", i,
				cases[i].line, cases[i].msg);
			print_errors(&errs);
			fail();
		}
		assert_null(cfg);
		config_errors_cleanup(&errs);
	}
}

static void
test_long_line_and_crlf(void **state)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	char *text, pad[400];

	char *big = xmalloc(CONFIG_LINE_MAX + 2);

	memset(big, 'x', CONFIG_LINE_MAX + 1);
	big[CONFIG_LINE_MAX + 1] = '\0';
	text = xasprintf("[server]\r\ndata_dir = %s\r\nbogus = 1\r\n", big);
	assert_int_equal(config_load_string(text, "t.ini", &cfg, &errs),
			 -EINVAL);
	assert_true(has_error(&errs, 2, "line too long"));
	assert_true(has_error(&errs, 3, "unknown key 'bogus'"));
	assert_int_equal(errs.n, 2);
	config_errors_cleanup(&errs);
	free(text);
	free(big);

	/* Longer than inih's 200-byte line, not a key line. */
	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	text = xasprintf("[server]\n%s\n[%s]\n", pad, pad);
	assert_int_equal(config_load_string(text, "t.ini", &cfg, &errs),
			 -EINVAL);
	assert_true(has_error(&errs, 2, "expected 'key = value'"));
	assert_true(has_error(&errs, 3, "section header too long"));
	assert_int_equal(errs.n, 2);
	config_errors_cleanup(&errs);
	free(text);

	assert_int_equal(config_load_string("[server]\r\nscheduler = "
					    "priority\r\n",
					    "t.ini", &cfg, &errs),
			 0);
	assert_string_equal(cfg->scheduler, "priority");
	config_free(cfg);
}

/*
 * A key line longer than inih's 200-byte buffer reads as a short one: a
 * webhook URL of the documented 2048 bytes, an inline comment cut off, a
 * long comment skipped; one byte over webhook_url's bound is refused.
 */
static void
test_long_values(void **state)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	char url[2050], note[600], *text;
	size_t n;

	(void)state;
	n = (size_t)snprintf(url, sizeof(url), "https://hooks.example/in?t=");
	memset(url + n, 'a', 2048 - n);
	url[2048] = '\0';
	memset(note, 'c', sizeof(note) - 1);
	note[sizeof(note) - 1] = '\0';
	text = xasprintf("; %s\n[server]\n# %s\nwebhook_url\t= %s   ; %s\r\n"
			 "scheduler:priority\n",
			 note, note, url, note);
	if (config_load_string(text, "t.ini", &cfg, &errs) != 0) {
		print_errors(&errs);
		fail();
	}
	assert_string_equal(cfg->webhook_url, url);
	assert_string_equal(cfg->scheduler, "priority");
	config_free(cfg);
	free(text);

	/* The same bound as on a short line: 2049 bytes is refused. */
	url[2048] = 'a';
	url[2049] = '\0';
	text = xasprintf("[server]\nwebhook_url = %s\n", url);
	assert_int_equal(config_load_string(text, "t.ini", &cfg, &errs),
			 -EINVAL);
	assert_true(has_error(&errs, 2, "webhook_url: must be"));
	assert_int_equal(errs.n, 1);
	config_errors_cleanup(&errs);
	free(text);

	/* A long value of an unknown key is named as on a short line. */
	text = xasprintf("[server]\nbogus = %s\n", note);
	assert_int_equal(config_load_string(text, "t.ini", &cfg, &errs),
			 -EINVAL);
	assert_true(has_error(&errs, 2, "unknown key 'bogus'"));
	config_errors_cleanup(&errs);
	free(text);
}

/* The split of a long line follows inih's rules for a short one. */
static void
test_split_key_line(void **state)
{
	static const struct {
		const char *line, *name, *value; /* NULL name: not a key */
	} cases[] = {
	    {"a = b", "a", "b"},      {"a=b", "a", "b"},
	    {"a:b=c", "a", "b=c"},    {"  a \t=  b c  \r", "a", "b c"},
	    {"a = b ; c", "a", "b"},  {"a = b;c", "a", "b;c"},
	    {"a =;c", "a", ";c"},     {"a = ;c", "a", ""},
	    {"a =", "a", ""},         {"= b", NULL, NULL},
	    {"a ;b = c", NULL, NULL}, {"abc", NULL, NULL},
	};
	char *name, *value;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *l = cases[i].line;
		int rc = config__split_key_line(l + strspn(l, " "),
						strlen(l + strspn(l, " ")),
						&name, &value);

		if (cases[i].name == NULL) {
			assert_int_equal(rc, -1);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_string_equal(name, cases[i].name);
		assert_string_equal(value, cases[i].value);
		free(name);
		free(value);
	}
}

static void
test_missing_file(void **state)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;

	assert_int_equal(config_load("/nonexistent/x.ini", &cfg, &errs),
			 -ENOENT);
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.msg[0], "/nonexistent/x.ini"));
	config_errors_cleanup(&errs);
}

static char *
tmpdir_new(void)
{
	char tmpl[] = "/tmp/shivneri-test-config-XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	return xstrdup(tmpl);
}

static void
write_file(const char *path, const char *data, int mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
}

static void
test_secret_env(void **state)
{
	char err[256], *out = NULL;

	setenv("SHIVNERI_TEST_SECRET", "s3cr3t-value", 1);
	assert_int_equal(config_secret_read("env:SHIVNERI_TEST_SECRET", &out,
					    err, sizeof(err)),
			 0);
	assert_string_equal(out, "s3cr3t-value");
	free(out);
	out = NULL;

	setenv("SHIVNERI_TEST_SECRET", "", 1);
	assert_true(config_secret_read("env:SHIVNERI_TEST_SECRET", &out, err,
				       sizeof(err)) < 0);
	assert_null(out);
	assert_non_null(strstr(err, "SHIVNERI_TEST_SECRET"));

	unsetenv("SHIVNERI_TEST_SECRET");
	assert_int_equal(config_secret_read("env:SHIVNERI_TEST_SECRET", &out,
					    err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, "SHIVNERI_TEST_SECRET"));
	assert_non_null(strstr(err, "not set"));
}

static void
test_secret_file(void **state)
{
	char err[256], *out = NULL, *dir = tmpdir_new(), *p;

	p = xasprintf("%s/key", dir);
	write_file(p, "abc123\r\n", 0600);
	assert_int_equal(config_secret_read(p, &out, err, sizeof(err)), 0);
	assert_string_equal(out, "abc123");
	free(out);
	out = NULL;

	/* Only one newline is stripped. */
	write_file(p, "abc\n\n", 0600);
	assert_int_equal(config_secret_read(p, &out, err, sizeof(err)), 0);
	assert_string_equal(out, "abc\n");
	free(out);
	out = NULL;

	write_file(p, "\n", 0600);
	assert_int_equal(config_secret_read(p, &out, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, p));
	assert_non_null(strstr(err, "empty"));
	assert_null(out);
	unlink(p);

	assert_int_equal(config_secret_read(p, &out, err, sizeof(err)),
			 -ENOENT);
	assert_non_null(strstr(err, p));
	assert_null(out);
	free(p);
	rmdir(dir);
	free(dir);
}

static void
test_agent_secret(void **state)
{
	struct config *cfg = NULL;
	char *dir = tmpdir_new(), *text, *s1 = NULL, *s2 = NULL;
	char *file;
	struct stat st;
	size_t len1 = 0, len2 = 0, i;

	text = xasprintf("[server]\ndata_dir = %s/data\n", dir);
	assert_int_equal(config_load_string(text, "t.ini", &cfg, NULL), 0);
	free(text);
	file = xasprintf("%s/data/agent.secret", dir);
	assert_string_equal(cfg->agent_secret_file, file);

	/* Without create, a missing file is an error and nothing is made. */
	assert_int_equal(config_agent_secret(cfg, false, &s1, &len1), -ENOENT);
	assert_null(s1);
	assert_int_equal(stat(file, &st), -1);

	assert_int_equal(config_agent_secret(cfg, true, &s1, &len1), 0);
	assert_int_equal(len1, 64);
	assert_int_equal(strlen(s1), 64);
	for (i = 0; i < len1; i++)
		assert_non_null(strchr("0123456789abcdef", s1[i]));
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	text = xasprintf("%s/data", dir);
	assert_int_equal(stat(text, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	free(text);

	/* A second read gives the same secret. */
	assert_int_equal(config_agent_secret(cfg, true, &s2, &len2), 0);
	assert_int_equal(len2, 64);
	assert_memory_equal(s1, s2, 64);
	free(s2);
	s2 = NULL;

	/* Too short: refused, even with create. */
	write_file(file, "short-secret\n", 0600);
	assert_int_equal(config_agent_secret(cfg, true, &s2, &len2), -EINVAL);
	assert_null(s2);

	unlink(file);
	text = xasprintf("%s/data", dir);
	rmdir(text);
	free(text);
	rmdir(dir);
	free(s1);
	free(file);
	free(dir);
	config_free(cfg);
}

/*
 * A provider type declared the way a connector declares its keys: the
 * configuration checks sections of it without knowing it by name.
 */
static const char *const fake_required[] = {"token_file", NULL};
static const char *const fake_optional[] = {"base_url", NULL};
static const char *const fake_secret[] = {"token_file", NULL};
static int fake_checks;

static void
fake_check(struct provider_config *pc, const struct config *cfg,
	   struct config_report *r)
{
	const char *url = provider_config_get(pc, "base_url");

	fake_checks++;
	if (url != NULL && strncmp(url, "http", 4) != 0)
		config_report_error(r, provider_config_line(pc, "base_url"),
				    "base_url: must be http(s)://HOST[:PORT]");
}

static const struct config_ptype fake_type = {
    .name = "fake",
    .required = fake_required,
    .optional = fake_optional,
    .secret = fake_secret,
    .check = fake_check,
    .max_message_bytes = 20000000,
};

static void
test_registered_type(void **state)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;

	fake_checks = 0;
	assert_int_equal(config_load_string("[provider.f]\n"
					    "type = fake\n"
					    "base_url = ftp://x\n"
					    "token_file = env:9X\n"
					    "path = /tmp\n",
					    "t.ini", &cfg, &errs),
			 -EINVAL);
	print_errors(&errs);
	assert_int_equal(fake_checks, 1);
	assert_true(has_error(&errs, 3, "base_url: must be http"));
	assert_true(has_error(&errs, 4, "token_file: env: must name"));
	assert_true(has_error(&errs, 5, "unknown key 'path' for type fake"));
	assert_int_equal(errs.n, 3);
	config_errors_cleanup(&errs);

	assert_int_equal(config_load_string("[provider.f]\ntype = fake\n",
					    "t.ini", &cfg, &errs),
			 -EINVAL);
	assert_true(has_error(&errs, 1, "type fake needs key 'token_file'"));
	config_errors_cleanup(&errs);

	assert_int_equal(config_load_string("[provider.f]\n"
					    "type = fake\n"
					    "token_file = env:SOME_TOKEN\n",
					    "t.ini", &cfg, &errs),
			 0);
	assert_string_equal(config_provider(cfg, "f")->type, "fake");
	config_free(cfg);
}

/*
 * [provider.NAME] max_message_bytes: the section's value, else the type's
 * documented limit; out of range or not a number is a FILE:LINE error.
 */
static void
test_provider_max_bytes(void **state)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;

	assert_int_equal(config_load_string("[provider.f]\n"
					    "type = fake\n"
					    "token_file = env:SOME_TOKEN\n",
					    "t.ini", &cfg, &errs),
			 0);
	assert_int_equal(config_provider(cfg, "f")->max_message_bytes, 0);
	assert_int_equal(config_provider_max_bytes(config_provider(cfg, "f")),
			 20000000);
	config_free(cfg);
	assert_int_equal(config_load_string("[provider.f]\n"
					    "type = fake\n"
					    "token_file = env:SOME_TOKEN\n"
					    "max_message_bytes = 5000\n",
					    "t.ini", &cfg, &errs),
			 0);
	assert_int_equal(config_provider_max_bytes(config_provider(cfg, "f")),
			 5000);
	config_free(cfg);
	assert_int_equal(config_load_string("[provider.f]\n"
					    "type = fake\n"
					    "token_file = env:SOME_TOKEN\n"
					    "max_message_bytes = 100\n"
					    "[provider.g]\n"
					    "type = fake\n"
					    "token_file = env:SOME_TOKEN\n"
					    "max_message_bytes = 2MB\n",
					    "t.ini", &cfg, &errs),
			 -EINVAL);
	print_errors(&errs);
	assert_true(has_error(&errs, 4,
			      "max_message_bytes: must be an integer "
			      "between 1024 and 1073741824"));
	assert_true(has_error(&errs, 8, "max_message_bytes: must be"));
	assert_int_equal(errs.n, 2);
	config_errors_cleanup(&errs);
}

/*
 * Each type's documented limit (src/agent/conn_limits.h, the one table),
 * registered with its section's keys: the default max_message_bytes of a
 * section of that type.  smtp and maildir have none of their own.  The
 * figures are spelled out here so that a change to the table is seen.
 */
static void
test_type_default_limits(void **state)
{
	static const struct {
		const char *type;
		int64_t bytes;
	} want[] = {
	    {"mailgun", 25000000}, {"sendgrid", 29999999},
	    {"ses", 31457280},     {"sparkpost", 20000000},
	    {"mailjet", 15000000}, {"postmark", 10000000},
	    {"resend", 40000000},  {"brevo", 20000000},
	    {"smtp", 0},           {"maildir", 0},
	};
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct config_ptype *pt =
		    config_ptype_lookup(want[i].type);

		assert_non_null(pt);
		if (pt->max_message_bytes != want[i].bytes)
			fail_msg("%s: %lld, want %lld", want[i].type,
				 (long long)pt->max_message_bytes,
				 (long long)want[i].bytes);
	}
	/* A section without the key takes its type's; with it, its own. */
	assert_int_equal(config_load_string("[provider.p]\n"
					    "type = postmark\n"
					    "server_token_file = env:PM\n"
					    "[provider.q]\n"
					    "type = postmark\n"
					    "server_token_file = env:PM\n"
					    "max_message_bytes = 5000000\n",
					    "t.ini", &cfg, &errs),
			 0);
	assert_int_equal(config_provider_max_bytes(config_provider(cfg, "p")),
			 10000000);
	assert_int_equal(config_provider_max_bytes(config_provider(cfg, "q")),
			 5000000);
	config_free(cfg);
}

/* Writes text as DIR/name and returns the path. */
static char *
dir_file(const char *dir, const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", dir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return p;
}

/*
 * Everything serve used to refuse after check-config passed: each one
 * is a FILE:LINE error of config_check_runtime().
 */
static void
test_runtime_errors(void **state)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	char *dir = tmpdir_new(), *text, *shortf;
	int rc;

	shortf = dir_file(dir, "short.secret", "0123456789\n");
	unsetenv("SHIVNERI_TEST_UNSET");
	text = xasprintf("[server]\n"                             /* 1 */
			 "data_dir = %s/data\n"                   /* 2 */
			 "agent_secret_file = %s\n"               /* 3 */
			 "api_keys_file = %s/no-keys\n"           /* 4 */
			 "log_file = %s/no-folder/shivneri.log\n" /* 5 */
			 "http_listen = 127.0.0.1:18025\n"        /* 6 */
			 "agent_listen = localhost:18025\n"       /* 7 */
			 "smtp_listen = 0.0.0.0:18025\n"          /* 8 */
			 "\n"                                     /* 9 */
			 "[provider.f]\n"                         /* 10 */
			 "type = fake\n"                          /* 11 */
			 "spawn = yes\n"                          /* 12 */
			 "token_file = env:SHIVNERI_TEST_UNSET\n" /* 13 */
			 "[provider.g]\n"                         /* 14 */
			 "type = fake\n"                          /* 15 */
			 "token_file = %s/absent\n",              /* 16 */
			 dir, shortf, dir, dir, dir);
	assert_int_equal(config_load_string(text, "t.ini", &cfg, &errs), 0);
	rc = config_check_runtime(cfg, NULL, &errs);
	print_errors(&errs);
	assert_int_equal(rc, -EINVAL);
	assert_true(has_error(&errs, 3, "shorter than 16 bytes"));
	assert_true(has_error(&errs, 4, "api_keys_file: cannot read"));
	assert_true(has_error(&errs, 5, "log_file: the folder"));
	assert_true(has_error(&errs, 7,
			      "agent_listen: localhost:18025 is the address "
			      "of http_listen too"));
	/* serve binds agent_listen without resolving: an address only. */
	assert_true(has_error(&errs, 7,
			      "agent_listen: localhost: must be an "
			      "IP address"));
	assert_true(has_error(&errs, 8, "smtp_listen: 0.0.0.0:18025"));
	assert_true(has_error(&errs, 13, "SHIVNERI_TEST_UNSET is not set"));
	/* g runs elsewhere (spawn = no): its secrets are its host's. */
	assert_int_equal(errs.n, 8);
	config_errors_cleanup(&errs);

	/* The agent of g checks its own secrets, not f's. */
	rc = config_check_runtime(cfg, "g", &errs);
	print_errors(&errs);
	assert_int_equal(rc, -EINVAL);
	assert_true(
	    has_error(&errs, 16, "token_file: cannot read secret file"));
	assert_false(has_error(&errs, 13, "SHIVNERI_TEST_UNSET"));
	config_errors_cleanup(&errs);
	config_free(cfg);
	free(text);
	unlink(shortf);
	free(shortf);
	rmdir(dir);
	free(dir);
}

/*
 * A secret file other users may read or write is refused by both roles,
 * at its own line: the agent secret, the API keys, a provider's secret.
 */
static void
test_runtime_secret_modes(void **state)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	char *dir = tmpdir_new(), *text, *secret, *keys, *token;

	secret = dir_file(dir, "agent.secret", "0123456789abcdef0123\n");
	keys = dir_file(dir, "api-keys", "key-one-0123456789\n");
	token = dir_file(dir, "token", "tok\n");
	text = xasprintf("[server]\n"               /* 1 */
			 "data_dir = %s/data\n"     /* 2 */
			 "agent_secret_file = %s\n" /* 3 */
			 "api_keys_file = %s\n"     /* 4 */
			 "[provider.f]\n"           /* 5 */
			 "type = fake\n"            /* 6 */
			 "spawn = yes\n"            /* 7 */
			 "token_file = %s\n",       /* 8 */
			 dir, secret, keys, token);
	assert_int_equal(config_load_string(text, "t.ini", &cfg, &errs), 0);
	assert_int_equal(config_check_runtime(cfg, NULL, &errs), 0);
	assert_int_equal(config_check_runtime(cfg, "f", &errs), 0);

	assert_int_equal(chmod(secret, 0644), 0);
	assert_int_equal(chmod(keys, 0640), 0);
	assert_int_equal(chmod(token, 0620), 0);
	assert_int_equal(config_check_runtime(cfg, NULL, &errs), -EINVAL);
	print_errors(&errs);
	assert_true(has_error(&errs, 3, "agent_secret_file: "));
	assert_true(has_error(&errs, 3, "(mode 644): chmod 600 it"));
	assert_true(has_error(&errs, 4, "api_keys_file: "));
	assert_true(has_error(&errs, 4, "mode 640"));
	assert_true(has_error(&errs, 8, "token_file: "));
	assert_true(has_error(&errs, 8, "mode 620"));
	assert_int_equal(errs.n, 3);
	config_errors_cleanup(&errs);
	/* The agent's role: its secret and its provider's. */
	assert_int_equal(config_check_runtime(cfg, "f", &errs), -EINVAL);
	assert_true(has_error(&errs, 3, "mode 644"));
	assert_true(has_error(&errs, 8, "mode 620"));
	assert_int_equal(errs.n, 2);
	config_errors_cleanup(&errs);

	assert_int_equal(chmod(secret, 0600), 0);
	assert_int_equal(chmod(keys, 0400), 0);
	assert_int_equal(chmod(token, 0600), 0);
	assert_int_equal(config_check_runtime(cfg, NULL, &errs), 0);
	config_free(cfg);
	free(text);
	unlink(secret);
	unlink(keys);
	unlink(token);
	free(secret);
	free(keys);
	free(token);
	rmdir(dir);
	free(dir);
}

/*
 * The agent secret: missing is fine for the server when its folder can
 * be made, an error for an agent; env: must be set and long enough, and
 * is never turned into a file.
 */
static void
test_runtime_agent_secret(void **state)
{
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	char *dir = tmpdir_new(), *text, *s = NULL;
	size_t len = 0;
	struct stat st;

	text = xasprintf("[server]\ndata_dir = %s/data/deeper\n", dir);
	assert_int_equal(config_load_string(text, "t.ini", &cfg, &errs), 0);
	free(text);
	assert_int_equal(config_check_runtime(cfg, NULL, &errs), 0);
	assert_int_equal(config_check_runtime(cfg, "x", &errs), -EINVAL);
	assert_true(has_error(&errs, 2, "agent_secret_file: cannot read"));
	config_errors_cleanup(&errs);
	config_free(cfg);

	assert_int_equal(chdir(dir), 0);
	unsetenv("SHIVNERI_TEST_AGENT");
	assert_int_equal(config_load_string("[server]\n"
					    "agent_secret_file = "
					    "env:SHIVNERI_TEST_AGENT\n",
					    "t.ini", &cfg, &errs),
			 0);
	assert_int_equal(config_check_runtime(cfg, NULL, &errs), -EINVAL);
	assert_true(has_error(&errs, 2, "SHIVNERI_TEST_AGENT is not set"));
	config_errors_cleanup(&errs);
	assert_int_equal(config_agent_secret(cfg, true, &s, &len), -ENOENT);
	assert_int_equal(stat("env:SHIVNERI_TEST_AGENT", &st), -1);

	setenv("SHIVNERI_TEST_AGENT", "too-short", 1);
	assert_int_equal(config_check_runtime(cfg, NULL, &errs), -EINVAL);
	assert_true(has_error(&errs, 2, "shorter than 16 bytes"));
	config_errors_cleanup(&errs);

	setenv("SHIVNERI_TEST_AGENT", "0123456789abcdef0123", 1);
	assert_int_equal(config_check_runtime(cfg, NULL, &errs), 0);
	assert_int_equal(config_agent_secret(cfg, true, &s, &len), 0);
	assert_int_equal(len, 20);
	assert_memory_equal(s, "0123456789abcdef0123", 20);
	assert_int_equal(stat("env:SHIVNERI_TEST_AGENT", &st), -1);
	free(s);
	unsetenv("SHIVNERI_TEST_AGENT");
	config_free(cfg);
	assert_int_equal(chdir("/"), 0);
	rmdir(dir);
	free(dir);
}

/*
 * max_in_flight defaults to HTTP_MAX_IN_FLIGHT_DEFAULT (128) for the HTTP
 * API types and stays 32 for the others; a value in the file wins.
 */
static void
test_max_in_flight_default(void **state)
{
	static const char text[] = "[provider.mg]\n"
				   "type = mailgun\n"
				   "api_key_file = env:SHIVNERI_TEST_MG\n"
				   "domain = mg.example.com\n"
				   "[provider.mg8]\n"
				   "type = mailgun\n"
				   "api_key_file = env:SHIVNERI_TEST_MG\n"
				   "domain = mg.example.com\n"
				   "max_in_flight = 8\n"
				   "[provider.md]\n"
				   "type = maildir\n"
				   "path = /tmp/shivneri-test-md\n";
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;

	if (config_load_string(text, "t.ini", &cfg, &errs) != 0) {
		print_errors(&errs);
		fail();
	}
	assert_int_equal(config_provider(cfg, "mg")->max_in_flight, 128);
	assert_int_equal(config_provider(cfg, "mg8")->max_in_flight, 8);
	assert_int_equal(config_provider(cfg, "md")->max_in_flight, 32);
	config_free(cfg);
	config_errors_cleanup(&errs);
}

/* Unset, one client's share of the event streams follows a smaller
 * events_max_clients down; set, it may take all of them. */
static void
test_events_client_streams_default(void **state)
{
	static const struct {
		const char *text;
		int want;
	} cases[] = {
	    {"[server]\nevents_max_clients = 3\n", 3},
	    {"[server]\nevents_max_clients = 100\n", 8},
	    {"[server]\nevents_max_clients = 5\n"
	     "events_max_client_streams = 5\n",
	     5},
	    {"[server]\nevents_max_client_streams = 1\n", 1},
	};
	struct config_errors errs = {NULL, 0};
	struct config *cfg;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cfg = NULL;
		if (config_load_string(cases[i].text, "t.ini", &cfg, &errs) !=
		    0) {
			print_errors(&errs);
			fail_msg("case %zu", i);
		}
		assert_int_equal(cfg->events_max_client_streams, cases[i].want);
		config_free(cfg);
	}
	config_errors_cleanup(&errs);
}

/* A number is digits: strtoll would also take a sign or blanks first. */
static void
test_int_is_digits(void **state)
{
	static const char *const bad[] = {"+5", "+0", "- 5", "5 5", "0x5"};
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	char *text;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		text = xasprintf("[server]\nmax_attempts = %s\n", bad[i]);
		assert_int_equal(config_load_string(text, "t.ini", &cfg, &errs),
				 -EINVAL);
		assert_true(has_error(&errs, 2,
				      "max_attempts: must be an "
				      "integer between 1 and 1000"));
		config_errors_cleanup(&errs);
		free(text);
	}
	assert_int_equal(config_load_string("[server]\nmax_attempts = 0007\n",
					    "t.ini", &cfg, &errs),
			 0);
	assert_int_equal(cfg->max_attempts, 7);
	config_free(cfg);
}

static void
count_key(const char *key, size_t klen, void *arg)
{
	char *seen = arg;

	strncat(seen, key, klen);
	strncat(seen, "|", 2);
}

/* The one rule of api_keys_file: check-config, serve and SIGHUP. */
static void
test_api_keys_parse(void **state)
{
	static const char text[] = "  one \r\n\n# two\n\t#three\n"
				   "four\tfive\r\n \t \nsix";
	char seen[128] = "";
	size_t n = 99;

	(void)state;
	assert_int_equal(
	    config_api_keys_parse(text, sizeof(text) - 1, count_key, seen, &n),
	    0);
	assert_int_equal(n, 3);
	assert_string_equal(seen, "one|four\tfive|six|");
	assert_int_equal(config_api_keys_parse("", 0, NULL, NULL, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(config_api_keys_parse("# only\n\n", 8, NULL, NULL, &n),
			 0);
	assert_int_equal(n, 0);
	assert_int_equal(config_api_keys_parse("k1\nk\0\n", 6, NULL, NULL, &n),
			 -EINVAL);
}

/* mailgun_domains names domains the drop-in could be asked for. */
static void
test_mailgun_domains(void **state)
{
	static const char *const bad[] = {"a.com;b.com", ",, ,",
					  "a..com",      ".a.com",
					  "x_y.com",     "a.com, b.com/"};
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	char *text;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		text = xasprintf("[server]\n\nmailgun_domains = %s\n", bad[i]);
		assert_int_equal(config_load_string(text, "t.ini", &cfg, &errs),
				 -EINVAL);
		assert_true(has_error(&errs, 3, "mailgun_domains: "));
		config_errors_cleanup(&errs);
		free(text);
	}
	assert_int_equal(
	    config_load_string("[server]\nmailgun_domains = mg.Example.com, "
			       "b-2.example.net\tc.org\n",
			       "t.ini", &cfg, &errs),
	    0);
	config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_full),
	    cmocka_unit_test(test_embedded_default),
	    cmocka_unit_test(test_all_errors),
	    cmocka_unit_test(test_cross_key),
	    cmocka_unit_test(test_strings),
	    cmocka_unit_test(test_max_in_flight_default),
	    cmocka_unit_test(test_events_client_streams_default),
	    cmocka_unit_test(test_long_line_and_crlf),
	    cmocka_unit_test(test_long_values),
	    cmocka_unit_test(test_split_key_line),
	    cmocka_unit_test(test_missing_file),
	    cmocka_unit_test(test_secret_env),
	    cmocka_unit_test(test_secret_file),
	    cmocka_unit_test(test_agent_secret),
	    cmocka_unit_test(test_registered_type),
	    cmocka_unit_test(test_provider_max_bytes),
	    cmocka_unit_test(test_type_default_limits),
	    cmocka_unit_test(test_runtime_errors),
	    cmocka_unit_test(test_runtime_agent_secret),
	    cmocka_unit_test(test_runtime_secret_modes),
	    cmocka_unit_test(test_int_is_digits),
	    cmocka_unit_test(test_api_keys_parse),
	    cmocka_unit_test(test_mailgun_domains),
	};

	/* As CONNECTOR_REGISTER does for a connector of the build. */
	config_ptype_register(&fake_type);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
