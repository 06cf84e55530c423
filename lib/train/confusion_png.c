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
#include <stdio.h>
#include <string.h>

#include "train/evaluate.h"
#include "train/picture.h"

#define ADVANCE PICTURE_ADVANCE
#define TEXT_H PICTURE_TEXT_H
#define MARGIN 16
#define GAP 10
#define LABEL_MAX 16           /* longer class names: 15 characters + ellipsis */
#define TEXT_MAX_CLASSES 60
#define MIN_CELL 44

static const picture_rgb WHITE = {255, 255, 255}, INK = {20, 20, 20}, GRID = {190, 190, 200};

/* White to matplotlib's darkest "Blues" (8, 48, 107). */
static picture_rgb shade(double v)
{
    picture_rgb c = {(uint8_t)(255 - v * (255 - 8) + 0.5), (uint8_t)(255 - v * (255 - 48) + 0.5),
             (uint8_t)(255 - v * (255 - 107) + 0.5)};
    return c;
}

typedef struct layout {
    int k, text, cell, up;
    int label_chars;     /* longest drawn label */
    int grid_x, grid_y;
    int col_label_h;
} layout;

static void plan_layout(const kiln_eval_metrics *m, int title_chars, layout *L, picture *cv)
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
        int n = picture_label(m->classes[c], LABEL_MAX, buf);
        if (n > L->label_chars)
            L->label_chars = n;
    }
    if (L->text) {
        L->cell = picture_text_px(digits) + 2 * GAP;
        if (L->cell < MIN_CELL)
            L->cell = MIN_CELL;
        L->up = picture_text_px(L->label_chars) > L->cell - 4;
        L->col_label_h = L->up ? picture_text_px(L->label_chars) : TEXT_H;
    } else {
        /* At most 8 px a cell and about 3000 px a grid. */
        L->cell = 3000 / k > 8 ? 8 : (3000 / k < 1 ? 1 : 3000 / k);
    }
    int row_labels = L->text ? picture_text_px(L->label_chars) + GAP : 0;
    L->grid_x = MARGIN + TEXT_H + 2 * GAP + row_labels;
    L->grid_y = MARGIN + TEXT_H + 2 * GAP;
    cv->w = L->grid_x + k * L->cell + MARGIN;
    if (cv->w < 2 * MARGIN + picture_text_px(title_chars))
        cv->w = 2 * MARGIN + picture_text_px(title_chars);
    cv->h = L->grid_y + k * L->cell + GAP + L->col_label_h + GAP + TEXT_H + MARGIN;
}

static void draw_cells(picture *cv, const kiln_eval_metrics *m, const layout *L)
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
            picture_fill(cv, x, y, L->cell, L->cell, shade(v));
            if (!L->text)
                continue;
            int n = snprintf(num, sizeof num, "%llu", (unsigned long long)row[p]);
            picture_text(cv, x + (L->cell - picture_text_px(n)) / 2, y + (L->cell - TEXT_H) / 2, num,
                      v > 0.5 ? WHITE : INK, 0);
        }
    }
    /* Thin lines between cells keep equal shades apart. */
    for (int i = 0; L->text && i <= k; i++) {
        picture_fill(cv, L->grid_x + i * L->cell, L->grid_y, 1, k * L->cell, GRID);
        picture_fill(cv, L->grid_x, L->grid_y + i * L->cell, k * L->cell + 1, 1, GRID);
    }
}

static void draw_labels(picture *cv, const kiln_eval_metrics *m, const layout *L)
{
    char buf[LABEL_MAX + 1];
    int grid_side = L->k * L->cell, below = L->grid_y + grid_side + GAP;
    for (int c = 0; L->text && c < L->k; c++) {
        int n = picture_label(m->classes[c], LABEL_MAX, buf), w = picture_text_px(n);
        int mid = c * L->cell + L->cell / 2;
        picture_text(cv, L->grid_x - GAP - w, L->grid_y + mid - TEXT_H / 2, buf, INK, 0);
        if (L->up) /* right-aligned to the grid, reading upwards */
            picture_text(cv, L->grid_x + mid - TEXT_H / 2, below + w, buf, INK, 1);
        else
            picture_text(cv, L->grid_x + mid - w / 2, below, buf, INK, 0);
    }
    picture_text(cv, L->grid_x + (grid_side - picture_text_px(9)) / 2, below + L->col_label_h + GAP,
              "predicted", INK, 0);
    picture_text(cv, MARGIN, L->grid_y + (grid_side + picture_text_px(4)) / 2, "true", INK, 1);
}

int kiln_eval_confusion_png(const char *path, const kiln_eval_metrics *m, const char *title,
                            kiln_err *err)
{
    layout L;
    picture cv = {0};
    char title_buf[121];
    int title_chars = picture_label(title ? title : "", 120, title_buf);
    plan_layout(m, title_chars, &L, &cv);
    char what[96];
    snprintf(what, sizeof what, "evaluate: a confusion matrix of %d classes", m->num_classes);
    int rc = picture_new(&cv, cv.w, cv.h, what, err);
    if (rc != KILN_OK)
        return rc;
    picture_text(&cv, MARGIN, MARGIN, title_buf, INK, 0);
    draw_cells(&cv, m, &L);
    draw_labels(&cv, m, &L);
    rc = picture_write_png(&cv, path, err);
    picture_free(&cv);
    return rc == KILN_OK ? rc : kiln_err_wrap(err, "evaluate");
}
