/* lib/train/picture.c — the canvas behind kiln's PNG pictures. */
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "train/evaluate_internal.h"
#include "train/picture.h"

int picture_new(picture *p, int w, int h, const char *what, kiln_err *err)
{
    memset(p, 0, sizeof *p);
    if (w <= 0 || h <= 0 || w > PICTURE_MAX_SIDE || h > PICTURE_MAX_SIDE)
        return kiln_err_set(err, KILN_ELIMIT, "%s would be %dx%d pixels, over the %d limit",
                            what, w, h, PICTURE_MAX_SIDE);
    p->px = malloc((size_t)w * h * 3);
    if (!p->px)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory for %s (%dx%d)", what, w, h);
    memset(p->px, 255, (size_t)w * h * 3);
    p->w = w;
    p->h = h;
    return KILN_OK;
}

void picture_free(picture *p)
{
    free(p->px);
    memset(p, 0, sizeof *p);
}

void picture_fill(picture *p, int x, int y, int w, int h, picture_rgb c)
{
    int x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
    int x1 = x + w > p->w ? p->w : x + w, y1 = y + h > p->h ? p->h : y + h;
    for (int j = y0; j < y1; j++)
        for (int i = x0; i < x1; i++) {
            uint8_t *q = p->px + ((size_t)j * p->w + i) * 3;
            q[0] = c.r;
            q[1] = c.g;
            q[2] = c.b;
        }
}

/* Bresenham, stamping a thick x thick square at every step. */
void picture_line(picture *p, int x0, int y0, int x1, int y1, int thick, picture_rgb c)
{
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int e = dx + dy, half = thick / 2;
    for (;;) {
        picture_fill(p, x0 - half, y0 - half, thick, thick, c);
        if (x0 == x1 && y0 == y1)
            return;
        int e2 = 2 * e;
        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

int picture_label(const char *s, int max, char *out)
{
    int n = (int)strlen(s), len = n > max ? max : n;
    for (int i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[i] = (char)(ch >= KILN_FONT_FIRST && ch < KILN_FONT_LAST ? ch : '?');
    }
    if (n > max)
        out[max - 1] = (char)KILN_FONT_ELLIPSIS;
    out[len] = '\0';
    return len;
}

int picture_text_px(int chars)
{
    return chars > 0 ? chars * PICTURE_ADVANCE - PICTURE_SCALE : 0;
}

void picture_text(picture *p, int x, int y, const char *s, picture_rgb c, int up)
{
    const int S = PICTURE_SCALE;
    for (int k = 0; s[k]; k++) {
        const uint8_t *g = kiln_font5x7_glyph((unsigned char)s[k]);
        for (int gx = 0; gx < KILN_FONT_W; gx++)
            for (int gy = 0; gy < KILN_FONT_H; gy++) {
                if (!(g[gx] >> gy & 1))
                    continue;
                int along = k * PICTURE_ADVANCE + gx * S;
                if (up)
                    picture_fill(p, x + gy * S, y - along - S, S, S, c);
                else
                    picture_fill(p, x + along, y + gy * S, S, S, c);
            }
    }
}

int picture_write_png(const picture *p, const char *path, kiln_err *err)
{
    png_image img;
    kiln_atomic_file *f = kiln_atomic_open(path, err);
    if (!f)
        return err ? err->code : KILN_EIO;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)p->w;
    img.height = (png_uint_32)p->h;
    img.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_stdio(&img, kiln_atomic_stream(f), 0, p->px, 0, NULL)) {
        kiln_atomic_abort(f);
        return kiln_err_set(err, KILN_EIO, "writing %s: libpng: %s", path, img.message);
    }
    png_image_free(&img);
    return kiln_atomic_commit(f, err);
}
