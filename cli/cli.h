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
int kiln_cmd_predict(int argc, char **argv, const kiln_logger *log);
int kiln_cmd_train(int argc, char **argv, const kiln_logger *log);
int kiln_cmd_version(int argc, char **argv, const kiln_logger *log);
int kiln_cmd_pipeline(int argc, char **argv, const kiln_logger *log);

/* Parse an integer flag value in [lo, hi] into *out. Returns 0, or prints
 * "kiln CMD: FLAG must be an integer in [lo, hi], got 'S'" and returns 2
 * (the usage-error exit status). */
int kiln_cli_int_flag(const char *cmd, const char *flag, const char *s, int lo, int hi, int *out);

#endif
