/*
 * Lists of networks in CIDR form ("127.0.0.0/8, ::1/128, 10.1.2.3"), and
 * whether an address is in one: smtp_trusted_networks, which clients may
 * send without AUTH.  IPv4 and IPv6; an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, what a dual-stack socket reports) matches the IPv4
 * networks.  A bare address is a /32 or /128.  Host bits set beyond the
 * prefix are refused (10.0.0.1/8 is a typo more often than a wish).  An
 * empty list matches nothing.  Pure: parsed once, matched per connection.
 */
#ifndef SHIVNERI_CIDR_H
#define SHIVNERI_CIDR_H

#include <stdbool.h>
#include <stddef.h>

struct sockaddr;
struct cidr_list;

/*
 * Parses a comma-separated list (spaces around items allowed).  0 and a new
 * list in *out (empty when text is empty or only spaces), or -EINVAL with
 * the offending item named in err.
 */
int cidr_list_parse(const char *text, struct cidr_list **out, char *err,
		    size_t errlen) __attribute__((warn_unused_result));
/* NULL is a no-op. */
void cidr_list_free(struct cidr_list *l);
/* Is sa (AF_INET or AF_INET6; anything else: false) in one of l's networks? */
bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);
/* Networks in l. */
size_t cidr_list_count(const struct cidr_list *l);

#endif
