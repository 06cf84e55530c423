/* lib/train/curves_png.c — the training curves as a picture: loss (left)
 * and accuracy (right) per epoch, train in blue and val in orange (the
 * first two colours of matplotlib's palette), with value and epoch axes.
 *
 *   title                         ■ train  ■ val
 *   loss                          accuracy
 *   2.0 ┤╲                        1.0 ┤
 *       │ ╲___                        │   ___----
 *     0 ┼──────── epoch             0 ┼/──────── epoch
 *
 * Loss axes run from 0 to a round number above the largest loss; accuracy
 * from 0 to 1. Epoch ticks thin out so their labels never overlap.
 * Values that are not finite are left out of the lines. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "train/picture.h"
#include "train/train.h"

#define PLOT_W 480
#define PLOT_H 300
#define MARGIN 20
#define AXIS_LABEL_W (6 * PICTURE_ADVANCE) /* "0.0001" fits */
#define GAP 10
#define Y_TICKS 5

static const picture_rgb INK = {20, 20, 20}, GRID = {225, 225, 232};
static const picture_rgb TRAIN = {31, 119, 180}, VAL = {255, 127, 14};

typedef struct panel {
    int x, y;          /* top-left of the plot area */
    double y_max;      /* the axis runs 0..y_max */
    double step;       /* between value ticks */
    int n;             /* epochs */
} panel;

/* 1, 2 or 5 times a power of ten, at least v (v > 0). */
static double round_up(double v)
{
    double p = pow(10.0, floor(log10(v)));
    return v <= p ? p : v <= 2 * p ? 2 * p : v <= 5 * p ? 5 * p : 10 * p;
}

static int px_x(const panel *P, int epoch)
{
    if (P->n <= 1)
        return P->x + PLOT_W / 2;
    return P->x + (int)lround((double)(epoch - 1) * (PLOT_W - 1) / (P->n - 1));
}

static int px_y(const panel *P, double v)
{
    double t = v / P->y_max;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return P->y + PLOT_H - 1 - (int)lround(t * (PLOT_H - 1));
}

static void draw_axes(picture *pic, const panel *P, const char *name)
{
    char buf[32];
    picture_text(pic, P->x, P->y - GAP - PICTURE_TEXT_H, name, INK, 0);
    int ticks = (int)lround(P->y_max / P->step);
    for (int i = 0; i <= ticks; i++) {
        double v = P->step * i;
        int y = px_y(P, v);
        picture_fill(pic, P->x, y, PLOT_W, 1, GRID);
        int len = snprintf(buf, sizeof buf, "%g", v);
        picture_text(pic, P->x - GAP - picture_text_px(len), y - PICTURE_TEXT_H / 2, buf, INK,
                     0);
    }
    /* Every k-th epoch, k chosen so labels keep a character's gap. */
    int widest = snprintf(buf, sizeof buf, "%d", P->n), k = 1;
    while (P->n > 1 && (double)PLOT_W * k / (P->n - 1) < picture_text_px(widest + 1))
        k++;
    for (int e = 1; e <= P->n; e += k) {
        int x = px_x(P, e), len = snprintf(buf, sizeof buf, "%d", e);
        picture_fill(pic, x, P->y + PLOT_H, 1, 6, INK);
        picture_text(pic, x - picture_text_px(len) / 2, P->y + PLOT_H + 8, buf, INK, 0);
    }
    picture_text(pic, P->x + (PLOT_W - picture_text_px(5)) / 2,
                 P->y + PLOT_H + 8 + PICTURE_TEXT_H + 6, "epoch", INK, 0);
    picture_fill(pic, P->x, P->y, 1, PLOT_H, INK);
    picture_fill(pic, P->x, P->y + PLOT_H - 1, PLOT_W, 1, INK);
}

/* One series: values[i * stride] for epochs 1..n. */
static void draw_series(picture *pic, const panel *P, const kiln_train_epoch *h,
                        size_t offset, picture_rgb c)
{
    int have_prev = 0, px = 0, py = 0;
    for (int i = 0; i < P->n; i++) {
        double v = *(const double *)((const char *)&h[i] + offset);
        if (!isfinite(v)) {
            have_prev = 0;
            continue;
        }
        int x = px_x(P, i + 1), y = px_y(P, v);
        if (have_prev)
            picture_line(pic, px, py, x, y, 3, c);
        picture_fill(pic, x - 3, y - 3, 7, 7, c);
        have_prev = 1;
        px = x;
        py = y;
    }
}

/* 0..max in at most Y_TICKS round steps, max at or above every loss. */
static void loss_axis(const kiln_train_epoch *h, int n, panel *P)
{
    double hi = 0;
    for (int i = 0; i < n; i++) {
        if (isfinite(h[i].train_loss) && h[i].train_loss > hi)
            hi = h[i].train_loss;
        if (isfinite(h[i].val_loss) && h[i].val_loss > hi)
            hi = h[i].val_loss;
    }
    P->step = hi > 0 ? round_up(hi / Y_TICKS) : 0.2;
    P->y_max = hi > 0 ? ceil(hi / P->step - 1e-9) * P->step : 1.0;
}

static void draw_legend(picture *pic, int right, int y)
{
    int x = right - (2 * (14 + 8) + picture_text_px(5) + 24 + picture_text_px(3));
    picture_fill(pic, x, y + 1, 14, 14, TRAIN);
    picture_text(pic, x + 22, y, "train", INK, 0);
    x += 22 + picture_text_px(5) + 24;
    picture_fill(pic, x, y + 1, 14, 14, VAL);
    picture_text(pic, x + 22, y, "val", INK, 0);
}

int kiln_train_curves_png(const char *path, const kiln_train_epoch *history, int n,
                          const char *title, kiln_err *err)
{
    picture pic;
    char title_buf[101];
    if (n < 1)
        return kiln_err_set(err, KILN_EINVAL, "train: no epochs to draw in %s", path);
    int title_len = picture_label(title ? title : "", 100, title_buf);
    int top = MARGIN + PICTURE_TEXT_H + 2 * GAP + PICTURE_TEXT_H + GAP;
    int panel_w = AXIS_LABEL_W + GAP + PLOT_W;
    int w = MARGIN + 2 * panel_w + 3 * MARGIN + MARGIN;
    int h = top + PLOT_H + 2 * PICTURE_TEXT_H + 20 + MARGIN;
    if (w < 2 * MARGIN + picture_text_px(title_len))
        w = 2 * MARGIN + picture_text_px(title_len);
    int rc = picture_new(&pic, w, h, "train: the training curves", err);
    if (rc != KILN_OK)
        return rc;
    panel loss = {MARGIN + AXIS_LABEL_W + GAP, top, 1.0, 0.2, n};
    panel acc = {loss.x + PLOT_W + 3 * MARGIN + AXIS_LABEL_W + GAP, top, 1.0, 0.2, n};
    loss_axis(history, n, &loss);
    picture_text(&pic, MARGIN, MARGIN, title_buf, INK, 0);
    draw_legend(&pic, acc.x + PLOT_W, MARGIN);
    draw_axes(&pic, &loss, "loss");
    draw_axes(&pic, &acc, "accuracy");
    draw_series(&pic, &loss, history, offsetof(kiln_train_epoch, train_loss), TRAIN);
    draw_series(&pic, &loss, history, offsetof(kiln_train_epoch, val_loss), VAL);
    draw_series(&pic, &acc, history, offsetof(kiln_train_epoch, train_accuracy), TRAIN);
    draw_series(&pic, &acc, history, offsetof(kiln_train_epoch, val_accuracy), VAL);
    rc = picture_write_png(&pic, path, err);
    picture_free(&pic);
    return rc == KILN_OK ? rc : kiln_err_wrap(err, "train");
}
