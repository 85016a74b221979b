/* Spans -> aligned token masks: the intersection rule on straddling tokens, process supervision
 * off, the seed's fields, errors, and alignment with the real Qwen3 tokenizer over BFCL answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "extract_render.h"
#include "kdstep/chat.h"
#include "kdstep/fsutil.h"
#include "kdstep/targets.h"
#include "kdstep/tokenizer.h"
#include "testutil.h"


/* text:  I call {"name": "get_weather", "arguments": {"city": "Paris"}} ok
 * tokens chosen to straddle every span edge. */
static const char *TEXT = "I call {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}} ok";

static void test_straddling_tokens(void) {
    size_t len = strlen(TEXT);
    const char *name = strstr(TEXT, "get_weather");
    size_t ns = (size_t)(name - TEXT), ne = ns + 11;
    size_t as = (size_t)(strstr(TEXT, "{\"city\"") - TEXT), ae = (size_t)(strstr(TEXT, "}} ok") - TEXT) + 1;
    /* tokens: [BOS 0,0) "I" " call" " {\"" "name" "\": \"get" "_weather" "\", \"" ... */
    int32_t off[][2] = {
        {0, 0},                               /* BOS: empty, in nothing */
        {0, 1},                               /* I */
        {1, 6},                               /* " call" */
        {6, (int32_t)ns - 3},                 /* ` {"name` ... up to `": "` */
        {(int32_t)ns - 3, (int32_t)ns + 3},   /* `": "get`  straddles the name start */
        {(int32_t)ns + 3, (int32_t)ne - 1},   /* `_weathe`  inside */
        {(int32_t)ne - 1, (int32_t)ne + 2},   /* `r",`      straddles the name end */
        {(int32_t)ne + 2, (int32_t)as - 1},   /* ` "arguments":` */
        {(int32_t)as - 1, (int32_t)as + 2},   /* ` {"`      straddles the args start */
        {(int32_t)as + 2, (int32_t)ae - 1},   /* inside */
        {(int32_t)ae - 1, (int32_t)ae + 1},   /* `}}`       straddles the args end */
        {(int32_t)ae + 1, (int32_t)len},      /* " ok" */
    };
    size_t n = sizeof off / sizeof off[0];
    int32_t ids[12];
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(100 + i);
    kd_target_spans sp = {0};
    kd_tool_calls calls = {0};
    CU_ASSERT_EQUAL_FATAL(kd_extract_tool_calls(TEXT, len, NULL, &calls, NULL), KD_OK);
    CU_ASSERT_EQUAL_FATAL(calls.count, 1);
    CU_ASSERT_EQUAL(calls.v[0].name.start, ns);
    CU_ASSERT_EQUAL(calls.v[0].arguments.end, ae);
    CU_ASSERT_EQUAL(kd_targets_add_calls(&sp, &calls, 0, NULL), KD_OK);
    kd_spans_push(&sp.response, 2, len); /* response starts inside "I call"'s second token */
    kd_spans_push(&sp.integration, len - 2, len);
    kd_targets t;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_targets_build((const int32_t(*)[2])off, n, len, &sp, 1, &t, &e), KD_OK);
    const uint8_t want_name[] = {0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0};
    const uint8_t want_json[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0};
    const uint8_t want_loss[] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const uint8_t want_intg[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    CU_ASSERT_EQUAL(memcmp(t.tool_name_mask, want_name, n), 0);
    CU_ASSERT_EQUAL(memcmp(t.json_mask, want_json, n), 0);
    CU_ASSERT_EQUAL(memcmp(t.loss_mask, want_loss, n), 0);
    CU_ASSERT_EQUAL(memcmp(t.integration_mask, want_intg, n), 0);
    /* the seed's fields: ids under the masks, 1 where the token is wholly inside */
    json_t *seed = kd_targets_seed_fields(ids, (const int32_t(*)[2])off, &t, &sp);
    char *s = json_dumps(seed, JSON_COMPACT | JSON_SORT_KEYS);
    KD_ASSERT_CONTAINS(s, "\"tool_name_ids\":[104,105,106]");
    KD_ASSERT_CONTAINS(s, "\"tool_name_mask\":[0,1,0]");
    KD_ASSERT_CONTAINS(s, "\"gold_json_text_ids\":[108,109,110]");
    KD_ASSERT_CONTAINS(s, "\"mask_valid_json_tokens\":[0,1,0]");
    KD_ASSERT_CONTAINS(s, "\"tool_result_fields\":[111]");
    KD_ASSERT_CONTAINS(s, "\"integration_mask\":[0]");
    free(s);
    json_decref(seed);
    kd_targets_free(&t);

    /* process supervision off: only loss_mask, and no seed fields */
    CU_ASSERT_EQUAL_FATAL(kd_targets_build((const int32_t(*)[2])off, n, len, &sp, 0, &t, &e), KD_OK);
    CU_ASSERT_EQUAL(memcmp(t.loss_mask, want_loss, n), 0);
    CU_ASSERT_PTR_NULL(t.tool_name_mask);
    CU_ASSERT_PTR_NULL(t.json_mask);
    CU_ASSERT_PTR_NULL(t.integration_mask);
    seed = kd_targets_seed_fields(ids, (const int32_t(*)[2])off, &t, &sp);
    CU_ASSERT_EQUAL(json_object_size(seed), 0);
    json_decref(seed);
    kd_targets_free(&t);

    /* shifted spans: the same text at byte 10 of a longer rendering */
    kd_target_spans sp2 = {0};
    CU_ASSERT_EQUAL(kd_targets_add_calls(&sp2, &calls, 10, NULL), KD_OK);
    CU_ASSERT_EQUAL(sp2.tool_name.v[0].start, ns + 10);
    CU_ASSERT_EQUAL(kd_targets_add_shifted(&sp2.integration, &sp.integration, 10, NULL), KD_OK);
    CU_ASSERT_EQUAL(sp2.integration.v[0].end, len + 10);
    kd_target_spans_free(&sp2);

    /* errors name what is wrong and what to do */
    kd_spans_push(&sp.json, 5, len + 7);
    CU_ASSERT_EQUAL(kd_targets_build((const int32_t(*)[2])off, n, len, &sp, 1, &t, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "arguments span 1 [5, 72) lies outside the rendered text of 65 bytes (shift spans into rendered-text coordinates");
    sp.json.count--;
    off[3][1] = (int32_t)len + 1;
    CU_ASSERT_EQUAL(kd_targets_build((const int32_t(*)[2])off, n, len, &sp, 1, &t, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "token 3 has byte offsets [6, 66) outside the text of 65 bytes");
    kd_target_spans_free(&sp);
    kd_tool_calls_free(&calls);
}

static void test_mask_rule_edges(void) {
    /* adjacent but not intersecting tokens stay out; unsorted, overlapping spans are fine */
    int32_t off[][2] = {{0, 3}, {3, 5}, {5, 9}, {9, 9}, {9, 12}};
    kd_spans s = {0};
    kd_spans_push(&s, 5, 9);
    kd_spans_push(&s, 3, 4);
    kd_spans_push(&s, 6, 7);
    uint8_t m[5];
    CU_ASSERT_EQUAL(kd_mask_from_spans((const int32_t(*)[2])off, 5, &s, m), 0);
    const uint8_t want[] = {0, 1, 1, 0, 0};
    CU_ASSERT_EQUAL(memcmp(m, want, 5), 0);
    kd_spans_free(&s);
    /* no spans: all zero; no tokens: nothing to do */
    CU_ASSERT_EQUAL(kd_mask_from_spans((const int32_t(*)[2])off, 5, &s, m), 0);
    CU_ASSERT_EQUAL(m[0] + m[1] + m[2] + m[3] + m[4], 0);
}

/* A conversation rendered in Qwen3's template: call, tool response, answer using it. */
static void test_conversation_spans(void) {
    const char *text =
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n{\"temp\": 21.5, \"sky\": \"Sunny\", \"city\": \"Paris\"}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\nIt is 21.50 degrees and sunny in Paris.<|im_end|>\n";
    size_t len = strlen(text);
    const char *a1 = strstr(text, "<tool_call>"), *a1e = strstr(a1, "<|im_end|>");
    const char *r1 = strstr(text, "{\"temp\""), *r1e = strstr(r1, "\n</tool_response>");
    const char *a2 = strstr(text, "It is"), *a2e = strstr(a2, "<|im_end|>");
    kd_text_span asst[] = {{(size_t)(a1 - text), (size_t)(a1e - text)}, {(size_t)(a2 - text), (size_t)(a2e - text)}};
    kd_text_span res[] = {{(size_t)(r1 - text), (size_t)(r1e - text)}};
    kd_target_spans sp = {0};
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_targets_spans_for_conversation(text, len, asst, 2, res, 1, NULL, &sp, &e), KD_OK);
    CU_ASSERT_EQUAL(sp.response.count, 2);
    CU_ASSERT_EQUAL_FATAL(sp.tool_name.count, 1);
    CU_ASSERT_EQUAL(strncmp(text + sp.tool_name.v[0].start, "get_weather\"", 12), 0);
    CU_ASSERT_EQUAL_FATAL(sp.json.count, 1);
    CU_ASSERT_EQUAL(strncmp(text + sp.json.v[0].start, "{\"city\": \"Paris\"}}", 18), 0);
    CU_ASSERT_EQUAL(sp.json.v[0].end - sp.json.v[0].start, 17);
    /* the first message has no result before it; the answer uses 21.50, sunny and Paris */
    CU_ASSERT_EQUAL_FATAL(sp.integration.count, 3);
    CU_ASSERT_EQUAL(strncmp(text + sp.integration.v[0].start, "21.50", 5), 0);
    CU_ASSERT_EQUAL(strncmp(text + sp.integration.v[1].start, "sunny", 5), 0);
    CU_ASSERT_EQUAL(strncmp(text + sp.integration.v[2].start, "Paris.", 6), 0);
    CU_ASSERT_EQUAL(sp.integration.v[2].end - sp.integration.v[2].start, 5);
    kd_target_spans_free(&sp);
    kd_text_span bad[] = {{10, len + 1}};
    CU_ASSERT_EQUAL(kd_targets_spans_for_conversation(text, len, bad, 1, res, 1, NULL, &sp, &e), KD_ERR_INVALID);
    KD_ASSERT_CONTAINS(e.msg, "assistant message 0 span [10, ");
    KD_ASSERT_CONTAINS(e.msg, "lies outside the text of");
    kd_target_spans_free(&sp);
}

/* The decision token: the first token of every answer (after a think block) is in tool_name_mask,
 * in a no-call answer as in a call answer, so the tool-select term trains "call or not". */
static void test_decision_token(void) {
    const char *text =
        "<|im_start|>user\nTell me a joke.<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\nWhy did the chicken cross the road?<|im_end|>\n"
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n";
    size_t len = strlen(text);
    const char *a1 = strstr(text, "<think>"), *a1e = strstr(a1, "<|im_end|>");
    const char *a2 = strstr(text, "<tool_call>"), *a2e = strstr(a2, "<|im_end|>");
    kd_text_span asst[] = {{(size_t)(a1 - text), (size_t)(a1e - text)}, {(size_t)(a2 - text), (size_t)(a2e - text)}};
    CU_ASSERT_EQUAL(kd_targets_decision_byte(text, asst[0].start, asst[0].end), (size_t)(strstr(text, "Why") - text));
    CU_ASSERT_EQUAL(kd_targets_decision_byte(text, asst[1].start, asst[1].end), asst[1].start);
    CU_ASSERT_EQUAL(kd_targets_decision_byte("<think>never closed", 0, 19), 19);
    CU_ASSERT_EQUAL(kd_targets_decision_byte("x", 1, 1), 1);
    kd_target_spans sp = {0};
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_targets_spans_for_conversation(text, len, asst, 2, NULL, 0, NULL, &sp, &e), KD_OK);
    CU_ASSERT_EQUAL_FATAL(sp.decision.count, 2);
    CU_ASSERT_EQUAL(sp.tool_name.count, 1); /* the name span itself is unchanged */
    /* one token per word-ish piece: split the text at every byte for simplicity (byte tokens) */
    int32_t(*off)[2] = calloc(len, sizeof *off);
    for (size_t i = 0; i < len; i++) off[i][0] = (int32_t)i, off[i][1] = (int32_t)i + 1;
    kd_targets t;
    CU_ASSERT_EQUAL_FATAL(kd_targets_build((const int32_t(*)[2])off, len, len, &sp, 1, &t, &e), KD_OK);
    size_t why = (size_t)(strstr(text, "Why") - text), call = asst[1].start;
    CU_ASSERT_EQUAL(t.tool_name_mask[why], 1);     /* no-call answer: its first token */
    CU_ASSERT_EQUAL(t.tool_name_mask[why + 1], 0); /* only that one */
    CU_ASSERT_EQUAL(t.tool_name_mask[call], 1);    /* call answer: "<" of <tool_call> */
    size_t in_first = 0;
    for (size_t i = asst[0].start; i < asst[0].end; i++) in_first += t.tool_name_mask[i];
    CU_ASSERT_EQUAL(in_first, 1);
    size_t nm = (size_t)(strstr(text, "get_weather") - text);
    CU_ASSERT_EQUAL(t.tool_name_mask[nm], 1); /* the name stays in */
    /* supervision off: no tool mask at all */
    kd_targets t0;
    CU_ASSERT_EQUAL_FATAL(kd_targets_build((const int32_t(*)[2])off, len, len, &sp, 0, &t0, &e), KD_OK);
    CU_ASSERT_PTR_NULL(t0.tool_name_mask);
    kd_targets_free(&t0);
    kd_targets_free(&t);
    kd_target_spans_free(&sp);
    free(off);
}

/* For every BFCL answer rendered in each format and tokenized with Qwen3: the decoded tokens under
 * tool_name_mask contain each call's name, those under json_mask each call's arguments. */
static void test_alignment_qwen3_bfcl(void) {
    const char *data = kd_test_shared_data();
    const char *tokdir = kd_test_src("tests/.cache/tokenizers/qwen3");
    if (!data || !kd_is_dir(tokdir)) {
        kd_test_skip("../shared/data or tests/.cache/tokenizers/qwen3 is absent (run tests/fetch-tokenizers.sh): alignment not checked");
        return;
    }
    kd_tokenizer *tok = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_open(&tok, tokdir, &e), KD_OK);
    static const char *sets[] = {"simple", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple",
                                 "live_parallel", "live_parallel_multiple"};
    long samples = 0, bad = 0;
    kd_encoding enc = {0};
    for (size_t si = 0; si < sizeof sets / sizeof sets[0]; si++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/bfcl/possible_answer/BFCL_v3_%s.json", data, sets[si]);
        FILE *f = fopen(path, "r");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
            json_t *rec = json_loads(line, 0, NULL);
            json_t *gt = json_object_get(rec, "ground_truth");
            size_t n = json_array_size(gt);
            const char **names = calloc(n + 1, sizeof *names);
            char **args = calloc(n + 1, sizeof *args);
            for (size_t i = 0; i < n; i++) {
                void *it = json_object_iter(json_array_get(gt, i));
                names[i] = json_object_iter_key(it);
                json_t *a = json_object();
                const char *pn;
                json_t *vals;
                json_object_foreach(json_object_iter_value(it), pn, vals) {
                    json_t *v0 = json_array_get(vals, 0);
                    if (!(json_is_string(v0) && json_string_length(v0) == 0)) json_object_set(a, pn, v0);
                }
                args[i] = json_dumps(a, 0);
                json_decref(a);
            }
            for (int fmt = 0; fmt < KD_CALL_FORMAT_COUNT; fmt++) {
                char *text = kd_render_calls((kd_call_format)fmt, names, (const char *const *)args, (int)n);
                size_t len = strlen(text);
                kd_tool_calls calls = {0};
                kd_target_spans sp = {0};
                kd_targets t = {0};
                int ok = kd_extract_tool_calls(text, len, NULL, &calls, &e) == KD_OK && calls.count == n &&
                         kd_tokenizer_encode(tok, text, len, 0, &enc, &e) == KD_OK && kd_targets_add_calls(&sp, &calls, 0, &e) == KD_OK &&
                         kd_targets_build((const int32_t(*)[2])enc.offsets, enc.count, len, &sp, 1, &t, &e) == KD_OK;
                for (int which = 0; ok && which < 2; which++) {
                    const uint8_t *m = which ? t.json_mask : t.tool_name_mask;
                    int32_t *sel = malloc(sizeof(int32_t) * (enc.count + 1));
                    size_t k = 0;
                    for (size_t i = 0; i < enc.count; i++)
                        if (m[i]) sel[k++] = enc.ids[i];
                    char *dec = NULL;
                    size_t dl = 0;
                    ok = kd_tokenizer_decode(tok, sel, k, 0, &dec, &dl, &e) == KD_OK;
                    for (size_t i = 0; ok && i < n; i++) {
                        kd_text_span s = which ? calls.v[i].arguments : calls.v[i].name;
                        ok = memmem(dec, dl, text + s.start, s.end - s.start) != NULL;
                    }
                    free(dec);
                    free(sel);
                }
                if (!ok && bad++ < 3) fprintf(stderr, "\n  misaligned (%s): %.300s\n", kd_call_format_name(fmt), text);
                samples++;
                kd_targets_free(&t);
                kd_target_spans_free(&sp);
                kd_tool_calls_free(&calls);
                free(text);
            }
            for (size_t i = 0; i < n; i++) free(args[i]);
            free(names);
            free(args);
            json_decref(rec);
        }
        free(line);
        fclose(f);
    }
    kd_encoding_free(&enc);
    kd_tokenizer_close(tok);
    fprintf(stderr, "\n  alignment: %ld BFCL renderings tokenized with Qwen3, %ld misaligned\n", samples, bad);
    CU_ASSERT_TRUE(samples > 10000);
    CU_ASSERT_EQUAL(bad, 0);
}

/* The generation job's path on real conversations: every glaive conversation with calls rendered
 * in Qwen3's chat template (kd_chat_render), tokenized with Qwen3, spans from
 * kd_targets_spans_for_conversation: the masks cover each call's name and arguments, and answers
 * after a tool result get integration tokens. */
static void test_glaive_rendered_conversations(void) {
    const char *data = kd_test_shared_data();
    const char *tokdir = kd_test_src("tests/.cache/tokenizers/qwen3");
    if (!data || !kd_is_dir(tokdir)) {
        kd_test_skip("../shared/data or tests/.cache/tokenizers/qwen3 is absent: rendered glaive conversations not checked");
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/glaive/glaive_toolcall_en_demo.json", data);
    json_t *all = json_load_file(path, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(all);
    kd_tokenizer *tok = NULL;
    kd_error e;
    CU_ASSERT_EQUAL_FATAL(kd_tokenizer_open(&tok, tokdir, &e), KD_OK);
    kd_encoding enc = {0};
    size_t convs = 0, calls_want = 0, calls_ok = 0, answers = 0, answers_integrated = 0;
    size_t ci;
    json_t *conv;
    json_array_foreach(all, ci, conv) {
        json_t *turns = json_object_get(conv, "conversations");
        size_t nt = json_array_size(turns), k;
        kd_chat_message *msgs = calloc(nt + 1, sizeof *msgs);
        json_t **tc = calloc(nt + 1, sizeof *tc);
        json_t **want = calloc(nt + 1, sizeof *want);
        int has_call = 0;
        json_t *t;
        json_array_foreach(turns, k, t) {
            const char *from = json_string_value(json_object_get(t, "from"));
            const char *val = json_string_value(json_object_get(t, "value"));
            if (strcmp(from, "human") == 0) msgs[k] = (kd_chat_message){"user", val, NULL};
            else if (strcmp(from, "gpt") == 0) msgs[k] = (kd_chat_message){"assistant", val, NULL};
            else if (strcmp(from, "observation") == 0) msgs[k] = (kd_chat_message){"tool", val, NULL};
            else {
                want[k] = json_loads(val, 0, NULL);
                tc[k] = json_pack("[O]", want[k]);
                msgs[k] = (kd_chat_message){"assistant", NULL, tc[k]};
                has_call = 1;
            }
        }
        if (has_call) {
            convs++;
            kd_chat_result r = {0};
            CU_ASSERT_EQUAL_FATAL(kd_chat_render(msgs, (int)nt, NULL, 0, &r, &e), KD_OK);
            kd_text_span *asst = calloc(nt + 1, sizeof *asst), *res = calloc(nt + 1, sizeof *res);
            size_t na = 0, nr = 0;
            for (k = 0; k < nt; k++) {
                if (strcmp(msgs[k].role, "assistant") == 0) asst[na++] = (kd_text_span){r.message_spans[k].start, r.message_spans[k].end};
                if (strcmp(msgs[k].role, "tool") == 0) res[nr++] = (kd_text_span){r.content_spans[k].start, r.content_spans[k].end};
            }
            kd_target_spans sp = {0};
            kd_targets m = {0};
            CU_ASSERT_EQUAL_FATAL(kd_targets_spans_for_conversation(r.text, r.len, asst, na, res, nr, NULL, &sp, &e), KD_OK);
            CU_ASSERT_EQUAL_FATAL(kd_tokenizer_encode(tok, r.text, r.len, 0, &enc, &e), KD_OK);
            CU_ASSERT_EQUAL_FATAL(kd_targets_build((const int32_t(*)[2])enc.offsets, enc.count, r.len, &sp, 1, &m, &e), KD_OK);
            /* the bytes under each mask, joined */
            char *under[2];
            for (int w = 0; w < 2; w++) {
                const uint8_t *mk = w ? m.json_mask : m.tool_name_mask;
                under[w] = calloc(r.len + 1, 1);
                size_t q = 0;
                for (size_t i = 0; i < enc.count; i++)
                    if (mk[i]) {
                        memcpy(under[w] + q, r.text + enc.offsets[i][0], (size_t)(enc.offsets[i][1] - enc.offsets[i][0]));
                        q += (size_t)(enc.offsets[i][1] - enc.offsets[i][0]);
                    }
            }
            size_t ncall = 0;
            for (k = 0; k < nt; k++) {
                if (!want[k]) continue;
                calls_want++;
                const char *nm = json_string_value(json_object_get(want[k], "name"));
                int ok = ncall < sp.tool_name.count && ncall < sp.json.count;
                if (ok) {
                    kd_text_span js = sp.json.v[ncall];
                    json_t *got = json_loadb(r.text + js.start, js.end - js.start, 0, NULL);
                    char *jt = kd_strndup(r.text + js.start, js.end - js.start);
                    ok = strstr(under[0], nm) && got && json_equal(got, json_object_get(want[k], "arguments")) && strstr(under[1], jt);
                    free(jt);
                    json_decref(got);
                }
                calls_ok += ok;
                ncall++;
            }
            /* answers right after a tool result */
            for (k = 1; k < nt; k++)
                if (strcmp(msgs[k].role, "assistant") == 0 && msgs[k].content && strcmp(msgs[k - 1].role, "tool") == 0) {
                    answers++;
                    int any = 0;
                    for (size_t i = 0; i < enc.count && !any; i++)
                        any = m.integration_mask[i] && (size_t)enc.offsets[i][0] >= r.message_spans[k].start &&
                              (size_t)enc.offsets[i][1] <= r.message_spans[k].end;
                    answers_integrated += any;
                }
            free(under[0]);
            free(under[1]);
            kd_targets_free(&m);
            kd_target_spans_free(&sp);
            free(asst);
            free(res);
            kd_chat_render_free(&r);
        }
        for (k = 0; k < nt; k++) {
            json_decref(tc[k]);
            json_decref(want[k]);
        }
        free(tc);
        free(want);
        free(msgs);
    }
    kd_encoding_free(&enc);
    kd_tokenizer_close(tok);
    json_decref(all);
    fprintf(stderr, "\n  glaive rendered in Qwen3's template: %zu conversations, %zu/%zu calls aligned, %zu/%zu answers after a "
                    "tool result with integration tokens\n",
            convs, calls_ok, calls_want, answers_integrated, answers);
    CU_ASSERT_TRUE(convs > 100);
    CU_ASSERT_EQUAL(calls_ok, calls_want);
    CU_ASSERT_TRUE(answers_integrated * 10 >= answers * 8);
}

int main(void) {
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("targets", NULL, NULL);
    CU_add_test(s, "straddling tokens, seed fields, supervision off, errors", test_straddling_tokens);
    CU_add_test(s, "intersection rule at edges, unsorted spans", test_mask_rule_edges);
    CU_add_test(s, "all spans of a rendered conversation", test_conversation_spans);
    CU_add_test(s, "the decision token joins the tool-select mask", test_decision_token);
    CU_add_test(s, "glaive conversations rendered in Qwen3's template", test_glaive_rendered_conversations);
    CU_add_test(s, "alignment with Qwen3 over BFCL renderings", test_alignment_qwen3_bfcl);
    return kd_test_main();
}
