/* tests/test_resize.c — lib/data/resize: antialiased bilinear resizing
 * against PIL's Image.resize(BILINEAR) and torchvision's
 * Resize + CenterCrop on PIL images. Both comparisons are expected to be
 * exact (the code is PIL's algorithm in PIL's fixed point); the tests
 * allow a difference of 1 per channel so a future SIMD path with other
 * rounding still passes. Needs /usr/bin/python3 with PIL (and torchvision
 * for the centre crop); prints SKIPPED and skips without them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "support/imgbuild.h"
#include "support/testutil.h"
#include "support/zipbuild.h"

#define PY "/usr/bin/python3"
#define TOLERANCE 1

typedef struct fixture {
    char *dir;
    char *src; /* <dir>/src.ppm */
    char *out; /* <dir>/out.raw: PIL's pixels */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = kt_mkdtemp();
    f->src = kt_path(f->dir, "src.ppm");
    f->out = kt_path(f->dir, "out.raw");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    free(f->src);
    free(f->out);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

/* Noise-like but deterministic content: resizing errors cannot hide. */
static kiln_image noise_image(int w, int h, uint32_t seed)
{
    kiln_image img;
    kiln_err err = {0};
    assert_int_equal(kiln_image_alloc(&img, w, h, &err), KILN_OK);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        s = s * 1664525u + 1013904223u;
        /* Mix smooth ramps with noise so both edges and gradients count. */
        img.pixels[i] = (uint8_t)(((s >> 24) + (i / 3 % (size_t)w) * 2) & 0xff);
    }
    return img;
}

static int max_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        m = d > m ? d : m;
    }
    return m;
}

static void skip_without(const char *module)
{
    if (kt_system(PY " -c 'import %s' >/dev/null 2>&1", module) != 0) {
        print_message("SKIPPED: " PY " with %s not found\n", module);
        skip();
    }
}

/* Run a python snippet with the PIL image `im` loaded from f->src; it
 * must leave the result image in `r`, whose bytes are read back. */
static uint8_t *run_pil(const fixture *f, const char *code, size_t expect_len)
{
    char *output = NULL;
    int st = kt_run_capture(&output,
                            PY " -c 'import sys; from PIL import Image; "
                               "B = getattr(Image, \"Resampling\", Image).BILINEAR; "
                               "im = Image.open(sys.argv[1]); %s; "
                               "open(sys.argv[2], \"wb\").write(r.tobytes())' '%s' '%s'",
                            code, f->src, f->out);
    if (st != 0)
        fail_msg("python failed (%d): %s", st, output);
    free(output);
    size_t n;
    uint8_t *got = kt_read_all(f->out, &n);
    assert_int_equal(n, expect_len);
    return got;
}

/* ---------------- basics ---------------- */

static void test_identity(void **state)
{
    (void)state;
    kiln_image src = noise_image(37, 23, 1), dst;
    kiln_err err = {0};
    assert_int_equal(kiln_image_alloc(&dst, 37, 23, &err), KILN_OK);
    assert_int_equal(kiln_image_resize_box(&src, 0, 0, 37, 23, &dst, NULL, &err), KILN_OK);
    assert_memory_equal(dst.pixels, src.pixels, 37 * 23 * 3);
    kiln_image_free(&dst);
    /* A box of the output's size is a plain crop. */
    assert_int_equal(kiln_image_alloc(&dst, 10, 7, &err), KILN_OK);
    assert_int_equal(kiln_image_resize_box(&src, 5, 9, 10, 7, &dst, NULL, &err), KILN_OK);
    for (int y = 0; y < 7; y++)
        assert_memory_equal(dst.pixels + y * 30, src.pixels + ((y + 9) * 37 + 5) * 3, 30);
    kiln_image_free(&dst);
    /* Centre crop of an image whose shorter side is already the size. */
    assert_int_equal(kiln_image_resize_center_crop(&src, 23, &dst, &err), KILN_OK);
    for (int y = 0; y < 23; y++)
        assert_memory_equal(dst.pixels + y * 69, src.pixels + (y * 37 + 7) * 3, 69);
    kiln_image_free(&dst);
    kiln_image_free(&src);
}

static void test_constant(void **state)
{
    (void)state;
    static const int sizes[][2] = {{1, 1}, {5, 3}, {64, 64}, {200, 7}, {3, 150}};
    kiln_image src;
    kiln_err err = {0};
    assert_int_equal(kiln_image_alloc(&src, 50, 40, &err), KILN_OK);
    for (int i = 0; i < 50 * 40; i++) {
        src.pixels[i * 3] = 200;
        src.pixels[i * 3 + 1] = 17;
        src.pixels[i * 3 + 2] = 255;
    }
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        kiln_image dst;
        assert_int_equal(kiln_image_alloc(&dst, sizes[s][0], sizes[s][1], &err), KILN_OK);
        assert_int_equal(kiln_image_resize_box(&src, 3, 2, 41, 33, &dst, NULL, &err), KILN_OK);
        for (int i = 0; i < dst.width * dst.height; i++) {
            assert_int_equal(dst.pixels[i * 3], 200);
            assert_int_equal(dst.pixels[i * 3 + 1], 17);
            assert_int_equal(dst.pixels[i * 3 + 2], 255);
        }
        kiln_image_free(&dst);
    }
    kiln_image_free(&src);
}

/* A scratch of exactly kiln_resize_scratch_size bytes is enough (ASan
 * sees any overrun: the buffer is malloc'ed to that size), gives the
 * same pixels as letting the resizer allocate, and the size for the whole
 * image bounds the size for any box inside it (the loader relies on it). */
static void test_scratch(void **state)
{
    (void)state;
    static const int cases[][6] = {
        /* x0, y0, w, h, out_w, out_h */
        {20, 10, 250, 180, 224, 224}, {0, 0, 300, 200, 224, 224}, {5, 7, 3, 190, 224, 224},
        {0, 0, 300, 200, 1, 1},       {100, 50, 1, 1, 64, 32},    {0, 0, 300, 200, 600, 17},
    };
    kiln_image src = noise_image(300, 200, 3);
    kiln_err err = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int *c = cases[i];
        kiln_image a, b;
        assert_int_equal(kiln_image_alloc(&a, c[4], c[5], &err), KILN_OK);
        assert_int_equal(kiln_image_alloc(&b, c[4], c[5], &err), KILN_OK);
        size_t n = kiln_resize_scratch_size(c[2], c[3], c[4], c[5]);
        assert_true(n > 0);
        assert_true(n <= kiln_resize_scratch_size(300, 200, c[4], c[5]));
        void *scratch = malloc(n);
        assert_int_equal(kiln_image_resize_box(&src, c[0], c[1], c[2], c[3], &a, scratch, &err),
                         KILN_OK);
        assert_int_equal(kiln_image_resize_box(&src, c[0], c[1], c[2], c[3], &b, NULL, &err),
                         KILN_OK);
        assert_memory_equal(a.pixels, b.pixels, (size_t)c[4] * c[5] * 3);
        free(scratch);
        kiln_image_free(&a);
        kiln_image_free(&b);
    }
    assert_int_equal(kiln_resize_scratch_size(0, 10, 10, 10), 0);
    kiln_image_free(&src);
}

static void test_bad_args(void **state)
{
    (void)state;
    kiln_image src = noise_image(20, 10, 4), dst;
    kiln_err err = {0};
    assert_int_equal(kiln_image_alloc(&dst, 5, 5, &err), KILN_OK);
    assert_int_equal(kiln_image_resize_box(&src, 1, 0, 20, 10, &dst, NULL, &err), KILN_EINVAL);
    assert_int_equal(kiln_image_resize_box(&src, 0, -1, 5, 5, &dst, NULL, &err), KILN_EINVAL);
    assert_int_equal(kiln_image_resize_box(&src, 0, 0, 0, 5, &dst, NULL, &err), KILN_EINVAL);
    assert_int_equal(kiln_image_resize_box(&src, 0, 0, 5, 11, &dst, NULL, &err), KILN_EINVAL);
    assert_int_equal(err.code, KILN_EINVAL);
    kiln_image out = {.width = 1};
    assert_int_equal(kiln_image_resize_center_crop(&src, 0, &out, &err), KILN_EINVAL);
    assert_null(out.pixels);
    kiln_image_free(&dst);
    kiln_image_free(&src);
}

/* ---------------- against PIL ---------------- */

typedef struct box_case {
    int sw, sh;       /* source */
    int x0, y0, w, h; /* box */
    int ow, oh;       /* output */
} box_case;

static void test_box_vs_pil(void **state)
{
    fixture *f = *state;
    skip_without("PIL");
    static const box_case cases[] = {
        {64, 48, 0, 0, 64, 48, 32, 24},     /* exact halving */
        {64, 48, 0, 0, 64, 48, 23, 17},     /* odd downscale */
        {64, 48, 0, 0, 64, 48, 150, 101},   /* upscale */
        {64, 48, 0, 0, 64, 48, 100, 20},    /* up in x, down in y */
        {64, 48, 0, 0, 64, 48, 64, 30},     /* vertical only */
        {64, 48, 0, 0, 64, 48, 9, 48},      /* horizontal only */
        {97, 71, 13, 5, 50, 61, 37, 29},    /* crop then shrink */
        {97, 71, 40, 30, 57, 41, 224, 224}, /* crop at the far edge, grow */
        {300, 200, 0, 0, 300, 200, 7, 5},   /* strong shrink: wide support */
        {256, 256, 17, 3, 201, 188, 224, 224},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const box_case *c = &cases[i];
        kiln_image src = noise_image(c->sw, c->sh, (uint32_t)i), dst;
        kiln_err err = {0};
        kt_write_ppm(f->src, src.pixels, c->sw, c->sh);
        assert_int_equal(kiln_image_alloc(&dst, c->ow, c->oh, &err), KILN_OK);
        assert_int_equal(kiln_image_resize_box(&src, c->x0, c->y0, c->w, c->h, &dst, NULL, &err),
                         KILN_OK);
        /* torchvision's resized_crop on PIL: crop, then resize the crop. */
        char code[256];
        snprintf(code, sizeof code, "r = im.crop((%d, %d, %d, %d)).resize((%d, %d), B)", c->x0,
                 c->y0, c->x0 + c->w, c->y0 + c->h, c->ow, c->oh);
        uint8_t *want = run_pil(f, code, (size_t)c->ow * c->oh * 3);
        int d = max_diff(want, dst.pixels, (size_t)c->ow * c->oh * 3);
        print_message("%dx%d box (%d,%d %dx%d) -> %dx%d: max abs diff vs PIL %d\n", c->sw, c->sh,
                      c->x0, c->y0, c->w, c->h, c->ow, c->oh, d);
        assert_true(d <= TOLERANCE);
        /* With the whole image as the box, also PIL's resize(box=...). */
        if (c->x0 == 0 && c->w == c->sw && c->y0 == 0 && c->h == c->sh) {
            free(want);
            snprintf(code, sizeof code, "r = im.resize((%d, %d), B, box=(0, 0, %d, %d))", c->ow,
                     c->oh, c->sw, c->sh);
            want = run_pil(f, code, (size_t)c->ow * c->oh * 3);
            assert_true(max_diff(want, dst.pixels, (size_t)c->ow * c->oh * 3) <= TOLERANCE);
        }
        free(want);
        kiln_image_free(&dst);
        kiln_image_free(&src);
    }
}

/* Importing torch takes seconds: one python run does every case. */
static void torchvision_center_crops(const fixture *f, const int (*cases)[3], size_t n)
{
    size_t cap = 512 + n * 600, len = 0;
    char *cmd = malloc(cap);
    len += (size_t)snprintf(cmd, cap,
                            PY " -c 'import sys; from PIL import Image; "
                               "import torchvision.transforms as T; a = sys.argv[1:]; "
                               "[open(a[i + 1], \"wb\").write(T.CenterCrop(int(a[i + 2]))("
                               "T.Resize(int(a[i + 2]))(Image.open(a[i]))).tobytes()) "
                               "for i in range(0, len(a), 3)]'");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(cmd + len, cap - len, " '%s/src%zu.ppm' '%s/out%zu.raw' %d", f->dir,
                                i, f->dir, i, cases[i][2]);
    char *output = NULL;
    int st = kt_run_capture(&output, "%s", cmd);
    if (st != 0)
        fail_msg("python failed (%d): %s", st, output);
    free(output);
    free(cmd);
}

static void test_center_crop_vs_torchvision(void **state)
{
    fixture *f = *state;
    skip_without("PIL");
    skip_without("torchvision");
    static const int cases[][3] = {
        {320, 240, 224}, /* landscape, the usual DCT-scaled photo */
        {240, 320, 224}, /* portrait */
        {333, 251, 224}, /* odd: longer side int(224 * 333 / 251) = 297 */
        {301, 224, 224}, /* shorter side already the size: crop only */
        {224, 301, 224}, /* crop offset round(38.5) = 38: half to even */
        {303, 224, 224}, /* round(39.5) = 40 */
        {225, 300, 224}, /* longer side int(298.66) = 298 */
        {100, 80, 224},  /* upscale */
        {500, 499, 64},  /* strong shrink */
        {224, 224, 224}, /* nothing to do */
    };
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "src%zu.ppm", i);
        char *path = kt_path(f->dir, name);
        kiln_image src = noise_image(cases[i][0], cases[i][1], (uint32_t)(100 + i));
        kt_write_ppm(path, src.pixels, src.width, src.height);
        kiln_image_free(&src);
        free(path);
    }
    torchvision_center_crops(f, cases, n);
    for (size_t i = 0; i < n; i++) {
        int w = cases[i][0], h = cases[i][1], size = cases[i][2];
        kiln_image src = noise_image(w, h, (uint32_t)(100 + i)), dst;
        kiln_err err = {0};
        assert_int_equal(kiln_image_resize_center_crop(&src, size, &dst, &err), KILN_OK);
        assert_int_equal(dst.width, size);
        assert_int_equal(dst.height, size);
        char name[32];
        snprintf(name, sizeof name, "out%zu.raw", i);
        char *path = kt_path(f->dir, name);
        size_t len;
        uint8_t *want = kt_read_all(path, &len);
        assert_int_equal(len, (size_t)size * size * 3);
        int d = max_diff(want, dst.pixels, len);
        print_message("%dx%d -> Resize(%d)+CenterCrop(%d): max abs diff vs torchvision %d\n", w, h,
                      size, size, d);
        assert_true(d <= TOLERANCE);
        free(want);
        free(path);
        kiln_image_free(&dst);
        kiln_image_free(&src);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_constant),
        cmocka_unit_test(test_scratch),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test_setup_teardown(test_box_vs_pil, setup, teardown),
        cmocka_unit_test_setup_teardown(test_center_crop_vs_torchvision, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
