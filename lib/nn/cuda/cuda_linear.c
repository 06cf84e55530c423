/* lib/nn/cuda/cuda_linear.c — Linear through cuBLAS sgemm.
 *
 * cuBLAS is column-major: a row-major [r, c] matrix is its [c, r]
 * transpose there, so y [n, out] = x · W^T is y^T = W · x^T:
 *   y^T (out×n) = op_T(W as in×out) · x^T (in×n)
 *   dW^T (in×out) = x^T (in×n) · op_T(dy^T as out×n)
 *   dx^T (in×n)  = W^T (in×out) · dy^T (out×n)
 * The bias is broadcast into y first and the product added (beta 1), as
 * the CPU does; dbias sums dy's rows in double (a kernel). */
#include "nn/cuda/cuda_internal.h"

int cuda_linear_forward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                        const float *weight, const float *bias, float *y, kiln_err *err)
{
    cuda_impl *c = cuda_of(be);
    const float one = 1.0f, zero = 0.0f;
    int rc = kiln_nn_check_linear_forward(n, in, out, x, weight, y, err);
    if (rc || n == 0)
        return rc;
    CUDA_GRAPH_OP(c, err, "linear_forward", GW_I(n), GW_I(in), GW_I(out), GW_P(x), GW_P(weight),
                  GW_P(bias), GW_P(y));
    if (bias)
        KILN_CUDA(cuda_launch_bias_rows(c->stream, n, out, bias, y));
    KILN_CUBLAS(cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, weight, in, x, in,
                            bias ? &one : &zero, y, out));
fail:
    return rc;
}

int cuda_linear_backward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                         const float *weight, const float *dy, float *dx, float *dweight,
                         float *dbias, kiln_err *err)
{
    cuda_impl *c = cuda_of(be);
    const float one = 1.0f, zero = 0.0f;
    int rc = kiln_nn_check_linear_backward(n, in, out, x, weight, dy, dweight, err);
    if (rc)
        return rc;
    CUDA_GRAPH_OP(c, err, "linear_backward", GW_I(n), GW_I(in), GW_I(out), GW_P(x), GW_P(weight),
                  GW_P(dy), GW_P(dx), GW_P(dweight), GW_P(dbias));
    if (n == 0)
        return cuda_zero_floats(c, dweight, (size_t)in * out, dbias, (size_t)out, err);
    KILN_CUBLAS(cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &one, x, in, dy, out,
                            &zero, dweight, in));
    if (dx)
        KILN_CUBLAS(cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &one, weight, in,
                                dy, out, &zero, dx, in));
    if (dbias)
        KILN_CUDA(cuda_launch_bias_grad(c->stream, n, out, dy, dbias));
fail:
    return rc;
}
