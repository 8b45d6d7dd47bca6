/*
 * The agent protocol's codec: frame splitting, one encoder and one decoder
 * per frame type, and the two handshake MACs.  Everything here is pure (no
 * I/O but appending to an evbuffer) so that the decoders can be fuzzed.
 *
 * Decoders trust nothing: the JSON is parsed with duplicate keys rejected
 * and jansson's end-of-input check on (trailing bytes are a syntax error);
 * every field is checked for type, range and length, and an over-long
 * string is an error rather than a silent truncation.  Unknown keys are
 * ignored so that a later minor revision may add optional fields.
 * Encoders check the same limits so that we never emit what a peer of ours
 * would refuse.  jansson: json_object_get() returns borrowed references;
 * only the root from json_loadb()/json_object() is ours to json_decref().
 */
#include "link/link.h"
#include "common/config.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#define PRIO_MAX 1000000
#define WEIGHT_MAX 1000000
#define INFLIGHT_MAX 1000000
#define HB_INTERVAL_MAX 3600000
#define MSGID_MAX 63 /* sizeof(link_job.message_id) - 1 */

static const char *const outcome_names[] = {
    "delivered", "transient", "permanent", "lost",          "throttled",
    "account",   "ambiguous", "too_large", "needs_smtputf8"};
static const char *const health_names[] = {"ok", "degraded", "down"};

const char *
outcome_name(int outcome)
{
	if (outcome < 0 || (size_t)outcome >= ARRAY_SIZE(outcome_names))
		return "unknown";
	return outcome_names[outcome];
}

int
link_outcome_for_revision(int outcome, uint32_t revision)
{
	if (revision < 2 &&
	    (outcome == OUTCOME_THROTTLED || outcome == OUTCOME_ACCOUNT ||
	     outcome == OUTCOME_AMBIGUOUS))
		return OUTCOME_TRANSIENT;
	if (revision < 3 && outcome == OUTCOME_TOO_LARGE)
		return OUTCOME_PERMANENT;
	if (revision < 4 && outcome == OUTCOME_NEEDS_SMTPUTF8)
		return OUTCOME_PERMANENT;
	return outcome;
}

int
outcome_parse(const char *s)
{
	size_t i;

	if (s == NULL)
		return -1;
	for (i = 0; i < ARRAY_SIZE(outcome_names); i++)
		if (strcmp(s, outcome_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *
link_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case LINK_E_SHORT:
		return "truncated frame";
	case LINK_E_TOOBIG:
		return "frame length out of range";
	case LINK_E_TYPE:
		return "unknown frame type";
	case LINK_E_SYNTAX:
		return "malformed JSON or trailing bytes";
	case LINK_E_FIELD:
		return "missing, mistyped or out-of-range field";
	case LINK_E_VERSION:
		return "unsupported protocol version";
	case LINK_E_AUTH:
		return "authentication failed";
	case LINK_E_STATE:
		return "frame not allowed in this state";
	default:
		if (err < 0 && err > LINK_E_SHORT)
			return strerror(-err);
		return "unknown link error";
	}
}

const char *
link_type_name(int type)
{
	static const char *const names[] = {"HELLO",   "CHALLENGE", "AUTH",
					    "WELCOME", "ERROR",     "HEARTBEAT",
					    "JOB",     "RESULT"};

	if (type >= LINK_HELLO && type <= LINK_RESULT)
		return names[type - LINK_HELLO];
	return "UNKNOWN";
}

const char *
link_health_name(int health)
{
	if (health >= 0 && (size_t)health < ARRAY_SIZE(health_names))
		return health_names[health];
	return "unknown";
}

bool
link_name_valid(const char *name)
{
	size_t i;

	if (name == NULL)
		return false;
	for (i = 0; name[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (i >= LINK_NAME_MAX)
			return false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		      ch == '-'))
			return false;
	}
	return i > 0;
}

/* Connector type names: [a-z0-9_-]{1,LINK_TYPE_MAX}. */
static bool
type_valid(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (i >= LINK_TYPE_MAX)
			return false;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		      ch == '_' || ch == '-'))
			return false;
	}
	return i > 0;
}

/* No control characters: what ends up in SMTP commands and log lines. */
static bool
no_ctl(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* Message ids and error codes: printable ASCII, no spaces. */
static bool
token_valid(const char *s, size_t max)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (i >= max || (unsigned char)s[i] <= 0x20 ||
		    (unsigned char)s[i] >= 0x7f)
			return false;
	return i > 0;
}

static uint32_t
get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* The largest max_message_bytes a configuration may give must fit. */
_Static_assert(LINK_JOB_FRAME_MAX(CONFIG_MESSAGE_BYTES_MAX) <= UINT32_MAX,
	       "a JOB frame of the largest message must fit 32 bits");

size_t
link_job_frame_max(uint64_t max_message_bytes)
{
	if (max_message_bytes > UINT32_MAX - 5 - LINK_JOB_HEADER_MAX)
		return UINT32_MAX;
	return (size_t)LINK_JOB_FRAME_MAX(max_message_bytes);
}

int
link_frame_split(const uint8_t *buf, size_t len, size_t max, int *type,
		 const uint8_t **payload, size_t *plen, size_t *consumed)
{
	uint32_t n;

	if (len < 4)
		return 0;
	n = get_be32(buf);
	if (n == 0 || n > max)
		return LINK_E_TOOBIG;
	if (len - 4 < n)
		return 0;
	*type = buf[4];
	*payload = buf + 5;
	*plen = n - 1;
	*consumed = (size_t)n + 4;
	return 1;
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/*
 * Appends a frame of type with the payload parts a (JSON) and b (raw,
 * may be NULL); job frames prefix a with its length.  Steals nothing.
 */
static int
emit(struct evbuffer *out, int type, const char *a, size_t alen, const void *b,
     size_t blen, size_t max)
{
	uint8_t hdr[9];
	size_t hlen, total;

	total = 1 + alen + blen + (type == LINK_JOB ? 4 : 0);
	if (alen > UINT32_MAX || total > max || total > UINT32_MAX ||
	    (type == LINK_JOB && alen > LINK_JOB_HEADER_MAX))
		return LINK_E_TOOBIG;
	put_be32(hdr, (uint32_t)total);
	hdr[4] = (uint8_t)type;
	hlen = 5;
	if (type == LINK_JOB) {
		put_be32(hdr + 5, (uint32_t)alen);
		hlen = 9;
	}
	if (evbuffer_add(out, hdr, hlen) != 0 ||
	    evbuffer_add(out, a, alen) != 0 ||
	    (blen > 0 && evbuffer_add(out, b, blen) != 0))
		return LINK_E_TOOBIG;
	return 0;
}

/*
 * Serialises and frees obj (a new reference, NULL tolerated).  ok false
 * means that building obj failed (a member could not be set): obj is only
 * freed and the frame refused.  Each encoder thus ends in one call, its
 * members chained into ok.
 */
static int
emit_json(struct evbuffer *out, int type, json_t *obj, bool ok, const void *raw,
	  size_t rawlen, size_t max)
{
	char *s;
	int rc;

	if (obj == NULL || !ok) {
		json_decref(obj);
		return LINK_E_FIELD;
	}
	s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (s == NULL)
		return LINK_E_FIELD;
	rc = emit(out, type, s, strlen(s), raw, rawlen, max);
	free(s);
	return rc;
}

/*
 * Set a new member; false when obj is NULL (json_object() failed) or s is
 * not valid UTF-8.  json_object_set_new() consumes the value even when it
 * fails, so a failed member leaks nothing.
 */
static bool
set_str(json_t *obj, const char *key, const char *s)
{
	json_t *v = json_string(s);

	return v != NULL && json_object_set_new(obj, key, v) == 0;
}

static bool
set_int(json_t *obj, const char *key, json_int_t i)
{
	json_t *v = json_integer(i);

	return v != NULL && json_object_set_new(obj, key, v) == 0;
}

static bool
set_hex(json_t *obj, const char *key, const uint8_t *b, size_t n)
{
	char hex[2 * LINK_NONCE_LEN + 1];

	hex_encode(b, n, hex);
	return set_str(obj, key, hex);
}

int
link_encode_hello(struct evbuffer *out, const struct link_hello *m)
{
	json_t *o;
	bool ok;

	if (!link_name_valid(m->name) || !type_valid(m->type) || m->pid < 0 ||
	    m->weight < 0 || m->weight > WEIGHT_MAX || m->priority < -1 ||
	    m->priority > PRIO_MAX || m->max_in_flight < 0 ||
	    m->max_in_flight > INFLIGHT_MAX || m->max_message_bytes > INT64_MAX)
		return LINK_E_FIELD;
	o = json_object();
	ok = set_int(o, "version", m->version) && set_str(o, "name", m->name) &&
	     set_str(o, "type", m->type) &&
	     set_hex(o, "nonce", m->nonce, LINK_NONCE_LEN) &&
	     set_int(o, "pid", m->pid) &&
	     (m->weight == 0 || set_int(o, "weight", m->weight)) &&
	     (m->priority < 0 || set_int(o, "priority", m->priority)) &&
	     (m->max_in_flight == 0 ||
	      set_int(o, "max_in_flight", m->max_in_flight)) &&
	     (m->max_message_bytes == 0 ||
	      set_int(o, "max_message_bytes",
		      (json_int_t)m->max_message_bytes)) &&
	     (m->revision <= 1 || set_int(o, "revision", m->revision));
	return emit_json(out, LINK_HELLO, o, ok, NULL, 0, LINK_CTRL_MAX);
}

int
link_encode_challenge(struct evbuffer *out, const struct link_challenge *m)
{
	json_t *o = json_object();
	bool ok = set_int(o, "version", m->version) &&
		  set_hex(o, "nonce", m->nonce, LINK_NONCE_LEN) &&
		  (m->revision <= 1 || set_int(o, "revision", m->revision));

	return emit_json(out, LINK_CHALLENGE, o, ok, NULL, 0, LINK_CTRL_MAX);
}

int
link_encode_auth(struct evbuffer *out, const struct link_auth *m)
{
	json_t *o = json_object();
	bool ok = set_hex(o, "mac", m->mac, LINK_MAC_LEN);

	return emit_json(out, LINK_AUTH, o, ok, NULL, 0, LINK_CTRL_MAX);
}

int
link_encode_welcome(struct evbuffer *out, const struct link_welcome *m)
{
	json_t *o;
	bool ok;

	if (m->heartbeat_interval_ms < 1 ||
	    m->heartbeat_interval_ms > HB_INTERVAL_MAX)
		return LINK_E_FIELD;
	if (m->max_message_bytes > INT64_MAX)
		return LINK_E_FIELD;
	o = json_object();
	ok = set_hex(o, "mac", m->mac, LINK_MAC_LEN) &&
	     set_int(o, "heartbeat_interval_ms", m->heartbeat_interval_ms);
	/* Optional: an agent that does not know it ignores it. */
	if (ok && m->max_message_bytes > 0)
		ok = set_int(o, "max_message_bytes",
			     (json_int_t)m->max_message_bytes);
	return emit_json(out, LINK_WELCOME, o, ok, NULL, 0, LINK_CTRL_MAX);
}

/*
 * Copies s into buf (bufsz > 0) cut to at most max bytes at a UTF-8
 * character boundary, for free text that we would rather shorten than
 * refuse.
 */
static void
utf8_trunc(const char *s, char *buf, size_t bufsz, size_t max)
{
	size_t n = strlen(s);

	if (max > bufsz - 1)
		max = bufsz - 1;
	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
}

int
link_encode_error(struct evbuffer *out, const char *code, const char *message)
{
	char msg[LINK_MSG_MAX + 1];
	json_t *o;
	bool ok;

	if (code == NULL || !token_valid(code, LINK_CODE_MAX))
		return LINK_E_FIELD;
	utf8_trunc(message != NULL ? message : "", msg, sizeof(msg),
		   LINK_MSG_MAX);
	o = json_object();
	ok = set_str(o, "code", code) && set_str(o, "message", msg);
	return emit_json(out, LINK_ERROR, o, ok, NULL, 0, LINK_CTRL_MAX);
}

int
link_encode_heartbeat(struct evbuffer *out, const struct link_heartbeat *m)
{
	json_t *o;
	bool ok;

	if (m->seq > INT64_MAX || m->health < 0 ||
	    (size_t)m->health >= ARRAY_SIZE(health_names) || m->load > 100)
		return LINK_E_FIELD;
	o = json_object();
	ok = set_int(o, "seq", (json_int_t)m->seq) &&
	     set_str(o, "health", health_names[m->health]) &&
	     set_int(o, "in_flight", m->in_flight) &&
	     set_int(o, "load", m->load);
	return emit_json(out, LINK_HEARTBEAT, o, ok, NULL, 0, LINK_CTRL_MAX);
}

static bool
addr_valid(const char *s, bool empty_ok)
{
	size_t n = strlen(s);

	return (n > 0 || empty_ok) && n <= LINK_ADDR_MAX && no_ctl(s);
}

int
link_encode_job(struct evbuffer *out, uint64_t job_id, const char *message_id,
		const char *mail_from, const char *const *rcpt, size_t nrcpt,
		const void *mime, size_t mime_len)
{
	json_t *o, *a;
	size_t i;
	bool ok;

	if (job_id > INT64_MAX || message_id == NULL ||
	    !token_valid(message_id, MSGID_MAX) || mail_from == NULL ||
	    !addr_valid(mail_from, true) || nrcpt < 1 ||
	    nrcpt > LINK_RCPT_MAX || (mime == NULL && mime_len > 0))
		return LINK_E_FIELD;
	for (i = 0; i < nrcpt; i++)
		if (rcpt[i] == NULL || !addr_valid(rcpt[i], false))
			return LINK_E_FIELD;
	o = json_object();
	a = json_array();
	/* o owns a from here on, or a is freed: set_new consumes it. */
	ok = json_object_set_new(o, "rcpt", a) == 0;
	for (i = 0; ok && i < nrcpt; i++)
		ok = json_array_append_new(a, json_string(rcpt[i])) == 0;
	ok = ok && set_int(o, "job_id", (json_int_t)job_id) &&
	     set_str(o, "message_id", message_id) &&
	     set_str(o, "mail_from", mail_from);
	return emit_json(out, LINK_JOB, o, ok, mime, mime_len, UINT32_MAX);
}

int
link_encode_result(struct evbuffer *out, const struct link_result *m)
{
	json_t *o;
	bool ok;

	if (m->job_id > INT64_MAX || !token_valid(m->message_id, MSGID_MAX) ||
	    m->outcome < 0 || (size_t)m->outcome >= ARRAY_SIZE(outcome_names) ||
	    strnlen(m->provider_message_id, sizeof(m->provider_message_id)) >
		LINK_PMID_MAX ||
	    strnlen(m->detail, sizeof(m->detail)) > LINK_DETAIL_MAX ||
	    !no_ctl(m->provider_message_id) ||
	    m->retry_after_ms > LINK_RETRY_AFTER_MAX_MS)
		return LINK_E_FIELD;
	o = json_object();
	ok = set_int(o, "job_id", (json_int_t)m->job_id) &&
	     set_str(o, "message_id", m->message_id) &&
	     set_str(o, "outcome", outcome_names[m->outcome]) &&
	     set_str(o, "provider_message_id", m->provider_message_id) &&
	     set_str(o, "detail", m->detail) &&
	     (m->retry_after_ms == 0 ||
	      set_int(o, "retry_after_ms", m->retry_after_ms));
	return emit_json(out, LINK_RESULT, o, ok, NULL, 0, LINK_CTRL_MAX);
}

/*
 * Decoding helpers.  Each takes the running status *rc, does nothing when
 * an earlier step failed, and sets it to a LINK_E_* on failure, so that a
 * decoder reads as the list of its fields.  Since none of them looks at
 * the object once *rc is set, a decoder whose payload did not parse runs
 * its list on a NULL root and returns parse()'s error.
 */

/* The payload as a JSON object (a new reference), or NULL and *rc set. */
static json_t *
parse(const uint8_t *p, size_t n, int *rc)
{
	json_error_t jerr;
	json_t *root;

	root = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root)) {
		json_decref(root);
		*rc = LINK_E_SYNTAX;
		return NULL;
	}
	return root;
}

/* An integer member in [min, max]; when optional, *present says if set. */
static json_int_t
get_int(json_t *o, const char *key, json_int_t min, json_int_t max,
	bool *present, int *rc)
{
	json_t *j;
	json_int_t v;

	if (present != NULL)
		*present = false;
	if (*rc != 0)
		return 0;
	j = json_object_get(o, key);
	if (present != NULL)
		*present = j != NULL;
	if (j == NULL) {
		if (present == NULL)
			*rc = LINK_E_FIELD;
		return 0;
	}
	if (!json_is_integer(j)) {
		*rc = LINK_E_FIELD;
		return 0;
	}
	v = json_integer_value(j);
	if (v < min || v > max) {
		*rc = LINK_E_FIELD;
		return 0;
	}
	return v;
}

/* A string member copied into buf; longer than max bytes is an error. */
static void
get_str(json_t *o, const char *key, char *buf, size_t bufsz, size_t max,
	bool optional, int *rc)
{
	json_t *j;
	size_t n;

	buf[0] = '\0';
	if (*rc != 0)
		return;
	j = json_object_get(o, key);
	if (j == NULL) {
		if (!optional)
			*rc = LINK_E_FIELD;
		return;
	}
	n = json_is_string(j) ? json_string_length(j) : SIZE_MAX;
	if (n > max || n >= bufsz) {
		*rc = LINK_E_FIELD;
		return;
	}
	/* jansson refuses \u0000 without JSON_ALLOW_NUL: no inner NULs. */
	memcpy(buf, json_string_value(j), n + 1);
}

/* Exactly 2n lowercase hex digits. */
static void
get_hex(json_t *o, const char *key, uint8_t *out, size_t n, int *rc)
{
	char hex[2 * LINK_NONCE_LEN + 1];
	size_t i;

	get_str(o, key, hex, sizeof(hex), 2 * n, false, rc);
	if (*rc != 0)
		return;
	if (strlen(hex) != 2 * n) {
		*rc = LINK_E_FIELD;
		return;
	}
	for (i = 0; i < 2 * n; i++) {
		if (!((hex[i] >= '0' && hex[i] <= '9') ||
		      (hex[i] >= 'a' && hex[i] <= 'f'))) {
			*rc = LINK_E_FIELD;
			return;
		}
	}
	if (hex_decode(hex, out, n) != 0)
		*rc = LINK_E_FIELD;
}

/* Checked last, so that a malformed frame is reported as such first. */
static uint32_t
get_version(json_t *o, int *rc)
{
	json_int_t v = get_int(o, "version", 0, UINT32_MAX, NULL, rc);

	if (*rc == 0 && v != LINK_VERSION)
		*rc = LINK_E_VERSION;
	return (uint32_t)v;
}

/* The index of the member's value in names. */
static int
get_enum(json_t *o, const char *key, const char *const *names, size_t n,
	 int *rc)
{
	char buf[16];
	size_t i;

	get_str(o, key, buf, sizeof(buf), sizeof(buf) - 1, false, rc);
	if (*rc != 0)
		return 0;
	for (i = 0; i < n; i++)
		if (strcmp(buf, names[i]) == 0)
			return (int)i;
	*rc = LINK_E_FIELD;
	return 0;
}

static void
check(bool ok, int *rc)
{
	if (*rc == 0 && !ok)
		*rc = LINK_E_FIELD;
}

int
link_decode_hello(const uint8_t *p, size_t n, struct link_hello *m)
{
	json_t *o;
	bool has;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	m->priority = -1;
	o = parse(p, n, &rc);
	get_str(o, "name", m->name, sizeof(m->name), LINK_NAME_MAX, false, &rc);
	check(link_name_valid(m->name), &rc);
	get_str(o, "type", m->type, sizeof(m->type), LINK_TYPE_MAX, false, &rc);
	check(type_valid(m->type), &rc);
	get_hex(o, "nonce", m->nonce, LINK_NONCE_LEN, &rc);
	m->pid = get_int(o, "pid", 0, INT64_MAX, NULL, &rc);
	m->weight = (int)get_int(o, "weight", 1, WEIGHT_MAX, &has, &rc);
	m->priority = (int)get_int(o, "priority", 0, PRIO_MAX, &has, &rc);
	if (!has)
		m->priority = -1;
	m->max_in_flight =
	    (int)get_int(o, "max_in_flight", 1, INFLIGHT_MAX, &has, &rc);
	/* Optional: an older agent does not say (0, the server's limit). */
	m->max_message_bytes =
	    (uint64_t)get_int(o, "max_message_bytes", 1, INT64_MAX, &has, &rc);
	/* Optional: an agent older than revision 5 does not say (1). */
	m->revision =
	    (uint32_t)get_int(o, "revision", 1, UINT32_MAX, &has, &rc);
	if (!has)
		m->revision = 1;
	m->version = get_version(o, &rc);
	json_decref(o);
	return rc;
}

int
link_decode_challenge(const uint8_t *p, size_t n, struct link_challenge *m)
{
	json_t *o;
	bool has;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	o = parse(p, n, &rc);
	get_hex(o, "nonce", m->nonce, LINK_NONCE_LEN, &rc);
	m->revision =
	    (uint32_t)get_int(o, "revision", 1, UINT32_MAX, &has, &rc);
	if (!has)
		m->revision = 1;
	m->version = get_version(o, &rc);
	json_decref(o);
	return rc;
}

int
link_decode_auth(const uint8_t *p, size_t n, struct link_auth *m)
{
	json_t *o;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	o = parse(p, n, &rc);
	get_hex(o, "mac", m->mac, LINK_MAC_LEN, &rc);
	json_decref(o);
	return rc;
}

int
link_decode_welcome(const uint8_t *p, size_t n, struct link_welcome *m)
{
	json_t *o;
	bool has;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	o = parse(p, n, &rc);
	get_hex(o, "mac", m->mac, LINK_MAC_LEN, &rc);
	m->heartbeat_interval_ms = (uint32_t)get_int(
	    o, "heartbeat_interval_ms", 1, HB_INTERVAL_MAX, NULL, &rc);
	m->max_message_bytes =
	    (uint64_t)get_int(o, "max_message_bytes", 1, INT64_MAX, &has, &rc);
	json_decref(o);
	return rc;
}

int
link_decode_error(const uint8_t *p, size_t n, struct link_error *m)
{
	json_t *o;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	o = parse(p, n, &rc);
	get_str(o, "code", m->code, sizeof(m->code), LINK_CODE_MAX, false, &rc);
	check(token_valid(m->code, LINK_CODE_MAX), &rc);
	get_str(o, "message", m->message, sizeof(m->message), LINK_MSG_MAX,
		true, &rc);
	json_decref(o);
	return rc;
}

int
link_decode_heartbeat(const uint8_t *p, size_t n, struct link_heartbeat *m)
{
	json_t *o;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	o = parse(p, n, &rc);
	m->seq = (uint64_t)get_int(o, "seq", 0, INT64_MAX, NULL, &rc);
	m->health =
	    get_enum(o, "health", health_names, ARRAY_SIZE(health_names), &rc);
	m->in_flight =
	    (uint32_t)get_int(o, "in_flight", 0, UINT32_MAX, NULL, &rc);
	m->load = (uint32_t)get_int(o, "load", 0, 100, NULL, &rc);
	json_decref(o);
	return rc;
}

void
link_job_cleanup(struct link_job *m)
{
	size_t i;

	if (m == NULL)
		return;
	free(m->mail_from);
	for (i = 0; i < m->nrcpt; i++)
		free(m->rcpt[i]);
	free(m->rcpt);
	memset(m, 0, sizeof(*m));
}

int
link_decode_job(const uint8_t *p, size_t n, struct link_job *m)
{
	char addr[LINK_ADDR_MAX + 1];
	json_t *o, *a;
	uint32_t jlen;
	size_t i, count;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	if (n < 4)
		return LINK_E_SHORT;
	jlen = get_be32(p);
	if (jlen > n - 4)
		return LINK_E_SHORT;
	if (jlen > LINK_JOB_HEADER_MAX)
		return LINK_E_TOOBIG;
	o = parse(p + 4, jlen, &rc);
	if (o == NULL)
		return rc;
	m->job_id = (uint64_t)get_int(o, "job_id", 0, INT64_MAX, NULL, &rc);
	get_str(o, "message_id", m->message_id, sizeof(m->message_id),
		MSGID_MAX, false, &rc);
	check(token_valid(m->message_id, MSGID_MAX), &rc);
	get_str(o, "mail_from", addr, sizeof(addr), LINK_ADDR_MAX, false, &rc);
	check(addr_valid(addr, true), &rc);
	a = json_object_get(o, "rcpt");
	check(json_is_array(a), &rc);
	count = json_array_size(a);
	check(count >= 1 && count <= LINK_RCPT_MAX, &rc);
	if (rc != 0)
		goto fail;
	m->mail_from = xstrdup(addr);
	m->rcpt = xcalloc(count, sizeof(*m->rcpt));
	for (i = 0; i < count; i++) {
		json_t *s = json_array_get(a, i);
		check(json_is_string(s) &&
			  json_string_length(s) <= LINK_ADDR_MAX,
		      &rc);
		if (rc != 0)
			goto fail;
		memcpy(addr, json_string_value(s), json_string_length(s) + 1);
		check(addr_valid(addr, false), &rc);
		if (rc != 0)
			goto fail;
		m->rcpt[m->nrcpt++] = xstrdup(addr);
	}
	m->mime = p + 4 + jlen;
	m->mime_len = n - 4 - jlen;
	json_decref(o);
	return 0;
fail:
	json_decref(o);
	link_job_cleanup(m);
	return rc;
}

int
link_decode_result(const uint8_t *p, size_t n, struct link_result *m)
{
	json_t *o;
	bool has;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	o = parse(p, n, &rc);
	m->job_id = (uint64_t)get_int(o, "job_id", 0, INT64_MAX, NULL, &rc);
	get_str(o, "message_id", m->message_id, sizeof(m->message_id),
		MSGID_MAX, false, &rc);
	check(token_valid(m->message_id, MSGID_MAX), &rc);
	m->outcome = get_enum(o, "outcome", outcome_names,
			      ARRAY_SIZE(outcome_names), &rc);
	get_str(o, "provider_message_id", m->provider_message_id,
		sizeof(m->provider_message_id), LINK_PMID_MAX, true, &rc);
	check(no_ctl(m->provider_message_id), &rc);
	get_str(o, "detail", m->detail, sizeof(m->detail), LINK_DETAIL_MAX,
		true, &rc);
	/* Optional (revision 2): an older agent never sends it. */
	m->retry_after_ms = (uint32_t)get_int(
	    o, "retry_after_ms", 0, LINK_RETRY_AFTER_MAX_MS, &has, &rc);
	json_decref(o);
	return rc;
}

static void
mac(const void *secret, size_t secret_len, const char *label,
    const uint8_t first[LINK_NONCE_LEN], const uint8_t second[LINK_NONCE_LEN],
    const char *name, uint8_t out[LINK_MAC_LEN])
{
	uint8_t buf[32 + 2 * LINK_NONCE_LEN + LINK_NAME_MAX];
	size_t llen = strlen(label) + 1, nlen = strnlen(name, LINK_NAME_MAX);
	unsigned int outlen = LINK_MAC_LEN;

	/* The label's NUL separates it from the binary nonces. */
	memcpy(buf, label, llen);
	memcpy(buf + llen, first, LINK_NONCE_LEN);
	memcpy(buf + llen + LINK_NONCE_LEN, second, LINK_NONCE_LEN);
	memcpy(buf + llen + 2 * LINK_NONCE_LEN, name, nlen);
	if (HMAC(EVP_sha256(), secret, (int)secret_len, buf,
		 llen + 2 * LINK_NONCE_LEN + nlen, out, &outlen) == NULL)
		fatalx("link: HMAC-SHA256 failed"); /* our OpenSSL is broken */
	OPENSSL_cleanse(buf, sizeof(buf));
}

void
link_mac_agent(const void *secret, size_t secret_len,
	       const uint8_t server_nonce[LINK_NONCE_LEN],
	       const uint8_t agent_nonce[LINK_NONCE_LEN], const char *name,
	       uint8_t out[LINK_MAC_LEN])
{
	mac(secret, secret_len, "shivneri-agent-v1", server_nonce, agent_nonce,
	    name, out);
}

void
link_mac_server(const void *secret, size_t secret_len,
		const uint8_t agent_nonce[LINK_NONCE_LEN],
		const uint8_t server_nonce[LINK_NONCE_LEN], const char *name,
		uint8_t out[LINK_MAC_LEN])
{
	mac(secret, secret_len, "shivneri-server-v1", agent_nonce, server_nonce,
	    name, out);
}

bool
link_mac_equal(const uint8_t a[LINK_MAC_LEN], const uint8_t b[LINK_MAC_LEN])
{
	return CRYPTO_memcmp(a, b, LINK_MAC_LEN) == 0;
}
