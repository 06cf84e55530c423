/* tests/test_tracking_artifacts.c — the artifact proxy's functions and the
 * two listing endpoints: uploads that appear whole or not at all, unsafe
 * paths and escaping symlinks refused, reads, deletes, and the listings'
 * shapes. */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_tracking_support.h"

static void upload(kiln_tracking *t, const char *rel, const char *text)
{
    kiln_err err = {0};
    kiln_artifact_upload *u = kiln_tracking_artifact_begin(t, rel, &err);
    if (!u)
        fail_msg("begin %s: %s", rel, err.msg);
    size_t n = strlen(text), half = n / 2;
    assert_int_equal(kiln_tracking_artifact_write(u, text, half, &err), KILN_OK);
    assert_int_equal(kiln_tracking_artifact_write(u, text + half, n - half, &err), KILN_OK);
    assert_int_equal(kiln_tracking_artifact_commit(u, &err), KILN_OK);
}

static char *read_artifact(kiln_tracking *t, const char *rel)
{
    kiln_err err = {0};
    char *path = kiln_tracking_artifact_file(t, rel, &err);
    if (!path)
        fail_msg("artifact_file %s: %s", rel, err.msg);
    char *out = NULL;
    assert_int_equal(kt_run_capture(&out, "cat '%s'", path), 0);
    free(path);
    return out;
}

static int entries_in(const char *dir)
{
    char *out = NULL;
    kt_run_capture(&out, "ls -A '%s' 2>/dev/null | wc -l", dir);
    int n = atoi(out);
    free(out);
    return n;
}

static void test_upload_read_delete(void **state)
{
    tt_fixture *f = *state;
    kiln_err err = {0};
    upload(f->t, "1/abc/artifacts/model/weights.bin", "0123456789");
    char *text = read_artifact(f->t, "1/abc/artifacts/model/weights.bin");
    assert_string_equal(text, "0123456789");
    free(text);
    /* A second upload replaces the file whole. */
    upload(f->t, "1/abc/artifacts/model/weights.bin", "new");
    text = read_artifact(f->t, "1/abc/artifacts/model/weights.bin");
    assert_string_equal(text, "new");
    free(text);
    assert_null(kiln_tracking_artifact_file(f->t, "1/abc/artifacts/model", &err));
    assert_int_equal(err.code, KILN_ENOTFOUND);
    assert_null(kiln_tracking_artifact_file(f->t, "1/abc/artifacts/missing", &err));
    assert_int_equal(err.code, KILN_ENOTFOUND);
    upload(f->t, "1/abc/artifacts/model/MLmodel", "flavors: {}\n");
    assert_int_equal(kiln_tracking_artifact_delete(f->t, "1/abc/artifacts/model/MLmodel", &err),
                     KILN_OK);
    assert_null(kiln_tracking_artifact_file(f->t, "1/abc/artifacts/model/MLmodel", &err));
    /* Deleting a folder deletes what is under it. */
    assert_int_equal(kiln_tracking_artifact_delete(f->t, "1/abc", &err), KILN_OK);
    char *dir = kt_path(f->artifacts, "1");
    assert_int_equal(entries_in(dir), 0);
    free(dir);
    assert_int_equal(kiln_tracking_artifact_delete(f->t, "1/abc", &err), KILN_ENOTFOUND);
}

static void test_abort_leaves_nothing(void **state)
{
    tt_fixture *f = *state;
    kiln_err err = {0};
    kiln_artifact_upload *u = kiln_tracking_artifact_begin(f->t, "2/run/artifacts/big.bin", &err);
    assert_non_null(u);
    assert_int_equal(kiln_tracking_artifact_write(u, "partial", 7, &err), KILN_OK);
    kiln_tracking_artifact_abort(u);
    kiln_tracking_artifact_abort(NULL);
    char *two = kt_path(f->artifacts, "2");
    assert_int_equal(access(two, F_OK), -1);
    free(two);
    char *uploads = kt_path(f->artifacts, ".kiln-uploads");
    assert_int_equal(entries_in(uploads), 0);
    /* A commit that cannot publish (a folder is in the way) removes its temp file. */
    char *blocker = kt_path(f->artifacts, "3/x");
    assert_int_equal(kt_system("mkdir -p '%s/inside'", blocker), 0);
    u = kiln_tracking_artifact_begin(f->t, "3/x", &err);
    assert_non_null(u);
    assert_int_equal(kiln_tracking_artifact_write(u, "data", 4, &err), KILN_OK);
    assert_int_not_equal(kiln_tracking_artifact_commit(u, &err), KILN_OK);
    assert_int_equal(entries_in(uploads), 0);
    free(blocker);
    free(uploads);
}

static void test_unsafe_paths(void **state)
{
    tt_fixture *f = *state;
    static const char *const bad[] = {
        "",         "/etc/passwd",   "../x",          "a/../../x",     "a/../b",
        "a//b",     "a/",            "./a",           "a/./b",         "..",
        "a\\..\\b", "%2e%2e/x",      "a/%2E%2E/b",    "a%2f..%2fb",    "a%00b",
        ".kiln-uploads/x",           ".kiln-uploads",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kiln_err err = {0};
        assert_null(kiln_tracking_artifact_begin(f->t, bad[i], &err));
        if (err.code != KILN_EUNSAFE)
            fail_msg("begin '%s': %s", bad[i], kiln_code_name(err.code));
        assert_null(kiln_tracking_artifact_file(f->t, bad[i], &err));
        assert_int_equal(err.code, KILN_EUNSAFE);
        assert_int_equal(kiln_tracking_artifact_delete(f->t, bad[i], &err), KILN_EUNSAFE);
    }
    kiln_err err = {0};
    assert_null(kiln_tracking_artifact_begin(f->t, NULL, &err));
    assert_int_equal(err.code, KILN_EUNSAFE);
    /* Dots inside names are fine. */
    upload(f->t, "a/..b/c..d/.hidden", "ok");
    char *text = read_artifact(f->t, "a/..b/c..d/.hidden");
    assert_string_equal(text, "ok");
    free(text);
}

static void test_symlinks(void **state)
{
    tt_fixture *f = *state;
    kiln_err err = {0};
    char *outside = kt_path(f->dir, "outside");
    assert_int_equal(kt_system("mkdir -p '%s' && echo secret > '%s/secret'", outside, outside), 0);
    assert_int_equal(kt_system("ln -s '%s' '%s/esc'", outside, f->artifacts), 0);
    assert_null(kiln_tracking_artifact_begin(f->t, "esc/new", &err));
    assert_int_equal(err.code, KILN_EUNSAFE);
    assert_null(kiln_tracking_artifact_file(f->t, "esc/secret", &err));
    assert_int_equal(err.code, KILN_EUNSAFE);
    assert_int_equal(kiln_tracking_artifact_delete(f->t, "esc/secret", &err), KILN_EUNSAFE);
    assert_int_equal(kt_system("test -f '%s/secret'", outside), 0);
    /* A file symlink pointing out is not served either. */
    assert_int_equal(kt_system("ln -s '%s/secret' '%s/leak'", outside, f->artifacts), 0);
    assert_null(kiln_tracking_artifact_file(f->t, "leak", &err));
    assert_int_not_equal(err.code, KILN_OK);
    /* Listings leave escaping links out. */
    cJSON *r = tt_ok(f->t, "GET", "/api/2.0/mlflow-artifacts/artifacts", NULL);
    assert_null(tt_get(r, "files"));
    cJSON_Delete(r);
    /* A link that stays inside the root works. */
    upload(f->t, "real/x.txt", "inside");
    assert_int_equal(kt_system("ln -s real '%s/alias'", f->artifacts), 0);
    char *text = read_artifact(f->t, "alias/x.txt");
    assert_string_equal(text, "inside");
    free(text);
    free(outside);
}

static void test_listings(void **state)
{
    tt_fixture *f = *state;
    cJSON *c = tt_ok(f->t, "POST", TT_API "runs/create", "{}");
    const char *run = tt_str(c, "run.info.run_id");
    char rel[160];
    snprintf(rel, sizeof rel, "0/%s/artifacts/model/model.safetensors", run);
    upload(f->t, rel, "12345");
    snprintf(rel, sizeof rel, "0/%s/artifacts/metrics.json", run);
    upload(f->t, rel, "{}");
    cJSON *r = tt_ok(f->t, "GET", TT_API "artifacts/list", "{\"run_id\": \"%s\"}", run);
    assert_string_equal(tt_str(r, "root_uri"), tt_str(c, "run.info.artifact_uri"));
    assert_int_equal(tt_len(r, "files"), 2);
    static const char *const file_keys[] = {"path", "is_dir", "file_size", NULL};
    static const char *const dir_keys[] = {"path", "is_dir", NULL};
    tt_keys(tt_get(r, "files.0"), file_keys);
    assert_string_equal(tt_str(r, "files.0.path"), "metrics.json");
    assert_true(cJSON_IsFalse(tt_get(r, "files.0.is_dir")));
    assert_true(tt_num(r, "files.0.file_size") == 2);
    tt_keys(tt_get(r, "files.1"), dir_keys);
    assert_string_equal(tt_str(r, "files.1.path"), "model");
    assert_true(cJSON_IsTrue(tt_get(r, "files.1.is_dir")));
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "artifacts/list", "{\"run_id\": \"%s\", \"path\": \"model\"}",
              run);
    assert_int_equal(tt_len(r, "files"), 1);
    assert_string_equal(tt_str(r, "files.0.path"), "model/model.safetensors");
    assert_true(tt_num(r, "files.0.file_size") == 5);
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", TT_API "artifacts/list", "{\"run_id\": \"%s\", \"path\": \"nothing\"}",
              run);
    assert_int_equal(cJSON_GetArraySize(r), 1); /* root_uri only */
    cJSON_Delete(r);
    tt_err(f->t, "GET", TT_API "artifacts/list", 400, "INVALID_PARAMETER_VALUE", "Invalid path",
           "{\"run_id\": \"%s\", \"path\": \"../../..\"}", run);
    tt_err(f->t, "GET", TT_API "artifacts/list", 404, "RESOURCE_DOES_NOT_EXIST", NULL,
           "{\"run_id\": \"nope\"}");
    /* The proxy's listing answers basenames. */
    r = tt_ok(f->t, "GET", "/api/2.0/mlflow-artifacts/artifacts",
              "{\"path\": \"0/%s/artifacts/model\"}", run);
    assert_int_equal(tt_len(r, "files"), 1);
    assert_string_equal(tt_str(r, "files.0.path"), "model.safetensors");
    cJSON_Delete(r);
    r = tt_ok(f->t, "GET", "/api/2.0/mlflow-artifacts/artifacts", NULL);
    assert_int_equal(tt_len(r, "files"), 1); /* "0"; the uploads folder is hidden */
    assert_string_equal(tt_str(r, "files.0.path"), "0");
    cJSON_Delete(r);
    tt_err(f->t, "GET", "/api/2.0/mlflow-artifacts/artifacts", 400, "INVALID_PARAMETER_VALUE",
           "Invalid path", "{\"path\": \"/etc\"}");
    /* A run whose artifacts are not proxied lists nothing here. */
    char *exp = NULL;
    cJSON *e = tt_ok(f->t, "POST", TT_API "experiments/create",
                     "{\"name\": \"s3\", \"artifact_location\": \"s3://b/p\"}");
    exp = strdup(tt_str(e, "experiment_id"));
    cJSON_Delete(e);
    char *s3run = tt_create_run(f->t, exp);
    r = tt_ok(f->t, "GET", TT_API "artifacts/list", "{\"run_id\": \"%s\"}", s3run);
    assert_int_equal(cJSON_GetArraySize(r), 1);
    cJSON_Delete(r);
    free(s3run);
    free(exp);
    cJSON_Delete(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upload_read_delete, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_abort_leaves_nothing, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_unsafe_paths, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_symlinks, tt_setup, tt_teardown),
        cmocka_unit_test_setup_teardown(test_listings, tt_setup, tt_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
