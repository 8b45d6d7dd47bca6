/*
 * shivneri providers: the table of GET /v1/providers, one line per
 * provider.  Names and types come from configurations and from agents
 * that registered on the fly, so they are printed sanitized.
 */
#include "cli/cli.h"
#include "cli/cli_http.h"
#include "common/log.h"

#include <jansson.h>

#include <stdio.h>
#include <string.h>

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: shivneri providers [--url URL] [--api-key KEY | "
		"--api-key-file FILE] "
		"[--json]\n"
		"\n"
		"One line per provider: name, type, state, in flight, "
		"delivered,\n"
		"failed, last heartbeat, paused until (a throttled provider) "
		"and\n"
		"the reason it is not up.\n");
	cli_opts_usage_shared(f);
}

static void
print_table(const json_t *list)
{
	const json_t *p;
	char name[72], type[24], state[24], hb[32], until[40], why[256];
	long long ago;
	size_t i;

	printf("%-24s %-10s %-9s %9s %10s %8s %-15s %-24s %s\n", "NAME", "TYPE",
	       "STATE", "IN_FLIGHT", "DELIVERED", "FAILED", "LAST_HEARTBEAT",
	       "PAUSED_UNTIL", "REASON");
	for (i = 0; i < json_array_size(list); i++) {
		p = json_array_get(list, i);
		if (!json_is_object(p))
			continue;
		ago = cli_json_int(p, "last_heartbeat_ms_ago", -1);
		if (ago < 0)
			snprintf(hb, sizeof(hb), "-");
		else
			snprintf(hb, sizeof(hb), "%lldms ago", ago);
		printf("%-24s %-10s %-9s %9lld %10lld %8lld %-15s %-24s %s\n",
		       cli_json_text(p, "name", name, sizeof(name)),
		       cli_json_text(p, "type", type, sizeof(type)),
		       cli_json_text(p, "state", state, sizeof(state)),
		       cli_json_int(p, "in_flight", 0),
		       cli_json_int(p, "delivered", 0),
		       cli_json_int(p, "failed", 0), hb,
		       cli_json_text(p, "paused_until", until, sizeof(until)),
		       cli_json_text(p, "reason", why, sizeof(why)));
	}
}

int
cli_providers_main(int argc, char **argv)
{
	struct cli_opts o;
	int status;

	if (cli_opts_parse("providers", argc, argv, NULL, usage, &o, &status) !=
	    0)
		return status;
	return cli_http_get_print("providers", &o, "/v1/providers", "providers",
				  JSON_ARRAY, print_table);
}
