/*
 * libFuzzer target for the smtp connector's reading of a smarthost
 * (smtp_dialogue): the input is what the smarthost sends, cut into reads
 * of a size taken from its first byte, split into lines by
 * smtp_dialogue_line(), each told to smtp_dialogue_in() and
 * smtp_dialogue_ehlo() while our side says MAIL, two RCPTs and DATA in
 * turn, one after each final reply, as the connector does in lock-step,
 * or (the first byte's top bit) all four before any reply, as it does
 * pipelined; then the attempt is classified.  Any bytes must give an
 * outcome and a NUL-terminated detail of printable bytes, never a crash,
 * a line longer than SMTP_DIALOGUE_LINE_MAX or a write past the
 * recipients' answers, and the scrub leaves no password in the texts (one
 * of ASCII, one of UTF-8 in the form the texts hold it).  The same bytes as a
 * message must dot-stuff, in parts of that size, to what a byte-by-byte
 * reference makes.
 */
#include "agent/connector.h"
#include "agent/smtp_dialogue.h"
#include "link/link.h"
#include "smtp_stuff_ref.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A password in UTF-8, and how log_sanitize() prints it. */
#define PW_UTF8 "pw-\xc3\xbc-fuzz"
#define PW_PRINTED                                                             \
	"pw-?"                                                                 \
	"?-fuzz" /* split: no trigraph */

static const char *const cmds[] = {"MAIL FROM:<a@x>\r\n", "RCPT TO:<b@x>\r\n",
				   "RCPT TO:<c@x>\r\n", "DATA\r\n"};

static void
check_stuffing(const uint8_t *msg, size_t len, size_t part)
{
	struct smtp_stuff st;
	uint8_t *want = malloc(2 * len + 5), *got = malloc(2 * len + 5 + part);
	size_t nwant, n = 0, k;

	if (want == NULL || got == NULL)
		abort();
	nwant = smtp_stuff_ref(msg, len, want);
	smtp_dialogue_stuff_init(&st);
	do {
		k = smtp_dialogue_stuff(&st, msg, len, (char *)got + n, part);
		n += k;
		if (n > nwant)
			abort();
	} while (k > 0);
	if (n != nwant || memcmp(got, want, n) != 0)
		abort();
	free(want);
	free(got);
}

static void
check_printable(const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	if (n == max)
		abort();
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const rcpt[] = {"b@x", "c@x"};
	struct connector_job job = {
	    .message_id = "m", .mail_from = "a@x", .rcpt = rcpt, .nrcpt = 2};
	struct smtp_dialogue d;
	struct smtp_lines l;
	struct connector_result res;
	struct smtp_attempt a;
	char detail[LINK_DETAIL_MAX + 1], id[128];
	const char *p, *line;
	size_t step, left, take, n, len, next = 0;
	int codes[2] = {0, 0};
	bool last, piped;

	if (size == 0)
		return 0;
	step = (size_t)(data[0] % 64) + 1;
	piped = (data[0] & 0x80) != 0;
	p = (const char *)data + 1;
	left = size - 1;
	check_stuffing(data + 1, left, step + 4);
	memset(&d, 0, sizeof(d));
	memset(&l, 0, sizeof(l));
	d.rcpt_code = codes;
	for (; piped && next < sizeof(cmds) / sizeof(cmds[0]); next++)
		smtp_dialogue_out(&d, cmds[next], strlen(cmds[next]));
	while (left > 0) {
		take = left < step ? left : step;
		while (take > 0) {
			n = smtp_dialogue_line(&l, p, take, &line, &len);
			if (n == 0 || n > take)
				abort();
			p += n;
			take -= n;
			left -= n;
			if (line == NULL)
				continue;
			if (len > SMTP_DIALOGUE_LINE_MAX)
				abort();
			smtp_dialogue_in(&d, line, len);
			(void)smtp_dialogue_ehlo(line, len);
			if (smtp_dialogue_ehlo_size(line, len) > 0 &&
			    smtp_dialogue_ehlo(line, len) != SMTP_EXT_SIZE)
				abort(); /* a size from a line not SIZE's */
			if (smtp_dialogue_code(line, len, &last) != 0 && last &&
			    next < sizeof(cmds) / sizeof(cmds[0])) {
				smtp_dialogue_out(&d, cmds[next],
						  strlen(cmds[next]));
				next++;
			}
		}
	}
	if (d.nrcpt_sent > 2 || d.nrcpt_done > d.nrcpt_sent ||
	    (d.data_go && d.data_empty))
		abort();
	/* The connector scrubs the texts before classify: so here.  The
	 * texts were made printable as they were read, so a password of
	 * UTF-8 is there with '?' for its 8-bit bytes, whole or cut. */
	smtp_dialogue_scrub(d.final_text, "relay", "pw-fuzz");
	smtp_dialogue_scrub(d.last_text, "relay", "pw-fuzz");
	smtp_dialogue_scrub(d.final_text, "relay", PW_UTF8);
	smtp_dialogue_scrub(d.last_text, "relay", PW_UTF8);
	if (strstr(d.final_text, "pw-fuzz") != NULL ||
	    strstr(d.last_text, "pw-fuzz") != NULL ||
	    strstr(d.final_text, PW_PRINTED) != NULL ||
	    strstr(d.last_text, PW_PRINTED) != NULL)
		abort();
	a = (struct smtp_attempt){
	    .job = &job,
	    .d = &d,
	    .rc = d.final_code / 100 == 2 ? CURLE_OK : CURLE_WEIRD_SERVER_REPLY,
	    .errbuf = "",
	    .body_eof = d.data_go};
	smtp_dialogue_classify(&a, &res, detail, sizeof(detail), id,
			       sizeof(id));
	if (res.outcome < 0 || res.outcome > OUTCOME_MAX)
		abort();
	if (res.detail != NULL)
		check_printable(res.detail, sizeof(detail));
	if (res.provider_message_id != NULL)
		check_printable(res.provider_message_id, sizeof(id));
	return 0;
}
