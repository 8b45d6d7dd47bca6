/*
 * shivneri version: our version and the versions of the libraries this
 * process actually runs on (the runtime ones, not the headers', so that a
 * library upgraded under the binary shows).  inih has no runtime version
 * call: its line says what the build knew.
 */
#include "cli/cli.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <gmime/gmime.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#include <stdio.h>
#include <string.h>

static void
usage(FILE *f)
{
	fprintf(f, "usage: shivneri version\n"
		   "\n"
		   "Prints the version of shivneri and of the libraries it "
		   "runs on.\n");
}

int
cli_version_main(int argc, char **argv)
{
	const curl_version_info_data *cv;

	if (argc > 1) {
		if (strcmp(argv[1], "--help") == 0 ||
		    strcmp(argv[1], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		fprintf(stderr, "version: unexpected argument '%s'\n", argv[1]);
		usage(stderr);
		return 2;
	}
	cv = curl_version_info(CURLVERSION_NOW);
	printf("shivneri %s\n", SHIVNERI_VERSION);
	printf("  libevent %s\n", event_get_version());
	printf("  libcurl  %s\n", cv != NULL ? cv->version : "unknown");
	printf("  jansson  %s\n", jansson_version_str());
	printf("  SQLite   %s\n", sqlite3_libversion());
	printf("  OpenSSL  %s\n", OpenSSL_version(OPENSSL_VERSION));
	printf("  GMime    %u.%u.%u\n", (unsigned)gmime_major_version,
	       (unsigned)gmime_minor_version, (unsigned)gmime_micro_version);
#ifdef SHIVNERI_INIH_VERSION
	printf("  inih     r%s (at build time; no runtime version)\n",
	       SHIVNERI_INIH_VERSION);
#else
	printf("  inih     the system's libinih (no runtime version)\n");
#endif
	return 0;
}
