/* tests/test_nn_cpu_bf16.c — bf16 rounding (nn/bf16.h) and the cpu-bf16
 * backend: activations really stored in 2 bytes, the model on it close to
 * (and not the same as) float32, backend selection by precision, and bad
 * calls refused. */
#include <stdint.h>
#include <unistd.h>

#include "nn/bf16.h"
#include "nn/optim.h"
#include "test_nn_model.h"

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void test_rounding(void **state)
{
    (void)state;
    static const struct {
        uint32_t in;
        uint16_t out;
    } cases[] = {
        {0x3f800000u, 0x3f80}, /* 1 */
        {0x3f808000u, 0x3f80}, /* 1 + 2^-8: a tie, to the even 1 */
        {0x3f818000u, 0x3f82}, /* 1 + 3 * 2^-8: a tie, to the even 1 + 2^-6 */
        {0x3f808001u, 0x3f81}, /* just past the tie: up */
        {0x3f807fffu, 0x3f80}, /* just below: down */
        {0xbf808001u, 0xbf81}, /* the same for negatives */
        {0x80000000u, 0x8000}, /* -0 */
        {0x7f800000u, 0x7f80}, /* inf */
        {0xff800000u, 0xff80}, /* -inf */
        {0x7f7fffffu, 0x7f80}, /* FLT_MAX rounds past the largest bf16 */
        {0x00010000u, 0x0001}, /* a subnormal */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_bf16 b = kiln_bf16_from_f32(float_of(cases[i].in));
        if (b != cases[i].out)
            fail_msg("bf16(0x%08x) = 0x%04x, expected 0x%04x", cases[i].in, b, cases[i].out);
        assert_int_equal(bits_of(kiln_bf16_to_f32(b)), (uint32_t)cases[i].out << 16);
    }
    /* NaNs stay NaNs, even those whose payload sits in the low bits only. */
    assert_true(isnan(kiln_bf16_to_f32(kiln_bf16_from_f32(float_of(0x7f800001u)))));
    assert_true(isnan(kiln_bf16_round(NAN)));
    /* Every bf16 converts back to itself. */
    for (uint32_t v = 0; v < 0x10000u; v++) {
        float f = kiln_bf16_to_f32((kiln_bf16)v);
        if (!isnan(f))
            assert_int_equal(kiln_bf16_from_f32(f), v);
    }
}

/* act_from_f32 rounds into 2-byte storage and act_to_f32 reads it back. */
static void test_act_conversions(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    kiln_nn_backend *be = f->be;
    assert_int_equal(be->act, KILN_ACT_BF16_NCHW);
    assert_int_equal(kiln_act_bytes(be->act), 2);
    assert_string_equal(kiln_act_precision(be->act), "bf16");
    enum { N = 2, C = 3, HW = 5, COUNT = N * C * HW };
    float host[COUNT], back[COUNT];
    for (int i = 0; i < COUNT; i++)
        host[i] = 1.0f + (float)i / 3.0f;
    float *src = upload(f, host, sizeof host);
    /* Exactly COUNT two-byte elements: ASan sees any write past them. */
    float *act = be->ops->alloc(be, COUNT * 2, &err);
    float *dst = be->ops->alloc(be, sizeof back, &err);
    assert_non_null(act);
    assert_int_equal(be->ops->act_from_f32(be, N, C, HW, src, act, &err), KILN_OK);
    assert_int_equal(be->ops->act_to_f32(be, N, C, HW, act, dst, &err), KILN_OK);
    assert_int_equal(be->ops->download(be, back, dst, sizeof back, &err), KILN_OK);
    int changed = 0;
    for (int i = 0; i < COUNT; i++) {
        assert_true(back[i] == kiln_bf16_round(host[i]));
        changed += back[i] != host[i];
    }
    assert_true(changed > COUNT / 2);
    /* In place, as an op whose output is its input: SiLU on the act. */
    assert_int_equal(be->ops->silu_forward(be, COUNT, act, act, &err), KILN_OK);
    assert_int_equal(be->ops->act_to_f32(be, N, C, HW, act, dst, &err), KILN_OK);
    assert_int_equal(be->ops->download(be, back, dst, sizeof back, &err), KILN_OK);
    for (int i = 0; i < COUNT; i++) {
        float x = kiln_bf16_round(host[i]);
        assert_float_equal(back[i], x / (1.0f + expf(-x)), fabsf(x) / 128.0f);
        assert_true(back[i] == kiln_bf16_round(back[i]));
    }
    be->ops->release(be, src);
    be->ops->release(be, act);
    be->ops->release(be, dst);
}

static void test_bad_calls(void **state)
{
    fixture *f = *state;
    kiln_nn_backend *be = f->be;
    kiln_err err = {0};
    float *buf = be->ops->alloc(be, 4096, &err);
    assert_int_equal(be->ops->act_from_f32(be, 2, -1, 4, buf, buf, &err), KILN_EINVAL);
    assert_int_equal(be->ops->act_to_f32(be, 1, 2, 3, NULL, buf, &err), KILN_EINVAL);
    assert_int_equal(be->ops->silu_forward(be, 8, NULL, buf, &err), KILN_EINVAL);
    assert_int_equal(be->ops->add(be, 8, buf, NULL, buf, &err), KILN_EINVAL);
    assert_int_equal(be->ops->bn_forward_eval(be, -1, 2, 2, buf, buf, buf, buf, buf, 1e-5f, buf,
                                              &err),
                     KILN_EINVAL);
    kiln_conv_desc bad = {.in_c = 4, .out_c = 4, .k = 3, .stride = 1, .pad = 1, .groups = 0};
    assert_int_equal(be->ops->conv_forward(be, &bad, 1, 4, 4, buf, buf, buf, &err), KILN_EINVAL);
    assert_int_equal(be->ops->linear_forward(be, 2, 0, 3, buf, buf, NULL, buf, &err),
                     KILN_EINVAL);
    assert_int_equal(be->ops->scale_channels_backward(be, 1, 2, 2, buf, buf, buf, NULL, buf, &err),
                     KILN_EINVAL);
    be->ops->release(be, buf);
}

/* --- the model on bf16 activations, next to float32 ---------------------- */

typedef struct pair {
    fixture fp32, bf16;
    kiln_effnet *m32, *m16;
} pair;

static void pair_make(pair *p, fixture *f16)
{
    kiln_err err = {0};
    p->bf16 = *f16;
    p->fp32.dir = f16->dir;
    if (!(p->fp32.be = kiln_nn_cpu_create(2, &err)))
        fail_msg("%s", err.msg);
    p->m32 = make(&p->fp32, "b0", 4, 3);
    p->m16 = make(&p->bf16, "b0", 4, 3);
    for (int k = 0; k < 2; k++) {
        kiln_effnet *m = k ? p->m16 : p->m32;
        assert_int_equal(kiln_effnet_set_dropout(m, 0.0f, &err), KILN_OK);
        assert_int_equal(kiln_effnet_set_stochastic_depth(m, 0.0f, &err), KILN_OK);
    }
}

static void pair_free(pair *p)
{
    kiln_effnet_destroy(p->m32);
    kiln_effnet_destroy(p->m16);
    kiln_nn_backend_destroy(p->fp32.be);
}

static void test_plan_bytes(void **state)
{
    pair p;
    pair_make(&p, *state);
    plan(p.m32, 4, 64, 64);
    plan(p.m16, 4, 64, 64);
    size_t b32 = kiln_effnet_plan_bytes(p.m32), b16 = kiln_effnet_plan_bytes(p.m16);
    printf("training plan, b0 [4, 3, 64, 64]: fp32 %zu bytes, bf16 %zu (%.3f)\n", b32, b16,
           (double)b16 / (double)b32);
    assert_true(b16 * 100 < b32 * 53);
    kiln_err err = {0};
    assert_int_equal(kiln_effnet_plan_inference(p.m32, 4, 64, 64, &err), KILN_OK);
    assert_int_equal(kiln_effnet_plan_inference(p.m16, 4, 64, 64, &err), KILN_OK);
    assert_true(kiln_effnet_plan_bytes(p.m16) * 100 < kiln_effnet_plan_bytes(p.m32) * 53);
    pair_free(&p);
}

/* max |a - b| relative to max |a|; *same: bit-identical. */
static double rel_diff(const float *a, const float *b, size_t n, int *same)
{
    double worst = 0, scale = 0;
    *same = 1;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)a[i]));
        *same &= a[i] == b[i];
    }
    return worst / (scale > 0 ? scale : 1);
}

static double cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

/* The same weights and batch: eval logits, train-mode logits and every
 * parameter gradient of bf16 stay close to float32, and differ from it, so
 * bf16 really ran. Measured: eval logits 0.8%, train logits 8.8% (relative
 * max), loss 1.2%, gradient cosine 0.979. For scale, float32 with only its
 * input rounded to bf16 keeps a gradient cosine of 0.9997. */
static void test_close_to_fp32(void **state)
{
    pair p;
    pair_make(&p, *state);
    batch b32, b16;
    synthetic_batch(&p.fp32, &b32);
    synthetic_batch(&p.bf16, &b16);
    /* At 64x64 the last stages stay 2x2: train-mode BatchNorm over 128
     * values. At 32x32 (1x1, 32 values) it amplifies every rounding (as in
     * test_finite_differences): bf16's train logits moved 20-30% there. */
    b32.h = b32.w = b16.h = b16.w = 64;
    p.fp32.be->ops->release(p.fp32.be, b32.x);
    p.bf16.be->ops->release(p.bf16.be, b16.x);
    b32.x = random_input(&p.fp32, b32.n, 64, 64, 5);
    b16.x = random_input(&p.bf16, b16.n, 64, 64, 5);
    plan(p.m32, b32.n, b32.h, b32.w);
    plan(p.m16, b16.n, b16.h, b16.w);
    size_t nl = (size_t)b32.n * b32.classes;
    float *e32 = download(&p.fp32, forward(p.m32, b32.x, 0, 0), nl);
    float *e16 = download(&p.bf16, forward(p.m16, b16.x, 0, 0), nl);
    int same = 0;
    double eval = rel_diff(e32, e16, nl, &same);
    assert_false(same);
    float *t32 = NULL, *t16 = NULL;
    double l32 = loss_of(&p.fp32, p.m32, &b32, 1, 1, &t32);
    double l16 = loss_of(&p.bf16, p.m16, &b16, 1, 1, &t16);
    double train = rel_diff(t32, t16, nl, &same);
    size_t ng = kiln_effnet_flat_floats(p.m32);
    float *g32 = download(&p.fp32, kiln_effnet_grads_flat(p.m32), ng);
    float *g16 = download(&p.bf16, kiln_effnet_grads_flat(p.m16), ng);
    double cos = cosine(g32, g16, ng);
    printf("bf16 vs fp32: eval logits %.4f, train logits %.4f (relative max), loss %.5f vs "
           "%.5f, gradient cosine %.6f\n", eval, train, l16, l32, cos);
    assert_true(eval < 0.03);
    assert_true(train < 0.2);
    assert_true(fabs(l16 - l32) < 0.04 * l32);
    assert_true(cos > 0.95);
    assert_true(cos < 1.0 - 1e-9);
    free(e32), free(e16), free(t32), free(t16), free(g32), free(g16);
    batch_free(&p.fp32, &b32);
    batch_free(&p.bf16, &b16);
    pair_free(&p);
}

/* The fused BN + SiLU path (cpu-bf16 offers it, the CPU does not) gives
 * the unfused path's bits: train logits, every gradient, running stats,
 * eval logits. */
static void test_fused_equals_unfused(void **state)
{
    fixture *f = *state;
    assert_non_null(f->be->ops->bn_silu_forward_train);
    kiln_effnet *m[2];
    batch b;
    synthetic_batch(f, &b);
    float *logits[2], *grads[2], *stats[2], *eval[2];
    size_t nl = (size_t)b.n * b.classes, ng = 0, ns = 0;
    for (int k = 0; k < 2; k++) {
        kiln_err err = {0};
        m[k] = make(f, "b0", 4, 3);
        kiln_effnet_set_fused(m[k], k);
        assert_int_equal(kiln_effnet_set_stochastic_depth(m[k], 0.0f, &err), KILN_OK);
        plan(m[k], b.n, b.h, b.w);
        loss_of(f, m[k], &b, 5, 1, &logits[k]);
        ng = kiln_effnet_flat_floats(m[k]);
        grads[k] = download(f, kiln_effnet_grads_flat(m[k]), ng);
        const kiln_effnet_tensor *rv = kiln_effnet_find(m[k], "features.3.1.block.1.1.running_var");
        ns = rv->count;
        stats[k] = download(f, rv->data, ns);
        eval[k] = download(f, forward(m[k], b.x, 0, 0), nl);
    }
    assert_memory_equal(logits[0], logits[1], nl * sizeof(float));
    assert_memory_equal(grads[0], grads[1], ng * sizeof(float));
    assert_memory_equal(stats[0], stats[1], ns * sizeof(float));
    assert_memory_equal(eval[0], eval[1], nl * sizeof(float));
    for (int k = 0; k < 2; k++) {
        free(logits[k]), free(grads[k]), free(stats[k]), free(eval[k]);
        kiln_effnet_destroy(m[k]);
    }
    batch_free(f, &b);
}

/* --- choosing a backend by precision -------------------------------------- */

static void test_open_precision(void **state)
{
    (void)state;
    kiln_err err = {0};
    assert_null(kiln_nn_backend_open_precision("cpu", "bf16", 1, NULL, &err));
    assert_int_equal(err.code, KILN_EINVAL);
    assert_non_null(strstr(err.msg, "needs the GPU"));
    assert_null(kiln_nn_backend_open_precision("cpu", "fp16", 1, NULL, &err));
    assert_non_null(strstr(err.msg, "precision 'fp16'"));
    kiln_nn_backend *be = kiln_nn_backend_open_precision("cpu", "fp32", 1, NULL, &err);
    assert_non_null(be);
    assert_int_equal(be->act, KILN_ACT_F32_NCHW);
    kiln_nn_backend_destroy(be);
    be = kiln_nn_backend_open("cpu-bf16", 1, NULL, &err);
    assert_non_null(be);
    assert_string_equal(be->ops->name, "cpu-bf16");
    kiln_nn_backend_destroy(be);
    /* auto without a usable GPU: the CPU in fp32, and the log says so. */
    if (access("/dev/nvidiactl", F_OK) == 0) {
        printf("SKIPPED: the auto fallback (an NVIDIA driver is present)\n");
        return;
    }
    char *log_text = NULL;
    size_t log_len = 0;
    FILE *mem = open_memstream(&log_text, &log_len);
    kiln_logger log;
    kiln_logger_init(&log);
    log.out = mem;
    log.min_level = KILN_LOG_INFO;
    be = kiln_nn_backend_open_precision("auto", "bf16", 1, &log, &err);
    fclose(mem);
    assert_non_null(be);
    assert_int_equal(be->act, KILN_ACT_F32_NCHW);
    assert_non_null(strstr(log_text, "fp32: bf16 is for the GPU"));
    kiln_nn_backend_destroy(be);
    free(log_text);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, kt_model_setup_bf16, kt_model_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rounding),
        T(test_act_conversions),
        T(test_bad_calls),
        T(test_plan_bytes),
        T(test_close_to_fp32),
        T(test_fused_equals_unfused),
        cmocka_unit_test(test_open_precision),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
