/* tests/test_mlflow_client_tracking.c — lib/mlflow against a real
 * kiln-tracking on loopback (kt_trackserver): every client call round-trips
 * through the server and its SQLite store; artifacts go through the
 * artifact proxy; the store survives a restart. Also measures log-batch
 * calls per second. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mlflow/mlflow.h"
#include "support/s3server.h"
#include "support/testutil.h"
#include "support/trackserver.h"

typedef struct fixture {
    char *dir;
    kt_trackserver server;
    int up;
    kiln_mlflow_client *c;
} fixture;

static kiln_mlflow_client *client_for(const char *uri)
{
    kiln_mlflow_config cfg;
    kiln_mlflow_config_default(&cfg);
    snprintf(cfg.tracking_uri, sizeof cfg.tracking_uri, "%s", uri);
    cfg.max_retries = 2;
    cfg.backoff_factor_s = 0.01;
    cfg.backoff_jitter_s = 0;
    cfg.timeout_s = 30;
    kiln_err err = {0};
    return kt_expect_ptr(kiln_mlflow_client_new(&cfg, NULL, &err), &err, "client");
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = kt_mkdtemp();
    *state = f;
    if (!getenv("KILN_TRACKING_BIN")) {
        printf("SKIPPED: KILN_TRACKING_BIN is not set (kiln-tracking not built)\n");
        return 0;
    }
    if (kt_trackserver_start(&f->server) != 0)
        fail_msg("cannot start kiln-tracking");
    f->up = 1;
    f->c = client_for(f->server.uri);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kiln_mlflow_client_free(f->c);
    kt_trackserver_stop(&f->server, 0);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

static void need_server(fixture *f)
{
    if (!f->up)
        skip();
}

static kiln_mlflow_run *new_run(fixture *f, const char *exp, const char *name)
{
    kiln_err err = {0};
    kiln_mlflow_kv tags[] = {{"team", "vision"}, {"mlflow.source.type", "JOB"}};
    kiln_mlflow_run_options o = {.experiment_id = exp, .run_name = name, .user = "tester",
                                 .source_name = "kiln train", .tags = tags, .n_tags = 2};
    kiln_mlflow_run *run = NULL;
    kt_expect_ok(kiln_mlflow_run_create(f->c, &o, &run, &err), &err, "run create");
    return run;
}

/* ---------------- experiments ---------------- */

static void test_experiments(void **state)
{
    fixture *f = *state;
    need_server(f);
    kiln_err err = {0};
    char *a = NULL, *b = NULL, *d = NULL;
    kiln_mlflow_experiment *e = NULL;
    kt_expect_fail(kiln_mlflow_experiment_get_by_name(f->c, "dry-wet", &e, &err), &err,
                   KILN_ENOTFOUND, "RESOURCE_DOES_NOT_EXIST (404)");
    kt_expect_ok(kiln_mlflow_experiment_get_or_create(f->c, "dry-wet", &a, &err), &err, "goc 1");
    kt_expect_ok(kiln_mlflow_experiment_get_or_create(f->c, "dry-wet", &b, &err), &err, "goc 2");
    assert_string_equal(a, b);
    /* create is idempotent: an existing name gives its id. */
    kt_expect_ok(kiln_mlflow_experiment_create(f->c, "dry-wet", NULL, &d, &err), &err, "create");
    assert_string_equal(a, d);
    kt_expect_ok(kiln_mlflow_experiment_set_tag(f->c, a, "owner", "kiln", &err), &err, "tag");
    kt_expect_ok(kiln_mlflow_experiment_get_by_name(f->c, "dry-wet", &e, &err), &err, "get");
    assert_string_equal(e->experiment_id, a);
    assert_string_equal(e->name, "dry-wet");
    assert_string_equal(e->lifecycle_stage, "active");
    int tagged = 0;
    for (size_t i = 0; i < e->n_tags; i++)
        tagged |= !strcmp(e->tags[i].key, "owner") && !strcmp(e->tags[i].value, "kiln");
    assert_true(tagged);
    kiln_mlflow_experiment_free(e);
    free(a);
    free(b);
    free(d);
}

/* ---------------- runs, metrics, params, tags ---------------- */

static void test_runs(void **state)
{
    fixture *f = *state;
    need_server(f);
    kiln_err err = {0};
    char *exp = NULL;
    kt_expect_ok(kiln_mlflow_experiment_get_or_create(f->c, "runs", &exp, &err), &err, "exp");
    kiln_mlflow_run *run = new_run(f, exp, "first");
    assert_string_equal(run->info.status, "RUNNING");
    assert_string_equal(run->info.experiment_id, exp);
    assert_string_equal(run->info.run_name, "first");
    assert_true(run->info.start_time_ms > 1600000000000LL);
    assert_true(strncmp(run->info.artifact_uri, "mlflow-artifacts:", 17) == 0);
    char *id = strdup(run->info.run_id);
    kiln_mlflow_run_free(run);
    /* Many metrics, params and tags in one go: several log-batch calls. */
    enum { STEPS = 1200, NP = 150, NT = 120 };
    kiln_mlflow_metric *m = calloc(2 * STEPS, sizeof *m);
    for (int i = 0; i < STEPS; i++) {
        m[2 * i] = (kiln_mlflow_metric){"loss", 1.0 / (i + 1), 1700000000000LL + i, i};
        m[2 * i + 1] = (kiln_mlflow_metric){"acc", i / (double)STEPS, 1700000000000LL + i, i};
    }
    kiln_mlflow_kv *p = calloc(NP, sizeof *p), *t = calloc(NT, sizeof *t);
    char (*names)[16] = calloc(2 * (NP + NT), sizeof *names);
    for (int i = 0; i < NP; i++) {
        snprintf(names[2 * i], 16, "p%03d", i);
        snprintf(names[2 * i + 1], 16, "%d", i * 3);
        p[i] = (kiln_mlflow_kv){names[2 * i], names[2 * i + 1]};
    }
    for (int i = 0; i < NT; i++) {
        snprintf(names[2 * (NP + i)], 16, "t%03d", i);
        t[i] = (kiln_mlflow_kv){names[2 * (NP + i)], "x"};
    }
    size_t calls = 0;
    kt_expect_ok(kiln_mlflow_log_batch(f->c, id, m, 2 * STEPS, p, NP, t, NT, &calls, &err), &err,
                 "log batch");
    assert_int_equal(calls, 3); /* 2670 entities, 150 params: 3 calls of <= 1000 */
    kt_expect_ok(kiln_mlflow_log_metric(f->c, id, "odd", NAN, 0, 3, &err), &err, "log NaN");
    kt_expect_ok(kiln_mlflow_log_metric(f->c, id, "odd", INFINITY, 0, 4, &err), &err, "log Inf");
    kt_expect_ok(kiln_mlflow_log_param(f->c, id, "lr", "0.001", &err), &err, "param");
    kt_expect_ok(kiln_mlflow_run_set_tag(f->c, id, "stage", "train", &err), &err, "tag");
    kt_expect_ok(kiln_mlflow_run_get(f->c, id, &run, &err), &err, "get");
    assert_int_equal(run->n_params, NP + 1);
    assert_string_equal(kiln_mlflow_run_param(run, "p149"), "447");
    assert_string_equal(kiln_mlflow_run_param(run, "lr"), "0.001");
    assert_string_equal(kiln_mlflow_run_tag(run, "stage"), "train");
    assert_string_equal(kiln_mlflow_run_tag(run, "t119"), "x");
    assert_string_equal(kiln_mlflow_run_tag(run, "team"), "vision");
    /* System tags, with the caller's override of the source type. */
    assert_string_equal(kiln_mlflow_run_tag(run, "mlflow.runName"), "first");
    assert_string_equal(kiln_mlflow_run_tag(run, "mlflow.user"), "tester");
    assert_string_equal(kiln_mlflow_run_tag(run, "mlflow.source.name"), "kiln train");
    assert_string_equal(kiln_mlflow_run_tag(run, "mlflow.source.type"), "JOB");
    int latest = 0;
    for (size_t i = 0; i < run->n_metrics; i++)
        if (!strcmp(run->metrics[i].key, "loss")) {
            assert_int_equal(run->metrics[i].step, STEPS - 1);
            assert_true(fabs(run->metrics[i].value - 1.0 / STEPS) < 1e-12);
            latest = 1;
        }
    assert_true(latest);
    kiln_mlflow_run_free(run);
    /* The whole history, in step order. */
    kiln_mlflow_metric_value *h = NULL;
    size_t n = 0;
    kt_expect_ok(kiln_mlflow_metric_history(f->c, id, "loss", &h, &n, &err), &err, "history");
    assert_int_equal(n, STEPS);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(h[i].step, (int64_t)i);
        assert_int_equal(h[i].timestamp_ms, 1700000000000LL + (int64_t)i);
        assert_true(fabs(h[i].value - 1.0 / (i + 1)) < 1e-12);
    }
    kiln_mlflow_metric_values_free(h, n);
    kt_expect_ok(kiln_mlflow_metric_history(f->c, id, "odd", &h, &n, &err), &err, "history odd");
    assert_int_equal(n, 2);
    assert_true(isnan(h[0].value));
    assert_true(isinf(h[1].value) && h[1].value > 0);
    kiln_mlflow_metric_values_free(h, n);
    /* End it. */
    kt_expect_ok(kiln_mlflow_run_finish(f->c, id, KILN_MLFLOW_FINISHED, &err), &err, "finish");
    kt_expect_ok(kiln_mlflow_run_get(f->c, id, &run, &err), &err, "get");
    assert_string_equal(run->info.status, "FINISHED");
    assert_true(run->info.end_time_ms >= run->info.start_time_ms);
    kiln_mlflow_run_free(run);
    /* A crashed step's run ends FAILED. */
    run = new_run(f, exp, NULL);
    kt_expect_ok(kiln_mlflow_run_finish(f->c, run->info.run_id, KILN_MLFLOW_FAILED, &err), &err,
                 "fail");
    kiln_mlflow_run *again = NULL;
    kt_expect_ok(kiln_mlflow_run_get(f->c, run->info.run_id, &again, &err), &err, "get");
    assert_string_equal(again->info.status, "FAILED");
    assert_true(again->info.run_name[0] != '\0'); /* the server named it */
    kt_expect_fail(kiln_mlflow_run_finish(f->c, run->info.run_id, KILN_MLFLOW_RUNNING, &err), &err,
                   KILN_EINVAL, "FINISHED, FAILED or KILLED");
    kiln_mlflow_run_free(again);
    kiln_mlflow_run_free(run);
    /* Errors come back as MLflow's, with the call named. */
    kt_expect_fail(kiln_mlflow_run_get(f->c, "0123456789abcdef0123456789abcdef", &run, &err), &err,
                   KILN_ENOTFOUND, "MLflow GET /api/2.0/mlflow/runs/get: RESOURCE_DOES_NOT_EXIST");
    kiln_mlflow_run_options none = {.experiment_id = "999999"};
    kt_expect_fail(kiln_mlflow_run_create(f->c, &none, &run, &err), &err, KILN_ENOTFOUND,
                   "MLflow POST /api/2.0/mlflow/runs/create: RESOURCE_DOES_NOT_EXIST (404)");
    free(m);
    free(p);
    free(t);
    free(names);
    free(id);
    free(exp);
}

/* ---------------- artifacts through the proxy ---------------- */

static char *make_tree(const char *base)
{
    char *root = kt_path(base, "tree");
    assert_int_equal(kt_system("mkdir -p '%s/emptydir'", root), 0);
    kt_write_text(root, "MLmodel", "flavors: {}\n");
    kt_write_text(root, "empty.bin", "");
    kt_write_text(root, "sub/we ird+&%.txt", "odd name");
    kt_write_text(root, "sub/deeper/x.json", "{\"a\": 1}");
    char *p = kt_path(root, "sub/weights.bin");
    kt_random_file(p, 3u << 20, 5);
    free(p);
    return root;
}

static void test_artifacts_proxy(void **state)
{
    fixture *f = *state;
    need_server(f);
    kiln_err err = {0};
    char *exp = NULL;
    kt_expect_ok(kiln_mlflow_experiment_get_or_create(f->c, "art", &exp, &err), &err, "exp");
    kiln_mlflow_run *run = new_run(f, exp, "art");
    const char *uri = run->info.artifact_uri;
    char *tree = make_tree(f->dir);
    size_t files = 0;
    kt_expect_ok(kiln_mlflow_artifact_upload_dir(f->c, uri, tree, "model", &files, &err), &err,
                 "upload dir");
    assert_int_equal(files, 5);
    char *single = kt_path(f->dir, "metrics.json");
    kt_write_file(single, "{}", 2);
    kt_expect_ok(kiln_mlflow_artifact_upload_file(f->c, uri, single, "eval/metrics.json", &err),
                 &err, "upload file");
    kiln_mlflow_file_info *l = NULL;
    size_t n = 0;
    kt_expect_ok(kiln_mlflow_artifact_list(f->c, uri, "", &l, &n, &err), &err, "list root");
    assert_int_equal(n, 2);
    kiln_mlflow_file_infos_free(l, n);
    kt_expect_ok(kiln_mlflow_artifact_list(f->c, uri, "model/sub", &l, &n, &err), &err, "list");
    assert_int_equal(n, 3);
    int ok = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(l[i].path, "model/sub/weights.bin") && !l[i].is_dir &&
            l[i].file_size == 3 << 20)
            ok = 1;
    assert_true(ok);
    kiln_mlflow_file_infos_free(l, n);
    /* Back byte for byte (the empty folder has no files, so it does not travel). */
    char *back = kt_path(f->dir, "back");
    kt_expect_ok(kiln_mlflow_artifact_download_dir(f->c, uri, "model", back, &files, &err), &err,
                 "download dir");
    assert_int_equal(files, 5);
    assert_int_equal(kt_system("rmdir '%s/emptydir' && diff -r '%s' '%s'", tree, tree, back), 0);
    char *one = kt_path(f->dir, "one.bin");
    kt_expect_ok(kiln_mlflow_artifact_download_file(f->c, uri, "model/sub/weights.bin", one, &err),
                 &err, "download file");
    char *orig = kt_path(tree, "sub/weights.bin");
    assert_true(kt_files_equal(orig, one));
    kt_expect_fail(kiln_mlflow_artifact_download_file(f->c, uri, "model/none.bin", one, &err), &err,
                   KILN_ENOTFOUND, "404");
    assert_true(kt_files_equal(orig, one));
    free(orig);
    free(one);
    free(back);
    free(single);
    free(tree);
    kiln_mlflow_run_free(run);
    free(exp);
}

/* ---------------- the registry ---------------- */

static void test_registry(void **state)
{
    fixture *f = *state;
    need_server(f);
    kiln_err err = {0};
    char *exp = NULL;
    kt_expect_ok(kiln_mlflow_experiment_get_or_create(f->c, "reg", &exp, &err), &err, "exp");
    kiln_mlflow_run *run = new_run(f, exp, "reg");
    char source[256];
    snprintf(source, sizeof source, "runs:/%s/model", run->info.run_id);
    kt_expect_ok(kiln_mlflow_registered_model_create(f->c, "dry-wet", "the classifier", &err), &err,
                 "create model");
    kt_expect_ok(kiln_mlflow_registered_model_create(f->c, "dry-wet", NULL, &err), &err,
                 "create again");
    kiln_mlflow_model_version *v1 = NULL, *v2 = NULL, *mv = NULL;
    kt_expect_ok(
        kiln_mlflow_model_version_create(f->c, "dry-wet", source, run->info.run_id, &v1, &err),
        &err, "version 1");
    assert_string_equal(v1->version, "1");
    assert_string_equal(v1->source, source);
    assert_string_equal(v1->run_id, run->info.run_id);
    kt_expect_ok(kiln_mlflow_model_version_wait_ready(f->c, "dry-wet", "1", 10000, 50, &mv, &err),
                 &err, "ready");
    assert_string_equal(mv->status, "READY");
    kiln_mlflow_model_version_free(mv);
    kt_expect_ok(
        kiln_mlflow_model_version_transition(f->c, "dry-wet", "1", "Production", 1, &mv, &err),
        &err, "v1 to Production");
    assert_string_equal(mv->current_stage, "Production");
    kiln_mlflow_model_version_free(mv);
    kt_expect_ok(
        kiln_mlflow_model_version_create(f->c, "dry-wet", source, run->info.run_id, &v2, &err),
        &err, "version 2");
    assert_string_equal(v2->version, "2");
    kt_expect_ok(kiln_mlflow_model_version_wait_ready(f->c, "dry-wet", "2", 10000, 50, NULL, &err),
                 &err, "ready 2");
    /* Without an `out`: the call alone. */
    kt_expect_ok(
        kiln_mlflow_model_version_transition(f->c, "dry-wet", "2", "Production", 1, NULL, &err),
        &err, "v2 to Production");
    kt_expect_ok(kiln_mlflow_model_version_get(f->c, "dry-wet", "1", &mv, &err), &err, "get v1");
    assert_string_equal(mv->current_stage, "Archived"); /* archive_existing_versions */
    kiln_mlflow_model_version_free(mv);
    kiln_mlflow_model_version **vs = NULL;
    size_t n = 0;
    const char *stages[] = {"Production"};
    kt_expect_ok(kiln_mlflow_latest_versions(f->c, "dry-wet", stages, 1, &vs, &n, &err), &err,
                 "latest");
    assert_int_equal(n, 1);
    assert_string_equal(vs[0]->version, "2");
    kiln_mlflow_model_versions_free(vs, n);
    /* Aliases: set, move, read, delete. */
    kt_expect_ok(kiln_mlflow_alias_set(f->c, "dry-wet", "champion", "2", &err), &err, "alias");
    kt_expect_ok(kiln_mlflow_alias_get(f->c, "dry-wet", "champion", &mv, &err), &err, "alias get");
    assert_string_equal(mv->version, "2");
    kiln_mlflow_model_version_free(mv);
    kt_expect_ok(kiln_mlflow_alias_set(f->c, "dry-wet", "champion", "1", &err), &err, "move");
    kt_expect_ok(kiln_mlflow_alias_get(f->c, "dry-wet", "champion", &mv, &err), &err, "alias get");
    assert_string_equal(mv->version, "1");
    int listed = 0;
    for (size_t i = 0; i < mv->n_aliases; i++)
        listed |= !strcmp(mv->aliases[i], "champion");
    assert_true(listed);
    kiln_mlflow_model_version_free(mv);
    kt_expect_ok(kiln_mlflow_alias_delete(f->c, "dry-wet", "champion", &err), &err, "delete");
    kt_expect_fail(kiln_mlflow_alias_get(f->c, "dry-wet", "champion", &mv, &err), &err,
                   KILN_ENOTFOUND, "champion");
    kt_expect_ok(kiln_mlflow_model_versions_search(f->c, "name='dry-wet'", &vs, &n, &err), &err,
                 "search");
    assert_int_equal(n, 2);
    kiln_mlflow_model_versions_free(vs, n);
    kt_expect_fail(kiln_mlflow_model_version_get(f->c, "dry-wet", "7", &mv, &err), &err,
                   KILN_ENOTFOUND, "RESOURCE_DOES_NOT_EXIST");
    kiln_mlflow_model_version_free(v1);
    kiln_mlflow_model_version_free(v2);
    kiln_mlflow_run_free(run);
    free(exp);
}

/* ---------------- restart, and a figure ---------------- */

static void test_restart_keeps_runs(void **state)
{
    fixture *f = *state;
    need_server(f);
    kiln_err err = {0};
    char *exp = NULL;
    kt_expect_ok(kiln_mlflow_experiment_get_or_create(f->c, "durable", &exp, &err), &err, "exp");
    kiln_mlflow_run *run = new_run(f, exp, "before");
    kt_expect_ok(kiln_mlflow_log_metric(f->c, run->info.run_id, "loss", 0.25, 0, 1, &err), &err,
                 "metric");
    kt_trackserver_stop(&f->server, 1);
    /* Down: the client says so, after its retries. */
    kiln_mlflow_run *got = NULL;
    kt_expect_fail(kiln_mlflow_run_get(f->c, run->info.run_id, &got, &err), &err, KILN_EIO,
                   "cannot reach");
    if (kt_trackserver_start_in(&f->server, f->server.dir) != 0)
        fail_msg("restart failed");
    kiln_mlflow_client_free(f->c);
    f->c = client_for(f->server.uri); /* the port changed */
    kt_expect_ok(kiln_mlflow_run_get(f->c, run->info.run_id, &got, &err), &err, "get after");
    assert_string_equal(got->info.run_name, "before");
    assert_int_equal(got->n_metrics, 1);
    assert_true(got->metrics[0].value == 0.25);
    kiln_mlflow_run_free(got);
    kiln_mlflow_run_free(run);
    free(exp);
}

static void test_log_batch_rate(void **state)
{
    fixture *f = *state;
    need_server(f);
    kiln_err err = {0};
    char *exp = NULL;
    kt_expect_ok(kiln_mlflow_experiment_get_or_create(f->c, "rate", &exp, &err), &err, "exp");
    kiln_mlflow_run *run = new_run(f, exp, "rate");
    enum { CALLS = 200, PER = 10 };
    kiln_mlflow_metric m[PER];
    double t0 = kt_now_s();
    for (int i = 0; i < CALLS; i++) {
        for (int k = 0; k < PER; k++)
            m[k] = (kiln_mlflow_metric){k % 2 ? "loss" : "acc", i * 0.01 + k, 0, i * PER + k};
        kt_expect_ok(
            kiln_mlflow_log_batch(f->c, run->info.run_id, m, PER, NULL, 0, NULL, 0, NULL, &err),
            &err, "batch");
    }
    double took = kt_now_s() - t0;
    printf("log-batch of %d metrics over loopback: %.0f calls/s (%d calls in %.2f s; ASan "
           "build)\n", PER, CALLS / took, CALLS, took);
    kiln_mlflow_metric_value *h = NULL;
    size_t n = 0;
    kt_expect_ok(kiln_mlflow_metric_history(f->c, run->info.run_id, "loss", &h, &n, &err), &err,
                 "history");
    assert_int_equal(n, CALLS * PER / 2);
    kiln_mlflow_metric_values_free(h, n);
    kiln_mlflow_run_free(run);
    free(exp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_experiments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_artifacts_proxy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_batch_rate, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
