/* lib/nn/cpu/cpu_conv.c — Conv2d (no bias) on the CPU: argument checks,
 * dispatch, 1×1 convs as direct sgemm over pixels, everything else that is
 * not depthwise as im2col + sgemm per sample and group. */
#include <cblas.h>
#include <string.h>

#include "nn/cpu/cpu_internal.h"

/* A 1×1 conv's GEMM wants at least this many columns; samples with fewer
 * pixels are gathered side by side into one matrix first. */
#define PW_COLS 256

static int imin(int a, int b)
{
    return a < b ? a : b;
}

static int is_depthwise(const kiln_conv_desc *d)
{
    return d->groups > 1 && d->groups == d->in_c && d->in_c == d->out_c && d->k <= CPU_DW_MAX_K &&
           d->stride <= CPU_DW_MAX_STRIDE;
}

static int is_pointwise(const kiln_conv_desc *d)
{
    return d->k == 1 && d->stride == 1 && d->pad == 0 && d->groups == 1;
}

/* ---- 1×1: dst[s][M][hw] = op(W)[M][K] · src[s][K][hw] ------------------- */

typedef struct pw_ctx {
    cpu_impl *c;
    int trans; /* op(W) = W^T (backward data): W is stored [K][M] */
    int M, K, n, hw;
    const float *W, *src;
    float *dst;
    int ns;       /* samples per item */
    int ncb, cbs; /* column blocks per sample and their width (ns == 1) */
    int nrb, rbs; /* row blocks and their height */
} pw_ctx;

static void gather(const float *src, int s0, int s1, int rows, int hw, float *X)
{
    size_t G = (size_t)(s1 - s0) * (size_t)hw;
    for (int s = s0; s < s1; s++) {
        const float *p = src + (size_t)s * rows * hw;
        for (int r = 0; r < rows; r++)
            memcpy(X + r * G + (size_t)(s - s0) * hw, p + (size_t)r * hw, (size_t)hw * sizeof *X);
    }
}

/* Per-worker scratch when samples are gathered ns at a time: the gathered
 * K × G matrix (G = ns*hw columns), then `rows` × G for the other one. */
static int pw_reserve(cpu_impl *c, int ns, int hw, int K, int rows, kiln_err *err)
{
    if (ns == 1)
        return KILN_OK;
    size_t G = (size_t)ns * (size_t)hw;
    return cpu_reserve_worker(c, cpu_round_up((size_t)K * G, CPU_VEC_PAD) + (size_t)rows * G, err);
}

static int pw_item(void *arg, size_t i, int worker)
{
    pw_ctx *p = arg;
    int rb = (int)(i % (size_t)p->nrb), cb = (int)(i / (size_t)p->nrb % (size_t)p->ncb);
    int sg = (int)(i / (size_t)p->nrb / (size_t)p->ncb);
    int m0 = rb * p->rbs, m1 = imin(p->M, m0 + p->rbs);
    int s0 = sg * p->ns, s1 = imin(p->n, s0 + p->ns);
    size_t hw = (size_t)p->hw;
    const float *A = p->trans ? p->W + m0 : p->W + (size_t)m0 * p->K;
    int lda = p->trans ? p->M : p->K;
    enum CBLAS_TRANSPOSE ta = p->trans ? CblasTrans : CblasNoTrans;
    if (p->ns == 1) {
        int c0 = cb * p->cbs, c1 = imin(p->hw, c0 + p->cbs);
        cblas_sgemm(CblasRowMajor, ta, CblasNoTrans, m1 - m0, c1 - c0, p->K, 1.0f, A, lda,
                    p->src + (size_t)s0 * p->K * hw + c0, p->hw, 0.0f,
                    p->dst + (size_t)s0 * p->M * hw + (size_t)m0 * hw + c0, p->hw);
        return 0;
    }
    size_t G = (size_t)(s1 - s0) * hw;
    float *X = p->c->scratch[worker];
    float *Y = X + cpu_round_up((size_t)p->K * G, CPU_VEC_PAD);
    gather(p->src, s0, s1, p->K, p->hw, X);
    cblas_sgemm(CblasRowMajor, ta, CblasNoTrans, m1 - m0, (int)G, p->K, 1.0f, A, lda, X, (int)G,
                0.0f, Y, (int)G);
    for (int s = s0; s < s1; s++)
        for (int m = m0; m < m1; m++)
            memcpy(p->dst + ((size_t)s * p->M + m) * hw, Y + (m - m0) * G + (s - s0) * hw,
                   hw * sizeof *Y);
    return 0;
}

static int pw_apply(cpu_impl *c, int trans, int M, int K, int n, int hw, const float *W,
                    const float *src, float *dst, kiln_err *err)
{
    pw_ctx p = {.c = c,
                .trans = trans,
                .M = M,
                .K = K,
                .n = n,
                .hw = hw,
                .W = W,
                .src = src,
                .dst = dst,
                .ns = 1,
                .ncb = 1,
                .cbs = hw,
                .nrb = 1,
                .rbs = M};
    int want = 2 * c->threads;
    if (hw < PW_COLS && n > 1) {
        int per_thread = (n + c->threads - 1) / c->threads;
        p.ns = imin((PW_COLS + hw - 1) / hw, per_thread);
    }
    int groups = (n + p.ns - 1) / p.ns;
    if (p.ns == 1 && groups < want && hw >= 128) {
        p.ncb = imin((want + groups - 1) / groups, hw / 64);
        p.cbs = (int)cpu_round_up((size_t)((hw + p.ncb - 1) / p.ncb), CPU_VEC_PAD);
        p.ncb = (hw + p.cbs - 1) / p.cbs;
    }
    if (groups * p.ncb < want && M >= 64) {
        p.nrb = imin((want + groups * p.ncb - 1) / (groups * p.ncb), M / 32);
        p.rbs = (M + p.nrb - 1) / p.nrb;
        p.nrb = (M + p.rbs - 1) / p.rbs;
    }
    int rc = pw_reserve(c, p.ns, hw, K, p.rbs, err);
    if (rc)
        return rc;
    cpu_run(c, (size_t)groups * (size_t)p.ncb * (size_t)p.nrb, pw_item, &p);
    return KILN_OK;
}

/* dW[out][in] = sum_s dy[s][out][hw] · x[s][in][hw]^T, split by rows of dW. */
typedef struct pwf_ctx {
    cpu_impl *c;
    int out, in, n, hw, ns, rbs;
    const float *x, *dy;
    float *dw;
} pwf_ctx;

static int pwf_item(void *arg, size_t i, int worker)
{
    pwf_ctx *p = arg;
    int r0 = (int)i * p->rbs, r1 = imin(p->out, r0 + p->rbs), rows = r1 - r0;
    size_t hw = (size_t)p->hw;
    float *dw = p->dw + (size_t)r0 * p->in;
    for (int s0 = 0; s0 < p->n; s0 += p->ns) {
        float beta = s0 == 0 ? 0.0f : 1.0f;
        int s1 = imin(p->n, s0 + p->ns);
        if (p->ns == 1) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, p->in, p->hw, 1.0f,
                        p->dy + ((size_t)s0 * p->out + r0) * hw, p->hw,
                        p->x + (size_t)s0 * p->in * hw, p->hw, beta, dw, p->in);
            continue;
        }
        size_t G = (size_t)(s1 - s0) * hw;
        float *X = p->c->scratch[worker];
        float *D = X + cpu_round_up((size_t)p->in * G, CPU_VEC_PAD);
        gather(p->x, s0, s1, p->in, p->hw, X);
        for (int s = s0; s < s1; s++)
            for (int r = r0; r < r1; r++)
                memcpy(D + (r - r0) * G + (s - s0) * hw, p->dy + ((size_t)s * p->out + r) * hw,
                       hw * sizeof *D);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, p->in, (int)G, 1.0f, D, (int)G,
                    X, (int)G, beta, dw, p->in);
    }
    return 0;
}

static int pw_filter(cpu_impl *c, int out, int in, int n, int hw, const float *x, const float *dy,
                     float *dw, kiln_err *err)
{
    pwf_ctx p = {.c = c,
                 .out = out,
                 .in = in,
                 .n = n,
                 .hw = hw,
                 .x = x,
                 .dy = dy,
                 .dw = dw,
                 .ns = imin(n, (PW_COLS + hw - 1) / hw)};
    int nrb = imin(2 * c->threads, (out + 15) / 16);
    if (c->threads == 1)
        nrb = 1;
    p.rbs = (out + nrb - 1) / nrb;
    nrb = (out + p.rbs - 1) / p.rbs;
    int rc = pw_reserve(c, p.ns, hw, in, p.rbs, err);
    if (rc)
        return rc;
    cpu_run(c, (size_t)nrb, pwf_item, &p);
    return KILN_OK;
}

/* ---- im2col: col[(ci*k + ky)*k + kx][oy*ow + ox] ------------------------ */

typedef struct geom {
    int cg, h, w, k, s, p, oh, ow; /* cg: input channels per group */
} geom;

/* First and one-past-last output column whose input column ox*s - p + kx
 * lies inside [0, w). */
static void valid_cols(const geom *g, int kx, int *lo, int *hi)
{
    int a = g->p - kx;
    *lo = a <= 0 ? 0 : (a + g->s - 1) / g->s;
    int b = g->w - 1 + g->p - kx;
    *hi = b < 0 ? 0 : imin(g->ow, b / g->s + 1);
    if (*lo > *hi)
        *lo = *hi;
}

/* Output rows [oy0, oy1) only: col has (oy1 - oy0) * ow columns. */
static void im2col_rows(const geom *g, const float *x, int oy0, int oy1, float *col)
{
    size_t cols = (size_t)(oy1 - oy0) * g->ow;
    for (int ci = 0; ci < g->cg; ci++)
        for (int ky = 0; ky < g->k; ky++)
            for (int kx = 0; kx < g->k; kx++) {
                float *row = col + ((size_t)(ci * g->k + ky) * g->k + kx) * cols;
                int lo, hi;
                valid_cols(g, kx, &lo, &hi);
                for (int oy = oy0; oy < oy1; oy++) {
                    float *o = row + (size_t)(oy - oy0) * g->ow;
                    int iy = oy * g->s - g->p + ky;
                    if (iy < 0 || iy >= g->h) {
                        memset(o, 0, (size_t)g->ow * sizeof *o);
                        continue;
                    }
                    const float *in = x + ((size_t)ci * g->h + iy) * g->w - g->p + kx;
                    for (int ox = 0; ox < lo; ox++)
                        o[ox] = 0.0f;
                    for (int ox = lo; ox < hi; ox++)
                        o[ox] = in[ox * g->s];
                    for (int ox = hi; ox < g->ow; ox++)
                        o[ox] = 0.0f;
                }
            }
}

static void im2col(const geom *g, const float *x, float *col)
{
    im2col_rows(g, x, 0, g->oh, col);
}

/* dx += col2im(col) */
static void col2im(const geom *g, const float *col, float *dx)
{
    size_t ohw = (size_t)g->oh * g->ow;
    for (int ci = 0; ci < g->cg; ci++)
        for (int ky = 0; ky < g->k; ky++)
            for (int kx = 0; kx < g->k; kx++) {
                const float *row = col + ((size_t)(ci * g->k + ky) * g->k + kx) * ohw;
                int lo, hi;
                valid_cols(g, kx, &lo, &hi);
                for (int oy = 0; oy < g->oh; oy++) {
                    int iy = oy * g->s - g->p + ky;
                    if (iy < 0 || iy >= g->h)
                        continue;
                    const float *o = row + (size_t)oy * g->ow;
                    float *d = dx + ((size_t)ci * g->h + iy) * g->w - g->p + kx;
                    for (int ox = lo; ox < hi; ox++)
                        d[ox * g->s] += o[ox];
                }
            }
}

typedef struct ic_ctx {
    cpu_impl *c;
    const kiln_conv_desc *d;
    geom g;
    int n, og, kg; /* og: out channels per group, kg: cg*k*k */
    const float *x, *w, *dy;
    float *y, *dx, *dw;
    int chunks;    /* filter: sample chunks */
    int nrb, rows; /* forward: blocks of output rows per sample, rows each */
} ic_ctx;

/* Item = (sample, block of output rows): few samples (inference) still
 * spread over the threads. */
static int ic_forward_item(void *arg, size_t i, int worker)
{
    ic_ctx *p = arg;
    float *col = p->c->scratch[worker];
    size_t s = i / (size_t)p->nrb;
    int oy0 = (int)(i % (size_t)p->nrb) * p->rows, oy1 = imin(p->g.oh, oy0 + p->rows);
    size_t ohw = (size_t)p->g.oh * p->g.ow, hw = (size_t)p->g.h * p->g.w;
    int cols = (oy1 - oy0) * p->g.ow;
    for (int gi = 0; gi < p->d->groups; gi++) {
        im2col_rows(&p->g, p->x + (s * p->d->in_c + (size_t)gi * p->g.cg) * hw, oy0, oy1, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->og, cols, p->kg, 1.0f,
                    p->w + (size_t)gi * p->og * p->kg, p->kg, col, cols, 0.0f,
                    p->y + (s * p->d->out_c + (size_t)gi * p->og) * ohw + (size_t)oy0 * p->g.ow,
                    (int)ohw);
    }
    return 0;
}

static int ic_data_item(void *arg, size_t s, int worker)
{
    ic_ctx *p = arg;
    float *col = p->c->scratch[worker];
    size_t ohw = (size_t)p->g.oh * p->g.ow, hw = (size_t)p->g.h * p->g.w;
    float *dx = p->dx + s * p->d->in_c * hw;
    memset(dx, 0, (size_t)p->d->in_c * hw * sizeof *dx);
    for (int gi = 0; gi < p->d->groups; gi++) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p->kg, (int)ohw, p->og, 1.0f,
                    p->w + (size_t)gi * p->og * p->kg, p->kg,
                    p->dy + (s * p->d->out_c + (size_t)gi * p->og) * ohw, (int)ohw, 0.0f, col,
                    (int)ohw);
        col2im(&p->g, col, dx + (size_t)gi * p->g.cg * hw);
    }
    return 0;
}

/* Chunk i sums samples [i*n/chunks, (i+1)*n/chunks) into its own partial
 * dW (shared scratch, or dw itself when there is one chunk). */
static int ic_filter_item(void *arg, size_t i, int worker)
{
    ic_ctx *p = arg;
    float *col = p->c->scratch[worker];
    size_t ohw = (size_t)p->g.oh * p->g.ow, hw = (size_t)p->g.h * p->g.w;
    size_t wsize = (size_t)p->d->out_c * p->kg;
    float *part = p->chunks == 1 ? p->dw : p->c->shared + i * wsize;
    size_t s0 = i * (size_t)p->n / (size_t)p->chunks;
    size_t s1 = (i + 1) * (size_t)p->n / (size_t)p->chunks;
    for (size_t s = s0; s < s1; s++)
        for (int gi = 0; gi < p->d->groups; gi++) {
            im2col(&p->g, p->x + (s * p->d->in_c + (size_t)gi * p->g.cg) * hw, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->og, p->kg, (int)ohw, 1.0f,
                        p->dy + (s * p->d->out_c + (size_t)gi * p->og) * ohw, (int)ohw, col,
                        (int)ohw, s == s0 ? 0.0f : 1.0f, part + (size_t)gi * p->og * p->kg, p->kg);
        }
    return 0;
}

static int ic_setup(ic_ctx *p, cpu_impl *c, const kiln_conv_desc *d, int n, int h, int w,
                    kiln_err *err)
{
    p->c = c;
    p->d = d;
    p->n = n;
    p->g = (geom){.cg = d->in_c / d->groups,
                  .h = h,
                  .w = w,
                  .k = d->k,
                  .s = d->stride,
                  .p = d->pad,
                  .oh = kiln_conv_out(d, h),
                  .ow = kiln_conv_out(d, w)};
    p->og = d->out_c / d->groups;
    p->kg = p->g.cg * d->k * d->k;
    p->nrb = 1;
    p->rows = p->g.oh;
    if (n < 2 * c->threads && c->threads > 1) {
        p->nrb = imin(p->g.oh, (2 * c->threads + n - 1) / n);
        p->rows = (p->g.oh + p->nrb - 1) / p->nrb;
        p->nrb = (p->g.oh + p->rows - 1) / p->rows;
    }
    return cpu_reserve_worker(c, (size_t)p->kg * p->g.oh * p->g.ow, err);
}

/* ---- entry points ------------------------------------------------------ */

/* Forward (y from x) and backward data (dx from dy: the transposed conv)
 * map one activation to another through the weights and differ only in
 * the kernels that run. */
static int conv_apply(kiln_nn_backend *be, int data, const kiln_conv_desc *d, int n, int h, int w,
                      const float *in, const float *weight, float *out, kiln_err *err)
{
    const char *op = data ? "conv_backward_data" : "conv_forward";
    int rc = kiln_nn_check_conv(op, d, n, h, w, in, weight, out, err);
    if (rc)
        return rc;
    cpu_impl *c = cpu_of(be);
    if (n == 0)
        return KILN_OK;
    if (is_depthwise(d))
        return data ? cpu_dw_backward_data(c, d, n, h, w, in, weight, out, err)
                    : cpu_dw_forward(c, d, n, h, w, in, weight, out, err);
    if (is_pointwise(d))
        return data ? pw_apply(c, 1, d->in_c, d->out_c, n, h * w, weight, in, out, err)
                    : pw_apply(c, 0, d->out_c, d->in_c, n, h * w, weight, in, out, err);
    ic_ctx p = {.w = weight};
    if ((rc = ic_setup(&p, c, d, n, h, w, err)))
        return rc;
    if (data) {
        p.dy = in;
        p.dx = out;
        cpu_run(c, (size_t)n, ic_data_item, &p);
    } else {
        p.x = in;
        p.y = out;
        cpu_run(c, (size_t)n * (size_t)p.nrb, ic_forward_item, &p);
    }
    return KILN_OK;
}

int cpu_conv_forward(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                     const float *x, const float *weight, float *y, kiln_err *err)
{
    return conv_apply(be, 0, d, n, h, w, x, weight, y, err);
}

int cpu_conv_backward_data(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                           const float *dy, const float *weight, float *dx, kiln_err *err)
{
    return conv_apply(be, 1, d, n, h, w, dy, weight, dx, err);
}

int cpu_conv_backward_filter(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                             const float *x, const float *dy, float *dweight, kiln_err *err)
{
    int rc = kiln_nn_check_conv("conv_backward_filter", d, n, h, w, x, dy, dweight, err);
    if (rc)
        return rc;
    cpu_impl *c = cpu_of(be);
    size_t wsize = (size_t)d->out_c * (d->in_c / d->groups) * d->k * d->k;
    if (n == 0) {
        memset(dweight, 0, wsize * sizeof *dweight);
        return KILN_OK;
    }
    if (is_depthwise(d))
        return cpu_dw_backward_filter(c, d, n, h, w, x, dy, dweight, err);
    if (is_pointwise(d))
        return pw_filter(c, d->out_c, d->in_c, n, h * w, x, dy, dweight, err);
    ic_ctx p = {.x = x, .dy = dy, .dw = dweight, .chunks = imin(n, c->threads)};
    if ((rc = ic_setup(&p, c, d, n, h, w, err)))
        return rc;
    if (p.chunks > 1 && !cpu_reserve_shared(c, (size_t)p.chunks * wsize, err))
        return KILN_ENOMEM;
    cpu_run(c, (size_t)p.chunks, ic_filter_item, &p);
    if (p.chunks > 1) {
        memcpy(dweight, c->shared, wsize * sizeof *dweight);
        for (int i = 1; i < p.chunks; i++)
            c->k.add(wsize, dweight, c->shared + (size_t)i * wsize, dweight);
    }
    return KILN_OK;
}
