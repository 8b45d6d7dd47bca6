/*
 * Mailgun (dropin.h): the fields of a parsed form (form.h) turned into
 * one /v1 body (POST /v3/DOMAIN/messages), or into a raw message with its
 * envelope for submit_mime() (POST /v3/DOMAIN/messages.mime).
 *
 * messages: from (once), to / cc / bcc (repeated or comma-separated),
 * subject, text, html (once each), h:NAME (a header; h:Reply-To is the
 * reply_to), v:NAME (variables, carried as the X-Mailgun-Variables header
 * as Mailgun does), o:tag (repeated: our tags), attachment and inline
 * files (inline ones cited as cid:FILENAME).  Refused, naming the field:
 * every other field (o:testmode, o:deliverytime, t:*, template,
 * amp-html, recipient-variables, ...), a single field given twice, a NUL
 * in a text field, a file where text belongs and text where a file does.
 * messages.mime: to and message only; the envelope sender is the address
 * of the message's From header.
 *
 * The /v1 body copies the values (cJSON strings must end with a NUL) and
 * base64-encodes the files, so what cannot fit is refused before any copy
 * (form_size_check(), and the builder's 998-byte cap on each header-bound
 * value): otherwise the form cap (three times the limit, for urlencoded
 * text) let one request of control bytes cost eight times its size and
 * seconds of a thread before the builder's 413.  Allocation failure is
 * fatal.
 */
#include "common/envelope.h"
#include "intake/dropin.h"
#include "intake/form.h"
#include "intake/message_int.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

size_t
dropin_form_max_bytes(const struct message_limits *lim)
{
	size_t m = lim->max_message_bytes;
	size_t extra = lim->max_recipients * (3 * MAX_ADDRESS_LEN + 16);
	size_t slack = 1024 * 1024;

	if (m > (SIZE_MAX - extra - slack) / 3)
		return SIZE_MAX;
	return 3 * m + extra + slack;
}

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

static const char *
fname(const struct form_field *f, char *buf, size_t sz)
{
	return message__safe_name(f->name, strlen(f->name), buf, sz);
}

/* A text field's value as a new C string; NULL (refused) on a NUL. */
static char *
text_of(const struct form_field *f, struct message_error *err)
{
	char kbuf[64], *s;

	if (memchr(f->value, '\0', f->len) != NULL) {
		message__invalid(err, fname(f, kbuf, sizeof(kbuf)),
				 "contains NUL");
		return NULL;
	}
	/* The /v1 body is JSON: its strings must be UTF-8. */
	if (!g_utf8_validate_len(f->value, f->len, NULL)) {
		message__invalid(err, fname(f, kbuf, sizeof(kbuf)),
				 "not valid UTF-8");
		return NULL;
	}
	s = xmalloc(f->len + 1);
	memcpy(s, f->value, f->len);
	s[f->len] = '\0';
	return s;
}

/* A new cJSON string of a text field, or NULL with err filled. */
static cJSON *
text_json(const struct form_field *f, struct message_error *err)
{
	char *s = text_of(f, err);
	cJSON *v;

	if (s == NULL)
		return NULL;
	v = xj(cJSON_CreateString(s));
	free(s);
	return v;
}

/*
 * Appends each address of a comma-separated list to arr: commas inside
 * quotes or angle brackets do not split.  Counts into *n.
 */
static int
split_addresses(const struct form_field *f, cJSON *arr, size_t *n,
		const struct message_limits *lim, struct message_error *err)
{
	char *s = text_of(f, err), *p, *start;
	bool q = false;
	int angle = 0;

	if (s == NULL)
		return -1;
	for (p = start = s;; p++) {
		if (*p == '\\' && q && p[1] != '\0') {
			p++;
			continue;
		}
		if (*p == '"')
			q = !q;
		else if (*p == '<' && !q)
			angle++;
		else if (*p == '>' && !q && angle > 0)
			angle--;
		if (*p != '\0' && (*p != ',' || q || angle > 0))
			continue;
		bool last = *p == '\0';
		*p = '\0';
		while (*start == ' ' || *start == '\t')
			start++;
		size_t len = strlen(start);
		while (len > 0 &&
		       (start[len - 1] == ' ' || start[len - 1] == '\t'))
			start[--len] = '\0';
		if (len > 0) {
			if (++*n > lim->max_recipients) {
				free(s);
				return message__invalid(err, f->name,
							"too many recipients");
			}
			/* The builder's cap on one address as given. */
			if (len > MAX_ADDRESS_LEN) {
				free(s);
				return message__invalid(err, f->name,
							"too long");
			}
			push(arr, cJSON_CreateString(start));
		}
		if (last)
			break;
		start = p + 1;
	}
	free(s);
	return 0;
}

/* RFC 4648 base64 of n bytes, unwrapped, as a new C string. */
static char *
base64_new(const unsigned char *d, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = xmalloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		*o++ = tab[d[i] >> 2];
		*o++ = tab[((d[i] & 3) << 4) | (d[i + 1] >> 4)];
		*o++ = tab[((d[i + 1] & 15) << 2) | (d[i + 2] >> 6)];
		*o++ = tab[d[i + 2] & 63];
	}
	if (n - i == 1) {
		*o++ = tab[d[i] >> 2];
		*o++ = tab[(d[i] & 3) << 4];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		*o++ = tab[d[i] >> 2];
		*o++ = tab[((d[i] & 3) << 4) | (d[i + 1] >> 4)];
		*o++ = tab[(d[i + 1] & 15) << 2];
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

/* A file part as a /v1 attachment; inline ones get content_id. */
static void
attachment_add(cJSON *arr, const struct form_field *f, bool inl)
{
	cJSON *o = xj(cJSON_CreateObject()), *v;
	char *ct = NULL, *b64;
	size_t len, slash;

	push(arr, o);
	add(o, "filename", cJSON_CreateString(f->filename));
	if (f->ctype != NULL) {
		/*
		 * "text/plain; charset=iso-8859-1" goes as given: without its
		 * charset a text file is read as ASCII or UTF-8.  Parameters
		 * /v1 would refuse (RFC 2231, one given twice) are what a
		 * client's form library wrote, not the sender's words: the
		 * file keeps its bare type rather than being refused.
		 */
		ct = xstrdup(f->ctype);
		len = strlen(ct);
		while (len > 0 && (ct[len - 1] == ' ' || ct[len - 1] == '\t'))
			ct[--len] = '\0';
		if (!message__content_type_ok(ct, len, &slash))
			ct[strcspn(ct, "; \t")] = '\0';
		add(o, "content_type", cJSON_CreateString(ct));
		free(ct);
	}
	/* The encoding is handed to the tree, not copied (a file may be
	 * megabytes): cJSON frees a string with free(), its default hook,
	 * which this program never changes (no cJSON_InitHooks). */
	b64 = base64_new((const unsigned char *)f->value, f->len);
	v = xj(cJSON_CreateString(""));
	free(v->valuestring);
	v->valuestring = b64;
	add(o, "content_base64", v);
	if (inl)
		add(o, "content_id", cJSON_CreateString(f->filename));
}

/* The fields a message may have once, and their /v1 names. */
static const char *const singles[][2] = {
    {"from", "from"},
    {"subject", "subject"},
    {"text", "text"},
    {"html", "html"},
};

/* obj's member key, made (an array or an object) when missing. */
static cJSON *
member(cJSON *obj, const char *key, bool array)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (v == NULL) {
		v = xj(array ? cJSON_CreateArray() : cJSON_CreateObject());
		add(obj, key, v);
	}
	return v;
}

/* A text field into obj under key, refused when already there. */
static int
once_add(const struct form_field *f, cJSON *obj, const char *key,
	 struct message_error *err)
{
	char kbuf[64];
	cJSON *v;

	if (cJSON_GetObjectItemCaseSensitive(obj, key) != NULL)
		return message__invalid(err, fname(f, kbuf, sizeof(kbuf)),
					"given twice");
	v = text_json(f, err);
	if (v == NULL)
		return -1;
	add(obj, key, v);
	return 0;
}

/* o:tag, repeated, into tags. */
static int
tag_add(const struct form_field *f, cJSON *v1, struct message_error *err)
{
	cJSON *arr = member(v1, "tags", true), *v;

	if (cJSON_GetArraySize(arr) >= MAX_TAGS)
		return message__invalid(err, "o:tag", "at most 10 tags");
	v = text_json(f, err);
	if (v == NULL)
		return -1;
	push(arr, v);
	return 0;
}

/*
 * h:NAME into v1's headers.  Header names are compared without case
 * (RFC 5322), so h:X-Foo and h:x-foo are one header given twice, refused
 * as any single field given twice is; else both would be written.  The
 * builder's cap on headers holds here too, so the comparison of every
 * pair stays small however many parts the form has.
 */
static int
header_add(const struct form_field *f, cJSON *v1, struct message_error *err)
{
	cJSON *hdrs = member(v1, "headers", false);
	const cJSON *e;
	char kbuf[64];

	if (cJSON_GetArraySize(hdrs) >= MAX_HEADERS)
		return message__invalid(err, fname(f, kbuf, sizeof(kbuf)),
					"too many headers");
	for (e = hdrs->child; e != NULL; e = e->next)
		if (strcasecmp(e->string, f->name + 2) == 0)
			return message__invalid(
			    err, fname(f, kbuf, sizeof(kbuf)),
			    "given twice (header names are compared "
			    "without case)");
	return once_add(f, hdrs, f->name + 2, err);
}

/* One field of the form into v1 (v: ones into vars); 0 or -1. */
static int
field_add(const struct form_field *f, cJSON *v1, cJSON *vars,
	  const struct message_limits *lim, size_t *nrcpt,
	  struct message_error *err)
{
	char kbuf[64];
	const char *name = f->name;
	size_t i;

	if (!g_utf8_validate(name, -1, NULL) ||
	    (f->filename != NULL && !g_utf8_validate(f->filename, -1, NULL)) ||
	    (f->ctype != NULL && !g_utf8_validate(f->ctype, -1, NULL)))
		return message__invalid(err, fname(f, kbuf, sizeof(kbuf)),
					"name, file name or type not UTF-8");
	if (strcmp(name, "attachment") == 0 || strcmp(name, "inline") == 0) {
		if (f->filename == NULL)
			return message__invalid(err, name, "must be a file");
		attachment_add(member(v1, "attachments", true), f,
			       name[0] == 'i');
		return 0;
	}
	if (f->filename != NULL)
		return message__invalid(err, fname(f, kbuf, sizeof(kbuf)),
					"must not be a file");
	/* Every field but these bodies and the address lists is one
	 * header's value (or part of one), which the builder takes up to
	 * MAX_HEADER_VALUE_LEN bytes: refused before it is copied. */
	if (f->len > MAX_HEADER_VALUE_LEN && strcmp(name, "text") != 0 &&
	    strcmp(name, "html") != 0 && strcmp(name, "to") != 0 &&
	    strcmp(name, "cc") != 0 && strcmp(name, "bcc") != 0)
		return message__invalid(err, fname(f, kbuf, sizeof(kbuf)),
					"too long");
	for (i = 0; i < ARRAY_SIZE(singles); i++)
		if (strcmp(name, singles[i][0]) == 0)
			return once_add(f, v1, singles[i][1], err);
	if (strcmp(name, "to") == 0 || strcmp(name, "cc") == 0 ||
	    strcmp(name, "bcc") == 0)
		return split_addresses(f, member(v1, name, true), nrcpt, lim,
				       err);
	if (strcmp(name, "o:tag") == 0)
		return tag_add(f, v1, err);
	if (strncmp(name, "v:", 2) == 0 && name[2] != '\0')
		return once_add(f, vars, name + 2, err);
	if (strcasecmp(name, "h:Reply-To") == 0)
		return once_add(f, v1, "reply_to", err);
	if (strncmp(name, "h:", 2) == 0 && name[2] != '\0')
		return header_add(f, v1, err);
	return message__invalid(err, fname(f, kbuf, sizeof(kbuf)),
				"not supported by this relay");
}

/* v: variables as the X-Mailgun-Variables header; 0 or -1. */
static int
vars_add(cJSON *v1, cJSON *vars, struct message_error *err)
{
	cJSON *h;
	char *s;

	if (vars->child == NULL)
		return 0;
	h = cJSON_GetObjectItemCaseSensitive(v1, "headers");
	if (h == NULL) {
		h = xj(cJSON_CreateObject());
		add(v1, "headers", h);
	}
	for (cJSON *e = h->child; e != NULL; e = e->next)
		if (strcasecmp(e->string, DROPIN_MAILGUN_VARS_HEADER) == 0)
			return message__invalid(
			    err, "h:" DROPIN_MAILGUN_VARS_HEADER,
			    "given with v: variables; use one or the other");
	s = message__json_header_value(vars);
	/* The builder's cap on the header, named as the client wrote it
	 * (it sent v: fields, not the header). */
	if (strlen(s) > MAX_HEADER_VALUE_LEN) {
		free(s);
		return message__invalid(
		    err, "v:",
		    "the variables together are over 998 "
		    "bytes as JSON (" DROPIN_MAILGUN_VARS_HEADER ")");
	}
	add(h, DROPIN_MAILGUN_VARS_HEADER, cJSON_CreateString(s));
	free(s);
	return 0;
}

/* The length of n bytes as a JSON string's content, as cJSON writes it. */
static size_t
json_escaped_len(const char *s, size_t n)
{
	size_t i, len = n;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\' || c == '\b' || c == '\f' ||
		    c == '\n' || c == '\r' || c == '\t')
			len += 1;
		else if (c < 0x20)
			len += 5; /* \u00XX */
	}
	return len;
}

/*
 * Refuses, before anything is copied, a form whose text, html and files
 * cannot fit in max_message_bytes, so that a request of tens of
 * megabytes costs one pass over it, not a base64 copy, a JSON copy and a
 * parse (hundreds of megabytes: text of control bytes is six times its
 * size as JSON).  Two counts, each exact (it refuses nothing the builder
 * would take):
 *  - the bytes as sent: the builder's first size check (min_size_over()),
 *    which counts text and html as they are and each file as what its
 *    base64 decodes to (its length);
 *  - the bytes of their /v1 JSON: each byte of text, html or a file's
 *    base64 in the JSON becomes at least half a byte of the message
 *    ("\r\n" is 4 bytes of JSON for a CRLF, a control byte 6 for its
 *    quoted-printable 3), so JSON over twice the limit cannot fit.
 */
static int
form_size_check(const struct form *fm, const struct message_limits *lim,
		struct message_error *err)
{
	size_t i, given = 0, json = 0, m = lim->max_message_bytes;

	for (i = 0; i < fm->n; i++) {
		const struct form_field *f = &fm->f[i];

		if (f->filename != NULL) {
			given += f->len;
			json += (f->len + 2) / 3 * 4;
		} else if (strcmp(f->name, "text") == 0 ||
			   strcmp(f->name, "html") == 0) {
			given += f->len;
			json += json_escaped_len(f->value, f->len);
		}
	}
	if (given > m || json / 2 > m)
		return message__fail(err, 413, "too_large",
				     "message: larger than %zu bytes", m);
	return 0;
}

int
dropin_mailgun(const struct form *fm, const struct message_limits *lim,
	       struct dropin_batch *out, struct message_error *err)
{
	cJSON *v1, *vars;
	size_t i, nrcpt = 0;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (form_size_check(fm, lim, err) != 0)
		return -1;
	v1 = xj(cJSON_CreateObject());
	vars = xj(cJSON_CreateObject());
	for (i = 0; i < fm->n; i++)
		if (field_add(&fm->f[i], v1, vars, lim, &nrcpt, err) != 0)
			goto out;
	if (cJSON_GetObjectItemCaseSensitive(v1, "from") == NULL) {
		message__fail(err, 400, "missing_field", "from: required");
		goto out;
	}
	if (vars_add(v1, vars, err) != 0)
		goto out;
	out->json = xcalloc(1, sizeof(*out->json));
	out->len = xcalloc(1, sizeof(*out->len));
	out->json[0] = cJSON_PrintUnformatted(v1);
	if (out->json[0] == NULL)
		fatalx("dropin: out of memory");
	out->len[0] = strlen(out->json[0]);
	out->n = 1;
	rc = 0;
out:
	cJSON_Delete(vars);
	cJSON_Delete(v1);
	return rc;
}

/* The /v1 names a build refusal may start with, and Mailgun's. */
static const char *const mg_names[][2] = {
    {"reply_to", "h:Reply-To"},
    {"tags", "o:tag"},
    {"attachments", "attachment"},
    {"headers.", "h:"},
};

void
dropin_mailgun_message(const char *msg, char *out, size_t outsz)
{
	size_t i, n;

	for (i = 0; i < ARRAY_SIZE(mg_names); i++) {
		n = strlen(mg_names[i][0]);
		if (strncmp(msg, mg_names[i][0], n) == 0) {
			snprintf(out, outsz, "%s%s", mg_names[i][1], msg + n);
			return;
		}
	}
	snprintf(out, outsz, "%s", msg);
}

void
dropin_mime_cleanup(struct dropin_mime *dm)
{
	size_t i;

	if (dm == NULL)
		return;
	for (i = 0; i < dm->nrcpt; i++)
		free(dm->rcpt[i]);
	free(dm->rcpt);
	free(dm->mail_from);
	memset(dm, 0, sizeof(*dm));
}

/*
 * The value of the From header of raw (unfolded), as a new string; NULL
 * when there is none in the header block.  Bounded by the header block.
 */
static char *
from_header(const char *raw, size_t len)
{
	struct buf v;
	size_t i = 0, eol;
	bool in = false;

	buf_init(&v, 4096);
	while (i < len) {
		const char *nl = memchr(raw + i, '\n', len - i);

		eol = nl != NULL ? (size_t)(nl - raw) : len;
		size_t ln = eol - i;
		if (ln > 0 && raw[eol - 1] == '\r')
			ln--;
		if (ln == 0)
			break; /* the end of the header block */
		if (raw[i] == ' ' || raw[i] == '\t') {
			if (in && buf_append(&v, raw + i, ln) != 0)
				goto fail;
		} else if (in) {
			break;
		} else if (ln >= 5 && strncasecmp(raw + i, "From:", 5) == 0) {
			in = true;
			if (buf_append(&v, raw + i + 5, ln - 5) != 0)
				goto fail;
		}
		i = eol + 1;
	}
	if (!in)
		goto fail;
	return buf_take(&v, NULL);
fail:
	buf_cleanup(&v);
	return NULL;
}

/*
 * The addr-spec of the one mailbox in a From value or a "to" entry, as a
 * new string; NULL when it is not one mailbox as /v1 takes it.  The value
 * is screened first: GMime's parser leaks on shapes such as "a@b <c"
 * (found by fuzz_multipart), and those are no single mailbox.
 */
static char *
mailbox_addr(const char *value)
{
	InternetAddressList *l;
	InternetAddress *a;
	char *out = NULL;

	if (!message__addr_shape_ok(value, strlen(value)))
		return NULL;
	l = internet_address_list_parse(message__parser_opts, value);
	if (l == NULL)
		return NULL;
	if (internet_address_list_length(l) >= 1) {
		a = internet_address_list_get_address(l, 0);
		if (INTERNET_ADDRESS_IS_MAILBOX(a)) {
			const char *s = internet_address_mailbox_get_addr(
			    INTERNET_ADDRESS_MAILBOX(a));
			if (s != NULL)
				out = envelope_addr_alabels(s);
			if (out != NULL && !message__addr_spec_ok(out)) {
				free(out);
				out = NULL;
			}
		}
	}
	g_object_unref(l);
	return out;
}

/*
 * Each "to" entry's addr-spec ("Name <a@b>" gives a@b), read as /v1 reads
 * an address: the last '<' of the entry was taken before, so a quoted
 * name ("x <y@z>" w@v) sent the message to what it quoted.
 */
static int
mime_rcpt(const struct form_field *f, struct dropin_mime *dm,
	  const struct message_limits *lim, struct message_error *err)
{
	cJSON *arr = xj(cJSON_CreateArray());
	const cJSON *e;
	size_t n = dm->nrcpt;
	char *a;

	if (split_addresses(f, arr, &n, lim, err) != 0) {
		cJSON_Delete(arr);
		return -1;
	}
	dm->rcpt = xreallocarray(dm->rcpt, n > 0 ? n : 1, sizeof(*dm->rcpt));
	for (e = arr->child; e != NULL; e = e->next) {
		a = mailbox_addr(e->valuestring);
		if (a == NULL) {
			cJSON_Delete(arr);
			return message__invalid(err, "to",
						"not a valid address");
		}
		dm->rcpt[dm->nrcpt++] = a;
	}
	cJSON_Delete(arr);
	return 0;
}

int
dropin_mailgun_mime(const struct form *fm, const struct message_limits *lim,
		    struct dropin_mime *out, struct message_error *err)
{
	const struct form_field *msg = NULL, *f;
	char kbuf[64], *from;
	size_t i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < fm->n; i++) {
		f = &fm->f[i];
		if (strcmp(f->name, "to") == 0) {
			if (mime_rcpt(f, out, lim, err) != 0)
				goto fail;
		} else if (strcmp(f->name, "message") == 0) {
			if (msg != NULL) {
				message__invalid(err, "message", "given twice");
				goto fail;
			}
			msg = f;
		} else {
			message__invalid(err, fname(f, kbuf, sizeof(kbuf)),
					 "not supported with messages.mime");
			goto fail;
		}
	}
	if (msg == NULL || out->nrcpt == 0) {
		message__fail(err, 400, "missing_field", "%s: required",
			      msg == NULL ? "message" : "to");
		goto fail;
	}
	/* message_from_mime()'s first check, before the From is sought. */
	if (msg->len > lim->max_message_bytes) {
		message__fail(err, 413, "too_large",
			      "message: larger than %zu bytes",
			      lim->max_message_bytes);
		goto fail;
	}
	from = from_header(msg->value, msg->len);
	out->mail_from = from != NULL ? mailbox_addr(from) : NULL;
	free(from);
	if (out->mail_from == NULL) {
		message__invalid(err, "message",
				 "no From header with one valid address");
		goto fail;
	}
	out->raw = msg->value;
	out->len = msg->len;
	return 0;
fail:
	dropin_mime_cleanup(out);
	return -1;
}
