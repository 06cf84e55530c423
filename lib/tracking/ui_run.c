/* lib/tracking/ui_run.c — a run's page (`/runs/<run_id>`): its info,
 * params and tags, one chart per metric (from metrics/get-history) and
 * its artifact tree (from artifacts/list) with download links through the
 * artifact proxy when the run's artifacts live there. */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/ui_internal.h"

#define HISTORY_PAGE "25000"
#define HISTORY_MAX_POINTS 200000 /* stop paging a history beyond this */
#define ARTIFACT_MAX_DEPTH 8
#define ARTIFACT_MAX_ENTRIES 2000

static int cmp_by_key(const void *pa, const void *pb)
{
    const char *a = kiln_ui_str(*(const cJSON *const *)pa, "key");
    const char *b = kiln_ui_str(*(const cJSON *const *)pb, "key");
    return strcmp(a ? a : "", b ? b : "");
}

/* The items of a {key, ...} array sorted by key (borrowed), or NULL. */
static const cJSON **sorted_by_key(kiln_ui_ctx *c, const cJSON *arr, size_t *n)
{
    *n = (size_t)cJSON_GetArraySize(arr);
    if (*n == 0)
        return NULL;
    const cJSON **items = malloc(*n * sizeof *items);
    if (!items) {
        c->buf.oom = 1;
        *n = 0;
        return NULL;
    }
    size_t k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
        items[k++] = it;
    qsort(items, k, sizeof *items, cmp_by_key);
    return items;
}

static void kv_table(kiln_ui_ctx *c, const char *title, const char *cls, const cJSON *arr)
{
    kiln_ui_buf *b = &c->buf;
    size_t n;
    const cJSON **items = sorted_by_key(c, arr, &n);
    kiln_ui_putf(b, "<section class=\"%s\"><h2>%s (%zu)</h2>", cls, title, n);
    if (n == 0) {
        kiln_ui_put(b, "<p class=\"muted\">None.</p></section>\n");
        return;
    }
    kiln_ui_put(b, "<table class=\"kv\"><thead><tr><th>Key</th><th>Value</th></tr></thead>"
                   "<tbody>");
    for (size_t i = 0; i < n; i++) {
        kiln_ui_put(b, "<tr><th>");
        kiln_ui_esc(b, kiln_ui_str(items[i], "key"));
        kiln_ui_put(b, "</th><td class=\"mono\">");
        kiln_ui_esc(b, kiln_ui_str(items[i], "value"));
        kiln_ui_put(b, "</td></tr>");
    }
    kiln_ui_put(b, "</tbody></table></section>\n");
    free(items);
}

/* An API call whose failure only leaves a detail out of the page. */
static cJSON *call_optional(kiln_ui_ctx *c, const char *method, const char *path, cJSON *req)
{
    int status = 0;
    cJSON *resp = c->buf.oom ? NULL : c->api(c->api_ctx, method, path, req, &status);
    cJSON_Delete(req);
    if (resp && status == 200)
        return resp;
    cJSON_Delete(resp);
    return NULL;
}

static void info_row_start(kiln_ui_buf *b, const char *label)
{
    kiln_ui_put(b, "<tr><th>");
    kiln_ui_put(b, label);
    kiln_ui_put(b, "</th><td>");
}

static void run_info(kiln_ui_ctx *c, const cJSON *info, const char *exp_name)
{
    kiln_ui_buf *b = &c->buf;
    const char *exp_id = kiln_ui_str(info, "experiment_id");
    const char *status = kiln_ui_str(info, "status");
    int64_t start = 0, end = 0;
    kiln_ui_i64(info, "start_time", &start);
    kiln_ui_i64(info, "end_time", &end);
    kiln_ui_put(b, "<table class=\"kv info\">");
    info_row_start(b, "Run ID");
    kiln_ui_put(b, "<span class=\"mono\">");
    kiln_ui_esc(b, kiln_ui_str(info, "run_id"));
    kiln_ui_put(b, "</span></td></tr>");
    info_row_start(b, "Experiment");
    kiln_ui_put_link(b, "/experiments/", exp_id, exp_name ? exp_name : exp_id);
    kiln_ui_put(b, "</td></tr>");
    info_row_start(b, "Status");
    kiln_ui_put_badge(b, "st-", status, status);
    kiln_ui_put(b, "</td></tr>");
    info_row_start(b, "User");
    const char *user = kiln_ui_str(info, "user_id");
    kiln_ui_esc(b, user && *user ? user : "-");
    kiln_ui_put(b, "</td></tr>");
    info_row_start(b, "Start (UTC)");
    kiln_ui_put_time(b, start);
    kiln_ui_put(b, "</td></tr>");
    info_row_start(b, "End (UTC)");
    kiln_ui_put_time(b, end);
    kiln_ui_put(b, "</td></tr>");
    info_row_start(b, "Duration");
    if (start > 0 && end >= start)
        kiln_ui_put_duration(b, end - start);
    else
        kiln_ui_put(b, "-");
    kiln_ui_put(b, "</td></tr>");
    info_row_start(b, "Artifact URI");
    kiln_ui_put(b, "<span class=\"mono\">");
    kiln_ui_esc(b, kiln_ui_str(info, "artifact_uri"));
    kiln_ui_put(b, "</span></td></tr>");
    info_row_start(b, "Lifecycle stage");
    kiln_ui_esc(b, kiln_ui_str(info, "lifecycle_stage"));
    kiln_ui_put(b, "</td></tr></table>\n");
}

/* Every page of a metric's history in one array (caller frees). */
static cJSON *fetch_history(kiln_ui_ctx *c, const char *run_id, const char *key)
{
    return kiln_ui_call_pages(c, "GET", "/api/2.0/mlflow/metrics/get-history",
                              kiln_ui_get_req(c, "run_id", run_id, "metric_key", key,
                                              "max_results", HISTORY_PAGE, NULL),
                              "metrics", INT_MAX, HISTORY_MAX_POINTS);
}

static void chart_caption(kiln_ui_buf *b, const kiln_ui_point *pts, size_t n)
{
    size_t finite = 0;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(pts[i].y))
            continue;
        finite++;
        lo = pts[i].y < lo ? pts[i].y : lo;
        hi = pts[i].y > hi ? pts[i].y : hi;
    }
    kiln_ui_put(b, "<figcaption>");
    if (n > 0) {
        kiln_ui_put(b, "last <b>");
        kiln_ui_put_number(b, pts[n - 1].y);
        kiln_ui_put(b, "</b>");
    }
    if (finite > 0) {
        kiln_ui_put(b, " · min ");
        kiln_ui_put_number(b, lo);
        kiln_ui_put(b, " · max ");
        kiln_ui_put_number(b, hi);
    }
    kiln_ui_putf(b, " · %zu point%s", n, n == 1 ? "" : "s");
    if (finite < n)
        kiln_ui_putf(b, " (%zu not finite, not drawn)", n - finite);
    kiln_ui_put(b, "</figcaption>");
}

static void metric_charts(kiln_ui_ctx *c, const char *run_id, const cJSON *metrics)
{
    kiln_ui_buf *b = &c->buf;
    size_t n;
    const cJSON **items = sorted_by_key(c, metrics, &n);
    kiln_ui_putf(b, "<section class=\"metrics\"><h2>Metrics (%zu)</h2>", n);
    if (n == 0)
        kiln_ui_put(b, "<p class=\"muted\">None.</p>");
    else
        kiln_ui_put(b, "<div class=\"grid\">");
    for (size_t i = 0; i < n && !c->failed; i++) {
        const char *key = kiln_ui_str(items[i], "key");
        if (!key)
            continue;
        cJSON *hist = fetch_history(c, run_id, key);
        if (!hist)
            break;
        size_t npts = 0;
        const char *x_label = "step";
        kiln_ui_point *pts = kiln_ui_history_points(hist, &npts, &x_label, &b->oom);
        kiln_ui_put(b, "<figure class=\"card chart\" data-metric=\"");
        kiln_ui_esc(b, key);
        kiln_ui_put(b, "\">");
        kiln_ui_chart_svg(b, key, x_label, strcmp(x_label, "step") == 0, pts, npts);
        chart_caption(b, pts, npts);
        kiln_ui_put(b, "</figure>\n");
        free(pts);
        cJSON_Delete(hist);
    }
    if (n > 0)
        kiln_ui_put(b, "</div>");
    kiln_ui_put(b, "</section>\n");
    free(items);
}

/* The part of an mlflow-artifacts: URI after the scheme and host, e.g.
 * "/1/<run>/artifacts" (borrowed), or NULL for other stores. */
static const char *proxy_path(const char *artifact_uri)
{
    static const char scheme[] = "mlflow-artifacts:";
    if (!artifact_uri || strncmp(artifact_uri, scheme, sizeof scheme - 1) != 0)
        return NULL;
    const char *p = artifact_uri + sizeof scheme - 1;
    if (strncmp(p, "//", 2) == 0) {
        p = strchr(p + 2, '/'); /* skip the authority */
        if (!p)
            return NULL;
    }
    while (*p == '/')
        p++;
    return p;
}

typedef struct artifact_walk {
    const char *run_id;
    const char *base;   /* proxy path, NULL: no download links */
    int entries;
} artifact_walk;

static void put_size(kiln_ui_buf *b, int64_t size)
{
    if (size < 1024)
        kiln_ui_putf(b, "%" PRId64 " B", size);
    else if (size < 1024 * 1024)
        kiln_ui_putf(b, "%.1f KiB", (double)size / 1024.0);
    else
        kiln_ui_putf(b, "%.1f MiB", (double)size / (1024.0 * 1024.0));
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static void artifact_dir(kiln_ui_ctx *c, artifact_walk *w, const char *path, int depth)
{
    kiln_ui_buf *b = &c->buf;
    cJSON *resp = kiln_ui_call(c, "GET", "/api/2.0/mlflow/artifacts/list",
                               kiln_ui_get_req(c, "run_id", w->run_id, "path", path, NULL));
    if (!resp)
        return;
    kiln_ui_put(b, "<ul class=\"tree\">");
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(resp, "files")) {
        const char *fpath = kiln_ui_str(f, "path");
        if (!fpath || c->failed)
            continue;
        if (++w->entries > ARTIFACT_MAX_ENTRIES) {
            kiln_ui_put(b, "<li class=\"muted\">… more artifacts not shown</li>");
            break;
        }
        int is_dir = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f, "is_dir"));
        int64_t size = 0;
        int has_size = kiln_ui_i64(f, "file_size", &size);
        kiln_ui_put(b, is_dir ? "<li class=\"dir\">" : "<li class=\"file\">");
        if (!is_dir && w->base) {
            kiln_ui_put_href(b, "/api/2.0/mlflow-artifacts/artifacts/");
            kiln_ui_url(b, w->base, 1);
            kiln_ui_put(b, "/");
            kiln_ui_url(b, fpath, 1);
            kiln_ui_put(b, "\" download>");
            kiln_ui_esc(b, base_name(fpath));
            kiln_ui_put(b, "</a>");
        } else {
            kiln_ui_esc(b, base_name(fpath));
            if (is_dir)
                kiln_ui_put(b, "/");
        }
        if (!is_dir && has_size) {
            kiln_ui_put(b, " <span class=\"muted\">");
            put_size(b, size);
            kiln_ui_put(b, "</span>");
        }
        if (is_dir && depth < ARTIFACT_MAX_DEPTH)
            artifact_dir(c, w, fpath, depth + 1);
        kiln_ui_put(b, "</li>");
    }
    kiln_ui_put(b, "</ul>");
    cJSON_Delete(resp);
}

static void artifacts_section(kiln_ui_ctx *c, const char *run_id, const char *artifact_uri)
{
    kiln_ui_buf *b = &c->buf;
    artifact_walk w = {.run_id = run_id, .base = proxy_path(artifact_uri)};
    kiln_ui_put(b, "<section class=\"artifacts card\"><h2>Artifacts</h2>");
    size_t before = b->len;
    artifact_dir(c, &w, NULL, 0);
    if (c->failed)
        return;
    if (w.entries == 0) {
        b->len = before; /* drop the empty list */
        if (b->data)
            b->data[b->len] = '\0';
        kiln_ui_put(b, "<p class=\"muted\">No artifacts.</p>");
    }
    if (!w.base && w.entries > 0)
        kiln_ui_put(b, "<p class=\"muted\">These artifacts are not served by this server; "
                       "fetch them from the artifact URI above.</p>");
    kiln_ui_put(b, "</section>\n");
}

void kiln_ui_page_run(kiln_ui_ctx *c, const char *run_id)
{
    kiln_ui_buf *b = &c->buf;
    cJSON *resp = kiln_ui_call(c, "GET", "/api/2.0/mlflow/runs/get",
                               kiln_ui_get_req(c, "run_id", run_id, NULL));
    if (!resp)
        return;
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(resp, "run");
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(run, "info");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(run, "data");
    if (!cJSON_IsObject(info)) {
        kiln_ui_error(c, 502, "Error", "runs/get answered without the run's info for %s",
                      run_id);
        cJSON_Delete(resp);
        return;
    }
    const char *exp_id = kiln_ui_str(info, "experiment_id");
    cJSON *exp = exp_id ? call_optional(c, "GET", "/api/2.0/mlflow/experiments/get",
                                        kiln_ui_get_req(c, "experiment_id", exp_id, NULL))
                        : NULL;
    const char *exp_name = kiln_ui_str(cJSON_GetObjectItemCaseSensitive(exp, "experiment"),
                                       "name");
    const char *name = kiln_ui_str(info, "run_name");
    if (!name || !*name)
        name = run_id;

    kiln_ui_page_begin(b, name);
    kiln_ui_put(b, "<div class=\"crumbs\">");
    kiln_ui_put_href(b, "/");
    kiln_ui_put(b, "\">Experiments</a> / ");
    kiln_ui_put_link(b, "/experiments/", exp_id, exp_name ? exp_name : exp_id);
    kiln_ui_put(b, " /</div><h1>");
    kiln_ui_esc(b, name);
    kiln_ui_put(b, "</h1>\n<div class=\"grid top\"><section><h2>Run</h2>");
    run_info(c, info, exp_name);
    kiln_ui_put(b, "</section>");
    kv_table(c, "Params", "params", cJSON_GetObjectItemCaseSensitive(data, "params"));
    kv_table(c, "Tags", "tags", cJSON_GetObjectItemCaseSensitive(data, "tags"));
    kiln_ui_put(b, "</div>\n");
    metric_charts(c, run_id, cJSON_GetObjectItemCaseSensitive(data, "metrics"));
    if (!c->failed)
        artifacts_section(c, run_id, kiln_ui_str(info, "artifact_uri"));
    if (!c->failed)
        kiln_ui_page_end(b);
    cJSON_Delete(exp);
    cJSON_Delete(resp);
}
