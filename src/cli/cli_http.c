/*
 * The HTTP client of the commands: one blocking libcurl easy request per
 * call, which is all a command-line client needs.  The answer is collected
 * into a growing buffer with a hard cap (a server that streams forever
 * makes the command fail, not the machine swap), then parsed as JSON when
 * it is JSON.  Nothing here exits: the caller turns -1 into exit status 1.
 * Transport errors name the URL and curl's reason; API errors print the
 * server's code and message, sanitized, since they echo caller input.
 */
#include "cli/cli_http.h"
#include "common/log.h"
#include "common/util.h"

#include <curl/curl.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLI_HTTP_MAX_BODY (64 * 1024 * 1024)
#define CLI_HTTP_TIMEOUT_S 60L

struct sink {
	char *buf;
	size_t len, cap;
	bool toobig;
};

static size_t
sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct sink *s = userdata;
	size_t n = size * nmemb;

	if (s->len + n + 1 > CLI_HTTP_MAX_BODY) {
		s->toobig = true;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	if (s->len + n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + n + 1)
			cap *= 2;
		s->buf = xrealloc(s->buf, cap);
		s->cap = cap;
	}
	memcpy(s->buf + s->len, ptr, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

const char *
cli_http_default_url(void)
{
	const char *u = getenv("SHIVNERI_URL");

	return u != NULL && *u != '\0' ? u : CLI_DEFAULT_URL;
}

int
cli_http_request(const char *cmd, const char *method, const char *base_url,
		 const char *path, const char *api_key, const char *body,
		 const char *const *headers, struct cli_http_response *resp)
{
	static bool inited;
	struct curl_slist *hl = NULL, *tmp;
	struct sink s = {NULL, 0, 0, false};
	char errbuf[CURL_ERROR_SIZE] = "";
	char *url = NULL, *auth = NULL;
	size_t blen;
	CURLcode cc;
	CURL *c = NULL;
	int rc = -1;

	memset(resp, 0, sizeof(*resp));
	if (!inited) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			fprintf(stderr, "%s: cannot initialize libcurl\n", cmd);
			return -1;
		}
		inited = true;
	}
	blen = strlen(base_url);
	while (blen > 0 && base_url[blen - 1] == '/')
		blen--;
	url = xasprintf("%.*s%s", (int)blen, base_url, path);
	c = curl_easy_init();
	if (c == NULL) {
		fprintf(stderr, "%s: cannot initialize libcurl\n", cmd);
		goto fail;
	}
	for (; headers != NULL && *headers != NULL; headers++) {
		tmp = curl_slist_append(hl, *headers);
		if (tmp == NULL)
			goto oom;
		hl = tmp;
	}
	if (api_key != NULL && *api_key != '\0') {
		auth = xasprintf("Authorization: Bearer %s", api_key);
		tmp = curl_slist_append(hl, auth);
		explicit_bzero(auth, strlen(auth));
		if (tmp == NULL)
			goto oom;
		hl = tmp;
	}
	tmp = curl_slist_append(hl, "Accept: application/json");
	if (tmp == NULL)
		goto oom;
	hl = tmp;
	if (body != NULL) {
		tmp = curl_slist_append(hl, "Content-Type: application/json");
		if (tmp == NULL)
			goto oom;
		hl = tmp;
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)strlen(body));
	}
	/*
	 * Expect: 100-continue would stall a large POST by a second against
	 * a server that does not answer it.
	 */
	tmp = curl_slist_append(hl, "Expect:");
	if (tmp == NULL)
		goto oom;
	hl = tmp;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (strcmp(method, "GET") == 0)
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, CLI_HTTP_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "shivneri/" SHIVNERI_VERSION);
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		if (s.toobig)
			fprintf(stderr, "%s: %s: answer larger than %d bytes\n",
				cmd, url, CLI_HTTP_MAX_BODY);
		else
			fprintf(stderr, "%s: %s: %s\n", cmd, url,
				errbuf[0] != '\0' ? errbuf
						  : curl_easy_strerror(cc));
		goto fail;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	if (s.buf == NULL)
		s.buf = xcalloc(1, 1);
	resp->body = s.buf;
	resp->len = s.len;
	s.buf = NULL;
	resp->json = json_loadb(resp->body, resp->len, 0, NULL);
	rc = 0;
	goto done;
oom:
	fprintf(stderr, "%s: out of memory\n", cmd);
fail:
done:
	free(s.buf);
	free(auth);
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
		fwrite(resp->body, 1, resp->len, stdout);
		if (resp->len == 0 || resp->body[resp->len - 1] != '\n')
			putchar('\n');
		return;
	}
	s = json_dumps(resp->json, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (s == NULL)
		return;
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
