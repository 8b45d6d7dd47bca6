/*
 * The agent protocol (docs/agent-protocol.md): typed, length-bounded frames
 * over TCP between an agent and the server's agent port.
 *
 * A frame is a 4-byte big-endian length N, then N bytes: one type byte and
 * the payload.  Every payload but JOB's is one UTF-8 JSON object; JOB's is
 * a 4-byte big-endian JSON length, the JSON object, then the raw message.
 * Decoders are pure (no I/O, fuzzable) and fail on short input, on trailing
 * bytes, on a missing or mistyped field and on any over-long string.
 *
 * Handshake, agent first:
 *   agent  -> HELLO     {version, name, type, nonce, pid, weight?, priority?,
 *                        max_in_flight?, max_message_bytes?, revision?}
 *   server -> CHALLENGE {version, nonce, revision?}
 *   agent  -> AUTH      {mac = HMAC-SHA256(secret, "shivneri-agent-v1" 0
 *                        server_nonce agent_nonce name)}
 *   server -> WELCOME   {mac = HMAC-SHA256(secret, "shivneri-server-v1" 0
 *                        agent_nonce server_nonce name), heartbeat_interval_ms,
 *                        max_message_bytes?}
 *           or ERROR {code, message} and close.
 * The secret never crosses the wire; both sides prove they hold it.  Then:
 *   agent  -> HEARTBEAT {seq, health, in_flight, load}
 *   server -> JOB       {job_id, message_id, mail_from, rcpt[]} + message
 *   agent  -> RESULT    {job_id, message_id, outcome, provider_message_id,
 *                        detail, retry_after_ms?}
 *   either -> ERROR     {code, message}, then close.
 *
 * One limit at every layer: a JOB frame is capped at
 * link_job_frame_max(max_message_bytes), so any message the server took
 * in fits.  The server announces its max_message_bytes in WELCOME; an
 * agent uses it (and its own file's value when a server does not send
 * it), so an agent run by hand with another file still agrees.
 *
 * Revisions: the wire version stays 1 so that old and new peers still
 * shake hands; what a server understands beyond it is its revision, an
 * optional key of CHALLENGE (absent: 1).  Revision 2 adds the outcomes
 * throttled, account and ambiguous and RESULT's retry_after_ms; an agent
 * reports them only to a server of revision 2 or later and says transient
 * to an older one (link_outcome_for_revision), whose decoder would refuse
 * an unknown outcome name.  Revision 3 adds the outcome too_large (the
 * provider's size limit, not the message's fault): a revision-2 server
 * hears permanent, which is what it made of a 413 or a 552 before.
 * Revision 4 adds needs_smtputf8 (a non-ASCII address at a provider that
 * does not offer SMTPUTF8, RFC 6531: not the message's fault either); an
 * older server hears permanent, as before.
 * Revision 5: HELLO says the agent's revision too (absent: older than 5),
 * and an agent of revision 5 sends a non-ASCII domain as its A-labels
 * where the provider lacks SMTPUTF8 (common/envelope.h), so it answers
 * needs_smtputf8 only for an address with no ASCII form; its server
 * routes by that rule for it, and by any non-ASCII byte for an older one.
 * HELLO's max_message_bytes (the provider's own limit) is optional in
 * every revision: a server that does not know it ignores it.
 */
#ifndef SHIVNERI_LINK_H
#define SHIVNERI_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LINK_VERSION 1
#define LINK_REVISION 5         /* what this build speaks; see above */
#define LINK_REVISION_ALABELS 5 /* agents send IDN domains as A-labels */
#define LINK_RETRY_AFTER_MAX_MS 86400000 /* a day: RESULT's retry_after_ms */
#define LINK_NONCE_LEN 32
#define LINK_MAC_LEN 32
#define LINK_NAME_MAX 64 /* provider names: [A-Za-z0-9._-]{1,64} */
#define LINK_TYPE_MAX 32
#define LINK_CTRL_MAX (64 * 1024) /* any frame but JOB */
#define LINK_ADDR_MAX 320
#define LINK_RCPT_MAX 1000
#define LINK_PMID_MAX 256
#define LINK_DETAIL_MAX 512
#define LINK_CODE_MAX 32
#define LINK_MSG_MAX 256
/*
 * The JSON header of a JOB at most: ids and keys, and mail_from plus
 * LINK_RCPT_MAX recipients of LINK_ADDR_MAX bytes with every byte
 * escaped as \uXXXX (6 bytes), the worst any JSON encoder may write.
 */
#define LINK_JOB_HEADER_MAX                                                    \
	((uint64_t)(LINK_RCPT_MAX + 1) * (6 * LINK_ADDR_MAX + 4) + 4096)
/*
 * The largest JOB frame (type byte, header length, header, message) for
 * messages of at most m bytes; a frame's length field is 32 bits.
 */
#define LINK_JOB_FRAME_MAX(m) ((uint64_t)(m) + 5 + LINK_JOB_HEADER_MAX)

enum link_type {
	LINK_HELLO = 1,
	LINK_CHALLENGE = 2,
	LINK_AUTH = 3,
	LINK_WELCOME = 4,
	LINK_ERROR = 5,
	LINK_HEARTBEAT = 6,
	LINK_JOB = 7,
	LINK_RESULT = 8,
};

enum link_health {
	LINK_HEALTH_OK = 0,
	LINK_HEALTH_DEGRADED = 1,
	LINK_HEALTH_DOWN = 2,
};

/*
 * What became of one job: the verdict an agent reports in RESULT, and the
 * outcome of an attempt as the store records it.  The numbers are stored:
 * never renumber, only add.
 */
enum outcome {
	OUTCOME_DELIVERED = 0, /* the provider accepted it */
	OUTCOME_TRANSIENT = 1, /* provider-caused failure: retry elsewhere */
	OUTCOME_PERMANENT = 2, /* message-caused failure: do not retry */
	OUTCOME_LOST = 3,      /* the agent went away holding it, or never
				  answered within job_timeout_s */
	OUTCOME_THROTTLED = 4, /* 429 or a rate error: pause the provider */
	OUTCOME_ACCOUNT = 5,   /* credentials, suspension, quota: the provider
				  is down until its probe passes */
	OUTCOME_AMBIGUOUS = 6, /* sent, no answer: a duplicate is possible */
	OUTCOME_TOO_LARGE = 7, /* over this provider's size limit (413, 552,
				  SIZE): another provider may take it */
	OUTCOME_NEEDS_SMTPUTF8 = 8, /* a non-ASCII address and no SMTPUTF8
				       here: another provider may take it */
};
#define OUTCOME_MAX OUTCOME_NEEDS_SMTPUTF8
const char *outcome_name(int outcome); /* "delivered", ...; "unknown" */
int outcome_parse(const char *s);      /* -1 if unknown */

/*
 * The link's own errors, outside errno's range so that one int can carry
 * either (link_conn's on_close gets a LINK_E_* or a -errno).
 */
enum link_err {
	LINK_E_SHORT = -1001,   /* truncated payload */
	LINK_E_TOOBIG = -1002,  /* frame over the cap */
	LINK_E_TYPE = -1003,    /* unknown frame type */
	LINK_E_SYNTAX = -1004,  /* not JSON, or trailing bytes */
	LINK_E_FIELD = -1005,   /* missing, mistyped or out-of-range field */
	LINK_E_VERSION = -1006, /* unsupported protocol version */
	LINK_E_AUTH = -1007,    /* bad MAC */
	LINK_E_STATE = -1008,   /* frame not allowed in this state */
};
/* A LINK_E_* or a -errno, as text. */
const char *link_strerror(int err);
const char *link_type_name(int type);
const char *link_health_name(int health); /* "ok" | "degraded" | "down" */

struct link_hello {
	uint32_t version;
	char name[LINK_NAME_MAX + 1];
	char type[LINK_TYPE_MAX + 1];
	uint8_t nonce[LINK_NONCE_LEN];
	int64_t pid;
	int weight;        /* 0: not given */
	int priority;      /* -1: not given */
	int max_in_flight; /* 0: not given */
	/* The provider's own message limit; 0: not given (the server's). */
	uint64_t max_message_bytes;
	uint32_t revision; /* 1 when absent (an agent older than revision 5) */
};

struct link_challenge {
	uint32_t version;
	uint8_t nonce[LINK_NONCE_LEN];
	uint32_t revision; /* 1 when absent (a server older than the key) */
};

struct link_auth {
	uint8_t mac[LINK_MAC_LEN];
};

struct link_welcome {
	uint8_t mac[LINK_MAC_LEN];
	uint32_t heartbeat_interval_ms;
	uint64_t max_message_bytes; /* 0: not given (an older server) */
};

struct link_error {
	char code[LINK_CODE_MAX + 1];
	char message[LINK_MSG_MAX + 1];
};

struct link_heartbeat {
	uint64_t seq;
	int health; /* enum link_health */
	uint32_t in_flight;
	uint32_t load; /* 0..100 */
};

/* A job as decoded: the strings are owned; mime points into the frame. */
struct link_job {
	uint64_t job_id;
	char message_id[64];
	char *mail_from;
	char **rcpt;
	size_t nrcpt;
	const uint8_t *mime; /* borrowed from the decoded buffer */
	size_t mime_len;
};

struct link_result {
	uint64_t job_id;
	char message_id[64];
	int outcome; /* enum outcome */
	char provider_message_id[LINK_PMID_MAX + 1];
	char detail[LINK_DETAIL_MAX + 1];
	/* How long the provider asked us to wait (throttled); 0: not said. */
	uint32_t retry_after_ms;
};

/*
 * The outcome an agent may report to a server of that revision: the
 * classes of revision 2 become transient for a revision-1 server, which
 * knows no other provider-caused failure; too_large (revision 3) and
 * needs_smtputf8 (revision 4) become permanent for an older server, which
 * has no other provider to pick by size or by SMTPUTF8 and would otherwise
 * offer the message to the same one again.
 */
int link_outcome_for_revision(int outcome, uint32_t revision);

/*
 * The cap of JOB frames for messages of at most max_message_bytes
 * (LINK_JOB_FRAME_MAX), bounded by what a frame's length can say.
 */
size_t link_job_frame_max(uint64_t max_message_bytes);

/*
 * Frame splitting.  Looks at len bytes of buf: returns 0 when a whole
 * frame is not there yet, 1 with *type, *payload, *plen and *consumed set
 * when one is, or LINK_E_TOOBIG when the announced length exceeds max
 * (type byte included) or is 0.
 */
int link_frame_split(const uint8_t *buf, size_t len, size_t max, int *type,
		     const uint8_t **payload, size_t *plen, size_t *consumed);

/*
 * Encoders append one whole frame to out (an evbuffer).  0 or a negative
 * error (a field out of range).
 */
struct evbuffer;
int link_encode_hello(struct evbuffer *out, const struct link_hello *m);
int link_encode_challenge(struct evbuffer *out, const struct link_challenge *m);
int link_encode_auth(struct evbuffer *out, const struct link_auth *m);
int link_encode_welcome(struct evbuffer *out, const struct link_welcome *m);
int link_encode_error(struct evbuffer *out, const char *code,
		      const char *message);
int link_encode_heartbeat(struct evbuffer *out, const struct link_heartbeat *m);
int link_encode_job(struct evbuffer *out, uint64_t job_id,
		    const char *message_id, const char *mail_from,
		    const char *const *rcpt, size_t nrcpt, const void *mime,
		    size_t mime_len);
int link_encode_result(struct evbuffer *out, const struct link_result *m);

/* Decoders of one payload (as split above).  0 or a negative LINK_E_*. */
int link_decode_hello(const uint8_t *p, size_t n, struct link_hello *m);
int link_decode_challenge(const uint8_t *p, size_t n, struct link_challenge *m);
int link_decode_auth(const uint8_t *p, size_t n, struct link_auth *m);
int link_decode_welcome(const uint8_t *p, size_t n, struct link_welcome *m);
int link_decode_error(const uint8_t *p, size_t n, struct link_error *m);
int link_decode_heartbeat(const uint8_t *p, size_t n, struct link_heartbeat *m);
/* On success job owns strings: release with link_job_cleanup(). */
int link_decode_job(const uint8_t *p, size_t n, struct link_job *m);
void link_job_cleanup(struct link_job *m);
int link_decode_result(const uint8_t *p, size_t n, struct link_result *m);

/* True for a valid provider name: [A-Za-z0-9._-], 1..LINK_NAME_MAX. */
bool link_name_valid(const char *name);

/* The two MACs of the handshake (see above). */
void link_mac_agent(const void *secret, size_t secret_len,
		    const uint8_t server_nonce[LINK_NONCE_LEN],
		    const uint8_t agent_nonce[LINK_NONCE_LEN], const char *name,
		    uint8_t out[LINK_MAC_LEN]);
void link_mac_server(const void *secret, size_t secret_len,
		     const uint8_t agent_nonce[LINK_NONCE_LEN],
		     const uint8_t server_nonce[LINK_NONCE_LEN],
		     const char *name, uint8_t out[LINK_MAC_LEN]);
/* Constant-time comparison of two MACs. */
bool link_mac_equal(const uint8_t a[LINK_MAC_LEN],
		    const uint8_t b[LINK_MAC_LEN]);

/*
 * A framed connection over a bufferevent, used by both sides.  It reads
 * frames (capped at max_frame), calls on_frame for each, and calls on_close
 * once when the peer goes away, on a read error, or on a malformed frame
 * (err says which: 0 for an orderly EOF, a LINK_E_* or -errno).  After
 * on_close the connection is dead; the owner frees it with link_conn_free()
 * (also allowed from inside on_close).  on_frame may call link_conn_close()
 * or link_conn_free(); no callback runs after that.
 */
struct link_conn;
struct bufferevent;
typedef void (*link_frame_cb)(struct link_conn *c, int type,
			      const uint8_t *payload, size_t len, void *arg);
typedef void (*link_close_cb)(struct link_conn *c, int err, void *arg);

/* Takes bev (BEV_OPT_CLOSE_ON_FREE expected). */
struct link_conn *link_conn_new(struct bufferevent *bev, size_t max_frame,
				link_frame_cb on_frame, link_close_cb on_close,
				void *arg);
void link_conn_set_max_frame(struct link_conn *c, size_t max_frame);
/* The output buffer to encode into; it is flushed by the loop. */
struct evbuffer *link_conn_output(struct link_conn *c);
/* Bytes queued for the peer and not yet written. */
size_t link_conn_pending(const struct link_conn *c);
/*
 * Sends ERROR{code,message} (when code is non-NULL) after what is queued,
 * flushes, and frees the connection itself once written (or after one
 * second): the owner must forget c.  No callback runs after this call.
 */
void link_conn_close(struct link_conn *c, const char *code,
		     const char *message);
/* Frees at once (after on_close, or to drop without a word).  NULL ok. */
void link_conn_free(struct link_conn *c);

#endif
