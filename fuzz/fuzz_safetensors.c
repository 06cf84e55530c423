/* fuzz/fuzz_safetensors.c — libFuzzer target: any bytes as a safetensors
 * file (kiln_st_parse), and when they parse, every tensor read back as
 * float32 into a buffer of exactly its element count. Checks the header's
 * promises: bytes == elements × dtype size, data inside the file, names
 * findable, and a wrong count refused rather than overrun.
 * Seeds: fuzz/corpus/safetensors/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "nn/safetensors_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Elements of `t` from its shape (a scalar, ndim 0, has one). */
static size_t element_count(const kiln_st_tensor *t)
{
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0)
            abort(); /* the parser accepts only non-negative dimensions */
        n *= (size_t)t->shape[d];
    }
    return n;
}

static void check_tensor(const kiln_st_file *f, const kiln_st_tensor *t)
{
    size_t count = element_count(t);
    size_t dsize = kiln_st_dtype_size(t->dtype);
    kiln_err err = {0};
    if (dsize == 0 || t->ndim < 0 || t->ndim > KILN_ST_MAX_DIMS || count * dsize != t->bytes)
        abort();
    if (kiln_st_find(f, t->name) == NULL)
        abort();
    float *out = malloc(count ? count * sizeof *out : 1);
    if (!out)
        return;
    int rc = kiln_st_to_f32(t, out, count, &err);
    /* Every dtype but U8 converts; a count off by one must be refused
     * before anything is written (ASan sees an overrun of `out`). */
    if ((rc == KILN_OK) != (t->dtype != KILN_ST_U8))
        abort();
    if (rc == KILN_OK && kiln_st_to_f32(t, out, count + 1, &err) != KILN_EINVAL)
        abort();
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_err err = {0};
    kiln_st_file *f = kiln_st_parse("fuzz.safetensors", data, size, &err);
    if (!f) {
        if (err.code == KILN_OK || err.msg[0] == '\0')
            abort(); /* a refusal always says why */
        return 0;
    }
    for (size_t i = 0; i < kiln_st_count(f); i++)
        check_tensor(f, kiln_st_at(f, i));
    kiln_st_metadata(f, "format");
    kiln_st_close(f);
    return 0;
}
