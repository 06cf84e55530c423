/* fuzz/fuzz_zip.c — libFuzzer target: open any bytes as a zip and read
 * every entry. Small limits keep each run within libFuzzer's memory cap;
 * ASan/UBSan/LSan catch the rest. Seeds: fuzz/corpus/zip/. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "data/zip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_zip_limits limits = {
        .max_entries = 1000,
        .max_entry_bytes = 16u << 20,
        .max_total_bytes = 16u << 20,
        .max_ratio = 200,
    };
    kiln_err err = {0};
    kiln_zip *zip = kiln_zip_open_buffer(data, size, &limits, &err);
    if (!zip)
        return 0;
    for (size_t i = 0; i < kiln_zip_count(zip); i++) {
        const kiln_zip_entry *e = kiln_zip_entry_at(zip, i);
        uint8_t *bytes = NULL;
        size_t len = 0;
        if (e->is_dir)
            continue;
        if (kiln_zip_read(zip, i, &bytes, &len, &err) == KILN_OK && len != e->size)
            abort(); /* a successful read returns exactly the declared size */
        free(bytes);
    }
    kiln_zip_close(zip);
    return 0;
}
