/*
 * The HTTP front (http_front.h) on evhttp.  One generic callback routes by
 * path; each route is a small function that checks (method, auth, input)
 * and replies, or hands the request on (to the submit path or the store)
 * and replies from its callback.  evhttp keeps a request whose client went
 * away until we reply, and then frees it, so a late reply is always safe.
 * JSON answers are built with jansson (json_pack: new references, freed
 * after dumping).  Keys never reach a log line.
 */
#include "server/http_front.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/dispatcher.h"
#include "dispatch/registry.h"
#include "intake/message.h"
#include "intake/submit.h"
#include "link/link.h"
#include "server/supervisor.h"
#include "store/store.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

struct http_front {
	const struct config *cfg;
	struct store *st;
	struct registry *reg;
	struct dispatcher *d;
	struct supervisor *sv;
	struct submit *sub;
	struct evhttp *http;
	struct evhttp_bound_socket *sock;
	int port;
	char **keys;
	size_t nkeys;
	unsigned pending; /* requests waiting for the submit path or store */
	size_t max_body;
};

/* A request waiting for a callback. */
struct pending {
	struct http_front *f;
	struct evhttp_request *req;
};

/* Out of memory while answering: evhttp's own short 503. */
static void
reply_failed(struct evhttp_request *req)
{
	log_warnx("- http cannot build an answer: out of memory");
	evhttp_send_error(req, 503, NULL);
}

static void
reply_text(struct evhttp_request *req, int status, const char *ctype,
	   const char *body, size_t len)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	if (evhttp_add_header(h, "Content-Type", ctype) != 0 ||
	    evhttp_add_header(h, "Cache-Control", "no-store") != 0 ||
	    evbuffer_add(evhttp_request_get_output_buffer(req), body, len) !=
		0) {
		reply_failed(req);
		return;
	}
	evhttp_send_reply(req, status, NULL, NULL);
}

/* Steals obj; NULL (a json_pack that failed) is answered 503. */
static void
reply_json(struct evhttp_request *req, int status, json_t *obj)
{
	char *s = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;

	json_decref(obj);
	if (s == NULL) {
		reply_failed(req);
		return;
	}
	reply_text(req, status, "application/json", s, strlen(s));
	free(s);
}

static void
reply_error(struct evhttp_request *req, int status, const char *code,
	    const char *message)
{
	reply_json(req, status,
		   json_pack("{s:{s:s,s:s}}", "error", "code", code, "message",
			     message));
}

static const char *
method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	default:
		return "other";
	}
}

static bool
want_method(struct evhttp_request *req, enum evhttp_cmd_type m)
{
	char msg[64];

	if (evhttp_request_get_command(req) == m)
		return true;
	snprintf(msg, sizeof(msg), "use %s here", method_name(m));
	reply_error(req, 405, "method_not_allowed", msg);
	return false;
}

static json_t *
rfc3339_json(int64_t ms)
{
	char buf[40];

	if (ms <= 0)
		return json_null();
	return json_string(rfc3339(ms, buf, sizeof(buf)));
}

/* json_string of untrusted-but-stored text; null for NULL. */
static json_t *
str_or_null(const char *s)
{
	json_t *j;

	if (s == NULL)
		return json_null();
	j = json_string(s);
	return j != NULL ? j : json_string("?");
}

/* --- API keys ---------------------------------------------------------- */

static void
keys_free(char **keys, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		explicit_bzero(keys[i], strlen(keys[i]));
		free(keys[i]);
	}
	free(keys);
}

int
http_front_reload_keys(struct http_front *f)
{
	char *text, *line, *next;
	char **keys = NULL;
	size_t n = 0, textlen = 0;
	int rc;

	if (f->cfg->api_keys_file == NULL || *f->cfg->api_keys_file == '\0')
		return 0;
	rc = file_read_all(f->cfg->api_keys_file, 1 << 20, &text, &textlen);
	if (rc != 0) {
		log_warnx("- http cannot read api_keys_file %s: %s",
			  f->cfg->api_keys_file, strerror(-rc));
		return rc;
	}
	for (line = text; line != NULL; line = next) {
		size_t len;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		len = strlen(line);
		while (len > 0 &&
		       (line[len - 1] == '\r' || line[len - 1] == ' ' ||
			line[len - 1] == '\t'))
			line[--len] = '\0';
		while (*line == ' ' || *line == '\t')
			line++;
		if (*line == '\0' || *line == '#')
			continue;
		keys = xreallocarray(keys, n + 1, sizeof(*keys));
		keys[n++] = xstrdup(line);
	}
	/* The whole file: the line ends were overwritten with NULs. */
	explicit_bzero(text, textlen);
	free(text);
	keys_free(f->keys, f->nkeys);
	f->keys = keys;
	f->nkeys = n;
	log_info("- http api keys loaded count=%zu", n);
	return 0;
}

static bool
authorized(struct http_front *f, struct evhttp_request *req)
{
	const char *h;
	size_t i, len;
	bool ok = false;

	if (f->cfg->api_keys_file == NULL || *f->cfg->api_keys_file == '\0')
		return true;
	h = evhttp_find_header(evhttp_request_get_input_headers(req),
			       "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		goto deny;
	h += 7;
	len = strlen(h);
	for (i = 0; i < f->nkeys; i++)
		if (strlen(f->keys[i]) == len &&
		    CRYPTO_memcmp(f->keys[i], h, len) == 0)
			ok = true;
	if (ok)
		return true;
deny:
	reply_error(req, 401, "unauthorized",
		    "missing or wrong API key (Authorization: Bearer KEY)");
	return false;
}

/* --- /v1/messages ------------------------------------------------------ */

/* The submit path's answer, after the commit (or a refusal). */
static void
post_reply(void *arg, const struct submit_reply *r)
{
	struct pending *pd = arg;
	char body[96];
	int n;

	pd->f->pending--;
	if (r->status == 202) {
		/* The hot path: an id is Crockford base32, nothing to escape.
		 */
		n = snprintf(body, sizeof(body),
			     "{\"id\":\"%s\",\"status\":\"queued\"}", r->id);
		reply_text(pd->req, 202, "application/json", body, (size_t)n);
	} else if (r->status == 200) {
		reply_json(pd->req, 200,
			   json_pack("{s:s,s:b}", "id", r->id, "duplicate", 1));
	} else {
		reply_error(pd->req, r->status, r->err->code, r->err->message);
	}
	free(pd);
}

static bool
json_content_type(const char *ctype)
{
	return ctype != NULL &&
	       strncasecmp(ctype, "application/json", 16) == 0 &&
	       (ctype[16] == '\0' || ctype[16] == ';' || ctype[16] == ' ');
}

static void
post_message(struct http_front *f, struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	const char *idem = evhttp_find_header(h, "Idempotency-Key");
	const char *auth = evhttp_find_header(h, "Authorization");
	char scope[SUBMIT_SCOPE_SIZE];
	size_t len = evbuffer_get_length(body);
	const char *json;
	struct pending *pd;

	if (!json_content_type(evhttp_find_header(h, "Content-Type"))) {
		reply_error(req, 415, "unsupported_media_type",
			    "Content-Type must be application/json");
		return;
	}
	/* evhttp refuses longer bodies itself; this is the same cap. */
	if (len > f->max_body) {
		reply_error(req, 413, "too_large", "request body too large");
		return;
	}
	if (idem != NULL && !submit_idem_key_valid(idem)) {
		reply_error(
		    req, 400, "invalid_field",
		    "Idempotency-Key: 1 to 255 printable ASCII characters");
		return;
	}
	/* The body lives in the request until we reply. */
	json = (const char *)evbuffer_pullup(body, -1);
	if (json == NULL && len > 0) {
		reply_failed(req);
		return;
	}
	if (json == NULL)
		json = "";
	pd = xmalloc(sizeof(*pd));
	pd->f = f;
	pd->req = req;
	f->pending++;
	/* Keys are per API key: with keys on, authorized() matched this one. */
	if (idem != NULL)
		submit_scope_of_key(
		    f->nkeys > 0 && auth != NULL ? auth + 7 : NULL, scope);
	submit_json(f->sub, json, len, idem, idem != NULL ? scope : NULL,
		    post_reply, pd);
}

static void
get_cb(void *arg, int err, const struct store_message *m,
       const struct store_attempt *att, size_t natt)
{
	struct pending *pd = arg;
	json_t *o, *attempts, *to;
	size_t i;

	pd->f->pending--;
	if (err == -ENOENT) {
		reply_error(pd->req, 404, "not_found",
			    "no message with that id");
		goto out;
	}
	if (err != 0) {
		reply_error(pd->req, 503, "unavailable", store_strerror(err));
		goto out;
	}
	attempts = json_array();
	for (i = 0; i < natt; i++)
		if (json_array_append_new(
			attempts,
			json_pack("{s:i,s:o,s:o,s:s,s:o}", "n", att[i].n,
				  "provider", str_or_null(att[i].provider),
				  "at", rfc3339_json(att[i].at_ms), "outcome",
				  outcome_name(att[i].outcome), "detail",
				  str_or_null(att[i].detail))) != 0) {
			json_decref(attempts);
			reply_failed(pd->req);
			goto out;
		}
	to = m->to_json ? json_loads(m->to_json, 0, NULL) : NULL;
	if (to == NULL)
		to = json_array();
	o = json_pack(
	    "{s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:i,s:o}", "id", m->id,
	    "status", msg_status_name(m->status), "from",
	    str_or_null(m->header_from), "to", to, "subject",
	    str_or_null(m->subject), "created_at", rfc3339_json(m->created_ms),
	    "updated_at", rfc3339_json(m->updated_ms), "provider",
	    str_or_null(m->provider), "provider_message_id",
	    str_or_null(m->provider_message_id), "error", str_or_null(m->error),
	    "attempt_count", m->attempts, "attempts", attempts);
	if (m->tags_json != NULL) {
		json_t *tags = json_loads(m->tags_json, 0, NULL);
		/* Stored by us as JSON; a row that is not shows no tags. */
		if (tags != NULL && o != NULL &&
		    json_object_set_new(o, "tags", tags) != 0) {
			json_decref(o);
			o = NULL;
		}
	}
	reply_json(pd->req, 200, o);
out:
	free(pd);
}

static void
get_message(struct http_front *f, struct evhttp_request *req, const char *id)
{
	struct pending *pd;

	if (!id_valid(id)) {
		reply_error(req, 404, "not_found", "no message with that id");
		return;
	}
	pd = xmalloc(sizeof(*pd));
	pd->f = f;
	pd->req = req;
	f->pending++;
	store_get(f->st, id, get_cb, pd);
}

/* --- /v1/providers, /v1/stats ------------------------------------------ */

static json_t *
provider_json(struct http_front *f, struct provider *p)
{
	json_t *pid = json_null(), *hb = json_null();
	const char *held = f->sv ? supervisor_held(f->sv, p->name) : NULL;
	json_t *reason = json_null();
	char clean[256];
	pid_t spid;

	/* A held agent's words (made printable, so always valid JSON), or
	 * why the provider went down. */
	if (held == NULL && p->state != PROVIDER_UP && p->reason[0] != '\0')
		held = p->reason;
	if (held != NULL) {
		json_decref(reason);
		reason = json_string(
		    log_sanitize(held, strlen(held), clean, sizeof(clean)));
	}

	if (p->spawn) {
		spid = f->sv ? supervisor_pid(f->sv, p->name) : 0;
		if (spid > 0) {
			json_decref(pid);
			pid = json_integer(spid);
		}
	} else if (p->conn != NULL && p->agent_pid > 0) {
		json_decref(pid);
		pid = json_integer(p->agent_pid);
	}
	if (p->last_heartbeat_mono > 0) {
		json_decref(hb);
		hb = json_integer(mono_ms() - p->last_heartbeat_mono);
	}
	return json_pack(
	    "{s:s,s:s,s:s,s:b,s:o,s:o,s:i,s:i,s:i,s:I,s:I,s:I,"
	    "s:s,s:i,s:s,s:o}",
	    "name", p->name, "type", p->type, "state", provider_state_name(p),
	    "remote", !p->spawn, "pid", pid, "last_heartbeat_ms_ago", hb,
	    "weight", p->se.weight, "priority", p->se.priority, "in_flight",
	    (int)p->se.in_flight, "delivered", (json_int_t)p->delivered,
	    "failed", (json_int_t)p->failed, "lost", (json_int_t)p->lost,
	    "health", provider_health_name(p), "max_in_flight",
	    p->max_in_flight, "breaker",
	    p->breaker == BREAKER_OPEN        ? "open"
	    : p->breaker == BREAKER_HALF_OPEN ? "half_open"
					      : "closed",
	    "reason", reason);
}

static void
get_providers(struct http_front *f, struct evhttp_request *req)
{
	json_t *arr = json_array();
	size_t i, n = registry_count(f->reg);

	for (i = 0; i < n; i++)
		if (json_array_append_new(
			arr, provider_json(f, registry_at(f->reg, i))) != 0) {
			json_decref(arr);
			reply_failed(req);
			return;
		}
	reply_json(req, 200, json_pack("{s:o}", "providers", arr));
}

static void
provider_action(struct http_front *f, struct evhttp_request *req,
		const char *rest)
{
	char name[LINK_NAME_MAX + 1];
	const char *slash = strchr(rest, '/');
	struct provider *p;
	size_t n;
	bool disable;

	if (slash == NULL || (size_t)(slash - rest) > LINK_NAME_MAX) {
		reply_error(req, 404, "not_found", "no such provider");
		return;
	}
	n = (size_t)(slash - rest);
	memcpy(name, rest, n);
	name[n] = '\0';
	if (strcmp(slash + 1, "disable") == 0)
		disable = true;
	else if (strcmp(slash + 1, "enable") == 0)
		disable = false;
	else {
		reply_error(req, 404, "not_found", "no such route");
		return;
	}
	if (!want_method(req, EVHTTP_REQ_POST))
		return;
	p = registry_find(f->reg, name);
	if (p == NULL) {
		reply_error(req, 404, "not_found", "no such provider");
		return;
	}
	dispatcher_set_disabled(f->d, p, disable);
	reply_json(req, 200, provider_json(f, p));
}

static void
get_stats(struct http_front *f, struct evhttp_request *req)
{
	int64_t c[MSG_NSTATUS];

	dispatcher_counts(f->d, c);
	reply_json(req, 200,
		   json_pack("{s:I,s:I,s:I,s:I}", "queued",
			     (json_int_t)c[MSG_QUEUED], "sending",
			     (json_int_t)c[MSG_SENDING], "delivered",
			     (json_int_t)c[MSG_DELIVERED], "failed",
			     (json_int_t)c[MSG_FAILED]));
}

/* --- /metrics, /healthz, /readyz ---------------------------------------- */

static void metrics_printf(bool *bad, struct evbuffer *out, const char *fmt,
			   ...) __attribute__((format(printf, 3, 4)));

/* evbuffer_add_printf, with a failure (out of memory) remembered in *bad. */
static void
metrics_printf(bool *bad, struct evbuffer *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(out, fmt, ap) < 0)
		*bad = true;
	va_end(ap);
}

static void
metrics_queue(struct http_front *f, struct evbuffer *out, bool *bad)
{
	int64_t c[MSG_NSTATUS];
	uint64_t ready, loaded, delayed;
	int s;

	dispatcher_counts(f->d, c);
	dispatcher_queue_sizes(f->d, &ready, &loaded, &delayed);
	metrics_printf(
	    bad, out,
	    "# HELP shivneri_messages Messages in the store by status.\n"
	    "# TYPE shivneri_messages gauge\n");
	for (s = 0; s < MSG_NSTATUS; s++)
		metrics_printf(bad, out,
			       "shivneri_messages{status=\"%s\"} %" PRId64 "\n",
			       msg_status_name(s), c[s]);
	metrics_printf(
	    bad, out,
	    "# HELP shivneri_queue_memory Queued messages held in memory, by "
	    "where.\n# TYPE shivneri_queue_memory gauge\n"
	    "shivneri_queue_memory{where=\"ready\"} %" PRIu64 "\n"
	    "shivneri_queue_memory{where=\"loaded\"} %" PRIu64 "\n"
	    "shivneri_queue_memory{where=\"delayed\"} %" PRIu64 "\n"
	    "# HELP shivneri_store_pending Store operations not yet done.\n"
	    "# TYPE shivneri_store_pending gauge\n"
	    "shivneri_store_pending %zu\n",
	    ready, loaded, delayed, store_pending(f->st));
}

static void
metrics_providers(struct http_front *f, struct evbuffer *out, bool *bad)
{
	size_t i, n = registry_count(f->reg);
	struct provider *p;

	metrics_printf(
	    bad, out,
	    "# HELP shivneri_provider_up 1 when the provider takes messages.\n"
	    "# TYPE shivneri_provider_up gauge\n");
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		metrics_printf(
		    bad, out, "shivneri_provider_up{provider=\"%s\"} %d\n",
		    p->name, p->state == PROVIDER_UP && !p->disabled);
	}
	metrics_printf(
	    bad, out,
	    "# HELP shivneri_provider_in_flight Messages at the provider's "
	    "agent.\n# TYPE shivneri_provider_in_flight gauge\n");
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		metrics_printf(
		    bad, out,
		    "shivneri_provider_in_flight{provider=\"%s\"} %u\n",
		    p->name, p->se.in_flight);
	}
	metrics_printf(
	    bad, out,
	    "# HELP shivneri_provider_attempts_total Attempts by outcome.\n"
	    "# TYPE shivneri_provider_attempts_total counter\n");
	for (i = 0; i < n; i++) {
		p = registry_at(f->reg, i);
		metrics_printf(
		    bad, out,
		    "shivneri_provider_attempts_total{provider=\"%s\","
		    "outcome=\"delivered\"} %" PRIu64 "\n"
		    "shivneri_provider_attempts_total{provider=\"%s\","
		    "outcome=\"failed\"} %" PRIu64 "\n"
		    "shivneri_provider_attempts_total{provider=\"%s\","
		    "outcome=\"lost\"} %" PRIu64 "\n",
		    p->name, p->delivered, p->name, p->failed, p->name,
		    p->lost);
	}
}

static void
get_metrics(struct http_front *f, struct evhttp_request *req)
{
	struct evbuffer *out = evbuffer_new();
	bool bad = false;

	if (out == NULL) {
		reply_failed(req);
		return;
	}
	metrics_queue(f, out, &bad);
	metrics_providers(f, out, &bad);
	if (bad ||
	    evhttp_add_header(evhttp_request_get_output_headers(req),
			      "Content-Type", "text/plain; version=0.0.4") != 0)
		reply_failed(req);
	else
		evhttp_send_reply(req, 200, NULL, out);
	evbuffer_free(out);
}

/*
 * Ready when the store can write and a provider is up; otherwise 503 with
 * every reason, so an operator (or a load balancer's log) sees why.
 */
static void
get_readyz(struct http_front *f, struct evhttp_request *req)
{
	const char *why = NULL;
	bool store_ok = store_healthy(f->st, &why);
	bool up = registry_any_up(f->reg);
	json_t *reasons = json_array();
	char msg[256];
	int bad = 0;

	if (why == NULL)
		why = "unknown";
	if (!store_ok) {
		snprintf(msg, sizeof(msg), "store not writable: %s", why);
		bad |= json_array_append_new(reasons, str_or_null(msg));
	}
	if (!up)
		bad |= json_array_append_new(reasons,
					     json_string("no provider up"));
	if (bad != 0) {
		json_decref(reasons);
		reply_failed(req);
		return;
	}
	reply_json(req, store_ok && up ? 200 : 503,
		   json_pack("{s:s,s:b,s:o,s:b,s:o}", "status",
			     store_ok && up ? "ready" : "not ready", "store",
			     store_ok, "store_error",
			     store_ok ? json_null() : str_or_null(why),
			     "provider_up", up, "reasons", reasons));
}

/* --- routing ----------------------------------------------------------- */

/* The /v1/ routes, behind the API key. */
static void
route_v1(struct http_front *f, struct evhttp_request *req, const char *path)
{
	if (strcmp(path, "/v1/messages") == 0) {
		if (want_method(req, EVHTTP_REQ_POST))
			post_message(f, req);
	} else if (strncmp(path, "/v1/messages/", 13) == 0) {
		if (want_method(req, EVHTTP_REQ_GET))
			get_message(f, req, path + 13);
	} else if (strcmp(path, "/v1/providers") == 0) {
		if (want_method(req, EVHTTP_REQ_GET))
			get_providers(f, req);
	} else if (strncmp(path, "/v1/providers/", 14) == 0) {
		provider_action(f, req, path + 14);
	} else if (strcmp(path, "/v1/stats") == 0) {
		if (want_method(req, EVHTTP_REQ_GET))
			get_stats(f, req);
	} else {
		reply_error(req, 404, "not_found", "no such route");
	}
}

static void
route(struct evhttp_request *req, void *arg)
{
	struct http_front *f = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;

	if (path == NULL || *path == '\0')
		path = "/";
	if (strcmp(path, "/healthz") == 0)
		reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
	else if (strcmp(path, "/readyz") == 0)
		get_readyz(f, req);
	else if (strcmp(path, "/metrics") == 0)
		get_metrics(f, req);
	else if (strncmp(path, "/v1/", 4) != 0)
		reply_error(req, 404, "not_found", "no such route");
	else if (authorized(f, req))
		route_v1(f, req, path);
}

/* The port bound (http_listen may say 0); 0 when it cannot be read. */
static int
bound_port(struct evhttp_bound_socket *sock)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(evhttp_bound_socket_get_fd(sock),
			(struct sockaddr *)&ss, &sl) != 0)
		return 0;
	return ntohs(ss.ss_family == AF_INET6
			 ? ((struct sockaddr_in6 *)&ss)->sin6_port
			 : ((struct sockaddr_in *)&ss)->sin_port);
}

/* evhttp on host:port with our limits; 0 or -1 with err filled. */
static int
listen_http(struct http_front *f, struct event_base *base, char *err,
	    size_t errlen)
{
	char *host = NULL;
	int port, rc = -1;

	if (hostport_parse(f->cfg->http_listen, &host, &port) != 0) {
		snprintf(err, errlen, "http_listen %s: not host:port",
			 f->cfg->http_listen);
		return -1;
	}
	f->http = evhttp_new(base);
	if (f->http == NULL) {
		snprintf(err, errlen, "http_listen %s: evhttp_new failed",
			 f->cfg->http_listen);
		goto out;
	}
	evhttp_set_max_body_size(f->http, (ev_ssize_t)f->max_body);
	evhttp_set_max_headers_size(f->http, 64 * 1024);
	evhttp_set_timeout(f->http, 60);
	evhttp_set_allowed_methods(
	    f->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
			 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(f->http, route, f);
	f->sock =
	    evhttp_bind_socket_with_handle(f->http, host, (ev_uint16_t)port);
	if (f->sock == NULL) {
		snprintf(err, errlen, "http_listen %s: cannot bind: %s",
			 f->cfg->http_listen, strerror(errno));
		goto out;
	}
	f->port = bound_port(f->sock);
	rc = 0;
out:
	free(host);
	return rc;
}

struct http_front *
http_front_new(struct event_base *base, const struct config *cfg,
	       struct store *st, struct registry *reg, struct dispatcher *d,
	       struct supervisor *sv, struct submit *sub, char *err,
	       size_t errlen)
{
	struct http_front *f = xcalloc(1, sizeof(*f));
	struct message_limits lim = {
	    .max_message_bytes = (size_t)cfg->max_message_bytes,
	    .max_recipients = MESSAGE_MAX_RECIPIENTS,
	};

	f->cfg = cfg;
	f->st = st;
	f->reg = reg;
	f->d = d;
	f->sv = sv;
	f->sub = sub;
	/* One limit: any JSON whose built message fits gets through. */
	f->max_body = message_json_max_bytes(&lim);
	if (http_front_reload_keys(f) != 0) {
		snprintf(err, errlen, "cannot read api_keys_file %s",
			 cfg->api_keys_file);
		goto fail;
	}
	if (listen_http(f, base, err, errlen) != 0)
		goto fail;
	return f;
fail:
	http_front_free(f);
	return NULL;
}

int
http_front_port(const struct http_front *f)
{
	return f->port;
}

size_t
http_front_max_body(const struct http_front *f)
{
	return f->max_body;
}

void
http_front_stop_accepting(struct http_front *f)
{
	if (f->sock != NULL) {
		evhttp_del_accept_socket(f->http, f->sock);
		f->sock = NULL;
	}
}

unsigned
http_front_pending(const struct http_front *f)
{
	return f->pending;
}

void
http_front_free(struct http_front *f)
{
	if (f == NULL)
		return;
	if (f->http != NULL)
		evhttp_free(f->http);
	keys_free(f->keys, f->nkeys);
	free(f);
}
