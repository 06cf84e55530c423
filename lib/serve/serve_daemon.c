/* lib/serve/serve_daemon.c — kiln-serve's HTTP API over lib/http: the
 * current model (swapped under a lock, reference-counted so requests in
 * flight finish on the model they started with), health, metrics and
 * access logs. Reloading and polling are in serve_reload.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/serve_daemon.h"

/* ---- the current model ---- */

kiln_serve_model *srv_acquire(kiln_serve_daemon *d)
{
    pthread_mutex_lock(&d->cur_lock);
    kiln_serve_model *m = d->current;
    if (m)
        kiln_serve_model_ref(m);
    pthread_mutex_unlock(&d->cur_lock);
    return m;
}

void srv_swap(kiln_serve_daemon *d, kiln_serve_model *m)
{
    pthread_mutex_lock(&d->cur_lock);
    kiln_serve_model *old = d->current;
    d->current = m;
    d->why_unready[0] = '\0';
    pthread_mutex_unlock(&d->cur_lock);
    /* Freed here, or by the last request still using it. */
    kiln_serve_model_unref(old);
}

static int is_ready(kiln_serve_daemon *d)
{
    pthread_mutex_lock(&d->cur_lock);
    int ready = d->current != NULL && !atomic_load(&d->draining);
    pthread_mutex_unlock(&d->cur_lock);
    return ready;
}

/* ---- replies ---- */

static cJSON *error_json(int status, const char *code, const char *message, void *ctx)
{
    (void)status;
    (void)code;
    (void)ctx;
    /* "error" as the Open Inference Protocol spells it; "detail" carries
     * the same text under FastAPI's key for clients of the seed service. */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", message);
    cJSON_AddStringToObject(o, "detail", message);
    return o;
}

static void reply(kiln_http_request *req, int status, cJSON *body)
{
    kiln_http_reply_json(req, status, body, NULL);
}

static void no_model(kiln_serve_daemon *d, kiln_http_request *req)
{
    char why[sizeof d->why_unready];
    pthread_mutex_lock(&d->cur_lock);
    snprintf(why, sizeof why, "%s", d->why_unready);
    pthread_mutex_unlock(&d->cur_lock);
    kiln_http_reply_error(req, 503, "UNAVAILABLE", "no model is loaded%s%s", *why ? ": " : "",
                          why);
}

static cJSON *str_or_null(const char *s)
{
    return s && *s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

/* ---- handlers ---- */

static void h_root(kiln_http_request *req, void *ctx)
{
    kiln_serve_daemon *d = ctx;
    kiln_serve_model *m = srv_acquire(d);
    int draining = atomic_load(&d->draining);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", draining ? "draining" : m ? "ok" : "no model");
    cJSON_AddBoolToObject(o, "ready", m && !draining);
    cJSON *info = m ? kiln_serve_model_describe(m) : NULL;
    const char *keys[] = {"name", "version", "stage", "alias"};
    for (int i = 0; i < 4; i++) {
        char k[32];
        snprintf(k, sizeof k, "model_%s", keys[i]);
        const cJSON *v = info ? cJSON_GetObjectItemCaseSensitive(info, keys[i]) : NULL;
        cJSON_AddItemToObject(o, k, v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
    }
    if (!m || !info || !cJSON_GetObjectItemCaseSensitive(info, "name") ||
        cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(info, "name"))) {
        cJSON_ReplaceItemInObject(o, "model_name", str_or_null(d->cfg.model_name));
    }
    cJSON *classes = info ? cJSON_DetachItemFromObject(info, "classes") : cJSON_CreateArray();
    cJSON_AddItemToObject(o, "classes", classes);
    const cJSON *dev = info ? cJSON_GetObjectItemCaseSensitive(info, "device") : NULL;
    cJSON_AddStringToObject(o, "device", cJSON_IsString(dev) ? dev->valuestring : "cpu");
    cJSON_AddItemToObject(o, "image_version", str_or_null(d->image_version));
    cJSON_AddStringToObject(o, "kiln_version", KILN_VERSION);
    cJSON_Delete(info);
    kiln_serve_model_unref(m);
    reply(req, 200, o);
}

static void h_info(kiln_http_request *req, void *ctx)
{
    kiln_serve_daemon *d = ctx;
    kiln_serve_model *m = srv_acquire(d);
    if (!m) {
        no_model(d, req);
        return;
    }
    reply(req, 200, kiln_serve_model_describe(m));
    kiln_serve_model_unref(m);
}

static void h_healthz(kiln_http_request *req, void *ctx)
{
    (void)ctx;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "alive");
    reply(req, 200, o);
}

static void h_readyz(kiln_http_request *req, void *ctx)
{
    kiln_serve_daemon *d = ctx;
    int ready = is_ready(d);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ready", ready);
    if (!ready)
        cJSON_AddStringToObject(o, "reason",
                                atomic_load(&d->draining) ? "draining" : "no model loaded");
    reply(req, ready ? 200 : 503, o);
}

static void h_metrics(kiln_http_request *req, void *ctx)
{
    kiln_serve_daemon *d = ctx;
    kiln_serve_model *m = srv_acquire(d);
    size_t len = 0;
    char *text = srv_metrics_text(d->metrics, m, m && !atomic_load(&d->draining),
                                  atomic_load(&d->draining), &len);
    kiln_serve_model_unref(m);
    if (!text) {
        kiln_http_reply_error(req, 500, "INTERNAL", "out of memory writing metrics");
        return;
    }
    kiln_http_reply_buffer(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
}

static void h_reload(kiln_http_request *req, void *ctx)
{
    kiln_serve_daemon *d = ctx;
    kiln_err err = {0};
    kiln_serve_model *before = srv_acquire(d);
    char old[64];
    snprintf(old, sizeof old, "%s", before ? kiln_serve_model_version(before) : "");
    kiln_serve_model_unref(before);
    int rc = kiln_serve_daemon_reload(d, &err);
    kiln_serve_model *m = srv_acquire(d);
    if (rc != KILN_OK) {
        /* 404: no such model/version; 502: the registry failed us; 500:
         * the package did not load. The old model keeps serving. */
        int status = rc == KILN_ENOTFOUND ? 404 : rc == KILN_EIO ? 502 : 500;
        cJSON *o = error_json(status, NULL, err.msg, NULL);
        cJSON_AddItemToObject(o, "model_version", m ? str_or_null(kiln_serve_model_version(m))
                                                    : cJSON_CreateNull());
        cJSON_AddBoolToObject(o, "reloaded", 0);
        reply(req, status, o);
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "reloaded");
        cJSON_AddBoolToObject(o, "reloaded", 1);
        cJSON_AddItemToObject(o, "model_name", str_or_null(kiln_serve_model_name(m)));
        cJSON_AddItemToObject(o, "model_version", str_or_null(kiln_serve_model_version(m)));
        cJSON_AddItemToObject(o, "previous_version", str_or_null(old));
        cJSON *info = kiln_serve_model_describe(m);
        cJSON *ls = cJSON_GetObjectItemCaseSensitive(info, "load_seconds");
        cJSON_AddNumberToObject(o, "load_seconds", ls ? ls->valuedouble : 0);
        cJSON_Delete(info);
        reply(req, 200, o);
    }
    kiln_serve_model_unref(m);
}

/* The answer for one image. */
static cJSON *prediction_json(const kiln_serve_model *m, const float *probs)
{
    const kiln_model_info *in = kiln_serve_model_info(m);
    int best = 0;
    for (int i = 1; i < in->num_classes; i++)
        if (probs[i] > probs[best])
            best = i;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prediction", in->classes[best]);
    cJSON_AddNumberToObject(o, "confidence", probs[best]);
    cJSON *p = cJSON_AddObjectToObject(o, "probabilities");
    for (int i = 0; p && i < in->num_classes; i++)
        cJSON_AddNumberToObject(p, in->classes[i], probs[i]);
    cJSON_AddItemToObject(o, "model_version", str_or_null(kiln_serve_model_version(m)));
    return o;
}

static int image_status(int code)
{
    return code == KILN_ELIMIT ? 413 : code == KILN_ENOMEM ? 500 : 400;
}

/* Preprocess every image (on this worker thread), then predict. */
static void predict_images(kiln_serve_daemon *d, kiln_http_request *req, kiln_serve_model *m,
                           const kiln_serve_images *im)
{
    const kiln_model_info *in = kiln_serve_model_info(m);
    size_t per = (size_t)3 * in->input_size * in->input_size;
    float *x = malloc(im->n * per * sizeof *x);
    float *probs = malloc(im->n * (size_t)in->num_classes * sizeof *probs);
    kiln_err err = {0};
    if (!x || !probs) {
        kiln_http_reply_error(req, 500, "INTERNAL", "out of memory for %zu images", im->n);
        goto done;
    }
    for (size_t i = 0; i < im->n; i++) {
        int rc = kiln_serve_preprocess(in, im->data[i], im->len[i], d->cfg.max_pixels,
                                       x + i * per, &err);
        if (rc != KILN_OK) {
            char what[32] = "image";
            if (im->batch)
                snprintf(what, sizeof what, "image %zu", i);
            kiln_http_reply_error(req, image_status(rc), "BAD_IMAGE", "%s: %s", what, err.msg);
            goto done;
        }
    }
    if (kiln_serve_model_predict(m, x, (int)im->n, probs, &err) != KILN_OK) {
        kiln_log_error(d->log, "serve: predict: %s", err.msg);
        kiln_http_reply_error(req, 500, "INTERNAL", "inference failed: %s", err.msg);
        goto done;
    }
    srv_metrics_batch(d->metrics, im->n);
    if (!im->batch) {
        reply(req, 200, prediction_json(m, probs));
    } else {
        cJSON *list = cJSON_CreateArray();
        for (size_t i = 0; list && i < im->n; i++)
            cJSON_AddItemToArray(list, prediction_json(m, probs + i * (size_t)in->num_classes));
        reply(req, 200, list);
    }
done:
    free(x);
    free(probs);
}

static void h_predict(kiln_http_request *req, void *ctx)
{
    kiln_serve_daemon *d = ctx;
    kiln_serve_images im;
    kiln_err err = {0};
    int status = 400;
    srv_metrics_inflight(d->metrics, 1);
    /* The model is taken first: this request finishes on it even if a
     * reload swaps in another meanwhile. */
    kiln_serve_model *m = srv_acquire(d);
    if (!m) {
        no_model(d, req);
    } else if (kiln_serve_request_images(req, (size_t)d->cfg.max_images, &im, &status, &err) !=
               KILN_OK) {
        kiln_http_reply_error(req, status, "BAD_REQUEST", "%s", err.msg);
    } else {
        predict_images(d, req, m, &im);
        kiln_serve_images_clear(&im);
    }
    kiln_serve_model_unref(m);
    srv_metrics_inflight(d->metrics, -1);
}

/* ---- access logs and request metrics ---- */

static void on_access(const kiln_http_access *a, void *ctx)
{
    kiln_serve_daemon *d = ctx;
    srv_metrics_request(d->metrics, a->route, a->method, a->status, a->seconds);
    if (!d->cfg.access_log_json)
        return;
    char ts[40];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", now.tv_nsec / 1000000);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ts", ts);
    cJSON_AddStringToObject(o, "type", "access");
    cJSON_AddStringToObject(o, "method", a->method);
    cJSON_AddStringToObject(o, "path", a->path);
    cJSON_AddNumberToObject(o, "status", a->status);
    cJSON_AddNumberToObject(o, "duration_ms", a->seconds * 1e3);
    cJSON_AddNumberToObject(o, "request_bytes", (double)a->body_bytes);
    if (!a->completed)
        cJSON_AddBoolToObject(o, "connection_ended_early", 1);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (line) {
        FILE *out = d->cfg.access_out ? d->cfg.access_out : stdout;
        flockfile(out);
        fputs(line, out);
        fputc('\n', out);
        fflush(out);
        funlockfile(out);
        free(line);
    }
}

int srv_http_start(kiln_serve_daemon *d, kiln_err *err)
{
    kiln_http_options o;
    kiln_http_options_default(&o);
    o.host = d->cfg.host;
    o.port = d->cfg.port;
    o.threads = d->cfg.http_threads;
    o.max_body_bytes = d->cfg.max_body_bytes;
    o.stop_grace_ms = 30000;
    o.error_json = error_json;
    o.log = d->log;
    o.on_access = on_access;
    o.access_ctx = d;
    o.drain = 1;
    if (!(d->http = kiln_http_server_new(&o, err)))
        return err ? (int)err->code : KILN_EINVAL;
    const kiln_http_route routes[] = {
        {.method = "GET", .path = "/", .handler = h_root, .ctx = d},
        {.method = "GET", .path = "/model/info", .handler = h_info, .ctx = d},
        {.method = "POST", .path = "/predict", .handler = h_predict, .ctx = d},
        {.method = "POST", .path = "/model/reload", .handler = h_reload, .ctx = d,
         .max_body_bytes = 64 * 1024},
        {.method = "GET", .path = "/healthz", .handler = h_healthz, .ctx = d},
        {.method = "GET", .path = "/readyz", .handler = h_readyz, .ctx = d},
        {.method = "GET", .path = "/metrics", .handler = h_metrics, .ctx = d},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = kiln_http_server_add_route(d->http, &routes[i], err);
        if (rc != KILN_OK)
            return rc;
    }
    return kiln_http_server_start(d->http, err);
}

int kiln_serve_daemon_port(const kiln_serve_daemon *d)
{
    return kiln_http_server_port(d->http);
}
