/*
 * The Mailgun drop-in's reading of untrusted head values, exported from
 * front_mailgun.c only so that a fuzzer can drive them (they do no I/O):
 * the HTTP Basic credentials "api:KEY" and the DOMAIN of the path.
 */
#ifndef SHIVNERI_FRONT_MAILGUN_H
#define SHIVNERI_FRONT_MAILGUN_H

#include <stdbool.h>
#include <stddef.h>

/*
 * An Authorization value "Basic base64(api:KEY)" into KEY: true with out
 * NUL-terminated, *len its length (< outsz, no NUL in it); false for
 * anything else (another scheme or user, bad base64, a NUL, too long).
 */
bool front_mailgun_basic_key(const char *h, char *out, size_t outsz,
			     size_t *len);
/* A host name: labels of letters, digits and hyphens, at most 253 bytes. */
bool front_mailgun_domain_ok(const char *s, size_t n);

#endif
