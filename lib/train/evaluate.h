/* lib/train/evaluate.h — how good a model package is on one split of a
 * prepared dataset: `kiln evaluate`.
 *
 * Two layers:
 *  - kiln_eval_metrics, an accumulator that knows nothing about models:
 *    feed it logits and true labels (kiln_eval_metrics_add) and forward
 *    timings, call kiln_eval_metrics_finish, and read accuracy, top-k
 *    accuracy, per-class precision / recall / F1 / support, macro and
 *    support-weighted averages, the confusion matrix (rows: true class,
 *    columns: predicted) and latency. A class that is never predicted
 *    has precision 0 (never NaN); one with no images has recall 0 and
 *    support 0 and counts in the macro average as sklearn does
 *    (zero_division=0).
 *  - kiln_evaluate, the whole step: load the package (lib/model), check
 *    that the dataset's classes equal the package's classes in order, read
 *    the split with the loader (no augmentation; images resized to the
 *    package's input_size; pixels normalised with the package's mean/std),
 *    run eval-mode forwards, and write into the output directory, each file
 *    atomically:
 *      metrics.json           everything above, classes in label order;
 *      confusion_matrix.json  classes, counts and row-normalised values;
 *      confusion_matrix.png   the matrix drawn (kiln_eval_confusion_png).
 *
 * Prediction and ties: the predicted class is the first index of the
 * largest logit; a label is in the top k when fewer than k classes rank
 * above it, a class ranking above another when its logit is larger, or
 * equal with a smaller index (so top-1 is exactly the prediction).
 *
 * Latency is the forward alone: upload of the batch, eval forward, backend
 * sync and download of the logits, on the calling thread; data loading is
 * excluded (it runs ahead on the loader's threads).
 *
 * Ownership: kiln_eval_metrics_* objects are freed with
 * kiln_eval_metrics_free; JSON from the *_json functions belongs to the
 * caller (cJSON_Delete).
 */
#ifndef KILN_TRAIN_EVALUATE_H
#define KILN_TRAIN_EVALUATE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/err.h"
#include "common/log.h"
#include "mlflow/mlflow.h"
#include "nn/backend.h"
#include "nn/efficientnet.h"

#define KILN_EVAL_DEFAULT_TOP_K 5

typedef struct kiln_eval_class {
    double precision, recall, f1;
    uint64_t support;    /* images whose true class is this one */
    uint64_t predicted;  /* images predicted as this one */
    uint64_t correct;    /* true positives */
} kiln_eval_class;

typedef struct kiln_eval_metrics {
    int num_classes;
    char **classes;            /* num_classes names, label order (owned) */
    int top_k;                 /* 1..num_classes */
    uint64_t images;
    uint64_t correct, top_k_correct;
    uint64_t *confusion;       /* [true * num_classes + predicted] */
    /* Filled by kiln_eval_metrics_finish: */
    double accuracy, top_k_accuracy;   /* 0 with no images */
    kiln_eval_class *per_class;        /* num_classes entries */
    double macro_precision, macro_recall, macro_f1;
    double weighted_precision, weighted_recall, weighted_f1;
    /* Forward timing (kiln_eval_metrics_add_time): */
    uint64_t batches;
    double forward_seconds;
    double latency_ms_per_image, latency_ms_per_batch, images_per_second;
} kiln_eval_metrics;

/* A zeroed accumulator for `num_classes` (>= 1) classes named `classes`
 * (copied). `top_k` is capped at num_classes; 0 means
 * KILN_EVAL_DEFAULT_TOP_K (capped). NULL on failure. */
kiln_eval_metrics *kiln_eval_metrics_new(int num_classes, const char *const *classes, int top_k,
                                         kiln_err *err);
void kiln_eval_metrics_free(kiln_eval_metrics *m);

/* Count `n` predictions: logits [n, num_classes] (host memory, row-major)
 * and labels [n]. EINVAL for a label outside [0, num_classes) or a
 * non-finite logit (nothing of the batch is counted then). */
int kiln_eval_metrics_add(kiln_eval_metrics *m, const float *logits, const int32_t *labels,
                          int n, kiln_err *err);
/* One batch's forward time. */
void kiln_eval_metrics_add_time(kiln_eval_metrics *m, double seconds);
/* Derive the rates, per-class values, averages and latency from the
 * counts. May be called again after more adds. */
void kiln_eval_metrics_finish(kiln_eval_metrics *m);

/* Context written next to the numbers. Strings may be NULL. */
typedef struct kiln_eval_context {
    const char *split;         /* "test", "val", "train" */
    const char *model_dir;
    const char *dataset_dir;
    const char *variant;       /* "b0".. */
    int batch_size;
    int input_size;
} kiln_eval_context;

/* metrics.json's object: split, model, dataset, classes, counts,
 * accuracy, top_k / top_k_accuracy, per_class [{class, precision, recall,
 * f1, support, predicted, correct}], macro_avg and weighted_avg {precision,
 * recall, f1}, confusion_matrix (counts, rows true), latency {ms_per_image,
 * ms_per_batch, images_per_second, batches, forward_seconds}. NULL on
 * allocation failure. */
cJSON *kiln_eval_metrics_json(const kiln_eval_metrics *m, const kiln_eval_context *ctx);
/* confusion_matrix.json's object: classes, rows "true", columns
 * "predicted", matrix (counts), normalized (each row divided by its sum;
 * zeros for an empty row). */
cJSON *kiln_eval_confusion_json(const kiln_eval_metrics *m);

/* Draw the confusion matrix as an RGB PNG (libpng), atomically at `path`:
 * a title, a grid of cells shaded by the row-normalised value with the
 * count in each, class names as row and column labels (names longer than
 * 16 characters end in an ellipsis), axis titles "true" and "predicted".
 * Text is kiln's embedded 5x7 bitmap font at 2x. Non-ASCII bytes are
 * drawn as '?'. */
int kiln_eval_confusion_png(const char *path, const kiln_eval_metrics *m, const char *title,
                            kiln_err *err);

/* Write metrics.json, confusion_matrix.json and confusion_matrix.png into
 * `dir` (created). */
int kiln_eval_write(const char *dir, const kiln_eval_metrics *m, const kiln_eval_context *ctx,
                    kiln_err *err);

/* Log to the existing run `run_id`: <split>_accuracy,
 * <split>_top_k_accuracy, <split>_macro_f1, <split>_weighted_f1,
 * <split>_f1_<class> (characters MLflow refuses in a key become '_'),
 * <split>_latency_ms_per_image, <split>_latency_ms_per_batch and
 * <split>_images_per_second, in one log-batch; then upload every file of
 * `eval_dir` (may be NULL: no upload) under "eval-<split>" in the run's
 * artifacts. */
int kiln_eval_log_mlflow(kiln_mlflow_client *c, const char *run_id, const kiln_eval_metrics *m,
                         const char *split, const char *eval_dir, kiln_err *err);

/* ---- the whole step ---- */

typedef struct kiln_eval_opts {
    const char *model_dir;     /* the package (required) */
    const char *dataset_dir;   /* the prepared dataset (required) */
    int split;                 /* KILN_SPLIT_TEST by default */
    int batch_size;            /* default 32 */
    int threads;               /* loader threads and CPU backend threads; default 1 */
    int top_k;                 /* 0: KILN_EVAL_DEFAULT_TOP_K */
    const char *out_dir;       /* NULL: <model_dir>/eval-<split> */
    kiln_nn_backend *backend;  /* borrowed; NULL: a CPU backend of `threads` */
} kiln_eval_opts;

void kiln_eval_opts_default(kiln_eval_opts *o);

/* Evaluate an already loaded model whose classes, input size and mean/std
 * are given (the parts of a package that matter here). Checks the classes
 * and counts the split; writes nothing. *out (caller frees) is finished. */
typedef struct kiln_eval_model {
    kiln_effnet *model;        /* on `backend` */
    kiln_nn_backend *backend;
    int num_classes;
    const char *const *classes;
    int input_size;
    const float *mean, *std;   /* 3 each */
    const char *name;          /* for messages: the package's directory */
} kiln_eval_model;

int kiln_evaluate_model(const kiln_eval_model *em, const kiln_eval_opts *opts,
                        const kiln_logger *log, kiln_eval_metrics **out, kiln_err *err);

/* kiln_model_load + kiln_evaluate_model + kiln_eval_write into the output
 * directory (its path is copied into out_dir, of out_dir_size bytes, when
 * out_dir is not NULL). */
int kiln_evaluate(const kiln_eval_opts *opts, const kiln_logger *log, kiln_eval_metrics **out,
                  char *out_dir, size_t out_dir_size, kiln_err *err);

#endif
