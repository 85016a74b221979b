/* LR schedule and gradient-clipping helpers (see include/kdstep/optim.h). */
#include "kdstep/optim.h"

#include <math.h>

double kd_lr_schedule(int64_t step, int64_t total_steps, int64_t warmup_steps, double lr, double min_lr_ratio) {
    if (step < 0) step = 0;
    if (warmup_steps > 0 && step < warmup_steps) return lr * (double)(step + 1) / (double)warmup_steps;
    int64_t span = total_steps - (warmup_steps > 0 ? warmup_steps : 0);
    double p = span > 0 ? (double)(step - (warmup_steps > 0 ? warmup_steps : 0)) / (double)span : 1.0;
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + cos(M_PI * p)));
}

double kd_grad_sumsq(const float *g, size_t n) {
    /* four partial sums keep the loop vectorizable while staying deterministic */
    double s[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) s[k] += (double)g[i + k] * (double)g[i + k];
    for (; i < n; i++) s[0] += (double)g[i] * (double)g[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

double kd_grad_norm(const float *g, size_t n) { return sqrt(kd_grad_sumsq(g, n)); }

float kd_clip_scale(double norm, double max_norm) {
    if (!isfinite(norm)) return 0.0f;
    if (max_norm <= 0 || norm <= max_norm || norm == 0) return 1.0f;
    return (float)(max_norm / norm);
}

int kd_has_nonfinite(const float *g, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad |= !isfinite(g[i]);
    return bad;
}

void kd_scale_floats(float *g, size_t n, float s) {
    for (size_t i = 0; i < n; i++) g[i] *= s;
}
