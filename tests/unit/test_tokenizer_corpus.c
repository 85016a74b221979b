/* CUnit suite: the synthetic tokenizer-training corpus (src/text/tokenizer_corpus.c). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/fsutil.h"
#include "kdstep/tokenizer_corpus.h"
#include "testutil.h"

static char *corpus(const json_t *tools, size_t bytes, uint64_t seed, size_t *len) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    kd_error e;
    CU_ASSERT_EQUAL(kd_tokenizer_corpus_write(f, tools, bytes, seed, &e), KD_OK);
    fclose(f);
    *len = n;
    return buf;
}

static void test_corpus(void) {
    json_error_t je;
    json_t *tools = json_load_file(kd_test_src("configs/tools.json"), 0, &je);
    CU_ASSERT_PTR_NOT_NULL_FATAL(tools);
    size_t la, lb, lc, lp;
    char *a = corpus(tools, 300000, 1, &la), *b = corpus(tools, 300000, 1, &lb), *c = corpus(tools, 300000, 2, &lc);
    CU_ASSERT_TRUE(la >= 300000 && la < 320000);
    CU_ASSERT_TRUE(la == lb && !memcmp(a, b, la));
    CU_ASSERT_FALSE(la == lc && !memcmp(a, c, la));
    /* conversations over the registry's tools in the chat template */
    KD_ASSERT_CONTAINS(a, "<|im_start|>system\n# Tools\n");
    KD_ASSERT_CONTAINS(a, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {");
    KD_ASSERT_CONTAINS(a, "<|im_start|>user\n<tool_response>\n{\"status\": ");
    KD_ASSERT_CONTAINS(a, "<think>\n\n</think>\n\n");
    KD_ASSERT_CONTAINS(a, "こんにちは");
    char *p = corpus(NULL, 50000, 1, &lp);
    CU_ASSERT_PTR_NULL(strstr(p, "<tool_call>"));
    CU_ASSERT_TRUE(lp >= 50000);
    free(a);
    free(b);
    free(c);
    free(p);
    json_decref(tools);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("tokenizer_corpus", NULL, NULL);
    CU_add_test(s, "deterministic tool-use corpus", test_corpus);
    return kd_test_main();
}
