/* lib/nn/cuda/cuda_bf16_bn.c — batch norm in the CUDA backend's bf16 mode
 * (NHWC [n * hw, c], statistics and parameters float32), plain or fused
 * with SiLU (backend.h's bn_silu_forward_train / _eval, silu_bn_backward).
 * Fused, the kernels of cuda_kernels_bf16.cu write the SiLU in the same
 * pass, or read the SiLU's input in place of its stored gradient, so a
 * Conv-BN-SiLU layer makes one pass over its tensor fewer each way; bit for
 * bit the unfused ops (the kernels round each value as those store it).
 * The fused ops are offered unless KILN_CUDA_FUSE=0 (opts.fuse). */
#include "nn/backend_check.h"
#include "nn/cuda/cuda_internal.h"
#include "nn/cuda/cuda_kernels_bf16.h"

#define BF16(p) ((kiln_bf16 *)(void *)(p))
#define CBF16(p) ((const kiln_bf16 *)(const void *)(p))

/* bn = BN(x), and y = silu(bn) when y is not NULL. */
static int bn_train(kiln_nn_backend *be, const char *op, int n, int c, int hw, const float *x,
                    const float *gamma, const float *beta, float *running_mean,
                    float *running_var, float momentum, float eps, float *bn, float *y,
                    float *save_mean, float *save_invstd, kiln_err *err)
{
    cuda_impl *ci = cuda_of(be);
    int rc = kiln_nn_check_bn_train(n, c, hw, x, gamma, beta, running_mean, running_var, bn,
                                    save_mean, save_invstd, err);
    if (rc || c == 0)
        return rc;
    CUDA_GRAPH_OP(ci, err, op, GW_I(n), GW_I(c), GW_I(hw), GW_P(x), GW_P(gamma), GW_P(beta),
                  GW_P(running_mean), GW_P(running_var), GW_F(momentum), GW_F(eps), GW_P(bn),
                  GW_P(y), GW_P(save_mean), GW_P(save_invstd));
    size_t rows = (size_t)n * (size_t)hw;
    size_t bytes = cuda_bf16_bn_scratch_bytes(rows, c);
    void *scratch;
    if ((rc = cuda_scratch_parts(ci, 1, &bytes, &scratch, err)) != KILN_OK)
        return rc;
    KILN_CUDA(cuda_launch_bf16_bn_silu_train(ci->stream, rows, c, CBF16(x), gamma, beta,
                                             running_mean, running_var, momentum, eps, BF16(bn),
                                             BF16(y), save_mean, save_invstd, scratch));
fail:
    return rc;
}

int cuda_bf16_bn_forward_train(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                               const float *gamma, const float *beta, float *running_mean,
                               float *running_var, float momentum, float eps, float *y,
                               float *save_mean, float *save_invstd, kiln_err *err)
{
    return bn_train(be, "bn_forward_train", n, c, hw, x, gamma, beta, running_mean, running_var,
                    momentum, eps, y, NULL, save_mean, save_invstd, err);
}

int cuda_bf16_bn_silu_forward_train(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                    const float *gamma, const float *beta, float *running_mean,
                                    float *running_var, float momentum, float eps, float *bn,
                                    float *y, float *save_mean, float *save_invstd,
                                    kiln_err *err)
{
    int rc = c > 0 ? kiln_nn_check_ptrs(err, "bn_silu_forward_train", 1, y) : KILN_OK;
    return rc ? rc
              : bn_train(be, "bn_silu_forward_train", n, c, hw, x, gamma, beta, running_mean,
                         running_var, momentum, eps, bn, y, save_mean, save_invstd, err);
}

/* y = BN(x) with the running statistics, through SiLU when `silu`. */
static int bn_eval(kiln_nn_backend *be, const char *op, int silu, int n, int c, int hw,
                   const float *x, const float *gamma, const float *beta,
                   const float *running_mean, const float *running_var, float eps, float *y,
                   kiln_err *err)
{
    cuda_impl *ci = cuda_of(be);
    int rc = kiln_nn_check_bn_eval(n, c, hw, x, gamma, beta, running_mean, running_var, y, err);
    if (rc || (long long)n * c * hw == 0)
        return rc;
    CUDA_GRAPH_OP(ci, err, op, GW_I(n), GW_I(c), GW_I(hw), GW_P(x), GW_P(gamma), GW_P(beta),
                  GW_P(running_mean), GW_P(running_var), GW_F(eps), GW_P(y));
    size_t rows = (size_t)n * (size_t)hw;
    if (silu)
        KILN_CUDA(cuda_launch_bf16_bn_silu_eval(ci->stream, rows, c, CBF16(x), gamma, beta,
                                                running_mean, running_var, eps, BF16(y)));
    else
        KILN_CUDA(cuda_launch_bf16_bn_eval(ci->stream, rows, c, CBF16(x), gamma, beta,
                                           running_mean, running_var, eps, BF16(y)));
fail:
    return rc;
}

int cuda_bf16_bn_forward_eval(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                              const float *gamma, const float *beta, const float *running_mean,
                              const float *running_var, float eps, float *y, kiln_err *err)
{
    return bn_eval(be, "bn_forward_eval", 0, n, c, hw, x, gamma, beta, running_mean, running_var,
                   eps, y, err);
}

int cuda_bf16_bn_silu_forward_eval(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                   const float *gamma, const float *beta,
                                   const float *running_mean, const float *running_var, float eps,
                                   float *y, kiln_err *err)
{
    return bn_eval(be, "bn_silu_forward_eval", 1, n, c, hw, x, gamma, beta, running_mean,
                   running_var, eps, y, err);
}

/* BN's backward from dy, or (bn not NULL) from silu_backward(bn, dy). */
static int bn_backward(kiln_nn_backend *be, const char *op, int n, int c, int hw,
                       const float *x, const float *bn, const float *dy, const float *gamma,
                       const float *save_mean, const float *save_invstd, float *dx,
                       float *dgamma, float *dbeta, kiln_err *err)
{
    cuda_impl *ci = cuda_of(be);
    int rc = kiln_nn_check_bn_backward(n, c, hw, x, dy, gamma, save_mean, save_invstd, dx, dgamma,
                                       dbeta, err);
    if (rc || c == 0)
        return rc;
    CUDA_GRAPH_OP(ci, err, op, GW_I(n), GW_I(c), GW_I(hw), GW_P(x), GW_P(bn), GW_P(dy),
                  GW_P(gamma), GW_P(save_mean), GW_P(save_invstd), GW_P(dx), GW_P(dgamma),
                  GW_P(dbeta));
    size_t rows = (size_t)n * (size_t)hw;
    if (rows == 0) /* nothing to normalise: zero parameter gradients, as the CPU */
        return cuda_zero_floats(ci, dgamma, (size_t)c, dbeta, (size_t)c, err);
    size_t bytes = cuda_bf16_bn_scratch_bytes(rows, c);
    void *scratch;
    if ((rc = cuda_scratch_parts(ci, 1, &bytes, &scratch, err)) != KILN_OK)
        return rc;
    KILN_CUDA(cuda_launch_bf16_silu_bn_bwd(ci->stream, rows, c, CBF16(x), CBF16(bn), CBF16(dy),
                                           gamma, save_mean, save_invstd, BF16(dx), dgamma,
                                           dbeta, scratch));
fail:
    return rc;
}

int cuda_bf16_bn_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                          const float *dy, const float *gamma, const float *save_mean,
                          const float *save_invstd, float *dx, float *dgamma, float *dbeta,
                          kiln_err *err)
{
    return bn_backward(be, "bn_backward", n, c, hw, x, NULL, dy, gamma, save_mean, save_invstd,
                       dx, dgamma, dbeta, err);
}

int cuda_bf16_silu_bn_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                               const float *bn, const float *dy, const float *gamma,
                               const float *save_mean, const float *save_invstd, float *dx,
                               float *dgamma, float *dbeta, kiln_err *err)
{
    int rc = c > 0 && (size_t)n * (size_t)hw > 0
                 ? kiln_nn_check_ptrs(err, "silu_bn_backward", 1, bn)
                 : KILN_OK;
    return rc ? rc
              : bn_backward(be, "silu_bn_backward", n, c, hw, x, bn, dy, gamma, save_mean,
                            save_invstd, dx, dgamma, dbeta, err);
}
