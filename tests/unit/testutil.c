#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kdstep/fsutil.h"
#include "kdstep/h5data.h"

static char g_tmp[256];

const char *kd_test_src(const char *rel) {
    static char bufs[8][4096];
    static int k;
    char *b = bufs[k++ & 7];
    const char *root = getenv("KD_SOURCE_DIR");
    snprintf(b, 4096, "%s/%s", root ? root : KD_SOURCE_DIR, rel);
    return b;
}

const char *kd_test_shared_data(void) {
    static char b[4096];
    const char *env = getenv("KD_SHARED_DATA");
    if (env) snprintf(b, sizeof b, "%s", env);
    else snprintf(b, sizeof b, "%s", kd_test_src("../shared/data"));
    return kd_is_dir(b) ? b : NULL;
}

static void cleanup(void) {
    if (g_tmp[0]) kd_rm_rf(g_tmp, NULL);
}

const char *kd_test_tmpdir(void) {
    if (!g_tmp[0]) {
        snprintf(g_tmp, sizeof g_tmp, "/tmp/kdtest.XXXXXX");
        if (!mkdtemp(g_tmp)) abort();
        atexit(cleanup);
    }
    return g_tmp;
}

const char *kd_test_write(const char *name, const char *text) {
    static char bufs[8][4096];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 4096, "%s/%s", kd_test_tmpdir(), name);
    FILE *f = fopen(b, "wb");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
    return b;
}

void kd_test_skip(const char *why) { fprintf(stderr, "\n  SKIP: %s\n", why); }

/* KD_TEST_SKIP="a|b|...": tests whose name contains one of these are not run (and say so). For
 * runs where a test's premise does not hold, e.g. timing bounds under an emulator (tests/cross). */
static void skip_by_env(void) {
    const char *env = getenv("KD_TEST_SKIP");
    if (!env || !*env) return;
    CU_set_fail_on_inactive(CU_FALSE);
    for (CU_pSuite s = CU_get_registry()->pSuite; s; s = s->pNext)
        for (CU_pTest t = s->pTest; t; t = t->pNext)
            for (const char *p = env; *p;) {
                const char *bar = strchr(p, '|');
                size_t n = bar ? (size_t)(bar - p) : strlen(p);
                char pat[256];
                snprintf(pat, sizeof pat, "%.*s", (int)n, p);
                if (n && strstr(t->pName, pat)) {
                    CU_set_test_active(t, CU_FALSE);
                    fprintf(stderr, "  SKIP (KD_TEST_SKIP): %s: %s\n", s->pName, t->pName);
                    break;
                }
                p += n + (bar ? 1 : 0);
            }
}

int kd_test_main(void) {
    skip_by_env();
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (run == 0) {
        fprintf(stderr, "no test ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}

kd_shard *kd_test_new_shard(const char *name, int topk, int seal_every, char *dir, size_t cap) {
    snprintf(dir, cap, "%s/%s", kd_test_tmpdir(), name);
    kd_dataset_info info;
    kd_dataset_info_init(&info);
    info.topk = topk;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_dataset_prepare(dir, &info, &e), KD_OK);
    kd_shard *sh = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_shard_open(&sh, dir, 0, &info, seal_every, &e), KD_OK);
    return sh;
}
