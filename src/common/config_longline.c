/*
 * Key lines longer than inih's line buffer.  Debian's inih is built with
 * a 200-byte line, which would cap every value near 190 bytes: a signed
 * webhook URL or a deep path would be refused with no way round it.  The
 * configuration's reader (config.c) hands such a line to inih as a short
 * "name=" line and keeps the value aside; this file splits the long line
 * the way inih splits a short one, so that a value reads the same however
 * long its line is: the name ends at the first '=' or ':', both are
 * stripped of blanks, and an inline comment is a ';' after a blank.
 */
#include "common/config_int.h"
#include "common/util.h"

#include <string.h>

static bool
blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
	       c == '\f';
}

/* inih's find_chars_or_comment(): the first of chars, or a ';' after a blank.
 */
static const char *
find(const char *s, const char *end, const char *chars)
{
	bool was_blank = false;

	for (; s < end; s++) {
		if (chars != NULL && strchr(chars, *s) != NULL)
			break;
		if (was_blank && *s == ';')
			break;
		was_blank = blank(*s);
	}
	return s;
}

int
config__split_key_line(const char *line, size_t n, char **name, char **value)
{
	const char *end = line + n, *sep, *v, *s;

	*name = *value = NULL;
	if (memchr(line, '\0', n) != NULL)
		return -1;
	sep = find(line, end, "=:");
	if (sep == end || *sep == ';')
		return -1;
	for (s = sep; s > line && blank(s[-1]); s--)
		;
	if (s == line)
		return -1;
	v = sep + 1;
	end = find(v, end, NULL);
	while (v < end && blank(*v))
		v++;
	while (end > v && blank(end[-1]))
		end--;
	*name = xstrndup(line, (size_t)(s - line));
	*value = xstrndup(v, (size_t)(end - v));
	return 0;
}
