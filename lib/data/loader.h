/* lib/data/loader.h — batches of augmented float images from a dataset.
 *
 * A kiln_loader reads one split of a prepared dataset (dataset.h) and
 * produces batches as float32 NCHW, normalised with the manifest's
 * mean/std, with labels — or, with `u8`, the same pixels as bytes (NCHW,
 * augmented, not normalised) for a GPU to normalise after a copy of a
 * quarter of the size; kiln_loader_lut maps them to the float batch's
 * values exactly. Training augmentation is torchvision's
 * RandomResizedCrop(out_size, scale, ratio) + RandomHorizontalFlip(0.5);
 * without augmentation images are resized to out_size (a no-op copy when
 * out_size equals the stored size).
 *
 * Work is done by `threads` worker threads that fill batches ahead of the
 * consumer (up to `prefetch` batches). Results are deterministic for a
 * given seed: the epoch's order comes from (seed, epoch) and each image's
 * augmentation from (seed, epoch, position), never from thread timing.
 *
 * Ownership: a batch returned by kiln_loader_next belongs to the loader
 * and stays valid until the next call to kiln_loader_next,
 * kiln_loader_start_epoch or kiln_loader_close. Memory is allocated at
 * open, not per batch.
 */
#ifndef KILN_DATA_LOADER_H
#define KILN_DATA_LOADER_H

#include <stdint.h>

#include "common/err.h"

typedef struct kiln_loader_opts {
    int split;              /* KILN_SPLIT_TRAIN / VAL / TEST */
    int batch_size;         /* > 0 */
    int out_size;           /* 0 = the dataset's image size */
    int threads;            /* worker threads, >= 1 */
    int prefetch;           /* batches ready ahead; 0 = 2 * threads */
    uint64_t seed;
    int shuffle;            /* new order every epoch */
    int drop_last;          /* skip the final short batch */
    int random_resized_crop;
    double scale_min, scale_max;   /* default 0.08, 1.0 */
    double ratio_min, ratio_max;   /* default 3/4, 4/3 */
    int horizontal_flip;
    int u8;                 /* 1: batches in x_u8 (bytes) instead of x */
} kiln_loader_opts;

/* Defaults: train split, batch 32, no augmentation, 1 thread, seed 42,
 * torchvision's scale and ratio ranges. */
void kiln_loader_opts_default(kiln_loader_opts *opts);

typedef struct kiln_batch {
    int n;              /* images in this batch (<= batch_size) */
    int channels;       /* 3 */
    int height, width;  /* out_size */
    float *x;           /* n * 3 * height * width, NCHW; NULL with opts.u8 */
    uint8_t *x_u8;      /* opts.u8: the pixels before normalisation, NCHW; else NULL */
    int32_t *labels;    /* n */
    uint32_t *indices;  /* n: index of each image in the split */
} kiln_batch;

typedef struct kiln_loader kiln_loader;

kiln_loader *kiln_loader_open(const char *dataset_dir, const kiln_loader_opts *opts,
                              kiln_err *err);
uint32_t kiln_loader_num_images(const kiln_loader *l);
/* The normalisation: lut[c * 256 + byte] = (byte / 255 - mean[c]) / std[c]
 * (computed in double, rounded once), 3 * 256 floats owned by the loader:
 * x = lut[c * 256 + x_u8] for every element of channel c. */
const float *kiln_loader_lut(const kiln_loader *l);
uint32_t kiln_loader_batches_per_epoch(const kiln_loader *l);
/* Begin epoch `epoch` (0-based); cancels an epoch in progress. */
int kiln_loader_start_epoch(kiln_loader *l, int epoch, kiln_err *err);
/* 1 with a batch in *out, 0 at the end of the epoch, or -1 with err set. */
int kiln_loader_next(kiln_loader *l, const kiln_batch **out, kiln_err *err);
void kiln_loader_close(kiln_loader *l);

#endif
