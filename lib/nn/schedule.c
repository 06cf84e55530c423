/* lib/nn/schedule.c — learning-rate schedules, in torch's closed forms.
 *
 * torch computes LinearLR and CosineAnnealingLR recursively (each lr from
 * the previous one); the closed forms below are the same functions and
 * differ from torch's chain by rounding only (~1e-15 relative).
 */
#include "nn/schedule.h"

#include <math.h>
#include <string.h>

void kiln_lr_constant(kiln_lr_schedule *s, double lr)
{
    memset(s, 0, sizeof *s);
    s->kind = KILN_LR_CONSTANT;
    s->lr = lr;
    s->total_steps = 1;
}

void kiln_lr_warmup_cosine(kiln_lr_schedule *s, double lr, int64_t total_steps,
                           int64_t warmup_steps, double warmup_start_factor)
{
    memset(s, 0, sizeof *s);
    s->kind = KILN_LR_WARMUP_COSINE;
    s->lr = lr;
    s->total_steps = total_steps;
    s->warmup_steps = warmup_steps;
    s->warmup_start_factor = warmup_start_factor;
    s->eta_min = 0.0;
}

void kiln_lr_one_cycle(kiln_lr_schedule *s, double max_lr, int64_t total_steps)
{
    memset(s, 0, sizeof *s);
    s->kind = KILN_LR_ONE_CYCLE;
    s->lr = max_lr;
    s->total_steps = total_steps;
    s->pct_start = 0.3;
    s->div_factor = 25.0;
    s->final_div_factor = 1e4;
    s->cycle_momentum = 1;
    s->base_momentum = 0.85;
    s->max_momentum = 0.95;
}

static int check_warmup_cosine(const kiln_lr_schedule *s, kiln_err *err)
{
    if (s->warmup_steps < 0 || s->warmup_steps >= s->total_steps)
        return kiln_err_set(err, KILN_EINVAL,
                            "lr schedule: warmup of %lld steps must be shorter than the %lld "
                            "steps in all", (long long)s->warmup_steps,
                            (long long)s->total_steps);
    if (s->warmup_steps > 0 &&
        !(s->warmup_start_factor > 0.0 && s->warmup_start_factor <= 1.0))
        return kiln_err_set(err, KILN_EINVAL,
                            "lr schedule: warmup start factor %g must be in (0, 1]",
                            s->warmup_start_factor);
    if (!(s->eta_min >= 0.0) || !isfinite(s->eta_min))
        return kiln_err_set(err, KILN_EINVAL, "lr schedule: minimum lr %g must be >= 0",
                            s->eta_min);
    return KILN_OK;
}

static int check_one_cycle(const kiln_lr_schedule *s, kiln_err *err)
{
    if (s->cycle_momentum && !(s->base_momentum >= 0.0 && s->base_momentum < 1.0 &&
                               s->max_momentum >= 0.0 && s->max_momentum < 1.0))
        return kiln_err_set(err, KILN_EINVAL,
                            "lr schedule: one-cycle momentum %g..%g must be in [0, 1)",
                            s->base_momentum, s->max_momentum);
    if (!(s->pct_start >= 0.0 && s->pct_start < 1.0))
        return kiln_err_set(err, KILN_EINVAL,
                            "lr schedule: one-cycle pct_start %g must be in [0, 1)",
                            s->pct_start);
    /* A warm-up phase of length zero: torch divides 0 by 0 at step 0. */
    if (s->pct_start * (double)s->total_steps == 1.0)
        return kiln_err_set(err, KILN_EINVAL,
                            "lr schedule: one-cycle pct_start × total_steps must not be 1");
    if (!(s->div_factor > 0.0) || !(s->final_div_factor > 0.0) || !isfinite(s->div_factor) ||
        !isfinite(s->final_div_factor))
        return kiln_err_set(err, KILN_EINVAL,
                            "lr schedule: one-cycle div_factor %g and final_div_factor %g must "
                            "be > 0", s->div_factor, s->final_div_factor);
    return KILN_OK;
}

int kiln_lr_schedule_check(const kiln_lr_schedule *s, kiln_err *err)
{
    if (!(s->lr > 0.0) || !isfinite(s->lr))
        return kiln_err_set(err, KILN_EINVAL, "lr schedule: learning rate %g must be > 0",
                            s->lr);
    if (s->total_steps < 1)
        return kiln_err_set(err, KILN_EINVAL, "lr schedule: total steps %lld must be >= 1",
                            (long long)s->total_steps);
    switch (s->kind) {
    case KILN_LR_CONSTANT:
        return KILN_OK;
    case KILN_LR_WARMUP_COSINE:
        return check_warmup_cosine(s, err);
    case KILN_LR_ONE_CYCLE:
        return check_one_cycle(s, err);
    }
    return kiln_err_set(err, KILN_EINVAL, "lr schedule: unknown kind %d", (int)s->kind);
}

static double warmup_cosine(const kiln_lr_schedule *s, int64_t step)
{
    if (step < s->warmup_steps) {
        double f = s->warmup_start_factor;
        return s->lr * (f + (1.0 - f) * (double)step / (double)s->warmup_steps);
    }
    double t = (double)(step - s->warmup_steps);
    double t_max = (double)(s->total_steps - s->warmup_steps);
    return s->eta_min + (s->lr - s->eta_min) * (1.0 + cos(M_PI * t / t_max)) / 2.0;
}

/* OneCycleLR's _annealing_cos / _annealing_linear, from start to end. */
static double anneal(const kiln_lr_schedule *s, double start, double end, double pct)
{
    if (s->anneal_linear)
        return (end - start) * pct + start;
    return end + (start - end) / 2.0 * (cos(M_PI * pct) + 1.0);
}

/* OneCycleLR's two phases: (start, peak) up to end_up, then (peak, end).
 * The lr goes initial -> max -> min; the momentum max -> base -> max. */
static double one_cycle_phase(const kiln_lr_schedule *s, int64_t step, double start,
                              double peak, double end)
{
    double end_up = s->pct_start * (double)s->total_steps - 1.0;
    double end_down = (double)s->total_steps - 1.0;
    double x = (double)step;
    if (x <= end_up)
        return anneal(s, start, peak, x / end_up);
    return anneal(s, peak, end, (x - end_up) / (end_down - end_up));
}

static double one_cycle(const kiln_lr_schedule *s, int64_t step)
{
    double initial = s->lr / s->div_factor;
    return one_cycle_phase(s, step, initial, s->lr, initial / s->final_div_factor);
}

double kiln_momentum_at(const kiln_lr_schedule *s, int64_t step, double fixed)
{
    if (s->kind != KILN_LR_ONE_CYCLE || !s->cycle_momentum)
        return fixed;
    step = step < 0 ? 0 : step > s->total_steps ? s->total_steps : step;
    return one_cycle_phase(s, step, s->max_momentum, s->base_momentum, s->max_momentum);
}

double kiln_lr_at(const kiln_lr_schedule *s, int64_t step)
{
    if (step < 0)
        step = 0;
    if (step > s->total_steps)
        step = s->total_steps;
    switch (s->kind) {
    case KILN_LR_WARMUP_COSINE:
        return warmup_cosine(s, step);
    case KILN_LR_ONE_CYCLE:
        return one_cycle(s, step);
    case KILN_LR_CONSTANT:
        break;
    }
    return s->lr;
}
