/* kiln evaluate: a model package on one split of a prepared dataset. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "data/dataset.h"
#include "mlflow/mlflow.h"
#include "train/evaluate.h"

static void evaluate_usage(FILE *out)
{
    fprintf(out,
            "usage: kiln evaluate --model MODEL_DIR --data DATASET_DIR [options]\n\n"
            "Runs the model package on one split of a prepared dataset (no augmentation) and\n"
            "writes metrics.json, confusion_matrix.json and confusion_matrix.png.\n\n"
            "options:\n"
            "  --split test|val|train   split to evaluate (default test)\n"
            "  --batch-size N           images per forward (default 32)\n"
            "  --threads N              CPU threads (default: all cores)\n"
            "  --top-k K                top-k accuracy (default 5, capped at the classes)\n"
            "  --out DIR                output directory (default MODEL_DIR/eval-<split>)\n"
            "  --run-id ID              log metrics and the output directory to this MLflow run\n"
            "  --mlflow URI             tracking server (default $MLFLOW_TRACKING_URI)\n"
            "  --json                   print metrics.json instead of the summary\n");
}

typedef struct eval_flags {
    kiln_eval_opts o;
    const char *run_id, *mlflow_uri;
    int json;
} eval_flags;

enum { OPT_MODEL = 1000, OPT_DATA, OPT_SPLIT, OPT_BATCH, OPT_THREADS, OPT_TOPK, OPT_OUT,
       OPT_RUN, OPT_MLFLOW, OPT_JSON };

static const struct option options[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"data", required_argument, NULL, OPT_DATA},
    {"split", required_argument, NULL, OPT_SPLIT},
    {"batch-size", required_argument, NULL, OPT_BATCH},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"top-k", required_argument, NULL, OPT_TOPK},
    {"out", required_argument, NULL, OPT_OUT},
    {"run-id", required_argument, NULL, OPT_RUN},
    {"mlflow", required_argument, NULL, OPT_MLFLOW},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int set_flag(eval_flags *f, int opt, const char *arg)
{
    switch (opt) {
    case OPT_MODEL: f->o.model_dir = arg; return 0;
    case OPT_DATA: f->o.dataset_dir = arg; return 0;
    case OPT_OUT: f->o.out_dir = arg; return 0;
    case OPT_RUN: f->run_id = arg; return 0;
    case OPT_MLFLOW: f->mlflow_uri = arg; return 0;
    case OPT_JSON: f->json = 1; return 0;
    case OPT_BATCH:
        return kiln_cli_int_flag("evaluate", "--batch-size", arg, 1, 1 << 20, &f->o.batch_size);
    case OPT_THREADS:
        return kiln_cli_int_flag("evaluate", "--threads", arg, 1, 1 << 20, &f->o.threads);
    case OPT_TOPK:
        return kiln_cli_int_flag("evaluate", "--top-k", arg, 1, 1 << 20, &f->o.top_k);
    case OPT_SPLIT:
        if ((f->o.split = kiln_split_parse(arg)) >= 0)
            return 0;
        fprintf(stderr, "kiln evaluate: --split must be test, val or train, got '%s'\n", arg);
        return 2;
    default:
        return 2;
    }
}

/* 0, 1 for --help, 2 for a usage error. */
static int parse(int argc, char **argv, eval_flags *f)
{
    int opt;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    memset(f, 0, sizeof *f);
    kiln_eval_opts_default(&f->o);
    f->o.threads = cores > 0 ? (int)(cores < 64 ? cores : 64) : 1;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == 'h')
            return 1;
        if (opt == '?' || opt == ':') {
            fprintf(stderr, "kiln evaluate: unknown option or missing value: %s\n",
                    argv[optind - 1]);
            return 2;
        }
        if (set_flag(f, opt, optarg) != 0)
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "kiln evaluate: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!f->o.model_dir || !f->o.dataset_dir) {
        fprintf(stderr, "kiln evaluate: --model and --data are required\n");
        return 2;
    }
    return 0;
}

static void print_summary(const kiln_eval_metrics *m, const char *split, const char *dir)
{
    int w = 12; /* "weighted avg" */
    for (int c = 0; c < m->num_classes; c++)
        if ((int)strlen(m->classes[c]) > w)
            w = (int)strlen(m->classes[c]);
    if (w > 40)
        w = 40;
    printf("%s split: %llu images, accuracy %.4f, top-%d accuracy %.4f, macro F1 %.4f\n", split,
           (unsigned long long)m->images, m->accuracy, m->top_k, m->top_k_accuracy, m->macro_f1);
    printf("%-*s  precision  recall  f1      support\n", w, "class");
    for (int c = 0; c < m->num_classes; c++) {
        const kiln_eval_class *pc = &m->per_class[c];
        printf("%-*.*s  %9.4f  %6.4f  %6.4f  %7llu\n", w, w, m->classes[c], pc->precision,
               pc->recall, pc->f1, (unsigned long long)pc->support);
    }
    printf("%-*s  %9.4f  %6.4f  %6.4f  %7llu\n", w, "macro avg", m->macro_precision,
           m->macro_recall, m->macro_f1, (unsigned long long)m->images);
    printf("%-*s  %9.4f  %6.4f  %6.4f  %7llu\n", w, "weighted avg", m->weighted_precision,
           m->weighted_recall, m->weighted_f1, (unsigned long long)m->images);
    printf("latency: %.2f ms per image, %.2f ms per batch, %.1f images/s (forward only)\n",
           m->latency_ms_per_image, m->latency_ms_per_batch, m->images_per_second);
    printf("wrote %s/{metrics.json,confusion_matrix.json,confusion_matrix.png}\n", dir);
}

static int print_json(const char *dir, kiln_err *err)
{
    char path[PATH_MAX + 16];
    FILE *f;
    char buf[8192];
    size_t n;
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    if (!(f = fopen(path, "rb")))
        return kiln_err_errno(err, errno, "reading %s", path);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stdout);
    fclose(f);
    putchar('\n');
    return KILN_OK;
}

static int log_to_mlflow(const eval_flags *f, const kiln_eval_metrics *m, const char *dir,
                         const kiln_logger *log, kiln_err *err)
{
    kiln_mlflow_config cfg;
    kiln_mlflow_config_default(&cfg);
    int rc = kiln_mlflow_config_from_env(&cfg, err);
    if (rc == KILN_OK && f->mlflow_uri)
        rc = kiln_mlflow_config_set(&cfg, "tracking-uri", f->mlflow_uri, err);
    if (rc != KILN_OK)
        return rc;
    if (!cfg.tracking_uri[0])
        return kiln_err_set(err, KILN_EINVAL,
                            "--run-id needs a tracking server: set MLFLOW_TRACKING_URI or --mlflow");
    kiln_mlflow_client *c = kiln_mlflow_client_new(&cfg, log, err);
    if (!c)
        return err->code;
    rc = kiln_eval_log_mlflow(c, f->run_id, m, kiln_split_name(f->o.split), dir, err);
    kiln_mlflow_client_free(c);
    if (rc == KILN_OK)
        kiln_log_info(log, "evaluate: logged metrics and eval-%s/ to MLflow run %s",
                      kiln_split_name(f->o.split), f->run_id);
    return rc;
}

int kiln_cmd_evaluate(int argc, char **argv, const kiln_logger *log)
{
    eval_flags f;
    kiln_err err = {0};
    kiln_eval_metrics *m = NULL;
    char dir[PATH_MAX];
    int rc = parse(argc, argv, &f);
    if (rc != 0) {
        evaluate_usage(rc == 1 ? stdout : stderr);
        return rc == 1 ? 0 : 2;
    }
    if (kiln_evaluate(&f.o, log, &m, dir, sizeof dir, &err) != KILN_OK)
        goto fail;
    if (f.run_id && log_to_mlflow(&f, m, dir, log, &err) != KILN_OK)
        goto fail;
    if (f.json && print_json(dir, &err) != KILN_OK)
        goto fail;
    if (!f.json)
        print_summary(m, kiln_split_name(f.o.split), dir);
    kiln_eval_metrics_free(m);
    return 0;
fail:
    kiln_log_error(log, "kiln evaluate: %s", err.msg);
    kiln_eval_metrics_free(m);
    return kiln_code_exit_status(err.code);
}
