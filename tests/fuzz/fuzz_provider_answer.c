/*
 * libFuzzer target for how a connector reads its provider's answer: every
 * registered type built on conn_http (conn_http_read_answer: the status
 * classified, the body parsed, the type's answer()), ses (its send's
 * answer and GetAccount's), and the Retry-After parser.  The provider's
 * bytes are not ours: any status and body must end in a class of enum
 * outcome (never the "only the connector can judge" mark), with the id
 * and the words terminated within their buffers and a pause within its
 * cap; what ses puts in a result is printable already (it sanitises SES's
 * words).  The answer() under test gets no context (none uses one).
 *
 * The answer's headers are the provider's too (SendGrid's X-Message-Id
 * and X-RateLimit-Reset, Brevo's reset, SES's x-amzn-ErrorType,
 * Retry-After for all): with flag bit 3 the rest starts with a header
 * block, "Name: value" lines up to an empty line, which the result's
 * header lookup serves as curl would (last one wins, any case, the
 * value trimmed and ending at a NUL).
 *
 * Input: byte 0 picks the type (0xff: the rest is a Retry-After value;
 * 0xfe: ses's send, 0xfd: ses's GetAccount), bytes 1-2 the status (100 +
 * n % 500), byte 3 the transfer's flags (bit 0 failed, bit 1 the request
 * went out, bit 2 the body too big, bit 3 headers first), the rest is the
 * body.
 */
#include "agent/conn_http.h"
#include "agent/conn_ses.h"
#include "agent/connector.h"
#include "agent/http_multi.h"
#include "common/buf.h"
#include "link/link.h"

#include <curl/curl.h>

#include <stdint.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TYPES_MAX 32

static const struct conn_http_api *apis[TYPES_MAX];
static size_t napis;
static CURL *easy; /* no transfer: nothing may ask it for headers */

/* The input's header block, served by fake_header(). */
struct headers {
	const char *p;
	size_t len;
	char value[1024]; /* the last value found; curl caps its own too */
};

static int
name_is(const char *line, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(line, name, n) == 0;
}

/* http_result.header: the last "name: value" line of the block, or NULL. */
static const char *
fake_header(const struct http_result *res, const char *name)
{
	struct headers *h = res->header_arg;
	const char *line, *end, *eol, *colon, *v;
	const char *found = NULL;
	size_t n = 0;

	/* No header block (flag bit 3 clear): NULL + 0 is undefined. */
	if (h->p == NULL)
		return NULL;
	line = h->p;
	end = h->p + h->len;
	for (; line < end; line = eol + 1) {
		eol = memchr(line, '\n', (size_t)(end - line));
		if (eol == NULL)
			eol = end;
		colon = memchr(line, ':', (size_t)(eol - line));
		if (colon == NULL ||
		    !name_is(line, (size_t)(colon - line), name))
			continue;
		for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		found = v;
		n = (size_t)(eol - v);
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' ||
				 v[n - 1] == '\r'))
			n--;
	}
	if (found == NULL)
		return NULL;
	if (n >= sizeof(h->value))
		n = sizeof(h->value) - 1;
	memcpy(h->value, found, n);
	h->value[n] = '\0'; /* a NUL inside ends it, as in curl's string */
	return h->value;
}

static void
init(void)
{
	const char *const *names;
	const struct connector_ops *ops;
	size_t i, n;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	easy = curl_easy_init();
	if (easy == NULL)
		abort();
	names = connector_names(&n);
	for (i = 0; i < n && napis < TYPES_MAX; i++) {
		ops = connector_lookup(names[i]);
		if (ops != NULL && ops->impl != NULL)
			apis[napis++] = ops->impl;
	}
	if (napis == 0)
		abort();
}

static void
check_terminated(const char *s, size_t size)
{
	if (memchr(s, '\0', size) == NULL)
		abort();
}

static void
check_printable(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if (*s < 0x20 || *s > 0x7e)
			abort();
}

/* ses: its send's answer as a result, or GetAccount's as a verdict. */
static void
read_ses(uint8_t mode, const struct http_result *hr)
{
	struct connector_result r;
	struct ses_words w;
	char why[256];

	if (mode == 0xfd) {
		if (!ses_account_ok(hr->body, why, sizeof(why)))
			check_printable(why);
		return;
	}
	ses_read_answer(hr, &r, &w);
	if (r.outcome < 0 || r.outcome > OUTCOME_MAX ||
	    r.retry_after_ms > HTTP_RETRY_AFTER_MAX_MS ||
	    (r.outcome != OUTCOME_DELIVERED && r.detail == NULL))
		abort();
	check_printable(r.detail);
	check_printable(r.provider_message_id);
}

static void
read_answer(const uint8_t *data, size_t size)
{
	static const char *const rcpt[] = {"bob@example.net",
					   "carl@example.org"};
	struct connector_job job;
	struct conn_http_answer a;
	struct http_result hr;
	struct headers h = {.p = NULL, .len = 0};
	struct buf body;
	uint8_t flags = data[3];
	const uint8_t *rest = data + 4, *blank;
	size_t restlen = size - 4;

	memset(&job, 0, sizeof(job));
	job.message_id = "01KB0000000000000000000000";
	job.mail_from = "ann@example.com";
	job.rcpt = rcpt;
	job.nrcpt = 2;
	if ((flags & 8) && (blank = memmem(rest, restlen, "\n\n", 2)) != NULL) {
		h.p = (const char *)rest;
		h.len = (size_t)(blank - rest) + 1;
		restlen -= h.len + 1;
		rest = blank + 2;
	}
	buf_init(&body, HTTP_BODY_MAX);
	if (buf_append(&body, rest, restlen) != 0 ||
	    buf_append(&body, "", 0) != 0)
		abort();
	memset(&hr, 0, sizeof(hr));
	hr.status = 100 + (long)((data[1] << 8 | data[2]) % 500);
	hr.code = flags & 1 ? CURLE_OPERATION_TIMEDOUT : CURLE_OK;
	hr.sent = flags & 2;
	hr.too_big = flags & 4;
	hr.error = "fuzz";
	hr.body = &body;
	hr.easy = easy;
	hr.header = fake_header;
	hr.header_arg = &h;
	if (data[0] == 0xfe || data[0] == 0xfd) {
		read_ses(data[0], &hr);
		buf_cleanup(&body);
		return;
	}
	conn_http_read_answer(apis[data[0] % napis], NULL, &job, &hr, &a);
	if (a.outcome < 0 || a.outcome > OUTCOME_MAX ||
	    a.retry_after_ms > HTTP_RETRY_AFTER_MAX_MS)
		abort();
	check_terminated(a.id, sizeof(a.id));
	check_terminated(a.why, sizeof(a.why));
	check_terminated(a.tag, sizeof(a.tag));
	buf_cleanup(&body);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	char *value;

	if (!inited) {
		init();
		inited = 1;
	}
	if (size >= 1 && data[0] == 0xff) {
		value = malloc(size);
		if (value == NULL)
			return 0;
		memcpy(value, data + 1, size - 1);
		value[size - 1] = '\0';
		if (http_multi_retry_after_ms(value, time(NULL)) >
		    HTTP_RETRY_AFTER_MAX_MS)
			abort();
		free(value);
		return 0;
	}
	if (size < 4 || size - 4 > HTTP_BODY_MAX)
		return 0;
	read_answer(data, size);
	return 0;
}
