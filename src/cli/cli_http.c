/*
 * The HTTP client of the commands: one blocking libcurl easy request per
 * call, which is all a command-line client needs.  The answer is collected
 * into the tree's capped buffer (common/buf.h: a server that streams
 * forever makes the command fail, not the machine swap), then parsed as
 * JSON when it is JSON.  Nothing here exits: the caller turns -1 into exit
 * status 1. Transport errors name the URL and curl's reason; API errors print
 * the server's code and message, sanitized, since they echo caller input.
 */
#include "cli/cli_http.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"

#include <curl/curl.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLI_HTTP_MAX_BODY (64 * 1024 * 1024)

static long timeout_s = CLI_HTTP_TIMEOUT_S;

void
cli_http_set_timeout(long seconds)
{
	timeout_s = seconds > 0 ? seconds : CLI_HTTP_TIMEOUT_S;
}

/* Where curl writes the answer: a capped buffer, and whether it overflowed. */
struct sink {
	struct buf b;
	bool toobig;
};

static size_t
sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct sink *s = userdata;
	size_t n = size * nmemb;

	if (buf_append(&s->b, ptr, n) != 0) {
		s->toobig = true;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	return n;
}

const char *
cli_http_default_url(void)
{
	const char *u = getenv("SHIVNERI_URL");

	return u != NULL && *u != '\0' ? u : CLI_DEFAULT_URL;
}

/* Appends line to *hl; false when curl is out of memory. */
static bool
header_add(struct curl_slist **hl, const char *line)
{
	struct curl_slist *tmp = curl_slist_append(*hl, line);

	if (tmp == NULL)
		return false;
	*hl = tmp;
	return true;
}

/*
 * The request's header list: the caller's, the API key as a bearer token
 * (wiped from our copy once curl has its own), Accept, Content-Type when
 * there is a body, and no Expect: 100-continue, which would stall a large
 * POST by a second against a server that does not answer it.  False when
 * out of memory (*hl then holds what was added, for the caller to free).
 */
static bool
build_headers(struct curl_slist **hl, const char *const *headers,
	      const char *api_key, bool has_body)
{
	char *auth;
	bool ok;

	for (; headers != NULL && *headers != NULL; headers++)
		if (!header_add(hl, *headers))
			return false;
	if (api_key != NULL && *api_key != '\0') {
		auth = xasprintf("Authorization: Bearer %s", api_key);
		ok = header_add(hl, auth);
		explicit_bzero(auth, strlen(auth));
		free(auth);
		if (!ok)
			return false;
	}
	return header_add(hl, "Accept: application/json") &&
	       (!has_body ||
		header_add(hl, "Content-Type: application/json")) &&
	       header_add(hl, "Expect:");
}

/*
 * Every option of one request; the body is sent as is, not copied.  False
 * when curl refuses one (out of memory: it copies the strings).
 */
static bool
set_options(CURL *c, const char *method, const char *url, const char *body,
	    struct curl_slist *hl, struct sink *s, char *errbuf)
{
	if (strcmp(method, "GET") == 0 &&
	    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L) != CURLE_OK)
		return false;
	if (body != NULL &&
	    (curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) != CURLE_OK ||
	     curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
			      (curl_off_t)strlen(body)) != CURLE_OK))
		return false;
	/* --url and $SHIVNERI_URL name a server: never file:// or the like. */
	return curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") ==
		   CURLE_OK &&
	       curl_easy_setopt(c, CURLOPT_URL, url) == CURLE_OK &&
	       curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK &&
	       curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl) == CURLE_OK &&
	       curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write) ==
		   CURLE_OK &&
	       curl_easy_setopt(c, CURLOPT_WRITEDATA, s) == CURLE_OK &&
	       curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf) == CURLE_OK &&
	       curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
	       curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT,
				timeout_s < 10 ? timeout_s : 10L) == CURLE_OK &&
	       curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s) == CURLE_OK &&
	       curl_easy_setopt(c, CURLOPT_USERAGENT,
				"shivneri/" SHIVNERI_VERSION) == CURLE_OK;
}

/* libcurl's global state, set up once per process; false after saying so. */
static bool
curl_ready(const char *cmd)
{
	static bool inited;

	if (inited)
		return true;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "%s: cannot initialize libcurl\n", cmd);
		return false;
	}
	inited = true;
	return true;
}

/*
 * url as an error message may show it: a user:password@ part (a proxy's
 * credentials in $SHIVNERI_URL, say) as "***@", and no control character.
 */
static const char *
shown_url(const char *url, char *buf, size_t len)
{
	const char *auth = strstr(url, "://"), *at = NULL, *p;
	char *tmp;

	if (auth != NULL) {
		auth += 3;
		for (p = auth; *p != '\0' && strchr("/?#", *p) == NULL; p++)
			if (*p == '@')
				at = p;
	}
	if (at == NULL)
		return log_sanitize(url, strlen(url), buf, len);
	tmp = xasprintf("%.*s***%s", (int)(auth - url), url, at);
	log_sanitize(tmp, strlen(tmp), buf, len);
	free(tmp);
	return buf;
}

/* Says on stderr why curl_easy_perform() failed with cc. */
static void
perform_error(const char *cmd, const char *url, CURLcode cc,
	      const struct sink *s, const char *errbuf)
{
	char u[512], clean[CURL_ERROR_SIZE];

	shown_url(url, u, sizeof(u));
	if (s->toobig)
		fprintf(stderr, "%s: %s: answer larger than %d bytes\n", cmd, u,
			CLI_HTTP_MAX_BODY);
	else
		/* curl's words may quote what the server sent. */
		fprintf(stderr, "%s: %s: %s\n", cmd, u,
			errbuf[0] != '\0' ? log_sanitize(errbuf, strlen(errbuf),
							 clean, sizeof(clean))
					  : curl_easy_strerror(cc));
}

int
cli_http_request(const char *cmd, const char *method, const char *base_url,
		 const char *path, const char *api_key, const char *body,
		 const char *const *headers, struct cli_http_response *resp)
{
	struct curl_slist *hl = NULL;
	struct sink s = {.toobig = false};
	char errbuf[CURL_ERROR_SIZE] = "";
	char *url = NULL;
	size_t blen;
	CURLcode cc;
	CURL *c = NULL;
	int rc = -1;

	memset(resp, 0, sizeof(*resp));
	buf_init(&s.b, CLI_HTTP_MAX_BODY);
	/* A line break would end the header and start another of its own. */
	if (api_key != NULL && strpbrk(api_key, "\r\n") != NULL) {
		fprintf(stderr, "%s: the API key holds a line break\n", cmd);
		return -1;
	}
	if (!curl_ready(cmd))
		return -1;
	blen = strlen(base_url);
	while (blen > 0 && base_url[blen - 1] == '/')
		blen--;
	url = xasprintf("%.*s%s", (int)blen, base_url, path);
	c = curl_easy_init();
	if (c == NULL) {
		fprintf(stderr, "%s: cannot initialize libcurl\n", cmd);
		goto out;
	}
	if (!build_headers(&hl, headers, api_key, body != NULL) ||
	    !set_options(c, method, url, body, hl, &s, errbuf)) {
		fprintf(stderr, "%s: out of memory\n", cmd);
		goto out;
	}
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		perform_error(cmd, url, cc, &s, errbuf);
		goto out;
	}
	if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status) !=
	    CURLE_OK) {
		perform_error(cmd, url, CURLE_WEIRD_SERVER_REPLY, &s, "");
		goto out;
	}
	resp->body = buf_take(&s.b, &resp->len);
	resp->json = json_loadb(resp->body, resp->len, 0, NULL);
	rc = 0;
out:
	buf_cleanup(&s.b);
	curl_slist_free_all(hl);
	if (c != NULL)
		curl_easy_cleanup(c);
	free(url);
	return rc;
}

void
cli_http_response_cleanup(struct cli_http_response *resp)
{
	if (resp == NULL)
		return;
	free(resp->body);
	json_decref(resp->json);
	memset(resp, 0, sizeof(*resp));
}

void
cli_http_print_error(const char *cmd, const struct cli_http_response *resp)
{
	const json_t *e = NULL;
	const char *code = NULL, *msg = NULL;
	char c1[128], c2[512];

	if (resp->json != NULL && json_is_object(resp->json))
		e = json_object_get(resp->json, "error");
	if (e != NULL && json_is_object(e)) {
		code = cli_json_str(e, "code");
		msg = cli_json_str(e, "message");
	}
	if (code != NULL || msg != NULL) {
		fprintf(stderr, "%s: HTTP %ld: %s: %s\n", cmd, resp->status,
			code != NULL
			    ? log_sanitize(code, strlen(code), c1, sizeof(c1))
			    : "error",
			msg != NULL
			    ? log_sanitize(msg, strlen(msg), c2, sizeof(c2))
			    : "");
		return;
	}
	fprintf(stderr, "%s: HTTP %ld: %s\n", cmd, resp->status,
		resp->len > 0
		    ? log_sanitize(resp->body, resp->len, c2, sizeof(c2))
		    : "(no body)");
}

void
cli_http_print_json(const struct cli_http_response *resp)
{
	char *s;

	if (resp->json == NULL) {
		char clean[4096];
		/* Not JSON: never the server's raw bytes on a terminal. */
		puts(log_sanitize(resp->body, resp->len, clean, sizeof(clean)));
		return;
	}
	/*
	 * ASCII only: jansson escapes C0 controls but would pass C1 ones
	 * (U+009B is a CSI to some terminals) and other text as UTF-8.
	 */
	s = json_dumps(resp->json, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
				       JSON_ENSURE_ASCII);
	if (s == NULL) {
		fprintf(stderr, "cannot print the answer: out of memory\n");
		return;
	}
	puts(s);
	free(s);
}

int
cli_http_get_print(const char *cmd, const struct cli_opts *o, const char *path,
		   const char *key, json_type type,
		   void (*print)(const json_t *v))
{
	struct cli_http_response resp;
	const json_t *v;

	if (cli_http_request(cmd, "GET", o->url, path, o->api_key, NULL, NULL,
			     &resp) != 0)
		return 1;
	v = key != NULL ? json_object_get(resp.json, key) : resp.json;
	if (resp.status != 200 || v == NULL || json_typeof(v) != type) {
		cli_http_print_error(cmd, &resp);
		cli_http_response_cleanup(&resp);
		return 1;
	}
	if (o->json)
		cli_http_print_json(&resp);
	else
		print(v);
	cli_http_response_cleanup(&resp);
	return 0;
}

const char *
cli_json_str(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

const char *
cli_json_text(const json_t *obj, const char *key, char *buf, size_t bufsz)
{
	const char *s = cli_json_str(obj, key);

	return s == NULL ? "-" : log_sanitize(s, strlen(s), buf, bufsz);
}

long long
cli_json_int(const json_t *obj, const char *key, long long dflt)
{
	const json_t *v = json_object_get(obj, key);

	if (json_is_integer(v))
		return (long long)json_integer_value(v);
	if (json_is_real(v))
		return (long long)json_real_value(v);
	return dflt;
}

char *
cli_message_path(const char *id, const char *suffix)
{
	CURL *c = curl_easy_init();
	char *esc, *path = NULL;

	if (c == NULL)
		return NULL;
	esc = curl_easy_escape(c, id, 0);
	if (esc != NULL)
		path = xasprintf("/v1/messages/%s%s", esc, suffix);
	curl_free(esc);
	curl_easy_cleanup(c);
	return path;
}
