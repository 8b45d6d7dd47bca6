/*
 * What the fuzz targets that drive a whole session over loopback share
 * (fuzz_smtp_session.c, fuzz_httpd_session.c): the server and the client
 * run in one thread on one event_base, so the loop is kept ticking and
 * the client side is polled between its turns.  Every wait has a
 * deadline; a server that never closes or never lets go is a finding, so
 * these abort() rather than return an error.  Not a fuzz target itself
 * (not named fuzz_*): CMakeLists.txt adds it to the targets that use it.
 */
#ifndef SHIVNERI_FUZZ_SESSION_LIB_H
#define SHIVNERI_FUZZ_SESSION_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

/*
 * What the server may take, after the client is done, to close and let
 * go.  Generous: a loaded CI machine under ASan must not read as a hang.
 */
#define SESSION_LIB_DEADLINE_MS 10000

/*
 * Makes base turn at least every millisecond while a test runs, so that
 * one EVLOOP_ONCE never blocks for long and the client is polled.  The
 * timer lives as long as the process.
 */
void session_lib_tick_start(struct event_base *base);
/*
 * The next client: a loopback address of its own (127.0.1.0 on), so that
 * no state a server keeps per client (connection counts, the AUTH guard's
 * waits) carries from one input to the next.  Each input calls it first.
 */
void session_lib_next_client(void);
/*
 * A non-blocking connect to 127.0.0.1:port (under way: EINPROGRESS), from
 * the current client's address.
 */
int session_lib_client_open(int port);
/*
 * Sends in (n bytes, at most chunk a write), then shuts the client's side;
 * reads what the server says into out (at most outsz bytes, the rest read
 * and dropped) until it closes.  Returns the bytes kept.  Aborts when the
 * server has not closed within the deadline.
 */
size_t session_lib_converse(struct event_base *base, int fd, const uint8_t *in,
			    size_t n, size_t chunk, char *out, size_t outsz);
/*
 * Turns the loop until busy(arg) is false: the server has let go of
 * everything the session held.  Aborts at the deadline.
 */
void session_lib_wait_idle(struct event_base *base,
			   bool (*busy)(const void *arg), const void *arg);

#endif
