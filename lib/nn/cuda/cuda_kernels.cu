// lib/nn/cuda/cuda_kernels.cu — kiln's own CUDA kernels, where no cuDNN or
// cuBLAS op fits (see cuda_kernels.h). Each one is the CPU oracle's formula
// (nn/cpu/cpu_elementwise.c, cpu_pool_linear.c, cpu_loss.c, cpu_simd.inc's
// optimizers): reductions in double with a fixed tree (deterministic), the
// optimizer arithmetic through __fmul_rn / __fadd_rn so nvcc cannot fuse
// it into FMAs that the CPU does not use.
#include <math.h>

#include "nn/cuda/cuda_kernels.h"
#include "nn/cuda/cuda_launch.h"
#include "nn/mask.h"

#define THREADS 256
#define MAX_BLOCKS 8192

static unsigned blocks_for(size_t count)
{
    size_t b = (count + THREADS - 1) / THREADS;
    return (unsigned)(b < MAX_BLOCKS ? b : MAX_BLOCKS);
}

// Block-wide sum of one double per thread, in a fixed order; thread 0
// gets the total.
__device__ static double block_sum(double v)
{
    __shared__ double part[THREADS];
    part[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s)
            part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    double total = part[0];
    __syncthreads();
    return total;
}

__device__ static float block_max(float v)
{
    __shared__ float part[THREADS];
    part[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s && part[threadIdx.x + s] > part[threadIdx.x])
            part[threadIdx.x] = part[threadIdx.x + s];
        __syncthreads();
    }
    float m = part[0];
    __syncthreads();
    return m;
}

// x * a + 0, as the CPU's affine(x, a, 0) rounds it (a -0 product becomes
// +0); the intrinsics keep nvcc from dropping the + 0.
__device__ static float affine0(float x, float a)
{
    return __fadd_rn(__fmul_rn(x, a), 0.0f);
}

#define GRID_LOOP(i, count)                                                                     \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (count);                \
         i += (size_t)gridDim.x * blockDim.x)

__global__ static void ew_kernel(int kind, size_t count, const float *a, const float *b,
                                 float *y, float alpha)
{
    GRID_LOOP(i, count)
    {
        switch (kind) {
        case CUDA_EW_SILU: {
            float x = a[i];
            y[i] = x / (1.0f + expf(-x));
            break;
        }
        case CUDA_EW_SILU_BWD: {
            float x = a[i], s = 1.0f / (1.0f + expf(-x));
            y[i] = b[i] * s * (1.0f + x * (1.0f - s));
            break;
        }
        case CUDA_EW_SIGMOID:
            y[i] = 1.0f / (1.0f + expf(-a[i]));
            break;
        case CUDA_EW_SIGMOID_BWD: {
            float s = a[i];
            y[i] = b[i] * s * (1.0f - s);
            break;
        }
        case CUDA_EW_ADD:
            y[i] = a[i] + b[i];
            break;
        case CUDA_EW_MUL:
            y[i] = a[i] * b[i];
            break;
        case CUDA_EW_SCALE:
            y[i] = affine0(a[i], alpha);
            break;
        case CUDA_EW_FILL:
            y[i] = alpha;
            break;
        }
    }
}

extern "C" cudaError_t cuda_launch_ew(cudaStream_t s, cuda_ew_kind kind, size_t count,
                                      const float *a, const float *b, float *y, float alpha)
{
    if (count == 0)
        return cudaSuccess;
    KILN_LAUNCH(ew_kernel, blocks_for(count), THREADS, 0, s)((int)kind, count, a, b, y, alpha);
    return cudaGetLastError();
}

// dev_seed: a step graph's seed, read when the graph runs (else NULL).
__global__ static void mask_kernel(size_t count, float p, float keep, uint64_t seed,
                                   uint64_t offset, float *mask, const uint64_t *dev_seed)
{
    if (dev_seed)
        seed = *dev_seed;
    GRID_LOOP(i, count)
    mask[i] = kiln_nn_mask_uniform(seed, offset + i) >= p ? keep : 0.0f;
}

extern "C" cudaError_t cuda_launch_mask(cudaStream_t s, size_t count, float p, uint64_t seed,
                                        uint64_t offset, float *mask)
{
    if (count == 0)
        return cudaSuccess;
    float keep = 1.0f / (1.0f - p); // on the host, as the CPU computes it
    KILN_LAUNCH(mask_kernel, blocks_for(count), THREADS, 0, s)(count, p, keep, seed, offset, mask,
                                                               (const uint64_t *)nullptr);
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_mask_dev(cudaStream_t s, size_t count, float p,
                                            uint64_t offset, float *mask,
                                            const uint64_t *dev_seed)
{
    if (count == 0)
        return cudaSuccess;
    float keep = 1.0f / (1.0f - p);
    KILN_LAUNCH(mask_kernel, blocks_for(count), THREADS, 0, s)(count, p, keep, 0, offset, mask,
                                                               dev_seed);
    return cudaGetLastError();
}

__global__ static void scale_samples_kernel(size_t total, size_t per_sample, const float *x,
                                            const float *scale, float *y)
{
    GRID_LOOP(i, total)
    y[i] = affine0(x[i], scale[i / per_sample]);
}

extern "C" cudaError_t cuda_launch_scale_samples(cudaStream_t s, int n, size_t per_sample,
                                                 const float *x, const float *scale, float *y)
{
    size_t total = (size_t)n * per_sample;
    if (total == 0)
        return cudaSuccess;
    KILN_LAUNCH(scale_samples_kernel, blocks_for(total), THREADS, 0, s)(total, per_sample, x,
                                                                        scale, y);
    return cudaGetLastError();
}

__global__ static void normalize_u8_kernel(size_t total, size_t plane, int c, const uint8_t *src,
                                           const float *lut, float *dst)
{
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = lut[(i / plane % (size_t)c) * 256 + src[i]];
}

extern "C" cudaError_t cuda_launch_normalize_u8(cudaStream_t s, int n, int c, int hw,
                                                const uint8_t *src, const float *lut, float *dst)
{
    size_t total = (size_t)n * (size_t)c * (size_t)hw;
    if (total == 0)
        return cudaSuccess;
    KILN_LAUNCH(normalize_u8_kernel, blocks_for(total), THREADS, 0, s)(total, (size_t)hw, c, src,
                                                                       lut, dst);
    return cudaGetLastError();
}

__global__ static void sum_squares_kernel(size_t count, const float *x, double *partial)
{
    size_t lo = (size_t)blockIdx.x * CUDA_SUMSQ_CHUNK;
    size_t hi = lo + CUDA_SUMSQ_CHUNK < count ? lo + CUDA_SUMSQ_CHUNK : count;
    double acc = 0;
    for (size_t i = lo + threadIdx.x; i < hi; i += THREADS) {
        double v = x[i];
        acc += v * v;
    }
    double total = block_sum(acc);
    if (threadIdx.x == 0)
        partial[blockIdx.x] = total;
}

extern "C" cudaError_t cuda_launch_sum_squares(cudaStream_t s, size_t count, const float *x,
                                               double *partial)
{
    if (count == 0)
        return cudaSuccess;
    size_t blocks = (count + CUDA_SUMSQ_CHUNK - 1) / CUDA_SUMSQ_CHUNK;
    KILN_LAUNCH(sum_squares_kernel, (unsigned)blocks, THREADS, 0, s)(count, x, partial);
    return cudaGetLastError();
}

// One block per row of hw floats.
__global__ static void avgpool_fwd_kernel(int hw, const float *x, float *y)
{
    const float *r = x + (size_t)blockIdx.x * hw;
    double acc = 0;
    for (int j = threadIdx.x; j < hw; j += THREADS)
        acc += r[j];
    double total = block_sum(acc);
    if (threadIdx.x == 0)
        y[blockIdx.x] = (float)(total * (1.0 / (double)hw));
}

extern "C" cudaError_t cuda_launch_avgpool_fwd(cudaStream_t s, size_t rows, int hw,
                                               const float *x, float *y)
{
    if (rows == 0)
        return cudaSuccess;
    KILN_LAUNCH(avgpool_fwd_kernel, (unsigned)rows, THREADS, 0, s)(hw, x, y);
    return cudaGetLastError();
}

__global__ static void avgpool_bwd_kernel(size_t total, int hw, const float *dy, float *dx)
{
    double inv = 1.0 / (double)hw;
    GRID_LOOP(i, total)
    dx[i] = (float)((double)dy[i / (size_t)hw] * inv);
}

extern "C" cudaError_t cuda_launch_avgpool_bwd(cudaStream_t s, size_t rows, int hw,
                                               const float *dy, float *dx)
{
    size_t total = rows * (size_t)hw;
    if (total == 0)
        return cudaSuccess;
    KILN_LAUNCH(avgpool_bwd_kernel, blocks_for(total), THREADS, 0, s)(total, hw, dy, dx);
    return cudaGetLastError();
}

__global__ static void scale_channels_fwd_kernel(size_t total, int hw, const float *x,
                                                 const float *sc, float *y)
{
    GRID_LOOP(i, total)
    y[i] = affine0(x[i], sc[i / (size_t)hw]);
}

extern "C" cudaError_t cuda_launch_scale_channels_fwd(cudaStream_t s, size_t rows, int hw,
                                                      const float *x, const float *sc, float *y)
{
    size_t total = rows * (size_t)hw;
    if (total == 0)
        return cudaSuccess;
    KILN_LAUNCH(scale_channels_fwd_kernel, blocks_for(total), THREADS, 0, s)(total, hw, x, sc, y);
    return cudaGetLastError();
}

// One block per (sample, channel) row: the dot for ds and dx of the row.
__global__ static void scale_channels_bwd_kernel(int hw, const float *x, const float *sc,
                                                 const float *dy, float *dx, float *ds)
{
    size_t o = (size_t)blockIdx.x * hw;
    float scale = sc[blockIdx.x];
    double acc = 0;
    for (int j = threadIdx.x; j < hw; j += THREADS) {
        float g = dy[o + j];
        acc += (double)g * (double)x[o + j];
        dx[o + j] = affine0(g, scale);
    }
    double total = block_sum(acc);
    if (threadIdx.x == 0)
        ds[blockIdx.x] = (float)total;
}

extern "C" cudaError_t cuda_launch_scale_channels_bwd(cudaStream_t s, size_t rows, int hw,
                                                      const float *x, const float *sc,
                                                      const float *dy, float *dx, float *ds)
{
    if (rows == 0)
        return cudaSuccess;
    KILN_LAUNCH(scale_channels_bwd_kernel, (unsigned)rows, THREADS, 0, s)(hw, x, sc, dy, dx, ds);
    return cudaGetLastError();
}

__global__ static void bias_rows_kernel(size_t total, int out, const float *bias, float *y)
{
    GRID_LOOP(i, total)
    y[i] = bias[i % (size_t)out];
}

extern "C" cudaError_t cuda_launch_bias_rows(cudaStream_t s, int n, int out, const float *bias,
                                             float *y)
{
    size_t total = (size_t)n * (size_t)out;
    if (total == 0)
        return cudaSuccess;
    KILN_LAUNCH(bias_rows_kernel, blocks_for(total), THREADS, 0, s)(total, out, bias, y);
    return cudaGetLastError();
}

// One thread per output column, rows summed in order (as the CPU).
__global__ static void bias_grad_kernel(int n, int out, const float *dy, float *dbias)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out)
        return;
    double acc = 0;
    for (int i = 0; i < n; i++)
        acc += dy[(size_t)i * out + o];
    dbias[o] = (float)acc;
}

extern "C" cudaError_t cuda_launch_bias_grad(cudaStream_t s, int n, int out, const float *dy,
                                             float *dbias)
{
    if (out == 0)
        return cudaSuccess;
    unsigned blocks = (unsigned)((out + THREADS - 1) / THREADS);
    KILN_LAUNCH(bias_grad_kernel, blocks, THREADS, 0, s)(n, out, dy, dbias);
    return cudaGetLastError();
}

// One block per sample: max, log-sum-exp and the logit sum in double, then
// probabilities and dlogits = (p - target) / n, as cpu_loss.c.
__global__ static void xent_kernel(int n, int classes, const float *logits, const int32_t *labels,
                                   float ls, float *probs, float *dlogits, double *row_loss)
{
    size_t o = (size_t)blockIdx.x * classes;
    const float *l = logits + o;
    float mxf = -INFINITY;
    for (int c = threadIdx.x; c < classes; c += THREADS)
        mxf = l[c] > mxf ? l[c] : mxf;
    double mx = block_max(mxf);
    double sum = 0, lsum = 0;
    for (int c = threadIdx.x; c < classes; c += THREADS) {
        sum += exp((double)l[c] - mx);
        lsum += l[c];
    }
    sum = block_sum(sum);
    lsum = block_sum(lsum);
    double on = 1.0 - (double)ls, off = (double)ls / classes;
    double lse = mx + log(sum);
    int label = labels[blockIdx.x];
    // Inside a step graph the host has not checked the labels: a bad one
    // makes its row NaN (the step's loss then says so) instead of a read
    // out of bounds.
    if (label < 0 || label >= classes) {
        for (int c = threadIdx.x; c < classes; c += THREADS)
            probs[o + c] = dlogits[o + c] = NAN;
        if (threadIdx.x == 0)
            row_loss[blockIdx.x] = NAN;
        return;
    }
    if (threadIdx.x == 0)
        row_loss[blockIdx.x] = lse - on * l[label] - off * lsum;
    for (int c = threadIdx.x; c < classes; c += THREADS) {
        double pc = exp((double)l[c] - lse);
        double target = off + (c == label ? on : 0.0);
        probs[o + c] = (float)pc;
        dlogits[o + c] = (float)((pc - target) / n);
    }
}

extern "C" cudaError_t cuda_launch_xent(cudaStream_t s, int n, int classes, const float *logits,
                                        const int32_t *labels, float ls, float *probs,
                                        float *dlogits, double *row_loss)
{
    if (n == 0)
        return cudaSuccess;
    KILN_LAUNCH(xent_kernel, (unsigned)n, THREADS, 0, s)(n, classes, logits, labels, ls, probs,
                                                         dlogits, row_loss);
    return cudaGetLastError();
}

// torch.optim.SGD's order: d = g + wd*p; buf = buf*m + d; d = nesterov ?
// d + m*buf : buf; p = p + (-lr)*d — each product and sum rounded alone.
// dev_a: a step graph's scalars, read when the graph runs (else NULL).
__global__ static void sgd_kernel(size_t count, float *p, const float *g, float *buf,
                                  cuda_sgd_args a, const cuda_sgd_args *dev_a)
{
    if (dev_a)
        a = *dev_a;
    GRID_LOOP(i, count)
    {
        float d = g[i];
        if (a.wd != 0.0f)
            d = __fadd_rn(d, __fmul_rn(a.wd, p[i]));
        if (a.momentum != 0.0f) {
            float b = __fadd_rn(__fmul_rn(buf[i], a.momentum), d);
            buf[i] = b;
            d = a.nesterov ? __fadd_rn(d, __fmul_rn(a.momentum, b)) : b;
        }
        p[i] = __fadd_rn(p[i], __fmul_rn(-a.lr, d));
    }
}

extern "C" cudaError_t cuda_launch_sgd(cudaStream_t s, size_t count, float *p, const float *g,
                                       float *buf, const cuda_sgd_args *a)
{
    if (count == 0)
        return cudaSuccess;
    KILN_LAUNCH(sgd_kernel, blocks_for(count), THREADS, 0, s)(count, p, g, buf, *a,
                                                              (const cuda_sgd_args *)nullptr);
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_sgd_dev(cudaStream_t s, size_t count, float *p,
                                           const float *g, float *buf,
                                           const cuda_sgd_args *dev_a)
{
    if (count == 0)
        return cudaSuccess;
    cuda_sgd_args unused = {0, 0, 0, 0};
    KILN_LAUNCH(sgd_kernel, blocks_for(count), THREADS, 0, s)(count, p, g, buf, unused, dev_a);
    return cudaGetLastError();
}

// torch.optim.AdamW (single tensor): p *= 1 - lr*wd; m = m*b1 + (1-b1)*g;
// v = v*b2 + (1-b2)*g*g; p += -lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).
__global__ static void adamw_kernel(size_t count, float *p, const float *g, float *m, float *v,
                                    cuda_adamw_args a, const cuda_adamw_args *dev_a)
{
    if (dev_a)
        a = *dev_a;
    GRID_LOOP(i, count)
    {
        float gi = g[i];
        float pi = __fmul_rn(p[i], a.decay);
        float mi = __fadd_rn(__fmul_rn(m[i], a.beta1), __fmul_rn(a.one_m_b1, gi));
        float vi = __fadd_rn(__fmul_rn(v[i], a.beta2), __fmul_rn(a.one_m_b2, __fmul_rn(gi, gi)));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), a.bc2_sqrt), a.eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = __fadd_rn(pi, __fmul_rn(a.neg_step, __fdiv_rn(mi, denom)));
    }
}

extern "C" cudaError_t cuda_launch_adamw(cudaStream_t s, size_t count, float *p, const float *g,
                                         float *m, float *v, const cuda_adamw_args *a)
{
    if (count == 0)
        return cudaSuccess;
    KILN_LAUNCH(adamw_kernel, blocks_for(count), THREADS, 0, s)(count, p, g, m, v, *a,
                                                                (const cuda_adamw_args *)nullptr);
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_adamw_dev(cudaStream_t s, size_t count, float *p,
                                             const float *g, float *m, float *v,
                                             const cuda_adamw_args *dev_a)
{
    if (count == 0)
        return cudaSuccess;
    cuda_adamw_args unused = {0, 0, 0, 0, 0, 0, 0, 0};
    KILN_LAUNCH(adamw_kernel, blocks_for(count), THREADS, 0, s)(count, p, g, m, v, unused, dev_a);
    return cudaGetLastError();
}
