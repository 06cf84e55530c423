/* lib/nn/optim.c — SGD / AdamW driving the backend's update kernels. */
#include "nn/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct kiln_optim {
    kiln_nn_backend *be;
    kiln_optim_config cfg;
    kiln_optim_param *params;
    size_t n_params;
    size_t total;      /* floats over all parameters */
    size_t *offset;    /* each parameter's offset into the state blocks */
    float *state[2];   /* SGD: momentum; AdamW: m, v — backend memory */
    int n_state;
    int64_t steps;
};

void kiln_optim_config_sgd(kiln_optim_config *cfg, float lr, float momentum, int nesterov,
                           float weight_decay)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = KILN_OPTIM_SGD;
    cfg->lr = lr;
    cfg->momentum = momentum;
    cfg->nesterov = nesterov;
    cfg->weight_decay = weight_decay;
}

void kiln_optim_config_adamw(kiln_optim_config *cfg, float lr, float weight_decay)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = KILN_OPTIM_ADAMW;
    cfg->lr = lr;
    cfg->weight_decay = weight_decay;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
}

static int in_unit(float v)
{
    return v >= 0.0f && v < 1.0f;
}

static int check_config(const kiln_optim_config *c, kiln_err *err)
{
    if (c->kind != KILN_OPTIM_SGD && c->kind != KILN_OPTIM_ADAMW)
        return kiln_err_set(err, KILN_EINVAL, "optimizer: unknown kind %d", (int)c->kind);
    if (!(c->lr > 0.0f) || !isfinite(c->lr))
        return kiln_err_set(err, KILN_EINVAL, "optimizer: learning rate %g must be > 0",
                            (double)c->lr);
    if (!(c->weight_decay >= 0.0f) || !isfinite(c->weight_decay))
        return kiln_err_set(err, KILN_EINVAL, "optimizer: weight decay %g must be >= 0",
                            (double)c->weight_decay);
    if (c->kind == KILN_OPTIM_SGD) {
        if (!in_unit(c->momentum))
            return kiln_err_set(err, KILN_EINVAL, "SGD: momentum %g must be in [0, 1)",
                                (double)c->momentum);
        if (c->nesterov && c->momentum == 0.0f)
            return kiln_err_set(err, KILN_EINVAL, "SGD: Nesterov momentum needs momentum > 0");
        return KILN_OK;
    }
    if (!in_unit(c->beta1) || !in_unit(c->beta2))
        return kiln_err_set(err, KILN_EINVAL, "AdamW: betas (%g, %g) must be in [0, 1)",
                            (double)c->beta1, (double)c->beta2);
    if (!(c->eps >= 0.0f) || !isfinite(c->eps))
        return kiln_err_set(err, KILN_EINVAL, "AdamW: eps %g must be >= 0", (double)c->eps);
    return KILN_OK;
}

static int copy_params(kiln_optim *o, const kiln_optim_param *params, size_t n, kiln_err *err)
{
    o->params = calloc(n ? n : 1, sizeof *o->params);
    o->offset = calloc(n ? n : 1, sizeof *o->offset);
    if (!o->params || !o->offset)
        return kiln_err_set(err, KILN_ENOMEM, "out of memory making an optimizer");
    for (size_t i = 0; i < n; i++) {
        const kiln_optim_param *p = &params[i];
        if (!p->param || !p->grad || p->count == 0)
            return kiln_err_set(err, KILN_EINVAL,
                                "optimizer: parameter %zu has no buffer or no elements", i);
        if (p->count > (SIZE_MAX / sizeof(float)) / 2 - o->total)
            return kiln_err_set(err, KILN_EINVAL, "optimizer: parameters too large");
        o->params[i] = *p;
        o->offset[i] = o->total;
        o->total += p->count;
    }
    o->n_params = n;
    return KILN_OK;
}

kiln_optim *kiln_optim_create(kiln_nn_backend *be, const kiln_optim_config *cfg,
                              const kiln_optim_param *params, size_t n_params, kiln_err *err)
{
    if (check_config(cfg, err) != KILN_OK)
        return NULL;
    if (n_params == 0 || !params) {
        kiln_err_set(err, KILN_EINVAL, "optimizer: no parameters to optimize");
        return NULL;
    }
    kiln_optim *o = calloc(1, sizeof *o);
    if (!o) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory making an optimizer");
        return NULL;
    }
    o->be = be;
    o->cfg = *cfg;
    if (copy_params(o, params, n_params, err) != KILN_OK)
        goto fail;
    o->n_state = cfg->kind == KILN_OPTIM_ADAMW ? 2 : 1;
    for (int s = 0; s < o->n_state; s++) {
        o->state[s] = be->ops->alloc(be, o->total * sizeof(float), err);
        if (!o->state[s])
            goto fail;
        if (be->ops->fill(be, o->state[s], 0.0f, o->total, err) != KILN_OK)
            goto fail;
    }
    return o;
fail:
    kiln_optim_destroy(o);
    return NULL;
}

void kiln_optim_destroy(kiln_optim *o)
{
    if (!o)
        return;
    for (int s = 0; s < 2; s++)
        if (o->state[s])
            o->be->ops->release(o->be, o->state[s]);
    free(o->params);
    free(o->offset);
    free(o);
}

void kiln_optim_set_lr(kiln_optim *o, float lr)
{
    o->cfg.lr = lr;
}

void kiln_optim_set_momentum(kiln_optim *o, float momentum)
{
    if (o->cfg.kind == KILN_OPTIM_ADAMW)
        o->cfg.beta1 = momentum;
    else
        o->cfg.momentum = momentum;
}

float kiln_optim_lr(const kiln_optim *o)
{
    return o->cfg.lr;
}

int64_t kiln_optim_steps(const kiln_optim *o)
{
    return o->steps;
}

int kiln_optim_step(kiln_optim *o, kiln_err *err)
{
    const kiln_optim_config *c = &o->cfg;
    const kiln_nn_ops *ops = o->be->ops;
    int64_t step = o->steps + 1;
    for (size_t i = 0; i < o->n_params; i++) {
        const kiln_optim_param *p = &o->params[i];
        float wd = p->no_weight_decay ? 0.0f : c->weight_decay;
        size_t off = o->offset[i];
        int rc;
        if (c->kind == KILN_OPTIM_SGD)
            rc = ops->sgd_step(o->be, p->count, p->param, p->grad, o->state[0] + off, c->lr,
                               c->momentum, c->nesterov, wd, err);
        else
            rc = ops->adamw_step(o->be, p->count, p->param, p->grad, o->state[0] + off,
                                 o->state[1] + off, c->lr, c->beta1, c->beta2, c->eps, wd, step,
                                 err);
        if (rc != KILN_OK)
            return kiln_err_wrap(err, "optimizer step %lld, parameter %zu", (long long)step, i);
    }
    o->steps = step;
    return KILN_OK;
}

int kiln_optim_grad_norm(kiln_optim *o, double *total_norm, kiln_err *err)
{
    double sum = 0.0;
    for (size_t i = 0; i < o->n_params; i++) {
        double part = 0.0;
        int rc = o->be->ops->sum_squares(o->be, o->params[i].count, o->params[i].grad, &part,
                                         err);
        if (rc != KILN_OK)
            return kiln_err_wrap(err, "gradient norm, parameter %zu", i);
        sum += part;
    }
    *total_norm = sqrt(sum);
    return KILN_OK;
}

int kiln_optim_clip_grad_norm(kiln_optim *o, double max_norm, double *total_norm,
                              kiln_err *err)
{
    if (!(max_norm > 0.0))
        return kiln_err_set(err, KILN_EINVAL, "gradient clipping: max norm %g must be > 0",
                            max_norm);
    double total = 0.0;
    int rc = kiln_optim_grad_norm(o, &total, err);
    if (rc != KILN_OK)
        return rc;
    if (total_norm)
        *total_norm = total;
    if (!isfinite(total))
        return KILN_OK;
    double coef = max_norm / (total + 1e-6);
    if (coef >= 1.0)
        return KILN_OK;
    for (size_t i = 0; i < o->n_params; i++) {
        rc = o->be->ops->scale(o->be, o->params[i].count, (float)coef, o->params[i].grad, err);
        if (rc != KILN_OK)
            return kiln_err_wrap(err, "gradient clipping, parameter %zu", i);
    }
    return KILN_OK;
}

size_t kiln_optim_state_count(const kiln_optim *o)
{
    return o->total * (size_t)o->n_state;
}

static int check_state_count(const kiln_optim *o, size_t count, kiln_err *err)
{
    if (count != kiln_optim_state_count(o))
        return kiln_err_set(err, KILN_EINVAL,
                            "optimizer state has %zu values, this %s optimizer needs %zu", count,
                            o->cfg.kind == KILN_OPTIM_SGD ? "SGD" : "AdamW",
                            kiln_optim_state_count(o));
    return KILN_OK;
}

int kiln_optim_state_export(kiln_optim *o, float *host, size_t count, kiln_err *err)
{
    int rc = check_state_count(o, count, err);
    for (int s = 0; rc == KILN_OK && s < o->n_state; s++)
        rc = o->be->ops->download(o->be, host + (size_t)s * o->total, o->state[s],
                                  o->total * sizeof(float), err);
    return rc;
}

int kiln_optim_state_import(kiln_optim *o, const float *host, size_t count, int64_t steps,
                            kiln_err *err)
{
    int rc = check_state_count(o, count, err);
    if (rc != KILN_OK)
        return rc;
    if (steps < 0)
        return kiln_err_set(err, KILN_EINVAL, "optimizer state: step count %lld is negative",
                            (long long)steps);
    for (int s = 0; s < o->n_state; s++) {
        rc = o->be->ops->upload(o->be, o->state[s], host + (size_t)s * o->total,
                                o->total * sizeof(float), err);
        if (rc != KILN_OK)
            return rc;
    }
    o->steps = steps;
    return KILN_OK;
}
