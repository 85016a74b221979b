/* CUnit suite: job files (src/core/job.c). */
#include <string.h>

#include "kdstep/job.h"
#include "testutil.h"

/* A job file shipped in jobs/, loaded over the defaults; its error printed when it does not load. */
static int load_shipped(kd_job *j, const char *rel, kd_error *e) {
    kd_job_defaults(j);
    int rc = kd_job_load_file(j, kd_test_src(rel), e);
    if (rc) fprintf(stderr, "%s: %s\n", rel, e->msg);
    return rc;
}

static void test_demo_job(void) {
    kd_job j;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(load_shipped(&j, "jobs/demo.yaml", &e), KD_OK);
    CU_ASSERT_STRING_EQUAL(j.name, "demo");
    CU_ASSERT_STRING_EQUAL(j.workdir, "runs/demo");
    CU_ASSERT_EQUAL(j.ranks, 2);
    CU_ASSERT_EQUAL(j.synth_count, 2000);
    CU_ASSERT_STRING_EQUAL(j.prompts_file, "");
    CU_ASSERT_TRUE(j.overrides.count >= 1);
    CU_ASSERT_STRING_EQUAL(j.tools, "configs/tools.json");
    char p[KD_CFG_PATH];
    kd_job_path(&j, "dataset", p);
    CU_ASSERT_STRING_EQUAL(p, "runs/demo/dataset");
    kd_job_free(&j);
}

static void test_unseen_job(void) {
    kd_job j;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(load_shipped(&j, "jobs/unseen.yaml", &e), KD_OK);
    /* the regime of issue #17: own tools per prompt, held-out tools, BFCL */
    CU_ASSERT_STRING_EQUAL(j.tools_per_prompt, "2-4");
    CU_ASSERT_STRING_EQUAL(j.tools, "configs/tool_pool.train.json");
    CU_ASSERT_STRING_EQUAL(j.heldout_tools, "configs/tool_pool.heldout.json");
    CU_ASSERT_EQUAL(j.heldout_tools_count, 100);
    CU_ASSERT_STRING_EQUAL(j.bfcl_dir, "../shared/data/bfcl");
    CU_ASSERT_EQUAL(j.bfcl_max, 25);
    char p[KD_CFG_PATH];
    kd_job_path(&j, "dataset", p);
    CU_ASSERT_STRING_EQUAL(p, "runs/unseen/dataset");
    kd_job_free(&j);
}

/* jobs/quality.yaml: the unseen-tools regime at scale, with made-up names for half the training
 * prompts and the context LM term; prompts.rename_tools is a share 0..100 */
static void test_quality_job(void) {
    kd_job j;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(load_shipped(&j, "jobs/quality.yaml", &e), KD_OK);
    CU_ASSERT_STRING_EQUAL(j.tools_per_prompt, "2-4");
    CU_ASSERT_EQUAL(j.rename_tools, 50);
    CU_ASSERT_EQUAL(j.bfcl_max, 0);
    int ctx = 0;
    for (int i = 0; i < j.overrides.count; i++) ctx |= strcmp(j.overrides.items[i], "train.context_lm_weight=0.5") == 0;
    CU_ASSERT_TRUE(ctx);
    kd_job_free(&j);
    kd_job_defaults(&j);
    CU_ASSERT_NOT_EQUAL(kd_job_load_string(&j, "prompts:\n  rename_tools: 101\n", "j.yaml", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "j.yaml:2:17: prompts.rename_tools: value 101 is out of range");
    kd_job_free(&j);
}

/* jobs/onpolicy.yaml: two on-policy rounds of 80 steps, the overrides a mixed round needs */
static void test_onpolicy_job(void) {
    kd_job j;
    kd_error e;
    kd_job_defaults(&j);
    CU_ASSERT_EQUAL(j.onpolicy_rounds, 0); /* off unless the job asks */
    int rc = kd_job_load_file(&j, kd_test_src("jobs/onpolicy.yaml"), &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    CU_ASSERT_EQUAL_FATAL(rc, KD_OK);
    CU_ASSERT_EQUAL(j.onpolicy_rounds, 2);
    CU_ASSERT_EQUAL(j.onpolicy_steps, 80);
    kd_config c;
    kd_config_defaults(&c);
    snprintf(j.config, sizeof j.config, "%s", kd_test_src(j.config)); /* relative to the source tree */
    CU_ASSERT_EQUAL_FATAL(kd_job_config(&j, &c, &e), KD_OK);
    CU_ASSERT_DOUBLE_EQUAL(c.generate.student_share, 0.5, 1e-12);
    CU_ASSERT_STRING_EQUAL(c.generate.policy, "teacher"); /* the rounds set mixed themselves */
    CU_ASSERT_STRING_EQUAL(c.kd.onpolicy_divergence, "reverse_kl");
    kd_config_free(&c);
    kd_job_free(&j);
    kd_job_defaults(&j);
    CU_ASSERT_EQUAL(kd_job_load_string(&j, "onpolicy:\n  round: 2\n", "x.yaml", &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "round");
    kd_job_free(&j);
}

static void test_job_config_overrides(void) {
    kd_job j;
    kd_error e;
    kd_config c;
    kd_job_defaults(&j);
    snprintf(j.config, sizeof j.config, "%s", kd_test_src("configs/process_supervision.yaml"));
    CU_ASSERT_EQUAL(kd_job_load_string(&j, "overrides: [train.steps=7, kd.divergence=jsd]\n", "j.yaml", &e), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_job_config(&j, &c, &e), KD_OK);
    CU_ASSERT_EQUAL(c.train.steps, 7);
    CU_ASSERT_STRING_EQUAL(c.kd.divergence, "jsd");
    kd_config_free(&c);
    CU_ASSERT_EQUAL(kd_job_load_string(&j, "overrides: [train.stepz=7]\n", "j.yaml", &e), KD_OK);
    snprintf(j.path, sizeof j.path, "j.yaml");
    CU_ASSERT_NOT_EQUAL(kd_job_config(&j, &c, &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "j.yaml: overrides[0]: --set train.stepz=7:2:3: unknown key 'stepz' in section 'train' (did you mean 'steps'?)");
    kd_config_free(&c);
    kd_job_free(&j);
}

static void test_job_errors(void) {
    kd_job j;
    kd_error e;
    kd_job_defaults(&j);
    CU_ASSERT_NOT_EQUAL(kd_job_load_string(&j, "job:\n  nmae: x\n", "j.yaml", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "j.yaml:2:3: unknown key 'nmae' in 'job' (did you mean 'name'?)");
    CU_ASSERT_NOT_EQUAL(kd_job_load_string(&j, "promts:\n  file: x\n", "j.yaml", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "j.yaml:1:1: unknown key 'promts' (did you mean 'prompts'?)");
    CU_ASSERT_NOT_EQUAL(kd_job_load_string(&j, "job:\n  ranks: two\n", "j.yaml", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "j.yaml:2:10: job.ranks: expected an integer, got 'two'");
    CU_ASSERT_NOT_EQUAL(kd_job_load_string(&j, "overrides: x\n", "j.yaml", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "j.yaml:1:12: overrides: expected a list");
    kd_job_free(&j);
}

static void shape_of(const char *yaml, const char *want) {
    kd_job j;
    kd_error e;
    char text[256];
    kd_job_defaults(&j);
    CU_ASSERT_EQUAL_FATAL(kd_job_load_string(&j, yaml, "shape.yaml", &e), KD_OK);
    kd_job_sbatch_shape(&j, text, sizeof text);
    CU_ASSERT_STRING_EQUAL(text, want);
    kd_job_free(&j);
}

static void test_job_sbatch_shape(void) {
    shape_of("job:\n  name: x\n", "--ntasks=2\n");
    shape_of("job:\n  ranks: 8\n", "--ntasks=8\n");
    shape_of("job:\n  ranks: 8\n  nodes: 2\n", "--nodes=2\n--ntasks=8\n");
    shape_of("job:\n  ranks: 8\n  nodes: 4\n  tasks_per_node: 8\n  cpus_per_task: 4\n",
             "--nodes=4\n--ntasks-per-node=8\n--cpus-per-task=4\n");
    shape_of("job:\n  cpus_per_task: 2\n", "--ntasks=2\n--cpus-per-task=2\n");
    kd_job j;
    kd_error e;
    kd_job_defaults(&j);
    CU_ASSERT_EQUAL(j.tokenizer_vocab_size, 8192); /* jobs/quickstart.sh's default */
    CU_ASSERT_NOT_EQUAL(kd_job_load_string(&j, "job:\n  nodes: -1\n", "j.yaml", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "j.yaml:2:10: job.nodes: value -1 is out of range");
    CU_ASSERT_NOT_EQUAL(kd_job_load_string(&j, "job:\n  task_per_node: 2\n", "j.yaml", &e), KD_OK);
    KD_ASSERT_CONTAINS(e.msg, "did you mean 'tasks_per_node'?");
    kd_job_free(&j);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("job", NULL, NULL);
    CU_add_test(s, "jobs/demo.yaml loads", test_demo_job);
    CU_add_test(s, "jobs/unseen.yaml loads", test_unseen_job);
    CU_add_test(s, "jobs/quality.yaml loads", test_quality_job);
    CU_add_test(s, "jobs/onpolicy.yaml loads", test_onpolicy_job);
    CU_add_test(s, "config + overrides", test_job_config_overrides);
    CU_add_test(s, "errors name file:line:column", test_job_errors);
    CU_add_test(s, "launch shape as sbatch options", test_job_sbatch_shape);
    return kd_test_main();
}
