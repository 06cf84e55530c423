/* lib/tracking/run_data.c — metrics, params and tags of a run: log-metric,
 * log-parameter, log-batch and metrics/get-history.
 *
 * log-batch checks every entity before writing any (limits, names,
 * lengths, duplicate param keys, the run being active) and writes inside
 * the request's transaction, so one bad metric writes nothing. Metrics are
 * appended (an exact duplicate is ignored, as MLflow's primary key does);
 * the latest value per key is the one with the greatest (step, timestamp,
 * value). A param keeps its first value: another value is refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/tracking_internal.h"

typedef struct metric_in {
    const char *key;
    double value;
    int64_t timestamp, step;
} metric_in;

static int check_metric(trk_req *r, const metric_in *m)
{
    if (trk_check_key(r, "metric", m->key) != 0)
        return -1;
    if (m->timestamp < 0)
        return trk_fail(r, TRK_INVALID,
                        "Got invalid timestamp %lld for metric '%s' (value=%g). Timestamp must be "
                        "a nonnegative long (64-bit integer) ",
                        (long long)m->timestamp, m->key, m->value);
    return trk_check_len(r, "Metric name", TRK_MAX_KEY_LEN, m->key);
}

static int check_param(trk_req *r, const char *key, const char *value)
{
    if (trk_check_key(r, "parameter", key) != 0 ||
        trk_check_len(r, "Param key", TRK_MAX_KEY_LEN, key) != 0)
        return -1;
    return trk_check_len(r, "Param value", TRK_MAX_PARAM_VAL_LEN, value);
}

static int write_metric(trk_req *r, const char *run_id, const metric_in *m)
{
    int is_nan = isnan(m->value) != 0;
    double value = is_nan ? 0.0 : m->value;
    if (TRK_EXEC(r,
                 "INSERT OR IGNORE INTO metrics (run_uuid, key, value, is_nan, timestamp, step)"
                 " VALUES (?, ?, ?, ?, ?, ?)",
                 "ssdiII", run_id, m->key, value, is_nan, m->timestamp, m->step) != 0)
        return -1;
    return TRK_EXEC(r,
                    "INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_uuid, key) DO UPDATE SET"
                    " value = excluded.value, is_nan = excluded.is_nan,"
                    " timestamp = excluded.timestamp, step = excluded.step"
                    " WHERE excluded.step > latest_metrics.step"
                    " OR (excluded.step = latest_metrics.step"
                    "     AND excluded.timestamp > latest_metrics.timestamp)"
                    " OR (excluded.step = latest_metrics.step"
                    "     AND excluded.timestamp = latest_metrics.timestamp"
                    "     AND excluded.value > latest_metrics.value)",
                    "ssdiII", run_id, m->key, value, is_nan, m->timestamp, m->step);
}

static int write_param(trk_req *r, const char *run_id, const char *key, const char *value)
{
    sqlite3_stmt *st =
        TRK_STMT(r, "SELECT value FROM params WHERE run_uuid = ? AND key = ?", "ss", run_id, key);
    if (!st)
        return -1;
    int rc = TRK_STEP(r, st);
    if (rc == 1 && strcmp(trk_col_text(st, 0), value) != 0)
        rc = trk_fail(r, TRK_INVALID,
                      "Changing param values is not allowed. Param with key='%s' was already "
                      "logged with value='%.500s' for run ID='%s'. Attempted logging new value "
                      "'%.500s'.",
                      key, trk_col_text(st, 0), run_id, value);
    sqlite3_finalize(st);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    return TRK_EXEC(r, "INSERT INTO params VALUES (?, ?, ?)", "sss", run_id, key, value);
}

int trk_h_log_metric(trk_req *r, cJSON *resp)
{
    const char *run_id;
    metric_in m = {0};
    int present;
    if (trk_req_run_id(r, &run_id) != 0 || trk_req_str(r, "key", 1, &m.key) != 0 ||
        trk_req_double(r, "value", 1, &m.value, NULL) != 0 ||
        trk_req_i64(r, "timestamp", 1, &m.timestamp, NULL) != 0 ||
        trk_req_i64(r, "step", 0, &m.step, &present) != 0)
        return -1;
    if (check_metric(r, &m) != 0 || trk_run_check(r, run_id, 1) != 0)
        return -1;
    return write_metric(r, run_id, &m);
}

int trk_h_log_param(trk_req *r, cJSON *resp)
{
    const char *run_id, *key, *value;
    if (trk_req_run_id(r, &run_id) != 0 || trk_req_str(r, "key", 1, &key) != 0 ||
        trk_req_str(r, "value", 0, &value) != 0)
        return -1;
    if (check_param(r, key, value ? value : "") != 0 || trk_run_check(r, run_id, 1) != 0)
        return -1;
    return write_param(r, run_id, key, value ? value : "");
}

static int batch_limit(trk_req *r, const char *what, int limit, int count)
{
    if (count <= limit)
        return 0;
    return trk_fail(r, TRK_INVALID,
                    "A batch logging request can contain at most %d %s. Got %d %s. Please split "
                    "up %s across multiple requests and try again.",
                    limit, what, count, what, what);
}

typedef struct batch {
    const cJSON *metrics, *params, *tags;
    int n_metrics, n_params, n_tags;
    metric_in *m;
} batch;

static int batch_read_metrics(trk_req *r, batch *b)
{
    for (int i = 0; i < b->n_metrics; i++) {
        const cJSON *o = cJSON_GetArrayItem(b->metrics, i);
        metric_in *m = &b->m[i];
        int present;
        if (trk_item_str(r, o, "metrics", i, "key", 1, &m->key) != 0 ||
            trk_item_double(r, o, "metrics", i, "value", 1, &m->value) != 0 ||
            trk_item_i64(r, o, "metrics", i, "timestamp", 1, &m->timestamp, &present) != 0 ||
            trk_item_i64(r, o, "metrics", i, "step", 0, &m->step, &present) != 0)
            return -1;
        if (!present)
            m->step = 0;
    }
    for (int i = 0; i < b->n_metrics; i++)
        if (check_metric(r, &b->m[i]) != 0)
            return -1;
    return 0;
}

/* Checks the params (and that no key comes twice) and tags. */
static int batch_check_params_tags(trk_req *r, const batch *b)
{
    for (int i = 0; i < b->n_params; i++) {
        const cJSON *o = cJSON_GetArrayItem(b->params, i);
        const char *key, *value;
        if (trk_item_str(r, o, "params", i, "key", 1, &key) != 0 ||
            trk_item_str(r, o, "params", i, "value", 0, &value) != 0 ||
            check_param(r, key, value ? value : "") != 0)
            return -1;
        for (int j = 0; j < i; j++) {
            const cJSON *prev = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(b->params, j), "key");
            if (strcmp(prev->valuestring, key) == 0)
                return trk_fail(r, TRK_INVALID,
                                "Duplicate parameter keys have been submitted: ['%s']. Please "
                                "ensure the request contains only one param value per param key.",
                                key);
        }
    }
    for (int i = 0; i < b->n_tags; i++) {
        const char *key, *value;
        if (trk_req_tag_at(r, b->tags, i, &trk_run_tags, &key, &value) != 0)
            return -1;
    }
    return 0;
}

static const char *item_value(const cJSON *list, int i)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list, i), "value");
    return cJSON_IsString(v) ? v->valuestring : "";
}

static const char *item_key(const cJSON *list, int i)
{
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(list, i), "key")->valuestring;
}

static int batch_write(trk_req *r, const char *run_id, const batch *b)
{
    for (int i = 0; i < b->n_params; i++)
        if (write_param(r, run_id, item_key(b->params, i), item_value(b->params, i)) != 0)
            return -1;
    for (int i = 0; i < b->n_metrics; i++)
        if (write_metric(r, run_id, &b->m[i]) != 0)
            return -1;
    for (int i = 0; i < b->n_tags; i++)
        if (trk_run_set_tag(r, run_id, item_key(b->tags, i), item_value(b->tags, i)) != 0)
            return -1;
    return 0;
}

int trk_h_log_batch(trk_req *r, cJSON *resp)
{
    const char *run_id;
    batch b = {0};
    int rc = -1;
    if (trk_req_run_id(r, &run_id) != 0 ||
        trk_req_obj_list(r, "metrics", &b.metrics, &b.n_metrics) != 0 ||
        trk_req_obj_list(r, "params", &b.params, &b.n_params) != 0 ||
        trk_req_obj_list(r, "tags", &b.tags, &b.n_tags) != 0)
        return -1;
    if (batch_limit(r, "metrics", TRK_MAX_BATCH_METRICS, b.n_metrics) != 0 ||
        batch_limit(r, "params", TRK_MAX_BATCH_PARAMS_TAGS, b.n_params) != 0 ||
        batch_limit(r, "tags", TRK_MAX_BATCH_PARAMS_TAGS, b.n_tags) != 0 ||
        batch_limit(r, "metrics, params, and tags", TRK_MAX_BATCH_ENTITIES,
                    b.n_metrics + b.n_params + b.n_tags) != 0)
        return -1;
    b.m = calloc((size_t)b.n_metrics + 1, sizeof *b.m);
    if (!b.m) {
        r->oom = 1;
        return trk_fail(r, TRK_INTERNAL, "out of memory");
    }
    if (batch_read_metrics(r, &b) == 0 && batch_check_params_tags(r, &b) == 0 &&
        trk_run_check(r, run_id, 1) == 0)
        rc = batch_write(r, run_id, &b);
    free(b.m);
    return rc;
}

int trk_h_metric_history(trk_req *r, cJSON *resp)
{
    const char *run_id, *key, *token;
    int64_t max_results = 0, offset;
    int limited, rc;
    if (trk_req_run_id(r, &run_id) != 0 || trk_req_str(r, "metric_key", 1, &key) != 0 ||
        trk_req_str(r, "page_token", 0, &token) != 0 ||
        trk_req_i64(r, "max_results", 0, &max_results, &limited) != 0 ||
        trk_page_token_parse(r, token, &offset) != 0)
        return -1;
    if (limited && max_results < 1)
        return trk_fail(r, TRK_INVALID, "max_results must be positive, got %lld",
                        (long long)max_results);
    if (trk_run_check(r, run_id, 0) != 0)
        return -1;
    sqlite3_stmt *st = TRK_STMT(r,
                                "SELECT value, is_nan, timestamp, step FROM metrics"
                                " WHERE run_uuid = ? AND key = ?"
                                " ORDER BY timestamp, step, rowid LIMIT ? OFFSET ?",
                                "ssII", run_id, key, limited ? max_results + 1 : (int64_t)-1,
                                offset);
    if (!st)
        return -1;
    int64_t count = 0;
    while ((rc = TRK_STEP(r, st)) == 1) {
        if (limited && count++ == max_results) {
            trk_page_token_put(r, resp, offset + max_results);
            break;
        }
        cJSON *m = trk_arr_add_obj(r, trk_put_arr(r, resp, "metrics"));
        if (!m)
            break;
        trk_put_str(r, m, "key", key);
        trk_put_double(r, m, "value", sqlite3_column_int(st, 1) ? NAN : sqlite3_column_double(st, 0));
        trk_put_i64(r, m, "timestamp", sqlite3_column_int64(st, 2));
        trk_put_i64(r, m, "step", sqlite3_column_int64(st, 3));
    }
    sqlite3_finalize(st);
    return rc < 0 ? -1 : 0;
}
