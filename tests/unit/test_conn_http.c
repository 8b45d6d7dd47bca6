/*
 * conn_http, the base of the HTTP API connectors, with a test API against
 * an evhttp server on the same event_base (one thread, no sleeps).  The
 * server records what each request carried and answers by path.  Shown:
 * a job goes out with the key in the API's header (or Basic auth), Accept
 * and Content-Type JSON and the body the API built, and comes back
 * delivered with the id the API read; a 503 is transient with the
 * provider's words in the detail (none with an empty body) and degrades
 * health until a delivery; a
 * 4xx the API judges gets its class; a message the API cannot carry is
 * refused by send() and never reaches done(); a probe passes on 2xx and
 * fails with a detail on 401; a refused connection is transient in curl's
 * words; the secret is in no detail; open names a missing secret key and
 * an unset env: secret.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/conn_http.h"
#include "common/config.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SECRET "TEST-SECRET-5f1d"

struct fixture {
	struct event_base *base;
	struct evhttp *http;
	int port;
	char url[64];
	/* What the server saw last. */
	char path[64], auth[128], ctype[64], accept[64], body[256];
	int nreq;
	/* What reached done() or the probe's callback. */
	int ndone, outcome;
	char pmid[64], detail[512];
	bool passed;
};

static void
copy_header(struct evkeyvalq *h, const char *name, char *out, size_t len)
{
	const char *v = evhttp_find_header(h, name);

	snprintf(out, len, "%s", v != NULL ? v : "");
}

/* /ok answers {"id"}; /s503 a 503, /s422 a 422, /probe 200, /probe401 401. */
static void
on_request(struct evhttp_request *req, void *arg)
{
	struct fixture *f = arg;
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evbuffer *b = evhttp_request_get_input_buffer(req);
	struct evbuffer *out = evbuffer_new();
	size_t n = evbuffer_get_length(b);
	int code = 200;

	assert_non_null(out);
	f->nreq++;
	snprintf(f->path, sizeof(f->path), "%s", evhttp_request_get_uri(req));
	if (strcmp(f->path, "/hang") == 0) {
		/* Never answered: evhttp frees it with the server. */
		evbuffer_free(out);
		return;
	}
	copy_header(in, "Authorization", f->auth, sizeof(f->auth));
	copy_header(in, "Content-Type", f->ctype, sizeof(f->ctype));
	copy_header(in, "Accept", f->accept, sizeof(f->accept));
	if (n >= sizeof(f->body))
		n = sizeof(f->body) - 1;
	assert_int_equal(evbuffer_remove(b, f->body, n), (int)n);
	f->body[n] = '\0';
	if (strcmp(f->path, "/s503") == 0 || strcmp(f->path, "/s503empty") == 0)
		code = 503;
	else if (strcmp(f->path, "/s422") == 0)
		code = 422;
	else if (strcmp(f->path, "/echo") == 0)
		code = 401;
	else if (strcmp(f->path, "/probe401") == 0)
		code = 401;
	if (code == 200)
		evbuffer_add_printf(out, "{\"id\":\"id-%d\"}", f->nreq);
	else if (strcmp(f->path, "/s503empty") == 0)
		; /* no body at all: the detail has no words but the status */
	else if (strcmp(f->path, "/echo") == 0)
		/* The key as a JSON serializer escapes it, in a body the
		 * API reads no words from (so the raw body is the words). */
		evbuffer_add_printf(out,
				    "{\"error\":\"bad key Token "
				    "TEST-S\\u00e9cret-\\ud83d\\ude00-5f1d / "
				    "TEST-S\\u00E9cret-\\uD83D\\uDE00-5f1d\"}");
	else
		evbuffer_add_printf(out, "{\"message\":\"no way %d\"}", code);
	evhttp_send_reply(req, code, "X", out);
	evbuffer_free(out);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct evhttp_bound_socket *bs;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	assert_non_null(f);
	f->base = event_base_new();
	assert_non_null(f->base);
	f->http = evhttp_new(f->base);
	assert_non_null(f->http);
	evhttp_set_gencb(f->http, on_request, f);
	bs = evhttp_bind_socket_with_handle(f->http, "127.0.0.1", 0);
	assert_non_null(bs);
	assert_int_equal(getsockname((int)evhttp_bound_socket_get_fd(bs),
				     (struct sockaddr *)&sin, &len),
			 0);
	f->port = ntohs(sin.sin_port);
	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", f->port);
	assert_int_equal(setenv("CONN_HTTP_TEST_KEY", SECRET, 1), 0);
	assert_int_equal(setenv("CONN_HTTP_TEST_USER", "user-1", 1), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	evhttp_free(f->http);
	event_base_free(f->base);
	free(f);
	return 0;
}

/* The test API: the path is the job's message id, the body "{}". */
static const char *
t_build(void *ctx, const struct connector_job *job, CURL *easy,
	struct conn_http_request *rq)
{
	(void)ctx;
	(void)easy;
	if (strcmp(job->message_id, "/unsendable") == 0)
		return "cannot carry it";
	rq->path = job->message_id;
	rq->body = strdup("{\"k\":1}");
	return rq->body == NULL ? "out of memory" : NULL;
}

static void
t_answer(void *ctx, const struct connector_job *job,
	 const struct http_result *hr, json_t *ans, struct conn_http_answer *a)
{
	const char *id = json_string_value(json_object_get(ans, "id"));
	const char *msg = json_string_value(json_object_get(ans, "message"));

	(void)ctx;
	/* The probe's answer comes without a job. */
	if (job == NULL && a->outcome == OUTCOME_ACCOUNT)
		snprintf(a->tag, sizeof(a->tag), " probe");
	if (a->outcome == HTTP_CLASS_CONNECTOR)
		a->outcome =
		    hr->status == 422 ? OUTCOME_PERMANENT : OUTCOME_TRANSIENT;
	if (id != NULL)
		snprintf(a->id, sizeof(a->id), "%s", id);
	if (msg != NULL)
		snprintf(a->why, sizeof(a->why), "%s", msg);
	if (a->tag[0] == '\0')
		snprintf(a->tag, sizeof(a->tag), " tag=1");
}

static const struct conn_http_api header_api = {
    .type = "test",
    .default_url = "http://127.0.0.1:1",
    .secret_key = "api_key_file",
    .auth_prefix = "Authorization: Token ",
    .probe_path = "/probe",
    .build = t_build,
    .answer = t_answer,
};

static const struct conn_http_api basic_api = {
    .type = "test",
    .default_url = "http://127.0.0.1:1",
    .secret_key = "api_key_file",
    .basic_user_key = "user_file",
    .probe_path = "/probe401",
    .build = t_build,
    .answer = t_answer,
};

static void
on_done(struct connector_job *job, const struct connector_result *res,
	void *arg)
{
	struct fixture *f = arg;

	(void)job;
	f->ndone++;
	f->outcome = res->outcome;
	snprintf(f->pmid, sizeof(f->pmid), "%s",
		 res->provider_message_id != NULL ? res->provider_message_id
						  : "");
	snprintf(f->detail, sizeof(f->detail), "%s",
		 res->detail != NULL ? res->detail : "");
}

static void
on_probe(bool passed, const char *detail, void *arg)
{
	struct fixture *f = arg;

	f->ndone++;
	f->passed = passed;
	snprintf(f->detail, sizeof(f->detail), "%s",
		 detail != NULL ? detail : "");
}

static void *
open_api(struct fixture *f, const struct conn_http_api *api)
{
	struct config_kv kv[] = {
	    {.key = (char *)"base_url", .value = f->url},
	    {.key = (char *)"api_key_file",
	     .value = (char *)"env:CONN_HTTP_TEST_KEY"},
	    {.key = (char *)"user_file",
	     .value = (char *)"env:CONN_HTTP_TEST_USER"},
	};
	struct provider_config pc = {
	    .name = (char *)"p", .type = (char *)"test", .kv = kv, .nkv = 3};
	char err[256] = "";
	void *state = NULL;

	assert_int_equal(conn_http_open(api, &pc, f->base, on_done, f, &state,
					err, sizeof(err)),
			 0);
	assert_non_null(state);
	return state;
}

/* Runs the loop until want callbacks came, boundedly. */
static void
run_until(struct fixture *f, int want)
{
	int i;

	for (i = 0; i < 10000 && f->ndone < want; i++)
		assert_true(event_base_loop(f->base, EVLOOP_ONCE) >= 0);
	assert_int_equal(f->ndone, want);
}

static void
send_one(struct fixture *f, void *st, const char *path)
{
	struct connector_job job = {.job_id = 1, .message_id = path};

	f->ndone = 0;
	assert_int_equal(conn_http_send(st, &job), 0);
	run_until(f, 1);
}

static void
test_send_delivered(void **state)
{
	struct fixture *f = *state;
	void *st = open_api(f, &header_api);

	send_one(f, st, "/ok");
	assert_int_equal(f->outcome, OUTCOME_DELIVERED);
	assert_string_equal(f->pmid, "id-1");
	assert_string_equal(f->path, "/ok");
	assert_string_equal(f->auth, "Token " SECRET);
	assert_string_equal(f->ctype, "application/json");
	assert_string_equal(f->accept, "application/json");
	assert_string_equal(f->body, "{\"k\":1}");
	assert_int_equal(conn_http_health(st), LINK_HEALTH_OK);
	conn_http_close(st);
}

/*
 * A connector closed (the agent stopping) with a transfer under way drops
 * it without done(), and frees what it kept for it: the chaos run
 * (tests/integration/chaos.py) found the agent's LeakSanitizer report at
 * SIGTERM while a provider held a request.
 */
static void
test_close_with_transfer_in_flight(void **state)
{
	struct fixture *f = *state;
	void *st = open_api(f, &header_api);
	struct connector_job job = {.job_id = 1, .message_id = "/hang"};
	int i;

	f->ndone = 0;
	assert_int_equal(conn_http_send(st, &job), 0);
	for (i = 0; i < 10000 && f->nreq == 0; i++)
		assert_true(event_base_loop(f->base, EVLOOP_ONCE) >= 0);
	assert_int_equal(f->nreq, 1);
	conn_http_close(st);
	assert_int_equal(f->ndone, 0);
}

static void
test_failures_and_health(void **state)
{
	struct fixture *f = *state;
	void *st = open_api(f, &header_api);

	send_one(f, st, "/s503");
	assert_int_equal(f->outcome, OUTCOME_TRANSIENT);
	assert_string_equal(f->detail, "test status=503 tag=1: no way 503");
	assert_int_equal(conn_http_health(st), LINK_HEALTH_DEGRADED);
	send_one(f, st, "/s503empty");
	assert_int_equal(f->outcome, OUTCOME_TRANSIENT);
	assert_string_equal(f->detail, "test status=503 tag=1: ");
	send_one(f, st, "/s422");
	assert_int_equal(f->outcome, OUTCOME_PERMANENT);
	assert_null(strstr(f->detail, SECRET));
	/* A permanent refusal is the message's: health stays degraded. */
	assert_int_equal(conn_http_health(st), LINK_HEALTH_DEGRADED);
	send_one(f, st, "/ok");
	assert_int_equal(conn_http_health(st), LINK_HEALTH_OK);
	conn_http_close(st);
}

/*
 * A key of bytes outside ASCII echoed in a JSON body as \\uXXXX escapes
 * (either case of hex, a surrogate pair for U+1F600): the detail shows
 * neither form, nor the key as log_sanitize() would print it.
 */
static void
test_non_ascii_key_echoed_as_json(void **state)
{
	struct fixture *f = *state;
	void *st;

	assert_int_equal(setenv("CONN_HTTP_TEST_KEY",
				"TEST-S\xc3\xa9"
				"cret-\xf0\x9f\x98\x80-5f1d",
				1),
			 0);
	st = open_api(f, &header_api);
	send_one(f, st, "/echo");
	assert_int_equal(f->nreq, 1);
	assert_null(strstr(f->detail, "cret"));
	assert_null(strstr(f->detail, "5f1d"));
	assert_non_null(strstr(f->detail, "bad key Token *"));
	conn_http_close(st);
}

static void
test_unsendable(void **state)
{
	struct fixture *f = *state;
	void *st = open_api(f, &header_api);
	struct connector_job job = {.job_id = 1, .message_id = "/unsendable"};

	f->ndone = 0;
	assert_int_equal(conn_http_send(st, &job), -EINVAL);
	assert_true(event_base_loop(f->base, EVLOOP_NONBLOCK) >= 0);
	assert_int_equal(f->ndone, 0);
	assert_int_equal(f->nreq, 0);
	conn_http_close(st);
}

static void
test_basic_auth_and_probe(void **state)
{
	struct fixture *f = *state;
	void *st = open_api(f, &basic_api);

	send_one(f, st, "/ok");
	/* "user-1:TEST-SECRET-5f1d" in base64. */
	assert_string_equal(f->auth, "Basic dXNlci0xOlRFU1QtU0VDUkVULTVmMWQ=");
	f->ndone = 0;
	assert_int_equal(conn_http_probe(st, on_probe, f), 0);
	run_until(f, 1);
	assert_false(f->passed);
	assert_string_equal(f->path, "/probe401");
	assert_string_equal(f->detail, "test status=401 probe: no way 401");
	conn_http_close(st);

	st = open_api(f, &header_api);
	f->ndone = 0;
	assert_int_equal(conn_http_probe(st, on_probe, f), 0);
	run_until(f, 1);
	assert_true(f->passed);
	assert_string_equal(f->path, "/probe");
	assert_string_equal(f->auth, "Token " SECRET);
	conn_http_close(st);
}

/* Nothing listens: transient before sending, in curl's words, no body. */
static void
test_refused_transient(void **state)
{
	struct fixture *f = *state;
	void *st;

	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:1");
	st = open_api(f, &header_api);
	send_one(f, st, "/ok");
	assert_int_equal(f->outcome, OUTCOME_TRANSIENT);
	assert_non_null(strstr(f->detail, "test status=0 tag=1: "));
	assert_int_equal(f->nreq, 0);
	assert_int_equal(conn_http_health(st), LINK_HEALTH_DEGRADED);
	conn_http_close(st);
}

static void
test_open_errors(void **state)
{
	struct fixture *f = *state;
	struct config_kv kv[] = {
	    {.key = (char *)"api_key_file",
	     .value = (char *)"env:CONN_HTTP_UNSET_1"},
	};
	struct provider_config pc = {
	    .name = (char *)"p", .type = (char *)"test", .kv = kv, .nkv = 0};
	char err[256] = "";
	void *st = NULL;

	assert_int_equal(unsetenv("CONN_HTTP_UNSET_1"), 0);
	assert_int_equal(conn_http_open(&header_api, &pc, f->base, on_done, f,
					&st, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "'api_key_file'"));
	pc.nkv = 1;
	assert_true(conn_http_open(&header_api, &pc, f->base, on_done, f, &st,
				   err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "api_key_file"));
	assert_null(st);
}

/*
 * connector_blot(): every copy, a copy cut short at the end (as a
 * provider's words truncated into a fixed buffer leave it), one before
 * log_sanitize's "...", and nothing for a secret too short to tell.
 */
static void
test_blot(void **state)
{
	char a[] = "x KEY-123456 y KEY-123456", b[] = "cut here: KEY-12",
	     c[] = "cut here: KEY-1234...", d[] = "KE and KEY", e[] = "abc";

	(void)state;
	connector_blot(a, "KEY-123456");
	assert_string_equal(a, "x ********** y **********");
	connector_blot(b, "KEY-123456");
	assert_string_equal(b, "cut here: ******");
	connector_blot(c, "KEY-123456");
	assert_string_equal(c, "cut here: ********...");
	connector_blot(d, "KEY-123456");
	assert_string_equal(d, "KE and KEY"); /* 3 bytes tell nothing */
	connector_blot(e, "ab");
	assert_string_equal(e, "abc");
	connector_blot(e, NULL);
	assert_string_equal(e, "abc");
}

/*
 * A secret with bytes log_sanitize() cannot print is blotted raw and as
 * log_sanitize() printed it, whole and cut short; connector_blot_json()
 * blots its JSON escapes (and nothing for a secret JSON keeps as is).
 */
static void
test_blot_escaped(void **state)
{
	static const char key[] = "K\xc3\xa9y-\"1\\-\xf0\x9f\x98\x80";
	char a[] = "raw K\xc3\xa9y-\"1\\-\xf0\x9f\x98\x80 end";
	char b[] = "sanitized K??y-\"1\\-???? end";
	char c[] = "cut K??y-\"1...";
	char d[] = "json K\\u00e9y-\\\"1\\\\-\\ud83d\\ude00 "
		   "K\\u00E9y-\\\"1\\\\-\\uD83D\\uDE00 end";
	char e[] = "other K?y-\"1\\-???? K??z";
	char g[] = "plain \\u0041BCD-1";

	(void)state;
	connector_blot(a, key);
	assert_string_equal(a, "raw ************* end");
	connector_blot(b, key);
	assert_string_equal(b, "sanitized ************* end");
	connector_blot(c, key);
	assert_string_equal(c, "cut *******...");
	connector_blot_json(d, key);
	assert_null(strstr(d, "u00"));
	assert_null(strstr(d, "de00"));
	assert_null(strstr(d, "DE00"));
	assert_non_null(strstr(d, "json *"));
	assert_non_null(strstr(d, " end"));
	/* A '?' stands only for a byte the key has outside ASCII. */
	connector_blot(e, key);
	assert_string_equal(e, "other K?y-\"1\\-???? K??z");
	connector_blot_json(g, "ABCD-1");
	assert_string_equal(g, "plain \\u0041BCD-1");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_send_delivered, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_close_with_transfer_in_flight,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failures_and_health, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_unsendable, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_basic_auth_and_probe, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_refused_transient, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
	    cmocka_unit_test(test_blot),
	    cmocka_unit_test(test_blot_escaped),
	    cmocka_unit_test_setup_teardown(test_non_ascii_key_echoed_as_json,
					    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
