/*
 * The option handling the client commands share: the usage error every
 * command reports the same way, and the --url, --api-key, --api-key-file,
 * --timeout, --json and --help set of the commands that read the server's
 * API.
 */
#ifndef SHIVNERI_CLI_OPTS_H
#define SHIVNERI_CLI_OPTS_H

#include <stdbool.h>
#include <stdio.h>

/* The --api-key-file cap: keys are short, a big file is a wrong one. */
#define CLI_KEY_FILE_MAX 4096

/* A command's usage text, to stdout for --help or stderr on an error. */
typedef void (*cli_usage_fn)(FILE *f);

struct cli_opts {
	const char *url; /* --url, else cli_http_default_url() */
	/* --api-key or --api-key-file, else $SHIVNERI_API_KEY or NULL */
	const char *api_key;
	bool json; /* --json: print the answer as JSON */
};

/*
 * Reports the option getopt_long() just refused (argv[optind - 1]) as
 * "CMD: unknown or incomplete option 'OPT'" and the usage on stderr;
 * returns 2, the exit status of a usage error.
 */
int cli_opts_bad_option(const char *cmd, char **argv, cli_usage_fn usage);

/*
 * The paragraph every reading command's --help ends with: where --url and
 * the key come from, --timeout, --json and the exit statuses.
 */
void cli_opts_usage_shared(FILE *f);

/*
 * --api-key-file FILE: the key is the file's text less one trailing
 * newline, so that it shows neither in ps (as --api-key does) nor in the
 * environment.  The file must be the owner's alone (mode & 077 clear), at
 * most 4 KiB, and hold one non-empty line.  0 with *key set (owned here,
 * valid until the next call), or -1 after saying why on stderr.
 */
int cli_opts_key_file(const char *cmd, const char *path, const char **key)
    __attribute__((warn_unused_result));

/*
 * --timeout SECONDS (1 to 3600): how long one request to the server may
 * take in all (cli_http_set_timeout()); -1 after saying why on stderr.
 */
int cli_opts_timeout(const char *cmd, const char *value)
    __attribute__((warn_unused_result));

/*
 * Parses argv (argv[0] is the command name) for --url, --api-key,
 * --api-key-file, --timeout, --json and --help, and checks the operands: none
 * when operand is NULL, else exactly one non-empty one, named operand in the
 * error ("give exactly one OPERAND") and left at argv[argc - 1].  Returns 0
 * when the command goes on with o filled in, or -1 when it must return *status
 * at once: 0 after --help (usage on stdout), 2 after a usage error (reported on
 * stderr).
 */
int cli_opts_parse(const char *cmd, int argc, char **argv, const char *operand,
		   cli_usage_fn usage, struct cli_opts *o, int *status)
    __attribute__((warn_unused_result));

/*
 * A command's own options beside the shared ones: each extra option's val
 * is CLI_OPT_EXTRA or more, and on_extra(val, optarg, arg) takes it.  At
 * most CLI_OPTS_EXTRA_MAX of them.
 */
#define CLI_OPT_EXTRA 256
#define CLI_OPTS_EXTRA_MAX 8
struct option;
typedef void (*cli_extra_fn)(int val, const char *value, void *arg);

/* cli_opts_parse() with extra, a table ending in a zero entry. */
int cli_opts_parse_extra(const char *cmd, int argc, char **argv,
			 const char *operand, cli_usage_fn usage,
			 const struct option *extra, cli_extra_fn on_extra,
			 void *arg, struct cli_opts *o, int *status)
    __attribute__((warn_unused_result));

#endif
