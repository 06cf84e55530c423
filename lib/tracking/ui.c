/* lib/tracking/ui.c — the UI's router, its API calls and its error pages. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tracking/ui_internal.h"

static const char HTML_TYPE[] = "text/html; charset=utf-8";

void kiln_ui_error(kiln_ui_ctx *c, int status, const char *title, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    c->buf.len = 0; /* the error page replaces whatever was rendered */
    if (c->buf.data)
        c->buf.data[0] = '\0';
    c->status = status;
    c->failed = 1;
    if (n < 0) {
        c->buf.oom = 1;
        return;
    }
    kiln_ui_page_begin(&c->buf, title);
    kiln_ui_put(&c->buf, "<h1>");
    kiln_ui_esc(&c->buf, title);
    kiln_ui_putf(&c->buf, "</h1><div class=\"err\"><p><b>HTTP %d</b></p><p>", status);
    kiln_ui_esc(&c->buf, msg);
    kiln_ui_put(&c->buf, "</p></div><p>");
    kiln_ui_put_href(&c->buf, "/");
    kiln_ui_put(&c->buf, "\">Back to the experiments</a></p>");
    kiln_ui_page_end(&c->buf);
    free(msg);
}

cJSON *kiln_ui_call(kiln_ui_ctx *c, const char *method, const char *path, cJSON *request)
{
    if (c->buf.oom) {
        cJSON_Delete(request);
        c->failed = 1;
        return NULL;
    }
    int status = 0;
    cJSON *resp = c->api(c->api_ctx, method, path, request, &status);
    cJSON_Delete(request);
    if (!resp) {
        c->buf.oom = 1;
        c->failed = 1;
        return NULL;
    }
    if (status == 200)
        return resp;
    const char *code = kiln_ui_str(resp, "error_code");
    const char *message = kiln_ui_str(resp, "message");
    if (status < 400 || status > 599)
        status = 502; /* a success we cannot use is the server's fault */
    kiln_ui_error(c, status, "Error", "%s %s answered %s: %s", method, path,
                  code ? code : "an error", message ? message : "(no message)");
    cJSON_Delete(resp);
    return NULL;
}

cJSON *kiln_ui_call_pages(kiln_ui_ctx *c, const char *method, const char *path, cJSON *request,
                          const char *list, int max_pages, int max_items)
{
    cJSON *all = cJSON_CreateArray();
    char *token = NULL;
    if (!all)
        c->buf.oom = 1;
    for (int page = 0; all && page < max_pages; page++) {
        cJSON *req = cJSON_Duplicate(request, 1);
        if (!req)
            c->buf.oom = 1;
        if (token)
            kiln_ui_add_str(c, req, "page_token", token);
        free(token);
        token = NULL;
        cJSON *resp = kiln_ui_call(c, method, path, req);
        if (!resp) {
            cJSON_Delete(all);
            all = NULL;
            break;
        }
        cJSON *items = cJSON_GetObjectItemCaseSensitive(resp, list);
        while (items && items->child)
            cJSON_AddItemToArray(all, cJSON_DetachItemViaPointer(items, items->child));
        const char *next = kiln_ui_str(resp, "next_page_token");
        if (next && *next && cJSON_GetArraySize(all) < max_items && !(token = strdup(next)))
            c->buf.oom = 1;
        cJSON_Delete(resp);
        if (!token)
            break;
    }
    free(token);
    cJSON_Delete(request);
    return all;
}

void kiln_ui_add_str(kiln_ui_ctx *c, cJSON *obj, const char *key, const char *value)
{
    if (!obj || !cJSON_AddStringToObject(obj, key, value))
        c->buf.oom = 1;
}

void kiln_ui_add_num(kiln_ui_ctx *c, cJSON *obj, const char *key, double value)
{
    if (!obj || !cJSON_AddNumberToObject(obj, key, value))
        c->buf.oom = 1;
}

void kiln_ui_add_str_list(kiln_ui_ctx *c, cJSON *obj, const char *key, const char *value)
{
    cJSON *arr = obj ? cJSON_AddArrayToObject(obj, key) : NULL;
    cJSON *item = arr ? cJSON_CreateString(value) : NULL;
    if (!item || !cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        c->buf.oom = 1;
    }
}

cJSON *kiln_ui_get_req(kiln_ui_ctx *c, ...)
{
    cJSON *req = cJSON_CreateObject();
    if (!req)
        c->buf.oom = 1;
    va_list ap;
    va_start(ap, c);
    const char *key;
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        if (value)
            kiln_ui_add_str(c, req, key, value);
    }
    va_end(ap);
    return req;
}

/* `path` after `prefix`, one trailing '/' dropped, as a malloc'ed string;
 * NULL when `path` does not start with `prefix` or the rest is empty. */
static char *tail_after(const char *path, const char *prefix, int *oom)
{
    size_t plen = strlen(prefix);
    if (strncmp(path, prefix, plen) != 0)
        return NULL;
    const char *rest = path + plen;
    size_t len = strlen(rest);
    if (len > 0 && rest[len - 1] == '/')
        len--;
    if (len == 0)
        return NULL;
    char *out = strndup(rest, len);
    if (!out)
        *oom = 1;
    return out;
}

static int is_path(const char *path, const char *a)
{
    size_t n = strlen(a);
    return strncmp(path, a, n) == 0 && (path[n] == '\0' || (path[n] == '/' && !path[n + 1]));
}

/* A prefixed request for an API path: a hint, since only the UI strips. */
static int is_api_path(const char *path)
{
    return strncmp(path, "/api/", 5) == 0 || strncmp(path, "/ajax-api/", 10) == 0;
}

/* `path` is routed, `shown` (the path as requested) goes into messages. */
static void route(kiln_ui_ctx *c, const char *path, const char *shown)
{
    char *arg = NULL;
    if (!*path || strcmp(path, "/") == 0 || is_path(path, "/experiments")) {
        kiln_ui_page_experiments(c);
    } else if (is_path(path, "/models")) {
        kiln_ui_page_models(c);
    } else if ((arg = tail_after(path, "/experiments/", &c->buf.oom)) && !strchr(arg, '/')) {
        kiln_ui_page_experiment(c, arg);
    } else if (!arg && (arg = tail_after(path, "/runs/", &c->buf.oom)) && !strchr(arg, '/')) {
        kiln_ui_page_run(c, arg);
    } else if (!arg && (arg = tail_after(path, "/models/", &c->buf.oom))) {
        kiln_ui_page_model(c, arg); /* a model's name may hold '/' */
    } else if (!c->buf.oom && path != shown && is_api_path(path)) {
        kiln_ui_error(c, 404, "Not found",
                      "There is no page at %s: the REST API and the artifact proxy answer "
                      "only without the static prefix (%s); route %s/ here with the prefix "
                      "rewritten to /.", shown, path, c->buf.link_root);
    } else if (!c->buf.oom) {
        kiln_ui_error(c, 404, "Not found", "There is no page at %s.", shown);
    }
    free(arg);
}

/* `path` without a leading `prefix` that ends at a '/' or at the end of
 * `path`; `path` itself when it does not start so. */
static const char *strip_prefix(const char *path, const char *prefix)
{
    size_t n = prefix ? strlen(prefix) : 0;
    if (n == 0 || strncmp(path, prefix, n) != 0 || (path[n] != '\0' && path[n] != '/'))
        return path;
    return path + n;
}

int kiln_tracking_ui_render_at(const char *static_prefix, const char *path, const char *query,
                               kiln_tracking_api_fn api, void *api_ctx, kiln_ui_page *page,
                               kiln_err *err)
{
    memset(page, 0, sizeof *page);
    if (!path || !api)
        return kiln_err_set(err, KILN_EINVAL, "UI render: a path and an API function are needed");
    kiln_ui_ctx c = {.api = api, .api_ctx = api_ctx, .query = query, .status = 200};
    c.buf.link_root = static_prefix;
    route(&c, strip_prefix(path, static_prefix), path);
    if (c.buf.oom || !c.buf.data) {
        kiln_ui_buf_free(&c.buf);
        return kiln_err_set(err, KILN_ENOMEM, "out of memory rendering the page %s", path);
    }
    page->status = c.status;
    page->content_type = HTML_TYPE;
    page->body = c.buf.data;
    page->len = c.buf.len;
    return KILN_OK;
}

int kiln_tracking_ui_render(const char *path, const char *query, kiln_tracking_api_fn api,
                            void *api_ctx, kiln_ui_page *page, kiln_err *err)
{
    return kiln_tracking_ui_render_at(NULL, path, query, api, api_ctx, page, err);
}

#define PREFIX_MAX 200

static int prefix_char_ok(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '/';
}

/* The first wrong segment of `prefix` (which starts with '/'), as a
 * static reason; NULL when every segment is fine. */
static const char *prefix_segment_problem(const char *prefix)
{
    /* Paths kiln-tracking serves itself: as a prefix they would be stripped
     * from requests meant for those very routes. */
    static const char *const own[] = {"api",  "ajax-api", "experiments", "runs",
                                      "models", "health", "version"};
    int first = 1;
    for (const char *seg = prefix + 1;; first = 0) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0)
            return "it has an empty segment ('//')";
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return "it has a '.' or '..' segment";
        for (size_t i = 0; first && i < sizeof own / sizeof *own; i++)
            if (strlen(own[i]) == n && strncmp(seg, own[i], n) == 0)
                return "its first segment is one of kiln-tracking's own paths (api, ajax-api, "
                       "experiments, runs, models, health, version)";
        if (!end)
            return NULL;
        seg = end + 1;
    }
}

int kiln_tracking_ui_prefix_check(const char *name, const char *prefix, kiln_err *err)
{
    if (!prefix || !*prefix)
        return KILN_OK;
    size_t len = strlen(prefix);
    if (prefix[0] != '/')
        return kiln_err_set(err, KILN_EINVAL, "%s '%s' must start with '/' (e.g. /mlflow)", name,
                            prefix);
    if (len == 1)
        return kiln_err_set(err, KILN_EINVAL,
                            "%s '/' is no prefix: leave %s out to serve the UI at /", name, name);
    if (prefix[len - 1] == '/')
        return kiln_err_set(err, KILN_EINVAL, "%s '%s' must not end with '/' (e.g. /mlflow)",
                            name, prefix);
    if (len > PREFIX_MAX)
        return kiln_err_set(err, KILN_EINVAL, "%s is longer than %d characters", name,
                            PREFIX_MAX);
    for (const unsigned char *p = (const unsigned char *)prefix; *p; p++) {
        if (prefix_char_ok(*p))
            continue;
        if (*p >= ' ' && *p < 0x7f)
            return kiln_err_set(err, KILN_EINVAL,
                                "%s '%s': '%c' is not allowed (letters, digits, - . _ ~ and / "
                                "only)", name, prefix, *p);
        size_t at = (size_t)(p - (const unsigned char *)prefix);
        return kiln_err_set(err, KILN_EINVAL,
                            "%s: byte 0x%02x at offset %zu is not allowed (letters, digits, "
                            "- . _ ~ and / only)", name, *p, at);
    }
    const char *problem = prefix_segment_problem(prefix);
    if (problem)
        return kiln_err_set(err, KILN_EINVAL, "%s '%s': %s", name, prefix, problem);
    return KILN_OK;
}
