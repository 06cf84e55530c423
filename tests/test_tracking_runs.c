/* tests/test_tracking_runs.c — runs through kiln_tracking_api: create (names,
 * the mlflow.runName tag, artifact URIs), get, update, delete/restore,
 * tags, with the protos' shapes and MLflow's errors. */
#include <ctype.h>

#include "test_tracking_support.h"

static const char *const run_keys[] = {"info", "data", "inputs", NULL};
static const char *const info_keys[] = {"run_uuid", "run_name", "experiment_id", "user_id",
                                        "status",   "start_time", "artifact_uri",
                                        "lifecycle_stage", "run_id", NULL};
static const char *const info_keys_ended[] = {"run_uuid", "run_name", "experiment_id",
                                              "user_id", "status", "start_time", "end_time",
                                              "artifact_uri", "lifecycle_stage", "run_id", NULL};

static void test_create_run_shape(void **state)
{
    tt_fixture *f = *state;
    char *exp = tt_create_experiment(f->t, "e");
    cJSON *r = tt_ok(f->t, "POST", TT_API "runs/create",
                     "{\"experiment_id\": \"%s\", \"user_id\": \"ana\", \"start_time\": \"1700000000123\","
                     " \"tags\": [{\"key\": \"mlflow.source.type\", \"value\": \"LOCAL\"}]}",
                     exp);
    assert_int_equal(cJSON_GetArraySize(r), 1);
    const cJSON *run = tt_get(r, "run");
    tt_keys(run, run_keys);
    const cJSON *info = tt_get(run, "info");
    tt_keys(info, info_keys);
    const char *id = tt_str(info, "run_id");
    assert_int_equal(strlen(id), 32);
    for (const char *p = id; *p; p++)
        assert_true(isxdigit((unsigned char)*p) && !isupper((unsigned char)*p));
    assert_string_equal(tt_str(info, "run_uuid"), id);
    assert_string_equal(tt_str(info, "experiment_id"), exp);
    assert_string_equal(tt_str(info, "user_id"), "ana");
    assert_string_equal(tt_str(info, "status"), "RUNNING");
    assert_string_equal(tt_str(info, "lifecycle_stage"), "active");
    assert_true(tt_num(info, "start_time") == 1700000000123.0);
    char uri[128];
    snprintf(uri, sizeof uri, "mlflow-artifacts:/%s/%s/artifacts", exp, id);
    assert_string_equal(tt_str(info, "artifact_uri"), uri);
    /* A generated name "<word>-<word>-<number>", mirrored in the tag. */
    const char *name = tt_str(info, "run_name");
    const char *dash = strrchr(name, '-');
    assert_non_null(dash);
    assert_true(strchr(name, '-') < dash && isdigit((unsigned char)dash[1]));
    assert_string_equal(tt_kv(run, "data.tags", "mlflow.runName")->valuestring, name);
    assert_string_equal(tt_kv(run, "data.tags", "mlflow.source.type")->valuestring, "LOCAL");
    assert_int_equal(tt_len(run, "data.tags"), 2);
    assert_null(tt_get(run, "data.metrics"));
    assert_null(tt_get(run, "data.params"));
    assert_int_equal(cJSON_GetArraySize(tt_get(run, "inputs")), 0);
    /* runs/get answers the same run. */
    cJSON *g = tt_ok(f->t, "GET", TT_API "runs/get", "{\"run_id\": \"%s\"}", id);
    assert_true(cJSON_Compare(tt_get(g, "run"), run, 1));
    cJSON_Delete(g);
    /* The legacy run_uuid field works too. */
    g = tt_ok(f->t, "GET", TT_API "runs/get", "{\"run_uuid\": \"%s\"}", id);
    assert_string_equal(tt_str(g, "run.info.run_id"), id);
    cJSON_Delete(g);
    cJSON_Delete(r);
    free(exp);
}

static void test_run_names(void **state)
{
    tt_fixture *f = *state;
    cJSON *r = tt_ok(f->t, "POST", TT_API "runs/create", "{\"run_name\": \"first\"}");
    assert_string_equal(tt_str(r, "run.info.run_name"), "first");
    assert_string_equal(tt_str(r, "run.info.experiment_id"), "0");
    assert_string_equal(tt_kv(r, "run.data.tags", "mlflow.runName")->valuestring, "first");
    cJSON_Delete(r);
    r = tt_ok(f->t, "POST", TT_API "runs/create",
              "{\"tags\": [{\"key\": \"mlflow.runName\", \"value\": \"from-tag\"}]}");
    assert_string_equal(tt_str(r, "run.info.run_name"), "from-tag");
    assert_int_equal(tt_len(r, "run.data.tags"), 1);
    cJSON_Delete(r);
    tt_ok_str(
        f->t, "POST", TT_API "runs/create", "run.info.run_name", "same",
        "{\"run_name\": \"same\", \"tags\": [{\"key\": \"mlflow.runName\", \"value\": \"same\"}]}");
    tt_err(f->t, "POST", TT_API "runs/create", 400, "INVALID_PARAMETER_VALUE",
           "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with different "
           "values (run_name='a', mlflow.runName='b').",
           "{\"run_name\": \"a\", \"tags\": [{\"key\": \"mlflow.runName\", \"value\": \"b\"}]}");
    tt_err(f->t, "POST", TT_API "runs/create", 404, "RESOURCE_DOES_NOT_EXIST",
           "No Experiment with id=42 exists", "{\"experiment_id\": \"42\"}");
    tt_err(f->t, "POST", TT_API "runs/create", 400, "INVALID_PARAMETER_VALUE",
           "Invalid value \"soon\" for parameter 'start_time' supplied:  Hint: Value was of type "
           "'str'.",
           "{\"start_time\": \"soon\"}");
    tt_err(f->t, "POST", TT_API "runs/create", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'tags[0].key'", "{\"tags\": [{\"value\": \"v\"}]}");
    /* None of the rejected requests made a run. */
    r = tt_ok(f->t, "POST", TT_API "runs/search", "{\"experiment_ids\": [\"0\"]}");
    assert_int_equal(tt_len(r, "runs"), 3);
    cJSON_Delete(r);
}

static void test_update_run(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    cJSON *r = tt_ok(f->t, "POST", TT_API "runs/update",
                     "{\"run_id\": \"%s\", \"status\": \"FINISHED\", \"end_time\": 2000,"
                     " \"run_name\": \"renamed\"}",
                     run);
    assert_int_equal(cJSON_GetArraySize(r), 1);
    const cJSON *info = tt_get(r, "run_info");
    tt_keys(info, info_keys_ended);
    assert_string_equal(tt_str(info, "status"), "FINISHED");
    assert_true(tt_num(info, "end_time") == 2000);
    assert_string_equal(tt_str(info, "run_name"), "renamed");
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "runs/get", "{\"run_id\": \"%s\"}", run);
    assert_string_equal(tt_kv(r, "run.data.tags", "mlflow.runName")->valuestring, "renamed");
    cJSON_Delete(r);
    /* Status by number (KILLED = 5); a status alone keeps the rest. */
    r = tt_ok(f->t, "POST", TT_API "runs/update", "{\"run_id\": \"%s\", \"status\": 5}", run);
    assert_string_equal(tt_str(r, "run_info.status"), "KILLED");
    assert_true(tt_num(r, "run_info.end_time") == 2000);
    cJSON_Delete(r);
    tt_err(f->t, "POST", TT_API "runs/update", 400, "INVALID_PARAMETER_VALUE", "'status'",
           "{\"run_id\": \"%s\", \"status\": \"DONE\"}", run);
    tt_err(f->t, "POST", TT_API "runs/update", 404, "RESOURCE_DOES_NOT_EXIST",
           "Run with id=nope not found", "{\"run_id\": \"nope\", \"status\": \"FINISHED\"}");
    tt_err(f->t, "POST", TT_API "runs/update", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'run_id'", "{\"status\": \"FINISHED\"}");
    free(run);
}

static void test_delete_restore_run(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    cJSON *r = tt_ok(f->t, "POST", TT_API "runs/delete", "{\"run_id\": \"%s\"}", run);
    assert_int_equal(cJSON_GetArraySize(r), 0);
    cJSON_Delete(r);
    tt_ok_str(f->t, "GET", TT_API "runs/get", "run.info.lifecycle_stage", "deleted",
              "{\"run_id\": \"%s\"}", run);
    char msg[200];
    snprintf(msg, sizeof msg,
             "The run %s must be in the 'active' state. Current state is deleted.", run);
    tt_err(f->t, "POST", TT_API "runs/log-metric", 400, "INVALID_PARAMETER_VALUE", msg,
           "{\"run_id\": \"%s\", \"key\": \"m\", \"value\": 1, \"timestamp\": 1}", run);
    tt_err(f->t, "POST", TT_API "runs/set-tag", 400, "INVALID_PARAMETER_VALUE", msg,
           "{\"run_id\": \"%s\", \"key\": \"k\", \"value\": \"v\"}", run);
    tt_err(f->t, "POST", TT_API "runs/update", 400, "INVALID_PARAMETER_VALUE", msg,
           "{\"run_id\": \"%s\", \"status\": \"FAILED\"}", run);
    /* Only active runs are searched by default. */
    r = tt_ok(f->t, "POST", TT_API "runs/search", "{\"experiment_ids\": [\"0\"]}");
    assert_null(tt_get(r, "runs"));
    cJSON_Delete(r);
    tt_do(f->t, "POST", TT_API "runs/restore", "{\"run_id\": \"%s\"}", run);
    tt_ok_str(f->t, "GET", TT_API "runs/get", "run.info.lifecycle_stage", "active",
              "{\"run_id\": \"%s\"}", run);
    tt_err(f->t, "POST", TT_API "runs/delete", 404, "RESOURCE_DOES_NOT_EXIST", NULL,
           "{\"run_id\": \"missing\"}");
    tt_err(f->t, "POST", TT_API "runs/restore", 400, "INVALID_PARAMETER_VALUE",
           "'run_id'", "{}");
    free(run);
}

static void test_run_tags(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    tt_do(f->t, "POST", TT_API "runs/set-tag",
          "{\"run_id\": \"%s\", \"key\": \"stage\", \"value\": \"a\"}", run);
    tt_do(f->t, "POST", TT_API "runs/set-tag",
          "{\"run_uuid\": \"%s\", \"key\": \"stage\", \"value\": \"b\"}", run);
    tt_do(f->t, "POST", TT_API "runs/set-tag",
          "{\"run_id\": \"%s\", \"key\": \"mlflow.runName\", \"value\": \"by-tag\"}", run);
    cJSON *r = tt_ok(f->t, "GET", TT_API "runs/get", "{\"run_id\": \"%s\"}", run);
    assert_string_equal(tt_kv(r, "run.data.tags", "stage")->valuestring, "b");
    assert_string_equal(tt_str(r, "run.info.run_name"), "by-tag");
    cJSON_Delete(r);
    tt_do(f->t, "POST", TT_API "runs/delete-tag", "{\"run_id\": \"%s\", \"key\": \"stage\"}", run);
    r = tt_ok(f->t, "GET", TT_API "runs/get", "{\"run_id\": \"%s\"}", run);
    assert_null(tt_kv(r, "run.data.tags", "stage"));
    cJSON_Delete(r);
    tt_err(f->t, "POST", TT_API "runs/delete-tag", 404, "RESOURCE_DOES_NOT_EXIST",
           "No tag with name: stage in run with id", "{\"run_id\": \"%s\", \"key\": \"stage\"}",
           run);
    tt_err(f->t, "POST", TT_API "runs/set-tag", 400, "INVALID_PARAMETER_VALUE",
           "Invalid tag name: 'a//b'", "{\"run_id\": \"%s\", \"key\": \"a//b\", \"value\": \"v\"}",
           run);
    tt_err(f->t, "POST", TT_API "runs/set-tag", 400, "INVALID_PARAMETER_VALUE",
           "Invalid tag name: 'a*b'. Names may only contain alphanumerics",
           "{\"run_id\": \"%s\", \"key\": \"a*b\", \"value\": \"v\"}", run);
    tt_err(f->t, "POST", TT_API "runs/set-tag", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'key'", "{\"run_id\": \"%s\", \"value\": \"v\"}",
           run);
    /* Tag values up to 8000 characters, not one more. */
    char *big = malloc(8002);
    memset(big, 'x', 8001);
    big[8001] = '\0';
    tt_err(f->t, "POST", TT_API "runs/set-tag", 400, "INVALID_PARAMETER_VALUE",
           "had length 8001, which exceeded length limit of 8000",
           "{\"run_id\": \"%s\", \"key\": \"big\", \"value\": \"%s\"}", run, big);
    big[8000] = '\0';
    tt_do(f->t, "POST", TT_API "runs/set-tag",
          "{\"run_id\": \"%s\", \"key\": \"big\", \"value\": \"%s\"}", run, big);
    free(big);
    free(run);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_run_shape, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_run_names, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_update_run, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_delete_restore_run, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_run_tags, tt_setup, tt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
