/* CUnit suite: core helpers (errors, hashing, files, progress). */
#include <stdlib.h>
#include <string.h>

#include "kdstep/error.h"
#include "kdstep/fsutil.h"
#include "kdstep/hash.h"
#include "kdstep/progress.h"
#include "kdstep/runtime.h"
#include "testutil.h"

static void test_sha256_vectors(void) {
    char hex[65];
    kd_sha256_hex("", 0, hex);
    CU_ASSERT_STRING_EQUAL(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    kd_sha256_hex("abc", 3, hex);
    CU_ASSERT_STRING_EQUAL(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    kd_sha256_hex(m, strlen(m), hex);
    CU_ASSERT_STRING_EQUAL(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* streaming in odd pieces equals one shot */
    char big[1000];
    for (int i = 0; i < 1000; i++) big[i] = (char)(i * 7);
    kd_sha256 h;
    uint8_t d1[32], d2[32];
    kd_sha256_init(&h);
    for (int i = 0; i < 1000; i += 37) kd_sha256_update(&h, big + i, i + 37 > 1000 ? (size_t)(1000 - i) : 37);
    kd_sha256_final(&h, d1);
    kd_sha256_init(&h);
    kd_sha256_update(&h, big, 1000);
    kd_sha256_final(&h, d2);
    CU_ASSERT_EQUAL(memcmp(d1, d2, 32), 0);
}

static void test_errors(void) {
    kd_error e;
    CU_ASSERT_EQUAL(kd_error_set(&e, KD_ERR_PARSE, "x.json:%d:%d: bad", 3, 4), KD_ERR_PARSE);
    kd_error_prefix(&e, "loading registry: ");
    CU_ASSERT_STRING_EQUAL(e.msg, "loading registry: x.json:3:4: bad");
    CU_ASSERT_EQUAL(kd_error_errno(&e, 28 /* ENOSPC */, "%s: write", "shard.h5"), KD_ERR_NOSPACE);
    KD_ASSERT_CONTAINS(e.msg, "shard.h5: write: No space left on device");
    KD_ASSERT_CONTAINS(e.msg, "--resume");
    CU_ASSERT_EQUAL(kd_error_set(NULL, KD_ERR_IO, "dropped"), KD_ERR_IO);
}

static void test_files(void) {
    kd_error e;
    char p[4096];
    snprintf(p, sizeof p, "%s/a/b c/d", kd_test_tmpdir());
    CU_ASSERT_EQUAL(kd_mkdir_p(p, &e), KD_OK);
    CU_ASSERT_TRUE(kd_is_dir(p));
    char f[4200];
    kd_path_join(f, sizeof f, p, "x.txt");
    CU_ASSERT_EQUAL(kd_write_file_atomic(f, "hello", 5, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_write_file_atomic(f, "world!", 6, &e), KD_OK);
    char *data;
    size_t len;
    CU_ASSERT_EQUAL(kd_read_file(f, &data, &len, &e), KD_OK);
    CU_ASSERT_EQUAL(len, 6);
    CU_ASSERT_STRING_EQUAL(data, "world!");
    free(data);
    CU_ASSERT_EQUAL(kd_read_file("/nonexistent/file", &data, &len, &e), KD_ERR_IO);
    KD_ASSERT_CONTAINS(e.msg, "/nonexistent/file: cannot open: No such file or directory");
    CU_ASSERT_EQUAL(kd_write_file_atomic("/nonexistent/dir/x", "a", 1, &e), KD_ERR_IO);
    KD_ASSERT_CONTAINS(e.msg, "/nonexistent/dir/x.tmp.");
    snprintf(p, sizeof p, "%s/a", kd_test_tmpdir());
    CU_ASSERT_EQUAL(kd_rm_rf(p, &e), KD_OK);
    CU_ASSERT_FALSE(kd_path_exists(p));
}

static void test_progress_format(void) {
    kd_progress p;
    kd_progress_open(&p, "generate", 200, "samples");
    p.done = 50;
    char line[512];
    kd_progress_format(&p, p.start_s + 10.0, "retries 3", 0, line, sizeof line);
    KD_ASSERT_CONTAINS(line, "generate: 50/200 samples (25.0%)");
    KD_ASSERT_CONTAINS(line, "5.00 samples/s");
    KD_ASSERT_CONTAINS(line, "ETA 00:30");
    KD_ASSERT_CONTAINS(line, "| retries 3");
    kd_progress_format(&p, p.start_s + 10.0, NULL, 1, line, sizeof line);
    KD_ASSERT_CONTAINS(line, "[######------------------]  25%");
    p.total = 0;
    kd_progress_format(&p, p.start_s + 10.0, NULL, 0, line, sizeof line);
    KD_ASSERT_CONTAINS(line, "generate: 50 samples");
}

static void test_rng(void) {
    uint64_t a = 42, b = 42;
    for (int i = 0; i < 100; i++) CU_ASSERT_EQUAL(kd_splitmix64(&a), kd_splitmix64(&b));
    double sum = 0;
    for (int i = 0; i < 10000; i++) {
        float u = kd_rand_uniform(&a);
        CU_ASSERT_TRUE(u >= 0 && u < 1);
        sum += u;
    }
    CU_ASSERT_DOUBLE_EQUAL(sum / 10000, 0.5, 0.02);
}

static void test_url_redact(void) {
    char out[256];
    CU_ASSERT_STRING_EQUAL(kd_url_redact(out, sizeof out, "http://alice:pw@127.0.0.1:8000/v1"), "http://***@127.0.0.1:8000/v1");
    CU_ASSERT_STRING_EQUAL(kd_url_redact(out, sizeof out, "https://tok@host/a@b"), "https://***@host/a@b");
    CU_ASSERT_STRING_EQUAL(kd_url_redact(out, sizeof out, "http://host:1/p?x=a@b"), "http://host:1/p?x=a@b");
    CU_ASSERT_STRING_EQUAL(kd_url_redact(out, sizeof out, "http://u:p:q@x@host"), "http://***@host");
    CU_ASSERT_STRING_EQUAL(kd_url_redact(out, sizeof out, "stub"), "stub");
}

static void test_thread_plan(void) {
    static const char *const vars[] = {"KDSTEP_THREADS", "OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"};
    for (int i = 0; i < 4; i++) unsetenv(vars[i]);
    kd_thread_plan p;
    kd_runtime_plan_threads(0, 8, 2, &p); /* 8 CPUs shared by 2 ranks */
    CU_ASSERT_EQUAL(p.threads, 4);
    CU_ASSERT_STRING_EQUAL(p.source, "CPU affinity / ranks sharing it");
    kd_runtime_plan_threads(0, 1, 1, &p); /* bound to one CPU */
    CU_ASSERT_EQUAL(p.threads, 1);
    kd_runtime_plan_threads(0, 2, 3, &p); /* more ranks than CPUs: still one thread */
    CU_ASSERT_EQUAL(p.threads, 1);
    setenv("SLURM_CPUS_ON_NODE", "4", 1); /* Slurm gave the job 4 of the node's 16 CPUs, no cpuset */
    kd_runtime_plan_threads(0, 16, 2, &p);
    CU_ASSERT_EQUAL(p.threads, 2);
    CU_ASSERT_EQUAL(p.cpus, 4);
    CU_ASSERT_STRING_EQUAL(p.source, "SLURM_CPUS_ON_NODE / ranks sharing them");
    kd_runtime_plan_threads(0, 2, 1, &p); /* a cpuset smaller than that: the mask decides */
    CU_ASSERT_EQUAL(p.threads, 2);
    CU_ASSERT_STRING_EQUAL(p.source, "CPU affinity / ranks sharing it");
    unsetenv("SLURM_CPUS_ON_NODE");
    setenv("SLURM_CPUS_PER_TASK", "2", 1);
    kd_runtime_plan_threads(0, 16, 8, &p);
    CU_ASSERT_EQUAL(p.threads, 2);
    CU_ASSERT_STRING_EQUAL(p.source, "SLURM_CPUS_PER_TASK");
    kd_runtime_plan_threads(0, 1, 1, &p); /* never more than the mask allows */
    CU_ASSERT_EQUAL(p.threads, 1);
    setenv("SLURM_CPUS_PER_TASK", "x", 1); /* not a count: ignored */
    kd_runtime_plan_threads(0, 4, 1, &p);
    CU_ASSERT_EQUAL(p.threads, 4);
    setenv("OMP_NUM_THREADS", "3", 1);
    kd_runtime_plan_threads(0, 1, 1, &p);
    CU_ASSERT_EQUAL(p.threads, 3);
    setenv("KDSTEP_THREADS", "5", 1);
    kd_runtime_plan_threads(0, 1, 1, &p);
    CU_ASSERT_EQUAL(p.threads, 5);
    CU_ASSERT_STRING_EQUAL(p.source, "KDSTEP_THREADS");
    kd_runtime_plan_threads(6, 1, 1, &p); /* train.threads wins over everything */
    CU_ASSERT_EQUAL(p.threads, 6);
    CU_ASSERT_STRING_EQUAL(p.source, "train.threads");
    for (int i = 0; i < 4; i++) unsetenv(vars[i]);

    cpu_set_t set;
    CPU_ZERO(&set);
    int cpus[] = {0, 1, 2, 3, 8, 10, 11};
    for (int i = 0; i < 7; i++) CPU_SET(cpus[i], &set);
    char list[64];
    CU_ASSERT_EQUAL(kd_runtime_cpu_list(&set, list, sizeof list), 7);
    CU_ASSERT_STRING_EQUAL(list, "0-3,8,10-11");
    CPU_ZERO(&set);
    CU_ASSERT_EQUAL(kd_runtime_cpu_list(&set, list, sizeof list), 0);
    CU_ASSERT_STRING_EQUAL(list, "");
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("core", NULL, NULL);
    CU_add_test(s, "threads follow the allocation", test_thread_plan);
    CU_add_test(s, "sha256 test vectors", test_sha256_vectors);
    CU_add_test(s, "error records", test_errors);
    CU_add_test(s, "files: atomic write, mkdir -p, errors", test_files);
    CU_add_test(s, "progress line: rate and ETA", test_progress_format);
    CU_add_test(s, "seeded rng", test_rng);
    CU_add_test(s, "URL userinfo redacted", test_url_redact);
    return kd_test_main();
}
