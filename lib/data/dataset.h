/* lib/data/dataset.h — a prepared dataset on disk: shards + manifest.json.
 *
 * Layout of a dataset directory (written by kiln_prepare):
 *   manifest.json          classes, counts, image size, mean/std, source
 *                          checksum, skipped files (see kiln_manifest)
 *   train-00000.kshard     packed images of one split
 *   val-00000.kshard, test-00000.kshard, ...
 *
 * A shard file ("kshard"), all integers little-endian:
 *   0   8 bytes  magic "KILNSHD1"
 *   8   u32      count
 *   12  u32      height
 *   16  u32      width
 *   20  u32      channels (3)
 *   24  8 bytes  reserved (0)
 *   32  count * height * width * channels uint8 pixels, HWC, image after image
 *   then count * u32 labels
 * Labels come last so a writer can stream images without knowing how many
 * will decode; the count is patched into the header at commit. Shards are
 * written through kiln_atomic_file (temp name, fsync, rename).
 * Readers mmap them and validate the size against the header.
 */
#ifndef KILN_DATA_DATASET_H
#define KILN_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define KILN_SHARD_HEADER_BYTES 32

/* ---- shard writer: images streamed in order ---- */
typedef struct kiln_shard_writer kiln_shard_writer;

kiln_shard_writer *kiln_shard_writer_open(const char *path, uint32_t height, uint32_t width,
                                          kiln_err *err);
/* Append one image (height*width*3 bytes) and its label. */
int kiln_shard_writer_add(kiln_shard_writer *w, const uint8_t *pixels, uint32_t label,
                          kiln_err *err);
uint32_t kiln_shard_writer_count(const kiln_shard_writer *w);
/* Write the labels, patch the count, rename into place; frees `w` either way. */
int kiln_shard_writer_commit(kiln_shard_writer *w, kiln_err *err);
void kiln_shard_writer_abort(kiln_shard_writer *w);

/* ---- shard reader (mmap) ---- */
typedef struct kiln_shard kiln_shard;

kiln_shard *kiln_shard_open(const char *path, kiln_err *err);
uint32_t kiln_shard_count(const kiln_shard *s);
uint32_t kiln_shard_height(const kiln_shard *s);
uint32_t kiln_shard_width(const kiln_shard *s);
const uint8_t *kiln_shard_pixels(const kiln_shard *s, uint32_t i);
uint32_t kiln_shard_label(const kiln_shard *s, uint32_t i);
void kiln_shard_close(kiln_shard *s);

/* ---- manifest ---- */
enum { KILN_SPLIT_TRAIN = 0, KILN_SPLIT_VAL, KILN_SPLIT_TEST, KILN_SPLIT_COUNT };

/* "train", "val", "test". */
const char *kiln_split_name(int split);
/* -1 when `name` is not a split. */
int kiln_split_parse(const char *name);

typedef struct kiln_manifest_shard {
    char *file;          /* name relative to the dataset directory */
    uint32_t count;
} kiln_manifest_shard;

typedef struct kiln_manifest_split {
    uint32_t count;
    uint32_t *per_class;       /* n_classes counts */
    kiln_manifest_shard *shards;
    size_t n_shards;
} kiln_manifest_split;

typedef struct kiln_manifest_skip {
    char *entry;   /* the zip entry's name */
    char *reason;  /* why it was skipped */
} kiln_manifest_skip;

typedef struct kiln_manifest {
    int format_version;            /* 1 */
    char *kiln_version;
    uint32_t image_size;           /* images are image_size x image_size x 3 */
    char **classes;                /* sorted, as torchvision's ImageFolder */
    size_t n_classes;
    double mean[3], std[3];        /* normalisation to apply, in [0,1] units */
    char *normalization;           /* "imagenet" or "dataset" */
    double val_fraction, test_fraction; /* of all images; measured when split_from_folders */
    int split_from_folders;        /* the zip's train/ val/ test/ folders chose the splits
                                      ("split": "folders"), else the seed did ("seeded") */
    uint64_t seed;
    char *source_path;             /* the zip as given */
    char *source_sha256;           /* hex */
    uint64_t source_bytes;
    kiln_manifest_split splits[KILN_SPLIT_COUNT];
    kiln_manifest_skip *skipped;
    size_t n_skipped;
    uint64_t n_ignored;            /* __MACOSX/, .DS_Store, directories: not reported one by one */
} kiln_manifest;

/* Parse dir/manifest.json, validating types and consistency (EFORMAT naming
 * the field). The caller frees with kiln_manifest_free. */
int kiln_manifest_read(const char *dir, kiln_manifest *m, kiln_err *err);
/* Write dir/manifest.json atomically. */
int kiln_manifest_write(const char *dir, const kiln_manifest *m, kiln_err *err);
void kiln_manifest_free(kiln_manifest *m);

/* ---- one split of a dataset, images indexed 0..count-1 across its shards ---- */
typedef struct kiln_dataset kiln_dataset;

kiln_dataset *kiln_dataset_open(const char *dir, int split, kiln_err *err);
const kiln_manifest *kiln_dataset_manifest(const kiln_dataset *ds);
uint32_t kiln_dataset_count(const kiln_dataset *ds);
uint32_t kiln_dataset_image_size(const kiln_dataset *ds);
/* Pointer into the mapped shard (valid until close) and the label. */
const uint8_t *kiln_dataset_image(const kiln_dataset *ds, uint32_t i, uint32_t *label);
void kiln_dataset_close(kiln_dataset *ds);

#endif
