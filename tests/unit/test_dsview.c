/* CUnit suite: dataset summary, sample rendering (with the real Qwen3 tokenizer when cached) and the
 * seed JSONL record (src/data/dsview.c). */
#include <stdlib.h>
#include <string.h>

#include "../bench/h5gen.h"
#include "kdstep/dsview.h"
#include "kdstep/fsutil.h"
#include "kdstep/tokenizer.h"
#include "testutil.h"

/* noinline: GCC 12 mistakes the open_memstream buffer for a dangling local once inlined */
__attribute__((noinline)) static char *render(const kd_sample *s, const kd_tokenizer *tok, int color) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    kd_error e;
    CU_ASSERT_EQUAL(kd_sample_render(s, tok, color, f, &e), KD_OK);
    fclose(f);
    return buf;
}

static void test_render_ids(void) {
    h5gen g;
    h5gen_fill(&g, 13, 2); /* n = 5, prompt_len 1: tool at 1, json 2..3, integration 4 */
    char *out = render(&g.s, NULL, 0);
    KD_ASSERT_CONTAINS(out, "sample    prompt id 13, id \"key-13\"\n");
    KD_ASSERT_CONTAINS(out, "tokens    5: 1 prompt, 4 after it; 4 in loss_mask (tool name 1, JSON 2, integration 1)\n");
    KD_ASSERT_CONTAINS(out, "(no tokenizer: token ids shown)");
    KD_ASSERT_CONTAINS(out, "--- prompt (1 tokens) ---\n1300\n--- response (4 tokens) ---\n"
                            "[[tool:1301]] [[json:1302 1303]] [[integration:1304]]\n");
    CU_ASSERT_PTR_NULL(strchr(out, '\033'));
    free(out);
    out = render(&g.s, NULL, 1);
    KD_ASSERT_CONTAINS(out, "\033[1;33m1301\033[0m");
    KD_ASSERT_CONTAINS(out, "\033[1;36m1302 1303\033[0m");
    KD_ASSERT_CONTAINS(out, "\033[1;32m1304\033[0m");
    CU_ASSERT_PTR_NULL(strstr(out, "[["));
    free(out);
}

/* Mask the tokens overlapping bytes [a, b) of the text. */
static void mask_bytes(const kd_encoding *enc, size_t a, size_t b, uint8_t *mask) {
    for (size_t t = 0; t < enc->count; t++)
        if ((size_t)enc->offsets[t][0] < b && (size_t)enc->offsets[t][1] > a) mask[t] = 1;
}

static void test_render_decoded(void) {
    const char *dir = kd_test_src("tests/.cache/tokenizers/qwen3");
    if (!kd_path_exists(dir)) {
        kd_test_skip("tests/.cache/tokenizers/qwen3 absent (run tests/fetch-tokenizers.sh): decoded rendering not checked");
        return;
    }
    kd_tokenizer *tok = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_open(&tok, dir, &e), KD_OK);
    const char *prompt = "What is the weather in Paris?";
    const char *text = "What is the weather in Paris?<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                       "\"Paris\"}}</tool_call> It is sunny and 21 degrees in Paris.";
    kd_encoding enc = {0}, penc = {0};
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(tok, text, strlen(text), 0, &enc, &e), KD_OK);
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(tok, prompt, strlen(prompt), 0, &penc, &e), KD_OK);
    size_t n = enc.count;
    uint8_t *loss = calloc(n, 1), *tool = calloc(n, 1), *json = calloc(n, 1), *integ = calloc(n, 1);
    int32_t *tk = calloc(n, 4);
    float *lp = calloc(n, 4), *tail = calloc(n, 4);
    for (size_t t = penc.count; t < n; t++) loss[t] = 1;
    const char *name = strstr(text, "get_weather"), *args = strstr(text, "{\"city\""), *sunny = strstr(text, "sunny and 21");
    mask_bytes(&enc, (size_t)(name - text), (size_t)(name - text) + 11, tool);
    mask_bytes(&enc, (size_t)(args - text), (size_t)(args - text) + 17, json);
    mask_bytes(&enc, (size_t)(sunny - text), (size_t)(sunny - text) + 12, integ);
    kd_sample s = {.prompt_id = 3, .prompt_len = (int64_t)penc.count, .n = (int64_t)n, .input_ids = enc.ids,
                   .loss_mask = loss, .tool_name_mask = tool, .json_mask = json, .integration_mask = integ,
                   .topk_ids = tk, .topk_logprobs = lp, .tail_logprob = tail, .prompt_key = "p3", .metadata = "{}"};
    char *out = render(&s, tok, 0);
    /* the decoded runs hold exactly the spans' text, up to token boundaries */
    const char *resp = strstr(out, "--- response");
    CU_ASSERT_PTR_NOT_NULL_FATAL(resp);
    const char *t0 = strstr(resp, "[[tool:"), *j0 = strstr(resp, "[[json:"), *i0 = strstr(resp, "[[integration:");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(i0);
    char run[128];
    snprintf(run, sizeof run, "%.*s", (int)(strstr(t0, "]]") - t0 - 7), t0 + 7);
    KD_ASSERT_CONTAINS(run, "get_weather");
    CU_ASSERT_TRUE(strlen(run) <= 14);
    snprintf(run, sizeof run, "%.*s", (int)(strstr(j0, "]]") - j0 - 7), j0 + 7);
    KD_ASSERT_CONTAINS(run, "\"city\": \"Paris\"");
    snprintf(run, sizeof run, "%.*s", (int)(strstr(i0, "]]") - i0 - 14), i0 + 14);
    KD_ASSERT_CONTAINS(run, "sunny and 21");
    KD_ASSERT_CONTAINS(out, "--- prompt (");
    KD_ASSERT_CONTAINS(out, "What is the weather in Paris?\n--- response");
    free(out);
    free(loss);
    free(tool);
    free(json);
    free(integ);
    free(tk);
    free(lp);
    free(tail);
    kd_encoding_free(&enc);
    kd_encoding_free(&penc);
    kd_tokenizer_close(tok);
}

static void test_seed_json(void) {
    h5gen g;
    h5gen_fill(&g, 13, 2);
    json_t *r = kd_sample_to_seed_json(&g.s);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "prompt")), "prompt 13 \xc3\xbc");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "teacher_text")), "teacher 13");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(r, "id")), "key-13");
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(r, "prompt_id")), 13);
    json_t *want = json_loads("{\"tool_name_ids\": [1301], \"tool_name_mask\": [1], \"gold_json_text_ids\": [1302, 1303],"
                              " \"mask_valid_json_tokens\": [1, 1], \"tool_result_fields\": [1304],"
                              " \"integration_mask\": [1], \"metadata\": {\"i\": 13}}",
                              0, NULL);
    const char *k;
    json_t *v;
    json_object_foreach(want, k, v) CU_ASSERT_TRUE(json_equal(json_object_get(r, k), v));
    json_decref(want);
    json_decref(r);
    /* id 12 has no integration span: those fields are absent, not empty */
    h5gen_fill(&g, 12, 2);
    r = kd_sample_to_seed_json(&g.s);
    CU_ASSERT_PTR_NULL(json_object_get(r, "tool_result_fields"));
    CU_ASSERT_PTR_NULL(json_object_get(r, "integration_mask"));
    CU_ASSERT_PTR_NOT_NULL(json_object_get(r, "tool_name_ids"));
    json_decref(r);
}

static void test_summary_and_export(void) {
    char dir[512];
    kd_shard *sh = kd_test_new_shard("view", 2, 5, dir, sizeof dir);
    kd_error e;
    int64_t tokens = 0, prompt = 0, integ_samples = 0;
    for (int64_t id = 0; id < 40; id++) {
        h5gen g;
        h5gen_fill(&g, id, 2);
        tokens += g.s.n;
        prompt += g.s.prompt_len;
        integ_samples += id % 4 != 0;
        g.s.policy = 2; /* /samples/policy holds 0 (teacher-written) or 1 (student-written) */
        CU_ASSERT_EQUAL(kd_shard_append(sh, &g.s, &e), KD_ERR_INVALID);
        KD_ASSERT_CONTAINS(e.msg, "policy 2 is neither 0 (teacher) nor 1 (student)");
        g.s.policy = id % 5 == 0;
        CU_ASSERT_EQUAL(kd_shard_append(sh, &g.s, &e), KD_OK);
    }
    CU_ASSERT_EQUAL(kd_shard_close(sh, &e), KD_OK);
    CU_ASSERT_EQUAL(kd_dataset_finalize(dir, NULL, &e), KD_OK);
    kd_dataset *ds;
    CU_ASSERT_EQUAL_FATAL(kd_dataset_open(&ds, dir, &e), KD_OK);
    kd_dataset_summary sum;
    CU_ASSERT_EQUAL(kd_dataset_summarize(ds, &sum, &e), KD_OK);
    CU_ASSERT_EQUAL(sum.samples, 40);
    CU_ASSERT_EQUAL(sum.tokens, tokens);
    CU_ASSERT_EQUAL(sum.prompt_tokens, prompt);
    CU_ASSERT_EQUAL(sum.response_tokens, tokens - prompt);
    CU_ASSERT_EQUAL(sum.mask_tokens[0], 40);
    CU_ASSERT_EQUAL(sum.mask_tokens[1], 80);
    CU_ASSERT_EQUAL(sum.mask_samples[2], integ_samples);
    CU_ASSERT_EQUAL(sum.policy_samples[0], 32);
    CU_ASSERT_EQUAL(sum.policy_samples[1], 8);
    kd_batch pb;
    CU_ASSERT_EQUAL_FATAL(kd_dataset_read(ds, 0, 40, 0, &pb, &e), KD_OK);
    for (int64_t i = 0; i < 40; i++) CU_ASSERT_EQUAL(pb.policy[i], pb.prompt_id[i] % 5 == 0);
    kd_batch_free(&pb);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    kd_dataset_summary_print(ds, &sum, f);
    fclose(f);
    KD_ASSERT_CONTAINS(buf, "samples   40 (written by the teacher 32, by the student 8)\n");
    KD_ASSERT_CONTAINS(buf, "  tool name");
    free(buf);
    f = open_memstream(&buf, &len);
    int64_t written = 0;
    CU_ASSERT_EQUAL(kd_dataset_export_jsonl(ds, f, &written, &e), KD_OK);
    fclose(f);
    CU_ASSERT_EQUAL(written, 40);
    int lines = 0;
    for (char *p = buf; (p = strchr(p, '\n')); p++) lines++;
    CU_ASSERT_EQUAL(lines, 40);
    free(buf);
    /* a full disk is reported, not ignored */
    f = fopen("/dev/full", "w");
    if (f) {
        setvbuf(f, NULL, _IONBF, 0);
        CU_ASSERT_EQUAL(kd_dataset_export_jsonl(ds, f, &written, &e), KD_ERR_IO);
        KD_ASSERT_CONTAINS(e.msg, "export: write failed (disk full?)");
        fclose(f);
    }
    kd_dataset_close(ds);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("dsview", NULL, NULL);
    CU_add_test(s, "render with token ids, brackets and colours", test_render_ids);
    CU_add_test(s, "render decoded with the Qwen3 tokenizer", test_render_decoded);
    CU_add_test(s, "seed JSONL record: ids under masks, absent fields", test_seed_json);
    CU_add_test(s, "summary counts and export", test_summary_and_export);
    return kd_test_main();
}
