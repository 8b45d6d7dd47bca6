/*
 * What the httpd unit tests share (test_httpd*.c): a loopback client of a
 * server under test.
 */
#ifndef SHIVNERI_FIXTURE_HTTPD_H
#define SHIVNERI_FIXTURE_HTTPD_H

#include "server/httpd.h"

/* A client connected to h that has sent req; its fd. */
int fixture_client(struct httpd *h, const char *req);

#endif
