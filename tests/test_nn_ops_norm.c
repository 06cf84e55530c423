/* tests/test_nn_ops_norm.c — the CPU backend's BatchNorm2d: training and
 * eval forward against a double-precision reference (including inputs far
 * from zero mean), the running-statistics update against PyTorch's formula
 * (unbiased variance, momentum), and the backward pass for x, gamma and
 * beta against central differences. */
#include "test_nn_ops.h"

typedef struct bn_case {
    int n, c, hw;
    double offset; /* added to every input, to test the variance's accuracy */
} bn_case;

static const bn_case cases[] = {
    {3, 5, 7, 0},  {2, 4, 1, 0},  {4, 3, 37, 0}, {2, 3, 19, 50},
    {1, 2, 9, -3}, {5, 6, 64, 0}, {2, 70, 4, 1}, {3, 4, 101, -20},
};

static const float EPS = 1e-3f, MOMENTUM = 0.1f;

/* y = (x - mean) / sqrt(var + eps) * gamma + beta with the batch's biased
 * variance; mean and var [c] are written when not NULL. */
static void bn_ref(const bn_case *b, const double *x, const double *gamma, const double *beta,
                   double *y, double *mean_out, double *var_out)
{
    size_t hw = (size_t)b->hw, cnt = (size_t)b->n * hw;
    for (int ch = 0; ch < b->c; ch++) {
        double mean = 0, var = 0;
        for (int s = 0; s < b->n; s++)
            for (size_t i = 0; i < hw; i++)
                mean += x[((size_t)s * b->c + ch) * hw + i];
        mean /= (double)cnt;
        for (int s = 0; s < b->n; s++)
            for (size_t i = 0; i < hw; i++) {
                double d = x[((size_t)s * b->c + ch) * hw + i] - mean;
                var += d * d;
            }
        var /= (double)cnt;
        for (int s = 0; s < b->n; s++)
            for (size_t i = 0; i < hw; i++) {
                size_t o = ((size_t)s * b->c + ch) * hw + i;
                y[o] = (x[o] - mean) / sqrt(var + EPS) * gamma[ch] + beta[ch];
            }
        if (mean_out)
            mean_out[ch] = mean;
        if (var_out)
            var_out[ch] = var;
    }
}

typedef struct bn_fd {
    const bn_case *b;
    double *x, *gamma, *beta, *r, *y;
    size_t ny;
    int wrt; /* 0 x, 1 gamma, 2 beta */
} bn_fd;

static double bn_projection(void *ctx, const double *v)
{
    bn_fd *f = ctx;
    bn_ref(f->b, f->wrt == 0 ? v : f->x, f->wrt == 1 ? v : f->gamma, f->wrt == 2 ? v : f->beta,
           f->y, NULL, NULL);
    return kt_dot(f->r, f->y, f->ny);
}

static void run_case(const bn_case *b, int threads, kt_rand *rnd)
{
    size_t nx = (size_t)b->n * b->c * b->hw, nc = (size_t)b->c;
    char what[120], label[160];
    snprintf(what, sizeof what, "bn n %d c %d hw %d offset %g, %d threads", b->n, b->c, b->hw,
             b->offset, threads);
    kiln_nn_backend *be = kt_cpu(threads);
    kiln_err err = {0};
    float *x = kt_randf(rnd, nx, -2, 2), *gamma = kt_randf(rnd, nc, 0.5, 1.5);
    for (size_t i = 0; i < nx; i++)
        x[i] += (float)b->offset;
    float *beta = kt_randf(rnd, nc, -1, 1), *r = kt_randf(rnd, nx, -1, 1);
    float *rmean = kt_randf(rnd, nc, -1, 1), *rvar = kt_randf(rnd, nc, 0.5, 2);
    bn_fd f = {.b = b,
               .x = kt_to_double(x, nx),
               .gamma = kt_to_double(gamma, nc),
               .beta = kt_to_double(beta, nc),
               .r = kt_to_double(r, nx),
               .y = malloc(nx * sizeof(double)),
               .ny = nx};
    float *dx = kt_dev(be, x, nx), *dg = kt_dev(be, gamma, nc), *db = kt_dev(be, beta, nc);
    float *drm = kt_dev(be, rmean, nc), *drv = kt_dev(be, rvar, nc), *dr = kt_dev(be, r, nx);
    float *dy = kt_dev_nan(be, nx), *dsm = kt_dev_nan(be, nc), *dsi = kt_dev_nan(be, nc);
    float *gx = kt_dev_nan(be, nx), *gg = kt_dev_nan(be, nc), *gb = kt_dev_nan(be, nc);

    assert_int_equal(be->ops->bn_forward_train(be, b->n, b->c, b->hw, dx, dg, db, drm, drv,
                                               MOMENTUM, EPS, dy, dsm, dsi, &err),
                     0);
    double *mean = malloc(nc * sizeof *mean), *var = malloc(nc * sizeof *var);
    double *want = malloc(nc * sizeof *want);
    bn_ref(b, f.x, f.gamma, f.beta, f.y, mean, var);
    float *y = kt_host(be, dy, nx), *sm = kt_host(be, dsm, nc), *si = kt_host(be, dsi, nc);
    float *rm = kt_host(be, drm, nc), *rv = kt_host(be, drv, nc);
    snprintf(label, sizeof label, "%s: train forward", what);
    kt_check_close(label, y, f.y, nx, 2e-5);
    kt_check_close("save_mean", sm, mean, nc, 1e-6);
    for (size_t i = 0; i < nc; i++)
        want[i] = 1.0 / sqrt(var[i] + EPS);
    kt_check_close("save_invstd", si, want, nc, 1e-5);
    double cnt = (double)b->n * b->hw;
    for (size_t i = 0; i < nc; i++)
        want[i] = (1 - MOMENTUM) * (double)rmean[i] + MOMENTUM * mean[i];
    kt_check_close("running_mean", rm, want, nc, 1e-6);
    for (size_t i = 0; i < nc; i++)
        want[i] = (1 - MOMENTUM) * (double)rvar[i] + MOMENTUM * var[i] * cnt / (cnt - 1);
    kt_check_close("running_var", rv, want, nc, 1e-5);

    assert_int_equal(
        be->ops->bn_backward(be, b->n, b->c, b->hw, dx, dr, dg, dsm, dsi, gx, gg, gb, &err), 0);
    float *hgx = kt_host(be, gx, nx), *hgg = kt_host(be, gg, nc), *hgb = kt_host(be, gb, nc);
    snprintf(label, sizeof label, "%s: dx", what);
    kt_check_fd(label, bn_projection, &f, f.x, nx, hgx, 120, 2e-4);
    f.wrt = 1;
    snprintf(label, sizeof label, "%s: dgamma", what);
    kt_check_fd(label, bn_projection, &f, f.gamma, nc, hgg, 0, 1e-4);
    f.wrt = 2;
    snprintf(label, sizeof label, "%s: dbeta", what);
    kt_check_fd(label, bn_projection, &f, f.beta, nc, hgb, 0, 1e-4);

    /* Eval: the running statistics (as updated) stand in for the batch's. */
    assert_int_equal(
        be->ops->bn_forward_eval(be, b->n, b->c, b->hw, dx, dg, db, drm, drv, EPS, dy, &err), 0);
    float *ye = kt_host(be, dy, nx);
    double *yref = malloc(nx * sizeof *yref);
    for (int s = 0; s < b->n; s++)
        for (int ch = 0; ch < b->c; ch++)
            for (int i = 0; i < b->hw; i++) {
                size_t o = ((size_t)s * b->c + ch) * b->hw + i;
                yref[o] =
                    ((double)x[o] - rm[ch]) / sqrt((double)rv[ch] + EPS) * gamma[ch] + beta[ch];
            }
    snprintf(label, sizeof label, "%s: eval forward", what);
    kt_check_close(label, ye, yref, nx, 1e-5);

    float *devs[] = {dx, dg, db, drm, drv, dr, dy, dsm, dsi, gx, gg, gb};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++)
        be->ops->release(be, devs[i]);
    float *hosts[] = {x, gamma, beta, r, rmean, rvar, y, sm, si, rm, rv, hgx, hgg, hgb, ye};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++)
        free(hosts[i]);
    free(f.x), free(f.gamma), free(f.beta), free(f.r), free(f.y);
    free(mean), free(var), free(want), free(yref);
    kiln_nn_backend_destroy(be);
}

static void test_bn_one_thread(void **state)
{
    (void)state;
    kt_rand rnd = {11};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], 1, &rnd);
}

static void test_bn_three_threads(void **state)
{
    (void)state;
    kt_rand rnd = {12};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], 3, &rnd);
}

static void test_bn_bad_arguments(void **state)
{
    (void)state;
    kiln_nn_backend *be = kt_cpu(1);
    kiln_err err = {0};
    float *b = kt_dev(be, NULL, 64);
    /* One value per channel cannot be normalised in training (as PyTorch). */
    assert_int_equal(be->ops->bn_forward_train(be, 1, 2, 1, b, b + 8, b + 16, b + 24, b + 32, 0.1f,
                                               1e-5f, b + 40, b + 48, b + 56, &err),
                     KILN_EINVAL);
    assert_non_null(strstr(err.msg, "more than 1 value per channel"));
    assert_int_equal(be->ops->bn_forward_eval(be, 2, -1, 4, b, b, b, b, b, 1e-5f, b, &err),
                     KILN_EINVAL);
    assert_non_null(strstr(err.msg, "negative size"));
    assert_int_equal(be->ops->bn_backward(be, 2, 2, 4, b, b, NULL, b, b, b, b, b, &err),
                     KILN_EINVAL);
    assert_non_null(strstr(err.msg, "bn_backward"));
    be->ops->release(be, b);
    kiln_nn_backend_destroy(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_one_thread),
        cmocka_unit_test(test_bn_three_threads),
        cmocka_unit_test(test_bn_bad_arguments),
    };
    int failed = 0;
    for (int i = 0; kt_isa(i); i++)
        failed += cmocka_run_group_tests(tests, NULL, NULL);
    return failed;
}
