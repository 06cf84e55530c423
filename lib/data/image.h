/* lib/data/image.h — decoding JPEG and PNG into RGB, and resizing.
 *
 * All images are 8-bit RGB, HWC, rows packed (stride = 3 * width). A
 * kiln_image owns its pixels; free with kiln_image_free.
 *
 * JPEG (libjpeg-turbo): when `min_side` > 0 the decoder uses DCT scaling
 * (scale_num/8) to decode directly at the smallest scale whose shorter
 * side is still >= min_side, which is several times faster for large
 * photos. The EXIF orientation tag (libexif) is applied, so the result is
 * upright as a viewer shows it; `min_side` refers to the upright image.
 * Gray and CMYK JPEGs are converted to RGB.
 *
 * PNG (libpng): every colour type and depth — palette (with tRNS), gray,
 * gray+alpha, RGB, RGBA, 16-bit — to 8-bit RGB; alpha is composited on
 * white.
 *
 * Errors: KILN_EUNSUPPORTED when the bytes are neither JPEG nor PNG,
 * KILN_EFORMAT when they are but cannot be decoded (truncated, corrupt),
 * KILN_ELIMIT when the header declares more than max_pixels.
 */
#ifndef KILN_DATA_IMAGE_H
#define KILN_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct kiln_image {
    int width;
    int height;
    uint8_t *pixels; /* width * height * 3 bytes, owned */
} kiln_image;

typedef struct kiln_decode_opts {
    int min_side;          /* 0: full size; else DCT-scale down to >= this */
    uint64_t max_pixels;   /* 0: default 100 megapixels */
} kiln_decode_opts;

typedef enum kiln_image_format {
    KILN_IMAGE_UNKNOWN = 0,
    KILN_IMAGE_JPEG,
    KILN_IMAGE_PNG,
} kiln_image_format;

/* Sniff the magic bytes. */
kiln_image_format kiln_image_detect(const uint8_t *data, size_t len);

/* Decode JPEG or PNG bytes. `opts` NULL = full size, default limit.
 * `out` is zeroed on failure. */
int kiln_image_decode(const uint8_t *data, size_t len, const kiln_decode_opts *opts,
                      kiln_image *out, kiln_err *err);

/* Allocate a width x height image (pixels uninitialised). */
int kiln_image_alloc(kiln_image *img, int width, int height, kiln_err *err);
void kiln_image_free(kiln_image *img);

/* Resize `src` to exactly out_w x out_h with an antialiased bilinear
 * (triangle) filter whose support widens when shrinking, like PIL's and
 * torchvision's antialias=True bilinear. Works on a crop box of `src`
 * given in source pixels (integers, as torchvision crops); pass the whole
 * image as (0, 0, width, height). Writes into `dst`, which must be
 * allocated out_w x out_h. Allocation-free when `scratch` is given with
 * at least kiln_resize_scratch_size() bytes; pass NULL to let it allocate.
 *
 * The box is cut out first and then resized on its own (the filter never
 * reads outside it), exactly as torchvision's resized_crop on a PIL image
 * does: the result is bit-identical to PIL's
 * img.crop((x0, y0, x0 + w, y0 + h)).resize((out_w, out_h), BILINEAR).
 */
int kiln_image_resize_box(const kiln_image *src, int x0, int y0, int w, int h,
                          kiln_image *dst, void *scratch, kiln_err *err);
/* Scratch bytes for resizing a src_w x src_h box (not the whole source
 * image) to out_w x out_h; 0 for non-positive sizes. It grows with the
 * box, so the size for the largest box (the whole image) serves every
 * box inside it. The scratch must be aligned as malloc's memory is. */
size_t kiln_resize_scratch_size(int src_w, int src_h, int out_w, int out_h);

/* torchvision's eval transform on a PIL image: Resize(size) on the
 * shorter side (longer side int(size * long / short)), then
 * CenterCrop(size) (offset int(round((side - size) / 2.0))). Only the
 * kept pixels are computed, on the full resize's sampling grid, so the
 * result is bit-identical to PIL resize-then-crop. Allocates `dst`
 * (size x size). */
int kiln_image_resize_center_crop(const kiln_image *src, int size, kiln_image *dst,
                                  kiln_err *err);

#endif
