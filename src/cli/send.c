/*
 * shivneri send: builds the JSON of POST /v1/messages from the command
 * line and prints the id the server gives back.  Files named on the
 * command line (--text-file, --html-file, --attach) are read whole; the
 * bodies must be UTF-8 since JSON strings are, attachments go base64 with
 * a content type guessed from the extension.  Bad usage exits 2 before
 * anything is sent; an unreadable file, a refused connection or an API
 * error exits 1 with the reason on stderr.
 */
#include "cli/cli.h"
#include "cli/cli_http.h"
#include "cli/cli_opts.h"
#include "common/util.h"

#include <jansson.h>
#include <openssl/evp.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SEND_MAX_FILE (256 * 1024 * 1024)

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: shivneri send [--url URL] [--api-key KEY] --from ADDR\n"
		"           --to ADDR [--to ADDR]... [--cc ADDR]... "
		"[--bcc ADDR]...\n"
		"           --subject TEXT [--text TEXT | --text-file FILE]\n"
		"           [--html-file FILE] [--attach FILE]... "
		"[--reply-to ADDR]\n"
		"           [--header 'Name: value']... [--tag TAG]...\n"
		"           [--idempotency-key KEY]\n"
		"\n"
		"Submits one message and prints its id.  --url defaults to\n"
		"$SHIVNERI_URL or %s; --api-key to $SHIVNERI_API_KEY.\n"
		"Exit status: 0 queued, 1 refused or unreachable, 2 usage.\n",
		CLI_DEFAULT_URL);
}

static const struct {
	const char *ext;
	const char *type;
} mime_types[] = {
    {"txt", "text/plain"},         {"csv", "text/csv"},
    {"html", "text/html"},         {"htm", "text/html"},
    {"pdf", "application/pdf"},    {"json", "application/json"},
    {"zip", "application/zip"},    {"gz", "application/gzip"},
    {"xml", "application/xml"},    {"png", "image/png"},
    {"jpg", "image/jpeg"},         {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},          {"svg", "image/svg+xml"},
    {"webp", "image/webp"},        {"ics", "text/calendar"},
    {"doc", "application/msword"}, {"eml", "message/rfc822"},
};

static const char *
guess_type(const char *filename)
{
	const char *dot = strrchr(filename, '.');
	size_t i;

	if (dot == NULL)
		return "application/octet-stream";
	for (i = 0; i < ARRAY_SIZE(mime_types); i++)
		if (strcasecmp(dot + 1, mime_types[i].ext) == 0)
			return mime_types[i].type;
	return "application/octet-stream";
}

static const char *
base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s != NULL ? s + 1 : path;
}

/* Reads path into a new JSON string; NULL after a message on stderr. */
static json_t *
file_string(const char *path)
{
	json_t *j;
	char *buf;
	size_t len;
	int rc;

	rc = file_read_all(path, SEND_MAX_FILE, &buf, &len);
	if (rc != 0) {
		fprintf(stderr, "send: %s: %s\n", path, strerror(-rc));
		return NULL;
	}
	j = json_stringn(buf, len);
	free(buf);
	if (j == NULL)
		fprintf(stderr, "send: %s: not UTF-8 text\n", path);
	return j;
}

static json_t *
attachment(const char *path)
{
	json_t *a = NULL;
	unsigned char *b64 = NULL;
	char *buf = NULL;
	size_t len;
	int rc;

	rc = file_read_all(path, SEND_MAX_FILE, &buf, &len);
	if (rc != 0) {
		fprintf(stderr, "send: %s: %s\n", path, strerror(-rc));
		return NULL;
	}
	b64 = xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock(b64, (const unsigned char *)buf, (int)len);
	a = json_pack("{s:s, s:s, s:s}", "filename", base_name(path),
		      "content_type", guess_type(path), "content_base64",
		      (char *)b64);
	if (a == NULL)
		fprintf(stderr, "send: %s: file name is not UTF-8\n", path);
	free(b64);
	free(buf);
	return a;
}

/* Appends a command-line string to arr; false when it is not UTF-8. */
static bool
append_str(json_t *arr, const char *s, const char *what)
{
	json_t *v = json_string(s);

	if (v == NULL) {
		fprintf(stderr, "send: %s is not UTF-8\n", what);
		return false;
	}
	json_array_append_new(arr, v);
	return true;
}

enum {
	OPT_URL = 256,
	OPT_API_KEY,
	OPT_FROM,
	OPT_TO,
	OPT_CC,
	OPT_BCC,
	OPT_SUBJECT,
	OPT_TEXT,
	OPT_TEXT_FILE,
	OPT_HTML_FILE,
	OPT_ATTACH,
	OPT_HEADER,
	OPT_TAG,
	OPT_IDEM,
	OPT_REPLY_TO,
};

int
cli_send_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"url", required_argument, NULL, OPT_URL},
	    {"api-key", required_argument, NULL, OPT_API_KEY},
	    {"from", required_argument, NULL, OPT_FROM},
	    {"to", required_argument, NULL, OPT_TO},
	    {"cc", required_argument, NULL, OPT_CC},
	    {"bcc", required_argument, NULL, OPT_BCC},
	    {"subject", required_argument, NULL, OPT_SUBJECT},
	    {"text", required_argument, NULL, OPT_TEXT},
	    {"text-file", required_argument, NULL, OPT_TEXT_FILE},
	    {"html-file", required_argument, NULL, OPT_HTML_FILE},
	    {"attach", required_argument, NULL, OPT_ATTACH},
	    {"header", required_argument, NULL, OPT_HEADER},
	    {"tag", required_argument, NULL, OPT_TAG},
	    {"idempotency-key", required_argument, NULL, OPT_IDEM},
	    {"reply-to", required_argument, NULL, OPT_REPLY_TO},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct cli_http_response resp;
	const char *url = cli_http_default_url();
	const char *api_key = getenv("SHIVNERI_API_KEY");
	const char *from = NULL, *subject = NULL, *text = NULL;
	const char *text_file = NULL, *html_file = NULL, *idem = NULL;
	const char *reply_to = NULL, *hdrs[2] = {NULL, NULL};
	const char **attach = NULL;
	size_t nattach = 0, i;
	json_t *msg = NULL, *to, *cc, *bcc, *headers, *tags, *v, *atts;
	char *body = NULL, *idem_hdr = NULL, *colon, *name;
	const char *id;
	int c, rc = 2;

	msg = json_object();
	to = json_array();
	cc = json_array();
	bcc = json_array();
	tags = json_array();
	headers = json_object();
	optind = 1;
	opterr = 0;
	for (;;) {
		c = getopt_long(argc, argv, "h", opts, NULL);
		if (c == -1)
			break;
		switch (c) {
		case OPT_URL:
			url = optarg;
			break;
		case OPT_API_KEY:
			api_key = optarg;
			break;
		case OPT_FROM:
			from = optarg;
			break;
		case OPT_TO:
			if (!append_str(to, optarg, "--to"))
				goto out;
			break;
		case OPT_CC:
			if (!append_str(cc, optarg, "--cc"))
				goto out;
			break;
		case OPT_BCC:
			if (!append_str(bcc, optarg, "--bcc"))
				goto out;
			break;
		case OPT_TAG:
			if (!append_str(tags, optarg, "--tag"))
				goto out;
			break;
		case OPT_SUBJECT:
			subject = optarg;
			break;
		case OPT_TEXT:
			text = optarg;
			break;
		case OPT_TEXT_FILE:
			text_file = optarg;
			break;
		case OPT_HTML_FILE:
			html_file = optarg;
			break;
		case OPT_ATTACH:
			attach =
			    xreallocarray(attach, nattach + 1, sizeof(*attach));
			attach[nattach++] = optarg;
			break;
		case OPT_IDEM:
			idem = optarg;
			break;
		case OPT_REPLY_TO:
			reply_to = optarg;
			break;
		case OPT_HEADER:
			colon = strchr(optarg, ':');
			if (colon == NULL || colon == optarg) {
				fprintf(stderr,
					"send: --header wants 'Name: value'\n");
				goto out;
			}
			name = xstrndup(optarg, (size_t)(colon - optarg));
			colon++;
			while (*colon == ' ' || *colon == '\t')
				colon++;
			v = json_string(colon);
			if (v == NULL ||
			    json_object_set_new(headers, name, v)) {
				fprintf(stderr,
					"send: --header is not UTF-8\n");
				free(name);
				goto out;
			}
			free(name);
			break;
		case 'h':
			usage(stdout);
			rc = 0;
			goto out;
		default:
			rc = cli_opts_bad_option("send", argv, usage);
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "send: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		goto out;
	}
	if (from == NULL || json_array_size(to) == 0 || subject == NULL) {
		fprintf(stderr, "send: --from, --to and --subject are "
				"required\n");
		usage(stderr);
		goto out;
	}
	if (text != NULL && text_file != NULL) {
		fprintf(stderr, "send: --text and --text-file exclude each "
				"other\n");
		goto out;
	}
	if (text == NULL && text_file == NULL && html_file == NULL) {
		fprintf(stderr, "send: give --text, --text-file or "
				"--html-file\n");
		goto out;
	}
	if (json_object_set_new(msg, "from", json_string(from)) ||
	    json_object_set_new(msg, "subject", json_string(subject)) ||
	    (reply_to != NULL &&
	     json_object_set_new(msg, "reply_to", json_string(reply_to))) ||
	    (text != NULL &&
	     json_object_set_new(msg, "text", json_string(text)))) {
		fprintf(stderr, "send: arguments must be UTF-8\n");
		goto out;
	}
	json_object_set(msg, "to", to);
	if (json_array_size(cc) > 0)
		json_object_set(msg, "cc", cc);
	if (json_array_size(bcc) > 0)
		json_object_set(msg, "bcc", bcc);
	if (json_array_size(tags) > 0)
		json_object_set(msg, "tags", tags);
	if (json_object_size(headers) > 0)
		json_object_set(msg, "headers", headers);

	/* From here on a failure is a file we could not use: exit 1. */
	rc = 1;
	if (text_file != NULL) {
		v = file_string(text_file);
		if (v == NULL)
			goto out;
		json_object_set_new(msg, "text", v);
	}
	if (html_file != NULL) {
		v = file_string(html_file);
		if (v == NULL)
			goto out;
		json_object_set_new(msg, "html", v);
	}
	if (nattach > 0) {
		atts = json_array();
		json_object_set_new(msg, "attachments", atts);
		for (i = 0; i < nattach; i++) {
			v = attachment(attach[i]);
			if (v == NULL)
				goto out;
			json_array_append_new(atts, v);
		}
	}
	body = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (body == NULL) {
		fprintf(stderr, "send: cannot encode the message\n");
		goto out;
	}
	if (idem != NULL) {
		if (strpbrk(idem, "\r\n") != NULL) {
			fprintf(stderr, "send: bad --idempotency-key\n");
			rc = 2;
			goto out;
		}
		idem_hdr = xasprintf("Idempotency-Key: %s", idem);
		hdrs[0] = idem_hdr;
	}
	if (cli_http_request("send", "POST", url, "/v1/messages", api_key, body,
			     hdrs, &resp) != 0)
		goto out;
	if (resp.status != 200 && resp.status != 202) {
		cli_http_print_error("send", &resp);
		cli_http_response_cleanup(&resp);
		goto out;
	}
	id = resp.json != NULL ? cli_json_str(resp.json, "id") : NULL;
	if (id == NULL) {
		fprintf(stderr, "send: HTTP %ld without an id\n", resp.status);
		cli_http_response_cleanup(&resp);
		goto out;
	}
	printf("%s\n", id);
	cli_http_response_cleanup(&resp);
	rc = 0;
out:
	free(idem_hdr);
	free(body);
	free(attach);
	json_decref(headers);
	json_decref(tags);
	json_decref(bcc);
	json_decref(cc);
	json_decref(to);
	json_decref(msg);
	return rc;
}
