/* lib/gpu/gpu.h — what GPU this process can use, and checked CUDA calls.
 *
 * kiln_gpu_probe fills a kiln_gpu_info with the first usable device and
 * the library versions. It returns KILN_EDEVICE with the driver's or
 * cuDNN's own message when no GPU can be used (no driver, no device,
 * cuDNN cannot initialise) — the signal for `--device auto` to fall back
 * to the CPU and for GPU tests to print SKIPPED. Built without CUDA
 * (-DKILN_CUDA=OFF) it always returns KILN_EDEVICE saying so.
 *
 * The CUDA nn backend (kiln_nn_cuda_create, declared in nn/backend.h) comes
 * through the same loader: its code lives in libkiln_cuda.so, whose version
 * (gpu_module.h) must match this build's.
 */
#ifndef KILN_GPU_GPU_H
#define KILN_GPU_GPU_H

#include <stddef.h>

#include "common/err.h"

typedef struct kiln_gpu_info {
    int built_with_cuda;     /* 1 when compiled with the CUDA backend */
    int device_count;        /* devices the driver reports */
    char name[256];          /* device 0's name */
    size_t total_memory;     /* bytes */
    int compute_major, compute_minor;
    int runtime_version;     /* cudaRuntimeGetVersion, e.g. 13000 */
    int driver_version;      /* cudaDriverGetVersion; 0 without a driver */
    size_t cudnn_version;    /* cudnnGetVersion, e.g. 91900 */
    int cublas_version;      /* cublasGetVersion */
} kiln_gpu_info;

int kiln_gpu_probe(kiln_gpu_info *info, kiln_err *err);

#endif
