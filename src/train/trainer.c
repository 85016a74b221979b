/* The MPI data-parallel trainer (see include/kdstep/trainer.h and docs/training.md).
 *
 * Data order: the training split (samples whose prompt-id hash is not held out, and that keep at
 * least one response token within seq_len) is shuffled per epoch with a permutation that depends
 * only on (train.seed, epoch), and the epochs are concatenated into one stream. Optimizer step s
 * consumes stream positions [s*G, (s+1)*G), G = world * grad_accum * micro_batch; micro-batch a of
 * rank r takes positions s*G + (a*world + r)*B + [0, B). So `-np 2`, accumulation 1 sees exactly the
 * samples of `-np 1`, accumulation 2, and the data cursor is just the step number.
 */
#include "kdstep/h5data.h"

#include "kdstep/trainer.h"

#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdstep/checkpoint.h"
#include "kdstep/extract.h"
#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/jsonprefix.h"
#include "kdstep/log.h"
#include "kdstep/loss.h"
#include "kdstep/model.h"
#include "kdstep/mpiutil.h"
#include "kdstep/optim.h"
#include "kdstep/plot.h"
#include "kdstep/progress.h"
#include "kdstep/runtime.h"
#include "kdstep/tokenizer.h"

#define EVAL_MAX_SAMPLES 512
#define LAYER_TENSORS 11

/* ---------------------------------------------------------------- signals */

static volatile sig_atomic_t g_stop_signal = 0;

static void on_stop_signal(int sig) { g_stop_signal = sig; }

void kd_train_request_stop(int sig) { g_stop_signal = sig; }

/* ---------------------------------------------------------------- data */

typedef struct sample_meta {
    int64_t index;     /* in the dataset */
    int64_t prompt_id;
    int64_t n;         /* tokens */
    int64_t prompt_len;
    int fallback;      /* no json_mask in the dataset but tool calls found in the text */
} sample_meta;

/* One micro-batch, padded to [B, T]. */
typedef struct micro_batch {
    int B, T, K;
    int32_t *ids, *lengths;
    uint8_t *loss, *tool, *json, *integ;
    int32_t *tk_ids;
    float *tk_lp, *tail;
    int64_t tokens; /* real tokens */
} micro_batch;

static int mb_alloc(micro_batch *b, int B, int T, int K) {
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
    b->tk_ids = kd_calloc(N * (size_t)(K > 0 ? K : 1), sizeof(int32_t));
    b->tk_lp = kd_calloc(N * (size_t)(K > 0 ? K : 1), sizeof(float));
    b->tail = kd_calloc(N, sizeof(float));
    return (b->ids && b->lengths && b->loss && b->tool && b->json && b->integ && b->tk_ids && b->tk_lp && b->tail) ? 0 : -1;
}

static void mb_free(micro_batch *b) {
    free(b->ids);
    free(b->lengths);
    free(b->loss);
    free(b->tool);
    free(b->json);
    free(b->integ);
    free(b->tk_ids);
    free(b->tk_lp);
    free(b->tail);
    memset(b, 0, sizeof *b);
}

static void mb_clear_row(micro_batch *b, int r) {
    size_t T = (size_t)b->T, K = (size_t)(b->K > 0 ? b->K : 1);
    memset(b->ids + r * T, 0, T * sizeof(int32_t));
    memset(b->loss + r * T, 0, T);
    memset(b->tool + r * T, 0, T);
    memset(b->json + r * T, 0, T);
    memset(b->integ + r * T, 0, T);
    for (size_t i = r * T * K; i < (r + 1) * T * K; i++) {
        b->tk_ids[i] = -1;
        b->tk_lp[i] = 0.0f;
    }
    for (size_t i = r * T; i < (r + 1) * T; i++) b->tail[i] = -INFINITY;
    b->lengths[r] = 1;
}

typedef struct trainer {
    const kd_config *cfg;
    MPI_Comm comm;
    int rank, world;
    kd_tokenizer *tok;
    kd_dataset *ds;
    int K;
    kd_model *m;
    int B, T, V;
    int64_t P; /* prompt window (window_start) */
    sample_meta *train, *held;
    int64_t n_train, n_held;
    int64_t n_truncated, n_dropped, n_fallback;
    kd_jsongrammar *grammar;
    kd_kd_opts kdo;
    /* per-token byte strings for the seed fallback */
    /* gradient buckets */
    MPI_Request *reqs;
    int n_reqs, max_reqs;
    int hook_active;
    size_t pending_lo, pending_hi; /* float range of layers finished but not yet sent */
    size_t bucket_floats;
    double comm_s;
    float *dl; /* [B*T, V] dlogits */
    /* epoch permutation cache */
    int64_t perm_epoch;
    int64_t *perm;
    double peak_flops; /* per rank, measured sgemm */
} trainer;

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

/* Seed fallback: tool-name and JSON-argument masks from the calls found in the response text. */
static int fallback_masks(const kd_tokenizer *tok, const int32_t *ids, int64_t n, int64_t prompt_len, uint8_t *tool,
                          uint8_t *json, int *found) {
    char *text = NULL;
    size_t len = 0;
    int32_t(*o)[2] = NULL;
    *found = 0;
    if (rebuild_text(tok, ids, n, &text, &len, &o)) return -1;
    size_t start = prompt_len > 0 && prompt_len <= n ? (size_t)o[prompt_len - 1][1] : 0;
    kd_tool_calls calls = {0};
    kd_error e;
    if (kd_extract_tool_calls(text + start, len - start, NULL, &calls, &e) == KD_OK) {
        for (size_t c = 0; c < calls.count; c++) {
            const kd_tool_call *tc = &calls.v[c];
            size_t ns = tc->name.start + start, ne = tc->name.end + start;
            size_t as = tc->arguments.start + start, ae = tc->arguments.end + start;
            for (int64_t i = prompt_len; i < n; i++) {
                size_t a = (size_t)o[i][0], b = (size_t)o[i][1];
                if (a < b && a < ne && ns < b && tool) tool[i] = 1;
                if (a < b && a < ae && as < b && json) json[i] = 1;
            }
            *found = 1;
        }
    }
    kd_tool_calls_free(&calls);
    free(text);
    free(o);
    return 0;
}

static int64_t window_start(int64_t prompt_len, int64_t P);

/* Read every sample's id, length and prompt length; split; count truncation; find fallback samples. */
static int scan_dataset(trainer *tr, kd_error *err) {
    int64_t n = kd_dataset_count(tr->ds);
    const kd_config *cfg = tr->cfg;
    tr->train = kd_calloc((size_t)n, sizeof(sample_meta));
    tr->held = kd_calloc((size_t)n, sizeof(sample_meta));
    if (!tr->train || !tr->held) return kd_error_set(err, KD_ERR_NOMEM, "train: out of memory scanning the dataset");
    int ps = cfg->process_supervision.enabled;
    for (int64_t first = 0; first < n; first += 256) {
        int64_t cnt = n - first < 256 ? n - first : 256;
        kd_batch b;
        memset(&b, 0, sizeof b);
        int rc = kd_dataset_read(tr->ds, first, cnt, 0, &b, err);
        if (rc) return kd_error_prefix(err, "train: scanning the dataset");
        for (int64_t i = 0; i < cnt; i++) {
            sample_meta sm = {first + i, b.prompt_id[i], b.offsets[i + 1] - b.offsets[i], b.prompt_len[i], 0};
            if (sm.prompt_len > tr->P || sm.n - window_start(sm.prompt_len, tr->P) > tr->T) tr->n_truncated++;
            /* Every sample keeps its window (window_start): the prompt's last P tokens and the answer;
             * only samples without two tokens are dropped. */
            int keep = sm.n >= 2;
            if (keep && ps) {
                const uint8_t *jm = b.json_mask + b.offsets[i];
                int any = 0;
                for (int64_t t = 0; t < sm.n && !any; t++) any = jm[t];
                if (!any) {
                    int found = 0;
                    if (fallback_masks(tr->tok, b.input_ids + b.offsets[i], sm.n, sm.prompt_len, NULL, NULL, &found)) {
                        kd_batch_free(&b);
                        return kd_error_set(err, KD_ERR_NOMEM, "train: out of memory");
                    }
                    if (found) {
                        sm.fallback = 1;
                        tr->n_fallback++;
                    }
                }
            }
            if (!keep) {
                tr->n_dropped++;
                continue;
            }
            if (is_heldout(sm.prompt_id, cfg->train.eval_fraction)) tr->held[tr->n_held++] = sm;
            else tr->train[tr->n_train++] = sm;
        }
        kd_batch_free(&b);
    }
    return KD_OK;
}

static int64_t *epoch_perm(trainer *tr, int64_t epoch) {
    if (tr->perm && tr->perm_epoch == epoch) return tr->perm;
    if (!tr->perm) tr->perm = kd_calloc((size_t)tr->n_train, sizeof(int64_t));
    if (!tr->perm) return NULL;
    for (int64_t i = 0; i < tr->n_train; i++) tr->perm[i] = i;
    uint64_t s = (uint64_t)tr->cfg->train.seed * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)epoch + 1) * 0xD1B54A32D192ED03ULL;
    for (int64_t i = tr->n_train - 1; i > 0; i--) {
        int64_t j = (int64_t)(kd_splitmix64(&s) % (uint64_t)(i + 1));
        int64_t t = tr->perm[i];
        tr->perm[i] = tr->perm[j];
        tr->perm[j] = t;
    }
    tr->perm_epoch = epoch;
    return tr->perm;
}

/* Window policy: the student sees at most P = train.prompt_window (default seq_len / 2) tokens of a
 * prompt, its last ones, then the answer, up to seq_len tokens in all. Eval shows prompts the same
 * way (kd_eval_run keeps their last P tokens), so the answer starts at the same position with the same
 * context in training and in use. The head of a long prompt (the tools block of the system turn) is
 * what goes; an answer longer than seq_len - P loses its end. */
static int64_t window_start(int64_t prompt_len, int64_t P) { return prompt_len > P ? prompt_len - P : 0; }

/* Fill row r of mb with sample sm (its window of at most T tokens). */
static int load_row(trainer *tr, micro_batch *mb, int r, const sample_meta *sm, kd_error *err) {
    kd_batch b;
    memset(&b, 0, sizeof b);
    int rc = kd_dataset_read(tr->ds, sm->index, 1, 0, &b, err);
    if (rc) return rc;
    mb_clear_row(mb, r);
    int64_t n = b.offsets[1];
    int64_t s0 = window_start(sm->prompt_len, tr->P);
    int64_t L = n - s0 < mb->T ? n - s0 : mb->T;
    size_t o = (size_t)r * mb->T;
    memcpy(mb->ids + o, b.input_ids + s0, (size_t)L * sizeof(int32_t));
    memcpy(mb->loss + o, b.loss_mask + s0, (size_t)L);
    if (tr->cfg->process_supervision.enabled) {
        memcpy(mb->tool + o, b.tool_name_mask + s0, (size_t)L);
        memcpy(mb->json + o, b.json_mask + s0, (size_t)L);
        memcpy(mb->integ + o, b.integration_mask + s0, (size_t)L);
        if (sm->fallback) {
            uint8_t *tool = kd_calloc((size_t)n, 1), *json = kd_calloc((size_t)n, 1);
            int found = 0;
            if (!tool || !json || fallback_masks(tr->tok, b.input_ids, n, sm->prompt_len, tool, json, &found)) {
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
    mb->lengths[r] = (int32_t)L;
    mb->tokens += L;
    kd_batch_free(&b);
    return KD_OK;
}

/* ---------------------------------------------------------------- gradient buckets */

static size_t layer_lo(const kd_model *m, int l) { return m->tensors[1 + LAYER_TENSORS * l].offset; }
static size_t layer_hi(const kd_model *m, int l) {
    const kd_model_tensor *t = &m->tensors[1 + LAYER_TENSORS * l + LAYER_TENSORS - 1];
    return t->offset + t->numel;
}

static void start_allreduce(trainer *tr, size_t lo, size_t hi) {
    while (hi > lo) {
        size_t n = hi - lo;
        if (n > (size_t)1 << 30) n = (size_t)1 << 30; /* MPI counts are int */
        if (tr->n_reqs == tr->max_reqs) {
            MPI_Waitall(tr->n_reqs, tr->reqs, MPI_STATUSES_IGNORE);
            tr->n_reqs = 0;
        }
        MPI_Iallreduce(MPI_IN_PLACE, tr->m->grads + lo, (int)n, MPI_FLOAT, MPI_SUM, tr->comm, &tr->reqs[tr->n_reqs++]);
        lo += n;
    }
}

static void on_layer_grads(void *ctx, int l) {
    trainer *tr = ctx;
    if (!tr->hook_active) return;
    double t0 = kd_now_s();
    /* layers finish L-1 .. 0 and sit contiguously in the buffer, so a bucket is [lo of the last
     * finished layer, hi of the first layer not yet sent) */
    if (tr->pending_hi == 0) tr->pending_hi = layer_hi(tr->m, l);
    tr->pending_lo = layer_lo(tr->m, l);
    if (tr->pending_hi - tr->pending_lo >= tr->bucket_floats || l == 0) {
        start_allreduce(tr, tr->pending_lo, tr->pending_hi);
        tr->pending_hi = 0;
    }
    /* let MPI progress the buckets already in flight while backward goes on */
    if (tr->n_reqs) {
        int done = 0;
        MPI_Testall(tr->n_reqs, tr->reqs, &done, MPI_STATUSES_IGNORE);
        if (done) tr->n_reqs = 0;
    }
    tr->comm_s += kd_now_s() - t0;
}

/* After backward: the embedding and the final norm / lm_head, then wait for everything. */
static void finish_allreduce(trainer *tr) {
    double t0 = kd_now_s();
    kd_model *m = tr->m;
    int L = m->cfg.num_layers;
    if (tr->pending_hi) start_allreduce(tr, tr->pending_lo, tr->pending_hi);
    tr->pending_hi = 0;
    start_allreduce(tr, 0, layer_lo(m, 0));
    start_allreduce(tr, layer_hi(m, L - 1), m->n_params);
    MPI_Waitall(tr->n_reqs, tr->reqs, MPI_STATUSES_IGNORE);
    tr->n_reqs = 0;
    tr->comm_s += kd_now_s() - t0;
}

/* ---------------------------------------------------------------- losses */

enum { T_KD, T_CE, T_TOOL, T_JSON_CE, T_GRAMMAR, T_INTEG, T_COUNT };
static const char *TERM_NAMES[T_COUNT] = {"kd", "ce", "tool", "json_ce", "json_grammar", "integration"};

typedef struct term_cfg {
    double weight[T_COUNT];
    int on[T_COUNT];
} term_cfg;

static void terms_from_config(const kd_config *cfg, term_cfg *tc) {
    memset(tc, 0, sizeof *tc);
    int ps = cfg->process_supervision.enabled;
    tc->weight[T_KD] = cfg->kd.weight;
    tc->weight[T_CE] = 1.0;
    tc->weight[T_TOOL] = cfg->process_supervision.loss_tool_select_weight;
    tc->weight[T_JSON_CE] = cfg->process_supervision.loss_json_validity_weight;
    tc->weight[T_GRAMMAR] = cfg->process_supervision.loss_json_validity_weight;
    tc->weight[T_INTEG] = cfg->process_supervision.loss_integration_weight;
    tc->on[T_KD] = cfg->kd.weight > 0;
    tc->on[T_CE] = 1;
    tc->on[T_TOOL] = ps && tc->weight[T_TOOL] > 0;
    tc->on[T_JSON_CE] = ps && cfg->process_supervision.json_ce && tc->weight[T_JSON_CE] > 0;
    tc->on[T_GRAMMAR] = ps && cfg->process_supervision.json_grammar && tc->weight[T_GRAMMAR] > 0;
    tc->on[T_INTEG] = ps && tc->weight[T_INTEG] > 0;
}

static const uint8_t *term_mask(const micro_batch *b, int t) {
    switch (t) {
    case T_KD:
    case T_CE: return b->loss;
    case T_TOOL: return b->tool;
    case T_JSON_CE:
    case T_GRAMMAR: return b->json;
    default: return b->integ;
    }
}

/* Adds every enabled term's sum into sums[] and its gradient (weight / global count) into dl. */
static void micro_losses(trainer *tr, const term_cfg *tc, const micro_batch *b, const float *logits,
                         const int64_t *gcount, float *dl, double *sums, double *grammar_s) {
    int B = b->B, T = b->T, V = tr->V;
    for (int t = 0; t < T_COUNT; t++) {
        if (!tc->on[t] || gcount[t] == 0) continue;
        float gs = dl ? (float)(tc->weight[t] / (double)gcount[t]) : 0.0f;
        double s = 0.0;
        const uint8_t *mask = term_mask(b, t);
        switch (t) {
        case T_KD: {
            kd_teacher_topk tk = {b->K, b->tk_ids, b->tk_lp, b->tail, NULL};
            kd_loss_kd(logits, b->ids, mask, B, T, V, &tk, &tr->kdo, gs, dl, &s, NULL);
            break;
        }
        case T_GRAMMAR: {
            double t0 = kd_now_s();
            kd_loss_json_grammar(tr->grammar, logits, b->ids, mask, B, T, V, gs, dl, &s, NULL);
            if (grammar_s) *grammar_s += kd_now_s() - t0;
            break;
        }
        default: kd_loss_ce(logits, b->ids, mask, B, T, V, gs, dl, &s); break;
        }
        sums[t] += s;
    }
}

static void micro_counts(const term_cfg *tc, const micro_batch *b, int64_t *cnt) {
    for (int t = 0; t < T_COUNT; t++)
        if (tc->on[t]) cnt[t] += kd_loss_count(term_mask(b, t), b->B, b->T);
}

static double combine(const term_cfg *tc, const double *sums, const int64_t *cnt, double *terms) {
    double loss = 0.0;
    for (int t = 0; t < T_COUNT; t++) {
        terms[t] = (tc->on[t] && cnt[t] > 0) ? sums[t] / (double)cnt[t] : 0.0;
        if (tc->on[t]) loss += tc->weight[t] * terms[t];
    }
    return loss;
}

/* ---------------------------------------------------------------- eval */

static int evaluate(trainer *tr, const term_cfg *tc, micro_batch *mb, double *loss, double *acc, kd_error *err) {
    int B = tr->B, T = tr->T, V = tr->V;
    int64_t n = tr->n_held < EVAL_MAX_SAMPLES ? tr->n_held : EVAL_MAX_SAMPLES;
    /* rank r takes held-out samples r, r + world, ...; batches are padded with empty rows */
    int64_t mine = n > tr->rank ? (n - tr->rank + tr->world - 1) / tr->world : 0;
    int64_t max_mine = (n + tr->world - 1) / tr->world;
    int64_t nb = (max_mine + B - 1) / B;
    double sums[T_COUNT] = {0};
    int64_t cnt[T_COUNT] = {0};
    int64_t hit_total[2] = {0, 0};
    for (int64_t bi = 0; bi < nb; bi++) {
        mb->tokens = 0;
        int any = 0;
        for (int r = 0; r < B; r++) {
            int64_t k = bi * B + r;
            if (k < mine) {
                int rc = load_row(tr, mb, r, &tr->held[tr->rank + k * tr->world], err);
                if (rc) return rc;
                any = 1;
            } else mb_clear_row(mb, r);
        }
        if (!any) continue;
        int rc = kd_model_forward(tr->m, mb->ids, mb->lengths, err);
        if (rc) return rc;
        micro_counts(tc, mb, cnt);
        int64_t ones[T_COUNT];
        for (int t = 0; t < T_COUNT; t++) ones[t] = 1; /* forward only: the count normalizes later */
        micro_losses(tr, tc, mb, tr->m->logits, ones, NULL, sums, NULL);
        const float *lg = tr->m->logits;
        for (int r = 0; r < B; r++)
            for (int t = 1; t < mb->lengths[r]; t++) {
                size_t j = (size_t)r * T + t;
                if (!mb->tool[j]) continue;
                const float *row = lg + (j - 1) * (size_t)V;
                int best = 0;
                for (int v = 1; v < V; v++)
                    if (row[v] > row[best]) best = v;
                hit_total[0] += best == mb->ids[j];
                hit_total[1]++;
            }
    }
    MPI_Allreduce(MPI_IN_PLACE, sums, T_COUNT, MPI_DOUBLE, MPI_SUM, tr->comm);
    MPI_Allreduce(MPI_IN_PLACE, cnt, T_COUNT, MPI_INT64_T, MPI_SUM, tr->comm);
    MPI_Allreduce(MPI_IN_PLACE, hit_total, 2, MPI_INT64_T, MPI_SUM, tr->comm);
    double terms[T_COUNT];
    *loss = combine(tc, sums, cnt, terms);
    *acc = hit_total[1] ? (double)hit_total[0] / (double)hit_total[1] : NAN;
    return KD_OK;
}

/* ---------------------------------------------------------------- set-up helpers */

static double measure_sgemm_flops(void) {
    int n = 384;
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return 0;
    }
    for (int i = 0; i < n * n; i++) {
        a[i] = (float)(i % 13) * 0.01f;
        b[i] = (float)(i % 7) * 0.01f;
    }
    double best = 1e30;
    for (int r = 0; r < 4; r++) {
        double t0 = kd_now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = kd_now_s() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * (double)n / best;
}

static int setup_model(trainer *tr, kd_error *err) {
    const kd_config *cfg = tr->cfg;
    kd_model_config mc;
    int rc;
    int pretrained = strcmp(cfg->model.init, "pretrained") == 0;
    if (!pretrained && strcmp(cfg->model.init, "random") != 0)
        return kd_error_set(err, KD_ERR_INVALID, "model.init is '%s'; use random or pretrained", cfg->model.init);
    if (cfg->model.path[0]) {
        char p[KD_CFG_PATH + 32];
        snprintf(p, sizeof p, "%s/config.json", cfg->model.path);
        if ((rc = kd_model_config_load(p, &mc, err))) return rc;
    } else {
        if (pretrained)
            return kd_error_set(err, KD_ERR_INVALID, "model.init is pretrained but model.path is empty; set model.path to a HF folder");
        if ((rc = kd_model_config_preset(cfg->model.preset, &mc, err))) return rc;
    }
    int32_t tv = kd_tokenizer_vocab_size(tr->tok);
    if (cfg->model.path[0] && pretrained) {
        if (mc.vocab_size < tv)
            return kd_error_set(err, KD_ERR_INVALID, "model %s has vocab_size %d but the tokenizer has %d ids", cfg->model.path,
                                mc.vocab_size, tv);
    } else {
        mc.vocab_size = tv; /* a random student is sized to its tokenizer */
    }
    if (tr->T > mc.max_position_embeddings)
        return kd_error_set(err, KD_ERR_INVALID, "train.seq_len %d exceeds the model's max_position_embeddings %d", tr->T,
                            mc.max_position_embeddings);
    if ((rc = kd_model_new(&mc, tr->B, tr->T, &tr->m, err))) return rc;
    if (pretrained) {
        char p[KD_CFG_PATH + 32];
        snprintf(p, sizeof p, "%s/model.safetensors", cfg->model.path);
        if ((rc = kd_model_load_safetensors(tr->m, p, err))) return rc;
    } else {
        kd_model_init_random(tr->m, (uint64_t)cfg->train.seed);
    }
    tr->V = tr->m->cfg.vocab_size;
    if (tr->m->n_tensors < 2 + LAYER_TENSORS * tr->m->cfg.num_layers)
        return kd_error_set(err, KD_ERR_INVALID, "train: unexpected model tensor layout");
    tr->m->on_layer_grads = on_layer_grads;
    tr->m->on_layer_grads_ctx = tr;
    return KD_OK;
}

static int setup_grammar(trainer *tr, kd_error *err) {
    int V = tr->V;
    const char **bytes = kd_calloc((size_t)V, sizeof(char *));
    size_t *lens = kd_calloc((size_t)V, sizeof(size_t));
    if (!bytes || !lens) {
        free(bytes);
        free(lens);
        return kd_error_set(err, KD_ERR_NOMEM, "train: out of memory");
    }
    /* ids without a string (unused or padding ids) get a byte that is never valid JSON, so any mass
     * on them counts as invalid */
    static const char never[] = "\xff";
    for (int v = 0; v < V; v++) {
        if (kd_tokenizer_token_bytes(tr->tok, v, &bytes[v], &lens[v]) != 0) {
            bytes[v] = never;
            lens[v] = 1;
        }
    }
    int rc = kd_jsongrammar_new(bytes, lens, V, 0, &tr->grammar, err);
    free(bytes);
    free(lens);
    return rc;
}

static int write_checkpoint(trainer *tr, const char *out_dir, int64_t step, int64_t adam_t, int64_t bad,
                            int64_t total, const char *cfg_sha, int final, kd_error *err) {
    int rc = KD_OK;
    if (tr->rank == 0) {
        kd_train_state st = {0};
        st.step = step;
        st.adam_t = adam_t;
        st.bad_steps = bad;
        st.total_steps = total;
        st.seed = tr->cfg->train.seed;
        st.world = tr->world;
        st.micro_batch = tr->B;
        st.grad_accum = tr->cfg->train.grad_accum;
        st.seq_len = tr->T;
        st.data_cursor = step * (int64_t)tr->world * tr->cfg->train.grad_accum * tr->B;
        snprintf(st.config_sha256, sizeof st.config_sha256, "%s", cfg_sha);
        char dir[4096], name[64];
        snprintf(name, sizeof name, "step-%06lld", (long long)step);
        if (final) snprintf(dir, sizeof dir, "%s/final", out_dir);
        else snprintf(dir, sizeof dir, "%s/checkpoints/%s", out_dir, name);
        rc = kd_checkpoint_write(dir, tr->m, kd_tokenizer_path(tr->tok), &st, err);
        if (!rc && !final) rc = kd_checkpoint_set_latest(out_dir, name, err);
        if (!rc) KD_INFO("train: wrote %s", dir);
        /* Test hook for crash tests: KD_DEBUG_KILL_AFTER_CHECKPOINT=N raises SIGKILL on rank 0 right
         * after checkpoint N is committed (`latest` names it), before anything else of the run. */
        const char *kill_at = getenv("KD_DEBUG_KILL_AFTER_CHECKPOINT");
        if (!rc && !final && kill_at && *kill_at && atoll(kill_at) == (long long)step) raise(SIGKILL);
    }
    return kd_mpi_agree(tr->comm, rc, err);
}

/* Keep the lines of metrics.jsonl with step <= `step` (a resumed run rewrites what follows). */
static int trim_metrics(const char *path, int64_t step, kd_error *err) {
    if (!kd_path_exists(path)) return KD_OK;
    char *data = NULL;
    size_t len = 0;
    int rc = kd_read_file(path, &data, &len, err);
    if (rc) return rc;
    size_t keep = 0, lineno = 0;
    char *p = data;
    while (p < data + len) {
        char *nl = memchr(p, '\n', (size_t)(data + len - p));
        lineno++;
        if (!nl) { /* a torn last line (the run stopped while writing it): dropped, and said so */
            char head[48] = "";
            long long ts = -1;
            memcpy(head, p, (size_t)(data + len - p) < sizeof head - 1 ? (size_t)(data + len - p) : sizeof head - 1);
            if (sscanf(head, "{\"step\":%lld", &ts) != 1) ts = -1;
            KD_WARN("%s:%zu: the last line is cut short (%zu bytes; the run stopped while writing it): dropped; %s", path,
                    lineno, (size_t)(data + len - p),
                    ts >= 0 && ts <= step ? "that step's metrics are lost (its checkpoint was committed)"
                                          : "the steps after the checkpoint are trained again and get their lines then");
            break;
        }
        json_t *js = json_loadb(p, (size_t)(nl - p), 0, NULL);
        json_t *sv = js ? json_object_get(js, "step") : NULL;
        int ok = json_is_integer(sv) && json_integer_value(sv) <= step;
        json_decref(js);
        if (!ok) {
            if (!json_is_integer(sv))
                KD_WARN("%s:%zu: not a metrics line (damaged?); it and the lines after it are dropped, steps after %lld are "
                        "trained again", path, lineno, (long long)step);
            break;
        }
        keep = (size_t)(nl + 1 - data);
        p = nl + 1;
    }
    rc = kd_write_file_atomic(path, data, keep, err);
    free(data);
    return rc;
}

/* ---------------------------------------------------------------- the run */

static void trainer_free(trainer *tr) {
    kd_model_free(tr->m);
    kd_jsongrammar_free(tr->grammar);
    if (tr->ds) kd_dataset_close(tr->ds);
    if (tr->tok) kd_tokenizer_close(tr->tok);
    free(tr->train);
    free(tr->held);
    free(tr->reqs);
    free(tr->dl);
    free(tr->perm);
}

static int find_tokenizer(const kd_train_options *opt, char *path, size_t cap, kd_error *err) {
    /* --tokenizer-path, then model.path's, the dataset folder's, and the default that generate
       and inspect use as well */
    const char *cands[4] = {opt->tokenizer_path, opt->cfg->model.path[0] ? opt->cfg->model.path : NULL, opt->data_dir,
                            "models/student/tokenizer"};
    for (int i = 0; i < 4; i++) {
        if (!cands[i]) continue;
        if (i == 0) {
            snprintf(path, cap, "%s", cands[i]);
            return KD_OK;
        }
        snprintf(path, cap, "%s/tokenizer.json", cands[i]);
        if (kd_path_exists(path)) return KD_OK;
    }
    return kd_error_set(err, KD_ERR_INVALID,
                        "train: no student tokenizer: pass --tokenizer-path DIR (the tokenizer the dataset was generated "
                        "with); none in model.path, the dataset folder or models/student/tokenizer");
}

int kd_train_run(const kd_train_options *opt, MPI_Comm comm, kd_train_result *res, kd_error *err) {
    trainer tr;
    memset(&tr, 0, sizeof tr);
    memset(res, 0, sizeof *res);
    const kd_config *cfg = opt->cfg;
    tr.cfg = cfg;
    tr.comm = comm;
    MPI_Comm_rank(comm, &tr.rank);
    MPI_Comm_size(comm, &tr.world);
    tr.B = (int)cfg->train.micro_batch;
    tr.T = (int)cfg->train.seq_len;
    tr.P = cfg->train.prompt_window > 0 ? cfg->train.prompt_window : tr.T / 2;
    tr.perm_epoch = -1;
    int rc = KD_OK;
    int64_t accum = cfg->train.grad_accum;
    int64_t G = (int64_t)tr.world * accum * tr.B;
    term_cfg tc;
    terms_from_config(cfg, &tc);
    char cfg_sha[65];
    kd_config_hash(cfg, cfg_sha);
    micro_batch *mbs = NULL;
    FILE *metrics = NULL;
    char path[4096];
    struct sigaction old_term, old_usr1;
    int handlers = 0;

    kd_runtime_set_threads(kd_mpi_local_ranks(comm), (int)cfg->train.threads);

    /* ---- checks that fail before any step ---- */
    if (!opt->out_dir || !opt->data_dir) {
        rc = kd_error_set(err, KD_ERR_INVALID, "train: --train-data and --out are required");
        goto done;
    }
    if ((rc = kd_divergence_parse(cfg->kd.divergence, &tr.kdo.divergence, err))) goto done;
    tr.kdo.temperature = (float)cfg->kd.temperature;
    tr.kdo.jsd_beta = (float)cfg->kd.jsd_beta;
    if ((rc = kd_kd_opts_check(&tr.kdo, err))) goto done;
    if ((rc = find_tokenizer(opt, path, sizeof path, err))) goto done;
    if ((rc = kd_tokenizer_open(&tr.tok, path, err))) goto done;
    if ((rc = kd_dataset_open(&tr.ds, opt->data_dir, err))) goto done;
    {
        const kd_dataset_info *info = kd_dataset_get_info(tr.ds);
        if (strcmp(info->tokenizer_sha256, kd_tokenizer_sha256(tr.tok)) != 0) {
            rc = kd_error_set(err, KD_ERR_INVALID,
                              "train: the dataset %s was tokenized with a different tokenizer (sha256 %.12s...) than the "
                              "student's %s (sha256 %.12s...); pass the generation's tokenizer with --tokenizer-path or "
                              "regenerate the dataset",
                              kd_dataset_path(tr.ds), info->tokenizer_sha256, kd_tokenizer_path(tr.tok),
                              kd_tokenizer_sha256(tr.tok));
            goto done;
        }
        tr.K = info->topk;
        if (kd_dataset_count(tr.ds) == 0) {
            rc = kd_error_set(err, KD_ERR_INVALID, "train: the dataset %s is empty (0 samples); run kdstep generate first",
                              kd_dataset_path(tr.ds));
            goto done;
        }
    }
    if ((rc = scan_dataset(&tr, err))) goto done;
    if (tr.n_train == 0) {
        rc = kd_error_set(err, KD_ERR_INVALID,
                          "train: no training samples: %lld held out, %lld dropped (fewer than 2 tokens) at seq_len=%d "
                          "(lower train.eval_fraction or generate more prompts)",
                          (long long)tr.n_held, (long long)tr.n_dropped, tr.T);
        goto done;
    }
    if (tr.rank == 0) {
        KD_INFO("train: %lld samples: %lld train, %lld held out; seq_len %d, prompt window %lld: %lld samples cut "
                "(prompt head or answer tail), %lld dropped; %lld without JSON masks use spans extracted from their text",
                (long long)kd_dataset_count(tr.ds), (long long)tr.n_train, (long long)tr.n_held, tr.T,
                (long long)tr.P, (long long)tr.n_truncated, (long long)tr.n_dropped, (long long)tr.n_fallback);
        if (tr.n_truncated)
            KD_WARN("train: %lld of %lld samples do not fit train.seq_len=%d with a prompt window of %lld: cut",
                    (long long)tr.n_truncated, (long long)kd_dataset_count(tr.ds), tr.T, (long long)tr.P);
    }
    res->samples_truncated = tr.n_truncated;
    res->samples_dropped = tr.n_dropped;
    if ((rc = setup_model(&tr, err))) goto done;
    if (tc.on[T_GRAMMAR] && (rc = setup_grammar(&tr, err))) goto done;

    int64_t total = cfg->train.steps;
    if (total <= 0) total = (cfg->train.epochs * tr.n_train + G - 1) / G;
    if (total <= 0) total = 1;

    /* ---- run folder, resume ---- */
    int64_t step = 0, adam_t = 0, bad = 0;
    snprintf(path, sizeof path, "%s/checkpoints/latest", opt->out_dir);
    int have_latest = kd_path_exists(path);
    if (have_latest && !opt->resume) {
        rc = kd_error_set(err, KD_ERR_INVALID, "train: %s already holds checkpoints; pass --resume to continue it or choose another --out",
                          opt->out_dir);
        goto done;
    }
    if (tr.rank == 0) {
        snprintf(path, sizeof path, "%s/checkpoints", opt->out_dir);
        rc = kd_mkdir_p(path, err);
    }
    if ((rc = kd_mpi_agree(comm, rc, err))) goto done;
    if (opt->resume && have_latest) {
        char dir[4096];
        kd_train_state st;
        if (!(rc = kd_checkpoint_latest(opt->out_dir, dir, sizeof dir, err))) rc = kd_checkpoint_load(dir, tr.m, &st, err);
        if ((rc = kd_mpi_agree(comm, rc, err))) goto done;
        step = st.step;
        adam_t = st.adam_t;
        bad = st.bad_steps;
        if (tr.rank == 0) {
            KD_INFO("train: resuming from %s at step %lld", dir, (long long)step);
            if (st.world != tr.world || st.micro_batch != tr.B || st.grad_accum != accum || st.seq_len != tr.T ||
                st.seed != cfg->train.seed)
                KD_WARN("train: the checkpoint was written with world %lld, micro_batch %lld, grad_accum %lld, seq_len %lld, "
                        "seed %lld; this run differs, so it continues correctly but not bit-exactly",
                        (long long)st.world, (long long)st.micro_batch, (long long)st.grad_accum, (long long)st.seq_len,
                        (long long)st.seed);
        }
    } else if (opt->resume && tr.rank == 0) {
        KD_INFO("train: --resume: no checkpoint in %s yet, starting at step 0", opt->out_dir);
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", opt->out_dir);
    if (tr.rank == 0) {
        rc = trim_metrics(path, step, err);
        if (!rc && !(metrics = fopen(path, "a"))) rc = kd_error_errno(err, errno, "%s: cannot open", path);
    }
    if ((rc = kd_mpi_agree(comm, rc, err))) goto done;

    /* ---- buffers ---- */
    mbs = kd_calloc((size_t)accum, sizeof *mbs);
    tr.dl = malloc((size_t)tr.B * tr.T * (size_t)tr.V * sizeof(float));
    tr.max_reqs = 4 * (tr.m->cfg.num_layers + 4);
    tr.reqs = kd_calloc((size_t)tr.max_reqs, sizeof(MPI_Request));
    const char *bf = getenv("KDSTEP_BUCKET_FLOATS");
    tr.bucket_floats = bf && atol(bf) > 0 ? (size_t)atol(bf) : (size_t)1 << 20;
    if (!mbs || !tr.dl || !tr.reqs) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "train: out of memory for batches");
        goto done;
    }
    for (int64_t a = 0; a < accum; a++)
        if (mb_alloc(&mbs[a], tr.B, tr.T, tr.K)) {
            rc = kd_error_set(err, KD_ERR_NOMEM, "train: out of memory for batches");
            goto done;
        }
    micro_batch evb;
    memset(&evb, 0, sizeof evb);
    if (mb_alloc(&evb, tr.B, tr.T, tr.K)) {
        mb_free(&evb);
        rc = kd_error_set(err, KD_ERR_NOMEM, "train: out of memory for batches");
        goto done;
    }

    tr.peak_flops = tr.rank == 0 ? measure_sgemm_flops() : 0.0;
    MPI_Bcast(&tr.peak_flops, 1, MPI_DOUBLE, 0, comm);
    const kd_model_config *mc = &tr.m->cfg;
    double flops_per_token = 6.0 * (double)tr.m->n_params +
                             6.0 * (double)mc->num_layers * mc->num_heads * mc->head_dim * (double)tr.T; /* + attention */

    /* ---- signals ---- */
    {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, &old_term);
        sigaction(SIGUSR1, &sa, &old_usr1);
        handlers = 1;
        g_stop_signal = 0;
    }

    kd_progress prog;
    if (tr.rank == 0) {
        KD_INFO("train: %lld steps from %lld; global batch %lld (world %d x grad_accum %lld x micro_batch %d); model %zu "
                "parameters, vocab %d",
                (long long)total, (long long)step, (long long)G, tr.world, (long long)accum, tr.B, tr.m->n_params, tr.V);
        kd_progress_open(&prog, "train", total, "steps");
        kd_progress_update(&prog, step, NULL);
    }
    double last_loss = NAN, last_held = NAN, last_acc = NAN;
    int64_t last_eval = -1;
    while (step < total) {
        /* all ranks agree on a stop request at the step boundary */
        int sig = (int)g_stop_signal, any_sig = 0;
        MPI_Allreduce(&sig, &any_sig, 1, MPI_INT, MPI_MAX, comm);
        if (any_sig) {
            if (tr.rank == 0) KD_WARN("train: signal %d received: writing a checkpoint at step %lld and stopping", any_sig, (long long)step);
            if ((rc = write_checkpoint(&tr, opt->out_dir, step, adam_t, bad, total, cfg_sha, 0, err))) goto loop_done;
            res->interrupted = 1;
            rc = kd_error_set(err, KD_ERR_INTERRUPTED, "train: stopped by signal %d after writing the checkpoint of step %lld; "
                              "rerun with --resume to continue", any_sig, (long long)step);
            goto loop_done;
        }
        double t_step = kd_now_s();
        tr.comm_s = 0.0;
        double grammar_s = 0.0;
        /* ---- data ---- */
        double t_data = kd_now_s();
        int64_t counts[T_COUNT + 1] = {0};
        for (int64_t a = 0; a < accum; a++) {
            micro_batch *b = &mbs[a];
            b->tokens = 0;
            for (int r = 0; r < tr.B; r++) {
                int64_t pos = step * G + (a * tr.world + tr.rank) * tr.B + r;
                int64_t *perm = epoch_perm(&tr, pos / tr.n_train);
                if (!perm) {
                    rc = kd_error_set(err, KD_ERR_NOMEM, "train: out of memory");
                    break;
                }
                if ((rc = load_row(&tr, b, r, &tr.train[perm[pos % tr.n_train]], err))) break;
            }
            if (rc) break;
            micro_counts(&tc, b, counts);
            counts[T_COUNT] += b->tokens;
        }
        t_data = kd_now_s() - t_data;
        if ((rc = kd_mpi_agree(comm, rc, err))) goto loop_done;
        double t0 = kd_now_s();
        MPI_Allreduce(MPI_IN_PLACE, counts, T_COUNT + 1, MPI_INT64_T, MPI_SUM, comm);
        tr.comm_s += kd_now_s() - t0;
        /* ---- forward / backward ---- */
        double sums[T_COUNT] = {0};
        kd_model_zero_grad(tr.m);
        for (int64_t a = 0; a < accum; a++) {
            micro_batch *b = &mbs[a];
            if ((rc = kd_model_forward(tr.m, b->ids, b->lengths, err))) break;
            size_t nl = (size_t)tr.B * tr.T * (size_t)tr.V;
            memset(tr.dl, 0, nl * sizeof(float));
            micro_losses(&tr, &tc, b, tr.m->logits, counts, tr.dl, sums, &grammar_s);
            memcpy(tr.m->logits, tr.dl, nl * sizeof(float));
            tr.hook_active = tr.world > 1 && a == accum - 1;
            tr.pending_hi = 0;
            rc = kd_model_backward(tr.m, err);
            tr.hook_active = 0;
            if (rc) break;
        }
        if (tr.world > 1 && !rc) finish_allreduce(&tr);
        if ((rc = kd_mpi_agree(comm, rc, err))) goto loop_done;
        t0 = kd_now_s();
        MPI_Allreduce(MPI_IN_PLACE, sums, T_COUNT, MPI_DOUBLE, MPI_SUM, comm);
        tr.comm_s += kd_now_s() - t0;
        double terms[T_COUNT];
        double loss = combine(&tc, sums, counts, terms);
        /* ---- update ---- */
        double norm = kd_grad_norm(tr.m->grads, tr.m->n_params);
        double lr = kd_lr_schedule(step, total, cfg->train.warmup_steps, cfg->train.lr, cfg->train.min_lr_ratio);
        int skipped = 0;
        if (!isfinite(norm) || !isfinite(loss)) {
            skipped = 1;
            bad++;
            if (tr.rank == 0)
                KD_WARN("train: step %lld skipped: non-finite %s (%lld in a row, limit train.max_bad_steps=%lld)",
                        (long long)step + 1, isfinite(loss) ? "gradient norm" : "loss", (long long)bad,
                        (long long)cfg->train.max_bad_steps);
            if (bad >= cfg->train.max_bad_steps) {
                rc = kd_error_set(err, KD_ERR_INVALID,
                                  "train: %lld steps in a row had a non-finite loss or gradient (train.max_bad_steps=%lld); "
                                  "aborting at step %lld: lower train.lr or check the dataset",
                                  (long long)bad, (long long)cfg->train.max_bad_steps, (long long)step + 1);
                goto loop_done;
            }
        } else {
            bad = 0;
            float clip = kd_clip_scale(norm, cfg->train.grad_clip);
            if (clip != 1.0f) kd_scale_floats(tr.m->grads, tr.m->n_params, clip);
            kd_adamw_params hp = {0.9f, 0.95f, 1e-8f, (float)cfg->train.weight_decay};
            adam_t++;
            kd_model_adamw_step(tr.m, &hp, (float)lr, adam_t);
        }
        step++;
        double dt = kd_now_s() - t_step;
        double tps = dt > 0 ? (double)counts[T_COUNT] / dt : 0.0;
        double mfu = tr.peak_flops > 0 && dt > 0 ? flops_per_token * (double)counts[T_COUNT] / dt / (tr.peak_flops * tr.world) : 0.0;
        double comm_share = dt > 0 ? tr.comm_s / dt : 0.0;
        MPI_Allreduce(MPI_IN_PLACE, &comm_share, 1, MPI_DOUBLE, MPI_MAX, comm);
        MPI_Allreduce(MPI_IN_PLACE, &grammar_s, 1, MPI_DOUBLE, MPI_MAX, comm);
        last_loss = loss;
        /* ---- eval, the metrics line, then the checkpoint: a checkpoint of step N is committed only
         * after step N's line is in metrics.jsonl, so a run killed in between resumes with no line
         * missing (a line past the checkpoint is trimmed and written again) ---- */
        int do_eval = tr.n_held > 0 && ((cfg->train.eval_every > 0 && step % cfg->train.eval_every == 0) || step == total);
        if (do_eval) {
            if ((rc = kd_mpi_agree(comm, evaluate(&tr, &tc, &evb, &last_held, &last_acc, err), err))) goto loop_done;
            last_eval = step;
        }
        if (tr.rank == 0) {
            json_t *js = json_object();
            json_object_set_new(js, "step", json_integer(step));
            json_object_set_new(js, "loss", json_real(loss));
            for (int t = 0; t < T_COUNT; t++)
                if (tc.on[t]) json_object_set_new(js, TERM_NAMES[t], json_real(terms[t]));
            json_object_set_new(js, "lr", json_real(lr));
            json_object_set_new(js, "grad_norm", isfinite(norm) ? json_real(norm) : json_null());
            json_object_set_new(js, "tokens", json_integer(counts[T_COUNT]));
            json_object_set_new(js, "tokens_per_s", json_real(tps));
            json_object_set_new(js, "mfu", json_real(mfu));
            json_object_set_new(js, "allreduce_share", json_real(comm_share));
            json_object_set_new(js, "grammar_s", json_real(grammar_s));
            json_object_set_new(js, "data_s", json_real(t_data));
            json_object_set_new(js, "step_s", json_real(dt));
            if (skipped) json_object_set_new(js, "skipped", json_true());
            if (last_eval == step) {
                json_object_set_new(js, "heldout_loss", json_real(last_held));
                json_object_set_new(js, "heldout_tool_acc", isfinite(last_acc) ? json_real(last_acc) : json_null());
            }
            char *line = json_dumps(js, JSON_COMPACT | JSON_REAL_PRECISION(10));
            json_decref(js);
            if (line) {
                fprintf(metrics, "%s\n", line);
                fflush(metrics);
                free(line);
            }
            char extra[160];
            snprintf(extra, sizeof extra, "loss %.4f | %.0f tok/s", loss, tps);
            kd_progress_update(&prog, step, extra);
        }
        if (cfg->train.checkpoint_every > 0 && step % cfg->train.checkpoint_every == 0 && step < total)
            if ((rc = write_checkpoint(&tr, opt->out_dir, step, adam_t, bad, total, cfg_sha, 0, err))) goto loop_done;
    }
    /* ---- the end: checkpoint, final folder, plot ---- */
    if ((rc = write_checkpoint(&tr, opt->out_dir, step, adam_t, bad, total, cfg_sha, 0, err))) goto loop_done;
    if ((rc = write_checkpoint(&tr, opt->out_dir, step, adam_t, bad, total, cfg_sha, 1, err))) goto loop_done;
    if (tr.rank == 0) {
        fclose(metrics);
        metrics = NULL;
        char png[4096];
        snprintf(png, sizeof png, "%s/curves.png", opt->out_dir);
        kd_error perr;
        if (kd_plot_metrics(opt->out_dir, png, &perr)) KD_WARN("train: no curves.png: %s", perr.msg);
    }
loop_done:
    if (tr.rank == 0) {
        char extra[96];
        snprintf(extra, sizeof extra, "loss %.4f", last_loss);
        kd_progress_close(&prog, extra);
    }
    mb_free(&evb);
    res->steps_done = step;
    res->final_loss = last_loss;
    res->heldout_loss = last_held;
    res->heldout_tool_acc = last_acc;
done:
    if (handlers) {
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGUSR1, &old_usr1, NULL);
    }
    if (metrics) fclose(metrics);
    if (mbs)
        for (int64_t a = 0; a < accum; a++) mb_free(&mbs[a]);
    free(mbs);
    trainer_free(&tr);
    return rc;
}
