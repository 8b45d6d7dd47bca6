/*
 * shivneri retry ID: puts a failed message back to queued with a fresh
 * budget, by POST /v1/messages/ID/retry.  The id is escaped into the path,
 * whatever it is; the server decides (404 unknown, 409 not failed: both
 * exit 1 with the server's message).
 */
#include "cli/cli.h"
#include "cli/cli_http.h"
#include "common/log.h"
#include "common/util.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
usage(FILE *f)
{
	fprintf(f, "usage: shivneri retry [--url URL] [--api-key KEY | "
		   "--api-key-file FILE] [--json] "
		   "ID\n"
		   "\n"
		   "Puts a failed message back to queued: its attempts and its "
		   "time to\n"
		   "live count again from now; its earlier attempts stay on "
		   "record.\n");
	cli_opts_usage_shared(f);
}

int
cli_retry_main(int argc, char **argv)
{
	struct cli_http_response resp;
	struct cli_opts o;
	char *path, id[64];
	const char *s;
	int rc;

	if (cli_opts_parse("retry", argc, argv, "message ID", usage, &o, &rc) !=
	    0)
		return rc;
	rc = 1;
	path = cli_message_path(argv[argc - 1], "/retry");
	if (path == NULL)
		return rc;
	if (cli_http_request("retry", "POST", o.url, path, o.api_key, NULL,
			     NULL, &resp) != 0)
		goto out;
	if (resp.status != 200 || !json_is_object(resp.json)) {
		cli_http_print_error("retry", &resp);
	} else if (o.json) {
		cli_http_print_json(&resp);
		rc = 0;
	} else {
		s = cli_json_str(resp.json, "id");
		printf("%s queued\n",
		       s ? log_sanitize(s, strlen(s), id, sizeof(id)) : "-");
		rc = 0;
	}
	cli_http_response_cleanup(&resp);
out:
	free(path);
	return rc;
}
