/* One split of a prepared dataset: its shards opened and indexed as one. */
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "data/dataset.h"

struct kiln_dataset {
    kiln_manifest manifest;
    int split;
    kiln_shard **shards;
    size_t n_shards;
    uint32_t *first;     /* first[i]: index of shard i's first image */
    uint32_t count;
};

static int open_shard(kiln_dataset *ds, const char *dir, size_t i, kiln_err *err)
{
    const kiln_manifest_shard *ms = &ds->manifest.splits[ds->split].shards[i];
    char path[4096];
    int rc = kiln_path_join(path, sizeof path, dir, ms->file, err);
    if (rc != KILN_OK)
        return rc;
    ds->shards[i] = kiln_shard_open(path, err);
    if (!ds->shards[i])
        return err ? (int)err->code : KILN_EIO;
    const kiln_shard *s = ds->shards[i];
    uint32_t size = ds->manifest.image_size;
    if (kiln_shard_count(s) != ms->count || kiln_shard_height(s) != size ||
        kiln_shard_width(s) != size)
        return kiln_err_set(err, KILN_EFORMAT,
                            "%s: holds %u images of %ux%u, manifest.json says %u of %ux%u", path,
                            kiln_shard_count(s), kiln_shard_height(s), kiln_shard_width(s),
                            ms->count, size, size);
    for (uint32_t j = 0; j < ms->count; j++)
        if (kiln_shard_label(s, j) >= ds->manifest.n_classes)
            return kiln_err_set(err, KILN_EFORMAT, "%s: image %u has label %u, only %zu classes",
                                path, j, kiln_shard_label(s, j), ds->manifest.n_classes);
    return KILN_OK;
}

kiln_dataset *kiln_dataset_open(const char *dir, int split, kiln_err *err)
{
    kiln_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory opening dataset %s", dir);
        return NULL;
    }
    if (split < 0 || split >= KILN_SPLIT_COUNT) {
        kiln_err_set(err, KILN_EINVAL, "no split number %d", split);
        goto fail;
    }
    ds->split = split;
    if (kiln_manifest_read(dir, &ds->manifest, err) != KILN_OK)
        goto fail;
    ds->n_shards = ds->manifest.splits[split].n_shards;
    ds->shards = calloc(ds->n_shards + 1, sizeof *ds->shards);
    ds->first = calloc(ds->n_shards + 1, sizeof *ds->first);
    if (!ds->shards || !ds->first) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory opening dataset %s", dir);
        goto fail;
    }
    for (size_t i = 0; i < ds->n_shards; i++) {
        if (open_shard(ds, dir, i, err) != KILN_OK)
            goto fail;
        ds->first[i] = ds->count;
        ds->count += kiln_shard_count(ds->shards[i]);
    }
    ds->first[ds->n_shards] = ds->count;
    return ds;
fail:
    kiln_dataset_close(ds);
    return NULL;
}

const kiln_manifest *kiln_dataset_manifest(const kiln_dataset *ds)
{
    return &ds->manifest;
}

uint32_t kiln_dataset_count(const kiln_dataset *ds)
{
    return ds->count;
}

uint32_t kiln_dataset_image_size(const kiln_dataset *ds)
{
    return ds->manifest.image_size;
}

const uint8_t *kiln_dataset_image(const kiln_dataset *ds, uint32_t i, uint32_t *label)
{
    /* Binary search for the shard holding image i. */
    size_t lo = 0, hi = ds->n_shards;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ds->first[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    uint32_t j = i - ds->first[lo];
    if (label)
        *label = kiln_shard_label(ds->shards[lo], j);
    return kiln_shard_pixels(ds->shards[lo], j);
}

void kiln_dataset_close(kiln_dataset *ds)
{
    if (!ds)
        return;
    for (size_t i = 0; ds->shards && i < ds->n_shards; i++)
        kiln_shard_close(ds->shards[i]);
    free(ds->shards);
    free(ds->first);
    kiln_manifest_free(&ds->manifest);
    free(ds);
}
