/* lib/nn/cpu/cpu_internal.h — shared by the CPU backend's files; not a
 * public header (the public one is nn/backend.h).
 *
 * Threads. The backend owns a kiln_pool of `threads` workers and sets
 * OpenBLAS to one thread: every sgemm runs inside a pool item (a sample, a
 * block of columns or of weight rows), so exactly `threads` threads compute
 * at any time. Letting OpenBLAS spawn its own threads as well would put
 * 2×threads busy threads on `threads` cores whenever pool items call sgemm
 * concurrently, and OpenBLAS's thread count is process-wide anyway.
 * Results never depend on which worker ran an item: reductions are split by
 * output element (weight rows, channels), or into a fixed number of chunks
 * summed in order, so a given thread count always gives the same bits.
 *
 * Memory. Per-worker and shared scratch buffers grow to the largest size an
 * op has asked for and are then reused, so a training step does no malloc
 * once every layer shape has run once.
 *
 * Kernels. The vector loops exist for baseline x86-64, AVX2+FMA and
 * AVX-512; the environment variable KILN_CPU_ISA (sse2, avx2, avx512)
 * caps the set used (the tests run each one the CPU has).
 *
 * A backend is used by one thread at a time (ops are not re-entrant).
 */
#ifndef KILN_NN_CPU_INTERNAL_H
#define KILN_NN_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "nn/backend_check.h"
#include "common/err.h"
#include "common/pool.h"
#include "nn/backend.h"

/* Buffers handed to the vector kernels are padded to a multiple of this
 * many floats (the widest vector) and aligned to 64 bytes. */
#define CPU_VEC_PAD 16

static inline size_t cpu_div_up(size_t n, size_t m)
{
    return (n + m - 1) / m;
}

static inline size_t cpu_round_up(size_t n, size_t m)
{
    return cpu_div_up(n, m) * m;
}

/* Units [*lo, *hi) of pool item `item` when every item takes `per_item`
 * of `total` units (the last one what is left). */
static inline void cpu_item_range(size_t item, size_t per_item, size_t total, size_t *lo,
                                  size_t *hi)
{
    *lo = item * per_item;
    *hi = *lo + per_item < total ? *lo + per_item : total;
}

/* Vectorised inner loops, compiled for baseline x86-64, AVX2+FMA and
 * AVX-512; kiln_nn_cpu_create picks one set from what the CPU supports.
 * Lengths may be any value; the tap kernels read and write whole vectors, so
 * their buffers must have room up to cpu_round_up(len, CPU_VEC_PAD). */
/* A depthwise conv's shape, for the channel-blocked kernels (used for
 * planes at most CPU_DW_BLOCKED_MAX_W wide). */
#define CPU_DW_BLOCKED_MAX_W 256
typedef struct cpu_dw_geom {
    int k, s, p, h, w, oh, ow;
} cpu_dw_geom;

/* One optimizer step's scalars (see cpu_optim.c). */
typedef struct cpu_sgd_args {
    float lr, momentum, wd;
    int nesterov;
} cpu_sgd_args;

typedef struct cpu_adamw_args {
    float decay, beta1, beta2, one_m_b1, one_m_b2, eps, bc2_sqrt, neg_step;
} cpu_adamw_args;

typedef struct cpu_kernels {
    const char *isa;
    /* out[j] = sum_t w[t] * base[off[t] + j], j < round_up(len). */
    void (*taps)(float *out, size_t len, const float *base, int ntaps, const size_t *off,
                 const float *w);
    /* acc[t] += sum_{j < round_up(len)} a[j] * base[off[t] + j]; a must be
     * zero past len. */
    void (*tap_dots)(const float *a, size_t len, const float *base, int ntaps, const size_t *off,
                     double *acc);
    void (*silu)(size_t n, const float *x, float *y);
    void (*silu_backward)(size_t n, const float *x, const float *dy, float *dx);
    void (*sigmoid)(size_t n, const float *x, float *y);
    void (*sigmoid_backward)(size_t n, const float *y, const float *dy, float *dx);
    /* y = x * a + b */
    void (*affine)(size_t n, const float *x, float a, float b, float *y);
    void (*add)(size_t n, const float *a, const float *b, float *y);
    void (*mul)(size_t n, const float *a, const float *b, float *y);
    /* Sums in float vectors over short blocks, blocks added in double. */
    double (*sum)(size_t n, const float *x);
    double (*sum_sq_dev)(size_t n, const float *x, float mean); /* sum (x-mean)^2 */
    double (*dot)(size_t n, const float *a, const float *b);
    /* *sum = sum dy, *dot = sum dy*(x-mean) */
    void (*sum_dot_dev)(size_t n, const float *dy, const float *x, float mean, double *sum,
                        double *dot);
    double (*sum_sq)(size_t n, const float *x);
    /* dx = a*dy + b*(x - mean) + c */
    void (*bn_backward)(size_t n, const float *x, const float *dy, float mean, float a, float b,
                        float c, float *dx);
    /* Depthwise conv on channel-blocked tiles of cb_width channels:
     * X[h][w][cb], DY/Y[oh][ow][cb], W[k*k][cb]. Y and DX are overwritten;
     * cb_filter adds its sums to acc[k*k][cb]. */
    int cb_width;
    void (*cb_forward)(const cpu_dw_geom *g, const float *X, const float *W, float *Y);
    void (*cb_data)(const cpu_dw_geom *g, const float *DY, const float *W, float *DX);
    void (*cb_filter)(const cpu_dw_geom *g, const float *X, const float *DY, double *acc);
    /* One step over n parameters (buf unused without momentum). */
    void (*sgd)(size_t n, float *p, const float *g, float *buf, const cpu_sgd_args *a);
    void (*adamw)(size_t n, float *p, const float *g, float *m, float *v, const cpu_adamw_args *a);
} cpu_kernels;

void cpu_kernels_generic(cpu_kernels *k);
/* Replaces k (the baseline set) with the widest set this CPU supports, at
 * most `want` ("sse2", "avx2", "avx512") when given; other names cap
 * nothing. Decided per backend from what the CPU reports, so nothing is
 * cached between backends or threads. */
void cpu_kernels_best(cpu_kernels *k, const char *want);

typedef struct cpu_impl {
    kiln_pool *pool;
    int threads;
    cpu_kernels k;
    float **scratch;     /* [threads] per-worker buffers */
    size_t *scratch_cap; /* floats */
    float *shared;       /* one buffer for cross-worker partial results */
    size_t shared_cap;
} cpu_impl;

static inline cpu_impl *cpu_of(kiln_nn_backend *be)
{
    return (cpu_impl *)be->impl;
}

/* Grow every worker's scratch to at least `floats`. */
int cpu_reserve_worker(cpu_impl *c, size_t floats, kiln_err *err);
/* Grow the shared scratch to at least `floats`; NULL on failure. */
float *cpu_reserve_shared(cpu_impl *c, size_t floats, kiln_err *err);
/* Run fn over [0, items) on the pool (inline when there is one item or one
 * thread). fn returns 0. */
void cpu_run(cpu_impl *c, size_t items, kiln_pool_fn fn, void *ctx);
/* How many items to cut `work` units into so every thread gets a few. */
size_t cpu_split(const cpu_impl *c, size_t work, size_t min_per_item);
/* Units per item when `units` of `unit_floats` floats each (planes, rows,
 * channels) are cut so that an item holds at least `min_floats` floats
 * where it can; run cpu_div_up(units, result) items. */
size_t cpu_units_per_item(const cpu_impl *c, size_t units, size_t unit_floats, size_t min_floats);
/* Floats per item when `count` floats are cut into vector-aligned chunks
 * of at least `min_floats`; run cpu_div_up(count, result) items. */
size_t cpu_chunk_floats(const cpu_impl *c, size_t count, size_t min_floats);

/* Ops, one group per file. */
int cpu_conv_forward(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                     const float *x, const float *weight, float *y, kiln_err *err);
int cpu_conv_backward_data(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                           const float *dy, const float *weight, float *dx, kiln_err *err);
int cpu_conv_backward_filter(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                             const float *x, const float *dy, float *dweight, kiln_err *err);
/* Depthwise (groups == in_c == out_c, k <= CPU_DW_MAX_K, stride <=
 * CPU_DW_MAX_STRIDE); other shapes take the im2col path. */
#define CPU_DW_MAX_K 15
#define CPU_DW_MAX_STRIDE 4
int cpu_dw_forward(cpu_impl *c, const kiln_conv_desc *d, int n, int h, int w, const float *x,
                   const float *weight, float *y, kiln_err *err);
int cpu_dw_backward_data(cpu_impl *c, const kiln_conv_desc *d, int n, int h, int w, const float *dy,
                         const float *weight, float *dx, kiln_err *err);
int cpu_dw_backward_filter(cpu_impl *c, const kiln_conv_desc *d, int n, int h, int w,
                           const float *x, const float *dy, float *dweight, kiln_err *err);

int cpu_bn_forward_train(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                         const float *gamma, const float *beta, float *running_mean,
                         float *running_var, float momentum, float eps, float *y, float *save_mean,
                         float *save_invstd, kiln_err *err);
int cpu_bn_forward_eval(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                        const float *gamma, const float *beta, const float *running_mean,
                        const float *running_var, float eps, float *y, kiln_err *err);
int cpu_bn_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x, const float *dy,
                    const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                    float *dgamma, float *dbeta, kiln_err *err);

int cpu_silu_forward(kiln_nn_backend *be, size_t count, const float *x, float *y, kiln_err *err);
int cpu_silu_backward(kiln_nn_backend *be, size_t count, const float *x, const float *dy, float *dx,
                      kiln_err *err);
int cpu_sigmoid_forward(kiln_nn_backend *be, size_t count, const float *x, float *y, kiln_err *err);
int cpu_sigmoid_backward(kiln_nn_backend *be, size_t count, const float *y, const float *dy,
                         float *dx, kiln_err *err);
int cpu_add(kiln_nn_backend *be, size_t count, const float *a, const float *b, float *y,
            kiln_err *err);
int cpu_mul(kiln_nn_backend *be, size_t count, const float *x, const float *mask, float *y,
            kiln_err *err);
int cpu_scale(kiln_nn_backend *be, size_t count, float alpha, float *x, kiln_err *err);
int cpu_sum_squares(kiln_nn_backend *be, size_t count, const float *x, double *host_out,
                    kiln_err *err);
int cpu_mask(kiln_nn_backend *be, size_t count, float p, uint64_t seed, uint64_t offset,
             float *mask, kiln_err *err);
int cpu_scale_samples(kiln_nn_backend *be, int n, size_t per_sample, const float *x,
                      const float *scale, float *y, kiln_err *err);

int cpu_avgpool_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x, float *y,
                        kiln_err *err);
int cpu_avgpool_backward(kiln_nn_backend *be, int n, int c, int hw, const float *dy, float *dx,
                         kiln_err *err);
int cpu_scale_channels_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                               const float *s, float *y, kiln_err *err);
int cpu_scale_channels_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                const float *s, const float *dy, float *dx, float *ds,
                                kiln_err *err);
int cpu_linear_forward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                       const float *weight, const float *bias, float *y, kiln_err *err);
int cpu_linear_backward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                        const float *weight, const float *dy, float *dx, float *dweight,
                        float *dbias, kiln_err *err);

int cpu_xent_forward_backward(kiln_nn_backend *be, int n, int classes, const float *logits,
                              const int32_t *labels, float ls, float *probs, float *dlogits,
                              double *host_loss, kiln_err *err);

int cpu_sgd_step(kiln_nn_backend *be, size_t count, float *param, const float *grad,
                 float *momentum_buf, float lr, float momentum, int nesterov, float weight_decay,
                 kiln_err *err);
int cpu_adamw_step(kiln_nn_backend *be, size_t count, float *param, const float *grad, float *m,
                   float *v, float lr, float beta1, float beta2, float eps, float weight_decay,
                   int64_t step, kiln_err *err);

#endif
