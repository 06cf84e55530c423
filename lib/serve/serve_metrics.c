/* lib/serve/serve_metrics.c — Prometheus counters and histograms, in the
 * text exposition format 0.0.4. Label sets are bounded: routes are the
 * registered paths (or "other" for 404s), codes are HTTP statuses. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_internal.h"

static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5,   1,    2.5,   5,    10};
#define N_LAT (sizeof latency_bounds / sizeof latency_bounds[0])
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
#define N_BATCH (sizeof batch_bounds / sizeof batch_bounds[0])
#define MAX_SERIES 128

typedef struct hist {
    uint64_t buckets[16]; /* cumulative counts are made when printing */
    uint64_t count;
    double sum;
} hist;

typedef struct req_series {
    char route[48];
    char method[12];
    int code;
    uint64_t count;
} req_series;

typedef struct lat_series {
    char route[48];
    hist h;
} lat_series;

struct srv_metrics {
    pthread_mutex_t lock;
    req_series req[MAX_SERIES];
    size_t n_req;
    lat_series lat[MAX_SERIES];
    size_t n_lat;
    hist batch;
    hist forward;     /* real inputs per model forward (dynamic batching) */
    uint64_t images;
    uint64_t reloads_ok, reloads_failed;
    int inflight;
    double started;
};

srv_metrics *srv_metrics_new(kiln_err *err)
{
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory making metrics");
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->started = srv_wall_s();
    return m;
}

void srv_metrics_free(srv_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void hist_add(hist *h, const double *bounds, size_t n, double v)
{
    for (size_t i = 0; i < n; i++)
        if (v <= bounds[i]) {
            h->buckets[i]++;
            break;
        }
    h->count++;
    h->sum += v;
}

void srv_metrics_request(srv_metrics *m, const char *route, const char *method, int status,
                         double seconds)
{
    if (!route)
        route = "other";
    /* Methods outside the usual few share one label. */
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                        "OPTIONS"};
    const char *mm = "other";
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        if (strcmp(method, known[k]) == 0)
            mm = known[k];
    pthread_mutex_lock(&m->lock);
    size_t i;
    for (i = 0; i < m->n_req; i++)
        if (m->req[i].code == status && strcmp(m->req[i].route, route) == 0 &&
            strcmp(m->req[i].method, mm) == 0)
            break;
    if (i == m->n_req && m->n_req < MAX_SERIES) {
        snprintf(m->req[i].route, sizeof m->req[i].route, "%s", route);
        snprintf(m->req[i].method, sizeof m->req[i].method, "%s", mm);
        m->req[i].code = status;
        m->n_req++;
    }
    if (i < m->n_req)
        m->req[i].count++;
    for (i = 0; i < m->n_lat; i++)
        if (strcmp(m->lat[i].route, route) == 0)
            break;
    if (i == m->n_lat && m->n_lat < MAX_SERIES) {
        snprintf(m->lat[i].route, sizeof m->lat[i].route, "%s", route);
        m->n_lat++;
    }
    if (i < m->n_lat)
        hist_add(&m->lat[i].h, latency_bounds, N_LAT, seconds);
    pthread_mutex_unlock(&m->lock);
}

void srv_metrics_batch(srv_metrics *m, size_t images)
{
    pthread_mutex_lock(&m->lock);
    hist_add(&m->batch, batch_bounds, N_BATCH, (double)images);
    m->images += images;
    pthread_mutex_unlock(&m->lock);
}

void srv_metrics_forward(void *metrics, int inputs)
{
    srv_metrics *m = metrics;
    pthread_mutex_lock(&m->lock);
    hist_add(&m->forward, batch_bounds, N_BATCH, (double)inputs);
    pthread_mutex_unlock(&m->lock);
}

void srv_metrics_reload(srv_metrics *m, int ok)
{
    pthread_mutex_lock(&m->lock);
    if (ok)
        m->reloads_ok++;
    else
        m->reloads_failed++;
    pthread_mutex_unlock(&m->lock);
}

void srv_metrics_inflight(srv_metrics *m, int delta)
{
    pthread_mutex_lock(&m->lock);
    m->inflight += delta;
    pthread_mutex_unlock(&m->lock);
}

/* A growing text buffer. */
typedef struct text {
    char *p;
    size_t len, cap;
    int oom;
} text;

__attribute__((format(printf, 2, 3))) static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    for (int pass = 0; pass < 2 && !t->oom; pass++) {
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap : 4096;
        while (cap <= t->len + (size_t)n)
            cap *= 2;
        char *grown = realloc(t->p, cap);
        if (!grown) {
            t->oom = 1;
            return;
        }
        t->p = grown;
        t->cap = cap;
    }
}

static void put_hist(text *t, const char *name, const char *labels, const hist *h,
                     const double *bounds, size_t n)
{
    uint64_t cum = 0;
    const char *sep = *labels ? "," : "";
    for (size_t i = 0; i < n; i++) {
        cum += h->buckets[i];
        put(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i],
            (unsigned long long)cum);
    }
    put(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)h->count);
    put(t, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels,
        (unsigned long long)h->count);
}

/* A label value with \, " and newlines escaped as the format wants. */
static void esc(const char *s, char *out, size_t size)
{
    size_t n = 0;
    for (; *s && n + 3 < size; s++) {
        if (*s == '\\' || *s == '"') {
            out[n++] = '\\';
            out[n++] = *s;
        } else if (*s == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
}

static void put_model(text *t, const kiln_serve_model *model, int ready, int draining)
{
    put(t, "# HELP kiln_serve_ready 1 when a model is loaded and the server is not draining.\n"
           "# TYPE kiln_serve_ready gauge\nkiln_serve_ready %d\n", ready);
    put(t, "# HELP kiln_serve_draining 1 after SIGTERM.\n# TYPE kiln_serve_draining gauge\n"
           "kiln_serve_draining %d\n", draining);
    put(t, "# HELP kiln_serve_model_loaded 1 when a model is loaded.\n"
           "# TYPE kiln_serve_model_loaded gauge\nkiln_serve_model_loaded %d\n", model != NULL);
    if (!model)
        return;
    char name[256], version[64];
    esc(kiln_serve_model_name(model), name, sizeof name);
    esc(kiln_serve_model_version(model), version, sizeof version);
    put(t, "# HELP kiln_serve_model_info The loaded model (value 1).\n"
           "# TYPE kiln_serve_model_info gauge\n"
           "kiln_serve_model_info{name=\"%s\",version=\"%s\",variant=\"%s\"} 1\n",
        name, version, kiln_serve_model_info(model)->variant);
    char *end = NULL;
    double v = strtod(kiln_serve_model_version(model), &end);
    if (end && end != kiln_serve_model_version(model) && *end == '\0')
        put(t, "# HELP kiln_serve_model_version The loaded registry version, as a number.\n"
               "# TYPE kiln_serve_model_version gauge\nkiln_serve_model_version %g\n", v);
}

char *srv_metrics_text(srv_metrics *m, const kiln_serve_model *model, int ready, int draining,
                       size_t *len)
{
    text t = {0};
    char labels[160];
    pthread_mutex_lock(&m->lock);
    put(&t, "# HELP kiln_serve_requests_total HTTP requests by route, method and status code.\n"
            "# TYPE kiln_serve_requests_total counter\n");
    for (size_t i = 0; i < m->n_req; i++)
        put(&t, "kiln_serve_requests_total{route=\"%s\",method=\"%s\",code=\"%d\"} %llu\n",
            m->req[i].route, m->req[i].method, m->req[i].code,
            (unsigned long long)m->req[i].count);
    put(&t, "# HELP kiln_serve_request_duration_seconds Request latency by route.\n"
            "# TYPE kiln_serve_request_duration_seconds histogram\n");
    for (size_t i = 0; i < m->n_lat; i++) {
        snprintf(labels, sizeof labels, "route=\"%s\"", m->lat[i].route);
        put_hist(&t, "kiln_serve_request_duration_seconds", labels, &m->lat[i].h,
                 latency_bounds, N_LAT);
    }
    put(&t, "# HELP kiln_serve_batch_size Images per /predict request.\n"
            "# TYPE kiln_serve_batch_size histogram\n");
    put_hist(&t, "kiln_serve_batch_size", "", &m->batch, batch_bounds, N_BATCH);
    put(&t, "# HELP kiln_serve_forward_batch_size Inputs per model forward (--max-batch).\n"
            "# TYPE kiln_serve_forward_batch_size histogram\n");
    put_hist(&t, "kiln_serve_forward_batch_size", "", &m->forward, batch_bounds, N_BATCH);
    put(&t, "# HELP kiln_serve_images_total Images predicted.\n"
            "# TYPE kiln_serve_images_total counter\nkiln_serve_images_total %llu\n",
        (unsigned long long)m->images);
    put(&t, "# HELP kiln_serve_reloads_total Model reloads by result.\n"
            "# TYPE kiln_serve_reloads_total counter\n"
            "kiln_serve_reloads_total{result=\"success\"} %llu\n"
            "kiln_serve_reloads_total{result=\"failure\"} %llu\n",
        (unsigned long long)m->reloads_ok, (unsigned long long)m->reloads_failed);
    put(&t, "# HELP kiln_serve_inflight_requests /predict requests being answered.\n"
            "# TYPE kiln_serve_inflight_requests gauge\nkiln_serve_inflight_requests %d\n",
        m->inflight);
    put(&t, "# HELP kiln_serve_start_time_seconds When the process started (Unix time).\n"
            "# TYPE kiln_serve_start_time_seconds gauge\nkiln_serve_start_time_seconds %.3f\n",
        m->started);
    pthread_mutex_unlock(&m->lock);
    put_model(&t, model, ready, draining);
    if (t.oom) {
        free(t.p);
        return NULL;
    }
    *len = t.len;
    return t.p;
}
