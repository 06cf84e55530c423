/* lib/nn/cuda/cuda_bf16_conv.c — the CUDA backend's bf16 mode (see
 * cuda_internal.h): convolutions through cuDNN on bf16 NHWC tensors, and
 * linear layers through cuBLAS on bf16 operands, both with float32
 * accumulation and float32 master weights.
 *
 * Convolution: the plans and algorithm choice are cuda_conv.c's (their
 * descriptors are bf16 NHWC in this mode, compute type float, tensor-op
 * math). The float32 weight [out_c, in_c/groups, k, k] (KCRS) is rounded
 * and transposed per call into bf16 KRSC in scratch — cuDNN's NHWC filter
 * layout, [out_c, k, k, in_c/groups] — by the same kernel that turns NCHW
 * activations into NHWC (n = out_c, c = in_c/groups, hw = k*k). The filter
 * gradient comes back from cuDNN as bf16 KRSC in scratch and is widened and
 * transposed into the float32 dweight.
 *
 * Linear: y [n, out] = x [n, in] · W^T + b, where a bf16 NHWC [n, c, 1]
 * tensor is plain row-major [n, c]. cuBLAS is column-major, so (as in
 * cuda_linear.c) y^T = W · x^T: cublasGemmEx with bf16 A and B (W rounded
 * per call into scratch), CUBLAS_COMPUTE_32F and a float32 C in scratch,
 * then one kernel adds the bias and rounds into y. dx likewise through a
 * float32 product and one rounding; dweight is written by cublasGemmEx
 * straight into the float32 gradient (bf16 A/B, CUDA_R_32F C), dbias sums
 * dy's rows in double. */
#include "nn/cuda/cuda_internal.h"
#include "nn/cuda/cuda_kernels_bf16.h"

#define BF16(p) ((kiln_bf16 *)(void *)(p))
#define CBF16(p) ((const kiln_bf16 *)(const void *)(p))

static size_t weight_count(const kiln_conv_desc *d)
{
    return (size_t)d->out_c * (size_t)(d->in_c / d->groups) * (size_t)d->k * (size_t)d->k;
}

/* a, b, out as cuda_conv_exec's (x/w/y, dy/w/dx, x/dy/dw), in the
 * interface's types: weights and dweight float32, the rest bf16 NHWC. */
static int bf16_conv(kiln_nn_backend *be, int dir, const kiln_conv_desc *d, int n, int h, int w,
                     const float *a, const float *b, float *out, kiln_err *err)
{
    cuda_impl *c = cuda_of(be);
    const char *op = cuda_conv_dir_name(dir);
    int rc = kiln_nn_check_conv(op, d, n, h, w, a, b, out, err);
    if (rc)
        return rc;
    CUDA_GRAPH_OP(c, err, op, GW_I(d->in_c), GW_I(d->out_c), GW_I(d->k), GW_I(d->stride),
                  GW_I(d->pad), GW_I(d->groups), GW_I(n), GW_I(h), GW_I(w), GW_P(a), GW_P(b),
                  GW_P(out));
    if (c->pass && n > 0 && (rc = cuda_conv_plan_known(c, dir, d, n, h, w, err)) != KILN_OK)
        return rc;
    size_t wcount = weight_count(d);
    int cpg = d->in_c / d->groups, kk = d->k * d->k;
    if (n == 0) {
        /* cuDNN refuses empty tensors; the CPU writes a zero filter gradient. */
        if (dir == CUDA_CONV_FILTER)
            KILN_CUDA(cudaMemsetAsync(out, 0, wcount * sizeof *out, c->stream));
        return KILN_OK;
    }
    /* The bf16 KRSC filter: cast from the weight, or cuDNN's dweight. */
    size_t bytes = wcount * sizeof(kiln_bf16);
    void *filter;
    if ((rc = cuda_scratch_parts(c, 1, &bytes, &filter, err)) != KILN_OK)
        return rc;
    if (dir == CUDA_CONV_FILTER) {
        if ((rc = cuda_conv_exec(c, dir, d, n, h, w, a, b, filter, err)) != KILN_OK)
            return rc;
        KILN_CUDA(cuda_launch_bf16_to_f32_nchw(c->stream, d->out_c, cpg, kk, CBF16(filter), out));
        return KILN_OK;
    }
    KILN_CUDA(cuda_launch_bf16_from_f32_nchw(c->stream, d->out_c, cpg, kk, b, BF16(filter)));
    return cuda_conv_exec(c, dir, d, n, h, w, a, filter, out, err);
fail:
    return kiln_err_wrap(err, "%s (bf16; conv in %d out %d k %d stride %d groups %d, n %d %dx%d)",
                         op, d->in_c, d->out_c, d->k, d->stride, d->groups, n, h, w);
}

int cuda_bf16_conv_forward(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                           const float *x, const float *weight, float *y, kiln_err *err)
{
    return bf16_conv(be, CUDA_CONV_FWD, d, n, h, w, x, weight, y, err);
}

int cuda_bf16_conv_backward_data(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h,
                                 int w, const float *dy, const float *weight, float *dx,
                                 kiln_err *err)
{
    return bf16_conv(be, CUDA_CONV_DATA, d, n, h, w, dy, weight, dx, err);
}

int cuda_bf16_conv_backward_filter(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h,
                                   int w, const float *x, const float *dy, float *dweight,
                                   kiln_err *err)
{
    return bf16_conv(be, CUDA_CONV_FILTER, d, n, h, w, x, dy, dweight, err);
}

/* --- linear ----------------------------------------------------------------- */

/* C (m×cols, float32, ldc) = op(A) · op(B) with bf16 A and B, float32
 * accumulation (CUBLAS_COMPUTE_32F, alpha/beta float). */
static cublasStatus_t gemm_bf16(cuda_impl *c, cublasOperation_t ta, cublasOperation_t tb, int m,
                                int cols, int k, const void *a, int lda, const void *b, int ldb,
                                float *out, int ldc)
{
    const float one = 1.0f, zero = 0.0f;
    return cublasGemmEx(c->blas, ta, tb, m, cols, k, &one, a, CUDA_R_16BF, lda, b, CUDA_R_16BF,
                        ldb, &zero, out, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

int cuda_bf16_linear_forward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                             const float *weight, const float *bias, float *y, kiln_err *err)
{
    cuda_impl *c = cuda_of(be);
    int rc = kiln_nn_check_linear_forward(n, in, out, x, weight, y, err);
    if (rc || n == 0)
        return rc;
    CUDA_GRAPH_OP(c, err, "linear_forward", GW_I(n), GW_I(in), GW_I(out), GW_P(x), GW_P(weight),
                  GW_P(bias), GW_P(y));
    /* Scratch: the bf16 weight, then the float32 product [n, out]. */
    size_t bytes[2] = {(size_t)in * (size_t)out * sizeof(kiln_bf16),
                       (size_t)n * (size_t)out * sizeof(float)};
    void *part[2];
    if ((rc = cuda_scratch_parts(c, 2, bytes, part, err)) != KILN_OK)
        return rc;
    KILN_CUDA(cuda_launch_bf16_from_f32(c->stream, (size_t)in * (size_t)out, weight,
                                        BF16(part[0])));
    KILN_CUBLAS(gemm_bf16(c, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, part[0], in, x, in,
                          (float *)part[1], out));
    KILN_CUDA(cuda_launch_bf16_bias_store(c->stream, n, out, (const float *)part[1], bias,
                                          BF16(y)));
fail:
    return rc;
}

int cuda_bf16_linear_backward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                              const float *weight, const float *dy, float *dx, float *dweight,
                              float *dbias, kiln_err *err)
{
    cuda_impl *c = cuda_of(be);
    int rc = kiln_nn_check_linear_backward(n, in, out, x, weight, dy, dweight, err);
    if (rc)
        return rc;
    CUDA_GRAPH_OP(c, err, "linear_backward", GW_I(n), GW_I(in), GW_I(out), GW_P(x), GW_P(weight),
                  GW_P(dy), GW_P(dx), GW_P(dweight), GW_P(dbias));
    if (n == 0)
        return cuda_zero_floats(c, dweight, (size_t)in * out, dbias, (size_t)out, err);
    /* dW^T (in×out) = x^T (in×n) · (dy^T as out×n)^T, into float32 directly. */
    KILN_CUBLAS(gemm_bf16(c, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, x, in, dy, out, dweight, in));
    if (dx) {
        /* dx^T (in×n) = W^T (in×out) · dy^T (out×n) in float32, then rounded.
         * Scratch: the bf16 weight, then the float32 product [n, in]. */
        size_t bytes[2] = {(size_t)in * (size_t)out * sizeof(kiln_bf16),
                           (size_t)n * (size_t)in * sizeof(float)};
        void *part[2];
        if ((rc = cuda_scratch_parts(c, 2, bytes, part, err)) != KILN_OK)
            return rc;
        KILN_CUDA(cuda_launch_bf16_from_f32(c->stream, (size_t)in * (size_t)out, weight,
                                            BF16(part[0])));
        KILN_CUBLAS(gemm_bf16(c, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, part[0], in, dy, out,
                              (float *)part[1], in));
        KILN_CUDA(cuda_launch_bf16_from_f32(c->stream, (size_t)n * (size_t)in,
                                            (const float *)part[1], BF16(dx)));
    }
    if (dbias)
        KILN_CUDA(cuda_launch_bf16_bias_grad(c->stream, n, out, CBF16(dy), dbias));
fail:
    return rc;
}
