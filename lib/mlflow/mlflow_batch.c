/* lib/mlflow/mlflow_batch.c — log-batch, split to MLflow's per-call limits. */
#include <stdlib.h>
#include <string.h>

#include "mlflow/mlflow_internal.h"

/* What one entity adds to the JSON body, a little over (escapes counted). */
static size_t json_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        n += ch < 0x20 ? 6 : (ch == '"' || ch == '\\') ? 2 : 1;
    }
    return n;
}

static size_t kv_bytes(const kiln_mlflow_kv *kv)
{
    return json_len(kv->key) + json_len(kv->value) + 32;
}

static size_t metric_bytes(const kiln_mlflow_metric *m)
{
    return json_len(m->key) + 96;
}

static int add_kv(cJSON *arr, const kiln_mlflow_kv *kv)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "key", kv->key) ||
        !cJSON_AddStringToObject(o, "value", kv->value) || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return 0;
    }
    return 1;
}

cJSON *mlflow_metric_json(const kiln_mlflow_metric *m, int64_t now)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *v = mlflow_json_metric_value(m->value);
    if (!o || !v || !cJSON_AddItemToObject(o, "value", v)) {
        cJSON_Delete(v);
        cJSON_Delete(o);
        return NULL;
    }
    if (!cJSON_AddStringToObject(o, "key", m->key) ||
        !cJSON_AddNumberToObject(o, "timestamp",
                                 (double)(m->timestamp_ms ? m->timestamp_ms : now)) ||
        !cJSON_AddNumberToObject(o, "step", (double)m->step)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int add_metric(cJSON *arr, const kiln_mlflow_metric *m, int64_t now)
{
    cJSON *o = mlflow_metric_json(m, now);
    if (!o || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return 0;
    }
    return 1;
}

/* Where the batch stands: what is left and the room in the call being built. */
typedef struct batch {
    const kiln_mlflow_metric *metrics;
    size_t n_metrics, im;
    const kiln_mlflow_kv *params;
    size_t n_params, ip;
    const kiln_mlflow_kv *tags;
    size_t n_tags, it;
    size_t entities, bytes;       /* in the call being built */
} batch;

/* Room for one more entity of `size` bytes? The first always fits, so an
 * entity too large alone still goes (and the server says why it refuses). */
static int room(const batch *b, size_t size)
{
    return b->entities == 0 ||
           (b->entities < KILN_MLFLOW_BATCH_MAX_ENTITIES &&
            b->bytes + size <= KILN_MLFLOW_BATCH_MAX_BYTES);
}

/* Fill one call's arrays; 0 when out of memory. */
static int fill(batch *b, cJSON *metrics, cJSON *params, cJSON *tags, int64_t now)
{
    size_t k;
    for (k = 0; b->ip < b->n_params && k < KILN_MLFLOW_BATCH_MAX_PARAMS; k++, b->ip++) {
        size_t size = kv_bytes(&b->params[b->ip]);
        if (!room(b, size))
            return 1;
        if (!add_kv(params, &b->params[b->ip]))
            return 0;
        b->entities++;
        b->bytes += size;
    }
    for (k = 0; b->it < b->n_tags && k < KILN_MLFLOW_BATCH_MAX_TAGS; k++, b->it++) {
        size_t size = kv_bytes(&b->tags[b->it]);
        if (!room(b, size))
            return 1;
        if (!add_kv(tags, &b->tags[b->it]))
            return 0;
        b->entities++;
        b->bytes += size;
    }
    for (k = 0; b->im < b->n_metrics && k < KILN_MLFLOW_BATCH_MAX_METRICS; k++, b->im++) {
        size_t size = metric_bytes(&b->metrics[b->im]);
        if (!room(b, size))
            return 1;
        if (!add_metric(metrics, &b->metrics[b->im], now))
            return 0;
        b->entities++;
        b->bytes += size;
    }
    return 1;
}

int kiln_mlflow_log_batch(kiln_mlflow_client *c, const char *run_id,
                          const kiln_mlflow_metric *metrics, size_t n_metrics,
                          const kiln_mlflow_kv *params, size_t n_params,
                          const kiln_mlflow_kv *tags, size_t n_tags, size_t *calls,
                          kiln_err *err)
{
    batch b = {metrics, n_metrics, 0, params, n_params, 0, tags, n_tags, 0, 0, 0};
    int64_t now = mlflow_now_ms();
    int rc = KILN_OK;
    if (calls)
        *calls = 0;
    while (rc == KILN_OK && (b.ip < n_params || b.it < n_tags || b.im < n_metrics)) {
        cJSON *req = cJSON_CreateObject();
        cJSON *am = cJSON_AddArrayToObject(req, "metrics");
        cJSON *ap = cJSON_AddArrayToObject(req, "params");
        cJSON *at = cJSON_AddArrayToObject(req, "tags");
        b.entities = 0;
        b.bytes = 64 + strlen(run_id);
        if (!req || !am || !ap || !at || !cJSON_AddStringToObject(req, "run_id", run_id) ||
            !fill(&b, am, ap, at, now)) {
            cJSON_Delete(req);
            return kiln_err_set(err, KILN_ENOMEM, "out of memory building a log-batch");
        }
        rc = mlflow_call_taking(c, "POST", "/api/2.0/mlflow/runs/log-batch", req, NULL, NULL,
                                err);
        if (rc == KILN_OK && calls)
            (*calls)++;
    }
    return rc;
}
