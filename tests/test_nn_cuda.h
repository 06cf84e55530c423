/* tests/test_nn_cuda.h — shared by the test_nn_cuda_*.c tests that compare
 * the CUDA backend with the CPU oracle. Without a usable GPU each test
 * prints "SKIPPED: <reason>" and is reported skipped (cmocka skip()); a
 * CUDA module that is built but cannot be loaded is a failure, not a skip. */
#ifndef KILN_TEST_NN_CUDA_H
#define KILN_TEST_NN_CUDA_H

#include "test_nn_ops.h"

/* The CPU oracle and the CUDA backend under test, side by side. */
typedef struct kt_pair {
    kiln_nn_backend *cpu, *gpu;
    char why[KILN_ERR_MSG_MAX]; /* why gpu is NULL */
} kt_pair;

/* cmocka group setup: both backends (the GPU one may be missing). */
static inline int kt_pair_setup(void **state)
{
    kt_pair *p = calloc(1, sizeof *p);
    assert_non_null(p);
    kiln_err err = {0};
    const char *standin = getenv("KILN_TEST_GPU_STANDIN");
    if (standin && strcmp(standin, "cpu") == 0) {
        /* A check of the harness itself on machines without a GPU: a
         * second CPU backend (1 thread) plays the GPU. Proves nothing about
         * CUDA; never set in ctest. */
        printf("NOTE: KILN_TEST_GPU_STANDIN=cpu: a CPU backend stands in for CUDA\n");
        p->gpu = kt_cpu(1);
        p->cpu = kt_cpu(2);
        *state = p;
        return 0;
    }
    kiln_nn_cuda_opts o;
    kiln_nn_cuda_opts_default(&o);
    p->gpu = kiln_nn_cuda_create(&o, &err);
    if (!p->gpu) {
        snprintf(p->why, sizeof p->why, "%s", err.msg);
#ifdef KILN_HAVE_CUDA
        /* Built with CUDA: the module itself must load; only the device may be missing. */
        if (strstr(err.msg, "cannot load") || strstr(err.msg, "not a matching"))
            fail_msg("%s", err.msg);
#endif
    }
    p->cpu = kt_cpu(2);
    *state = p;
    return 0;
}

static inline int kt_pair_teardown(void **state)
{
    kt_pair *p = *state;
    kiln_nn_backend_destroy(p->gpu);
    kiln_nn_backend_destroy(p->cpu);
    free(p);
    return 0;
}

/* The pair, or a visible SKIPPED line and cmocka's skip() without a GPU. */
static inline kt_pair *kt_need_gpu_at(void **state, const char *test)
{
    kt_pair *p = *state;
    if (!p->gpu) {
        printf("SKIPPED: %s: %s\n", test, p->why);
        fflush(stdout);
        skip();
    }
    return p;
}
#define KT_NEED_GPU(state) kt_need_gpu_at((state), __func__)

/* Host floats copied into both backends: d[0] CPU, d[1] GPU. */
static inline void kt_both(kt_pair *p, const float *host, size_t n, float *d[2])
{
    d[0] = kt_dev(p->cpu, host, n);
    d[1] = kt_dev(p->gpu, host, n);
}

/* NaN-filled outputs in both backends. */
static inline void kt_both_nan(kt_pair *p, size_t n, float *d[2])
{
    d[0] = kt_dev_nan(p->cpu, n);
    d[1] = kt_dev_nan(p->gpu, n);
}

static inline void kt_both_release(kt_pair *p, float *d[2])
{
    p->cpu->ops->release(p->cpu, d[0]);
    p->gpu->ops->release(p->gpu, d[1]);
}

/* The GPU's n floats against the CPU's, within `tol` of max |CPU|
 * (kt_check_close); tol 0 asks for the same values. */
static inline void kt_both_compare(kt_pair *p, const char *what, float *d[2], size_t n, double tol)
{
    float *c = kt_host(p->cpu, d[0], n), *g = kt_host(p->gpu, d[1], n);
    double *want = kt_to_double(c, n);
    kt_check_close(what, g, want, n, tol);
    free(c), free(g), free(want);
}

/* Bit-for-bit equality of n floats (masks, optimizer steps). */
static inline void kt_both_identical(kt_pair *p, const char *what, float *d[2], size_t n)
{
    float *c = kt_host(p->cpu, d[0], n), *g = kt_host(p->gpu, d[1], n);
    size_t diff = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&c[i], &g[i], sizeof c[i]) != 0 && diff++ == 0)
            first = i;
    if (diff)
        fail_msg("%s: %zu of %zu floats differ; first at %zu: gpu %.9g, cpu %.9g", what, diff, n,
                 first, (double)g[first], (double)c[first]);
    free(c), free(g);
}

#endif
