/* lib/tracking/ui_models.c — the model registry pages: registered models
 * (`/models`) and one model's versions with stages and aliases
 * (`/models/<name>`). */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/ui_internal.h"

#define MODELS_PAGE "1000"
#define MODEL_PAGES_MAX 50
#define VERSIONS_PAGE "1000"

static void put_stage(kiln_ui_buf *b, const char *stage)
{
    kiln_ui_put_badge(b, "stage-", stage, stage && *stage ? stage : "None");
}

static void put_alias(kiln_ui_buf *b, const char *alias, const char *version)
{
    kiln_ui_put(b, "<span class=\"badge alias\">@");
    kiln_ui_esc(b, alias);
    if (version) {
        kiln_ui_put(b, " → v");
        kiln_ui_esc(b, version);
    }
    kiln_ui_put(b, "</span>");
}

static void model_row(kiln_ui_buf *b, const cJSON *m)
{
    const char *name = kiln_ui_str(m, "name");
    int64_t updated = 0;
    kiln_ui_i64(m, "last_updated_timestamp", &updated);
    kiln_ui_put(b, "<tr><td>");
    kiln_ui_put_link(b, "/models/", name, name);
    kiln_ui_put(b, "</td><td>");
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(m, "latest_versions")) {
        kiln_ui_put(b, "<span class=\"badge\">v");
        kiln_ui_esc(b, kiln_ui_str(v, "version"));
        kiln_ui_put(b, "</span>");
        put_stage(b, kiln_ui_str(v, "current_stage"));
        kiln_ui_put(b, " ");
    }
    kiln_ui_put(b, "</td><td>");
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(m, "aliases"))
        put_alias(b, kiln_ui_str(a, "alias"), kiln_ui_str(a, "version"));
    kiln_ui_put(b, "</td><td>");
    kiln_ui_put_time(b, updated);
    kiln_ui_put(b, "</td><td>");
    kiln_ui_esc(b, kiln_ui_str(m, "description"));
    kiln_ui_put(b, "</td></tr>\n");
}

void kiln_ui_page_models(kiln_ui_ctx *c)
{
    kiln_ui_buf *b = &c->buf;
    cJSON *models = kiln_ui_call_pages(c, "GET", "/api/2.0/mlflow/registered-models/search",
                                       kiln_ui_get_req(c, "max_results", MODELS_PAGE, NULL),
                                       "registered_models", MODEL_PAGES_MAX, INT_MAX);
    if (!models)
        return;
    kiln_ui_page_begin(b, "Registered models");
    kiln_ui_put(b, "<h1>Registered models</h1>\n<div class=\"scroll\"><table class=\"models\">"
                   "<thead><tr><th>Name</th><th>Latest versions</th><th>Aliases</th>"
                   "<th>Last update (UTC)</th><th>Description</th></tr></thead><tbody>\n");
    const cJSON *m;
    cJSON_ArrayForEach(m, models)
        model_row(b, m);
    kiln_ui_put(b, "</tbody></table></div>\n");
    if (cJSON_GetArraySize(models) == 0)
        kiln_ui_put(b, "<p class=\"muted\">No registered models yet.</p>");
    kiln_ui_page_end(b);
    cJSON_Delete(models);
}

/* ---- one model ---- */

static long version_number(const cJSON *v)
{
    int64_t n = 0;
    return kiln_ui_i64(v, "version", &n) ? (long)n : 0;
}

static int cmp_version_desc(const void *pa, const void *pb)
{
    long a = version_number(*(const cJSON *const *)pa);
    long b = version_number(*(const cJSON *const *)pb);
    return a < b ? 1 : a > b ? -1 : 0;
}

/* A model version's aliases: those the registered model maps to it, then
 * any the version lists itself that the model did not. */
static void version_aliases(kiln_ui_buf *b, const cJSON *model, const cJSON *v)
{
    const char *version = kiln_ui_str(v, "version");
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(model, "aliases")) {
        const char *av = kiln_ui_str(a, "version");
        if (version && av && strcmp(av, version) == 0)
            put_alias(b, kiln_ui_str(a, "alias"), NULL);
    }
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(v, "aliases")) {
        if (!cJSON_IsString(a))
            continue;
        int known = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(model, "aliases")) {
            const char *name = kiln_ui_str(m, "alias"), *av = kiln_ui_str(m, "version");
            known |= name && av && version && !strcmp(name, a->valuestring) &&
                     !strcmp(av, version);
        }
        if (!known)
            put_alias(b, a->valuestring, NULL);
    }
}

static void version_row(kiln_ui_buf *b, const cJSON *model, const cJSON *v)
{
    const char *run_id = kiln_ui_str(v, "run_id");
    const char *status = kiln_ui_str(v, "status");
    int64_t created = 0;
    kiln_ui_i64(v, "creation_timestamp", &created);
    kiln_ui_put(b, "<tr><td><b>");
    kiln_ui_esc(b, kiln_ui_str(v, "version"));
    kiln_ui_put(b, "</b></td><td>");
    put_stage(b, kiln_ui_str(v, "current_stage"));
    kiln_ui_put(b, "</td><td>");
    version_aliases(b, model, v);
    kiln_ui_put(b, "</td><td>");
    kiln_ui_put_badge(b, "st-", status, status);
    kiln_ui_put(b, "</td><td class=\"mono\">");
    kiln_ui_esc(b, kiln_ui_str(v, "source"));
    kiln_ui_put(b, "</td><td class=\"mono\">");
    if (run_id && *run_id)
        kiln_ui_put_link(b, "/runs/", run_id, run_id);
    kiln_ui_put(b, "</td><td>");
    kiln_ui_put_time(b, created);
    kiln_ui_put(b, "</td><td>");
    kiln_ui_esc(b, kiln_ui_str(v, "description"));
    kiln_ui_put(b, "</td></tr>\n");
}

/* MLflow's filter for one model: name='...' (or "..." when the name
 * holds a single quote). NULL when out of memory. */
static char *name_filter(const char *name)
{
    char quote = strchr(name, '\'') ? '"' : '\'';
    size_t len = strlen(name) + 10;
    char *f = malloc(len);
    if (f)
        snprintf(f, len, "name=%c%s%c", quote, name, quote);
    return f;
}

/* Every version of the model (the search's pages merged; caller frees). */
static cJSON *fetch_versions(kiln_ui_ctx *c, const char *name)
{
    char *filter = name_filter(name);
    if (!filter) {
        c->buf.oom = 1;
        return NULL;
    }
    cJSON *all = kiln_ui_call_pages(c, "GET", "/api/2.0/mlflow/model-versions/search",
                                    kiln_ui_get_req(c, "filter", filter, "max_results",
                                                    VERSIONS_PAGE, NULL),
                                    "model_versions", MODEL_PAGES_MAX, INT_MAX);
    free(filter);
    return all;
}

static void model_header(kiln_ui_buf *b, const cJSON *m)
{
    int64_t created = 0, updated = 0;
    kiln_ui_i64(m, "creation_timestamp", &created);
    kiln_ui_i64(m, "last_updated_timestamp", &updated);
    kiln_ui_put(b, "<div class=\"crumbs\">");
    kiln_ui_put_href(b, "/models");
    kiln_ui_put(b, "\">Models</a> /</div><h1>");
    kiln_ui_esc(b, kiln_ui_str(m, "name"));
    kiln_ui_put(b, "</h1><table class=\"kv\"><tr><th>Created (UTC)</th><td>");
    kiln_ui_put_time(b, created);
    kiln_ui_put(b, "</td></tr><tr><th>Last update (UTC)</th><td>");
    kiln_ui_put_time(b, updated);
    kiln_ui_put(b, "</td></tr><tr><th>Aliases</th><td>");
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(m, "aliases"))
        put_alias(b, kiln_ui_str(a, "alias"), kiln_ui_str(a, "version"));
    kiln_ui_put(b, "</td></tr><tr><th>Description</th><td>");
    kiln_ui_esc(b, kiln_ui_str(m, "description"));
    kiln_ui_put(b, "</td></tr>");
    kiln_ui_put_tag_rows(b, cJSON_GetObjectItemCaseSensitive(m, "tags"));
    kiln_ui_put(b, "</table>\n");
}

void kiln_ui_page_model(kiln_ui_ctx *c, const char *name)
{
    kiln_ui_buf *b = &c->buf;
    cJSON *resp = kiln_ui_call(c, "GET", "/api/2.0/mlflow/registered-models/get",
                               kiln_ui_get_req(c, "name", name, NULL));
    if (!resp)
        return;
    cJSON *versions = fetch_versions(c, name);
    if (!versions) {
        cJSON_Delete(resp);
        return;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(resp, "registered_model");
    size_t n = (size_t)cJSON_GetArraySize(versions);
    const cJSON **sorted = n ? malloc(n * sizeof *sorted) : NULL;
    if (n && !sorted)
        b->oom = 1;
    size_t k = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, versions)
        if (sorted)
            sorted[k++] = v;
    if (sorted)
        qsort(sorted, k, sizeof *sorted, cmp_version_desc);

    kiln_ui_page_begin(b, name);
    model_header(b, model);
    kiln_ui_putf(b, "<h2>Versions (%zu)</h2>\n", k);
    if (k == 0) {
        kiln_ui_put(b, "<p class=\"muted\">No versions.</p>");
    } else {
        kiln_ui_put(b, "<div class=\"scroll\"><table class=\"versions\"><thead><tr>"
                       "<th>Version</th><th>Stage</th><th>Aliases</th><th>Status</th>"
                       "<th>Source</th><th>Run</th><th>Created (UTC)</th><th>Description</th>"
                       "</tr></thead><tbody>\n");
        for (size_t i = 0; i < k; i++)
            version_row(b, model, sorted[i]);
        kiln_ui_put(b, "</tbody></table></div>\n");
    }
    kiln_ui_page_end(b);
    free(sorted);
    cJSON_Delete(versions);
    cJSON_Delete(resp);
}
