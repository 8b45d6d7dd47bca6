/*
 * The client commands.  Each takes argv as main() would (argv[0] is the
 * command name), supports --help, and returns the exit status: 0 done,
 * 1 failed at run time, 2 usage or configuration error.
 */
#ifndef SHIVNERI_CLI_H
#define SHIVNERI_CLI_H

int cli_send_main(int argc, char **argv);
int cli_status_main(int argc, char **argv);
int cli_providers_main(int argc, char **argv);
int cli_queue_main(int argc, char **argv);
int cli_check_config_main(int argc, char **argv);
int cli_version_main(int argc, char **argv);
int cli_messages_main(int argc, char **argv);
int cli_retry_main(int argc, char **argv);

#endif
