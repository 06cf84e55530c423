/* lib/serve/serve_model.c — a loaded package: its own backend, an
 * inference plan (batch 1, or max_batch with dynamic batching), one
 * forward at a time, reference-counted. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve_internal.h"

struct kiln_serve_model {
    atomic_int refs;
    /* One forward at a time, in arrival order (a ticket lock): a plain
     * mutex lets a thread take it again and again, and the tail latency
     * of the others grows without bound. */
    pthread_mutex_t lock;
    pthread_cond_t turn;
    uint64_t next_ticket, serving;
    kiln_nn_backend *be;
    kiln_effnet *net;
    kiln_model_info info;
    float *dev_x;                /* backend memory, one input */
    float *logits;               /* host, max_batch * num_classes */
    /* dynamic batching (max_batch > 1), under `lock` */
    kiln_serve_batching batching;
    pthread_cond_t batch_cv;     /* CLOCK_MONOTONIC: leaders wait with a deadline */
    struct srv_batch *forming;   /* the batch inputs join now, or NULL */
    int busy;                    /* a batched forward is running */
    float *staging;              /* host, max_batch inputs */
    kiln_nn_graph *graph;        /* batching.cuda_graphs: the forward's graph, or NULL */
    uint64_t forwards;           /* forwards run (the first one outside a graph) */
    uint64_t graph_forwards;     /* of which as step graphs */
    char *name, *version, *stage, *alias, *source, *run_id, *dir;
    cJSON *run_metrics;
    double load_seconds;
    double loaded_at;            /* wall clock */
};

double srv_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double srv_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void model_free(kiln_serve_model *m)
{
    if (m->be && m->graph)
        m->be->ops->graph_free(m->be, m->graph);
    if (m->be && m->dev_x)
        m->be->ops->release(m->be, m->dev_x);
    kiln_effnet_destroy(m->net);
    kiln_nn_backend_destroy(m->be);
    kiln_model_info_clear(&m->info);
    free(m->logits);
    free(m->staging);
    free(m->name);
    free(m->version);
    free(m->stage);
    free(m->alias);
    free(m->source);
    free(m->run_id);
    free(m->dir);
    cJSON_Delete(m->run_metrics);
    pthread_cond_destroy(&m->turn);
    pthread_cond_destroy(&m->batch_cv);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int dup_origin(kiln_serve_model *m, const char *dir, const kiln_serve_model_origin *o)
{
    const kiln_serve_model_origin none = {0};
    if (!o)
        o = &none;
    m->dir = strdup(dir);
    m->name = strdup(o->name ? o->name : "");
    m->version = strdup(o->version ? o->version : "");
    m->stage = strdup(o->stage ? o->stage : "");
    m->alias = strdup(o->alias ? o->alias : "");
    m->source = strdup(o->source ? o->source : "");
    m->run_id = strdup(o->run_id ? o->run_id : "");
    m->run_metrics = o->run_metrics ? cJSON_Duplicate(o->run_metrics, 1) : cJSON_CreateObject();
    return m->dir && m->name && m->version && m->stage && m->alias && m->source && m->run_id &&
           m->run_metrics;
}

/* An inference-only model never touches its gradient buffer (16 MB for a
 * B0; lib/nn zeroes it at the first backward only), but the allocator may
 * have handed out pages an earlier load dirtied. On the CPU backend that is
 * ordinary private memory: MADV_DONTNEED hands its whole pages back. */
static void drop_gradient_pages(kiln_serve_model *m)
{
    if (strcmp(m->be->ops->name, "cpu") != 0)
        return;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)kiln_effnet_grads_flat(m->net);
    uintptr_t end = start + kiln_effnet_flat_floats(m->net) * sizeof(float);
    if (page <= 0 || !start)
        return;
    uintptr_t first = (start + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t last = end & ~((uintptr_t)page - 1);
    if (last > first)
        madvise((void *)first, last - first, MADV_DONTNEED);
}

static void init_sync(kiln_serve_model *m)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->batch_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->turn, NULL);
}

/* The plan and the buffers for max_batch inputs. */
static int plan(kiln_serve_model *m, const char *dir, kiln_err *err)
{
    int s = m->info.input_size, nb = m->batching.max_batch;
    size_t in_floats = (size_t)nb * 3 * s * s;
    if (kiln_effnet_plan_inference(m->net, nb, s, s, err) != KILN_OK ||
        !(m->dev_x = m->be->ops->alloc(m->be, in_floats * sizeof(float), err)))
        return err ? (int)err->code : KILN_EIO;
    m->logits = malloc((size_t)nb * m->info.num_classes * sizeof *m->logits);
    if (!m->logits || (nb > 1 && !(m->staging = malloc(in_floats * sizeof *m->staging))))
        return kiln_err_set(err, KILN_ENOMEM, "out of memory loading %s", dir);
    return KILN_OK;
}

kiln_serve_model *kiln_serve_model_load_batched(const char *dir, const char *device, int threads,
                                                const kiln_serve_batching *batching,
                                                const kiln_serve_model_origin *origin,
                                                kiln_err *err)
{
    double t0 = srv_now_s();
    kiln_serve_model *m = calloc(1, sizeof *m);
    if (!m) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory loading %s", dir);
        return NULL;
    }
    atomic_init(&m->refs, 1);
    init_sync(m);
    m->batching = batching ? *batching : (kiln_serve_batching){.max_batch = 1};
    if (m->batching.max_batch < 1 || m->batching.max_batch > KILN_SERVE_MAX_BATCH ||
        m->batching.max_wait_ms < 0 || m->batching.max_wait_ms > KILN_SERVE_MAX_WAIT_MS) {
        kiln_err_set(err, KILN_EINVAL, "max batch %d / max wait %d ms out of range [1, %d] / "
                     "[0, %d]", m->batching.max_batch, m->batching.max_wait_ms,
                     KILN_SERVE_MAX_BATCH, KILN_SERVE_MAX_WAIT_MS);
        goto fail;
    }
    if (!dup_origin(m, dir, origin)) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory loading %s", dir);
        goto fail;
    }
    if (!(m->be = kiln_nn_backend_open(device ? device : "cpu", threads, NULL, err)))
        goto fail;
    if (!(m->net = kiln_model_load(dir, m->be, &m->info, err)))
        goto fail;
    if (plan(m, dir, err) != KILN_OK)
        goto fail;
    drop_gradient_pages(m);
    m->load_seconds = srv_now_s() - t0;
    m->loaded_at = srv_wall_s();
    return m;
fail:
    model_free(m);
    return NULL;
}

kiln_serve_model *kiln_serve_model_load(const char *dir, const char *device, int threads,
                                        const kiln_serve_model_origin *origin, kiln_err *err)
{
    return kiln_serve_model_load_batched(dir, device, threads, NULL, origin, err);
}

void kiln_serve_model_ref(kiln_serve_model *m)
{
    atomic_fetch_add(&m->refs, 1);
}

void kiln_serve_model_unref(kiln_serve_model *m)
{
    if (m && atomic_fetch_sub(&m->refs, 1) == 1)
        model_free(m);
}

const kiln_model_info *kiln_serve_model_info(const kiln_serve_model *m)
{
    return &m->info;
}

uint64_t kiln_serve_model_graph_forwards(const kiln_serve_model *m)
{
    return m->graph_forwards;
}

const char *kiln_serve_model_name(const kiln_serve_model *m)
{
    return m->name;
}

const char *kiln_serve_model_version(const kiln_serve_model *m)
{
    return m->version;
}

/* Softmax in double: probabilities that sum to 1 even for large logits. */
static void softmax(const float *logits, int k, float *probs)
{
    double mx = logits[0], sum = 0;
    for (int i = 1; i < k; i++)
        if (logits[i] > mx)
            mx = logits[i];
    for (int i = 0; i < k; i++)
        sum += exp((double)logits[i] - mx);
    for (int i = 0; i < k; i++)
        probs[i] = (float)(exp((double)logits[i] - mx) / sum);
}

/* Upload, forward and download of `out_floats` logits. With cuda_graphs
 * the forwards after the first (which chooses the conv algorithms) are one
 * step graph each: the shapes and buffers never change between them. */
static int device_forward(kiln_serve_model *m, const float *input, size_t in_bytes,
                          size_t out_floats, kiln_err *err)
{
    const kiln_nn_ops *ops = m->be->ops;
    int graph = m->batching.cuda_graphs && ops->graph_begin && m->forwards > 0;
    int rc = graph ? ops->graph_begin(m->be, &m->graph, err) : KILN_OK;
    const float *dev_logits = NULL;
    if (rc == KILN_OK && (rc = ops->upload(m->be, m->dev_x, input, in_bytes, err)) == KILN_OK &&
        (dev_logits = kiln_effnet_forward(m->net, m->dev_x, 0, 0, err)) != NULL &&
        (graph || (rc = ops->sync(m->be, err)) == KILN_OK))
        rc = ops->download(m->be, m->logits, dev_logits, out_floats * sizeof(float), err);
    if (!dev_logits && rc == KILN_OK)
        rc = err && err->code != KILN_OK ? (int)err->code : KILN_EIO;
    if (graph && rc == KILN_OK)
        rc = ops->graph_end(m->be, m->graph, err);
    else if (graph)
        ops->graph_cancel(m->be, m->graph);
    if (rc == KILN_OK) {
        m->forwards++;
        m->graph_forwards += graph;
    }
    return rc;
}

/* One input under the model's lock (max_batch 1). */
static int forward_one(kiln_serve_model *m, const float *input, float *probs, kiln_err *err)
{
    int s = m->info.input_size, k = m->info.num_classes, rc;
    size_t in_bytes = (size_t)3 * s * s * sizeof(float);
    pthread_mutex_lock(&m->lock);
    uint64_t ticket = m->next_ticket++;
    while (m->serving != ticket)
        pthread_cond_wait(&m->turn, &m->lock);
    pthread_mutex_unlock(&m->lock);
    rc = device_forward(m, input, in_bytes, (size_t)k, err);
    if (rc == KILN_OK)
        softmax(m->logits, k, probs);
    if (rc == KILN_OK && m->batching.on_forward)
        m->batching.on_forward(m->batching.ctx, 1);
    pthread_mutex_lock(&m->lock);
    m->serving++;
    pthread_cond_broadcast(&m->turn);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* ---- dynamic batching (max_batch > 1) ---- */

/* One input in a batch, on its caller's stack: the leader fills rc, err
 * and done (under the lock) before its own stack frame goes. */
typedef struct srv_slot {
    const float *input;
    float *probs;
    int rc;
    int done;
    kiln_err err;
} srv_slot;

/* A batch, on its leader's stack; followers touch it only while it forms. */
typedef struct srv_batch {
    int n;
    srv_slot *slots[KILN_SERVE_MAX_BATCH];
} srv_batch;

/* The padded forward of `b` (unlocked: `busy` keeps it alone). */
static int run_batch(kiln_serve_model *m, const srv_batch *b, kiln_err *err)
{
    int s = m->info.input_size, k = m->info.num_classes, nb = m->batching.max_batch, rc;
    size_t in_floats = (size_t)3 * s * s;
    for (int i = 0; i < b->n; i++)
        memcpy(m->staging + (size_t)i * in_floats, b->slots[i]->input, in_floats * sizeof(float));
    /* The plan's batch is fixed: the empty slots run too, on zeros. */
    memset(m->staging + (size_t)b->n * in_floats, 0,
           (size_t)(nb - b->n) * in_floats * sizeof(float));
    /* All nb rows come back, so every forward is the same graph. */
    rc = device_forward(m, m->staging, (size_t)nb * in_floats * sizeof(float), (size_t)nb * k,
                        err);
    for (int i = 0; rc == KILN_OK && i < b->n; i++)
        softmax(m->logits + (size_t)i * k, k, b->slots[i]->probs);
    return rc;
}

static struct timespec monotonic_at(double t)
{
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* With the lock held: wait until `b` is full, or max_wait passed since
 * `arrived` and the device is free; run it; hand out the results. */
static void lead(kiln_serve_model *m, srv_batch *b, double arrived)
{
    int nb = m->batching.max_batch, timed_out = m->batching.max_wait_ms == 0;
    struct timespec deadline = monotonic_at(arrived + m->batching.max_wait_ms * 1e-3);
    while (b->n < nb && !timed_out)
        if (pthread_cond_timedwait(&m->batch_cv, &m->lock, &deadline) == ETIMEDOUT)
            timed_out = 1;
    /* While the previous forward runs, this batch keeps filling. */
    while (m->busy)
        pthread_cond_wait(&m->batch_cv, &m->lock);
    m->forming = NULL;
    m->busy = 1;
    pthread_cond_broadcast(&m->batch_cv);
    pthread_mutex_unlock(&m->lock);
    kiln_err e = {0};
    int rc = run_batch(m, b, &e);
    if (rc == KILN_OK && m->batching.on_forward)
        m->batching.on_forward(m->batching.ctx, b->n);
    pthread_mutex_lock(&m->lock);
    m->busy = 0;
    for (int i = 0; i < b->n; i++) {
        b->slots[i]->rc = rc;
        b->slots[i]->err = e;
        b->slots[i]->done = 1;
    }
    pthread_cond_broadcast(&m->batch_cv);
}

/* Add up to `n` slots to the forming batch (leading a new one when none
 * forms); returns how many joined, all of them done. */
static int join(kiln_serve_model *m, srv_slot *slots, int n)
{
    int nb = m->batching.max_batch;
    srv_batch own;
    pthread_mutex_lock(&m->lock);
    while (m->forming && m->forming->n == nb)
        pthread_cond_wait(&m->batch_cv, &m->lock);
    int leader = !m->forming;
    if (leader) {
        own.n = 0;
        m->forming = &own;
    }
    double arrived = srv_now_s();
    srv_batch *b = m->forming;
    int take = n < nb - b->n ? n : nb - b->n;
    for (int i = 0; i < take; i++)
        b->slots[b->n++] = &slots[i];
    if (b->n == nb)
        pthread_cond_broadcast(&m->batch_cv);
    if (leader)
        lead(m, &own, arrived);
    else
        while (!slots[take - 1].done)
            pthread_cond_wait(&m->batch_cv, &m->lock);
    pthread_mutex_unlock(&m->lock);
    return take;
}

static int predict_batched(kiln_serve_model *m, const float *inputs, int n, float *probs,
                           kiln_err *err)
{
    int s = m->info.input_size, k = m->info.num_classes, rc = KILN_OK;
    srv_slot *slots = calloc((size_t)n, sizeof *slots);
    if (!slots)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory for %d inputs", n);
    for (int i = 0; i < n; i++) {
        slots[i].input = inputs + (size_t)i * 3 * s * s;
        slots[i].probs = probs + (size_t)i * k;
    }
    for (int i = 0; i < n && rc == KILN_OK;) {
        int took = join(m, slots + i, n - i);
        for (int j = i; j < i + took && rc == KILN_OK; j++)
            if ((rc = slots[j].rc) != KILN_OK && err)
                *err = slots[j].err;
        i += took;
    }
    free(slots);
    return rc;
}

int kiln_serve_model_predict(kiln_serve_model *m, const float *inputs, int n, float *probs,
                             kiln_err *err)
{
    int s = m->info.input_size, k = m->info.num_classes;
    if (m->batching.max_batch > 1)
        return predict_batched(m, inputs, n, probs, err);
    for (int i = 0; i < n; i++) {
        int rc = forward_one(m, inputs + (size_t)i * 3 * s * s, probs + (size_t)i * k, err);
        if (rc != KILN_OK)
            return rc;
    }
    return KILN_OK;
}

int kiln_serve_model_predict_image(kiln_serve_model *m, const uint8_t *data, size_t len,
                                   uint64_t max_pixels, float *probs, int *label, kiln_err *err)
{
    int s = m->info.input_size, rc;
    float *x = malloc((size_t)3 * s * s * sizeof *x);
    if (!x)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory for an input image");
    if ((rc = kiln_serve_preprocess(&m->info, data, len, max_pixels, x, err)) == KILN_OK &&
        (rc = kiln_serve_model_predict(m, x, 1, probs, err)) == KILN_OK) {
        int best = 0;
        for (int i = 1; i < m->info.num_classes; i++)
            if (probs[i] > probs[best])
                best = i;
        *label = best;
    }
    free(x);
    return rc;
}

static cJSON *str_or_null(const char *s)
{
    return s && *s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

cJSON *kiln_serve_model_describe(const kiln_serve_model *m)
{
    const kiln_model_info *in = &m->info;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddItemToObject(o, "name", str_or_null(m->name));
    cJSON_AddItemToObject(o, "version", str_or_null(m->version));
    cJSON_AddItemToObject(o, "stage", str_or_null(m->stage));
    cJSON_AddItemToObject(o, "alias", str_or_null(m->alias));
    cJSON_AddItemToObject(o, "source", str_or_null(m->source));
    cJSON_AddItemToObject(o, "run_id", str_or_null(m->run_id && *m->run_id ? m->run_id
                                                                             : in->run_id));
    cJSON_AddStringToObject(o, "model_dir", m->dir);
    cJSON_AddStringToObject(o, "variant", in->variant);
    cJSON_AddNumberToObject(o, "num_classes", in->num_classes);
    cJSON *classes = cJSON_AddArrayToObject(o, "classes");
    for (int i = 0; classes && i < in->num_classes; i++)
        cJSON_AddItemToArray(classes, cJSON_CreateString(in->classes[i]));
    cJSON_AddNumberToObject(o, "input_size", in->input_size);
    cJSON *pre = cJSON_AddObjectToObject(o, "preprocessing");
    if (pre) {
        cJSON_AddNumberToObject(pre, "resize_size", in->resize_size);
        cJSON_AddNumberToObject(pre, "crop_size", in->input_size);
        cJSON_AddStringToObject(pre, "scale", "pixels / 255");
        cJSON *mean = cJSON_AddArrayToObject(pre, "mean"), *std = cJSON_AddArrayToObject(pre, "std");
        for (int c = 0; mean && std && c < 3; c++) {
            cJSON_AddItemToArray(mean, cJSON_CreateNumber(in->mean[c]));
            cJSON_AddItemToArray(std, cJSON_CreateNumber(in->std[c]));
        }
    }
    cJSON_AddStringToObject(o, "kiln_version", in->kiln_version);
    cJSON_AddNumberToObject(o, "parameters", (double)kiln_effnet_param_count(m->net));
    cJSON_AddItemToObject(o, "metrics", cJSON_Duplicate(m->run_metrics, 1));
    cJSON_AddNumberToObject(o, "load_seconds", m->load_seconds);
    char when[32];
    time_t t = (time_t)m->loaded_at;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(o, "loaded_at", when);
    cJSON_AddStringToObject(o, "device", m->be->ops->name);
    cJSON_AddNumberToObject(o, "max_batch", m->batching.max_batch);
    cJSON_AddNumberToObject(o, "max_wait_ms", m->batching.max_wait_ms);
    return o;
}
