/* tests/test_evaluate.c — lib/train/evaluate's numbers and files, without a
 * model: metrics from a known set of predictions (checked against values
 * worked out by hand), top-k and ties, refused input, the JSON files'
 * shapes, and the confusion-matrix PNG decoded back with libpng. */
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/fs.h"
#include "support/testutil.h"
#include "train/evaluate.h"

#define TOL 1e-12

/* |a - b| <= tol, reported with the caller's line (this cmocka has no
 * assert_double_equal). */
#define assert_near(a, b, tol) near_at(__FILE__, __LINE__, (a), (b), (tol))
static void near_at(const char *file, int line, double a, double b, double tol)
{
    if (!(fabs(a - b) <= tol))
        fail_msg("%s:%d: %.17g is not %.17g (tolerance %g)", file, line, a, b, tol);
}

static const char *const four[4] = {"a", "b", "c", "d"};

/* One prediction: true label, top choice, second choice. */
typedef struct pred {
    int label, first, second;
} pred;

/* The hand-worked example: class d is never predicted.
 *   true a: a a b      true b: b b a c      true c: c      true d: a c
 * Second choices put the true label second for 2 of the 5 misses. */
static const pred example[10] = {
    {0, 0, 1}, {0, 0, 2}, {0, 1, 0},            /* a: the miss has a second */
    {1, 1, 0}, {1, 1, 3}, {1, 0, 2}, {1, 2, 1}, /* b: one miss has b second */
    {2, 2, 0},                                  /* c */
    {3, 0, 1}, {3, 2, 0},                       /* d: never in the top 2 */
};

static void logits_of(const pred *p, int n, int k, float *logits, int32_t *labels)
{
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < k; c++)
            logits[i * k + c] = -1.0f - 0.1f * (float)c;
        logits[i * k + p[i].first] = 5.0f;
        logits[i * k + p[i].second] = 4.0f;
        labels[i] = p[i].label;
    }
}

static kiln_eval_metrics *example_metrics(int top_k)
{
    kiln_err err = {0};
    float logits[40];
    int32_t labels[10];
    kiln_eval_metrics *m = kiln_eval_metrics_new(4, four, top_k, &err);
    if (!m)
        fail_msg("metrics_new: %s", err.msg);
    logits_of(example, 10, 4, logits, labels);
    /* Two batches, as the evaluation loop feeds them. */
    kt_expect_ok(kiln_eval_metrics_add(m, logits, labels, 6, &err), &err, "add 1");
    kt_expect_ok(kiln_eval_metrics_add(m, logits + 24, labels + 6, 4, &err), &err, "add 2");
    kiln_eval_metrics_add_time(m, 0.5);
    kiln_eval_metrics_add_time(m, 0.3);
    kiln_eval_metrics_finish(m);
    return m;
}

static void test_metrics_by_hand(void **state)
{
    (void)state;
    kiln_eval_metrics *m = example_metrics(2);
    static const uint64_t cm[16] = {2, 1, 0, 0, 1, 2, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0};
    for (int i = 0; i < 16; i++)
        assert_int_equal(m->confusion[i], cm[i]);
    assert_int_equal(m->images, 10);
    assert_int_equal(m->correct, 5);
    assert_near(m->accuracy, 0.5, TOL);
    /* Precision: a 2/4, b 2/3, c 1/3, d 0/0 -> 0 (never predicted, no NaN). */
    static const double prec[4] = {0.5, 2.0 / 3, 1.0 / 3, 0.0};
    static const double rec[4] = {2.0 / 3, 0.5, 1.0, 0.0};
    static const double f1[4] = {4.0 / 7, 4.0 / 7, 0.5, 0.0};
    static const uint64_t support[4] = {3, 4, 1, 2}, predicted[4] = {4, 3, 3, 0};
    for (int c = 0; c < 4; c++) {
        const kiln_eval_class *pc = &m->per_class[c];
        assert_false(isnan(pc->precision) || isnan(pc->recall) || isnan(pc->f1));
        assert_near(pc->precision, prec[c], TOL);
        assert_near(pc->recall, rec[c], TOL);
        assert_near(pc->f1, f1[c], TOL);
        assert_int_equal(pc->support, support[c]);
        assert_int_equal(pc->predicted, predicted[c]);
    }
    assert_near(m->macro_precision, 0.375, TOL);
    assert_near(m->macro_recall, 13.0 / 24, TOL);
    assert_near(m->macro_f1, 23.0 / 56, TOL);
    assert_near(m->weighted_precision, 0.45, TOL);
    assert_near(m->weighted_recall, 0.5, TOL);
    assert_near(m->weighted_f1, 0.45, TOL);
    /* Latency: 0.8 s over 2 batches and 10 images. */
    assert_int_equal(m->batches, 2);
    assert_near(m->latency_ms_per_image, 80.0, 1e-9);
    assert_near(m->latency_ms_per_batch, 400.0, 1e-9);
    assert_near(m->images_per_second, 12.5, 1e-9);
    kiln_eval_metrics_free(m);
}

static void test_top_k(void **state)
{
    (void)state;
    kiln_eval_metrics *m = example_metrics(2);
    /* Misses with the true label second: (a: b then a) and (b: c then b). */
    assert_int_equal(m->top_k, 2);
    assert_int_equal(m->top_k_correct, 7);
    assert_near(m->top_k_accuracy, 0.7, TOL);
    kiln_eval_metrics_free(m);
    /* Default k = 5 is capped at 4 classes: everything is in the top 4. */
    m = example_metrics(0);
    assert_int_equal(m->top_k, 4);
    assert_near(m->top_k_accuracy, 1.0, TOL);
    kiln_eval_metrics_free(m);
    /* k = 3: only the two d rows miss. In {d: a, b} c (-1.2) ranks above
     * d (-1.3), in {d: c, a} b (-1.1) does: rank 3 both times. */
    m = example_metrics(3);
    assert_int_equal(m->top_k_correct, 8);
    kiln_eval_metrics_free(m);
}

/* Equal logits rank by index: the first is the prediction. */
static void test_ties(void **state)
{
    (void)state;
    kiln_err err = {0};
    kiln_eval_metrics *m = kiln_eval_metrics_new(4, four, 2, &err);
    assert_non_null(m);
    float logits[8] = {1, 1, 1, 1, 0, 2, 2, 0};
    int32_t labels[2] = {2, 2};
    kt_expect_ok(kiln_eval_metrics_add(m, logits, labels, 2, &err), &err, "add");
    kiln_eval_metrics_finish(m);
    assert_int_equal(m->confusion[2 * 4 + 0], 1); /* all equal: class 0 */
    assert_int_equal(m->confusion[2 * 4 + 1], 1); /* b and c tie: b */
    assert_int_equal(m->correct, 0);
    /* Row 1: label 2 has a and b above it; row 2: b above it only. */
    assert_int_equal(m->top_k_correct, 1);
    kiln_eval_metrics_free(m);
}

static void test_refused_input(void **state)
{
    (void)state;
    kiln_err err = {0};
    assert_null(kiln_eval_metrics_new(0, four, 1, &err));
    kt_expect_fail(KILN_EINVAL, &err, KILN_EINVAL, "at least one class");
    assert_null(kiln_eval_metrics_new(4, four, -1, &err));
    kt_expect_fail(KILN_EINVAL, &err, KILN_EINVAL, "top-k");
    kiln_eval_metrics *m = kiln_eval_metrics_new(4, four, 1, &err);
    float logits[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    int32_t bad_label[2] = {1, 4};
    int rc = kiln_eval_metrics_add(m, logits, bad_label, 2, &err);
    kt_expect_fail(rc, &err, KILN_EINVAL, "label 4 of image 1");
    int32_t labels[2] = {1, 1};
    logits[5] = NAN;
    rc = kiln_eval_metrics_add(m, logits, labels, 2, &err);
    kt_expect_fail(rc, &err, KILN_EINVAL, "not finite");
    /* Nothing of a refused batch is counted. */
    assert_int_equal(m->images, 0);
    kiln_eval_metrics_finish(m);
    assert_near(m->accuracy, 0.0, 0.0);
    assert_near(m->latency_ms_per_image, 0.0, 0.0);
    kiln_eval_metrics_free(m);
}

/* ---------------- files ---------------- */

static cJSON *read_json(const char *dir, const char *name)
{
    char *path = kt_path(dir, name), *text = NULL;
    size_t len;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(path, 0, &text, &len, &err), &err, name);
    cJSON *j = cJSON_Parse(text);
    if (!j)
        fail_msg("%s is not JSON", name);
    free(path);
    free(text);
    return j;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        fail_msg("'%s' is not a number", key);
    return v->valuedouble;
}

static void expect_no_temp_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp."))
            fail_msg("temporary file left: %s", e->d_name);
    closedir(d);
}

static void check_metrics_json(const cJSON *j)
{
    assert_string_equal(cJSON_GetObjectItem(j, "split")->valuestring, "test");
    const cJSON *classes = cJSON_GetObjectItem(j, "classes");
    assert_int_equal(cJSON_GetArraySize(classes), 4);
    for (int c = 0; c < 4; c++)
        assert_string_equal(cJSON_GetArrayItem(classes, c)->valuestring, four[c]);
    assert_near(num(j, "num_images"), 10, 0);
    assert_near(num(j, "accuracy"), 0.5, TOL);
    assert_near(num(j, "top_k"), 2, 0);
    assert_near(num(j, "top_k_accuracy"), 0.7, TOL);
    const cJSON *pc = cJSON_GetObjectItem(j, "per_class");
    assert_int_equal(cJSON_GetArraySize(pc), 4);
    const cJSON *d = cJSON_GetArrayItem(pc, 3);
    assert_string_equal(cJSON_GetObjectItem(d, "class")->valuestring, "d");
    assert_near(num(d, "precision"), 0.0, 0);
    assert_near(num(d, "support"), 2, 0);
    assert_near(num(cJSON_GetArrayItem(pc, 0), "f1"), 4.0 / 7, 1e-12);
    assert_near(num(cJSON_GetObjectItem(j, "macro_avg"), "f1"), 23.0 / 56, 1e-12);
    assert_near(num(cJSON_GetObjectItem(j, "weighted_avg"), "f1"), 0.45, 1e-12);
    const cJSON *cm = cJSON_GetObjectItem(j, "confusion_matrix");
    assert_int_equal(cJSON_GetArraySize(cm), 4);
    assert_near(cJSON_GetArrayItem(cJSON_GetArrayItem(cm, 1), 2)->valuedouble, 1, 0);
    const cJSON *lat = cJSON_GetObjectItem(j, "latency");
    assert_near(num(lat, "ms_per_image"), 80.0, 1e-9);
    assert_near(num(lat, "batches"), 2, 0);
}

static void test_json_files(void **state)
{
    const char *dir = *state;
    kiln_err err = {0};
    kiln_eval_metrics *m = example_metrics(2);
    kiln_eval_context ctx = {.split = "test", .model_dir = "pkg", .dataset_dir = "ds",
                             .variant = "b0", .batch_size = 6, .input_size = 32};
    char *out = kt_path(dir, "eval/test"); /* created */
    kt_expect_ok(kiln_eval_write(out, m, &ctx, &err), &err, "kiln_eval_write");
    cJSON *j = read_json(out, "metrics.json");
    check_metrics_json(j);
    cJSON_Delete(j);
    j = read_json(out, "confusion_matrix.json");
    assert_string_equal(cJSON_GetObjectItem(j, "rows")->valuestring, "true");
    assert_string_equal(cJSON_GetObjectItem(j, "columns")->valuestring, "predicted");
    const cJSON *matrix = cJSON_GetObjectItem(j, "matrix");
    const cJSON *norm = cJSON_GetObjectItem(j, "normalized");
    assert_int_equal(cJSON_GetArraySize(norm), 4);
    for (int t = 0; t < 4; t++) {
        double sum = 0;
        for (int p = 0; p < 4; p++) {
            double count = cJSON_GetArrayItem(cJSON_GetArrayItem(matrix, t), p)->valuedouble;
            assert_near(count, (double)m->confusion[t * 4 + p], 0);
            sum += cJSON_GetArrayItem(cJSON_GetArrayItem(norm, t), p)->valuedouble;
        }
        assert_near(sum, 1.0, 1e-12);
    }
    cJSON_Delete(j);
    char *png = kt_path(out, "confusion_matrix.png");
    assert_true(kiln_is_file(png));
    expect_no_temp_files(out);
    /* An output path under a regular file: a clear error, nothing written. */
    char *blocked = kt_path(png, "sub");
    int rc = kiln_eval_write(blocked, m, &ctx, &err);
    assert_int_not_equal(rc, KILN_OK);
    assert_non_null(strstr(err.msg, "output directory"));
    free(blocked);
    free(png);
    free(out);
    kiln_eval_metrics_free(m);
}

/* ---------------- the picture ---------------- */

typedef struct picture {
    png_uint_32 w, h;
    uint8_t *px;
} picture;

static void load_png(const char *path, picture *p)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path))
        fail_msg("libpng cannot read %s: %s", path, img.message);
    img.format = PNG_FORMAT_RGB;
    p->w = img.width;
    p->h = img.height;
    p->px = malloc(PNG_IMAGE_SIZE(img));
    if (!png_image_finish_read(&img, NULL, p->px, 0, NULL))
        fail_msg("libpng cannot decode %s: %s", path, img.message);
}

static int is_rgb(const picture *p, png_uint_32 x, png_uint_32 y, int r, int g, int b)
{
    const uint8_t *q = p->px + ((size_t)y * p->w + x) * 3;
    return q[0] == r && q[1] == g && q[2] == b;
}

/* Dark text pixels (the labels' ink) in a rectangle. */
static int ink_in(const picture *p, png_uint_32 x0, png_uint_32 y0, png_uint_32 x1, png_uint_32 y1)
{
    int n = 0;
    for (png_uint_32 y = y0; y < y1 && y < p->h; y++)
        for (png_uint_32 x = x0; x < x1 && x < p->w; x++)
            n += is_rgb(p, x, y, 20, 20, 20);
    return n;
}

static void test_png(void **state)
{
    const char *dir = *state;
    kiln_err err = {0};
    static const char *const names[4] = {"apple", "a_rather_long_class_name_for_a_label", "c",
                                         "d"};
    kiln_eval_metrics *m = kiln_eval_metrics_new(4, names, 2, &err);
    float logits[40];
    int32_t labels[10];
    logits_of(example, 10, 4, logits, labels);
    kt_expect_ok(kiln_eval_metrics_add(m, logits, labels, 10, &err), &err, "add");
    kiln_eval_metrics_finish(m);
    char *path = kt_path(dir, "cm.png");
    kt_expect_ok(kiln_eval_confusion_png(path, m, "Confusion matrix - test", &err), &err, "png");
    picture p;
    load_png(path, &p);
    /* The grid: its lines' bounding box is a square of 4 equal cells. */
    png_uint_32 gx0 = p.w, gy0 = p.h, gx1 = 0, gy1 = 0;
    for (png_uint_32 y = 0; y < p.h; y++)
        for (png_uint_32 x = 0; x < p.w; x++)
            if (is_rgb(&p, x, y, 190, 190, 200)) {
                gx0 = x < gx0 ? x : gx0, gy0 = y < gy0 ? y : gy0;
                gx1 = x > gx1 ? x : gx1, gy1 = y > gy1 ? y : gy1;
            }
    assert_true(gx1 > gx0 && gy1 > gy0);
    png_uint_32 side = gx1 - gx0, cell = side / 4;
    assert_int_equal(gy1 - gy0, side);
    assert_int_equal(side % 4, 0);
    assert_true(cell >= 40);
    /* Expected size: the grid plus margins for labels on the left, titles
     * above and labels below, and no more than a 16-character label wide. */
    assert_true(p.w > gx1 && p.h > gy1 + 2 * 16);
    assert_true(gx0 > 12 * 5 && gx0 <= 16 + 16 + 2 * 10 + 16 * 12 + 10);
    /* Row c (true c, all predicted c) is fully dark; row d's empty column
     * d is white. Cell centres carry digits, so sample near a corner. */
    assert_true(is_rgb(&p, gx0 + 2 * cell + 3, gy0 + 2 * cell + 3, 8, 48, 107));
    assert_true(is_rgb(&p, gx0 + 3 * cell + 3, gy0 + 3 * cell + 3, 255, 255, 255));
    /* Counts written in cells: a dark "1" on the light (a, b), a white "1"
     * on the dark (c, c). */
    assert_true(ink_in(&p, gx0 + cell, gy0, gx0 + 2 * cell, gy0 + cell) > 10);
    int white_digit = 0;
    for (png_uint_32 y = gy0 + 2 * cell; y < gy0 + 3 * cell; y++)
        for (png_uint_32 x = gx0 + 2 * cell; x < gx0 + 3 * cell; x++)
            white_digit += is_rgb(&p, x, y, 255, 255, 255);
    assert_true(white_digit > 10);
    /* Labels in the margins: every row band left of the grid, every column
     * band below it, the title above, "true" at the far left. */
    for (png_uint_32 c = 0; c < 4; c++) {
        assert_true(ink_in(&p, 0, gy0 + c * cell, gx0, gy0 + (c + 1) * cell) > 10);
        assert_true(ink_in(&p, gx0 + c * cell, gy1 + 1, gx0 + (c + 1) * cell, p.h - 40) > 10);
    }
    assert_true(ink_in(&p, 0, 0, p.w, gy0) > 50);
    assert_true(ink_in(&p, 0, gy0, 16 + 16, gy1) > 20);
    assert_true(ink_in(&p, gx0, p.h - 40, gx1, p.h) > 20); /* "predicted" */
    free(p.px);
    free(path);
    kiln_eval_metrics_free(m);
}

/* Too many classes for text: a compact grid, still a valid picture. */
static void test_png_many_classes(void **state)
{
    const char *dir = *state;
    kiln_err err = {0};
    enum { K = 400 };
    char names[K][8];
    const char *ptrs[K];
    for (int c = 0; c < K; c++) {
        snprintf(names[c], sizeof names[c], "k%03d", c);
        ptrs[c] = names[c];
    }
    kiln_eval_metrics *m = kiln_eval_metrics_new(K, ptrs, 0, &err);
    float *logits = calloc(K, sizeof *logits);
    for (int32_t c = 0; c < K; c++) {
        memset(logits, 0, K * sizeof *logits);
        logits[c] = 1; /* every image right: a dark diagonal */
        kt_expect_ok(kiln_eval_metrics_add(m, logits, &c, 1, &err), &err, "add");
    }
    kiln_eval_metrics_finish(m);
    char *path = kt_path(dir, "many.png");
    kt_expect_ok(kiln_eval_confusion_png(path, m, "many", &err), &err, "png");
    picture p;
    load_png(path, &p);
    assert_true(p.w >= K * 7 && p.w <= 3200 && p.h <= 3200);
    int dark = 0;
    for (png_uint_32 y = 0; y < p.h; y++)
        for (png_uint_32 x = 0; x < p.w; x++)
            dark += is_rgb(&p, x, y, 8, 48, 107);
    assert_int_equal(dark, K * 7 * 7); /* 7x7 cells: 3000 / 400 */
    free(p.px);
    free(path);
    free(logits);
    kiln_eval_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_by_hand),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_ties),
        cmocka_unit_test(test_refused_input),
        cmocka_unit_test_setup_teardown(test_json_files, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_png, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_png_many_classes, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
