/* lib/nn/backend_check.c — see backend_check.h. */
#include <stdarg.h>
#include <stdint.h>

#include "nn/backend_check.h"

int kiln_nn_check_ptrs(kiln_err *err, const char *op, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    int bad = -1;
    for (int i = 0; i < n; i++) {
        if (!va_arg(ap, const void *) && bad < 0)
            bad = i;
    }
    va_end(ap);
    if (bad >= 0)
        return kiln_err_set(err, KILN_EINVAL, "%s: buffer argument %d is NULL", op, bad + 1);
    return KILN_OK;
}

int kiln_nn_check_dims(kiln_err *err, const char *op, long long a, long long b, long long c)
{
    if (a < 0 || b < 0 || c < 0)
        return kiln_err_set(err, KILN_EINVAL, "%s: negative size (%lld, %lld, %lld)", op, a, b, c);
    if (a > INT32_MAX || b > INT32_MAX || c > INT32_MAX)
        return kiln_err_set(err, KILN_EINVAL, "%s: size too large", op);
    return KILN_OK;
}

int kiln_nn_check_conv(const char *op, const kiln_conv_desc *d, int n, int h, int w, const void *a,
                       const void *b, const void *c, kiln_err *err)
{
    if (!d)
        return kiln_err_set(err, KILN_EINVAL, "%s: NULL conv descriptor", op);
    if (d->in_c < 1 || d->out_c < 1 || d->k < 1 || d->stride < 1 || d->pad < 0 || d->groups < 1)
        return kiln_err_set(err, KILN_EINVAL,
                            "%s: bad conv (in_c %d, out_c %d, k %d, stride %d, pad %d, groups %d)",
                            op, d->in_c, d->out_c, d->k, d->stride, d->pad, d->groups);
    if (d->in_c % d->groups || d->out_c % d->groups)
        return kiln_err_set(err, KILN_EINVAL,
                            "%s: in_c %d and out_c %d must be multiples of groups %d", op, d->in_c,
                            d->out_c, d->groups);
    if (n < 0 || h < 1 || w < 1)
        return kiln_err_set(err, KILN_EINVAL, "%s: bad input shape n %d, h %d, w %d", op, n, h, w);
    if (h + 2 * d->pad < d->k || w + 2 * d->pad < d->k)
        return kiln_err_set(err, KILN_EINVAL,
                            "%s: a %dx%d input with pad %d is smaller than the %dx%d kernel", op, h,
                            w, d->pad, d->k, d->k);
    return kiln_nn_check_ptrs(err, op, 3, a, b, c);
}

int kiln_nn_check_sgd(size_t count, const float *param, const float *grad,
                      const float *momentum_buf, float lr, float momentum, int nesterov,
                      float weight_decay, kiln_err *err)
{
    if (!(lr >= 0.0f) || !(momentum >= 0.0f) || !(weight_decay >= 0.0f))
        return kiln_err_set(err, KILN_EINVAL,
                            "sgd_step: lr %g, momentum %g and weight decay %g must be >= 0",
                            (double)lr, (double)momentum, (double)weight_decay);
    if (nesterov && momentum == 0.0f)
        return kiln_err_set(err, KILN_EINVAL, "sgd_step: nesterov needs a momentum");
    if (count == 0)
        return KILN_OK;
    if (!param || !grad || (momentum != 0.0f && !momentum_buf))
        return kiln_err_set(err, KILN_EINVAL, "sgd_step: NULL buffer");
    return KILN_OK;
}

int kiln_nn_check_adamw(float lr, float beta1, float beta2, float eps, float weight_decay,
                        int64_t step, kiln_err *err)
{
    if (!(lr >= 0.0f) || !(eps >= 0.0f) || !(weight_decay >= 0.0f))
        return kiln_err_set(err, KILN_EINVAL,
                            "adamw_step: lr %g, eps %g and weight decay %g must be >= 0",
                            (double)lr, (double)eps, (double)weight_decay);
    if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
        return kiln_err_set(err, KILN_EINVAL, "adamw_step: betas %g, %g are not in [0, 1)",
                            (double)beta1, (double)beta2);
    if (step < 1)
        return kiln_err_set(err, KILN_EINVAL, "adamw_step: step %lld must count from 1",
                            (long long)step);
    return KILN_OK;
}

int kiln_nn_check_xent(int n, int classes, float ls, kiln_err *err)
{
    int rc = kiln_nn_check_dims(err, "xent_forward_backward", n, classes, 0);
    if (rc)
        return rc;
    if (n < 1 || classes < 1)
        return kiln_err_set(err, KILN_EINVAL,
                            "xent_forward_backward: need n >= 1 and classes >= 1, got %d, %d", n,
                            classes);
    if (!(ls >= 0.0f && ls <= 1.0f))
        return kiln_err_set(err, KILN_EINVAL,
                            "xent_forward_backward: label smoothing %g is not in [0, 1]",
                            (double)ls);
    return KILN_OK;
}

int kiln_nn_check_ew(const char *op, size_t count, int inputs, const float *a, const float *b,
                     const float *y, kiln_err *err)
{
    if (count == 0)
        return KILN_OK;
    if ((inputs >= 1 && !a) || (inputs >= 2 && !b) || !y)
        return kiln_err_set(err, KILN_EINVAL, "%s: NULL buffer", op);
    return KILN_OK;
}

int kiln_nn_check_mask(size_t count, float p, const float *mask, kiln_err *err)
{
    if (!(p >= 0.0f && p < 1.0f))
        return kiln_err_set(err, KILN_EINVAL, "mask: drop probability %g is not in [0, 1)",
                            (double)p);
    if (count && !mask)
        return kiln_err_set(err, KILN_EINVAL, "mask: NULL buffer");
    return KILN_OK;
}

int kiln_nn_check_sum_squares(size_t count, const float *x, const double *host_out, kiln_err *err)
{
    if (!host_out || (count && !x))
        return kiln_err_set(err, KILN_EINVAL, "sum_squares: NULL buffer");
    return KILN_OK;
}

int kiln_nn_check_scale_samples(int n, size_t per_sample, const float *x, const float *scale,
                                const float *y, kiln_err *err)
{
    if (n < 0)
        return kiln_err_set(err, KILN_EINVAL, "scale_samples: negative sample count %d", n);
    if (n == 0 || per_sample == 0)
        return KILN_OK;
    return kiln_nn_check_ptrs(err, "scale_samples", 3, x, scale, y);
}

int kiln_nn_check_rows(const char *op, int average, int n, int c, int hw, kiln_err *err)
{
    int rc = kiln_nn_check_dims(err, op, n, c, hw);
    if (rc)
        return rc;
    if (average && hw == 0)
        return kiln_err_set(err, KILN_EINVAL, "%s: cannot average over 0 pixels", op);
    return KILN_OK;
}

/* Sizes every batch-norm op takes: the element count bounded far below
 * what size_t indexing and cuDNN's int64 descriptors allow. */
static int check_bn_shape(const char *op, int n, int c, int hw, kiln_err *err)
{
    int rc = kiln_nn_check_dims(err, op, n, c, hw);
    if (rc)
        return rc;
    if ((long long)n * c * hw > (long long)INT64_C(1) << 40)
        return kiln_err_set(err, KILN_EINVAL, "%s: tensor too large", op);
    return KILN_OK;
}

int kiln_nn_check_bn_train(int n, int c, int hw, const float *x, const float *gamma,
                           const float *beta, const float *running_mean, const float *running_var,
                           const float *y, const float *save_mean, const float *save_invstd,
                           kiln_err *err)
{
    int rc = check_bn_shape("bn_forward_train", n, c, hw, err);
    if (rc || c == 0)
        return rc;
    if ((long long)n * hw < 2)
        return kiln_err_set(err, KILN_EINVAL,
                            "bn_forward_train: expected more than 1 value per channel when "
                            "training, got n %d × hw %d",
                            n, hw);
    return kiln_nn_check_ptrs(err, "bn_forward_train", 8, x, gamma, beta, running_mean, running_var,
                              y, save_mean, save_invstd);
}

int kiln_nn_check_bn_eval(int n, int c, int hw, const float *x, const float *gamma,
                          const float *beta, const float *running_mean, const float *running_var,
                          const float *y, kiln_err *err)
{
    int rc = check_bn_shape("bn_forward_eval", n, c, hw, err);
    if (rc || (long long)n * c * hw == 0)
        return rc;
    return kiln_nn_check_ptrs(err, "bn_forward_eval", 6, x, gamma, beta, running_mean, running_var,
                              y);
}

int kiln_nn_check_bn_backward(int n, int c, int hw, const float *x, const float *dy,
                              const float *gamma, const float *save_mean, const float *save_invstd,
                              const float *dx, const float *dgamma, const float *dbeta,
                              kiln_err *err)
{
    int rc = check_bn_shape("bn_backward", n, c, hw, err);
    if (rc || c == 0)
        return rc;
    return kiln_nn_check_ptrs(err, "bn_backward", 8, x, dy, gamma, save_mean, save_invstd, dx,
                              dgamma, dbeta);
}

static int check_linear_shape(const char *op, int n, int in, int out, kiln_err *err)
{
    int rc = kiln_nn_check_dims(err, op, n, in, out);
    if (rc)
        return rc;
    if (in < 1 || out < 1)
        return kiln_err_set(err, KILN_EINVAL, "%s: in %d and out %d must be positive", op, in, out);
    return KILN_OK;
}

int kiln_nn_check_linear_forward(int n, int in, int out, const float *x, const float *weight,
                                 const float *y, kiln_err *err)
{
    int rc = check_linear_shape("linear_forward", n, in, out, err);
    if (rc || n == 0)
        return rc;
    return kiln_nn_check_ptrs(err, "linear_forward", 3, x, weight, y);
}

int kiln_nn_check_linear_backward(int n, int in, int out, const float *x, const float *weight,
                                  const float *dy, const float *dweight, kiln_err *err)
{
    int rc = check_linear_shape("linear_backward", n, in, out, err);
    if (rc)
        return rc;
    return kiln_nn_check_ptrs(err, "linear_backward", 4, x, weight, dy, dweight);
}
