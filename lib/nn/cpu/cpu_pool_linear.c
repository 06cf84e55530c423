/* lib/nn/cpu/cpu_pool_linear.c — global average pooling, the SE block's
 * channel scaling, and Linear (sgemm, split over the pool by rows). */
#include <cblas.h>
#include <string.h>

#include "nn/cpu/cpu_internal.h"

/* Rows of [n*c] planes per pool item: at least this many floats each. */
#define ROWS_MIN_FLOATS 16384

typedef struct rows_ctx {
    cpu_impl *c;
    size_t rows, hw, per_item;
    const float *x, *s, *dy;
    float *y, *dx, *ds;
    int kind;
} rows_ctx;

enum { AVG_FWD, AVG_BWD, SCALE_FWD, SCALE_BWD };

static int rows_item(void *arg, size_t item, int worker)
{
    (void)worker;
    rows_ctx *r = arg;
    const cpu_kernels *k = &r->c->k;
    size_t lo, hi;
    cpu_item_range(item, r->per_item, r->rows, &lo, &hi);
    double inv = 1.0 / (double)r->hw;
    for (size_t i = lo; i < hi; i++) {
        size_t o = i * r->hw;
        switch (r->kind) {
        case AVG_FWD:
            r->y[i] = (float)(k->sum(r->hw, r->x + o) * inv);
            break;
        case AVG_BWD: {
            float g = (float)((double)r->dy[i] * inv);
            for (size_t j = 0; j < r->hw; j++)
                r->dx[o + j] = g;
            break;
        }
        case SCALE_FWD:
            k->affine(r->hw, r->x + o, r->s[i], 0.0f, r->y + o);
            break;
        case SCALE_BWD:
            r->ds[i] = (float)k->dot(r->hw, r->dy + o, r->x + o);
            k->affine(r->hw, r->dy + o, r->s[i], 0.0f, r->dx + o);
            break;
        }
    }
    return 0;
}

static int rows_run(kiln_nn_backend *be, const char *op, rows_ctx *r, int n, int c, int hw,
                    kiln_err *err)
{
    int rc = kiln_nn_check_rows(op, r->kind == AVG_FWD || r->kind == AVG_BWD, n, c, hw, err);
    if (rc)
        return rc;
    r->c = cpu_of(be);
    r->rows = (size_t)n * (size_t)c;
    r->hw = (size_t)hw;
    if (r->rows == 0)
        return KILN_OK;
    r->per_item = cpu_units_per_item(r->c, r->rows, r->hw, ROWS_MIN_FLOATS);
    cpu_run(r->c, cpu_div_up(r->rows, r->per_item), rows_item, r);
    return KILN_OK;
}

int cpu_avgpool_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x, float *y,
                        kiln_err *err)
{
    int rc = kiln_nn_check_ptrs(err, "avgpool_forward", 2, x, y);
    if (rc)
        return rc;
    rows_ctx r = {.x = x, .y = y, .kind = AVG_FWD};
    return rows_run(be, "avgpool_forward", &r, n, c, hw, err);
}

int cpu_avgpool_backward(kiln_nn_backend *be, int n, int c, int hw, const float *dy, float *dx,
                         kiln_err *err)
{
    int rc = kiln_nn_check_ptrs(err, "avgpool_backward", 2, dy, dx);
    if (rc)
        return rc;
    rows_ctx r = {.dy = dy, .dx = dx, .kind = AVG_BWD};
    return rows_run(be, "avgpool_backward", &r, n, c, hw, err);
}

int cpu_scale_channels_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                               const float *s, float *y, kiln_err *err)
{
    int rc = kiln_nn_check_ptrs(err, "scale_channels_forward", 3, x, s, y);
    if (rc)
        return rc;
    rows_ctx r = {.x = x, .s = s, .y = y, .kind = SCALE_FWD};
    return rows_run(be, "scale_channels_forward", &r, n, c, hw, err);
}

int cpu_scale_channels_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                const float *s, const float *dy, float *dx, float *ds,
                                kiln_err *err)
{
    int rc = kiln_nn_check_ptrs(err, "scale_channels_backward", 5, x, s, dy, dx, ds);
    if (rc)
        return rc;
    rows_ctx r = {.x = x, .s = s, .dy = dy, .dx = dx, .ds = ds, .kind = SCALE_BWD};
    return rows_run(be, "scale_channels_backward", &r, n, c, hw, err);
}

/* ---- linear ------------------------------------------------------------ */

/* C[M][N] (+)= op(A) · op(B), cut into blocks of C's rows (a block's rows
 * of op(A)) or of its columns, one sgemm per pool item. */
typedef struct gemm_ctx {
    enum CBLAS_TRANSPOSE ta, tb;
    int M, N, K, lda, ldb, ldc, by_rows, block;
    const float *A, *B;
    float *C;
    float beta;
} gemm_ctx;

static int gemm_item(void *arg, size_t i, int worker)
{
    (void)worker;
    gemm_ctx *g = arg;
    int lo = (int)i * g->block;
    int len = g->block;
    if (g->by_rows) {
        if (lo + len > g->M)
            len = g->M - lo;
        const float *A = g->ta == CblasNoTrans ? g->A + (size_t)lo * g->lda : g->A + lo;
        cblas_sgemm(CblasRowMajor, g->ta, g->tb, len, g->N, g->K, 1.0f, A, g->lda, g->B, g->ldb,
                    g->beta, g->C + (size_t)lo * g->ldc, g->ldc);
    } else {
        if (lo + len > g->N)
            len = g->N - lo;
        const float *B = g->tb == CblasNoTrans ? g->B + lo : g->B + (size_t)lo * g->ldb;
        cblas_sgemm(CblasRowMajor, g->ta, g->tb, g->M, len, g->K, 1.0f, g->A, g->lda, B, g->ldb,
                    g->beta, g->C + lo, g->ldc);
    }
    return 0;
}

/* cblas_sgemm(RowMajor, ta, tb, M, N, K, 1, A, lda, B, ldb, beta, C, ldc)
 * over the pool. */
static void gemm_par(cpu_impl *c, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M, int N,
                     int K, const float *A, int lda, const float *B, int ldb, float beta, float *C,
                     int ldc)
{
    gemm_ctx g = {.ta = ta,
                  .tb = tb,
                  .M = M,
                  .N = N,
                  .K = K,
                  .A = A,
                  .lda = lda,
                  .B = B,
                  .ldb = ldb,
                  .beta = beta,
                  .C = C,
                  .ldc = ldc};
    double flops = 2.0 * M * N * K;
    int parts = flops < 4e6 ? 1 : c->threads;
    g.by_rows = M >= N;
    int dim = g.by_rows ? M : N;
    if (parts > dim)
        parts = dim;
    g.block = (dim + parts - 1) / parts;
    if (!g.by_rows && parts > 1)
        g.block = (int)cpu_round_up((size_t)g.block, CPU_VEC_PAD);
    cpu_run(c, (size_t)((dim + g.block - 1) / g.block), gemm_item, &g);
}

int cpu_linear_forward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                       const float *weight, const float *bias, float *y, kiln_err *err)
{
    int rc = kiln_nn_check_linear_forward(n, in, out, x, weight, y, err);
    if (rc || n == 0)
        return rc;
    if (bias) {
        for (int i = 0; i < n; i++)
            memcpy(y + (size_t)i * out, bias, (size_t)out * sizeof *y);
    }
    gemm_par(cpu_of(be), CblasNoTrans, CblasTrans, n, out, in, x, in, weight, in,
             bias ? 1.0f : 0.0f, y, out);
    return KILN_OK;
}

int cpu_linear_backward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                        const float *weight, const float *dy, float *dx, float *dweight,
                        float *dbias, kiln_err *err)
{
    int rc = kiln_nn_check_linear_backward(n, in, out, x, weight, dy, dweight, err);
    if (rc)
        return rc;
    cpu_impl *c = cpu_of(be);
    if (n == 0) {
        memset(dweight, 0, (size_t)in * out * sizeof *dweight);
        if (dbias)
            memset(dbias, 0, (size_t)out * sizeof *dbias);
        return KILN_OK;
    }
    /* dW [out, in] = dy^T · x */
    gemm_par(c, CblasTrans, CblasNoTrans, out, in, n, dy, out, x, in, 0.0f, dweight, in);
    /* dx [n, in] = dy · W */
    if (dx)
        gemm_par(c, CblasNoTrans, CblasNoTrans, n, in, out, dy, out, weight, in, 0.0f, dx, in);
    if (dbias) {
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int i = 0; i < n; i++)
                s += dy[(size_t)i * out + o];
            dbias[o] = (float)s;
        }
    }
    return KILN_OK;
}
