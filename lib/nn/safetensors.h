/* lib/nn/safetensors.h — read and write the safetensors format.
 *
 * Format (huggingface/safetensors): 8-byte little-endian header length N,
 * N bytes of JSON {"name": {"dtype": "F32", "shape": [..],
 * "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}, then the
 * raw little-endian tensor bytes; offsets are relative to the data start.
 *
 * A kiln_st_file owns its bytes (read fully into memory, validated: header
 * size, JSON, dtypes, shapes × dtype size == byte range, ranges inside the
 * file, no overlaps); the tensor pointers it hands out live until
 * kiln_st_close. Writers are atomic (temp file, then rename).
 */
#ifndef KILN_NN_SAFETENSORS_H
#define KILN_NN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define KILN_ST_MAX_DIMS 8

typedef enum kiln_st_dtype {
    KILN_ST_F32 = 0,
    KILN_ST_F16,
    KILN_ST_BF16,
    KILN_ST_F64,
    KILN_ST_I64,
    KILN_ST_I32,
    KILN_ST_U8,
} kiln_st_dtype;

typedef struct kiln_st_tensor {
    const char *name;
    kiln_st_dtype dtype;
    int ndim;
    int64_t shape[KILN_ST_MAX_DIMS];
    const void *data; /* inside the file's buffer; not aligned in general */
    size_t bytes;
} kiln_st_tensor;

typedef struct kiln_st_file kiln_st_file;

kiln_st_file *kiln_st_open(const char *path, kiln_err *err);
void kiln_st_close(kiln_st_file *f);
size_t kiln_st_count(const kiln_st_file *f);
const kiln_st_tensor *kiln_st_at(const kiln_st_file *f, size_t i);
/* NULL (no error) when absent. */
const kiln_st_tensor *kiln_st_find(const kiln_st_file *f, const char *name);
/* __metadata__ value or NULL. */
const char *kiln_st_metadata(const kiln_st_file *f, const char *key);
/* Copy a tensor into float32 `out` of `count` elements, converting from
 * F32/F16/BF16/F64/I64/I32; EINVAL naming the tensor when count differs. */
int kiln_st_to_f32(const kiln_st_tensor *t, float *out, size_t count, kiln_err *err);

/* Writing: collect tensors (pointers are borrowed until kiln_st_write). */
typedef struct kiln_st_writer kiln_st_writer;
kiln_st_writer *kiln_st_writer_create(kiln_err *err);
int kiln_st_writer_add(kiln_st_writer *w, const char *name, kiln_st_dtype dtype, int ndim,
                       const int64_t *shape, const void *data, kiln_err *err);
int kiln_st_writer_metadata(kiln_st_writer *w, const char *key, const char *value,
                            kiln_err *err);
/* Atomic write to `path`. Tensors are laid out in the order added. */
int kiln_st_write(kiln_st_writer *w, const char *path, kiln_err *err);
void kiln_st_writer_destroy(kiln_st_writer *w);

#endif
