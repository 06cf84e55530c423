/* lib/mlflow/mlflow.h — a client for MLflow's REST API 2.0 (tracking, model
 * registry, artifacts), over libcurl + cJSON. It talks to MLflow's own
 * server and to kiln-tracking alike.
 *
 * Configuration: kiln_mlflow_config_default, then kiln_mlflow_config_from_env
 * (the variables MLflow's Python client reads):
 *   MLFLOW_TRACKING_URI                 http(s)://host[:port][/prefix] (required)
 *   MLFLOW_TRACKING_USERNAME / _PASSWORD  HTTP Basic auth (wins over the token,
 *                                       as in MLflow)
 *   MLFLOW_TRACKING_TOKEN               "Authorization: Bearer <token>"
 *   MLFLOW_TRACKING_INSECURE_TLS        "true"/"1": no certificate checks
 *   MLFLOW_TRACKING_SERVER_CERT_PATH    CA bundle (PEM) to check the server with
 *   MLFLOW_HTTP_REQUEST_TIMEOUT         seconds, default 120: connecting, and
 *                                       the longest silence within an answer
 *   MLFLOW_HTTP_REQUEST_MAX_RETRIES     default 7 (MLflow 2.x/3.x)
 *   MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR  seconds, default 2
 *   MLFLOW_HTTP_REQUEST_BACKOFF_JITTER  seconds, default 1.0
 * and for artifacts on S3 the variables lib/s3 reads (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_REGION, MLFLOW_S3_ENDPOINT_URL / AWS_ENDPOINT_URL
 * ..., see lib/s3/s3.h). Flags and tests then override fields directly or
 * through kiln_mlflow_config_set.
 *
 * Retries, as urllib3 does them for MLflow: HTTP 408, 429, 500, 502, 503,
 * 504 and connection failures / timeouts are retried up to max_retries
 * times; the k-th retry waits 0 s for k = 1, then backoff_factor * 2^(k-1)
 * capped at 120 s, plus a uniform jitter in [0, backoff_jitter), or the
 * server's Retry-After when that is longer (capped the same). Other 4xx
 * answers are never retried. POSTs are retried too (MLflow's calls are
 * safe to repeat: a repeated log-batch logs the same values).
 *
 * Errors. Messages name the call and, for an answer, MLflow's error code,
 * the HTTP status and the server's message:
 *   "MLflow POST /api/2.0/mlflow/runs/create: RESOURCE_DOES_NOT_EXIST (404): ..."
 *   "MLflow GET /api/2.0/mlflow/runs/get: cannot reach http://h:5000 after
 *    8 attempts: Couldn't connect to server"
 * Codes: KILN_ENOTFOUND for RESOURCE_DOES_NOT_EXIST / 404; KILN_EINVAL for
 * other 4xx answers (bad values, refused credentials) and bad arguments;
 * KILN_EIO for connection failures and 5xx after the retries, and local
 * file errors; KILN_EFORMAT for an answer that is not the JSON expected;
 * KILN_EUNSUPPORTED for an artifact URI scheme kiln does not handle.
 *
 * Threads: a client holds one curl handle and is not thread-safe; use one
 * per thread. It initialises libcurl itself (reference-counted).
 *
 * Ownership: every struct returned through a pointer-to-pointer is
 * malloc'ed with owned strings and freed by its *_free function (NULL is
 * fine); its strings are never NULL ("" for a field the server left out).
 * Input structs (kiln_mlflow_kv, kiln_mlflow_metric) are borrowed. On
 * failure the out-pointer is NULL (lists: NULL and 0).
 */
#ifndef KILN_MLFLOW_MLFLOW_H
#define KILN_MLFLOW_MLFLOW_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/err.h"
#include "common/log.h"
#include "s3/s3.h"

/* MLflow's per-call limits for log-batch (mlflow/utils/validation.py). */
#define KILN_MLFLOW_BATCH_MAX_METRICS 1000
#define KILN_MLFLOW_BATCH_MAX_PARAMS 100
#define KILN_MLFLOW_BATCH_MAX_TAGS 100
#define KILN_MLFLOW_BATCH_MAX_ENTITIES 1000
/* Request bodies are kept under MLflow's 1 MB with this margin. */
#define KILN_MLFLOW_BATCH_MAX_BYTES (900 * 1000)

typedef struct kiln_mlflow_config {
    char tracking_uri[1024];       /* no trailing '/' */
    char username[256];
    char password[256];
    char token[4096];
    int insecure_tls;              /* 1: no certificate checks */
    char server_cert_path[1024];   /* "" = the system's CAs */
    int timeout_s;                 /* default 120 */
    int max_retries;               /* default 7 */
    double backoff_factor_s;       /* default 2 */
    double backoff_jitter_s;       /* default 1.0 */
    double backoff_max_s;          /* default 120 (urllib3's cap) */
    kiln_s3_config s3;             /* for s3:// artifact URIs */
} kiln_mlflow_config;

void kiln_mlflow_config_default(kiln_mlflow_config *cfg);
/* Read the variables above (and lib/s3's into cfg->s3); unset or empty ones
 * leave their field alone. EINVAL naming the variable for a bad value,
 * ELIMIT for one longer than its field. */
int kiln_mlflow_config_from_env(kiln_mlflow_config *cfg, kiln_err *err);
/* Set one field from text: "tracking-uri", "username", "password", "token",
 * "insecure-tls" (true/false/1/0), "server-cert-path", "timeout",
 * "max-retries", "backoff-factor", "backoff-jitter". EINVAL naming it for
 * a bad name or value. */
int kiln_mlflow_config_set(kiln_mlflow_config *cfg, const char *name, const char *value,
                           kiln_err *err);

typedef struct kiln_mlflow_client kiln_mlflow_client;

/* NULL + EINVAL when tracking_uri is unset or not http(s)://. The config
 * is copied; `log` (may be NULL) receives retry warnings and must outlive
 * the client. */
kiln_mlflow_client *kiln_mlflow_client_new(const kiln_mlflow_config *cfg,
                                           const kiln_logger *log, kiln_err *err);
void kiln_mlflow_client_free(kiln_mlflow_client *c);

typedef struct kiln_mlflow_stats {
    uint64_t requests;   /* HTTP attempts to the tracking server, retries included */
    uint64_t retries;
} kiln_mlflow_stats;
void kiln_mlflow_client_stats(const kiln_mlflow_client *c, kiln_mlflow_stats *out);

/* One REST call: `path` from "/api/2.0/..."; `request` (may be NULL) goes
 * as a JSON body, or as query parameters for GET (arrays become repeated
 * keys). *response (caller frees) is the answer's JSON object ({} for an
 * empty answer). */
int kiln_mlflow_call(kiln_mlflow_client *c, const char *method, const char *path,
                     const cJSON *request, cJSON **response, kiln_err *err);

/* ---- values ---- */

typedef struct kiln_mlflow_kv {            /* input: borrowed */
    const char *key;
    const char *value;
} kiln_mlflow_kv;

typedef struct kiln_mlflow_metric {        /* input: borrowed */
    const char *key;
    double value;                          /* NaN and ±Inf are sent as MLflow spells them */
    int64_t timestamp_ms;                  /* 0 = now */
    int64_t step;
} kiln_mlflow_metric;

typedef struct kiln_mlflow_pair {          /* output: owned */
    char *key;
    char *value;
} kiln_mlflow_pair;

typedef struct kiln_mlflow_metric_value {  /* output: owned */
    char *key;
    double value;
    int64_t timestamp_ms;
    int64_t step;
} kiln_mlflow_metric_value;

typedef enum kiln_mlflow_run_status {
    KILN_MLFLOW_RUNNING = 0,
    KILN_MLFLOW_SCHEDULED,
    KILN_MLFLOW_FINISHED,
    KILN_MLFLOW_FAILED,
    KILN_MLFLOW_KILLED,
} kiln_mlflow_run_status;

/* "RUNNING", "FINISHED" ... */
const char *kiln_mlflow_run_status_name(kiln_mlflow_run_status s);

typedef struct kiln_mlflow_experiment {
    char *experiment_id;
    char *name;
    char *artifact_location;
    char *lifecycle_stage;                 /* "active" / "deleted" */
    int64_t creation_time_ms, last_update_time_ms;
    kiln_mlflow_pair *tags;
    size_t n_tags;
} kiln_mlflow_experiment;
void kiln_mlflow_experiment_free(kiln_mlflow_experiment *e);

typedef struct kiln_mlflow_run_info {
    char *run_id;
    char *run_name;
    char *experiment_id;
    char *user_id;
    char *status;                          /* "RUNNING", "FINISHED" ... */
    char *artifact_uri;                    /* "mlflow-artifacts:/1/<id>/artifacts", "s3://..." */
    char *lifecycle_stage;
    int64_t start_time_ms, end_time_ms;    /* end 0 while running */
} kiln_mlflow_run_info;

typedef struct kiln_mlflow_run {
    kiln_mlflow_run_info info;
    kiln_mlflow_metric_value *metrics;     /* latest value of each metric */
    size_t n_metrics;
    kiln_mlflow_pair *params;
    size_t n_params;
    kiln_mlflow_pair *tags;
    size_t n_tags;
} kiln_mlflow_run;
void kiln_mlflow_run_free(kiln_mlflow_run *run);
/* A tag's / param's value in the run, or NULL. */
const char *kiln_mlflow_run_tag(const kiln_mlflow_run *run, const char *key);
const char *kiln_mlflow_run_param(const kiln_mlflow_run *run, const char *key);

typedef struct kiln_mlflow_model_version {
    char *name;
    char *version;                         /* "1", "2" ... */
    char *source;
    char *run_id;
    char *current_stage;                   /* "None", "Staging", "Production", "Archived" */
    char *status;                          /* PENDING_REGISTRATION, FAILED_REGISTRATION, READY */
    char *status_message;
    char *description;
    char *user_id;
    int64_t creation_timestamp_ms, last_updated_timestamp_ms;
    char **aliases;
    size_t n_aliases;
    kiln_mlflow_pair *tags;
    size_t n_tags;
} kiln_mlflow_model_version;
void kiln_mlflow_model_version_free(kiln_mlflow_model_version *mv);
/* Frees each version and the array. */
void kiln_mlflow_model_versions_free(kiln_mlflow_model_version **v, size_t n);

/* ---- experiments ---- */

/* ENOTFOUND (with the name in the message) when there is none. */
int kiln_mlflow_experiment_get_by_name(kiln_mlflow_client *c, const char *name,
                                       kiln_mlflow_experiment **out, kiln_err *err);
/* Create; `artifact_location` NULL = the server's default. Idempotent: if
 * the name exists (RESOURCE_ALREADY_EXISTS) its id is returned, unless that
 * experiment is deleted (EINVAL: restore it or pick another name).
 * *experiment_id is malloc'ed. */
int kiln_mlflow_experiment_create(kiln_mlflow_client *c, const char *name,
                                  const char *artifact_location, char **experiment_id,
                                  kiln_err *err);
/* Get by name, else create: what `kiln train --experiment NAME` does. */
int kiln_mlflow_experiment_get_or_create(kiln_mlflow_client *c, const char *name,
                                         char **experiment_id, kiln_err *err);
int kiln_mlflow_experiment_set_tag(kiln_mlflow_client *c, const char *experiment_id,
                                   const char *key, const char *value, kiln_err *err);

/* ---- runs ---- */

typedef struct kiln_mlflow_run_options {
    const char *experiment_id;             /* required */
    const char *run_name;                  /* NULL: the server picks one */
    const char *user;                      /* NULL: $USER, else the login name, else "unknown" */
    const char *source_name;               /* mlflow.source.name; NULL: "kiln" */
    const char *source_type;               /* mlflow.source.type; NULL: "LOCAL" */
    int64_t start_time_ms;                 /* 0: now */
    const kiln_mlflow_kv *tags;            /* more tags; these win over the system ones */
    size_t n_tags;
} kiln_mlflow_run_options;

/* Creates a RUNNING run with the system tags mlflow.runName (when named),
 * mlflow.user, mlflow.source.name and mlflow.source.type. */
int kiln_mlflow_run_create(kiln_mlflow_client *c, const kiln_mlflow_run_options *opts,
                           kiln_mlflow_run **out, kiln_err *err);
int kiln_mlflow_run_get(kiln_mlflow_client *c, const char *run_id, kiln_mlflow_run **out,
                        kiln_err *err);
/* Set status and end time (`end_time_ms` 0 = now; ignored for RUNNING). */
int kiln_mlflow_run_update(kiln_mlflow_client *c, const char *run_id,
                           kiln_mlflow_run_status status, int64_t end_time_ms, kiln_err *err);

/* End a run now with FINISHED, FAILED or KILLED.
 *
 * Marking a crashed step FAILED is the caller's job, and must not happen in
 * a signal handler (libcurl is not async-signal-safe). What `kiln train`
 * does: every error path calls this with FAILED before returning; SIGINT /
 * SIGTERM only set a flag that the training loop checks, which then ends
 * the run KILLED; for crashes the work runs in a child process and the
 * parent, seeing it die by a signal or a non-zero status, calls this with
 * FAILED. An atexit() handler may call it too (it is an ordinary call with
 * the client's retries), when the client still exists. */
int kiln_mlflow_run_finish(kiln_mlflow_client *c, const char *run_id,
                           kiln_mlflow_run_status status, kiln_err *err);

int kiln_mlflow_run_set_tag(kiln_mlflow_client *c, const char *run_id, const char *key,
                            const char *value, kiln_err *err);
int kiln_mlflow_log_param(kiln_mlflow_client *c, const char *run_id, const char *key,
                          const char *value, kiln_err *err);
/* One metric point; timestamp_ms 0 = now. */
int kiln_mlflow_log_metric(kiln_mlflow_client *c, const char *run_id, const char *key,
                           double value, int64_t timestamp_ms, int64_t step, kiln_err *err);
/* Any number of metrics, params and tags, sent in as many log-batch calls
 * as MLflow's limits need (1000 metrics, 100 params, 100 tags, 1000
 * entities and under 1 MB per call). Params go first, then tags, then
 * metrics in order. A failed call stops there: what was sent stays logged.
 * *calls (may be NULL) receives the number of calls made. */
int kiln_mlflow_log_batch(kiln_mlflow_client *c, const char *run_id,
                          const kiln_mlflow_metric *metrics, size_t n_metrics,
                          const kiln_mlflow_kv *params, size_t n_params,
                          const kiln_mlflow_kv *tags, size_t n_tags, size_t *calls,
                          kiln_err *err);
/* Every point of one metric (following next_page_token), in the server's
 * order (by step, then timestamp). Free with kiln_mlflow_metric_values_free. */
int kiln_mlflow_metric_history(kiln_mlflow_client *c, const char *run_id, const char *key,
                               kiln_mlflow_metric_value **out, size_t *n, kiln_err *err);
void kiln_mlflow_metric_values_free(kiln_mlflow_metric_value *v, size_t n);

/* ---- artifacts ----
 * `artifact_uri` is a run's info.artifact_uri. "mlflow-artifacts:/..." (also
 * with a host, "mlflow-artifacts://host/...") goes through the tracking
 * server's artifact proxy (/api/2.0/mlflow-artifacts/artifacts/...);
 * "s3://bucket/prefix" straight to S3 with cfg.s3. Other schemes:
 * EUNSUPPORTED. `path`s inside the run are relative, '/'-separated, with no
 * "." / ".." / empty segments (EUNSAFE otherwise). */

typedef struct kiln_mlflow_file_info {
    char *path;                            /* relative to the artifact root */
    int is_dir;
    int64_t file_size;                     /* -1 for directories */
} kiln_mlflow_file_info;
void kiln_mlflow_file_infos_free(kiln_mlflow_file_info *v, size_t n);

/* Upload one local file to `artifact_path` (the file's full path in the run). */
int kiln_mlflow_artifact_upload_file(kiln_mlflow_client *c, const char *artifact_uri,
                                     const char *local_file, const char *artifact_path,
                                     kiln_err *err);
/* Upload every regular file under `local_dir` (recursively; symlinks and
 * other special files are skipped) under `artifact_dir` ("" = the root).
 * *files (may be NULL) receives how many were uploaded. */
int kiln_mlflow_artifact_upload_dir(kiln_mlflow_client *c, const char *artifact_uri,
                                    const char *local_dir, const char *artifact_dir,
                                    size_t *files, kiln_err *err);
/* Download one artifact to `local_file` (written atomically). */
int kiln_mlflow_artifact_download_file(kiln_mlflow_client *c, const char *artifact_uri,
                                       const char *artifact_path, const char *local_file,
                                       kiln_err *err);
/* Download the tree under `artifact_dir` ("" = everything) into `local_dir`
 * (created), each file atomically. Names from the server that would leave
 * `local_dir` are refused (EUNSAFE). ENOTFOUND when the tree is empty. */
int kiln_mlflow_artifact_download_dir(kiln_mlflow_client *c, const char *artifact_uri,
                                      const char *artifact_dir, const char *local_dir,
                                      size_t *files, kiln_err *err);
/* The entries directly under `artifact_dir` ("" = the root), paths relative
 * to the artifact root, like MLflow's list_artifacts. An empty or missing
 * directory lists nothing. */
int kiln_mlflow_artifact_list(kiln_mlflow_client *c, const char *artifact_uri,
                              const char *artifact_dir, kiln_mlflow_file_info **out, size_t *n,
                              kiln_err *err);

/* ---- model registry ---- */

/* Create unless it exists (RESOURCE_ALREADY_EXISTS is success). */
int kiln_mlflow_registered_model_create(kiln_mlflow_client *c, const char *name,
                                        const char *description, kiln_err *err);
/* A new version of `name` from `source` (e.g. "runs:/<run_id>/model" or the
 * artifact URI); `run_id` may be NULL. */
int kiln_mlflow_model_version_create(kiln_mlflow_client *c, const char *name,
                                     const char *source, const char *run_id,
                                     kiln_mlflow_model_version **out, kiln_err *err);
int kiln_mlflow_model_version_get(kiln_mlflow_client *c, const char *name, const char *version,
                                  kiln_mlflow_model_version **out, kiln_err *err);
/* Poll every poll_ms until the version is READY (then *out, may be NULL).
 * FAILED_REGISTRATION: EIO with the server's status_message; still
 * pending after timeout_ms: ECANCELED. */
int kiln_mlflow_model_version_wait_ready(kiln_mlflow_client *c, const char *name,
                                         const char *version, int timeout_ms, int poll_ms,
                                         kiln_mlflow_model_version **out, kiln_err *err);
/* Stage: "None", "Staging", "Production" or "Archived". With
 * archive_existing_versions, other versions in that stage move to Archived.
 * `out` may be NULL (the moved version is then not returned). */
int kiln_mlflow_model_version_transition(kiln_mlflow_client *c, const char *name,
                                         const char *version, const char *stage,
                                         int archive_existing_versions,
                                         kiln_mlflow_model_version **out, kiln_err *err);
/* Point `alias` at `version` (moving it from another version). */
int kiln_mlflow_alias_set(kiln_mlflow_client *c, const char *name, const char *alias,
                          const char *version, kiln_err *err);
int kiln_mlflow_alias_delete(kiln_mlflow_client *c, const char *name, const char *alias,
                             kiln_err *err);
/* The version `alias` points at; ENOTFOUND if none (MLflow answers that
 * with INVALID_PARAMETER_VALUE "... not found", which is mapped). */
int kiln_mlflow_alias_get(kiln_mlflow_client *c, const char *name, const char *alias,
                          kiln_mlflow_model_version **out, kiln_err *err);
/* The latest version in each of `stages` (NULL/0 = every stage). */
int kiln_mlflow_latest_versions(kiln_mlflow_client *c, const char *name,
                                const char *const *stages, size_t n_stages,
                                kiln_mlflow_model_version ***out, size_t *n, kiln_err *err);
/* Every version matching `filter` (e.g. "name='m'"; NULL = all), following
 * page tokens. */
int kiln_mlflow_model_versions_search(kiln_mlflow_client *c, const char *filter,
                                      kiln_mlflow_model_version ***out, size_t *n,
                                      kiln_err *err);

#endif
