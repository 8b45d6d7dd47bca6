/*
 * libFuzzer target for the form parser (intake/form.h) and the Mailgun
 * translators over it: the first byte picks the content type (multipart
 * with a fixed boundary, or urlencoded), the rest is the body.  Any bytes
 * must give a form within its bounds (parts, names, values inside the
 * body for multipart) or a refusal with a reason, never a crash or a
 * leak; a form is then translated both ways (messages, messages.mime),
 * and a /v1 body it gives must be JSON the builder reads.
 */
#include "intake/dropin.h"
#include "intake/form.h"
#include "intake/message.h"
#include "store/store.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_form(const struct form *fm, const char *body, size_t len, bool mp)
{
	size_t i;

	if (fm->n > FORM_MAX_PARTS)
		abort();
	for (i = 0; i < fm->n; i++) {
		const struct form_field *f = &fm->f[i];
		if (f->name == NULL || f->name[0] == '\0' ||
		    strlen(f->name) > FORM_MAX_NAME)
			abort();
		if (mp && (f->value < body || f->value + f->len > body + len))
			abort();
	}
}

static void
translate(const struct form *fm)
{
	static const struct message_limits lim = {
	    .max_message_bytes = 16384,
	    .max_recipients = 8,
	};
	struct dropin_batch b;
	struct dropin_mime dm;
	struct message_error err;
	struct store_message *m = NULL;

	memset(&err, 0, sizeof(err));
	if (dropin_mailgun(fm, &lim, &b, &err) == 0) {
		if (b.n != 1)
			abort();
		memset(&err, 0, sizeof(err));
		if (message_from_json(b.json[0], b.len[0], &lim, &m, &err) == 0)
			store_message_free(m);
		else if (strcmp(err.code, "invalid_json") == 0)
			abort();
		dropin_batch_cleanup(&b);
	} else if (err.message[0] == '\0' || b.n != 0) {
		abort();
	}
	memset(&err, 0, sizeof(err));
	if (dropin_mailgun_mime(fm, &lim, &dm, &err) == 0) {
		if (dm.mail_from == NULL || dm.nrcpt == 0)
			abort();
		dropin_mime_cleanup(&dm);
	} else if (err.message[0] == '\0') {
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	const char *ctype;
	struct form fm;
	char why[128];
	bool mp;

	if (!inited) {
		message_init();
		inited = 1;
	}
	if (size < 1)
		return 0;
	mp = (data[0] & 1) == 0;
	ctype = mp ? "multipart/form-data; boundary=XyZ"
		   : "application/x-www-form-urlencoded";
	why[0] = '\0';
	if (form_parse(ctype, (const char *)data + 1, size - 1, &fm, why,
		       sizeof(why)) != 0) {
		if (why[0] == '\0' || fm.n != 0 || fm.f != NULL)
			abort();
		return 0;
	}
	check_form(&fm, (const char *)data + 1, size - 1, mp);
	translate(&fm);
	form_cleanup(&fm);
	return 0;
}
