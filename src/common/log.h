/*
 * One logging API for every process (server, agents, the commands).
 *
 * What a caller writes: a printf format whose text starts with the message
 * id and the subsystem, then the event and key=value fields:
 *
 *   log_info("%s dispatch delivered provider=%s attempts=%d", id, p, n);
 *   log_warnx("- agentport rejected peer=%s reason=\"%s\"", peer, why);
 *
 * The contract of that text, which log.c relies on to split it:
 *   - The first word is the message id: "-" when there is none, or an id
 *     (ID_LEN characters of Crockford base32, util.h).  When the first word
 *     is neither, the line has no id and that word is the subsystem.
 *   - The next word is the subsystem ("dispatch", "store", ...); a trailing
 *     ':' is dropped.  Then the event, one word ("-" is written when the
 *     next word is already a field).  Names go in fields after it:
 *     "- agent registered provider=%s", not "- agent %s registered".
 *   - Every later word of the form key=value is a field.  A value may be
 *     quoted, key="a value with spaces": it then ends at the first '"'
 *     that is followed by a space or ends the text (no escapes inside).
 *     Other words are free text.
 *   - Control bytes and invalid UTF-8 in the text become '?', so a line is
 *     always one line of valid UTF-8.
 *     Untrusted bytes go through log_sanitize() first; secrets and bodies
 *     are never logged.
 *
 * What is written, log_format = text (the default):
 *   TIME LEVEL SUBSYSTEM MSGID EVENT key=value ...
 *   2026-11-29T20:44:07.123Z info dispatch 01JD... delivered provider=a
 * i.e. the caller's text with its first two words swapped, so that a
 * reader scans by subsystem and one grep for an id follows a message from
 * intake to agent.
 *
 * log_format = json: one object per line with the members time, level,
 * subsystem, msgid, event, then each field as a string member (quotes
 * removed), then "text" with the free words when there are any.  A field
 * whose key is one of those reserved names is written "kv_" + key.
 *
 * Levels: debug (with -v), info (state changes), warn (something refused or
 * retried: a rejected client, a failed attempt), error (a failure the
 * operator must act on: a bind that failed, a start-up that failed, an
 * agent that exits with a configuration error), fatal (the process exits).
 *
 * Every line is one write(2) on a descriptor opened O_APPEND, so lines
 * from threads and from agent processes sharing the file never
 * interleave.  A line is at most LOG_LINE_MAX bytes; longer text is cut.
 */
#ifndef SHIVNERI_LOG_H
#define SHIVNERI_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* The caller's formatted text is cut at this many bytes. */
#define LOG_TEXT_MAX 2048
/* The most one written line may take, JSON escaping included. */
#define LOG_LINE_MAX 8192

/*
 * progname is the subsystem of a line whose text is empty; verbose > 0
 * enables log_debug.  Resets the format to text and the process to "not
 * started" (see log_set_started()).
 */
void log_init(const char *progname, int verbose);
/*
 * NULL or "" means stderr.  Returns 0 or -errno (the old destination stays
 * in use on failure); -EINVAL for a FIFO or a socket, which could block
 * every thread that logs.  Replacing an open file reuses its descriptor, as
 * log_reopen() does.
 */
int log_open_file(const char *path) __attribute__((warn_unused_result));
/*
 * Reopens the file given to log_open_file() (SIGHUP, after rotation): the
 * new file is opened and dup3()'d onto the descriptor in use, so a thread
 * writing at that moment writes whole lines to the old or the new file,
 * never to a closed or reused descriptor.  A no-op on stderr.  Returns 0 or
 * -errno; on failure the old file stays in use.
 */
int log_reopen(void) __attribute__((warn_unused_result));
int log_verbose(void);
/*
 * "text" or "json" (config log_format).  Returns 0, or -EINVAL for another
 * name (the format is then unchanged).  Called once after the
 * configuration is loaded, before any thread logs.
 */
int log_set_format(const char *name);
/*
 * Until this is called, lines at error and fatal level go to stderr as well
 * as to the log file, so that a start-up failure is seen by whoever started
 * the process even with log_file set.  The server calls it once it says it
 * is running.
 */
void log_set_started(void);

/* log_warn appends the field syserr="strerror(errno)". */
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
/*
 * Like log_warnx (no errno appended: error paths hold their -errno code
 * and say it), at error level.
 */
void log_error(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
/* The environment failed us (fatal appends syserr= as log_warn); exits 1. */
void fatal(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));
void fatalx(const char *fmt, ...) LOG_PRINTF(1, 2) __attribute__((noreturn));

/*
 * State of one rate-limited warning, embedded where the warning is made
 * (static or in a struct), zeroed to start (LOG_RL_INIT).
 */
struct log_rl {
	int64_t last_ms;     /* monotonic time of the last line written */
	uint64_t suppressed; /* calls not written since then */
	bool used;           /* a line has been written */
};
#define LOG_RL_INIT                                                            \
	{                                                                      \
		0, 0, false                                                    \
	}

/*
 * A warning that may repeat fast (a full disk, a peer that keeps
 * reconnecting): the first call writes its line; later calls within
 * interval_ms of the last line written are counted, not written.  The first
 * call after the interval writes its line with " suppressed=N" appended (N
 * calls were not written since the previous line; the field is left out
 * when N is 0).  So a storm costs at most one line per interval, and the
 * count of the last window shows at the next call.  Safe from any thread.
 * True when the line was written (a caller that says how an episode ends
 * says it only after a beginning that was written).
 */
bool log_warnx_rl(struct log_rl *rl, int interval_ms, const char *fmt, ...)
    LOG_PRINTF(3, 4);

/*
 * Copies at most len bytes of untrusted in into buf as printable ASCII:
 * control and non-ASCII bytes become '?', spaces stay, and the result is
 * truncated to bufsz - 1 with "..." when cut.  Returns buf.
 */
const char *log_sanitize(const void *in, size_t len, char *buf, size_t bufsz);

#endif
