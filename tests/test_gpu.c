/* lib/gpu: the probe says clearly whether a GPU can be used. On machines
 * without one this prints SKIPPED for the device checks; the CUDA code is
 * still compiled and linked whenever the backend is built. */
#include <stdio.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
