/*
 * shivneri status ID: one message and every attempt at it, from
 * GET /v1/messages/ID.  The id is escaped into the path, whatever it is;
 * the server decides whether it exists (404 exits 1).  Values come from
 * the server and are printed sanitized, since they echo what callers and
 * providers sent.
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
	fprintf(f, "usage: shivneri status [--url URL] [--api-key KEY | "
		   "--api-key-file FILE] "
		   "[--json] ID\n"
		   "\n"
		   "Shows a message's status and every attempt to deliver "
		   "it.\n");
	cli_opts_usage_shared(f);
}

/* A field of obj as printable text: strings sanitized, null as "-". */
static const char *
field(const json_t *obj, const char *key, char *buf, size_t bufsz)
{
	const json_t *v = json_object_get(obj, key);
	const char *s;

	if (json_is_string(v)) {
		s = json_string_value(v);
		return log_sanitize(s, json_string_length(v), buf, bufsz);
	}
	if (json_is_integer(v)) {
		snprintf(buf, bufsz, "%lld", (long long)json_integer_value(v));
		return buf;
	}
	return "-";
}

static void
print_message(const json_t *m)
{
	const json_t *atts, *a, *to;
	char b1[512], b2[128], b3[128], b4[128], b5[64];
	size_t i;

	printf("id:                  %s\n", field(m, "id", b1, sizeof(b1)));
	printf("status:              %s\n", field(m, "status", b1, sizeof(b1)));
	printf("from:                %s\n", field(m, "from", b1, sizeof(b1)));
	to = json_object_get(m, "to");
	if (json_is_array(to)) {
		printf("to:                  ");
		for (i = 0; i < json_array_size(to); i++) {
			const json_t *t = json_array_get(to, i);
			if (json_is_string(t))
				printf("%s%s", i > 0 ? ", " : "",
				       log_sanitize(json_string_value(t),
						    json_string_length(t), b1,
						    sizeof(b1)));
		}
		printf("\n");
	}
	printf("subject:             %s\n",
	       field(m, "subject", b1, sizeof(b1)));
	printf("provider:            %s\n",
	       field(m, "provider", b1, sizeof(b1)));
	printf("provider_message_id: %s\n",
	       field(m, "provider_message_id", b1, sizeof(b1)));
	printf("error:               %s\n", field(m, "error", b1, sizeof(b1)));
	printf("created:             %s\n",
	       field(m, "created_at", b1, sizeof(b1)));
	printf("updated:             %s\n",
	       field(m, "updated_at", b1, sizeof(b1)));
	atts = json_object_get(m, "attempts");
	if (!json_is_array(atts) || json_array_size(atts) == 0) {
		printf("attempts:            none\n");
		return;
	}
	printf("attempts:\n");
	printf("  %-3s %-24s %-16s %-10s %s\n", "n", "at", "provider",
	       "outcome", "detail");
	for (i = 0; i < json_array_size(atts); i++) {
		a = json_array_get(atts, i);
		if (!json_is_object(a))
			continue;
		printf("  %-3s %-24s %-16s %-10s %s\n",
		       field(a, "n", b5, sizeof(b5)),
		       field(a, "at", b2, sizeof(b2)),
		       field(a, "provider", b3, sizeof(b3)),
		       field(a, "outcome", b4, sizeof(b4)),
		       field(a, "detail", b1, sizeof(b1)));
	}
}

int
cli_status_main(int argc, char **argv)
{
	struct cli_opts o;
	char *path;
	int rc;

	if (cli_opts_parse("status", argc, argv, "message ID", usage, &o,
			   &rc) != 0)
		return rc;
	path = cli_message_path(argv[argc - 1], "");
	if (path == NULL)
		return 1;
	rc = cli_http_get_print("status", &o, path, NULL, JSON_OBJECT,
				print_message);
	free(path);
	return rc;
}
