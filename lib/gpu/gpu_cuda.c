/* The CUDA side of lib/gpu, built into libkiln_cuda.so (see gpu_module.h):
 * the only code linked against cudart, cuBLAS and cuDNN. */
#include <stdio.h>
#include <string.h>

#include "gpu/gpu.h"
#include "gpu/gpu_check.h"
#include "gpu/gpu_module.h"

static int probe_versions(kiln_gpu_info *info, kiln_err *err)
{
    int rc = KILN_OK;
    cublasHandle_t blas = NULL;
    cudnnHandle_t dnn = NULL;
    info->cudnn_version = cudnnGetVersion();
    KILN_CUDA(cudaRuntimeGetVersion(&info->runtime_version));
    KILN_CUDA(cudaDriverGetVersion(&info->driver_version));
    KILN_CUDA(cudaGetDeviceCount(&info->device_count));
    /* cudnnCreate fails with NOT_INITIALIZED when no GPU is usable. */
    KILN_CUDNN(cudnnCreate(&dnn));
    KILN_CUBLAS(cublasCreate(&blas));
    KILN_CUBLAS(cublasGetVersion(blas, &info->cublas_version));
fail:
    if (blas)
        cublasDestroy(blas);
    if (dnn)
        cudnnDestroy(dnn);
    return rc;
}

int kiln_cuda_module_version(void)
{
    return KILN_CUDA_MODULE_VERSION;
}

int kiln_cuda_module_probe(kiln_gpu_info *info, kiln_err *err)
{
    int rc = KILN_OK;
    struct cudaDeviceProp prop;
    memset(info, 0, sizeof *info);
    info->built_with_cuda = 1;
    rc = probe_versions(info, err);
    if (rc != KILN_OK)
        return kiln_err_wrap(err, "no usable GPU");
    KILN_CUDA(cudaGetDeviceProperties(&prop, 0));
    snprintf(info->name, sizeof info->name, "%s", prop.name);
    info->total_memory = prop.totalGlobalMem;
    info->compute_major = prop.major;
    info->compute_minor = prop.minor;
fail:
    return rc;
}
