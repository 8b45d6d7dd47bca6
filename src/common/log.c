/*
 * Logging (the contract is in log.h).  A call formats the caller's text
 * once, cleans it (control bytes and broken UTF-8 become '?'), splits off
 * the conventional message id and subsystem, and writes the line in the
 * configured format with one write(2), so lines from threads and from
 * processes sharing the file never interleave.
 *
 * Why split formatted text rather than take the pieces as arguments: every
 * call site in the tree already writes "MSGID SUBSYSTEM EVENT k=v" as one
 * printf format, which the compiler checks against its arguments; parsing
 * the two leading words here changes the output order and adds JSON
 * without touching hundreds of call sites, and a later structured API can
 * feed the same writer.
 *
 * Nothing here allocates: lines are built in stack buffers (a fixed
 * struct buf for JSON), since out-of-memory is itself reported through
 * fatal().  The destination descriptor never changes number once a file is
 * open: log_reopen() dup3()s the new file onto it, so a thread that read
 * the descriptor just before a reopen still writes to an open file.
 */
#include "common/log.h"
#include "common/buf.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level {
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_FATAL,
};

static const char *const level_names[] = {"debug", "info", "warn", "error",
					  "fatal"};

/* The subsystem of a line whose text names none. */
static char log_prog[32] = "shivneri";
static int log_verbosity;
/* STDERR_FILENO until a file is opened; then always the same number. */
static atomic_int log_fd = STDERR_FILENO;
static atomic_bool log_to_file;
static atomic_bool log_json;
static atomic_bool log_started;
static char *log_path;
static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;

void
log_init(const char *progname, int verbose)
{
	snprintf(log_prog, sizeof(log_prog), "%s", progname);
	log_verbosity = verbose;
	atomic_store(&log_json, false);
	atomic_store(&log_started, false);
}

int
log_verbose(void)
{
	return log_verbosity;
}

int
log_set_format(const char *name)
{
	if (name == NULL || strcmp(name, "text") == 0)
		atomic_store(&log_json, false);
	else if (strcmp(name, "json") == 0)
		atomic_store(&log_json, true);
	else
		return -EINVAL;
	return 0;
}

void
log_set_started(void)
{
	atomic_store(&log_started, true);
}

/*
 * Points our descriptor at fd's file.  The first file gets a descriptor of
 * its own; after that the new file is dup3()'d onto the one in use, which
 * the kernel does atomically: a concurrent write goes to the old file or
 * the new one, never to a closed descriptor.  O_CLOEXEC is kept (dup2 would
 * drop it and leak the log into every agent we spawn).
 */
static int
install_fd(int fd)
{
	int cur = atomic_load(&log_fd);

	if (cur == STDERR_FILENO) {
		atomic_store(&log_fd, fd);
		return 0;
	}
	if (dup3(fd, cur, O_CLOEXEC) == -1) {
		int e = errno;

		close(fd);
		return -e;
	}
	close(fd);
	return 0;
}

/*
 * The log file, opened for appending (made if missing).  A FIFO or a
 * socket is refused with -EINVAL: open() would wait for a reader, at
 * start or in a SIGHUP's reopen on the loop, and a reader that stops
 * would hold every thread that logs.  O_NONBLOCK covers one swapped in
 * between the check and the open; it is cleared after.
 */
static int
open_log(const char *path)
{
	struct stat st;
	int fd, flags;

	if (stat(path, &st) == 0 &&
	    (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
		return -EINVAL;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK,
		  0640);
	if (fd == -1)
		return errno == ENXIO ? -EINVAL : -errno;
	if (fstat(fd, &st) != 0 || S_ISFIFO(st.st_mode) ||
	    S_ISSOCK(st.st_mode) || (flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == -1) {
		close(fd);
		return -EINVAL;
	}
	return fd;
}

int
log_open_file(const char *path)
{
	char *copy = NULL;
	int fd, rc;

	if (path == NULL || *path == '\0') {
		if (atomic_load(&log_fd) == STDERR_FILENO)
			return 0;
		fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
	} else {
		copy = strdup(path);
		if (copy == NULL)
			return -ENOMEM;
		fd = open_log(path);
	}
	if (fd < 0) {
		rc = fd == -1 ? -errno : fd;
		free(copy);
		return rc;
	}
	rc = install_fd(fd);
	if (rc != 0) {
		free(copy);
		return rc;
	}
	free(log_path);
	log_path = copy;
	atomic_store(&log_to_file, copy != NULL);
	return 0;
}

int
log_reopen(void)
{
	int fd;

	if (log_path == NULL)
		return 0;
	fd = open_log(log_path);
	if (fd < 0)
		return fd;
	return install_fd(fd);
}

/*
 * Replaces, in place, what would break a line or the JSON encoding: control
 * bytes and bytes that do not start or continue valid UTF-8 (overlong
 * forms and surrogates included) become '?'.
 */
static void
clean_text(char *s, size_t n)
{
	size_t i = 0, k, need;
	unsigned char c, lo, hi;

	while (i < n) {
		c = (unsigned char)s[i];
		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				s[i] = '?';
			i++;
			continue;
		}
		lo = 0x80;
		hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf)
			need = 1;
		else if (c >= 0xe0 && c <= 0xef)
			need = 2;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 3;
		else
			need = 0;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
		else if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
		for (k = 1; need > 0 && k <= need; k++) {
			unsigned char d =
			    i + k < n ? (unsigned char)s[i + k] : 0;

			if (d < (k == 1 ? lo : 0x80) ||
			    d > (k == 1 ? hi : 0xbf))
				break;
		}
		if (need == 0 || k <= need) {
			s[i++] = '?';
			continue;
		}
		i += need + 1;
	}
}

/* The caller's text split by the convention of log.h. */
struct log_parts {
	const char *msgid;
	size_t msgid_len;
	const char *subsys;
	size_t subsys_len;
	const char *event; /* "-" when the text has none */
	size_t event_len;
	const char *rest; /* fields and free words after the event */
};

static const char *
skip_spaces(const char *s)
{
	while (*s == ' ')
		s++;
	return s;
}

/* True when the word at s starts with key= (a letter or '_', then
 * letters, digits, '_', '.', '-'); *klen is the key's length. */
static bool
is_field(const char *s, size_t *klen)
{
	size_t i = 0;

	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
	      s[0] == '_'))
		return false;
	while (s[i] != '\0' && s[i] != ' ' && s[i] != '=') {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == '-'))
			return false;
		i++;
	}
	if (s[i] != '=')
		return false;
	*klen = i;
	return true;
}

static void
split_text(const char *text, struct log_parts *lp)
{
	const char *w = skip_spaces(text);
	size_t n = strcspn(w, " "), klen;

	lp->msgid = "-";
	lp->msgid_len = 1;
	if ((n == 1 && w[0] == '-') || id_validn(w, n)) {
		lp->msgid = w;
		lp->msgid_len = n;
		w = skip_spaces(w + n);
		n = strcspn(w, " ");
	}
	lp->subsys = w;
	lp->subsys_len = n;
	if (n > 1 && w[n - 1] == ':')
		lp->subsys_len--;
	if (n == 0) {
		lp->subsys = log_prog;
		lp->subsys_len = strlen(log_prog);
	}
	w = skip_spaces(w + n);
	n = strcspn(w, " ");
	if (n == 0 || is_field(w, &klen)) {
		lp->event = "-";
		lp->event_len = 1;
		lp->rest = w;
		return;
	}
	lp->event = w;
	lp->event_len = n;
	lp->rest = skip_spaces(w + n);
}

/* TIME LEVEL SUBSYSTEM MSGID EVENT REST into line; returns the length. */
static size_t
format_text(char *line, size_t size, const char *stamp, const char *level,
	    const struct log_parts *lp)
{
	int r;

	r = snprintf(line, size - 1, "%s %s %.*s %.*s %.*s%s%s", stamp, level,
		     (int)lp->subsys_len, lp->subsys, (int)lp->msgid_len,
		     lp->msgid, (int)lp->event_len, lp->event,
		     *lp->rest != '\0' ? " " : "", lp->rest);
	if (r < 0)
		r = 0;
	if ((size_t)r > size - 2)
		r = (int)(size - 2);
	line[r++] = '\n';
	return (size_t)r;
}

static bool
reserved_key(const char *k, size_t n)
{
	static const char *const names[] = {"time",  "level", "subsystem",
					    "msgid", "event", "text"};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(names); i++)
		if (strlen(names[i]) == n && memcmp(names[i], k, n) == 0)
			return true;
	return false;
}

/* ,"prefix+k":"v" whole, or nothing and -E2BIG when b is full. */
static int
json_member(struct buf *b, const char *prefix, const char *k, size_t klen,
	    const char *v, size_t vlen)
{
	size_t mark = b->len;

	if (buf_appends(b, ",\"") != 0 || buf_appends(b, prefix) != 0 ||
	    buf_append_json_str(b, k, klen) != 0 ||
	    buf_appends(b, "\":\"") != 0 ||
	    buf_append_json_str(b, v, vlen) != 0 || buf_appends(b, "\"") != 0) {
		b->len = mark;
		b->p[mark] = '\0';
		return -E2BIG;
	}
	return 0;
}

/*
 * The value of the field whose '=' is at eq: to the next space, or when
 * quoted to the first '"' followed by a space or the end (an unterminated
 * quote runs to the end).  *next is where the following word may start.
 */
static const char *
field_value(const char *eq, size_t *vlen, const char **next)
{
	const char *v = eq + 1, *q;

	if (*v != '"') {
		*vlen = strcspn(v, " ");
		*next = v + *vlen;
		return v;
	}
	v++;
	for (q = strchr(v, '"'); q != NULL; q = strchr(q + 1, '"'))
		if (q[1] == ' ' || q[1] == '\0')
			break;
	if (q == NULL) {
		*vlen = strlen(v);
		*next = v + *vlen;
		return v;
	}
	*vlen = (size_t)(q - v);
	*next = q + 1;
	return v;
}

/*
 * Fields of rest as JSON members of b; free words are collected in words
 * (wsize bytes, NUL-terminated).  0, or -E2BIG when b is full.
 */
static int
json_fields(struct buf *b, const char *rest, char *words, size_t wsize)
{
	const char *w = skip_spaces(rest), *v, *next;
	size_t klen, vlen, wlen = 0, n;

	words[0] = '\0';
	while (*w != '\0') {
		if (is_field(w, &klen)) {
			v = field_value(w + klen, &vlen, &next);
			if (json_member(b, reserved_key(w, klen) ? "kv_" : "",
					w, klen, v, vlen) != 0)
				return -E2BIG;
		} else {
			n = strcspn(w, " ");
			next = w + n;
			if (wlen + n + 2 <= wsize) {
				if (wlen > 0)
					words[wlen++] = ' ';
				memcpy(words + wlen, w, n);
				wlen += n;
				words[wlen] = '\0';
			}
		}
		w = skip_spaces(next);
	}
	return 0;
}

/* The JSON object of one line into line (size bytes); returns the length. */
static size_t
format_json(char *line, size_t size, const char *stamp, const char *level,
	    const struct log_parts *lp)
{
	/*
	 * Room kept after the buffer's cap for the closing of a cut line.
	 * A safety net only: the worst expansion of LOG_TEXT_MAX bytes of
	 * text (a short field per few bytes, each value escaped) stays
	 * well under LOG_LINE_MAX, so no line is cut today.
	 */
	static const char cut[] = ",\"truncated\":\"yes\"}\n";
	char words[LOG_TEXT_MAX];
	struct buf b;
	int rc;

	buf_init_fixed(&b, line, size - sizeof(cut));
	rc = buf_appendf(&b, "{\"time\":\"%s\",\"level\":\"%s\"", stamp, level);
	if (rc == 0)
		rc = json_member(&b, "", "subsystem", 9, lp->subsys,
				 lp->subsys_len);
	if (rc == 0)
		rc = json_member(&b, "", "msgid", 5, lp->msgid, lp->msgid_len);
	if (rc == 0)
		rc = json_member(&b, "", "event", 5, lp->event, lp->event_len);
	if (rc == 0)
		rc = json_fields(&b, lp->rest, words, sizeof(words));
	if (rc == 0 && words[0] != '\0')
		rc = json_member(&b, "", "text", 4, words, strlen(words));
	if (rc != 0) {
		memcpy(line + b.len, cut, sizeof(cut) - 1);
		return b.len + sizeof(cut) - 1;
	}
	memcpy(line + b.len, "}\n", 2);
	return b.len + 2;
}

static void
write_all(int fd, const char *p, size_t n)
{
	ssize_t r;

	while (n > 0) {
		r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return; /* nowhere left to say so */
		p += r;
		n -= (size_t)r;
	}
}

static __thread time_t stamp_sec = -1;
static __thread char stamp[32];

static const char *
timestamp(char *out, size_t size)
{
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	/* Formatting the date costs more than the rest of a line: once a
	 * second per thread is enough. */
	if (tv.tv_sec != stamp_sec) {
		gmtime_r(&tv.tv_sec, &tm);
		if (strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm) ==
		    0)
			stamp[0] = '\0';
		stamp_sec = tv.tv_sec;
	}
	snprintf(out, size, "%s.%03ldZ", stamp, (long)(tv.tv_usec / 1000));
	return out;
}

/* Appends to text (size bytes, holding len) as much of s as fits. */
static size_t
append_cut(char *text, size_t size, size_t len, const char *s)
{
	size_t n = strlen(s);

	if (len >= size - 1)
		return len;
	if (n > size - 1 - len)
		n = size - 1 - len;
	memcpy(text + len, s, n);
	text[len + n] = '\0';
	return len + n;
}

static void __attribute__((format(printf, 4, 0)))
vlog(enum log_level lvl, int errnum, const char *suffix, const char *fmt,
     va_list ap)
{
	char text[LOG_TEXT_MAX], line[LOG_LINE_MAX], ts[48];
	struct log_parts lp;
	size_t len, n;
	int r, fd;

	r = vsnprintf(text, sizeof(text), fmt, ap);
	len = r < 0 ? 0 : (size_t)r;
	if (len >= sizeof(text))
		len = sizeof(text) - 1;
	text[len] = '\0';
	if (errnum != 0) {
		len = append_cut(text, sizeof(text), len, " syserr=\"");
		len = append_cut(text, sizeof(text), len, strerror(errnum));
		len = append_cut(text, sizeof(text), len, "\"");
	}
	if (suffix != NULL)
		len = append_cut(text, sizeof(text), len, suffix);
	clean_text(text, len);
	split_text(text, &lp);
	timestamp(ts, sizeof(ts));
	if (atomic_load(&log_json))
		n = format_json(line, sizeof(line), ts, level_names[lvl], &lp);
	else
		n = format_text(line, sizeof(line), ts, level_names[lvl], &lp);
	fd = atomic_load(&log_fd);
	write_all(fd, line, n);
	if (lvl >= LOG_LEVEL_ERROR && atomic_load(&log_to_file) &&
	    !atomic_load(&log_started) && fd != STDERR_FILENO)
		write_all(STDERR_FILENO, line, n);
}

#define LOG_BODY(level, errnum)                                                \
	do {                                                                   \
		va_list ap;                                                    \
		va_start(ap, fmt);                                             \
		vlog(level, errnum, NULL, fmt, ap);                            \
		va_end(ap);                                                    \
	} while (0)

void
log_warn(const char *fmt, ...)
{
	int e = errno;

	LOG_BODY(LOG_LEVEL_WARN, e);
}

void
log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_WARN, 0);
}

void
log_error(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_ERROR, 0);
}

void
log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_INFO, 0);
}

void
log_debug(const char *fmt, ...)
{
	if (log_verbosity <= 0)
		return;
	LOG_BODY(LOG_LEVEL_DEBUG, 0);
}

void
fatal(const char *fmt, ...)
{
	int e = errno;

	LOG_BODY(LOG_LEVEL_FATAL, e);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_FATAL, 0);
	exit(1);
}

bool
log_warnx_rl(struct log_rl *rl, int interval_ms, const char *fmt, ...)
{
	char suffix[48] = "";
	int64_t now = mono_ms();
	uint64_t n = 0;
	bool quiet = false;
	va_list ap;

	/* One lock for every limiter: the path is taken by repeated
	 * warnings only, and a lock per state would burden its owner. */
	pthread_mutex_lock(&rl_lock);
	if (rl->used && now - rl->last_ms < (int64_t)interval_ms) {
		rl->suppressed++;
		quiet = true;
	} else {
		n = rl->suppressed;
		rl->suppressed = 0;
		rl->last_ms = now;
		rl->used = true;
	}
	pthread_mutex_unlock(&rl_lock);
	if (quiet)
		return false;
	if (n > 0)
		snprintf(suffix, sizeof(suffix), " suppressed=%" PRIu64, n);
	va_start(ap, fmt);
	vlog(LOG_LEVEL_WARN, 0, suffix, fmt, ap);
	va_end(ap);
	return true;
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
