/* lib/nn/cpu_bf16.c — "cpu-bf16": the CPU backend on bf16 activations
 * (KILN_ACT_BF16_NCHW), the oracle of the GPU's mixed precision (see
 * kiln_nn_cpu_bf16_create in backend.h).
 *
 * Each op that takes activations decodes them into float32 scratch, runs
 * the CPU backend's float32 kernel there, and rounds its activation outputs
 * back into bf16 storage (nn/bf16.h, the GPU kernels' rounding). Weights of
 * conv and linear are rounded to bf16 first, and conv's dweight is rounded
 * through bf16 as cuDNN's bf16 filter gradient is. Parameter-like tensors
 * pass straight through. The scratch belongs to the backend: one op at a
 * time, as for every backend. */
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "nn/backend_check.h"
#include "nn/bf16.h"

enum { T_A, T_B, T_C, T_OUT, T_OUT2, T_W, T_COUNT };

typedef struct bf16_impl {
    kiln_nn_backend *cpu;
    float *tmp[T_COUNT];
    size_t cap[T_COUNT]; /* floats */
} bf16_impl;

#define CPU(be) (((bf16_impl *)(be)->impl)->cpu)

/* Scratch `which` of at least `count` floats, or NULL (ENOMEM set). */
static float *scratch(kiln_nn_backend *be, int which, size_t count, kiln_err *err)
{
    bf16_impl *k = be->impl;
    if (count <= k->cap[which] && k->tmp[which])
        return k->tmp[which];
    size_t bytes = (count ? count : 1) * sizeof(float);
    float *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) {
        kiln_err_set(err, KILN_ENOMEM, "cpu-bf16: out of memory for %zu bytes of scratch", bytes);
        return NULL;
    }
    free(k->tmp[which]);
    k->tmp[which] = p;
    k->cap[which] = count;
    return p;
}

/* float32 copy of `count` bf16 values at act in scratch `which`; NULL for a
 * NULL act (the CPU op then reports it) or with ENOMEM in *rc. */
static const float *decode(kiln_nn_backend *be, int which, const float *act, size_t count,
                           int *rc, kiln_err *err)
{
    if (!act)
        return NULL;
    float *t = scratch(be, which, count, err);
    if (!t) {
        *rc = KILN_ENOMEM;
        return NULL;
    }
    const kiln_bf16 *src = (const kiln_bf16 *)(const void *)act;
    for (size_t i = 0; i < count; i++)
        t[i] = kiln_bf16_to_f32(src[i]);
    return t;
}

/* Scratch for an output of `count` floats, NULL when the act is NULL. */
static float *out_tmp(kiln_nn_backend *be, int which, const float *act, size_t count, int *rc,
                      kiln_err *err)
{
    if (!act)
        return NULL;
    float *t = scratch(be, which, count, err);
    if (!t)
        *rc = KILN_ENOMEM;
    return t;
}

static void encode(const float *t, float *act, size_t count)
{
    if (!t || !act)
        return;
    kiln_bf16 *dst = (kiln_bf16 *)(void *)act;
    for (size_t i = 0; i < count; i++)
        dst[i] = kiln_bf16_from_f32(t[i]);
}

/* A weight rounded to bf16, in scratch T_W. */
static const float *rounded(kiln_nn_backend *be, const float *w, size_t count, int *rc,
                            kiln_err *err)
{
    if (!w)
        return NULL;
    float *t = scratch(be, T_W, count, err);
    if (!t) {
        *rc = KILN_ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < count; i++)
        t[i] = kiln_bf16_round(w[i]);
    return t;
}

/* n*c*hw, or 0 (with the reason in *rc) for a negative or oversized shape. */
static size_t count3(const char *op, long long n, long long c, long long hw, int *rc,
                     kiln_err *err)
{
    *rc = kiln_nn_check_dims(err, op, n, c, hw);
    return *rc ? 0 : (size_t)n * (size_t)c * (size_t)hw;
}

/* --- memory and float32-only ops: the CPU's own ------------------------- */

static void *b_alloc(kiln_nn_backend *be, size_t bytes, kiln_err *err)
{
    return CPU(be)->ops->alloc(CPU(be), bytes, err);
}

static void b_release(kiln_nn_backend *be, void *p)
{
    CPU(be)->ops->release(CPU(be), p);
}

static int b_upload(kiln_nn_backend *be, void *dst, const void *host, size_t bytes, kiln_err *err)
{
    return CPU(be)->ops->upload(CPU(be), dst, host, bytes, err);
}

static int b_download(kiln_nn_backend *be, void *host, const void *src, size_t bytes,
                      kiln_err *err)
{
    return CPU(be)->ops->download(CPU(be), host, src, bytes, err);
}

static int b_fill(kiln_nn_backend *be, float *dst, float value, size_t count, kiln_err *err)
{
    return CPU(be)->ops->fill(CPU(be), dst, value, count, err);
}

static int b_copy(kiln_nn_backend *be, float *dst, const float *src, size_t count, kiln_err *err)
{
    return CPU(be)->ops->copy(CPU(be), dst, src, count, err);
}

static int b_sync(kiln_nn_backend *be, kiln_err *err)
{
    return CPU(be)->ops->sync(CPU(be), err);
}

static int b_scale(kiln_nn_backend *be, size_t count, float alpha, float *x, kiln_err *err)
{
    return CPU(be)->ops->scale(CPU(be), count, alpha, x, err);
}

static int b_sum_squares(kiln_nn_backend *be, size_t count, const float *x, double *host_out,
                         kiln_err *err)
{
    return CPU(be)->ops->sum_squares(CPU(be), count, x, host_out, err);
}

static int b_mask(kiln_nn_backend *be, size_t count, float p, uint64_t seed, uint64_t offset,
                  float *mask, kiln_err *err)
{
    return CPU(be)->ops->mask(CPU(be), count, p, seed, offset, mask, err);
}

static int b_normalize_u8(kiln_nn_backend *be, int n, int c, int hw, const uint8_t *src,
                          const float *lut, float *dst, kiln_err *err)
{
    return CPU(be)->ops->normalize_u8(CPU(be), n, c, hw, src, lut, dst, err);
}

static int b_xent(kiln_nn_backend *be, int n, int classes, const float *logits,
                  const int32_t *labels, float ls, float *probs, float *dlogits,
                  double *host_loss, kiln_err *err)
{
    return CPU(be)->ops->xent_forward_backward(CPU(be), n, classes, logits, labels, ls, probs,
                                               dlogits, host_loss, err);
}

static int b_sgd(kiln_nn_backend *be, size_t count, float *param, const float *grad,
                 float *momentum_buf, float lr, float momentum, int nesterov, float weight_decay,
                 kiln_err *err)
{
    return CPU(be)->ops->sgd_step(CPU(be), count, param, grad, momentum_buf, lr, momentum,
                                  nesterov, weight_decay, err);
}

static int b_adamw(kiln_nn_backend *be, size_t count, float *param, const float *grad, float *m,
                   float *v, float lr, float beta1, float beta2, float eps, float weight_decay,
                   int64_t step, kiln_err *err)
{
    return CPU(be)->ops->adamw_step(CPU(be), count, param, grad, m, v, lr, beta1, beta2, eps,
                                    weight_decay, step, err);
}

/* --- convolution ------------------------------------------------------- */

typedef struct conv_sizes {
    size_t x, y, w;
} conv_sizes;

static int conv_sizes_of(const char *op, const kiln_conv_desc *d, int n, int h, int w,
                         const void *a, const void *b, const void *c, conv_sizes *s,
                         kiln_err *err)
{
    int rc = kiln_nn_check_conv(op, d, n, h, w, a, b, c, err);
    if (rc)
        return rc;
    int oh = kiln_conv_out(d, h), ow = kiln_conv_out(d, w);
    s->x = (size_t)n * (size_t)d->in_c * (size_t)h * (size_t)w;
    s->y = (size_t)n * (size_t)d->out_c * (size_t)oh * (size_t)ow;
    s->w = (size_t)d->out_c * (size_t)(d->in_c / d->groups) * (size_t)d->k * (size_t)d->k;
    return KILN_OK;
}

static int b_conv_forward(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                          const float *x, const float *weight, float *y, kiln_err *err)
{
    conv_sizes s;
    int rc = conv_sizes_of("conv_forward", d, n, h, w, x, weight, y, &s, err);
    if (rc)
        return rc;
    const float *xf = decode(be, T_A, x, s.x, &rc, err);
    const float *wf = rc ? NULL : rounded(be, weight, s.w, &rc, err);
    float *yf = rc ? NULL : out_tmp(be, T_OUT, y, s.y, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->conv_forward(CPU(be), d, n, h, w, xf, wf, yf, err);
    if (rc == KILN_OK)
        encode(yf, y, s.y);
    return rc;
}

static int b_conv_backward_data(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h,
                                int w, const float *dy, const float *weight, float *dx,
                                kiln_err *err)
{
    conv_sizes s;
    int rc = conv_sizes_of("conv_backward_data", d, n, h, w, dy, weight, dx, &s, err);
    if (rc)
        return rc;
    const float *dyf = decode(be, T_A, dy, s.y, &rc, err);
    const float *wf = rc ? NULL : rounded(be, weight, s.w, &rc, err);
    float *dxf = rc ? NULL : out_tmp(be, T_OUT, dx, s.x, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->conv_backward_data(CPU(be), d, n, h, w, dyf, wf, dxf, err);
    if (rc == KILN_OK)
        encode(dxf, dx, s.x);
    return rc;
}

static int b_conv_backward_filter(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h,
                                  int w, const float *x, const float *dy, float *dweight,
                                  kiln_err *err)
{
    conv_sizes s;
    int rc = conv_sizes_of("conv_backward_filter", d, n, h, w, x, dy, dweight, &s, err);
    if (rc)
        return rc;
    const float *xf = decode(be, T_A, x, s.x, &rc, err);
    const float *dyf = rc ? NULL : decode(be, T_B, dy, s.y, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->conv_backward_filter(CPU(be), d, n, h, w, xf, dyf, dweight, err);
    /* cuDNN's bf16 filter gradient is stored in bf16. */
    for (size_t i = 0; rc == KILN_OK && i < s.w; i++)
        dweight[i] = kiln_bf16_round(dweight[i]);
    return rc;
}

/* --- batch norm: statistics and parameters float32 ---------------------- */

static int b_bn_forward_train(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                              const float *gamma, const float *beta, float *running_mean,
                              float *running_var, float momentum, float eps, float *y,
                              float *save_mean, float *save_invstd, kiln_err *err)
{
    int rc;
    size_t count = count3("bn_forward_train", n, c, hw, &rc, err);
    const float *xf = rc ? NULL : decode(be, T_A, x, count, &rc, err);
    float *yf = rc ? NULL : out_tmp(be, T_OUT, y, count, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->bn_forward_train(CPU(be), n, c, hw, xf, gamma, beta, running_mean,
                                        running_var, momentum, eps, yf, save_mean, save_invstd,
                                        err);
    if (rc == KILN_OK)
        encode(yf, y, count);
    return rc;
}

static int b_bn_forward_eval(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                             const float *gamma, const float *beta, const float *running_mean,
                             const float *running_var, float eps, float *y, kiln_err *err)
{
    int rc;
    size_t count = count3("bn_forward_eval", n, c, hw, &rc, err);
    const float *xf = rc ? NULL : decode(be, T_A, x, count, &rc, err);
    float *yf = rc ? NULL : out_tmp(be, T_OUT, y, count, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->bn_forward_eval(CPU(be), n, c, hw, xf, gamma, beta, running_mean,
                                       running_var, eps, yf, err);
    if (rc == KILN_OK)
        encode(yf, y, count);
    return rc;
}

static int b_bn_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                         const float *dy, const float *gamma, const float *save_mean,
                         const float *save_invstd, float *dx, float *dgamma, float *dbeta,
                         kiln_err *err)
{
    int rc;
    size_t count = count3("bn_backward", n, c, hw, &rc, err);
    const float *xf = rc ? NULL : decode(be, T_A, x, count, &rc, err);
    const float *dyf = rc ? NULL : decode(be, T_B, dy, count, &rc, err);
    float *dxf = rc ? NULL : out_tmp(be, T_OUT, dx, count, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->bn_backward(CPU(be), n, c, hw, xf, dyf, gamma, save_mean, save_invstd, dxf,
                                   dgamma, dbeta, err);
    if (rc == KILN_OK)
        encode(dxf, dx, count);
    return rc;
}

/* --- fused batch norm + SiLU: the unfused pair on the rounded values, so
 * both paths of the model give the same bits (what a fused GPU kernel must
 * reproduce). ---------------------------------------------------------- */

static void round_floats(float *t, size_t count)
{
    for (size_t i = 0; i < count; i++)
        t[i] = kiln_bf16_round(t[i]);
}

static int b_bn_silu_forward_train(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                   const float *gamma, const float *beta, float *running_mean,
                                   float *running_var, float momentum, float eps, float *bn,
                                   float *y, float *save_mean, float *save_invstd, kiln_err *err)
{
    int rc;
    size_t count = count3("bn_silu_forward_train", n, c, hw, &rc, err);
    const float *xf = rc ? NULL : decode(be, T_A, x, count, &rc, err);
    float *bf = rc ? NULL : out_tmp(be, T_OUT, bn, count, &rc, err);
    float *yf = rc ? NULL : out_tmp(be, T_OUT2, y, count, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->bn_forward_train(CPU(be), n, c, hw, xf, gamma, beta, running_mean,
                                        running_var, momentum, eps, bf, save_mean, save_invstd,
                                        err);
    if (rc == KILN_OK && bf) {
        round_floats(bf, count);
        rc = CPU(be)->ops->silu_forward(CPU(be), count, bf, yf, err);
    }
    if (rc == KILN_OK) {
        encode(bf, bn, count);
        encode(yf, y, count);
    }
    return rc;
}

static int b_bn_silu_forward_eval(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                  const float *gamma, const float *beta, const float *running_mean,
                                  const float *running_var, float eps, float *y, kiln_err *err)
{
    int rc;
    size_t count = count3("bn_silu_forward_eval", n, c, hw, &rc, err);
    const float *xf = rc ? NULL : decode(be, T_A, x, count, &rc, err);
    float *bf = rc ? NULL : out_tmp(be, T_OUT, y, count, &rc, err);
    float *yf = rc ? NULL : out_tmp(be, T_OUT2, y, count, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->bn_forward_eval(CPU(be), n, c, hw, xf, gamma, beta, running_mean,
                                       running_var, eps, bf, err);
    if (rc == KILN_OK && bf) {
        round_floats(bf, count);
        rc = CPU(be)->ops->silu_forward(CPU(be), count, bf, yf, err);
    }
    if (rc == KILN_OK)
        encode(yf, y, count);
    return rc;
}

static int b_silu_bn_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                              const float *bn, const float *dy, const float *gamma,
                              const float *save_mean, const float *save_invstd, float *dx,
                              float *dgamma, float *dbeta, kiln_err *err)
{
    int rc;
    size_t count = count3("silu_bn_backward", n, c, hw, &rc, err);
    const float *bf = rc ? NULL : decode(be, T_A, bn, count, &rc, err);
    const float *dyf = rc ? NULL : decode(be, T_B, dy, count, &rc, err);
    float *tf = rc || !bf || !dyf ? NULL : out_tmp(be, T_OUT2, dy, count, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->silu_backward(CPU(be), count, bf, dyf, tf, err);
    if (rc == KILN_OK && tf)
        round_floats(tf, count);
    const float *xf = rc ? NULL : decode(be, T_A, x, count, &rc, err);
    float *dxf = rc ? NULL : out_tmp(be, T_OUT, dx, count, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->bn_backward(CPU(be), n, c, hw, xf, tf, gamma, save_mean, save_invstd, dxf,
                                   dgamma, dbeta, err);
    if (rc == KILN_OK)
        encode(dxf, dx, count);
    return rc;
}

/* --- elementwise --------------------------------------------------------- */

typedef int (*unary_fn)(kiln_nn_backend *, size_t, const float *, float *, kiln_err *);
typedef int (*binary_fn)(kiln_nn_backend *, size_t, const float *, const float *, float *,
                         kiln_err *);

static int unary(kiln_nn_backend *be, unary_fn fn, size_t count, const float *x, float *y,
                 kiln_err *err)
{
    int rc = KILN_OK;
    const float *xf = decode(be, T_A, x, count, &rc, err);
    float *yf = rc ? NULL : out_tmp(be, T_OUT, y, count, &rc, err);
    if (rc)
        return rc;
    rc = fn(CPU(be), count, xf, yf, err);
    if (rc == KILN_OK)
        encode(yf, y, count);
    return rc;
}

/* a and b act; b float32 when b_is_f32 (dropout's mask). */
static int binary(kiln_nn_backend *be, binary_fn fn, size_t count, const float *a,
                  const float *b, int b_is_f32, float *y, kiln_err *err)
{
    int rc = KILN_OK;
    const float *af = decode(be, T_A, a, count, &rc, err);
    const float *bf = b_is_f32 ? b : rc ? NULL : decode(be, T_B, b, count, &rc, err);
    float *yf = rc ? NULL : out_tmp(be, T_OUT, y, count, &rc, err);
    if (rc)
        return rc;
    rc = fn(CPU(be), count, af, bf, yf, err);
    if (rc == KILN_OK)
        encode(yf, y, count);
    return rc;
}

static int b_silu_forward(kiln_nn_backend *be, size_t count, const float *x, float *y,
                          kiln_err *err)
{
    return unary(be, CPU(be)->ops->silu_forward, count, x, y, err);
}

static int b_sigmoid_forward(kiln_nn_backend *be, size_t count, const float *x, float *y,
                             kiln_err *err)
{
    return unary(be, CPU(be)->ops->sigmoid_forward, count, x, y, err);
}

static int b_silu_backward(kiln_nn_backend *be, size_t count, const float *x, const float *dy,
                           float *dx, kiln_err *err)
{
    return binary(be, CPU(be)->ops->silu_backward, count, x, dy, 0, dx, err);
}

static int b_sigmoid_backward(kiln_nn_backend *be, size_t count, const float *y, const float *dy,
                              float *dx, kiln_err *err)
{
    return binary(be, CPU(be)->ops->sigmoid_backward, count, y, dy, 0, dx, err);
}

static int b_add(kiln_nn_backend *be, size_t count, const float *a, const float *b, float *y,
                 kiln_err *err)
{
    return binary(be, CPU(be)->ops->add, count, a, b, 0, y, err);
}

static int b_mul(kiln_nn_backend *be, size_t count, const float *x, const float *mask, float *y,
                 kiln_err *err)
{
    return binary(be, CPU(be)->ops->mul, count, x, mask, 1, y, err);
}

static int b_scale_samples(kiln_nn_backend *be, int n, size_t per_sample, const float *x,
                           const float *scale, float *y, kiln_err *err)
{
    int rc = kiln_nn_check_scale_samples(n, per_sample, x, scale, y, err);
    if (rc || n == 0 || per_sample == 0)
        return rc;
    size_t count = (size_t)n * per_sample;
    const float *xf = decode(be, T_A, x, count, &rc, err);
    float *yf = rc ? NULL : out_tmp(be, T_OUT, y, count, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->scale_samples(CPU(be), n, per_sample, xf, scale, yf, err);
    if (rc == KILN_OK)
        encode(yf, y, count);
    return rc;
}

/* --- pooling and squeeze-and-excitation ---------------------------------- */

static int b_avgpool_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x, float *y,
                             kiln_err *err)
{
    int rc;
    size_t count = count3("avgpool_forward", n, c, hw, &rc, err);
    const float *xf = rc ? NULL : decode(be, T_A, x, count, &rc, err);
    float *yf = rc ? NULL : out_tmp(be, T_OUT, y, (size_t)n * (size_t)c, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->avgpool_forward(CPU(be), n, c, hw, xf, yf, err);
    if (rc == KILN_OK)
        encode(yf, y, (size_t)n * (size_t)c);
    return rc;
}

static int b_avgpool_backward(kiln_nn_backend *be, int n, int c, int hw, const float *dy,
                              float *dx, kiln_err *err)
{
    int rc;
    size_t count = count3("avgpool_backward", n, c, hw, &rc, err);
    const float *dyf = rc ? NULL : decode(be, T_A, dy, (size_t)n * (size_t)c, &rc, err);
    float *dxf = rc ? NULL : out_tmp(be, T_OUT, dx, count, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->avgpool_backward(CPU(be), n, c, hw, dyf, dxf, err);
    if (rc == KILN_OK)
        encode(dxf, dx, count);
    return rc;
}

static int b_scale_channels_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                    const float *s, float *y, kiln_err *err)
{
    int rc;
    size_t count = count3("scale_channels_forward", n, c, hw, &rc, err);
    const float *xf = rc ? NULL : decode(be, T_A, x, count, &rc, err);
    const float *sf = rc ? NULL : decode(be, T_B, s, (size_t)n * (size_t)c, &rc, err);
    float *yf = rc ? NULL : out_tmp(be, T_OUT, y, count, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->scale_channels_forward(CPU(be), n, c, hw, xf, sf, yf, err);
    if (rc == KILN_OK)
        encode(yf, y, count);
    return rc;
}

static int b_scale_channels_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                     const float *s, const float *dy, float *dx, float *ds,
                                     kiln_err *err)
{
    int rc;
    size_t count = count3("scale_channels_backward", n, c, hw, &rc, err);
    size_t rows = (size_t)n * (size_t)c;
    const float *xf = rc ? NULL : decode(be, T_A, x, count, &rc, err);
    const float *sf = rc ? NULL : decode(be, T_B, s, rows, &rc, err);
    const float *dyf = rc ? NULL : decode(be, T_C, dy, count, &rc, err);
    float *dxf = rc ? NULL : out_tmp(be, T_OUT, dx, count, &rc, err);
    float *dsf = rc ? NULL : out_tmp(be, T_OUT2, ds, rows, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->scale_channels_backward(CPU(be), n, c, hw, xf, sf, dyf, dxf, dsf, err);
    if (rc == KILN_OK) {
        encode(dxf, dx, count);
        encode(dsf, ds, rows);
    }
    return rc;
}

/* --- linear: weights rounded, products and gradients float32 ------------ */

static int b_linear_forward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                            const float *weight, const float *bias, float *y, kiln_err *err)
{
    int rc = kiln_nn_check_linear_forward(n, in, out, x, weight, y, err);
    if (rc || n == 0)
        return rc;
    const float *xf = decode(be, T_A, x, (size_t)n * in, &rc, err);
    const float *wf = rc ? NULL : rounded(be, weight, (size_t)in * out, &rc, err);
    float *yf = rc ? NULL : out_tmp(be, T_OUT, y, (size_t)n * out, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->linear_forward(CPU(be), n, in, out, xf, wf, bias, yf, err);
    if (rc == KILN_OK)
        encode(yf, y, (size_t)n * out);
    return rc;
}

static int b_linear_backward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                             const float *weight, const float *dy, float *dx, float *dweight,
                             float *dbias, kiln_err *err)
{
    int rc = kiln_nn_check_linear_backward(n, in, out, x, weight, dy, dweight, err);
    if (rc)
        return rc;
    const float *xf = decode(be, T_A, x, (size_t)n * in, &rc, err);
    const float *dyf = rc ? NULL : decode(be, T_B, dy, (size_t)n * out, &rc, err);
    const float *wf = rc ? NULL : rounded(be, weight, (size_t)in * out, &rc, err);
    float *dxf = rc ? NULL : out_tmp(be, T_OUT, dx, (size_t)n * in, &rc, err);
    if (rc)
        return rc;
    rc = CPU(be)->ops->linear_backward(CPU(be), n, in, out, xf, wf, dyf, dxf, dweight, dbias,
                                       err);
    if (rc == KILN_OK)
        encode(dxf, dx, (size_t)n * in);
    return rc;
}

/* --- the format's two ends ------------------------------------------------ */

static int b_act_from_f32(kiln_nn_backend *be, int n, int c, int hw, const float *src,
                          float *dst, kiln_err *err)
{
    int rc;
    size_t count = count3("act_from_f32", n, c, hw, &rc, err);
    if (rc == KILN_OK && count && (!src || !dst))
        rc = kiln_err_set(err, KILN_EINVAL, "act_from_f32: NULL buffer");
    if (rc == KILN_OK)
        encode(src, dst, count);
    return rc;
}

static int b_act_to_f32(kiln_nn_backend *be, int n, int c, int hw, const float *src, float *dst,
                        kiln_err *err)
{
    int rc;
    size_t count = count3("act_to_f32", n, c, hw, &rc, err);
    if (rc == KILN_OK && count && (!src || !dst))
        rc = kiln_err_set(err, KILN_EINVAL, "act_to_f32: NULL buffer");
    if (rc != KILN_OK || !count)
        return rc;
    /* Decoded last to first: dst may start where src does. */
    const kiln_bf16 *s = (const kiln_bf16 *)(const void *)src;
    for (size_t i = count; i-- > 0;)
        dst[i] = kiln_bf16_to_f32(s[i]);
    (void)be;
    return KILN_OK;
}

static void b_destroy(kiln_nn_backend *be)
{
    bf16_impl *k = be ? be->impl : NULL;
    if (k) {
        kiln_nn_backend_destroy(k->cpu);
        for (int i = 0; i < T_COUNT; i++)
            free(k->tmp[i]);
        free(k);
    }
    free(be);
}

static const kiln_nn_ops bf16_ops = {
    .name = "cpu-bf16",
    .destroy = b_destroy,
    .alloc = b_alloc,
    .release = b_release,
    .upload = b_upload,
    .download = b_download,
    .fill = b_fill,
    .copy = b_copy,
    .sync = b_sync,
    .conv_forward = b_conv_forward,
    .conv_backward_data = b_conv_backward_data,
    .conv_backward_filter = b_conv_backward_filter,
    .bn_forward_train = b_bn_forward_train,
    .bn_forward_eval = b_bn_forward_eval,
    .bn_backward = b_bn_backward,
    .bn_silu_forward_train = b_bn_silu_forward_train,
    .bn_silu_forward_eval = b_bn_silu_forward_eval,
    .silu_bn_backward = b_silu_bn_backward,
    .silu_forward = b_silu_forward,
    .silu_backward = b_silu_backward,
    .sigmoid_forward = b_sigmoid_forward,
    .sigmoid_backward = b_sigmoid_backward,
    .add = b_add,
    .mul = b_mul,
    .scale = b_scale,
    .sum_squares = b_sum_squares,
    .mask = b_mask,
    .scale_samples = b_scale_samples,
    .avgpool_forward = b_avgpool_forward,
    .avgpool_backward = b_avgpool_backward,
    .scale_channels_forward = b_scale_channels_forward,
    .scale_channels_backward = b_scale_channels_backward,
    .linear_forward = b_linear_forward,
    .linear_backward = b_linear_backward,
    .xent_forward_backward = b_xent,
    .sgd_step = b_sgd,
    .adamw_step = b_adamw,
    .act_from_f32 = b_act_from_f32,
    .act_to_f32 = b_act_to_f32,
    .normalize_u8 = b_normalize_u8,
};

kiln_nn_backend *kiln_nn_cpu_bf16_create(int threads, kiln_err *err)
{
    kiln_nn_backend *cpu = kiln_nn_cpu_create(threads, err);
    if (!cpu)
        return NULL;
    kiln_nn_backend *be = calloc(1, sizeof *be);
    bf16_impl *k = calloc(1, sizeof *k);
    if (!be || !k) {
        free(be);
        free(k);
        kiln_nn_backend_destroy(cpu);
        kiln_err_set(err, KILN_ENOMEM, "out of memory creating the cpu-bf16 backend");
        return NULL;
    }
    k->cpu = cpu;
    be->ops = &bf16_ops;
    be->impl = k;
    be->act = KILN_ACT_BF16_NCHW;
    return be;
}
