/*
 * fake_api: a stand-in for every HTTP provider API, fast enough that a
 * benchmark of one agent measures the agent and not the stand-in.
 *
 * One process, one event_base, libevent's evhttp with HTTP/1.1 keep-alive:
 * each send request is answered at once with that API's success shape as
 * PROVIDERS.md gives it and as the connectors' answer parsers accept it
 * (mailgun's "id", sendgrid's X-Message-Id, ses's MessageId, postmark's
 * ErrorCode 0 and MessageID, sparkpost's results.id with accepted
 * recipients, resend's id, brevo's 201 messageId, mailjet's Messages[] with
 * Status success and To[].MessageID).  Nothing is checked: not the key, not
 * the signature, not the body; tests/fakes/ holds the stand-ins that check.
 * This one is our own measuring tool on 127.0.0.1, never facing untrusted
 * peers, which is why evhttp is acceptable here.
 *
 * It counts accepted TCP connections, the connections that carried at
 * least one API request (so that the driver's own polling does not count),
 * requests per API and answers by status class.  GET /stats answers the
 * counts as JSON; SIGTERM prints them on stdout and exits.  A fault switch
 * makes every API request (sends and probes) answer a given status: POST
 * /fault?status=503 (0 turns it off), --fail-status at start, SIGUSR1
 * (503) and SIGUSR2 (off).  Bodies are capped at --max-body bytes.
 */
#include <sys/queue.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <jansson.h>

#define LIVE_MAX 4096 /* API connections tracked at once */
#define MAILJET_TO_MAX 64

enum api {
	API_MAILGUN,
	API_SENDGRID,
	API_SES,
	API_POSTMARK,
	API_SPARKPOST,
	API_RESEND,
	API_BREVO,
	API_MAILJET,
	API_PROBE,
	API_N
};

static const char *const api_names[API_N] = {"mailgun",  "sendgrid",  "ses",
					     "postmark", "sparkpost", "resend",
					     "brevo",    "mailjet",   "probe"};

struct fake {
	struct event_base *base;
	struct evhttp *http;
	struct evbuffer *out; /* reused: evhttp_send_reply drains it */
	int fail_status;      /* 0: answer success */
	uint64_t seq;         /* message ids */
	uint64_t connections, api_connections, requests[API_N];
	uint64_t status_2xx, status_other, not_found, body_bytes;
	/* Connections that carried an API request and are still open. */
	struct evhttp_connection *live[LIVE_MAX];
	size_t nlive;
	uint64_t untracked; /* API requests on connections past LIVE_MAX */
};

static struct fake F;

/* Every accepted connection passes here once (evhttp's bufferevent hook). */
static struct bufferevent *
new_bev(struct event_base *base, void *arg)
{
	(void)arg;
	F.connections++;
	return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

static void
live_closed(struct evhttp_connection *evcon, void *arg)
{
	size_t i;

	(void)arg;
	for (i = 0; i < F.nlive; i++)
		if (F.live[i] == evcon) {
			F.live[i] = F.live[--F.nlive];
			return;
		}
}

/* Counts evcon the first time it carries an API request. */
static void
note_api_connection(struct evhttp_connection *evcon)
{
	size_t i;

	if (evcon == NULL)
		return;
	for (i = 0; i < F.nlive; i++)
		if (F.live[i] == evcon)
			return;
	F.api_connections++;
	if (F.nlive == LIVE_MAX) {
		F.untracked++; /* counted again if it sends more: visible */
		return;
	}
	F.live[F.nlive++] = evcon;
	evhttp_connection_set_closecb(evcon, live_closed, NULL);
}

static bool
has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The API a POST path belongs to, or -1. */
static int
post_api(const char *path)
{
	if (strcmp(path, "/v3/mail/send") == 0)
		return API_SENDGRID;
	if (strcmp(path, "/v3/smtp/email") == 0)
		return API_BREVO;
	if (strncmp(path, "/v3/", 4) == 0 &&
	    has_suffix(path, "/messages.mime") &&
	    strchr(path + 4, '/') == path + strlen(path) - 14)
		return API_MAILGUN;
	if (strcmp(path, "/v2/email/outbound-emails") == 0)
		return API_SES;
	if (strcmp(path, "/email") == 0)
		return API_POSTMARK;
	if (strcmp(path, "/api/v1/transmissions") == 0)
		return API_SPARKPOST;
	if (strcmp(path, "/emails") == 0)
		return API_RESEND;
	if (strcmp(path, "/v3.1/send") == 0)
		return API_MAILJET;
	return -1;
}

/* The cheap authenticated GETs connectors probe with (PROVIDERS.md). */
static bool
probe_path(const char *path)
{
	static const char *const paths[] = {"/v3/scopes",  "/v2/email/account",
					    "/server",     "/api/v1/account",
					    "/v3/account", "/v3/REST/sender",
					    "/v4/domains", NULL};
	size_t i;

	for (i = 0; paths[i] != NULL; i++)
		if (strcmp(path, paths[i]) == 0)
			return true;
	return false;
}

static void
reply(struct evhttp_request *req, int status, const char *reason)
{
	if (status >= 200 && status < 300)
		F.status_2xx++;
	else
		F.status_other++;
	evhttp_send_reply(req, status, reason, F.out);
}

static void
set_json_type(struct evhttp_request *req)
{
	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", "application/json");
}

/* Mailjet's answer names each To address of each message sent. */
static void
mailjet_answer(struct evhttp_request *req, uint64_t id)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in), i, j, nmsg;
	json_t *root, *msgs, *to;
	json_error_t jerr;
	const char *email;

	root = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr);
	msgs = json_object_get(root, "Messages"); /* borrowed; NULL-safe */
	nmsg = json_array_size(msgs) > 0 ? json_array_size(msgs) : 1;
	evbuffer_add_printf(F.out, "{\"Messages\":[");
	for (i = 0; i < nmsg; i++) {
		to = json_object_get(json_array_get(msgs, i), "To");
		evbuffer_add_printf(F.out,
				    "%s{\"Status\":\"success\","
				    "\"CustomID\":\"\",\"To\":[",
				    i > 0 ? "," : "");
		for (j = 0; j < json_array_size(to) && j < MAILJET_TO_MAX;
		     j++) {
			email = json_string_value(
			    json_object_get(json_array_get(to, j), "Email"));
			evbuffer_add_printf(
			    F.out,
			    "%s{\"Email\":\"%s\",\"MessageUUID\":"
			    "\"00000000-0000-4000-8000-%012" PRIu64 "\","
			    "\"MessageID\":%" PRIu64 ",\"MessageHref\":"
			    "\"https://api.mailjet.com/v3/REST/message/%" PRIu64
			    "\"}",
			    j > 0 ? "," : "",
			    email != NULL && strchr(email, '"') == NULL &&
				    strchr(email, '\\') == NULL
				? email
				: "rcpt@example.net",
			    id * MAILJET_TO_MAX + j, id * MAILJET_TO_MAX + j,
			    id * MAILJET_TO_MAX + j);
		}
		evbuffer_add_printf(F.out, "],\"Cc\":[],\"Bcc\":[]}");
	}
	evbuffer_add_printf(F.out, "]}");
	json_decref(root);
}

/* The success answer of api for one request. */
static void
answer_success(struct evhttp_request *req, int api)
{
	uint64_t id = ++F.seq;
	char mid[48];

	switch (api) {
	case API_MAILGUN:
		evbuffer_add_printf(F.out,
				    "{\"id\":\"<20261130.%" PRIu64
				    "@bench.example.com>\","
				    "\"message\":\"Queued. Thank you.\"}",
				    id);
		break;
	case API_SENDGRID:
		/* 202, the id in a header, an empty body. */
		snprintf(mid, sizeof(mid), "bench%" PRIu64, id);
		evhttp_add_header(evhttp_request_get_output_headers(req),
				  "X-Message-Id", mid);
		reply(req, 202, "Accepted");
		return;
	case API_SES:
		evbuffer_add_printf(F.out,
				    "{\"MessageId\":\"0100018c-bench-%" PRIu64
				    "-000000\"}",
				    id);
		break;
	case API_POSTMARK:
		evbuffer_add_printf(
		    F.out,
		    "{\"To\":\"rcpt@example.net\",\"SubmittedAt\":"
		    "\"2026-11-30T00:00:00.0000000Z\",\"MessageID\":"
		    "\"b7bc2f4a-e38e-4336-af7d-%012" PRIu64 "\","
		    "\"ErrorCode\":0,\"Message\":\"OK\"}",
		    id);
		break;
	case API_SPARKPOST:
		evbuffer_add_printf(
		    F.out,
		    "{\"results\":{\"total_rejected_recipients\""
		    ":0,\"total_accepted_recipients\":1,"
		    "\"id\":\"%" PRIu64 "\"}}",
		    id);
		break;
	case API_RESEND:
		evbuffer_add_printf(
		    F.out,
		    "{\"id\":\"49a3999c-0ce1-4ea6-ab68-%012" PRIu64 "\"}", id);
		break;
	case API_BREVO:
		evbuffer_add_printf(F.out,
				    "{\"messageId\":\"<202611300000.%" PRIu64
				    "@smtp-relay.mailin.fr>\"}",
				    id);
		set_json_type(req);
		reply(req, 201, "Created");
		return;
	case API_MAILJET:
		mailjet_answer(req, id);
		break;
	default: /* a probe: any 2xx passes */
		evbuffer_add_printf(F.out, "{}");
		break;
	}
	set_json_type(req);
	reply(req, 200, "OK");
}

/* The counts as one JSON line into out. */
static void
format_stats(struct evbuffer *out)
{
	int i;

	evbuffer_add_printf(
	    out,
	    "{\"connections\":%" PRIu64 ",\"api_connections\":%" PRIu64
	    ",\"open_api_connections\":%zu,\"untracked\":%" PRIu64
	    ",\"status_2xx\":%" PRIu64 ",\"status_other\":%" PRIu64
	    ",\"not_found\":%" PRIu64 ",\"body_bytes\":%" PRIu64
	    ",\"fail_status\":%d,\"requests\":{",
	    F.connections, F.api_connections, F.nlive, F.untracked,
	    F.status_2xx, F.status_other, F.not_found, F.body_bytes,
	    F.fail_status);
	for (i = 0; i < API_N; i++)
		evbuffer_add_printf(out, "%s\"%s\":%" PRIu64, i > 0 ? "," : "",
				    api_names[i], F.requests[i]);
	evbuffer_add_printf(out, "}}\n");
}

/* POST /fault?status=N: N in 100..599 fails every API request; 0 stops. */
static void
answer_fault(struct evhttp_request *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *q = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	struct evkeyvalq args;
	const char *v;
	char *end;
	long n = -1;

	TAILQ_INIT(&args);
	if (q != NULL && evhttp_parse_query_str(q, &args) == 0) {
		v = evhttp_find_header(&args, "status");
		if (v != NULL) {
			errno = 0;
			n = strtol(v, &end, 10);
			if (errno != 0 || end == v || *end != '\0')
				n = -1;
		}
	}
	evhttp_clear_headers(&args);
	if (n != 0 && (n < 100 || n > 599)) {
		evbuffer_add_printf(F.out,
				    "{\"error\":\"status=0 or 100..599\"}");
		reply(req, 400, "Bad Request");
		return;
	}
	F.fail_status = (int)n;
	evbuffer_add_printf(F.out, "{\"fail_status\":%d}", F.fail_status);
	set_json_type(req);
	reply(req, 200, "OK");
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	int api = -1;

	(void)arg;
	evbuffer_drain(F.out, evbuffer_get_length(F.out));
	if (path == NULL)
		path = "";
	if (cmd == EVHTTP_REQ_GET && strcmp(path, "/stats") == 0) {
		format_stats(F.out);
		set_json_type(req);
		reply(req, 200, "OK");
		return;
	}
	if (cmd == EVHTTP_REQ_POST && strcmp(path, "/fault") == 0) {
		answer_fault(req);
		return;
	}
	if (cmd == EVHTTP_REQ_POST)
		api = post_api(path);
	else if (cmd == EVHTTP_REQ_GET && probe_path(path))
		api = API_PROBE;
	if (api < 0) {
		F.not_found++;
		evbuffer_add_printf(F.out, "{\"message\":\"not found\"}");
		reply(req, 404, "Not Found");
		return;
	}
	F.requests[api]++;
	F.body_bytes +=
	    evbuffer_get_length(evhttp_request_get_input_buffer(req));
	note_api_connection(evhttp_request_get_connection(req));
	if (F.fail_status != 0) {
		evbuffer_add_printf(F.out, "{\"message\":\"fault %d\"}",
				    F.fail_status);
		set_json_type(req);
		reply(req, F.fail_status, "Fault");
		return;
	}
	answer_success(req, api);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGUSR1) {
		F.fail_status = 503;
		return;
	}
	if (sig == SIGUSR2) {
		F.fail_status = 0;
		return;
	}
	event_base_loopexit(F.base, NULL);
}

static void
usage(void)
{
	fprintf(stderr, "usage: fake_api --port P [--host 127.0.0.1] "
			"[--fail-status S] [--max-body BYTES]\n");
	exit(2);
}

static long
number(const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		usage();
	return v;
}

struct options {
	const char *host;
	long port, max_body;
};

static void
parse_args(int argc, char **argv, struct options *o)
{
	static const struct option opts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"host", required_argument, NULL, 'H'},
	    {"fail-status", required_argument, NULL, 'f'},
	    {"max-body", required_argument, NULL, 'm'},
	    {NULL, 0, NULL, 0}};
	int c;

	o->host = "127.0.0.1";
	o->port = -1;
	o->max_body = 64L << 20;
	for (;;) {
		c = getopt_long(argc, argv, "", opts, NULL);
		if (c == -1)
			break;
		switch (c) {
		case 'p':
			o->port = number(optarg, 1, 65535);
			break;
		case 'H':
			o->host = optarg;
			break;
		case 'f':
			F.fail_status = (int)number(optarg, 0, 599);
			if (F.fail_status != 0 && F.fail_status < 100)
				usage();
			break;
		case 'm':
			o->max_body = number(optarg, 1, 1L << 30);
			break;
		default:
			usage();
		}
	}
	if (o->port < 0 || optind != argc)
		usage();
}

int
main(int argc, char **argv)
{
	static const int sigs[] = {SIGTERM, SIGINT, SIGUSR1, SIGUSR2};
	struct event *sev[4] = {NULL, NULL, NULL, NULL};
	struct options o;
	size_t i;
	int rc = 1;

	parse_args(argc, argv, &o);
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return 1;
	F.base = event_base_new();
	F.http = F.base != NULL ? evhttp_new(F.base) : NULL;
	F.out = evbuffer_new();
	if (F.http == NULL || F.out == NULL) {
		fprintf(stderr, "fake_api: out of memory\n");
		return 1;
	}
	evhttp_set_bevcb(F.http, new_bev, NULL);
	evhttp_set_gencb(F.http, on_request, NULL);
	evhttp_set_max_body_size(F.http, (ev_ssize_t)o.max_body);
	evhttp_set_timeout(F.http, 60);
	evhttp_set_allowed_methods(F.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	if (evhttp_bind_socket(F.http, o.host, (ev_uint16_t)o.port) != 0) {
		fprintf(stderr, "fake_api: cannot listen on %s:%ld: %s\n",
			o.host, o.port, strerror(errno));
		goto out;
	}
	for (i = 0; i < 4; i++) {
		sev[i] = evsignal_new(F.base, sigs[i], on_signal, NULL);
		if (sev[i] == NULL || evsignal_add(sev[i], NULL) != 0) {
			fprintf(stderr, "fake_api: cannot watch signals\n");
			goto out;
		}
	}
	printf("fake_api listening on %s:%ld\n", o.host, o.port);
	fflush(stdout);
	if (event_base_dispatch(F.base) != 0) {
		fprintf(stderr, "fake_api: the event loop failed\n");
		goto out;
	}
	/* The counts on the way out, for a run driven by signals only. */
	evbuffer_drain(F.out, evbuffer_get_length(F.out));
	format_stats(F.out);
	fwrite(evbuffer_pullup(F.out, -1), 1, evbuffer_get_length(F.out),
	       stdout);
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	for (i = 0; i < 4; i++)
		if (sev[i] != NULL)
			event_free(sev[i]);
	evhttp_free(F.http);
	evbuffer_free(F.out);
	event_base_free(F.base);
	return rc;
}
