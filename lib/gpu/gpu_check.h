/* lib/gpu/gpu_check.h — every CUDA, cuDNN and cuBLAS status goes through
 * one of these macros. On failure they set `err` with file:line, the call
 * and the library's own message, and jump to the function's `fail` label.
 * The enclosing function must declare `int rc` and `kiln_err *err`.
 * Only included by files compiled with KILN_HAVE_CUDA.
 */
#ifndef KILN_GPU_GPU_CHECK_H
#define KILN_GPU_GPU_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "common/err.h"

#define KILN_CUDA(call)                                                                   \
    do {                                                                                  \
        cudaError_t kiln_st_ = (call);                                                    \
        if (kiln_st_ != cudaSuccess) {                                                    \
            rc = kiln_err_set(err, KILN_EDEVICE, "%s:%d: %s: CUDA error %d: %s", __FILE__, \
                              __LINE__, #call, (int)kiln_st_, cudaGetErrorString(kiln_st_)); \
            goto fail;                                                                    \
        }                                                                                 \
    } while (0)

#define KILN_CUDNN(call)                                                                  \
    do {                                                                                  \
        cudnnStatus_t kiln_st_ = (call);                                                  \
        if (kiln_st_ != CUDNN_STATUS_SUCCESS) {                                           \
            rc = kiln_err_set(err, KILN_EDEVICE, "%s:%d: %s: cuDNN error %d: %s", __FILE__, \
                              __LINE__, #call, (int)kiln_st_, cudnnGetErrorString(kiln_st_)); \
            goto fail;                                                                    \
        }                                                                                 \
    } while (0)

#define KILN_CUBLAS(call)                                                                 \
    do {                                                                                  \
        cublasStatus_t kiln_st_ = (call);                                                 \
        if (kiln_st_ != CUBLAS_STATUS_SUCCESS) {                                          \
            rc = kiln_err_set(err, KILN_EDEVICE, "%s:%d: %s: cuBLAS error %d: %s",        \
                              __FILE__, __LINE__, #call, (int)kiln_st_,                   \
                              cublasGetStatusString(kiln_st_));                           \
            goto fail;                                                                    \
        }                                                                                 \
    } while (0)

#endif
