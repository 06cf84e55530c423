/* lib/nn/backend_check.h — argument checks every backend runs before an op,
 * so the CPU and CUDA backends refuse the same bad calls with the same codes
 * and messages (KILN_EINVAL naming the op). Private to the backends. */
#ifndef KILN_NN_BACKEND_CHECK_H
#define KILN_NN_BACKEND_CHECK_H

#include "nn/backend.h"

/* EINVAL when one of the `n` pointer arguments is NULL (named by position). */
int kiln_nn_check_ptrs(kiln_err *err, const char *op, int n, ...);
/* EINVAL for a negative size or one past INT32_MAX. */
int kiln_nn_check_dims(kiln_err *err, const char *op, long long a, long long b, long long c);
/* A convolution's descriptor, input shape (the kernel must fit the padded
 * input; n may be 0) and its three buffers. */
int kiln_nn_check_conv(const char *op, const kiln_conv_desc *d, int n, int h, int w, const void *a,
                       const void *b, const void *c, kiln_err *err);

/* sgd_step's arguments (count 0 is fine; the momentum buffer may be NULL
 * without momentum). */
int kiln_nn_check_sgd(size_t count, const float *param, const float *grad,
                      const float *momentum_buf, float lr, float momentum, int nesterov,
                      float weight_decay, kiln_err *err);
/* adamw_step's scalars (the caller checks the buffers when count > 0). */
int kiln_nn_check_adamw(float lr, float beta1, float beta2, float eps, float weight_decay,
                        int64_t step, kiln_err *err);
/* xent_forward_backward's sizes and label smoothing (the caller checks the
 * buffers and, where it can read them, the labels). */
int kiln_nn_check_xent(int n, int classes, float ls, kiln_err *err);

/* The checks below pass an op with nothing to do (the cases each names):
 * the caller returns KILN_OK then, before it touches a buffer. */

/* An elementwise op over `count` floats (0: nothing to do) reading
 * `inputs` of a and b (0 for fill, 1 for a, 2 for a and b) into y. */
int kiln_nn_check_ew(const char *op, size_t count, int inputs, const float *a, const float *b,
                     const float *y, kiln_err *err);
/* mask: p in [0, 1), then the buffer when count > 0. */
int kiln_nn_check_mask(size_t count, float p, const float *mask, kiln_err *err);
/* sum_squares: host_out always, x when count > 0. */
int kiln_nn_check_sum_squares(size_t count, const float *x, const double *host_out, kiln_err *err);
/* scale_samples: n >= 0, the buffers unless n or per_sample is 0. */
int kiln_nn_check_scale_samples(int n, size_t per_sample, const float *x, const float *scale,
                                const float *y, kiln_err *err);
/* The [n*c, hw] row ops (avgpool, scale_channels; their buffers are checked
 * first, by the caller): sizes, and at least one pixel to average over. */
int kiln_nn_check_rows(const char *op, int average, int n, int c, int hw, kiln_err *err);

/* Batch norm over [n, c, hw]. Training needs more than one value per
 * channel; c 0 is nothing to do for training and backward, n*c*hw 0 for
 * eval. bn_backward with n*hw 0 still writes zero parameter gradients. */
int kiln_nn_check_bn_train(int n, int c, int hw, const float *x, const float *gamma,
                           const float *beta, const float *running_mean, const float *running_var,
                           const float *y, const float *save_mean, const float *save_invstd,
                           kiln_err *err);
int kiln_nn_check_bn_eval(int n, int c, int hw, const float *x, const float *gamma,
                          const float *beta, const float *running_mean, const float *running_var,
                          const float *y, kiln_err *err);
int kiln_nn_check_bn_backward(int n, int c, int hw, const float *x, const float *dy,
                              const float *gamma, const float *save_mean, const float *save_invstd,
                              const float *dx, const float *dgamma, const float *dbeta,
                              kiln_err *err);

/* Linear [n, in] -> [n, out]: in, out >= 1. The forward pass has nothing
 * to do for n 0 (its buffers are then not checked); the backward pass
 * zeroes dweight (and dbias) then, so it checks its buffers always (dx and
 * dbias may be NULL: not wanted). */
int kiln_nn_check_linear_forward(int n, int in, int out, const float *x, const float *weight,
                                 const float *y, kiln_err *err);
int kiln_nn_check_linear_backward(int n, int in, int out, const float *x, const float *weight,
                                  const float *dy, const float *dweight, kiln_err *err);

#endif
