/* HDF5 dataset: seal-time checksums and the verification of shards before use. See h5data_internal.h.
 *
 * HDF5's virtual datasets read a source file they cannot open as fill values (zeros) without an
 * error, so an emptied or truncated shard used to train as empty samples at loss 0. Every reader
 * (kd_dataset_open: inspect, export, train, eval) and every recovery (resume, finalize, merge) checks
 * each shard file here first. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5data_internal.h"

void sums_init(col_sums *s) {
    for (int c = 0; c < NCOL; c++) kd_sha256_init(&s->col[c]);
}

void sums_add(col_sums *s, int c, const void *data, size_t bytes) {
    if (bytes) kd_sha256_update(&s->col[c], data, bytes);
}

void sums_hex(col_sums *s, char hex[65]) {
    uint8_t all[NCOL][32];
    for (int c = 0; c < NCOL; c++) kd_sha256_final(&s->col[c], all[c]);
    kd_sha256_hex(all, sizeof all, hex);
}

int sums_write(hid_t f, col_sums *s, int64_t samples) {
    char hex[65];
    sums_hex(s, hex);
    return attr_write_str(f, "data_sha256", hex) || attr_write_int(f, "sealed_samples", samples) ? -1 : 0;
}

int sums_of_file(hid_t f, int k, char hex[65]) {
    col_sums s;
    sums_init(&s);
    void *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    for (int c = 0; c < NCOL && !rc; c++) {
        const col_def *cd = &COLS[c];
        hid_t d = H5Dopen2(f, cd->path, H5P_DEFAULT);
        if (d < 0) {
            rc = -1;
            break;
        }
        size_t row = TYPE_SIZE[cd->type] * (cd->wide ? (size_t)k : 1);
        hsize_t n = dset_len(d), block = chunk_rows(cd, k) * 4;
        for (hsize_t at = 0; at < n && !rc; at += block) {
            hsize_t m = n - at < block ? n - at : block;
            if ((size_t)m * row > cap) {
                void *nb = realloc(buf, (size_t)m * row);
                if (!nb) {
                    rc = -1;
                    break;
                }
                buf = nb;
                cap = (size_t)m * row;
            }
            if (dset_read_rows(d, cd, k, at, m, buf) < 0) rc = -1;
            else sums_add(&s, c, buf, (size_t)m * row);
        }
        H5Dclose(d);
    }
    free(buf);
    if (!rc) sums_hex(&s, hex);
    return rc;
}

int shard_verify(const char *path, int64_t samples, int64_t tokens, const char *want_sha, kd_error *err) {
    quiet_hdf5();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: cannot be opened as HDF5 (emptied, cut short or overwritten)", path);
    int rc = KD_OK;
    int64_t k = 0, sealed = -1;
    char *sha = attr_read_str(f, "data_sha256");
    attr_read_int(f, "sealed_samples", &sealed);
    hid_t dp = H5Dopen2(f, COLS[C_PROMPT_ID].path, H5P_DEFAULT), dt = H5Dopen2(f, COLS[C_INPUT_IDS].path, H5P_DEFAULT);
    int64_t have_s = dp >= 0 ? (int64_t)dset_len(dp) : -1, have_t = dt >= 0 ? (int64_t)dset_len(dt) : -1;
    if (dp >= 0) H5Dclose(dp);
    if (dt >= 0) H5Dclose(dt);
    char got[65];
    if (attr_read_int(f, "topk", &k) < 0 || k < 1 || k > 1 << 16) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: not a sealed shard (no topk attribute)", path);
    } else if (have_s < 0 || have_t < 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: its sample arrays are missing", path);
    } else if (want_sha && !sha) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: not sealed (no data_sha256 recorded when it was written)", path);
    } else if ((samples >= 0 && have_s != samples) || (sealed >= 0 && have_s != sealed)) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: holds %lld samples, %lld were sealed", path, (long long)have_s,
                          (long long)(samples >= 0 ? samples : sealed));
    } else if (tokens >= 0 && have_t != tokens) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: holds %lld tokens, %lld were sealed", path, (long long)have_t, (long long)tokens);
    } else if (want_sha && strcmp(want_sha, sha) != 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: is not the shard this dataset was made from (data_sha256 %.12s..., "
                          "dataset.h5 recorded %.12s...)", path, sha, want_sha);
    } else if (sha && sums_of_file(f, (int)k, got) != 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: its sealed rows cannot be read back", path);
    } else if (sha && strcmp(got, sha) != 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: its rows do not match the checksum recorded when it was sealed "
                          "(data_sha256 %.12s..., now %.12s...): the file was changed or damaged", path, sha, got);
    }
    free(sha);
    H5Fclose(f);
    return rc;
}
