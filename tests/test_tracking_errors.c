/* tests/test_tracking_errors.c — routing and request decoding in
 * kiln_tracking_api: unknown endpoints and methods, bodies that are not
 * objects, GET fields as strings and arrays, typed-field errors with
 * MLflow's messages, and the error-code → HTTP status table. */
#include "test_tracking_support.h"

static void test_unknown_endpoints_and_methods(void **state)
{
    tt_fixture *f = *state;
    tt_err(f->t, "GET", TT_API "runs/teleport", 404, "ENDPOINT_NOT_FOUND", "no such API endpoint",
           NULL);
    tt_err(f->t, "GET", "/api/2.0/other/runs/get", 404, "ENDPOINT_NOT_FOUND", NULL, NULL);
    tt_err(f->t, "GET", "/api/2.0/mlflow/", 404, "ENDPOINT_NOT_FOUND", NULL, NULL);
    tt_err(f->t, "POST", TT_API "runs/get", 405, "ENDPOINT_NOT_FOUND", "method not allowed",
           "{\"run_id\": \"x\"}");
    tt_err(f->t, "GET", TT_API "runs/create", 405, "ENDPOINT_NOT_FOUND", NULL, NULL);
    tt_err(f->t, "PUT", TT_API "experiments/search", 405, "ENDPOINT_NOT_FOUND", NULL, NULL);
    tt_err(f->t, "POST", "/api/2.0/mlflow-artifacts/artifacts", 405, "ENDPOINT_NOT_FOUND", NULL,
           NULL);
    int status = 0;
    cJSON *r = kiln_tracking_api(f->t, NULL, NULL, NULL, &status);
    assert_int_equal(status, 404);
    cJSON_Delete(r);
    /* HEAD is GET; a query string on the path is ignored; status may be NULL. */
    r = tt_ok(f->t, "HEAD", TT_API "experiments/get", "{\"experiment_id\": \"0\"}");
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "experiments/get?experiment_id=0", "{\"experiment_id\": \"0\"}");
    cJSON_Delete(r);
    cJSON *req = cJSON_Parse("{\"experiment_id\": \"0\"}");
    r = kiln_tracking_api(f->t, "GET", TT_API "experiments/get", req, NULL);
    assert_non_null(r);
    assert_string_equal(tt_str(r, "experiment.name"), "Default");
    cJSON_Delete(r);
    cJSON_Delete(req);
}

static void test_request_bodies(void **state)
{
    tt_fixture *f = *state;
    int status;
    /* No body is an empty object. */
    cJSON *r = kiln_tracking_api(f->t, "POST", TT_API "experiments/create", NULL, &status);
    assert_int_equal(status, 400);
    assert_string_equal(tt_str(r, "message"),
                        "Missing value for required parameter 'name'. See the API docs for more "
                        "information about request parameters.");
    cJSON_Delete(r);
    /* A double-encoded body (older clients) is decoded. */
    cJSON *req = cJSON_CreateString("{\"name\": \"encoded-twice\"}");
    r = kiln_tracking_api(f->t, "POST", TT_API "experiments/create", req, &status);
    assert_int_equal(status, 200);
    cJSON_Delete(r);
    cJSON_Delete(req);
    tt_err(f->t, "POST", TT_API "experiments/create", 400, "MALFORMED_REQUEST", "JSON object",
           "[1, 2]");
    tt_err(f->t, "POST", TT_API "experiments/create", 400, "MALFORMED_REQUEST", NULL, "\"[1]\"");
    /* null is an absent field. */
    tt_err(f->t, "POST", TT_API "experiments/create", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'name'", "{\"name\": null}");
    /* Unknown fields are ignored, as protobuf's parser does. */
    r = tt_ok(f->t, "POST", TT_API "experiments/create", "{\"name\": \"x\", \"colour\": 1}");
    cJSON_Delete(r);
}

static void test_field_types(void **state)
{
    tt_fixture *f = *state;
    static const struct {
        const char *body;
        const char *msg;
    } cases[] = {
        {"{\"name\": [\"a\"]}",
         "Invalid value [\"a\"] for parameter 'name' supplied:  Hint: Value was of type 'list'. "
         "See the API docs for more information about request parameters."},
        {"{\"name\": {\"a\": 1}}", "Hint: Value was of type 'dict'."},
        {"{\"name\": true}", "Invalid value true for parameter 'name' supplied:  Hint: Value was of "
                             "type 'bool'."},
        {"{\"name\": 1.5}", "Hint: Value was of type 'float'."},
        {"{\"name\": \"ok\", \"tags\": {\"key\": \"k\"}}", "parameter 'tags'"},
        {"{\"name\": \"ok\", \"tags\": [\"k\"]}", "parameter 'tags'"},
        {"{\"name\": \"ok\", \"tags\": [{\"key\": 1}]}", "parameter 'tags[0].key'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        tt_err(f->t, "POST", TT_API "experiments/create", 400, "INVALID_PARAMETER_VALUE",
               cases[i].msg, "%s", cases[i].body);
    /* int64 as a string in a POST body; booleans as strings. */
    char *run = tt_create_run(f->t, "0");
    tt_do(f->t, "POST", TT_API "runs/log-metric",
          "{\"run_id\": \"%s\", \"key\": \"m\", \"value\": \"2.5\", \"timestamp\": "
          "\"1700000000000\", \"step\": \"-3\"}",
          run);
    cJSON *r = tt_ok(f->t, "GET", TT_API "metrics/get-history",
                     "{\"run_id\": \"%s\", \"metric_key\": \"m\"}", run);
    assert_true(tt_num(r, "metrics.0.timestamp") == 1700000000000.0);
    assert_true(tt_num(r, "metrics.0.step") == -3);
    assert_true(tt_num(r, "metrics.0.value") == 2.5);
    cJSON_Delete(r);
    tt_err(f->t, "POST", TT_API "runs/log-metric", 400, "INVALID_PARAMETER_VALUE",
           "Invalid value \"12abc\" for parameter 'timestamp'",
           "{\"run_id\": \"%s\", \"key\": \"m\", \"value\": 1, \"timestamp\": \"12abc\"}", run);
    tt_err(f->t, "POST", TT_API "runs/log-metric", 400, "INVALID_PARAMETER_VALUE",
           "Invalid value \"nan\" for parameter 'value'",
           "{\"run_id\": \"%s\", \"key\": \"m\", \"value\": \"nan\", \"timestamp\": 1}", run);
    free(run);
}

static void test_get_fields(void **state)
{
    tt_fixture *f = *state;
    /* Query values are strings; a repeated key is an array (a scalar takes
     * the first value, a list all of them). */
    cJSON *r = tt_ok(f->t, "GET", TT_API "experiments/get", "{\"experiment_id\": [\"0\", \"9\"]}");
    assert_string_equal(tt_str(r, "experiment.name"), "Default");
    cJSON_Delete(r);
    free(tt_create_experiment(f->t, "b"));
    free(tt_create_experiment(f->t, "a"));
    r = tt_ok(f->t, "GET", TT_API "experiments/search",
              "{\"order_by\": [\"name DESC\", \"experiment_id\"], \"max_results\": \"1\","
              " \"view_type\": \"ACTIVE_ONLY\"}");
    assert_string_equal(tt_str(r, "experiments.0.name"), "b");
    assert_non_null(tt_get(r, "next_page_token"));
    cJSON_Delete(r);
    tt_err(f->t, "GET", TT_API "experiments/search", 400, "INVALID_PARAMETER_VALUE",
           "Invalid value \"ten\" for parameter 'max_results' supplied:  Hint: Value was of type "
           "'str'.",
           "{\"max_results\": \"ten\"}");
}

static void test_error_json(void **state)
{
    (void)state;
    static const struct {
        const char *code;
        int status;
    } table[] = {
        {"INVALID_PARAMETER_VALUE", 400}, {"BAD_REQUEST", 400},
        {"RESOURCE_ALREADY_EXISTS", 400}, {"MALFORMED_REQUEST", 400},
        {"RESOURCE_DOES_NOT_EXIST", 404}, {"ENDPOINT_NOT_FOUND", 404},
        {"UNAUTHENTICATED", 401},         {"PERMISSION_DENIED", 403},
        {"REQUEST_LIMIT_EXCEEDED", 429},  {"INTERNAL_ERROR", 500},
        {"INVALID_STATE", 500},           {"TEMPORARILY_UNAVAILABLE", 503},
        {"SOMETHING_NEW", 500},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        int status = 0;
        cJSON *e = kiln_tracking_error_json(table[i].code, "boom", &status);
        assert_non_null(e);
        assert_int_equal(status, table[i].status);
        assert_string_equal(tt_str(e, "error_code"), table[i].code);
        assert_string_equal(tt_str(e, "message"), "boom");
        assert_int_equal(cJSON_GetArraySize(e), 2);
        cJSON_Delete(e);
    }
    int status = 0;
    cJSON *e = kiln_tracking_error_json(NULL, NULL, &status);
    assert_string_equal(tt_str(e, "error_code"), "INTERNAL_ERROR");
    assert_string_equal(tt_str(e, "message"), "");
    assert_int_equal(status, 500);
    cJSON_Delete(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unknown_endpoints_and_methods, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_request_bodies, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_field_types, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_get_fields, tt_setup, tt_teardown),
        cmocka_unit_test(test_error_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
