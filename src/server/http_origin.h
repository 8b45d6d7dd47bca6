/*
 * The browser's side of the HTTP front: which requests a web page of
 * another site, or a page that reached us through DNS rebinding, may not
 * make.  The API takes no cookie, but without api_keys_file it takes no
 * credential at all, and the Mailgun drop-in takes Basic credentials that
 * a browser may have kept: either way the browser itself is the
 * credential, and any page it shows could ride it (disable a provider,
 * retry a message, send mail through the drop-ins).  Clients that are not
 * browsers send neither Origin nor Sec-Fetch-Site and are never refused.
 */
#ifndef SHIVNERI_SERVER_HTTP_ORIGIN_H
#define SHIVNERI_SERVER_HTTP_ORIGIN_H

#include <stdbool.h>

#include "common/log.h"

struct httpd_req;

/* What http_origin_check() reads of a request; NULL for a header absent. */
struct http_origin_req {
	const char *method;
	const char *path;
	const char *host;       /* the Host header */
	const char *origin;     /* the Origin header */
	const char *fetch_site; /* the Sec-Fetch-Site header */
	bool keyed;             /* api_keys_file is set */
};

/*
 * NULL when r may go on, else why it is refused (a fixed sentence, for a
 * 403).  Guarded are the data routes (/v1/, /v3/) whatever the method and
 * every other method than GET and HEAD anywhere.  A guarded request is
 * refused when it comes from another site: Sec-Fetch-Site other than
 * same-origin or none, or, without it, an Origin whose host and port are
 * not those of Host ("null" included).  Without api_keys_file a guarded
 * request from a browser (Origin or Sec-Fetch-Site present) is also
 * refused unless Host is an IP address or localhost: a name could be an
 * attacker's, rebound to this server, and the page then is same-origin.
 * Pure: no I/O, fuzzed by tests/fuzz/fuzz_origin.c.
 */
const char *http_origin_check(const struct http_origin_req *r);

/*
 * http_origin_check() on req: true when it refused req, which is then
 * answered 403 and logged (with the peer, limited by rl).
 */
bool http_origin_refuse(struct httpd_req *req, bool keyed, struct log_rl *rl);

#endif
