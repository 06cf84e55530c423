/* lib/nn/cuda/cuda_ops.c — the ops that run kiln's own kernels
 * (cuda_kernels.cu): activations, arithmetic, masks, the squared norm,
 * stochastic depth, pooling, SE gating, the loss and the optimizers. The
 * argument checks are the CPU oracle's, so both refuse the same calls. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nn/cuda/cuda_internal.h"

static int ew(kiln_nn_backend *be, const char *op, cuda_ew_kind kind, size_t count,
              const float *a, const float *b, float *y, float alpha, kiln_err *err)
{
    int needs_b = kind == CUDA_EW_SILU_BWD || kind == CUDA_EW_SIGMOID_BWD || kind == CUDA_EW_ADD ||
                  kind == CUDA_EW_MUL;
    int inputs = kind == CUDA_EW_FILL ? 0 : needs_b ? 2 : 1;
    int rc = kiln_nn_check_ew(op, count, inputs, a, b, y, err);
    if (rc || count == 0)
        return rc;
    CUDA_GRAPH_OP(cuda_of(be), err, op, GW_I(kind), GW_I(count), GW_P(a), GW_P(b), GW_P(y),
                  GW_F(alpha));
    KILN_CUDA(cuda_launch_ew(cuda_of(be)->stream, kind, count, a, b, y, alpha));
fail:
    return rc;
}

int cuda_fill(kiln_nn_backend *be, float *dst, float value, size_t count, kiln_err *err)
{
    return ew(be, "fill", CUDA_EW_FILL, count, NULL, NULL, dst, value, err);
}

int cuda_silu_forward(kiln_nn_backend *be, size_t count, const float *x, float *y, kiln_err *err)
{
    return ew(be, "silu_forward", CUDA_EW_SILU, count, x, NULL, y, 0, err);
}

int cuda_silu_backward(kiln_nn_backend *be, size_t count, const float *x, const float *dy,
                       float *dx, kiln_err *err)
{
    return ew(be, "silu_backward", CUDA_EW_SILU_BWD, count, x, dy, dx, 0, err);
}

int cuda_sigmoid_forward(kiln_nn_backend *be, size_t count, const float *x, float *y,
                         kiln_err *err)
{
    return ew(be, "sigmoid_forward", CUDA_EW_SIGMOID, count, x, NULL, y, 0, err);
}

int cuda_sigmoid_backward(kiln_nn_backend *be, size_t count, const float *y, const float *dy,
                          float *dx, kiln_err *err)
{
    return ew(be, "sigmoid_backward", CUDA_EW_SIGMOID_BWD, count, y, dy, dx, 0, err);
}

int cuda_add(kiln_nn_backend *be, size_t count, const float *a, const float *b, float *y,
             kiln_err *err)
{
    return ew(be, "add", CUDA_EW_ADD, count, a, b, y, 0, err);
}

int cuda_mul(kiln_nn_backend *be, size_t count, const float *x, const float *mask, float *y,
             kiln_err *err)
{
    return ew(be, "mul", CUDA_EW_MUL, count, x, mask, y, 0, err);
}

int cuda_scale(kiln_nn_backend *be, size_t count, float alpha, float *x, kiln_err *err)
{
    return ew(be, "scale", CUDA_EW_SCALE, count, x, NULL, x, alpha, err);
}

int cuda_sum_squares(kiln_nn_backend *be, size_t count, const float *x, double *host_out,
                     kiln_err *err)
{
    cuda_impl *c = cuda_of(be);
    int rc = kiln_nn_check_sum_squares(count, x, host_out, err);
    if (rc)
        return rc;
    *host_out = 0;
    if (count == 0)
        return KILN_OK;
    size_t chunks = (count + CUDA_SUMSQ_CHUNK - 1) / CUDA_SUMSQ_CHUNK;
    double *partial = cuda_scratch(c, chunks * sizeof(double), err);
    if (!partial)
        return err ? (int)err->code : KILN_ENOMEM;
    if (c->pass) {
        /* The partials land in a pinned slot; the sum is written after the launch. */
        void *slot;
        const uint64_t w[] = {GW_P(x), GW_I(count)};
        int g = cuda_graph_visit_slot(c, "sum_squares", w, 2, chunks * sizeof(double), &slot,
                                      NULL, err);
        if (g > 0)
            return g;
        if ((rc = cuda_graph_output(c, KILN_GRAPH_OUT_SUM_F64, host_out, slot, chunks, 1.0, err)))
            return rc;
        if (g == CUDA_GRAPH_SKIP)
            return KILN_OK;
        KILN_CUDA(cuda_launch_sum_squares(c->stream, count, x, partial));
        KILN_CUDA(cudaMemcpyAsync(slot, partial, chunks * sizeof(double), cudaMemcpyDeviceToHost,
                                  c->stream));
        return KILN_OK;
    }
    double *host = cuda_host_scratch(c, chunks, err);
    if (!host)
        return err ? (int)err->code : KILN_ENOMEM;
    KILN_CUDA(cuda_launch_sum_squares(c->stream, count, x, partial));
    KILN_CUDA(cudaMemcpyAsync(host, partial, chunks * sizeof *host, cudaMemcpyDeviceToHost,
                              c->stream));
    KILN_CUDA(cudaStreamSynchronize(c->stream));
    /* Chunks added in order, as the CPU does. */
    double total = 0;
    for (size_t i = 0; i < chunks; i++)
        total += host[i];
    *host_out = total;
fail:
    return rc;
}

/* The visit of an op whose scalars change every step (a seed, a learning
 * rate). Outside a pass *dev = NULL and the kernel takes `args` by value; in
 * a pass they go to the call's slot, and while recording a captured copy
 * moves the slot to its device twin, from which the kernel reads them, so
 * each replay uses the values of its own step. */
static int step_scalars(cuda_impl *c, const char *op, const uint64_t *words, size_t n_words,
                        const void *args, size_t bytes, void **dev, kiln_err *err)
{
    int rc = KILN_OK;
    void *slot = NULL;
    *dev = NULL;
    if (!c->pass)
        return KILN_OK;
    int g = cuda_graph_visit_slot(c, op, words, n_words, bytes, &slot, dev, err);
    if (g > 0)
        return g;
    memcpy(slot, args, bytes);
    if (g == CUDA_GRAPH_SKIP)
        return g;
    KILN_CUDA(cudaMemcpyAsync(*dev, slot, bytes, cudaMemcpyHostToDevice, c->stream));
fail:
    return rc;
}

int cuda_mask(kiln_nn_backend *be, size_t count, float p, uint64_t seed, uint64_t offset,
              float *mask, kiln_err *err)
{
    cuda_impl *c = cuda_of(be);
    int rc = kiln_nn_check_mask(count, p, mask, err);
    if (rc || count == 0)
        return rc;
    void *dev;
    const uint64_t w[] = {GW_I(count), GW_F(p), GW_I(offset), GW_P(mask)};
    int g = step_scalars(c, "mask", w, 4, &seed, sizeof seed, &dev, err);
    if (g != KILN_OK)
        return g == CUDA_GRAPH_SKIP ? KILN_OK : g;
    if (dev)
        KILN_CUDA(cuda_launch_mask_dev(c->stream, count, p, offset, mask, dev));
    else
        KILN_CUDA(cuda_launch_mask(c->stream, count, p, seed, offset, mask));
fail:
    return rc;
}

int cuda_scale_samples(kiln_nn_backend *be, int n, size_t per_sample, const float *x,
                       const float *scale, float *y, kiln_err *err)
{
    int rc = kiln_nn_check_scale_samples(n, per_sample, x, scale, y, err);
    if (rc || n == 0 || per_sample == 0)
        return rc;
    CUDA_GRAPH_OP(cuda_of(be), err, "scale_samples", GW_I(n), GW_I(per_sample), GW_P(x),
                  GW_P(scale), GW_P(y));
    KILN_CUDA(cuda_launch_scale_samples(cuda_of(be)->stream, n, per_sample, x, scale, y));
fail:
    return rc;
}

/* The [n*c, hw] row ops: the CPU's checks, then the kernel. */
enum { AVG_FWD, AVG_BWD, SCALE_FWD, SCALE_BWD };

static int rows_op(kiln_nn_backend *be, const char *op, int kind, int n, int c, int hw,
                   const float *x, const float *s, const float *dy, float *y, float *dx,
                   float *ds, kiln_err *err)
{
    int rc = kiln_nn_check_rows(op, kind == AVG_FWD || kind == AVG_BWD, n, c, hw, err);
    if (rc)
        return rc;
    size_t rows = (size_t)n * (size_t)c;
    if (rows == 0)
        return KILN_OK;
    CUDA_GRAPH_OP(cuda_of(be), err, op, GW_I(rows), GW_I(hw), GW_P(x), GW_P(s), GW_P(dy),
                  GW_P(y), GW_P(dx), GW_P(ds));
    cudaStream_t st = cuda_of(be)->stream;
    switch (kind) {
    case AVG_FWD:
        KILN_CUDA(cuda_launch_avgpool_fwd(st, rows, hw, x, y));
        break;
    case AVG_BWD:
        KILN_CUDA(cuda_launch_avgpool_bwd(st, rows, hw, dy, dx));
        break;
    case SCALE_FWD:
        KILN_CUDA(cuda_launch_scale_channels_fwd(st, rows, hw, x, s, y));
        break;
    default:
        KILN_CUDA(cuda_launch_scale_channels_bwd(st, rows, hw, x, s, dy, dx, ds));
        break;
    }
fail:
    return rc;
}

int cuda_avgpool_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x, float *y,
                         kiln_err *err)
{
    int rc = kiln_nn_check_ptrs(err, "avgpool_forward", 2, x, y);
    return rc ? rc : rows_op(be, "avgpool_forward", AVG_FWD, n, c, hw, x, NULL, NULL, y, NULL,
                             NULL, err);
}

int cuda_avgpool_backward(kiln_nn_backend *be, int n, int c, int hw, const float *dy, float *dx,
                          kiln_err *err)
{
    int rc = kiln_nn_check_ptrs(err, "avgpool_backward", 2, dy, dx);
    return rc ? rc : rows_op(be, "avgpool_backward", AVG_BWD, n, c, hw, NULL, NULL, dy, NULL, dx,
                             NULL, err);
}

int cuda_scale_channels_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                const float *s, float *y, kiln_err *err)
{
    int rc = kiln_nn_check_ptrs(err, "scale_channels_forward", 3, x, s, y);
    return rc ? rc : rows_op(be, "scale_channels_forward", SCALE_FWD, n, c, hw, x, s, NULL, y,
                             NULL, NULL, err);
}

int cuda_scale_channels_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                 const float *s, const float *dy, float *dx, float *ds,
                                 kiln_err *err)
{
    int rc = kiln_nn_check_ptrs(err, "scale_channels_backward", 5, x, s, dy, dx, ds);
    return rc ? rc : rows_op(be, "scale_channels_backward", SCALE_BWD, n, c, hw, x, s, dy, NULL,
                             dx, ds, err);
}

/* In a step graph: the row losses go to a pinned slot and their mean is
 * written after the launch; the labels are not read back (that would
 * synchronise inside the step), the kernel gives a bad one's row a NaN loss. */
static int xent_in_graph(cuda_impl *c, int n, int classes, const float *logits,
                         const int32_t *labels, float ls, float *probs, float *dlogits,
                         double *rows, double *host_loss, kiln_err *err)
{
    int rc = KILN_OK;
    void *slot;
    const uint64_t w[] = {GW_I(n),      GW_I(classes), GW_P(logits), GW_P(labels),
                          GW_F(ls),     GW_P(probs),   GW_P(dlogits)};
    int g = cuda_graph_visit_slot(c, "xent_forward_backward", w, 7, (size_t)n * sizeof(double),
                                  &slot, NULL, err);
    if (g > 0)
        return g;
    if ((rc = cuda_graph_output(c, KILN_GRAPH_OUT_SUM_F64, host_loss, slot, (size_t)n, (double)n,
                                err)))
        return rc;
    if (g == CUDA_GRAPH_SKIP)
        return KILN_OK;
    KILN_CUDA(cuda_launch_xent(c->stream, n, classes, logits, labels, ls, probs, dlogits, rows));
    KILN_CUDA(cudaMemcpyAsync(slot, rows, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost,
                              c->stream));
fail:
    return rc;
}

/* Outside a graph the labels are checked on the host (n int32, one small
 * copy) so a bad one gets the CPU's message before anything is written. */
int cuda_xent_forward_backward(kiln_nn_backend *be, int n, int classes, const float *logits,
                               const int32_t *labels, float ls, float *probs, float *dlogits,
                               double *host_loss, kiln_err *err)
{
    cuda_impl *c = cuda_of(be);
    int rc = kiln_nn_check_xent(n, classes, ls, err);
    if (rc)
        return rc;
    if ((rc = kiln_nn_check_ptrs(err, "xent_forward_backward", 5, logits, labels, probs, dlogits,
                              host_loss)))
        return rc;
    double *rows = cuda_scratch(c, (size_t)n * sizeof(double), err);
    if (!rows)
        return err ? (int)err->code : KILN_ENOMEM;
    if (c->pass)
        return xent_in_graph(c, n, classes, logits, labels, ls, probs, dlogits, rows, host_loss,
                             err);
    /* Host scratch: n doubles of row losses, then n int32 labels. */
    size_t doubles = (size_t)n + ((size_t)n + 1) / 2;
    double *host = cuda_host_scratch(c, doubles, err);
    if (!host)
        return err ? (int)err->code : KILN_ENOMEM;
    int32_t *host_labels = (int32_t *)(void *)(host + n);
    KILN_CUDA(cudaMemcpyAsync(host_labels, labels, (size_t)n * sizeof *host_labels,
                              cudaMemcpyDeviceToHost, c->stream));
    KILN_CUDA(cudaStreamSynchronize(c->stream));
    for (int i = 0; i < n; i++)
        if (host_labels[i] < 0 || host_labels[i] >= classes)
            return kiln_err_set(err, KILN_EINVAL,
                                "xent_forward_backward: label %d of sample %d is not in [0, %d)",
                                (int)host_labels[i], i, classes);
    KILN_CUDA(cuda_launch_xent(c->stream, n, classes, logits, labels, ls, probs, dlogits, rows));
    KILN_CUDA(cudaMemcpyAsync(host, rows, (size_t)n * sizeof *host, cudaMemcpyDeviceToHost,
                              c->stream));
    KILN_CUDA(cudaStreamSynchronize(c->stream));
    double total = 0;
    for (int i = 0; i < n; i++)
        total += host[i];
    *host_loss = total / n;
fail:
    return rc;
}

int cuda_sgd_step(kiln_nn_backend *be, size_t count, float *param, const float *grad,
                  float *momentum_buf, float lr, float momentum, int nesterov, float weight_decay,
                  kiln_err *err)
{
    int rc = kiln_nn_check_sgd(count, param, grad, momentum_buf, lr, momentum, nesterov,
                               weight_decay, err);
    if (rc != KILN_OK || count == 0)
        return rc;
    cuda_sgd_args a = {.lr = lr, .momentum = momentum, .wd = weight_decay,
                       .nesterov = nesterov != 0};
    void *dev;
    const uint64_t w[] = {GW_I(count), GW_P(param), GW_P(grad), GW_P(momentum_buf)};
    int g = step_scalars(cuda_of(be), "sgd_step", w, 4, &a, sizeof a, &dev, err);
    if (g != KILN_OK)
        return g == CUDA_GRAPH_SKIP ? KILN_OK : g;
    if (dev)
        KILN_CUDA(cuda_launch_sgd_dev(cuda_of(be)->stream, count, param, grad, momentum_buf, dev));
    else
        KILN_CUDA(cuda_launch_sgd(cuda_of(be)->stream, count, param, grad, momentum_buf, &a));
fail:
    return rc;
}

int cuda_adamw_step(kiln_nn_backend *be, size_t count, float *param, const float *grad, float *m,
                    float *v, float lr, float beta1, float beta2, float eps, float weight_decay,
                    int64_t step, kiln_err *err)
{
    int rc = KILN_OK;
    if (kiln_nn_check_adamw(lr, beta1, beta2, eps, weight_decay, step, err) != KILN_OK)
        return KILN_EINVAL;
    if (count == 0)
        return KILN_OK;
    if ((rc = kiln_nn_check_ptrs(err, "adamw_step", 4, param, grad, m, v)))
        return rc;
    cuda_adamw_args a = cuda_adamw_args_make(lr, beta1, beta2, eps, weight_decay, step);
    void *dev;
    const uint64_t w[] = {GW_I(count), GW_P(param), GW_P(grad), GW_P(m), GW_P(v)};
    int g = step_scalars(cuda_of(be), "adamw_step", w, 5, &a, sizeof a, &dev, err);
    if (g != KILN_OK)
        return g == CUDA_GRAPH_SKIP ? KILN_OK : g;
    if (dev)
        KILN_CUDA(cuda_launch_adamw_dev(cuda_of(be)->stream, count, param, grad, m, v, dev));
    else
        KILN_CUDA(cuda_launch_adamw(cuda_of(be)->stream, count, param, grad, m, v, &a));
fail:
    return rc;
}
