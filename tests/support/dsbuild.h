/* tests/support/dsbuild.h — small synthetic prepared datasets for tests.
 *
 * kt_ds_build writes a dataset directory (shards + manifest.json) with the
 * library's own kiln_shard_writer and kiln_manifest_write, so the loader
 * and dataset tests read exactly what kiln prepare would write.
 *
 * Default pixel content lets a test identify an image after any crop,
 * resize or flip: channel 0 holds index & 255 and channel 1 holds
 * (index >> 8) & 255 everywhere in the image (constant planes survive
 * resizing), and channel 2 is a left-to-right ramp 0..255 (so a flip is
 * visible). `index` is the image's position in its split. The label of
 * image `index` is index % n_classes.
 */
#ifndef KILN_TEST_DSBUILD_H
#define KILN_TEST_DSBUILD_H

#include <stdint.h>

#include "data/dataset.h"

/* The byte at (y, x, c) of image `index` in a size x size image. */
typedef uint8_t (*kt_ds_pixel_fn)(void *ctx, uint32_t index, int y, int x, int c, int size);

typedef struct kt_ds_opts {
    int n_classes;                       /* classes "c00", "c01", ... */
    int image_size;                      /* stored images are size x size */
    uint32_t per_split[KILN_SPLIT_COUNT];/* images in train, val, test */
    uint32_t shard_images;               /* images per shard; 0: one shard per split */
    double mean[3], std[3];              /* std all zero: ImageNet's mean/std */
    kt_ds_pixel_fn pixel;                /* NULL: kt_ds_default_pixel */
    void *pixel_ctx;
} kt_ds_opts;

/* Defaults: 3 classes, 16x16 images, 30/10/0 images, one shard per split. */
void kt_ds_opts_default(kt_ds_opts *o);

/* Write the dataset into the existing directory `dir`; fails the test on error. */
void kt_ds_build(const char *dir, const kt_ds_opts *o);

uint8_t kt_ds_default_pixel(void *ctx, uint32_t index, int y, int x, int c, int size);
uint32_t kt_ds_label(uint32_t index, int n_classes);
/* The index encoded by the default pattern in channels 0 and 1. */
uint32_t kt_ds_decode_index(uint8_t c0, uint8_t c1);

#endif
