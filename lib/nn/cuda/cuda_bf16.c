/* lib/nn/cuda/cuda_bf16.c — the CUDA backend's bf16 mode (see
 * cuda_internal.h): the act ops on kiln's bf16 NHWC kernels
 * (cuda_kernels_bf16.h) — SiLU/sigmoid and their gradients,
 * add, dropout's mask product, stochastic depth, pooling, SE gating — and
 * the two conversions between the interface's float32 NCHW and the mode's
 * bf16 NHWC (batch norm: cuda_bf16_bn.c). Parameters, statistics and
 * masks are float32. Each op runs
 * the CPU oracle's argument checks and visits the step graph with the
 * words of its work, as the fp32 ops do (same op names). */
#include "nn/cuda/cuda_internal.h"
#include "nn/cuda/cuda_kernels_bf16.h"

#define BF16(p) ((kiln_bf16 *)(void *)(p))
#define CBF16(p) ((const kiln_bf16 *)(const void *)(p))

/* --- elementwise (layout-free) ------------------------------------------------- */

static int ew(kiln_nn_backend *be, const char *op, cuda_ew_kind kind, size_t count,
              const float *a, const float *b, float *y, kiln_err *err)
{
    int inputs = kind == CUDA_EW_SILU || kind == CUDA_EW_SIGMOID ? 1 : 2;
    int rc = kiln_nn_check_ew(op, count, inputs, a, b, y, err);
    if (rc || count == 0)
        return rc;
    /* alpha 0: the fp32 ops' signature, so graph words read alike. */
    CUDA_GRAPH_OP(cuda_of(be), err, op, GW_I(kind), GW_I(count), GW_P(a), GW_P(b), GW_P(y),
                  GW_F(0.0f));
    KILN_CUDA(cuda_launch_bf16_ew(cuda_of(be)->stream, kind, count, CBF16(a), CBF16(b), BF16(y)));
fail:
    return rc;
}

int cuda_bf16_silu_forward(kiln_nn_backend *be, size_t count, const float *x, float *y,
                           kiln_err *err)
{
    return ew(be, "silu_forward", CUDA_EW_SILU, count, x, NULL, y, err);
}

int cuda_bf16_silu_backward(kiln_nn_backend *be, size_t count, const float *x, const float *dy,
                            float *dx, kiln_err *err)
{
    return ew(be, "silu_backward", CUDA_EW_SILU_BWD, count, x, dy, dx, err);
}

int cuda_bf16_sigmoid_forward(kiln_nn_backend *be, size_t count, const float *x, float *y,
                              kiln_err *err)
{
    return ew(be, "sigmoid_forward", CUDA_EW_SIGMOID, count, x, NULL, y, err);
}

int cuda_bf16_sigmoid_backward(kiln_nn_backend *be, size_t count, const float *y,
                               const float *dy, float *dx, kiln_err *err)
{
    return ew(be, "sigmoid_backward", CUDA_EW_SIGMOID_BWD, count, y, dy, dx, err);
}

int cuda_bf16_add(kiln_nn_backend *be, size_t count, const float *a, const float *b, float *y,
                  kiln_err *err)
{
    return ew(be, "add", CUDA_EW_ADD, count, a, b, y, err);
}

/* Dropout: x act, mask float32. */
int cuda_bf16_mul(kiln_nn_backend *be, size_t count, const float *x, const float *mask, float *y,
                  kiln_err *err)
{
    int rc = kiln_nn_check_ew("mul", count, 2, x, mask, y, err);
    if (rc || count == 0)
        return rc;
    CUDA_GRAPH_OP(cuda_of(be), err, "mul", GW_I(CUDA_EW_MUL), GW_I(count), GW_P(x), GW_P(mask),
                  GW_P(y), GW_F(0.0f));
    KILN_CUDA(cuda_launch_bf16_mul_mask(cuda_of(be)->stream, count, CBF16(x), mask, BF16(y)));
fail:
    return rc;
}

/* Stochastic depth: a sample is c*hw contiguous values in NHWC as in NCHW. */
int cuda_bf16_scale_samples(kiln_nn_backend *be, int n, size_t per_sample, const float *x,
                            const float *scale, float *y, kiln_err *err)
{
    int rc = kiln_nn_check_scale_samples(n, per_sample, x, scale, y, err);
    if (rc || n == 0 || per_sample == 0)
        return rc;
    CUDA_GRAPH_OP(cuda_of(be), err, "scale_samples", GW_I(n), GW_I(per_sample), GW_P(x),
                  GW_P(scale), GW_P(y));
    KILN_CUDA(cuda_launch_bf16_scale_samples(cuda_of(be)->stream, n, per_sample, CBF16(x), scale,
                                             BF16(y)));
fail:
    return rc;
}

/* --- pooling and squeeze-and-excitation over NHWC [n, hw, c] ------------------- */

enum { AVG_FWD, AVG_BWD, SCALE_FWD, SCALE_BWD };

static int rows_op(kiln_nn_backend *be, const char *op, int kind, int n, int c, int hw,
                   const float *x, const float *s, const float *dy, float *y, float *dx,
                   float *ds, kiln_err *err)
{
    int rc = kiln_nn_check_rows(op, kind == AVG_FWD || kind == AVG_BWD, n, c, hw, err);
    if (rc)
        return rc;
    if ((size_t)n * (size_t)c == 0)
        return KILN_OK;
    /* The fp32 ops' words (rows = n*c) plus the shape the layout needs. */
    CUDA_GRAPH_OP(cuda_of(be), err, op, GW_I((size_t)n * (size_t)c), GW_I(hw), GW_P(x), GW_P(s),
                  GW_P(dy), GW_P(y), GW_P(dx), GW_P(ds), GW_I(n), GW_I(c));
    cudaStream_t st = cuda_of(be)->stream;
    switch (kind) {
    case AVG_FWD:
        KILN_CUDA(cuda_launch_bf16_avgpool_fwd(st, n, hw, c, CBF16(x), BF16(y)));
        break;
    case AVG_BWD:
        KILN_CUDA(cuda_launch_bf16_avgpool_bwd(st, n, hw, c, CBF16(dy), BF16(dx)));
        break;
    case SCALE_FWD:
        KILN_CUDA(cuda_launch_bf16_scale_channels_fwd(st, n, hw, c, CBF16(x), CBF16(s), BF16(y)));
        break;
    default:
        KILN_CUDA(cuda_launch_bf16_scale_channels_bwd(st, n, hw, c, CBF16(x), CBF16(s), CBF16(dy),
                                                      BF16(dx), BF16(ds)));
        break;
    }
fail:
    return rc;
}

int cuda_bf16_avgpool_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x, float *y,
                              kiln_err *err)
{
    int rc = kiln_nn_check_ptrs(err, "avgpool_forward", 2, x, y);
    return rc ? rc : rows_op(be, "avgpool_forward", AVG_FWD, n, c, hw, x, NULL, NULL, y, NULL,
                             NULL, err);
}

int cuda_bf16_avgpool_backward(kiln_nn_backend *be, int n, int c, int hw, const float *dy,
                               float *dx, kiln_err *err)
{
    int rc = kiln_nn_check_ptrs(err, "avgpool_backward", 2, dy, dx);
    return rc ? rc : rows_op(be, "avgpool_backward", AVG_BWD, n, c, hw, NULL, NULL, dy, NULL, dx,
                             NULL, err);
}

int cuda_bf16_scale_channels_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                     const float *s, float *y, kiln_err *err)
{
    int rc = kiln_nn_check_ptrs(err, "scale_channels_forward", 3, x, s, y);
    return rc ? rc : rows_op(be, "scale_channels_forward", SCALE_FWD, n, c, hw, x, s, NULL, y,
                             NULL, NULL, err);
}

int cuda_bf16_scale_channels_backward(kiln_nn_backend *be, int n, int c, int hw,
                                      const float *x, const float *s, const float *dy, float *dx,
                                      float *ds, kiln_err *err)
{
    int rc = kiln_nn_check_ptrs(err, "scale_channels_backward", 5, x, s, dy, dx, ds);
    return rc ? rc : rows_op(be, "scale_channels_backward", SCALE_BWD, n, c, hw, x, s, dy, NULL,
                             dx, ds, err);
}

/* --- the format's two ends: float32 NCHW <-> bf16 NHWC -------------------------- */

/* n*c*hw through *count; EINVAL for a bad shape, NULL buffers with work to
 * do, or (the transpose cannot run in place) overlapping ones. */
static int act_args(const char *op, int n, int c, int hw, const float *src, const float *dst,
                    size_t src_bytes, size_t dst_bytes, size_t *count, kiln_err *err)
{
    int rc = kiln_nn_check_dims(err, op, n, c, hw);
    if (rc)
        return rc;
    *count = (size_t)n * (size_t)c * (size_t)hw;
    if (*count == 0)
        return KILN_OK;
    if (!src || !dst)
        return kiln_err_set(err, KILN_EINVAL, "%s: NULL buffer", op);
    const char *s = (const char *)src, *d = (const char *)dst;
    if (s < d + *count * dst_bytes && d < s + *count * src_bytes)
        return kiln_err_set(err, KILN_EINVAL, "%s: source and destination overlap", op);
    return KILN_OK;
}

int cuda_bf16_act_from_f32(kiln_nn_backend *be, int n, int c, int hw, const float *src,
                           float *dst, kiln_err *err)
{
    size_t count = 0;
    int rc = act_args("act_from_f32", n, c, hw, src, dst, sizeof(float), sizeof(kiln_bf16),
                      &count, err);
    if (rc || count == 0)
        return rc;
    CUDA_GRAPH_OP(cuda_of(be), err, "act_from_f32", GW_I(n), GW_I(c), GW_I(hw), GW_P(src),
                  GW_P(dst));
    KILN_CUDA(cuda_launch_bf16_from_f32_nchw(cuda_of(be)->stream, n, c, hw, src, BF16(dst)));
fail:
    return rc;
}

int cuda_bf16_act_to_f32(kiln_nn_backend *be, int n, int c, int hw, const float *src, float *dst,
                         kiln_err *err)
{
    size_t count = 0;
    int rc = act_args("act_to_f32", n, c, hw, src, dst, sizeof(kiln_bf16), sizeof(float), &count,
                      err);
    if (rc || count == 0)
        return rc;
    CUDA_GRAPH_OP(cuda_of(be), err, "act_to_f32", GW_I(n), GW_I(c), GW_I(hw), GW_P(src),
                  GW_P(dst));
    KILN_CUDA(cuda_launch_bf16_to_f32_nchw(cuda_of(be)->stream, n, c, hw, CBF16(src), dst));
fail:
    return rc;
}
