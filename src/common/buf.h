/*
 * One growable byte buffer with a hard cap, for everything that is filled
 * from outside (a response body, a composed message, a JSON array built
 * row by row).  The cap is part of the buffer, so no caller can forget to
 * check it: an append that would pass it fails with -E2BIG and leaves the
 * buffer as it was.  The contents are always NUL-terminated (the NUL is
 * not counted in len and not charged to the cap), so text can be used as a
 * C string.  Memory exhaustion is fatal (xrealloc), like everywhere else.
 *
 * Error convention of the whole tree: a fallible function returns 0 or a
 * negative errno value; a module that needs codes of its own keeps them
 * outside errno's range (LINK_E_* are small negatives handled only inside
 * link/, STORE_E* are errno values).
 */
#ifndef SHIVNERI_BUF_H
#define SHIVNERI_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/log.h" /* LOG_PRINTF */

struct buf {
	char *p;    /* NULL until the first append */
	size_t len; /* bytes held, not counting the NUL */
	size_t cap; /* bytes allocated */
	size_t max; /* the most len may reach */
	bool fixed; /* p is the caller's storage: never grown nor freed */
};

/* An empty buffer that will hold at most max bytes. */
void buf_init(struct buf *b, size_t max);
/*
 * An empty buffer over the caller's storage of size bytes (size > 0): it
 * holds at most size - 1 bytes and never allocates, for paths that must
 * not (the logger, which out-of-memory itself reports through).  Cleanup
 * leaves the storage alone; take copies it out.
 */
void buf_init_fixed(struct buf *b, char *storage, size_t size);
/* Frees the contents; the buffer is empty again, with the same cap. */
void buf_cleanup(struct buf *b);
/* Forgets the contents but keeps the memory. */
void buf_reset(struct buf *b);
/*
 * Makes room for more bytes; 0 or -E2BIG.  The caller may then write up to
 * more bytes at p + len (read(2) straight into the buffer) and count them
 * with buf_commit().
 */
int buf_reserve(struct buf *b, size_t more) __attribute__((warn_unused_result));
/* Counts n bytes written at p + len after buf_reserve(b, m >= n). */
void buf_commit(struct buf *b, size_t n);
/* 0, or -E2BIG when the result would exceed the cap (nothing appended). */
int buf_append(struct buf *b, const void *data, size_t n)
    __attribute__((warn_unused_result));
int buf_appends(struct buf *b, const char *s)
    __attribute__((warn_unused_result));
int buf_appendf(struct buf *b, const char *fmt, ...) LOG_PRINTF(2, 3)
    __attribute__((warn_unused_result));
/*
 * Appends s as the body of a JSON string (no quotes): '"', '\\' and
 * control characters escaped, other bytes as they are (UTF-8 passes; the
 * caller sees to it that s is UTF-8).  The one JSON escaper of the tree.
 * All or nothing, like every append: -E2BIG leaves b as it was.
 */
int buf_append_json_str(struct buf *b, const char *s, size_t n)
    __attribute__((warn_unused_result));
/*
 * Hands the contents to the caller (NUL-terminated, never NULL: an empty
 * buffer gives ""), with its length in *len (may be NULL).  The buffer is
 * empty afterwards.  The caller frees the result.  A fixed buffer's
 * contents are copied into a new heap string.
 */
char *buf_take(struct buf *b, size_t *len);

#endif
