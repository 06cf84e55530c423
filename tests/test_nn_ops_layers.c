/* tests/test_nn_ops_layers.c — the CPU backend's pooling, SE channel
 * scaling, Linear and cross-entropy (forward against double references,
 * backward against central differences), and SGD / AdamW over three steps
 * against PyTorch's update rules written out in double. */
#include "test_nn_ops.h"

/* ---- avgpool and scale_channels --------------------------------------- */

typedef struct se_fd {
    int n, c, hw;
    double *x, *s, *r, *y;
    int wrt; /* scale_channels: 0 x, 1 s; avgpool: unused */
} se_fd;

static void avgpool_ref(const se_fd *f, const double *x, double *y)
{
    for (int i = 0; i < f->n * f->c; i++) {
        double s = 0;
        for (int j = 0; j < f->hw; j++)
            s += x[(size_t)i * f->hw + j];
        y[i] = s / f->hw;
    }
}

static double avgpool_projection(void *ctx, const double *x)
{
    se_fd *f = ctx;
    avgpool_ref(f, x, f->y);
    return kt_dot(f->r, f->y, (size_t)f->n * f->c);
}

static void scale_ref(const se_fd *f, const double *x, const double *s, double *y)
{
    for (int i = 0; i < f->n * f->c; i++)
        for (int j = 0; j < f->hw; j++)
            y[(size_t)i * f->hw + j] = x[(size_t)i * f->hw + j] * s[i];
}

static double scale_projection(void *ctx, const double *v)
{
    se_fd *f = ctx;
    scale_ref(f, f->wrt ? f->x : v, f->wrt ? v : f->s, f->y);
    return kt_dot(f->r, f->y, (size_t)f->n * f->c * f->hw);
}

static void test_avgpool_and_scale_channels(void **state)
{
    (void)state;
    static const int shapes[][3] = {{2, 3, 5}, {3, 7, 49}, {2, 40, 1}, {4, 16, 1100}};
    kt_rand rnd = {31};
    for (int t = 0; t < 2; t++) {
        kiln_nn_backend *be = kt_cpu(t ? 3 : 1);
        kiln_err err = {0};
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            se_fd f = {.n = shapes[k][0], .c = shapes[k][1], .hw = shapes[k][2]};
            size_t nc = (size_t)f.n * f.c, nx = nc * f.hw;
            float *x = kt_randf(&rnd, nx, -2, 2), *s = kt_randf(&rnd, nc, -1, 1);
            float *rc = kt_randf(&rnd, nc, -1, 1), *rx = kt_randf(&rnd, nx, -1, 1);
            f.x = kt_to_double(x, nx), f.s = kt_to_double(s, nc);
            f.y = malloc(nx * sizeof(double));
            float *dx = kt_dev(be, x, nx), *ds = kt_dev(be, s, nc), *drc = kt_dev(be, rc, nc);
            float *drx = kt_dev(be, rx, nx), *dp = kt_dev_nan(be, nc), *dgx = kt_dev_nan(be, nx);
            float *dgs = kt_dev_nan(be, nc), *dy = kt_dev_nan(be, nx);

            assert_int_equal(be->ops->avgpool_forward(be, f.n, f.c, f.hw, dx, dp, &err), 0);
            float *p = kt_host(be, dp, nc);
            avgpool_ref(&f, f.x, f.y);
            kt_check_close("avgpool forward", p, f.y, nc, 1e-6);
            assert_int_equal(be->ops->avgpool_backward(be, f.n, f.c, f.hw, drc, dgx, &err), 0);
            float *g = kt_host(be, dgx, nx);
            f.r = kt_to_double(rc, nc);
            kt_check_fd("avgpool backward", avgpool_projection, &f, f.x, nx, g, 200, 1e-5);
            free(f.r), free(g);

            assert_int_equal(be->ops->scale_channels_forward(be, f.n, f.c, f.hw, dx, ds, dy, &err),
                             0);
            float *y = kt_host(be, dy, nx);
            scale_ref(&f, f.x, f.s, f.y);
            kt_check_close("scale_channels forward", y, f.y, nx, 1e-6);
            assert_int_equal(
                be->ops->scale_channels_backward(be, f.n, f.c, f.hw, dx, ds, drx, dgx, dgs, &err),
                0);
            float *gx = kt_host(be, dgx, nx), *gs = kt_host(be, dgs, nc);
            f.r = kt_to_double(rx, nx);
            f.wrt = 0;
            kt_check_fd("scale_channels dx", scale_projection, &f, f.x, nx, gx, 200, 1e-5);
            f.wrt = 1;
            kt_check_fd("scale_channels ds", scale_projection, &f, f.s, nc, gs, 200, 1e-5);

            float *devs[] = {dx, ds, drc, drx, dp, dgx, dgs, dy};
            for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++)
                be->ops->release(be, devs[i]);
            free(x), free(s), free(rc), free(rx), free(p), free(y), free(gx), free(gs);
            free(f.x), free(f.s), free(f.y), free(f.r);
        }
        assert_int_equal(be->ops->avgpool_forward(be, 2, 2, 0, NULL, NULL, &err), KILN_EINVAL);
        kiln_nn_backend_destroy(be);
    }
}

/* ---- linear ------------------------------------------------------------ */

typedef struct lin_fd {
    int n, in, out;
    double *x, *w, *b, *r, *y;
    int wrt; /* 0 x, 1 w, 2 b */
} lin_fd;

static void linear_ref(const lin_fd *f, const double *x, const double *w, const double *b,
                       double *y)
{
    for (int i = 0; i < f->n; i++)
        for (int o = 0; o < f->out; o++) {
            double s = b ? b[o] : 0;
            for (int k = 0; k < f->in; k++)
                s += x[(size_t)i * f->in + k] * w[(size_t)o * f->in + k];
            y[(size_t)i * f->out + o] = s;
        }
}

static double linear_projection(void *ctx, const double *v)
{
    lin_fd *f = ctx;
    linear_ref(f, f->wrt == 0 ? v : f->x, f->wrt == 1 ? v : f->w, f->wrt == 2 ? v : f->b, f->y);
    return kt_dot(f->r, f->y, (size_t)f->n * f->out);
}

static void test_linear(void **state)
{
    (void)state;
    /* The last shape is large enough to be split over threads. */
    static const int shapes[][3] = {{3, 7, 5}, {1, 16, 10}, {8, 33, 2}, {64, 256, 200}};
    kt_rand rnd = {32};
    for (int t = 0; t < 2; t++) {
        kiln_nn_backend *be = kt_cpu(t ? 3 : 1);
        kiln_err err = {0};
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            lin_fd f = {.n = shapes[k][0], .in = shapes[k][1], .out = shapes[k][2]};
            size_t nx = (size_t)f.n * f.in, nw = (size_t)f.out * f.in, nb = (size_t)f.out;
            size_t ny = (size_t)f.n * f.out;
            float *x = kt_randf(&rnd, nx, -1, 1), *w = kt_randf(&rnd, nw, -1, 1);
            float *b = kt_randf(&rnd, nb, -1, 1), *r = kt_randf(&rnd, ny, -1, 1);
            f.x = kt_to_double(x, nx), f.w = kt_to_double(w, nw), f.b = kt_to_double(b, nb);
            f.r = kt_to_double(r, ny), f.y = malloc(ny * sizeof(double));
            float *dx = kt_dev(be, x, nx), *dw = kt_dev(be, w, nw), *db = kt_dev(be, b, nb);
            float *dr = kt_dev(be, r, ny), *dy = kt_dev_nan(be, ny);
            float *gx = kt_dev_nan(be, nx), *gw = kt_dev_nan(be, nw), *gb = kt_dev_nan(be, nb);

            for (int with_bias = 0; with_bias < 2; with_bias++) {
                assert_int_equal(be->ops->linear_forward(be, f.n, f.in, f.out, dx, dw,
                                                         with_bias ? db : NULL, dy, &err),
                                 0);
                float *y = kt_host(be, dy, ny);
                linear_ref(&f, f.x, f.w, with_bias ? f.b : NULL, f.y);
                kt_check_close("linear forward", y, f.y, ny, 1e-5);
                free(y);
            }
            assert_int_equal(
                be->ops->linear_backward(be, f.n, f.in, f.out, dx, dw, dr, gx, gw, gb, &err), 0);
            float *hx = kt_host(be, gx, nx), *hw = kt_host(be, gw, nw), *hb = kt_host(be, gb, nb);
            f.wrt = 0;
            kt_check_fd("linear dx", linear_projection, &f, f.x, nx, hx, 40, 1e-5);
            f.wrt = 1;
            kt_check_fd("linear dweight", linear_projection, &f, f.w, nw, hw, 40, 1e-5);
            f.wrt = 2;
            kt_check_fd("linear dbias", linear_projection, &f, f.b, nb, hb, 40, 1e-5);
            /* No dx and no bias (a first layer without bias). */
            float *gw2 = kt_dev_nan(be, nw);
            assert_int_equal(
                be->ops->linear_backward(be, f.n, f.in, f.out, dx, dw, dr, NULL, gw2, NULL, &err),
                0);
            float *hw2 = kt_host(be, gw2, nw);
            assert_memory_equal(hw, hw2, nw * sizeof *hw);

            float *devs[] = {dx, dw, db, dr, dy, gx, gw, gb, gw2};
            for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++)
                be->ops->release(be, devs[i]);
            free(x), free(w), free(b), free(r), free(hx), free(hw), free(hb), free(hw2);
            free(f.x), free(f.w), free(f.b), free(f.r), free(f.y);
        }
        kiln_nn_backend_destroy(be);
    }
}

/* ---- cross-entropy ----------------------------------------------------- */

typedef struct xent_fd {
    int n, classes;
    const int32_t *labels;
    double ls;
} xent_fd;

static double xent_ref(void *ctx, const double *logits)
{
    const xent_fd *f = ctx;
    double total = 0;
    for (int i = 0; i < f->n; i++) {
        const double *l = logits + (size_t)i * f->classes;
        double mx = l[0], s = 0, mean_logp = 0;
        for (int c = 1; c < f->classes; c++)
            mx = fmax(mx, l[c]);
        for (int c = 0; c < f->classes; c++)
            s += exp(l[c] - mx);
        double lse = mx + log(s);
        for (int c = 0; c < f->classes; c++)
            mean_logp += (l[c] - lse) / f->classes;
        total += (1 - f->ls) * -(l[f->labels[i]] - lse) + f->ls * -mean_logp;
    }
    return total / f->n;
}

static void test_cross_entropy(void **state)
{
    (void)state;
    static const int shapes[][2] = {{4, 3}, {1, 10}, {32, 1000}};
    static const float smoothing[] = {0.0f, 0.1f, 1.0f};
    kt_rand rnd = {33};
    kiln_nn_backend *be = kt_cpu(2);
    kiln_err err = {0};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (size_t li = 0; li < 3; li++) {
            int n = shapes[k][0], classes = shapes[k][1];
            size_t nl = (size_t)n * classes;
            float *logits = kt_randf(&rnd, nl, -6, 6);
            logits[0] = 90; /* large logits stay finite */
            int32_t *labels = malloc((size_t)n * sizeof *labels);
            for (int i = 0; i < n; i++)
                labels[i] = (int32_t)kt_uniform(&rnd, 0, classes);
            xent_fd f = {n, classes, labels, smoothing[li]};
            float *dl = kt_dev(be, logits, nl), *dp = kt_dev_nan(be, nl), *dg = kt_dev_nan(be, nl);
            int32_t *dlab = be->ops->alloc(be, (size_t)n * sizeof *dlab, &err);
            assert_int_equal(be->ops->upload(be, dlab, labels, (size_t)n * sizeof *dlab, &err), 0);
            double loss = -1;
            assert_int_equal(be->ops->xent_forward_backward(be, n, classes, dl, dlab, smoothing[li],
                                                            dp, dg, &loss, &err),
                             0);
            double *ld = kt_to_double(logits, nl);
            double want = xent_ref(&f, ld);
            assert_true(fabs(loss - want) <= 1e-12 * fmax(1, fabs(want)));
            float *p = kt_host(be, dp, nl), *g = kt_host(be, dg, nl);
            double *pref = malloc(nl * sizeof *pref);
            for (int i = 0; i < n; i++) {
                double mx = ld[(size_t)i * classes], s = 0;
                for (int c = 0; c < classes; c++)
                    mx = fmax(mx, ld[(size_t)i * classes + c]);
                for (int c = 0; c < classes; c++)
                    s += exp(ld[(size_t)i * classes + c] - mx);
                for (int c = 0; c < classes; c++)
                    pref[(size_t)i * classes + c] = exp(ld[(size_t)i * classes + c] - mx) / s;
            }
            kt_check_close("softmax probabilities", p, pref, nl, 1e-6);
            kt_check_fd("cross-entropy dlogits", xent_ref, &f, ld, nl, g, 300, 1e-5);
            be->ops->release(be, dl), be->ops->release(be, dp), be->ops->release(be, dg);
            be->ops->release(be, dlab);
            free(logits), free(labels), free(ld), free(p), free(g), free(pref);
        }
    /* A label outside [0, classes) is refused, naming the sample. */
    float *l = kt_dev(be, NULL, 8), *p = kt_dev(be, NULL, 8);
    int32_t bad[2] = {1, 4};
    int32_t *dlab = be->ops->alloc(be, sizeof bad, &err);
    be->ops->upload(be, dlab, bad, sizeof bad, &err);
    double loss;
    assert_int_equal(be->ops->xent_forward_backward(be, 2, 4, l, dlab, 0, p, p, &loss, &err),
                     KILN_EINVAL);
    assert_non_null(strstr(err.msg, "label 4 of sample 1"));
    assert_int_equal(be->ops->xent_forward_backward(be, 2, 5, l, dlab, 1.5f, p, p, &loss, &err),
                     KILN_EINVAL);
    be->ops->release(be, l), be->ops->release(be, p), be->ops->release(be, dlab);
    kiln_nn_backend_destroy(be);
}

/* ---- optimizers -------------------------------------------------------- */

/* Float updates against double: errors are relative to the vector's
 * scale (a parameter near zero after a step carries its operands'
 * rounding). */
static void check_vec(const char *what, int step, const float *got, const double *want, size_t n)
{
    char label[80];
    snprintf(label, sizeof label, "%s after step %d", what, step);
    kt_check_close(label, got, want, n, 1e-6);
}

static void run_sgd(float momentum, int nesterov, float wd, int threads)
{
    kiln_nn_backend *be = kt_cpu(threads);
    kiln_err err = {0};
    kt_rand rnd = {34};
    size_t n = 100003;
    float lr = 0.05f;
    float *p = kt_randf(&rnd, n, -1, 1);
    double *pd = kt_to_double(p, n), *buf = calloc(n, sizeof *buf);
    float *dp = kt_dev(be, p, n), *dbuf = kt_dev(be, NULL, n), *dg = kt_dev(be, NULL, n);
    assert_int_equal(be->ops->fill(be, dbuf, 0.0f, n, &err), 0);
    for (int step = 1; step <= 3; step++) {
        float *g = kt_randf(&rnd, n, -1, 1);
        assert_int_equal(be->ops->upload(be, dg, g, n * sizeof *g, &err), 0);
        assert_int_equal(be->ops->sgd_step(be, n, dp, dg, dbuf, lr, momentum, nesterov, wd, &err),
                         0);
        for (size_t i = 0; i < n; i++) {
            double d = g[i] + (double)wd * pd[i];
            if (momentum != 0) {
                /* torch: buf = d on the first step, then momentum*buf + d */
                buf[i] = step == 1 ? d : momentum * buf[i] + d;
                d = nesterov ? d + momentum * buf[i] : buf[i];
            }
            pd[i] -= lr * d;
        }
        float *hp = kt_host(be, dp, n);
        check_vec("sgd param", step, hp, pd, n);
        if (momentum != 0) {
            float *hb = kt_host(be, dbuf, n);
            check_vec("sgd momentum buffer", step, hb, buf, n);
            free(hb);
        }
        free(g), free(hp);
    }
    be->ops->release(be, dp), be->ops->release(be, dbuf), be->ops->release(be, dg);
    free(p), free(pd), free(buf);
    kiln_nn_backend_destroy(be);
}

static void test_sgd(void **state)
{
    (void)state;
    run_sgd(0.9f, 0, 0.0f, 1);
    run_sgd(0.9f, 1, 1e-4f, 3);
    run_sgd(0.0f, 0, 5e-4f, 2);
    kiln_nn_backend *be = kt_cpu(1);
    kiln_err err = {0};
    float x = 1;
    assert_int_equal(be->ops->sgd_step(be, 1, &x, &x, NULL, 0.1f, 0.0f, 1, 0.0f, &err),
                     KILN_EINVAL);
    assert_non_null(strstr(err.msg, "nesterov"));
    kiln_nn_backend_destroy(be);
}

static void run_adamw(float wd, int threads)
{
    kiln_nn_backend *be = kt_cpu(threads);
    kiln_err err = {0};
    kt_rand rnd = {35};
    size_t n = 70001;
    float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float *p = kt_randf(&rnd, n, -1, 1);
    double *pd = kt_to_double(p, n), *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    float *dp = kt_dev(be, p, n), *dm = kt_dev(be, NULL, n), *dv = kt_dev(be, NULL, n);
    float *dg = kt_dev(be, NULL, n);
    assert_int_equal(be->ops->fill(be, dm, 0.0f, n, &err), 0);
    assert_int_equal(be->ops->fill(be, dv, 0.0f, n, &err), 0);
    for (int step = 1; step <= 3; step++) {
        float *g = kt_randf(&rnd, n, -1, 1);
        g[0] = 0; /* a zero gradient: the update is decay only */
        assert_int_equal(be->ops->upload(be, dg, g, n * sizeof *g, &err), 0);
        assert_int_equal(
            be->ops->adamw_step(be, n, dp, dg, dm, dv, lr, b1, b2, eps, wd, step, &err), 0);
        double bc1 = 1 - pow(b1, step), bc2 = 1 - pow(b2, step);
        for (size_t i = 0; i < n; i++) {
            pd[i] *= 1 - (double)lr * wd;
            m[i] = b1 * m[i] + (1 - (double)b1) * g[i];
            v[i] = b2 * v[i] + (1 - (double)b2) * g[i] * g[i];
            double denom = sqrt(v[i]) / sqrt(bc2) + eps;
            pd[i] -= lr / bc1 * m[i] / denom;
        }
        float *hp = kt_host(be, dp, n), *hm = kt_host(be, dm, n), *hv = kt_host(be, dv, n);
        check_vec("adamw param", step, hp, pd, n);
        check_vec("adamw m", step, hm, m, n);
        check_vec("adamw v", step, hv, v, n);
        free(g), free(hp), free(hm), free(hv);
    }
    assert_int_equal(be->ops->adamw_step(be, n, dp, dg, dm, dv, lr, b1, b2, eps, wd, 0, &err),
                     KILN_EINVAL);
    assert_non_null(strstr(err.msg, "count from 1"));
    be->ops->release(be, dp), be->ops->release(be, dm), be->ops->release(be, dv);
    be->ops->release(be, dg);
    free(p), free(pd), free(m), free(v);
    kiln_nn_backend_destroy(be);
}

static void test_adamw(void **state)
{
    (void)state;
    run_adamw(0.01f, 1);
    run_adamw(0.0f, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_avgpool_and_scale_channels),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adamw),
    };
    int failed = 0;
    for (int i = 0; kt_isa(i); i++)
        failed += cmocka_run_group_tests(tests, NULL, NULL);
    return failed;
}
