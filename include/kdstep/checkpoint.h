/* Training checkpoints: a Hugging Face student folder plus the trainer state needed to resume.
 *
 *   RUN_DIR/checkpoints/step-000100/   model.safetensors, config.json, tokenizer.json
 *                                      (+ tokenizer_config.json when the tokenizer has one),
 *                                      trainer_state.json (step, AdamW step, data cursor, seed ...),
 *                                      optimizer.bin (AdamW first then second moments, raw float32
 *                                      little-endian, n_params each; its SHA-256 is in the state)
 *   RUN_DIR/checkpoints/latest         one line: the name of the newest complete checkpoint
 *   RUN_DIR/final/                     the same shape, written at the end of a run (what eval loads)
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
/* Point RUN_DIR/checkpoints/latest at `name` (atomic replace). */
int kd_checkpoint_set_latest(const char *run_dir, const char *name, kd_error *err);
/* Path of the latest checkpoint of RUN_DIR; KD_ERR_NOTFOUND when there is none. */
int kd_checkpoint_latest(const char *run_dir, char *path, size_t cap, kd_error *err);
/* Load parameters, moments and state from a checkpoint folder into an allocated model of the same
 * shape. */
int kd_checkpoint_load(const char *dir, kd_model *m, kd_train_state *st, kd_error *err);

#endif
