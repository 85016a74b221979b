/* CUnit suite: YAML guards (src/core/yamlsafe.c), through the config and job loaders that use them. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kdstep/config.h"
#include "kdstep/job.h"
#include "kdstep/yamlsafe.h"
#include "testutil.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_aliases_refused(void) {
    kd_config c;
    kd_error e;
    kd_config_defaults(&c);
    CU_ASSERT_EQUAL(kd_config_load_string(&c, "train:\n  steps: &n 7\n  micro_batch: *n\n", "a.yaml", &e), KD_ERR_UNSUPPORTED);
    KD_ASSERT_CONTAINS(e.msg, "a.yaml:2:10: YAML anchor &n is not supported");
    /* a billion-laughs bomb: refused at its first anchor, in bounded time and memory */
    char *bomb = malloc(1 << 20);
    size_t n = (size_t)sprintf(bomb, "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (int i = 1; i < 10; i++)
        n += (size_t)sprintf(bomb + n, "%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n", 'a' + i, 'a' + i, 'a' + i - 1, 'a' + i - 1,
                             'a' + i - 1, 'a' + i - 1, 'a' + i - 1, 'a' + i - 1, 'a' + i - 1, 'a' + i - 1, 'a' + i - 1);
    double t0 = now_s();
    CU_ASSERT_EQUAL(kd_config_load_string(&c, bomb, "bomb.yaml", &e), KD_ERR_UNSUPPORTED);
    KD_ASSERT_CONTAINS(e.msg, "bomb.yaml:1:4: YAML anchor &a");
    kd_job j;
    kd_job_defaults(&j);
    CU_ASSERT_EQUAL(kd_job_load_string(&j, bomb, "bomb-job.yaml", &e), KD_ERR_UNSUPPORTED);
    kd_job_free(&j);
    CU_ASSERT_TRUE(now_s() - t0 < 1.0);
    free(bomb);
    kd_config_free(&c);
}

static void test_depth_capped(void) {
    /* 100k nested '[': the old loader took 23 s (quadratic); refused at level 17 now */
    size_t n = 100000;
    char *deep = malloc(2 * n + 16);
    memcpy(deep, "train: ", 7);
    memset(deep + 7, '[', n);
    memset(deep + 7 + n, ']', n);
    deep[7 + 2 * n] = 0;
    kd_config c;
    kd_error e;
    kd_config_defaults(&c);
    double t0 = now_s();
    CU_ASSERT_EQUAL(kd_config_load_string(&c, deep, "deep.yaml", &e), KD_ERR_UNSUPPORTED);
    CU_ASSERT_TRUE(now_s() - t0 < 1.0);
    KD_ASSERT_CONTAINS(e.msg, "deep.yaml:1:23: YAML nested more than 16 levels deep");
    free(deep);
    /* nesting that kdstep files use is fine */
    CU_ASSERT_EQUAL(kd_config_load_string(&c, "process_supervision:\n  tool_names: [a, b]\n", "ok.yaml", &e), KD_OK);
    kd_config_free(&c);
}

static void test_duplicate_keys(void) {
    kd_config c;
    kd_error e;
    kd_config_defaults(&c);
    CU_ASSERT_EQUAL(kd_config_load_string(&c, "train:\n  steps: 5\n  lr: 0.1\n  steps: 9\n", "dup.yaml", &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "dup.yaml:4:3: duplicate key 'steps' (first given at line 2)");
    CU_ASSERT_EQUAL(kd_config_load_string(&c, "train:\n  steps: 5\nkd:\n  weight: 1\ntrain:\n  lr: 0.1\n", "dup2.yaml", &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "dup2.yaml:5:1: duplicate key 'train' (first given at line 1)");
    kd_config_free(&c);
    kd_job j;
    kd_job_defaults(&j);
    CU_ASSERT_EQUAL(kd_job_load_string(&j, "job:\n  name: a\n  name: b\n", "dupjob.yaml", &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "dupjob.yaml:3:3: duplicate key 'name' (first given at line 2)");
    kd_job_free(&j);
}

static void test_empty_job(void) {
    kd_job j;
    kd_error e;
    kd_job_defaults(&j);
    CU_ASSERT_EQUAL(kd_job_load_string(&j, "", "empty.yaml", &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "empty.yaml: the job file is empty");
    CU_ASSERT_EQUAL(kd_job_load_string(&j, "# only a comment\n\n", "c.yaml", &e), KD_ERR_INVALID);
    CU_ASSERT_EQUAL(kd_job_load_string(&j, "[a]: 1\n", "k.yaml", &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "k.yaml:1:1: keys must be plain words");
    kd_job_free(&j);
}

/* kd_yaml_load, which both loaders start with: a document whose nodes outlive the parser, and the
 * precheck's refusals and syntax errors named by file, line and column, the loaders' messages alike. */
static void test_load(void) {
    yaml_document_t doc;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_yaml_load("train:\n  steps: 7\n  tools: [a, b]\n", "ok.yaml", &doc, &e), KD_OK);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_EQUAL_FATAL(root->type, YAML_MAPPING_NODE);
    yaml_node_t *k = yaml_document_get_node(&doc, root->data.mapping.pairs.start->key);
    yaml_node_t *v = yaml_document_get_node(&doc, root->data.mapping.pairs.start->value);
    CU_ASSERT_STRING_EQUAL((const char *)k->data.scalar.value, "train");
    CU_ASSERT_EQUAL(v->type, YAML_MAPPING_NODE);
    yaml_node_t *steps = yaml_document_get_node(&doc, v->data.mapping.pairs.start->value);
    CU_ASSERT_STRING_EQUAL((const char *)steps->data.scalar.value, "7");
    yaml_document_delete(&doc);
    /* an empty text is a document without a root */
    CU_ASSERT_EQUAL_FATAL(kd_yaml_load("", "empty.yaml", &doc, &e), KD_OK);
    CU_ASSERT_PTR_NULL(yaml_document_get_root_node(&doc));
    yaml_document_delete(&doc);
    CU_ASSERT_EQUAL(kd_yaml_load("a: [1, 2\n", "bad.yaml", &doc, &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "bad.yaml:2:1: YAML syntax error: did not find expected ',' or ']' while parsing a flow sequence");
    CU_ASSERT_EQUAL(kd_yaml_load("a: &x 1\nb: *x\n", "alias.yaml", &doc, &e), KD_ERR_UNSUPPORTED);
    KD_ASSERT_CONTAINS(e.msg, "alias.yaml:1:4: YAML anchor &x is not supported");
    /* the config and job loaders report a syntax error the same way */
    kd_config c;
    kd_config_defaults(&c);
    CU_ASSERT_EQUAL(kd_config_load_string(&c, "a: [1, 2\n", "c.yaml", &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "c.yaml:2:1: YAML syntax error: did not find expected");
    kd_config_free(&c);
    kd_job j;
    kd_job_defaults(&j);
    CU_ASSERT_EQUAL(kd_job_load_string(&j, "a: [1, 2\n", "j.yaml", &e), KD_ERR_PARSE);
    KD_ASSERT_CONTAINS(e.msg, "j.yaml:2:1: YAML syntax error: did not find expected");
    kd_job_free(&j);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("yamlsafe", NULL, NULL);
    CU_add_test(s, "anchors and aliases refused (alias bomb)", test_aliases_refused);
    CU_add_test(s, "nesting depth capped", test_depth_capped);
    CU_add_test(s, "duplicate keys name both lines", test_duplicate_keys);
    CU_add_test(s, "an empty job file is an error", test_empty_job);
    CU_add_test(s, "kd_yaml_load: a document, refusals and syntax errors", test_load);
    return kd_test_main();
}
