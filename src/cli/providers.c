/*
 * shivneri providers: the table of GET /v1/providers, one line per
 * provider.  Names and types come from configurations and from agents
 * that registered on the fly, so they are printed sanitized.  Columns
 * added later go before REASON, the free text, so the ones before keep
 * their places; --json prints the API's answer as it is.
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
	fprintf(
	    f,
	    "usage: shivneri providers [--url URL] [--api-key KEY | "
	    "--api-key-file FILE] "
	    "[--json]\n"
	    "\n"
	    "One line per provider: name, type, state, in flight, "
	    "delivered,\n"
	    "failed, last heartbeat, paused until (a throttled provider), "
	    "the\n"
	    "agent's link (tls, plain, or - while none is linked), the "
	    "largest\n"
	    "message it is offered (MAX_SIZE: MiB and KiB when exact, else "
	    "MB,\n"
	    "kB), until when that limit is lowered after a too_large "
	    "answer,\n"
	    "until when messages with a non-ASCII address avoid it (after a\n"
	    "needs_smtputf8 answer), and the reason it is not up.\n");
	cli_opts_usage_shared(f);
}

/*
 * bytes in human units, as the console writes them (web/app.js,
 * fmtBytes): whole MiB or KiB when exact (the server's default limit is
 * 25 MiB), whole MB or kB when exact (providers document theirs so),
 * else MB or kB with one decimal, rounded down so that a limit is never
 * overstated.  "-" when absent.
 */
static const char *
human_bytes(long long b, char *buf, size_t bufsz)
{
	const long long kib = 1024, mib = 1024 * 1024;

	if (b < 0)
		snprintf(buf, bufsz, "-");
	else if (b >= mib && b % mib == 0)
		snprintf(buf, bufsz, "%lld MiB", b / mib);
	else if (b >= 1000000 && b % 1000000 == 0)
		snprintf(buf, bufsz, "%lld MB", b / 1000000);
	else if (b >= 1000000)
		snprintf(buf, bufsz, "%lld.%lld MB", b / 1000000,
			 b % 1000000 / 100000);
	else if (b >= kib && b % kib == 0)
		snprintf(buf, bufsz, "%lld KiB", b / kib);
	else if (b >= 1000 && b % 1000 == 0)
		snprintf(buf, bufsz, "%lld kB", b / 1000);
	else if (b >= 1000)
		snprintf(buf, bufsz, "%lld.%lld kB", b / 1000, b % 1000 / 100);
	else
		snprintf(buf, bufsz, "%lld B", b);
	return buf;
}

/* link_tls: true, false, or null (or absent) while no agent is linked. */
static const char *
link_word(const json_t *p)
{
	const json_t *v = json_object_get(p, "link_tls");

	if (json_is_true(v))
		return "tls";
	if (json_is_false(v))
		return "plain";
	return "-";
}

static void
print_table(const json_t *list)
{
	const json_t *p;
	char name[72], type[24], state[24], hb[32], until[40], why[256];
	char size[32], lowered[40], no_utf8[40];
	long long ago;
	size_t i;

	printf("%-24s %-10s %-9s %9s %10s %8s %-15s %-24s %-5s %-9s %-24s "
	       "%-24s %s\n",
	       "NAME", "TYPE", "STATE", "IN_FLIGHT", "DELIVERED", "FAILED",
	       "LAST_HEARTBEAT", "PAUSED_UNTIL", "LINK", "MAX_SIZE",
	       "LOWERED_UNTIL", "NO_SMTPUTF8_UNTIL", "REASON");
	for (i = 0; i < json_array_size(list); i++) {
		p = json_array_get(list, i);
		if (!json_is_object(p))
			continue;
		ago = cli_json_int(p, "last_heartbeat_ms_ago", -1);
		if (ago < 0)
			snprintf(hb, sizeof(hb), "-");
		else
			snprintf(hb, sizeof(hb), "%lldms ago", ago);
		printf("%-24s %-10s %-9s %9lld %10lld %8lld %-15s %-24s %-5s "
		       "%-9s %-24s %-24s %s\n",
		       cli_json_text(p, "name", name, sizeof(name)),
		       cli_json_text(p, "type", type, sizeof(type)),
		       cli_json_text(p, "state", state, sizeof(state)),
		       cli_json_int(p, "in_flight", 0),
		       cli_json_int(p, "delivered", 0),
		       cli_json_int(p, "failed", 0), hb,
		       cli_json_text(p, "paused_until", until, sizeof(until)),
		       link_word(p),
		       human_bytes(cli_json_int(p, "max_message_bytes", -1),
				   size, sizeof(size)),
		       cli_json_text(p, "max_message_bytes_learned_until",
				     lowered, sizeof(lowered)),
		       cli_json_text(p, "smtputf8_refused_until", no_utf8,
				     sizeof(no_utf8)),
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
