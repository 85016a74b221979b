/* The stub teacher: the top-k log-probabilities of a text's tokens (see stub_internal.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kdstep/hash.h"
#include "kdstep/teacher.h"
#include "stub_internal.h"

/* ---- logprobs ---- */

static double jitter(uint64_t seed, size_t pos, int32_t id) {
    uint64_t h = seed ^ (0x9e3779b97f4a7c15ULL * (pos + 1)) ^ ((uint64_t)(uint32_t)id << 17);
    return (kd_splitmix64(&h) >> 11) * (1.0 / 9007199254740992.0);
}

typedef struct cand {
    int32_t id;
    double logit;
} cand;

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

/* Top-k for one position: the written token, the stub's own token `pref` when it differs (>= 0; -1:
 * none) at pref_logit, plus `alts` at descending logits from alt_base. The rest of the vocabulary has
 * logit 0. Softmax at temperature T over all V. */
void stub_position_topk(const kd_stub_teacher *s, kd_teacher_logprobs *lp, int row, int32_t actual, double actual_logit,
                          int32_t pref, double pref_logit, const int32_t *alts, int nalts, double alt_base, uint64_t seed,
                          size_t pos) {
    double T = s->opt.temperature > 0 ? s->opt.temperature : 1.0;
    int k = lp->k;
    cand c[96];
    int nc = 0;
    c[nc++] = (cand){actual, actual_logit + 0.5 * jitter(seed, pos, actual)};
    if (pref >= 0 && pref != actual && pref < s->vocab) c[nc++] = (cand){pref, pref_logit + 0.5 * jitter(seed, pos, pref)};
    for (int i = 0; i < nalts && nc < 96; i++) {
        int dup = 0;
        for (int j = 0; j < nc && !dup; j++) dup = c[j].id == alts[i];
        if (dup || alts[i] < 0 || alts[i] >= s->vocab) continue;
        c[nc++] = (cand){alts[i], alt_base - 0.35 * i + 0.5 * jitter(seed, pos, alts[i])};
    }
    qsort(c, (size_t)nc, sizeof *c, cmp_cand);
    double nbg = (double)s->vocab - nc; /* background tokens, logit 0 */
    double mx = c[0].logit / T > 0 ? c[0].logit / T : 0;
    double z = nbg * exp(-mx);
    for (int i = 0; i < nc; i++) z += exp(c[i].logit / T - mx);
    double logz = mx + log(z);
    lp->token_logprobs[row] = (float)(actual_logit / T - logz);
    for (int i = 0; i < nc; i++)
        if (c[i].id == actual) lp->token_logprobs[row] = (float)(c[i].logit / T - logz);
    int j = 0;
    for (; j < k && j < nc; j++) {
        lp->topk_ids[(size_t)row * k + j] = c[j].id;
        lp->topk_logprobs[(size_t)row * k + j] = (float)(c[j].logit / T - logz);
        lp->topk_tokens[(size_t)row * k + j] = stub_token_text(s, c[j].id);
    }
    /* pad with background tokens (distinct ids not among the candidates) */
    int used_bg = 0;
    uint64_t h = seed ^ (pos * 0x2545F4914F6CDD1DULL);
    for (; j < k && nbg - used_bg >= 1; j++) {
        int32_t id;
        int clash;
        do {
            id = (int32_t)(kd_splitmix64(&h) % (uint64_t)s->vocab);
            clash = 0;
            for (int q = 0; q < nc && !clash; q++) clash = c[q].id == id;
            for (int q = 0; q < j && !clash; q++) clash = lp->topk_ids[(size_t)row * k + q] == id;
        } while (clash);
        lp->topk_ids[(size_t)row * k + j] = id;
        lp->topk_logprobs[(size_t)row * k + j] = (float)(0.0 - logz);
        lp->topk_tokens[(size_t)row * k + j] = stub_token_text(s, id);
        used_bg++;
    }
    /* tail: candidates beyond k plus the remaining background, in log space */
    double tz = (nbg - used_bg) * exp(-mx);
    for (int i = k; i < nc; i++) tz += exp(c[i].logit / T - mx);
    lp->tail_logprob[row] = tz > 0 ? (float)(mx + log(tz) - logz) : -INFINITY;
}

static int name_alternatives(const kd_stub_teacher *s, const tool_view *tv, int n, int actual_tool, size_t tok_index,
                             int32_t *out, int cap) {
    (void)s;
    int m = 0;
    for (int i = 0; i < n && m < cap; i++) {
        if (i == actual_tool || tv[i].n_name_ids == 0) continue;
        size_t j = tok_index < (size_t)tv[i].n_name_ids ? tok_index : (size_t)tv[i].n_name_ids - 1;
        m = add_unique(out, m, cap, tv[i].name_ids[j]);
    }
    return m;
}

int stub_span_alternatives(const kd_stub_teacher *s, const tool_view *tv, int ntools, int kind, int tool, size_t name_index,
                           double L, int32_t alts[48], double *base) {
    if (kind == SPAN_NAME) {
        *base = L + 3.5;
        return name_alternatives(s, tv, ntools, tool, name_index, alts, 48);
    }
    const int32_t *from = kind == SPAN_ARGS ? s->json_alts : s->text_alts;
    int n = kind == SPAN_ARGS ? s->n_json_alts : s->n_text_alts;
    *base = L + (kind == SPAN_ARGS ? 2.0 : 1.0);
    memcpy(alts, from, sizeof(int32_t) * (size_t)n);
    return n;
}

int stub_build_logprobs(const kd_stub_teacher *s, const char *text, size_t len, size_t response_start,
                          const kspan *spans, int nspans, const tool_view *tv, int ntools, int k, uint64_t seed,
                          int keep_prompt, kd_teacher_logprobs *lp, int64_t *ntokens, kd_error *err) {
    kd_encoding enc = {0};
    int rc = stub_encode(s, text, len, &enc, err);
    if (rc) return rc;
    /* tokens that begin in the response part */
    size_t first = 0;
    while (first < enc.count && (size_t)enc.offsets[first][0] < response_start) first++;
    int n = (int)(enc.count - first);
    *ntokens = n;
    if (k <= 0) {
        stub_encoding_free(s, &enc);
        return KD_OK;
    }
    if (kd_teacher_logprobs_alloc(lp, (int)enc.count, k)) {
        stub_encoding_free(s, &enc);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory for logprobs");
    }
    double L = log((double)s->vocab);
    for (size_t t = 0; t < enc.count; t++) {
        int row = (int)t;
        int32_t id = enc.ids[t];
        lp->token_ids[row] = id;
        lp->tokens[row] = stub_token_text(s, id);
        if (t < first) { /* prompt: likely, no boosted alternatives */
            stub_position_topk(s, lp, row, id, L + 1.0, -1, 0, NULL, 0, 0, seed, t);
            continue;
        }
        size_t off = (size_t)enc.offsets[t][0] - response_start;
        int kind = SPAN_TEXT, tool = -1;
        size_t span_b = 0;
        for (int i = 0; i < nspans; i++)
            if (off >= spans[i].b && off < spans[i].e) {
                kind = spans[i].kind;
                tool = spans[i].tool;
                span_b = spans[i].b;
            }
        size_t idx = 0; /* which token of the name this is */
        if (kind == SPAN_NAME)
            for (size_t q = t; q > first && (size_t)enc.offsets[q - 1][0] - response_start >= span_b; q--) idx++;
        int32_t alts[48];
        double base;
        int na = stub_span_alternatives(s, tv, ntools, kind, tool, idx, L, alts, &base);
        stub_position_topk(s, lp, row, id, L + 6.0, -1, 0, alts, na, base, seed, t);
    }
    /* keep only the response rows */
    if (first > 0 && !keep_prompt) {
        kd_teacher_logprobs r;
        if (kd_teacher_logprobs_alloc(&r, n, k)) {
            stub_encoding_free(s, &enc);
            kd_teacher_logprobs_free(lp);
            return kd_error_set(err, KD_ERR_NOMEM, "out of memory for logprobs");
        }
        for (int i = 0; i < n; i++) {
            size_t from = first + (size_t)i;
            r.token_ids[i] = lp->token_ids[from];
            r.tokens[i] = lp->tokens[from];
            lp->tokens[from] = NULL;
            r.token_logprobs[i] = lp->token_logprobs[from];
            r.tail_logprob[i] = lp->tail_logprob[from];
            for (int j = 0; j < k; j++) {
                r.topk_ids[(size_t)i * k + j] = lp->topk_ids[from * k + j];
                r.topk_logprobs[(size_t)i * k + j] = lp->topk_logprobs[from * k + j];
                r.topk_tokens[(size_t)i * k + j] = lp->topk_tokens[from * k + j];
                lp->topk_tokens[from * k + j] = NULL;
            }
        }
        kd_teacher_logprobs_free(lp);
        *lp = r;
    }
    stub_encoding_free(s, &enc);
    return KD_OK;
}
