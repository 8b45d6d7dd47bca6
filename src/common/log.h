/*
 * One logging API for every process.  A line is
 *   TIME LEVEL text
 * where text is by convention "ID SUBSYSTEM EVENT key=value ...", with the
 * same message id from intake to agent so that one grep follows a message.
 * Untrusted bytes go through log_sanitize() first; secrets and bodies are
 * never logged.  Lines go to stderr unless log_open_file() named a file;
 * log_reopen() (SIGHUP) reopens that file for log rotation.
 */
#ifndef SHIVNERI_LOG_H
#define SHIVNERI_LOG_H

#include <stddef.h>

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* progname is copied; verbose > 0 enables log_debug. */
void log_init(const char *progname, int verbose);
/* NULL or "" means stderr.  Returns 0 or -errno. */
int log_open_file(const char *path) __attribute__((warn_unused_result));
/* Reopens the file given to log_open_file(); a no-op on stderr. */
int log_reopen(void);
int log_verbose(void);

/* log_warn appends strerror(errno). */
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
/* The environment failed us (fatal appends strerror(errno)); exits 1. */
void fatal(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));
void fatalx(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));

/*
 * Copies at most len bytes of untrusted in into buf as printable ASCII:
 * control and non-ASCII bytes become '?', spaces stay, and the result is
 * truncated to bufsz - 1 with "..." when cut.  Returns buf.
 */
const char *log_sanitize(const void *in, size_t len, char *buf, size_t bufsz);

#endif
