/*
 * shivneri queue: message counts by status, from GET /v1/stats.
 */
#include "cli/cli.h"
#include "cli/cli_http.h"

#include <jansson.h>

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: shivneri queue [--url URL] [--api-key KEY] "
		"[--json]\n"
		"\n"
		"Counts messages by status: queued, sending, delivered, "
		"failed.\n"
		"--url defaults to $SHIVNERI_URL or %s.\n",
		CLI_DEFAULT_URL);
}

int
cli_queue_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"url", required_argument, NULL, 'u'},
	    {"api-key", required_argument, NULL, 'k'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static const char *const statuses[] = {"queued", "sending", "delivered",
					       "failed"};
	struct cli_http_response resp;
	const char *url = cli_http_default_url();
	const char *api_key = getenv("SHIVNERI_API_KEY");
	bool json = false;
	size_t i;
	int ch;

	optind = 1;
	opterr = 0;
	for (;;) {
		ch = getopt_long(argc, argv, "h", opts, NULL);
		if (ch == -1)
			break;
		switch (ch) {
		case 'u':
			url = optarg;
			break;
		case 'k':
			api_key = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr,
				"queue: unknown or incomplete option '%s'\n",
				argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "queue: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return 2;
	}
	if (cli_http_request("queue", "GET", url, "/v1/stats", api_key, NULL,
			     NULL, &resp) != 0)
		return 1;
	if (resp.status != 200 || !json_is_object(resp.json)) {
		cli_http_print_error("queue", &resp);
		cli_http_response_cleanup(&resp);
		return 1;
	}
	if (json) {
		cli_http_print_json(&resp);
	} else {
		for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
			printf("%-10s %lld\n", statuses[i],
			       cli_json_int(resp.json, statuses[i], 0));
	}
	cli_http_response_cleanup(&resp);
	return 0;
}
