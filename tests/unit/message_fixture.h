/*
 * What the unit tests of the JSON message builder share (test_message.c,
 * test_message_json.c): the limits, the set-up, and the build-or-refuse
 * helpers.  Static inline so that a test file need not use all of them.
 */
#ifndef SHIVNERI_TEST_MESSAGE_FIXTURE_H
#define SHIVNERI_TEST_MESSAGE_FIXTURE_H

#include "intake/message.h"
#include "store/store.h"

#include <gmime/gmime.h>
#include <stdint.h>
#include <string.h>

#define BASE "\"from\": \"ann@example.com\", \"to\": \"bob@example.net\""

static const struct message_limits lim = {
    .max_message_bytes = 65536,
    .max_recipients = 5,
};

static inline int
setup(void **state)
{
	message_init();
	return 0;
}

static inline int
teardown(void **state)
{
	message_shutdown();
	return 0;
}

static inline struct store_message *
build_ok(const char *json)
{
	struct store_message *m = NULL;
	struct message_error err;

	memset(&err, 0, sizeof(err));
	if (message_from_json(json, strlen(json), &lim, &m, &err) != 0)
		fail_msg("refused: %d %s %s", err.http_status, err.code,
			 err.message);
	assert_non_null(m);
	return m;
}

/* Expects a refusal with code and a message starting with field. */
static inline void
expect_err_len(const char *json, size_t len, int status, const char *code,
	       const char *field)
{
	struct store_message *m = (struct store_message *)(uintptr_t)1;
	struct message_error err;

	memset(&err, 0, sizeof(err));
	assert_int_equal(message_from_json(json, len, &lim, &m, &err), -1);
	assert_null(m);
	if (strcmp(err.code, code) != 0 || err.http_status != status ||
	    strncmp(err.message, field, strlen(field)) != 0)
		fail_msg("for %s: got %d %s \"%s\", want %d %s \"%s...\"", json,
			 err.http_status, err.code, err.message, status, code,
			 field);
}

static inline void
expect_err(const char *json, int status, const char *code, const char *field)
{
	expect_err_len(json, strlen(json), status, code, field);
}

static inline GMimeMessage *
parse_mime(const struct store_message *m)
{
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *msg;

	stream = g_mime_stream_mem_new_with_buffer(m->mime, m->mime_len);
	parser = g_mime_parser_new_with_stream(stream);
	msg = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	g_object_unref(stream);
	assert_non_null(msg);
	return msg;
}

static inline char *
part_text(GMimeObject *o)
{
	assert_true(GMIME_IS_TEXT_PART(o));
	return g_mime_text_part_get_text(GMIME_TEXT_PART(o));
}

#endif
