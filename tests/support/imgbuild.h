/* tests/support/imgbuild.h — encoding JPEG and PNG test images in memory
 * with libjpeg, libexif and libpng, so decoder tests control every mode.
 * Every function fails the test on a library error. */
#ifndef KILN_TEST_IMGBUILD_H
#define KILN_TEST_IMGBUILD_H

#include <stddef.h>
#include <stdint.h>

/* An asymmetric w x h RGB pattern (malloc'ed, w * h * 3): red ramps left
 * to right, green top to bottom, blue is 64, and the top-left w/4 x h/4
 * block is pure blue (0, 0, 255), so every flip and rotation shows. */
uint8_t *kt_img_pattern(int w, int h);

/* Rearrange w x h RGB pixels into a new buffer: flip left-right (mode
 * 'h'), top-bottom ('v') or transpose across the main diagonal ('t', the
 * result is h x w). Written independently of the library's EXIF code. */
uint8_t *kt_img_transform(const uint8_t *rgb, int w, int h, char mode);

typedef struct kt_jpeg_opts {
    int components; /* 3: RGB input (default when 0), 1: gray, 4: CMYK */
    int quality;    /* 0: 90 */
    int progressive;
    int orientation;     /* 1..8: add an EXIF APP1 with this orientation */
    int exif_big_endian; /* EXIF in Motorola byte order (default Intel) */
} kt_jpeg_opts;

/* Encode `pixels` (w * h * components bytes) as a JPEG; malloc'ed result.
 * CMYK is written with an Adobe marker, i.e. inverted as Photoshop does
 * (a decoder sees R = C * K / 255). `o` may be NULL. */
uint8_t *kt_jpeg_encode(const uint8_t *pixels, int w, int h, const kt_jpeg_opts *o, size_t *len);

typedef struct kt_png_opts {
    int color_type;         /* PNG_COLOR_TYPE_* */
    int bit_depth;          /* 1, 2, 4, 8 or 16, as the colour type allows */
    int interlace;          /* Adam7 */
    const uint8_t *palette; /* n_palette RGB triples (PALETTE) */
    int n_palette;
    const uint8_t *trans; /* tRNS: alpha of the first n_trans palette entries */
    int n_trans;
    int has_trans_color; /* tRNS: this gray / RGB sample value is transparent */
    uint16_t trans_color[3];
} kt_png_opts;

/* Encode `samples` as a PNG; malloc'ed result. `samples` holds one
 * uint16_t per channel per pixel (gray 1, gray+alpha 2, RGB 3, RGBA 4,
 * palette 1 index), each already within the bit depth. */
uint8_t *kt_png_encode(const uint16_t *samples, int w, int h, const kt_png_opts *o, size_t *len);

/* Channels per pixel of a PNG colour type. */
int kt_png_channels(int color_type);

/* Write w x h RGB pixels as a binary PPM (P6) at `path`. */
void kt_write_ppm(const char *path, const uint8_t *rgb, int w, int h);

#endif
