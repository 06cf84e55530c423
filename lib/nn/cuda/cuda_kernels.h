/* lib/nn/cuda/cuda_kernels.h — launchers of kiln's own CUDA kernels
 * (cuda_kernels.cu), callable from the C host code. Each enqueues on
 * `stream` and returns cudaGetLastError() of the launch, which the caller
 * checks with KILN_CUDA (file, line, CUDA's message). Sizes are validated
 * by the caller; counts of 0 launch nothing.
 *
 * Every kernel computes the formula of its CPU counterpart (nn/cpu) in the
 * same order and precision (sums in double, multiply and add unfused where
 * the CPU does not fuse), so results agree to rounding, and bit for bit in
 * the optimizer steps and masks. */
#ifndef KILN_NN_CUDA_KERNELS_H
#define KILN_NN_CUDA_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cuda_ew_kind {
    CUDA_EW_SILU,
    CUDA_EW_SILU_BWD,    /* a = x, b = dy */
    CUDA_EW_SIGMOID,
    CUDA_EW_SIGMOID_BWD, /* a = y, b = dy */
    CUDA_EW_ADD,
    CUDA_EW_MUL,
    CUDA_EW_SCALE,       /* y = a * alpha */
    CUDA_EW_FILL,        /* y = alpha */
} cuda_ew_kind;

/* The SGD / AdamW scalars, computed on the host as nn/cpu/cpu_optim.c does. */
typedef struct cuda_sgd_args {
    float lr, momentum, wd;
    int nesterov;
} cuda_sgd_args;

typedef struct cuda_adamw_args {
    float decay, beta1, beta2, one_m_b1, one_m_b2, eps, bc2_sqrt, neg_step;
} cuda_adamw_args;

/* The AdamW scalars of step `step` (from 1) as PyTorch computes them in
 * Python: in double, each rounded once to float. */
static inline cuda_adamw_args cuda_adamw_args_make(float lr, float beta1, float beta2, float eps,
                                                   float weight_decay, int64_t step)
{
    double bc1 = 1.0 - pow((double)beta1, (double)step);
    double bc2 = 1.0 - pow((double)beta2, (double)step);
    cuda_adamw_args a = {(float)(1.0 - (double)lr * (double)weight_decay),
                         beta1,
                         beta2,
                         (float)(1.0 - (double)beta1),
                         (float)(1.0 - (double)beta2),
                         eps,
                         (float)sqrt(bc2),
                         (float)(-(double)lr / bc1)};
    return a;
}

/* Elements per block of the sum-of-squares partials (as the CPU's chunks). */
#define CUDA_SUMSQ_CHUNK 65536

cudaError_t cuda_launch_ew(cudaStream_t s, cuda_ew_kind kind, size_t count, const float *a,
                           const float *b, float *y, float alpha);
/* mask[i] = u(seed, offset + i) >= p ? 1/(1-p) : 0 */
cudaError_t cuda_launch_mask(cudaStream_t s, size_t count, float p, uint64_t seed,
                             uint64_t offset, float *mask);
/* y[s, j] = x[s, j] * scale[s] */
cudaError_t cuda_launch_scale_samples(cudaStream_t s, int n, size_t per_sample, const float *x,
                                      const float *scale, float *y);
/* dst[i] = lut[channel(i) * 256 + src[i]] over [n, c, hw] (the loader's normalisation). */
cudaError_t cuda_launch_normalize_u8(cudaStream_t s, int n, int c, int hw, const uint8_t *src,
                                     const float *lut, float *dst);
/* partial[b] = sum of x[i]^2 over block b of CUDA_SUMSQ_CHUNK, in double;
 * ceil(count / CUDA_SUMSQ_CHUNK) partials. */
cudaError_t cuda_launch_sum_squares(cudaStream_t s, size_t count, const float *x, double *partial);
/* y [rows] = mean over hw of x [rows, hw] */
cudaError_t cuda_launch_avgpool_fwd(cudaStream_t s, size_t rows, int hw, const float *x, float *y);
/* dx [rows, hw] = dy[row] / hw */
cudaError_t cuda_launch_avgpool_bwd(cudaStream_t s, size_t rows, int hw, const float *dy,
                                    float *dx);
/* y [rows, hw] = x * sc[row] */
cudaError_t cuda_launch_scale_channels_fwd(cudaStream_t s, size_t rows, int hw, const float *x,
                                           const float *sc, float *y);
/* dx = dy * sc[row]; ds[row] = sum dy * x (double) */
cudaError_t cuda_launch_scale_channels_bwd(cudaStream_t s, size_t rows, int hw, const float *x,
                                           const float *sc, const float *dy, float *dx,
                                           float *ds);
/* y [n, out] = bias broadcast over rows */
cudaError_t cuda_launch_bias_rows(cudaStream_t s, int n, int out, const float *bias, float *y);
/* dbias[o] = sum over n rows of dy[i, o] (double) */
cudaError_t cuda_launch_bias_grad(cudaStream_t s, int n, int out, const float *dy, float *dbias);
/* Softmax cross-entropy with label smoothing, one block per row: probs,
 * dlogits (divided by n) and row_loss[i] (double). A label outside
 * [0, classes) makes its row NaN (the host checks them outside graphs). */
cudaError_t cuda_launch_xent(cudaStream_t s, int n, int classes, const float *logits,
                             const int32_t *labels, float ls, float *probs, float *dlogits,
                             double *row_loss);
cudaError_t cuda_launch_sgd(cudaStream_t s, size_t count, float *p, const float *g, float *buf,
                            const cuda_sgd_args *a);
cudaError_t cuda_launch_adamw(cudaStream_t s, size_t count, float *p, const float *g, float *m,
                              float *v, const cuda_adamw_args *a);
/* The same three with their per-step values in device memory, read when
 * the kernel runs: a step graph's slots (the seed; the optimizer's args). */
cudaError_t cuda_launch_mask_dev(cudaStream_t s, size_t count, float p, uint64_t offset,
                                 float *mask, const uint64_t *dev_seed);
cudaError_t cuda_launch_sgd_dev(cudaStream_t s, size_t count, float *p, const float *g,
                                float *buf, const cuda_sgd_args *dev_a);
cudaError_t cuda_launch_adamw_dev(cudaStream_t s, size_t count, float *p, const float *g,
                                  float *m, float *v, const cuda_adamw_args *dev_a);

#ifdef __cplusplus
}
#endif

#endif
