#include <string.h>

#include "gpu/gpu.h"
#include "nn/backend.h"

int kiln_gpu_probe(kiln_gpu_info *info, kiln_err *err)
{
    memset(info, 0, sizeof *info);
    return kiln_err_set(err, KILN_EDEVICE,
                        "kiln was built without the CUDA backend (-DKILN_CUDA=OFF)");
}

kiln_nn_backend *kiln_nn_cuda_create(const kiln_nn_cuda_opts *opts, kiln_err *err)
{
    (void)opts;
    kiln_err_set(err, KILN_EDEVICE, "kiln was built without the CUDA backend (-DKILN_CUDA=OFF)");
    return NULL;
}
