/* lib/nn/cpu/cpu_backend.c — the CPU backend's life cycle, memory ops,
 * scratch buffers and the ops table. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/cpu/cpu_internal.h"

#define CPU_MAX_THREADS 64

/* Refused before asking malloc: larger than the machine's memory, or than
 * any allocator can hand out (ASan aborts on requests above 1 TiB). */
static size_t max_alloc_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t limit = (size_t)1 << 40;
    if (pages > 0 && page > 0 && (size_t)pages <= limit / (size_t)page)
        limit = (size_t)pages * (size_t)page;
    return limit;
}

static void *aligned_floats(size_t bytes)
{
    return aligned_alloc(64, cpu_round_up(bytes ? bytes : 1, 64));
}

static void *cpu_alloc(kiln_nn_backend *be, size_t bytes, kiln_err *err)
{
    (void)be;
    if (bytes > max_alloc_bytes()) {
        kiln_err_set(err, KILN_ENOMEM,
                     "cannot allocate %zu bytes: more than this machine's %zu bytes of memory",
                     bytes, max_alloc_bytes());
        return NULL;
    }
    void *p = aligned_floats(bytes);
    if (!p)
        kiln_err_set(err, KILN_ENOMEM, "out of memory allocating %zu bytes", bytes);
    return p;
}

static void cpu_release(kiln_nn_backend *be, void *p)
{
    (void)be;
    free(p);
}

static int cpu_upload(kiln_nn_backend *be, void *dst, const void *host, size_t bytes, kiln_err *err)
{
    if (bytes && (!dst || !host))
        return kiln_err_set(err, KILN_EINVAL, "upload: NULL buffer");
    if (bytes)
        memmove(dst, host, bytes);
    return KILN_OK;
}

static int cpu_download(kiln_nn_backend *be, void *host, const void *src, size_t bytes,
                        kiln_err *err)
{
    if (bytes && (!host || !src))
        return kiln_err_set(err, KILN_EINVAL, "download: NULL buffer");
    if (bytes)
        memmove(host, src, bytes);
    return KILN_OK;
}

static int cpu_fill(kiln_nn_backend *be, float *dst, float value, size_t count, kiln_err *err)
{
    int rc = kiln_nn_check_ew("fill", count, 0, NULL, NULL, dst, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < count; i++)
        dst[i] = value;
    return KILN_OK;
}

static int cpu_copy(kiln_nn_backend *be, float *dst, const float *src, size_t count, kiln_err *err)
{
    if (count && (!dst || !src))
        return kiln_err_set(err, KILN_EINVAL, "copy: NULL buffer");
    if (count)
        memmove(dst, src, count * sizeof *dst);
    return KILN_OK;
}

/* Activations are float32 NCHW here: both conversions are copies. */
static int cpu_act_copy(kiln_nn_backend *be, int n, int c, int hw, const float *src, float *dst,
                        kiln_err *err)
{
    if (n < 0 || c < 0 || hw < 0)
        return kiln_err_set(err, KILN_EINVAL, "act conversion: negative shape [%d, %d, %d]", n,
                            c, hw);
    return cpu_copy(be, dst, src, (size_t)n * (size_t)c * (size_t)hw, err);
}

static int cpu_normalize_u8(kiln_nn_backend *be, int n, int c, int hw, const uint8_t *src,
                            const float *lut, float *dst, kiln_err *err)
{
    (void)be;
    int rc = kiln_nn_check_dims(err, "normalize_u8", n, c, hw);
    size_t plane = (size_t)hw, count = (size_t)n * (size_t)c * plane;
    if (rc == KILN_OK && count && (!src || !lut || !dst))
        rc = kiln_err_set(err, KILN_EINVAL, "normalize_u8: NULL buffer");
    for (size_t i = 0; rc == KILN_OK && i < count; i += plane) {
        const float *table = lut + (i / plane % (size_t)c) * 256;
        for (size_t j = i; j < i + plane; j++)
            dst[j] = table[src[j]];
    }
    return rc;
}

static int cpu_sync(kiln_nn_backend *be, kiln_err *err)
{
    (void)be;
    (void)err;
    return KILN_OK;
}

int cpu_reserve_worker(cpu_impl *c, size_t floats, kiln_err *err)
{
    for (int w = 0; w < c->threads; w++) {
        if (c->scratch_cap[w] >= floats)
            continue;
        if (floats > max_alloc_bytes() / sizeof(float))
            return kiln_err_set(err, KILN_ENOMEM, "scratch of %zu floats is too large", floats);
        float *p = aligned_floats(floats * sizeof(float));
        if (!p)
            return kiln_err_set(err, KILN_ENOMEM, "out of memory growing scratch to %zu floats",
                                floats);
        free(c->scratch[w]);
        c->scratch[w] = p;
        c->scratch_cap[w] = floats;
    }
    return KILN_OK;
}

float *cpu_reserve_shared(cpu_impl *c, size_t floats, kiln_err *err)
{
    if (c->shared_cap >= floats)
        return c->shared;
    if (floats > max_alloc_bytes() / sizeof(float)) {
        kiln_err_set(err, KILN_ENOMEM, "scratch of %zu floats is too large", floats);
        return NULL;
    }
    float *p = aligned_floats(floats * sizeof(float));
    if (!p) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory growing scratch to %zu floats", floats);
        return NULL;
    }
    free(c->shared);
    c->shared = p;
    c->shared_cap = floats;
    return p;
}

void cpu_run(cpu_impl *c, size_t items, kiln_pool_fn fn, void *ctx)
{
    if (items == 0)
        return;
    if (items == 1 || c->threads == 1) {
        for (size_t i = 0; i < items; i++)
            fn(ctx, i, 0);
        return;
    }
    /* The CPU items never fail (they return 0), so neither does the run. */
    (void)kiln_pool_run(c->pool, items, fn, ctx);
}

size_t cpu_split(const cpu_impl *c, size_t work, size_t min_per_item)
{
    if (c->threads == 1 || work <= min_per_item)
        return 1;
    size_t items = work / min_per_item;
    size_t want = (size_t)c->threads * 4;
    return items < want ? items : want;
}

size_t cpu_units_per_item(const cpu_impl *c, size_t units, size_t unit_floats, size_t min_floats)
{
    size_t min_units = unit_floats >= min_floats ? 1 : min_floats / (unit_floats ? unit_floats : 1);
    return cpu_div_up(units, cpu_split(c, units, min_units));
}

size_t cpu_chunk_floats(const cpu_impl *c, size_t count, size_t min_floats)
{
    return cpu_round_up(cpu_div_up(count, cpu_split(c, count, min_floats)), CPU_VEC_PAD);
}

static void cpu_destroy(kiln_nn_backend *be)
{
    cpu_impl *c = cpu_of(be);
    if (c) {
        kiln_pool_destroy(c->pool);
        for (int w = 0; c->scratch && w < c->threads; w++)
            free(c->scratch[w]);
        free(c->scratch);
        free(c->scratch_cap);
        free(c->shared);
        free(c);
    }
    free(be);
}

static const kiln_nn_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .fill = cpu_fill,
    .copy = cpu_copy,
    .act_from_f32 = cpu_act_copy,
    .act_to_f32 = cpu_act_copy,
    .normalize_u8 = cpu_normalize_u8,
    .sync = cpu_sync,
    .conv_forward = cpu_conv_forward,
    .conv_backward_data = cpu_conv_backward_data,
    .conv_backward_filter = cpu_conv_backward_filter,
    .bn_forward_train = cpu_bn_forward_train,
    .bn_forward_eval = cpu_bn_forward_eval,
    .bn_backward = cpu_bn_backward,
    .silu_forward = cpu_silu_forward,
    .silu_backward = cpu_silu_backward,
    .sigmoid_forward = cpu_sigmoid_forward,
    .sigmoid_backward = cpu_sigmoid_backward,
    .add = cpu_add,
    .mul = cpu_mul,
    .scale = cpu_scale,
    .sum_squares = cpu_sum_squares,
    .mask = cpu_mask,
    .scale_samples = cpu_scale_samples,
    .avgpool_forward = cpu_avgpool_forward,
    .avgpool_backward = cpu_avgpool_backward,
    .scale_channels_forward = cpu_scale_channels_forward,
    .scale_channels_backward = cpu_scale_channels_backward,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .xent_forward_backward = cpu_xent_forward_backward,
    .sgd_step = cpu_sgd_step,
    .adamw_step = cpu_adamw_step,
};

kiln_nn_backend *kiln_nn_cpu_create(int threads, kiln_err *err)
{
    kiln_nn_backend *be = NULL;
    cpu_impl *c = NULL;
    /* OpenBLAS keeps a fixed table of per-caller buffers (sized for its
     * compile-time thread count, 64 on Debian) and aborts when more threads
     * call it at once. */
    if (threads < 1 || threads > CPU_MAX_THREADS) {
        kiln_err_set(err, KILN_EINVAL, "cpu backend: thread count %d is not in 1..%d", threads,
                     CPU_MAX_THREADS);
        return NULL;
    }
    be = calloc(1, sizeof *be);
    c = calloc(1, sizeof *c);
    if (!be || !c)
        goto nomem;
    be->ops = &cpu_ops;
    be->impl = c;
    c->threads = threads;
    c->scratch = calloc((size_t)threads, sizeof *c->scratch);
    c->scratch_cap = calloc((size_t)threads, sizeof *c->scratch_cap);
    if (!c->scratch || !c->scratch_cap)
        goto nomem;
    c->pool = kiln_pool_create(threads, err);
    if (!c->pool)
        goto fail;
    cpu_kernels_generic(&c->k);
    /* KILN_CPU_ISA caps the instruction set (tests run every set). */
    cpu_kernels_best(&c->k, getenv("KILN_CPU_ISA"));
    /* See cpu_internal.h: parallelism comes from the pool, one BLAS thread
     * per pool item. */
    openblas_set_num_threads(1);
    return be;
nomem:
    kiln_err_set(err, KILN_ENOMEM, "out of memory creating the cpu backend");
fail:
    if (!be)
        free(c);
    else
        cpu_destroy(be);
    return NULL;
}
