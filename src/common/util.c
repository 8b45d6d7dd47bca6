/*
 * Helpers with no state but the PRNG's.  The x-allocators exit on out of
 * memory: a daemon that cannot allocate a few bytes cannot keep its promises
 * either, and every caller would have to handle the same impossible branch.
 */
#include "common/util.h"
#include "common/buf.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		fatal("- util out_of_memory op=malloc bytes=%zu", n);
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		fatal("- util out_of_memory op=calloc");
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		fatal("- util out_of_memory op=realloc bytes=%zu", n);
	return q;
}

void *
xreallocarray(void *p, size_t nmemb, size_t size)
{
	void *q = reallocarray(p, nmemb ? nmemb : 1, size ? size : 1);

	if (q == NULL)
		fatal("- util out_of_memory op=reallocarray");
	return q;
}

char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		fatal("- util out_of_memory op=strdup");
	return p;
}

char *
xstrdup_or_null(const char *s)
{
	return s == NULL ? NULL : xstrdup(s);
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);

	if (p == NULL)
		fatal("- util out_of_memory op=strndup bytes=%zu", n);
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (r < 0)
		fatal("- util out_of_memory op=vasprintf");
	return p;
}

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *
rfc3339(int64_t ms, char *buf, size_t bufsz)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&t, &tm);
	n = strftime(buf, bufsz, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, bufsz - n, ".%03dZ", (int)(ms % 1000));
	return buf;
}

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void
id_new(char *out)
{
	uint8_t r[10];
	uint64_t t = (uint64_t)now_ms();
	uint64_t hi, lo;
	int i;

	if (random_bytes(r, sizeof(r)) != 0) {
		uint64_t a = rand64(), b = rand64();
		memcpy(r, &a, 8);
		memcpy(r + 8, &b, 2);
	}
	/* 128 bits: 48 of time then 80 random, as two 64-bit halves. */
	hi = (t << 16) | ((uint64_t)r[0] << 8) | r[1];
	lo = 0;
	for (i = 2; i < 10; i++)
		lo = (lo << 8) | r[i];
	/* 26 base32 digits cover 130 bits; the first digit holds 3. */
	for (i = ID_LEN - 1; i >= 0; i--) {
		out[i] = crockford[lo & 31];
		lo = (lo >> 5) | ((hi & 31) << 59);
		hi >>= 5;
	}
	out[ID_LEN] = '\0';
}

bool
id_valid(const char *s)
{
	return strnlen(s, ID_LEN + 1) == ID_LEN && id_validn(s, ID_LEN);
}

bool
id_validn(const char *s, size_t n)
{
	size_t i;

	if (n != ID_LEN)
		return false;
	for (i = 0; i < n; i++)
		if (s[i] == '\0' || strchr(crockford, s[i]) == NULL)
			return false;
	return true;
}

int
random_bytes(void *buf, size_t n)
{
	uint8_t *p = buf;
	ssize_t r;

	while (n > 0) {
		r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* xoshiro-style splitmix64: fast, seeded once from the kernel. */
static __thread uint64_t rng_state;

uint64_t
rand64(void)
{
	uint64_t z;

	if (rng_state == 0) {
		if (random_bytes(&rng_state, sizeof(rng_state)) != 0)
			rng_state = (uint64_t)mono_us() ^ (uint64_t)getpid();
		rng_state |= 1;
	}
	z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int
hostport_parse_min(const char *s, char **host, int *port, long min)
{
	const char *colon, *h = s;
	size_t hlen;
	char *end;
	long p;

	if (s == NULL || *s == '\0')
		return -EINVAL;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return -EINVAL;
		h = s + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -EINVAL;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0)
		return -EINVAL;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || end == colon + 1 || p < min ||
	    p > 65535)
		return -EINVAL;
	*host = xstrndup(h, hlen);
	*port = (int)p;
	return 0;
}

int
hostport_parse(const char *s, char **host, int *port)
{
	return hostport_parse_min(s, host, port, 1);
}

int
hostport_parse_any(const char *s, char **host, int *port)
{
	return hostport_parse_min(s, host, port, 0);
}

void
hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hx[in[i] >> 4];
		out[2 * i + 1] = hx[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int
hex_decode(const char *in, uint8_t *out, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int a, b;
		if (in[2 * i] == '\0' || in[2 * i + 1] == '\0')
			return -EINVAL;
		a = hex_digit((unsigned char)in[2 * i]);
		b = hex_digit((unsigned char)in[2 * i + 1]);
		if (a < 0 || b < 0)
			return -EINVAL;
		out[i] = (uint8_t)(a << 4 | b);
	}
	return in[2 * n] == '\0' ? 0 : -EINVAL;
}

int
file_read_all(const char *path, size_t max, char **out, size_t *len)
{
	struct buf b;
	size_t want;
	ssize_t r;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1)
		return -errno;
	/* Room for one byte past max: holding it proves the file too big,
	 * while a file of exactly max bytes reads whole. */
	buf_init(&b, max < SIZE_MAX ? max + 1 : max);
	for (;;) {
		if (b.len == b.max) {
			rc = -EFBIG;
			goto fail;
		}
		/* The room left, else as much again as we hold. */
		want = b.cap > b.len + 1 ? b.cap - b.len - 1
					 : (b.len > 4096 ? b.len : 4096);
		if (want > b.max - b.len)
			want = b.max - b.len;
		rc = buf_reserve(&b, want);
		if (rc != 0)
			goto fail;
		r = read(fd, b.p + b.len, want);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto fail;
		}
		if (r == 0)
			break;
		buf_commit(&b, (size_t)r);
	}
	close(fd);
	*out = buf_take(&b, len);
	return 0;
fail:
	buf_cleanup(&b);
	close(fd);
	return rc;
}

int
mkdir_p(const char *path, int mode)
{
	char *p = xstrdup(path), *s;
	int rc = 0;

	for (s = p + 1; *s != '\0'; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, (mode_t)mode) == -1 && errno != EEXIST) {
			rc = -errno;
			goto out;
		}
		*s = '/';
	}
	if (mkdir(p, (mode_t)mode) == -1 && errno != EEXIST)
		rc = -errno;
out:
	free(p);
	return rc;
}

bool
dns_name_ok(const char *s, size_t n)
{
	size_t i, label = 0;

	if (n == 0 || n > 253)
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9') || c == '-') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0;
}

bool
sockaddr_loopback(const struct sockaddr *sa)
{
	const struct sockaddr_in6 *in6;

	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)sa)
				  ->sin_addr.s_addr) >>
			24) == 127;
	if (sa->sa_family != AF_INET6)
		return false;
	in6 = (const struct sockaddr_in6 *)(const void *)sa;
	return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
	       (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
		in6->sin6_addr.s6_addr[12] == 127);
}

void
sockaddr_client_key(const struct sockaddr *sa, uint8_t key[16])
{
	const struct sockaddr_in *in4;
	const struct sockaddr_in6 *in6;

	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		in4 = (const struct sockaddr_in *)(const void *)sa;
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &in4->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		in6 = (const struct sockaddr_in6 *)(const void *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			memcpy(key, &in6->sin6_addr, 16);
		else
			memcpy(key, &in6->sin6_addr, 8);
	}
}
