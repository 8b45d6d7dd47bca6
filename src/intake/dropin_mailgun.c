/*
 * Mailgun (dropin.h): to come.
 */
#include "intake/dropin.h"
#include "intake/message_int.h"

size_t
dropin_form_max_bytes(const struct message_limits *lim)
{
	size_t m = lim->max_message_bytes;
	size_t extra = lim->max_recipients * (3 * MAX_ADDRESS_LEN + 16);
	size_t slack = 1024 * 1024;

	if (m > (SIZE_MAX - extra - slack) / 3)
		return SIZE_MAX;
	return 3 * m + extra + slack;
}
