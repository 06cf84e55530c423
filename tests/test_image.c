/* tests/test_image.c — lib/data/image: JPEG and PNG decoding in every
 * mode, EXIF orientation, DCT scaling, and every way decoding is refused.
 * Inputs are encoded here with libjpeg/libexif/libpng (support/imgbuild). */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "support/imgbuild.h"
#include "support/testutil.h"
#include "support/zipbuild.h"

/* ---------------- helpers ---------------- */

static double mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += abs((int)a[i] - (int)b[i]);
    return n ? s / (double)n : 0;
}

static void decode_ok(const uint8_t *data, size_t len, int min_side, kiln_image *img)
{
    kiln_decode_opts o = {.min_side = min_side};
    kiln_err err = {0};
    int rc = kiln_image_decode(data, len, &o, img, &err);
    if (rc != KILN_OK)
        fail_msg("decode failed: %s %s", kiln_code_name(rc), err.msg);
    assert_non_null(img->pixels);
}

static void expect_fail(const uint8_t *data, size_t len, uint64_t max_pixels, kiln_code code,
                        const char *needle)
{
    kiln_decode_opts o = {.max_pixels = max_pixels};
    kiln_err err = {0};
    kiln_image img = {.width = 7, .height = 7};
    int rc = kiln_image_decode(data, len, &o, &img, &err);
    if (rc != (int)code)
        fail_msg("expected %s, got %s: %s", kiln_code_name(code), kiln_code_name(rc), err.msg);
    assert_int_equal(err.code, code);
    assert_null(img.pixels);
    assert_int_equal(img.width, 0);
    assert_int_equal(img.height, 0);
    if (needle && !strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

/* The decoded JPEG must look like `want`: small mean error, and the
 * top-left block blue (the one feature that gives the orientation away). */
static void assert_looks_like(const kiln_image *img, const uint8_t *want, int w, int h)
{
    assert_int_equal(img->width, w);
    assert_int_equal(img->height, h);
    double mad = mean_abs_diff(img->pixels, want, (size_t)w * h * 3);
    if (mad > 3.0)
        fail_msg("mean abs diff %.2f", mad);
    const uint8_t *p = img->pixels + ((size_t)(h / 8) * w + w / 8) * 3;
    assert_true(p[0] < 30 && p[1] < 30 && p[2] > 225);
}

static uint8_t *pattern_jpeg(int w, int h, const kt_jpeg_opts *o, size_t *len)
{
    uint8_t *rgb = kt_img_pattern(w, h);
    uint8_t *jpg = kt_jpeg_encode(rgb, w, h, o, len);
    free(rgb);
    return jpg;
}

static int have_pil(void)
{
    return kt_system("/usr/bin/python3 -c 'import PIL' >/dev/null 2>&1") == 0;
}

/* ---------------- detection ---------------- */

static void test_detect(void **state)
{
    (void)state;
    static const uint8_t jpg[] = {0xff, 0xd8, 0xff, 0xe0};
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const uint8_t gif[] = "GIF89a";
    assert_int_equal(kiln_image_detect(jpg, sizeof jpg), KILN_IMAGE_JPEG);
    assert_int_equal(kiln_image_detect(png, sizeof png), KILN_IMAGE_PNG);
    assert_int_equal(kiln_image_detect(png, sizeof png - 1), KILN_IMAGE_UNKNOWN);
    assert_int_equal(kiln_image_detect(jpg, 2), KILN_IMAGE_UNKNOWN);
    assert_int_equal(kiln_image_detect(gif, sizeof gif), KILN_IMAGE_UNKNOWN);
    assert_int_equal(kiln_image_detect(NULL, 0), KILN_IMAGE_UNKNOWN);
}

/* ---------------- JPEG ---------------- */

static void test_jpeg_rgb(void **state)
{
    (void)state;
    int w = 64, h = 48;
    uint8_t *rgb = kt_img_pattern(w, h);
    kt_jpeg_opts o = {.quality = 95};
    size_t len;
    uint8_t *jpg = kt_jpeg_encode(rgb, w, h, &o, &len);
    assert_int_equal(kiln_image_detect(jpg, len), KILN_IMAGE_JPEG);
    kiln_image img;
    decode_ok(jpg, len, 0, &img);
    assert_looks_like(&img, rgb, w, h);
    kiln_image_free(&img);
    assert_null(img.pixels);
    o.progressive = 1;
    free(jpg);
    jpg = kt_jpeg_encode(rgb, w, h, &o, &len);
    decode_ok(jpg, len, 0, &img);
    assert_looks_like(&img, rgb, w, h);
    kiln_image_free(&img);
    free(jpg);
    free(rgb);
}

static void test_jpeg_gray(void **state)
{
    (void)state;
    int w = 40, h = 30;
    uint8_t gray[40 * 30];
    for (int i = 0; i < w * h; i++)
        gray[i] = (uint8_t)(i % w * 6);
    kt_jpeg_opts o = {.components = 1, .quality = 100};
    size_t len;
    uint8_t *jpg = kt_jpeg_encode(gray, w, h, &o, &len);
    kiln_image img;
    decode_ok(jpg, len, 0, &img);
    assert_int_equal(img.width, w);
    assert_int_equal(img.height, h);
    for (int i = 0; i < w * h; i++) {
        const uint8_t *p = img.pixels + i * 3;
        assert_int_equal(p[0], p[1]);
        assert_int_equal(p[1], p[2]);
        assert_true(abs(p[0] - gray[i]) <= 3);
    }
    kiln_image_free(&img);
    free(jpg);
}

/* Adobe CMYK, stored inverted: C' = R, M' = G, Y' = B, K' = 255 (no ink)
 * decodes to R G B. */
static void test_jpeg_cmyk(void **state)
{
    (void)state;
    int w = 32, h = 32;
    uint8_t *rgb = kt_img_pattern(w, h);
    uint8_t *cmyk = malloc((size_t)w * h * 4);
    for (int i = 0; i < w * h; i++) {
        memcpy(cmyk + i * 4, rgb + i * 3, 3);
        cmyk[i * 4 + 3] = 255;
    }
    kt_jpeg_opts o = {.components = 4, .quality = 95};
    size_t len;
    uint8_t *jpg = kt_jpeg_encode(cmyk, w, h, &o, &len);
    kiln_image img;
    decode_ok(jpg, len, 0, &img);
    assert_looks_like(&img, rgb, w, h);
    kiln_image_free(&img);
    free(jpg);
    free(cmyk);
    free(rgb);
}

static void expect_scaled(const uint8_t *jpg, size_t len, int min_side, int w, int h)
{
    kiln_image img;
    decode_ok(jpg, len, min_side, &img);
    if (img.width != w || img.height != h)
        fail_msg("min_side %d: got %dx%d, want %dx%d", min_side, img.width, img.height, w, h);
    kiln_image_free(&img);
}

static void test_jpeg_dct_scaling(void **state)
{
    (void)state;
    size_t len;
    uint8_t *jpg = pattern_jpeg(640, 480, NULL, &len);
    expect_scaled(jpg, len, 0, 640, 480);
    expect_scaled(jpg, len, 224, 320, 240); /* 4/8: 240 >= 224, 3/8 gives 180 */
    expect_scaled(jpg, len, 240, 320, 240);
    expect_scaled(jpg, len, 241, 400, 300); /* 5/8 */
    expect_scaled(jpg, len, 100, 160, 120); /* 2/8 */
    expect_scaled(jpg, len, 60, 80, 60);    /* 1/8 */
    expect_scaled(jpg, len, 1, 80, 60);
    expect_scaled(jpg, len, 480, 640, 480);
    expect_scaled(jpg, len, 1000, 640, 480); /* never upscales */
    /* The scaled image still looks like the pattern. */
    kiln_image img;
    decode_ok(jpg, len, 224, &img);
    const uint8_t *p = img.pixels + ((size_t)10 * img.width + 10) * 3;
    assert_true(p[0] < 30 && p[1] < 30 && p[2] > 225);
    kiln_image_free(&img);
    free(jpg);
    /* Rotated by EXIF: min_side applies to the upright image. */
    kt_jpeg_opts o = {.orientation = 6};
    jpg = pattern_jpeg(640, 480, &o, &len);
    expect_scaled(jpg, len, 224, 240, 320);
    free(jpg);
}

/* The stored image for orientation `o` is the upright one transformed by
 * the inverse of what a viewer does for `o`; decoding must undo it. */
static uint8_t *stored_for(const uint8_t *up, int w, int h, int o, int *sw, int *sh)
{
    uint8_t *a = NULL, *b = NULL;
    *sw = o >= 5 ? h : w;
    *sh = o >= 5 ? w : h;
    switch (o) {
    case 2: /* viewer mirrors left-right */
        return kt_img_transform(up, w, h, 'h');
    case 3: /* viewer rotates 180 */
        a = kt_img_transform(up, w, h, 'h');
        b = kt_img_transform(a, w, h, 'v');
        break;
    case 4: /* viewer mirrors top-bottom */
        return kt_img_transform(up, w, h, 'v');
    case 5: /* viewer transposes */
        return kt_img_transform(up, w, h, 't');
    case 6: /* viewer rotates clockwise: stored is rotated counter-clockwise */
        a = kt_img_transform(up, w, h, 't');
        b = kt_img_transform(a, h, w, 'v');
        break;
    case 7: /* viewer transposes across the other diagonal */
        a = kt_img_transform(up, w, h, 't');
        b = kt_img_transform(a, h, w, 'h');
        free(a);
        a = b;
        b = kt_img_transform(a, h, w, 'v');
        break;
    case 8: /* viewer rotates counter-clockwise: stored is rotated clockwise */
        a = kt_img_transform(up, w, h, 't');
        b = kt_img_transform(a, h, w, 'h');
        break;
    default:
        b = malloc((size_t)w * h * 3);
        memcpy(b, up, (size_t)w * h * 3);
    }
    free(a);
    return b;
}

static void test_jpeg_orientations(void **state)
{
    (void)state;
    int w = 64, h = 40;
    uint8_t *up = kt_img_pattern(w, h);
    for (int o = 1; o <= 8; o++) {
        for (int big = 0; big <= 1; big++) {
            int sw, sh;
            uint8_t *stored = stored_for(up, w, h, o, &sw, &sh);
            kt_jpeg_opts jo = {.quality = 95, .orientation = o, .exif_big_endian = big};
            size_t len;
            uint8_t *jpg = kt_jpeg_encode(stored, sw, sh, &jo, &len);
            kiln_image img;
            decode_ok(jpg, len, 0, &img);
            print_message("orientation %d (%s endian)\n", o, big ? "big" : "little");
            assert_looks_like(&img, up, w, h);
            kiln_image_free(&img);
            free(jpg);
            free(stored);
        }
    }
    free(up);
}

/* Full-size and DCT-scaled decodes match PIL's (same libjpeg-turbo;
 * PIL's draft() picks the same 1/2 and 1/4 scales). */
static void test_jpeg_matches_pil(void **state)
{
    (void)state;
    if (!have_pil()) {
        print_message("SKIPPED: /usr/bin/python3 with PIL not found\n");
        skip();
    }
    static const int sides[][3] = {{0, 640, 480}, {224, 320, 240}, {100, 160, 120}};
    char *dir = kt_mkdtemp(), *src = kt_path(dir, "in.jpg"), *raw = kt_path(dir, "out.raw");
    size_t len;
    uint8_t *jpg = pattern_jpeg(640, 480, NULL, &len);
    kt_write_file(src, jpg, len);
    for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
        kiln_image img;
        decode_ok(jpg, len, sides[i][0], &img);
        int st = kt_system("/usr/bin/python3 -c 'import sys; from PIL import Image; "
                           "im = Image.open(sys.argv[1]); im.draft(\"RGB\", (%d, %d)); "
                           "open(sys.argv[2], \"wb\").write(im.convert(\"RGB\").tobytes())' "
                           "'%s' '%s'",
                           sides[i][1], sides[i][2], src, raw);
        assert_int_equal(st, 0);
        size_t n;
        uint8_t *want = kt_read_all(raw, &n);
        assert_int_equal(n, (size_t)img.width * img.height * 3);
        int maxd = 0;
        for (size_t j = 0; j < n; j++)
            maxd = abs(want[j] - img.pixels[j]) > maxd ? abs(want[j] - img.pixels[j]) : maxd;
        print_message("%dx%d vs PIL: max abs diff %d\n", img.width, img.height, maxd);
        assert_true(maxd <= 1);
        free(want);
        kiln_image_free(&img);
    }
    free(jpg);
    free(raw);
    free(src);
    kt_rmtree_free(dir);
}

static void test_jpeg_truncated(void **state)
{
    (void)state;
    size_t len;
    uint8_t *jpg = pattern_jpeg(64, 48, NULL, &len);
    expect_fail(jpg, len / 2, 0, KILN_EFORMAT, "truncated");
    expect_fail(jpg, 40, 0, KILN_EFORMAT, NULL); /* inside the headers */
    expect_fail(jpg, 3, 0, KILN_EFORMAT, NULL);
    free(jpg);
    kt_jpeg_opts o = {.progressive = 1};
    jpg = pattern_jpeg(64, 48, &o, &len);
    expect_fail(jpg, len * 2 / 3, 0, KILN_EFORMAT, "truncated");
    free(jpg);
}

/* Find a marker's segment (the bytes after FF xx) in a JPEG. */
static uint8_t *find_marker(uint8_t *jpg, size_t len, uint8_t marker)
{
    for (size_t i = 2; i + 4 < len;) {
        if (jpg[i] != 0xff)
            return NULL;
        if (jpg[i + 1] == marker)
            return jpg + i + 2;
        i += 2 + ((size_t)jpg[i + 2] << 8 | jpg[i + 3]);
    }
    return NULL;
}

static void test_jpeg_corrupt(void **state)
{
    (void)state;
    size_t len;
    uint8_t *jpg = pattern_jpeg(64, 48, NULL, &len);
    /* SOF0 with 0 components. */
    uint8_t *sof = find_marker(jpg, len, 0xc0);
    assert_non_null(sof);
    sof[7] = 0;
    expect_fail(jpg, len, 0, KILN_EFORMAT, "JPEG");
    free(jpg);
    /* A Huffman table that overflows. */
    jpg = pattern_jpeg(64, 48, NULL, &len);
    uint8_t *dht = find_marker(jpg, len, 0xc4);
    assert_non_null(dht);
    memset(dht + 3, 0xff, 16);
    expect_fail(jpg, len, 0, KILN_EFORMAT, "JPEG");
    free(jpg);
    /* A bogus EXIF block is ignored, not fatal. */
    kt_jpeg_opts o = {.orientation = 6};
    jpg = pattern_jpeg(64, 48, &o, &len);
    uint8_t *app1 = find_marker(jpg, len, 0xe1);
    assert_non_null(app1);
    memset(app1 + 8, 0xee, 12); /* "Exif\0\0" kept, TIFF header gone */
    kiln_image img;
    decode_ok(jpg, len, 0, &img);
    assert_int_equal(img.width, 64);
    kiln_image_free(&img);
    free(jpg);
}

static void test_jpeg_max_pixels(void **state)
{
    (void)state;
    size_t len;
    uint8_t *jpg = pattern_jpeg(64, 48, NULL, &len);
    expect_fail(jpg, len, 64 * 48 - 1, KILN_ELIMIT, "64x48");
    kiln_decode_opts o = {.max_pixels = 64 * 48};
    kiln_image img;
    kiln_err err = {0};
    assert_int_equal(kiln_image_decode(jpg, len, &o, &img, &err), KILN_OK);
    kiln_image_free(&img);
    /* The limit is on the declared size, even when decoding scaled down. */
    o.max_pixels = 64 * 48 - 1;
    o.min_side = 8;
    assert_int_equal(kiln_image_decode(jpg, len, &o, &img, &err), KILN_ELIMIT);
    free(jpg);
}

/* ---------------- PNG ---------------- */

/* Decode and compare exactly with `want` (w x h RGB). */
static void expect_png(const uint16_t *samples, int w, int h, const kt_png_opts *o,
                       const uint8_t *want)
{
    size_t len;
    uint8_t *png = kt_png_encode(samples, w, h, o, &len);
    assert_int_equal(kiln_image_detect(png, len), KILN_IMAGE_PNG);
    kiln_image img;
    decode_ok(png, len, 100, &img); /* min_side means nothing for PNG */
    assert_int_equal(img.width, w);
    assert_int_equal(img.height, h);
    for (int i = 0; i < w * h * 3; i++) {
        if (img.pixels[i] != want[i])
            fail_msg("type %d depth %d interlace %d: pixel %d channel %d is %d, want %d",
                     o->color_type, o->bit_depth, o->interlace, i / 3, i % 3, img.pixels[i],
                     want[i]);
    }
    kiln_image_free(&img);
    free(png);
}

static uint8_t on_white(unsigned c, unsigned a)
{
    return (uint8_t)((c * a + 255u * (255u - a) + 127) / 255);
}

static void test_png_rgb(void **state)
{
    (void)state;
    int w = 13, h = 11; /* odd sizes exercise every Adam7 pass edge */
    uint8_t *want = kt_img_pattern(w, h);
    uint16_t *s = malloc(sizeof *s * (size_t)w * h * 4);
    for (int il = 0; il <= 1; il++) {
        kt_png_opts o = {.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8, .interlace = il};
        for (int i = 0; i < w * h * 3; i++)
            s[i] = want[i];
        expect_png(s, w, h, &o, want);
        o.bit_depth = 16; /* the high byte is kept; the low byte must not matter */
        for (int i = 0; i < w * h * 3; i++)
            s[i] = (uint16_t)(want[i] << 8 | (i * 37 & 0xff));
        expect_png(s, w, h, &o, want);
        /* RGBA, 8 and 16 bits, alpha varying: composited on white. */
        uint8_t *comp = malloc((size_t)w * h * 3);
        for (int i = 0; i < w * h; i++) {
            unsigned a = (unsigned)(i * 23 % 256);
            for (int c = 0; c < 3; c++) {
                s[i * 4 + c] = want[i * 3 + c];
                comp[i * 3 + c] = on_white(want[i * 3 + c], a);
            }
            s[i * 4 + 3] = (uint16_t)a;
        }
        o.color_type = PNG_COLOR_TYPE_RGB_ALPHA;
        o.bit_depth = 8;
        expect_png(s, w, h, &o, comp);
        for (int i = 0; i < w * h * 4; i++)
            s[i] = (uint16_t)(s[i] * 257);
        o.bit_depth = 16;
        expect_png(s, w, h, &o, comp);
        free(comp);
    }
    free(s);
    free(want);
}

static void test_png_gray(void **state)
{
    (void)state;
    int w = 17, h = 9;
    static const int depths[] = {1, 2, 4, 8, 16};
    uint16_t *s = malloc(sizeof *s * (size_t)w * h * 2);
    uint8_t *want = malloc((size_t)w * h * 3);
    for (int il = 0; il <= 1; il++) {
        for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++) {
            int depth = depths[d];
            unsigned max = (1u << depth) - 1;
            for (int i = 0; i < w * h; i++) {
                s[i] = (uint16_t)((unsigned)(i * 7) % (max + 1));
                /* Low depths scale up by replication; 16 bits keep the high byte. */
                uint8_t v = depth == 16 ? (uint8_t)(s[i] >> 8) : (uint8_t)(s[i] * 255 / max);
                memset(want + i * 3, v, 3);
            }
            kt_png_opts o = {
                .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = depth, .interlace = il};
            expect_png(s, w, h, &o, want);
        }
        /* Gray + alpha, 8 and 16 bits. */
        for (int i = 0; i < w * h; i++) {
            unsigned g = (unsigned)(i * 5 % 256), a = (unsigned)(i * 29 % 256);
            s[i * 2] = (uint16_t)g;
            s[i * 2 + 1] = (uint16_t)a;
            memset(want + i * 3, on_white(g, a), 3);
        }
        kt_png_opts o = {.color_type = PNG_COLOR_TYPE_GRAY_ALPHA, .bit_depth = 8, .interlace = il};
        expect_png(s, w, h, &o, want);
        for (int i = 0; i < w * h * 2; i++)
            s[i] = (uint16_t)(s[i] * 257);
        o.bit_depth = 16;
        expect_png(s, w, h, &o, want);
    }
    free(want);
    free(s);
}

static void test_png_palette(void **state)
{
    (void)state;
    int w = 15, h = 7;
    static const int depths[] = {1, 2, 4, 8};
    uint8_t pal[256 * 3], trans[256];
    for (int i = 0; i < 256; i++) {
        pal[i * 3] = (uint8_t)i;
        pal[i * 3 + 1] = (uint8_t)(255 - i);
        pal[i * 3 + 2] = (uint8_t)(i * 3);
        trans[i] = (uint8_t)(i * 41);
    }
    uint16_t *s = malloc(sizeof *s * (size_t)w * h);
    uint8_t *want = malloc((size_t)w * h * 3);
    for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++) {
        for (int with_trns = 0; with_trns <= 1; with_trns++) {
            int n = 1 << depths[d];
            int n_trans = with_trns ? (n > 2 ? n - 1 : 1) : 0; /* last entries opaque */
            for (int i = 0; i < w * h; i++) {
                int idx = i * 3 % n;
                unsigned a = idx < n_trans ? trans[idx] : 255;
                s[i] = (uint16_t)idx;
                for (int c = 0; c < 3; c++)
                    want[i * 3 + c] = on_white(pal[idx * 3 + c], a);
            }
            kt_png_opts o = {.color_type = PNG_COLOR_TYPE_PALETTE,
                             .bit_depth = depths[d],
                             .interlace = depths[d] == 4,
                             .palette = pal,
                             .n_palette = n,
                             .trans = trans,
                             .n_trans = n_trans};
            expect_png(s, w, h, &o, want);
        }
    }
    free(want);
    free(s);
}

/* tRNS naming one colour (gray or RGB) transparent: that colour turns white. */
static void test_png_trns_color(void **state)
{
    (void)state;
    int w = 6, h = 5;
    uint16_t s[6 * 5 * 3];
    uint8_t want[6 * 5 * 3];
    for (int i = 0; i < w * h; i++) {
        s[i] = (uint16_t)(i % 4 * 40);
        memset(want + i * 3, i % 4 == 1 ? 255 : i % 4 * 40, 3);
    }
    kt_png_opts o = {.color_type = PNG_COLOR_TYPE_GRAY,
                     .bit_depth = 8,
                     .has_trans_color = 1,
                     .trans_color = {40}};
    expect_png(s, w, h, &o, want);
    for (int i = 0; i < w * h; i++) {
        s[i * 3] = (uint16_t)(i % 3 * 50);
        s[i * 3 + 1] = 7;
        s[i * 3 + 2] = 9;
        uint8_t px[3] = {(uint8_t)(i % 3 * 50), 7, 9};
        if (i % 3 == 2)
            memset(px, 255, 3);
        memcpy(want + i * 3, px, 3);
    }
    o = (kt_png_opts){.color_type = PNG_COLOR_TYPE_RGB,
                      .bit_depth = 8,
                      .has_trans_color = 1,
                      .trans_color = {100, 7, 9}};
    expect_png(s, w, h, &o, want);
}

static uint8_t *pattern_png(int w, int h, int interlace, size_t *len)
{
    uint8_t *rgb = kt_img_pattern(w, h);
    uint16_t *s = malloc(sizeof *s * (size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++)
        s[i] = rgb[i];
    kt_png_opts o = {.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8, .interlace = interlace};
    uint8_t *png = kt_png_encode(s, w, h, &o, len);
    free(s);
    free(rgb);
    return png;
}

static void test_png_truncated_corrupt(void **state)
{
    (void)state;
    size_t len;
    uint8_t *png = pattern_png(40, 30, 0, &len);
    expect_fail(png, len / 2, 0, KILN_EFORMAT, "truncated");
    expect_fail(png, 12, 0, KILN_EFORMAT, NULL);
    png[16 + 3] ^= 0x40; /* IHDR width changes: its CRC no longer matches */
    expect_fail(png, len, 0, KILN_EFORMAT, "PNG");
    free(png);
    png = pattern_png(40, 30, 1, &len);
    expect_fail(png, len - 30, 0, KILN_EFORMAT, NULL);
    free(png);
}

static void test_png_max_pixels(void **state)
{
    (void)state;
    size_t len;
    uint8_t *png = pattern_png(40, 30, 0, &len);
    expect_fail(png, len, 40 * 30 - 1, KILN_ELIMIT, "40x30");
    kiln_decode_opts o = {.max_pixels = 40 * 30};
    kiln_image img;
    kiln_err err = {0};
    assert_int_equal(kiln_image_decode(png, len, &o, &img, &err), KILN_OK);
    kiln_image_free(&img);
    free(png);
}

/* ---------------- neither ---------------- */

static void test_unsupported(void **state)
{
    (void)state;
    uint8_t junk[256];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 131 + 7);
    expect_fail(junk, sizeof junk, 0, KILN_EUNSUPPORTED, "not a JPEG or PNG image");
    expect_fail(junk, 0, 0, KILN_EUNSUPPORTED, NULL);
    static const uint8_t gif[] = "GIF89a\x01\x00\x01\x00";
    expect_fail(gif, sizeof gif, 0, KILN_EUNSUPPORTED, NULL);
    kiln_err err = {0};
    kiln_image img;
    kiln_decode_opts o = {.min_side = -1};
    assert_int_equal(kiln_image_decode(junk, sizeof junk, &o, &img, &err), KILN_EINVAL);
}

static void test_alloc(void **state)
{
    (void)state;
    kiln_image img;
    kiln_err err = {0};
    assert_int_equal(kiln_image_alloc(&img, 3, 2, &err), KILN_OK);
    assert_int_equal(img.width, 3);
    kiln_image_free(&img);
    kiln_image_free(&img); /* twice is harmless */
    kiln_image_free(NULL);
    assert_int_equal(kiln_image_alloc(&img, 0, 2, &err), KILN_EINVAL);
    assert_null(img.pixels);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_jpeg_rgb),
        cmocka_unit_test(test_jpeg_gray),
        cmocka_unit_test(test_jpeg_cmyk),
        cmocka_unit_test(test_jpeg_dct_scaling),
        cmocka_unit_test(test_jpeg_orientations),
        cmocka_unit_test(test_jpeg_matches_pil),
        cmocka_unit_test(test_jpeg_truncated),
        cmocka_unit_test(test_jpeg_corrupt),
        cmocka_unit_test(test_jpeg_max_pixels),
        cmocka_unit_test(test_png_rgb),
        cmocka_unit_test(test_png_gray),
        cmocka_unit_test(test_png_palette),
        cmocka_unit_test(test_png_trns_color),
        cmocka_unit_test(test_png_truncated_corrupt),
        cmocka_unit_test(test_png_max_pixels),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_alloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
