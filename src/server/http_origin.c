/*
 * Cross-site and DNS-rebinding refusals of the HTTP front (http_origin.h).
 *
 * A browser says where a request comes from: Sec-Fetch-Site (every
 * current browser, on every request) and Origin (on every request but
 * same-origin GET and HEAD).  A request those headers place on another
 * site is refused before its route runs, so a hostile page cannot make
 * the operator's browser disable a provider, retry a message or send mail
 * through a drop-in; the same-origin policy already keeps it from reading
 * the answers (we send no CORS headers), and no legitimate page of
 * another site can use the API for that reason.  DNS rebinding is the
 * same-origin case: a page of evil.example whose name now points at this
 * server is same-origin with it.  Only the Host header tells, and only
 * when no API key protects the data: then a browser must come by an IP
 * address or localhost.
 *
 * Everything here reads header values, which are untrusted but already
 * checked by httpd as printable header bytes; check() only compares, so
 * nothing fails but the 403 itself.
 */
#include "server/http_origin.h"
#include "server/httpd.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

/* A Host or an origin's authority longer than this is nobody's. */
#define AUTH_MAX 300

static bool
guarded(const char *method, const char *path)
{
	if (strncmp(path, "/v1/", 4) == 0 || strncmp(path, "/v3/", 4) == 0)
		return true;
	return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
}

/*
 * host[:port] without a default port into out (lower case); false when
 * it does not fit.  scheme is NULL for a Host header, whose scheme we do
 * not know (TLS may end at a proxy): then both defaults are dropped.
 */
static bool
authority(const char *s, size_t n, const char *scheme, char *out, size_t outsz)
{
	size_t i;

	if (n == 0 || n >= outsz)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || c == '/' || c == '@')
			return false;
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
	}
	out[n] = '\0';
	if ((scheme == NULL || strcmp(scheme, "http") == 0) && n > 3 &&
	    strcmp(out + n - 3, ":80") == 0)
		out[n - 3] = '\0';
	else if ((scheme == NULL || strcmp(scheme, "https") == 0) && n > 4 &&
		 strcmp(out + n - 4, ":443") == 0)
		out[n - 4] = '\0';
	return true;
}

/* True when the Origin header names the same host and port as Host. */
static bool
origin_matches(const char *origin, const char *host)
{
	char oa[AUTH_MAX], ha[AUTH_MAX];
	const char *scheme, *rest;

	if (host == NULL)
		return false;
	if (strncmp(origin, "http://", 7) == 0) {
		scheme = "http";
		rest = origin + 7;
	} else if (strncmp(origin, "https://", 8) == 0) {
		scheme = "https";
		rest = origin + 8;
	} else {
		return false; /* "null", another scheme, garbage */
	}
	return authority(rest, strlen(rest), scheme, oa, sizeof(oa)) &&
	       authority(host, strlen(host), NULL, ha, sizeof(ha)) &&
	       strcmp(oa, ha) == 0;
}

static bool
cross_site(const struct http_origin_req *r)
{
	if (r->fetch_site != NULL)
		return strcasecmp(r->fetch_site, "same-origin") != 0 &&
		       strcasecmp(r->fetch_site, "none") != 0;
	/* An older browser: Origin, when it sent one, must be ours. */
	return r->origin != NULL && !origin_matches(r->origin, r->host);
}

/*
 * True for a Host that no DNS answer can be behind: an IPv4 or IPv6
 * literal, localhost or a name under .localhost (which browsers resolve
 * to loopback themselves), with an optional port.
 */
static bool
host_is_address(const char *host)
{
	char h[AUTH_MAX], buf[sizeof(struct in6_addr)];
	const char *end;
	size_t n;

	if (host == NULL)
		return false;
	if (host[0] == '[') {
		end = strchr(host, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			return false;
		n = (size_t)(end - host - 1);
		if (n >= sizeof(h))
			return false;
		memcpy(h, host + 1, n);
		h[n] = '\0';
		return inet_pton(AF_INET6, h, buf) == 1;
	}
	n = strcspn(host, ":");
	if (n == 0 || n >= sizeof(h))
		return false;
	memcpy(h, host, n);
	h[n] = '\0';
	if (h[n - 1] == '.')
		h[--n] = '\0';
	if (inet_pton(AF_INET, h, buf) == 1 || strcasecmp(h, "localhost") == 0)
		return true;
	return n > 10 && strcasecmp(h + n - 10, ".localhost") == 0;
}

static const char why_cross[] = "a request from another site's page is refused";
static const char why_rebind[] =
    "without api_keys_file a browser must use an IP address or localhost "
    "here";

const char *
http_origin_check(const struct http_origin_req *r)
{
	bool browser = r->origin != NULL || r->fetch_site != NULL;

	if (!guarded(r->method, r->path))
		return NULL;
	if (cross_site(r))
		return why_cross;
	if (browser && !r->keyed && !host_is_address(r->host))
		return why_rebind;
	return NULL;
}

bool
http_origin_refuse(struct httpd_req *req, bool keyed, struct log_rl *rl)
{
	const struct http_origin_req r = {
	    .method = httpd_req_head(req)->method,
	    .path = httpd_req_head(req)->path,
	    .host = httpd_req_header(req, "Host"),
	    .origin = httpd_req_header(req, "Origin"),
	    .fetch_site = httpd_req_header(req, "Sec-Fetch-Site"),
	    .keyed = keyed,
	};
	const char *why = http_origin_check(&r);
	char path[64];

	if (why == NULL)
		return false;
	/* An outsider's page can repeat this at will: limited. */
	log_warnx_rl(rl, 10000,
		     "- http origin_refused peer=%s reason=%s path=%s",
		     httpd_req_peer(req),
		     why == why_cross ? "cross_site" : "not_an_address",
		     log_sanitize(r.path, strlen(r.path), path, sizeof(path)));
	httpd_reply_error(req, 403, "forbidden", why);
	return true;
}
