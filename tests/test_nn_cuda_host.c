/* tests/test_nn_cuda_host.c — the CUDA backend's logic that needs no GPU,
 * run on every machine: backend selection (auto falls back to the CPU with
 * a log line saying why, cuda fails clearly, unknown names are refused),
 * the loader's module version check, and (with -DKILN_CUDA=ON) the conv
 * plan cache, the descriptor dimensions, the algorithm choice and the
 * workspace arena's growth policy of lib/nn/cuda/cuda_plan.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "gpu/gpu.h"
#include "nn/backend.h"
#include "support/testutil.h"
#ifdef KILN_HAVE_CUDA
#include "nn/cuda/cuda_plan.h"
#endif

/* A logger writing into a memory buffer. */
typedef struct mem_log {
    kiln_logger log;
    char *buf;
    size_t len;
} mem_log;

static void mem_log_open(mem_log *m)
{
    memset(m, 0, sizeof *m);
    kiln_logger_init(&m->log);
    m->log.out = open_memstream(&m->buf, &m->len);
    assert_non_null(m->log.out);
}

static void mem_log_close(mem_log *m)
{
    fclose(m->log.out);
    free(m->buf);
}

static int gpu_usable(char *why, size_t size)
{
    kiln_gpu_info info;
    kiln_err err = {0};
    int rc = kiln_gpu_probe(&info, &err);
    snprintf(why, size, "%s", err.msg);
    return rc == KILN_OK;
}

static void test_open_cpu(void **state)
{
    (void)state;
    kiln_err err = {0};
    kiln_nn_backend *be = kt_expect_ptr(kiln_nn_backend_open("cpu", 2, NULL, &err), &err, "cpu");
    assert_string_equal(be->ops->name, "cpu");
    kiln_nn_backend_destroy(be);
}

static void test_open_auto(void **state)
{
    (void)state;
    mem_log m;
    mem_log_open(&m);
    kiln_err err = {0};
    char why[1024];
    int usable = gpu_usable(why, sizeof why);
    kiln_nn_backend *be = kt_expect_ptr(kiln_nn_backend_open("auto", 1, &m.log, &err), &err,
                                        "auto");
    fflush(m.log.out);
    assert_non_null(m.buf);
    assert_non_null(strstr(m.buf, "device auto"));
    if (usable) {
        assert_string_equal(be->ops->name, "cuda");
        assert_non_null(strstr(m.buf, "using the GPU"));
    } else {
        /* The fallback says that it is the CPU and why. */
        assert_string_equal(be->ops->name, "cpu");
        assert_non_null(strstr(m.buf, "using the CPU"));
        assert_true(strlen(m.buf) > strlen("device auto: using the CPU (1 threads): ") + 8);
        printf("auto fell back: %s", m.buf);
    }
    kiln_nn_backend_destroy(be);
    /* NULL means auto too. */
    be = kt_expect_ptr(kiln_nn_backend_open(NULL, 1, NULL, &err), &err, "NULL device");
    kiln_nn_backend_destroy(be);
    mem_log_close(&m);
}

static void test_open_cuda(void **state)
{
    (void)state;
    kiln_err err = {0};
    char why[1024];
    kiln_nn_backend *be = kiln_nn_backend_open("cuda", 1, NULL, &err);
    if (gpu_usable(why, sizeof why)) {
        assert_non_null(be);
        assert_string_equal(be->ops->name, "cuda");
        kiln_nn_backend_destroy(be);
        return;
    }
    /* No GPU: a clear error, never a silent CPU. */
    assert_null(be);
    assert_int_equal(err.code, KILN_EDEVICE);
    assert_non_null(strstr(err.msg, "device cuda"));
#ifdef KILN_HAVE_CUDA
    assert_non_null(strstr(err.msg, "no usable GPU"));
#else
    assert_non_null(strstr(err.msg, "KILN_CUDA=OFF"));
#endif
    printf("cuda refused: %s\n", err.msg);
}

static void test_open_unknown(void **state)
{
    (void)state;
    kiln_err err = {0};
    assert_null(kiln_nn_backend_open("tpu", 1, NULL, &err));
    assert_int_equal(err.code, KILN_EINVAL);
    assert_non_null(strstr(err.msg, "'tpu'"));
    assert_non_null(strstr(err.msg, "auto, cpu or cuda"));
    /* A bad thread count reaches the CPU backend's check. */
    assert_null(kiln_nn_backend_open("cpu", 0, NULL, &err));
    assert_int_equal(err.code, KILN_EINVAL);
}

static void test_opts_default(void **state)
{
    (void)state;
    kiln_nn_cuda_opts o;
    unsetenv("KILN_CUDA_TF32");
    kiln_nn_cuda_opts_default(&o);
    assert_int_equal(o.device, 0);
    assert_int_equal(o.tf32, 0);
    assert_int_equal(o.deterministic, 1);
    assert_int_equal(o.find, 1);
    setenv("KILN_CUDA_TF32", "1", 1);
    kiln_nn_cuda_opts_default(&o);
    assert_int_equal(o.tf32, 1);
    unsetenv("KILN_CUDA_TF32");
}

/* The loader refuses a module of another version, saying which. */
static void test_module_version(void **state)
{
    (void)state;
#ifdef KILN_HAVE_CUDA
    const char *fake = getenv("KILN_TEST_FAKE_CUDA_MODULE");
    assert_non_null(fake);
    setenv("KILN_CUDA_MODULE", fake, 1);
    kiln_err err = {0};
    assert_null(kiln_nn_cuda_create(NULL, &err));
    assert_int_equal(err.code, KILN_EDEVICE);
    assert_non_null(strstr(err.msg, "not a matching kiln CUDA module"));
    assert_non_null(strstr(err.msg, "0 found"));
    kiln_gpu_info info;
    assert_int_equal(kiln_gpu_probe(&info, &err), KILN_EDEVICE);
    assert_non_null(strstr(err.msg, "not a matching"));
    /* auto does not fail on it: it falls back to the CPU, saying why. */
    kiln_nn_backend *be = kiln_nn_backend_open("auto", 1, NULL, &err);
    assert_non_null(be);
    assert_string_equal(be->ops->name, "cpu");
    kiln_nn_backend_destroy(be);
    unsetenv("KILN_CUDA_MODULE");
#else
    printf("SKIPPED: built without the CUDA backend (no module to check)\n");
    skip();
#endif
}

#ifdef KILN_HAVE_CUDA
static void free_val(void *val, void *ctx)
{
    (*(int *)ctx)++;
    free(val);
}

static void test_plan_cache(void **state)
{
    (void)state;
    cuda_cache c = {0};
    kiln_err err = {0};
    cuda_conv_key keys[100];
    for (int i = 0; i < 100; i++) {
        kiln_conv_desc d = {8 + i % 5, 16, 1 + 2 * (i % 3), 1 + i % 2, i % 3, 1};
        cuda_conv_key_make(&keys[i], &d, 2 + i / 10, 16, 16 + i % 10);
    }
    for (int i = 0; i < 100; i++) {
        assert_null(cuda_cache_find(&c, &keys[i]));
        int *v = malloc(sizeof *v);
        *v = i;
        kt_expect_ok(cuda_cache_add(&c, &keys[i], v, &err), &err, "add");
    }
    assert_int_equal(c.count, 100);
    assert_true(c.cap >= 100);
    /* Every key finds its own value, in any order (the last-hit start
     * wraps around). */
    for (int round = 0; round < 2; round++)
        for (int j = 0; j < 100; j++) {
            int i = round ? 99 - j : (j * 37) % 100;
            int *v = cuda_cache_find(&c, &keys[i]);
            assert_non_null(v);
            assert_int_equal(*v, i);
        }
    /* Any field makes a different key. */
    cuda_conv_key k = keys[5];
    int *fields[] = {&k.n, &k.h, &k.w, &k.in_c, &k.out_c, &k.k, &k.stride, &k.pad, &k.groups};
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
        k = keys[5];
        *fields[f] += 1000;
        assert_false(cuda_conv_key_equal(&k, &keys[5]));
        assert_null(cuda_cache_find(&c, &k));
    }
    int freed = 0;
    cuda_cache_clear(&c, free_val, &freed);
    assert_int_equal(freed, 100);
    assert_int_equal(c.count, 0);
    assert_null(cuda_cache_find(&c, &keys[0]));
}

static void test_conv_dims(void **state)
{
    (void)state;
    /* B0's stem at 224 (stride 2) and a 5x5 depthwise with stride 2. */
    kiln_conv_desc stem = {3, 32, 3, 2, 1, 1}, dw = {240, 240, 5, 2, 2, 240};
    cuda_conv_key k;
    cuda_conv_dims d;
    cuda_conv_key_make(&k, &stem, 128, 224, 224);
    cuda_conv_dims_make(&k, &d);
    int x[4] = {128, 3, 224, 224}, y[4] = {128, 32, 112, 112}, f[4] = {32, 3, 3, 3};
    assert_memory_equal(d.x, x, sizeof x);
    assert_memory_equal(d.y, y, sizeof y);
    assert_memory_equal(d.filter, f, sizeof f);
    cuda_conv_key_make(&k, &dw, 2, 15, 17);
    cuda_conv_dims_make(&k, &d);
    int y2[4] = {2, 240, 8, 9}, f2[4] = {240, 1, 5, 5};
    assert_memory_equal(d.y, y2, sizeof y2);
    assert_memory_equal(d.filter, f2, sizeof f2);
    /* The CPU oracle's argument checks. */
    kiln_err err = {0};
    float buf[4];
    kiln_conv_desc bad = {6, 4, 3, 1, 1, 4};
    kt_expect_fail(kiln_nn_check_conv("conv_forward", &bad, 1, 8, 8, buf, buf, buf, &err), &err,
                   KILN_EINVAL, "multiples of groups 4");
    bad = (kiln_conv_desc){4, 4, 5, 1, 0, 1};
    kt_expect_fail(kiln_nn_check_conv("conv_forward", &bad, 1, 3, 3, buf, buf, buf, &err), &err,
                   KILN_EINVAL, "smaller than the 5x5 kernel");
    kt_expect_fail(kiln_nn_check_conv("conv_forward", &stem, 1, 8, 8, buf, NULL, buf, &err), &err,
                   KILN_EINVAL, "argument 2 is NULL");
    kt_expect_fail(kiln_nn_check_conv("conv_forward", NULL, 1, 8, 8, buf, buf, buf, &err), &err,
                   KILN_EINVAL, "NULL conv descriptor");
    kt_expect_ok(kiln_nn_check_conv("conv_forward", &stem, 0, 8, 8, buf, buf, buf, &err), &err,
                 "n 0");
    kt_expect_fail(kiln_nn_check_dims(&err, "op", 1, -2, 3), &err, KILN_EINVAL, "negative size");
    kt_expect_fail(kiln_nn_check_dims(&err, "op", 1, 2, 1LL << 40), &err, KILN_EINVAL, "too large");
}

static void test_algo_pick(void **state)
{
    (void)state;
    /* Fastest first: a failed one, one over the limit, a TF32 one, a
     * non-deterministic one, then a deterministic FMA one. */
    cuda_algo_choice ch[] = {
        {.algo = 7, .ok = 0, .memory = 0, .deterministic = 1},
        {.algo = 6, .ok = 1, .memory = 1000, .deterministic = 1},
        {.algo = 5, .ok = 1, .memory = 0, .deterministic = 1, .tensor_math = 1},
        {.algo = 4, .ok = 1, .memory = 10, .deterministic = 0},
        {.algo = 3, .ok = 1, .memory = 20, .deterministic = 1},
    };
    assert_int_equal(cuda_algo_pick(ch, 5, 100, 1, 0), 4);
    assert_int_equal(cuda_algo_pick(ch, 5, 100, 0, 0), 3);
    assert_int_equal(cuda_algo_pick(ch, 5, 100, 1, 1), 2);
    assert_int_equal(cuda_algo_pick(ch, 5, 5000, 1, 0), 1);
    /* No deterministic one fits: the fastest that does. */
    assert_int_equal(cuda_algo_pick(ch, 4, 100, 1, 0), 3);
    /* Nothing fits. */
    assert_int_equal(cuda_algo_pick(ch, 2, 100, 1, 1), -1);
    assert_int_equal(cuda_algo_pick(ch, 0, 100, 1, 1), -1);
}

static void test_arena_policy(void **state)
{
    (void)state;
    /* Enough already: unchanged (no reallocation). */
    assert_int_equal(cuda_arena_capacity(CUDA_ARENA_MIN, 0), CUDA_ARENA_MIN);
    assert_int_equal(cuda_arena_capacity(4 << 20, 3 << 20), 4 << 20);
    assert_int_equal(cuda_arena_capacity(4 << 20, 4 << 20), 4 << 20);
    /* Growth: at least the minimum, a power of two, at least the need. */
    assert_int_equal(cuda_arena_capacity(0, 1), CUDA_ARENA_MIN);
    assert_int_equal(cuda_arena_capacity(0, CUDA_ARENA_MIN + 1), 2 * CUDA_ARENA_MIN);
    assert_int_equal(cuda_arena_capacity(CUDA_ARENA_MIN, 5 << 20), 8 << 20);
    size_t huge = ((size_t)1 << 62) + 1;
    assert_true(cuda_arena_capacity(0, huge) >= huge);
    /* A run of growing requests reallocates only a few times. */
    size_t cap = 0;
    int grows = 0;
    for (size_t need = 1000; need < ((size_t)1 << 30); need += need / 7 + 1) {
        size_t next = cuda_arena_capacity(cap, need);
        assert_true(next >= need);
        grows += next != cap;
        cap = next;
    }
    assert_true(grows <= 11);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_cpu),       cmocka_unit_test(test_open_auto),
        cmocka_unit_test(test_open_cuda),      cmocka_unit_test(test_open_unknown),
        cmocka_unit_test(test_opts_default),   cmocka_unit_test(test_module_version),
#ifdef KILN_HAVE_CUDA
        cmocka_unit_test(test_plan_cache),     cmocka_unit_test(test_conv_dims),
        cmocka_unit_test(test_algo_pick),      cmocka_unit_test(test_arena_policy),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
