/*
 * The envelope line the MIME fuzz targets share: the input's first line,
 * when it starts with "env:", is the envelope ("env: SENDER RCPT RCPT...",
 * "<>" for the null sender), so that a fuzzer reaches the envelope checks
 * too; otherwise a fixed one is used.  Also the NUL-terminated copy of
 * the input they take it from.  Header-only: each fuzz_*.c is its own
 * program.
 */
#ifndef SHIVNERI_FUZZ_ENVELOPE_H
#define SHIVNERI_FUZZ_ENVELOPE_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ENV_MAX_RCPT 8

/* The input as a NUL-terminated string (to free()); NULL without memory. */
static inline char *
fuzz_copy(const unsigned char *data, size_t size)
{
	char *copy = malloc(size + 1);

	if (copy != NULL) {
		memcpy(copy, data, size);
		copy[size] = '\0';
	}
	return copy;
}

struct fuzz_envelope {
	const char *mail_from;
	const char *rcpt[FUZZ_ENV_MAX_RCPT];
	size_t nrcpt;
};

/*
 * Splits "env: a b c\n" off copy (NUL-terminated, size bytes before the
 * NUL) into env, whose words point into copy; returns the bytes taken.
 */
static inline size_t
fuzz_take_envelope(char *copy, size_t size, struct fuzz_envelope *env)
{
	char *nl, *p, *w;

	env->mail_from = "ann@example.com";
	env->rcpt[0] = "bob@example.net";
	env->nrcpt = 1;
	if (size < 5 || memcmp(copy, "env:", 4) != 0)
		return 0;
	nl = memchr(copy, '\n', size);
	if (nl == NULL)
		return 0;
	*nl = '\0';
	p = copy + 4;
	env->mail_from = NULL;
	env->nrcpt = 0;
	for (w = strsep(&p, " "); w != NULL; w = strsep(&p, " ")) {
		if (*w == '\0')
			continue;
		if (env->mail_from == NULL)
			env->mail_from = strcmp(w, "<>") == 0 ? "" : w;
		else if (env->nrcpt < FUZZ_ENV_MAX_RCPT)
			env->rcpt[env->nrcpt++] = w;
	}
	if (env->mail_from == NULL)
		env->mail_from = "";
	return (size_t)(nl + 1 - copy);
}

#endif
