/*
 * mime_7bit: a message with 8-bit bytes made 7-bit for a smarthost whose
 * EHLO did not offer 8BITMIME (RFC 6152 section 3: convert, or do not
 * send).  Each leaf part whose content is not 7-bit gets the encoding
 * GMime finds best for it (quoted-printable or base64), with its
 * Content-Transfer-Encoding header; everything else (the other parts,
 * boundaries, the headers as the client wrote them) is kept.  The caller
 * owns GMime's init (g_mime_init() in its open()).
 */
#ifndef SHIVNERI_AGENT_MIME_7BIT_H
#define SHIVNERI_AGENT_MIME_7BIT_H

#include <stddef.h>
#include <stdint.h>

/*
 * in (len bytes, CRLF line ends) converted into a new buffer *out
 * (*outlen bytes, CRLF line ends, the caller frees it): 0.  1 when it is
 * not a MIME message (no MIME-Version header: there is no part to
 * re-encode, and it goes as it is, as it always did), -1 when GMime
 * cannot read it or write it.
 */
int mime_7bit(const uint8_t *in, size_t len, uint8_t **out, size_t *outlen);

#endif
