/*
 * shivneri queue: message counts by status, from GET /v1/stats.
 */
#include "cli/cli.h"
#include "cli/cli_http.h"

#include <jansson.h>

#include <stdio.h>

static void
usage(FILE *f)
{
	fprintf(f, "usage: shivneri queue [--url URL] [--api-key KEY | "
		   "--api-key-file FILE] "
		   "[--json]\n"
		   "\n"
		   "Counts messages by status: queued, sending, delivered, "
		   "failed.\n");
	cli_opts_usage_shared(f);
}

static void
print_counts(const json_t *stats)
{
	static const char *const statuses[] = {"queued", "sending", "delivered",
					       "failed"};
	size_t i;

	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		printf("%-10s %lld\n", statuses[i],
		       cli_json_int(stats, statuses[i], 0));
}

int
cli_queue_main(int argc, char **argv)
{
	struct cli_opts o;
	int status;

	if (cli_opts_parse("queue", argc, argv, NULL, usage, &o, &status) != 0)
		return status;
	return cli_http_get_print("queue", &o, "/v1/stats", NULL, JSON_OBJECT,
				  print_counts);
}
