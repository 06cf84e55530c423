/* lib/model/model_internal.h — shared by the package writer and reader. */
#ifndef KILN_MODEL_MODEL_INTERNAL_H
#define KILN_MODEL_MODEL_INTERNAL_H

#include "model/model.h"

#define KILN_MODEL_WEIGHTS_FILE "model.safetensors"
#define KILN_MODEL_INFO_FILE "kiln-model.json"
#define KILN_MODEL_MLMODEL_FILE "MLmodel"
#define KILN_MODEL_N_FILES 3
#define KILN_MODEL_SIZE_MIN 16
#define KILN_MODEL_SIZE_MAX 1024

extern const char *const kiln_model_package_files[KILN_MODEL_N_FILES];

/* 1 for the names of the package's own files. */
int kiln_model_is_package_file(const char *name);

/* Range and consistency checks of an info, naming `where` and the field
 * (EFORMAT). */
int kiln_model_info_check(const kiln_model_info *info, const char *where, kiln_err *err);

/* rm -rf; 0 when `path` is gone, -1 otherwise. */
int kiln_model_rmtree(const char *path);

#endif
