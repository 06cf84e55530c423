/* lib/serve/serve.h — serving a model package: preprocessing, a loaded
 * model that many threads predict with, request parsing, and the
 * kiln-serve daemon (HTTP API, reload from the MLflow registry, metrics).
 *
 * Preprocessing (kiln_serve_preprocess) is the one implementation of what
 * kiln-model.json's `preprocessing` says, shared by kiln-serve and `kiln
 * predict`: decode JPEG/PNG with lib/data (JPEG DCT-scaled to a shorter
 * side >= resize_size and EXIF-rotated, exactly as `kiln prepare` decodes
 * the training images), resize the shorter side to resize_size
 * (antialiased bilinear, PIL/torchvision's), centre-crop input_size, scale
 * to [0, 1] and normalise with mean/std, into CHW floats.
 *
 * A kiln_serve_model is a loaded package with its own CPU backend. It is
 * reference-counted: kiln_serve_model_load returns it with one reference;
 * every user takes one (kiln_serve_model_ref) and drops it
 * (kiln_serve_model_unref); the last drop frees it. Predicting is
 * thread-safe: forwards on one model run one at a time (the backend's
 * threads work inside each), while decoding runs on the callers' threads;
 * with dynamic batching (kiln_serve_batching) concurrent callers share
 * forwards.
 *
 * The daemon (kiln_serve_daemon_*) owns an HTTP server (lib/http), the
 * current model, a reload lock and an optional registry poller; the
 * endpoints and their answers are described in serving/README.md.
 *
 * Errors: KILN_EINVAL for bad arguments or a request the caller got wrong,
 * KILN_EFORMAT for a corrupt image or package, KILN_EUNSUPPORTED for bytes
 * that are not an image kiln decodes, KILN_ELIMIT for inputs over a limit,
 * KILN_ENOTFOUND for a model or version that does not exist, KILN_EIO for
 * the registry or the disk, KILN_EDEVICE for a device that is not there.
 */
#ifndef KILN_SERVE_SERVE_H
#define KILN_SERVE_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/err.h"
#include "common/log.h"
#include "http/http.h"
#include "mlflow/mlflow.h"
#include "model/model.h"

/* ---- preprocessing ---------------------------------------------------- */

/* Encoded image bytes -> `out`, 3 * input_size * input_size floats (CHW),
 * as described above. `max_pixels` (0: lib/data's default) bounds the
 * declared size before anything is decoded (ELIMIT). EUNSUPPORTED for
 * bytes that are neither JPEG nor PNG, EFORMAT for a truncated or corrupt
 * one. */
int kiln_serve_preprocess(const kiln_model_info *info, const uint8_t *data, size_t len,
                          uint64_t max_pixels, float *out, kiln_err *err);

/* ---- a loaded model ---------------------------------------------------- */

typedef struct kiln_serve_model kiln_serve_model;

/* Where a model came from (all strings copied; NULL = unknown). */
typedef struct kiln_serve_model_origin {
    const char *name;         /* registered model name */
    const char *version;      /* registry version, "3" */
    const char *stage;        /* the stage it was fetched at, or NULL */
    const char *alias;        /* the alias it was fetched by, or NULL */
    const char *source;       /* the version's source URI */
    const char *run_id;       /* the MLflow run */
    const cJSON *run_metrics; /* the run's latest metrics {"val_accuracy": 0.9, ...}; copied */
} kiln_serve_model_origin;

/* Load the package at `dir` on a new backend — `device` "cpu" (or NULL)
 * with `threads` threads, or "cuda" (EDEVICE saying why when no GPU is
 * usable) — and plan an inference-only batch-1 forward (no batching).
 * `origin` may be NULL. */
kiln_serve_model *kiln_serve_model_load(const char *dir, const char *device, int threads,
                                        const kiln_serve_model_origin *origin, kiln_err *err);

/* Dynamic batching. max_batch 1: every input runs its own batch-1 forward,
 * in arrival order. max_batch N > 1: the model is planned for batch N; the
 * first input that finds no batch forming leads one: it waits until N
 * inputs joined or max_wait_ms passed since it arrived (and, past that,
 * while the previous forward still runs), then runs one padded batch-N
 * forward (unused slots zero) for all of them and wakes the others. No
 * thread of its own: a model being swapped out finishes what joined it. */
#define KILN_SERVE_MAX_BATCH 256
#define KILN_SERVE_MAX_WAIT_MS 1000
typedef struct kiln_serve_batching {
    int max_batch;   /* 1..KILN_SERVE_MAX_BATCH */
    int max_wait_ms; /* 0..KILN_SERVE_MAX_WAIT_MS */
    /* Called after every forward with the number of real inputs in it
     * (may be NULL); `ctx` must outlive the model. */
    void (*on_forward)(void *ctx, int inputs);
    void *ctx;
    /* 1: every forward after the first runs as one step graph (upload,
     * forward, download in one launch) where the backend has them (CUDA). */
    int cuda_graphs;
} kiln_serve_batching;

/* kiln_serve_model_load with batching (NULL: max_batch 1). */
kiln_serve_model *kiln_serve_model_load_batched(const char *dir, const char *device, int threads,
                                                const kiln_serve_batching *batching,
                                                const kiln_serve_model_origin *origin,
                                                kiln_err *err);
void kiln_serve_model_ref(kiln_serve_model *m);
/* Forwards that ran as step graphs (batching.cuda_graphs). */
uint64_t kiln_serve_model_graph_forwards(const kiln_serve_model *m);
/* Drop a reference; the last one frees the model. NULL is fine. */
void kiln_serve_model_unref(kiln_serve_model *m);

const kiln_model_info *kiln_serve_model_info(const kiln_serve_model *m);
/* Origin strings ("" when unknown) and load facts. */
const char *kiln_serve_model_name(const kiln_serve_model *m);
const char *kiln_serve_model_version(const kiln_serve_model *m);
/* The model's details as /model/info answers them (caller frees). */
cJSON *kiln_serve_model_describe(const kiln_serve_model *m);

/* Class probabilities (softmax of the logits) of `n` preprocessed inputs
 * (n * 3 * input_size^2 floats) into `probs` (n * num_classes).
 * Thread-safe. */
int kiln_serve_model_predict(kiln_serve_model *m, const float *inputs, int n, float *probs,
                             kiln_err *err);

/* Preprocess + predict one encoded image: probabilities into `probs`
 * (num_classes floats), the best class into *label. */
int kiln_serve_model_predict_image(kiln_serve_model *m, const uint8_t *data, size_t len,
                                   uint64_t max_pixels, float *probs, int *label, kiln_err *err);

/* ---- requests ----------------------------------------------------------- */

/* The images of a POST /predict body. */
typedef struct kiln_serve_images {
    size_t n;
    uint8_t **data;      /* n encoded images, owned */
    size_t *len;
    int batch;           /* 1: the request asked for a list ({"images": [...]}, several files) */
} kiln_serve_images;
void kiln_serve_images_clear(kiln_serve_images *im);

/* The images of a request, by its Content-Type:
 *   multipart/form-data        field "file" (repeated, or "files": a list)
 *   image/jpeg, image/png,
 *   application/octet-stream   the body itself
 *   application/json           {"image": "<base64>"} or {"images": ["<base64>", ...]};
 *                              data: URLs ("data:image/png;base64,...") are accepted
 * At most `max_images`. On failure *status is the HTTP status to answer
 * (400 malformed, 413 too many images, 415 another content type) and
 * `err` says what is wrong. */
int kiln_serve_request_images(kiln_http_request *req, size_t max_images, kiln_serve_images *out,
                              int *status, kiln_err *err);

/* ---- the daemon ---------------------------------------------------------- */

/* Strings are borrowed: they must outlive the daemon. */
typedef struct kiln_serve_config {
    const char *model_name;   /* registered model (required unless model_dir) */
    const char *stage;        /* default "Production" (when neither alias nor model_dir) */
    const char *alias;        /* instead of the stage */
    const char *model_dir;    /* a local package instead of the registry */
    const char *cache_dir;    /* downloads; default $TMPDIR/kiln-serve-cache */
    const char *host;         /* default 127.0.0.1 */
    int port;                 /* default 5001 (seed 004's); 0 = a free port */
    const char *device;       /* "auto" (default) = "cpu"; "cuda": the CUDA backend, checked
                                 at start (EDEVICE saying why when no GPU is usable) */
    int threads;              /* inference threads; default: online CPUs */
    int http_threads;         /* HTTP workers; default 8 */
    size_t max_body_bytes;    /* default 20 MiB */
    uint64_t max_pixels;      /* per image, default 40 megapixels */
    int max_images;           /* per request, default 32 */
    int max_batch;            /* inputs per forward, default 1 (see kiln_serve_batching) */
    int cuda_graphs;          /* --cuda-graphs (see kiln_serve_batching) */
    int max_wait_ms;          /* how long a forming batch waits, default 2 */
    double poll_interval_s;   /* 0: no polling */
    double shutdown_delay_s;  /* draining: keep serving this long before stopping */
    int access_log_json;      /* one JSON line per request on `access_out` */
    void *access_out;         /* FILE *, default stdout */
    const char *image_version;/* what GET / reports; default $KILN_SERVING_IMAGE_VERSION */
    kiln_mlflow_config mlflow;/* from the environment by the caller */
} kiln_serve_config;

/* Defaults as above; mlflow defaulted (not read from the environment). */
void kiln_serve_config_default(kiln_serve_config *cfg);

typedef struct kiln_serve_daemon kiln_serve_daemon;

/* Check the config, load the model (model_dir: failure is an error; the
 * registry: failure is logged and the daemon starts unready, answering 503
 * until a reload succeeds), start the HTTP server and the poller. */
kiln_serve_daemon *kiln_serve_daemon_start(const kiln_serve_config *cfg, const kiln_logger *log,
                                           kiln_err *err);
int kiln_serve_daemon_port(const kiln_serve_daemon *d);
/* Reload from the registry now, as POST /model/reload does (serialised
 * with it); 0 or the failure, the old model kept. */
int kiln_serve_daemon_reload(kiln_serve_daemon *d, kiln_err *err);
/* SIGTERM's work: readiness false, keep serving shutdown_delay_s, then
 * stop accepting, let requests in flight finish and close connections.
 * Safe to call twice. */
void kiln_serve_daemon_shutdown(kiln_serve_daemon *d);
/* Shutdown (if not done) and free. NULL is fine. */
void kiln_serve_daemon_free(kiln_serve_daemon *d);

#endif
