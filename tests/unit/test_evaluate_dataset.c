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
#include "kdstep/window.h"
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

/* Full context (train.prompt_window 0, the default) over prompts that carry their own tools: the
 * training window of every sample that fits seq_len starts at 0, eval keeps the whole prompt, and
 * the prompt eval renders and encodes is token for token the prompt of the training sample: the
 * student is shown exactly the rendered prompt it trained on, every tool's schema included. */
static void test_full_context_own_tools(void) {
    const char *prompts = out_dir("pool.jsonl"), *ds_dir = out_dir("gen-pool");
    kd_registry *pool = NULL;
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_registry_open(&pool, &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_registry_load_file(pool, kd_test_src("configs/tool_pool.train.json"), &err), KD_OK);
    kd_synth_options so = {2, 4, 0};
    FILE *f = fopen(prompts, "w");
    CU_ASSERT_EQUAL_FATAL(kd_synth_write_opts(pool, &so, 3, 12, f, &err), KD_OK);
    fclose(f);
    kd_registry_close(pool);
    kd_gen_options g = {.prompts_path = prompts, .out_dir = ds_dir, .tools_path = fx_tools_path(),
                        .tokenizer_path = fx_tokenizer_dir(), .cfg = &g_cfg};
    kd_gen_stats gs;
    int rc = kd_gen_run(&g, MPI_COMM_WORLD, &gs, &err);
    if (rc) fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, KD_OK);
    kd_dataset *ds = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_dataset_open(&ds, ds_dir, &err), KD_OK);
    int64_t n = kd_dataset_count(ds);
    CU_ASSERT_TRUE(n >= 10);
    kd_batch b;
    memset(&b, 0, sizeof b);
    CU_ASSERT_EQUAL_FATAL(kd_dataset_read(ds, 0, n, 0, &b, &err), KD_OK);
    json_t *recs[12] = {0};
    f = fopen(prompts, "r");
    char *line = NULL;
    size_t cap = 0;
    for (int i = 0; i < 12 && getline(&line, &cap, f) > 0; i++) recs[i] = json_loads(line, 0, NULL);
    free(line);
    fclose(f);
    kd_tokenizer *tok = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_open(&tok, fx_tokenizer_dir(), &err), KD_OK);
    kd_encoding enc = {0};
    int64_t longest = 0;
    for (int64_t i = 0; i < n; i++) {
        kd_sample sm;
        kd_batch_sample(&b, i, &sm);
        longest = sm.n > longest ? sm.n : longest;
    }
    const int64_t T = longest, max_new = 64; /* a seq_len that fits every sample, as `seq_len: 0` picks */
    int same = 0, tools_seen = 0;
    for (int64_t i = 0; i < n; i++) {
        kd_sample sm;
        kd_batch_sample(&b, i, &sm);
        json_t *rec = recs[sm.prompt_id];
        CU_ASSERT_EQUAL(kd_train_window_start(sm.n, sm.prompt_len, 0, T), 0);
        json_t *msgs = json_pack("[{s:s, s:O}]", "role", "user", "content", json_object_get(rec, "prompt"));
        kd_registry *own = NULL;
        CU_ASSERT_EQUAL_FATAL(kd_registry_from_json(&own, json_object_get(rec, "tools"), "rec", &err), KD_OK);
        json_t *openai = kd_registry_to_openai(own); /* what kd_eval_run passes for a prompt's own tools */
        char *text = NULL;
        size_t len = 0;
        CU_ASSERT_EQUAL(kd_student_render_prompt(msgs, openai, &text, &len, &err), KD_OK);
        CU_ASSERT_EQUAL(kd_tokenizer_encode(tok, text, len, 0, &enc, &err), KD_OK);
        /* eval keeps the whole prompt when it fits T - max_new */
        int64_t keep = kd_eval_prompt_keep(0, T + max_new, max_new);
        int64_t skip = (int64_t)enc.count > keep ? (int64_t)enc.count - keep : 0;
        same += skip == 0 && (int64_t)enc.count == sm.prompt_len &&
                memcmp(enc.ids, sm.input_ids, sizeof(int32_t) * (size_t)sm.prompt_len) == 0;
        /* every offered tool's name is in the prompt the student reads */
        size_t k;
        json_t *t;
        int all = 1;
        json_array_foreach(json_object_get(rec, "tools"), k, t)
            all &= strstr(text, json_string_value(json_object_get(json_object_get(t, "function"), "name"))) != NULL;
        tools_seen += all;
        free(text);
        json_decref(openai);
        kd_registry_close(own);
        json_decref(msgs);
    }
    CU_ASSERT_EQUAL(same, n);
    CU_ASSERT_EQUAL(tools_seen, n);
    /* the older regime: a window of P keeps the prompt's last P tokens, in training and eval alike */
    CU_ASSERT_EQUAL(kd_train_window_start(500, 400, 128, 320), 272);
    CU_ASSERT_EQUAL(kd_eval_prompt_keep(128, 320, 96), 128);
    /* full context, a sample longer than T: its last T tokens; eval keeps T - max_new */
    CU_ASSERT_EQUAL(kd_train_window_start(1000, 900, 0, 768), 232);
    CU_ASSERT_EQUAL(kd_eval_prompt_keep(0, 768, 96), 672);
    kd_encoding_free(&enc);
    kd_tokenizer_close(tok);
    for (int i = 0; i < 12; i++) json_decref(recs[i]);
    kd_batch_free(&b);
    kd_dataset_close(ds);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    kd_config_defaults(&g_cfg);
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("evaluate_dataset", NULL, NULL);
    CU_add_test(s, "eval's prompt tokens equal the generated dataset's", test_prompt_matches_dataset);
    CU_add_test(s, "full context over prompts with their own tools", test_full_context_own_tools);
    int rc = kd_test_main();
    kd_config_free(&g_cfg);
    MPI_Finalize();
    return rc;
}
