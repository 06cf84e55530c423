/* tests/test_nn_ops_conv.c — the CPU backend's Conv2d (dense, grouped,
 * depthwise on small and wide planes, 1×1) against a double-precision
 * reference loop, and its backward passes (data and filter) against
 * central differences of that reference, over a table of shapes that reaches every code path: odd
 * sizes, stride 1 and 2, k = 1..5, padding, groups, few and many pixels
 * per sample, one thread and three. */
#include "test_nn_ops.h"

typedef struct conv_case {
    kiln_conv_desc d;
    int n, h, w;
} conv_case;

/* {in_c, out_c, k, stride, pad, groups}, n, h, w */
static const conv_case cases[] = {
    /* dense (im2col) */
    {{3, 8, 3, 2, 1, 1}, 2, 9, 7},
    {{4, 6, 5, 1, 2, 1}, 2, 6, 5},
    {{3, 5, 1, 2, 0, 1}, 2, 5, 5},
    {{4, 6, 2, 1, 1, 1}, 1, 4, 4},
    /* grouped */
    {{6, 4, 3, 1, 0, 2}, 3, 5, 6},
    {{8, 8, 3, 2, 1, 4}, 2, 7, 7},
    /* 1×1: samples gathered side by side, column and row blocks */
    {{8, 12, 1, 1, 0, 1}, 4, 3, 5},
    {{24, 8, 1, 1, 0, 1}, 5, 4, 4},
    {{16, 70, 1, 1, 0, 1}, 1, 16, 16},
    {{12, 96, 1, 1, 0, 1}, 2, 17, 19},
    {{70, 16, 1, 1, 0, 1}, 7, 2, 3},
    /* depthwise */
    {{6, 6, 3, 1, 1, 6}, 2, 7, 5},
    {{6, 6, 3, 2, 1, 6}, 2, 7, 8},
    {{5, 5, 5, 1, 2, 5}, 2, 6, 9},
    {{5, 5, 5, 2, 2, 5}, 3, 9, 6},
    {{4, 4, 3, 2, 0, 4}, 2, 8, 7},
    {{3, 3, 1, 2, 0, 3}, 2, 5, 5},
    {{4, 4, 3, 1, 2, 4}, 1, 3, 3},
    {{2, 2, 4, 2, 1, 2}, 2, 8, 8},
    {{32, 32, 3, 1, 1, 32}, 2, 16, 16},
    {{16, 16, 5, 2, 2, 16}, 2, 15, 17},
    {{8, 8, 3, 1, 1, 8}, 3, 2, 2},
    {{20, 20, 3, 2, 1, 20}, 2, 7, 7},
    {{9, 9, 5, 1, 2, 9}, 2, 1, 1},
    /* depthwise on rows of 16 and more (the flat path) */
    {{4, 4, 3, 2, 1, 4}, 2, 9, 33},
    {{3, 3, 5, 1, 2, 3}, 2, 5, 20},
    {{3, 3, 5, 2, 2, 3}, 1, 6, 35},
    {{2, 2, 3, 1, 0, 2}, 2, 4, 18},
    {{2, 2, 1, 2, 0, 2}, 2, 3, 33},
};

static void conv_ref(const conv_case *c, const double *x, const double *wt, double *y)
{
    const kiln_conv_desc *d = &c->d;
    int oh = kiln_conv_out(d, c->h), ow = kiln_conv_out(d, c->w);
    int cg = d->in_c / d->groups, og = d->out_c / d->groups;
    for (int s = 0; s < c->n; s++)
        for (int o = 0; o < d->out_c; o++) {
            int g = o / og;
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double acc = 0;
                    for (int ci = 0; ci < cg; ci++)
                        for (int ky = 0; ky < d->k; ky++)
                            for (int kx = 0; kx < d->k; kx++) {
                                int iy = oy * d->stride - d->pad + ky;
                                int ix = ox * d->stride - d->pad + kx;
                                if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w)
                                    continue;
                                int cin = g * cg + ci;
                                acc += wt[((o * cg + ci) * d->k + ky) * d->k + kx] *
                                       x[((size_t)(s * d->in_c + cin) * c->h + iy) * c->w + ix];
                            }
                    y[((size_t)(s * d->out_c + o) * oh + oy) * ow + ox] = acc;
                }
        }
}

typedef struct conv_fd {
    const conv_case *c;
    double *x, *wt, *r, *y;
    size_t ny;
    int wrt_weight;
} conv_fd;

static double conv_projection(void *ctx, const double *v)
{
    conv_fd *f = ctx;
    conv_ref(f->c, f->wrt_weight ? f->x : v, f->wrt_weight ? v : f->wt, f->y);
    return kt_dot(f->r, f->y, f->ny);
}

static void run_case(const conv_case *c, int threads, kt_rand *rnd)
{
    const kiln_conv_desc *d = &c->d;
    int oh = kiln_conv_out(d, c->h), ow = kiln_conv_out(d, c->w);
    size_t nx = (size_t)c->n * d->in_c * c->h * c->w;
    size_t ny = (size_t)c->n * d->out_c * oh * ow;
    size_t nw = (size_t)d->out_c * (d->in_c / d->groups) * d->k * d->k;
    char what[160];
    snprintf(what, sizeof what, "conv in %d out %d k %d s %d p %d g %d, n %d %dx%d, %d threads",
             d->in_c, d->out_c, d->k, d->stride, d->pad, d->groups, c->n, c->h, c->w, threads);

    kiln_nn_backend *be = kt_cpu(threads);
    kiln_err err = {0};
    float *x = kt_randf(rnd, nx, -1, 1), *wt = kt_randf(rnd, nw, -1, 1);
    float *r = kt_randf(rnd, ny, -1, 1);
    conv_fd f = {.c = c,
                 .x = kt_to_double(x, nx),
                 .wt = kt_to_double(wt, nw),
                 .r = kt_to_double(r, ny),
                 .y = malloc(ny * sizeof(double)),
                 .ny = ny};
    assert_non_null(f.y);
    float *dx_ = kt_dev(be, x, nx), *dw_ = kt_dev(be, wt, nw), *dr = kt_dev(be, r, ny);
    float *dy_ = kt_dev_nan(be, ny), *dgx = kt_dev_nan(be, nx), *dgw = kt_dev_nan(be, nw);

    assert_int_equal(be->ops->conv_forward(be, d, c->n, c->h, c->w, dx_, dw_, dy_, &err), 0);
    float *y = kt_host(be, dy_, ny);
    conv_ref(c, f.x, f.wt, f.y);
    char label[200];
    snprintf(label, sizeof label, "%s: forward", what);
    kt_check_close(label, y, f.y, ny, 1e-5);

    assert_int_equal(be->ops->conv_backward_data(be, d, c->n, c->h, c->w, dr, dw_, dgx, &err), 0);
    float *gx = kt_host(be, dgx, nx);
    snprintf(label, sizeof label, "%s: backward data", what);
    kt_check_fd(label, conv_projection, &f, f.x, nx, gx, 50, 1e-4);

    assert_int_equal(be->ops->conv_backward_filter(be, d, c->n, c->h, c->w, dx_, dr, dgw, &err), 0);
    float *gw = kt_host(be, dgw, nw);
    f.wrt_weight = 1;
    snprintf(label, sizeof label, "%s: backward filter", what);
    kt_check_fd(label, conv_projection, &f, f.wt, nw, gw, 50, 1e-4);

    /* Scratch reuse: the same call again gives the same bits. */
    float *again = kt_dev_nan(be, ny);
    assert_int_equal(be->ops->conv_forward(be, d, c->n, c->h, c->w, dx_, dw_, again, &err), 0);
    float *y2 = kt_host(be, again, ny);
    assert_memory_equal(y, y2, ny * sizeof *y);

    float *devs[] = {dx_, dw_, dr, dy_, dgx, dgw, again};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++)
        be->ops->release(be, devs[i]);
    free(x), free(wt), free(r), free(y), free(y2), free(gx), free(gw);
    free(f.x), free(f.wt), free(f.r), free(f.y);
    kiln_nn_backend_destroy(be);
}

static void test_conv_one_thread(void **state)
{
    (void)state;
    kt_rand rnd = {1};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], 1, &rnd);
}

static void test_conv_three_threads(void **state)
{
    (void)state;
    kt_rand rnd = {2};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], 3, &rnd);
}

/* EfficientNet-sized depthwise and 1×1 layers, forward only, on a sample
 * of outputs (the reference is slow): the vector main loops at full
 * width. */
static void test_conv_b0_shapes(void **state)
{
    (void)state;
    static const conv_case big[] = {
        {{96, 96, 3, 2, 1, 96}, 2, 32, 32},
        {{144, 144, 5, 1, 2, 144}, 2, 16, 16},
        {{96, 24, 1, 1, 0, 1}, 4, 16, 16},
    };
    kt_rand rnd = {3};
    kiln_nn_backend *be = kt_cpu(2);
    kiln_err err = {0};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        const conv_case *c = &big[i];
        int oh = kiln_conv_out(&c->d, c->h), ow = kiln_conv_out(&c->d, c->w);
        size_t nx = (size_t)c->n * c->d.in_c * c->h * c->w;
        size_t ny = (size_t)c->n * c->d.out_c * oh * ow;
        size_t nw = (size_t)c->d.out_c * (c->d.in_c / c->d.groups) * c->d.k * c->d.k;
        float *x = kt_randf(&rnd, nx, -2, 2), *wt = kt_randf(&rnd, nw, -1, 1);
        float *dx_ = kt_dev(be, x, nx), *dw_ = kt_dev(be, wt, nw), *dy_ = kt_dev_nan(be, ny);
        assert_int_equal(be->ops->conv_forward(be, &c->d, c->n, c->h, c->w, dx_, dw_, dy_, &err),
                         0);
        float *y = kt_host(be, dy_, ny);
        double *xd = kt_to_double(x, nx), *wd = kt_to_double(wt, nw);
        double *yd = malloc(ny * sizeof *yd);
        conv_ref(c, xd, wd, yd);
        kt_check_close("B0-sized conv forward", y, yd, ny, 1e-5);
        be->ops->release(be, dx_), be->ops->release(be, dw_), be->ops->release(be, dy_);
        free(x), free(wt), free(y), free(xd), free(wd), free(yd);
    }
    kiln_nn_backend_destroy(be);
}

static void test_conv_bad_arguments(void **state)
{
    (void)state;
    kiln_nn_backend *be = kt_cpu(2);
    kiln_err err = {0};
    float *buf = kt_dev(be, NULL, 4096);
    kiln_conv_desc d = {6, 4, 3, 1, 1, 4};
    assert_int_equal(be->ops->conv_forward(be, &d, 1, 8, 8, buf, buf + 1024, buf + 2048, &err),
                     KILN_EINVAL);
    assert_non_null(strstr(err.msg, "multiples of groups 4"));
    d = (kiln_conv_desc){4, 4, 5, 1, 0, 1};
    assert_int_equal(
        be->ops->conv_backward_data(be, &d, 1, 3, 3, buf, buf + 1024, buf + 2048, &err),
        KILN_EINVAL);
    assert_non_null(strstr(err.msg, "smaller than the 5x5 kernel"));
    d = (kiln_conv_desc){4, 4, 3, 0, 1, 1};
    assert_int_equal(be->ops->conv_forward(be, &d, 1, 8, 8, buf, buf + 1024, buf + 2048, &err),
                     KILN_EINVAL);
    assert_non_null(strstr(err.msg, "stride 0"));
    d = (kiln_conv_desc){4, 4, 3, 1, 1, 1};
    assert_int_equal(be->ops->conv_backward_filter(be, &d, 1, 8, 8, buf, NULL, buf, &err),
                     KILN_EINVAL);
    assert_non_null(strstr(err.msg, "NULL"));
    assert_int_equal(be->ops->conv_forward(be, NULL, 1, 8, 8, buf, buf, buf, &err), KILN_EINVAL);
    /* n = 0 is a no-op, and the filter gradient of nothing is zero. */
    buf[0] = 5;
    assert_int_equal(
        be->ops->conv_backward_filter(be, &d, 0, 8, 8, buf + 1024, buf + 2048, buf, &err), KILN_OK);
    assert_true(buf[0] == 0.0f && buf[143] == 0.0f);
    be->ops->release(be, buf);
    kiln_nn_backend_destroy(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_one_thread),
        cmocka_unit_test(test_conv_three_threads),
        cmocka_unit_test(test_conv_b0_shapes),
        cmocka_unit_test(test_conv_bad_arguments),
    };
    int failed = 0;
    for (int i = 0; kt_isa(i); i++)
        failed += cmocka_run_group_tests(tests, NULL, NULL);
    return failed;
}
