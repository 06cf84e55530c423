/* tests/test_train.c — lib/train on tiny synthetic datasets (32x32, b0):
 * a run that learns, bit-identical resume after a stop mid-epoch and at an
 * epoch boundary, MLflow logging against kiln-tracking, and a run that
 * fails after its MLflow run was created ending FAILED. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/fs.h"
#include "gpu/gpu.h"
#include "model/model.h"
#include "support/dsbuild.h"
#include "support/testutil.h"
#include "support/trackserver.h"
#include "support/trainfix.h"
#include "train/train.h"

typedef struct stopper {
    volatile sig_atomic_t flag;
    int at_epoch;     /* raise after this epoch ends (0: never) */
    int at_batch;     /* raise after this batch of epoch `in_epoch` (0: never) */
    int in_epoch;
    int epochs_seen;
    double last_val;
} stopper;

static void on_epoch(void *ctx, const kiln_train_epoch *e)
{
    stopper *s = ctx;
    s->epochs_seen++;
    printf("epoch %d: train loss %.4f acc %.3f, val loss %.4f acc %.3f, lr %.4g\n", e->epoch,
           e->train_loss, e->train_accuracy, e->val_loss, e->val_accuracy, e->learning_rate);
    s->last_val = e->val_accuracy;
    if (s->at_epoch && e->epoch == s->at_epoch)
        s->flag = 1;
}

static void on_progress(void *ctx, const kiln_train_progress *p)
{
    stopper *s = ctx;
    if (s->at_batch && p->epoch == s->in_epoch && (int)p->batch == s->at_batch)
        s->flag = 1;
}

static int run_train(kiln_train_opts *o, stopper *s, kiln_train_result *res, kiln_err *err)
{
    o->stop = &s->flag;
    o->on_epoch = on_epoch;
    o->on_progress = on_progress;
    o->cb_ctx = s;
    return kiln_train(o, res, err);
}

static void test_learns(void **state)
{
    const char *root = *state;
    char *data = kt_train_dataset(root, 96, 24, kt_colour_pixel);
    char *out = kt_path(root, "model");
    kiln_train_opts o;
    kiln_train_result res;
    kiln_err err = {0};
    stopper s = {0};
    /* From scratch, eval-mode BatchNorm needs a few dozen steps to settle:
     * SGD at a high rate gets there in 8 short epochs. */
    kt_train_tiny_opts(&o, data, out, 8);
    o.cfg.train.batch_size = 16;
    o.cfg.train.learning_rate = 0.05;
    strcpy(o.cfg.train.optimizer, "sgd");
    o.cfg.augment.random_resized_crop = 0;
    double t0 = kt_now_s();
    kt_expect_ok(run_train(&o, &s, &res, &err), &err, "train");
    printf("learns: 8 epochs in %.1f s, best val accuracy %.3f (epoch %d)\n", kt_now_s() - t0,
           res.best_val_accuracy, res.best_epoch);
    
    assert_int_equal(s.epochs_seen, 8);
    assert_int_equal(res.epochs_done, 8);
    assert_true(res.best_val_accuracy >= 0.55); /* chance is 1/3 */
    kiln_model_info info;
    kt_expect_ok(kiln_model_info_read(out, &info, &err), &err, "package");
    assert_int_equal(info.num_classes, 3);
    assert_string_equal(info.classes[0], "c00");
    assert_string_equal(info.classes[2], "c02");
    assert_int_equal(info.input_size, 32);
    assert_non_null(info.dataset_sha256);
    assert_null(info.run_id);
    kiln_model_info_clear(&info);
    char *ck = kt_path(out, "checkpoint/state.json");
    assert_true(kiln_is_file(ck));
    free(ck);
    free(out);
    free(data);
}

static char *checkpoint_weights(const char *out)
{
    char *path = kt_path(out, "checkpoint/state.json"), *text = NULL;
    size_t len;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(path, 0, &text, &len, &err), &err, "state.json");
    cJSON *s = cJSON_Parse(text);
    char *w = kt_path(out, "checkpoint");
    char *full = kt_path(w, cJSON_GetObjectItem(s, "weights")->valuestring);
    cJSON_Delete(s);
    free(text);
    free(path);
    free(w);
    return full;
}

static void assert_same_file(const char *a, const char *b)
{
    char *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(a, 0, &da, &la, &err), &err, a);
    kt_expect_ok(kiln_read_file(b, 0, &db, &lb, &err), &err, b);
    assert_int_equal(la, lb);
    if (memcmp(da, db, la) != 0)
        fail_msg("%s and %s differ", a, b);
    free(da);
    free(db);
}

/* Stop, then --resume: the final weights equal an uninterrupted run's. */
static void resume_case(const char *root, const char *data, const char *ref, const char *name,
                        int at_epoch, int at_batch)
{
    char *out = kt_path(root, name);
    kiln_train_opts o;
    kiln_train_result res;
    kiln_err err = {0};
    stopper s = {.at_epoch = at_epoch, .at_batch = at_batch, .in_epoch = 2};
    kt_train_tiny_opts(&o, data, out, 3);
    kt_expect_fail(run_train(&o, &s, &res, &err), &err, KILN_ECANCELED, "--resume");
    char *pkg = kt_path(out, "kiln-model.json");
    assert_false(kiln_is_file(pkg)); /* no package from a stopped run */
    stopper none = {0};
    kt_train_tiny_opts(&o, data, out, 3);
    o.resume = 1;
    kt_expect_ok(run_train(&o, &none, &res, &err), &err, "resume");
    assert_int_equal(res.epochs_done, 3);
    char *wa = checkpoint_weights(ref), *wb = checkpoint_weights(out);
    assert_same_file(wa, wb);
    char *pa = kt_path(ref, "model.safetensors"), *pb = kt_path(out, "model.safetensors");
    assert_same_file(pa, pb);
    free(pa), free(pb), free(wa), free(wb), free(pkg), free(out);
}

static void test_resume_bit_identical(void **state)
{
    const char *root = *state;
    char *data = kt_train_dataset(root, 16, 6, NULL);
    char *ref = kt_path(root, "ref");
    kiln_train_opts o;
    kiln_train_result res;
    kiln_err err = {0};
    stopper none = {0};
    double t0 = kt_now_s();
    kt_train_tiny_opts(&o, data, ref, 3);
    kt_expect_ok(run_train(&o, &none, &res, &err), &err, "reference run");
    printf("resume: one 3-epoch run in %.1f s\n", kt_now_s() - t0);
    resume_case(root, data, ref, "mid-epoch", 0, 1);
    resume_case(root, data, ref, "epoch-end", 1, 0);
    /* Nothing to resume from. */
    char *empty = kt_path(root, "empty");
    kt_train_tiny_opts(&o, data, empty, 3);
    o.resume = 1;
    kt_expect_fail(kiln_train(&o, &res, &err), &err, KILN_ENOTFOUND, "no checkpoint");
    free(empty), free(ref), free(data);
}

static char *read_run_id(const char *out)
{
    char *path = kt_path(out, "mlflow-run-id"), *text = NULL;
    size_t len;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(path, 0, &text, &len, &err), &err, "mlflow-run-id");
    text[strcspn(text, "\n")] = '\0';
    free(path);
    return text;
}

static void check_logged_run(kiln_mlflow_client *c, const char *run_id, const char *sha)
{
    kiln_mlflow_run *run = NULL;
    kiln_err err = {0};
    kt_expect_ok(kiln_mlflow_run_get(c, run_id, &run, &err), &err, "run get");
    assert_string_equal(run->info.status, "FINISHED");
    assert_string_equal(kiln_mlflow_run_param(run, "model"), "b0");
    assert_string_equal(kiln_mlflow_run_param(run, "learning_rate"), "0.01");
    assert_string_equal(kiln_mlflow_run_param(run, "batch_size"), "8");
    assert_string_equal(kiln_mlflow_run_tag(run, "kiln.model"), "b0");
    /* "auto" resolved: the backend that ran. */
    kiln_gpu_info gpu;
    kiln_err gerr = {0};
    assert_string_equal(kiln_mlflow_run_tag(run, "kiln.device"),
                        kiln_gpu_probe(&gpu, &gerr) == KILN_OK ? "cuda" : "cpu");
    assert_string_equal(kiln_mlflow_run_param(run, "precision"), "fp32");
    assert_string_equal(kiln_mlflow_run_tag(run, "kiln.precision"), "fp32");
    assert_string_equal(kiln_mlflow_run_tag(run, "kiln.version"), KILN_VERSION);
    assert_string_equal(kiln_mlflow_run_tag(run, "kiln.dataset_sha256"), sha);
    assert_string_equal(run->info.run_name, "tiny");
    static const char *const keys[] = {"train_loss", "train_accuracy", "val_loss",
                                       "val_accuracy", "learning_rate"};
    for (size_t k = 0; k < 5; k++) {
        kiln_mlflow_metric_value *v = NULL;
        size_t n = 0;
        kt_expect_ok(kiln_mlflow_metric_history(c, run_id, keys[k], &v, &n, &err), &err, keys[k]);
        assert_int_equal(n, 2);
        assert_int_equal(v[0].step, 1);
        assert_int_equal(v[1].step, 2);
        kiln_mlflow_metric_values_free(v, n);
    }
    kiln_mlflow_file_info *files = NULL;
    size_t n = 0;
    kt_expect_ok(kiln_mlflow_artifact_list(c, run->info.artifact_uri, "model", &files, &n, &err),
                 &err, "list model/");
    int found = 0;
    for (size_t i = 0; i < n; i++)
        found += !strcmp(files[i].path, "model/MLmodel") ||
                 !strcmp(files[i].path, "model/kiln-model.json") ||
                 !strcmp(files[i].path, "model/model.safetensors");
    assert_int_equal(found, 3);
    kiln_mlflow_file_infos_free(files, n);
    kt_expect_ok(kiln_mlflow_artifact_list(c, run->info.artifact_uri, "", &files, &n, &err), &err,
                 "list root");
    found = 0;
    for (size_t i = 0; i < n; i++)
        found += !strcmp(files[i].path, "history.json");
    assert_int_equal(found, 1);
    kiln_mlflow_file_infos_free(files, n);
    kt_expect_ok(kiln_mlflow_artifact_list(c, run->info.artifact_uri, "plots", &files, &n, &err),
                 &err, "list plots/");
    assert_int_equal(n, 1);
    assert_string_equal(files[0].path, "plots/training_curves.png");
    assert_true(files[0].file_size > 1000);
    kiln_mlflow_file_infos_free(files, n);
    kiln_mlflow_run_free(run);
}

static void test_mlflow_logging(void **state)
{
    kt_trackserver *srv = *state;
    if (kt_trackserver_start(srv) != 0)
        fail_msg("kiln-tracking did not start");
    char *root = kt_mkdtemp();
    char *data = kt_train_dataset(root, 16, 6, kt_colour_pixel);
    char *out = kt_path(root, "model");
    kiln_mlflow_client *c = kt_train_client(srv);
    kiln_train_opts o;
    kiln_train_result res;
    kiln_err err = {0};
    kt_train_tiny_opts(&o, data, out, 2);
    o.mlflow = c;
    o.experiment = "kiln-test";
    o.device = "auto";
    o.run_name = "tiny";
    kt_expect_ok(kiln_train(&o, &res, &err), &err, "train");
    char *id = read_run_id(out);
    assert_string_equal(id, res.run_id);
    kiln_model_info info;
    kt_expect_ok(kiln_model_info_read(out, &info, &err), &err, "package");
    assert_string_equal(info.run_id, id);
    check_logged_run(c, id, info.dataset_sha256);
    kiln_model_info_clear(&info);
    free(id);
    kiln_mlflow_client_free(c);
    free(out), free(data);
    kt_rmtree_free(root);
}

/* The run exists before the data is opened: a bad --data ends it FAILED. */
static void test_mlflow_failed_run(void **state)
{
    kt_trackserver *srv = *state;
    if (kt_trackserver_start(srv) != 0)
        fail_msg("kiln-tracking did not start");
    char *root = kt_mkdtemp();
    char *out = kt_path(root, "model");
    char *missing = kt_path(root, "no-such-data");
    kiln_mlflow_client *c = kt_train_client(srv);
    kiln_train_opts o;
    kiln_train_result res;
    kiln_err err = {0};
    kt_train_tiny_opts(&o, missing, out, 2);
    o.mlflow = c;
    int rc = kiln_train(&o, &res, &err);
    assert_int_not_equal(rc, KILN_OK);
    assert_non_null(strstr(err.msg, "no-such-data"));
    char *id = read_run_id(out);
    assert_string_equal(id, res.run_id);
    kiln_mlflow_run *run = NULL;
    kt_expect_ok(kiln_mlflow_run_get(c, id, &run, &err), &err, "run get");
    assert_string_equal(run->info.status, "FAILED");
    assert_true(run->info.end_time_ms > 0);
    kiln_mlflow_run_free(run);
    kiln_mlflow_experiment *e = NULL;
    kt_expect_ok(kiln_mlflow_experiment_get_by_name(c, "kiln", &e, &err), &err, "default exp");
    kiln_mlflow_experiment_free(e);
    free(id);
    kiln_mlflow_client_free(c);
    free(out), free(missing);
    kt_rmtree_free(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_learns, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_resume_bit_identical, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_mlflow_logging, kt_trackserver_setup,
                                        kt_trackserver_teardown),
        cmocka_unit_test_setup_teardown(test_mlflow_failed_run, kt_trackserver_setup,
                                        kt_trackserver_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
