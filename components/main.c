/* kiln-component STEP [flags]: the steps of kiln's KFP pipeline in one
 * program, so the image has one entrypoint and one binary to keep current. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "component.h"

typedef struct step {
    const char *name;
    int (*run)(comp_ctx *cx, int argc, char **argv);
    const char *summary;
} step;

static const step steps[] = {
    {"download", comp_download, "S3 / MinIO object (or a local file) -> zip artifact"},
    {"prepare", comp_prepare, "zip artifact -> dataset artifact (shards + manifest.json)"},
    {"train", comp_train, "dataset -> model package artifact + MLflow run"},
    {"evaluate", comp_evaluate, "model + test split -> metrics, confusion matrix (KFP + MLflow)"},
    {"register", comp_register, "MLflow model version + promotion gate (Production, champion)"},
    {"upload", comp_upload, "model package -> destination model bucket"},
};
#define N_STEPS (sizeof steps / sizeof steps[0])

static void usage(FILE *out)
{
    fprintf(out, "usage: kiln-component STEP [flags]   ('kiln-component STEP --help')\n\n"
                 "The steps of kiln's Kubeflow pipeline (pipelines/kiln-train.yaml):\n");
    for (size_t i = 0; i < N_STEPS; i++)
        fprintf(out, "  %-9s %s\n", steps[i].name, steps[i].summary);
    fprintf(out, "\nLogs go to standard output (KILN_LOG_FORMAT=json for one JSON object per "
                 "line);\na failure ends with one line on standard error and a non-zero exit.\n");
}

int main(int argc, char **argv)
{
    comp_ctx cx = {0};
    kiln_err err = {0};
    kiln_logger_init(&cx.log);
    cx.log.out = stdout;
    const char *fmt = getenv("KILN_LOG_FORMAT");
    if (fmt && *fmt && kiln_log_format_parse(fmt, &cx.log.format, &err) != KILN_OK) {
        fprintf(stderr, "kiln-component: KILN_LOG_FORMAT: %s\n", err.msg);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < N_STEPS; i++) {
        if (!strcmp(argv[1], steps[i].name)) {
            cx.step = steps[i].name;
            return steps[i].run(&cx, argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "kiln-component: unknown step '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
