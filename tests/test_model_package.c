/* tests/test_model_package.c — lib/model: a package written and read back
 * (info, weights, MLmodel), the atomic replace that keeps a training
 * checkpoint beside it, and every validation error of kiln-model.json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <yaml.h>

#include "common/fs.h"
#include "model/model.h"
#include "support/testutil.h"

typedef struct fixture {
    char *dir;
    kiln_nn_backend *be;
    kiln_effnet *model;
    kiln_model_info info;
    char *pkg;
} fixture;

static char *classes3[] = {"cat", "dog", "rabbit: \"quoted\""};

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kiln_err err = {0};
    f->dir = kt_mkdtemp();
    f->pkg = kt_path(f->dir, "pkg");
    f->be = kiln_nn_cpu_create(1, &err);
    assert_non_null(f->be);
    f->model = kiln_effnet_create("b0", 3, f->be, &err);
    assert_non_null(f->model);
    kt_expect_ok(kiln_effnet_init(f->model, 7, &err), &err, "init");
    kiln_model_info *i = &f->info;
    i->format_version = KILN_MODEL_FORMAT_VERSION;
    strcpy(i->variant, "b0");
    i->num_classes = 3;
    i->classes = classes3; /* borrowed: never cleared */
    i->input_size = 32;
    i->resize_size = 32;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(i->mean, mean, sizeof mean);
    memcpy(i->std, std, sizeof std);
    strcpy(i->kiln_version, "9.9.9");
    i->run_id = "0123456789abcdef";
    i->dataset_sha256 = "ab12";
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kiln_effnet_destroy(f->model);
    kiln_nn_backend_destroy(f->be);
    free(f->pkg);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

static void write_pkg(fixture *f)
{
    kiln_err err = {0};
    kt_expect_ok(kiln_model_package_write(f->pkg, f->model, &f->info, &err), &err, "write");
}

static float first_weight(kiln_effnet *m, const char *name)
{
    const kiln_effnet_tensor *t = kiln_effnet_find(m, name);
    assert_non_null(t);
    return t->data[t->count - 1]; /* CPU backend: host memory */
}

static void test_round_trip(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    kiln_model_info got;
    write_pkg(f);
    kiln_effnet *m = kiln_model_load(f->pkg, f->be, &got, &err);
    kt_expect_ok(m ? KILN_OK : err.code, &err, "load");
    assert_string_equal(got.variant, "b0");
    assert_int_equal(got.num_classes, 3);
    for (int c = 0; c < 3; c++) {
        assert_string_equal(got.classes[c], classes3[c]);
        assert_true(got.mean[c] == f->info.mean[c] && got.std[c] == f->info.std[c]);
    }
    assert_int_equal(got.input_size, 32);
    assert_int_equal(got.resize_size, 32);
    assert_string_equal(got.kiln_version, "9.9.9");
    assert_string_equal(got.run_id, "0123456789abcdef");
    assert_string_equal(got.dataset_sha256, "ab12");
    assert_true(first_weight(m, "classifier.1.weight") ==
                first_weight(f->model, "classifier.1.weight"));
    assert_true(first_weight(m, "features.0.0.weight") ==
                first_weight(f->model, "features.0.0.weight"));
    kiln_effnet_destroy(m);
    kiln_model_info_clear(&got);
}

/* MLmodel must be YAML that names the kiln flavor and the run; the class
 * name with a colon and quotes must not break anything. */
static void test_mlmodel_is_yaml(void **state)
{
    fixture *f = *state;
    write_pkg(f);
    char *path = kt_path(f->pkg, "MLmodel");
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    yaml_parser_t p;
    yaml_document_t doc;
    assert_true(yaml_parser_initialize(&p));
    yaml_parser_set_input_file(&p, fp);
    assert_true(yaml_parser_load(&p, &doc));
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    assert_non_null(root);
    assert_int_equal(root->type, YAML_MAPPING_NODE);
    int saw_flavors = 0, saw_run = 0, saw_sig = 0;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
         pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(&doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(&doc, pr->value);
        const char *key = (const char *)k->data.scalar.value;
        if (strcmp(key, "flavors") == 0) {
            yaml_node_t *fk = yaml_document_get_node(&doc, v->data.mapping.pairs.start->key);
            assert_string_equal((const char *)fk->data.scalar.value, "kiln");
            saw_flavors = 1;
        } else if (strcmp(key, "run_id") == 0) {
            assert_string_equal((const char *)v->data.scalar.value, "0123456789abcdef");
            saw_run = 1;
        } else if (strcmp(key, "signature") == 0) {
            saw_sig = v->type == YAML_MAPPING_NODE;
        }
    }
    assert_true(saw_flavors && saw_run && saw_sig);
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    fclose(fp);
    free(path);
}

/* Re-writing replaces the package but keeps the checkpoint beside it and
 * leaves no staging directory behind. */
static void test_replace_keeps_checkpoint(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    write_pkg(f);
    char *ck = kt_path(f->pkg, "checkpoint");
    assert_int_equal(kiln_mkdir_p(ck, &err), KILN_OK);
    char *ckf = kt_path(ck, "state.json");
    kt_write_file(ckf, "{}", 2);
    f->info.run_id = "second";
    write_pkg(f);
    assert_true(kiln_is_file(ckf));
    kiln_model_info got;
    kt_expect_ok(kiln_model_info_read(f->pkg, &got, &err), &err, "read");
    assert_string_equal(got.run_id, "second");
    kiln_model_info_clear(&got);
    assert_int_equal(kt_system("ls -d '%s'.* >/dev/null 2>&1", f->pkg) == 0, 0);
    free(ckf);
    free(ck);
}

static void test_write_refuses_mismatch(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    f->info.num_classes = 2; /* the model has 3 */
    kt_expect_fail(kiln_model_package_write(f->pkg, f->model, &f->info, &err), &err,
                   KILN_EINVAL, "3 classes");
    f->info.num_classes = 3;
    f->info.input_size = 8;
    kt_expect_fail(kiln_model_package_write(f->pkg, f->model, &f->info, &err), &err,
                   KILN_EFORMAT, "input_size");
    assert_false(kiln_is_dir(f->pkg));
}

/* Rewrite kiln-model.json with one field changed by `edit`. */
static void edit_info(fixture *f, void (*edit)(cJSON *root))
{
    char *path = kt_path(f->pkg, "kiln-model.json");
    char *text = NULL;
    size_t len = 0;
    kiln_err err = {0};
    kt_expect_ok(kiln_read_file(path, 0, &text, &len, &err), &err, "read json");
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    edit(root);
    char *out = cJSON_Print(root);
    kt_write_file(path, out, strlen(out));
    free(out);
    cJSON_Delete(root);
    free(text);
    free(path);
}

static void expect_read_error(fixture *f, void (*edit)(cJSON *), const char *needle)
{
    kiln_err err = {0};
    kiln_model_info got;
    write_pkg(f);
    edit_info(f, edit);
    kt_expect_fail(kiln_model_info_read(f->pkg, &got, &err), &err, KILN_EFORMAT, needle);
    assert_true(strstr(err.msg, "kiln-model.json") != NULL);
    assert_null(got.classes);
}

static cJSON *pre(cJSON *root)
{
    return cJSON_GetObjectItem(root, "preprocessing");
}
static void e_version(cJSON *r) { cJSON_ReplaceItemInObject(r, "format_version", cJSON_CreateNumber(2)); }
static void e_no_version(cJSON *r) { cJSON_DeleteItemFromObject(r, "format_version"); }
static void e_variant(cJSON *r) { cJSON_ReplaceItemInObject(r, "variant", cJSON_CreateString("b9")); }
static void e_variant_type(cJSON *r) { cJSON_ReplaceItemInObject(r, "variant", cJSON_CreateNumber(0)); }
static void e_classes_type(cJSON *r) { cJSON_ReplaceItemInObject(r, "classes", cJSON_CreateString("a")); }
static void e_classes_empty(cJSON *r) { cJSON_ReplaceItemInObject(r, "classes", cJSON_CreateArray()); }
static void e_class_number(cJSON *r) { cJSON_ReplaceItemInArray(cJSON_GetObjectItem(r, "classes"), 1, cJSON_CreateNumber(1)); }
static void e_class_dup(cJSON *r) { cJSON_ReplaceItemInArray(cJSON_GetObjectItem(r, "classes"), 1, cJSON_CreateString("cat")); }
static void e_class_blank(cJSON *r) { cJSON_ReplaceItemInArray(cJSON_GetObjectItem(r, "classes"), 2, cJSON_CreateString("")); }
static void e_num_classes(cJSON *r) { cJSON_ReplaceItemInObject(r, "num_classes", cJSON_CreateNumber(4)); }
static void e_input_size(cJSON *r) { cJSON_ReplaceItemInObject(r, "input_size", cJSON_CreateNumber(4096)); }
static void e_input_frac(cJSON *r) { cJSON_ReplaceItemInObject(r, "input_size", cJSON_CreateNumber(32.5)); }
static void e_resize(cJSON *r) { cJSON_ReplaceItemInObject(pre(r), "resize_size", cJSON_CreateNumber(16)); }
static void e_no_pre(cJSON *r) { cJSON_DeleteItemFromObject(r, "preprocessing"); }
static void e_mean_len(cJSON *r) { cJSON_DeleteItemFromArray(cJSON_GetObjectItem(pre(r), "mean"), 0); }
static void e_mean_range(cJSON *r) { cJSON_ReplaceItemInArray(cJSON_GetObjectItem(pre(r), "mean"), 0, cJSON_CreateNumber(3)); }
static void e_std_zero(cJSON *r) { cJSON_ReplaceItemInArray(cJSON_GetObjectItem(pre(r), "std"), 2, cJSON_CreateNumber(0)); }
static void e_std_type(cJSON *r) { cJSON_ReplaceItemInArray(cJSON_GetObjectItem(pre(r), "std"), 2, cJSON_CreateString("x")); }
static void e_no_kiln_version(cJSON *r) { cJSON_DeleteItemFromObject(r, "kiln_version"); }
static void e_prov_type(cJSON *r) { cJSON_ReplaceItemInObject(r, "provenance", cJSON_CreateNumber(1)); }
static void e_run_type(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "provenance"), "run_id", cJSON_CreateNumber(1)); }

static void test_validation_errors(void **state)
{
    fixture *f = *state;
    static const struct {
        void (*edit)(cJSON *);
        const char *needle;
    } cases[] = {
        {e_version, "format_version 2"},   {e_no_version, "'format_version' is missing"},
        {e_variant, "variant 'b9'"},        {e_variant_type, "'variant' must be a string"},
        {e_classes_type, "'classes' must"}, {e_classes_empty, "'classes' is empty"},
        {e_class_number, "classes[1] is not a string"},
        {e_class_dup, "classes[1] 'cat' is a duplicate"},
        {e_class_blank, "classes[2] is empty"},
        {e_num_classes, "num_classes 4 but 'classes' lists 3"},
        {e_input_size, "input_size 4096"},  {e_input_frac, "'input_size' must be an integer"},
        {e_resize, "resize_size 16"},       {e_no_pre, "'preprocessing' must be an object"},
        {e_mean_len, "'preprocessing.mean' must be 3 numbers"},
        {e_mean_range, "mean[0]"},          {e_std_zero, "std[2]"},
        {e_std_type, "'preprocessing.std[2]' is not a number"},
        {e_no_kiln_version, "'kiln_version' is missing"},
        {e_prov_type, "'provenance' must be an object"},
        {e_run_type, "'run_id' must be a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_read_error(f, cases[i].edit, cases[i].needle);
}

static void test_missing_and_malformed(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    kiln_model_info got;
    kt_expect_fail(kiln_model_info_read(f->pkg, &got, &err), &err, KILN_ENOTFOUND,
                   "no such directory");
    write_pkg(f);
    char *json = kt_path(f->pkg, "kiln-model.json");
    kt_write_file(json, "{\"format_version\": 1,", 21);
    kt_expect_fail(kiln_model_info_read(f->pkg, &got, &err), &err, KILN_EFORMAT,
                   "not valid JSON");
    kt_write_file(json, "[1]", 3);
    kt_expect_fail(kiln_model_info_read(f->pkg, &got, &err), &err, KILN_EFORMAT,
                   "not a JSON object");
    remove(json);
    kt_expect_fail(kiln_model_info_read(f->pkg, &got, &err), &err, KILN_ENOTFOUND,
                   "kiln-model.json: missing");
    free(json);
}

static void add_class(cJSON *r)
{
    cJSON_AddItemToArray(cJSON_GetObjectItem(r, "classes"), cJSON_CreateString("fox"));
    cJSON_ReplaceItemInObject(r, "num_classes", cJSON_CreateNumber(4));
}

/* The weights' head must agree with the classes; missing weights too. */
static void test_load_checks_weights(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    kiln_model_info got;
    write_pkg(f);
    edit_info(f, add_class);
    assert_null(kiln_model_load(f->pkg, f->be, &got, &err));
    assert_true(strstr(err.msg, "3 classes") && strstr(err.msg, "4 classes"));
    assert_null(got.classes);
    write_pkg(f);
    char *w = kt_path(f->pkg, "model.safetensors");
    kt_write_file(w, "garbage", 7);
    assert_null(kiln_model_load(f->pkg, f->be, &got, &err));
    assert_true(strstr(err.msg, "model.safetensors") != NULL);
    remove(w);
    assert_null(kiln_model_load(f->pkg, f->be, &got, &err));
    assert_int_equal(err.code, KILN_ENOTFOUND);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mlmodel_is_yaml, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_keeps_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_refuses_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_checks_weights, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
