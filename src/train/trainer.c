/* The MPI data-parallel trainer (see include/kdstep/trainer.h and docs/training.md).
 *
 * Data order: the training split (samples whose prompt-id hash is not held out, and that keep at
 * least one response token within seq_len) is shuffled per epoch with a permutation that depends
 * only on (train.seed, epoch), and the epochs are concatenated into one stream. Optimizer step s
 * consumes stream positions [s*G, (s+1)*G), G = world * grad_accum * micro_batch; micro-batch a of
 * rank r takes positions s*G + (a*world + r)*B + [0, B). So `-np 2`, accumulation 1 sees exactly the
 * samples of `-np 1`, accumulation 2, and the data cursor is just the step number. The data side
 * (split, windows, order, micro-batches) is batch.c; this file is the step and the run.
 */
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
#include "kdstep/fsutil.h"
#include "kdstep/h5data.h"
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
#include "kdstep/window.h"

#include "batch.h"

#define EVAL_MAX_SAMPLES 512
#define LAYER_TENSORS 11

/* ---------------------------------------------------------------- signals */

static volatile sig_atomic_t g_stop_signal = 0;

static void on_stop_signal(int sig) { g_stop_signal = sig; }

void kd_train_request_stop(int sig) { g_stop_signal = sig; }

/* ---------------------------------------------------------------- data */

/* The loss terms (their sums, counts and weights); see docs/training.md. */
enum { T_KD, T_CE, T_TOOL, T_JSON_CE, T_GRAMMAR, T_INTEG, T_CTX, T_COUNT };
static const char *TERM_NAMES[T_COUNT] = {"kd", "ce", "tool", "json_ce", "json_grammar", "integration", "context_lm"};

typedef struct term_cfg {
    double weight[T_COUNT];
    int on[T_COUNT];
} term_cfg;

typedef struct trainer {
    const kd_config *cfg;
    MPI_Comm comm;
    int rank, world;
    kd_tokenizer *tok;
    kd_dataset *ds;
    kd_train_data d; /* the split, the order, the windows (batch.h) */
    const sample_meta **rows; /* [B]: the samples of the micro-batch being loaded */
    int K;
    kd_model *m;
    int B, T, V;
    kd_jsongrammar *grammar;
    kd_kd_opts kdo;
    kd_kd_opts kdo_student; /* kd.onpolicy_divergence: on student-written rows */
    /* gradient buckets */
    MPI_Request *reqs;
    int n_reqs, max_reqs;
    int hook_active;
    size_t pending_lo, pending_hi; /* float range of layers finished but not yet sent */
    size_t bucket_floats;
    double comm_s;
    float *dl; /* [B*T, V] dlogits */
    double peak_flops; /* per rank, measured sgemm */
    /* the run */
    const kd_train_options *opt;
    term_cfg tc;
    int64_t accum, G, total; /* micro-batches per step, global batch, steps */
    micro_batch *mbs, evb;   /* [accum] training micro-batches; the eval batch */
    char cfg_sha[65];
    FILE *metrics; /* rank 0 */
    double flops_per_token;
    /* where the run is */
    int64_t step, adam_t, bad, last_eval;
    double last_loss, last_held, last_acc;
} trainer;

/* What one step measured: its metrics line. */
typedef struct step_stats {
    double loss, terms[T_COUNT], lr, norm;
    int64_t tokens;
    double tps, mfu, comm_share, grammar_s, data_s, step_s;
    int skipped;
} step_stats;

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
    tc->weight[T_CTX] = cfg->train.context_lm_weight;
    tc->on[T_CTX] = tc->weight[T_CTX] > 0;
}

static const uint8_t *term_mask(const micro_batch *b, int t) {
    switch (t) {
    case T_KD:
    case T_CE: return b->loss;
    case T_TOOL: return b->tool;
    case T_JSON_CE:
    case T_GRAMMAR: return b->json;
    case T_CTX: return b->ctx;
    default: return b->integ;
    }
}

/* The KD term of a micro-batch with student-written rows: kd.divergence on the teacher-written rows'
 * loss_mask, kd.onpolicy_divergence on the student-written rows' (two calls over complementary masks:
 * their counts add up to kd_loss_count(loss), the count the term is normalized by). */
static void kd_split(trainer *tr, micro_batch *b, const float *logits, const kd_teacher_topk *tk, float gs, float *dl, double *s) {
    size_t T = (size_t)b->T;
    for (int r = 0; r < b->B; r++) {
        const uint8_t *l = b->loss + (size_t)r * T;
        memcpy(b->loss_student + (size_t)r * T, l, T);
        memcpy(b->loss_teacher + (size_t)r * T, l, T);
        memset((b->policy[r] ? b->loss_teacher : b->loss_student) + (size_t)r * T, 0, T);
    }
    double a = 0.0, c = 0.0;
    kd_loss_kd(logits, b->ids, b->loss_teacher, b->B, b->T, tr->V, tk, &tr->kdo, gs, dl, &a, NULL);
    kd_loss_kd(logits, b->ids, b->loss_student, b->B, b->T, tr->V, tk, &tr->kdo_student, gs, dl, &c, NULL);
    *s = a + c;
}

/* Adds every enabled term's sum into sums[] and its gradient (weight / global count) into dl. A
 * micro-batch with student-written rows (b->n_student) splits KD by policy (kd_split) and takes the
 * CE-type terms' targets from b->target (the teacher's argmax at student-written tokens). */
static void micro_losses(trainer *tr, const term_cfg *tc, micro_batch *b, const float *logits,
                         const int64_t *gcount, float *dl, double *sums, double *grammar_s) {
    int B = b->B, T = b->T, V = tr->V;
    const int32_t *target = b->n_student ? b->target : b->ids;
    for (int t = 0; t < T_COUNT; t++) {
        if (!tc->on[t] || gcount[t] == 0) continue;
        float gs = dl ? (float)(tc->weight[t] / (double)gcount[t]) : 0.0f;
        double s = 0.0;
        const uint8_t *mask = term_mask(b, t);
        switch (t) {
        case T_KD: {
            kd_teacher_topk tk = {b->K, b->tk_ids, b->tk_lp, b->tail, NULL};
            if (b->n_student) kd_split(tr, b, logits, &tk, gs, dl, &s);
            else kd_loss_kd(logits, b->ids, mask, B, T, V, &tk, &tr->kdo, gs, dl, &s, NULL);
            break;
        }
        case T_GRAMMAR: {
            double t0 = kd_now_s();
            kd_loss_json_grammar(tr->grammar, logits, b->ids, mask, B, T, V, gs, dl, &s, NULL);
            if (grammar_s) *grammar_s += kd_now_s() - t0;
            break;
        }
        case T_CTX: kd_loss_ce(logits, b->ids, mask, B, T, V, gs, dl, &s); break; /* the prompt's own tokens */
        default: kd_loss_ce(logits, target, mask, B, T, V, gs, dl, &s); break;
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
    int64_t n = tr->d.n_held < EVAL_MAX_SAMPLES ? tr->d.n_held : EVAL_MAX_SAMPLES;
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
                int rc = kd_train_data_load_row(&tr->d, mb, r, &tr->d.held[tr->rank + k * tr->world], err);
                if (rc) return rc;
                any = 1;
            } else kd_mb_clear_row(mb, r);
        }
        if (!any) continue;
        int rc = kd_model_set_seq_len(tr->m, T, err);
        if (!rc) rc = kd_model_forward(tr->m, mb->ids, mb->lengths, err);
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
    kd_final_options fo; /* a bad train.save_dtype / max_shard_size fails now, not after the run */
    if ((rc = kd_final_options_parse(cfg->train.save_dtype, cfg->train.max_shard_size, &fo, err))) return rc;
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
    if ((rc = kd_model_new(&tr->m, &mc, tr->B, tr->T, err))) return rc;
    if (pretrained) {
        if ((rc = kd_model_load_weights_dir(tr->m, cfg->model.path, err))) return rc; /* one file or shards */
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
    int rc = kd_jsongrammar_new(&tr->grammar, bytes, lens, V, 0, err);
    free(bytes);
    free(lens);
    return rc;
}

/* The checkpoint of the current step (final: the run's final/ folder). Collective. */
static int write_checkpoint(trainer *tr, int final, kd_error *err) {
    int rc = KD_OK;
    if (tr->rank == 0) {
        kd_train_state st = {0};
        st.step = tr->step;
        st.adam_t = tr->adam_t;
        st.bad_steps = tr->bad;
        st.total_steps = tr->total;
        st.seed = tr->cfg->train.seed;
        st.world = tr->world;
        st.micro_batch = tr->B;
        st.grad_accum = tr->accum;
        st.seq_len = tr->T;
        st.data_cursor = tr->step * tr->G;
        snprintf(st.config_sha256, sizeof st.config_sha256, "%s", tr->cfg_sha);
        char dir[4096], name[64];
        snprintf(name, sizeof name, "step-%06lld", (long long)tr->step);
        if (final) snprintf(dir, sizeof dir, "%s/final", tr->opt->out_dir);
        else snprintf(dir, sizeof dir, "%s/checkpoints/%s", tr->opt->out_dir, name);
        kd_final_options fo;
        if (final && !(rc = kd_final_options_parse(tr->cfg->train.save_dtype, tr->cfg->train.max_shard_size, &fo, err)))
            rc = kd_checkpoint_write_final(dir, tr->m, kd_tokenizer_path(tr->tok), &fo, err);
        else if (!final) rc = kd_checkpoint_write(dir, tr->m, kd_tokenizer_path(tr->tok), &st, err);
        if (!rc && !final) rc = kd_checkpoint_set_latest(tr->opt->out_dir, name, err);
        if (!rc) KD_INFO("train: wrote %s", dir);
        /* Test hook for crash tests: KD_DEBUG_KILL_AFTER_CHECKPOINT=N raises SIGKILL on rank 0 right
         * after checkpoint N is committed (`latest` names it), before anything else of the run. */
        const char *kill_at = getenv("KD_DEBUG_KILL_AFTER_CHECKPOINT");
        if (!rc && !final && kill_at && *kill_at && atoll(kill_at) == (long long)tr->step) raise(SIGKILL);
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
        int is_int = json_is_integer(sv), ok = is_int && json_integer_value(sv) <= step;
        json_decref(js); /* sv goes with it */
        if (!ok) {
            if (!is_int)
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

/* ---------------------------------------------------------------- opening a run */

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

static void trainer_init(trainer *tr, const kd_train_options *opt, MPI_Comm comm) {
    memset(tr, 0, sizeof *tr);
    const kd_config *cfg = opt->cfg;
    tr->opt = opt;
    tr->cfg = cfg;
    tr->comm = comm;
    MPI_Comm_rank(comm, &tr->rank);
    MPI_Comm_size(comm, &tr->world);
    tr->B = (int)cfg->train.micro_batch;
    tr->T = (int)cfg->train.seq_len;
    tr->d.P = cfg->train.prompt_window; /* 0: full context (window.h) */
    tr->d.T = tr->T;
    tr->d.process_supervision = cfg->process_supervision.enabled;
    tr->d.seed = cfg->train.seed;
    tr->d.eval_fraction = cfg->train.eval_fraction;
    tr->d.perm_epoch = -1;
    tr->accum = cfg->train.grad_accum;
    tr->G = (int64_t)tr->world * tr->accum * tr->B;
    tr->d.G = tr->G;
    tr->d.length_buckets = cfg->train.length_buckets;
    terms_from_config(cfg, &tr->tc);
    kd_config_hash(cfg, tr->cfg_sha);
    tr->last_loss = tr->last_held = tr->last_acc = NAN;
    tr->last_eval = -1;
}

static void trainer_free(trainer *tr) {
    kd_model_free(tr->m);
    kd_jsongrammar_free(tr->grammar);
    if (tr->ds) kd_dataset_close(tr->ds);
    if (tr->tok) kd_tokenizer_close(tr->tok);
    if (tr->metrics) fclose(tr->metrics);
    if (tr->mbs)
        for (int64_t a = 0; a < tr->accum; a++) kd_mb_free(&tr->mbs[a]);
    free(tr->mbs);
    kd_mb_free(&tr->evb);
    kd_train_data_free(&tr->d);
    free(tr->reqs);
    free(tr->rows);
    free(tr->dl);
}

/* The options, the tokenizer and the dataset (they must match), the split, the model, the number of
 * steps. Not collective: every rank checks the same. */
static int open_and_check(trainer *tr, kd_train_result *res, kd_error *err) {
    if (tr->T < 8)
        return kd_error_set(err, KD_ERR_INVALID, "train.seq_len %d: set at least 8 (kdstep inspect DATASET prints the length that "
                                                 "fits; 0, pick it from the dataset, is resolved by kdstep run only)", tr->T);
    const kd_train_options *opt = tr->opt;
    const kd_config *cfg = tr->cfg;
    char path[4096];
    int rc;
    if (!opt->out_dir || !opt->data_dir) return kd_error_set(err, KD_ERR_INVALID, "train: --train-data and --out are required");
    if ((rc = kd_kd_opts_from_config(cfg, &tr->kdo, err))) return rc;
    tr->kdo_student = tr->kdo;
    if ((rc = kd_divergence_parse(cfg->kd.onpolicy_divergence, &tr->kdo_student.divergence, err)))
        return kd_error_prefix(err, "kd.onpolicy_divergence: ");
    if ((rc = find_tokenizer(opt, path, sizeof path, err))) return rc;
    if ((rc = kd_tokenizer_open(&tr->tok, path, err))) return rc;
    if ((rc = kd_dataset_open(&tr->ds, opt->data_dir, err))) return rc;
    const kd_dataset_info *info = kd_dataset_get_info(tr->ds);
    if (strcmp(info->tokenizer_sha256, kd_tokenizer_sha256(tr->tok)) != 0)
        return kd_error_set(err, KD_ERR_INVALID,
                            "train: the dataset %s was tokenized with a different tokenizer (sha256 %.12s...) than the "
                            "student's %s (sha256 %.12s...); pass the generation's tokenizer with --tokenizer-path or "
                            "regenerate the dataset",
                            kd_dataset_path(tr->ds), info->tokenizer_sha256, kd_tokenizer_path(tr->tok),
                            kd_tokenizer_sha256(tr->tok));
    tr->K = info->topk;
    if (kd_dataset_count(tr->ds) == 0)
        return kd_error_set(err, KD_ERR_INVALID, "train: the dataset %s is empty (0 samples); run kdstep generate first",
                            kd_dataset_path(tr->ds));
    tr->d.ds = tr->ds;
    tr->d.tok = tr->tok;
    if ((rc = kd_train_data_scan(&tr->d, err))) return rc;
    if (tr->d.n_train == 0)
        return kd_error_set(err, KD_ERR_INVALID,
                            "train: no training samples: %lld held out, %lld dropped (fewer than 2 tokens) at seq_len=%d "
                            "(lower train.eval_fraction or generate more prompts)",
                            (long long)tr->d.n_held, (long long)tr->d.n_dropped, tr->T);
    if (tr->rank == 0) {
        char win[64], with[64];
        if (tr->d.P > 0) snprintf(win, sizeof win, "prompt window %lld", (long long)tr->d.P);
        else snprintf(win, sizeof win, "full context");
        if (tr->d.P > 0) snprintf(with, sizeof with, "a prompt window of %lld", (long long)tr->d.P);
        else snprintf(with, sizeof with, "full context");
        KD_INFO("train: %lld samples: %lld train, %lld held out; seq_len %d, %s: %lld samples cut "
                "(prompt head or answer tail), %lld dropped; %lld without JSON masks use spans extracted from their text",
                (long long)kd_dataset_count(tr->ds), (long long)tr->d.n_train, (long long)tr->d.n_held, tr->T, win,
                (long long)tr->d.n_truncated, (long long)tr->d.n_dropped, (long long)tr->d.n_fallback);
        if (tr->d.n_truncated)
            KD_WARN("train: %lld of %lld samples do not fit train.seq_len=%d with %s: cut (kdstep inspect on the dataset "
                    "shows the length distribution and the seq_len that fits)",
                    (long long)tr->d.n_truncated, (long long)kd_dataset_count(tr->ds), tr->T, with);
    }
    res->samples_truncated = tr->d.n_truncated;
    res->samples_dropped = tr->d.n_dropped;
    if ((rc = setup_model(tr, err))) return rc;
    if (tr->tc.on[T_GRAMMAR] && (rc = setup_grammar(tr, err))) return rc;
    tr->total = cfg->train.steps;
    if (tr->total <= 0) tr->total = (cfg->train.epochs * tr->d.n_train + tr->G - 1) / tr->G;
    if (tr->total <= 0) tr->total = 1;
    return KD_OK;
}

/* The weights, optimizer state and counters of the run folder's latest checkpoint. Collective. */
static int resume_from_latest(trainer *tr, kd_error *err) {
    char dir[4096];
    kd_train_state st;
    int rc = kd_checkpoint_latest(tr->opt->out_dir, dir, sizeof dir, err);
    if (!rc) rc = kd_checkpoint_load(dir, tr->m, &st, err);
    if ((rc = kd_mpi_agree(tr->comm, rc, err))) return rc;
    tr->step = st.step;
    tr->adam_t = st.adam_t;
    tr->bad = st.bad_steps;
    if (tr->rank == 0) {
        KD_INFO("train: resuming from %s at step %lld", dir, (long long)tr->step);
        if (st.world != tr->world || st.micro_batch != tr->B || st.grad_accum != tr->accum || st.seq_len != tr->T ||
            st.seed != tr->cfg->train.seed)
            KD_WARN("train: the checkpoint was written with world %lld, micro_batch %lld, grad_accum %lld, seq_len %lld, "
                    "seed %lld; this run differs, so it continues correctly but not bit-exactly",
                    (long long)st.world, (long long)st.micro_batch, (long long)st.grad_accum, (long long)st.seq_len,
                    (long long)st.seed);
    }
    return KD_OK;
}

/* The run folder: one holding checkpoints is refused without --resume and resumed with it; rank 0
 * keeps the lines of metrics.jsonl up to the resumed step and appends to it. Collective. */
static int open_run_folder(trainer *tr, kd_error *err) {
    const kd_train_options *opt = tr->opt;
    char path[4096];
    int rc = KD_OK;
    snprintf(path, sizeof path, "%s/checkpoints/latest", opt->out_dir);
    int have_latest = kd_path_exists(path);
    if (have_latest && !opt->resume) {
        rc = kd_error_set(err, KD_ERR_INVALID, "train: %s already holds checkpoints; pass --resume to continue it or choose another --out",
                          opt->out_dir);
    } else if (tr->rank == 0) {
        snprintf(path, sizeof path, "%s/checkpoints", opt->out_dir);
        rc = kd_mkdir_p(path, err);
    }
    if ((rc = kd_mpi_agree(tr->comm, rc, err))) return rc;
    if (opt->resume && have_latest) {
        if ((rc = resume_from_latest(tr, err))) return rc;
    } else if (opt->resume && tr->rank == 0) {
        KD_INFO("train: --resume: no checkpoint in %s yet, starting at step 0", opt->out_dir);
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", opt->out_dir);
    if (tr->rank == 0) {
        rc = trim_metrics(path, tr->step, err);
        if (!rc && !(tr->metrics = fopen(path, "a"))) rc = kd_error_errno(err, errno, "%s: cannot open", path);
    }
    return kd_mpi_agree(tr->comm, rc, err);
}

/* The micro-batches, the dlogits buffer and the allreduce requests. Not collective. */
static int allocate(trainer *tr, kd_error *err) {
    tr->mbs = kd_calloc((size_t)tr->accum, sizeof *tr->mbs);
    tr->dl = malloc((size_t)tr->B * tr->T * (size_t)tr->V * sizeof(float));
    tr->max_reqs = 4 * (tr->m->cfg.num_layers + 4);
    tr->reqs = kd_calloc((size_t)tr->max_reqs, sizeof(MPI_Request));
    tr->bucket_floats = (size_t)tr->cfg->train.bucket_floats;
    tr->rows = kd_calloc((size_t)tr->B, sizeof *tr->rows);
    int failed = !tr->mbs || !tr->dl || !tr->reqs || !tr->rows;
    for (int64_t a = 0; a < tr->accum && !failed; a++) failed = kd_mb_alloc(&tr->mbs[a], tr->B, tr->T, tr->K) != 0;
    if (!failed) failed = kd_mb_alloc(&tr->evb, tr->B, tr->T, tr->K) != 0;
    if (failed) return kd_error_set(err, KD_ERR_NOMEM, "train: out of memory for batches");
    const kd_model_config *mc = &tr->m->cfg;
    tr->flops_per_token = 6.0 * (double)tr->m->n_params +
                          6.0 * (double)mc->num_layers * mc->num_heads * mc->head_dim * (double)tr->T; /* + attention */
    return KD_OK;
}

/* ---------------------------------------------------------------- one step */

/* Stop at a step boundary when any rank got SIGTERM/SIGUSR1: checkpoint, then KD_ERR_INTERRUPTED. */
static int stop_if_signalled(trainer *tr, kd_train_result *res, kd_error *err) {
    int sig = (int)g_stop_signal, any_sig = 0;
    MPI_Allreduce(&sig, &any_sig, 1, MPI_INT, MPI_MAX, tr->comm);
    if (!any_sig) return KD_OK;
    if (tr->rank == 0)
        KD_WARN("train: signal %d received: writing a checkpoint at step %lld and stopping", any_sig, (long long)tr->step);
    int rc = write_checkpoint(tr, 0, err);
    if (rc) return rc;
    res->interrupted = 1;
    return kd_error_set(err, KD_ERR_INTERRUPTED, "train: stopped by signal %d after writing the checkpoint of step %lld; "
                        "rerun with --resume to continue", any_sig, (long long)tr->step);
}

/* This rank's micro-batches of the current step; counts[] gets each term's mask count and, at
 * [T_COUNT], the real tokens. */
static int load_step(trainer *tr, int64_t *counts, double *data_s, kd_error *err) {
    double t0 = kd_now_s();
    int rc = KD_OK;
    for (int64_t a = 0; a < tr->accum && !rc; a++) {
        micro_batch *b = &tr->mbs[a];
        b->tokens = 0;
        const sample_meta **rows = tr->rows;
        int64_t longest = 1;
        for (int r = 0; r < tr->B && !rc; r++) {
            int64_t pos = tr->step * tr->G + (a * tr->world + tr->rank) * tr->B + r;
            const int64_t *perm = kd_train_data_perm(&tr->d, pos / tr->d.n_train);
            if (!perm) rc = kd_error_set(err, KD_ERR_NOMEM, "train: out of memory");
            else rows[r] = &tr->d.train[perm[pos % tr->d.n_train]];
            if (!rc && kd_train_data_window_len(&tr->d, rows[r]) > longest) longest = kd_train_data_window_len(&tr->d, rows[r]);
        }
        /* length bucketing: the micro-batch runs at its longest row, rounded up to 16 */
        b->T = tr->T;
        if (tr->d.length_buckets > 0 && (longest + 15) / 16 * 16 < tr->T) b->T = (int)((longest + 15) / 16 * 16);
        for (int r = 0; r < tr->B && !rc; r++) rc = kd_train_data_load_row(&tr->d, b, r, rows[r], err);
        if (rc) break;
        micro_counts(&tr->tc, b, counts);
        counts[T_COUNT] += b->tokens;
    }
    *data_s = kd_now_s() - t0;
    return rc;
}

/* Forward and backward of every micro-batch, the losses' sums into sums[]; the last backward starts
 * the gradient allreduce layer by layer (on_layer_grads), which ends here. */
static int forward_backward(trainer *tr, const int64_t *counts, double *sums, double *grammar_s, kd_error *err) {
    int rc = KD_OK;
    kd_model_zero_grad(tr->m);
    for (int64_t a = 0; a < tr->accum; a++) {
        micro_batch *b = &tr->mbs[a];
        if ((rc = kd_model_set_seq_len(tr->m, b->T, err)) || (rc = kd_model_forward(tr->m, b->ids, b->lengths, err))) break;
        size_t nl = (size_t)tr->B * b->T * (size_t)tr->V;
        memset(tr->dl, 0, nl * sizeof(float));
        micro_losses(tr, &tr->tc, b, tr->m->logits, counts, tr->dl, sums, grammar_s);
        memcpy(tr->m->logits, tr->dl, nl * sizeof(float));
        tr->hook_active = tr->world > 1 && a == tr->accum - 1;
        tr->pending_hi = 0;
        rc = kd_model_backward(tr->m, err);
        tr->hook_active = 0;
        if (rc) break;
    }
    if (tr->world > 1 && !rc) finish_allreduce(tr);
    return rc;
}

/* Clip and AdamW, or skip a step whose loss or gradient is not finite (too many in a row fail). */
static int update(trainer *tr, step_stats *ss, kd_error *err) {
    const kd_config *cfg = tr->cfg;
    ss->norm = kd_grad_norm(tr->m->grads, tr->m->n_params);
    ss->lr = kd_lr_schedule(tr->step, tr->total, cfg->train.warmup_steps, cfg->train.lr, cfg->train.min_lr_ratio);
    if (!isfinite(ss->norm) || !isfinite(ss->loss)) {
        ss->skipped = 1;
        tr->bad++;
        if (tr->rank == 0)
            KD_WARN("train: step %lld skipped: non-finite %s (%lld in a row, limit train.max_bad_steps=%lld)",
                    (long long)tr->step + 1, isfinite(ss->loss) ? "gradient norm" : "loss", (long long)tr->bad,
                    (long long)cfg->train.max_bad_steps);
        if (tr->bad >= cfg->train.max_bad_steps)
            return kd_error_set(err, KD_ERR_INVALID,
                                "train: %lld steps in a row had a non-finite loss or gradient (train.max_bad_steps=%lld); "
                                "aborting at step %lld: lower train.lr or check the dataset",
                                (long long)tr->bad, (long long)cfg->train.max_bad_steps, (long long)tr->step + 1);
        return KD_OK;
    }
    tr->bad = 0;
    float clip = kd_clip_scale(ss->norm, cfg->train.grad_clip);
    if (clip != 1.0f) kd_scale_floats(tr->m->grads, tr->m->n_params, clip);
    kd_adamw_params hp = {(float)cfg->train.adam_beta1, (float)cfg->train.adam_beta2, (float)cfg->train.adam_eps,
                          (float)cfg->train.weight_decay};
    tr->adam_t++;
    kd_model_adamw_step(tr->m, &hp, (float)ss->lr, tr->adam_t);
    return KD_OK;
}

/* One optimizer step: data, forward/backward, the global loss, the update. Collective. */
static int train_step(trainer *tr, step_stats *ss, kd_error *err) {
    memset(ss, 0, sizeof *ss);
    double t_step = kd_now_s();
    tr->comm_s = 0.0;
    int64_t counts[T_COUNT + 1] = {0};
    double sums[T_COUNT] = {0};
    int rc = kd_mpi_agree(tr->comm, load_step(tr, counts, &ss->data_s, err), err);
    if (rc) return rc;
    double t0 = kd_now_s();
    MPI_Allreduce(MPI_IN_PLACE, counts, T_COUNT + 1, MPI_INT64_T, MPI_SUM, tr->comm);
    tr->comm_s += kd_now_s() - t0;
    if ((rc = kd_mpi_agree(tr->comm, forward_backward(tr, counts, sums, &ss->grammar_s, err), err))) return rc;
    t0 = kd_now_s();
    MPI_Allreduce(MPI_IN_PLACE, sums, T_COUNT, MPI_DOUBLE, MPI_SUM, tr->comm);
    tr->comm_s += kd_now_s() - t0;
    ss->loss = combine(&tr->tc, sums, counts, ss->terms);
    ss->tokens = counts[T_COUNT];
    if ((rc = update(tr, ss, err))) return rc;
    tr->step++;
    double dt = kd_now_s() - t_step;
    ss->step_s = dt;
    ss->tps = dt > 0 ? (double)ss->tokens / dt : 0.0;
    ss->mfu = tr->peak_flops > 0 && dt > 0 ? tr->flops_per_token * (double)ss->tokens / dt / (tr->peak_flops * tr->world) : 0.0;
    ss->comm_share = dt > 0 ? tr->comm_s / dt : 0.0;
    MPI_Allreduce(MPI_IN_PLACE, &ss->comm_share, 1, MPI_DOUBLE, MPI_MAX, tr->comm);
    MPI_Allreduce(MPI_IN_PLACE, &ss->grammar_s, 1, MPI_DOUBLE, MPI_MAX, tr->comm);
    tr->last_loss = ss->loss;
    return KD_OK;
}

/* Held-out loss and tool-name accuracy every train.eval_every steps and at the last one. Collective. */
static int maybe_evaluate(trainer *tr, kd_error *err) {
    int64_t every = tr->cfg->train.eval_every;
    if (tr->d.n_held == 0 || !((every > 0 && tr->step % every == 0) || tr->step == tr->total)) return KD_OK;
    int rc = kd_mpi_agree(tr->comm, evaluate(tr, &tr->tc, &tr->evb, &tr->last_held, &tr->last_acc, err), err);
    if (!rc) tr->last_eval = tr->step;
    return rc;
}

/* The step's line of metrics.jsonl (rank 0), and the progress line. */
static void write_metrics(trainer *tr, const step_stats *ss, kd_progress *prog) {
    json_t *js = json_object();
    json_object_set_new(js, "step", json_integer(tr->step));
    json_object_set_new(js, "loss", json_real(ss->loss));
    for (int t = 0; t < T_COUNT; t++)
        if (tr->tc.on[t]) json_object_set_new(js, TERM_NAMES[t], json_real(ss->terms[t]));
    json_object_set_new(js, "lr", json_real(ss->lr));
    json_object_set_new(js, "grad_norm", isfinite(ss->norm) ? json_real(ss->norm) : json_null());
    json_object_set_new(js, "tokens", json_integer(ss->tokens));
    json_object_set_new(js, "tokens_per_s", json_real(ss->tps));
    json_object_set_new(js, "mfu", json_real(ss->mfu));
    json_object_set_new(js, "allreduce_share", json_real(ss->comm_share));
    json_object_set_new(js, "grammar_s", json_real(ss->grammar_s));
    json_object_set_new(js, "data_s", json_real(ss->data_s));
    json_object_set_new(js, "step_s", json_real(ss->step_s));
    if (ss->skipped) json_object_set_new(js, "skipped", json_true());
    if (tr->last_eval == tr->step) {
        json_object_set_new(js, "heldout_loss", json_real(tr->last_held));
        json_object_set_new(js, "heldout_tool_acc", isfinite(tr->last_acc) ? json_real(tr->last_acc) : json_null());
    }
    char *line = json_dumps(js, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(js);
    if (line) {
        fprintf(tr->metrics, "%s\n", line);
        fflush(tr->metrics);
        free(line);
    }
    char extra[160];
    snprintf(extra, sizeof extra, "loss %.4f | %.0f tok/s", ss->loss, ss->tps);
    kd_progress_update(prog, tr->step, extra);
}

/* ---------------------------------------------------------------- the run */

/* The last checkpoint, the final/ folder, and curves.png (rank 0). Collective. */
static int finish_run(trainer *tr, kd_error *err) {
    int rc = write_checkpoint(tr, 0, err);
    if (!rc) rc = write_checkpoint(tr, 1, err);
    if (!rc && tr->rank == 0) {
        fclose(tr->metrics);
        tr->metrics = NULL;
        char png[4096];
        snprintf(png, sizeof png, "%s/curves.png", tr->opt->out_dir);
        kd_error perr;
        if (kd_plot_metrics(tr->opt->out_dir, png, &perr)) KD_WARN("train: no curves.png: %s", perr.msg);
    }
    return rc;
}

int kd_train_run(const kd_train_options *opt, MPI_Comm comm, kd_train_result *res, kd_error *err) {
    trainer tr;
    trainer_init(&tr, opt, comm);
    memset(res, 0, sizeof *res);
    kd_runtime_set_threads(kd_mpi_local_ranks(comm), (int)opt->cfg->train.threads);

    /* open and check, resume, allocate: every rank goes on only when all of them can */
    int rc = kd_mpi_agree(comm, open_and_check(&tr, res, err), err);
    if (!rc) rc = open_run_folder(&tr, err);
    if (!rc) rc = kd_mpi_agree(comm, allocate(&tr, err), err);
    if (rc) {
        trainer_free(&tr);
        return rc;
    }
    tr.peak_flops = tr.rank == 0 ? measure_sgemm_flops() : 0.0;
    MPI_Bcast(&tr.peak_flops, 1, MPI_DOUBLE, 0, comm);
    struct sigaction sa, old_term, old_usr1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGUSR1, &sa, &old_usr1);
    g_stop_signal = 0;
    kd_progress prog;
    if (tr.rank == 0) {
        KD_INFO("train: %lld steps from %lld; global batch %lld (world %d x grad_accum %lld x micro_batch %d); model %zu "
                "parameters, vocab %d",
                (long long)tr.total, (long long)tr.step, (long long)tr.G, tr.world, (long long)tr.accum, tr.B,
                tr.m->n_params, tr.V);
        kd_progress_open(&prog, "train", tr.total, "steps");
        kd_progress_update(&prog, tr.step, NULL);
    }

    /* the steps: a checkpoint of step N is committed only after step N's metrics line is written, so
     * a run killed in between resumes with no line missing (a line past the checkpoint is trimmed) */
    int64_t every = opt->cfg->train.checkpoint_every;
    while (!rc && tr.step < tr.total) {
        step_stats ss;
        if ((rc = stop_if_signalled(&tr, res, err))) break;
        if ((rc = train_step(&tr, &ss, err))) break;
        if ((rc = maybe_evaluate(&tr, err))) break;
        if (tr.rank == 0) write_metrics(&tr, &ss, &prog);
        if (every > 0 && tr.step % every == 0 && tr.step < tr.total) rc = write_checkpoint(&tr, 0, err);
    }
    if (!rc) rc = finish_run(&tr, err);

    if (tr.rank == 0) {
        char extra[96];
        snprintf(extra, sizeof extra, "loss %.4f", tr.last_loss);
        kd_progress_close(&prog, extra);
    }
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    res->steps_done = tr.step;
    res->final_loss = tr.last_loss;
    res->heldout_loss = tr.last_held;
    res->heldout_tool_acc = tr.last_acc;
    trainer_free(&tr);
    return rc;
}
