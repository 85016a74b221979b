/* Token-by-token decoding with a KV cache (batch 1), and sampling (greedy, temperature, top-p).
 * Same arithmetic as the batched forward (model.c), one row at a time with sgemv. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/hash.h"
#include "kdstep/model.h"

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
