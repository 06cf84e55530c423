/* lib/nn/efficientnet.h — EfficientNet B0–B3, exactly as torchvision 0.14
 * builds them, on any kiln_nn backend.
 *
 * Graph (torchvision.models.efficientnet_b0..b3): a 3×3 stride-2 stem
 * (conv, BatchNorm, SiLU), seven stages of MBConv blocks (1×1 expand conv
 * unless the expand ratio is 1, depthwise k×k conv, squeeze-and-excitation
 * with max(1, block_input_channels / 4) squeeze channels, 1×1 projection;
 * a residual with stochastic depth when stride is 1 and in == out), a 1×1
 * head conv to 4 × the last width, global average pooling, dropout and a
 * linear classifier. Widths go through torchvision's _make_divisible(·, 8),
 * depths are ceil(layers × depth multiplier); BatchNorm eps 1e-5, momentum
 * 0.1; stochastic-depth probability 0.2 × block_index / block_count;
 * classifier dropout 0.2 (b0, b1) or 0.3 (b2, b3).
 *
 * Names and shapes are torchvision's state_dict keys ("features.0.0.weight",
 * "features.1.0.block.0.0.weight", ..., "classifier.1.bias"), so a file saved
 * here loads in PyTorch with model.load_state_dict and the other way round.
 *
 * Memory. All parameters live in one flat backend buffer and their
 * gradients in a second one of the same layout: first every tensor that
 * takes weight decay (conv and linear weights), then those that do not
 * (BatchNorm weights and biases, every bias), each tensor starting at a
 * multiple of 16 floats; the gaps are zero in both buffers and stay zero.
 * An optimizer may update the whole flat buffer at once, the two regions
 * separately (kiln_effnet_decay_floats), or tensor by tensor. Running
 * statistics live in a third backend buffer; num_batches_tracked counters
 * on the host. kiln_effnet_plan allocates every activation and gradient
 * scratch buffer once for a batch shape; forward and backward allocate
 * nothing.
 *
 * Threads: a model is not thread-safe; it uses its backend from the
 * calling thread only. The model borrows the backend, which must outlive it.
 *
 * Errors: KILN_EINVAL for bad arguments (unknown variant, call order,
 * probabilities outside [0, 1)), KILN_EFORMAT for a weights file that does
 * not fit the model (missing or unexpected key, wrong shape or dtype — the
 * message names the key), KILN_ENOMEM, and whatever the backend or the
 * safetensors reader return, wrapped with context.
 */
#ifndef KILN_NN_EFFICIENTNET_H
#define KILN_NN_EFFICIENTNET_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "nn/backend.h"

typedef struct kiln_effnet kiln_effnet;

/* One named tensor of the state_dict: a parameter or a buffer. */
typedef struct kiln_effnet_tensor {
    const char *name;     /* torchvision state_dict key, owned by the model */
    int ndim;             /* 0 (num_batches_tracked) to 4 */
    int64_t shape[4];
    size_t count;         /* elements (1 for a 0-d counter) */
    size_t offset;        /* floats from the start of its flat buffer */
    float *data;          /* backend memory; NULL for a counter */
    float *grad;          /* parameters: backend memory in the grad buffer; else NULL */
    int64_t *counter;     /* num_batches_tracked: host memory; else NULL */
    int no_weight_decay;  /* parameters: 1 for BatchNorm weight/bias and biases */
} kiln_effnet_tensor;

/* How kiln_effnet_load treats the classifier head. */
typedef enum kiln_effnet_load_mode {
    /* Every key and shape must match the model. */
    KILN_EFFNET_LOAD_STRICT = 0,
    /* Fine-tuning from pretrained weights: everything must match except
     * classifier.1.weight / .bias, which, when the file has a different
     * class count, are left out and re-initialised for the model's classes
     * (torchvision's Linear init, from `head_seed`). */
    KILN_EFFNET_LOAD_NEW_HEAD = 1,
} kiln_effnet_load_mode;

/* --- variants --------------------------------------------------------- */

/* 1 if `variant` ("b0".."b3", also "efficientnet_b0".."efficientnet_b3")
 * is known. */
int kiln_effnet_variant_known(const char *variant);
/* Number of trainable parameters of a variant with `num_classes` outputs
 * (torchvision's sum(p.numel()): b0 with 1000 classes is 5,288,548);
 * 0 for an unknown variant or num_classes < 1. */
size_t kiln_effnet_variant_param_count(const char *variant, int num_classes);

/* --- life cycle ------------------------------------------------------- */

/* A model with torchvision's initialisation from seed 0 (see
 * kiln_effnet_init). `be` is borrowed. NULL on failure. */
kiln_effnet *kiln_effnet_create(const char *variant, int num_classes, kiln_nn_backend *be,
                                kiln_err *err);
/* A model shaped like the weights in a safetensors file and loaded from it
 * (strict). The variant and class count come from the file's metadata
 * ("variant", "num_classes") when present, else from its tensors, so
 * torchvision state_dicts saved without metadata load too. */
kiln_effnet *kiln_effnet_create_from_file(const char *path, kiln_nn_backend *be, kiln_err *err);
/* Frees everything the model allocated (not the backend). NULL is fine. */
void kiln_effnet_destroy(kiln_effnet *m);

/* Re-initialise every parameter and buffer as torchvision does:
 * kaiming_normal_(mode="fan_out") for every conv weight (SE convs
 * included), zero conv biases, BatchNorm weight 1 / bias 0, running mean 0,
 * var 1, num_batches_tracked 0, Linear weight uniform(±1/sqrt(out_features))
 * and zero bias. Normals are Box–Muller draws from lib/common/rng, one
 * stream per tensor derived from (seed, tensor index): same distributions
 * as torch, different values. */
int kiln_effnet_init(kiln_effnet *m, uint64_t seed, kiln_err *err);

/* --- description ------------------------------------------------------ */

const char *kiln_effnet_variant(const kiln_effnet *m); /* "b0".."b3" */
int kiln_effnet_num_classes(const kiln_effnet *m);
int kiln_effnet_feature_count(const kiln_effnet *m);    /* classifier inputs (1280 for b0) */
float kiln_effnet_dropout(const kiln_effnet *m);
float kiln_effnet_stochastic_depth(const kiln_effnet *m);

/* Parameters in torchvision's order (model.parameters()). */
size_t kiln_effnet_param_tensors(const kiln_effnet *m);
const kiln_effnet_tensor *kiln_effnet_param(const kiln_effnet *m, size_t i);
/* Buffers (running_mean, running_var, num_batches_tracked) in
 * torchvision's order. */
size_t kiln_effnet_buffer_tensors(const kiln_effnet *m);
const kiln_effnet_tensor *kiln_effnet_buffer(const kiln_effnet *m, size_t i);
/* A parameter or buffer by state_dict key; NULL when absent. */
const kiln_effnet_tensor *kiln_effnet_find(const kiln_effnet *m, const char *name);
/* Sum of the parameters' element counts (torchvision's parameter count). */
size_t kiln_effnet_param_count(const kiln_effnet *m);

/* The flat buffers (backend memory) and their length in floats (gaps
 * included). The gradients are zeroed by the first backward and hold
 * nothing defined before it (an inference-only model never touches them). */
float *kiln_effnet_params_flat(kiln_effnet *m);
float *kiln_effnet_grads_flat(kiln_effnet *m);
size_t kiln_effnet_flat_floats(const kiln_effnet *m);
/* Floats [0, decay_floats) of the flat buffers hold the weight-decay
 * tensors; [decay_floats, flat_floats) the no-decay ones. */
size_t kiln_effnet_decay_floats(const kiln_effnet *m);

/* --- regularisation --------------------------------------------------- */

/* Classifier dropout probability, in [0, 1); default per variant. */
int kiln_effnet_set_dropout(kiln_effnet *m, float p, kiln_err *err);
/* Base stochastic-depth probability, in [0, 1); block i of B gets
 * p * i / B. Default 0.2. */
int kiln_effnet_set_stochastic_depth(kiln_effnet *m, float p, kiln_err *err);

/* Use the backend's fused batch norm + SiLU ops where it has them
 * (backend.h; bit for bit the unfused pair): 1 (the default) or 0. */
void kiln_effnet_set_fused(kiln_effnet *m, int on);

/* --- running ---------------------------------------------------------- */

/* Allocate activations and gradient scratch for input [batch, 3, h, w]
 * (h, w >= 1). A no-op when the shape is the planned one; otherwise the old
 * plan is freed first. Activations are kept for backward. */
int kiln_effnet_plan(kiln_effnet *m, int batch, int h, int w, kiln_err *err);

/* A plan for eval forwards only (serving, evaluation): activations share
 * three rotating buffers instead of being kept: b0 with batch 32 at
 * 224x224 needs 0.43 GiB instead of kiln_effnet_plan's 3.4 GiB. Eval
 * logits are the same bits as under a training plan. Train forwards and backward are refused until the next
 * kiln_effnet_plan. Same no-op / re-plan rules as kiln_effnet_plan. */
int kiln_effnet_plan_inference(kiln_effnet *m, int batch, int h, int w, kiln_err *err);

/* Bytes the current plan holds in backend memory (activations and
 * gradient scratch); 0 without a plan. */
size_t kiln_effnet_plan_bytes(const kiln_effnet *m);
/* Changes whenever a plan call laid the buffers out anew (another shape or
 * mode): what a step graph recorded over the old plan is stale then. */
uint64_t kiln_effnet_plan_generation(const kiln_effnet *m);

/* Run the planned shape on `input` [batch, 3, h, w] (backend memory; it
 * must stay unchanged until kiln_effnet_backward returns). `train`: batch
 * statistics (and running statistics updated, num_batches_tracked + 1),
 * dropout and stochastic depth drawn with the backend's mask op from
 * `seed`; eval: running statistics, no dropout, no stochastic depth.
 * Returns the logits [batch, num_classes] in backend memory, owned by the
 * model and valid until the next forward or plan; NULL on failure. */
const float *kiln_effnet_forward(kiln_effnet *m, const float *input, int train, uint64_t seed,
                                 kiln_err *err);

/* Gradients of the last (train) forward from `dlogits` [batch, classes]
 * (backend memory), written into the grad buffer: every parameter's
 * gradient is overwritten, not accumulated. */
int kiln_effnet_backward(kiln_effnet *m, const float *dlogits, kiln_err *err);

/* --- files ------------------------------------------------------------ */

/* Write the state_dict as safetensors (atomic): parameters and running
 * statistics as F32, num_batches_tracked as 0-d I64, in torchvision's
 * order; metadata "format"="pt", "arch"="efficientnet_bN", "variant"="bN",
 * "num_classes". */
int kiln_effnet_save(kiln_effnet *m, const char *path, kiln_err *err);

/* Read a state_dict (F32, F16 or BF16 tensors; I64 or I32 counters).
 * Every key and shape is checked before anything changes: on failure the
 * model is untouched. */
int kiln_effnet_load(kiln_effnet *m, const char *path, kiln_effnet_load_mode mode,
                     uint64_t head_seed, kiln_err *err);

#endif
