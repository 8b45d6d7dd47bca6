/*
 * mime_fields: the GMime side of the JSON-API connectors, split out of the
 * sendgrid connector so that postmark and resend read a message the same
 * way.  A part is the text (or the HTML) body when it is the first
 * text/plain (text/html) part with no file name and no attachment
 * disposition; every other leaf part is an attachment, its decoded bytes
 * base64.  Headers are passed decoded, except those the caller names.
 */
#include "agent/mime_fields.h"

#include "common/buf.h"
#include "common/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What walking the parts gathers. */
struct walk {
	struct mime_body *b;
	const char *why; /* the first reason the message cannot go */
};

GMimeMessage *
mime_fields_parse(const struct connector_job *job)
{
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *msg;

	stream = g_mime_stream_mem_new_with_buffer((const char *)job->mime,
						   job->mime_len);
	parser = g_mime_parser_new_with_stream(stream);
	msg = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	g_object_unref(stream);
	return msg;
}

bool
mime_fields_set_str(json_t *o, const char *key, const char *s)
{
	json_t *v = json_string(s != NULL ? s : ""); /* NULL: not UTF-8 */

	return v != NULL && json_object_set_new(o, key, v) == 0;
}

bool
mime_fields_set_mailbox(json_t *o, const char *key, InternetAddress *ia)
{
	char *s;
	bool ok;

	if (ia == NULL || !INTERNET_ADDRESS_IS_MAILBOX(ia))
		return false;
	s = internet_address_to_string(ia, NULL, FALSE);
	ok = s != NULL && mime_fields_set_str(o, key, s);
	g_free(s);
	return ok;
}

json_t *
mime_fields_mailbox(InternetAddress *ia)
{
	const char *name;
	json_t *o;

	if (ia == NULL || !INTERNET_ADDRESS_IS_MAILBOX(ia))
		return NULL;
	o = json_object();
	name = internet_address_get_name(ia);
	if (o == NULL ||
	    !mime_fields_set_str(o, "email",
				 internet_address_mailbox_get_addr(
				     INTERNET_ADDRESS_MAILBOX(ia))) ||
	    (name != NULL && name[0] != '\0' &&
	     !mime_fields_set_str(o, "name", name))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

InternetAddress *
mime_fields_first(InternetAddressList *list)
{
	if (list == NULL || internet_address_list_length(list) == 0)
		return NULL;
	return internet_address_list_get_address(list, 0);
}

/* The mailbox of list whose address is addr, or NULL. */
static InternetAddress *
find_mailbox(InternetAddressList *list, const char *addr)
{
	InternetAddress *ia;
	int i, n = list != NULL ? internet_address_list_length(list) : 0;

	for (i = 0; i < n; i++) {
		ia = internet_address_list_get_address(list, i);
		if (INTERNET_ADDRESS_IS_MAILBOX(ia) &&
		    strcasecmp(internet_address_mailbox_get_addr(
				   INTERNET_ADDRESS_MAILBOX(ia)),
			       addr) == 0)
			return ia;
	}
	return NULL;
}

enum mime_rcpt_kind
mime_fields_rcpt_kind(GMimeMessage *msg, const char *addr)
{
	if (find_mailbox(
		g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_TO),
		addr) != NULL)
		return MIME_RCPT_TO;
	if (find_mailbox(
		g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_CC),
		addr) != NULL)
		return MIME_RCPT_CC;
	return MIME_RCPT_BCC;
}

json_t *
mime_fields_rcpt(GMimeMessage *msg, const char *addr)
{
	InternetAddress *ia;
	json_t *o;

	ia = find_mailbox(
	    g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_TO), addr);
	if (ia == NULL)
		ia = find_mailbox(
		    g_mime_message_get_addresses(msg, GMIME_ADDRESS_TYPE_CC),
		    addr);
	if (ia != NULL)
		return mime_fields_mailbox(ia);
	o = json_object();
	if (o != NULL && !mime_fields_set_str(o, "email", addr)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* The decoded bytes of a part, base64. */
static char *
part_base64(GMimePart *part)
{
	GMimeDataWrapper *dw = g_mime_part_get_content(part);
	GMimeStream *mem;
	GByteArray *ba;
	char *b64, *out;

	if (dw == NULL)
		return xstrdup("");
	mem = g_mime_stream_mem_new();
	if (g_mime_data_wrapper_write_to_stream(dw, mem) < 0) {
		g_object_unref(mem);
		return NULL;
	}
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	b64 = g_base64_encode(ba->data, ba->len);
	g_object_unref(mem);
	out = xstrdup(b64);
	g_free(b64);
	return out;
}

static void
add_attachment(struct walk *w, GMimePart *part, const char *filename)
{
	GMimeObject *obj = GMIME_OBJECT(part);
	const char *cid = g_mime_object_get_content_id(obj);
	const char *disp = g_mime_object_get_disposition(obj);
	bool inl =
	    cid != NULL && disp != NULL && strcasecmp(disp, "inline") == 0;
	char *type = g_mime_content_type_get_mime_type(
	    g_mime_object_get_content_type(obj));
	char *b64 = part_base64(part);
	json_t *a = json_object();

	if (b64 == NULL || a == NULL ||
	    !mime_fields_set_str(a, "content", b64) ||
	    !mime_fields_set_str(a, "type", type) ||
	    !mime_fields_set_str(a, "filename",
				 filename != NULL ? filename : "attachment") ||
	    !mime_fields_set_str(a, "disposition",
				 inl ? "inline" : "attachment") ||
	    (inl && !mime_fields_set_str(a, "content_id", cid)) ||
	    json_array_append(w->b->attachments, a) != 0)
		w->why = "an attachment the API cannot carry";
	json_decref(a);
	g_free(type);
	free(b64);
}

static void
walk_part(GMimeObject *parent, GMimeObject *obj, gpointer data)
{
	struct walk *w = data;
	GMimeContentType *ct;
	GMimePart *part;
	const char *filename, *disp;
	char **slot = NULL;

	(void)parent;
	if (!GMIME_IS_PART(obj) || w->why != NULL)
		return;
	part = GMIME_PART(obj);
	filename = g_mime_part_get_filename(part);
	disp = g_mime_object_get_disposition(obj);
	ct = g_mime_object_get_content_type(obj);
	if (filename == NULL &&
	    (disp == NULL || strcasecmp(disp, "attachment") != 0) &&
	    GMIME_IS_TEXT_PART(obj)) {
		if (g_mime_content_type_is_type(ct, "text", "plain"))
			slot = &w->b->text;
		else if (g_mime_content_type_is_type(ct, "text", "html"))
			slot = &w->b->html;
	}
	if (slot == NULL || *slot != NULL) {
		add_attachment(w, part, filename);
		return;
	}
	*slot = g_mime_text_part_get_text(GMIME_TEXT_PART(obj));
	if (*slot == NULL || !g_utf8_validate(*slot, -1, NULL))
		w->why = "a text part that is not UTF-8";
}

const char *
mime_fields_body(GMimeMessage *msg, struct mime_body *b)
{
	struct walk w = {.b = b};

	memset(b, 0, sizeof(*b));
	b->attachments = json_array();
	if (b->attachments == NULL)
		return "out of memory";
	g_mime_message_foreach(msg, walk_part, &w);
	if (w.why == NULL && b->text == NULL && b->html == NULL)
		w.why = "no text or HTML part";
	if (w.why != NULL)
		mime_fields_body_free(b);
	return w.why;
}

void
mime_fields_body_free(struct mime_body *b)
{
	g_free(b->text);
	g_free(b->html);
	json_decref(b->attachments);
	memset(b, 0, sizeof(*b));
}

json_t *
mime_fields_attachment(json_t *a, const struct mime_attach_names *n)
{
	const char *const keys[] = {n->filename, n->content, n->type};
	const char *const from[] = {"filename", "content", "type"};
	const char *cid = json_string_value(json_object_get(a, "content_id"));
	json_t *o = json_object();
	size_t i;

	for (i = 0; o != NULL && i < 3; i++)
		if (keys[i] != NULL &&
		    json_object_set(o, keys[i], json_object_get(a, from[i])) !=
			0) {
			json_decref(o);
			return NULL;
		}
	if (o != NULL && n->content_id != NULL && cid != NULL &&
	    !mime_fields_set_str(o, n->content_id, cid)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* in (mime_body's attachments) in n's keys; NULL on error. */
static json_t *
attachments_as(json_t *in, const struct mime_attach_names *n)
{
	json_t *out = json_array(), *a;
	size_t i;

	json_array_foreach(in, i, a)
	{
		/* append_new takes the attachment, even when it fails. */
		if (out == NULL ||
		    json_array_append_new(out, mime_fields_attachment(a, n)) !=
			0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

const char *
mime_fields_content(json_t *o, GMimeMessage *msg,
		    const struct mime_content_names *n)
{
	struct mime_body mb;
	const char *why = mime_fields_body(msg, &mb);
	json_t *v = NULL;

	if (why != NULL)
		return why;
	if ((mb.text != NULL && !mime_fields_set_str(o, n->text, mb.text)) ||
	    (mb.html != NULL && !mime_fields_set_str(o, n->html, mb.html)))
		why = "out of memory";
	else if (json_array_size(mb.attachments) > 0) {
		v = attachments_as(mb.attachments, &n->attach);
		if (v == NULL)
			why = n->cannot_attach;
		else if (json_object_set_new(o, n->attachments, v) != 0)
			why = "out of memory";
	}
	mime_fields_body_free(&mb);
	return why;
}

static bool
header_skipped(const char *name, const char *const *skip)
{
	size_t i;

	for (i = 0; skip[i] != NULL; i++)
		if (strcasecmp(name, skip[i]) == 0)
			return true;
	return false;
}

json_t *
mime_fields_headers(GMimeMessage *msg, const char *const *skip)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(msg));
	GMimeHeader *hdr;
	json_t *o = json_object();
	int i, n = g_mime_header_list_get_count(hl);

	for (i = 0; o != NULL && i < n; i++) {
		hdr = g_mime_header_list_get_header_at(hl, i);
		if (header_skipped(g_mime_header_get_name(hdr), skip))
			continue;
		if (!mime_fields_set_str(o, g_mime_header_get_name(hdr),
					 g_mime_header_get_value(hdr))) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

/* Deeper than any tree a fill makes (root, array, object, value). */
#define DUMP_DEPTH_MAX 16

/*
 * json_dumps(v, JSON_COMPACT) for the trees the fills make, through the
 * tree's one JSON escaper: jansson's dump decodes every string's UTF-8 a
 * character at a time and calls back per piece, which was 12 % of a
 * JSON-API agent's CPU (bench/RESULTS.md section 8); this walk copies
 * runs of plain bytes.  Key order is the tree's (insertion order).  Reals
 * are refused: no API body here has one.
 */
static int
dump_value(struct buf *b, json_t *v, int depth)
{
	const char *key;
	json_t *x;
	size_t i, n = 0;
	int rc = 0;

	if (depth > DUMP_DEPTH_MAX)
		return -EINVAL;
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		rc = buf_append(b, "{", 1);
		json_object_foreach(v, key, x)
		{
			if (rc == 0 && n++ > 0)
				rc = buf_append(b, ",", 1);
			if (rc == 0)
				rc = buf_append(b, "\"", 1);
			if (rc == 0)
				rc = buf_append_json_str(b, key, strlen(key));
			if (rc == 0)
				rc = buf_append(b, "\":", 2);
			if (rc == 0)
				rc = dump_value(b, x, depth + 1);
		}
		return rc != 0 ? rc : buf_append(b, "}", 1);
	case JSON_ARRAY:
		rc = buf_append(b, "[", 1);
		for (i = 0; rc == 0 && i < json_array_size(v); i++) {
			if (i > 0)
				rc = buf_append(b, ",", 1);
			if (rc == 0)
				rc = dump_value(b, json_array_get(v, i),
						depth + 1);
		}
		return rc != 0 ? rc : buf_append(b, "]", 1);
	case JSON_STRING:
		rc = buf_append(b, "\"", 1);
		if (rc == 0)
			rc = buf_append_json_str(b, json_string_value(v),
						 json_string_length(v));
		return rc != 0 ? rc : buf_append(b, "\"", 1);
	case JSON_INTEGER:
		return buf_appendf(b, "%" JSON_INTEGER_FORMAT,
				   json_integer_value(v));
	case JSON_TRUE:
		return buf_appends(b, "true");
	case JSON_FALSE:
		return buf_appends(b, "false");
	case JSON_NULL:
		return buf_appends(b, "null");
	default:
		return -EINVAL;
	}
}

char *
mime_fields_dump(json_t *root)
{
	struct buf b;

	buf_init(&b, SIZE_MAX);
	if (dump_value(&b, root, 0) != 0) {
		buf_cleanup(&b);
		return NULL;
	}
	return buf_take(&b, NULL);
}

char *
mime_fields_json(const struct connector_job *job, mime_fields_fill_fn fill,
		 void *arg, const char **why)
{
	GMimeMessage *msg;
	json_t *root;
	char *body = NULL;

	*why = NULL;
	if (job->nrcpt == 0) {
		*why = "no recipient";
		return NULL;
	}
	msg = mime_fields_parse(job);
	if (msg == NULL) {
		*why = "a message GMime cannot parse";
		return NULL;
	}
	root = json_object();
	*why = root == NULL ? "out of memory" : fill(root, msg, job, arg);
	if (*why == NULL) {
		body = mime_fields_dump(root);
		if (body == NULL)
			*why = "a body the JSON writer refuses";
	}
	json_decref(root);
	g_object_unref(msg);
	return body;
}
