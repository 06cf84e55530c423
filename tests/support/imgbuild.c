#include "support/imgbuild.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <libexif/exif-data.h>
#include <png.h>

#include "support/testutil.h"

uint8_t *kt_img_pattern(int w, int h)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    assert_non_null(p);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            uint8_t *px = p + ((size_t)y * w + x) * 3;
            int corner = x < w / 4 && y < h / 4;
            px[0] = corner ? 0 : (uint8_t)(w > 1 ? x * 255 / (w - 1) : 0);
            px[1] = corner ? 0 : (uint8_t)(h > 1 ? y * 255 / (h - 1) : 0);
            px[2] = corner ? 255 : 64;
        }
    }
    return p;
}

uint8_t *kt_img_transform(const uint8_t *rgb, int w, int h, char mode)
{
    uint8_t *out = malloc((size_t)w * h * 3);
    assert_non_null(out);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            size_t d;
            if (mode == 'h')
                d = (size_t)y * w + (w - 1 - x);
            else if (mode == 'v')
                d = (size_t)(h - 1 - y) * w + x;
            else
                d = (size_t)x * h + y; /* transposed: row x, column y, width h */
            memcpy(out + d * 3, rgb + ((size_t)y * w + x) * 3, 3);
        }
    }
    return out;
}

/* ---------------- JPEG ---------------- */

static void add_exif(j_compress_ptr c, int orientation, int big_endian)
{
    ExifData *ed = exif_data_new();
    assert_non_null(ed);
    exif_data_set_byte_order(ed, big_endian ? EXIF_BYTE_ORDER_MOTOROLA : EXIF_BYTE_ORDER_INTEL);
    ExifEntry *e = exif_entry_new();
    assert_non_null(e);
    exif_content_add_entry(ed->ifd[EXIF_IFD_0], e);
    exif_entry_initialize(e, EXIF_TAG_ORIENTATION);
    exif_set_short(e->data, exif_data_get_byte_order(ed), (ExifShort)orientation);
    exif_entry_unref(e);
    unsigned char *buf = NULL;
    unsigned int len = 0;
    exif_data_save_data(ed, &buf, &len);
    assert_non_null(buf);
    jpeg_write_marker(c, JPEG_APP0 + 1, buf, len);
    free(buf);
    exif_data_unref(ed);
}

uint8_t *kt_jpeg_encode(const uint8_t *pixels, int w, int h, const kt_jpeg_opts *o, size_t *len)
{
    kt_jpeg_opts d = {0};
    if (!o)
        o = &d;
    int comps = o->components ? o->components : 3;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *out = NULL;
    unsigned long out_len = 0;
    c.err = jpeg_std_error(&jerr); /* default: prints and exit()s, fine in a test */
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, &out_len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 4 ? JCS_CMYK : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, o->quality ? o->quality : 90, TRUE);
    if (o->progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    if (o->orientation)
        add_exif(&c, o->orientation, o->exif_big_endian);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)c.next_scanline * w * comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = out_len;
    return out;
}

/* ---------------- PNG ---------------- */

typedef struct membuf {
    uint8_t *p;
    size_t len, cap;
} membuf;

static void on_write(png_structp png, png_bytep data, size_t n)
{
    membuf *b = png_get_io_ptr(png);
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void on_flush(png_structp png)
{
    (void)png;
}

int kt_png_channels(int color_type)
{
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        return 2;
    case PNG_COLOR_TYPE_RGB:
        return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA:
        return 4;
    default:
        return 1;
    }
}

/* Pack one row of samples at `depth` bits, big-endian, MSB first. */
static void pack_row(const uint16_t *s, size_t n, int depth, uint8_t *out)
{
    if (depth == 16) {
        for (size_t i = 0; i < n; i++) {
            out[2 * i] = (uint8_t)(s[i] >> 8);
            out[2 * i + 1] = (uint8_t)s[i];
        }
        return;
    }
    if (depth == 8) {
        for (size_t i = 0; i < n; i++)
            out[i] = (uint8_t)s[i];
        return;
    }
    memset(out, 0, (n * (size_t)depth + 7) / 8);
    for (size_t i = 0; i < n; i++) {
        size_t bit = i * (size_t)depth;
        out[bit / 8] |= (uint8_t)(s[i] << (8 - depth - bit % 8));
    }
}

static void set_trns(png_structp png, png_infop info, const kt_png_opts *o)
{
    if (o->n_trans > 0)
        png_set_tRNS(png, info, o->trans, o->n_trans, NULL);
    if (o->has_trans_color) {
        png_color_16 tc = {0};
        tc.gray = o->trans_color[0];
        tc.red = o->trans_color[0];
        tc.green = o->trans_color[1];
        tc.blue = o->trans_color[2];
        png_set_tRNS(png, info, NULL, 0, &tc);
    }
}

uint8_t *kt_png_encode(const uint16_t *samples, int w, int h, const kt_png_opts *o, size_t *len)
{
    membuf b = {0};
    size_t n = (size_t)w * kt_png_channels(o->color_type);
    uint8_t *packed = malloc((size_t)h * (n * 2 + 1));
    png_bytep *rows = malloc(sizeof *rows * (size_t)h);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    assert_true(packed && rows && png && info);
    if (setjmp(png_jmpbuf(png)))
        fail_msg("libpng failed to write a test PNG");
    png_set_write_fn(png, &b, on_write, on_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, o->bit_depth, o->color_type,
                 o->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (o->color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_PLTE(png, info, (png_const_colorp)o->palette, o->n_palette);
    set_trns(png, info, o);
    for (int y = 0; y < h; y++) {
        rows[y] = packed + (size_t)y * (n * 2 + 1);
        pack_row(samples + (size_t)y * n, n, o->bit_depth, rows[y]);
    }
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(packed);
    *len = b.len;
    return b.p;
}

void kt_write_ppm(const char *path, const uint8_t *rgb, int w, int h)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f, "P6\n%d %d\n255\n", w, h);
    assert_int_equal(fwrite(rgb, 3, (size_t)w * h, f), (size_t)w * h);
    assert_int_equal(fclose(f), 0);
}
