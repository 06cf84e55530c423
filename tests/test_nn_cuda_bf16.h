/* tests/test_nn_cuda_bf16.h — shared by test_nn_cuda_bf16.c (ops) and
 * test_nn_cuda_bf16_model.c (B0): the CUDA backend in bf16 mixed precision
 * (kiln_nn_cuda_opts.bf16, activations bf16 NHWC) against its CPU oracle
 * "cpu-bf16" (bf16 NCHW: float32 kernels on decoded inputs, one rounding
 * per stored activation). Activations are compared through act_to_f32 on
 * each side, so the two layouts never meet. Without a usable GPU every
 * test prints SKIPPED (test_nn_cuda.h's contract); KILN_TEST_GPU_STANDIN=cpu
 * lets a 1-thread cpu-bf16 play the GPU to check the harness itself. */
#ifndef KILN_TEST_NN_CUDA_BF16_H
#define KILN_TEST_NN_CUDA_BF16_H

#include "nn/bf16.h"
#include "test_nn_cuda.h"

static inline kiln_nn_backend *kb_open(const char *device, int threads)
{
    kiln_err err = {0};
    kiln_nn_backend *be = kiln_nn_backend_open(device, threads, NULL, &err);
    if (!be)
        fail_msg("kiln_nn_backend_open(%s): %s", device, err.msg);
    return be;
}

/* cmocka group setup: cpu-bf16 (2 threads) and CUDA bf16 (may be missing). */
static inline int kb_pair_setup(void **state)
{
    kt_pair *p = calloc(1, sizeof *p);
    assert_non_null(p);
    kiln_err err = {0};
    const char *standin = getenv("KILN_TEST_GPU_STANDIN");
    if (standin && strcmp(standin, "cpu") == 0) {
        printf("NOTE: KILN_TEST_GPU_STANDIN=cpu: a cpu-bf16 backend stands in for CUDA bf16\n");
        p->gpu = kb_open("cpu-bf16", 1);
    } else {
        kiln_nn_cuda_opts o;
        kiln_nn_cuda_opts_default(&o);
        o.bf16 = 1;
        p->gpu = kiln_nn_cuda_create(&o, &err);
        if (!p->gpu) {
            snprintf(p->why, sizeof p->why, "%s", err.msg);
#ifdef KILN_HAVE_CUDA
            if (strstr(err.msg, "cannot load") || strstr(err.msg, "not a matching"))
                fail_msg("%s", err.msg);
#endif
        } else if (p->gpu->act != KILN_ACT_BF16_NHWC) {
            fail_msg("cuda bf16: activation format %d, expected bf16 NHWC", (int)p->gpu->act);
        }
    }
    p->cpu = kb_open("cpu-bf16", 2);
    *state = p;
    return 0;
}

static inline size_t kb_count(int n, int c, int hw)
{
    return (size_t)n * (size_t)c * (size_t)hw;
}

/* An act tensor [n, c, hw] in `be` from host float32 NCHW (NULL: NaN, so an
 * op that leaves part of its output unwritten fails the comparison). */
static inline float *kb_act(kiln_nn_backend *be, const float *host, int n, int c, int hw)
{
    kiln_err err = {0};
    size_t count = kb_count(n, c, hw);
    float *f = host ? kt_dev(be, host, count) : kt_dev_nan(be, count);
    float *a = kt_dev(be, NULL, count); /* count floats hold count activations */
    kt_expect_ok(be->ops->act_from_f32(be, n, c, hw, f, a, &err), &err, "act_from_f32");
    be->ops->release(be, f);
    return a;
}

/* An act tensor as host float32 NCHW. */
static inline float *kb_host(kiln_nn_backend *be, const float *act, int n, int c, int hw)
{
    kiln_err err = {0};
    size_t count = kb_count(n, c, hw);
    float *f = kt_dev(be, NULL, count);
    kt_expect_ok(be->ops->act_to_f32(be, n, c, hw, act, f, &err), &err, "act_to_f32");
    float *h = kt_host(be, f, count);
    be->ops->release(be, f);
    return h;
}

static inline void kb_both(kt_pair *p, const float *host, int n, int c, int hw, float *d[2])
{
    d[0] = kb_act(p->cpu, host, n, c, hw);
    d[1] = kb_act(p->gpu, host, n, c, hw);
}

/* One bf16 ulp at magnitude |v| (8 significant bits): 2^(e-8) for |v| in
 * [2^(e-1), 2^e). */
static inline double kb_ulp(double v)
{
    int e = 0;
    (void)frexp(fabs(v), &e);
    return ldexp(1.0, e - 8);
}

/* Every element within `ulps` bf16 ulps (at the larger of the two
 * magnitudes) plus floor × max|want| of the oracle's; NaN only where the
 * oracle has NaN. ulps 0 and floor 0 ask for the same values. */
static inline void kb_check(const char *what, const float *got, const float *want, size_t n,
                            double ulps, double floor)
{
    double scale = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(want[i]))
            scale = fmax(scale, fabs(want[i]));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        if (isnan(w) || isnan(g)) {
            if (!(isnan(w) && isnan(g)) && bad++ == 0)
                first = i;
            continue;
        }
        double tol = ulps * kb_ulp(fmax(fabs(g), fabs(w))) + floor * scale;
        if (!(fabs(g - w) <= tol) && bad++ == 0)
            first = i;
    }
    if (bad)
        fail_msg("%s: %zu of %zu elements off; first at %zu: gpu %.9g, cpu %.9g (tolerance %g "
                 "ulp + %g of max |%.4g|)",
                 what, bad, n, first, (double)got[first], (double)want[first], ulps, floor, scale);
}

/* The two sides' act tensors [n, c, hw], compared through float32 NCHW. */
static inline void kb_compare(kt_pair *p, const char *what, float *d[2], int n, int c, int hw,
                              double ulps, double floor)
{
    float *w = kb_host(p->cpu, d[0], n, c, hw), *g = kb_host(p->gpu, d[1], n, c, hw);
    kb_check(what, g, w, kb_count(n, c, hw), ulps, floor);
    free(w), free(g);
}

#endif
