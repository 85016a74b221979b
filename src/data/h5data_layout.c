/* HDF5 dataset layout: the arrays (COLS), attributes, meta.json, shard file names, the journal and the
 * low-level dataset helpers every stage shares. The stages: h5data_recover.c (shard recovery and
 * compaction), h5data_writer.c (kd_shard), h5data_finalize.c (dataset.h5), h5data_reader.c
 * (kd_dataset). See include/kdstep/h5data.h; shared internals in h5data_internal.h. */
#include <hdf5.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5data_internal.h"
#include "kdstep/fsutil.h"
#include "kdstep/version.h"

const col_def COLS[NCOL] = {
    {"/samples/prompt_id", COL_SAMPLE, T_INT64, 0, -1},
    {"/samples/prompt_len", COL_SAMPLE, T_INT64, 0, -1},
    {"/samples/offsets", COL_OFFSETS, T_INT64, 0, -1},
    {"/tokens/input_ids", COL_TOKEN, T_INT32, 0, -1},
    {"/tokens/loss_mask", COL_TOKEN, T_UINT8, 0, -1},
    {"/tokens/tool_name_mask", COL_TOKEN, T_UINT8, 0, -1},
    {"/tokens/json_mask", COL_TOKEN, T_UINT8, 0, -1},
    {"/tokens/integration_mask", COL_TOKEN, T_UINT8, 0, -1},
    {"/teacher/topk_ids", COL_TOKEN, T_INT32, 1, -1},
    {"/teacher/topk_logprobs", COL_TOKEN, T_FLOAT, 1, -1},
    {"/teacher/tail_logprob", COL_TOKEN, T_FLOAT, 0, -1},
    {"/text/prompt_key_offsets", COL_OFFSETS, T_INT64, 0, C_KEY},
    {"/text/prompt_key", COL_BYTES, T_UINT8, 0, C_KEY_OFF},
    {"/text/prompt_offsets", COL_OFFSETS, T_INT64, 0, C_PROMPT},
    {"/text/prompt", COL_BYTES, T_UINT8, 0, C_PROMPT_OFF},
    {"/text/teacher_text_offsets", COL_OFFSETS, T_INT64, 0, C_TEACHER},
    {"/text/teacher_text", COL_BYTES, T_UINT8, 0, C_TEACHER_OFF},
    {"/text/metadata_offsets", COL_OFFSETS, T_INT64, 0, C_META},
    {"/text/metadata", COL_BYTES, T_UINT8, 0, C_META_OFF},
    {"/samples/policy", COL_SAMPLE, T_UINT8, 0, -1},
};
const size_t TYPE_SIZE[NTYPE] = {[T_INT64] = 8, [T_INT32] = 4, [T_UINT8] = 1, [T_FLOAT] = 4};
const char *const GROUPS[NGROUP] = {"/samples", "/tokens", "/teacher", "/text"};

hid_t mem_type(enum col_type t) {
    switch (t) {
    case T_INT64: return H5T_NATIVE_INT64;
    case T_INT32: return H5T_NATIVE_INT32;
    case T_UINT8: return H5T_NATIVE_UINT8;
    default: return H5T_NATIVE_FLOAT;
    }
}
hid_t file_type(enum col_type t) {
    switch (t) {
    case T_INT64: return H5T_STD_I64LE;
    case T_INT32: return H5T_STD_I32LE;
    case T_UINT8: return H5T_STD_U8LE;
    default: return H5T_IEEE_F32LE;
    }
}
hsize_t chunk_rows(const col_def *c, int k) {
    switch (c->kind) {
    case COL_SAMPLE:
    case COL_OFFSETS: return 4096;
    case COL_TOKEN: return c->wide ? (hsize_t)(65536 / (k > 0 ? k : 1) + 1) : 65536;
    default: return 65536;
    }
}

void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

void kd_dataset_info_init(kd_dataset_info *info) {
    memset(info, 0, sizeof *info);
    info->topk = 1;
    info->process_supervision = 1;
    info->deflate_level = 1;
    info->compress_token_data = 1;
}

/* ---- attributes --------------------------------------------------------------------------------- */

int attr_write_str(hid_t obj, const char *name, const char *value) {
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
int attr_write_int(hid_t obj, const char *name, int64_t value) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t r = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &value);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return r < 0 ? -1 : 0;
}
/* Returns a malloc'd string or NULL when absent. */
char *attr_read_str(hid_t obj, const char *name) {
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
int attr_read_int(hid_t obj, const char *name, int64_t *v) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    herr_t r = H5Aread(a, H5T_NATIVE_INT64, v);
    H5Aclose(a);
    return r < 0 ? -1 : 0;
}

int write_info_attrs(hid_t f, const kd_dataset_info *info) {
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
int read_info_attrs(hid_t f, const char *path, kd_dataset_info *info, char **yaml, char **version,
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
int info_compare(const kd_dataset_info *stored, const kd_dataset_info *now, const char *what,
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

void base_path(char *out, size_t cap, const char *dir, int rank) {
    snprintf(out, cap, "%s/shard-%05d.h5", dir, rank);
}
void journal_path(char *out, size_t cap, const char *dir, int rank) {
    snprintf(out, cap, "%s/shard-%05d.journal", dir, rank);
}
void seg_path(char *out, size_t cap, const char *dir, int rank, int64_t seq) {
    snprintf(out, cap, "%s/shard-%05d.seg-%08lld.h5", dir, rank, (long long)seq);
}

/* What a file in the dataset folder is: shard-R.h5 (base), shard-R.journal, shard-R.seg-N.h5
 * (segment), a temporary of rank R (*.tmp.<pid>, never read), or anything else (*.corrupt ...). */
int parse_name(const char *name, int *rank, int64_t *seq) {
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

/* KD_OK with j->present 0 when absent; an error when unreadable. */
int journal_read(const char *path, journal *jr, kd_error *err) {
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
int journal_write(const char *path, int64_t samples, int64_t tokens, int64_t last_segment, kd_error *err) {
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
void debug_kill(const char *point, int rank, int64_t nth) {
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

hsize_t dset_len(hid_t d) {
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    return dims[0];
}

/* Read rows [first, first+n) of column c into buf. */
int dset_read_rows(hid_t d, const col_def *c, int k, hsize_t first, hsize_t n, void *buf) {
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
hid_t create_column(hid_t f, const col_def *c, int k, int deflate, hsize_t initial, hsize_t chunk_n) {
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
int column_deflate(const kd_dataset_info *info, int c) {
    int heavy = c == C_INPUT_IDS || c == C_TOPK_IDS || c == C_TOPK_LP || c == C_TAIL;
    return heavy && !info->compress_token_data ? 0 : info->deflate_level;
}

/* Shards keep the default (oldest) file format on purpose: superblock v3 (libver latest) marks a file
 * "open for writing" and refuses to reopen it after a crash until h5clear is run. Only dataset.h5, which
 * is written once and closed, uses the 1.10 format that virtual datasets need. */
hid_t fapl_shard(void) { return H5Pcreate(H5P_FILE_ACCESS); }

hid_t fapl_latest(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    return fapl;
}
