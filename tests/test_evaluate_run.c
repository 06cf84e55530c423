/* tests/test_evaluate_run.c — kiln evaluate end to end on a tiny synthetic
 * dataset (support/dsbuild, 32x32 noise images, 3 classes) with a freshly
 * initialised EfficientNet-B0 written as a model package: the counts must
 * equal predictions made independently (the package loaded again, each
 * image normalised by hand with the package's mean/std, one forward per
 * image); the package's mean/std win over the dataset's; class mismatches
 * and empty splits are refused with clear errors; metrics and the eval
 * directory land on an MLflow run in kiln-tracking; and the `kiln evaluate`
 * command once it is registered in the CLI. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/fs.h"
#include "data/dataset.h"
#include "mlflow/mlflow.h"
#include "model/model.h"
#include "nn/backend.h"
#include "support/dsbuild.h"
#include "support/testutil.h"
#include "support/trackserver.h"
#include "train/evaluate.h"

#define SIZE 32
#define N_TEST 11 /* batches of 4: 4, 4, 3 */

/* |a - b| <= tol, reported with the caller's line (this cmocka has no
 * assert_double_equal). */
#define assert_near(a, b, tol) near_at(__FILE__, __LINE__, (a), (b), (tol))
static void near_at(const char *file, int line, double a, double b, double tol)
{
    if (!(fabs(a - b) <= tol))
        fail_msg("%s:%d: %.17g is not %.17g (tolerance %g)", file, line, a, b, tol);
}

typedef struct fixture {
    char *dir, *ds, *pkg;
    kiln_nn_backend *be;
} fixture;

/* Noise, so a random network's outputs differ from image to image. */
static uint8_t noise_pixel(void *ctx, uint32_t index, int y, int x, int c, int size)
{
    (void)ctx;
    uint32_t h = index * 2654435761u ^ (uint32_t)(y * size + x) * 40503u ^ (uint32_t)c * 97u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return (uint8_t)h;
}

static void build_dataset(const char *dir, uint32_t test)
{
    kt_ds_opts o;
    kt_ds_opts_default(&o);
    o.image_size = SIZE;
    o.per_split[KILN_SPLIT_TRAIN] = 3;
    o.per_split[KILN_SPLIT_VAL] = 0;
    o.per_split[KILN_SPLIT_TEST] = test;
    o.pixel = noise_pixel;
    kt_ds_build(dir, &o);
}

/* A fresh b0 for `n` classes named `names`, written as a package. */
static void write_package(fixture *f, const char *dir, int n, const char *const *names,
                          const float mean[3], const float std[3])
{
    kiln_err err = {0};
    kiln_effnet *m = kt_expect_ptr(kiln_effnet_create("b0", n, f->be, &err), &err, "create");
    kiln_model_info info;
    memset(&info, 0, sizeof info);
    info.format_version = KILN_MODEL_FORMAT_VERSION;
    strcpy(info.variant, "b0");
    info.num_classes = n;
    info.classes = (char **)names;
    info.input_size = info.resize_size = SIZE;
    memcpy(info.mean, mean, sizeof info.mean);
    memcpy(info.std, std, sizeof info.std);
    strcpy(info.kiln_version, KILN_VERSION);
    kt_expect_ok(kiln_model_package_write(dir, m, &info, &err), &err, "package write");
    kiln_effnet_destroy(m);
}

static const char *const classes3[3] = {"c00", "c01", "c02"};
static const float in_mean[3] = {0.485f, 0.456f, 0.406f}, in_std[3] = {0.229f, 0.224f, 0.225f};

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kiln_err err = {0};
    f->dir = kt_mkdtemp();
    f->ds = kt_path(f->dir, "ds");
    f->pkg = kt_path(f->dir, "pkg");
    kt_expect_ok(kiln_mkdir_p(f->ds, &err), &err, "mkdir");
    build_dataset(f->ds, N_TEST);
    f->be = kt_expect_ptr(kiln_nn_cpu_create(2, &err), &err, "backend");
    write_package(f, f->pkg, 3, classes3, in_mean, in_std);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kiln_nn_backend_destroy(f->be);
    free(f->ds);
    free(f->pkg);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

/* The confusion matrix made without lib/train: the package loaded again,
 * each test image normalised by hand, one eval forward each. */
static void independent_confusion(fixture *f, const char *pkg, uint64_t cm[9], int *distinct)
{
    kiln_err err = {0};
    kiln_model_info info;
    memset(&info, 0, sizeof info);
    kiln_effnet *m = kt_expect_ptr(kiln_model_load(pkg, f->be, &info, &err), &err, "load");
    kiln_dataset *ds = kt_expect_ptr(kiln_dataset_open(f->ds, KILN_SPLIT_TEST, &err), &err, "ds");
    kt_expect_ok(kiln_effnet_plan_inference(m, 1, SIZE, SIZE, &err), &err, "plan");
    float *x = f->be->ops->alloc(f->be, 3 * SIZE * SIZE * sizeof(float), &err);
    float host[3 * SIZE * SIZE], logits[3];
    int seen[3] = {0};
    memset(cm, 0, 9 * sizeof *cm);
    for (uint32_t i = 0; i < kiln_dataset_count(ds); i++) {
        uint32_t label;
        const uint8_t *px = kiln_dataset_image(ds, i, &label);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < SIZE * SIZE; p++)
                host[c * SIZE * SIZE + p] = (px[p * 3 + c] / 255.0f - info.mean[c]) / info.std[c];
        kt_expect_ok(f->be->ops->upload(f->be, x, host, sizeof host, &err), &err, "upload");
        const float *y = kt_expect_ptr((void *)kiln_effnet_forward(m, x, 0, 0, &err), &err, "fwd");
        kt_expect_ok(f->be->ops->download(f->be, logits, y, sizeof logits, &err), &err, "down");
        int best = 0;
        for (int c = 1; c < 3; c++)
            if (logits[c] > logits[best])
                best = c;
        seen[best] = 1;
        cm[label * 3 + best]++;
    }
    *distinct = seen[0] + seen[1] + seen[2];
    f->be->ops->release(f->be, x);
    kiln_dataset_close(ds);
    kiln_effnet_destroy(m);
    kiln_model_info_clear(&info);
}

static kiln_eval_metrics *evaluate_ok(fixture *f, const char *pkg, char *out_dir)
{
    kiln_err err = {0};
    kiln_eval_opts o;
    kiln_eval_metrics *m = NULL;
    kiln_eval_opts_default(&o);
    o.model_dir = pkg;
    o.dataset_dir = f->ds;
    o.batch_size = 4;
    o.threads = 2;
    o.backend = f->be;
    kt_expect_ok(kiln_evaluate(&o, NULL, &m, out_dir, 4096, &err), &err, "kiln_evaluate");
    return m;
}

static void expect_same_counts(fixture *f, const char *pkg, const kiln_eval_metrics *m)
{
    uint64_t cm[9];
    int distinct;
    independent_confusion(f, pkg, cm, &distinct);
    /* A network that says one class for everything would prove little. */
    assert_true(distinct >= 2);
    for (int i = 0; i < 9; i++)
        if (m->confusion[i] != cm[i])
            fail_msg("confusion[%d][%d]: evaluate %llu, independent %llu", i / 3, i % 3,
                     (unsigned long long)m->confusion[i], (unsigned long long)cm[i]);
}

static void test_end_to_end(void **state)
{
    fixture *f = *state;
    char out[4096];
    double t0 = kt_now_s();
    kiln_eval_metrics *m = evaluate_ok(f, f->pkg, out);
    printf("evaluate: %llu images in %.2f s (forward %.1f ms/image)\n",
           (unsigned long long)m->images, kt_now_s() - t0, m->latency_ms_per_image);
    char *expect_dir = kt_path(f->pkg, "eval-test");
    assert_string_equal(out, expect_dir);
    assert_int_equal(m->images, N_TEST);
    assert_int_equal(m->batches, 3);
    assert_int_equal(m->top_k, 3);
    assert_near(m->top_k_accuracy, 1.0, 0);
    assert_true(m->forward_seconds > 0 && m->images_per_second > 0);
    /* dsbuild labels image i as i % 3: supports 4, 4, 3. */
    assert_int_equal(m->per_class[0].support, 4);
    assert_int_equal(m->per_class[2].support, 3);
    assert_near(m->accuracy, (double)m->correct / N_TEST, 1e-12);
    expect_same_counts(f, f->pkg, m);
    static const char *const files[3] = {"metrics.json", "confusion_matrix.json",
                                         "confusion_matrix.png"};
    for (int i = 0; i < 3; i++) {
        char *p = kt_path(out, files[i]);
        assert_true(kiln_is_file(p));
        free(p);
    }
    /* The package is still a package: the eval directory sits inside it. */
    kiln_model_info info;
    kiln_err err = {0};
    memset(&info, 0, sizeof info);
    kt_expect_ok(kiln_model_info_read(f->pkg, &info, &err), &err, "info read");
    kiln_model_info_clear(&info);
    free(expect_dir);
    kiln_eval_metrics_free(m);
}

/* A package trained with other mean/std than the dataset's manifest: the
 * pixels must reach the network normalised the package's way. */
static void test_package_normalisation_wins(void **state)
{
    fixture *f = *state;
    static const float mean[3] = {1.0f, 0.0f, 0.5f}, std[3] = {0.05f, 1.0f, 0.1f};
    char *pkg = kt_path(f->dir, "pkg-norm"), out[4096];
    write_package(f, pkg, 3, classes3, mean, std);
    kiln_eval_metrics *m = evaluate_ok(f, pkg, out);
    expect_same_counts(f, pkg, m);
    kiln_eval_metrics_free(m);
    free(pkg);
}

static void test_class_mismatch(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    kiln_eval_opts o;
    kiln_eval_metrics *m = NULL;
    static const char *const swapped[3] = {"c00", "c02", "c01"};
    char *pkg = kt_path(f->dir, "pkg-swapped");
    write_package(f, pkg, 3, swapped, in_mean, in_std);
    kiln_eval_opts_default(&o);
    o.model_dir = pkg;
    o.dataset_dir = f->ds;
    o.backend = f->be;
    int rc = kiln_evaluate(&o, NULL, &m, NULL, 0, &err);
    kt_expect_fail(rc, &err, KILN_EINVAL, "has classes [c00, c01, c02] (3) but model");
    assert_non_null(strstr(err.msg, "has classes [c00, c02, c01] (3)"));
    assert_non_null(strstr(err.msg, "same order"));
    assert_null(m);
    char *eval_dir = kt_path(pkg, "eval-test");
    assert_false(kiln_is_dir(eval_dir)); /* nothing written */
    free(eval_dir);
    /* Fewer classes. */
    static const char *const two[2] = {"c00", "c01"};
    write_package(f, pkg, 2, two, in_mean, in_std);
    rc = kiln_evaluate(&o, NULL, &m, NULL, 0, &err);
    kt_expect_fail(rc, &err, KILN_EINVAL, "model");
    assert_non_null(strstr(err.msg, "[c00, c01] (2)"));
    free(pkg);
}

static void test_empty_split(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    kiln_eval_opts o;
    kiln_eval_metrics *m = NULL;
    kiln_eval_opts_default(&o);
    o.model_dir = f->pkg;
    o.dataset_dir = f->ds;
    o.split = KILN_SPLIT_VAL;
    o.backend = f->be;
    int rc = kiln_evaluate(&o, NULL, &m, NULL, 0, &err);
    kt_expect_fail(rc, &err, KILN_EINVAL, "no images in split 'val' (train 3, val 0, test 11)");
    assert_null(m);
    /* A missing package: the model reader's error, naming it. */
    o.split = KILN_SPLIT_TEST;
    o.model_dir = f->ds;
    rc = kiln_evaluate(&o, NULL, &m, NULL, 0, &err);
    assert_int_not_equal(rc, KILN_OK);
    assert_non_null(strstr(err.msg, "kiln-model.json"));
}

/* ---------------- MLflow ---------------- */

static kiln_mlflow_client *client_for(const char *uri)
{
    kiln_mlflow_config cfg;
    kiln_err err = {0};
    kiln_mlflow_config_default(&cfg);
    snprintf(cfg.tracking_uri, sizeof cfg.tracking_uri, "%s", uri);
    cfg.max_retries = 2;
    cfg.backoff_factor_s = 0.01;
    cfg.backoff_jitter_s = 0;
    return kt_expect_ptr(kiln_mlflow_client_new(&cfg, NULL, &err), &err, "client");
}

static double run_metric(const kiln_mlflow_run *run, const char *key)
{
    for (size_t i = 0; i < run->n_metrics; i++)
        if (strcmp(run->metrics[i].key, key) == 0)
            return run->metrics[i].value;
    fail_msg("metric %s is not on the run", key);
    return NAN;
}

static char *new_run(kiln_mlflow_client *c)
{
    kiln_err err = {0};
    char *exp_id = NULL;
    kiln_mlflow_run *run = NULL;
    kt_expect_ok(kiln_mlflow_experiment_create(c, "eval", NULL, &exp_id, &err), &err, "exp");
    kiln_mlflow_run_options ro = {.experiment_id = exp_id, .run_name = "train"};
    kt_expect_ok(kiln_mlflow_run_create(c, &ro, &run, &err), &err, "run");
    char *id = strdup(run->info.run_id);
    kiln_mlflow_run_free(run);
    free(exp_id);
    return id;
}

static void expect_eval_on_run(kiln_mlflow_client *c, const char *run_id,
                               const kiln_eval_metrics *m)
{
    kiln_err err = {0};
    kiln_mlflow_run *run = NULL;
    kt_expect_ok(kiln_mlflow_run_get(c, run_id, &run, &err), &err, "run get");
    assert_near(run_metric(run, "test_accuracy"), m->accuracy, 1e-12);
    assert_near(run_metric(run, "test_top_k_accuracy"), m->top_k_accuracy, 1e-12);
    assert_near(run_metric(run, "test_macro_f1"), m->macro_f1, 1e-12);
    assert_near(run_metric(run, "test_f1_c01"), m->per_class[1].f1, 1e-12);
    assert_true(run_metric(run, "test_latency_ms_per_image") > 0);
    kiln_mlflow_file_info *l = NULL;
    size_t n = 0;
    kt_expect_ok(kiln_mlflow_artifact_list(c, run->info.artifact_uri, "eval-test", &l, &n, &err),
                 &err, "list");
    int found = 0;
    for (size_t i = 0; i < n; i++)
        found += strcmp(l[i].path, "eval-test/metrics.json") == 0 ||
                 strcmp(l[i].path, "eval-test/confusion_matrix.json") == 0 ||
                 (strcmp(l[i].path, "eval-test/confusion_matrix.png") == 0 && l[i].file_size > 0);
    assert_int_equal(found, 3);
    kiln_mlflow_file_infos_free(l, n);
    kiln_mlflow_run_free(run);
}

static void test_mlflow_logging(void **state)
{
    fixture *f = *state;
    kt_trackserver server;
    kiln_err err = {0};
    char out[4096];
    if (!getenv("KILN_TRACKING_BIN")) {
        printf("SKIPPED: KILN_TRACKING_BIN is not set (kiln-tracking not built)\n");
        skip();
    }
    if (kt_trackserver_start(&server) != 0)
        fail_msg("cannot start kiln-tracking");
    kiln_mlflow_client *c = client_for(server.uri);
    char *run_id = new_run(c);
    kiln_eval_metrics *m = evaluate_ok(f, f->pkg, out);
    kt_expect_ok(kiln_eval_log_mlflow(c, run_id, m, "test", out, &err), &err, "log");
    expect_eval_on_run(c, run_id, m);
    /* A run that does not exist: the server's answer, with the run named. */
    int rc = kiln_eval_log_mlflow(c, "0123456789abcdef0123456789abcdef", m, "test", out, &err);
    kt_expect_fail(rc, &err, KILN_ENOTFOUND, "0123456789abcdef0123456789abcdef");
    kiln_eval_metrics_free(m);
    kiln_mlflow_client_free(c);
    free(run_id);
    kt_trackserver_stop(&server, 0);
}

/* ---------------- the command ---------------- */

static int cli_registered(void)
{
    char *out = NULL;
    int rc = kt_run_capture(&out, "%s evaluate --help", kt_kiln_bin());
    int ok = rc == 0 && out && strstr(out, "usage: kiln evaluate");
    free(out);
    return ok;
}

static void test_cli(void **state)
{
    fixture *f = *state;
    char *out = NULL;
    if (!cli_registered()) {
        printf("SKIPPED: 'kiln evaluate' is not registered in cli/kiln.c yet\n");
        skip();
    }
    char *dir = kt_path(f->dir, "cli-out");
    int rc = kt_run_capture(&out, "%s evaluate --model %s --data %s --batch-size 4 --threads 2 "
                            "--top-k 2 --out %s", kt_kiln_bin(), f->pkg, f->ds, dir);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "test split: 11 images"));
    assert_non_null(strstr(out, "c02"));
    assert_non_null(strstr(out, "macro avg"));
    free(out);
    /* Logs go to stderr, which the capture merges: keep them quiet. */
    rc = kt_run_capture(&out, "%s --log-level error evaluate --model %s --data %s --out %s --json",
                        kt_kiln_bin(), f->pkg, f->ds, dir);
    assert_int_equal(rc, 0);
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "per_class")), 3);
    assert_int_equal(cJSON_GetObjectItem(j, "num_images")->valueint, 11);
    cJSON_Delete(j);
    free(out);
    /* Usage errors: status 2. */
    assert_int_equal(kt_run_capture(&out, "%s evaluate --data %s", kt_kiln_bin(), f->ds), 2);
    assert_non_null(strstr(out, "--model and --data are required"));
    free(out);
    rc = kt_run_capture(&out, "%s evaluate --model %s --data %s --split nope", kt_kiln_bin(),
                        f->pkg, f->ds);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--split must be test, val or train"));
    free(out);
    /* --run-id without a tracking server. */
    rc = kt_run_capture(&out, "env -u MLFLOW_TRACKING_URI %s evaluate --model %s --data %s "
                        "--out %s --run-id abc", kt_kiln_bin(), f->pkg, f->ds, dir);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "MLFLOW_TRACKING_URI"));
    free(out);
    free(dir);
}

static void test_cli_mlflow(void **state)
{
    fixture *f = *state;
    kt_trackserver server;
    char *out = NULL;
    if (!getenv("KILN_TRACKING_BIN") || !cli_registered()) {
        printf("SKIPPED: kiln-tracking or 'kiln evaluate' not available\n");
        skip();
    }
    if (kt_trackserver_start(&server) != 0)
        fail_msg("cannot start kiln-tracking");
    kiln_mlflow_client *c = client_for(server.uri);
    char *run_id = new_run(c);
    char *dir = kt_path(f->dir, "cli-mlflow");
    int rc = kt_run_capture(&out, "env MLFLOW_TRACKING_URI=%s %s evaluate --model %s --data %s "
                            "--batch-size 4 --out %s --run-id %s", server.uri, kt_kiln_bin(),
                            f->pkg, f->ds, dir, run_id);
    if (rc != 0)
        fail_msg("kiln evaluate --run-id: status %d: %s", rc, out);
    free(out);
    kiln_eval_metrics *m = evaluate_ok(f, f->pkg, NULL);
    expect_eval_on_run(c, run_id, m);
    kiln_eval_metrics_free(m);
    kiln_mlflow_client_free(c);
    free(run_id);
    free(dir);
    kt_trackserver_stop(&server, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_end_to_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_package_normalisation_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_class_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mlflow_logging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_mlflow, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
