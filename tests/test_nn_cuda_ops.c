/* tests/test_nn_cuda_ops.c — every op of the CUDA backend against the CPU
 * oracle (nn/backend.h), forward and backward, over a table of cases per op
 * in the style of ggml's test-backend-ops: the same random inputs go to both
 * backends and the GPU's outputs must match the CPU's within the tolerance
 * stated at each op (relative to the largest CPU value; 0 = same bits).
 * Without a usable GPU every test prints SKIPPED and is skipped.
 *
 * Stated tolerances (fp32; TF32 off, as kiln_nn_cuda_opts_default leaves
 * it unless KILN_CUDA_TF32=1, which loosens the conv/linear ones):
 *   conv fwd/data/filter 1e-4, batch norm 1e-4, linear 2e-5,
 *   activations 1e-5, pooling/SE/loss/sum of squares 1e-6,
 *   add/mul/scale/scale_samples/masks/SGD/AdamW: identical bits. */
#include "test_nn_cuda.h"

static double mm_tol(double fp32)
{
    const char *tf32 = getenv("KILN_CUDA_TF32");
    return tf32 && strcmp(tf32, "1") == 0 ? 5e-3 : fp32;
}

/* --- convolution --------------------------------------------------------- */

typedef struct conv_case {
    kiln_conv_desc d;
    int n, h, w;
} conv_case;

/* {in_c, out_c, k, stride, pad, groups}, n, h, w: the CPU tests' shapes
 * plus EfficientNet-B0's (stem, expand, depthwise 3×3/5×5 s1/s2, project,
 * head) at batch 8. */
static const conv_case conv_cases[] = {
    {{3, 8, 3, 2, 1, 1}, 2, 9, 7},         {{4, 6, 5, 1, 2, 1}, 2, 6, 5},
    {{3, 5, 1, 2, 0, 1}, 2, 5, 5},         {{4, 6, 2, 1, 1, 1}, 1, 4, 4},
    {{6, 4, 3, 1, 0, 2}, 3, 5, 6},         {{8, 8, 3, 2, 1, 4}, 2, 7, 7},
    {{8, 12, 1, 1, 0, 1}, 4, 3, 5},        {{70, 16, 1, 1, 0, 1}, 7, 2, 3},
    {{6, 6, 3, 1, 1, 6}, 2, 7, 5},         {{5, 5, 5, 2, 2, 5}, 3, 9, 6},
    {{4, 4, 3, 2, 0, 4}, 2, 8, 7},         {{9, 9, 5, 1, 2, 9}, 2, 1, 1},
    {{3, 3, 5, 2, 2, 3}, 1, 6, 35},        {{2, 2, 4, 2, 1, 2}, 2, 8, 8},
    {{3, 32, 3, 2, 1, 1}, 8, 64, 64},      {{32, 32, 3, 1, 1, 32}, 8, 32, 32},
    {{16, 96, 1, 1, 0, 1}, 8, 32, 32},     {{96, 96, 3, 2, 1, 96}, 8, 32, 32},
    {{144, 144, 5, 2, 2, 144}, 8, 16, 16}, {{240, 240, 5, 1, 2, 240}, 8, 8, 8},
    {{240, 40, 1, 1, 0, 1}, 8, 8, 8},      {{320, 1280, 1, 1, 0, 1}, 8, 2, 2},
};

static void conv_one(kt_pair *p, const conv_case *c, kt_rand *rnd)
{
    const kiln_conv_desc *d = &c->d;
    int oh = kiln_conv_out(d, c->h), ow = kiln_conv_out(d, c->w);
    size_t nx = (size_t)c->n * d->in_c * c->h * c->w;
    size_t ny = (size_t)c->n * d->out_c * oh * ow;
    size_t nw = (size_t)d->out_c * (d->in_c / d->groups) * d->k * d->k;
    char what[200];
    float *hx = kt_randf(rnd, nx, -1, 1), *hw = kt_randf(rnd, nw, -1, 1);
    float *hr = kt_randf(rnd, ny, -1, 1);
    float *x[2], *wt[2], *r[2], *y[2], *gx[2], *gw[2];
    kt_both(p, hx, nx, x), kt_both(p, hw, nw, wt), kt_both(p, hr, ny, r);
    kt_both_nan(p, ny, y), kt_both_nan(p, nx, gx), kt_both_nan(p, nw, gw);
    kiln_err err = {0};
    kiln_nn_backend *be[2] = {p->cpu, p->gpu};
    for (int b = 0; b < 2; b++) {
        kt_expect_ok(be[b]->ops->conv_forward(be[b], d, c->n, c->h, c->w, x[b], wt[b], y[b], &err),
                     &err, "conv_forward");
        kt_expect_ok(be[b]->ops->conv_backward_data(be[b], d, c->n, c->h, c->w, r[b], wt[b], gx[b],
                                                    &err),
                     &err, "conv_backward_data");
        kt_expect_ok(be[b]->ops->conv_backward_filter(be[b], d, c->n, c->h, c->w, x[b], r[b],
                                                      gw[b], &err),
                     &err, "conv_backward_filter");
    }
    snprintf(what, sizeof what, "conv in %d out %d k %d s %d p %d g %d, n %d %dx%d", d->in_c,
             d->out_c, d->k, d->stride, d->pad, d->groups, c->n, c->h, c->w);
    char label[260];
    snprintf(label, sizeof label, "%s: forward", what);
    kt_both_compare(p, label, y, ny, mm_tol(1e-4));
    snprintf(label, sizeof label, "%s: backward data", what);
    kt_both_compare(p, label, gx, nx, mm_tol(1e-4));
    snprintf(label, sizeof label, "%s: backward filter", what);
    kt_both_compare(p, label, gw, nw, mm_tol(1e-4));
    /* The cached plan runs again to the same result. */
    float *again[2] = {y[0], kt_dev_nan(p->gpu, ny)};
    kt_expect_ok(p->gpu->ops->conv_forward(p->gpu, d, c->n, c->h, c->w, x[1], wt[1], again[1],
                                           &err),
                 &err, "conv_forward again");
    snprintf(label, sizeof label, "%s: forward again", what);
    kt_both_compare(p, label, again, ny, mm_tol(1e-4));
    p->gpu->ops->release(p->gpu, again[1]);
    kt_both_release(p, x), kt_both_release(p, wt), kt_both_release(p, r);
    kt_both_release(p, y), kt_both_release(p, gx), kt_both_release(p, gw);
    free(hx), free(hw), free(hr);
}

static void test_conv(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {11};
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++)
        conv_one(p, &conv_cases[i], &rnd);
}

/* n = 0: a no-op forward, a zero filter gradient; bad shapes refused with
 * the CPU's messages. */
static void test_conv_edges(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kiln_err err = {0};
    kiln_conv_desc d = {4, 4, 3, 1, 1, 1};
    float *buf[2];
    kt_both_nan(p, 4096, buf);
    for (int b = 0; b < 2; b++) {
        kiln_nn_backend *be = b ? p->gpu : p->cpu;
        kt_expect_ok(be->ops->conv_backward_filter(be, &d, 0, 8, 8, buf[b] + 1024, buf[b] + 2048,
                                                   buf[b], &err),
                     &err, "filter of nothing");
        kiln_conv_desc bad = {6, 4, 3, 1, 1, 4};
        kt_expect_fail(be->ops->conv_forward(be, &bad, 1, 8, 8, buf[b], buf[b] + 1024,
                                             buf[b] + 2048, &err),
                       &err, KILN_EINVAL, "multiples of groups 4");
        bad = (kiln_conv_desc){4, 4, 5, 1, 0, 1};
        kt_expect_fail(be->ops->conv_backward_data(be, &bad, 1, 3, 3, buf[b], buf[b] + 1024,
                                                   buf[b] + 2048, &err),
                       &err, KILN_EINVAL, "smaller than the 5x5 kernel");
    }
    kt_both_identical(p, "zero filter gradient", buf, 144);
    float *z = kt_host(p->gpu, buf[1], 144);
    for (int i = 0; i < 144; i++)
        assert_true(z[i] == 0.0f);
    free(z);
    kt_both_release(p, buf);
}

/* --- batch norm ------------------------------------------------------------ */

typedef struct bn_case {
    int n, c, hw;
    float eps, momentum;
} bn_case;

static const bn_case bn_cases[] = {
    {2, 3, 25, 1e-5f, 0.1f},  {4, 16, 1, 1e-5f, 0.1f},  {1, 8, 49, 1e-3f, 0.01f},
    {8, 32, 196, 1e-5f, 0.1f}, {2, 5, 2, 1e-5f, 0.5f},  {3, 40, 64, 1e-5f, 0.1f},
    {16, 96, 256, 1e-5f, 0.1f}, {8, 1280, 4, 1e-5f, 0.1f},
};

static void bn_one(kt_pair *p, const bn_case *c, kt_rand *rnd)
{
    size_t nx = (size_t)c->n * c->c * c->hw, nc = (size_t)c->c;
    float *hx = kt_randf(rnd, nx, -3, 5), *hg = kt_randf(rnd, nc, 0.5, 1.5);
    float *hb = kt_randf(rnd, nc, -1, 1), *hm = kt_randf(rnd, nc, -1, 1);
    float *hv = kt_randf(rnd, nc, 0.5, 2), *hdy = kt_randf(rnd, nx, -1, 1);
    float *x[2], *g[2], *b[2], *rm[2], *rv[2], *y[2], *sm[2], *si[2], *ye[2], *dy[2], *dx[2],
        *dg[2], *db[2];
    kt_both(p, hx, nx, x), kt_both(p, hg, nc, g), kt_both(p, hb, nc, b);
    kt_both(p, hm, nc, rm), kt_both(p, hv, nc, rv), kt_both(p, hdy, nx, dy);
    kt_both_nan(p, nx, y), kt_both_nan(p, nc, sm), kt_both_nan(p, nc, si);
    kt_both_nan(p, nx, ye), kt_both_nan(p, nx, dx), kt_both_nan(p, nc, dg), kt_both_nan(p, nc, db);
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
    snprintf(what, sizeof what, "bn n %d c %d hw %d eps %g m %g", c->n, c->c, c->hw,
             (double)c->eps, (double)c->momentum);
    struct {
        const char *name;
        float **d;
        size_t n;
    } outs[] = {{"y", y, nx},           {"save_mean", sm, nc},   {"save_invstd", si, nc},
                {"running_mean", rm, nc}, {"running_var", rv, nc}, {"eval y", ye, nx},
                {"dx", dx, nx},         {"dgamma", dg, nc},      {"dbeta", db, nc}};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        snprintf(label, sizeof label, "%s: %s", what, outs[i].name);
        kt_both_compare(p, label, outs[i].d, outs[i].n, 1e-4);
        kt_both_release(p, outs[i].d);
    }
    kt_both_release(p, x), kt_both_release(p, g), kt_both_release(p, b), kt_both_release(p, dy);
    free(hx), free(hg), free(hb), free(hm), free(hv), free(hdy);
}

static void test_bn(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {12};
    for (size_t i = 0; i < sizeof bn_cases / sizeof bn_cases[0]; i++)
        bn_one(p, &bn_cases[i], &rnd);
    /* One value per channel cannot train, on either backend. */
    float *buf[2];
    kiln_err err = {0};
    kt_both_nan(p, 64, buf);
    for (int k = 0; k < 2; k++) {
        kiln_nn_backend *be = k ? p->gpu : p->cpu;
        float *f = buf[k];
        kt_expect_fail(be->ops->bn_forward_train(be, 1, 4, 1, f, f + 8, f + 16, f + 24, f + 32,
                                                 0.1f, 1e-5f, f + 40, f + 48, f + 56, &err),
                       &err, KILN_EINVAL, "more than 1 value per channel");
    }
    kt_both_release(p, buf);
}

/* --- elementwise, masks, sums ------------------------------------------------ */

static const size_t ew_counts[] = {1, 17, 1000, (1u << 20) + 3};

static void test_elementwise(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {13};
    kiln_err err = {0};
    for (size_t ci = 0; ci < sizeof ew_counts / sizeof ew_counts[0]; ci++) {
        size_t n = ew_counts[ci];
        float *ha = kt_randf(&rnd, n, -12, 12), *hb = kt_randf(&rnd, n, -2, 2);
        float *a[2], *b[2], *y[2], *s[2], *g[2], *ip[2], *sum[2], *prod[2], *sc[2];
        kt_both(p, ha, n, a), kt_both(p, hb, n, b), kt_both(p, ha, n, ip), kt_both(p, ha, n, sc);
        kt_both_nan(p, n, y), kt_both_nan(p, n, s), kt_both_nan(p, n, g);
        kt_both_nan(p, n, sum), kt_both_nan(p, n, prod);
        float *sg[2];
        kt_both_nan(p, n, sg);
        for (int k = 0; k < 2; k++) {
            kiln_nn_backend *be = k ? p->gpu : p->cpu;
            kt_expect_ok(be->ops->silu_forward(be, n, a[k], y[k], &err), &err, "silu");
            kt_expect_ok(be->ops->silu_forward(be, n, ip[k], ip[k], &err), &err, "silu in place");
            kt_expect_ok(be->ops->silu_backward(be, n, a[k], b[k], g[k], &err), &err, "silu bwd");
            kt_expect_ok(be->ops->sigmoid_forward(be, n, a[k], s[k], &err), &err, "sigmoid");
            kt_expect_ok(be->ops->sigmoid_backward(be, n, s[k], b[k], sg[k], &err), &err,
                         "sigmoid bwd");
            kt_expect_ok(be->ops->add(be, n, a[k], b[k], sum[k], &err), &err, "add");
            kt_expect_ok(be->ops->mul(be, n, a[k], b[k], prod[k], &err), &err, "mul");
            kt_expect_ok(be->ops->scale(be, n, -0.375f, sc[k], &err), &err, "scale");
        }
        kt_both_compare(p, "silu_forward", y, n, 1e-5);
        kt_both_compare(p, "silu_forward in place", ip, n, 1e-5);
        kt_both_compare(p, "silu_backward", g, n, 1e-5);
        kt_both_compare(p, "sigmoid_forward", s, n, 1e-5);
        kt_both_compare(p, "sigmoid_backward", sg, n, 1e-5);
        kt_both_identical(p, "add", sum, n);
        kt_both_identical(p, "mul", prod, n);
        kt_both_identical(p, "scale", sc, n);
        float **all[] = {a, b, y, s, g, ip, sum, prod, sc, sg};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            kt_both_release(p, all[i]);
        free(ha), free(hb);
    }
}

static void test_masks_and_samples(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kiln_err err = {0};
    const float probs[] = {0.0f, 0.2f, 0.5f, 0.9f};
    const size_t counts[] = {1, 1000, 100003};
    for (size_t pi = 0; pi < 4; pi++)
        for (size_t ci = 0; ci < 3; ci++) {
            float *m[2];
            kt_both_nan(p, counts[ci], m);
            for (int k = 0; k < 2; k++) {
                kiln_nn_backend *be = k ? p->gpu : p->cpu;
                kt_expect_ok(be->ops->mask(be, counts[ci], probs[pi], 0x1234u + pi, 77u * ci, m[k],
                                           &err),
                             &err, "mask");
            }
            kt_both_identical(p, "mask", m, counts[ci]);
            kt_both_release(p, m);
        }
    for (int k = 0; k < 2; k++) {
        kiln_nn_backend *be = k ? p->gpu : p->cpu;
        float dummy = 0;
        kt_expect_fail(be->ops->mask(be, 4, 1.0f, 1, 0, &dummy, &err), &err, KILN_EINVAL,
                       "not in [0, 1)");
    }
    kt_rand rnd = {14};
    int n = 5;
    size_t per = 3 * 37 * 11;
    float *hx = kt_randf(&rnd, (size_t)n * per, -1, 1);
    float hs[5] = {0.0f, 1.25f, 1.25f, 0.0f, 1.25f};
    float *x[2], *s[2], *y[2];
    kt_both(p, hx, (size_t)n * per, x), kt_both(p, hs, 5, s), kt_both_nan(p, (size_t)n * per, y);
    for (int k = 0; k < 2; k++) {
        kiln_nn_backend *be = k ? p->gpu : p->cpu;
        kt_expect_ok(be->ops->scale_samples(be, n, per, x[k], s[k], y[k], &err), &err,
                     "scale_samples");
    }
    kt_both_identical(p, "scale_samples", y, (size_t)n * per);
    kt_both_release(p, x), kt_both_release(p, s), kt_both_release(p, y);
    free(hx);
}

static void test_sum_squares(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {15};
    kiln_err err = {0};
    const size_t counts[] = {0, 5, 65536, 65537 * 3 + 1, 5288548};
    for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
        size_t n = counts[ci];
        float *h = kt_randf(&rnd, n, -3, 3);
        float *x[2];
        kt_both(p, h, n, x);
        double got[2] = {-1, -1};
        for (int k = 0; k < 2; k++) {
            kiln_nn_backend *be = k ? p->gpu : p->cpu;
            kt_expect_ok(be->ops->sum_squares(be, n, x[k], &got[k], &err), &err, "sum_squares");
        }
        float g = (float)got[1];
        kt_check_close("sum_squares", &g, &got[0], 1, 1e-6);
        if (n == 0)
            assert_true(got[1] == 0.0);
        kt_both_release(p, x);
        free(h);
    }
}

/* --- pooling, SE, linear ---------------------------------------------------- */

typedef struct rows_case {
    int n, c, hw;
} rows_case;

static const rows_case rows_cases[] = {{2, 3, 49}, {4, 1280, 49}, {1, 7, 1}, {3, 5, 300},
                                       {8, 96, 1024}};

static void test_pool_and_se(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {16};
    kiln_err err = {0};
    for (size_t i = 0; i < sizeof rows_cases / sizeof rows_cases[0]; i++) {
        const rows_case *c = &rows_cases[i];
        size_t nx = (size_t)c->n * c->c * c->hw, nr = (size_t)c->n * c->c;
        float *hx = kt_randf(&rnd, nx, -2, 2), *hs = kt_randf(&rnd, nr, 0, 1);
        float *hdy = kt_randf(&rnd, nx, -1, 1), *hdp = kt_randf(&rnd, nr, -1, 1);
        float *x[2], *s[2], *dy[2], *dp[2], *pool[2], *dpool[2], *y[2], *dx[2], *ds[2];
        kt_both(p, hx, nx, x), kt_both(p, hs, nr, s), kt_both(p, hdy, nx, dy);
        kt_both(p, hdp, nr, dp);
        kt_both_nan(p, nr, pool), kt_both_nan(p, nx, dpool), kt_both_nan(p, nx, y);
        kt_both_nan(p, nx, dx), kt_both_nan(p, nr, ds);
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
        kt_both_compare(p, "avgpool_forward", pool, nr, 1e-6);
        kt_both_compare(p, "avgpool_backward", dpool, nx, 1e-6);
        kt_both_identical(p, "scale_channels_forward", y, nx);
        kt_both_identical(p, "scale_channels_backward dx", dx, nx);
        kt_both_compare(p, "scale_channels_backward ds", ds, nr, 1e-6);
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
    {1, 3, 1, 1, 1},   {4, 1280, 10, 1, 1}, {7, 33, 65, 0, 1}, {32, 1280, 1000, 1, 0},
    {2, 96, 4, 1, 1},  {2, 4, 96, 1, 1},    {0, 5, 3, 1, 1},
};

static void test_linear(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {17};
    kiln_err err = {0};
    for (size_t i = 0; i < sizeof linear_cases / sizeof linear_cases[0]; i++) {
        const linear_case *c = &linear_cases[i];
        size_t nx = (size_t)c->n * c->in, ny = (size_t)c->n * c->out, nw = (size_t)c->in * c->out;
        float *hx = kt_randf(&rnd, nx, -1, 1), *hw = kt_randf(&rnd, nw, -1, 1);
        float *hb = kt_randf(&rnd, (size_t)c->out, -1, 1), *hdy = kt_randf(&rnd, ny, -1, 1);
        float *x[2], *w[2], *b[2], *dy[2], *y[2], *dx[2], *dw[2], *db[2];
        kt_both(p, hx, nx, x), kt_both(p, hw, nw, w), kt_both(p, hb, (size_t)c->out, b);
        kt_both(p, hdy, ny, dy);
        kt_both_nan(p, ny, y), kt_both_nan(p, nx, dx), kt_both_nan(p, nw, dw);
        kt_both_nan(p, (size_t)c->out, db);
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
        snprintf(what, sizeof what, "linear n %d in %d out %d: y", c->n, c->in, c->out);
        kt_both_compare(p, what, y, ny, mm_tol(2e-5));
        snprintf(what, sizeof what, "linear n %d in %d out %d: dweight", c->n, c->in, c->out);
        kt_both_compare(p, what, dw, nw, mm_tol(2e-5));
        if (c->dx) {
            snprintf(what, sizeof what, "linear n %d in %d out %d: dx", c->n, c->in, c->out);
            kt_both_compare(p, what, dx, nx, mm_tol(2e-5));
        }
        if (c->bias) {
            snprintf(what, sizeof what, "linear n %d in %d out %d: dbias", c->n, c->in, c->out);
            kt_both_compare(p, what, db, (size_t)c->out, 1e-6);
        }
        float **all[] = {x, w, b, dy, y, dx, dw, db};
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
            kt_both_release(p, all[j]);
        free(hx), free(hw), free(hb), free(hdy);
    }
}

/* --- loss -------------------------------------------------------------------- */

typedef struct xent_case {
    int n, classes;
    float ls;
} xent_case;

static const xent_case xent_cases[] = {{1, 1, 0.0f},     {4, 10, 0.1f}, {32, 1000, 0.0f},
                                       {3, 7, 1.0f},     {128, 2, 0.1f}, {5, 4099, 0.2f}};

static void test_xent(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {18};
    kiln_err err = {0};
    for (size_t i = 0; i < sizeof xent_cases / sizeof xent_cases[0]; i++) {
        const xent_case *c = &xent_cases[i];
        size_t nl = (size_t)c->n * c->classes;
        float *hl = kt_randf(&rnd, nl, -8, 8);
        int32_t *lab = malloc((size_t)c->n * sizeof *lab);
        for (int s = 0; s < c->n; s++)
            lab[s] = (int32_t)((s * 7919 + 3) % c->classes);
        float *l[2], *pr[2], *dl[2], *lb[2];
        kt_both(p, hl, nl, l), kt_both_nan(p, nl, pr), kt_both_nan(p, nl, dl);
        kt_both(p, (const float *)(const void *)lab, (size_t)c->n, lb);
        double loss[2];
        for (int k = 0; k < 2; k++) {
            kiln_nn_backend *be = k ? p->gpu : p->cpu;
            kt_expect_ok(be->ops->xent_forward_backward(be, c->n, c->classes, l[k],
                                                        (const int32_t *)(void *)lb[k], c->ls,
                                                        pr[k], dl[k], &loss[k], &err),
                         &err, "xent_forward_backward");
        }
        float g = (float)loss[1];
        kt_check_close("xent loss", &g, &loss[0], 1, 1e-6);
        kt_both_compare(p, "xent probs", pr, nl, 1e-6);
        kt_both_compare(p, "xent dlogits", dl, nl, 1e-6);
        /* A bad label: the same refusal on both. */
        lab[c->n - 1] = c->classes;
        for (int k = 0; k < 2; k++) {
            kiln_nn_backend *be = k ? p->gpu : p->cpu;
            kt_expect_ok(be->ops->upload(be, lb[k], lab, (size_t)c->n * sizeof *lab, &err), &err,
                         "upload labels");
            kt_expect_fail(be->ops->xent_forward_backward(be, c->n, c->classes, l[k],
                                                          (const int32_t *)(void *)lb[k], c->ls,
                                                          pr[k], dl[k], &loss[k], &err),
                           &err, KILN_EINVAL, "is not in [0,");
        }
        kt_both_release(p, l), kt_both_release(p, pr), kt_both_release(p, dl);
        kt_both_release(p, lb);
        free(hl), free(lab);
    }
}

/* --- optimizers ---------------------------------------------------------------- */

static void test_optimizers(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kt_rand rnd = {19};
    kiln_err err = {0};
    const size_t n = 100003;
    struct {
        float lr, momentum, wd;
        int nesterov;
    } sgd[] = {{0.1f, 0.0f, 0.0f, 0}, {0.05f, 0.9f, 1e-4f, 0}, {0.01f, 0.9f, 5e-4f, 1}};
    for (size_t i = 0; i < 3; i++) {
        float *hp = kt_randf(&rnd, n, -1, 1), *zero = calloc(n, sizeof(float));
        float *prm[2], *grd[2], *buf[2];
        kt_both(p, hp, n, prm), kt_both(p, zero, n, buf);
        for (int step = 0; step < 3; step++) {
            float *hg = kt_randf(&rnd, n, -1, 1);
            kt_both(p, hg, n, grd);
            for (int k = 0; k < 2; k++) {
                kiln_nn_backend *be = k ? p->gpu : p->cpu;
                kt_expect_ok(be->ops->sgd_step(be, n, prm[k], grd[k], buf[k], sgd[i].lr,
                                               sgd[i].momentum, sgd[i].nesterov, sgd[i].wd, &err),
                             &err, "sgd_step");
            }
            kt_both_release(p, grd);
            free(hg);
        }
        kt_both_identical(p, "sgd params", prm, n);
        kt_both_identical(p, "sgd momentum", buf, n);
        kt_both_release(p, prm), kt_both_release(p, buf);
        free(hp), free(zero);
    }
    float wds[] = {0.0f, 0.01f, 0.05f};
    for (size_t i = 0; i < 3; i++) {
        float *hp = kt_randf(&rnd, n, -1, 1), *zero = calloc(n, sizeof(float));
        float *prm[2], *grd[2], *m[2], *v[2];
        kt_both(p, hp, n, prm), kt_both(p, zero, n, m), kt_both(p, zero, n, v);
        for (int64_t step = 1; step <= 3; step++) {
            float *hg = kt_randf(&rnd, n, -1, 1);
            kt_both(p, hg, n, grd);
            for (int k = 0; k < 2; k++) {
                kiln_nn_backend *be = k ? p->gpu : p->cpu;
                kt_expect_ok(be->ops->adamw_step(be, n, prm[k], grd[k], m[k], v[k], 1e-3f, 0.9f,
                                                 0.999f, 1e-8f, wds[i], step, &err),
                             &err, "adamw_step");
            }
            kt_both_release(p, grd);
            free(hg);
        }
        kt_both_identical(p, "adamw params", prm, n);
        kt_both_identical(p, "adamw m", m, n);
        kt_both_identical(p, "adamw v", v, n);
        kt_both_release(p, prm), kt_both_release(p, m), kt_both_release(p, v);
        free(hp), free(zero);
    }
}

/* --- memory ops ------------------------------------------------------------------ */

static void test_memory(void **state)
{
    kt_pair *p = KT_NEED_GPU(state);
    kiln_err err = {0};
    kt_rand rnd = {20};
    size_t n = 4099;
    float *h = kt_randf(&rnd, n, -1, 1);
    float *d[2];
    kt_both(p, h, n, d);
    for (int k = 0; k < 2; k++) {
        kiln_nn_backend *be = k ? p->gpu : p->cpu;
        /* memmove semantics in both directions of overlap */
        kt_expect_ok(be->ops->copy(be, d[k] + 10, d[k], 3000, &err), &err, "copy up");
        kt_expect_ok(be->ops->copy(be, d[k], d[k] + 7, 2000, &err), &err, "copy down");
        kt_expect_ok(be->ops->fill(be, d[k] + 4000, 2.5f, 99, &err), &err, "fill");
        kt_expect_ok(be->ops->sync(be, &err), &err, "sync");
    }
    kt_both_identical(p, "copy/fill", d, n);
    kt_both_release(p, d);
    free(h);
    if (strcmp(p->gpu->ops->name, "cuda") != 0)
        return; /* the stand-in CPU (harness check) words its ENOMEM otherwise */
    /* An impossible allocation: ENOMEM with the batch-size advice. */
    void *huge = p->gpu->ops->alloc(p->gpu, (size_t)1 << 50, &err);
    assert_null(huge);
    assert_int_equal(err.code, KILN_ENOMEM);
    assert_non_null(strstr(err.msg, "lower the batch size"));
    /* The backend still works afterwards. */
    float *after = kt_dev(p->gpu, NULL, 16);
    kt_expect_ok(p->gpu->ops->fill(p->gpu, after, 1.0f, 16, &err), &err, "fill after OOM");
    kt_expect_ok(p->gpu->ops->sync(p->gpu, &err), &err, "sync after OOM");
    p->gpu->ops->release(p->gpu, after);
}

int main(void)
{
    /* These compare fp32 with the fp32 CPU: KILN_CUDA_BF16=1 from the
     * environment would give the default options bf16 (test_nn_cuda_bf16*). */
    unsetenv("KILN_CUDA_BF16");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv),         cmocka_unit_test(test_conv_edges),
        cmocka_unit_test(test_bn),           cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_masks_and_samples), cmocka_unit_test(test_sum_squares),
        cmocka_unit_test(test_pool_and_se),  cmocka_unit_test(test_linear),
        cmocka_unit_test(test_xent),         cmocka_unit_test(test_optimizers),
        cmocka_unit_test(test_memory),
    };
    return cmocka_run_group_tests(tests, kt_pair_setup, kt_pair_teardown);
}
