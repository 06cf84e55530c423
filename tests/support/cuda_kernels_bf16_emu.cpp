/* tests/support/cuda_kernels_bf16_emu.cpp — kiln's mixed-precision CUDA
 * kernels (lib/nn/cuda/cuda_kernels_bf16.cu, unchanged) compiled by g++
 * against the emulator, so test_nn_cuda_bf16_kernels calls the very
 * launchers of cuda_kernels_bf16.h on the CPU. Built with KILN_CUDA_EMU and
 * -ffp-contract=off (tests/CMakeLists.txt). */
#include "support/cuda_emu.h"

#include "nn/cuda/cuda_kernels_bf16.cu"
