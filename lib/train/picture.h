/* lib/train/picture.h — a small RGB canvas for kiln's pictures (the
 * confusion matrix, the training curves), private to lib/train: filled
 * rectangles, lines, text in the embedded 5x7 font at 2x, and PNG output
 * through libpng, written atomically.
 *
 * A canvas owns its pixels (picture_new / picture_free). Drawing clips to
 * the canvas, so callers may draw partly outside it. */
#ifndef KILN_TRAIN_PICTURE_H
#define KILN_TRAIN_PICTURE_H

#include <stdint.h>

#include "common/err.h"

#define PICTURE_SCALE 2
#define PICTURE_ADVANCE ((5 + 1) * PICTURE_SCALE) /* 12 px per character */
#define PICTURE_TEXT_H (8 * PICTURE_SCALE)        /* 16 px, descenders included */
#define PICTURE_MAX_SIDE 16000                    /* larger pictures are refused */

typedef struct picture {
    int w, h;
    uint8_t *px; /* RGB, row-major */
} picture;

typedef struct picture_rgb {
    uint8_t r, g, b;
} picture_rgb;

/* A white w x h canvas. ELIMIT past PICTURE_MAX_SIDE, ENOMEM; `what` names
 * the picture in messages. */
int picture_new(picture *p, int w, int h, const char *what, kiln_err *err);
void picture_free(picture *p);

void picture_fill(picture *p, int x, int y, int w, int h, picture_rgb c);
/* A line `thick` pixels wide from (x0, y0) to (x1, y1). */
void picture_line(picture *p, int x0, int y0, int x1, int y1, int thick, picture_rgb c);

/* The text as drawn: at most `max` glyph bytes, the last an ellipsis when
 * cut; bytes outside the font become '?'. Writes max + 1 bytes at most into
 * `out`; returns the length. */
int picture_label(const char *s, int max, char *out);
/* Width in pixels of `chars` characters. */
int picture_text_px(int chars);
/* Text with its top-left at (x, y); `up`: rotated a quarter turn
 * anticlockwise, reading upwards from (x, y) = bottom-left. */
void picture_text(picture *p, int x, int y, const char *s, picture_rgb c, int up);

/* Write the canvas to `path` as PNG (temp name, then rename). */
int picture_write_png(const picture *p, const char *path, kiln_err *err);

#endif
