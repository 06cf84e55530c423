/* lib/tracking/ui_experiments.c — the experiments list (`/`) and an
 * experiment's runs table (`/experiments/<id>`): one row per run, every
 * param and the last value of every metric as columns. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/ui_internal.h"

#define EXPERIMENTS_PAGE 1000
#define EXPERIMENT_PAGES_MAX 50  /* 50 000 experiments on one page at most */
#define RUNS_PAGE 200

static void experiment_row(kiln_ui_buf *b, const cJSON *e)
{
    const char *id = kiln_ui_str(e, "experiment_id");
    const char *name = kiln_ui_str(e, "name");
    int64_t created = 0, updated = 0;
    kiln_ui_i64(e, "creation_time", &created);
    kiln_ui_i64(e, "last_update_time", &updated);
    kiln_ui_put(b, "<tr><td>");
    kiln_ui_put_link(b, "/experiments/", id, name && *name ? name : "(unnamed)");
    kiln_ui_put(b, "</td><td class=\"mono\">");
    kiln_ui_esc(b, id);
    kiln_ui_put(b, "</td><td class=\"mono\">");
    kiln_ui_esc(b, kiln_ui_str(e, "artifact_location"));
    kiln_ui_put(b, "</td><td>");
    kiln_ui_put_time(b, created);
    kiln_ui_put(b, "</td><td>");
    kiln_ui_put_time(b, updated > 0 ? updated : created);
    kiln_ui_put(b, "</td></tr>\n");
}

void kiln_ui_page_experiments(kiln_ui_ctx *c)
{
    kiln_ui_buf *b = &c->buf;
    cJSON *req = cJSON_CreateObject();
    kiln_ui_add_num(c, req, "max_results", EXPERIMENTS_PAGE);
    kiln_ui_add_str(c, req, "view_type", "ACTIVE_ONLY");
    cJSON *exps = kiln_ui_call_pages(c, "POST", "/api/2.0/mlflow/experiments/search", req,
                                     "experiments", EXPERIMENT_PAGES_MAX, INT_MAX);
    if (!exps)
        return;
    kiln_ui_page_begin(b, "Experiments");
    kiln_ui_put(b, "<h1>Experiments</h1>\n<div class=\"scroll\"><table class=\"experiments\">"
                   "<thead><tr><th>Name</th><th>ID</th><th>Artifact location</th>"
                   "<th>Created (UTC)</th><th>Last update (UTC)</th></tr></thead><tbody>\n");
    const cJSON *e;
    cJSON_ArrayForEach(e, exps)
        experiment_row(b, e);
    kiln_ui_put(b, "</tbody></table></div>\n");
    if (cJSON_GetArraySize(exps) == 0)
        kiln_ui_put(b, "<p class=\"muted\">No experiments yet.</p>");
    kiln_ui_page_end(b);
    cJSON_Delete(exps);
}

/* ---- the runs table ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The sorted, distinct `key`s of runs[i].data.<field>[] (borrowed strings). */
static const char **collect_keys(kiln_ui_ctx *c, const cJSON *runs, const char *field, size_t *n)
{
    size_t count = 0;
    const cJSON *run, *item;
    cJSON_ArrayForEach(run, runs) {
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(run, "data");
        count += (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(data, field));
    }
    *n = 0;
    if (count == 0)
        return NULL;
    const char **keys = malloc(count * sizeof *keys);
    if (!keys) {
        c->buf.oom = 1;
        return NULL;
    }
    size_t k = 0;
    cJSON_ArrayForEach(run, runs) {
        const cJSON *data = cJSON_GetObjectItemCaseSensitive(run, "data");
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(data, field)) {
            const char *key = kiln_ui_str(item, "key");
            if (key && k < count)
                keys[k++] = key;
        }
    }
    qsort(keys, k, sizeof *keys, cmp_str);
    size_t out = 0;
    for (size_t i = 0; i < k; i++)
        if (out == 0 || strcmp(keys[out - 1], keys[i]) != 0)
            keys[out++] = keys[i];
    *n = out;
    return keys;
}

/* The entry of run.data.<field>[] whose key is `key`, or NULL. */
static const cJSON *find_entry(const cJSON *run, const char *field, const char *key)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(run, "data");
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(data, field)) {
        const char *k = kiln_ui_str(item, "key");
        if (k && strcmp(k, key) == 0)
            return item;
    }
    return NULL;
}

static const char *run_display_name(const cJSON *run)
{
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(run, "info");
    const char *name = kiln_ui_str(info, "run_name");
    if (name && *name)
        return name;
    const cJSON *tag = find_entry(run, "tags", "mlflow.runName");
    name = kiln_ui_str(tag, "value");
    if (name && *name)
        return name;
    name = kiln_ui_str(info, "run_id");
    return name ? name : kiln_ui_str(info, "run_uuid");
}

static void run_row(kiln_ui_buf *b, const cJSON *run, const char **params, size_t np,
                    const char **metrics, size_t nm)
{
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(run, "info");
    const char *id = kiln_ui_str(info, "run_id");
    if (!id)
        id = kiln_ui_str(info, "run_uuid");
    const char *status = kiln_ui_str(info, "status");
    int64_t start = 0, end = 0;
    kiln_ui_i64(info, "start_time", &start);
    kiln_ui_i64(info, "end_time", &end);
    kiln_ui_put(b, "<tr><td>");
    kiln_ui_put_link(b, "/runs/", id, run_display_name(run));
    kiln_ui_put(b, "</td><td>");
    kiln_ui_put_badge(b, "st-", status, status ? status : "-");
    kiln_ui_put(b, "</td><td>");
    kiln_ui_put_time(b, start);
    kiln_ui_put(b, "</td><td>");
    if (start > 0 && end >= start)
        kiln_ui_put_duration(b, end - start);
    else
        kiln_ui_put(b, status && strcmp(status, "RUNNING") == 0 ? "running" : "-");
    kiln_ui_put(b, "</td>");
    for (size_t i = 0; i < np; i++) {
        kiln_ui_put(b, "<td>");
        kiln_ui_esc(b, kiln_ui_str(find_entry(run, "params", params[i]), "value"));
        kiln_ui_put(b, "</td>");
    }
    for (size_t i = 0; i < nm; i++) {
        const cJSON *m = find_entry(run, "metrics", metrics[i]);
        double v;
        kiln_ui_put(b, "<td class=\"num\">");
        if (m && kiln_ui_double(cJSON_GetObjectItemCaseSensitive(m, "value"), &v))
            kiln_ui_put_number(b, v);
        kiln_ui_put(b, "</td>");
    }
    kiln_ui_put(b, "</tr>\n");
}

static void runs_table(kiln_ui_ctx *c, const cJSON *runs)
{
    kiln_ui_buf *b = &c->buf;
    size_t np = 0, nm = 0;
    const char **params = collect_keys(c, runs, "params", &np);
    const char **metrics = collect_keys(c, runs, "metrics", &nm);
    kiln_ui_put(b, "<div class=\"scroll\"><table class=\"runs\"><thead><tr><th>Run</th>"
                   "<th>Status</th><th>Start (UTC)</th><th>Duration</th>");
    for (size_t i = 0; i < np; i++) {
        kiln_ui_put(b, "<th class=\"param\" title=\"param\">");
        kiln_ui_esc(b, params[i]);
        kiln_ui_put(b, "</th>");
    }
    for (size_t i = 0; i < nm; i++) {
        kiln_ui_put(b, "<th class=\"metric\" title=\"metric (last value)\">");
        kiln_ui_esc(b, metrics[i]);
        kiln_ui_put(b, "</th>");
    }
    kiln_ui_put(b, "</tr></thead><tbody>\n");
    const cJSON *run;
    cJSON_ArrayForEach(run, runs)
        run_row(b, run, params, np, metrics, nm);
    kiln_ui_put(b, "</tbody></table></div>\n");
    free(params);
    free(metrics);
}

static void experiment_header(kiln_ui_buf *b, const cJSON *e)
{
    int64_t created = 0, updated = 0;
    kiln_ui_i64(e, "creation_time", &created);
    kiln_ui_i64(e, "last_update_time", &updated);
    kiln_ui_put(b, "<div class=\"crumbs\">");
    kiln_ui_put_href(b, "/");
    kiln_ui_put(b, "\">Experiments</a> /</div><h1>");
    kiln_ui_esc(b, kiln_ui_str(e, "name"));
    kiln_ui_put(b, "</h1><table class=\"kv\"><tr><th>Experiment ID</th><td class=\"mono\">");
    kiln_ui_esc(b, kiln_ui_str(e, "experiment_id"));
    kiln_ui_put(b, "</td></tr><tr><th>Artifact location</th><td class=\"mono\">");
    kiln_ui_esc(b, kiln_ui_str(e, "artifact_location"));
    kiln_ui_put(b, "</td></tr><tr><th>Lifecycle stage</th><td>");
    kiln_ui_esc(b, kiln_ui_str(e, "lifecycle_stage"));
    kiln_ui_put(b, "</td></tr><tr><th>Created (UTC)</th><td>");
    kiln_ui_put_time(b, created);
    kiln_ui_put(b, "</td></tr><tr><th>Last update (UTC)</th><td>");
    kiln_ui_put_time(b, updated);
    kiln_ui_put(b, "</td></tr>");
    kiln_ui_put_tag_rows(b, cJSON_GetObjectItemCaseSensitive(e, "tags"));
    kiln_ui_put(b, "</table>\n");
}

void kiln_ui_page_experiment(kiln_ui_ctx *c, const char *exp_id)
{
    kiln_ui_buf *b = &c->buf;
    cJSON *exp = kiln_ui_call(c, "GET", "/api/2.0/mlflow/experiments/get",
                              kiln_ui_get_req(c, "experiment_id", exp_id, NULL));
    if (!exp)
        return;
    char *token = kiln_ui_query_get(c->query, "page_token");
    cJSON *req = cJSON_CreateObject();
    kiln_ui_add_str_list(c, req, "experiment_ids", exp_id);
    kiln_ui_add_num(c, req, "max_results", RUNS_PAGE);
    kiln_ui_add_str(c, req, "run_view_type", "ACTIVE_ONLY");
    kiln_ui_add_str_list(c, req, "order_by", "attributes.start_time DESC");
    if (token && *token)
        kiln_ui_add_str(c, req, "page_token", token);
    free(token);
    cJSON *resp = kiln_ui_call(c, "POST", "/api/2.0/mlflow/runs/search", req);
    if (!resp) {
        cJSON_Delete(exp);
        return;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(exp, "experiment");
    kiln_ui_page_begin(b, kiln_ui_str(e, "name") ? kiln_ui_str(e, "name") : exp_id);
    experiment_header(b, e);
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(resp, "runs");
    kiln_ui_putf(b, "<h2>Runs (%d%s)</h2>\n", cJSON_GetArraySize(runs),
                 kiln_ui_str(resp, "next_page_token") ? " on this page" : "");
    if (cJSON_GetArraySize(runs) > 0)
        runs_table(c, runs);
    else
        kiln_ui_put(b, "<p class=\"muted\">No runs in this experiment.</p>");
    const char *next = kiln_ui_str(resp, "next_page_token");
    if (next && *next) {
        kiln_ui_put(b, "<p class=\"pager\">");
        kiln_ui_put_href(b, "/experiments/");
        kiln_ui_url(b, exp_id, 0);
        kiln_ui_put(b, "?page_token=");
        kiln_ui_url(b, next, 0);
        kiln_ui_put(b, "\">Next page →</a></p>");
    }
    kiln_ui_page_end(b);
    cJSON_Delete(resp);
    cJSON_Delete(exp);
}
