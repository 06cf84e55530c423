/* lib/tracking/search_runs.c — runs/search: experiment ids, a filter over
 * metrics./params./tags./attributes., order_by, run_view_type and paging.
 *
 * Comparisons are on the latest value of a metric (as MLflow's SQL store);
 * params./tags. = != LIKE ILIKE match runs that have the key; attributes
 * take their own column. Default order: start_time DESC, then run id;
 * a given order keeps these as tie-breaks.
 */
#include <stdio.h>
#include <string.h>

#include "tracking/tracking_internal.h"

static const char *const run_attrs[] = {"run_id",      "run_name",  "status",     "start_time",
                                        "end_time",    "user_id",   "artifact_uri", "experiment_id",
                                        "lifecycle_stage", "created", "Created",  "run name",
                                        "Run name",    NULL};
static const char *const run_numeric_attrs[] = {"start_time", "end_time", "created", "Created",
                                                NULL};
static const trk_search_spec run_spec = {"run", run_attrs, run_numeric_attrs, 1, 1, 1};

static const trk_kv_table metrics_kv = {"latest_metrics", "run_uuid", 1};
static const trk_kv_table params_kv = {"params", "run_uuid", 0};
static const trk_kv_table tags_kv = {"tags", "run_uuid", 0};

static const char *run_column(const char *attr)
{
    static const char *const map[][2] = {
        {"run_id", "r.run_uuid"},         {"run_name", "r.name"},
        {"run name", "r.name"},           {"Run name", "r.name"},
        {"status", "r.status"},           {"start_time", "r.start_time"},
        {"created", "r.start_time"},      {"Created", "r.start_time"},
        {"end_time", "r.end_time"},       {"user_id", "r.user_id"},
        {"artifact_uri", "r.artifact_uri"}, {"lifecycle_stage", "r.lifecycle_stage"},
        {"experiment_id", "CAST(r.experiment_id AS TEXT)"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i][0], attr) == 0)
            return map[i][1];
    return "r.run_uuid";
}

static const trk_kv_table *kv_of(trk_entity e)
{
    return e == TRK_E_METRIC ? &metrics_kv : e == TRK_E_PARAM ? &params_kv : &tags_kv;
}

static void runs_where(trk_sql *q, const cJSON *ids, int n_ids, int view, const trk_filter *f)
{
    trk_sql_add(q, "SELECT r.run_uuid FROM runs r WHERE r.experiment_id IN (");
    for (int i = 0; i < n_ids; i++) {
        if (i)
            trk_sql_add(q, ", ");
        trk_sql_bind_text(q, trk_str_at(ids, i));
    }
    trk_sql_add(q, ") AND r.");
    trk_sql_add(q, trk_view_type_sql(view));
    for (int i = 0; i < f->n; i++) {
        trk_sql_add(q, " AND ");
        if (f->c[i].entity == TRK_E_ATTR)
            trk_sql_compare(q, run_column(f->c[i].key), &f->c[i]);
        else
            trk_sql_exists_kv(q, kv_of(f->c[i].entity), "r.run_uuid", &f->c[i]);
    }
}

static int runs_order(trk_req *r, trk_sql *q)
{
    const cJSON *items;
    int n, has_start = 0;
    if (trk_req_str_list(r, "order_by", &items, &n) != 0)
        return -1;
    trk_sql_add(q, " ORDER BY ");
    for (int i = 0; i < n; i++) {
        trk_order o;
        if (trk_order_parse(r, &run_spec, trk_str_at(items, i), &o) != 0)
            return -1;
        if (o.entity == TRK_E_ATTR) {
            const char *col = run_column(o.key);
            has_start |= strcmp(col, "r.start_time") == 0;
            trk_sql_order_column(q, col, o.ascending);
        } else {
            trk_sql_order_kv(q, kv_of(o.entity), "r.run_uuid", o.key, o.ascending);
        }
        trk_sql_add(q, ", ");
        trk_order_free(&o);
    }
    if (!has_start)
        trk_sql_add(q, "r.start_time DESC, ");
    trk_sql_add(q, "r.run_uuid ASC");
    return 0;
}

static int run_row(trk_req *r, sqlite3_stmt *row, cJSON *out)
{
    return trk_run_json(r, (const char *)sqlite3_column_text(row, 0), out);
}

int trk_h_run_search(trk_req *r, cJSON *resp)
{
    const cJSON *ids;
    const char *filter, *token;
    int n_ids, view, rc = -1;
    int64_t max_results, offset;
    trk_filter f = {0};
    trk_sql q = {0};
    if (trk_req_str_list(r, "experiment_ids", &ids, &n_ids) != 0 ||
        trk_req_str(r, "filter", 0, &filter) != 0 ||
        trk_req_max_results(r, 1000, TRK_MAX_SEARCH_RUNS, 0, &max_results) != 0 ||
        trk_req_view_type(r, "run_view_type", &view) != 0 ||
        trk_req_str(r, "page_token", 0, &token) != 0 || trk_page_token_parse(r, token, &offset) != 0)
        goto done;
    if (trk_filter_parse(r, &run_spec, filter, &f) != 0)
        goto done;
    runs_where(&q, ids, n_ids, view, &f);
    if (runs_order(r, &q) == 0)
        rc = TRK_SQL_PAGE(r, &q, max_results, offset, resp, "runs", run_row);
done:
    trk_sql_free(&q);
    trk_filter_free(&f);
    return rc;
}
