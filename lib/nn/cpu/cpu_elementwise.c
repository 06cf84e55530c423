/* lib/nn/cpu/cpu_elementwise.c — activations, arithmetic, masks and the
 * squared norm, split into aligned chunks over the pool. */
#include <math.h>
#include <string.h>

#include "nn/cpu/cpu_internal.h"

/* Below this many floats a pass is not worth waking the pool. */
#define EW_MIN_PER_ITEM 16384
/* sum_squares adds fixed chunks in order, so the result does not depend
 * on the thread count. */
#define SUMSQ_CHUNK 65536

typedef enum ew_kind {
    EW_SILU,
    EW_SILU_BWD,
    EW_SIGMOID,
    EW_SIGMOID_BWD,
    EW_ADD,
    EW_MUL,
    EW_SCALE,
    EW_MASK,
    EW_SUMSQ,
} ew_kind;

typedef struct ew_ctx {
    cpu_impl *c;
    ew_kind kind;
    size_t count, chunk;
    const float *a, *b;
    float *y;
    float alpha;
    uint64_t seed, offset;
    double *partial;
} ew_ctx;

static void mask_range(size_t n, float p, uint64_t seed, uint64_t first, float *mask)
{
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++)
        mask[i] = kiln_nn_mask_uniform(seed, first + i) >= p ? keep : 0.0f;
}

static int ew_item(void *arg, size_t i, int worker)
{
    (void)worker;
    ew_ctx *e = arg;
    const cpu_kernels *k = &e->c->k;
    size_t lo, hi;
    cpu_item_range(i, e->chunk, e->count, &lo, &hi);
    size_t n = hi - lo;
    const float *a = e->a + lo, *b = e->b ? e->b + lo : NULL;
    float *y = e->y ? e->y + lo : NULL;
    switch (e->kind) {
    case EW_SILU:
        k->silu(n, a, y);
        break;
    case EW_SILU_BWD:
        k->silu_backward(n, a, b, y);
        break;
    case EW_SIGMOID:
        k->sigmoid(n, a, y);
        break;
    case EW_SIGMOID_BWD:
        k->sigmoid_backward(n, a, b, y);
        break;
    case EW_ADD:
        k->add(n, a, b, y);
        break;
    case EW_MUL:
        k->mul(n, a, b, y);
        break;
    case EW_SCALE:
        k->affine(n, a, e->alpha, 0.0f, y);
        break;
    case EW_MASK:
        mask_range(n, e->alpha, e->seed, e->offset + lo, y);
        break;
    case EW_SUMSQ:
        e->partial[i] = k->sum_sq(n, a);
        break;
    }
    return 0;
}

static void ew_run(ew_ctx *e)
{
    e->chunk = cpu_chunk_floats(e->c, e->count, EW_MIN_PER_ITEM);
    cpu_run(e->c, cpu_div_up(e->count, e->chunk), ew_item, e);
}

static int ew(kiln_nn_backend *be, const char *op, ew_kind kind, size_t count, const float *a,
              const float *b, float *y, float alpha, kiln_err *err)
{
    int needs_b = kind == EW_SILU_BWD || kind == EW_SIGMOID_BWD || kind == EW_ADD || kind == EW_MUL;
    int rc = kiln_nn_check_ew(op, count, needs_b ? 2 : 1, a, b, y, err);
    if (rc || count == 0)
        return rc;
    ew_ctx e = {
        .c = cpu_of(be), .kind = kind, .count = count, .a = a, .b = b, .y = y, .alpha = alpha};
    ew_run(&e);
    return KILN_OK;
}

int cpu_silu_forward(kiln_nn_backend *be, size_t count, const float *x, float *y, kiln_err *err)
{
    return ew(be, "silu_forward", EW_SILU, count, x, NULL, y, 0, err);
}

int cpu_silu_backward(kiln_nn_backend *be, size_t count, const float *x, const float *dy, float *dx,
                      kiln_err *err)
{
    return ew(be, "silu_backward", EW_SILU_BWD, count, x, dy, dx, 0, err);
}

int cpu_sigmoid_forward(kiln_nn_backend *be, size_t count, const float *x, float *y, kiln_err *err)
{
    return ew(be, "sigmoid_forward", EW_SIGMOID, count, x, NULL, y, 0, err);
}

int cpu_sigmoid_backward(kiln_nn_backend *be, size_t count, const float *y, const float *dy,
                         float *dx, kiln_err *err)
{
    return ew(be, "sigmoid_backward", EW_SIGMOID_BWD, count, y, dy, dx, 0, err);
}

int cpu_add(kiln_nn_backend *be, size_t count, const float *a, const float *b, float *y,
            kiln_err *err)
{
    return ew(be, "add", EW_ADD, count, a, b, y, 0, err);
}

int cpu_mul(kiln_nn_backend *be, size_t count, const float *x, const float *mask, float *y,
            kiln_err *err)
{
    return ew(be, "mul", EW_MUL, count, x, mask, y, 0, err);
}

int cpu_scale(kiln_nn_backend *be, size_t count, float alpha, float *x, kiln_err *err)
{
    return ew(be, "scale", EW_SCALE, count, x, NULL, x, alpha, err);
}

int cpu_mask(kiln_nn_backend *be, size_t count, float p, uint64_t seed, uint64_t offset,
             float *mask, kiln_err *err)
{
    int rc = kiln_nn_check_mask(count, p, mask, err);
    if (rc || count == 0)
        return rc;
    ew_ctx e = {.c = cpu_of(be),
                .kind = EW_MASK,
                .count = count,
                .a = mask,
                .y = mask,
                .alpha = p,
                .seed = seed,
                .offset = offset};
    ew_run(&e);
    return KILN_OK;
}

int cpu_sum_squares(kiln_nn_backend *be, size_t count, const float *x, double *host_out,
                    kiln_err *err)
{
    int rc = kiln_nn_check_sum_squares(count, x, host_out, err);
    if (rc)
        return rc;
    *host_out = 0;
    if (count == 0)
        return KILN_OK;
    cpu_impl *c = cpu_of(be);
    size_t chunks = cpu_div_up(count, SUMSQ_CHUNK);
    /* Doubles in the float scratch: it is 64-byte aligned. */
    double *partial = (double *)(void *)cpu_reserve_shared(c, 2 * chunks, err);
    if (!partial)
        return KILN_ENOMEM;
    ew_ctx e = {
        .c = c, .kind = EW_SUMSQ, .count = count, .chunk = SUMSQ_CHUNK, .a = x, .partial = partial};
    cpu_run(c, chunks, ew_item, &e);
    double total = 0;
    for (size_t i = 0; i < chunks; i++)
        total += partial[i];
    *host_out = total;
    return KILN_OK;
}

typedef struct samples_ctx {
    cpu_impl *c;
    size_t per_sample;
    const float *x, *scale;
    float *y;
} samples_ctx;

static int samples_item(void *arg, size_t s, int worker)
{
    (void)worker;
    samples_ctx *e = arg;
    size_t off = s * e->per_sample;
    e->c->k.affine(e->per_sample, e->x + off, e->scale[s], 0.0f, e->y + off);
    return 0;
}

int cpu_scale_samples(kiln_nn_backend *be, int n, size_t per_sample, const float *x,
                      const float *scale, float *y, kiln_err *err)
{
    int rc = kiln_nn_check_scale_samples(n, per_sample, x, scale, y, err);
    if (rc || n == 0 || per_sample == 0)
        return rc;
    samples_ctx e = {cpu_of(be), per_sample, x, scale, y};
    if ((size_t)n * per_sample < EW_MIN_PER_ITEM) {
        for (int s = 0; s < n; s++)
            samples_item(&e, (size_t)s, 0);
    } else {
        cpu_run(e.c, (size_t)n, samples_item, &e);
    }
    return KILN_OK;
}
