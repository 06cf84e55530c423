/* tests/test_train_errors.c — kiln_train refusing bad input with a message
 * that names it: a folder that is not a prepared dataset, a diverging run
 * (non-finite loss: the epoch and step named, the MLflow run FAILED),
 * corrupt checkpoints on --resume, and --init-weights files that do not fit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "mlflow/mlflow.h"
#include "nn/efficientnet.h"
#include "nn/backend.h"
#include "support/dsbuild.h"
#include "support/testutil.h"
#include "support/trackserver.h"
#include "support/trainfix.h"
#include "train/train.h"

static void test_not_a_dataset(void **state)
{
    const char *root = *state;
    char *folder = kt_path(root, "photos"), *out = kt_path(root, "m");
    kiln_train_opts o;
    kiln_err err = {0};
    kt_write_text(root, "photos/dry/a.jpg", "not really");
    kt_train_tiny_opts(&o, folder, out, 1);
    kt_expect_fail(kiln_train(&o, NULL, &err), &err, KILN_ENOTFOUND, "manifest.json");
    assert_non_null(strstr(err.msg, "photos"));
    /* A manifest that is not one. */
    kt_write_text(root, "photos/manifest.json", "{\"format\": \"kiln-dataset\"");
    assert_int_not_equal(kiln_train(&o, NULL, &err), KILN_OK);
    assert_non_null(strstr(err.msg, "manifest.json"));
    free(folder), free(out);
}

/* SGD at the highest rate the config allows sends the weights to infinity
 * within a few steps. */
static void test_diverging_run_fails(void **state)
{
    kt_trackserver *srv = *state;
    if (kt_trackserver_start(srv) != 0)
        fail_msg("kiln-tracking did not start");
    char *root = kt_mkdtemp(), *data = kt_train_dataset(root, 48, 6, NULL);
    char *out = kt_path(root, "m");
    kiln_mlflow_client *c = kt_train_client(srv);
    kiln_train_opts o;
    kiln_train_result res;
    kiln_err err = {0};
    kt_train_tiny_opts(&o, data, out, 3);
    strcpy(o.cfg.train.optimizer, "sgd");
    o.cfg.train.learning_rate = 10;
    o.cfg.train.label_smoothing = 0;
    o.warmup_epochs = 0;
    o.mlflow = c;
    kt_expect_fail(kiln_train(&o, &res, &err), &err, KILN_EINVAL, "loss is");
    assert_non_null(strstr(err.msg, "epoch "));
    assert_non_null(strstr(err.msg, "lower the learning rate"));
    printf("diverged: %s\n", err.msg);
    kiln_mlflow_run *run = NULL;
    kt_expect_ok(kiln_mlflow_run_get(c, res.run_id, &run, &err), &err, "run get");
    assert_string_equal(run->info.status, "FAILED");
    kiln_mlflow_run_free(run);
    kiln_mlflow_client_free(c);
    free(data), free(out);
    kt_rmtree_free(root);
}

/* Overwrite `name` in out/checkpoint with `text`. */
static void spoil(const char *out, const char *name, const char *text)
{
    char *ck = kt_path(out, "checkpoint"), *path = kt_path(ck, name);
    kt_write_file(path, text, strlen(text));
    free(ck), free(path);
}

/* The file in out/checkpoint whose name starts with `prefix`. */
static char *checkpoint_file(const char *out, const char *prefix)
{
    char *text = NULL;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls %s/checkpoint | grep '^%s'", out, prefix);
    assert_int_equal(kt_run_capture(&text, "%s", cmd), 0);
    text[strcspn(text, "\n")] = '\0';
    return text;
}

static void test_corrupt_checkpoint(void **state)
{
    const char *root = *state;
    char *data = kt_train_dataset(root, 16, 6, NULL), *out = kt_path(root, "m");
    kiln_train_opts o;
    kiln_err err = {0};
    kt_train_tiny_opts(&o, data, out, 1);
    kt_expect_ok(kiln_train(&o, NULL, &err), &err, "one epoch");
    kt_train_tiny_opts(&o, data, out, 2);
    o.resume = 1;

    char *weights = checkpoint_file(out, "weights-");
    spoil(out, weights, "garbage, not safetensors");
    assert_int_not_equal(kiln_train(&o, NULL, &err), KILN_OK);
    if (!strstr(err.msg, weights))
        fail_msg("'%s' does not name %s", err.msg, weights);

    spoil(out, "state.json", "{\"step\": ");
    assert_int_not_equal(kiln_train(&o, NULL, &err), KILN_OK);
    assert_non_null(strstr(err.msg, "state.json"));
    free(weights), free(data), free(out);
}

/* Weights of another variant, and a file that is not safetensors. */
static void test_init_weights_mismatch(void **state)
{
    const char *root = *state;
    char *data = kt_train_dataset(root, 16, 6, NULL), *out = kt_path(root, "m");
    char *b1 = kt_path(root, "b1.safetensors"), *junk = kt_path(root, "junk.safetensors");
    kiln_err err = {0};
    kiln_nn_backend *be = kiln_nn_cpu_create(1, &err);
    kiln_effnet *net = be ? kiln_effnet_create("b1", 5, be, &err) : NULL;
    kt_expect_ok(net ? kiln_effnet_init(net, 1, &err) : KILN_EINVAL, &err, "b1");
    kt_expect_ok(kiln_effnet_save(net, b1, &err), &err, "save b1");
    kiln_effnet_destroy(net);
    kiln_nn_backend_destroy(be);
    kt_write_file(junk, "\x08\0\0\0\0\0\0\0{}", 10);

    kiln_train_opts o;
    kt_train_tiny_opts(&o, data, out, 1);
    o.init_weights = b1; /* the run trains b0 */
    assert_int_not_equal(kiln_train(&o, NULL, &err), KILN_OK);
    assert_non_null(strstr(err.msg, "--init-weights"));
    assert_non_null(strstr(err.msg, "b1.safetensors"));
    printf("b1 into b0: %s\n", err.msg);
    o.init_weights = junk;
    assert_int_not_equal(kiln_train(&o, NULL, &err), KILN_OK);
    assert_non_null(strstr(err.msg, "junk.safetensors"));
    free(data), free(out), free(b1), free(junk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_not_a_dataset, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_diverging_run_fails, kt_trackserver_setup,
                                        kt_trackserver_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_checkpoint, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_init_weights_mismatch, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
