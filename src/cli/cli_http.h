/*
 * What the client commands share: one HTTP request to the server's /v1 API
 * with libcurl's easy interface, the JSON answer parsed with jansson, and
 * the printing of an API error ({"error": {"code", "message"}}) so that
 * every command fails the same way: a message on stderr and exit 1.
 */
#ifndef SHIVNERI_CLI_HTTP_H
#define SHIVNERI_CLI_HTTP_H

#include <stddef.h>

#include <jansson.h>

#include "cli/cli_opts.h"

/* Default for --url: $SHIVNERI_URL, else http://127.0.0.1:8025. */
#define CLI_DEFAULT_URL "http://127.0.0.1:8025"

struct cli_http_response {
	long status; /* HTTP status; 0 when nothing came back */
	char *body;  /* NUL-terminated, owned */
	size_t len;
	json_t *json; /* new reference, NULL when the body is not JSON */
};

/* How long one request may take in all, by default (--timeout). */
#define CLI_HTTP_TIMEOUT_S 60L

/*
 * Sets that limit for the requests that follow (seconds, at least 1); the
 * connection itself gets at most 10 s of it.
 */
void cli_http_set_timeout(long seconds);

/* The URL to use when no --url was given (borrowed). */
const char *cli_http_default_url(void);

/*
 * Sends method to base_url + path with an optional JSON body and optional
 * extra header lines ("Name: value", NULL-terminated array; NULL for
 * none); api_key, when set, goes as "Authorization: Bearer".  Returns 0
 * once a response arrived, whatever its status (resp must then be cleaned
 * up), or -1 after printing why on stderr, prefixed with cmd.  The answer
 * is capped at 64 MiB.
 */
int cli_http_request(const char *cmd, const char *method, const char *base_url,
		     const char *path, const char *api_key, const char *body,
		     const char *const *headers, struct cli_http_response *resp)
    __attribute__((warn_unused_result));
void cli_http_response_cleanup(struct cli_http_response *resp);

/*
 * Prints "CMD: HTTP STATUS: CODE: MESSAGE" (the API's error when the body
 * has one, else the start of the body, sanitized) on stderr.
 */
void cli_http_print_error(const char *cmd,
			  const struct cli_http_response *resp);

/* Prints the JSON answer on stdout, indented (for --json). */
void cli_http_print_json(const struct cli_http_response *resp);

/*
 * The read commands' whole job: GETs path from o->url with o->api_key and
 * expects a 200 whose JSON answer (or, when key is set, its member key)
 * has the given type.  Then it prints the answer indented when o->json,
 * else hands that value (borrowed) to print.  Returns the exit status: 0
 * done, 1 when the request failed or the answer is an error or another
 * shape (said on stderr, prefixed with cmd).
 */
int cli_http_get_print(const char *cmd, const struct cli_opts *o,
		       const char *path, const char *key, json_type type,
		       void (*print)(const json_t *v));

/*
 * "/v1/messages/ID" then suffix ("" or "/retry"), the id percent-escaped
 * as typed on the command line; NULL when it cannot be.  Free it.
 */
char *cli_message_path(const char *id, const char *suffix);

/* Shorthands for reading answers; NULL or the default when absent. */
const char *cli_json_str(const json_t *obj, const char *key);
/* The string at key made safe for a terminal in buf, or "-" when absent. */
const char *cli_json_text(const json_t *obj, const char *key, char *buf,
			  size_t bufsz);
long long cli_json_int(const json_t *obj, const char *key, long long dflt);

#endif
