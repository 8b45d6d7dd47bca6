/*
 * The agent protocol's codec and framed connection: every frame type round
 * trips; every malformed input (each truncation, bad lengths, unknown
 * types, bad JSON, trailing bytes, wrong types, over-long strings, bad hex)
 * is refused with the right error and never crashes; the MACs are
 * deterministic and sensitive to every input; and a whole handshake plus a
 * job runs over a socketpair between two link_conns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "link/link.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Takes out's single frame; its payload is copied to *p (free it). */
static int
take_frame(struct evbuffer *out, uint8_t **p, size_t *n)
{
	size_t len = evbuffer_get_length(out), plen, consumed;
	const uint8_t *payload;
	uint8_t *buf = evbuffer_pullup(out, -1);
	int type, rc;

	rc = link_frame_split(buf, len, UINT32_MAX, &type, &payload, &plen,
			      &consumed);
	assert_int_equal(rc, 1);
	assert_int_equal(consumed, len);
	*p = malloc(plen + 1);
	memcpy(*p, payload, plen);
	(*p)[plen] = 0; /* for strstr on JSON payloads */
	*n = plen;
	evbuffer_drain(out, len);
	return type;
}

static void
fill(uint8_t *b, size_t n, uint8_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		b[i] = (uint8_t)(seed + i * 7);
}

static void
test_roundtrip(void **state)
{
	struct evbuffer *out = evbuffer_new();
	struct link_hello h = {0}, h2;
	struct link_challenge c = {0}, c2;
	struct link_auth au, au2;
	struct link_welcome w = {0}, w2;
	struct link_error e;
	struct link_heartbeat hb = {0}, hb2;
	struct link_job j;
	struct link_result r, r2;
	const char *rcpt[] = {"a@example.com", "b@example.net"};
	const uint8_t mime[] = {'x', 0, 0xff, '\r', '\n'};
	uint8_t *p;
	size_t n;

	h.version = LINK_VERSION;
	snprintf(h.name, sizeof(h.name), "sandbox-a");
	snprintf(h.type, sizeof(h.type), "maildir");
	fill(h.nonce, sizeof(h.nonce), 1);
	h.pid = 4242;
	h.weight = 3;
	h.priority = 0;
	h.max_in_flight = 16;
	h.revision = LINK_REVISION;
	assert_int_equal(link_encode_hello(out, &h), 0);
	assert_int_equal(take_frame(out, &p, &n), LINK_HELLO);
	assert_int_equal(link_decode_hello(p, n, &h2), 0);
	assert_memory_equal(&h, &h2, sizeof(h));
	free(p);

	/* Optional fields absent: 0, -1, 0. */
	h.weight = 0;
	h.priority = -1;
	h.max_in_flight = 0;
	assert_int_equal(link_encode_hello(out, &h), 0);
	assert_int_equal(take_frame(out, &p, &n), LINK_HELLO);
	assert_null(strstr((char *)p, "weight"));
	assert_int_equal(link_decode_hello(p, n, &h2), 0);
	assert_int_equal(h2.weight, 0);
	assert_int_equal(h2.priority, -1);
	assert_int_equal(h2.max_in_flight, 0);
	free(p);

	c.version = LINK_VERSION;
	c.revision = LINK_REVISION;
	fill(c.nonce, sizeof(c.nonce), 9);
	assert_int_equal(link_encode_challenge(out, &c), 0);
	assert_int_equal(take_frame(out, &p, &n), LINK_CHALLENGE);
	assert_int_equal(link_decode_challenge(p, n, &c2), 0);
	assert_memory_equal(&c, &c2, sizeof(c));
	free(p);

	fill(au.mac, sizeof(au.mac), 3);
	assert_int_equal(link_encode_auth(out, &au), 0);
	assert_int_equal(take_frame(out, &p, &n), LINK_AUTH);
	assert_int_equal(link_decode_auth(p, n, &au2), 0);
	assert_memory_equal(&au, &au2, sizeof(au));
	free(p);

	fill(w.mac, sizeof(w.mac), 5);
	w.heartbeat_interval_ms = 1000;
	assert_int_equal(link_encode_welcome(out, &w), 0);
	assert_int_equal(take_frame(out, &p, &n), LINK_WELCOME);
	assert_int_equal(link_decode_welcome(p, n, &w2), 0);
	assert_memory_equal(w.mac, w2.mac, LINK_MAC_LEN);
	assert_int_equal(w2.heartbeat_interval_ms, 1000);
	/* Not given: an agent then uses its own file's limit. */
	assert_int_equal(w2.max_message_bytes, 0);
	assert_null(strstr((char *)p, "max_message_bytes"));
	free(p);

	w.max_message_bytes = 1073741824;
	assert_int_equal(link_encode_welcome(out, &w), 0);
	assert_int_equal(take_frame(out, &p, &n), LINK_WELCOME);
	assert_int_equal(link_decode_welcome(p, n, &w2), 0);
	assert_int_equal(w2.max_message_bytes, 1073741824);
	free(p);

	assert_int_equal(link_encode_error(out, "auth_failed", "bad \"mac\""),
			 0);
	assert_int_equal(take_frame(out, &p, &n), LINK_ERROR);
	assert_int_equal(link_decode_error(p, n, &e), 0);
	assert_string_equal(e.code, "auth_failed");
	assert_string_equal(e.message, "bad \"mac\"");
	free(p);

	hb.seq = 77;
	hb.health = LINK_HEALTH_DEGRADED;
	hb.in_flight = 5;
	hb.load = 100;
	assert_int_equal(link_encode_heartbeat(out, &hb), 0);
	assert_int_equal(take_frame(out, &p, &n), LINK_HEARTBEAT);
	assert_int_equal(link_decode_heartbeat(p, n, &hb2), 0);
	assert_memory_equal(&hb, &hb2, sizeof(hb));
	free(p);

	assert_int_equal(link_encode_job(out, 12345, "01HXYZ", "", rcpt, 2,
					 mime, sizeof(mime)),
			 0);
	assert_int_equal(take_frame(out, &p, &n), LINK_JOB);
	assert_int_equal(link_decode_job(p, n, &j), 0);
	assert_int_equal(j.job_id, 12345);
	assert_string_equal(j.message_id, "01HXYZ");
	assert_string_equal(j.mail_from, "");
	assert_int_equal(j.nrcpt, 2);
	assert_string_equal(j.rcpt[1], "b@example.net");
	assert_int_equal(j.mime_len, sizeof(mime));
	assert_memory_equal(j.mime, mime, sizeof(mime));
	link_job_cleanup(&j);
	free(p);

	/* An empty message is legal at this layer. */
	assert_int_equal(link_encode_job(out, 1, "m", "a@b", rcpt, 1, NULL, 0),
			 0);
	assert_int_equal(take_frame(out, &p, &n), LINK_JOB);
	assert_int_equal(link_decode_job(p, n, &j), 0);
	assert_int_equal(j.mime_len, 0);
	link_job_cleanup(&j);
	free(p);

	memset(&r, 0, sizeof(r));
	r.job_id = 12345;
	snprintf(r.message_id, sizeof(r.message_id), "01HXYZ");
	r.outcome = 2;
	snprintf(r.provider_message_id, sizeof(r.provider_message_id), "<x@y>");
	snprintf(r.detail, sizeof(r.detail), "550 no such user \xc3\xa9");
	assert_int_equal(link_encode_result(out, &r), 0);
	assert_int_equal(take_frame(out, &p, &n), LINK_RESULT);
	assert_int_equal(link_decode_result(p, n, &r2), 0);
	assert_memory_equal(&r, &r2, sizeof(r));
	free(p);

	evbuffer_free(out);
}

/* A valid HELLO frame (whole, header included) in a new buffer. */
static uint8_t *
hello_frame(size_t *len)
{
	struct evbuffer *out = evbuffer_new();
	struct link_hello h = {0};
	uint8_t *b;

	h.version = LINK_VERSION;
	snprintf(h.name, sizeof(h.name), "p1");
	snprintf(h.type, sizeof(h.type), "maildir");
	h.priority = -1;
	assert_int_equal(link_encode_hello(out, &h), 0);
	*len = evbuffer_get_length(out);
	b = malloc(*len);
	evbuffer_remove(out, b, *len);
	evbuffer_free(out);
	return b;
}

static void
test_split_truncated(void **state)
{
	const uint8_t *payload;
	size_t len, i, plen, consumed;
	uint8_t *f = hello_frame(&len), *copy;
	struct link_hello h;
	int type;

	for (i = 0; i < len; i++) {
		/* A fresh allocation of exactly i bytes so ASan sees reads
		 * past the prefix. */
		copy = malloc(i + 1);
		memcpy(copy, f, i);
		assert_int_equal(link_frame_split(copy, i, LINK_CTRL_MAX, &type,
						  &payload, &plen, &consumed),
				 0);
		free(copy);
	}
	/* Every truncated payload is refused. */
	for (i = 0; i < len - 5; i++) {
		copy = malloc(i + 1);
		memcpy(copy, f + 5, i);
		assert_int_not_equal(link_decode_hello(copy, i, &h), 0);
		free(copy);
	}
	assert_int_equal(link_decode_hello(f + 5, len - 5, &h), 0);
	free(f);
}

static void
test_split_lengths(void **state)
{
	uint8_t b[16] = {0};
	const uint8_t *payload;
	size_t plen, consumed;
	int type;

	/* Length 0. */
	assert_int_equal(link_frame_split(b, sizeof(b), 100, &type, &payload,
					  &plen, &consumed),
			 LINK_E_TOOBIG);
	/* Over the cap, even before the bytes arrive. */
	b[2] = 0x01; /* 256 */
	assert_int_equal(
	    link_frame_split(b, 4, 255, &type, &payload, &plen, &consumed),
	    LINK_E_TOOBIG);
	b[0] = 0xff;
	assert_int_equal(link_frame_split(b, 4, LINK_CTRL_MAX, &type, &payload,
					  &plen, &consumed),
			 LINK_E_TOOBIG);
	/* Exactly the cap is fine; two frames back to back split one by one. */
	memset(b, 0, sizeof(b));
	b[3] = 2;
	b[4] = LINK_AUTH;
	b[5] = 'x';
	b[9] = 1;
	b[10] = LINK_ERROR;
	assert_int_equal(
	    link_frame_split(b, 11, 2, &type, &payload, &plen, &consumed), 1);
	assert_int_equal(type, LINK_AUTH);
	assert_int_equal(plen, 1);
	assert_int_equal(payload[0], 'x');
	assert_int_equal(consumed, 6);
	assert_int_equal(
	    link_frame_split(b + 6, 5, 2, &type, &payload, &plen, &consumed),
	    1);
	assert_int_equal(type, LINK_ERROR);
	assert_int_equal(plen, 0);
}

static int
dec(int type, const char *json)
{
	struct link_hello h;
	struct link_challenge c;
	struct link_auth a;
	struct link_welcome w;
	struct link_error e;
	struct link_heartbeat hb;
	struct link_result r;
	const uint8_t *p = (const uint8_t *)json;
	size_t n = strlen(json);

	switch (type) {
	case LINK_HELLO:
		return link_decode_hello(p, n, &h);
	case LINK_CHALLENGE:
		return link_decode_challenge(p, n, &c);
	case LINK_AUTH:
		return link_decode_auth(p, n, &a);
	case LINK_WELCOME:
		return link_decode_welcome(p, n, &w);
	case LINK_ERROR:
		return link_decode_error(p, n, &e);
	case LINK_HEARTBEAT:
		return link_decode_heartbeat(p, n, &hb);
	case LINK_RESULT:
		return link_decode_result(p, n, &r);
	}
	fail();
	return 0;
}

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void
test_decode_errors(void **state)
{
	char big[2048];

	/* Baselines accepted. */
	assert_int_equal(dec(LINK_HELLO,
			     "{\"version\":1,\"name\":\"a\",\"type\":"
			     "\"maildir\",\"nonce\":\"" HEX64
			     "\",\"pid\":1,\"extra\":[1]}"),
			 0);
	assert_int_equal(dec(LINK_AUTH, "{\"mac\":\"" HEX64 "\"}"), 0);
	assert_int_equal(dec(LINK_HEARTBEAT, "{\"seq\":0,\"health\":\"down\","
					     "\"in_flight\":0,\"load\":0}"),
			 0);

	/* Garbage, empty, not an object, trailing bytes, duplicates. */
	assert_int_equal(dec(LINK_AUTH, "nonsense"), LINK_E_SYNTAX);
	assert_int_equal(dec(LINK_AUTH, ""), LINK_E_SYNTAX);
	assert_int_equal(dec(LINK_AUTH, "[1]"), LINK_E_SYNTAX);
	assert_int_equal(dec(LINK_AUTH, "{\"mac\":\"" HEX64 "\"}x"),
			 LINK_E_SYNTAX);
	assert_int_equal(dec(LINK_AUTH, "{\"mac\":\"" HEX64 "\"}{}"),
			 LINK_E_SYNTAX);
	assert_int_equal(
	    dec(LINK_AUTH, "{\"mac\":\"" HEX64 "\",\"mac\":\"" HEX64 "\"}"),
	    LINK_E_SYNTAX);
	/* An embedded NUL is not JSON. */
	assert_int_not_equal(
	    link_decode_auth((const uint8_t *)"{\"mac\":\"\0\"}", 11,
			     &(struct link_auth){{0}}),
	    0);

	/* Bad hex: uppercase, short, long, not hex, not a string. */
	assert_int_equal(dec(LINK_AUTH, "{\"mac\":\"0123456789ABCDEF0123456789"
					"abcdef0123456789abcdef0123456789ab"
					"cdef\"}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_AUTH, "{\"mac\":\"00\"}"), LINK_E_FIELD);
	assert_int_equal(dec(LINK_AUTH, "{\"mac\":\"" HEX64 "00\"}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_AUTH, "{\"mac\":\"zz23456789abcdef0123456789"
					"abcdef0123456789abcdef0123456789ab"
					"cdef\"}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_AUTH, "{\"mac\":12}"), LINK_E_FIELD);
	assert_int_equal(dec(LINK_AUTH, "{}"), LINK_E_FIELD);

	/* Wrong types and ranges. */
	assert_int_equal(dec(LINK_HEARTBEAT, "{\"seq\":\"1\",\"health\":\"ok\","
					     "\"in_flight\":0,\"load\":0}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_HEARTBEAT, "{\"seq\":1.5,\"health\":\"ok\","
					     "\"in_flight\":0,\"load\":0}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_HEARTBEAT, "{\"seq\":-1,\"health\":\"ok\","
					     "\"in_flight\":0,\"load\":0}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_HEARTBEAT, "{\"seq\":1,\"health\":\"meh\","
					     "\"in_flight\":0,\"load\":0}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_HEARTBEAT, "{\"seq\":1,\"health\":\"ok\","
					     "\"in_flight\":0,\"load\":101}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_HEARTBEAT, "{\"seq\":1,\"health\":\"ok\","
					     "\"in_flight\":4294967296,"
					     "\"load\":1}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_WELCOME, "{\"mac\":\"" HEX64
					   "\",\"heartbeat_interval_ms\":0}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_HELLO,
			     "{\"version\":1,\"name\":\"a b\","
			     "\"type\":\"maildir\",\"nonce\":\"" HEX64
			     "\",\"pid\":1}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_HELLO,
			     "{\"version\":1,\"name\":\"a\",\"type\":"
			     "\"maildir\",\"nonce\":\"" HEX64
			     "\",\"pid\":1,\"weight\":0}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_HELLO,
			     "{\"version\":1,\"name\":\"a\",\"type\":"
			     "\"maildir\",\"nonce\":\"" HEX64
			     "\",\"pid\":1,\"priority\":true}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_RESULT, "{\"job_id\":1,\"message_id\":\"m\","
					  "\"outcome\":\"exploded\"}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_RESULT, "{\"job_id\":1,\"message_id\":\"m\","
					  "\"outcome\":\"lost\","
					  "\"provider_message_id\":\"a\\nb\"}"),
			 LINK_E_FIELD);
	assert_int_equal(dec(LINK_RESULT, "{\"job_id\":1,\"message_id\":\"m\","
					  "\"outcome\":\"lost\"}"),
			 0);

	/* Versions: another version is E_VERSION, not E_FIELD. */
	assert_int_equal(dec(LINK_HELLO,
			     "{\"version\":2,\"name\":\"a\",\"type\":"
			     "\"maildir\",\"nonce\":\"" HEX64 "\",\"pid\":1}"),
			 LINK_E_VERSION);
	assert_int_equal(
	    dec(LINK_CHALLENGE, "{\"version\":0,\"nonce\":\"" HEX64 "\"}"),
	    LINK_E_VERSION);

	/* Over-long strings: one byte over each limit. */
	snprintf(big, sizeof(big),
		 "{\"version\":1,\"name\":\"%065d\",\"type\":\"maildir\","
		 "\"nonce\":\"" HEX64 "\",\"pid\":1}",
		 0);
	assert_int_equal(dec(LINK_HELLO, big), LINK_E_FIELD);
	snprintf(big, sizeof(big),
		 "{\"version\":1,\"name\":\"%064d\",\"type\":\"maildir\","
		 "\"nonce\":\"" HEX64 "\",\"pid\":1}",
		 0);
	assert_int_equal(dec(LINK_HELLO, big), 0);
	snprintf(big, sizeof(big), "{\"code\":\"%033d\"}", 0);
	assert_int_equal(dec(LINK_ERROR, big), LINK_E_FIELD);
	snprintf(big, sizeof(big), "{\"code\":\"x\",\"message\":\"%0257d\"}",
		 0);
	assert_int_equal(dec(LINK_ERROR, big), LINK_E_FIELD);
	snprintf(big, sizeof(big),
		 "{\"job_id\":1,\"message_id\":\"m\",\"outcome\":\"lost\","
		 "\"detail\":\"%0513d\"}",
		 0);
	assert_int_equal(dec(LINK_RESULT, big), LINK_E_FIELD);
	snprintf(big, sizeof(big),
		 "{\"job_id\":1,\"message_id\":\"m\",\"outcome\":\"lost\","
		 "\"provider_message_id\":\"%0257d\"}",
		 0);
	assert_int_equal(dec(LINK_RESULT, big), LINK_E_FIELD);
	snprintf(big, sizeof(big),
		 "{\"job_id\":1,\"message_id\":\"%064d\",\"outcome\":\"lost\"}",
		 0);
	assert_int_equal(dec(LINK_RESULT, big), LINK_E_FIELD);
}

/* A JOB payload from raw JSON and mime. */
static int
dec_job(const char *json, const char *mime, struct link_job *j)
{
	size_t jl = strlen(json), ml = strlen(mime);
	uint8_t *p = malloc(4 + jl + ml + 1);
	int rc;

	p[0] = (uint8_t)(jl >> 24);
	p[1] = (uint8_t)(jl >> 16);
	p[2] = (uint8_t)(jl >> 8);
	p[3] = (uint8_t)jl;
	memcpy(p + 4, json, jl);
	memcpy(p + 4 + jl, mime, ml);
	rc = link_decode_job(p, 4 + jl + ml, j);
	if (rc == 0) {
		assert_int_equal(j->mime_len, ml);
		link_job_cleanup(j);
	}
	free(p);
	return rc;
}

static void
test_job_errors(void **state)
{
	struct link_job j;
	char *big;
	size_t i, off;
	uint8_t hdr[4] = {0, 0, 0, 9};

	assert_int_equal(dec_job("{\"job_id\":1,\"message_id\":\"m\","
				 "\"mail_from\":\"a@b\",\"rcpt\":[\"c@d\"]}",
				 "body", &j),
			 0);
	/* Short header, JSON length past the end. */
	assert_int_equal(link_decode_job(hdr, 3, &j), LINK_E_SHORT);
	assert_int_equal(link_decode_job(hdr, 4, &j), LINK_E_SHORT);
	/* Empty and garbage JSON. */
	assert_int_equal(dec_job("", "x", &j), LINK_E_SYNTAX);
	assert_int_equal(dec_job("{]", "x", &j), LINK_E_SYNTAX);
	/* Missing or mistyped rcpt, empty rcpt, CRLF in an address. */
	assert_int_equal(dec_job("{\"job_id\":1,\"message_id\":\"m\","
				 "\"mail_from\":\"a@b\"}",
				 "", &j),
			 LINK_E_FIELD);
	assert_int_equal(dec_job("{\"job_id\":1,\"message_id\":\"m\","
				 "\"mail_from\":\"a@b\",\"rcpt\":\"c@d\"}",
				 "", &j),
			 LINK_E_FIELD);
	assert_int_equal(dec_job("{\"job_id\":1,\"message_id\":\"m\","
				 "\"mail_from\":\"a@b\",\"rcpt\":[]}",
				 "", &j),
			 LINK_E_FIELD);
	assert_int_equal(dec_job("{\"job_id\":1,\"message_id\":\"m\","
				 "\"mail_from\":\"a@b\",\"rcpt\":[\"c@d\",2]}",
				 "", &j),
			 LINK_E_FIELD);
	assert_int_equal(dec_job("{\"job_id\":1,\"message_id\":\"m\","
				 "\"mail_from\":\"a@b\\r\\nRCPT TO:<x>\","
				 "\"rcpt\":[\"c@d\"]}",
				 "", &j),
			 LINK_E_FIELD);
	assert_int_equal(dec_job("{\"job_id\":-1,\"message_id\":\"m\","
				 "\"mail_from\":\"a@b\",\"rcpt\":[\"c@d\"]}",
				 "", &j),
			 LINK_E_FIELD);
	/* Over-long address, too many recipients. */
	big = malloc(16 * 1024);
	off = (size_t)snprintf(big, 1024,
			       "{\"job_id\":1,\"message_id\":\"m\","
			       "\"mail_from\":\"");
	memset(big + off, 'a', LINK_ADDR_MAX + 1);
	off += LINK_ADDR_MAX + 1;
	snprintf(big + off, 64, "\",\"rcpt\":[\"c@d\"]}");
	assert_int_equal(dec_job(big, "", &j), LINK_E_FIELD);
	off = (size_t)snprintf(big, 1024,
			       "{\"job_id\":1,\"message_id\":\"m\","
			       "\"mail_from\":\"\",\"rcpt\":[");
	for (i = 0; i <= LINK_RCPT_MAX; i++)
		off += (size_t)snprintf(big + off, 16 * 1024 - off, "%s\"a\"",
					i > 0 ? "," : "");
	snprintf(big + off, 16 * 1024 - off, "]}");
	assert_int_equal(dec_job(big, "", &j), LINK_E_FIELD);
	free(big);
}

static void
test_unknown_type(void **state)
{
	assert_string_equal(link_type_name(LINK_JOB), "JOB");
	assert_string_equal(link_type_name(0), "UNKNOWN");
	assert_string_equal(link_type_name(9), "UNKNOWN");
	assert_string_equal(link_health_name(LINK_HEALTH_DOWN), "down");
	assert_string_not_equal(link_strerror(LINK_E_TYPE),
				link_strerror(LINK_E_FIELD));
}

static void
test_encode_limits(void **state)
{
	struct evbuffer *out = evbuffer_new();
	struct link_hello h = {0};
	struct link_result r = {0};
	struct link_heartbeat hb = {0};
	const char *bad[] = {"a\nb"};
	char long_msg[1000];

	h.version = 1;
	snprintf(h.name, sizeof(h.name), "bad name");
	snprintf(h.type, sizeof(h.type), "maildir");
	assert_int_equal(link_encode_hello(out, &h), LINK_E_FIELD);
	assert_int_equal(link_encode_error(out, "", "x"), LINK_E_FIELD);
	assert_int_equal(link_encode_error(out, NULL, "x"), LINK_E_FIELD);
	assert_int_equal(link_encode_job(out, 1, "m", "a@b", bad, 1, "x", 1),
			 LINK_E_FIELD);
	assert_int_equal(link_encode_job(out, 1, "m", "a@b", bad, 0, "x", 1),
			 LINK_E_FIELD);
	r.outcome = 9;
	snprintf(r.message_id, sizeof(r.message_id), "m");
	assert_int_equal(link_encode_result(out, &r), LINK_E_FIELD);
	hb.load = 101;
	assert_int_equal(link_encode_heartbeat(out, &hb), LINK_E_FIELD);
	assert_int_equal(evbuffer_get_length(out), 0);
	/* A long error message is cut, not refused, and stays decodable. */
	memset(long_msg, 'x', sizeof(long_msg) - 1);
	long_msg[sizeof(long_msg) - 1] = '\0';
	assert_int_equal(link_encode_error(out, "e", long_msg), 0);
	{
		struct link_error e;
		uint8_t *p;
		size_t n;
		assert_int_equal(take_frame(out, &p, &n), LINK_ERROR);
		assert_int_equal(link_decode_error(p, n, &e), 0);
		assert_int_equal(strlen(e.message), LINK_MSG_MAX);
		free(p);
	}
	evbuffer_free(out);
}

static void
test_mac(void **state)
{
	uint8_t sn[LINK_NONCE_LEN], an[LINK_NONCE_LEN], m1[LINK_MAC_LEN],
	    m2[LINK_MAC_LEN], m3[LINK_MAC_LEN];
	const char *secret = "s3cret";

	fill(sn, sizeof(sn), 1);
	fill(an, sizeof(an), 2);
	link_mac_agent(secret, 6, sn, an, "p1", m1);
	link_mac_agent(secret, 6, sn, an, "p1", m2);
	assert_true(link_mac_equal(m1, m2));
	assert_memory_equal(m1, m2, LINK_MAC_LEN);

	/* Every input changes it. */
	link_mac_agent(secret, 5, sn, an, "p1", m3);
	assert_false(link_mac_equal(m1, m3));
	link_mac_agent("s3creT", 6, sn, an, "p1", m3);
	assert_false(link_mac_equal(m1, m3));
	link_mac_agent(secret, 6, an, sn, "p1", m3); /* nonces swapped */
	assert_false(link_mac_equal(m1, m3));
	sn[31] ^= 1;
	link_mac_agent(secret, 6, sn, an, "p1", m3);
	assert_false(link_mac_equal(m1, m3));
	sn[31] ^= 1;
	an[0] ^= 0x80;
	link_mac_agent(secret, 6, sn, an, "p1", m3);
	assert_false(link_mac_equal(m1, m3));
	an[0] ^= 0x80;
	link_mac_agent(secret, 6, sn, an, "p2", m3);
	assert_false(link_mac_equal(m1, m3));
	/* The server's MAC with the same inputs is different. */
	link_mac_server(secret, 6, sn, an, "p1", m3);
	assert_false(link_mac_equal(m1, m3));

	/* link_mac_equal looks at every byte. */
	memcpy(m3, m1, LINK_MAC_LEN);
	m3[LINK_MAC_LEN - 1] ^= 1;
	assert_false(link_mac_equal(m1, m3));
	memcpy(m3, m1, LINK_MAC_LEN);
	m3[0] ^= 1;
	assert_false(link_mac_equal(m1, m3));

	/*
	 * A known answer, computed independently (Python's hmac):
	 * HMAC-SHA256("key", "shivneri-agent-v1" NUL 32*00 32*ff "n").
	 */
	memset(sn, 0, sizeof(sn));
	memset(an, 0xff, sizeof(an));
	link_mac_agent("key", 3, sn, an, "n", m1);
	{
		char hex[2 * LINK_MAC_LEN + 1];
		hex_encode(m1, LINK_MAC_LEN, hex);
		assert_string_equal(hex, "a01edd67ae1245030d7b1f02282a7ebc"
					 "5e68c97295120cf50d9af4624e6f8556");
	}
}

static void
test_name_valid(void **state)
{
	char name[LINK_NAME_MAX + 2];

	assert_true(link_name_valid("sandbox-a"));
	assert_true(link_name_valid("A.b_c-9"));
	assert_false(link_name_valid(""));
	assert_false(link_name_valid(NULL));
	assert_false(link_name_valid("a/b"));
	assert_false(link_name_valid("a b"));
	assert_false(link_name_valid("\xc3\xa9"));
	memset(name, 'a', LINK_NAME_MAX);
	name[LINK_NAME_MAX] = '\0';
	assert_true(link_name_valid(name));
	name[LINK_NAME_MAX] = 'a';
	name[LINK_NAME_MAX + 1] = '\0';
	assert_false(link_name_valid(name));
}

/*
 * The conn layer over a socketpair: a toy server and agent run the whole
 * handshake and one JOB/RESULT exchange, with frames fed one byte at a
 * time on the agent's side to exercise reassembly.
 */
struct peer {
	struct link_conn *c;
	const char *role;
	uint8_t my_nonce[LINK_NONCE_LEN], peer_nonce[LINK_NONCE_LEN];
	int frames;
	int closed, close_err;
	bool done;
	struct event_base *base;
};

static const char secret[] = "shared-secret";

static void
srv_frame(struct link_conn *c, int type, const uint8_t *p, size_t n, void *arg)
{
	struct peer *s = arg;
	struct link_hello h;
	struct link_challenge ch;
	struct link_auth au;
	struct link_welcome w = {0};
	struct link_result r;
	uint8_t want[LINK_MAC_LEN];
	const char *rcpt[] = {"x@y"};

	s->frames++;
	switch (type) {
	case LINK_HELLO:
		assert_int_equal(link_decode_hello(p, n, &h), 0);
		memcpy(s->peer_nonce, h.nonce, LINK_NONCE_LEN);
		memset(&ch, 0, sizeof(ch)); /* revision 0: left out */
		ch.version = LINK_VERSION;
		memcpy(ch.nonce, s->my_nonce, LINK_NONCE_LEN);
		assert_int_equal(
		    link_encode_challenge(link_conn_output(c), &ch), 0);
		break;
	case LINK_AUTH:
		assert_int_equal(link_decode_auth(p, n, &au), 0);
		link_mac_agent(secret, strlen(secret), s->my_nonce,
			       s->peer_nonce, "p1", want);
		assert_true(link_mac_equal(want, au.mac));
		link_mac_server(secret, strlen(secret), s->peer_nonce,
				s->my_nonce, "p1", w.mac);
		w.heartbeat_interval_ms = 500;
		assert_int_equal(link_encode_welcome(link_conn_output(c), &w),
				 0);
		break;
	case LINK_HEARTBEAT:
		assert_int_equal(link_encode_job(link_conn_output(c), 7, "MID",
						 "a@b", rcpt, 1, "hello", 5),
				 0);
		break;
	case LINK_RESULT:
		assert_int_equal(link_decode_result(p, n, &r), 0);
		assert_int_equal(r.job_id, 7);
		assert_string_equal(r.provider_message_id, "5");
		/* Say goodbye: the agent must see ERROR then EOF. */
		link_conn_close(c, "bye", "test over");
		s->c = NULL;
		break;
	default:
		fail();
	}
}

static void
agt_frame(struct link_conn *c, int type, const uint8_t *p, size_t n, void *arg)
{
	struct peer *a = arg;
	struct link_challenge ch;
	struct link_welcome w;
	struct link_auth au;
	struct link_heartbeat hb = {0};
	struct link_job j;
	struct link_result r = {0};
	struct link_error e;
	uint8_t want[LINK_MAC_LEN];

	a->frames++;
	switch (type) {
	case LINK_CHALLENGE:
		assert_int_equal(link_decode_challenge(p, n, &ch), 0);
		memcpy(a->peer_nonce, ch.nonce, LINK_NONCE_LEN);
		link_mac_agent(secret, strlen(secret), a->peer_nonce,
			       a->my_nonce, "p1", au.mac);
		assert_int_equal(link_encode_auth(link_conn_output(c), &au), 0);
		break;
	case LINK_WELCOME:
		assert_int_equal(link_decode_welcome(p, n, &w), 0);
		link_mac_server(secret, strlen(secret), a->my_nonce,
				a->peer_nonce, "p1", want);
		assert_true(link_mac_equal(want, w.mac));
		assert_int_equal(w.heartbeat_interval_ms, 500);
		hb.seq = 1;
		assert_int_equal(
		    link_encode_heartbeat(link_conn_output(c), &hb), 0);
		break;
	case LINK_JOB:
		assert_int_equal(link_decode_job(p, n, &j), 0);
		r.job_id = j.job_id;
		snprintf(r.message_id, sizeof(r.message_id), "%s",
			 j.message_id);
		snprintf(r.provider_message_id, sizeof(r.provider_message_id),
			 "%zu", j.mime_len);
		link_job_cleanup(&j);
		assert_int_equal(link_encode_result(link_conn_output(c), &r),
				 0);
		break;
	case LINK_ERROR:
		assert_int_equal(link_decode_error(p, n, &e), 0);
		assert_string_equal(e.code, "bye");
		a->done = true;
		break;
	default:
		fail();
	}
}

static void
peer_close(struct link_conn *c, int err, void *arg)
{
	struct peer *p = arg;

	p->closed++;
	p->close_err = err;
	link_conn_free(c);
	p->c = NULL;
	event_base_loopbreak(p->base);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void
test_conn_handshake(void **state)
{
	struct event_base *base = event_base_new();
	struct peer srv = {0}, agt = {0};
	struct link_hello h = {0};
	struct bufferevent *bs, *ba;
	struct event *deadline;
	struct timeval tv = {10, 0};
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(evutil_make_socket_nonblocking(sv[0]), 0);
	assert_int_equal(evutil_make_socket_nonblocking(sv[1]), 0);
	bs = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	ba = bufferevent_socket_new(base, sv[1], BEV_OPT_CLOSE_ON_FREE);
	/* The agent reads one byte per read: frames arrive in pieces. */
	bufferevent_set_max_single_read(ba, 1);
	srv.base = agt.base = base;
	fill(srv.my_nonce, LINK_NONCE_LEN, 11);
	fill(agt.my_nonce, LINK_NONCE_LEN, 22);
	srv.c = link_conn_new(bs, LINK_CTRL_MAX, srv_frame, peer_close, &srv);
	agt.c = link_conn_new(ba, 1024, agt_frame, peer_close, &agt);

	h.version = LINK_VERSION;
	snprintf(h.name, sizeof(h.name), "p1");
	snprintf(h.type, sizeof(h.type), "maildir");
	memcpy(h.nonce, agt.my_nonce, LINK_NONCE_LEN);
	h.priority = -1;
	assert_int_equal(link_encode_hello(link_conn_output(agt.c), &h), 0);

	deadline = evtimer_new(base, deadline_cb, base);
	evtimer_add(deadline, &tv);
	/* Runs until the agent sees the server hang up (or the deadline). */
	while (agt.closed == 0 && evtimer_pending(deadline, NULL))
		event_base_loop(base, EVLOOP_ONCE);
	assert_true(agt.done);
	assert_int_equal(agt.closed, 1);
	assert_int_equal(agt.close_err, 0);
	assert_int_equal(agt.frames, 4);
	assert_int_equal(srv.frames, 4);
	assert_int_equal(srv.closed, 0); /* close() means no callback */
	event_free(deadline);
	/* Let the closing server connection free itself. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_free(base);
}

/* A peer that announces a frame over the cap is dropped with TOOBIG. */
static void
test_conn_toobig(void **state)
{
	struct event_base *base = event_base_new();
	struct peer agt = {0};
	struct bufferevent *ba;
	struct event *deadline;
	struct timeval tv = {10, 0};
	uint8_t bad[8] = {0, 0, 4, 1, LINK_AUTH, '{', '}', 0};
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(evutil_make_socket_nonblocking(sv[1]), 0);
	ba = bufferevent_socket_new(base, sv[1], BEV_OPT_CLOSE_ON_FREE);
	agt.base = base;
	agt.c = link_conn_new(ba, 1024, agt_frame, peer_close, &agt);
	assert_int_equal(write(sv[0], bad, sizeof(bad)), (ssize_t)sizeof(bad));
	deadline = evtimer_new(base, deadline_cb, base);
	evtimer_add(deadline, &tv);
	while (agt.closed == 0 && evtimer_pending(deadline, NULL))
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(agt.closed, 1);
	assert_int_equal(agt.close_err, LINK_E_TOOBIG);
	assert_int_equal(agt.frames, 0);
	/* A frame cut by EOF is LINK_E_SHORT. */
	close(sv[0]);
	event_free(deadline);
	event_base_free(base);
}

static void
test_conn_truncated_eof(void **state)
{
	struct event_base *base = event_base_new();
	struct peer agt = {0};
	struct bufferevent *ba;
	struct event *deadline;
	struct timeval tv = {10, 0};
	uint8_t part[6] = {0, 0, 0, 9, LINK_AUTH, '{'};
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(evutil_make_socket_nonblocking(sv[1]), 0);
	ba = bufferevent_socket_new(base, sv[1], BEV_OPT_CLOSE_ON_FREE);
	agt.base = base;
	agt.c = link_conn_new(ba, 1024, agt_frame, peer_close, &agt);
	assert_int_equal(write(sv[0], part, sizeof(part)),
			 (ssize_t)sizeof(part));
	close(sv[0]);
	deadline = evtimer_new(base, deadline_cb, base);
	evtimer_add(deadline, &tv);
	while (agt.closed == 0 && evtimer_pending(deadline, NULL))
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(agt.closed, 1);
	assert_int_equal(agt.close_err, LINK_E_SHORT);
	event_free(deadline);
	event_base_free(base);
}

/*
 * One limit at every layer: a message of exactly max_message_bytes with
 * the largest envelope (LINK_RCPT_MAX recipients of LINK_ADDR_MAX bytes
 * that JSON must escape) makes a JOB frame within link_job_frame_max(),
 * which the reader accepts and decodes whole.  The old cap (65 MiB for
 * any configuration) refused messages that max_message_bytes allowed.
 */
static void
test_job_frame_at_cap(void **state)
{
	const uint64_t max = 70u * 1024 * 1024; /* over the old 65 MiB cap */
	struct evbuffer *out = evbuffer_new();
	char **rcpt = calloc(LINK_RCPT_MAX, sizeof(*rcpt));
	uint8_t *mime = malloc(max), *buf;
	const uint8_t *payload;
	size_t i, len, plen, consumed;
	struct link_job j;
	int type;

	assert_non_null(rcpt);
	assert_non_null(mime);
	fill(mime, max, 9);
	for (i = 0; i < LINK_RCPT_MAX; i++) {
		/* '"' and '\\' are escaped: each byte costs two. */
		rcpt[i] = malloc(LINK_ADDR_MAX + 1);
		memset(rcpt[i], i % 2 ? '"' : '\\', LINK_ADDR_MAX);
		rcpt[i][LINK_ADDR_MAX] = '\0';
	}
	assert_int_equal(link_encode_job(out, 7, "01HCAP", rcpt[0],
					 (const char *const *)rcpt,
					 LINK_RCPT_MAX, mime, max),
			 0);
	len = evbuffer_get_length(out);
	assert_true(len - 4 <= link_job_frame_max(max));
	assert_true(len - 4 > 65u * 1024 * 1024);
	buf = evbuffer_pullup(out, -1);
	assert_int_equal(link_frame_split(buf, len, link_job_frame_max(max),
					  &type, &payload, &plen, &consumed),
			 1);
	assert_int_equal(type, LINK_JOB);
	assert_int_equal(link_decode_job(payload, plen, &j), 0);
	assert_int_equal(j.nrcpt, LINK_RCPT_MAX);
	assert_int_equal(j.mime_len, max);
	assert_memory_equal(j.mime, mime, max);
	link_job_cleanup(&j);
	/* The cap is as tight as the limit: a smaller one refuses. */
	assert_int_equal(link_frame_split(buf, len, (size_t)max, &type,
					  &payload, &plen, &consumed),
			 LINK_E_TOOBIG);
	/* The largest configurable limit still fits a 32-bit length. */
	assert_true(link_job_frame_max(1073741824) <= UINT32_MAX);
	assert_int_equal(link_job_frame_max(UINT64_MAX), UINT32_MAX);
	for (i = 0; i < LINK_RCPT_MAX; i++)
		free(rcpt[i]);
	free(rcpt);
	free(mime);
	evbuffer_free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_job_frame_at_cap),
	    cmocka_unit_test(test_split_truncated),
	    cmocka_unit_test(test_split_lengths),
	    cmocka_unit_test(test_decode_errors),
	    cmocka_unit_test(test_job_errors),
	    cmocka_unit_test(test_unknown_type),
	    cmocka_unit_test(test_encode_limits),
	    cmocka_unit_test(test_mac),
	    cmocka_unit_test(test_name_valid),
	    cmocka_unit_test(test_conn_handshake),
	    cmocka_unit_test(test_conn_toobig),
	    cmocka_unit_test(test_conn_truncated_eof),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
