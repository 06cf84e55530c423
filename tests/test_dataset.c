/* tests/test_dataset.c — lib/data shards, manifest.json and kiln_dataset:
 * round trips, and every way a damaged dataset is refused. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "data/dataset.h"
#include "support/dsbuild.h"
#include "support/testutil.h"
#include "support/zipbuild.h"


static void expect_err(const kiln_err *err, kiln_code code, const char *needle)
{
    if (err->code != code || !strstr(err->msg, needle))
        fail_msg("want %s with '%s', got %s: %s", kiln_code_name(code), needle,
                 kiln_code_name(err->code), err->msg);
}

/* Number of entries in `dir` (without . and ..) whose name contains `part`. */
static int count_entries(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    assert_non_null(d);
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, part))
            n++;
    closedir(d);
    return n;
}

/* Image i of a 3x5 shard: every byte depends on i and its offset. */
static void pattern(uint32_t i, uint8_t *px, size_t n)
{
    for (size_t k = 0; k < n; k++)
        px[k] = (uint8_t)(i * 31 + k * 7);
}

static void write_shard(const char *path, uint32_t h, uint32_t w, uint32_t count)
{
    kiln_err err = {0};
    size_t n = (size_t)h * w * 3;
    uint8_t *px = malloc(n);
    kiln_shard_writer *sw = kiln_shard_writer_open(path, h, w, &err);
    if (!sw)
        fail_msg("%s", err.msg);
    for (uint32_t i = 0; i < count; i++) {
        pattern(i, px, n);
        assert_int_equal(kiln_shard_writer_add(sw, px, i * 3 + 1, &err), KILN_OK);
        assert_int_equal(kiln_shard_writer_count(sw), i + 1);
    }
    if (kiln_shard_writer_commit(sw, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    free(px);
}

/* ---------------- shards ---------------- */

static void test_shard_round_trip(void **state)
{
    const char *dir = *state;
    char *path = kt_path(dir, "a.kshard");
    kiln_err err = {0};
    uint8_t want[3 * 5 * 3];
    write_shard(path, 3, 5, 7);
    assert_int_equal(count_entries(dir, ".tmp."), 0);
    kiln_shard *s = kiln_shard_open(path, &err);
    if (!s)
        fail_msg("%s", err.msg);
    assert_int_equal(kiln_shard_count(s), 7);
    assert_int_equal(kiln_shard_height(s), 3);
    assert_int_equal(kiln_shard_width(s), 5);
    for (uint32_t i = 0; i < 7; i++) {
        pattern(i, want, sizeof want);
        assert_memory_equal(kiln_shard_pixels(s, i), want, sizeof want);
        assert_int_equal(kiln_shard_label(s, i), i * 3 + 1);
    }
    kiln_shard_close(s);
    free(path);
}

static void test_shard_empty_round_trip(void **state)
{
    const char *dir = *state;
    char *path = kt_path(dir, "empty.kshard");
    kiln_err err = {0};
    write_shard(path, 2, 2, 0);
    kiln_shard *s = kiln_shard_open(path, &err);
    assert_non_null(s);
    assert_int_equal(kiln_shard_count(s), 0);
    kiln_shard_close(s);
    free(path);
}

/* A commit that cannot land (the destination is a directory) fails and
 * leaves neither a shard nor its temporary file. */
static void test_shard_commit_failure_leaves_nothing(void **state)
{
    const char *dir = *state;
    char *path = kt_path(dir, "b.kshard");
    char *inner = kt_path(path, "keep");
    kiln_err err = {0};
    uint8_t px[2 * 2 * 3] = {0};
    kiln_shard_writer *w = kiln_shard_writer_open(path, 2, 2, &err);
    assert_non_null(w);
    assert_int_equal(kiln_shard_writer_add(w, px, 0, &err), KILN_OK);
    assert_int_equal(mkdir(path, 0755), 0);
    kt_write_file(inner, "x", 1);
    assert_int_not_equal(kiln_shard_writer_commit(w, &err), KILN_OK);
    assert_non_null(strstr(err.msg, "b.kshard"));
    assert_int_equal(count_entries(dir, ".tmp."), 0);
    assert_int_equal(kiln_is_file(path), 0);
    free(inner);
    free(path);
}

static void test_shard_abort_leaves_nothing(void **state)
{
    const char *dir = *state;
    char *path = kt_path(dir, "c.kshard");
    kiln_err err = {0};
    uint8_t px[4 * 4 * 3] = {0};
    kiln_shard_writer *w = kiln_shard_writer_open(path, 4, 4, &err);
    assert_non_null(w);
    assert_int_equal(kiln_shard_writer_add(w, px, 1, &err), KILN_OK);
    kiln_shard_writer_abort(w);
    assert_int_equal(count_entries(dir, ""), 0);
    free(path);
}

static void test_shard_writer_bad_size(void **state)
{
    const char *dir = *state;
    char *path = kt_path(dir, "d.kshard");
    kiln_err err = {0};
    assert_null(kiln_shard_writer_open(path, 0, 4, &err));
    expect_err(&err, KILN_EINVAL, "bad image size");
    assert_int_equal(count_entries(dir, ""), 0);
    free(path);
}

static void expect_shard_refused(const char *path, const char *needle)
{
    kiln_err err = {0};
    assert_null(kiln_shard_open(path, &err));
    expect_err(&err, KILN_EFORMAT, needle);
    assert_non_null(strstr(err.msg, path));
}

static void test_shard_truncated(void **state)
{
    const char *dir = *state;
    char *path = kt_path(dir, "t.kshard");
    write_shard(path, 4, 4, 3);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - 1), 0);
    expect_shard_refused(path, "truncated");
    assert_int_equal(truncate(path, 20), 0); /* shorter than the header */
    expect_shard_refused(path, "bad magic");
    assert_int_equal(truncate(path, 0), 0);
    expect_shard_refused(path, "bad magic");
    free(path);
}

static void test_shard_bad_magic_and_header(void **state)
{
    const char *dir = *state;
    char *path = kt_path(dir, "m.kshard");
    size_t len;
    write_shard(path, 2, 2, 2);
    uint8_t *buf = kt_read_all(path, &len);
    buf[7] = '2';
    kt_write_file(path, buf, len);
    expect_shard_refused(path, "bad magic");
    buf[7] = '1';
    buf[20] = 4; /* 4 channels */
    kt_write_file(path, buf, len);
    expect_shard_refused(path, "bad shard header");
    buf[20] = 3;
    buf[8] = 200; /* count far beyond the data */
    kt_write_file(path, buf, len);
    expect_shard_refused(path, "truncated");
    free(buf);
    free(path);
}

static void test_shard_missing(void **state)
{
    const char *dir = *state;
    char *path = kt_path(dir, "nope.kshard");
    kiln_err err = {0};
    assert_null(kiln_shard_open(path, &err));
    expect_err(&err, KILN_EIO, "nope.kshard");
    free(path);
}

/* ---------------- manifest ---------------- */

static char *xdup(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

/* Every field set to a value other than its default. */
static void full_manifest(kiln_manifest *m)
{
    static const char *const classes[] = {"cat", "dog", "zebra finch"};
    memset(m, 0, sizeof *m);
    m->format_version = 1;
    m->kiln_version = xdup("9.8.7");
    m->image_size = 96;
    m->n_classes = 3;
    m->classes = calloc(3, sizeof *m->classes);
    for (int c = 0; c < 3; c++) {
        m->classes[c] = xdup(classes[c]);
        m->mean[c] = 0.1 * (c + 1) + 1e-9;
        m->std[c] = 0.3 / (c + 1);
    }
    m->normalization = xdup("dataset");
    m->val_fraction = 0.15;
    m->test_fraction = 0.05;
    m->seed = UINT64_MAX - 12; /* beyond a double's 53 bits */
    m->source_path = xdup("/data/pets.zip");
    m->source_sha256 = xdup("ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01");
    m->source_bytes = 123456789012ULL;
    for (int s = 0; s < KILN_SPLIT_COUNT; s++) {
        kiln_manifest_split *sp = &m->splits[s];
        sp->per_class = calloc(3, sizeof *sp->per_class);
        sp->n_shards = (size_t)s + 1;
        sp->shards = calloc(sp->n_shards, sizeof *sp->shards);
        for (size_t i = 0; i < sp->n_shards; i++) {
            char name[64];
            snprintf(name, sizeof name, "%s-%05zu.kshard", kiln_split_name(s), i);
            sp->shards[i].file = xdup(name);
            sp->shards[i].count = (uint32_t)(10 * s + i + 1);
            sp->count += sp->shards[i].count;
        }
        for (int c = 0; c < 3; c++)
            sp->per_class[c] = (uint32_t)(c + s);
    }
    m->n_skipped = 2;
    m->skipped = calloc(2, sizeof *m->skipped);
    m->skipped[0] = (kiln_manifest_skip){xdup("cat/bad.jpg"), xdup("truncated JPEG")};
    m->skipped[1] = (kiln_manifest_skip){xdup("dog/x.gif"), xdup("not a JPEG or PNG")};
    m->n_ignored = 5;
}

/* cJSON 1.7 prints a double with 15 digits whenever that reads back
 * within an epsilon, so a value can come back one ulp off. */
static void assert_close(double a, double b)
{
    if (!(fabs(a - b) <= 2 * DBL_EPSILON * fabs(a)))
        fail_msg("%.17g came back as %.17g", a, b);
}

static void compare_manifests(const kiln_manifest *a, const kiln_manifest *b)
{
    assert_int_equal(a->format_version, b->format_version);
    assert_string_equal(a->kiln_version, b->kiln_version);
    assert_int_equal(a->image_size, b->image_size);
    assert_int_equal(a->n_classes, b->n_classes);
    for (size_t c = 0; c < a->n_classes; c++)
        assert_string_equal(a->classes[c], b->classes[c]);
    for (int c = 0; c < 3; c++) {
        assert_close(a->mean[c], b->mean[c]);
        assert_close(a->std[c], b->std[c]);
    }
    assert_string_equal(a->normalization, b->normalization);
    assert_close(a->val_fraction, b->val_fraction);
    assert_close(a->test_fraction, b->test_fraction);
    assert_true(a->seed == b->seed);
    assert_string_equal(a->source_path, b->source_path);
    assert_string_equal(a->source_sha256, b->source_sha256);
    assert_true(a->source_bytes == b->source_bytes);
    for (int s = 0; s < KILN_SPLIT_COUNT; s++) {
        const kiln_manifest_split *x = &a->splits[s], *y = &b->splits[s];
        assert_int_equal(x->count, y->count);
        assert_int_equal(x->n_shards, y->n_shards);
        for (size_t c = 0; c < a->n_classes; c++)
            assert_int_equal(x->per_class[c], y->per_class[c]);
        for (size_t i = 0; i < x->n_shards; i++) {
            assert_string_equal(x->shards[i].file, y->shards[i].file);
            assert_int_equal(x->shards[i].count, y->shards[i].count);
        }
    }
    assert_int_equal(a->n_skipped, b->n_skipped);
    for (size_t i = 0; i < a->n_skipped; i++) {
        assert_string_equal(a->skipped[i].entry, b->skipped[i].entry);
        assert_string_equal(a->skipped[i].reason, b->skipped[i].reason);
    }
    assert_true(a->n_ignored == b->n_ignored);
}

static void test_manifest_round_trip(void **state)
{
    const char *dir = *state;
    kiln_manifest m, back;
    kiln_err err = {0};
    full_manifest(&m);
    if (kiln_manifest_write(dir, &m, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(count_entries(dir, ".tmp."), 0);
    if (kiln_manifest_read(dir, &back, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    compare_manifests(&m, &back);
    kiln_manifest_free(&m);
    kiln_manifest_free(&back);
}

typedef void (*json_edit)(cJSON *root);

/* Write the full manifest, apply `edit` to its JSON, and expect the read
 * to fail with `code` and a message holding `needle`. */
static void expect_manifest_refused(const char *dir, json_edit edit, kiln_code code,
                                    const char *needle)
{
    kiln_manifest m;
    kiln_err err = {0};
    full_manifest(&m);
    assert_int_equal(kiln_manifest_write(dir, &m, &err), KILN_OK);
    kiln_manifest_free(&m);
    char *path = kt_path(dir, "manifest.json");
    size_t len;
    char *text = (char *)kt_read_all(path, &len);
    cJSON *root = cJSON_ParseWithLength(text, len);
    assert_non_null(root);
    edit(root);
    char *out = cJSON_Print(root);
    kt_write_file(path, out, strlen(out));
    assert_int_equal(kiln_manifest_read(dir, &m, &err), code);
    expect_err(&err, code, needle);
    assert_null(m.classes); /* freed and zeroed on failure */
    cJSON_free(out);
    cJSON_Delete(root);
    free(text);
    free(path);
}

static cJSON *train_split(cJSON *root)
{
    return cJSON_GetObjectItem(cJSON_GetObjectItem(root, "splits"), "train");
}

static void edit_size_string(cJSON *r)
{
    cJSON_ReplaceItemInObject(r, "image_size", cJSON_CreateString("96"));
}
static void edit_no_classes(cJSON *r)
{
    cJSON_DeleteItemFromObject(r, "classes");
}
static void edit_class_number(cJSON *r)
{
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(r, "classes"), 1, cJSON_CreateNumber(3));
}
static void edit_mean_short(cJSON *r)
{
    cJSON_DeleteItemFromArray(cJSON_GetObjectItem(r, "mean"), 0);
}
static void edit_std_string(cJSON *r)
{
    cJSON_ReplaceItemInArray(cJSON_GetObjectItem(r, "std"), 2, cJSON_CreateString("0.2"));
}
static void edit_seed_number(cJSON *r)
{
    cJSON_ReplaceItemInObject(r, "seed", cJSON_CreateNumber(42));
}
static void edit_version(cJSON *r)
{
    cJSON_ReplaceItemInObject(r, "format_version", cJSON_CreateNumber(2));
}
static void edit_format(cJSON *r)
{
    cJSON_ReplaceItemInObject(r, "format", cJSON_CreateString("other"));
}
static void edit_no_val(cJSON *r)
{
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(r, "splits"), "val");
}
static void edit_no_source(cJSON *r)
{
    cJSON_DeleteItemFromObject(r, "source");
}
static void edit_count_mismatch(cJSON *r)
{
    cJSON_ReplaceItemInObject(train_split(r), "count", cJSON_CreateNumber(99));
}
static void edit_negative_count(cJSON *r)
{
    cJSON_ReplaceItemInObject(train_split(r), "count", cJSON_CreateNumber(-1));
}
static void edit_shard_count_string(cJSON *r)
{
    cJSON *sh = cJSON_GetArrayItem(cJSON_GetObjectItem(train_split(r), "shards"), 0);
    cJSON_ReplaceItemInObject(sh, "count", cJSON_CreateString("1"));
}
static void edit_shards_object(cJSON *r)
{
    cJSON_ReplaceItemInObject(train_split(r), "shards", cJSON_CreateObject());
}
static void edit_shard_slash(cJSON *r)
{
    cJSON *sh = cJSON_GetArrayItem(cJSON_GetObjectItem(train_split(r), "shards"), 0);
    cJSON_ReplaceItemInObject(sh, "file", cJSON_CreateString("sub/train-00000.kshard"));
}
static void edit_shard_dotdot(cJSON *r)
{
    cJSON *sh = cJSON_GetArrayItem(cJSON_GetObjectItem(train_split(r), "shards"), 0);
    cJSON_ReplaceItemInObject(sh, "file", cJSON_CreateString("../x.kshard"));
}
static void edit_skipped_number(cJSON *r)
{
    cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(r, "skipped"), 1);
    cJSON_ReplaceItemInObject(e, "reason", cJSON_CreateNumber(1));
}

static void test_manifest_refused(void **state)
{
    const char *dir = *state;
    const char *d = dir;
    expect_manifest_refused(d, edit_size_string, KILN_EFORMAT, "'image_size' must be a number");
    expect_manifest_refused(d, edit_no_classes, KILN_EFORMAT, "'classes'");
    expect_manifest_refused(d, edit_class_number, KILN_EFORMAT, "classes[1]");
    expect_manifest_refused(d, edit_mean_short, KILN_EFORMAT, "'mean'");
    expect_manifest_refused(d, edit_std_string, KILN_EFORMAT, "'std'");
    expect_manifest_refused(d, edit_seed_number, KILN_EFORMAT, "'seed'");
    expect_manifest_refused(d, edit_version, KILN_EFORMAT, "'format_version'");
    expect_manifest_refused(d, edit_format, KILN_EFORMAT, "not a kiln dataset manifest");
    expect_manifest_refused(d, edit_no_val, KILN_EFORMAT, "splits.val is missing");
    expect_manifest_refused(d, edit_no_source, KILN_EFORMAT, "source");
    expect_manifest_refused(d, edit_count_mismatch, KILN_EFORMAT,
                            "train.count is 99 but its shards hold 1");
    expect_manifest_refused(d, edit_negative_count, KILN_EFORMAT, "splits.train");
    expect_manifest_refused(d, edit_shard_count_string, KILN_EFORMAT, "train.shards[0]");
    expect_manifest_refused(d, edit_shards_object, KILN_EFORMAT, "train.shards must be an array");
    expect_manifest_refused(d, edit_shard_slash, KILN_EUNSAFE, "not a plain file name");
    expect_manifest_refused(d, edit_shard_dotdot, KILN_EUNSAFE, "'../x.kshard'");
    expect_manifest_refused(d, edit_skipped_number, KILN_EFORMAT, "skipped[1]");
}

static void test_manifest_not_json_or_missing(void **state)
{
    const char *dir = *state;
    kiln_manifest m;
    kiln_err err = {0};
    assert_int_not_equal(kiln_manifest_read(dir, &m, &err), KILN_OK);
    assert_non_null(strstr(err.msg, "manifest.json"));
    char *path = kt_path(dir, "manifest.json");
    kt_write_file(path, "{\"format\": ", 11);
    assert_int_equal(kiln_manifest_read(dir, &m, &err), KILN_EFORMAT);
    expect_err(&err, KILN_EFORMAT, "not a valid JSON object");
    kt_write_file(path, "[1, 2]", 6);
    assert_int_equal(kiln_manifest_read(dir, &m, &err), KILN_EFORMAT);
    free(path);
}

static void test_split_names(void **state)
{
    (void)state;
    for (int s = 0; s < KILN_SPLIT_COUNT; s++)
        assert_int_equal(kiln_split_parse(kiln_split_name(s)), s);
    assert_string_equal(kiln_split_name(KILN_SPLIT_VAL), "val");
    assert_int_equal(kiln_split_parse("validation"), -1);
    assert_int_equal(kiln_split_parse(NULL), -1);
    assert_string_equal(kiln_split_name(9), "?");
}

/* ---------------- dataset ---------------- */

static void check_split(const char *dir, int split, uint32_t count, int n_classes)
{
    kiln_err err = {0};
    kiln_dataset *ds = kiln_dataset_open(dir, split, &err);
    if (!ds)
        fail_msg("%s", err.msg);
    assert_int_equal(kiln_dataset_count(ds), count);
    assert_int_equal(kiln_dataset_image_size(ds), 6);
    assert_int_equal(kiln_dataset_manifest(ds)->n_classes, n_classes);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t label = 99;
        const uint8_t *px = kiln_dataset_image(ds, i, &label);
        assert_int_equal(label, kt_ds_label(i, n_classes));
        assert_int_equal(kt_ds_decode_index(px[0], px[1]), i);
        /* The last pixel too: the image is whole, not shifted. */
        assert_int_equal(kt_ds_decode_index(px[6 * 6 * 3 - 3], px[6 * 6 * 3 - 2]), i);
        assert_int_equal(px[6 * 6 * 3 - 1], 255);
        assert_non_null(kiln_dataset_image(ds, i, NULL));
    }
    kiln_dataset_close(ds);
}

static void test_dataset_several_shards(void **state)
{
    const char *dir = *state;
    kt_ds_opts o;
    kt_ds_opts_default(&o);
    o.image_size = 6;
    o.n_classes = 4;
    o.per_split[KILN_SPLIT_TRAIN] = 300;
    o.per_split[KILN_SPLIT_VAL] = 9;
    o.per_split[KILN_SPLIT_TEST] = 1;
    o.shard_images = 7;
    kt_ds_build(dir, &o);
    assert_int_equal(count_entries(dir, "train-"), 43);
    check_split(dir, KILN_SPLIT_TRAIN, 300, 4);
    check_split(dir, KILN_SPLIT_VAL, 9, 4);
    check_split(dir, KILN_SPLIT_TEST, 1, 4);
}

static void test_dataset_empty_split_and_bad_split(void **state)
{
    const char *dir = *state;
    kt_ds_opts o;
    kiln_err err = {0};
    kt_ds_opts_default(&o);
    kt_ds_build(dir, &o);
    kiln_dataset *ds = kiln_dataset_open(dir, KILN_SPLIT_TEST, &err);
    assert_non_null(ds);
    assert_int_equal(kiln_dataset_count(ds), 0);
    kiln_dataset_close(ds);
    assert_null(kiln_dataset_open(dir, 3, &err));
    expect_err(&err, KILN_EINVAL, "split");
    assert_null(kiln_dataset_open(dir, -1, &err));
    expect_err(&err, KILN_EINVAL, "split");
}

/* Rewrite one field of the built dataset's manifest. */
static void patch_manifest(const char *dir, json_edit edit)
{
    char *path = kt_path(dir, "manifest.json");
    size_t len;
    char *text = (char *)kt_read_all(path, &len);
    cJSON *root = cJSON_ParseWithLength(text, len);
    assert_non_null(root);
    edit(root);
    char *out = cJSON_Print(root);
    kt_write_file(path, out, strlen(out));
    cJSON_free(out);
    cJSON_Delete(root);
    free(text);
    free(path);
}

static void edit_two_classes(cJSON *r)
{
    cJSON_DeleteItemFromArray(cJSON_GetObjectItem(r, "classes"), 2);
}

static void test_dataset_label_out_of_range(void **state)
{
    const char *dir = *state;
    kt_ds_opts o;
    kiln_err err = {0};
    kt_ds_opts_default(&o); /* 3 classes: labels 0, 1, 2 */
    kt_ds_build(dir, &o);
    patch_manifest(dir, edit_two_classes);
    assert_null(kiln_dataset_open(dir, KILN_SPLIT_TRAIN, &err));
    expect_err(&err, KILN_EFORMAT, "has label 2, only 2 classes");
    assert_non_null(strstr(err.msg, "train-00000.kshard"));
}

/* The shard holds 4 images, the manifest (self-consistent) says 5. */
static void edit_shard_claims_more(cJSON *r)
{
    cJSON *sh = cJSON_GetArrayItem(cJSON_GetObjectItem(train_split(r), "shards"), 0);
    cJSON_ReplaceItemInObject(sh, "count", cJSON_CreateNumber(5));
    cJSON_ReplaceItemInObject(train_split(r), "count", cJSON_CreateNumber(11));
}

static void edit_image_size(cJSON *r)
{
    cJSON_ReplaceItemInObject(r, "image_size", cJSON_CreateNumber(8));
}

static void test_dataset_manifest_disagrees_with_shard(void **state)
{
    const char *dir = *state;
    kt_ds_opts o;
    kiln_err err = {0};
    kt_ds_opts_default(&o);
    o.per_split[KILN_SPLIT_TRAIN] = 10;
    o.shard_images = 4;
    kt_ds_build(dir, &o);
    patch_manifest(dir, edit_shard_claims_more);
    assert_null(kiln_dataset_open(dir, KILN_SPLIT_TRAIN, &err));
    expect_err(&err, KILN_EFORMAT, "holds 4 images of 16x16, manifest.json says 5 of 16x16");
    /* Another split is still fine: only the one opened is checked. */
    kiln_dataset *ds = kiln_dataset_open(dir, KILN_SPLIT_VAL, &err);
    assert_non_null(ds);
    kiln_dataset_close(ds);
    patch_manifest(dir, edit_image_size);
    assert_null(kiln_dataset_open(dir, KILN_SPLIT_VAL, &err));
    expect_err(&err, KILN_EFORMAT, "manifest.json says 4 of 8x8");
}

static void test_dataset_missing_shard(void **state)
{
    const char *dir = *state;
    kt_ds_opts o;
    kiln_err err = {0};
    kt_ds_opts_default(&o);
    o.shard_images = 8;
    kt_ds_build(dir, &o);
    char *path = kt_path(dir, "train-00002.kshard");
    assert_int_equal(unlink(path), 0);
    assert_null(kiln_dataset_open(dir, KILN_SPLIT_TRAIN, &err));
    expect_err(&err, KILN_EIO, "train-00002.kshard");
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shard_round_trip, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_shard_empty_round_trip, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_shard_commit_failure_leaves_nothing, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_shard_abort_leaves_nothing, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_shard_writer_bad_size, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_shard_truncated, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_shard_bad_magic_and_header, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_shard_missing, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_manifest_round_trip, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_manifest_refused, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_manifest_not_json_or_missing, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test(test_split_names),
        cmocka_unit_test_setup_teardown(test_dataset_several_shards, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_dataset_empty_split_and_bad_split, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_dataset_label_out_of_range, kt_setup_tmpdir, kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_dataset_manifest_disagrees_with_shard, kt_setup_tmpdir,
                                        kt_teardown_tmpdir),
        cmocka_unit_test_setup_teardown(test_dataset_missing_shard, kt_setup_tmpdir, kt_teardown_tmpdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
