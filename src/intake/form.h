/*
 * HTML form bodies, as Mailgun's API takes them: multipart/form-data
 * (RFC 7578) and application/x-www-form-urlencoded.  A strict, bounded
 * parser of untrusted bytes with no I/O, so it can be fuzzed: at most
 * FORM_MAX_PARTS fields, each part's header block at most
 * FORM_MAX_PART_HEAD bytes, each name at most FORM_MAX_NAME; the body
 * itself is capped by the caller (the HTTP layer's one limit).  Refused:
 * a missing or malformed boundary, a part without a name, a parameter
 * (name, filename, boundary) given twice, a body that does not end with
 * the closing boundary, bare CR or LF in part headers,
 * a transfer encoding other than 7bit, 8bit or binary, a bad %-escape.
 *
 * Multipart values point into the body (borrowed: the body must outlive
 * the form); urlencoded values are decoded into memory the form owns.
 */
#ifndef SHIVNERI_FORM_H
#define SHIVNERI_FORM_H

#include <stdbool.h>
#include <stddef.h>

#define FORM_MAX_PARTS 1000
#define FORM_MAX_PART_HEAD 8192
#define FORM_MAX_NAME 256
#define FORM_BOUNDARY_MAX 70

struct form_field {
	char *name;        /* NUL-terminated; may not hold NUL */
	const char *value; /* len bytes, not NUL-terminated; may hold NUL */
	size_t len;
	char *filename; /* a file part's name; NULL for a plain field */
	char *ctype;    /* the part's Content-Type; NULL when not given */
	char *owned;    /* value's storage when the form owns it */
};

struct form {
	struct form_field *f;
	size_t n;
};

/*
 * Parses body (len bytes) of the given Content-Type header value into
 * out.  Returns 0, -1 with why filled (a short phrase, no body bytes)
 * and out empty, or -2 when the content type is neither form type.
 */
int form_parse(const char *ctype, const char *body, size_t len,
	       struct form *out, char *why, size_t whysz)
    __attribute__((warn_unused_result));
/* NULL-safe; frees what the form owns and empties it. */
void form_cleanup(struct form *fm);
/* True when ctype is multipart/form-data (with any parameters). */
bool form_is_multipart(const char *ctype);
/* True when ctype is application/x-www-form-urlencoded. */
bool form_is_urlencoded(const char *ctype);

#endif
