/* lib/mlflow/mlflow_registry.c — the model registry: registered models,
 * versions, stages, aliases. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mlflow/mlflow_internal.h"

#define API "/api/2.0/mlflow"

/* The "model_version" object of the answer of a call that returned `rc`
 * into *out; frees the answer. */
/* `out` may be NULL when the caller only needs the call to succeed. */
static int version_from(int rc, cJSON *resp, const char *what, kiln_mlflow_model_version **out,
                        kiln_err *err)
{
    if (rc == KILN_OK) {
        kiln_mlflow_model_version *mv_out = NULL;
        const cJSON *mv = mlflow_need_object(resp, "model_version", what, err);
        rc = mv ? mlflow_parse_model_version(mv, &mv_out, err) : KILN_EFORMAT;
        if (out)
            *out = mv_out;
        else
            kiln_mlflow_model_version_free(mv_out);
    }
    cJSON_Delete(resp);
    return rc;
}

int kiln_mlflow_registered_model_create(kiln_mlflow_client *c, const char *name,
                                        const char *description, kiln_err *err)
{
    const char *kv[] = {"name", name, "description", description};
    char code[MLFLOW_ERROR_CODE_MAX];
    int rc = mlflow_call_fields(c, "POST", API "/registered-models/create", kv, 4, NULL, code,
                                err);
    if (rc != KILN_OK && strcmp(code, "RESOURCE_ALREADY_EXISTS") == 0) {
        if (err)
            kiln_err_clear(err);
        return KILN_OK;
    }
    return rc;
}

int kiln_mlflow_model_version_create(kiln_mlflow_client *c, const char *name,
                                     const char *source, const char *run_id,
                                     kiln_mlflow_model_version **out, kiln_err *err)
{
    const char *kv[] = {"name", name, "source", source, "run_id", run_id};
    cJSON *resp = NULL;
    *out = NULL;
    int rc = mlflow_call_fields(c, "POST", API "/model-versions/create", kv, 6, &resp, NULL, err);
    return version_from(rc, resp, "model-versions/create", out, err);
}

int kiln_mlflow_model_version_get(kiln_mlflow_client *c, const char *name, const char *version,
                                  kiln_mlflow_model_version **out, kiln_err *err)
{
    const char *kv[] = {"name", name, "version", version};
    cJSON *resp = NULL;
    *out = NULL;
    int rc = mlflow_call_fields(c, "GET", API "/model-versions/get", kv, 4, &resp, NULL, err);
    return version_from(rc, resp, "model-versions/get", out, err);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int kiln_mlflow_model_version_wait_ready(kiln_mlflow_client *c, const char *name,
                                         const char *version, int timeout_ms, int poll_ms,
                                         kiln_mlflow_model_version **out, kiln_err *err)
{
    double deadline = now_s() + timeout_ms / 1000.0;
    if (out)
        *out = NULL;
    for (;;) {
        kiln_mlflow_model_version *mv = NULL;
        int rc = kiln_mlflow_model_version_get(c, name, version, &mv, err);
        if (rc != KILN_OK)
            return rc;
        if (strcmp(mv->status, "READY") == 0) {
            if (out)
                *out = mv;
            else
                kiln_mlflow_model_version_free(mv);
            return KILN_OK;
        }
        if (strcmp(mv->status, "FAILED_REGISTRATION") == 0) {
            rc = kiln_err_set(err, KILN_EIO, "model '%s' version %s failed to register: %s",
                              name, version,
                              mv->status_message[0] ? mv->status_message : "(no message)");
            kiln_mlflow_model_version_free(mv);
            return rc;
        }
        kiln_mlflow_model_version_free(mv);
        if (now_s() >= deadline)
            return kiln_err_set(err, KILN_ECANCELED,
                                "model '%s' version %s is still not READY after %d ms", name,
                                version, timeout_ms);
        long ms = poll_ms > 0 ? poll_ms : 1000;
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int kiln_mlflow_model_version_transition(kiln_mlflow_client *c, const char *name,
                                         const char *version, const char *stage,
                                         int archive_existing_versions,
                                         kiln_mlflow_model_version **out, kiln_err *err)
{
    const char *kv[] = {"name", name, "version", version, "stage", stage};
    cJSON *req = mlflow_fields(kv, 6);
    cJSON *resp = NULL;
    if (out)
        *out = NULL;
    if (req && !cJSON_AddBoolToObject(req, "archive_existing_versions",
                                      archive_existing_versions != 0)) {
        cJSON_Delete(req);
        req = NULL;
    }
    int rc = mlflow_call_taking(c, "POST", API "/model-versions/transition-stage", req, &resp,
                                NULL, err);
    return version_from(rc, resp, "model-versions/transition-stage", out, err);
}

int kiln_mlflow_alias_set(kiln_mlflow_client *c, const char *name, const char *alias,
                          const char *version, kiln_err *err)
{
    const char *kv[] = {"name", name, "alias", alias, "version", version};
    return mlflow_call_fields(c, "POST", API "/registered-models/alias", kv, 6, NULL, NULL, err);
}

int kiln_mlflow_alias_delete(kiln_mlflow_client *c, const char *name, const char *alias,
                             kiln_err *err)
{
    /* A JSON body, as MLflow's Python client sends DELETE requests. */
    const char *kv[] = {"name", name, "alias", alias};
    return mlflow_call_fields(c, "DELETE", API "/registered-models/alias", kv, 4, NULL, NULL,
                              err);
}

int kiln_mlflow_alias_get(kiln_mlflow_client *c, const char *name, const char *alias,
                          kiln_mlflow_model_version **out, kiln_err *err)
{
    const char *kv[] = {"name", name, "alias", alias};
    cJSON *resp = NULL;
    *out = NULL;
    char code[MLFLOW_ERROR_CODE_MAX];
    int rc = mlflow_call_fields(c, "GET", API "/registered-models/alias", kv, 4, &resp, code,
                                err);
    /* MLflow answers a missing alias with INVALID_PARAMETER_VALUE (400),
     * "Registered model alias <a> not found."; callers need to tell it
     * from a bad request. */
    if (rc == KILN_EINVAL && !strcmp(code, "INVALID_PARAMETER_VALUE") && err &&
        strstr(err->msg, "not found"))
        err->code = KILN_ENOTFOUND, rc = KILN_ENOTFOUND;
    return version_from(rc, resp, "registered-models/alias", out, err);
}

int kiln_mlflow_latest_versions(kiln_mlflow_client *c, const char *name,
                                const char *const *stages, size_t n_stages,
                                kiln_mlflow_model_version ***out, size_t *n, kiln_err *err)
{
    const char *kv[] = {"name", name};
    cJSON *req = mlflow_fields(kv, 2);
    cJSON *resp = NULL;
    *out = NULL;
    *n = 0;
    if (req && n_stages) {
        cJSON *arr = cJSON_AddArrayToObject(req, "stages");
        for (size_t i = 0; arr && i < n_stages; i++)
            if (!cJSON_AddItemToArray(arr, cJSON_CreateString(stages[i])))
                arr = NULL;
        if (!arr) {
            cJSON_Delete(req);
            req = NULL;
        }
    }
    int rc = mlflow_call_taking(c, "POST", API "/registered-models/get-latest-versions", req,
                                &resp, NULL, err);
    if (rc == KILN_OK)
        rc = mlflow_parse_model_versions(cJSON_GetObjectItemCaseSensitive(resp, "model_versions"),
                                         out, n, err);
    cJSON_Delete(resp);
    return rc;
}

typedef struct version_list {
    kiln_mlflow_model_version **v;
    size_t n;
} version_list;

/* Appends the versions of one page of a search to the list. */
static int append_versions(const cJSON *page, void *ctx, kiln_err *err)
{
    version_list *l = ctx;
    kiln_mlflow_model_version **got = NULL;
    size_t k = 0;
    int rc = mlflow_parse_model_versions(cJSON_GetObjectItemCaseSensitive(page, "model_versions"),
                                         &got, &k, err);
    if (rc != KILN_OK || k == 0)
        return rc;
    kiln_mlflow_model_version **grown = realloc(l->v, (l->n + k) * sizeof *grown);
    if (!grown) {
        kiln_mlflow_model_versions_free(got, k);
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    }
    memcpy(grown + l->n, got, k * sizeof *got);
    free(got);
    l->v = grown;
    l->n += k;
    return KILN_OK;
}

int kiln_mlflow_model_versions_search(kiln_mlflow_client *c, const char *filter,
                                      kiln_mlflow_model_version ***out, size_t *n,
                                      kiln_err *err)
{
    const char *kv[] = {"filter", filter};
    version_list l = {NULL, 0};
    int rc = mlflow_get_pages(c, API "/model-versions/search", kv, 2, append_versions, &l, err);
    if (rc != KILN_OK) {
        kiln_mlflow_model_versions_free(l.v, l.n);
        l = (version_list){NULL, 0};
    }
    *out = l.v;
    *n = l.n;
    return rc;
}
