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

/* ---- XXH64 (seed 0), streaming ---- */
static const uint64_t P1 = 11400714785074694791ULL, P2 = 14029467366897019727ULL, P3 = 1609587929392839161ULL,
                      P4 = 9650029242287828579ULL, P5 = 2870177450012600261ULL;
static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian hosts (x86-64, aarch64), as the dataset's arrays */
}
static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t round64(uint64_t acc, uint64_t in) { return rotl(acc + in * P2, 31) * P1; }
static inline uint64_t merge64(uint64_t acc, uint64_t v) { return (acc ^ round64(0, v)) * P1 + P4; }

void kd_xxh64_init(kd_xxh64 *h) {
    memset(h, 0, sizeof *h);
    h->v[0] = P1 + P2;
    h->v[1] = P2;
    h->v[2] = 0;
    h->v[3] = 0 - P1;
}

static void stripe(kd_xxh64 *h, const uint8_t *p) {
    for (int i = 0; i < 4; i++) h->v[i] = round64(h->v[i], rd64(p + 8 * i));
}

void kd_xxh64_update(kd_xxh64 *h, const void *data, size_t len) {
    const uint8_t *p = data, *end = p + len;
    h->total += len;
    if (h->fill + len < 32) {
        memcpy(h->buf + h->fill, p, len);
        h->fill += len;
        return;
    }
    if (h->fill) {
        memcpy(h->buf + h->fill, p, 32 - h->fill);
        p += 32 - h->fill;
        stripe(h, h->buf);
        h->fill = 0;
    }
    for (; p + 32 <= end; p += 32) stripe(h, p);
    h->fill = (size_t)(end - p);
    memcpy(h->buf, p, h->fill);
}

uint64_t kd_xxh64_final(const kd_xxh64 *h) {
    uint64_t acc;
    if (h->total >= 32) {
        acc = rotl(h->v[0], 1) + rotl(h->v[1], 7) + rotl(h->v[2], 12) + rotl(h->v[3], 18);
        for (int i = 0; i < 4; i++) acc = merge64(acc, h->v[i]);
    } else {
        acc = P5;
    }
    acc += h->total;
    const uint8_t *p = h->buf, *end = h->buf + h->fill;
    for (; p + 8 <= end; p += 8) acc = rotl(acc ^ round64(0, rd64(p)), 27) * P1 + P4;
    if (p + 4 <= end) {
        acc = rotl(acc ^ ((uint64_t)rd32(p) * P1), 23) * P2 + P3;
        p += 4;
    }
    for (; p < end; p++) acc = rotl(acc ^ (*p * P5), 11) * P1;
    acc ^= acc >> 33;
    acc *= P2;
    acc ^= acc >> 29;
    acc *= P3;
    acc ^= acc >> 32;
    return acc;
}

/* ---- seal-time checksums ---- */

void sums_init(col_sums *s) {
    for (int c = 0; c < NCOL; c++) kd_xxh64_init(&s->col[c]);
}

void sums_add(col_sums *s, int c, const void *data, size_t bytes) {
    if (bytes) kd_xxh64_update(&s->col[c], data, bytes);
}

/* One XXH64 over the columns' XXH64s in COLS order; an optional column the file lacks (has[c] 0) is
 * left out, so files written before it existed keep their checksum. */
static void sums_hex_of(col_sums *s, const int *has, char hex[17]) {
    uint64_t all[NCOL];
    int n = 0;
    for (int c = 0; c < NCOL; c++)
        if (!has || has[c]) all[n++] = kd_xxh64_final(&s->col[c]);
    kd_xxh64 h;
    kd_xxh64_init(&h);
    kd_xxh64_update(&h, all, (size_t)n * sizeof all[0]);
    snprintf(hex, 17, "%016llx", (unsigned long long)kd_xxh64_final(&h));
}

void sums_hex(col_sums *s, char hex[17]) { sums_hex_of(s, NULL, hex); }

int sums_write(hid_t f, col_sums *s, int64_t samples) {
    char hex[17];
    sums_hex(s, hex);
    return attr_write_str(f, "data_xxh64", hex) || attr_write_int(f, "sealed_samples", samples) ? -1 : 0;
}

int sums_of_file(hid_t f, int k, char hex[17]) {
    col_sums s;
    sums_init(&s);
    void *buf = NULL;
    size_t cap = 0;
    int rc = 0, has[NCOL];
    for (int c = 0; c < NCOL && !rc; c++) {
        const col_def *cd = &COLS[c];
        has[c] = !col_optional(c) || H5Lexists(f, cd->path, H5P_DEFAULT) > 0;
        if (!has[c]) continue;
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
    if (!rc) sums_hex_of(&s, has, hex);
    return rc;
}

int shard_verify(const char *path, int64_t samples, int64_t tokens, const char *want_sha, kd_error *err) {
    quiet_hdf5();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return kd_error_set(err, KD_ERR_INVALID, "%s: cannot be opened as HDF5 (emptied, cut short or overwritten)", path);
    int rc = KD_OK;
    int64_t k = 0, sealed = -1;
    char *sha = attr_read_str(f, "data_xxh64");
    attr_read_int(f, "sealed_samples", &sealed);
    hid_t dp = H5Dopen2(f, COLS[C_PROMPT_ID].path, H5P_DEFAULT), dt = H5Dopen2(f, COLS[C_INPUT_IDS].path, H5P_DEFAULT);
    int64_t have_s = dp >= 0 ? (int64_t)dset_len(dp) : -1, have_t = dt >= 0 ? (int64_t)dset_len(dt) : -1;
    if (dp >= 0) H5Dclose(dp);
    if (dt >= 0) H5Dclose(dt);
    char got[17];
    if (attr_read_int(f, "topk", &k) < 0 || k < 1 || k > 1 << 16) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: not a sealed shard (no topk attribute)", path);
    } else if (have_s < 0 || have_t < 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: its sample arrays are missing", path);
    } else if (want_sha && !sha) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: not sealed (no data_xxh64 recorded when it was written)", path);
    } else if ((samples >= 0 && have_s != samples) || (sealed >= 0 && have_s != sealed)) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: holds %lld samples, %lld were sealed", path, (long long)have_s,
                          (long long)(samples >= 0 ? samples : sealed));
    } else if (tokens >= 0 && have_t != tokens) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: holds %lld tokens, %lld were sealed", path, (long long)have_t, (long long)tokens);
    } else if (want_sha && strcmp(want_sha, sha) != 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: is not the shard this dataset was made from (data_xxh64 %s, "
                          "dataset.h5 recorded %s)", path, sha, want_sha);
    } else if (sha && sums_of_file(f, (int)k, got) != 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: its sealed rows cannot be read back", path);
    } else if (sha && strcmp(got, sha) != 0) {
        rc = kd_error_set(err, KD_ERR_INVALID, "%s: its rows do not match the checksum recorded when it was sealed "
                          "(data_xxh64 %s, now %s): the file was changed or damaged", path, sha, got);
    }
    free(sha);
    H5Fclose(f);
    return rc;
}
