/* lib/nn/cuda/cuda_backend.c — the CUDA backend's life cycle, memory ops,
 * workspace arena and its two ops tables, fp32 and bf16 mixed precision
 * (see cuda_internal.h). Built into libkiln_cuda.so; the core reaches it
 * through lib/gpu's loader. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/gpu_module.h"
#include "nn/cuda/cuda_internal.h"

int cuda_oom(kiln_err *err, const char *what, size_t bytes)
{
    size_t free_b = 0, total_b = 0;
    (void)cudaGetLastError(); /* an allocation failure is not sticky; clear it */
    (void)cudaMemGetInfo(&free_b, &total_b);
    return kiln_err_set(err, KILN_ENOMEM,
                        "out of GPU memory allocating %.1f MiB for %s (%.1f MiB free of %.1f MiB): "
                        "lower the batch size (--batch-size, or train.batch_size in the config)",
                        (double)bytes / 1048576.0, what, (double)free_b / 1048576.0,
                        (double)total_b / 1048576.0);
}

/* cudaMalloc, with the out-of-memory advice. */
static void *device_alloc(size_t bytes, const char *what, kiln_err *err)
{
    void *p = NULL;
    int rc = KILN_OK;
    cudaError_t st = cudaMalloc(&p, bytes ? bytes : 256);
    if (st == cudaErrorMemoryAllocation) {
        cuda_oom(err, what, bytes);
        return NULL;
    }
    KILN_CUDA(st);
    return p;
fail:
    (void)rc;
    return NULL;
}

int cuda_arena_reserve(cuda_impl *c, size_t bytes, kiln_err *err)
{
    size_t cap = cuda_arena_capacity(c->arena_cap, bytes);
    if (cap == c->arena_cap)
        return KILN_OK;
    /* A recorded graph points into the arena: it must not move under one. */
    if (cuda_graph_forbid(c, "growing the cuDNN workspace (run one step outside a graph first)",
                          err) != KILN_OK)
        return KILN_EINVAL;
    c->mem_generation++;
    /* cudaFree waits for the work still using the old arena. */
    if (c->arena)
        cudaFree(c->arena);
    c->arena = NULL;
    c->arena_cap = 0;
    if (!(c->arena = device_alloc(cap, "the cuDNN workspace", err)))
        return KILN_ENOMEM;
    c->arena_cap = cap;
    return KILN_OK;
}

void *cuda_scratch(cuda_impl *c, size_t bytes, kiln_err *err)
{
    size_t cap = cuda_arena_capacity(c->scratch_cap, bytes);
    if (cap != c->scratch_cap) {
        if (cuda_graph_forbid(c, "growing the reduction scratch (run one step outside a graph "
                                 "first)",
                              err) != KILN_OK)
            return NULL;
        c->mem_generation++;
        if (c->scratch)
            cudaFree(c->scratch);
        c->scratch_cap = 0;
        if (!(c->scratch = device_alloc(cap, "reduction scratch", err)))
            return NULL;
        c->scratch_cap = cap;
    }
    return c->scratch;
}

int cuda_scratch_parts(cuda_impl *c, size_t count, const size_t *bytes, void **parts,
                       kiln_err *err)
{
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        if (bytes[i] > SIZE_MAX - CUDA_SCRATCH_ALIGN)
            return kiln_err_set(err, KILN_EINVAL, "scratch of more than SIZE_MAX bytes");
        size_t rounded = (bytes[i] + CUDA_SCRATCH_ALIGN - 1) / CUDA_SCRATCH_ALIGN *
                         CUDA_SCRATCH_ALIGN;
        if (rounded > SIZE_MAX - total)
            return kiln_err_set(err, KILN_EINVAL, "scratch of more than SIZE_MAX bytes");
        total += rounded;
    }
    /* At least one aligned unit, so an op whose parts are all empty still
     * gets a valid (unused) region rather than the NULL of a 0-byte one. */
    char *base = cuda_scratch(c, total ? total : CUDA_SCRATCH_ALIGN, err);
    if (!base)
        return err ? (int)err->code : KILN_ENOMEM;
    for (size_t i = 0; i < count; i++) {
        parts[i] = bytes[i] ? base : NULL;
        base += (bytes[i] + CUDA_SCRATCH_ALIGN - 1) / CUDA_SCRATCH_ALIGN * CUDA_SCRATCH_ALIGN;
    }
    return KILN_OK;
}

int cuda_zero_floats(cuda_impl *c, float *a, size_t na, float *b, size_t nb, kiln_err *err)
{
    int rc = KILN_OK;
    KILN_CUDA(cudaMemsetAsync(a, 0, na * sizeof *a, c->stream));
    if (b)
        KILN_CUDA(cudaMemsetAsync(b, 0, nb * sizeof *b, c->stream));
fail:
    return rc;
}

double *cuda_host_scratch(cuda_impl *c, size_t count, kiln_err *err)
{
    if (count <= c->host_scratch_cap)
        return c->host_scratch;
    size_t cap = cuda_arena_capacity(c->host_scratch_cap * sizeof(double), count * sizeof(double));
    double *p = realloc(c->host_scratch, cap);
    if (!p) {
        kiln_err_set(err, KILN_ENOMEM, "out of host memory growing scratch to %zu bytes", cap);
        return NULL;
    }
    c->host_scratch = p;
    c->host_scratch_cap = cap / sizeof(double);
    return p;
}

static void *cuda_alloc(kiln_nn_backend *be, size_t bytes, kiln_err *err)
{
    if (cuda_graph_forbid(cuda_of(be), "alloc", err) != KILN_OK)
        return NULL;
    return device_alloc(bytes, "a tensor buffer", err);
}

/* Inside a pass a release would leave the graph pointing at freed memory;
 * release cannot fail, so the buffer is kept (leaked) rather than freed. */
static void cuda_release(kiln_nn_backend *be, void *p)
{
    if (p && !cuda_of(be)->pass)
        cudaFree(p);
}

static int cuda_upload(kiln_nn_backend *be, void *dst, const void *host, size_t bytes,
                       kiln_err *err)
{
    int rc = KILN_OK;
    cuda_impl *c = cuda_of(be);
    if (bytes && (!dst || !host))
        return kiln_err_set(err, KILN_EINVAL, "upload: NULL buffer");
    if (!bytes)
        return KILN_OK;
    if (c->pass) {
        /* The graph copies from a pinned slot, refilled at every pass. */
        void *slot;
        const uint64_t w[] = {GW_P(dst), GW_I(bytes)};
        int g = cuda_graph_visit_slot(c, "upload", w, 2, bytes, &slot, NULL, err);
        if (g > 0)
            return g;
        memcpy(slot, host, bytes);
        if (g == CUDA_GRAPH_SKIP)
            return KILN_OK;
        host = slot;
    }
    /* From pageable memory this returns once `host` is staged, so the
     * caller may reuse it. */
    KILN_CUDA(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, c->stream));
fail:
    return rc;
}

static int cuda_download(kiln_nn_backend *be, void *host, const void *src, size_t bytes,
                         kiln_err *err)
{
    int rc = KILN_OK;
    cuda_impl *c = cuda_of(be);
    if (bytes && (!host || !src))
        return kiln_err_set(err, KILN_EINVAL, "download: NULL buffer");
    if (!bytes)
        return KILN_OK;
    if (c->pass) {
        /* Into a pinned slot; `host` gets it after the launch. */
        void *slot;
        const uint64_t w[] = {GW_P(src), GW_I(bytes)};
        int g = cuda_graph_visit_slot(c, "download", w, 2, bytes, &slot, NULL, err);
        if (g > 0)
            return g;
        if ((rc = cuda_graph_output(c, KILN_GRAPH_OUT_COPY, host, slot, bytes, 1.0, err)))
            return rc;
        if (g == CUDA_GRAPH_SKIP)
            return KILN_OK;
        KILN_CUDA(cudaMemcpyAsync(slot, src, bytes, cudaMemcpyDeviceToHost, c->stream));
        return KILN_OK;
    }
    KILN_CUDA(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    KILN_CUDA(cudaStreamSynchronize(c->stream));
fail:
    return rc;
}

static int cuda_copy(kiln_nn_backend *be, float *dst, const float *src, size_t count,
                     kiln_err *err)
{
    int rc = KILN_OK;
    cuda_impl *c = cuda_of(be);
    if (count && (!dst || !src))
        return kiln_err_set(err, KILN_EINVAL, "copy: NULL buffer");
    if (!count || dst == src)
        return KILN_OK;
    CUDA_GRAPH_OP(c, err, "copy", GW_P(dst), GW_P(src), GW_I(count));
    size_t bytes = count * sizeof *dst;
    if (dst < src + count && src < dst + count) {
        /* memmove semantics (as the CPU's) through the scratch buffer:
         * cudaMemcpy does not allow overlap. */
        void *tmp = cuda_scratch(c, bytes, err);
        if (!tmp)
            return err ? (int)err->code : KILN_ENOMEM;
        KILN_CUDA(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
        src = tmp;
    }
    KILN_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
fail:
    return rc;
}

/* Activations are float32 NCHW in this mode: both conversions are copies. */
static int cuda_act_copy(kiln_nn_backend *be, int n, int c, int hw, const float *src, float *dst,
                         kiln_err *err)
{
    if (n < 0 || c < 0 || hw < 0)
        return kiln_err_set(err, KILN_EINVAL, "act conversion: negative shape [%d, %d, %d]", n,
                            c, hw);
    return cuda_copy(be, dst, src, (size_t)n * (size_t)c * (size_t)hw, err);
}

static int cuda_sync(kiln_nn_backend *be, kiln_err *err)
{
    int rc = cuda_graph_forbid(cuda_of(be), "sync", err);
    if (rc != KILN_OK)
        return rc;
    KILN_CUDA(cudaStreamSynchronize(cuda_of(be)->stream));
fail:
    return rc;
}

/* destroy and release return nothing, so the statuses of the frees are not
 * reported; a sticky CUDA error shows at the next checked call instead. */
static void cuda_destroy(kiln_nn_backend *be)
{
    cuda_impl *c = be ? cuda_of(be) : NULL;
    if (c) {
        if (c->stream)
            cudaStreamSynchronize(c->stream);
        cuda_conv_plans_free(c);
        if (c->bn_x)
            cudnnDestroyTensorDescriptor(c->bn_x);
        if (c->bn_param)
            cudnnDestroyTensorDescriptor(c->bn_param);
        if (c->arena)
            cudaFree(c->arena);
        if (c->scratch)
            cudaFree(c->scratch);
        if (c->blas_workspace)
            cudaFree(c->blas_workspace);
        free(c->host_scratch);
        if (c->blas)
            cublasDestroy(c->blas);
        if (c->dnn)
            cudnnDestroy(c->dnn);
        if (c->stream)
            cudaStreamDestroy(c->stream);
        free(c);
    }
    free(be);
}

/* The entries both modes share: memory, the float32-only ops (fill, copy,
 * scale, the squared norm, masks, the loss, the optimizers) and graphs. */
#define CUDA_SHARED_OPS                                                                        \
    .name = "cuda", .destroy = cuda_destroy, .alloc = cuda_alloc, .release = cuda_release,     \
    .upload = cuda_upload, .download = cuda_download, .fill = cuda_fill, .copy = cuda_copy,    \
    .sync = cuda_sync, .scale = cuda_scale, .sum_squares = cuda_sum_squares,                   \
    .mask = cuda_mask, .xent_forward_backward = cuda_xent_forward_backward,                    \
    .sgd_step = cuda_sgd_step, .adamw_step = cuda_adamw_step, .graph_begin = cuda_graph_begin, \
    .graph_end = cuda_graph_end, .graph_cancel = cuda_graph_cancel,                            \
    .graph_free = cuda_graph_free

static const kiln_nn_ops cuda_ops = {
    CUDA_SHARED_OPS,
    .act_from_f32 = cuda_act_copy,
    .act_to_f32 = cuda_act_copy,
    .normalize_u8 = cuda_normalize_u8,
    .conv_forward = cuda_conv_forward,
    .conv_backward_data = cuda_conv_backward_data,
    .conv_backward_filter = cuda_conv_backward_filter,
    .bn_forward_train = cuda_bn_forward_train,
    .bn_forward_eval = cuda_bn_forward_eval,
    .bn_backward = cuda_bn_backward,
    .silu_forward = cuda_silu_forward,
    .silu_backward = cuda_silu_backward,
    .sigmoid_forward = cuda_sigmoid_forward,
    .sigmoid_backward = cuda_sigmoid_backward,
    .add = cuda_add,
    .mul = cuda_mul,
    .scale_samples = cuda_scale_samples,
    .avgpool_forward = cuda_avgpool_forward,
    .avgpool_backward = cuda_avgpool_backward,
    .scale_channels_forward = cuda_scale_channels_forward,
    .scale_channels_backward = cuda_scale_channels_backward,
    .linear_forward = cuda_linear_forward,
    .linear_backward = cuda_linear_backward,
};

/* Mixed precision: every op that touches an activation is bf16 NHWC. */
static const kiln_nn_ops cuda_bf16_ops = {
    CUDA_SHARED_OPS,
    .act_from_f32 = cuda_bf16_act_from_f32,
    .act_to_f32 = cuda_bf16_act_to_f32,
    .normalize_u8 = cuda_normalize_u8,
    .conv_forward = cuda_bf16_conv_forward,
    .conv_backward_data = cuda_bf16_conv_backward_data,
    .conv_backward_filter = cuda_bf16_conv_backward_filter,
    .bn_forward_train = cuda_bf16_bn_forward_train,
    .bn_forward_eval = cuda_bf16_bn_forward_eval,
    .bn_backward = cuda_bf16_bn_backward,
    .bn_silu_forward_train = cuda_bf16_bn_silu_forward_train,
    .bn_silu_forward_eval = cuda_bf16_bn_silu_forward_eval,
    .silu_bn_backward = cuda_bf16_silu_bn_backward,
    .silu_forward = cuda_bf16_silu_forward,
    .silu_backward = cuda_bf16_silu_backward,
    .sigmoid_forward = cuda_bf16_sigmoid_forward,
    .sigmoid_backward = cuda_bf16_sigmoid_backward,
    .add = cuda_bf16_add,
    .mul = cuda_bf16_mul,
    .scale_samples = cuda_bf16_scale_samples,
    .avgpool_forward = cuda_bf16_avgpool_forward,
    .avgpool_backward = cuda_bf16_avgpool_backward,
    .scale_channels_forward = cuda_bf16_scale_channels_forward,
    .scale_channels_backward = cuda_bf16_scale_channels_backward,
    .linear_forward = cuda_bf16_linear_forward,
    .linear_backward = cuda_bf16_linear_backward,
};

/* bf16 storage and bf16 tensor-core math need compute capability 8.0
 * (Ampere) or later; refused up front rather than at the first conv. */
static int check_bf16_device(cuda_impl *c, kiln_err *err)
{
    int rc = KILN_OK, major = 0;
    KILN_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, c->opts.device));
    if (major < 8)
        return kiln_err_set(err, KILN_EDEVICE,
                            "bf16 mixed precision needs a GPU of compute capability 8.0 or later "
                            "(device %d is %d.x): use fp32",
                            c->opts.device, major);
fail:
    return rc;
}

static int setup(cuda_impl *c, kiln_err *err)
{
    int rc = KILN_OK, count = 0;
    KILN_CUDA(cudaGetDeviceCount(&count));
    if (c->opts.device < 0 || c->opts.device >= count)
        return kiln_err_set(err, KILN_EDEVICE, "CUDA device %d does not exist (%d found)",
                            c->opts.device, count);
    KILN_CUDA(cudaSetDevice(c->opts.device));
    KILN_CUDA(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    KILN_CUDNN(cudnnCreate(&c->dnn));
    KILN_CUDNN(cudnnSetStream(c->dnn, c->stream));
    KILN_CUBLAS(cublasCreate(&c->blas));
    KILN_CUBLAS(cublasSetStream(c->blas, c->stream));
    /* A workspace of its own would be allocated lazily, possibly while a
     * step graph records; cuBLAS asks for a fixed one then. */
    if (!(c->blas_workspace = device_alloc(CUDA_BLAS_WORKSPACE, "cuBLAS's workspace", err)))
        return KILN_ENOMEM;
    KILN_CUBLAS(cublasSetWorkspace(c->blas, c->blas_workspace, CUDA_BLAS_WORKSPACE));
    /* fp32 products stay fp32 unless TF32 is allowed. */
    KILN_CUBLAS(cublasSetMathMode(c->blas, c->opts.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                        : CUBLAS_DEFAULT_MATH));
    KILN_CUDNN(cudnnCreateTensorDescriptor(&c->bn_x));
    KILN_CUDNN(cudnnCreateTensorDescriptor(&c->bn_param));
    if (c->opts.bf16)
        return check_bf16_device(c, err);
fail:
    return rc;
}

kiln_nn_backend *kiln_cuda_module_backend_create(const kiln_nn_cuda_opts *opts, kiln_err *err)
{
    kiln_nn_backend *be = calloc(1, sizeof *be);
    cuda_impl *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        kiln_err_set(err, KILN_ENOMEM, "out of memory creating the cuda backend");
        return NULL;
    }
    c->ops = opts->bf16 ? cuda_bf16_ops : cuda_ops;
    if (!opts->fuse) {
        c->ops.bn_silu_forward_train = NULL;
        c->ops.bn_silu_forward_eval = NULL;
        c->ops.silu_bn_backward = NULL;
    }
    be->ops = &c->ops;
    be->act = opts->bf16 ? KILN_ACT_BF16_NHWC : KILN_ACT_F32_NCHW;
    be->impl = c;
    c->opts = *opts;
    if (c->opts.workspace_limit == 0)
        c->opts.workspace_limit = (size_t)1 << 30;
    if (setup(c, err) != KILN_OK) {
        kiln_err_wrap(err, "cuda backend");
        cuda_destroy(be);
        return NULL;
    }
    return be;
}
