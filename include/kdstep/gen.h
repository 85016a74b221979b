/* The MPI generation job: rank 0 streams the prompt set and hands out chunks of prompt ids on
 * request; workers (every rank but 0, or rank 0 itself when alone) run each conversation to the end
 * through the teacher and the tool simulator, render it in the student's chat template, tokenize,
 * extract process-step spans, build aligned masks and the teacher's top-k, and append the sample
 * to their own HDF5 shard, sealed in chunks. Rerunning on the same folder continues where it
 * stopped (refusing when the tokenizer, registry or config hash differs).
 */
#ifndef KDSTEP_GEN_H
#define KDSTEP_GEN_H

#include <mpi.h>
#include <stdint.h>

#include "kdstep/config.h"
#include "kdstep/error.h"

typedef struct kd_gen_options {
    const char *prompts_path;   /* JSON Lines prompt set (BFCL files load as they are) */
    const char *out_dir;        /* dataset folder */
    const char *tools_path;     /* registry; per-prompt tools take precedence */
    const char *tokenizer_path; /* student tokenizer (folder or tokenizer.json) */
    int64_t total;              /* cap on prompts taken from the set; 0 = all */
    int force;                  /* remove an existing out_dir first */
    int slice_index;            /* job arrays: take prompt indices with index % slice_count == slice_index */
    int slice_count;            /* 0 or 1: no slicing */
    const kd_config *cfg;       /* teacher.*, generate.*, process_supervision.enabled */
} kd_gen_options;

typedef struct kd_gen_stats {
    int64_t prompts_seen;    /* prompts read (within total/slice) */
    int64_t already_done;    /* skipped because a previous run finished them */
    int64_t samples;         /* samples written by this run */
    int64_t failures;        /* prompts recorded in failures.jsonl by this run */
    int64_t filtered;        /* prompts dropped by design without a failures.jsonl record (0: generate.filter
                              * records its drops, so they count in failures); samples + filtered +
                              * failures = prompts_seen - already_done, checked at the end */
    int64_t tokens;          /* tokens written by this run */
    int64_t teacher_retries;
    double wall_s;
} kd_gen_stats;

/* Collective over comm. Fills stats on rank 0. */
int kd_gen_run(const kd_gen_options *opt, MPI_Comm comm, kd_gen_stats *stats, kd_error *err);

/* Merge the slice folders of a job array (each a finished generation folder) into out_dir. */
int kd_gen_merge(const char *out_dir, const char *const *slice_dirs, int n, kd_error *err);

#endif
