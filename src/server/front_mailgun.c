/*
 * The Mailgun drop-in routes (to come): unknown /v3/ paths are 404.
 */
#include "server/http_front_int.h"
#include "server/httpd.h"

void
front_mailgun_route(struct http_front *f, struct httpd_req *req,
		    const char *path)
{
	(void)f;
	(void)path;
	http_front__reply_json(req, 404,
			       json_pack("{s:s}", "message", "Not found"));
}
