/* CUnit suite: kd_eval_run (src/eval/evaluate.c) on one MPI rank (singleton init).
 * Outside truth: the report must equal a fresh kd_scorer over the predictions.jsonl eval wrote, and
 * the predictions must be what the student module answers for each prompt. The np1 == np2 check is
 * tests/mpi/eval.sh. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/config.h"
#include "kdstep/evaluate.h"
#include "kdstep/registry.h"
#include "kdstep/score.h"
#include "kdstep/student.h"
#include "kdstep/synth.h"
#include "student_fixture.h"
#include "testutil.h"

static kd_config g_cfg;

static json_t *load_json(const char *dir, const char *name) {
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return json_load_file(p, 0, NULL);
}

static void test_end_to_end(void) {
    const char *ckpt = fx_checkpoint("ck-eval", 0, 42, 7), *prompts = prompts_file("p12.jsonl", 12);
    const char *out = out_dir("ev-e2e");
    g_cfg.eval.max_new_tokens = 24;
    g_cfg.train.prompt_window = 4096; /* whole prompts, so the shared tools block is reused from the cache */
    kd_eval_options o = {.model_dir = ckpt, .prompts_path = prompts, .tools_path = fx_tools_path(), .out_dir = out, .cfg = &g_cfg};
    char *report = NULL;
    kd_error err;
    int rc = kd_eval_run(&o, MPI_COMM_WORLD, &report, &err);
    if (rc) fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, KD_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(report);

    /* the printed report, report.json and a fresh scorer over predictions.jsonl agree */
    json_t *printed = json_loads(report, 0, NULL), *file = load_json(out, "report.json");
    kd_scorer *s = NULL;
    char preds[4300];
    snprintf(preds, sizeof preds, "%s/predictions.jsonl", out);
    CU_ASSERT_EQUAL_FATAL(kd_scorer_open(&s, prompts, fx_tools_path(), &err), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_scorer_add_file(s, preds, &err), KD_OK);
    json_t *again = kd_scorer_report(s);
    kd_scorer_close(s);
    CU_ASSERT_TRUE(json_equal(printed, file));
    /* report.json is written as `kdstep score` prints it (6 significant digits) */
    char *again_text = json_dumps(again, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    json_t *again_rounded = json_loads(again_text, 0, NULL);
    CU_ASSERT_TRUE(json_equal(again_rounded, file));
    free(again_text);
    json_decref(again_rounded);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(file, "count")), 12);

    /* predictions in prompt order, each the student's own answer to that prompt */
    kd_student *st = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_student_open(&st, ckpt, &err), KD_OK);
    st->max_prompt_tokens = (int)g_cfg.train.prompt_window; /* eval's prompt window */
    json_t *tools = json_load_file(fx_tools_path(), 0, NULL);
    FILE *pf = fopen(prompts, "r"), *qf = fopen(preds, "r");
    char *pl = NULL, *ql = NULL;
    size_t pc = 0, qc = 0;
    int lines = 0, same = 0;
    while (getline(&pl, &pc, pf) > 0 && getline(&ql, &qc, qf) > 0) {
        json_t *p = json_loads(pl, 0, NULL), *q = json_loads(ql, 0, NULL);
        json_t *msgs = json_pack("[{s:s, s:O}]", "role", "user", "content", json_object_get(p, "prompt"));
        kd_sampler g = {0};
        kd_student_stats ss;
        char *text = NULL;
        CU_ASSERT_EQUAL(kd_student_answer(st, msgs, tools, 24, &g, &text, &ss, &err), KD_OK);
        same += json_equal(json_object_get(p, "id"), json_object_get(q, "id")) && text &&
                strcmp(text, json_string_value(json_object_get(q, "text"))) == 0;
        lines++;
        free(text);
        json_decref(msgs);
        json_decref(p);
        json_decref(q);
    }
    CU_ASSERT_EQUAL(lines, 12);
    CU_ASSERT_EQUAL(same, 12);
    free(pl);
    free(ql);
    fclose(pf);
    fclose(qf);
    json_decref(tools);
    kd_student_close(st);

    /* eval.json carries the decoding figures */
    json_t *info = load_json(out, "eval.json");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(info, "count")), 12);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(info, "ranks")), 1);
    CU_ASSERT_TRUE(json_integer_value(json_object_get(info, "generated_tokens")) >= 12);
    CU_ASSERT_TRUE(json_integer_value(json_object_get(info, "reused_prompt_tokens")) > 0);
    char md[4300];
    snprintf(md, sizeof md, "%s/report.md", out);
    CU_ASSERT_TRUE(kd_path_exists(md));
    json_decref(info);
    json_decref(again);
    json_decref(printed);
    json_decref(file);
    free(report);
}

/* --max-prompts: the answers of the prompts left out are not counted as missed. */
static void test_max_prompts(void) {
    const char *ckpt = fx_checkpoint("ck-eval", 0, 42, 7), *prompts = prompts_file("p10.jsonl", 10);
    const char *out = out_dir("ev-max");
    g_cfg.eval.max_new_tokens = 8;
    kd_eval_options o = {.model_dir = ckpt, .prompts_path = prompts, .tools_path = fx_tools_path(), .out_dir = out,
                         .max_prompts = 4, .cfg = &g_cfg};
    kd_error err;
    CU_ASSERT_EQUAL_FATAL(kd_eval_run(&o, MPI_COMM_WORLD, NULL, &err), KD_OK);
    json_t *rep = load_json(out, "report.json");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(rep, "count")), 4);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(rep, "missing")), 0);
    json_decref(rep);
}

static void expect_error(kd_eval_options *o, const char *needle) {
    char *report = NULL;
    kd_error err;
    CU_ASSERT_NOT_EQUAL(kd_eval_run(o, MPI_COMM_WORLD, &report, &err), KD_OK);
    CU_ASSERT_PTR_NULL(report);
    KD_ASSERT_CONTAINS(err.msg, needle);
}

static void test_errors(void) {
    const char *ckpt = fx_checkpoint("ck-eval", 0, 42, 7), *prompts = prompts_file("p3.jsonl", 3);
    g_cfg.eval.max_new_tokens = 4;
    char out[4096];
    snprintf(out, sizeof out, "%s", out_dir("ev-err"));
    kd_eval_options o = {.model_dir = ckpt, .prompts_path = prompts, .tools_path = fx_tools_path(), .out_dir = out, .cfg = &g_cfg};

    kd_eval_options bad = o;
    bad.prompts_path = out_dir("nope.jsonl");
    expect_error(&bad, "eval: prompt set");
    expect_error(&bad, "nope.jsonl does not exist");

    bad = o;
    bad.answers_path = out_dir("no-answers.jsonl");
    expect_error(&bad, "eval: answers file");

    bad = o;
    bad.model_dir = out_dir("no-ckpt");
    expect_error(&bad, "is not a folder");

    bad = o;
    bad.model_dir = fx_checkpoint("ck-eval-notok", 0, 42, 3);
    expect_error(&bad, "has no tokenizer.json");

    bad = o;
    bad.model_dir = NULL;
    expect_error(&bad, "eval: a checkpoint folder, a prompt set, an output folder and a config are required");

    bad = o;
    bad.prompts_path = kd_test_write("noid.jsonl", "{\"prompt\": \"read /etc/hosts\"}\n");
    expect_error(&bad, "noid.jsonl:1: the prompt has no \"id\" (eval matches predictions to answers by id)");

    bad = o;
    bad.prompts_path = kd_test_write("badline.jsonl", "{\"id\": \"a\", \"prompt\": \"hi\"}\n{not json\n");
    expect_error(&bad, "badline.jsonl:2:");
    expect_error(&bad, "(eval needs every prompt line to parse)");

    bad = o;
    bad.tools_path = kd_test_write("badtools.json", "[{\"type\": \"function\"}]");
    expect_error(&bad, "badtools.json");

    /* an output folder that cannot be made */
    bad = o;
    kd_test_write("afile", "x");
    bad.out_dir = out_dir("afile/sub");
    expect_error(&bad, "afile");

    /* answers that the scorer refuses: the message says it comes from scoring */
    bad = o;
    bad.answers_path = kd_test_write("empty-answers.jsonl", "\n");
    expect_error(&bad, "eval: scoring: ");
    expect_error(&bad, "no answers found");
}

/* Per-prompt tools (a BFCL-style prompt set) are used when there is no --tools. */
static void test_per_prompt_tools(void) {
    const char *ckpt = fx_checkpoint("ck-eval", 0, 42, 7);
    json_t *tools = json_load_file(fx_tools_path(), 0, NULL);
    json_t *rec = json_pack("{s:s, s:[[{s:s, s:s}]], s:O}", "id", "simple_0", "question", "role", "user", "content",
                            "read /etc/hosts", "function", tools);
    char *line = json_dumps(rec, JSON_COMPACT);
    const char *prompts = kd_test_write("bfcl.jsonl", line);
    const char *answers = kd_test_write("bfcl-answers.jsonl",
                                        "{\"id\": \"simple_0\", \"ground_truth\": [{\"read_file\": {\"path\": [\"/etc/hosts\"]}}]}\n");
    g_cfg.eval.max_new_tokens = 8;
    kd_eval_options o = {.model_dir = ckpt, .prompts_path = prompts, .answers_path = answers, .out_dir = out_dir("ev-bfcl"), .cfg = &g_cfg};
    char *report = NULL;
    kd_error err;
    int rc = kd_eval_run(&o, MPI_COMM_WORLD, &report, &err);
    if (rc) fprintf(stderr, "\n  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, KD_OK);
    json_t *info = load_json(o.out_dir, "eval.json"), *rep = json_loads(report, 0, NULL);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(info, "tools")), prompts);
    CU_ASSERT_PTR_NOT_NULL(json_object_get(json_object_get(rep, "by_category"), "simple"));
    /* the prompt's tools were rendered: the prompt is long (three tool schemas) */
    CU_ASSERT_TRUE(json_integer_value(json_object_get(info, "prompt_tokens")) > 100);
    json_decref(info);
    json_decref(rep);
    free(report);
    free(line);
    json_decref(rec);
    json_decref(tools);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    kd_config_defaults(&g_cfg);
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("evaluate", NULL, NULL);
    CU_add_test(s, "end to end: report equals re-scoring the predictions", test_end_to_end);
    CU_add_test(s, "max_prompts scores only the prompts decoded", test_max_prompts);
    CU_add_test(s, "error messages", test_errors);
    CU_add_test(s, "per-prompt tools", test_per_prompt_tools);
    int rc = kd_test_main();
    kd_config_free(&g_cfg);
    MPI_Finalize();
    return rc;
}
