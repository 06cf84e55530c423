/* tests/test_mlflow_client_s3.c — lib/mlflow's artifacts on S3 (s3rver on
 * loopback): an s3:// artifact URI directly, and a run of kiln-tracking
 * whose experiment's artifact location is s3://, so the run's
 * artifact_uri is too. Directory trees come back byte-identical. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mlflow/mlflow.h"
#include "s3/s3.h"
#include "support/s3server.h"
#include "support/testutil.h"
#include "support/trackserver.h"

#define BUCKET "mlflow-art"

typedef struct fixture {
    char *dir;
    kt_s3server s3; /* s3 and track stay zeroed until started */
    kt_trackserver track;
    kiln_mlflow_client *client;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = kt_mkdtemp();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kiln_mlflow_client_free(f->client);
    kt_trackserver_stop(&f->track, 0);
    kt_s3server_free(&f->s3);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

/* s3rver with BUCKET, and a client whose S3 side points at it; the
 * tracking URI is `uri` (kiln-tracking, or an unused one). */
static void need_s3(fixture *f, const char *uri)
{
    kt_s3server_need(&f->s3);
    kiln_mlflow_config cfg;
    kiln_mlflow_config_default(&cfg);
    snprintf(cfg.tracking_uri, sizeof cfg.tracking_uri, "%s", uri);
    cfg.backoff_factor_s = 0.01;
    cfg.backoff_jitter_s = 0;
    kt_s3_test_config(&cfg.s3, f->s3.endpoint);
    kiln_err err = {0};
    f->client = kt_expect_ptr(kiln_mlflow_client_new(&cfg, NULL, &err), &err, "client");
    kiln_s3_client *s3 = kt_expect_ptr(kiln_s3_client_new(&cfg.s3, NULL, &err), &err, "s3");
    kt_expect_ok(kiln_s3_create_bucket(s3, BUCKET, &err), &err, "bucket");
    kiln_s3_client_free(s3);
}

/* A tree of 5 regular files (one empty, one 2 MiB, odd names) and a
 * symlink, which uploads skip. */
static char *make_tree(const char *base)
{
    char *root = kt_path(base, "tree");
    kt_write_text(root, "a.txt", "hello\n");
    kt_write_text(root, "empty.txt", "");
    kt_write_text(root, "sp ace & odd+%.txt", "odd");
    char *p = kt_path(root, "sub/b.bin");
    kt_random_file(p, 2u << 20, 1);
    free(p);
    p = kt_path(root, "sub/deeper/c.bin");
    kt_random_file(p, 100000, 2);
    free(p);
    assert_int_equal(kt_system("ln -s a.txt '%s/link.txt'", root), 0);
    return root;
}

static void roundtrip(fixture *f, const char *uri)
{
    kiln_err err = {0};
    char *tree = make_tree(f->dir);
    size_t files = 0;
    kt_expect_ok(kiln_mlflow_artifact_upload_dir(f->client, uri, tree, "model", &files, &err), &err,
                 "upload dir");
    assert_int_equal(files, 5);
    /* One level at a time, like MLflow's list_artifacts. */
    kiln_mlflow_file_info *l = NULL;
    size_t n = 0;
    kt_expect_ok(kiln_mlflow_artifact_list(f->client, uri, "", &l, &n, &err), &err, "list root");
    assert_int_equal(n, 1);
    assert_string_equal(l[0].path, "model");
    assert_true(l[0].is_dir);
    kiln_mlflow_file_infos_free(l, n);
    kt_expect_ok(kiln_mlflow_artifact_list(f->client, uri, "model/sub", &l, &n, &err), &err,
                 "list sub");
    assert_int_equal(n, 2);
    int saw_b = 0, saw_deeper = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(l[i].path, "model/sub/b.bin") && !l[i].is_dir && l[i].file_size == 2 << 20)
            saw_b = 1;
        if (!strcmp(l[i].path, "model/sub/deeper") && l[i].is_dir)
            saw_deeper = 1;
    }
    assert_true(saw_b && saw_deeper);
    kiln_mlflow_file_infos_free(l, n);
    /* The whole tree back, byte for byte (the symlink was not uploaded). */
    char *back = kt_path(f->dir, "back");
    kt_expect_ok(kiln_mlflow_artifact_download_dir(f->client, uri, "model", back, &files, &err),
                 &err, "download dir");
    assert_int_equal(files, 5);
    assert_int_equal(kt_system("rm '%s/link.txt' && diff -r '%s' '%s'", tree, tree, back), 0);
    /* One file. */
    char *one = kt_path(f->dir, "one/c.bin");
    kt_expect_ok(
        kiln_mlflow_artifact_download_file(f->client, uri, "model/sub/deeper/c.bin", one, &err),
        &err, "download file");
    char *orig = kt_path(tree, "sub/deeper/c.bin");
    assert_true(kt_files_equal(orig, one));
    /* Missing things. */
    int rc = kiln_mlflow_artifact_download_file(f->client, uri, "model/nope.bin", one, &err);
    assert_int_equal(rc, KILN_ENOTFOUND);
    assert_true(kt_files_equal(orig, one)); /* the old file is untouched */
    rc = kiln_mlflow_artifact_download_dir(f->client, uri, "nothing-here", back, NULL, &err);
    assert_int_equal(rc, KILN_ENOTFOUND);
    kt_expect_ok(kiln_mlflow_artifact_list(f->client, uri, "nothing-here", &l, &n, &err), &err,
                 "list missing");
    assert_int_equal(n, 0);
    free(orig);
    free(one);
    free(back);
    free(tree);
}

static void test_s3_uri(void **state)
{
    fixture *f = *state;
    need_s3(f, "http://127.0.0.1:9"); /* the tracking server is not needed for s3:// */
    roundtrip(f, "s3://" BUCKET "/exp1/run1/artifacts/");
    /* The keys are where MLflow puts them. */
    kiln_mlflow_config cfg;
    kiln_err err = {0};
    kt_s3_test_config(&cfg.s3, f->s3.endpoint);
    kiln_s3_client *s3 = kt_expect_ptr(kiln_s3_client_new(&cfg.s3, NULL, &err), &err, "s3");
    kiln_s3_object_info info;
    kt_expect_ok(kiln_s3_head(s3, BUCKET, "exp1/run1/artifacts/model/sub/b.bin", &info, &err), &err,
                 "head");
    assert_int_equal(info.size, 2 << 20);
    kiln_s3_client_free(s3);
}

static void test_tracking_run_on_s3(void **state)
{
    fixture *f = *state;
    if (!getenv("KILN_TRACKING_BIN")) {
        printf("SKIPPED: KILN_TRACKING_BIN is not set (kiln-tracking not built)\n");
        skip();
    }
    if (kt_trackserver_start(&f->track) != 0)
        fail_msg("cannot start kiln-tracking");
    need_s3(f, f->track.uri);
    kiln_err err = {0};
    char *exp = NULL;
    kt_expect_ok(kiln_mlflow_experiment_create(f->client, "on-s3", "s3://" BUCKET "/mlruns/on-s3",
                                               &exp, &err),
                 &err, "experiment");
    kiln_mlflow_run_options o = {.experiment_id = exp, .run_name = "s3-run"};
    kiln_mlflow_run *run = NULL;
    kt_expect_ok(kiln_mlflow_run_create(f->client, &o, &run, &err), &err, "run");
    printf("run artifact_uri: %s\n", run->info.artifact_uri);
    assert_true(strncmp(run->info.artifact_uri, "s3://" BUCKET "/mlruns/on-s3", 27) == 0);
    roundtrip(f, run->info.artifact_uri);
    kiln_mlflow_run_free(run);
    free(exp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_s3_uri, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tracking_run_on_s3, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
