/* lib/tracking/ui.h — kiln-tracking's web UI: server-rendered HTML + SVG.
 *
 * The UI reads everything through the same REST API the clients use,
 * called in-process through `api` (so pages show exactly what the API
 * serves, and the UI never touches the store). Pages: experiments list
 * (`/`), an experiment's runs table (`/experiments/<id>`), a run page with
 * one SVG curve per metric and the run's artifacts (`/runs/<run_id>`),
 * registered models (`/models`) and a model's versions with stages and
 * aliases (`/models/<name>`). The renderer escapes every value it prints.
 * Behind a path prefix (a gateway's /mlflow/), kiln_tracking_ui_render_at
 * writes every link with that prefix.
 */
#ifndef KILN_TRACKING_UI_H
#define KILN_TRACKING_UI_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/err.h"

/* One REST API call made in-process. `method` is "GET" / "POST" / ...,
 * `path` the API path (e.g. "/api/2.0/mlflow/runs/search"), `request` the
 * request's fields as a JSON object (the body, or the query parameters of a
 * GET; borrowed, may be NULL). Returns the response JSON (caller frees with
 * cJSON_Delete) and sets *http_status; on failure the JSON is MLflow's
 * error object {"error_code", "message"}. NULL only when out of memory. */
typedef cJSON *(*kiln_tracking_api_fn)(void *api_ctx, const char *method, const char *path,
                                       const cJSON *request, int *http_status);

typedef struct kiln_ui_page {
    int status;               /* 200, 404 ... */
    const char *content_type; /* static string */
    char *body;               /* malloc'ed; the caller frees */
    size_t len;
} kiln_ui_page;

/* Render the page for `path` (no query string) with `query` (the raw query
 * string without '?', may be NULL). Unknown paths give a 404 page, not an
 * error. Returns KILN_OK or a code (out of memory) with `err` set. */
int kiln_tracking_ui_render(const char *path, const char *query, kiln_tracking_api_fn api,
                            void *api_ctx, kiln_ui_page *page, kiln_err *err);

/* The same for a UI reached under `static_prefix` (e.g. "/mlflow", behind
 * a gateway that routes /mlflow/... here; NULL or "": at /, exactly as
 * kiln_tracking_ui_render). Every link the pages write starts with the
 * prefix; `path` may come with it (a gateway that does not rewrite) or
 * without it (one that rewrites the prefix to /): a leading prefix that
 * ends at a '/' or at the end of `path` is dropped before routing. The
 * prefix is not checked here: pass one kiln_tracking_ui_prefix_check
 * accepted. */
int kiln_tracking_ui_render_at(const char *static_prefix, const char *path, const char *query,
                               kiln_tracking_api_fn api, void *api_ctx, kiln_ui_page *page,
                               kiln_err *err);

/* KILN_OK when `prefix` can be a static prefix: "" (none), or '/' then
 * segments of A-Z a-z 0-9 - . _ ~ separated by single '/', no trailing
 * '/', no "." or ".." segment, at most 200 characters, and a first segment
 * that is none of the server's own (api, ajax-api, experiments, runs,
 * models, health, version: those paths would be taken for prefixed ones).
 * Otherwise KILN_EINVAL, with `err` naming `name` (e.g. "--static-prefix"),
 * the value and what is wrong. */
int kiln_tracking_ui_prefix_check(const char *name, const char *prefix, kiln_err *err);

#endif
