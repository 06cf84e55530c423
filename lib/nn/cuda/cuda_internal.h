/* lib/nn/cuda/cuda_internal.h — shared by the CUDA backend's host files
 * (built into libkiln_cuda.so only); not a public header.
 *
 * Streams. Every op is enqueued on the backend's one stream (cuDNN and
 * cuBLAS are bound to it); upload copies from pageable memory return once
 * the host buffer is staged, download and the ops that return a host value
 * (sum_squares, xent) synchronise the stream.
 *
 * Memory. Buffers come from `alloc` (cudaMalloc), which the model's plan
 * calls once per batch shape. Workspace for cuDNN is one arena that only
 * grows (cuda_arena_capacity), sized while the first step meets each conv
 * shape; small device and host scratch (reduction partials, row losses)
 * grow the same way. A training step therefore allocates nothing.
 *
 * Convolutions. Each shape gets a plan on first use: its cuDNN descriptors
 * and, per direction, the algorithm cudnnFind timed fastest (or the _v7
 * heuristics' first pick) among those that fit the workspace limit, are
 * deterministic when asked and use TF32 only when allowed. Kept in a
 * cuda_cache until the backend is destroyed.
 *
 * Two modes, fixed at creation (opts.bf16), each with its ops table:
 *  - fp32 (be->act KILN_ACT_F32_NCHW): every tensor float32 NCHW;
 *  - bf16 mixed precision (KILN_ACT_BF16_NHWC): activations bf16 NHWC
 *    (cuda_bf16.c, cuda_bf16_conv.c over cuda_kernels_bf16.h); weights,
 *    parameter gradients, optimizer state, BN statistics, masks and the
 *    loss stay float32, so the memory, mask, loss, norm and optimizer ops
 *    are the fp32 table's own. Conv and linear cast their float32 master
 *    weights to bf16 per call into scratch (conv: KCRS -> KRSC), compute in
 *    float32 and round once when they store an activation; conv's
 *    dweight comes back from cuDNN as bf16 KRSC and is widened into the
 *    float32 gradient. The conv plans are shared by both (the descriptors
 *    carry the mode's data type and layout).
 *
 * Scratch. cuda_scratch may move when it grows, so an op asks for it once
 * and carves that one region into its parts (cuda_scratch_parts); it never
 * holds two results of it at once. It grows only outside step graphs.
 */
#ifndef KILN_NN_CUDA_INTERNAL_H
#define KILN_NN_CUDA_INTERNAL_H

#include "gpu/gpu_check.h"
#include "nn/backend.h"
#include "nn/cuda/cuda_kernels.h"
#include "nn/cuda/cuda_plan.h"
#include "nn/graph_trace.h"

typedef struct cuda_impl {
    kiln_nn_cuda_opts opts;
    kiln_nn_ops ops;        /* the mode's table; fused ops only with opts.fuse */
    cudaStream_t stream;
    cudnnHandle_t dnn;
    cublasHandle_t blas;
    cudnnTensorDescriptor_t bn_x, bn_param; /* set per call (host-side only) */
    void *arena;
    size_t arena_cap;
    void *scratch; /* device: partial sums, row losses */
    size_t scratch_cap;
    double *host_scratch;
    size_t host_scratch_cap;
    cuda_cache convs;
    void *blas_workspace;   /* cuBLAS's own, fixed so it never allocates under a capture */
    kiln_nn_graph *pass;    /* the step graph pass under way, or NULL (cuda_graph.c) */
    uint64_t mem_generation; /* bumped whenever the arena or scratch moves */
} cuda_impl;

static inline cuda_impl *cuda_of(kiln_nn_backend *be)
{
    return (cuda_impl *)be->impl;
}

/* Out of device memory: KILN_ENOMEM with what was asked, what is free and
 * the advice to lower the batch size. Clears CUDA's error state. */
int cuda_oom(kiln_err *err, const char *what, size_t bytes);
/* Grows the workspace arena to hold `bytes` (a no-op when it does). */
int cuda_arena_reserve(cuda_impl *c, size_t bytes, kiln_err *err);
/* Device scratch of at least `bytes`; NULL on failure. */
void *cuda_scratch(cuda_impl *c, size_t bytes, kiln_err *err);
/* One cuda_scratch region carved into `count` parts of bytes[i] each, every
 * part CUDA_SCRATCH_ALIGN-aligned (cuBLAS and the vectorised kernels like
 * 16 bytes; 256 is cudaMalloc's own); a 0-byte part gets NULL. */
#define CUDA_SCRATCH_ALIGN ((size_t)256)
int cuda_scratch_parts(cuda_impl *c, size_t count, const size_t *bytes, void **parts,
                       kiln_err *err);
/* Zeroes a [na] and, when b is not NULL, b [nb] (float32 gradients of an
 * op with nothing to reduce), on the stream. */
int cuda_zero_floats(cuda_impl *c, float *a, size_t na, float *b, size_t nb, kiln_err *err);
/* Host scratch of at least `count` doubles; NULL on failure. */
double *cuda_host_scratch(cuda_impl *c, size_t count, kiln_err *err);

/* --- step graphs (cuda_graph.c) ------------------------------------------
 * Every op that enqueues work first visits the pass: outside one, and while
 * recording, the op runs (a recording is a stream capture); in a replay it
 * is only checked and returns (CUDA_GRAPH_SKIP), the graph already holds
 * its work. `words` fix the op's work: its buffers, sizes and constants. */
#define CUDA_GRAPH_SKIP (-1)
/* cuBLAS's fixed workspace (its advice for Hopper: 32 MiB). */
#define CUDA_BLAS_WORKSPACE ((size_t)32 << 20)
int cuda_graph_visit(cuda_impl *c, const char *op, const uint64_t *words, size_t n_words,
                     kiln_err *err);
/* The same with a slot of `slot_bytes` (pinned host; a device twin in
 * *dev_slot when dev_slot is not NULL) that stays at its address for every
 * replay; outside a pass *slot = *dev_slot = NULL. */
int cuda_graph_visit_slot(cuda_impl *c, const char *op, const uint64_t *words, size_t n_words,
                          size_t slot_bytes, void **slot, void **dev_slot, kiln_err *err);
/* A host output of the pass under way, written after its launch. */
int cuda_graph_output(cuda_impl *c, kiln_graph_out_kind kind, void *dst, const void *slot,
                      size_t count, double divisor, kiln_err *err);
/* KILN_EINVAL naming `what` when a pass is under way (alloc, release, sync,
 * a workspace that would move). */
int cuda_graph_forbid(cuda_impl *c, const char *what, kiln_err *err);
int cuda_graph_begin(kiln_nn_backend *be, kiln_nn_graph **g, kiln_err *err);
int cuda_graph_end(kiln_nn_backend *be, kiln_nn_graph *g, kiln_err *err);
void cuda_graph_cancel(kiln_nn_backend *be, kiln_nn_graph *g);
void cuda_graph_free(kiln_nn_backend *be, kiln_nn_graph *g);

/* Visits the pass with the words given; returns from the op when it is
 * replayed (KILN_OK) or the visit failed. */
#define CUDA_GRAPH_OP(c, err, op, ...)                                                      \
    do {                                                                                    \
        const uint64_t graph_words_[] = {__VA_ARGS__};                                      \
        int graph_rc_ = cuda_graph_visit((c), (op), graph_words_,                           \
                                         sizeof graph_words_ / sizeof graph_words_[0], (err)); \
        if (graph_rc_ == CUDA_GRAPH_SKIP)                                                   \
            return KILN_OK;                                                                 \
        if (graph_rc_ != KILN_OK)                                                           \
            return graph_rc_;                                                               \
    } while (0)
#define GW_P(p) kiln_graph_word_ptr(p)
#define GW_F(f) kiln_graph_word_float(f)
#define GW_I(i) ((uint64_t)(i))

/* Ops, one group per file. */
/* cuda_conv.c: the conv plans, also for bf16 mode. cuda_conv_plan_known:
 * KILN_OK when `dir` of the shape has its algorithm (needed while a step
 * graph records: cudnnFind and the arena's growth cannot be captured).
 * cuda_conv_exec: one direction through the plan cache, on operands in the
 * mode's data type (a, b, out = x, w, y / dy, w, dx / x, dy, dw); n > 0, the
 * arguments checked and the pass visited by the caller. */
enum { CUDA_CONV_FWD, CUDA_CONV_DATA, CUDA_CONV_FILTER };
const char *cuda_conv_dir_name(int dir);
int cuda_conv_plan_known(cuda_impl *c, int dir, const kiln_conv_desc *d, int n, int h, int w,
                         kiln_err *err);
int cuda_conv_exec(cuda_impl *c, int dir, const kiln_conv_desc *d, int n, int h, int w,
                   const void *a, const void *b, void *out, kiln_err *err);
int cuda_conv_forward(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                      const float *x, const float *weight, float *y, kiln_err *err);
int cuda_conv_backward_data(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                            const float *dy, const float *weight, float *dx, kiln_err *err);
int cuda_conv_backward_filter(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                              const float *x, const float *dy, float *dweight, kiln_err *err);
void cuda_conv_plans_free(cuda_impl *c);

int cuda_bn_forward_train(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                          const float *gamma, const float *beta, float *running_mean,
                          float *running_var, float momentum, float eps, float *y,
                          float *save_mean, float *save_invstd, kiln_err *err);
int cuda_bn_forward_eval(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                         const float *gamma, const float *beta, const float *running_mean,
                         const float *running_var, float eps, float *y, kiln_err *err);
int cuda_bn_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x, const float *dy,
                     const float *gamma, const float *save_mean, const float *save_invstd,
                     float *dx, float *dgamma, float *dbeta, kiln_err *err);

int cuda_linear_forward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                        const float *weight, const float *bias, float *y, kiln_err *err);
int cuda_linear_backward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                         const float *weight, const float *dy, float *dx, float *dweight,
                         float *dbias, kiln_err *err);

/* cuda_input.c: the loader's bytes normalised on the device. */
int cuda_normalize_u8(kiln_nn_backend *be, int n, int c, int hw, const uint8_t *src,
                      const float *lut, float *dst, kiln_err *err);

/* cuda_ops.c: the ops on kiln's own kernels. */
int cuda_fill(kiln_nn_backend *be, float *dst, float value, size_t count, kiln_err *err);
int cuda_silu_forward(kiln_nn_backend *be, size_t count, const float *x, float *y, kiln_err *err);
int cuda_silu_backward(kiln_nn_backend *be, size_t count, const float *x, const float *dy,
                       float *dx, kiln_err *err);
int cuda_sigmoid_forward(kiln_nn_backend *be, size_t count, const float *x, float *y,
                         kiln_err *err);
int cuda_sigmoid_backward(kiln_nn_backend *be, size_t count, const float *y, const float *dy,
                          float *dx, kiln_err *err);
int cuda_add(kiln_nn_backend *be, size_t count, const float *a, const float *b, float *y,
             kiln_err *err);
int cuda_mul(kiln_nn_backend *be, size_t count, const float *x, const float *mask, float *y,
             kiln_err *err);
int cuda_scale(kiln_nn_backend *be, size_t count, float alpha, float *x, kiln_err *err);
int cuda_sum_squares(kiln_nn_backend *be, size_t count, const float *x, double *host_out,
                     kiln_err *err);
int cuda_mask(kiln_nn_backend *be, size_t count, float p, uint64_t seed, uint64_t offset,
              float *mask, kiln_err *err);
int cuda_scale_samples(kiln_nn_backend *be, int n, size_t per_sample, const float *x,
                       const float *scale, float *y, kiln_err *err);
int cuda_avgpool_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x, float *y,
                         kiln_err *err);
int cuda_avgpool_backward(kiln_nn_backend *be, int n, int c, int hw, const float *dy, float *dx,
                          kiln_err *err);
int cuda_scale_channels_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                const float *s, float *y, kiln_err *err);
int cuda_scale_channels_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                 const float *s, const float *dy, float *dx, float *ds,
                                 kiln_err *err);
int cuda_xent_forward_backward(kiln_nn_backend *be, int n, int classes, const float *logits,
                               const int32_t *labels, float ls, float *probs, float *dlogits,
                               double *host_loss, kiln_err *err);
int cuda_sgd_step(kiln_nn_backend *be, size_t count, float *param, const float *grad,
                  float *momentum_buf, float lr, float momentum, int nesterov, float weight_decay,
                  kiln_err *err);
int cuda_adamw_step(kiln_nn_backend *be, size_t count, float *param, const float *grad, float *m,
                    float *v, float lr, float beta1, float beta2, float eps, float weight_decay,
                    int64_t step, kiln_err *err);

/* --- bf16 mode (cuda_bf16.c, cuda_bf16_conv.c): the act ops on bf16 NHWC
 * tensors (kiln_bf16 behind the interface's float pointers). ------------ */
int cuda_bf16_conv_forward(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                           const float *x, const float *weight, float *y, kiln_err *err);
int cuda_bf16_conv_backward_data(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h,
                                 int w, const float *dy, const float *weight, float *dx,
                                 kiln_err *err);
int cuda_bf16_conv_backward_filter(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h,
                                   int w, const float *x, const float *dy, float *dweight,
                                   kiln_err *err);
int cuda_bf16_linear_forward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                             const float *weight, const float *bias, float *y, kiln_err *err);
int cuda_bf16_linear_backward(kiln_nn_backend *be, int n, int in, int out, const float *x,
                              const float *weight, const float *dy, float *dx, float *dweight,
                              float *dbias, kiln_err *err);
int cuda_bf16_bn_forward_train(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                               const float *gamma, const float *beta, float *running_mean,
                               float *running_var, float momentum, float eps, float *y,
                               float *save_mean, float *save_invstd, kiln_err *err);
int cuda_bf16_bn_forward_eval(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                              const float *gamma, const float *beta, const float *running_mean,
                              const float *running_var, float eps, float *y, kiln_err *err);
int cuda_bf16_bn_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                          const float *dy, const float *gamma, const float *save_mean,
                          const float *save_invstd, float *dx, float *dgamma, float *dbeta,
                          kiln_err *err);
/* cuda_bf16_bn.c: batch norm, and batch norm + SiLU in one pass (opts.fuse). */
int cuda_bf16_bn_silu_forward_train(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                    const float *gamma, const float *beta, float *running_mean,
                                    float *running_var, float momentum, float eps, float *bn,
                                    float *y, float *save_mean, float *save_invstd,
                                    kiln_err *err);
int cuda_bf16_bn_silu_forward_eval(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                   const float *gamma, const float *beta,
                                   const float *running_mean, const float *running_var, float eps,
                                   float *y, kiln_err *err);
int cuda_bf16_silu_bn_backward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                               const float *bn, const float *dy, const float *gamma,
                               const float *save_mean, const float *save_invstd, float *dx,
                               float *dgamma, float *dbeta, kiln_err *err);
int cuda_bf16_silu_forward(kiln_nn_backend *be, size_t count, const float *x, float *y,
                           kiln_err *err);
int cuda_bf16_silu_backward(kiln_nn_backend *be, size_t count, const float *x, const float *dy,
                            float *dx, kiln_err *err);
int cuda_bf16_sigmoid_forward(kiln_nn_backend *be, size_t count, const float *x, float *y,
                              kiln_err *err);
int cuda_bf16_sigmoid_backward(kiln_nn_backend *be, size_t count, const float *y,
                               const float *dy, float *dx, kiln_err *err);
int cuda_bf16_add(kiln_nn_backend *be, size_t count, const float *a, const float *b, float *y,
                  kiln_err *err);
int cuda_bf16_mul(kiln_nn_backend *be, size_t count, const float *x, const float *mask, float *y,
                  kiln_err *err);
int cuda_bf16_scale_samples(kiln_nn_backend *be, int n, size_t per_sample, const float *x,
                            const float *scale, float *y, kiln_err *err);
int cuda_bf16_avgpool_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x, float *y,
                              kiln_err *err);
int cuda_bf16_avgpool_backward(kiln_nn_backend *be, int n, int c, int hw, const float *dy,
                               float *dx, kiln_err *err);
int cuda_bf16_scale_channels_forward(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                     const float *s, float *y, kiln_err *err);
int cuda_bf16_scale_channels_backward(kiln_nn_backend *be, int n, int c, int hw,
                                      const float *x, const float *s, const float *dy, float *dx,
                                      float *ds, kiln_err *err);
int cuda_bf16_act_from_f32(kiln_nn_backend *be, int n, int c, int hw, const float *src,
                           float *dst, kiln_err *err);
int cuda_bf16_act_to_f32(kiln_nn_backend *be, int n, int c, int hw, const float *src, float *dst,
                         kiln_err *err);

#endif
