/* HDF5 dataset shards, journal, finalize and reader: see include/kdstep/h5data.h. */
#include "kdstep/h5data.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "kdstep/fsutil.h"
#include "kdstep/log.h"
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

/* ---- journal ------------------------------------------------------------------------------------ */

static void shard_paths(const char *dir, int rank, char *h5, char *journal, size_t cap) {
    snprintf(h5, cap, "%s/shard-%05d.h5", dir, rank);
    snprintf(journal, cap, "%s/shard-%05d.journal", dir, rank);
}

/* Returns 1 and the sealed count when the journal exists, 0 when absent, <0 (err set) when unreadable. */
static int journal_read(const char *path, int64_t *samples, int64_t *tokens, kd_error *err) {
    *samples = 0;
    *tokens = 0;
    if (!kd_path_exists(path)) return 0;
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return -kd_error_set(err, KD_ERR_PARSE, "%s: unreadable journal: %s", path, je.text);
    json_t *s = json_object_get(j, "samples"), *t = json_object_get(j, "tokens");
    if (!json_is_integer(s) || !json_is_integer(t) || json_integer_value(s) < 0) {
        json_decref(j);
        return -kd_error_set(err, KD_ERR_PARSE, "%s: journal lacks integer \"samples\"/\"tokens\"", path);
    }
    *samples = json_integer_value(s);
    *tokens = json_integer_value(t);
    json_decref(j);
    return 1;
}
static int journal_write(const char *path, int64_t samples, int64_t tokens, kd_error *err) {
    char buf[256];
    int n = snprintf(buf, sizeof buf, "{\"samples\": %lld, \"tokens\": %lld}\n", (long long)samples,
                     (long long)tokens);
    return kd_write_file_atomic(path, buf, (size_t)n, err);
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

static hid_t create_column(hid_t f, const col_def *c, int k, int deflate, hsize_t initial) {
    hsize_t dims[2] = {initial, (hsize_t)k}, maxd[2] = {H5S_UNLIMITED, (hsize_t)k};
    hsize_t chunk[2] = {chunk_rows(c, k), (hsize_t)k};
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

/* Cut every column of an open shard to `samples` sealed rows, then read back the last chunk of each
 * column so damage from a crash during a seal shows up now, not in training. */
static int shard_truncate_verify(hid_t f, const char *path, int64_t samples, int64_t jtokens, int k,
                                 kd_error *err) {
    hid_t d[NCOL];
    for (int i = 0; i < NCOL; i++) d[i] = -1;
    int rc = KD_OK;
    int64_t ends[NCOL];
    for (int i = 0; i < NCOL; i++) {
        d[i] = H5Dopen2(f, COLS[i].path, H5P_DEFAULT);
        if (d[i] < 0) {
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: dataset %s missing", path, COLS[i].path);
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
    if (ends[C_OFFSETS] != jtokens) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: %lld tokens in the first %lld samples, the journal says %lld",
                          path, (long long)ends[C_OFFSETS], (long long)samples, (long long)jtokens);
        goto out;
    }
    for (int i = 0; i < NCOL; i++) {
        const col_def *c = &COLS[i];
        hsize_t want = c->kind == COL_SAMPLE ? (hsize_t)samples
                       : c->kind == COL_OFFSETS ? (hsize_t)samples + 1
                       : c->kind == COL_TOKEN   ? (hsize_t)ends[C_OFFSETS]
                                                : (hsize_t)ends[c->bytes_of];
        hsize_t have = dset_len(d[i]);
        if (have < want) {
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
out:
    for (int i = 0; i < NCOL; i++)
        if (d[i] >= 0) H5Dclose(d[i]);
    return rc;
}

/* Bring one shard in line with its journal. Returns the sealed samples (>= 0), with the file gone
 * (moved to .corrupt) when it could not be trusted; < 0 on an error the caller must report. */
static int64_t shard_recover(const char *h5, const char *journal, kd_error *err) {
    int64_t samples = 0, tokens = 0;
    int jr = journal_read(journal, &samples, &tokens, err);
    if (jr < 0) return -1;
    if (!kd_path_exists(h5)) {
        if (jr > 0 && samples > 0)
            return -kd_error_set(err, KD_ERR_NOTFOUND,
                                 "%s: the journal says %lld samples are sealed but the shard file is missing", h5,
                                 (long long)samples);
        return 0;
    }
    quiet_hdf5();
    kd_error why;
    kd_error_clear(&why);
    hid_t fapl = fapl_shard();
    hid_t f = H5Fopen(h5, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    int bad = 0;
    if (f < 0) {
        kd_error_set(&why, KD_ERR_INVALID, "%s: cannot be opened as HDF5", h5);
        bad = 1;
    } else {
        int64_t k = 0;
        if (attr_read_int(f, "topk", &k) < 0 || k < 1) {
            kd_error_set(&why, KD_ERR_INVALID, "%s: no topk attribute", h5);
            bad = 1;
        } else if (shard_truncate_verify(f, h5, samples, tokens, (int)k, &why)) {
            bad = 1;
        }
        if (H5Fclose(f) < 0 && !bad) {
            kd_error_set(&why, KD_ERR_IO, "%s: close failed", h5);
            bad = 1;
        }
    }
    if (!bad) return samples;
    char aside[4200];
    snprintf(aside, sizeof aside, "%s.corrupt", h5);
    KD_WARN("%s; moving it to %s, its %lld sealed samples will be generated again", why.msg, aside,
            (long long)samples);
    if (rename(h5, aside) != 0) return -kd_error_errno(err, errno, "cannot move %s aside", h5);
    if (jr > 0 && unlink(journal) != 0) return -kd_error_errno(err, errno, "cannot remove %s", journal);
    return 0;
}

/* Shard ranks present in dir (by shard-*.h5 or shard-*.journal), sorted. */
static int list_shards(const char *dir, int **ranks, int *n, kd_error *err) {
    *ranks = NULL;
    *n = 0;
    DIR *dp = opendir(dir);
    if (!dp) return kd_error_errno(err, errno, "%s: cannot list the dataset folder", dir);
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(dp))) {
        int r;
        char ext[32];
        if (sscanf(e->d_name, "shard-%d.%31s", &r, ext) != 2) continue;
        if (strcmp(ext, "h5") && strcmp(ext, "journal")) continue;
        int seen = 0;
        for (int i = 0; i < *n; i++) seen |= (*ranks)[i] == r;
        if (seen) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            int *nr = kd_reallocarray(*ranks, (size_t)cap, sizeof(int));
            if (!nr) {
                closedir(dp);
                return kd_error_set(err, KD_ERR_NOMEM, "out of memory listing %s", dir);
            }
            *ranks = nr;
        }
        (*ranks)[(*n)++] = r;
    }
    closedir(dp);
    for (int i = 1; i < *n; i++)
        for (int j = i; j > 0 && (*ranks)[j - 1] > (*ranks)[j]; j--) {
            int t = (*ranks)[j];
            (*ranks)[j] = (*ranks)[j - 1];
            (*ranks)[j - 1] = t;
        }
    return KD_OK;
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

typedef struct shard_entry {
    int rank;
    int64_t samples;
    char h5[4096];
} shard_entry;

/* Recover all shards; entries with samples > 0 are returned. */
static int recover_all(const char *dir, shard_entry **out, int *nout, kd_error *err) {
    *out = NULL;
    *nout = 0;
    int *ranks = NULL, n = 0;
    if (list_shards(dir, &ranks, &n, err)) return err ? err->code : KD_ERR_IO;
    shard_entry *es = kd_calloc((size_t)n + 1, sizeof *es);
    if (!es) {
        free(ranks);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        char journal[4096];
        shard_paths(dir, ranks[i], es[m].h5, journal, sizeof journal);
        int64_t s = shard_recover(es[m].h5, journal, err);
        if (s < 0) {
            free(ranks);
            free(es);
            return err ? err->code : KD_ERR_IO;
        }
        if (s == 0) continue;
        es[m].rank = ranks[i];
        es[m].samples = s;
        m++;
    }
    free(ranks);
    *out = es;
    *nout = m;
    return KD_OK;
}

int kd_dataset_recover(const char *dir, int64_t **ids, size_t *n, kd_error *err) {
    *ids = NULL;
    *n = 0;
    shard_entry *es;
    int ne;
    if (recover_all(dir, &es, &ne, err)) return err ? err->code : KD_ERR_IO;
    int64_t total = 0;
    for (int i = 0; i < ne; i++) total += es[i].samples;
    int64_t *all = kd_calloc((size_t)total + 1, sizeof(int64_t));
    int *owner = kd_calloc((size_t)total + 1, sizeof(int));
    if (!all || !owner) {
        free(all);
        free(owner);
        free(es);
        return kd_error_set(err, KD_ERR_NOMEM, "out of memory reading done prompt ids");
    }
    int64_t at = 0;
    for (int i = 0; i < ne; i++) {
        if (read_prompt_ids(es[i].h5, es[i].samples, all + at, err)) {
            free(all);
            free(owner);
            free(es);
            return err->code;
        }
        at += es[i].samples;
    }
    qsort(all, (size_t)total, sizeof(int64_t), cmp_i64);
    for (int64_t i = 1; i < total; i++)
        if (all[i] == all[i - 1]) {
            int64_t dup = all[i];
            free(all);
            free(owner);
            free(es);
            return kd_error_set(err, KD_ERR_INVALID,
                                "%s: prompt id %lld is stored twice; the dataset was written by two runs at once?",
                                dir, (long long)dup);
        }
    free(owner);
    free(es);
    *ids = all;
    *n = (size_t)total;
    return KD_OK;
}

/* ---- shard writer -------------------------------------------------------------------------------- */

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;
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

struct kd_shard {
    char h5[4096], journal[4096];
    hid_t file;
    hid_t d[NCOL];
    int topk;
    int seal_every;
    int64_t sealed;        /* samples sealed */
    int64_t rows[NCOL];    /* rows in the file per column (sealed) */
    int64_t total[NCOL];   /* rows sealed + buffered (offsets columns: the running end value) */
    buf pending[NCOL];
    int64_t buffered;
    int64_t *done;
    size_t ndone, capdone;
    double bytes_ratio;    /* file growth per buffered byte at the last seal (compression); 0 = unknown */
};

static void shard_free(kd_shard *sh) {
    for (int i = 0; i < NCOL; i++) {
        if (sh->d[i] >= 0) H5Dclose(sh->d[i]);
        free(sh->pending[i].p);
    }
    if (sh->file >= 0) H5Fclose(sh->file);
    free(sh->done);
    free(sh);
}

/* Create an empty shard under a temporary name and rename it into place, so a crash during creation
 * leaves no half-made shard (only a shard-*.h5.tmp.<pid> that nothing reads). */
static int shard_create(const char *h5, const char *journal, const kd_dataset_info *info, kd_error *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", h5, (int)getpid());
    hid_t fapl = fapl_shard();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) return kd_error_set(err, KD_ERR_IO, "%s: cannot create the shard file (is the folder writable?)", h5);
    for (int g = 0; g < 4; g++) H5Gclose(H5Gcreate2(f, GROUPS[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    int bad = write_info_attrs(f, info);
    for (int i = 0; i < NCOL && !bad; i++) {
        int is_off = COLS[i].kind == COL_OFFSETS;
        /* Token ids and teacher top-k are most of the bytes and compress poorly (deflate costs ~3x the
         * write time for ~30% space, docs/performance-data.md), so they are compressed only on request;
         * masks, offsets and texts compress many-fold for little time. */
        int heavy = i == C_INPUT_IDS || i == C_TOPK_IDS || i == C_TOPK_LP || i == C_TAIL;
        int level = heavy && !info->compress_token_data ? 0 : info->deflate_level;
        hid_t d = create_column(f, &COLS[i], info->topk, level, is_off ? 1 : 0);
        if (d < 0) bad = 1;
        if (is_off && !bad) {
            int64_t zero = 0;
            hid_t ms = H5Screate_simple(1, (hsize_t[]){1}, NULL);
            if (H5Dwrite(d, H5T_NATIVE_INT64, ms, H5S_ALL, H5P_DEFAULT, &zero) < 0) bad = 1;
            H5Sclose(ms);
        }
        if (d >= 0) H5Dclose(d);
    }
    if (H5Fclose(f) < 0) bad = 1;
    if (bad) {
        unlink(tmp);
        return kd_error_set(err, KD_ERR_IO, "%s: cannot create the shard's datasets", h5);
    }
    if (rename(tmp, h5) != 0) {
        int e = errno;
        unlink(tmp);
        return kd_error_errno(err, e, "cannot rename %s to %s", tmp, h5);
    }
    return journal_write(journal, 0, 0, err);
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
    sh->file = -1;
    for (int i = 0; i < NCOL; i++) sh->d[i] = -1;
    sh->topk = info->topk;
    sh->seal_every = seal_every;
    shard_paths(dir, rank, sh->h5, sh->journal, sizeof sh->h5);
    int64_t sealed = shard_recover(sh->h5, sh->journal, err);
    if (sealed < 0) {
        shard_free(sh);
        return err ? err->code : KD_ERR_IO;
    }
    if (!kd_path_exists(sh->h5) && shard_create(sh->h5, sh->journal, info, err)) {
        shard_free(sh);
        return err ? err->code : KD_ERR_IO;
    }
    hid_t fapl = fapl_shard();
    sh->file = H5Fopen(sh->h5, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (sh->file < 0) {
        shard_free(sh);
        return kd_error_set(err, KD_ERR_IO, "%s: cannot open for appending", sh->h5);
    }
    kd_dataset_info st;
    if (read_info_attrs(sh->file, sh->h5, &st, NULL, NULL, err) || info_compare(&st, info, sh->h5, err)) {
        shard_free(sh);
        return err ? err->code : KD_ERR_INVALID;
    }
    for (int i = 0; i < NCOL; i++) {
        sh->d[i] = H5Dopen2(sh->file, COLS[i].path, H5P_DEFAULT);
        if (sh->d[i] < 0) {
            shard_free(sh);
            return kd_error_set(err, KD_ERR_INVALID, "%s: dataset %s missing", sh->h5, COLS[i].path);
        }
        sh->rows[i] = (int64_t)dset_len(sh->d[i]);
    }
    sh->sealed = sealed;
    for (int i = 0; i < NCOL; i++) {
        sh->total[i] = sh->rows[i];
        if (COLS[i].kind == COL_OFFSETS) {
            int64_t e = 0;
            dset_read_rows(sh->d[i], &COLS[i], 1, (hsize_t)sealed, 1, &e);
            sh->total[i] = e; /* running end for offsets columns */
        }
    }
    if (sealed > 0) {
        sh->done = kd_calloc((size_t)sealed, sizeof(int64_t));
        if (!sh->done || dset_read_rows(sh->d[C_PROMPT_ID], &COLS[C_PROMPT_ID], 1, 0, (hsize_t)sealed, sh->done)) {
            shard_free(sh);
            return kd_error_set(err, KD_ERR_IO, "%s: cannot read /samples/prompt_id", sh->h5);
        }
        sh->ndone = sh->capdone = (size_t)sealed;
        qsort(sh->done, sh->ndone, sizeof(int64_t), cmp_i64);
    }
    *out = sh;
    return KD_OK;
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
    return KD_OK;
}

int kd_shard_append(kd_shard *sh, const kd_sample *s, kd_error *err) {
    if (check_sample(s, sh->topk, sh->h5, err)) return err ? err->code : KD_ERR_INVALID;
    size_t n = (size_t)s->n, k = (size_t)sh->topk;
    const char *texts[4] = {s->prompt_key ? s->prompt_key : "", s->prompt_text ? s->prompt_text : "",
                            s->teacher_text ? s->teacher_text : "", s->metadata ? s->metadata : "{}"};
    const int tcols[4] = {C_KEY, C_PROMPT, C_TEACHER, C_META};
    int bad = 0;
    bad |= buf_add(&sh->pending[C_PROMPT_ID], &s->prompt_id, 8);
    bad |= buf_add(&sh->pending[C_PROMPT_LEN], &s->prompt_len, 8);
    bad |= buf_add(&sh->pending[C_INPUT_IDS], s->input_ids, n * 4);
    bad |= buf_add(&sh->pending[C_LOSS], s->loss_mask, n);
    bad |= buf_add(&sh->pending[C_TOOL], s->tool_name_mask, n);
    bad |= buf_add(&sh->pending[C_JSON], s->json_mask, n);
    bad |= buf_add(&sh->pending[C_INTEG], s->integration_mask, n);
    bad |= buf_add(&sh->pending[C_TOPK_IDS], s->topk_ids, n * k * 4);
    bad |= buf_add(&sh->pending[C_TOPK_LP], s->topk_logprobs, n * k * 4);
    bad |= buf_add(&sh->pending[C_TAIL], s->tail_logprob, n * 4);
    sh->total[C_OFFSETS] += s->n;
    bad |= buf_add(&sh->pending[C_OFFSETS], &sh->total[C_OFFSETS], 8);
    for (int i = 0; i < 4; i++) {
        size_t len = strlen(texts[i]);
        bad |= buf_add(&sh->pending[tcols[i]], texts[i], len);
        int oc = COLS[tcols[i]].bytes_of;
        sh->total[oc] += (int64_t)len;
        bad |= buf_add(&sh->pending[oc], &sh->total[oc], 8);
    }
    if (bad) return kd_error_set(err, KD_ERR_NOMEM, "%s: out of memory buffering a sample", sh->h5);
    sh->buffered++;
    if (sh->buffered >= sh->seal_every) return kd_shard_seal(sh, err);
    return KD_OK;
}

static size_t pending_bytes(const kd_shard *sh) {
    size_t need = 0;
    for (int i = 0; i < NCOL; i++) need += sh->pending[i].len;
    return need;
}
static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* A write, flush or fsync of a shard failed. HDF5 does not say why, so look at the disk: when the
 * folder's filesystem has less room than this seal needed (or errno says so), say the disk is full
 * and what to do, instead of a bare "flush failed". */
static int seal_io_error(const kd_shard *sh, kd_error *err, const char *what) {
    int e = errno;
    size_t need = pending_bytes(sh);
    struct statvfs vs;
    int full = e == ENOSPC || e == EDQUOT;
    unsigned long long avail = 0;
    if (statvfs(sh->h5, &vs) == 0) {
        avail = (unsigned long long)vs.f_bavail * vs.f_frsize;
        if (avail < need + (1u << 20)) full = 1;
    }
    if (full)
        return kd_error_set(err, KD_ERR_NOSPACE,
                            "%s: %s: the disk is full (%llu KiB free, this chunk needs %zu KiB); the %lld samples "
                            "sealed before are safe: free some space and rerun the same command to resume",
                            sh->h5, what, avail / 1024, need / 1024 + 1, (long long)sh->sealed);
    return kd_error_set(err, KD_ERR_IO, "%s: %s (I/O error); rerun the same command to resume from the %lld samples "
                                        "sealed before", sh->h5, what, (long long)sh->sealed);
}

int kd_shard_seal(kd_shard *sh, kd_error *err) {
    if (sh->buffered == 0) return KD_OK;
    int k = sh->topk;
    /* An HDF5 file whose write or flush fails half-way cannot be trusted afterwards (its metadata may
     * be torn), so a full disk is caught before writing when possible: twice the expected growth
     * (from the last seal's compression) plus 256 KiB must be free. Sealed data then stays intact. */
    size_t need = pending_bytes(sh);
    double ratio = sh->bytes_ratio > 0 ? sh->bytes_ratio : 0.25; /* deflate: ~0.05 on real samples */
    unsigned long long want = (unsigned long long)((double)need * ratio * 2) + (256u << 10);
    struct statvfs vs;
    if (statvfs(sh->h5, &vs) == 0 && (unsigned long long)vs.f_bavail * vs.f_frsize < want)
        return kd_error_set(err, KD_ERR_NOSPACE,
                            "%s: the disk is full (%llu KiB free, sealing the next %lld samples needs about %llu KiB); "
                            "nothing was written and the %lld samples sealed before are safe: free some space and "
                            "rerun the same command to resume",
                            sh->h5, (unsigned long long)vs.f_bavail * vs.f_frsize / 1024, (long long)sh->buffered,
                            want / 1024, (long long)sh->sealed);
    long long size_before = file_size(sh->h5);
    for (int i = 0; i < NCOL; i++) {
        const col_def *c = &COLS[i];
        size_t row = TYPE_SIZE[c->type] * (c->wide ? (size_t)k : 1);
        hsize_t add = sh->pending[i].len / row;
        if (add == 0) continue;
        hsize_t dims[2] = {(hsize_t)sh->rows[i] + add, (hsize_t)k};
        if (H5Dset_extent(sh->d[i], dims) < 0) return seal_io_error(sh, err, "cannot extend a column");
        hid_t fs = H5Dget_space(sh->d[i]);
        hsize_t start[2] = {(hsize_t)sh->rows[i], 0}, count[2] = {add, (hsize_t)k};
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
        hid_t ms = H5Screate_simple(c->wide ? 2 : 1, count, NULL);
        herr_t r = H5Dwrite(sh->d[i], mem_type(c->type), ms, fs, H5P_DEFAULT, sh->pending[i].p);
        H5Sclose(ms);
        H5Sclose(fs);
        if (r < 0) return seal_io_error(sh, err, "writing a column failed");
    }
    if (H5Fflush(sh->file, H5F_SCOPE_GLOBAL) < 0) return seal_io_error(sh, err, "flush failed");
    void *handle = NULL;
    if (H5Fget_vfd_handle(sh->file, H5P_DEFAULT, &handle) >= 0 && handle) {
        if (fsync(*(int *)handle) != 0) return seal_io_error(sh, err, "fsync failed");
    }
    long long size_after = file_size(sh->h5);
    if (size_before >= 0 && size_after > size_before && need > 0) {
        double r = (double)(size_after - size_before) / (double)need;
        sh->bytes_ratio = r < 0.01 ? 0.01 : r > 2 ? 2 : r;
    }
    /* Only now is the data durable; the journal is the commit point. */
    if (journal_write(sh->journal, sh->sealed + sh->buffered, sh->total[C_OFFSETS], err))
        return err ? err->code : KD_ERR_IO;
    size_t nd = sh->ndone + (size_t)sh->buffered;
    if (nd > sh->capdone) {
        int64_t *p = kd_reallocarray(sh->done, nd * 2, sizeof(int64_t));
        if (!p) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        sh->done = p;
        sh->capdone = nd * 2;
    }
    memcpy(sh->done + sh->ndone, sh->pending[C_PROMPT_ID].p, (size_t)sh->buffered * 8);
    sh->ndone = nd;
    qsort(sh->done, sh->ndone, sizeof(int64_t), cmp_i64);
    for (int i = 0; i < NCOL; i++) {
        const col_def *c = &COLS[i];
        size_t row = TYPE_SIZE[c->type] * (c->wide ? (size_t)k : 1);
        sh->rows[i] += (int64_t)(sh->pending[i].len / row);
        sh->pending[i].len = 0;
    }
    sh->sealed += sh->buffered;
    sh->buffered = 0;
    return KD_OK;
}

int64_t kd_shard_sealed(const kd_shard *sh) { return sh->sealed; }
int64_t kd_shard_buffered(const kd_shard *sh) { return sh->buffered; }
const int64_t *kd_shard_done_ids(const kd_shard *sh, size_t *n) {
    *n = sh->ndone;
    return sh->done;
}

int kd_shard_close(kd_shard *sh, kd_error *err) {
    if (!sh) return KD_OK;
    int rc = kd_shard_seal(sh, err);
    shard_free(sh);
    return rc;
}

void kd_shard_abandon(kd_shard *sh) {
    if (sh) shard_free(sh);
}

/* ---- finalize ------------------------------------------------------------------------------------ */

int kd_dataset_finalize(const char *dir, int64_t *samples_out, kd_error *err) {
    int64_t *ids = NULL;
    size_t nids = 0;
    /* Recovery also proves there are no duplicates. */
    if (kd_dataset_recover(dir, &ids, &nids, err)) return err->code;
    free(ids);
    shard_entry *es;
    int ne;
    if (recover_all(dir, &es, &ne, err)) return err->code;
    char meta[4096];
    snprintf(meta, sizeof meta, "%s/meta.json", dir);
    kd_dataset_info info;
    kd_dataset_info_init(&info);
    char *yaml = NULL;
    int rc = KD_OK;
    hid_t out = -1;
    hid_t *src = kd_calloc((size_t)ne + 1, sizeof(hid_t));
    int64_t(*ends)[NCOL] = kd_calloc((size_t)ne + 1, sizeof *ends);
    if (!src || !ends) {
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
            /* Offsets are global: each shard's are shifted by what the shards before it hold. */
            int64_t *vals = kd_calloc((size_t)total_samples + 1, sizeof(int64_t));
            if (!vals) {
                rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
                goto done;
            }
            int64_t at = 0, base = 0;
            for (int i = 0; i < ne && rc == KD_OK; i++) {
                hid_t d = H5Dopen2(src[i], cd->path, H5P_DEFAULT);
                if (d < 0 || dset_read_rows(d, cd, 1, 0, (hsize_t)es[i].samples + 1, vals + at) < 0)
                    rc = kd_error_set(err, KD_ERR_INVALID, "%s: cannot read %s", es[i].h5, cd->path);
                if (d >= 0) H5Dclose(d);
                for (int64_t j = 0; j <= es[i].samples; j++) vals[at + j] += base;
                base = vals[at + es[i].samples];
                at += es[i].samples;
            }
            hid_t d = rc ? -1 : create_column(out, cd, k, info.deflate_level ? info.deflate_level : 1,
                                              (hsize_t)total_samples + 1);
            if (rc == KD_OK && (d < 0 || H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals) < 0))
                rc = kd_error_set(err, KD_ERR_IO, "%s: cannot write %s", tmp, cd->path);
            if (d >= 0) H5Dclose(d);
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
            d = create_column(out, cd, k, 1, 0);
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
