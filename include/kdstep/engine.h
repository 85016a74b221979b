/* The serving engine: a student checkpoint answering many requests at once.
 *
 * Requests (token ids + sampling parameters) are submitted from any thread; one scheduler thread
 * runs them with continuous batching: every step gathers up to max_batch live sequences, takes a
 * chunk of prompt tokens from those still in prefill and one token from those decoding, runs all of
 * those rows through one kd_model_step_rows pass (sgemm over the rows, each sequence its own KV
 * cache), then samples. A sequence that finishes leaves the batch and a queued one takes its place
 * at the next step. Waiters poll kd_seq_wait for new tokens (streaming) or for the end.
 *
 * Logprobs are those of the model's distribution (log-softmax of the raw logits over the whole
 * vocabulary, before temperature), as vLLM and OpenAI report them. The prompt's are computed over
 * the prompt's positions when prompt_logprobs >= 0 (entry 0 has none: nothing predicts it).
 */
#ifndef KDSTEP_ENGINE_H
#define KDSTEP_ENGINE_H

#include <stdint.h>

#include "kdstep/error.h"
#include "kdstep/student.h"

#define KD_ENGINE_MAX_TOP 20 /* top_logprobs / prompt_logprobs bound (OpenAI's and vLLM's default cap) */

typedef struct kd_engine_options {
    int max_batch;      /* live sequences per step (default 16) */
    int prefill_chunk;  /* prompt tokens per sequence per step (default 256) */
    int max_queue;      /* waiting + live sequences before submit refuses (default 256) */
    size_t max_kv_bytes; /* the KV caches of all waiting + live sequences together (default 2 GiB): each
                            needs kd_engine_kv_bytes(prompt + max_tokens); a submit that would pass the
                            budget is refused, as busy (KD_ERR_IO) or, when it alone passes it, as too
                            big (KD_ERR_INVALID) */
} kd_engine_options;

typedef struct kd_gen_params {
    int max_tokens;     /* >= 1 */
    float temperature;  /* 0: greedy */
    float top_p;        /* (0, 1]; 1: off */
    uint64_t seed;
    int top_logprobs;   /* 0..KD_ENGINE_MAX_TOP alternatives per generated token */
    int prompt_logprobs; /* -1: none; 0..KD_ENGINE_MAX_TOP: logprob (+ top-k) of every prompt token */
    int ignore_eos;     /* 1: do not stop at the stop ids (vLLM's ignore_eos; benchmarks) */
    kd_tool_guide *guide; /* NULL, or guided tool calls (include/kdstep/toolguide.h): a successful
                             kd_engine_submit hands it to the sequence, which closes it */
} kd_gen_params;

typedef struct kd_gen_token {
    int32_t id;
    float logprob;
    int rank;  /* 1 = the most likely token */
    int n_top;
    int32_t top_id[KD_ENGINE_MAX_TOP];
    float top_logprob[KD_ENGINE_MAX_TOP];
} kd_gen_token;

enum { KD_SEQ_RUNNING = 0, KD_SEQ_STOP = 1, KD_SEQ_LENGTH = 2, KD_SEQ_CANCELLED = 3, KD_SEQ_FAILED = 4 };

typedef struct kd_engine kd_engine;
typedef struct kd_seq kd_seq;

int kd_engine_open(const char *model_dir, const kd_engine_options *opt, kd_engine **out, kd_error *err);
/* Stop the scheduler; sequences still running end as KD_SEQ_CANCELLED and new submits are refused.
 * The engine stays valid for waiters and kd_seq_release until kd_engine_close. */
void kd_engine_shutdown(kd_engine *e);
/* Shutdown (if not done) and free; every kd_seq must have been released. */
void kd_engine_close(kd_engine *e);
/* The checkpoint (tokenizer, stop ids, config); read-only. */
const kd_student *kd_engine_student(const kd_engine *e);

/* Bytes of KV cache (and per-sequence decode buffers) a sequence of `tokens` positions takes. */
size_t kd_engine_kv_bytes(const kd_engine *e, int tokens);

/* Queue a request; *out is held by the caller until kd_seq_release. The prompt is copied.
 * Errors: an empty prompt, prompt + max_tokens over max_position_embeddings (KD_ERR_INVALID), a full
 * queue or KV budget (KD_ERR_IO: busy, retry later), a request needing more than the whole KV budget. */
int kd_engine_submit(kd_engine *e, const int32_t *prompt, int n_prompt, const kd_gen_params *p, kd_seq **out,
                     kd_error *err);
/* Wait until more than `have` tokens exist or the sequence ended, at most timeout_s. Returns the
 * number of generated tokens now available (the stop token included); *state receives KD_SEQ_*. */
int kd_seq_wait(kd_seq *s, int have, double timeout_s, int *state);
/* The generated tokens (valid up to what kd_seq_wait returned) and the prompt logprobs ([n_prompt];
 * NULL unless asked for; entry 0 is empty). */
const kd_gen_token *kd_seq_tokens(const kd_seq *s);
const kd_gen_token *kd_seq_prompt_logprobs(const kd_seq *s);
int kd_seq_prompt_len(const kd_seq *s);
/* Ask the scheduler to drop it (a client went away); safe at any time. */
void kd_seq_cancel(kd_seq *s);
void kd_seq_release(kd_seq *s);

/* Engine counters, for /metrics-like reporting and tests. */
typedef struct kd_engine_stats {
    int64_t steps, rows, decode_rows, prefill_rows, finished, max_live;
    int64_t cancelled;     /* sequences dropped before their end (a client went away) */
    int64_t live, waiting; /* now */
    int64_t kv_bytes;      /* now: KV cache budget held by waiting + live sequences */
    int64_t kv_refused;    /* submits refused for the KV budget */
} kd_engine_stats;
void kd_engine_get_stats(kd_engine *e, kd_engine_stats *st);

#endif
