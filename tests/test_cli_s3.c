/* kiln s3 and kiln data push, as a user runs them, against s3rver on loopback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/s3server.h"
#include "support/testutil.h"

typedef struct fixture {
    kt_s3server server;
    char *dir;
    char env[256]; /* the AWS_* variables every command runs with */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!kt_s3rver_path() || kt_s3server_start(&f->server) != 0) {
        printf("SKIPPED: s3rver is not available (scripts/install-deps.sh installs it)\n");
        free(f);
        return -1;
    }
    f->dir = kt_mkdtemp();
    snprintf(f->env, sizeof f->env,
             "AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_ENDPOINT_URL=%s",
             f->server.endpoint);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kt_s3server_free(&f->server);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

/* Run `kiln ARGS` with the fixture's environment; output in *out. */
static int kiln(fixture *f, char **out, const char *args)
{
    return kt_run_capture(out, "env %s %s %s", f->env, kt_kiln_bin(), args);
}

static void make_fashion_zip(const fixture *f, const char *name, const char *extra)
{
    char *out = NULL;
    int rc = kt_run_capture(&out, "%s/scripts/make-fashion-zip --out %s/%s --per-class 4 %s",
                            getenv("KILN_SOURCE_DIR"), f->dir, name, extra);
    if (rc != 0)
        fail_msg("make-fashion-zip: %s", out);
    free(out);
}

static void test_push_then_copy_down(void **state)
{
    fixture *f = *state;
    char *out = NULL, args[1024];
    make_fashion_zip(f, "good.zip", "");
    snprintf(args, sizeof args, "data push %s/good.zip s3://ml-data/fashion.zip --size 16",
             f->dir);
    assert_int_equal(kiln(f, &out, args), 0);
    assert_non_null(strstr(out, "ok: 40 images in 10 classes"));
    assert_non_null(strstr(out, "pushed"));
    free(out);
    assert_int_equal(kiln(f, &out, "s3 ls s3://ml-data/fash"), 0);
    assert_non_null(strstr(out, "s3://ml-data/fashion.zip"));
    free(out);
    snprintf(args, sizeof args, "s3 cp s3://ml-data/fashion.zip %s/", f->dir);
    char *down = kt_path(f->dir, "fashion.zip"), *src = kt_path(f->dir, "good.zip");
    assert_int_equal(kiln(f, &out, args), 0);
    free(out);
    assert_true(kt_files_equal(down, src));
    free(down);
    free(src);
}

/* A bad dataset never reaches the bucket: not even the bucket is created. */
static void test_bad_dataset_not_pushed(void **state)
{
    fixture *f = *state;
    char *out = NULL, args[1024];
    make_fashion_zip(f, "src.zip", "");
    /* Keep one class: copy only bag/ into a new zip. */
    assert_int_equal(kt_system("cd %s && /usr/bin/python3 -c \"import zipfile as z; "
                               "s = z.ZipFile('src.zip'); d = z.ZipFile('bad.zip', 'w'); "
                               "[d.writestr(i, s.read(i)) for i in s.namelist() "
                               "if i.startswith('bag/')]; d.close()\"", f->dir), 0);
    snprintf(args, sizeof args, "data push %s/bad.zip s3://ml-data/bad.zip", f->dir);
    assert_int_equal(kiln(f, &out, args), 1);
    assert_non_null(strstr(out, "only one class folder"));
    free(out);
    assert_int_equal(kiln(f, &out, "s3 ls s3://ml-data"), 1);
    assert_non_null(strstr(out, "NoSuchBucket"));
    free(out);
}

static void test_push_folder(void **state)
{
    fixture *f = *state;
    char *out = NULL, args[1024];
    make_fashion_zip(f, "src.zip", "");
    assert_int_equal(kt_system("cd %s && /usr/bin/python3 -c \"import zipfile; "
                               "zipfile.ZipFile('src.zip').extractall('folder')\"", f->dir), 0);
    snprintf(args, sizeof args, "data push %s/folder s3://ml-data/folder.zip --size 16",
             f->dir);
    assert_int_equal(kiln(f, &out, args), 0);
    assert_non_null(strstr(out, "ok: 40 images"));
    free(out);
    snprintf(args, sizeof args, "s3 cp s3://ml-data/folder.zip %s/back.zip", f->dir);
    assert_int_equal(kiln(f, &out, args), 0);
    free(out);
    snprintf(args, sizeof args, "data check %s/back.zip --size 16", f->dir);
    assert_int_equal(kiln(f, &out, args), 0);
    free(out);
}

static void test_errors(void **state)
{
    fixture *f = *state;
    char *out = NULL, args[1024];
    assert_int_equal(kiln(f, &out, "s3 mb s3://ml-data"), 0);
    free(out);
    snprintf(args, sizeof args, "s3 cp s3://ml-data/missing.zip %s/x.zip", f->dir);
    assert_int_equal(kiln(f, &out, args), 1);
    assert_non_null(strstr(out, "s3://ml-data/missing.zip: NoSuchKey"));
    free(out);
    char *x = kt_path(f->dir, "x.zip");
    struct stat st;
    assert_int_not_equal(stat(x, &st), 0);
    free(x);
    assert_int_equal(kiln(f, &out, "s3 cp a b"), 2);
    assert_non_null(strstr(out, "one local path and one s3:// URL"));
    free(out);
    assert_int_equal(kiln(f, &out, "s3 cp a s3://ml-data/ --bogus"), 2);
    free(out);
    assert_int_equal(kiln(f, &out, "s3 ls s3://Bad_Bucket"), 2);
    free(out);
    /* Refused credentials are a configuration error: status 2, like a bad flag. */
    assert_int_equal(kiln(f, &out, "s3 ls s3://ml-data --secret-key wrong --access-key NOPE"),
                     2);
    assert_non_null(strstr(out, "InvalidAccessKeyId"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_push_then_copy_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_dataset_not_pushed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
