/* tests/cuda_fake_module.c — a stand-in for libkiln_cuda.so from another
 * kiln build (module version 0), so test_nn_cuda_host can check that the
 * loader refuses a stale module instead of calling into it. */
#include <stddef.h>

int kiln_cuda_module_version(void);
void *kiln_cuda_module_backend_create(const void *opts, void *err);

int kiln_cuda_module_version(void)
{
    return 0;
}

void *kiln_cuda_module_backend_create(const void *opts, void *err)
{
    (void)opts;
    (void)err;
    return NULL;
}
