/* tests/test_pipeline_run_local.c — `kiln pipeline run-local` end to end on
 * the committed pipelines/kiln-train.yaml: a small Fashion-MNIST zip in
 * s3rver (loopback), kiln-tracking as MLflow, the kiln-component steps.
 *   1. a run registers version 1: Production, alias champion, decision tags,
 *      one MLflow run (train -> evaluate -> register) nested under the
 *      pipeline's run, the package uploaded to the model bucket;
 *   2. a run whose model does not clear the gate (min_accuracy_gain) is
 *      registered but not promoted: version 1 keeps Production and champion;
 *   3. a corrupt zip stops the pipeline at prepare with its message, the
 *      later tasks do not run, and the pipeline's MLflow run is FAILED;
 *   4. without MLFLOW_TRACKING_URI, run-local starts kiln-tracking on
 *      loopback itself and stops it afterwards;
 *   5. Ctrl-C during train stops the step (SIGTERM), the training run and
 *      the pipeline run end KILLED, run-local exits 130. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fs.h"
#include "mlflow/mlflow.h"
#include "s3/s3.h"
#include "support/s3server.h"
#include "support/testutil.h"
#include "support/trackapi.h"
#include "support/trackserver.h"

typedef struct fixture {
    kt_s3server s3;
    kt_trackserver trk;
    char *dir;
    char *yaml;
    kiln_mlflow_client *mc;
    kiln_s3_client *s3c;
} fixture;

static void put_file(fixture *f, const char *bucket, const char *key, const char *path)
{
    kiln_err err = {0};
    kt_expect_ok(kiln_s3_create_bucket(f->s3c, bucket, &err), &err, "create bucket");
    kt_expect_ok(kiln_s3_put(f->s3c, bucket, key, path, NULL, &err), &err, "put");
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kiln_err err = {0};
    if (!kt_s3rver_path() || kt_s3server_start(&f->s3) != 0) {
        printf("SKIPPED: s3rver is not available (scripts/install-deps.sh installs it)\n");
        free(f);
        return -1;
    }
    if (kt_trackserver_start(&f->trk) != 0) {
        kt_s3server_free(&f->s3);
        free(f);
        return -1;
    }
    f->dir = kt_mkdtemp();
    f->yaml = kt_path(getenv("KILN_SOURCE_DIR"), "pipelines/kiln-train.yaml");
    kiln_s3_config sc;
    kt_s3_test_config(&sc, f->s3.endpoint);
    f->s3c = kiln_s3_client_new(&sc, NULL, &err);
    kiln_mlflow_config mc;
    kiln_mlflow_config_default(&mc);
    snprintf(mc.tracking_uri, sizeof mc.tracking_uri, "%s", f->trk.uri);
    mc.max_retries = 1;
    f->mc = kiln_mlflow_client_new(&mc, NULL, &err);
    /* What the steps read, as the pipeline's Secret provides it in the cluster. */
    setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    setenv("AWS_ENDPOINT_URL", f->s3.endpoint, 1);
    setenv("MLFLOW_TRACKING_URI", f->trk.uri, 1);
    setenv("KILN_LOG_FORMAT", "human", 1);
    char *zip = kt_path(f->dir, "fashion.zip"), *out = NULL;
    /* 10 classes x 12 images at 32x32: seconds of training under ASan. */
    int rc = kt_run_capture(&out, "%s/scripts/make-fashion-zip --out %s --per-class 12 --size 32",
                            getenv("KILN_SOURCE_DIR"), zip);
    if (rc != 0)
        fail_msg("make-fashion-zip: %s", out);
    free(out);
    put_file(f, "ml-data", "fashion.zip", zip);
    char *bad = kt_path(f->dir, "corrupt.zip");
    kt_write_file(bad, "PK\003\004 this is not a zip archive at all", 38);
    put_file(f, "ml-data", "corrupt.zip", bad);
    free(zip);
    free(bad);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kiln_mlflow_client_free(f->mc);
    kiln_s3_client_free(f->s3c);
    kt_trackserver_stop(&f->trk, 0);
    kt_s3server_free(&f->s3);
    kt_rmtree_free(f->dir);
    free(f->yaml);
    free(f);
    return 0;
}

/* kiln pipeline run-local with the small-run parameters and `extra`. */
static int run_local(fixture *f, const char *run_id, const char *extra, char **out)
{
    int rc = kt_run_capture(out, "%s pipeline run-local %s --runs-dir %s/runs --run-id %s "
                            "--param epochs=1 --param batch_size=8 --param image_size=32 "
                            "--param registered_model_name=fashion "
                            "--param mlflow_experiment_name=fashion %s",
                            kt_kiln_bin(), f->yaml, f->dir, run_id, extra);
    printf("---- run-local %s: exit %d ----\n%s\n", run_id, rc, *out);
    return rc;
}

/* The id after "mlflow pipeline run: " in the output. */
static void pipeline_run_id(const char *out, char *id, size_t size)
{
    const char *p = strstr(out, "mlflow pipeline run: ");
    assert_non_null(p);
    p += strlen("mlflow pipeline run: ");
    snprintf(id, size, "%.*s", (int)strcspn(p, " \n"), p);
}

static const char *version_tag(const kiln_mlflow_model_version *v, const char *key)
{
    for (size_t i = 0; i < v->n_tags; i++)
        if (!strcmp(v->tags[i].key, key))
            return v->tags[i].value;
    return NULL;
}

static int s3_has(fixture *f, const char *bucket, const char *key)
{
    kiln_s3_object_info info;
    kiln_err err = {0};
    return kiln_s3_head(f->s3c, bucket, key, &info, &err) == KILN_OK;
}

static void check_first_run(fixture *f, const char *out)
{
    kiln_err err = {0};
    kiln_mlflow_model_version *v = NULL;
    kiln_mlflow_run *run = NULL, *parent = NULL;
    char pid[64];
    const char *tasks[] = {"download", "prepare", "train", "evaluate", "register", "upload"};
    for (size_t i = 0; i < 6; i++) {
        char line[64];
        snprintf(line, sizeof line, "task %s: SUCCEEDED in ", tasks[i]);
        if (!strstr(out, line))
            fail_msg("no '%s' in the output", line);
    }
    kt_expect_ok(kiln_mlflow_alias_get(f->mc, "fashion", "champion", &v, &err), &err, "champion");
    assert_string_equal(v->version, "1");
    assert_string_equal(v->current_stage, "Production");
    assert_string_equal(version_tag(v, "kiln.promotion"), "promoted");
    assert_non_null(strstr(version_tag(v, "kiln.promotion_reason"), "no version in Production"));
    /* One run holds training, evaluation and registration. */
    kt_expect_ok(kiln_mlflow_run_get(f->mc, v->run_id, &run, &err), &err, "train run");
    assert_string_equal(run->info.status, "FINISHED");
    int have_train = 0, have_test = 0;
    for (size_t i = 0; i < run->n_metrics; i++) {
        have_train |= !strcmp(run->metrics[i].key, "train_loss");
        have_test |= !strcmp(run->metrics[i].key, "test_accuracy");
    }
    assert_true(have_train && have_test);
    assert_non_null(kiln_mlflow_run_param(run, "epochs"));
    assert_string_equal(kiln_mlflow_run_tag(run, "kiln.registered_version"), "1");
    pipeline_run_id(out, pid, sizeof pid);
    assert_string_equal(kiln_mlflow_run_tag(run, "mlflow.parentRunId"), pid);
    kt_expect_ok(kiln_mlflow_run_get(f->mc, pid, &parent, &err), &err, "pipeline run");
    assert_string_equal(parent->info.status, "FINISHED");
    assert_string_equal(kiln_mlflow_run_tag(parent, "kiln.task.upload"), "SUCCEEDED");
    assert_string_equal(kiln_mlflow_run_tag(parent, "kiln.train_run_id"), v->run_id);
    /* The package in the model bucket, as version and as production. */
    assert_true(s3_has(f, "ml-models", "dry-wet-road-classifier/v1/kiln-model.json"));
    assert_true(s3_has(f, "ml-models", "dry-wet-road-classifier/production/model.safetensors"));
    /* KFP's metrics in the evaluate step's executor output. */
    char *eo = kt_path(f->dir, "runs/good/evaluate/executor_output.json"), *text = NULL;
    size_t len;
    kt_expect_ok(kiln_read_file(eo, 0, &text, &len, &err), &err, "executor output");
    assert_non_null(strstr(text, "\"confusionMatrix\""));
    assert_non_null(strstr(text, "\"test_accuracy\""));
    free(text);
    free(eo);
    char *cm = kt_path(f->dir, "runs/good/evaluate/artifacts/classification_metrics");
    assert_true(kiln_is_file(cm));
    free(cm);
    kiln_mlflow_run_free(run);
    kiln_mlflow_run_free(parent);
    kiln_mlflow_model_version_free(v);
}

static void check_not_promoted(fixture *f, const char *out)
{
    kiln_err err = {0};
    kiln_mlflow_model_version *v2 = NULL, *champ = NULL;
    assert_non_null(strstr(out, "version 2 not promoted"));
    kt_expect_ok(kiln_mlflow_model_version_get(f->mc, "fashion", "2", &v2, &err), &err, "v2");
    assert_string_equal(v2->current_stage, "None");
    assert_string_equal(version_tag(v2, "kiln.promotion"), "not promoted");
    assert_non_null(strstr(version_tag(v2, "kiln.promotion_reason"), "of version 1 in Production"));
    kt_expect_ok(kiln_mlflow_alias_get(f->mc, "fashion", "champion", &champ, &err), &err, "champ");
    assert_string_equal(champ->version, "1");
    assert_string_equal(champ->current_stage, "Production");
    /* The register step's output parameter says so too. */
    char *rj = kt_path(f->dir, "runs/worse/run.json"), *text = NULL;
    size_t len;
    kt_expect_ok(kiln_read_file(rj, 0, &text, &len, &err), &err, "run.json");
    cJSON *j = cJSON_Parse(text);
    const cJSON *t;
    int seen = 0;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(j, "tasks")) {
        if (strcmp(cJSON_GetObjectItem(t, "name")->valuestring, "register"))
            continue;
        const cJSON *p = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(t, "outputs"),
                                                                 "parameters"), "promoted");
        assert_true(cJSON_IsFalse(p));
        seen = 1;
    }
    assert_true(seen);
    assert_true(s3_has(f, "ml-models", "dry-wet-road-classifier/v2/kiln-model.json"));
    cJSON_Delete(j);
    free(text);
    free(rj);
    kiln_mlflow_model_version_free(v2);
    kiln_mlflow_model_version_free(champ);
}

static void check_corrupt(fixture *f, const char *out)
{
    kiln_err err = {0};
    kiln_mlflow_run *parent = NULL;
    char pid[64];
    assert_non_null(strstr(out, "task download: SUCCEEDED"));
    assert_non_null(strstr(out, "task prepare: FAILED in "));
    assert_non_null(strstr(out, "kiln-component prepare: "));
    assert_non_null(strstr(out, "task train: NOT_RUN"));
    assert_null(strstr(out, "task train: RUNNING"));
    pipeline_run_id(out, pid, sizeof pid);
    kt_expect_ok(kiln_mlflow_run_get(f->mc, pid, &parent, &err), &err, "pipeline run");
    assert_string_equal(parent->info.status, "FAILED");
    assert_string_equal(kiln_mlflow_run_tag(parent, "kiln.failed_task"), "prepare");
    assert_non_null(strstr(kiln_mlflow_run_tag(parent, "kiln.failure"), "kiln-component prepare"));
    kiln_mlflow_run_free(parent);
}

static void test_run_local(void **state)
{
    fixture *f = *state;
    char *out = NULL;
    double t0 = kt_now_s();
    int rc = run_local(f, "good", "--source s3://ml-data/fashion.zip", &out);
    if (rc != 0)
        fail_msg("first run failed (exit %d)", rc);
    check_first_run(f, out);
    free(out);
    /* No accuracy can clear a gain of 2: a model that is not good enough. */
    rc = run_local(f, "worse", "--source s3://ml-data/fashion.zip --param min_accuracy_gain=2",
                   &out);
    assert_int_equal(rc, 0);
    check_not_promoted(f, out);
    free(out);
    rc = run_local(f, "corrupt", "--param source_data_object=corrupt.zip", &out);
    assert_int_equal(rc, 1);
    check_corrupt(f, out);
    free(out);
    printf("three pipeline runs in %.1f s\n", kt_now_s() - t0);
}

static void test_starts_its_own_tracking(void **state)
{
    fixture *f = *state;
    char *out = NULL, *bad = kt_path(f->dir, "corrupt.zip"), *tdir = kt_path(f->dir, "trk");
    char extra[2048];
    unsetenv("MLFLOW_TRACKING_URI");
    snprintf(extra, sizeof extra, "--source %s --tracking-dir %s", bad, tdir);
    int rc = run_local(f, "own-tracking", extra, &out);
    setenv("MLFLOW_TRACKING_URI", f->trk.uri, 1);
    assert_int_equal(rc, 1);
    const char *p = strstr(out, "started kiln-tracking at http://127.0.0.1:");
    assert_non_null(p);
    assert_non_null(strstr(out, "stopped kiln-tracking"));
    assert_non_null(strstr(out, "task prepare: FAILED"));
    char uri[64];
    p += strlen("started kiln-tracking at ");
    snprintf(uri, sizeof uri, "%.*s", (int)strcspn(p, " "), p);
    /* Stopped: nothing answers there any more. */
    int status = -1;
    cJSON *j = kt_track_call(uri, "GET", "/health", NULL, &status);
    cJSON_Delete(j);
    assert_int_equal(status, 0);
    char *db = kt_path(tdir, "mlflow.db");
    assert_true(kiln_is_file(db));
    free(db);
    free(out);
    free(bad);
    free(tdir);
}

/* The text after `marker` up to the end of its line, once it is in `path`. */
static int wait_for_text(const char *path, const char *marker, char *value, size_t size,
                         double timeout_s)
{
    double t0 = kt_now_s();
    while (kt_now_s() - t0 < timeout_s) {
        char *text = NULL;
        size_t len;
        kiln_err err = {0};
        if (kiln_read_file(path, 0, &text, &len, &err) == KILN_OK) {
            const char *p = strstr(text, marker);
            if (p && strchr(p, '\n')) {
                p += strlen(marker);
                snprintf(value, size, "%.*s", (int)strcspn(p, " \n"), p);
                free(text);
                return 1;
            }
        }
        free(text);
        kt_sleep_ms(100);
    }
    return 0;
}

static void test_interrupt(void **state)
{
    fixture *f = *state;
    char *log = kt_path(f->dir, "interrupt.log"), runs[4096], train_run[64], pipe_run[64];
    snprintf(runs, sizeof runs, "%s/runs", f->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(kt_kiln_bin(), "kiln", "pipeline", "run-local", f->yaml, "--runs-dir", runs,
              "--run-id", "interrupted", "--source", "s3://ml-data/fashion.zip", "--param",
              "epochs=500", "--param", "image_size=32", "--param", "batch_size=8",
              "--param", "mlflow_experiment_name=fashion", (char *)NULL);
        _exit(127);
    }
    int ok = wait_for_text(log, "MLflow run ", pipe_run, sizeof pipe_run, 60) &&
             wait_for_text(log, "[train] ", train_run, sizeof train_run, 60) &&
             wait_for_text(log, "train: MLflow run ", train_run, sizeof train_run, 60);
    kt_sleep_ms(500);
    kill(pid, SIGINT);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    char *out = NULL;
    size_t len;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(log, 0, &out, &len, &err), &err, "log");
    printf("---- interrupted run ----\n%s\n", out);
    assert_true(ok);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 130);
    assert_non_null(strstr(out, "task train: CANCELED"));
    assert_non_null(strstr(out, "task evaluate: NOT_RUN"));
    kiln_mlflow_run *run = NULL;
    kt_expect_ok(kiln_mlflow_run_get(f->mc, train_run, &run, &err), &err, "train run");
    assert_string_equal(run->info.status, "KILLED");
    kiln_mlflow_run_free(run);
    kt_expect_ok(kiln_mlflow_run_get(f->mc, pipe_run, &run, &err), &err, "pipeline run");
    assert_string_equal(run->info.status, "KILLED");
    kiln_mlflow_run_free(run);
    free(out);
    free(log);
}

static void test_bad_flags(void **state)
{
    fixture *f = *state;
    char *out = NULL;
    static const struct { const char *args, *needle; } cases[] = {
        {"--param epochs=many", "--param epochs: 'many' is not a NUMBER_INTEGER"},
        {"--param nope=1", "has no parameter 'nope'"},
        {"--param epochs", "--param wants NAME=VALUE"},
        {"--bogus", "unknown option '--bogus'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run_local(f, "bad", cases[i].args, &out);
        if (rc != 2 || !strstr(out, cases[i].needle))
            fail_msg("%s: exit %d, wanted 2 and '%s'", cases[i].args, rc, cases[i].needle);
        free(out);
    }
    int rc = kt_run_capture(&out, "%s pipeline run-local --help", kt_kiln_bin());
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "--tracking-dir DIR"));
    assert_non_null(strstr(out, "(default .kiln/pipeline-runs)"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_run_local),
        cmocka_unit_test(test_starts_its_own_tracking),
        cmocka_unit_test(test_interrupt),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
