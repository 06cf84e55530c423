/* tests/test_nn_ops.h — helpers shared by the test_nn_ops_*.c tests of the
 * backend interface (nn/backend.h): deterministic random data, tensors in
 * backend memory, comparisons against double-precision references, and
 * finite-difference gradient checks. Everything is static inline so each
 * test program takes only what it uses. */
#ifndef KILN_TEST_NN_OPS_H
#define KILN_TEST_NN_OPS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backend.h"
#include "support/testutil.h"

/* Deterministic uniform numbers in [lo, hi) (splitmix64). */
typedef struct kt_rand {
    uint64_t s;
} kt_rand;

static inline double kt_uniform(kt_rand *r, double lo, double hi)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return lo + (hi - lo) * (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static inline float *kt_randf(kt_rand *r, size_t n, double lo, double hi)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)kt_uniform(r, lo, hi);
    return v;
}

static inline double *kt_to_double(const float *v, size_t n)
{
    double *d = malloc((n ? n : 1) * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static inline kiln_nn_backend *kt_cpu(int threads)
{
    kiln_err err = {0};
    kiln_nn_backend *be = kiln_nn_cpu_create(threads, &err);
    if (!be)
        fail_msg("kiln_nn_cpu_create(%d): %s", threads, err.msg);
    return be;
}

/* A copy of host floats in backend memory (n may be 0). */
static inline float *kt_dev(kiln_nn_backend *be, const float *host, size_t n)
{
    kiln_err err = {0};
    float *d = be->ops->alloc(be, (n ? n : 1) * sizeof *d, &err);
    if (!d)
        fail_msg("alloc: %s", err.msg);
    if (host && n)
        assert_int_equal(be->ops->upload(be, d, host, n * sizeof *d, &err), KILN_OK);
    return d;
}

/* Backend memory filled with NaN, so an op that leaves part of its output
 * unwritten fails the comparison. */
static inline float *kt_dev_nan(kiln_nn_backend *be, size_t n)
{
    kiln_err err = {0};
    float *d = kt_dev(be, NULL, n);
    assert_int_equal(be->ops->fill(be, d, NAN, n, &err), KILN_OK);
    return d;
}

static inline float *kt_host(kiln_nn_backend *be, const float *dev, size_t n)
{
    kiln_err err = {0};
    float *h = malloc((n ? n : 1) * sizeof *h);
    assert_non_null(h);
    if (n)
        assert_int_equal(be->ops->download(be, h, dev, n * sizeof *h, &err), KILN_OK);
    return h;
}

/* Max |got - want| / max(max|want|, floor) <= tol, element by element;
 * prints the worst element on failure. */
static inline void kt_check_close(const char *what, const float *got, const double *want, size_t n,
                                  double tol)
{
    double scale = 1e-6;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(want[i]));
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / scale;
        if (!(e <= worst)) {
            worst = e;
            at = i;
        }
    }
    if (!(worst <= tol))
        fail_msg("%s: element %zu is %.9g, expected %.9g (error %.3g of max |%.4g|, tol %.1g)",
                 what, at, (double)got[at], want[at], worst, scale, tol);
}

/* A scalar function of one input tensor (everything else fixed): the
 * reference forward in double followed by a fixed random projection. */
typedef double (*kt_scalar_fn)(void *ctx, const double *x);

/* Central differences of f at x (n doubles, restored afterwards) against
 * the backend's gradient `grad`, for every element, or for `samples` of
 * them spread over the tensor when n is larger. */
static inline void kt_check_fd(const char *what, kt_scalar_fn f, void *ctx, double *x, size_t n,
                               const float *grad, size_t samples, double tol)
{
    size_t count = samples && n > samples ? samples : n;
    double *fd = malloc(count * sizeof *fd);
    float *got = malloc(count * sizeof *got);
    assert_true(fd && got);
    for (size_t j = 0; j < count; j++) {
        size_t i = count == n ? j : (j * 7919u + 13u) % n;
        double keep = x[i], h = 1e-5 * fmax(1.0, fabs(keep));
        x[i] = keep + h;
        double up = f(ctx, x);
        x[i] = keep - h;
        double down = f(ctx, x);
        x[i] = keep;
        fd[j] = (up - down) / (2 * h);
        got[j] = grad[i];
    }
    kt_check_close(what, got, fd, count, tol);
    free(fd);
    free(got);
}

static inline double kt_dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Selects the i-th kernel set of the CPU backend through KILN_CPU_ISA
 * (which caps the set: one the CPU lacks falls back to the next one down,
 * repeating a run) and returns its name; NULL, with the cap removed, past
 * the last. Tests run their group once per set:
 *   for (int i = 0; kt_isa(i); i++) failed += cmocka_run_group_tests(...); */
static inline const char *kt_isa(int i)
{
    static const char *const isas[] = {"avx512", "avx2", "sse2"};
    if (i < 0 || (size_t)i >= sizeof isas / sizeof isas[0]) {
        unsetenv("KILN_CPU_ISA");
        return NULL;
    }
    const char *isa = isas[i];
    setenv("KILN_CPU_ISA", isa, 1);
    fputs("kernels: KILN_CPU_ISA=", stderr);
    fputs(isa, stderr);
    fputc('\n', stderr);
    return isa;
}

#endif
