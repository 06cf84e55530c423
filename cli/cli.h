/* cli/cli.h — the kiln command's subcommands. Each takes the arguments
 * after its name (argv[0] is the subcommand) and the logger main set up,
 * and returns the process exit status. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include "common/log.h"

int kiln_cmd_prepare(int argc, char **argv, const kiln_logger *log);
int kiln_cmd_data(int argc, char **argv, const kiln_logger *log);
int kiln_cmd_s3(int argc, char **argv, const kiln_logger *log);
int kiln_cmd_evaluate(int argc, char **argv, const kiln_logger *log);
int kiln_cmd_train(int argc, char **argv, const kiln_logger *log);
int kiln_cmd_version(int argc, char **argv, const kiln_logger *log);

#endif
