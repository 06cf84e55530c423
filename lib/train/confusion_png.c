/* lib/train/confusion_png.c — the confusion matrix as a picture.
 *
 * Layout (pixels at the font's 2x scale, 12 px per character, 16 px high):
 *
 *     title
 *           row labels | grid of cells, each shaded by its row-normalised
 *   "true"  (class     | value (white -> dark blue) with the count written
 *   rotated  names)    | in it
 *                        column labels (horizontal when they fit a cell,
 *                        else rotated to read upwards)
 *                        "predicted"
 *
 * Many classes make cells too small for text: above TEXT_MAX_CLASSES the
 * cells shrink (8 px down to 1 px, the grid kept near 3000 px) and only the
 * shading and the axis titles are drawn. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "train/evaluate.h"
#include "train/evaluate_internal.h"

#define SCALE 2
#define ADVANCE ((KILN_FONT_W + 1) * SCALE) /* 12 px per character */
#define TEXT_H (KILN_FONT_H * SCALE)        /* 16 px, descenders included */
#define MARGIN 16
#define GAP 10
#define LABEL_MAX 16           /* longer class names: 15 characters + ellipsis */
#define TEXT_MAX_CLASSES 60
#define MIN_CELL 44
#define MAX_SIDE 16000         /* refuse pictures larger than this on a side */

typedef struct canvas {
    int w, h;
    uint8_t *px; /* RGB */
} canvas;

typedef struct rgb {
    uint8_t r, g, b;
} rgb;

static const rgb WHITE = {255, 255, 255}, INK = {20, 20, 20}, GRID = {190, 190, 200};

static void fill_rect(canvas *cv, int x, int y, int w, int h, rgb c)
{
    for (int j = y; j < y + h; j++) {
        if (j < 0 || j >= cv->h)
            continue;
        for (int i = x; i < x + w; i++) {
            if (i < 0 || i >= cv->w)
                continue;
            uint8_t *p = cv->px + ((size_t)j * cv->w + i) * 3;
            p[0] = c.r;
            p[1] = c.g;
            p[2] = c.b;
        }
    }
}

/* The label as drawn: at most `max` glyph bytes, the last an ellipsis when
 * cut; bytes outside the font become '?'. Returns the length. */
static int label_text(const char *s, int max, char *out)
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

static int text_px(int chars)
{
    return chars > 0 ? chars * ADVANCE - SCALE : 0;
}

/* Text with its top-left at (x, y); `up`: rotated a quarter turn
 * anticlockwise, reading upwards from (x, y) = bottom-left. */
static void draw_text(canvas *cv, int x, int y, const char *s, rgb c, int up)
{
    for (int k = 0; s[k]; k++) {
        const uint8_t *g = kiln_font5x7_glyph((unsigned char)s[k]);
        for (int gx = 0; gx < KILN_FONT_W; gx++)
            for (int gy = 0; gy < KILN_FONT_H; gy++) {
                if (!(g[gx] >> gy & 1))
                    continue;
                int along = k * ADVANCE + gx * SCALE;
                if (up)
                    fill_rect(cv, x + gy * SCALE, y - along - SCALE, SCALE, SCALE, c);
                else
                    fill_rect(cv, x + along, y + gy * SCALE, SCALE, SCALE, c);
            }
    }
}

/* White to matplotlib's darkest "Blues" (8, 48, 107). */
static rgb shade(double v)
{
    rgb c = {(uint8_t)(255 - v * (255 - 8) + 0.5), (uint8_t)(255 - v * (255 - 48) + 0.5),
             (uint8_t)(255 - v * (255 - 107) + 0.5)};
    return c;
}

typedef struct layout {
    int k, text, cell, up;
    int label_chars;     /* longest drawn label */
    int grid_x, grid_y;
    int col_label_h;
} layout;

static void plan_layout(const kiln_eval_metrics *m, int title_chars, layout *L, canvas *cv)
{
    int k = m->num_classes, digits = 1;
    char buf[LABEL_MAX + 1];
    memset(L, 0, sizeof *L);
    L->k = k;
    L->text = k <= TEXT_MAX_CLASSES;
    for (size_t i = 0; i < (size_t)k * k; i++) {
        int d = snprintf(buf, sizeof buf, "%llu", (unsigned long long)m->confusion[i]);
        if (d > digits)
            digits = d;
    }
    for (int c = 0; c < k; c++) {
        int n = label_text(m->classes[c], LABEL_MAX, buf);
        if (n > L->label_chars)
            L->label_chars = n;
    }
    if (L->text) {
        L->cell = text_px(digits) + 2 * GAP;
        if (L->cell < MIN_CELL)
            L->cell = MIN_CELL;
        L->up = text_px(L->label_chars) > L->cell - 4;
        L->col_label_h = L->up ? text_px(L->label_chars) : TEXT_H;
    } else {
        /* At most 8 px a cell and about 3000 px a grid. */
        L->cell = 3000 / k > 8 ? 8 : (3000 / k < 1 ? 1 : 3000 / k);
    }
    int row_labels = L->text ? text_px(L->label_chars) + GAP : 0;
    L->grid_x = MARGIN + TEXT_H + 2 * GAP + row_labels;
    L->grid_y = MARGIN + TEXT_H + 2 * GAP;
    cv->w = L->grid_x + k * L->cell + MARGIN;
    if (cv->w < 2 * MARGIN + text_px(title_chars))
        cv->w = 2 * MARGIN + text_px(title_chars);
    cv->h = L->grid_y + k * L->cell + GAP + L->col_label_h + GAP + TEXT_H + MARGIN;
}

static void draw_cells(canvas *cv, const kiln_eval_metrics *m, const layout *L)
{
    int k = L->k;
    char num[32];
    for (int t = 0; t < k; t++) {
        const uint64_t *row = m->confusion + (size_t)t * k;
        uint64_t sum = 0;
        for (int p = 0; p < k; p++)
            sum += row[p];
        for (int p = 0; p < k; p++) {
            double v = sum ? (double)row[p] / (double)sum : 0.0;
            int x = L->grid_x + p * L->cell, y = L->grid_y + t * L->cell;
            fill_rect(cv, x, y, L->cell, L->cell, shade(v));
            if (!L->text)
                continue;
            int n = snprintf(num, sizeof num, "%llu", (unsigned long long)row[p]);
            draw_text(cv, x + (L->cell - text_px(n)) / 2, y + (L->cell - TEXT_H) / 2, num,
                      v > 0.5 ? WHITE : INK, 0);
        }
    }
    /* Thin lines between cells keep equal shades apart. */
    for (int i = 0; L->text && i <= k; i++) {
        fill_rect(cv, L->grid_x + i * L->cell, L->grid_y, 1, k * L->cell, GRID);
        fill_rect(cv, L->grid_x, L->grid_y + i * L->cell, k * L->cell + 1, 1, GRID);
    }
}

static void draw_labels(canvas *cv, const kiln_eval_metrics *m, const layout *L)
{
    char buf[LABEL_MAX + 1];
    int grid_side = L->k * L->cell, below = L->grid_y + grid_side + GAP;
    for (int c = 0; L->text && c < L->k; c++) {
        int n = label_text(m->classes[c], LABEL_MAX, buf), w = text_px(n);
        int mid = c * L->cell + L->cell / 2;
        draw_text(cv, L->grid_x - GAP - w, L->grid_y + mid - TEXT_H / 2, buf, INK, 0);
        if (L->up) /* right-aligned to the grid, reading upwards */
            draw_text(cv, L->grid_x + mid - TEXT_H / 2, below + w, buf, INK, 1);
        else
            draw_text(cv, L->grid_x + mid - w / 2, below, buf, INK, 0);
    }
    draw_text(cv, L->grid_x + (grid_side - text_px(9)) / 2, below + L->col_label_h + GAP,
              "predicted", INK, 0);
    draw_text(cv, MARGIN, L->grid_y + (grid_side + text_px(4)) / 2, "true", INK, 1);
}

static int write_png(const char *path, const canvas *cv, kiln_err *err)
{
    png_image img;
    kiln_atomic_file *f = kiln_atomic_open(path, err);
    if (!f)
        return err ? err->code : KILN_EIO;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)cv->w;
    img.height = (png_uint_32)cv->h;
    img.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_stdio(&img, kiln_atomic_stream(f), 0, cv->px, 0, NULL)) {
        kiln_atomic_abort(f);
        return kiln_err_set(err, KILN_EIO, "evaluate: writing %s: libpng: %s", path,
                            img.message);
    }
    png_image_free(&img);
    return kiln_atomic_commit(f, err);
}

int kiln_eval_confusion_png(const char *path, const kiln_eval_metrics *m, const char *title,
                            kiln_err *err)
{
    layout L;
    canvas cv = {0};
    char title_buf[121];
    int title_chars = label_text(title ? title : "", 120, title_buf);
    plan_layout(m, title_chars, &L, &cv);
    if (cv.w > MAX_SIDE || cv.h > MAX_SIDE)
        return kiln_err_set(err, KILN_ELIMIT,
                            "evaluate: a confusion matrix of %d classes would be %dx%d pixels, "
                            "over the %d limit", m->num_classes, cv.w, cv.h, MAX_SIDE);
    cv.px = malloc((size_t)cv.w * cv.h * 3);
    if (!cv.px)
        return kiln_err_set(err, KILN_ENOMEM, "evaluate: out of memory for a %dx%d picture",
                            cv.w, cv.h);
    memset(cv.px, 255, (size_t)cv.w * cv.h * 3);
    draw_text(&cv, MARGIN, MARGIN, title_buf, INK, 0);
    draw_cells(&cv, m, &L);
    draw_labels(&cv, m, &L);
    int rc = write_png(path, &cv, err);
    free(cv.px);
    return rc;
}
