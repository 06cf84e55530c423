/* lib/mlflow/mlflow_json.c — MLflow's JSON entities into kiln's structs,
 * and their free functions. int64 fields may come as numbers or strings
 * (proto3 JSON); doubles also as "NaN" / "Infinity" / "-Infinity". */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mlflow/mlflow_internal.h"

int64_t mlflow_json_i64(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsNumber(v))
        return (int64_t)v->valuedouble;
    if (cJSON_IsString(v))
        return (int64_t)strtoll(v->valuestring, NULL, 10);
    return 0;
}

static double double_of(const cJSON *v)
{
    if (cJSON_IsNumber(v))
        return v->valuedouble;
    if (cJSON_IsString(v)) {
        if (!strcmp(v->valuestring, "NaN"))
            return NAN;
        if (!strcmp(v->valuestring, "Infinity"))
            return INFINITY;
        if (!strcmp(v->valuestring, "-Infinity"))
            return -INFINITY;
        return strtod(v->valuestring, NULL);
    }
    return NAN; /* cJSON prints NaN as null */
}

double mlflow_json_double(const cJSON *obj, const char *key)
{
    return double_of(cJSON_GetObjectItemCaseSensitive(obj, key));
}

cJSON *mlflow_json_metric_value(double v)
{
    if (isnan(v))
        return cJSON_CreateString("NaN");
    if (isinf(v))
        return cJSON_CreateString(v > 0 ? "Infinity" : "-Infinity");
    return cJSON_CreateNumber(v);
}

const cJSON *mlflow_need_object(const cJSON *resp, const char *key, const char *what,
                                kiln_err *err)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(resp, key);
    if (!cJSON_IsObject(o)) {
        kiln_err_set(err, KILN_EFORMAT, "MLflow %s: the answer has no '%s' object", what, key);
        return NULL;
    }
    return o;
}

/* Parsing keeps going after an allocation failure and reports it once. */
typedef struct parser {
    int oom;
} parser;

static char *str(parser *p, const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char *s;
    if (cJSON_IsString(v))
        s = strdup(v->valuestring);
    else if (cJSON_IsNumber(v)) {
        /* Ids and versions are strings in MLflow, but be lenient. */
        if (asprintf(&s, "%lld", (long long)v->valuedouble) < 0)
            s = NULL;
    } else
        s = strdup("");
    if (!s)
        p->oom = 1;
    return s;
}

static kiln_mlflow_pair *pairs(parser *p, const cJSON *arr, size_t *n)
{
    *n = 0;
    int count = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
    if (count == 0)
        return NULL;
    kiln_mlflow_pair *v = calloc((size_t)count, sizeof *v);
    if (!v) {
        p->oom = 1;
        return NULL;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, arr) {
        v[*n].key = str(p, item, "key");
        v[*n].value = str(p, item, "value");
        (*n)++;
    }
    return v;
}

static void pairs_free(kiln_mlflow_pair *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].value);
    }
    free(v);
}

static int finish(parser *p, int ok_format, const char *what, kiln_err *err)
{
    if (p->oom)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory reading an MLflow %s", what);
    if (!ok_format)
        return kiln_err_set(err, KILN_EFORMAT, "MLflow answered a malformed %s", what);
    return KILN_OK;
}

/* ---- experiments ---- */

void kiln_mlflow_experiment_free(kiln_mlflow_experiment *e)
{
    if (!e)
        return;
    free(e->experiment_id);
    free(e->name);
    free(e->artifact_location);
    free(e->lifecycle_stage);
    pairs_free(e->tags, e->n_tags);
    free(e);
}

int mlflow_parse_experiment(const cJSON *j, kiln_mlflow_experiment **out, kiln_err *err)
{
    parser p = {0};
    *out = NULL;
    kiln_mlflow_experiment *e = calloc(1, sizeof *e);
    if (!e)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    e->experiment_id = str(&p, j, "experiment_id");
    e->name = str(&p, j, "name");
    e->artifact_location = str(&p, j, "artifact_location");
    e->lifecycle_stage = str(&p, j, "lifecycle_stage");
    e->creation_time_ms = mlflow_json_i64(j, "creation_time");
    e->last_update_time_ms = mlflow_json_i64(j, "last_update_time");
    e->tags = pairs(&p, cJSON_GetObjectItemCaseSensitive(j, "tags"), &e->n_tags);
    int rc = finish(&p, !p.oom && e->experiment_id[0], "experiment", err);
    if (rc != KILN_OK) {
        kiln_mlflow_experiment_free(e);
        return rc;
    }
    *out = e;
    return KILN_OK;
}

/* ---- runs ---- */

int mlflow_parse_metric_value(const cJSON *j, kiln_mlflow_metric_value *out)
{
    parser p = {0};
    out->key = str(&p, j, "key");
    out->value = mlflow_json_double(j, "value");
    out->timestamp_ms = mlflow_json_i64(j, "timestamp");
    out->step = mlflow_json_i64(j, "step");
    return p.oom ? KILN_ENOMEM : KILN_OK;
}

void kiln_mlflow_metric_values_free(kiln_mlflow_metric_value *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i].key);
    free(v);
}

void kiln_mlflow_run_free(kiln_mlflow_run *run)
{
    if (!run)
        return;
    kiln_mlflow_run_info *i = &run->info;
    free(i->run_id);
    free(i->run_name);
    free(i->experiment_id);
    free(i->user_id);
    free(i->status);
    free(i->artifact_uri);
    free(i->lifecycle_stage);
    kiln_mlflow_metric_values_free(run->metrics, run->n_metrics);
    pairs_free(run->params, run->n_params);
    pairs_free(run->tags, run->n_tags);
    free(run);
}

static void parse_info(parser *p, const cJSON *j, kiln_mlflow_run_info *i)
{
    i->run_id = str(p, j, "run_id");
    if (i->run_id && !i->run_id[0]) {
        free(i->run_id);
        i->run_id = str(p, j, "run_uuid"); /* older servers */
    }
    i->run_name = str(p, j, "run_name");
    i->experiment_id = str(p, j, "experiment_id");
    i->user_id = str(p, j, "user_id");
    i->status = str(p, j, "status");
    i->artifact_uri = str(p, j, "artifact_uri");
    i->lifecycle_stage = str(p, j, "lifecycle_stage");
    i->start_time_ms = mlflow_json_i64(j, "start_time");
    i->end_time_ms = mlflow_json_i64(j, "end_time");
}

static void parse_metrics(parser *p, const cJSON *arr, kiln_mlflow_run *run)
{
    int count = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
    if (count == 0)
        return;
    run->metrics = calloc((size_t)count, sizeof *run->metrics);
    if (!run->metrics) {
        p->oom = 1;
        return;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, arr) {
        if (mlflow_parse_metric_value(item, &run->metrics[run->n_metrics++]) != KILN_OK)
            p->oom = 1;
    }
}

int mlflow_parse_run(const cJSON *j, kiln_mlflow_run **out, kiln_err *err)
{
    parser p = {0};
    *out = NULL;
    kiln_mlflow_run *run = calloc(1, sizeof *run);
    if (!run)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(j, "info");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    parse_info(&p, info, &run->info);
    parse_metrics(&p, cJSON_GetObjectItemCaseSensitive(data, "metrics"), run);
    run->params = pairs(&p, cJSON_GetObjectItemCaseSensitive(data, "params"), &run->n_params);
    run->tags = pairs(&p, cJSON_GetObjectItemCaseSensitive(data, "tags"), &run->n_tags);
    int rc = finish(&p, cJSON_IsObject(info) && run->info.run_id && run->info.run_id[0], "run",
                    err);
    if (rc != KILN_OK) {
        kiln_mlflow_run_free(run);
        return rc;
    }
    *out = run;
    return KILN_OK;
}

static const char *pair_value(const kiln_mlflow_pair *v, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].key, key) == 0)
            return v[i].value;
    return NULL;
}

const char *kiln_mlflow_run_tag(const kiln_mlflow_run *run, const char *key)
{
    return pair_value(run->tags, run->n_tags, key);
}

const char *kiln_mlflow_run_param(const kiln_mlflow_run *run, const char *key)
{
    return pair_value(run->params, run->n_params, key);
}

/* ---- model versions ---- */

void kiln_mlflow_model_version_free(kiln_mlflow_model_version *mv)
{
    if (!mv)
        return;
    free(mv->name);
    free(mv->version);
    free(mv->source);
    free(mv->run_id);
    free(mv->current_stage);
    free(mv->status);
    free(mv->status_message);
    free(mv->description);
    free(mv->user_id);
    for (size_t i = 0; i < mv->n_aliases; i++)
        free(mv->aliases[i]);
    free(mv->aliases);
    pairs_free(mv->tags, mv->n_tags);
    free(mv);
}

void kiln_mlflow_model_versions_free(kiln_mlflow_model_version **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        kiln_mlflow_model_version_free(v[i]);
    free(v);
}

static void parse_aliases(parser *p, const cJSON *arr, kiln_mlflow_model_version *mv)
{
    int count = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
    if (count == 0)
        return;
    mv->aliases = calloc((size_t)count, sizeof *mv->aliases);
    if (!mv->aliases) {
        p->oom = 1;
        return;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, arr) {
        if (!cJSON_IsString(item))
            continue;
        if (!(mv->aliases[mv->n_aliases++] = strdup(item->valuestring)))
            p->oom = 1;
    }
}

int mlflow_parse_model_version(const cJSON *j, kiln_mlflow_model_version **out, kiln_err *err)
{
    parser p = {0};
    *out = NULL;
    kiln_mlflow_model_version *mv = calloc(1, sizeof *mv);
    if (!mv)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    mv->name = str(&p, j, "name");
    mv->version = str(&p, j, "version");
    mv->source = str(&p, j, "source");
    mv->run_id = str(&p, j, "run_id");
    mv->current_stage = str(&p, j, "current_stage");
    mv->status = str(&p, j, "status");
    mv->status_message = str(&p, j, "status_message");
    mv->description = str(&p, j, "description");
    mv->user_id = str(&p, j, "user_id");
    mv->creation_timestamp_ms = mlflow_json_i64(j, "creation_timestamp");
    mv->last_updated_timestamp_ms = mlflow_json_i64(j, "last_updated_timestamp");
    parse_aliases(&p, cJSON_GetObjectItemCaseSensitive(j, "aliases"), mv);
    mv->tags = pairs(&p, cJSON_GetObjectItemCaseSensitive(j, "tags"), &mv->n_tags);
    int rc = finish(&p, cJSON_IsObject(j) && mv->version && mv->version[0], "model version",
                    err);
    if (rc != KILN_OK) {
        kiln_mlflow_model_version_free(mv);
        return rc;
    }
    *out = mv;
    return KILN_OK;
}

int mlflow_parse_model_versions(const cJSON *arr, kiln_mlflow_model_version ***out, size_t *n,
                                kiln_err *err)
{
    *out = NULL;
    *n = 0;
    int count = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
    if (count == 0)
        return KILN_OK;
    kiln_mlflow_model_version **v = calloc((size_t)count, sizeof *v);
    if (!v)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory");
    const cJSON *item;
    size_t k = 0;
    cJSON_ArrayForEach(item, arr) {
        int rc = mlflow_parse_model_version(item, &v[k], err);
        if (rc != KILN_OK) {
            kiln_mlflow_model_versions_free(v, k);
            return rc;
        }
        k++;
    }
    *out = v;
    *n = k;
    return KILN_OK;
}
