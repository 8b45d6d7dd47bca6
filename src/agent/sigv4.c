/*
 * AWS Signature Version 4, written from AWS's description of the scheme
 * (and checked against its published test suite, tests/unit/data/sigv4/):
 *
 *   canonical request = METHOD \n path \n query \n headers \n signed \n
 *                       hex(SHA-256(body))
 *   string to sign    = AWS4-HMAC-SHA256 \n date \n scope \n
 *                       hex(SHA-256(canonical request))
 *   signing key       = HMAC chain "AWS4"+secret > day > region > service
 *                       > "aws4_request"
 *
 * Everything is computed from the described request alone, so the same
 * code serves the connector, the unit tests and a fuzzer.  The canonical
 * forms are built in capped buffers: a request that would need more than
 * the cap is refused with -E2BIG rather than grown without bound.  The
 * derived keys are wiped before returning (OPENSSL_cleanse).
 */
#include "agent/sigv4.h"
#include "common/util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define SIGV4_CREQ_MAX (256 * 1024)
#define SIGV4_PART_MAX (64 * 1024)
#define SIGV4_HEADERS_MAX 64
#define SIGV4_PARAMS_MAX 256
#define SIGV4_ALGO "AWS4-HMAC-SHA256"

void
sigv4_result_init(struct sigv4_result *r)
{
	buf_init(&r->creq, SIGV4_CREQ_MAX);
	buf_init(&r->sts, SIGV4_PART_MAX);
	buf_init(&r->authz, SIGV4_PART_MAX);
}

void
sigv4_result_cleanup(struct sigv4_result *r)
{
	buf_cleanup(&r->creq);
	buf_cleanup(&r->sts);
	buf_cleanup(&r->authz);
}

void
sigv4_amz_date(time_t t, char *out)
{
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(out, SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm) !=
		SIGV4_DATE_LEN)
		memcpy(out, "19700101T000000Z", SIGV4_DATE_LEN + 1);
}

int
sigv4_sha256_hex(const void *data, size_t len, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != 32)
		return -EIO;
	hex_encode(md, mdlen, out);
	return 0;
}

static bool
is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

/*
 * Appends s[0..n) percent-encoded: unreserved bytes as they are,
 * everything else (the '/' of a path is the caller's) %XX in upper case.  With
 * decode, an existing %XX escape is read as its byte first, so that a query
 * written either way canonicalises the same.
 */
static int
append_encoded(struct buf *b, const char *s, size_t n, bool decode)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int rc;

		if (decode && c == '%' && i + 2 < n &&
		    hex_digit((unsigned char)s[i + 1]) >= 0 &&
		    hex_digit((unsigned char)s[i + 2]) >= 0) {
			c = (unsigned char)(hex_digit((unsigned char)s[i + 1]) *
						16 +
					    hex_digit((unsigned char)s[i + 2]));
			i += 2;
		}
		if (is_unreserved(c))
			rc = buf_append(b, &c, 1);
		else
			rc = buf_appendf(b, "%%%02X", c);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/*
 * The path with empty and "." segments dropped and ".." applied (as
 * POSIX normpath does, which is what AWS's own signers use), a trailing
 * '/' kept, then encoded.  Bytes of the path are encoded as they stand, so
 * an escape already in it is encoded again: services other than S3 expect
 * exactly that double encoding.
 */
static int
canonical_path(struct buf *b, const char *path)
{
	const char *seg[SIGV4_PARAMS_MAX];
	size_t seglen[SIGV4_PARAMS_MAX], nseg = 0;
	size_t plen = path != NULL ? strlen(path) : 0;
	const char *p = path, *end = path + plen;
	int rc;

	while (p != NULL && p < end) {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		size_t n = (slash != NULL ? slash : end) - p;

		if (n == 2 && memcmp(p, "..", 2) == 0) {
			if (nseg > 0)
				nseg--;
		} else if (n > 0 && !(n == 1 && *p == '.')) {
			if (nseg == SIGV4_PARAMS_MAX)
				return -E2BIG;
			seg[nseg] = p;
			seglen[nseg++] = n;
		}
		p = slash != NULL ? slash + 1 : end;
	}
	rc = buf_appends(b, "/");
	for (size_t i = 0; rc == 0 && i < nseg; i++) {
		if (i > 0)
			rc = buf_appends(b, "/");
		if (rc == 0)
			rc = append_encoded(b, seg[i], seglen[i], false);
	}
	if (rc < 0)
		return rc;
	if (nseg > 0 && plen > 0 && path[plen - 1] == '/')
		return buf_appends(b, "/");
	return 0;
}

struct param {
	struct buf key, value; /* encoded */
};

static int
param_cmp(const void *a, const void *b)
{
	const struct param *x = a, *y = b;
	int c = strcmp(x->key.p, y->key.p);

	return c != 0 ? c : strcmp(x->value.p, y->value.p);
}

/* Splits q at '&' into encoded pairs; a key without '=' has value "". */
static int
parse_query(const char *q, struct param *ps, size_t *np)
{
	const char *p = q, *end = q + strlen(q);
	int rc = 0;

	*np = 0;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp != NULL ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(stop - p));
		const char *kend = eq != NULL ? eq : stop;
		struct param *pr;

		if (stop > p) {
			if (*np == SIGV4_PARAMS_MAX)
				return -E2BIG;
			pr = &ps[(*np)++];
			buf_init(&pr->key, SIGV4_PART_MAX);
			buf_init(&pr->value, SIGV4_PART_MAX);
			rc = append_encoded(&pr->key, p, (size_t)(kend - p),
					    true);
			if (rc == 0 && eq != NULL)
				rc = append_encoded(&pr->value, eq + 1,
						    (size_t)(stop - eq - 1),
						    true);
			/* Empty buffers must still compare as "". */
			if (rc == 0)
				rc = buf_append(&pr->key, "", 0);
			if (rc == 0)
				rc = buf_append(&pr->value, "", 0);
			if (rc < 0)
				return rc;
		}
		p = stop + 1;
	}
	return 0;
}

static int
canonical_query(struct buf *b, const char *q)
{
	struct param *ps;
	size_t np = 0;
	int rc = 0;

	if (q == NULL || *q == '\0')
		return 0;
	ps = calloc(SIGV4_PARAMS_MAX, sizeof(*ps));
	if (ps == NULL)
		return -ENOMEM;
	rc = parse_query(q, ps, &np);
	if (rc == 0)
		qsort(ps, np, sizeof(*ps), param_cmp);
	for (size_t i = 0; rc == 0 && i < np; i++)
		rc = buf_appendf(b, "%s%s=%s", i > 0 ? "&" : "", ps[i].key.p,
				 ps[i].value.p);
	for (size_t i = 0; i < SIGV4_PARAMS_MAX; i++) {
		buf_cleanup(&ps[i].key);
		buf_cleanup(&ps[i].value);
	}
	free(ps);
	return rc;
}

struct hdr_ref {
	const struct sigv4_header *h;
	size_t index; /* for a stable sort: values of a name keep their order */
};

static int
hdr_cmp(const void *a, const void *b)
{
	const struct hdr_ref *x = a, *y = b;
	int c = strcasecmp(x->h->name, y->h->name);

	if (c != 0)
		return c;
	return x->index < y->index ? -1 : x->index > y->index;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The value trimmed, each inner run of blanks one space. */
static int
append_value(struct buf *b, const char *v)
{
	const char *end = v + strlen(v);
	int rc = 0;

	while (v < end && is_blank(*v))
		v++;
	while (end > v && is_blank(end[-1]))
		end--;
	while (rc == 0 && v < end) {
		if (is_blank(*v)) {
			while (is_blank(*v))
				v++;
			rc = buf_append(b, " ", 1);
		} else {
			rc = buf_append(b, v++, 1);
		}
	}
	return rc;
}

static int
append_lower(struct buf *b, const char *s)
{
	int rc = 0;

	for (; rc == 0 && *s != '\0'; s++) {
		char c = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;

		rc = buf_append(b, &c, 1);
	}
	return rc;
}

/*
 * The canonical headers (one "name:v1,v2" line per lowercased name, in
 * name order) into b, and the signed header list into sh.
 */
static int
canonical_headers(struct buf *b, struct buf *sh, const struct sigv4_header *hs,
		  size_t n)
{
	struct hdr_ref refs[SIGV4_HEADERS_MAX];
	int rc = 0;

	if (n > SIGV4_HEADERS_MAX)
		return -E2BIG;
	for (size_t i = 0; i < n; i++) {
		if (hs[i].name == NULL || hs[i].name[0] == '\0' ||
		    hs[i].value == NULL)
			return -EINVAL;
		refs[i].h = &hs[i];
		refs[i].index = i;
	}
	qsort(refs, n, sizeof(refs[0]), hdr_cmp);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		bool same = i > 0 && strcasecmp(refs[i - 1].h->name,
						refs[i].h->name) == 0;

		if (same) {
			rc = buf_append(b, ",", 1);
		} else {
			if (i > 0)
				rc = buf_append(b, "\n", 1);
			if (rc == 0 && i > 0)
				rc = buf_append(sh, ";", 1);
			if (rc == 0)
				rc = append_lower(sh, refs[i].h->name);
			if (rc == 0)
				rc = append_lower(b, refs[i].h->name);
			if (rc == 0)
				rc = buf_append(b, ":", 1);
		}
		if (rc == 0)
			rc = append_value(b, refs[i].h->value);
	}
	if (rc == 0 && n > 0)
		rc = buf_append(b, "\n", 1);
	return rc;
}

static int
canonical_request(struct buf *b, struct buf *sh,
		  const struct sigv4_request *req)
{
	char hash[SIGV4_HEX_LEN + 1];
	int rc;

	rc = sigv4_sha256_hex(req->body != NULL ? req->body : "",
			      req->body != NULL ? req->body_len : 0, hash);
	if (rc == 0)
		rc = buf_appendf(b, "%s\n", req->method);
	if (rc == 0)
		rc = canonical_path(b, req->path);
	if (rc == 0)
		rc = buf_append(b, "\n", 1);
	if (rc == 0)
		rc = canonical_query(b, req->query);
	if (rc == 0)
		rc = buf_append(b, "\n", 1);
	if (rc == 0)
		rc = canonical_headers(b, sh, req->headers, req->nheaders);
	if (rc == 0)
		rc = buf_appendf(b, "\n%s\n%s", sh->p != NULL ? sh->p : "",
				 hash);
	return rc;
}

static int
hmac(const void *key, size_t klen, const char *msg, size_t mlen,
     unsigned char *out)
{
	unsigned int outlen = 0;

	if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen,
		 out, &outlen) == NULL ||
	    outlen != 32)
		return -EIO;
	return 0;
}

/* hex(HMAC(kSigning, sts)) into sig, kSigning derived from the secret. */
static int
signature(const struct sigv4_credentials *cr, const char *day,
	  const struct buf *sts, char *sig)
{
	unsigned char k[32], mac[32];
	struct buf seed;
	int rc;

	buf_init(&seed, SIGV4_PART_MAX);
	rc = buf_appendf(&seed, "AWS4%s", cr->secret_access_key);
	if (rc == 0)
		rc = hmac(seed.p, seed.len, day, 8, k);
	if (rc == 0)
		rc = hmac(k, 32, cr->region, strlen(cr->region), k);
	if (rc == 0)
		rc = hmac(k, 32, cr->service, strlen(cr->service), k);
	if (rc == 0)
		rc = hmac(k, 32, "aws4_request", 12, k);
	if (rc == 0)
		rc = hmac(k, 32, sts->p, sts->len, mac);
	if (rc == 0)
		hex_encode(mac, 32, sig);
	if (seed.p != NULL)
		OPENSSL_cleanse(seed.p, seed.len);
	buf_cleanup(&seed);
	OPENSSL_cleanse(k, sizeof(k));
	return rc;
}

static bool
date_ok(const char *d)
{
	if (d == NULL || strlen(d) != SIGV4_DATE_LEN || d[8] != 'T' ||
	    d[15] != 'Z')
		return false;
	for (size_t i = 0; i < SIGV4_DATE_LEN; i++)
		if (i != 8 && i != 15 && (d[i] < '0' || d[i] > '9'))
			return false;
	return true;
}

static bool
nonempty(const char *s)
{
	return s != NULL && *s != '\0';
}

int
sigv4_sign(const struct sigv4_request *req, const struct sigv4_credentials *cr,
	   const char *amz_date, struct sigv4_result *r)
{
	char hash[SIGV4_HEX_LEN + 1], sig[SIGV4_HEX_LEN + 1], day[9];
	struct buf sh;
	int rc;

	buf_reset(&r->creq);
	buf_reset(&r->sts);
	buf_reset(&r->authz);
	if (!date_ok(amz_date) || !nonempty(cr->access_key_id) ||
	    !nonempty(cr->secret_access_key) || !nonempty(cr->region) ||
	    !nonempty(cr->service) || !nonempty(req->method))
		return -EINVAL;
	memcpy(day, amz_date, 8);
	day[8] = '\0';
	buf_init(&sh, SIGV4_PART_MAX);
	rc = canonical_request(&r->creq, &sh, req);
	if (rc == 0)
		rc = sigv4_sha256_hex(r->creq.p, r->creq.len, hash);
	if (rc == 0)
		rc = buf_appendf(&r->sts,
				 SIGV4_ALGO "\n%s\n%s/%s/%s/aws4_request\n%s",
				 amz_date, day, cr->region, cr->service, hash);
	if (rc == 0)
		rc = signature(cr, day, &r->sts, sig);
	if (rc == 0)
		rc = buf_appendf(&r->authz,
				 SIGV4_ALGO
				 " Credential=%s/%s/%s/%s/aws4_request, "
				 "SignedHeaders=%s, Signature=%s",
				 cr->access_key_id, day, cr->region,
				 cr->service, sh.p != NULL ? sh.p : "", sig);
	buf_cleanup(&sh);
	return rc;
}
