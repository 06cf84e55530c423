/* kiln-tracking with an MLflow client nobody here wrote: the npm `mlflow`
 * 2.0.7 package, driven by tests/mlflow_compat.js (experiments, runs,
 * params, metrics, tags, batches, searches, deletes and restores, metric
 * history, artifacts), which compares every value it reads back. This side
 * starts the server, runs the script, and reads the script's writes back
 * through the REST API on its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "support/testutil.h"
#include "support/trackapi.h"
#include "support/trackserver.h"

static char *package_dir(void)
{
    const char *src = getenv("KILN_SOURCE_DIR");
    return kt_path(src && *src ? src : ".", ".tools/node_modules/mlflow");
}

static char *script_path(void)
{
    const char *src = getenv("KILN_SOURCE_DIR");
    return kt_path(src && *src ? src : ".", "tests/mlflow_compat.js");
}

/* Skip unless the server, node and the package are all here. */
static void need_tools(void)
{
    char *pkg = package_dir(), *index = kt_path(pkg, "index.js");
    int have_pkg = access(index, R_OK) == 0;
    free(index);
    free(pkg);
    if (!getenv("KILN_TRACKING_BIN")) {
        printf("SKIPPED: KILN_TRACKING_BIN is not set (kiln-tracking not built)\n");
        skip();
    }
    if (kt_system("node --version >/dev/null 2>&1") != 0 || !have_pkg) {
        printf("SKIPPED: needs node and the npm mlflow package in .tools/node_modules\n");
        skip();
    }
}

static int run_script(const char *uri, char **output)
{
    char *script = script_path();
    int rc = kt_run_capture(output, "node '%s' '%s'", script, uri);
    free(script);
    return rc;
}

static void start_server(kt_trackserver *s)
{
    if (kt_trackserver_start(s) != 0)
        fail_msg("kiln-tracking did not start");
}

static void test_npm_mlflow_client(void **state)
{
    kt_trackserver *s = *state;
    need_tools();
    start_server(s);
    char *out = NULL;
    int rc = run_script(s->uri, &out);
    printf("%s", out);
    if (rc != 0 || !strstr(out, "mlflow-compat: OK")) {
        fprintf(stderr, "---- the server's log (its first error) ----\n");
        kt_system("grep -m1 -A12 -E 'ERROR|error' '%s/server.log' >&2", s->dir);
        free(out);
        fail_msg("the npm mlflow client's run failed (exit %d, output above)", rc);
    }
    int checks = 0;
    sscanf(strstr(out, "mlflow-compat: OK"), "mlflow-compat: OK (%d checks", &checks);
    assert_true(checks >= 80); /* the script ran through, not a stub */
    free(out);

    /* What the script wrote, read back by a client of our own. */
    cJSON *found = kt_track_ok(s->uri, "POST", "/api/2.0/mlflow/experiments/search",
                               "{\"max_results\":1000}");
    const char *exp_id = NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(found, "experiments")) {
        const char *name = cJSON_GetObjectItem(e, "name")->valuestring;
        if (strncmp(name, "kiln-compat-", 12) == 0) {
            assert_null(exp_id); /* exactly one */
            assert_non_null(strstr(name, "-renamed"));
            exp_id = cJSON_GetObjectItem(e, "experiment_id")->valuestring;
        }
    }
    assert_non_null(exp_id);
    cJSON *runs = kt_track_ok(s->uri, "POST", "/api/2.0/mlflow/runs/search",
                              "{\"experiment_ids\":[\"%s\"],\"filter\":\"params.lr = '0.01'\"}",
                              exp_id);
    cJSON *run = cJSON_GetArrayItem(cJSON_GetObjectItem(runs, "runs"), 0);
    assert_non_null(run);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(run, "info"), "status")
                            ->valuestring, "FINISHED");
    cJSON_Delete(runs);
    cJSON_Delete(found);
}

/* The script must fail loudly when the server is not there, rather than
 * pass without checking anything. */
static void test_script_fails_without_server(void **state)
{
    kt_trackserver *s = *state;
    need_tools();
    start_server(s);
    char uri[sizeof s->uri];
    memcpy(uri, s->uri, sizeof uri);
    kt_trackserver_stop(s, 0); /* now nothing listens on that port */
    s->pid = 0;
    char *out = NULL;
    int rc = run_script(uri, &out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "mlflow-compat: FAILED"));
    free(out);
    rc = run_script("http://example.com", &out); /* loopback only */
    assert_int_equal(rc, 2);
    free(out);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_npm_mlflow_client, kt_trackserver_setup,
                                        kt_trackserver_teardown),
        cmocka_unit_test_setup_teardown(test_script_fails_without_server, kt_trackserver_setup,
                                        kt_trackserver_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
