/* tests/test_pipeline_components.c — kiln-component, the pipeline's steps,
 * through the binary ($KILN_COMPONENTS_DIR/kiln-component):
 *  - the promotion gate of `register` with runs whose test accuracies are
 *    set exactly (kiln-tracking as MLflow): first version promoted; a worse
 *    one not; an equal one promoted (archiving the previous Production and
 *    moving the champion alias); a better one held back by
 *    --min-accuracy-gain; --test-accuracy (evaluate's output) wins over
 *    the run's metric;
 *  - a failing evaluate marks the training run FAILED;
 *  - bad arguments exit 2, failures exit non-zero with one line on stderr;
 *  - run-local on a hand-written IR: a task's retryPolicy is honoured. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "mlflow/mlflow.h"
#include "support/s3server.h"
#include "support/testutil.h"
#include "support/trackserver.h"

static const char *component_bin(void)
{
    static char path[4096];
    const char *dir = getenv("KILN_COMPONENTS_DIR");
    assert_non_null(dir);
    snprintf(path, sizeof path, "%s/kiln-component", dir);
    return path;
}

static kiln_mlflow_client *client(const kt_trackserver *srv)
{
    kiln_mlflow_config cfg;
    kiln_err err = {0};
    kiln_mlflow_config_default(&cfg);
    snprintf(cfg.tracking_uri, sizeof cfg.tracking_uri, "%s", srv->uri);
    cfg.max_retries = 1;
    return kt_expect_ptr(kiln_mlflow_client_new(&cfg, NULL, &err), &err, "client");
}

/* A finished run with test_accuracy = acc and a file under model/. */
static char *make_run(kiln_mlflow_client *c, const char *dir, double acc)
{
    kiln_err err = {0};
    char *exp = NULL;
    kiln_mlflow_run *run = NULL;
    kt_expect_ok(kiln_mlflow_experiment_get_or_create(c, "gate", &exp, &err), &err, "exp");
    kiln_mlflow_run_options ro = {.experiment_id = exp};
    kt_expect_ok(kiln_mlflow_run_create(c, &ro, &run, &err), &err, "run");
    kt_expect_ok(kiln_mlflow_log_metric(c, run->info.run_id, "test_accuracy", acc, 0, 0, &err),
                 &err, "metric");
    char *file = kt_path(dir, "kiln-model.json");
    kt_write_file(file, "{}", 2);
    kt_expect_ok(kiln_mlflow_artifact_upload_file(c, run->info.artifact_uri, file,
                                                  "model/kiln-model.json", &err), &err, "upload");
    kt_expect_ok(kiln_mlflow_run_finish(c, run->info.run_id, KILN_MLFLOW_FINISHED, &err), &err,
                 "finish");
    char *id = strdup(run->info.run_id);
    kiln_mlflow_run_free(run);
    free(exp);
    free(file);
    return id;
}

/* Run register for `run_id`; *version and *promoted from its output files. */
static void do_register(const kt_trackserver *srv, const char *dir, const char *run_id,
                        const char *extra, char *version, int *promoted)
{
    char *out = NULL, *vfile = kt_path(dir, "out/version"), *pfile = kt_path(dir, "out/promoted");
    int rc = kt_run_capture(&out, "%s register --mlflow-tracking-uri %s --registered-model-name "
                            "gate --run-id %s --model-version-file %s --promoted-file %s %s",
                            component_bin(), srv->uri, run_id, vfile, pfile, extra);
    if (rc != 0)
        fail_msg("register: exit %d\n%s", rc, out);
    char *v = NULL, *p = NULL;
    size_t len;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(vfile, 0, &v, &len, &err), &err, "version file");
    kt_expect_ok(kiln_read_file(pfile, 0, &p, &len, &err), &err, "promoted file");
    snprintf(version, 32, "%s", v);
    assert_true(!strcmp(p, "true") || !strcmp(p, "false"));
    *promoted = !strcmp(p, "true");
    free(v);
    free(p);
    free(out);
    free(vfile);
    free(pfile);
}

static const char *tag(const kiln_mlflow_model_version *v, const char *key)
{
    for (size_t i = 0; i < v->n_tags; i++)
        if (!strcmp(v->tags[i].key, key))
            return v->tags[i].value;
    return "";
}

static void expect_version(kiln_mlflow_client *c, const char *version, const char *stage,
                           const char *decision, const char *reason)
{
    kiln_mlflow_model_version *v = NULL;
    kiln_err err = {0};
    kt_expect_ok(kiln_mlflow_model_version_get(c, "gate", version, &v, &err), &err, "get");
    assert_string_equal(v->current_stage, stage);
    assert_string_equal(tag(v, "kiln.promotion"), decision);
    if (!strstr(tag(v, "kiln.promotion_reason"), reason))
        fail_msg("version %s: reason '%s' lacks '%s'", version, tag(v, "kiln.promotion_reason"),
                 reason);
    kiln_mlflow_model_version_free(v);
}

static void expect_champion(kiln_mlflow_client *c, const char *version)
{
    kiln_mlflow_model_version *v = NULL;
    kiln_err err = {0};
    kt_expect_ok(kiln_mlflow_alias_get(c, "gate", "champion", &v, &err), &err, "champion");
    assert_string_equal(v->version, version);
    kiln_mlflow_model_version_free(v);
}

static void test_promotion_gate(void **state)
{
    kt_trackserver *srv = *state;
    if (kt_trackserver_start(srv) != 0)
        fail_msg("kiln-tracking did not start");
    kiln_mlflow_client *c = client(srv);
    char *dir = kt_mkdtemp(), version[32];
    int promoted;
    char *a = make_run(c, dir, 0.80);
    do_register(srv, dir, a, "", version, &promoted);
    assert_string_equal(version, "1");
    assert_true(promoted);
    expect_version(c, "1", "Production", "promoted", "no version in Production");
    expect_champion(c, "1");

    char *b = make_run(c, dir, 0.60);
    do_register(srv, dir, b, "", version, &promoted);
    assert_false(promoted);
    expect_version(c, "2", "None", "not promoted", "0.6000 < 0.8000 + 0.0000 of version 1");
    expect_version(c, "1", "Production", "promoted", "");
    expect_champion(c, "1");

    char *cc = make_run(c, dir, 0.80);
    do_register(srv, dir, cc, "", version, &promoted);
    assert_true(promoted);
    expect_version(c, "3", "Production", "promoted", "0.8000 >= 0.8000");
    expect_version(c, "1", "Archived", "promoted", "");
    expect_champion(c, "3");

    char *d = make_run(c, dir, 0.85);
    do_register(srv, dir, d, "--min-accuracy-gain 0.1", version, &promoted);
    assert_false(promoted);
    expect_version(c, "4", "None", "not promoted", "0.8500 < 0.8000 + 0.1000");

    char *e = make_run(c, dir, 0.10);
    do_register(srv, dir, e, "--test-accuracy 0.95", version, &promoted);
    assert_true(promoted);
    expect_version(c, "5", "Production", "promoted", "0.9500 >= 0.8000");
    expect_champion(c, "5");
    /* The run knows its version. */
    kiln_mlflow_run *run = NULL;
    kiln_err err = {0};
    kt_expect_ok(kiln_mlflow_run_get(c, e, &run, &err), &err, "run");
    assert_string_equal(kiln_mlflow_run_tag(run, "kiln.registered_version"), "5");
    kiln_mlflow_run_free(run);
    free(a);
    free(b);
    free(cc);
    free(d);
    free(e);
    kiln_mlflow_client_free(c);
    kt_rmtree_free(dir);
}

static void test_failing_evaluate_fails_the_run(void **state)
{
    kt_trackserver *srv = *state;
    if (kt_trackserver_start(srv) != 0)
        fail_msg("kiln-tracking did not start");
    kiln_mlflow_client *c = client(srv);
    char *dir = kt_mkdtemp();
    char *run_id = make_run(c, dir, 0.5), *out = NULL, in[4096];
    snprintf(in, sizeof in,
             "{\"inputs\":{\"parameterValues\":{\"run_id\":\"%s\",\"mlflow_tracking_uri\":\"%s\"},"
             "\"artifacts\":{\"model\":{\"artifacts\":[{\"uri\":\"file://%s/no-model\"}]},"
             "\"dataset\":{\"artifacts\":[{\"uri\":\"file://%s/no-data\"}]}}},"
             "\"outputs\":{\"parameters\":{\"test_accuracy\":{\"outputFile\":\"%s/o/acc\"}},"
             "\"artifacts\":{\"metrics\":{\"artifacts\":[{\"name\":\"metrics\",\"uri\":\"file://%s/m\"}]},"
             "\"classification_metrics\":{\"artifacts\":[{\"uri\":\"file://%s/cm\"}]}},"
             "\"outputFile\":\"%s/o/out.json\"}}",
             run_id, srv->uri, dir, dir, dir, dir, dir, dir);
    int rc = kt_run_capture(&out, "( %s evaluate --executor-input '%s' 2>&1 >/dev/null )",
                            component_bin(), in);
    assert_true(rc != 0);
    assert_int_equal(strncmp(out, "kiln-component evaluate: ", 25), 0);
    assert_true(strchr(out, '\n') == out + strlen(out) - 1); /* one line */
    kiln_mlflow_run *run = NULL;
    kiln_err err = {0};
    kt_expect_ok(kiln_mlflow_run_get(c, run_id, &run, &err), &err, "run");
    assert_string_equal(run->info.status, "FAILED");
    assert_string_equal(kiln_mlflow_run_tag(run, "kiln.failed_step"), "evaluate");
    kiln_mlflow_run_free(run);
    free(out);
    free(run_id);
    kiln_mlflow_client_free(c);
    kt_rmtree_free(dir);
}

static void test_arguments(void **state)
{
    const char *dir = *state;
    static const struct { const char *args; int status; const char *needle; } cases[] = {
        {"", 2, "usage: kiln-component STEP"},
        {"bogus", 2, "unknown step 'bogus'"},
        {"prepare --zip x.zip", 2, "kiln-component prepare: --out is required"},
        {"prepare --zip x.zip --out o --image-size 8", 2, "--image-size must be an integer in [16, 1024]"},
        {"train --dataset d --out o --run-id-file f --epochs ten", 2, "--epochs must be an integer"},
        {"train --dataset d --out o --run-id-file f --model-variant b9", 2, "--model-variant"},
        {"train --dataset d --out o --run-id-file f --config-yaml 'augment: {scale_min: 7}'", 2,
         "--config-yaml: augment.scale_min"},
        {"train --dataset d --out o --run-id-file f --config-yaml 'train: [1'", 2,
         "--config-yaml"},
        {"register --registered-model-name m --run-id r --model-version-file v "
         "--promoted-file p --test-accuracy high", 2, "--test-accuracy must be a number"},
        {"upload --model m --bucket b --name n --model-version 1 --promoted maybe", 2,
         "--promoted must be true or false"},
        {"download --object /nonexistent/data.zip --out OUT/zip", 1,
         "kiln-component download: /nonexistent/data.zip: no such file"},
        {"evaluate --executor-input '{\"x\":1}'", 1, "not a KFP executor input"},
        {"prepare --zip /nonexistent.zip --out OUT/ds", 1, "kiln-component prepare: "},
        {"download --frobnicate 1", 2, "unknown argument '--frobnicate'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[1024], *out = NULL;
        const char *o = strstr(cases[i].args, "OUT");
        if (o)
            snprintf(args, sizeof args, "%.*s%s%s", (int)(o - cases[i].args), cases[i].args, dir,
                     o + 3);
        else
            snprintf(args, sizeof args, "%s", cases[i].args);
        int rc = kt_run_capture(&out, "( %s %s 2>&1 >/dev/null )", component_bin(), args);
        int want = cases[i].status;
        if ((want == 1 ? rc == 0 : rc != want) || !strstr(out, cases[i].needle))
            fail_msg("kiln-component %s: exit %d, wanted %d and '%s' in:\n%s", args, rc, want,
                     cases[i].needle, out);
        if (want == 1 && strchr(out, '\n') != out + strlen(out) - 1)
            fail_msg("kiln-component %s: more than one line on stderr:\n%s", args, out);
        free(out);
    }
    const char *steps[] = {"download", "prepare", "train", "evaluate", "register", "upload"};
    for (size_t i = 0; i < 6; i++) {
        char *out = NULL, want[64];
        int rc = kt_run_capture(&out, "%s %s --help", component_bin(), steps[i]);
        snprintf(want, sizeof want, "usage: kiln-component %s ", steps[i]);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, want));
        free(out);
    }
}

static const char retry_ir[] =
    "schemaVersion: 2.1.0\n"
    "pipelineInfo: {name: retry-check}\n"
    "components:\n"
    "  comp-fetch:\n"
    "    executorLabel: exec-fetch\n"
    "    inputDefinitions: {parameters: {object: {parameterType: STRING}}}\n"
    "    outputDefinitions:\n"
    "      artifacts: {data: {artifactType: {schemaTitle: system.Dataset, schemaVersion: 0.0.1}}}\n"
    "deploymentSpec:\n"
    "  executors:\n"
    "    exec-fetch:\n"
    "      container:\n"
    "        image: kiln:test\n"
    "        command: [kiln-component, download]\n"
    "        args: [--object, \"{{$.inputs.parameters['object']}}\", --out,\n"
    "               \"{{$.outputs.artifacts['data'].path}}\"]\n"
    "root:\n"
    "  inputDefinitions:\n"
    "    parameters: {object: {parameterType: STRING, defaultValue: /nonexistent/x.zip}}\n"
    "  dag:\n"
    "    tasks:\n"
    "      fetch:\n"
    "        componentRef: {name: comp-fetch}\n"
    "        taskInfo: {name: fetch}\n"
    "        inputs: {parameters: {object: {componentInputParameter: object}}}\n"
    "        retryPolicy: {maxRetryCount: 2, backoffDuration: 0s, backoffFactor: 2}\n";

/* run.json's attempts and state of the first task. */
static void run_summary(const char *dir, const char *run, int *attempts, char *state)
{
    char rel[256], *text = NULL;
    size_t len;
    kiln_err err = {0};
    snprintf(rel, sizeof rel, "runs/%s/run.json", run);
    char *path = kt_path(dir, rel);
    kt_expect_ok(kiln_read_file(path, 0, &text, &len, &err), &err, "run.json");
    cJSON *j = cJSON_Parse(text);
    const cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "tasks"), 0);
    *attempts = cJSON_GetObjectItem(t, "attempts")->valueint;
    snprintf(state, 32, "%s", cJSON_GetObjectItem(j, "state")->valuestring);
    cJSON_Delete(j);
    free(text);
    free(path);
}

static void test_run_local_retries(void **state)
{
    kt_trackserver *srv = *state;
    if (kt_trackserver_start(srv) != 0)
        fail_msg("kiln-tracking did not start");
    char *dir = kt_mkdtemp(), *ir = kt_path(dir, "retry.yaml"), *out = NULL, st[32];
    int attempts = 0;
    kt_write_file(ir, retry_ir, strlen(retry_ir));
    int rc = kt_run_capture(&out, "MLFLOW_TRACKING_URI=%s %s pipeline run-local %s --runs-dir "
                            "%s/runs --run-id missing", srv->uri, kt_kiln_bin(), ir, dir);
    printf("%s\n", out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "task fetch: attempt 1 failed (kiln-component download: "
                                "/nonexistent/x.zip: no such file); retrying in 0 s"));
    assert_non_null(strstr(out, "task fetch: attempt 2 failed"));
    assert_non_null(strstr(out, "task fetch: FAILED"));
    run_summary(dir, "missing", &attempts, st);
    assert_int_equal(attempts, 3);
    assert_string_equal(st, "FAILED");
    free(out);
    /* The same pipeline with a file that exists: one attempt, the artifact. */
    char *src = kt_path(dir, "in.zip"), *art = NULL;
    kt_write_file(src, "zip bytes", 9);
    rc = kt_run_capture(&out, "MLFLOW_TRACKING_URI=%s %s pipeline run-local %s --runs-dir %s/runs "
                        "--run-id present --param object=%s", srv->uri, kt_kiln_bin(), ir, dir,
                        src);
    assert_int_equal(rc, 0);
    run_summary(dir, "present", &attempts, st);
    assert_int_equal(attempts, 1);
    assert_string_equal(st, "SUCCEEDED");
    art = kt_path(dir, "runs/present/fetch/artifacts/data");
    assert_true(kt_files_equal(src, art));
    free(out);
    free(art);
    free(src);
    free(ir);
    kt_rmtree_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_arguments, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_promotion_gate, kt_trackserver_setup,
                                        kt_trackserver_teardown),
        cmocka_unit_test_setup_teardown(test_failing_evaluate_fails_the_run, kt_trackserver_setup,
                                        kt_trackserver_teardown),
        cmocka_unit_test_setup_teardown(test_run_local_retries, kt_trackserver_setup,
                                        kt_trackserver_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
