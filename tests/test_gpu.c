/* lib/gpu: the probe says clearly whether a GPU can be used. On machines
 * without one this prints SKIPPED for the device checks; the CUDA code is
 * still compiled and linked whenever the backend is built. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu.h"
#include "support/testutil.h"

static void test_probe(void **state)
{
    kiln_gpu_info info;
    kiln_err err = {0};
    int rc = kiln_gpu_probe(&info, &err);
#ifdef KILN_HAVE_CUDA
    assert_int_equal(info.built_with_cuda, 1);
    /* The CUDA module itself must load here; only the device may be missing. */
    if (rc != KILN_OK && strstr(err.msg, "cannot load"))
        fail_msg("%s", err.msg);
#else
    assert_int_equal(info.built_with_cuda, 0);
    assert_int_equal(rc, KILN_EDEVICE);
    assert_non_null(strstr(err.msg, "KILN_CUDA=OFF"));
#endif
    if (rc != KILN_OK) {
        assert_int_equal(rc, KILN_EDEVICE);
        assert_true(strlen(err.msg) > 10);
        printf("SKIPPED: GPU checks: %s\n", err.msg);
        return;
    }
    assert_true(info.device_count > 0);
    assert_true(info.name[0] != '\0');
    assert_true(info.total_memory > 0);
    assert_true(info.cudnn_version >= 90000);
    assert_true(info.cublas_version > 0);
    printf("GPU: %s, cuDNN %zu, cuBLAS %d\n", info.name, info.cudnn_version, info.cublas_version);
}

/* A module path that is not a kiln CUDA module gives a clear error. */
static void test_bad_module(void **state)
{
#ifdef KILN_HAVE_CUDA
    kiln_gpu_info info;
    kiln_err err = {0};
    setenv("KILN_CUDA_MODULE", "/etc/hostname", 1);
    assert_int_equal(kiln_gpu_probe(&info, &err), KILN_EDEVICE);
    unsetenv("KILN_CUDA_MODULE");
    assert_non_null(strstr(err.msg, "/etc/hostname"));
#else
    printf("SKIPPED: built without the CUDA backend\n");
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_bad_module),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
