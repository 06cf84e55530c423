/* lib/nn/backend.h — the backend interface: the kernels every layer needs.
 *
 * The model graph (nn/efficientnet), the optimizer (nn/optim) and the
 * training loop call only these entry points, so they never know whether
 * the CPU (nn/cpu, the oracle) or CUDA (nn/cuda) runs them.
 *
 * Conventions, for every op:
 *  - Tensors are contiguous, in the backend's own memory (from `alloc`).
 *    Shapes are passed explicitly; `hw` means h*w.
 *  - Two kinds of tensor. Parameter-like ones are float32 always: weights,
 *    biases, BN gamma/beta/running stats/saves, every parameter gradient,
 *    optimizer state, masks, labels, and the loss's logits/probs/dlogits.
 *    Activations — the tensors that flow between layers and their
 *    gradients, marked "act" below — are kept in the backend's activation
 *    format `be->act` (kiln_act_format): float32 NCHW for the CPU and CUDA
 *    fp32, bfloat16 for mixed precision, NHWC where tensor cores want it.
 *    Their element size is kiln_act_bytes(be->act); only act_from_f32 and
 *    act_to_f32 cross between the two kinds, so code above the backend
 *    never reads an activation's bytes. Ops that take act arguments
 *    compute in float32 and round once when they store.
 *  - With bf16 activations, conv and linear use their float32 weights
 *    rounded to bf16 (mixed precision with float32 master weights, as
 *    torch.autocast does); conv's dweight comes from bf16 products summed
 *    in float32 and stored through bf16, as cuDNN's bf16 filter gradient.
 *  - Outputs are overwritten, never accumulated into, unless the op's
 *    comment says so. Callers sum gradients of a tensor used twice with
 *    `add`. Outputs never alias inputs unless the comment allows it.
 *  - Ops return KILN_OK or a kiln_code and fill `err` (file, line and the
 *    library's message for library failures). No op prints or exits.
 *  - Randomness comes from kiln_nn_mask: a counter-based stream of
 *    (seed, offset, index), so every backend draws the same masks.
 *  - The backend owns its memory and threads; kiln_nn_backend_destroy
 *    frees them. Buffers from `alloc` are released with `release`.
 */
#ifndef KILN_NN_BACKEND_H
#define KILN_NN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/log.h"
#include "nn/mask.h" /* kiln_nn_mask_uniform: the draw behind `mask` */

typedef struct kiln_nn_backend kiln_nn_backend;

/* How a backend stores activations (see the conventions above). */
typedef enum kiln_act_format {
    KILN_ACT_F32_NCHW = 0, /* float32 NCHW: the CPU, CUDA fp32 */
    KILN_ACT_BF16_NCHW,    /* bfloat16 NCHW: "cpu-bf16", the CPU oracle of mixed precision */
    KILN_ACT_BF16_NHWC,    /* bfloat16 NHWC (channels last): CUDA bf16, for tensor cores */
} kiln_act_format;

static inline size_t kiln_act_bytes(kiln_act_format f)
{
    return f == KILN_ACT_F32_NCHW ? 4 : 2;
}

/* "fp32", "bf16" (the precision, for logs and run parameters). */
static inline const char *kiln_act_precision(kiln_act_format f)
{
    return f == KILN_ACT_F32_NCHW ? "fp32" : "bf16";
}
/* A step graph (see graph_begin), owned by the backend that made it. */
typedef struct kiln_nn_graph kiln_nn_graph;

/* A 2-D convolution without bias, symmetric zero padding, as Conv2d. */
typedef struct kiln_conv_desc {
    int in_c, out_c;    /* weight is [out_c, in_c / groups, k, k] */
    int k;              /* square kernel */
    int stride;
    int pad;
    int groups;         /* 1: dense; in_c == out_c == groups: depthwise */
} kiln_conv_desc;

/* Output height (or width) of a conv over `in` pixels. */
static inline int kiln_conv_out(const kiln_conv_desc *d, int in)
{
    return (in + 2 * d->pad - d->k) / d->stride + 1;
}

typedef struct kiln_nn_ops {
    const char *name; /* "cpu", "cuda" */
    /* Frees the backend's threads, handles and `be` itself. */
    void (*destroy)(kiln_nn_backend *be);

    /* --- memory ------------------------------------------------------ */
    void *(*alloc)(kiln_nn_backend *be, size_t bytes, kiln_err *err);
    void (*release)(kiln_nn_backend *be, void *p);
    int (*upload)(kiln_nn_backend *be, void *dst, const void *host, size_t bytes, kiln_err *err);
    int (*download)(kiln_nn_backend *be, void *host, const void *src, size_t bytes, kiln_err *err);
    int (*fill)(kiln_nn_backend *be, float *dst, float value, size_t count, kiln_err *err);
    int (*copy)(kiln_nn_backend *be, float *dst, const float *src, size_t count, kiln_err *err);
    /* Blocks until queued work is done (no-op on CPU). */
    int (*sync)(kiln_nn_backend *be, kiln_err *err);

    /* --- convolution: x [n, in_c, h, w] -> y [n, out_c, oh, ow] (x, y act) - */
    int (*conv_forward)(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                        const float *x, const float *weight, float *y, kiln_err *err);
    /* dx [n, in_c, h, w] from dy [n, out_c, oh, ow] (act). */
    int (*conv_backward_data)(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                              const float *dy, const float *weight, float *dx, kiln_err *err);
    /* dweight [out_c, in_c/groups, k, k] (float32) from x and dy (act). */
    int (*conv_backward_filter)(kiln_nn_backend *be, const kiln_conv_desc *d, int n, int h, int w,
                                const float *x, const float *dy, float *dweight, kiln_err *err);

    /* --- batch norm over [n, c, hw] (per channel c); x, y, dy, dx act ---
     * Training: normalise with the batch's mean and biased variance, then
     * update running_mean/var in place with `momentum` as PyTorch does
     * (running = (1-m)*running + m*batch, the variance unbiased: n*hw/(n*hw-1)).
     * save_mean / save_invstd [c] (1/sqrt(var+eps)) are kept for backward. */
    int (*bn_forward_train)(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                            const float *gamma, const float *beta, float *running_mean,
                            float *running_var, float momentum, float eps, float *y,
                            float *save_mean, float *save_invstd, kiln_err *err);
    int (*bn_forward_eval)(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                           const float *gamma, const float *beta, const float *running_mean,
                           const float *running_var, float eps, float *y, kiln_err *err);
    int (*bn_backward)(kiln_nn_backend *be, int n, int c, int hw, const float *x, const float *dy,
                       const float *gamma, const float *save_mean, const float *save_invstd,
                       float *dx, float *dgamma, float *dbeta, kiln_err *err);

    /* --- fused batch norm + SiLU: optional (NULL: the model calls the two
     * ops). Each is exactly its unfused pair, bit for bit — the SiLU of the
     * stored (rounded) BN output, its backward fed the stored (rounded)
     * SiLU gradient — in one pass over the tensor instead of two.
     * Forward: bn = BN(x) as bn_forward_train / _eval (kept for backward;
     * NULL in eval when not wanted), y = silu(bn); y may alias bn only in
     * eval. Backward: dx, dgamma, dbeta of BN from silu_backward(bn, dy). */
    int (*bn_silu_forward_train)(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                 const float *gamma, const float *beta, float *running_mean,
                                 float *running_var, float momentum, float eps, float *bn,
                                 float *y, float *save_mean, float *save_invstd, kiln_err *err);
    int (*bn_silu_forward_eval)(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                const float *gamma, const float *beta, const float *running_mean,
                                const float *running_var, float eps, float *y, kiln_err *err);
    int (*silu_bn_backward)(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                            const float *bn, const float *dy, const float *gamma,
                            const float *save_mean, const float *save_invstd, float *dx,
                            float *dgamma, float *dbeta, kiln_err *err);

    /* --- elementwise on act tensors (y may alias x in the forward ops) -- */
    int (*silu_forward)(kiln_nn_backend *be, size_t count, const float *x, float *y, kiln_err *err);
    /* dx = dy * silu'(x) (needs the input x). */
    int (*silu_backward)(kiln_nn_backend *be, size_t count, const float *x, const float *dy,
                         float *dx, kiln_err *err);
    int (*sigmoid_forward)(kiln_nn_backend *be, size_t count, const float *x, float *y,
                           kiln_err *err);
    /* dx = dy * y * (1 - y) (needs the output y). */
    int (*sigmoid_backward)(kiln_nn_backend *be, size_t count, const float *y, const float *dy,
                            float *dx, kiln_err *err);
    /* y = a + b; y may alias a or b. */
    int (*add)(kiln_nn_backend *be, size_t count, const float *a, const float *b, float *y,
               kiln_err *err);
    /* y = x * mask elementwise (dropout forward and backward); mask float32. */
    int (*mul)(kiln_nn_backend *be, size_t count, const float *x, const float *mask, float *y,
               kiln_err *err);
    /* x *= alpha in place (float32: gradient clipping). */
    int (*scale)(kiln_nn_backend *be, size_t count, float alpha, float *x, kiln_err *err);
    /* Writes sum(x[i]^2) in double to *host_out (gradient clipping). */
    int (*sum_squares)(kiln_nn_backend *be, size_t count, const float *x, double *host_out,
                       kiln_err *err);

    /* --- masks: mask[i] = (u(seed, offset + i) >= p) ? 1/(1-p) : 0 with u
     * uniform in [0,1) from kiln_nn_mask_uniform; p in [0, 1). Dropout draws
     * one per element, stochastic depth one per sample. */
    int (*mask)(kiln_nn_backend *be, size_t count, float p, uint64_t seed, uint64_t offset,
                float *mask, kiln_err *err);
    /* y[s, ...] = x[s, ...] * scale[s] for n samples of `per_sample`
     * elements (stochastic depth; its backward is the same op on dy); x, y
     * act, scale float32. */
    int (*scale_samples)(kiln_nn_backend *be, int n, size_t per_sample, const float *x,
                         const float *scale, float *y, kiln_err *err);

    /* --- pooling and squeeze-and-excitation; every tensor act ---------- */
    /* y [n, c] = mean over hw of x [n, c, hw]. */
    int (*avgpool_forward)(kiln_nn_backend *be, int n, int c, int hw, const float *x, float *y,
                           kiln_err *err);
    int (*avgpool_backward)(kiln_nn_backend *be, int n, int c, int hw, const float *dy, float *dx,
                            kiln_err *err);
    /* y [n, c, hw] = x * s [n, c] broadcast over hw. */
    int (*scale_channels_forward)(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                  const float *s, float *y, kiln_err *err);
    /* dx = dy * s; ds [n, c] = sum over hw of dy * x. */
    int (*scale_channels_backward)(kiln_nn_backend *be, int n, int c, int hw, const float *x,
                                   const float *s, const float *dy, float *dx, float *ds,
                                   kiln_err *err);

    /* --- linear: y [n, out] = x [n, in] · weight [out, in]^T + bias [out]
     * (bias may be NULL). Also the SE block's 1×1 convs on pooled input.
     * x, y, dy, dx act; weight, bias and their gradients float32. */
    int (*linear_forward)(kiln_nn_backend *be, int n, int in, int out, const float *x,
                          const float *weight, const float *bias, float *y, kiln_err *err);
    /* dx may be NULL (first layer); dbias NULL when bias is NULL. */
    int (*linear_backward)(kiln_nn_backend *be, int n, int in, int out, const float *x,
                           const float *weight, const float *dy, float *dx, float *dweight,
                           float *dbias, kiln_err *err);

    /* --- loss (float32): softmax cross-entropy with label smoothing `ls`, mean over
     * the batch, as torch.nn.CrossEntropyLoss(label_smoothing=ls).
     * labels [n] int32 in backend memory. Writes the loss to *host_loss,
     * the softmax probabilities to probs [n, classes], and
     * dlogits = d(loss)/d(logits) (already divided by n). */
    int (*xent_forward_backward)(kiln_nn_backend *be, int n, int classes, const float *logits,
                                 const int32_t *labels, float ls, float *probs, float *dlogits,
                                 double *host_loss, kiln_err *err);

    /* --- optimizer updates over one flat parameter buffer --------------
     * Exactly torch.optim.SGD (dampening 0) / torch.optim.AdamW for one
     * step; momentum_buf / m / v start at zero; `step` counts from 1. */
    int (*sgd_step)(kiln_nn_backend *be, size_t count, float *param, const float *grad,
                    float *momentum_buf, float lr, float momentum, int nesterov,
                    float weight_decay, kiln_err *err);
    int (*adamw_step)(kiln_nn_backend *be, size_t count, float *param, const float *grad,
                      float *m, float *v, float lr, float beta1, float beta2, float eps,
                      float weight_decay, int64_t step, kiln_err *err);

    /* --- activation format ---------------------------------------------
     * dst (act) [n, c, hw] from src, float32 NCHW in backend memory; and
     * back. In float32 NCHW both are copies; otherwise they round
     * (from_f32) and transpose. */
    int (*act_from_f32)(kiln_nn_backend *be, int n, int c, int hw, const float *src, float *dst,
                        kiln_err *err);
    int (*act_to_f32)(kiln_nn_backend *be, int n, int c, int hw, const float *src, float *dst,
                      kiln_err *err);
    /* dst float32 [n, c, hw] = lut[ch * 256 + src] for the bytes src
     * [n, c, hw] of channel ch: the loader's normalisation
     * (kiln_loader_lut), done where the batch is, after copying a quarter
     * of the floats' bytes. src (uint8) and lut (c * 256 floats) in
     * backend memory. */
    int (*normalize_u8)(kiln_nn_backend *be, int n, int c, int hw, const uint8_t *src,
                        const float *lut, float *dst, kiln_err *err);

    /* --- step graphs: optional, NULL where the backend has none (the CPU) --
     * A pass is a fixed sequence of calls — one training step, one inference
     * forward — between graph_begin and graph_end. With *g NULL, graph_begin
     * makes a graph and the pass records it; later passes over the same *g
     * replay it: each call is checked against the recording (the same op,
     * buffers, shapes and constants; KILN_EINVAL names the first difference)
     * and only its changing values are taken (a learning rate, a mask seed,
     * uploaded bytes). Nothing runs before graph_end, which launches the
     * whole graph at once, waits for it, and only then writes the pass's host
     * outputs (download, xent's loss, sum_squares). So inside a pass: no
     * alloc, release or sync, no host output is read before graph_end, and
     * each output's destination must stay valid until then (not a local of
     * a function that returns before graph_end).
     * The backend records again by itself when its own memory moved (a
     * workspace grew). After a failed call, graph_cancel ends the pass
     * without running anything; graph_free frees a graph (NULL is fine). */
    int (*graph_begin)(kiln_nn_backend *be, kiln_nn_graph **g, kiln_err *err);
    int (*graph_end)(kiln_nn_backend *be, kiln_nn_graph *g, kiln_err *err);
    void (*graph_cancel)(kiln_nn_backend *be, kiln_nn_graph *g);
    void (*graph_free)(kiln_nn_backend *be, kiln_nn_graph *g);
} kiln_nn_ops;

struct kiln_nn_backend {
    const kiln_nn_ops *ops;
    void *impl;          /* the backend's own state */
    kiln_act_format act; /* fixed at creation */
};

/* The CPU backend (OpenBLAS + a thread pool of `threads` >= 1). */
kiln_nn_backend *kiln_nn_cpu_create(int threads, kiln_err *err);
/* Frees any backend. NULL is fine. */
void kiln_nn_backend_destroy(kiln_nn_backend *be);

/* The CUDA backend (nn/cuda, cuDNN + cuBLAS, in the module libkiln_cuda.so
 * that lib/gpu loads on demand): activations fp32 NCHW, or bf16 NHWC. */
typedef struct kiln_nn_cuda_opts {
    int device;        /* CUDA device ordinal, default 0 */
    int tf32;          /* 1: TF32 tensor cores for conv and matmul (faster, ~1e-3) */
    int deterministic; /* 1 (default): only deterministic cuDNN algorithms */
    int find;          /* 1 (default): time algorithms (cudnnFind) once per shape;
                        * 0: cuDNN's heuristics (_v7), no trial runs */
    size_t workspace_limit; /* bytes an algorithm may use; 0: 1 GiB */
    int bf16;          /* 1: mixed precision, activations bf16 NHWC (KILN_ACT_BF16_NHWC) */
    int fuse;          /* 1 (default): fused BN + SiLU ops where the mode has them (bf16) */
} kiln_nn_cuda_opts;

/* Defaults above; KILN_CUDA_TF32=1 in the environment turns TF32 on,
 * KILN_CUDA_FIND=0 the algorithm timing off, KILN_CUDA_BF16=1 mixed
 * precision on, KILN_CUDA_FUSE=0 the fused ops off. */
void kiln_nn_cuda_opts_default(kiln_nn_cuda_opts *o);
/* NULL with KILN_EDEVICE when no GPU is usable or kiln was built without
 * CUDA (-DKILN_CUDA=OFF); the message says why. */
kiln_nn_backend *kiln_nn_cuda_create(const kiln_nn_cuda_opts *opts, kiln_err *err);

/* A backend by name: "cpu" (`threads` workers), "cuda" (an error saying why
 * when no GPU is usable) or "auto"/NULL (CUDA when usable, else the CPU,
 * with an info line on `log` saying why); "cpu-graph-check" is the CPU with
 * step graphs checked (nn/graph_check.h), "cpu-bf16" the CPU on bf16
 * activations (kiln_nn_cpu_bf16_create), "cpu-bf16-graph-check" both, all
 * for tests. KILN_EINVAL for other
 * names. */
kiln_nn_backend *kiln_nn_backend_open(const char *device, int threads, const kiln_logger *log,
                                      kiln_err *err);
/* The same with a precision: "fp32", "bf16" (the GPU's mixed precision) or
 * NULL (KILN_CUDA_BF16's choice). With "auto" and no usable GPU the CPU
 * runs fp32 and the info line says so; "cpu" with "bf16" is KILN_EINVAL. */
kiln_nn_backend *kiln_nn_backend_open_precision(const char *device, const char *precision,
                                                int threads, const kiln_logger *log,
                                                kiln_err *err);
/* The CPU on bf16 activations (KILN_ACT_BF16_NCHW): every op decodes its
 * act inputs, runs the CPU's float32 kernel and rounds its act outputs to
 * bf16, and conv/linear use bf16-rounded weights, as the GPU's mixed
 * precision does. Slower than "cpu"; the oracle of the bf16 GPU tests and
 * the proof on any machine that the model runs on 2-byte activations. */
kiln_nn_backend *kiln_nn_cpu_bf16_create(int threads, kiln_err *err);

#endif
