/* lib/train/train_internal.h — the state of one training run, shared by
 * the loop (train.c), the checkpoint (train_checkpoint.c) and the MLflow
 * glue (train_mlflow.c). */
#ifndef KILN_TRAIN_TRAIN_INTERNAL_H
#define KILN_TRAIN_TRAIN_INTERNAL_H

#include "data/dataset.h"
#include "data/loader.h"
#include "nn/efficientnet.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "train/train.h"

#define TRAIN_PATH_MAX 4096

typedef struct train_ctx {
    const kiln_train_opts *o;
    kiln_manifest man;
    int have_man;
    kiln_nn_backend *be;
    kiln_effnet *model;
    kiln_optim *optim;
    kiln_loader *train, *val;
    kiln_lr_schedule sched;
    float *x_dev, *probs_dev, *dlogits_dev;
    uint8_t *x_u8_dev;         /* the batch as the loader's bytes; normalised into x_dev */
    float *lut_dev;            /* kiln_loader_lut, on the backend */
    int32_t *y_dev;
    float *probs_host;
    kiln_nn_graph *graph;      /* the train step's graph (opts.cuda_graphs), or NULL */
    uint64_t graph_plan;       /* the model's plan generation it was recorded over */
    int64_t eager_steps;       /* steps run outside a graph in this process */
    long long graph_steps, graph_recordings;
    int size, classes, batch, epochs;
    uint32_t bpe;                 /* train batches per epoch */

    /* Position: what a checkpoint records. */
    int epoch;                    /* 0-based epoch in progress */
    uint32_t batch_pos;           /* its batches done */
    int64_t step;                 /* optimizer steps done */
    double sum_loss;              /* this epoch's train loss sum (per image) */
    uint64_t correct, seen;       /* this epoch's train accuracy counts */
    int best_epoch;               /* 1-based; 0: none yet */
    double best_val_acc;
    int bad_epochs;               /* epochs since the best */
    char best_file[64];           /* in checkpoint/ */
    kiln_train_epoch *history;
    int n_history;

    char out_dir[TRAIN_PATH_MAX];
    char ck_dir[TRAIN_PATH_MAX];
    char dataset_sha[80];
    char run_id[64];
    char *artifact_uri;
    int run_open;                 /* an MLflow run is RUNNING */
} train_ctx;

/* Read checkpoint/state.json into the position fields (ENOTFOUND without
 * one). The weights and optimizer come later with train_checkpoint_restore. */
int train_checkpoint_read_state(train_ctx *c, kiln_err *err);
/* Load the weights and optimizer state the state named. */
int train_checkpoint_restore(train_ctx *c, kiln_err *err);
/* Write weights, optimizer state and state.json (last), then remove the
 * files the previous state named. */
int train_checkpoint_save(train_ctx *c, kiln_err *err);
/* Save the current weights as the best so far (best_epoch set by the caller). */
int train_checkpoint_save_best(train_ctx *c, kiln_err *err);
/* The best weights' path. */
int train_checkpoint_best_path(const train_ctx *c, char *out, size_t size, kiln_err *err);

/* Experiment, run (or the checkpoint's run), params, tags; writes
 * <out_dir>/mlflow-run-id. No-op without a client. */
int train_mlflow_start(train_ctx *c, kiln_err *err);
int train_mlflow_dataset_tag(train_ctx *c, kiln_err *err);
int train_mlflow_device_tag(train_ctx *c, kiln_err *err);
int train_mlflow_epoch(train_ctx *c, const kiln_train_epoch *e, kiln_err *err);
#define TRAIN_CURVES_FILE "training_curves.png"

/* The package files under "model/", history.json, and the curves under
 * "plots/". */
int train_mlflow_artifacts(train_ctx *c, kiln_err *err);
/* End the run with `status` (errors only logged: this runs on error paths). */
void train_mlflow_end(train_ctx *c, kiln_mlflow_run_status status);

/* The history as JSON text (malloc'ed), for the artifact and the checkpoint. */
char *train_history_json(const train_ctx *c);

#endif
