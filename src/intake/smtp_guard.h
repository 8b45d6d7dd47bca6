/*
 * Failed SMTP AUTH checks per client (an IPv4 address or an IPv6 /64, as
 * common/clients.h counts them), and the wait they earn.  A check costs a
 * SHA-512 crypt (milliseconds of the one AUTH worker), so a guesser both
 * tries passwords and, with a few sessions, keeps the worker busy while
 * real users queue behind it.  Per client: the first SMTP_GUARD_FREE
 * failures cost nothing more; each one after makes it wait (2 s, doubled
 * at each further failure, at most 300 s) before its next check, and an
 * AUTH in that wait is refused without one.  A client forgiven: after a
 * success, or SMTP_GUARD_FORGET_MS without a failure.
 *
 * Bounded: SMTP_GUARD_SLOTS clients at most; a new one takes the slot of
 * the least recently failed.  Lookups are a scan of the slots (microseconds,
 * against a check's milliseconds).  Time is passed in (mono ms), so the
 * policy is testable without waiting.
 */
#ifndef SHIVNERI_SMTP_GUARD_H
#define SHIVNERI_SMTP_GUARD_H

#include <stdint.h>

#define SMTP_GUARD_SLOTS 4096
#define SMTP_GUARD_FREE 10
#define SMTP_GUARD_FIRST_MS 2000
#define SMTP_GUARD_MAX_MS 300000
#define SMTP_GUARD_FORGET_MS (15 * 60 * 1000)

struct smtp_guard;

struct smtp_guard *smtp_guard_new(void);
void smtp_guard_free(struct smtp_guard *g);
/* How long key must still wait before a check (0: it may check now). */
int64_t smtp_guard_wait(struct smtp_guard *g, const uint8_t key[16],
			int64_t now);
/* A failed check of key: the wait it earned (0 while within the free). */
int64_t smtp_guard_failed(struct smtp_guard *g, const uint8_t key[16],
			  int64_t now);
/* A successful check of key: its failures are forgotten. */
void smtp_guard_succeeded(struct smtp_guard *g, const uint8_t key[16]);

#endif
