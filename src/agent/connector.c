/*
 * The connector registry: each conn_TYPE.c registers its table from a
 * constructor (CONNECTOR_REGISTER) before main() runs, so the table is
 * filled once, single-threaded, and only read afterwards.  A fixed array
 * suffices: the types are the files of this folder.  Each table's keys
 * go to the configuration's registry of provider types at the same time.
 * Registering two tables under one name is our bug and fatal.  It also
 * holds connector_blot() and connector_blot_base64(), which every
 * connector uses to keep its secret out of a provider's words.
 */
#include "agent/connector.h"
#include "common/config.h"
#include "common/log.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define CONNECTOR_MAX 32

static const struct connector_ops *registry[CONNECTOR_MAX];
static const char *names[CONNECTOR_MAX];
static size_t nregistry;

void
connector_register(const struct connector_ops *ops)
{
	if (connector_lookup(ops->name) != NULL)
		fatalx("connector %s registered twice", ops->name);
	if (nregistry == CONNECTOR_MAX)
		fatalx("too many connectors (max %d)", CONNECTOR_MAX);
	if (ops->config == NULL || ops->config->name == NULL ||
	    strcmp(ops->config->name, ops->name) != 0)
		fatalx("connector %s declares no keys of its own name",
		       ops->name);
	config_ptype_register(ops->config);
	registry[nregistry] = ops;
	names[nregistry] = ops->name;
	nregistry++;
}

const struct connector_ops *
connector_lookup(const char *type)
{
	size_t i;

	if (type == NULL)
		return NULL;
	for (i = 0; i < nregistry; i++)
		if (strcmp(registry[i]->name, type) == 0)
			return registry[i];
	return NULL;
}

const char *const *
connector_names(size_t *n)
{
	*n = nregistry;
	return names;
}

void
connector_blot(char *text, const char *secret)
{
	size_t n = secret != NULL ? strlen(secret) : 0, len, k;
	char *p = text;

	if (n < 4)
		return;
	while ((p = strstr(p, secret)) != NULL) {
		memset(p, '*', n);
		p += n;
	}
	len = strlen(text);
	/* log_sanitize() marks what it cut with "...": look before it. */
	if (len >= 3 && memcmp(text + len - 3, "...", 3) == 0)
		len -= 3;
	for (k = n - 1 < len ? n - 1 : len; k >= 4; k--) {
		if (memcmp(text + len - k, secret, k) == 0) {
			memset(text + len - k, '*', k);
			break;
		}
	}
}

void
connector_blot_base64(char *text, const void *plain, size_t n)
{
	unsigned char b64[4 * CONNECTOR_BLOT_PLAIN_MAX / 3 + 4];
	int m;

	if (n > CONNECTOR_BLOT_PLAIN_MAX)
		return;
	m = EVP_EncodeBlock(b64, plain, (int)n);
	if (m > 0)
		connector_blot(text, (const char *)b64);
	OPENSSL_cleanse(b64, sizeof(b64));
}
