/* lib/tracking/api.c — routing a REST call to its handler inside one
 * transaction, and MLflow's error JSON.
 *
 * Endpoints and methods are service.proto's and model_registry.proto's,
 * under /api/2.0/mlflow/ and /ajax-api/2.0/mlflow/. A known path with
 * another method answers 405 (as MLflow's Flask routes do), with an
 * ENDPOINT_NOT_FOUND body; an unknown path ENDPOINT_NOT_FOUND 404.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/tracking_internal.h"

typedef struct route {
    const char *path;    /* after the ".../mlflow/" prefix */
    const char *method;
    trk_handler fn;
    int writes;          /* BEGIN IMMEDIATE under the write lock */
    int no_db;           /* needs no database (the proxy's listing) */
} route;

static const route routes[] = {
    {"experiments/create", "POST", trk_h_exp_create, 1, 0},
    {"experiments/get", "GET", trk_h_exp_get, 0, 0},
    {"experiments/get-by-name", "GET", trk_h_exp_get_by_name, 0, 0},
    {"experiments/search", "POST", trk_h_exp_search, 0, 0},
    {"experiments/search", "GET", trk_h_exp_search, 0, 0},
    {"experiments/update", "POST", trk_h_exp_update, 1, 0},
    {"experiments/delete", "POST", trk_h_exp_delete, 1, 0},
    {"experiments/restore", "POST", trk_h_exp_restore, 1, 0},
    {"experiments/set-experiment-tag", "POST", trk_h_exp_set_tag, 1, 0},
    {"experiments/delete-experiment-tag", "POST", trk_h_exp_delete_tag, 1, 0},
    {"runs/create", "POST", trk_h_run_create, 1, 0},
    {"runs/update", "POST", trk_h_run_update, 1, 0},
    {"runs/delete", "POST", trk_h_run_delete, 1, 0},
    {"runs/restore", "POST", trk_h_run_restore, 1, 0},
    {"runs/get", "GET", trk_h_run_get, 0, 0},
    {"runs/search", "POST", trk_h_run_search, 0, 0},
    {"runs/log-metric", "POST", trk_h_log_metric, 1, 0},
    {"runs/log-parameter", "POST", trk_h_log_param, 1, 0},
    {"runs/set-tag", "POST", trk_h_run_set_tag, 1, 0},
    {"runs/delete-tag", "POST", trk_h_run_delete_tag, 1, 0},
    {"runs/log-batch", "POST", trk_h_log_batch, 1, 0},
    {"metrics/get-history", "GET", trk_h_metric_history, 0, 0},
    {"artifacts/list", "GET", trk_h_artifacts_list, 0, 0},
    {"registered-models/create", "POST", trk_h_rm_create, 1, 0},
    {"registered-models/rename", "POST", trk_h_rm_rename, 1, 0},
    {"registered-models/update", "PATCH", trk_h_rm_update, 1, 0},
    {"registered-models/delete", "DELETE", trk_h_rm_delete, 1, 0},
    {"registered-models/get", "GET", trk_h_rm_get, 0, 0},
    {"registered-models/search", "GET", trk_h_rm_search, 0, 0},
    {"registered-models/get-latest-versions", "POST", trk_h_rm_latest, 0, 0},
    {"registered-models/get-latest-versions", "GET", trk_h_rm_latest, 0, 0},
    {"registered-models/set-tag", "POST", trk_h_rm_set_tag, 1, 0},
    {"registered-models/delete-tag", "DELETE", trk_h_rm_delete_tag, 1, 0},
    {"registered-models/alias", "POST", trk_h_alias_set, 1, 0},
    {"registered-models/alias", "DELETE", trk_h_alias_delete, 1, 0},
    {"registered-models/alias", "GET", trk_h_alias_get, 0, 0},
    {"model-versions/create", "POST", trk_h_mv_create, 1, 0},
    {"model-versions/update", "PATCH", trk_h_mv_update, 1, 0},
    {"model-versions/transition-stage", "POST", trk_h_mv_transition, 1, 0},
    {"model-versions/delete", "DELETE", trk_h_mv_delete, 1, 0},
    {"model-versions/get", "GET", trk_h_mv_get, 0, 0},
    {"model-versions/search", "GET", trk_h_mv_search, 0, 0},
    {"model-versions/get-download-uri", "GET", trk_h_mv_download_uri, 0, 0},
    {"model-versions/set-tag", "POST", trk_h_mv_set_tag, 1, 0},
    {"model-versions/delete-tag", "DELETE", trk_h_mv_delete_tag, 1, 0},
};

static const route proxy_list_route = {"", "GET", trk_h_proxy_list, 0, 1};

static const struct {
    const char *code;
    int status;
} statuses[] = {
    /* mlflow/exceptions.py's ERROR_CODE_TO_HTTP_STATUS (INVALID_STATE is 500 there). */
    {"INVALID_PARAMETER_VALUE", 400}, {"BAD_REQUEST", 400}, {"MALFORMED_REQUEST", 400},
    {"RESOURCE_ALREADY_EXISTS", 400}, {"INVALID_STATE", 500}, {"INTERNAL_ERROR", 500},
    {"RESOURCE_DOES_NOT_EXIST", 404}, {"ENDPOINT_NOT_FOUND", 404}, {"NOT_FOUND", 404},
    {"UNAUTHENTICATED", 401}, {"PERMISSION_DENIED", 403}, {"REQUEST_LIMIT_EXCEEDED", 429},
    {"TEMPORARILY_UNAVAILABLE", 503}, {"NOT_IMPLEMENTED", 501}, {"ALREADY_EXISTS", 409},
    {"RESOURCE_CONFLICT", 409}, {"DEADLINE_EXCEEDED", 504},
};

int trk_status_for_code(const char *code)
{
    for (size_t i = 0; code && i < sizeof statuses / sizeof statuses[0]; i++)
        if (strcmp(statuses[i].code, code) == 0)
            return statuses[i].status;
    return 500;
}

int trk_fail(trk_req *r, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err.msg, sizeof r->err.msg, fmt, ap);
    va_end(ap);
    r->err.code = code;
    r->err.http_status = trk_status_for_code(code);
    return -1;
}

cJSON *kiln_tracking_error_json(const char *error_code, const char *message, int *http_status)
{
    const char *code = error_code ? error_code : TRK_INTERNAL;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (!cJSON_AddStringToObject(o, "error_code", code) ||
        !cJSON_AddStringToObject(o, "message", message ? message : "")) {
        cJSON_Delete(o);
        return NULL;
    }
    if (http_status)
        *http_status = trk_status_for_code(code);
    return o;
}

static cJSON *error_with_status(const char *code, const char *msg, int status, int *http_status)
{
    cJSON *o = kiln_tracking_error_json(code, msg, http_status);
    if (o && http_status)
        *http_status = status;
    return o;
}

/* The endpoint part of `path` ("runs/get"), or NULL if not under an MLflow
 * API prefix; sets *proxy for the artifact proxy's listing. */
static const char *endpoint_of(const char *path, size_t *len, int *proxy)
{
    static const char *const prefixes[] = {"/api/2.0/mlflow/", "/ajax-api/2.0/mlflow/"};
    static const char *const proxies[] = {"/api/2.0/mlflow-artifacts/artifacts",
                                          "/ajax-api/2.0/mlflow-artifacts/artifacts"};
    size_t n = strcspn(path, "?");
    *proxy = 0;
    for (size_t i = 0; i < 2; i++) {
        size_t pl = strlen(proxies[i]);
        if ((n == pl || (n == pl + 1 && path[pl] == '/')) && strncmp(path, proxies[i], pl) == 0) {
            *proxy = 1;
            *len = 0;
            return path + n;
        }
    }
    for (size_t i = 0; i < 2; i++) {
        size_t pl = strlen(prefixes[i]);
        if (n > pl && strncmp(path, prefixes[i], pl) == 0) {
            *len = n - pl;
            return path + pl;
        }
    }
    return NULL;
}

/* The request as an object: NULL is {}, and a JSON string holding an
 * object (older clients double-encode their bodies) is decoded. */
static const cJSON *request_object(const cJSON *request, cJSON **owned)
{
    static const cJSON empty = {.type = cJSON_Object};
    *owned = NULL;
    if (!request || cJSON_IsNull(request))
        return &empty;
    if (cJSON_IsString(request)) {
        *owned = cJSON_Parse(request->valuestring);
        return *owned && cJSON_IsObject(*owned) ? *owned : NULL;
    }
    return cJSON_IsObject(request) ? request : NULL;
}

static int run_in_transaction(trk_req *r, const route *rt, cJSON *resp)
{
    kiln_err err = {0};
    int rc = -1;
    if (rt->no_db)
        return rt->fn(r, resp);
    r->db = trk_conn_acquire(r->t, &err);
    if (!r->db)
        return trk_fail(r, TRK_INTERNAL, "%s", err.msg);
    if (rt->writes)
        pthread_mutex_lock(&r->t->write_lock);
    if (TRK_EXEC(r, rt->writes ? "BEGIN IMMEDIATE" : "BEGIN", "") == 0) {
        rc = rt->fn(r, resp);
        if (rc == 0 && r->oom)
            rc = trk_fail(r, TRK_INTERNAL, "out of memory building the response");
        if (rc == 0)
            rc = TRK_EXEC(r, "COMMIT", "");
        if (rc != 0 && !sqlite3_get_autocommit(r->db))
            sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    }
    if (rt->writes)
        pthread_mutex_unlock(&r->t->write_lock);
    trk_conn_release(r->t, r->db);
    r->db = NULL;
    return rc;
}

cJSON *kiln_tracking_api(void *ctx, const char *method, const char *path, const cJSON *request,
                         int *http_status)
{
    kiln_tracking *t = ctx;
    int dummy_status;
    char msg[512];
    size_t len = 0;
    int proxy = 0;
    if (!http_status)
        http_status = &dummy_status;
    const char *m = method && strcmp(method, "HEAD") == 0 ? "GET" : (method ? method : "");
    const char *ep = path ? endpoint_of(path, &len, &proxy) : NULL;
    const route *rt = NULL;
    int path_known = 0;
    if (ep && proxy) {
        path_known = 1;
        if (strcmp(m, "GET") == 0)
            rt = &proxy_list_route;
    }
    for (size_t i = 0; ep && !proxy && i < sizeof routes / sizeof routes[0]; i++) {
        if (strlen(routes[i].path) != len || strncmp(routes[i].path, ep, len) != 0)
            continue;
        path_known = 1;
        if (strcmp(routes[i].method, m) == 0) {
            rt = &routes[i];
            break;
        }
    }
    if (!rt) {
        snprintf(msg, sizeof msg, "%s %s: %s", m, path ? path : "(null)",
                 path_known ? "method not allowed for this endpoint" : "no such API endpoint");
        return error_with_status("ENDPOINT_NOT_FOUND", msg, path_known ? 405 : 404,
                                 http_status);
    }
    cJSON *owned = NULL;
    const cJSON *body = request_object(request, &owned);
    if (!body) {
        cJSON_Delete(owned);
        return error_with_status("MALFORMED_REQUEST", "The request body must be a JSON object",
                                 400, http_status);
    }
    trk_req r = {.t = t, .body = body, .is_get = strcmp(m, "GET") == 0};
    cJSON *resp = cJSON_CreateObject();
    int rc = resp ? run_in_transaction(&r, rt, resp) : -1;
    cJSON_Delete(owned);
    if (!resp || r.oom) {
        cJSON_Delete(resp);
        return NULL;
    }
    if (rc != 0) {
        cJSON_Delete(resp);
        return error_with_status(r.err.code, r.err.msg, r.err.http_status, http_status);
    }
    *http_status = 200;
    return resp;
}
