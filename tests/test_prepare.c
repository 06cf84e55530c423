/* kiln prepare, through the library and through the CLI: zip shapes,
 * splits, manifest, determinism, and every refusal leaving nothing behind. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "data/dataset.h"
#include "data/prepare.h"
#include "data/zip.h"
#include "support/imgbuild.h"
#include "support/testutil.h"
#include "support/zipbuild.h"

#define MAX_ENTRIES 256

/* A growing list of zip entries whose buffers the list owns. */
typedef struct entries {
    kt_zip_entry v[MAX_ENTRIES];
    void *owned[MAX_ENTRIES];
    int n;
} entries;

static void add_raw(entries *e, const char *name, const void *data, size_t len, void *owned)
{
    assert_true(e->n < MAX_ENTRIES - 1);
    e->v[e->n] = (kt_zip_entry){.name = name, .data = data, .len = len};
    e->owned[e->n++] = owned;
    e->v[e->n].name = NULL;
}

static void add_dir(entries *e, const char *name)
{
    add_raw(e, name, NULL, 0, NULL);
    e->v[e->n - 1].is_dir = 1;
}

/* A solid-colour image, so a test can tell which class a pixel came from. */
static void add_image(entries *e, const char *name, uint8_t r, uint8_t g, uint8_t b, int png)
{
    int w = 40, h = 30;
    size_t len = 0;
    void *data;
    if (png) {
        uint16_t *s = malloc((size_t)w * h * 3 * sizeof *s);
        for (int i = 0; i < w * h; i++) {
            s[3 * i] = r;
            s[3 * i + 1] = g;
            s[3 * i + 2] = b;
        }
        kt_png_opts o = {.color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 8};
        data = kt_png_encode(s, w, h, &o, &len);
        free(s);
    } else {
        uint8_t *px = malloc((size_t)w * h * 3);
        for (int i = 0; i < w * h; i++) {
            px[3 * i] = r;
            px[3 * i + 1] = g;
            px[3 * i + 2] = b;
        }
        kt_jpeg_opts o = {.quality = 95};
        data = kt_jpeg_encode(px, w, h, &o, &len);
        free(px);
    }
    add_raw(e, name, data, len, data);
}

static void entries_free(entries *e)
{
    for (int i = 0; i < e->n; i++)
        free(e->owned[i]);
    e->n = 0;
}

/* Names must outlive the zip build: keep them in a static-free arena. */
static const char *name_of(char names[][96], int *k, const char *prefix, int i,
                           const char *ext)
{
    snprintf(names[*k], 96, "%s%03d%s", prefix, i, ext);
    return names[(*k)++];
}

typedef struct fixture {
    char *dir;
    char *zip;
    char *out;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = kt_mkdtemp();
    f->zip = kt_path(f->dir, "data.zip");
    f->out = kt_path(f->dir, "dataset");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    free(f->zip);
    free(f->out);
    kt_rmtree_free(f->dir);
    free(f);
    return 0;
}

static void opts_for(const fixture *f, kiln_prepare_opts *o)
{
    kiln_prepare_opts_default(o);
    o->zip_path = f->zip;
    o->out_dir = f->out;
    o->image_size = 16;
    o->val_fraction = 0.2;
    o->test_fraction = 0.2;
}

/* dry: red PNGs, wet: blue PNGs, n of each; image i's red or blue value
 * is 100 + i, so a test can tell which image landed where. */
static char g_names[MAX_ENTRIES][96];
static void build_two_class_zip(const fixture *f, int n)
{
    entries e = {0};
    int k = 0;
    for (int i = 0; i < n; i++) {
        add_image(&e, name_of(g_names, &k, "dry/img", i, ".png"), (uint8_t)(100 + i), 0,
                  0, 1);
        add_image(&e, name_of(g_names, &k, "wet/img", i, ".png"), 0, 0,
                  (uint8_t)(100 + i), 1);
    }
    kt_zip_build(f->zip, e.v);
    entries_free(&e);
}

/* Which images a split holds: a bitmap over (label, value - 100). */
static uint64_t split_signature(const char *dir, int split)
{
    kiln_err err = {0};
    kiln_dataset *ds = kiln_dataset_open(dir, split, &err);
    uint64_t sig = 0;
    assert_non_null(ds);
    for (uint32_t i = 0; i < kiln_dataset_count(ds); i++) {
        uint32_t label;
        const uint8_t *px = kiln_dataset_image(ds, i, &label);
        int v = (label == 0 ? px[0] : px[2]) - 100;
        assert_true(v >= 0 && v < 32);
        sig |= 1ULL << (label * 32 + (uint32_t)v);
    }
    kiln_dataset_close(ds);
    return sig;
}

static void assert_not_created(const char *out)
{
    struct stat st;
    assert_int_not_equal(stat(out, &st), 0);
}

static void test_shapes_and_manifest(void **state)
{
    fixture *f = *state;
    entries e = {0};
    int k = 0;
    for (int i = 0; i < 10; i++) {
        add_image(&e, name_of(g_names, &k, "dry-wet-data/dry/", i, ".JPG"), 250, 0, 0, 0);
        add_image(&e, name_of(g_names, &k, "dry-wet-data/wet/2024/", i, ".Png"), 0, 0,
                  250, 1);
    }
    add_raw(&e, "dry-wet-data/README.txt", "hi", 2, NULL);
    add_raw(&e, "dry-wet-data/dry/notes.txt", "x", 1, NULL);
    add_raw(&e, "dry-wet-data/dry/.DS_Store", "x", 1, NULL);
    add_raw(&e, "__MACOSX/dry-wet-data/dry/._000.JPG", "x", 1, NULL);
    add_dir(&e, "dry-wet-data/");
    kt_zip_build(f->zip, e.v);
    entries_free(&e);

    kiln_prepare_opts o;
    kiln_prepare_report r;
    kiln_err err = {0};
    opts_for(f, &o);
    assert_int_equal(kiln_prepare(&o, NULL, &r, &err), KILN_OK);
    assert_int_equal(r.n_classes, 2);
    assert_int_equal(r.images, 20);
    /* 10 per class at 0.2/0.2: 2 val, 2 test, 6 train each. */
    assert_int_equal(r.split_counts[KILN_SPLIT_TRAIN], 12);
    assert_int_equal(r.split_counts[KILN_SPLIT_VAL], 4);
    assert_int_equal(r.split_counts[KILN_SPLIT_TEST], 4);

    kiln_manifest m;
    assert_int_equal(kiln_manifest_read(f->out, &m, &err), KILN_OK);
    assert_string_equal(m.classes[0], "dry");
    assert_string_equal(m.classes[1], "wet");
    assert_int_equal(m.splits[KILN_SPLIT_VAL].per_class[0], 2);
    assert_int_equal(m.splits[KILN_SPLIT_VAL].per_class[1], 2);
    assert_int_equal(m.image_size, 16);
    assert_int_equal(strlen(m.source_sha256), 64);
    assert_int_equal(m.n_skipped, 2); /* README.txt (outside a class), notes.txt */
    int saw_readme = 0;
    for (size_t i = 0; i < m.n_skipped; i++)
        if (strcmp(m.skipped[i].entry, "dry-wet-data/README.txt") == 0) {
            saw_readme = 1;
            assert_non_null(strstr(m.skipped[i].reason, "class folder"));
        }
    assert_true(saw_readme);
    assert_true(m.n_ignored >= 3);
    assert_string_equal(m.normalization, "imagenet");
    kiln_manifest_free(&m);

    /* Pixels follow their labels: dry is red, wet is blue. */
    kiln_dataset *ds = kiln_dataset_open(f->out, KILN_SPLIT_TRAIN, &err);
    assert_non_null(ds);
    for (uint32_t i = 0; i < kiln_dataset_count(ds); i++) {
        uint32_t label;
        const uint8_t *px = kiln_dataset_image(ds, i, &label);
        int red = px[0] > 200 && px[2] < 50, blue = px[2] > 200 && px[0] < 50;
        assert_true(label == 0 ? red : blue);
    }
    kiln_dataset_close(ds);
}

static char *read_text(const char *dir, const char *name)
{
    char *p = kt_path(dir, name), *data = NULL;
    size_t len;
    kiln_err err = {0};
    if (kiln_read_file(p, 0, &data, &len, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    free(p);
    return data;
}

static void test_deterministic_and_threads(void **state)
{
    fixture *f = *state;
    build_two_class_zip(f, 30);
    kiln_prepare_opts o;
    kiln_err err = {0};
    opts_for(f, &o);
    assert_int_equal(kiln_prepare(&o, NULL, NULL, &err), KILN_OK);
    char *first_manifest = read_text(f->out, "manifest.json");
    char *first_val = read_text(f->out, "val-00000.kshard");
    uint64_t val_sig = split_signature(f->out, KILN_SPLIT_VAL);
    uint64_t test_sig = split_signature(f->out, KILN_SPLIT_TEST);
    uint64_t train_sig = split_signature(f->out, KILN_SPLIT_TRAIN);
    /* The splits partition the 60 images. */
    assert_int_equal(val_sig & test_sig, 0);
    assert_int_equal((val_sig | test_sig) & train_sig, 0);
    assert_int_equal(__builtin_popcountll(val_sig | test_sig | train_sig), 60);

    /* Same seed, three threads: byte-identical dataset. */
    o.threads = 3;
    assert_int_equal(kiln_prepare(&o, NULL, NULL, &err), KILN_OK);
    char *again = read_text(f->out, "val-00000.kshard");
    assert_memory_equal(first_val, again, 32 + 12 * 16 * 16 * 3 + 12 * 4);
    free(again);
    again = read_text(f->out, "manifest.json");
    assert_string_equal(first_manifest, again);
    free(again);

    /* Another seed picks other validation images (same counts). */
    o.seed = 7;
    assert_int_equal(kiln_prepare(&o, NULL, NULL, &err), KILN_OK);
    kiln_manifest m;
    assert_int_equal(kiln_manifest_read(f->out, &m, &err), KILN_OK);
    assert_int_equal(m.splits[KILN_SPLIT_VAL].count, 12);
    kiln_manifest_free(&m);
    assert_true(split_signature(f->out, KILN_SPLIT_VAL) != val_sig);
    free(first_manifest);
    free(first_val);
}

static int count_prefixed(const char *dir, const char *prefix)
{
    char *out = NULL;
    kt_run_capture(&out, "ls -A '%s' 2>/dev/null | grep -c '^%s' || true", dir, prefix);
    int n = atoi(out);
    free(out);
    return n;
}

static void expect_refused(const fixture *f, int code, const char *needle)
{
    kiln_prepare_opts o;
    kiln_err err = {0};
    opts_for(f, &o);
    assert_int_equal(kiln_prepare(&o, NULL, NULL, &err), code);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    assert_non_null(strstr(err.msg, f->zip));
    assert_not_created(f->out);
}

static void test_refusals(void **state)
{
    fixture *f = *state;
    entries e = {0};
    int k = 0;
    /* One class only. */
    add_image(&e, name_of(g_names, &k, "dry/", 0, ".png"), 1, 2, 3, 1);
    kt_zip_build(f->zip, e.v);
    expect_refused(f, KILN_EFORMAT, "only one class folder ('dry/')");
    /* An empty class folder next to a full one. */
    add_dir(&e, "wet/");
    kt_zip_build(f->zip, e.v);
    expect_refused(f, KILN_EFORMAT, "'wet/' has no");
    /* A class holding only files that are not images. */
    e.n--;
    add_raw(&e, "wet/readme.txt", "x", 1, NULL);
    kt_zip_build(f->zip, e.v);
    expect_refused(f, KILN_EFORMAT, "'wet/' has no");
    /* No class folders at all. */
    entries_free(&e);
    add_image(&e, "loose.png", 1, 2, 3, 1);
    add_image(&e, "loose2.png", 1, 2, 3, 1);
    kt_zip_build(f->zip, e.v);
    expect_refused(f, KILN_EFORMAT, "no class folders");
    /* Zip-slip. */
    entries_free(&e);
    add_image(&e, "dry/a.png", 1, 2, 3, 1);
    add_image(&e, "wet/../../evil.png", 1, 2, 3, 1);
    kt_zip_build(f->zip, e.v);
    expect_refused(f, KILN_EUNSAFE, "evil.png");
    entries_free(&e);
    /* Not a zip; a truncated zip. */
    kt_write_file(f->zip, "just text\n", 10);
    expect_refused(f, KILN_EFORMAT, "not a zip");
    build_two_class_zip(f, 5);
    assert_int_equal(truncate(f->zip, 300), 0);
    expect_refused(f, KILN_EFORMAT, "");
}

/* A zip that arrives split: train/ val/ test/ folders (any case, under a
 * wrapper) choose the splits; the seed and fractions do not. */
static void test_presplit_folders(void **state)
{
    fixture *f = *state;
    entries e = {0};
    int k = 0;
    static const char *const splits[] = {"data/Train/", "data/validation/", "data/test/"};
    static const int per_split[] = {5, 3, 2};
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < per_split[s]; i++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "%sdry/", splits[s]);
            add_image(&e, name_of(g_names, &k, prefix, i, ".png"), (uint8_t)(100 + i), 0, 0, 1);
            snprintf(prefix, sizeof prefix, "%swet/", splits[s]);
            add_image(&e, name_of(g_names, &k, prefix, i, ".png"), 0, 0, (uint8_t)(100 + i), 1);
        }
    add_raw(&e, "data/train/README.txt", "x", 1, NULL);
    add_raw(&e, "data/notes/x.txt", "x", 1, NULL);
    kt_zip_build(f->zip, e.v);

    kiln_prepare_opts o;
    kiln_prepare_report r;
    kiln_err err = {0};
    opts_for(f, &o);
    assert_int_equal(kiln_prepare(&o, NULL, &r, &err), KILN_OK);
    assert_int_equal(r.n_classes, 2);
    assert_int_equal(r.split_counts[KILN_SPLIT_TRAIN], 10);
    assert_int_equal(r.split_counts[KILN_SPLIT_VAL], 6);
    assert_int_equal(r.split_counts[KILN_SPLIT_TEST], 4);
    /* Exactly images 0..1 of each class are in test: the folders decided. */
    assert_true(split_signature(f->out, KILN_SPLIT_TEST) == (0x3ULL | (0x3ULL << 32)));
    kiln_manifest m;
    assert_int_equal(kiln_manifest_read(f->out, &m, &err), KILN_OK);
    assert_true(m.split_from_folders);
    assert_true(m.val_fraction > 0.29 && m.val_fraction < 0.31);
    assert_true(m.test_fraction > 0.19 && m.test_fraction < 0.21);
    assert_string_equal(m.classes[0], "dry");
    assert_int_equal(m.n_skipped, 2); /* README.txt outside a class, notes/ outside a split */
    kiln_manifest_free(&m);

    /* A class that exists only under val/ cannot be trained on. */
    add_image(&e, "data/validation/mist/0.png", 9, 9, 9, 1);
    kt_zip_build(f->zip, e.v);
    entries_free(&e);
    kt_rmtree_free(kt_path(f->dir, "dataset"));
    expect_refused(f, KILN_EFORMAT, "class 'mist' has images only under val/ or test/");

    /* Folders named like splits with images directly inside are classes. */
    add_image(&e, "train/a.png", 1, 2, 3, 1);
    add_image(&e, "test/b.png", 1, 2, 3, 1);
    kt_zip_build(f->zip, e.v);
    entries_free(&e);
    opts_for(f, &o);
    o.val_fraction = 0;
    o.test_fraction = 0;
    assert_int_equal(kiln_prepare(&o, NULL, &r, &err), KILN_OK);
    assert_int_equal(r.n_classes, 2);
    assert_int_equal(kiln_manifest_read(f->out, &m, &err), KILN_OK);
    assert_false(m.split_from_folders);
    assert_string_equal(m.classes[1], "train");
    kiln_manifest_free(&m);
}

static void test_symlink_and_encrypted(void **state)
{
    fixture *f = *state;
    entries e = {0};
    add_image(&e, "dry/a.png", 1, 2, 3, 1);
    add_image(&e, "wet/b.png", 1, 2, 3, 1);
    add_raw(&e, "wet/link.png", "/etc/passwd", 11, NULL);
    e.v[e.n - 1].unix_mode = 0120777;
    kt_zip_build(f->zip, e.v);
    expect_refused(f, KILN_EUNSAFE, "link.png");
    e.v[e.n - 1].unix_mode = 0;
    e.v[e.n - 1].password = "secret";
    kt_zip_build(f->zip, e.v);
    expect_refused(f, KILN_EUNSUPPORTED, "link.png");
    entries_free(&e);
}

static void test_zip_bomb(void **state)
{
    fixture *f = *state;
    entries e = {0};
    size_t big = 8u << 20;
    void *zeros = calloc(1, big);
    add_image(&e, "dry/a.png", 1, 2, 3, 1);
    add_image(&e, "wet/b.png", 1, 2, 3, 1);
    add_raw(&e, "wet/bomb.png", zeros, big, zeros);
    kt_zip_build(f->zip, e.v);
    expect_refused(f, KILN_ELIMIT, "bomb.png");
    /* The limit is configurable: a higher ratio lets it through to the
     * decoder, which then skips it as undecodable (1 of 3 is too many). */
    kiln_prepare_opts o;
    kiln_err err = {0};
    opts_for(f, &o);
    o.limits.max_ratio = 1e6;
    assert_int_equal(kiln_prepare(&o, NULL, NULL, &err), KILN_EFORMAT);
    assert_non_null(strstr(err.msg, "could not be decoded"));
    entries_free(&e);
}

static void test_undecodable_share(void **state)
{
    fixture *f = *state;
    entries e = {0};
    int k = 0;
    for (int i = 0; i < 10; i++) {
        add_image(&e, name_of(g_names, &k, "dry/", i, ".png"), 200, 0, 0, 1);
        add_image(&e, name_of(g_names, &k, "wet/", i, ".jpg"), 0, 0, 200, 0);
    }
    add_raw(&e, "wet/broken.jpg", "\xff\xd8\xff\xe0 not really", 16, NULL);
    add_raw(&e, "dry/fake.png", "GIF89a....", 10, NULL);
    kt_zip_build(f->zip, e.v);
    entries_free(&e);
    kiln_prepare_opts o;
    kiln_prepare_report r;
    kiln_err err = {0};
    opts_for(f, &o);
    assert_int_equal(kiln_prepare(&o, NULL, &r, &err), KILN_OK); /* 2 of 22 <= 10% */
    assert_int_equal(r.undecodable, 2);
    assert_int_equal(r.images, 20);
    kiln_manifest m;
    assert_int_equal(kiln_manifest_read(f->out, &m, &err), KILN_OK);
    int decode_reasons = 0;
    for (size_t i = 0; i < m.n_skipped; i++)
        decode_reasons += strstr(m.skipped[i].reason, "cannot decode") != NULL;
    assert_int_equal(decode_reasons, 2);
    kiln_manifest_free(&m);
    char *before = read_text(f->out, "manifest.json");
    /* Stricter limit: refused, and the dataset already there is untouched. */
    o.max_bad_fraction = 0.05;
    assert_int_equal(kiln_prepare(&o, NULL, NULL, &err), KILN_EFORMAT);
    assert_non_null(strstr(err.msg, "max_bad_fraction"));
    char *after = read_text(f->out, "manifest.json");
    assert_string_equal(before, after);
    assert_int_equal(count_prefixed(f->out, ".kiln-prepare"), 0);
    assert_int_equal(count_prefixed(f->out, ".*tmp"), 0);
    free(before);
    free(after);
}

static void test_stale_shards_removed(void **state)
{
    fixture *f = *state;
    build_two_class_zip(f, 20);
    kiln_prepare_opts o;
    kiln_err err = {0};
    opts_for(f, &o);
    o.shard_max_images = 5;
    assert_int_equal(kiln_prepare(&o, NULL, NULL, &err), KILN_OK);
    assert_int_equal(count_prefixed(f->out, "train-"), 5); /* 24 train images */
    o.shard_max_images = 0;
    assert_int_equal(kiln_prepare(&o, NULL, NULL, &err), KILN_OK);
    assert_int_equal(count_prefixed(f->out, "train-"), 1);
    kiln_dataset *ds = kiln_dataset_open(f->out, KILN_SPLIT_TRAIN, &err);
    assert_non_null(ds);
    assert_int_equal(kiln_dataset_count(ds), 24);
    kiln_dataset_close(ds);
}

static void test_dataset_normalization(void **state)
{
    fixture *f = *state;
    build_two_class_zip(f, 10);
    kiln_prepare_opts o;
    kiln_err err = {0};
    opts_for(f, &o);
    o.normalize_dataset = 1;
    assert_int_equal(kiln_prepare(&o, NULL, NULL, &err), KILN_OK);
    kiln_manifest m;
    assert_int_equal(kiln_manifest_read(f->out, &m, &err), KILN_OK);
    assert_string_equal(m.normalization, "dataset");
    /* Green is 0 everywhere: mean 0 and a guarded std of 1. */
    assert_true(m.mean[1] < 1e-9);
    assert_true(m.std[1] == 1.0);
    assert_true(m.mean[0] > 0.1 && m.mean[0] < 0.4);
    kiln_manifest_free(&m);
}

static void write_entry_file(const char *dir, const kt_zip_entry *e)
{
    char *path = kt_path(dir, e->name);
    assert_int_equal(kt_system("mkdir -p \"$(dirname '%s')\"", path), 0);
    kt_write_file(path, e->data, e->len);
    free(path);
}

/* A folder of class folders is zipped, then checked without writing anything. */
static void test_zip_folder_and_validate(void **state)
{
    fixture *f = *state;
    entries e = {0};
    int k = 0;
    for (int i = 0; i < 6; i++) {
        add_image(&e, name_of(g_names, &k, "dry/", i, ".png"), 200, 0, 0, 1);
        add_image(&e, name_of(g_names, &k, "wet/sub/", i, ".jpg"), 0, 0, 200, 0);
    }
    char *folder = kt_path(f->dir, "folder");
    for (int i = 0; i < e.n; i++)
        write_entry_file(folder, &e.v[i]);
    entries_free(&e);
    size_t n_files = 0;
    kiln_err err = {0};
    assert_int_equal(kiln_zip_create_from_dir(folder, f->zip, &n_files, &err), KILN_OK);
    assert_int_equal(n_files, 12);

    kiln_prepare_opts o;
    kiln_prepare_report r;
    opts_for(f, &o);
    o.out_dir = NULL;
    assert_int_equal(kiln_prepare_validate(&o, NULL, &r, &err), KILN_OK);
    assert_int_equal(r.images, 12);
    assert_int_equal(r.n_classes, 2);
    assert_not_created(f->out);

    /* A symlink in the folder is refused, and the zip left as it was. */
    char *link = kt_path(folder, "wet/link.jpg");
    assert_int_equal(symlink("/etc/passwd", link), 0);
    assert_int_equal(kiln_zip_create_from_dir(folder, f->zip, NULL, &err), KILN_EUNSAFE);
    assert_non_null(strstr(err.msg, "link.jpg"));
    assert_int_equal(kiln_prepare_validate(&o, NULL, &r, &err), KILN_OK);
    free(link);

    /* A folder with one class zips, but does not validate. */
    assert_int_equal(kt_system("rm -rf '%s/wet'", folder), 0);
    assert_int_equal(kiln_zip_create_from_dir(folder, f->zip, NULL, &err), KILN_OK);
    assert_int_equal(kiln_prepare_validate(&o, NULL, &r, &err), KILN_EFORMAT);
    assert_non_null(strstr(err.msg, "only one class folder"));
    assert_int_equal(kiln_zip_create_from_dir(f->zip, f->zip, NULL, &err), KILN_ENOTFOUND);
    assert_not_created(f->out);
    free(folder);
}

/* ---------------- the CLI ---------------- */

static void test_cli(void **state)
{
    fixture *f = *state;
    const char *kiln = kt_kiln_bin();
    char *out = NULL;
    build_two_class_zip(f, 10);

    assert_int_equal(kt_run_capture(&out, "%s prepare --zip %s", kiln, f->zip), 2);
    assert_non_null(strstr(out, "--zip and --out are required"));
    free(out);
    assert_int_equal(kt_run_capture(&out, "%s prepare --zip %s --out %s --bogus", kiln, f->zip,
                                    f->out), 2);
    assert_non_null(strstr(out, "--bogus"));
    free(out);
    assert_int_equal(kt_run_capture(&out, "%s prepare --zip %s --out %s --size huge", kiln,
                                    f->zip, f->out), 2);
    assert_non_null(strstr(out, "--size"));
    free(out);
    assert_not_created(f->out);

    /* A config with an unknown key names the key and the line. */
    char *cfg = kt_path(f->dir, "cfg.yaml");
    const char *yaml = "data:\n  image_size: 16\n  val_fractoin: 0.2\n";
    kt_write_file(cfg, yaml, strlen(yaml));
    assert_int_equal(kt_run_capture(&out, "%s prepare --zip %s --out %s --config %s", kiln,
                                    f->zip, f->out, cfg), 2);
    assert_non_null(strstr(out, "val_fractoin"));
    assert_non_null(strstr(out, "line 3"));
    free(out);

    /* A good run: flags override the file; the summary goes to stdout. */
    yaml = "data:\n  image_size: 16\n  val_fraction: 0.5\n";
    kt_write_file(cfg, yaml, strlen(yaml));
    assert_int_equal(kt_run_capture(&out, "%s prepare --zip %s --out %s --config %s --val 0.2 "
                                    "--test 0 --workers 2", kiln, f->zip, f->out, cfg), 0);
    assert_non_null(strstr(out, "prepared 20 images in 2 classes"));
    assert_non_null(strstr(out, "train 16, val 4, test 0"));
    free(out);
    free(cfg);

    /* kiln data check: the same checks, nothing written. */
    assert_int_equal(kt_run_capture(&out, "%s data check %s --size 16 --val 0.2 --test 0.2",
                                    kiln, f->zip), 0);
    assert_non_null(strstr(out, "ok: 20 images in 2 classes (train 12, val 4, test 4)"));
    free(out);
    assert_int_equal(kt_run_capture(&out, "%s data check %s --out x", kiln, f->zip), 2);
    free(out);

    /* Errors as JSON lines for Kubernetes. */
    kt_write_file(f->zip, "nope", 4);
    assert_int_equal(kt_run_capture(&out, "%s --log-format json prepare --zip %s --out %s/x",
                                    kiln, f->zip, f->dir), 1);
    assert_non_null(strstr(out, "{\"ts\":"));
    assert_non_null(strstr(out, "\"level\":\"error\""));
    assert_non_null(strstr(out, "not a zip"));
    free(out);
    assert_int_equal(kt_run_capture(&out, "%s data check %s", kiln, f->zip), 1);
    assert_non_null(strstr(out, "not a zip"));
    free(out);
}

/* Real images nobody here wrote: Debian's Fashion-MNIST through the script. */
static void test_fashion_mnist(void **state)
{
    fixture *f = *state;
    const char *src = getenv("KILN_SOURCE_DIR");
    char *out = NULL;
    assert_non_null(src);
    int rc = kt_run_capture(&out, "%s/scripts/make-fashion-zip --out %s --per-class 20 "
                            "--wrap-folder fashion", src, f->zip);
    if (rc != 0)
        fail_msg("make-fashion-zip failed: %s", out);
    free(out);
    kiln_prepare_opts o;
    kiln_prepare_report r;
    kiln_err err = {0};
    opts_for(f, &o);
    o.image_size = 32;
    o.threads = 2;
    assert_int_equal(kiln_prepare(&o, NULL, &r, &err), KILN_OK);
    assert_int_equal(r.n_classes, 10);
    assert_int_equal(r.images, 200);
    assert_int_equal(r.undecodable, 0);
    assert_int_equal(r.split_counts[KILN_SPLIT_VAL], 40);
    kiln_manifest m;
    assert_int_equal(kiln_manifest_read(f->out, &m, &err), KILN_OK);
    assert_string_equal(m.classes[0], "ankle_boot");
    kiln_manifest_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shapes_and_manifest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deterministic_and_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presplit_folders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_and_encrypted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_bomb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecodable_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_shards_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dataset_normalization, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_folder_and_validate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fashion_mnist, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
