/* tests/test_nn_cuda_bf16_fused.c — the bf16 batch-norm kernels
 * (lib/nn/cuda/cuda_kernels_bf16.cu) run on the CPU through the emulator
 * (tests/support/cuda_emu.*): the fused BN + SiLU launchers give the bits
 * of the unfused launchers they replace (backend.h's contract), and the
 * unfused ones agree with the cpu-bf16 oracle. Shapes cover one row
 * chunk and several, channel counts off the 32-wide tile. */
#include <cuda_runtime_api.h>

#include "nn/cuda/cuda_kernels_bf16.h"
#include "support/cuda_emu.h"
#include "test_nn_ops.h"

typedef struct shape {
    int n, hw, c;
} shape;

static const shape SHAPES[] = {{2, 1, 5}, {3, 49, 40}, {4, 300, 33}};

static void emu_ok(const char *what, cudaError_t e)
{
    if (e != cudaSuccess)
        fail_msg("%s: launch failed (%d): %s", what, (int)e, kiln_emu_last_message());
}

static kiln_bf16 *rand_bf16(kt_rand *r, size_t n, float lo, float hi)
{
    float *f = kt_randf(r, n, lo, hi);
    kiln_bf16 *b = malloc(n * sizeof *b);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = kiln_bf16_from_f32(f[i]);
    free(f);
    return b;
}

static kiln_bf16 *bf16_buf(size_t n)
{
    kiln_bf16 *b = calloc(n ? n : 1, sizeof *b);
    assert_non_null(b);
    return b;
}

static void same_bf16(const char *what, const kiln_bf16 *a, const kiln_bf16 *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            fail_msg("%s: element %zu: fused 0x%04x, unfused 0x%04x", what, i, a[i], b[i]);
}

static void same_floats(const char *what, const float *a, const float *b, size_t n)
{
    if (memcmp(a, b, n * sizeof *a) != 0)
        fail_msg("%s: fused and unfused differ", what);
}

/* Batch-norm statistics for a shape: gamma, beta and running stats. */
typedef struct bn_params {
    float *gamma, *beta, *rm, *rv;
} bn_params;

static bn_params params_make(kt_rand *r, int c)
{
    bn_params p = {kt_randf(r, (size_t)c, 0.5f, 1.5f), kt_randf(r, (size_t)c, -0.5f, 0.5f),
                   kt_randf(r, (size_t)c, -0.2f, 0.2f), kt_randf(r, (size_t)c, 0.5f, 2.0f)};
    return p;
}

static void params_free(bn_params *p)
{
    free(p->gamma), free(p->beta), free(p->rm), free(p->rv);
}

static float *copy_floats(const float *src, size_t n)
{
    float *d = malloc(n * sizeof *d);
    assert_non_null(d);
    memcpy(d, src, n * sizeof *d);
    return d;
}

static void test_fused_forward_equals_unfused(void **state)
{
    (void)state;
    kt_rand rnd = {41};
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
        shape s = SHAPES[si];
        size_t rows = (size_t)s.n * s.hw, count = rows * (size_t)s.c, c = (size_t)s.c;
        kiln_bf16 *x = rand_bf16(&rnd, count, -3, 3);
        bn_params p = params_make(&rnd, s.c);
        void *scratch = malloc(cuda_bf16_bn_scratch_bytes(rows, s.c) + 1);
        /* Unfused: BN then SiLU. */
        float *rm1 = copy_floats(p.rm, c), *rv1 = copy_floats(p.rv, c);
        float *sm1 = calloc(c, 4), *si1 = calloc(c, 4);
        kiln_bf16 *bn1 = bf16_buf(count), *y1 = bf16_buf(count);
        emu_ok("bn_train", cuda_launch_bf16_bn_train(NULL, rows, s.c, x, p.gamma, p.beta, rm1, rv1,
                                                     0.1f, 1e-5f, bn1, sm1, si1, scratch));
        emu_ok("silu", cuda_launch_bf16_ew(NULL, CUDA_EW_SILU, count, bn1, NULL, y1));
        /* Fused. */
        float *rm2 = copy_floats(p.rm, c), *rv2 = copy_floats(p.rv, c);
        float *sm2 = calloc(c, 4), *si2 = calloc(c, 4);
        kiln_bf16 *bn2 = bf16_buf(count), *y2 = bf16_buf(count);
        emu_ok("bn_silu_train",
               cuda_launch_bf16_bn_silu_train(NULL, rows, s.c, x, p.gamma, p.beta, rm2, rv2, 0.1f,
                                              1e-5f, bn2, y2, sm2, si2, scratch));
        same_bf16("train bn", bn2, bn1, count);
        same_bf16("train silu", y2, y1, count);
        same_floats("running mean", rm2, rm1, c);
        same_floats("running var", rv2, rv1, c);
        same_floats("save mean", sm2, sm1, c);
        same_floats("save invstd", si2, si1, c);
        /* Eval: the fused op writes only the SiLU. */
        kiln_bf16 *e1 = bf16_buf(count), *f1 = bf16_buf(count), *e2 = bf16_buf(count);
        emu_ok("bn_eval", cuda_launch_bf16_bn_eval(NULL, rows, s.c, x, p.gamma, p.beta, p.rm,
                                                   p.rv, 1e-5f, e1));
        emu_ok("silu", cuda_launch_bf16_ew(NULL, CUDA_EW_SILU, count, e1, NULL, f1));
        emu_ok("bn_silu_eval", cuda_launch_bf16_bn_silu_eval(NULL, rows, s.c, x, p.gamma, p.beta,
                                                             p.rm, p.rv, 1e-5f, e2));
        same_bf16("eval silu", e2, f1, count);
        free(x), free(scratch), free(rm1), free(rv1), free(sm1), free(si1), free(bn1), free(y1);
        free(rm2), free(rv2), free(sm2), free(si2), free(bn2), free(y2), free(e1), free(f1);
        free(e2);
        params_free(&p);
    }
}

static void test_fused_backward_equals_unfused(void **state)
{
    (void)state;
    kt_rand rnd = {43};
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
        shape s = SHAPES[si];
        size_t rows = (size_t)s.n * s.hw, count = rows * (size_t)s.c, c = (size_t)s.c;
        kiln_bf16 *x = rand_bf16(&rnd, count, -3, 3), *bn = rand_bf16(&rnd, count, -4, 4);
        kiln_bf16 *dy = rand_bf16(&rnd, count, -1, 1);
        bn_params p = params_make(&rnd, s.c);
        float *mean = kt_randf(&rnd, c, -0.3f, 0.3f), *invstd = kt_randf(&rnd, c, 0.5f, 2.0f);
        void *scratch = malloc(cuda_bf16_bn_scratch_bytes(rows, s.c) + 1);
        kiln_bf16 *t = bf16_buf(count), *dx1 = bf16_buf(count), *dx2 = bf16_buf(count);
        float *dg1 = calloc(c, 4), *db1 = calloc(c, 4), *dg2 = calloc(c, 4), *db2 = calloc(c, 4);
        emu_ok("silu_bwd", cuda_launch_bf16_ew(NULL, CUDA_EW_SILU_BWD, count, bn, dy, t));
        emu_ok("bn_bwd", cuda_launch_bf16_bn_bwd(NULL, rows, s.c, x, t, p.gamma, mean, invstd, dx1,
                                                 dg1, db1, scratch));
        emu_ok("silu_bn_bwd", cuda_launch_bf16_silu_bn_bwd(NULL, rows, s.c, x, bn, dy, p.gamma,
                                                           mean, invstd, dx2, dg2, db2, scratch));
        same_bf16("dx", dx2, dx1, count);
        same_floats("dgamma", dg2, dg1, c);
        same_floats("dbeta", db2, db1, c);
        free(x), free(bn), free(dy), free(mean), free(invstd), free(scratch), free(t), free(dx1);
        free(dx2), free(dg1), free(db1), free(dg2), free(db2);
        params_free(&p);
    }
}

/* The unfused train kernels against cpu-bf16 (NCHW, through act
 * conversions): every output within one bf16 step of the oracle's, the
 * statistics to float rounding. */
static void test_bn_train_matches_cpu_bf16(void **state)
{
    (void)state;
    kiln_err err = {0};
    kiln_nn_backend *be = kiln_nn_backend_open("cpu-bf16", 2, NULL, &err);
    assert_non_null(be);
    kt_rand rnd = {47};
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
        shape s = SHAPES[si];
        size_t rows = (size_t)s.n * s.hw, count = rows * (size_t)s.c, c = (size_t)s.c;
        kiln_bf16 *x = rand_bf16(&rnd, count, -3, 3);
        bn_params p = params_make(&rnd, s.c);
        void *scratch = malloc(cuda_bf16_bn_scratch_bytes(rows, s.c) + 1);
        float *rm = copy_floats(p.rm, c), *rv = copy_floats(p.rv, c);
        float *sm = calloc(c, 4), *sv = calloc(c, 4);
        kiln_bf16 *y = bf16_buf(count);
        emu_ok("bn_train", cuda_launch_bf16_bn_train(NULL, rows, s.c, x, p.gamma, p.beta, rm, rv,
                                                     0.1f, 1e-5f, y, sm, sv, scratch));
        /* The oracle: x as float32 NCHW into cpu-bf16. */
        float *xf = malloc(count * 4);
        for (int i = 0; i < s.n; i++)
            for (int ch = 0; ch < s.c; ch++)
                for (int q = 0; q < s.hw; q++)
                    xf[((size_t)i * s.c + ch) * s.hw + q] =
                        kiln_bf16_to_f32(x[((size_t)i * s.hw + q) * s.c + ch]);
        float *dxf = kt_dev(be, xf, count), *dact = be->ops->alloc(be, count * 2, &err);
        float *dyact = be->ops->alloc(be, count * 2, &err), *dyf = kt_dev_nan(be, count);
        float *g = kt_dev(be, p.gamma, c), *b = kt_dev(be, p.beta, c);
        float *orm = kt_dev(be, p.rm, c), *orv = kt_dev(be, p.rv, c);
        float *osm = kt_dev_nan(be, c), *osv = kt_dev_nan(be, c);
        assert_int_equal(be->ops->act_from_f32(be, s.n, s.c, s.hw, dxf, dact, &err), KILN_OK);
        assert_int_equal(be->ops->bn_forward_train(be, s.n, s.c, s.hw, dact, g, b, orm, orv, 0.1f,
                                                   1e-5f, dyact, osm, osv, &err),
                         KILN_OK);
        assert_int_equal(be->ops->act_to_f32(be, s.n, s.c, s.hw, dyact, dyf, &err), KILN_OK);
        float *want = kt_host(be, dyf, count), *wsm = kt_host(be, osm, c);
        float *wsv = kt_host(be, osv, c), *wrv = kt_host(be, orv, c);
        for (int i = 0; i < s.n; i++)
            for (int ch = 0; ch < s.c; ch++)
                for (int q = 0; q < s.hw; q++) {
                    double got = kiln_bf16_to_f32(y[((size_t)i * s.hw + q) * s.c + ch]);
                    double w = want[((size_t)i * s.c + ch) * s.hw + q];
                    if (!(fabs(got - w) <= fabs(w) / 128.0 + 1e-6))
                        fail_msg("shape %zu: y[%d, %d, %d] = %g, cpu-bf16 %g", si, i, ch, q, got,
                                 w);
                }
        for (size_t ch = 0; ch < c; ch++) {
            assert_float_equal(sm[ch], wsm[ch], 1e-5 * (1 + fabs(wsm[ch])));
            assert_float_equal(sv[ch], wsv[ch], 1e-5 * fabs(wsv[ch]));
            assert_float_equal(rv[ch], wrv[ch], 1e-5 * fabs(wrv[ch]));
        }
        free(x), free(scratch), free(rm), free(rv), free(sm), free(sv), free(y), free(xf);
        free(want), free(wsm), free(wsv), free(wrv);
        be->ops->release(be, dxf), be->ops->release(be, dact), be->ops->release(be, dyact);
        be->ops->release(be, dyf), be->ops->release(be, g), be->ops->release(be, b);
        be->ops->release(be, orm), be->ops->release(be, orv), be->ops->release(be, osm);
        be->ops->release(be, osv);
        params_free(&p);
    }
    kiln_nn_backend_destroy(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_forward_equals_unfused),
        cmocka_unit_test(test_fused_backward_equals_unfused),
        cmocka_unit_test(test_bn_train_matches_cpu_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
