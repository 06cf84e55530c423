/* train_mlflow.c — what a training run records in MLflow: the run with its
 * params and tags, per-epoch metrics, the package and history artifacts,
 * and the final status. Every function is a no-op without a client. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "train/train_internal.h"

#define RUN_ID_FILE "mlflow-run-id"

static int write_run_id(train_ctx *c, kiln_err *err)
{
    char path[TRAIN_PATH_MAX], line[80];
    int rc = kiln_path_join(path, sizeof path, c->out_dir, RUN_ID_FILE, err);
    snprintf(line, sizeof line, "%s\n", c->run_id);
    return rc == KILN_OK ? kiln_write_file_atomic(path, line, strlen(line), err) : rc;
}

static int log_params(train_ctx *c, kiln_err *err)
{
    const kiln_train_opts *o = c->o;
    char v[17][64];
    snprintf(v[0], 64, "%d", o->cfg.train.epochs);
    snprintf(v[1], 64, "%d", o->cfg.train.batch_size);
    snprintf(v[2], 64, "%g", o->cfg.train.learning_rate);
    snprintf(v[3], 64, "%g", o->cfg.train.momentum);
    snprintf(v[4], 64, "%g", o->cfg.train.weight_decay);
    snprintf(v[5], 64, "%g", o->cfg.train.label_smoothing);
    snprintf(v[6], 64, "%s", o->cfg.augment.random_resized_crop ? "true" : "false");
    snprintf(v[7], 64, "%g", o->cfg.augment.scale_min);
    snprintf(v[8], 64, "%g", o->cfg.augment.scale_max);
    snprintf(v[9], 64, "%s", o->cfg.augment.horizontal_flip ? "true" : "false");
    snprintf(v[10], 64, "%llu", (unsigned long long)o->seed);
    snprintf(v[11], 64, "%d", o->warmup_epochs);
    snprintf(v[12], 64, "%d", o->patience);
    snprintf(v[13], 64, "%d", o->threads);
    snprintf(v[14], 64, "%d", o->cfg.data.workers);
    snprintf(v[15], 64, "%g", o->cfg.train.one_cycle_pct_start);
    const kiln_mlflow_kv params[] = {
        {"model", o->cfg.train.model},
        {"optimizer", o->cfg.train.optimizer},
        {"epochs", v[0]},
        {"batch_size", v[1]},
        {"learning_rate", v[2]},
        {"momentum", v[3]},
        {"weight_decay", v[4]},
        {"label_smoothing", v[5]},
        {"augment.random_resized_crop", v[6]},
        {"augment.scale_min", v[7]},
        {"augment.scale_max", v[8]},
        {"augment.horizontal_flip", v[9]},
        {"seed", v[10]},
        {"lr_schedule", o->cfg.train.lr_schedule},
        {"precision", o->cfg.train.precision},
        {"warmup_epochs", v[11]},
        {"one_cycle_pct_start", v[15]},
        {"early_stopping_patience", v[12]},
        {"threads", v[13]},
        {"loader_workers", v[14]},
        {"init_weights", o->init_weights ? o->init_weights : "none"},
        {"data", o->data_dir},
    };
    return kiln_mlflow_log_batch(o->mlflow, c->run_id, NULL, 0, params,
                                 sizeof params / sizeof params[0], NULL, 0, NULL, err);
}

static int create_run(train_ctx *c, kiln_err *err)
{
    const kiln_train_opts *o = c->o;
    char *exp_id = NULL;
    kiln_mlflow_run *run = NULL;
    int rc = kiln_mlflow_experiment_get_or_create(o->mlflow, o->experiment ? o->experiment : "kiln",
                                                  &exp_id, err);
    if (rc != KILN_OK)
        return rc;
    const kiln_mlflow_kv tags[] = {
        {"kiln.model", o->cfg.train.model},
        {"kiln.device", o->device ? o->device : "cpu"},
        {"kiln.version", KILN_VERSION},
    };
    kiln_mlflow_run_options ro = {.experiment_id = exp_id, .run_name = o->run_name,
                                  .source_name = "kiln train", .tags = tags, .n_tags = 3};
    rc = kiln_mlflow_run_create(o->mlflow, &ro, &run, err);
    free(exp_id);
    if (rc != KILN_OK)
        return rc;
    snprintf(c->run_id, sizeof c->run_id, "%s", run->info.run_id);
    c->artifact_uri = strdup(run->info.artifact_uri);
    kiln_mlflow_run_free(run);
    c->run_open = 1;
    if (!c->artifact_uri)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    return log_params(c, err);
}

/* A resumed run goes on in its own MLflow run, RUNNING again. */
static int reopen_run(train_ctx *c, kiln_err *err)
{
    kiln_mlflow_run *run = NULL;
    int rc = kiln_mlflow_run_get(c->o->mlflow, c->run_id, &run, err);
    if (rc != KILN_OK)
        return rc;
    c->artifact_uri = strdup(run->info.artifact_uri);
    kiln_mlflow_run_free(run);
    if (!c->artifact_uri)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    c->run_open = 1;
    return kiln_mlflow_run_update(c->o->mlflow, c->run_id, KILN_MLFLOW_RUNNING, 0, err);
}

int train_mlflow_start(train_ctx *c, kiln_err *err)
{
    if (!c->o->mlflow)
        return KILN_OK;
    int rc = c->run_id[0] ? reopen_run(c, err) : create_run(c, err);
    if (rc == KILN_OK)
        rc = write_run_id(c, err);
    if (rc == KILN_OK)
        kiln_log_info(c->o->log, "train: MLflow run %s", c->run_id);
    return rc == KILN_OK ? rc : kiln_err_wrap(err, "MLflow");
}

int train_mlflow_dataset_tag(train_ctx *c, kiln_err *err)
{
    if (!c->o->mlflow)
        return KILN_OK;
    int rc = kiln_mlflow_run_set_tag(c->o->mlflow, c->run_id, "kiln.dataset_sha256",
                                     c->dataset_sha, err);
    return rc == KILN_OK ? rc : kiln_err_wrap(err, "MLflow");
}

/* The backend that actually runs ("auto" resolved to "cuda" or "cpu") and
 * its precision (bf16 asked for on a CPU fallback runs fp32). */
int train_mlflow_device_tag(train_ctx *c, kiln_err *err)
{
    if (!c->o->mlflow)
        return KILN_OK;
    int rc = kiln_mlflow_run_set_tag(c->o->mlflow, c->run_id, "kiln.device", c->be->ops->name,
                                     err);
    if (rc == KILN_OK)
        rc = kiln_mlflow_run_set_tag(c->o->mlflow, c->run_id, "kiln.precision",
                                     kiln_act_precision(c->be->act), err);
    return rc == KILN_OK ? rc : kiln_err_wrap(err, "MLflow");
}

int train_mlflow_epoch(train_ctx *c, const kiln_train_epoch *e, kiln_err *err)
{
    if (!c->o->mlflow)
        return KILN_OK;
    const kiln_mlflow_metric m[] = {
        {"train_loss", e->train_loss, 0, e->epoch},
        {"train_accuracy", e->train_accuracy, 0, e->epoch},
        {"val_loss", e->val_loss, 0, e->epoch},
        {"val_accuracy", e->val_accuracy, 0, e->epoch},
        {"learning_rate", e->learning_rate, 0, e->epoch},
        {"epoch_seconds", e->seconds, 0, e->epoch},
    };
    int rc = kiln_mlflow_log_batch(c->o->mlflow, c->run_id, m, sizeof m / sizeof m[0], NULL, 0,
                                   NULL, 0, NULL, err);
    return rc == KILN_OK ? rc : kiln_err_wrap(err, "MLflow");
}

static int upload_history(train_ctx *c, kiln_err *err)
{
    char path[TRAIN_PATH_MAX];
    char *json = train_history_json(c);
    if (!json)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    int rc = kiln_path_join(path, sizeof path, c->ck_dir, "history.json", err);
    if (rc == KILN_OK)
        rc = kiln_write_file_atomic(path, json, strlen(json), err);
    free(json);
    if (rc == KILN_OK)
        rc = kiln_mlflow_artifact_upload_file(c->o->mlflow, c->artifact_uri, path,
                                              "history.json", err);
    return rc;
}

int train_mlflow_artifacts(train_ctx *c, kiln_err *err)
{
    static const char *const files[] = {"model.safetensors", "kiln-model.json", "MLmodel"};
    char local[TRAIN_PATH_MAX], remote[128];
    if (!c->o->mlflow)
        return KILN_OK;
    int rc = KILN_OK;
    for (size_t i = 0; rc == KILN_OK && i < sizeof files / sizeof files[0]; i++) {
        snprintf(remote, sizeof remote, "model/%s", files[i]);
        rc = kiln_path_join(local, sizeof local, c->out_dir, files[i], err);
        if (rc == KILN_OK)
            rc = kiln_mlflow_artifact_upload_file(c->o->mlflow, c->artifact_uri, local, remote,
                                                  err);
    }
    char best[32];
    snprintf(best, sizeof best, "%d", c->best_epoch);
    if (rc == KILN_OK)
        rc = upload_history(c, err);
    if (rc == KILN_OK)
        rc = kiln_path_join(local, sizeof local, c->out_dir, TRAIN_CURVES_FILE, err);
    if (rc == KILN_OK)
        rc = kiln_mlflow_artifact_upload_file(c->o->mlflow, c->artifact_uri, local,
                                              "plots/" TRAIN_CURVES_FILE, err);
    if (rc == KILN_OK)
        rc = kiln_mlflow_run_set_tag(c->o->mlflow, c->run_id, "kiln.best_epoch", best, err);
    return rc == KILN_OK ? rc : kiln_err_wrap(err, "MLflow artifacts");
}

void train_mlflow_end(train_ctx *c, kiln_mlflow_run_status status)
{
    kiln_err err = {0};
    if (!c->o->mlflow || !c->run_open)
        return;
    c->run_open = 0;
    if (kiln_mlflow_run_finish(c->o->mlflow, c->run_id, status, &err) != KILN_OK)
        kiln_log_warn(c->o->log, "train: could not mark MLflow run %s %s: %s", c->run_id,
                      kiln_mlflow_run_status_name(status), err.msg);
}
