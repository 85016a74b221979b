/* A generation worker: runs many conversations at once through the teacher (submit, collect, tool
 * simulator, resubmit), and turns each finished one into a sample in its HDF5 shard, or into a
 * failure record. Driven by the coordinator loop in src/gen/gen.c; it never talks MPI itself.
 */
#ifndef KDSTEP_WORKER_H
#define KDSTEP_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "kdstep/error.h"
#include "kdstep/gen.h"

typedef struct kd_gen_worker kd_gen_worker;

enum {
    KD_GEN_C_SAMPLES = 0,  /* samples appended */
    KD_GEN_C_FAILURES,     /* failure records produced */
    KD_GEN_C_TOKENS,       /* tokens appended */
    KD_GEN_C_RETRIES,      /* teacher retries */
    KD_GEN_C_USAGE_PROMPT, /* teacher usage: prompt tokens */
    KD_GEN_C_USAGE_COMPLETION,
    KD_GEN_C_T_TEACHER_US, /* time in the teacher (submit + collect), microseconds */
    KD_GEN_C_T_TOKENIZE_US,
    KD_GEN_C_T_EXTRACT_US, /* extraction + mask alignment */
    KD_GEN_C_T_HDF5_US,    /* HDF5 on the worker's own path: appends, waits for the writer thread, close */
    KD_GEN_C_T_OTHER_US,   /* rendering, top-k assembly */
    KD_GEN_C_T_HDF5_BG_US, /* the shard's writer thread sealing, overlapped with the above (not in their sum) */
    KD_GEN_C_TOKCACHE_LOOKUPS, /* tokenizer segment cache: long spans looked up */
    KD_GEN_C_TOKCACHE_HITS,
    KD_GEN_C_TOKCACHE_HIT_BYTES, /* text bytes whose ids came from the cache */
    KD_GEN_C_TOKENIZE_BYTES,     /* text bytes tokenized */
    /* only with KDSTEP_BENCH_TOKENIZER_PEER=1 (tests/bench/generate.sh): the plain, uncached tokenizer
     * on the same texts, timed beside the pipeline (not in its time), and how many of its encodings
     * differed from the cached ones (must be 0) */
    KD_GEN_C_T_TOKENIZE_PEER_US,
    KD_GEN_C_TOKCACHE_MISMATCHES,
    KD_GEN_C_FILTERED,     /* conversations generate.filter rejected (also in KD_GEN_C_FAILURES: records) */
    /* teacher_coverage: trained tokens of each kind (tool name, JSON, integration, other) and those
     * of them with teacher top-k, in pairs */
    KD_GEN_C_COV_TOKENS,
    KD_GEN_C_COV_NAME_COVERED,
    KD_GEN_C_COV_JSON_TOKENS,
    KD_GEN_C_COV_JSON_COVERED,
    KD_GEN_C_COV_INTEG_TOKENS,
    KD_GEN_C_COV_INTEG_COVERED,
    KD_GEN_C_COV_OTHER_TOKENS,
    KD_GEN_C_COV_OTHER_COVERED,
    /* generate.policy student | mixed: student turns, the tokens it decoded, the time it took (not in
     * the time shares above), the samples it wrote, and its calls with their failure kinds
     * (include/kdstep/onpolicy.h kd_call_census) */
    KD_GEN_C_STUDENT_TURNS,
    KD_GEN_C_STUDENT_TOKENS,
    KD_GEN_C_T_STUDENT_US,
    KD_GEN_C_STUDENT_SAMPLES,
    KD_GEN_C_STUDENT_CALLS,
    KD_GEN_C_STUDENT_UNKNOWN_TOOL,
    KD_GEN_C_STUDENT_BAD_JSON,
    KD_GEN_C_STUDENT_SCHEMA_INVALID,
    KD_GEN_C_STUDENT_UNCLOSED,
    KD_GEN_NCOUNTERS
};

/* The dataset's identity from the options: K, process supervision, tokenizer/registry/config hashes
 * and the config as YAML (*config_yaml, malloc'd, referenced by info->config_yaml). */
struct kd_dataset_info;
int kd_gen_dataset_info(const kd_gen_options *opt, struct kd_dataset_info *info, char **config_yaml, kd_error *err);

/* `shard_rank` names the shard file this worker writes. */
int kd_gen_worker_open(kd_gen_worker **out, const kd_gen_options *opt, int shard_rank, kd_error *err);
/* Start one prompt (a raw JSON Lines record and its 0-based index in the prompt set). A line that
 * does not parse becomes a failure record, not an error. */
int kd_gen_worker_submit(kd_gen_worker *w, int64_t index, const char *line, size_t len, kd_error *err);
/* Make progress for up to timeout_s. Returns the status of a fatal error (disk full, HDF5 failure). */
int kd_gen_worker_poll(kd_gen_worker *w, double timeout_s, kd_error *err);
/* Conversations started and not finished. */
int kd_gen_worker_in_flight(const kd_gen_worker *w);
/* The worker's capacity: how many conversations it keeps in flight. */
int kd_gen_worker_capacity(const kd_gen_worker *w);
/* Failure records (one JSON object per line, no newline) produced since the last call; the caller
 * frees each string and the array. */
int kd_gen_worker_take_failures(kd_gen_worker *w, char ***lines, int *n);
void kd_gen_worker_counters(const kd_gen_worker *w, int64_t out[KD_GEN_NCOUNTERS]);
/* Seal the shard and compact its segments (timed as HDF5), keeping the worker for its counters. */
int kd_gen_worker_finish(kd_gen_worker *w, kd_error *err);
/* Finish (when not done yet) and close. */
int kd_gen_worker_close(kd_gen_worker *w, kd_error *err);
/* Close without sealing (fatal error paths). */
void kd_gen_worker_abandon(kd_gen_worker *w);

#endif
