/* tests/test_zip.c — lib/data/zip: listing, reading, and every way a zip
 * is refused. The zips are built here with libzip (support/zipbuild). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/zip.h"
#include "support/testutil.h"
#include "support/zipbuild.h"

typedef struct fixture {
    char *dir;
    char *zip; /* <dir>/t.zip */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = kt_mkdtemp();
    f->zip = kt_path(f->dir, "t.zip");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    free(f->zip);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

/* Build `entries` and open the result; it must fail with `code`, and the
 * message must name the zip and contain `needle` (the entry, usually). */
static void expect_open_fails(const fixture *f, const kt_zip_entry *entries,
                              const kiln_zip_limits *limits, kiln_code code, const char *needle)
{
    kiln_err err = {0};
    kt_zip_build(f->zip, entries);
    kiln_zip *z = kiln_zip_open(f->zip, limits, &err);
    assert_null(z);
    if (err.code != code || !strstr(err.msg, f->zip) || !strstr(err.msg, needle))
        fail_msg("want %s with '%s', got %s: %s", kiln_code_name(code), needle,
                 kiln_code_name(err.code), err.msg);
    /* The same bytes from memory fail the same way. */
    size_t len;
    uint8_t *buf = kt_read_all(f->zip, &len);
    kiln_err_clear(&err);
    assert_null(kiln_zip_open_buffer(buf, len, limits, &err));
    assert_int_equal(err.code, code);
    assert_non_null(strstr(err.msg, needle));
    free(buf);
}

static void expect_read(kiln_zip *z, size_t i, const char *want)
{
    kiln_err err = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    if (kiln_zip_read(z, i, &data, &len, &err) != KILN_OK)
        fail_msg("read %zu: %s", i, err.msg);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(data, want, len);
    free(data);
}

/* ---------------- good zips ---------------- */

static const kt_zip_entry good[] = {
    {.name = "cats", .is_dir = 1},
    {.name = "cats/a.jpg", .data = "AAAA", .len = 4},
    {.name = "cats/sub/b.jpg", .data = "bbbbbbbbbbbbbbbbbbbbbbbb", .len = 24},
    {.name = "dogs/c.png", .data = "png!", .len = 4, .store = 1},
    {.name = "empty.txt", .data = NULL, .len = 0},
    {0},
};

static void check_good(kiln_zip *z)
{
    assert_int_equal(kiln_zip_count(z), 5);
    const char *names[] = {"cats", "cats/a.jpg", "cats/sub/b.jpg", "dogs/c.png", "empty.txt"};
    for (size_t i = 0; i < 5; i++) {
        const kiln_zip_entry *e = kiln_zip_entry_at(z, i);
        assert_string_equal(e->name, names[i]);
        assert_int_equal(e->is_dir, i == 0);
    }
    assert_int_equal(kiln_zip_entry_at(z, 2)->size, 24);
    assert_int_equal(kiln_zip_entry_at(z, 3)->comp_size, 4);
    assert_null(kiln_zip_entry_at(z, 5));
    expect_read(z, 1, "AAAA");
    expect_read(z, 2, "bbbbbbbbbbbbbbbbbbbbbbbb");
    expect_read(z, 3, "png!");
    expect_read(z, 4, "");
    expect_read(z, 1, "AAAA"); /* again: reads are independent */

    kiln_err err = {0};
    uint8_t *data = (uint8_t *)"x";
    size_t len = 7;
    assert_int_equal(kiln_zip_read(z, 0, &data, &len, &err), KILN_EINVAL);
    assert_non_null(strstr(err.msg, "cats"));
    assert_null(data);
    assert_int_equal(kiln_zip_read(z, 5, &data, &len, &err), KILN_EINVAL);
}

static void test_good_nested(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    kt_zip_build(f->zip, good);
    kiln_zip *z = kiln_zip_open(f->zip, NULL, &err);
    if (!z)
        fail_msg("%s", err.msg);
    check_good(z);
    kiln_zip_close(z);
}

static void test_open_buffer(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    size_t len;
    kt_zip_build(f->zip, good);
    uint8_t *buf = kt_read_all(f->zip, &len);
    kiln_zip *z = kiln_zip_open_buffer(buf, len, NULL, &err);
    if (!z)
        fail_msg("%s", err.msg);
    check_good(z);
    kiln_zip_close(z);
    free(buf);
}

static void test_normalise(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    const kt_zip_entry entries[] = {
        {.name = "./", .is_dir = 1},
        {.name = "a\\b\\c.jpg", .data = "c", .len = 1},
        {.name = "./x/./y.jpg", .data = "y", .len = 1},
        {.name = "p//q///r.jpg", .data = "r", .len = 1},
        {.name = "w\\", .data = NULL, .len = 0},
        {.name = "././/", .data = NULL, .len = 0},
        {.name = "v/./", .is_dir = 1},
        {0},
    };
    kt_zip_build(f->zip, entries);
    kiln_zip *z = kiln_zip_open(f->zip, NULL, &err);
    if (!z)
        fail_msg("%s", err.msg);
    assert_int_equal(kiln_zip_count(z), 5); /* "./" and "././/" dropped */
    assert_string_equal(kiln_zip_entry_at(z, 0)->name, "a/b/c.jpg");
    assert_string_equal(kiln_zip_entry_at(z, 1)->name, "x/y.jpg");
    assert_string_equal(kiln_zip_entry_at(z, 2)->name, "p/q/r.jpg");
    assert_string_equal(kiln_zip_entry_at(z, 3)->name, "w");
    assert_true(kiln_zip_entry_at(z, 3)->is_dir);
    assert_string_equal(kiln_zip_entry_at(z, 4)->name, "v");
    assert_true(kiln_zip_entry_at(z, 4)->is_dir);
    /* Indices skip the dropped entry: each reads its own data. */
    expect_read(z, 0, "c");
    expect_read(z, 1, "y");
    expect_read(z, 2, "r");
    kiln_zip_close(z);
}

static void test_empty_zip(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    size_t len;
    kt_zip_write_empty(f->zip);
    kiln_zip *z = kiln_zip_open(f->zip, NULL, &err);
    if (!z)
        fail_msg("%s", err.msg);
    assert_int_equal(kiln_zip_count(z), 0);
    assert_null(kiln_zip_entry_at(z, 0));
    kiln_zip_close(z);
    uint8_t *buf = kt_read_all(f->zip, &len);
    z = kiln_zip_open_buffer(buf, len, NULL, &err);
    assert_non_null(z);
    assert_int_equal(kiln_zip_count(z), 0);
    kiln_zip_close(z);
    free(buf);
}

/* ---------------- unsafe entries ---------------- */

static void test_zip_slip(void **state)
{
    const char *names[] = {"../x", "a/../../x", "cats/..", "a\\..\\..\\x", "ok/../x"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const kt_zip_entry entries[] = {
            {.name = "cats/fine.jpg", .data = "f", .len = 1},
            {.name = names[i], .data = "evil", .len = 4},
            {0},
        };
        expect_open_fails(*state, entries, NULL, KILN_EUNSAFE, names[i]);
    }
}

static void test_absolute(void **state)
{
    const char *names[] = {"/etc/x", "C:\\x", "C:/x", "c:x", "\\\\server\\share\\x", "\\x"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const kt_zip_entry entries[] = {{.name = names[i], .data = "evil", .len = 4}, {0}};
        expect_open_fails(*state, entries, NULL, KILN_EUNSAFE, names[i]);
    }
}

static void test_symlink(void **state)
{
    const kt_zip_entry entries[] = {
        {.name = "cats/a.jpg", .data = "a", .len = 1, .unix_mode = S_IFREG | 0644},
        {.name = "cats/link.jpg", .data = "/etc/passwd", .len = 11, .unix_mode = S_IFLNK | 0777},
        {0},
    };
    expect_open_fails(*state, entries, NULL, KILN_EUNSAFE, "cats/link.jpg");
}

static void test_encrypted(void **state)
{
    const kt_zip_entry entries[] = {
        {.name = "cats/a.jpg", .data = "a", .len = 1},
        {.name = "cats/secret.jpg", .data = "hidden", .len = 6, .password = "hunter2"},
        {0},
    };
    expect_open_fails(*state, entries, NULL, KILN_EUNSUPPORTED, "cats/secret.jpg");
}

/* Names are attacker-chosen: control bytes must not reach the message (a
 * fake log line here; libzip already turns most others into CP437 glyphs). */
static void test_message_escapes(void **state)
{
    const kt_zip_entry entries[] = {{.name = "../a\r\nFAKE", .data = "x", .len = 1}, {0}};
    expect_open_fails(*state, entries, NULL, KILN_EUNSAFE, "../a\\x0d\\x0aFAKE");
}

/* ---------------- limits ---------------- */

static void test_ratio_bomb(void **state)
{
    fixture *f = *state;
    size_t n = 20u << 20;
    uint8_t *zeros = calloc(1, n);
    const kt_zip_entry entries[] = {
        {.name = "cats/a.jpg", .data = "a", .len = 1},
        {.name = "cats/zeros.jpg", .data = zeros, .len = n},
        {0},
    };
    expect_open_fails(f, entries, NULL, KILN_ELIMIT, "cats/zeros.jpg");
    /* It was the ratio: allowed a higher one, the same zip opens and reads. */
    kiln_zip_limits l;
    kiln_err err = {0};
    kiln_zip_limits_default(&l);
    l.max_ratio = 1e6;
    kiln_zip *z = kiln_zip_open(f->zip, &l, &err);
    if (!z)
        fail_msg("%s", err.msg);
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(kiln_zip_read(z, 1, &data, &len, &err), KILN_OK);
    assert_int_equal(len, n);
    assert_memory_equal(data, zeros, n);
    free(data);
    kiln_zip_close(z);
    free(zeros);
}

static void test_small_entries_exempt_from_ratio(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    static uint8_t zeros[64 << 10];
    const kt_zip_entry entries[] = {{.name = ".DS_Store", .data = zeros, .len = sizeof zeros}, {0}};
    kt_zip_build(f->zip, entries);
    kiln_zip *z = kiln_zip_open(f->zip, NULL, &err);
    if (!z)
        fail_msg("%s", err.msg);
    assert_true(kiln_zip_entry_at(z, 0)->size > 200 * kiln_zip_entry_at(z, 0)->comp_size);
    kiln_zip_close(z);
}

static void test_too_many_entries(void **state)
{
    kt_zip_entry entries[12] = {0};
    char names[11][16];
    for (int i = 0; i < 11; i++) {
        snprintf(names[i], sizeof names[i], "c/%d.jpg", i);
        entries[i] = (kt_zip_entry){.name = names[i], .data = "x", .len = 1};
    }
    kiln_zip_limits l;
    kiln_zip_limits_default(&l);
    l.max_entries = 10;
    expect_open_fails(*state, entries, &l, KILN_ELIMIT, "11 entries");
}

static void test_entry_too_big(void **state)
{
    static uint8_t data[5000];
    const kt_zip_entry entries[] = {
        {.name = "c/small.jpg", .data = data, .len = 10},
        {.name = "c/big.jpg", .data = data, .len = sizeof data},
        {0},
    };
    kiln_zip_limits l;
    kiln_zip_limits_default(&l);
    l.max_entry_bytes = 4096;
    expect_open_fails(*state, entries, &l, KILN_ELIMIT, "c/big.jpg");
}

static void test_total_too_big(void **state)
{
    static uint8_t data[1000];
    const kt_zip_entry entries[] = {
        {.name = "c/1.jpg", .data = data, .len = sizeof data},
        {.name = "c/2.jpg", .data = data, .len = sizeof data},
        {.name = "c/3.jpg", .data = data, .len = sizeof data},
        {0},
    };
    kiln_zip_limits l;
    kiln_zip_limits_default(&l);
    l.max_total_bytes = 2500;
    expect_open_fails(*state, entries, &l, KILN_ELIMIT, "c/3.jpg");
}

/* A zip that declares 100 bytes but inflates to 1 MiB passes every check
 * at open; the read must stop it. */
static void test_lying_size_stopped_in_read(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    size_t n = 1u << 20;
    uint8_t *zeros = calloc(1, n);
    const kt_zip_entry entries[] = {
        {.name = "c/ok.jpg", .data = "ok", .len = 2},
        {.name = "c/liar.jpg", .data = zeros, .len = n},
        {0},
    };
    kt_zip_build(f->zip, entries);
    kt_zip_patch_size(f->zip, "c/liar.jpg", 100);
    kiln_zip_limits l;
    kiln_zip_limits_default(&l);
    l.max_entry_bytes = 1000;
    kiln_zip *z = kiln_zip_open(f->zip, &l, &err);
    if (!z)
        fail_msg("%s", err.msg);
    assert_int_equal(kiln_zip_entry_at(z, 1)->size, 100);
    expect_read(z, 0, "ok");
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(kiln_zip_read(z, 1, &data, &len, &err), KILN_ELIMIT);
    assert_null(data);
    assert_non_null(strstr(err.msg, "c/liar.jpg"));
    assert_non_null(strstr(err.msg, f->zip));
    kiln_zip_close(z);
    free(zeros);
}

static void test_bad_limits(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    kiln_zip_limits l;
    kiln_zip_limits_default(&l);
    l.max_ratio = 0;
    kt_zip_build(f->zip, good);
    assert_null(kiln_zip_open(f->zip, &l, &err));
    assert_int_equal(err.code, KILN_EINVAL);
}

/* ---------------- broken files ---------------- */

static void test_truncated(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    size_t len;
    kt_zip_build(f->zip, good);
    uint8_t *buf = kt_read_all(f->zip, &len);
    assert_int_equal(truncate(f->zip, (off_t)(len / 2)), 0);
    assert_null(kiln_zip_open(f->zip, NULL, &err));
    assert_int_equal(err.code, KILN_EFORMAT);
    assert_non_null(strstr(err.msg, "truncated or corrupt"));
    assert_non_null(strstr(err.msg, f->zip));
    assert_null(kiln_zip_open_buffer(buf, len / 2, NULL, &err));
    assert_int_equal(err.code, KILN_EFORMAT);
    assert_non_null(strstr(err.msg, "truncated or corrupt"));
    free(buf);
}

static void test_corrupt_data(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    size_t len;
    const kt_zip_entry entries[] = {
        {.name = "c/a.jpg", .data = "0123456789", .len = 10, .store = 1},
        {0},
    };
    kt_zip_build(f->zip, entries);
    uint8_t *buf = kt_read_all(f->zip, &len);
    buf[kt_zip_data_offset(buf, len, "c/a.jpg") + 3] ^= 0xff;
    kiln_zip *z = kiln_zip_open_buffer(buf, len, NULL, &err);
    if (!z)
        fail_msg("%s", err.msg);
    uint8_t *data = NULL;
    size_t n = 0;
    assert_int_equal(kiln_zip_read(z, 0, &data, &n, &err), KILN_EFORMAT);
    assert_non_null(strstr(err.msg, "c/a.jpg"));
    assert_null(data);
    kiln_zip_close(z);
    free(buf);
}

static void test_not_a_zip(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    const char text[] = "just some text, not a zip at all\n";
    kt_write_file(f->zip, text, sizeof text - 1);
    assert_null(kiln_zip_open(f->zip, NULL, &err));
    assert_int_equal(err.code, KILN_EFORMAT);
    assert_non_null(strstr(err.msg, "not a zip archive"));
    assert_non_null(strstr(err.msg, f->zip));
    assert_null(kiln_zip_open_buffer(text, sizeof text - 1, NULL, &err));
    assert_int_equal(err.code, KILN_EFORMAT);
    assert_non_null(strstr(err.msg, "not a zip archive"));
}

static void test_empty_file(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    kt_write_file(f->zip, "", 0);
    assert_null(kiln_zip_open(f->zip, NULL, &err));
    assert_int_equal(err.code, KILN_EFORMAT);
    assert_null(kiln_zip_open_buffer("", 0, NULL, &err));
    assert_int_equal(err.code, KILN_EFORMAT);
}

static void test_missing_file(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    assert_null(kiln_zip_open(f->zip, NULL, &err));
    assert_int_equal(err.code, KILN_ENOTFOUND);
    assert_non_null(strstr(err.msg, f->zip));
    assert_null(kiln_zip_open(f->dir, NULL, &err));
    assert_int_equal(err.code, KILN_EINVAL);
}

/* ---------------- the reader never writes ---------------- */

static size_t count_dir(const char *dir)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void test_no_writes(void **state)
{
    fixture *f = *state;
    kiln_err err = {0};
    size_t before_len, after_len;
    struct stat before, after;
    kt_zip_build(f->zip, good);
    uint8_t *bytes = kt_read_all(f->zip, &before_len);
    assert_int_equal(stat(f->zip, &before), 0);
    kiln_zip *z = kiln_zip_open(f->zip, NULL, &err);
    assert_non_null(z);
    for (size_t i = 1; i < kiln_zip_count(z); i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        assert_int_equal(kiln_zip_read(z, i, &data, &len, &err), KILN_OK);
        free(data);
    }
    kiln_zip_close(z);
    assert_int_equal(stat(f->zip, &after), 0);
    assert_int_equal(count_dir(f->dir), 1);
    assert_int_equal(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
    assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
    uint8_t *again = kt_read_all(f->zip, &after_len);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(bytes, again, after_len);
    free(bytes);
    free(again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_nested, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_normalise, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_zip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_slip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_absolute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encrypted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratio_bomb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_entries_exempt_from_ratio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_total_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lying_size_stopped_in_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_zip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_writes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
