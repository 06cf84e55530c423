/* tests/support/cuda_emu_selftest.cpp — the kernels of cuda_emu_selftest.h,
 * written as CUDA and launched through KILN_LAUNCH like cuda_kernels.cu. */
#include "support/cuda_emu.h"

#include "nn/cuda/cuda_launch.h"
#include "support/cuda_emu_selftest.h"

#define T KT_EMU_SUM_THREADS

__global__ static void sum_kernel(int v, const double *x, double *out)
{
    __shared__ double part[T];
    unsigned t = threadIdx.x;
    if (v == KT_EMU_SUM_EARLY_EXIT && t == 0)
        return;
    part[t] = x[(size_t)blockIdx.x * T + t];
    if (v == KT_EMU_SUM_DIVERGENT_IF) {
        if (t < T / 2)
            __syncthreads();
    } else if (v == KT_EMU_SUM_TWO_SITES) {
        if (t & 1)
            __syncthreads();
        else
            __syncthreads();
    } else if (v != KT_EMU_SUM_NO_FIRST_SYNC) {
        __syncthreads();
    }
    for (unsigned s = T / 2; s > 0; s >>= 1) {
        if (t < s)
            part[t] += part[t + s];
        if (v != KT_EMU_SUM_NO_LOOP_SYNC)
            __syncthreads();
    }
    if (t == 0)
        out[blockIdx.x] = part[0];
}

extern "C" cudaError_t kt_emu_block_sum(kt_emu_sum_variant v, unsigned blocks, const double *x,
                                        double *out)
{
    KILN_LAUNCH(sum_kernel, blocks, T, 0, nullptr)((int)v, x, out);
    return cudaGetLastError();
}

__global__ static void cover_kernel(dim3 g, dim3 b, unsigned *hits, unsigned *bad)
{
    if (blockDim.x != b.x || blockDim.y != b.y || blockDim.z != b.z || gridDim.x != g.x ||
        gridDim.y != g.y || gridDim.z != g.z || threadIdx.x >= b.x || threadIdx.y >= b.y ||
        threadIdx.z >= b.z || blockIdx.x >= g.x || blockIdx.y >= g.y || blockIdx.z >= g.z)
        atomicAdd(bad, 1u);
    size_t block = ((size_t)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    size_t thread = ((size_t)threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    atomicAdd(&hits[block * blockDim.x * blockDim.y * blockDim.z + thread], 1u);
}

extern "C" cudaError_t kt_emu_cover(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                                    unsigned bz, unsigned *hits, unsigned *bad)
{
    dim3 g(gx, gy, gz), b(bx, by, bz);
    KILN_LAUNCH(cover_kernel, g, b, 0, nullptr)(g, b, hits, bad);
    return cudaGetLastError();
}

__global__ static void reduce_kernel(const float *x, int *count, int *all, int *any)
{
    float v = x[(size_t)blockIdx.x * blockDim.x + threadIdx.x];
    int c = __syncthreads_count(v > 0);
    int a = __syncthreads_and(v > 0);
    int o = __syncthreads_or(v > 0);
    if (threadIdx.x == blockDim.x - 1) {
        count[blockIdx.x] = c;
        all[blockIdx.x] = a;
        any[blockIdx.x] = o;
    }
}

extern "C" cudaError_t kt_emu_sync_reduce(unsigned blocks, unsigned threads, const float *x,
                                          int *count, int *all, int *any)
{
    KILN_LAUNCH(reduce_kernel, blocks, threads, 0, nullptr)(x, count, all, any);
    return cudaGetLastError();
}
