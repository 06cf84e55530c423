/* lib/model/model.h — the model package: the only thing training hands to
 * serving and evaluation.
 *
 * A package is a directory:
 *   model.safetensors  the weights with torchvision's state_dict names
 *                      (loads in PyTorch with load_state_dict);
 *   kiln-model.json    format_version, variant, classes in label order,
 *                      input size, preprocessing (resize the shorter side to
 *                      resize_size, centre-crop input_size, scale to [0,1],
 *                      normalise with mean/std), kiln version, and free-form
 *                      provenance (dataset checksum, run id, metrics);
 *   MLmodel            YAML that makes the directory a valid MLflow model
 *                      artifact (flavor `kiln`, signature: image input,
 *                      class-probability output).
 * Writes are atomic: the package is built in a staging directory next to
 * `dir` and renamed into place, so a crash never leaves half a package.
 * Reads validate everything (format_version known, variant known, classes
 * count == the weights' head, sizes in range) with errors naming the file
 * and field.
 */
#ifndef KILN_MODEL_MODEL_H
#define KILN_MODEL_MODEL_H

#include "common/err.h"
#include "nn/efficientnet.h"

#define KILN_MODEL_FORMAT_VERSION 1

typedef struct kiln_model_info {
    int format_version;
    char variant[8];          /* "b0".."b3" */
    int num_classes;
    char **classes;           /* num_classes names, label order */
    int input_size;           /* square side fed to the network */
    int resize_size;          /* shorter side before the centre crop */
    float mean[3], std[3];    /* per channel, on [0,1] pixels */
    char kiln_version[32];
    char *run_id;             /* MLflow run that made it, or NULL */
    char *dataset_sha256;     /* dataset manifest checksum, or NULL */
} kiln_model_info;

/* Frees the strings inside `info` (not `info` itself). */
void kiln_model_info_clear(kiln_model_info *info);

/* Write `model` + `info` as a package at `dir` (replacing an existing one
 * atomically). */
int kiln_model_package_write(const char *dir, kiln_effnet *model, const kiln_model_info *info,
                             kiln_err *err);

/* Read and validate kiln-model.json of the package at `dir` into `info`
 * (cleared first; the caller clears it afterwards). */
int kiln_model_info_read(const char *dir, kiln_model_info *info, kiln_err *err);

/* Read the info and load the weights into a new model on `be`. */
kiln_effnet *kiln_model_load(const char *dir, kiln_nn_backend *be, kiln_model_info *info,
                             kiln_err *err);

#endif
