/* Token-by-token decoding with a KV cache (batch 1), and sampling (greedy, temperature, top-p).
 * Same arithmetic as the batched forward (model.c), one row at a time with sgemv. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/hash.h"
#include "kdstep/model.h"
#include "kdstep/simd.h"

int kd_kv_cache_new(kd_kv_cache **out, const kd_model *m, int max_T, kd_error *err) {
    const kd_model_config *c = &m->cfg;
    *out = NULL;
    if (max_T <= 0 || max_T > c->max_position_embeddings)
        return kd_error_set(err, KD_ERR_INVALID, "kv cache: length %d must be in 1..%d (max_position_embeddings)", max_T, c->max_position_embeddings);
    kd_kv_cache *kc = kd_calloc(1, sizeof *kc);
    if (!kc) return kd_error_set(err, KD_ERR_NOMEM, "kv cache: out of memory");
    size_t KD = (size_t)c->num_kv_heads * c->head_dim, QD = (size_t)c->num_heads * c->head_dim;
    size_t C = (size_t)c->hidden_size, big = QD > C ? QD : C;
    kc->max_T = max_T;
    kc->k = kd_calloc((size_t)c->num_layers * (size_t)max_T * KD, sizeof(float));
    kc->v = kd_calloc((size_t)c->num_layers * (size_t)max_T * KD, sizeof(float));
    kc->x = kd_calloc(C, sizeof(float));
    kc->xb = kd_calloc(big, sizeof(float));
    kc->xb2 = kd_calloc(big, sizeof(float));
    kc->q = kd_calloc(QD, sizeof(float));
    kc->att = kd_calloc((size_t)max_T, sizeof(float));
    kc->hb = kd_calloc((size_t)c->intermediate_size, sizeof(float));
    kc->hb2 = kd_calloc((size_t)c->intermediate_size, sizeof(float));
    kc->logits = kd_calloc((size_t)c->vocab_size, sizeof(float));
    if (!kc->k || !kc->v || !kc->x || !kc->xb || !kc->xb2 || !kc->q || !kc->att || !kc->hb || !kc->hb2 || !kc->logits) {
        kd_kv_cache_free(kc);
        return kd_error_set(err, KD_ERR_NOMEM, "kv cache: out of memory for %d positions", max_T);
    }
    *out = kc;
    return KD_OK;
}

void kd_kv_cache_free(kd_kv_cache *c) {
    if (!c) return;
    free(c->k);
    free(c->v);
    free(c->x);
    free(c->xb);
    free(c->xb2);
    free(c->q);
    free(c->att);
    free(c->hb);
    free(c->hb2);
    free(c->logits);
    free(c);
}

void kd_kv_cache_reset(kd_kv_cache *c) { c->pos = 0; }

static void rmsnorm(float *o, const float *x, const float *w, int n, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float s = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * s * w[i];
}

static void matvec(float *y, const float *W, const float *x, int O, int K, float beta) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, O, K, 1.0f, W, K, x, 1, beta, y, 1);
}

static void norm_rope(float *x, const float *w, int D, float eps, int pos, float theta) {
    rmsnorm(x, x, w, D, eps);
    int h = D / 2;
    for (int i = 0; i < h; i++) {
        /* the same float32 recipe as the batched tables */
        float inv = 1.0f / powf(theta, (float)(2 * i) / (float)D), ang = (float)pos * inv, cs = cosf(ang), sn = sinf(ang);
        float x1 = x[i], x2 = x[i + h];
        x[i] = x1 * cs - x2 * sn;
        x[i + h] = x2 * cs + x1 * sn;
    }
}

const float *kd_model_decode_step(const kd_model *m, kd_kv_cache *kc, int32_t token) {
    const kd_model_config *c = &m->cfg;
    if (kc->pos >= kc->max_T || token < 0 || token >= c->vocab_size) return NULL;
    int C = c->hidden_size, D = c->head_dim, Hq = c->num_heads, Hkv = c->num_kv_heads, FF = c->intermediate_size;
    int QD = Hq * D, KD = Hkv * D, grp = Hq / Hkv, pos = kc->pos;
    float eps = c->rms_norm_eps, scale = 1.0f / sqrtf((float)D);
    memcpy(kc->x, m->w.embed + (size_t)token * C, (size_t)C * sizeof(float));
    for (int l = 0; l < c->num_layers; l++) {
        const kd_layer_weights *w = &m->w.layers[l];
        float *kl = kc->k + ((size_t)l * kc->max_T) * KD, *vl = kc->v + ((size_t)l * kc->max_T) * KD;
        float *kr = kl + (size_t)pos * KD, *vr = vl + (size_t)pos * KD;
        rmsnorm(kc->xb, kc->x, w->input_norm, C, eps);
        matvec(kc->q, w->q_proj, kc->xb, QD, C, 0.0f);
        matvec(kr, w->k_proj, kc->xb, KD, C, 0.0f);
        matvec(vr, w->v_proj, kc->xb, KD, C, 0.0f);
        for (int h = 0; h < Hq; h++) norm_rope(kc->q + h * D, w->q_norm, D, eps, pos, c->rope_theta);
        for (int h = 0; h < Hkv; h++) norm_rope(kr + h * D, w->k_norm, D, eps, pos, c->rope_theta);
        for (int h = 0; h < Hq; h++) {
            const float *q = kc->q + h * D;
            int kh = h / grp;
            float mx = -INFINITY, sum = 0.0f;
            for (int j = 0; j <= pos; j++) {
                const float *kj = kl + (size_t)j * KD + kh * D;
                float s = 0.0f;
                for (int i = 0; i < D; i++) s += q[i] * kj[i];
                kc->att[j] = s * scale;
                mx = kc->att[j] > mx ? kc->att[j] : mx;
            }
            for (int j = 0; j <= pos; j++) {
                kc->att[j] = expf(kc->att[j] - mx);
                sum += kc->att[j];
            }
            float *o = kc->xb2 + h * D;
            memset(o, 0, (size_t)D * sizeof(float));
            for (int j = 0; j <= pos; j++) {
                const float *vj = vl + (size_t)j * KD + kh * D;
                float p = kc->att[j] / sum;
                for (int i = 0; i < D; i++) o[i] += p * vj[i];
            }
        }
        matvec(kc->x, w->o_proj, kc->xb2, C, QD, 1.0f);
        rmsnorm(kc->xb, kc->x, w->post_norm, C, eps);
        matvec(kc->hb, w->gate_proj, kc->xb, FF, C, 0.0f);
        matvec(kc->hb2, w->up_proj, kc->xb, FF, C, 0.0f);
        for (int i = 0; i < FF; i++) kc->hb[i] = kc->hb[i] / (1.0f + expf(-kc->hb[i])) * kc->hb2[i];
        matvec(kc->x, w->down_proj, kc->hb, C, FF, 1.0f);
    }
    rmsnorm(kc->xb, kc->x, m->w.final_norm, C, eps);
    matvec(kc->logits, m->w.lm_head, kc->xb, c->vocab_size, C, 0.0f);
    kc->pos++;
    return kc->logits;
}

typedef struct {
    float p;
    int i;
} prob_idx;

static int cmp_prob_desc(const void *a, const void *b) {
    float x = ((const prob_idx *)a)->p, y = ((const prob_idx *)b)->p;
    return x < y ? 1 : x > y ? -1 : 0;
}

int32_t kd_sampler_next(kd_sampler *s, float *logits, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (s->temperature <= 0.0f) return best;
    float mx = logits[best], sum = 0.0f;
    for (int i = 0; i < V; i++) {
        logits[i] = expf((logits[i] - mx) / s->temperature);
        sum += logits[i];
    }
    for (int i = 0; i < V; i++) logits[i] /= sum;
    float r = kd_rand_uniform(&s->rng);
    if (s->top_p > 0.0f && s->top_p < 1.0f) {
        prob_idx *pi = malloc((size_t)V * sizeof *pi);
        if (pi) {
            for (int i = 0; i < V; i++) pi[i] = (prob_idx){logits[i], i};
            qsort(pi, (size_t)V, sizeof *pi, cmp_prob_desc);
            float cum = 0.0f;
            int n = 0;
            while (n < V && (n == 0 || cum < s->top_p)) cum += pi[n++].p;
            float target = r * cum, acc = 0.0f;
            int32_t pick = pi[n - 1].i;
            for (int j = 0; j < n; j++) {
                acc += pi[j].p;
                if (target < acc) {
                    pick = pi[j].i;
                    break;
                }
            }
            free(pi);
            return pick;
        }
    }
    float acc = 0.0f;
    for (int i = 0; i < V; i++) {
        acc += logits[i];
        if (r < acc) return i;
    }
    return V - 1;
}

int kd_model_generate(const kd_model *m, kd_kv_cache *c, const int32_t *prompt, int n_prompt, int max_new, kd_sampler *s,
                      const int32_t *stop, int n_stop, int32_t *out) {
    const float *lg = NULL;
    for (int i = 0; i < n_prompt; i++)
        if (!(lg = kd_model_decode_step(m, c, prompt[i]))) return 0;
    if (!lg) return 0;
    int n = 0;
    while (n < max_new) {
        int32_t tok = kd_sampler_next(s, c->logits, m->cfg.vocab_size);
        out[n++] = tok;
        for (int j = 0; j < n_stop; j++)
            if (tok == stop[j]) return n;
        if (n == max_new || !kd_model_decode_step(m, c, tok)) break;
    }
    return n;
}

/* ---- Several rows at once (continuous batching) ---- */

struct kd_batch_scratch {
    int cap;
    int invariant; /* 1: the products by rows_invariant (a row's result whatever rows share the call) */
    float *x, *xb, *q, *k, *v, *ao, *hb, *hb2, *xn;
};

void kd_batch_scratch_set_invariant(kd_batch_scratch *s, int on) { s->invariant = on != 0; }

int kd_kv_cache_copy_prefix(const kd_model *m, kd_kv_cache *dst, const kd_kv_cache *src, int n, kd_error *err) {
    if (n < 0 || n > src->pos || n > dst->max_T)
        return kd_error_set(err, KD_ERR_INVALID, "kv cache: cannot copy %d positions (the source holds %d, the target has room for %d)",
                            n, src->pos, dst->max_T);
    size_t KD = (size_t)m->cfg.num_kv_heads * m->cfg.head_dim;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        memcpy(dst->k + (size_t)l * dst->max_T * KD, src->k + (size_t)l * src->max_T * KD, (size_t)n * KD * sizeof(float));
        memcpy(dst->v + (size_t)l * dst->max_T * KD, src->v + (size_t)l * src->max_T * KD, (size_t)n * KD * sizeof(float));
    }
    dst->pos = n;
    return KD_OK;
}

int kd_batch_scratch_new(const kd_model *m, int cap, kd_batch_scratch **out, kd_error *err) {
    const kd_model_config *c = &m->cfg;
    size_t C = (size_t)c->hidden_size, QD = (size_t)c->num_heads * c->head_dim, KD = (size_t)c->num_kv_heads * c->head_dim;
    size_t FF = (size_t)c->intermediate_size, n = (size_t)cap;
    kd_batch_scratch *s = kd_calloc(1, sizeof *s);
    if (!s) return kd_error_set(err, KD_ERR_NOMEM, "batch decode: out of memory");
    s->cap = cap;
    s->x = kd_calloc(n * C, sizeof(float));
    s->xb = kd_calloc(n * C, sizeof(float));
    s->xn = kd_calloc(n * C, sizeof(float));
    s->q = kd_calloc(n * QD, sizeof(float));
    s->k = kd_calloc(n * KD, sizeof(float));
    s->v = kd_calloc(n * KD, sizeof(float));
    s->ao = kd_calloc(n * QD, sizeof(float));
    s->hb = kd_calloc(n * FF, sizeof(float));
    s->hb2 = kd_calloc(n * FF, sizeof(float));
    if (!s->x || !s->xb || !s->xn || !s->q || !s->k || !s->v || !s->ao || !s->hb || !s->hb2) {
        kd_batch_scratch_free(s);
        return kd_error_set(err, KD_ERR_NOMEM, "batch decode: out of memory for %d rows", cap);
    }
    *out = s;
    return KD_OK;
}

void kd_batch_scratch_free(kd_batch_scratch *s) {
    if (!s) return;
    free(s->x);
    free(s->xb);
    free(s->xn);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->ao);
    free(s->hb);
    free(s->hb2);
    free(s);
}

/* ---- Batch-invariant products ----
 * Y[r, o] (+)= X[r, :] . W[o, :] with every element computed by the same instruction sequence,
 * whatever n, O, the tiling or the thread count: lane j of an 8-wide accumulator sums the products of
 * k = j (mod 8) in increasing k, the lanes fold in a fixed tree, the K % 8 tail follows in order, and
 * accumulate adds the result to Y last. A block is 4 outputs x 2 rows; a short last block repeats its
 * last output or row and stores only the real ones, so no element ever takes another code path. A
 * row's result therefore does not depend on which other rows share the call (BLAS kernels change
 * their summation order with the shape), which is what makes batched greedy decoding byte-identical
 * to decoding one prompt at a time. */
typedef float kd_v8 __attribute__((vector_size(32)));
typedef float kd_v8u __attribute__((vector_size(32), aligned(4), may_alias));

static inline __attribute__((always_inline)) float fold8(const kd_v8 *v) {
    const kd_v8 a = *v; /* by pointer: a vector argument by value changes the ABI without -mavx (clang -Wpsabi) */
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

static inline __attribute__((always_inline)) void invariant_block(float *Y, const float *X, const float *W, int n, int O, int K, int accumulate, int o0, int r0) {
    const float *w[4], *x[2];
    for (int j = 0; j < 4; j++) w[j] = W + (size_t)(o0 + j < O ? o0 + j : O - 1) * K;
    for (int i = 0; i < 2; i++) x[i] = X + (size_t)(r0 + i < n ? r0 + i : n - 1) * K;
    kd_v8 a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0};
    int K8 = K & ~7;
    for (int k = 0; k < K8; k += 8) {
        kd_v8 xa = *(const kd_v8u *)(x[0] + k), xb = *(const kd_v8u *)(x[1] + k), wv;
        wv = *(const kd_v8u *)(w[0] + k), a00 += wv * xa, a01 += wv * xb;
        wv = *(const kd_v8u *)(w[1] + k), a10 += wv * xa, a11 += wv * xb;
        wv = *(const kd_v8u *)(w[2] + k), a20 += wv * xa, a21 += wv * xb;
        wv = *(const kd_v8u *)(w[3] + k), a30 += wv * xa, a31 += wv * xb;
    }
    float s[4][2] = {{fold8(&a00), fold8(&a01)}, {fold8(&a10), fold8(&a11)}, {fold8(&a20), fold8(&a21)}, {fold8(&a30), fold8(&a31)}};
    for (int k = K8; k < K; k++)
        for (int j = 0; j < 4; j++)
            for (int i = 0; i < 2; i++) s[j][i] += w[j][k] * x[i][k];
    for (int i = 0; i < 2 && r0 + i < n; i++)
        for (int j = 0; j < 4 && o0 + j < O; j++) {
            float *y = Y + (size_t)(r0 + i) * O + o0 + j;
            *y = accumulate ? *y + s[j][i] : s[j][i];
        }
}

/* Output blocks ob0..ob1 (of 4) for rows r0..r1 (r1 <= n). */
KD_HOT_CLONES static void invariant_span(float *Y, const float *X, const float *W, int n, int O, int K, int accumulate, int ob0,
                                         int ob1, int r0, int r1) {
    for (int ob = ob0; ob < ob1; ob++)
        for (int r = r0; r < r1; r += 2) invariant_block(Y, X, W, r1, O, K, accumulate, ob * 4, r);
}

static void rows_invariant(float *Y, const float *X, const float *W, int n, int O, int K, int accumulate) {
    int nob = (O + 3) / 4, tile = 64; /* rows per tile (even): its X rows stay in cache while W streams */
    double work = (double)n * O * K;
#pragma omp parallel if (work > 2e6)
    {
        int nt = omp_get_num_threads(), me = omp_get_thread_num();
        int ob0 = (int)((long)nob * me / nt), ob1 = (int)((long)nob * (me + 1) / nt);
        for (int t0 = 0; t0 < n; t0 += tile) /* each thread its own outputs: no barrier needed */
            invariant_span(Y, X, W, n, O, K, accumulate, ob0, ob1, t0, t0 + tile < n ? t0 + tile : n);
    }
}

/* Y[n, O] (+)= X[n, K] . W[O, K]^T */
static void rows_matmul(float *Y, const float *X, const float *W, int n, int O, int K, float beta, int invariant) {
    if (invariant) {
        rows_invariant(Y, X, W, n, O, K, beta != 0.0f);
        return;
    }
    if (n == 1) { /* one row: sgemv, which OpenBLAS runs faster than a 1-row sgemm */
        matvec(Y, W, X, O, K, beta);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, O, K, 1.0f, X, K, W, K, beta, Y, O);
}

/* One query row against positions 0..pos of its cache (head h, kv head kh). The q.k dots run in 8
 * lanes with a fixed fold (D % 8 == 0; else in order), so the vector code is free to interleave
 * positions without changing any score. */
KD_HOT_CLONES static void attend_row(const float *q, const float *kl, const float *vl, int pos, int KD, int D, int kh,
                                     float scale, float *att, float *o) {
    float mx = -INFINITY, sum = 0.0f;
    if (D % 8 == 0) { /* four positions at a time (the last block repeats its last position) */
        for (int j = 0; j <= pos; j += 4) {
            const float *k0 = kl + (size_t)j * KD + kh * D, *k1 = kl + (size_t)(j + 1 <= pos ? j + 1 : pos) * KD + kh * D;
            const float *k2 = kl + (size_t)(j + 2 <= pos ? j + 2 : pos) * KD + kh * D;
            const float *k3 = kl + (size_t)(j + 3 <= pos ? j + 3 : pos) * KD + kh * D;
            kd_v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int i = 0; i < D; i += 8) {
                kd_v8 qv = *(const kd_v8u *)(q + i);
                a0 += qv * *(const kd_v8u *)(k0 + i), a1 += qv * *(const kd_v8u *)(k1 + i);
                a2 += qv * *(const kd_v8u *)(k2 + i), a3 += qv * *(const kd_v8u *)(k3 + i);
            }
            float sc[4] = {fold8(&a0) * scale, fold8(&a1) * scale, fold8(&a2) * scale, fold8(&a3) * scale};
            for (int t = 0; t < 4 && j + t <= pos; t++) att[j + t] = sc[t];
        }
    } else {
        for (int j = 0; j <= pos; j++) {
            const float *kj = kl + (size_t)j * KD + kh * D;
            float s = 0.0f;
            for (int i = 0; i < D; i++) s += q[i] * kj[i];
            att[j] = s * scale;
        }
    }
    for (int j = 0; j <= pos; j++) mx = att[j] > mx ? att[j] : mx;
    for (int j = 0; j <= pos; j++) {
        att[j] = expf(att[j] - mx);
        sum += att[j];
    }
    memset(o, 0, (size_t)D * sizeof(float));
    for (int j = 0; j <= pos; j++) {
        const float *vj = vl + (size_t)j * KD + kh * D;
        float p = att[j] / sum;
        for (int i = 0; i < D; i++) o[i] += p * vj[i];
    }
}

int kd_model_step_rows(const kd_model *m, kd_batch_scratch *s, int n, kd_kv_cache *const *kv, const int32_t *tokens,
                       const int *want_logits, float *logits, kd_error *err) {
    const kd_model_config *c = &m->cfg;
    int C = c->hidden_size, D = c->head_dim, Hq = c->num_heads, Hkv = c->num_kv_heads, FF = c->intermediate_size;
    int QD = Hq * D, KD = Hkv * D, grp = Hq / Hkv, V = c->vocab_size;
    float eps = c->rms_norm_eps, scale = 1.0f / sqrtf((float)D);
    if (n <= 0 || n > s->cap) return kd_error_set(err, KD_ERR_INVALID, "batch decode: %d rows (scratch holds %d)", n, s->cap);
    /* positions: a cache's rows in this batch take consecutive positions from its pos */
    int *pos = malloc((size_t)n * sizeof *pos);
    if (!pos) return kd_error_set(err, KD_ERR_NOMEM, "batch decode: out of memory");
    for (int r = 0; r < n; r++) {
        int p = kv[r]->pos;
        for (int q = 0; q < r; q++) p += kv[q] == kv[r];
        pos[r] = p;
        if (p >= kv[r]->max_T || tokens[r] < 0 || tokens[r] >= V) {
            free(pos);
            return kd_error_set(err, KD_ERR_INVALID, "batch decode: token %d at position %d does not fit (cache %d, vocab %d)",
                                tokens[r], p, kv[r]->max_T, V);
        }
        memcpy(s->x + (size_t)r * C, m->w.embed + (size_t)tokens[r] * C, (size_t)C * sizeof(float));
    }
    for (int l = 0; l < c->num_layers; l++) {
        const kd_layer_weights *w = &m->w.layers[l];
        for (int r = 0; r < n; r++) rmsnorm(s->xb + (size_t)r * C, s->x + (size_t)r * C, w->input_norm, C, eps);
        rows_matmul(s->q, s->xb, w->q_proj, n, QD, C, 0.0f, s->invariant);
        rows_matmul(s->k, s->xb, w->k_proj, n, KD, C, 0.0f, s->invariant);
        rows_matmul(s->v, s->xb, w->v_proj, n, KD, C, 0.0f, s->invariant);
        for (int r = 0; r < n; r++) {
            for (int h = 0; h < Hq; h++) norm_rope(s->q + (size_t)r * QD + h * D, w->q_norm, D, eps, pos[r], c->rope_theta);
            for (int h = 0; h < Hkv; h++) norm_rope(s->k + (size_t)r * KD + h * D, w->k_norm, D, eps, pos[r], c->rope_theta);
            size_t at = ((size_t)l * kv[r]->max_T + (size_t)pos[r]) * KD;
            memcpy(kv[r]->k + at, s->k + (size_t)r * KD, (size_t)KD * sizeof(float));
            memcpy(kv[r]->v + at, s->v + (size_t)r * KD, (size_t)KD * sizeof(float));
        }
        long work = 0; /* threads only pay off for long contexts or many rows (a parallel region costs
                        * tens of microseconds, far more on a busy machine) */
        for (int r = 0; r < n; r++) work += (long)(pos[r] + 1) * D * Hq;
#pragma omp parallel for schedule(dynamic, 1) if (work > 4000000)
        for (int t = 0; t < n * Hq; t++) {
            int r = t / Hq, h = t % Hq;
            const kd_kv_cache *kc = kv[r];
            float local[1024]; /* attention weights; longer contexts take the heap */
            float *buf = pos[r] < 1024 ? local : malloc((size_t)(pos[r] + 1) * sizeof(float));
            if (!buf) continue;
            const float *kl = kc->k + (size_t)l * kc->max_T * KD, *vl = kc->v + (size_t)l * kc->max_T * KD;
            attend_row(s->q + (size_t)r * QD + h * D, kl, vl, pos[r], KD, D, h / grp, scale, buf, s->ao + (size_t)r * QD + h * D);
            if (buf != local) free(buf);
        }
        rows_matmul(s->x, s->ao, w->o_proj, n, C, QD, 1.0f, s->invariant);
        for (int r = 0; r < n; r++) rmsnorm(s->xb + (size_t)r * C, s->x + (size_t)r * C, w->post_norm, C, eps);
        rows_matmul(s->hb, s->xb, w->gate_proj, n, FF, C, 0.0f, s->invariant);
        rows_matmul(s->hb2, s->xb, w->up_proj, n, FF, C, 0.0f, s->invariant);
        for (size_t i = 0; i < (size_t)n * FF; i++) s->hb[i] = s->hb[i] / (1.0f + expf(-s->hb[i])) * s->hb2[i];
        rows_matmul(s->x, s->hb, w->down_proj, n, C, FF, 1.0f, s->invariant);
    }
    int nl = 0;
    for (int r = 0; r < n; r++)
        if (want_logits[r]) rmsnorm(s->xn + (size_t)(nl++) * C, s->x + (size_t)r * C, m->w.final_norm, C, eps);
    if (nl) rows_matmul(logits, s->xn, m->w.lm_head, nl, V, C, 0.0f, s->invariant);
    for (int r = 0; r < n; r++) kv[r]->pos = kv[r]->pos > pos[r] + 1 ? kv[r]->pos : pos[r] + 1;
    free(pos);
    return KD_OK;
}
