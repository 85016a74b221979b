/* CUnit suite: HDF5 shards, sealing, crash recovery, finalize (virtual datasets) and the reader
 * (src/data/h5data_*.c). h5py checks the same files from outside in tests/e2e/h5py_reads.sh. */
#include <dirent.h>
#include <hdf5.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../bench/h5gen.h"
#include "../../src/data/h5data_internal.h"
#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/h5data.h"
#include "testutil.h"

#define K 3

static void quiet_for_test(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static kd_dataset_info test_info(void) {
    kd_dataset_info info;
    kd_dataset_info_init(&info);
    info.topk = K;
    snprintf(info.tokenizer_sha256, 65, "%064d", 1);
    snprintf(info.registry_sha256, 65, "%064d", 2);
    snprintf(info.config_sha256, 65, "%064d", 3);
    info.config_yaml = "train:\n  lr: 0.001\n";
    return info;
}

static const char *fresh_dir(const char *name) {
    static char path[8][512];
    static int slot;
    char *p = path[slot++ % 8];
    snprintf(p, 512, "%s/%s", kd_test_tmpdir(), name);
    kd_rm_rf(p, NULL);
    return p;
}

static void write_ids(const char *dir, int rank, int64_t from, int64_t to, int seal_every) {
    kd_dataset_info info = test_info();
    kd_shard *sh = NULL;
    kd_error e;
    int rc = kd_shard_open(&sh, dir, rank, &info, seal_every, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, KD_OK);
    for (int64_t id = from; id < to; id++) {
        h5gen g;
        h5gen_fill(&g, id, K);
        CU_ASSERT_EQUAL(kd_shard_append(sh, &g.s, &e), KD_OK);
    }
    CU_ASSERT_EQUAL(kd_shard_close(sh, &e), KD_OK);
}

/* Read the whole dataset; check every sample equals what was written; return a count of each id. */
static int64_t check_dataset(const char *path, int64_t max_id, int *seen) {
    kd_dataset *ds = NULL;
    kd_error e;
    int rc = kd_dataset_open(&ds, path, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, KD_OK);
    CU_ASSERT_EQUAL(kd_dataset_get_info(ds)->topk, K);
    KD_ASSERT_CONTAINS(kd_dataset_get_info(ds)->config_yaml, "train:\n  lr: 0.001\n");
    CU_ASSERT_EQUAL(kd_dataset_get_info(ds)->tokenizer_sha256[63], '1');
    int64_t n = kd_dataset_count(ds), tokens = 0;
    /* batches of 7 cross shard and seal boundaries */
    for (int64_t first = 0; first < n; first += 7) {
        int64_t cnt = n - first < 7 ? n - first : 7;
        kd_batch b;
        rc = kd_dataset_read(ds, first, cnt, KD_READ_TEXT, &b, &e);
        if (rc) fprintf(stderr, "%s\n", e.msg);
        CU_ASSERT_EQUAL_FATAL(rc, KD_OK);
        for (int64_t i = 0; i < cnt; i++) {
            kd_sample v;
            kd_batch_sample(&b, i, &v);
            CU_ASSERT_TRUE(h5gen_equal(&v, K, 1));
            CU_ASSERT_TRUE(v.prompt_id >= 0 && v.prompt_id < max_id);
            if (v.prompt_id >= 0 && v.prompt_id < max_id) seen[v.prompt_id]++;
            tokens += v.n;
        }
        kd_batch_free(&b);
    }
    CU_ASSERT_EQUAL(tokens, kd_dataset_tokens(ds));
    kd_dataset_close(ds);
    return n;
}

/* Finalize `dir` and check its dataset holds ids [0, n), each exactly once, every sample intact. */
static void finalize_expect_all_once(const char *dir, int64_t n) {
    kd_error e;
    CU_ASSERT_EQUAL(kd_dataset_finalize(dir, NULL, &e), KD_OK);
    int *seen = calloc((size_t)n, sizeof(int));
    CU_ASSERT_EQUAL(check_dataset(dir, n, seen), n);
    int64_t once = 0;
    for (int64_t i = 0; i < n; i++) once += seen[i] == 1;
    CU_ASSERT_EQUAL(once, n);
    free(seen);
}

static void test_write_finalize_read(void) {
    const char *dir = fresh_dir("ds1");
    kd_dataset_info info = test_info();
    kd_error e;
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &info, &e), KD_OK);
    /* three ranks, interleaved ids, one shard empty-ish, seal_every not dividing the count */
    write_ids(dir, 0, 0, 20, 3);
    write_ids(dir, 1, 20, 57, 4);
    write_ids(dir, 3, 57, 58, 5);
    int64_t total = 0;
    int rc = kd_dataset_finalize(dir, &total, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    CU_ASSERT_EQUAL(rc, KD_OK);
    CU_ASSERT_EQUAL(total, 58);
    int seen[58] = {0};
    CU_ASSERT_EQUAL(check_dataset(dir, 58, seen), 58);
    for (int i = 0; i < 58; i++) CU_ASSERT_EQUAL(seen[i], 1);
    /* a shard file reads with the same API */
    char shard[600];
    snprintf(shard, sizeof shard, "%s/shard-00001.h5", dir);
    int seen1[58] = {0};
    CU_ASSERT_EQUAL(check_dataset(shard, 58, seen1), 37);
    /* done ids */
    int64_t *ids = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL(kd_dataset_recover(dir, &ids, &n, &e), KD_OK);
    CU_ASSERT_EQUAL(n, 58);
    for (size_t i = 0; i < n; i++) CU_ASSERT_EQUAL(ids[i], (int64_t)i);
    free(ids);
    /* the same as a bitmap (what the coordinator resumes from), and the totals without a full read */
    uint8_t *bits = NULL;
    int64_t nbits = 0, count = 0;
    CU_ASSERT_EQUAL(kd_dataset_recover_done(dir, &bits, &nbits, &count, &e), KD_OK);
    CU_ASSERT_EQUAL(count, 58);
    CU_ASSERT_TRUE(nbits >= 58 && nbits % 8 == 0);
    for (int64_t i = 0; i < nbits; i++) CU_ASSERT_EQUAL((bits[i / 8] >> (i % 8)) & 1, i < 58);
    free(bits);
    int64_t ts = 0, tt = 0;
    CU_ASSERT_EQUAL(kd_dataset_totals(dir, &ts, &tt, &e), KD_OK);
    CU_ASSERT_EQUAL(ts, 58);
    int64_t want_tokens = 0;
    for (int64_t id = 0; id < 58; id++) want_tokens += 5 + id % 13;
    CU_ASSERT_EQUAL(tt, want_tokens);
    /* resume appends to an existing shard; finalize again replaces dataset.h5 */
    write_ids(dir, 0, 58, 61, 2);
    CU_ASSERT_EQUAL(kd_dataset_finalize(dir, &total, &e), KD_OK);
    CU_ASSERT_EQUAL(total, 61);
    int seen2[61] = {0};
    CU_ASSERT_EQUAL(check_dataset(dir, 61, seen2), 61);
    for (int i = 0; i < 61; i++) CU_ASSERT_EQUAL(seen2[i], 1);
    /* the dataset folder can be moved: virtual sources are relative to dataset.h5 */
    char moved[600];
    snprintf(moved, sizeof moved, "%s/moved", kd_test_tmpdir());
    kd_rm_rf(moved, NULL);
    CU_ASSERT_EQUAL(rename(dir, moved), 0);
    int seen3[61] = {0};
    CU_ASSERT_EQUAL(check_dataset(moved, 61, seen3), 61);
    /* a missing shard is refused by name instead of reading zeros */
    char gone[700];
    snprintf(gone, sizeof gone, "%s/shard-00003.h5", moved);
    CU_ASSERT_EQUAL(unlink(gone), 0);
    kd_dataset *ds = NULL;
    CU_ASSERT_EQUAL(kd_dataset_open(&ds, moved, &e), KD_ERR_NOTFOUND);
    KD_ASSERT_CONTAINS(e.msg, "shard-00003.h5 is missing");
    KD_ASSERT_CONTAINS(e.msg, "copy the whole dataset folder");
}

/* Teacher arrays written in place (kd_shard_reserve_teacher) read back like copied ones, also across
 * background seals, and mixed with samples whose arrays are copied. */
static void test_reserve_teacher(void) {
    const char *dir = fresh_dir("reserve");
    kd_dataset_info info = test_info();
    kd_error e;
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &info, &e), KD_OK);
    kd_shard *sh = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_shard_open(&sh, dir, 0, &info, 4, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_shard_background(sh, &e), KD_OK);
    for (int64_t id = 0; id < 30; id++) {
        h5gen g;
        h5gen_fill(&g, id, K);
        if (id % 3 != 0) {
            int32_t *ti;
            float *tl, *tt;
            CU_ASSERT_EQUAL_FATAL(kd_shard_reserve_teacher(sh, g.s.n, &ti, &tl, &tt, &e), KD_OK);
            memcpy(ti, g.topk_ids, sizeof(int32_t) * (size_t)(g.s.n * K));
            memcpy(tl, g.lp, sizeof(float) * (size_t)(g.s.n * K));
            memcpy(tt, g.tail, sizeof(float) * (size_t)g.s.n);
            g.s.topk_ids = ti;
            g.s.topk_logprobs = tl;
            g.s.tail_logprob = tt;
        }
        CU_ASSERT_EQUAL(kd_shard_append(sh, &g.s, &e), KD_OK);
    }
    CU_ASSERT_EQUAL(kd_shard_close(sh, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_dataset_finalize(dir, NULL, &e), KD_OK);
    int seen[30] = {0};
    CU_ASSERT_EQUAL(check_dataset(dir, 30, seen), 30);
    for (int i = 0; i < 30; i++) CU_ASSERT_EQUAL(seen[i], 1);
}

static void test_empty_dataset(void) {
    const char *dir = fresh_dir("empty");
    kd_dataset_info info = test_info();
    kd_error e;
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &info, &e), KD_OK);
    int64_t total = -1;
    CU_ASSERT_EQUAL(kd_dataset_finalize(dir, &total, &e), KD_OK);
    CU_ASSERT_EQUAL(total, 0);
    kd_dataset *ds = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_dataset_open(&ds, dir, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_dataset_count(ds), 0);
    CU_ASSERT_EQUAL(kd_dataset_get_info(ds)->topk, K);
    kd_batch b;
    CU_ASSERT_EQUAL(kd_dataset_read(ds, 0, 1, 0, &b, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "samples [0, 1) outside the 0 samples");
    kd_dataset_close(ds);
}

/* The child writes ids [0, 10) with seal_every 4 and is killed (SIGKILL, no cleanup) after the
 * 10th append: 8 sealed, 2 only buffered. */
static void test_crash_loses_only_unsealed_tail(void) {
    const char *dir = fresh_dir("crash");
    kd_dataset_info info = test_info();
    kd_error e;
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &info, &e), KD_OK);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        kd_shard *sh = NULL;
        if (kd_shard_open(&sh, dir, 2, &info, 4, &e)) _exit(3);
        for (int64_t id = 0; id < 10; id++) {
            h5gen g;
            h5gen_fill(&g, id, K);
            if (kd_shard_append(sh, &g.s, &e)) _exit(4);
        }
        raise(SIGKILL);
        _exit(5);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    kd_shard *sh = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_shard_open(&sh, dir, 2, &info, 4, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_shard_sealed(sh), 8);
    size_t n = 0;
    const int64_t *done = kd_shard_done_ids(sh, &n);
    CU_ASSERT_EQUAL(n, 8);
    for (size_t i = 0; i < n; i++) CU_ASSERT_EQUAL(done[i], (int64_t)i);
    /* the lost tail is redone, and nothing is duplicated */
    for (int64_t id = 8; id < 12; id++) {
        h5gen g;
        h5gen_fill(&g, id, K);
        CU_ASSERT_EQUAL(kd_shard_append(sh, &g.s, &e), KD_OK);
    }
    CU_ASSERT_EQUAL(kd_shard_close(sh, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_dataset_finalize(dir, NULL, &e), KD_OK);
    int seen[12] = {0};
    CU_ASSERT_EQUAL(check_dataset(dir, 12, seen), 12);
    for (int i = 0; i < 12; i++) CU_ASSERT_EQUAL(seen[i], 1);
}

/* The body of a forked writer: append ids [from, to) that are not in the sorted `done` list to shard 0,
 * sealing every `seal_every` (in the background when `bg`), close, and _exit with 0 or the step that
 * failed (3 open, 6 background, 4 append, 5 close). */
static void child_append_ids(const char *dir, int seal_every, int bg, int64_t from, int64_t to, const int64_t *done,
                             size_t ndone) {
    kd_dataset_info info = test_info();
    kd_error e;
    kd_shard *sh = NULL;
    if (kd_shard_open(&sh, dir, 0, &info, seal_every, &e)) _exit(3);
    if (bg && kd_shard_background(sh, &e)) _exit(6);
    size_t j = 0;
    for (int64_t id = from; id < to; id++) {
        while (j < ndone && done[j] < id) j++;
        if (j < ndone && done[j] == id) continue;
        h5gen g;
        h5gen_fill(&g, id, K);
        if (kd_shard_append(sh, &g.s, &e)) _exit(4);
    }
    _exit(kd_shard_close(sh, &e) ? 5 : 0);
}

/* SIGKILL at random moments (mid-append, mid-seal, mid-journal) over and over: after each crash the
 * shard reopens, every sealed sample is intact, and writing on from the done set ends with every id
 * exactly once. */
static void test_random_kills(void) {
    const char *dir = fresh_dir("kills");
    kd_dataset_info info = test_info();
    kd_error e;
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &info, &e), KD_OK);
    const int64_t N = 3000;
    uint64_t rng = 12345;
    int kills = 0;
    for (int round = 0; round < 12; round++) {
        int64_t *done = NULL;
        size_t ndone = 0;
        CU_ASSERT_EQUAL_FATAL(kd_dataset_recover(dir, &done, &ndone, &e), KD_OK);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            child_append_ids(dir, 3, round % 2, 0, N, done, ndone); /* odd rounds seal in the background */
        }
        free(done);
        usleep((useconds_t)(2000 + kd_splitmix64(&rng) % 40000));
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status)) kills++;
        else CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
        /* whatever survived must be exactly what was written */
        kd_shard *sh = NULL;
        CU_ASSERT_EQUAL_FATAL(kd_shard_open(&sh, dir, 0, &info, 3, &e), KD_OK);
        kd_shard_abandon(sh);
    }
    /* finish the job without interruption */
    int64_t *done = NULL;
    size_t ndone = 0;
    CU_ASSERT_EQUAL_FATAL(kd_dataset_recover(dir, &done, &ndone, &e), KD_OK);
    kd_shard *sh = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_shard_open(&sh, dir, 0, &info, 64, &e), KD_OK);
    size_t j = 0;
    for (int64_t id = 0; id < N; id++) {
        while (j < ndone && done[j] < id) j++;
        if (j < ndone && done[j] == id) continue;
        h5gen g;
        h5gen_fill(&g, id, K);
        CU_ASSERT_EQUAL(kd_shard_append(sh, &g.s, &e), KD_OK);
    }
    free(done);
    CU_ASSERT_EQUAL(kd_shard_close(sh, &e), KD_OK);
    finalize_expect_all_once(dir, N);
    fprintf(stderr, "\n  %d of 12 writers killed mid-run; final dataset has all %lld ids once\n", kills, (long long)N);
    CU_ASSERT_TRUE(kills >= 6);
}

/* Files in dir whose name contains `part` (".corrupt", ".tmp."). */
static int count_files(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, part) != NULL;
    if (d) closedir(d);
    return n;
}

static int64_t journal_samples(const char *dir, int rank) {
    char path[600];
    snprintf(path, sizeof path, "%s/shard-%05d.journal", dir, rank);
    char *text = NULL;
    if (kd_read_file(path, &text, NULL, NULL) != KD_OK) return 0;
    long long s = 0;
    const char *p = strstr(text, "\"samples\": ");
    if (p) s = atoll(p + 11);
    free(text);
    return s;
}

/* In a child: write ids [from, to) skipping done ones to shard `rank` (seal_every 3), with the kill
 * hook set to `hook`, then close. Returns the wait status. */
static int child_bg; /* the child seals in the background (kd_shard_background), as generate does */
static int child_write(const char *dir, const char *hook, int64_t from, int64_t to, int seal_every) {
    int64_t *done = NULL;
    size_t ndone = 0;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_dataset_recover(dir, &done, &ndone, &e), KD_OK);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (hook) setenv("KD_DEBUG_KILL_IN_SEAL", hook, 1);
        child_append_ids(dir, seal_every, child_bg, from, to, done, ndone);
    }
    free(done);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

/* The ids recovered from dir must be exactly [0, n). */
static void expect_done_prefix(const char *dir, int64_t n, const char *what) {
    int64_t *ids = NULL;
    size_t m = 0;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_dataset_recover(dir, &ids, &m, &e), KD_OK);
    if ((int64_t)m != n) fprintf(stderr, "\n  %s: %zu samples survived, expected %lld\n", what, m, (long long)n);
    CU_ASSERT_EQUAL(m, (size_t)n);
    for (size_t i = 0; i < m && (int64_t)i < n; i++) CU_ASSERT_EQUAL(ids[i], (int64_t)i);
    free(ids);
}

/* A writer killed (SIGKILL, via the KD_DEBUG_KILL_IN_SEAL hook) at each point of its third seal, or of
 * its compaction: every sample sealed before survives, nothing is moved aside, the interrupted
 * seal's samples are either all there (after the rename) or not at all, and resuming ends with
 * every id exactly once and every sample as written. */
static void test_kill_inside_seal(void) {
    kd_dataset_info info = test_info();
    kd_error e;
    struct {
        const char *hook;
        int64_t survive;
    } cases[] = {{"written:3", 6}, {"closed:3", 6}, {"renamed:3", 9},
                 {"compact-written:1", 10}, {"compact-renamed:1", 10}};
    for (size_t c = 0; c < 2 * sizeof cases / sizeof cases[0]; c++) {
        /* each case twice: sealing inline, then in the background (the next base built as it goes) */
        child_bg = c >= sizeof cases / sizeof cases[0];
        size_t ci = c % (sizeof cases / sizeof cases[0]);
        const char *dir = fresh_dir("sealkill");
        CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &info, &e), KD_OK);
        /* ids 0..9 with seal_every 3: seals at 3, 6, 9, the 4th (1 sample) on close, then the compaction */
        int status = child_write(dir, cases[ci].hook, 0, 10, 3);
        CU_ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        expect_done_prefix(dir, cases[ci].survive, cases[ci].hook);
        CU_ASSERT_EQUAL(count_files(dir, ".corrupt"), 0);
        CU_ASSERT_EQUAL(count_files(dir, ".tmp."), 0);
        /* resume: the rest, then finalize */
        status = child_write(dir, NULL, 0, 16, 3);
        CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CU_ASSERT_EQUAL(kd_dataset_finalize(dir, NULL, &e), KD_OK);
        CU_ASSERT_EQUAL(count_files(dir, ".seg-"), 0);
        int seen[16] = {0};
        CU_ASSERT_EQUAL(check_dataset(dir, 16, seen), 16);
        for (int i = 0; i < 16; i++) CU_ASSERT_EQUAL(seen[i], 1);
    }
    child_bg = 0;
}

/* Many seals, each run killed at a random point of a random seal: after every kill the shard holds
 * at least what its journal said was sealed before the kill (exactly the seals that reached their
 * rename), no file is set aside, and the final dataset has every id once. */
static void test_random_seal_kills(void) {
    const char *dir = fresh_dir("randseal");
    kd_dataset_info info = test_info();
    kd_error e;
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &info, &e), KD_OK);
    static const char *points[] = {"written", "closed", "renamed", "compact-written", "compact-renamed"};
    const int64_t N = 600;
    uint64_t rng = 777;
    int kills = 0;
    for (int round = 0; round < 24; round++) {
        /* what the journal promises, and what the files hold (more after a kill between a rename and
         * the journal update) */
        int64_t promised = journal_samples(dir, 0), before = 0;
        {
            int64_t *ids = NULL;
            size_t m = 0;
            CU_ASSERT_EQUAL_FATAL(kd_dataset_recover(dir, &ids, &m, &e), KD_OK);
            free(ids);
            before = (int64_t)m;
        }
        CU_ASSERT_TRUE(before >= promised);
        int p = (int)(kd_splitmix64(&rng) % 5);
        int64_t nth = p >= 3 ? 1 : 1 + (int64_t)(kd_splitmix64(&rng) % 8);
        char hook[64];
        snprintf(hook, sizeof hook, "%s:%lld", points[p], (long long)nth);
        /* each round writes the next 20 ids in 7 seals of 3 (the last of 2) */
        int64_t to = 20 * (round + 1) < N ? 20 * (round + 1) : N;
        child_bg = round % 2;
        int status = child_write(dir, hook, 0, to, 3);
        child_bg = 0;
        int64_t *ids = NULL;
        size_t m = 0;
        CU_ASSERT_EQUAL_FATAL(kd_dataset_recover(dir, &ids, &m, &e), KD_OK);
        free(ids);
        CU_ASSERT_TRUE((int64_t)m >= before && (int64_t)m >= promised);
        CU_ASSERT_EQUAL(count_files(dir, ".corrupt"), 0);
        if (WIFSIGNALED(status)) {
            kills++;
            if (p <= 2) {
                /* seals before the nth all reached their rename; the nth did only at "renamed" */
                int64_t left = to - before, full = 3 * (nth - 1);
                int64_t last = left - full < 3 ? left - full : 3; /* the nth seal may be the short one on close */
                int64_t sealed_by_child = full + (p == 2 ? last : 0);
                CU_ASSERT_EQUAL((int64_t)m, before + sealed_by_child);
            } else {
                CU_ASSERT_EQUAL((int64_t)m, to); /* killed in the compaction: everything was sealed */
            }
        } else {
            CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
        }
    }
    int status = child_write(dir, NULL, 0, N, 3);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    finalize_expect_all_once(dir, N);
    fprintf(stderr, "\n  %d of 24 writers killed inside a seal or compaction; all %lld ids once\n", kills, (long long)N);
    CU_ASSERT_TRUE(kills >= 12);
}

/* A shard of the earlier append-in-place writer (no segments_through attribute, a journal without
 * last_segment) whose crash left rows the journal does not count: they are cut off on reopen. */
static void test_rows_beyond_journal_are_cut(void) {
    const char *dir = fresh_dir("beyond");
    kd_dataset_info info = test_info();
    kd_error e;
    write_ids(dir, 0, 0, 6, 3);
    char base[600];
    snprintf(base, sizeof base, "%s/shard-00000.h5", dir);
    hid_t hf = H5Fopen(base, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_TRUE_FATAL(hf >= 0);
    CU_ASSERT_TRUE(H5Adelete(hf, "segments_through") >= 0);
    H5Fclose(hf);
    char journal[600];
    snprintf(journal, sizeof journal, "%s/shard-00000.journal", dir);
    h5gen g;
    int64_t tokens = 0;
    for (int id = 0; id < 3; id++) {
        h5gen_fill(&g, id, K);
        tokens += g.s.n;
    }
    char text[128];
    snprintf(text, sizeof text, "{\"samples\": 3, \"tokens\": %lld}\n", (long long)tokens);
    CU_ASSERT_EQUAL(kd_write_file_atomic(journal, text, strlen(text), &e), KD_OK);
    int64_t *ids = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL(kd_dataset_recover(dir, &ids, &n, &e), KD_OK);
    CU_ASSERT_EQUAL(n, 3);
    free(ids);
    kd_shard *sh = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_shard_open(&sh, dir, 0, &info, 3, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_shard_sealed(sh), 3);
    for (int64_t id = 3; id < 5; id++) {
        h5gen_fill(&g, id, K);
        CU_ASSERT_EQUAL(kd_shard_append(sh, &g.s, &e), KD_OK);
    }
    CU_ASSERT_EQUAL(kd_shard_close(sh, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_dataset_finalize(dir, NULL, &e), KD_OK);
    int seen[5] = {0};
    CU_ASSERT_EQUAL(check_dataset(dir, 5, seen), 5);
    for (int i = 0; i < 5; i++) CU_ASSERT_EQUAL(seen[i], 1);
}

/* A shard that cannot be read back is moved aside; its prompts count as not done. */
static void test_corrupt_shard_moved_aside(void) {
    const char *dir = fresh_dir("corrupt");
    kd_error e;
    write_ids(dir, 0, 0, 4, 2);
    char h5[600], journal[600], aside[700];
    snprintf(h5, sizeof h5, "%s/shard-00001.h5", dir);
    snprintf(journal, sizeof journal, "%s/shard-00001.journal", dir);
    snprintf(aside, sizeof aside, "%s/shard-00001.h5.corrupt", dir);
    CU_ASSERT_EQUAL(kd_write_file_atomic(h5, "garbage, not HDF5", 17, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_write_file_atomic(journal, "{\"samples\": 5, \"tokens\": 50}", 28, &e), KD_OK);
    int64_t *ids = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL(kd_dataset_recover(dir, &ids, &n, &e), KD_OK);
    CU_ASSERT_EQUAL(n, 4);
    free(ids);
    CU_ASSERT_TRUE(kd_path_exists(aside));
    CU_ASSERT_FALSE(kd_path_exists(h5));
    CU_ASSERT_FALSE(kd_path_exists(journal));
    /* truncating a real shard's sealed data (a torn write) is caught too */
    char h0[600];
    snprintf(h0, sizeof h0, "%s/shard-00000.h5", dir);
    CU_ASSERT_EQUAL(truncate(h0, 2000), 0);
    CU_ASSERT_EQUAL(kd_dataset_recover(dir, &ids, &n, &e), KD_OK);
    CU_ASSERT_EQUAL(n, 0);
    free(ids);
}

static void test_errors(void) {
    kd_error e;
    kd_dataset_info info = test_info();
    const char *dir = fresh_dir("errs");
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &info, &e), KD_OK);
    kd_dataset_info other = info;
    other.tokenizer_sha256[0] = 'f';
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &other, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "was written with tokenizer sha256 000000000000, this run's is f00000000000");
    KD_ASSERT_CONTAINS(e.msg, "resume with the same tokenizer or use a fresh output folder");
    other = info;
    other.registry_sha256[1] = 'a';
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &other, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "registry sha256");
    other = info;
    other.config_sha256[1] = 'a';
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &other, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "config sha256");
    other = info;
    other.topk = 5;
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &other, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "was written with topk 3, this run uses 5");
    other = info;
    other.process_supervision = 0;
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &other, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "process_supervision on, this run off");
    other.topk = 0;
    CU_ASSERT_EQUAL(kd_dataset_prepare(dir, &other, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "dataset topk must be >= 1, got 0");

    kd_shard *sh = NULL;
    CU_ASSERT_EQUAL(kd_shard_open(&sh, dir, 0, &info, 0, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "seal_every must be >= 1, got 0");
    write_ids(dir, 0, 0, 2, 1);
    other = info;
    other.config_sha256[5] = 'b';
    CU_ASSERT_EQUAL(kd_shard_open(&sh, dir, 0, &other, 1, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "shard-00000.h5 was written with config sha256");

    CU_ASSERT_EQUAL_FATAL(kd_shard_open(&sh, dir, 0, &info, 100, &e), KD_OK);
    h5gen g;
    h5gen_fill(&g, 7, K);
    kd_sample s = g.s;
    s.prompt_len = s.n + 1;
    CU_ASSERT_EQUAL(kd_shard_append(sh, &s, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "shard-00000.h5: prompt id 7: prompt_len 13 outside 0..12 tokens");
    s = g.s;
    s.prompt_id = -2;
    CU_ASSERT_EQUAL(kd_shard_append(sh, &s, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "negative prompt id -2");
    s = g.s;
    s.input_ids = NULL;
    CU_ASSERT_EQUAL(kd_shard_append(sh, &s, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "input_ids and teacher top-k are required");
    g.json[0] = 1;
    CU_ASSERT_EQUAL(kd_shard_append(sh, &g.s, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "json_mask set at token 0 outside loss_mask");
    g.json[0] = 0;
    g.loss[0] = 2;
    CU_ASSERT_EQUAL(kd_shard_append(sh, &g.s, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "loss_mask[0] = 2, masks hold 0 or 1");
    g.loss[0] = 0;
    g.topk_ids[4] = -2;
    CU_ASSERT_EQUAL(kd_shard_append(sh, &g.s, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "teacher top-k id below -1 at 1");
    CU_ASSERT_EQUAL(kd_shard_buffered(sh), 0);
    kd_shard_abandon(sh);

    /* journal troubles */
    char journal[600];
    snprintf(journal, sizeof journal, "%s/shard-00000.journal", dir);
    CU_ASSERT_EQUAL(kd_write_file_atomic(journal, "{oops", 5, &e), KD_OK);
    int64_t *ids;
    size_t n;
    CU_ASSERT_EQUAL(kd_dataset_recover(dir, &ids, &n, &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "shard-00000.journal: unreadable journal");
    CU_ASSERT_EQUAL(kd_write_file_atomic(journal, "{\"samples\": \"x\"}", 16, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_dataset_recover(dir, &ids, &n, &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "journal lacks integer \"samples\"/\"tokens\"");
    char journal9[600];
    snprintf(journal9, sizeof journal9, "%s/shard-00009.journal", dir);
    CU_ASSERT_EQUAL(kd_write_file_atomic(journal9, "{\"samples\": 4, \"tokens\": 9}", 27, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_write_file_atomic(journal, "{\"samples\": 2, \"tokens\": 11}", 28, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_dataset_recover(dir, &ids, &n, &e), KD_ERR_NOTFOUND);
    KD_ASSERT_CONTAINS(e.msg, "shard-00009.h5: the journal says 4 samples are sealed but the shard file is missing");
    unlink(journal9);

    /* the same prompt in two shards */
    write_ids(dir, 4, 1, 2, 1);
    CU_ASSERT_EQUAL(kd_dataset_recover(dir, &ids, &n, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "prompt id 1 is stored twice");
    uint8_t *bits = NULL;
    int64_t nbits = 0, count = 0;
    CU_ASSERT_EQUAL(kd_dataset_recover_done(dir, &bits, &nbits, &count, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "prompt id 1 is stored twice");
    CU_ASSERT_PTR_NULL(bits);
    CU_ASSERT_EQUAL(kd_dataset_finalize(dir, NULL, &e), KD_ERR_INVALID);

    /* reader errors */
    kd_dataset *ds = NULL;
    CU_ASSERT_EQUAL(kd_dataset_open(&ds, dir, &e), KD_ERR_NOTFOUND);
    KD_ASSERT_CONTAINS(e.msg, "no dataset.h5 in this folder; finish or resume the generate run");
    CU_ASSERT_EQUAL(kd_dataset_open(&ds, "/nonexistent/x.h5", &e), KD_ERR_NOTFOUND);
    KD_ASSERT_CONTAINS(e.msg, "/nonexistent/x.h5: no such dataset file");
    const char *txt = kd_test_write("not.h5", "hello");
    CU_ASSERT_EQUAL(kd_dataset_open(&ds, txt, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "not.h5: not an HDF5 file");
}

/* Damage one value of a written shard with the HDF5 API, then read it with the C reader. */
static void patch(const char *file, const char *dset, hid_t type, hsize_t index, const void *value) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    CU_ASSERT_TRUE_FATAL(f >= 0);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    hid_t fs = H5Dget_space(d);
    hsize_t count = 1;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &index, NULL, &count, NULL);
    hid_t ms = H5Screate_simple(1, &count, NULL);
    CU_ASSERT_TRUE(H5Dwrite(d, type, ms, fs, H5P_DEFAULT, value) >= 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    H5Fclose(f);
}

static const char *damaged_shard(const char *name) {
    const char *dir = fresh_dir(name);
    write_ids(dir, 0, 0, 6, 6);
    static char path[8][600];
    static int slot;
    char *p = path[slot++ % 8];
    snprintf(p, 600, "%s/shard-00000.h5", dir);
    return p;
}

static void expect_open_error(const char *file, int code, const char *msg) {
    kd_dataset *ds = NULL;
    kd_error e;
    CU_ASSERT_EQUAL(kd_dataset_open(&ds, file, &e), code);
    KD_ASSERT_CONTAINS(e.msg, file);
    KD_ASSERT_CONTAINS(e.msg, msg);
    kd_dataset_close(ds);
}

static void expect_read_error(const char *file, int flags, const char *msg) {
    kd_dataset *ds = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_dataset_open(&ds, file, &e), KD_OK);
    kd_batch b;
    CU_ASSERT_EQUAL(kd_dataset_read(ds, 0, kd_dataset_count(ds), flags, &b, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, file);
    KD_ASSERT_CONTAINS(e.msg, msg);
    kd_dataset_close(ds);
}

static void test_damaged_files(void) {
    quiet_for_test();
    int64_t v;
    uint8_t u;
    const char *f = damaged_shard("dmg1");
    v = 0;
    patch(f, "/samples/offsets", H5T_NATIVE_INT64, 3, &v);
    expect_open_error(f, KD_ERR_INVALID, "/samples/offsets decreases at sample 2 (11 -> 0)");
    f = damaged_shard("dmg2");
    v = 4;
    patch(f, "/samples/offsets", H5T_NATIVE_INT64, 0, &v);
    expect_open_error(f, KD_ERR_INVALID, "/samples/offsets[0] is 4, expected 0");
    f = damaged_shard("dmg3");
    v = 1000;
    patch(f, "/samples/offsets", H5T_NATIVE_INT64, 6, &v);
    expect_open_error(f, KD_ERR_INVALID, "/tokens/input_ids has 45 rows, expected 1000 from /samples/offsets");
    f = damaged_shard("dmg4");
    u = 2;
    patch(f, "/tokens/json_mask", H5T_NATIVE_UINT8, 0, &u);
    expect_read_error(f, 0, "sample 0 token 0: json_mask = 2 (masks hold 0 or 1)");
    f = damaged_shard("dmg5");
    u = 1;
    patch(f, "/tokens/tool_name_mask", H5T_NATIVE_UINT8, 6, &u); /* sample 1 starts at 5, prompt_len 2 */
    expect_read_error(f, 0, "sample 1 token 1: tool_name_mask = 1 outside loss_mask");
    f = damaged_shard("dmg6");
    v = 99;
    patch(f, "/samples/prompt_len", H5T_NATIVE_INT64, 2, &v);
    expect_read_error(f, 0, "sample 2: prompt_len 99 outside 0..7 tokens");
    f = damaged_shard("dmg7");
    v = 0;
    patch(f, "/text/prompt_offsets", H5T_NATIVE_INT64, 2, &v);
    expect_read_error(f, KD_READ_TEXT, "/text/prompt_offsets is not monotone within /text/prompt at sample 1");
    /* attributes and structure */
    f = damaged_shard("dmg8");
    hid_t h = H5Fopen(f, H5F_ACC_RDWR, H5P_DEFAULT);
    int64_t nine = 9;
    hid_t a = H5Aopen(h, "format_version", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &nine);
    H5Aclose(a);
    H5Fclose(h);
    expect_open_error(f, KD_ERR_UNSUPPORTED, "dataset format version 9, this kdstep reads version 1");
    f = damaged_shard("dmg9");
    h = H5Fopen(f, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(h, "topk");
    H5Fclose(h);
    expect_open_error(f, KD_ERR_INVALID, "missing or invalid topk attribute");
    f = damaged_shard("dmg10");
    h = H5Fopen(f, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(h, "format_version");
    H5Fclose(h);
    expect_open_error(f, KD_ERR_INVALID, "not a kdstep dataset (no format_version attribute)");
    f = damaged_shard("dmg11");
    h = H5Fopen(f, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(h, "/teacher/tail_logprob", H5P_DEFAULT);
    H5Fclose(h);
    expect_open_error(f, KD_ERR_INVALID, "dataset /teacher/tail_logprob missing; not a kdstep dataset or a damaged file");
}

/* The seal-time checksum is XXH64 (seed 0) per column. Outside truth: the vectors were computed with the
 * system's libxxhash 0.8.1 (Debian libxxhash0, XXH64(buf, len, 0) through Python ctypes); the
 * streaming form must not depend on how the bytes are split. */
static void test_xxh64_vectors(void) {
    static uint8_t big[100000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)((i * 7 + 3) & 255);
    uint8_t hundred[100];
    for (int i = 0; i < 100; i++) hundred[i] = (uint8_t)i;
    struct {
        const void *p;
        size_t n;
        uint64_t want;
    } v[] = {{"", 0, 0xef46db3751d8e999ULL}, {"a", 1, 0xd24ec4f1a98c6e5bULL}, {"abc", 3, 0x44bc2cf5ad770999ULL},
             {hundred, 100, 0x6ac1e58032166597ULL}, {big, sizeof big, 0x953e8a6a68df79c4ULL}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        kd_xxh64 h;
        kd_xxh64_init(&h);
        kd_xxh64_update(&h, v[i].p, v[i].n);
        CU_ASSERT_EQUAL(kd_xxh64_final(&h), v[i].want);
        /* the same bytes in uneven pieces */
        kd_xxh64_init(&h);
        for (size_t at = 0, step = 1; at < v[i].n; at += step, step = step * 3 % 61 + 1)
            kd_xxh64_update(&h, (const uint8_t *)v[i].p + at, at + step <= v[i].n ? step : v[i].n - at);
        CU_ASSERT_EQUAL(kd_xxh64_final(&h), v[i].want);
    }
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("h5data", NULL, NULL);
    CU_add_test(s, "shards -> finalize (VDS) -> reader, resume appends, folder moves", test_write_finalize_read);
    CU_add_test(s, "empty dataset", test_empty_dataset);
    CU_add_test(s, "teacher arrays written in place, background seals", test_reserve_teacher);
    CU_add_test(s, "SIGKILL loses only the unsealed tail", test_crash_loses_only_unsealed_tail);
    CU_add_test(s, "12 writers killed at random moments, then resumed", test_random_kills);
    CU_add_test(s, "legacy shard: rows beyond the journal are cut off", test_rows_beyond_journal_are_cut);
    CU_add_test(s, "SIGKILL inside a seal or a compaction keeps every sealed sample", test_kill_inside_seal);
    CU_add_test(s, "SIGKILL at random points of random seals, 24 rounds", test_random_seal_kills);
    CU_add_test(s, "corrupt shards are moved aside", test_corrupt_shard_moved_aside);
    CU_add_test(s, "error messages", test_errors);
    CU_add_test(s, "damaged files: clear errors naming the file", test_damaged_files);
    CU_add_test(s, "seal-time checksum: XXH64 vectors (libxxhash), streaming", test_xxh64_vectors);
    return kd_test_main();
}
