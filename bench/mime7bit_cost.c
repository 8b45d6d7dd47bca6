/*
 * mime7bit_cost: how long mime_7bit() (src/agent/mime_7bit.c) takes for
 * the largest message an agent accepts, the time the smtp connector once
 * spent on its event loop for every 8-bit message sent to a smarthost
 * without 8BITMIME (bench/RESULTS.md section 9).
 *
 * Two shapes, each BYTES long (default 26214400, the default
 * max_message_bytes), CRLF line ends:
 *   text       one text/plain part, 8bit, 76-byte lines of Latin text
 *              with UTF-8 letters (quoted-printable comes out);
 *   multipart  a short text part and an application/octet-stream part of
 *              8-bit bytes, 76-byte lines, a stand-in for an attachment
 *              sent as 8bit (base64 comes out).
 * Each is converted ROUNDS times; min, median and max in ms are printed.
 *
 *   build/bench/mime7bit_cost [BYTES [ROUNDS]]   (default 26214400 5)
 */
#include "agent/mime_7bit.h"

#include "clock.h"

#include <gmime/gmime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE 76

static const char hdr_text[] = "From: a@example.com\r\n"
			       "To: b@example.com\r\n"
			       "Subject: bench\r\n"
			       "MIME-Version: 1.0\r\n"
			       "Content-Type: text/plain; charset=utf-8\r\n"
			       "Content-Transfer-Encoding: 8bit\r\n"
			       "\r\n";

static const char hdr_multi[] =
    "From: a@example.com\r\n"
    "To: b@example.com\r\n"
    "Subject: bench\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b0undary\"\r\n"
    "\r\n"
    "--b0undary\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Voil\xc3\xa0 le fichier.\r\n"
    "--b0undary\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Disposition: attachment; filename=\"data.bin\"\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n";

static const char tail_multi[] = "\r\n--b0undary--\r\n";

/* Lines of LINE bytes and CRLF from gen() up to room bytes. */
static size_t
fill(uint8_t *p, size_t room, uint8_t (*gen)(size_t))
{
	size_t k = 0, col = 0;

	while (k + 2 < room) {
		if (col == LINE) {
			p[k++] = '\r';
			p[k++] = '\n';
			col = 0;
			continue;
		}
		p[k] = gen(k);
		k++;
		col++;
	}
	p[k++] = '\r';
	p[k++] = '\n';
	return k;
}

/* Latin text with a two-byte UTF-8 letter every 8 bytes. */
static uint8_t
gen_text(size_t k)
{
	static const char words[] = "Le cafe de la gare ";

	if (k % 8 == 6)
		return 0xc3;
	if (k % 8 == 7)
		return 0xa9;
	return (uint8_t)words[k % (sizeof(words) - 1)];
}

/* Any byte but NUL, CR and LF, as a file's bytes look. */
static uint8_t
gen_bin(size_t k)
{
	uint8_t b = (uint8_t)((k * 2654435761u) >> 13);

	return b == 0 || b == '\r' || b == '\n' ? 0x80 : b;
}

static uint8_t *
build(int multi, size_t bytes, size_t *len)
{
	uint8_t *m = malloc(bytes);
	const char *h = multi ? hdr_multi : hdr_text;
	size_t hl = strlen(h), tl = multi ? strlen(tail_multi) : 0, k;

	if (m == NULL || bytes < hl + tl + 256) {
		free(m);
		return NULL;
	}
	memcpy(m, h, hl);
	k = hl + fill(m + hl, bytes - hl - tl, multi ? gen_bin : gen_text);
	memcpy(m + k, tail_multi, tl);
	*len = k + tl;
	return m;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int
run(const char *name, int multi, size_t bytes, int rounds)
{
	uint64_t *t = calloc((size_t)rounds, sizeof(*t)), t0;
	uint8_t *in, *out = NULL;
	size_t len = 0, outlen = 0;
	int i, rc = 0;

	in = build(multi, bytes, &len);
	if (in == NULL || t == NULL) {
		fprintf(stderr, "mime7bit_cost: out of memory\n");
		free(t);
		return 1;
	}
	for (i = 0; i < rounds; i++) {
		t0 = mono_us();
		rc = mime_7bit(in, len, &out, &outlen);
		t[i] = mono_us() - t0;
		if (rc != 0) {
			fprintf(stderr, "mime7bit_cost: %s: mime_7bit %d\n",
				name, rc);
			break;
		}
		free(out);
	}
	if (rc == 0) {
		qsort(t, (size_t)rounds, sizeof(*t), cmp_u64);
		printf("%-9s in=%zu out=%zu rounds=%d ms min=%.1f median=%.1f "
		       "max=%.1f\n",
		       name, len, outlen, rounds, (double)t[0] / 1000,
		       (double)t[rounds / 2] / 1000,
		       (double)t[rounds - 1] / 1000);
	}
	free(in);
	free(t);
	return rc != 0;
}

int
main(int argc, char **argv)
{
	size_t bytes = 26214400;
	int rounds = 5, rc;

	if (argc > 1)
		bytes = strtoul(argv[1], NULL, 10);
	if (argc > 2)
		rounds = (int)strtol(argv[2], NULL, 10);
	if (rounds < 1)
		rounds = 1;
	g_mime_init();
	rc = run("text", 0, bytes, rounds);
	rc |= run("multipart", 1, bytes, rounds);
	g_mime_shutdown();
	return rc;
}
