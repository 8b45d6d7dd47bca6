/*
 * HTTP transfers on libcurl's multi interface, on the agent's event_base
 * (see http_multi.h for the contract).  The socket and timer plumbing is
 * curl_loop's; this file keeps what is HTTP's: http/https only, the body
 * buffer, the status, the h2 scout, the classes.  Finished transfers come
 * from curl_loop's done callback, never from inside a curl callback, so
 * their callbacks may add new transfers.
 *
 * For an https API, transfers added while a first one (the scout) is
 * still connecting are held here, outside curl, until curl has connected
 * it and so knows from ALPN whether the host takes h2; curl's
 * CURLOPT_PIPEWAIT would do the same but leaves waiting transfers
 * untimed, and a hung handshake then failed a burst one connect timeout
 * after the other.
 *
 * Failures: a curl call that fails on a handle we made is a broken
 * invariant of ours only when it cannot be out of memory; otherwise the
 * transfer ends with the curl code and its callback says so.  Every
 * transfer is in a list, so cancel and free can stop them all.
 */
#include "agent/http_multi.h"
#include "agent/connector.h"
#include "agent/curl_loop.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"
#include "link/link.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/event.h>

struct http_transfer {
	struct http_multi *hm;
	CURL *easy;
	struct curl_slist *headers;
	curl_mime *mime;
	struct buf body;
	bool too_big;
	char error[CURL_ERROR_SIZE];
	http_multi_done_cb cb;
	void *arg;
	bool held; /* behind the scout, not yet handed to curl */
	int sends; /* times curl was about to send the request */
	LIST_ENTRY(http_transfer) entry; /* http_multi.transfers */
};

struct http_multi {
	struct curl_loop *cl;
	CURLM *multi;                         /* cl's */
	LIST_HEAD(, http_transfer) transfers; /* in flight */
	size_t count;
	size_t maxconn; /* CURLMOPT_MAXCONNECTS as last set */
	char *ca_file;  /* tls_ca_file, or NULL: the system's bundle */
	/*
	 * base_url is https: while no transfer is in curl, the next one goes
	 * alone (the scout) and those after it are held here until it is
	 * connected (curl then knows from ALPN whether the host takes h2,
	 * and they share its connection or open their own) or done.
	 */
	bool gate;
	struct http_transfer *scout; /* NULL: none under way */
	bool scout_connected;
	size_t nheld;
	struct event *release; /* hands the held ones to curl from the loop */
};

static size_t
writecb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct http_transfer *t = userdata;
	size_t n = size * nmemb;

	if (buf_append(&t->body, ptr, n) != 0) {
		t->too_big = true;
		return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
	}
	return n;
}

/* The held transfers go to curl on the next turn of the loop. */
static void
release_soon(struct http_multi *hm)
{
	const struct timeval now = {0, 0};

	if (hm->nheld > 0 && evtimer_add(hm->release, &now) != 0)
		fatalx("http_multi: cannot arm the release timer");
}

/* Removes t from curl and the list, and frees it. */
static void
transfer_free(struct http_transfer *t)
{
	struct http_multi *hm = t->hm;

	/* A handle never added is no error for curl to remove. */
	(void)curl_multi_remove_handle(hm->multi, t->easy);
	if (t->held)
		hm->nheld--;
	if (hm->scout == t) {
		/* Done or failed before it connected: let the rest try. */
		hm->scout = NULL;
		release_soon(hm);
	}
	LIST_REMOVE(t, entry);
	hm->count--;
	curl_easy_cleanup(t->easy);
	curl_slist_free_all(t->headers);
	curl_mime_free(t->mime);
	buf_cleanup(&t->body);
	free(t);
}

/* http_result.header for a finished transfer: curl kept its headers. */
static const char *
curl_header(const struct http_result *res, const char *name)
{
	struct curl_header *h = NULL;

	if (curl_easy_header(res->easy, name, 0, CURLH_HEADER, -1, &h) !=
		CURLHE_OK ||
	    h == NULL)
		return NULL;
	return h->value;
}

static void
transfer_finish(struct http_transfer *t, CURLcode code)
{
	struct http_result res;
	curl_off_t reqsize = 0;
	long status = 0;

	if (curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status) !=
	    CURLE_OK)
		status = 0;
	/* The request size counts what went out, headers first. */
	if (curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &reqsize) !=
	    CURLE_OK)
		reqsize = 0;
	memset(&res, 0, sizeof(res));
	res.code = code;
	res.status = status;
	res.sent = reqsize > 0 || t->sends > 1;
	res.too_big = t->too_big;
	res.error = t->error[0] != '\0' ? t->error : curl_easy_strerror(code);
	if (t->sends > 1 && code != CURLE_OK)
		res.error = "the connection closed after the request went out, "
			    "with no answer (not sent again)";
	/*
	 * No byte came (a 502 or 503 from a proxy often has no body): the
	 * body is still the string the result promises, "".
	 */
	if (t->body.p == NULL && buf_reserve(&t->body, 0) != 0)
		fatalx("- http_multi cannot hold an empty body");
	res.body = &t->body;
	res.easy = t->easy;
	res.header = curl_header;
	res.header_arg = NULL;
	t->cb(&res, t->arg);
	transfer_free(t);
}

/* curl_loop: a transfer of ours ended. */
static void
transfer_done(CURL *easy, CURLcode code, void *arg)
{
	struct http_transfer *t = NULL;

	(void)arg;
	if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t) !=
		CURLE_OK ||
	    t == NULL)
		fatalx("http_multi: a transfer without its record");
	transfer_finish(t, code);
}

/*
 * curl, when a transfer is connected and about to send its request.  A
 * second call is curl sending the request again by itself: a kept
 * connection died before any answer came (or an h2 stream was refused).
 * The provider may have taken the first copy, so a resend could deliver
 * the message twice with nothing on record; it is stopped here, and the
 * transfer ends as sent with no answer (ambiguous), which is on record
 * and moves the message on.  curl's API does not say which of its reasons
 * it retries for, so the safe ones (a refused h2 stream) end so too.
 */
static int
prereqcb(void *clientp, char *primary_ip, char *local_ip, int primary_port,
	 int local_port)
{
	struct http_transfer *t = clientp;
	struct http_multi *hm = t->hm;

	(void)primary_ip;
	(void)local_ip;
	(void)primary_port;
	(void)local_port;
	if (++t->sends > 1)
		return CURL_PREREQFUNC_ABORT;
	if (hm->scout == t && !hm->scout_connected) {
		hm->scout_connected = true;
		release_soon(hm);
	}
	return CURL_PREREQFUNC_OK;
}

static void
release_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_multi *hm = arg;
	struct http_transfer *t, *next;

	(void)fd;
	(void)what;
	for (t = LIST_FIRST(&hm->transfers); t != NULL; t = next) {
		next = LIST_NEXT(t, entry);
		if (!t->held)
			continue;
		t->held = false;
		hm->nheld--;
		if (curl_multi_add_handle(hm->multi, t->easy) != CURLM_OK)
			transfer_finish(t, CURLE_OUT_OF_MEMORY);
	}
}

struct http_multi *
http_multi_new(struct event_base *base)
{
	struct http_multi *hm;

	hm = xcalloc(1, sizeof(*hm));
	LIST_INIT(&hm->transfers);
	hm->cl = curl_loop_new(base, transfer_done, hm);
	if (hm->cl == NULL)
		goto fail;
	hm->multi = curl_loop_multi(hm->cl);
	hm->release = evtimer_new(base, release_cb, hm);
	if (hm->release == NULL)
		goto fail;
	if (curl_multi_setopt(hm->multi, CURLMOPT_PIPELINING,
			      (long)CURLPIPE_MULTIPLEX) ||
	    curl_multi_setopt(hm->multi, CURLMOPT_MAXCONNECTS,
			      (long)HTTP_MAXCONNECTS_MIN))
		goto fail;
	hm->maxconn = HTTP_MAXCONNECTS_MIN;
	return hm;
fail:
	if (hm->release != NULL)
		event_free(hm->release);
	curl_loop_free(hm->cl);
	free(hm);
	return NULL;
}

void
http_multi_cancel(struct http_multi *hm)
{
	struct http_transfer *t;

	while ((t = LIST_FIRST(&hm->transfers)) != NULL)
		transfer_free(t);
}

void
http_multi_free(struct http_multi *hm)
{
	if (hm == NULL)
		return;
	http_multi_cancel(hm);
	curl_loop_free(hm->cl);
	event_free(hm->release);
	free(hm->ca_file);
	free(hm);
}

size_t
http_multi_count(const struct http_multi *hm)
{
	return hm->count;
}

/* What every transfer must have, whatever the caller set. */
static int
transfer_setopts(struct http_transfer *t, long connect_ms, long request_ms)
{
	CURL *e = t->easy;

	if (curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)t) ||
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, writecb) ||
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, t) ||
	    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error) ||
	    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") ||
	    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) ||
	    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) ||
	    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) ||
	    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
			     (long)CURL_HTTP_VERSION_2TLS) ||
	    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) ||
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, request_ms) ||
	    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereqcb) ||
	    curl_easy_setopt(e, CURLOPT_PREREQDATA, t))
		return -EINVAL;
	if (t->hm->ca_file != NULL &&
	    curl_easy_setopt(e, CURLOPT_CAINFO, t->hm->ca_file))
		return -EINVAL;
	if (t->headers != NULL &&
	    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers))
		return -EINVAL;
	if (t->mime != NULL && curl_easy_setopt(e, CURLOPT_MIMEPOST, t->mime))
		return -EINVAL;
	return 0;
}

int
http_multi_add(struct http_multi *hm, CURL *easy, struct curl_slist *headers,
	       curl_mime *mime, long connect_timeout_ms,
	       long request_timeout_ms, http_multi_done_cb cb, void *arg)
{
	struct http_transfer *t;
	bool hold, scout;
	int rc;

	if (connect_timeout_ms <= 0)
		connect_timeout_ms = HTTP_CONNECT_TIMEOUT_MS_DEFAULT;
	if (request_timeout_ms <= 0)
		request_timeout_ms = HTTP_REQUEST_TIMEOUT_MS_DEFAULT;
	t = xcalloc(1, sizeof(*t));
	t->hm = hm;
	t->easy = easy;
	t->headers = headers;
	t->mime = mime;
	t->cb = cb;
	t->arg = arg;
	buf_init(&t->body, HTTP_BODY_MAX);
	/* Held behind a scout not yet connected; the scout itself when no
	 * transfer is in curl (hm->count includes the held ones). */
	hold = hm->gate && hm->scout != NULL && !hm->scout_connected;
	scout = hm->gate && !hold && hm->count == hm->nheld;
	rc = transfer_setopts(t, connect_timeout_ms, request_timeout_ms);
	if (rc == 0 && !hold &&
	    curl_multi_add_handle(hm->multi, easy) != CURLM_OK)
		rc = -ENOMEM;
	if (rc != 0) {
		/* The caller keeps easy, headers and mime: nothing of t. */
		(void)curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		(void)curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, NULL);
		(void)curl_easy_setopt(easy, CURLOPT_PREREQDATA, NULL);
		buf_cleanup(&t->body);
		free(t);
		return rc;
	}
	LIST_INSERT_HEAD(&hm->transfers, t, entry);
	hm->count++;
	/*
	 * The cache holds as many connections as sends ever ran at once, so
	 * that a window wider than it (max_in_flight) does not close and
	 * reopen connections, whether or not the connector configured it.
	 * A failure only costs reconnections.
	 */
	if (hm->count > hm->maxconn &&
	    curl_multi_setopt(hm->multi, CURLMOPT_MAXCONNECTS,
			      (long)hm->count) == CURLM_OK)
		hm->maxconn = hm->count;
	if (hold) {
		t->held = true;
		hm->nheld++;
	} else if (scout) {
		hm->scout = t;
		hm->scout_connected = false;
	}
	return 0;
}

const char *
http_multi_header(const struct http_result *res, const char *name)
{
	return res->header != NULL ? res->header(res, name) : NULL;
}

uint32_t
http_multi_retry_after_ms(const char *value, time_t now)
{
	unsigned long long secs = 0;
	const char *p;
	time_t when;

	if (value == NULL || *value == '\0')
		return 0;
	for (p = value; *p >= '0' && *p <= '9'; p++) {
		secs = secs * 10 + (unsigned)(*p - '0');
		if (secs > HTTP_RETRY_AFTER_MAX_MS / 1000)
			return HTTP_RETRY_AFTER_MAX_MS;
	}
	if (p != value && *p == '\0')
		return (uint32_t)secs * 1000u;
	when = curl_getdate(value, NULL);
	if (when == -1)
		return 0;
	if (when <= now)
		return 1000; /* a date past: ask again soon, not at once */
	if (when - now > (time_t)(HTTP_RETRY_AFTER_MAX_MS / 1000))
		return HTTP_RETRY_AFTER_MAX_MS;
	return (uint32_t)(when - now) * 1000u;
}

int
http_multi_classify(const struct http_result *res, uint32_t *retry_after_ms)
{
	*retry_after_ms = 0;
	/* A body past the cap still came with a status that tells. */
	if (res->code != CURLE_OK && !(res->too_big && res->status > 0))
		return res->sent ? OUTCOME_AMBIGUOUS : OUTCOME_TRANSIENT;
	if (res->status >= 200 && res->status < 300)
		return OUTCOME_DELIVERED;
	if (res->status == 429) {
		*retry_after_ms = http_multi_retry_after_ms(
		    http_multi_header(res, "Retry-After"), time(NULL));
		return OUTCOME_THROTTLED;
	}
	if (res->status == 401 || res->status == 403)
		return OUTCOME_ACCOUNT;
	if (res->status >= 400 && res->status < 500)
		return HTTP_CLASS_CONNECTOR;
	return OUTCOME_TRANSIENT;
}

static bool
base_url_ok(const char *url)
{
	const char *host;
	size_t i;

	if (strncmp(url, "https://", 8) == 0)
		host = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		host = url + 7;
	else
		return false;
	if (*host == '\0' || *host == ':')
		return false;
	/* No path, query, user or space: the connector appends the path. */
	for (i = 0; host[i] != '\0'; i++)
		if (strchr("/?#@ \t\\", host[i]) != NULL ||
		    (unsigned char)host[i] < 0x21 ||
		    (unsigned char)host[i] > 0x7e)
			return false;
	return true;
}

static bool
timeout_value(const char *s, long *out)
{
	char *end;
	long v;

	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > CONNECTOR_TIMEOUT_MAX_MS)
		return false;
	*out = v;
	return true;
}

void
http_multi_config_check(struct provider_config *pc, struct config_report *r,
			const char *default_url)
{
	static const char *const tkeys[] = {"connect_timeout_ms",
					    "request_timeout_ms"};
	const char *url = provider_config_get(pc, "base_url");
	const char *v;
	long n;
	size_t i;

	/* The generic keys are read before the type's check runs. */
	if (provider_config_get(pc, "max_in_flight") == NULL)
		pc->max_in_flight = HTTP_MAX_IN_FLIGHT_DEFAULT;
	if (url == NULL)
		provider_config_default(pc, "base_url", default_url);
	else if (!base_url_ok(url))
		config_report_error(r, provider_config_line(pc, "base_url"),
				    "base_url: must be http(s)://host[:port] "
				    "with no path");
	for (i = 0; i < 2; i++) {
		v = provider_config_get(pc, tkeys[i]);
		if (v != NULL && !timeout_value(v, &n))
			config_report_error(r,
					    provider_config_line(pc, tkeys[i]),
					    "%s: must be a whole number of "
					    "milliseconds from 1 to %d",
					    tkeys[i], CONNECTOR_TIMEOUT_MAX_MS);
	}
	v = provider_config_get(pc, "tls_ca_file");
	if (v != NULL && access(v, R_OK) != 0)
		config_report_error(r, provider_config_line(pc, "tls_ca_file"),
				    "tls_ca_file: cannot read %s: %s", v,
				    strerror(errno));
}

int
http_multi_configure(struct http_multi *hm, const struct provider_config *pc)
{
	const char *ca = provider_config_get(pc, "tls_ca_file");
	const char *url = provider_config_get(pc, "base_url");

	/*
	 * Every send in flight may hold a connection (HTTP/1.1 servers): a
	 * cache smaller than max_in_flight closes and reopens connections
	 * all the time (at 128 in flight and a cache of 64, 164 to 193
	 * connections a 1,000 messages; bench/RESULTS.md section 8).
	 */
	long maxconn = pc->max_in_flight > HTTP_MAXCONNECTS_MIN
			   ? (long)pc->max_in_flight
			   : HTTP_MAXCONNECTS_MIN;

	if (curl_multi_setopt(hm->multi, CURLMOPT_MAXCONNECTS, maxconn) !=
	    CURLM_OK)
		return -EINVAL;
	hm->maxconn = (size_t)maxconn;
	hm->gate = url != NULL && strncmp(url, "https://", 8) == 0;
	free(hm->ca_file);
	hm->ca_file = NULL;
	if (ca == NULL)
		return 0;
	if (access(ca, R_OK) != 0)
		return -errno;
	hm->ca_file = xstrdup(ca);
	return 0;
}

void
http_multi_timeouts(const struct provider_config *pc, long *connect_ms,
		    long *request_ms)
{
	if (!timeout_value(provider_config_get(pc, "connect_timeout_ms"),
			   connect_ms))
		*connect_ms = HTTP_CONNECT_TIMEOUT_MS_DEFAULT;
	if (!timeout_value(provider_config_get(pc, "request_timeout_ms"),
			   request_ms))
		*request_ms = HTTP_REQUEST_TIMEOUT_MS_DEFAULT;
}
