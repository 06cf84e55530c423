/* lib/train/evaluate_internal.h — pieces shared by the evaluate files. */
#ifndef KILN_TRAIN_EVALUATE_INTERNAL_H
#define KILN_TRAIN_EVALUATE_INTERNAL_H

#include <stdint.h>

/* The embedded 5x7 bitmap font (font5x7.c): glyphs for ASCII 32..126 and,
 * at 127, a one-cell ellipsis. Each glyph is 5 columns, left to right;
 * bit r of a column is row r, top row first; row 7 holds descenders. */
#define KILN_FONT_W 5
#define KILN_FONT_H 8
#define KILN_FONT_FIRST 32
#define KILN_FONT_LAST 127
#define KILN_FONT_ELLIPSIS 127

/* The glyph of byte `ch`; '?' for bytes the font lacks. */
const uint8_t *kiln_font5x7_glyph(unsigned char ch);

#endif
