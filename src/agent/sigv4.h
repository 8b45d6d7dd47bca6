/*
 * AWS Signature Version 4 (header signing, HMAC-SHA256), as pure functions
 * over a described request: no I/O, no clock, no globals, so that the AWS
 * test suite and a fuzzer can drive them byte for byte.  The path is
 * normalised the way every service but S3 expects (SES among them).
 *
 * Secrets stay in the caller's memory: nothing here logs, and the derived
 * keys live on the stack and are wiped before return.
 */
#ifndef SHIVNERI_SIGV4_H
#define SHIVNERI_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "common/buf.h"

#define SIGV4_DATE_LEN 16 /* YYYYMMDDTHHMMSSZ */
#define SIGV4_HEX_LEN 64  /* a hex SHA-256 */

/* One header as sent; a name may repeat (values join in this order). */
struct sigv4_header {
	const char *name;
	const char *value;
};

/*
 * The request to sign.  path is the path of the request line (before any
 * '?'), query what follows the '?' (NULL or "" for none); both may hold
 * percent escapes, which are decoded and re-encoded canonically.  Every
 * header given is signed, so give only those sent (Host and X-Amz-Date
 * among them) and not Authorization.
 */
struct sigv4_request {
	const char *method;
	const char *path;
	const char *query;
	const struct sigv4_header *headers;
	size_t nheaders;
	const void *body;
	size_t body_len;
};

struct sigv4_credentials {
	const char *access_key_id;
	const char *secret_access_key;
	const char *region;
	const char *service;
};

/* The three artefacts of signing, each NUL-terminated; sigv4_*_init'd. */
struct sigv4_result {
	struct buf creq;  /* the canonical request */
	struct buf sts;   /* the string to sign */
	struct buf authz; /* the Authorization header's value */
};

void sigv4_result_init(struct sigv4_result *r);
void sigv4_result_cleanup(struct sigv4_result *r);

/*
 * Signs req at amz_date (YYYYMMDDTHHMMSSZ, the X-Amz-Date sent) and fills
 * r.  0; -EINVAL for a malformed date, a header without a name or an
 * empty credential; -E2BIG when a part exceeds its cap; -EIO when OpenSSL
 * fails.  r is reset first and holds nothing useful after an error.
 */
int sigv4_sign(const struct sigv4_request *req,
	       const struct sigv4_credentials *cr, const char *amz_date,
	       struct sigv4_result *r) __attribute__((warn_unused_result));

/* Formats t (UTC) as X-Amz-Date wants; out has SIGV4_DATE_LEN + 1 bytes. */
void sigv4_amz_date(time_t t, char *out);

/* Hex SHA-256 of data into out (SIGV4_HEX_LEN + 1 bytes); 0 or -EIO. */
int sigv4_sha256_hex(const void *data, size_t len, char *out)
    __attribute__((warn_unused_result));

#endif
