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

int
envelope_addr_ascii(const char *addr, char **out)
{
	const char *at;
	char *domain = NULL;
	size_t i, llen, dlen;

	*out = NULL;
	if (ascii(addr))
		return 0;
	at = strrchr(addr, '@');
	if (at == NULL)
		return -1;
	llen = (size_t)(at - addr);
	for (i = 0; i < llen; i++)
		if ((unsigned char)addr[i] >= 0x80)
			return -1;
	/* Lower case and NFC-mapped, as UTS #46 has every lookup do. */
	if (idn2_to_ascii_8z(at + 1, &domain, IDN2_NONTRANSITIONAL) !=
		IDN2_OK ||
	    domain == NULL)
		goto fail;
	/* libidn2 lets an empty label through; a host name has none. */
	dlen = strlen(domain);
	if (!dns_name_ok(domain, dlen) || llen + 1 + dlen > ENVELOPE_ADDR_MAX)
		goto fail;
	*out = xmalloc(llen + 1 + dlen + 1);
	memcpy(*out, addr, llen + 1);
	memcpy(*out + llen + 1, domain, dlen + 1);
	idn2_free(domain);
	return 0;
fail:
	idn2_free(domain);
	return -1;
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
