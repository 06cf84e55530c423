/* lib/nn/safetensors_internal.h — the parser behind kiln_st_open, on bytes
 * already in memory (fuzzers, tests, files that arrive over the network).
 */
#ifndef KILN_NN_SAFETENSORS_INTERNAL_H
#define KILN_NN_SAFETENSORS_INTERNAL_H

#include <stddef.h>

#include "nn/safetensors.h"

/* Header lengths above this are refused (the reference implementation's
 * limit): a corrupt length must not make kiln parse 4 GB of "JSON". */
#define KILN_ST_MAX_HEADER ((size_t)100000000)

/* Parse a copy of `len` bytes as a safetensors file; `name` only names the
 * input in error messages. Same checks and result as kiln_st_open. */
kiln_st_file *kiln_st_parse(const char *name, const void *bytes, size_t len, kiln_err *err);

/* "F32", 4 ...; NULL / 0 for a value outside the enum. */
const char *kiln_st_dtype_name(kiln_st_dtype dtype);
size_t kiln_st_dtype_size(kiln_st_dtype dtype);

#endif
