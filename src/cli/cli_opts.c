/*
 * Option parsing for the client commands (see cli_opts.h).  getopt_long()
 * runs with opterr off so that every command words its own errors the
 * same way, and optind is reset first because a process may run more than
 * one command (the tests do).  Nothing here exits; a usage error becomes
 * exit status 2 in the caller.
 */
#include "cli/cli_opts.h"
#include "cli/cli_http.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

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
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	};
	struct option opts[4 + CLI_OPTS_EXTRA_MAX + 1];
	size_t n = 4;
	int ch;

	memcpy(opts, shared, sizeof(shared));
	for (; extra != NULL && extra->name != NULL; extra++) {
		if (n == 4 + CLI_OPTS_EXTRA_MAX)
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
