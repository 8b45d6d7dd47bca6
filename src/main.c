/*
 * shivneri: one binary, one subcommand per role.  Exit status everywhere:
 * 0 done, 1 failed at run time, 2 usage or configuration error.
 */
#include "agent/agent.h"
#include "cli/cli.h"
#include "server/serve.h"

#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *help;
} commands[] = {
    {"serve", serve_main, "run the server"},
    {"agent", agent_main, "run the agent of one provider"},
    {"send", cli_send_main, "submit one message"},
    {"status", cli_status_main, "show a message and its attempts"},
    {"providers", cli_providers_main, "list providers and their state"},
    {"queue", cli_queue_main, "count messages by status"},
    {"messages", cli_messages_main, "list a page of messages"},
    {"retry", cli_retry_main, "put a failed message back to queued"},
    {"check-config", cli_check_config_main, "validate a configuration"},
    {"version", cli_version_main, "print versions"},
};

static void
usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: shivneri COMMAND [options]   (COMMAND --help)\n\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
}

int
main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0)
		return cli_version_main(1, argv + 1);
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].main(argc - 1, argv + 1);
	fprintf(stderr, "shivneri: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
