/*
 * The server's agent port: accepts agents' TCP connections, runs the
 * server side of the handshake of link.h (a challenge answered with an
 * HMAC over the shared secret, and the server's own proof back), then
 * binds the link to its provider in the registry (creating the provider
 * when the server's file does not name it) and feeds heartbeats and
 * results to the dispatcher.
 *
 * Untrusted input: every frame from an agent.  A malformed frame, a frame
 * out of turn, a wrong MAC, an unknown version, a name already linked, a
 * new name past max_dynamic_providers, a heartbeat flood or a handshake
 * slower than 3 s closes that connection with an ERROR frame and a
 * rate-limited log line; the server goes on.  Handshakes are bounded in
 * number (per address and in all); a newcomer evicts the oldest rather
 * than being refused.  A failed accept (out of descriptors) pauses the
 * listener and retries on a timer.
 */
#ifndef SHIVNERI_AGENT_PORT_H
#define SHIVNERI_AGENT_PORT_H

#include <stddef.h>

struct config;
struct dispatcher;
struct event_base;
struct registry;
struct agent_port;

/* Listens on cfg->agent_listen.  NULL with a message in err on failure. */
struct agent_port *agent_port_new(struct event_base *base,
				  const struct config *cfg, const void *secret,
				  size_t secret_len, struct registry *reg,
				  struct dispatcher *d, char *err,
				  size_t errlen);
/* Stops accepting new agents; links stay. */
void agent_port_stop_listening(struct agent_port *ap);
/* Closes every link (providers go down) and frees. */
void agent_port_free(struct agent_port *ap);
/* The port actually bound (for listen addresses with port 0). */
int agent_port_port(const struct agent_port *ap);
/*
 * Connections held now, from accept to close (handshakes and links), and
 * how many of them are handshakes (not yet WELCOMEd).  For tests: a peer
 * that is gone must leave nothing behind.
 */
size_t agent_port_connections(const struct agent_port *ap);
unsigned agent_port_handshakes(const struct agent_port *ap);

#endif
