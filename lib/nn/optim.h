/* lib/nn/optim.h — SGD and AdamW over a list of parameter tensors.
 *
 * A kiln_optim updates parameters that live in backend memory from their
 * gradients (also backend memory), through the backend's sgd_step /
 * adamw_step, so it runs unchanged on the CPU and CUDA backends. It owns its
 * state — SGD's momentum buffers, AdamW's m and v — allocated once, as one
 * block per kind of state, through the backend at create time; and the step
 * counter. The parameter and gradient buffers stay the caller's.
 *
 * Semantics are torch.optim.SGD (dampening 0) and torch.optim.AdamW, with
 * one parameter group whose weight decay is switched off per parameter
 * (no_weight_decay: torchvision's norm_weight_decay=0 for BN weights and
 * biases, say). Gradient clipping is torch.nn.utils.clip_grad_norm_.
 *
 * Checkpoints: kiln_optim_state_export copies the state to host memory and
 * kiln_optim_state_import puts it back with the step counter, so a resumed
 * run continues bit for bit as if it had not stopped.
 */
#ifndef KILN_NN_OPTIM_H
#define KILN_NN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "nn/backend.h"

typedef enum kiln_optim_kind {
    KILN_OPTIM_SGD = 0,
    KILN_OPTIM_ADAMW,
} kiln_optim_kind;

typedef struct kiln_optim_config {
    kiln_optim_kind kind;
    float lr;           /* > 0 at create; kiln_optim_set_lr changes it per step */
    float weight_decay; /* >= 0; SGD: L2 added to the gradient; AdamW: decoupled */
    float momentum;     /* SGD, in [0, 1) */
    int nesterov;       /* SGD; needs momentum > 0 (as torch) */
    float beta1, beta2; /* AdamW, each in [0, 1) */
    float eps;          /* AdamW, >= 0 */
} kiln_optim_config;

/* torch's defaults for the rest: SGD momentum/nesterov as given; AdamW
 * betas (0.9, 0.999), eps 1e-8. */
void kiln_optim_config_sgd(kiln_optim_config *cfg, float lr, float momentum, int nesterov,
                           float weight_decay);
void kiln_optim_config_adamw(kiln_optim_config *cfg, float lr, float weight_decay);

/* One parameter tensor: `count` floats of `param` and of `grad`, both in
 * the backend's memory and borrowed for the optimizer's lifetime. */
typedef struct kiln_optim_param {
    float *param;
    float *grad;
    size_t count;
    int no_weight_decay; /* 1: this tensor gets weight decay 0 */
} kiln_optim_param;

typedef struct kiln_optim kiln_optim;

/* Checks the config (EINVAL naming the bad value), copies the parameter
 * list, allocates zeroed state through `be`. `be` must outlive it. */
kiln_optim *kiln_optim_create(kiln_nn_backend *be, const kiln_optim_config *cfg,
                              const kiln_optim_param *params, size_t n_params, kiln_err *err);
/* Releases the state buffers (NULL is fine). */
void kiln_optim_destroy(kiln_optim *o);

/* The learning rate of the next step (a schedule sets it before each). */
void kiln_optim_set_lr(kiln_optim *o, float lr);
float kiln_optim_lr(const kiln_optim *o);
/* SGD's momentum or AdamW's beta1 for the next step (torch's OneCycleLR
 * cycles it); in [0, 1). */
void kiln_optim_set_momentum(kiln_optim *o, float momentum);
/* Steps taken so far (AdamW's bias correction uses it + 1 next). */
int64_t kiln_optim_steps(const kiln_optim *o);

/* One update of every parameter from its gradient. Gradients are read, not
 * cleared: every backward op overwrites its outputs. */
int kiln_optim_step(kiln_optim *o, kiln_err *err);

/* The global L2 norm of all gradients, sqrt(sum of squares), in double. */
int kiln_optim_grad_norm(kiln_optim *o, double *total_norm, kiln_err *err);

/* torch.nn.utils.clip_grad_norm_: total = global norm; when
 * max_norm / (total + 1e-6) < 1 every gradient is scaled by it. Writes the
 * norm before clipping to *total_norm (may be NULL). A non-finite norm leaves
 * the gradients as they are (torch would spread the NaN into all of them);
 * the caller sees it in *total_norm and should skip the step. */
int kiln_optim_clip_grad_norm(kiln_optim *o, double max_norm, double *total_norm,
                              kiln_err *err);

/* Number of floats in the state: SGD the momentum of every parameter,
 * AdamW m then v of every parameter; each in parameter order. */
size_t kiln_optim_state_count(const kiln_optim *o);
/* Copy the state into `host` (`count` must be kiln_optim_state_count). */
int kiln_optim_state_export(kiln_optim *o, float *host, size_t count, kiln_err *err);
/* Replace the state and the step counter (from kiln_optim_steps at export
 * time); EINVAL when `count` or `steps` does not fit this optimizer. */
int kiln_optim_state_import(kiln_optim *o, const float *host, size_t count, int64_t steps,
                            kiln_err *err);

#endif
