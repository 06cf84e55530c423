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
    kiln_ui_put(&c->buf, "</p></div><p><a href=\"/\">Back to the experiments</a></p>");
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

static void route(kiln_ui_ctx *c, const char *path)
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
    } else if (!c->buf.oom) {
        kiln_ui_error(c, 404, "Not found", "There is no page at %s.", path);
    }
    free(arg);
}

int kiln_tracking_ui_render(const char *path, const char *query, kiln_tracking_api_fn api,
                            void *api_ctx, kiln_ui_page *page, kiln_err *err)
{
    memset(page, 0, sizeof *page);
    if (!path || !api)
        return kiln_err_set(err, KILN_EINVAL, "UI render: a path and an API function are needed");
    kiln_ui_ctx c = {.api = api, .api_ctx = api_ctx, .query = query, .status = 200};
    route(&c, path);
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
