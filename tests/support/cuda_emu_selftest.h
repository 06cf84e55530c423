/* tests/support/cuda_emu_selftest.h — test-only kernels (cuda_emu_selftest.cpp)
 * that show the emulator (cuda_emu.h) runs kernels as a GPU would and
 * rejects wrong ones: every index once, barriers that order shared-memory
 * writes and reads, divergent barriers reported, bad configurations
 * refused. Each returns cudaGetLastError() of its launch. */
#ifndef KILN_TEST_CUDA_EMU_SELFTEST_H
#define KILN_TEST_CUDA_EMU_SELFTEST_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KT_EMU_SUM_THREADS 256

typedef enum kt_emu_sum_variant {
    KT_EMU_SUM_OK,            /* a correct tree reduction */
    KT_EMU_SUM_NO_FIRST_SYNC, /* no barrier between the writes and the tree: wrong sums */
    KT_EMU_SUM_NO_LOOP_SYNC,  /* no barrier inside the tree: wrong sums */
    KT_EMU_SUM_DIVERGENT_IF,  /* __syncthreads under `if (threadIdx.x < 128)` */
    KT_EMU_SUM_TWO_SITES,     /* odd and even threads at different __syncthreads */
    KT_EMU_SUM_EARLY_EXIT,    /* thread 0 returns before the first barrier */
} kt_emu_sum_variant;

/* out[b] = sum of x[b*256 .. b*256+255], one block of 256 threads each. */
cudaError_t kt_emu_block_sum(kt_emu_sum_variant v, unsigned blocks, const double *x, double *out);

/* Every thread of grid (gx,gy,gz) x block (bx,by,bz) adds 1 to
 * hits[its global linear index] and 1 to *bad when blockDim / gridDim /
 * its indices are not what the launch asked for. */
cudaError_t kt_emu_cover(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                         unsigned bz, unsigned *hits, unsigned *bad);

/* Per block of `threads`: count[b] = __syncthreads_count(x > 0), all[b] =
 * __syncthreads_and(x > 0), any[b] = __syncthreads_or(x > 0). */
cudaError_t kt_emu_sync_reduce(unsigned blocks, unsigned threads, const float *x, int *count,
                               int *all, int *any);

#ifdef __cplusplus
}
#endif

#endif
