/* The student model in C alone: config parsing and its errors, KV-cache decoding equal to the full
 * forward at every step (also under padding), sampling, AdamW's decay mask. The numerics against
 * PyTorch live in tests/reference/model_oracle.sh. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/model.h"
#include "testutil.h"

static const char *BASE =
    "\"model_type\":\"qwen3\",\"vocab_size\":100,\"hidden_size\":32,\"intermediate_size\":64,\"num_hidden_layers\":1,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":8";

static void cfg_error(const char *json_tail, int code, const char *needle) {
    char text[2048];
    snprintf(text, sizeof text, "{%s%s}", BASE, json_tail);
    const char *p = kd_test_write("c.json", text);
    kd_model_config c;
    kd_error err = {0};
    CU_ASSERT_EQUAL(kd_model_config_load(p, &c, &err), code);
    KD_ASSERT_CONTAINS(err.msg, needle);
}

static void test_config(void) {
    kd_model_config c;
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_model_config_preset("small", &c, &err), KD_OK);
    CU_ASSERT_EQUAL(c.vocab_size, 8192);
    CU_ASSERT_EQUAL(c.hidden_size, 256);
    CU_ASSERT_EQUAL(c.num_kv_heads, 2);
    CU_ASSERT_EQUAL(c.head_dim, 64);
    CU_ASSERT_TRUE(c.tie_word_embeddings);
    /* the 5.25M-parameter shape */
    CU_ASSERT_EQUAL(kd_model_config_num_params(&c), 5245696);
    CU_ASSERT_EQUAL_FATAL(kd_model_config_preset("qwen3-0.6b", &c, &err), KD_OK);
    CU_ASSERT_EQUAL(kd_model_config_num_params(&c), 596049920); /* Qwen3-0.6B: 0.6B with tied embeddings */
    CU_ASSERT_EQUAL(kd_model_config_preset("nope", &c, &err), KD_ERR_NOTFOUND);
    KD_ASSERT_CONTAINS(err.msg, "model preset 'nope' not found");
    /* defaults: head_dim = C / Hq, kv heads = heads, tie false (Qwen3Config), rope_theta 10000 */
    const char *p = kd_test_write("d.json", "{\"vocab_size\":10,\"hidden_size\":16,\"intermediate_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2}");
    CU_ASSERT_EQUAL_FATAL(kd_model_config_load(p, &c, &err), KD_OK);
    CU_ASSERT_EQUAL(c.head_dim, 8);
    CU_ASSERT_EQUAL(c.num_kv_heads, 2);
    CU_ASSERT_EQUAL(c.tie_word_embeddings, 0);
    CU_ASSERT_EQUAL(c.rope_theta, 10000.0f);
    /* transformers >= 4.56 keeps rope_theta in rope_parameters */
    p = kd_test_write("e.json", "{\"vocab_size\":10,\"hidden_size\":16,\"intermediate_size\":8,\"num_hidden_layers\":1,"
                                "\"num_attention_heads\":2,\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":5e5}}");
    CU_ASSERT_EQUAL_FATAL(kd_model_config_load(p, &c, &err), KD_OK);
    CU_ASSERT_EQUAL(c.rope_theta, 500000.0f);

    cfg_error(",\"num_key_value_heads\":3", KD_ERR_INVALID, "num_attention_heads (4) must be a multiple of num_key_value_heads (3)");
    cfg_error(",\"head_dim\":7", KD_ERR_INVALID, "head_dim (7) must be even for RoPE");
    cfg_error(",\"model_type\":\"llama\"", KD_ERR_UNSUPPORTED, "model_type is \"llama\"; only \"qwen3\" is supported");
    cfg_error(",\"rope_scaling\":{\"type\":\"yarn\"}", KD_ERR_UNSUPPORTED, "rope_scaling is set; only plain RoPE (rope_scaling null) is supported");
    cfg_error(",\"tie_word_embeddings\":1", KD_ERR_INVALID, "\"tie_word_embeddings\" must be true or false");
    cfg_error(",\"rope_theta\":\"big\"", KD_ERR_INVALID, "\"rope_theta\" must be a number");
    cfg_error(",\"max_position_embeddings\":1.5", KD_ERR_INVALID, "\"max_position_embeddings\" must be a non-negative integer");
    cfg_error(",\"rms_norm_eps\":0", KD_ERR_INVALID, "rope_theta and rms_norm_eps must be positive");
    cfg_error(",\"max_position_embeddings\":0", KD_ERR_INVALID, "every size (vocab, hidden, intermediate, layers, heads, kv heads, head_dim, max positions) must be positive");
    p = kd_test_write("f.json", "{\"hidden_size\":16}");
    CU_ASSERT_EQUAL(kd_model_config_load(p, &c, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "missing required key \"vocab_size\"");
    p = kd_test_write("g.json", "{\"hidden_size\":");
    CU_ASSERT_EQUAL(kd_model_config_load(p, &c, &err), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(err.msg, "g.json:1:");
    p = kd_test_write("h.json", "[]");
    CU_ASSERT_EQUAL(kd_model_config_load(p, &c, &err), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(err.msg, "not a JSON object");

    /* write -> load gives the same config; the file is what HF expects */
    CU_ASSERT_EQUAL_FATAL(kd_model_config_preset("small", &c, &err), KD_OK);
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", kd_test_tmpdir());
    CU_ASSERT_EQUAL_FATAL(kd_model_config_write(path, &c, &err), KD_OK);
    kd_model_config c2;
    CU_ASSERT_EQUAL_FATAL(kd_model_config_load(path, &c2, &err), KD_OK);
    CU_ASSERT_EQUAL(memcmp(&c, &c2, sizeof c), 0);
    char *text = NULL;
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(kd_read_file(path, &text, &len, &err), KD_OK);
    KD_ASSERT_CONTAINS(text, "\"architectures\": [\n    \"Qwen3ForCausalLM\"\n  ]");
    KD_ASSERT_CONTAINS(text, "\"model_type\": \"qwen3\"");
    KD_ASSERT_CONTAINS(text, "\"rope_theta\": 1000000.0");
    KD_ASSERT_CONTAINS(text, "\"rope_scaling\": null");
    free(text);
}

static void test_new_errors(void) {
    kd_model_config c;
    kd_error err = {0};
    kd_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_model_config_preset("tiny", &c, &err), KD_OK);
    CU_ASSERT_EQUAL(kd_model_new(&m, &c, 1, 4096, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "sequence length 4096 exceeds max_position_embeddings 2048");
    CU_ASSERT_EQUAL(kd_model_new(&m, &c, 0, 8, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "batch (0) and sequence length (8) must be positive");
    /* the tokenizer decides the vocabulary */
    c.vocab_size = 300;
    CU_ASSERT_EQUAL_FATAL(kd_model_new(&m, &c, 2, 8, &err), KD_OK);
    CU_ASSERT_EQUAL(m->n_params, kd_model_config_num_params(&c));
    CU_ASSERT_EQUAL(m->tensors[0].shape[0], 300);
    int32_t ids[16] = {0}, len[2] = {8, 9};
    ids[5] = 300;
    CU_ASSERT_EQUAL(kd_model_forward(m, ids, NULL, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "token id 300 at position 5 is outside the vocabulary (0..299)");
    ids[5] = 1;
    CU_ASSERT_EQUAL(kd_model_forward(m, ids, len, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "lengths[1] = 9 is outside 1..8");
    kd_kv_cache *kc = NULL;
    CU_ASSERT_EQUAL(kd_kv_cache_new(&kc, m, 5000, &err), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(err.msg, "kv cache: length 5000 must be in 1..2048 (max_position_embeddings)");
    kd_model_free(m);
}

static float max_rel(const float *a, const float *b, int n) {
    float md = 0.0f, mb = 0.0f;
    for (int i = 0; i < n; i++) {
        md = fmaxf(md, fabsf(a[i] - b[i]));
        mb = fmaxf(mb, fabsf(b[i]));
    }
    return md / mb;
}

/* Decode token by token with the cache; every step's logits equal the full forward's row. Row 1 is
 * padded, so its real rows must equal decoding its prefix alone: the padding mask works. */
static void check_kv(const char *preset) {
    kd_model_config c;
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_model_config_preset(preset, &c, &err), KD_OK);
    c.initializer_range = 0.2f; /* logits far from uniform */
    enum { B = 2, T = 24 };
    kd_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_model_new(&m, &c, B, T, &err), KD_OK);
    kd_model_init_random(m, 42);
    int32_t ids[B * T], len[B] = {T, 10};
    uint64_t s = 5;
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(kd_splitmix64(&s) % (uint64_t)c.vocab_size);
    for (int i = 10; i < T; i++) ids[T + i] = 3; /* padding tokens */
    CU_ASSERT_EQUAL_FATAL(kd_model_forward(m, ids, len, &err), KD_OK);
    kd_kv_cache *kc = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_kv_cache_new(&kc, m, T, &err), KD_OK);
    float worst = 0.0f;
    for (int b = 0; b < B; b++) {
        kd_kv_cache_reset(kc);
        for (int t = 0; t < len[b]; t++) {
            const float *lg = kd_model_decode_step(m, kc, ids[b * T + t]);
            CU_ASSERT_PTR_NOT_NULL_FATAL(lg);
            worst = fmaxf(worst, max_rel(lg, m->logits + (size_t)(b * T + t) * c.vocab_size, c.vocab_size));
        }
    }
    printf("\n    %s: KV-cache vs full forward, worst max rel diff over %d steps: %.2e\n", preset, T + 10, worst);
    CU_ASSERT_TRUE(worst < 1e-4f);
    /* full cache refuses more */
    kd_kv_cache_reset(kc);
    for (int t = 0; t < T; t++) kd_model_decode_step(m, kc, 1);
    CU_ASSERT_PTR_NULL(kd_model_decode_step(m, kc, 1));
    /* greedy generation: each token is the argmax of a full forward on its prefix */
    kd_kv_cache_reset(kc);
    kd_sampler greedy = {0.0f, 1.0f, 1};
    int32_t out[8];
    int n = kd_model_generate(m, kc, ids, 4, 8, &greedy, NULL, 0, out);
    CU_ASSERT_EQUAL_FATAL(n, 8);
    int32_t seq[B * T];
    memcpy(seq, ids, 4 * sizeof(int32_t));
    memcpy(seq + 4, out, 8 * sizeof(int32_t));
    for (int i = 12; i < B * T; i++) seq[i] = 0;
    int32_t full[B] = {12, 1};
    CU_ASSERT_EQUAL_FATAL(kd_model_forward(m, seq, full, &err), KD_OK);
    for (int k = 0; k < 8; k++) {
        const float *row = m->logits + (size_t)(3 + k) * c.vocab_size;
        int best = 0;
        for (int j = 1; j < c.vocab_size; j++)
            if (row[j] > row[best]) best = j;
        CU_ASSERT_EQUAL(out[k], best);
    }
    /* a stop token ends generation, and is included */
    kd_kv_cache_reset(kc);
    n = kd_model_generate(m, kc, ids, 4, 8, &greedy, &out[2], 1, out);
    CU_ASSERT_TRUE(n <= 3);
    kd_kv_cache_free(kc);
    kd_model_free(m);
}

static void test_kv_cache_tiny(void) { check_kv("tiny"); }
static void test_kv_cache_gqa(void) { check_kv(kd_test_src("tests/reference/gqa.json")); }

static void test_sampling(void) {
    enum { V = 50 };
    float lg[V], tmp[V];
    for (int i = 0; i < V; i++) lg[i] = (float)((i * 37) % V) / 3.0f;
    int best = 0;
    for (int i = 1; i < V; i++)
        if (lg[i] > lg[best]) best = i;
    kd_sampler g = {0.0f, 1.0f, 1}, tiny_p = {1.0f, 1e-6f, 7}, t1 = {1.0f, 1.0f, 7}, t2 = {1.0f, 1.0f, 7};
    memcpy(tmp, lg, sizeof lg);
    CU_ASSERT_EQUAL(kd_sampler_next(&g, tmp, V), best);
    memcpy(tmp, lg, sizeof lg);
    CU_ASSERT_EQUAL(kd_sampler_next(&tiny_p, tmp, V), best); /* top-p that keeps one token is greedy */
    /* the same seed gives the same draws; draws follow the distribution (top token most often) */
    int counts[V] = {0}, same = 1;
    for (int k = 0; k < 2000; k++) {
        memcpy(tmp, lg, sizeof lg);
        int a = kd_sampler_next(&t1, tmp, V);
        memcpy(tmp, lg, sizeof lg);
        same &= a == kd_sampler_next(&t2, tmp, V);
        counts[a]++;
    }
    CU_ASSERT_TRUE(same);
    int mode = 0;
    for (int i = 1; i < V; i++)
        if (counts[i] > counts[mode]) mode = i;
    CU_ASSERT_EQUAL(mode, best);
    /* top-p 0.5 never picks from the tail */
    kd_sampler tp = {1.0f, 0.5f, 9};
    for (int k = 0; k < 200; k++) {
        memcpy(tmp, lg, sizeof lg);
        int a = kd_sampler_next(&tp, tmp, V);
        CU_ASSERT_TRUE(lg[a] >= 15.6f);
    }
}

/* The inference allocation (shared activations, no gradients) computes the same logits, bit for bit,
 * for an odd and an even number of layers; backward refuses it. */
static void test_inference_model(void) {
    for (int layers = 2; layers <= 3; layers++) {
        char text[1024];
        snprintf(text, sizeof text, "{%s,\"num_hidden_layers\":%d,\"initializer_range\":0.3}", BASE, layers);
        kd_model_config c;
        kd_error err = {0};
        CU_ASSERT_EQUAL_FATAL(kd_model_config_load(kd_test_write("inf.json", text), &c, &err), KD_OK);
        CU_ASSERT_EQUAL(c.num_layers, layers);
        kd_model *t = NULL, *i = NULL;
        CU_ASSERT_EQUAL_FATAL(kd_model_new(&t, &c, 2, 12, &err), KD_OK);
        CU_ASSERT_EQUAL_FATAL(kd_model_new_inference(&i, &c, 2, 12, &err), KD_OK);
        CU_ASSERT_PTR_NULL(i->grads);
        CU_ASSERT_PTR_NULL(i->adam_m);
        kd_model_init_random(t, 9);
        memcpy(i->params, t->params, t->n_params * sizeof(float));
        int32_t ids[24], len[2] = {12, 7};
        for (int k = 0; k < 24; k++) ids[k] = (k * 31 + 5) % c.vocab_size;
        CU_ASSERT_EQUAL_FATAL(kd_model_forward(t, ids, len, &err), KD_OK);
        CU_ASSERT_EQUAL_FATAL(kd_model_forward(i, ids, len, &err), KD_OK);
        int same = 1;
        for (int r = 0; r < 24; r++)
            if (r % 12 < len[r / 12]) same &= memcmp(t->logits + (size_t)r * c.vocab_size, i->logits + (size_t)r * c.vocab_size, (size_t)c.vocab_size * 4) == 0;
        CU_ASSERT_TRUE(same);
        CU_ASSERT_EQUAL(kd_model_backward(i, &err), KD_ERR_INVALID);
        KD_ASSERT_CONTAINS(err.msg, "model backward: this model was allocated for inference (kd_model_new_inference)");
        kd_model_free(t);
        kd_model_free(i);
    }
}

static void test_adamw_decay_mask(void) {
    kd_model_config c;
    kd_error err = {0};
    kd_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_model_config_preset("tiny", &c, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_model_new(&m, &c, 1, 2, &err), KD_OK);
    kd_model_init_random(m, 1);
    float e0 = m->w.embed[5], n0 = m->w.final_norm[3];
    kd_model_zero_grad(m);
    kd_adamw_params hp = {0.9f, 0.95f, 1e-8f, 0.1f};
    kd_model_adamw_step(m, &hp, 0.01f, 1);
    CU_ASSERT_DOUBLE_EQUAL(m->w.embed[5], e0 * (1.0f - 0.01f * 0.1f), 1e-9);
    CU_ASSERT_EQUAL(m->w.final_norm[3], n0);
    for (int i = 0; i < m->n_tensors; i++) CU_ASSERT_EQUAL(m->tensors[i].decay, m->tensors[i].ndim == 2);
    kd_model_free(m);
}
/* One training step (forward, CE, backward, AdamW) at 2 OpenMP threads against 1 thread. The
 * threads split rows, heads and positions (and the products' rows), so only float reassociation may
 * differ: the tolerance is 1e-4 of each gradient tensor's largest magnitude, 1e-5 relative on the
 * loss, and 1e-5 absolute (1% of the learning rate) on the parameters after AdamW (lr 1e-3, eps 1e-5:
 * Adam's first step is g / (|g| + eps), which magnifies a gradient's rounding by 1/eps near 0). */
static void step_at(int threads, kd_model *m, const int32_t *ids, const int32_t *len, const int32_t *tg, float *loss) {
    kd_error err = {0};
    omp_set_num_threads(threads);
    kd_model_zero_grad(m);
    CU_ASSERT_EQUAL_FATAL(kd_model_forward(m, ids, len, &err), KD_OK);
    *loss = kd_model_ce_loss(m, tg, 1.0f);
    CU_ASSERT_EQUAL_FATAL(kd_model_backward(m, &err), KD_OK);
    kd_adamw_params hp = {0.9f, 0.95f, 1e-5f, 0.1f}; /* eps well above the gradients' rounding noise */
    kd_model_adamw_step(m, &hp, 1e-3f, 1);
}

static void test_threads_step(void) {
    kd_model_config c;
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_model_config_preset(kd_test_src("tests/reference/gqa.json"), &c, &err), KD_OK);
    enum { B = 4, T = 40 };
    kd_model *m1 = NULL, *m2 = NULL;
    int saved = omp_get_max_threads();
    omp_set_num_threads(2); /* activations sized for 2 threads */
    CU_ASSERT_EQUAL_FATAL(kd_model_new(&m1, &c, B, T, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_model_new(&m2, &c, B, T, &err), KD_OK);
    kd_model_init_random(m1, 9);
    kd_model_init_random(m2, 9);
    int32_t ids[B * T], tg[B * T], len[B] = {T, 17, T, 3};
    uint64_t s = 11;
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(kd_splitmix64(&s) % (uint64_t)c.vocab_size);
    for (int i = 0; i < B * T; i++) tg[i] = (i % T) + 1 < T ? ids[i + 1] : -1;
    double prof[KD_PROF_N] = {0};
    m2->profile = prof;
    float l1, l2;
    step_at(1, m1, ids, len, tg, &l1);
    step_at(2, m2, ids, len, tg, &l2);
    omp_set_num_threads(saved);
    CU_ASSERT_TRUE(fabsf(l1 - l2) <= 1e-5f * fabsf(l1));
    float worst_g = 0.0f, worst_p = 0.0f;
    for (int t = 0; t < m1->n_tensors; t++) {
        const kd_model_tensor *tt = &m1->tensors[t];
        float mx = 0.0f, d = 0.0f;
        for (size_t i = 0; i < tt->numel; i++) {
            mx = fmaxf(mx, fabsf(m1->grads[tt->offset + i]));
            d = fmaxf(d, fabsf(m1->grads[tt->offset + i] - m2->grads[tt->offset + i]));
            worst_p = fmaxf(worst_p, fabsf(m1->params[tt->offset + i] - m2->params[tt->offset + i]));
        }
        if (mx > 0) worst_g = fmaxf(worst_g, d / mx);
    }
    printf("\n    2 threads vs 1: loss %.7g vs %.7g; worst gradient diff %.2e of its tensor's max; worst parameter diff %.2e\n",
           l1, l2, worst_g, worst_p);
    CU_ASSERT_TRUE(worst_g <= 1e-4f);
    CU_ASSERT_TRUE(worst_p <= 1e-5f);
    double total = 0;
    for (int k = 0; k < KD_PROF_N; k++) total += prof[k];
    CU_ASSERT_TRUE(total > 0 && prof[KD_PROF_SGEMM] > 0 && prof[KD_PROF_ADAMW] > 0); /* the timers ran */
    kd_model_free(m1);
    kd_model_free(m2);
}

/* kd_model_step_rows with batch-invariant products: a sequence's logits are bit for bit the same
 * alone as beside other sequences (prefill chunks and decode rows mixed in one call). */
static void test_rows_invariant(void) {
    kd_model_config c;
    kd_error err = {0};
    CU_ASSERT_EQUAL_FATAL(kd_model_config_preset(kd_test_src("tests/reference/gqa.json"), &c, &err), KD_OK);
    c.initializer_range = 0.2f;
    kd_model *m = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_model_new_inference(&m, &c, 1, 1, &err), KD_OK);
    kd_model_init_random(m, 5);
    int V = c.vocab_size;
    kd_batch_scratch *bs = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_batch_scratch_new(m, 32, &bs, &err), KD_OK);
    kd_batch_scratch_set_invariant(bs, 1);
    kd_kv_cache *a = NULL, *b = NULL, *a2 = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_kv_cache_new(&a, m, 64, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_kv_cache_new(&b, m, 64, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_kv_cache_new(&a2, m, 64, &err), KD_OK);
    int32_t pa[7] = {5, 9, 2, 44, 17, 3, 8}, pb[3] = {7, 1, 30};
    float *alone = malloc((size_t)V * sizeof(float)), *mixed = malloc((size_t)2 * V * sizeof(float));
    kd_kv_cache *kv[10];
    int32_t tok[10];
    int want[10];
    /* sequence a alone: prefill of 7 rows, logits of the last */
    for (int r = 0; r < 7; r++) kv[r] = a, tok[r] = pa[r], want[r] = r == 6;
    CU_ASSERT_EQUAL_FATAL(kd_model_step_rows(m, bs, 7, kv, tok, want, alone, &err), KD_OK);
    /* b's prefill first, then a (its copy a2) beside b's decode step */
    for (int r = 0; r < 3; r++) kv[r] = b, tok[r] = pb[r], want[r] = 0;
    CU_ASSERT_EQUAL_FATAL(kd_model_step_rows(m, bs, 3, kv, tok, want, mixed, &err), KD_OK);
    kv[0] = b, tok[0] = 12, want[0] = 1;
    for (int r = 0; r < 7; r++) kv[1 + r] = a2, tok[1 + r] = pa[r], want[1 + r] = r == 6;
    CU_ASSERT_EQUAL_FATAL(kd_model_step_rows(m, bs, 8, kv, tok, want, mixed, &err), KD_OK);
    CU_ASSERT_EQUAL(memcmp(alone, mixed + V, (size_t)V * sizeof(float)), 0);
    /* a copied prefix continues exactly as the original */
    kd_kv_cache *c2 = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_kv_cache_new(&c2, m, 64, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_kv_cache_copy_prefix(m, c2, a, 7, &err), KD_OK);
    CU_ASSERT_EQUAL(kd_kv_cache_copy_prefix(m, c2, a, 8, &err), KD_ERR_INVALID);
    kv[0] = a, kv[1] = c2, tok[0] = tok[1] = 21, want[0] = want[1] = 1;
    CU_ASSERT_EQUAL_FATAL(kd_model_step_rows(m, bs, 2, kv, tok, want, mixed, &err), KD_OK);
    CU_ASSERT_EQUAL(memcmp(mixed, mixed + V, (size_t)V * sizeof(float)), 0);
    free(alone);
    free(mixed);
    kd_kv_cache_free(a);
    kd_kv_cache_free(b);
    kd_kv_cache_free(a2);
    kd_kv_cache_free(c2);
    kd_batch_scratch_free(bs);
    kd_model_free(m);
}


int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("model", NULL, NULL);
    CU_add_test(s, "config", test_config);
    CU_add_test(s, "new_errors", test_new_errors);
    CU_add_test(s, "kv_cache_tiny", test_kv_cache_tiny);
    CU_add_test(s, "kv_cache_gqa", test_kv_cache_gqa);
    CU_add_test(s, "sampling", test_sampling);
    CU_add_test(s, "inference_model", test_inference_model);
    CU_add_test(s, "adamw_decay_mask", test_adamw_decay_mask);
    CU_add_test(s, "threads_step", test_threads_step);
    CU_add_test(s, "rows_invariant", test_rows_invariant);
    return kd_test_main();
}
