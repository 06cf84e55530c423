/* lib/common: errors, logging, atomic files, rng, thread pool. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

#include "common/err.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/pool.h"
#include "common/rng.h"
#include "support/testutil.h"

static void test_err_set_and_wrap(void **state)
{
    kiln_err err = {0};
    assert_int_equal(kiln_err_set(&err, KILN_EFORMAT, "bad %s", "zip"), KILN_EFORMAT);
    assert_string_equal(err.msg, "bad zip");
    kiln_err_wrap(&err, "prepare %s", "a.zip");
    assert_string_equal(err.msg, "prepare a.zip: bad zip");
    assert_int_equal(err.code, KILN_EFORMAT);
    kiln_err_errno(&err, ENOENT, "cannot open %s", "x");
    assert_int_equal(err.code, KILN_EIO);
    assert_non_null(strstr(err.msg, "No such file"));
    assert_int_equal(kiln_err_set(NULL, KILN_EINVAL, "ignored"), KILN_EINVAL);
    assert_string_equal(kiln_code_name(KILN_EUNSAFE), "EUNSAFE");
    assert_string_equal(kiln_code_name(999), "EUNKNOWN");
    assert_int_equal(kiln_code_exit_status(KILN_EINVAL), 2);
    assert_int_equal(kiln_code_exit_status(KILN_EFORMAT), 1);
}

static char *log_to_string(kiln_log_format fmt, const char *msg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    kiln_logger log;
    kiln_logger_init(&log);
    log.out = mem;
    log.format = fmt;
    kiln_log_info(&log, "%s", msg);
    kiln_log_debug(&log, "hidden");
    fclose(mem);
    return buf;
}

static void test_log_formats(void **state)
{
    char *human = log_to_string(KILN_LOG_HUMAN, "hello");
    assert_non_null(strstr(human, "info  hello\n"));
    assert_null(strstr(human, "hidden"));
    free(human);
    /* A quote and a newline must stay inside one valid JSON line. */
    char *json = log_to_string(KILN_LOG_JSON, "say \"hi\"\nthere");
    assert_non_null(strstr(json, "\"level\":\"info\""));
    assert_non_null(strstr(json, "\"msg\":\"say \\\"hi\\\"\\nthere\""));
    assert_int_equal(strchr(json, '\n'), json + strlen(json) - 1);
    free(json);
    kiln_log_format f;
    kiln_err err = {0};
    assert_int_equal(kiln_log_format_parse("json", &f, &err), KILN_OK);
    assert_int_equal(f, KILN_LOG_JSON);
    assert_int_equal(kiln_log_format_parse("xml", &f, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "'xml'"));
    kiln_log_info(NULL, "a NULL logger is silent");
}

static int count_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_atomic_file(void **state)
{
    char *dir = kt_mkdtemp();
    char *path = kt_path(dir, "out.bin");
    kiln_err err = {0};
    assert_int_equal(kiln_write_file_atomic(path, "first", 5, &err), KILN_OK);
    /* An aborted rewrite leaves the old content and no temporary file. */
    kiln_atomic_file *f = kiln_atomic_open(path, &err);
    assert_non_null(f);
    fputs("partial", kiln_atomic_stream(f));
    assert_int_equal(count_entries(dir), 2);
    kiln_atomic_abort(f);
    assert_int_equal(count_entries(dir), 1);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(kiln_read_file(path, 0, &data, &len, &err), KILN_OK);
    assert_int_equal(len, 5);
    assert_string_equal(data, "first");
    free(data);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    /* Read limit and missing files. */
    assert_int_equal(kiln_read_file(path, 2, &data, &len, &err), KILN_ELIMIT);
    char *missing = kt_path(dir, "nope/x");
    assert_int_equal(kiln_write_file_atomic(missing, "x", 1, &err), KILN_EIO);
    assert_non_null(strstr(err.msg, "nope/x"));
    free(missing);
    free(path);
    kt_rmtree_free(dir);
}

static void test_mkdir_and_sha256(void **state)
{
    char *dir = kt_mkdtemp();
    char *deep = kt_path(dir, "a/b/c");
    char *file = kt_path(dir, "abc.txt");
    kiln_err err = {0};
    assert_int_equal(kiln_mkdir_p(deep, &err), KILN_OK);
    assert_true(kiln_is_dir(deep));
    assert_int_equal(kiln_mkdir_p(deep, &err), KILN_OK);
    kt_write_file(file, "abc", 3);
    char hex[65];
    assert_int_equal(kiln_sha256_file(file, hex, &err), KILN_OK);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* A file in the way of a directory is an error, not a crash. */
    char *blocked = kt_path(dir, "abc.txt/sub");
    assert_int_not_equal(kiln_mkdir_p(blocked, &err), KILN_OK);
    free(blocked);
    free(deep);
    free(file);
    kt_rmtree_free(dir);
}

/* kiln_mkdir_parent makes the directories above a file, not the file. */
static void test_mkdir_parent(void **state)
{
    char *dir = kt_mkdtemp();
    char *file = kt_path(dir, "x/y/z/model.bin");
    char *parent = kt_path(dir, "x/y/z");
    kiln_err err = {0};
    assert_int_equal(kiln_mkdir_parent(file, &err), KILN_OK);
    assert_true(kiln_is_dir(parent));
    assert_false(kiln_is_dir(file));
    assert_false(kiln_is_file(file));
    assert_int_equal(kiln_mkdir_parent(file, &err), KILN_OK); /* already there */
    /* A bare name's directory is ".", which exists. */
    assert_int_equal(kiln_mkdir_parent("model.bin", &err), KILN_OK);
    /* A file where a directory must go is an error naming it. */
    char *blocker = kt_path(dir, "plain");
    kt_write_file(blocker, "x", 1);
    char *under = kt_path(dir, "plain/sub/model.bin");
    assert_int_not_equal(kiln_mkdir_parent(under, &err), KILN_OK);
    assert_non_null(strstr(err.msg, blocker));
    assert_false(kiln_is_dir(under));
    free(under);
    free(blocker);
    free(parent);
    free(file);
    kt_rmtree_free(dir);
}

static void test_rng_deterministic(void **state)
{
    kiln_rng a, b;
    kiln_rng_derive(&a, 42, 1, 2);
    kiln_rng_derive(&b, 42, 1, 2);
    for (int i = 0; i < 100; i++)
        assert_int_equal(kiln_rng_next(&a), kiln_rng_next(&b));
    kiln_rng_derive(&b, 42, 1, 3);
    assert_int_not_equal(kiln_rng_next(&a), kiln_rng_next(&b));
    /* Uniform in [0,1) with a sane mean; shuffle is a permutation. */
    double sum = 0;
    for (int i = 0; i < 10000; i++) {
        double u = kiln_rng_uniform(&a);
        assert_true(u >= 0 && u < 1);
        sum += u;
    }
    assert_true(sum / 10000 > 0.48 && sum / 10000 < 0.52);
    uint32_t v[100];
    int seen[100] = {0};
    for (uint32_t i = 0; i < 100; i++)
        v[i] = i;
    kiln_rng_shuffle_u32(&a, v, 100);
    int moved = 0;
    for (uint32_t i = 0; i < 100; i++) {
        seen[v[i]]++;
        moved += v[i] != i;
    }
    for (int i = 0; i < 100; i++)
        assert_int_equal(seen[i], 1);
    assert_true(moved > 50);
}

typedef struct {
    int *hits;
    int fail_at;
} pool_ctx;

static int mark(void *ctx, size_t i, int worker)
{
    pool_ctx *c = ctx;
    if ((int)i == c->fail_at)
        return 7;
    __atomic_add_fetch(&c->hits[i], 1, __ATOMIC_RELAXED);
    return 0;
}

static void test_pool(void **state)
{
    kiln_err err = {0};
    for (int threads = 1; threads <= 4; threads++) {
        kiln_pool *p = kiln_pool_create(threads, &err);
        assert_non_null(p);
        for (int round = 0; round < 20; round++) {
            int hits[1000] = {0};
            pool_ctx c = {hits, -1};
            assert_int_equal(kiln_pool_run(p, 1000, mark, &c), 0);
            for (int i = 0; i < 1000; i++)
                assert_int_equal(hits[i], 1);
        }
        int hits[100] = {0};
        pool_ctx c = {hits, 50};
        assert_int_equal(kiln_pool_run(p, 100, mark, &c), 7);
        assert_int_equal(kiln_pool_run(p, 0, mark, &c), 0);
        kiln_pool_destroy(p);
    }
    assert_null(kiln_pool_create(0, &err));
    assert_int_equal(err.code, KILN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_set_and_wrap),
        cmocka_unit_test(test_log_formats),
        cmocka_unit_test(test_atomic_file),
        cmocka_unit_test(test_mkdir_and_sha256),
        cmocka_unit_test(test_mkdir_parent),
        cmocka_unit_test(test_rng_deterministic),
        cmocka_unit_test(test_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
