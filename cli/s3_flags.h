/* cli/s3_flags.h — the S3 connection flags shared by `kiln s3` and
 * `kiln data push`. They override the AWS_* environment, as the aws CLI's
 * do. Values point into argv: nothing to free. */
#ifndef KILN_CLI_S3_FLAGS_H
#define KILN_CLI_S3_FLAGS_H

#include <getopt.h>

#include "s3/s3.h"

#define S3_FLAG_BASE 2000 /* getopt_long values of the S3 options */
#define S3_FLAGS_MAX 16

typedef struct s3_flags {
    int n;
    const char *name[S3_FLAGS_MAX]; /* kiln_s3_config_set's field name */
    const char *value[S3_FLAGS_MAX];
    const char *flag[S3_FLAGS_MAX]; /* as typed, for messages */
} s3_flags;

/* getopt_long options (terminated by a zero entry); each .val is
 * S3_FLAG_BASE + its index. */
extern const struct option s3_flag_options[];
extern const char s3_flags_usage[];

/* Record option `opt` (an S3_FLAG_BASE value) with getopt's optarg.
 * 2 after printing an error naming `cmd` when there are too many. */
int s3_flags_add(s3_flags *f, int opt, const char *cmd);

/* Defaults, then the environment, then the flags. */
int s3_flags_config(const s3_flags *f, kiln_s3_config *cfg, kiln_err *err);

#endif
