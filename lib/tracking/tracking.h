/* lib/tracking/tracking.h — kiln-tracking's core: an MLflow-compatible
 * tracking + model registry store on SQLite, and the REST API 2.0 over it.
 *
 * A kiln_tracking owns the SQLite database (WAL mode, durable across
 * restarts) and the artifact root directory. It is safe to call from
 * several HTTP worker threads at once, and several processes may open the
 * same database. The HTTP layer (lib/http, tracking/main.c) only moves
 * bytes: JSON requests go to kiln_tracking_api, artifact bodies to the
 * artifact functions below.
 */
#ifndef KILN_TRACKING_TRACKING_H
#define KILN_TRACKING_TRACKING_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/err.h"

typedef struct kiln_tracking kiln_tracking;

typedef struct kiln_tracking_options {
    const char *db_path;          /* SQLite file; created with its schema if absent */
    const char *artifacts_root;   /* local directory holding proxied artifacts; created */
    /* The artifact URI new runs get, e.g. "mlflow-artifacts:" (the default,
     * served by the proxy) or "s3://bucket/prefix". NULL: "mlflow-artifacts:". */
    const char *default_artifact_root;
} kiln_tracking_options;

kiln_tracking *kiln_tracking_open(const kiln_tracking_options *opts, kiln_err *err);
void kiln_tracking_close(kiln_tracking *t);

/* One REST call. `method` "GET"/"POST"/"PATCH"/"DELETE"; `path` is the full
 * request path, "/api/2.0/mlflow/..." or "/ajax-api/2.0/mlflow/..." (also
 * "/api/2.0/mlflow-artifacts/artifacts" for the proxy's list); `request` the
 * JSON body, or for GET the query parameters as a JSON object whose values
 * are strings (repeated keys become arrays). Returns the response (caller
 * frees) and sets *http_status; errors are MLflow's {"error_code",
 * "message"} with MLflow's status. NULL only when out of memory.
 * The signature is kiln_tracking_api_fn's (lib/tracking/ui.h), with `ctx`
 * the kiln_tracking. */
cJSON *kiln_tracking_api(void *ctx, const char *method, const char *path, const cJSON *request,
                         int *http_status);

/* MLflow's error JSON for a kiln code (EINVAL → INVALID_PARAMETER_VALUE 400,
 * ENOTFOUND → RESOURCE_DOES_NOT_EXIST 404, ...), setting *http_status. */
cJSON *kiln_tracking_error_json(const char *error_code, const char *message, int *http_status);

/* --- the artifact proxy (/api/2.0/mlflow-artifacts/artifacts/<rel_path>).
 * rel_path is relative to the artifact root ("<exp_id>/<run_id>/artifacts/
 * model/x.bin"); absolute paths, "..", empty segments and NUL are refused
 * with KILN_EUNSAFE. Uploads go to a temp file and are renamed on commit,
 * so a failed upload leaves nothing behind. */
typedef struct kiln_artifact_upload kiln_artifact_upload;
kiln_artifact_upload *kiln_tracking_artifact_begin(kiln_tracking *t, const char *rel_path,
                                                   kiln_err *err);
int kiln_tracking_artifact_write(kiln_artifact_upload *u, const void *data, size_t len,
                                 kiln_err *err);
/* Publishes the file and frees `u`, also on failure. */
int kiln_tracking_artifact_commit(kiln_artifact_upload *u, kiln_err *err);
/* Removes the temp file and frees `u`. NULL is fine. */
void kiln_tracking_artifact_abort(kiln_artifact_upload *u);
/* The local file behind rel_path (malloc'ed), checked to exist and to be a
 * regular file inside the root; KILN_ENOTFOUND otherwise. */
char *kiln_tracking_artifact_file(kiln_tracking *t, const char *rel_path, kiln_err *err);
int kiln_tracking_artifact_delete(kiln_tracking *t, const char *rel_path, kiln_err *err);

#endif
