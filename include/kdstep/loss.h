/* Training losses over plain arrays: CE, KD (forward KL, reverse KL, generalized JSD) from the teacher's
 * top-k with a tail bucket, masked CE for the process-supervision terms, and the JSON grammar term.
 *
 * Layout and alignment (docs/losses.md has the formulas):
 *   A batch is B sequences of T tokens, flattened to N = B*T positions, position j = b*T + t.
 *   logits[N, V] and dlogits[N, V] are row-major; row j is the student's prediction of the token at
 *   position j+1 of the same sequence. Everything else — ids, masks, teacher top-k — is indexed by
 *   the position of the token it describes (the *target*). So a mask bit at t (1 <= t < T) selects
 *   target ids[t] and logits row t-1; mask bits at t = 0 have no row and are ignored, and row T-1 of
 *   every sequence scores nothing.
 *
 * Normalization contract with the trainer: every function returns the term's *un-normalized* sum
 * (in *loss_sum, double) and the number of positions it counts, and ADDS grad_scale * d(sum)/d(logits)
 * into dlogits (dlogits may be NULL for forward-only). The trainer counts each term's positions with
 * kd_loss_count over its whole global batch (all ranks, all accumulation steps; MPI_Allreduce) before
 * the forward pass and passes grad_scale = weight / global_count; the term's value is then
 * weight * allreduced(sum) / global_count, independent of rank count and accumulation.
 * A call's count always equals kd_loss_count of its mask (KD and grammar included), so the trainer
 * can use that for normalization.
 *
 * Threads: the row loops use OpenMP; sums are reduced in a fixed order, so results do not depend on
 * the thread count (bitwise-reproducible resume).
 */
#ifndef KDSTEP_LOSS_H
#define KDSTEP_LOSS_H

#include <stdint.h>

#include "kdstep/config.h"
#include "kdstep/error.h"
#include "kdstep/jsonprefix.h"

/* Teacher log-probabilities are floored here before use, so an "impossible" teacher token (-inf, or
 * an API's -9999) costs a finite amount. */
#define KD_TEACHER_LOGPROB_FLOOR (-100.0)

/* Number of scored targets: mask bits at t in [1, T) of each sequence. */
int64_t kd_loss_count(const uint8_t *mask, int B, int T);

/* Cross-entropy sum over masked targets: sum_t -log softmax(logits[t-1])[ids[t]].
 * Used for CE on loss_mask and for the tool-selection (tool_name_mask), JSON (json_mask) and
 * integration (integration_mask) terms. Returns the count; ids outside [0, V) at masked targets are
 * skipped and not counted (the dataset reader rejects them earlier). */
int64_t kd_loss_ce(const float *logits, const int32_t *ids, const uint8_t *mask, int B, int T, int V,
                   float grad_scale, float *dlogits, double *loss_sum);

typedef enum kd_divergence { KD_DIV_FORWARD_KL = 0, KD_DIV_REVERSE_KL = 1, KD_DIV_JSD = 2 } kd_divergence;

/* "forward_kl" | "reverse_kl" | "jsd"; anything else is KD_ERR_INVALID naming the choices. */
int kd_divergence_parse(const char *name, kd_divergence *out, kd_error *err);
const char *kd_divergence_name(kd_divergence d);

/* The teacher's top-k at each target position (same indexing as ids). */
typedef struct kd_teacher_topk {
    int K;                      /* entries per position; 0 = no teacher anywhere */
    const int32_t *ids;         /* [N, K] student token ids; -1 (or >= V) for a teacher token the student
                                   vocabulary lacks: its mass joins the tail bucket */
    const float *logprobs;      /* [N, K] teacher log-probabilities (temperature 1); -inf or NaN = padding;
                                   a repeated id's mass joins that id's bucket */
    const float *tail_logprob;  /* [N] log of the teacher mass outside its top-k (may be -inf) */
    const uint8_t *has_teacher; /* [N] or NULL: 0 marks positions without teacher log-probs */
} kd_teacher_topk;

typedef struct kd_kd_opts {
    kd_divergence divergence;
    float temperature; /* T > 0; the term is T^2 * D(teacher_T || student_T) */
    float jsd_beta;    /* in [0, 1], only for KD_DIV_JSD */
} kd_kd_opts;

/* Check T > 0 and beta in [0, 1]; KD_ERR_INVALID with the key name otherwise. */
int kd_kd_opts_check(const kd_kd_opts *opts, kd_error *err);
/* kd.divergence / kd.temperature / kd.jsd_beta of a config, parsed and checked (the trainer calls this
 * before any step, so a bad value fails early). */
int kd_kd_opts_from_config(const kd_config *cfg, kd_kd_opts *out, kd_error *err);

/* KD over masked targets (normally loss_mask). At each target the teacher distribution has K + 1
 * buckets (its top-k ids and one tail bucket), tempered as softmax(logprob / T) over the buckets; the
 * student's buckets are its probabilities at temperature T of the same ids and the rest of its
 * vocabulary as the tail. Per target: T^2 * D, D one of
 *   forward KL  sum_b q_b log(q_b / p_b)
 *   reverse KL  sum_b p_b log(p_b / q_b)
 *   JSD(beta)   beta KL(q || m) + (1 - beta) KL(p || m), m = beta q + (1 - beta) p
 * (q teacher, p student), never negative. A target without teacher log-probs (K == 0, has_teacher 0,
 * no top-k id in [0, V) with a log-prob, or a NaN tail) falls back to plain CE on ids[t] at temperature 1, counted in
 * *n_fallback (may be NULL). Returns the count (fallback positions included). */
int64_t kd_loss_kd(const float *logits, const int32_t *ids, const uint8_t *mask, int B, int T, int V,
                   const kd_teacher_topk *teacher, const kd_kd_opts *opts, float grad_scale, float *dlogits,
                   double *loss_sum, int64_t *n_fallback);

/* Grammar term on json_mask targets: -log(1 - p_student(invalid)) where invalid is the set of tokens
 * whose bytes would make the JSON text so far an invalid JSON prefix. The JSON text of a target is the
 * bytes of the tokens of its run of consecutive json_mask positions before it. A run whose first
 * token carries leading non-JSON bytes starts at the first suffix of that token that is a valid
 * prefix; a target whose gold token is itself invalid (a boundary token with trailing non-JSON bytes,
 * or a sample with broken JSON) is skipped (contributes 0, still counted), and so is the rest of its
 * run once the gold text is not a JSON prefix. *n_skipped (may be NULL) gets the skipped targets.
 * g must have V tokens. Returns kd_loss_count(json_mask). */
int64_t kd_loss_json_grammar(kd_jsongrammar *g, const float *logits, const int32_t *ids, const uint8_t *json_mask,
                             int B, int T, int V, float grad_scale, float *dlogits, double *loss_sum,
                             int64_t *n_skipped);

#endif
