/*
 * The HTTP front (http_front.h): the routes, on the server of httpd.h.
 * httpd hands over each request as soon as its head is in; route() checks
 * the path, the API key and the method before a byte of body is read, and
 * only POST /v1/messages asks for its body (capped by the one limit,
 * reserved from the server's body budget).  Each route checks and replies,
 * or hands the request on (to the submit path or the store) and replies
 * from its callback; httpd keeps the request until we reply, even if its
 * client went away, so a late reply is always safe.  JSON answers are
 * built with jansson (json_pack: new references, freed after dumping).
 * Keys never reach a log line; failed authentication is logged, rate
 * limited, with the peer's address.
 */
#include "server/http_front.h"
#include "server/http_front_int.h"
#include "server/http_console.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "dispatch/dispatcher.h"
#include "dispatch/registry.h"
#include "intake/dropin.h"
#include "intake/message.h"
#include "intake/submit.h"
#include "link/link.h"
#include "server/http_events.h"
#include "server/http_origin.h"
#include "server/httpd.h"
#include "server/supervisor.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>

/* A kept-alive connection with no next request is closed after this. */
#define HTTP_IDLE_TIMEOUT_S 60

/*
 * A request waiting for a callback.  scope is the identity of the API key
 * that was accepted ("" without api_keys_file): the place to scope
 * per-client state such as idempotency keys.
 */
struct pending {
	struct http_front *f;
	struct httpd_req *req;
	char scope[API_SCOPE_LEN + 1];
};

void
http_front__reply_failed(struct httpd_req *req)
{
	log_warnx("- http cannot build an answer: out of memory");
	httpd_reply_error(req, 503, "unavailable", "out of memory");
}

static void
reply_failed(struct httpd_req *req)
{
	http_front__reply_failed(req);
}

static void
reply_text(struct httpd_req *req, int status, const char *ctype,
	   const char *body, size_t len)
{
	httpd_reply(req, status, ctype, body, len);
}

static void
reply_json(struct httpd_req *req, int status, json_t *obj)
{
	http_front__reply_json(req, status, obj);
}

void
http_front__reply_json(struct httpd_req *req, int status, json_t *obj)
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
reply_error(struct httpd_req *req, int status, const char *code,
	    const char *message)
{
	reply_json(req, status,
		   json_pack("{s:{s:s,s:s}}", "error", "code", code, "message",
			     message));
}

/* m is the route's method; GET routes take HEAD too. */
static bool
want_method(struct httpd_req *req, const char *m)
{
	const char *have = httpd_req_head(req)->method;
	bool get = strcmp(m, "GET") == 0;
	char msg[64];

	if (strcmp(have, m) == 0 || (get && strcmp(have, "HEAD") == 0))
		return true;
	snprintf(msg, sizeof(msg), "use %s here", m);
	if (!httpd_req_add_header(req, "Allow", get ? "GET, HEAD" : m)) {
		reply_failed(req);
		return false;
	}
	reply_error(req, 405, "method_not_allowed", msg);
	return false;
}

json_t *
http_front__time_json(int64_t ms)
{
	char buf[40];

	if (ms <= 0)
		return json_null();
	return json_string(rfc3339(ms, buf, sizeof(buf)));
}

/* json_string of untrusted-but-stored text; null for NULL. */
json_t *
http_front__text_json(const char *s)
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

/*
 * A name for a key that is safe to keep and log, the same across reloads
 * of the file: the scope of what a client owns (its idempotency keys).
 * The submit path defines it, so the store and the front agree.
 */
static void
key_scope(const char *key, char out[API_SCOPE_LEN + 1])
{
	submit_scope_of_key(key, out);
}

/* What is kept of a key, and what a request's key is compared as. */
static void
key_digest(const char *key, size_t len, unsigned char out[API_KEY_DIGEST_LEN])
{
	if (SHA256((const unsigned char *)key, len, out) == NULL)
		fatalx("- http cannot digest an API key");
}

/* The keys of one reading of api_keys_file, copied out of its text. */
struct key_list {
	char **v;
	size_t n;
};

static void
key_take(const char *key, size_t klen, void *arg)
{
	struct key_list *l = arg;

	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = xstrndup(key, klen);
}

/* http_events_revoke(): whether scope is one of the keys in force. */
static bool
scope_known(const char *scope, void *arg)
{
	const struct http_front *f = arg;

	for (size_t i = 0; i < f->nkeys; i++)
		if (strcmp(f->scopes[i], scope) == 0)
			return true;
	return false;
}

/*
 * Reads api_keys_file (config_api_keys_parse: the rule check-config
 * applies) and puts its keys in force, or leaves the keys in force as they
 * are with one log line saying why: a file others may read, one that
 * cannot be read, not a regular file (a FIFO would block the loop), one with a
 * NUL byte or with no key at all (a file caught half-written by an editor or a
 * `>` redirection would otherwise lock every client out).  Event streams opened
 * with a key that is gone are closed: a removed key stops at once.
 */
int
http_front_reload_keys(struct http_front *f)
{
	struct key_list kl = {NULL, 0};
	const char *path = f->cfg->api_keys_file;
	size_t textlen = 0, n = 0;
	struct stat sb;
	char *text, err[512];
	int rc;

	if (path == NULL || *path == '\0')
		return 0;
	/* The rule of check-config holds on reload too: a key file others
	 * may read is refused, and the keys in force stay. */
	if (stat(path, &sb) == 0 && (sb.st_mode & 077) != 0) {
		log_error("- http keys_refused file=%s mode=%03o "
			  "reason=\"others may read or change it: chmod 600\"",
			  path, (unsigned)(sb.st_mode & 0777));
		return -EPERM;
	}
	if (config_regular_file_check(path, err, sizeof(err)) != 0) {
		log_error("- http keys_refused file=%s reason=\"not a regular "
			  "file\"",
			  path);
		return -EINVAL;
	}
	rc = file_read_all(path, CONFIG_API_KEYS_MAX_FILE, &text, &textlen);
	if (rc != 0) {
		log_error("- http keys_refused file=%s reason=\"cannot read: "
			  "%s\"",
			  path, strerror(-rc));
		return rc;
	}
	rc = config_api_keys_parse(text, textlen, key_take, &kl, &n);
	explicit_bzero(text, textlen);
	free(text);
	if (rc != 0 || kl.n == 0) {
		log_error("- http keys_refused file=%s reason=\"%s\"", path,
			  rc != 0 ? "a NUL byte in the file"
				  : "no key in the file");
		keys_free(kl.v, kl.n);
		return rc != 0 ? rc : -EINVAL;
	}
	free(f->key_digests);
	free(f->scopes);
	f->nkeys = kl.n;
	f->key_digests = xreallocarray(NULL, kl.n, sizeof(*f->key_digests));
	f->scopes = xreallocarray(NULL, kl.n, sizeof(*f->scopes));
	for (size_t i = 0; i < kl.n; i++) {
		key_digest(kl.v[i], strlen(kl.v[i]), f->key_digests[i]);
		key_scope(kl.v[i], f->scopes[i]);
	}
	keys_free(kl.v, kl.n);
	log_info("- http api keys loaded count=%zu", f->nkeys);
	http_events_revoke(f->events, scope_known, f);
	return 0;
}

bool
http_front__key_ok(struct http_front *f, struct httpd_req *req, const char *key,
		   size_t len, const char *route, char scope[API_SCOPE_LEN + 1])
{
	unsigned char d[API_KEY_DIGEST_LEN];
	size_t i;
	ssize_t found = -1;

	scope[0] = '\0';
	if (f->cfg->api_keys_file == NULL || *f->cfg->api_keys_file == '\0')
		return true;
	/* Every digest compared, in constant time, whichever matches. */
	if (key != NULL)
		key_digest(key, len, d);
	for (i = 0; key != NULL && i < f->nkeys; i++)
		if (CRYPTO_memcmp(f->key_digests[i], d, sizeof(d)) == 0)
			found = (ssize_t)i;
	if (found >= 0) {
		memcpy(scope, f->scopes[found], API_SCOPE_LEN + 1);
		return true;
	}
	log_warnx_rl(
	    &f->auth_rl, 10000, "- http auth failed peer=%s route=%s reason=%s",
	    httpd_req_peer(req), route, key == NULL ? "no_key" : "wrong_key");
	return false;
}

/*
 * Checks the API key, before any body is read.  On success scope names
 * the key ("" when no api_keys_file is set); otherwise the request is
 * answered 401 and the attempt logged (rate limited: a scanner must not
 * flood the log).
 */
static bool
authorized(struct http_front *f, struct httpd_req *req,
	   char scope[API_SCOPE_LEN + 1])
{
	const char *h = httpd_req_header(req, "Authorization");

	if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0)
		h += 7;
	else
		h = NULL;
	if (http_front__key_ok(f, req, h, h != NULL ? strlen(h) : 0, "v1",
			       scope))
		return true;
	if (!httpd_req_add_header(req, "WWW-Authenticate",
				  "Bearer realm=\"shivneri\"")) {
		reply_failed(req);
		return false;
	}
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
		submit_count_accepted(pd->f->sub, SUBMIT_INTAKE_HTTP);
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

/* The body is in: to the submit path, answered from post_reply. */
static void
post_body(struct httpd_req *req, void *arg)
{
	struct http_front *f = arg;
	const char *idem = httpd_req_header(req, "Idempotency-Key");
	struct pending *pd = xmalloc(sizeof(*pd));
	size_t len;
	/* The body lives in the request until we reply. */
	const char *json = httpd_req_body(req, &len);

	pd->f = f;
	pd->req = req;
	/* The authenticated key's identity scopes its idempotency keys;
	 * without api_keys_file every client shares the anonymous scope. */
	snprintf(pd->scope, sizeof(pd->scope), "%s", httpd_req_auth(req));
	f->pending++;
	submit_json(f->sub, json, len, idem,
		    pd->scope[0] != '\0' ? pd->scope : NULL, post_reply, pd);
}

/* Checked on the head alone; only then is the body read. */
static void
post_message(struct http_front *f, struct httpd_req *req)
{
	const char *idem = httpd_req_header(req, "Idempotency-Key");

	if (!json_content_type(httpd_req_header(req, "Content-Type"))) {
		reply_error(req, 415, "unsupported_media_type",
			    "Content-Type must be application/json");
		return;
	}
	if (idem != NULL && !submit_idem_key_valid(idem)) {
		reply_error(
		    req, 400, "invalid_field",
		    "Idempotency-Key: 1 to 255 printable ASCII characters");
		return;
	}
	/* Over max_body: 413; over the budget: 503 (both from httpd). */
	httpd_req_read_body(req, f->max_body, post_body, f);
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
			json_pack(
			    "{s:i,s:o,s:o,s:s,s:o}", "n", att[i].n, "provider",
			    http_front__text_json(att[i].provider), "at",
			    http_front__time_json(att[i].at_ms), "outcome",
			    outcome_name(att[i].outcome), "detail",
			    http_front__text_json(att[i].detail))) != 0) {
			json_decref(attempts);
			reply_failed(pd->req);
			goto out;
		}
	to = m->to_json ? json_loads(m->to_json, 0, NULL) : NULL;
	if (to == NULL)
		to = json_array();
	o = json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:i,s:o}", "id",
		      m->id, "status", msg_status_name(m->status), "from",
		      http_front__text_json(m->header_from), "to", to,
		      "subject", http_front__text_json(m->subject),
		      "created_at", http_front__time_json(m->created_ms),
		      "updated_at", http_front__time_json(m->updated_ms),
		      "provider", http_front__text_json(m->provider),
		      "provider_message_id",
		      http_front__text_json(m->provider_message_id), "error",
		      http_front__text_json(m->error), "attempt_count",
		      m->attempts, "attempts", attempts);
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

/*
 * Mailgun's id, "<ID@DOMAIN>" (its brackets %-encoded or not, or left
 * out): the ID before the '@' is ours.  A client that pastes the id as
 * Mailgun gave it finds the message.
 */
bool
http_front__id_from_dropin(const char *in, char *id, size_t idsz)
{
	size_t n;

	if (in[0] == '<')
		in++;
	else if (strncasecmp(in, "%3C", 3) == 0)
		in += 3;
	n = strcspn(in, "@%");
	if (n != ID_LEN || n >= idsz ||
	    (in[n] != '@' && strncasecmp(in + n, "%40", 3) != 0))
		return false;
	memcpy(id, in, n);
	id[n] = '\0';
	return id_valid(id);
}

static void
get_message(struct http_front *f, struct httpd_req *req, const char *id)
{
	struct pending *pd;
	char dropin[ID_LEN + 1];

	/* A drop-in's id: X-Message-Id as is, Mailgun's <ID@DOMAIN>. */
	if (!id_valid(id) &&
	    http_front__id_from_dropin(id, dropin, sizeof(dropin)))
		id = dropin;
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

void
http_front__offload(struct http_front *f, size_t len, workq_fn work,
		    workq_fn done, void *arg)
{
	if (len <= HTTP_FRONT_INLINE_MAX || f->translators == NULL) {
		work(arg);
		done(arg);
		return;
	}
	workq_submit(f->translators, work, done, arg);
}

/* --- /v1/providers, /v1/stats ------------------------------------------ */

static json_t *
provider_json(struct http_front *f, struct provider *p)
{
	json_t *pid = json_null(), *hb = json_null();
	const char *held = f->sv ? supervisor_held(f->sv, p->name) : NULL;
	json_t *reason = json_null(), *paused = json_null();
	json_t *learned = json_null(), *no_utf8 = json_null();
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
	/* A throttled provider comes back by itself at this time. */
	if (p->state == PROVIDER_PAUSED && p->paused_until_ms > 0) {
		json_decref(paused);
		paused = http_front__time_json(p->paused_until_ms);
	}
	/* A too_large answer's limit is in force until this time. */
	if (p->limit_learned_until_ms > 0) {
		json_decref(learned);
		learned = http_front__time_json(p->limit_learned_until_ms);
	}
	/* A needs_smtputf8 answer keeps non-ASCII addresses away until. */
	if (p->utf8_refused_until_ms > 0) {
		json_decref(no_utf8);
		no_utf8 = http_front__time_json(p->utf8_refused_until_ms);
	}
	if (p->last_heartbeat_mono > 0) {
		json_decref(hb);
		hb = json_integer(mono_ms() - p->last_heartbeat_mono);
	}
	return json_pack(
	    "{s:s,s:s,s:s,s:b,s:o,s:o,s:i,s:i,s:i,s:I,s:I,s:I,"
	    "s:s,s:i,s:s,s:o,s:o,s:I,s:I,s:o,s:o,s:o}",
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
	    "reason", reason, "paused_until", paused, "throttled",
	    (json_int_t)p->throttled, "max_message_bytes",
	    (json_int_t)p->max_message_bytes, "max_message_bytes_learned_until",
	    learned, "link_tls",
	    p->conn != NULL ? json_boolean(p->link_tls) : json_null(),
	    "smtputf8_refused_until", no_utf8);
}

static void
get_providers(struct http_front *f, struct httpd_req *req)
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
provider_action(struct http_front *f, struct httpd_req *req, const char *rest)
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
	if (!want_method(req, "POST"))
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
get_stats(struct http_front *f, struct httpd_req *req)
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

/* --- /healthz, /readyz (/metrics: http_metrics.c) ------------------ */

/*
 * Ready when the store can write and a provider is up; otherwise 503 with
 * every reason, so an operator (or a load balancer's log) sees why.
 */
static void
get_readyz(struct http_front *f, struct httpd_req *req)
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
		bad |=
		    json_array_append_new(reasons, http_front__text_json(msg));
	}
	if (!up)
		bad |= json_array_append_new(reasons,
					     json_string("no provider up"));
	if (bad != 0) {
		json_decref(reasons);
		reply_failed(req);
		return;
	}
	reply_json(
	    req, store_ok && up ? 200 : 503,
	    json_pack("{s:s,s:b,s:o,s:b,s:o}", "status",
		      store_ok && up ? "ready" : "not ready", "store", store_ok,
		      "store_error",
		      store_ok ? json_null() : http_front__text_json(why),
		      "provider_up", up, "reasons", reasons));
}

/* --- routing ----------------------------------------------------------- */

/* The /v1/ routes, behind the API key. */
static void
route_v1(struct http_front *f, struct httpd_req *req, const char *path)
{
	if (front_queue_route(f, req, path)) {
		/* GET /v1/messages, POST /v1/messages/ID/retry */
	} else if (strcmp(path, "/v1/messages") == 0) {
		if (want_method(req, "POST"))
			post_message(f, req);
	} else if (strncmp(path, "/v1/messages/", 13) == 0) {
		if (want_method(req, "GET"))
			get_message(f, req, path + 13);
	} else if (strcmp(path, "/v1/providers") == 0) {
		if (want_method(req, "GET"))
			get_providers(f, req);
	} else if (strncmp(path, "/v1/providers/", 14) == 0) {
		provider_action(f, req, path + 14);
	} else if (strcmp(path, "/v1/stats") == 0) {
		if (want_method(req, "GET"))
			get_stats(f, req);
	} else if (strcmp(path, "/v1/events") == 0) {
		if (want_method(req, "GET"))
			http_events_route(f, req);
	} else {
		reply_error(req, 404, "not_found", "no such route");
	}
}

/*
 * httpd's head callback: every request, before its body.  Unknown paths
 * are 404 whatever the method; /v1/ needs the key before anything else.
 */
static void
route(struct httpd_req *req, void *arg)
{
	struct http_front *f = arg;
	const char *path = httpd_req_head(req)->path;
	char scope[API_SCOPE_LEN + 1];
	bool keyed =
	    f->cfg->api_keys_file != NULL && *f->cfg->api_keys_file != '\0';

	/* Before any route: another site's page rides no browser here. */
	if (http_origin_refuse(req, keyed, &f->origin_rl))
		return;
	if (strcmp(path, "/healthz") == 0) {
		if (want_method(req, "GET"))
			reply_json(req, 200,
				   json_pack("{s:s}", "status", "ok"));
	} else if (strcmp(path, "/readyz") == 0) {
		if (want_method(req, "GET"))
			get_readyz(f, req);
	} else if (strcmp(path, "/metrics") == 0) {
		if (want_method(req, "GET"))
			http_front__metrics(f, req);
	} else if (strcmp(path, "/v3/mail/send") == 0) {
		front_sendgrid_route(f, req);
	} else if (strncmp(path, "/v3/", 4) == 0) {
		front_mailgun_route(f, req, path + 4);
	} else if (http_console_find(path) != NULL) {
		http_console_reply(req, path); /* public: the page, no data */
	} else if (strncmp(path, "/v1/", 4) != 0) {
		reply_error(req, 404, "not_found", "no such route");
	} else if (authorized(f, req, scope)) {
		httpd_req_set_auth(req, scope);
		route_v1(f, req, path);
	}
}

/* httpd on cfg->http_listen with our limits; 0 or -1 with err filled. */
static int
listen_http(struct http_front *f, struct event_base *base, char *err,
	    size_t errlen)
{
	const struct config *cfg = f->cfg;
	struct httpd_limits lim = {
	    .max_connections = cfg->http_max_connections,
	    .max_client_connections = cfg->http_max_client_connections,
	    .header_timeout_s = cfg->http_header_timeout_s,
	    .body_budget = cfg->http_body_budget_bytes,
	    .min_body_rate = cfg->http_min_body_rate,
	    .idle_timeout_s = HTTP_IDLE_TIMEOUT_S,
	};
	char *host = NULL, why[256];
	int port;

	if (hostport_parse(cfg->http_listen, &host, &port) != 0) {
		snprintf(err, errlen, "http_listen %s: not host:port",
			 cfg->http_listen);
		return -1;
	}
	f->httpd =
	    httpd_new(base, host, port, &lim, route, f, why, sizeof(why));
	free(host);
	if (f->httpd == NULL) {
		snprintf(err, errlen, "http_listen %s: %s", cfg->http_listen,
			 why);
		return -1;
	}
	return 0;
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

	f->lim = lim;
	/* A form carries files raw and text %-encoded (3 bytes a byte). */
	f->max_form = dropin_form_max_bytes(&lim);

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
	/* One thread: drop-in bodies are rare and the builders do the
	 * heavy part (submit.c). */
	f->translators = workq_new(base, 1);
	if (f->translators == NULL) {
		snprintf(err, errlen, "cannot start the translator thread");
		goto fail;
	}
	f->events = http_events_new(
	    base, d != NULL ? dispatcher_events(d) : NULL,
	    &(struct http_events_limits){
		.max_clients = cfg->events_max_clients,
		.max_client_streams = cfg->events_max_client_streams,
		.ping_s = cfg->events_ping_s,
		.client_buffer = (size_t)cfg->events_client_buffer_bytes,
	    });
	if (f->events == NULL) {
		snprintf(err, errlen, "cannot start the event streams' timer");
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
	return httpd_port(f->httpd);
}

size_t
http_front_max_body(const struct http_front *f)
{
	return f->max_body;
}

void
http_front_stop_accepting(struct http_front *f)
{
	httpd_stop_accepting(f->httpd);
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
	/* Its completions answer through httpd: before httpd goes. */
	workq_free(f->translators);
	/* Its streams are httpd's connections: ended before httpd goes. */
	http_events_free(f->events);
	httpd_free(f->httpd);
	free(f->key_digests);
	free(f->scopes);
	free(f);
}

void
http_front_set_webhook(struct http_front *f, struct webhook *wh)
{
	f->wh = wh;
}
