/* lib/kfp/client.h — a client for the Kubeflow Pipelines REST API v2beta1
 * (the KFP API server, e.g. behind Istio at http://<gateway>/pipeline), over
 * libcurl + cJSON: upload a pipeline or a new version of it, find or create
 * an experiment, create a run or a recurring run, follow a run's state.
 *
 * Paths are <host>/apis/v2beta1/...: pipelines/upload and upload_version
 * (multipart field "uploadfile"), pipelines (filter), pipelines/{id}/versions,
 * experiments, runs, runs/{id}, recurringruns. List filters are KFP's JSON
 * filter: {"predicates": [{"operation": "EQUALS", "key": "display_name",
 * "stringValue": NAME}]}. Auth for multi-user Kubeflow behind Istio/Dex:
 * "Authorization: Bearer <token>" and/or a session cookie
 * ("authservice_session=..." or "oauth2_proxy_kubeflow=..."); standalone KFP
 * needs neither.
 *
 * Errors name the call and, for an answer, the HTTP status and KFP's
 * message: "KFP POST /apis/v2beta1/runs: HTTP 400: invalid pipeline spec".
 * ENOTFOUND for 404, EINVAL for other 4xx (401/403 say to check the token
 * or cookie), EIO for 5xx and connection failures (retried twice for
 * connection failures, 502, 503 and 504), EFORMAT for an answer that is not
 * the JSON expected.
 *
 * A client holds one curl handle: not thread-safe. Ids are returned in
 * caller buffers of KILN_KFP_ID_MAX bytes.
 */
#ifndef KILN_KFP_CLIENT_H
#define KILN_KFP_CLIENT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/err.h"
#include "common/log.h"

#define KILN_KFP_ID_MAX 128

typedef struct kiln_kfp_client_config {
    char host[1024];        /* "http://10.0.0.5/pipeline" (no trailing '/') */
    char token[4096];       /* bearer token, "" = none */
    char cookie[4096];      /* "name=value", "" = none */
    char namespace_[256];   /* Kubeflow profile namespace, "" = none (single-user) */
    int timeout_s;          /* per request, default 60 */
    int insecure_tls;       /* 1: no certificate checks */
} kiln_kfp_client_config;

void kiln_kfp_client_config_default(kiln_kfp_client_config *cfg);

typedef struct kiln_kfp_client kiln_kfp_client;

/* NULL + EINVAL when host is not http(s)://. `log` may be NULL. */
kiln_kfp_client *kiln_kfp_client_new(const kiln_kfp_client_config *cfg, const kiln_logger *log,
                                     kiln_err *err);
void kiln_kfp_client_free(kiln_kfp_client *c);

/* One call: `path` from "/apis/v2beta1/..." (may carry a query string);
 * `body` (may be NULL) sent as JSON. *response (caller frees) is the answer
 * ({} when empty). */
int kiln_kfp_call(kiln_kfp_client *c, const char *method, const char *path, const cJSON *body,
                  cJSON **response, kiln_err *err);

/* The pipeline whose display name is `name`: ENOTFOUND when none. */
int kiln_kfp_pipeline_find(kiln_kfp_client *c, const char *name, char *pipeline_id,
                           kiln_err *err);
/* Upload a new pipeline; its first version's id goes to version_id. */
int kiln_kfp_pipeline_upload(kiln_kfp_client *c, const char *name, const char *description,
                             const char *yaml, size_t len, char *pipeline_id, char *version_id,
                             kiln_err *err);
/* Upload `yaml` as a new version named `version_name` of the pipeline. */
int kiln_kfp_pipeline_upload_version(kiln_kfp_client *c, const char *pipeline_id,
                                     const char *version_name, const char *yaml, size_t len,
                                     char *version_id, kiln_err *err);
/* Find the experiment by display name (in the namespace), else create it. */
int kiln_kfp_experiment_get_or_create(kiln_kfp_client *c, const char *name, char *experiment_id,
                                      int *created, kiln_err *err);

typedef struct kiln_kfp_run_spec {
    const char *display_name;
    const char *experiment_id;
    const char *pipeline_id;
    const char *pipeline_version_id;
    const cJSON *parameters;     /* runtime_config.parameters (an object), may be NULL */
    const char *service_account; /* may be NULL */
} kiln_kfp_run_spec;

int kiln_kfp_run_create(kiln_kfp_client *c, const kiln_kfp_run_spec *s, char *run_id,
                        kiln_err *err);
/* The run's state (PENDING, RUNNING, SUCCEEDED, SKIPPED, FAILED, CANCELING,
 * CANCELED, PAUSED; RUNTIME_STATE_UNSPECIFIED when the server left it out)
 * and, when it failed, its error message ("" otherwise). */
int kiln_kfp_run_state(kiln_kfp_client *c, const char *run_id, char *state, size_t state_size,
                       char *message, size_t message_size, kiln_err *err);
/* 1 for a state a run does not leave (SUCCEEDED, SKIPPED, FAILED, CANCELED). */
int kiln_kfp_state_final(const char *state);

/* A recurring run with `cron` (KFP's 6 fields, seconds first; a 5-field
 * crontab line gets "0 " in front), at most max_concurrency runs at once. */
int kiln_kfp_recurring_run_create(kiln_kfp_client *c, const kiln_kfp_run_spec *s,
                                  const char *cron, int max_concurrency, char *recurring_run_id,
                                  kiln_err *err);
/* KFP's form of a cron expression: 6 fields, or 5 with "0 " added; EINVAL
 * for another count. */
int kiln_kfp_cron_normalize(const char *cron, char *out, size_t size, kiln_err *err);

/* The run's page in the KFP UI: <host>/#/runs/details/<id> (malloc'ed). */
char *kiln_kfp_run_url(const kiln_kfp_client *c, const char *run_id);

#endif
