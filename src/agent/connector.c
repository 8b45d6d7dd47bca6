/*
 * The connector registry: each conn_TYPE.c registers its table from a
 * constructor (CONNECTOR_REGISTER) before main() runs, so the table is
 * filled once, single-threaded, and only read afterwards.  A fixed array
 * suffices: the types are the files of this folder.  Each table's keys
 * go to the configuration's registry of provider types at the same time.
 * Registering two tables under one name is our bug and fatal.  It also
 * holds connector_blot() and connector_blot_base64(), which every
 * connector uses to keep its secret out of a provider's words, and
 * connector_blot_json().  A secret of bytes log_sanitize() cannot print
 * (a password in UTF-8) is found in text that went through it as well as
 * in raw text: the words are escaped in more than one place before they
 * are blotted (a smarthost's reply lines as they are read, SES's
 * message), and matching the escape is what keeps every such place safe.
 */
#include "agent/connector.h"
#include "common/config.h"
#include "common/log.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define CONNECTOR_MAX 32

static const struct connector_ops *registry[CONNECTOR_MAX];
static const char *names[CONNECTOR_MAX];
static size_t nregistry;

void
connector_register(const struct connector_ops *ops)
{
	if (connector_lookup(ops->name) != NULL)
		fatalx("connector %s registered twice", ops->name);
	if (nregistry == CONNECTOR_MAX)
		fatalx("too many connectors (max %d)", CONNECTOR_MAX);
	if (ops->config == NULL || ops->config->name == NULL ||
	    strcmp(ops->config->name, ops->name) != 0)
		fatalx("connector %s declares no keys of its own name",
		       ops->name);
	config_ptype_register(ops->config);
	registry[nregistry] = ops;
	names[nregistry] = ops->name;
	nregistry++;
}

const struct connector_ops *
connector_lookup(const char *type)
{
	size_t i;

	if (type == NULL)
		return NULL;
	for (i = 0; i < nregistry; i++)
		if (strcmp(registry[i]->name, type) == 0)
			return registry[i];
	return NULL;
}

const char *const *
connector_names(size_t *n)
{
	*n = nregistry;
	return names;
}

/* True when every byte of s is printable ASCII (log_sanitize keeps it). */
static bool
printable(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/*
 * True when the n bytes at t are secret's first n, raw or as
 * log_sanitize() wrote them: a byte it cannot print stands as '?'.
 */
static bool
blot_match(const char *t, const char *secret, size_t n)
{
	size_t i;
	unsigned char c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)secret[i];
		if (t[i] != secret[i] &&
		    !(t[i] == '?' && (c < 0x20 || c >= 0x7f)))
			return false;
	}
	return true;
}

void
connector_blot(char *text, const char *secret)
{
	size_t n = secret != NULL ? strlen(secret) : 0, len, k, i;
	char *p = text;

	if (n < 4)
		return;
	len = strlen(text);
	if (printable(secret, n)) {
		/* The common case: escaping cannot change it. */
		while ((p = strstr(p, secret)) != NULL) {
			memset(p, '*', n);
			p += n;
		}
	} else {
		for (i = 0; i + n <= len;) {
			if (blot_match(text + i, secret, n)) {
				memset(text + i, '*', n);
				i += n;
			} else {
				i++;
			}
		}
	}
	/* log_sanitize() marks what it cut with "...": look before it. */
	if (len >= 3 && memcmp(text + len - 3, "...", 3) == 0)
		len -= 3;
	for (k = n - 1 < len ? n - 1 : len; k >= 4; k--) {
		if (blot_match(text + len - k, secret, k)) {
			memset(text + len - k, '*', k);
			break;
		}
	}
}

/* One UTF-8 character at s (n bytes left): its length, *cp; 0 if bad. */
static size_t
utf8_char(const unsigned char *s, size_t n, unsigned long *cp)
{
	size_t len, i;

	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0;
	len = s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
	if (len > n)
		return 0;
	*cp = s[0] & (0x7f >> len);
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && *cp < 0x800) || (len == 4 && *cp < 0x10000) ||
	    *cp > 0x10ffff || (*cp >= 0xd800 && *cp < 0xe000))
		return 0;
	return len;
}

/* "\uXXXX" of v at out + o, hex in the case upper asks for; the length. */
static size_t
put_u(char *out, size_t o, size_t outsz, bool upper, unsigned long v)
{
	int k = upper ? snprintf(out + o, outsz - o, "\\u%04lX", v)
		      : snprintf(out + o, outsz - o, "\\u%04lx", v);

	return k > 0 ? (size_t)k : 0;
}

/*
 * secret as a JSON string's content with every character outside ASCII
 * as \uXXXX (a surrogate pair beyond U+FFFF), hex digits in the case
 * upper asks for, and the escapes JSON requires; 0, or -1 when secret is
 * not UTF-8 (no JSON can carry it) or out is too small.
 */
static int
json_form(const char *secret, size_t n, bool upper, char *out, size_t outsz)
{
	const unsigned char *s = (const unsigned char *)secret;
	size_t i = 0, o = 0, k;
	unsigned long cp;

	while (i < n) {
		if (outsz - o < 13)
			return -1;
		if (s[i] == '"' || s[i] == '\\') {
			out[o++] = '\\';
			out[o++] = (char)s[i++];
		} else if (s[i] >= 0x20 && s[i] < 0x80) {
			out[o++] = (char)s[i++];
		} else if (s[i] < 0x20) {
			o += put_u(out, o, outsz, upper, s[i++]);
		} else {
			k = utf8_char(s + i, n - i, &cp);
			if (k == 0)
				return -1;
			i += k;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				o += put_u(out, o, outsz, upper,
					   0xd800 + (cp >> 10));
				cp = 0xdc00 + (cp & 0x3ff);
			}
			o += put_u(out, o, outsz, upper, cp);
		}
	}
	out[o] = '\0';
	return 0;
}

/* True when JSON carries s as it is (no quote, backslash, control, 8-bit). */
static bool
json_plain(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x80 ||
		    s[i] == '"' || s[i] == '\\')
			return false;
	return true;
}

void
connector_blot_json(char *text, const char *secret)
{
	char form[6 * CONNECTOR_BLOT_PLAIN_MAX + 16];
	size_t n = secret != NULL ? strlen(secret) : 0;
	int upper;

	if (n > CONNECTOR_BLOT_PLAIN_MAX || json_plain(secret, n))
		return; /* too long to have been sent; or no escape */
	for (upper = 0; upper < 2; upper++)
		if (json_form(secret, n, upper, form, sizeof(form)) == 0)
			connector_blot(text, form);
	OPENSSL_cleanse(form, sizeof(form));
}

void
connector_blot_base64(char *text, const void *plain, size_t n)
{
	unsigned char b64[4 * CONNECTOR_BLOT_PLAIN_MAX / 3 + 4];
	int m;

	if (n > CONNECTOR_BLOT_PLAIN_MAX)
		return;
	m = EVP_EncodeBlock(b64, plain, (int)n);
	if (m > 0)
		connector_blot(text, (const char *)b64);
	OPENSSL_cleanse(b64, sizeof(b64));
}
