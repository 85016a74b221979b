/* Dataset views for people and for the seed's tools: the summary and sample rendering behind
 * `kdstep inspect`, and the seed's JSONL records behind `kdstep export --format jsonl`.
 *
 * Rendering decodes a sample's tokens in runs of equal span kind; tool-name, JSON and integration
 * runs are highlighted with ANSI colours (yellow, cyan, green) when `color` is set, and bracketed as
 * [[tool:...]], [[json:...]], [[integration:...]] otherwise. Without a tokenizer the token ids are
 * printed inside the same marks. The prompt part and the response are printed under their own
 * headings.
 *
 * The export record of a sample has "id", "prompt_id", "prompt", "teacher_text", "metadata" and, each
 * only when its mask has a token, "tool_name_ids" + "tool_name_mask", "gold_json_text_ids" +
 * "mask_valid_json_tokens", "tool_result_fields" + "integration_mask": the ids under the mask, in
 * order, with a mask of ones aligned to them (the seed's shape).
 */
#ifndef KDSTEP_DSVIEW_H
#define KDSTEP_DSVIEW_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "kdstep/error.h"
#include "kdstep/h5data.h"
#include "kdstep/tokenizer.h"

typedef struct kd_dataset_summary {
    int64_t samples, tokens, prompt_tokens, response_tokens;
    int64_t mask_tokens[3];  /* tool name, JSON, integration */
    int64_t mask_samples[3]; /* samples with at least one such token */
    int64_t policy_samples[2]; /* teacher-written, student-written (/samples/policy) */
    /* length distribution (tokens): min, p50, p90, p99, max of whole samples and of their prompts */
    int64_t len_pct[5], prompt_pct[5];
    int64_t fit_seq_len; /* the p99 sample length rounded up to a multiple of 32: train.seq_len for full context */
} kd_dataset_summary;

/* Read the whole dataset in batches and count. */
int kd_dataset_summarize(kd_dataset *ds, kd_dataset_summary *sum, kd_error *err);
/* The train.seq_len that fits 99% of the samples whole (kd_dataset_summary.fit_seq_len), for
 * `train.seq_len: 0` in a job (kdstep run resolves it before training and eval). */
int kd_dataset_fit_seq_len(const char *dataset_dir, int64_t *seq_len, kd_error *err);
/* Print the summary (and the dataset's attributes) as text. */
void kd_dataset_summary_print(const kd_dataset *ds, const kd_dataset_summary *sum, FILE *out);

/* Print one sample (view from kd_batch_sample with texts). `tok` may be NULL. */
int kd_sample_render(const kd_sample *s, const kd_tokenizer *tok, int color, FILE *out, kd_error *err);

/* The seed's JSONL record of one sample (new reference). */
json_t *kd_sample_to_seed_json(const kd_sample *s);

/* Write every sample of the dataset as one seed record per line. */
int kd_dataset_export_jsonl(kd_dataset *ds, FILE *out, int64_t *written, kd_error *err);

#endif
