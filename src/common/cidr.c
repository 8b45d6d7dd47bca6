/*
 * Network lists in CIDR form (see cidr.h).  A list is parsed once at
 * configuration time into an array of (family, address, prefix) with the
 * address kept in network byte order, so matching a connection is a loop of
 * byte compares with no allocation and no parsing.  Bad text is refused
 * whole with the offending item named; nothing here is fatal.  IPv4-mapped
 * IPv6 peers are unwrapped before matching, because a dual-stack listener
 * reports every IPv4 client in that form and "127.0.0.0/8" must still mean
 * them.
 */
#include "common/cidr.h"

#include "common/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The longest item worth parsing: an IPv6 address in text and "/128". */
#define CIDR_ITEM_MAX (INET6_ADDRSTRLEN + 4)

struct cidr_net {
	int family;      /* AF_INET or AF_INET6 */
	unsigned prefix; /* 0..32 or 0..128 */
	uint8_t addr[16];
};

struct cidr_list {
	size_t n;
	struct cidr_net *nets;
};

/* Do the first prefix bits of a and b agree? */
static bool
prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	unsigned whole = prefix / 8, rest = prefix % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xffu << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

/* Are all bits of addr (len bytes) past prefix zero? */
static bool
host_bits_clear(const uint8_t *addr, size_t len, unsigned prefix)
{
	for (unsigned bit = prefix; bit < len * 8; bit++)
		if (addr[bit / 8] & (0x80u >> (bit % 8)))
			return false;
	return true;
}

/* "8" into 0..max; only decimal digits, no sign, no leading zeros. */
static int
prefix_parse(const char *s, unsigned max, unsigned *out)
{
	unsigned v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* One item (NUL-terminated, trimmed) into *net; 0 or -EINVAL with why. */
static int
item_parse(char *item, struct cidr_net *net, const char **why)
{
	char *slash = strchr(item, '/');
	size_t len;

	memset(net, 0, sizeof(*net));
	if (slash != NULL)
		*slash = '\0';
	if (inet_pton(AF_INET, item, net->addr) == 1) {
		net->family = AF_INET;
		len = 4;
	} else if (inet_pton(AF_INET6, item, net->addr) == 1) {
		net->family = AF_INET6;
		len = 16;
	} else {
		*why = "not an IPv4 or IPv6 address";
		return -EINVAL;
	}
	net->prefix = (unsigned)len * 8;
	if (slash != NULL &&
	    prefix_parse(slash + 1, (unsigned)len * 8, &net->prefix) != 0) {
		*why = net->family == AF_INET ? "prefix is not 0..32"
					      : "prefix is not 0..128";
		return -EINVAL;
	}
	if (!host_bits_clear(net->addr, len, net->prefix)) {
		*why = "address has bits set past the prefix";
		return -EINVAL;
	}
	return 0;
}

/*
 * The next item of text at *pos, trimmed, into item; its length or -1 when
 * too long.  *pos moves past the comma, or to NULL after the last item.
 */
static int
next_item(const char **pos, char *item, size_t itemsz)
{
	const char *p = *pos, *end = strchr(p, ',');
	size_t n;

	if (end == NULL)
		end = p + strlen(p);
	*pos = *end == ',' ? end + 1 : NULL;
	while (p < end && isspace((unsigned char)*p))
		p++;
	while (end > p && isspace((unsigned char)end[-1]))
		end--;
	n = (size_t)(end - p);
	if (n >= itemsz) {
		memcpy(item, p, itemsz - 1);
		item[itemsz - 1] = '\0';
		return -1;
	}
	memcpy(item, p, n);
	item[n] = '\0';
	return (int)n;
}

static bool
only_space(const char *s)
{
	for (; *s != '\0'; s++)
		if (!isspace((unsigned char)*s))
			return false;
	return true;
}

int
cidr_list_parse(const char *text, struct cidr_list **out, char *err,
		size_t errlen)
{
	struct cidr_list *l = xcalloc(1, sizeof(*l));
	const char *pos = text == NULL ? "" : text;
	size_t cap = 0;

	*out = NULL;
	/* Only an all-blank text is the empty list; "a," has an empty item. */
	if (only_space(pos))
		pos = NULL;
	while (pos != NULL) {
		char item[CIDR_ITEM_MAX + 1];
		const char *why = NULL;
		struct cidr_net net;
		int n = next_item(&pos, item, sizeof(item));

		if (n < 0)
			why = "too long for an address";
		else if (n == 0)
			why = "empty item";
		if (why == NULL && item_parse(item, &net, &why) == 0) {
			if (l->n == cap) {
				cap = cap == 0 ? 4 : cap * 2;
				l->nets = xreallocarray(l->nets, cap,
							sizeof(*l->nets));
			}
			l->nets[l->n++] = net;
			continue;
		}
		/* item_parse cut the text at '/': name the item as written. */
		if (n > 0 && strlen(item) < (size_t)n)
			item[strlen(item)] = '/';
		snprintf(err, errlen, "\"%.*s\": %s", 64, item, why);
		cidr_list_free(l);
		return -EINVAL;
	}
	*out = l;
	return 0;
}

void
cidr_list_free(struct cidr_list *l)
{
	if (l == NULL)
		return;
	free(l->nets);
	free(l);
}

size_t
cidr_list_count(const struct cidr_list *l)
{
	return l == NULL ? 0 : l->n;
}

bool
cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0,    0,
					   0, 0, 0, 0, 0xff, 0xff};
	const uint8_t *a4 = NULL, *a6 = NULL;

	if (l == NULL || sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		a4 = (const uint8_t *)&sin->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)sa;
		a6 = sin6->sin6_addr.s6_addr;
		if (memcmp(a6, mapped, sizeof(mapped)) == 0)
			a4 = a6 + 12;
	} else {
		return false;
	}
	for (size_t i = 0; i < l->n; i++) {
		const struct cidr_net *net = &l->nets[i];
		const uint8_t *a = net->family == AF_INET ? a4 : a6;

		if (a != NULL && prefix_equal(a, net->addr, net->prefix))
			return true;
	}
	return false;
}
