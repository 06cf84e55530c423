/* tests/support/cuda_emu.h — runs CUDA kernels on the CPU, so kiln's own
 * kernels (lib/nn/cuda/cuda_kernels.cu) are tested on machines without a
 * GPU. A .cpp file includes this header, then the .cu file; compiled by g++
 * with KILN_CUDA_EMU and -ffp-contract=off (so a * b + c stays two
 * roundings, as __fmul_rn / __fadd_rn promise). cuda_emu.cpp holds the
 * scheduler.
 *
 * The model: a launch (KILN_LAUNCH, lib/nn/cuda/cuda_launch.h) runs
 * synchronously on the calling thread, whatever the stream. Blocks run one
 * after another in blockIdx order; a block's blockDim threads are fibers
 * (ucontext, one OS thread, deterministic) that run in threadIdx order,
 * each until it finishes or reaches __syncthreads. A barrier releases only
 * when every thread of the block waits at the same __syncthreads (same
 * file and line); a thread that exits while others wait, or threads
 * waiting at different barriers, is a divergent barrier: the launch stops
 * and cudaGetLastError() returns cudaErrorLaunchFailure, with the reason on
 * stderr and in kiln_emu_last_message(). A bad configuration (no threads,
 * more than 1024 per block, a grid dimension out of range) gives
 * cudaErrorInvalidConfiguration and runs nothing.
 *
 * What a kernel may use: __global__ / __device__ / __host__ /
 * __forceinline__ functions, static __shared__ arrays and scalars (one
 * storage for the whole launch, reused by each block in turn — as on a GPU,
 * a block must not read shared memory it did not write), threadIdx,
 * blockIdx, blockDim, gridDim in three dimensions, __syncthreads (and
 * _count / _and / _or), the rounding intrinsics below, atomics (trivially
 * atomic: threads switch only at barriers), min / max, <math.h>. Not emulated (they do
 * not compile here, which says so): dynamic `extern __shared__` memory,
 * warp-level primitives (__shfl_*, __ballot_sync, ...), cooperative groups,
 * textures. Device math (expf, exp, log) is glibc's, which is not bit for
 * bit the GPU's libdevice: compare those results with a tolerance. Memory is
 * host memory (malloc), so ASan sees every out-of-bounds access. */
#ifndef KILN_TEST_CUDA_EMU_H
#define KILN_TEST_CUDA_EMU_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Launches attempted since the start (valid or not), and emulated threads
 * started; tests check that a count of 0 launches nothing. */
unsigned long kiln_emu_launches(void);
unsigned long long kiln_emu_threads_run(void);
/* Why the last failed launch failed ("" when none has failed). */
const char *kiln_emu_last_message(void);
/* 0: do not print launch failures on stderr (tests that provoke them). */
void kiln_emu_set_verbose(int on);

#ifdef __cplusplus
}
#endif

#ifdef __cplusplus

#ifndef KILN_CUDA_EMU
#define KILN_CUDA_EMU 1
#endif

#include <math.h>
#include <stdint.h>

#include <tuple>
#include <type_traits>
#include <utility>

/* cuda_runtime_api.h (through crt/host_defines.h) already makes these
 * empty without nvcc; set them explicitly so the meaning is ours. */
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
/* One storage per declaration, shared by the fibers of the running block. */
#define __shared__ static
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif

namespace kiln_emu
{

struct indices {
    uint3 thread, block;
    dim3 block_dim, grid_dim;
};
/* The running emulated thread's indices (the scheduler sets them before
 * each switch to a fiber). */
extern thread_local indices idx;

cudaError_t run(const char *name, dim3 grid, dim3 block, size_t shmem, cudaStream_t stream,
                void (*body)(void *ctx), void *ctx);
void syncthreads(const char *file, int line);
/* __syncthreads that also reduces `pred` over the block: kind 0 count, 1
 * and, 2 or. */
int syncthreads_reduce(const char *file, int line, int pred, int kind);
cudaError_t get_last_error(void);
cudaError_t peek_at_last_error(void);

/* The <<<>>> stand-in: KILN_LAUNCH(k, grid, block, shmem, stream)(args...).
 * The arguments are converted to the kernel's parameter types once, here;
 * every emulated thread gets its own copy, as a kernel's parameters. */
template <typename... P> class launch
{
  public:
    launch(const char *name, void (*kernel)(P...), dim3 grid, dim3 block, size_t shmem,
           cudaStream_t stream)
        : name_(name), kernel_(kernel), grid_(grid), block_(block), shmem_(shmem), stream_(stream)
    {
    }

    template <typename... A> void operator()(A &&...args) const
    {
        static_assert(sizeof...(A) == sizeof...(P),
                      "kernel launched with the wrong argument count");
        frame f{kernel_, params(std::forward<A>(args)...)};
        run(name_, grid_, block_, shmem_, stream_, call, &f);
    }

  private:
    using params = std::tuple<std::decay_t<P>...>;
    struct frame {
        void (*kernel)(P...);
        params args;
    };

    /* One emulated thread: the kernel on its own copy of the arguments
     * (std::apply passes the tuple's elements to by-value parameters). */
    static void call(void *ctx)
    {
        frame *f = static_cast<frame *>(ctx);
        std::apply(f->kernel, f->args);
    }

    const char *name_;
    void (*kernel_)(P...);
    dim3 grid_, block_;
    size_t shmem_;
    cudaStream_t stream_;
};

template <typename... P>
launch<P...> launcher(const char *name, void (*kernel)(P...), dim3 grid, dim3 block, size_t shmem,
                      cudaStream_t stream)
{
    return launch<P...>(name, kernel, grid, block, shmem, stream);
}

} // namespace kiln_emu

/* Read-only, as on the GPU. */
#define threadIdx (static_cast<const uint3 &>(::kiln_emu::idx.thread))
#define blockIdx (static_cast<const uint3 &>(::kiln_emu::idx.block))
#define blockDim (static_cast<const dim3 &>(::kiln_emu::idx.block_dim))
#define gridDim (static_cast<const dim3 &>(::kiln_emu::idx.grid_dim))

#define __syncthreads() ::kiln_emu::syncthreads(__FILE__, __LINE__)
#define __syncthreads_count(p) ::kiln_emu::syncthreads_reduce(__FILE__, __LINE__, (p) != 0, 0)
#define __syncthreads_and(p) ::kiln_emu::syncthreads_reduce(__FILE__, __LINE__, (p) != 0, 1)
#define __syncthreads_or(p) ::kiln_emu::syncthreads_reduce(__FILE__, __LINE__, (p) != 0, 2)

/* Not cudart's: the kernels' cudaGetLastError() reads the emulator's
 * status (a test never links libcudart). */
#define cudaGetLastError() ::kiln_emu::get_last_error()
#define cudaPeekAtLastError() ::kiln_emu::peek_at_last_error()

/* IEEE round-to-nearest arithmetic: plain C++ operations, kept unfused by
 * -ffp-contract=off; the fused ones call fma. */
static inline float __fadd_rn(float a, float b)
{
    return a + b;
}
static inline float __fsub_rn(float a, float b)
{
    return a - b;
}
static inline float __fmul_rn(float a, float b)
{
    return a * b;
}
static inline float __fdiv_rn(float a, float b)
{
    return a / b;
}
static inline float __frcp_rn(float a)
{
    return 1.0f / a;
}
static inline float __fsqrt_rn(float a)
{
    return sqrtf(a);
}
static inline float __fmaf_rn(float a, float b, float c)
{
    return fmaf(a, b, c);
}
static inline double __dadd_rn(double a, double b)
{
    return a + b;
}
static inline double __dsub_rn(double a, double b)
{
    return a - b;
}
static inline double __dmul_rn(double a, double b)
{
    return a * b;
}
static inline double __ddiv_rn(double a, double b)
{
    return a / b;
}
static inline double __dsqrt_rn(double a)
{
    return sqrt(a);
}
static inline double __fma_rn(double a, double b, double c)
{
    return fma(a, b, c);
}
/* The fast approximations __expf / __logf are glibc's own (accurate)
 * functions of the same names, declared by <math.h>; tests of kernels that
 * use them need tolerances anyway. */
static inline float rsqrtf(float a)
{
    return 1.0f / sqrtf(a);
}
template <typename T> static inline T __ldg(const T *p)
{
    return *p;
}
static inline void __threadfence(void)
{
}
static inline void __threadfence_block(void)
{
}

/* Fibers switch only at barriers, so a read-modify-write is atomic. The
 * value's type follows the pointer's (atomicAdd(float *, 1.0) converts, as
 * CUDA's overloads do). */
template <typename T> using same_t = typename std::common_type<T>::type;
template <typename T> static inline T atomicAdd(T *p, same_t<T> v)
{
    T old = *p;
    *p = old + v;
    return old;
}
template <typename T> static inline T atomicSub(T *p, same_t<T> v)
{
    T old = *p;
    *p = old - v;
    return old;
}
template <typename T> static inline T atomicMax(T *p, same_t<T> v)
{
    T old = *p;
    *p = old > v ? old : v;
    return old;
}
template <typename T> static inline T atomicMin(T *p, same_t<T> v)
{
    T old = *p;
    *p = old < v ? old : v;
    return old;
}
template <typename T> static inline T atomicExch(T *p, same_t<T> v)
{
    T old = *p;
    *p = v;
    return old;
}
template <typename T> static inline T atomicCAS(T *p, same_t<T> compare, same_t<T> v)
{
    T old = *p;
    if (old == compare)
        *p = v;
    return old;
}

/* CUDA's device min / max for one type (mixed types do not compile here;
 * cast them). */
#define KILN_EMU_MINMAX(T)                                                                         \
    static inline T min(T a, T b)                                                                  \
    {                                                                                              \
        return a < b ? a : b;                                                                      \
    }                                                                                              \
    static inline T max(T a, T b)                                                                  \
    {                                                                                              \
        return a > b ? a : b;                                                                      \
    }
KILN_EMU_MINMAX(int)
KILN_EMU_MINMAX(unsigned)
KILN_EMU_MINMAX(long)
KILN_EMU_MINMAX(unsigned long)
KILN_EMU_MINMAX(long long)
KILN_EMU_MINMAX(unsigned long long)
KILN_EMU_MINMAX(float)
KILN_EMU_MINMAX(double)
#undef KILN_EMU_MINMAX

#endif /* __cplusplus */

#endif
