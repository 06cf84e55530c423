#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "gpu/gpu.h"

int kiln_cmd_version(int argc, char **argv, const kiln_logger *log)
{
    kiln_gpu_info gpu;
    kiln_err err = {0};
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: kiln version\nPrints kiln's version, whether the CUDA backend is "
               "built, and the GPU it can use.\n");
        return 0;
    }
    printf("kiln %s\n", KILN_VERSION);
    int rc = kiln_gpu_probe(&gpu, &err);
    printf("cuda backend: %s\n", gpu.built_with_cuda ? "built" : "not built");
    if (rc == KILN_OK)
        printf("gpu: %s, %.1f GiB, compute %d.%d, cuDNN %zu, cuBLAS %d, CUDA runtime %d\n",
               gpu.name, (double)gpu.total_memory / (1024.0 * 1024 * 1024), gpu.compute_major,
               gpu.compute_minor, gpu.cudnn_version, gpu.cublas_version, gpu.runtime_version);
    else
        printf("gpu: none (%s)\n", err.msg);
    return 0;
}
