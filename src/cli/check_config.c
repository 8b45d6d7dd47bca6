/*
 * shivneri check-config -c FILE: loads a configuration the way serve and
 * agent do and reports every error found, each as FILE:LINE: message, so
 * that a bad file is fixed in one round.  Past the text, it runs the same
 * run-time checks as serve (config_check_runtime(): secret and key files,
 * environment variables, the log folder, colliding listen addresses), so
 * a file it passes is a file serve starts with.  What the SMTP intake's
 * files hold (the users file's lines, the certificate and its key) is
 * loaded here with the very loaders serve uses (smtp_users_load,
 * smtp_tls_new), since a broken one makes serve refuse to start: those
 * loaders live above common/, so config_check_runtime cannot call them.
 * Exit 0 when it is valid, 2 when it is not (or cannot be read).
 */
#include "cli/cli.h"
#include "cli/cli_opts.h"
#include "common/config.h"
#include "common/util.h"
#include "intake/smtp_auth.h"
#include "intake/smtp_tls.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>

static void
usage(FILE *f)
{
	fprintf(f, "usage: shivneri check-config -c FILE\n"
		   "\n"
		   "Validates a configuration: prints \"FILE: ok\", or every "
		   "error as\n"
		   "FILE:LINE: message on stderr and exits 2.\n");
}

static void errs_add(struct config_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
errs_add(struct config_errors *errs, const char *fmt, ...)
{
	va_list ap;
	char m[1024];

	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	errs->msg = xreallocarray(errs->msg, errs->n + 1, sizeof(*errs->msg));
	errs->msg[errs->n++] = xstrdup(m);
}

/* "FILE:LINE: " of key, or "FILE: " when the key has no line. */
static void
where(const struct config *cfg, const char *key, char *buf, size_t len)
{
	int line = config_line(cfg, key);

	if (line > 0)
		snprintf(buf, len, "%s:%d: ", cfg->path, line);
	else
		snprintf(buf, len, "%s: ", cfg->path);
}

/*
 * Loads the SMTP intake's certificate, key and users as serve does when an
 * SMTP listener is set; 0, or -EINVAL with one error per file that does
 * not load.  The loaders' messages name the file and line, never a hash.
 */
static int
check_smtp_contents(const struct config *cfg, struct config_errors *errs)
{
	struct smtp_users *u = NULL;
	struct smtp_tls *t = NULL;
	char err[512], at[300];
	int rc = 0;

	if ((cfg->smtp_listen == NULL || *cfg->smtp_listen == '\0') &&
	    (cfg->smtps_listen == NULL || *cfg->smtps_listen == '\0'))
		return 0;
	if (cfg->smtp_tls_cert_file != NULL) {
		if (smtp_tls_new(cfg->smtp_tls_cert_file,
				 cfg->smtp_tls_key_file, &t, err,
				 sizeof(err)) != 0) {
			where(cfg, "smtp_tls_cert_file", at, sizeof(at));
			errs_add(errs, "%ssmtp_tls_cert_file: %s", at, err);
			rc = -EINVAL;
		}
		smtp_tls_free(t);
	}
	if (cfg->smtp_users_file != NULL) {
		if (smtp_users_load(cfg->smtp_users_file, &u, err,
				    sizeof(err)) != 0) {
			where(cfg, "smtp_users_file", at, sizeof(at));
			errs_add(errs, "%ssmtp_users_file: %s", at, err);
			rc = -EINVAL;
		}
		smtp_users_free(u);
	}
	return rc;
}

int
cli_check_config_main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct config_errors errs = {NULL, 0};
	struct config *cfg = NULL;
	const char *path = NULL;
	size_t i;
	int ch;

	optind = 1;
	opterr = 0;
	for (;;) {
		ch = getopt_long(argc, argv, "c:h", opts, NULL);
		if (ch == -1)
			break;
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return cli_opts_bad_option("check-config", argv, usage);
		}
	}
	if (path == NULL || optind != argc) {
		usage(stderr);
		return 2;
	}
	/* The contents only once the paths passed: one error per file. */
	if (config_load(path, &cfg, &errs) != 0 ||
	    config_check_runtime(cfg, NULL, &errs) != 0 ||
	    check_smtp_contents(cfg, &errs) != 0) {
		config_free(cfg);
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		if (errs.n == 0)
			fprintf(stderr, "%s: invalid\n", path);
		config_errors_cleanup(&errs);
		return 2;
	}
	printf("%s: ok\n", path);
	config_free(cfg);
	return 0;
}
