/*
 * The web console's files: "/", "/app.js", "/app.css" and the icon
 * "/favicon.svg" (also answered at "/favicon.ico", which browsers ask for
 * by themselves on pages that name no icon), from the table
 * cmake/embed_web.cmake generates out of web/ at build time, so the binary
 * alone serves them (no install step, no CDN).  The page is public: it
 * holds no data and asks for the API key before it calls /v1, so these
 * routes take no key.  Each answer carries a strong ETag (fixed at build
 * time) with Cache-Control: no-cache, so a browser revalidates and gets a
 * 304 until the binary changes, and the security headers that keep the
 * page's own script the only one that runs: a Content-Security-Policy of
 * 'self' without inline script or style, no MIME sniffing, no framing, no
 * Referer.  Nothing here allocates or fails but the answer itself.
 */
#include "server/http_console.h"
#include "server/httpd.h"

#include <string.h>

/*
 * default-src 'self' covers scripts, styles, images and fetch(); the rest
 * closes what default-src does not: <base>, form targets, framing.
 */
#define CONSOLE_CSP                                                            \
	"default-src 'self'; base-uri 'none'; form-action 'none'; "            \
	"frame-ancestors 'none'"

const struct console_file *
http_console_find(const char *path)
{
	size_t i;

	for (i = 0; i < console_nfiles; i++)
		if (strcmp(console_files[i].path, path) == 0)
			return &console_files[i];
	return NULL;
}

bool
http_console_etag_match(const char *inm, const char *etag)
{
	size_t elen = strlen(etag);
	const char *p = inm;

	if (p == NULL)
		return false;
	/* Bounded by the header's length: every turn consumes a byte. */
	while (*p != '\0') {
		size_t n;

		p += strspn(p, " \t,");
		if (*p == '*')
			return true;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		n = strcspn(p, ",");
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == elen && memcmp(p, etag, elen) == 0)
			return true;
		p += strcspn(p, ",");
	}
	return false;
}

/* The headers of every console answer; false when they do not fit. */
static bool
console_headers(struct httpd_req *req, const struct console_file *cf)
{
	return httpd_req_add_header(req, "Content-Security-Policy",
				    CONSOLE_CSP) &&
	       httpd_req_add_header(req, "X-Frame-Options", "DENY") &&
	       httpd_req_add_header(req, "Referrer-Policy", "no-referrer") &&
	       httpd_req_add_header(req, "ETag", cf->etag) &&
	       httpd_req_add_header(req, "Cache-Control", "no-cache");
}

void
http_console_reply(struct httpd_req *req, const char *path)
{
	const struct console_file *cf = http_console_find(path);
	const char *method = httpd_req_head(req)->method;

	if (cf == NULL) {
		httpd_reply_error(req, 404, "not_found", "no such route");
		return;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		if (!httpd_req_add_header(req, "Allow", "GET, HEAD")) {
			httpd_reply_error(req, 503, "unavailable",
					  "out of memory");
			return;
		}
		httpd_reply_error(req, 405, "method_not_allowed",
				  "use GET here");
		return;
	}
	/* A few hundred bytes of fixed text: they always fit the room. */
	if (!console_headers(req, cf)) {
		httpd_reply_error(req, 503, "unavailable",
				  "answer headers do not fit");
		return;
	}
	if (http_console_etag_match(httpd_req_header(req, "If-None-Match"),
				    cf->etag)) {
		httpd_reply(req, 304, cf->ctype, NULL, 0);
		return;
	}
	httpd_reply(req, 200, cf->ctype, cf->data, cf->len);
}
