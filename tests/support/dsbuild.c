#include "support/dsbuild.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/testutil.h"

static const double imagenet_mean[3] = {0.485, 0.456, 0.406};
static const double imagenet_std[3] = {0.229, 0.224, 0.225};

void kt_ds_opts_default(kt_ds_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_classes = 3;
    o->image_size = 16;
    o->per_split[KILN_SPLIT_TRAIN] = 30;
    o->per_split[KILN_SPLIT_VAL] = 10;
}

uint8_t kt_ds_default_pixel(void *ctx, uint32_t index, int y, int x, int c, int size)
{
    (void)ctx;
    (void)y;
    if (c == 0)
        return (uint8_t)(index & 255);
    if (c == 1)
        return (uint8_t)((index >> 8) & 255);
    return (uint8_t)(size > 1 ? x * 255 / (size - 1) : 0);
}

uint32_t kt_ds_label(uint32_t index, int n_classes)
{
    return index % (uint32_t)n_classes;
}

uint32_t kt_ds_decode_index(uint8_t c0, uint8_t c1)
{
    return (uint32_t)c0 | (uint32_t)c1 << 8;
}

static void fill_image(const kt_ds_opts *o, uint32_t index, uint8_t *px)
{
    kt_ds_pixel_fn fn = o->pixel ? o->pixel : kt_ds_default_pixel;
    int s = o->image_size;
    for (int y = 0; y < s; y++)
        for (int x = 0; x < s; x++)
            for (int c = 0; c < 3; c++)
                px[((size_t)y * s + x) * 3 + c] = fn(o->pixel_ctx, index, y, x, c, s);
}

/* Writes one shard holding images [first, first + n) of the split. */
static void write_shard(const char *dir, const kt_ds_opts *o, int split, size_t shard_no,
                        uint32_t first, uint32_t n, kiln_manifest_shard *ms)
{
    kiln_err err = {0};
    char name[64];
    snprintf(name, sizeof name, "%s-%05zu.kshard", kiln_split_name(split), shard_no);
    char *path = kt_path(dir, name);
    uint32_t s = (uint32_t)o->image_size;
    uint8_t *px = malloc((size_t)s * s * 3);
    assert_non_null(px);
    kiln_shard_writer *w = kiln_shard_writer_open(path, s, s, &err);
    if (!w)
        fail_msg("%s", err.msg);
    for (uint32_t i = first; i < first + n; i++) {
        fill_image(o, i, px);
        if (kiln_shard_writer_add(w, px, kt_ds_label(i, o->n_classes), &err) != KILN_OK)
            fail_msg("%s", err.msg);
    }
    if (kiln_shard_writer_commit(w, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    ms->file = strdup(name);
    ms->count = n;
    free(px);
    free(path);
}

static void build_split(const char *dir, const kt_ds_opts *o, int split,
                        kiln_manifest_split *ms)
{
    uint32_t total = o->per_split[split];
    uint32_t per = o->shard_images ? o->shard_images : (total ? total : 1);
    ms->count = total;
    ms->per_class = calloc((size_t)o->n_classes, sizeof *ms->per_class);
    ms->n_shards = (total + per - 1) / per;
    ms->shards = calloc(ms->n_shards + 1, sizeof *ms->shards);
    assert_non_null(ms->per_class);
    assert_non_null(ms->shards);
    for (uint32_t i = 0; i < total; i++)
        ms->per_class[kt_ds_label(i, o->n_classes)]++;
    for (size_t k = 0; k < ms->n_shards; k++) {
        uint32_t first = (uint32_t)k * per;
        uint32_t n = total - first < per ? total - first : per;
        write_shard(dir, o, split, k, first, n, &ms->shards[k]);
    }
}

static void fill_manifest(const kt_ds_opts *o, kiln_manifest *m)
{
    int zero_std = o->std[0] == 0 && o->std[1] == 0 && o->std[2] == 0;
    m->format_version = 1;
    m->kiln_version = strdup("test");
    m->image_size = (uint32_t)o->image_size;
    m->n_classes = (size_t)o->n_classes;
    m->classes = calloc(m->n_classes, sizeof *m->classes);
    assert_non_null(m->classes);
    for (size_t c = 0; c < m->n_classes; c++) {
        char name[16];
        snprintf(name, sizeof name, "c%02zu", c);
        m->classes[c] = strdup(name);
    }
    for (int c = 0; c < 3; c++) {
        m->mean[c] = zero_std ? imagenet_mean[c] : o->mean[c];
        m->std[c] = zero_std ? imagenet_std[c] : o->std[c];
    }
    m->normalization = strdup(zero_std ? "imagenet" : "dataset");
    m->val_fraction = 0.1;
    m->test_fraction = 0.0;
    m->seed = 42;
    m->source_path = strdup("synthetic.zip");
    m->source_sha256 = strdup("0000000000000000000000000000000000000000000000000000000000000000");
    m->source_bytes = 0;
}

void kt_ds_build(const char *dir, const kt_ds_opts *o)
{
    kiln_manifest m;
    kiln_err err = {0};
    memset(&m, 0, sizeof m);
    fill_manifest(o, &m);
    for (int s = 0; s < KILN_SPLIT_COUNT; s++)
        build_split(dir, o, s, &m.splits[s]);
    if (kiln_manifest_write(dir, &m, &err) != KILN_OK)
        fail_msg("%s", err.msg);
    kiln_manifest_free(&m);
}
