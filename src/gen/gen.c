/* The MPI generation job: coordinator and worker loops. See include/kdstep/gen.h.
 *
 * Protocol (all messages on the job's communicator, rank 0 <-> worker r):
 *   r -> 0  TAG_WANT   int64[KD_GEN_NCOUNTERS]  "send me a chunk" + the worker's cumulative counters
 *   r -> 0  TAG_STAT   int64[KD_GEN_NCOUNTERS]  counters only (every second while busy)
 *   r -> 0  TAG_FAIL   char[]                   one failure record (JSON), appended to failures.jsonl
 *   r -> 0  TAG_ERROR  char[]                   a fatal error; the worker has stopped
 *   r -> 0  TAG_DONE   int64[KD_GEN_NCOUNTERS]  the worker sealed its shard and finished
 *   0 -> r  TAG_WORK   packed chunk             n records: int64 index, int64 len, bytes; n == 0: no more work
 * Chunks are handed out on request (self-scheduling), so a slow teacher on one rank leaves no rank
 * idle. Rank 0 streams the prompt file and never holds it; it skips ids already done (sealed in a
 * shard or recorded in failures.jsonl by an earlier run). MPI keeps the order of messages between
 * two ranks, so a worker's failures always arrive before its DONE.
 */
#include "kdstep/gen.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdstep/fsutil.h"
#include "kdstep/worker.h"
#include "kdstep/h5data.h"
#include "kdstep/hash.h"
#include "kdstep/log.h"
#include "kdstep/mpiutil.h"
#include "kdstep/progress.h"
#include "kdstep/registry.h"
#include "kdstep/tokenizer.h"
#include "kdstep/version.h"

enum { TAG_WANT = 101, TAG_STAT, TAG_FAIL, TAG_ERROR, TAG_DONE, TAG_WORK };

/* ---- a growable bitmap of done prompt indices ---- */
typedef struct bitmap {
    uint8_t *bits;
    int64_t nbits;
} bitmap;

static int bm_set(bitmap *b, int64_t i) {
    if (i < 0) return 0;
    if (i >= b->nbits) {
        int64_t n = b->nbits ? b->nbits : 1024;
        while (n <= i) n *= 2;
        uint8_t *nb = realloc(b->bits, (size_t)(n / 8));
        if (!nb) return -1;
        memset(nb + b->nbits / 8, 0, (size_t)((n - b->nbits) / 8));
        b->bits = nb;
        b->nbits = n;
    }
    b->bits[i >> 3] |= (uint8_t)(1u << (i & 7));
    return 0;
}
static int bm_get(const bitmap *b, int64_t i) { return i >= 0 && i < b->nbits && (b->bits[i >> 3] >> (i & 7)) & 1; }

/* ---- the prompt stream (rank 0) ---- */
typedef struct prompt_stream {
    FILE *f;
    char *line;
    size_t cap;
    int64_t next_index; /* index of the next line */
    int64_t taken;      /* non-blank lines counted towards `total` */
    int64_t total;      /* 0 = all */
    int slice_index, slice_count;
} prompt_stream;

/* Next line to hand out: skips blank lines, lines of other slices and done ids. Returns 1 with the
 * line, 0 at the end. */
static int stream_next(prompt_stream *s, const bitmap *done, int64_t *index, const char **line, size_t *len,
                       int64_t *skipped_done) {
    for (;;) {
        if (s->total > 0 && s->taken >= s->total) return 0;
        ssize_t n = getline(&s->line, &s->cap, s->f);
        if (n < 0) return 0;
        int64_t i = s->next_index++;
        while (n > 0 && (s->line[n - 1] == '\n' || s->line[n - 1] == '\r')) s->line[--n] = '\0';
        int blank = 1;
        for (ssize_t k = 0; k < n && blank; k++)
            if (s->line[k] != ' ' && s->line[k] != '\t') blank = 0;
        if (blank) continue;
        if (s->slice_count > 1 && i % s->slice_count != s->slice_index) continue;
        s->taken++;
        if (bm_get(done, i)) {
            (*skipped_done)++;
            continue;
        }
        *index = i;
        *line = s->line;
        *len = (size_t)n;
        return 1;
    }
}

/* Count the prompts this run covers (for progress and ETA): one fast pass over the file. */
static int64_t count_prompts(const char *path, int64_t total, int slice_index, int slice_count) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char *line = NULL;
    size_t cap = 0;
    int64_t i = 0, n = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        int blank = 1;
        for (ssize_t k = 0; k < len && blank; k++)
            if (line[k] != ' ' && line[k] != '\t' && line[k] != '\n' && line[k] != '\r') blank = 0;
        if (!blank && (slice_count <= 1 || i % slice_count == slice_index)) n++;
        i++;
        if (total > 0 && n >= total) break;
    }
    free(line);
    fclose(f);
    return n;
}

/* Failures of earlier runs: each line's "prompt_index" is done. A torn last line is ignored. */
static int load_failures(const char *path, bitmap *done, int64_t *count, kd_error *err) {
    *count = 0;
    FILE *f = fopen(path, "r");
    if (!f) return KD_OK;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0) {
        json_t *j = json_loads(line, 0, NULL);
        json_t *pi = j ? json_object_get(j, "prompt_index") : NULL;
        if (json_is_integer(pi)) {
            if (!bm_get(done, json_integer_value(pi))) (*count)++;
            if (bm_set(done, json_integer_value(pi))) {
                json_decref(j);
                free(line);
                fclose(f);
                return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
            }
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return KD_OK;
}

/* ---- small helpers ---- */

static const char *kind_of(const char *rec, char *buf, size_t cap) {
    json_t *j = json_loads(rec, 0, NULL);
    const char *k = j ? json_string_value(json_object_get(j, "kind")) : NULL;
    snprintf(buf, cap, "%s", k ? k : "unknown");
    json_decref(j);
    return buf;
}

/* The prompt set an output folder was made from: the SHA-256 of the file's first bytes (at most 1 MiB,
 * so the check costs nothing on a 10 GB set and a set that only grew at the end still resumes) and the
 * slice. Rerunning on the folder with another prompt set would mark the wrong prompts as done, so it
 * is refused. Recorded in DIR/prompt_set.json (written atomically) on the first run. */
#define KD_PROMPTS_HEAD_MAX (1 << 20)
static int prompts_head_sha(const char *path, int64_t want, int64_t *got, char hex[65], kd_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return kd_error_errno(err, errno, "%s: cannot open", path);
    char *buf = malloc(KD_PROMPTS_HEAD_MAX);
    if (!buf) {
        fclose(f);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, want > 0 && want < KD_PROMPTS_HEAD_MAX ? (size_t)want : KD_PROMPTS_HEAD_MAX, f);
    fclose(f);
    kd_sha256_hex(buf, n, hex);
    free(buf);
    *got = (int64_t)n;
    return KD_OK;
}

/* An existing folder is continued only when an earlier generate made it (meta.json); any other
 * non-empty folder is refused rather than written into. */
static int check_out_dir(const char *dir, kd_error *err) {
    if (!kd_path_exists(dir)) return KD_OK;
    if (!kd_is_dir(dir)) return kd_error_set(err, KD_ERR_INVALID, "--out %s exists and is not a folder", dir);
    char meta[4096];
    kd_path_join(meta, sizeof meta, dir, "meta.json");
    if (kd_path_exists(meta)) return KD_OK;
    DIR *d = opendir(dir);
    if (!d) return kd_error_errno(err, errno, "%s: cannot list", dir);
    const char *other = NULL;
    char name[256] = "";
    for (struct dirent *e; !other && (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(name, sizeof name, "%s", e->d_name);
            other = name;
        }
    closedir(d);
    if (other)
        return kd_error_set(err, KD_ERR_INVALID,
                            "%s is not empty (it holds %s) and no earlier generate made it (no meta.json): choose "
                            "another --out folder (--force removes only a folder kdstep made)",
                            dir, other);
    return KD_OK;
}

/* --force removes only what kdstep made: a dataset folder (a meta.json with the dataset's
 * format_version) or a training run's (trainer_state.json); an empty folder is left as it is. Never the
 * current folder or one above it. */
static int force_remove(const char *dir, kd_error *err) {
    if (!kd_path_exists(dir)) return KD_OK;
    if (!kd_is_dir(dir)) return kd_error_set(err, KD_ERR_INVALID, "--force: --out %s exists and is not a folder: not removed", dir);
    char real[PATH_MAX], cwd[PATH_MAX];
    if (realpath(dir, real) && getcwd(cwd, sizeof cwd)) {
        size_t n = strlen(real);
        if (strcmp(real, "/") == 0 || (strncmp(cwd, real, n) == 0 && (cwd[n] == '/' || cwd[n] == 0)))
            return kd_error_set(err, KD_ERR_INVALID,
                                "--force: --out %s is the current folder or one above it (%s): not removed; give the "
                                "dataset folder by its own name", dir, real);
    }
    char path[4096];
    kd_path_join(path, sizeof path, dir, "meta.json");
    json_t *meta = kd_path_exists(path) ? json_load_file(path, 0, NULL) : NULL;
    int ours = json_is_integer(json_object_get(meta, "format_version")) && json_is_string(json_object_get(meta, "tokenizer_sha256"));
    json_decref(meta);
    kd_path_join(path, sizeof path, dir, "trainer_state.json");
    if (!ours) ours = kd_path_exists(path);
    if (ours) return kd_rm_rf(dir, err);
    DIR *d = opendir(dir);
    if (!d) return kd_error_errno(err, errno, "--force: %s: cannot list", dir);
    char other[256] = "";
    for (struct dirent *e; !other[0] && (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) snprintf(other, sizeof other, "%s", e->d_name);
    closedir(d);
    if (!other[0]) return KD_OK;
    return kd_error_set(err, KD_ERR_INVALID,
                        "--force: %s is not a folder kdstep made (no dataset meta.json, no trainer_state.json; it holds "
                        "%s): not removed; --force only removes a dataset folder. Choose another --out folder", dir, other);
}

static int check_prompt_set(const kd_gen_options *opt, kd_error *err) {
    char fp[4096], slice[64], hex[65];
    kd_path_join(fp, sizeof fp, opt->out_dir, "prompt_set.json");
    snprintf(slice, sizeof slice, "%d/%d", opt->slice_index, opt->slice_count > 1 ? opt->slice_count : 1);
    int64_t n = 0;
    int rc;
    if (kd_path_exists(fp)) {
        json_error_t je;
        json_t *j = json_load_file(fp, 0, &je);
        if (!j) return kd_error_set(err, KD_ERR_INVALID, "%s:%d: unreadable (%s); remove it to accept the prompt set as it is", fp, je.line, je.text);
        int64_t want = json_integer_value(json_object_get(j, "head_bytes"));
        const char *sha = json_string_value(json_object_get(j, "head_sha256"));
        const char *was_slice = json_string_value(json_object_get(j, "slice"));
        const char *was_path = json_string_value(json_object_get(j, "path"));
        rc = prompts_head_sha(opt->prompts_path, want, &n, hex, err);
        if (!rc && (n != want || !sha || strcmp(sha, hex) != 0))
            rc = kd_error_set(err, KD_ERR_INVALID,
                              "%s was made from another prompt set (%s; its first %lld bytes differ from %s's)",
                              opt->out_dir, was_path ? was_path : "?", (long long)want, opt->prompts_path);
        else if (!rc && (!was_slice || strcmp(was_slice, slice) != 0))
            rc = kd_error_set(err, KD_ERR_INVALID, "%s was made with --slice %s, this run uses %s", opt->out_dir,
                              was_slice ? was_slice : "?", slice);
        json_decref(j);
        return rc;
    }
    if ((rc = prompts_head_sha(opt->prompts_path, KD_PROMPTS_HEAD_MAX, &n, hex, err))) return rc;
    json_t *j = json_pack("{s:s, s:I, s:s, s:s}", "path", opt->prompts_path, "head_bytes", (json_int_t)n, "head_sha256", hex,
                          "slice", slice);
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    if (!text) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    rc = kd_write_file_atomic(fp, text, strlen(text), err);
    free(text);
    return rc;
}

/* generate.filter: the conversations it rejected are records of failures.jsonl (kind "filtered") but
 * not failures: "filtered" counts them and "failures" does not, so samples + filtered + failures =
 * prompts. teacher_coverage: per kind of trained token, the share with teacher top-k (docs/teachers.md). */
/* Records of kind "filtered" in failures.jsonl, this run's and earlier runs' (a resumed --out), one per
 * prompt as load_failures counts them. */
static json_int_t count_filtered(const char *dir) {
    char path[4096];
    kd_path_join(path, sizeof path, dir, "failures.jsonl");
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    bitmap seen = {0};
    json_int_t n = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0) {
        if (!strstr(line, "\"filtered\"")) continue;
        json_t *j = json_loads(line, 0, NULL);
        json_t *pi = json_object_get(j, "prompt_index");
        const char *kind = json_string_value(json_object_get(j, "kind"));
        if (json_is_integer(pi) && kind && strcmp(kind, "filtered") == 0 && !bm_get(&seen, json_integer_value(pi))) {
            n++;
            bm_set(&seen, json_integer_value(pi)); /* out of memory: a repeat may count twice */
        }
        json_decref(j);
    }
    free(line);
    free(seen.bits);
    fclose(f);
    return n;
}

static void add_teacher_stats(json_t *j, const int64_t *sum, json_t *kinds, int64_t failures_total, const char *dir) {
    json_int_t filtered_now = json_integer_value(json_object_get(kinds, "filtered"));
    json_int_t filtered = count_filtered(dir);
    if (filtered < filtered_now) filtered = filtered_now;
    json_object_set_new(j, "filtered", json_integer(filtered));
    json_object_set_new(j, "failures", json_integer((json_int_t)failures_total - filtered));
    json_object_set_new(j, "filtered_this_run", json_integer(filtered_now));
    json_object_set_new(j, "failures_this_run",
                        json_integer(json_integer_value(json_object_get(j, "failures_this_run")) - filtered_now));
    static const char *KIND[4] = {"tool_name", "json", "integration", "other"};
    json_t *cov = json_object();
    for (int k = 0; k < 4; k++) {
        int64_t n = sum[KD_GEN_C_COV_TOKENS + 2 * k], hit = sum[KD_GEN_C_COV_TOKENS + 2 * k + 1];
        json_object_set_new(cov, KIND[k], json_pack("{s:I, s:I, s:f}", "tokens", (json_int_t)n, "with_topk", (json_int_t)hit,
                                                    "share", n ? (double)hit / (double)n : 0.0));
    }
    json_object_set_new(j, "teacher_coverage", cov);
    /* generate.policy student | mixed (this run's counts): docs/onpolicy.md */
    json_object_set_new(j, "student",
                        json_pack("{s:I, s:I, s:I, s:f, s:I, s:{s:I, s:I, s:I, s:I}}", "samples_this_run",
                                  (json_int_t)sum[KD_GEN_C_STUDENT_SAMPLES], "turns", (json_int_t)sum[KD_GEN_C_STUDENT_TURNS],
                                  "tokens", (json_int_t)sum[KD_GEN_C_STUDENT_TOKENS], "time_s",
                                  sum[KD_GEN_C_T_STUDENT_US] * 1e-6, "calls", (json_int_t)sum[KD_GEN_C_STUDENT_CALLS],
                                  "call_failures", "unknown_tool", (json_int_t)sum[KD_GEN_C_STUDENT_UNKNOWN_TOOL], "bad_json",
                                  (json_int_t)sum[KD_GEN_C_STUDENT_BAD_JSON], "schema_invalid",
                                  (json_int_t)sum[KD_GEN_C_STUDENT_SCHEMA_INVALID], "unclosed",
                                  (json_int_t)sum[KD_GEN_C_STUDENT_UNCLOSED]));
}

static int write_stats(const char *dir, const kd_gen_stats *st, const int64_t *sum, json_t *kinds, int64_t failures_total,
                       int64_t samples_total, int64_t tokens_total, int ranks, kd_error *err) {
    double busy = 0;
    for (int c = KD_GEN_C_T_TEACHER_US; c <= KD_GEN_C_T_OTHER_US; c++) busy += (double)sum[c];
    if (busy <= 0) busy = 1;
    json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I}, s:I, s:O, s:f, s:i, s:{s:f, s:f, s:f, s:f, s:f}}",
                          "kdstep_version", KD_VERSION, "prompts_seen", (json_int_t)st->prompts_seen,
                          "already_done", (json_int_t)st->already_done, "samples", (json_int_t)samples_total,
                          "samples_this_run", (json_int_t)st->samples, "tokens", (json_int_t)tokens_total,
                          "tokens_this_run", (json_int_t)st->tokens, "failures", (json_int_t)failures_total,
                          "failures_this_run", (json_int_t)st->failures, "teacher_usage", "prompt_tokens",
                          (json_int_t)sum[KD_GEN_C_USAGE_PROMPT], "completion_tokens", (json_int_t)sum[KD_GEN_C_USAGE_COMPLETION],
                          "retries", (json_int_t)st->teacher_retries, "failures_by_kind", kinds, "wall_s", st->wall_s,
                          "ranks", ranks, "time_share", "teacher", sum[KD_GEN_C_T_TEACHER_US] / busy, "tokenize",
                          sum[KD_GEN_C_T_TOKENIZE_US] / busy, "extract", sum[KD_GEN_C_T_EXTRACT_US] / busy, "hdf5",
                          sum[KD_GEN_C_T_HDF5_US] / busy, "other", sum[KD_GEN_C_T_OTHER_US] / busy);
    json_object_set_new(j, "time_s", json_pack("{s:f, s:f, s:f, s:f, s:f}", "teacher", sum[KD_GEN_C_T_TEACHER_US] * 1e-6,
                                               "tokenize", sum[KD_GEN_C_T_TOKENIZE_US] * 1e-6, "extract",
                                               sum[KD_GEN_C_T_EXTRACT_US] * 1e-6, "hdf5", sum[KD_GEN_C_T_HDF5_US] * 1e-6,
                                               "other", sum[KD_GEN_C_T_OTHER_US] * 1e-6));
    /* the shard writer threads' sealing, overlapped with the work above (so not part of its shares) */
    json_object_set_new(j, "hdf5_background_s", json_real(sum[KD_GEN_C_T_HDF5_BG_US] * 1e-6));
    /* the tokenizer's segment cache; tokenizer_peer_s only when KDSTEP_BENCH_TOKENIZER_PEER=1 */
    json_object_set_new(j, "tokenizer_cache",
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", "lookups", (json_int_t)sum[KD_GEN_C_TOKCACHE_LOOKUPS], "hits",
                                  (json_int_t)sum[KD_GEN_C_TOKCACHE_HITS], "hit_bytes", (json_int_t)sum[KD_GEN_C_TOKCACHE_HIT_BYTES],
                                  "bytes", (json_int_t)sum[KD_GEN_C_TOKENIZE_BYTES], "peer_mismatches",
                                  (json_int_t)sum[KD_GEN_C_TOKCACHE_MISMATCHES]));
    json_object_set_new(j, "tokenizer_peer_s", json_real(sum[KD_GEN_C_T_TOKENIZE_PEER_US] * 1e-6));
    add_teacher_stats(j, sum, kinds, failures_total, dir);
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    char path[4096];
    kd_path_join(path, sizeof path, dir, "stats.json");
    int rc = kd_write_file_atomic(path, s, strlen(s), err);
    free(s);
    return rc;
}

/* ---- worker side ---- */

/* Counters, plus (last) how many prompts the worker has room for. */
static void send_counters(kd_gen_worker *w, int tag, MPI_Comm comm) {
    int64_t c[KD_GEN_NCOUNTERS + 1];
    kd_gen_worker_counters(w, c);
    c[KD_GEN_NCOUNTERS] = kd_gen_worker_capacity(w) - kd_gen_worker_in_flight(w);
    MPI_Send(c, (int)sizeof c, MPI_CHAR, 0, tag, comm);
}

static void send_failures(kd_gen_worker *w, MPI_Comm comm) {
    char **lines = NULL;
    int n = 0;
    kd_gen_worker_take_failures(w, &lines, &n);
    for (int i = 0; i < n; i++) {
        MPI_Send(lines[i], (int)strlen(lines[i]) + 1, MPI_CHAR, 0, TAG_FAIL, comm);
        free(lines[i]);
    }
    free(lines);
}

static int unpack_and_submit(kd_gen_worker *w, const char *buf, int bytes, int *count, kd_error *err) {
    int64_t n;
    if (bytes < 8) return kd_error_set(err, KD_ERR_MPI, "generation: malformed work message (%d bytes)", bytes);
    memcpy(&n, buf, 8);
    const char *p = buf + 8, *end = buf + bytes;
    *count = (int)n;
    for (int64_t k = 0; k < n; k++) {
        int64_t idx, len;
        if (end - p < 16) return kd_error_set(err, KD_ERR_MPI, "generation: truncated work message");
        memcpy(&idx, p, 8);
        memcpy(&len, p + 8, 8);
        p += 16;
        if (len < 0 || end - p < len) return kd_error_set(err, KD_ERR_MPI, "generation: truncated work message");
        int rc = kd_gen_worker_submit(w, idx, p, (size_t)len, err);
        if (rc) return rc;
        p += len;
    }
    return KD_OK;
}

static int worker_loop(const kd_gen_options *opt, MPI_Comm comm, int rank, kd_error *err) {
    kd_gen_worker *w = NULL;
    int rc = kd_gen_worker_open(&w, opt, rank, err);
    if (rc) {
        MPI_Send(err->msg, (int)strlen(err->msg) + 1, MPI_CHAR, 0, TAG_ERROR, comm);
        return rc;
    }
    int waiting = 0, no_more = 0;
    double last_stat = kd_now_s();
    char *buf = NULL;
    while (!(no_more && kd_gen_worker_in_flight(w) == 0)) {
        if (!no_more && !waiting && kd_gen_worker_in_flight(w) < kd_gen_worker_capacity(w)) {
            send_counters(w, TAG_WANT, comm);
            waiting = 1;
        }
        if (waiting) {
            int flag = 0;
            MPI_Status st;
            MPI_Iprobe(0, TAG_WORK, comm, &flag, &st);
            if (flag) {
                int bytes;
                MPI_Get_count(&st, MPI_CHAR, &bytes);
                char *nb = realloc(buf, (size_t)bytes + 1);
                if (!nb) {
                    rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory receiving work");
                    break;
                }
                buf = nb;
                MPI_Recv(buf, bytes, MPI_CHAR, 0, TAG_WORK, comm, MPI_STATUS_IGNORE);
                int count = 0;
                if ((rc = unpack_and_submit(w, buf, bytes, &count, err))) break;
                waiting = 0;
                if (count == 0) no_more = 1;
            }
        }
        double timeout = (waiting || kd_gen_worker_in_flight(w) == 0) ? 0.002 : 0.02;
        if ((rc = kd_gen_worker_poll(w, timeout, err))) break;
        send_failures(w, comm);
        if (kd_now_s() - last_stat > 1.0) {
            send_counters(w, TAG_STAT, comm);
            last_stat = kd_now_s();
        }
    }
    free(buf);
    int64_t final[KD_GEN_NCOUNTERS] = {0};
    if (rc == KD_OK) {
        rc = kd_gen_worker_finish(w, err); /* the last seal and the compaction count as HDF5 time */
        kd_gen_worker_counters(w, final);
        if (rc == KD_OK) {
            rc = kd_gen_worker_close(w, err);
            w = NULL;
        }
    }
    if (rc) {
        if (w) kd_gen_worker_abandon(w);
        KD_ERROR("%s", err->msg);
        MPI_Send(err->msg, (int)strlen(err->msg) + 1, MPI_CHAR, 0, TAG_ERROR, comm);
        /* drain: rank 0 may still answer an outstanding request */
        return rc;
    }
    MPI_Send(final, (int)sizeof final, MPI_CHAR, 0, TAG_DONE, comm);
    return KD_OK;
}

/* ---- coordinator (rank 0) ---- */

typedef struct coord {
    FILE *failures;
    double last_fsync;
    json_t *kinds;
    int64_t failures_new;
    int64_t (*counters)[KD_GEN_NCOUNTERS]; /* per rank, cumulative */
} coord;

static int record_failure(coord *c, const char *rec, kd_error *err) {
    if (fprintf(c->failures, "%s\n", rec) < 0 || fflush(c->failures) != 0)
        return kd_error_errno(err, errno, "failures.jsonl: write failed");
    char kb[64];
    const char *k = kind_of(rec, kb, sizeof kb);
    json_object_set_new(c->kinds, k, json_integer(json_integer_value(json_object_get(c->kinds, k)) + 1));
    c->failures_new++;
    if (kd_now_s() - c->last_fsync > 1.0) {
        fsync(fileno(c->failures));
        c->last_fsync = kd_now_s();
    }
    return KD_OK;
}

static void sum_counters(const coord *c, int size, int64_t out[KD_GEN_NCOUNTERS]) {
    memset(out, 0, sizeof(int64_t) * KD_GEN_NCOUNTERS);
    for (int r = 0; r < size; r++)
        for (int k = 0; k < KD_GEN_NCOUNTERS; k++) out[k] += c->counters[r][k];
}

static void progress_extra(const int64_t *sum, char *buf, size_t cap) {
    snprintf(buf, cap, "samples %lld | failures %lld | retries %lld", (long long)sum[KD_GEN_C_SAMPLES],
             (long long)sum[KD_GEN_C_FAILURES], (long long)sum[KD_GEN_C_RETRIES]);
}

/* Every prompt handed out this run ends as a sample, a filtered prompt or a failure record; a prompt
 * with none of these would be silently lost (and, were the stage marked complete, never redone). */
/* (generate.filter's records, kind "filtered", are records of failures.jsonl and so counted in
 * st->failures here; st->filtered is for a filter that keeps no record. stats.json splits them.) */
static int check_counts(const kd_gen_options *opt, const kd_gen_stats *st, kd_error *err) {
    int64_t handed = st->prompts_seen - st->already_done;
    if (st->samples + st->filtered + st->failures == handed) return KD_OK;
    return kd_error_set(err, KD_ERR_INVALID,
                        "generate: counts do not add up in %s: %lld prompts handed out this run, but %lld samples + %lld "
                        "filtered + %lld failures = %lld; the %lld missing prompts have no record, so the dataset is not "
                        "complete: rerun generate into the same folder to redo them",
                        opt->out_dir, (long long)handed, (long long)st->samples, (long long)st->filtered,
                        (long long)st->failures, (long long)(st->samples + st->filtered + st->failures),
                        (long long)(handed - st->samples - st->filtered - st->failures));
}

/* Build a chunk message of up to `want` prompts. */
static int make_chunk(prompt_stream *s, const bitmap *done, int want, char **buf, size_t *cap, int *bytes,
                      int64_t *handed, int64_t *skipped) {
    size_t n = 8;
    int64_t count = 0;
    int64_t idx;
    const char *line;
    size_t len;
    while (count < want && stream_next(s, done, &idx, &line, &len, skipped)) {
        size_t need = n + 16 + len;
        if (need > *cap) {
            size_t nc = need * 2;
            char *nb = realloc(*buf, nc);
            if (!nb) return -1;
            *buf = nb;
            *cap = nc;
        }
        int64_t l = (int64_t)len;
        memcpy(*buf + n, &idx, 8);
        memcpy(*buf + n + 8, &l, 8);
        memcpy(*buf + n + 16, line, len);
        n += 16 + len;
        count++;
    }
    if (*cap < 8) {
        char *nb = realloc(*buf, 64);
        if (!nb) return -1;
        *buf = nb;
        *cap = 64;
    }
    memcpy(*buf, &count, 8);
    *bytes = (int)n;
    *handed += count;
    return 0;
}

/* `stop` != KD_OK: rank 0 already failed (its error is in err); hand out no work, let workers finish. */
static int coordinator_loop(const kd_gen_options *opt, MPI_Comm comm, int size, prompt_stream *s, const bitmap *done,
                            coord *c, kd_progress *prog, int64_t base_done, int stop, kd_gen_stats *stats, kd_error *err) {
    int active = size - 1, first_error = stop;
    char *buf = NULL, *msg = NULL;
    size_t cap = 0, mcap = 0;
    int64_t handed = 0, skipped = 0;
    int chunk = (int)opt->cfg->generate.chunk_size;
    while (active > 0) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &flag, &st);
        if (!flag) {
            usleep(500);
            int64_t sum[KD_GEN_NCOUNTERS];
            sum_counters(c, size, sum);
            char extra[256];
            progress_extra(sum, extra, sizeof extra);
            kd_progress_update(prog, base_done + sum[KD_GEN_C_SAMPLES] + sum[KD_GEN_C_FAILURES], extra);
            continue;
        }
        int src = st.MPI_SOURCE, bytes;
        MPI_Get_count(&st, MPI_CHAR, &bytes);
        if ((size_t)bytes + 1 > mcap) {
            mcap = (size_t)bytes + 1;
            msg = realloc(msg, mcap);
        }
        MPI_Recv(msg, bytes, MPI_CHAR, src, st.MPI_TAG, comm, MPI_STATUS_IGNORE);
        msg[bytes] = '\0';
        switch (st.MPI_TAG) {
        case TAG_WANT:
        case TAG_STAT:
        case TAG_DONE:
            memcpy(c->counters[src], msg, sizeof(int64_t) * KD_GEN_NCOUNTERS);
            if (st.MPI_TAG == TAG_DONE) active--;
            if (st.MPI_TAG == TAG_WANT) {
                int b;
                int64_t room = 0;
                if ((size_t)bytes >= sizeof(int64_t) * (KD_GEN_NCOUNTERS + 1))
                    memcpy(&room, msg + sizeof(int64_t) * KD_GEN_NCOUNTERS, sizeof room);
                int want = first_error ? 0 : (int)(room < chunk ? (room > 0 ? room : 1) : chunk);
                if (make_chunk(s, done, want, &buf, &cap, &b, &handed, &skipped) != 0) {
                    first_error = kd_error_set(err, KD_ERR_NOMEM, "out of memory building a work chunk");
                    int64_t zero = 0;
                    MPI_Send(&zero, 8, MPI_CHAR, src, TAG_WORK, comm);
                } else {
                    MPI_Send(buf, b, MPI_CHAR, src, TAG_WORK, comm);
                }
            }
            break;
        case TAG_FAIL: {
            int rc = record_failure(c, msg, err);
            if (rc && !first_error) first_error = rc;
            break;
        }
        case TAG_ERROR:
            if (!first_error) first_error = kd_error_set(err, KD_ERR_IO, "rank %d: %s", src, msg);
            active--;
            break;
        default:
            break;
        }
    }
    free(buf);
    free(msg);
    stats->already_done += skipped;
    stats->prompts_seen += handed + skipped;
    return first_error;
}

/* One rank alone: rank 0 is the worker. */
static int local_loop(const kd_gen_options *opt, prompt_stream *s, const bitmap *done, coord *c, kd_progress *prog,
                      int64_t base_done, kd_gen_stats *stats, kd_error *err) {
    kd_gen_worker *w = NULL;
    int rc = kd_gen_worker_open(&w, opt, 0, err);
    if (rc) return rc;
    int64_t handed = 0, skipped = 0, idx;
    const char *line;
    size_t len;
    int eof = 0;
    while (!(eof && kd_gen_worker_in_flight(w) == 0)) {
        while (!eof && kd_gen_worker_in_flight(w) < kd_gen_worker_capacity(w)) {
            if (!stream_next(s, done, &idx, &line, &len, &skipped)) {
                eof = 1;
                break;
            }
            handed++;
            if ((rc = kd_gen_worker_submit(w, idx, line, len, err))) goto fail;
        }
        if ((rc = kd_gen_worker_poll(w, 0.02, err))) goto fail;
        char **lines = NULL;
        int n = 0;
        kd_gen_worker_take_failures(w, &lines, &n);
        for (int i = 0; i < n; i++) {
            if (!rc) rc = record_failure(c, lines[i], err);
            free(lines[i]);
        }
        free(lines);
        if (rc) goto fail;
        kd_gen_worker_counters(w, c->counters[0]);
        char extra[256];
        progress_extra(c->counters[0], extra, sizeof extra);
        kd_progress_update(prog, base_done + c->counters[0][KD_GEN_C_SAMPLES] + c->counters[0][KD_GEN_C_FAILURES], extra);
    }
    rc = kd_gen_worker_finish(w, err);
    kd_gen_worker_counters(w, c->counters[0]);
    if (rc == KD_OK) rc = kd_gen_worker_close(w, err);
    else kd_gen_worker_abandon(w);
    stats->already_done += skipped;
    stats->prompts_seen += handed + skipped;
    return rc;
fail:
    kd_gen_worker_abandon(w);
    return rc;
}

int kd_gen_run(const kd_gen_options *opt, MPI_Comm comm, kd_gen_stats *stats, kd_error *err) {
    int rank, size, rc = KD_OK;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    memset(stats, 0, sizeof *stats);
    double t0 = kd_now_s();
    kd_dataset_info info;
    char *config_yaml = NULL;

    /* 1. the output folder and the dataset's identity (checked against an earlier run's) */
    if (rank == 0) {
        int refused = 0; /* --force refused, or not a folder of ours: no "cannot resume" advice */
        if (opt->force) refused = rc = force_remove(opt->out_dir, err);
        if (!rc) refused = rc = check_out_dir(opt->out_dir, err);
        if (!rc && !kd_path_exists(opt->prompts_path))
            rc = kd_error_set(err, KD_ERR_NOTFOUND, "%s: prompt set not found (make one with `kdstep prompts synth`)", opt->prompts_path);
        if (!rc) rc = kd_gen_dataset_info(opt, &info, &config_yaml, err);
        if (!rc) rc = kd_dataset_prepare(opt->out_dir, &info, err);
        if (!rc) rc = check_prompt_set(opt, err);
        if (rc == KD_ERR_INVALID && !refused) {
            char m[KD_ERROR_MSG_MAX];
            snprintf(m, sizeof m, "%s", err->msg);
            kd_error_set(err, rc, "cannot resume into %s: %s (use a new --out folder, or --force to start over)", opt->out_dir, m);
        }
    }
    if ((rc = kd_mpi_bcast_status(comm, 0, rc, err))) {
        free(config_yaml);
        return rc;
    }

    /* 2. what earlier runs finished: sealed samples and recorded failures */
    bitmap done = {0};
    int64_t base_done = 0, failures_before = 0;
    if (rank == 0) {
        /* 1 bit per prompt id (1.25 MB for 10 million), never a list of ids */
        int64_t n = 0;
        rc = kd_dataset_recover_done(opt->out_dir, &done.bits, &done.nbits, &n, err);
        base_done = n;
        char fp[4096];
        kd_path_join(fp, sizeof fp, opt->out_dir, "failures.jsonl");
        if (!rc) rc = load_failures(fp, &done, &failures_before, err);
        base_done += failures_before;
        if (!rc && base_done > 0) KD_INFO("resuming %s: %lld prompts already done (%lld samples, %lld failures)", opt->out_dir,
                                          (long long)base_done, (long long)n, (long long)failures_before);
    }
    if ((rc = kd_mpi_bcast_status(comm, 0, rc, err))) {
        free(done.bits);
        free(config_yaml);
        return rc;
    }

    /* 3. the loops */
    if (rank == 0) {
        coord c = {0};
        c.kinds = json_object();
        c.counters = calloc((size_t)size, sizeof *c.counters);
        char fp[4096];
        kd_path_join(fp, sizeof fp, opt->out_dir, "failures.jsonl");
        c.failures = fopen(fp, "a+");
        /* A crash mid-append leaves a torn last line (skipped by load_failures, so that prompt is
         * redone); end it here so the next record starts on a line of its own. */
        if (c.failures && fseek(c.failures, -1, SEEK_END) == 0) {
            int last = fgetc(c.failures);
            fseek(c.failures, 0, SEEK_END); /* a read may not be followed by a write without a seek */
            if (last != '\n') fputc('\n', c.failures);
        }
        prompt_stream s = {0};
        s.f = fopen(opt->prompts_path, "r");
        s.total = opt->total;
        s.slice_index = opt->slice_index;
        s.slice_count = opt->slice_count;
        if (!c.failures) rc = kd_error_errno(err, errno, "%s: cannot open for appending", fp);
        else if (!s.f) rc = kd_error_errno(err, errno, "%s: cannot open", opt->prompts_path);
        int64_t total = count_prompts(opt->prompts_path, opt->total, opt->slice_index, opt->slice_count);
        kd_progress prog;
        kd_progress_open(&prog, "generate", total, "prompts");
        if (size == 1) {
            if (!rc) rc = local_loop(opt, &s, &done, &c, &prog, base_done, stats, err);
        } else {
            int rc2 = coordinator_loop(opt, comm, size, &s, &done, &c, &prog, base_done, rc, stats, err);
            if (!rc) rc = rc2;
        }
        int64_t sum[KD_GEN_NCOUNTERS];
        sum_counters(&c, size, sum);
        stats->samples = sum[KD_GEN_C_SAMPLES];
        stats->failures = c.failures_new;
        stats->tokens = sum[KD_GEN_C_TOKENS];
        stats->teacher_retries = sum[KD_GEN_C_RETRIES];
        char extra[256];
        progress_extra(sum, extra, sizeof extra);
        kd_progress_close(&prog, extra);
        if (c.failures) {
            fflush(c.failures);
            fsync(fileno(c.failures));
            fclose(c.failures);
        }
        if (s.f) fclose(s.f);
        free(s.line);
        /* 4. one dataset over every sealed shard, and the stats */
        if (!rc) {
            int64_t samples_total = 0;
            rc = kd_dataset_finalize(opt->out_dir, &samples_total, err);
            int64_t tokens_total = 0, samples_check = 0;
            if (!rc) kd_dataset_totals(opt->out_dir, &samples_check, &tokens_total, NULL);
            stats->wall_s = kd_now_s() - t0;
            if (!rc) rc = write_stats(opt->out_dir, stats, sum, c.kinds, failures_before + c.failures_new, samples_total,
                                      tokens_total, size, err);
            if (!rc) rc = check_counts(opt, stats, err);
        }
        json_decref(c.kinds);
        free(c.counters);
    } else {
        rc = worker_loop(opt, comm, rank, err);
    }
    free(done.bits);
    free(config_yaml);
    stats->wall_s = kd_now_s() - t0;
    return kd_mpi_agree(comm, rc, err);
}

/* Hard-link src to dst (same filesystem), or copy it. dst must not exist. */
static int link_or_copy(const char *src, const char *dst, kd_error *err) {
    if (link(src, dst) == 0) return KD_OK;
    char *data = NULL;
    size_t len = 0;
    int rc = kd_read_file(src, &data, &len, err);
    if (!rc) rc = kd_write_file_atomic(dst, data, len, err);
    free(data);
    return rc;
}

static int cmp_ints(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Samples a slice's journals say are sealed; kd_dataset_recover then must find them all, or a shard
 * was damaged and moved aside, and merging would silently drop its prompts. */
static int merge_check_slice(const char *slice, kd_error *err) {
    DIR *d = opendir(slice);
    if (!d) return kd_error_errno(err, errno, "merge: %s", slice);
    int64_t journaled = 0;
    char path[4096];
    for (struct dirent *e; (e = readdir(d));) {
        int r;
        char ext[32];
        if (sscanf(e->d_name, "shard-%d.%31s", &r, ext) != 2 || strcmp(ext, "journal") != 0) continue;
        kd_path_join(path, sizeof path, slice, e->d_name);
        json_t *j = json_load_file(path, 0, NULL);
        journaled += json_integer_value(json_object_get(j, "samples"));
        json_decref(j);
    }
    closedir(d);
    int64_t *ids = NULL;
    size_t n = 0;
    int rc = kd_dataset_recover(slice, &ids, &n, err);
    free(ids);
    if (rc) return kd_error_prefix(err, "merge: slice %s: ", slice);
    if ((int64_t)n < journaled)
        return kd_error_set(err, KD_ERR_INVALID,
                            "merge: slice %s: %lld of its %lld sealed samples are in damaged shards (moved aside as "
                            "*.corrupt); rerun generate on that slice folder to make them again, then merge",
                            slice, (long long)(journaled - (int64_t)n), (long long)journaled);
    return KD_OK;
}

int kd_gen_merge(const char *out_dir, const char *const *slice_dirs, int n, kd_error *err) {
    int rc = kd_mkdir_p(out_dir, err);
    if (rc) return rc;
    char path[4096], dst[4096];
    /* every slice must be whole and made with the same inputs */
    for (int i = 0; i < n && !rc; i++) rc = merge_check_slice(slice_dirs[i], err);
    char *meta0 = NULL;
    for (int i = 0; i < n && !rc; i++) {
        char *meta = NULL;
        kd_path_join(path, sizeof path, slice_dirs[i], "meta.json");
        if ((rc = kd_read_file(path, &meta, NULL, err))) break;
        if (!meta0) meta0 = meta;
        else {
            if (strcmp(meta, meta0) != 0)
                rc = kd_error_set(err, KD_ERR_INVALID, "merge: %s differs from %s/meta.json: the slices were made with different "
                                                       "tokenizers, registries or configs", path, slice_dirs[0]);
            free(meta);
        }
    }
    if (!rc && meta0) {
        kd_path_join(path, sizeof path, out_dir, "meta.json");
        rc = kd_write_file_atomic(path, meta0, strlen(meta0), err);
    }
    free(meta0);
    /* start from a clean set of shards: a rerun of the merge gives the same result */
    DIR *od = rc ? NULL : opendir(out_dir);
    for (struct dirent *e; od && (e = readdir(od));) {
        if (strncmp(e->d_name, "shard-", 6) != 0) continue;
        kd_path_join(path, sizeof path, out_dir, e->d_name);
        unlink(path);
    }
    if (od) closedir(od);
    /* the slices' sealed shards, renumbered, each journal after its shard */
    int next = 0;
    size_t fail_len = 0;
    char *failures = NULL;
    for (int i = 0; i < n && !rc; i++) {
        DIR *d = opendir(slice_dirs[i]);
        if (!d) {
            rc = kd_error_errno(err, errno, "merge: %s", slice_dirs[i]);
            break;
        }
        int ranks[4096], nr = 0;
        for (struct dirent *e; (e = readdir(d)) && nr < 4096;) {
            int r;
            char ext[32];
            if (sscanf(e->d_name, "shard-%d.%31s", &r, ext) == 2 && strcmp(ext, "journal") == 0) ranks[nr++] = r;
        }
        closedir(d);
        qsort(ranks, (size_t)nr, sizeof(int), cmp_ints);
        for (int k = 0; k < nr && !rc; k++, next++) {
            /* the rank's base shard, its segments (a slice not compacted yet) and its journal last */
            char prefix[32];
            snprintf(prefix, sizeof prefix, "shard-%05d.", ranks[k]);
            DIR *sd = opendir(slice_dirs[i]);
            for (struct dirent *e; sd && !rc && (e = readdir(sd));) {
                const char *rest = e->d_name + strlen(prefix);
                if (strncmp(e->d_name, prefix, strlen(prefix)) != 0 || strstr(rest, ".tmp.") || strcmp(rest, "journal") == 0 ||
                    (strcmp(rest, "h5") != 0 && strncmp(rest, "seg-", 4) != 0) || strstr(rest, ".corrupt"))
                    continue;
                kd_path_join(path, sizeof path, slice_dirs[i], e->d_name);
                snprintf(dst, sizeof dst, "%s/shard-%05d.%s", out_dir, next, rest);
                rc = link_or_copy(path, dst, err);
            }
            if (sd) closedir(sd);
            snprintf(path, sizeof path, "%s/shard-%05d.journal", slice_dirs[i], ranks[k]);
            snprintf(dst, sizeof dst, "%s/shard-%05d.journal", out_dir, next);
            if (!rc) rc = link_or_copy(path, dst, err);
        }
        char *f = NULL;
        size_t len = 0;
        kd_path_join(path, sizeof path, slice_dirs[i], "failures.jsonl");
        if (!rc && kd_path_exists(path) && !(rc = kd_read_file(path, &f, &len, err))) {
            char *nf = realloc(failures, fail_len + len + 1);
            if (!nf) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
            else {
                failures = nf;
                memcpy(failures + fail_len, f, len);
                fail_len += len;
            }
        }
        free(f);
    }
    if (!rc) {
        kd_path_join(path, sizeof path, out_dir, "failures.jsonl");
        rc = kd_write_file_atomic(path, failures ? failures : "", fail_len, err);
    }
    free(failures);
    int64_t samples = 0;
    if (!rc) rc = kd_dataset_finalize(out_dir, &samples, err);
    if (!rc) KD_INFO("merge: %d slices, %d shards, %lld samples into %s", n, next, (long long)samples, out_dir);
    return rc;
}
