/*
 * libFuzzer target for sendgrid_build_body(), the mapping of our MIME (as
 * GMime parses it) and the envelope to SendGrid's v3 Mail Send JSON.  The
 * MIME is what a client submitted, so any bytes must give either a body
 * or a reason, never a crash or a leak.  The first line of the input,
 * when it starts with "env:", is the envelope ("env: SENDER RCPT
 * RCPT..."); otherwise a fixed one is used.  A body that is built must be
 * a JSON object SendGrid takes in shape: a "from" with an email, and
 * personalizations each with a non-empty "to", naming every envelope
 * recipient exactly once in all.
 */
#include "agent/conn_sendgrid.h"
#include "fuzz_envelope.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>
#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* How many addresses the personalization's to, cc and bcc name; 0 bad. */
static size_t
count_personalization(json_t *p)
{
	static const char *const keys[] = {"to", "cc", "bcc"};
	json_t *list, *r;
	size_t k, i, n = 0;

	if (json_array_size(json_object_get(p, "to")) == 0)
		return 0;
	for (k = 0; k < 3; k++) {
		list = json_object_get(p, keys[k]);
		json_array_foreach(list, i, r)
		{
			if (!json_is_string(json_object_get(r, "email")))
				return 0;
			n++;
		}
	}
	return n;
}

/* A built body keeps the promises above, else abort(). */
static void
check_body(const char *body, const struct connector_job *job)
{
	json_error_t jerr;
	json_t *root = json_loads(body, 0, &jerr), *pers, *p;
	size_t i, n, total = 0;

	if (root == NULL || !json_is_object(root))
		abort();
	if (!json_is_string(
		json_object_get(json_object_get(root, "from"), "email")))
		abort();
	pers = json_object_get(root, "personalizations");
	if (json_array_size(pers) == 0)
		abort();
	json_array_foreach(pers, i, p)
	{
		n = count_personalization(p);
		if (n == 0)
			abort();
		total += n;
	}
	if (total != job->nrcpt)
		abort();
	json_decref(root);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct connector_job job;
	struct fuzz_envelope fe;
	const char *why = NULL;
	char *copy, *body;
	size_t skip;

	if (!ready) {
		g_mime_init();
		ready = true;
	}
	if ((copy = fuzz_copy(data, size)) == NULL)
		return 0;
	memset(&job, 0, sizeof(job));
	job.message_id = "fuzz";
	skip = fuzz_take_envelope(copy, size, &fe);
	job.mail_from = fe.mail_from;
	job.rcpt = fe.rcpt;
	job.nrcpt = fe.nrcpt;
	job.mime = (const uint8_t *)copy + skip;
	job.mime_len = size - skip;
	body = sendgrid_build_body(&job, &why);
	if (body != NULL)
		check_body(body, &job);
	else if (why == NULL)
		abort(); /* a refusal always says why */
	free(body);
	free(copy);
	return 0;
}
