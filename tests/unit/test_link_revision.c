/*
 * Revision 2 of the agent protocol (link.h): the outcome classes
 * throttled, account and ambiguous and RESULT's retry_after_ms round trip;
 * peers of revision 1 still interoperate both ways.  An old agent's RESULT
 * (no retry_after_ms) and an old server's CHALLENGE (no revision) decode;
 * an old server's decoder (simulated by the frames it would refuse: an
 * outcome name it does not know) never sees a new class, because an agent
 * downgrades it to transient for a revision-1 server.  Revision 3 adds
 * too_large (permanent to an older server) and HELLO's optional
 * max_message_bytes; revision 4 adds needs_smtputf8 (permanent to an older
 * server); revision 5 adds HELLO's revision (absent from an older agent).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "link/link.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* out's single frame: its payload copied, NUL-terminated, into buf. */
static int
take(struct evbuffer *out, char *buf, size_t bufsz, size_t *n)
{
	size_t len = evbuffer_get_length(out), plen, consumed;
	const uint8_t *payload;
	uint8_t *b = evbuffer_pullup(out, -1);
	int type;

	assert_int_equal(link_frame_split(b, len, UINT32_MAX, &type, &payload,
					  &plen, &consumed),
			 1);
	assert_true(plen < bufsz);
	memcpy(buf, payload, plen);
	buf[plen] = '\0';
	*n = plen;
	evbuffer_drain(out, len);
	return type;
}

static void
test_classes_roundtrip(void **state)
{
	static const int classes[] = {OUTCOME_THROTTLED, OUTCOME_ACCOUNT,
				      OUTCOME_AMBIGUOUS};
	struct evbuffer *out = evbuffer_new();
	struct link_result r, r2;
	char buf[2048];
	size_t i, n;

	for (i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		memset(&r, 0, sizeof(r));
		r.job_id = 7;
		snprintf(r.message_id, sizeof(r.message_id), "01HXYZ");
		r.outcome = classes[i];
		snprintf(r.detail, sizeof(r.detail), "429 too many");
		r.retry_after_ms = r.outcome == OUTCOME_THROTTLED ? 1500 : 0;
		assert_int_equal(link_encode_result(out, &r), 0);
		assert_int_equal(take(out, buf, sizeof(buf), &n), LINK_RESULT);
		/* Absent when zero: an old server sees only what it knows. */
		assert_true((strstr(buf, "\"retry_after_ms\"") != NULL) ==
			    (r.retry_after_ms != 0));
		assert_int_equal(
		    link_decode_result((const uint8_t *)buf, n, &r2), 0);
		assert_memory_equal(&r, &r2, sizeof(r));
	}
	/* Over a day is refused by the encoder. */
	r.retry_after_ms = LINK_RETRY_AFTER_MAX_MS + 1;
	assert_int_equal(link_encode_result(out, &r), LINK_E_FIELD);
	evbuffer_free(out);
}

/* A RESULT as a peer may send it, and what the decoder makes of it. */
struct result_case {
	const char *json;
	int rc;
	int outcome;        /* when rc is 0 */
	int retry_after_ms; /* likewise */
};

#define RESULT_M1 "{\"job_id\":1,\"message_id\":\"m1\","

static void
test_old_agent_result(void **state)
{
	static const struct result_case cases[] = {
	    /* A revision-1 agent's RESULT: no retry_after_ms. */
	    {RESULT_M1 "\"outcome\":\"transient\"}", 0, OUTCOME_TRANSIENT, 0},
	    {RESULT_M1 "\"outcome\":\"throttled\","
		       "\"retry_after_ms\":86400000}",
	     0, OUTCOME_THROTTLED, 86400000},
	    /* Out of range or mistyped: refused. */
	    {RESULT_M1 "\"outcome\":\"throttled\","
		       "\"retry_after_ms\":86400001}",
	     LINK_E_FIELD, 0, 0},
	    {RESULT_M1 "\"outcome\":\"throttled\","
		       "\"retry_after_ms\":-1}",
	     LINK_E_FIELD, 0, 0},
	    {RESULT_M1 "\"outcome\":\"throttled\","
		       "\"retry_after_ms\":\"5\"}",
	     LINK_E_FIELD, 0, 0},
	    {RESULT_M1 "\"outcome\":\"slow\"}", LINK_E_FIELD, 0, 0},
	};
	struct link_result r;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct result_case *c = &cases[i];

		assert_int_equal(link_decode_result((const uint8_t *)c->json,
						    strlen(c->json), &r),
				 c->rc);
		if (c->rc != 0)
			continue;
		assert_int_equal(r.outcome, c->outcome);
		assert_int_equal(r.retry_after_ms, c->retry_after_ms);
	}
}

static void
test_challenge_revision(void **state)
{
	struct evbuffer *out = evbuffer_new();
	struct link_challenge c = {0}, c2;
	static const char old[] =
	    "{\"version\":1,\"nonce\":\"0123456789abcdef0123456789abcdef"
	    "0123456789abcdef0123456789abcdef\"}";
	char buf[512];
	size_t n;

	/* An old server's CHALLENGE: revision 1. */
	assert_int_equal(
	    link_decode_challenge((const uint8_t *)old, strlen(old), &c2), 0);
	assert_int_equal(c2.revision, 1);
	/* Ours says 5; an old agent ignores the unknown key. */
	c.version = LINK_VERSION;
	c.revision = LINK_REVISION;
	assert_int_equal(link_encode_challenge(out, &c), 0);
	assert_int_equal(take(out, buf, sizeof(buf), &n), LINK_CHALLENGE);
	assert_non_null(strstr(buf, "\"revision\":5"));
	assert_int_equal(link_decode_challenge((const uint8_t *)buf, n, &c2),
			 0);
	assert_int_equal(c2.revision, 5);
	/* The wire version is unchanged, so old peers still shake hands. */
	assert_int_equal(c2.version, 1);
	evbuffer_free(out);
}

/*
 * Revision 5: HELLO says the agent's revision.  An older agent's HELLO
 * has none (1: it refuses any non-ASCII address without SMTPUTF8); ours
 * says 5, and a server older than that ignores the key.
 */
static void
test_hello_revision(void **state)
{
	struct evbuffer *out = evbuffer_new();
	struct link_hello h = {0}, h2;
	static const char old[] =
	    "{\"version\":1,\"name\":\"a\",\"type\":\"smtp\",\"pid\":7,"
	    "\"nonce\":\"0123456789abcdef0123456789abcdef"
	    "0123456789abcdef0123456789abcdef\"}";
	char buf[512];
	size_t n;

	(void)state;
	assert_int_equal(
	    link_decode_hello((const uint8_t *)old, strlen(old), &h2), 0);
	assert_int_equal(h2.revision, 1);
	h.version = LINK_VERSION;
	h.revision = LINK_REVISION;
	h.priority = -1;
	snprintf(h.name, sizeof(h.name), "a");
	snprintf(h.type, sizeof(h.type), "smtp");
	assert_int_equal(link_encode_hello(out, &h), 0);
	assert_int_equal(take(out, buf, sizeof(buf), &n), LINK_HELLO);
	assert_non_null(strstr(buf, "\"revision\":5"));
	assert_int_equal(link_decode_hello((const uint8_t *)buf, n, &h2), 0);
	assert_int_equal(h2.revision, LINK_REVISION_ALABELS);
	evbuffer_free(out);
}

/* The revision that brought each outcome, and what an older server hears. */
static const struct {
	int outcome;
	uint32_t since;
	int older; /* what a server before `since` hears */
} introduced[] = {
    {OUTCOME_THROTTLED, 2, OUTCOME_TRANSIENT},
    {OUTCOME_ACCOUNT, 2, OUTCOME_TRANSIENT},
    {OUTCOME_AMBIGUOUS, 2, OUTCOME_TRANSIENT},
    /* What a server before it made of a 413 or a 552: permanent. */
    {OUTCOME_TOO_LARGE, 3, OUTCOME_PERMANENT},
    /* What a server before it made of a smarthost without SMTPUTF8. */
    {OUTCOME_NEEDS_SMTPUTF8, 4, OUTCOME_PERMANENT},
};

static void
test_downgrade_for_old_server(void **state)
{
	uint32_t rev;
	size_t i;
	int o;

	(void)state;
	for (o = 0; o <= OUTCOME_MAX; o++) {
		uint32_t since = 1;
		int older = o;

		for (i = 0; i < sizeof(introduced) / sizeof(introduced[0]); i++)
			if (introduced[i].outcome == o) {
				since = introduced[i].since;
				older = introduced[i].older;
			}
		for (rev = 1; rev <= LINK_REVISION; rev++)
			assert_int_equal(link_outcome_for_revision(o, rev),
					 rev < since ? older : o);
	}
	/* Every outcome has a name, the newest included. */
	assert_string_equal(outcome_name(OUTCOME_MAX), "needs_smtputf8");
	assert_int_equal(outcome_parse("needs_smtputf8"),
			 OUTCOME_NEEDS_SMTPUTF8);
}

/*
 * Revision 3: RESULT's too_large round-trips; HELLO's max_message_bytes
 * is optional (an older agent's HELLO decodes with 0: the server's
 * limit), written only when set, and refused out of range or mistyped.
 */
static void
test_too_large_and_hello_limit(void **state)
{
	static const char nonce[] = "0123456789abcdef0123456789abcdef"
				    "0123456789abcdef0123456789abcdef";
	static const struct {
		uint64_t value;
		const char *written; /* NULL: not written at all */
	} limits[] = {{0, NULL}, {20000000, "\"max_message_bytes\":20000000"}};
	static const char *const bad_limits[] = {"0", "\"5\"", "-1"};
	struct evbuffer *out = evbuffer_new();
	struct link_result r, r2;
	struct link_hello hl, hl2;
	char buf[2048], js[512];
	size_t n, i;

	memset(&r, 0, sizeof(r));
	r.job_id = 3;
	snprintf(r.message_id, sizeof(r.message_id), "01HXYZ");
	r.outcome = OUTCOME_TOO_LARGE;
	snprintf(r.detail, sizeof(r.detail), "413 Payload Too Large");
	assert_int_equal(link_encode_result(out, &r), 0);
	assert_int_equal(take(out, buf, sizeof(buf), &n), LINK_RESULT);
	assert_non_null(strstr(buf, "\"outcome\":\"too_large\""));
	assert_int_equal(link_decode_result((const uint8_t *)buf, n, &r2), 0);
	assert_memory_equal(&r, &r2, sizeof(r));

	memset(&hl, 0, sizeof(hl));
	hl.version = LINK_VERSION;
	snprintf(hl.name, sizeof(hl.name), "sp");
	snprintf(hl.type, sizeof(hl.type), "sparkpost");
	hl.priority = -1;
	/* Unset (an older agent's HELLO), then set. */
	for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		hl.max_message_bytes = limits[i].value;
		assert_int_equal(link_encode_hello(out, &hl), 0);
		assert_int_equal(take(out, buf, sizeof(buf), &n), LINK_HELLO);
		if (limits[i].written == NULL)
			assert_null(strstr(buf, "max_message_bytes"));
		else
			assert_non_null(strstr(buf, limits[i].written));
		assert_int_equal(
		    link_decode_hello((const uint8_t *)buf, n, &hl2), 0);
		assert_int_equal(hl2.max_message_bytes, limits[i].value);
	}
	/* Out of range or mistyped: refused by the decoder. */
	for (i = 0; i < sizeof(bad_limits) / sizeof(bad_limits[0]); i++) {
		snprintf(js, sizeof(js),
			 "{\"version\":1,\"name\":\"sp\",\"type\":\"smtp\","
			 "\"nonce\":\"%s\",\"pid\":1,\"max_message_bytes\":%s}",
			 nonce, bad_limits[i]);
		assert_int_equal(
		    link_decode_hello((const uint8_t *)js, strlen(js), &hl2),
		    LINK_E_FIELD);
	}
	evbuffer_free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_classes_roundtrip),
	    cmocka_unit_test(test_old_agent_result),
	    cmocka_unit_test(test_challenge_revision),
	    cmocka_unit_test(test_hello_revision),
	    cmocka_unit_test(test_downgrade_for_old_server),
	    cmocka_unit_test(test_too_large_and_hello_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
