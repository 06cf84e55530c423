/* lib/nn/cuda/cuda_kernels_bf16.h — launchers of kiln's CUDA kernels for
 * mixed precision (cuda_kernels_bf16.cu): activations bf16 (nn/bf16.h) in
 * NHWC (channels last: element (i, ch, p) of [n, c, hw] at (i * hw + p) * c
 * + ch), parameters and statistics float32. The CUDA backend's bf16 mode
 * (KILN_ACT_BF16_NHWC) runs every op that touches activations through
 * these, cuDNN (convolutions) and cuBLAS (linear products).
 *
 * Contract, as cuda_kernels.h: each launcher enqueues on `stream` and
 * returns cudaGetLastError() of the launch; sizes are validated by the
 * caller; counts of 0 launch nothing. Every kernel decodes its bf16 inputs
 * exactly, computes in float32 — reductions in double, in a fixed order, so
 * results do not change from run to run — and rounds once when it stores a
 * bf16 output (kiln_bf16_from_f32, the same rounding as the CPU's
 * cpu-bf16 oracle). `rows` of the batch-norm and pooling kernels is n * hw:
 * the positions a channel's statistics run over. */
#ifndef KILN_NN_CUDA_KERNELS_BF16_H
#define KILN_NN_CUDA_KERNELS_BF16_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "nn/bf16.h"
#include "nn/cuda/cuda_kernels.h" /* cuda_ew_kind */

#ifdef __cplusplus
extern "C" {
#endif

/* --- conversions -------------------------------------------------------- */
/* dst[i] = bf16(src[i]) / float(src[i]), same layout. */
cudaError_t cuda_launch_bf16_from_f32(cudaStream_t s, size_t count, const float *src,
                                      kiln_bf16 *dst);
cudaError_t cuda_launch_bf16_to_f32(cudaStream_t s, size_t count, const kiln_bf16 *src,
                                    float *dst);
/* dst NHWC bf16 [n, hw, c] from src NCHW float [n, c, hw], and back. Also
 * the weights' KCRS -> KRSC cast (n = out_c, c = in_c / groups, hw = k * k). */
cudaError_t cuda_launch_bf16_from_f32_nchw(cudaStream_t s, int n, int c, int hw, const float *src,
                                           kiln_bf16 *dst);
cudaError_t cuda_launch_bf16_to_f32_nchw(cudaStream_t s, int n, int c, int hw,
                                         const kiln_bf16 *src, float *dst);

/* --- elementwise (layout-free; y may alias a or b) ----------------------- */
/* kind: CUDA_EW_SILU, _SILU_BWD (a = x, b = dy), _SIGMOID, _SIGMOID_BWD
 * (a = y, b = dy), _ADD; the formulas of cuda_kernels.cu's ew kernel. Any
 * other kind returns cudaErrorInvalidValue without launching. */
cudaError_t cuda_launch_bf16_ew(cudaStream_t s, cuda_ew_kind kind, size_t count,
                                const kiln_bf16 *a, const kiln_bf16 *b, kiln_bf16 *y);
/* y = x * mask (dropout), mask float32. */
cudaError_t cuda_launch_bf16_mul_mask(cudaStream_t s, size_t count, const kiln_bf16 *x,
                                      const float *mask, kiln_bf16 *y);
/* y[s, j] = x[s, j] * scale[s] (stochastic depth), scale float32. */
cudaError_t cuda_launch_bf16_scale_samples(cudaStream_t s, int n, size_t per_sample,
                                           const kiln_bf16 *x, const float *scale, kiln_bf16 *y);

/* --- batch norm over NHWC [rows, c] ---------------------------------------
 * The formulas of nn/cpu/cpu_bn.c (PyTorch's): batch mean and biased
 * variance, running stats updated with `momentum` and the unbiased
 * variance (rows / (rows - 1)), save_invstd = 1 / sqrt(var + eps). Device
 * scratch of cuda_bf16_bn_scratch_bytes(rows, c) bytes holds the partial
 * sums (the caller provides it; its contents need no initialisation). */
size_t cuda_bf16_bn_scratch_bytes(size_t rows, int c);
cudaError_t cuda_launch_bf16_bn_train(cudaStream_t s, size_t rows, int c, const kiln_bf16 *x,
                                      const float *gamma, const float *beta, float *running_mean,
                                      float *running_var, float momentum, float eps,
                                      kiln_bf16 *y, float *save_mean, float *save_invstd,
                                      void *scratch);
cudaError_t cuda_launch_bf16_bn_eval(cudaStream_t s, size_t rows, int c, const kiln_bf16 *x,
                                     const float *gamma, const float *beta,
                                     const float *running_mean, const float *running_var,
                                     float eps, kiln_bf16 *y);
/* dgamma = sum dy * xhat, dbeta = sum dy (float32, overwritten);
 * dx = gamma * invstd * (dy - dbeta / rows - xhat * dgamma / rows). */
cudaError_t cuda_launch_bf16_bn_bwd(cudaStream_t s, size_t rows, int c, const kiln_bf16 *x,
                                    const kiln_bf16 *dy, const float *gamma,
                                    const float *save_mean, const float *save_invstd,
                                    kiln_bf16 *dx, float *dgamma, float *dbeta, void *scratch);

/* Fused with SiLU (backend.h's bn_silu_* / silu_bn_backward): the same
 * passes, writing also y = silu(bn) from the stored bn (train; eval writes
 * only y), or reading the SiLU's input bn and dy in place of BN's dy —
 * each value rounded as the unfused pair stores it, so both give the same
 * bits, with one pass over the tensor fewer. Scratch as above. With y
 * (train) or bn (backward) NULL they are the plain launchers above. */
cudaError_t cuda_launch_bf16_bn_silu_train(cudaStream_t s, size_t rows, int c,
                                           const kiln_bf16 *x, const float *gamma,
                                           const float *beta, float *running_mean,
                                           float *running_var, float momentum, float eps,
                                           kiln_bf16 *bn, kiln_bf16 *y, float *save_mean,
                                           float *save_invstd, void *scratch);
cudaError_t cuda_launch_bf16_bn_silu_eval(cudaStream_t s, size_t rows, int c, const kiln_bf16 *x,
                                          const float *gamma, const float *beta,
                                          const float *running_mean, const float *running_var,
                                          float eps, kiln_bf16 *y);
cudaError_t cuda_launch_bf16_silu_bn_bwd(cudaStream_t s, size_t rows, int c, const kiln_bf16 *x,
                                         const kiln_bf16 *bn, const kiln_bf16 *dy,
                                         const float *gamma, const float *save_mean,
                                         const float *save_invstd, kiln_bf16 *dx, float *dgamma,
                                         float *dbeta, void *scratch);

/* --- pooling and squeeze-and-excitation over NHWC [n, hw, c] -------------- */
/* y [n, c] = mean over hw of x. */
cudaError_t cuda_launch_bf16_avgpool_fwd(cudaStream_t s, int n, int hw, int c, const kiln_bf16 *x,
                                         kiln_bf16 *y);
/* dx [n, hw, c] = dy[n, c] / hw. */
cudaError_t cuda_launch_bf16_avgpool_bwd(cudaStream_t s, int n, int hw, int c,
                                         const kiln_bf16 *dy, kiln_bf16 *dx);
/* y = x * sc[n, c] broadcast over hw. */
cudaError_t cuda_launch_bf16_scale_channels_fwd(cudaStream_t s, int n, int hw, int c,
                                                const kiln_bf16 *x, const kiln_bf16 *sc,
                                                kiln_bf16 *y);
/* dx = dy * sc; ds [n, c] = sum over hw of dy * x. */
cudaError_t cuda_launch_bf16_scale_channels_bwd(cudaStream_t s, int n, int hw, int c,
                                                const kiln_bf16 *x, const kiln_bf16 *sc,
                                                const kiln_bf16 *dy, kiln_bf16 *dx,
                                                kiln_bf16 *ds);

/* --- linear: cuBLAS computes the products in float32 from bf16 operands --- */
/* y [n, out] = bf16(acc + bias[o]), acc float32 [n, out]; bias may be NULL. */
cudaError_t cuda_launch_bf16_bias_store(cudaStream_t s, int n, int out, const float *acc,
                                        const float *bias, kiln_bf16 *y);
/* dbias[o] = sum over n rows of dy[i, o] (double, float32 result). */
cudaError_t cuda_launch_bf16_bias_grad(cudaStream_t s, int n, int out, const kiln_bf16 *dy,
                                       float *dbias);

#ifdef __cplusplus
}
#endif

#endif
