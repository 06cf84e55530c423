/* lib/nn/graph_check.c — see graph_check.h. Each op visits the pass under
 * way (its words as the CUDA backend's: buffers, sizes, constants; not the
 * scalars that change every step) and then runs on the inner backend. */
#include "nn/graph_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/graph_trace.h"

typedef struct checker_graph {
    kiln_graph_trace trace;
    int recorded;
} checker_graph;

typedef struct checker {
    kiln_nn_backend *inner;
    checker_graph *pass;
    long recorded, replayed;
    kiln_nn_ops ops; /* checker_ops, less the optional ops `inner` lacks */
} checker;

#define INNER(be) (((checker *)(be)->impl)->inner)
#define P(p) kiln_graph_word_ptr(p)
#define F(f) kiln_graph_word_float(f)
#define I(i) ((uint64_t)(i))

static void *slot_alloc(void *ctx, size_t bytes, void **dev, kiln_err *err)
{
    (void)ctx;
    void *p = malloc(bytes);
    if (!p)
        kiln_err_set(err, KILN_ENOMEM, "out of memory for a step graph slot");
    if (dev)
        *dev = NULL;
    return p;
}

static void slot_free(void *ctx, void *slot, void *dev)
{
    (void)ctx;
    (void)dev;
    free(slot);
}

/* KILN_OK outside a pass; the visit's status inside one. */
static int visit_slot(kiln_nn_backend *be, const char *op, const uint64_t *w, size_t n,
                      size_t bytes, void **slot, kiln_err *err)
{
    checker *k = be->impl;
    if (slot)
        *slot = NULL;
    if (!k->pass)
        return KILN_OK;
    return kiln_graph_trace_call(&k->pass->trace, op, w, n, bytes, slot, NULL, err);
}

#define VISIT(be, err, op, ...)                                                              \
    do {                                                                                     \
        const uint64_t w_[] = {__VA_ARGS__};                                                 \
        int v_ = visit_slot((be), (op), w_, sizeof w_ / sizeof w_[0], 0, NULL, (err));        \
        if (v_ != KILN_OK)                                                                   \
            return v_;                                                                       \
    } while (0)

static int forbid(kiln_nn_backend *be, const char *what, kiln_err *err)
{
    if (!((checker *)be->impl)->pass)
        return KILN_OK;
    return kiln_err_set(err, KILN_EINVAL, "%s inside a step graph pass", what);
}

/* A host output inside a pass: the inner op writes a slot, the caller's
 * buffer holds NaNs until graph_end copies the slot there. */
static int host_output(kiln_nn_backend *be, const char *op, const uint64_t *w, size_t n,
                       void *dst, size_t bytes, void **target, kiln_err *err)
{
    checker *k = be->impl;
    *target = dst;
    if (!k->pass)
        return KILN_OK;
    void *slot;
    int rc = visit_slot(be, op, w, n, bytes, &slot, err);
    if (rc == KILN_OK)
        rc = kiln_graph_trace_output(&k->pass->trace, KILN_GRAPH_OUT_COPY, dst, slot, bytes, 1.0,
                                     err);
    if (rc == KILN_OK) {
        memset(dst, 0xff, bytes); /* NaN in every float and double */
        *target = slot;
    }
    return rc;
}

static void *ck_alloc(kiln_nn_backend *be, size_t bytes, kiln_err *err)
{
    if (forbid(be, "alloc", err) != KILN_OK)
        return NULL;
    return INNER(be)->ops->alloc(INNER(be), bytes, err);
}

/* As the CUDA backend: a release inside a pass keeps the buffer. */
static void ck_release(kiln_nn_backend *be, void *p)
{
    if (!((checker *)be->impl)->pass)
        INNER(be)->ops->release(INNER(be), p);
}

static int ck_upload(kiln_nn_backend *be, void *dst, const void *host, size_t bytes,
                     kiln_err *err)
{
    VISIT(be, err, "upload", P(dst), I(bytes));
    return INNER(be)->ops->upload(INNER(be), dst, host, bytes, err);
}

static int ck_download(kiln_nn_backend *be, void *host, const void *src, size_t bytes,
                       kiln_err *err)
{
    void *target;
    const uint64_t w[] = {P(src), I(bytes)};
    int rc = host && bytes ? host_output(be, "download", w, 2, host, bytes, &target, err)
                           : (target = host, KILN_OK);
    return rc ? rc : INNER(be)->ops->download(INNER(be), target, src, bytes, err);
}

static int ck_fill(kiln_nn_backend *be, float *dst, float value, size_t count, kiln_err *err)
{
    VISIT(be, err, "fill", P(dst), F(value), I(count));
    return INNER(be)->ops->fill(INNER(be), dst, value, count, err);
}

static int ck_copy(kiln_nn_backend *be, float *dst, const float *src, size_t count,
                   kiln_err *err)
{
    VISIT(be, err, "copy", P(dst), P(src), I(count));
    return INNER(be)->ops->copy(INNER(be), dst, src, count, err);
}

static int ck_act_from_f32(kiln_nn_backend *be, int n, int c, int hw, const float *src,
                           float *dst, kiln_err *err)
{
    VISIT(be, err, "act_from_f32", I(n), I(c), I(hw), P(src), P(dst));
    return INNER(be)->ops->act_from_f32(INNER(be), n, c, hw, src, dst, err);
}

static int ck_act_to_f32(kiln_nn_backend *be, int n, int c, int hw, const float *src, float *dst,
                         kiln_err *err)
{
    VISIT(be, err, "act_to_f32", I(n), I(c), I(hw), P(src), P(dst));
    return INNER(be)->ops->act_to_f32(INNER(be), n, c, hw, src, dst, err);
}

static int ck_normalize_u8(kiln_nn_backend *be, int n, int c, int hw, const uint8_t *src,
                           const float *lut, float *dst, kiln_err *err)
{
    VISIT(be, err, "normalize_u8", I(n), I(c), I(hw), P(src), P(lut), P(dst));
    return INNER(be)->ops->normalize_u8(INNER(be), n, c, hw, src, lut, dst, err);
}

static int ck_sync(kiln_nn_backend *be, kiln_err *err)
{
    int rc = forbid(be, "sync", err);
    return rc ? rc : INNER(be)->ops->sync(INNER(be), err);
}

#define CONV_WORDS(d, n, h, w, a, b, out)                                                    \
    I((d)->in_c), I((d)->out_c), I((d)->k), I((d)->stride), I((d)->pad), I((d)->groups),     \
        I(n), I(h), I(w), P(a), P(b), P(out)

static int ck_conv_forward(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                           const float *x, const float *weight, float *y, kiln_err *err)
{
    VISIT(be, err, "conv_forward", CONV_WORDS(d, n, h, w, x, weight, y));
    return INNER(be)->ops->conv_forward(INNER(be), d, n, h, w, x, weight, y, err);
}

static int ck_conv_backward_data(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h,
                                 int w, const float *dy, const float *weight, float *dx,
                                 kiln_err *err)
{
    VISIT(be, err, "conv_backward_data", CONV_WORDS(d, n, h, w, dy, weight, dx));
    return INNER(be)->ops->conv_backward_data(INNER(be), d, n, h, w, dy, weight, dx, err);
}

static int ck_conv_backward_filter(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h,
                                   int w, const float *x, const float *dy, float *dweight,
                                   kiln_err *err)
{
    VISIT(be, err, "conv_backward_filter", CONV_WORDS(d, n, h, w, x, dy, dweight));
    return INNER(be)->ops->conv_backward_filter(INNER(be), d, n, h, w, x, dy, dweight, err);
}

static int ck_bn_forward_train(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                               const float *gamma, const float *beta, float *rm, float *rv,
                               float momentum, float eps, float *y, float *sm, float *si,
                               kiln_err *err)
{
    VISIT(be, err, "bn_forward_train", I(n), I(c), I(hw), P(x), P(gamma), P(beta), P(rm), P(rv),
          F(momentum), F(eps), P(y), P(sm), P(si));
    return INNER(be)->ops->bn_forward_train(INNER(be), n, c, hw, x, gamma, beta, rm, rv, momentum,
                                            eps, y, sm, si, err);
}

static int ck_bn_forward_eval(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                              const float *gamma, const float *beta, const float *rm,
                              const float *rv, float eps, float *y, kiln_err *err)
{
    VISIT(be, err, "bn_forward_eval", I(n), I(c), I(hw), P(x), P(gamma), P(beta), P(rm), P(rv),
          F(eps), P(y));
    return INNER(be)->ops->bn_forward_eval(INNER(be), n, c, hw, x, gamma, beta, rm, rv, eps, y,
                                           err);
}

static int ck_bn_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                          const float *dy, const float *gamma, const float *sm, const float *si,
                          float *dx, float *dgamma, float *dbeta, kiln_err *err)
{
    VISIT(be, err, "bn_backward", I(n), I(c), I(hw), P(x), P(dy), P(gamma), P(sm), P(si), P(dx),
          P(dgamma), P(dbeta));
    return INNER(be)->ops->bn_backward(INNER(be), n, c, hw, x, dy, gamma, sm, si, dx, dgamma,
                                       dbeta, err);
}

/* Fused BN + SiLU: offered only where the inner backend has them (the
 * checker's table is per instance, see kiln_nn_graph_checker_create). */
static int ck_bn_silu_forward_train(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                    const float *gamma, const float *beta, float *rm, float *rv,
                                    float momentum, float eps, float *bn, float *y, float *sm,
                                    float *si, kiln_err *err)
{
    VISIT(be, err, "bn_silu_forward_train", I(n), I(c), I(hw), P(x), P(gamma), P(beta), P(rm),
          P(rv), F(momentum), F(eps), P(bn), P(y), P(sm), P(si));
    return INNER(be)->ops->bn_silu_forward_train(INNER(be), n, c, hw, x, gamma, beta, rm, rv,
                                                 momentum, eps, bn, y, sm, si, err);
}

static int ck_bn_silu_forward_eval(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                   const float *gamma, const float *beta, const float *rm,
                                   const float *rv, float eps, float *y, kiln_err *err)
{
    VISIT(be, err, "bn_silu_forward_eval", I(n), I(c), I(hw), P(x), P(gamma), P(beta), P(rm),
          P(rv), F(eps), P(y));
    return INNER(be)->ops->bn_silu_forward_eval(INNER(be), n, c, hw, x, gamma, beta, rm, rv, eps,
                                                y, err);
}

static int ck_silu_bn_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                               const float *bn, const float *dy, const float *gamma,
                               const float *sm, const float *si, float *dx, float *dgamma,
                               float *dbeta, kiln_err *err)
{
    VISIT(be, err, "silu_bn_backward", I(n), I(c), I(hw), P(x), P(bn), P(dy), P(gamma), P(sm),
          P(si), P(dx), P(dgamma), P(dbeta));
    return INNER(be)->ops->silu_bn_backward(INNER(be), n, c, hw, x, bn, dy, gamma, sm, si, dx,
                                            dgamma, dbeta, err);
}

/* The unary and binary elementwise ops share one shape of words. */
#define EW1(name)                                                                            \
    static int ck_##name(kiln_nn_backend *be, size_t count, const float *x, float *y,        \
                         kiln_err *err)                                                      \
    {                                                                                        \
        VISIT(be, err, #name, I(count), P(x), P(y));                                         \
        return INNER(be)->ops->name(INNER(be), count, x, y, err);                            \
    }
#define EW2(name)                                                                            \
    static int ck_##name(kiln_nn_backend *be, size_t count, const float *a, const float *b,  \
                         float *y, kiln_err *err)                                            \
    {                                                                                        \
        VISIT(be, err, #name, I(count), P(a), P(b), P(y));                                   \
        return INNER(be)->ops->name(INNER(be), count, a, b, y, err);                         \
    }
EW1(silu_forward)
EW2(silu_backward)
EW1(sigmoid_forward)
EW2(sigmoid_backward)
EW2(add)
EW2(mul)

static int ck_scale(kiln_nn_backend *be, size_t count, float alpha, float *x, kiln_err *err)
{
    VISIT(be, err, "scale", I(count), F(alpha), P(x));
    return INNER(be)->ops->scale(INNER(be), count, alpha, x, err);
}

static int ck_sum_squares(kiln_nn_backend *be, size_t count, const float *x, double *host_out,
                          kiln_err *err)
{
    void *target;
    const uint64_t w[] = {P(x), I(count)};
    int rc = host_out ? host_output(be, "sum_squares", w, 2, host_out, sizeof *host_out, &target,
                                    err)
                      : (target = host_out, KILN_OK);
    return rc ? rc : INNER(be)->ops->sum_squares(INNER(be), count, x, target, err);
}

/* The seed changes every step: not a word. */
static int ck_mask(kiln_nn_backend *be, size_t count, float p, uint64_t seed, uint64_t offset,
                   float *mask, kiln_err *err)
{
    VISIT(be, err, "mask", I(count), F(p), I(offset), P(mask));
    return INNER(be)->ops->mask(INNER(be), count, p, seed, offset, mask, err);
}

static int ck_scale_samples(kiln_nn_backend *be, int n, size_t per_sample, const float *x,
                            const float *scale, float *y, kiln_err *err)
{
    VISIT(be, err, "scale_samples", I(n), I(per_sample), P(x), P(scale), P(y));
    return INNER(be)->ops->scale_samples(INNER(be), n, per_sample, x, scale, y, err);
}

static int ck_avgpool_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                              float *y, kiln_err *err)
{
    VISIT(be, err, "avgpool_forward", I(n), I(c), I(hw), P(x), P(y));
    return INNER(be)->ops->avgpool_forward(INNER(be), n, c, hw, x, y, err);
}

static int ck_avgpool_backward(kiln_nn_backend *be, int n, int c, int hw, const float *dy,
                               float *dx, kiln_err *err)
{
    VISIT(be, err, "avgpool_backward", I(n), I(c), I(hw), P(dy), P(dx));
    return INNER(be)->ops->avgpool_backward(INNER(be), n, c, hw, dy, dx, err);
}

static int ck_scale_channels_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                     const float *s, float *y, kiln_err *err)
{
    VISIT(be, err, "scale_channels_forward", I(n), I(c), I(hw), P(x), P(s), P(y));
    return INNER(be)->ops->scale_channels_forward(INNER(be), n, c, hw, x, s, y, err);
}

static int ck_scale_channels_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                      const float *s, const float *dy, float *dx, float *ds,
                                      kiln_err *err)
{
    VISIT(be, err, "scale_channels_backward", I(n), I(c), I(hw), P(x), P(s), P(dy), P(dx),
          P(ds));
    return INNER(be)->ops->scale_channels_backward(INNER(be), n, c, hw, x, s, dy, dx, ds, err);
}

static int ck_linear_forward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                             const float *weight, const float *bias, float *y, kiln_err *err)
{
    VISIT(be, err, "linear_forward", I(n), I(in), I(out), P(x), P(weight), P(bias), P(y));
    return INNER(be)->ops->linear_forward(INNER(be), n, in, out, x, weight, bias, y, err);
}

static int ck_linear_backward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                              const float *weight, const float *dy, float *dx, float *dweight,
                              float *dbias, kiln_err *err)
{
    VISIT(be, err, "linear_backward", I(n), I(in), I(out), P(x), P(weight), P(dy), P(dx),
          P(dweight), P(dbias));
    return INNER(be)->ops->linear_backward(INNER(be), n, in, out, x, weight, dy, dx, dweight,
                                           dbias, err);
}

static int ck_xent(kiln_nn_backend *be, int n, int classes, const float *logits,
                   const int32_t *labels, float ls, float *probs, float *dlogits,
                   double *host_loss, kiln_err *err)
{
    void *target;
    const uint64_t w[] = {I(n), I(classes), P(logits), P(labels), F(ls), P(probs), P(dlogits)};
    int rc = host_loss ? host_output(be, "xent_forward_backward", w, 7, host_loss,
                                     sizeof *host_loss, &target, err)
                       : (target = host_loss, KILN_OK);
    return rc ? rc
              : INNER(be)->ops->xent_forward_backward(INNER(be), n, classes, logits, labels, ls,
                                                      probs, dlogits, target, err);
}

/* The learning rate, momentum and step change every step: not words. */
static int ck_sgd_step(kiln_nn_backend *be, size_t count, float *param, const float *grad,
                       float *buf, float lr, float momentum, int nesterov, float wd,
                       kiln_err *err)
{
    VISIT(be, err, "sgd_step", I(count), P(param), P(grad), P(buf));
    return INNER(be)->ops->sgd_step(INNER(be), count, param, grad, buf, lr, momentum, nesterov,
                                    wd, err);
}

static int ck_adamw_step(kiln_nn_backend *be, size_t count, float *param, const float *grad,
                         float *m, float *v, float lr, float beta1, float beta2, float eps,
                         float wd, int64_t step, kiln_err *err)
{
    VISIT(be, err, "adamw_step", I(count), P(param), P(grad), P(m), P(v));
    return INNER(be)->ops->adamw_step(INNER(be), count, param, grad, m, v, lr, beta1, beta2, eps,
                                      wd, step, err);
}

static int ck_graph_begin(kiln_nn_backend *be, kiln_nn_graph **gp, kiln_err *err)
{
    checker *k = be->impl;
    if (!gp)
        return kiln_err_set(err, KILN_EINVAL, "graph_begin: NULL graph");
    if (k->pass)
        return kiln_err_set(err, KILN_EINVAL, "graph_begin: a step graph pass is under way");
    checker_graph *g = (checker_graph *)*gp;
    if (!g) {
        if (!(g = calloc(1, sizeof *g)))
            return kiln_err_set(err, KILN_ENOMEM, "out of memory for a step graph");
        kiln_graph_slot_fns fns = {.slot_alloc = slot_alloc, .slot_free = slot_free};
        kiln_graph_trace_init(&g->trace, &fns);
        *gp = (kiln_nn_graph *)g;
    }
    int rc = kiln_graph_trace_start(&g->trace, g->recorded ? KILN_GRAPH_REPLAY
                                                           : KILN_GRAPH_CAPTURE,
                                    err);
    if (rc == KILN_OK)
        k->pass = g;
    return rc;
}

static int ck_graph_end(kiln_nn_backend *be, kiln_nn_graph *graph, kiln_err *err)
{
    checker *k = be->impl;
    checker_graph *g = (checker_graph *)graph;
    if (!g || k->pass != g)
        return kiln_err_set(err, KILN_EINVAL, "graph_end: not the graph of this pass");
    k->pass = NULL;
    int rc = kiln_graph_trace_finish(&g->trace, err);
    if (rc != KILN_OK)
        return rc;
    kiln_graph_trace_deliver(&g->trace);
    if (g->recorded)
        k->replayed++;
    else
        k->recorded++;
    g->recorded = 1;
    return KILN_OK;
}

static void ck_graph_cancel(kiln_nn_backend *be, kiln_nn_graph *graph)
{
    checker *k = be->impl;
    checker_graph *g = (checker_graph *)graph;
    if (!g || k->pass != g)
        return;
    k->pass = NULL;
    kiln_graph_trace_abort(&g->trace);
}

static void ck_graph_free(kiln_nn_backend *be, kiln_nn_graph *graph)
{
    checker_graph *g = (checker_graph *)graph;
    if (!g)
        return;
    ck_graph_cancel(be, graph);
    kiln_graph_trace_free(&g->trace);
    free(g);
}

static void ck_destroy(kiln_nn_backend *be)
{
    if (!be)
        return;
    checker *k = be->impl;
    kiln_nn_backend_destroy(k->inner);
    free(k);
    free(be);
}

static const kiln_nn_ops checker_ops = {
    .name = "graph-check",
    .destroy = ck_destroy,
    .alloc = ck_alloc,
    .release = ck_release,
    .upload = ck_upload,
    .download = ck_download,
    .fill = ck_fill,
    .copy = ck_copy,
    .act_from_f32 = ck_act_from_f32,
    .act_to_f32 = ck_act_to_f32,
    .normalize_u8 = ck_normalize_u8,
    .sync = ck_sync,
    .conv_forward = ck_conv_forward,
    .conv_backward_data = ck_conv_backward_data,
    .conv_backward_filter = ck_conv_backward_filter,
    .bn_forward_train = ck_bn_forward_train,
    .bn_forward_eval = ck_bn_forward_eval,
    .bn_backward = ck_bn_backward,
    .bn_silu_forward_train = ck_bn_silu_forward_train,
    .bn_silu_forward_eval = ck_bn_silu_forward_eval,
    .silu_bn_backward = ck_silu_bn_backward,
    .silu_forward = ck_silu_forward,
    .silu_backward = ck_silu_backward,
    .sigmoid_forward = ck_sigmoid_forward,
    .sigmoid_backward = ck_sigmoid_backward,
    .add = ck_add,
    .mul = ck_mul,
    .scale = ck_scale,
    .sum_squares = ck_sum_squares,
    .mask = ck_mask,
    .scale_samples = ck_scale_samples,
    .avgpool_forward = ck_avgpool_forward,
    .avgpool_backward = ck_avgpool_backward,
    .scale_channels_forward = ck_scale_channels_forward,
    .scale_channels_backward = ck_scale_channels_backward,
    .linear_forward = ck_linear_forward,
    .linear_backward = ck_linear_backward,
    .xent_forward_backward = ck_xent,
    .sgd_step = ck_sgd_step,
    .adamw_step = ck_adamw_step,
    .graph_begin = ck_graph_begin,
    .graph_end = ck_graph_end,
    .graph_cancel = ck_graph_cancel,
    .graph_free = ck_graph_free,
};

kiln_nn_backend *kiln_nn_graph_checker_create(kiln_nn_backend *inner, kiln_err *err)
{
    if (!inner)
        return NULL; /* its creator said why */
    kiln_nn_backend *be = calloc(1, sizeof *be);
    checker *k = calloc(1, sizeof *k);
    if (!be || !k) {
        free(be);
        free(k);
        kiln_nn_backend_destroy(inner);
        kiln_err_set(err, KILN_ENOMEM, "out of memory for the graph checker");
        return NULL;
    }
    k->inner = inner;
    k->ops = checker_ops;
    if (!inner->ops->bn_silu_forward_train)
        k->ops.bn_silu_forward_train = NULL;
    if (!inner->ops->bn_silu_forward_eval)
        k->ops.bn_silu_forward_eval = NULL;
    if (!inner->ops->silu_bn_backward)
        k->ops.silu_bn_backward = NULL;
    be->ops = &k->ops;
    be->impl = k;
    be->act = inner->act;
    return be;
}

void kiln_nn_graph_checker_counts(const kiln_nn_backend *be, long *recorded, long *replayed)
{
    const checker *k = be->impl;
    if (recorded)
        *recorded = k->recorded;
    if (replayed)
        *replayed = k->replayed;
}
