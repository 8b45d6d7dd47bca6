/*
 * Unit tests of how the ses connector reads SES's answers to a send
 * (ses_read_answer), as the failover depends on it: a refusal of the
 * message (400 with SES's type, 413) is permanent and tried nowhere else;
 * the account's errors take the provider down; a 4xx that is not SES's
 * own (a proxy's 404, a load balancer's 408, a 405 of a wrong endpoint)
 * says nothing of the message and must move it to another provider.
 * Until 2026-11-30 every such 4xx was permanent: a provider behind a
 * misrouted proxy failed every message it took, while another was up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/conn_ses.h"
#include "agent/http_multi.h"
#include "common/buf.h"
#include "link/link.h"

#include <string.h>

/* The class ses_read_answer gives a status and body; detail checked. */
static int
classify(long status, const char *body)
{
	struct connector_result r;
	struct ses_words w;
	struct http_result res;
	struct buf b;
	char storage[1024];

	buf_init_fixed(&b, storage, sizeof(storage));
	assert_int_equal(buf_appends(&b, body), 0);
	memset(&res, 0, sizeof(res));
	res.code = CURLE_OK;
	res.status = status;
	res.sent = true;
	res.error = "";
	res.body = &b;
	ses_read_answer(&res, &r, &w);
	assert_non_null(r.detail);
	return r.outcome;
}

static void
test_message_refusals_are_permanent(void **state)
{
	(void)state;
	assert_int_equal(classify(400, "{\"__type\":\"MessageRejected\","
				       "\"message\":\"Email address is not "
				       "verified.\"}"),
			 OUTCOME_PERMANENT);
	assert_int_equal(classify(400, "{\"__type\":\"BadRequestException\","
				       "\"message\":\"Illegal address\"}"),
			 OUTCOME_PERMANENT);
	/* SES's size limit, not the message's fault: another may take it. */
	assert_int_equal(classify(413, "too large"), OUTCOME_TOO_LARGE);
}

static void
test_account_and_throttle_by_type(void **state)
{
	(void)state;
	assert_int_equal(classify(400, "{\"__type\":\"SendingPausedException\","
				       "\"message\":\"paused\"}"),
			 OUTCOME_ACCOUNT);
	assert_int_equal(classify(404, "{\"__type\":\"NotFoundException\","
				       "\"message\":\"no such set\"}"),
			 OUTCOME_ACCOUNT);
	assert_int_equal(classify(400,
				  "{\"__type\":\"TooManyRequestsException\","
				  "\"message\":\"slow down\"}"),
			 OUTCOME_THROTTLED);
	assert_int_equal(classify(503, "{\"__type\":\"ServiceUnavailable\"}"),
			 OUTCOME_TRANSIENT);
}

static void
test_other_4xx_move_the_message(void **state)
{
	(void)state;
	/* A proxy's or a wrong endpoint's answers: no SES type. */
	assert_int_equal(classify(404, "<html>Not Found</html>"),
			 OUTCOME_TRANSIENT);
	assert_int_equal(classify(405, ""), OUTCOME_TRANSIENT);
	assert_int_equal(classify(408, "Request Timeout"), OUTCOME_TRANSIENT);
	assert_int_equal(classify(409, "{}"), OUTCOME_TRANSIENT);
	assert_int_equal(classify(421, "Misdirected Request"),
			 OUTCOME_TRANSIENT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_message_refusals_are_permanent),
	    cmocka_unit_test(test_account_and_throttle_by_type),
	    cmocka_unit_test(test_other_4xx_move_the_message),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
