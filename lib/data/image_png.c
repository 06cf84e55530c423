/* PNG decoding with libpng. Contract in image.h.
 *
 * libpng reports errors through our error function, which records the
 * message and longjmps to png_jmpbuf. As in image_jpeg.c, everything that
 * must survive the jump lives in a png_job owned by the caller of png_run,
 * so no local needs to be volatile.
 *
 * libpng's transforms bring every colour type and depth to 8-bit RGB or
 * RGBA; RGBA is then composited on white in place (each pixel shrinks
 * from 4 to 3 bytes, so a forward walk never overwrites unread bytes).
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "data/image.h"
#include "data/image_internal.h"

/* Belt and braces: libpng keeps at most this many ancillary chunks and
 * allocates at most this much for one; we skip them anyway (see below). */
#define CHUNK_CACHE_MAX 64
#define CHUNK_MALLOC_MAX (4u << 20)

typedef struct png_job {
    png_structp png;
    png_infop info;
    const uint8_t *data;
    size_t len, pos;
    kiln_code code;
    char msg[512];
    uint8_t *pixels; /* w * h * 3 (RGB) or * 4 (RGBA before compositing) */
    png_bytep *rows;
    png_uint_32 width, height;
    int has_alpha;
} png_job;

/* ---------------- libpng callbacks ---------------- */

static void on_error(png_structp png, png_const_charp msg)
{
    png_job *job = png_get_error_ptr(png);
    /* job->code may already be set (ELIMIT, ENOMEM) by the one raising this. */
    if (job->code == KILN_OK)
        job->code = KILN_EFORMAT;
    snprintf(job->msg, sizeof job->msg, "PNG: %s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* recoverable: a bad ancillary chunk, an odd sRGB profile */
}

static void on_read(png_structp png, png_bytep out, size_t n)
{
    png_job *job = png_get_io_ptr(png);
    if (n > job->len - job->pos)
        png_error(png, "truncated (premature end of data)");
    memcpy(out, job->data + job->pos, n);
    job->pos += n;
}

/* ---------------- setup ---------------- */

/* Every chunk but IHDR, PLTE, tRNS, IDAT and IEND (the only ones that
 * change RGB pixels as we produce them) is skipped unparsed: saves time
 * and keeps zTXt/iCCP/iTXt inflation (and their bugs) out of reach. */
static void ignore_ancillary(png_structp png)
{
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
}

/* Transforms to 8-bit RGB, or RGBA when the image has any transparency. */
static void set_transforms(png_job *job)
{
    png_structp png = job->png;
    png_infop info = job->info;
    int type = png_get_color_type(png, info);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);
    if (type == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    /* The high byte, as PIL reads 16-bit RGB. */
    if (png_get_bit_depth(png, info) == 16)
        png_set_strip_16(png);
    if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

static void check_size(png_job *job, uint64_t max_pixels)
{
    png_uint_32 w = png_get_image_width(job->png, job->info);
    png_uint_32 h = png_get_image_height(job->png, job->info);
    if ((uint64_t)w * h > max_pixels) {
        char m[128];
        snprintf(m, sizeof m, "%ux%u is more than %llu pixels", (unsigned)w, (unsigned)h,
                 (unsigned long long)max_pixels);
        job->code = KILN_ELIMIT;
        png_error(job->png, m);
    }
    job->width = w;
    job->height = h;
}

static void alloc_rows(png_job *job)
{
    size_t bpp = job->has_alpha ? 4 : 3;
    size_t stride = (size_t)job->width * bpp;
    if (png_get_rowbytes(job->png, job->info) != stride)
        png_error(job->png, "unexpected row size after transforms");
    job->pixels = malloc(stride * job->height);
    job->rows = malloc(sizeof *job->rows * job->height);
    if (!job->pixels || !job->rows) {
        job->code = KILN_ENOMEM;
        png_error(job->png, "out of memory");
    }
    for (png_uint_32 y = 0; y < job->height; y++)
        job->rows[y] = job->pixels + y * stride;
}

/* Everything that can longjmp. */
static int png_run(png_job *job, uint64_t max_pixels)
{
    if (setjmp(png_jmpbuf(job->png)))
        return job->code;
    png_uint_32 lim = max_pixels > PNG_UINT_31_MAX ? PNG_UINT_31_MAX : (png_uint_32)max_pixels;
    png_set_user_limits(job->png, lim, lim);
    png_set_chunk_cache_max(job->png, CHUNK_CACHE_MAX);
    png_set_chunk_malloc_max(job->png, CHUNK_MALLOC_MAX);
    ignore_ancillary(job->png);
    png_set_read_fn(job->png, job, on_read);
    png_read_info(job->png, job->info);
    check_size(job, max_pixels);
    set_transforms(job);
    job->has_alpha = (png_get_color_type(job->png, job->info) & PNG_COLOR_MASK_ALPHA) != 0;
    alloc_rows(job);
    png_read_image(job->png, job->rows);
    return KILN_OK;
}

/* ---------------- compositing ---------------- */

/* out = a*c + (1-a)*255, rounded. In place: RGBA w*h*4 -> RGB w*h*3. */
static void composite_on_white(uint8_t *px, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = px + i * 4;
        unsigned a = s[3], bg = 255u * (255u - a);
        unsigned r = s[0], g = s[1], b = s[2];
        uint8_t *d = px + i * 3;
        d[0] = (uint8_t)((r * a + bg + 127) / 255);
        d[1] = (uint8_t)((g * a + bg + 127) / 255);
        d[2] = (uint8_t)((b * a + bg + 127) / 255);
    }
}

int img_png_decode(const uint8_t *data, size_t len, uint64_t max_pixels, kiln_image *out,
                   kiln_err *err)
{
    png_job job;
    int rc;
    memset(&job, 0, sizeof job);
    job.data = data;
    job.len = len;
    job.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, on_error, on_warning);
    if (job.png)
        job.info = png_create_info_struct(job.png);
    if (!job.png || !job.info) {
        rc = kiln_err_set(err, KILN_ENOMEM, "PNG: out of memory");
        goto fail;
    }
    rc = png_run(&job, max_pixels);
    if (rc != KILN_OK) {
        kiln_err_set(err, (kiln_code)rc, "%s", job.msg);
        goto fail;
    }
    if (job.has_alpha)
        composite_on_white(job.pixels, (size_t)job.width * job.height);
    out->width = (int)job.width;
    out->height = (int)job.height;
    out->pixels = job.pixels; /* an RGBA buffer keeps its slack 4th quarter */
    png_destroy_read_struct(&job.png, &job.info, NULL);
    free(job.rows);
    return KILN_OK;
fail:
    png_destroy_read_struct(&job.png, &job.info, NULL);
    free(job.rows);
    free(job.pixels);
    return rc;
}
