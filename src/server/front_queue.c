/*
 * The queue's routes: GET /v1/messages (a page of messages, filtered by
 * status and provider) and POST /v1/messages/ID/retry (a failed message
 * back to queued with a fresh budget).  See docs/http-api.md.
 *
 * The query string is untrusted: it is decoded by the form parser
 * (intake/form.h, application/x-www-form-urlencoded: strict %-escapes,
 * bounded fields) and then checked whole before the store is asked
 * anything: each parameter known, given once, not empty, in range and
 * printable; anything else is a 400 naming the parameter, and nothing is
 * read.  front_queue_parse() does no I/O, so it is fuzzed
 * (tests/fuzz/fuzz_queue_query.c).
 *
 * A retry is made durable by the store first (one transaction, which also
 * serializes two retries of one message: the second gets 409), and only
 * then handed to the dispatcher and answered.
 */
#include "server/http_front_int.h"
#include "common/util.h"
#include "dispatch/dispatcher.h"
#include "intake/form.h"
#include "link/link.h"
#include "server/httpd.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A request waiting for the store. */
struct queue_req {
	struct http_front *f;
	struct httpd_req *req;
	char id[ID_LEN + 1];
};

static void
reply_error(struct httpd_req *req, int status, const char *code,
	    const char *message)
{
	http_front__reply_json(req, status,
			       json_pack("{s:{s:s,s:s}}", "error", "code", code,
					 "message", message));
}

/* Printable ASCII without space: every value the parameters take. */
static bool
value_ok(const char *v, size_t len, size_t max)
{
	size_t i;

	if (len == 0 || len > max)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
			return false;
	return true;
}

/* 1 to STORE_LIST_MAX in plain decimal digits (no sign, no space). */
static int
limit_parse(const char *v, size_t len)
{
	int n = 0;
	size_t i;

	if (len == 0 || len > 3)
		return -1;
	for (i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		n = n * 10 + (v[i] - '0');
	}
	return n >= 1 && n <= STORE_LIST_MAX ? n : -1;
}

/* A status word of len bytes (not NUL-terminated), or -1. */
static int
status_parse(const char *v, size_t len)
{
	char word[16];

	if (!value_ok(v, len, sizeof(word) - 1))
		return -1;
	memcpy(word, v, len);
	word[len] = '\0';
	return msg_status_parse(word);
}

/* One field of the query into p; false with why set when it is bad. */
static bool
param_take(const struct form_field *fd, struct front_queue_params *p,
	   unsigned *seen, char *why, size_t whysz)
{
	static const char *const names[] = {"status", "provider", "limit",
					    "before"};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (strcmp(fd->name, names[i]) == 0)
			break;
	if (i == ARRAY_SIZE(names)) {
		snprintf(why, whysz,
			 "unknown parameter (status, provider, "
			 "limit and before are known)");
		return false;
	}
	if (*seen & (1u << i)) {
		snprintf(why, whysz, "%s: given twice", names[i]);
		return false;
	}
	*seen |= 1u << i;
	switch (i) {
	case 0:
		p->status = status_parse(fd->value, fd->len);
		if (p->status < 0) {
			snprintf(why, whysz,
				 "status: one of queued, sending, "
				 "delivered, failed");
			return false;
		}
		return true;
	case 1:
		if (!value_ok(fd->value, fd->len, STORE_LIST_PROVIDER_MAX)) {
			snprintf(why, whysz,
				 "provider: 1 to %d printable "
				 "characters",
				 STORE_LIST_PROVIDER_MAX);
			return false;
		}
		memcpy(p->provider, fd->value, fd->len);
		return true;
	case 2:
		p->limit = limit_parse(fd->value, fd->len);
		if (p->limit < 0) {
			snprintf(why, whysz, "limit: 1 to %d", STORE_LIST_MAX);
			return false;
		}
		return true;
	default:
		if (!value_ok(fd->value, fd->len, STORE_CURSOR_MAX)) {
			snprintf(why, whysz, "before: the next of a page");
			return false;
		}
		memcpy(p->before, fd->value, fd->len);
		return true;
	}
}

int
front_queue_parse(const char *query, size_t len, struct front_queue_params *p,
		  char *why, size_t whysz)
{
	struct form fm;
	unsigned seen = 0;
	size_t i;
	int rc = 0;

	memset(p, 0, sizeof(*p));
	p->status = -1;
	p->limit = FRONT_QUEUE_LIMIT_DEFAULT;
	if (len > FRONT_QUEUE_QUERY_MAX) {
		snprintf(why, whysz, "query string over %d bytes",
			 FRONT_QUEUE_QUERY_MAX);
		rc = -1;
		goto out;
	}
	if (form_parse("application/x-www-form-urlencoded", query, len, &fm,
		       why, whysz) != 0) {
		rc = -1;
		goto out;
	}
	for (i = 0; i < fm.n && rc == 0; i++)
		if (!param_take(&fm.f[i], p, &seen, why, whysz))
			rc = -1;
	form_cleanup(&fm);
out:
	if (rc != 0)
		memset(p, 0, sizeof(*p));
	return rc;
}

static json_t *
summary_json(const struct store_message *m)
{
	json_t *to = m->to_json ? json_loads(m->to_json, 0, NULL) : NULL;

	/* Stored by us as JSON; a row that is not shows no recipients. */
	if (!json_is_array(to)) {
		json_decref(to);
		to = json_array();
	}
	/* A listing shows the first few (the store cut long ones). */
	while (to != NULL && json_array_size(to) > STORE_LIST_TO_MAX)
		if (json_array_remove(to, json_array_size(to) - 1) != 0)
			break;
	return json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:i,s:o}", "id",
			 m->id, "status", msg_status_name(m->status), "from",
			 http_front__text_json(m->header_from), "to", to,
			 "subject", http_front__text_json(m->subject),
			 "created_at", http_front__time_json(m->created_ms),
			 "updated_at", http_front__time_json(m->updated_ms),
			 "provider", http_front__text_json(m->provider),
			 "attempt_count", m->attempts, "error",
			 http_front__text_json(m->error));
}

static void
list_cb(void *arg, int err, struct store_message *const *msgs, size_t n,
	const char *next)
{
	struct queue_req *q = arg;
	json_t *arr;
	size_t i;

	q->f->pending--;
	if (err == -EINVAL) {
		reply_error(q->req, 400, "bad_request",
			    "before: not the next of a page of this listing");
		goto out;
	}
	if (err != 0) {
		reply_error(q->req, 503, "unavailable", store_strerror(err));
		goto out;
	}
	arr = json_array();
	for (i = 0; i < n; i++)
		if (json_array_append_new(arr, summary_json(msgs[i])) != 0) {
			json_decref(arr);
			http_front__reply_failed(q->req);
			goto out;
		}
	http_front__reply_json(
	    q->req, 200,
	    json_pack("{s:o,s:o}", "messages", arr, "next",
		      next ? json_string(next) : json_null()));
out:
	free(q);
}

static void
queue_list(struct http_front *f, struct httpd_req *req)
{
	const char *target = httpd_req_head(req)->target;
	const char *qs = strchr(target, '?');
	struct front_queue_params p;
	struct store_list_query lq;
	struct queue_req *q;
	char why[160];

	qs = qs != NULL ? qs + 1 : "";
	if (front_queue_parse(qs, strlen(qs), &p, why, sizeof(why)) != 0) {
		reply_error(req, 400, "bad_request", why);
		return;
	}
	memset(&lq, 0, sizeof(lq));
	lq.status = p.status;
	lq.provider = p.provider[0] != '\0' ? p.provider : NULL;
	lq.limit = p.limit;
	lq.before = p.before[0] != '\0' ? p.before : NULL;
	q = xcalloc(1, sizeof(*q));
	q->f = f;
	q->req = req;
	f->pending++;
	store_list(f->st, &lq, list_cb, q);
}

static void
retry_cb(void *arg, int err, int64_t rowid)
{
	struct queue_req *q = arg;

	q->f->pending--;
	if (err == -ENOENT) {
		reply_error(q->req, 404, "not_found",
			    "no message with that id");
	} else if (err == STORE_ENOTFAILED) {
		reply_error(q->req, 409, "not_failed",
			    "only a failed message can be retried");
	} else if (err != 0) {
		reply_error(q->req, 503, "unavailable", store_strerror(err));
	} else {
		dispatcher_retried(q->f->d, rowid, q->id);
		http_front__reply_json(
		    q->req, 200,
		    json_pack("{s:s,s:s}", "id", q->id, "status", "queued"));
	}
	free(q);
}

static void
queue_retry(struct http_front *f, struct httpd_req *req, const char *id,
	    size_t idlen)
{
	char raw[128], dropin[ID_LEN + 1];
	struct queue_req *q;

	if (idlen >= sizeof(raw)) {
		reply_error(req, 404, "not_found", "no message with that id");
		return;
	}
	memcpy(raw, id, idlen);
	raw[idlen] = '\0';
	id = raw;
	/* A drop-in's id, as GET /v1/messages/ID takes it. */
	if (!id_valid(id) &&
	    http_front__id_from_dropin(id, dropin, sizeof(dropin)))
		id = dropin;
	if (!id_valid(id)) {
		reply_error(req, 404, "not_found", "no message with that id");
		return;
	}
	q = xcalloc(1, sizeof(*q));
	q->f = f;
	q->req = req;
	memcpy(q->id, id, ID_LEN + 1);
	f->pending++;
	store_retry(f->st, q->id, retry_cb, q);
}

/* 405 with the methods the route takes. */
static void
reply_method(struct httpd_req *req, const char *allow)
{
	char msg[64];

	if (!httpd_req_add_header(req, "Allow", allow)) {
		http_front__reply_failed(req);
		return;
	}
	snprintf(msg, sizeof(msg), "use %s here", allow);
	reply_error(req, 405, "method_not_allowed", msg);
}

bool
front_queue_route(struct http_front *f, struct httpd_req *req, const char *path)
{
	static const char suffix[] = "/retry";
	const char *method = httpd_req_head(req)->method;
	const char *rest;
	size_t n;

	if (strcmp(path, "/v1/messages") == 0) {
		if (strcmp(method, "POST") == 0)
			return false; /* a new message: http_front.c */
		if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
			queue_list(f, req);
		else
			reply_method(req, "GET, HEAD, POST");
		return true;
	}
	if (strncmp(path, "/v1/messages/", 13) != 0)
		return false;
	rest = path + 13;
	n = strlen(rest);
	if (n <= sizeof(suffix) - 1 ||
	    strcmp(rest + n - (sizeof(suffix) - 1), suffix) != 0)
		return false;
	if (strcmp(method, "POST") != 0)
		reply_method(req, "POST");
	else
		queue_retry(f, req, rest, n - (sizeof(suffix) - 1));
	return true;
}
