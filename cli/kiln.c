/* kiln — one command, subcommands for each step of the pipeline. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv, const kiln_logger *log);
    const char *summary;
} subcommand;

static const subcommand subcommands[] = {
    {"prepare", kiln_cmd_prepare, "zip of class folders -> dataset (shards + manifest.json)"},
    {"data", kiln_cmd_data, "check a dataset zip or folder; push it to S3 after the checks"},
    {"s3", kiln_cmd_s3, "copy to and from S3 / MinIO, list, make buckets"},
    {"train", kiln_cmd_train, "prepared dataset -> trained model package, tracked in MLflow"},
    {"evaluate", kiln_cmd_evaluate, "metrics, confusion matrix and latency of a model package on a split"},
    {"predict", kiln_cmd_predict, "classify image files with a model package (as kiln-serve does)"},
    {"pipeline", kiln_cmd_pipeline, "KFP pipeline: compile, validate, run-local, submit, schedule"},
    {"version", kiln_cmd_version, "print kiln's version, build options and GPU"},
};
#define N_SUBCOMMANDS (sizeof subcommands / sizeof subcommands[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: kiln [--log-format human|json] [--log-level LEVEL] <command> [args]\n\n"
                 "  --log-format human|json  log lines on stderr (default $KILN_LOG_FORMAT, else\n"
                 "                           human; json: one object per line, for Kubernetes)\n"
                 "  --log-level info         debug, info, warn or error\n\n"
                 "commands:\n");
    for (size_t i = 0; i < N_SUBCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "\n'kiln <command> --help' describes a command.\n");
}

/* Global options come before the subcommand; KILN_LOG_FORMAT sets the default. */
static int parse_global(int *argi, int argc, char **argv, kiln_logger *log)
{
    kiln_err err = {0};
    const char *env = getenv("KILN_LOG_FORMAT");
    if (env && *env && kiln_log_format_parse(env, &log->format, &err) != KILN_OK) {
        fprintf(stderr, "kiln: KILN_LOG_FORMAT: %s\n", err.msg);
        return 2;
    }
    while (*argi < argc && argv[*argi][0] == '-') {
        const char *opt = argv[*argi];
        if (strcmp(opt, "-h") == 0 || strcmp(opt, "--help") == 0) {
            usage(stdout);
            return -1;
        }
        int is_format = strcmp(opt, "--log-format") == 0;
        int is_level = strcmp(opt, "--log-level") == 0;
        if (!is_format && !is_level) {
            fprintf(stderr, "kiln: unknown option '%s'\n", opt);
            usage(stderr);
            return 2;
        }
        if (*argi + 1 >= argc) {
            fprintf(stderr, "kiln: %s needs a value\n", opt);
            return 2;
        }
        const char *val = argv[*argi + 1];
        int rc = is_format ? kiln_log_format_parse(val, &log->format, &err)
                           : kiln_log_level_parse(val, &log->min_level, &err);
        if (rc != KILN_OK) {
            fprintf(stderr, "kiln: %s\n", err.msg);
            return 2;
        }
        *argi += 2;
    }
    return 0;
}

/* Decoding and resizing allocate and free buffers of a few hundred KB per
 * image. By default glibc serves those with mmap and gives them back at
 * once, so every image faults its pages in again (measured: 15-20% of
 * `kiln prepare`). Keep them on the heap instead. */
static void tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
}

int main(int argc, char **argv)
{
    kiln_logger log;
    int argi = 1;
    tune_malloc();
    kiln_logger_init(&log);
    int rc = parse_global(&argi, argc, argv, &log);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    if (argi >= argc) {
        usage(stderr);
        return 2;
    }
    for (size_t i = 0; i < N_SUBCOMMANDS; i++) {
        if (strcmp(argv[argi], subcommands[i].name) == 0)
            return subcommands[i].run(argc - argi, argv + argi, &log);
    }
    fprintf(stderr, "kiln: unknown command '%s'\n", argv[argi]);
    usage(stderr);
    return 2;
}
