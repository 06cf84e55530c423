/* lib/mlflow/mlflow_tracking.c — experiments, runs, metrics, params, tags. */
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mlflow/mlflow_internal.h"

#define API "/api/2.0/mlflow"

const char *kiln_mlflow_run_status_name(kiln_mlflow_run_status s)
{
    switch (s) {
    case KILN_MLFLOW_RUNNING: return "RUNNING";
    case KILN_MLFLOW_SCHEDULED: return "SCHEDULED";
    case KILN_MLFLOW_FINISHED: return "FINISHED";
    case KILN_MLFLOW_FAILED: return "FAILED";
    case KILN_MLFLOW_KILLED: return "KILLED";
    }
    return "FAILED";
}

/* ---- experiments ---- */

int kiln_mlflow_experiment_get_by_name(kiln_mlflow_client *c, const char *name,
                                       kiln_mlflow_experiment **out, kiln_err *err)
{
    const char *kv[] = {"experiment_name", name};
    cJSON *resp = NULL;
    *out = NULL;
    int rc = mlflow_call_fields(c, "GET", API "/experiments/get-by-name", kv, 2, &resp, NULL, err);
    if (rc == KILN_OK) {
        const cJSON *e = mlflow_need_object(resp, "experiment", "experiments/get-by-name", err);
        rc = e ? mlflow_parse_experiment(e, out, err) : KILN_EFORMAT;
    }
    cJSON_Delete(resp);
    return rc;
}

static int existing_id(kiln_mlflow_client *c, const char *name, char **experiment_id,
                       kiln_err *err)
{
    kiln_mlflow_experiment *e = NULL;
    int rc = kiln_mlflow_experiment_get_by_name(c, name, &e, err);
    if (rc != KILN_OK)
        return rc;
    if (strcmp(e->lifecycle_stage, "deleted") == 0)
        rc = kiln_err_set(err, KILN_EINVAL,
                          "MLflow experiment '%s' (id %s) is deleted: restore it, or use "
                          "another name", name, e->experiment_id);
    else if (!(*experiment_id = strdup(e->experiment_id)))
        rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
    kiln_mlflow_experiment_free(e);
    return rc;
}

int kiln_mlflow_experiment_create(kiln_mlflow_client *c, const char *name,
                                  const char *artifact_location, char **experiment_id,
                                  kiln_err *err)
{
    const char *kv[] = {"name", name, "artifact_location", artifact_location};
    char code[MLFLOW_ERROR_CODE_MAX];
    cJSON *resp = NULL;
    *experiment_id = NULL;
    int rc = mlflow_call_fields(c, "POST", API "/experiments/create", kv, 4, &resp, code, err);
    if (rc != KILN_OK && strcmp(code, "RESOURCE_ALREADY_EXISTS") == 0)
        return existing_id(c, name, experiment_id, err); /* made by someone else: fine */
    if (rc == KILN_OK) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(resp, "experiment_id");
        if (!cJSON_IsString(id))
            rc = kiln_err_set(err, KILN_EFORMAT, "MLflow experiments/create: no experiment_id");
        else if (!(*experiment_id = strdup(id->valuestring)))
            rc = kiln_err_set(err, KILN_ENOMEM, "out of memory");
    }
    cJSON_Delete(resp);
    return rc;
}

int kiln_mlflow_experiment_get_or_create(kiln_mlflow_client *c, const char *name,
                                         char **experiment_id, kiln_err *err)
{
    *experiment_id = NULL;
    int rc = existing_id(c, name, experiment_id, err);
    if (rc == KILN_ENOTFOUND)
        rc = kiln_mlflow_experiment_create(c, name, NULL, experiment_id, err);
    return rc;
}

int kiln_mlflow_experiment_set_tag(kiln_mlflow_client *c, const char *experiment_id,
                                   const char *key, const char *value, kiln_err *err)
{
    const char *kv[] = {"experiment_id", experiment_id, "key", key, "value", value};
    return mlflow_call_fields(c, "POST", API "/experiments/set-experiment-tag", kv, 6, NULL, NULL,
                       err);
}

/* ---- runs ---- */

static const char *current_user(char *buf, size_t size)
{
    const char *u = getenv("USER");
    if (u && *u)
        return u;
    struct passwd pw, *found = NULL;
    if (getpwuid_r(getuid(), &pw, buf, size, &found) == 0 && found && found->pw_name)
        return found->pw_name;
    return "unknown";
}

static int add_tag(cJSON *arr, const char *key, const char *value)
{
    cJSON *t = cJSON_CreateObject();
    if (!t || !cJSON_AddStringToObject(t, "key", key) ||
        !cJSON_AddStringToObject(t, "value", value) || !cJSON_AddItemToArray(arr, t)) {
        cJSON_Delete(t);
        return 0;
    }
    return 1;
}

static int user_tag_set(const kiln_mlflow_run_options *o, const char *key)
{
    for (size_t i = 0; i < o->n_tags; i++)
        if (strcmp(o->tags[i].key, key) == 0)
            return 1;
    return 0;
}

static cJSON *run_create_request(const kiln_mlflow_run_options *o)
{
    char pwbuf[1024];
    const char *user = o->user ? o->user : current_user(pwbuf, sizeof pwbuf);
    const char *system[][2] = {
        {"mlflow.runName", o->run_name},
        {"mlflow.user", user},
        {"mlflow.source.name", o->source_name ? o->source_name : "kiln"},
        {"mlflow.source.type", o->source_type ? o->source_type : "LOCAL"},
    };
    cJSON *req = cJSON_CreateObject();
    cJSON *tags = cJSON_AddArrayToObject(req, "tags");
    int ok = req && tags && cJSON_AddStringToObject(req, "experiment_id", o->experiment_id) &&
             cJSON_AddStringToObject(req, "user_id", user) &&
             cJSON_AddNumberToObject(req, "start_time",
                                     (double)(o->start_time_ms ? o->start_time_ms
                                                               : mlflow_now_ms()));
    if (ok && o->run_name)
        ok = cJSON_AddStringToObject(req, "run_name", o->run_name) != NULL;
    for (size_t i = 0; ok && i < sizeof system / sizeof system[0]; i++)
        if (system[i][1] && !user_tag_set(o, system[i][0]))
            ok = add_tag(tags, system[i][0], system[i][1]);
    for (size_t i = 0; ok && i < o->n_tags; i++)
        ok = add_tag(tags, o->tags[i].key, o->tags[i].value);
    if (!ok) {
        cJSON_Delete(req);
        return NULL;
    }
    return req;
}

static int run_from(cJSON *resp, const char *what, kiln_mlflow_run **out, kiln_err *err)
{
    const cJSON *run = mlflow_need_object(resp, "run", what, err);
    return run ? mlflow_parse_run(run, out, err) : KILN_EFORMAT;
}

int kiln_mlflow_run_create(kiln_mlflow_client *c, const kiln_mlflow_run_options *opts,
                           kiln_mlflow_run **out, kiln_err *err)
{
    *out = NULL;
    if (!opts->experiment_id || !*opts->experiment_id)
        return kiln_err_set(err, KILN_EINVAL, "an MLflow run needs an experiment id");
    cJSON *resp = NULL;
    int rc = mlflow_call_taking(c, "POST", API "/runs/create", run_create_request(opts), &resp,
                                NULL, err);
    if (rc == KILN_OK)
        rc = run_from(resp, "runs/create", out, err);
    cJSON_Delete(resp);
    return rc;
}

int kiln_mlflow_run_get(kiln_mlflow_client *c, const char *run_id, kiln_mlflow_run **out,
                        kiln_err *err)
{
    const char *kv[] = {"run_id", run_id};
    cJSON *resp = NULL;
    *out = NULL;
    int rc = mlflow_call_fields(c, "GET", API "/runs/get", kv, 2, &resp, NULL, err);
    if (rc == KILN_OK)
        rc = run_from(resp, "runs/get", out, err);
    cJSON_Delete(resp);
    return rc;
}

int kiln_mlflow_run_update(kiln_mlflow_client *c, const char *run_id,
                           kiln_mlflow_run_status status, int64_t end_time_ms, kiln_err *err)
{
    cJSON *req = cJSON_CreateObject();
    int ok = req && cJSON_AddStringToObject(req, "run_id", run_id) &&
             cJSON_AddStringToObject(req, "run_uuid", run_id) && /* servers before 1.x */
             cJSON_AddStringToObject(req, "status", kiln_mlflow_run_status_name(status));
    if (ok && status != KILN_MLFLOW_RUNNING && status != KILN_MLFLOW_SCHEDULED)
        ok = cJSON_AddNumberToObject(req, "end_time",
                                     (double)(end_time_ms ? end_time_ms : mlflow_now_ms())) !=
             NULL;
    if (!ok) {
        cJSON_Delete(req);
        req = NULL;
    }
    return mlflow_call_taking(c, "POST", API "/runs/update", req, NULL, NULL, err);
}

int kiln_mlflow_run_finish(kiln_mlflow_client *c, const char *run_id,
                           kiln_mlflow_run_status status, kiln_err *err)
{
    if (status != KILN_MLFLOW_FINISHED && status != KILN_MLFLOW_FAILED &&
        status != KILN_MLFLOW_KILLED)
        return kiln_err_set(err, KILN_EINVAL, "a run ends FINISHED, FAILED or KILLED, not %s",
                            kiln_mlflow_run_status_name(status));
    return kiln_mlflow_run_update(c, run_id, status, 0, err);
}

int kiln_mlflow_run_set_tag(kiln_mlflow_client *c, const char *run_id, const char *key,
                            const char *value, kiln_err *err)
{
    const char *kv[] = {"run_id", run_id, "run_uuid", run_id, "key", key, "value", value};
    return mlflow_call_fields(c, "POST", API "/runs/set-tag", kv, 8, NULL, NULL, err);
}

int kiln_mlflow_log_param(kiln_mlflow_client *c, const char *run_id, const char *key,
                          const char *value, kiln_err *err)
{
    const char *kv[] = {"run_id", run_id, "run_uuid", run_id, "key", key, "value", value};
    return mlflow_call_fields(c, "POST", API "/runs/log-parameter", kv, 8, NULL, NULL, err);
}

int kiln_mlflow_log_metric(kiln_mlflow_client *c, const char *run_id, const char *key,
                           double value, int64_t timestamp_ms, int64_t step, kiln_err *err)
{
    kiln_mlflow_metric m = {key, value, timestamp_ms, step};
    cJSON *req = mlflow_metric_json(&m, mlflow_now_ms());
    if (req && (!cJSON_AddStringToObject(req, "run_id", run_id) ||
                !cJSON_AddStringToObject(req, "run_uuid", run_id))) {
        cJSON_Delete(req);
        req = NULL;
    }
    return mlflow_call_taking(c, "POST", API "/runs/log-metric", req, NULL, NULL, err);
}

/* ---- metric history ---- */

typedef struct point_list {
    kiln_mlflow_metric_value *v;
    size_t n;
} point_list;

/* Appends the points of one page of a history to the list. */
static int append_points(const cJSON *page, void *ctx, kiln_err *err)
{
    point_list *l = ctx;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(page, "metrics");
    int count = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
    if (count == 0)
        return KILN_OK;
    kiln_mlflow_metric_value *grown = realloc(l->v, (l->n + (size_t)count) * sizeof *grown);
    if (!grown)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    l->v = grown;
    const cJSON *item;
    cJSON_ArrayForEach(item, arr) {
        if (mlflow_parse_metric_value(item, &grown[l->n]) != KILN_OK) {
            free(grown[l->n].key);
            return kiln_err_set(err, KILN_ENOMEM, "out of memory");
        }
        l->n++;
    }
    return KILN_OK;
}

int kiln_mlflow_metric_history(kiln_mlflow_client *c, const char *run_id, const char *key,
                               kiln_mlflow_metric_value **out, size_t *n, kiln_err *err)
{
    const char *kv[] = {"run_id", run_id, "metric_key", key};
    point_list l = {NULL, 0};
    int rc = mlflow_get_pages(c, API "/metrics/get-history", kv, 4, append_points, &l, err);
    if (rc != KILN_OK) {
        kiln_mlflow_metric_values_free(l.v, l.n);
        l = (point_list){NULL, 0};
    }
    *out = l.v;
    *n = l.n;
    return rc;
}
