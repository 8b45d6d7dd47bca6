/*
 * libcurl's multi socket interface driven by the agent's own event_base,
 * for any protocol: the plumbing that http_multi (HTTP APIs) and the smtp
 * connector share.  curl says which sockets to watch and when its next
 * timeout falls (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION); libevent watches
 * them and calls curl_multi_socket_action() on the loop.  There is no
 * thread and no blocking call of ours.
 *
 * The owner adds and removes its easy handles on curl_loop_multi() and
 * sets what its protocol needs on them; a finished transfer is reported
 * to the owner's done callback with its curl code, on the loop and never
 * from inside a curl callback, so the callback may add or remove
 * transfers, and even free the curl_loop (the free then waits until the
 * callback returns).
 */
#ifndef SHIVNERI_CURL_LOOP_H
#define SHIVNERI_CURL_LOOP_H

#include <curl/curl.h>

struct event_base;
struct curl_loop;

/* A transfer of cl's multi ended with code; on the loop. */
typedef void (*curl_loop_done_cb)(CURL *easy, CURLcode code, void *arg);

/*
 * A multi handle on base whose finished transfers go to done(easy, code,
 * arg); NULL when curl cannot start or make one.  curl_global_init runs
 * once per process, here.
 */
struct curl_loop *curl_loop_new(struct event_base *base, curl_loop_done_cb done,
				void *arg);
/*
 * Frees cl and its multi handle: connections still cached are closed
 * (with the protocol's goodbye, which may wait: see conn_smtp.c).  The
 * owner removes its easy handles first.  NULL is a no-op.  From inside
 * the done callback, the free happens once the callback has returned.
 */
void curl_loop_free(struct curl_loop *cl);
/* The multi handle, for curl_multi_add_handle/remove_handle/setopt. */
CURLM *curl_loop_multi(struct curl_loop *cl);

#endif
