/* lib/train/train.h — training an EfficientNet on a prepared dataset, from
 * data to a model package, with checkpoints and MLflow tracking.
 *
 * kiln_train runs `epochs` passes over the train split (augmented, as the
 * loader does it), each followed by an evaluation of the val split (eval
 * mode, no augmentation). The learning rate follows warmup + cosine
 * (nn/schedule.h), stepped per batch. After every epoch — and when `stop`
 * is raised — a checkpoint is written in <out_dir>/checkpoint/: weights
 * with running statistics, the optimizer state, the step, the position in
 * the epoch, the best epoch so far and the history; state.json is renamed
 * into place last, so it always names a complete set of files. A resumed
 * run (resume = 1) continues from it bit for bit on the CPU backend: every
 * random draw depends only on (seed, epoch, position) or (seed, step).
 *
 * The best epoch by val accuracy is kept; at the end its weights become the
 * model package at `out_dir` (lib/model), next to checkpoint/ and
 * mlflow-run-id. With `patience` > 0 training stops early after that many
 * epochs without a better val accuracy.
 *
 * MLflow (mlflow non-NULL): the experiment (default "kiln") is created if
 * needed; a run with every hyperparameter as a param, tags kiln.model,
 * kiln.device, kiln.version, kiln.dataset_sha256; metrics train_loss,
 * train_accuracy, val_loss, val_accuracy, learning_rate, epoch_seconds per
 * epoch (step = epoch, from 1); the package under artifact path "model" and
 * history.json at the root; status FINISHED. Every error after the run was
 * created ends it FAILED; a stop ends it KILLED. The run id is written to
 * <out_dir>/mlflow-run-id and returned in the result. A resumed run keeps
 * logging into the run named in the checkpoint.
 *
 * Returns KILN_OK, KILN_ECANCELED when `stop` was raised (the checkpoint is
 * written), or another code with `err` set. Library rules: no printing;
 * epoch lines go to `log`, progress to `on_progress`.
 */
#ifndef KILN_TRAIN_TRAIN_H
#define KILN_TRAIN_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "common/err.h"
#include "common/log.h"
#include "config/config.h"
#include "mlflow/mlflow.h"

typedef struct kiln_train_progress {
    int epoch, epochs;          /* epoch 1-based */
    uint32_t batch, batches;    /* batches done in this epoch, of */
    double images_per_s;
    double eta_s;               /* whole run */
    double loss;                /* running mean train loss of the epoch */
} kiln_train_progress;

typedef struct kiln_train_epoch {
    int epoch;                  /* 1-based */
    double train_loss, train_accuracy;
    double val_loss, val_accuracy;
    double learning_rate;       /* at the epoch's last step */
    double seconds;
} kiln_train_epoch;

typedef struct kiln_train_opts {
    const char *data_dir;       /* a prepared dataset (kiln prepare) */
    const char *out_dir;        /* the model package and checkpoint/ */
    kiln_config cfg;            /* train.*, augment.*; data.workers = loader threads */
    const char *init_weights;   /* pretrained safetensors (new head), or NULL */
    int resume;                 /* continue from out_dir/checkpoint */
    int threads;                /* CPU backend threads, >= 1 */
    uint64_t seed;              /* init, order, augmentation, dropout */
    int warmup_epochs;          /* linear warmup length, capped to half the run */
    double warmup_start_factor; /* in (0, 1] */
    int patience;               /* early stopping; 0 = off */
    const char *device;         /* "cpu", "cuda" or "auto" (kiln_nn_backend_open) */
    int cuda_graphs;            /* 1: train steps as step graphs where the backend has them
                                 * (CUDA), from the second step on */
    kiln_mlflow_client *mlflow; /* NULL: no tracking */
    const char *experiment;     /* NULL: "kiln" */
    const char *run_name;       /* NULL: the server's choice */
    /* Raised by a signal handler; checked between batches. */
    const volatile sig_atomic_t *stop;
    /* Called after every train batch and every finished epoch (may be NULL). */
    void (*on_progress)(void *ctx, const kiln_train_progress *p);
    void (*on_epoch)(void *ctx, const kiln_train_epoch *e);
    void *cb_ctx;
    const kiln_logger *log;     /* NULL: silent */
} kiln_train_opts;

typedef struct kiln_train_result {
    char run_id[64];            /* "" without MLflow */
    int epochs_done;
    int best_epoch;             /* 1-based */
    double best_val_accuracy;
    int early_stopped;
    long long graph_steps;      /* steps run as step graphs (opts.cuda_graphs) */
    long long graph_recordings; /* of which recorded (the rest replayed) */
} kiln_train_result;

/* Defaults: config defaults, 1 thread, seed 42, 1 warmup epoch from factor
 * 0.1, no early stopping, cpu, no MLflow. */
void kiln_train_opts_default(kiln_train_opts *o);

int kiln_train(const kiln_train_opts *o, kiln_train_result *result, kiln_err *err);

/* The training curves as a PNG at `path` (atomically): loss and accuracy per
 * epoch, train and val, for history[0..n-1]; `title` above them (may be
 * NULL). EINVAL for n < 1. kiln_train writes it as training_curves.png in
 * the out dir and logs it to MLflow as plots/training_curves.png. */
int kiln_train_curves_png(const char *path, const kiln_train_epoch *history, int n,
                          const char *title, kiln_err *err);

#endif
