/* Image buffers, format sniffing and EXIF orientation. Contract in image.h;
 * the decoders live in image_jpeg.c and image_png.c, resizing in resize.c. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "data/image_internal.h"

#define DEFAULT_MAX_PIXELS ((uint64_t)100 * 1000 * 1000)

kiln_image_format kiln_image_detect(const uint8_t *data, size_t len)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (!data)
        return KILN_IMAGE_UNKNOWN;
    /* SOI followed by the first marker's 0xFF: every JPEG starts like this. */
    if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return KILN_IMAGE_JPEG;
    if (len >= sizeof png_sig && memcmp(data, png_sig, sizeof png_sig) == 0)
        return KILN_IMAGE_PNG;
    return KILN_IMAGE_UNKNOWN;
}

int kiln_image_decode(const uint8_t *data, size_t len, const kiln_decode_opts *opts,
                      kiln_image *out, kiln_err *err)
{
    int min_side = opts ? opts->min_side : 0;
    uint64_t max_pixels = opts && opts->max_pixels ? opts->max_pixels : DEFAULT_MAX_PIXELS;
    if (!out)
        return kiln_err_set(err, KILN_EINVAL, "image decode: no output image");
    memset(out, 0, sizeof *out);
    if (min_side < 0)
        return kiln_err_set(err, KILN_EINVAL, "image decode: min_side %d < 0", min_side);
    switch (kiln_image_detect(data, len)) {
    case KILN_IMAGE_JPEG:
        return img_jpeg_decode(data, len, min_side, max_pixels, out, err);
    case KILN_IMAGE_PNG:
        return img_png_decode(data, len, max_pixels, out, err);
    default:
        return kiln_err_set(err, KILN_EUNSUPPORTED, "not a JPEG or PNG image");
    }
}

int kiln_image_alloc(kiln_image *img, int width, int height, kiln_err *err)
{
    memset(img, 0, sizeof *img);
    if (width <= 0 || height <= 0)
        return kiln_err_set(err, KILN_EINVAL, "image size %dx%d", width, height);
    if ((uint64_t)width * (uint64_t)height > SIZE_MAX / 3)
        return kiln_err_set(err, KILN_ELIMIT, "image size %dx%d too large", width, height);
    img->pixels = malloc((size_t)width * (size_t)height * 3);
    if (!img->pixels)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory for a %dx%d image", width, height);
    img->width = width;
    img->height = height;
    return KILN_OK;
}

void kiln_image_free(kiln_image *img)
{
    if (!img)
        return;
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* ---------------- EXIF orientation ---------------- */

/* Where output pixel (ox, oy) comes from in the stored image:
 * sx = cx + xx*ox + xy*oy, sy = cy + yx*ox + yy*oy, where cx and cy are
 * 0 or the last column / row (flag values 1). Orientations 5..8 swap the
 * axes; 6 means "rotate 90 degrees clockwise to view", 8 counter-clockwise. */
typedef struct orient_map {
    int cx, xx, xy; /* cx: 1 = start at the last column */
    int cy, yx, yy; /* cy: 1 = start at the last row */
} orient_map;

static const orient_map ORIENT[9] = {
    [1] = {0, 1, 0, 0, 0, 1},   /* as stored */
    [2] = {1, -1, 0, 0, 0, 1},  /* mirror left-right */
    [3] = {1, -1, 0, 1, 0, -1}, /* rotate 180 */
    [4] = {0, 1, 0, 1, 0, -1},  /* mirror top-bottom */
    [5] = {0, 0, 1, 0, 1, 0},   /* transpose */
    [6] = {0, 0, 1, 1, -1, 0},  /* rotate 90 clockwise */
    [7] = {1, 0, -1, 1, -1, 0}, /* transverse */
    [8] = {1, 0, -1, 0, 1, 0},  /* rotate 90 counter-clockwise */
};

int img_apply_orientation(kiln_image *img, int orientation, kiln_err *err)
{
    if (orientation < 2 || orientation > 8)
        return KILN_OK;
    const orient_map *m = &ORIENT[orientation];
    int w = img->width, h = img->height;
    int swap = orientation >= 5;
    kiln_image out;
    int rc = kiln_image_alloc(&out, swap ? h : w, swap ? w : h, err);
    if (rc != KILN_OK)
        return rc;
    /* Walk output rows; within a row the source moves by a fixed step. */
    ptrdiff_t step = ((ptrdiff_t)m->yx * w + m->xx) * 3;
    for (int oy = 0; oy < out.height; oy++) {
        ptrdiff_t sx = (m->cx ? w - 1 : 0) + (ptrdiff_t)m->xy * oy;
        ptrdiff_t sy = (m->cy ? h - 1 : 0) + (ptrdiff_t)m->yy * oy;
        ptrdiff_t si = (sy * w + sx) * 3;
        uint8_t *d = out.pixels + (size_t)oy * out.width * 3;
        for (int ox = 0; ox < out.width; ox++, d += 3, si += step) {
            const uint8_t *s = img->pixels + si;
            d[0] = s[0];
            d[1] = s[1];
            d[2] = s[2];
        }
    }
    kiln_image_free(img);
    *img = out;
    return KILN_OK;
}
