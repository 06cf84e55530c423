/* Antialiased bilinear resizing. Contract in image.h.
 *
 * This is PIL's ImagingResample (Resample.c) for 8-bit images, step for
 * step, so results are bit-identical to PIL's Image.resize(BILINEAR) and
 * therefore to torchvision's transforms on PIL images:
 *   - per output pixel, a triangle filter centred at (i + 0.5) * scale,
 *     widened by the scale when shrinking (support = max(scale, 1)),
 *     taps clamped to the visible source, weights normalised in double,
 *     then rounded to 22-bit fixed point;
 *   - horizontal pass first, into a uint8 intermediate holding only the
 *     rows the vertical pass will read; then the vertical pass;
 *   - int32 accumulators starting at 0.5 (1 << 21), shifted and clamped.
 * A pass whose scale is exactly 1 is the identity (weights 1, 0) and is
 * done as a copy, as PIL skips it.
 *
 * Each axis is described by an axis_spec, which covers both uses:
 *   - kiln_image_resize_box: crop, then resize the crop (torchvision's
 *     resized_crop on a PIL image). Taps clamp to the box.
 *   - kiln_image_resize_center_crop: resize the whole image, then crop.
 *     Only the output pixels inside the crop are computed, on the full
 *     resize's sampling grid (offset by the crop) with taps clamped to the
 *     whole image, so it is exactly resize-then-crop, not an
 *     approximation with a shifted sampling phase.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"

#define PRECISION_BITS 22 /* PIL's: 32 - 8 - 2 */
#define HALF (1 << (PRECISION_BITS - 1))
#define ALIGN 64

typedef struct axis_spec {
    int len;      /* visible source pixels: taps clamp to [0, len) */
    int base;     /* source index of visible pixel 0 */
    double scale; /* source pixels per output pixel of the full resize */
    int offset;   /* index of output pixel 0 within the full resize */
    int out_n;    /* output pixels computed */
} axis_spec;

typedef struct axis_coeffs {
    int ksize;  /* stride of k */
    int *first; /* out_n: first tap, relative to base */
    int *count; /* out_n: number of taps */
    int32_t *k; /* out_n * ksize fixed-point weights */
} axis_coeffs;

/* ---------------- sizes ---------------- */

static double support_of(double scale)
{
    return scale < 1.0 ? 1.0 : scale; /* the triangle's support is 1 */
}

static int ksize_of(const axis_spec *a)
{
    return (int)ceil(support_of(a->scale)) * 2 + 1;
}

static size_t round_up(size_t n)
{
    return (n + ALIGN - 1) / ALIGN * ALIGN;
}

static size_t coeff_bytes(const axis_spec *a)
{
    size_t n = (size_t)a->out_n;
    return round_up(n * sizeof(int)) * 2 + round_up(n * (size_t)ksize_of(a) * sizeof(int32_t));
}

/* Source rows the vertical pass can touch: the span of all its taps. */
static size_t rows_bound(const axis_spec *y)
{
    double span = y->out_n * y->scale + 2 * support_of(y->scale) + 2;
    return span >= y->len ? (size_t)y->len : (size_t)span;
}

static size_t scratch_bytes(const axis_spec *x, const axis_spec *y)
{
    size_t w3 = (size_t)x->out_n * 3;
    return coeff_bytes(x) + coeff_bytes(y) + round_up(w3 * rows_bound(y)) +
           round_up(w3 * sizeof(int32_t));
}

static void *carve(uint8_t **p, size_t n)
{
    void *r = *p;
    *p += round_up(n);
    return r;
}

/* ---------------- coefficients ---------------- */

static double triangle(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* PIL's precompute_coeffs + normalize_coeffs_8bpc. The weights are
 * computed twice (sum, then normalise) instead of buffered in doubles;
 * the arithmetic is the same, so are the results. */
static void compute_coeffs(const axis_spec *a, axis_coeffs *c)
{
    double scale = a->scale, support = support_of(scale);
    double ss = 1.0 / support;
    for (int i = 0; i < a->out_n; i++) {
        double center = (i + a->offset + 0.5) * scale;
        int xmin = (int)(center - support + 0.5);
        int xmax = (int)(center + support + 0.5);
        if (xmin < 0)
            xmin = 0;
        if (xmax > a->len)
            xmax = a->len;
        int n = xmax - xmin;
        double ww = 0.0;
        for (int x = 0; x < n; x++)
            ww += triangle((x + xmin - center + 0.5) * ss);
        int32_t *k = c->k + (size_t)i * c->ksize;
        for (int x = 0; x < n; x++) {
            double w = triangle((x + xmin - center + 0.5) * ss);
            if (ww != 0.0)
                w /= ww;
            k[x] = (int32_t)(0.5 + w * (1 << PRECISION_BITS));
        }
        /* n >= 1: the centre lies in [0, len) and the support is >= 1,
         * so xmin <= centre - 0.5 < centre + 0.5 < xmax. */
        c->first[i] = xmin;
        c->count[i] = n;
    }
}

static void carve_coeffs(uint8_t **p, const axis_spec *a, axis_coeffs *c)
{
    size_t n = (size_t)a->out_n;
    c->ksize = ksize_of(a);
    c->first = carve(p, n * sizeof(int));
    c->count = carve(p, n * sizeof(int));
    c->k = carve(p, n * (size_t)c->ksize * sizeof(int32_t));
    compute_coeffs(a, c);
}

/* ---------------- passes ---------------- */

/* Sums are never negative here (the triangle's weights are not), so the
 * clamp is one-sided, which vectorises. */
static inline uint8_t clip8_pos(int32_t v)
{
    int32_t s = v >> PRECISION_BITS;
    return (uint8_t)(s > 255 ? 255 : s);
}

/* Give every output of the horizontal pass the same number of taps, the
 * largest, by adding zero weights (on the side that stays inside the
 * source): a fixed count lets hpass_rows use an unrolled loop with no
 * mispredicted exits, and adding 0 * pixel changes no sum. Returns the
 * common count, or 0 when the source is too narrow to pad. */
static int pad_taps(axis_coeffs *c, int out_n, int len)
{
    int kmax = 0;
    for (int i = 0; i < out_n; i++)
        kmax = c->count[i] > kmax ? c->count[i] : kmax;
    if (kmax > len)
        return 0;
    for (int i = 0; i < out_n; i++) {
        int32_t *k = c->k + (size_t)i * c->ksize;
        int n = c->count[i];
        int shift = c->first[i] + kmax > len ? c->first[i] + kmax - len : 0;
        memmove(k + shift, k, (size_t)n * sizeof *k);
        memset(k, 0, (size_t)shift * sizeof *k);
        memset(k + shift + n, 0, (size_t)(kmax - n - shift) * sizeof *k);
        c->first[i] -= shift;
        c->count[i] = kmax;
    }
    return kmax;
}

/* One output pixel from `taps` source pixels at p, for one source row,
 * or for two (`two`: the rows at p and p + stride, written to out and
 * out + out_stride): the pair shares the loads of the weights and the
 * loop, and its six independent sums keep the multiplier busy. Always
 * inlined, so `taps` and `two` are constants in each caller below. */
static inline __attribute__((always_inline)) void hpixel(const uint8_t *p, size_t stride,
                                                         const int32_t *k, int taps, int two,
                                                         uint8_t *out, size_t out_stride)
{
    int32_t a0 = HALF, a1 = HALF, a2 = HALF, b0 = HALF, b1 = HALF, b2 = HALF;
    for (int t = 0; t < taps; t++, p += 3) {
        int32_t kt = k[t];
        a0 += p[0] * kt;
        a1 += p[1] * kt;
        a2 += p[2] * kt;
        if (two) {
            b0 += p[stride] * kt;
            b1 += p[stride + 1] * kt;
            b2 += p[stride + 2] * kt;
        }
    }
    out[0] = clip8_pos(a0);
    out[1] = clip8_pos(a1);
    out[2] = clip8_pos(a2);
    if (two) {
        out[out_stride] = clip8_pos(b0);
        out[out_stride + 1] = clip8_pos(b1);
        out[out_stride + 2] = clip8_pos(b2);
    }
}

#define HPASS_FIXED(n)                                                                             \
    for (int i = 0; i < out_n; i++)                                                                \
        hpixel(in + (size_t)c->first[i] * 3, stride, c->k + (size_t)i * c->ksize, n, two,          \
               out + (size_t)i * 3, out_stride);                                                   \
    return

/* One or two rows: `in` is the visible source row (pixel 0 = spec base). */
static inline __attribute__((always_inline)) void hpass_rows(const uint8_t *in, size_t stride,
                                                             uint8_t *out, size_t out_stride,
                                                             const axis_coeffs *c, int out_n,
                                                             int taps, int two)
{
    switch (taps) {
    case 2:
        HPASS_FIXED(2);
    case 3:
        HPASS_FIXED(3);
    case 4:
        HPASS_FIXED(4);
    case 5:
        HPASS_FIXED(5);
    default:
        for (int i = 0; i < out_n; i++)
            hpixel(in + (size_t)c->first[i] * 3, stride, c->k + (size_t)i * c->ksize, c->count[i],
                   two, out + (size_t)i * 3, out_stride);
    }
}

/* The horizontal pass over n rows, two at a time. */
static void hpass(const uint8_t *in, size_t stride, int n, uint8_t *out, size_t out_stride,
                  const axis_coeffs *c, int out_n, int taps)
{
    int r = 0;
    for (; r + 2 <= n; r += 2)
        hpass_rows(in + (size_t)r * stride, stride, out + (size_t)r * out_stride, out_stride, c,
                   out_n, taps, 1);
    if (r < n)
        hpass_rows(in + (size_t)r * stride, 0, out + (size_t)r * out_stride, 0, c, out_n, taps, 0);
}

/* Row r (>= row0) of the vertical pass's input is rows + (r - row0) *
 * stride. Accumulating a whole row per tap keeps the inner loops
 * contiguous; integer sums do not depend on the order, so this matches
 * PIL exactly. The loops run in fixed-size chunks so that GCC's -O2
 * vectoriser (which refuses loops needing a scalar epilogue) takes them. */
#define CHUNK 32

static void acc_row(int32_t *restrict acc, const uint8_t *restrict r, int32_t kt, size_t n)
{
    size_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK)
        for (int v = 0; v < CHUNK; v++)
            acc[i + v] += r[i + v] * kt;
    for (; i < n; i++)
        acc[i] += r[i] * kt;
}

/* The first tap: acc = 0.5 + r * kt. */
static void set_row(int32_t *restrict acc, const uint8_t *restrict r, int32_t kt, size_t n)
{
    size_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK)
        for (int v = 0; v < CHUNK; v++)
            acc[i + v] = HALF + r[i + v] * kt;
    for (; i < n; i++)
        acc[i] = HALF + r[i] * kt;
}

static void clip_row(uint8_t *restrict out, const int32_t *restrict acc, size_t n)
{
    size_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK)
        for (int v = 0; v < CHUNK; v++)
            out[i + v] = clip8_pos(acc[i + v]);
    for (; i < n; i++)
        out[i] = clip8_pos(acc[i]);
}

static void vpass(const uint8_t *rows, size_t stride, int row0, const axis_coeffs *c, int out_n,
                  size_t w3, int32_t *acc, uint8_t *out)
{
    for (int j = 0; j < out_n; j++, out += w3) {
        const int32_t *k = c->k + (size_t)j * c->ksize;
        const uint8_t *r = rows + (size_t)(c->first[j] - row0) * stride;
        /* Every output has at least one tap (see compute_coeffs). */
        set_row(acc, r, k[0], w3);
        for (int t = 1; t < c->count[j]; t++)
            acc_row(acc, r + (size_t)t * stride, k[t], w3);
        clip_row(out, acc, w3);
    }
}

static void copy_rows(const uint8_t *rows, size_t stride, int n, size_t w3, uint8_t *out)
{
    for (int j = 0; j < n; j++)
        memcpy(out + (size_t)j * w3, rows + (size_t)j * stride, w3);
}

/* Resize with the given axes into dst (out_n x out_n pixels of each
 * axis), using `scratch` of at least scratch_bytes(x, y). */
static void resize_run(const kiln_image *src, const axis_spec *x, const axis_spec *y,
                       kiln_image *dst, void *scratch)
{
    uint8_t *p = scratch;
    axis_coeffs cx, cy;
    size_t src_stride = (size_t)src->width * 3, w3 = (size_t)x->out_n * 3;
    carve_coeffs(&p, x, &cx);
    carve_coeffs(&p, y, &cy);
    int taps = pad_taps(&cx, x->out_n, x->len);
    /* Visible source rows [r0, r1) relative to y->base feed the vertical pass. */
    int r0 = y->scale == 1.0 ? y->offset : cy.first[0];
    int r1 =
        y->scale == 1.0 ? y->offset + y->out_n : cy.first[y->out_n - 1] + cy.count[y->out_n - 1];
    const uint8_t *rows = src->pixels + (size_t)(y->base + r0) * src_stride;
    size_t stride = src_stride;
    if (x->scale != 1.0) {
        uint8_t *tmp = carve(&p, w3 * (size_t)(r1 - r0));
        hpass(rows + (size_t)x->base * 3, src_stride, r1 - r0, tmp, w3, &cx, x->out_n, taps);
        rows = tmp;
        stride = w3;
    } else {
        rows += (size_t)(x->base + x->offset) * 3;
    }
    int32_t *acc = carve(&p, w3 * sizeof(int32_t));
    if (y->scale == 1.0)
        copy_rows(rows, stride, y->out_n, w3, dst->pixels);
    else
        vpass(rows, stride, r0, &cy, y->out_n, w3, acc, dst->pixels);
}

/* ---------------- public ---------------- */

/* Crop semantics: the box is cut out first, then resized on its own. */
static void crop_spec(axis_spec *a, int start, int len, int out_n)
{
    a->len = len;
    a->base = start;
    a->scale = (double)len / out_n;
    a->offset = 0;
    a->out_n = out_n;
}

size_t kiln_resize_scratch_size(int src_w, int src_h, int out_w, int out_h)
{
    axis_spec x, y;
    if (src_w <= 0 || src_h <= 0 || out_w <= 0 || out_h <= 0)
        return 0;
    crop_spec(&x, 0, src_w, out_w);
    crop_spec(&y, 0, src_h, out_h);
    return scratch_bytes(&x, &y);
}

static int check_box(const kiln_image *src, int x0, int y0, int w, int h, const kiln_image *dst,
                     kiln_err *err)
{
    if (!src || !src->pixels || !dst || !dst->pixels || dst->width <= 0 || dst->height <= 0)
        return kiln_err_set(err, KILN_EINVAL, "resize: missing source or destination image");
    if (w <= 0 || h <= 0 || x0 < 0 || y0 < 0 || x0 > src->width - w || y0 > src->height - h)
        return kiln_err_set(err, KILN_EINVAL, "resize: box (%d,%d %dx%d) outside a %dx%d image", x0,
                            y0, w, h, src->width, src->height);
    return KILN_OK;
}

int kiln_image_resize_box(const kiln_image *src, int x0, int y0, int w, int h, kiln_image *dst,
                          void *scratch, kiln_err *err)
{
    axis_spec x, y;
    void *own = NULL;
    int rc = check_box(src, x0, y0, w, h, dst, err);
    if (rc != KILN_OK)
        return rc;
    crop_spec(&x, x0, w, dst->width);
    crop_spec(&y, y0, h, dst->height);
    if (!scratch) {
        own = scratch = malloc(scratch_bytes(&x, &y));
        if (!own)
            return kiln_err_set(err, KILN_ENOMEM, "resize: out of memory");
    }
    resize_run(src, &x, &y, dst, scratch);
    free(own);
    return KILN_OK;
}

/* Python's round() on a multiple of 0.5: halves go to the even neighbour. */
static int half_round_even(int twice)
{
    int q = twice / 2;
    if (twice % 2 == 0)
        return q;
    return q % 2 == 0 ? q : q + 1;
}

/* torchvision Resize(size): shorter side -> size, longer side
 * int(size * long / short) in double, as Python computes it. */
static int resized_dims(int w, int h, int size, int *nw, int *nh, kiln_err *err)
{
    int s = w < h ? w : h, l = w < h ? h : w;
    double nl = (double)((int64_t)size * l) / s;
    if (s == size) {
        *nw = w;
        *nh = h;
        return KILN_OK;
    }
    if (nl >= INT_MAX)
        return kiln_err_set(err, KILN_ELIMIT, "resize: %dx%d to shorter side %d is too large", w, h,
                            size);
    *nw = w <= h ? size : (int)nl;
    *nh = w <= h ? (int)nl : size;
    return KILN_OK;
}

/* Resize the whole axis to `full`, keep `size` output pixels from the
 * centre (CenterCrop: offset int(round((full - size) / 2.0))). */
static void center_spec(axis_spec *a, int len, int full, int size)
{
    a->len = len;
    a->base = 0;
    a->scale = (double)len / full;
    a->offset = half_round_even(full - size);
    a->out_n = size;
}

int kiln_image_resize_center_crop(const kiln_image *src, int size, kiln_image *dst, kiln_err *err)
{
    axis_spec x, y;
    int nw = 0, nh = 0;
    void *scratch = NULL;
    if (!dst)
        return kiln_err_set(err, KILN_EINVAL, "resize: no destination image");
    memset(dst, 0, sizeof *dst);
    if (!src || !src->pixels || src->width <= 0 || src->height <= 0 || size <= 0)
        return kiln_err_set(err, KILN_EINVAL, "resize: bad source image or size %d", size);
    int rc = resized_dims(src->width, src->height, size, &nw, &nh, err);
    if (rc != KILN_OK)
        return rc;
    center_spec(&x, src->width, nw, size);
    center_spec(&y, src->height, nh, size);
    rc = kiln_image_alloc(dst, size, size, err);
    if (rc != KILN_OK)
        goto fail;
    scratch = malloc(scratch_bytes(&x, &y));
    if (!scratch) {
        rc = kiln_err_set(err, KILN_ENOMEM, "resize: out of memory");
        goto fail;
    }
    resize_run(src, &x, &y, dst, scratch);
    free(scratch);
    return KILN_OK;
fail:
    kiln_image_free(dst);
    return rc;
}
