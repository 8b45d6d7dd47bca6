/*
 * Unit tests of the one submit path against a real store (SQLite in a
 * temporary folder) and a real event_base: a reply comes once, after the
 * commit; a duplicate key stores nothing; refusals (bad JSON, a built
 * message over max_message_bytes, a stopped path) store nothing and hand
 * nothing on; a store that cannot write is answered 503 `unavailable` and
 * the message is not handed on.  The write failure is real: RLIMIT_FSIZE
 * makes every file write past the first byte fail with EFBIG (SIGXFSZ
 * ignored), as a full disk would.  Every wait runs the loop against a
 * deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "intake/message.h"
#include "intake/submit.h"
#include "store/store.h"

#include <errno.h>
#include <event2/event.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define DEADLINE_MS 20000

static const struct message_limits lim = {
    .max_message_bytes = 4096,
    .max_recipients = 5,
};

struct fixture {
	char dir[64];
	struct event_base *base;
	struct store *st;
	struct submit *sub;
	/* The last reply, copied. */
	int replies;
	int status;
	char id[ID_LEN + 1];
	char code[48];
	/* What was handed on. */
	int durable;
	char durable_id[32];
	/* The claim hooks' calls (test_claim_hooks). */
	int claims, claimed, unclaimed;
	int token; /* its address is the token */
};

static void
noop_cb(evutil_socket_t fd, short what, void *arg)
{
}

/* Runs the loop until cond holds or the deadline passes. */
#define WAIT_FOR(base, cond)                                                   \
	do {                                                                   \
		int64_t dl_ = mono_ms() + DEADLINE_MS;                         \
		struct timeval tv_ = {0, 20 * 1000};                           \
		struct event *t_ =                                             \
		    event_new((base), -1, EV_PERSIST, noop_cb, NULL);          \
		assert_non_null(t_);                                           \
		assert_int_equal(event_add(t_, &tv_), 0);                      \
		while (!(cond) && mono_ms() < dl_)                             \
			event_base_loop((base), EVLOOP_ONCE);                  \
		event_free(t_);                                                \
		assert_true(cond);                                             \
	} while (0)

static void
reply_cb(void *arg, const struct submit_reply *r)
{
	struct fixture *f = arg;

	f->replies++;
	f->status = r->status;
	snprintf(f->id, sizeof(f->id), "%s", r->id != NULL ? r->id : "");
	snprintf(f->code, sizeof(f->code), "%s",
		 r->err != NULL ? r->err->code : "");
	if (r->status >= 400)
		assert_non_null(r->err);
}

static void
durable_cb(void *arg, struct store_message *m)
{
	struct fixture *f = arg;

	/* The reply went out first. */
	assert_int_equal(f->status, 202);
	f->durable++;
	snprintf(f->durable_id, sizeof(f->durable_id), "%s", m->id);
	store_message_free(m);
}

/* Claims every message whose subject is "claim me", as "sending". */
static void *
claim_hook(void *arg, struct store_message *m)
{
	struct fixture *f = arg;

	f->claims++;
	if (m->subject == NULL || strcmp(m->subject, "claim me") != 0)
		return NULL;
	m->status = MSG_SENDING;
	return &f->token;
}

static void
claimed_hook(void *arg, void *token, struct store_message *m)
{
	struct fixture *f = arg;

	assert_ptr_equal(token, &f->token);
	/* After the reply, with what was stored. */
	assert_int_equal(f->status, 202);
	assert_int_equal(m->status, MSG_SENDING);
	f->claimed++;
	store_message_free(m);
}

static void
unclaim_hook(void *arg, void *token)
{
	struct fixture *f = arg;

	assert_ptr_equal(token, &f->token);
	f->unclaimed++;
}

static int
rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	return remove(path);
}

static int
setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/shivneri-submit-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	f->base = event_base_new();
	if (f->base == NULL || store_open(f->dir, NULL, f->base, &f->st) != 0)
		return -1;
	f->sub = submit_new(f->base, f->st, &lim, durable_cb, f);
	if (f->sub == NULL)
		return -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	submit_stop(f->sub);
	store_close(f->st);
	submit_free(f->sub);
	event_base_free(f->base);
	nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static const char good_json[] =
    "{\"from\":\"a@example.com\",\"to\":\"b@example.net\",\"text\":\"hi\"}";

/* Submits JSON with a key in scope and waits for its one reply. */
static void
submit_scoped_wait(struct fixture *f, const char *json, size_t len,
		   const char *idem, const char *scope)
{
	int before = f->replies;

	f->status = 0;
	submit_json(f->sub, json, len, idem, scope, reply_cb, f);
	WAIT_FOR(f->base, f->replies > before);
	assert_int_equal(f->replies, before + 1);
	assert_int_equal(submit_pending(f->sub), 0);
}

/* The same in the anonymous scope. */
static void
submit_and_wait(struct fixture *f, const char *json, size_t len,
		const char *idem)
{
	submit_scoped_wait(f, json, len, idem, NULL);
}

/*
 * Submits json while every file write past the first byte fails with
 * EFBIG (RLIMIT_FSIZE, SIGXFSZ ignored), as a full disk would.
 */
static void
submit_disk_full(struct fixture *f, const char *json, size_t len)
{
	struct rlimit old, one = {1, 1};

	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	one.rlim_max = old.rlim_max;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &one), 0);
	submit_and_wait(f, json, len, NULL);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
}

static void
get_cb(void *arg, int err, const struct store_message *m,
       const struct store_attempt *att, size_t natt)
{
	int *out = arg;

	*out = err == 0 ? 1 : err;
}

/* 1 when the store holds id, else the store's error (-ENOENT). */
static int
stored(struct fixture *f, const char *id)
{
	int got = 0;

	store_get(f->st, id, get_cb, &got);
	WAIT_FOR(f->base, got != 0);
	return got;
}

static void
test_accepted_then_handed_on(void **state)
{
	struct fixture *f = *state;

	submit_and_wait(f, good_json, strlen(good_json), NULL);
	assert_int_equal(f->status, 202);
	assert_true(id_valid(f->id));
	assert_int_equal(f->durable, 1);
	assert_string_equal(f->durable_id, f->id);
	assert_int_equal(stored(f, f->id), 1);
}

static void
test_duplicate_key(void **state)
{
	struct fixture *f = *state;
	char first[ID_LEN + 1];

	submit_and_wait(f, good_json, strlen(good_json), "key-1");
	assert_int_equal(f->status, 202);
	memcpy(first, f->id, sizeof(first));
	submit_and_wait(f, good_json, strlen(good_json), "key-1");
	assert_int_equal(f->status, 200);
	assert_string_equal(f->id, first);
	assert_int_equal(f->durable, 1);
}

/*
 * Keys are per scope (per API key): the same key from two clients is two
 * messages; a retry with the same bytes is a duplicate; the same key with
 * another body is refused 422 and stores nothing; the anonymous scope
 * (NULL) is a third one.  Large bodies are digested on a builder thread.
 */
static void
test_scoped_keys(void **state)
{
	static const char other_json[] =
	    "{\"from\":\"a@example.com\",\"to\":\"c@example.net\","
	    "\"text\":\"other\"}";
	struct fixture *f = *state;
	char a[SUBMIT_SCOPE_SIZE], b[SUBMIT_SCOPE_SIZE];
	char anon[SUBMIT_SCOPE_SIZE], again[SUBMIT_SCOPE_SIZE];
	char first[ID_LEN + 1], *big;
	size_t pad = 70 * 1024, n;

	submit_scope_of_key("key-a-0123456789", a);
	submit_scope_of_key("key-b-0123456789", b);
	submit_scope_of_key(NULL, anon);
	assert_string_equal(anon, STORE_IDEM_SCOPE_ANONYMOUS);
	assert_int_equal(strlen(a), SUBMIT_SCOPE_SIZE - 1);
	assert_string_not_equal(a, b);
	assert_null(strstr(a, "key-a"));
	/* An identity: the same key, the same scope. */
	submit_scope_of_key("key-a-0123456789", again);
	assert_string_equal(again, a);

	submit_scoped_wait(f, good_json, strlen(good_json), "k", a);
	assert_int_equal(f->status, 202);
	memcpy(first, f->id, sizeof(first));
	/* b reuses a's key: b's message is stored, a's id stays a's. */
	submit_scoped_wait(f, other_json, strlen(other_json), "k", b);
	assert_int_equal(f->status, 202);
	assert_string_not_equal(f->id, first);
	assert_int_equal(f->durable, 2);
	submit_scoped_wait(f, good_json, strlen(good_json), "k", a);
	assert_int_equal(f->status, 200);
	assert_string_equal(f->id, first);
	submit_scoped_wait(f, other_json, strlen(other_json), "k", a);
	assert_int_equal(f->status, 422);
	assert_string_equal(f->code, "idempotency_conflict");
	submit_scoped_wait(f, good_json, strlen(good_json), "k", NULL);
	assert_int_equal(f->status, 202);
	assert_int_equal(f->durable, 3);

	/* The digest is of the bytes: a large body, then one space more. */
	big = xmalloc(pad + 256);
	n = (size_t)snprintf(big, 256, "%s", good_json);
	memmove(big + pad, big, n);
	memset(big, ' ', pad);
	submit_scoped_wait(f, big, pad + n, "big", a);
	assert_int_equal(f->status, 202);
	memcpy(first, f->id, sizeof(first));
	submit_scoped_wait(f, big, pad + n, "big", a);
	assert_int_equal(f->status, 200);
	assert_string_equal(f->id, first);
	submit_scoped_wait(f, big + 1, pad + n - 1, "big", a);
	assert_int_equal(f->status, 422);
	assert_int_equal(f->durable, 4);
	free(big);
}

static void
test_refused_json(void **state)
{
	struct fixture *f = *state;

	submit_and_wait(f, "{\"from\":", 8, NULL);
	assert_int_equal(f->status, 400);
	assert_string_equal(f->code, "invalid_json");
	/* A key no front checked is refused here. */
	submit_and_wait(f, good_json, strlen(good_json), "two words");
	assert_int_equal(f->status, 400);
	assert_string_equal(f->code, "invalid_field");
	assert_int_equal(f->durable, 0);
}

/* A message built elsewhere is held to the same limit. */
static void
test_built_too_large(void **state)
{
	struct fixture *f = *state;
	struct store_message *m = xcalloc(1, sizeof(*m));
	char id[ID_LEN + 1];

	id_new(m->id);
	memcpy(id, m->id, sizeof(id));
	m->status = MSG_QUEUED;
	m->mail_from = xstrdup("a@example.com");
	m->rcpt = xcalloc(1, sizeof(*m->rcpt));
	m->rcpt[0] = xstrdup("b@example.net");
	m->nrcpt = 1;
	m->mime_len = lim.max_message_bytes + 1;
	m->mime = xcalloc(1, m->mime_len + 1);
	memset(m->mime, 'x', m->mime_len);
	m->tried = xstrdup("");
	submit_message(f->sub, m, NULL, NULL, reply_cb, f);
	WAIT_FOR(f->base, f->replies == 1);
	assert_int_equal(f->status, 413);
	assert_string_equal(f->code, "too_large");
	assert_int_equal(f->durable, 0);
	assert_int_equal(stored(f, id), -ENOENT);
}

/*
 * submit_json_built (the SendGrid front builds on its own thread): stored
 * and handed on as submit_json's would be, and with the digest of the
 * same JSON a retry through submit_json is a duplicate of it (and of a
 * first through submit_json, a retry through it); another digest is 422
 * and stores nothing.  After submit_stop, 503 and the message freed.
 */
static void
test_json_built(void **state)
{
	static const char other_json[] =
	    "{\"from\":\"a@example.com\",\"to\":\"c@example.net\","
	    "\"text\":\"hi\"}";
	struct fixture *f = *state;
	struct store_message *m = NULL;
	struct message_error err;
	unsigned char dig[SUBMIT_DIGEST_LEN];
	char first[ID_LEN + 1];

	memset(&err, 0, sizeof(err));
	assert_int_equal(
	    message_from_json(good_json, strlen(good_json), &lim, &m, &err), 0);
	submit_json_digest(f->sub, good_json, strlen(good_json), dig);
	submit_json_built(f->sub, m, dig, "built-1", NULL, reply_cb, f);
	WAIT_FOR(f->base, f->replies == 1);
	assert_int_equal(f->status, 202);
	assert_int_equal(f->durable, 1);
	assert_int_equal(stored(f, f->id), 1);
	memcpy(first, f->id, sizeof(first));
	submit_and_wait(f, good_json, strlen(good_json), "built-1");
	assert_int_equal(f->status, 200);
	assert_string_equal(f->id, first);

	/* Digested the other way round: first submit_json, then built. */
	submit_and_wait(f, other_json, strlen(other_json), "built-2");
	assert_int_equal(f->status, 202);
	memcpy(first, f->id, sizeof(first));
	assert_int_equal(
	    message_from_json(other_json, strlen(other_json), &lim, &m, &err),
	    0);
	submit_json_digest(f->sub, other_json, strlen(other_json), dig);
	submit_json_built(f->sub, m, dig, "built-2", NULL, reply_cb, f);
	WAIT_FOR(f->base, f->replies == 4);
	assert_int_equal(f->status, 200);
	assert_string_equal(f->id, first);

	/* The same key with another request's digest. */
	assert_int_equal(
	    message_from_json(good_json, strlen(good_json), &lim, &m, &err), 0);
	submit_json_digest(f->sub, good_json, strlen(good_json), dig);
	submit_json_built(f->sub, m, dig, "built-2", NULL, reply_cb, f);
	WAIT_FOR(f->base, f->replies == 5);
	assert_int_equal(f->status, 422);
	assert_int_equal(f->durable, 2);

	submit_stop(f->sub);
	assert_int_equal(
	    message_from_json(good_json, strlen(good_json), &lim, &m, &err), 0);
	submit_json_built(f->sub, m, NULL, NULL, NULL, reply_cb, f);
	WAIT_FOR(f->base, f->replies == 6);
	assert_int_equal(f->status, 503);
	assert_int_equal(submit_pending(f->sub), 0);
}

/* Large bodies go through a builder thread and come back the same. */
static void
test_builder_thread(void **state)
{
	struct fixture *f = *state;
	size_t pad = 70 * 1024, n;
	char *json = xmalloc(pad + 256);

	/* White space counts for the body, not for the message. */
	n = (size_t)snprintf(json, 256, "%s", good_json);
	memmove(json + pad, json, n);
	memset(json, ' ', pad);
	submit_and_wait(f, json, pad + n, NULL);
	assert_int_equal(f->status, 202);
	assert_int_equal(f->durable, 1);
	free(json);
}

static const char *const mime_rcpt[] = {"b@example.net"};
static const struct message_envelope mime_env = {
    .mail_from = "a@example.com",
    .rcpt = mime_rcpt,
    .nrcpt = 1,
};

/* Raw messages take the same path: small on the loop, large on a builder. */
static void
test_mime(void **state)
{
	static const char raw[] = "From: a@example.com\r\n\r\nhi\r\n";
	struct fixture *f = *state;
	size_t big = 70 * 1024, i;
	char *huge = xmalloc(big + 64);
	int before = f->replies;

	submit_mime(f->sub, raw, strlen(raw), &mime_env, NULL, NULL, reply_cb,
		    f);
	WAIT_FOR(f->base, f->replies == before + 1);
	assert_int_equal(f->status, 202);
	assert_int_equal(f->durable, 1);
	assert_int_equal(stored(f, f->id), 1);
	/* Over max_message_bytes (4096), checked on a builder: 413. */
	memcpy(huge, raw, strlen(raw));
	for (i = strlen(raw); i < big; i++)
		huge[i] = i % 70 == 68 ? '\r' : i % 70 == 69 ? '\n' : 'x';
	submit_mime(f->sub, huge, big, &mime_env, NULL, NULL, reply_cb, f);
	WAIT_FOR(f->base, f->replies == before + 2);
	assert_int_equal(f->status, 413);
	assert_string_equal(f->code, "too_large");
	/* A refusal of the message itself. */
	submit_mime(f->sub, "no header\r\n\r\n", 15, &mime_env, NULL, NULL,
		    reply_cb, f);
	WAIT_FOR(f->base, f->replies == before + 3);
	assert_int_equal(f->status, 400);
	assert_int_equal(f->durable, 1);
	assert_int_equal(submit_pending(f->sub), 0);
	free(huge);
}

/* Raw messages: the digest covers the envelope too. */
static void
test_scoped_mime(void **state)
{
	static const char raw[] = "From: a@example.com\r\n\r\nhi\r\n";
	static const char *const rcpt2[] = {"c@example.net"};
	const struct message_envelope env2 = {
	    .mail_from = "a@example.com", .rcpt = rcpt2, .nrcpt = 1};
	struct fixture *f = *state;

	submit_mime(f->sub, raw, strlen(raw), &mime_env, "m", NULL, reply_cb,
		    f);
	WAIT_FOR(f->base, f->replies == 1);
	assert_int_equal(f->status, 202);
	submit_mime(f->sub, raw, strlen(raw), &mime_env, "m", NULL, reply_cb,
		    f);
	WAIT_FOR(f->base, f->replies == 2);
	assert_int_equal(f->status, 200);
	submit_mime(f->sub, raw, strlen(raw), &env2, "m", NULL, reply_cb, f);
	WAIT_FOR(f->base, f->replies == 3);
	assert_int_equal(f->status, 422);
	assert_int_equal(f->durable, 1);
}

static void
test_stopped(void **state)
{
	struct fixture *f = *state;

	submit_stop(f->sub);
	submit_and_wait(f, good_json, strlen(good_json), NULL);
	assert_int_equal(f->status, 503);
	assert_string_equal(f->code, "unavailable");
	assert_int_equal(f->durable, 0);
}

/*
 * Defect 2, intake side: a commit that fails is answered 503 and nothing
 * is handed on (before the submit path, the failure was only logged by
 * the front; now it must also keep the dispatcher out of it).  Then the
 * disk comes back and the next message is stored.
 */
static void
test_store_write_fails(void **state)
{
	struct fixture *f = *state;
	char *json = xmalloc(4096);
	int n;

	/* A message big enough that its commit writes past byte 1. */
	n = snprintf(json, 4096,
		     "{\"from\":\"a@example.com\",\"to\":\"b@example.net\","
		     "\"text\":\"%0*d\"}",
		     3000, 7);
	assert_true(n > 0 && n < 4096);
	submit_disk_full(f, json, (size_t)n);
	assert_int_equal(f->status, 503);
	assert_string_equal(f->code, "unavailable");
	assert_int_equal(f->durable, 0);
	/*
	 * The store may take a moment to call itself healthy again; poll
	 * until a submission is stored, each one answered once.
	 */
	{
		int64_t dl = mono_ms() + DEADLINE_MS;

		do
			submit_and_wait(f, json, (size_t)n, NULL);
		while (f->status == 503 && mono_ms() < dl);
	}
	assert_int_equal(f->status, 202);
	assert_int_equal(f->durable, 1);
	free(json);
}

/*
 * The claim hooks: each stored message is offered once before the store
 * takes it; a claimed one comes back to claimed (not durable) after its
 * reply, stored as the hook set it; a claimed duplicate stores nothing and
 * comes back to unclaim; an unclaimed one takes the ordinary way.
 */
static void
test_claim_hooks(void **state)
{
	static const char claim_json[] = "{\"from\":\"a@example.com\","
					 "\"to\":\"b@example.net\","
					 "\"subject\":\"claim me\","
					 "\"text\":\"hi\"}";
	struct fixture *f = *state;

	submit_set_claim(
	    f->sub,
	    &(struct submit_claim){claim_hook, claimed_hook, unclaim_hook, f});
	submit_and_wait(f, claim_json, strlen(claim_json), "key-c");
	assert_int_equal(f->status, 202);
	assert_int_equal(f->claims, 1);
	assert_int_equal(f->claimed, 1);
	assert_int_equal(f->durable, 0);
	assert_int_equal(stored(f, f->id), 1);
	submit_and_wait(f, claim_json, strlen(claim_json), "key-c");
	assert_int_equal(f->status, 200);
	assert_int_equal(f->claims, 2);
	assert_int_equal(f->unclaimed, 1);
	assert_int_equal(f->claimed, 1);
	submit_and_wait(f, good_json, strlen(good_json), NULL);
	assert_int_equal(f->status, 202);
	assert_int_equal(f->claims, 3);
	assert_int_equal(f->durable, 1);
	assert_int_equal(f->claimed, 1);
	assert_int_equal(f->unclaimed, 1);
}

/* A claimed message the store cannot write comes back to unclaim. */
static void
test_claim_store_fails(void **state)
{
	static const char head[] = "{\"from\":\"a@example.com\","
				   "\"to\":\"b@example.net\","
				   "\"subject\":\"claim me\",\"text\":\"";
	struct fixture *f = *state;
	char *json = xmalloc(4096);
	int n;

	submit_set_claim(
	    f->sub,
	    &(struct submit_claim){claim_hook, claimed_hook, unclaim_hook, f});
	n = snprintf(json, 4096, "%s%0*d\"}", head, 3000, 7);
	assert_true(n > 0 && n < 4096);
	submit_disk_full(f, json, (size_t)n);
	assert_int_equal(f->status, 503);
	assert_int_equal(f->claims, 1);
	assert_int_equal(f->unclaimed, 1);
	assert_int_equal(f->claimed, 0);
	assert_int_equal(f->durable, 0);
	free(json);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_accepted_then_handed_on, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_duplicate_key, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_refused_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_built_too_large, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_builder_thread, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_mime, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scoped_keys, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_scoped_mime, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_json_built, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stopped, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_store_write_fails, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_claim_hooks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_claim_store_fails, setup,
					    teardown),
	};
	int rc;

	message_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	message_shutdown();
	return rc;
}
