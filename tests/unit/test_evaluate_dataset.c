/* CUnit suite: the evaluation prompt against the generation job's dataset (a suite of its own: the
 * dataset reader and the generation job, which need no checkpoint). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/config.h"
#include "kdstep/evaluate.h"
#include "kdstep/gen.h"
#include "kdstep/h5data.h"
#include "kdstep/student.h"
#include "kdstep/registry.h"
#include "kdstep/synth.h"
#include "kdstep/tokenizer.h"
#define KD_FIXTURE_NO_MODEL
#include "student_fixture.h"
#include "testutil.h"

static kd_config g_cfg;

/* The prompt eval feeds the student is token for token the prompt of the training samples the
 * generation job wrote for the same records (same template, tools and tokenizer), so the student is
 * asked to continue exactly where it learned to answer. */
static void test_prompt_matches_dataset(void) {
    const char *prompts = prompts_file("pgen.jsonl", 16), *ds_dir = out_dir("gen-ds");
    kd_gen_options g = {.prompts_path = prompts, .out_dir = ds_dir, .tools_path = fx_tools_path(),
                        .tokenizer_path = fx_tokenizer_dir(), .cfg = &g_cfg};
    kd_gen_stats gs;
    kd_error err;
    int rc = kd_gen_run(&g, MPI_COMM_WORLD, &gs, &err);
    if (rc) fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, KD_OK);
    kd_dataset *ds = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_dataset_open(&ds, ds_dir, &err), KD_OK);
    int64_t n = kd_dataset_count(ds);
    CU_ASSERT_TRUE(n >= 14); /* the stub teacher answers (almost) every prompt */
    kd_batch b;
    memset(&b, 0, sizeof b);
    CU_ASSERT_EQUAL_FATAL(kd_dataset_read(ds, 0, n, 0, &b, &err), KD_OK);
    /* the prompt records by line */
    json_t *recs[16] = {0};
    FILE *f = fopen(prompts, "r");
    char *line = NULL;
    size_t cap = 0;
    for (int i = 0; i < 16 && getline(&line, &cap, f) > 0; i++) recs[i] = json_loads(line, 0, NULL);
    free(line);
    fclose(f);
    json_t *tools = json_load_file(fx_tools_path(), 0, NULL);
    kd_registry *reg = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_registry_open(&reg, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_registry_load_file(reg, fx_tools_path(), &err), KD_OK);
    json_t *openai = kd_registry_to_openai(reg);
    kd_tokenizer *tok = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_open(&tok, fx_tokenizer_dir(), &err), KD_OK);
    kd_encoding enc = {0};
    int same = 0;
    for (int64_t i = 0; i < n; i++) {
        kd_sample sm;
        kd_batch_sample(&b, i, &sm);
        CU_ASSERT_FATAL(sm.prompt_id >= 0 && sm.prompt_id < 16);
        json_t *msgs = json_pack("[{s:s, s:O}]", "role", "user", "content", json_object_get(recs[sm.prompt_id], "prompt"));
        char *text = NULL;
        size_t len = 0;
        CU_ASSERT_EQUAL(kd_student_render_prompt(msgs, openai, &text, &len, &err), KD_OK);
        CU_ASSERT_EQUAL(kd_tokenizer_encode(tok, text, len, 0, &enc, &err), KD_OK);
        same += (int64_t)enc.count == sm.prompt_len &&
                memcmp(enc.ids, sm.input_ids, sizeof(int32_t) * (size_t)sm.prompt_len) == 0;
        free(text);
        json_decref(msgs);
    }
    CU_ASSERT_EQUAL(same, n);
    kd_encoding_free(&enc);
    kd_tokenizer_close(tok);
    json_decref(openai);
    kd_registry_close(reg);
    json_decref(tools);
    for (int i = 0; i < 16; i++) json_decref(recs[i]);
    kd_batch_free(&b);
    kd_dataset_close(ds);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    kd_config_defaults(&g_cfg);
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("evaluate_dataset", NULL, NULL);
    CU_add_test(s, "eval's prompt tokens equal the generated dataset's", test_prompt_matches_dataset);
    int rc = kd_test_main();
    kd_config_free(&g_cfg);
    MPI_Finalize();
    return rc;
}
