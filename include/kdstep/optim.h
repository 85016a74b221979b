/* Learning-rate schedule and gradient clipping helpers for the trainer.
 *
 * The model owns AdamW over its parameter buffers; these are the pieces around it: the warmup +
 * cosine schedule, the global gradient norm (sum of squares per rank, allreduced by the trainer,
 * then sqrt), the clip factor, and the NaN/Inf check that makes the trainer skip a step.
 */
#ifndef KDSTEP_OPTIM_H
#define KDSTEP_OPTIM_H

#include <stddef.h>
#include <stdint.h>

/* Learning rate for 0-based step `step` of `total_steps`:
 *   step < warmup_steps:  lr * (step + 1) / warmup_steps                 (linear warmup, never 0)
 *   after:                lr * (r + (1 - r) * 0.5 * (1 + cos(pi * p)))  p = (step - warmup) / (total - warmup)
 * with r = min_lr_ratio, p clamped to [0, 1] (steps past the end stay at lr * r). */
double kd_lr_schedule(int64_t step, int64_t total_steps, int64_t warmup_steps, double lr, double min_lr_ratio);

/* Sum of squares of g[0..n) in double; NaN or Inf if any element is (the trainer allreduces this,
 * so a non-finite value on one rank reaches every rank). */
double kd_grad_sumsq(const float *g, size_t n);
/* sqrt(kd_grad_sumsq). */
double kd_grad_norm(const float *g, size_t n);
/* Factor to multiply gradients by: min(1, max_norm / norm); 1 when max_norm <= 0 (no clipping) or the
 * norm is 0. Non-finite norm: 0 (the step is skipped anyway). */
float kd_clip_scale(double norm, double max_norm);
/* 1 if any element is NaN or +-Inf. */
int kd_has_nonfinite(const float *g, size_t n);
/* g *= s */
void kd_scale_floats(float *g, size_t n, float s);

#endif
