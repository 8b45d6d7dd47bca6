/*
 * An envelope's ASCII form for a path without SMTPUTF8 (envelope.h).
 * libidn2 turns a domain's U-labels into A-labels; this file only splits
 * an address at its last '@' (a quoted local part may hold one, a domain
 * never) and decides what has no ASCII form.
 */
#include "common/envelope.h"
#include "common/util.h"

#include <idn2.h>
#include <stdlib.h>
#include <string.h>

static bool
ascii(const char *p)
{
	for (; *p != '\0'; p++)
		if ((unsigned char)*p >= 0x80)
			return false;
	return true;
}

bool
envelope_utf8(const char *from, const char *const *rcpt, size_t n)
{
	size_t i;

	if (from != NULL && !ascii(from))
		return true;
	for (i = 0; i < n; i++)
		if (!ascii(rcpt[i]))
			return true;
	return false;
}

/* The domain's A-labels (UTS #46 nontransitional, lower case): 0 and
 * *out (libidn2's, for idn2_free), or -1 when it is no valid IDN host name. */
static int
domain_ascii(const char *domain, char **out)
{
	*out = NULL;
	if (idn2_to_ascii_8z(domain, out, IDN2_NONTRANSITIONAL) != IDN2_OK ||
	    *out == NULL)
		goto fail;
	/* libidn2 lets an empty label through; a host name has none. */
	if (!dns_name_ok(*out, strlen(*out)))
		goto fail;
	return 0;
fail:
	idn2_free(*out);
	*out = NULL;
	return -1;
}

/* The local part of addr (up to at) and dom joined, when it fits. */
static char *
join(const char *addr, const char *at, const char *dom)
{
	size_t llen = (size_t)(at - addr), dlen = strlen(dom);
	char *out;

	if (llen + 1 + dlen > ENVELOPE_ADDR_MAX)
		return NULL;
	out = xmalloc(llen + 1 + dlen + 1);
	memcpy(out, addr, llen + 1);
	memcpy(out + llen + 1, dom, dlen + 1);
	return out;
}

int
envelope_addr_ascii(const char *addr, char **out)
{
	const char *at, *p;
	char *dom;

	*out = NULL;
	if (ascii(addr))
		return 0;
	at = strrchr(addr, '@');
	if (at == NULL)
		return -1;
	for (p = addr; p < at; p++)
		if ((unsigned char)*p >= 0x80)
			return -1;
	if (domain_ascii(at + 1, &dom) != 0)
		return -1;
	*out = join(addr, at, dom);
	idn2_free(dom);
	return *out != NULL ? 0 : -1;
}

char *
envelope_addr_alabels(const char *addr)
{
	const char *at = strrchr(addr, '@');
	char *dom, *out = NULL;

	if (at != NULL && !ascii(at + 1) && domain_ascii(at + 1, &dom) == 0) {
		out = join(addr, at, dom);
		idn2_free(dom);
	}
	return out != NULL ? out : xstrdup(addr);
}

bool
envelope_needs_smtputf8(const char *from, const char *const *rcpt, size_t n)
{
	char *a;
	size_t i;

	for (i = 0; i <= n; i++) {
		const char *addr = i == 0 ? from : rcpt[i - 1];
		if (addr == NULL || ascii(addr))
			continue;
		if (envelope_addr_ascii(addr, &a) != 0)
			return true;
		free(a);
	}
	return false;
}

enum envelope_need
envelope_need(const char *from, const char *const *rcpt, size_t n)
{
	if (!envelope_utf8(from, rcpt, n))
		return ENVELOPE_ASCII;
	return envelope_needs_smtputf8(from, rcpt, n) ? ENVELOPE_SMTPUTF8
						      : ENVELOPE_ALABELS;
}

int
envelope_ascii(const char *from, const char *const *rcpt, size_t n,
	       char **from_out, char ***rcpt_out)
{
	char *f = NULL, **r;
	size_t i;

	r = xcalloc(n > 0 ? n : 1, sizeof(*r));
	if (from != NULL) {
		if (envelope_addr_ascii(from, &f) != 0)
			goto fail;
		if (f == NULL)
			f = xstrdup(from);
	}
	for (i = 0; i < n; i++) {
		if (envelope_addr_ascii(rcpt[i], &r[i]) != 0)
			goto fail;
		if (r[i] == NULL)
			r[i] = xstrdup(rcpt[i]);
	}
	*from_out = f;
	*rcpt_out = r;
	return 0;
fail:
	envelope_ascii_free(f, r, n);
	return -1;
}

void
envelope_ascii_free(char *from, char **rcpt, size_t n)
{
	size_t i;

	free(from);
	if (rcpt == NULL)
		return;
	for (i = 0; i < n; i++)
		free(rcpt[i]);
	free(rcpt);
}
