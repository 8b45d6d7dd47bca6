/*
 * libFuzzer target for mime_fields, the agent's second reading of a
 * client's message: GMime parses the stored MIME and the JSON-API
 * connectors take it apart (mailboxes, the recipients' names, the text
 * and HTML bodies, attachments, headers) into a tree that
 * mime_fields_dump() writes as the API request's body.  Any bytes must
 * give either a body or a reason, never a crash or a leak; and the body,
 * written by our own escaper, must be JSON that jansson reads back as the
 * very tree it was written from (a string that escaped badly would let a
 * message's bytes rewrite the request).  The first line, when it starts
 * with "env:", is the envelope, as for fuzz_mime.
 */
#include "agent/connector.h"
#include "agent/mime_fields.h"
#include "fuzz_envelope.h"

#include <gmime/gmime.h>
#include <jansson.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const skip_headers[] = {"from", "to",      "cc",
					   "bcc",  "subject", NULL};

static bool
put(json_t *o, const char *key, json_t *v)
{
	return v != NULL && json_object_set_new(o, key, v) == 0;
}

/* What a JSON-API connector's fill takes from msg, every helper once. */
static const char *
fill(json_t *root, GMimeMessage *msg, const struct connector_job *job,
     void *arg)
{
	static const char *const kinds[] = {"to", "cc", "bcc"};
	json_t *lists[3], *r;
	struct mime_body b;
	const char *why;
	size_t i;

	(void)arg;
	if (!mime_fields_set_mailbox(
		root, "from",
		mime_fields_first(g_mime_message_get_from(msg))) &&
	    !mime_fields_set_str(root, "from", job->mail_from))
		return "from";
	if (!mime_fields_set_str(root, "subject",
				 g_mime_message_get_subject(msg)))
		return "subject";
	for (i = 0; i < 3; i++)
		if (!put(root, kinds[i], lists[i] = json_array()))
			return "out of memory";
	for (i = 0; i < job->nrcpt; i++) {
		r = mime_fields_rcpt(msg, job->rcpt[i]);
		if (r == NULL)
			return "recipient";
		if (json_array_append_new(
			lists[mime_fields_rcpt_kind(msg, job->rcpt[i])], r) !=
		    0)
			return "out of memory";
	}
	if ((why = mime_fields_body(msg, &b)) != NULL)
		return why;
	if ((b.text != NULL && !mime_fields_set_str(root, "text", b.text)) ||
	    (b.html != NULL && !mime_fields_set_str(root, "html", b.html)) ||
	    !put(root, "attachments", json_incref(b.attachments))) {
		mime_fields_body_free(&b);
		return "body";
	}
	mime_fields_body_free(&b);
	if (!put(root, "headers", mime_fields_headers(msg, skip_headers)))
		return "headers";
	return NULL;
}

/* The body must read back as the tree it was written from. */
static void
check_dump(const struct connector_job *job)
{
	GMimeMessage *msg = mime_fields_parse(job);
	json_t *root, *back;
	char *body;

	if (msg == NULL)
		return;
	root = json_object();
	if (root == NULL)
		abort();
	if (fill(root, msg, job, NULL) == NULL) {
		if ((body = mime_fields_dump(root)) == NULL)
			abort();
		back = json_loads(body, JSON_DISABLE_EOF_CHECK, NULL);
		if (back == NULL || !json_equal(back, root))
			abort();
		json_decref(back);
		free(body);
	}
	json_decref(root);
	g_object_unref(msg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	struct connector_job job;
	struct fuzz_envelope fe;
	const char *why;
	char *copy, *body;
	size_t off;

	if (!inited) {
		g_mime_init();
		inited = 1;
	}
	if ((copy = fuzz_copy(data, size)) == NULL)
		return 0;
	off = fuzz_take_envelope(copy, size, &fe);
	memset(&job, 0, sizeof(job));
	job.message_id = "01KB0000000000000000000000";
	job.mail_from = fe.mail_from;
	job.rcpt = fe.rcpt;
	job.nrcpt = fe.nrcpt;
	job.mime = (const uint8_t *)copy + off;
	job.mime_len = size - off;

	body = mime_fields_json(&job, fill, NULL, &why);
	if ((body == NULL) == (why == NULL))
		abort();
	free(body);
	check_dump(&job);
	free(copy);
	return 0;
}
