// lib/nn/cuda/cuda_kernels_bf16.cu — kiln's CUDA kernels for mixed
// precision: bf16 activations in NHWC (channels last), float32 parameters
// and statistics (see cuda_kernels_bf16.h for the contract).
//
// Layout of the work: the per-channel kernels (batch norm, pooling, SE)
// run blocks of TILE consecutive channels (threadIdx.x, so a warp reads 32
// neighbouring bf16 of one position: coalesced) by a few positions
// (threadIdx.y); each thread keeps one channel's sum in double over its
// positions, and the threads of a channel are added in lane order in
// shared memory. Batch norm splits the rows into a fixed number of chunks
// (a pure function of rows and c) whose partial sums go to the caller's
// scratch, and one thread per channel adds the chunks in order: no
// atomics, so every sum is the same from run to run.
//
// Every bf16 is decoded and rounded with nn/bf16.h (the CPU oracle's
// rounding); arithmetic is float32 or double as the CPU computes it
// (nn/cpu/cpu_bn.c, cpu_elementwise.c, cpu_pool_linear.c), with the
// CPU's fused affine steps written as __fmaf_rn so the GPU and the
// emulator (tests/support/cuda_emu.h) round them alike.
#include <math.h>

#include "nn/bf16.h"
#include "nn/cuda/cuda_kernels_bf16.h"
#include "nn/cuda/cuda_launch.h"

#define THREADS 256
#define MAX_BLOCKS 8192
#define TILE 32      // channels per block of the per-channel kernels: one warp wide
#define BN_LANES 8   // positions per block step in batch norm (TILE x BN_LANES threads)
#define POOL_LANES 16 // the same for pooling and SE (one block per sample and tile)
#define BN_MIN_ROWS 64        // a batch-norm chunk covers at least this many rows...
#define BN_TARGET_BLOCKS 1024 // ...and the chunks aim at this many blocks (H100: 132 SMs)
#define GRID_YZ_MAX 65535u    // CUDA's limit on gridDim.y and .z

static unsigned blocks_for(size_t count)
{
    size_t b = (count + THREADS - 1) / THREADS;
    return (unsigned)(b < MAX_BLOCKS ? b : MAX_BLOCKS);
}

static unsigned cap_yz(size_t v)
{
    return (unsigned)(v < GRID_YZ_MAX ? v : GRID_YZ_MAX);
}

static unsigned channel_tiles(int c)
{
    return (unsigned)((c + TILE - 1) / TILE);
}

#define GRID_LOOP(i, count)                                                                     \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (count);                \
         i += (size_t)gridDim.x * blockDim.x)

__device__ static float bf(kiln_bf16 v)
{
    return kiln_bf16_to_f32(v);
}

// x * a + 0, as the CPU's affine(x, a, 0) (see cuda_kernels.cu).
__device__ static float affine0(float x, float a)
{
    return __fadd_rn(__fmul_rn(x, a), 0.0f);
}

// ---- conversions -----------------------------------------------------------

__global__ static void from_f32_kernel(size_t count, const float *src, kiln_bf16 *dst)
{
    GRID_LOOP(i, count)
    dst[i] = kiln_bf16_from_f32(src[i]);
}

__global__ static void to_f32_kernel(size_t count, const kiln_bf16 *src, float *dst)
{
    GRID_LOOP(i, count)
    dst[i] = bf(src[i]);
}

extern "C" cudaError_t cuda_launch_bf16_from_f32(cudaStream_t s, size_t count, const float *src,
                                                 kiln_bf16 *dst)
{
    if (count == 0)
        return cudaSuccess;
    KILN_LAUNCH(from_f32_kernel, blocks_for(count), THREADS, 0, s)(count, src, dst);
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_bf16_to_f32(cudaStream_t s, size_t count, const kiln_bf16 *src,
                                               float *dst)
{
    if (count == 0)
        return cudaSuccess;
    KILN_LAUNCH(to_f32_kernel, blocks_for(count), THREADS, 0, s)(count, src, dst);
    return cudaGetLastError();
}

// NCHW <-> NHWC: a block moves a TILE x TILE square (positions x channels)
// of one sample through shared memory, so the read runs along the source's
// contiguous axis and the write along the destination's. blockIdx.x: the
// position tile; y and z loop over channel tiles and samples past the grid
// limits. The extra column keeps the transposed reads off one bank.
__global__ static void nchw_to_nhwc_kernel(int n, int c, int hw, const float *src, kiln_bf16 *dst)
{
    __shared__ float tile[TILE][TILE + 1]; // [channel][position]
    int tx = threadIdx.x, ty = threadIdx.y;
    int p0 = blockIdx.x * TILE;
    for (int c0 = blockIdx.y * TILE; c0 < c; c0 += gridDim.y * TILE)
        for (int i = blockIdx.z; i < n; i += gridDim.z) {
            for (int k = ty; k < TILE; k += BN_LANES)
                if (c0 + k < c && p0 + tx < hw)
                    tile[k][tx] = src[((size_t)i * c + c0 + k) * hw + p0 + tx];
            __syncthreads();
            for (int k = ty; k < TILE; k += BN_LANES)
                if (p0 + k < hw && c0 + tx < c)
                    dst[((size_t)i * hw + p0 + k) * c + c0 + tx] = kiln_bf16_from_f32(tile[tx][k]);
            __syncthreads();
        }
}

__global__ static void nhwc_to_nchw_kernel(int n, int c, int hw, const kiln_bf16 *src, float *dst)
{
    __shared__ float tile[TILE][TILE + 1]; // [position][channel]
    int tx = threadIdx.x, ty = threadIdx.y;
    int p0 = blockIdx.x * TILE;
    for (int c0 = blockIdx.y * TILE; c0 < c; c0 += gridDim.y * TILE)
        for (int i = blockIdx.z; i < n; i += gridDim.z) {
            for (int k = ty; k < TILE; k += BN_LANES)
                if (p0 + k < hw && c0 + tx < c)
                    tile[k][tx] = bf(src[((size_t)i * hw + p0 + k) * c + c0 + tx]);
            __syncthreads();
            for (int k = ty; k < TILE; k += BN_LANES)
                if (c0 + k < c && p0 + tx < hw)
                    dst[((size_t)i * c + c0 + k) * hw + p0 + tx] = tile[tx][k];
            __syncthreads();
        }
}

static dim3 transpose_grid(int n, int c, int hw)
{
    return dim3((unsigned)((hw + TILE - 1) / TILE), cap_yz(channel_tiles(c)), cap_yz((size_t)n));
}

extern "C" cudaError_t cuda_launch_bf16_from_f32_nchw(cudaStream_t s, int n, int c, int hw,
                                                      const float *src, kiln_bf16 *dst)
{
    if ((size_t)n * (size_t)c * (size_t)hw == 0)
        return cudaSuccess;
    KILN_LAUNCH(nchw_to_nhwc_kernel, transpose_grid(n, c, hw), dim3(TILE, BN_LANES), 0,
                s)(n, c, hw, src, dst);
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_bf16_to_f32_nchw(cudaStream_t s, int n, int c, int hw,
                                                    const kiln_bf16 *src, float *dst)
{
    if ((size_t)n * (size_t)c * (size_t)hw == 0)
        return cudaSuccess;
    KILN_LAUNCH(nhwc_to_nchw_kernel, transpose_grid(n, c, hw), dim3(TILE, BN_LANES), 0,
                s)(n, c, hw, src, dst);
    return cudaGetLastError();
}

// ---- elementwise -----------------------------------------------------------

// SiLU and its gradient dy * silu'(x), shared by the elementwise kernel and
// the fused batch-norm kernels so both paths compute the same bits.
__device__ static float silu_f(float x)
{
    return x / (1.0f + expf(-x));
}

__device__ static float silu_grad(float x, float dy)
{
    float sg = 1.0f / (1.0f + expf(-x));
    return dy * sg * (1.0f + x * (1.0f - sg));
}

// cuda_kernels.cu's formulas on the decoded values, rounded once. y may
// alias a or b: each element is read before it is written, by one thread.
__global__ static void ew_kernel(int kind, size_t count, const kiln_bf16 *a, const kiln_bf16 *b,
                                 kiln_bf16 *y)
{
    GRID_LOOP(i, count)
    {
        float x = bf(a[i]), v;
        switch (kind) {
        case CUDA_EW_SILU:
            v = silu_f(x);
            break;
        case CUDA_EW_SILU_BWD:
            v = silu_grad(x, bf(b[i]));
            break;
        case CUDA_EW_SIGMOID:
            v = 1.0f / (1.0f + expf(-x));
            break;
        case CUDA_EW_SIGMOID_BWD:
            v = bf(b[i]) * x * (1.0f - x);
            break;
        default: // CUDA_EW_ADD (the launcher admits no other kind)
            v = x + bf(b[i]);
            break;
        }
        y[i] = kiln_bf16_from_f32(v);
    }
}

extern "C" cudaError_t cuda_launch_bf16_ew(cudaStream_t s, cuda_ew_kind kind, size_t count,
                                           const kiln_bf16 *a, const kiln_bf16 *b, kiln_bf16 *y)
{
    if (kind != CUDA_EW_SILU && kind != CUDA_EW_SILU_BWD && kind != CUDA_EW_SIGMOID &&
        kind != CUDA_EW_SIGMOID_BWD && kind != CUDA_EW_ADD)
        return cudaErrorInvalidValue;
    if (count == 0)
        return cudaSuccess;
    KILN_LAUNCH(ew_kernel, blocks_for(count), THREADS, 0, s)((int)kind, count, a, b, y);
    return cudaGetLastError();
}

__global__ static void mul_mask_kernel(size_t count, const kiln_bf16 *x, const float *mask,
                                       kiln_bf16 *y)
{
    GRID_LOOP(i, count)
    y[i] = kiln_bf16_from_f32(bf(x[i]) * mask[i]);
}

extern "C" cudaError_t cuda_launch_bf16_mul_mask(cudaStream_t s, size_t count, const kiln_bf16 *x,
                                                 const float *mask, kiln_bf16 *y)
{
    if (count == 0)
        return cudaSuccess;
    KILN_LAUNCH(mul_mask_kernel, blocks_for(count), THREADS, 0, s)(count, x, mask, y);
    return cudaGetLastError();
}

// blockIdx.y walks the samples (no division per element); x the sample.
__global__ static void scale_samples_kernel(int n, size_t per_sample, const kiln_bf16 *x,
                                            const float *scale, kiln_bf16 *y)
{
    for (int smp = blockIdx.y; smp < n; smp += gridDim.y) {
        size_t o = (size_t)smp * per_sample;
        float sc = scale[smp];
        GRID_LOOP(j, per_sample)
        y[o + j] = kiln_bf16_from_f32(affine0(bf(x[o + j]), sc));
    }
}

// Blocks along a sample for a grid of `samples` rows, about MAX_BLOCKS in all.
static dim3 sample_grid(size_t samples, size_t per_sample)
{
    unsigned ny = cap_yz(samples);
    unsigned nx = blocks_for(per_sample), cap = MAX_BLOCKS / ny;
    nx = nx < cap ? nx : cap;
    return dim3(nx ? nx : 1, ny);
}

extern "C" cudaError_t cuda_launch_bf16_scale_samples(cudaStream_t s, int n, size_t per_sample,
                                                      const kiln_bf16 *x, const float *scale,
                                                      kiln_bf16 *y)
{
    if ((size_t)n * per_sample == 0)
        return cudaSuccess;
    KILN_LAUNCH(scale_samples_kernel, sample_grid((size_t)n, per_sample), THREADS, 0,
                s)(n, per_sample, x, scale, y);
    return cudaGetLastError();
}

// ---- batch norm over NHWC [rows, c] -----------------------------------------

// The rows are cut into `chunks` pieces of `per` rows: enough blocks
// (channel tiles x chunks) to fill the GPU, none shorter than BN_MIN_ROWS.
typedef struct bn_split {
    unsigned tiles, chunks;
    size_t per;
} bn_split;

static bn_split bn_split_of(size_t rows, int c)
{
    bn_split b;
    b.tiles = channel_tiles(c);
    size_t want = (BN_TARGET_BLOCKS + b.tiles - 1) / b.tiles;
    size_t most = (rows + BN_MIN_ROWS - 1) / BN_MIN_ROWS;
    size_t chunks = want < most ? want : most;
    chunks = chunks < 1 ? 1 : chunks > GRID_YZ_MAX ? GRID_YZ_MAX : chunks;
    b.per = (rows + chunks - 1) / chunks;
    b.chunks = (unsigned)((rows + b.per - 1) / b.per); // no empty chunk
    return b;
}

// The scratch: two partial sums per (chunk, channel) in double, the mean
// in double, then three float coefficients per channel for the pass that
// writes y or dx.
typedef struct bn_scratch {
    double *part_a, *part_b, *mean;
    float *coef_a, *coef_b, *coef_c;
} bn_scratch;

static bn_scratch bn_scratch_of(void *base, size_t chunks, int c)
{
    bn_scratch p;
    size_t cs = (size_t)c;
    p.part_a = (double *)base;
    p.part_b = p.part_a + chunks * cs;
    p.mean = p.part_b + chunks * cs;
    p.coef_a = (float *)(p.mean + cs);
    p.coef_b = p.coef_a + cs;
    p.coef_c = p.coef_b + cs;
    return p;
}

extern "C" size_t cuda_bf16_bn_scratch_bytes(size_t rows, int c)
{
    if (rows == 0 || c <= 0)
        return 0;
    bn_split b = bn_split_of(rows, c);
    return (2 * (size_t)b.chunks + 1) * (size_t)c * sizeof(double) + 3 * (size_t)c * sizeof(float);
}

enum { BN_SUM, BN_SSD, BN_BWD };

// Per (chunk, channel): MODE BN_SUM sum x; BN_SSD sum (x - mean)^2 with the
// double mean; BN_BWD sum dy and sum dy * (x - save_mean) (cpu_bn.c's
// backward_sums). Threads of a channel take every BN_LANES-th row of the
// chunk; their sums are added in lane order.
// The gradient reaching BN at element o: dy, or with `bn` (the fused SiLU
// backward) silu_backward(bn, dy) rounded as the unfused op stores it.
__device__ static float bn_grad_in(const kiln_bf16 *bn, const kiln_bf16 *dy, size_t o)
{
    float g = bf(dy[o]);
    return bn ? kiln_bf16_round(silu_grad(bf(bn[o]), g)) : g;
}

template <int MODE>
__global__ static void bn_partial_kernel(size_t rows, int c, size_t per, const kiln_bf16 *x,
                                         const kiln_bf16 *dy, const kiln_bf16 *bn,
                                         const double *mean_d, const float *mean_f,
                                         double *part_a, double *part_b)
{
    __shared__ double sa[BN_LANES][TILE], sb[BN_LANES][TILE];
    int tx = threadIdx.x, ty = threadIdx.y;
    int ch = blockIdx.x * TILE + tx;
    size_t r0 = (size_t)blockIdx.y * per, r1 = r0 + per < rows ? r0 + per : rows;
    double a = 0, b = 0;
    if (ch < c) {
        double m = MODE == BN_SSD ? mean_d[ch] : MODE == BN_BWD ? (double)mean_f[ch] : 0.0;
        for (size_t r = r0 + ty; r < r1; r += BN_LANES) {
            double v = bf(x[r * c + ch]);
            if (MODE == BN_SUM) {
                a += v;
            } else if (MODE == BN_SSD) {
                double d = v - m;
                a += d * d;
            } else {
                double g = bn_grad_in(bn, dy, r * c + ch);
                a += g;
                b += g * (v - m);
            }
        }
    }
    sa[ty][tx] = a;
    sb[ty][tx] = b;
    __syncthreads();
    if (ty == 0 && ch < c) {
        double ta = 0, tb = 0;
        for (int l = 0; l < BN_LANES; l++) {
            ta += sa[l][tx];
            tb += sb[l][tx];
        }
        size_t o = (size_t)blockIdx.y * c + ch;
        part_a[o] = ta;
        if (MODE == BN_BWD)
            part_b[o] = tb;
    }
}

// One thread per channel: the chunks' partials in chunk order.
__device__ static double chunk_sum(const double *part, unsigned chunks, int c, int ch)
{
    double s = 0;
    for (unsigned k = 0; k < chunks; k++)
        s += part[(size_t)k * c + ch];
    return s;
}

#define CHANNEL_THREAD(ch, c)                                                                   \
    int ch = blockIdx.x * blockDim.x + threadIdx.x;                                            \
    if (ch >= (c))                                                                             \
        return;

__global__ static void bn_mean_kernel(int c, unsigned chunks, double cnt, const double *part,
                                      double *mean)
{
    CHANNEL_THREAD(ch, c)
    mean[ch] = chunk_sum(part, chunks, c, ch) / cnt;
}

// cpu_bn.c's train_item per channel: statistics, running stats (unbiased
// variance), and the affine y = x * a + sh.
__global__ static void bn_train_finish_kernel(int c, unsigned chunks, double cnt,
                                              const double *part, const double *mean,
                                              const float *gamma, const float *beta,
                                              float *run_mean, float *run_var, float momentum,
                                              float eps, float *save_mean, float *save_invstd,
                                              float *coef_a, float *coef_b)
{
    CHANNEL_THREAD(ch, c)
    double ssd = chunk_sum(part, chunks, c, ch), mu = mean[ch], m = (double)momentum;
    double invstd = 1.0 / sqrt(ssd / cnt + (double)eps);
    double scale = (double)gamma[ch] * invstd;
    coef_a[ch] = (float)scale;
    coef_b[ch] = (float)((double)beta[ch] - mu * scale);
    save_mean[ch] = (float)mu;
    save_invstd[ch] = (float)invstd;
    run_mean[ch] = (float)((1.0 - m) * run_mean[ch] + m * mu);
    run_var[ch] = (float)((1.0 - m) * run_var[ch] + m * (ssd / (cnt - 1)));
}

// y = x * a + sh per channel (one rounding: the CPU's vector affine).
// coef NULL: the eval coefficients from the running statistics. With
// `act` (fused SiLU) also act = silu of the stored y; y NULL: act only.
__global__ static void bn_apply_kernel(size_t rows, int c, size_t per, const kiln_bf16 *x,
                                       const float *coef_a, const float *coef_b,
                                       const float *gamma, const float *beta, const float *rmean,
                                       const float *rvar, float eps, kiln_bf16 *y,
                                       kiln_bf16 *act)
{
    int ch = blockIdx.x * TILE + threadIdx.x;
    if (ch >= c)
        return;
    float a, sh;
    if (coef_a) {
        a = coef_a[ch];
        sh = coef_b[ch];
    } else {
        double scale = (double)gamma[ch] / sqrt((double)rvar[ch] + (double)eps);
        a = (float)scale;
        sh = (float)((double)beta[ch] - (double)rmean[ch] * scale);
    }
    size_t r0 = (size_t)blockIdx.y * per, r1 = r0 + per < rows ? r0 + per : rows;
    for (size_t r = r0 + threadIdx.y; r < r1; r += BN_LANES) {
        size_t o = r * c + ch;
        kiln_bf16 v = kiln_bf16_from_f32(__fmaf_rn(bf(x[o]), a, sh));
        if (y)
            y[o] = v;
        if (act)
            act[o] = kiln_bf16_from_f32(silu_f(bf(v)));
    }
}

static cudaError_t bn_train(cudaStream_t s, size_t rows, int c, const kiln_bf16 *x,
                            const float *gamma, const float *beta, float *running_mean,
                            float *running_var, float momentum, float eps, kiln_bf16 *y,
                            kiln_bf16 *act, float *save_mean, float *save_invstd, void *scratch)
{
    if (rows == 0 || c <= 0)
        return cudaSuccess;
    bn_split b = bn_split_of(rows, c);
    bn_scratch p = bn_scratch_of(scratch, b.chunks, c);
    dim3 grid(b.tiles, b.chunks), block(TILE, BN_LANES);
    unsigned cb = blocks_for((size_t)c);
    double cnt = (double)rows;
    cudaError_t e;
    KILN_LAUNCH(bn_partial_kernel<BN_SUM>, grid, block, 0, s)(rows, c, b.per, x, nullptr, nullptr,
                                                              nullptr, nullptr, p.part_a,
                                                              nullptr);
    if ((e = cudaGetLastError()) != cudaSuccess)
        return e;
    KILN_LAUNCH(bn_mean_kernel, cb, THREADS, 0, s)(c, b.chunks, cnt, p.part_a, p.mean);
    if ((e = cudaGetLastError()) != cudaSuccess)
        return e;
    KILN_LAUNCH(bn_partial_kernel<BN_SSD>, grid, block, 0, s)(rows, c, b.per, x, nullptr, nullptr,
                                                              p.mean, nullptr, p.part_a,
                                                              nullptr);
    if ((e = cudaGetLastError()) != cudaSuccess)
        return e;
    KILN_LAUNCH(bn_train_finish_kernel, cb, THREADS, 0, s)(c, b.chunks, cnt, p.part_a, p.mean,
                                                           gamma, beta, running_mean, running_var,
                                                           momentum, eps, save_mean, save_invstd,
                                                           p.coef_a, p.coef_b);
    if ((e = cudaGetLastError()) != cudaSuccess)
        return e;
    KILN_LAUNCH(bn_apply_kernel, grid, block, 0, s)(rows, c, b.per, x, p.coef_a, p.coef_b, nullptr,
                                                    nullptr, nullptr, nullptr, 0.0f, y, act);
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_bf16_bn_train(cudaStream_t s, size_t rows, int c,
                                                 const kiln_bf16 *x, const float *gamma,
                                                 const float *beta, float *running_mean,
                                                 float *running_var, float momentum, float eps,
                                                 kiln_bf16 *y, float *save_mean,
                                                 float *save_invstd, void *scratch)
{
    return bn_train(s, rows, c, x, gamma, beta, running_mean, running_var, momentum, eps, y,
                    nullptr, save_mean, save_invstd, scratch);
}

extern "C" cudaError_t cuda_launch_bf16_bn_silu_train(cudaStream_t s, size_t rows, int c,
                                                      const kiln_bf16 *x, const float *gamma,
                                                      const float *beta, float *running_mean,
                                                      float *running_var, float momentum,
                                                      float eps, kiln_bf16 *bn, kiln_bf16 *y,
                                                      float *save_mean, float *save_invstd,
                                                      void *scratch)
{
    return bn_train(s, rows, c, x, gamma, beta, running_mean, running_var, momentum, eps, bn, y,
                    save_mean, save_invstd, scratch);
}

static cudaError_t bn_eval(cudaStream_t s, size_t rows, int c, const kiln_bf16 *x,
                           const float *gamma, const float *beta, const float *running_mean,
                           const float *running_var, float eps, kiln_bf16 *y, kiln_bf16 *act)
{
    if (rows == 0 || c <= 0)
        return cudaSuccess;
    bn_split b = bn_split_of(rows, c);
    KILN_LAUNCH(bn_apply_kernel, dim3(b.tiles, b.chunks), dim3(TILE, BN_LANES), 0,
                s)(rows, c, b.per, x, nullptr, nullptr, gamma, beta, running_mean, running_var,
                  eps, y, act);
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_bf16_bn_eval(cudaStream_t s, size_t rows, int c,
                                                const kiln_bf16 *x, const float *gamma,
                                                const float *beta, const float *running_mean,
                                                const float *running_var, float eps, kiln_bf16 *y)
{
    return bn_eval(s, rows, c, x, gamma, beta, running_mean, running_var, eps, y, nullptr);
}

extern "C" cudaError_t cuda_launch_bf16_bn_silu_eval(cudaStream_t s, size_t rows, int c,
                                                     const kiln_bf16 *x, const float *gamma,
                                                     const float *beta,
                                                     const float *running_mean,
                                                     const float *running_var, float eps,
                                                     kiln_bf16 *y)
{
    return bn_eval(s, rows, c, x, gamma, beta, running_mean, running_var, eps, nullptr, y);
}

// cpu_bn.c's backward_item per channel: dbeta, dgamma and the coefficients
// of dx = dy * a + ((x - mean) * bc + cc).
__global__ static void bn_bwd_finish_kernel(int c, unsigned chunks, double cnt,
                                            const double *part_a, const double *part_b,
                                            const float *gamma, const float *save_invstd,
                                            float *dgamma, float *dbeta, float *coef_a,
                                            float *coef_b, float *coef_c)
{
    CHANNEL_THREAD(ch, c)
    double sum_dy = chunk_sum(part_a, chunks, c, ch), dot = chunk_sum(part_b, chunks, c, ch);
    double invstd = (double)save_invstd[ch], scale = (double)gamma[ch] * invstd;
    dbeta[ch] = (float)sum_dy;
    dgamma[ch] = (float)(dot * invstd);
    coef_a[ch] = (float)scale;
    coef_b[ch] = (float)(-scale * invstd * invstd * dot / cnt);
    coef_c[ch] = (float)(-scale * sum_dy / cnt);
}

__global__ static void bn_dx_kernel(size_t rows, int c, size_t per, const kiln_bf16 *x,
                                    const kiln_bf16 *dy, const kiln_bf16 *bn,
                                    const float *save_mean,
                                    const float *coef_a, const float *coef_b, const float *coef_c,
                                    kiln_bf16 *dx)
{
    int ch = blockIdx.x * TILE + threadIdx.x;
    if (ch >= c)
        return;
    float mean = save_mean[ch], a = coef_a[ch], bc = coef_b[ch], cc = coef_c[ch];
    size_t r0 = (size_t)blockIdx.y * per, r1 = r0 + per < rows ? r0 + per : rows;
    for (size_t r = r0 + threadIdx.y; r < r1; r += BN_LANES) {
        size_t o = r * c + ch;
        float t = __fmaf_rn(__fsub_rn(bf(x[o]), mean), bc, cc);
        dx[o] = kiln_bf16_from_f32(__fmaf_rn(bn_grad_in(bn, dy, o), a, t));
    }
}

static cudaError_t bn_bwd(cudaStream_t s, size_t rows, int c, const kiln_bf16 *x,
                          const kiln_bf16 *bn, const kiln_bf16 *dy, const float *gamma,
                          const float *save_mean, const float *save_invstd, kiln_bf16 *dx,
                          float *dgamma, float *dbeta, void *scratch)
{
    if (rows == 0 || c <= 0)
        return cudaSuccess;
    bn_split b = bn_split_of(rows, c);
    bn_scratch p = bn_scratch_of(scratch, b.chunks, c);
    dim3 grid(b.tiles, b.chunks), block(TILE, BN_LANES);
    cudaError_t e;
    KILN_LAUNCH(bn_partial_kernel<BN_BWD>, grid, block, 0, s)(rows, c, b.per, x, dy, bn, nullptr,
                                                              save_mean, p.part_a, p.part_b);
    if ((e = cudaGetLastError()) != cudaSuccess)
        return e;
    KILN_LAUNCH(bn_bwd_finish_kernel, blocks_for((size_t)c), THREADS, 0,
                s)(c, b.chunks, (double)rows, p.part_a, p.part_b, gamma, save_invstd, dgamma,
                  dbeta, p.coef_a, p.coef_b, p.coef_c);
    if ((e = cudaGetLastError()) != cudaSuccess)
        return e;
    KILN_LAUNCH(bn_dx_kernel, grid, block, 0, s)(rows, c, b.per, x, dy, bn, save_mean, p.coef_a,
                                                 p.coef_b, p.coef_c, dx);
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_bf16_bn_bwd(cudaStream_t s, size_t rows, int c,
                                               const kiln_bf16 *x, const kiln_bf16 *dy,
                                               const float *gamma, const float *save_mean,
                                               const float *save_invstd, kiln_bf16 *dx,
                                               float *dgamma, float *dbeta, void *scratch)
{
    return bn_bwd(s, rows, c, x, nullptr, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta,
                  scratch);
}

extern "C" cudaError_t cuda_launch_bf16_silu_bn_bwd(cudaStream_t s, size_t rows, int c,
                                                    const kiln_bf16 *x, const kiln_bf16 *bn,
                                                    const kiln_bf16 *dy, const float *gamma,
                                                    const float *save_mean,
                                                    const float *save_invstd, kiln_bf16 *dx,
                                                    float *dgamma, float *dbeta, void *scratch)
{
    return bn_bwd(s, rows, c, x, bn, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta,
                  scratch);
}

// ---- pooling and squeeze-and-excitation over NHWC [n, hw, c] ---------------

// A block per (channel tile, sample): each thread sums its channel over
// every POOL_LANES-th position in double, the lanes are added in order.
// With dx non-NULL (SE backward) the same pass writes dx = dy * sc and
// sums dy * x for ds; otherwise it sums x for the average.
__global__ static void pool_kernel(int n, int hw, int c, const kiln_bf16 *x, const kiln_bf16 *dy,
                                   const kiln_bf16 *sc, kiln_bf16 *dx, kiln_bf16 *out)
{
    __shared__ double part[POOL_LANES][TILE];
    int tx = threadIdx.x, ty = threadIdx.y;
    int ch = blockIdx.x * TILE + tx;
    for (int i = blockIdx.y; i < n; i += gridDim.y) {
        const size_t base = (size_t)i * hw * c + ch;
        double acc = 0;
        if (ch < c) {
            if (dx) {
                float scale = bf(sc[(size_t)i * c + ch]);
                for (int p = ty; p < hw; p += POOL_LANES) {
                    size_t o = base + (size_t)p * c;
                    float g = bf(dy[o]);
                    acc += (double)g * (double)bf(x[o]);
                    dx[o] = kiln_bf16_from_f32(affine0(g, scale));
                }
            } else {
                for (int p = ty; p < hw; p += POOL_LANES)
                    acc += bf(x[base + (size_t)p * c]);
            }
        }
        part[ty][tx] = acc;
        __syncthreads();
        if (ty == 0 && ch < c) {
            double total = 0;
            for (int l = 0; l < POOL_LANES; l++)
                total += part[l][tx];
            // The CPU rounds the double to float32, then cpu-bf16 to bf16.
            float v = dx ? (float)total : (float)(total * (1.0 / (double)hw));
            out[(size_t)i * c + ch] = kiln_bf16_from_f32(v);
        }
        __syncthreads();
    }
}

static dim3 pool_grid(int n, int c)
{
    return dim3(channel_tiles(c), cap_yz((size_t)n));
}

extern "C" cudaError_t cuda_launch_bf16_avgpool_fwd(cudaStream_t s, int n, int hw, int c,
                                                    const kiln_bf16 *x, kiln_bf16 *y)
{
    if ((size_t)n * (size_t)c == 0)
        return cudaSuccess;
    KILN_LAUNCH(pool_kernel, pool_grid(n, c), dim3(TILE, POOL_LANES), 0,
                s)(n, hw, c, x, nullptr, nullptr, nullptr, y);
    return cudaGetLastError();
}

// dx[i, p, ch] = dy[i, ch] / hw (the CPU's double product, rounded to float
// and then to bf16); blockIdx.y walks the samples.
__global__ static void avgpool_bwd_kernel(int n, int hw, int c, const kiln_bf16 *dy,
                                          kiln_bf16 *dx)
{
    double inv = 1.0 / (double)hw;
    size_t per = (size_t)hw * c;
    for (int i = blockIdx.y; i < n; i += gridDim.y) {
        const kiln_bf16 *g = dy + (size_t)i * c;
        kiln_bf16 *d = dx + (size_t)i * per;
        GRID_LOOP(j, per)
        d[j] = kiln_bf16_from_f32((float)((double)bf(g[j % c]) * inv));
    }
}

extern "C" cudaError_t cuda_launch_bf16_avgpool_bwd(cudaStream_t s, int n, int hw, int c,
                                                    const kiln_bf16 *dy, kiln_bf16 *dx)
{
    size_t per = (size_t)hw * (size_t)c;
    if ((size_t)n * per == 0)
        return cudaSuccess;
    KILN_LAUNCH(avgpool_bwd_kernel, sample_grid((size_t)n, per), THREADS, 0, s)(n, hw, c, dy, dx);
    return cudaGetLastError();
}

__global__ static void scale_channels_fwd_kernel(int n, int hw, int c, const kiln_bf16 *x,
                                                 const kiln_bf16 *sc, kiln_bf16 *y)
{
    size_t per = (size_t)hw * c;
    for (int i = blockIdx.y; i < n; i += gridDim.y) {
        const kiln_bf16 *s = sc + (size_t)i * c;
        size_t o = (size_t)i * per;
        GRID_LOOP(j, per)
        y[o + j] = kiln_bf16_from_f32(affine0(bf(x[o + j]), bf(s[j % c])));
    }
}

extern "C" cudaError_t cuda_launch_bf16_scale_channels_fwd(cudaStream_t s, int n, int hw, int c,
                                                           const kiln_bf16 *x, const kiln_bf16 *sc,
                                                           kiln_bf16 *y)
{
    size_t per = (size_t)hw * (size_t)c;
    if ((size_t)n * per == 0)
        return cudaSuccess;
    KILN_LAUNCH(scale_channels_fwd_kernel, sample_grid((size_t)n, per), THREADS, 0,
                s)(n, hw, c, x, sc, y);
    return cudaGetLastError();
}

extern "C" cudaError_t cuda_launch_bf16_scale_channels_bwd(cudaStream_t s, int n, int hw, int c,
                                                           const kiln_bf16 *x, const kiln_bf16 *sc,
                                                           const kiln_bf16 *dy, kiln_bf16 *dx,
                                                           kiln_bf16 *ds)
{
    if ((size_t)n * (size_t)c == 0)
        return cudaSuccess;
    KILN_LAUNCH(pool_kernel, pool_grid(n, c), dim3(TILE, POOL_LANES), 0,
                s)(n, hw, c, x, dy, sc, dx, ds);
    return cudaGetLastError();
}

// ---- linear's bias ---------------------------------------------------------

// blockIdx.y walks the rows, x the columns: no division per element.
__global__ static void bias_store_kernel(int n, int out, const float *acc, const float *bias,
                                         kiln_bf16 *y)
{
    for (int i = blockIdx.y; i < n; i += gridDim.y) {
        size_t o = (size_t)i * out;
        GRID_LOOP(j, (size_t)out)
        y[o + j] = kiln_bf16_from_f32(bias ? acc[o + j] + bias[j] : acc[o + j]);
    }
}

extern "C" cudaError_t cuda_launch_bf16_bias_store(cudaStream_t s, int n, int out,
                                                   const float *acc, const float *bias,
                                                   kiln_bf16 *y)
{
    if ((size_t)n * (size_t)out == 0)
        return cudaSuccess;
    KILN_LAUNCH(bias_store_kernel, sample_grid((size_t)n, (size_t)out), THREADS, 0,
                s)(n, out, acc, bias, y);
    return cudaGetLastError();
}

// One thread per column (consecutive threads on consecutive columns), rows
// added in order in double, as the CPU's linear_backward.
__global__ static void bias_grad_kernel(int n, int out, const kiln_bf16 *dy, float *dbias)
{
    CHANNEL_THREAD(o, out)
    double acc = 0;
    for (int i = 0; i < n; i++)
        acc += bf(dy[(size_t)i * out + o]);
    dbias[o] = (float)acc;
}

extern "C" cudaError_t cuda_launch_bf16_bias_grad(cudaStream_t s, int n, int out,
                                                  const kiln_bf16 *dy, float *dbias)
{
    if (out <= 0)
        return cudaSuccess;
    KILN_LAUNCH(bias_grad_kernel, blocks_for((size_t)out), THREADS, 0, s)(n, out, dy, dbias);
    return cudaGetLastError();
}
