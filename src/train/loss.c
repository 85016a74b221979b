/* Training losses (see include/kdstep/loss.h and docs/losses.md). */
#include "kdstep/loss.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/simd.h"

int64_t kd_loss_count(const uint8_t *mask, int B, int T) {
    int64_t n = 0;
    for (int b = 0; b < B; b++)
        for (int t = 1; t < T; t++) n += mask[(size_t)b * T + t] != 0;
    return n;
}

/* Targets (position j with t >= 1 and mask set) listed in order, so row loops can run in parallel and
 * sums can be reduced in a fixed order. */
static int64_t list_targets(const uint8_t *mask, int B, int T, int64_t **out) {
    int64_t n = kd_loss_count(mask, B, T);
    *out = malloc((size_t)(n > 0 ? n : 1) * sizeof **out);
    if (!*out) return -1;
    int64_t k = 0;
    for (int b = 0; b < B; b++)
        for (int t = 1; t < T; t++)
            if (mask[(size_t)b * T + t]) (*out)[k++] = (int64_t)b * T + t;
    return n;
}

static double sum_in_order(const double *x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}

/* exp(x) for x <= 0 (logits minus their max), written so the compiler vectorizes the row loops
 * (glibc's expf is a scalar call, and a float compare blocks vectorization under -ftrapping-math).
 * Range reduction x = n ln2 + r, |r| <= ln2/2, and a degree-7 Taylor polynomial: relative error below
 * 2e-7, the same as float rounding. x is clamped at -87 (e^-87 ~ 1.6e-38, still a normal float) by an
 * unsigned compare of the bit pattern: for x <= 0 a larger pattern is a more negative number. */
static inline float exp_neg(float x) {
    uint32_t ux;
    memcpy(&ux, &x, sizeof ux);
    ux = ux < 0xC2AE0000u ? ux : 0xC2AE0000u; /* 0xC2AE0000 == -87.0f */
    memcpy(&x, &ux, sizeof x);
    /* round to nearest by adding 1.5 * 2^23: n sits in the low mantissa bits of t */
    float t = x * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = x - n * 0.693145751953125f - n * 1.42860682030941723212e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f +
              r * (8.3333338e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
    int32_t ti;
    memcpy(&ti, &t, sizeof ti);
    int32_t bits = (ti - 0x4B400000 + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Sum of x[0..V) in 8 float lanes (vectorizable), combined in double. */
static double lane_sum(const float *x, int V) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= V; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += x[i + k];
    double s = 0.0;
    for (int k = 0; k < 8; k++) s += acc[k];
    for (; i < V; i++) s += x[i];
    return s;
}

/* Row max; NaN if any logit is NaN or infinite (the caller then poisons the loss and gradient so the
 * trainer's NaN/Inf check sees the step). Done on integers so it vectorizes: a float's bits xor-ed
 * with its sign-extended magnitude mask order like the floats themselves. */
static float row_max(const float *z, int V) {
    int32_t best = INT32_MIN;
    uint32_t bad = 0;
    for (int i = 0; i < V; i++) {
        int32_t b;
        memcpy(&b, &z[i], sizeof b);
        bad |= (uint32_t)((b & 0x7F800000) == 0x7F800000);
        int32_t key = b ^ ((b >> 31) & 0x7FFFFFFF);
        best = key > best ? key : best;
    }
    if (bad) return NAN;
    int32_t b = best ^ ((best >> 31) & 0x7FFFFFFF);
    float m;
    memcpy(&m, &b, sizeof m);
    return m;
}

static double poison(float *d, int V) {
    if (d)
        for (int i = 0; i < V; i++) d[i] = NAN;
    return NAN;
}

/* -log softmax(z)[y] and, if d, d += scale * (softmax(z) - onehot(y)). e: V floats of scratch, so
 * each exp is computed once. */
KD_HOT_CLONES static double ce_row(const float *z, int V, int32_t y, float scale, float *d, float *e) {
    float m = row_max(z, V);
    if (isnan(m)) return poison(d, V);
    for (int i = 0; i < V; i++) e[i] = exp_neg(z[i] - m);
    double s = lane_sum(e, V);
    double lse = (double)m + log(s);
    if (d) {
        float c = (float)(scale / s);
        for (int i = 0; i < V; i++) d[i] += c * e[i];
        d[y] -= scale;
    }
    return lse - (double)z[y];
}

int64_t kd_loss_ce(const float *logits, const int32_t *ids, const uint8_t *mask, int B, int T, int V,
                   float grad_scale, float *dlogits, double *loss_sum) {
    *loss_sum = 0.0;
    int64_t *tg;
    int64_t n = list_targets(mask, B, T, &tg);
    if (n <= 0) {
        free(tg);
        return n < 0 ? 0 : n;
    }
    double *row_loss = calloc((size_t)n, sizeof *row_loss);
    int64_t counted = 0;
    if (!row_loss) {
        free(tg);
        return 0;
    }
    int failed = 0;
#pragma omp parallel
    {
        float *e = malloc((size_t)V * sizeof *e);
        if (!e) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t k = 0; k < n; k++) {
            int64_t j = tg[k];
            int32_t y = ids[j];
            if (failed || y < 0 || y >= V) continue;
            size_t r = (size_t)(j - 1) * V;
            row_loss[k] = ce_row(logits + r, V, y, grad_scale, dlogits ? dlogits + r : NULL, e);
        }
        free(e);
    }
    if (failed) {
        free(row_loss);
        free(tg);
        return 0;
    }
    double s = 0.0;
    for (int64_t k = 0; k < n; k++) {
        if (ids[tg[k]] < 0 || ids[tg[k]] >= V) continue;
        s += row_loss[k];
        counted++;
    }
    *loss_sum = s;
    free(row_loss);
    free(tg);
    return counted;
}

int kd_divergence_parse(const char *name, kd_divergence *out, kd_error *err) {
    if (!strcmp(name, "forward_kl")) *out = KD_DIV_FORWARD_KL;
    else if (!strcmp(name, "reverse_kl")) *out = KD_DIV_REVERSE_KL;
    else if (!strcmp(name, "jsd")) *out = KD_DIV_JSD;
    else
        return kd_error_set(err, KD_ERR_INVALID,
                            "unknown kd.divergence '%s' (expected forward_kl, reverse_kl or jsd)", name);
    return KD_OK;
}

const char *kd_divergence_name(kd_divergence d) {
    switch (d) {
    case KD_DIV_FORWARD_KL: return "forward_kl";
    case KD_DIV_REVERSE_KL: return "reverse_kl";
    case KD_DIV_JSD: return "jsd";
    }
    return "?";
}

int kd_kd_opts_check(const kd_kd_opts *opts, kd_error *err) {
    if (!(opts->temperature > 0.0f) || !isfinite(opts->temperature))
        return kd_error_set(err, KD_ERR_INVALID, "kd.temperature must be a positive number, got %g",
                            (double)opts->temperature);
    if (opts->divergence == KD_DIV_JSD && !(opts->jsd_beta >= 0.0f && opts->jsd_beta <= 1.0f))
        return kd_error_set(err, KD_ERR_INVALID, "kd.jsd_beta must be in [0, 1], got %g", (double)opts->jsd_beta);
    return KD_OK;
}

int kd_kd_opts_from_config(const kd_config *cfg, kd_kd_opts *out, kd_error *err) {
    int rc = kd_divergence_parse(cfg->kd.divergence, &out->divergence, err);
    if (rc != KD_OK) return rc;
    out->temperature = (float)cfg->kd.temperature;
    out->jsd_beta = (float)cfg->kd.jsd_beta;
    return kd_kd_opts_check(out, err);
}

static double logaddexp(double a, double b) {
    if (a == -INFINITY) return b;
    if (b == -INFINITY) return a;
    return a > b ? a + log1p(exp(b - a)) : b + log1p(exp(a - b));
}

/* One KD target. mark: V zero bytes of scratch (left zero). bucket arrays hold K + 1 entries.
 * Returns T^2 * D, or NAN when the position has no usable teacher (the caller falls back to CE). */
KD_HOT_CLONES static double kd_row(const float *z, int V, const int32_t *tid, const float *tlp, float tail_lp, int K,
                     const kd_kd_opts *o, float scale, float *d, uint8_t *mark, int *bid, double *lq, double *lp,
                     double *r, float *e) {
    /* Buckets: each distinct valid id once (a repeated id's mass joins its bucket); the mass of ids the
     * student does not have (-1, >= V) joins the tail, which is where the student keeps those tokens. */
    int nb = 0;
    double extra_tail = -INFINITY;
    for (int k = 0; k < K; k++) {
        int32_t v = tid[k];
        double l = tlp[k];
        if (isnan(l)) continue;
        if (v < 0 || v >= V) {
            extra_tail = logaddexp(extra_tail, l);
        } else if (mark[v]) {
            for (int b = 0; b < nb; b++)
                if (bid[b] == v) lq[b] = logaddexp(lq[b], l);
        } else {
            mark[v] = 1;
            bid[nb] = v;
            lq[nb++] = l;
        }
    }
    for (int b = 0; b < nb; b++) lq[b] = fmax(lq[b], KD_TEACHER_LOGPROB_FLOOR);
    if (nb == 0 || isnan(tail_lp)) {
        for (int b = 0; b < nb; b++) mark[bid[b]] = 0;
        return NAN;
    }
    const double Tt = o->temperature;
    /* student log-softmax at temperature T; the tail summed directly (no 1 - sum cancellation) */
    float m = row_max(z, V);
    if (isnan(m)) {
        for (int b = 0; b < nb; b++) mark[bid[b]] = 0;
        poison(d, V);
        return INFINITY; /* not NaN: that would mean "no teacher"; the gradient carries the NaN */
    }
    const float invT = (float)(1.0 / Tt);
    for (int i = 0; i < V; i++) e[i] = exp_neg((z[i] - m) * invT);
    /* the tail summed directly: 1 - sum(top-k) would cancel when the top-k holds most of the mass */
    double S = lane_sum(e, V), S_tail = 0.0;
    {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int i = 0;
        for (; i + 8 <= V; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += mark[i + k] ? 0.0f : e[i + k];
        for (int k = 0; k < 8; k++) S_tail += acc[k];
        for (; i < V; i++) S_tail += mark[i] ? 0.0 : e[i];
    }
    const double lse = (double)m * invT + log(S);
    int has_tail = nb < V; /* with every id in the top-k there is no tail bucket */
    int n_all = nb + has_tail;
    for (int b = 0; b < nb; b++) lp[b] = (double)((z[bid[b]] - m) * invT) + (double)m * invT - lse;
    if (has_tail) {
        lq[nb] = fmax(logaddexp((double)tail_lp, extra_tail), KD_TEACHER_LOGPROB_FLOOR);
        lp[nb] = log(S_tail) - log(S);
    }
    /* teacher tempered over its buckets */
    double tl = -INFINITY;
    for (int b = 0; b < n_all; b++) {
        lq[b] /= Tt;
        tl = logaddexp(tl, lq[b]);
    }
    for (int b = 0; b < n_all; b++) lq[b] -= tl;
    /* D and r_b = (dD / d log p_b) / p_b */
    double D = 0.0, G = 0.0;
    const double beta = o->jsd_beta;
    const double lbeta = beta > 0 ? log(beta) : -INFINITY, l1beta = beta < 1 ? log1p(-beta) : -INFINITY;
    for (int b = 0; b < n_all; b++) {
        double q = exp(lq[b]), p = exp(lp[b]);
        switch (o->divergence) {
        case KD_DIV_FORWARD_KL:
            D += q * (lq[b] - lp[b]);
            r[b] = -exp(lq[b] - lp[b]);
            break;
        case KD_DIV_REVERSE_KL:
            D += p * (lp[b] - lq[b]);
            r[b] = lp[b] - lq[b] + 1.0;
            break;
        case KD_DIV_JSD: {
            double lm = logaddexp(lbeta + lq[b], l1beta + lp[b]);
            if (beta > 0) D += beta * q * (lq[b] - lm);
            if (beta < 1) D += (1.0 - beta) * p * (lp[b] - lm);
            r[b] = beta < 1 ? (1.0 - beta) * (lp[b] - lm) : 0.0;
            break;
        }
        }
        G += p * r[b];
    }
    if (d) {
        /* d(T^2 D)/dz_i = T * p_i * (r_{bucket(i)} - G) */
        const double c = (double)scale * Tt;
        const double r_tail = has_tail ? r[nb] : 0.0;
        const double inv_S = 1.0 / S;
        const float ct = (float)(c * inv_S * (r_tail - G));
        for (int i = 0; i < V; i++)
            if (!mark[i]) d[i] += ct * e[i];
        for (int b = 0; b < nb; b++) d[bid[b]] += (float)(c * exp(lp[b]) * (r[b] - G));
    }
    for (int b = 0; b < nb; b++) mark[bid[b]] = 0;
    return Tt * Tt * (D > 0.0 ? D : 0.0); /* D >= 0 exactly; rounding may leave -1e-17 */
}

int64_t kd_loss_kd(const float *logits, const int32_t *ids, const uint8_t *mask, int B, int T, int V,
                   const kd_teacher_topk *teacher, const kd_kd_opts *opts, float grad_scale, float *dlogits,
                   double *loss_sum, int64_t *n_fallback) {
    *loss_sum = 0.0;
    if (n_fallback) *n_fallback = 0;
    int64_t *tg;
    int64_t n = list_targets(mask, B, T, &tg);
    if (n <= 0) {
        free(tg);
        return n < 0 ? 0 : n;
    }
    int K = teacher ? teacher->K : 0;
    double *row_loss = calloc((size_t)n, sizeof *row_loss);
    uint8_t *fell = calloc((size_t)n, 1);
    int failed = !row_loss || !fell;
#pragma omp parallel if (!failed)
    {
        uint8_t *mark = calloc((size_t)V, 1);
        int *bid = malloc(((size_t)K + 1) * sizeof *bid);
        double *buf = malloc(3 * ((size_t)K + 1) * sizeof *buf);
        float *e = malloc((size_t)V * sizeof *e);
        if (!mark || !bid || !buf || !e) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t k = 0; k < n; k++) {
            if (failed) continue;
            int64_t j = tg[k];
            size_t r = (size_t)(j - 1) * V;
            float *d = dlogits ? dlogits + r : NULL;
            double l = NAN;
            if (K > 0 && (!teacher->has_teacher || teacher->has_teacher[j]))
                l = kd_row(logits + r, V, teacher->ids + (size_t)j * K, teacher->logprobs + (size_t)j * K,
                           teacher->tail_logprob[j], K, opts, grad_scale, d, mark, bid, buf, buf + K + 1,
                           buf + 2 * (K + 1), e);
            if (isnan(l)) {
                fell[k] = 1;
                int32_t y = ids[j];
                l = (y >= 0 && y < V) ? ce_row(logits + r, V, y, grad_scale, d, e) : 0.0;
            }
            row_loss[k] = l;
        }
        free(mark);
        free(bid);
        free(buf);
        free(e);
    }
    if (!failed) {
        *loss_sum = sum_in_order(row_loss, n);
        if (n_fallback)
            for (int64_t k = 0; k < n; k++) *n_fallback += fell[k];
    }
    free(row_loss);
    free(fell);
    free(tg);
    return failed ? 0 : n;
}

/* Byte b as 8 floats 0/1 (bit k -> entry k), filled once. */
static float BYTE_TO_FLOATS[256][8];
static void fill_byte_table(void) {
    for (int b = 0; b < 256; b++)
        for (int k = 0; k < 8; k++) BYTE_TO_FLOATS[b][k] = (float)((b >> k) & 1);
}

/* -log(1 - p(invalid)) = lse(z) - lse(z over valid); d += scale * (softmax(z) - 1[valid] softmax_valid(z)).
 * e and ok: V floats of scratch each (the set is expanded to 0/1 floats so the loops vectorize). */
KD_HOT_CLONES static double grammar_row(const float *z, int V, const uint64_t *valid, float scale, float *d, float *e, float *ok) {
    float m = row_max(z, V);
    if (isnan(m)) return poison(d, V);
    const uint8_t *vb = (const uint8_t *)valid; /* little-endian: bit i is bit i%8 of byte i/8 */
    for (int i = 0; i + 8 <= V; i += 8) memcpy(ok + i, BYTE_TO_FLOATS[vb[i >> 3]], 8 * sizeof *ok);
    for (int i = V / 8 * 8; i < V; i++) ok[i] = (float)((vb[i >> 3] >> (i & 7)) & 1u);
    for (int i = 0; i < V; i++) e[i] = exp_neg(z[i] - m);
    double s_all = lane_sum(e, V), s_ok = 0.0;
    {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int i = 0;
        for (; i + 8 <= V; i += 8)
            for (int k = 0; k < 8; k++) acc[k] += ok[i + k] * e[i + k];
        for (int k = 0; k < 8; k++) s_ok += acc[k];
        for (; i < V; i++) s_ok += ok[i] * e[i];
    }
    if (d) {
        float ca = (float)(scale / s_all), cv = (float)(scale / s_ok);
        for (int i = 0; i < V; i++) d[i] += (ca - ok[i] * cv) * e[i];
    }
    return log(s_all) - log(s_ok);
}

int64_t kd_loss_json_grammar(kd_jsongrammar *g, const float *logits, const int32_t *ids, const uint8_t *json_mask,
                             int B, int T, int V, float grad_scale, float *dlogits, double *loss_sum,
                             int64_t *n_skipped) {
    *loss_sum = 0.0;
    if (n_skipped) *n_skipped = 0;
    int64_t n = kd_loss_count(json_mask, B, T);
    if (n == 0 || kd_jsongrammar_vocab_size(g) != V) return n;
    size_t words = ((size_t)V + 63) / 64;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fill_byte_table);
    /* Sequential pass: the automaton over each run and a copy of each target's valid set (the cache
     * may be cleared while we go). */
    int64_t *row = malloc((size_t)n * sizeof *row);
    uint64_t *sets = malloc((size_t)n * words * sizeof *sets);
    double *row_loss = calloc((size_t)n, sizeof *row_loss);
    if (!row || !sets || !row_loss) {
        free(row);
        free(sets);
        free(row_loss);
        return n;
    }
    int64_t m = 0, skipped = 0;
    for (int b = 0; b < B; b++) {
        kd_jsonprefix st;
        int live = 0;
        for (int t = 0; t < T; t++) {
            size_t j = (size_t)b * T + t;
            if (!json_mask[j]) {
                live = 0;
                continue;
            }
            int32_t y = ids[j];
            int run_start = t == 0 || !json_mask[j - 1];
            if (run_start) {
                kd_jsonprefix_init(&st);
                live = 1;
            }
            int scored = 0;
            if (live && t >= 1) {
                const uint64_t *set = kd_jsongrammar_valid_set(g, &st);
                if (set && y >= 0 && y < V && ((set[y >> 6] >> (y & 63)) & 1u)) {
                    memcpy(sets + (size_t)m * words, set, words * sizeof *sets);
                    row[m++] = (int64_t)j - 1;
                    scored = 1;
                }
            }
            if (t >= 1 && !scored) skipped++;
            if (!live) continue;
            kd_jsonprefix next = st;
            if (kd_jsongrammar_feed_token(g, &next, y)) {
                st = next;
            } else if (run_start && y >= 0 && y < V) {
                /* leading non-JSON bytes in the first token: start at the first suffix that parses */
                const char *bytes;
                size_t len;
                live = 0;
                kd_jsongrammar_token_bytes(g, y, &bytes, &len);
                for (size_t k = 1; k < len && !live; k++) {
                    kd_jsonprefix_init(&next);
                    if (kd_jsonprefix_feed(&next, bytes + k, len - k)) {
                        st = next;
                        live = 1;
                    }
                }
            } else {
                live = 0;
            }
        }
    }
#pragma omp parallel
    {
        float *e = malloc(2 * (size_t)V * sizeof *e);
#pragma omp for schedule(static)
        for (int64_t k = 0; k < m; k++) {
            size_t r = (size_t)row[k] * V;
            row_loss[k] = e ? grammar_row(logits + r, V, sets + (size_t)k * words, grad_scale,
                                          dlogits ? dlogits + r : NULL, e, e + V)
                            : NAN; /* out of memory shows as a NaN loss, which the trainer skips */
        }
        free(e);
    }
    *loss_sum = sum_in_order(row_loss, m);
    if (n_skipped) *n_skipped = skipped;
    free(row);
    free(sets);
    free(row_loss);
    return n;
}
