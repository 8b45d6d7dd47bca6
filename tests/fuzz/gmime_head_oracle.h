/*
 * The oracle mime.c's hand header reader is held to, shared by
 * tests/unit/test_mime_head.c and tests/fuzz/fuzz_mime_head.c: what
 * GMime's parser makes of a header block, read the way mime.c read it
 * before (message__parser_opts), and each field's count and first value.
 * Header-only: the unit test and the fuzz target are separate programs.
 */
#ifndef SHIVNERI_GMIME_HEAD_ORACLE_H
#define SHIVNERI_GMIME_HEAD_ORACLE_H

#include "intake/message_int.h"

#include <stdbool.h>
#include <string.h>

#include <gmime/gmime.h>

/* The block h of n bytes and a final line end as GMime parses it; NULL
 * when the memory stream would not take the bytes. */
static inline GMimeObject *
oracle_parse(const char *h, size_t n, bool lf_only)
{
	const char *eol = lf_only ? "\n" : "\r\n";
	GMimeStream *st = g_mime_stream_mem_new();
	GMimeParser *parser;
	GMimeObject *o = NULL;

	if (g_mime_stream_write(st, h, n) == (ssize_t)n &&
	    g_mime_stream_write(st, eol, strlen(eol)) == (ssize_t)strlen(eol)) {
		g_mime_stream_reset(st);
		parser = g_mime_parser_new_with_stream(st);
		o = g_mime_parser_construct_part(parser, message__parser_opts);
		g_object_unref(parser);
	}
	g_object_unref(st);
	return o;
}

/* How many fields named name (without case) o has; *first the first's
 * value (unfolded, RFC 2047 decoded), NULL when none. */
static inline int
oracle_count(GMimeObject *o, const char *name, const char **first)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(o);
	int i, n = g_mime_header_list_get_count(hl), count = 0;
	GMimeHeader *h;

	*first = NULL;
	for (i = 0; i < n; i++) {
		h = g_mime_header_list_get_header_at(hl, i);
		if (g_ascii_strcasecmp(g_mime_header_get_name(h), name) != 0)
			continue;
		if (count++ == 0)
			*first = g_mime_header_get_value(h);
	}
	return count;
}

#endif
