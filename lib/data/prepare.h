/* lib/data/prepare.h — a zip of class folders becomes a dataset directory.
 *
 * kiln_prepare reads the zip (zip.h, with its safety limits), finds the
 * class folders, decodes every JPEG/PNG (image.h; DCT-scaled JPEG decode),
 * resizes the shorter side to image_size and centre-crops, splits each
 * class into train/val/test (stratified, deterministic for a seed) and
 * writes shards + manifest.json (dataset.h) into out_dir.
 *
 * Accepted zip shapes: class folders at the top ("dry/a.jpg"), or under
 * one or more wrapping folders ("dry-wet-data/dry/a.jpg"); nested
 * subfolders inside a class ("dry/2024/a.jpg"); any case of extension.
 * Ignored silently (counted in ignored_count): "__MACOSX/", ".DS_Store",
 * "._*" AppleDouble files, hidden files, directory entries. Skipped and
 * reported in the manifest with the reason: files outside a class folder,
 * files that are not .jpg/.jpeg/.png, images that fail to decode.
 *
 * Errors, with nothing left in out_dir but what was there before:
 * every zip error of zip.h; fewer than 2 classes (EFORMAT); a class with no
 * decodable image (EFORMAT, naming the class); more than max_bad_fraction
 * of the images undecodable (EFORMAT, naming the first ones); a split
 * that cannot be made (EINVAL). Work happens in a hidden staging
 * directory inside out_dir; files are renamed into place only when all
 * succeeded, manifest.json last.
 */
#ifndef KILN_DATA_PREPARE_H
#define KILN_DATA_PREPARE_H

#include <stdint.h>

#include "common/err.h"
#include "common/log.h"
#include "data/zip.h"

typedef struct kiln_prepare_opts {
    const char *zip_path;
    const char *out_dir;
    int image_size;            /* 16..1024 */
    double val_fraction;       /* per class; 0 <= val + test < 1 */
    double test_fraction;
    uint64_t seed;
    int threads;               /* decode threads, >= 1 */
    int normalize_dataset;     /* 1: mean/std of the train split; 0: ImageNet's */
    double max_bad_fraction;   /* undecodable images allowed, 0..1 */
    kiln_zip_limits limits;
    uint32_t shard_max_images; /* 0: about 256 MiB per shard */
} kiln_prepare_opts;

/* Defaults: 224, 0.15/0.15, seed 42, 1 thread, ImageNet mean/std,
 * max_bad_fraction 0.1, zip defaults. zip_path and out_dir are NULL. */
void kiln_prepare_opts_default(kiln_prepare_opts *opts);

typedef struct kiln_prepare_report {
    uint32_t n_classes;
    uint32_t images;           /* written, all splits */
    uint32_t split_counts[3];  /* train, val, test */
    uint32_t undecodable;
    uint32_t skipped;          /* all skipped files incl. undecodable */
    uint64_t ignored;
    double seconds;
} kiln_prepare_report;

/* `log` may be NULL. `report` may be NULL. */
int kiln_prepare(const kiln_prepare_opts *opts, const kiln_logger *log,
                 kiln_prepare_report *report, kiln_err *err);

/* Every check kiln_prepare makes — the zip's safety, its classes, the
 * decoding of every image, the share of bad ones — without writing
 * anything (out_dir is not used). Same errors, same report. */
int kiln_prepare_validate(const kiln_prepare_opts *opts, const kiln_logger *log,
                          kiln_prepare_report *report, kiln_err *err);

#endif
