/* lib/nn/cpu/cpu_conv_dw.c — depthwise convolution (groups == channels),
 * computed directly, two ways:
 *
 * Wide planes (output rows of DW_BLOCKED_BELOW pixels or more): one plane
 * at a time, every pass a "flat tap sum" out[j] = sum_t w[t] * base[off[t]
 * + j] over one long contiguous run. For a stride-s forward pass the
 * zero-padded input is split into s×s phase planes P[a][b][r][q] =
 * xpad[s*r + a][s*q + b], each wq wide; output (oy, ox) then reads
 * P[ky%s][kx%s] at (oy + ky/s)*wq + ox + kx/s, and output rows are computed
 * wq wide (the extra columns are dropped). Backward data is the same sum
 * over the padded dy, once per phase of dx with the taps of that phase;
 * backward filter is a dot product of dy (laid out wq wide, zeros in the
 * extra columns) with each tap's run.
 *
 * Small planes (7×7, 4×4, 2×2, where padding would be most of the work):
 * cb_width channels are interleaved into tiles and the vector runs across
 * channels, skipping the taps that fall in the padding (see the cb_*
 * kernels in cpu_simd.inc).
 *
 * Forward and backward data split the (sample, channel) planes over the
 * pool; the filter gradient sums over samples in fixed chunks (below). */
#include <string.h>

#include "nn/cpu/cpu_internal.h"

#define DW_MAX_TAPS (CPU_DW_MAX_K * CPU_DW_MAX_K)
/* Aim for items of at least this many input floats. */
#define DW_MIN_ITEM 16384
/* The filter gradient is summed in this many chunks of samples (or one
 * per thread when there are more threads), added in order: the result does
 * not depend on which thread ran which chunk. */
#define DW_FILTER_CHUNKS 4

typedef struct dw_plan {
    cpu_impl *c;
    int n, ch, k, s, p, h, w, oh, ow;
    int hq, wq;      /* phase planes (forward, filter) or padded dy (data) */
    size_t len;      /* flat outputs per pass */
    size_t pstride;  /* floats per phase plane */
    size_t per_item; /* planes (or channels) per pool item */
    const float *x, *wt, *dy;
    float *y, *dx, *dw;
    double *acc; /* filter: per-chunk sums */
    /* Flat path, built once per call: each tap's offset into the planes;
     * backward data also splits the taps by phase (ph_first[a*s+b] ..
     * ph_first[a*s+b+1]) and keeps each tap's index into the kernel. */
    size_t off[DW_MAX_TAPS];
    int widx[DW_MAX_TAPS];
    int ph_first[CPU_DW_MAX_STRIDE * CPU_DW_MAX_STRIDE + 1];
} dw_plan;

static int imin(int a, int b)
{
    return a < b ? a : b;
}

/* P[r][q] = src[s*r + a - pt][s*q + b - pl] (zero outside src) for each
 * phase (a, b), r < hq, q < wq; zeros after each plane up to pstride. */
static void build_phases(const float *src, int h, int w, int s, int pt, int pl, int hq, int wq,
                         size_t pstride, float *planes)
{
    for (int a = 0; a < s; a++)
        for (int b = 0; b < s; b++) {
            float *P = planes + (size_t)(a * s + b) * pstride;
            int qa = pl - b;
            int q_lo = qa <= 0 ? 0 : imin(wq, (qa + s - 1) / s);
            int qb = w - 1 + pl - b;
            int q_hi = qb < 0 ? 0 : imin(wq, qb / s + 1);
            if (q_hi < q_lo)
                q_hi = q_lo;
            for (int r = 0; r < hq; r++) {
                float *row = P + (size_t)r * wq;
                int iy = s * r + a - pt;
                if (iy < 0 || iy >= h) {
                    memset(row, 0, (size_t)wq * sizeof *row);
                    continue;
                }
                const float *in = src + (size_t)iy * w + (s * q_lo + b - pl);
                memset(row, 0, (size_t)q_lo * sizeof *row);
                if (s == 1) {
                    memcpy(row + q_lo, in, (size_t)(q_hi - q_lo) * sizeof *row);
                } else {
                    for (int q = q_lo; q < q_hi; q++)
                        row[q] = in[(q - q_lo) * s];
                }
                memset(row + q_hi, 0, (size_t)(wq - q_hi) * sizeof *row);
            }
            size_t used = (size_t)hq * wq;
            memset(P + used, 0, (pstride - used) * sizeof *P);
        }
}

/* Forward geometry: phase planes of the input (also used by the filter). */
static size_t plan_forward(dw_plan *d)
{
    int e = (d->k - 1) / d->s;
    d->hq = d->oh + e;
    d->wq = d->ow + e;
    d->len = (size_t)d->oh * d->wq;
    size_t maxoff = (size_t)e * d->wq + e;
    d->pstride = cpu_round_up(cpu_round_up(d->len, CPU_VEC_PAD) + maxoff, CPU_VEC_PAD);
    return (size_t)d->s * d->s * d->pstride + cpu_round_up(d->len, CPU_VEC_PAD);
}

/* Tap (ky, kx) reads phase (ky%s, kx%s) at row ky/s, column kx/s; taps
 * are in the kernel's order, so the weights are used as they are. */
static void forward_taps(dw_plan *d)
{
    int t = 0;
    for (int ky = 0; ky < d->k; ky++)
        for (int kx = 0; kx < d->k; kx++, t++)
            d->off[t] = (size_t)((ky % d->s) * d->s + kx % d->s) * d->pstride +
                        (size_t)(ky / d->s) * d->wq + (size_t)(kx / d->s);
}

static int forward_item(void *arg, size_t item, int worker)
{
    const dw_plan *d = arg;
    float *planes = d->c->scratch[worker];
    float *out = planes + (size_t)d->s * d->s * d->pstride;
    size_t hw = (size_t)d->h * d->w, ohw = (size_t)d->oh * d->ow, first, last;
    cpu_item_range(item, d->per_item, (size_t)d->n * d->ch, &first, &last);
    int kk = d->k * d->k;
    for (size_t pl = first; pl < last; pl++) {
        const float *wk = d->wt + (pl % (size_t)d->ch) * (size_t)kk;
        build_phases(d->x + pl * hw, d->h, d->w, d->s, d->p, d->p, d->hq, d->wq, d->pstride,
                     planes);
        d->c->k.taps(out, d->len, planes, kk, d->off, wk);
        float *y = d->y + pl * ohw;
        for (int oy = 0; oy < d->oh; oy++)
            memcpy(y + (size_t)oy * d->ow, out + (size_t)oy * d->wq, (size_t)d->ow * sizeof *y);
    }
    return 0;
}

/* Backward data: dy padded by m = (k-1)/s on the top and left (hq × wq),
 * and s×s outputs, one per phase of (iy + p, ix + p). */
static size_t plan_data(dw_plan *d)
{
    int m = (d->k - 1) / d->s;
    int hu = (d->p + d->h + d->s - 1) / d->s, wv = (d->p + d->w + d->s - 1) / d->s;
    d->hq = hu + m;
    d->wq = wv + m;
    d->len = (size_t)hu * d->wq;
    size_t maxoff = (size_t)m * d->wq + m;
    d->pstride = cpu_round_up(cpu_round_up(d->len, CPU_VEC_PAD) + maxoff, CPU_VEC_PAD);
    return d->pstride + (size_t)d->s * d->s * cpu_round_up(d->len, CPU_VEC_PAD);
}

/* Taps of phase (a, b): dx phase (U, V) = sum w[s*i+a][s*j+b] * dy[U-i][V-j]
 * read from dy padded by m = (k-1)/s. */
static void data_taps(dw_plan *d)
{
    int m = (d->k - 1) / d->s, t = 0;
    for (int a = 0; a < d->s; a++)
        for (int b = 0; b < d->s; b++) {
            d->ph_first[a * d->s + b] = t;
            for (int i = 0; d->s * i + a < d->k; i++)
                for (int j = 0; d->s * j + b < d->k; j++, t++) {
                    d->off[t] = (size_t)(m - i) * d->wq + (size_t)(m - j);
                    d->widx[t] = (d->s * i + a) * d->k + d->s * j + b;
                }
        }
    d->ph_first[d->s * d->s] = t;
}

/* dx[iy][ix] = phase ((iy+p)%s, (ix+p)%s) at ((iy+p)/s, (ix+p)/s). */
static void scatter_phases(const dw_plan *d, const float *out, size_t olen, float *dx)
{
    int s = d->s;
    for (int iy = 0; iy < d->h; iy++) {
        int u = iy + d->p;
        float *row = dx + (size_t)iy * d->w;
        const float *ph = out + (size_t)(u % s) * s * olen + (size_t)(u / s) * d->wq;
        if (s == 1) {
            memcpy(row, ph + d->p, (size_t)d->w * sizeof *row);
            continue;
        }
        for (int b = 0; b < s; b++) {
            int ix = ((b - d->p) % s + s) % s; /* first ix with (ix + p) % s == b */
            const float *src = ph + (size_t)b * olen + (size_t)((ix + d->p) / s);
            for (; ix < d->w; ix += s)
                row[ix] = *src++;
        }
    }
}

static int data_item(void *arg, size_t item, int worker)
{
    const dw_plan *d = arg;
    float *pad = d->c->scratch[worker];
    float *out = pad + d->pstride;
    size_t olen = cpu_round_up(d->len, CPU_VEC_PAD);
    size_t hw = (size_t)d->h * d->w, ohw = (size_t)d->oh * d->ow, first, last;
    cpu_item_range(item, d->per_item, (size_t)d->n * d->ch, &first, &last);
    int m = (d->k - 1) / d->s, s = d->s;
    float tw[DW_MAX_TAPS];
    for (size_t pl = first; pl < last; pl++) {
        const float *wk = d->wt + (pl % (size_t)d->ch) * d->k * d->k;
        build_phases(d->dy + pl * ohw, d->oh, d->ow, 1, m, m, d->hq, d->wq, d->pstride, pad);
        for (int t = 0; t < d->ph_first[s * s]; t++)
            tw[t] = wk[d->widx[t]];
        for (int ph = 0; ph < s * s; ph++) {
            int t0 = d->ph_first[ph];
            d->c->k.taps(out + (size_t)ph * olen, d->len, pad, d->ph_first[ph + 1] - t0,
                         d->off + t0, tw + t0);
        }
        scatter_phases(d, out, olen, d->dx + pl * hw);
    }
    return 0;
}

/* The filter gradient sums over samples. Reading a channel's planes
 * sample after sample strides through memory, so instead each chunk of
 * samples is read in memory order into its own double sums (acc, one
 * [ch][k*k] block per chunk), and the chunks are added in order. */
static size_t filter_chunks(const dw_plan *d)
{
    size_t want = d->c->threads > DW_FILTER_CHUNKS ? (size_t)d->c->threads : DW_FILTER_CHUNKS;
    return (size_t)d->n < want ? (size_t)d->n : want;
}

static void chunk_samples(const dw_plan *d, size_t chunk, int *s0, int *s1)
{
    size_t chunks = filter_chunks(d);
    *s0 = (int)(chunk * (size_t)d->n / chunks);
    *s1 = (int)((chunk + 1) * (size_t)d->n / chunks);
}

static int filter_item(void *arg, size_t chunk, int worker)
{
    const dw_plan *d = arg;
    float *planes = d->c->scratch[worker];
    float *dyf = planes + (size_t)d->s * d->s * d->pstride;
    size_t hw = (size_t)d->h * d->w, ohw = (size_t)d->oh * d->ow, kk = (size_t)d->k * d->k;
    double *acc = d->acc + chunk * (size_t)d->ch * kk;
    int s0, s1;
    chunk_samples(d, chunk, &s0, &s1);
    memset(acc, 0, (size_t)d->ch * kk * sizeof *acc);
    /* Columns past ow and the vector tail stay zero for every plane. */
    memset(dyf, 0, cpu_round_up(d->len, CPU_VEC_PAD) * sizeof *dyf);
    for (size_t pl = (size_t)s0 * d->ch; pl < (size_t)s1 * d->ch; pl++) {
        build_phases(d->x + pl * hw, d->h, d->w, d->s, d->p, d->p, d->hq, d->wq, d->pstride,
                     planes);
        const float *g = d->dy + pl * ohw;
        for (int oy = 0; oy < d->oh; oy++)
            memcpy(dyf + (size_t)oy * d->wq, g + (size_t)oy * d->ow, (size_t)d->ow * sizeof *dyf);
        d->c->k.tap_dots(dyf, d->len, planes, (int)kk, d->off, acc + (pl % (size_t)d->ch) * kk);
    }
    return 0;
}

/* dw = the chunks' sums, added in chunk order. */
static void filter_reduce(const dw_plan *d)
{
    size_t kk = (size_t)d->k * d->k, size = (size_t)d->ch * kk, chunks = filter_chunks(d);
    for (size_t i = 0; i < size; i++) {
        double t = 0;
        for (size_t ck = 0; ck < chunks; ck++)
            t += d->acc[ck * size + i];
        d->dw[i] = (float)t;
    }
}

/* ---- small planes: channel-blocked tiles ------------------------------
 * Planes narrower than DW_BLOCKED_BELOW are interleaved cb_width channels
 * at a time (X[h][w][cb]) and convolved with the vector running across
 * channels, which wastes nothing at the borders of a 2×2 or 7×7 plane. */
#define DW_BLOCKED_BELOW 16

static int use_blocked(const dw_plan *d)
{
    return d->ow < DW_BLOCKED_BELOW && d->w <= CPU_DW_BLOCKED_MAX_W;
}

/* dst[i][c] = plane c of src at i, for cv channels of cb (zeros after). */
static void pack(const float *src, size_t hw, int cv, int cb, float *dst)
{
    for (int c = 0; c < cb; c++) {
        const float *p = src + (size_t)c * hw;
        for (size_t i = 0; i < hw; i++)
            dst[i * cb + c] = c < cv ? p[i] : 0.0f;
    }
}

static void unpack(const float *src, size_t hw, int cv, int cb, float *dst)
{
    for (int c = 0; c < cv; c++) {
        float *p = dst + (size_t)c * hw;
        for (size_t i = 0; i < hw; i++)
            p[i] = src[i * cb + c];
    }
}

static void pack_weights(const float *wt, int c0, int cv, int cb, int kk, float *dst)
{
    for (int t = 0; t < kk; t++)
        for (int c = 0; c < cb; c++)
            dst[t * cb + c] = c < cv ? wt[(size_t)(c0 + c) * kk + t] : 0.0f;
}

static cpu_dw_geom geom_of(const dw_plan *d)
{
    return (cpu_dw_geom){d->k, d->s, d->p, d->h, d->w, d->oh, d->ow};
}

static size_t blocked_scratch(const dw_plan *d)
{
    size_t cb = (size_t)d->c->k.cb_width, kk = (size_t)d->k * d->k;
    return cpu_round_up(((size_t)d->h * d->w + (size_t)d->oh * d->ow) * cb, CPU_VEC_PAD) +
           cpu_round_up(kk * cb, CPU_VEC_PAD) + 2 * kk * cb;
}

/* Units are (sample, channel block) pairs; forward and data share this. */
static int blocked_item(void *arg, size_t item, int worker, int data)
{
    const dw_plan *d = arg;
    const cpu_kernels *k = &d->c->k;
    int cb = k->cb_width, kk = d->k * d->k;
    int nb = (d->ch + cb - 1) / cb;
    size_t hw = (size_t)d->h * d->w, ohw = (size_t)d->oh * d->ow;
    float *in = d->c->scratch[worker];
    float *out = in + (data ? ohw : hw) * (size_t)cb;
    float *W = d->c->scratch[worker] + cpu_round_up((hw + ohw) * (size_t)cb, CPU_VEC_PAD);
    cpu_dw_geom g = geom_of(d);
    size_t first, last;
    cpu_item_range(item, d->per_item, (size_t)d->n * nb, &first, &last);
    int packed_block = -1;
    for (size_t u = first; u < last; u++) {
        int s = (int)(u / (size_t)nb), b = (int)(u % (size_t)nb);
        int c0 = b * cb, cv = d->ch - c0 < cb ? d->ch - c0 : cb;
        if (b != packed_block) {
            pack_weights(d->wt, c0, cv, cb, kk, W);
            packed_block = b;
        }
        size_t plane0 = (size_t)s * d->ch + (size_t)c0;
        if (data) {
            pack(d->dy + plane0 * ohw, ohw, cv, cb, in);
            k->cb_data(&g, in, W, out);
            unpack(out, hw, cv, cb, d->dx + plane0 * hw);
        } else {
            pack(d->x + plane0 * hw, hw, cv, cb, in);
            k->cb_forward(&g, in, W, out);
            unpack(out, ohw, cv, cb, d->y + plane0 * ohw);
        }
    }
    return 0;
}

static int blocked_forward_item(void *arg, size_t item, int worker)
{
    return blocked_item(arg, item, worker, 0);
}

static int blocked_data_item(void *arg, size_t item, int worker)
{
    return blocked_item(arg, item, worker, 1);
}

/* One chunk of samples (see filter_item), channel blocks in memory order;
 * acc holds [ch][k*k] doubles per chunk like the flat path. */
static int blocked_filter_item(void *arg, size_t chunk, int worker)
{
    const dw_plan *d = arg;
    const cpu_kernels *k = &d->c->k;
    int cb = k->cb_width, kk = d->k * d->k;
    int nb = (d->ch + cb - 1) / cb;
    size_t hw = (size_t)d->h * d->w, ohw = (size_t)d->oh * d->ow;
    float *X = d->c->scratch[worker], *DY = X + hw * (size_t)cb;
    double *part = (double *)(void *)(X + cpu_round_up((hw + ohw) * (size_t)cb, CPU_VEC_PAD) +
                                      cpu_round_up((size_t)kk * cb, CPU_VEC_PAD));
    double *acc = d->acc + chunk * (size_t)d->ch * kk;
    cpu_dw_geom g = geom_of(d);
    int s0, s1;
    chunk_samples(d, chunk, &s0, &s1);
    memset(acc, 0, (size_t)d->ch * kk * sizeof *acc);
    for (int s = s0; s < s1; s++)
        for (int b = 0; b < nb; b++) {
            int c0 = b * cb, cv = d->ch - c0 < cb ? d->ch - c0 : cb;
            size_t plane0 = (size_t)s * d->ch + (size_t)c0;
            pack(d->x + plane0 * hw, hw, cv, cb, X);
            pack(d->dy + plane0 * ohw, ohw, cv, cb, DY);
            memset(part, 0, (size_t)kk * cb * sizeof *part);
            k->cb_filter(&g, X, DY, part);
            for (int c = 0; c < cv; c++)
                for (int t = 0; t < kk; t++)
                    acc[(size_t)(c0 + c) * kk + t] += part[(size_t)t * cb + c];
        }
    return 0;
}

static void plan_init(dw_plan *d, cpu_impl *c, const kiln_conv_desc *desc, int n, int h, int w)
{
    d->c = c;
    d->n = n;
    d->ch = desc->in_c;
    d->k = desc->k;
    d->s = desc->stride;
    d->p = desc->pad;
    d->h = h;
    d->w = w;
    d->oh = kiln_conv_out(desc, h);
    d->ow = kiln_conv_out(desc, w);
}

/* Cut `units` (planes or channel blocks of `unit_floats` each) into items;
 * returns how many. */
static size_t plan_items(dw_plan *d, size_t units, size_t unit_floats)
{
    d->per_item = cpu_units_per_item(d->c, units, unit_floats, DW_MIN_ITEM);
    return cpu_div_up(units, d->per_item);
}

/* Forward and backward data: the blocked kernels for small planes, else
 * flat tap sums over phase planes (forward) or the padded dy (data). */
static int dw_apply(dw_plan *d, int data, kiln_err *err)
{
    cpu_impl *c = d->c;
    size_t hw = (size_t)d->h * d->w;
    if (use_blocked(d)) {
        int rc = cpu_reserve_worker(c, blocked_scratch(d), err);
        if (rc)
            return rc;
        int cb = c->k.cb_width;
        size_t units = (size_t)d->n * (size_t)((d->ch + cb - 1) / cb);
        cpu_run(c, plan_items(d, units, hw * cb), data ? blocked_data_item : blocked_forward_item,
                d);
        return KILN_OK;
    }
    int rc = cpu_reserve_worker(c, data ? plan_data(d) : plan_forward(d), err);
    if (rc)
        return rc;
    if (data)
        data_taps(d);
    else
        forward_taps(d);
    cpu_run(c, plan_items(d, (size_t)d->n * d->ch, hw), data ? data_item : forward_item, d);
    return KILN_OK;
}

int cpu_dw_forward(cpu_impl *c, const kiln_conv_desc *desc, int n, int h, int w, const float *x,
                   const float *weight, float *y, kiln_err *err)
{
    dw_plan d = {.x = x, .wt = weight, .y = y};
    plan_init(&d, c, desc, n, h, w);
    return dw_apply(&d, 0, err);
}

int cpu_dw_backward_data(cpu_impl *c, const kiln_conv_desc *desc, int n, int h, int w,
                         const float *dy, const float *weight, float *dx, kiln_err *err)
{
    dw_plan d = {.dy = dy, .wt = weight, .dx = dx};
    plan_init(&d, c, desc, n, h, w);
    return dw_apply(&d, 1, err);
}

int cpu_dw_backward_filter(cpu_impl *c, const kiln_conv_desc *desc, int n, int h, int w,
                           const float *x, const float *dy, float *dweight, kiln_err *err)
{
    dw_plan d = {.x = x, .dy = dy, .dw = dweight};
    plan_init(&d, c, desc, n, h, w);
    size_t chunks = filter_chunks(&d);
    size_t sums = chunks * (size_t)d.ch * (size_t)d.k * (size_t)d.k;
    d.acc = (double *)(void *)cpu_reserve_shared(c, 2 * sums, err);
    if (!d.acc)
        return KILN_ENOMEM;
    int blocked = use_blocked(&d);
    int rc = cpu_reserve_worker(c, blocked ? blocked_scratch(&d) : plan_forward(&d), err);
    if (rc)
        return rc;
    if (!blocked)
        forward_taps(&d);
    cpu_run(c, chunks, blocked ? blocked_filter_item : filter_item, &d);
    filter_reduce(&d);
    return KILN_OK;
}
