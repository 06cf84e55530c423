/* tests/test_tracking_registry.c — the model registry through
 * kiln_tracking_api: registered models, versions, stages, latest versions,
 * aliases, tags, search and download URIs, with model_registry.proto's
 * shapes and MLflow's errors. */
#include "test_tracking_support.h"

static const char *const model_keys[] = {"name", "creation_timestamp", "last_updated_timestamp",
                                         "description", NULL};
static const char *const version_keys[] = {"name",          "version",     "creation_timestamp",
                                           "last_updated_timestamp", "current_stage",
                                           "description",   "source",      "run_id",
                                           "status",        "run_link",    NULL};

static void create_model(kiln_tracking *t, const char *name)
{
    tt_do(t, "POST", TT_API "registered-models/create", "{\"name\": \"%s\"}", name);
}

static void create_version(kiln_tracking *t, const char *name, const char *run,
                           const char *expect_version)
{
    cJSON *r = tt_ok(t, "POST", TT_API "model-versions/create",
                     "{\"name\": \"%s\", \"source\": \"runs:/%s/model\", \"run_id\": \"%s\"}", name,
                     run, run);
    assert_string_equal(tt_str(r, "model_version.version"), expect_version);
    cJSON_Delete(r);
}

static void test_registered_model_crud(void **state)
{
    tt_fixture *f = *state;
    cJSON *r = tt_ok(f->t, "POST", TT_API "registered-models/create", "{\"name\": \"plain\"}");
    tt_keys(tt_get(r, "registered_model"), model_keys);
    assert_string_equal(tt_str(r, "registered_model.description"), "");
    cJSON_Delete(r);
    r = tt_ok(f->t, "POST", TT_API "registered-models/create",
              "{\"name\": \"dry-wet\", \"description\": \"classifier\","
              " \"tags\": [{\"key\": \"owner\", \"value\": \"ml\"}]}");
    assert_string_equal(tt_str(r, "registered_model.name"), "dry-wet");
    assert_string_equal(tt_str(r, "registered_model.description"), "classifier");
    assert_string_equal(tt_kv(r, "registered_model.tags", "owner")->valuestring, "ml");
    assert_true(tt_num(r, "registered_model.creation_timestamp") > 1.6e12);
    cJSON_Delete(r);
    tt_err(f->t, "POST", TT_API "registered-models/create", 400, "RESOURCE_ALREADY_EXISTS",
           "Registered Model (name=dry-wet) already exists.", "{\"name\": \"dry-wet\"}");
    tt_err(f->t, "POST", TT_API "registered-models/create", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'name'", "{\"name\": \"\"}");
    tt_err(f->t, "GET", TT_API "registered-models/get", 404, "RESOURCE_DOES_NOT_EXIST",
           "Registered Model with name=nope not found", "{\"name\": \"nope\"}");
    tt_ok_str(f->t, "PATCH", TT_API "registered-models/update", "registered_model.description",
              "v2", "{\"name\": \"dry-wet\", \"description\": \"v2\"}");
    tt_do(f->t, "POST", TT_API "registered-models/set-tag",
          "{\"name\": \"dry-wet\", \"key\": \"k\", \"value\": \"v\"}");
    tt_do(f->t, "DELETE", TT_API "registered-models/delete-tag",
          "{\"name\": \"dry-wet\", \"key\": \"owner\"}");
    r = tt_ok(f->t, "GET", TT_API "registered-models/get", "{\"name\": \"dry-wet\"}");
    assert_int_equal(tt_len(r, "registered_model.tags"), 1);
    assert_string_equal(tt_kv(r, "registered_model.tags", "k")->valuestring, "v");
    cJSON_Delete(r);
    /* Rename carries the versions along. */
    char *run = tt_create_run(f->t, "0");
    create_version(f->t, "dry-wet", run, "1");
    tt_err(f->t, "POST", TT_API "registered-models/rename", 400, "RESOURCE_ALREADY_EXISTS", NULL,
           "{\"name\": \"dry-wet\", \"new_name\": \"plain\"}");
    tt_ok_str(f->t, "POST", TT_API "registered-models/rename", "registered_model.name", "wet-dry",
              "{\"name\": \"dry-wet\", \"new_name\": \"wet-dry\"}");
    tt_ok_str(f->t, "GET", TT_API "model-versions/get", "model_version.name", "wet-dry",
              "{\"name\": \"wet-dry\", \"version\": \"1\"}");
    tt_do(f->t, "DELETE", TT_API "registered-models/delete", "{\"name\": \"wet-dry\"}");
    tt_err(f->t, "GET", TT_API "model-versions/get", 404, "RESOURCE_DOES_NOT_EXIST", NULL,
           "{\"name\": \"wet-dry\", \"version\": \"1\"}");
    /* Wrong method for an endpoint. */
    tt_err(f->t, "POST", TT_API "registered-models/delete", 405, "ENDPOINT_NOT_FOUND", NULL,
           "{\"name\": \"plain\"}");
    free(run);
}

static void test_model_versions(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    create_model(f->t, "m");
    cJSON *r = tt_ok(f->t, "POST", TT_API "model-versions/create",
                     "{\"name\": \"m\", \"source\": \"runs:/%s/model\", \"run_id\": \"%s\","
                     " \"description\": \"first\", \"tags\": [{\"key\": \"acc\", \"value\": \"0.9\"}]}",
                     run, run);
    const cJSON *mv = tt_get(r, "model_version");
    static const char *const keys_tags[] = {"name", "version", "creation_timestamp",
                                            "last_updated_timestamp", "current_stage",
                                            "description", "source", "run_id", "status",
                                            "run_link", "tags", NULL};
    tt_keys(mv, keys_tags);
    assert_string_equal(tt_str(mv, "version"), "1");
    assert_string_equal(tt_str(mv, "status"), "READY");
    assert_string_equal(tt_str(mv, "current_stage"), "None");
    assert_string_equal(tt_str(mv, "run_id"), run);
    assert_string_equal(tt_str(mv, "description"), "first");
    assert_string_equal(tt_kv(mv, "tags", "acc")->valuestring, "0.9");
    cJSON_Delete(r);
    r = tt_ok(f->t, "POST", TT_API "model-versions/create",
              "{\"name\": \"m\", \"source\": \"s3://models/m/2\"}");
    tt_keys(tt_get(r, "model_version"), version_keys);
    assert_string_equal(tt_str(r, "model_version.version"), "2");
    assert_string_equal(tt_str(r, "model_version.run_id"), "");
    cJSON_Delete(r);
    /* Download URIs are the sources (clients resolve runs:/), except that a
     * models:/<name>/<version> source takes that version's location. */
    r = tt_ok(f->t, "GET", TT_API "model-versions/get-download-uri",
              "{\"name\": \"m\", \"version\": \"1\"}");
    char expected[160];
    snprintf(expected, sizeof expected, "runs:/%s/model", run);
    assert_string_equal(tt_str(r, "artifact_uri"), expected);
    assert_int_equal(cJSON_GetArraySize(r), 1);
    cJSON_Delete(r);
    tt_ok_str(f->t, "GET", TT_API "model-versions/get-download-uri", "artifact_uri",
              "s3://models/m/2", "{\"name\": \"m\", \"version\": \"2\"}");
    create_model(f->t, "copy");
    tt_ok_str(f->t, "POST", TT_API "model-versions/create", "model_version.source", "models:/m/2",
              "{\"name\": \"copy\", \"source\": \"models:/m/2\"}");
    tt_ok_str(f->t, "GET", TT_API "model-versions/get-download-uri", "artifact_uri",
              "s3://models/m/2", "{\"name\": \"copy\", \"version\": \"1\"}");
    tt_err(f->t, "POST", TT_API "model-versions/create", 400, "INVALID_PARAMETER_VALUE",
           "Unable to fetch model from model URI source artifact location 'models:/m/9'",
           "{\"name\": \"copy\", \"source\": \"models:/m/9\"}");
    tt_ok_str(f->t, "PATCH", TT_API "model-versions/update", "model_version.description", "second",
              "{\"name\": \"m\", \"version\": \"2\", \"description\": \"second\"}");
    tt_do(f->t, "POST", TT_API "model-versions/set-tag",
          "{\"name\": \"m\", \"version\": \"2\", \"key\": \"k\", \"value\": \"v\"}");
    tt_do(f->t, "DELETE", TT_API "model-versions/delete-tag",
          "{\"name\": \"m\", \"version\": \"1\", \"key\": \"acc\"}");
    r = tt_ok(f->t, "GET", TT_API "model-versions/get", "{\"name\": \"m\", \"version\": \"1\"}");
    assert_null(tt_get(r, "model_version.tags"));
    cJSON_Delete(r);
    /* Deleted numbers are not reused. */
    tt_do(f->t, "DELETE", TT_API "model-versions/delete", "{\"name\": \"m\", \"version\": \"2\"}");
    tt_err(f->t, "GET", TT_API "model-versions/get", 404, "RESOURCE_DOES_NOT_EXIST",
           "Model Version (name=m, version=2) not found", "{\"name\": \"m\", \"version\": \"2\"}");
    create_version(f->t, "m", run, "3");
    /* Errors. */
    tt_err(f->t, "POST", TT_API "model-versions/create", 404, "RESOURCE_DOES_NOT_EXIST",
           "Registered Model with name=ghost not found",
           "{\"name\": \"ghost\", \"source\": \"s3://b/k\"}");
    tt_err(f->t, "POST", TT_API "model-versions/create", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'source'", "{\"name\": \"m\"}");
    tt_err(f->t, "POST", TT_API "model-versions/create", 400, "INVALID_PARAMETER_VALUE",
           "Invalid model version source: 's3://b/../etc'",
           "{\"name\": \"m\", \"source\": \"s3://b/../etc\"}");
    tt_err(f->t, "POST", TT_API "model-versions/create", 400, "INVALID_PARAMETER_VALUE",
           "Invalid model version source",
           "{\"name\": \"m\", \"source\": \"mlflow-artifacts:/0/%%2e%%2e/%%2E%%2E/x\"}");
    tt_err(f->t, "POST", TT_API "model-versions/create", 400, "INVALID_PARAMETER_VALUE",
           "To use a local path as a model version source",
           "{\"name\": \"m\", \"source\": \"/etc/passwd\", \"run_id\": \"%s\"}", run);
    tt_err(f->t, "GET", TT_API "model-versions/get", 400, "INVALID_PARAMETER_VALUE",
           "Model version must be an integer, got 'one'", "{\"name\": \"m\", \"version\": \"one\"}");
    r = tt_ok(f->t, "GET", TT_API "model-versions/search", "{\"filter\": \"name='m'\"}");
    assert_int_equal(tt_len(r, "model_versions"), 2);
    cJSON_Delete(r);
    free(run);
}

static const char *stage_of(kiln_tracking *t, const char *version)
{
    static char stage[32];
    cJSON *r = tt_ok(t, "GET", TT_API "model-versions/get",
                     "{\"name\": \"m\", \"version\": \"%s\"}", version);
    snprintf(stage, sizeof stage, "%s", tt_str(r, "model_version.current_stage"));
    cJSON_Delete(r);
    return stage;
}

static void test_stages_and_latest(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    create_model(f->t, "m");
    for (int i = 1; i <= 3; i++) {
        char v[4];
        snprintf(v, sizeof v, "%d", i);
        create_version(f->t, "m", run, v);
    }
    cJSON *r = tt_ok(f->t, "POST", TT_API "model-versions/transition-stage",
                     "{\"name\": \"m\", \"version\": \"1\", \"stage\": \"production\","
                     " \"archive_existing_versions\": false}");
    assert_string_equal(tt_str(r, "model_version.current_stage"), "Production");
    cJSON_Delete(r);
    tt_do(f->t, "POST", TT_API "model-versions/transition-stage",
          "{\"name\": \"m\", \"version\": \"2\", \"stage\": \"Staging\","
          " \"archive_existing_versions\": \"false\"}");
    /* Version 3 to Production, archiving version 1. */
    tt_do(f->t, "POST", TT_API "model-versions/transition-stage",
          "{\"name\": \"m\", \"version\": \"3\", \"stage\": \"Production\","
          " \"archive_existing_versions\": true}");
    assert_string_equal(stage_of(f->t, "1"), "Archived");
    assert_string_equal(stage_of(f->t, "2"), "Staging");
    assert_string_equal(stage_of(f->t, "3"), "Production");
    r = tt_ok(f->t, "POST", TT_API "registered-models/get-latest-versions",
              "{\"name\": \"m\", \"stages\": [\"Production\"]}");
    assert_int_equal(tt_len(r, "model_versions"), 1);
    assert_string_equal(tt_str(r, "model_versions.0.version"), "3");
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "registered-models/get-latest-versions",
              "{\"name\": \"m\", \"stages\": \"staging\"}");
    assert_int_equal(tt_len(r, "model_versions"), 1);
    assert_string_equal(tt_str(r, "model_versions.0.version"), "2");
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "registered-models/get-latest-versions", "{\"name\": \"m\"}");
    assert_int_equal(tt_len(r, "model_versions"), 3);
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "registered-models/get", "{\"name\": \"m\"}");
    assert_int_equal(tt_len(r, "registered_model.latest_versions"), 3);
    cJSON_Delete(r);
    tt_err(f->t, "POST", TT_API "model-versions/transition-stage", 400, "INVALID_PARAMETER_VALUE",
           "Invalid Model Version stage: Live. Value must be one of None, Staging, Production, "
           "Archived.",
           "{\"name\": \"m\", \"version\": \"1\", \"stage\": \"Live\", "
           "\"archive_existing_versions\": false}");
    tt_err(f->t, "POST", TT_API "model-versions/transition-stage", 400, "INVALID_PARAMETER_VALUE",
           "Missing value for required parameter 'archive_existing_versions'",
           "{\"name\": \"m\", \"version\": \"1\", \"stage\": \"Staging\"}");
    tt_err(f->t, "POST", TT_API "model-versions/transition-stage", 400, "INVALID_PARAMETER_VALUE",
           "Invalid value \"maybe\" for parameter 'archive_existing_versions'",
           "{\"name\": \"m\", \"version\": \"1\", \"stage\": \"Staging\","
           " \"archive_existing_versions\": \"maybe\"}");
    tt_err(f->t, "POST", TT_API "model-versions/transition-stage", 400, "INVALID_PARAMETER_VALUE",
           "is not an Active stage",
           "{\"name\": \"m\", \"version\": \"1\", \"stage\": \"Archived\","
           " \"archive_existing_versions\": true}");
    tt_err(f->t, "POST", TT_API "registered-models/get-latest-versions", 400,
           "INVALID_PARAMETER_VALUE", "Invalid Model Version stage",
           "{\"name\": \"m\", \"stages\": [\"Prod\"]}");
    assert_string_equal(stage_of(f->t, "1"), "Archived");
    free(run);
}

static void test_aliases(void **state)
{
    tt_fixture *f = *state;
    char *run = tt_create_run(f->t, "0");
    create_model(f->t, "m");
    create_version(f->t, "m", run, "1");
    create_version(f->t, "m", run, "2");
    cJSON *r = tt_ok(f->t, "POST", TT_API "registered-models/alias",
                     "{\"name\": \"m\", \"alias\": \"champion\", \"version\": \"1\"}");
    assert_int_equal(cJSON_GetArraySize(r), 0);
    cJSON_Delete(r);
    /* Setting it again moves it. */
    tt_do(f->t, "POST", TT_API "registered-models/alias",
          "{\"name\": \"m\", \"alias\": \"champion\", \"version\": \"2\"}");
    r = tt_ok(f->t, "GET", TT_API "registered-models/alias", "{\"name\": \"m\", \"alias\": \"champion\"}");
    assert_string_equal(tt_str(r, "model_version.version"), "2");
    assert_int_equal(tt_len(r, "model_version.aliases"), 1);
    assert_string_equal(tt_str(r, "model_version.aliases.0"), "champion");
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "model-versions/get", "{\"name\": \"m\", \"version\": \"1\"}");
    assert_null(tt_get(r, "model_version.aliases"));
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "registered-models/get", "{\"name\": \"m\"}");
    assert_int_equal(tt_len(r, "registered_model.aliases"), 1);
    assert_string_equal(tt_str(r, "registered_model.aliases.0.alias"), "champion");
    assert_string_equal(tt_str(r, "registered_model.aliases.0.version"), "2");
    cJSON_Delete(r);
    /* As MLflow's SQL registry, "latest" is reserved here (clients resolve it). */
    tt_err(f->t, "GET", TT_API "registered-models/alias", 400, "INVALID_PARAMETER_VALUE",
           "'latest' alias name (case insensitive) is reserved.",
           "{\"name\": \"m\", \"alias\": \"latest\"}");
    tt_err(f->t, "GET", TT_API "registered-models/alias", 400, "INVALID_PARAMETER_VALUE",
           "Registered model alias champion not found.",
           "{\"name\": \"nope\", \"alias\": \"champion\"}");
    tt_do(f->t, "DELETE", TT_API "registered-models/alias",
          "{\"name\": \"m\", \"alias\": \"champion\"}");
    tt_err(f->t, "GET", TT_API "registered-models/alias", 400, "INVALID_PARAMETER_VALUE",
           "Registered model alias champion not found.", "{\"name\": \"m\", \"alias\": \"champion\"}");
    tt_err(f->t, "POST", TT_API "registered-models/alias", 400, "INVALID_PARAMETER_VALUE",
           "'latest' alias name (case insensitive) is reserved.",
           "{\"name\": \"m\", \"alias\": \"Latest\", \"version\": \"1\"}");
    tt_err(f->t, "POST", TT_API "registered-models/alias", 400, "INVALID_PARAMETER_VALUE",
           "Version alias name 'v1' is reserved.",
           "{\"name\": \"m\", \"alias\": \"v1\", \"version\": \"1\"}");
    tt_err(f->t, "POST", TT_API "registered-models/alias", 400, "INVALID_PARAMETER_VALUE",
           "Invalid alias name: 'a b'", "{\"name\": \"m\", \"alias\": \"a b\", \"version\": \"1\"}");
    tt_err(f->t, "POST", TT_API "registered-models/alias", 404, "RESOURCE_DOES_NOT_EXIST",
           "Model Version (name=m, version=9) not found",
           "{\"name\": \"m\", \"alias\": \"x\", \"version\": \"9\"}");
    /* Deleting a version drops its aliases. */
    tt_do(f->t, "POST", TT_API "registered-models/alias",
          "{\"name\": \"m\", \"alias\": \"x\", \"version\": \"1\"}");
    tt_do(f->t, "DELETE", TT_API "model-versions/delete", "{\"name\": \"m\", \"version\": \"1\"}");
    tt_err(f->t, "GET", TT_API "registered-models/alias", 400, "INVALID_PARAMETER_VALUE", NULL,
           "{\"name\": \"m\", \"alias\": \"x\"}");
    free(run);
}

static void test_registry_search(void **state)
{
    tt_fixture *f = *state;
    char *run_a = tt_create_run(f->t, "0");
    char *run_b = tt_create_run(f->t, "0");
    const char *const names[] = {"cats", "dogs", "Cattle"};
    for (int i = 0; i < 3; i++)
        create_model(f->t, names[i]);
    create_version(f->t, "cats", run_a, "1");
    create_version(f->t, "cats", run_b, "2");
    create_version(f->t, "dogs", run_b, "1");
    cJSON *r = tt_ok(f->t, "GET", TT_API "registered-models/search", "{}");
    assert_int_equal(tt_len(r, "registered_models"), 3);
    assert_string_equal(tt_str(r, "registered_models.0.name"), "Cattle");
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "registered-models/search", "{\"filter\": \"name LIKE 'cat%%'\"}");
    assert_int_equal(tt_len(r, "registered_models"), 1);
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "registered-models/search",
              "{\"filter\": \"name ILIKE 'cat%%'\", \"max_results\": \"1\"}");
    assert_int_equal(tt_len(r, "registered_models"), 1);
    assert_string_equal(tt_str(r, "registered_models.0.name"), "Cattle");
    char *token = strdup(tt_str(r, "next_page_token"));
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "registered-models/search",
              "{\"filter\": \"name ILIKE 'cat%%'\", \"max_results\": \"1\", \"page_token\": \"%s\"}",
              token);
    assert_string_equal(tt_str(r, "registered_models.0.name"), "cats");
    assert_null(tt_get(r, "next_page_token"));
    cJSON_Delete(r);
    free(token);
    r = tt_ok(f->t, "GET", TT_API "model-versions/search", "{\"filter\": \"run_id = '%s'\"}", run_b);
    assert_int_equal(tt_len(r, "model_versions"), 2);
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "model-versions/search",
              "{\"filter\": \"name = 'cats'\", \"order_by\": [\"version_number ASC\"]}");
    assert_int_equal(tt_len(r, "model_versions"), 2);
    assert_string_equal(tt_str(r, "model_versions.0.version"), "1");
    assert_string_equal(tt_str(r, "model_versions.1.version"), "2");
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "model-versions/search",
              "{\"filter\": \"run_id IN ('%s', 'zzz')\"}", run_a);
    assert_int_equal(tt_len(r, "model_versions"), 1);
    cJSON_Delete(r);
    tt_err(f->t, "GET", TT_API "model-versions/search", 400, "INVALID_PARAMETER_VALUE",
           "'max_results'", "{\"max_results\": \"200001\"}");
    tt_err(f->t, "GET", TT_API "registered-models/search", 400, "INVALID_PARAMETER_VALUE",
           "'max_results'", "{\"max_results\": \"1001\"}");
    tt_err(f->t, "GET", TT_API "model-versions/search", 400, "INVALID_PARAMETER_VALUE",
           "Invalid attribute key", "{\"filter\": \"colour = 'x'\"}");
    free(run_a);
    free(run_b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registered_model_crud, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_model_versions, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_stages_and_latest, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_aliases, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_registry_search, tt_setup, tt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
