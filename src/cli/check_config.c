/*
 * shivneri check-config -c FILE: loads a configuration the way serve and
 * agent do and reports every error found, each as FILE:LINE: message, so
 * that a bad file is fixed in one round.  Past the text, it runs the same
 * run-time checks as serve (config_check_runtime(): secret and key files,
 * environment variables, the log folder, colliding listen addresses), so
 * a file it passes is a file serve starts with.  Exit 0 when it is valid,
 * 2 when it is not (or cannot be read).
 */
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "common/config.h"

#include <getopt.h>
#include <stdio.h>

static void
usage(FILE *f)
{
	fprintf(f, "usage: shivneri check-config -c FILE\n"
		   "\n"
		   "Validates a configuration: prints \"FILE: ok\", or every "
		   "error as\n"
		   "FILE:LINE: message on stderr and exits 2.\n");
}

int
cli_check_config_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	const char *path = NULL;
	size_t i;
	int ch;

	optind = 1;
	opterr = 0;
	for (;;) {
		ch = getopt_long(argc, argv, "c:h", opts, NULL);
		if (ch == -1)
			break;
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return cli_opts_bad_option("check-config", argv, usage);
		}
	}
	if (path == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (config_load(path, &cfg, &errs) != 0 ||
	    config_check_runtime(cfg, NULL, &errs) != 0) {
		config_free(cfg);
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		if (errs.n == 0)
			fprintf(stderr, "%s: invalid\n", path);
		config_errors_cleanup(&errs);
		return 2;
	}
	printf("%s: ok\n", path);
	config_free(cfg);
	return 0;
}
