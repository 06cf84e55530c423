/* lib/nn/cpu/cpu_optim.c — one step of torch.optim.SGD (dampening 0) and
 * torch.optim.AdamW over a flat buffer, element by element in float in the
 * order PyTorch's single-tensor implementations use (the vector loops are
 * in cpu_simd.inc); scalars that PyTorch computes in Python (bias
 * corrections, step size, 1 - lr*wd) are computed in double and rounded
 * once, as PyTorch hands them to its kernels. */
#include <math.h>

#include "nn/cpu/cpu_internal.h"

#define OPT_MIN_PER_ITEM 32768

typedef struct opt_ctx {
    const cpu_kernels *k;
    size_t count, chunk;
    float *param, *buf, *m, *v;
    const float *grad;
    cpu_sgd_args sgd;
    cpu_adamw_args adam;
    int is_adam;
} opt_ctx;

static int opt_item(void *arg, size_t i, int worker)
{
    (void)worker;
    const opt_ctx *o = arg;
    size_t lo, hi;
    cpu_item_range(i, o->chunk, o->count, &lo, &hi);
    size_t n = hi - lo;
    if (o->is_adam)
        o->k->adamw(n, o->param + lo, o->grad + lo, o->m + lo, o->v + lo, &o->adam);
    else
        o->k->sgd(n, o->param + lo, o->grad + lo, o->buf ? o->buf + lo : NULL, &o->sgd);
    return 0;
}

static void opt_run(cpu_impl *c, opt_ctx *o)
{
    o->k = &c->k;
    o->chunk = cpu_chunk_floats(c, o->count, OPT_MIN_PER_ITEM);
    cpu_run(c, cpu_div_up(o->count, o->chunk), opt_item, o);
}

int cpu_sgd_step(kiln_nn_backend *be, size_t count, float *param, const float *grad,
                 float *momentum_buf, float lr, float momentum, int nesterov, float weight_decay,
                 kiln_err *err)
{
    int rc = kiln_nn_check_sgd(count, param, grad, momentum_buf, lr, momentum, nesterov,
                               weight_decay, err);
    if (rc != KILN_OK || count == 0)
        return rc;
    opt_ctx o = {
        .count = count,
        .param = param,
        .buf = momentum_buf,
        .grad = grad,
        .sgd = {.lr = lr, .momentum = momentum, .wd = weight_decay, .nesterov = nesterov != 0}};
    opt_run(cpu_of(be), &o);
    return KILN_OK;
}

int cpu_adamw_step(kiln_nn_backend *be, size_t count, float *param, const float *grad, float *m,
                   float *v, float lr, float beta1, float beta2, float eps, float weight_decay,
                   int64_t step, kiln_err *err)
{
    if (kiln_nn_check_adamw(lr, beta1, beta2, eps, weight_decay, step, err) != KILN_OK)
        return KILN_EINVAL;
    if (count == 0)
        return KILN_OK;
    int rc = kiln_nn_check_ptrs(err, "adamw_step", 4, param, grad, m, v);
    if (rc)
        return rc;
    double bc1 = 1.0 - pow((double)beta1, (double)step);
    double bc2 = 1.0 - pow((double)beta2, (double)step);
    opt_ctx o = {.count = count,
                 .param = param,
                 .grad = grad,
                 .m = m,
                 .v = v,
                 .is_adam = 1,
                 .adam = {.decay = (float)(1.0 - (double)lr * (double)weight_decay),
                          .beta1 = beta1,
                          .beta2 = beta2,
                          .one_m_b1 = (float)(1.0 - (double)beta1),
                          .one_m_b2 = (float)(1.0 - (double)beta2),
                          .eps = eps,
                          .bc2_sqrt = (float)sqrt(bc2),
                          .neg_step = (float)(-(double)lr / bc1)}};
    opt_run(cpu_of(be), &o);
    return KILN_OK;
}
