/* tests/test_nn_cuda_kernels.c — kiln's own CUDA kernels (every launcher of
 * lib/nn/cuda/cuda_kernels.h) run on the CPU through the emulator
 * (tests/support/cuda_emu.h: cuda_kernels.cu compiled by g++, blocks one
 * after another, threads as fibers with real __syncthreads barriers) and
 * compared with the CPU oracle backend's op on the same inputs. "Device"
 * buffers are plain malloc'd host memory, so ASan checks every access.
 *
 * Bit for bit where cuda_kernels.h promises it or the formula is the same
 * sequence of roundings: masks, SGD, AdamW (against every CPU instruction
 * set; the step-graph _dev launchers too, their values read from "device"
 * memory), add / mul / fill / scale, avg-pool backward, bias broadcast and
 * gradient. With tolerances, stated at each check, where the CPU or the
 * math library computes differently: activations (the CPU's vector exp),
 * reductions (different summation orders), the loss (exp/log and sums; a
 * label out of range gives a NaN row).
 *
 * Sizes cover one partial block, several blocks with a partial last one,
 * rows shorter and longer than a block (256), counts past the grid-stride
 * limit (8192 blocks of 256 threads), and counts of 0 (nothing launched).
 * The emulator's own checks come first: a kernel with a missing barrier
 * gives wrong sums, divergent barriers and bad configurations fail the
 * launch, so the comparisons cannot pass by the emulator running nothing.
 * cuDNN and cuBLAS calls of the backend are not covered here. */
#include <stdarg.h>

#include <cuda_runtime_api.h>

#include "nn/cuda/cuda_kernels.h"
#include "support/cuda_emu.h"
#include "support/cuda_emu_selftest.h"
#include "test_nn_ops.h"

/* THREADS * MAX_BLOCKS of cuda_kernels.cu: past this the kernels' grid-stride
 * loops take more than one trip. */
#define GRID_STRIDE_LIMIT ((size_t)8192 * 256)
#define BIG_COUNT (GRID_STRIDE_LIMIT + 4099)

static const size_t EW_COUNTS[] = {1, 255, 257, 70001};

/* ---- helpers ------------------------------------------------------------ */

static void emu_ok(const char *what, cudaError_t e)
{
    if (e != cudaSuccess)
        fail_msg("%s: launch failed (%d): %s", what, (int)e, kiln_emu_last_message());
}

static float *fnan(size_t n)
{
    float *d = malloc((n ? n : 1) * sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = NAN;
    return d;
}

static void cpu_ok(const char *what, int rc, const kiln_err *err)
{
    if (rc != KILN_OK)
        fail_msg("cpu %s: %s", what, err->msg);
}

/* Same bits, element by element. */
static void check_bits(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof got[i]) != 0)
            fail_msg("%s: element %zu of %zu is %.9g (%a), the CPU's %.9g (%a)", what, i, n,
                     (double)got[i], (double)got[i], (double)want[i], (double)want[i]);
}

/* Same value (+0 == -0): the CPU's x * a + 0 is one fused rounding on
 * AVX2/AVX-512, so an underflowing negative product is -0 there and +0 in
 * the kernel's __fadd_rn(__fmul_rn(x, a), 0); every other value is equal. */
static void check_equal(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(got[i] == want[i]))
            fail_msg("%s: element %zu of %zu is %.9g, the CPU's %.9g", what, i, n, (double)got[i],
                     (double)want[i]);
}

/* |got - want| <= rel * |want| + abs[i] (abs NULL: abs0 everywhere). */
static void check_near(const char *what, const float *got, const float *want, size_t n, double rel,
                       const double *abs, double abs0)
{
    for (size_t i = 0; i < n; i++) {
        double lim = rel * fabs((double)want[i]) + (abs ? abs[i] : abs0);
        if (!(fabs((double)got[i] - (double)want[i]) <= lim))
            fail_msg("%s: element %zu of %zu is %.9g, the CPU's %.9g (limit %.3g)", what, i, n,
                     (double)got[i], (double)want[i], lim);
    }
}

/* Releases n buffers of the CPU backend. */
static void cpu_free(kiln_nn_backend *be, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        be->ops->release(be, va_arg(ap, float *));
    va_end(ap);
}

static kiln_nn_backend *cpu_backend(void)
{
    return kt_cpu(2);
}

/* ---- the emulator itself ------------------------------------------------ */

static void test_emu_indices(void **state)
{
    (void)state;
    static const unsigned dims[][6] = {
        {1, 1, 1, 1, 1, 1}, {3, 2, 2, 8, 4, 2}, {5, 1, 1, 1024, 1, 1}, {2, 3, 1, 7, 5, 3}};
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        const unsigned *v = dims[d];
        size_t n = (size_t)v[0] * v[1] * v[2] * v[3] * v[4] * v[5];
        unsigned *hits = calloc(n, sizeof *hits), bad = 0;
        assert_non_null(hits);
        emu_ok("cover", kt_emu_cover(v[0], v[1], v[2], v[3], v[4], v[5], hits, &bad));
        assert_int_equal(bad, 0);
        for (size_t i = 0; i < n; i++)
            if (hits[i] != 1)
                fail_msg("launch %zu: thread %zu ran %u times", d, i, hits[i]);
        free(hits);
    }
    /* Refused configurations run nothing. */
    static const unsigned badcfg[][6] = {{1, 1, 1, 1025, 1, 1},  {1, 1, 1, 0, 1, 1},
                                         {0, 1, 1, 32, 1, 1},    {1, 1, 1, 1, 1, 65},
                                         {1, 70000, 1, 1, 1, 1}, {1, 1, 1, 64, 32, 1}};
    kiln_emu_set_verbose(0);
    for (size_t d = 0; d < sizeof badcfg / sizeof badcfg[0]; d++) {
        const unsigned *v = badcfg[d];
        unsigned hits[4] = {0}, bad = 0;
        unsigned long long before = kiln_emu_threads_run();
        assert_int_equal(kt_emu_cover(v[0], v[1], v[2], v[3], v[4], v[5], hits, &bad),
                         cudaErrorInvalidConfiguration);
        assert_int_equal(kiln_emu_threads_run(), before);
        assert_int_equal(hits[0] + bad, 0);
    }
    kiln_emu_set_verbose(1);
}

static void test_emu_barriers(void **state)
{
    (void)state;
    enum { BLOCKS = 5 };
    size_t n = (size_t)BLOCKS * KT_EMU_SUM_THREADS;
    double *x = malloc(n * sizeof *x), want[BLOCKS] = {0}, out[BLOCKS];
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) {
        x[i] = (double)((i * 7919u) % 1000u) + 1.0; /* integers: exact sums */
        want[i / KT_EMU_SUM_THREADS] += x[i];
    }
    /* The correct reduction, then the ones missing a barrier: the emulator
     * runs threads in order, so the tree reads slots not written yet. */
    for (int v = KT_EMU_SUM_OK; v <= KT_EMU_SUM_NO_LOOP_SYNC; v++) {
        for (int b = 0; b < BLOCKS; b++)
            out[b] = -1;
        emu_ok("block_sum", kt_emu_block_sum((kt_emu_sum_variant)v, BLOCKS, x, out));
        int wrong = 0;
        for (int b = 0; b < BLOCKS; b++)
            wrong += out[b] != want[b];
        if (v == KT_EMU_SUM_OK)
            assert_int_equal(wrong, 0);
        else if (wrong == 0)
            fail_msg("variant %d without a barrier gave the right sums", v);
    }
    /* Divergent barriers fail the launch, and later blocks do not run. */
    kiln_emu_set_verbose(0);
    for (int v = KT_EMU_SUM_DIVERGENT_IF; v <= KT_EMU_SUM_EARLY_EXIT; v++) {
        for (int b = 0; b < BLOCKS; b++)
            out[b] = -1;
        assert_int_equal(kt_emu_block_sum((kt_emu_sum_variant)v, BLOCKS, x, out),
                         cudaErrorLaunchFailure);
        assert_non_null(strstr(kiln_emu_last_message(), "divergent barrier"));
        assert_non_null(strstr(kiln_emu_last_message(), "block (0,0,0)"));
        for (int b = 1; b < BLOCKS; b++)
            assert_true(out[b] == -1);
    }
    kiln_emu_set_verbose(1);
    /* The error was read: the next good launch is clean. */
    emu_ok("block_sum after failures", kt_emu_block_sum(KT_EMU_SUM_OK, BLOCKS, x, out));
    assert_true(out[BLOCKS - 1] == want[BLOCKS - 1]);
    free(x);

    /* __syncthreads_count / _and / _or over 100 threads (not a warp multiple). */
    float px[300];
    for (int i = 0; i < 300; i++)
        px[i] = i < 100 ? 1.0f : i < 200 ? (i % 3 == 0 ? 1.0f : -1.0f) : -1.0f;
    int count[3], all[3], any[3];
    emu_ok("sync_reduce", kt_emu_sync_reduce(3, 100, px, count, all, any));
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 33);
    assert_int_equal(count[2], 0);
    assert_int_equal(all[0], 1);
    assert_int_equal(all[1], 0);
    assert_int_equal(any[1], 1);
    assert_int_equal(any[2], 0);
}

/* ---- counts of 0 ------------------------------------------------------ */

static void test_zero_counts(void **state)
{
    (void)state;
    float buf[4] = {7, 7, 7, 7}, in[4] = {1, 2, 3, 4};
    double part[2] = {7, 7};
    int32_t labels[1] = {0};
    cuda_sgd_args sa = {.lr = 0.1f};
    cuda_adamw_args aa = {.decay = 1, .beta1 = 0.9f, .beta2 = 0.999f};
    unsigned long before = kiln_emu_launches();
    for (int k = CUDA_EW_SILU; k <= CUDA_EW_FILL; k++)
        emu_ok("ew 0", cuda_launch_ew(NULL, (cuda_ew_kind)k, 0, in, in, buf, 1));
    emu_ok("mask 0", cuda_launch_mask(NULL, 0, 0.5f, 1, 0, buf));
    emu_ok("scale_samples n 0", cuda_launch_scale_samples(NULL, 0, 4, in, in, buf));
    emu_ok("scale_samples per 0", cuda_launch_scale_samples(NULL, 3, 0, in, in, buf));
    emu_ok("sum_squares 0", cuda_launch_sum_squares(NULL, 0, in, part));
    emu_ok("avgpool_fwd 0", cuda_launch_avgpool_fwd(NULL, 0, 4, in, buf));
    emu_ok("avgpool_bwd 0", cuda_launch_avgpool_bwd(NULL, 0, 4, in, buf));
    emu_ok("avgpool_bwd hw 0", cuda_launch_avgpool_bwd(NULL, 3, 0, in, buf));
    emu_ok("scale_channels_fwd 0", cuda_launch_scale_channels_fwd(NULL, 0, 4, in, in, buf));
    emu_ok("scale_channels_fwd hw 0", cuda_launch_scale_channels_fwd(NULL, 2, 0, in, in, buf));
    emu_ok("scale_channels_bwd 0",
           cuda_launch_scale_channels_bwd(NULL, 0, 4, in, in, in, buf, buf));
    emu_ok("bias_rows 0", cuda_launch_bias_rows(NULL, 0, 4, in, buf));
    emu_ok("bias_rows out 0", cuda_launch_bias_rows(NULL, 3, 0, in, buf));
    emu_ok("bias_grad out 0", cuda_launch_bias_grad(NULL, 3, 0, in, buf));
    emu_ok("xent 0", cuda_launch_xent(NULL, 0, 4, in, labels, 0, buf, buf, part));
    emu_ok("sgd 0", cuda_launch_sgd(NULL, 0, buf, in, buf, &sa));
    emu_ok("adamw 0", cuda_launch_adamw(NULL, 0, buf, in, buf, buf, &aa));
    uint64_t seed = 1;
    emu_ok("mask_dev 0", cuda_launch_mask_dev(NULL, 0, 0.5f, 0, buf, &seed));
    emu_ok("sgd_dev 0", cuda_launch_sgd_dev(NULL, 0, buf, in, buf, &sa));
    emu_ok("adamw_dev 0", cuda_launch_adamw_dev(NULL, 0, buf, in, buf, buf, &aa));
    assert_int_equal(kiln_emu_launches(), before);
    for (int i = 0; i < 4; i++)
        assert_true(buf[i] == 7);
    assert_true(part[0] == 7 && part[1] == 7);
    /* ...and a count of 1 does launch (the counter is live). */
    emu_ok("ew 1", cuda_launch_ew(NULL, CUDA_EW_FILL, 1, NULL, NULL, buf, 3));
    assert_int_equal(kiln_emu_launches(), before + 1);
    assert_true(buf[0] == 3 && buf[1] == 7);
}

/* ---- elementwise -------------------------------------------------------- */

static void ew_case(kiln_nn_backend *be, cuda_ew_kind kind, size_t n, const float *a,
                    const float *b)
{
    kiln_err err = {0};
    float alpha = kind == CUDA_EW_FILL ? -2.5f : 0.7f;
    float *y = fnan(n);
    emu_ok("ew", cuda_launch_ew(NULL, kind, n, kind == CUDA_EW_FILL ? NULL : a, b, y, alpha));
    float *ca = kt_dev(be, a, n), *cb = kt_dev(be, b, n), *cy = kt_dev_nan(be, n);
    int rc = KILN_OK;
    switch (kind) {
    case CUDA_EW_SILU:
        rc = be->ops->silu_forward(be, n, ca, cy, &err);
        break;
    case CUDA_EW_SILU_BWD:
        rc = be->ops->silu_backward(be, n, ca, cb, cy, &err);
        break;
    case CUDA_EW_SIGMOID:
        rc = be->ops->sigmoid_forward(be, n, ca, cy, &err);
        break;
    case CUDA_EW_SIGMOID_BWD:
        rc = be->ops->sigmoid_backward(be, n, ca, cb, cy, &err);
        break;
    case CUDA_EW_ADD:
        rc = be->ops->add(be, n, ca, cb, cy, &err);
        break;
    case CUDA_EW_MUL:
        rc = be->ops->mul(be, n, ca, cb, cy, &err);
        break;
    case CUDA_EW_SCALE: /* in place, as cuda_scale calls it */
        memcpy(y, a, n * sizeof *y);
        emu_ok("ew scale in place", cuda_launch_ew(NULL, kind, n, y, NULL, y, alpha));
        rc = be->ops->scale(be, n, alpha, ca, &err);
        memcpy(cy, ca, n * sizeof *cy);
        break;
    case CUDA_EW_FILL:
        rc = be->ops->fill(be, cy, alpha, n, &err);
        break;
    }
    cpu_ok("ew", rc, &err);
    char what[64];
    snprintf(what, sizeof what, "ew kind %d, %zu elements", (int)kind, n);
    if (kind == CUDA_EW_SILU || kind == CUDA_EW_SIGMOID) {
        /* glibc's expf (about 0.5 ulp) against the CPU's Cephes vector exp
         * (about 1 ulp) and x * sigmoid(x) against x / (1 + exp(-x)): a few
         * ulp; the CPU clamps exp's argument at ±88.38, so where the kernel's
         * exp overflows the CPU leaves a value below 1e-36 instead of 0. */
        check_near(what, y, cy, n, 1e-6, NULL, 1e-36);
    } else if (kind == CUDA_EW_SILU_BWD || kind == CUDA_EW_SIGMOID_BWD) {
        /* The same exp, then products whose factor 1 + x(1 - s) cancels near
         * x = -1.28 (fused on AVX2, not here): a few ulp of |dy|. */
        double *abs = malloc(n * sizeof *abs);
        assert_non_null(abs);
        for (size_t i = 0; i < n; i++)
            abs[i] = 1e-6 * fabs((double)b[i]) + 1e-36;
        check_near(what, y, cy, n, 1e-6, abs, 0);
        free(abs);
    } else {
        check_equal(what, y, cy, n);
    }
    free(y);
    cpu_free(be, 3, ca, cb, cy);
}

static void test_elementwise(void **state)
{
    (void)state;
    kiln_nn_backend *be = cpu_backend();
    kt_rand rnd = {101};
    for (size_t ci = 0; ci < sizeof EW_COUNTS / sizeof EW_COUNTS[0]; ci++) {
        size_t n = EW_COUNTS[ci];
        float *a = kt_randf(&rnd, n, -12, 12), *b = kt_randf(&rnd, n, -3, 3);
        if (n > 8) {
            a[0] = 0, a[1] = -100, a[2] = 100, a[3] = -87.5f, a[4] = 88.5f, a[5] = 1e-8f;
            a[6] = -1e-30f, b[6] = 1e-30f; /* an underflowing product */
        }
        float *s = kt_randf(&rnd, n, 0, 1); /* sigmoid outputs for SIGMOID_BWD */
        for (int k = CUDA_EW_SILU; k <= CUDA_EW_FILL; k++)
            ew_case(be, (cuda_ew_kind)k, n, k == CUDA_EW_SIGMOID_BWD ? s : a, b);
        free(a);
        free(b);
        free(s);
    }
    /* Past the grid-stride limit: every element written, not only the first
     * 8192 blocks' worth. */
    size_t n = BIG_COUNT;
    float *a = kt_randf(&rnd, n, -4, 4), *b = kt_randf(&rnd, n, -4, 4);
    ew_case(be, CUDA_EW_ADD, n, a, b);
    ew_case(be, CUDA_EW_SCALE, n, a, b);
    free(a);
    free(b);
    kiln_nn_backend_destroy(be);
}

/* ---- masks, per-sample scaling, squared norm ----------------------------- */

static void test_mask(void **state)
{
    (void)state;
    static const size_t counts[] = {1, 257, 70001, BIG_COUNT};
    static const float ps[] = {0.0f, 0.1f, 0.5f, 0.9f};
    for (int isa = 0; kt_isa(isa); isa++) {
        kiln_nn_backend *be = cpu_backend();
        kiln_err err = {0};
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            size_t n = counts[ci];
            for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++) {
                if (n == BIG_COUNT && pi != 2)
                    continue;
                uint64_t seed = 0x1234567ull + pi, offset = pi * 4294967000ull + ci;
                float *m = fnan(n), *md = fnan(n), *cm = kt_dev_nan(be, n);
                emu_ok("mask", cuda_launch_mask(NULL, n, ps[pi], seed, offset, m));
                /* The step-graph variant reads the seed from "device" memory. */
                emu_ok("mask_dev", cuda_launch_mask_dev(NULL, n, ps[pi], offset, md, &seed));
                cpu_ok("mask", be->ops->mask(be, n, ps[pi], seed, offset, cm, &err), &err);
                check_bits("mask", m, cm, n);
                check_bits("mask_dev", md, cm, n);
                free(m);
                free(md);
                be->ops->release(be, cm);
            }
        }
        kiln_nn_backend_destroy(be);
    }
}

static void test_scale_samples(void **state)
{
    (void)state;
    static const size_t per[] = {1, 300, 4099};
    kiln_nn_backend *be = cpu_backend();
    kiln_err err = {0};
    kt_rand rnd = {7};
    for (size_t pi = 0; pi < sizeof per / sizeof per[0]; pi++) {
        int n = 5;
        size_t total = (size_t)n * per[pi];
        float *x = kt_randf(&rnd, total, -3, 3), sc[5] = {0.0f, 1.25f, -2.0f, 1.0f, 1e-30f};
        x[0] = -1e-20f;
        float *y = fnan(total);
        emu_ok("scale_samples", cuda_launch_scale_samples(NULL, n, per[pi], x, sc, y));
        float *cx = kt_dev(be, x, total), *cs = kt_dev(be, sc, 5), *cy = kt_dev_nan(be, total);
        cpu_ok("scale_samples", be->ops->scale_samples(be, n, per[pi], cx, cs, cy, &err), &err);
        check_equal("scale_samples", y, cy, total);
        free(x);
        free(y);
        cpu_free(be, 3, cx, cs, cy);
    }
    kiln_nn_backend_destroy(be);
}

/* The loader's bytes through its table, against the CPU backend's op;
 * sizes past the launcher's block cap so the grid-stride loop turns. */
static void test_normalize_u8(void **state)
{
    (void)state;
    static const int hws[] = {1, 77, 300001};
    kiln_nn_backend *be = cpu_backend();
    kiln_err err = {0};
    float lut[3 * 256];
    for (int i = 0; i < 3 * 256; i++)
        lut[i] = (float)i * 0.25f - 33.0f;
    for (size_t hi = 0; hi < sizeof hws / sizeof hws[0]; hi++) {
        int n = 3, hw = hws[hi];
        size_t total = (size_t)n * 3 * (size_t)hw;
        uint8_t *bytes = malloc(total);
        for (size_t i = 0; i < total; i++)
            bytes[i] = (uint8_t)(i * 131 + i / 7);
        float *y = fnan(total);
        emu_ok("normalize_u8", cuda_launch_normalize_u8(NULL, n, 3, hw, bytes, lut, y));
        void *cb = be->ops->alloc(be, total, &err);
        cpu_ok("upload", be->ops->upload(be, cb, bytes, total, &err), &err);
        float *cl = kt_dev(be, lut, 3 * 256), *cy = kt_dev_nan(be, total);
        cpu_ok("normalize_u8", be->ops->normalize_u8(be, n, 3, hw, cb, cl, cy, &err), &err);
        check_equal("normalize_u8", y, cy, total);
        free(bytes);
        free(y);
        cpu_free(be, 3, cb, cl, cy);
    }
    kiln_nn_backend_destroy(be);
}

static void test_sum_squares(void **state)
{
    (void)state;
    static const size_t counts[] = {1, 1000, CUDA_SUMSQ_CHUNK, CUDA_SUMSQ_CHUNK + 1, 200003};
    kiln_nn_backend *be = cpu_backend();
    kiln_err err = {0};
    kt_rand rnd = {9};
    for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
        size_t n = counts[ci], chunks = (n + CUDA_SUMSQ_CHUNK - 1) / CUDA_SUMSQ_CHUNK;
        float *x = kt_randf(&rnd, n, -2, 2);
        double *part = malloc((chunks + 1) * sizeof *part);
        assert_non_null(part);
        for (size_t i = 0; i <= chunks; i++)
            part[i] = NAN;
        emu_ok("sum_squares", cuda_launch_sum_squares(NULL, n, x, part));
        assert_true(isnan(part[chunks])); /* exactly ceil(n / chunk) partials */
        double got = 0, want = 0, ref = 0;
        for (size_t i = 0; i < chunks; i++)
            got += part[i]; /* in order, as cuda_sum_squares adds them */
        float *cx = kt_dev(be, x, n);
        cpu_ok("sum_squares", be->ops->sum_squares(be, n, cx, &want, &err), &err);
        for (size_t i = 0; i < n; i++)
            ref += (double)x[i] * x[i];
        /* Squares of floats are exact in double; only the order of the
         * double additions differs (CPU: vector lanes; kernel: a tree). */
        if (!(fabs(got - want) <= 1e-12 * want) || !(fabs(got - ref) <= 1e-12 * ref))
            fail_msg("sum_squares of %zu: kernel %.17g, CPU %.17g, serial %.17g", n, got, want,
                     ref);
        free(x);
        free(part);
        be->ops->release(be, cx);
    }
    kiln_nn_backend_destroy(be);
}

/* ---- pooling and SE scaling --------------------------------------------- */

/* (n, c, hw): rows shorter than, equal to and longer than a block. */
static const int ROW_SHAPES[][3] = {{3, 7, 1}, {2, 5, 49}, {2, 3, 256}, {1, 4, 257}, {2, 3, 1000}};

static void test_avgpool(void **state)
{
    (void)state;
    kiln_nn_backend *be = cpu_backend();
    kiln_err err = {0};
    kt_rand rnd = {11};
    for (size_t si = 0; si < sizeof ROW_SHAPES / sizeof ROW_SHAPES[0]; si++) {
        int n = ROW_SHAPES[si][0], c = ROW_SHAPES[si][1], hw = ROW_SHAPES[si][2];
        size_t rows = (size_t)n * c, total = rows * hw;
        float *x = kt_randf(&rnd, total, -1, 3), *y = fnan(rows);
        emu_ok("avgpool_fwd", cuda_launch_avgpool_fwd(NULL, rows, hw, x, y));
        float *cx = kt_dev(be, x, total), *cy = kt_dev_nan(be, rows);
        cpu_ok("avgpool_forward", be->ops->avgpool_forward(be, n, c, hw, cx, cy, &err), &err);
        /* The kernel sums in double, the CPU in float vector lanes over
         * blocks of 512 (cpu_simd.inc): against the CPU a few float
         * roundings of the row's magnitude; against the double sum, one
         * rounding to float. */
        double *abs = malloc(rows * sizeof *abs), *ref = malloc(rows * sizeof *ref);
        assert_true(abs && ref);
        for (size_t r = 0; r < rows; r++) {
            double s = 0, m = 0;
            for (int j = 0; j < hw; j++) {
                s += x[r * hw + j];
                m += fabs((double)x[r * hw + j]);
            }
            ref[r] = s / hw;
            abs[r] = 1e-6 * m / hw;
        }
        check_near("avgpool_fwd vs CPU", y, cy, rows, 0, abs, 0);
        kt_check_close("avgpool_fwd vs double", y, ref, rows, 1.2e-7);

        float *dy = kt_randf(&rnd, rows, -2, 2), *dx = fnan(total);
        emu_ok("avgpool_bwd", cuda_launch_avgpool_bwd(NULL, rows, hw, dy, dx));
        float *cdy = kt_dev(be, dy, rows), *cdx = kt_dev_nan(be, total);
        cpu_ok("avgpool_backward", be->ops->avgpool_backward(be, n, c, hw, cdy, cdx, &err), &err);
        check_bits("avgpool_bwd", dx, cdx, total); /* the same double product, rounded once */
        free(x);
        free(y);
        free(dy);
        free(dx);
        free(abs);
        free(ref);
        cpu_free(be, 4, cx, cy, cdy, cdx);
    }
    kiln_nn_backend_destroy(be);
}

static void test_scale_channels(void **state)
{
    (void)state;
    kiln_nn_backend *be = cpu_backend();
    kiln_err err = {0};
    kt_rand rnd = {13};
    for (size_t si = 0; si < sizeof ROW_SHAPES / sizeof ROW_SHAPES[0]; si++) {
        int n = ROW_SHAPES[si][0], c = ROW_SHAPES[si][1], hw = ROW_SHAPES[si][2];
        size_t rows = (size_t)n * c, total = rows * hw;
        float *x = kt_randf(&rnd, total, -2, 2), *sc = kt_randf(&rnd, rows, 0, 1);
        float *dy = kt_randf(&rnd, total, -1, 1);
        sc[0] = 0.0f;
        float *y = fnan(total), *dx = fnan(total), *ds = fnan(rows);
        emu_ok("scale_channels_fwd", cuda_launch_scale_channels_fwd(NULL, rows, hw, x, sc, y));
        emu_ok("scale_channels_bwd",
               cuda_launch_scale_channels_bwd(NULL, rows, hw, x, sc, dy, dx, ds));
        float *cx = kt_dev(be, x, total), *cs = kt_dev(be, sc, rows), *cdy = kt_dev(be, dy, total);
        float *cy = kt_dev_nan(be, total), *cdx = kt_dev_nan(be, total),
              *cds = kt_dev_nan(be, rows);
        cpu_ok("scale_channels_forward",
               be->ops->scale_channels_forward(be, n, c, hw, cx, cs, cy, &err), &err);
        cpu_ok("scale_channels_backward",
               be->ops->scale_channels_backward(be, n, c, hw, cx, cs, cdy, cdx, cds, &err), &err);
        check_equal("scale_channels_fwd", y, cy, total);
        check_equal("scale_channels_bwd dx", dx, cdx, total);
        /* ds: the kernel's dot in double against the CPU's float vector
         * products and partial sums: a few float roundings of sum |dy x|;
         * against the double dot, one rounding to float. */
        double *abs = malloc(rows * sizeof *abs), *ref = malloc(rows * sizeof *ref);
        assert_true(abs && ref);
        for (size_t r = 0; r < rows; r++) {
            double s = 0, m = 0;
            for (int j = 0; j < hw; j++) {
                double p = (double)dy[r * hw + j] * x[r * hw + j];
                s += p;
                m += fabs(p);
            }
            ref[r] = s;
            abs[r] = 1e-6 * m;
        }
        check_near("scale_channels_bwd ds vs CPU", ds, cds, rows, 0, abs, 0);
        for (size_t r = 0; r < rows; r++)
            if (!(fabs((double)ds[r] - ref[r]) <= 6e-8 * fabs(ref[r]) + 1e-30))
                fail_msg("ds[%zu] = %.9g, double dot %.17g", r, (double)ds[r], ref[r]);
        free(x), free(sc), free(dy), free(y), free(dx), free(ds), free(abs), free(ref);
        cpu_free(be, 6, cx, cs, cdy, cy, cdx, cds);
    }
    kiln_nn_backend_destroy(be);
}

/* ---- linear's bias ------------------------------------------------------ */

static void test_bias(void **state)
{
    (void)state;
    static const int shapes[][2] = {{1, 1}, {3, 300}, {7, 1000}, {64, 257}, {0, 5}};
    for (int isa = 0; kt_isa(isa); isa++) {
        kiln_nn_backend *be = cpu_backend();
        kiln_err err = {0};
        kt_rand rnd = {17};
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int n = shapes[si][0], out = shapes[si][1];
            size_t total = (size_t)n * out;
            float *bias = kt_randf(&rnd, out, -1, 1), *dy = kt_randf(&rnd, total, -1, 1);
            float *y = fnan(total), *db = fnan(out);
            if (n > 0) {
                /* y = bias broadcast: CPU linear_forward of zeros with that
                 * bias (bias + 0, exact) and the direct definition. */
                emu_ok("bias_rows", cuda_launch_bias_rows(NULL, n, out, bias, y));
                float *zx = calloc((size_t)n, sizeof *zx), *zw = calloc((size_t)out, sizeof *zw);
                assert_true(zx && zw);
                float *cx = kt_dev(be, zx, n), *cw = kt_dev(be, zw, out);
                float *cb = kt_dev(be, bias, out), *cy = kt_dev_nan(be, total);
                cpu_ok("linear_forward",
                       be->ops->linear_forward(be, n, 1, out, cx, cw, cb, cy, &err), &err);
                check_equal("bias_rows vs linear_forward", y, cy, total);
                for (size_t i = 0; i < total; i++)
                    assert_memory_equal(&y[i], &bias[i % out], sizeof(float));
                free(zx);
                free(zw);
                cpu_free(be, 4, cx, cw, cb, cy);
            }
            /* dbias: rows summed in order in double, as linear_backward. */
            emu_ok("bias_grad", cuda_launch_bias_grad(NULL, n, out, dy, db));
            float *one = kt_randf(&rnd, n > 0 ? (size_t)n : 1, -1, 1);
            float *w = kt_randf(&rnd, out, -1, 1);
            float *cx = kt_dev(be, one, n), *cw = kt_dev(be, w, out), *cdy = kt_dev(be, dy, total);
            float *cdw = kt_dev_nan(be, out), *cdb = kt_dev_nan(be, out);
            cpu_ok("linear_backward",
                   be->ops->linear_backward(be, n, 1, out, cx, cw, cdy, NULL, cdw, cdb, &err),
                   &err);
            check_bits("bias_grad", db, cdb, out);
            free(bias), free(dy), free(y), free(db), free(one), free(w);
            cpu_free(be, 5, cx, cw, cdy, cdw, cdb);
        }
        kiln_nn_backend_destroy(be);
    }
}

/* ---- loss --------------------------------------------------------------- */

static void test_xent(void **state)
{
    (void)state;
    static const struct {
        int n, classes;
        float ls;
    } cases[] = {{1, 1, 0.0f}, {4, 10, 0.1f}, {3, 1000, 0.0f}, {2, 257, 0.2f}, {5, 2, 1.0f}};
    kiln_nn_backend *be = cpu_backend();
    kiln_err err = {0};
    kt_rand rnd = {19};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int n = cases[k].n, classes = cases[k].classes;
        size_t total = (size_t)n * classes;
        float *logits = kt_randf(&rnd, total, -5, 5);
        if (total > 3)
            logits[1] = 80.0f, logits[2] = -80.0f; /* a dominant and a negligible class */
        int32_t *labels = malloc((size_t)n * sizeof *labels);
        assert_non_null(labels);
        for (int i = 0; i < n; i++)
            labels[i] = (int32_t)((i * 7 + 3) % classes);
        float *probs = fnan(total), *dl = fnan(total);
        double *rows = malloc((size_t)n * sizeof *rows);
        assert_non_null(rows);
        emu_ok("xent",
               cuda_launch_xent(NULL, n, classes, logits, labels, cases[k].ls, probs, dl, rows));
        float *cl = kt_dev(be, logits, total), *cp = kt_dev_nan(be, total);
        float *cd = kt_dev_nan(be, total);
        double loss = NAN, got = 0;
        cpu_ok("xent",
               be->ops->xent_forward_backward(be, n, classes, cl, labels, cases[k].ls, cp, cd,
                                              &loss, &err),
               &err);
        for (int i = 0; i < n; i++)
            got += rows[i];
        got /= n; /* as cuda_xent_forward_backward */
        /* Both in double from the same max; the sums of exp and of the
         * logits go in a tree here, in order on the CPU, and device exp/log
         * are glibc's here: differences of a few double ulp, which the
         * rounding to float almost always hides. */
        check_near("xent probs", probs, cp, total, 2.4e-7, NULL, 1e-37);
        check_near("xent dlogits", dl, cd, total, 2.4e-7, NULL, 1e-12);
        if (!(fabs(got - loss) <= 1e-12 * fabs(loss) + 1e-12))
            fail_msg("xent case %zu: loss %.17g, the CPU's %.17g", k, got, loss);
        free(logits), free(labels), free(probs), free(dl), free(rows);
        cpu_free(be, 3, cl, cp, cd);
    }

    /* A label outside [0, classes) (not checked inside a step graph) makes
     * its row NaN; the other rows are the CPU's with that row valid. */
    enum { N = 3, C = 300 };
    float *logits = kt_randf(&rnd, (size_t)N * C, -5, 5);
    float *probs = fnan((size_t)N * C), *dl = fnan((size_t)N * C);
    double rows[N];
    for (int bad = 0; bad < 2; bad++) {
        int32_t labels[N] = {4, bad ? -1 : C, 299};
        emu_ok("xent bad label",
               cuda_launch_xent(NULL, N, C, logits, labels, 0.1f, probs, dl, rows));
        assert_true(isnan(rows[1]) && !isnan(rows[0]) && !isnan(rows[2]));
        for (int c = 0; c < C; c++)
            assert_true(isnan(probs[C + c]) && isnan(dl[C + c]));
        labels[1] = 0;
        float *cl = kt_dev(be, logits, (size_t)N * C), *cp = kt_dev_nan(be, (size_t)N * C);
        float *cd = kt_dev_nan(be, (size_t)N * C);
        double loss;
        cpu_ok("xent",
               be->ops->xent_forward_backward(be, N, C, cl, labels, 0.1f, cp, cd, &loss, &err),
               &err);
        for (int r = 0; r < N; r += 2) {
            check_near("xent probs beside a bad label", probs + r * C, cp + r * C, C, 2.4e-7, NULL,
                       1e-37);
            check_near("xent dlogits beside a bad label", dl + r * C, cd + r * C, C, 2.4e-7, NULL,
                       1e-12);
        }
        cpu_free(be, 3, cl, cp, cd);
    }
    free(logits), free(probs), free(dl);
    kiln_nn_backend_destroy(be);
}

/* ---- optimizers: bit for bit against every CPU instruction set ---------- */

static void test_sgd(void **state)
{
    (void)state;
    static const struct {
        float momentum, wd;
        int nesterov;
    } v[] = {{0, 0, 0}, {0, 5e-4f, 0}, {0.9f, 0, 0}, {0.9f, 5e-4f, 0}, {0.9f, 1e-2f, 1}};
    static const size_t counts[] = {1, 70001, BIG_COUNT};
    for (int isa = 0; kt_isa(isa); isa++) {
        kiln_nn_backend *be = cpu_backend();
        kiln_err err = {0};
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            size_t n = counts[ci];
            kt_rand rnd = {23 + ci};
            float *p = kt_randf(&rnd, n, -1, 1), *buf = calloc(n, sizeof *buf);
            assert_non_null(buf);
            float *cp = kt_dev(be, p, n), *cb = kt_dev(be, buf, n);
            /* The same steps through cuda_launch_sgd_dev (args in "device"
             * memory, as a step graph's slot). */
            float *pd = malloc(n * sizeof *pd), *bufd = calloc(n, sizeof *bufd);
            assert_true(pd && bufd);
            memcpy(pd, p, n * sizeof *pd);
            for (size_t vi = 0; vi < sizeof v / sizeof v[0]; vi++) {
                if (n == BIG_COUNT && vi != 4)
                    continue;
                cuda_sgd_args a = {.lr = 0.1f,
                                   .momentum = v[vi].momentum,
                                   .wd = v[vi].wd,
                                   .nesterov = v[vi].nesterov};
                for (int step = 0; step < 2; step++) {
                    float *g = kt_randf(&rnd, n, -3, 3), *cg = kt_dev(be, g, n);
                    emu_ok("sgd", cuda_launch_sgd(NULL, n, p, g, buf, &a));
                    emu_ok("sgd_dev", cuda_launch_sgd_dev(NULL, n, pd, g, bufd, &a));
                    cpu_ok("sgd",
                           be->ops->sgd_step(be, n, cp, cg, cb, a.lr, a.momentum, a.nesterov, a.wd,
                                             &err),
                           &err);
                    check_bits("sgd param", p, cp, n);
                    check_bits("sgd_dev param", pd, cp, n);
                    if (a.momentum != 0) {
                        check_bits("sgd momentum", buf, cb, n);
                        check_bits("sgd_dev momentum", bufd, cb, n);
                    }
                    free(g);
                    be->ops->release(be, cg);
                }
            }
            free(p);
            free(buf);
            free(pd);
            free(bufd);
            cpu_free(be, 2, cp, cb);
        }
        kiln_nn_backend_destroy(be);
    }
}

static void test_adamw(void **state)
{
    (void)state;
    static const float wds[] = {0.0f, 0.05f};
    static const size_t counts[] = {1, 70001, BIG_COUNT};
    const float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
    for (int isa = 0; kt_isa(isa); isa++) {
        kiln_nn_backend *be = cpu_backend();
        kiln_err err = {0};
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++) {
            size_t n = counts[ci];
            for (size_t wi = 0; wi < sizeof wds / sizeof wds[0]; wi++) {
                if (n == BIG_COUNT && wi == 0)
                    continue;
                kt_rand rnd = {29 + ci};
                float *p = kt_randf(&rnd, n, -1, 1), *m = calloc(n, sizeof *m);
                float *v = calloc(n, sizeof *v);
                assert_true(m && v);
                float *cp = kt_dev(be, p, n), *cm = kt_dev(be, m, n), *cv = kt_dev(be, v, n);
                /* And through cuda_launch_adamw_dev (args in "device" memory). */
                float *pd = malloc(n * sizeof *pd), *md = calloc(n, sizeof *md);
                float *vd = calloc(n, sizeof *vd);
                assert_true(pd && md && vd);
                memcpy(pd, p, n * sizeof *pd);
                for (int64_t step = 1; step <= 3; step++) {
                    /* The host scalars as cuda_adamw_step computes them. */
                    cuda_adamw_args a = cuda_adamw_args_make(lr, beta1, beta2, eps, wds[wi], step);
                    float *g = kt_randf(&rnd, n, -2, 2);
                    if (n > 4)
                        g[0] = 0.0f, g[1] = 1e-20f, g[2] = -1e3f; /* v = 0, tiny, large */
                    float *cg = kt_dev(be, g, n);
                    emu_ok("adamw", cuda_launch_adamw(NULL, n, p, g, m, v, &a));
                    emu_ok("adamw_dev", cuda_launch_adamw_dev(NULL, n, pd, g, md, vd, &a));
                    cpu_ok("adamw",
                           be->ops->adamw_step(be, n, cp, cg, cm, cv, lr, beta1, beta2, eps,
                                               wds[wi], step, &err),
                           &err);
                    check_bits("adamw param", p, cp, n);
                    check_bits("adamw m", m, cm, n);
                    check_bits("adamw v", v, cv, n);
                    check_bits("adamw_dev param", pd, cp, n);
                    check_bits("adamw_dev m", md, cm, n);
                    check_bits("adamw_dev v", vd, cv, n);
                    free(g);
                    be->ops->release(be, cg);
                }
                free(p), free(m), free(v), free(pd), free(md), free(vd);
                cpu_free(be, 3, cp, cm, cv);
            }
        }
        kiln_nn_backend_destroy(be);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_emu_indices),    cmocka_unit_test(test_emu_barriers),
        cmocka_unit_test(test_zero_counts),    cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_mask),           cmocka_unit_test(test_scale_samples),
        cmocka_unit_test(test_sum_squares),    cmocka_unit_test(test_avgpool),
        cmocka_unit_test(test_scale_channels), cmocka_unit_test(test_bias),
        cmocka_unit_test(test_xent),           cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adamw),          cmocka_unit_test(test_normalize_u8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
