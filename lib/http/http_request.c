/* lib/http/http_request.c — a request's life: what handlers read from it,
 * and the replies they give. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http/http_internal.h"

kiln_http_request *http_request_new(kiln_http_server *s, const char *uri)
{
    kiln_http_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->server = s;
    r->uri = strdup(uri ? uri : "");
    if (!r->uri) {
        free(r);
        return NULL;
    }
    char *q = strchr(r->uri, '?');
    r->query_string = q ? q + 1 : "";
    r->t_start = http_now_s();
    atomic_fetch_add(&s->in_flight, 1);
    return r;
}

double http_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void http_request_free(kiln_http_request *r)
{
    if (!r)
        return;
    for (http_header *h = r->headers, *next; h; h = next) {
        next = h->next;
        free(h->name);
        free(h->value);
        free(h);
    }
    if (r->response)
        MHD_destroy_response(r->response);
    cJSON_Delete(r->query);
    free(r->body);
    free(r->uri);
    atomic_fetch_sub(&r->server->in_flight, 1);
    free(r);
}

/* ---- reading ---- */

const char *kiln_http_request_method(const kiln_http_request *req)
{
    return req->method;
}

const char *kiln_http_request_path(const kiln_http_request *req)
{
    return req->path;
}

const char *kiln_http_request_path_rest(const kiln_http_request *req)
{
    if (!req->route || !req->route->prefix)
        return "";
    return req->path + req->route->path_len;
}

const char *kiln_http_request_query_string(const kiln_http_request *req)
{
    return req->query_string;
}

static enum MHD_Result add_query_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    (void)kind;
    cJSON *obj = cls;
    cJSON *item = cJSON_CreateString(value ? value : "");
    if (!item)
        return MHD_NO;
    cJSON *old = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!old) {
        if (!cJSON_AddItemToObject(obj, key, item))
            goto fail;
        return MHD_YES;
    }
    if (cJSON_IsArray(old)) {
        if (!cJSON_AddItemToArray(old, item))
            goto fail;
        return MHD_YES;
    }
    /* Second value for the key: the string becomes an array. */
    cJSON *arr = cJSON_CreateArray();
    cJSON *first = cJSON_DetachItemViaPointer(obj, old);
    if (!arr || !cJSON_AddItemToArray(arr, first) || !cJSON_AddItemToArray(arr, item) ||
        !cJSON_AddItemToObject(obj, key, arr)) {
        cJSON_Delete(arr);
        return MHD_NO;
    }
    return MHD_YES;
fail:
    cJSON_Delete(item);
    return MHD_NO;
}

const cJSON *kiln_http_request_query(kiln_http_request *req)
{
    if (req->query)
        return req->query;
    cJSON *obj = cJSON_CreateObject();
    if (!obj)
        return NULL;
    int n = MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, add_query_value, obj);
    (void)n;
    req->query = obj;
    return obj;
}

const char *kiln_http_request_header(const kiln_http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *kiln_http_request_body(const kiln_http_request *req, size_t *len)
{
    if (len)
        *len = req->body ? req->len : 0;
    return req->body ? req->body : "";
}

/* ---- replying ---- */

int kiln_http_reply_header(kiln_http_request *req, const char *name, const char *value,
                           kiln_err *err)
{
    http_header *h = calloc(1, sizeof *h);
    if (h) {
        h->name = strdup(name);
        h->value = strdup(value);
    }
    if (!h || !h->name || !h->value) {
        if (h) {
            free(h->name);
            free(h->value);
        }
        free(h);
        return kiln_err_set(err, KILN_ENOMEM, "out of memory adding a reply header");
    }
    h->next = req->headers;
    req->headers = h;
    return KILN_OK;
}

/* Install `resp` as the reply; takes it. */
static int set_reply(kiln_http_request *r, int status, const char *content_type,
                     struct MHD_Response *resp, kiln_err *err)
{
    if (!resp)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory making an HTTP reply");
    if (r->response) {
        MHD_destroy_response(resp);
        return kiln_err_set(err, KILN_EINVAL, "%s %s was already replied to", r->method,
                            r->path);
    }
    if (content_type &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
        MHD_destroy_response(resp);
        return kiln_err_set(err, KILN_ENOMEM, "out of memory making an HTTP reply");
    }
    r->response = resp;
    r->status = status;
    return KILN_OK;
}

int kiln_http_reply_buffer(kiln_http_request *req, int status, const char *content_type,
                           char *data, size_t len, kiln_err *err)
{
    if (req->response) {
        free(data);
        return kiln_err_set(err, KILN_EINVAL, "%s %s was already replied to", req->method,
                            req->path);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(len, data, free);
    if (!resp)
        free(data);
    return set_reply(req, status, content_type ? content_type : "application/octet-stream",
                     resp, err);
}

int kiln_http_reply_data(kiln_http_request *req, int status, const char *content_type,
                         const void *data, size_t len, kiln_err *err)
{
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory copying a reply");
    if (len)
        memcpy(copy, data, len);
    return kiln_http_reply_buffer(req, status, content_type, copy, len, err);
}

int kiln_http_reply_json(kiln_http_request *req, int status, cJSON *body, kiln_err *err)
{
    if (!body) {
        http_reply_error_plain(req, 500, "INTERNAL_ERROR", "out of memory");
        return kiln_err_set(err, KILN_ENOMEM, "no JSON body to reply with");
    }
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!text) {
        http_reply_error_plain(req, 500, "INTERNAL_ERROR", "out of memory");
        return kiln_err_set(err, KILN_ENOMEM, "out of memory printing a JSON reply");
    }
    return kiln_http_reply_buffer(req, status, "application/json", text, strlen(text), err);
}

int kiln_http_reply_file(kiln_http_request *req, int status, const char *content_type,
                         const char *path, kiln_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return kiln_http_reply_error(req, 404, "RESOURCE_DOES_NOT_EXIST", "no file at %s",
                                         req->path);
        return kiln_http_reply_error(req, 500, "INTERNAL_ERROR", "cannot open %s: %s",
                                     req->path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kiln_http_reply_error(req, 400, "INVALID_PARAMETER_VALUE",
                                     "%s is not a regular file", req->path);
    }
    /* The response owns the descriptor from here, and closes it. */
    struct MHD_Response *resp = MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
    if (!resp)
        close(fd);
    return set_reply(req, status, content_type ? content_type : "application/octet-stream",
                     resp, err);
}

static cJSON *default_error_json(int status, const char *code, const char *message)
{
    (void)status;
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "error_code", code) ||
        !cJSON_AddStringToObject(o, "message", message)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

void http_reply_error_plain(kiln_http_request *r, int status, const char *code,
                            const char *message)
{
    static const char oom[] = "{\"error_code\":\"INTERNAL_ERROR\",\"message\":\"out of memory\"}";
    if (r->response)
        return;
    const kiln_http_options *o = &r->server->opts;
    cJSON *body = o->error_json ? o->error_json(status, code, message, o->error_ctx) : NULL;
    if (!body)
        body = default_error_json(status, code, message);
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (text && kiln_http_reply_buffer(r, status, "application/json", text, strlen(text),
                                       NULL) == KILN_OK)
        return;
    if (!r->response)
        set_reply(r, 500, "application/json",
                  MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom,
                                                  MHD_RESPMEM_PERSISTENT),
                  NULL);
}

int kiln_http_reply_error(kiln_http_request *req, int status, const char *code,
                          const char *fmt, ...)
{
    if (req->response)
        return KILN_EINVAL;
    char msg[KILN_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    http_reply_error_plain(req, status, code, msg);
    return req->response ? KILN_OK : KILN_ENOMEM;
}

/* MLflow's error code name for a kiln code. */
static const char *error_code_for(int code)
{
    switch (code) {
    case KILN_ENOTFOUND:
        return "RESOURCE_DOES_NOT_EXIST";
    case KILN_EINVAL:
    case KILN_EUNSAFE:
    case KILN_EFORMAT:
    case KILN_ELIMIT:
        return "INVALID_PARAMETER_VALUE";
    default:
        return "INTERNAL_ERROR";
    }
}

int kiln_http_reply_err(kiln_http_request *req, const kiln_err *err)
{
    return kiln_http_reply_error(req, kiln_http_status_for_code(err->code),
                                 error_code_for(err->code), "%s", err->msg);
}

enum MHD_Result http_queue_reply(kiln_http_request *r)
{
    if (!r->response)
        http_reply_error_plain(r, 500, "INTERNAL_ERROR",
                               "the server did not produce a reply for this request");
    if (!r->response)
        return MHD_NO;
    for (const http_header *h = r->headers; h; h = h->next)
        MHD_add_response_header(r->response, h->name, h->value);
    /* Draining: the client reconnects (and is refused) instead of reusing
     * a connection that the final stop would cut. */
    if (atomic_load(&r->server->draining))
        MHD_add_response_header(r->response, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned int)r->status, r->response);
    MHD_destroy_response(r->response);
    r->response = NULL;
    return ok;
}
