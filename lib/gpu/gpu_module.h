/* lib/gpu/gpu_module.h — the entry points libkiln_cuda.so exports to the
 * loader in gpu_loader.c (private to lib/gpu). Bump the version when they
 * change, so a stale module is refused rather than called wrongly. */
#ifndef KILN_GPU_GPU_MODULE_H
#define KILN_GPU_GPU_MODULE_H

#include "gpu/gpu.h"

#define KILN_CUDA_MODULE_VERSION 1
#define KILN_CUDA_MODULE_NAME "libkiln_cuda.so"

typedef int (*kiln_cuda_module_version_fn)(void);
typedef int (*kiln_cuda_module_probe_fn)(kiln_gpu_info *info, kiln_err *err);

int kiln_cuda_module_version(void);
int kiln_cuda_module_probe(kiln_gpu_info *info, kiln_err *err);

#endif
