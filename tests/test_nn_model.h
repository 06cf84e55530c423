/* tests/test_nn_model.h — helpers shared by test_nn_model.c and
 * test_nn_model_train.c (lib/nn/efficientnet on the CPU backend): a fixture
 * with a temporary directory and a 2-thread CPU backend (or cpu-bf16),
 * models, inputs, host copies and a synthetic batch with its loss. Everything is static inline so each test program takes
 * only what it uses. */
#ifndef KILN_TEST_NN_MODEL_H
#define KILN_TEST_NN_MODEL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "nn/backend.h"
#include "nn/efficientnet.h"
#include "support/testutil.h"

typedef struct fixture {
    char *dir;
    kiln_nn_backend *be;
} fixture;

static inline int kt_model_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kiln_err err = {0};
    f->dir = kt_mkdtemp();
    f->be = kiln_nn_cpu_create(2, &err);
    if (!f->be)
        fail_msg("%s", err.msg);
    *state = f;
    return 0;
}

/* The same on "cpu-bf16": activations in bf16. */
static inline int kt_model_setup_bf16(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kiln_err err = {0};
    f->dir = kt_mkdtemp();
    f->be = kiln_nn_backend_open("cpu-bf16", 2, NULL, &err);
    if (!f->be)
        fail_msg("%s", err.msg);
    *state = f;
    return 0;
}

static inline int kt_model_teardown(void **state)
{
    fixture *f = *state;
    kiln_nn_backend_destroy(f->be);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

static inline kiln_effnet *make(fixture *f, const char *variant, int classes, uint64_t seed)
{
    kiln_err err = {0};
    kiln_effnet *m = kiln_effnet_create(variant, classes, f->be, &err);
    if (!m)
        fail_msg("%s", err.msg);
    if (seed && kiln_effnet_init(m, seed, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    return m;
}

static inline float *download(fixture *f, const float *dev, size_t count)
{
    float *host = malloc((count ? count : 1) * sizeof *host);
    kiln_err err = {0};
    if (f->be->ops->download(f->be, host, dev, count * sizeof *host, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    return host;
}

static inline void *upload(fixture *f, const void *host, size_t bytes)
{
    kiln_err err = {0};
    void *dev = f->be->ops->alloc(f->be, bytes, &err);
    if (!dev || f->be->ops->upload(f->be, dev, host, bytes, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    return dev;
}

/* A normal random input [n, 3, h, w] in backend memory. */
static inline float *random_input(fixture *f, int n, int h, int w, uint64_t seed)
{
    size_t count = (size_t)n * 3 * h * w;
    float *host = malloc(count * sizeof *host);
    kiln_rng rng;
    kiln_rng_seed(&rng, seed);
    for (size_t i = 0; i < count; i++)
        host[i] = (float)(kiln_rng_uniform(&rng) * 2.0 - 1.0) * 1.7f;
    float *dev = upload(f, host, count * sizeof *host);
    free(host);
    return dev;
}

static inline const float *forward(kiln_effnet *m, const float *x, int train, uint64_t seed)
{
    kiln_err err = {0};
    const float *logits = kiln_effnet_forward(m, x, train, seed, &err);
    if (!logits)
        fail_msg("%s", err.msg);
    return logits;
}

static inline void plan(kiln_effnet *m, int n, int h, int w)
{
    kiln_err err = {0};
    if (kiln_effnet_plan(m, n, h, w, &err) != KILN_OK)
        fail_msg("%s", err.msg);
}

static inline int same_floats(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

/* All parameters, in parameter order, as one host array. */
static inline float *all_params(fixture *f, kiln_effnet *m, size_t *count)
{
    *count = kiln_effnet_flat_floats(m);
    return download(f, kiln_effnet_params_flat(m), *count);
}

/* --- a batch with its loss buffers (test_nn_model_train, test_nn_cpu_bf16) --- */

typedef struct batch {
    int n, h, w, classes;
    float *x;          /* backend */
    int32_t *labels;   /* backend */
    int32_t *host_labels;
    float *probs, *dlogits;
} batch;

static inline void batch_free(fixture *f, batch *b)
{
    f->be->ops->release(f->be, b->x);
    f->be->ops->release(f->be, b->labels);
    f->be->ops->release(f->be, b->probs);
    f->be->ops->release(f->be, b->dlogits);
    free(b->host_labels);
}

static inline void batch_buffers(fixture *f, batch *b)
{
    kiln_err err = {0};
    b->labels = upload(f, b->host_labels, (size_t)b->n * sizeof(int32_t));
    b->probs = f->be->ops->alloc(f->be, (size_t)b->n * b->classes * sizeof(float), &err);
    b->dlogits = f->be->ops->alloc(f->be, (size_t)b->n * b->classes * sizeof(float), &err);
    assert_non_null(b->probs);
    assert_non_null(b->dlogits);
}

/* Train forward + label-smoothed cross-entropy (+ backward when asked). */
static inline double loss_of(fixture *f, kiln_effnet *m, batch *b, uint64_t seed, int backward,
                      float **logits)
{
    kiln_err err = {0};
    const float *l = forward(m, b->x, 1, seed);
    double loss = 0;
    if (f->be->ops->xent_forward_backward(f->be, b->n, b->classes, l, b->labels, 0.1f, b->probs,
                                          b->dlogits, &loss, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    if (backward && kiln_effnet_backward(m, b->dlogits, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    if (logits)
        *logits = download(f, l, (size_t)b->n * b->classes);
    return loss;
}

/* 32 images of 32x32 from 4 synthetic classes (stripes of two
 * orientations, a checkerboard, a bright centre) with noise. */
static inline void synthetic_batch(fixture *f, batch *b)
{
    b->n = 32;
    b->h = b->w = 32;
    b->classes = 4;
    size_t plane = (size_t)b->h * b->w, count = (size_t)b->n * 3 * plane;
    float *host = malloc(count * sizeof *host);
    b->host_labels = malloc((size_t)b->n * sizeof *b->host_labels);
    kiln_rng rng;
    kiln_rng_seed(&rng, 42);
    for (int i = 0; i < b->n; i++) {
        int cls = i % 4;
        b->host_labels[i] = cls;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < b->h; y++)
                for (int x = 0; x < b->w; x++) {
                    float v;
                    if (cls == 0)
                        v = (y / 4) % 2 ? 1.0f : -1.0f;
                    else if (cls == 1)
                        v = (x / 4) % 2 ? 1.0f : -1.0f;
                    else if (cls == 2)
                        v = ((x / 4) + (y / 4)) % 2 ? 1.0f : -1.0f;
                    else
                        v = (abs(x - 16) < 8 && abs(y - 16) < 8) ? 1.5f : -0.5f;
                    v += (float)(kiln_rng_uniform(&rng) - 0.5);
                    host[(size_t)(i * 3 + c) * plane + (size_t)y * b->w + x] = v;
                }
    }
    b->x = upload(f, host, count * sizeof *host);
    free(host);
    batch_buffers(f, b);
}

static inline int accuracy(const batch *b, const float *logits)
{
    int right = 0;
    for (int i = 0; i < b->n; i++) {
        int best = 0;
        for (int c = 1; c < b->classes; c++)
            if (logits[i * b->classes + c] > logits[i * b->classes + best])
                best = c;
        right += best == b->host_labels[i];
    }
    return right;
}

#endif
