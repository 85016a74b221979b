/* On-policy generation (src/gen/onpolicy.c): which prompts the student writes, a student answer
 * turned into the conversation's next messages (tools run when every call can run), the failure kinds
 * of its calls, and the masks the generation job's extraction gives what it wrote, malformed calls
 * included. Student answers are fixed texts here (what a student could write); the decoding itself
 * runs in tests/e2e/onpolicy_exact.sh with a trained checkpoint. */
#include <CUnit/CUnit.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "kdstep/chat.h"
#include "kdstep/extract.h"
#include "kdstep/onpolicy.h"
#include "kdstep/registry.h"
#include "kdstep/targets.h"
#include "kdstep/toolsim.h"
#include "testutil.h"

static kd_registry *g_reg;
static kd_toolsim *g_sim;
static json_t *g_tools;

static json_t *user_turn(void) { return json_pack("[{s:s, s:s}]", "role", "user", "content", "Weather in Paris?"); }

static void test_policy_choice(void) {
    int p = -1;
    kd_error e;
    CU_ASSERT_EQUAL(kd_policy_from_name("mixed", &p, &e), KD_OK);
    CU_ASSERT_EQUAL(p, KD_POLICY_MIXED);
    CU_ASSERT_EQUAL(kd_policy_from_name("teachers", &p, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "generate.policy: 'teachers' is not one of teacher, student, mixed");
    int n = 10000, hits = 0, again = 0, other_seed = 0;
    for (int i = 0; i < n; i++) {
        int w = kd_policy_student_writes(KD_POLICY_MIXED, 0.3, 7, i);
        hits += w;
        again += w == kd_policy_student_writes(KD_POLICY_MIXED, 0.3, 7, i);
        other_seed += w != kd_policy_student_writes(KD_POLICY_MIXED, 0.3, 8, i);
        CU_ASSERT_EQUAL(kd_policy_student_writes(KD_POLICY_STUDENT, 0.0, 7, i), 1);
        CU_ASSERT_EQUAL(kd_policy_student_writes(KD_POLICY_TEACHER, 1.0, 7, i), 0);
        CU_ASSERT_EQUAL(kd_policy_student_writes(KD_POLICY_MIXED, 0.0, 7, i), 0);
        CU_ASSERT_EQUAL(kd_policy_student_writes(KD_POLICY_MIXED, 1.0, 7, i), 1);
    }
    /* binomial(10000, 0.3): sd 46; 5 sd either side */
    CU_ASSERT_TRUE(hits > 2770 && hits < 3230);
    CU_ASSERT_EQUAL(again, n);
    CU_ASSERT_TRUE(other_seed > 3000); /* another seed picks another share: ~42% disagree */
}

/* The masks the generation job makes for `messages` (src/gen/worker.c finish_conv: assistant spans
 * after the prompt, from after the header to <|im_end|>; tool contents as results), with one token
 * per byte so that mask[i] says whether byte i of the rendering is in a span. */
typedef struct rendered {
    kd_chat_result r;
    kd_target_spans sp;
    kd_targets t;
} rendered;

static void render_masks(json_t *messages, int n_prompt, rendered *out) {
    kd_error e;
    memset(out, 0, sizeof *out);
    CU_ASSERT_EQUAL_FATAL(kd_chat_render_json(messages, g_tools, NULL, &out->r, &e), KD_OK);
    kd_text_span resp[16], res[16];
    size_t nresp = 0, nres = 0;
    for (int i = n_prompt; i < out->r.n_messages && nresp < 16; i++) {
        const char *role = json_string_value(json_object_get(json_array_get(messages, (size_t)i), "role"));
        if (strcmp(role, "assistant") == 0) {
            kd_text_span s = {out->r.message_spans[i].start + strlen("<|im_start|>assistant\n"), out->r.message_spans[i].end};
            if (out->r.text[s.end - 1] == '\n') s.end--;
            resp[nresp++] = s;
        } else if (strcmp(role, "tool") == 0) {
            res[nres].start = out->r.content_spans[i].start;
            res[nres++].end = out->r.content_spans[i].end;
        }
    }
    CU_ASSERT_EQUAL_FATAL(kd_targets_spans_for_conversation(out->r.text, out->r.len, resp, nresp, res, nres, g_reg, &out->sp, &e),
                          KD_OK);
    size_t n = out->r.len;
    int32_t(*off)[2] = calloc(n, sizeof *off);
    for (size_t i = 0; i < n; i++) off[i][0] = (int32_t)i, off[i][1] = (int32_t)i + 1;
    CU_ASSERT_EQUAL_FATAL(kd_targets_build((const int32_t(*)[2])off, n, n, &out->sp, 1, &out->t, &e), KD_OK);
    free(off);
}

static void rendered_free(rendered *x) {
    kd_targets_free(&x->t);
    kd_target_spans_free(&x->sp);
    kd_chat_render_free(&x->r);
}

/* every byte of `needle` (its first occurrence at or after `from` in the rendering) has mask 1, and
 * the bytes just before and after it do not (unless `edges` is 0) */
static int masked_exactly(const rendered *x, const uint8_t *mask, const char *needle, size_t from, int edges) {
    const char *at = strstr(x->r.text + from, needle);
    if (!at) return 0;
    size_t a = (size_t)(at - x->r.text), b = a + strlen(needle);
    for (size_t i = a; i < b; i++)
        if (!mask[i]) return 0;
    if (edges && ((a > 0 && mask[a - 1]) || (b < x->r.len && mask[b]))) return 0;
    return 1;
}

static size_t count_mask(const rendered *x, const uint8_t *mask) {
    size_t n = 0;
    for (size_t i = 0; i < x->r.len; i++) n += mask[i];
    return n;
}

/* A valid call: the tool runs, its result follows, the student answers again; the masks cover the
 * name and the arguments as the student wrote them, the answer's use of the result, and not the result. */
static void test_valid_call_then_answer(void) {
    json_t *m = user_turn();
    kd_call_census cs = {0};
    int more = -1;
    kd_error e;
    const char *call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call>";
    CU_ASSERT_EQUAL_FATAL(kd_onpolicy_apply_turn(m, call, strlen(call), g_reg, g_sim, &cs, &more, &e), KD_OK);
    CU_ASSERT_EQUAL(more, 1);
    CU_ASSERT_EQUAL(cs.calls, 1);
    CU_ASSERT_EQUAL(cs.unknown_tool + cs.bad_json + cs.schema_invalid + cs.unclosed, 0);
    CU_ASSERT_EQUAL_FATAL(json_array_size(m), 3);
    json_t *tool = json_array_get(m, 2);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(tool, "role")), "tool");
    char *want = NULL;
    CU_ASSERT_EQUAL_FATAL(kd_toolsim_run_text(g_sim, "get_weather", "{\"city\":\"Paris\"}", &want, &e), KD_OK);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(tool, "content")), want);
    free(want);
    /* the student's bytes stay as written (no re-serialised arguments) */
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_array_get(m, 1), "content")), call);
    const char *answer = "It is sunny in Paris today.";
    CU_ASSERT_EQUAL_FATAL(kd_onpolicy_apply_turn(m, answer, strlen(answer), g_reg, g_sim, &cs, &more, &e), KD_OK);
    CU_ASSERT_EQUAL(more, 0);
    CU_ASSERT_EQUAL(cs.calls, 1);
    rendered x;
    render_masks(m, 1, &x);
    CU_ASSERT_PTR_NOT_NULL(strstr(x.r.text, call));
    size_t at = (size_t)(strstr(x.r.text, call) - x.r.text);
    CU_ASSERT_TRUE(masked_exactly(&x, x.t.tool_name_mask, "get_weather", at, 1));
    CU_ASSERT_TRUE(masked_exactly(&x, x.t.json_mask, "{\"city\":\"Paris\"}", 0, 1));
    CU_ASSERT_TRUE(masked_exactly(&x, x.t.loss_mask, call, 0, 0));
    size_t res = (size_t)(strstr(x.r.text, "<tool_response>") - x.r.text);
    for (size_t i = res; i < res + 20; i++) CU_ASSERT_EQUAL(x.t.loss_mask[i], 0);
    CU_ASSERT_TRUE(masked_exactly(&x, x.t.loss_mask, answer, 0, 0));
    CU_ASSERT_TRUE(masked_exactly(&x, x.t.integration_mask, "Paris", (size_t)(strstr(x.r.text, answer) - x.r.text), 0));
    rendered_free(&x);
    json_decref(m);
}

typedef struct bad_case {
    const char *text;
    const char *name;       /* the name span the masks must cover (NULL: none expected) */
    const char *args;       /* the start of the argument span the json mask must cover */
    kd_call_census want;
} bad_case;

/* Malformed calls: counted by kind, the conversation ends there (no tool runs), and the sample still
 * masks what the extractor finds of the call. */
static void test_malformed_calls(void) {
    const bad_case cases[] = {
        {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"\n</tool_call>", "get_weather",
         "{\"city\": \"Paris\"", {1, 0, 1, 0, 0}},
        {"<tool_call>\n{\"name\": \"get_wether\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", "get_wether",
         "{\"city\": \"Paris\"}", {1, 1, 0, 0, 0}},
        {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": 42}}\n</tool_call>", "get_weather",
         "{\"city\": 42}", {1, 0, 0, 1, 0}},
        {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}", "get_weather", "{\"city\": \"Oslo\"}",
         {1, 0, 0, 0, 1}},
        {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>\n<tool_call>\n"
         "{\"name\": \"nope\", \"arguments\": {}}\n</tool_call>",
         "nope", "{}", {2, 1, 0, 0, 0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        json_t *m = user_turn();
        kd_call_census cs = {0};
        int more = -1;
        kd_error e;
        const bad_case *c = &cases[k];
        CU_ASSERT_EQUAL_FATAL(kd_onpolicy_apply_turn(m, c->text, strlen(c->text), g_reg, g_sim, &cs, &more, &e), KD_OK);
        CU_ASSERT_EQUAL(more, 0);
        CU_ASSERT_EQUAL(json_array_size(m), 2); /* no tool ran */
        if (cs.calls != c->want.calls || cs.unknown_tool != c->want.unknown_tool || cs.bad_json != c->want.bad_json ||
            cs.schema_invalid != c->want.schema_invalid || cs.unclosed != c->want.unclosed) {
            fprintf(stderr, "\n  case %zu: census %lld %lld %lld %lld %lld\n", k, (long long)cs.calls, (long long)cs.unknown_tool,
                    (long long)cs.bad_json, (long long)cs.schema_invalid, (long long)cs.unclosed);
            CU_FAIL("census");
        }
        rendered x;
        render_masks(m, 1, &x);
        CU_ASSERT_PTR_NOT_NULL(strstr(x.r.text, c->text));
        size_t from = (size_t)(strstr(x.r.text, c->text) - x.r.text);
        if (!masked_exactly(&x, x.t.tool_name_mask, c->name, from, 0)) {
            fprintf(stderr, "\n  case %zu: name %s not masked\n", k, c->name);
            CU_FAIL("name mask");
        }
        if (!masked_exactly(&x, x.t.json_mask, c->args, from, 0)) {
            fprintf(stderr, "\n  case %zu: arguments %s not masked\n", k, c->args);
            CU_FAIL("json mask");
        }
        CU_ASSERT_TRUE(masked_exactly(&x, x.t.loss_mask, c->text, 0, 0));
        /* the masks stay inside the student's turn: nothing of the prompt before its header */
        size_t head = (size_t)(strstr(x.r.text, "<|im_start|>assistant") - x.r.text);
        for (size_t i = 0; i < head; i++) CU_ASSERT_TRUE(!x.t.json_mask[i] && !x.t.tool_name_mask[i] && !x.t.loss_mask[i]);
        CU_ASSERT_TRUE(count_mask(&x, x.t.json_mask) >= strlen(c->args));
        rendered_free(&x);
        json_decref(m);
    }
}

/* No call, or prose only: nothing counted, the conversation ends. */
static void test_no_call(void) {
    json_t *m = user_turn();
    kd_call_census cs = {0};
    int more = -1;
    kd_error e;
    const char *t = "I cannot check the weather.";
    CU_ASSERT_EQUAL(kd_onpolicy_apply_turn(m, t, strlen(t), g_reg, g_sim, &cs, &more, &e), KD_OK);
    CU_ASSERT_EQUAL(more, 0);
    CU_ASSERT_EQUAL(cs.calls + cs.unclosed, 0);
    json_decref(m);
}

int main(void) {
    CU_initialize_registry();
    kd_error e;
    if (kd_registry_open(&g_reg, &e) || kd_registry_load_file(g_reg, kd_test_src("configs/tools.json"), &e) ||
        kd_toolsim_open(&g_sim, g_reg, NULL, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    g_tools = kd_registry_to_openai(g_reg);
    CU_pSuite s = CU_add_suite("onpolicy", NULL, NULL);
    CU_add_test(s, "which prompts the student writes (mixed: seeded share)", test_policy_choice);
    CU_add_test(s, "a valid call runs; masks over the student's bytes", test_valid_call_then_answer);
    CU_add_test(s, "malformed calls: failure kinds counted, masks kept", test_malformed_calls);
    CU_add_test(s, "no call ends the conversation", test_no_call);
    int rc = kd_test_main();
    json_decref(g_tools);
    kd_toolsim_close(g_sim);
    kd_registry_close(g_reg);
    return rc;
}
