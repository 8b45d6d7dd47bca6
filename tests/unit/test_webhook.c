/*
 * The webhook's pieces that need no network: the Shivneri-Signature
 * value against known answers (computed with Python's hmac), the backoff's
 * bounds, the body's shape (dispatch/outbox.h), and the configuration's
 * webhook keys (a bad URL refused without being repeated, the secret's
 * default beside the data).  The sending itself is in
 * tests/integration/test_92_webhooks.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/config.h"
#include "common/util.h"
#include "dispatch/events.h"
#include "dispatch/outbox.h"
#include "server/webhook.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
test_sign_known_answers(void **state)
{
	const char *key = "0123456789abcdef0123456789abcdef";
	char sig[WEBHOOK_SIG_MAX];

	assert_int_equal(webhook_sign(key, strlen(key), 1700000000, "{\"a\":1}",
				      7, sig, sizeof(sig)),
			 0);
	assert_string_equal(sig, "t=1700000000,v1=f05f2539e3ae1c49aec5f8cfdad"
				 "75ef6b06480b133973ffbb7ec9e18827af177");
	/* An empty body signs "T." alone. */
	assert_int_equal(webhook_sign("k", 1, 0, "", 0, sig, sizeof(sig)), 0);
	assert_string_equal(sig, "t=0,v1=6b4a4b8b3c40f1e8f53a3d36682e5f99f7ad"
				 "2ac1df1c93dfe336f329167641e7");
	/* A short output buffer is refused, not truncated. */
	assert_int_equal(webhook_sign("k", 1, 0, "", 0, sig, 10), -EINVAL);
}

static void
test_backoff_bounds(void **state)
{
	int64_t w;
	int i, a;

	for (i = 0; i < 200; i++) {
		w = webhook_backoff_ms(1, 3600000);
		assert_true(w >= 500 && w <= 1000);
		w = webhook_backoff_ms(4, 3600000);
		assert_true(w >= 4000 && w <= 8000);
		w = webhook_backoff_ms(1000, 3600000);
		assert_true(w >= 1800000 && w <= 3600000);
		/* A cap under the first wait caps it. */
		w = webhook_backoff_ms(1, 400);
		assert_true(w >= 200 && w <= 400);
	}
	for (a = -1; a < 70; a++)
		assert_true(webhook_backoff_ms(a, 60000) <= 60000);
}

static void
test_body_shape(void **state)
{
	struct ev_rec r;
	struct buf b;
	json_t *o;
	const char *id;

	memset(&r, 0, sizeof(r));
	r.seq = 77;
	r.at_ms = 1700000000123LL;
	r.type = EV_MSG_FAILED;
	snprintf(r.id, sizeof(r.id), "01JDQ8X0000000000000000000");
	snprintf(r.provider, sizeof(r.provider), "ses");
	r.outcome = -1;
	r.attempt = 3;
	r.text = "max_attempts reached: \"quoted\"";
	buf_init(&b, 4096);
	assert_int_equal(outbox_body(&r, &b), 0);
	o = json_loads(b.p, 0, NULL);
	assert_non_null(o);
	id = json_string_value(json_object_get(o, "webhook_id"));
	assert_non_null(id);
	assert_true(id_valid(id));
	assert_null(json_object_get(o, "seq"));
	assert_string_equal(json_string_value(json_object_get(o, "type")),
			    "message.failed");
	assert_string_equal(json_string_value(json_object_get(o, "id")), r.id);
	assert_string_equal(json_string_value(json_object_get(o, "error")),
			    r.text);
	assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 3);
	assert_string_equal(json_string_value(json_object_get(o, "at")),
			    "2023-11-14T22:13:20.123Z");
	json_decref(o);

	/* A cap too small appends nothing. */
	buf_cleanup(&b);
	buf_init(&b, 40);
	assert_int_equal(outbox_body(&r, &b), -E2BIG);
	assert_int_equal(b.len, 0);
	buf_cleanup(&b);
}

static void
test_url_check(void **state)
{
	static const char *const good[] = {
	    "http://127.0.0.1:8080/hook",
	    "https://hooks.example.com",
	    "https://hooks.example.com/a/b?token=x&y=1",
	    "http://[::1]:9/x",
	};
	static const char *const bad[] = {
	    "ftp://h/x",      "http://",      "https:///x",    "http://:80/x",
	    "http://u:p@h/x", "http://h/a b", "http://h/\x01", "h/x",
	    "http://h/\\x",
	};
	char *longurl;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(config_webhook_url_ok(good[i]));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(config_webhook_url_ok(bad[i]));
	longurl = xmalloc(2100);
	memset(longurl, 'a', 2099);
	memcpy(longurl, "http://h/", 9);
	longurl[2099] = '\0';
	assert_false(config_webhook_url_ok(longurl));
	free(longurl);
}

static void
test_config_keys(void **state)
{
	struct config_errors errs = {0};
	struct config *cfg = NULL;
	size_t i;
	bool named = false;

	assert_int_equal(config_load_string("[server]\ndata_dir = /tmp/wh\n",
					    "t.ini", &cfg, &errs),
			 0);
	assert_null(cfg->webhook_url);
	assert_null(cfg->webhook_secret_file); /* no webhooks, no secret */
	config_free(cfg);

	assert_int_equal(config_load_string("[server]\ndata_dir = /tmp/wh\n"
					    "webhook_url = http://h:1/x\n"
					    "webhook_max_outbox = 50\n",
					    "t.ini", &cfg, &errs),
			 0);
	assert_string_equal(cfg->webhook_secret_file, "/tmp/wh/webhook.secret");
	assert_int_equal(cfg->webhook_max_outbox, 50);
	assert_int_equal(cfg->webhook_timeout_ms, 10000);
	assert_int_equal(cfg->webhook_max_age_s, 259200);
	config_free(cfg);

	assert_int_equal(config_load_string("[server]\ndata_dir = /tmp/wh\n"
					    "webhook_url = http://h:1/x\n"
					    "webhook_max_age_s = 60\n",
					    "t.ini", &cfg, &errs),
			 0);
	assert_int_equal(cfg->webhook_max_age_s, 60);
	config_free(cfg);
	cfg = NULL;
	assert_int_equal(config_load_string("[server]\n"
					    "webhook_max_age_s = 59\n",
					    "t.ini", &cfg, &errs),
			 -EINVAL);
	assert_int_equal(errs.n, 1);
	assert_non_null(strstr(errs.msg[0], "webhook_max_age_s"));
	config_errors_cleanup(&errs);
	assert_int_equal(config_load_string("[server]\n"
					    "webhook_max_age_s = 31536001\n",
					    "t.ini", &cfg, &errs),
			 -EINVAL);
	assert_int_equal(errs.n, 1);
	config_errors_cleanup(&errs);
	assert_null(cfg);

	cfg = NULL;
	assert_int_equal(config_load_string("[server]\n"
					    "webhook_url = http://u:TOKEN@h/\n"
					    "webhook_max_in_flight = 0\n",
					    "t.ini", &cfg, &errs),
			 -EINVAL);
	assert_null(cfg);
	for (i = 0; i < errs.n; i++) {
		assert_null(strstr(errs.msg[i], "TOKEN"));
		if (strstr(errs.msg[i], "t.ini:2: webhook_url") != NULL)
			named = true;
	}
	assert_true(named);
	assert_int_equal(errs.n, 2);
	config_errors_cleanup(&errs);
}

/* The sources test_outbox_clock steps by hand. */
static int64_t fake_wall, fake_mono;

static int64_t
wall_src(void)
{
	return fake_wall;
}

static int64_t
mono_src(void)
{
	return fake_mono;
}

/*
 * The outbox's clock follows the monotonic one from the wall clock's
 * reading at init: a wall clock stepped back an hour or forward a day
 * moves it by the time that passed, not by the step.  With the wall
 * clock, a retry 2 s away waited an hour more, or came due (with every
 * lease) at once.
 */
static void
test_outbox_clock(void **state)
{
	struct outbox_clock c;

	(void)state;
	fake_wall = 1700000000000;
	fake_mono = 5000;
	outbox_clock_init(&c, wall_src, mono_src);
	assert_int_equal(outbox_clock_now(&c), 1700000000000);
	fake_mono += 1500;
	fake_wall -= 3600 * 1000; /* stepped back an hour */
	assert_int_equal(outbox_clock_now(&c), 1700000001500);
	fake_mono += 500;
	fake_wall += 86400 * 1000; /* and forward a day */
	assert_int_equal(outbox_clock_now(&c), 1700000002000);
	/* The defaults: the real clocks, close to the wall clock. */
	outbox_clock_init(&c, NULL, NULL);
	assert_true(outbox_clock_now(&c) - now_ms() < 1000);
	assert_true(now_ms() - outbox_clock_now(&c) < 1000);
}

/*
 * The claim's age cut-off after the wall clock stepped forward by more
 * than webhook_max_age_s (a VM resumed, a clock set by NTP long after the
 * start): it was the wall clock less the age, after the claim's own now
 * (the outbox clock, which never steps), and the store refuses such a
 * claim (-EINVAL), so no webhook was sent again until a restart.
 */
static void
test_expire_before_clock_steps(void **state)
{
	struct outbox_clock c;
	int64_t max_age = 60 * 1000, cut;

	(void)state;
	fake_wall = 1700000000000;
	fake_mono = 5000;
	outbox_clock_init(&c, wall_src, mono_src);
	/* Steady clocks: the wall clock less the age. */
	fake_mono += 1000;
	fake_wall += 1000;
	assert_int_equal(outbox_clock_expire_before(&c, max_age),
			 1700000001000 - max_age);
	/* Stepped back: still the wall clock's, before the claim's now. */
	fake_wall -= 3600 * 1000;
	cut = outbox_clock_expire_before(&c, max_age);
	assert_int_equal(cut, 1700000001000 - 3600 * 1000 - max_age);
	/* Stepped forward two days: never after the claim's now. */
	fake_wall += 3600 * 1000 + 2 * 86400 * 1000;
	cut = outbox_clock_expire_before(&c, max_age);
	assert_true(cut <= outbox_clock_now(&c));
	fake_mono += 500;
	fake_wall += 500;
	assert_true(outbox_clock_expire_before(&c, max_age) <=
		    outbox_clock_now(&c));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sign_known_answers),
	    cmocka_unit_test(test_backoff_bounds),
	    cmocka_unit_test(test_body_shape),
	    cmocka_unit_test(test_outbox_clock),
	    cmocka_unit_test(test_expire_before_clock_steps),
	    cmocka_unit_test(test_url_check),
	    cmocka_unit_test(test_config_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
