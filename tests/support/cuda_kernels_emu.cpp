/* tests/support/cuda_kernels_emu.cpp — kiln's own CUDA kernels
 * (lib/nn/cuda/cuda_kernels.cu, unchanged) compiled by g++ against the
 * emulator, so test_nn_cuda_kernels calls the very launchers of
 * cuda_kernels.h on the CPU. Built with KILN_CUDA_EMU and -ffp-contract=off
 * (tests/CMakeLists.txt). */
#include "support/cuda_emu.h"

#include "nn/cuda/cuda_kernels.cu"
