/* lib/data/image_internal.h — the decoders behind kiln_image_decode
 * (private to lib/data/image*.c and resize.c). */
#ifndef KILN_DATA_IMAGE_INTERNAL_H
#define KILN_DATA_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "data/image.h"

/* Each decoder fills `out` (allocated with kiln_image_alloc) or leaves it
 * zeroed and sets err. `max_pixels` is already resolved (never 0). */
int img_jpeg_decode(const uint8_t *data, size_t len, int min_side, uint64_t max_pixels,
                    kiln_image *out, kiln_err *err);
int img_png_decode(const uint8_t *data, size_t len, uint64_t max_pixels, kiln_image *out,
                   kiln_err *err);

/* Apply an EXIF orientation (1..8; anything else is a no-op) so the image
 * becomes upright. Replaces img->pixels; width and height swap for 5..8. */
int img_apply_orientation(kiln_image *img, int orientation, kiln_err *err);

#endif
