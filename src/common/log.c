/*
 * Logging: formatted lines with a UTC timestamp, written with one write(2)
 * each so that lines from several processes sharing stderr do not interleave.
 * Nothing here allocates on the logging path.
 */
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char log_prog[32] = "shivneri";
static int log_verbosity;
static int log_fd = STDERR_FILENO;
static char *log_path;

void
log_init(const char *progname, int verbose)
{
	snprintf(log_prog, sizeof(log_prog), "%s", progname);
	log_verbosity = verbose;
}

int
log_verbose(void)
{
	return log_verbosity;
}

int
log_open_file(const char *path)
{
	int fd;

	free(log_path);
	log_path = NULL;
	if (path == NULL || *path == '\0') {
		if (log_fd != STDERR_FILENO)
			close(log_fd);
		log_fd = STDERR_FILENO;
		return 0;
	}
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd == -1)
		return -errno;
	if (log_fd != STDERR_FILENO)
		close(log_fd);
	log_fd = fd;
	log_path = strdup(path);
	return 0;
}

int
log_reopen(void)
{
	char *p;
	int rc;

	if (log_path == NULL)
		return 0;
	p = strdup(log_path);
	if (p == NULL)
		return -ENOMEM;
	rc = log_open_file(p);
	free(p);
	return rc;
}

static __thread time_t stamp_sec = -1;
static __thread char stamp[32];
static __thread size_t stamp_len;

static void __attribute__((format(printf, 3, 0)))
vlog(const char *level, int errnum, const char *fmt, va_list ap)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	int r;

	gettimeofday(&tv, NULL);
	/* Formatting the date costs more than the rest of a line: once a
	 * second per thread is enough. */
	if (tv.tv_sec != stamp_sec) {
		gmtime_r(&tv.tv_sec, &tm);
		stamp_len =
		    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		stamp_sec = tv.tv_sec;
	}
	memcpy(line, stamp, stamp_len);
	n = stamp_len;
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s[%ld] %s ",
		     (long)(tv.tv_usec / 1000), log_prog, (long)getpid(),
		     level);
	if (r > 0)
		n += (size_t)r;
	if (n < sizeof(line)) {
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (r > 0)
			n += (size_t)r;
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	if (errnum != 0) {
		r = snprintf(line + n, sizeof(line) - n, ": %s",
			     strerror(errnum));
		if (r > 0)
			n += (size_t)r;
		if (n >= sizeof(line) - 1)
			n = sizeof(line) - 2;
	}
	line[n++] = '\n';
	(void)!write(log_fd, line, n);
}

#define LOG_BODY(level, errnum)                                                \
	do {                                                                   \
		va_list ap;                                                    \
		va_start(ap, fmt);                                             \
		vlog(level, errnum, fmt, ap);                                  \
		va_end(ap);                                                    \
	} while (0)

void
log_warn(const char *fmt, ...)
{
	int e = errno;

	LOG_BODY("warn", e);
}

void
log_warnx(const char *fmt, ...)
{
	LOG_BODY("warn", 0);
}

void
log_info(const char *fmt, ...)
{
	LOG_BODY("info", 0);
}

void
log_debug(const char *fmt, ...)
{
	if (log_verbosity <= 0)
		return;
	LOG_BODY("debug", 0);
}

void
fatal(const char *fmt, ...)
{
	int e = errno;

	LOG_BODY("fatal", e);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	LOG_BODY("fatal", 0);
	exit(1);
}

const char *
log_sanitize(const void *in, size_t len, char *buf, size_t bufsz)
{
	const unsigned char *s = in;
	size_t i, o = 0;

	if (bufsz == 0)
		return buf;
	for (i = 0; i < len && o + 1 < bufsz; i++) {
		unsigned char c = s[i];
		buf[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	if (i < len && bufsz >= 4) {
		o = o > bufsz - 4 ? bufsz - 4 : o;
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}
