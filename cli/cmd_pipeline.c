/* kiln pipeline: compile (the generator), validate, run-local, submit,
 * schedule. This file: the dispatch, compile and validate. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_pipeline.h"
#include "common/fs.h"
#include "kfp/ir.h"

static void pipeline_usage(FILE *out)
{
    fprintf(out,
            "usage: kiln pipeline <command> [options]\n\n"
            "The Kubeflow Pipelines v2 training pipeline (pipelines/kiln-train.yaml).\n\n"
            "commands:\n"
            "  compile    write the pipeline's IR YAML (the generator)\n"
            "  validate   check an IR YAML file (wiring, types, placeholders, image)\n"
            "  run-local  run an IR YAML file on this machine, steps as local processes\n"
            "  submit     upload the pipeline to Kubeflow and start a run\n"
            "  schedule   upload the pipeline and create a recurring run (cron)\n\n"
            "'kiln pipeline <command> --help' lists each command's flags.\n");
}

static void compile_usage(FILE *out)
{
    fprintf(out,
            "usage: kiln pipeline compile [--out FILE] [--training-image IMG]\n\n"
            "Writes kiln's KFP v2 pipeline (IR YAML, with the kfp-kubernetes platform document\n"
            "mapping the credential Secrets to environment variables).\n\n"
            "  --out FILE               where to write (default: standard output)\n"
            "  --training-image IMG     image of every step (default %s)\n"
            "  --s3-secret NAME         Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY\n"
            "                           (default kiln-s3-credentials)\n"
            "  --mlflow-secret NAME     Secret with MLFLOW_TRACKING_USERNAME / _PASSWORD\n"
            "                           (default kiln-mlflow-credentials)\n",
            KILN_KFP_DEFAULT_IMAGE);
}

static int cmd_compile(int argc, char **argv, const kiln_logger *log)
{
    static const struct option opts[] = {
        {"out", 1, 0, 'o'},        {"training-image", 1, 0, 'i'}, {"s3-secret", 1, 0, 's'},
        {"mlflow-secret", 1, 0, 'm'}, {"help", 0, 0, 'h'},        {0, 0, 0, 0}};
    kiln_kfp_gen_opts g = {0};
    const char *out = NULL;
    kiln_err err = {0};
    char *yaml = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'i': g.image = optarg; break;
        case 's': g.s3_secret = optarg; break;
        case 'm': g.mlflow_secret = optarg; break;
        case 'h': compile_usage(stdout); return 0;
        default:
            fprintf(stderr, "kiln pipeline compile: unknown option or missing value: %s\n",
                    argv[optind - 1]);
            compile_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kiln pipeline compile: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (kiln_kfp_generate_yaml(&g, &yaml, &err) != KILN_OK)
        goto fail;
    if (!out) {
        fputs(yaml, stdout);
    } else if (kiln_write_file_atomic(out, yaml, strlen(yaml), &err) != KILN_OK) {
        goto fail;
    } else {
        kiln_log_info(log, "pipeline: wrote %s", out);
    }
    free(yaml);
    return 0;
fail:
    kiln_log_error(log, "kiln pipeline compile: %s", err.msg);
    free(yaml);
    return kiln_code_exit_status(err.code);
}

static int cmd_validate(int argc, char **argv, const kiln_logger *log)
{
    const char *image = NULL, *file = NULL;
    kiln_err err = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: kiln pipeline validate FILE.yaml [--training-image IMG]\n\n"
                   "Checks the IR: components, executors, wiring and types of every input,\n"
                   "placeholders, the DAG; with --training-image, that every step runs it\n"
                   "(default: any image).\n");
            return 0;
        } else if (!strcmp(argv[i], "--training-image") && i + 1 < argc) {
            image = argv[++i];
        } else if (argv[i][0] != '-' && !file) {
            file = argv[i];
        } else {
            fprintf(stderr, "kiln pipeline validate: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!file) {
        fprintf(stderr, "kiln pipeline validate: which file? (kiln pipeline validate FILE.yaml)\n");
        return 2;
    }
    kiln_kfp_ir *ir = kiln_kfp_ir_load(file, &err);
    if (ir && kiln_kfp_ir_validate(ir, image, &err) == KILN_OK) {
        const cJSON *tasks[KILN_KFP_MAX_TASKS];
        size_t n = 0;
        kiln_kfp_ir_order(ir, tasks, KILN_KFP_MAX_TASKS, &n, &err);
        const cJSON *info = cJSON_GetObjectItemCaseSensitive(ir->spec, "pipelineInfo");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(info, "name");
        printf("%s: valid KFP v2 pipeline '%s', %zu tasks:", file, name->valuestring, n);
        for (size_t i = 0; i < n; i++)
            printf(" %s", tasks[i]->string);
        printf("\n");
        kiln_kfp_ir_free(ir);
        return 0;
    }
    kiln_log_error(log, "kiln pipeline validate: %s", err.msg);
    kiln_kfp_ir_free(ir);
    return 1;
}

int kiln_cmd_pipeline(int argc, char **argv, const kiln_logger *log)
{
    if (argc < 2) {
        pipeline_usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h")) {
        pipeline_usage(stdout);
        return 0;
    }
    if (!strcmp(sub, "compile"))
        return cmd_compile(argc - 1, argv + 1, log);
    if (!strcmp(sub, "validate"))
        return cmd_validate(argc - 1, argv + 1, log);
    if (!strcmp(sub, "run-local"))
        return kiln_cmd_pipeline_run_local(argc - 1, argv + 1, log);
    if (!strcmp(sub, "submit"))
        return kiln_cmd_pipeline_submit(argc - 1, argv + 1, log, 0);
    if (!strcmp(sub, "schedule"))
        return kiln_cmd_pipeline_submit(argc - 1, argv + 1, log, 1);
    fprintf(stderr, "kiln pipeline: unknown command '%s'\n", sub);
    pipeline_usage(stderr);
    return 2;
}
