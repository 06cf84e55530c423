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

#endif
