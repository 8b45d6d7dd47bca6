/*
 * Provider sections: the generic keys every provider takes (type, spawn,
 * weight, ...), and the keys of its type, which this file does not know:
 * each connector declares them in a struct config_ptype and registers it
 * from a constructor (CONNECTOR_REGISTER in agent/connector.h) before
 * main() runs, so the registry is filled once, single-threaded, and only
 * read afterwards.  common/ thus never includes agent/, and a type this
 * build does not run is refused with the list of those it does.
 *
 * Sections are checked after the whole file was read, because "type" may
 * come after the keys it governs.  Nothing here is fatal but registering
 * one type twice (our bug); every problem is a FILE:LINE error.
 */
#include "common/config_int.h"
#include "common/log.h"
#include "common/util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PTYPE_MAX 32

static const struct config_ptype *ptypes[PTYPE_MAX];
static size_t nptypes;

static const char *const generic_keys[] = {
    "type",
    "spawn",
    "weight",
    "priority",
    "max_in_flight",
    "rate_per_s",
    "slow_start_s",
    "overflow",
    "probe_interval_s",
    "max_message_bytes",
};

void
config_ptype_register(const struct config_ptype *pt)
{
	if (pt == NULL || pt->name == NULL)
		fatalx("config: a provider type without a name");
	if (config_ptype_lookup(pt->name) != NULL)
		fatalx("config: provider type %s registered twice", pt->name);
	if (nptypes == PTYPE_MAX)
		fatalx("config: too many provider types (max %d)", PTYPE_MAX);
	ptypes[nptypes++] = pt;
}

const struct config_ptype *
config_ptype_lookup(const char *name)
{
	size_t i;

	if (name == NULL)
		return NULL;
	for (i = 0; i < nptypes; i++)
		if (strcmp(ptypes[i]->name, name) == 0)
			return ptypes[i];
	return NULL;
}

static bool
in_list(const char *const *list, const char *key)
{
	size_t i;

	for (i = 0; list != NULL && list[i] != NULL; i++)
		if (strcmp(list[i], key) == 0)
			return true;
	return false;
}

static bool
is_generic_key(const char *key)
{
	size_t i;

	for (i = 0; i < sizeof(generic_keys) / sizeof(generic_keys[0]); i++)
		if (strcmp(generic_keys[i], key) == 0)
			return true;
	return false;
}

static const struct config_kv *
kv_find(const struct provider_config *pc, const char *key)
{
	size_t i;

	for (i = 0; i < pc->nkv; i++)
		if (strcmp(pc->kv[i].key, key) == 0)
			return &pc->kv[i];
	return NULL;
}

void
config_report_error(struct config_report *r, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config__report_verror(r, line, fmt, ap);
	va_end(ap);
}

void
config__kv_add(struct provider_config *pc, const char *key, const char *value,
	       int line)
{
	pc->kv = xreallocarray(pc->kv, pc->nkv + 1, sizeof(*pc->kv));
	pc->kv[pc->nkv].key = xstrdup(key);
	pc->kv[pc->nkv].value = xstrdup(value);
	pc->kv[pc->nkv].line = line;
	pc->nkv++;
}

void
provider_config_default(struct provider_config *pc, const char *key,
			const char *value)
{
	if (kv_find(pc, key) == NULL)
		config__kv_add(pc, key, value, pc->line);
}

/* "type must be one of maildir, ..." from the registry. */
static void
report_unknown_type(struct config_report *r, int line, const char *type)
{
	char list[256] = "", clean[80];
	size_t i, off = 0;
	int w;

	for (i = 0; i < nptypes && off < sizeof(list); i++) {
		w = snprintf(list + off, sizeof(list) - off, "%s%s",
			     i > 0 ? ", " : "", ptypes[i]->name);
		if (w < 0)
			break;
		off += (size_t)w;
	}
	config_report_error(
	    r, line,
	    "type: '%s' is not a provider type of this build (known: %s)",
	    log_sanitize(type, strlen(type), clean, sizeof(clean)),
	    nptypes > 0 ? list : "none");
}

/* The section's type from the registry, or NULL (reported). */
static const struct config_ptype *
section_type(struct provider_config *pc, struct config_report *r)
{
	const struct config_kv *kv = kv_find(pc, "type");
	const struct config_ptype *pt;

	if (kv == NULL || kv->value[0] == '\0') {
		config_report_error(r, kv != NULL ? kv->line : pc->line,
				    "[provider.%s]: missing required key "
				    "'type'",
				    pc->name);
		return NULL;
	}
	pt = config_ptype_lookup(kv->value);
	if (pt == NULL) {
		report_unknown_type(r, kv->line, kv->value);
		return NULL;
	}
	pc->type = xstrdup(pt->name);
	return pt;
}

static void
generic_int64(struct config_report *r, const struct config_kv *kv, int64_t min,
	      int64_t max, int64_t *out)
{
	int64_t v;

	if (!config__parse_int64(kv->value, min, max, &v)) {
		config_report_error(
		    r, kv->line, "%s: must be an integer between %lld and %lld",
		    kv->key, (long long)min, (long long)max);
		return;
	}
	*out = v;
}

/* min and max within int's range. */
static void
generic_int(struct config_report *r, const struct config_kv *kv, int64_t min,
	    int64_t max, int *out)
{
	int64_t v = *out;

	generic_int64(r, kv, min, max, &v);
	*out = (int)v;
}

static void
generic_bool(struct config_report *r, const struct config_kv *kv, int *out)
{
	bool b;

	if (!config__parse_bool(kv->value, &b)) {
		config_report_error(r, kv->line,
				    "%s: must be yes, no, true, false, 1 or 0",
				    kv->key);
		return;
	}
	*out = b ? 1 : 0;
}

/* One generic key (not "type"); false when key is not generic. */
static bool
generic_key(struct provider_config *pc, const struct config_kv *kv,
	    struct config_report *r)
{
	int spawn = pc->spawn ? 1 : 0;

	if (strcmp(kv->key, "spawn") == 0) {
		generic_bool(r, kv, &spawn);
		pc->spawn = spawn != 0;
	} else if (strcmp(kv->key, "weight") == 0) {
		generic_int(r, kv, 1, 1000, &pc->weight);
	} else if (strcmp(kv->key, "priority") == 0) {
		generic_int(r, kv, 0, 1000000, &pc->priority);
	} else if (strcmp(kv->key, "max_in_flight") == 0) {
		generic_int(r, kv, 1, 100000, &pc->max_in_flight);
	} else if (strcmp(kv->key, "rate_per_s") == 0) {
		generic_int(r, kv, 0, INT_MAX, &pc->rate_per_s);
	} else if (strcmp(kv->key, "slow_start_s") == 0) {
		generic_int(r, kv, 0, INT_MAX, &pc->slow_start_s);
	} else if (strcmp(kv->key, "probe_interval_s") == 0) {
		generic_int(r, kv, 1, 86400, &pc->probe_interval_s);
	} else if (strcmp(kv->key, "overflow") == 0) {
		generic_bool(r, kv, &pc->overflow);
	} else if (strcmp(kv->key, "max_message_bytes") == 0) {
		generic_int64(r, kv, 1024, CONFIG_MESSAGE_BYTES_MAX,
			      &pc->max_message_bytes);
	} else {
		return is_generic_key(kv->key);
	}
	return true;
}

/* A key of the type's own: known to it, and a well-formed secret ref. */
static void
type_key(const struct provider_config *pc, const struct config_ptype *pt,
	 const struct config_kv *kv, struct config_report *r)
{
	char clean[80];

	if (!in_list(pt->required, kv->key) &&
	    !in_list(pt->optional, kv->key)) {
		config_report_error(
		    r, kv->line,
		    "unknown key '%s' for type %s in [provider.%s]",
		    log_sanitize(kv->key, strlen(kv->key), clean,
				 sizeof(clean)),
		    pt->name, pc->name);
		return;
	}
	if (in_list(pt->secret, kv->key) &&
	    strncmp(kv->value, "env:", 4) == 0 &&
	    !config__env_ref_valid(kv->value))
		config_report_error(r, kv->line,
				    "%s: env: must name a variable "
				    "([A-Za-z_][A-Za-z0-9_]*)",
				    kv->key);
}

static void
required_keys(const struct provider_config *pc, const struct config_ptype *pt,
	      struct config_report *r)
{
	const struct config_kv *kv;
	size_t i;

	for (i = 0; pt->required != NULL && pt->required[i] != NULL; i++) {
		kv = kv_find(pc, pt->required[i]);
		if (kv == NULL)
			config_report_error(
			    r, pc->line,
			    "[provider.%s]: type %s needs key '%s'", pc->name,
			    pt->name, pt->required[i]);
		else if (kv->value[0] == '\0')
			config_report_error(r, kv->line,
					    "%s: must not be empty", kv->key);
	}
}

/* Checks one provider section once the whole file has been read. */
static void
provider_finish(struct config *cfg, struct provider_config *pc,
		struct config_report *r)
{
	const struct config_ptype *pt = section_type(pc, r);
	size_t i, nkv = pc->nkv;

	for (i = 0; i < nkv; i++) {
		if (generic_key(pc, &pc->kv[i], r))
			continue;
		if (pt != NULL)
			type_key(pc, pt, &pc->kv[i], r);
	}
	if (pt == NULL)
		return;
	required_keys(pc, pt, r);
	if (pt->check != NULL)
		pt->check(pc, cfg, r);
}

void
config__providers_finish(struct config *cfg, struct config_report *r)
{
	size_t i;

	for (i = 0; i < cfg->nproviders; i++)
		provider_finish(cfg, &cfg->providers[i], r);
}

const struct provider_config *
config_provider(const struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->nproviders; i++)
		if (strcmp(cfg->providers[i].name, name) == 0)
			return &cfg->providers[i];
	return NULL;
}

const char *
provider_config_get(const struct provider_config *pc, const char *key)
{
	const struct config_kv *kv = kv_find(pc, key);

	return kv != NULL ? kv->value : NULL;
}

int
provider_config_line(const struct provider_config *pc, const char *key)
{
	const struct config_kv *kv = kv_find(pc, key);

	return kv != NULL ? kv->line : pc->line;
}

int64_t
config_provider_max_bytes(const struct provider_config *pc)
{
	const struct config_ptype *pt;

	if (pc == NULL)
		return 0;
	if (pc->max_message_bytes > 0)
		return pc->max_message_bytes;
	pt = config_ptype_lookup(pc->type);
	return pt != NULL ? pt->max_message_bytes : 0;
}
