/* lib/config/config.h — training and data settings from a YAML file.
 *
 * The file has three sections; every key is optional and defaults below:
 *
 *   data:
 *     image_size: 224          # stored and trained size, 16..1024
 *     val_fraction: 0.15       # 0 <= val + test < 1
 *     test_fraction: 0.15
 *     seed: 42
 *     normalization: imagenet  # imagenet | dataset (mean/std of the train split)
 *     max_bad_fraction: 0.1    # undecodable images allowed, 0..1
 *     max_uncompressed_mb: 65536
 *     max_compression_ratio: 200
 *     workers: 2               # decode / loader threads, 1..256
 *   train:
 *     model: b0                # b0 | b1 | b2 | b3 (EfficientNet variant)
 *     epochs: 10
 *     batch_size: 32
 *     learning_rate: 0.001
 *     optimizer: adamw         # sgd | adamw
 *     momentum: 0.9
 *     weight_decay: 0.0001
 *     label_smoothing: 0.1
 *     lr_schedule: warmup_cosine  # warmup_cosine | one_cycle (torch's OneCycleLR,
 *                              # momentum / beta1 cycled 0.95 -> 0.85 -> 0.95)
 *     one_cycle_pct_start: 0.3 # share of the steps rising to the peak, 0..1
 *     precision: fp32          # fp32 | bf16 (GPU mixed precision: bf16 NHWC
 *                              # activations, fp32 master weights)
 *   augment:
 *     random_resized_crop: true
 *     scale_min: 0.08
 *     scale_max: 1.0
 *     horizontal_flip: true
 *
 * Errors (KILN_EINVAL / KILN_EFORMAT) name the file, the key with its
 * section ("train.epochs") and the line: an unknown key, a value of the
 * wrong type or out of range, a malformed YAML document. Flags override
 * the file through kiln_config_set with the same dotted keys.
 * A kiln_config is a plain value: no heap memory, nothing to free.
 */
#ifndef KILN_CONFIG_CONFIG_H
#define KILN_CONFIG_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct kiln_config {
    struct {
        int image_size;
        double val_fraction;
        double test_fraction;
        uint64_t seed;
        char normalization[16];
        double max_bad_fraction;
        int64_t max_uncompressed_mb;
        double max_compression_ratio;
        int workers;
    } data;
    struct {
        char model[8];
        int epochs;
        int batch_size;
        double learning_rate;
        char optimizer[16];
        double momentum;
        double weight_decay;
        double label_smoothing;
        char lr_schedule[16];
        double one_cycle_pct_start;
        char precision[8];
    } train;
    struct {
        int random_resized_crop;
        double scale_min;
        double scale_max;
        int horizontal_flip;
    } augment;
} kiln_config;

void kiln_config_defaults(kiln_config *cfg);

/* Read `path` over the current values of `cfg` (call defaults first). */
int kiln_config_load_file(kiln_config *cfg, const char *path, kiln_err *err);
/* The same from a string; `name` is used in messages. */
int kiln_config_load_string(kiln_config *cfg, const char *yaml, size_t len, const char *name,
                            kiln_err *err);

/* Set one dotted key ("data.image_size") from text, as a flag does.
 * Same type and range checks as the file. */
int kiln_config_set(kiln_config *cfg, const char *key, const char *value, kiln_err *err);

/* Cross-field checks (val + test < 1, scale_min <= scale_max). */
int kiln_config_validate(const kiln_config *cfg, kiln_err *err);

#endif
