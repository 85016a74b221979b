/* HDF5 dataset shards, journal, finalize and reader: see include/kdstep/h5data.h. */
#include "kdstep/h5data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "kdstep/fsutil.h"
#include "kdstep/log.h"
#include "kdstep/progress.h"
#include "kdstep/version.h"

/* Every array of the layout. Column kinds say what their length counts. */
enum col_kind { COL_SAMPLE, COL_OFFSETS, COL_TOKEN, COL_BYTES };
enum {
    C_PROMPT_ID, C_PROMPT_LEN, C_OFFSETS, C_INPUT_IDS, C_LOSS, C_TOOL, C_JSON, C_INTEG, C_TOPK_IDS, C_TOPK_LP,
    C_TAIL, C_KEY_OFF, C_KEY, C_PROMPT_OFF, C_PROMPT, C_TEACHER_OFF, C_TEACHER, C_META_OFF, C_META, NCOL
};
typedef struct col_def {
    const char *path;
    int kind;
    int type;  /* 0 int64, 1 int32, 2 uint8, 3 float */
    int wide;  /* [T,K] */
    int bytes_of; /* for COL_BYTES: index of its offsets column; for offsets of text: the bytes column */
} col_def;
static const col_def COLS[NCOL] = {
    {"/samples/prompt_id", COL_SAMPLE, 0, 0, -1},
    {"/samples/prompt_len", COL_SAMPLE, 0, 0, -1},
    {"/samples/offsets", COL_OFFSETS, 0, 0, -1},
    {"/tokens/input_ids", COL_TOKEN, 1, 0, -1},
    {"/tokens/loss_mask", COL_TOKEN, 2, 0, -1},
    {"/tokens/tool_name_mask", COL_TOKEN, 2, 0, -1},
    {"/tokens/json_mask", COL_TOKEN, 2, 0, -1},
    {"/tokens/integration_mask", COL_TOKEN, 2, 0, -1},
    {"/teacher/topk_ids", COL_TOKEN, 1, 1, -1},
    {"/teacher/topk_logprobs", COL_TOKEN, 3, 1, -1},
    {"/teacher/tail_logprob", COL_TOKEN, 3, 0, -1},
    {"/text/prompt_key_offsets", COL_OFFSETS, 0, 0, C_KEY},
    {"/text/prompt_key", COL_BYTES, 2, 0, C_KEY_OFF},
    {"/text/prompt_offsets", COL_OFFSETS, 0, 0, C_PROMPT},
    {"/text/prompt", COL_BYTES, 2, 0, C_PROMPT_OFF},
    {"/text/teacher_text_offsets", COL_OFFSETS, 0, 0, C_TEACHER},
    {"/text/teacher_text", COL_BYTES, 2, 0, C_TEACHER_OFF},
    {"/text/metadata_offsets", COL_OFFSETS, 0, 0, C_META},
    {"/text/metadata", COL_BYTES, 2, 0, C_META_OFF},
};
static const size_t TYPE_SIZE[4] = {8, 4, 1, 4};
static const char *GROUPS[] = {"/samples", "/tokens", "/teacher", "/text"};

static hid_t mem_type(int t) {
    switch (t) {
    case 0: return H5T_NATIVE_INT64;
    case 1: return H5T_NATIVE_INT32;
    case 2: return H5T_NATIVE_UINT8;
    default: return H5T_NATIVE_FLOAT;
    }
}
static hid_t file_type(int t) {
    switch (t) {
    case 0: return H5T_STD_I64LE;
    case 1: return H5T_STD_I32LE;
    case 2: return H5T_STD_U8LE;
    default: return H5T_IEEE_F32LE;
    }
}
static hsize_t chunk_rows(const col_def *c, int k) {
    switch (c->kind) {
    case COL_SAMPLE:
    case COL_OFFSETS: return 4096;
    case COL_TOKEN: return c->wide ? (hsize_t)(65536 / (k > 0 ? k : 1) + 1) : 65536;
    default: return 65536;
    }
}

static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

void kd_dataset_info_init(kd_dataset_info *info) {
    memset(info, 0, sizeof *info);
    info->topk = 1;
    info->process_supervision = 1;
    info->deflate_level = 1;
    info->compress_token_data = 1;
}

/* ---- attributes --------------------------------------------------------------------------------- */

static int attr_write_str(hid_t obj, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    const char *v = value ? value : "";
    herr_t r = a < 0 ? -1 : H5Awrite(a, t, &v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return r < 0 ? -1 : 0;
}
static int attr_write_int(hid_t obj, const char *name, int64_t value) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t r = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &value);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return r < 0 ? -1 : 0;
}
/* Returns a malloc'd string or NULL when absent. */
static char *attr_read_str(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t ft = H5Aget_type(a);
    char *out = NULL;
    if (H5Tget_class(ft) == H5T_STRING) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t t = H5Tcopy(H5T_C_S1);
            H5Tset_size(t, H5T_VARIABLE);
            H5Tset_cset(t, H5Tget_cset(ft));
            char *v = NULL;
            if (H5Aread(a, t, &v) >= 0 && v) {
                out = kd_strdup(v);
                H5free_memory(v);
            }
            H5Tclose(t);
        } else {
            size_t sz = H5Tget_size(ft);
            out = kd_calloc(sz + 1, 1);
            hid_t t = H5Tcopy(H5T_C_S1);
            H5Tset_size(t, sz);
            H5Tset_cset(t, H5Tget_cset(ft));
            if (out && H5Aread(a, t, out) < 0) {
                free(out);
                out = NULL;
            }
            H5Tclose(t);
        }
    }
    H5Tclose(ft);
    H5Aclose(a);
    return out;
}
static int attr_read_int(hid_t obj, const char *name, int64_t *v) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    herr_t r = H5Aread(a, H5T_NATIVE_INT64, v);
    H5Aclose(a);
    return r < 0 ? -1 : 0;
}

static int write_info_attrs(hid_t f, const kd_dataset_info *info) {
    int r = 0;
    r |= attr_write_int(f, "format_version", KD_DATASET_FORMAT_VERSION);
    r |= attr_write_str(f, "kdstep_version", KD_VERSION);
    r |= attr_write_str(f, "tokenizer_sha256", info->tokenizer_sha256);
    r |= attr_write_str(f, "registry_sha256", info->registry_sha256);
    r |= attr_write_str(f, "config_sha256", info->config_sha256);
    r |= attr_write_str(f, "config", info->config_yaml);
    r |= attr_write_int(f, "topk", info->topk);
    r |= attr_write_int(f, "process_supervision", info->process_supervision);
    return r;
}

/* Read the attributes of an open file into info (config_yaml malloc'd into *yaml). */
static int read_info_attrs(hid_t f, const char *path, kd_dataset_info *info, char **yaml, char **version,
                           kd_error *err) {
    kd_dataset_info_init(info);
    int64_t fmt = 0, k = 0, ps = 1;
    if (attr_read_int(f, "format_version", &fmt) < 0)
        return kd_error_set(err, KD_ERR_INVALID, "%s: not a kdstep dataset (no format_version attribute)", path);
    if (fmt != KD_DATASET_FORMAT_VERSION)
        return kd_error_set(err, KD_ERR_UNSUPPORTED,
                            "%s: dataset format version %lld, this kdstep reads version %d; regenerate it or "
                            "use a matching kdstep",
                            path, (long long)fmt, KD_DATASET_FORMAT_VERSION);
    if (attr_read_int(f, "topk", &k) < 0 || k < 1 || k > 1 << 16)
        return kd_error_set(err, KD_ERR_INVALID, "%s: missing or invalid topk attribute", path);
    attr_read_int(f, "process_supervision", &ps);
    info->topk = (int)k;
    info->process_supervision = (int)ps;
    const char *names[3] = {"tokenizer_sha256", "registry_sha256", "config_sha256"};
    char *dst[3] = {info->tokenizer_sha256, info->registry_sha256, info->config_sha256};
    for (int i = 0; i < 3; i++) {
        char *s = attr_read_str(f, names[i]);
        snprintf(dst[i], 65, "%s", s ? s : "");
        free(s);
    }
    if (yaml) *yaml = attr_read_str(f, "config");
    if (version) *version = attr_read_str(f, "kdstep_version");
    return KD_OK;
}

/* ---- meta.json ---------------------------------------------------------------------------------- */

static json_t *info_to_json(const kd_dataset_info *info) {
    return json_pack("{s:i, s:i, s:b, s:s, s:s, s:s}", "format_version", KD_DATASET_FORMAT_VERSION, "topk",
                     info->topk, "process_supervision", info->process_supervision, "tokenizer_sha256",
                     info->tokenizer_sha256, "registry_sha256", info->registry_sha256, "config_sha256",
                     info->config_sha256);
}

/* Compare two infos; on mismatch name the field and both values. `what` names the stored side. */
static int info_compare(const kd_dataset_info *stored, const kd_dataset_info *now, const char *what,
                        kd_error *err) {
    if (stored->topk != now->topk)
        return kd_error_set(err, KD_ERR_INVALID,
                            "%s was written with topk %d, this run uses %d; use a fresh output folder or the same "
                            "settings to resume",
                            what, stored->topk, now->topk);
    if (stored->process_supervision != now->process_supervision)
        return kd_error_set(err, KD_ERR_INVALID,
                            "%s was written with process_supervision %s, this run %s; use a fresh output folder "
                            "or the same flags to resume",
                            what, stored->process_supervision ? "on" : "off",
                            now->process_supervision ? "on" : "off");
    const char *names[3] = {"tokenizer", "registry", "config"};
    const char *a[3] = {stored->tokenizer_sha256, stored->registry_sha256, stored->config_sha256};
    const char *b[3] = {now->tokenizer_sha256, now->registry_sha256, now->config_sha256};
    for (int i = 0; i < 3; i++)
        if (strcmp(a[i], b[i]) != 0)
            return kd_error_set(err, KD_ERR_INVALID,
                                "%s was written with %s sha256 %.12s, this run's is %.12s; resume with the same "
                                "%s or use a fresh output folder",
                                what, names[i], a[i][0] ? a[i] : "(none)", b[i][0] ? b[i] : "(none)", names[i]);
    return KD_OK;
}

int kd_dataset_prepare(const char *dir, const kd_dataset_info *info, kd_error *err) {
    if (info->topk < 1) return kd_error_set(err, KD_ERR_INVALID, "dataset topk must be >= 1, got %d", info->topk);
    if (kd_mkdir_p(dir, err)) return err ? err->code : KD_ERR_IO;
    char path[4096];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    if (kd_path_exists(path)) {
        json_error_t je;
        json_t *m = json_load_file(path, 0, &je);
        if (!m) return kd_error_set(err, KD_ERR_PARSE, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        kd_dataset_info st;
        kd_dataset_info_init(&st);
        json_int_t fmt = json_integer_value(json_object_get(m, "format_version"));
        st.topk = (int)json_integer_value(json_object_get(m, "topk"));
        st.process_supervision = json_is_true(json_object_get(m, "process_supervision"));
        snprintf(st.tokenizer_sha256, 65, "%s", json_string_value(json_object_get(m, "tokenizer_sha256")) ?: "");
        snprintf(st.registry_sha256, 65, "%s", json_string_value(json_object_get(m, "registry_sha256")) ?: "");
        snprintf(st.config_sha256, 65, "%s", json_string_value(json_object_get(m, "config_sha256")) ?: "");
        json_decref(m);
        if (fmt != KD_DATASET_FORMAT_VERSION)
            return kd_error_set(err, KD_ERR_UNSUPPORTED, "%s: dataset format version %lld, this kdstep writes %d",
                                path, (long long)fmt, KD_DATASET_FORMAT_VERSION);
        return info_compare(&st, info, dir, err);
    }
    json_t *m = info_to_json(info);
    char *s = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(m);
    int rc = kd_write_file_atomic(path, s, strlen(s), err);
    free(s);
    return rc;
}

/* ---- file names and the journal ----------------------------------------------------------------- */

static void base_path(char *out, size_t cap, const char *dir, int rank) {
    snprintf(out, cap, "%s/shard-%05d.h5", dir, rank);
}
static void journal_path(char *out, size_t cap, const char *dir, int rank) {
    snprintf(out, cap, "%s/shard-%05d.journal", dir, rank);
}
static void seg_path(char *out, size_t cap, const char *dir, int rank, int64_t seq) {
    snprintf(out, cap, "%s/shard-%05d.seg-%08lld.h5", dir, rank, (long long)seq);
}

enum { F_BASE, F_JOURNAL, F_SEG, F_TMP, F_OTHER };

/* What a file in the dataset folder is: shard-R.h5 (base), shard-R.journal, shard-R.seg-N.h5
 * (segment), a temporary of rank R (*.tmp.<pid>, never read), or anything else (*.corrupt ...). */
static int parse_name(const char *name, int *rank, int64_t *seq) {
    int r = 0, pos = 0;
    if (sscanf(name, "shard-%d.%n", &r, &pos) != 1 || pos == 0 || r < 0) return F_OTHER;
    const char *rest = name + pos;
    *rank = r;
    *seq = 0;
    if (strstr(rest, ".tmp.")) return F_TMP;
    if (strcmp(rest, "h5") == 0) return F_BASE;
    if (strcmp(rest, "journal") == 0) return F_JOURNAL;
    long long s = 0;
    int p2 = 0;
    if (sscanf(rest, "seg-%lld.h5%n", &s, &p2) == 1 && p2 > 0 && rest[p2] == '\0' && s > 0) {
        *seq = s;
        return F_SEG;
    }
    return F_OTHER;
}

typedef struct journal {
    int present;
    int legacy;           /* no "last_segment": written by the append-in-place writer, counts the base only */
    int64_t samples, tokens, last_segment;
} journal;

/* KD_OK with j->present 0 when absent; an error when unreadable. */
static int journal_read(const char *path, journal *jr, kd_error *err) {
    memset(jr, 0, sizeof *jr);
    if (!kd_path_exists(path)) return KD_OK;
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return kd_error_set(err, KD_ERR_PARSE, "%s: unreadable journal: %s", path, je.text);
    json_t *s = json_object_get(j, "samples"), *t = json_object_get(j, "tokens");
    json_t *l = json_object_get(j, "last_segment");
    if (!json_is_integer(s) || !json_is_integer(t) || json_integer_value(s) < 0) {
        json_decref(j);
        return kd_error_set(err, KD_ERR_PARSE, "%s: journal lacks integer \"samples\"/\"tokens\"", path);
    }
    jr->present = 1;
    jr->legacy = !json_is_integer(l);
    jr->samples = json_integer_value(s);
    jr->tokens = json_integer_value(t);
    jr->last_segment = json_is_integer(l) ? json_integer_value(l) : 0;
    json_decref(j);
    return KD_OK;
}
static int journal_write(const char *path, int64_t samples, int64_t tokens, int64_t last_segment, kd_error *err) {
    char buf[256];
    int n = snprintf(buf, sizeof buf, "{\"samples\": %lld, \"tokens\": %lld, \"last_segment\": %lld}\n",
                     (long long)samples, (long long)tokens, (long long)last_segment);
    return kd_write_file_atomic(path, buf, (size_t)n, err);
}

/* Test hook for crash tests: KD_DEBUG_KILL_IN_SEAL="POINT[:N[:RANK]]" raises SIGKILL at POINT of the
 * Nth seal (or compaction) of shard RANK (default: the first, any rank). POINT is one of
 *   written          segment data written, its file not yet closed (what a kill mid-H5Fflush hits)
 *   closed           segment file closed and fsynced, not yet renamed into place
 *   renamed          segment in place, the journal not yet updated
 *   compact-written  compacted base written to its temp name, not yet renamed
 *   compact-renamed  compacted base in place, its segments not yet removed */
static void debug_kill(const char *point, int rank, int64_t nth) {
    const char *v = getenv("KD_DEBUG_KILL_IN_SEAL");
    if (!v || !*v) return;
    char p[32] = "";
    long long n = 1;
    int r = -1;
    if (sscanf(v, "%31[^:]:%lld:%d", p, &n, &r) < 1) return;
    if (strcmp(p, point) != 0 || n != nth || (r >= 0 && r != rank)) return;
    raise(SIGKILL);
}

/* ---- low-level dataset helpers ------------------------------------------------------------------ */

static hsize_t dset_len(hid_t d) {
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    return dims[0];
}

/* Read rows [first, first+n) of column c into buf. */
static int dset_read_rows(hid_t d, const col_def *c, int k, hsize_t first, hsize_t n, void *buf) {
    if (n == 0) return 0;
    hid_t fs = H5Dget_space(d);
    hsize_t start[2] = {first, 0}, count[2] = {n, (hsize_t)k};
    int rank = c->wide ? 2 : 1;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    herr_t r = H5Dread(d, mem_type(c->type), ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    return r < 0 ? -1 : 0;
}

/* chunk_n: rows per chunk, 0 = the layout's default */
static hid_t create_column(hid_t f, const col_def *c, int k, int deflate, hsize_t initial, hsize_t chunk_n) {
    hsize_t dims[2] = {initial, (hsize_t)k}, maxd[2] = {H5S_UNLIMITED, (hsize_t)k};
    hsize_t chunk[2] = {chunk_n ? chunk_n : chunk_rows(c, k), (hsize_t)k};
    int rank = c->wide ? 2 : 1;
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, chunk);
    if (deflate > 0) {
        H5Pset_shuffle(dcpl);
        H5Pset_deflate(dcpl, (unsigned)deflate);
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(f, c->path, file_type(c->type), sp, lcpl, dcpl, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return d;
}

/* Token ids and teacher top-k are most of the bytes. On generated data they are mostly prompt rows
 * with no teacher entry (-1 / -inf) and deflate ~21x; the background writer thread pays for it, so
 * they are compressed by default (compress_token_data = 0 turns it off, docs/performance-data.md). */
static int column_deflate(const kd_dataset_info *info, int c) {
    int heavy = c == C_INPUT_IDS || c == C_TOPK_IDS || c == C_TOPK_LP || c == C_TAIL;
    return heavy && !info->compress_token_data ? 0 : info->deflate_level;
}

/* Shards keep the default (oldest) file format on purpose: superblock v3 (libver latest) marks a file
 * "open for writing" and refuses to reopen it after a crash until h5clear is run. Only dataset.h5, which
 * is written once and closed, uses the 1.10 format that virtual datasets need. */
static hid_t fapl_shard(void) { return H5Pcreate(H5P_FILE_ACCESS); }

static hid_t fapl_latest(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    return fapl;
}

/* ---- shard recovery ------------------------------------------------------------------------------ */

/* Check one shard-format file (base or segment). `cut` >= 0 (a legacy append-in-place shard): cut
 * every column back to `cut` samples and `cut_tokens` tokens, as its journal says. Otherwise the file
 * was written whole and holds exactly what its offsets say. Then read back the last chunks of every
 * column, so damage shows up now, not in training. Fills samples/tokens; an error says why the file
 * cannot be trusted. */
static int file_check(const char *path, int64_t cut, int64_t cut_tokens, int64_t *samples_out, int64_t *tokens_out,
                      kd_error *err) {
    quiet_hdf5();
    hid_t fapl = fapl_shard();
    hid_t f = H5Fopen(path, cut >= 0 ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: cannot be opened as HDF5", path);
    hid_t d[NCOL];
    for (int i = 0; i < NCOL; i++) d[i] = -1;
    int rc = KD_OK;
    int64_t ends[NCOL], k64 = 0;
    if (attr_read_int(f, "topk", &k64) < 0 || k64 < 1 || k64 > 1 << 16) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: no topk attribute", path);
        goto out;
    }
    int k = (int)k64;
    for (int i = 0; i < NCOL; i++) {
        d[i] = H5Dopen2(f, COLS[i].path, H5P_DEFAULT);
        if (d[i] < 0) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: dataset %s missing", path, COLS[i].path);
            goto out;
        }
    }
    int64_t samples = cut;
    if (samples < 0) {
        samples = (int64_t)dset_len(d[C_PROMPT_ID]);
        if ((int64_t)dset_len(d[C_OFFSETS]) != samples + 1) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: %lld samples but %llu offsets", path, (long long)samples,
                              (unsigned long long)dset_len(d[C_OFFSETS]));
            goto out;
        }
    }
    /* Offsets columns tell where each byte/token column ends after `samples` rows. */
    for (int i = 0; i < NCOL; i++) {
        if (COLS[i].kind != COL_OFFSETS) continue;
        if ((int64_t)dset_len(d[i]) < samples + 1) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: %s has %llu rows, the journal says %lld samples are sealed",
                              path, COLS[i].path, (unsigned long long)dset_len(d[i]), (long long)samples);
            goto out;
        }
        int64_t e = 0;
        if (dset_read_rows(d[i], &COLS[i], k, (hsize_t)samples, 1, &e) < 0) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot read %s", path, COLS[i].path);
            goto out;
        }
        ends[i] = e;
    }
    if (cut >= 0 && ends[C_OFFSETS] != cut_tokens) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: %lld tokens in the first %lld samples, the journal says %lld",
                          path, (long long)ends[C_OFFSETS], (long long)samples, (long long)cut_tokens);
        goto out;
    }
    for (int i = 0; i < NCOL; i++) {
        const col_def *c = &COLS[i];
        hsize_t want = c->kind == COL_SAMPLE    ? (hsize_t)samples
                       : c->kind == COL_OFFSETS ? (hsize_t)samples + 1
                       : c->kind == COL_TOKEN   ? (hsize_t)ends[C_OFFSETS]
                                                : (hsize_t)ends[c->bytes_of];
        hsize_t have = dset_len(d[i]);
        if (have < want || (cut < 0 && have != want)) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: %s has %llu rows, %llu are sealed", path, c->path,
                              (unsigned long long)have, (unsigned long long)want);
            goto out;
        }
        if (have > want) {
            hsize_t dims[2] = {want, (hsize_t)k};
            if (H5Dset_extent(d[i], dims) < 0) {
                rc = kd_error_set(err, KD_ERR_IO, "%s: cannot cut %s back to %llu rows", path, c->path,
                                  (unsigned long long)want);
                goto out;
            }
        }
        hsize_t tail = 2 * chunk_rows(c, k);
        hsize_t first = want > tail ? want - tail : 0;
        size_t row = TYPE_SIZE[c->type] * (c->wide ? (size_t)k : 1);
        void *buf = malloc((size_t)(want - first) * row + 1);
        if (!buf) {
            rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory checking %s", path);
            goto out;
        }
        int r = dset_read_rows(d[i], c, k, first, want - first, buf);
        free(buf);
        if (r < 0) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: sealed rows of %s cannot be read back", path, c->path);
            goto out;
        }
    }
    *samples_out = samples;
    *tokens_out = ends[C_OFFSETS];
out:
    for (int i = 0; i < NCOL; i++)
        if (d[i] >= 0) H5Dclose(d[i]);
    if (H5Fclose(f) < 0 && rc == KD_OK) rc = kd_error_set(err, KD_ERR_IO, "%s: close failed", path);
    return rc;
}

/* 1 and *v when the file opens and has the attribute, 0 when it opens without it, -1 when it does not open. */
static int file_attr_int(const char *path, const char *name, int64_t *v) {
    quiet_hdf5();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    int r = attr_read_int(f, name, v) == 0 ? 1 : 0;
    H5Fclose(f);
    return r;
}

/* One entry of the dataset folder that belongs to a shard rank. */
typedef struct dir_entry {
    int rank, kind;
    int64_t seq;
    char name[256];
} dir_entry;

static int cmp_entry(const void *a, const void *b) {
    const dir_entry *x = a, *y = b;
    if (x->rank != y->rank) return (x->rank > y->rank) - (x->rank < y->rank);
    if (x->kind != y->kind) return (x->kind > y->kind) - (x->kind < y->kind);
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Every shard file in dir, sorted by rank, kind, segment number. */
static int list_dir(const char *dir, dir_entry **out, size_t *n, kd_error *err) {
    *out = NULL;
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp) return kd_error_errno(err, errno, "%s: cannot list the dataset folder", dir);
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        dir_entry de;
        memset(&de, 0, sizeof de);
        de.kind = parse_name(e->d_name, &de.rank, &de.seq);
        if (de.kind == F_OTHER || strlen(e->d_name) >= sizeof de.name) continue;
        snprintf(de.name, sizeof de.name, "%s", e->d_name);
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            dir_entry *ne = kd_reallocarray(*out, cap, sizeof *ne);
            if (!ne) {
                closedir(dp);
                free(*out);
                *out = NULL;
                return kd_error_set(err, KD_ERR_NOMEM, "out of memory listing %s", dir);
            }
            *out = ne;
        }
        (*out)[(*n)++] = de;
    }
    closedir(dp);
    if (*n > 1) qsort(*out, *n, sizeof **out, cmp_entry);
    return KD_OK;
}

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

static void rank_state_free(rank_state *st) {
    free(st->path);
    free(st->seq);
    free(st->samples);
    memset(st, 0, sizeof *st);
}

static int rank_state_add(rank_state *st, const char *path, int64_t seq, int64_t samples, int64_t tokens) {
    char(*p)[4096] = realloc(st->path, sizeof *p * (size_t)(st->nfiles + 1));
    if (!p) return -1;
    st->path = p;
    int64_t *s = kd_reallocarray(st->seq, (size_t)st->nfiles + 1, sizeof(int64_t));
    if (!s) return -1;
    st->seq = s;
    s = kd_reallocarray(st->samples, (size_t)st->nfiles + 1, sizeof(int64_t));
    if (!s) return -1;
    st->samples = s;
    snprintf(st->path[st->nfiles], 4096, "%s", path);
    st->seq[st->nfiles] = seq;
    st->samples[st->nfiles] = samples;
    st->nfiles++;
    st->total_samples += samples;
    st->total_tokens += tokens;
    return 0;
}

/* lost < 0: not known (the file cannot be read) */
static int move_aside(const char *path, const char *why, int64_t lost, kd_error *err) {
    char aside[4200];
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    if (lost >= 0)
        KD_WARN("%s; moving it to %s, its %lld sealed samples will be generated again", why, aside, (long long)lost);
    else
        KD_WARN("%s; moving it to %s, its sealed samples will be generated again", why, aside);
    if (rename(path, aside) != 0) return kd_error_errno(err, errno, "cannot move %s aside", path);
    return KD_OK;
}

/* Bring rank `rank`'s files (entries es[0..n) of the folder listing) in line: remove temporaries of
 * interrupted writes and segments already folded into the base, cut a legacy shard to its journal,
 * move files that cannot be read back aside (*.corrupt: their prompts are not done and will be
 * generated again, never half-present). Sealed files are never modified. */
static int rank_recover(const char *dir, int rank, const dir_entry *es, size_t n, rank_state *st, kd_error *err) {
    memset(st, 0, sizeof *st);
    st->rank = rank;
    char jpath[4096], path[4400];
    journal_path(jpath, sizeof jpath, dir, rank);
    journal jr;
    if (journal_read(jpath, &jr, err)) return err ? err->code : KD_ERR_PARSE;
    int64_t max_seq = jr.last_segment, lost_files = 0;
    int any_file = 0, rc = KD_OK;
    for (size_t i = 0; i < n; i++) {
        if (es[i].rank != rank || es[i].kind != F_TMP) continue;
        kd_path_join(path, sizeof path, dir, es[i].name);
        unlink(path); /* an interrupted seal, compaction or journal write: never part of the dataset */
    }
    /* the base */
    char bpath[4096];
    base_path(bpath, sizeof bpath, dir, rank);
    int base_bad = 0;
    kd_error why;
    kd_error_clear(&why);
    int64_t bs = 0, bt = 0;
    if (kd_path_exists(bpath)) {
        any_file = 1;
        int64_t through = 0;
        int a = file_attr_int(bpath, "segments_through", &through);
        int legacy = a == 0 && jr.present && jr.legacy;
        if (a < 0) {
            kd_error_set(&why, KD_ERR_INVALID, "%s: cannot be opened as HDF5", bpath);
            base_bad = 1;
        } else if (file_check(bpath, legacy ? jr.samples : -1, legacy ? jr.tokens : -1, &bs, &bt, &why)) {
            base_bad = 1;
        } else {
            st->has_base = 1;
            st->through = a == 1 ? through : 0;
            if (st->through > max_seq) max_seq = st->through;
            if (rank_state_add(st, bpath, 0, bs, bt)) goto nomem;
        }
    }
    /* the segments */
    for (size_t i = 0; i < n; i++) {
        if (es[i].rank != rank || es[i].kind != F_SEG) continue;
        kd_path_join(path, sizeof path, dir, es[i].name);
        if (es[i].seq > max_seq) max_seq = es[i].seq;
        if (es[i].seq <= st->through) {
            /* folded into the base by a compaction that was cut before it removed them */
            if (unlink(path) != 0 && errno != ENOENT) {
                rc = kd_error_errno(err, errno, "cannot remove %s (already in %s)", path, bpath);
                goto fail;
            }
            continue;
        }
        any_file = 1;
        int64_t s = 0, t = 0;
        kd_error we;
        kd_error_clear(&we);
        if (file_check(path, -1, -1, &s, &t, &we)) {
            lost_files++;
            if ((rc = move_aside(path, we.msg, -1, err))) goto fail;
            continue;
        }
        if (rank_state_add(st, path, es[i].seq, s, t)) goto nomem;
    }
    if (base_bad) {
        lost_files++;
        int64_t lost = jr.present && jr.samples > st->total_samples ? jr.samples - st->total_samples : 0;
        if ((rc = move_aside(bpath, why.msg, lost, err))) goto fail;
    }
    st->next_seq = max_seq + 1;
    if (jr.present && !any_file && jr.samples > 0) {
        rc = kd_error_set(err, KD_ERR_NOTFOUND,
                          "%s: the journal says %lld samples are sealed but the shard file is missing", bpath,
                          (long long)jr.samples);
        goto fail;
    }
    if (!lost_files && jr.present && !jr.legacy && st->total_samples < jr.samples) {
        KD_WARN("%s: shard %d's journal counts %lld sealed samples, its files hold %lld (a file was removed?); the "
                "missing ones will be generated again",
                dir, rank, (long long)jr.samples, (long long)st->total_samples);
        lost_files++;
    }
    if (lost_files) {
        /* the journal now describes what is left, so the loss is reported once */
        if (st->nfiles == 0) {
            if (unlink(jpath) != 0 && errno != ENOENT) {
                rc = kd_error_errno(err, errno, "cannot remove %s", jpath);
                goto fail;
            }
        } else if ((rc = journal_write(jpath, st->total_samples, st->total_tokens, max_seq, err))) {
            goto fail;
        }
    }
    return KD_OK;
nomem:
    rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
fail:
    rank_state_free(st);
    return rc;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Read /samples/prompt_id[0:n) of a shard file (read-only). */
static int read_prompt_ids(const char *h5, int64_t n, int64_t *out, kd_error *err) {
    if (n == 0) return KD_OK;
    quiet_hdf5();
    hid_t f = H5Fopen(h5, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: cannot be opened as HDF5", h5);
    hid_t d = H5Dopen2(f, COLS[C_PROMPT_ID].path, H5P_DEFAULT);
    int r = d < 0 ? -1 : dset_read_rows(d, &COLS[C_PROMPT_ID], 1, 0, (hsize_t)n, out);
    if (d >= 0) H5Dclose(d);
    H5Fclose(f);
    if (r < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: cannot read /samples/prompt_id", h5);
    return KD_OK;
}

/* The prompt ids of a rank's sealed files into out[0 .. st->total_samples). */
static int rank_read_ids(const rank_state *st, int64_t *out, kd_error *err) {
    int64_t at = 0;
    for (int i = 0; i < st->nfiles; i++) {
        if (read_prompt_ids(st->path[i], st->samples[i], out + at, err)) return err ? err->code : KD_ERR_INVALID;
        at += st->samples[i];
    }
    return KD_OK;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

/* A shard file written under a temporary name by appending whole files or batches in order: how
 * segments are folded into a base (compaction). Offsets columns are rebased as parts are added. */
typedef struct appender {
    char tmp[4200];
    hid_t f;
    hid_t d[NCOL];
    int k;
    int64_t rows[NCOL], end[NCOL];
    int nparts; /* parts completed */
} appender;

static void app_abort(appender *a) {
    for (int c = 0; c < NCOL; c++)
        if (a->d[c] >= 0) H5Dclose(a->d[c]);
    if (a->f >= 0) H5Fclose(a->f);
    a->f = -1;
    for (int c = 0; c < NCOL; c++) a->d[c] = -1;
    unlink(a->tmp);
}

static int app_open(appender *a, const char *tmp, const kd_dataset_info *info, kd_error *err) {
    memset(a, 0, sizeof *a);
    a->f = -1;
    for (int c = 0; c < NCOL; c++) a->d[c] = -1;
    snprintf(a->tmp, sizeof a->tmp, "%s", tmp);
    a->k = info->topk;
    quiet_hdf5();
    hid_t fapl = fapl_shard();
    a->f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (a->f < 0) return kd_error_set(err, KD_ERR_IO, "%s: cannot create (is the folder writable?)", tmp);
    for (int g = 0; g < 4; g++) H5Gclose(H5Gcreate2(a->f, GROUPS[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    int bad = write_info_attrs(a->f, info);
    for (int c = 0; c < NCOL && !bad; c++) {
        a->d[c] = create_column(a->f, &COLS[c], a->k, column_deflate(info, c), 0, 0);
        if (a->d[c] < 0) bad = 1;
    }
    if (bad) {
        app_abort(a);
        return kd_error_set(err, KD_ERR_IO, "%s: cannot create its datasets", tmp);
    }
    return KD_OK;
}

/* Append n rows of column c. Offsets columns hold the part's own n entries from 0 (n = samples + 1):
 * they are shifted in place past what the parts before hold, and all but the first part's leading 0
 * is dropped. */
static int app_add(appender *a, int c, void *data, hsize_t n, kd_error *err) {
    const col_def *cd = &COLS[c];
    size_t row = TYPE_SIZE[cd->type] * (cd->wide ? (size_t)a->k : 1);
    hsize_t skip = 0;
    if (cd->kind == COL_OFFSETS) {
        int64_t *o = data;
        for (hsize_t j = 0; j < n; j++) o[j] += a->end[c];
        if (a->nparts > 0) skip = 1;
        if (n > 0) a->end[c] = o[n - 1];
    }
    if (n <= skip) return KD_OK;
    hsize_t add = n - skip;
    hsize_t dims[2] = {(hsize_t)a->rows[c] + add, (hsize_t)a->k};
    if (H5Dset_extent(a->d[c], dims) < 0) return kd_error_set(err, KD_ERR_IO, "%s: cannot extend %s", a->tmp, cd->path);
    hid_t fs = H5Dget_space(a->d[c]);
    hsize_t start[2] = {(hsize_t)a->rows[c], 0}, count[2] = {add, (hsize_t)a->k};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(cd->wide ? 2 : 1, count, NULL);
    herr_t r = H5Dwrite(a->d[c], mem_type(cd->type), ms, fs, H5P_DEFAULT, (uint8_t *)data + skip * row);
    H5Sclose(ms);
    H5Sclose(fs);
    if (r < 0) return kd_error_set(err, KD_ERR_IO, "%s: writing %s failed (disk full?)", a->tmp, cd->path);
    a->rows[c] += (int64_t)add;
    return KD_OK;
}

/* Append a whole shard-format file (a base or a segment). */
static int app_add_file(appender *a, const char *path, kd_error *err) {
    hid_t src = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (src < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: cannot be opened as HDF5", path);
    int rc = KD_OK;
    void *buf = NULL;
    size_t cap = 0;
    for (int c = 0; c < NCOL && rc == KD_OK; c++) {
        const col_def *cd = &COLS[c];
        hid_t sd = H5Dopen2(src, cd->path, H5P_DEFAULT);
        if (sd < 0) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: dataset %s missing", path, cd->path);
            break;
        }
        hsize_t n = dset_len(sd);
        size_t need = (size_t)n * TYPE_SIZE[cd->type] * (cd->wide ? (size_t)a->k : 1) + 8;
        if (need > cap) {
            void *nb = realloc(buf, need);
            if (!nb) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory reading %s", path);
            else {
                buf = nb;
                cap = need;
            }
        }
        if (!rc && dset_read_rows(sd, cd, a->k, 0, n, buf) < 0) rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot read %s", path, cd->path);
        H5Dclose(sd);
        if (!rc) rc = app_add(a, c, buf, n, err);
    }
    free(buf);
    H5Fclose(src);
    a->nparts++;
    return rc;
}

/* Record the last segment held, close and fsync. The file is then ready to be renamed into place. */
static int app_finish(appender *a, int64_t through, kd_error *err) {
    int bad = attr_write_int(a->f, "segments_through", through);
    for (int c = 0; c < NCOL; c++) {
        if (a->d[c] >= 0 && H5Dclose(a->d[c]) < 0) bad = 1;
        a->d[c] = -1;
    }
    if (H5Fclose(a->f) < 0) bad = 1;
    a->f = -1;
    if (bad) {
        unlink(a->tmp);
        return kd_error_set(err, KD_ERR_IO, "%s: cannot close (disk full?)", a->tmp);
    }
    if (fsync_path(a->tmp) != 0) {
        int rc = kd_error_errno(err, errno, "%s: fsync failed", a->tmp);
        unlink(a->tmp);
        return rc;
    }
    return KD_OK;
}

/* Put a finished compaction in place: rename over the base, fsync the folder, then remove the
 * rank's segments up to `through` (the base holds them) and record the totals in the journal. */
static int compaction_commit(const char *dir, int rank, const char *tmp, int64_t through, int64_t samples,
                             int64_t tokens, int64_t nth, kd_error *err) {
    char bpath[4096], jpath[4096], path[4400];
    base_path(bpath, sizeof bpath, dir, rank);
    journal_path(jpath, sizeof jpath, dir, rank);
    debug_kill("compact-written", rank, nth);
    if (rename(tmp, bpath) != 0) {
        int rc = kd_error_errno(err, errno, "cannot rename %s to %s", tmp, bpath);
        unlink(tmp);
        return rc;
    }
    kd_fsync_dir(dir, NULL);
    debug_kill("compact-renamed", rank, nth);
    dir_entry *es = NULL;
    size_t n = 0;
    if (list_dir(dir, &es, &n, err)) return err ? err->code : KD_ERR_IO;
    for (size_t i = 0; i < n; i++) {
        if (es[i].rank != rank || es[i].kind != F_SEG || es[i].seq > through) continue;
        kd_path_join(path, sizeof path, dir, es[i].name);
        if (unlink(path) != 0 && errno != ENOENT) {
            int rc = kd_error_errno(err, errno, "cannot remove %s (already in %s)", path, bpath);
            free(es);
            return rc;
        }
    }
    free(es);
    kd_fsync_dir(dir, NULL);
    return journal_write(jpath, samples, tokens, through, err);
}

/* Bytes of free space in dir, or -1 when unknown. */
static long long free_bytes(const char *dir) {
    struct statvfs vs;
    if (statvfs(dir, &vs) != 0) return -1;
    return (long long)((unsigned long long)vs.f_bavail * vs.f_frsize);
}

/* Fold a rank's segments into its base: base + segments are copied, in order, into a temporary file,
 * which is closed, fsynced and renamed over the base (then the folder is fsynced); only then are the
 * segments removed. The new base records the last segment it holds (segments_through), so a crash
 * before the removal leaves no duplicates: recovery drops segments the base already holds. */
static int rank_compact(const char *dir, rank_state *st, int64_t nth, kd_error *err) {
    int nseg = st->nfiles - (st->has_base ? 1 : 0);
    if (nseg == 0) return KD_OK;
    char bpath[4096], tmp[4200];
    base_path(bpath, sizeof bpath, dir, st->rank);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", bpath, (int)getpid());
    int64_t last = st->seq[st->nfiles - 1];
    long long need = 0, avail = free_bytes(dir);
    struct stat sb;
    for (int i = 0; i < st->nfiles; i++)
        if (stat(st->path[i], &sb) == 0) need += (long long)sb.st_size;
    if (avail >= 0 && avail < need + (1 << 20)) {
        /* No room for the copy: the segments stay as they are (dataset.h5 maps them directly), and a
         * later finalize with more room folds them in. */
        KD_WARN("%s: not enough free space to merge shard %d's %d sealed files (%lld KiB free, %lld KiB needed); "
                "they stay as separate files, which dataset.h5 maps as they are",
                dir, st->rank, st->nfiles, avail / 1024, need / 1024 + 1);
        return KD_OK;
    }
    quiet_hdf5();
    /* attributes (and compression) from the first file */
    hid_t f0 = H5Fopen(st->path[0], H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f0 < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: cannot be opened as HDF5", st->path[0]);
    kd_dataset_info info;
    char *yaml = NULL;
    int rc = read_info_attrs(f0, st->path[0], &info, &yaml, NULL, err);
    /* compression is not an attribute: take it from the first file's filters (a mask column: the
     * deflate level; input_ids: whether token data is compressed) */
    for (int pass = 0; pass < 2 && !rc; pass++) {
        hid_t d = H5Dopen2(f0, COLS[pass ? C_INPUT_IDS : C_LOSS].path, H5P_DEFAULT);
        hid_t dcpl = d >= 0 ? H5Dget_create_plist(d) : -1;
        int level = 0;
        for (int fi = 0; dcpl >= 0 && fi < H5Pget_nfilters(dcpl); fi++) {
            unsigned flags, cd[8];
            size_t ncd = 8;
            if (H5Pget_filter2(dcpl, (unsigned)fi, &flags, &ncd, cd, 0, NULL, NULL) == H5Z_FILTER_DEFLATE)
                level = ncd > 0 ? (int)cd[0] : 1;
        }
        if (pass == 0) info.deflate_level = level;
        else info.compress_token_data = level > 0;
        if (dcpl >= 0) H5Pclose(dcpl);
        if (d >= 0) H5Dclose(d);
    }
    H5Fclose(f0);
    info.config_yaml = yaml;
    appender a;
    if (!rc) rc = app_open(&a, tmp, &info, err);
    free(yaml);
    if (rc) return rc;
    for (int i = 0; i < st->nfiles && rc == KD_OK; i++) rc = app_add_file(&a, st->path[i], err);
    if (rc) {
        app_abort(&a);
        return rc;
    }
    if ((rc = app_finish(&a, last, err))) return rc;
    if ((rc = compaction_commit(dir, st->rank, tmp, last, st->total_samples, st->total_tokens, nth, err))) return rc;
    int64_t s = st->total_samples, t = st->total_tokens;
    st->nfiles = 0;
    st->total_samples = st->total_tokens = 0;
    st->has_base = 1;
    st->through = last;
    if (rank_state_add(st, bpath, 0, s, t)) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    return KD_OK;
}

/* Recover every rank in dir (and, with `compact`, fold each rank's segments into its base). */
static int recover_all(const char *dir, int compact, rank_state **out, int *nout, kd_error *err) {
    *out = NULL;
    *nout = 0;
    dir_entry *es = NULL;
    size_t n = 0;
    if (list_dir(dir, &es, &n, err)) return err ? err->code : KD_ERR_IO;
    int nr = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || es[i].rank != es[i - 1].rank) nr++;
    rank_state *st = kd_calloc((size_t)nr + 1, sizeof *st);
    if (!st) {
        free(es);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    }
    int m = 0, rc = KD_OK;
    for (size_t i = 0; i < n && rc == KD_OK; i++) {
        if (i > 0 && es[i].rank == es[i - 1].rank) continue;
        size_t j = i;
        while (j < n && es[j].rank == es[i].rank) j++;
        rc = rank_recover(dir, es[i].rank, es + i, j - i, &st[m], err);
        if (rc == KD_OK && compact) rc = rank_compact(dir, &st[m], 1, err);
        if (rc == KD_OK) m++;
    }
    free(es);
    if (rc) {
        for (int i = 0; i < m; i++) rank_state_free(&st[i]);
        free(st);
        return rc;
    }
    *out = st;
    *nout = m;
    return KD_OK;
}

static void free_states(rank_state *st, int n) {
    for (int i = 0; i < n; i++) rank_state_free(&st[i]);
    free(st);
}

int kd_dataset_recover(const char *dir, int64_t **ids, size_t *n, kd_error *err) {
    *ids = NULL;
    *n = 0;
    rank_state *st;
    int ns;
    if (recover_all(dir, 0, &st, &ns, err)) return err ? err->code : KD_ERR_IO;
    int64_t total = 0;
    for (int i = 0; i < ns; i++) total += st[i].total_samples;
    int64_t *all = kd_calloc((size_t)total + 1, sizeof(int64_t));
    if (!all) {
        free_states(st, ns);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory reading done prompt ids");
    }
    int64_t at = 0;
    for (int i = 0; i < ns; i++) {
        if (rank_read_ids(&st[i], all + at, err)) {
            free(all);
            free_states(st, ns);
            return err->code;
        }
        at += st[i].total_samples;
    }
    free_states(st, ns);
    qsort(all, (size_t)total, sizeof(int64_t), cmp_i64);
    for (int64_t i = 1; i < total; i++)
        if (all[i] == all[i - 1]) {
            int64_t dup = all[i];
            free(all);
            return kd_error_set(err, KD_ERR_INVALID,
                                "%s: prompt id %lld is stored twice; the dataset was written by two runs at once?",
                                dir, (long long)dup);
        }
    *ids = all;
    *n = (size_t)total;
    return KD_OK;
}

/* Set bit id in a growable bitmap; 1 when it was set already, -1 out of memory. */
static int bits_set(uint8_t **bits, int64_t *nbits, int64_t id) {
    if (id >= *nbits) {
        int64_t n = *nbits ? *nbits : 1 << 16;
        while (n <= id) n *= 2;
        uint8_t *nb = realloc(*bits, (size_t)(n / 8));
        if (!nb) return -1;
        memset(nb + *nbits / 8, 0, (size_t)((n - *nbits) / 8));
        *bits = nb;
        *nbits = n;
    }
    int was = ((*bits)[id >> 3] >> (id & 7)) & 1;
    (*bits)[id >> 3] |= (uint8_t)(1u << (id & 7));
    return was;
}

int kd_dataset_recover_done(const char *dir, uint8_t **bits, int64_t *nbits, int64_t *count, kd_error *err) {
    *bits = NULL;
    *nbits = 0;
    *count = 0;
    rank_state *st;
    int ns;
    if (recover_all(dir, 0, &st, &ns, err)) return err ? err->code : KD_ERR_IO;
    int rc = KD_OK;
    const hsize_t block = 1 << 16;
    int64_t *ids = kd_calloc(block, sizeof(int64_t));
    if (!ids) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < ns && !rc; i++)
        for (int f = 0; f < st[i].nfiles && !rc; f++) {
            hid_t h = H5Fopen(st[i].path[f], H5F_ACC_RDONLY, H5P_DEFAULT);
            hid_t d = h < 0 ? -1 : H5Dopen2(h, COLS[C_PROMPT_ID].path, H5P_DEFAULT);
            if (d < 0) rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot read /samples/prompt_id", st[i].path[f]);
            for (hsize_t r = 0; !rc && r < (hsize_t)st[i].samples[f]; r += block) {
                hsize_t n = (hsize_t)st[i].samples[f] - r < block ? (hsize_t)st[i].samples[f] - r : block;
                if (dset_read_rows(d, &COLS[C_PROMPT_ID], 1, r, n, ids) < 0) {
                    rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot read /samples/prompt_id", st[i].path[f]);
                    break;
                }
                for (hsize_t j = 0; j < n && !rc; j++) {
                    int was = ids[j] < 0 ? -2 : bits_set(bits, nbits, ids[j]);
                    if (was == 1)
                        rc = kd_error_set(err, KD_ERR_INVALID,
                                          "%s: prompt id %lld is stored twice; the dataset was written by two runs at once?",
                                          dir, (long long)ids[j]);
                    else if (was == -2)
                        rc = kd_error_set(err, KD_ERR_INVALID, "%s: negative prompt id %lld", st[i].path[f], (long long)ids[j]);
                    else if (was < 0)
                        rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
                    else
                        (*count)++;
                }
            }
            if (d >= 0) H5Dclose(d);
            if (h >= 0) H5Fclose(h);
        }
    free(ids);
    free_states(st, ns);
    if (rc) {
        free(*bits);
        *bits = NULL;
        *nbits = *count = 0;
    }
    return rc;
}

int kd_dataset_totals(const char *dir, int64_t *samples, int64_t *tokens, kd_error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/dataset.h5", dir);
    quiet_hdf5();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return kd_error_set(err, KD_ERR_NOTFOUND, "%s: cannot be opened as HDF5", path);
    hid_t d = H5Dopen2(f, COLS[C_OFFSETS].path, H5P_DEFAULT);
    hsize_t n = d < 0 ? 0 : dset_len(d);
    int64_t last = 0;
    int r = n < 1 ? -1 : dset_read_rows(d, &COLS[C_OFFSETS], 1, n - 1, 1, &last);
    if (d >= 0) H5Dclose(d);
    H5Fclose(f);
    if (r < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: cannot read /samples/offsets", path);
    *samples = (int64_t)n - 1;
    *tokens = last;
    return KD_OK;
}

/* ---- shard writer -------------------------------------------------------------------------------- */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;
/* Room for n more bytes (contents undefined). */
static int buf_reserve(buf *b, size_t n) {
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n) nc *= 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) return -1;
        b->p = np;
        b->cap = nc;
    }
    return 0;
}
static int buf_add(buf *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n) nc *= 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) return -1;
        b->p = np;
        b->cap = nc;
    }
    if (data)
        memcpy(b->p + b->len, data, n);
    else
        memset(b->p + b->len, 0, n);
    b->len += n;
    return 0;
}

/* Samples on their way to a segment: one buffer per column (offsets columns from 0). */
typedef struct batch {
    buf col[NCOL];
    int64_t samples, tokens;
} batch;

static void batch_free(batch *b) {
    for (int i = 0; i < NCOL; i++) free(b->col[i].p);
    memset(b, 0, sizeof *b);
}
static size_t batch_bytes(const batch *b) {
    size_t n = 0;
    for (int i = 0; i < NCOL; i++) n += b->col[i].len;
    return n;
}

struct kd_shard {
    char dir[4096], base[4096], journal[4096];
    int rank;
    kd_dataset_info info;  /* config_yaml points at yaml */
    char *yaml;
    int topk;
    int seal_every;
    int64_t sealed;        /* samples sealed (in the base and the segments) */
    int64_t sealed_tokens;
    int64_t next_seq;      /* number of the next segment */
    int64_t last_seq;      /* number of the last segment sealed (or folded into the base) */
    int64_t seals;         /* seals started by this writer (for the test hook) */
    int64_t total[NCOL];   /* offsets columns: the running end within the pending batch */
    batch pending;         /* appended, not sealed */
    int64_t *done;         /* kd_shard_done_ids' answer */
    double bytes_ratio;    /* segment bytes per buffered byte at the last seal (compression); 0 = unknown */
    /* background sealing (kd_shard_background): a writer thread seals `flight` while appends fill
     * `pending`, and folds every sealed batch into the rank's next base as it goes (`app`). */
    int bg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int job;               /* 1: seal `flight`; 2: quit */
    int busy;
    batch flight;
    int64_t flight_seq, flight_nth;
    int bg_rc;
    kd_error bg_err;
    double bg_seconds;     /* the writer thread's time in seals */
    appender app;          /* the next base, being built (bg only) */
    int app_state;         /* 0 not started, 1 open, -1 given up (no room): compact on close instead */
    int64_t app_through;
};

static void shard_free(kd_shard *sh) {
    batch_free(&sh->pending);
    batch_free(&sh->flight);
    free(sh->yaml);
    free(sh->done);
    free(sh);
}

/* The attributes of every sealed file of this rank must match `info` (meta.json's). */
static int check_rank_attrs(const rank_state *st, const kd_dataset_info *info, kd_error *err) {
    for (int i = 0; i < st->nfiles; i++) {
        hid_t f = H5Fopen(st->path[i], H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: cannot be opened as HDF5", st->path[i]);
        kd_dataset_info fi;
        int rc = read_info_attrs(f, st->path[i], &fi, NULL, NULL, err);
        H5Fclose(f);
        if (rc || (rc = info_compare(&fi, info, st->path[i], err))) return rc;
    }
    return KD_OK;
}

int kd_shard_open(kd_shard **out, const char *dir, int rank, const kd_dataset_info *info, int seal_every,
                  kd_error *err) {
    *out = NULL;
    if (seal_every < 1) return kd_error_set(err, KD_ERR_INVALID, "seal_every must be >= 1, got %d", seal_every);
    if (info->topk < 1) return kd_error_set(err, KD_ERR_INVALID, "dataset topk must be >= 1, got %d", info->topk);
    if (kd_mkdir_p(dir, err)) return err ? err->code : KD_ERR_IO;
    quiet_hdf5();
    kd_shard *sh = kd_calloc(1, sizeof *sh);
    if (!sh) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    snprintf(sh->dir, sizeof sh->dir, "%s", dir);
    sh->rank = rank;
    sh->info = *info;
    sh->yaml = kd_strdup(info->config_yaml ? info->config_yaml : "");
    sh->info.config_yaml = sh->yaml;
    sh->topk = info->topk;
    sh->seal_every = seal_every;
    base_path(sh->base, sizeof sh->base, dir, rank);
    journal_path(sh->journal, sizeof sh->journal, dir, rank);
    dir_entry *es = NULL;
    size_t n = 0;
    rank_state st;
    memset(&st, 0, sizeof st);
    int rc = list_dir(dir, &es, &n, err);
    if (!rc) rc = rank_recover(dir, rank, es, n, &st, err);
    free(es);
    if (!rc) rc = check_rank_attrs(&st, info, err);
    sh->sealed = st.total_samples;
    sh->sealed_tokens = st.total_tokens;
    sh->next_seq = st.next_seq;
    sh->last_seq = st.next_seq - 1;
    rank_state_free(&st);
    if (rc) {
        shard_free(sh);
        return rc;
    }
    *out = sh;
    return KD_OK;
}

/* Say what is wrong with a sample the fast checks below rejected. */
static int sample_error(const kd_sample *s, int k, const char *where, kd_error *err) {
    const uint8_t *masks[4] = {s->loss_mask, s->tool_name_mask, s->json_mask, s->integration_mask};
    static const char *names[4] = {"loss_mask", "tool_name_mask", "json_mask", "integration_mask"};
    for (int m = 0; m < 4; m++) {
        if (!masks[m]) continue;
        for (int64_t t = 0; t < s->n; t++) {
            if (masks[m][t] > 1)
                return kd_error_set(err, KD_ERR_INVALID, "%s: prompt id %lld: %s[%lld] = %u, masks hold 0 or 1", where,
                                    (long long)s->prompt_id, names[m], (long long)t, masks[m][t]);
            if (m > 0 && masks[m][t] && !(s->loss_mask && s->loss_mask[t]))
                return kd_error_set(err, KD_ERR_INVALID,
                                    "%s: prompt id %lld: %s set at token %lld outside loss_mask (span masks cover "
                                    "response tokens only)",
                                    where, (long long)s->prompt_id, names[m], (long long)t);
        }
    }
    for (int64_t t = 0; t < s->n * k; t++)
        if (s->topk_ids[t] < -1) /* -1 = no teacher entry (padding, or a position without logprobs) */
            return kd_error_set(err, KD_ERR_INVALID, "%s: prompt id %lld: teacher top-k id below -1 at %lld", where,
                                (long long)s->prompt_id, (long long)(t / k));
    return kd_error_set(err, KD_ERR_INVALID, "%s: prompt id %lld: invalid sample", where, (long long)s->prompt_id);
}

static int check_sample(const kd_sample *s, int k, const char *where, kd_error *err) {
    if (s->n < 0 || s->prompt_len < 0 || s->prompt_len > s->n)
        return kd_error_set(err, KD_ERR_INVALID, "%s: prompt id %lld: prompt_len %lld outside 0..%lld tokens", where,
                            (long long)s->prompt_id, (long long)s->prompt_len, (long long)s->n);
    if (s->prompt_id < 0)
        return kd_error_set(err, KD_ERR_INVALID, "%s: negative prompt id %lld", where, (long long)s->prompt_id);
    if (s->n > 0 && (!s->input_ids || !s->topk_ids || !s->topk_logprobs || !s->tail_logprob))
        return kd_error_set(err, KD_ERR_INVALID, "%s: prompt id %lld: input_ids and teacher top-k are required",
                            where, (long long)s->prompt_id);
    /* one branch-free pass (this runs on every token of every sample); the slow pass above names the
     * problem when there is one */
    static const uint8_t zeros[256];
    const uint8_t *lm = s->loss_mask, *tm = s->tool_name_mask, *jm = s->json_mask, *im = s->integration_mask;
    unsigned bad = 0;
    for (int64_t t0 = 0; t0 < s->n; t0 += 256) {
        int64_t len = s->n - t0 < 256 ? s->n - t0 : 256;
        const uint8_t *l = lm ? lm + t0 : zeros, *a = tm ? tm + t0 : zeros, *b = jm ? jm + t0 : zeros,
                      *c = im ? im + t0 : zeros;
        for (int64_t t = 0; t < len; t++) bad |= (unsigned)((l[t] | a[t] | b[t] | c[t]) > 1) | (unsigned)((a[t] | b[t] | c[t]) & ~l[t]);
    }
    int32_t lo = 0;
    for (int64_t t = 0; t < s->n * k; t++) lo = s->topk_ids[t] < lo ? s->topk_ids[t] : lo;
    if (bad || lo < -1) return sample_error(s, k, where, err);
    return KD_OK;
}

static int seal_pending(kd_shard *sh, int wait, kd_error *err);

int kd_shard_append(kd_shard *sh, const kd_sample *s, kd_error *err) {
    if (check_sample(s, sh->topk, sh->base, err)) return err ? err->code : KD_ERR_INVALID;
    size_t n = (size_t)s->n, k = (size_t)sh->topk;
    const char *texts[4] = {s->prompt_key ? s->prompt_key : "", s->prompt_text ? s->prompt_text : "",
                            s->teacher_text ? s->teacher_text : "", s->metadata ? s->metadata : "{}"};
    const int tcols[4] = {C_KEY, C_PROMPT, C_TEACHER, C_META};
    buf *b = sh->pending.col;
    int bad = 0;
    if (sh->pending.samples == 0) {
        /* every segment's offsets start at 0 */
        for (int i = 0; i < NCOL; i++) {
            if (COLS[i].kind != COL_OFFSETS) continue;
            sh->total[i] = 0;
            bad |= buf_add(&b[i], &sh->total[i], 8);
        }
    }
    bad |= buf_add(&b[C_PROMPT_ID], &s->prompt_id, 8);
    bad |= buf_add(&b[C_PROMPT_LEN], &s->prompt_len, 8);
    bad |= buf_add(&b[C_INPUT_IDS], s->input_ids, n * 4);
    bad |= buf_add(&b[C_LOSS], s->loss_mask, n);
    bad |= buf_add(&b[C_TOOL], s->tool_name_mask, n);
    bad |= buf_add(&b[C_JSON], s->json_mask, n);
    bad |= buf_add(&b[C_INTEG], s->integration_mask, n);
    /* teacher arrays written in place (kd_shard_reserve_teacher) are already where they belong */
    const void *src[3] = {s->topk_ids, s->topk_logprobs, s->tail_logprob};
    const int tcol[3] = {C_TOPK_IDS, C_TOPK_LP, C_TAIL};
    const size_t tlen[3] = {n * k * 4, n * k * 4, n * 4};
    for (int i = 0; i < 3; i++) {
        buf *tb = &b[tcol[i]];
        if (n > 0 && tb->p && src[i] == tb->p + tb->len && tb->len + tlen[i] <= tb->cap)
            tb->len += tlen[i];
        else
            bad |= buf_add(tb, src[i], tlen[i]);
    }
    sh->total[C_OFFSETS] += s->n;
    bad |= buf_add(&b[C_OFFSETS], &sh->total[C_OFFSETS], 8);
    for (int i = 0; i < 4; i++) {
        size_t len = strlen(texts[i]);
        bad |= buf_add(&b[tcols[i]], texts[i], len);
        int oc = COLS[tcols[i]].bytes_of;
        sh->total[oc] += (int64_t)len;
        bad |= buf_add(&b[oc], &sh->total[oc], 8);
    }
    if (bad) return kd_error_set(err, KD_ERR_NOMEM, "%s: out of memory buffering a sample", sh->base);
    sh->pending.samples++;
    sh->pending.tokens = sh->total[C_OFFSETS];
    if (sh->pending.samples >= sh->seal_every) return seal_pending(sh, 0, err);
    return KD_OK;
}

int kd_shard_reserve_teacher(kd_shard *sh, int64_t n, int32_t **topk_ids, float **topk_logprobs, float **tail,
                             kd_error *err) {
    size_t k = (size_t)sh->topk, need[3] = {(size_t)n * k * 4, (size_t)n * k * 4, (size_t)n * 4};
    const int col[3] = {C_TOPK_IDS, C_TOPK_LP, C_TAIL};
    void *out[3];
    for (int i = 0; i < 3; i++) {
        buf *b = &sh->pending.col[col[i]];
        /* room only: kd_shard_append counts it */
        if (buf_reserve(b, need[i] + 4)) return kd_error_set(err, KD_ERR_NOMEM, "%s: out of memory", sh->base);
        out[i] = b->p + b->len;
    }
    *topk_ids = out[0];
    *topk_logprobs = out[1];
    *tail = out[2];
    return KD_OK;
}

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* A write, close or fsync of a segment failed. HDF5 does not say why, so look at the disk: when the
 * folder's filesystem has less room than this seal needed (or errno says so), say the disk is full
 * and what to do, instead of a bare "flush failed". */
static int seal_io_error(const kd_shard *sh, const char *file, size_t need, int64_t sealed, kd_error *err, const char *what) {
    int e = errno;
    int full = e == ENOSPC || e == EDQUOT;
    long long avail = free_bytes(sh->dir);
    if (avail >= 0 && avail < (long long)need + (1 << 20)) full = 1;
    if (full)
        return kd_error_set(err, KD_ERR_NOSPACE,
                            "%s: %s: the disk is full (%lld KiB free, this chunk needs %zu KiB); the %lld samples "
                            "sealed before are safe: free some space and rerun the same command to resume",
                            file, what, avail > 0 ? avail / 1024 : 0, need / 1024 + 1, (long long)sealed);
    return kd_error_set(err, KD_ERR_IO, "%s: %s (I/O error); rerun the same command to resume from the %lld samples "
                                        "sealed before", file, what, (long long)sealed);
}

/* Write a batch as a complete shard-format file at `path` (a temporary name). */
static int write_segment(kd_shard *sh, const batch *bt, const char *path, int64_t seq, int64_t nth, const char **what) {
    int k = sh->topk;
    hid_t fapl = fapl_shard();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    *what = "cannot create the segment file (is the folder writable?)";
    if (f < 0) return -1;
    int bad = 0;
    for (int g = 0; g < 4; g++) H5Gclose(H5Gcreate2(f, GROUPS[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (write_info_attrs(f, &sh->info) || attr_write_int(f, "segment", seq)) bad = 1;
    *what = "writing a column failed";
    for (int i = 0; i < NCOL && !bad; i++) {
        const col_def *c = &COLS[i];
        size_t row = TYPE_SIZE[c->type] * (c->wide ? (size_t)k : 1);
        hsize_t rows = bt->col[i].len / row;
        /* written once: equal chunks that cover the rows exactly, instead of a partial last chunk
         * that is stored at full size */
        hsize_t chunk = chunk_rows(c, k), nchunks = rows > 0 ? (rows + chunk - 1) / chunk : 1;
        chunk = rows > 0 ? (rows + nchunks - 1) / nchunks : 1;
        hid_t d = create_column(f, c, k, column_deflate(&sh->info, i), rows, chunk);
        if (d < 0) bad = 1;
        else if (rows > 0 && H5Dwrite(d, mem_type(c->type), H5S_ALL, H5S_ALL, H5P_DEFAULT, bt->col[i].p) < 0)
            bad = 1;
        if (d >= 0) H5Dclose(d);
    }
    debug_kill("written", sh->rank, nth);
    if (H5Fclose(f) < 0 && !bad) {
        *what = "closing the segment file failed";
        bad = 1;
    }
    return bad ? -1 : 0;
}

/* Seal one batch as segment `seq`: temporary name, fsync, rename (the commit point), fsync the
 * folder; then count it sealed and record it in the journal. A failure leaves nothing but a
 * temporary (removed on the next open): everything sealed before is untouched. */
static int seal_batch(kd_shard *sh, batch *bt, int64_t seq, int64_t nth, kd_error *err) {
    size_t need = batch_bytes(bt);
    char path[4096], tmp[4200];
    seg_path(path, sizeof path, sh->dir, sh->rank, seq);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    const char *what = "";
    if (write_segment(sh, bt, tmp, seq, nth, &what) != 0) {
        int rc = seal_io_error(sh, path, need, sh->sealed, err, what);
        unlink(tmp);
        return rc;
    }
    if (fsync_path(tmp) != 0) {
        int rc = seal_io_error(sh, path, need, sh->sealed, err, "fsync failed");
        unlink(tmp);
        return rc;
    }
    long long size = file_size(tmp);
    debug_kill("closed", sh->rank, nth);
    if (rename(tmp, path) != 0) {
        int rc = kd_error_errno(err, errno, "cannot rename %s to %s", tmp, path);
        unlink(tmp);
        return rc;
    }
    kd_fsync_dir(sh->dir, NULL);
    debug_kill("renamed", sh->rank, nth);
    if (size > 0 && need > 0) {
        double r = (double)size / (double)need;
        sh->bytes_ratio = r < 0.01 ? 0.01 : r > 2 ? 2 : r;
    }
    sh->sealed += bt->samples;
    sh->sealed_tokens += bt->tokens;
    sh->last_seq = seq;
    /* the journal records what is sealed, for people and for `generate --merge`'s completeness check */
    return journal_write(sh->journal, sh->sealed, sh->sealed_tokens, seq, err);
}

/* Background only: add a sealed batch to the next base, which starts as a copy of what the rank had
 * sealed before this writer. Running out of room is not an error: the base is given up and close
 * compacts (or leaves the segments) instead. Runs after seal_batch, so the batch may be modified. */
static void fold_batch(kd_shard *sh, batch *bt, int64_t seq) {
    if (sh->app_state < 0) return;
    kd_error e;
    kd_error_clear(&e);
    int rc = KD_OK;
    long long avail = free_bytes(sh->dir);
    if (avail >= 0 && avail < (long long)(batch_bytes(bt) * 2) + (64 << 20)) {
        KD_WARN("%s: little free space (%lld KiB): shard %d's segments will be merged at the end, if there is room then",
                sh->dir, avail / 1024, sh->rank);
        if (sh->app_state > 0) app_abort(&sh->app);
        sh->app_state = -1;
        return;
    }
    if (sh->app_state == 0) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp.%d", sh->base, (int)getpid());
        rc = app_open(&sh->app, tmp, &sh->info, &e);
        if (!rc) {
            sh->app_state = 1;
            /* what this rank sealed before this writer: its base and segments before `seq` */
            dir_entry *es = NULL;
            size_t n = 0;
            if ((rc = list_dir(sh->dir, &es, &n, &e)) == KD_OK) {
                int hb = 0;
                for (size_t i = 0; i < n && !rc; i++)
                    if (es[i].rank == sh->rank && es[i].kind == F_BASE) {
                        hb = 1;
                        rc = app_add_file(&sh->app, sh->base, &e);
                    }
                int64_t through = 0;
                if (hb) {
                    int64_t t = 0;
                    if (file_attr_int(sh->base, "segments_through", &t) == 1) through = t;
                }
                for (size_t i = 0; i < n && !rc; i++) {
                    if (es[i].rank != sh->rank || es[i].kind != F_SEG || es[i].seq >= seq || es[i].seq <= through) continue;
                    char path[4400];
                    kd_path_join(path, sizeof path, sh->dir, es[i].name);
                    rc = app_add_file(&sh->app, path, &e);
                }
            }
            free(es);
        }
    }
    for (int c = 0; c < NCOL && !rc; c++) {
        const col_def *cd = &COLS[c];
        size_t row = TYPE_SIZE[cd->type] * (cd->wide ? (size_t)sh->topk : 1);
        rc = app_add(&sh->app, c, bt->col[c].p, bt->col[c].len / row, &e);
    }
    sh->app.nparts++;
    if (!rc) {
        /* written back as it goes (here, beside the pipeline), so the fsync at close has little
         * left to do */
        H5Fflush(sh->app.f, H5F_SCOPE_LOCAL);
        void *fd = NULL;
        if (H5Fget_vfd_handle(sh->app.f, H5P_DEFAULT, &fd) >= 0 && fd) fdatasync(*(int *)fd);
        sh->app_through = seq;
        return;
    }
    KD_WARN("%s; shard %d's segments will be merged at the end instead", e.msg, sh->rank);
    if (sh->app_state > 0) app_abort(&sh->app);
    sh->app_state = -1;
}

static void *writer_main(void *arg) {
    kd_shard *sh = arg;
    pthread_mutex_lock(&sh->mu);
    for (;;) {
        while (sh->job == 0) pthread_cond_wait(&sh->cv, &sh->mu);
        if (sh->job == 2) break;
        pthread_mutex_unlock(&sh->mu);
        double t0 = kd_now_s();
        kd_error e;
        kd_error_clear(&e);
        int rc = seal_batch(sh, &sh->flight, sh->flight_seq, sh->flight_nth, &e);
        if (rc == KD_OK) fold_batch(sh, &sh->flight, sh->flight_seq);
        for (int i = 0; i < NCOL; i++) sh->flight.col[i].len = 0;
        sh->flight.samples = sh->flight.tokens = 0;
        double dt = kd_now_s() - t0;
        pthread_mutex_lock(&sh->mu);
        sh->bg_seconds += dt;
        if (rc && !sh->bg_rc) {
            sh->bg_rc = rc;
            sh->bg_err = e;
        }
        sh->job = 0;
        sh->busy = 0;
        pthread_cond_broadcast(&sh->cv);
    }
    pthread_mutex_unlock(&sh->mu);
    return NULL;
}

/* Wait until the writer thread is idle; its first error, if any. */
static int bg_wait(kd_shard *sh, kd_error *err) {
    if (!sh->bg) return KD_OK;
    pthread_mutex_lock(&sh->mu);
    while (sh->busy) pthread_cond_wait(&sh->cv, &sh->mu);
    int rc = sh->bg_rc;
    if (rc && err) *err = sh->bg_err;
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

int kd_shard_background(kd_shard *sh, kd_error *err) {
    if (sh->bg) return KD_OK;
    pthread_mutex_init(&sh->mu, NULL);
    pthread_cond_init(&sh->cv, NULL);
    if (pthread_create(&sh->thread, NULL, writer_main, sh) != 0) {
        pthread_mutex_destroy(&sh->mu);
        pthread_cond_destroy(&sh->cv);
        return kd_error_set(err, KD_ERR_IO, "%s: cannot start the shard writer thread", sh->base);
    }
    sh->bg = 1;
    return KD_OK;
}

static void bg_stop(kd_shard *sh) {
    if (!sh->bg) return;
    pthread_mutex_lock(&sh->mu);
    while (sh->busy) pthread_cond_wait(&sh->cv, &sh->mu);
    sh->job = 2;
    pthread_cond_broadcast(&sh->cv);
    pthread_mutex_unlock(&sh->mu);
    pthread_join(sh->thread, NULL);
    pthread_mutex_destroy(&sh->mu);
    pthread_cond_destroy(&sh->cv);
    sh->bg = 0;
}

/* Seal the pending batch: in the background (handed to the writer thread once it is idle) or here.
 * `wait`: return only when it is sealed. */
static int seal_pending(kd_shard *sh, int wait, kd_error *err) {
    int rc = bg_wait(sh, err);
    if (rc || sh->pending.samples == 0) return rc;
    /* A failed seal costs nothing sealed, but say a full disk before writing when possible: twice the
     * expected size (from the last seal's compression) plus 256 KiB must be free. */
    size_t need = batch_bytes(&sh->pending);
    double ratio = sh->bytes_ratio > 0 ? sh->bytes_ratio : 0.25;
    long long want = (long long)((double)need * ratio * 2) + (256 << 10), avail = free_bytes(sh->dir);
    if (avail >= 0 && avail < want)
        return kd_error_set(err, KD_ERR_NOSPACE,
                            "%s: the disk is full (%lld KiB free, sealing the next %lld samples needs about %lld KiB); "
                            "nothing was written and the %lld samples sealed before are safe: free some space and "
                            "rerun the same command to resume",
                            sh->base, avail / 1024, (long long)sh->pending.samples, want / 1024, (long long)sh->sealed);
    int64_t seq = sh->next_seq++;
    int64_t nth = ++sh->seals;
    if (!sh->bg) {
        rc = seal_batch(sh, &sh->pending, seq, nth, err);
    } else {
        /* swap the buffers: the thread seals what was pending, appends go on into the emptied ones */
        pthread_mutex_lock(&sh->mu);
        batch t = sh->flight;
        sh->flight = sh->pending;
        sh->pending = t;
        sh->flight_seq = seq;
        sh->flight_nth = nth;
        sh->job = 1;
        sh->busy = 1;
        pthread_cond_broadcast(&sh->cv);
        pthread_mutex_unlock(&sh->mu);
        if (wait) rc = bg_wait(sh, err);
    }
    for (int i = 0; i < NCOL; i++) {
        sh->pending.col[i].len = 0;
        sh->total[i] = 0;
    }
    sh->pending.samples = sh->pending.tokens = 0;
    return rc;
}

int kd_shard_seal(kd_shard *sh, kd_error *err) { return seal_pending(sh, 1, err); }

int64_t kd_shard_sealed(const kd_shard *sh) { return sh->sealed; }
int64_t kd_shard_buffered(const kd_shard *sh) { return sh->pending.samples; }
const int64_t *kd_shard_done_ids(kd_shard *sh, size_t *n) {
    /* read from the sealed files on request (a writer keeps no per-sample state, so its memory does
     * not grow with the samples it writes) */
    *n = 0;
    free(sh->done);
    sh->done = NULL;
    if (bg_wait(sh, NULL)) return NULL;
    dir_entry *es = NULL;
    size_t ne = 0;
    if (list_dir(sh->dir, &es, &ne, NULL)) return NULL;
    int64_t through = 0, t = 0;
    if (kd_path_exists(sh->base) && file_attr_int(sh->base, "segments_through", &t) == 1) through = t;
    size_t cap = (size_t)sh->sealed + 1;
    sh->done = kd_calloc(cap, sizeof(int64_t));
    for (size_t i = 0; sh->done && i < ne; i++) {
        if (es[i].rank != sh->rank || !(es[i].kind == F_BASE || (es[i].kind == F_SEG && es[i].seq > through))) continue;
        char path[4400];
        kd_path_join(path, sizeof path, sh->dir, es[i].name);
        int64_t s = 0, tk = 0;
        if (file_check(path, -1, -1, &s, &tk, NULL) || *n + (size_t)s > cap || read_prompt_ids(path, s, sh->done + *n, NULL)) continue;
        *n += (size_t)s;
    }
    free(es);
    if (sh->done) qsort(sh->done, *n, sizeof(int64_t), cmp_i64);
    return sh->done;
}
double kd_shard_background_seconds(const kd_shard *sh) {
    if (!sh->bg) return sh->bg_seconds;
    kd_shard *m = (kd_shard *)sh; /* the lock, not the value, is mutated */
    pthread_mutex_lock(&m->mu);
    double s = m->bg_seconds;
    pthread_mutex_unlock(&m->mu);
    return s;
}

int kd_shard_compact(const char *dir, int rank, kd_error *err) {
    dir_entry *es = NULL;
    size_t n = 0;
    rank_state st;
    memset(&st, 0, sizeof st);
    int rc = list_dir(dir, &es, &n, err);
    if (!rc) rc = rank_recover(dir, rank, es, n, &st, err);
    free(es);
    if (!rc) rc = rank_compact(dir, &st, 1, err);
    rank_state_free(&st);
    return rc;
}

int kd_shard_close(kd_shard *sh, kd_error *err) {
    if (!sh) return KD_OK;
    int rc = seal_pending(sh, 1, err);
    bg_stop(sh);
    if (!rc && sh->app_state > 0 && sh->app_through == sh->last_seq) {
        /* the next base already holds everything: finish it and put it in place */
        rc = app_finish(&sh->app, sh->app_through, err);
        sh->app_state = 0;
        if (!rc) rc = compaction_commit(sh->dir, sh->rank, sh->app.tmp, sh->app_through, sh->sealed, sh->sealed_tokens, 1, err);
    } else {
        if (sh->app_state > 0) app_abort(&sh->app);
        sh->app_state = 0;
        if (!rc) rc = kd_shard_compact(sh->dir, sh->rank, err);
    }
    shard_free(sh);
    return rc;
}

void kd_shard_abandon(kd_shard *sh) {
    if (!sh) return;
    bg_stop(sh);
    if (sh->app_state > 0) app_abort(&sh->app);
    shard_free(sh);
}

/* ---- finalize ------------------------------------------------------------------------------------ */

int kd_dataset_finalize(const char *dir, int64_t *samples_out, kd_error *err) {
    uint8_t *bits = NULL;
    int64_t nbits = 0, ndone = 0;
    /* Recovery also proves there are no duplicates (1 bit per prompt id). */
    if (kd_dataset_recover_done(dir, &bits, &nbits, &ndone, err)) return err->code;
    free(bits);
    /* Every rank's segments folded into its base shard, which dataset.h5 then maps. */
    rank_state *st;
    int ns;
    if (recover_all(dir, 1, &st, &ns, err)) return err->code;
    struct shard_entry {
        int64_t samples;
        const char *h5;
    } *es = kd_calloc((size_t)ns + 1, sizeof *es);
    int ne = 0;
    int nfiles = 0;
    for (int i = 0; i < ns; i++) nfiles += st[i].nfiles;
    es = kd_reallocarray(es, (size_t)nfiles + 1, sizeof *es);
    /* normally one base per rank; a rank whose compaction had no room adds its segments, in order */
    for (int i = 0; es && i < ns; i++)
        for (int f = 0; f < st[i].nfiles; f++)
            if (st[i].samples[f] > 0) {
                es[ne].h5 = st[i].path[f];
                es[ne++].samples = st[i].samples[f];
            }
    char meta[4096];
    snprintf(meta, sizeof meta, "%s/meta.json", dir);
    kd_dataset_info info;
    kd_dataset_info_init(&info);
    char *yaml = NULL;
    int rc = KD_OK;
    hid_t out = -1;
    hid_t *src = kd_calloc((size_t)ne + 1, sizeof(hid_t));
    int64_t(*ends)[NCOL] = kd_calloc((size_t)ne + 1, sizeof *ends);
    if (!es || !src || !ends) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < ne; i++) src[i] = -1;
    /* Attributes come from the first shard (all shards agree: they were checked against meta.json). */
    for (int i = 0; i < ne; i++) {
        src[i] = H5Fopen(es[i].h5, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (src[i] < 0) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot be opened as HDF5", es[i].h5);
            goto done;
        }
        kd_dataset_info si;
        char *y = NULL;
        if (read_info_attrs(src[i], es[i].h5, &si, &y, NULL, err)) {
            free(y);
            rc = err->code;
            goto done;
        }
        if (i == 0) {
            info = si;
            yaml = y;
        } else {
            free(y);
            if (info_compare(&si, &info, es[i].h5, err)) {
                rc = err->code;
                goto done;
            }
        }
        for (int c = 0; c < NCOL; c++) {
            if (COLS[c].kind != COL_OFFSETS) continue;
            hid_t d = H5Dopen2(src[i], COLS[c].path, H5P_DEFAULT);
            int r = d < 0 ? -1 : dset_read_rows(d, &COLS[c], 1, (hsize_t)es[i].samples, 1, &ends[i][c]);
            if (d >= 0) H5Dclose(d);
            if (r < 0) {
                rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot read %s", es[i].h5, COLS[c].path);
                goto done;
            }
        }
    }
    if (ne == 0) {
        /* No shards: take the info from meta.json so an empty dataset still says what it is. */
        json_t *m = json_load_file(meta, 0, NULL);
        if (m) {
            info.topk = (int)json_integer_value(json_object_get(m, "topk"));
            if (info.topk < 1) info.topk = 1;
            info.process_supervision = json_is_true(json_object_get(m, "process_supervision"));
            snprintf(info.tokenizer_sha256, 65, "%s", json_string_value(json_object_get(m, "tokenizer_sha256")) ?: "");
            snprintf(info.registry_sha256, 65, "%s", json_string_value(json_object_get(m, "registry_sha256")) ?: "");
            snprintf(info.config_sha256, 65, "%s", json_string_value(json_object_get(m, "config_sha256")) ?: "");
            json_decref(m);
        }
    }
    info.config_yaml = yaml;
    int k = info.topk;
    char tmp[4200], final_path[4200];
    snprintf(final_path, sizeof final_path, "%s/dataset.h5", dir);
    snprintf(tmp, sizeof tmp, "%s/dataset.h5.tmp.%d", dir, (int)getpid());
    hid_t fapl = fapl_latest();
    out = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (out < 0) {
        rc = kd_error_set(err, KD_ERR_IO, "%s: cannot create", tmp);
        goto done;
    }
    for (int g = 0; g < 4; g++) H5Gclose(H5Gcreate2(out, GROUPS[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    int64_t total_samples = 0;
    for (int i = 0; i < ne; i++) total_samples += es[i].samples;
    if (write_info_attrs(out, &info) || attr_write_int(out, "num_shards", ne) ||
        attr_write_int(out, "num_samples", total_samples)) {
        rc = kd_error_set(err, KD_ERR_IO, "%s: cannot write attributes", tmp);
        goto done;
    }
    for (int c = 0; c < NCOL; c++) {
        const col_def *cd = &COLS[c];
        int rank = cd->wide ? 2 : 1;
        if (cd->kind == COL_OFFSETS) {
            /* Offsets are global: each shard's are shifted by what the shards before it hold. Copied
             * in blocks, so finalize's memory does not grow with the samples. */
            hid_t d = create_column(out, cd, k, info.deflate_level ? info.deflate_level : 1, (hsize_t)total_samples + 1, 0);
            if (d < 0) {
                rc = kd_error_set(err, KD_ERR_IO, "%s: cannot create %s", tmp, cd->path);
                goto done;
            }
            const hsize_t block = 1 << 16;
            int64_t *vals = kd_calloc(block, sizeof(int64_t));
            int64_t at = 0, base = 0;
            if (!vals) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
            if (!rc && total_samples == 0) {
                hid_t ms = H5Screate_simple(1, (hsize_t[]){1}, NULL);
                if (H5Dwrite(d, H5T_NATIVE_INT64, ms, H5S_ALL, H5P_DEFAULT, vals) < 0)
                    rc = kd_error_set(err, KD_ERR_IO, "%s: cannot write %s", tmp, cd->path);
                H5Sclose(ms);
            }
            for (int i = 0; i < ne && rc == KD_OK; i++) {
                hid_t sd = H5Dopen2(src[i], cd->path, H5P_DEFAULT);
                /* rows 0..samples of this shard; all but the first shard's leading 0 are already there */
                for (hsize_t r = i == 0 ? 0 : 1; sd >= 0 && rc == KD_OK && r <= (hsize_t)es[i].samples; r += block) {
                    hsize_t n = (hsize_t)es[i].samples + 1 - r < block ? (hsize_t)es[i].samples + 1 - r : block;
                    if (dset_read_rows(sd, cd, 1, r, n, vals) < 0) {
                        rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot read %s", es[i].h5, cd->path);
                        break;
                    }
                    for (hsize_t j = 0; j < n; j++) vals[j] += base;
                    hid_t fs = H5Dget_space(d);
                    hsize_t start = (hsize_t)at + r;
                    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &n, NULL);
                    hid_t ms = H5Screate_simple(1, &n, NULL);
                    if (H5Dwrite(d, H5T_NATIVE_INT64, ms, fs, H5P_DEFAULT, vals) < 0)
                        rc = kd_error_set(err, KD_ERR_IO, "%s: cannot write %s", tmp, cd->path);
                    H5Sclose(ms);
                    H5Sclose(fs);
                    if (r + n == (hsize_t)es[i].samples + 1) base = vals[n - 1];
                }
                if (sd < 0) rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot read %s", es[i].h5, cd->path);
                if (sd >= 0) H5Dclose(sd);
                at += es[i].samples;
            }
            H5Dclose(d);
            free(vals);
            if (rc) goto done;
            continue;
        }
        int64_t total = 0;
        int64_t *len = kd_calloc((size_t)ne + 1, sizeof(int64_t));
        if (!len) {
            rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (int i = 0; i < ne; i++) {
            len[i] = cd->kind == COL_SAMPLE ? es[i].samples
                     : cd->kind == COL_TOKEN ? ends[i][C_OFFSETS]
                                             : ends[i][cd->bytes_of];
            total += len[i];
        }
        hid_t d;
        if (total == 0) {
            d = create_column(out, cd, k, 1, 0, 0);
        } else {
            hsize_t dims[2] = {(hsize_t)total, (hsize_t)k};
            hid_t vs = H5Screate_simple(rank, dims, NULL);
            hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
            int64_t at = 0;
            for (int i = 0; i < ne; i++) {
                if (len[i] == 0) continue;
                hsize_t start[2] = {(hsize_t)at, 0}, count[2] = {(hsize_t)len[i], (hsize_t)k};
                H5Sselect_hyperslab(vs, H5S_SELECT_SET, start, NULL, count, NULL);
                /* The source file name is relative: HDF5 looks for it next to dataset.h5, so the folder
                 * can be moved as a whole. */
                hsize_t sdims[2] = {(hsize_t)len[i], (hsize_t)k};
                hid_t ss = H5Screate_simple(rank, sdims, NULL);
                const char *base = strrchr(es[i].h5, '/');
                H5Pset_virtual(dcpl, vs, base ? base + 1 : es[i].h5, cd->path, ss);
                H5Sclose(ss);
                at += len[i];
            }
            H5Sselect_all(vs);
            d = H5Dcreate2(out, cd->path, file_type(cd->type), vs, H5P_DEFAULT, dcpl, H5P_DEFAULT);
            H5Pclose(dcpl);
            H5Sclose(vs);
        }
        free(len);
        if (d < 0) {
            rc = kd_error_set(err, KD_ERR_IO, "%s: cannot create virtual dataset %s", tmp, cd->path);
            goto done;
        }
        H5Dclose(d);
    }
    if (H5Fclose(out) < 0) {
        out = -1;
        rc = kd_error_set(err, KD_ERR_IO, "%s: cannot close", tmp);
        goto done;
    }
    out = -1;
    if (rename(tmp, final_path) != 0) {
        rc = kd_error_errno(err, errno, "cannot rename %s to %s", tmp, final_path);
        goto done;
    }
    kd_fsync_dir(dir, NULL);
    if (samples_out) *samples_out = total_samples;
done:
    if (out >= 0) {
        H5Fclose(out);
        unlink(tmp);
    }
    for (int i = 0; src && i < ne; i++)
        if (src[i] >= 0) H5Fclose(src[i]);
    free(src);
    free(ends);
    free(es);
    free_states(st, ns);
    free(yaml);
    return rc;
}

/* ---- reader -------------------------------------------------------------------------------------- */

struct kd_dataset {
    char path[4096];
    hid_t file;
    hid_t d[NCOL];
    kd_dataset_info info;
    char *yaml, *version;
    int64_t count, tokens;
    int64_t *offsets; /* [count+1], kept: every batch read needs them */
};

void kd_dataset_close(kd_dataset *ds) {
    if (!ds) return;
    for (int i = 0; i < NCOL; i++)
        if (ds->d[i] >= 0) H5Dclose(ds->d[i]);
    if (ds->file >= 0) H5Fclose(ds->file);
    free(ds->yaml);
    free(ds->version);
    free(ds->offsets);
    free(ds);
}

int kd_dataset_open(kd_dataset **out, const char *path, kd_error *err) {
    *out = NULL;
    quiet_hdf5();
    kd_dataset *ds = kd_calloc(1, sizeof *ds);
    if (!ds) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    ds->file = -1;
    for (int i = 0; i < NCOL; i++) ds->d[i] = -1;
    if (kd_is_dir(path))
        snprintf(ds->path, sizeof ds->path, "%s/dataset.h5", path);
    else
        snprintf(ds->path, sizeof ds->path, "%s", path);
    int rc = KD_OK;
    if (!kd_path_exists(ds->path)) {
        rc = kd_is_dir(path) ? kd_error_set(err, KD_ERR_NOTFOUND,
                                            "%s: no dataset.h5 in this folder; finish or resume the generate run "
                                            "(it writes dataset.h5 at the end)",
                                            path)
                             : kd_error_set(err, KD_ERR_NOTFOUND, "%s: no such dataset file", path);
        goto fail;
    }
    if (H5Fis_hdf5(ds->path) <= 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: not an HDF5 file", ds->path);
        goto fail;
    }
    ds->file = H5Fopen(ds->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (ds->file < 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot be opened as HDF5", ds->path);
        goto fail;
    }
    if ((rc = read_info_attrs(ds->file, ds->path, &ds->info, &ds->yaml, &ds->version, err))) goto fail;
    ds->info.config_yaml = ds->yaml;
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", ds->path);
    char *slash = strrchr(dirbuf, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dirbuf, sizeof dirbuf, ".");
    for (int i = 0; i < NCOL; i++) {
        ds->d[i] = H5Dopen2(ds->file, COLS[i].path, H5P_DEFAULT);
        if (ds->d[i] < 0) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: dataset %s missing; not a kdstep dataset or a damaged file",
                              ds->path, COLS[i].path);
            goto fail;
        }
        /* A missing virtual source reads as fill values without an error; refuse it here instead. */
        hid_t dcpl = H5Dget_create_plist(ds->d[i]);
        if (H5Pget_layout(dcpl) == H5D_VIRTUAL) {
            size_t nmap = 0;
            H5Pget_virtual_count(dcpl, &nmap);
            for (size_t m = 0; m < nmap && rc == KD_OK; m++) {
                char name[4096];
                H5Pget_virtual_filename(dcpl, m, name, sizeof name);
                if (strcmp(name, ".") == 0) continue;
                char full[8200];
                if (name[0] == '/')
                    snprintf(full, sizeof full, "%s", name);
                else
                    snprintf(full, sizeof full, "%s/%s", dirbuf, name);
                if (!kd_path_exists(full))
                    rc = kd_error_set(err, KD_ERR_NOTFOUND,
                                      "%s: shard %s is missing (needed by %s); copy the whole dataset folder", ds->path,
                                      full, COLS[i].path);
            }
        }
        H5Pclose(dcpl);
        if (rc) goto fail;
    }
    hsize_t n_off = dset_len(ds->d[C_OFFSETS]);
    if (n_off < 1) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: /samples/offsets is empty (it holds N+1 entries)", ds->path);
        goto fail;
    }
    ds->count = (int64_t)n_off - 1;
    ds->offsets = kd_calloc(n_off, sizeof(int64_t));
    if (!ds->offsets || dset_read_rows(ds->d[C_OFFSETS], &COLS[C_OFFSETS], 1, 0, n_off, ds->offsets) < 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot read /samples/offsets", ds->path);
        goto fail;
    }
    if (ds->offsets[0] != 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: /samples/offsets[0] is %lld, expected 0", ds->path,
                          (long long)ds->offsets[0]);
        goto fail;
    }
    for (int64_t i = 0; i < ds->count; i++)
        if (ds->offsets[i + 1] < ds->offsets[i]) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: /samples/offsets decreases at sample %lld (%lld -> %lld)",
                              ds->path, (long long)i, (long long)ds->offsets[i], (long long)ds->offsets[i + 1]);
            goto fail;
        }
    ds->tokens = ds->offsets[ds->count];
    for (int i = 0; i < NCOL; i++) {
        hsize_t want = COLS[i].kind == COL_SAMPLE    ? (hsize_t)ds->count
                       : COLS[i].kind == COL_OFFSETS ? (hsize_t)ds->count + 1
                       : COLS[i].kind == COL_TOKEN   ? (hsize_t)ds->tokens
                                                     : 0;
        hsize_t have = dset_len(ds->d[i]);
        if (COLS[i].kind == COL_BYTES) continue;
        if (have != want) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: %s has %llu rows, expected %llu from /samples/offsets",
                              ds->path, COLS[i].path, (unsigned long long)have, (unsigned long long)want);
            goto fail;
        }
    }
    *out = ds;
    return KD_OK;
fail:
    kd_dataset_close(ds);
    return rc;
}

int64_t kd_dataset_count(const kd_dataset *ds) { return ds->count; }
int64_t kd_dataset_tokens(const kd_dataset *ds) { return ds->tokens; }
const kd_dataset_info *kd_dataset_get_info(const kd_dataset *ds) { return &ds->info; }
const char *kd_dataset_path(const kd_dataset *ds) { return ds->path; }
const char *kd_dataset_kdstep_version(const kd_dataset *ds) { return ds->version ? ds->version : ""; }

void kd_batch_free(kd_batch *b) {
    free(b->offsets);
    free(b->prompt_id);
    free(b->prompt_len);
    free(b->input_ids);
    free(b->loss_mask);
    free(b->tool_name_mask);
    free(b->json_mask);
    free(b->integration_mask);
    free(b->topk_ids);
    free(b->topk_logprobs);
    free(b->tail_logprob);
    char **texts[4] = {b->prompt_key, b->prompt_text, b->teacher_text, b->metadata};
    for (int t = 0; t < 4; t++) {
        for (int64_t i = 0; texts[t] && i < b->count; i++) free(texts[t][i]);
        free(texts[t]);
    }
    memset(b, 0, sizeof *b);
}

static int read_texts(kd_dataset *ds, int off_col, int64_t first, int64_t count, char ***out, kd_error *err) {
    int64_t *off = kd_calloc((size_t)count + 1, sizeof(int64_t));
    char **strs = kd_calloc((size_t)count + 1, sizeof(char *));
    uint8_t *bytes = NULL;
    int rc = KD_OK;
    if (!off || !strs) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (dset_read_rows(ds->d[off_col], &COLS[off_col], 1, (hsize_t)first, (hsize_t)count + 1, off) < 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot read %s", ds->path, COLS[off_col].path);
        goto out;
    }
    int bc = COLS[off_col].bytes_of;
    /* a negative first offset would size the read by garbage (fuzz_h5data: a 2^52-byte malloc) */
    if (off[0] < 0 || off[0] > (int64_t)dset_len(ds->d[bc])) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: %s[%lld] = %lld is outside %s", ds->path, COLS[off_col].path,
                          (long long)first, (long long)off[0], COLS[bc].path);
        goto out;
    }
    for (int64_t i = 0; i < count; i++)
        if (off[i + 1] < off[i] || off[i + 1] > (int64_t)dset_len(ds->d[bc])) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: %s is not monotone within %s at sample %lld", ds->path,
                              COLS[off_col].path, COLS[bc].path, (long long)(first + i));
            goto out;
        }
    bytes = malloc((size_t)(off[count] - off[0]) + 1);
    if (!bytes) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (dset_read_rows(ds->d[bc], &COLS[bc], 1, (hsize_t)off[0], (hsize_t)(off[count] - off[0]), bytes) < 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot read %s", ds->path, COLS[bc].path);
        goto out;
    }
    for (int64_t i = 0; i < count; i++) {
        strs[i] = kd_strndup((const char *)bytes + (off[i] - off[0]), (size_t)(off[i + 1] - off[i]));
        if (!strs[i]) {
            rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
out:
    if (rc) {
        for (int64_t i = 0; strs && i < count; i++) free(strs[i]);
        free(strs);
        strs = NULL;
    }
    *out = strs;
    free(off);
    free(bytes);
    return rc;
}

int kd_dataset_read(kd_dataset *ds, int64_t first, int64_t count, int flags, kd_batch *b, kd_error *err) {
    memset(b, 0, sizeof *b);
    if (first < 0 || count < 0 || first + count > ds->count)
        return kd_error_set(err, KD_ERR_INVALID, "%s: samples [%lld, %lld) outside the %lld samples", ds->path,
                            (long long)first, (long long)(first + count), (long long)ds->count);
    int k = ds->info.topk;
    int64_t t0 = ds->offsets[first], t1 = ds->offsets[first + count], T = t1 - t0;
    b->first = first;
    b->count = count;
    b->topk = k;
    b->offsets = kd_calloc((size_t)count + 1, sizeof(int64_t));
    b->prompt_id = kd_calloc((size_t)count + 1, sizeof(int64_t));
    b->prompt_len = kd_calloc((size_t)count + 1, sizeof(int64_t));
    b->input_ids = kd_calloc((size_t)T + 1, 4);
    b->loss_mask = kd_calloc((size_t)T + 1, 1);
    b->tool_name_mask = kd_calloc((size_t)T + 1, 1);
    b->json_mask = kd_calloc((size_t)T + 1, 1);
    b->integration_mask = kd_calloc((size_t)T + 1, 1);
    b->topk_ids = kd_calloc((size_t)T * (size_t)k + 1, 4);
    b->topk_logprobs = kd_calloc((size_t)T * (size_t)k + 1, 4);
    b->tail_logprob = kd_calloc((size_t)T + 1, 4);
    if (!b->offsets || !b->prompt_id || !b->prompt_len || !b->input_ids || !b->loss_mask || !b->tool_name_mask ||
        !b->json_mask || !b->integration_mask || !b->topk_ids || !b->topk_logprobs || !b->tail_logprob) {
        kd_batch_free(b);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory reading %lld tokens from %s", (long long)T, ds->path);
    }
    for (int64_t i = 0; i <= count; i++) b->offsets[i] = ds->offsets[first + i] - t0;
    struct {
        int col;
        void *dst;
        int64_t first, n;
    } reads[] = {{C_PROMPT_ID, b->prompt_id, first, count},      {C_PROMPT_LEN, b->prompt_len, first, count},
                 {C_INPUT_IDS, b->input_ids, t0, T},              {C_LOSS, b->loss_mask, t0, T},
                 {C_TOOL, b->tool_name_mask, t0, T},              {C_JSON, b->json_mask, t0, T},
                 {C_INTEG, b->integration_mask, t0, T},           {C_TOPK_IDS, b->topk_ids, t0, T},
                 {C_TOPK_LP, b->topk_logprobs, t0, T},            {C_TAIL, b->tail_logprob, t0, T}};
    for (size_t r = 0; r < sizeof reads / sizeof reads[0]; r++) {
        if (dset_read_rows(ds->d[reads[r].col], &COLS[reads[r].col], k, (hsize_t)reads[r].first,
                           (hsize_t)reads[r].n, reads[r].dst) < 0) {
            kd_batch_free(b);
            return kd_error_set(err, KD_ERR_INVALID, "%s: cannot read %s rows %lld..%lld (damaged file or missing shard?)",
                                ds->path, COLS[reads[r].col].path, (long long)reads[r].first,
                                (long long)(reads[r].first + reads[r].n));
        }
    }
    const uint8_t *masks[4] = {b->loss_mask, b->tool_name_mask, b->json_mask, b->integration_mask};
    static const char *names[4] = {"loss_mask", "tool_name_mask", "json_mask", "integration_mask"};
    for (int64_t i = 0; i < count; i++) {
        int64_t n = b->offsets[i + 1] - b->offsets[i];
        if (b->prompt_len[i] < 0 || b->prompt_len[i] > n) {
            int64_t pl = b->prompt_len[i];
            kd_batch_free(b);
            return kd_error_set(err, KD_ERR_INVALID, "%s: sample %lld: prompt_len %lld outside 0..%lld tokens",
                                ds->path, (long long)(first + i), (long long)pl, (long long)n);
        }
        for (int64_t t = b->offsets[i]; t < b->offsets[i + 1]; t++)
            for (int m = 0; m < 4; m++) {
                if (masks[m][t] > 1 || (m > 0 && masks[m][t] && !masks[0][t])) {
                    int v = masks[m][t];
                    int64_t tok = t - b->offsets[i];
                    kd_batch_free(b);
                    return kd_error_set(err, KD_ERR_INVALID, "%s: sample %lld token %lld: %s = %d %s", ds->path,
                                        (long long)(first + i), (long long)tok, names[m], v,
                                        v > 1 ? "(masks hold 0 or 1)" : "outside loss_mask");
                }
            }
    }
    if (flags & KD_READ_TEXT) {
        int cols[4] = {C_KEY_OFF, C_PROMPT_OFF, C_TEACHER_OFF, C_META_OFF};
        char ***dst[4] = {&b->prompt_key, &b->prompt_text, &b->teacher_text, &b->metadata};
        for (int t = 0; t < 4; t++)
            if (read_texts(ds, cols[t], first, count, dst[t], err)) {
                int rc = err->code;
                kd_batch_free(b);
                return rc;
            }
    }
    return KD_OK;
}

void kd_batch_sample(const kd_batch *b, int64_t i, kd_sample *v) {
    memset(v, 0, sizeof *v);
    int64_t a = b->offsets[i];
    v->prompt_id = b->prompt_id[i];
    v->prompt_len = b->prompt_len[i];
    v->n = b->offsets[i + 1] - a;
    v->input_ids = b->input_ids + a;
    v->loss_mask = b->loss_mask + a;
    v->tool_name_mask = b->tool_name_mask + a;
    v->json_mask = b->json_mask + a;
    v->integration_mask = b->integration_mask + a;
    v->topk_ids = b->topk_ids + a * b->topk;
    v->topk_logprobs = b->topk_logprobs + a * b->topk;
    v->tail_logprob = b->tail_logprob + a;
    if (b->prompt_key) v->prompt_key = b->prompt_key[i];
    if (b->prompt_text) v->prompt_text = b->prompt_text[i];
    if (b->teacher_text) v->teacher_text = b->teacher_text[i];
    if (b->metadata) v->metadata = b->metadata[i];
}
