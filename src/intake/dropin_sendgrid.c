/*
 * SendGrid v3 Mail Send (dropin.h): the body is parsed with the JSON
 * path's strict parser (message__json_parse: UTF-8, duplicate keys, NUL,
 * trailing bytes), its shape checked field by field, and each
 * personalization written as one /v1 body that borrows the request's
 * strings (cJSON string references) until it is printed.
 *
 * Supported, per personalization: to, cc, bcc ({email, name}), subject,
 * headers, custom_args, from; at the top: from, reply_to, reply_to_list,
 * subject, content (text/plain, text/html), attachments (base64; inline
 * with content_id), headers, categories (our tags), custom_args, and
 * mail_settings / tracking_settings whose every setting is disabled.
 * Refused, naming the field: anything else, including template_id,
 * dynamic_template_data, substitutions, sections, asm, batch_id,
 * ip_pool_name, send_at, and any enabled setting.  A personalization's
 * subject, headers and custom_args win over the top-level ones of the same
 * name (header names compared without case), as at SendGrid.
 *
 * A NUL (\u0000) anywhere is refused at once: the /v1 body could not carry
 * the parser's stand-in for it.  Allocation failure is fatal.
 */
#include "intake/dropin.h"
#include "intake/message_int.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The request being translated: its tree and where errors go. */
struct sg {
	const struct message_limits *lim;
	struct message_error *err;
	const cJSON *root;
	const cJSON *from, *reply_to, *reply_to_list, *subject, *content;
	const cJSON *attachments, *headers, *categories, *custom_args;
	const cJSON *pers;
};

static cJSON *
xj(cJSON *v)
{
	if (v == NULL)
		fatalx("dropin: out of memory");
	return v;
}

static void
add(cJSON *obj, const char *key, cJSON *v)
{
	if (!cJSON_AddItemToObject(obj, key, xj(v)))
		fatalx("dropin: out of memory");
}

static void
push(cJSON *arr, cJSON *v)
{
	if (!cJSON_AddItemToArray(arr, xj(v)))
		fatalx("dropin: out of memory");
}

static int
bad(struct message_error *err, const char *field, const char *why)
{
	return message__invalid(err, field, why);
}

static int
missing(struct message_error *err, const char *field)
{
	return message__fail(err, 400, "missing_field", "%s: required", field);
}

/* A non-empty string, or null/absent when optional. */
static int
want_string(struct message_error *err, const char *field, const cJSON *v,
	    bool required)
{
	if (v == NULL || cJSON_IsNull(v))
		return required ? missing(err, field) : 0;
	if (!cJSON_IsString(v))
		return bad(err, field, "must be a string");
	return 0;
}

/* An object with only the given keys (NULL-terminated); 0 or -1. */
static int
only_keys(struct message_error *err, const char *field, const cJSON *obj,
	  const char *const *keys)
{
	const cJSON *v;
	char f[160], kbuf[48];
	size_t i;

	if (!cJSON_IsObject(obj))
		return bad(err, field, "must be an object");
	for (v = obj->child; v != NULL; v = v->next) {
		for (i = 0; keys[i] != NULL; i++)
			if (strcmp(v->string, keys[i]) == 0)
				break;
		if (keys[i] != NULL)
			continue;
		snprintf(f, sizeof(f), "%s%s%s", field, *field ? "." : "",
			 message__safe_name(v->string, strlen(v->string), kbuf,
					    sizeof(kbuf)));
		return bad(err, f, "not supported by this relay");
	}
	return 0;
}

/* True for a name that needs no quoting in "Name <addr>". */
static bool
name_plain(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c >= 0x80 || c == ' ' || (c >= '0' && c <= '9') ||
		    (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL)
			continue;
		return false;
	}
	return true;
}

/*
 * {email, name} as the one string /v1 takes: "email", "Name <email>", or
 * "\"Quoted, Name\" <email>" with quotes and backslashes escaped, so the
 * name stays one phrase whatever it holds.  Control characters are left
 * for the builder, which refuses them in every address.
 */
static cJSON *
address(struct message_error *err, const char *field, const cJSON *obj)
{
	static const char *const keys[] = {"email", "name", NULL};
	const cJSON *email, *name;
	char f[160];
	struct buf b;
	const char *s;

	if (only_keys(err, field, obj, keys) != 0)
		return NULL;
	email = cJSON_GetObjectItemCaseSensitive(obj, "email");
	name = cJSON_GetObjectItemCaseSensitive(obj, "name");
	snprintf(f, sizeof(f), "%s.email", field);
	if (want_string(err, f, email, true) != 0)
		return NULL;
	snprintf(f, sizeof(f), "%s.name", field);
	if (want_string(err, f, name, false) != 0)
		return NULL;
	if (!cJSON_IsString(name) || name->valuestring[0] == '\0')
		return xj(cJSON_CreateStringReference(email->valuestring));
	buf_init(&b, SIZE_MAX);
	if (name_plain(name->valuestring)) {
		xbuf_adds(&b, name->valuestring);
	} else {
		xbuf_addc(&b, '"');
		for (s = name->valuestring; *s != '\0'; s++) {
			if (*s == '"' || *s == '\\')
				xbuf_addc(&b, '\\');
			xbuf_addc(&b, *s);
		}
		xbuf_addc(&b, '"');
	}
	xbuf_adds(&b, " <");
	xbuf_adds(&b, email->valuestring);
	xbuf_addc(&b, '>');
	cJSON *v = xj(cJSON_CreateString(b.p));
	buf_cleanup(&b);
	return v;
}

/* An array of {email, name} into a new array of /v1 strings. */
static cJSON *
address_list(struct message_error *err, const char *field, const cJSON *arr,
	     size_t *count)
{
	cJSON *out;
	const cJSON *e;
	char f[160];
	size_t i = 0;

	if (!cJSON_IsArray(arr)) {
		bad(err, field, "must be an array of {email, name}");
		return NULL;
	}
	out = xj(cJSON_CreateArray());
	for (e = arr->child; e != NULL; e = e->next, i++) {
		cJSON *a;

		snprintf(f, sizeof(f), "%s.%zu", field, i);
		a = address(err, f, e);
		if (a == NULL) {
			cJSON_Delete(out);
			return NULL;
		}
		push(out, a);
	}
	*count += i;
	return out;
}

/* mail_settings / tracking_settings: taken only when all are off. */
static int
settings_off(struct message_error *err, const char *field, const cJSON *obj)
{
	const cJSON *v, *en;
	char f[160], kbuf[48];

	if (obj == NULL || cJSON_IsNull(obj))
		return 0;
	if (!cJSON_IsObject(obj))
		return bad(err, field, "must be an object");
	for (v = obj->child; v != NULL; v = v->next) {
		snprintf(f, sizeof(f), "%s.%s", field,
			 message__safe_name(v->string, strlen(v->string), kbuf,
					    sizeof(kbuf)));
		en = cJSON_IsObject(v)
			 ? cJSON_GetObjectItemCaseSensitive(v, "enable")
			 : NULL;
		if (!cJSON_IsFalse(en))
			return bad(err, f,
				   "not supported by this relay (only "
				   "\"enable\": false is accepted)");
	}
	return 0;
}

/*
 * The most custom_args one message can carry: they travel as the compact
 * JSON of one header value of at most MAX_HEADER_VALUE_LEN bytes, in
 * which n members take at least 6 * n + 1 ("{}", and "k":"" with a
 * comma between members).  More could never be sent.
 */
#define SG_MAX_ARGS ((MAX_HEADER_VALUE_LEN - 1) / 6)

/*
 * A header name as a /v1 refusal prints it: message__safe_name() into
 * the 48 bytes that message.c's add_headers() gives it.  Kept equal to
 * that by test_dropin_sendgrid's long-name case.
 */
#define SG_HEADER_NAME_MAX 48

static int string_map(struct message_error *err, const char *field,
		      const cJSON *obj, int max, const char *why);

/* The top-level fields: known ones found, the rest refused. */
static int
top_fields(struct sg *g)
{
	static const char *const keys[] = {"personalizations",
					   "from",
					   "reply_to",
					   "reply_to_list",
					   "subject",
					   "content",
					   "attachments",
					   "headers",
					   "categories",
					   "custom_args",
					   "mail_settings",
					   "tracking_settings",
					   NULL};
	const cJSON *r = g->root;

	if (only_keys(g->err, "", r, keys) != 0)
		return -1;
	g->pers = cJSON_GetObjectItemCaseSensitive(r, "personalizations");
	g->from = cJSON_GetObjectItemCaseSensitive(r, "from");
	g->reply_to = cJSON_GetObjectItemCaseSensitive(r, "reply_to");
	g->reply_to_list = cJSON_GetObjectItemCaseSensitive(r, "reply_to_list");
	g->subject = cJSON_GetObjectItemCaseSensitive(r, "subject");
	g->content = cJSON_GetObjectItemCaseSensitive(r, "content");
	g->attachments = cJSON_GetObjectItemCaseSensitive(r, "attachments");
	g->headers = cJSON_GetObjectItemCaseSensitive(r, "headers");
	g->categories = cJSON_GetObjectItemCaseSensitive(r, "categories");
	g->custom_args = cJSON_GetObjectItemCaseSensitive(r, "custom_args");
	if (settings_off(
		g->err, "mail_settings",
		cJSON_GetObjectItemCaseSensitive(r, "mail_settings")) != 0 ||
	    settings_off(
		g->err, "tracking_settings",
		cJSON_GetObjectItemCaseSensitive(r, "tracking_settings")) != 0)
		return -1;
	if (!cJSON_IsArray(g->pers) || g->pers->child == NULL)
		return missing(g->err, "personalizations");
	if (cJSON_GetArraySize(g->pers) > DROPIN_SENDGRID_MAX_PERSONALIZATIONS)
		return bad(g->err, "personalizations",
			   "at most 1000 personalizations");
	if (g->from == NULL || cJSON_IsNull(g->from))
		return missing(g->err, "from");
	if (string_map(g->err, "headers", g->headers, MAX_HEADERS,
		       "too many headers") != 0 ||
	    string_map(g->err, "custom_args", g->custom_args, SG_MAX_ARGS,
		       "too many to fit in their header") != 0)
		return -1;
	if (g->reply_to != NULL && !cJSON_IsNull(g->reply_to) &&
	    g->reply_to_list != NULL && !cJSON_IsNull(g->reply_to_list))
		return bad(g->err, "reply_to_list",
			   "reply_to and reply_to_list cannot both be set");
	return want_string(g->err, "subject", g->subject, false);
}

/* content[] into text and html of v1. */
static int
content_add(struct sg *g, cJSON *v1)
{
	static const char *const keys[] = {"type", "value", NULL};
	const cJSON *c, *type, *value;
	char f[64];
	bool text = false, html = false;
	size_t i = 0;

	if (g->content == NULL || cJSON_IsNull(g->content))
		return missing(g->err, "content");
	if (!cJSON_IsArray(g->content) || g->content->child == NULL)
		return bad(g->err, "content",
			   "must be an array of {type, value}");
	for (c = g->content->child; c != NULL; c = c->next, i++) {
		snprintf(f, sizeof(f), "content.%zu", i);
		if (only_keys(g->err, f, c, keys) != 0)
			return -1;
		type = cJSON_GetObjectItemCaseSensitive(c, "type");
		value = cJSON_GetObjectItemCaseSensitive(c, "value");
		snprintf(f, sizeof(f), "content.%zu.type", i);
		if (want_string(g->err, f, type, true) != 0)
			return -1;
		snprintf(f, sizeof(f), "content.%zu.value", i);
		if (want_string(g->err, f, value, true) != 0)
			return -1;
		if (value->valuestring[0] == '\0')
			return bad(g->err, f, "must not be empty");
		snprintf(f, sizeof(f), "content.%zu.type", i);
		if (strcasecmp(type->valuestring, "text/plain") == 0 && !text) {
			text = true;
			add(v1, "text",
			    cJSON_CreateStringReference(value->valuestring));
		} else if (strcasecmp(type->valuestring, "text/html") == 0 &&
			   !html) {
			html = true;
			add(v1, "html",
			    cJSON_CreateStringReference(value->valuestring));
		} else {
			return bad(g->err, f,
				   "one text/plain and one text/html at "
				   "most; other types are not supported");
		}
	}
	return 0;
}

/* attachments[] into v1's, inline ones with their content_id. */
static int
attachments_add(struct sg *g, cJSON *v1)
{
	static const char *const keys[] = {
	    "content", "type", "filename", "disposition", "content_id", NULL};
	const cJSON *a, *disp, *cid, *v;
	cJSON *arr, *o;
	char f[64];
	size_t i = 0;

	if (g->attachments == NULL || cJSON_IsNull(g->attachments))
		return 0;
	if (!cJSON_IsArray(g->attachments))
		return bad(g->err, "attachments", "must be an array");
	arr = xj(cJSON_CreateArray());
	add(v1, "attachments", arr);
	for (a = g->attachments->child; a != NULL; a = a->next, i++) {
		snprintf(f, sizeof(f), "attachments.%zu", i);
		if (only_keys(g->err, f, a, keys) != 0)
			return -1;
		disp = cJSON_GetObjectItemCaseSensitive(a, "disposition");
		cid = cJSON_GetObjectItemCaseSensitive(a, "content_id");
		snprintf(f, sizeof(f), "attachments.%zu.disposition", i);
		if (want_string(g->err, f, disp, false) != 0)
			return -1;
		bool inl = cJSON_IsString(disp) &&
			   strcmp(disp->valuestring, "inline") == 0;
		if (cJSON_IsString(disp) && !inl &&
		    strcmp(disp->valuestring, "attachment") != 0)
			return bad(g->err, f, "must be inline or attachment");
		snprintf(f, sizeof(f), "attachments.%zu.content_id", i);
		if (want_string(g->err, f, cid, inl) != 0)
			return -1;
		if (!inl && cJSON_IsString(cid))
			return bad(g->err, f, "only with disposition inline");
		o = xj(cJSON_CreateObject());
		push(arr, o);
		v = cJSON_GetObjectItemCaseSensitive(a, "filename");
		snprintf(f, sizeof(f), "attachments.%zu.filename", i);
		if (want_string(g->err, f, v, true) != 0)
			return -1;
		add(o, "filename", cJSON_CreateStringReference(v->valuestring));
		v = cJSON_GetObjectItemCaseSensitive(a, "content");
		snprintf(f, sizeof(f), "attachments.%zu.content", i);
		if (want_string(g->err, f, v, true) != 0)
			return -1;
		add(o, "content_base64",
		    cJSON_CreateStringReference(v->valuestring));
		v = cJSON_GetObjectItemCaseSensitive(a, "type");
		snprintf(f, sizeof(f), "attachments.%zu.type", i);
		if (want_string(g->err, f, v, false) != 0)
			return -1;
		if (cJSON_IsString(v))
			add(o, "content_type",
			    cJSON_CreateStringReference(v->valuestring));
		if (inl)
			add(o, "content_id",
			    cJSON_CreateStringReference(cid->valuestring));
	}
	return 0;
}

/*
 * An object of string values (headers, custom_args); NULL is fine.  More
 * than max members is refused (why says so) before any is looked at:
 * merging a personalization's map with the top-level one compares every
 * pair, so the maps are kept to what one message can carry (the builder's
 * MAX_HEADERS, SG_MAX_ARGS), or a request of megabytes of names would
 * hold the translator for minutes.
 */
static int
string_map(struct message_error *err, const char *field, const cJSON *obj,
	   int max, const char *why)
{
	const cJSON *v;
	char f[160], kbuf[48];

	if (obj == NULL || cJSON_IsNull(obj))
		return 0;
	if (!cJSON_IsObject(obj))
		return bad(err, field, "must be an object of strings");
	if (cJSON_GetArraySize(obj) > max)
		return bad(err, field, why);
	for (v = obj->child; v != NULL; v = v->next)
		if (!cJSON_IsString(v)) {
			snprintf(f, sizeof(f), "%s.%s", field,
				 message__safe_name(v->string,
						    strlen(v->string), kbuf,
						    sizeof(kbuf)));
			return bad(err, f, "must be a string");
		}
	return 0;
}

/* True when obj (may be NULL) has key, compared without case. */
static bool
has_key_nocase(const cJSON *obj, const char *key)
{
	const cJSON *v;

	if (!cJSON_IsObject(obj))
		return false;
	for (v = obj->child; v != NULL; v = v->next)
		if (strcasecmp(v->string, key) == 0)
			return true;
	return false;
}

/*
 * Top-level and personalization maps merged into a new object, the
 * personalization's winning (keys compared with or without case).
 */
static cJSON *
merge(const cJSON *top, const cJSON *mine, bool nocase)
{
	cJSON *out = xj(cJSON_CreateObject());
	const cJSON *v;

	if (cJSON_IsObject(top))
		for (v = top->child; v != NULL; v = v->next) {
			bool over = nocase ? has_key_nocase(mine, v->string)
					   : cJSON_GetObjectItemCaseSensitive(
						 mine, v->string) != NULL;
			if (!over)
				add(out, v->string,
				    cJSON_CreateStringReference(
					v->valuestring));
		}
	if (cJSON_IsObject(mine))
		for (v = mine->child; v != NULL; v = v->next)
			add(out, v->string,
			    cJSON_CreateStringReference(v->valuestring));
	return out;
}

/* headers and custom_args (as one header) of personalization p. */
static int
headers_add(struct sg *g, const cJSON *p, size_t idx, cJSON *v1)
{
	const cJSON *ph = cJSON_GetObjectItemCaseSensitive(p, "headers");
	const cJSON *pa = cJSON_GetObjectItemCaseSensitive(p, "custom_args");
	cJSON *h, *args;
	char f[96], *s;

	snprintf(f, sizeof(f), "personalizations.%zu.headers", idx);
	if (string_map(g->err, f, ph, MAX_HEADERS, "too many headers") != 0)
		return -1;
	snprintf(f, sizeof(f), "personalizations.%zu.custom_args", idx);
	if (string_map(g->err, f, pa, SG_MAX_ARGS,
		       "too many to fit in their header") != 0)
		return -1;
	h = merge(g->headers, ph, true);
	add(v1, "headers", h);
	args = merge(g->custom_args, pa, false);
	if (args->child == NULL) {
		cJSON_Delete(args);
		return 0;
	}
	if (has_key_nocase(h, DROPIN_SENDGRID_ARGS_HEADER)) {
		cJSON_Delete(args);
		snprintf(
		    f, sizeof(f),
		    "personalizations.%zu.headers." DROPIN_SENDGRID_ARGS_HEADER,
		    idx);
		return bad(g->err,
			   has_key_nocase(ph, DROPIN_SENDGRID_ARGS_HEADER)
			       ? f
			       : "headers." DROPIN_SENDGRID_ARGS_HEADER,
			   "carries custom_args; set one or the other");
	}
	s = message__json_header_value(args);
	cJSON_Delete(args);
	/* The builder's cap on the header, named as the client wrote it. */
	if (strlen(s) > MAX_HEADER_VALUE_LEN) {
		free(s);
		snprintf(f, sizeof(f), "personalizations.%zu.custom_args", idx);
		return bad(
		    g->err, cJSON_IsObject(pa) && pa->child ? f : "custom_args",
		    "over 998 bytes as JSON (" DROPIN_SENDGRID_ARGS_HEADER ")");
	}
	add(h, DROPIN_SENDGRID_ARGS_HEADER, cJSON_CreateString(s));
	free(s);
	return 0;
}

/* from, reply_to / reply_to_list, subject and categories of one body. */
static int
common_add(struct sg *g, const cJSON *p, size_t idx, cJSON *v1)
{
	const cJSON *pf = cJSON_GetObjectItemCaseSensitive(p, "from");
	const cJSON *ps = cJSON_GetObjectItemCaseSensitive(p, "subject");
	char f[96];
	cJSON *v;
	size_t n = 0;

	snprintf(f, sizeof(f), "personalizations.%zu.from", idx);
	v = pf != NULL && !cJSON_IsNull(pf) ? address(g->err, f, pf)
					    : address(g->err, "from", g->from);
	if (v == NULL)
		return -1;
	add(v1, "from", v);
	if (g->reply_to != NULL && !cJSON_IsNull(g->reply_to)) {
		v = address(g->err, "reply_to", g->reply_to);
		if (v == NULL)
			return -1;
		add(v1, "reply_to", v);
	} else if (g->reply_to_list != NULL &&
		   !cJSON_IsNull(g->reply_to_list)) {
		v = address_list(g->err, "reply_to_list", g->reply_to_list, &n);
		if (v == NULL)
			return -1;
		add(v1, "reply_to", v);
	}
	snprintf(f, sizeof(f), "personalizations.%zu.subject", idx);
	if (want_string(g->err, f, ps, false) != 0)
		return -1;
	if (!cJSON_IsString(ps))
		ps = g->subject;
	if (!cJSON_IsString(ps) || ps->valuestring[0] == '\0')
		return missing(g->err, "subject");
	add(v1, "subject", cJSON_CreateStringReference(ps->valuestring));
	if (g->categories != NULL && !cJSON_IsNull(g->categories)) {
		if (!cJSON_IsArray(g->categories))
			return bad(g->err, "categories", "must be an array");
		add(v1, "tags",
		    cJSON_CreateArrayReference(g->categories->child));
	}
	return 0;
}

/* One personalization into a new /v1 tree in *out; 0 or -1. */
static int
personalization(struct sg *g, const cJSON *p, size_t idx, size_t *nrcpt,
		cJSON **out)
{
	static const char *const keys[] = {"to",      "cc",      "bcc",
					   "subject", "headers", "custom_args",
					   "from",    NULL};
	static const char *const lists[] = {"to", "cc", "bcc"};
	cJSON *v1 = xj(cJSON_CreateObject()), *arr;
	const cJSON *v;
	char f[96];
	size_t i;

	*out = NULL;
	snprintf(f, sizeof(f), "personalizations.%zu", idx);
	if (only_keys(g->err, f, p, keys) != 0)
		goto fail;
	for (i = 0; i < ARRAY_SIZE(lists); i++) {
		v = cJSON_GetObjectItemCaseSensitive(p, lists[i]);
		snprintf(f, sizeof(f), "personalizations.%zu.%s", idx,
			 lists[i]);
		if (v == NULL || cJSON_IsNull(v)) {
			if (i == 0) {
				missing(g->err, f);
				goto fail;
			}
			continue;
		}
		arr = address_list(g->err, f, v, nrcpt);
		if (arr == NULL)
			goto fail;
		add(v1, lists[i], arr);
		if (i == 0 && arr->child == NULL) {
			missing(g->err, f);
			goto fail;
		}
	}
	if (*nrcpt > g->lim->max_recipients) {
		bad(g->err, "personalizations",
		    "too many recipients in all personalizations");
		goto fail;
	}
	if (common_add(g, p, idx, v1) != 0 || content_add(g, v1) != 0 ||
	    attachments_add(g, v1) != 0 || headers_add(g, p, idx, v1) != 0)
		goto fail;
	*out = v1;
	return 0;
fail:
	cJSON_Delete(v1);
	return -1;
}

/*
 * The names of personalization p's own headers (string_map() checked
 * them) as dropin.h's own_headers holds them; NULL when none.  Each is
 * at most a builder's field name, so a body holds at most MAX_HEADERS of
 * them, a few KiB.
 */
static char *
own_headers(const cJSON *p)
{
	const cJSON *ph = cJSON_GetObjectItemCaseSensitive(p, "headers"), *v;
	char kbuf[SG_HEADER_NAME_MAX];
	struct buf b;
	const char *name;

	if (!cJSON_IsObject(ph) || ph->child == NULL)
		return NULL;
	buf_init(&b, SIZE_MAX);
	for (v = ph->child; v != NULL; v = v->next) {
		name = message__safe_name(v->string, strlen(v->string), kbuf,
					  sizeof(kbuf));
		xbuf_add(&b, name, strlen(name) + 1);
	}
	xbuf_addc(&b, '\0');
	return b.p;
}

/*
 * The bytes every personalization repeats, content and attachments: as
 * given (*given), and as the builder counts them at the least in the
 * message (*least: text as is, base64 as what it decodes to, its
 * min_size_over()).  Without exact, base64 counts as 3/4 of its length,
 * never less than what it decodes to and free; with it, its line breaks
 * are left out (message__b64_decoded_len(), a pass over it), as a
 * refusal must not count them.
 */
static void
shared_bytes(const struct sg *g, bool exact, size_t *given, size_t *least)
{
	const cJSON *c, *v;
	size_t n;

	*given = *least = 0;
	if (cJSON_IsArray(g->content))
		for (c = g->content->child; c != NULL; c = c->next) {
			v = cJSON_GetObjectItemCaseSensitive(c, "value");
			if (!cJSON_IsString(v))
				continue;
			n = strlen(v->valuestring);
			*given += n;
			*least += n;
		}
	if (cJSON_IsArray(g->attachments))
		for (c = g->attachments->child; c != NULL; c = c->next) {
			v = cJSON_GetObjectItemCaseSensitive(c, "content");
			if (!cJSON_IsString(v))
				continue;
			n = strlen(v->valuestring);
			*given += n;
			*least +=
			    exact ? message__b64_decoded_len(v->valuestring, n)
				  : n / 4 * 3 + n % 4 * 3 / 4;
		}
}

void
dropin_batch_cleanup(struct dropin_batch *b)
{
	size_t i;

	if (b == NULL)
		return;
	for (i = 0; i < b->n; i++)
		free(b->json[i]);
	free(b->json);
	free(b->len);
	for (i = 0; b->own_headers != NULL && i < b->n; i++)
		free(b->own_headers[i]);
	free(b->own_headers);
	memset(b, 0, sizeof(*b));
}

static int
too_large(struct message_error *err, size_t max_total)
{
	return message__fail(err, 413, "too_large",
			     "personalizations: the messages of one request "
			     "together are larger than %zu bytes",
			     max_total);
}

/* Every personalization printed into out; 0 or -1. */
static int
translate(struct sg *g, size_t max_total, struct dropin_batch *out)
{
	size_t n = (size_t)cJSON_GetArraySize(g->pers), i, total = 0;
	size_t nrcpt = 0;
	size_t given, least;
	const cJSON *p;
	cJSON *v1;

	/*
	 * Refused before any copy is printed: content the builder would
	 * refuse anyway (its first size check, on the same counts), and
	 * content that n copies would take past max_total.
	 */
	shared_bytes(g, false, &given, &least);
	if (least > g->lim->max_message_bytes)
		shared_bytes(g, true, &given, &least);
	if (least > g->lim->max_message_bytes)
		return message__fail(g->err, 413, "too_large",
				     "message: larger than %zu bytes",
				     g->lim->max_message_bytes);
	if (given > max_total / n)
		return too_large(g->err, max_total);
	out->json = xcalloc(n, sizeof(*out->json));
	out->len = xcalloc(n, sizeof(*out->len));
	out->own_headers = xcalloc(n, sizeof(*out->own_headers));
	for (i = 0, p = g->pers->child; p != NULL; p = p->next, i++) {
		if (personalization(g, p, i, &nrcpt, &v1) != 0)
			return -1;
		out->own_headers[i] = own_headers(p);
		out->json[i] = cJSON_PrintUnformatted(v1);
		cJSON_Delete(v1);
		if (out->json[i] == NULL)
			fatalx("dropin: out of memory");
		out->len[i] = strlen(out->json[i]);
		out->n = i + 1;
		total += out->len[i];
		if (total > max_total)
			return too_large(g->err, max_total);
	}
	return 0;
}

int
dropin_sendgrid(const char *body, size_t len, const struct message_limits *lim,
		size_t max_total, struct dropin_batch *out,
		struct message_error *err)
{
	struct sg g;
	cJSON *root = NULL;
	bool nul = false;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	memset(&g, 0, sizeof(g));
	g.lim = lim;
	g.err = err;
	if (message__json_parse(body, len, &root, &nul, err) != 0)
		goto out;
	if (nul) {
		bad(err, "body", "contains a NUL (\\u0000)");
		goto out;
	}
	g.root = root;
	if (top_fields(&g) != 0 || translate(&g, max_total, out) != 0)
		goto out;
	rc = 0;
out:
	if (rc != 0)
		dropin_batch_cleanup(out);
	cJSON_Delete(root);
	return rc;
}

/* The /v1 names a build refusal may start with, and SendGrid's. */
static const struct {
	const char *v1;
	const char *sg; /* "%zu" is the personalization */
} field_map[] = {
    {"to", "personalizations.%zu.to"},
    {"cc", "personalizations.%zu.cc"},
    {"bcc", "personalizations.%zu.bcc"},
    {"from", "from"},
    {"reply_to", "reply_to"},
    {"subject", "subject"},
    {"text", "content"},
    {"html", "content"},
    {"headers", "headers"},
    {"attachments", "attachments"},
    {"tags", "categories"},
    {"message", ""},
    {"body", ""},
};

/*
 * A /v1 header refusal ("headers.NAME: why", NAME as the builder printed
 * it) into field, in SendGrid's terms: under personalization p when it
 * set NAME (own, dropin.h's own_headers), else the top-level map.  NAME
 * is matched whole against own rather than cut at the first ": ", since a
 * bad name may hold one; it is kept as written (brackets included).
 */
static void
header_field(const char *own, const char *msg, size_t p, char *field,
	     size_t fieldsz)
{
	const char *name = msg + strlen("headers."), *colon;
	size_t n;

	for (; own != NULL && *own != '\0'; own += n + 1) {
		n = strlen(own);
		if (strncasecmp(name, own, n) == 0 &&
		    strncmp(name + n, ": ", 2) == 0) {
			snprintf(field, fieldsz,
				 "personalizations.%zu.headers.%.*s", p, (int)n,
				 name);
			return;
		}
	}
	colon = strstr(name, ": ");
	snprintf(field, fieldsz, "headers.%.*s",
		 colon != NULL ? (int)(colon - name) : 0, name);
}

void
dropin_sendgrid_field(const struct dropin_batch *b, const char *msg, size_t p,
		      char *field, size_t fieldsz)
{
	const char *colon = strstr(msg, ": "), *rest;
	size_t i, n;
	char head[64], tail[160];

	field[0] = '\0';
	if (colon == NULL)
		return;
	if (strncmp(msg, "headers.", 8) == 0) {
		header_field(b != NULL && b->own_headers != NULL && p < b->n
				 ? b->own_headers[p]
				 : NULL,
			     msg, p, field, fieldsz);
		return;
	}
	n = strcspn(msg, ".[:");
	for (i = 0; i < ARRAY_SIZE(field_map); i++)
		if (strlen(field_map[i].v1) == n &&
		    strncmp(msg, field_map[i].v1, n) == 0)
			break;
	if (i == ARRAY_SIZE(field_map) || field_map[i].sg[0] == '\0')
		return;
	/* "to[1]" -> ".1", "attachments[0].x" -> ".0.x": SendGrid's dotted
	 * paths. */
	rest = msg + n;
	n = 0;
	for (; rest < colon && n + 1 < sizeof(tail); rest++)
		if (*rest == '[')
			tail[n++] = '.';
		else if (*rest != ']')
			tail[n++] = *rest;
	tail[n] = '\0';
	if (strstr(field_map[i].sg, "%zu") != NULL)
		snprintf(head, sizeof(head), "personalizations.%zu.%s", p,
			 field_map[i].v1);
	else
		snprintf(head, sizeof(head), "%s", field_map[i].sg);
	snprintf(field, fieldsz, "%s%s", head,
		 strcmp(field_map[i].v1, "text") == 0 ||
			 strcmp(field_map[i].v1, "html") == 0
		     ? ""
		     : tail);
}
