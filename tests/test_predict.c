/* tests/test_predict.c — `kiln predict` and the preprocessing it shares
 * with kiln-serve: the CLI answers what the server answers for the same
 * file; preprocessing equals torchvision's Resize + CenterCrop + ToTensor
 * + Normalize (Debian's PyTorch) on a PNG; bad files and flags. */
#include <math.h>

#include "serve/serve.h"
#include "test_serve_support.h"

typedef struct fixture {
    char *root;
    char *model;        /* a trained package */
    char *jpg, *png;    /* test images */
} fixture;

static char *write_png(const char *root, const char *name, int w, int h)
{
    uint16_t *samples = malloc((size_t)w * h * 3 * sizeof *samples);
    uint8_t *px = kt_img_pattern(w, h);
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        samples[i] = (uint16_t)((px[i] + i * 13) % 256); /* texture, so resizing matters */
    kt_png_opts po = {.color_type = 2 /* RGB */, .bit_depth = 8};
    size_t len = 0;
    uint8_t *png = kt_png_encode(samples, w, h, &po, &len);
    char *path = kt_path(root, name);
    kt_write_file(path, png, len);
    free(png);
    free(px);
    free(samples);
    return path;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    f->root = kt_mkdtemp();
    free(ts_train(f->root, "model", NULL, 42));
    f->model = kt_path(f->root, "model");
    size_t len = 0;
    uint8_t *jpg = ts_jpeg(80, 60, &len);
    f->jpg = kt_path(f->root, "a.jpg");
    kt_write_file(f->jpg, jpg, len);
    free(jpg);
    f->png = write_png(f->root, "b.png", 50, 70);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    ts_serve_stop_all();
    free(f->model);
    free(f->jpg);
    free(f->png);
    kt_rmtree_free(f->root);
    free(f);
    return 0;
}

/* The --json line for `file` from kiln predict. */
static cJSON *cli_json(const fixture *f, const char *file)
{
    char *out = NULL;
    int rc = kt_run_capture(&out, "%s predict --model %s --json --threads 2 %s 2>&1",
                            kt_kiln_bin(), f->model, file);
    cJSON *j = cJSON_Parse(out);
    if (rc != 0 || !j)
        fail_msg("kiln predict --json %s: exit %d: %s", file, rc, out);
    free(out);
    return j;
}

static void test_cli_matches_server(void **state)
{
    fixture *f = *state;
    char *out = NULL;
    int rc = kt_run_capture(&out, "%s predict --model %s %s %s", kt_kiln_bin(), f->model, f->jpg,
                            f->png);
    if (rc != 0)
        fail_msg("kiln predict: exit %d: %s", rc, out);
    char line[1024];
    snprintf(line, sizeof line, "%s: ", f->jpg);
    assert_non_null(strstr(out, line));
    snprintf(line, sizeof line, "%s: ", f->png);
    assert_non_null(strstr(out, line));
    assert_non_null(strstr(out, "(confidence 0."));
    free(out);

    /* kiln-serve --model-dir answers the same, to the bit. */
    ts_serve s;
    const char *args[] = {"--model-dir", f->model, NULL};
    assert_int_equal(ts_serve_start(&s, f->root, NULL, args), 0);
    const char *files[] = {f->jpg, f->png};
    for (int i = 0; i < 2; i++) {
        cJSON *cli = cli_json(f, files[i]);
        size_t len = 0;
        char *bytes = NULL;
        kiln_err err = {0};
        kt_expect_ok(kiln_read_file(files[i], 0, &bytes, &len, &err), &err, "read");
        char url[128];
        snprintf(url, sizeof url, "%s/predict", s.url);
        ts_reply r = ts_http("POST", url, i ? "image/png" : "image/jpeg", bytes, len, NULL, 0);
        cJSON *srv = ts_expect_json(&r, 200, "predict");
        assert_string_equal(cJSON_GetObjectItem(cli, "prediction")->valuestring,
                            cJSON_GetObjectItem(srv, "prediction")->valuestring);
        assert_true(cJSON_GetObjectItem(cli, "confidence")->valuedouble ==
                    cJSON_GetObjectItem(srv, "confidence")->valuedouble);
        assert_true(cJSON_Compare(cJSON_GetObjectItem(cli, "probabilities"),
                                  cJSON_GetObjectItem(srv, "probabilities"), 1));
        cJSON_Delete(cli);
        cJSON_Delete(srv);
        ts_reply_free(&r);
        free(bytes);
    }
    assert_int_equal(ts_serve_stop(&s, 30), 0);
}

/* kiln_serve_preprocess against torchvision on the same PNG, for a model
 * that resizes to 40 and crops 32, and one that resizes and crops 32. */
static void compare_with_torchvision(const fixture *f, const char *png, int resize, int crop)
{
    kiln_model_info info = {.format_version = 1, .num_classes = 2, .input_size = crop,
                            .resize_size = resize,
                            .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}};
    char *ref = kt_path(f->root, "ref.f32");
    char *py = kt_path(f->root, "ref.py");
    char script[2048];
    snprintf(script, sizeof script,
             "import sys, numpy as np, torch\n"
             "from PIL import Image\n"
             "from torchvision import transforms as T\n"
             "tf = T.Compose([T.Resize(%d), T.CenterCrop(%d), T.ToTensor(),\n"
             "                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])\n"
             "x = tf(Image.open(sys.argv[1]).convert('RGB'))\n"
             "open(sys.argv[2], 'wb').write(x.numpy().astype('<f4').tobytes())\n",
             resize, crop);
    kt_write_file(py, script, strlen(script));
    char *out = NULL;
    if (kt_run_capture(&out, "/usr/bin/python3 %s %s %s 2>&1", py, png, ref) != 0)
        fail_msg("torchvision reference: %s", out);
    free(out);
    size_t n = (size_t)3 * crop * crop, len = 0;
    char *want = NULL, *bytes = NULL;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(ref, 0, &want, &len, &err), &err, "reference");
    assert_int_equal(len, n * sizeof(float));
    kt_expect_ok(kiln_read_file(png, 0, &bytes, &len, &err), &err, "png");
    float *got = malloc(n * sizeof *got);
    kt_expect_ok(kiln_serve_preprocess(&info, (const uint8_t *)bytes, len, 0, got, &err), &err,
                 "preprocess");
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        float w;
        memcpy(&w, want + i * sizeof w, sizeof w);
        if (fabs((double)got[i] - w) > worst)
            worst = fabs((double)got[i] - w);
    }
    /* Same pixels (bit-identical resize); the rest is float rounding. */
    if (worst > 1e-5)
        fail_msg("resize %d crop %d: max difference %g from torchvision", resize, crop, worst);
    free(got);
    free(want);
    free(bytes);
    free(ref);
    free(py);
}

static void test_preprocess_matches_torchvision(void **state)
{
    fixture *f = *state;
    compare_with_torchvision(f, f->png, 40, 32);   /* portrait 50x70 */
    char *wide = write_png(f->root, "wide.png", 97, 61);
    compare_with_torchvision(f, wide, 32, 32);
    compare_with_torchvision(f, wide, 48, 40);
    free(wide);
}

static void test_bad_input(void **state)
{
    fixture *f = *state;
    char *out = NULL;
    char *junk = kt_path(f->root, "junk.jpg");
    kt_write_file(junk, "not an image", 12);
    int rc = kt_run_capture(&out, "%s predict --model %s %s /nonexistent.jpg %s 2>&1",
                            kt_kiln_bin(), f->model, junk, f->jpg);
    if (rc != 1 || !strstr(out, "junk.jpg: not a JPEG or PNG image") ||
        !strstr(out, "/nonexistent.jpg") || !strstr(out, "a.jpg: "))
        fail_msg("kiln predict with bad files: exit %d: %s", rc, out);
    free(out);
    free(junk);
    struct {
        const char *args;
        int status;
        const char *needle;
    } cases[] = {
        {"--help", 0, "usage: kiln predict --model MODEL_DIR"},
        {"x.jpg", 2, "--model is required"},
        {"--model m", 2, "no image files given"},
        {"--model m --threads 0 x.jpg", 2, "--threads"},
        {"--model m --bogus x.jpg", 2, "unknown option"},
        {"--model /nonexistent/pkg x.jpg", 1, "/nonexistent/pkg"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rc = kt_run_capture(&out, "%s predict %s 2>&1", kt_kiln_bin(), cases[i].args);
        if (rc != cases[i].status || !strstr(out, cases[i].needle))
            fail_msg("kiln predict %s: exit %d (wanted %d), wanted '%s' in: %s", cases[i].args,
                     rc, cases[i].status, cases[i].needle, out);
        free(out);
    }
    /* Too many pixels for --max-pixels. */
    rc = kt_run_capture(&out, "%s predict --model %s --max-pixels 100 %s 2>&1", kt_kiln_bin(),
                        f->model, f->jpg);
    if (rc != 1 || !strstr(out, "pixels"))
        fail_msg("kiln predict --max-pixels 100: exit %d: %s", rc, out);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_matches_server),
        cmocka_unit_test(test_preprocess_matches_torchvision),
        cmocka_unit_test(test_bad_input),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    curl_global_cleanup();
    return failed;
}
