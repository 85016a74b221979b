/* The HDF5 dataset: per-rank shard writers that seal in chunks, resume after a crash, a finalize
 * step that presents all shards as one dataset.h5 (virtual datasets), and the reader training uses.
 *
 * A dataset is a folder: meta.json (format, K, hashes, config), per writer rank a shard-RRRRR.h5 and
 * a shard-RRRRR.journal, dataset.h5 after finalize; while a run is going, also the rank's sealed
 * segments shard-RRRRR.seg-NNNNNNNN.h5. Every array is flat (CSR) with int64 offsets, chunked,
 * compressed where it pays, and there are no variable-length HDF5 types (texts are UTF-8 bytes with
 * their own offsets), so virtual datasets map shards 1:1. The layout is in docs/dataset-format.md.
 *
 * Sealed data is immutable. A shard writer buffers appended samples in memory; every `seal_every`
 * samples (and on close) it writes them as a new segment file, complete in itself (the shard layout
 * with segment-local offsets): written under a temporary name, closed, fsynced, renamed into place,
 * the folder fsynced, then the journal ({"samples", "tokens", "last_segment"}) rewritten atomically.
 * The rename is the commit point, so a crash at any moment, inside a seal included, loses at most the
 * samples not yet sealed; no sealed file is ever opened for writing again. On close, each rank
 * compacts: its base shard-RRRRR.h5 and its segments are copied into a new base (temporary name,
 * fsync, rename, fsync), which records the last segment it holds (attribute segments_through); only
 * then are the segments removed, and recovery removes leftovers the base already holds. Finalize
 * compacts what is left (ranks of an earlier, larger run) before it writes dataset.h5.
 *
 * Recovery (on open, and by rank 0 before a run) removes temporaries, and moves a file that cannot be
 * read back aside to *.corrupt (its prompts are then not done and are generated again, never
 * half-present); that needs damage from outside (a disk fault, a truncated copy). Shards written by
 * the earlier append-in-place writer (journal without last_segment) are cut back to their journal.
 *
 * Threads: HDF5 is used through its serial API (each rank its own files), which is not thread-safe;
 * call a shard's functions from one thread (the worker's main loop), not from teacher-request threads.
 */
#ifndef KDSTEP_H5DATA_H
#define KDSTEP_H5DATA_H

#include <stddef.h>
#include <stdint.h>

#include "kdstep/error.h"

#define KD_DATASET_FORMAT_VERSION 1

/* What the whole dataset was made with; stored in meta.json and as attributes of every file. */
typedef struct kd_dataset_info {
    int topk;                  /* K of /teacher/topk_* (>= 1) */
    int process_supervision;   /* 0: span masks are all zero (--no-process-supervision) */
    char tokenizer_sha256[65];
    char registry_sha256[65];
    char config_sha256[65];
    const char *config_yaml;   /* the config as YAML (may be NULL); owned by the caller on write */
    int deflate_level;         /* 0 = no compression, 1..9 (default 1): masks, offsets, texts */
    int compress_token_data;   /* also deflate input_ids and the teacher arrays (default 1: on real
                                  data, ~95% prompt rows of -1/-inf, they shrink ~21x; the writer
                                  thread pays the time, off the pipeline's path) */
} kd_dataset_info;

void kd_dataset_info_init(kd_dataset_info *info);

/* One sample. For writing, the caller owns every pointer; for reading, kd_batch_sample fills a view
 * into the batch's arrays. Masks may be NULL on write (written as zeros). topk arrays are [n*K]. */
typedef struct kd_sample {
    int64_t prompt_id;          /* 0-based index of the prompt in the prompt set */
    int64_t prompt_len;         /* tokens of the prompt; the response follows */
    int64_t n;                  /* tokens */
    const int32_t *input_ids;
    const uint8_t *loss_mask;
    const uint8_t *tool_name_mask;
    const uint8_t *json_mask;
    const uint8_t *integration_mask;
    const int32_t *topk_ids;
    const float *topk_logprobs;
    const float *tail_logprob;
    const char *prompt_key;     /* the prompt's "id" string (may be NULL -> "") */
    const char *prompt_text;    /* may be NULL -> "" */
    const char *teacher_text;   /* may be NULL -> "" */
    const char *metadata;       /* JSON text (may be NULL -> "{}") */
    uint8_t policy;             /* who wrote the assistant turns: 0 the teacher, 1 the student (generate.policy) */
} kd_sample;

/* ---- dataset folder ---------------------------------------------------------------------------- */

/* Create DIR if needed and write meta.json, or, when it exists, check that it matches `info`
 * (format, K, process_supervision, tokenizer/registry/config hashes). A mismatch is KD_ERR_INVALID
 * naming the field, both values and the folder. Rank 0 calls this before any writer opens. */
int kd_dataset_prepare(const char *dir, const kd_dataset_info *info, kd_error *err);

/* Check and repair every shard in DIR against its journal (truncate unsealed rows, move corrupt
 * shards aside) and return the sorted prompt ids already done (*ids malloc'd, may be NULL when
 * *n == 0). Duplicated ids across shards are an error naming both files. Rank 0 runs this once
 * before the workers open their shards (which then find nothing to repair). */
int kd_dataset_recover(const char *dir, int64_t **ids, size_t *n, kd_error *err);

/* The same, as a bitmap: bit i of (*bits)[i / 8] is set when prompt id i is done (*bits malloc'd,
 * *nbits a multiple of 8, may be NULL when *count == 0). Memory is 1 bit per prompt id, not 8 bytes
 * per sample: what the coordinator uses to resume a 10-million-prompt run. */
int kd_dataset_recover_done(const char *dir, uint8_t **bits, int64_t *nbits, int64_t *count, kd_error *err);

/* Samples and tokens of DIR/dataset.h5 (its num_samples and last offset: O(1), no full read). */
int kd_dataset_totals(const char *dir, int64_t *samples, int64_t *tokens, kd_error *err);

/* Write DIR/dataset.h5 (atomically) presenting every sealed shard as one dataset: virtual datasets
 * for per-sample and per-token arrays, real global offsets. *samples gets the total (may be NULL). */
int kd_dataset_finalize(const char *dir, int64_t *samples, kd_error *err);

/* ---- shard writer ------------------------------------------------------------------------------ */

typedef struct kd_shard kd_shard;

/* Open rank `rank`'s shard in DIR for appending: recover its files (see above), check their
 * attributes against `info`, and continue after its last segment. Nothing is created until the first
 * seal. seal_every >= 1. */
int kd_shard_open(kd_shard **out, const char *dir, int rank, const kd_dataset_info *info, int seal_every,
                  kd_error *err);
/* Buffer one sample (copied); seals when seal_every samples are buffered. */
int kd_shard_append(kd_shard *sh, const kd_sample *s, kd_error *err);
/* Room for the next sample's teacher arrays ([n*K], [n*K], [n]) inside the shard's buffer: fill
 * them and pass the same pointers in the kd_sample given to kd_shard_append, which then does not copy
 * them (they are most of a sample's bytes). Valid until the next append or seal. */
int kd_shard_reserve_teacher(kd_shard *sh, int64_t n, int32_t **topk_ids, float **topk_logprobs, float **tail,
                             kd_error *err);
/* Write the buffered samples as a new segment (temporary name, fsync, rename, fsync the folder), then
 * record the sealed count in the journal. On failure nothing sealed before is touched. */
int kd_shard_seal(kd_shard *sh, kd_error *err);
int64_t kd_shard_sealed(const kd_shard *sh);   /* samples sealed in this shard */
int64_t kd_shard_buffered(const kd_shard *sh); /* samples waiting for the next seal */
/* Prompt ids sealed in this shard (sorted, read back from its files), valid until the next call or
 * close. */
const int64_t *kd_shard_done_ids(kd_shard *sh, size_t *n);
/* Seal what is buffered, compact the rank's segments into its base shard, then close. Returns the
 * first failure's status; the shard is freed either way (sealed data stays safe in its segments). */
int kd_shard_close(kd_shard *sh, kd_error *err);
/* Seal in the background from now on: a writer thread seals each full batch (and folds it into the
 * rank's next base, so close has little left to do) while appends fill the next. A crash then loses
 * at most the batch being sealed plus the one being filled (2 x seal_every samples); kd_shard_seal
 * and kd_shard_close still return only when everything is sealed. Errors of a background seal are
 * returned by the next append that seals, kd_shard_seal or kd_shard_close. */
int kd_shard_background(kd_shard *sh, kd_error *err);
/* Seconds the writer thread spent sealing (0 without kd_shard_background). */
double kd_shard_background_seconds(const kd_shard *sh);
/* Fold rank `rank`'s segments in DIR into its base shard-RRRRR.h5 (crash-safe: see above). */
int kd_shard_compact(const char *dir, int rank, kd_error *err);
/* Close WITHOUT sealing the buffered tail (what a crash does; for tests and for aborts). */
void kd_shard_abandon(kd_shard *sh);

/* ---- reader ------------------------------------------------------------------------------------ */

typedef struct kd_dataset kd_dataset;

/* A batch of consecutive samples; token arrays are concatenated, offsets rebased to 0. */
typedef struct kd_batch {
    int64_t first, count;
    int topk;
    int64_t *offsets;          /* [count+1] */
    int64_t *prompt_id, *prompt_len;
    uint8_t *policy;           /* [count]: 0 teacher-written, 1 student-written (0 in files without the column) */
    int32_t *input_ids;        /* [T] */
    uint8_t *loss_mask, *tool_name_mask, *json_mask, *integration_mask;
    int32_t *topk_ids;         /* [T*K] */
    float *topk_logprobs;      /* [T*K] */
    float *tail_logprob;       /* [T] */
    char **prompt_key, **prompt_text, **teacher_text, **metadata; /* [count], NULL unless KD_READ_TEXT */
} kd_batch;

enum { KD_READ_TEXT = 1 };

/* `path` is a dataset folder (its dataset.h5), a dataset.h5 or a single shard file. Checks format
 * version, that every virtual source file exists, and that offsets are monotone. */
int kd_dataset_open(kd_dataset **out, const char *path, kd_error *err);
void kd_dataset_close(kd_dataset *ds);
int64_t kd_dataset_count(const kd_dataset *ds);
int64_t kd_dataset_tokens(const kd_dataset *ds);
const kd_dataset_info *kd_dataset_get_info(const kd_dataset *ds);
const char *kd_dataset_path(const kd_dataset *ds);
const char *kd_dataset_kdstep_version(const kd_dataset *ds);
/* Read samples [first, first+count). Validates masks (0/1, span masks only on loss tokens),
 * prompt_len <= tokens; an error names the file and the sample. `out` is reset; free with kd_batch_free. */
int kd_dataset_read(kd_dataset *ds, int64_t first, int64_t count, int flags, kd_batch *out, kd_error *err);
void kd_batch_free(kd_batch *b);
/* A view of sample i (0 <= i < b->count) of the batch. */
void kd_batch_sample(const kd_batch *b, int64_t i, kd_sample *view);

#endif
