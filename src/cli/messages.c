/*
 * shivneri messages: one page of the queue from GET /v1/messages, one
 * line per message, newest first, with the cursor of the next page
 * (--before) when there is one.  The filters are %-escaped into the query
 * whatever they are; the server checks them (a bad one exits 1 with its
 * message).  Values come from the server and echo what callers and
 * providers sent, so they are printed sanitized.
 */
#include "cli/cli.h"
#include "cli/cli_http.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A query string is at most 1 KiB on the server; this leaves room. */
#define QUERY_MAX 4096

enum {
	OPT_STATUS = CLI_OPT_EXTRA,
	OPT_PROVIDER,
	OPT_LIMIT,
	OPT_BEFORE,
};

struct filters {
	const char *status, *provider, *limit, *before;
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: shivneri messages [--url URL] [--api-key KEY | "
		   "--api-key-file FILE] [--json]\n"
		   "         [--status S] [--provider P] [--limit N] "
		   "[--before CURSOR]\n"
		   "\n"
		   "One page of messages, newest first: id, status, last "
		   "provider,\n"
		   "attempts, last change and the error of a failed one.  "
		   "--status is\n"
		   "queued, sending, delivered or failed; --limit 1 to 200 "
		   "(default\n"
		   "50); --before takes the \"next:\" cursor printed after a "
		   "page.\n");
	cli_opts_usage_shared(f);
}

/* The cursor of the next page, printed after the table by print_page. */
static const char *next_cursor;

static void
print_page(const json_t *list)
{
	const json_t *m;
	char id[40], st[16], prov[72], upd[40], err[256];
	size_t i;

	printf("%-26s %-9s %-16s %8s %-24s %s\n", "ID", "STATUS", "PROVIDER",
	       "ATTEMPTS", "UPDATED", "ERROR");
	for (i = 0; i < json_array_size(list); i++) {
		m = json_array_get(list, i);
		if (!json_is_object(m))
			continue;
		printf("%-26s %-9s %-16s %8lld %-24s %s\n",
		       cli_json_text(m, "id", id, sizeof(id)),
		       cli_json_text(m, "status", st, sizeof(st)),
		       cli_json_text(m, "provider", prov, sizeof(prov)),
		       cli_json_int(m, "attempt_count", 0),
		       cli_json_text(m, "updated_at", upd, sizeof(upd)),
		       cli_json_text(m, "error", err, sizeof(err)));
	}
	if (next_cursor != NULL)
		printf("next: %s\n",
		       log_sanitize(next_cursor, strlen(next_cursor), err,
				    sizeof(err)));
}

/* Appends "&name=VALUE" (escaped) when value is set; 0 or -1. */
static int
query_add(CURL *c, struct buf *q, const char *name, const char *value)
{
	char *esc;
	int rc;

	if (value == NULL)
		return 0;
	esc = curl_easy_escape(c, value, 0);
	if (esc == NULL)
		return -1;
	rc = buf_appendf(q, "%s%s=%s", q->len > 0 ? "&" : "?", name, esc);
	curl_free(esc);
	return rc;
}

static void
take_filter(int val, const char *value, void *arg)
{
	struct filters *fl = arg;

	switch (val) {
	case OPT_STATUS:
		fl->status = value;
		break;
	case OPT_PROVIDER:
		fl->provider = value;
		break;
	case OPT_LIMIT:
		fl->limit = value;
		break;
	case OPT_BEFORE:
		fl->before = value;
		break;
	}
}

/* Options into o and fl; 0 to go on, else -1 with *status to return. */
static int
parse(int argc, char **argv, struct cli_opts *o, struct filters *fl,
      int *status)
{
	static const struct option opts[] = {
	    {"status", required_argument, NULL, OPT_STATUS},
	    {"provider", required_argument, NULL, OPT_PROVIDER},
	    {"limit", required_argument, NULL, OPT_LIMIT},
	    {"before", required_argument, NULL, OPT_BEFORE},
	    {NULL, 0, NULL, 0},
	};

	memset(fl, 0, sizeof(*fl));
	return cli_opts_parse_extra("messages", argc, argv, NULL, usage, opts,
				    take_filter, fl, o, status);
}

int
cli_messages_main(int argc, char **argv)
{
	struct cli_http_response resp;
	struct cli_opts o;
	struct filters fl;
	struct buf q;
	const json_t *list;
	char *path = NULL;
	CURL *c;
	int rc;

	if (parse(argc, argv, &o, &fl, &rc) != 0)
		return rc;
	rc = 1;
	buf_init(&q, QUERY_MAX);
	c = curl_easy_init();
	if (c == NULL || query_add(c, &q, "status", fl.status) != 0 ||
	    query_add(c, &q, "provider", fl.provider) != 0 ||
	    query_add(c, &q, "limit", fl.limit) != 0 ||
	    query_add(c, &q, "before", fl.before) != 0) {
		fprintf(stderr, "messages: filters too long\n");
		goto out;
	}
	path = xasprintf("/v1/messages%s", q.len > 0 ? q.p : "");
	if (cli_http_request("messages", "GET", o.url, path, o.api_key, NULL,
			     NULL, &resp) != 0)
		goto out;
	list = json_object_get(resp.json, "messages");
	if (resp.status != 200 || !json_is_array(list)) {
		cli_http_print_error("messages", &resp);
	} else if (o.json) {
		cli_http_print_json(&resp);
		rc = 0;
	} else {
		next_cursor = cli_json_str(resp.json, "next");
		print_page(list);
		next_cursor = NULL;
		rc = 0;
	}
	cli_http_response_cleanup(&resp);
out:
	free(path);
	buf_cleanup(&q);
	if (c != NULL)
		curl_easy_cleanup(c);
	return rc;
}
