/*
 * The pure half of the sendgrid connector: a message as SendGrid's v3
 * Mail Send JSON.  Apart from conn_sendgrid.c so that the fuzz target
 * (tests/fuzz/fuzz_sendgrid_json.c) drives it without a network.
 */
#ifndef SHIVNERI_CONN_SENDGRID_H
#define SHIVNERI_CONN_SENDGRID_H

#include "agent/connector.h"

/*
 * The request body of job (its MIME parsed with GMime, its envelope
 * deciding the personalizations), compact JSON to free(), or NULL with
 * the reason in *why (static text).  GMime must be initialized.
 */
char *sendgrid_build_body(const struct connector_job *job, const char **why);

#endif
