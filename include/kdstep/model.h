/* The student model: a Qwen3-architecture decoder (Qwen3ForCausalLM) on the CPU, in the llm.c style.
 *
 * Architecture: token embedding -> L x [RMSNorm -> attention (q/k/v projections, per-head RMSNorm on
 * q and k, RoPE rotate-half, grouped-query attention, causal + padding mask, o projection) ->
 * residual -> RMSNorm -> SwiGLU MLP (down(silu(gate(x)) * up(x))) -> residual] -> RMSNorm -> lm_head
 * (tied to the embedding when tie_word_embeddings is true; a config.json without the key is untied,
 * as in HF's Qwen3Config, whose default is false; the presets set it true). No biases, as in Qwen3.
 *
 * Memory: the parameters, their gradients and the two AdamW moments are each ONE contiguous float
 * buffer of n_params floats (an allreduce is one call over model->grads). The tensors inside them
 * are described by model->tensors[] (HF name, shape, offset) in a fixed order. Activations are
 * allocated once for (B, T) by kd_model_new and reused by every forward/backward.
 *
 * One training step, as the trainer does it:
 *     kd_model_zero_grad(m);
 *     kd_model_forward(m, ids, lengths);            // logits in m->logits, [B*T, V] row-major
 *     float loss = kd_model_ce_loss(m, targets, 1.0f); // or write your own d(loss)/d(logits) into
 *                                                    //   m->logits in place (KD loss), then:
 *     kd_model_backward(m);                          // reads dlogits from m->logits, ADDS into m->grads
 *     kd_model_adamw_step(m, &hp, lr, step);         // step counts from 1
 *
 * Padding: sequences are right-padded; lengths[b] (1..T) is the number of real tokens of row b
 * (NULL = all T). Row t of sequence b attends to 0..t (causal); rows t >= lengths[b] hold
 * logits of no meaning (not even computed) and their dlogits are ignored by backward.
 *
 * Matrix products use CBLAS sgemm with HF's [out, in] weight layout; attention and element-wise
 * work use OpenMP. Threads are set by the caller (kd_runtime_set_threads).
 */
#ifndef KDSTEP_MODEL_H
#define KDSTEP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kdstep/error.h"

typedef struct kd_model_config {
    int vocab_size;
    int hidden_size;       /* C */
    int intermediate_size; /* I */
    int num_layers;        /* L (num_hidden_layers) */
    int num_heads;         /* Hq (num_attention_heads) */
    int num_kv_heads;      /* Hkv (num_key_value_heads), divides Hq */
    int head_dim;          /* D, need not be C / Hq */
    int max_position_embeddings;
    int tie_word_embeddings; /* 1: lm_head is the embedding; default (key absent) 0, as Qwen3Config */
    float rope_theta;
    float rms_norm_eps;
    float initializer_range; /* std of the random init (HF default 0.02) */
} kd_model_config;

/* Read a HF config.json (the keys listed in the struct; head_dim defaults to C/Hq, tie to 1). */
int kd_model_config_load(const char *path, kd_model_config *cfg, kd_error *err);
/* A preset name (configs/models/<name>.json under the source tree) or a path to a .json file. */
int kd_model_config_preset(const char *name_or_path, kd_model_config *cfg, kd_error *err);
/* Checks shapes make sense (positive sizes, Hkv | Hq, even head_dim ...). */
int kd_model_config_validate(const kd_model_config *cfg, kd_error *err);
/* Write a HF config.json (architectures ["Qwen3ForCausalLM"], model_type "qwen3", rope_scaling null). */
int kd_model_config_write(const char *path, const kd_model_config *cfg, kd_error *err);
/* The same with "torch_dtype" set to the given name ("float32", "bfloat16", "float16"). */
int kd_model_config_write_dtype(const char *path, const kd_model_config *cfg, const char *torch_dtype, kd_error *err);
/* Number of parameters (tied embedding counted once). */
size_t kd_model_config_num_params(const kd_model_config *cfg);

#define KD_MODEL_NAME_MAX 80

/* One parameter tensor inside the contiguous buffers. */
typedef struct kd_model_tensor {
    char name[KD_MODEL_NAME_MAX]; /* HF name, e.g. "model.layers.0.self_attn.q_proj.weight" */
    int ndim;                     /* 1 or 2 */
    int64_t shape[2];
    size_t offset; /* in floats, into params / grads / adam_m / adam_v */
    size_t numel;
    int decay; /* 1 for matrices (weight decay applies), 0 for norm weights */
} kd_model_tensor;

/* Per-layer parameter pointers (into params). */
typedef struct kd_layer_weights {
    float *input_norm;  /* [C] */
    float *q_proj;      /* [Hq*D, C] */
    float *k_proj;      /* [Hkv*D, C] */
    float *v_proj;      /* [Hkv*D, C] */
    float *o_proj;      /* [C, Hq*D] */
    float *q_norm;      /* [D] */
    float *k_norm;      /* [D] */
    float *post_norm;   /* [C] post_attention_layernorm */
    float *gate_proj;   /* [I, C] */
    float *up_proj;     /* [I, C] */
    float *down_proj;   /* [C, I] */
} kd_layer_weights;

typedef struct kd_model_weights {
    float *embed;      /* [V, C] */
    kd_layer_weights *layers;
    float *final_norm; /* [C] */
    float *lm_head;    /* [V, C]; == embed when tied */
} kd_model_weights;

typedef struct kd_model kd_model;
struct kd_model {
    kd_model_config cfg;
    int B, T;  /* activation shape of the next forward/backward: [B, T] */
    int T_max; /* the T the activations were sized for (kd_model_set_seq_len moves T in 1..T_max) */

    /* Parameters and optimizer state: each one contiguous buffer of n_params floats. */
    size_t n_params;
    float *params;
    float *grads;
    float *adam_m;
    float *adam_v;
    int n_tensors;
    kd_model_tensor *tensors; /* HF order; safetensors I/O and per-tensor reporting use it */
    kd_model_weights w;       /* pointers into params */
    kd_model_weights g;       /* the same pointers into grads */

    /* Output of kd_model_forward: [B*T, V]; kd_model_backward reads d(loss)/d(logits) from it. */
    float *logits;

    void *priv; /* activations, scratch, RoPE tables */

    /* Optional hook (NULL by default): kd_model_backward calls it as soon as layer `layer`'s
     * parameter gradients are final (layers finish from L-1 down to 0; the embedding, final norm and
     * lm_head are final only when kd_model_backward returns). The trainer starts the allreduce of
     * that layer's slice of m->grads here, overlapping communication with the rest of backward. */
    void (*on_layer_grads)(void *ctx, int layer);
    void *on_layer_grads_ctx;

    /* Optional (NULL by default): seconds per kernel (KD_PROF_*), ADDED to by forward, backward,
     * kd_model_ce_loss and kd_model_adamw_step when set (tests/bench/train_threads.sh). */
    double *profile;
};

/* The kernels m->profile times. SGEMM is every product outside attention; ATTENTION is the whole
 * per-head attention (its own small sgemms included), of which ATTN_SOFTMAX is the softmax and its
 * backward (summed over threads, divided by the thread count). */
enum {
    KD_PROF_SGEMM,
    KD_PROF_ATTENTION,
    KD_PROF_ATTN_SOFTMAX,
    KD_PROF_RMSNORM,
    KD_PROF_QK_NORM_ROPE,
    KD_PROF_SWIGLU,
    KD_PROF_EMBEDDING,
    KD_PROF_RESIDUAL,
    KD_PROF_LOSS,
    KD_PROF_ADAMW,
    KD_PROF_N
};

/* Allocate a model for batches of B sequences of T tokens (T <= max_position_embeddings) with
 * parameters zeroed. Call kd_model_init_random or kd_model_load_weights next. To match a
 * tokenizer, set cfg.vocab_size = kd_tokenizer_vocab_size(tok) before calling. */
int kd_model_new(kd_model **out, const kd_model_config *cfg, int B, int T, kd_error *err);
/* The same for evaluation and decoding only: no gradients, no AdamW moments (grads, adam_m, adam_v
 * and g are NULL), one set of activations shared by all layers. Backward refuses it. */
int kd_model_new_inference(kd_model **out, const kd_model_config *cfg, int B, int T, kd_error *err);
void kd_model_free(kd_model *m);

/* HF-style init: matrices ~ N(0, initializer_range) from a seeded RNG, norm weights = 1. */
void kd_model_init_random(kd_model *m, uint64_t seed);

/* Forward over ids[B*T] (row-major, b*T + t); lengths[B] or NULL. Fills m->logits. */
/* The sequence length of the next forward and backward: rows are then [B, T] with this T (ids,
 * lengths and logits laid out with it), so a micro-batch of short rows pays for its own longest row
 * only. 1 <= T <= m->T_max; the model's results for a row do not depend on it beyond the float
 * reassociation of products over more or fewer rows. */
int kd_model_set_seq_len(kd_model *m, int T, kd_error *err);
int kd_model_forward(kd_model *m, const int32_t *ids, const int32_t *lengths, kd_error *err);
/* Mean cross-entropy over targets[B*T] >= 0 (-1 = ignore; rows past lengths are ignored too).
 * Overwrites m->logits with d(scale * mean loss)/d(logits), ready for kd_model_backward.
 * Returns the mean loss (0 when no target counts). */
float kd_model_ce_loss(kd_model *m, const int32_t *targets, float scale);
/* Forward + mean CE without materializing the [B*T, V] logits: the lm_head product and the softmax
 * run over chunks of rows in a small buffer (evaluation; no backward may follow). */
int kd_model_forward_loss(kd_model *m, const int32_t *ids, const int32_t *lengths, const int32_t *targets,
                          float *loss, kd_error *err);
/* Backward of the last forward, with dlogits in m->logits. Adds into m->grads. */
int kd_model_backward(kd_model *m, kd_error *err);
void kd_model_zero_grad(kd_model *m);

/* AdamW as torch.optim.AdamW: p -= lr*wd*p (decoupled, matrices only), then the Adam update with
 * bias correction for step t (t >= 1). */
typedef struct kd_adamw_params {
    float beta1, beta2, eps, weight_decay;
} kd_adamw_params;
void kd_model_adamw_step(kd_model *m, const kd_adamw_params *hp, float lr, int64_t t);
/* The same update over a span (the trainer may shard the optimizer). decay applies to all of it. */
void kd_adamw_update(float *p, const float *g, float *m, float *v, size_t n, const kd_adamw_params *hp, float lr,
                     int64_t t, int decay);

/* Checkpoints: model.safetensors (HF names, F32) + config.json in a folder. */
int kd_model_save(const kd_model *m, const char *dir, kd_error *err);
int kd_model_save_safetensors(const kd_model *m, const char *path, kd_error *err);
/* Load weights from a safetensors file (F32/F16/BF16) into an allocated model; every tensor must be
 * present with the right shape. */
int kd_model_load_safetensors(kd_model *m, const char *path, kd_error *err);
/* Weights of a HF folder: model.safetensors, or the shards named by model.safetensors.index.json,
 * read one shard at a time (each is mapped, converted into m->params and unmapped before the next). */
int kd_model_load_weights_dir(kd_model *m, const char *dir, kd_error *err);
/* Write the weights of `m` into dir as dtype (KD_ST_*): one model.safetensors when they fit in
 * max_shard_bytes (or it is 0), else model-0000i-of-0000N.safetensors files of at most
 * max_shard_bytes each (a tensor bigger than that gets a shard of its own) plus
 * model.safetensors.index.json, as Hugging Face's save_pretrained shards. Writes no config.json. */
int kd_model_save_weights(const kd_model *m, const char *dir, int dtype, uint64_t max_shard_bytes, kd_error *err);
/* "5GB", "500MB", "10KiB", "123" (bytes) -> bytes, as HF's max_shard_size; -1 if malformed. */
int64_t kd_parse_byte_size(const char *s);
/* Open a HF folder (config.json + model.safetensors or a sharded index) and allocate for (B, T), for training or
 * (inference != 0) as kd_model_new_inference. */
int kd_model_open_dir(kd_model **out, const char *dir, int B, int T, int inference, kd_error *err);

/* ---- Decoding with a KV cache (batch 1) ---- */
typedef struct kd_kv_cache {
    int max_T;
    int pos;      /* tokens already in the cache */
    float *k, *v; /* [L, max_T, Hkv*D] */
    float *x, *xb, *xb2, *q, *att, *hb, *hb2, *logits; /* scratch for one token */
} kd_kv_cache;

int kd_kv_cache_new(kd_kv_cache **out, const kd_model *m, int max_T, kd_error *err);
void kd_kv_cache_free(kd_kv_cache *c);
void kd_kv_cache_reset(kd_kv_cache *c);
/* Feed one token at position c->pos; returns the logits [V] (inside c), or NULL when full. */
const float *kd_model_decode_step(const kd_model *m, kd_kv_cache *c, int32_t token);

/* Several rows in one pass (continuous batching): row r feeds tokens[r] to cache kv[r] at that
 * cache's next position. Rows of the same cache must be consecutive tokens of its sequence, in order
 * (a prefill chunk); rows of different caches are independent sequences (decode steps). Every row's
 * keys/values are written before any row attends, so a chunk is causal within itself. The matrix
 * products are sgemm over the n rows. logits receives [count of want_logits, V] for the rows with
 * want_logits[r] != 0, in row order. The arithmetic is that of kd_model_decode_step up to the
 * summation order of the BLAS kernels. */
typedef struct kd_batch_scratch kd_batch_scratch;
int kd_batch_scratch_new(const kd_model *m, int max_rows, kd_batch_scratch **out, kd_error *err);
void kd_batch_scratch_free(kd_batch_scratch *s);
/* invariant != 0: the products of kd_model_step_rows compute every element by one fixed instruction
 * sequence (see rows_invariant in decode.c), so a row's keys, values and logits are bit for bit the
 * same whatever other rows share the call: batched greedy decoding (kdstep eval, eval.batch) is then
 * byte-identical to decoding one prompt at a time, at some cost against BLAS on large prefills.
 * Off by default (BLAS, faster for long prefill chunks of big models). */
void kd_batch_scratch_set_invariant(kd_batch_scratch *s, int invariant);
/* Copy positions 0..n-1 (every layer's keys and values) of src into dst and set dst->pos = n: a
 * shared prompt prefix computed once serves several sequences. n <= src->pos, n <= dst->max_T. */
int kd_kv_cache_copy_prefix(const kd_model *m, kd_kv_cache *dst, const kd_kv_cache *src, int n, kd_error *err);
int kd_model_step_rows(const kd_model *m, kd_batch_scratch *s, int n, kd_kv_cache *const *kv, const int32_t *tokens,
                       const int *want_logits, float *logits, kd_error *err);

typedef struct kd_sampler {
    float temperature; /* 0 = greedy */
    float top_p;       /* 1 = off */
    uint64_t rng;      /* splitmix64 state */
} kd_sampler;
int32_t kd_sampler_next(kd_sampler *s, float *logits, int V);
/* Feed prompt[n_prompt], then sample up to max_new tokens into out (stops after a token in
 * stop[n_stop]). Returns the number of tokens written. */
int kd_model_generate(const kd_model *m, kd_kv_cache *c, const int32_t *prompt, int n_prompt, int max_new,
                      kd_sampler *s, const int32_t *stop, int n_stop, int32_t *out);

#endif
