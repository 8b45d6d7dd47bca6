/*
 * The web console's static files (web/), compiled into the binary by
 * cmake/embed_web.cmake and served at "/", "/app.js", "/app.css",
 * "/favicon.svg" and "/favicon.ico" (the same icon) by http_console.c.  The
 * page is public and needs no API key: it holds no data, and it asks for the
 * key before it calls /v1 (docs/http-api.md).
 */
#ifndef SHIVNERI_HTTP_CONSOLE_H
#define SHIVNERI_HTTP_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

struct httpd_req;

/* One embedded file; data is NUL-terminated (not counted in len). */
struct console_file {
	const char *path;  /* the URL path it answers */
	const char *ctype; /* its Content-Type */
	const char *etag;  /* strong, quotes included: SHA-256 prefix */
	const unsigned char *data;
	size_t len;
};

/* The generated table (console_files.c, in the build folder). */
extern const struct console_file console_files[];
extern const size_t console_nfiles;

/* The file served at path (a path without its query), or NULL. */
const struct console_file *http_console_find(const char *path);

/*
 * Whether an If-None-Match value (NULL: none) names etag: "*", or a list
 * of entity tags separated by commas.  A weak tag (W/"...") matches too,
 * as RFC 9110 wants for If-None-Match (the weak comparison).
 */
bool http_console_etag_match(const char *if_none_match, const char *etag);

/*
 * Answers a request for a console file (path must be one that
 * http_console_find knows): GET and HEAD get the file, or 304 when
 * If-None-Match names its ETag; other methods 405.  Every answer carries
 * the security headers (CSP without inline script or style, nosniff,
 * no framing, no referrer).
 */
void http_console_reply(struct httpd_req *req, const char *path);

#endif
