/* The trainer's data side (batch.c), internal to src/train (not a public API).
 *
 * The split: a sample is held out by a hash of its prompt id (never by the seed). The window: the
 * student sees at most P prompt tokens (the prompt's last ones) and then the answer, up to T tokens.
 * A sample whose dataset row has no JSON mask (seed datasets) gets its tool-name and JSON masks from
 * the calls found in its response text, by the tools layer's own rule (targets.h). The epoch order
 * is a permutation that depends only on (seed, epoch).
 */
#ifndef KD_TRAIN_BATCH_H
#define KD_TRAIN_BATCH_H

#include <stdint.h>

#include "kdstep/error.h"
#include "kdstep/h5data.h"
#include "kdstep/tokenizer.h"

typedef struct sample_meta {
    int64_t index;     /* in the dataset */
    int64_t prompt_id;
    int64_t n;         /* tokens */
    int64_t prompt_len;
    int fallback;      /* no json_mask in the dataset but tool calls found in the text */
} sample_meta;

/* One micro-batch, padded to [B, T]. */
typedef struct micro_batch {
    int B, T, K;
    int32_t *ids, *lengths;
    uint8_t *loss, *tool, *json, *integ;
    uint8_t *ctx;   /* the context LM term's mask: every window token outside loss (train.context_lm_weight) */
    int32_t *tk_ids;
    float *tk_lp, *tail;
    int64_t tokens; /* real tokens */
    /* on-policy samples (/samples/policy 1, generate.policy student | mixed): docs/losses.md */
    uint8_t *policy;  /* [B]: 1 when row r was written by the student */
    int n_student;    /* rows with policy 1 */
    int32_t *target;  /* [B*T]: the hard targets of the CE-type terms: ids, except at a student-written
                         token the teacher's argmax (its top-1 at that position) where there is one */
    uint8_t *loss_student, *loss_teacher; /* [B*T] scratch: loss split by the row's policy */
} micro_batch;

int kd_mb_alloc(micro_batch *b, int B, int T, int K);
void kd_mb_free(micro_batch *b);
/* Row r empty: no tokens, no masks, no teacher (length 1). */
void kd_mb_clear_row(micro_batch *b, int r);

/* The window's first token: the prompt's last P tokens are kept. */

typedef struct kd_train_data {
    kd_dataset *ds;          /* borrowed */
    const kd_tokenizer *tok; /* borrowed */
    int T;                   /* train.seq_len */
    int64_t P;               /* prompt window */
    int process_supervision;
    int64_t seed;            /* train.seed: the epoch order */
    double eval_fraction;    /* share held out */
    sample_meta *train, *held;
    int64_t n_train, n_held;
    int64_t n_truncated, n_dropped, n_fallback;
    int64_t length_buckets;  /* train.length_buckets: 0 off; N: sort each N steps' samples by length */
    int64_t G;               /* samples per optimizer step (world * grad_accum * micro_batch) */
    int64_t perm_epoch; /* the epoch whose order perm holds (-1: none yet) */
    int64_t *perm;
} kd_train_data;

/* Read every sample's id, length and prompt length; split; count cut and dropped samples; find the
 * samples that need fallback masks. */
int kd_train_data_scan(kd_train_data *d, kd_error *err);
/* The order of epoch `epoch` (n_train indices into d->train), or NULL out of memory. */
const int64_t *kd_train_data_perm(kd_train_data *d, int64_t epoch);
/* The tokens of sample sm's window (at most d->T). */
int64_t kd_train_data_window_len(const kd_train_data *d, const sample_meta *sm);
/* Fill row r of mb with sample sm: its window of at most d->T tokens, at row stride mb->T (which
 * must hold the window: mb->T < d->T only for micro-batches sized to their longest row). */
int kd_train_data_load_row(kd_train_data *d, micro_batch *mb, int r, const sample_meta *sm, kd_error *err);
void kd_train_data_free(kd_train_data *d);

#endif
