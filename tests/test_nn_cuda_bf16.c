/* tests/test_nn_cuda_bf16.c — every act op of the CUDA backend's bf16 mode
 * (activations bf16 NHWC, float32 master weights) against the CPU oracle
 * cpu-bf16, forward and backward, over tables of cases (helpers and the
 * pairing: test_nn_cuda_bf16.h). Inputs are float32 on the host, brought in
 * with act_from_f32 on each side; act outputs come back with act_to_f32.
 *
 * Stated tolerances. Both sides decode the same bf16 inputs, use the same
 * bf16-rounded weights, compute in float32 (sums in double where the op
 * does) and round once, with the same rounding (nn/bf16.h). So an act
 * output may differ by one bf16 ulp where the float32 values before
 * rounding straddle a rounding boundary, plus a float32 summation-order
 * term for the matrix products:
 *   conv fwd/data/filter, linear y/dx: 1 ulp + 1e-3 of the largest |value|
 *   batch norm y/dx, pooling, SE ds, SiLU/sigmoid (fwd, bwd): 1 ulp + 1e-5
 *   add, mul (dropout), scale_samples, SE forward and dx: identical bits
 *   float32 outputs: BN statistics and dgamma/dbeta 1e-4, linear dweight
 *   1e-4, dbias 1e-6 of the largest |value|
 *   act_from_f32 / act_to_f32: exactly kiln_bf16_round, and on the GPU the
 *   bytes in NHWC order. */
#include "test_nn_cuda_bf16.h"

/* --- the format -------------------------------------------------------------- */

static void test_act_format(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kiln_err err = {0};
    kt_rand rnd = {31};
    const int n = 3, c = 5, hw = 7;
    size_t count = kb_count(n, c, hw);
    float *h = kt_randf(&rnd, count, -300, 300);
    /* Specials and ties: rounding to even, NaN, infinities, signed zero,
     * subnormals, overflow past the largest bf16. */
    const float special[] = {0.0f,         -0.0f,       INFINITY,   -INFINITY,    NAN,
                             1.00390625f,  1.01171875f, 1e-40f,     -3e-39f,      3.4e38f,
                             -1.00390625f, 65535.5f,    0.1f,       -2.5e-5f,     1.0f};
    memcpy(h, special, sizeof special);
    for (int k = 0; k < 2; k++) {
        kiln_nn_backend *be = k ? p->gpu : p->cpu;
        float *a = kb_act(be, h, n, c, hw);
        float *back = kb_host(be, a, n, c, hw);
        for (size_t i = 0; i < count; i++) {
            float want = kiln_bf16_round(h[i]);
            if (memcmp(&want, &back[i], sizeof want) != 0 && !(isnan(want) && isnan(back[i])))
                fail_msg("%s: act round trip of %.9g at %zu gave %.9g, expected %.9g",
                         be->ops->name, (double)h[i], i, (double)back[i], (double)want);
        }
        /* The raw layout: NHWC bf16 on CUDA, NCHW bf16 on the oracle. */
        kiln_bf16 *raw = malloc(count * sizeof *raw);
        assert_non_null(raw);
        kt_expect_ok(be->ops->download(be, raw, a, count * sizeof *raw, &err), &err, "download");
        int nhwc = be->act == KILN_ACT_BF16_NHWC;
        for (int i = 0; i < n; i++)
            for (int ch = 0; ch < c; ch++)
                for (int q = 0; q < hw; q++) {
                    size_t src = ((size_t)i * c + ch) * hw + q;
                    size_t at = nhwc ? ((size_t)i * hw + q) * c + ch : src;
                    kiln_bf16 want = kiln_bf16_from_f32(h[src]);
                    if (raw[at] != want)
                        fail_msg("%s: element (%d, %d, %d) stored as 0x%04x at %zu, expected "
                                 "0x%04x (%s)",
                                 be->ops->name, i, ch, q, raw[at], at, want,
                                 nhwc ? "NHWC" : "NCHW");
                }
        /* An overlapping conversion is refused on CUDA (it transposes). */
        if (nhwc)
            kt_expect_fail(be->ops->act_to_f32(be, n, c, hw, a, a, &err), &err, KILN_EINVAL,
                           "overlap");
        free(raw), free(back);
        be->ops->release(be, a);
    }
    free(h);
}

/* --- convolution --------------------------------------------------------------- */

typedef struct conv_case {
    kiln_conv_desc d;
    int n, h, w;
} conv_case;

/* {in_c, out_c, k, stride, pad, groups}, n, h, w: odd shapes (channels not
 * multiples of 8, grouped, tiny images) and EfficientNet-B0's at batch 8. */
static const conv_case conv_cases[] = {
    {{3, 8, 3, 2, 1, 1}, 2, 9, 7},         {{4, 6, 5, 1, 2, 1}, 2, 6, 5},
    {{3, 5, 1, 2, 0, 1}, 2, 5, 5},         {{6, 4, 3, 1, 0, 2}, 3, 5, 6},
    {{8, 8, 3, 2, 1, 4}, 2, 7, 7},         {{70, 16, 1, 1, 0, 1}, 7, 2, 3},
    {{6, 6, 3, 1, 1, 6}, 2, 7, 5},         {{5, 5, 5, 2, 2, 5}, 3, 9, 6},
    {{9, 9, 5, 1, 2, 9}, 2, 1, 1},         {{3, 32, 3, 2, 1, 1}, 8, 64, 64},
    {{32, 32, 3, 1, 1, 32}, 8, 32, 32},    {{16, 96, 1, 1, 0, 1}, 8, 32, 32},
    {{96, 96, 3, 2, 1, 96}, 8, 32, 32},    {{144, 144, 5, 2, 2, 144}, 8, 16, 16},
    {{240, 40, 1, 1, 0, 1}, 8, 8, 8},      {{320, 1280, 1, 1, 0, 1}, 8, 2, 2},
};

static void conv_one(kt_pair *p, const conv_case *c, kt_rand *rnd)
{
    const kiln_conv_desc *d = &c->d;
    int oh = kiln_conv_out(d, c->h), ow = kiln_conv_out(d, c->w), hw = c->h * c->w;
    size_t nw = (size_t)d->out_c * (d->in_c / d->groups) * d->k * d->k;
    size_t nx = kb_count(c->n, d->in_c, hw), ny = kb_count(c->n, d->out_c, oh * ow);
    float *hx = kt_randf(rnd, nx, -1, 1), *hwt = kt_randf(rnd, nw, -1, 1);
    float *hr = kt_randf(rnd, ny, -1, 1);
    float *x[2], *wt[2], *r[2], *y[2], *gx[2], *gw[2];
    kb_both(p, hx, c->n, d->in_c, hw, x), kb_both(p, hr, c->n, d->out_c, oh * ow, r);
    kb_both(p, NULL, c->n, d->out_c, oh * ow, y), kb_both(p, NULL, c->n, d->in_c, hw, gx);
    kt_both(p, hwt, nw, wt), kt_both_nan(p, nw, gw);
    kiln_err err = {0};
    for (int b = 0; b < 2; b++) {
        kiln_nn_backend *be = b ? p->gpu : p->cpu;
        kt_expect_ok(be->ops->conv_forward(be, d, c->n, c->h, c->w, x[b], wt[b], y[b], &err),
                     &err, "conv_forward");
        kt_expect_ok(be->ops->conv_backward_data(be, d, c->n, c->h, c->w, r[b], wt[b], gx[b],
                                                 &err),
                     &err, "conv_backward_data");
        kt_expect_ok(be->ops->conv_backward_filter(be, d, c->n, c->h, c->w, x[b], r[b], gw[b],
                                                   &err),
                     &err, "conv_backward_filter");
    }
    char what[120], label[200];
    snprintf(what, sizeof what, "bf16 conv in %d out %d k %d s %d p %d g %d, n %d %dx%d",
             d->in_c, d->out_c, d->k, d->stride, d->pad, d->groups, c->n, c->h, c->w);
    snprintf(label, sizeof label, "%s: forward", what);
    kb_compare(p, label, y, c->n, d->out_c, oh * ow, 1, 1e-3);
    snprintf(label, sizeof label, "%s: backward data", what);
    kb_compare(p, label, gx, c->n, d->in_c, hw, 1, 1e-3);
    /* dweight is float32 holding bf16 values (cuDNN's bf16 filter gradient). */
    float *fc = kt_host(p->cpu, gw[0], nw), *fg = kt_host(p->gpu, gw[1], nw);
    snprintf(label, sizeof label, "%s: backward filter", what);
    kb_check(label, fg, fc, nw, 1, 1e-3);
    for (size_t i = 0; i < nw; i++)
        if (fg[i] != kiln_bf16_round(fg[i]))
            fail_msg("%s: dweight[%zu] = %.9g is not a bf16 value", what, i, (double)fg[i]);
    free(fc), free(fg);
    float **all[] = {x, wt, r, y, gx, gw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        kt_both_release(p, all[i]);
    free(hx), free(hwt), free(hr);
}

static void test_conv(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {32};
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++)
        conv_one(p, &conv_cases[i], &rnd);
    /* n = 0: a zero filter gradient on both. */
    kiln_err err = {0};
    kiln_conv_desc d = {4, 4, 3, 1, 1, 1};
    float *buf[2];
    kt_both_nan(p, 4096, buf);
    for (int b = 0; b < 2; b++) {
        kiln_nn_backend *be = b ? p->gpu : p->cpu;
        kt_expect_ok(be->ops->conv_backward_filter(be, &d, 0, 8, 8, buf[b] + 1024, buf[b] + 2048,
                                                   buf[b], &err),
                     &err, "filter of nothing");
    }
    kt_both_identical(p, "bf16 zero filter gradient", buf, 144);
    kt_both_release(p, buf);
}

/* --- batch norm -------------------------------------------------------------------- */

typedef struct bn_case {
    int n, c, hw;
    float eps, momentum;
} bn_case;

static const bn_case bn_cases[] = {
    {2, 3, 25, 1e-5f, 0.1f},   {4, 16, 1, 1e-5f, 0.1f},  {1, 8, 49, 1e-3f, 0.01f},
    {8, 32, 196, 1e-5f, 0.1f}, {3, 40, 64, 1e-5f, 0.1f}, {16, 96, 256, 1e-5f, 0.1f},
    {8, 1280, 4, 1e-5f, 0.1f},
};

static void bn_one(kt_pair *p, const bn_case *c, kt_rand *rnd)
{
    size_t nx = kb_count(c->n, c->c, c->hw), nc = (size_t)c->c;
    float *hx = kt_randf(rnd, nx, -3, 5), *hg = kt_randf(rnd, nc, 0.5, 1.5);
    float *hb = kt_randf(rnd, nc, -1, 1), *hm = kt_randf(rnd, nc, -1, 1);
    float *hv = kt_randf(rnd, nc, 0.5, 2), *hdy = kt_randf(rnd, nx, -1, 1);
    float *x[2], *dy[2], *y[2], *ye[2], *dx[2];
    float *g[2], *b[2], *rm[2], *rv[2], *sm[2], *si[2], *dg[2], *db[2];
    kb_both(p, hx, c->n, c->c, c->hw, x), kb_both(p, hdy, c->n, c->c, c->hw, dy);
    kb_both(p, NULL, c->n, c->c, c->hw, y), kb_both(p, NULL, c->n, c->c, c->hw, ye);
    kb_both(p, NULL, c->n, c->c, c->hw, dx);
    kt_both(p, hg, nc, g), kt_both(p, hb, nc, b), kt_both(p, hm, nc, rm), kt_both(p, hv, nc, rv);
    kt_both_nan(p, nc, sm), kt_both_nan(p, nc, si), kt_both_nan(p, nc, dg);
    kt_both_nan(p, nc, db);
    kiln_err err = {0};
    for (int k = 0; k < 2; k++) {
        kiln_nn_backend *be = k ? p->gpu : p->cpu;
        kt_expect_ok(be->ops->bn_forward_train(be, c->n, c->c, c->hw, x[k], g[k], b[k], rm[k],
                                               rv[k], c->momentum, c->eps, y[k], sm[k], si[k],
                                               &err),
                     &err, "bn_forward_train");
        kt_expect_ok(be->ops->bn_forward_eval(be, c->n, c->c, c->hw, x[k], g[k], b[k], rm[k],
                                              rv[k], c->eps, ye[k], &err),
                     &err, "bn_forward_eval");
        kt_expect_ok(be->ops->bn_backward(be, c->n, c->c, c->hw, x[k], dy[k], g[k], sm[k], si[k],
                                          dx[k], dg[k], db[k], &err),
                     &err, "bn_backward");
    }
    char what[120], label[200];
    snprintf(what, sizeof what, "bf16 bn n %d c %d hw %d", c->n, c->c, c->hw);
    snprintf(label, sizeof label, "%s: y", what);
    kb_compare(p, label, y, c->n, c->c, c->hw, 1, 1e-5);
    snprintf(label, sizeof label, "%s: eval y", what);
    kb_compare(p, label, ye, c->n, c->c, c->hw, 1, 1e-5);
    snprintf(label, sizeof label, "%s: dx", what);
    kb_compare(p, label, dx, c->n, c->c, c->hw, 1, 1e-5);
    struct {
        const char *name;
        float **d;
    } f32[] = {{"save_mean", sm}, {"save_invstd", si}, {"running_mean", rm},
               {"running_var", rv}, {"dgamma", dg},     {"dbeta", db}};
    for (size_t i = 0; i < sizeof f32 / sizeof f32[0]; i++) {
        snprintf(label, sizeof label, "%s: %s", what, f32[i].name);
        kt_both_compare(p, label, f32[i].d, nc, 1e-4);
        kt_both_release(p, f32[i].d);
    }
    float **acts[] = {x, dy, y, ye, dx, g, b};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        kt_both_release(p, acts[i]);
    free(hx), free(hg), free(hb), free(hm), free(hv), free(hdy);
}

static void test_bn(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {33};
    for (size_t i = 0; i < sizeof bn_cases / sizeof bn_cases[0]; i++)
        bn_one(p, &bn_cases[i], &rnd);
}

/* --- elementwise, dropout, stochastic depth ------------------------------------------ */

static void test_elementwise(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {34};
    kiln_err err = {0};
    const int counts[] = {1, 17, 1000, (1 << 20) + 3};
    for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
        int n = counts[ci];
        size_t un = (size_t)n;
        float *ha = kt_randf(&rnd, un, -12, 12), *hb = kt_randf(&rnd, un, -2, 2);
        float *hm = malloc(un * sizeof *hm);
        assert_non_null(hm);
        for (size_t i = 0; i < un; i++)
            hm[i] = i % 3 ? 1.25f : 0.0f; /* a dropout mask, p 0.2 */
        float *a[2], *b[2], *ip[2], *m[2], *y[2], *g[2], *s[2], *sg[2], *sum[2], *prod[2];
        kb_both(p, ha, 1, n, 1, a), kb_both(p, hb, 1, n, 1, b), kb_both(p, ha, 1, n, 1, ip);
        kt_both(p, hm, un, m);
        float **outs[] = {y, g, s, sg, sum, prod};
        for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
            kb_both(p, NULL, 1, n, 1, outs[i]);
        for (int k = 0; k < 2; k++) {
            kiln_nn_backend *be = k ? p->gpu : p->cpu;
            kt_expect_ok(be->ops->silu_forward(be, un, a[k], y[k], &err), &err, "silu");
            kt_expect_ok(be->ops->silu_forward(be, un, ip[k], ip[k], &err), &err, "silu in place");
            kt_expect_ok(be->ops->silu_backward(be, un, a[k], b[k], g[k], &err), &err, "silu bwd");
            kt_expect_ok(be->ops->sigmoid_forward(be, un, a[k], s[k], &err), &err, "sigmoid");
            kt_expect_ok(be->ops->sigmoid_backward(be, un, s[k], b[k], sg[k], &err), &err,
                         "sigmoid bwd");
            kt_expect_ok(be->ops->add(be, un, a[k], b[k], sum[k], &err), &err, "add");
            kt_expect_ok(be->ops->mul(be, un, a[k], m[k], prod[k], &err), &err, "mul");
        }
        kb_compare(p, "bf16 silu_forward", y, 1, n, 1, 1, 1e-5);
        kb_compare(p, "bf16 silu_forward in place", ip, 1, n, 1, 1, 1e-5);
        kb_compare(p, "bf16 silu_backward", g, 1, n, 1, 1, 1e-5);
        kb_compare(p, "bf16 sigmoid_forward", s, 1, n, 1, 1, 1e-5);
        kb_compare(p, "bf16 sigmoid_backward", sg, 1, n, 1, 1, 1e-5);
        kb_compare(p, "bf16 add", sum, 1, n, 1, 0, 0);
        kb_compare(p, "bf16 mul (dropout)", prod, 1, n, 1, 0, 0);
        float **all[] = {a, b, ip, m, y, g, s, sg, sum, prod};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            kt_both_release(p, all[i]);
        free(ha), free(hb), free(hm);
    }
    /* Stochastic depth: whole samples scaled, on [n, c, hw] as the model has them. */
    const int n = 5, c = 3, hw = 37 * 11;
    size_t per = (size_t)c * hw;
    float *hx = kt_randf(&rnd, n * per, -1, 1);
    float hs[5] = {0.0f, 1.25f, 1.25f, 0.0f, 1.25f};
    float *x[2], *s[2], *y[2];
    kb_both(p, hx, n, c, hw, x), kt_both(p, hs, 5, s), kb_both(p, NULL, n, c, hw, y);
    for (int k = 0; k < 2; k++) {
        kiln_nn_backend *be = k ? p->gpu : p->cpu;
        kt_expect_ok(be->ops->scale_samples(be, n, per, x[k], s[k], y[k], &err), &err,
                     "scale_samples");
    }
    kb_compare(p, "bf16 scale_samples", y, n, c, hw, 0, 0);
    kt_both_release(p, x), kt_both_release(p, s), kt_both_release(p, y);
    free(hx);
}

/* --- pooling, SE, linear ---------------------------------------------------------------- */

typedef struct rows_case {
    int n, c, hw;
} rows_case;

static const rows_case rows_cases[] = {{2, 3, 49}, {4, 1280, 49}, {1, 7, 1}, {3, 5, 300},
                                       {8, 96, 1024}};

static void test_pool_and_se(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {35};
    kiln_err err = {0};
    for (size_t i = 0; i < sizeof rows_cases / sizeof rows_cases[0]; i++) {
        const rows_case *c = &rows_cases[i];
        size_t nx = kb_count(c->n, c->c, c->hw), nr = kb_count(c->n, c->c, 1);
        float *hx = kt_randf(&rnd, nx, -2, 2), *hs = kt_randf(&rnd, nr, 0, 1);
        float *hdy = kt_randf(&rnd, nx, -1, 1), *hdp = kt_randf(&rnd, nr, -1, 1);
        float *x[2], *s[2], *dy[2], *dp[2], *pool[2], *dpool[2], *y[2], *dx[2], *ds[2];
        kb_both(p, hx, c->n, c->c, c->hw, x), kb_both(p, hs, c->n, c->c, 1, s);
        kb_both(p, hdy, c->n, c->c, c->hw, dy), kb_both(p, hdp, c->n, c->c, 1, dp);
        kb_both(p, NULL, c->n, c->c, 1, pool), kb_both(p, NULL, c->n, c->c, c->hw, dpool);
        kb_both(p, NULL, c->n, c->c, c->hw, y), kb_both(p, NULL, c->n, c->c, c->hw, dx);
        kb_both(p, NULL, c->n, c->c, 1, ds);
        for (int k = 0; k < 2; k++) {
            kiln_nn_backend *be = k ? p->gpu : p->cpu;
            kt_expect_ok(be->ops->avgpool_forward(be, c->n, c->c, c->hw, x[k], pool[k], &err),
                         &err, "avgpool_forward");
            kt_expect_ok(be->ops->avgpool_backward(be, c->n, c->c, c->hw, dp[k], dpool[k], &err),
                         &err, "avgpool_backward");
            kt_expect_ok(be->ops->scale_channels_forward(be, c->n, c->c, c->hw, x[k], s[k], y[k],
                                                         &err),
                         &err, "scale_channels_forward");
            kt_expect_ok(be->ops->scale_channels_backward(be, c->n, c->c, c->hw, x[k], s[k],
                                                          dy[k], dx[k], ds[k], &err),
                         &err, "scale_channels_backward");
        }
        kb_compare(p, "bf16 avgpool_forward", pool, c->n, c->c, 1, 1, 1e-5);
        kb_compare(p, "bf16 avgpool_backward", dpool, c->n, c->c, c->hw, 1, 1e-5);
        kb_compare(p, "bf16 scale_channels_forward", y, c->n, c->c, c->hw, 0, 0);
        kb_compare(p, "bf16 scale_channels_backward dx", dx, c->n, c->c, c->hw, 0, 0);
        kb_compare(p, "bf16 scale_channels_backward ds", ds, c->n, c->c, 1, 1, 1e-5);
        float **all[] = {x, s, dy, dp, pool, dpool, y, dx, ds};
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
            kt_both_release(p, all[j]);
        free(hx), free(hs), free(hdy), free(hdp);
    }
}

typedef struct linear_case {
    int n, in, out, bias, dx;
} linear_case;

static const linear_case linear_cases[] = {
    {1, 3, 1, 1, 1},  {4, 1280, 10, 1, 1}, {7, 33, 65, 0, 1}, {32, 1280, 1000, 1, 0},
    {2, 96, 4, 1, 1}, {2, 4, 96, 1, 1},    {0, 5, 3, 1, 1},
};

static void test_linear(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {36};
    kiln_err err = {0};
    for (size_t i = 0; i < sizeof linear_cases / sizeof linear_cases[0]; i++) {
        const linear_case *c = &linear_cases[i];
        size_t nw = (size_t)c->in * c->out, no = (size_t)c->out;
        float *hx = kt_randf(&rnd, kb_count(c->n, c->in, 1), -1, 1);
        float *hdy = kt_randf(&rnd, kb_count(c->n, c->out, 1), -1, 1);
        float *hw = kt_randf(&rnd, nw, -1, 1), *hb = kt_randf(&rnd, no, -1, 1);
        float *x[2], *dy[2], *y[2], *dx[2], *w[2], *b[2], *dw[2], *db[2];
        kb_both(p, hx, c->n, c->in, 1, x), kb_both(p, hdy, c->n, c->out, 1, dy);
        kb_both(p, NULL, c->n, c->out, 1, y), kb_both(p, NULL, c->n, c->in, 1, dx);
        kt_both(p, hw, nw, w), kt_both(p, hb, no, b), kt_both_nan(p, nw, dw);
        kt_both_nan(p, no, db);
        for (int k = 0; k < 2; k++) {
            kiln_nn_backend *be = k ? p->gpu : p->cpu;
            kt_expect_ok(be->ops->linear_forward(be, c->n, c->in, c->out, x[k], w[k],
                                                 c->bias ? b[k] : NULL, y[k], &err),
                         &err, "linear_forward");
            kt_expect_ok(be->ops->linear_backward(be, c->n, c->in, c->out, x[k], w[k], dy[k],
                                                  c->dx ? dx[k] : NULL, dw[k],
                                                  c->bias ? db[k] : NULL, &err),
                         &err, "linear_backward");
        }
        char what[120];
        snprintf(what, sizeof what, "bf16 linear n %d in %d out %d: y", c->n, c->in, c->out);
        if (c->n)
            kb_compare(p, what, y, c->n, c->out, 1, 1, 1e-3);
        snprintf(what, sizeof what, "bf16 linear n %d in %d out %d: dweight", c->n, c->in, c->out);
        kt_both_compare(p, what, dw, nw, 1e-4);
        if (c->dx && c->n) {
            snprintf(what, sizeof what, "bf16 linear n %d in %d out %d: dx", c->n, c->in, c->out);
            kb_compare(p, what, dx, c->n, c->in, 1, 1, 1e-3);
        }
        if (c->bias) {
            snprintf(what, sizeof what, "bf16 linear n %d in %d out %d: dbias", c->n, c->in,
                     c->out);
            kt_both_compare(p, what, db, no, 1e-6);
        }
        float **all[] = {x, dy, y, dx, w, b, dw, db};
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
            kt_both_release(p, all[j]);
        free(hx), free(hdy), free(hw), free(hb);
    }
}

/* Argument checks: the oracle's refusals, on both. */
static void test_refusals(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kiln_err err = {0};
    float *buf[2];
    kt_both_nan(p, 4096, buf);
    for (int k = 0; k < 2; k++) {
        kiln_nn_backend *be = k ? p->gpu : p->cpu;
        float *f = buf[k];
        kiln_conv_desc bad = {6, 4, 3, 1, 1, 4};
        kt_expect_fail(be->ops->conv_forward(be, &bad, 1, 8, 8, f, f + 1024, f + 2048, &err),
                       &err, KILN_EINVAL, "multiples of groups 4");
        kt_expect_fail(be->ops->bn_forward_train(be, 1, 4, 1, f, f + 8, f + 16, f + 24, f + 32,
                                                 0.1f, 1e-5f, f + 40, f + 48, f + 56, &err),
                       &err, KILN_EINVAL, "more than 1 value per channel");
        kt_expect_fail(be->ops->act_from_f32(be, -1, 2, 2, f, f + 64, &err), &err, KILN_EINVAL,
                       "act_from_f32");
    }
    kt_both_release(p, buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_act_format),  cmocka_unit_test(test_conv),
        cmocka_unit_test(test_bn),          cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_pool_and_se), cmocka_unit_test(test_linear),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, kb_pair_setup, kt_pair_teardown);
}
