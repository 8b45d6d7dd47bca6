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
#include "common/log.h"
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
		"           [--api-key-file FILE] [--timeout SECONDS]\n"
		"\n"
		"Submits one message and prints its id.  --url defaults to\n"
		"$SHIVNERI_URL or %s; --api-key to $SHIVNERI_API_KEY\n"
		"(--api-key shows in ps: prefer --api-key-file or the "
		"variable).\n"
		"--timeout bounds the request (default 60 s).\n"
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
	if (json_array_append_new(arr, v) != 0) {
		fprintf(stderr, "send: out of memory\n");
		return false;
	}
	return true;
}

enum {
	OPT_URL = 256,
	OPT_API_KEY,
	OPT_API_KEY_FILE,
	OPT_TIMEOUT,
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

/* The command line, parsed; strings borrow argv, arrays are owned. */
struct send_args {
	const char *url, *api_key, *from, *subject, *text, *text_file;
	const char *html_file, *idem, *reply_to;
	const char **attach;
	size_t nattach;
	json_t *to, *cc, *bcc, *tags, *headers;
};

static void
send_args_init(struct send_args *a)
{
	memset(a, 0, sizeof(*a));
	a->url = cli_http_default_url();
	a->api_key = getenv("SHIVNERI_API_KEY");
	a->to = json_array();
	a->cc = json_array();
	a->bcc = json_array();
	a->tags = json_array();
	a->headers = json_object();
}

static void
send_args_cleanup(struct send_args *a)
{
	free(a->attach);
	json_decref(a->headers);
	json_decref(a->tags);
	json_decref(a->bcc);
	json_decref(a->cc);
	json_decref(a->to);
}

/* --header 'Name: value' into a->headers; false after saying why. */
static bool
add_header(struct send_args *a, const char *arg)
{
	const char *colon = strchr(arg, ':');
	json_t *v;
	char *name;
	bool ok;

	if (colon == NULL || colon == arg) {
		fprintf(stderr, "send: --header wants 'Name: value'\n");
		return false;
	}
	name = xstrndup(arg, (size_t)(colon - arg));
	colon++;
	while (*colon == ' ' || *colon == '\t')
		colon++;
	v = json_string(colon);
	ok = v != NULL && json_object_set_new(a->headers, name, v) == 0;
	if (!ok)
		fprintf(stderr, "send: --header is not UTF-8\n");
	free(name);
	return ok;
}

/* One option into a; false after saying why (exit status 2). */
static bool
take_option(struct send_args *a, int c, const char *arg)
{
	switch (c) {
	case OPT_URL:
		a->url = arg;
		return true;
	case OPT_API_KEY:
		a->api_key = arg;
		return true;
	case OPT_API_KEY_FILE:
		return cli_opts_key_file("send", arg, &a->api_key) == 0;
	case OPT_TIMEOUT:
		return cli_opts_timeout("send", arg) == 0;
	case OPT_FROM:
		a->from = arg;
		return true;
	case OPT_TO:
		return append_str(a->to, arg, "--to");
	case OPT_CC:
		return append_str(a->cc, arg, "--cc");
	case OPT_BCC:
		return append_str(a->bcc, arg, "--bcc");
	case OPT_TAG:
		return append_str(a->tags, arg, "--tag");
	case OPT_SUBJECT:
		a->subject = arg;
		return true;
	case OPT_TEXT:
		a->text = arg;
		return true;
	case OPT_TEXT_FILE:
		a->text_file = arg;
		return true;
	case OPT_HTML_FILE:
		a->html_file = arg;
		return true;
	case OPT_ATTACH:
		a->attach = xreallocarray(a->attach, a->nattach + 1,
					  sizeof(*a->attach));
		a->attach[a->nattach++] = arg;
		return true;
	case OPT_IDEM:
		a->idem = arg;
		return true;
	case OPT_REPLY_TO:
		a->reply_to = arg;
		return true;
	case OPT_HEADER:
		return add_header(a, arg);
	}
	return false;
}

/* What no option can say alone; false after saying why (exit 2). */
static bool
check_args(const struct send_args *a, int argc, char **argv)
{
	if (optind < argc) {
		fprintf(stderr, "send: unexpected argument '%s'\n",
			argv[optind]);
		usage(stderr);
		return false;
	}
	if (a->from == NULL || json_array_size(a->to) == 0 ||
	    a->subject == NULL) {
		fprintf(stderr, "send: --from, --to and --subject are "
				"required\n");
		usage(stderr);
		return false;
	}
	if (a->text != NULL && a->text_file != NULL) {
		fprintf(stderr, "send: --text and --text-file exclude each "
				"other\n");
		return false;
	}
	if (a->text == NULL && a->text_file == NULL && a->html_file == NULL) {
		fprintf(stderr, "send: give --text, --text-file or "
				"--html-file\n");
		return false;
	}
	if (a->idem != NULL && strpbrk(a->idem, "\r\n") != NULL) {
		fprintf(stderr, "send: bad --idempotency-key\n");
		return false;
	}
	return true;
}

/*
 * Parses argv into a.  Returns true to go on; false with the exit status
 * in *status (0 after --help, 2 for bad usage, said on stderr).
 */
static bool
parse_args(int argc, char **argv, struct send_args *a, int *status)
{
	static const struct option opts[] = {
	    {"url", required_argument, NULL, OPT_URL},
	    {"api-key", required_argument, NULL, OPT_API_KEY},
	    {"api-key-file", required_argument, NULL, OPT_API_KEY_FILE},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
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
	int c;

	*status = 2;
	optind = 1;
	opterr = 0;
	for (;;) {
		c = getopt_long(argc, argv, "h", opts, NULL);
		if (c == -1)
			break;
		if (c == 'h') {
			usage(stdout);
			*status = 0;
			return false;
		}
		if (c == '?' || c == ':') {
			*status = cli_opts_bad_option("send", argv, usage);
			return false;
		}
		if (!take_option(a, c, optarg))
			return false;
	}
	return check_args(a, argc, argv);
}

/* msg[key] = the text of the file at path, when path is set. */
static bool
set_file(json_t *msg, const char *key, const char *path)
{
	json_t *v;

	if (path == NULL)
		return true;
	v = file_string(path);
	return v != NULL && json_object_set_new(msg, key, v) == 0;
}

/*
 * The message's JSON from the arguments, files read.  Returns NULL with the
 * exit status in *status: 2 when an argument is not UTF-8, 1 when a file
 * cannot be used.
 */
static json_t *
build_message(const struct send_args *a, int *status)
{
	json_t *msg = json_object(), *v, *atts;
	size_t i;

	*status = 2;
	if (msg == NULL ||
	    json_object_set_new(msg, "from", json_string(a->from)) ||
	    json_object_set_new(msg, "subject", json_string(a->subject)) ||
	    (a->reply_to != NULL &&
	     json_object_set_new(msg, "reply_to", json_string(a->reply_to))) ||
	    (a->text != NULL &&
	     json_object_set_new(msg, "text", json_string(a->text))) ||
	    json_object_set(msg, "to", a->to) ||
	    (json_array_size(a->cc) > 0 && json_object_set(msg, "cc", a->cc)) ||
	    (json_array_size(a->bcc) > 0 &&
	     json_object_set(msg, "bcc", a->bcc)) ||
	    (json_array_size(a->tags) > 0 &&
	     json_object_set(msg, "tags", a->tags)) ||
	    (json_object_size(a->headers) > 0 &&
	     json_object_set(msg, "headers", a->headers))) {
		fprintf(stderr, "send: arguments must be UTF-8\n");
		goto fail;
	}
	/* From here on a failure is a file we could not use: exit 1. */
	*status = 1;
	if (!set_file(msg, "text", a->text_file) ||
	    !set_file(msg, "html", a->html_file))
		goto fail;
	if (a->nattach == 0)
		return msg;
	atts = json_array();
	if (json_object_set_new(msg, "attachments", atts) != 0)
		goto fail;
	for (i = 0; i < a->nattach; i++) {
		v = attachment(a->attach[i]);
		if (v == NULL || json_array_append_new(atts, v) != 0)
			goto fail;
	}
	return msg;
fail:
	json_decref(msg);
	return NULL;
}

/* POSTs body and prints the id the server gives; the exit status. */
static int
post_message(const struct send_args *a, const char *body)
{
	struct cli_http_response resp;
	const char *hdrs[2] = {NULL, NULL}, *id;
	char *idem_hdr = NULL, clean[128];
	int rc = 1;

	if (a->idem != NULL) {
		idem_hdr = xasprintf("Idempotency-Key: %s", a->idem);
		hdrs[0] = idem_hdr;
	}
	if (cli_http_request("send", "POST", a->url, "/v1/messages", a->api_key,
			     body, hdrs, &resp) != 0)
		goto out;
	if (resp.status != 200 && resp.status != 202) {
		cli_http_print_error("send", &resp);
		goto done;
	}
	id = resp.json != NULL ? cli_json_str(resp.json, "id") : NULL;
	if (id == NULL) {
		fprintf(stderr, "send: HTTP %ld without an id\n", resp.status);
		goto done;
	}
	printf("%s\n", log_sanitize(id, strlen(id), clean, sizeof(clean)));
	rc = 0;
done:
	cli_http_response_cleanup(&resp);
out:
	free(idem_hdr);
	return rc;
}

int
cli_send_main(int argc, char **argv)
{
	struct send_args a;
	json_t *msg = NULL;
	char *body = NULL;
	int rc;

	send_args_init(&a);
	if (!parse_args(argc, argv, &a, &rc))
		goto out;
	msg = build_message(&a, &rc);
	if (msg == NULL)
		goto out;
	body = json_dumps(msg, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (body == NULL) {
		fprintf(stderr, "send: cannot encode the message\n");
		rc = 1;
		goto out;
	}
	rc = post_message(&a, body);
out:
	free(body);
	json_decref(msg);
	send_args_cleanup(&a);
	return rc;
}
