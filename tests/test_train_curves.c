/* kiln_train_curves_png: the loss/accuracy picture of a training run —
 * readable PNG, both series drawn where their values say, NaN points left
 * out, refusals leaving no file. */
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/testutil.h"
#include "train/train.h"

typedef struct decoded {
    int w, h;
    uint8_t *px;
} decoded;

static decoded read_png(const char *path)
{
    png_image img;
    decoded d = {0};
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path))
        fail_msg("%s: %s", path, img.message);
    img.format = PNG_FORMAT_RGB;
    d.w = (int)img.width;
    d.h = (int)img.height;
    d.px = malloc(PNG_IMAGE_SIZE(img));
    if (!png_image_finish_read(&img, NULL, d.px, 0, NULL))
        fail_msg("%s: %s", path, img.message);
    return d;
}

/* Pixels of one colour in columns [x0, x1). */
static long count_colour(const decoded *d, int x0, int x1, uint8_t r, uint8_t g, uint8_t b)
{
    long n = 0;
    for (int y = 0; y < d->h; y++)
        for (int x = x0; x < x1 && x < d->w; x++) {
            const uint8_t *p = d->px + ((size_t)y * d->w + x) * 3;
            n += p[0] == r && p[1] == g && p[2] == b;
        }
    return n;
}

/* The topmost row holding the colour in columns [x0, x1), or -1. */
static int top_row(const decoded *d, int x0, int x1, uint8_t r, uint8_t g, uint8_t b)
{
    for (int y = 60; y < d->h; y++) /* below the title and legend */
        for (int x = x0; x < x1; x++) {
            const uint8_t *p = d->px + ((size_t)y * d->w + x) * 3;
            if (p[0] == r && p[1] == g && p[2] == b)
                return y;
        }
    return -1;
}

static void fill_history(kiln_train_epoch *h, int n)
{
    for (int i = 0; i < n; i++) {
        h[i] = (kiln_train_epoch){.epoch = i + 1,
                                  .train_loss = 2.0 - 0.3 * i,
                                  .val_loss = 2.2 - 0.25 * i,
                                  .train_accuracy = 0.3 + 0.1 * i,
                                  .val_accuracy = 0.25 + 0.1 * i};
    }
}

static void test_draws_both_series(void **state)
{
    const char *dir = *state;
    char *path = kt_path(dir, "curves.png");
    kiln_train_epoch h[5];
    kiln_err err = {0};
    fill_history(h, 5);
    kt_expect_ok(kiln_train_curves_png(path, h, 5, "EfficientNet-B0, 5 epochs", &err), &err,
                 "curves");
    decoded d = read_png(path);
    assert_true(d.w > 1000 && d.h > 300);
    int half = d.w / 2;
    /* Blue (train) and orange (val) in both panels, beyond the legend. */
    assert_true(count_colour(&d, 0, half, 31, 119, 180) > 500);
    assert_true(count_colour(&d, 0, half, 255, 127, 14) > 500);
    assert_true(count_colour(&d, half, d.w, 31, 119, 180) > 500);
    /* Loss falls and accuracy rises: in the left panel the line starts
     * high (epoch 1 near the left edge); in the right it ends high. */
    int left_first = top_row(&d, 90, 140, 31, 119, 180);
    int left_last = top_row(&d, half - 80, half - 20, 31, 119, 180);
    assert_true(left_first >= 0 && left_last > left_first);
    int right_first = top_row(&d, half + 110, half + 160, 31, 119, 180);
    int right_last = top_row(&d, d.w - 60, d.w - 20, 31, 119, 180);
    assert_true(right_last >= 0 && right_first > right_last);
    free(d.px);
    free(path);
}

static void test_nan_and_single_epoch(void **state)
{
    const char *dir = *state;
    char *path = kt_path(dir, "one.png");
    kiln_train_epoch h[3];
    kiln_err err = {0};
    fill_history(h, 3);
    for (int i = 0; i < 3; i++)
        h[i].val_loss = h[i].val_accuracy = NAN;
    kt_expect_ok(kiln_train_curves_png(path, h, 3, NULL, &err), &err, "curves with NaN");
    decoded d = read_png(path);
    /* Only the legend's 14x14 swatch is orange. */
    assert_int_equal(count_colour(&d, 0, d.w, 255, 127, 14), 14 * 14);
    free(d.px);
    kt_expect_ok(kiln_train_curves_png(path, h, 1, "one", &err), &err, "one epoch");
    d = read_png(path);
    assert_true(count_colour(&d, 0, d.w, 31, 119, 180) > 14 * 14);
    free(d.px);
    free(path);
}

static void test_refusals(void **state)
{
    const char *dir = *state;
    char *path = kt_path(dir, "none.png"), *bad = kt_path(dir, "missing/dir/x.png");
    kiln_train_epoch h[2];
    kiln_err err = {0};
    struct stat st;
    fill_history(h, 2);
    assert_int_equal(kiln_train_curves_png(path, h, 0, NULL, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "no epochs"));
    assert_int_not_equal(stat(path, &st), 0);
    assert_int_not_equal(kiln_train_curves_png(bad, h, 2, NULL, &err), KILN_OK);
    assert_non_null(strstr(err.msg, "missing/dir"));
    free(path);
    free(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_draws_both_series, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_nan_and_single_epoch, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_refusals, kt_setup_tmpdir, kt_teardown_tmpdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
