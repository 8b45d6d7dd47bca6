/*
 * Small helpers every subsystem uses: allocation that exits on out of
 * memory (x-prefixed, only where failure is out of memory), clocks, message
 * ids, RFC 3339 times, host:port parsing and secure random bytes.
 */
#ifndef SHIVNERI_UTIL_H
#define SHIVNERI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
/* NULL in, NULL out. */
char *xstrdup_or_null(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a new heap string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Wall clock in milliseconds since the epoch. */
int64_t now_ms(void);
/* Monotonic clock in milliseconds; for timeouts and intervals. */
int64_t mono_ms(void);
/* Monotonic clock in microseconds; for latency measurements. */
int64_t mono_us(void);

/* "2026-11-27T20:50:20.123Z" into buf (at least 32 bytes); returns buf. */
const char *rfc3339(int64_t ms, char *buf, size_t bufsz);

#define ID_LEN 26
/*
 * A new message id: 26 characters of Crockford base32 (a ULID: 48 bits of
 * milliseconds then 80 random bits), so ids sort by creation time.  out must
 * hold ID_LEN + 1 bytes.
 */
void id_new(char *out);
/* True when s is ID_LEN characters of Crockford base32. */
bool id_valid(const char *s);
/* The same for the n bytes at s, which need not be NUL-terminated. */
bool id_validn(const char *s, size_t n);

/* Fills buf with n bytes from the kernel's CSPRNG; 0 or -errno. */
int random_bytes(void *buf, size_t n) __attribute__((warn_unused_result));
/* A DNS name: labels of A-Z a-z 0-9 -, 1 to 63 bytes each, 253 in all. */
bool dns_name_ok(const char *s, size_t n);

struct sockaddr;
/* 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104. */
bool sockaddr_loopback(const struct sockaddr *sa);
/*
 * The client a per-address limit counts sa as: an IPv4 address as
 * ::ffff:a.b.c.d (so an IPv4-mapped one is the same client), an IPv6
 * address cut to its /64, the block one subscriber usually holds.  Any
 * other family is the all-zero key.
 */
void sockaddr_client_key(const struct sockaddr *sa, uint8_t key[16]);
/* A uniformly distributed 64-bit value from a fast non-crypto PRNG. */
uint64_t rand64(void);

/*
 * Splits "host:port" (or "[v6]:port") into a new host string and a port.
 * Returns 0, or -EINVAL when malformed or the port is out of 1..65535.
 */
int hostport_parse(const char *s, char **host, int *port)
    __attribute__((warn_unused_result));
/* The same, port 0 allowed: a listener's "the kernel picks". */
int hostport_parse_any(const char *s, char **host, int *port)
    __attribute__((warn_unused_result));

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void hex_encode(const uint8_t *in, size_t n, char *out);
/* Parses exactly 2n hex characters; 0 or -EINVAL. */
/* The value of one hex digit (either case), or -1.  Inline: JSON scanning
 * calls it per escaped character. */
static inline int
hex_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_decode(const char *in, uint8_t *out, size_t n)
    __attribute__((warn_unused_result));

/*
 * Reads a whole file of at most max bytes into a new NUL-terminated heap
 * buffer (*out; the caller frees) and its length into *len (may be NULL).
 * Returns 0, -EFBIG when the file is longer than max (nothing allocated
 * past max + 1 bytes), or -errno.
 */
int file_read_all(const char *path, size_t max, char **out, size_t *len)
    __attribute__((warn_unused_result));

/* mkdir -p with mode; 0 or -errno. */
int mkdir_p(const char *path, int mode) __attribute__((warn_unused_result));

#endif
