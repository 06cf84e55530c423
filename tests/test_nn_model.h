/* tests/test_nn_model.h — helpers shared by test_nn_model.c and
 * test_nn_model_train.c (lib/nn/efficientnet on the CPU backend): a fixture
 * with a temporary directory and a 2-thread CPU backend, models, inputs
 * and host copies. Everything is static inline so each test program takes
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

#endif
