/* HDF5 dataset shards: the writer (kd_shard), which buffers samples and seals them as segments, in
 * the background when asked. See h5data_internal.h. */
#include <errno.h>
#include <hdf5.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5data_internal.h"
#include "kdstep/fsutil.h"
#include "kdstep/log.h"
#include "kdstep/progress.h"

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
    if (n == 0) return 0; /* an empty column part: nothing to copy (and b->p may still be NULL) */
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
    if (s->policy > 1)
        return kd_error_set(err, KD_ERR_INVALID, "%s: prompt id %lld: policy %d is neither 0 (teacher) nor 1 (student)",
                            where, (long long)s->prompt_id, s->policy);
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
    bad |= buf_add(&b[C_POLICY], &s->policy, 1);
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
    for (int g = 0; g < NGROUP; g++) H5Gclose(H5Gcreate2(f, GROUPS[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    if (write_info_attrs(f, &sh->info) || attr_write_int(f, "segment", seq)) bad = 1;
    *what = "writing a column failed";
    col_sums sums;
    sums_init(&sums);
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
        sums_add(&sums, i, bt->col[i].p, (size_t)rows * row);
    }
    if (!bad && sums_write(f, &sums, bt->samples)) bad = 1;
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
