/* fuzz/fuzz_jpeg.c — libFuzzer target: decode any bytes as an image, as
 * kiln prepare does with each file of a user's zip, then centre-crop the
 * result. Input: one byte of min_side (DCT scaling), then the image.
 * A 4-megapixel limit keeps each run within libFuzzer's memory cap;
 * ASan/UBSan/LSan catch the rest. Seeds: fuzz/corpus/jpeg/ (small JPEGs
 * of every kind: baseline, progressive, gray, CMYK, EXIF-rotated, each
 * behind its min_side byte). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "data/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    kiln_decode_opts opts = {.min_side = data[0], .max_pixels = 4u << 20};
    kiln_image img, out;
    kiln_err err = {0};
    if (kiln_image_decode(data + 1, size - 1, &opts, &img, &err) != KILN_OK) {
        if (img.pixels || img.width || img.height)
            abort(); /* a failed decode leaves the image zeroed */
        return 0;
    }
    if (img.width <= 0 || img.height <= 0 || img.width > (4 << 20) || img.height > (4 << 20))
        abort();
    if (kiln_image_resize_center_crop(&img, 1 + data[0] % 64, &out, &err) == KILN_OK)
        kiln_image_free(&out);
    kiln_image_free(&img);
    return 0;
}
