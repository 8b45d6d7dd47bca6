/*
 * SigV4 against AWS's published test suite: each case folder under
 * tests/unit/data/sigv4/ (found through $SHIVNERI_SRC) holds a request
 * (.req) and the canonical request, string to sign and Authorization
 * header AWS computed for it; all three must match byte for byte.  Every
 * case of the suite applies: the normalize-path ones because SES
 * normalises paths, both session-token ones because the .req given is
 * exactly what is signed.  One more case, from the suite's SOURCE.md, is
 * an SES v2 SendEmail request with its botocore signature.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "agent/sigv4.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADERS 32

static const struct sigv4_credentials suite_cr = {
    .access_key_id = "AKIDEXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    .region = "us-east-1",
    .service = "service",
};

static char *
slurp(const char *name, const char *ext)
{
	const char *src = getenv("SHIVNERI_SRC");
	char *path = xasprintf("%s/tests/unit/data/sigv4/%s/%s.%s",
			       src != NULL ? src : ".", name, name, ext);
	FILE *f = fopen(path, "rb");
	char *data;
	long n;

	if (f == NULL)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	data = calloc(1, (size_t)n + 1);
	assert_non_null(data);
	assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	free(path);
	return data;
}

/* A parsed .req; every pointer is into text, which the parse cuts up. */
struct parsed {
	char *method, *path, *query;
	struct sigv4_header h[MAX_HEADERS];
	size_t nh;
	const char *body;
};

/*
 * "METHOD TARGET HTTP/1.1" (the target may hold spaces, so it runs to the
 * last space), header lines, and after a blank line the body.  A line that
 * starts with a blank continues the previous header: the suite treats it
 * as one more value of that name.
 */
static void
parse_req(char *text, struct parsed *r)
{
	char *line = text, *next, *sp;

	memset(r, 0, sizeof(*r));
	r->body = "";
	next = strchr(line, '\n');
	assert_non_null(next);
	*next++ = '\0';
	sp = strchr(line, ' ');
	assert_non_null(sp);
	*sp = '\0';
	r->method = line;
	r->path = sp + 1;
	sp = strrchr(r->path, ' ');
	assert_non_null(sp);
	*sp = '\0';
	r->query = strchr(r->path, '?');
	if (r->query != NULL)
		*r->query++ = '\0';
	for (line = next; line != NULL && *line != '\0'; line = next) {
		char *colon;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (*line == '\0') {
			r->body = next != NULL ? next : "";
			break;
		}
		assert_true(r->nh < MAX_HEADERS);
		if (*line == ' ' || *line == '\t') {
			assert_true(r->nh > 0);
			r->h[r->nh].name = r->h[r->nh - 1].name;
			r->h[r->nh++].value = line;
			continue;
		}
		colon = strchr(line, ':');
		assert_non_null(colon);
		*colon = '\0';
		r->h[r->nh].name = line;
		r->h[r->nh++].value = colon + 1;
	}
}

static void
run_case(const char *name)
{
	char *req = slurp(name, "req"), *creq = slurp(name, "creq");
	char *sts = slurp(name, "sts"), *authz = slurp(name, "authz");
	struct sigv4_result res;
	struct sigv4_request r;
	struct parsed p;

	parse_req(req, &p);
	r = (struct sigv4_request){
	    .method = p.method,
	    .path = p.path,
	    .query = p.query,
	    .headers = p.h,
	    .nheaders = p.nh,
	    .body = p.body,
	    .body_len = strlen(p.body),
	};
	sigv4_result_init(&res);
	assert_int_equal(sigv4_sign(&r, &suite_cr, "20150830T123600Z", &res),
			 0);
	assert_string_equal(res.creq.p, creq);
	assert_string_equal(res.sts.p, sts);
	assert_string_equal(res.authz.p, authz);
	sigv4_result_cleanup(&res);
	free(req);
	free(creq);
	free(sts);
	free(authz);
}

static const char *const cases[] = {
    "get-header-key-duplicate",
    "get-header-value-multiline",
    "get-header-value-order",
    "get-header-value-trim",
    "get-relative",
    "get-relative-relative",
    "get-slash",
    "get-slash-dot-slash",
    "get-slash-pointless-dot",
    "get-slashes",
    "get-space",
    "get-unreserved",
    "get-utf8",
    "get-vanilla",
    "get-vanilla-empty-query-key",
    "get-vanilla-query",
    "get-vanilla-query-order-key",
    "get-vanilla-query-order-key-case",
    "get-vanilla-query-order-value",
    "get-vanilla-query-unreserved",
    "get-vanilla-utf8-query",
    "post-header-key-case",
    "post-header-key-sort",
    "post-header-value-case",
    "post-sts-header-after",
    "post-sts-header-before",
    "post-vanilla",
    "post-vanilla-empty-query-value",
    "post-vanilla-query",
    "post-x-www-form-urlencoded",
    "post-x-www-form-urlencoded-parameters",
};

static void
test_suite(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("case %s\n", cases[i]);
		run_case(cases[i]);
	}
}

/* The SES v2 SendEmail case of the suite's SOURCE.md (botocore's). */
static void
test_ses_send_email(void **state)
{
	static const char body[] =
	    "{\"FromEmailAddress\": \"from@example.com\", \"Destination\": "
	    "{\"ToAddresses\": [\"to@example.com\"]}, \"Content\": {\"Raw\": "
	    "{\"Data\": \"RnJvbTogYQ0KDQpoaQ==\"}}, \"EmailTags\": "
	    "[{\"Name\": \"t\", \"Value\": \"v\"}]}";
	const struct sigv4_header h[] = {
	    {"Content-Type", "application/json"},
	    {"Host", "email.us-east-1.amazonaws.com"},
	    {"X-Amz-Date", "20150830T123600Z"},
	};
	const struct sigv4_request r = {
	    .method = "POST",
	    .path = "/v2/email/outbound-emails",
	    .headers = h,
	    .nheaders = 3,
	    .body = body,
	    .body_len = sizeof(body) - 1,
	};
	struct sigv4_credentials cr = suite_cr;
	struct sigv4_result res;
	char hash[SIGV4_HEX_LEN + 1];

	(void)state;
	cr.service = "ses";
	assert_int_equal(sigv4_sha256_hex(body, sizeof(body) - 1, hash), 0);
	assert_string_equal(
	    hash,
	    "fdbb6e706bb85a750e0784474fdac643c1bfad8c02eb732f46eb74344554df67");
	sigv4_result_init(&res);
	assert_int_equal(sigv4_sign(&r, &cr, "20150830T123600Z", &res), 0);
	assert_string_equal(
	    res.authz.p,
	    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ses/"
	    "aws4_request, SignedHeaders=content-type;host;x-amz-date, "
	    "Signature="
	    "9483baa7465a29e7a2906f28286d8ce97c85bcb3710e273cbf4169df4026829d");
	sigv4_result_cleanup(&res);
}

/*
 * The ses connector's probe with temporary credentials: GetAccount with
 * the session token among the signed headers (the token is the one of
 * the suite's post-sts-token cases).  The canonical request and the
 * signature were computed with botocore's SigV4Auth (1.43) at the same
 * instant, as a reference independent of this signer.
 */
static void
test_ses_get_account_token(void **state)
{
	static const char token[] =
	    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQ"
	    "WLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMc"
	    "GdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp"
	    "75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZ"
	    "bqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/"
	    "oLxBA==";
	/* Sent in another order than signed: the signer sorts. */
	const struct sigv4_header h[] = {
	    {"X-Amz-Security-Token", token},
	    {"Host", "email.us-east-1.amazonaws.com"},
	    {"X-Amz-Date", "20150830T123600Z"},
	};
	const struct sigv4_request r = {
	    .method = "GET",
	    .path = "/v2/email/account",
	    .headers = h,
	    .nheaders = 3,
	    .body = "",
	    .body_len = 0,
	};
	struct sigv4_credentials cr = suite_cr;
	struct sigv4_result res;
	char *creq;

	(void)state;
	cr.service = "ses";
	creq = xasprintf("GET\n/v2/email/account\n\n"
			 "host:email.us-east-1.amazonaws.com\n"
			 "x-amz-date:20150830T123600Z\n"
			 "x-amz-security-token:%s\n\n"
			 "host;x-amz-date;x-amz-security-token\n"
			 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca49"
			 "5991b7852b855",
			 token);
	sigv4_result_init(&res);
	assert_int_equal(sigv4_sign(&r, &cr, "20150830T123600Z", &res), 0);
	assert_string_equal(res.creq.p, creq);
	assert_string_equal(
	    res.sts.p,
	    "AWS4-HMAC-SHA256\n20150830T123600Z\n"
	    "20150830/us-east-1/ses/aws4_request\n"
	    "49b90a9c3df32273d0b4d222edd8f6da8c36f24001fecb651dd21a5008b13c7d");
	assert_string_equal(
	    res.authz.p,
	    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ses/"
	    "aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, "
	    "Signature="
	    "74350b273f14eb4d147e398e505f5b0b3382cd695f2fda59b62589beaa1e65f5");
	sigv4_result_cleanup(&res);
	free(creq);
}

/* Bad inputs are refused, never signed with a guess. */
static void
test_refusals(void **state)
{
	const struct sigv4_header h[] = {{"Host", "example.amazonaws.com"}};
	const struct sigv4_header noname[] = {{"", "x"}};
	struct sigv4_request r = {
	    .method = "GET", .path = "/", .headers = h, .nheaders = 1};
	struct sigv4_credentials cr = suite_cr;
	struct sigv4_result res;

	(void)state;
	sigv4_result_init(&res);
	assert_int_equal(sigv4_sign(&r, &cr, "20150830T1236Z", &res), -EINVAL);
	assert_int_equal(sigv4_sign(&r, &cr, "2015083XT123600Z", &res),
			 -EINVAL);
	cr.secret_access_key = "";
	assert_int_equal(sigv4_sign(&r, &cr, "20150830T123600Z", &res),
			 -EINVAL);
	cr = suite_cr;
	r.headers = noname;
	assert_int_equal(sigv4_sign(&r, &cr, "20150830T123600Z", &res),
			 -EINVAL);
	sigv4_result_cleanup(&res);
}

/* The first line pair of a canonical request: the path, then the query. */
static void
check_canonical(const char *path, const char *query, const char *want)
{
	const struct sigv4_header h[] = {{"Host", "h"}};
	const struct sigv4_request r = {.method = "GET",
					.path = path,
					.query = query,
					.headers = h,
					.nheaders = 1};
	struct sigv4_result res;
	const char *nl;

	sigv4_result_init(&res);
	assert_int_equal(sigv4_sign(&r, &suite_cr, "20150830T123600Z", &res),
			 0);
	nl = strchr(res.creq.p, '\n');
	assert_non_null(nl);
	nl = strchr(nl + 1, '\n');
	assert_non_null(nl);
	nl = strchr(nl + 1, '\n');
	assert_non_null(nl);
	print_message("%s ? %s\n", path, query != NULL ? query : "");
	assert_int_equal(strncmp(res.creq.p + 4, want, strlen(want)), 0);
	assert_int_equal((size_t)(nl - res.creq.p - 4), strlen(want));
	sigv4_result_cleanup(&res);
}

/*
 * Beyond the suite: ".." that climbs above the root stays at the root, an
 * escape in the path is encoded again (non-S3 services double-encode), an
 * escape in the query is read first so both spellings sign the same, a
 * stray '%' is encoded, and a key without '=' has an empty value.
 */
static void
test_canonical_edges(void **state)
{
	(void)state;
	check_canonical("/a/b/..", NULL, "/a\n");
	check_canonical("/../../x", NULL, "/x\n");
	check_canonical("", NULL, "/\n");
	check_canonical("/a%20b", NULL, "/a%2520b\n");
	check_canonical("/", "b=%41&a=A", "/\na=A&b=A");
	check_canonical("/", "k&%zz=1&&", "/\n%25zz=1&k=");
	check_canonical("/", "a=2&a=1&a-b=0", "/\na=1&a=2&a-b=0");
}

static void
test_amz_date(void **state)
{
	char d[SIGV4_DATE_LEN + 1];

	(void)state;
	sigv4_amz_date(1440938160, d);
	assert_string_equal(d, "20150830T123600Z");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_suite),
	    cmocka_unit_test(test_ses_send_email),
	    cmocka_unit_test(test_ses_get_account_token),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_canonical_edges),
	    cmocka_unit_test(test_amz_date),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
