/* The train and evaluate steps. The MLflow run train creates is the one
 * evaluate logs into and register reads: its id is train's run_id output. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/signals.h"
#include "component.h"
#include "data/dataset.h"
#include "kfp/executor.h"
#include "train/evaluate.h"
#include "train/train.h"

/* Raised by SIGTERM (a pod being deleted, run-local stopping) or SIGINT;
 * kiln_train checks it between batches, writes a checkpoint and ends the
 * MLflow run KILLED. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static const char train_usage[] =
    "--dataset DIR --out DIR --run-id-file PATH [--model-variant b0] [--epochs 10]\n"
    "    [--batch-size 32] [--learning-rate 0.001] [--mlflow-tracking-uri URI]\n"
    "    [--experiment-name kiln] [--seed 42] [--device auto|cpu|cuda] [--config-yaml YAML]\n\n"
    "Trains on the dataset artifact, writes the model package to --out (the model artifact)\n"
    "and the MLflow run id to --run-id-file (the run_id output). MLflow: --mlflow-tracking-uri\n"
    "or MLFLOW_TRACKING_URI (required). With KILN_MLFLOW_PARENT_RUN_ID set (kiln pipeline\n"
    "run-local), the run is tagged as that run's child. --device auto (default) trains on the\n"
    "GPU the pod requested when one is usable, else on the CPU. --config-yaml: kiln config\n"
    "text (train.*, augment.*; empty: the defaults) under the other flags.\n";

/* train.* settings from the flags onto the config defaults. */
static int train_config(comp_ctx *cx, const comp_flags *f, kiln_config *cfg)
{
    static const char *const flags[] = {"model-variant", "epochs", "batch-size", "learning-rate"};
    static const char *const keys[] = {"train.model", "train.epochs", "train.batch_size",
                                       "train.learning_rate"};
    kiln_err err = {0};
    char num[64];
    kiln_config_defaults(cfg);
    const char *yaml = comp_flag(f, "config-yaml");
    if (yaml && *yaml &&
        kiln_config_load_string(cfg, yaml, strlen(yaml), "--config-yaml", &err) != KILN_OK) {
        fprintf(stderr, "kiln-component %s: %s\n", cx->step, err.msg);
        return 2;
    }
    for (int i = 0; i < 4; i++) {
        const char *v = comp_flag(f, flags[i]);
        if (!v)
            continue;
        /* KFP may render an integer parameter as "10.0": the config wants "10". */
        if (i == 1 || i == 2) {
            int n;
            if (comp_int(cx, flags[i], v, 1, 1 << 20, &n))
                return 2;
            snprintf(num, sizeof num, "%d", n);
            v = num;
        }
        if (kiln_config_set(cfg, keys[i], v, &err) != KILN_OK) {
            fprintf(stderr, "kiln-component %s: --%s: %s\n", cx->step, flags[i], err.msg);
            return 2;
        }
    }
    cfg->data.workers = comp_cores();
    if (kiln_config_validate(cfg, &err) != KILN_OK) {
        fprintf(stderr, "kiln-component %s: %s\n", cx->step, err.msg);
        return 2;
    }
    return 0;
}

int comp_train(comp_ctx *cx, int argc, char **argv)
{
    static const char *const accepted[] = {"dataset", "out", "run-id-file", "model-variant",
                                           "epochs", "batch-size", "learning-rate",
                                           "mlflow-tracking-uri", "experiment-name", "seed", "device",
                                           "config-yaml", NULL};
    comp_flags f;
    kiln_err err = {0};
    kiln_train_opts o;
    kiln_train_result res = {0};
    int rc = comp_parse(cx, argc, argv, accepted, train_usage, &f);
    if (rc)
        return rc == 1 ? 0 : 2;
    kiln_train_opts_default(&o);
    o.data_dir = comp_need(cx, &f, "dataset");
    o.out_dir = comp_need(cx, &f, "out");
    const char *id_file = comp_need(cx, &f, "run-id-file"), *seed = comp_flag(&f, "seed");
    int seed_v = 42;
    if (!o.data_dir || !o.out_dir || !id_file || train_config(cx, &f, &o.cfg) ||
        (seed && comp_int(cx, "seed", seed, 0, 1 << 30, &seed_v)))
        return 2;
    o.seed = (uint64_t)seed_v;
    o.threads = comp_cores();
    o.experiment = comp_flag(&f, "experiment-name");
    o.device = comp_flag(&f, "device") ? comp_flag(&f, "device") : "auto";
    o.log = &cx->log;
    o.stop = &stop_requested;
    if (!(o.mlflow = comp_mlflow(cx, comp_flag(&f, "mlflow-tracking-uri"), &err)))
        return comp_fail(cx, &err);
    kiln_stop_signals_install(on_signal);
    rc = kiln_train(&o, &res, &err);
    const char *parent = getenv("KILN_MLFLOW_PARENT_RUN_ID");
    kiln_err e2 = {0};
    if (res.run_id[0] && parent && *parent &&
        kiln_mlflow_run_set_tag(o.mlflow, res.run_id, "mlflow.parentRunId", parent, &e2) != KILN_OK)
        kiln_log_warn(&cx->log, "train: tagging the run with its parent: %s", e2.msg);
    if (rc == KILN_OK && (rc = kiln_kfp_output_param_write(id_file, res.run_id, &err)) != KILN_OK)
        comp_fail_run(cx, o.mlflow, res.run_id, &err);
    kiln_mlflow_client_free(o.mlflow);
    if (rc != KILN_OK)
        return comp_fail(cx, &err);
    kiln_log_info(&cx->log, "train: %d epochs, best val accuracy %.4f (epoch %d); MLflow run %s",
                  res.epochs_done, res.best_val_accuracy, res.best_epoch, res.run_id);
    return 0;
}

/* ---- evaluate: everything from the executor input ({{$}}) ---- */

static const char evaluate_usage[] =
    "--executor-input JSON\n\n"
    "Reads KFP's executor input ({{$}}): input artifacts model and dataset, parameters run_id\n"
    "and mlflow_tracking_uri; output artifacts metrics (system.Metrics) and\n"
    "classification_metrics (system.ClassificationMetrics), output parameter test_accuracy.\n"
    "Evaluates the test split, writes metrics.json / confusion_matrix.* into the metrics\n"
    "artifact, logs them to the MLflow run, and writes the executor output (metrics and\n"
    "confusion matrix as artifact metadata for the KFP UI).\n";

static cJSON *scalar_metrics(const kiln_eval_metrics *m)
{
    cJSON *md = cJSON_CreateObject();
    cJSON_AddNumberToObject(md, "test_accuracy", m->accuracy);
    cJSON_AddNumberToObject(md, "test_top_k_accuracy", m->top_k_accuracy);
    cJSON_AddNumberToObject(md, "test_macro_f1", m->macro_f1);
    cJSON_AddNumberToObject(md, "test_weighted_f1", m->weighted_f1);
    cJSON_AddNumberToObject(md, "test_images", (double)m->images);
    cJSON_AddNumberToObject(md, "latency_ms_per_image", m->latency_ms_per_image);
    return md;
}

static int write_outputs(const cJSON *in, const kiln_eval_metrics *m, kiln_err *err)
{
    cJSON *out = kiln_kfp_executor_output_new();
    unsigned long long *counts = calloc((size_t)m->num_classes * m->num_classes, sizeof *counts);
    int rc = out && counts ? KILN_OK : kiln_err_set(err, KILN_ENOMEM, "out of memory");
    for (size_t i = 0; rc == KILN_OK && i < (size_t)m->num_classes * m->num_classes; i++)
        counts[i] = m->confusion[i];
    if (rc == KILN_OK)
        rc = kiln_kfp_executor_output_artifact(out, in, "metrics", scalar_metrics(m), err);
    if (rc == KILN_OK)
        rc = kiln_kfp_executor_output_artifact(
            out, in, "classification_metrics",
            kiln_kfp_confusion_matrix_metadata(m->num_classes, (const char *const *)m->classes,
                                               counts), err);
    if (rc == KILN_OK)
        rc = kiln_kfp_executor_output_param(out, "test_accuracy", cJSON_CreateNumber(m->accuracy),
                                            err);
    if (rc == KILN_OK)
        rc = kiln_kfp_executor_output_write(out, in, err);
    free(counts);
    cJSON_Delete(out);
    return rc;
}

/* The classification_metrics artifact's file: confusion_matrix.json's
 * content (its metadata carries the same matrix for the KFP UI). */
static int write_confusion(const cJSON *in, const kiln_eval_metrics *m, kiln_err *err)
{
    char *path = kiln_kfp_exec_artifact_path(in, 1, "classification_metrics", err);
    cJSON *j = path ? kiln_eval_confusion_json(m) : NULL;
    char *text = j ? cJSON_Print(j) : NULL;
    int rc = !path ? (int)err->code
             : !text ? kiln_err_set(err, KILN_ENOMEM, "out of memory")
                     : kiln_kfp_output_param_write(path, text, err);
    free(text);
    cJSON_Delete(j);
    free(path);
    return rc;
}

static int evaluate(comp_ctx *cx, const cJSON *in, kiln_mlflow_client **mc, const char **run_id,
                    kiln_err *err)
{
    kiln_eval_opts o;
    kiln_eval_metrics *m = NULL;
    char *model = kiln_kfp_exec_artifact_path(in, 0, "model", err);
    char *data = model ? kiln_kfp_exec_artifact_path(in, 0, "dataset", err) : NULL;
    char *out = data ? kiln_kfp_exec_artifact_path(in, 1, "metrics", err) : NULL;
    const char *uri = out ? kiln_kfp_exec_param_string(in, "mlflow_tracking_uri", err) : NULL;
    *run_id = uri ? kiln_kfp_exec_param_string(in, "run_id", err) : NULL;
    int rc = *run_id ? KILN_OK : err->code;
    if (rc == KILN_OK && !(*mc = comp_mlflow(cx, uri, err)))
        rc = err->code;
    if (rc == KILN_OK) {
        kiln_eval_opts_default(&o);
        o.model_dir = model;
        o.dataset_dir = data;
        o.split = KILN_SPLIT_TEST;
        o.threads = comp_cores();
        o.out_dir = out;
        rc = kiln_evaluate(&o, &cx->log, &m, NULL, 0, err);
    }
    if (rc == KILN_OK)
        rc = kiln_eval_log_mlflow(*mc, *run_id, m, "test", out, err);
    if (rc == KILN_OK)
        rc = write_confusion(in, m, err);
    if (rc == KILN_OK)
        rc = write_outputs(in, m, err);
    if (rc == KILN_OK)
        kiln_log_info(&cx->log, "evaluate: test accuracy %.4f on %llu images, macro F1 %.4f; "
                      "logged to MLflow run %s", m->accuracy, (unsigned long long)m->images,
                      m->macro_f1, *run_id);
    kiln_eval_metrics_free(m);
    free(model);
    free(data);
    free(out);
    return rc;
}

int comp_evaluate(comp_ctx *cx, int argc, char **argv)
{
    static const char *const accepted[] = {"executor-input", NULL};
    comp_flags f;
    kiln_err err = {0};
    kiln_mlflow_client *mc = NULL;
    const char *run_id = NULL;
    int rc = comp_parse(cx, argc, argv, accepted, evaluate_usage, &f);
    if (rc)
        return rc == 1 ? 0 : 2;
    const char *json = comp_need(cx, &f, "executor-input");
    if (!json)
        return 2;
    cJSON *in = kiln_kfp_executor_input_parse(json, &err);
    if (!in)
        return comp_fail(cx, &err);
    rc = evaluate(cx, in, &mc, &run_id, &err);
    if (rc != KILN_OK)
        comp_fail_run(cx, mc, run_id, &err);
    kiln_mlflow_client_free(mc);
    cJSON_Delete(in);
    return rc == KILN_OK ? 0 : comp_fail(cx, &err);
}
