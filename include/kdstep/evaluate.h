/* Evaluation: render each held-out prompt with the student's chat template and tools, decode with
 * the KV cache (greedy by default), extract the tool calls from the output and score them with the
 * BFCL AST rules (include/kdstep/score.h). MPI-parallel over prompts.
 */
#ifndef KDSTEP_EVALUATE_H
#define KDSTEP_EVALUATE_H

#include <jansson.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "kdstep/config.h"
#include "kdstep/error.h"

typedef struct kd_eval_options {
    const char *model_dir;      /* a checkpoint folder (config.json, model.safetensors, tokenizer.json) */
    const char *prompts_path;   /* prompts with answers (synthesizer metadata) or BFCL questions */
    const char *answers_path;   /* NULL: answers come from the prompts' metadata */
    const char *tools_path;     /* registry, or NULL for per-prompt tools */
    const char *out_dir;        /* predictions.jsonl, report.json, report.md */
    int64_t max_prompts;        /* 0 = all */
    const kd_config *cfg;       /* eval.* */
} kd_eval_options;

/* Collective over comm. Rank 0 writes the outputs; *report_json (rank 0, may be NULL) receives the
 * report as a malloc'd JSON string. */
int kd_eval_run(const kd_eval_options *opt, MPI_Comm comm, char **report_json, kd_error *err);

#endif
