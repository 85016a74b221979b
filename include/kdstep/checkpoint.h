/* Training checkpoints: a Hugging Face student folder plus the trainer state needed to resume.
 *
 *   RUN_DIR/checkpoints/step-000100/   model.safetensors, config.json, tokenizer.json
 *                                      (+ tokenizer_config.json when the tokenizer has one),
 *                                      trainer_state.json (step, AdamW step, data cursor, seed ...),
 *                                      optimizer.bin (AdamW first then second moments, raw float32
 *                                      little-endian, n_params each; its SHA-256 is in the state)
 *   RUN_DIR/checkpoints/latest         one line: the name of the newest complete checkpoint
 *   RUN_DIR/final/                     a clean Hugging Face model folder, written at the end of a run
 *                                      (what eval and serve load; see kd_checkpoint_write_final)
 *
 * A checkpoint is written into a ".tmp-<name>" sibling, fsynced, then renamed into place; `latest`
 * is replaced atomically after the rename. A crash at any moment leaves `latest` naming a complete
 * folder. Only rank 0 writes (every rank holds the same parameters and moments).
 */
#ifndef KDSTEP_CHECKPOINT_H
#define KDSTEP_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "kdstep/error.h"
#include "kdstep/model.h"

#define KD_CHECKPOINT_FORMAT 1

typedef struct kd_train_state {
    int64_t step;        /* optimizer steps done (the next step to run) */
    int64_t adam_t;      /* AdamW updates applied (skipped NaN/Inf steps do not count) */
    int64_t bad_steps;   /* consecutive skipped steps at this point */
    int64_t total_steps; /* of the run that wrote it */
    int64_t seed;        /* train.seed: the data order is a pure function of (seed, epoch) */
    int64_t data_cursor; /* samples of the shuffled training stream consumed (step * global batch) */
    int64_t world, micro_batch, grad_accum, seq_len;
    char config_sha256[65];
} kd_train_state;

/* Write `m` + `st` as folder `dir` (replacing an existing one) through `dir`.tmp. tokenizer_json is
 * the student's tokenizer.json path (copied, with a tokenizer_config.json next to it if present). */
int kd_checkpoint_write(const char *dir, const kd_model *m, const char *tokenizer_json, const kd_train_state *st,
                        kd_error *err);
/* The model folder others load (transformers, vLLM, kdstep eval/serve), and nothing else:
 *   config.json (torch_dtype = the saved dtype), model.safetensors, or model-0000i-of-0000N.safetensors
 *   + model.safetensors.index.json above max_shard_bytes, generation_config.json (eos_token_id = the
 *   chat template's end-of-turn and end-of-text ids, pad_token_id = end-of-text), tokenizer.json and
 *   tokenizer_config.json (the tokenizer's own, given the Qwen3 chat_template when it has none).
 * Written through `dir`.tmp + rename, as checkpoints. No optimizer or trainer state: those live in
 * checkpoints/ only. */
typedef struct kd_final_options {
    int dtype;                /* KD_ST_F32 | KD_ST_BF16 | KD_ST_F16 */
    uint64_t max_shard_bytes; /* 0: never shard */
} kd_final_options;
int kd_checkpoint_write_final(const char *dir, const kd_model *m, const char *tokenizer_json,
                              const kd_final_options *opt, kd_error *err);
/* train.save_dtype and train.max_shard_size as options (an error names the bad key). */
int kd_final_options_parse(const char *save_dtype, const char *max_shard_size, kd_final_options *opt, kd_error *err);

/* Point RUN_DIR/checkpoints/latest at `name` (atomic replace). */
int kd_checkpoint_set_latest(const char *run_dir, const char *name, kd_error *err);
/* Path of the latest checkpoint of RUN_DIR; KD_ERR_NOTFOUND when there is none. */
int kd_checkpoint_latest(const char *run_dir, char *path, size_t cap, kd_error *err);
/* Load parameters, moments and state from a checkpoint folder into an allocated model of the same
 * shape. */
int kd_checkpoint_load(const char *dir, kd_model *m, kd_train_state *st, kd_error *err);

#endif
