/*
 * Option parsing for the client commands (see cli_opts.h).  getopt_long()
 * runs with opterr off so that every command words its own errors the
 * same way, and optind is reset first because a process may run more than
 * one command (the tests do).  Nothing here exits; a usage error becomes
 * exit status 2 in the caller.
 */
#include "cli/cli_opts.h"
#include "cli/cli_http.h"
#include "common/config.h"
#include "common/util.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

enum {
	OPT_KEY_FILE = 1, /* below CLI_OPT_EXTRA, above any char's value */
	OPT_TIMEOUT = 2,
};

/* The key --api-key-file read last, wiped and freed at the next read. */
static char *key_from_file;
static size_t key_from_file_len;

static void
key_forget(void)
{
	if (key_from_file == NULL)
		return;
	explicit_bzero(key_from_file, key_from_file_len);
	free(key_from_file);
	key_from_file = NULL;
	key_from_file_len = 0;
}

int
cli_opts_key_file(const char *cmd, const char *path, const char **key)
{
	char err[512], *text = NULL;
	size_t len = 0;
	int rc;

	key_forget();
	if (config_secret_mode_check(path, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: --api-key-file %s\n", cmd, err);
		return -1;
	}
	rc = file_read_all(path, CLI_KEY_FILE_MAX, &text, &len);
	if (rc != 0) {
		fprintf(stderr, "%s: --api-key-file %s: %s\n", cmd, path,
			rc == -EFBIG ? "larger than 4 KiB" : strerror(-rc));
		return -1;
	}
	key_from_file = text;
	key_from_file_len = len;
	if (len > 0 && text[len - 1] == '\n')
		text[--len] = '\0';
	if (len > 0 && text[len - 1] == '\r')
		text[--len] = '\0';
	/* Never echoes the text: it is a key, or something else secret. */
	if (len == 0 || memchr(text, '\0', len) != NULL ||
	    memchr(text, '\n', len) != NULL ||
	    memchr(text, '\r', len) != NULL) {
		fprintf(stderr,
			"%s: --api-key-file %s: must hold one key on one "
			"line\n",
			cmd, path);
		key_forget();
		return -1;
	}
	*key = text;
	return 0;
}

int
cli_opts_timeout(const char *cmd, const char *value)
{
	char *end;
	long v;

	errno = 0;
	v = value[0] >= '0' && value[0] <= '9' ? strtol(value, &end, 10) : 0;
	if (v < 1 || v > 3600 || errno != 0 || *end != '\0') {
		fprintf(stderr,
			"%s: --timeout wants whole seconds, 1 to 3600\n", cmd);
		return -1;
	}
	cli_http_set_timeout(v);
	return 0;
}

void
cli_opts_usage_shared(FILE *f)
{
	fprintf(f,
		"--url defaults to $SHIVNERI_URL or %s; the key to\n"
		"$SHIVNERI_API_KEY.  --api-key shows in ps: prefer "
		"--api-key-file FILE\n"
		"(the owner's alone) or the variable.  --timeout SECONDS "
		"bounds each\n"
		"request (default %ld).  --json prints the answer as JSON.\n"
		"Exit status: 0 done, 1 failed (server unreachable or slow, "
		"an error\n"
		"answer, an answer not understood), 2 usage.\n",
		CLI_DEFAULT_URL, CLI_HTTP_TIMEOUT_S);
}

int
cli_opts_bad_option(const char *cmd, char **argv, cli_usage_fn usage)
{
	fprintf(stderr, "%s: unknown or incomplete option '%s'\n", cmd,
		argv[optind - 1]);
	usage(stderr);
	return 2;
}

int
cli_opts_parse(const char *cmd, int argc, char **argv, const char *operand,
	       cli_usage_fn usage, struct cli_opts *o, int *status)
{
	return cli_opts_parse_extra(cmd, argc, argv, operand, usage, NULL, NULL,
				    NULL, o, status);
}

int
cli_opts_parse_extra(const char *cmd, int argc, char **argv,
		     const char *operand, cli_usage_fn usage,
		     const struct option *extra, cli_extra_fn on_extra,
		     void *arg, struct cli_opts *o, int *status)
{
	static const struct option shared[] = {
	    {"url", required_argument, NULL, 'u'},
	    {"api-key", required_argument, NULL, 'k'},
	    {"api-key-file", required_argument, NULL, OPT_KEY_FILE},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	};
	enum { NSHARED = sizeof(shared) / sizeof(shared[0]) };
	struct option opts[NSHARED + CLI_OPTS_EXTRA_MAX + 1];
	size_t n = NSHARED;
	int ch;

	memcpy(opts, shared, sizeof(shared));
	for (; extra != NULL && extra->name != NULL; extra++) {
		if (n == NSHARED + CLI_OPTS_EXTRA_MAX)
			abort(); /* a command's table, not input */
		opts[n++] = *extra;
	}
	memset(&opts[n], 0, sizeof(opts[n]));
	o->url = cli_http_default_url();
	o->api_key = getenv("SHIVNERI_API_KEY");
	o->json = false;
	optind = 1;
	opterr = 0;
	for (;;) {
		ch = getopt_long(argc, argv, "h", opts, NULL);
		if (ch == -1)
			break;
		switch (ch) {
		case 'u':
			o->url = optarg;
			break;
		case 'k':
			o->api_key = optarg;
			break;
		case OPT_KEY_FILE:
			if (cli_opts_key_file(cmd, optarg, &o->api_key) != 0)
				goto usage_error;
			break;
		case OPT_TIMEOUT:
			if (cli_opts_timeout(cmd, optarg) != 0)
				goto usage_error;
			break;
		case 'j':
			o->json = true;
			break;
		case 'h':
			usage(stdout);
			*status = 0;
			return -1;
		default:
			if (ch >= CLI_OPT_EXTRA && on_extra != NULL) {
				on_extra(ch, optarg, arg);
				break;
			}
			*status = cli_opts_bad_option(cmd, argv, usage);
			return -1;
		}
	}
	if (operand == NULL && optind != argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", cmd,
			argv[optind]);
		goto usage_error;
	}
	if (operand != NULL &&
	    (argc - optind != 1 || argv[optind][0] == '\0')) {
		fprintf(stderr, "%s: give exactly one %s\n", cmd, operand);
		goto usage_error;
	}
	return 0;
usage_error:
	usage(stderr);
	*status = 2;
	return -1;
}
