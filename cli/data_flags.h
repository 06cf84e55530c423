/* cli/data_flags.h — the data flags shared by `kiln prepare` and
 * `kiln data`: --zip, --out, --config and the data.* overrides, parsed
 * with getopt_long, applied over the config file, turned into
 * kiln_prepare_opts. Everything points into argv: nothing to free. */
#ifndef KILN_CLI_DATA_FLAGS_H
#define KILN_CLI_DATA_FLAGS_H

#include "config/config.h"
#include "data/prepare.h"
#include "s3_flags.h"

#define DATA_FLAGS_MAX_OVERRIDES 16

typedef struct data_flags {
    const char *zip, *out, *config;
    int n_over;
    const char *over_key[DATA_FLAGS_MAX_OVERRIDES];
    const char *over_val[DATA_FLAGS_MAX_OVERRIDES];
    const char *over_flag[DATA_FLAGS_MAX_OVERRIDES];
    int n_positional;
    char **positional;         /* arguments that are not flags */
} data_flags;

/* The data.* flags' usage text, for a command's --help. */
extern const char data_flags_usage[];

/* Parse argv (argv[0] is the command's name); with `s3` non-NULL the S3
 * connection flags are accepted too and recorded there. Returns 0, 1 for
 * --help, or 2 after printing a usage error naming `cmd`. */
int data_flags_parse(int argc, char **argv, const char *cmd, data_flags *f, s3_flags *s3);

/* Defaults, then the config file, then the flags, then validation. */
int data_flags_config(const data_flags *f, kiln_config *cfg, kiln_err *err);

/* kiln_prepare_opts from the config and the paths in `f`. */
void data_flags_prepare_opts(const kiln_config *cfg, const data_flags *f,
                             kiln_prepare_opts *o);

#endif
