/* Helpers shared by the CUnit suites. */
#ifndef KD_TESTUTIL_H
#define KD_TESTUTIL_H

#include <stddef.h>

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>

/* Path of a file in the source tree (KD_SOURCE_DIR), in a static buffer rotated 8 ways. */
const char *kd_test_src(const char *rel);
/* ../shared/data next to the source tree, or NULL when absent (tests then skip, saying so). */
const char *kd_test_shared_data(void);
/* A fresh temporary directory (removed at exit). */
const char *kd_test_tmpdir(void);
/* Write text to a file in the temp dir; returns its path (static buffer rotated 8 ways). */
const char *kd_test_write(const char *name, const char *text);
/* A new dataset folder `name` in the temp dir (the default dataset info with top-k `topk`) and its
 * shard 0 open, sealing every `seal_every` samples; the folder's path goes to dir[cap]. Asserts
 * (fatally) that both succeed. */
struct kd_shard *kd_test_new_shard(const char *name, int topk, int seal_every, char *dir, size_t cap);
/* Print a skip notice once. */
void kd_test_skip(const char *why);
/* Run all registered suites in basic mode; returns the process exit code. */
int kd_test_main(void);

#define KD_ASSERT_CONTAINS(hay, needle)                                                                 \
    do {                                                                                                \
        const char *h_ = (hay), *n_ = (needle);                                                         \
        int ok_ = h_ && n_ && strstr(h_, n_) != NULL;                                                   \
        if (!ok_) fprintf(stderr, "\n  expected \"%s\" to contain \"%s\"\n", h_ ? h_ : "(null)", n_);  \
        CU_ASSERT_TRUE(ok_);                                                                            \
    } while (0)

#endif
