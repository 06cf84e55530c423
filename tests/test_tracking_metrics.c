/* tests/test_tracking_metrics.c — log-metric, log-parameter, log-batch and
 * metrics/get-history: NaN/Infinity, the latest value per key, params that
 * cannot change, batch limits, and a rejected batch writing nothing. */
#include "test_tracking_support.h"

static cJSON *get_run(kiln_tracking *t, const char *run)
{
    return tt_ok(t, "GET", TT_API "runs/get", "{\"run_id\": \"%s\"}", run);
}

static int history_len(kiln_tracking *t, const char *run, const char *key)
{
    cJSON *r = tt_ok(t, "GET", TT_API "metrics/get-history",
                     "{\"run_id\": \"%s\", \"metric_key\": \"%s\"}", run, key);
    int n = tt_len(r, "metrics");
    cJSON_Delete(r);
    return n;
}

static void test_log_metric_values(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    tt_do(f->t, "POST", TT_API "runs/log-metric",
          "{\"run_id\": \"%s\", \"key\": \"acc\", \"value\": 0.5, \"timestamp\": 10}", run);
    tt_do(f->t, "POST", TT_API "runs/log-metric",
          "{\"run_id\": \"%s\", \"key\": \"acc\", \"value\": \"0.75\", "
          "\"timestamp\": \"20\", \"step\": \"1\"}",
          run);
    /* An older step does not replace the latest value. */
    tt_do(f->t, "POST", TT_API "runs/log-metric",
          "{\"run_id\": \"%s\", \"key\": \"acc\", \"value\": 0.1, \"timestamp\": 99,"
          " \"step\": 0}",
          run);
    tt_do(f->t, "POST", TT_API "runs/log-metric",
          "{\"run_id\": \"%s\", \"key\": \"loss\", \"value\": \"NaN\", \"timestamp\": 1}", run);
    tt_do(f->t, "POST", TT_API "runs/log-metric",
          "{\"run_id\": \"%s\", \"key\": \"up\", \"value\": \"Infinity\", \"timestamp\": 1}", run);
    tt_do(f->t, "POST", TT_API "runs/log-metric",
          "{\"run_id\": \"%s\", \"key\": \"down\", \"value\": \"-Infinity\","
          " \"timestamp\": 1}",
          run);
    cJSON *r = get_run(f->t, run);
    const cJSON *metrics = tt_get(r, "run.data.metrics");
    assert_int_equal(cJSON_GetArraySize(metrics), 4);
    /* Sorted by key: acc, down, loss, up. */
    const cJSON *acc = cJSON_GetArrayItem(metrics, 0);
    static const char *const metric_keys[] = {"key", "value", "timestamp", "step", NULL};
    tt_keys(acc, metric_keys);
    assert_string_equal(tt_str(acc, "key"), "acc");
    assert_true(tt_num(acc, "value") == 0.75);
    assert_true(tt_num(acc, "timestamp") == 20);
    assert_true(tt_num(acc, "step") == 1);
    assert_string_equal(tt_str(metrics, "1.value"), "-Infinity");
    assert_string_equal(tt_str(metrics, "2.value"), "NaN");
    assert_string_equal(tt_str(metrics, "3.value"), "Infinity");
    cJSON_Delete(r);
    /* History keeps every value in (timestamp, step) order. */
    r = tt_ok(f->t, "GET", TT_API "metrics/get-history",
              "{\"run_id\": \"%s\", \"metric_key\": \"acc\"}", run);
    assert_int_equal(tt_len(r, "metrics"), 3);
    assert_true(tt_num(r, "metrics.0.value") == 0.5);
    assert_true(tt_num(r, "metrics.1.value") == 0.75);
    assert_true(tt_num(r, "metrics.2.value") == 0.1);
    assert_string_equal(tt_str(r, "metrics.2.key"), "acc");
    assert_null(tt_get(r, "next_page_token"));
    cJSON_Delete(r);
    tt_ok_str(f->t, "GET", TT_API "metrics/get-history", "metrics.0.value", "NaN",
              "{\"run_id\": \"%s\", \"metric_key\": \"loss\"}", run);
    /* Logging the very same point twice keeps one. */
    tt_do(f->t, "POST", TT_API "runs/log-metric",
          "{\"run_id\": \"%s\", \"key\": \"acc\", \"value\": 0.5, \"timestamp\": 10}", run);
    assert_int_equal(history_len(f->t, run, "acc"), 3);
    free(run);
}

static void test_log_metric_errors(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    tt_err(f->t, "POST", TT_API "runs/log-metric", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'timestamp'. See the API docs",
           "{\"run_id\": \"%s\", \"key\": \"m\", \"value\": 1}", run);
    tt_err(f->t, "POST", TT_API "runs/log-metric", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'value'",
           "{\"run_id\": \"%s\", \"key\": \"m\", \"timestamp\": 1}", run);
    tt_err(f->t, "POST", TT_API "runs/log-metric", 400, "INVALID_PARAMETER_VALUE",
           "Invalid value \"high\" for parameter 'value' supplied",
           "{\"run_id\": \"%s\", \"key\": \"m\", \"value\": \"high\", \"timestamp\": 1}", run);
    tt_err(f->t, "POST", TT_API "runs/log-metric", 400, "INVALID_PARAMETER_VALUE",
           "Invalid value 1.5 for parameter 'timestamp' supplied:  Hint: Value was of type "
           "'float'.",
           "{\"run_id\": \"%s\", \"key\": \"m\", \"value\": 1, \"timestamp\": 1.5}", run);
    tt_err(f->t, "POST", TT_API "runs/log-metric", 400, "INVALID_PARAMETER_VALUE",
           "Got invalid timestamp -5 for metric 'm'",
           "{\"run_id\": \"%s\", \"key\": \"m\", \"value\": 1, \"timestamp\": -5}", run);
    tt_err(f->t, "POST", TT_API "runs/log-metric", 400, "INVALID_PARAMETER_VALUE",
           "Invalid metric name: '/abs'",
           "{\"run_id\": \"%s\", \"key\": \"/abs\", \"value\": 1, \"timestamp\": 1}", run);
    tt_err(f->t, "POST", TT_API "runs/log-metric", 404, "RESOURCE_DOES_NOT_EXIST",
           "Run with id=zz not found",
           "{\"run_id\": \"zz\", \"key\": \"m\", \"value\": 1, \"timestamp\": 1}");
    tt_err(f->t, "POST", TT_API "runs/log-metric", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'run_id'",
           "{\"key\": \"m\", \"value\": 1, \"timestamp\": 1}");
    assert_int_equal(history_len(f->t, run, "m"), 0);
    free(run);
}

static void test_log_param(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    tt_do(f->t, "POST", TT_API "runs/log-parameter",
          "{\"run_id\": \"%s\", \"key\": \"lr\", \"value\": \"0.1\"}", run);
    /* The same value again is fine; another value is not. */
    tt_do(f->t, "POST", TT_API "runs/log-parameter",
          "{\"run_id\": \"%s\", \"key\": \"lr\", \"value\": \"0.1\"}", run);
    char msg[300];
    snprintf(msg, sizeof msg,
             "Changing param values is not allowed. Param with key='lr' was already logged with "
             "value='0.1' for run ID='%s'. Attempted logging new value '0.2'.",
             run);
    tt_err(f->t, "POST", TT_API "runs/log-parameter", 400, "INVALID_PARAMETER_VALUE", msg,
           "{\"run_id\": \"%s\", \"key\": \"lr\", \"value\": \"0.2\"}", run);
    char *big = malloc(6002);
    memset(big, 'p', 6001);
    big[6001] = '\0';
    tt_err(f->t, "POST", TT_API "runs/log-parameter", 400, "INVALID_PARAMETER_VALUE",
           "Param value", "{\"run_id\": \"%s\", \"key\": \"big\", \"value\": \"%s\"}", run, big);
    big[6000] = '\0';
    tt_do(f->t, "POST", TT_API "runs/log-parameter",
          "{\"run_id\": \"%s\", \"key\": \"big\", \"value\": \"%s\"}", run, big);
    free(big);
    cJSON *r = get_run(f->t, run);
    assert_int_equal(tt_len(r, "run.data.params"), 2);
    assert_string_equal(tt_kv(r, "run.data.params", "lr")->valuestring, "0.1");
    cJSON_Delete(r);
    tt_err(f->t, "POST", TT_API "runs/log-parameter", 400, "INVALID_PARAMETER_VALUE",
           "Invalid value 3 for parameter 'value'",
           "{\"run_id\": \"%s\", \"key\": \"n\", \"value\": 3}", run);
    free(run);
}

/* n metrics, n_p params, n_t tags as a log-batch body. */
static char *batch_body(const char *run, int n, int n_p, int n_t)
{
    size_t cap = 256 + (size_t)(n + n_p + n_t) * 96;
    char *s = malloc(cap);
    size_t used = (size_t)snprintf(s, cap, "{\"run_id\": \"%s\", \"metrics\": [", run);
    for (int i = 0; i < n; i++)
        used += (size_t)snprintf(s + used, cap - used,
                                 "%s{\"key\": \"m%d\", \"value\": %d, \"timestamp\": 1, \"step\": %d}",
                                 i ? "," : "", i % 7, i, i);
    used += (size_t)snprintf(s + used, cap - used, "], \"params\": [");
    for (int i = 0; i < n_p; i++)
        used += (size_t)snprintf(s + used, cap - used, "%s{\"key\": \"p%d\", \"value\": \"v\"}",
                                 i ? "," : "", i);
    used += (size_t)snprintf(s + used, cap - used, "], \"tags\": [");
    for (int i = 0; i < n_t; i++)
        used += (size_t)snprintf(s + used, cap - used, "%s{\"key\": \"t%d\", \"value\": \"v\"}",
                                 i ? "," : "", i);
    snprintf(s + used, cap - used, "]}");
    return s;
}

static void batch_err(kiln_tracking *t, const char *run, int n, int n_p, int n_t, const char *msg)
{
    char *body = batch_body(run, n, n_p, n_t);
    tt_err(t, "POST", TT_API "runs/log-batch", 400, "INVALID_PARAMETER_VALUE", msg, "%s", body);
    free(body);
}

static void test_log_batch(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    char *body = batch_body(run, 1000, 0, 0);
    cJSON *r = tt_ok(f->t, "POST", TT_API "runs/log-batch", "%s", body);
    assert_int_equal(cJSON_GetArraySize(r), 0);
    cJSON_Delete(r);
    free(body);
    body = batch_body(run, 5, 3, 2);
    tt_do(f->t, "POST", TT_API "runs/log-batch", "%s", body);
    free(body);
    r = get_run(f->t, run);
    assert_int_equal(tt_len(r, "run.data.metrics"), 7);
    assert_int_equal(tt_len(r, "run.data.params"), 3);
    assert_int_equal(tt_len(r, "run.data.tags"), 3);
    cJSON_Delete(r);
    int m0 = history_len(f->t, run, "m0");
    /* Steps 0, 7, ..., 994; the second batch's m0 point repeats the first exactly. */
    assert_int_equal(m0, 143);

    /* The limits, each alone and in total. */
    batch_err(f->t, run, 1001, 0, 0,
              "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. "
              "Please split up metrics across multiple requests and try again.");
    batch_err(f->t, run, 0, 101, 0, "at most 100 params. Got 101 params.");
    batch_err(f->t, run, 0, 0, 101, "at most 100 tags. Got 101 tags.");
    batch_err(f->t, run, 900, 100, 1,
              "at most 1000 metrics, params, and tags. Got 1001 metrics, params, and tags.");
    assert_int_equal(history_len(f->t, run, "m0"), m0);
    free(run);
}

static void test_rejected_batch_writes_nothing(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    tt_do(f->t, "POST", TT_API "runs/log-parameter",
          "{\"run_id\": \"%s\", \"key\": \"fixed\", \"value\": \"1\"}", run);
    cJSON *before = get_run(f->t, run);
    tt_err(f->t, "POST", TT_API "runs/log-batch", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'metrics[2].timestamp'",
           "{\"run_id\": \"%s\", \"params\": [{\"key\": \"a\", \"value\": \"1\"}],"
           " \"tags\": [{\"key\": \"t\", \"value\": \"v\"}], \"metrics\": ["
           "{\"key\": \"x\", \"value\": 1, \"timestamp\": 1},"
           "{\"key\": \"x\", \"value\": 2, \"timestamp\": 2},"
           "{\"key\": \"x\", \"value\": 3}]}",
           run);
    tt_err(f->t, "POST", TT_API "runs/log-batch", 400, "INVALID_PARAMETER_VALUE",
           "Invalid value \"abc\" for parameter 'metrics[1].value'",
           "{\"run_id\": \"%s\", \"metrics\": [{\"key\": \"x\", \"value\": 1, \"timestamp\": 1},"
           "{\"key\": \"x\", \"value\": \"abc\", \"timestamp\": 2}]}",
           run);
    /* A param that would change fails after other entities were checked. */
    tt_err(f->t, "POST", TT_API "runs/log-batch", 400, "INVALID_PARAMETER_VALUE",
           "Changing param values is not allowed",
           "{\"run_id\": \"%s\", \"metrics\": [{\"key\": \"x\", \"value\": 1, \"timestamp\": 1}],"
           " \"params\": [{\"key\": \"new\", \"value\": \"1\"}, {\"key\": \"fixed\", \"value\": \"2\"}],"
           " \"tags\": [{\"key\": \"t\", \"value\": \"v\"}]}",
           run);
    tt_err(f->t, "POST", TT_API "runs/log-batch", 400, "INVALID_PARAMETER_VALUE",
           "Duplicate parameter keys have been submitted: ['d']",
           "{\"run_id\": \"%s\", \"params\": [{\"key\": \"d\", \"value\": \"1\"},"
           " {\"key\": \"d\", \"value\": \"2\"}]}",
           run);
    tt_err(f->t, "POST", TT_API "runs/log-batch", 400, "INVALID_PARAMETER_VALUE",
           "Invalid value \"x\" for parameter 'metrics' supplied",
           "{\"run_id\": \"%s\", \"metrics\": \"x\"}", run);
    cJSON *after = get_run(f->t, run);
    assert_true(cJSON_Compare(before, after, 1));
    assert_int_equal(history_len(f->t, run, "x"), 0);
    cJSON_Delete(before);
    cJSON_Delete(after);
    free(run);
}

static void test_history_pages(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    char *body = batch_body(run, 70, 0, 0); /* m0 gets steps 0, 7, ..., 63: 10 points */
    tt_do(f->t, "POST", TT_API "runs/log-batch", "%s", body);
    free(body);
    int seen = 0;
    char token[128] = "";
    for (int page = 0; page < 10; page++) {
        cJSON *r = tt_ok(f->t, "GET", TT_API "metrics/get-history",
                         "{\"run_id\": \"%s\", \"metric_key\": \"m0\", \"max_results\": \"4\""
                         "%s%s%s}",
                         run, *token ? ", \"page_token\": \"" : "", token, *token ? "\"" : "");
        for (int i = 0; i < tt_len(r, "metrics"); i++) {
            char path[32];
            snprintf(path, sizeof path, "metrics.%d.step", i);
            assert_true(tt_num(r, path) == 7.0 * seen);
            seen++;
        }
        const cJSON *next = tt_get(r, "next_page_token");
        snprintf(token, sizeof token, "%s", next ? next->valuestring : "");
        cJSON_Delete(r);
        if (!*token)
            break;
    }
    assert_int_equal(seen, 10);
    tt_err(f->t, "GET", TT_API "metrics/get-history", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'metric_key'", "{\"run_id\": \"%s\"}", run);
    tt_err(f->t, "GET", TT_API "metrics/get-history", 404, "RESOURCE_DOES_NOT_EXIST", NULL,
           "{\"run_id\": \"none\", \"metric_key\": \"m\"}");
    free(run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_log_metric_values, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_log_metric_errors, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_log_param, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_log_batch, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_rejected_batch_writes_nothing, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_history_pages, tt_setup, tt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
