/* lib/nn/schedule.h — learning-rate schedules as pure functions of the step.
 *
 * kiln_lr_at(s, step) is the learning rate for optimizer step `step`
 * (0-based): the value torch's scheduler holds after `step` calls to
 * scheduler.step(), i.e. the lr the (step+1)-th optimizer.step() uses.
 * No state, so a resumed run needs only its step counter.
 *
 *  - CONSTANT: `lr` throughout.
 *  - WARMUP_COSINE: torchvision's classification recipe,
 *    SequentialLR([LinearLR(start_factor=warmup_start_factor,
 *    total_iters=warmup_steps), CosineAnnealingLR(T_max=total_steps -
 *    warmup_steps, eta_min)], milestones=[warmup_steps]); with
 *    warmup_steps 0, CosineAnnealingLR(T_max=total_steps, eta_min) alone.
 *  - ONE_CYCLE: torch.optim.lr_scheduler.OneCycleLR(max_lr=lr, total_steps,
 *    pct_start, anneal_strategy cos (or linear), div_factor,
 *    final_div_factor, three_phase=False), and, as torch does by default
 *    (cycle_momentum=True), the momentum — SGD's momentum, AdamW's beta1 —
 *    annealed the other way, from max_momentum down to base_momentum while
 *    the lr rises and back up while it falls (kiln_momentum_at).
 *
 * Steps below 0 count as 0 and steps past total_steps as total_steps (where
 * torch's cosine would rise again and OneCycleLR raises).
 */
#ifndef KILN_NN_SCHEDULE_H
#define KILN_NN_SCHEDULE_H

#include <stdint.h>

#include "common/err.h"

typedef enum kiln_lr_kind {
    KILN_LR_CONSTANT = 0,
    KILN_LR_WARMUP_COSINE,
    KILN_LR_ONE_CYCLE,
} kiln_lr_kind;

typedef struct kiln_lr_schedule {
    kiln_lr_kind kind;
    double lr;          /* constant lr; base lr of warmup-cosine; max_lr of one-cycle */
    int64_t total_steps;
    /* WARMUP_COSINE */
    int64_t warmup_steps;
    double warmup_start_factor; /* in (0, 1] */
    double eta_min;
    /* ONE_CYCLE */
    double pct_start;        /* in [0, 1] */
    double div_factor;       /* initial lr = lr / div_factor */
    double final_div_factor; /* final lr = initial lr / final_div_factor */
    int anneal_linear;       /* 0: cos (torch's default), 1: linear */
    int cycle_momentum;      /* 1 (torch's default): kiln_momentum_at cycles */
    double base_momentum;    /* 0.85: the momentum at the lr's peak */
    double max_momentum;     /* 0.95: at the start and the end */
} kiln_lr_schedule;

void kiln_lr_constant(kiln_lr_schedule *s, double lr);
/* eta_min 0 as torchvision's default lr_min. */
void kiln_lr_warmup_cosine(kiln_lr_schedule *s, double lr, int64_t total_steps,
                           int64_t warmup_steps, double warmup_start_factor);
/* torch's defaults: pct_start 0.3, div_factor 25, final_div_factor 1e4, cos. */
void kiln_lr_one_cycle(kiln_lr_schedule *s, double max_lr, int64_t total_steps);

/* EINVAL naming the field when the schedule cannot be computed (torch would
 * divide by zero or refuse it). */
int kiln_lr_schedule_check(const kiln_lr_schedule *s, kiln_err *err);

/* The learning rate at `step`; `s` must have passed kiln_lr_schedule_check. */
double kiln_lr_at(const kiln_lr_schedule *s, int64_t step);

/* The momentum (SGD) or beta1 (AdamW) at `step`: cycled for a ONE_CYCLE
 * schedule with cycle_momentum, otherwise `fixed` (the optimizer's own). */
double kiln_momentum_at(const kiln_lr_schedule *s, int64_t step, double fixed);

#endif
