/* The trainer's data side: the held-out split, the window policy, the seed fallback masks, the epoch
 * order and micro-batches (declared in batch.h; trainer.c drives it). */
#include "kdstep/window.h"

#include "batch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/extract.h"
#include "kdstep/hash.h"
#include "kdstep/targets.h"

int kd_mb_alloc(micro_batch *b, int B, int T, int K) {
    memset(b, 0, sizeof *b);
    b->B = B;
    b->T = T;
    b->K = K;
    size_t N = (size_t)B * T;
    b->ids = kd_calloc(N, sizeof(int32_t));
    b->lengths = kd_calloc((size_t)B, sizeof(int32_t));
    b->loss = kd_calloc(N, 1);
    b->tool = kd_calloc(N, 1);
    b->json = kd_calloc(N, 1);
    b->integ = kd_calloc(N, 1);
    b->ctx = kd_calloc(N, 1);
    b->tk_ids = kd_calloc(N * (size_t)(K > 0 ? K : 1), sizeof(int32_t));
    b->tk_lp = kd_calloc(N * (size_t)(K > 0 ? K : 1), sizeof(float));
    b->tail = kd_calloc(N, sizeof(float));
    b->policy = kd_calloc((size_t)B, 1);
    b->target = kd_calloc(N, sizeof(int32_t));
    b->loss_student = kd_calloc(N, 1);
    b->loss_teacher = kd_calloc(N, 1);
    return (b->ids && b->lengths && b->loss && b->tool && b->json && b->integ && b->ctx && b->tk_ids && b->tk_lp && b->tail &&
            b->policy && b->target && b->loss_student && b->loss_teacher)
               ? 0
               : -1;
}

void kd_mb_free(micro_batch *b) {
    free(b->ids);
    free(b->lengths);
    free(b->loss);
    free(b->tool);
    free(b->json);
    free(b->integ);
    free(b->ctx);
    free(b->tk_ids);
    free(b->tk_lp);
    free(b->tail);
    free(b->policy);
    free(b->target);
    free(b->loss_student);
    free(b->loss_teacher);
    memset(b, 0, sizeof *b);
}

void kd_mb_clear_row(micro_batch *b, int r) {
    size_t T = (size_t)b->T, K = (size_t)(b->K > 0 ? b->K : 1);
    memset(b->ids + r * T, 0, T * sizeof(int32_t));
    memset(b->loss + r * T, 0, T);
    memset(b->tool + r * T, 0, T);
    memset(b->json + r * T, 0, T);
    memset(b->integ + r * T, 0, T);
    memset(b->ctx + r * T, 0, T);
    for (size_t i = r * T * K; i < (r + 1) * T * K; i++) {
        b->tk_ids[i] = -1;
        b->tk_lp[i] = 0.0f;
    }
    for (size_t i = r * T; i < (r + 1) * T; i++) b->tail[i] = -INFINITY;
    memset(b->target + r * T, 0, T * sizeof(int32_t));
    b->n_student -= b->policy[r];
    b->policy[r] = 0;
    b->lengths[r] = 1;
}

/* Window policy: include/kdstep/window.h (full context by default; train.prompt_window = P > 0 keeps
 * the prompt's last P tokens), shared with eval so both show the student the same tokens. */

static uint64_t split_hash(int64_t prompt_id) {
    uint64_t x = (uint64_t)prompt_id ^ 0x6b64737465702d68ULL; /* fixed salt: the split never depends on the seed */
    return kd_hash64(&x, sizeof x);
}

static int is_heldout(int64_t prompt_id, double fraction) {
    if (fraction <= 0) return 0;
    uint64_t h = split_hash(prompt_id) % 1000000ULL;
    return (double)h < fraction * 1e6;
}

/* The text of a sample rebuilt from its tokens' bytes, with each token's byte range: the seed
 * fallback extracts tool calls from it and maps their spans back to tokens exactly. */
static int rebuild_text(const kd_tokenizer *tok, const int32_t *ids, int64_t n, char **text, size_t *len,
                        int32_t (**offs)[2]) {
    size_t cap = 256, u = 0;
    char *s = malloc(cap);
    int32_t(*o)[2] = malloc((size_t)(n > 0 ? n : 1) * sizeof *o);
    if (!s || !o) {
        free(s);
        free(o);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        const char *b = NULL;
        size_t bl = 0;
        if (kd_tokenizer_token_bytes(tok, ids[i], &b, &bl) != 0) bl = 0;
        if (u + bl + 1 > cap) {
            while (u + bl + 1 > cap) cap *= 2;
            char *ns = realloc(s, cap);
            if (!ns) {
                free(s);
                free(o);
                return -1;
            }
            s = ns;
        }
        o[i][0] = (int32_t)u;
        if (bl) memcpy(s + u, b, bl);
        u += bl;
        o[i][1] = (int32_t)u;
    }
    s[u] = '\0';
    *text = s;
    *len = u;
    *offs = o;
    return 0;
}

/* Seed fallback: tool-name and JSON-argument masks (either may be NULL: only *found is wanted) from
 * the calls found in the response text, by the tools layer's own span and mask rule (targets.h). */
static int fallback_masks(const kd_tokenizer *tok, const int32_t *ids, int64_t n, int64_t prompt_len, uint8_t *tool,
                          uint8_t *json, int *found) {
    char *text = NULL;
    size_t len = 0;
    int32_t(*o)[2] = NULL;
    *found = 0;
    if (rebuild_text(tok, ids, n, &text, &len, &o)) return -1;
    size_t start = prompt_len > 0 && prompt_len <= n ? (size_t)o[prompt_len - 1][1] : 0;
    kd_tool_calls calls = {0};
    kd_target_spans spans;
    memset(&spans, 0, sizeof spans);
    kd_error e;
    int rc = 0;
    if (kd_extract_tool_calls(text + start, len - start, NULL, &calls, &e) == KD_OK && calls.count > 0) {
        *found = 1;
        const int32_t(*offs)[2] = (const int32_t(*)[2])o;
        if (kd_targets_add_calls(&spans, &calls, start, &e) ||
            (tool && kd_mask_from_spans(offs, (size_t)n, &spans.tool_name, tool)) ||
            (json && kd_mask_from_spans(offs, (size_t)n, &spans.json, json)))
            rc = -1;
    }
    kd_target_spans_free(&spans);
    kd_tool_calls_free(&calls);
    free(text);
    free(o);
    return rc;
}

/* Read every sample's id, length and prompt length; split; count truncation; find fallback samples. */
int kd_train_data_scan(kd_train_data *d, kd_error *err) {
    int64_t n = kd_dataset_count(d->ds);
    d->train = kd_calloc((size_t)n, sizeof(sample_meta));
    d->held = kd_calloc((size_t)n, sizeof(sample_meta));
    if (!d->train || !d->held) return kd_error_set(err, KD_ERR_NOMEM, "train: out of memory scanning the dataset");
    int ps = d->process_supervision;
    for (int64_t first = 0; first < n; first += 256) {
        int64_t cnt = n - first < 256 ? n - first : 256;
        kd_batch b;
        memset(&b, 0, sizeof b);
        int rc = kd_dataset_read(d->ds, first, cnt, 0, &b, err);
        if (rc) return kd_error_prefix(err, "train: scanning the dataset");
        for (int64_t i = 0; i < cnt; i++) {
            sample_meta sm = {first + i, b.prompt_id[i], b.offsets[i + 1] - b.offsets[i], b.prompt_len[i], 0};
            if (kd_train_window_start(sm.n, sm.prompt_len, d->P, d->T) > 0 ||
                sm.n - kd_train_window_start(sm.n, sm.prompt_len, d->P, d->T) > d->T)
                d->n_truncated++;
            /* Every sample keeps its window (kd_train_window_start);
             * only samples without two tokens are dropped. */
            int keep = sm.n >= 2;
            if (keep && ps) {
                const uint8_t *jm = b.json_mask + b.offsets[i];
                int any = 0;
                for (int64_t t = 0; t < sm.n && !any; t++) any = jm[t];
                if (!any) {
                    int found = 0;
                    if (fallback_masks(d->tok, b.input_ids + b.offsets[i], sm.n, sm.prompt_len, NULL, NULL, &found)) {
                        kd_batch_free(&b);
                        return kd_error_set(err, KD_ERR_NOMEM, "train: out of memory");
                    }
                    if (found) {
                        sm.fallback = 1;
                        d->n_fallback++;
                    }
                }
            }
            if (!keep) {
                d->n_dropped++;
                continue;
            }
            if (is_heldout(sm.prompt_id, d->eval_fraction)) d->held[d->n_held++] = sm;
            else d->train[d->n_train++] = sm;
        }
        kd_batch_free(&b);
    }
    return KD_OK;
}

int64_t kd_train_data_window_len(const kd_train_data *d, const sample_meta *sm) {
    int64_t s0 = kd_train_window_start(sm->n, sm->prompt_len, d->P, d->T);
    return sm->n - s0 < d->T ? sm->n - s0 : d->T;
}

typedef struct len_key {
    int64_t len, slot; /* window length; position in the shuffled order (the tie-break) */
} len_key;

static int by_len_desc(const void *pa, const void *pb) {
    const len_key *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return (a->slot > b->slot) - (a->slot < b->slot);
}

/* Length bucketing (train.length_buckets = N): each chunk of N*G places of the shuffled order is
 * sorted by window length, longest first, and cut into steps of G; the steps of the chunk are then
 * put in a seeded order, so a step's micro-batches hold alike lengths (little padding, and ranks of
 * one step wait little for each other) while long and short steps still alternate. Depends only on
 * (seed, epoch), like the shuffle. */
static int length_sort(kd_train_data *d, int64_t epoch) {
    int64_t W = d->length_buckets * d->G;
    len_key *k = kd_calloc((size_t)W, sizeof *k);
    int64_t *tmp = kd_calloc((size_t)W, sizeof *tmp), *steps = kd_calloc((size_t)d->length_buckets, sizeof *steps);
    if (!k || !tmp || !steps) {
        free(k);
        free(tmp);
        free(steps);
        return -1;
    }
    uint64_t s = (uint64_t)d->seed * 0xA0761D6478BD642FULL ^ ((uint64_t)epoch + 1) * 0xE7037ED1A0B428DBULL;
    for (int64_t c0 = 0; c0 < d->n_train; c0 += W) {
        int64_t n = d->n_train - c0 < W ? d->n_train - c0 : W;
        for (int64_t i = 0; i < n; i++) {
            k[i].len = kd_train_data_window_len(d, &d->train[d->perm[c0 + i]]);
            k[i].slot = c0 + i;
        }
        qsort(k, (size_t)n, sizeof *k, by_len_desc);
        int64_t ns = (n + d->G - 1) / d->G; /* steps in this chunk; the last may be short */
        for (int64_t i = 0; i < ns; i++) steps[i] = i;
        for (int64_t i = ns - 1; i > 0; i--) {
            int64_t j = (int64_t)(kd_splitmix64(&s) % (uint64_t)(i + 1)), t = steps[i];
            steps[i] = steps[j];
            steps[j] = t;
        }
        /* the short step, if any, stays last so every other step holds G whole samples */
        for (int64_t i = 0; i < ns; i++)
            if (n % d->G && steps[i] == ns - 1) {
                steps[i] = steps[ns - 1];
                steps[ns - 1] = ns - 1;
                break;
            }
        int64_t u = 0;
        for (int64_t i = 0; i < ns; i++) {
            int64_t lo = steps[i] * d->G, hi = lo + d->G < n ? lo + d->G : n;
            for (int64_t j = lo; j < hi; j++) tmp[u++] = d->perm[k[j].slot];
        }
        memcpy(d->perm + c0, tmp, (size_t)n * sizeof *tmp);
    }
    free(k);
    free(tmp);
    free(steps);
    return 0;
}

const int64_t *kd_train_data_perm(kd_train_data *d, int64_t epoch) {
    if (d->perm && d->perm_epoch == epoch) return d->perm;
    if (!d->perm) d->perm = kd_calloc((size_t)d->n_train, sizeof(int64_t));
    if (!d->perm) return NULL;
    for (int64_t i = 0; i < d->n_train; i++) d->perm[i] = i;
    uint64_t s = (uint64_t)d->seed * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)epoch + 1) * 0xD1B54A32D192ED03ULL;
    for (int64_t i = d->n_train - 1; i > 0; i--) {
        int64_t j = (int64_t)(kd_splitmix64(&s) % (uint64_t)(i + 1));
        int64_t t = d->perm[i];
        d->perm[i] = d->perm[j];
        d->perm[j] = t;
    }
    if (d->length_buckets > 0 && d->G > 0 && length_sort(d, epoch)) return NULL;
    d->perm_epoch = epoch;
    return d->perm;
}

/* Fill row r of mb with sample sm (its window of at most T tokens). */
/* A student-written row's hard targets: at each token with teacher top-k, the teacher's most likely
 * token there (the top-k column with the largest log-probability and an id in the vocabulary; the
 * first on ties), which differs from the student's own token where the teacher would have written
 * something else. Tokens without teacher top-k keep the student's token. */
static void student_targets(micro_batch *mb, size_t o, int64_t L) {
    int K = mb->K;
    for (int64_t t = 0; t < L; t++) {
        const int32_t *id = mb->tk_ids + (o + (size_t)t) * K;
        const float *lp = mb->tk_lp + (o + (size_t)t) * K;
        int best = -1;
        for (int k = 0; k < K; k++)
            if (id[k] >= 0 && lp[k] == lp[k] && (best < 0 || lp[k] > lp[best])) best = k;
        if (best >= 0) mb->target[o + (size_t)t] = id[best];
    }
}

int kd_train_data_load_row(kd_train_data *d, micro_batch *mb, int r, const sample_meta *sm, kd_error *err) {
    kd_batch b;
    memset(&b, 0, sizeof b);
    int rc = kd_dataset_read(d->ds, sm->index, 1, 0, &b, err);
    if (rc) return rc;
    kd_mb_clear_row(mb, r);
    int64_t n = b.offsets[1];
    int64_t s0 = kd_train_window_start(sm->n, sm->prompt_len, d->P, d->T);
    int64_t L = n - s0 < d->T ? n - s0 : d->T;
    if (L > mb->T) {
        kd_batch_free(&b);
        return kd_error_set(err, KD_ERR_INVALID, "train: sample %lld has a %lld-token window, more than its micro-batch's %d",
                            (long long)sm->index, (long long)L, mb->T);
    }
    size_t o = (size_t)r * mb->T;
    memcpy(mb->ids + o, b.input_ids + s0, (size_t)L * sizeof(int32_t));
    memcpy(mb->loss + o, b.loss_mask + s0, (size_t)L);
    for (int64_t t = 0; t < L; t++) mb->ctx[o + t] = !mb->loss[o + t];
    if (d->process_supervision) {
        memcpy(mb->tool + o, b.tool_name_mask + s0, (size_t)L);
        memcpy(mb->json + o, b.json_mask + s0, (size_t)L);
        memcpy(mb->integ + o, b.integration_mask + s0, (size_t)L);
        if (sm->fallback) {
            uint8_t *tool = kd_calloc((size_t)n, 1), *json = kd_calloc((size_t)n, 1);
            int found = 0;
            if (!tool || !json || fallback_masks(d->tok, b.input_ids, n, sm->prompt_len, tool, json, &found)) {
                free(tool);
                free(json);
                kd_batch_free(&b);
                return kd_error_set(err, KD_ERR_NOMEM, "train: out of memory");
            }
            int any_tool = 0;
            for (int64_t t = 0; t < L; t++) any_tool |= mb->tool[o + t];
            for (int64_t t = 0; t < L; t++) {
                mb->json[o + t] = json[s0 + t] & mb->loss[o + t];
                if (!any_tool) mb->tool[o + t] = tool[s0 + t] & mb->loss[o + t];
            }
            free(tool);
            free(json);
        }
    }
    int K = mb->K;
    if (K > 0 && b.topk == K) {
        memcpy(mb->tk_ids + o * K, b.topk_ids + s0 * K, (size_t)L * K * sizeof(int32_t));
        memcpy(mb->tk_lp + o * K, b.topk_logprobs + s0 * K, (size_t)L * K * sizeof(float));
        memcpy(mb->tail + o, b.tail_logprob + s0, (size_t)L * sizeof(float));
    }
    memcpy(mb->target + o, mb->ids + o, (size_t)L * sizeof(int32_t));
    if (b.policy[0]) {
        mb->policy[r] = 1;
        mb->n_student++;
        if (K > 0 && b.topk == K) student_targets(mb, o, L);
    }
    mb->lengths[r] = (int32_t)L;
    mb->tokens += L;
    kd_batch_free(&b);
    return KD_OK;
}

void kd_train_data_free(kd_train_data *d) {
    free(d->train);
    free(d->held);
    free(d->perm);
    d->train = d->held = NULL;
    d->perm = NULL;
}
