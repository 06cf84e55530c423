/* tests/test_loader.c — lib/data/loader: epoch order, batching, the exact
 * normalisation, torchvision's RandomResizedCrop + flip, determinism
 * across thread counts, restarting epochs, and refused options.
 *
 * Datasets come from support/dsbuild: channels 0 and 1 of image i encode i
 * in every pixel, and channel 2 is a left-to-right ramp, so an output image
 * tells which image it came from, which part of it was cropped, and
 * whether it was flipped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "support/dsbuild.h"
#include "support/testutil.h"

/* dsbuild's default normalisation. */
static const double in_mean[3] = {0.485, 0.456, 0.406};
static const double in_std[3] = {0.229, 0.224, 0.225};


/* Build `train` images of size x size (and 4 val, 0 test) into dir. */
static void build(const char *dir, uint32_t train, int size)
{
    kt_ds_opts o;
    kt_ds_opts_default(&o);
    o.image_size = size;
    o.per_split[KILN_SPLIT_TRAIN] = train;
    o.per_split[KILN_SPLIT_VAL] = 4;
    o.shard_images = 16; /* several shards, so indexing crosses them */
    kt_ds_build(dir, &o);
}

static kiln_loader *open_ok(const char *dir, const kiln_loader_opts *o)
{
    kiln_err err = {0};
    kiln_loader *l = kiln_loader_open(dir, o, &err);
    if (!l)
        fail_msg("kiln_loader_open: %s", err.msg);
    return l;
}

static const kiln_batch *next_ok(kiln_loader *l)
{
    kiln_err err = {0};
    const kiln_batch *b = NULL;
    int rc = kiln_loader_next(l, &b, &err);
    if (rc != 1)
        fail_msg("kiln_loader_next returned %d: %s", rc, err.msg);
    return b;
}

static void expect_end(kiln_loader *l)
{
    kiln_err err = {0};
    const kiln_batch *b = (const kiln_batch *)1;
    assert_int_equal(kiln_loader_next(l, &b, &err), 0);
    assert_null(b);
}

static void start_ok(kiln_loader *l, int epoch)
{
    kiln_err err = {0};
    if (kiln_loader_start_epoch(l, epoch, &err) != KILN_OK)
        fail_msg("start_epoch: %s", err.msg);
}

/* The byte a normalised value came from (exact inverse up to rounding). */
static int byte_of(float v, int c)
{
    return (int)lrint((v * in_std[c] + in_mean[c]) * 255.0);
}

static float norm(int v, double mean, double std)
{
    return (float)((v / 255.0 - mean) / std);
}

static const float *plane(const kiln_batch *b, int k, int c)
{
    return b->x + ((size_t)k * 3 + (size_t)c) * b->height * b->width;
}

/* Image index encoded in output image k, checking planes 0 and 1 are
 * constant (a crop or resize of a constant plane stays constant). */
static uint32_t decode_image(const kiln_batch *b, int k)
{
    const float *p0 = plane(b, k, 0), *p1 = plane(b, k, 1);
    for (int i = 0; i < b->height * b->width; i++)
        if (p0[i] != p0[0] || p1[i] != p1[0])
            fail_msg("image %d: planes 0/1 not constant at %d", k, i);
    return kt_ds_decode_index((uint8_t)byte_of(p0[0], 0), (uint8_t)byte_of(p1[0], 1));
}

/* ---------------- a whole epoch, copied ---------------- */

typedef struct epoch_out {
    uint32_t n, batches;
    size_t floats;       /* per image */
    float *x;
    int32_t *labels;
    uint32_t *indices;
} epoch_out;

static void run_epoch(kiln_loader *l, int epoch, epoch_out *e)
{
    kiln_err err = {0};
    const kiln_batch *b;
    int rc;
    uint32_t cap = kiln_loader_num_images(l);
    memset(e, 0, sizeof *e);
    start_ok(l, epoch);
    while ((rc = kiln_loader_next(l, &b, &err)) == 1) {
        size_t floats = (size_t)3 * b->height * b->width;
        if (!e->x) {
            e->floats = floats;
            e->x = malloc(cap * floats * sizeof *e->x);
            e->labels = malloc(cap * sizeof *e->labels);
            e->indices = malloc(cap * sizeof *e->indices);
        }
        assert_true(e->n + (uint32_t)b->n <= cap);
        memcpy(e->x + e->n * floats, b->x, (size_t)b->n * floats * sizeof *b->x);
        memcpy(e->labels + e->n, b->labels, (size_t)b->n * sizeof *b->labels);
        memcpy(e->indices + e->n, b->indices, (size_t)b->n * sizeof *b->indices);
        e->n += (uint32_t)b->n;
        e->batches++;
    }
    if (rc != 0)
        fail_msg("next: %s", err.msg);
    assert_int_equal(e->batches, kiln_loader_batches_per_epoch(l));
}

static void epoch_free(epoch_out *e)
{
    free(e->x);
    free(e->labels);
    free(e->indices);
}

static int epochs_equal(const epoch_out *a, const epoch_out *b)
{
    return a->n == b->n && a->floats == b->floats &&
           memcmp(a->x, b->x, a->n * a->floats * sizeof *a->x) == 0 &&
           memcmp(a->labels, b->labels, a->n * sizeof *a->labels) == 0 &&
           memcmp(a->indices, b->indices, a->n * sizeof *a->indices) == 0;
}

static void aug_opts(kiln_loader_opts *o, int batch, int out, int threads)
{
    kiln_loader_opts_default(o);
    o->batch_size = batch;
    o->out_size = out;
    o->threads = threads;
    o->shuffle = 1;
    o->random_resized_crop = 1;
    o->horizontal_flip = 1;
}

/* ---------------- tests ---------------- */

static void test_defaults(void **state)
{
    (void)state;
    kiln_loader_opts o;
    kiln_loader_opts_default(&o);
    assert_int_equal(o.split, KILN_SPLIT_TRAIN);
    assert_int_equal(o.batch_size, 32);
    assert_int_equal(o.threads, 1);
    assert_int_equal(o.out_size, 0);
    assert_int_equal(o.prefetch, 0);
    assert_true(o.seed == 42);
    assert_false(o.random_resized_crop || o.horizontal_flip || o.drop_last);
    assert_true(o.scale_min == 0.08 && o.scale_max == 1.0);
    assert_true(o.ratio_min == 3.0 / 4.0 && o.ratio_max == 4.0 / 3.0);
}

/* No augmentation, shuffled: every image once, whole and exact, labelled. */
static void test_every_image_once(void **state)
{
    const char *dir = *state;
    kiln_loader_opts o;
    build(dir, 37, 8);
    kiln_loader_opts_default(&o);
    o.batch_size = 5;
    o.threads = 3;
    o.shuffle = 1;
    kiln_loader *l = open_ok(dir, &o);
    assert_int_equal(kiln_loader_num_images(l), 37);
    assert_int_equal(kiln_loader_batches_per_epoch(l), 8);
    int seen[37] = {0}, in_order = 1;
    uint32_t pos = 0;
    start_ok(l, 0);
    for (int bn = 0; bn < 8; bn++) {
        const kiln_batch *b = next_ok(l);
        assert_int_equal(b->n, bn < 7 ? 5 : 2);
        assert_int_equal(b->channels, 3);
        assert_int_equal(b->height, 8);
        assert_int_equal(b->width, 8);
        for (int k = 0; k < b->n; k++, pos++) {
            uint32_t idx = b->indices[k];
            assert_true(idx < 37);
            seen[idx]++;
            in_order &= idx == pos;
            assert_int_equal(decode_image(b, k), idx);
            assert_int_equal(b->labels[k], (int32_t)kt_ds_label(idx, 3));
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < 8; y++)
                    for (int x = 0; x < 8; x++) {
                        int v = kt_ds_default_pixel(NULL, idx, y, x, c, 8);
                        assert_true(plane(b, k, c)[y * 8 + x] == norm(v, in_mean[c], in_std[c]));
                    }
        }
    }
    expect_end(l);
    expect_end(l);
    for (int i = 0; i < 37; i++)
        assert_int_equal(seen[i], 1);
    assert_false(in_order);
    kiln_loader_close(l);
}

static void epoch_order(const char *dir, uint64_t seed, int shuffle, int epoch, uint32_t *order,
                        uint32_t n)
{
    kiln_loader_opts o;
    epoch_out e;
    kiln_loader_opts_default(&o);
    o.batch_size = 7;
    o.threads = 2;
    o.seed = seed;
    o.shuffle = shuffle;
    kiln_loader *l = open_ok(dir, &o);
    run_epoch(l, epoch, &e);
    assert_int_equal(e.n, n);
    memcpy(order, e.indices, n * sizeof *order);
    epoch_free(&e);
    kiln_loader_close(l);
}

static void test_epoch_orders(void **state)
{
    const char *dir = *state;
    enum { N = 50 };
    uint32_t a0[N], a1[N], b0[N], c0[N], id0[N], id1[N];
    build(dir, N, 4);
    epoch_order(dir, 42, 1, 0, a0, N);
    epoch_order(dir, 42, 1, 1, a1, N);
    epoch_order(dir, 42, 1, 0, b0, N);
    epoch_order(dir, 43, 1, 0, c0, N);
    assert_memory_equal(a0, b0, sizeof a0);
    assert_memory_not_equal(a0, a1, sizeof a0);
    assert_memory_not_equal(a0, c0, sizeof a0);
    epoch_order(dir, 42, 0, 0, id0, N);
    epoch_order(dir, 42, 0, 3, id1, N);
    for (uint32_t i = 0; i < N; i++)
        assert_true(id0[i] == i && id1[i] == i);
    /* The same loader gives epoch 0's order again after epoch 1. */
    kiln_loader_opts o;
    epoch_out e0, e1, again;
    kiln_loader_opts_default(&o);
    o.shuffle = 1;
    kiln_loader *l = open_ok(dir, &o);
    run_epoch(l, 0, &e0);
    run_epoch(l, 1, &e1);
    run_epoch(l, 0, &again);
    assert_memory_equal(e0.indices, a0, sizeof a0);
    assert_memory_equal(e1.indices, a1, sizeof a1);
    assert_true(epochs_equal(&e0, &again));
    epoch_free(&e0);
    epoch_free(&e1);
    epoch_free(&again);
    kiln_loader_close(l);
}

/* With augmentation on, thread count and prefetch depth change no bit. */
static void test_threads_bit_identical(void **state)
{
    const char *dir = *state;
    const int cfg[][2] = {{1, 1}, {4, 0}, {4, 1}, {3, 5}, {8, 2}}; /* threads, prefetch */
    enum { N_CFG = sizeof cfg / sizeof cfg[0] };
    epoch_out ref[2], got;
    build(dir, 45, 20);
    for (int i = 0; i < N_CFG; i++) {
        kiln_loader_opts o;
        aug_opts(&o, 6, 12, cfg[i][0]);
        o.prefetch = cfg[i][1];
        kiln_loader *l = open_ok(dir, &o);
        for (int ep = 0; ep < 2; ep++) {
            run_epoch(l, ep, i == 0 ? &ref[ep] : &got);
            if (i > 0) {
                if (!epochs_equal(&ref[ep], &got))
                    fail_msg("threads=%d prefetch=%d epoch %d differs from threads=1",
                             cfg[i][0], cfg[i][1], ep);
                epoch_free(&got);
            }
        }
        kiln_loader_close(l);
    }
    epoch_free(&ref[0]);
    epoch_free(&ref[1]);
}

/* opts.u8: the same augmented pixels as bytes; through kiln_loader_lut
 * they are the float batches bit for bit, and no floats are made. */
static void test_u8_batches_match_floats(void **state)
{
    const char *dir = *state;
    build(dir, 13, 20);
    kiln_loader_opts o;
    aug_opts(&o, 5, 12, 2);
    kiln_loader *lf = open_ok(dir, &o);
    o.u8 = 1;
    kiln_loader *lb = open_ok(dir, &o);
    const float *lut = kiln_loader_lut(lb);
    assert_float_equal(lut[0 * 256 + 0], (float)((0 - in_mean[0]) / in_std[0]), 0);
    assert_float_equal(lut[2 * 256 + 255], (float)((1 - in_mean[2]) / in_std[2]), 0);
    kiln_err err = {0};
    for (int ep = 0; ep < 2; ep++) {
        assert_int_equal(kiln_loader_start_epoch(lf, ep, &err), KILN_OK);
        assert_int_equal(kiln_loader_start_epoch(lb, ep, &err), KILN_OK);
        int batches = 0;
        for (; batches < 3; batches++) {
            const kiln_batch *bf = next_ok(lf), *bb = next_ok(lb);
            assert_null(bb->x);
            assert_null(bf->x_u8);
            assert_int_equal(bb->n, bf->n);
            assert_memory_equal(bb->labels, bf->labels, (size_t)bf->n * sizeof *bf->labels);
            size_t plane = (size_t)bf->height * bf->width;
            for (size_t i = 0; i < (size_t)bf->n * 3 * plane; i++) {
                size_t c = i / plane % 3;
                if (lut[c * 256 + bb->x_u8[i]] != bf->x[i])
                    fail_msg("epoch %d batch %d element %zu: byte %u maps to %g, float batch %g",
                             ep, batches, i, bb->x_u8[i], lut[c * 256 + bb->x_u8[i]], bf->x[i]);
            }
        }
        expect_end(lf);
        expect_end(lb);
    }
    kiln_loader_close(lf);
    kiln_loader_close(lb);
}

/* Augmentation differs between epochs even in the same order. */
static void test_augmentation_varies_by_epoch(void **state)
{
    const char *dir = *state;
    kiln_loader_opts o;
    epoch_out e0, e1;
    build(dir, 20, 20);
    aug_opts(&o, 4, 12, 2);
    o.shuffle = 0;
    kiln_loader *l = open_ok(dir, &o);
    run_epoch(l, 0, &e0);
    run_epoch(l, 1, &e1);
    assert_memory_equal(e0.indices, e1.indices, e0.n * sizeof *e0.indices);
    assert_memory_not_equal(e0.x, e1.x, e0.n * e0.floats * sizeof *e0.x);
    epoch_free(&e0);
    epoch_free(&e1);
    kiln_loader_close(l);
}

static uint8_t const_pixel(void *ctx, uint32_t index, int y, int x, int c, int size)
{
    return ((const uint8_t *)ctx)[c];
}

/* (x/255 - mean) / std, in double then rounded once, whatever the path:
 * direct copy, resize, or crop + resize + flip. */
static void test_normalisation_exact(void **state)
{
    const char *dir = *state;
    uint8_t value[3] = {200, 17, 99};
    const double mean[3] = {0.3, 0.5, 0.7}, std[3] = {0.2, 0.25, 0.1};
    kt_ds_opts d;
    kt_ds_opts_default(&d);
    d.image_size = 8;
    d.per_split[KILN_SPLIT_TRAIN] = 6;
    memcpy(d.mean, mean, sizeof mean);
    memcpy(d.std, std, sizeof std);
    d.pixel = const_pixel;
    d.pixel_ctx = value;
    kt_ds_build(dir, &d);
    for (int mode = 0; mode < 3; mode++) {
        kiln_loader_opts o;
        kiln_loader_opts_default(&o);
        o.batch_size = 6;
        o.out_size = mode == 0 ? 0 : 5;
        o.random_resized_crop = o.horizontal_flip = mode == 2;
        kiln_loader *l = open_ok(dir, &o);
        const kiln_batch *b = next_ok(l);
        assert_int_equal(b->n, 6);
        assert_int_equal(b->width, mode == 0 ? 8 : 5);
        for (int k = 0; k < 6; k++)
            for (int c = 0; c < 3; c++) {
                float want = norm(value[c], mean[c], std[c]);
                assert_true(fabsf(want - (float)((value[c] / 255.0f - mean[c]) / std[c])) < 1e-5f);
                for (int i = 0; i < b->width * b->height; i++)
                    if (plane(b, k, c)[i] != want)
                        fail_msg("mode %d channel %d: %.9g, want %.9g", mode, c,
                                 plane(b, k, c)[i], want);
            }
        kiln_loader_close(l);
    }
}

/* Flip alone: a mirror of the exact image, decided by the first draw of
 * the image's stream, about half the time. */
static void test_flip_only(void **state)
{
    const char *dir = *state;
    enum { N = 200, S = 16 };
    kiln_loader_opts o;
    epoch_out e;
    build(dir, N, S);
    kiln_loader_opts_default(&o);
    o.batch_size = 32;
    o.threads = 2;
    o.shuffle = 1;
    o.horizontal_flip = 1;
    kiln_loader *l = open_ok(dir, &o);
    run_epoch(l, 2, &e);
    int flips = 0;
    for (uint32_t p = 0; p < N; p++) {
        const float *ramp = e.x + p * e.floats + 2 * S * S;
        kiln_rng rng;
        kiln_rng_derive(&rng, o.seed, 2, p);
        int flipped = kiln_rng_uniform(&rng) < 0.5;
        flips += flipped;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int src_x = flipped ? S - 1 - x : x;
                int v = kt_ds_default_pixel(NULL, e.indices[p], y, src_x, 2, S);
                assert_true(ramp[y * S + x] == norm(v, in_mean[2], in_std[2]));
            }
    }
    assert_in_range(flips, 70, 130);
    epoch_free(&e);
    kiln_loader_close(l);
}

/* torchvision's RandomResizedCrop.get_params, written from its source. */
typedef struct crop {
    int x, y, w, h;
} crop;

static crop torchvision_crop(kiln_rng *rng, int W, int H, const kiln_loader_opts *o)
{
    double area = (double)W * H;
    for (int t = 0; t < 10; t++) {
        double target = area * (o->scale_min + (o->scale_max - o->scale_min) *
                                                   kiln_rng_uniform(rng));
        double lr = log(o->ratio_min) + (log(o->ratio_max) - log(o->ratio_min)) *
                                            kiln_rng_uniform(rng);
        double ar = exp(lr);
        int w = (int)nearbyint(sqrt(target * ar)), h = (int)nearbyint(sqrt(target / ar));
        if (0 < w && w <= W && 0 < h && h <= H) {
            crop c = {0, 0, w, h};
            c.y = (int)kiln_rng_below(rng, (uint64_t)(H - h + 1));
            c.x = (int)kiln_rng_below(rng, (uint64_t)(W - w + 1));
            return c;
        }
    }
    return (crop){0, 0, W, H}; /* square images: the ratio fallback is the whole image */
}

/* Crop + resize + flip: every output is the predicted crop of the right
 * image, values stay in the image's range, and the crop sizes spread as
 * torchvision's do (mean area ~0.48 of the image, rarely the whole). */
static void test_random_resized_crop(void **state)
{
    const char *dir = *state;
    enum { N = 240, S = 64, OUT = 32 };
    const double step = 255.0 / (S - 1);
    kiln_loader_opts o;
    epoch_out e;
    build(dir, N, S);
    aug_opts(&o, 16, OUT, 2);
    kiln_loader *l = open_ok(dir, &o);
    run_epoch(l, 5, &e);
    double area_sum = 0;
    int full = 0, narrow = 0, flips = 0;
    for (uint32_t p = 0; p < N; p++) {
        kiln_rng rng;
        kiln_rng_derive(&rng, o.seed, 5, p);
        crop c = torchvision_crop(&rng, S, S, &o);
        int flipped = kiln_rng_uniform(&rng) < 0.5;
        const float *ramp = e.x + p * e.floats + 2 * OUT * OUT;
        kiln_batch one = {.n = 1, .height = OUT, .width = OUT, .x = e.x + p * e.floats};
        assert_int_equal(decode_image(&one, 0), e.indices[p]);
        int lo = 255, hi = 0;
        for (int i = 0; i < OUT * OUT; i++) {
            int v = byte_of(ramp[i], 2);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        /* The resize filter reaches about one output pixel's footprint in. */
        double tol = ((double)c.w / OUT + 2) * step;
        if (fabs(lo - c.x * step) > tol || fabs(hi - (c.x + c.w - 1) * step) > tol)
            fail_msg("image at %u: ramp %d..%d, crop x %d w %d", p, lo, hi, c.x, c.w);
        int left = byte_of(ramp[0], 2), right = byte_of(ramp[OUT - 1], 2);
        assert_true(flipped ? left > right : left < right);
        area_sum += (double)c.w * c.h / (S * S);
        full += c.w == S && c.h == S;
        narrow += hi - lo < 0.6 * 255;
        flips += flipped;
    }
    assert_true(area_sum / N > 0.38 && area_sum / N < 0.58);
    assert_in_range(full, 0, N / 10);
    assert_in_range(narrow, N / 5, N);
    assert_in_range(flips, N / 4, 3 * N / 4);
    epoch_free(&e);
    kiln_loader_close(l);
}

/* scale = ratio = 1 always crops the whole image: the same bits as the
 * plain resize (and the plain copy at the stored size). */
static void test_full_crop_equals_resize(void **state)
{
    const char *dir = *state;
    build(dir, 10, 12);
    for (int out = 12; out >= 9; out -= 3) {
        kiln_loader_opts o;
        epoch_out plain, cropped;
        kiln_loader_opts_default(&o);
        o.batch_size = 3;
        o.out_size = out;
        kiln_loader *l = open_ok(dir, &o);
        run_epoch(l, 0, &plain);
        kiln_loader_close(l);
        o.random_resized_crop = 1;
        o.scale_min = o.scale_max = 1;
        o.ratio_min = o.ratio_max = 1;
        l = open_ok(dir, &o);
        run_epoch(l, 0, &cropped);
        kiln_loader_close(l);
        assert_true(epochs_equal(&plain, &cropped));
        epoch_free(&plain);
        epoch_free(&cropped);
    }
}

static void test_drop_last(void **state)
{
    const char *dir = *state;
    kiln_loader_opts o;
    epoch_out e0, e1;
    build(dir, 23, 4);
    kiln_loader_opts_default(&o);
    o.batch_size = 5;
    o.shuffle = 1;
    o.threads = 2;
    kiln_loader *l = open_ok(dir, &o);
    assert_int_equal(kiln_loader_batches_per_epoch(l), 5);
    run_epoch(l, 0, &e0);
    assert_int_equal(e0.n, 23);
    epoch_free(&e0);
    kiln_loader_close(l);

    o.drop_last = 1;
    l = open_ok(dir, &o);
    assert_int_equal(kiln_loader_batches_per_epoch(l), 4);
    start_ok(l, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(next_ok(l)->n, 5);
    expect_end(l);
    run_epoch(l, 0, &e0);
    run_epoch(l, 1, &e1);
    assert_int_equal(e0.n, 20);
    /* A new order each epoch drops different images. */
    assert_memory_not_equal(e0.indices, e1.indices, 20 * sizeof *e0.indices);
    epoch_free(&e0);
    epoch_free(&e1);
    kiln_loader_close(l);
}

/* Restarting in the middle of an epoch (with workers busy) then running
 * a whole epoch gives exactly what a fresh loader gives. */
static void test_restart_mid_epoch(void **state)
{
    const char *dir = *state;
    kiln_loader_opts o;
    epoch_out ref[3], got;
    build(dir, 41, 12);
    aug_opts(&o, 4, 10, 1);
    kiln_loader *l = open_ok(dir, &o);
    for (int ep = 0; ep < 3; ep++)
        run_epoch(l, ep, &ref[ep]);
    kiln_loader_close(l);

    o.threads = 3;
    o.prefetch = 2;
    l = open_ok(dir, &o);
    /* next before any start_epoch is epoch 0. */
    assert_int_equal(next_ok(l)->indices[0], ref[0].indices[0]);
    for (int round = 0; round < 30; round++) {
        int ep = round % 3;
        start_ok(l, ep);
        if (round % 4 == 0)
            start_ok(l, ep); /* twice in a row */
        for (int k = 0; k < round % 7; k++)
            next_ok(l);
    }
    for (int ep = 2; ep >= 0; ep--) {
        run_epoch(l, ep, &got);
        assert_true(epochs_equal(&ref[ep], &got));
        epoch_free(&got);
        expect_end(l);
    }
    /* Close with an epoch just started: workers are mid-batch. */
    start_ok(l, 1);
    next_ok(l);
    kiln_loader_close(l);
    for (int ep = 0; ep < 3; ep++)
        epoch_free(&ref[ep]);
}

static void expect_open_fails(const char *dir, const kiln_loader_opts *o, kiln_code code,
                              const char *needle)
{
    kiln_err err = {0};
    assert_null(kiln_loader_open(dir, o, &err));
    if (err.code != code || !strstr(err.msg, needle))
        fail_msg("want %s with '%s', got %s: %s", kiln_code_name(code), needle,
                 kiln_code_name(err.code), err.msg);
}

typedef struct bad_opt {
    const char *needle;
    void (*set)(kiln_loader_opts *o);
} bad_opt;

static void batch_zero(kiln_loader_opts *o) { o->batch_size = 0; }
static void batch_neg(kiln_loader_opts *o) { o->batch_size = -3; }
static void threads_zero(kiln_loader_opts *o) { o->threads = 0; }
static void threads_many(kiln_loader_opts *o) { o->threads = 257; }
static void prefetch_neg(kiln_loader_opts *o) { o->prefetch = -1; }
static void out_neg(kiln_loader_opts *o) { o->out_size = -1; }
static void out_huge(kiln_loader_opts *o) { o->out_size = 100000; }
static void scale_zero(kiln_loader_opts *o) { o->random_resized_crop = 1; o->scale_min = 0; }
static void scale_swapped(kiln_loader_opts *o)
{
    o->random_resized_crop = 1;
    o->scale_min = 0.9;
    o->scale_max = 0.5;
}
static void scale_above_one(kiln_loader_opts *o) { o->random_resized_crop = 1; o->scale_max = 1.5; }
static void ratio_swapped(kiln_loader_opts *o)
{
    o->random_resized_crop = 1;
    o->ratio_min = 2;
    o->ratio_max = 1;
}
static void ratio_nan(kiln_loader_opts *o) { o->random_resized_crop = 1; o->ratio_max = NAN; }

static void test_bad_options(void **state)
{
    const char *dir = *state;
    const bad_opt bad[] = {
        {"batch_size must be in 1..", batch_zero}, {"batch_size", batch_neg},
        {"threads must be in 1..256, got 0", threads_zero}, {"threads", threads_many},
        {"prefetch", prefetch_neg}, {"out_size", out_neg}, {"out_size", out_huge},
        {"scale", scale_zero}, {"scale", scale_swapped}, {"scale max 1.5", scale_above_one},
        {"ratio", ratio_swapped}, {"ratio", ratio_nan},
    };
    build(dir, 10, 4);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kiln_loader_opts o;
        kiln_loader_opts_default(&o);
        bad[i].set(&o);
        expect_open_fails(dir, &o, KILN_EINVAL, bad[i].needle);
    }
    /* Scale and ratio are only checked when the crop is on. */
    kiln_loader_opts o;
    kiln_loader_opts_default(&o);
    o.scale_min = 0;
    o.ratio_min = -1;
    kiln_loader_close(open_ok(dir, &o));
}

static void test_bad_dataset_or_epoch(void **state)
{
    const char *dir = *state;
    kiln_loader_opts o;
    kiln_err err = {0};
    char want[4200];
    build(dir, 10, 4);
    kiln_loader_opts_default(&o);
    o.split = KILN_SPLIT_TEST;
    snprintf(want, sizeof want, "dataset %s has no images in split 'test'", dir);
    expect_open_fails(dir, &o, KILN_EINVAL, want);
    o.split = 7;
    expect_open_fails(dir, &o, KILN_EINVAL, "split");
    o.split = KILN_SPLIT_VAL; /* 4 images */
    o.batch_size = 5;
    o.drop_last = 1;
    expect_open_fails(dir, &o, KILN_EINVAL, "drop_last leaves no batch");
    char *missing = kt_path(dir, "nope");
    kiln_loader_opts_default(&o);
    assert_null(kiln_loader_open(missing, &o, &err));
    assert_non_null(strstr(err.msg, "nope"));
    free(missing);

    assert_null(kiln_loader_open(NULL, &o, &err));
    assert_int_equal(err.code, KILN_EINVAL);
    /* NULL options are the defaults: batch 32 over 10 images is one batch. */
    kiln_loader *l = open_ok(dir, NULL);
    assert_int_equal(kiln_loader_batches_per_epoch(l), 1);
    assert_int_equal(next_ok(l)->n, 10);
    kiln_loader_close(l);

    l = open_ok(dir, &o);
    assert_int_equal(kiln_loader_start_epoch(l, -1, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "epoch"));
    kiln_loader_close(l);
    kiln_loader_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test_setup_teardown(test_every_image_once, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_epoch_orders, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_threads_bit_identical, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_augmentation_varies_by_epoch, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_u8_batches_match_floats, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_normalisation_exact, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_flip_only, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_random_resized_crop, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_full_crop_equals_resize, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_drop_last, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_restart_mid_epoch, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_bad_options, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_bad_dataset_or_epoch, kt_setup_tmpdir, kt_teardown_tmpdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
