/*
 * The strict JSON parse of a submission (message.c's first step): cJSON,
 * which is fast but lenient, with jansson's strictness put back around it.
 * A pre-scan of the raw body refuses invalid UTF-8, raw NUL and control
 * bytes and anything non-ASCII outside strings, and finds \u0000 escapes
 * (stepping over other escapes, so "\\u0000" is text); a walk of the tree
 * refuses duplicate keys in every object, NUL in keys and numbers out of
 * range.  cJSON would cut a string at a decoded NUL, so a body holding
 * \u0000 is parsed from a copy where each such escape is swapped for
 * U+FDD0 (NUL_MARK), a noncharacter no body can otherwise hold then (one
 * that does is refused), and the checks read that sentinel as NUL.
 *
 * cJSON 1.7 writes a global error position on every parse (and reads the
 * locale's decimal point), so parses are serialized by one mutex; they are
 * the short part of a build.  The tree belongs to the caller.
 */
#include "intake/message_int.h"
#include "common/util.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* cJSON writes a global on every parse; see the top of the file. */
static pthread_mutex_t cjson_lock = PTHREAD_MUTEX_INITIALIZER;

static int
bad_json(struct message_error *err, const char *why)
{
	return message__fail(err, 400, "invalid_json",
			     "body: not valid JSON (%s)", why);
}

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f; /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f; /* up to U+10FFFF */
	} else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* True when none of the 8 bytes is '"', '\\', < 0x20 or >= 0x80. */
static bool
plain8(const unsigned char *s)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t high = 0x8080808080808080ULL;
	uint64_t w, q, bs, ctl;

	memcpy(&w, s, 8);
	q = w ^ (ones * '"');
	bs = w ^ (ones * '\\');
	ctl = w - ones * 0x20; /* borrows into the high bit below 0x20 */
	return ((w | ((q - ones) & ~q) | ((bs - ones) & ~bs) | (ctl & ~w)) &
		high) == 0;
}

/*
 * The JSON pre-scan.  Returns NULL, or why the body is not JSON we take.
 * Sets *nul when a \u0000 escape is present and *mark when U+FDD0 is (as
 * bytes or as an escape).  Inside strings, runs of plain ASCII are
 * skipped eight bytes at a time.
 */
static const char *
json_prescan(const char *text, size_t n, bool *nul, bool *mark)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0, k;
	bool in_str = false;
	int cp, d, j;
	unsigned char c;

	*nul = *mark = false;
	while (i < n) {
		if (in_str) {
			while (i + 8 <= n && plain8(s + i))
				i += 8;
			if (i >= n)
				break;
		}
		c = s[i];
		if (c >= 0x80) {
			if (!in_str)
				return "syntax error";
			k = utf8_seq(s + i, n - i);
			if (k == 0)
				return "invalid UTF-8";
			if (k == 3 && memcmp(s + i, NUL_MARK, 3) == 0)
				*mark = true;
			i += k;
			continue;
		}
		if (c == '\0')
			return "NUL byte";
		if (!in_str) {
			if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
				return "syntax error";
			if (c == '"')
				in_str = true;
			i++;
			continue;
		}
		if (c < 0x20)
			return "syntax error";
		if (c == '"') {
			in_str = false;
			i++;
			continue;
		}
		if (c != '\\') {
			i++;
			continue;
		}
		/* An escape: step over it whole, so "\\u0000" is text. */
		if (i + 1 >= n)
			return "truncated";
		c = s[i + 1];
		if (c != 'u') {
			if (strchr("\"\\/bfnrt", c) == NULL || c == '\0')
				return "syntax error";
			i += 2;
			continue;
		}
		if (i + 6 > n)
			return "truncated";
		for (cp = 0, j = 2; j < 6; j++) {
			d = hex_digit(s[i + (size_t)j]);
			if (d < 0)
				return "syntax error";
			cp = cp * 16 + d;
		}
		if (cp == 0)
			*nul = true;
		else if (cp == NUL_MARK_CP)
			*mark = true;
		i += 6;
	}
	return in_str ? "truncated" : NULL;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Duplicate keys and (with nul) NUL in keys, in one object. */
static const char *
check_keys(const cJSON *obj, bool nul)
{
	const cJSON *c, *d;
	const char **keys;
	const char *why = NULL;
	size_t n = 0, i;

	for (c = obj->child; c != NULL; c = c->next) {
		if (nul && strstr(c->string, NUL_MARK) != NULL)
			return "NUL in a key";
		n++;
	}
	if (n <= 16) {
		for (c = obj->child; c != NULL; c = c->next)
			for (d = c->next; d != NULL; d = d->next)
				if (strcmp(c->string, d->string) == 0)
					return "duplicate key";
		return NULL;
	}
	/* Large objects: sort, so an attacker's object costs n log n. */
	keys = xreallocarray(NULL, n, sizeof(*keys));
	for (i = 0, c = obj->child; c != NULL; c = c->next)
		keys[i++] = c->string;
	qsort(keys, n, sizeof(*keys), cmp_str);
	for (i = 1; i < n; i++)
		if (strcmp(keys[i - 1], keys[i]) == 0) {
			why = "duplicate key";
			break;
		}
	free(keys);
	return why;
}

/* What jansson refused while parsing and cJSON does not; depth <= 1000. */
static const char *
json_walk(const cJSON *v, bool nul)
{
	const cJSON *c;
	const char *why;

	if (cJSON_IsNumber(v) && !isfinite(v->valuedouble))
		return "number out of range";
	if (cJSON_IsObject(v) && (why = check_keys(v, nul)) != NULL)
		return why;
	for (c = v->child; c != NULL; c = c->next)
		if ((why = json_walk(c, nul)) != NULL)
			return why;
	return NULL;
}

/*
 * Parses the body into a new tree in *root, with all the strictness
 * above; sets *nul when NUL_MARK stands for NUL in the tree.
 */
int
message__json_parse(const char *json, size_t len, cJSON **root, bool *nul,
		    struct message_error *err)
{
	const char *why, *end = NULL;
	char *copy = NULL;
	const char *text = json;
	bool mark;
	size_t i;

	*root = NULL;
	why = json_prescan(json, len, nul, &mark);
	if (why != NULL)
		return bad_json(err, why);
	if (*nul) {
		/* Same length: each "\u0000" becomes "\uFDD0" in a copy. */
		if (mark)
			return bad_json(err, "NUL byte");
		copy = xmalloc(len + 1);
		memcpy(copy, json, len);
		copy[len] = '\0';
		for (i = 0; i + 6 <= len; i++) {
			if (copy[i] != '\\')
				continue;
			if (memcmp(copy + i + 1, "u0000", 5) == 0)
				memcpy(copy + i + 2, "FDD0", 4);
			i++; /* step over the escaped character */
		}
		text = copy;
	}
	pthread_mutex_lock(&cjson_lock);
	*root = cJSON_ParseWithLengthOpts(text, len, &end, false);
	pthread_mutex_unlock(&cjson_lock);
	if (*root == NULL) {
		free(copy);
		return bad_json(err, "syntax error");
	}
	for (i = (size_t)(end - text); i < len; i++)
		if (!strchr(" \t\r\n", text[i]) || text[i] == '\0')
			break;
	free(copy);
	if (i < len)
		return bad_json(err, "trailing bytes after the object");
	if (!cJSON_IsObject(*root))
		return message__fail(err, 400, "invalid_json",
				     "body: not a JSON object");
	why = json_walk(*root, *nul);
	if (why != NULL)
		return bad_json(err, why);
	return 0;
}
