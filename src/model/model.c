/* The Qwen3 student: config, memory, init, forward, backward, AdamW. See include/kdstep/model.h. */
#include "kdstep/model.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/simd.h"
#include "model_internal.h"


/* ------------------------------------------------------------------ config */

static int get_int(json_t *root, const char *key, int def, int *out, const char *path, kd_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (def < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: missing required key \"%s\"", path, key);
        *out = def;
        return KD_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0x7fffffff)
        return kd_error_set(err, KD_ERR_INVALID, "%s: \"%s\" must be a non-negative integer", path, key);
    *out = (int)json_integer_value(v);
    return KD_OK;
}

static int get_num(json_t *root, const char *key, double def, float *out, const char *path, kd_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = (float)def;
        return KD_OK;
    }
    if (!json_is_number(v)) return kd_error_set(err, KD_ERR_INVALID, "%s: \"%s\" must be a number", path, key);
    *out = (float)json_number_value(v);
    return KD_OK;
}

int kd_model_config_validate(const kd_model_config *c, kd_error *err) {
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->intermediate_size <= 0 || c->num_layers <= 0 ||
        c->num_heads <= 0 || c->num_kv_heads <= 0 || c->head_dim <= 0 || c->max_position_embeddings <= 0)
        return kd_error_set(err, KD_ERR_INVALID, "model config: every size (vocab, hidden, intermediate, layers, heads, kv heads, head_dim, max positions) must be positive");
    if (c->num_heads % c->num_kv_heads != 0)
        return kd_error_set(err, KD_ERR_INVALID, "model config: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)", c->num_heads, c->num_kv_heads);
    if (c->head_dim % 2 != 0) return kd_error_set(err, KD_ERR_INVALID, "model config: head_dim (%d) must be even for RoPE", c->head_dim);
    if (!(c->rope_theta > 0) || !(c->rms_norm_eps > 0))
        return kd_error_set(err, KD_ERR_INVALID, "model config: rope_theta and rms_norm_eps must be positive");
    return KD_OK;
}

int kd_model_config_load(const char *path, kd_model_config *c, kd_error *err) {
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return kd_error_set(err, KD_ERR_PARSE, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
    int rc = KD_OK;
    if (!json_is_object(root)) rc = kd_error_set(err, KD_ERR_PARSE, "%s: not a JSON object", path);
    json_t *mt = json_object_get(root, "model_type");
    if (!rc && mt && json_is_string(mt) && strcmp(json_string_value(mt), "qwen3") != 0)
        rc = kd_error_set(err, KD_ERR_UNSUPPORTED, "%s: model_type is \"%s\"; only \"qwen3\" is supported", path, json_string_value(mt));
    json_t *act = json_object_get(root, "hidden_act");
    if (!rc && act && !(json_is_string(act) && strcmp(json_string_value(act), "silu") == 0))
        rc = kd_error_set(err, KD_ERR_UNSUPPORTED, "%s: hidden_act is %s%s%s; only \"silu\" (Qwen3's SwiGLU) is supported", path,
                          json_is_string(act) ? "\"" : "", json_is_string(act) ? json_string_value(act) : "not a string",
                          json_is_string(act) ? "\"" : "");
    if (!rc) rc = get_int(root, "vocab_size", -1, &c->vocab_size, path, err);
    if (!rc) rc = get_int(root, "hidden_size", -1, &c->hidden_size, path, err);
    if (!rc) rc = get_int(root, "intermediate_size", -1, &c->intermediate_size, path, err);
    if (!rc) rc = get_int(root, "num_hidden_layers", -1, &c->num_layers, path, err);
    if (!rc) rc = get_int(root, "num_attention_heads", -1, &c->num_heads, path, err);
    if (!rc) rc = get_int(root, "num_key_value_heads", c->num_heads, &c->num_kv_heads, path, err);
    if (!rc) rc = get_int(root, "head_dim", c->num_heads ? c->hidden_size / c->num_heads : 0, &c->head_dim, path, err);
    if (!rc) rc = get_int(root, "max_position_embeddings", 32768, &c->max_position_embeddings, path, err);
    if (!rc) {
        json_t *t = json_object_get(root, "tie_word_embeddings");
        if (t && !json_is_boolean(t)) rc = kd_error_set(err, KD_ERR_INVALID, "%s: \"tie_word_embeddings\" must be true or false", path);
        c->tie_word_embeddings = t ? json_is_true(t) : 0; /* Qwen3Config's default */
    }
    /* transformers >= 4.56 may keep rope_theta under rope_parameters. */
    json_t *rp = json_object_get(root, "rope_parameters");
    if (!rc && rp && json_is_object(rp) && json_object_get(rp, "rope_theta") && !json_object_get(root, "rope_theta"))
        rc = get_num(rp, "rope_theta", 10000.0, &c->rope_theta, path, err);
    else if (!rc) rc = get_num(root, "rope_theta", 10000.0, &c->rope_theta, path, err);
    if (!rc) rc = get_num(root, "rms_norm_eps", 1e-6, &c->rms_norm_eps, path, err);
    if (!rc) rc = get_num(root, "initializer_range", 0.02, &c->initializer_range, path, err);
    json_t *rs = json_object_get(root, "rope_scaling");
    if (!rc && rs && !json_is_null(rs))
        rc = kd_error_set(err, KD_ERR_UNSUPPORTED, "%s: rope_scaling is set; only plain RoPE (rope_scaling null) is supported", path);
    json_decref(root);
    if (!rc && (rc = kd_model_config_validate(c, err)) != KD_OK) kd_error_prefix(err, "%s: ", path);
    return rc;
}

int kd_model_config_preset(const char *name, kd_model_config *c, kd_error *err) {
    char path[4096];
    if (strchr(name, '/') || strstr(name, ".json")) snprintf(path, sizeof path, "%s", name);
    else snprintf(path, sizeof path, "%s/configs/models/%s.json", KD_SOURCE_DIR, name);
    if (!kd_path_exists(path))
        return kd_error_set(err, KD_ERR_NOTFOUND, "model preset '%s' not found (%s); use tiny, small, qwen3-0.6b or a config.json path", name, path);
    return kd_model_config_load(path, c, err);
}

int kd_model_config_write(const char *path, const kd_model_config *c, kd_error *err) {
    return kd_model_config_write_dtype(path, c, "float32", err);
}

int kd_model_config_write_dtype(const char *path, const kd_model_config *c, const char *torch_dtype, kd_error *err) {
    json_t *o = json_object();
    json_object_set_new(o, "architectures", json_pack("[s]", "Qwen3ForCausalLM"));
    json_object_set_new(o, "model_type", json_string("qwen3"));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->num_layers));
    json_object_set_new(o, "num_attention_heads", json_integer(c->num_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->num_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(o, "rms_norm_eps", json_real(c->rms_norm_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(o, "rope_scaling", json_null());
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "attention_bias", json_false());
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    json_object_set_new(o, "initializer_range", json_real(c->initializer_range));
    json_object_set_new(o, "use_sliding_window", json_false());
    json_object_set_new(o, "torch_dtype", json_string(torch_dtype));
    json_object_set_new(o, "use_cache", json_true());
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!s) return kd_error_set(err, KD_ERR_NOMEM, "config.json: out of memory");
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return kd_error_set(err, KD_ERR_NOMEM, "config.json: out of memory");
    }
    t[n] = '\n';
    t[n + 1] = 0;
    int rc = kd_write_file_atomic(path, t, n + 1, err);
    free(t);
    return rc;
}

size_t kd_model_config_num_params(const kd_model_config *c) {
    size_t C = (size_t)c->hidden_size, FF = (size_t)c->intermediate_size, D = (size_t)c->head_dim;
    size_t QD = (size_t)c->num_heads * D, KD = (size_t)c->num_kv_heads * D, V = (size_t)c->vocab_size;
    size_t layer = C + QD * C + 2 * KD * C + C * QD + 2 * D + C + 3 * FF * C;
    return V * C + (size_t)c->num_layers * layer + C + (c->tie_word_embeddings ? 0 : V * C);
}

/* ------------------------------------------------------------------ memory */

typedef struct acts {
    int L;
    float **res; /* L+1 x [BT, C]: input of each layer, then the final residual */
    float **ln1, **rstd1, **qraw, **kraw, **qrstd, **krstd, **q, **k, **v, **att, **y, **mid, **ln2, **rstd2, **gate,
        **up, **h;
    float *lnf, *rstdf;
    /* backward scratch, reused by every layer */
    float *dres, *dln, *dq, *dk, *dv, *dy, *dgate, *dup, *dh, *dscratch; /* dscratch: per thread [T, T] */
    float *rope_cos, *rope_sin; /* [T, D/2] */
    int32_t *ids, *len;
    float *buf;
    int nthreads;
} acts;

static void add_tensor(kd_model *m, size_t *off, const char *name, int ndim, int64_t d0, int64_t d1, int decay) {
    kd_model_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 2 ? d1 : 0;
    t->numel = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
    t->offset = *off;
    t->decay = decay;
    *off += t->numel;
}

static void point_weights(kd_model *m, float *base, kd_model_weights *w) {
    int ti = 0;
    w->embed = base + m->tensors[ti++].offset;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        kd_layer_weights *lw = &w->layers[l];
        lw->input_norm = base + m->tensors[ti++].offset;
        lw->q_proj = base + m->tensors[ti++].offset;
        lw->k_proj = base + m->tensors[ti++].offset;
        lw->v_proj = base + m->tensors[ti++].offset;
        lw->o_proj = base + m->tensors[ti++].offset;
        lw->q_norm = base + m->tensors[ti++].offset;
        lw->k_norm = base + m->tensors[ti++].offset;
        lw->post_norm = base + m->tensors[ti++].offset;
        lw->gate_proj = base + m->tensors[ti++].offset;
        lw->up_proj = base + m->tensors[ti++].offset;
        lw->down_proj = base + m->tensors[ti++].offset;
    }
    w->final_norm = base + m->tensors[ti++].offset;
    w->lm_head = m->cfg.tie_word_embeddings ? w->embed : base + m->tensors[ti++].offset;
}

static float rope_inv_freq(const kd_model_config *c, int i) {
    /* As HF: inv_freq = 1 / theta ** (arange(0, D, 2).float() / D), in float32. */
    return 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
}

static float *falloc(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)) != 0) return NULL;
    memset(p, 0, (n ? n : 1) * sizeof(float));
    return p;
}

/* The parameter layout: HF names and shapes in order, each tensor's offset into one flat array. */
static void layout_tensors(kd_model *m) {
    const kd_model_config *cfg = &m->cfg;
    int L = cfg->num_layers;
    size_t C = (size_t)cfg->hidden_size, FF = (size_t)cfg->intermediate_size, D = (size_t)cfg->head_dim;
    size_t QD = (size_t)cfg->num_heads * D, KD = (size_t)cfg->num_kv_heads * D, V = (size_t)cfg->vocab_size;
    size_t off = 0;
    char name[KD_MODEL_NAME_MAX];
    add_tensor(m, &off, "model.embed_tokens.weight", 2, (int64_t)V, (int64_t)C, 1);
    for (int l = 0; l < L; l++) {
#define T2(suffix, d0, d1) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), add_tensor(m, &off, name, 2, (int64_t)(d0), (int64_t)(d1), 1))
#define T1(suffix, d0) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), add_tensor(m, &off, name, 1, (int64_t)(d0), 0, 0))
        T1("input_layernorm.weight", C);
        T2("self_attn.q_proj.weight", QD, C);
        T2("self_attn.k_proj.weight", KD, C);
        T2("self_attn.v_proj.weight", KD, C);
        T2("self_attn.o_proj.weight", C, QD);
        T1("self_attn.q_norm.weight", D);
        T1("self_attn.k_norm.weight", D);
        T1("post_attention_layernorm.weight", C);
        T2("mlp.gate_proj.weight", FF, C);
        T2("mlp.up_proj.weight", FF, C);
        T2("mlp.down_proj.weight", C, FF);
#undef T1
#undef T2
    }
    add_tensor(m, &off, "model.norm.weight", 1, (int64_t)C, 0, 0);
    if (!cfg->tie_word_embeddings) add_tensor(m, &off, "lm_head.weight", 2, (int64_t)V, (int64_t)C, 1);
    m->n_params = off;
}

/* Parameters (and for training gradients and AdamW moments), and the weight pointers into them.
 * Returns 0, or -1 when out of memory. */
static int alloc_params(kd_model *m, int training) {
    size_t C = (size_t)m->cfg.hidden_size, FF = (size_t)m->cfg.intermediate_size;
    m->params = falloc(m->n_params);
    if (!m->params) return -1;
    if (training) {
        m->grads = falloc(m->n_params);
        m->adam_m = falloc(m->n_params);
        m->adam_v = falloc(m->n_params);
        if (!m->grads || !m->adam_m || !m->adam_v) return -1;
        point_weights(m, m->grads, &m->g);
    }
    point_weights(m, m->params, &m->w);
    for (int l = 0; l < m->cfg.num_layers; l++) /* the fused gate/up products rely on it */
        if (m->w.layers[l].up_proj != m->w.layers[l].gate_proj + FF * C) return -1;
    return 0;
}

/* Activations: one allocation, carved up. Returns 0, or -1 when out of memory. */
static int alloc_acts(kd_model *m, acts *a, int training) {
    const kd_model_config *cfg = &m->cfg;
    int L = cfg->num_layers, B = m->B, T = m->T;
    size_t C = (size_t)cfg->hidden_size, FF = (size_t)cfg->intermediate_size, D = (size_t)cfg->head_dim;
    size_t Hq = (size_t)cfg->num_heads, Hkv = (size_t)cfg->num_kv_heads, V = (size_t)cfg->vocab_size;
    size_t QD = Hq * D, KD = Hkv * D, BT = (size_t)B * (size_t)T;
    a->L = L;
    a->nthreads = omp_get_max_threads();
    size_t per_layer = BT * C * 4 + BT * 2 + BT * QD * 3 + BT * KD * 3 + BT * (Hq + Hkv) + (size_t)B * Hq * (size_t)T * (size_t)T + BT * FF * 3;
    /* Inference keeps no per-layer activations: every layer reuses one set, the residual alternates
     * between two buffers, and there is no backward scratch. */
    int nsets = training ? L : 1;
    size_t total = (size_t)nsets * per_layer + BT * C * 3 + BT /* res[L] (+1 alternate), lnf, rstdf */ + BT * V /* logits */ +
                   (training ? BT * C * 2 + BT * QD * 2 + BT * KD * 2 + BT * FF * 3 + (size_t)a->nthreads * (size_t)T * (size_t)T : 0) +
                   (size_t)T * D /* rope */;
    a->buf = falloc(total);
    float ***lists[] = {&a->res, &a->ln1, &a->rstd1, &a->qraw, &a->kraw, &a->qrstd, &a->krstd, &a->q, &a->k, &a->v,
                        &a->att, &a->y, &a->mid, &a->ln2, &a->rstd2, &a->gate, &a->up, &a->h};
    for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
        *lists[i] = kd_calloc((size_t)L + 1, sizeof(float *));
        if (!*lists[i]) return -1;
    }
    a->ids = kd_calloc(BT, sizeof(int32_t));
    a->len = kd_calloc((size_t)B, sizeof(int32_t));
    if (!a->buf || !a->ids || !a->len) return -1;
    float *p = a->buf;
#define TAKE(n) (p += (n), p - (n))
    for (int l = 0; l < L; l++) {
        if (l >= nsets) {
            float ***all[] = {&a->ln1, &a->rstd1, &a->qraw, &a->kraw, &a->qrstd, &a->krstd, &a->q, &a->k, &a->v,
                              &a->att, &a->y, &a->mid, &a->ln2, &a->rstd2, &a->gate, &a->up, &a->h};
            for (size_t i = 0; i < sizeof all / sizeof *all; i++) (*all[i])[l] = (*all[i])[0];
            continue;
        }
        a->res[l] = TAKE(BT * C);
        a->ln1[l] = TAKE(BT * C);
        a->rstd1[l] = TAKE(BT);
        a->qraw[l] = TAKE(BT * QD);
        a->kraw[l] = TAKE(BT * KD);
        a->qrstd[l] = TAKE(BT * Hq);
        a->krstd[l] = TAKE(BT * Hkv);
        a->q[l] = TAKE(BT * QD);
        a->k[l] = TAKE(BT * KD);
        a->v[l] = TAKE(BT * KD);
        a->att[l] = TAKE((size_t)B * Hq * (size_t)T * (size_t)T);
        a->y[l] = TAKE(BT * QD);
        a->mid[l] = TAKE(BT * C);
        a->ln2[l] = TAKE(BT * C);
        a->rstd2[l] = TAKE(BT);
        /* gate and up share one [BT, 2*FF] buffer (row r: gate then up): gate_proj and up_proj are
         * adjacent in params, so one sgemm computes both, and one pair does their backward */
        a->gate[l] = TAKE(2 * BT * FF);
        a->up[l] = a->gate[l] + FF;
        a->h[l] = TAKE(BT * FF);
    }
    if (training) a->res[L] = TAKE(BT * C);
    else { /* the residual alternates between res[0] and one more buffer */
        float *alt = TAKE(BT * C);
        for (int l = 1; l <= L; l++) a->res[l] = l % 2 ? alt : a->res[0];
    }
    a->lnf = TAKE(BT * C);
    a->rstdf = TAKE(BT);
    m->logits = TAKE(BT * V);
    if (training) {
        a->dres = TAKE(BT * C);
        a->dln = TAKE(BT * C);
        a->dq = TAKE(BT * QD);
        a->dy = TAKE(BT * QD);
        a->dk = TAKE(BT * KD);
        a->dv = TAKE(BT * KD);
        a->dgate = TAKE(2 * BT * FF);
        a->dup = a->dgate + FF;
        a->dh = TAKE(BT * FF);
        a->dscratch = TAKE((size_t)a->nthreads * (size_t)T * (size_t)T);
    }
    a->rope_cos = TAKE((size_t)T * D / 2);
    a->rope_sin = TAKE((size_t)T * D / 2);
#undef TAKE
    return 0;
}

/* The rotary tables, and the norms' weights at 1 (the other weights stay 0 until initialized or loaded). */
static void init_tables(kd_model *m, acts *a) {
    size_t D = (size_t)m->cfg.head_dim;
    for (int t = 0; t < m->T; t++)
        for (size_t i = 0; i < D / 2; i++) {
            float ang = (float)t * rope_inv_freq(&m->cfg, (int)i);
            a->rope_cos[(size_t)t * D / 2 + i] = cosf(ang);
            a->rope_sin[(size_t)t * D / 2 + i] = sinf(ang);
        }
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].ndim == 1)
            for (size_t j = 0; j < m->tensors[i].numel; j++) m->params[m->tensors[i].offset + j] = 1.0f;
}

static int model_alloc(const kd_model_config *cfg, int B, int T, int training, kd_model **out, kd_error *err) {
    *out = NULL;
    int rc = kd_model_config_validate(cfg, err);
    if (rc) return rc;
    if (B <= 0 || T <= 0) return kd_error_set(err, KD_ERR_INVALID, "model: batch (%d) and sequence length (%d) must be positive", B, T);
    if (T > cfg->max_position_embeddings)
        return kd_error_set(err, KD_ERR_INVALID, "model: sequence length %d exceeds max_position_embeddings %d", T, cfg->max_position_embeddings);
    kd_model *m = kd_calloc(1, sizeof *m);
    acts *a = kd_calloc(1, sizeof *a);
    if (!m || !a) {
        free(m);
        free(a);
        return kd_error_set(err, KD_ERR_NOMEM, "model: out of memory");
    }
    m->cfg = *cfg;
    m->B = B;
    m->T = T;
    m->T_max = T;
    m->priv = a;
    int L = cfg->num_layers;
    m->tensors = kd_calloc((size_t)(L * 11 + 3), sizeof *m->tensors);
    m->w.layers = kd_calloc((size_t)L, sizeof(kd_layer_weights));
    m->g.layers = kd_calloc((size_t)L, sizeof(kd_layer_weights));
    if (!m->tensors || !m->w.layers || !m->g.layers) goto oom;
    layout_tensors(m);
    if (alloc_params(m, training) || alloc_acts(m, a, training)) goto oom;
    init_tables(m, a);
    *out = m;
    return KD_OK;
oom:
    kd_model_free(m);
    return kd_error_set(err, KD_ERR_NOMEM, "model: out of memory allocating %zu parameters for batch %d x %d", kd_model_config_num_params(cfg), B, T);
}

int kd_model_new(kd_model **out, const kd_model_config *cfg, int B, int T, kd_error *err) {
    return model_alloc(cfg, B, T, 1, out, err);
}

int kd_model_new_inference(kd_model **out, const kd_model_config *cfg, int B, int T, kd_error *err) {
    return model_alloc(cfg, B, T, 0, out, err);
}

void kd_model_free(kd_model *m) {
    if (!m) return;
    acts *a = m->priv;
    if (a) {
        float ***lists[] = {&a->res, &a->ln1, &a->rstd1, &a->qraw, &a->kraw, &a->qrstd, &a->krstd, &a->q, &a->k, &a->v,
                            &a->att, &a->y, &a->mid, &a->ln2, &a->rstd2, &a->gate, &a->up, &a->h};
        for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) free(*lists[i]);
        free(a->buf);
        free(a->ids);
        free(a->len);
        free(a);
    }
    free(m->params);
    free(m->grads);
    free(m->adam_m);
    free(m->adam_v);
    free(m->tensors);
    free(m->w.layers);
    free(m->g.layers);
    free(m);
}

static float randn(uint64_t *s) {
    /* Box-Muller from two uniforms in (0, 1]. */
    float u1 = 1.0f - kd_rand_uniform(s), u2 = kd_rand_uniform(s);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307f * u2);
}

void kd_model_init_random(kd_model *m, uint64_t seed) {
    uint64_t s = seed ^ 0x6b64737465700000ull;
    for (int i = 0; i < m->n_tensors; i++) {
        kd_model_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        for (size_t j = 0; j < t->numel; j++) p[j] = t->ndim == 1 ? 1.0f : randn(&s) * m->cfg.initializer_range;
    }
}

void kd_model_zero_grad(kd_model *m) {
    if (!m->grads) return;
    size_t n = m->n_params, chunk = 1 << 16;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += chunk) memset(m->grads + i, 0, (n - i < chunk ? n - i : chunk) * sizeof(float));
}

/* ------------------------------------------------------------------ kernels */

/* exp for the softmaxes: Cephes' polynomial with exponent scaling, written so GCC vectorizes it
 * (libm's expf does not vectorize without -ffast-math). Relative error ~1e-7. */
/* The exp loops vectorize only without -ftrapping-math (a compare or a floor that might trap blocks
 * if-conversion); dropping traps changes no value, and the sums of these rows stay in their order. */
#if defined(__GNUC__) && !defined(__clang__)
#define KD_NO_TRAPS __attribute__((optimize("no-trapping-math")))
#else
#define KD_NO_TRAPS
#endif
KD_NO_TRAPS static inline float kd_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = floorf(x * 1.44269504089f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, 4);
    return p * scale;
}

/* out[N, O] = in[N, K] . W[O, K]^T (+ out when accumulate) */
static void matmul_fwd(float *out, const float *in, const float *W, int N, int K, int O, int accumulate) {
    kd_sgemm_rows(CblasNoTrans, CblasTrans, N, O, K, 1.0f, in, K, W, K, accumulate ? 1.0f : 0.0f, out, O);
}
/* din[N, K] (+)= dout[N, O] . W[O, K];  dW[O, K] += dout^T . in */
static void matmul_bwd(float *din, float *dW, const float *dout, const float *in, const float *W, int N, int K, int O,
                       int accumulate_din) {
    kd_sgemm_rows(CblasNoTrans, CblasNoTrans, N, K, O, 1.0f, dout, O, W, K, accumulate_din ? 1.0f : 0.0f, din, K);
    kd_sgemm_rows(CblasTrans, CblasNoTrans, O, K, N, 1.0f, dout, O, in, K, 1.0f, dW, K);
}

static void rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, size_t N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) {
        const float *xr = x + r * (size_t)C;
        float *o = out + r * (size_t)C;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < C; i++) ss += xr[i] * xr[i];
        float s = 1.0f / sqrtf(ss / (float)C + eps);
        rstd[r] = s;
        for (int i = 0; i < C; i++) o[i] = xr[i] * s * w[i];
    }
}

/* dx (+)= d rmsnorm; dw += dy * xhat. The dw reduction runs per thread and is summed after. */
static void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *rstd, const float *w, size_t N, int C,
                        int accumulate, float *scratch /* nthreads * C */) {
    int nt = omp_get_max_threads();
    memset(scratch, 0, (size_t)nt * (size_t)C * sizeof(float));
#pragma omp parallel
    {
        float *mydw = scratch + (size_t)omp_get_thread_num() * (size_t)C;
#pragma omp for schedule(static)
        for (size_t r = 0; r < N; r++) {
            const float *xr = x + r * (size_t)C, *dyr = dy + r * (size_t)C;
            float *dxr = dx + r * (size_t)C;
            float s = rstd[r], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int i = 0; i < C; i++) {
                dot += w[i] * dyr[i] * xr[i];
                mydw[i] += dyr[i] * xr[i] * s;
            }
            dot *= s / (float)C; /* sum(w dy xhat) / C */
            if (accumulate)
                for (int i = 0; i < C; i++) dxr[i] += s * (w[i] * dyr[i] - xr[i] * s * dot);
            else
                for (int i = 0; i < C; i++) dxr[i] = s * (w[i] * dyr[i] - xr[i] * s * dot);
        }
    }
    for (int t = 0; t < nt; t++)
        for (int i = 0; i < C; i++) dw[i] += scratch[(size_t)t * (size_t)C + i];
}

static inline void rope_apply(float *x, const float *cs, const float *sn, int D) {
    int h = D / 2;
    for (int i = 0; i < h; i++) {
        float x1 = x[i], x2 = x[i + h];
        x[i] = x1 * cs[i] - x2 * sn[i];
        x[i + h] = x2 * cs[i] + x1 * sn[i];
    }
}
static inline void rope_back(float *d, const float *cs, const float *sn, int D) {
    int h = D / 2;
    for (int i = 0; i < h; i++) {
        float d1 = d[i], d2 = d[i + h];
        d[i] = d1 * cs[i] + d2 * sn[i];
        d[i + h] = d2 * cs[i] - d1 * sn[i];
    }
}

/* Per-head RMSNorm then RoPE: raw [BT, H*D] -> out, rstd [BT*H]. */
static void qk_norm_rope_fwd(float *out, float *rstd, const float *raw, const float *w, size_t BT, int T, int H, int D, float eps,
                             const float *cosT, const float *sinT) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < BT; r++) {
        int t = (int)(r % (size_t)T);
        for (int h = 0; h < H; h++) {
            size_t o = (r * (size_t)H + (size_t)h) * (size_t)D;
            const float *x = raw + o;
            float *y = out + o;
            float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
            for (int i = 0; i < D; i++) ss += x[i] * x[i];
            float s = 1.0f / sqrtf(ss / (float)D + eps);
            rstd[r * (size_t)H + (size_t)h] = s;
            for (int i = 0; i < D; i++) y[i] = x[i] * s * w[i];
            rope_apply(y, cosT + (size_t)t * (size_t)D / 2, sinT + (size_t)t * (size_t)D / 2, D);
        }
    }
}

/* In place: d (grad of the roped, normed values) -> grad of raw; dw += . */
static void qk_norm_rope_bwd(float *d, float *dw, const float *raw, const float *rstd, const float *w, size_t BT, int T, int H, int D,
                             const float *cosT, const float *sinT, float *scratch) {
    int nt = omp_get_max_threads();
    memset(scratch, 0, (size_t)nt * (size_t)D * sizeof(float));
#pragma omp parallel
    {
        float *mydw = scratch + (size_t)omp_get_thread_num() * (size_t)D;
#pragma omp for schedule(static)
        for (size_t r = 0; r < BT; r++) {
            int t = (int)(r % (size_t)T);
            for (int h = 0; h < H; h++) {
                size_t o = (r * (size_t)H + (size_t)h) * (size_t)D;
                float *dr = d + o;
                const float *x = raw + o;
                rope_back(dr, cosT + (size_t)t * (size_t)D / 2, sinT + (size_t)t * (size_t)D / 2, D);
                float s = rstd[r * (size_t)H + (size_t)h], dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int i = 0; i < D; i++) {
                    dot += w[i] * dr[i] * x[i];
                    mydw[i] += dr[i] * x[i] * s;
                }
                dot *= s / (float)D;
                for (int i = 0; i < D; i++) dr[i] = s * (w[i] * dr[i] - x[i] * s * dot);
            }
        }
    }
    for (int t = 0; t < nt; t++)
        for (int i = 0; i < D; i++) dw[i] += scratch[(size_t)t * (size_t)D + i];
}

/* Row i of a causal attention matrix of n columns: softmax over 0..i, zeros after. */
KD_HOT_CLONES KD_NO_TRAPS static void causal_softmax_row(float *row, int i, int n) {
    float mx = row[0], sum = 0.0f;
#pragma omp simd reduction(max : mx)
    for (int j = 1; j <= i; j++) mx = row[j] > mx ? row[j] : mx;
    for (int j = 0; j <= i; j++) row[j] = kd_expf(row[j] - mx); /* vectorized */
    for (int j = 0; j <= i; j++) sum += row[j];                  /* in order, as it always summed */
    float inv = 1.0f / sum;
    for (int j = 0; j <= i; j++) row[j] *= inv;
    for (int j = i + 1; j < n; j++) row[j] = 0.0f;
}

/* SwiGLU of one row: h = silu(g) * u, and its backward (dg, du from dh). */
KD_HOT_CLONES KD_NO_TRAPS static void swiglu_fwd_row(float *hr, const float *g, const float *u, int FF) {
    for (int i = 0; i < FF; i++) hr[i] = g[i] / (1.0f + kd_expf(-g[i])) * u[i];
}
KD_HOT_CLONES KD_NO_TRAPS static void swiglu_bwd_row(float *dg, float *du, const float *gt, const float *up, const float *dhr, int FF) {
    for (int i = 0; i < FF; i++) {
        float s = 1.0f / (1.0f + kd_expf(-gt[i])), silu = gt[i] * s;
        du[i] = dhr[i] * silu;
        dg[i] = dhr[i] * up[i] * s * (1.0f + gt[i] * (1.0f - s));
    }
}

static void attention_fwd(const kd_model *m, float *y, float *att, const float *q, const float *k, const float *v) {
    const acts *a = m->priv;
    int B = m->B, T = m->T, Hq = m->cfg.num_heads, Hkv = m->cfg.num_kv_heads, D = m->cfg.head_dim;
    int QD = Hq * D, KD = Hkv * D, grp = Hq / Hkv;
    float scale = 1.0f / sqrtf((float)D);
    int saved = kd_blas_threads_push();
#pragma omp parallel for schedule(dynamic, 1)
    for (int bh = 0; bh < B * Hq; bh++) {
        int b = bh / Hq, h = bh % Hq, kh = h / grp, n = a->len[b];
        const float *Q = q + (size_t)b * T * QD + (size_t)h * D;
        const float *K = k + (size_t)b * T * KD + (size_t)kh * D;
        const float *Vv = v + (size_t)b * T * KD + (size_t)kh * D;
        float *P = att + (size_t)bh * T * T;
        float *Y = y + (size_t)b * T * QD + (size_t)h * D;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, D, scale, Q, QD, K, KD, 0.0f, P, T);
        double t0 = KD_PROF_START(m);
        for (int i = 0; i < n; i++) causal_softmax_row(P + (size_t)i * T, i, n);
        if (m->profile) {
            double dt = (omp_get_wtime() - t0) / omp_get_num_threads();
#pragma omp atomic
            m->profile[KD_PROF_ATTN_SOFTMAX] += dt;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, n, 1.0f, P, T, Vv, KD, 0.0f, Y, QD);
        for (int i = n; i < T; i++) memset(Y + (size_t)i * QD, 0, (size_t)D * sizeof(float));
    }
    kd_blas_threads_pop(saved);
}

/* dq = d/dq, dk, dv overwritten (GQA: one task per (b, kv head) sums its query heads). */
static void attention_bwd(const kd_model *m, float *dq, float *dk, float *dv, const float *dy, const float *att, const float *q,
                          const float *k, const float *v) {
    const acts *a = m->priv;
    int B = m->B, T = m->T, Hq = m->cfg.num_heads, Hkv = m->cfg.num_kv_heads, D = m->cfg.head_dim;
    int QD = Hq * D, KD = Hkv * D, grp = Hq / Hkv;
    float scale = 1.0f / sqrtf((float)D);
    int saved = kd_blas_threads_push();
#pragma omp parallel for schedule(dynamic, 1) num_threads(a->nthreads)
    for (int bk = 0; bk < B * Hkv; bk++) {
        int b = bk / Hkv, kh = bk % Hkv, n = a->len[b];
        float *dP = a->dscratch + (size_t)omp_get_thread_num() * T * T;
        const float *K = k + (size_t)b * T * KD + (size_t)kh * D, *Vv = v + (size_t)b * T * KD + (size_t)kh * D;
        float *dK = dk + (size_t)b * T * KD + (size_t)kh * D, *dV = dv + (size_t)b * T * KD + (size_t)kh * D;
        for (int i = 0; i < T; i++) {
            memset(dK + (size_t)i * KD, 0, (size_t)D * sizeof(float));
            memset(dV + (size_t)i * KD, 0, (size_t)D * sizeof(float));
        }
        for (int h = kh * grp; h < (kh + 1) * grp; h++) {
            const float *P = att + ((size_t)b * Hq + (size_t)h) * T * T;
            const float *dY = dy + (size_t)b * T * QD + (size_t)h * D, *Q = q + (size_t)b * T * QD + (size_t)h * D;
            float *dQ = dq + (size_t)b * T * QD + (size_t)h * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, D, 1.0f, dY, QD, Vv, KD, 0.0f, dP, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, n, 1.0f, P, T, dY, QD, 1.0f, dV, KD);
            double t0 = KD_PROF_START(m);
            for (int i = 0; i < n; i++) {
                const float *pr = P + (size_t)i * T;
                float *dr = dP + (size_t)i * T, dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int j = 0; j <= i; j++) dot += pr[j] * dr[j];
                for (int j = 0; j <= i; j++) dr[j] = pr[j] * (dr[j] - dot);
                for (int j = i + 1; j < n; j++) dr[j] = 0.0f;
            }
            if (m->profile) {
                double dt = (omp_get_wtime() - t0) / omp_get_num_threads();
#pragma omp atomic
                m->profile[KD_PROF_ATTN_SOFTMAX] += dt;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, n, scale, dP, T, K, KD, 0.0f, dQ, QD);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, n, scale, dP, T, Q, QD, 1.0f, dK, KD);
            for (int i = n; i < T; i++) memset(dQ + (size_t)i * QD, 0, (size_t)D * sizeof(float));
        }
    }
    kd_blas_threads_pop(saved);
}

/* ------------------------------------------------------------------ forward / backward */

#define TIMED(k, ...)                          \
    do {                                       \
        double t0_ = KD_PROF_START(m);         \
        __VA_ARGS__;                           \
        KD_PROF_END(m, k, t0_);                \
    } while (0)

/* dst = src, [N, C] rows over the threads */
static void copy_rows(float *dst, const float *src, size_t N, int C) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < N; r++) memcpy(dst + r * (size_t)C, src + r * (size_t)C, (size_t)C * sizeof(float));
}

/* Everything up to the final norm (a->lnf). */
static int forward_body(kd_model *m, const int32_t *ids, const int32_t *lengths, kd_error *err) {
    acts *a = m->priv;
    const kd_model_config *c = &m->cfg;
    int B = m->B, T = m->T, C = c->hidden_size, FF = c->intermediate_size, D = c->head_dim;
    int Hq = c->num_heads, Hkv = c->num_kv_heads, QD = Hq * D, KD = Hkv * D, V = c->vocab_size;
    size_t BT = (size_t)B * T;
    for (int b = 0; b < B; b++) {
        int n = lengths ? lengths[b] : T;
        if (n < 1 || n > T) return kd_error_set(err, KD_ERR_INVALID, "model forward: lengths[%d] = %d is outside 1..%d", b, n, T);
        a->len[b] = n;
    }
    for (size_t i = 0; i < BT; i++) {
        if (ids[i] < 0 || ids[i] >= V)
            return kd_error_set(err, KD_ERR_INVALID, "model forward: token id %d at position %zu is outside the vocabulary (0..%d)", ids[i], i, V - 1);
        a->ids[i] = ids[i];
    }
    double t0 = KD_PROF_START(m);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < BT; i++) memcpy(a->res[0] + i * C, m->w.embed + (size_t)ids[i] * C, (size_t)C * sizeof(float));
    KD_PROF_END(m, KD_PROF_EMBEDDING, t0);
    float eps = c->rms_norm_eps;
    for (int l = 0; l < c->num_layers; l++) {
        const kd_layer_weights *w = &m->w.layers[l];
        TIMED(KD_PROF_RMSNORM, rmsnorm_fwd(a->ln1[l], a->rstd1[l], a->res[l], w->input_norm, BT, C, eps));
        TIMED(KD_PROF_SGEMM, matmul_fwd(a->qraw[l], a->ln1[l], w->q_proj, (int)BT, C, QD, 0);
              matmul_fwd(a->kraw[l], a->ln1[l], w->k_proj, (int)BT, C, KD, 0);
              matmul_fwd(a->v[l], a->ln1[l], w->v_proj, (int)BT, C, KD, 0));
        TIMED(KD_PROF_QK_NORM_ROPE,
              qk_norm_rope_fwd(a->q[l], a->qrstd[l], a->qraw[l], w->q_norm, BT, T, Hq, D, eps, a->rope_cos, a->rope_sin);
              qk_norm_rope_fwd(a->k[l], a->krstd[l], a->kraw[l], w->k_norm, BT, T, Hkv, D, eps, a->rope_cos, a->rope_sin));
        TIMED(KD_PROF_ATTENTION, attention_fwd(m, a->y[l], a->att[l], a->q[l], a->k[l], a->v[l]));
        TIMED(KD_PROF_RESIDUAL, copy_rows(a->mid[l], a->res[l], BT, C));
        TIMED(KD_PROF_SGEMM, matmul_fwd(a->mid[l], a->y[l], w->o_proj, (int)BT, QD, C, 1));
        TIMED(KD_PROF_RMSNORM, rmsnorm_fwd(a->ln2[l], a->rstd2[l], a->mid[l], w->post_norm, BT, C, eps));
        TIMED(KD_PROF_SGEMM, matmul_fwd(a->gate[l], a->ln2[l], w->gate_proj, (int)BT, C, 2 * FF, 0)); /* gate_proj + up_proj */
        const float *gu = a->gate[l];
        float *h = a->h[l];
        t0 = KD_PROF_START(m);
#pragma omp parallel for schedule(static)
        for (size_t r = 0; r < BT; r++) {
            const float *g = gu + r * 2 * FF;
            swiglu_fwd_row(h + r * FF, g, g + FF, FF);
        }
        KD_PROF_END(m, KD_PROF_SWIGLU, t0);
        TIMED(KD_PROF_RESIDUAL, copy_rows(a->res[l + 1], a->mid[l], BT, C));
        TIMED(KD_PROF_SGEMM, matmul_fwd(a->res[l + 1], a->h[l], w->down_proj, (int)BT, FF, C, 1));
    }
    TIMED(KD_PROF_RMSNORM, rmsnorm_fwd(a->lnf, a->rstdf, a->res[c->num_layers], m->w.final_norm, BT, C, eps));
    return KD_OK;
}

int kd_model_set_seq_len(kd_model *m, int T, kd_error *err) {
    if (T < 1 || T > m->T_max)
        return kd_error_set(err, KD_ERR_INVALID, "model: sequence length %d is outside 1..%d (the length the model was allocated for)", T, m->T_max);
    m->T = T;
    return KD_OK;
}

int kd_model_forward(kd_model *m, const int32_t *ids, const int32_t *lengths, kd_error *err) {
    int rc = forward_body(m, ids, lengths, err);
    if (rc) return rc;
    acts *a = m->priv;
    int T = m->T, C = m->cfg.hidden_size, V = m->cfg.vocab_size, full = 1;
    for (int b = 0; b < m->B; b++) full &= a->len[b] == T;
    /* lm_head is the largest product: with padding, only the real rows of each sequence */
    double t0 = KD_PROF_START(m);
    if (full) matmul_fwd(m->logits, a->lnf, m->w.lm_head, m->B * T, C, V, 0);
    else
        for (int b = 0; b < m->B; b++)
            matmul_fwd(m->logits + (size_t)b * T * V, a->lnf + (size_t)b * T * C, m->w.lm_head, a->len[b], C, V, 0);
    KD_PROF_END(m, KD_PROF_SGEMM, t0);
    return KD_OK;
}

/* Softmax CE of one row; writes the gradient (p - onehot) * gscale into row when gscale != 0. */
KD_HOT_CLONES KD_NO_TRAPS static float logits_ce_row(float *row, int V, int target, float gscale) {
    /* omp simd: a float reduction vectorizes only when reordering is allowed */
    float mx = row[0];
#pragma omp simd reduction(max : mx)
    for (int j = 1; j < V; j++) mx = row[j] > mx ? row[j] : mx;
    for (int j = 0; j < V; j++) row[j] = kd_expf(row[j] - mx);
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sum = 0.0f; /* 8 lanes: vectorized, fixed order */
    int j = 0;
    for (; j + 8 <= V; j += 8)
        for (int k = 0; k < 8; k++) acc[k] += row[j + k];
    for (int k = 0; k < 8; k++) sum += acc[k];
    for (; j < V; j++) sum += row[j];
    float inv = 1.0f / sum, pt = row[target] * inv;
    if (gscale != 0.0f) {
        float s = inv * gscale;
        for (int j = 0; j < V; j++) row[j] *= s;
        row[target] -= gscale;
    }
    return -logf(pt > 1e-30f ? pt : 1e-30f);
}

float kd_model_ce_loss(kd_model *m, const int32_t *targets, float scale) {
    acts *a = m->priv;
    int T = m->T, V = m->cfg.vocab_size;
    size_t BT = (size_t)m->B * T;
    long count = 0;
    for (size_t i = 0; i < BT; i++)
        if (targets[i] >= 0 && targets[i] < V && (int)(i % T) < a->len[i / T]) count++;
    double loss = 0.0, t0 = KD_PROF_START(m);
    float gscale = count ? scale / (float)count : 0.0f;
#pragma omp parallel for schedule(static) reduction(+ : loss)
    for (size_t i = 0; i < BT; i++) {
        float *row = m->logits + i * (size_t)V;
        if (targets[i] >= 0 && targets[i] < V && (int)(i % T) < a->len[i / T]) loss += logits_ce_row(row, V, targets[i], gscale);
        else memset(row, 0, (size_t)V * sizeof(float));
    }
    KD_PROF_END(m, KD_PROF_LOSS, t0);
    return count ? (float)(loss / (double)count) : 0.0f;
}

int kd_model_forward_loss(kd_model *m, const int32_t *ids, const int32_t *lengths, const int32_t *targets, float *loss,
                          kd_error *err) {
    int rc = forward_body(m, ids, lengths, err);
    if (rc) return rc;
    acts *a = m->priv;
    int T = m->T, V = m->cfg.vocab_size, C = m->cfg.hidden_size;
    size_t BT = (size_t)m->B * T;
    /* Chunks of rows through a [chunk, V] window at the start of m->logits. */
    size_t chunk = 64;
    double sum = 0.0;
    long count = 0;
    for (size_t r0 = 0; r0 < BT; r0 += chunk) {
        size_t n = BT - r0 < chunk ? BT - r0 : chunk;
        matmul_fwd(m->logits, a->lnf + r0 * C, m->w.lm_head, (int)n, C, V, 0);
        double part = 0.0;
        long cnt = 0;
#pragma omp parallel for schedule(static) reduction(+ : part, cnt)
        for (size_t i = 0; i < n; i++) {
            size_t r = r0 + i;
            if (targets[r] >= 0 && targets[r] < V && (int)(r % T) < a->len[r / T]) {
                part += logits_ce_row(m->logits + i * (size_t)V, V, targets[r], 0.0f);
                cnt++;
            }
        }
        sum += part;
        count += cnt;
    }
    *loss = count ? (float)(sum / (double)count) : 0.0f;
    return KD_OK;
}

int kd_model_backward(kd_model *m, kd_error *err) {
    if (!m->grads) return kd_error_set(err, KD_ERR_INVALID, "model backward: this model was allocated for inference (kd_model_new_inference)");
    acts *a = m->priv;
    const kd_model_config *c = &m->cfg;
    int T = m->T, C = c->hidden_size, FF = c->intermediate_size, D = c->head_dim;
    int Hq = c->num_heads, Hkv = c->num_kv_heads, QD = Hq * D, KD = Hkv * D, V = c->vocab_size, L = c->num_layers;
    size_t BT = (size_t)m->B * T;
    /* per-thread partial sums for the norm-weight gradients */
    float *nscratch = malloc((size_t)omp_get_max_threads() * (size_t)(C > D ? C : D) * sizeof(float));
    if (!nscratch) return kd_error_set(err, KD_ERR_NOMEM, "model backward: out of memory");
    /* lm_head and final norm */
    int full = 1;
    for (int b = 0; b < m->B; b++) full &= a->len[b] == T;
    double t0 = KD_PROF_START(m);
    if (full) matmul_bwd(a->dln, m->g.lm_head, m->logits, a->lnf, m->w.lm_head, (int)BT, C, V, 0);
    else
        for (int b = 0; b < m->B; b++) { /* real rows only; padding rows get zero gradient */
            size_t r0 = (size_t)b * T, n = (size_t)a->len[b];
            matmul_bwd(a->dln + r0 * C, m->g.lm_head, m->logits + r0 * V, a->lnf + r0 * C, m->w.lm_head, (int)n, C, V, 0);
            memset(a->dln + (r0 + n) * C, 0, ((size_t)T - n) * C * sizeof(float));
        }
    KD_PROF_END(m, KD_PROF_SGEMM, t0);
    TIMED(KD_PROF_RMSNORM, rmsnorm_bwd(a->dres, m->g.final_norm, a->dln, a->res[L], a->rstdf, m->w.final_norm, BT, C, 0, nscratch));
    for (int l = L - 1; l >= 0; l--) {
        const kd_layer_weights *w = &m->w.layers[l];
        kd_layer_weights *g = &m->g.layers[l];
        /* MLP: res[l+1] = mid + down(h) */
        TIMED(KD_PROF_SGEMM, kd_sgemm_rows(CblasNoTrans, CblasNoTrans, (int)BT, FF, C, 1.0f, a->dres, C, w->down_proj, FF, 0.0f, a->dh, FF);
              kd_sgemm_rows(CblasTrans, CblasNoTrans, C, FF, (int)BT, 1.0f, a->dres, C, a->h[l], FF, 1.0f, g->down_proj, FF));
        const float *gu = a->gate[l];
        const float *dh = a->dh;
        float *dgu = a->dgate;
        t0 = KD_PROF_START(m);
#pragma omp parallel for schedule(static)
        for (size_t r = 0; r < BT; r++) {
            const float *gt = gu + r * 2 * FF, *up = gt + FF, *dhr = dh + r * FF;
            float *dg = dgu + r * 2 * FF;
            swiglu_bwd_row(dg, dg + FF, gt, up, dhr, FF);
        }
        KD_PROF_END(m, KD_PROF_SWIGLU, t0);
        TIMED(KD_PROF_SGEMM, matmul_bwd(a->dln, g->gate_proj, a->dgate, a->ln2[l], w->gate_proj, (int)BT, C, 2 * FF, 0)); /* + up_proj */
        TIMED(KD_PROF_RMSNORM, rmsnorm_bwd(a->dres, g->post_norm, a->dln, a->mid[l], a->rstd2[l], w->post_norm, BT, C, 1, nscratch));
        /* attention: mid = res[l] + o(y) */
        TIMED(KD_PROF_SGEMM, kd_sgemm_rows(CblasNoTrans, CblasNoTrans, (int)BT, QD, C, 1.0f, a->dres, C, w->o_proj, QD, 0.0f, a->dy, QD);
              kd_sgemm_rows(CblasTrans, CblasNoTrans, C, QD, (int)BT, 1.0f, a->dres, C, a->y[l], QD, 1.0f, g->o_proj, QD));
        TIMED(KD_PROF_ATTENTION, attention_bwd(m, a->dq, a->dk, a->dv, a->dy, a->att[l], a->q[l], a->k[l], a->v[l]));
        TIMED(KD_PROF_QK_NORM_ROPE,
              qk_norm_rope_bwd(a->dq, g->q_norm, a->qraw[l], a->qrstd[l], w->q_norm, BT, T, Hq, D, a->rope_cos, a->rope_sin, nscratch);
              qk_norm_rope_bwd(a->dk, g->k_norm, a->kraw[l], a->krstd[l], w->k_norm, BT, T, Hkv, D, a->rope_cos, a->rope_sin, nscratch));
        TIMED(KD_PROF_SGEMM, matmul_bwd(a->dln, g->q_proj, a->dq, a->ln1[l], w->q_proj, (int)BT, C, QD, 0);
              matmul_bwd(a->dln, g->k_proj, a->dk, a->ln1[l], w->k_proj, (int)BT, C, KD, 1);
              matmul_bwd(a->dln, g->v_proj, a->dv, a->ln1[l], w->v_proj, (int)BT, C, KD, 1));
        TIMED(KD_PROF_RMSNORM, rmsnorm_bwd(a->dres, g->input_norm, a->dln, a->res[l], a->rstd1[l], w->input_norm, BT, C, 1, nscratch));
        if (m->on_layer_grads) m->on_layer_grads(m->on_layer_grads_ctx, l);
    }
    /* Embedding rows: ids repeat, so each thread owns a range of vocabulary rows and adds, in
     * position order, the positions whose id falls in it: every row sums in the serial order. */
    t0 = KD_PROF_START(m);
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), me = omp_get_thread_num();
        int32_t lo = (int32_t)((long)V * me / nt), hi = (int32_t)((long)V * (me + 1) / nt);
        for (size_t i = 0; i < BT; i++) {
            if (a->ids[i] < lo || a->ids[i] >= hi) continue;
            float *ge = m->g.embed + (size_t)a->ids[i] * C;
            const float *d = a->dres + i * C;
            for (int j = 0; j < C; j++) ge[j] += d[j];
        }
    }
    KD_PROF_END(m, KD_PROF_EMBEDDING, t0);
    free(nscratch);
    return KD_OK;
}

/* ------------------------------------------------------------------ AdamW */

void kd_adamw_update(float *p, const float *g, float *mm, float *vv, size_t n, const kd_adamw_params *hp, float lr, int64_t t,
                     int decay) {
    float b1 = hp->beta1, b2 = hp->beta2, eps = hp->eps;
    /* torch: step_size = lr / bc1; denom = sqrt(v) / sqrt(bc2) + eps */
    double bc1 = 1.0 - pow((double)b1, (double)t), bc2 = 1.0 - pow((double)b2, (double)t);
    float step = (float)(lr / bc1), rbc2 = (float)(1.0 / sqrt(bc2)), keep = decay ? 1.0f - lr * hp->weight_decay : 1.0f;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float pi = p[i] * keep;
        float mi = b1 * mm[i] + (1.0f - b1) * gi;
        float vi = b2 * vv[i] + (1.0f - b2) * gi * gi;
        mm[i] = mi;
        vv[i] = vi;
        p[i] = pi - step * mi / (sqrtf(vi) * rbc2 + eps);
    }
}

void kd_model_adamw_step(kd_model *m, const kd_adamw_params *hp, float lr, int64_t t) {
    if (!m->grads) return;
    double t0 = KD_PROF_START(m);
    for (int i = 0; i < m->n_tensors; i++) {
        const kd_model_tensor *tt = &m->tensors[i];
        size_t o = tt->offset;
        kd_adamw_update(m->params + o, m->grads + o, m->adam_m + o, m->adam_v + o, tt->numel, hp, lr, t, tt->decay);
    }
    KD_PROF_END(m, KD_PROF_ADAMW, t0);
}
