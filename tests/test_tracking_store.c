/* tests/test_tracking_store.c — lib/tracking's store and experiments,
 * through kiln_tracking_api: the Default experiment, create/get/rename/
 * delete/restore/tags with MLflow's shapes and errors, search with filters,
 * ordering and pages, durability across close/reopen, and opening errors. */
#include <sqlite3.h>
#include <unistd.h>

#include "test_tracking_support.h"

static const char *const experiment_keys[] = {"experiment_id", "name", "artifact_location",
                                              "lifecycle_stage", "last_update_time",
                                              "creation_time", NULL};
static const char *const experiment_keys_tags[] = {"experiment_id", "name", "artifact_location",
                                                   "lifecycle_stage", "last_update_time",
                                                   "creation_time", "tags", NULL};

static void test_default_experiment(void **state)
{
    tt_fixture *f = *state;
    cJSON *r = tt_ok(f->t, "GET", TT_API "experiments/get", "{\"experiment_id\": \"0\"}");
    const cJSON *e = tt_get(r, "experiment");
    tt_keys(e, experiment_keys);
    assert_string_equal(tt_str(e, "experiment_id"), "0");
    assert_string_equal(tt_str(e, "name"), "Default");
    assert_string_equal(tt_str(e, "artifact_location"), "mlflow-artifacts:/0");
    assert_string_equal(tt_str(e, "lifecycle_stage"), "active");
    assert_true(tt_num(e, "creation_time") > 1.6e12);
    assert_true(tt_num(e, "last_update_time") >= tt_num(e, "creation_time"));
    cJSON_Delete(r);
}

static void test_create_get_experiment(void **state)
{
    tt_fixture *f = *state;
    cJSON *r = tt_ok(f->t, "POST", TT_API "experiments/create",
                     "{\"name\": \"exp-a\", \"tags\": [{\"key\": \"team\", \"value\": \"ml\"},"
                     " {\"key\": \"empty\"}]}");
    assert_int_equal(cJSON_GetArraySize(r), 1);
    assert_string_equal(tt_str(r, "experiment_id"), "1");
    cJSON_Delete(r);
    /* The same through the UI's /ajax-api prefix, and by name. */
    r = tt_ok(f->t, "GET", "/ajax-api/2.0/mlflow/experiments/get", "{\"experiment_id\": \"1\"}");
    const cJSON *e = tt_get(r, "experiment");
    tt_keys(e, experiment_keys_tags);
    assert_string_equal(tt_str(e, "name"), "exp-a");
    assert_string_equal(tt_str(e, "artifact_location"), "mlflow-artifacts:/1");
    assert_int_equal(tt_len(e, "tags"), 2);
    assert_string_equal(tt_kv(e, "tags", "team")->valuestring, "ml");
    assert_string_equal(tt_kv(e, "tags", "empty")->valuestring, "");
    cJSON_Delete(r);
    tt_ok_str(f->t, "GET", TT_API "experiments/get-by-name", "experiment.experiment_id", "1",
              "{\"experiment_name\": \"exp-a\"}");
    /* An explicit artifact location is kept as given. */
    r = tt_ok(f->t, "POST", TT_API "experiments/create",
              "{\"name\": \"exp-s3\", \"artifact_location\": \"s3://bucket/x\"}");
    cJSON *g = tt_ok(f->t, "GET", TT_API "experiments/get", "{\"experiment_id\": \"%s\"}",
                     tt_str(r, "experiment_id"));
    assert_string_equal(tt_str(g, "experiment.artifact_location"), "s3://bucket/x");
    cJSON_Delete(g);
    cJSON_Delete(r);
}

static int count_experiments(kiln_tracking *t)
{
    cJSON *r = tt_ok(t, "POST", TT_API "experiments/search", "{\"view_type\": \"ALL\"}");
    int n = tt_len(r, "experiments");
    cJSON_Delete(r);
    return n;
}

static void test_experiment_errors(void **state)
{
    tt_fixture *f = *state;
    free(tt_create_experiment(f->t, "dup"));
    int before = count_experiments(f->t);
    tt_err(f->t, "POST", TT_API "experiments/create", 400, "RESOURCE_ALREADY_EXISTS",
           "Experiment(name=dup) already exists", "{\"name\": \"dup\"}");
    /* A rejected request with tags leaves nothing behind either. */
    tt_err(f->t, "POST", TT_API "experiments/create", 400, "INVALID_PARAMETER_VALUE",
           "Invalid tag name", "{\"name\": \"new\", \"tags\": [{\"key\": \"../x\", \"value\": \"v\"}]}");
    assert_int_equal(count_experiments(f->t), before);
    tt_err(f->t, "POST", TT_API "experiments/create", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'name'. See the API docs", "{}");
    tt_err(f->t, "POST", TT_API "experiments/create", 400, "INVALID_PARAMETER_VALUE",
           "Invalid value 12 for parameter 'name' supplied:  Hint: Value was of type 'int'.",
           "{\"name\": 12}");
    tt_err(f->t, "POST", TT_API "experiments/create", 400, "INVALID_PARAMETER_VALUE",
           "Artifact location cannot be a runs:/ URI",
           "{\"name\": \"x\", \"artifact_location\": \"runs:/abc\"}");
    tt_err(f->t, "GET", TT_API "experiments/get", 404, "RESOURCE_DOES_NOT_EXIST",
           "No Experiment with id=99 exists", "{\"experiment_id\": \"99\"}");
    tt_err(f->t, "GET", TT_API "experiments/get", 404, "RESOURCE_DOES_NOT_EXIST", NULL,
           "{\"experiment_id\": \"abc\"}");
    tt_err(f->t, "GET", TT_API "experiments/get-by-name", 404, "RESOURCE_DOES_NOT_EXIST",
           "Could not find experiment with name 'nope'", "{\"experiment_name\": \"nope\"}");
    tt_err(f->t, "GET", TT_API "experiments/get", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'experiment_id'", "{}");
    char name[600];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    tt_err(f->t, "POST", TT_API "experiments/create", 400, "INVALID_PARAMETER_VALUE",
           "exceeds the maximum length of 500", "{\"name\": \"%s\"}", name);
    assert_int_equal(count_experiments(f->t), before);
}

static void test_rename_delete_restore(void **state)
{
    tt_fixture *f = *state;
    char *a = tt_create_experiment(f->t, "a");
    free(tt_create_experiment(f->t, "b"));
    char *run = tt_create_run(f->t, a);
    tt_do(f->t, "POST", TT_API "experiments/update",
          "{\"experiment_id\": \"%s\", \"new_name\": \"a2\"}", a);
    cJSON *r = tt_ok(f->t, "GET", TT_API "experiments/get", "{\"experiment_id\": \"%s\"}", a);
    assert_string_equal(tt_str(r, "experiment.name"), "a2");
    cJSON_Delete(r);
    tt_err(f->t, "POST", TT_API "experiments/update", 400, "RESOURCE_ALREADY_EXISTS", NULL,
           "{\"experiment_id\": \"%s\", \"new_name\": \"b\"}", a);
    tt_err(f->t, "POST", TT_API "experiments/update", 400, "INVALID_PARAMETER_VALUE",
           "'new_name'", "{\"experiment_id\": \"%s\"}", a);

    /* Deleting takes the runs along; restoring brings them back. */
    r = tt_ok(f->t, "POST", TT_API "experiments/delete", "{\"experiment_id\": \"%s\"}", a);
    assert_int_equal(cJSON_GetArraySize(r), 0);
    cJSON_Delete(r);
    tt_ok_str(f->t, "GET", TT_API "runs/get", "run.info.lifecycle_stage", "deleted",
              "{\"run_id\": \"%s\"}", run);
    tt_ok_str(f->t, "GET", TT_API "experiments/get", "experiment.lifecycle_stage", "deleted",
              "{\"experiment_id\": \"%s\"}", a);
    tt_err(f->t, "POST", TT_API "experiments/update", 500, "INVALID_STATE",
           "Cannot rename a non-active experiment.",
           "{\"experiment_id\": \"%s\", \"new_name\": \"zz\"}", a);
    tt_err(f->t, "POST", TT_API "experiments/delete", 404, "RESOURCE_DOES_NOT_EXIST", NULL,
           "{\"experiment_id\": \"%s\"}", a);
    tt_err(f->t, "POST", TT_API "runs/create", 400, "INVALID_PARAMETER_VALUE",
           "must be in the 'active' state", "{\"experiment_id\": \"%s\"}", a);
    tt_err(f->t, "POST", TT_API "experiments/set-experiment-tag", 400, "INVALID_PARAMETER_VALUE",
           "must be in the 'active' state",
           "{\"experiment_id\": \"%s\", \"key\": \"k\", \"value\": \"v\"}", a);
    tt_do(f->t, "POST", TT_API "experiments/restore", "{\"experiment_id\": \"%s\"}", a);
    tt_err(f->t, "POST", TT_API "experiments/restore", 404, "RESOURCE_DOES_NOT_EXIST", NULL,
           "{\"experiment_id\": \"%s\"}", a);
    tt_ok_str(f->t, "GET", TT_API "runs/get", "run.info.lifecycle_stage", "active",
              "{\"run_id\": \"%s\"}", run);
    free(run);
    free(a);
}

static void test_experiment_tags(void **state)
{
    tt_fixture *f = *state;
    char *id = tt_create_experiment(f->t, "tagged");
    tt_do(f->t, "POST", TT_API "experiments/set-experiment-tag",
          "{\"experiment_id\": \"%s\", \"key\": \"k\", \"value\": \"v1\"}", id);
    tt_do(f->t, "POST", TT_API "experiments/set-experiment-tag",
          "{\"experiment_id\": \"%s\", \"key\": \"k\", \"value\": \"v2\"}", id);
    cJSON *r = tt_ok(f->t, "GET", TT_API "experiments/get", "{\"experiment_id\": \"%s\"}", id);
    assert_int_equal(tt_len(r, "experiment.tags"), 1);
    assert_string_equal(tt_kv(r, "experiment.tags", "k")->valuestring, "v2");
    cJSON_Delete(r);
    tt_do(f->t, "POST", TT_API "experiments/delete-experiment-tag",
          "{\"experiment_id\": \"%s\", \"key\": \"k\"}", id);
    r = tt_ok(f->t, "GET", TT_API "experiments/get", "{\"experiment_id\": \"%s\"}", id);
    assert_null(tt_get(r, "experiment.tags"));
    cJSON_Delete(r);
    tt_err(f->t, "POST", TT_API "experiments/delete-experiment-tag", 404,
           "RESOURCE_DOES_NOT_EXIST", "No tag with name: k",
           "{\"experiment_id\": \"%s\", \"key\": \"k\"}", id);
    tt_err(f->t, "POST", TT_API "experiments/set-experiment-tag", 404, "RESOURCE_DOES_NOT_EXIST",
           NULL, "{\"experiment_id\": \"77\", \"key\": \"k\", \"value\": \"v\"}");
    free(id);
}

static void test_search_experiments(void **state)
{
    tt_fixture *f = *state;
    char names[512];
    const char *const created[] = {"alpha", "beta", "Gamma", "alphabet"};
    /* Distinct creation times, Default's (made when the store opened) too:
     * on a tie MLflow orders by experiment_id, which puts Default first. */
    usleep(2000);
    for (int i = 0; i < 4; i++) {
        free(tt_create_experiment(f->t, created[i]));
        usleep(2000);
    }
    tt_do(f->t, "POST", TT_API "experiments/set-experiment-tag",
          "{\"experiment_id\": \"2\", \"key\": \"team\", \"value\": \"vision\"}");
    /* Default order: newest first. */
    cJSON *r = tt_ok(f->t, "POST", TT_API "experiments/search", "{}");
    tt_join(r, "experiments", "name", names, sizeof names);
    assert_string_equal(names, "alphabet,Gamma,beta,alpha,Default");
    assert_null(tt_get(r, "next_page_token"));
    cJSON_Delete(r);
    r = tt_ok(f->t, "POST", TT_API "experiments/search",
              "{\"filter\": \"name = 'alpha'\"}");
    tt_join(r, "experiments", "name", names, sizeof names);
    assert_string_equal(names, "alpha");
    cJSON_Delete(r);
    r = tt_ok(f->t, "POST", TT_API "experiments/search",
              "{\"filter\": \"name LIKE 'alpha%%'\", \"order_by\": [\"name DESC\"]}");
    tt_join(r, "experiments", "name", names, sizeof names);
    assert_string_equal(names, "alphabet,alpha");
    cJSON_Delete(r);
    /* LIKE is case-sensitive, ILIKE is not. */
    r = tt_ok(f->t, "POST", TT_API "experiments/search", "{\"filter\": \"name LIKE '%%gam%%'\"}");
    assert_null(tt_get(r, "experiments"));
    cJSON_Delete(r);
    r = tt_ok(f->t, "POST", TT_API "experiments/search", "{\"filter\": \"name ILIKE '%%gam%%'\"}");
    tt_join(r, "experiments", "name", names, sizeof names);
    assert_string_equal(names, "Gamma");
    cJSON_Delete(r);
    r = tt_ok(f->t, "POST", TT_API "experiments/search",
              "{\"filter\": \"tags.team = 'vision' AND name != 'x'\"}");
    tt_join(r, "experiments", "name", names, sizeof names);
    assert_string_equal(names, "beta");
    cJSON_Delete(r);
    r = tt_ok(f->t, "POST", TT_API "experiments/search",
              "{\"order_by\": [\"creation_time ASC\"], \"filter\": \"creation_time > 0\"}");
    tt_join(r, "experiments", "name", names, sizeof names);
    assert_string_equal(names, "Default,alpha,beta,Gamma,alphabet");
    cJSON_Delete(r);
    /* GET with string fields, repeated order_by, and pages of 2. */
    r = tt_ok(f->t, "GET", TT_API "experiments/search",
              "{\"max_results\": \"2\", \"order_by\": \"name\"}");
    tt_join(r, "experiments", "name", names, sizeof names);
    assert_string_equal(names, "Default,Gamma");
    char *token = strdup(tt_str(r, "next_page_token"));
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "experiments/search",
              "{\"max_results\": \"2\", \"order_by\": [\"name\"], \"page_token\": \"%s\"}", token);
    tt_join(r, "experiments", "name", names, sizeof names);
    assert_string_equal(names, "alpha,alphabet");
    free(token);
    token = strdup(tt_str(r, "next_page_token"));
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "experiments/search",
              "{\"max_results\": \"2\", \"order_by\": [\"name\"], \"page_token\": \"%s\"}", token);
    tt_join(r, "experiments", "name", names, sizeof names);
    assert_string_equal(names, "beta");
    assert_null(tt_get(r, "next_page_token"));
    cJSON_Delete(r);
    free(token);
    /* view_type */
    tt_do(f->t, "POST", TT_API "experiments/delete", "{\"experiment_id\": \"2\"}");
    r = tt_ok(f->t, "POST", TT_API "experiments/search", "{\"view_type\": \"DELETED_ONLY\"}");
    tt_join(r, "experiments", "name", names, sizeof names);
    assert_string_equal(names, "beta");
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "experiments/search", "{\"view_type\": \"3\"}");
    assert_int_equal(tt_len(r, "experiments"), 5);
    cJSON_Delete(r);
    /* Bad input. */
    tt_err(f->t, "POST", TT_API "experiments/search", 400, "INVALID_PARAMETER_VALUE",
           "Invalid page token", "{\"page_token\": \"!!notbase64\"}");
    tt_err(f->t, "POST", TT_API "experiments/search", 400, "INVALID_PARAMETER_VALUE",
           "Invalid attribute key 'colour'", "{\"filter\": \"colour = 'red'\"}");
    tt_err(f->t, "POST", TT_API "experiments/search", 400, "INVALID_PARAMETER_VALUE",
           "Only AND", "{\"filter\": \"name = 'a' OR name = 'b'\"}");
    tt_err(f->t, "POST", TT_API "experiments/search", 400, "INVALID_PARAMETER_VALUE",
           "Invalid order_by clause", "{\"order_by\": [\"name sideways\"]}");
    tt_err(f->t, "POST", TT_API "experiments/search", 400, "INVALID_PARAMETER_VALUE",
           "Invalid order_by entity: tag", "{\"order_by\": [\"tags.team\"]}");
    tt_err(f->t, "POST", TT_API "experiments/search", 400, "INVALID_PARAMETER_VALUE",
           "It must be a positive integer, but got 0", "{\"max_results\": 0}");
    tt_err(f->t, "POST", TT_API "experiments/search", 400, "INVALID_PARAMETER_VALUE",
           "It must be at most 50000, but got 50001", "{\"max_results\": 50001}");
    tt_err(f->t, "POST", TT_API "experiments/search", 400, "INVALID_PARAMETER_VALUE",
           "for parameter 'max_results'", "{\"max_results\": \"many\"}");
}

static void test_durable_across_reopen(void **state)
{
    tt_fixture *f = *state;
    char *exp = tt_create_experiment(f->t, "durable");
    char *run = tt_create_run(f->t, exp);
    tt_do(f->t, "POST", TT_API "runs/log-metric",
          "{\"run_id\": \"%s\", \"key\": \"loss\", \"value\": 0.25, "
          "\"timestamp\": 5, \"step\": 3}",
          run);
    tt_do(f->t, "POST", TT_API "registered-models/create", "{\"name\": \"m\"}");
    tt_reopen(f);
    cJSON *r = tt_ok(f->t, "GET", TT_API "runs/get", "{\"run_id\": \"%s\"}", run);
    assert_string_equal(tt_str(r, "run.info.experiment_id"), exp);
    assert_true(tt_num(r, "run.data.metrics.0.value") == 0.25);
    assert_true(tt_num(r, "run.data.metrics.0.step") == 3);
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "registered-models/get", "{\"name\": \"m\"}");
    cJSON_Delete(r);
    /* Ids keep counting after a restart. */
    char *next = tt_create_experiment(f->t, "after-restart");
    assert_int_equal(atoi(next), atoi(exp) + 1);
    free(next);
    /* The schema version is recorded for later migrations; WAL is on. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(run);
    free(exp);
}

static void test_custom_artifact_root(void **state)
{
    tt_fixture *f = *state;
    kiln_err err = {0};
    char *db = kt_path(f->dir, "s3.db");
    kiln_tracking_options o = {.db_path = db, .artifacts_root = f->artifacts,
                               .default_artifact_root = "s3://bucket/prefix/"};
    kiln_tracking *t = kiln_tracking_open(&o, &err);
    assert_non_null(t);
    char *exp = tt_create_experiment(t, "on-s3");
    cJSON *r = tt_ok(t, "GET", TT_API "experiments/get", "{\"experiment_id\": \"%s\"}", exp);
    assert_string_equal(tt_str(r, "experiment.artifact_location"), "s3://bucket/prefix/1");
    cJSON_Delete(r);
    r = tt_ok(t, "POST", TT_API "runs/create", "{\"experiment_id\": \"%s\"}", exp);
    char expected[128];
    snprintf(expected, sizeof expected, "s3://bucket/prefix/1/%s/artifacts",
             tt_str(r, "run.info.run_id"));
    assert_string_equal(tt_str(r, "run.info.artifact_uri"), expected);
    cJSON_Delete(r);
    kiln_tracking_close(t);
    free(exp);
    free(db);
}

static void test_open_errors(void **state)
{
    tt_fixture *f = *state;
    kiln_err err = {0};
    kiln_tracking_options o = {.db_path = NULL, .artifacts_root = f->artifacts};
    assert_null(kiln_tracking_open(&o, &err));
    assert_int_equal(err.code, KILN_EINVAL);
    char *bad = kt_path(f->dir, "no/such/dir/store.db");
    o.db_path = bad;
    assert_null(kiln_tracking_open(&o, &err));
    assert_int_equal(err.code, KILN_EIO);
    assert_non_null(strstr(err.msg, "store.c:"));
    free(bad);
    /* A database from a newer kiln-tracking is refused, not damaged. */
    char *newer = kt_path(f->dir, "newer.db");
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(newer, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE schema_version (version INTEGER NOT NULL);"
                                      "INSERT INTO schema_version VALUES (99);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    o.db_path = newer;
    assert_null(kiln_tracking_open(&o, &err));
    assert_int_equal(err.code, KILN_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "schema version 99"));
    free(newer);
    kiln_tracking_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_default_experiment, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_create_get_experiment, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_experiment_errors, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_rename_delete_restore, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_experiment_tags, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_search_experiments, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_durable_across_reopen, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_custom_artifact_root, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, tt_setup, tt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
