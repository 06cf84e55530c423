/* lib/gpu/gpu_module.h — the entry points libkiln_cuda.so exports to the
 * loader in gpu_loader.c (private to lib/gpu). Bump the version when they
 * change, so a stale module is refused rather than called wrongly. */
#ifndef KILN_GPU_GPU_MODULE_H
#define KILN_GPU_GPU_MODULE_H

#include "gpu/gpu.h"
#include "nn/backend.h"

/* 2: the CUDA nn backend (kiln_cuda_module_backend_create); 3: its bf16 and fuse options. */
#define KILN_CUDA_MODULE_VERSION 3
#define KILN_CUDA_MODULE_NAME "libkiln_cuda.so"

typedef int (*kiln_cuda_module_version_fn)(void);
typedef int (*kiln_cuda_module_probe_fn)(kiln_gpu_info *info, kiln_err *err);

typedef kiln_nn_backend *(*kiln_cuda_module_backend_create_fn)(const kiln_nn_cuda_opts *opts,
                                                               kiln_err *err);

int kiln_cuda_module_version(void);
int kiln_cuda_module_probe(kiln_gpu_info *info, kiln_err *err);
/* The CUDA backend (lib/nn/cuda); its ops and destroy live in the module,
 * which stays mapped (RTLD_NODELETE) for the process's life. */
kiln_nn_backend *kiln_cuda_module_backend_create(const kiln_nn_cuda_opts *opts, kiln_err *err);

#endif
