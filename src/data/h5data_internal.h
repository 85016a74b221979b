/* Internals shared by the stages of the HDF5 dataset (include/kdstep/h5data.h is the public side):
 *   h5data_layout.c    the arrays (COLS), attributes, meta.json, file names, the journal, dataset helpers
 *   h5data_recover.c   shard recovery after a crash, and compaction (the appender)
 *   h5data_writer.c    kd_shard: buffer samples, seal them as segments (in the background when asked)
 *   h5data_finalize.c  dataset.h5: every rank's shard mapped as virtual datasets
 *   h5data_reader.c    kd_dataset: read dataset.h5
 * Not a public header: only src/data/h5data_*.c include it. */
#ifndef KDSTEP_H5DATA_INTERNAL_H
#define KDSTEP_H5DATA_INTERNAL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "kdstep/error.h"
#include "kdstep/hash.h"
#include "kdstep/h5data.h"

/* ---- layout (h5data_layout.c) ---- */

/* Every array of the layout. Column kinds say what their length counts. */
enum col_kind { COL_SAMPLE, COL_OFFSETS, COL_TOKEN, COL_BYTES };
/* The element type of a column, in memory and on disk (little-endian). */
enum col_type { T_INT64, T_INT32, T_UINT8, T_FLOAT, NTYPE };
enum {
    C_PROMPT_ID, C_PROMPT_LEN, C_OFFSETS, C_INPUT_IDS, C_LOSS, C_TOOL, C_JSON, C_INTEG, C_TOPK_IDS, C_TOPK_LP,
    C_TAIL, C_KEY_OFF, C_KEY, C_PROMPT_OFF, C_PROMPT, C_TEACHER_OFF, C_TEACHER, C_META_OFF, C_META,
    C_POLICY, /* optional: files written before it read as all 0 (teacher-written); see col_optional */
    NCOL
};
/* Columns a file may lack (written by an earlier kdstep): the reader gives zeros, the checksum leaves
 * them out. Shards without them cannot be resumed or merged (their config hash differs anyway). */
static inline int col_optional(int c) { return c == C_POLICY; }
typedef struct col_def {
    const char *path;
    enum col_kind kind;
    enum col_type type;
    int wide;  /* [T,K] */
    int bytes_of; /* for COL_BYTES: index of its offsets column; for offsets of text: the bytes column */
} col_def;
enum { NGROUP = 4 };
extern const col_def COLS[NCOL];
extern const size_t TYPE_SIZE[NTYPE]; /* bytes of one element */
extern const char *const GROUPS[NGROUP];
/* XXH64 in a stream (h5data_verify.c; the algorithm of
 * https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md, seed 0): the result does not
 * depend on how the bytes are split into updates. */
typedef struct kd_xxh64 {
    uint64_t v[4], total;
    uint8_t buf[32];
    size_t fill;
} kd_xxh64;
void kd_xxh64_init(kd_xxh64 *h);
void kd_xxh64_update(kd_xxh64 *h, const void *data, size_t len);
uint64_t kd_xxh64_final(const kd_xxh64 *h);
/* Seal-time checksum state: one XXH64 per column (h5data_verify.c). */
typedef struct col_sums {
    kd_xxh64 col[NCOL];
} col_sums;

hid_t mem_type(enum col_type t);
hid_t file_type(enum col_type t);
hsize_t chunk_rows(const col_def *c, int k);
void quiet_hdf5(void);

int attr_write_int(hid_t obj, const char *name, int64_t value);
int attr_write_str(hid_t obj, const char *name, const char *value);
/* A malloc'd string, or NULL when absent. */
char *attr_read_str(hid_t obj, const char *name);
int attr_read_int(hid_t obj, const char *name, int64_t *v);
int write_info_attrs(hid_t f, const kd_dataset_info *info);
/* Read the attributes of an open file into info (config_yaml malloc'd into *yaml). */
int read_info_attrs(hid_t f, const char *path, kd_dataset_info *info, char **yaml, char **version, kd_error *err);
/* Compare two infos; on mismatch name the field and both values. `what` names the stored side. */
int info_compare(const kd_dataset_info *stored, const kd_dataset_info *now, const char *what, kd_error *err);

void base_path(char *out, size_t cap, const char *dir, int rank);
void journal_path(char *out, size_t cap, const char *dir, int rank);
void seg_path(char *out, size_t cap, const char *dir, int rank, int64_t seq);
enum { F_BASE, F_JOURNAL, F_SEG, F_TMP, F_OTHER };
int parse_name(const char *name, int *rank, int64_t *seq);

typedef struct journal {
    int present;
    int legacy;           /* no "last_segment": written by the append-in-place writer, counts the base only */
    int64_t samples, tokens, last_segment;
} journal;
/* KD_OK with j->present 0 when absent; an error when unreadable. */
int journal_read(const char *path, journal *jr, kd_error *err);
int journal_write(const char *path, int64_t samples, int64_t tokens, int64_t last_segment, kd_error *err);
/* Test hook for crash tests (KD_DEBUG_KILL_IN_SEAL, see h5data_layout.c). */
void debug_kill(const char *point, int rank, int64_t nth);

hsize_t dset_len(hid_t d);
/* Read rows [first, first+n) of column c into buf. */
int dset_read_rows(hid_t d, const col_def *c, int k, hsize_t first, hsize_t n, void *buf);
/* chunk_n: rows per chunk, 0 = the layout's default */
hid_t create_column(hid_t f, const col_def *c, int k, int deflate, hsize_t initial, hsize_t chunk_n);
int column_deflate(const kd_dataset_info *info, int c);
hid_t fapl_shard(void);
hid_t fapl_latest(void);

/* ---- shard recovery and compaction (h5data_recover.c) ---- */

/* Check one shard-format file; see h5data_recover.c. */
int file_check(const char *path, int64_t cut, int64_t cut_tokens, int64_t *samples_out, int64_t *tokens_out,
               kd_error *err);
/* 1 and *v when the file opens and has the attribute, 0 when it opens without it, -1 when it does not open. */
int file_attr_int(const char *path, const char *name, int64_t *v);

/* One entry of the dataset folder that belongs to a shard rank. */
typedef struct dir_entry {
    int rank, kind;
    int64_t seq;
    char name[256];
} dir_entry;
/* Every shard file in dir, sorted by rank, kind, segment number. */
int list_dir(const char *dir, dir_entry **out, size_t *n, kd_error *err);

/* A rank's sealed files after recovery: its base (optional) then its live segments, in order. */
typedef struct rank_state {
    int rank;
    int has_base;
    int64_t through;         /* segments_through of the base: segments up to this number are folded in */
    int nfiles;
    char (*path)[4096];      /* [nfiles] base first (when present), then segments by number */
    int64_t *seq;            /* [nfiles] 0 for the base */
    int64_t *samples;        /* [nfiles] */
    int64_t total_samples, total_tokens;
    int64_t next_seq;        /* the number the next segment gets */
} rank_state;
void rank_state_free(rank_state *st);
int rank_recover(const char *dir, int rank, const dir_entry *es, size_t n, rank_state *st, kd_error *err);
int rank_compact(const char *dir, rank_state *st, int64_t nth, kd_error *err);
/* Recover every rank in dir (and, with `compact`, fold each rank's segments into its base). */
int recover_all(const char *dir, int compact, rank_state **out, int *nout, kd_error *err);
void free_states(rank_state *st, int n);

int cmp_i64(const void *a, const void *b);
/* Read /samples/prompt_id[0:n) of a shard file (read-only). */
int read_prompt_ids(const char *h5, int64_t n, int64_t *out, kd_error *err);
int fsync_path(const char *path);
/* Bytes of free space in dir, or -1 when unknown. */
long long free_bytes(const char *dir);

/* A shard file written under a temporary name by appending whole files or batches in order: how
 * segments are folded into a base (compaction). Offsets columns are rebased as parts are added. */
typedef struct appender {
    char tmp[4200];
    hid_t f;
    hid_t d[NCOL];
    int k;
    int64_t rows[NCOL], end[NCOL];
    int nparts; /* parts completed */
    col_sums sums; /* of every row appended: the base's seal-time checksum */
} appender;
int app_open(appender *a, const char *tmp, const kd_dataset_info *info, kd_error *err);
void app_abort(appender *a);
int app_add(appender *a, int c, void *data, hsize_t n, kd_error *err);
int app_add_file(appender *a, const char *path, kd_error *err);
int app_finish(appender *a, int64_t through, kd_error *err);
int compaction_commit(const char *dir, int rank, const char *tmp, int64_t through, int64_t samples, int64_t tokens,
                      int64_t nth, kd_error *err);

/* ---- seal-time checksums and shard verification (h5data_verify.c) ---- */

/* One XXH64 per column over the bytes of its rows as written (little-endian, the memory layout),
 * combined as the XXH64 of the NCOL digests (16 hex digits). Every shard-format file gets it when it
 * is sealed (a segment) or built (a compacted base): the attribute "data_xxh64", with
 * "sealed_samples". It does not depend on how the rows were split into writes. A checksum against
 * damage, not a signature (XXH64 runs at memory speed, SHA-256 here at ~40 MB/s). */
void sums_init(col_sums *s);
void sums_add(col_sums *s, int c, const void *data, size_t bytes);
void sums_hex(col_sums *s, char hex[17]);
/* Write data_xxh64 and sealed_samples on an open shard file. */
int sums_write(hid_t f, col_sums *s, int64_t samples);
/* Recompute an open shard file's checksum from its rows (read in blocks: bounded memory). 0, or -1
 * when a column cannot be read. */
int sums_of_file(hid_t f, int k, char hex[17]);
/* Verify one shard file that a dataset maps: it opens, is sealed (has data_xxh64, unless it predates checksums), holds `samples` samples and `tokens` tokens (when >= 0), and its rows
 * hash to its recorded checksum (and to `want_sha`, when given). An error names the file and what
 * is wrong with it. */
int shard_verify(const char *path, int64_t samples, int64_t tokens, const char *want_sha, kd_error *err);

#endif
