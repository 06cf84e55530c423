/* tests/test_nn_ops_elementwise.c — the CPU backend's memory ops and
 * elementwise ops: SiLU and Sigmoid (forward against double, backward
 * against central differences), add / mul / scale (in place too), dropout
 * masks (deterministic, the right fraction and values), per-sample
 * scaling, the loader's bytes normalised, the squared norm, and failures (absurd allocations, bad
 * arguments). Lengths are odd so the vector loops' tails run. */
#include "test_nn_ops.h"

static const size_t LENGTHS[] = {1, 7, 1003, 70001};

static double silu_ref(double x)
{
    return x / (1 + exp(-x));
}

static double sigmoid_ref(double x)
{
    return 1 / (1 + exp(-x));
}

/* |got - want| <= tol*|want| + 1e-12 for every element. */
static void check_rel(const char *what, const float *got, const double *want, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * fabs(want[i]) + 1e-12))
            fail_msg("%s: element %zu is %.9g, expected %.9g", what, i, (double)got[i], want[i]);
}

typedef struct act_fd {
    double (*f)(double);
    const double *r;
} act_fd;

static double act_projection(void *ctx, const double *x)
{
    act_fd *a = ctx;
    /* Elementwise: only the perturbed element's term changes, but the sum
     * over all keeps the check honest about cross-talk. */
    double s = 0;
    for (size_t i = 0; i < 1003; i++)
        s += a->r[i] * a->f(x[i]);
    return s;
}

static void check_activation(int sigmoid, int threads)
{
    kiln_nn_backend *be = kt_cpu(threads);
    kiln_err err = {0};
    kt_rand rnd = {21};
    for (size_t li = 0; li < sizeof LENGTHS / sizeof LENGTHS[0]; li++) {
        size_t n = LENGTHS[li];
        float *x = kt_randf(&rnd, n, -12, 12);
        if (n > 8) {
            x[0] = 0, x[1] = -100, x[2] = 100, x[3] = -87.5f, x[4] = 88.5f, x[5] = 1e-8f;
        }
        double *want = malloc(n * sizeof *want);
        for (size_t i = 0; i < n; i++)
            want[i] = sigmoid ? sigmoid_ref(x[i]) : silu_ref(x[i]);
        float *dx = kt_dev(be, x, n), *dy = kt_dev_nan(be, n);
        if (sigmoid)
            assert_int_equal(be->ops->sigmoid_forward(be, n, dx, dy, &err), 0);
        else
            assert_int_equal(be->ops->silu_forward(be, n, dx, dy, &err), 0);
        float *y = kt_host(be, dy, n);
        check_rel(sigmoid ? "sigmoid" : "silu", y, want, n, 2e-6);
        /* In place. */
        if (sigmoid)
            assert_int_equal(be->ops->sigmoid_forward(be, n, dx, dx, &err), 0);
        else
            assert_int_equal(be->ops->silu_forward(be, n, dx, dx, &err), 0);
        float *y2 = kt_host(be, dx, n);
        assert_memory_equal(y, y2, n * sizeof *y);
        free(x), free(want), free(y), free(y2);
        be->ops->release(be, dx), be->ops->release(be, dy);
    }
    /* Backward against central differences on 1003 elements. */
    size_t n = 1003;
    float *x = kt_randf(&rnd, n, -8, 8), *r = kt_randf(&rnd, n, -1, 1);
    double *xd = kt_to_double(x, n), *rd = kt_to_double(r, n);
    float *dx = kt_dev(be, x, n), *dr = kt_dev(be, r, n), *dg = kt_dev_nan(be, n);
    if (sigmoid) {
        float *dy = kt_dev_nan(be, n);
        assert_int_equal(be->ops->sigmoid_forward(be, n, dx, dy, &err), 0);
        assert_int_equal(be->ops->sigmoid_backward(be, n, dy, dr, dg, &err), 0);
        be->ops->release(be, dy);
    } else {
        assert_int_equal(be->ops->silu_backward(be, n, dx, dr, dg, &err), 0);
    }
    float *g = kt_host(be, dg, n);
    act_fd a = {sigmoid ? sigmoid_ref : silu_ref, rd};
    kt_check_fd(sigmoid ? "sigmoid backward" : "silu backward", act_projection, &a, xd, n, g, 0,
                1e-5);
    free(x), free(r), free(xd), free(rd), free(g);
    be->ops->release(be, dx), be->ops->release(be, dr), be->ops->release(be, dg);
    kiln_nn_backend_destroy(be);
}

static void test_silu(void **state)
{
    (void)state;
    check_activation(0, 1);
    check_activation(0, 3);
}

static void test_sigmoid(void **state)
{
    (void)state;
    check_activation(1, 1);
    check_activation(1, 3);
}

static void test_add_mul_scale(void **state)
{
    (void)state;
    kiln_nn_backend *be = kt_cpu(2);
    kiln_err err = {0};
    kt_rand rnd = {22};
    for (size_t li = 0; li < sizeof LENGTHS / sizeof LENGTHS[0]; li++) {
        size_t n = LENGTHS[li];
        float *a = kt_randf(&rnd, n, -3, 3), *b = kt_randf(&rnd, n, -3, 3);
        float *da = kt_dev(be, a, n), *db = kt_dev(be, b, n), *dy = kt_dev_nan(be, n);
        assert_int_equal(be->ops->add(be, n, da, db, dy, &err), 0);
        float *y = kt_host(be, dy, n);
        for (size_t i = 0; i < n; i++)
            assert_true(y[i] == a[i] + b[i]);
        free(y);
        assert_int_equal(be->ops->mul(be, n, da, db, dy, &err), 0);
        y = kt_host(be, dy, n);
        for (size_t i = 0; i < n; i++)
            assert_true(y[i] == a[i] * b[i]);
        free(y);
        /* y aliases a, then in-place scale. */
        assert_int_equal(be->ops->add(be, n, da, db, da, &err), 0);
        assert_int_equal(be->ops->scale(be, n, -0.5f, da, &err), 0);
        y = kt_host(be, da, n);
        for (size_t i = 0; i < n; i++)
            assert_true(y[i] == (a[i] + b[i]) * -0.5f);
        free(a), free(b), free(y);
        be->ops->release(be, da), be->ops->release(be, db), be->ops->release(be, dy);
    }
    kiln_nn_backend_destroy(be);
}

static void test_mask(void **state)
{
    (void)state;
    kiln_nn_backend *be = kt_cpu(3);
    kiln_err err = {0};
    size_t n = 200003;
    float p = 0.3f, keep = 1.0f / (1.0f - p);
    float *m1 = kt_dev_nan(be, n), *m2 = kt_dev_nan(be, n), *m3 = kt_dev_nan(be, n);
    assert_int_equal(be->ops->mask(be, n, p, 42, 1000, m1, &err), 0);
    assert_int_equal(be->ops->mask(be, n, p, 42, 1000, m2, &err), 0);
    assert_int_equal(be->ops->mask(be, n - 5, p, 42, 1005, m3, &err), 0);
    float *h1 = kt_host(be, m1, n), *h2 = kt_host(be, m2, n), *h3 = kt_host(be, m3, n - 5);
    assert_memory_equal(h1, h2, n * sizeof *h1);           /* same seed and offset */
    assert_memory_equal(h1 + 5, h3, (n - 5) * sizeof *h1); /* offset shifts the stream */
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(h1[i] == 0.0f || h1[i] == keep);
        kept += h1[i] != 0.0f;
        assert_true((h1[i] != 0.0f) == (kiln_nn_mask_uniform(42, 1000 + i) >= p));
    }
    double frac = (double)kept / (double)n;
    assert_true(fabs(frac - (1 - p)) < 0.01);
    /* Another seed draws another mask. */
    assert_int_equal(be->ops->mask(be, n, p, 43, 1000, m2, &err), 0);
    free(h2);
    h2 = kt_host(be, m2, n);
    assert_true(memcmp(h1, h2, n * sizeof *h1) != 0);
    /* p = 0 keeps everything at scale 1; p outside [0, 1) is refused. */
    assert_int_equal(be->ops->mask(be, n, 0.0f, 1, 0, m2, &err), 0);
    free(h2);
    h2 = kt_host(be, m2, n);
    for (size_t i = 0; i < n; i++)
        assert_true(h2[i] == 1.0f);
    assert_int_equal(be->ops->mask(be, n, 1.0f, 1, 0, m2, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "not in [0, 1)"));
    assert_int_equal(be->ops->mask(be, n, -0.1f, 1, 0, m2, &err), KILN_EINVAL);
    free(h1), free(h2), free(h3);
    be->ops->release(be, m1), be->ops->release(be, m2), be->ops->release(be, m3);
    kiln_nn_backend_destroy(be);
}

static void test_scale_samples(void **state)
{
    (void)state;
    kiln_nn_backend *be = kt_cpu(2);
    kiln_err err = {0};
    kt_rand rnd = {23};
    static const size_t per[] = {5, 9001};
    for (size_t k = 0; k < 2; k++) {
        int n = 7;
        size_t total = (size_t)n * per[k];
        float *x = kt_randf(&rnd, total, -2, 2), *s = kt_randf(&rnd, (size_t)n, 0, 2);
        s[2] = 0;
        float *dx = kt_dev(be, x, total), *ds = kt_dev(be, s, (size_t)n);
        float *dy = kt_dev_nan(be, total);
        assert_int_equal(be->ops->scale_samples(be, n, per[k], dx, ds, dy, &err), 0);
        float *y = kt_host(be, dy, total);
        for (size_t i = 0; i < total; i++)
            assert_true(y[i] == x[i] * s[i / per[k]]);
        free(x), free(s), free(y);
        be->ops->release(be, dx), be->ops->release(be, ds), be->ops->release(be, dy);
    }
    kiln_nn_backend_destroy(be);
}

/* The loader's bytes through its table: channel by channel, every byte. */
static void test_normalize_u8(void **state)
{
    (void)state;
    kiln_nn_backend *be = kt_cpu(2);
    kiln_err err = {0};
    enum { N = 3, C = 3, HW = 301, TOTAL = N * C * HW };
    float lut[C * 256];
    uint8_t bytes[TOTAL];
    for (int i = 0; i < C * 256; i++)
        lut[i] = (float)i * 0.5f - 7.0f;
    for (int i = 0; i < TOTAL; i++)
        bytes[i] = (uint8_t)(i * 37 + i / 5);
    void *dsrc = be->ops->alloc(be, TOTAL, &err);
    assert_int_equal(be->ops->upload(be, dsrc, bytes, TOTAL, &err), KILN_OK);
    float *dlut = kt_dev(be, lut, C * 256), *dy = kt_dev_nan(be, TOTAL);
    assert_int_equal(be->ops->normalize_u8(be, N, C, HW, dsrc, dlut, dy, &err), KILN_OK);
    float *y = kt_host(be, dy, TOTAL);
    for (int i = 0; i < TOTAL; i++)
        assert_true(y[i] == lut[(i / HW % C) * 256 + bytes[i]]);
    assert_int_equal(be->ops->normalize_u8(be, N, C, HW, NULL, dlut, dy, &err), KILN_EINVAL);
    assert_int_equal(be->ops->normalize_u8(be, N, -1, HW, dsrc, dlut, dy, &err), KILN_EINVAL);
    assert_int_equal(be->ops->normalize_u8(be, 0, C, HW, NULL, NULL, NULL, &err), KILN_OK);
    free(y);
    be->ops->release(be, dsrc), be->ops->release(be, dlut), be->ops->release(be, dy);
    kiln_nn_backend_destroy(be);
}

static void test_sum_squares(void **state)
{
    (void)state;
    kt_rand rnd = {24};
    size_t n = 300007;
    float *x = kt_randf(&rnd, n, -1, 1);
    double want = 0;
    for (size_t i = 0; i < n; i++)
        want += (double)x[i] * x[i];
    double got[2];
    for (int t = 0; t < 2; t++) {
        kiln_nn_backend *be = kt_cpu(t ? 3 : 1);
        kiln_err err = {0};
        float *dx = kt_dev(be, x, n);
        assert_int_equal(be->ops->sum_squares(be, n, dx, &got[t], &err), 0);
        double tiny = -1;
        assert_int_equal(be->ops->sum_squares(be, 0, dx, &tiny, &err), 0);
        assert_true(tiny == 0.0);
        be->ops->release(be, dx);
        kiln_nn_backend_destroy(be);
    }
    assert_true(fabs(got[0] - want) <= 1e-12 * want);
    assert_true(got[0] == got[1]); /* independent of the thread count */
    free(x);
}

static void test_memory_and_failures(void **state)
{
    (void)state;
    kiln_err err = {0};
    assert_null(kiln_nn_cpu_create(0, &err));
    assert_int_equal(err.code, KILN_EINVAL);
    assert_non_null(strstr(err.msg, "thread count 0"));
    assert_null(kiln_nn_cpu_create(65, &err));
    assert_int_equal(err.code, KILN_EINVAL);
    kiln_nn_backend_destroy(NULL);

    kiln_nn_backend *be = kt_cpu(2);
    assert_string_equal(be->ops->name, "cpu");
    kiln_err_clear(&err);
    void *huge = be->ops->alloc(be, (size_t)1 << 62, &err);
    assert_null(huge);
    assert_int_equal(err.code, KILN_ENOMEM);
    assert_non_null(strstr(err.msg, "cannot allocate"));
    kiln_err_clear(&err);
    assert_null(be->ops->alloc(be, SIZE_MAX, &err));
    assert_int_equal(err.code, KILN_ENOMEM);

    /* Round trip, fill, copy, sync. */
    float host[37], back[37];
    for (int i = 0; i < 37; i++)
        host[i] = (float)i * 0.25f;
    float *a = kt_dev(be, host, 37), *b = kt_dev_nan(be, 37);
    assert_int_equal(be->ops->copy(be, b, a, 37, &err), 0);
    assert_int_equal(be->ops->sync(be, &err), 0);
    assert_int_equal(be->ops->download(be, back, b, sizeof back, &err), 0);
    assert_memory_equal(host, back, sizeof host);
    assert_int_equal(be->ops->fill(be, b, 2.5f, 37, &err), 0);
    assert_int_equal(be->ops->download(be, back, b, sizeof back, &err), 0);
    for (int i = 0; i < 37; i++)
        assert_true(back[i] == 2.5f);
    assert_int_equal(be->ops->upload(be, NULL, host, 4, &err), KILN_EINVAL);
    assert_int_equal(be->ops->add(be, 37, a, NULL, b, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "add"));
    assert_int_equal(be->ops->scale_samples(be, -1, 3, a, a, b, &err), KILN_EINVAL);
    be->ops->release(be, a);
    be->ops->release(be, b);
    be->ops->release(be, NULL);
    kiln_nn_backend_destroy(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silu),
        cmocka_unit_test(test_sigmoid),
        cmocka_unit_test(test_add_mul_scale),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_scale_samples),
        cmocka_unit_test(test_normalize_u8),
        cmocka_unit_test(test_sum_squares),
        cmocka_unit_test(test_memory_and_failures),
    };
    int failed = 0;
    for (int i = 0; kt_isa(i); i++)
        failed += cmocka_run_group_tests(tests, NULL, NULL);
    return failed;
}
