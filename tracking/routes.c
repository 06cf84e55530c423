/* tracking/routes.c — kiln-tracking's HTTP surface: health, version, the
 * MLflow REST API, the artifact proxy, and the web UI for everything else.
 * Handlers only move bytes; lib/tracking does the work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app.h"
#include "tracking/ui.h"

#define API_PREFIX "/api/2.0/mlflow/"
#define AJAX_PREFIX "/ajax-api/2.0/mlflow/"
#define ARTIFACTS "/api/2.0/mlflow-artifacts/artifacts"
#define AJAX_ARTIFACTS "/ajax-api/2.0/mlflow-artifacts/artifacts"

static void on_health(kiln_http_request *req, void *ctx)
{
    (void)ctx;
    kiln_http_reply_data(req, 200, "text/plain", "OK", 2, NULL);
}

static void on_version(kiln_http_request *req, void *ctx)
{
    (void)ctx;
    kiln_http_reply_data(req, 200, "text/plain", KILN_VERSION, strlen(KILN_VERSION), NULL);
}

static int is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

/* A JSON body when there is one, else the query parameters (GET). */
static void on_api(kiln_http_request *req, void *ctx)
{
    tracking_app *app = ctx;
    const char *method = kiln_http_request_method(req);
    const char *path = kiln_http_request_path(req);
    size_t len = 0;
    const char *body = kiln_http_request_body(req, &len);
    cJSON *parsed = NULL;
    const cJSON *request;
    if (!is_blank(body, len)) {
        parsed = cJSON_ParseWithLength(body, len);
        if (!parsed || !cJSON_IsObject(parsed)) {
            const char *near = parsed ? NULL : cJSON_GetErrorPtr();
            kiln_http_reply_error(req, 400, "MALFORMED_REQUEST",
                                  "%s %s: the request body is not a JSON object%s%.40s%s",
                                  method, path, near ? " (near '" : "", near ? near : "",
                                  near ? "')" : "");
            cJSON_Delete(parsed);
            return;
        }
        request = parsed;
    } else {
        request = kiln_http_request_query(req);
        if (!request) {
            kiln_http_reply_error(req, 500, "INTERNAL_ERROR", "out of memory");
            return;
        }
    }
    int status = 500;
    cJSON *resp = kiln_tracking_api(app->store, method, path, request, &status);
    cJSON_Delete(parsed);
    kiln_http_reply_json(req, status, resp, NULL);
}

/* ---- the artifact proxy ---- */

static const char *content_type_for(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".json", "application/json"}, {".txt", "text/plain"},  {".log", "text/plain"},
        {".yaml", "text/plain"},       {".yml", "text/plain"},  {".md", "text/plain"},
        {".csv", "text/plain"},        {"MLmodel", "text/plain"}, {".png", "image/png"},
        {".jpg", "image/jpeg"},        {".jpeg", "image/jpeg"}, {".gif", "image/gif"},
        /* Never text/html: an artifact must not run script on the UI's origin. */
        {".html", "text/plain"},       {".svg", "text/plain"},
    };
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t k = strlen(types[i].ext);
        if (n >= k && strcasecmp(path + n - k, types[i].ext) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

static int upload_begin(kiln_http_request *req, void *ctx, void **state)
{
    tracking_app *app = ctx;
    kiln_err err = {0};
    const char *rel = kiln_http_request_path_rest(req);
    kiln_artifact_upload *u = kiln_tracking_artifact_begin(app->store, rel, &err);
    if (!u) {
        kiln_http_reply_err(req, &err);
        return err.code ? (int)err.code : KILN_EIO;
    }
    *state = u;
    return KILN_OK;
}

static int upload_write(void *state, const void *data, size_t len, kiln_err *err)
{
    return kiln_tracking_artifact_write(state, data, len, err);
}

static void upload_end(kiln_http_request *req, void *ctx, void *state)
{
    (void)ctx;
    kiln_err err = {0};
    if (kiln_tracking_artifact_commit(state, &err) != KILN_OK) {
        kiln_http_reply_err(req, &err);
        return;
    }
    kiln_http_reply_json(req, 200, cJSON_CreateObject(), NULL);
}

static void upload_abort(void *ctx, void *state)
{
    (void)ctx;
    kiln_tracking_artifact_abort(state);
}

static const kiln_http_stream upload_stream = {upload_begin, upload_write, upload_end,
                                               upload_abort};

static void on_artifact_get(kiln_http_request *req, void *ctx)
{
    tracking_app *app = ctx;
    kiln_err err = {0};
    const char *rel = kiln_http_request_path_rest(req);
    char *file = kiln_tracking_artifact_file(app->store, rel, &err);
    if (!file) {
        kiln_http_reply_err(req, &err);
        return;
    }
    kiln_http_reply_header(req, "X-Content-Type-Options", "nosniff", NULL);
    kiln_http_reply_file(req, 200, content_type_for(rel), file, NULL);
    free(file);
}

static void on_artifact_delete(kiln_http_request *req, void *ctx)
{
    tracking_app *app = ctx;
    kiln_err err = {0};
    if (kiln_tracking_artifact_delete(app->store, kiln_http_request_path_rest(req), &err) !=
        KILN_OK) {
        kiln_http_reply_err(req, &err);
        return;
    }
    kiln_http_reply_json(req, 200, cJSON_CreateObject(), NULL);
}

/* ---- the web UI ---- */

static void on_ui(kiln_http_request *req, void *ctx)
{
    tracking_app *app = ctx;
    kiln_err err = {0};
    kiln_ui_page page = {0};
    if (kiln_tracking_ui_render_at(app->static_prefix, kiln_http_request_path(req),
                                   kiln_http_request_query_string(req), kiln_tracking_api,
                                   app->store, &page, &err) != KILN_OK) {
        free(page.body);
        kiln_http_reply_error(req, 500, "INTERNAL_ERROR", "%s", err.msg);
        return;
    }
    kiln_http_reply_buffer(req, page.status, page.content_type, page.body, page.len, NULL);
}

int tracking_add_routes(kiln_http_server *server, tracking_app *app, kiln_err *err)
{
    const kiln_http_route routes[] = {
        {.method = "GET", .path = "/health", .handler = on_health},
        {.method = "GET", .path = "/version", .handler = on_version},
        {.method = NULL, .path = API_PREFIX, .prefix = 1, .handler = on_api},
        {.method = NULL, .path = AJAX_PREFIX, .prefix = 1, .handler = on_api},
        {.method = "GET", .path = ARTIFACTS, .handler = on_api},
        {.method = "GET", .path = AJAX_ARTIFACTS, .handler = on_api},
        {.method = "PUT", .path = ARTIFACTS "/", .prefix = 1, .stream = &upload_stream},
        {.method = "GET", .path = ARTIFACTS "/", .prefix = 1, .handler = on_artifact_get},
        {.method = "DELETE", .path = ARTIFACTS "/", .prefix = 1, .handler = on_artifact_delete},
        {.method = "PUT", .path = AJAX_ARTIFACTS "/", .prefix = 1, .stream = &upload_stream},
        {.method = "GET", .path = AJAX_ARTIFACTS "/", .prefix = 1,
         .handler = on_artifact_get},
        {.method = "DELETE", .path = AJAX_ARTIFACTS "/", .prefix = 1,
         .handler = on_artifact_delete},
        {.method = "GET", .path = "/", .prefix = 1, .handler = on_ui},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        kiln_http_route r = routes[i];
        r.ctx = app;
        int rc = kiln_http_server_add_route(server, &r, err);
        if (rc != KILN_OK)
            return rc;
    }
    return KILN_OK;
}
