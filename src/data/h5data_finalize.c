/* HDF5 dataset: finalize, which maps every rank's shard into one dataset.h5 (virtual datasets; the
 * offsets columns are copied and made global). See h5data_internal.h. */
#include <errno.h>
#include <hdf5.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5data_internal.h"
#include "kdstep/fsutil.h"

/* ---- finalize ------------------------------------------------------------------------------------ */

/* A shard file that dataset.h5 maps, in order (normally one base per rank). */
typedef struct fin_shard {
    int64_t samples;
    const char *h5;     /* a path held by the rank_state */
    hid_t f;            /* open read-only, or -1 */
    int64_t ends[NCOL]; /* offsets columns: where their column ends after `samples` rows */
} fin_shard;

/* Open every shard, take the attributes from the first (all shards agree: they were checked against
 * meta.json, and are compared again here) and read where each column ends. */
static int open_shards(fin_shard *es, int ne, kd_dataset_info *info, char **yaml, kd_error *err) {
    for (int i = 0; i < ne; i++) {
        es[i].f = H5Fopen(es[i].h5, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (es[i].f < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: cannot be opened as HDF5", es[i].h5);
        kd_dataset_info si;
        char *y = NULL;
        if (read_info_attrs(es[i].f, es[i].h5, &si, &y, NULL, err)) {
            free(y);
            return err->code;
        }
        if (i == 0) {
            *info = si;
            *yaml = y;
        } else {
            free(y);
            if (info_compare(&si, info, es[i].h5, err)) return err->code;
        }
        for (int c = 0; c < NCOL; c++) {
            if (COLS[c].kind != COL_OFFSETS) continue;
            hid_t d = H5Dopen2(es[i].f, COLS[c].path, H5P_DEFAULT);
            int r = d < 0 ? -1 : dset_read_rows(d, &COLS[c], 1, (hsize_t)es[i].samples, 1, &es[i].ends[c]);
            if (d >= 0) H5Dclose(d);
            if (r < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: cannot read %s", es[i].h5, COLS[c].path);
        }
    }
    return KD_OK;
}

/* No shards: take the info from meta.json so an empty dataset still says what it is. */
static void info_from_meta(const char *dir, kd_dataset_info *info) {
    char meta[4096];
    snprintf(meta, sizeof meta, "%s/meta.json", dir);
    json_t *m = json_load_file(meta, 0, NULL);
    if (!m) return;
    info->topk = (int)json_integer_value(json_object_get(m, "topk"));
    if (info->topk < 1) info->topk = 1;
    info->process_supervision = json_is_true(json_object_get(m, "process_supervision"));
    snprintf(info->tokenizer_sha256, 65, "%s", json_string_value(json_object_get(m, "tokenizer_sha256")) ?: "");
    snprintf(info->registry_sha256, 65, "%s", json_string_value(json_object_get(m, "registry_sha256")) ?: "");
    snprintf(info->config_sha256, 65, "%s", json_string_value(json_object_get(m, "config_sha256")) ?: "");
    json_decref(m);
}

/* Offsets are global: each shard's are shifted by what the shards before it hold. Copied in blocks, so
 * finalize's memory does not grow with the samples. */
static int write_offsets(hid_t out, const char *tmp, const col_def *cd, int k, int deflate, const fin_shard *es,
                         int ne, int64_t total_samples, kd_error *err) {
    hid_t d = create_column(out, cd, k, deflate, (hsize_t)total_samples + 1, 0);
    if (d < 0) return kd_error_set(err, KD_ERR_IO, "%s: cannot create %s", tmp, cd->path);
    const hsize_t block = 1 << 16;
    int64_t *vals = kd_calloc(block, sizeof(int64_t));
    int64_t at = 0, base = 0;
    int rc = KD_OK;
    if (!vals) rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    if (!rc && total_samples == 0) {
        hid_t ms = H5Screate_simple(1, (hsize_t[]){1}, NULL);
        if (H5Dwrite(d, H5T_NATIVE_INT64, ms, H5S_ALL, H5P_DEFAULT, vals) < 0)
            rc = kd_error_set(err, KD_ERR_IO, "%s: cannot write %s", tmp, cd->path);
        H5Sclose(ms);
    }
    for (int i = 0; i < ne && rc == KD_OK; i++) {
        hid_t sd = H5Dopen2(es[i].f, cd->path, H5P_DEFAULT);
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
    return rc;
}

/* Every other column is a virtual dataset over the shards' own. */
static int write_virtual(hid_t out, const char *tmp, const col_def *cd, int k, const fin_shard *es, int ne,
                         kd_error *err) {
    int rank = cd->wide ? 2 : 1;
    int64_t total = 0;
    int64_t *len = kd_calloc((size_t)ne + 1, sizeof(int64_t));
    if (!len) return kd_error_set(err, KD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < ne; i++) {
        len[i] = cd->kind == COL_SAMPLE  ? es[i].samples
                 : cd->kind == COL_TOKEN ? es[i].ends[C_OFFSETS]
                                         : es[i].ends[cd->bytes_of];
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
    if (d < 0) return kd_error_set(err, KD_ERR_IO, "%s: cannot create virtual dataset %s", tmp, cd->path);
    H5Dclose(d);
    return KD_OK;
}

/* What every reader checks each mapped shard against (h5data_verify.c): the attribute "shards", a JSON
 * array of {file, samples, tokens, data_xxh64} in mapping order. */
static int record_shards(hid_t out, const char *tmp, const fin_shard *es, int ne, kd_error *err) {
    json_t *arr = json_array();
    for (int i = 0; i < ne; i++) {
        const char *base = strrchr(es[i].h5, '/');
        char *sha = attr_read_str(es[i].f, "data_xxh64");
        json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:s?}", "file", base ? base + 1 : es[i].h5, "samples",
                                             (json_int_t)es[i].samples, "tokens", (json_int_t)es[i].ends[C_OFFSETS],
                                             "data_xxh64", sha));
        free(sha);
    }
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    int bad = !text || attr_write_str(out, "shards", text);
    free(text);
    return bad ? kd_error_set(err, KD_ERR_IO, "%s: cannot write the shards attribute", tmp) : KD_OK;
}

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
    int ne = 0, nfiles = 0;
    for (int i = 0; i < ns; i++) nfiles += st[i].nfiles;
    fin_shard *es = kd_calloc((size_t)nfiles + 1, sizeof *es);
    /* normally one base per rank; a rank whose compaction had no room adds its segments, in order */
    for (int i = 0; es && i < ns; i++)
        for (int f = 0; f < st[i].nfiles; f++)
            if (st[i].samples[f] > 0) {
                es[ne].h5 = st[i].path[f];
                es[ne].f = -1;
                es[ne++].samples = st[i].samples[f];
            }
    kd_dataset_info info;
    kd_dataset_info_init(&info);
    char *yaml = NULL;
    int rc = KD_OK;
    hid_t out = -1;
    char tmp[4200], final_path[4200];
    snprintf(final_path, sizeof final_path, "%s/dataset.h5", dir);
    snprintf(tmp, sizeof tmp, "%s/dataset.h5.tmp.%d", dir, (int)getpid());
    if (!es) {
        rc = kd_error_set(err, KD_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((rc = open_shards(es, ne, &info, &yaml, err))) goto done;
    if (ne == 0) info_from_meta(dir, &info);
    info.config_yaml = yaml;
    int k = info.topk;
    hid_t fapl = fapl_latest();
    out = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (out < 0) {
        rc = kd_error_set(err, KD_ERR_IO, "%s: cannot create", tmp);
        goto done;
    }
    for (int g = 0; g < NGROUP; g++) H5Gclose(H5Gcreate2(out, GROUPS[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    int64_t total_samples = 0;
    for (int i = 0; i < ne; i++) total_samples += es[i].samples;
    if (write_info_attrs(out, &info) || attr_write_int(out, "num_shards", ne) ||
        attr_write_int(out, "num_samples", total_samples)) {
        rc = kd_error_set(err, KD_ERR_IO, "%s: cannot write attributes", tmp);
        goto done;
    }
    if ((rc = record_shards(out, tmp, es, ne, err))) goto done;
    for (int c = 0; c < NCOL && rc == KD_OK; c++) {
        if (COLS[c].kind == COL_OFFSETS)
            rc = write_offsets(out, tmp, &COLS[c], k, info.deflate_level ? info.deflate_level : 1, es, ne,
                               total_samples, err);
        else
            rc = write_virtual(out, tmp, &COLS[c], k, es, ne, err);
    }
    if (rc) goto done;
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
    for (int i = 0; es && i < ne; i++)
        if (es[i].f >= 0) H5Fclose(es[i].f);
    free(es);
    free_states(st, ns);
    free(yaml);
    return rc;
}
