/* A student checkpoint opened for answering prompts: the model (decode-only, batch 1), its
 * tokenizer, the stop tokens and a KV cache that keeps the longest common token prefix of
 * consecutive prompts. Held-out prompts share the whole system block (the tools), so reusing its
 * keys/values skips most of each prompt's prefill; the result is bit-identical to a fresh cache
 * because position j's keys/values depend only on tokens 0..j.
 *
 * A checkpoint folder holds config.json, model.safetensors and tokenizer.json (what the trainer
 * writes). The tokenizer may not have more ids than the model's vocabulary; a model vocabulary
 * larger than the tokenizer (HF pads it) is fine: ids the tokenizer cannot decode are never sampled.
 * Decoding stops after <|im_end|> or <|endoftext|> (whichever the tokenizer has) or max_new tokens.
 */
#ifndef KDSTEP_STUDENT_H
#define KDSTEP_STUDENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "kdstep/error.h"
#include "kdstep/model.h"
#include "kdstep/tokenizer.h"
#include "kdstep/toolguide.h"

typedef struct kd_student {
    kd_model *model;
    kd_tokenizer *tok;
    int32_t stop[2]; /* <|im_end|>, <|endoftext|> (those the tokenizer has) */
    int n_stop;
    uint8_t *decodable; /* [vocab_size]: 1 for ids the tokenizer can decode */
    kd_kv_cache *cache;
    int32_t *cached; /* the tokens whose keys/values are in the cache, [cache->max_T] */
    kd_encoding enc;
    float *logits; /* [vocab_size] scratch for sampling */
    int max_prompt_tokens; /* > 0: keep only the prompt's last tokens, as training windows do */
    /* kd_student_generate_batch: one cache per slot (each keeps its last prompt as a reusable
     * prefix, as `cache` does), the rows' scratch and the logits of each slot's next token */
    int n_slots;
    kd_kv_cache **slot_cache;
    int32_t **slot_tokens; /* the tokens whose keys/values are in slot_cache[i], [max_T] */
    kd_batch_scratch *rows;
    float *slot_logits; /* [n_slots, V] */
    float *row_logits;  /* [n_slots, V] what one kd_model_step_rows call returns */
} kd_student;

/* What one answer cost. */
typedef struct kd_student_stats {
    int prompt_tokens;   /* tokens of the rendered prompt */
    int reused_tokens;   /* of those, taken from the cache (common prefix with the previous call) */
    int new_tokens;      /* tokens generated, the stop token included */
    int stopped;         /* 1: ended on a stop token; 0: ran out of max_new (or of positions) */
    int truncated;       /* 1: the prompt does not fit max_position_embeddings; nothing was generated */
    int prompt_cut;      /* head tokens of the prompt left out by the window (max_prompt_tokens) */
} kd_student_stats;

int kd_student_open(kd_student **out, const char *dir, kd_error *err);
void kd_student_close(kd_student *s);

/* Decode up to max_new tokens after prompt[n_prompt] into out (capacity max_new); *n_out receives
 * how many (the stop token included). sampler->temperature 0 is greedy. */
int kd_student_generate(kd_student *s, const int32_t *prompt, int n_prompt, int max_new, kd_sampler *sampler,
                        int32_t *out, int *n_out, kd_student_stats *st, kd_error *err);

/* One prompt of a batch: the prompt and the sampler in, the tokens and the stats out. */
typedef struct kd_student_job {
    const int32_t *prompt;
    int n_prompt;
    int max_new;
    kd_sampler *sampler; /* advanced only by this job's draws, so a job decodes as it would alone */
    int32_t *out;        /* capacity max_new */
    int n_out;
    kd_student_stats st;
    kd_tool_guide *guide; /* NULL: unguided; else masks each step's logits (include/kdstep/toolguide.h) */
} kd_student_job;

/* Decode n prompts together: each forward pass runs one row per unfinished prompt (a KV cache per
 * prompt, ragged lengths), and the prefills run as row chunks. A prefix that a prompt shares with an
 * earlier prompt of the batch, or with the last prompt of its slot, is computed once and its keys and
 * values copied. Every job's tokens are byte for byte those of kd_student_generate_batch with n = 1
 * (the batch-invariant products of kd_batch_scratch_set_invariant). */
int kd_student_generate_batch(kd_student *s, kd_student_job *jobs, int n, kd_error *err);

/* The token ids kd_student_answer decodes after: rendered, encoded and cut to the last
 * max_prompt_tokens (*cut: how many head tokens were left out). *ids is malloc'd. */
int kd_student_prompt_ids(kd_student *s, const json_t *messages, const json_t *tools, int32_t **ids, int *n, int *cut,
                          kd_error *err);
/* Generated ids -> the answer text (without the stop token when stopped). *text is malloc'd. */
int kd_student_answer_text(kd_student *s, const int32_t *ids, int n, int stopped, char **text, kd_error *err);

/* The prompt as the student sees it: `messages` (OpenAI messages array) with `tools` (OpenAI tools
 * array; NULL or empty renders no tools block) in the student's chat template with the generation
 * prompt. Token for token the prompt part of the samples the generation job writes for the same
 * record (tested), so the student continues where it learned to answer. *text is malloc'd. */
int kd_student_render_prompt(const json_t *messages, const json_t *tools, char **text, size_t *len, kd_error *err);

/* Render (kd_student_render_prompt), encode, generate and decode: *text (malloc'd) is the raw output without the stop token. */
int kd_student_answer(kd_student *s, const json_t *messages, const json_t *tools, int max_new, kd_sampler *sampler,
                      char **text, kd_student_stats *st, kd_error *err);

/* Forget the cached prefix (the next call prefills from scratch). */
void kd_student_reset(kd_student *s);

#endif
