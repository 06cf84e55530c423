/* lib/nn/cuda/cuda_conv.c — Conv2d through cuDNN: forward, backward data
 * and backward filter, dense and grouped/depthwise (cudnnSetConvolution-
 * GroupCount), cross-correlation as PyTorch. One plan per shape (see
 * cuda_internal.h): descriptors made once, each direction's algorithm
 * chosen once on its first call, workspace from the shared arena.
 *
 * The plans serve both modes of the backend: float32 NCHW tensors and
 * filter (the fp32 ops below), or bf16 NHWC tensors and a bf16 KRSC filter
 * (bf16 mode, cuda_bf16_conv.c, through cuda_conv_exec). Either way the
 * convolution computes in float32 (the descriptor's compute type). */
#include <stdlib.h>
#include <string.h>

#include "nn/cuda/cuda_internal.h"

enum { DIR_FWD = CUDA_CONV_FWD, DIR_DATA = CUDA_CONV_DATA, DIR_FILTER = CUDA_CONV_FILTER,
       DIR_COUNT };

typedef struct conv_plan {
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t f;
    cudnnConvolutionDescriptor_t conv;
    int chosen[DIR_COUNT];
    int algo[DIR_COUNT];
    size_t ws[DIR_COUNT];
    cudnnMathType_t math[DIR_COUNT];
} conv_plan;

static void plan_free(void *val, void *ctx)
{
    (void)ctx;
    conv_plan *p = val;
    if (!p)
        return;
    if (p->x)
        cudnnDestroyTensorDescriptor(p->x);
    if (p->y)
        cudnnDestroyTensorDescriptor(p->y);
    if (p->f)
        cudnnDestroyFilterDescriptor(p->f);
    if (p->conv)
        cudnnDestroyConvolutionDescriptor(p->conv);
    free(p);
}

void cuda_conv_plans_free(cuda_impl *c)
{
    cuda_cache_clear(&c->convs, plan_free, NULL);
}

/* The data type and layout of a mode: float32 NCHW, or bf16 NHWC (the
 * filter then KRSC: cuDNN's NHWC filter format). cudnnSet*4dDescriptor take
 * the dimensions in NCHW order whatever the format, which only sets the
 * strides. Compute in float32 both ways (bf16 data with a float compute
 * type is cuDNN's BFLOAT16 configuration, as PyTorch sets it); tensor
 * cores always for bf16, for float32 only with TF32. */
static int plan_descriptors(conv_plan *p, const cuda_conv_key *key, const kiln_nn_cuda_opts *o,
                            kiln_err *err)
{
    int rc = KILN_OK;
    cuda_conv_dims dm;
    cuda_conv_dims_make(key, &dm);
    cudnnTensorFormat_t fmt = o->bf16 ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    cudnnDataType_t dt = o->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    KILN_CUDNN(cudnnCreateTensorDescriptor(&p->x));
    KILN_CUDNN(cudnnCreateTensorDescriptor(&p->y));
    KILN_CUDNN(cudnnCreateFilterDescriptor(&p->f));
    KILN_CUDNN(cudnnCreateConvolutionDescriptor(&p->conv));
    KILN_CUDNN(cudnnSetTensor4dDescriptor(p->x, fmt, dt, dm.x[0], dm.x[1], dm.x[2], dm.x[3]));
    KILN_CUDNN(cudnnSetTensor4dDescriptor(p->y, fmt, dt, dm.y[0], dm.y[1], dm.y[2], dm.y[3]));
    KILN_CUDNN(cudnnSetFilter4dDescriptor(p->f, dt, fmt, dm.filter[0], dm.filter[1], dm.filter[2],
                                          dm.filter[3]));
    KILN_CUDNN(cudnnSetConvolution2dDescriptor(p->conv, key->pad, key->pad, key->stride,
                                               key->stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                               CUDNN_DATA_FLOAT));
    KILN_CUDNN(cudnnSetConvolutionGroupCount(p->conv, key->groups));
    /* FMA math keeps fp32 exact to rounding; TF32 only when allowed. */
    KILN_CUDNN(cudnnSetConvolutionMathType(p->conv, o->tf32 || o->bf16 ? CUDNN_TENSOR_OP_MATH
                                                                       : CUDNN_FMA_MATH));
fail:
    return rc;
}

static conv_plan *plan_get(cuda_impl *c, const kiln_conv_desc *d, int n, int h, int w,
                           kiln_err *err)
{
    cuda_conv_key key;
    cuda_conv_key_make(&key, d, n, h, w);
    conv_plan *p = cuda_cache_find(&c->convs, &key);
    if (p)
        return p;
    if (!(p = calloc(1, sizeof *p))) {
        kiln_err_set(err, KILN_ENOMEM, "out of memory for a conv plan");
        return NULL;
    }
    if (plan_descriptors(p, &key, &c->opts, err) != KILN_OK ||
        cuda_cache_add(&c->convs, &key, p, err) != KILN_OK) {
        plan_free(p, NULL);
        return NULL;
    }
    return p;
}

static int is_tensor_math(cudnnMathType_t m)
{
    return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

/* The three perf structs have the same fields; copy into the common form. */
#define TO_CHOICES(perf, n, out)                                                              \
    for (int i_ = 0; i_ < (n); i_++) {                                                        \
        (out)[i_].algo = (int)(perf)[i_].algo;                                                \
        (out)[i_].ok = (perf)[i_].status == CUDNN_STATUS_SUCCESS;                             \
        (out)[i_].memory = (perf)[i_].memory;                                                 \
        (out)[i_].deterministic = (perf)[i_].determinism == CUDNN_DETERMINISTIC;              \
        (out)[i_].tensor_math = is_tensor_math((perf)[i_].mathType);                          \
        (out)[i_].math = (int)(perf)[i_].mathType;                                            \
    }

#define MAX_ALGOS 16

/* The candidates of one direction, fastest first: timed by cudnnFind (it
 * runs each, on scratch memory of its own, once per shape) or ranked by the
 * _v7 heuristics — also when cudnnFind itself fails (it allocates, and
 * memory may be short). */
#define CANDIDATES(perf_t, find_fn, v7_fn, ...)                                               \
    do {                                                                                      \
        perf_t perf[MAX_ALGOS];                                                               \
        cudnnStatus_t st_ = CUDNN_STATUS_NOT_SUPPORTED;                                       \
        if (c->opts.find)                                                                     \
            st_ = find_fn(c->dnn, __VA_ARGS__, MAX_ALGOS, &n, perf);                          \
        if (st_ != CUDNN_STATUS_SUCCESS)                                                      \
            KILN_CUDNN(v7_fn(c->dnn, __VA_ARGS__, MAX_ALGOS, &n, perf));                      \
        TO_CHOICES(perf, n, out);                                                             \
    } while (0)

static int candidates(cuda_impl *c, conv_plan *p, int dir, cuda_algo_choice *out, int *count,
                      kiln_err *err)
{
    int rc = KILN_OK, n = 0;
    if (dir == DIR_FWD)
        CANDIDATES(cudnnConvolutionFwdAlgoPerf_t, cudnnFindConvolutionForwardAlgorithm,
                   cudnnGetConvolutionForwardAlgorithm_v7, p->x, p->f, p->conv, p->y);
    else if (dir == DIR_DATA)
        CANDIDATES(cudnnConvolutionBwdDataAlgoPerf_t, cudnnFindConvolutionBackwardDataAlgorithm,
                   cudnnGetConvolutionBackwardDataAlgorithm_v7, p->f, p->y, p->conv, p->x);
    else
        CANDIDATES(cudnnConvolutionBwdFilterAlgoPerf_t,
                   cudnnFindConvolutionBackwardFilterAlgorithm,
                   cudnnGetConvolutionBackwardFilterAlgorithm_v7, p->x, p->y, p->conv, p->f);
    *count = n;
fail:
    return rc;
}

const char *cuda_conv_dir_name(int dir)
{
    return dir == DIR_FWD ? "conv_forward" : dir == DIR_DATA ? "conv_backward_data"
                                                             : "conv_backward_filter";
}

/* Chooses the direction's algorithm once, then sizes the arena for it. */
static int plan_choose(cuda_impl *c, conv_plan *p, int dir, const kiln_conv_desc *d, int n,
                       int h, int w, kiln_err *err)
{
    if (p->chosen[dir])
        return KILN_OK;
    cuda_algo_choice ch[MAX_ALGOS];
    int count = 0;
    int rc = candidates(c, p, dir, ch, &count, err);
    if (rc != KILN_OK)
        return kiln_err_wrap(err, "%s: choosing an algorithm", cuda_conv_dir_name(dir));
    /* Tensor math is TF32 for float32 data (only when allowed) and plain
     * bf16 products for bf16 data (the point of the mode). */
    int tensor_ok = c->opts.tf32 || c->opts.bf16;
    int i = cuda_algo_pick(ch, count, c->opts.workspace_limit, c->opts.deterministic, tensor_ok);
    if (i < 0)
        return kiln_err_set(err, KILN_EDEVICE,
                            "%s: no cuDNN algorithm runs conv in %d out %d k %d stride %d pad %d "
                            "groups %d on n %d %dx%d within the %zu-byte workspace limit",
                            cuda_conv_dir_name(dir), d->in_c, d->out_c, d->k, d->stride, d->pad, d->groups,
                            n, h, w, c->opts.workspace_limit);
    if ((rc = cuda_arena_reserve(c, ch[i].memory, err)) != KILN_OK)
        return rc;
    p->algo[dir] = ch[i].algo;
    p->ws[dir] = ch[i].memory;
    /* Without TF32 (float32 data), FMA math whatever the result says:
     * DEFAULT_MATH would let cuDNN use TF32 on Ampere and later. */
    p->math[dir] = tensor_ok ? (cudnnMathType_t)ch[i].math : CUDNN_FMA_MATH;
    p->chosen[dir] = 1;
    return KILN_OK;
}

/* While recording, cudnnFind and a growing arena would break the capture:
 * the shape must have run once before. */
int cuda_conv_plan_known(cuda_impl *c, int dir, const kiln_conv_desc *d, int n, int h, int w,
                         kiln_err *err)
{
    cuda_conv_key key;
    cuda_conv_key_make(&key, d, n, h, w);
    const conv_plan *p = cuda_cache_find(&c->convs, &key);
    if (p && p->chosen[dir])
        return KILN_OK;
    return kiln_err_set(err, KILN_EINVAL,
                        "%s of a shape not run before the step graph recording (conv in %d out "
                        "%d k %d stride %d groups %d, n %d %dx%d): run one step outside a graph "
                        "first",
                        cuda_conv_dir_name(dir), d->in_c, d->out_c, d->k, d->stride, d->groups, n, h, w);
}

int cuda_conv_exec(cuda_impl *c, int dir, const kiln_conv_desc *d, int n, int h, int w,
                   const void *a, const void *b, void *out, kiln_err *err)
{
    const float one = 1.0f, zero = 0.0f; /* float scaling for float and bf16 data alike */
    int rc = KILN_OK;
    conv_plan *p = plan_get(c, d, n, h, w, err);
    if (!p)
        return err ? (int)err->code : KILN_ENOMEM;
    if ((rc = plan_choose(c, p, dir, d, n, h, w, err)) != KILN_OK)
        return rc;
    KILN_CUDNN(cudnnSetConvolutionMathType(p->conv, p->math[dir]));
    if (dir == DIR_FWD)
        KILN_CUDNN(cudnnConvolutionForward(c->dnn, &one, p->x, a, p->f, b, p->conv,
                                           (cudnnConvolutionFwdAlgo_t)p->algo[dir], c->arena,
                                           p->ws[dir], &zero, p->y, out));
    else if (dir == DIR_DATA)
        KILN_CUDNN(cudnnConvolutionBackwardData(c->dnn, &one, p->f, b, p->y, a, p->conv,
                                                (cudnnConvolutionBwdDataAlgo_t)p->algo[dir],
                                                c->arena, p->ws[dir], &zero, p->x, out));
    else
        KILN_CUDNN(cudnnConvolutionBackwardFilter(c->dnn, &one, p->x, a, p->y, b, p->conv,
                                                  (cudnnConvolutionBwdFilterAlgo_t)p->algo[dir],
                                                  c->arena, p->ws[dir], &zero, p->f, out));
fail:
    if (rc != KILN_OK)
        kiln_err_wrap(err, "%s (conv in %d out %d k %d stride %d groups %d, n %d %dx%d)",
                      cuda_conv_dir_name(dir), d->in_c, d->out_c, d->k, d->stride, d->groups, n,
                      h, w);
    return rc;
}

static int conv_run(kiln_nn_backend *be, int dir, const kiln_conv_desc *d, int n, int h, int w,
                    const float *a, const float *b, float *out, kiln_err *err)
{
    cuda_impl *c = cuda_of(be);
    int rc = kiln_nn_check_conv(cuda_conv_dir_name(dir), d, n, h, w, a, b, out, err);
    if (rc)
        return rc;
    CUDA_GRAPH_OP(c, err, cuda_conv_dir_name(dir), GW_I(d->in_c), GW_I(d->out_c), GW_I(d->k),
                  GW_I(d->stride), GW_I(d->pad), GW_I(d->groups), GW_I(n), GW_I(h), GW_I(w),
                  GW_P(a), GW_P(b), GW_P(out));
    if (c->pass && n > 0 && (rc = cuda_conv_plan_known(c, dir, d, n, h, w, err)) != KILN_OK)
        return rc;
    if (n == 0) {
        /* cuDNN refuses empty tensors; the CPU writes a zero filter gradient. */
        if (dir == DIR_FILTER) {
            size_t wsize = (size_t)d->out_c * (d->in_c / d->groups) * d->k * d->k;
            KILN_CUDA(cudaMemsetAsync(out, 0, wsize * sizeof *out, c->stream));
        }
        return KILN_OK;
    }
    return cuda_conv_exec(c, dir, d, n, h, w, a, b, out, err);
fail:
    return kiln_err_wrap(err, "%s (conv in %d out %d k %d stride %d groups %d, n %d %dx%d)",
                         cuda_conv_dir_name(dir), d->in_c, d->out_c, d->k, d->stride, d->groups,
                         n, h, w);
}

int cuda_conv_forward(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                      const float *x, const float *weight, float *y, kiln_err *err)
{
    return conv_run(be, DIR_FWD, d, n, h, w, x, weight, y, err);
}

/* a = dy, b = weight, out = dx */
int cuda_conv_backward_data(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                            const float *dy, const float *weight, float *dx, kiln_err *err)
{
    return conv_run(be, DIR_DATA, d, n, h, w, dy, weight, dx, err);
}

/* a = x, b = dy, out = dweight */
int cuda_conv_backward_filter(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                              const float *x, const float *dy, float *dweight, kiln_err *err)
{
    return conv_run(be, DIR_FILTER, d, n, h, w, x, dy, dweight, err);
}
