/* lib/nn/cuda/cuda_launch.h — KILN_LAUNCH, the one way cuda_kernels.cu
 * launches a kernel, so the same file also runs without a GPU:
 *
 *   KILN_LAUNCH(kernel, grid, block, shmem, stream)(args...);
 *
 * Under nvcc (__CUDACC__) this is literally kernel<<<grid, block, shmem,
 * stream>>>(args...), so the CUDA build is unchanged. Compiled as C++ with
 * KILN_CUDA_EMU (tests/support/cuda_emu.h included first), it runs the
 * kernel on the CPU through the emulator: every block in turn, blockDim
 * emulated threads each, with real __syncthreads barriers.
 *
 * The arguments follow the macro in their own parentheses, rather than as
 * its trailing variadic part, because then the nvcc expansion is exactly
 * the <<<>>> launch (a kernel without arguments needs no __VA_OPT__ trick)
 * and under the emulator they are converted to the kernel's parameter
 * types once, at the launch, as CUDA does. Like <<<>>>, the expression is
 * void: the launch status comes from cudaGetLastError(). */
#ifndef KILN_NN_CUDA_LAUNCH_H
#define KILN_NN_CUDA_LAUNCH_H

#if defined(__CUDACC__)
#define KILN_LAUNCH(kernel, grid, block, shmem, stream) kernel<<<grid, block, shmem, stream>>>
#elif defined(KILN_CUDA_EMU)
#ifndef KILN_TEST_CUDA_EMU_H
#error "KILN_CUDA_EMU: include tests/support/cuda_emu.h before the kernels"
#endif
#define KILN_LAUNCH(kernel, grid, block, shmem, stream)                                            \
    ::kiln_emu::launcher(#kernel, kernel, grid, block, shmem, stream)
#else
#error "cuda_launch.h: compile with nvcc, or as C++ with KILN_CUDA_EMU (tests/support/cuda_emu.h)"
#endif

#endif
