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
int kiln_nn_check_conv(const char *op, const kiln_conv_desc *d, int n, int h, int w,
                       const void *a, const void *b, const void *c, kiln_err *err);

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

#endif
