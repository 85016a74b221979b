/* HDF5 dataset: the reader of dataset.h5 (kd_dataset). See h5data_internal.h. */
#include <hdf5.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5data_internal.h"
#include "kdstep/fsutil.h"

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

/* Every shard dataset.h5 maps is opened and checked before use: sealed, the right length, and its rows
 * hashing to the checksum recorded when it was sealed (h5data_verify.c). dataset.h5 files written
 * before the "shards" attribute existed have each mapped file checked as far as it records. */
static int verify_one(const kd_dataset *ds, const char *dir, const char *file, int64_t samples, int64_t tokens,
                      const char *sha, kd_error *err) {
    char full[8200];
    if (file[0] == '/') snprintf(full, sizeof full, "%s", file);
    else snprintf(full, sizeof full, "%s/%s", dir, file);
    if (shard_verify(full, samples, tokens, sha, err) == KD_OK) return KD_OK;
    char m[KD_ERROR_MSG_MAX];
    snprintf(m, sizeof m, "%s", err->msg);
    return kd_error_set(err, KD_ERR_INVALID,
                        "%s: damaged shard: %s; training or export would read damaged samples. Redo it: rerun `kdstep generate` with "
                        "the same inputs into %s (the damaged shard is moved aside and its prompts generated again)",
                        ds->path, m, dir);
}

static int verify_shards(const kd_dataset *ds, const char *dir, kd_error *err) {
    char *text = attr_read_str(ds->file, "shards");
    if (text) {
        json_t *arr = json_loads(text, 0, NULL);
        free(text);
        if (!json_is_array(arr)) {
            json_decref(arr);
            return kd_error_set(err, KD_ERR_INVALID, "%s: its shards attribute is not a JSON array (a damaged dataset.h5)", ds->path);
        }
        size_t i;
        json_t *e;
        int rc = KD_OK;
        json_array_foreach(arr, i, e) {
            const char *file = json_string_value(json_object_get(e, "file"));
            if (!file) continue;
            rc = verify_one(ds, dir, file, json_integer_value(json_object_get(e, "samples")),
                            json_integer_value(json_object_get(e, "tokens")),
                            json_string_value(json_object_get(e, "data_xxh64")), err);
            if (rc) break;
        }
        json_decref(arr);
        return rc;
    }
    hid_t dcpl = H5Dget_create_plist(ds->d[C_PROMPT_ID]);
    int rc = KD_OK;
    if (H5Pget_layout(dcpl) == H5D_VIRTUAL) {
        size_t nmap = 0;
        H5Pget_virtual_count(dcpl, &nmap);
        for (size_t m = 0; m < nmap && rc == KD_OK; m++) {
            char name[4096];
            H5Pget_virtual_filename(dcpl, m, name, sizeof name);
            if (strcmp(name, ".") != 0) rc = verify_one(ds, dir, name, -1, -1, NULL, err);
        }
    }
    H5Pclose(dcpl);
    return rc;
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
        if (col_optional(i) && H5Lexists(ds->file, COLS[i].path, H5P_DEFAULT) <= 0) continue; /* reads as 0 */
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
    if ((rc = verify_shards(ds, dirbuf, err))) goto fail;
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
        if (COLS[i].kind == COL_BYTES || ds->d[i] < 0) continue;
        hsize_t have = dset_len(ds->d[i]);
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
    free(b->policy);
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
    b->policy = kd_calloc((size_t)count + 1, 1);
    b->input_ids = kd_calloc((size_t)T + 1, 4);
    b->loss_mask = kd_calloc((size_t)T + 1, 1);
    b->tool_name_mask = kd_calloc((size_t)T + 1, 1);
    b->json_mask = kd_calloc((size_t)T + 1, 1);
    b->integration_mask = kd_calloc((size_t)T + 1, 1);
    b->topk_ids = kd_calloc((size_t)T * (size_t)k + 1, 4);
    b->topk_logprobs = kd_calloc((size_t)T * (size_t)k + 1, 4);
    b->tail_logprob = kd_calloc((size_t)T + 1, 4);
    if (!b->offsets || !b->prompt_id || !b->prompt_len || !b->policy || !b->input_ids || !b->loss_mask || !b->tool_name_mask ||
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
                 {C_TOPK_LP, b->topk_logprobs, t0, T},            {C_TAIL, b->tail_logprob, t0, T},
                 {C_POLICY, b->policy, first, count}};
    for (size_t r = 0; r < sizeof reads / sizeof reads[0]; r++) {
        if (ds->d[reads[r].col] < 0) continue; /* an optional column the file lacks: zeros (calloc) */
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
        if (b->policy[i] > 1) {
            int v = b->policy[i];
            kd_batch_free(b);
            return kd_error_set(err, KD_ERR_INVALID, "%s: sample %lld: /samples/policy = %d (0 teacher-written, 1 student-written)",
                                ds->path, (long long)(first + i), v);
        }
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
    v->policy = b->policy ? b->policy[i] : 0;
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
