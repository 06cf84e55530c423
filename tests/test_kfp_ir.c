/* tests/test_kfp_ir.c — the compiled pipeline (IR YAML): the committed
 * pipelines/kiln-train.yaml is the generator's output and validates; every
 * component exists, every input is wired to something of its type, every
 * placeholder resolves, the image is the configured one; the seed's
 * parameters, the GPU request, retries and caching of download, the
 * Secrets; malformed IR is refused with a message naming the place. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "kfp/ir.h"
#include "support/testutil.h"

static char *committed_path(void)
{
    const char *src = getenv("KILN_SOURCE_DIR");
    assert_non_null(src);
    return kt_path(src, "pipelines/kiln-train.yaml");
}

static kiln_kfp_ir *generated(const char *image)
{
    kiln_kfp_gen_opts g = {.image = image};
    cJSON *spec = NULL, *platform = NULL;
    kiln_err err = {0};
    kt_expect_ok(kiln_kfp_generate(&g, &spec, &platform, &err), &err, "generate");
    return kt_expect_ptr(kiln_kfp_ir_from_json(spec, platform, "gen.yaml", &err), &err, "ir");
}

static void test_committed_equals_generator(void **state)
{
    (void)state;
    char *path = committed_path(), *text = NULL, *yaml = NULL;
    size_t len = 0;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(path, 0, &text, &len, &err), &err, "read committed");
    kt_expect_ok(kiln_kfp_generate_yaml(NULL, &yaml, &err), &err, "generate yaml");
    if (strcmp(text, yaml) != 0)
        fail_msg("%s differs from `kiln pipeline compile`: run\n  build/cli/kiln pipeline "
                 "compile --out pipelines/kiln-train.yaml", path);
    /* And the CLI writes the same bytes. */
    char *out = NULL;
    int rc = kt_run_capture(&out, "%s pipeline compile", kt_kiln_bin());
    assert_int_equal(rc, 0);
    assert_string_equal(out, yaml);
    free(out);
    free(text);
    free(yaml);
    free(path);
}

static void test_committed_validates(void **state)
{
    (void)state;
    char *path = committed_path();
    kiln_err err = {0};
    kiln_kfp_ir *ir = kt_expect_ptr(kiln_kfp_ir_load(path, &err), &err, "load");
    kt_expect_ok(kiln_kfp_ir_validate(ir, KILN_KFP_DEFAULT_IMAGE, &err), &err, "validate");
    const cJSON *tasks[KILN_KFP_MAX_TASKS];
    size_t n = 0;
    kt_expect_ok(kiln_kfp_ir_order(ir, tasks, KILN_KFP_MAX_TASKS, &n, &err), &err, "order");
    const char *want[] = {"download", "prepare", "train", "evaluate", "register", "upload"};
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(tasks[i]->string, want[i]);
    kiln_kfp_ir_free(ir);
    char *out = NULL;
    int rc = kt_run_capture(&out, "%s pipeline validate %s --training-image %s", kt_kiln_bin(),
                            path, KILN_KFP_DEFAULT_IMAGE);
    if (rc != 0 || !strstr(out, "valid KFP v2 pipeline"))
        fail_msg("kiln pipeline validate: %d\n%s", rc, out);
    free(out);
    free(path);
}

static const cJSON *at(const cJSON *n, const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "/"); tok && n; tok = strtok(NULL, "/"))
        n = cJSON_IsArray(n) ? cJSON_GetArrayItem(n, atoi(tok))
                             : cJSON_GetObjectItemCaseSensitive(n, tok);
    return n;
}

static const char *str_at(const cJSON *n, const char *path)
{
    const cJSON *v = at(n, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_pipeline_contents(void **state)
{
    (void)state;
    kiln_kfp_ir *ir = generated(NULL);
    const cJSON *s = ir->spec;
    /* Seed 004's flags as parameters, credentials never. */
    const char *params[] = {"minio_endpoint", "source_data_bucket", "source_data_object",
                            "destination_model_bucket", "destination_model_name",
                            "mlflow_tracking_uri", "mlflow_experiment_name",
                            "registered_model_name", "epochs", "batch_size", "image_size",
                            "model_variant", "learning_rate"};
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        char p[256];
        snprintf(p, sizeof p, "root/inputDefinitions/parameters/%s/parameterType", params[i]);
        if (!str_at(s, p))
            fail_msg("pipeline parameter %s missing", params[i]);
    }
    assert_string_equal(str_at(s, "root/inputDefinitions/parameters/source_data_bucket/defaultValue"),
                        "ml-data");
    assert_string_equal(str_at(s, "root/inputDefinitions/parameters/destination_model_bucket/"
                                  "defaultValue"), "ml-models");
    const cJSON *p;
    cJSON_ArrayForEach(p, at(s, "root/inputDefinitions/parameters")) {
        if (strstr(p->string, "key") || strstr(p->string, "secret") ||
            strstr(p->string, "password") || strstr(p->string, "token"))
            fail_msg("credential-like pipeline parameter %s", p->string);
    }
    /* GPU for train; retries and no cache for download. */
    assert_string_equal(str_at(s, "deploymentSpec/executors/exec-train/container/resources/"
                                  "accelerator/resourceType"), "nvidia.com/gpu");
    assert_string_equal(str_at(s, "deploymentSpec/executors/exec-train/container/resources/"
                                  "accelerator/resourceCount"), "1");
    assert_true(at(s, "root/dag/tasks/download/retryPolicy/maxRetryCount")->valueint >= 1);
    assert_true(cJSON_IsFalse(at(s, "root/dag/tasks/download/cachingOptions/enableCache")));
    /* Credentials from Secrets (kfp-kubernetes' platform document). */
    assert_non_null(ir->platform);
    const cJSON *dl = at(ir->platform, "platforms/kubernetes/deploymentSpec/executors/"
                                       "exec-download/secretAsEnv/0");
    assert_string_equal(str_at(dl, "secretName"), "kiln-s3-credentials");
    assert_string_equal(str_at(dl, "keyToEnv/0/envVar"), "AWS_ACCESS_KEY_ID");
    assert_string_equal(str_at(dl, "keyToEnv/1/envVar"), "AWS_SECRET_ACCESS_KEY");
    assert_string_equal(str_at(ir->platform, "platforms/kubernetes/deploymentSpec/executors/"
                                             "exec-train/secretAsEnv/1/secretName"),
                        "kiln-mlflow-credentials");
    /* The MLflow run id flows train -> evaluate -> register. */
    assert_string_equal(str_at(s, "root/dag/tasks/evaluate/inputs/parameters/run_id/"
                                  "taskOutputParameter/producerTask"), "train");
    assert_string_equal(str_at(s, "root/dag/tasks/register/inputs/parameters/run_id/"
                                  "taskOutputParameter/producerTask"), "train");
    kiln_kfp_ir_free(ir);
}

static void test_training_image(void **state)
{
    const char *dir = *state;
    char *out = kt_path(dir, "p.yaml"), *msg = NULL;
    const char *img = "registry.local:5000/kiln-train:v1.0.1";
    int rc = kt_run_capture(&msg, "%s pipeline compile --training-image %s --out %s",
                            kt_kiln_bin(), img, out);
    assert_int_equal(rc, 0);
    free(msg);
    kiln_err err = {0};
    kiln_kfp_ir *ir = kt_expect_ptr(kiln_kfp_ir_load(out, &err), &err, "load");
    kt_expect_ok(kiln_kfp_ir_validate(ir, img, &err), &err, "validate with the image");
    const cJSON *ex;
    int n = 0;
    cJSON_ArrayForEach(ex, at(ir->spec, "deploymentSpec/executors")) {
        assert_string_equal(str_at(ex, "container/image"), img);
        n++;
    }
    assert_int_equal(n, 6);
    kt_expect_fail(kiln_kfp_ir_validate(ir, KILN_KFP_DEFAULT_IMAGE, &err), &err, KILN_EINVAL,
                   "expected '" KILN_KFP_DEFAULT_IMAGE "'");
    kiln_kfp_ir_free(ir);
    rc = kt_run_capture(&msg, "%s pipeline validate %s --training-image other:1", kt_kiln_bin(),
                        out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(msg, "expected 'other:1'"));
    free(msg);
    free(out);
}

/* ---- malformed IR: one change to the generated tree, one message ---- */

static cJSON *node(cJSON *root, const char *path)
{
    return (cJSON *)at(root, path);
}

static void set_string(cJSON *root, const char *path, const char *key, const char *value)
{
    cJSON *n = node(root, path);
    assert_non_null(n);
    cJSON_DeleteItemFromObjectCaseSensitive(n, key);
    cJSON_AddStringToObject(n, key, value);
}

typedef void (*mutate_fn)(cJSON *spec);

static void m_component_ref(cJSON *s)
{
    set_string(s, "root/dag/tasks/train/componentRef", "name", "comp-missing");
}
static void m_executor(cJSON *s)
{
    set_string(s, "components/comp-prepare", "executorLabel", "exec-gone");
}
static void m_pipeline_param(cJSON *s)
{
    set_string(s, "root/dag/tasks/train/inputs/parameters/epochs", "componentInputParameter",
               "epoch");
}
static void m_param_type(cJSON *s)
{
    set_string(s, "root/dag/tasks/train/inputs/parameters/epochs", "componentInputParameter",
               "model_variant");
}
static void m_artifact_type(cJSON *s)
{
    set_string(s, "root/dag/tasks/evaluate/inputs/artifacts/model/taskOutputArtifact",
               "producerTask", "prepare");
    set_string(s, "root/dag/tasks/evaluate/inputs/artifacts/model/taskOutputArtifact",
               "outputArtifactKey", "dataset");
}
static void m_output_key(cJSON *s)
{
    set_string(s, "root/dag/tasks/register/inputs/parameters/run_id/taskOutputParameter",
               "outputParameterKey", "runid");
}
static void m_dependency(cJSON *s)
{
    cJSON_DeleteItemFromObjectCaseSensitive(node(s, "root/dag/tasks/upload"), "dependentTasks");
}
static void m_cycle(cJSON *s)
{
    cJSON *deps = cJSON_AddArrayToObject(node(s, "root/dag/tasks/download"), "dependentTasks");
    cJSON_AddItemToArray(deps, cJSON_CreateString("upload"));
}
static void m_unknown_dep(cJSON *s)
{
    cJSON_AddItemToArray(node(s, "root/dag/tasks/train/dependentTasks"),
                         cJSON_CreateString("ghost"));
}
static void m_placeholder_name(cJSON *s)
{
    cJSON *args = node(s, "deploymentSpec/executors/exec-prepare/container/args");
    cJSON_ReplaceItemInArray(args, 3, cJSON_CreateString("{{$.inputs.parameters['size']}}"));
}
static void m_placeholder_syntax(cJSON *s)
{
    cJSON *args = node(s, "deploymentSpec/executors/exec-prepare/container/args");
    cJSON_ReplaceItemInArray(args, 1, cJSON_CreateString("{{$.inputs.artifacts['data_zip'].size}}"));
}
static void m_required(cJSON *s)
{
    cJSON_DeleteItemFromObjectCaseSensitive(node(s, "root/dag/tasks/train/inputs/artifacts"),
                                            "dataset");
}
static void m_schema(cJSON *s)
{
    cJSON_DeleteItemFromObjectCaseSensitive(s, "schemaVersion");
}
static void m_param_kind(cJSON *s)
{
    set_string(s, "root/inputDefinitions/parameters/epochs", "parameterType", "INT");
}
static void m_default(cJSON *s)
{
    set_string(s, "root/inputDefinitions/parameters/epochs", "defaultValue", "ten");
}
static void m_image(cJSON *s)
{
    set_string(s, "deploymentSpec/executors/exec-upload/container", "image", "");
}
static void m_constant(cJSON *s)
{
    cJSON *p = node(s, "root/dag/tasks/train/inputs/parameters/epochs");
    cJSON_DeleteItemFromObjectCaseSensitive(p, "componentInputParameter");
    cJSON *rv = cJSON_AddObjectToObject(p, "runtimeValue");
    cJSON_AddStringToObject(rv, "constant", "three");
}

static void test_malformed_tree(void **state)
{
    (void)state;
    static const struct { mutate_fn fn; const char *needle; } cases[] = {
        {m_component_ref, "root.dag.tasks.train.componentRef.name: no component 'comp-missing'"},
        {m_executor, "no container executor 'exec-gone'"},
        {m_pipeline_param, "pipeline parameter 'epoch' does not exist"},
        {m_param_type, "epochs: a NUMBER_INTEGER wired to a STRING"},
        {m_artifact_type, "model: a system.Model wired to a system.Dataset"},
        {m_output_key, "task 'train' has no output parameter 'runid'"},
        {m_dependency, "root.dag.tasks.upload: reads an output of"},
        {m_cycle, "dependency cycle"},
        {m_unknown_dep, "no task named 'ghost'"},
        {m_placeholder_name, "input parameter 'size', which the component does not declare"},
        {m_placeholder_syntax, "malformed placeholder"},
        {m_required, "required input artifact 'dataset'"},
        {m_schema, "schemaVersion: missing"},
        {m_param_kind, "'INT' is not a KFP parameter type"},
        {m_default, "parameters.epochs.defaultValue: not a NUMBER_INTEGER"},
        {m_image, "exec-upload.container.image: missing"},
        {m_constant, "constant is not a NUMBER_INTEGER"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_kfp_gen_opts g = {0};
        cJSON *spec = NULL, *platform = NULL;
        kiln_err err = {0};
        kt_expect_ok(kiln_kfp_generate(&g, &spec, &platform, &err), &err, "generate");
        cases[i].fn(spec);
        kiln_kfp_ir *ir = kiln_kfp_ir_from_json(spec, platform, "bad.yaml", &err);
        if (ir || !strstr(err.msg, cases[i].needle) || !strstr(err.msg, "bad.yaml"))
            fail_msg("case %zu: wanted an error with '%s', got %s", i, cases[i].needle,
                     ir ? "a valid pipeline" : err.msg);
    }
}

static void test_malformed_yaml(void **state)
{
    (void)state;
    static const struct { const char *yaml; int code; const char *needle; } cases[] = {
        {"components: [\n  a: b\n", KILN_EFORMAT, "bad.yaml: line"},
        {"a: &x 1\nb: *x\n", KILN_EUNSUPPORTED, "aliases"},
        {"a: 1\na: 2\n", KILN_EFORMAT, "duplicate key 'a'"},
        {"a: 1\n---\nb: 2\n---\nc: 3\n", KILN_EINVAL, "found 3 documents"},
        {"", KILN_EINVAL, "found 0 documents"},
        {"- 1\n- 2\n", KILN_EINVAL, "not a mapping"},
        {"schemaVersion: 2.1.0\npipelineInfo: {name: x}\ncomponents: {}\n", KILN_EINVAL,
         "deploymentSpec.executors: missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_err err = {0};
        kiln_kfp_ir *ir = kiln_kfp_ir_parse(cases[i].yaml, strlen(cases[i].yaml), "bad.yaml", &err);
        if (ir || (int)err.code != cases[i].code || !strstr(err.msg, cases[i].needle))
            fail_msg("case %zu: wanted code %d with '%s', got %d: %s", i, cases[i].code,
                     cases[i].needle, err.code, err.msg);
    }
    /* Deep nesting is refused, not recursed into. */
    char deep[400];
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    kiln_err err = {0};
    cJSON *docs = NULL;
    kt_expect_fail(kiln_kfp_yaml_parse(deep, n, "deep.yaml", &docs, &err), &err, KILN_ELIMIT,
                   "nested deeper");
    /* The CLI says which file and exits 1. */
    char *out = NULL;
    int rc = kt_run_capture(&out, "%s pipeline validate /nonexistent.yaml", kt_kiln_bin());
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "/nonexistent.yaml"));
    free(out);
}

static void test_yaml_round_trip(void **state)
{
    (void)state;
    const char *text = "s: 'yes'\nt: 'true'\nn: '10'\nq: ''\nnum: 0.001\nneg: -3\nb: true\n"
                       "z: null\nlist: [a, '{{$}}', \"x: y\"]\nm: {k: v}\nv: 0.0.1\n";
    cJSON *docs = NULL;
    kiln_err err = {0};
    kt_expect_ok(kiln_kfp_yaml_parse(text, strlen(text), "rt.yaml", &docs, &err), &err, "parse");
    const cJSON *d = cJSON_GetArrayItem(docs, 0);
    assert_true(cJSON_IsString(at(d, "t")) && cJSON_IsString(at(d, "n")));
    assert_true(cJSON_IsNumber(at(d, "num")) && at(d, "num")->valuedouble == 0.001);
    assert_true(cJSON_IsBool(at(d, "b")) && cJSON_IsNull(at(d, "z")));
    assert_string_equal(str_at(d, "v"), "0.0.1");
    char *yaml = NULL;
    kt_expect_ok(kiln_kfp_yaml_emit(docs, NULL, &yaml, &err), &err, "emit");
    cJSON *again = NULL;
    kt_expect_ok(kiln_kfp_yaml_parse(yaml, strlen(yaml), "rt2.yaml", &again, &err), &err, "reparse");
    if (!cJSON_Compare(docs, again, 1))
        fail_msg("round trip changed the tree:\n%s", yaml);
    free(yaml);
    cJSON_Delete(docs);
    cJSON_Delete(again);
}

static void test_placeholders(void **state)
{
    (void)state;
    const char *json =
        "{\"inputs\":{\"parameterValues\":{\"epochs\":3,\"lr\":0.001,\"name\":\"m\",\"on\":true},"
        "\"artifacts\":{\"zip\":{\"artifacts\":[{\"uri\":\"minio://mlpipeline/v2/a/zip\"}]}}},"
        "\"outputs\":{\"parameters\":{\"run_id\":{\"outputFile\":\"/tmp/o/run_id\"}},"
        "\"artifacts\":{\"model\":{\"artifacts\":[{\"uri\":\"s3://b/m\"}]}},"
        "\"outputFile\":\"/tmp/o/out.json\"}}";
    cJSON *in = cJSON_Parse(json);
    static const struct { const char *in, *want; } ok[] = {
        {"--epochs={{$.inputs.parameters['epochs']}}", "--epochs=3"},
        {"{{$.inputs.parameters['lr']}}/{{$.inputs.parameters['name']}}", "0.001/m"},
        {"{{$.inputs.parameters['on']}}", "true"},
        {"{{$.inputs.artifacts['zip'].path}}", "/minio/mlpipeline/v2/a/zip"},
        {"{{$.inputs.artifacts['zip'].uri}}", "minio://mlpipeline/v2/a/zip"},
        {"{{$.outputs.artifacts['model'].path}}", "/s3/b/m"},
        {"{{$.outputs.parameters['run_id'].output_file}}", "/tmp/o/run_id"},
        {"{{$.outputs.output_file}}", "/tmp/o/out.json"},
        {"plain", "plain"},
    };
    kiln_err err = {0};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *out = NULL;
        kt_expect_ok(kiln_kfp_placeholders_resolve(ok[i].in, in, &out, &err), &err, ok[i].in);
        assert_string_equal(out, ok[i].want);
        free(out);
    }
    char *whole = NULL;
    kt_expect_ok(kiln_kfp_placeholders_resolve("{{$}}", in, &whole, &err), &err, "{{$}}");
    cJSON *back = cJSON_Parse(whole);
    assert_true(cJSON_Compare(back, in, 1));
    cJSON_Delete(back);
    free(whole);
    static const char *bad[] = {"{{$.inputs.parameters['nope']}}", "{{$.inputs.parameters['x'",
                                "{{$.outputs.artifacts['zip'].path}}", "{{$.foo}}",
                                "{{$.inputs.artifacts['zip'].length}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = NULL;
        if (kiln_kfp_placeholders_resolve(bad[i], in, &out, &err) == KILN_OK)
            fail_msg("%s resolved to '%s'", bad[i], out);
    }
    char *p = NULL;
    kt_expect_fail(kiln_kfp_uri_to_path("https://x/y", &p, &err), &err, KILN_EUNSUPPORTED,
                   "https://x/y");
    cJSON_Delete(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_committed_equals_generator),
        cmocka_unit_test(test_committed_validates),
        cmocka_unit_test(test_pipeline_contents),
        cmocka_unit_test_setup_teardown(test_training_image, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test(test_malformed_tree),
        cmocka_unit_test(test_malformed_yaml),
        cmocka_unit_test(test_yaml_round_trip),
        cmocka_unit_test(test_placeholders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
