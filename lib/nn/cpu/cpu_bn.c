/* lib/nn/cpu/cpu_bn.c — BatchNorm2d over [n, c, hw], as PyTorch: batch
 * statistics in two passes (mean, then the sum of squared deviations),
 * accumulated in double; the running variance is updated unbiased. Work is
 * split by channel, so results do not depend on the thread count.
 *
 * Planes of at least BN_SMALL_HW pixels go through the vector kernels one
 * (sample, channel) row at a time. Smaller planes (4×4, 2×2: a few floats
 * per row) would spend their time in per-row calls, so their statistics
 * are summed by a block of channels swept sample by sample in memory order,
 * and rows shorter than BN_VEC_HW are normalised by plain loops. */
#include <math.h>

#include "nn/cpu/cpu_internal.h"

#define BN_SMALL_HW 64
#define BN_VEC_HW 16      /* rows this long use the vector kernels for y and dx */
#define BN_BLOCK 256      /* channels per item on the small-plane path */
#define BN_MIN_ITEM 16384 /* aim for items of at least this many floats */

typedef struct bn_ctx {
    cpu_impl *c;
    int n, ch, hw;
    size_t per_item;
    const float *x, *dy, *gamma, *beta, *mean_in, *invstd_in, *rmean, *rvar;
    float *y, *dx, *dgamma, *dbeta, *save_mean, *save_invstd, *run_mean, *run_var;
    float momentum, eps;
} bn_ctx;

static void channel_range(const bn_ctx *b, size_t item, int *c0, int *c1)
{
    size_t lo, hi;
    cpu_item_range(item, b->per_item, (size_t)b->ch, &lo, &hi);
    *c0 = (int)lo;
    *c1 = (int)hi;
}

/* Offset of the (sample s, channel ch) row of an [n, c, hw] tensor. */
static size_t row(const bn_ctx *b, int s, int ch)
{
    return ((size_t)s * b->ch + ch) * (size_t)b->hw;
}

/* Fills in the shape and runs fn over blocks of channels. */
static void run_channels(kiln_nn_backend *be, int n, int c, int hw, bn_ctx *b, kiln_pool_fn fn)
{
    b->c = cpu_of(be);
    b->n = n;
    b->ch = c;
    b->hw = hw;
    b->per_item = cpu_units_per_item(b->c, (size_t)c, (size_t)n * hw, BN_MIN_ITEM);
    if (hw < BN_SMALL_HW && b->per_item > BN_BLOCK)
        b->per_item = BN_BLOCK;
    cpu_run(b->c, cpu_div_up((size_t)c, b->per_item), fn, b);
}

/* Per channel of [c0, c1): mean and the sum of squared deviations. */
static void batch_stats(const bn_ctx *b, int c0, int c1, double *mean, double *ssd)
{
    const cpu_kernels *k = &b->c->k;
    size_t hw = (size_t)b->hw;
    double cnt = (double)b->n * (double)hw;
    int nc = c1 - c0;
    for (int i = 0; i < nc; i++)
        mean[i] = ssd[i] = 0;
    if (hw >= BN_SMALL_HW) {
        for (int i = 0; i < nc; i++) {
            for (int s = 0; s < b->n; s++)
                mean[i] += k->sum(hw, b->x + row(b, s, c0 + i));
            mean[i] /= cnt;
            for (int s = 0; s < b->n; s++)
                ssd[i] += k->sum_sq_dev(hw, b->x + row(b, s, c0 + i), (float)mean[i]);
        }
        return;
    }
    for (int s = 0; s < b->n; s++)
        for (int i = 0; i < nc; i++) {
            const float *r = b->x + row(b, s, c0 + i);
            for (size_t j = 0; j < hw; j++)
                mean[i] += r[j];
        }
    for (int i = 0; i < nc; i++)
        mean[i] /= cnt;
    for (int s = 0; s < b->n; s++)
        for (int i = 0; i < nc; i++) {
            const float *r = b->x + row(b, s, c0 + i);
            for (size_t j = 0; j < hw; j++) {
                double d = (double)r[j] - mean[i];
                ssd[i] += d * d;
            }
        }
}

/* y = x * a[i] + sh[i] per channel of [c0, c1). */
static void apply_affine(const bn_ctx *b, int c0, int c1, const float *a, const float *sh)
{
    size_t hw = (size_t)b->hw;
    for (int s = 0; s < b->n; s++)
        for (int i = 0; i < c1 - c0; i++) {
            const float *x = b->x + row(b, s, c0 + i);
            float *y = b->y + row(b, s, c0 + i);
            if (hw >= BN_VEC_HW) {
                b->c->k.affine(hw, x, a[i], sh[i], y);
                continue;
            }
            for (size_t j = 0; j < hw; j++)
                y[j] = x[j] * a[i] + sh[i];
        }
}

static int train_item(void *arg, size_t item, int worker)
{
    (void)worker;
    bn_ctx *b = arg;
    double cnt = (double)b->n * (double)b->hw, m = (double)b->momentum;
    int c0, c1;
    channel_range(b, item, &c0, &c1);
    for (int lo = c0; lo < c1; lo += BN_BLOCK) {
        int hi = lo + BN_BLOCK < c1 ? lo + BN_BLOCK : c1;
        double mean[BN_BLOCK], ssd[BN_BLOCK];
        float a[BN_BLOCK], sh[BN_BLOCK];
        batch_stats(b, lo, hi, mean, ssd);
        for (int i = 0; i < hi - lo; i++) {
            int ch = lo + i;
            double invstd = 1.0 / sqrt(ssd[i] / cnt + (double)b->eps);
            double scale = (double)b->gamma[ch] * invstd;
            a[i] = (float)scale;
            sh[i] = (float)((double)b->beta[ch] - mean[i] * scale);
            b->save_mean[ch] = (float)mean[i];
            b->save_invstd[ch] = (float)invstd;
            b->run_mean[ch] = (float)((1.0 - m) * b->run_mean[ch] + m * mean[i]);
            b->run_var[ch] = (float)((1.0 - m) * b->run_var[ch] + m * (ssd[i] / (cnt - 1)));
        }
        apply_affine(b, lo, hi, a, sh);
    }
    return 0;
}

int cpu_bn_forward_train(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                         const float *gamma, const float *beta, float *running_mean,
                         float *running_var, float momentum, float eps, float *y, float *save_mean,
                         float *save_invstd, kiln_err *err)
{
    int rc = kiln_nn_check_bn_train(n, c, hw, x, gamma, beta, running_mean, running_var, y,
                                    save_mean, save_invstd, err);
    if (rc || c == 0)
        return rc;
    bn_ctx b = {.x = x,
                .gamma = gamma,
                .beta = beta,
                .run_mean = running_mean,
                .run_var = running_var,
                .y = y,
                .save_mean = save_mean,
                .save_invstd = save_invstd,
                .momentum = momentum,
                .eps = eps};
    run_channels(be, n, c, hw, &b, train_item);
    return KILN_OK;
}

static int eval_item(void *arg, size_t item, int worker)
{
    (void)worker;
    bn_ctx *b = arg;
    int c0, c1;
    channel_range(b, item, &c0, &c1);
    for (int lo = c0; lo < c1; lo += BN_BLOCK) {
        int hi = lo + BN_BLOCK < c1 ? lo + BN_BLOCK : c1;
        float a[BN_BLOCK], sh[BN_BLOCK];
        for (int i = 0; i < hi - lo; i++) {
            int ch = lo + i;
            double scale = (double)b->gamma[ch] / sqrt((double)b->rvar[ch] + (double)b->eps);
            a[i] = (float)scale;
            sh[i] = (float)((double)b->beta[ch] - (double)b->rmean[ch] * scale);
        }
        apply_affine(b, lo, hi, a, sh);
    }
    return 0;
}

int cpu_bn_forward_eval(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                        const float *gamma, const float *beta, const float *running_mean,
                        const float *running_var, float eps, float *y, kiln_err *err)
{
    int rc = kiln_nn_check_bn_eval(n, c, hw, x, gamma, beta, running_mean, running_var, y, err);
    if (rc || (long long)n * c * hw == 0)
        return rc;
    bn_ctx b = {.x = x,
                .gamma = gamma,
                .beta = beta,
                .rmean = running_mean,
                .rvar = running_var,
                .y = y,
                .eps = eps};
    run_channels(be, n, c, hw, &b, eval_item);
    return KILN_OK;
}

/* Per channel of [c0, c1): sum dy and sum dy*(x - mean). */
static void backward_sums(const bn_ctx *b, int c0, int c1, double *sum_dy, double *dot)
{
    size_t hw = (size_t)b->hw;
    int nc = c1 - c0;
    for (int i = 0; i < nc; i++)
        sum_dy[i] = dot[i] = 0;
    for (int s = 0; s < b->n; s++)
        for (int i = 0; i < nc; i++) {
            const float *g = b->dy + row(b, s, c0 + i), *x = b->x + row(b, s, c0 + i);
            float mean = b->mean_in[c0 + i];
            if (hw >= BN_SMALL_HW) {
                double ts, td;
                b->c->k.sum_dot_dev(hw, g, x, mean, &ts, &td);
                sum_dy[i] += ts;
                dot[i] += td;
                continue;
            }
            for (size_t j = 0; j < hw; j++) {
                sum_dy[i] += g[j];
                dot[i] += (double)g[j] * ((double)x[j] - mean);
            }
        }
}

/* dbeta = sum dy, dgamma = invstd * sum dy*(x-mean),
 * dx = gamma*invstd * (dy - dbeta/N - (x-mean) * invstd^2 * sum(dy*(x-mean))/N). */
static int backward_item(void *arg, size_t item, int worker)
{
    (void)worker;
    bn_ctx *b = arg;
    double cnt = (double)b->n * (double)b->hw;
    int c0, c1;
    channel_range(b, item, &c0, &c1);
    for (int lo = c0; lo < c1; lo += BN_BLOCK) {
        int hi = lo + BN_BLOCK < c1 ? lo + BN_BLOCK : c1;
        double sum_dy[BN_BLOCK], dot[BN_BLOCK];
        float a[BN_BLOCK], bc[BN_BLOCK], cc[BN_BLOCK];
        backward_sums(b, lo, hi, sum_dy, dot);
        for (int i = 0; i < hi - lo; i++) {
            int ch = lo + i;
            double invstd = (double)b->invstd_in[ch];
            double scale = (double)b->gamma[ch] * invstd;
            b->dbeta[ch] = (float)sum_dy[i];
            b->dgamma[ch] = (float)(dot[i] * invstd);
            a[i] = (float)scale;
            bc[i] = (float)(-scale * invstd * invstd * dot[i] / cnt);
            cc[i] = (float)(-scale * sum_dy[i] / cnt);
        }
        for (int s = 0; s < b->n; s++)
            for (int i = 0; i < hi - lo; i++) {
                size_t r = row(b, s, lo + i);
                const float *x = b->x + r, *g = b->dy + r;
                float *dx = b->dx + r, mean = b->mean_in[lo + i];
                if (b->hw >= BN_VEC_HW) {
                    b->c->k.bn_backward((size_t)b->hw, x, g, mean, a[i], bc[i], cc[i], dx);
                    continue;
                }
                for (int j = 0; j < b->hw; j++)
                    dx[j] = g[j] * a[i] + ((x[j] - mean) * bc[i] + cc[i]);
            }
    }
    return 0;
}

int cpu_bn_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x, const float *dy,
                    const float *gamma, const float *save_mean, const float *save_invstd, float *dx,
                    float *dgamma, float *dbeta, kiln_err *err)
{
    int rc = kiln_nn_check_bn_backward(n, c, hw, x, dy, gamma, save_mean, save_invstd, dx, dgamma,
                                       dbeta, err);
    if (rc || c == 0)
        return rc;
    bn_ctx b = {.x = x,
                .dy = dy,
                .gamma = gamma,
                .mean_in = save_mean,
                .invstd_in = save_invstd,
                .dx = dx,
                .dgamma = dgamma,
                .dbeta = dbeta};
    run_channels(be, n, c, hw, &b, backward_item);
    return KILN_OK;
}
