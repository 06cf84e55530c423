/* Batches from one dataset split, filled ahead of the consumer by workers.
 *
 * Concurrency: a ring of n_slots batch slots; batch number b lives in slot
 * b % n_slots. A worker claims the next batch number under the mutex and
 * fills that whole batch without the lock; it may claim b only once the
 * consumer has released batch b - n_slots, so a slot is never written
 * while it is read. The consumer takes batch numbers in order and waits
 * for the one it needs. Restarting an epoch raises `cancel`, waits until no
 * worker is filling, then resets the counters: no stale batch survives.
 *
 * Determinism: the order comes from (seed, epoch) and every random draw for
 * the image at epoch position p from (seed, epoch, p), so which worker does
 * what, and when, never changes a single bit of the output.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"

/* The shuffle's stream id; above 2^32 so it never equals an image position. */
#define SHUFFLE_STREAM 0x53485546464c45ULL /* "SHUFFLE" */
#define MAX_THREADS 256
#define MAX_PREFETCH 1024
#define MAX_OUT_SIZE 4096
#define MAX_BATCH 65536
#define NO_BATCH UINT64_MAX
/* torchvision's RandomResizedCrop tries this many times before its fallback. */
#define CROP_ATTEMPTS 10

typedef struct slot {
    kiln_batch batch;
    uint64_t number;   /* the batch it holds, ready to read; NO_BATCH while none */
    int rc;            /* KILN_OK, or the failure that stopped it (in err) */
    kiln_err err;
} slot;

typedef struct worker {
    kiln_loader *l;
    pthread_t thread;
    kiln_image resized;   /* out_size x out_size: the resized crop */
    void *scratch;        /* for kiln_image_resize_box, sized for the largest crop */
    size_t scratch_size;
} worker;

typedef struct crop_box {
    int x, y, w, h;
} crop_box;

struct kiln_loader {
    kiln_dataset *ds;
    kiln_loader_opts o;      /* resolved: out_size and prefetch filled in */
    int size;                /* stored images are size x size */
    uint32_t n_images, n_batches;
    float lut[3][256];       /* byte -> (byte/255 - mean) / std, per channel */
    uint32_t *order;         /* epoch position -> image index */
    slot *slots;
    int n_slots;
    worker *workers;
    int n_started;           /* threads to join */
    int sync_ready;          /* mutex and condition variables initialised */
    int epoch_started;       /* consumer-side: a start_epoch has happened */

    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* workers: a batch became claimable, or quit */
    pthread_cond_t done_cv;  /* consumer: a batch is ready, or a worker went idle */
    /* Guarded by mu. */
    int active;              /* an epoch is running: batches may be claimed */
    int quit;
    int epoch;
    uint64_t next_claim;     /* next batch number a worker takes */
    uint64_t released;       /* slots of batches below this are free */
    uint64_t next_out;       /* next batch number the consumer returns */
    int holding;             /* the consumer holds batch next_out - 1 */
    int busy;                /* workers filling a batch now */
    /* Read by workers without the lock to abandon a batch early. */
    atomic_int cancel;
};

void kiln_loader_opts_default(kiln_loader_opts *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->split = KILN_SPLIT_TRAIN;
    opts->batch_size = 32;
    opts->threads = 1;
    opts->seed = 42;
    opts->scale_min = 0.08;
    opts->scale_max = 1.0;
    opts->ratio_min = 3.0 / 4.0;
    opts->ratio_max = 4.0 / 3.0;
}

/* ---------------- one image ---------------- */

/* torchvision's RandomResizedCrop.get_params, draw for draw: Python's
 * round() is round-half-even, which rint() gives in the default mode.
 * Sizes are compared as doubles so an absurd ratio cannot overflow an int. */
static crop_box sample_crop(kiln_rng *rng, int W, int H, const kiln_loader_opts *o)
{
    double area = (double)W * H;
    double lr0 = log(o->ratio_min), lr1 = log(o->ratio_max);
    for (int t = 0; t < CROP_ATTEMPTS; t++) {
        double target = area * (o->scale_min + (o->scale_max - o->scale_min) *
                                                   kiln_rng_uniform(rng));
        double ar = exp(lr0 + (lr1 - lr0) * kiln_rng_uniform(rng));
        double w = rint(sqrt(target * ar)), h = rint(sqrt(target / ar));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            crop_box c = {.w = (int)w, .h = (int)h};
            c.y = (int)kiln_rng_below(rng, (uint64_t)(H - c.h + 1));
            c.x = (int)kiln_rng_below(rng, (uint64_t)(W - c.w + 1));
            return c;
        }
    }
    /* Fallback: a central crop with the ratio clamped into range. */
    crop_box c = {.w = W, .h = H};
    double in_ratio = (double)W / H;
    if (in_ratio < o->ratio_min)
        c.h = (int)fmin(H, fmax(1, rint(W / o->ratio_min)));
    else if (in_ratio > o->ratio_max)
        c.w = (int)fmin(W, fmax(1, rint(H * o->ratio_max)));
    c.y = (H - c.h) / 2;
    c.x = (W - c.w) / 2;
    return c;
}

/* uint8 HWC side x side -> uint8 NCHW (opts.u8), mirrored when `flip`. */
static void to_byte_planes(const uint8_t *src, int side, int flip, uint8_t *dst)
{
    size_t plane = (size_t)side * side;
    for (int y = 0; y < side; y++) {
        const uint8_t *row = src + (size_t)y * side * 3;
        uint8_t *d0 = dst + (size_t)y * side, *d1 = d0 + plane, *d2 = d1 + plane;
        for (int x = 0; x < side; x++) {
            const uint8_t *p = row + 3 * (size_t)(flip ? side - 1 - x : x);
            d0[x] = p[0];
            d1[x] = p[1];
            d2[x] = p[2];
        }
    }
}

/* uint8 HWC side x side -> normalised float NCHW, mirrored when `flip`. */
static void to_planes(const kiln_loader *l, const uint8_t *src, int side, int flip, float *dst)
{
    size_t plane = (size_t)side * side;
    for (int y = 0; y < side; y++) {
        const uint8_t *row = src + (size_t)y * side * 3;
        float *d0 = dst + (size_t)y * side, *d1 = d0 + plane, *d2 = d1 + plane;
        for (int x = 0; x < side; x++) {
            const uint8_t *p = row + 3 * (size_t)(flip ? side - 1 - x : x);
            d0[x] = l->lut[0][p[0]];
            d1[x] = l->lut[1][p[1]];
            d2[x] = l->lut[2][p[2]];
        }
    }
}

/* Image `index` at epoch position `pos` into image `k` of the batch (3
 * planes of out^2, floats or bytes). */
static void store_planes(const kiln_loader *l, kiln_batch *b, size_t k, const uint8_t *src,
                         int side, int flip)
{
    size_t image = (size_t)3 * side * side;
    if (b->x_u8)
        to_byte_planes(src, side, flip, b->x_u8 + k * image);
    else
        to_planes(l, src, side, flip, b->x + k * image);
}

static int load_image(worker *w, uint32_t index, uint64_t pos, int epoch, kiln_batch *dst,
                      size_t k, uint32_t *label, kiln_err *err)
{
    const kiln_loader *l = w->l;
    int s = l->size, out = l->o.out_size;
    const uint8_t *px = kiln_dataset_image(l->ds, index, label);
    kiln_rng rng;
    kiln_rng_derive(&rng, l->o.seed, (uint64_t)epoch, pos);
    crop_box c = {0, 0, s, s};
    if (l->o.random_resized_crop)
        c = sample_crop(&rng, s, s, &l->o);
    /* Drawn after the crop, as RandomHorizontalFlip follows RandomResizedCrop. */
    int flip = l->o.horizontal_flip && kiln_rng_uniform(&rng) < 0.5;
    if (c.w == s && c.h == s && out == s) {
        store_planes(l, dst, k, px, s, flip);
        return KILN_OK;
    }
    if (kiln_resize_scratch_size(c.w, c.h, out, out) > w->scratch_size)
        return kiln_err_set(err, KILN_ELIMIT, "loader: resize scratch too small for a %dx%d crop",
                            c.w, c.h);
    /* The mapped shard is read-only; resize only reads `src`. */
    kiln_image src = {.width = s, .height = s, .pixels = (uint8_t *)px};
    int rc = kiln_image_resize_box(&src, c.x, c.y, c.w, c.h, &w->resized, w->scratch, err);
    if (rc != KILN_OK)
        return rc;
    store_planes(l, dst, k, w->resized.pixels, out, flip);
    return KILN_OK;
}

/* Fill batch number b into `s`; ECANCELED when the epoch is restarted. */
static int fill_batch(worker *w, slot *s, uint64_t b, int epoch, kiln_err *err)
{
    kiln_loader *l = w->l;
    uint64_t first = b * (uint64_t)l->o.batch_size;
    uint64_t n = l->n_images - first;
    if (n > (uint64_t)l->o.batch_size)
        n = (uint64_t)l->o.batch_size;
    for (uint64_t k = 0; k < n; k++) {
        if (atomic_load_explicit(&l->cancel, memory_order_relaxed))
            return kiln_err_set(err, KILN_ECANCELED, "loader: epoch restarted");
        uint32_t index = l->order[first + k], label = 0;
        int rc = load_image(w, index, first + k, epoch, &s->batch, (size_t)k, &label, err);
        if (rc != KILN_OK)
            return kiln_err_wrap(err, "loader: image %u", index);
        s->batch.labels[k] = (int32_t)label;
        s->batch.indices[k] = index;
    }
    s->batch.n = (int)n;
    return KILN_OK;
}

/* ---------------- workers ---------------- */

static int claimable(const kiln_loader *l)
{
    return l->active && l->next_claim < l->n_batches &&
           l->next_claim < l->released + (uint64_t)l->n_slots;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    kiln_loader *l = w->l;
    kiln_err err;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && !claimable(l))
            pthread_cond_wait(&l->work_cv, &l->mu);
        if (l->quit)
            break;
        uint64_t b = l->next_claim++;
        int epoch = l->epoch;
        slot *s = &l->slots[b % (uint64_t)l->n_slots];
        l->busy++;
        pthread_mutex_unlock(&l->mu);

        kiln_err_clear(&err);
        int rc = fill_batch(w, s, b, epoch, &err);

        pthread_mutex_lock(&l->mu);
        l->busy--;
        /* A cancelled batch is dropped: start_epoch resets every slot. */
        if (rc != KILN_ECANCELED) {
            s->rc = rc;
            if (rc != KILN_OK)
                s->err = err;
            s->number = b;
        }
        pthread_cond_broadcast(&l->done_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* ---------------- open ---------------- */

static int check_range(const char *name, double lo, double hi, kiln_err *err)
{
    if (!(isfinite(lo) && isfinite(hi) && lo > 0 && lo <= hi))
        return kiln_err_set(err, KILN_EINVAL,
                            "loader: %s range [%g, %g] must be positive with min <= max", name,
                            lo, hi);
    return KILN_OK;
}

/* The checks that need no dataset. */
static int check_opts(const char *dir, const kiln_loader_opts *o, kiln_err *err)
{
    if (!dir || !*dir)
        return kiln_err_set(err, KILN_EINVAL, "loader: no dataset directory given");
    if (o->batch_size <= 0 || o->batch_size > MAX_BATCH)
        return kiln_err_set(err, KILN_EINVAL, "loader: batch_size must be in 1..%d, got %d",
                            MAX_BATCH, o->batch_size);
    if (o->threads < 1 || o->threads > MAX_THREADS)
        return kiln_err_set(err, KILN_EINVAL, "loader: threads must be in 1..%d, got %d",
                            MAX_THREADS, o->threads);
    if (o->prefetch < 0 || o->prefetch > MAX_PREFETCH)
        return kiln_err_set(err, KILN_EINVAL,
                            "loader: prefetch must be in 0..%d (0 = 2 * threads), got %d",
                            MAX_PREFETCH, o->prefetch);
    if (o->out_size < 0 || o->out_size > MAX_OUT_SIZE)
        return kiln_err_set(err, KILN_EINVAL,
                            "loader: out_size must be in 1..%d (0 = the dataset's), got %d",
                            MAX_OUT_SIZE, o->out_size);
    if (!o->random_resized_crop)
        return KILN_OK;
    if (check_range("scale", o->scale_min, o->scale_max, err) != KILN_OK)
        return KILN_EINVAL;
    if (o->scale_max > 1)
        return kiln_err_set(err, KILN_EINVAL, "loader: scale max %g is above 1 (the whole image)",
                            o->scale_max);
    return check_range("ratio", o->ratio_min, o->ratio_max, err);
}

/* Mean/std from the manifest into a per-byte table, computed in double
 * once so every worker gives the same bits. */
static int build_lut(kiln_loader *l, const char *dir, kiln_err *err)
{
    const kiln_manifest *m = kiln_dataset_manifest(l->ds);
    for (int c = 0; c < 3; c++) {
        if (!(isfinite(m->mean[c]) && isfinite(m->std[c]) && m->std[c] > 0))
            return kiln_err_set(err, KILN_EFORMAT,
                                "dataset %s: manifest mean[%d] = %g, std[%d] = %g; std must be "
                                "positive", dir, c, m->mean[c], c, m->std[c]);
        for (int v = 0; v < 256; v++)
            l->lut[c][v] = (float)((v / 255.0 - m->mean[c]) / m->std[c]);
    }
    return KILN_OK;
}

/* Counts that depend on the dataset: out size, batches, slots. */
static int resolve_sizes(kiln_loader *l, const char *dir, kiln_err *err)
{
    const kiln_loader_opts *o = &l->o;
    l->size = (int)kiln_dataset_image_size(l->ds);
    l->n_images = kiln_dataset_count(l->ds);
    if (l->n_images == 0)
        return kiln_err_set(err, KILN_EINVAL, "dataset %s has no images in split '%s'", dir,
                            kiln_split_name(o->split));
    if (l->o.out_size == 0)
        l->o.out_size = l->size;
    uint32_t bs = (uint32_t)o->batch_size;
    l->n_batches = o->drop_last ? l->n_images / bs : (l->n_images - 1) / bs + 1;
    if (l->n_batches == 0)
        return kiln_err_set(err, KILN_EINVAL,
                            "loader: batch_size %d with drop_last leaves no batch: split '%s' of "
                            "%s has %u images", o->batch_size, kiln_split_name(o->split), dir,
                            l->n_images);
    int prefetch = o->prefetch ? o->prefetch : 2 * o->threads;
    l->n_slots = (uint32_t)prefetch < l->n_batches ? prefetch : (int)l->n_batches;
    return KILN_OK;
}

/* The epoch order and the batch ring, all allocated once. */
static int alloc_slots(kiln_loader *l, kiln_err *err)
{
    size_t bs = (size_t)l->o.batch_size, side = (size_t)l->o.out_size;
    size_t x_bytes = bs * 3 * side * side * (l->o.u8 ? 1 : sizeof(float));
    l->order = calloc(l->n_images, sizeof *l->order);
    l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
    if (!l->order || !l->slots)
        goto nomem;
    for (int i = 0; i < l->n_slots; i++) {
        kiln_batch *b = &l->slots[i].batch;
        l->slots[i].number = NO_BATCH;
        b->channels = 3;
        b->height = b->width = l->o.out_size;
        void *x = malloc(x_bytes);
        if (l->o.u8)
            b->x_u8 = x;
        else
            b->x = x;
        b->labels = calloc(bs, sizeof *b->labels);
        b->indices = calloc(bs, sizeof *b->indices);
        if (!x || !b->labels || !b->indices)
            goto nomem;
    }
    return KILN_OK;
nomem:
    return kiln_err_set(err, KILN_ENOMEM,
                        "loader: out of memory for %d prefetch batches of %zu MiB each",
                        l->n_slots, x_bytes >> 20);
}

static int alloc_workers(kiln_loader *l, kiln_err *err)
{
    int s = l->size, out = l->o.out_size;
    size_t px_bytes = (size_t)out * out * 3;
    /* The whole image is the largest crop a worker ever resizes. */
    size_t scratch = kiln_resize_scratch_size(s, s, out, out);
    l->workers = calloc((size_t)l->o.threads, sizeof *l->workers);
    if (!l->workers)
        goto nomem;
    for (int i = 0; i < l->o.threads; i++) {
        worker *w = &l->workers[i];
        w->l = l;
        w->resized.width = w->resized.height = out;
        w->resized.pixels = malloc(px_bytes);
        w->scratch_size = scratch;
        w->scratch = malloc(scratch ? scratch : 1);
        if (!w->resized.pixels || !w->scratch)
            goto nomem;
    }
    return KILN_OK;
nomem:
    return kiln_err_set(err, KILN_ENOMEM, "loader: out of memory for %d workers' buffers",
                        l->o.threads);
}

/* Whatever was created is destroyed again on failure, so close only
 * needs `sync_ready`. */
static int init_sync(kiln_loader *l, kiln_err *err)
{
    int mu = pthread_mutex_init(&l->mu, NULL) == 0;
    int work = pthread_cond_init(&l->work_cv, NULL) == 0;
    int done = pthread_cond_init(&l->done_cv, NULL) == 0;
    atomic_init(&l->cancel, 0);
    if (mu && work && done) {
        l->sync_ready = 1;
        return KILN_OK;
    }
    if (done)
        pthread_cond_destroy(&l->done_cv);
    if (work)
        pthread_cond_destroy(&l->work_cv);
    if (mu)
        pthread_mutex_destroy(&l->mu);
    return kiln_err_set(err, KILN_EIO, "loader: cannot create a mutex or condition variable");
}

static int start_workers(kiln_loader *l, kiln_err *err)
{
    for (int i = 0; i < l->o.threads; i++) {
        int e = pthread_create(&l->workers[i].thread, NULL, worker_main, &l->workers[i]);
        if (e != 0)
            return kiln_err_errno(err, e, "loader: cannot start worker thread %d", i);
        l->n_started++;
    }
    return KILN_OK;
}

kiln_loader *kiln_loader_open(const char *dataset_dir, const kiln_loader_opts *opts,
                              kiln_err *err)
{
    kiln_loader *l = NULL;
    kiln_loader_opts defaults;
    if (!opts) {
        kiln_loader_opts_default(&defaults);
        opts = &defaults;
    }
    if (check_opts(dataset_dir, opts, err) != KILN_OK)
        goto fail;
    if (!(l = calloc(1, sizeof *l))) {
        kiln_err_set(err, KILN_ENOMEM, "loader: out of memory");
        goto fail;
    }
    l->o = *opts;
    if (!(l->ds = kiln_dataset_open(dataset_dir, opts->split, err)))
        goto fail;
    if (resolve_sizes(l, dataset_dir, err) != KILN_OK || build_lut(l, dataset_dir, err) != KILN_OK ||
        alloc_slots(l, err) != KILN_OK || alloc_workers(l, err) != KILN_OK ||
        init_sync(l, err) != KILN_OK || start_workers(l, err) != KILN_OK)
        goto fail;
    return l;
fail:
    kiln_loader_close(l);
    return NULL;
}

const float *kiln_loader_lut(const kiln_loader *l)
{
    return &l->lut[0][0];
}

uint32_t kiln_loader_num_images(const kiln_loader *l)
{
    return l->n_images;
}

uint32_t kiln_loader_batches_per_epoch(const kiln_loader *l)
{
    return l->n_batches;
}

/* ---------------- epochs and batches ---------------- */

/* Stop claims and wait until no worker is inside fill_batch. Holds mu. */
static void drain_locked(kiln_loader *l)
{
    l->active = 0;
    atomic_store(&l->cancel, 1);
    while (l->busy > 0)
        pthread_cond_wait(&l->done_cv, &l->mu);
    atomic_store(&l->cancel, 0);
}

static void make_order(kiln_loader *l, int epoch)
{
    for (uint32_t i = 0; i < l->n_images; i++)
        l->order[i] = i;
    if (l->o.shuffle) {
        kiln_rng rng;
        kiln_rng_derive(&rng, l->o.seed, (uint64_t)epoch, SHUFFLE_STREAM);
        kiln_rng_shuffle_u32(&rng, l->order, l->n_images);
    }
}

/* Also ends the consumer's hold on its last batch: slots are refilled. */
int kiln_loader_start_epoch(kiln_loader *l, int epoch, kiln_err *err)
{
    if (epoch < 0)
        return kiln_err_set(err, KILN_EINVAL, "loader: epoch must be >= 0, got %d", epoch);
    pthread_mutex_lock(&l->mu);
    drain_locked(l);
    /* No worker is filling and none can claim: order and slots are ours. */
    make_order(l, epoch);
    for (int i = 0; i < l->n_slots; i++)
        l->slots[i].number = NO_BATCH;
    l->epoch = epoch;
    l->next_claim = l->released = l->next_out = 0;
    l->holding = 0;
    l->active = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    l->epoch_started = 1;
    return KILN_OK;
}

int kiln_loader_next(kiln_loader *l, const kiln_batch **out, kiln_err *err)
{
    *out = NULL;
    /* Calling next first is taken as asking for epoch 0. */
    if (!l->epoch_started && kiln_loader_start_epoch(l, 0, err) != KILN_OK)
        return -1;
    pthread_mutex_lock(&l->mu);
    if (l->holding) {
        l->holding = 0;
        l->released = l->next_out;
        pthread_cond_broadcast(&l->work_cv);
    }
    if (l->next_out >= l->n_batches) {
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    slot *s = &l->slots[l->next_out % (uint64_t)l->n_slots];
    while (s->number != l->next_out)
        pthread_cond_wait(&l->done_cv, &l->mu);
    if (s->rc != KILN_OK) {
        if (err)
            *err = s->err;
        pthread_mutex_unlock(&l->mu);
        return -1;
    }
    l->next_out++;
    l->holding = 1;
    pthread_mutex_unlock(&l->mu);
    *out = &s->batch;
    return 1;
}

static void stop_workers(kiln_loader *l)
{
    if (!l->sync_ready)
        return;
    pthread_mutex_lock(&l->mu);
    drain_locked(l);
    l->quit = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_started; i++)
        pthread_join(l->workers[i].thread, NULL);
    pthread_cond_destroy(&l->done_cv);
    pthread_cond_destroy(&l->work_cv);
    pthread_mutex_destroy(&l->mu);
}

void kiln_loader_close(kiln_loader *l)
{
    if (!l)
        return;
    stop_workers(l);
    for (int i = 0; l->workers && i < l->o.threads; i++) {
        free(l->workers[i].resized.pixels);
        free(l->workers[i].scratch);
    }
    free(l->workers);
    for (int i = 0; l->slots && i < l->n_slots; i++) {
        free(l->slots[i].batch.x);
        free(l->slots[i].batch.x_u8);
        free(l->slots[i].batch.labels);
        free(l->slots[i].batch.indices);
    }
    free(l->slots);
    free(l->order);
    kiln_dataset_close(l->ds);
    free(l);
}
