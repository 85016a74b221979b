/* HDF5 dataset shards: recovery of a rank's files after a crash, and compaction (folding a rank's
 * segments into its base). See h5data_internal.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "h5data_internal.h"
#include "kdstep/fsutil.h"
#include "kdstep/log.h"

/* ---- shard recovery ------------------------------------------------------------------------------ */

/* Check one shard-format file (base or segment). `cut` >= 0 (a legacy append-in-place shard): cut
 * every column back to `cut` samples and `cut_tokens` tokens, as its journal says. Otherwise the file
 * was written whole and holds exactly what its offsets say. Then read back the last chunks of every
 * column, so damage shows up now, not in training. Fills samples/tokens; an error says why the file
 * cannot be trusted. */
int file_check(const char *path, int64_t cut, int64_t cut_tokens, int64_t *samples_out, int64_t *tokens_out,
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
            rc = col_optional(i) ? kd_error_set(err, KD_ERR_INVALID,
                                                "%s: dataset %s missing: the shard was written by an earlier kdstep; "
                                                "it can be read (kdstep train, inspect) but not continued: generate into a "
                                                "new --out folder", path, COLS[i].path)
                                 : kd_error_set(err, KD_ERR_INVALID, "%s: dataset %s missing", path, COLS[i].path);
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
            /* a checksum of the rows before the cut no longer holds (the append-in-place writer never
             * wrote one; only a converted file could carry it) */
            if (H5Aexists(f, "data_xxh64") > 0) H5Adelete(f, "data_xxh64");
            if (H5Aexists(f, "sealed_samples") > 0) H5Adelete(f, "sealed_samples");
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
    if (cut < 0) { /* a file written whole: its rows must hash to the checksum recorded when it was sealed */
        char *sha = attr_read_str(f, "data_xxh64"), got[17];
        if (sha && sums_of_file(f, k, got) != 0)
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: sealed rows cannot be read back", path);
        else if (sha && strcmp(sha, got) != 0)
            rc = kd_error_set(err, KD_ERR_INVALID, "%s: its rows do not match the checksum recorded when it was sealed", path);
        free(sha);
        if (rc) goto out;
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
int file_attr_int(const char *path, const char *name, int64_t *v) {
    quiet_hdf5();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    int r = attr_read_int(f, name, v) == 0 ? 1 : 0;
    H5Fclose(f);
    return r;
}

static int cmp_entry(const void *a, const void *b) {
    const dir_entry *x = a, *y = b;
    if (x->rank != y->rank) return (x->rank > y->rank) - (x->rank < y->rank);
    if (x->kind != y->kind) return (x->kind > y->kind) - (x->kind < y->kind);
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Every shard file in dir, sorted by rank, kind, segment number. */
int list_dir(const char *dir, dir_entry **out, size_t *n, kd_error *err) {
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

void rank_state_free(rank_state *st) {
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
int rank_recover(const char *dir, int rank, const dir_entry *es, size_t n, rank_state *st, kd_error *err) {
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

int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Read /samples/prompt_id[0:n) of a shard file (read-only). */
int read_prompt_ids(const char *h5, int64_t n, int64_t *out, kd_error *err) {
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

int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

void app_abort(appender *a) {
    for (int c = 0; c < NCOL; c++)
        if (a->d[c] >= 0) H5Dclose(a->d[c]);
    if (a->f >= 0) H5Fclose(a->f);
    a->f = -1;
    for (int c = 0; c < NCOL; c++) a->d[c] = -1;
    unlink(a->tmp);
}

int app_open(appender *a, const char *tmp, const kd_dataset_info *info, kd_error *err) {
    memset(a, 0, sizeof *a);
    a->f = -1;
    for (int c = 0; c < NCOL; c++) a->d[c] = -1;
    snprintf(a->tmp, sizeof a->tmp, "%s", tmp);
    a->k = info->topk;
    sums_init(&a->sums);
    quiet_hdf5();
    hid_t fapl = fapl_shard();
    a->f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (a->f < 0) return kd_error_set(err, KD_ERR_IO, "%s: cannot create (is the folder writable?)", tmp);
    for (int g = 0; g < NGROUP; g++) H5Gclose(H5Gcreate2(a->f, GROUPS[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
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
int app_add(appender *a, int c, void *data, hsize_t n, kd_error *err) {
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
    sums_add(&a->sums, c, (uint8_t *)data + skip * row, (size_t)add * row);
    a->rows[c] += (int64_t)add;
    return KD_OK;
}

/* Append a whole shard-format file (a base or a segment). */
int app_add_file(appender *a, const char *path, kd_error *err) {
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
int app_finish(appender *a, int64_t through, kd_error *err) {
    int bad = attr_write_int(a->f, "segments_through", through) || sums_write(a->f, &a->sums, a->rows[C_PROMPT_ID]);
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
int compaction_commit(const char *dir, int rank, const char *tmp, int64_t through, int64_t samples,
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
long long free_bytes(const char *dir) {
    struct statvfs vs;
    if (statvfs(dir, &vs) != 0) return -1;
    return (long long)((unsigned long long)vs.f_bavail * vs.f_frsize);
}

/* Fold a rank's segments into its base: base + segments are copied, in order, into a temporary file,
 * which is closed, fsynced and renamed over the base (then the folder is fsynced); only then are the
 * segments removed. The new base records the last segment it holds (segments_through), so a crash
 * before the removal leaves no duplicates: recovery drops segments the base already holds. */
int rank_compact(const char *dir, rank_state *st, int64_t nth, kd_error *err) {
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
int recover_all(const char *dir, int compact, rank_state **out, int *nout, kd_error *err) {
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

void free_states(rank_state *st, int n) {
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
